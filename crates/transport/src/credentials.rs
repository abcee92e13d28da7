use std::sync::{Arc, RwLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

/// A node's TLS identity: a self-signed Ed25519 certificate and its key,
/// replaceable while the node runs. Connections already open keep the
/// certificate they were made with; new handshakes present the new one, so
/// rotation drops nothing.
#[derive(Debug)]
pub struct NodeCredentials {
    current: RwLock<Current>,
}

#[derive(Debug, Clone)]
struct Current {
    certified: Arc<CertifiedKey>,
    pkcs8: Arc<Vec<u8>>,
}

/// Why credentials could not be created.
#[derive(Debug, thiserror::Error)]
#[error("could not create the node's TLS certificate: {0}")]
pub struct CredentialsError(pub String);

impl NodeCredentials {
    /// Generates a plain self-signed Ed25519 certificate naming the role and
    /// node, with no attestation (the insecure development policy).
    pub fn generate(role: cocoon_core::Role, node_name: &str) -> Result<Self, CredentialsError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .map_err(|e| CredentialsError(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(vec!["cocoon".to_string()])
            .map_err(|e| CredentialsError(e.to_string()))?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("cocoon-{}-{}", role.as_str(), node_name),
        );
        let now = std::time::SystemTime::now();
        params.not_before = (now - std::time::Duration::from_secs(300)).into();
        params.not_after = (now + std::time::Duration::from_secs(7 * 24 * 3600)).into();
        let cert = params
            .self_signed(&key)
            .map_err(|e| CredentialsError(e.to_string()))?;
        Self::from_der(cert.der().to_vec(), key.serialize_der())
    }

    /// Credentials from a DER certificate and its PKCS#8 private key.
    pub fn from_der(cert: Vec<u8>, pkcs8: Vec<u8>) -> Result<Self, CredentialsError> {
        Ok(NodeCredentials {
            current: RwLock::new(Current {
                certified: certified(cert, pkcs8.clone())?,
                pkcs8: Arc::new(pkcs8),
            }),
        })
    }

    /// Presents `cert` from the next handshake on.
    pub fn replace(&self, cert: Vec<u8>, pkcs8: Vec<u8>) -> Result<(), CredentialsError> {
        let new = Current {
            certified: certified(cert, pkcs8.clone())?,
            pkcs8: Arc::new(pkcs8),
        };
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    /// The certificate and key presented now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.now().certified
    }

    fn now(&self) -> Current {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The certificate chain presented now (one self-signed certificate).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.now().certified.cert.clone()
    }

    /// The private key matching [`NodeCredentials::chain`].
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.now().pkcs8.to_vec()))
    }

    /// The certificate presented now (DER) and its PKCS#8 key, read
    /// together so that a rotation cannot pair one with the other's.
    pub fn current_with_key(&self) -> (CertificateDer<'static>, Arc<Vec<u8>>) {
        let now = self.now();
        (now.certified.cert[0].clone(), now.pkcs8)
    }

    /// The certificate presented now, DER.
    pub fn certificate(&self) -> CertificateDer<'static> {
        self.current().cert[0].clone()
    }

    /// SHA-256 of the current certificate, hex: how logs name this node's identity.
    pub fn fingerprint(&self) -> String {
        crate::verifier::fingerprint(&self.certificate())
    }
}

fn certified(cert: Vec<u8>, pkcs8: Vec<u8>) -> Result<Arc<CertifiedKey>, CredentialsError> {
    let key = crate::provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8)))
        .map_err(|e| CredentialsError(format!("private key: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(cert)],
        key,
    )))
}

/// Hands the current credentials to rustls on each handshake.
#[derive(Debug)]
pub(crate) struct CredentialsResolver(pub(crate) Arc<NodeCredentials>);

impl rustls::server::ResolvesServerCert for CredentialsResolver {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

impl rustls::client::ResolvesClientCert for CredentialsResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
