//! One inference, from the client's call to the worker's last event, as
//! stages with types between them:
//!
//! ```text
//! InferRequest ─▶ Job ─▶ select ─▶ Lease ─▶ reserve ─▶ Reservation ─▶ WorkerRun (run.rs)
//!                   │                                                      │
//!                   │              ┌──────────── Attempt (attempt.rs) ◀────┘
//!                   │              │ bursts: gather ─▶ checkpoint ─▶ forward
//!                   │              │ end: settle (Completion) or close cut-off
//!                   ▼              ▼
//!   Stopped { RelayError, answered } ─▶ retry on another owner's worker, or tell the client
//! ```
//!
//! A worker that fails before any of the answer arrives is replaced once;
//! a client that goes away cancels the request at the worker. A replicated
//! request (replicate.rs) runs several `WorkerRun`s and votes; spot-checks
//! (`crate::spot_check`) run theirs in the background.

mod attempt;
mod error;
mod job;
mod record;
mod replicate;
mod run;

use std::sync::Arc;

use cocoon_proto::{
    infer_event, proxy_message, Assigned, InferEvent, InferRequest, WorkRequest, WorkerEvent,
};
use cocoon_telemetry::ActiveRequest;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Status;
use tracing::Instrument;
use tycho_types::models::StdAddr;

use crate::client_contracts::PayerError;
use crate::client_gateway::CertificatesSent;
use crate::idempotency::{Claim, Recorder};
use crate::registry::{Lease, NoWorker, WorkerHandle};
use crate::settlement::{Reservation, ReserveError, SettleError};
use crate::worker_id::Owner;
use crate::Shared;
pub(crate) use attempt::send_voucher;
use attempt::Attempt;
pub(crate) use error::{RelayError, Stopped};
pub(crate) use job::Job;
pub(crate) use run::{collect, majority, Answer, RunEvent, WorkerRun};

/// Events buffered between a worker session and one request, beyond what
/// HTTP/2 flow control already holds; a client further behind is dropped.
pub(crate) const EVENT_QUEUE: usize = 256;

/// Workers tried for one request: the first, and one replacement.
const MAX_ATTEMPTS: u32 = 2;

pub(crate) type ToClient = mpsc::Sender<Result<InferEvent, Status>>;

/// A leased worker slot and the channel its events for the request arrive on.
type Claimed = (Lease, mpsc::Receiver<WorkerEvent>);

/// Relays `req` to its end, in its own span: its events go to `to_client`.
pub(crate) async fn relay(
    shared: Arc<Shared>,
    req: InferRequest,
    to_client: ToClient,
    certificates_sent: CertificatesSent,
) {
    record::relayed(|| prost::Message::encode_to_vec(&req));
    let span = tracing::info_span!("request", id = %req.request_id, model = %req.model);
    async {
        let mut active = shared.metrics.start();
        let relay = match Job::parse(&shared, req) {
            Ok(job) => Relay {
                shared,
                job,
                to_client,
                certificates_sent,
            },
            Err(e) => return report(&to_client, Stopped::early(e), &mut active).await,
        };
        match relay.shared.idempotency.claim(&relay.job.wire) {
            Ok(None) => relay.run(&mut active).await,
            Ok(Some(Claim::Run(recorder))) => relay.run_recorded(recorder, active).await,
            Ok(Some(Claim::Replay(events))) => relay.replay(&events, &mut active).await,
            Err(e) => {
                let stop = Stopped::early(RelayError::Idempotency(e));
                report(&relay.to_client, stop, &mut active).await
            }
        }
    }
    .instrument(span)
    .await
}

/// One request being relayed.
pub(crate) struct Relay {
    shared: Arc<Shared>,
    job: Job,
    to_client: ToClient,
    /// Which worker certificates the client's connection already has.
    certificates_sent: CertificatesSent,
}

impl Relay {
    /// [`Relay::run`], the client's events passing through `recorder`,
    /// which keeps a completed answer for the request's retries.
    async fn run_recorded(self, recorder: Recorder, mut active: ActiveRequest) {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let Relay {
            shared,
            job,
            to_client,
            certificates_sent,
        } = self;
        let relay = Relay {
            shared,
            job,
            to_client: tx,
            certificates_sent,
        };
        // The relay, and with it the recorder's sender, is dropped when it
        // ends, which ends the recording; the recorder goes after it.
        let run = async move { relay.run(&mut active).await };
        let ((), recorder) = tokio::join!(run, recorder.forward(rx, to_client));
        drop(recorder);
    }

    /// Serves the request and tells the client how it failed, if it did.
    async fn run(&self, active: &mut ActiveRequest) {
        if let Err(stop) = self.serve(active).await {
            report(&self.to_client, stop, active).await;
        }
    }

    /// Sends the recorded answer of an earlier run of this idempotent
    /// request, once the payer is known to be who it says.
    async fn replay(&self, events: &[InferEvent], active: &mut ActiveRequest) {
        if let Some(payer) = &self.job.payer {
            if let Err(e) = self.authorize(payer).await {
                return report(&self.to_client, Stopped::early(e), active).await;
            }
        }
        tracing::info!("answered from the record of an earlier run of this idempotent request");
        for e in events {
            let mut e = e.clone();
            // The retry may come on a connection (or from a client) that
            // never had the worker's certificate: it goes along again.
            if let Some(infer_event::Event::Assigned(a)) = e.event.as_mut() {
                if a.worker_certificate.is_empty() {
                    if let Some(der) = self.shared.certificates.get(&a.worker_certificate_sha256) {
                        a.worker_certificate = der;
                    }
                }
            }
            if self.to_client.send(Ok(e)).await.is_err() {
                active.fail(RelayError::ClientGone.reason());
                return;
            }
        }
        active.succeed();
    }

    /// Tries workers until one answers, the request fails for good, or the
    /// attempts run out.
    async fn serve(&self, active: &mut ActiveRequest) -> Result<(), Stopped> {
        if let Some(payer) = &self.job.payer {
            self.authorize(payer).await.map_err(Stopped::early)?;
        }
        if self.job.replicas > 1 {
            return self.replicated(active).await;
        }
        // Each owner is tried once: a replacement is another owner's worker.
        let mut tried: Vec<Owner> = Vec::new();
        let mut previous: Option<RelayError> = None;
        let mut number = 1;
        loop {
            let (lease, events) = self.acquire(&tried, previous.as_ref()).await?;
            tried.push(lease.worker.owner());
            tracing::debug!(worker = %lease.worker.name, attempt = number, "assigned");
            let keep = self.shared.spot_checks.wants(&lease.worker, &self.job);
            let worker = lease.worker.clone();
            match self.try_worker(lease, events, number, keep, active).await {
                Ok(kept) => {
                    if let Some(answer) = kept {
                        self.spot_check(worker, answer);
                    }
                    return Ok(());
                }
                Err(stop) if stop.retryable() && number < MAX_ATTEMPTS => {
                    tracing::warn!(worker = %worker.name, reason = %stop.error, "retrying on another worker");
                    previous = Some(stop.error);
                    number += 1;
                }
                Err(Stopped {
                    error: e @ RelayError::Dispatch(_),
                    ..
                }) => return Err(Stopped::early(e)),
                Err(stop) => return Err(stop),
            }
        }
    }

    /// Checks the answer `worker` gave in the background, on other workers.
    fn spot_check(&self, worker: Arc<WorkerHandle>, answer: Answer) {
        let original = crate::spot_check::Original {
            worker,
            answer,
            payer: self.job.payer.clone(),
        };
        tokio::spawn(crate::spot_check::check(
            self.shared.clone(),
            self.job.clone(),
            original,
        ));
    }

    /// Checks, when the proxy reads client contracts on chain, that the
    /// request's signer owns `payer`'s contract (read first if new).
    async fn authorize(&self, payer: &StdAddr) -> Result<(), RelayError> {
        let Some(d) = self.shared.config.charging.contracts() else {
            return Ok(());
        };
        d.ensure(payer).await;
        let wire = &self.job.wire;
        d.authorize(
            payer,
            &wire.request_id,
            &wire.payer_key,
            &wire.payer_signature,
        )
        .map_err(|e| match e {
            PayerError::Unknown(why) => RelayError::Unsettled(why),
            PayerError::Refused(why) => {
                RelayError::BadRequest(format!("payer not authorized: {why}"))
            }
        })
    }

    /// Claims a slot on a worker of an owner not tried yet, waiting in the
    /// model's line while every one is busy (first in, first out, until
    /// the deadline).
    async fn acquire(
        &self,
        tried: &[Owner],
        previous: Option<&RelayError>,
    ) -> Result<Claimed, Stopped> {
        // A slot this request cannot use (a worker it already tried) may
        // suit the one behind.
        self.wait_in_line(|| self.select(tried, previous), !tried.is_empty())
            .await
    }

    /// Takes whatever `pick` claims, waiting in the model's line while it
    /// finds every worker busy. `pass_unused`: a wake that `pick` could not
    /// use goes to the request behind.
    async fn wait_in_line<T>(
        &self,
        pick: impl Fn() -> Result<T, Stopped>,
        pass_unused: bool,
    ) -> Result<T, Stopped> {
        let registry = &self.shared.registry;
        let line = registry.admission();
        let model = self.job.model.as_str();
        if !line.enabled() {
            return pick();
        }
        // Nobody waiting: take a free slot if there is one.
        if line.waiting(model) == 0 {
            match pick() {
                Err(stop) if all_busy(&stop) => {}
                done => return done,
            }
        }
        let place = line.join(model).map_err(|full| {
            Stopped::early(RelayError::QueueFull {
                model: model.to_string(),
                waiting: full.waiting,
                retry_after_s: registry.retry_after(model, full.waiting),
            })
        })?;
        tracing::debug!("every worker is busy; waiting in line");
        // A request that got here first may have found every slot busy
        // while `pick` held some for a moment: let it look again.
        if !place.at_front() {
            line.wake(model);
        }
        let mut woken = false;
        loop {
            if place.at_front() {
                match pick() {
                    Ok(got) => {
                        tracing::debug!(waited_ms = place.waited().as_millis() as u64, "admitted");
                        place.admitted();
                        return Ok(got);
                    }
                    Err(stop) if all_busy(&stop) => {
                        if woken && pass_unused {
                            place.pass_on();
                        }
                    }
                    Err(other) => return Err(other),
                }
            }
            tokio::select! {
                _ = place.woken() => woken = true,
                _ = tokio::time::sleep_until(self.job.deadline) => {
                    let waited_ms = place.waited().as_millis() as u64;
                    place.timed_out();
                    return Err(Stopped::early(RelayError::QueuedTooLong {
                        model: model.to_string(),
                        waited_ms,
                    }));
                }
                // The caller went away: leave the line at once.
                _ = self.to_client.closed() => return Err(Stopped::early(RelayError::ClientGone)),
            }
        }
    }

    /// Chooses a worker of an owner not tried yet and claims a slot on it.
    fn select(&self, tried: &[Owner], previous: Option<&RelayError>) -> Result<Claimed, Stopped> {
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let job = &self.job;
        self.shared
            .registry
            .select(&job.demand(tried), &job.id, events_tx)
            .map(|lease| (lease, events))
            .map_err(|no| {
                Stopped::early(RelayError::NoWorker {
                    no,
                    after: previous.map(ToString::to_string),
                })
            })
    }

    /// Reserves, dispatches to the leased worker and relays its answer;
    /// the answer too when `keep` (for a spot-check).
    async fn try_worker(
        &self,
        lease: Lease,
        events: mpsc::Receiver<WorkerEvent>,
        number: u32,
        keep: bool,
        active: &mut ActiveRequest,
    ) -> Result<Option<Answer>, Stopped> {
        let (mut run, reservation) = self
            .start_run(lease, events, self.job.id.as_str())
            .await
            .map_err(Stopped::early)?;
        if self
            .send(self.assigned(run.worker(), number))
            .await
            .is_err()
        {
            run.end(true).await;
            close(reservation).await;
            return Err(Stopped::early(RelayError::ClientGone));
        }
        Attempt::new(self, run, reservation, active, keep)
            .run()
            .await
    }

    /// Holds the request's maximum cost at the leased worker's coefficient,
    /// under the ledger key `key` (each run of a replicated request is held
    /// and settled on its own), and dispatches the request to it.
    async fn start_run(
        &self,
        mut lease: Lease,
        events: mpsc::Receiver<WorkerEvent>,
        key: &str,
    ) -> Result<(WorkerRun, Option<Reservation>), RelayError> {
        let reservation = match &self.job.payer {
            Some(payer) => match self.reserve(key, payer, &lease.worker).await {
                Ok(r) => Some(r),
                Err(e) => {
                    // Refused before the worker did anything.
                    lease.finish(true);
                    return Err(e);
                }
            },
            None => None,
        };
        let job = &self.job;
        let msg = job.work_request(
            job.id.as_str(),
            job.deadline,
            reservation.as_ref(),
            &lease.worker,
        );
        let client = Some(self.to_client.clone());
        match WorkerRun::dispatch(lease, events, msg, self.job.deadline, client).await {
            Ok(run) => Ok((run, reservation)),
            Err(e) => {
                close(reservation).await;
                Err(e)
            }
        }
    }

    /// Holds the request's maximum cost at `worker`'s coefficient under the
    /// ledger key `key`.
    async fn reserve(
        &self,
        key: &str,
        payer: &StdAddr,
        worker: &WorkerHandle,
    ) -> Result<Reservation, RelayError> {
        let Some(payments) = self.shared.config.charging.payments() else {
            return Err(RelayError::BadRequest("this proxy does not charge".into()));
        };
        let payee = worker
            .payee
            .as_ref()
            .ok_or_else(|| RelayError::NoPayee(worker.name.clone()))?;
        let limits = (self.job.body_len(), self.job.wire.max_tokens);
        let (coefficient, _) = self.job.charged(worker, &payments.prices.tiers())?;
        Reservation::hold(payments, key, payer, payee, coefficient, limits)
            .await
            .map_err(|e| match e {
                ReserveError::Refused(SettleError::AwaitingCommit(why)) => {
                    let outage = (self.shared.config.charging.contracts())
                        .and_then(|d| d.outage())
                        .map(|d| format!(" (the chain has not answered for {} s: serving stops here until it does)", d.as_secs()))
                        .unwrap_or_default();
                    RelayError::Unsettled(format!("{why}{outage}"))
                }
                e => RelayError::Reserve(e),
            })
    }

    async fn send(&self, event: infer_event::Event) -> Result<(), RelayError> {
        send(&self.to_client, event).await
    }

    /// The event telling the client who answers, with the worker's
    /// certificate the first time its connection hears of it.
    fn assigned(&self, worker: &WorkerHandle, attempt: u32) -> infer_event::Event {
        let sha = worker.certificate_sha256();
        let tiers = self
            .shared
            .config
            .charging
            .payments()
            .map(|p| p.prices.tiers());
        let (charged_coefficient, cost_factors) = match tiers.map(|t| self.job.charged(worker, &t))
        {
            Some(Ok((k, factors))) => (k.per_mille(), factors.0.iter().map(Into::into).collect()),
            _ => (0, Vec::new()),
        };
        // Marked sent only when it goes: one this proxy no longer keeps is
        // not, and the client asks again (and is told it is unavailable).
        let certificate = match self.shared.certificates.get(&sha) {
            Some(der) if self.certificates_sent.first_time(&sha) => der,
            _ => Default::default(),
        };
        infer_event::Event::Assigned(Assigned {
            worker_id: worker.name.clone(),
            coefficient: worker.coefficient().per_mille(),
            attempt,
            model_hash: worker.model_hash.map(|h| h.to_hex()).unwrap_or_default(),
            worker_tee: worker.tee.map(|t| t.to_string()).unwrap_or_default(),
            worker_image_hash: worker.image_hash.map(|h| h.to_string()).unwrap_or_default(),
            worker_certificate_sha256: sha,
            worker_certificate: certificate,
            worker_tcb: match worker.offer.tee {
                Some(_) => worker.offer.tcb.snake_name().to_owned(),
                None => String::new(),
            },
            worker_gpu: worker.offer.gpu.clone().unwrap_or_default(),
            worker_region: (worker.offer.region.as_ref())
                .map(|r| r.to_string())
                .unwrap_or_default(),
            worker_open: worker.offer.open,
            charged_coefficient,
            cost_factors,
            replayed: false,
        })
    }
}

impl Job {
    /// The request as `worker` receives it under the id `request_id`, with
    /// the time left until `deadline` and, when it is charged, the prices
    /// and coefficient it is charged at; sealed, with its wrapped key only.
    pub(crate) fn work_request(
        &self,
        request_id: &str,
        deadline: Instant,
        reservation: Option<&Reservation>,
        worker: &WorkerHandle,
    ) -> proxy_message::Msg {
        let left = deadline.saturating_duration_since(Instant::now());
        let sealed = self.wire.sealed.as_ref().map(|s| {
            let mut s = s.clone();
            s.keys
                .retain(|k| Some(k.worker_key.as_ref()) == worker.e2e_key.as_ref().map(|k| &k[..]));
            s
        });
        proxy_message::Msg::Request(WorkRequest {
            request_id: request_id.to_string(),
            endpoint: cocoon_proto::Endpoint::from(self.endpoint).into(),
            body: self.wire.body.clone(),
            stream: self.wire.stream,
            timeout_ms: left.as_millis() as u64,
            prices: reservation.map(|r| cocoon_proto::Prices::from(r.prices())),
            coefficient: reservation.map_or(0, |r| r.coefficient().per_mille()),
            sealed,
        })
    }
}

/// Sends one event to the client.
async fn send(to_client: &ToClient, event: infer_event::Event) -> Result<(), RelayError> {
    record::relayed(|| {
        prost::Message::encode_to_vec(&InferEvent {
            event: Some(event.clone()),
        })
    });
    to_client
        .send(Ok(InferEvent { event: Some(event) }))
        .await
        .map_err(|_| RelayError::ClientGone)
}

/// Counts the failure and tells the client, if it is still there.
async fn report(to_client: &ToClient, stop: Stopped, active: &mut ActiveRequest) {
    active.fail(stop.error.reason());
    if stop.error.is_refusal() {
        tracing::info!(message = %stop.error, "request refused");
    }
    if let Some(error) = stop.error.to_wire(stop.answered) {
        let _ = send(to_client, infer_event::Event::Error(error)).await;
    }
}

/// Whether a selection failed only because every worker was busy.
fn all_busy(stop: &Stopped) -> bool {
    matches!(
        stop.error,
        RelayError::NoWorker {
            no: NoWorker::AllBusy { .. },
            ..
        }
    )
}

/// Gives back a reservation that no answer used.
async fn close(reservation: Option<Reservation>) {
    if let Some(r) = reservation {
        r.release().await;
    }
}
