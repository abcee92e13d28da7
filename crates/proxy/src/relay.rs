//! One inference, from the client's call to the worker's last event:
//! choose a worker, forward, relay the answer, retry once if the worker
//! vanished before answering, cancel the worker if the client goes away.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cocoon_core::{Charge, RequestId, Usage};
use cocoon_proto::{
    infer_event, proxy_message, worker_event, Assigned, CancelRequest, Completion, Endpoint,
    ErrorCode, InferError, InferEvent, InferRequest, ProxyMessage, WorkRequest, WorkerEvent,
};
use tokio::sync::mpsc;
use tonic::Status;
use tracing::Instrument;

use crate::meter::{Hold, Meter};
use crate::registry::NoWorker;
use crate::Shared;

/// Events buffered between a worker session and one request, beyond what
/// HTTP/2 flow control already holds; a client further behind is dropped.
const EVENT_QUEUE: usize = 256;

type ToClient = mpsc::Sender<Result<InferEvent, Status>>;

pub(crate) struct Relay {
    shared: Arc<Shared>,
    id: RequestId,
    req: InferRequest,
    to_client: ToClient,
}

/// How one attempt on one worker ended.
enum Attempt {
    /// Finished (answered, failed for good, or the client left); `true`
    /// when the request was charged.
    Over(bool),
    /// The worker failed before its first byte; another may be tried.
    Retry(String),
}

/// Most chunks forwarded on one durable checkpoint.
const MAX_BURST: usize = 256;

impl Relay {
    pub(crate) fn new(
        shared: Arc<Shared>,
        req: InferRequest,
        to_client: ToClient,
    ) -> Result<Self, Status> {
        let id = RequestId::parse(&req.request_id)
            .map_err(|e| Status::invalid_argument(format!("request_id: {e}")))?;
        if Endpoint::try_from(req.endpoint).unwrap_or(Endpoint::Unspecified)
            == Endpoint::Unspecified
        {
            return Err(Status::invalid_argument(format!(
                "endpoint must be chat completions or completions, found {}",
                req.endpoint
            )));
        }
        Ok(Relay {
            shared,
            id,
            req,
            to_client,
        })
    }

    pub(crate) async fn run(self) {
        let span = tracing::info_span!("request", id = %self.id, model = %self.req.model);
        self.relay().instrument(span).await
    }

    async fn relay(self) {
        let mut active = self.shared.metrics.start();
        let timeout = match self.req.timeout_ms {
            0 => self.shared.config.default_timeout,
            ms => Duration::from_millis(ms),
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tried: Vec<u64> = Vec::new();
        let mut last_failure = String::new();
        let payments = self.shared.config.payments.clone();
        let client = match &payments {
            None => None,
            Some(_) => match crate::client_gateway::parse_address(&self.req.client_address) {
                Ok(a) => Some(a),
                Err(status) => {
                    active.fail("bad_request");
                    let message = format!(
                        "this proxy charges for requests and needs the payer's address: {}",
                        status.message()
                    );
                    self.error(ErrorCode::BadRequest, message, 400, true).await;
                    return;
                }
            },
        };

        for attempt in 1..=2u32 {
            let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
            let lease = self.shared.registry.select(
                &self.req.model,
                self.req.max_coefficient,
                &tried,
                &self.id,
                events_tx,
            );
            let mut lease = match lease {
                Ok(l) => l,
                Err(no) => {
                    let (code, reason) = match &no {
                        NoWorker::NoWorkersForModel { .. } if attempt > 1 => {
                            (ErrorCode::WorkerLost, "worker_lost")
                        }
                        NoWorker::NoWorkersForModel { .. } => {
                            (ErrorCode::ModelNotFound, "model_not_found")
                        }
                        NoWorker::AllBusy { .. } => (ErrorCode::WorkersBusy, "workers_busy"),
                        NoWorker::TooExpensive { .. } => (ErrorCode::PriceLimit, "price_limit"),
                    };
                    let message = if attempt > 1 {
                        format!("{last_failure}; no other worker could take the request ({no})")
                    } else {
                        no.to_string()
                    };
                    tracing::info!(%message, "request refused");
                    active.fail(reason);
                    self.error(code, message, 0, true).await;
                    return;
                }
            };
            let worker = lease.worker.clone();
            tried.push(worker.serial);
            tracing::debug!(worker = %worker.id, attempt, "assigned");

            let hold = match (&payments, &client) {
                (Some(p), Some(client)) => match self.reserve(p, client, &worker).await {
                    Ok(hold) => Some(hold),
                    Err((code, reason, message, status)) => {
                        lease.finish(true);
                        active.fail(reason);
                        tracing::info!(%message, "request refused");
                        self.error(code, message, status, true).await;
                        return;
                    }
                },
                _ => None,
            };

            let work = ProxyMessage {
                msg: Some(proxy_message::Msg::Request(WorkRequest {
                    request_id: self.req.request_id.clone(),
                    endpoint: self.req.endpoint,
                    body: self.req.body.clone(),
                    stream: self.req.stream,
                    timeout_ms: deadline
                        .saturating_duration_since(tokio::time::Instant::now())
                        .as_millis() as u64,
                })),
            };
            if !worker.send(work).await {
                last_failure = format!(
                    "worker {} disconnected before the request reached it",
                    worker.id
                );
                lease.finish(false);
                self.release(&hold).await;
                continue;
            }
            let assigned = infer_event::Event::Assigned(Assigned {
                worker_id: worker.id.clone(),
                coefficient: worker.coefficient(),
                attempt,
                model_hash: worker.model_hash.clone(),
                worker_tee: worker.tee.clone(),
                worker_image_hash: worker.image_hash.clone(),
            });
            if self.send(assigned).await.is_err() {
                self.cancel(&worker).await;
                self.release(&hold).await;
                active.fail("client_cancelled");
                return;
            }

            let mut meter = Meter::default();
            match self
                .attempt(
                    &lease,
                    events_rx,
                    deadline,
                    &mut active,
                    attempt,
                    hold.as_ref(),
                    &mut meter,
                )
                .await
            {
                Attempt::Over(charged) => {
                    lease.finish(true);
                    match &hold {
                        Some(h) if !charged && meter.delivered_chunks() > 0 => {
                            self.charge_partial(h, &worker, &meter).await;
                        }
                        Some(_) if !charged => self.release(&hold).await,
                        _ => {}
                    }
                    return;
                }
                Attempt::Retry(why) => {
                    lease.finish(false);
                    self.release(&hold).await;
                    tracing::warn!(worker = %worker.id, reason = %why, "retrying on another worker");
                    last_failure = why;
                }
            }
        }
        active.fail("worker_lost");
        self.error(ErrorCode::WorkerLost, last_failure, 0, true)
            .await;
    }

    /// Relays one worker's answer.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        lease: &crate::Lease,
        mut events: mpsc::Receiver<WorkerEvent>,
        deadline: tokio::time::Instant,
        active: &mut cocoon_telemetry::ActiveRequest,
        attempt: u32,
        hold: Option<&Hold<'_>>,
        meter: &mut Meter,
    ) -> Attempt {
        let worker = &*lease.worker;
        let mut first_byte = false;
        // An event taken from the queue while gathering a burst.
        let mut next: Option<WorkerEvent> = None;
        loop {
            let event = match next.take() {
                Some(ev) => Some(ev),
                None => tokio::select! {
                    biased;
                    _ = self.to_client.closed() => {
                        tracing::info!(worker = %worker.id, "client went away; cancelling");
                        self.cancel(worker).await;
                        active.fail("client_cancelled");
                        return Attempt::Over(false);
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        self.cancel(worker).await;
                        active.fail("timeout");
                        self.error(ErrorCode::Timeout, "the request's deadline passed".into(), 0, !first_byte).await;
                        return Attempt::Over(false);
                    }
                    ev = events.recv() => ev,
                },
            };
            let Some(WorkerEvent { event, so_far, .. }) = event else {
                if lease.overflowed() {
                    self.cancel(worker).await;
                    active.fail("client_too_slow");
                    return Attempt::Over(false);
                }
                let why = format!("worker {} disconnected", worker.id);
                if !first_byte && attempt == 1 {
                    return Attempt::Retry(why);
                }
                active.fail("worker_lost");
                let message = if first_byte {
                    format!("{why} in the middle of the answer")
                } else {
                    why
                };
                self.error(ErrorCode::WorkerLost, message, 0, !first_byte)
                    .await;
                return Attempt::Over(false);
            };
            match event {
                Some(worker_event::Event::Chunk(bytes)) => {
                    if !first_byte {
                        first_byte = true;
                        active.first_byte();
                    }
                    // Everything the worker has already sent goes out on
                    // one durable step.
                    let mut burst = vec![(bytes, meter.receive(so_far.as_ref()))];
                    while burst.len() < MAX_BURST {
                        match events.try_recv() {
                            Ok(WorkerEvent {
                                event: Some(worker_event::Event::Chunk(b)),
                                so_far,
                                ..
                            }) => burst.push((b, meter.receive(so_far.as_ref()))),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    // With a checkpoint window, what arrives within it joins
                    // the burst.
                    if let Some(until) =
                        hold.and_then(|h| meter.hold_until(h.payments.checkpoint_window))
                    {
                        let until = until.min(deadline);
                        while next.is_none() && burst.len() < MAX_BURST {
                            let ev = tokio::select! {
                                biased;
                                // The client left: what is gathered goes
                                // nowhere, and the forward below says so.
                                _ = self.to_client.closed() => break,
                                ev = tokio::time::timeout_at(until, events.recv()) => ev,
                            };
                            match ev {
                                Ok(Some(WorkerEvent {
                                    event: Some(worker_event::Event::Chunk(b)),
                                    so_far,
                                    ..
                                })) => burst.push((b, meter.receive(so_far.as_ref()))),
                                Ok(Some(other)) => next = Some(other),
                                // The window passed, or the worker is gone
                                // (seen again on the next receive).
                                Ok(None) | Err(_) => break,
                            }
                        }
                    }
                    // A burst that ends the answer is covered by its
                    // settlement, made before any of it is forwarded.
                    let finished = match (hold, &mut next) {
                        (
                            Some(h),
                            Some(WorkerEvent {
                                event: Some(worker_event::Event::Done(done)),
                                ..
                            }),
                        ) => Some(self.finish(h, worker, done).await),
                        (Some(h), _) => {
                            if let Some((_, through)) = burst.last() {
                                if let Err(e) = self.checkpoint(h, meter, through).await {
                                    // Nothing goes out that the ledger has
                                    // not recorded.
                                    tracing::error!(error = %e, "could not record progress; stopping the answer");
                                    self.cancel(worker).await;
                                    active.fail("internal");
                                    let message = format!("the proxy's ledger could not record the answer's cost: {e}");
                                    self.error(ErrorCode::Internal, message, 500, !first_byte)
                                        .await;
                                    return Attempt::Over(false);
                                }
                            }
                            None
                        }
                        (None, _) => None,
                    };
                    if let Err(reason) = self.forward(lease, burst, meter).await {
                        if reason == "client_too_slow" {
                            tracing::warn!(worker = %worker.id, "client stopped reading; cancelling");
                        }
                        self.cancel(worker).await;
                        active.fail(reason);
                        return Attempt::Over(finished.unwrap_or(false));
                    }
                    if let Some(charged) = finished {
                        if let Some(WorkerEvent {
                            event: Some(worker_event::Event::Done(done)),
                            ..
                        }) = next.take()
                        {
                            active.succeed();
                            let _ = self.send(infer_event::Event::Done(done)).await;
                        }
                        return Attempt::Over(charged);
                    }
                }
                Some(worker_event::Event::Done(mut done)) => {
                    let charged = match hold {
                        Some(h) => self.finish(h, worker, &mut done).await,
                        None => {
                            self.shared.metrics.record_usage(&usage_of(&done));
                            false
                        }
                    };
                    active.first_byte();
                    active.succeed();
                    let _ = self.send(infer_event::Event::Done(done)).await;
                    return Attempt::Over(charged);
                }
                Some(worker_event::Event::Error(err)) => {
                    let code = ErrorCode::of(&err);
                    let retryable =
                        matches!(code, ErrorCode::EngineFailed | ErrorCode::WorkersBusy);
                    if !first_byte && retryable && attempt == 1 {
                        return Attempt::Retry(format!(
                            "worker {} failed: {}",
                            worker.id, err.message
                        ));
                    }
                    active.fail(code.reason());
                    self.error(code, err.message, err.http_status, !first_byte)
                        .await;
                    return Attempt::Over(false);
                }
                None => {}
            }
        }
    }

    /// Forwards a burst of chunks to the client, in order, counting each
    /// one delivered as it goes.
    async fn forward(
        &self,
        lease: &crate::Lease,
        burst: Vec<(Bytes, Usage)>,
        meter: &mut Meter,
    ) -> Result<(), &'static str> {
        for (bytes, through) in burst {
            tokio::select! {
                r = self.send(infer_event::Event::Chunk(bytes)) => r.map_err(|()| "client_cancelled")?,
                _ = lease.overflow() => return Err("client_too_slow"),
            }
            meter.delivered(through);
        }
        Ok(())
    }

    /// Settles a finished answer (recording its usage) and stamps the cost
    /// and the client's voucher on `done`; true when it was charged.
    async fn finish(
        &self,
        h: &Hold<'_>,
        worker: &crate::WorkerHandle,
        done: &mut Completion,
    ) -> bool {
        let usage = usage_of(done);
        self.shared.metrics.record_usage(&usage);
        self.charge(h, worker, h.cost(&usage), done).await
    }

    /// Reserves the request's maximum cost at `worker`'s coefficient. On
    /// refusal: the error code, reason, message and HTTP status to answer.
    async fn reserve<'p>(
        &self,
        p: &'p crate::Payments,
        client: &tycho_types::models::StdAddr,
        worker: &crate::WorkerHandle,
    ) -> Result<Hold<'p>, (ErrorCode, &'static str, String, u32)> {
        let internal = |m: String| (ErrorCode::Internal, "internal", m, 500);
        let coefficient = cocoon_core::Coefficient::new(u64::from(worker.coefficient()))
            .map_err(|e| internal(e.to_string()))?;
        let payee = worker
            .payee
            .as_ref()
            .ok_or_else(|| internal(format!("worker {} has no payee address", worker.id)))?;
        let max = p
            .max_cost(self.req.body.len(), self.req.max_tokens, coefficient)
            .map_err(|e| internal(format!("maximum cost: {e}")))?;
        match p
            .reserve(&self.req.request_id, client, payee, max.client)
            .await
        {
            Ok(()) => Ok(Hold {
                payments: p,
                coefficient,
                reserved: max.client,
            }),
            Err(cocoon_pay::LedgerError::Account(
                e @ cocoon_pay::AccountError::InsufficientFunds { .. },
            )) => Err((
                ErrorCode::InsufficientFunds,
                "insufficient_funds",
                format!("{e}; top up the client's balance or lower max_tokens"),
                402,
            )),
            Err(cocoon_pay::LedgerError::Account(e @ cocoon_pay::AccountError::NotActive(_))) => {
                Err((
                    ErrorCode::InsufficientFunds,
                    "insufficient_funds",
                    e.to_string(),
                    402,
                ))
            }
            Err(e) => Err(internal(format!("the ledger could not reserve: {e}"))),
        }
    }

    /// Makes the cost of everything through a chunk durable before the
    /// chunk is forwarded, so a crash cannot lose it.
    async fn checkpoint(
        &self,
        h: &Hold<'_>,
        meter: &mut Meter,
        through: &Usage,
    ) -> Result<(), cocoon_pay::LedgerError> {
        let charge = h.cost(through);
        if meter.above_durable(&charge) {
            h.payments
                .ledger
                .submit(cocoon_pay::Op::Progress {
                    request: self.req.request_id.clone(),
                    charge,
                })
                .await?;
            meter.made_durable(&charge);
        }
        Ok(())
    }

    /// Charges an answer cut off midway for what reached the client, and
    /// sends the worker its voucher.
    async fn charge_partial(&self, h: &Hold<'_>, worker: &crate::WorkerHandle, meter: &Meter) {
        let usage = meter.delivered_usage();
        let charge = h.cost(&usage);
        if charge.client == cocoon_core::Nanoton::ZERO {
            // Nothing billable reached the client (an opening role chunk).
            h.payments.release(&self.req.request_id).await;
            return;
        }
        let mut done = Completion::default();
        if self.charge(h, worker, charge, &mut done).await {
            tracing::info!(
                chunks = meter.delivered_chunks(),
                prompt = usage.prompt,
                completion = usage.completion,
                cost = done.cost_nanoton,
                "charged a cut-off answer for what was delivered"
            );
        }
    }

    async fn release(&self, hold: &Option<Hold<'_>>) {
        if let Some(h) = hold {
            h.payments.release(&self.req.request_id).await;
        }
    }

    /// Charges the request `charge`, stamps the cost and the client's
    /// voucher on `done`, and sends the worker its voucher.
    async fn charge(
        &self,
        h: &Hold<'_>,
        worker: &crate::WorkerHandle,
        charge: Charge,
        done: &mut Completion,
    ) -> bool {
        match h.payments.settle(&self.req.request_id, charge).await {
            Ok(s) => {
                done.cost_nanoton = s.charged.client.get();
                if let Some(v) = &s.client_voucher {
                    done.client_voucher = v.to_boc().unwrap_or_default().into();
                }
                if let Some(boc) = s.worker_voucher.as_ref().and_then(|v| v.to_boc().ok()) {
                    let msg = ProxyMessage {
                        msg: Some(proxy_message::Msg::Voucher(cocoon_proto::WorkerVoucher {
                            voucher: boc.into(),
                        })),
                    };
                    let _ = worker.send(msg).await;
                }
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "charging a finished request failed; its reservation stays for recovery");
                true
            }
        }
    }

    async fn send(&self, event: infer_event::Event) -> Result<(), ()> {
        self.to_client
            .send(Ok(InferEvent { event: Some(event) }))
            .await
            .map_err(|_| ())
    }

    async fn error(
        &self,
        code: ErrorCode,
        message: String,
        http_status: u32,
        before_first_byte: bool,
    ) {
        let _ = self
            .send(infer_event::Event::Error(InferError {
                code: code as i32,
                message,
                http_status,
                before_first_byte,
            }))
            .await;
    }

    async fn cancel(&self, worker: &crate::WorkerHandle) {
        let msg = ProxyMessage {
            msg: Some(proxy_message::Msg::Cancel(CancelRequest {
                request_id: self.req.request_id.clone(),
            })),
        };
        let _ = worker.send(msg).await;
    }
}

/// The token counts of a finished answer.
fn usage_of(done: &Completion) -> Usage {
    Usage {
        prompt: done.prompt_tokens,
        cached: done.cached_tokens,
        completion: done.completion_tokens,
        reasoning: done.reasoning_tokens,
    }
}
