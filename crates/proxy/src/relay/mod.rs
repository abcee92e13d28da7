//! One inference, from the client's call to the worker's last event, as
//! stages with types between them:
//!
//! ```text
//! InferRequest ─▶ select ─▶ Lease ─▶ reserve ─▶ Reservation ─▶ dispatch
//!      │                                                          │
//!      │              ┌──────────── Attempt (attempt.rs) ◀────────┘
//!      │              │ bursts: gather ─▶ checkpoint ─▶ forward
//!      │              │ end: settle (Completion) or close cut-off
//!      ▼              ▼
//!   Stopped { RelayError, answered } ─▶ retry on another worker, or tell the client
//! ```
//!
//! A worker that fails before any of the answer arrives is replaced once;
//! a client that goes away cancels the request at the worker.

mod attempt;
mod error;
mod replicate;

use std::sync::Arc;

use cocoon_core::RequestId;
use cocoon_proto::{
    infer_event, proxy_message, Assigned, CancelRequest, InferEvent, InferRequest, ProxyMessage,
    WorkRequest, WorkerEvent,
};
use cocoon_telemetry::ActiveRequest;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Status;
use tracing::Instrument;
use tycho_types::models::StdAddr;

use crate::client_contracts::PayerError;
use crate::client_gateway::CertificatesSent;
use crate::registry::{Lease, NoWorker, WorkerHandle};
use crate::settlement::Reservation;
use crate::settlement::{ReserveError, SettleError};
use crate::worker_id::Owner;
use crate::Shared;
pub(crate) use attempt::send_voucher;
use attempt::Attempt;
pub(crate) use error::{RelayError, Stopped};

/// Events buffered between a worker session and one request, beyond what
/// HTTP/2 flow control already holds; a client further behind is dropped.
pub(crate) const EVENT_QUEUE: usize = 256;

/// Workers tried for one request: the first, and one replacement.
const MAX_ATTEMPTS: u32 = 2;

type ToClient = mpsc::Sender<Result<InferEvent, Status>>;

/// One request being relayed.
pub(crate) struct Relay {
    shared: Arc<Shared>,
    id: RequestId,
    req: InferRequest,
    to_client: ToClient,
    deadline: Instant,
    /// The chunks relayed, kept when the answer is to be spot-checked.
    kept: std::sync::Mutex<Option<Vec<bytes::Bytes>>>,
    /// The receipt of an answer to be spot-checked.
    kept_receipt: std::sync::Mutex<bytes::Bytes>,
    /// Which worker certificates the client's connection already has.
    certificates_sent: CertificatesSent,
}

impl Relay {
    /// Keeps the receipt of an answer that is to be spot-checked.
    fn keep_receipt(&self, done: &cocoon_proto::Completion) {
        if self
            .kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            *self.kept_receipt.lock().unwrap_or_else(|p| p.into_inner()) = done.receipt.clone();
        }
    }

    /// Checks what the proxy needs of the request before it is accepted.
    pub(crate) fn new(
        shared: Arc<Shared>,
        req: InferRequest,
        to_client: ToClient,
        certificates_sent: CertificatesSent,
    ) -> Result<Self, Status> {
        let id = RequestId::parse(&req.request_id)
            .map_err(|e| Status::invalid_argument(format!("request_id: {e}")))?;
        cocoon_proto::convert::endpoint(req.endpoint)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let timeout = match req.timeout_ms {
            0 => shared.config.default_timeout,
            ms => std::time::Duration::from_millis(ms),
        };
        Ok(Relay {
            deadline: Instant::now() + timeout,
            shared,
            id,
            req,
            to_client,
            kept: std::sync::Mutex::new(None),
            kept_receipt: Default::default(),
            certificates_sent,
        })
    }

    /// Relays the request to its end, in its own span.
    pub(crate) async fn run(self) {
        let span = tracing::info_span!("request", id = %self.id, model = %self.req.model);
        async {
            let mut active = self.shared.metrics.start();
            if let Err(stop) = self.serve(&mut active).await {
                self.report(stop, &mut active).await;
            }
        }
        .instrument(span)
        .await
    }

    /// Tries workers until one answers, the request fails for good, or the
    /// attempts run out.
    async fn serve(&self, active: &mut ActiveRequest) -> Result<(), Stopped> {
        let payer = self.payer().map_err(Stopped::early)?;
        if let Some(payer) = &payer {
            self.authorize(payer).await.map_err(Stopped::early)?;
        }
        if self.req.replicas > 1 {
            return self
                .replicated(self.req.replicas, payer.as_ref(), active)
                .await;
        }
        // Each owner is tried once: a replacement is another owner's worker.
        let mut tried: Vec<Owner> = Vec::new();
        let mut previous: Option<RelayError> = None;
        let mut number = 1;
        loop {
            let (mut lease, events) = self.acquire(&tried, previous.as_ref()).await?;
            tried.push(lease.worker.owner());
            tracing::debug!(worker = %lease.worker.name, attempt = number, "assigned");
            let check = self.shared.spot_checks.wants(&lease.worker, &self.req);
            *self.kept.lock().unwrap_or_else(|p| p.into_inner()) = check.then(Vec::new);
            let outcome = self
                .try_worker(&lease, events, number, payer.as_ref(), active)
                .await;
            if outcome.is_ok() {
                let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(chunks) = kept {
                    let receipt = std::mem::take(
                        &mut *self.kept_receipt.lock().unwrap_or_else(|p| p.into_inner()),
                    );
                    tokio::spawn(crate::spot_check::check(
                        self.shared.clone(),
                        self.req.clone(),
                        crate::spot_check::Original {
                            worker: lease.worker.clone(),
                            chunks,
                            receipt,
                            payer: payer.clone(),
                        },
                    ));
                }
            }
            match outcome {
                Err(stop) if stop.retryable() && number < MAX_ATTEMPTS => {
                    lease.finish(false);
                    tracing::warn!(worker = %lease.worker.name, reason = %stop.error, "retrying on another worker");
                    previous = Some(stop.error);
                    number += 1;
                }
                Err(Stopped {
                    error: e @ RelayError::Dispatch(_),
                    ..
                }) => {
                    lease.finish(false);
                    return Err(Stopped::early(e));
                }
                outcome => {
                    lease.finish(true);
                    return outcome;
                }
            }
        }
    }

    /// Checks, when the proxy reads client contracts on chain, that the
    /// request's signer owns `payer`'s contract (read first if new).
    async fn authorize(&self, payer: &StdAddr) -> Result<(), RelayError> {
        let Some(d) = self
            .shared
            .config
            .payments
            .as_ref()
            .and_then(|p| p.client_contracts.as_ref())
        else {
            return Ok(());
        };
        d.ensure(payer).await;
        d.authorize(
            payer,
            &self.req.request_id,
            &self.req.payer_key,
            &self.req.payer_signature,
        )
        .map_err(|e| match e {
            PayerError::Unknown(why) => RelayError::Unsettled(why),
            PayerError::Refused(why) => {
                RelayError::BadRequest(format!("payer not authorized: {why}"))
            }
        })
    }

    /// Who pays, when the proxy charges.
    fn payer(&self) -> Result<Option<StdAddr>, RelayError> {
        if self.shared.config.payments.is_none() {
            return Ok(None);
        }
        crate::client_gateway::parse_address(&self.req.client_address)
            .map(Some)
            .map_err(|status| {
                RelayError::BadRequest(format!(
                    "this proxy charges for requests and needs the payer's address: {}",
                    status.message()
                ))
            })
    }

    /// Claims a slot on a worker not tried yet, waiting in the model's line
    /// while every one is busy (first in, first out, until the deadline).
    async fn acquire(
        &self,
        tried: &[Owner],
        previous: Option<&RelayError>,
    ) -> Result<(Lease, mpsc::Receiver<WorkerEvent>), Stopped> {
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
        let model = self.req.model.as_str();
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
                _ = tokio::time::sleep_until(self.deadline) => {
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
    fn select(
        &self,
        tried: &[Owner],
        previous: Option<&RelayError>,
    ) -> Result<(Lease, mpsc::Receiver<WorkerEvent>), Stopped> {
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let req = &self.req;
        self.shared
            .registry
            .select(&req.model, req.max_coefficient, tried, &self.id, events_tx)
            .map(|lease| (lease, events))
            .map_err(|no| {
                Stopped::early(RelayError::NoWorker {
                    no,
                    after: previous.map(ToString::to_string),
                })
            })
    }

    /// Reserves, dispatches to the leased worker and relays its answer.
    async fn try_worker(
        &self,
        lease: &Lease,
        events: mpsc::Receiver<WorkerEvent>,
        number: u32,
        payer: Option<&StdAddr>,
        active: &mut ActiveRequest,
    ) -> Result<(), Stopped> {
        let worker = &*lease.worker;
        let reservation = match payer {
            Some(payer) => Some(self.reserve(payer, worker).await.map_err(Stopped::early)?),
            None => None,
        };
        if !worker.send(self.work_request(reservation.as_ref())).await {
            close(reservation).await;
            return Err(Stopped::early(RelayError::Dispatch(worker.name.clone())));
        }
        if self.send(self.assigned(worker, number)).await.is_err() {
            self.cancel(worker).await;
            close(reservation).await;
            return Err(Stopped::early(RelayError::ClientGone));
        }
        Attempt::new(self, lease, events, reservation, active)
            .run()
            .await
    }

    /// Holds the request's maximum cost at `worker`'s coefficient.
    async fn reserve(
        &self,
        payer: &StdAddr,
        worker: &WorkerHandle,
    ) -> Result<Reservation, RelayError> {
        self.reserve_as(&self.req.request_id, payer, worker).await
    }

    /// Like [`Relay::reserve`], under the ledger key `key` (each run of a
    /// replicated request is held and settled on its own).
    async fn reserve_as(
        &self,
        key: &str,
        payer: &StdAddr,
        worker: &WorkerHandle,
    ) -> Result<Reservation, RelayError> {
        let Some(payments) = &self.shared.config.payments else {
            return Err(RelayError::BadRequest("this proxy does not charge".into()));
        };
        let payee = worker
            .payee
            .as_ref()
            .ok_or_else(|| RelayError::NoPayee(worker.name.clone()))?;
        let limits = (self.req.body.len(), self.req.max_tokens);
        Reservation::hold(payments, key, payer, payee, worker.coefficient(), limits)
            .await
            .map_err(|e| match e {
                ReserveError::Refused(SettleError::AwaitingCommit(why)) => {
                    let outage = payments
                        .client_contracts
                        .as_ref()
                        .and_then(|d| d.outage())
                        .map(|d| format!(" (the chain has not answered for {} s: serving stops here until it does)", d.as_secs()))
                        .unwrap_or_default();
                    RelayError::Unsettled(format!("{why}{outage}"))
                }
                e => RelayError::Reserve(e),
            })
    }

    /// The request as the worker receives it, with the time left and, when
    /// it is charged, the prices and coefficient it is charged at.
    fn work_request(&self, reservation: Option<&Reservation>) -> ProxyMessage {
        let left = self.deadline.saturating_duration_since(Instant::now());
        ProxyMessage {
            msg: Some(proxy_message::Msg::Request(WorkRequest {
                request_id: self.req.request_id.clone(),
                endpoint: self.req.endpoint,
                body: self.req.body.clone(),
                stream: self.req.stream,
                timeout_ms: left.as_millis() as u64,
                prices: reservation.map(|r| cocoon_proto::Prices::from(r.prices())),
                coefficient: reservation.map_or(0, |r| r.coefficient().per_mille()),
            })),
        }
    }

    /// Counts the failure and tells the client, if it is still there.
    async fn report(&self, stop: Stopped, active: &mut ActiveRequest) {
        active.fail(stop.error.reason());
        if stop.error.is_refusal() {
            tracing::info!(message = %stop.error, "request refused");
        }
        if let Some(error) = stop.error.to_wire(stop.answered) {
            let _ = self.send(infer_event::Event::Error(error)).await;
        }
    }

    async fn send(&self, event: infer_event::Event) -> Result<(), RelayError> {
        self.to_client
            .send(Ok(InferEvent { event: Some(event) }))
            .await
            .map_err(|_| RelayError::ClientGone)
    }

    /// Tells the worker to stop working on the request.
    async fn cancel(&self, worker: &WorkerHandle) {
        let msg = ProxyMessage {
            msg: Some(proxy_message::Msg::Cancel(CancelRequest {
                request_id: self.req.request_id.clone(),
            })),
        };
        let _ = worker.send(msg).await;
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

impl Relay {
    /// The event telling the client who answers, with the worker's
    /// certificate the first time its connection hears of it.
    fn assigned(&self, worker: &WorkerHandle, attempt: u32) -> infer_event::Event {
        let sha = worker.certificate_sha256();
        let certificate = match sha.is_empty() || !self.certificates_sent.first_time(&sha) {
            true => Default::default(),
            false => self.shared.certificates.get(&sha).unwrap_or_default(),
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
        })
    }
}
