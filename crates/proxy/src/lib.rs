//! The proxy: accepts clients and workers on one mutual-TLS gRPC listener,
//! routes each inference to a worker serving its model, relays the answer
//! chunk by chunk as opaque bytes, and reports load on its HTTP port.

mod admission;
pub mod client_contracts;
mod client_gateway;
mod idempotency;
mod meter;
mod payments;
mod peer_role;
mod registry;
pub mod registry_watch;
mod relay;
pub mod reputation;
mod settlement;
mod slashing;
mod spot_check;
mod stats;
mod worker_certificates;
mod worker_contract;
mod worker_gateway;
mod worker_id;

pub use admission::{QueueLimits, DEFAULT_MAX_WAITING};
pub use payments::{Charging, Payments, PriceBoard};
pub use registry::{Lease, NoWorker, WorkerHandle, WorkerRegistry};
pub use settlement::{SettleError, SettleFuture, Settlement};
pub use spot_check::{CheckRecord, SpotCheckConfig};
pub use worker_id::{Owner, WorkerId};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cocoon_proto::client_gateway_server::ClientGatewayServer;
use cocoon_proto::worker_gateway_server::WorkerGatewayServer;
use cocoon_telemetry::RequestMetrics;
use cocoon_transport::Trust;
use tokio::sync::watch;

/// Everything the proxy needs to start.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Name in logs, certificates and stats.
    pub name: String,
    /// Where clients and workers connect (mutual TLS, gRPC).
    pub listen: SocketAddr,
    /// Where `/metrics`, `/stats` and `/jsonstats` are served (plain HTTP).
    pub http_listen: SocketAddr,
    /// How peers are verified.
    pub trust: Trust,
    /// Deadline for requests that do not set one.
    pub default_timeout: Duration,
    /// How it charges: not at all, on a development ledger, or on a chain.
    pub charging: Charging,
    /// How requests wait when every worker for their model is busy.
    pub queue: QueueLimits,
    /// Which answers are re-run on another worker and compared.
    pub spot_checks: SpotCheckConfig,
    /// Whether to sign slash evidence against a worker outvoted on a
    /// deterministic request; the worker contract takes the root's share
    /// of its stake and pays it into the affected client's contract.
    pub slashing: bool,
    /// Development only: admit open-tier workers (no TEE) off chain, where
    /// no root registry can list their operators. On a chain the registry
    /// must list each operator for the open tier, whatever this says.
    pub open_tier_off_chain: bool,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The TLS identity could not be created.
    #[error(transparent)]
    Credentials(#[from] cocoon_transport::CredentialsError),
    /// The gRPC listener could not start.
    #[error(transparent)]
    Listen(#[from] cocoon_transport::ListenError),
    /// The HTTP stats listener could not start.
    #[error("cannot listen for HTTP on {addr}: {reason}")]
    HttpListen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        reason: std::io::Error,
    },
}

/// State shared by the proxy's services.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ProxyConfig,
    pub(crate) registry: WorkerRegistry,
    pub(crate) metrics: Arc<RequestMetrics>,
    pub(crate) started: Instant,
    /// Becomes true when the proxy shuts down; ends worker sessions.
    pub(crate) stopping: watch::Receiver<bool>,
    /// Workers' receipt certificates, by hash.
    pub(crate) certificates: worker_certificates::WorkerCertificates,
    /// Answers re-run elsewhere, and what that showed.
    pub(crate) spot_checks: spot_check::SpotChecks,
    /// Slash evidence signed against dissenting workers.
    pub(crate) slashing: slashing::SlashEvidenceLog,
    /// The reputation table last published on chain.
    pub(crate) published: reputation::PublishedTable,
    /// Answers to idempotent requests, kept for their retries.
    pub(crate) idempotency: Arc<idempotency::IdempotencyBook>,
}

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    /// Bound gRPC address.
    pub listen: SocketAddr,
    /// Bound HTTP address.
    pub http_listen: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    /// Binds both listeners and starts serving.
    pub async fn start(config: ProxyConfig) -> Result<Proxy, ProxyError> {
        let credentials = config
            .trust
            .credentials(cocoon_core::Role::Proxy, &config.name, None)?;
        let verifier = config.trust.verifier(
            "proxy: clients and workers",
            &[cocoon_core::Role::Client, cocoon_core::Role::Worker],
        );
        let (listen, incoming) =
            cocoon_transport::listen(config.listen, credentials, verifier).await?;
        let http = tokio::net::TcpListener::bind(config.http_listen)
            .await
            .map_err(|reason| ProxyError::HttpListen {
                addr: config.http_listen,
                reason,
            })?;
        let http_listen = http.local_addr().map_err(|reason| ProxyError::HttpListen {
            addr: config.http_listen,
            reason,
        })?;

        let (shutdown, rx1) = watch::channel(false);
        let mut rx2 = rx1.clone();
        let registry = WorkerRegistry::new(config.queue);
        let shared = Arc::new(Shared {
            certificates: worker_certificates::WorkerCertificates::new(config.trust.clone()),
            spot_checks: spot_check::SpotChecks::new(SpotCheckConfig {
                open_rate: match &config.trust {
                    Trust::Attested(a) => a.verifier().policy().open.map(|o| o.spot_check_rate),
                    Trust::Insecure => None,
                }
                .unwrap_or(config.spot_checks.open_rate),
                ..config.spot_checks
            }),
            slashing: match config.charging.payments() {
                Some(p) => slashing::SlashEvidenceLog::open(
                    p.ledger.path().with_file_name("slash-evidence.json"),
                ),
                None => Default::default(),
            },
            published: Default::default(),
            idempotency: Default::default(),
            config,
            registry,
            metrics: Arc::new(RequestMetrics::default()),
            started: Instant::now(),
            stopping: rx1.clone(),
        });

        let t1 = serve_grpc(shared.clone(), incoming, rx1);
        let mut tasks = chain_tasks(&shared, &shutdown);
        let app = stats::router(shared.clone());
        let t2 = tokio::spawn(async move {
            let serve = axum::serve(http, app).with_graceful_shutdown(async move {
                let _ = rx2.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "proxy HTTP server stopped");
            }
        });

        tracing::info!(
            name = %shared.config.name,
            %listen,
            %http_listen,
            trust = %shared.config.trust.describe(),
            "proxy started"
        );
        Ok(Proxy {
            listen,
            http_listen,
            shared,
            shutdown,
            tasks: {
                tasks.extend([t1, t2]);
                tasks
            },
        })
    }

    /// The workers connected now.
    pub fn registry(&self) -> &WorkerRegistry {
        &self.shared.registry
    }

    /// Stops accepting, ends sessions, and waits for the servers to stop.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// Serves the client and worker gateways on `incoming` until `stop` turns
/// true.
fn serve_grpc(
    shared: Arc<Shared>,
    incoming: cocoon_transport::TlsIncoming,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let max = cocoon_proto::MAX_MESSAGE_BYTES;
    let clients =
        ClientGatewayServer::new(client_gateway::ClientGatewayService::new(shared.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
    let workers =
        WorkerGatewayServer::new(worker_gateway::WorkerGatewayService::new(shared.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
    let grpc = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(cocoon_transport::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(cocoon_transport::KEEPALIVE_TIMEOUT))
        .initial_stream_window_size(Some(1 << 20))
        .initial_connection_window_size(Some(8 << 20))
        .add_service(clients)
        .add_service(workers)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.wait_for(|s| *s).await;
        });
    tokio::spawn(async move {
        if let Err(e) = grpc.await {
            tracing::error!(error = %e, "proxy gRPC server stopped");
        }
    })
}

/// The work a proxy on a chain does in the background: reading and
/// committing client contracts, sending slash evidence again, publishing
/// the reputation table, following the registry.
fn chain_tasks(
    shared: &Arc<Shared>,
    shutdown: &watch::Sender<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    if let Some(d) = shared.config.charging.contracts().cloned() {
        tasks.push(tokio::spawn(d.clone().poll(shutdown.subscribe())));
        tasks.push(tokio::spawn(slashing::retry(
            shared.clone(),
            shutdown.subscribe(),
        )));
        tasks.push(tokio::spawn(reputation::publish(
            shared.clone(),
            d,
            shutdown.subscribe(),
        )));
    }
    if let (Some(p), Some(r)) = (
        shared.config.charging.payments(),
        shared.config.charging.registry(),
    ) {
        tasks.push(tokio::spawn(r.clone().run(p.clone(), shutdown.subscribe())));
        tasks.push(tokio::spawn(registry_watch::drop_delisted(
            shared.clone(),
            r.clone(),
            shutdown.subscribe(),
        )));
    }
    tasks
}
