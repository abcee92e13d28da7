//! The client: an OpenAI-compatible HTTP API for apps, forwarding each
//! request over one long-lived, mutually authenticated connection to a
//! proxy, and streaming the answer back as server-sent events.

pub mod access;
mod aci;
mod admission;
mod api;
mod attestation;
mod contract;
mod e2e;
mod history;
pub mod idempotency;
mod payments;
mod receipts;
pub mod web;

pub use cocoon_pay::dev_address;
mod link;
pub mod openai;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cocoon_proto::client_gateway_client::ClientGatewayClient;
use cocoon_telemetry::RequestMetrics;
use cocoon_transport::{PeerVerifier, Trust};
use tokio::sync::watch;
use tonic::transport::Channel;

/// Everything the client needs to start.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Name in logs, certificates and stats.
    pub name: String,
    /// Where the OpenAI-compatible API (and `/metrics`, `/stats`,
    /// `/jsonstats`) is served.
    pub listen: SocketAddr,
    /// The proxy's `HOST:PORT`.
    pub proxy: String,
    /// How the proxy is verified.
    pub trust: Trust,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Highest worker coefficient accepted when a request does not say.
    pub default_max_coefficient: Option<u32>,
    /// Trust requirements every request is held to; an API key's and the
    /// request's own may only tighten them.
    pub default_trust: cocoon_core::trust::TrustRequirements,
    /// Deadline for requests that do not set one.
    pub default_timeout: Duration,
    /// Who pays, when the proxy charges ("0:<hex>"); `None` uses
    /// [`dev_address`] of the name.
    pub address: Option<tycho_types::models::StdAddr>,
    /// A development deposit made when the account is empty (development
    /// ledgers only).
    pub dev_deposit: Option<cocoon_core::Nanoton>,
    /// Where this client's money lives on chain (`GET /v1/cocoon/chain`).
    pub chain: Option<ChainInfo>,
    /// The wallet that owns the client's contract: deposits
    /// (`POST /v1/cocoon/deposit`) are top-ups it sends on chain.
    pub wallet: Option<ClientWallet>,
    /// Check every answer's receipt against the worker's attested
    /// certificate. Off only to measure what receipts cost, in development
    /// mode.
    pub check_receipts: bool,
    /// Who may call the API: API keys, Telegram sign-in.
    pub access: access::AccessConfig,
}

/// The client's wallet on a chain.
#[derive(Clone)]
pub struct ClientWallet {
    /// The chain's API.
    pub chain: std::sync::Arc<cocoon_chain::Toncenter>,
    /// The wallet.
    pub wallet: std::sync::Arc<cocoon_chain::WalletV5>,
    /// The client contract's initial state, sent with the first top-up
    /// while the contract does not exist yet.
    pub contract_init: Option<tycho_types::models::StateInit>,
}

impl std::fmt::Debug for ClientWallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientWallet")
            .field("wallet", &self.wallet.address())
            .finish()
    }
}

/// The client's accounts on chain, as `GET /v1/cocoon/chain` reports them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChainInfo {
    /// The chain API the network uses (toncenter v2).
    pub endpoint: String,
    /// The root registry.
    pub root: String,
    /// The proxy's contract.
    pub proxy_contract: String,
    /// The client's contract (its payer address).
    pub client_contract: String,
    /// The wallet that owns the client's contract.
    pub client_wallet: String,
}

/// Binds the API's port: the listener and the address it got.
async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), ClientError> {
    let failed = |reason| ClientError::Listen { addr, reason };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(failed)?;
    let bound = listener.local_addr().map_err(failed)?;
    Ok((listener, bound))
}

/// Why the client could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TLS identity could not be created.
    #[error(transparent)]
    Credentials(#[from] cocoon_transport::CredentialsError),
    /// The proxy address is unusable.
    #[error(transparent)]
    Dial(#[from] cocoon_transport::DialError),
    /// Access control could not start.
    #[error(transparent)]
    Access(#[from] access::AccessError),
    /// The ACI keys could not be made.
    #[error(transparent)]
    AciKeys(#[from] aci::KeyGenError),
    /// The secret that keys idempotency keys could not be read or made.
    #[error("the idempotency secret in the client's state folder: {0}")]
    IdempotencySecret(std::io::Error),
    /// The API would be open to the network without keys.
    #[error("refusing to serve the API on {addr} without API keys: anyone who can reach it could spend this client's money. Start it on 127.0.0.1 first, create a key (`cocoon client keys create`), then listen beyond loopback; or pass --open-api to serve it open on purpose")]
    OpenBeyondLoopback {
        /// The address.
        addr: SocketAddr,
    },
    /// The API listener could not start.
    #[error("cannot listen for the API on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        reason: std::io::Error,
    },
}

/// State shared by the API handlers.
pub(crate) struct Shared {
    pub(crate) config: ClientConfig,
    pub(crate) proxy: ClientGatewayClient<Channel>,
    pub(crate) metrics: Arc<RequestMetrics>,
    pub(crate) proxy_up: AtomicBool,
    /// Judges the proxy; remembers the last proxy it accepted.
    pub(crate) proxy_verifier: std::sync::Arc<dyn PeerVerifier>,
    /// Workers' attestations as reported by the proxy.
    pub(crate) attestation: attestation::WorkersSeen,
    /// This client as an ACI service: its keys, receipts and sessions.
    pub(crate) aci: aci::Aci,
    /// The workers requests are sealed to, verified, by model.
    pub(crate) rosters: e2e::Rosters,
    /// Who pays.
    pub(crate) address: tycho_types::models::StdAddr,
    /// Vouchers and trust in the proxy's accounting.
    pub(crate) payments: payments::ClientPayments,
    /// Becomes true once a hello (and any development deposit) completed:
    /// until then the client does not know the proxy's terms.
    pub(crate) introduced: watch::Sender<bool>,
    pub(crate) proxy_name: Mutex<String>,
    pub(crate) started: Instant,
    /// Workers' certificates and receipts, checked here.
    pub(crate) receipts: receipts::Receipts,
    /// Who may call, and what they may spend.
    pub(crate) access: Arc<access::Access>,
    /// The proxy's prices from its last hello, when it charges.
    pub(crate) prices: Mutex<admission::Tariff>,
    /// Tokens and spend per minute, for the explorer.
    pub(crate) history: history::History,
    /// The registry as last read, for the explorer.
    pub(crate) registry: web::RegistryCache,
    /// Keys apps' idempotency keys and request fingerprints.
    pub(crate) idempotency: idempotency::IdempotencySecret,
}

impl Shared {
    /// The trust requirements `who`'s requests are held to: this client's,
    /// tightened by the caller's API key.
    pub(crate) fn trust_defaults(
        &self,
        who: &access::Principal,
    ) -> Result<cocoon_core::trust::TrustRequirements, openai::ApiError> {
        let client = &self.config.default_trust;
        match self.access.trust_defaults(who) {
            Some(app) => client.tightened_by(&app).map_err(|e| {
                openai::ApiError::invalid(
                    "cocoon.trust",
                    "trust_loosened",
                    format!("the API key's {e}"),
                )
            }),
            None => Ok(client.clone()),
        }
    }
}

/// Access control, refusing an API open beyond loopback unless asked for.
fn open_access(config: &ClientConfig) -> Result<Arc<access::Access>, ClientError> {
    let beyond = !config.listen.ip().is_loopback();
    let exposed = beyond && !config.access.open_beyond_loopback;
    let access = Arc::new(access::Access::open(&config.access, exposed)?);
    if beyond && !access.restricted_by_credentials() {
        if !config.access.open_beyond_loopback {
            return Err(ClientError::OpenBeyondLoopback {
                addr: config.listen,
            });
        }
        tracing::warn!(listen = %config.listen, "OPEN API: serving beyond loopback without API keys (--open-api); anyone who reaches it spends this client's money");
    }
    Ok(access)
}

/// A running client.
pub struct Client {
    /// Bound API address.
    pub listen: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Client {
    /// Binds the API and starts the link to the proxy. Returns once
    /// listening; requests made while the proxy is unreachable get a 503.
    pub async fn start(config: ClientConfig) -> Result<Client, ClientError> {
        let access = open_access(&config)?;
        let credentials =
            config
                .trust
                .credentials(cocoon_core::Role::Client, &config.name, None)?;
        let verifier = config
            .trust
            .verifier("client: proxy", &[cocoon_core::Role::Proxy]);
        let channel = cocoon_transport::channel(&config.proxy, credentials, verifier.clone())?;
        let max = cocoon_proto::MAX_MESSAGE_BYTES;
        let proxy = ClientGatewayClient::new(channel)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let (listener, listen) = bind(config.listen).await?;
        let address = config
            .address
            .clone()
            .unwrap_or_else(|| cocoon_pay::dev_address(&config.name));
        if !config.check_receipts {
            tracing::warn!("DEVELOPMENT MODE: this client checks NO receipts; answers from any worker are accepted unverified. Only for measuring what receipts cost.");
        }
        let aci = aci::Aci::new(&config.name)?;
        let idempotency =
            idempotency::IdempotencySecret::load_or_create(config.access.state_dir.as_deref())
                .map_err(ClientError::IdempotencySecret)?;
        let shared = Arc::new(Shared {
            receipts: receipts::Receipts::new(&config.trust, config.check_receipts),
            config,
            proxy,
            metrics: Arc::new(RequestMetrics::default()),
            proxy_up: AtomicBool::new(false),
            proxy_verifier: verifier,
            attestation: attestation::WorkersSeen::default(),
            aci,
            rosters: e2e::Rosters::default(),

            address,
            payments: payments::ClientPayments::default(),
            introduced: watch::channel(false).0,
            proxy_name: Mutex::new(String::new()),
            started: Instant::now(),
            access,
            prices: Mutex::new(admission::Tariff::Unknown),
            history: history::History::default(),
            registry: web::RegistryCache::default(),
            idempotency,
        });
        let (shutdown, rx) = watch::channel(false);
        let link = tokio::spawn(link::run(shared.clone(), rx.clone()));
        let app = api::router(shared.clone());
        let mut rx2 = rx;
        let server = tokio::spawn(async move {
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx2.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "client API server stopped");
            }
        });
        tracing::info!(
            name = %shared.config.name,
            api = %format!("http://{listen}/v1"),
            proxy = %shared.config.proxy,
            trust = %shared.config.trust.describe(),
            "client started"
        );
        Ok(Client {
            listen,
            shutdown,
            tasks: vec![link, server],
        })
    }

    /// Stops serving and waits for open requests to end (at most 5 s).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}
