//! How Cocoon nodes reach each other: TLS 1.3 only, both sides present a
//! certificate, and the decision whether a peer is acceptable is made by a
//! [`PeerVerifier`] — the hook that remote attestation (RA-TLS) fills in.
//!
//! The pieces:
//! * [`NodeCredentials`]: this node's certificate and key.
//! * [`PeerVerifier`]: judges the peer's certificate; [`InsecureAcceptAny`]
//!   is the development-only policy `none`.
//! * [`listen`]: a TLS listener whose connections carry the verified
//!   [`PeerInfo`] into every gRPC request's extensions.
//! * [`channel`]: a lazily connecting, multiplexed gRPC channel to a peer.
//! * [`Backoff`]: delays between reconnection attempts.
//! * [`LinkLog`]: which moments of a link are worth a log line.

mod backoff;
mod credentials;
mod dial;
mod link;
mod listen;
mod trust;
mod verifier;

pub use backoff::Backoff;
pub use credentials::{CredentialsError, NodeCredentials};
pub use dial::{channel, client_tls_config, DialError};
pub use link::{LinkDown, LinkLog, LinkUp};
pub use listen::{listen, ConnectionLife, ListenError, PeerInfo, TlsIncoming};
pub use trust::{Attestation, Refusals, Trust, CERT_LIFETIME};
pub use verifier::{refusal_of, InsecureAcceptAny, PeerIdentity, PeerVerifier, VerifyError};

/// HTTP/2 keepalive: a ping this often on idle connections...
pub const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
/// ...and the connection is considered dead if a ping is not answered within this.
pub const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The cryptographic provider used by every TLS endpoint of a node.
pub(crate) fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
