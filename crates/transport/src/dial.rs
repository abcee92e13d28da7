use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use crate::credentials::CredentialsResolver;
use crate::verifier::RustlsAdapter;
use crate::{NodeCredentials, PeerVerifier};

/// Abandoned streams remembered per connection (h2's default is 10).
const MAX_REMEMBERED_RESETS: usize = 8192;

/// Why a channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The peer address is not `HOST:PORT`.
    #[error("invalid peer address {addr:?}: expected HOST:PORT ({reason})")]
    Address {
        /// The address given.
        addr: String,
        /// What was wrong.
        reason: String,
    },
    /// The TLS configuration was rejected.
    #[error("invalid TLS configuration: {0}")]
    Tls(rustls::Error),
}

/// A multiplexed gRPC channel to `addr` (`HOST:PORT`) over mutual TLS 1.3.
///
/// The channel connects lazily and reconnects on demand: a request made
/// while the peer is down fails at once with `Unavailable` rather than
/// hanging, and the next request dials again. HTTP/2 keepalive pings detect
/// dead connections; `TCP_NODELAY` is set so streamed chunks are not held
/// back by Nagle's algorithm.
pub fn channel(
    addr: &str,
    credentials: Arc<NodeCredentials>,
    verifier: Arc<dyn PeerVerifier>,
) -> Result<Channel, DialError> {
    let bad = |reason: &str| DialError::Address {
        addr: addr.to_string(),
        reason: reason.to_string(),
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    port.parse::<u16>()
        .map_err(|_| bad("port is not a number"))?;
    if host.is_empty() {
        return Err(bad("no host"));
    }

    let connector = tokio_rustls::TlsConnector::from(client_tls_config(credentials, verifier)?);

    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| bad(&e.to_string()))?
        .http2_keep_alive_interval(crate::KEEPALIVE_INTERVAL)
        .keep_alive_timeout(crate::KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .initial_stream_window_size(Some(1 << 20))
        .initial_connection_window_size(Some(8 << 20))
        .connect_timeout(std::time::Duration::from_secs(5))
        // A request the app abandons resets its stream; frames already in
        // flight for it are ignored only while h2 remembers the reset, and
        // each one arriving after that counts toward h2's limit of local
        // error resets, which closes the shared connection. Remember enough
        // resets that abandoned requests never add up to that.
        .http2_max_concurrent_reset_streams(MAX_REMEMBERED_RESETS);

    let target = addr.to_string();
    let channel = endpoint.connect_with_connector_lazy(tower_service(move |_uri| {
        let connector = connector.clone();
        let target = target.clone();
        async move {
            let tcp = TcpStream::connect(&target).await?;
            tcp.set_nodelay(true)?;
            // Peers are identified by their certificates, not DNS names.
            let name = ServerName::try_from("cocoon").expect("static name is valid");
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    }));
    Ok(channel)
}

/// The TLS configuration a node dials with: TLS 1.3 only, its current
/// credentials presented, the peer judged by `verifier`. Public for tools
/// and benchmarks that handshake without gRPC.
pub fn client_tls_config(
    credentials: Arc<NodeCredentials>,
    verifier: Arc<dyn PeerVerifier>,
) -> Result<Arc<rustls::ClientConfig>, DialError> {
    let provider = crate::provider();
    let adapter = Arc::new(RustlsAdapter::new(verifier, provider.clone()));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(adapter)
        .with_client_cert_resolver(Arc::new(CredentialsResolver(credentials)));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// `tower::service_fn` without depending on tower directly.
fn tower_service<F, Fut, R>(f: F) -> ServiceFn<F>
where
    F: FnMut(http::Uri) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<R>>,
{
    ServiceFn(f)
}

#[derive(Clone)]
struct ServiceFn<F>(F);

impl<F, Fut, R> tower_service::Service<http::Uri> for ServiceFn<F>
where
    F: FnMut(http::Uri) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<R>>,
{
    type Response = R;
    type Error = std::io::Error;
    type Future = Fut;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Fut {
        (self.0)(uri)
    }
}

impl From<rustls::Error> for DialError {
    fn from(e: rustls::Error) -> Self {
        DialError::Tls(e)
    }
}
