use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::UnixTime;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;

use crate::credentials::CredentialsResolver;
use crate::verifier::RustlsAdapter;
use crate::{NodeCredentials, PeerIdentity, PeerVerifier};

/// Who is on the other end of an accepted connection; available to gRPC
/// handlers as `request.extensions().get::<PeerInfo>()`.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer's socket address.
    pub addr: SocketAddr,
    /// What the verifier established.
    pub identity: Arc<PeerIdentity>,
    /// This connection: which one it is, and when it closes.
    pub connection: ConnectionLife,
}

/// One accepted connection's identity and lifetime, so that a service can
/// note a peer once per connection (not once per request) and learn when
/// the connection ends.
#[derive(Debug, Clone)]
pub struct ConnectionLife {
    id: u64,
    open: watch::Receiver<()>,
}

impl ConnectionLife {
    fn start() -> (ConnectionLife, watch::Sender<()>) {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let (tx, open) = watch::channel(());
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        (ConnectionLife { id, open }, tx)
    }

    /// Unique among this process's accepted connections.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Resolves once the connection is closed (by either side, or by a
    /// failed keepalive).
    pub async fn closed(&self) {
        let mut open = self.open.clone();
        while open.changed().await.is_ok() {}
    }
}

/// Why a listener could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The address could not be bound (in use, not permitted, ...).
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        reason: io::Error,
    },
    /// The TLS configuration was rejected.
    #[error("invalid TLS configuration: {0}")]
    Tls(rustls::Error),
}

/// A stream of accepted, handshaken and verified TLS connections, ready for
/// `tonic::transport::Server::serve_with_incoming`.
pub type TlsIncoming = tokio_stream::wrappers::ReceiverStream<io::Result<TlsConnection>>;

/// Binds `addr` and accepts mutual TLS 1.3 connections judged by `verifier`.
/// Returns the bound address (useful with port 0) and the incoming stream.
/// Handshakes run concurrently so one slow peer cannot stall the listener.
pub async fn listen(
    addr: SocketAddr,
    credentials: Arc<NodeCredentials>,
    verifier: Arc<dyn PeerVerifier>,
) -> Result<(SocketAddr, TlsIncoming), ListenError> {
    let provider = crate::provider();
    let adapter = Arc::new(RustlsAdapter::new(verifier.clone(), provider.clone()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(adapter)
        .with_cert_resolver(Arc::new(CredentialsResolver(credentials)));
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind(addr)
        .await
        .map_err(|reason| ListenError::Bind { addr, reason })?;
    let local = listener
        .local_addr()
        .map_err(|reason| ListenError::Bind { addr, reason })?;
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, acceptor, verifier, tx));
    Ok((local, tokio_stream::wrappers::ReceiverStream::new(rx)))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    verifier: Arc<dyn PeerVerifier>,
    tx: mpsc::Sender<io::Result<TlsConnection>>,
) {
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // Usually EMFILE; pause instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if tx.is_closed() {
            return;
        }
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let verifier = verifier.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let handshake =
                tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp))
                    .await;
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    match e.get_ref().and_then(|inner| crate::refusal_of(inner)) {
                        // The verifier has said why, with its check.
                        Some(refusal) => tracing::debug!(%addr, error = %refusal, "peer refused"),
                        None => tracing::warn!(%addr, error = %e, "TLS handshake failed"),
                    }
                    return;
                }
                Err(_) => {
                    tracing::warn!(%addr, "TLS handshake timed out");
                    return;
                }
            };
            let identity = match peer_identity(&tls, &*verifier) {
                Some(id) => id,
                None => {
                    tracing::warn!(%addr, "peer presented no certificate");
                    return;
                }
            };
            let (life, open) = ConnectionLife::start();
            tracing::debug!(%addr, fingerprint = %identity.fingerprint, connection = life.id, "peer connected");
            let conn = TlsConnection {
                inner: tls,
                info: PeerInfo {
                    addr,
                    identity: Arc::new(identity),
                    connection: life,
                },
                _open: open,
            };
            let _ = tx.send(Ok(conn)).await;
        });
    }
}

fn peer_identity(tls: &TlsStream<TcpStream>, verifier: &dyn PeerVerifier) -> Option<PeerIdentity> {
    let (_, session) = tls.get_ref();
    let cert = session.peer_certificates()?.first()?;
    verifier.verify(cert, UnixTime::now()).ok()
}

/// An accepted connection together with its verified peer.
#[derive(Debug)]
pub struct TlsConnection {
    inner: TlsStream<TcpStream>,
    info: PeerInfo,
    /// Dropped with the connection, which tells every [`ConnectionLife`].
    _open: watch::Sender<()>,
}

impl tonic::transport::server::Connected for TlsConnection {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl From<rustls::Error> for ListenError {
    fn from(e: rustls::Error) -> Self {
        ListenError::Tls(e)
    }
}
