//! The worker's session with its proxy: hello, then requests in, events out.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cocoon_core::RequestId;
use cocoon_engine::{EngineError, EngineEvent, GenerateRequest};
use cocoon_proto::worker_gateway_client::WorkerGatewayClient;
use cocoon_proto::{
    proxy_message, worker_event, worker_message, Completion, ErrorCode, InferError, ProxyMessage,
    TokenCounts, WorkRequest, WorkerCertificate, WorkerEvent, WorkerHello, WorkerMessage,
    WorkerUpdate,
};
use cocoon_receipt::{digest, ReceiptBody, ReceiptSigner};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;
use tracing::Instrument;

use crate::jobs::Refused;
use crate::Shared;

/// Messages waiting for the connection to the proxy.
const OUTBOUND_QUEUE: usize = 1024;

/// The session's messages to the proxy, and which receipt certificate the
/// proxy knows for it.
#[derive(Clone)]
struct Outbound {
    tx: mpsc::Sender<WorkerMessage>,
    announced: Arc<Mutex<String>>,
}

/// The session with the proxy has closed.
struct Closed;

impl Outbound {
    async fn send(&self, msg: WorkerMessage) -> Result<(), Closed> {
        self.tx.send(msg).await.map_err(|_| Closed)
    }

    /// Sends `signer`'s certificate unless the proxy has it for this
    /// session: a receipt must never reach the proxy before the
    /// certificate that verifies it.
    async fn announce(&self, signer: &ReceiptSigner) -> Result<(), Closed> {
        let known = |a: &Mutex<String>| {
            *a.lock().unwrap_or_else(|p| p.into_inner()) == signer.certificate_sha256()
        };
        if known(&self.announced) {
            return Ok(());
        }
        let der = signer.certificate().to_vec().into();
        self.send(WorkerMessage {
            msg: Some(worker_message::Msg::Certificate(WorkerCertificate { der })),
        })
        .await?;
        *self.announced.lock().unwrap_or_else(|p| p.into_inner()) =
            signer.certificate_sha256().to_string();
        Ok(())
    }
}

/// Keeps a session with the proxy until shutdown, reconnecting with backoff.
/// The log shows the session's changes (connected, lost, back after an
/// outage), one line each; retries during an outage are at debug level.
pub(crate) async fn run(
    shared: Arc<Shared>,
    channel: Channel,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff =
        cocoon_transport::Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut link = cocoon_transport::LinkLog::new();
    loop {
        let opened = tokio::select! {
            r = connect(&shared, channel.clone(), &mut backoff, &mut link) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let outcome = match opened {
            Ok(open) => serve(&shared, open, &mut shutdown).await,
            Err(e) => Err(e),
        };
        shared.connected.store(false, Ordering::Relaxed);
        if *shutdown.borrow() {
            return;
        }
        let aborted = shared.jobs.abort_all();
        let delay = backoff.next_delay();
        let error = match &outcome {
            Ok(()) => "the proxy closed the session".to_string(),
            Err(e) => e.to_string(),
        };
        let change = link.down();
        let worker = &shared.config.name;
        if change == cocoon_transport::LinkDown::Lost || aborted > 0 {
            tracing::warn!(%worker, aborted, retry_in = ?delay, error, "lost the session with the proxy; reconnecting with backoff");
        } else if change.is_news() {
            tracing::warn!(%worker, retry_in = ?delay, error, "no session with the proxy; retrying with backoff");
        } else {
            tracing::debug!(retry_in = ?delay, error, "no session with the proxy");
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Why a session with the proxy could not open, or ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    /// The proxy refused the call.
    #[error("{proxy}: {}", .status.message())]
    Refused {
        /// The proxy's address.
        proxy: String,
        /// Its answer.
        status: tonic::Status,
    },
    /// The proxy answered hello with something else.
    #[error("proxy did not answer hello with welcome")]
    NoWelcome,
    /// The proxy ended the session before welcoming this worker.
    #[error("proxy closed the session during hello")]
    ClosedDuringHello,
    /// The stream failed.
    #[error("session failed: {}", .0.message())]
    Failed(tonic::Status),
    /// This side's queue to the proxy closed.
    #[error("outbound queue closed")]
    Closed,
    /// The proxy's vouchers or ledger fail this worker's checks.
    #[error(transparent)]
    ProxyRefused(#[from] crate::earnings::ProxyRefused),
}

/// A session the proxy has welcomed.
struct Open {
    /// Messages to the proxy; the session's request stream ends when every
    /// sender is gone.
    out: Outbound,
    inbound: tonic::Streaming<cocoon_proto::ProxyMessage>,
    coefficient: watch::Receiver<cocoon_core::Coefficient>,
}

/// Opens a session: hello, then the proxy's welcome.
async fn connect(
    shared: &Arc<Shared>,
    channel: Channel,
    backoff: &mut cocoon_transport::Backoff,
    link: &mut cocoon_transport::LinkLog,
) -> Result<Open, SessionError> {
    let max = cocoon_proto::MAX_MESSAGE_BYTES;
    let mut client = WorkerGatewayClient::new(channel)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let (tx, out_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let signer = shared.receipts.current();
    let out_tx = Outbound {
        tx,
        announced: Arc::new(Mutex::new(
            signer
                .as_ref()
                .map(|s| s.certificate_sha256().to_string())
                .unwrap_or_default(),
        )),
    };
    let mut coefficient = shared.coefficient.subscribe();
    let certificate: Vec<u8> = signer
        .as_ref()
        .map(|s| s.certificate().to_vec())
        .unwrap_or_default();
    let announced = *coefficient.borrow_and_update();
    out_tx
        .send(hello(shared, certificate, announced))
        .await
        .map_err(|_| SessionError::Closed)?;
    let response = client
        .session(tokio_stream::wrappers::ReceiverStream::new(out_rx))
        .await
        .map_err(|status| SessionError::Refused {
            proxy: shared.config.proxy.to_string(),
            status,
        })?;
    let mut inbound = response.into_inner();
    let welcome = match inbound.message().await {
        Ok(Some(ProxyMessage {
            msg: Some(proxy_message::Msg::Welcome(w)),
        })) => w,
        Ok(Some(_)) => return Err(SessionError::NoWelcome),
        Ok(None) => return Err(SessionError::ClosedDuringHello),
        Err(status) => return Err(SessionError::Failed(status)),
    };
    welcomed(shared, &welcome, link)?;
    shared.connected.store(true, Ordering::Relaxed);
    shared.connections.fetch_add(1, Ordering::Relaxed);
    backoff.reset();
    Ok(Open {
        out: out_tx,
        inbound,
        coefficient,
    })
}

/// The session's first message: what this worker serves, at what price,
/// with the certificate its receipts name.
fn hello(
    shared: &Shared,
    certificate: Vec<u8>,
    coefficient: cocoon_core::Coefficient,
) -> WorkerMessage {
    // On a chain the wallet that owns the worker contract vouches for this
    // certificate, so that the proxy knows whose stake backs its answers.
    let (owner_key, owner_signature) = match &shared.config.chain {
        Some(c) => {
            let key = c.wallet.key();
            let sha = cocoon_receipt::digest::sha256(&certificate);
            (
                key.public_key().to_vec(),
                key.sign_worker_owner(&sha, &shared.address).to_vec(),
            )
        }
        None => (Vec::new(), Vec::new()),
    };
    WorkerMessage {
        msg: Some(worker_message::Msg::Hello(WorkerHello {
            protocol_version: cocoon_core::PROTOCOL_VERSION,
            worker_id: shared.config.name.clone(),
            model: shared.config.model.to_string(),
            coefficient: coefficient.per_mille(),
            max_active_requests: shared.config.max_active_requests,
            model_hash: shared
                .engine
                .model_hash()
                .map(|h| h.to_hex())
                .unwrap_or_default(),
            worker_address: shared.address.to_string(),
            certificate: certificate.into(),
            owner_key: owner_key.into(),
            owner_signature: owner_signature.into(),
        })),
    }
}

/// Takes in the proxy's welcome: its voucher (checked), its name for the
/// receipts, and the link's state for the log.
fn welcomed(
    shared: &Shared,
    w: &cocoon_proto::ProxyWelcome,
    link: &mut cocoon_transport::LinkLog,
) -> Result<(), SessionError> {
    shared.earnings.on_welcome(&shared.address, w)?;
    *shared
        .receipts
        .proxy
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = cocoon_receipt::ProxyIdentity {
        name: w.proxy_name.clone(),
        contract: (!w.contract_address.is_empty()).then(|| w.contract_address.clone()),
    };
    let addr = &shared.config.proxy;
    let worker = &shared.config.name;
    match link.up() {
        cocoon_transport::LinkUp::Reconnected { outage, failures } => tracing::info!(
            %worker,
            proxy = %w.proxy_name,
            %addr,
            outage = ?Duration::from_secs(outage.as_secs().max(1)),
            failed_attempts = failures,
            "reconnected to proxy"
        ),
        _ => tracing::info!(%worker, proxy = %w.proxy_name, %addr, "connected to proxy"),
    }
    Ok(())
}

/// Serves the session until it ends; `Ok` when the proxy closed it or this
/// worker shut down and closed it cleanly.
async fn serve(
    shared: &Arc<Shared>,
    open: Open,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let Open {
        out: out_tx,
        mut inbound,
        mut coefficient,
    } = open;
    loop {
        tokio::select! {
            () = stopping(shutdown) => {
                // End the request stream and let the proxy end its side, so
                // it sees a closed session rather than a broken one.
                drop(out_tx);
                let drain = async { while let Ok(Some(_)) = inbound.message().await {} };
                let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
                return Ok(());
            }
            msg = inbound.message() => {
                let msg = match msg {
                    Ok(Some(m)) => m,
                    Ok(None) => return Ok(()),
                    Err(status) => return Err(SessionError::Failed(status)),
                };
                match msg.msg {
                    Some(proxy_message::Msg::Request(req)) => admit(shared, req, &out_tx).await,
                    Some(proxy_message::Msg::Cancel(c)) => {
                        if shared.jobs.cancel(&c.request_id) {
                            tracing::info!(id = %c.request_id, "cancelled by proxy");
                        }
                    }
                    Some(proxy_message::Msg::Voucher(v)) => shared.earnings.on_voucher(&v.voucher)?,
                    Some(proxy_message::Msg::Score(s)) => score(shared, s, &out_tx),
                    Some(proxy_message::Msg::Welcome(_)) | None => {}
                }
            }
            changed = coefficient.changed() => {
                if changed.is_err() {
                    continue;
                }
                let c = coefficient.borrow_and_update().per_mille();
                let update = WorkerMessage { msg: Some(worker_message::Msg::Update(WorkerUpdate { coefficient: c })) };
                if out_tx.send(update).await.is_err() {
                    return Err(SessionError::Closed);
                }
            }
        }
    }
}

fn event(request_id: &str, e: worker_event::Event) -> WorkerMessage {
    WorkerMessage {
        msg: Some(worker_message::Msg::Event(WorkerEvent {
            request_id: request_id.to_string(),
            event: Some(e),
            so_far: None,
        })),
    }
}

/// A failure event; `engine_status` is the engine's refusal status for
/// `EngineRejected`, 0 otherwise.
fn error_event(
    request_id: &str,
    code: ErrorCode,
    message: String,
    engine_status: u32,
    before_first_byte: bool,
) -> WorkerMessage {
    event(
        request_id,
        worker_event::Event::Error(InferError {
            code: code as i32,
            message,
            engine_status,
            before_first_byte,
            retry_after_seconds: 0,
        }),
    )
}

/// Refuses a request before any work was done on it.
async fn refuse(out: &Outbound, request_id: &str, code: ErrorCode, message: String) {
    let _ = out
        .send(error_event(request_id, code, message, 0, true))
        .await;
}

async fn admit(shared: &Arc<Shared>, req: WorkRequest, out: &Outbound) {
    let id = match RequestId::parse(&req.request_id) {
        Ok(id) => id,
        Err(e) => {
            refuse(out, &req.request_id, ErrorCode::BadRequest, e.to_string()).await;
            return;
        }
    };
    let endpoint = match cocoon_proto::convert::endpoint(req.endpoint) {
        Ok(e) => e,
        Err(e) => {
            refuse(out, id.as_str(), ErrorCode::BadRequest, e.to_string()).await;
            return;
        }
    };
    let terms = match charged_at(&req) {
        Ok(t) => t,
        Err(e) => {
            refuse(out, id.as_str(), ErrorCode::BadRequest, e.to_string()).await;
            return;
        }
    };
    let sign = shared.config.sign_receipts;
    let (body, seal, request_sha256) = match crate::sealed::body(shared, &req, endpoint, sign) {
        Ok(opened) => opened,
        Err(why) => {
            tracing::warn!(request = %id, %why, "refused a sealed request");
            refuse(out, id.as_str(), ErrorCode::BadRequest, why).await;
            return;
        }
    };
    let facts = Facts {
        sign,
        deterministic: sign && digest::deterministic(&body),
        request_sha256,
        stream: req.stream,
        seal,
        started_at_ms: unix_ms(),
        terms,
    };
    let generate = GenerateRequest {
        request_id: id.clone(),
        endpoint,
        body,
        stream: facts.stream,
    };
    let timeout = match req.timeout_ms {
        0 => cocoon_core::DEFAULT_TIMEOUT,
        ms => Duration::from_millis(ms),
    };
    let span = tracing::info_span!("request", id = %id);
    let job_shared = shared.clone();
    let job_out = out.clone();
    let admitted = shared.jobs.admit(id.as_str(), || {
        tokio::spawn(
            async move {
                let key = generate.request_id.as_str().to_string();
                run_job(&job_shared, generate, facts, timeout, &job_out).await;
                job_shared.jobs.finished(&key);
            }
            .instrument(span),
        )
        .abort_handle()
    });
    match admitted {
        Ok(()) => {}
        Err(Refused::Full(max)) => {
            shared.metrics.record_error("at_capacity");
            let msg = format!(
                "worker {} is at its limit of {max} active requests",
                shared.config.name
            );
            refuse(out, id.as_str(), ErrorCode::WorkersBusy, msg).await;
        }
        Err(Refused::Duplicate) => {
            let msg = format!("request {id} is already running on this worker");
            refuse(out, id.as_str(), ErrorCode::BadRequest, msg).await;
        }
    }
}

/// What the receipt states besides the engine's answer.
struct Facts {
    /// Whether this worker signs receipts at all (off only in a
    /// development benchmark): nothing below is computed without.
    sign: bool,
    request_sha256: String,
    /// Temperature 0 or a seed: the receipt states the content digest.
    deterministic: bool,
    stream: bool,
    /// For a sealed request: seals its answer.
    seal: Option<crate::sealed::Seal>,
    started_at_ms: u64,
    terms: Option<(cocoon_core::PriceList, cocoon_core::Coefficient)>,
}

/// The prices and coefficient the proxy charges the request at, if any.
fn charged_at(
    req: &WorkRequest,
) -> Result<Option<(cocoon_core::PriceList, cocoon_core::Coefficient)>, BadTerms> {
    let Some(p) = &req.prices else {
        return Ok(None);
    };
    let prices = cocoon_proto::convert::prices(p)?;
    let coefficient = cocoon_proto::convert::coefficient(req.coefficient)?;
    Ok(Some((prices, coefficient)))
}

/// Prices or a coefficient in a request that no charge can be made at.
#[derive(Debug, thiserror::Error)]
enum BadTerms {
    /// The prices.
    #[error("request.prices: {0}")]
    Prices(#[from] cocoon_core::PriceError),
    /// The coefficient.
    #[error("request.coefficient: {0}")]
    Coefficient(#[from] cocoon_core::CoefficientError),
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a receipt hashes of an answer, gathered as its chunks go out;
/// for a sealed request, also what seals them (its digests are salted).
#[derive(Default)]
struct AnswerDigest {
    stream: digest::StreamDigest,
    /// A whole answer's body.
    whole: Vec<u8>,
    /// A deterministic stream's chunks, for its content digest.
    chunks: Vec<bytes::Bytes>,
    seal: Option<crate::sealed::Seal>,
    salt: Option<digest::Salt>,
}

/// The answer's digest, its content's (for a deterministic request), and,
/// for a sealed one, its content digest again for the proxy to compare
/// replicas by (empty otherwise).
type Digests = (String, Option<String>, String);

impl AnswerDigest {
    fn new(seal: Option<crate::sealed::Seal>) -> Self {
        let salt = seal.as_ref().map(|s| s.salt());
        AnswerDigest {
            stream: digest::StreamDigest::salted(salt.as_ref()),
            seal,
            salt,
            ..AnswerDigest::default()
        }
    }

    /// Records `data`, returning it as it goes out: sealed, for a sealed
    /// request.
    fn push(
        &mut self,
        facts: &Facts,
        data: bytes::Bytes,
    ) -> Result<bytes::Bytes, cocoon_seal::SealError> {
        let sealed = self.seal.is_some();
        match (facts.sign || sealed, facts.stream) {
            (false, _) => {}
            (true, true) => {
                self.stream.push(&data);
                if facts.deterministic || sealed {
                    self.chunks.push(data.clone());
                }
            }
            (true, false) => self.whole.extend_from_slice(&data),
        }
        match self.seal.as_mut() {
            Some(seal) => seal.seal(&data),
            None => Ok(data),
        }
    }

    fn finish(self, facts: &Facts) -> Digests {
        let salt = self.salt.as_ref();
        let answer = match facts.stream {
            true => self.stream.finish(),
            false => digest::whole_answer_salted(&self.whole, salt),
        };
        let content = |()| match facts.stream {
            true => digest::content_salted(true, &self.chunks, salt),
            false => digest::content_salted(false, &[&self.whole], salt),
        };
        // Replicas (which the client seeds) compare it; an answer sampled
        // at random has nothing to agree on.
        let content = facts.deterministic.then(|| content(()));
        let mac = match (&content, salt) {
            (Some(c), Some(_)) => c.clone(),
            _ => String::new(),
        };
        (answer, content, mac)
    }
}

/// An answer that stopped short: what failed, and whether any of it had
/// gone out.
type Cut = (EngineError, bool);

async fn run_job(
    shared: &Arc<Shared>,
    req: GenerateRequest,
    mut facts: Facts,
    timeout: Duration,
    out: &Outbound,
) {
    let id = req.request_id.as_str().to_string();
    let mut active = shared.metrics.start();
    let started = Instant::now();
    let mut digest = AnswerDigest::new(facts.seal.take());
    let answer = stream_answer(shared, req, &facts, &mut digest, &mut active, out);
    let Ok(result) = tokio::time::timeout(timeout, answer).await else {
        // The proxy owns the deadline and usually trips first; this is the
        // backstop, and it reports the same thing.
        active.fail("timeout");
        let msg = format!("the request's deadline passed ({} ms)", timeout.as_millis());
        let _ = out
            .send(error_event(&id, ErrorCode::Timeout, msg, 0, false))
            .await;
        return;
    };
    match result {
        Ok(c) => {
            shared.metrics.record_usage(&c.usage);
            active.succeed();
            let mut done = Completion {
                response_id: c.response_id,
                created: c.created,
                model: c.model,
                worker_micros: started.elapsed().as_micros() as u64,
                ..Default::default()
            };
            done.set_usage(c.usage);
            complete(shared, &id, done, facts, digest, out).await;
        }
        Err((e, sent)) => fail(&id, e, (sent, digest.seal.as_ref()), &mut active, out).await,
    }
}

/// Runs the engine and sends each chunk of its answer as it comes.
async fn stream_answer(
    shared: &Arc<Shared>,
    req: GenerateRequest,
    facts: &Facts,
    digest: &mut AnswerDigest,
    active: &mut cocoon_telemetry::ActiveRequest,
    out: &Outbound,
) -> Result<cocoon_engine::Completion, Cut> {
    let id = req.request_id.as_str().to_string();
    let mut stream = shared.engine.generate(req).await.map_err(|e| (e, false))?;
    let mut sent = false;
    while let Some(ev) = stream.next().await {
        let (data, so_far) = match ev {
            Ok(EngineEvent::Chunk { data, so_far }) => (data, so_far),
            Ok(EngineEvent::Done(c)) => return Ok(c),
            Err(e) => return Err((e, sent)),
        };
        if !sent {
            sent = true;
            active.first_byte();
        }
        let data = match digest.push(facts, data) {
            Ok(data) => data,
            Err(e) => {
                let why = EngineError::Failed(format!("sealing the answer failed: {e}"));
                return Err((why, sent));
            }
        };
        let mut msg = event(&id, worker_event::Event::Chunk(data));
        if let (Some(worker_message::Msg::Event(e)), Some(u)) = (&mut msg.msg, so_far) {
            e.so_far = Some(TokenCounts::from(u));
        }
        if out.send(msg).await.is_err() {
            let closed = EngineError::Failed("session with the proxy closed".into());
            return Err((closed, sent));
        }
    }
    let unfinished = EngineError::Failed("engine ended the answer without completing it".into());
    Err((unfinished, sent))
}

/// Signs the answer's receipt and sends its completion (after the receipt
/// certificate, if the proxy has not seen it yet).
async fn complete(
    shared: &Arc<Shared>,
    id: &str,
    mut done: Completion,
    facts: Facts,
    digest: AnswerDigest,
    out: &Outbound,
) {
    let (answer_sha256, content_sha256, content_mac) = digest.finish(&facts);
    done.content_mac = content_mac;
    if let Some(signer) = shared.receipts.current() {
        if facts.sign {
            let receipt = receipt(shared, id, &done, facts, answer_sha256, content_sha256);
            match shared.receipts.batcher.sign(&signer, receipt).await {
                Ok(signed) => done.receipt = signed.to_json().into(),
                Err(e) => tracing::error!(error = %e, "cannot sign this answer's receipt"),
            }
        }
        if out.announce(&signer).await.is_err() {
            return;
        }
    }
    let _ = out.send(event(id, worker_event::Event::Done(done))).await;
}

/// Reports an answer the engine could not complete.
/// `(sent, seal)`: whether part of the answer went out, and, for a sealed
/// request, its seal: the engine's message may quote the request, so it
/// goes out sealed to the client, and stays out of the worker's logs.
async fn fail(
    id: &str,
    e: EngineError,
    (sent, seal): (bool, Option<&crate::sealed::Seal>),
    active: &mut cocoon_telemetry::ActiveRequest,
    out: &Outbound,
) {
    let (code, status, reason) = match &e {
        EngineError::Rejected { status, .. } => (
            ErrorCode::EngineRejected,
            u32::from(*status),
            "engine_rejected",
        ),
        EngineError::Unavailable(_) => (ErrorCode::EngineFailed, 0, "engine_unavailable"),
        EngineError::Failed(_) => (ErrorCode::EngineFailed, 0, "engine_failed"),
        EngineError::BadRequest(_) => (ErrorCode::BadRequest, 0, "bad_request"),
    };
    active.fail(reason);
    let message = match e {
        EngineError::Rejected { message, .. } if seal.is_some() => {
            tracing::warn!(
                reason,
                "a sealed request failed (its message goes out sealed)"
            );
            seal.map(|s| s.seal_message(&message)).unwrap_or_default()
        }
        other if seal.is_some() => {
            tracing::warn!(
                reason,
                "a sealed request failed (its message goes out sealed)"
            );
            seal.map(|s| s.seal_message(&other.to_string()))
                .unwrap_or_default()
        }
        EngineError::Rejected { message, .. } => {
            tracing::warn!(error = %message, "request failed");
            message
        }
        other => {
            tracing::warn!(error = %other, "request failed");
            other.to_string()
        }
    };
    let _ = out
        .send(error_event(id, code, message, status, !sent))
        .await;
}

/// Scores another worker's answer under this worker's model, in the
/// background (the engine's scorer runs one at a time); the result, or why
/// it could not, goes back under the request's id.
fn score(shared: &Arc<Shared>, req: cocoon_proto::ScoreRequest, out: &Outbound) {
    let shared = shared.clone();
    let out = out.clone();
    tokio::spawn(async move {
        let id = req.request_id.clone();
        let endpoint = match cocoon_proto::convert::endpoint(req.endpoint) {
            Ok(e) => e,
            Err(e) => {
                let _ = out
                    .send(error_event(
                        &id,
                        ErrorCode::BadRequest,
                        e.to_string(),
                        0,
                        false,
                    ))
                    .await;
                return;
            }
        };
        let scored = shared
            .engine
            .score(cocoon_engine::ScoreRequest {
                endpoint,
                body: req.body,
                answer: req.answer,
            })
            .await;
        let msg = match scored {
            Ok(s) => event(
                &id,
                worker_event::Event::Scored(cocoon_proto::ScoreResult {
                    tokens: s.tokens,
                    mean_logprob: s.mean_logprob,
                    excess_surprise: s.excess_surprise,
                    top1_share: s.top1_share,
                }),
            ),
            Err(e) => error_event(&id, ErrorCode::EngineFailed, e.to_string(), 0, false),
        };
        let _ = out.send(msg).await;
    });
}

/// What the worker states about a completed answer (signed by the caller).
fn receipt(
    shared: &Shared,
    id: &str,
    done: &Completion,
    facts: Facts,
    answer_sha256: String,
    content_sha256: Option<String>,
) -> ReceiptBody {
    let usage = done.usage();
    let charge = facts
        .terms
        .as_ref()
        .and_then(|(prices, k)| prices.cost(&usage, *k).ok());
    ReceiptBody {
        version: cocoon_receipt::RECEIPT_VERSION,
        request_id: id.to_string(),
        request_sha256: facts.request_sha256,
        stream: facts.stream,
        answer_sha256,
        content_sha256,
        response_id: done.response_id.clone(),
        model: shared.config.model.to_string(),
        model_hash: shared.engine.model_hash().map(|h| h.to_hex()),
        usage: usage.into(),
        worker: shared.config.name.clone(),
        // Set by the signer.
        worker_certificate_sha256: String::new(),
        tee: None,
        image_hash: None,
        coefficient: facts.terms.as_ref().map_or_else(
            || shared.coefficient.borrow().per_mille(),
            |(_, k)| k.per_mille(),
        ),
        prices: charge.and(facts.terms.map(|(p, _)| p)),
        cost_nanoton: charge.map(|c| c.client.get()),
        worker_fee_nanoton: charge.map(|c| c.worker.get()),
        proxy: shared.receipts.proxy(),
        started_at_ms: facts.started_at_ms,
        finished_at_ms: unix_ms(),
    }
}

/// Resolves when the worker shuts down (holding no borrow of the flag).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
