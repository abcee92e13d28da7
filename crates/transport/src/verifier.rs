use std::fmt::Debug;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// What a verifier established about a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// SHA-256 of the peer's end-entity certificate, hex.
    pub fingerprint: String,
    /// Name of the policy that accepted the peer (`"none"` today).
    pub policy: String,
    /// Whether the peer's identity was actually proven. `false` only under
    /// the insecure development policy.
    pub authenticated: bool,
    /// What the peer's TEE evidence proved, under an attestation policy.
    pub attestation: Option<Arc<cocoon_tee::Attested<cocoon_tee::PeerAttestation>>>,
}

/// Why a peer was refused. It reaches rustls as
/// `CertificateError::Other`, so the handshake's error keeps this type:
/// [`refusal_of`] finds it again.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VerifyError {
    /// Its RA-TLS certificate failed a check of the attestation policy.
    #[error("peer refused by policy \"ra-tls\": {check} failed: {source}", check = .0.check(), source = .0)]
    Attestation(Arc<cocoon_tee::RaTlsError>),
    /// It sent a certificate chain: nodes present one self-signed
    /// certificate, and a chain means someone is trying to borrow authority
    /// from an issuer.
    #[error("peer refused: certificate chain of {0} extra certificates; expected one self-signed certificate")]
    Chain(usize),
    /// Another verifier's refusal.
    #[error("peer refused by policy {policy:?}: {check} failed: {found}")]
    Refused {
        /// Policy that refused.
        policy: String,
        /// The check that failed.
        check: String,
        /// What was found instead of what the check wanted.
        found: String,
    },
}

impl VerifyError {
    /// The check that failed, for counters and logs.
    pub fn check(&self) -> &str {
        match self {
            VerifyError::Attestation(e) => e.check(),
            VerifyError::Chain(_) => "certificate_chain",
            VerifyError::Refused { check, .. } => check,
        }
    }

    fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            Arc::new(self),
        )))
    }
}

/// The refusal behind a failed TLS handshake, if the peer was refused by
/// this node's verifier (rather than the connection failing otherwise).
pub fn refusal_of<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a VerifyError> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) =
            e.downcast_ref::<rustls::Error>()
        {
            return other.0.downcast_ref::<VerifyError>();
        }
        cause = e.source();
    }
    None
}

/// Decides whether a peer's certificate is acceptable. Implementations must
/// be cheap to call repeatedly (cache expensive verification by content):
/// it runs during every handshake and again when a connection is labelled.
///
/// The TLS layer has already checked, before this is consulted, that the
/// peer holds the private key of the presented certificate (TLS 1.3
/// CertificateVerify); a verifier only judges the certificate's content.
pub trait PeerVerifier: Send + Sync + Debug {
    /// Name of the policy, for logs and errors.
    fn policy_name(&self) -> &str;

    /// Judges the peer's end-entity certificate at time `now`.
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        now: UnixTime,
    ) -> Result<PeerIdentity, VerifyError>;

    /// The identity most recently accepted, if the verifier remembers it:
    /// on a dialing node, that is the peer it is connected to.
    fn last_verified(&self) -> Option<Arc<PeerIdentity>> {
        None
    }
}

/// The development-only policy `none`: any certificate is accepted, so the
/// peer is encrypted to but not authenticated. Creating one logs a warning.
#[derive(Debug)]
pub struct InsecureAcceptAny(());

impl InsecureAcceptAny {
    /// Creates the policy, warning loudly that peers are not authenticated.
    pub fn new(context: &str) -> Self {
        tracing::warn!(
            context,
            "INSECURE peer policy 'none': peers are encrypted to but NOT authenticated; \
             no attestation is checked. Use only for local development."
        );
        InsecureAcceptAny(())
    }
}

impl PeerVerifier for InsecureAcceptAny {
    fn policy_name(&self) -> &str {
        "none"
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        _now: UnixTime,
    ) -> Result<PeerIdentity, VerifyError> {
        Ok(PeerIdentity {
            fingerprint: fingerprint(end_entity),
            policy: "none".into(),
            authenticated: false,
            attestation: None,
        })
    }
}

pub(crate) fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Adapts a [`PeerVerifier`] to both rustls verifier traits. Signatures of
/// the handshake are checked with the provider's algorithms; TLS 1.2 is
/// refused outright.
#[derive(Debug)]
pub(crate) struct RustlsAdapter {
    verifier: Arc<dyn PeerVerifier>,
    provider: Arc<CryptoProvider>,
}

impl RustlsAdapter {
    pub(crate) fn new(verifier: Arc<dyn PeerVerifier>, provider: Arc<CryptoProvider>) -> Self {
        RustlsAdapter { verifier, provider }
    }

    fn judge(
        &self,
        cert: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let verdict = match intermediates.len() {
            0 => self.verifier.verify(cert, now).map(|_| ()),
            n => Err(VerifyError::Chain(n)),
        };
        verdict.map_err(|e| {
            tracing::warn!(error = %e, "refusing TLS peer");
            e.into_rustls()
        })
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The key is taken from the certificate's SubjectPublicKeyInfo
        // directly: RA-TLS certificates carry critical extensions that a
        // general X.509 path validator would refuse before looking at the key.
        let spki = spki_of(cert)?;
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &rustls::pki_types::SubjectPublicKeyInfoDer::from(spki),
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn spki_of(cert: &CertificateDer<'_>) -> Result<Vec<u8>, rustls::Error> {
    use x509_parser::prelude::*;
    let (_, parsed) = parse_x509_certificate(cert.as_ref()).map_err(|e| {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            Arc::new(SpkiError(e.to_string())),
        )))
    })?;
    Ok(parsed.public_key().raw.to_vec())
}

#[derive(Debug)]
struct SpkiError(String);

impl std::fmt::Display for SpkiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot read the certificate's public key: {}", self.0)
    }
}

impl std::error::Error for SpkiError {}

fn tls12_refused() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic)
}

impl ServerCertVerifier for RustlsAdapter {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.judge(end_entity, intermediates, now)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for RustlsAdapter {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.judge(end_entity, intermediates, now)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}
