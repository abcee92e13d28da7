//! One inference, from the client's call to the worker's last event:
//! choose a worker, forward, relay the answer, retry once if the worker
//! vanished before answering, cancel the worker if the client goes away.

use std::sync::Arc;
use std::time::Duration;

use cocoon_core::{RequestId, Usage};
use cocoon_proto::{
    infer_event, proxy_message, worker_event, Assigned, CancelRequest, Endpoint, ErrorCode,
    InferError, InferEvent, InferRequest, ProxyMessage, WorkRequest,
};
use tokio::sync::mpsc;
use tonic::Status;
use tracing::Instrument;

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

/// Chunks relayed between two durable progress checkpoints: a proxy crash
/// can leave at most this many delivered chunks uncharged.
const CHECKPOINT_CHUNKS: u64 = 16;

/// The usage charged for an answer cut off after `delivered` chunks: each
/// chunk carries about one completion token. Prompt tokens are not charged
/// for a cut-off answer until workers report running usage.
fn partial_usage(delivered: u64) -> Usage {
    Usage {
        prompt: 0,
        cached: 0,
        completion: delivered,
        reasoning: 0,
    }
}

/// What one attempt is metered against: its reservation (when the proxy
/// charges) and the chunks delivered so far.
struct Meter<'h, 'p> {
    hold: Option<&'h Hold<'p>>,
    delivered: u64,
}

/// A reservation held for one attempt.
struct Hold<'a> {
    payments: &'a crate::Payments,
    coefficient: cocoon_core::Coefficient,
}

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

            let mut meter = Meter {
                hold: hold.as_ref(),
                delivered: 0,
            };
            match self
                .attempt(
                    &lease,
                    events_rx,
                    deadline,
                    &mut active,
                    attempt,
                    &mut meter,
                )
                .await
            {
                Attempt::Over(charged) => {
                    lease.finish(true);
                    match (&hold, charged, meter.delivered) {
                        (_, true, _) => {}
                        (Some(h), false, n) if n > 0 => {
                            self.charge_partial(h, &worker, n).await;
                        }
                        _ => self.release(&hold).await,
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
    async fn attempt(
        &self,
        lease: &crate::Lease,
        mut events: mpsc::Receiver<worker_event::Event>,
        deadline: tokio::time::Instant,
        active: &mut cocoon_telemetry::ActiveRequest,
        attempt: u32,
        meter: &mut Meter<'_, '_>,
    ) -> Attempt {
        let hold = meter.hold;
        let worker = &*lease.worker;
        let mut first_byte = false;
        loop {
            let event = tokio::select! {
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
            };
            match event {
                Some(worker_event::Event::Chunk(bytes)) => {
                    if !first_byte {
                        first_byte = true;
                        active.first_byte();
                    }
                    meter.delivered += 1;
                    if let Some(h) = hold {
                        if meter.delivered.is_multiple_of(CHECKPOINT_CHUNKS) {
                            self.checkpoint(h, meter.delivered).await;
                        }
                    }
                    let sent = tokio::select! {
                        r = self.send(infer_event::Event::Chunk(bytes)) => r.map_err(|()| "client_cancelled"),
                        _ = lease.overflow() => Err("client_too_slow"),
                    };
                    if let Err(reason) = sent {
                        if reason == "client_too_slow" {
                            tracing::warn!(worker = %worker.id, "client stopped reading; cancelling");
                        }
                        self.cancel(worker).await;
                        active.fail(reason);
                        return Attempt::Over(false);
                    }
                }
                Some(worker_event::Event::Done(mut done)) => {
                    let usage = Usage {
                        prompt: done.prompt_tokens,
                        cached: done.cached_tokens,
                        completion: done.completion_tokens,
                        reasoning: done.reasoning_tokens,
                    };
                    self.shared.metrics.record_usage(&usage);
                    let charged = match hold {
                        Some(h) => self.charge(h, worker, &usage, &mut done).await,
                        None => false,
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
                None if lease.overflowed() => {
                    self.cancel(worker).await;
                    active.fail("client_too_slow");
                    return Attempt::Over(false);
                }
                None => {
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
                }
            }
        }
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

    /// Makes the cost of what was delivered so far durable, so a crash
    /// cannot lose it.
    async fn checkpoint(&self, h: &Hold<'_>, delivered: u64) {
        let Ok(charge) = h
            .payments
            .prices
            .cost(&partial_usage(delivered), h.coefficient)
        else {
            return;
        };
        if let Err(e) = h
            .payments
            .ledger
            .submit(cocoon_pay::Op::Progress {
                request: self.req.request_id.clone(),
                charge,
            })
            .await
        {
            tracing::warn!(error = %e, delivered, "could not record progress");
        }
    }

    /// Charges an answer cut off after `delivered` chunks for what was
    /// delivered, and sends the worker its voucher.
    async fn charge_partial(&self, h: &Hold<'_>, worker: &crate::WorkerHandle, delivered: u64) {
        let mut done = cocoon_proto::Completion::default();
        if self
            .charge(h, worker, &partial_usage(delivered), &mut done)
            .await
        {
            tracing::info!(
                delivered,
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

    /// Charges the finished request, stamps the cost and the client's
    /// voucher on `done`, and sends the worker its voucher.
    async fn charge(
        &self,
        h: &Hold<'_>,
        worker: &crate::WorkerHandle,
        usage: &Usage,
        done: &mut cocoon_proto::Completion,
    ) -> bool {
        match h
            .payments
            .settle(&self.req.request_id, usage, h.coefficient)
            .await
        {
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
