//! The worker: dials out to a proxy, announces its model, price coefficient
//! and capacity, and answers the proxy's requests with its engine. It keeps
//! the session alive across proxy restarts (reconnecting with backoff) and
//! aborts a request at the engine as soon as the proxy cancels it.

mod admin;
mod earnings;
mod jobs;
pub mod payout;
mod receipts;
mod sealed;
mod session;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cocoon_core::{Coefficient, ModelName};
use cocoon_engine::Engine;
use cocoon_telemetry::RequestMetrics;
use cocoon_transport::Trust;
use tokio::sync::watch;

/// Everything the worker needs to start.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Worker id announced to the proxy; unique per proxy.
    pub name: String,
    /// The proxy's `HOST:PORT`.
    pub proxy: String,
    /// Model name announced to the network.
    pub model: ModelName,
    /// Price coefficient announced to the proxy.
    pub coefficient: Coefficient,
    /// Most requests run at once.
    pub max_active_requests: u32,
    /// Where `/metrics`, `/stats`, `/jsonstats` and the admin API are served.
    pub http_listen: SocketAddr,
    /// How the proxy is verified.
    pub trust: Trust,
    /// Where earnings go when the proxy charges ("0:<hex>"); `None` uses
    /// the development address of the name.
    pub address: Option<tycho_types::models::StdAddr>,
    /// The chain, the wallet the worker's contract pays out to, and the
    /// contract's initial state: withdrawals (`POST /admin/withdraw`).
    pub chain: Option<payout::WorkerChain>,
    /// Sign a receipt for every answer. Off only to measure what receipts
    /// cost, in development mode: clients that check receipts refuse such
    /// a worker's answers.
    pub sign_receipts: bool,
    /// The key receipts are signed with (PKCS#8 Ed25519), kept in the data
    /// directory: every certificate's claims name it, and on a chain the
    /// worker registers it in its worker contract, so that slash evidence
    /// can be checked against it.
    pub receipt_key: Vec<u8>,
}

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The TLS identity could not be created.
    #[error(transparent)]
    Credentials(#[from] cocoon_transport::CredentialsError),
    /// The proxy address is unusable.
    #[error(transparent)]
    Dial(#[from] cocoon_transport::DialError),
    /// The HTTP listener could not start.
    #[error("cannot listen for HTTP on {addr}: {reason}")]
    HttpListen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        reason: std::io::Error,
    },
    /// The configuration is inconsistent.
    #[error("invalid worker configuration: {0}")]
    Config(String),
    /// The worker contract could not be given its minimum stake, or its
    /// receipt key.
    #[error("staking the worker contract: {0}")]
    Stake(String),
}

/// Tries at staking the worker contract's minimum at start.
const STAKE_ATTEMPTS: u32 = 5;

/// On a chain, before serving: stakes the worker contract's minimum and
/// registers the receipt key in it, so that the proxy admits the worker.
/// A refused message (another process using the same wallet got its seqno
/// first, a chain hiccup) is tried again after reading the contract anew;
/// a wallet that cannot pay is not.
async fn join_chain(shared: &Shared) -> Result<(), WorkerError> {
    let mut attempt = 0;
    let staked = loop {
        attempt += 1;
        match payout::ensure_stake(shared).await {
            Ok(staked) => break staked,
            Err(e)
                if attempt >= STAKE_ATTEMPTS
                    || matches!(e, payout::WithdrawError::CannotStake { .. }) =>
            {
                return Err(WorkerError::Stake(e.to_string()))
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "staking the worker contract failed; reading the stake again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    };
    if staked > cocoon_core::Nanoton::ZERO {
        tracing::info!(contract = %shared.address, %staked, "worker contract staked its minimum");
    }
    let key = shared.receipts.public_key();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match payout::ensure_receipt_key(shared, &key).await {
            Ok(true) => {
                tracing::info!(contract = %shared.address, key = %hex::encode(key), "receipt key registered in the worker contract");
                return Ok(());
            }
            Ok(false) => return Ok(()),
            Err(e) if attempt >= STAKE_ATTEMPTS => return Err(WorkerError::Stake(e.to_string())),
            Err(e) => {
                tracing::warn!(error = %e, attempt, "registering the receipt key failed; reading the contract again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

/// State shared by the session, the jobs and the HTTP endpoints.
pub(crate) struct Shared {
    pub(crate) config: WorkerConfig,
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) metrics: Arc<RequestMetrics>,
    pub(crate) coefficient: watch::Sender<Coefficient>,
    pub(crate) connected: AtomicBool,
    pub(crate) connections: AtomicU32,
    pub(crate) jobs: jobs::Jobs,
    pub(crate) started: Instant,
    /// Where earnings go.
    pub(crate) address: tycho_types::models::StdAddr,
    /// Vouchers from the proxy.
    pub(crate) earnings: earnings::Earnings,
    /// Signs a receipt for every answer.
    pub(crate) receipts: receipts::ReceiptKeys,
    /// Opens requests sealed to this worker, and seals their answers.
    pub(crate) e2e: cocoon_seal::WorkerKey,
}

/// A running worker.
pub struct Worker {
    /// Bound HTTP address.
    pub http_listen: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Binds the worker's HTTP port: the address asked for, and the one bound.
async fn listen(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), WorkerError> {
    let failed = |reason| WorkerError::HttpListen { addr, reason };
    let http = tokio::net::TcpListener::bind(addr).await.map_err(failed)?;
    let bound = http.local_addr().map_err(failed)?;
    Ok((http, bound))
}

/// Serves the admin and stats endpoints until shutdown.
async fn serve_http(
    http: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = admin::router(shared);
    let serve = axum::serve(http, app).with_graceful_shutdown(async move {
        let _ = shutdown.wait_for(|s| *s).await;
    });
    if let Err(e) = serve.await {
        tracing::error!(error = %e, "worker HTTP server stopped");
    }
}

/// The worker's RA-TLS credentials, whose claims name its receipt key and
/// its end-to-end key, made here, inside the TEE, and never written
/// anywhere: only this process can open what clients seal to it.
fn credentials(
    config: &WorkerConfig,
    engine: &dyn Engine,
) -> Result<
    (
        Arc<cocoon_transport::NodeCredentials>,
        cocoon_seal::WorkerKey,
    ),
    WorkerError,
> {
    let receipt_public = receipts::public_key(&config.receipt_key).map_err(|e| {
        WorkerError::Config(format!("the receipt key is not a PKCS#8 Ed25519 key: {e}"))
    })?;
    let e2e = cocoon_seal::WorkerKey::generate().map_err(|_| {
        WorkerError::Config("the system's randomness failed making the end-to-end key".into())
    })?;
    let credentials = config.trust.worker_credentials(
        &config.name,
        engine.model_hash(),
        receipt_public,
        e2e.public(),
    )?;
    Ok((credentials, e2e))
}

impl Worker {
    /// Starts the HTTP endpoints and the session with the proxy. Returns
    /// once listening; the proxy may still be unreachable (the worker keeps
    /// trying).
    pub async fn start(
        config: WorkerConfig,
        engine: Arc<dyn Engine>,
    ) -> Result<Worker, WorkerError> {
        if config.max_active_requests == 0 {
            return Err(WorkerError::Config(
                "max_active_requests must be at least 1, found 0".into(),
            ));
        }
        let (credentials, e2e) = credentials(&config, &*engine)?;
        let verifier = config
            .trust
            .verifier("worker: proxy", &[cocoon_core::Role::Proxy]);
        let own_verifier = match &config.trust {
            cocoon_transport::Trust::Attested(att) => Some(att.verifier().clone()),
            cocoon_transport::Trust::Insecure => None,
        };
        if !config.sign_receipts {
            tracing::warn!("DEVELOPMENT MODE: this worker signs NO receipts; clients that check receipts refuse its answers. Only for measuring what receipts cost.");
        }
        let receipts = receipts::ReceiptKeys::new(
            credentials.clone(),
            config.receipt_key.clone(),
            own_verifier,
        );
        let channel = cocoon_transport::channel(&config.proxy, credentials, verifier)?;
        let (http, http_listen) = listen(config.http_listen).await?;

        let (coefficient, _) = watch::channel(config.coefficient);
        let address = config
            .address
            .clone()
            .unwrap_or_else(|| cocoon_pay::dev_address(&config.name));
        let shared = Arc::new(Shared {
            receipts,
            e2e,
            address,
            earnings: earnings::Earnings::default(),
            jobs: jobs::Jobs::new(config.max_active_requests),
            config,
            engine,
            metrics: Arc::new(RequestMetrics::default()),
            coefficient,
            connected: AtomicBool::new(false),
            connections: AtomicU32::new(0),
            started: Instant::now(),
        });
        if shared.config.chain.is_some() {
            join_chain(&shared).await?;
        }
        let (shutdown, rx) = watch::channel(false);

        let session = tokio::spawn(session::run(shared.clone(), channel, rx.clone()));
        let payouts = tokio::spawn(payout::payouts(shared.clone(), rx.clone()));
        let http_task = tokio::spawn(serve_http(http, shared.clone(), rx));
        tracing::info!(
            name = %shared.config.name,
            proxy = %shared.config.proxy,
            model = %shared.config.model,
            coefficient = %shared.config.coefficient,
            max_active = shared.config.max_active_requests,
            engine = %shared.engine.describe(),
            %http_listen,
            "worker started"
        );
        Ok(Worker {
            http_listen,
            shared,
            shutdown,
            tasks: vec![session, http_task, payouts],
        })
    }

    /// Whether the worker holds a session with its proxy now.
    pub fn is_connected(&self) -> bool {
        self.shared
            .connected
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops taking requests, aborts running ones and closes the session.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.shared.jobs.abort_all();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}
