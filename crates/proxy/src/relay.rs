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
    /// Finished (answered, failed for good, or the client left).
    Over,
    /// The worker failed before its first byte; another may be tried.
    Retry(String),
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
                active.fail("client_cancelled");
                return;
            }

            match self
                .attempt(&lease, events_rx, deadline, &mut active, attempt)
                .await
            {
                Attempt::Over => {
                    lease.finish(true);
                    return;
                }
                Attempt::Retry(why) => {
                    lease.finish(false);
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
    ) -> Attempt {
        let worker = &*lease.worker;
        let mut first_byte = false;
        loop {
            let event = tokio::select! {
                biased;
                _ = self.to_client.closed() => {
                    tracing::info!(worker = %worker.id, "client went away; cancelling");
                    self.cancel(worker).await;
                    active.fail("client_cancelled");
                    return Attempt::Over;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.cancel(worker).await;
                    active.fail("timeout");
                    self.error(ErrorCode::Timeout, "the request's deadline passed".into(), 0, !first_byte).await;
                    return Attempt::Over;
                }
                ev = events.recv() => ev,
            };
            match event {
                Some(worker_event::Event::Chunk(bytes)) => {
                    if !first_byte {
                        first_byte = true;
                        active.first_byte();
                    }
                    let delivered = tokio::select! {
                        r = self.send(infer_event::Event::Chunk(bytes)) => r.map_err(|()| "client_cancelled"),
                        _ = lease.overflow() => Err("client_too_slow"),
                    };
                    if let Err(reason) = delivered {
                        if reason == "client_too_slow" {
                            tracing::warn!(worker = %worker.id, "client stopped reading; cancelling");
                        }
                        self.cancel(worker).await;
                        active.fail(reason);
                        return Attempt::Over;
                    }
                }
                Some(worker_event::Event::Done(done)) => {
                    self.shared.metrics.record_usage(&Usage {
                        prompt: done.prompt_tokens,
                        cached: done.cached_tokens,
                        completion: done.completion_tokens,
                        reasoning: done.reasoning_tokens,
                    });
                    active.first_byte();
                    active.succeed();
                    let _ = self.send(infer_event::Event::Done(done)).await;
                    return Attempt::Over;
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
                    return Attempt::Over;
                }
                None if lease.overflowed() => {
                    self.cancel(worker).await;
                    active.fail("client_too_slow");
                    return Attempt::Over;
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
                    return Attempt::Over;
                }
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
