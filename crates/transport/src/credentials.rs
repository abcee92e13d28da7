use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A node's TLS identity: a self-signed Ed25519 certificate and its key.
///
/// Generated fresh at start-up and kept in memory only. The attestation
/// layer will replace the plain certificate by an RA-TLS certificate whose
/// extensions carry TEE evidence bound to the same key.
#[derive(Debug)]
pub struct NodeCredentials {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

/// Why credentials could not be created.
#[derive(Debug, thiserror::Error)]
#[error("could not generate the node's TLS certificate: {0}")]
pub struct CredentialsError(String);

impl NodeCredentials {
    /// Generates a self-signed Ed25519 certificate naming the role and node.
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
        Ok(NodeCredentials {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// The certificate chain presented to peers.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.clone()]
    }

    /// The private key matching the certificate.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// SHA-256 of the certificate, hex: how logs name this node's identity.
    pub fn fingerprint(&self) -> String {
        crate::verifier::fingerprint(&self.cert)
    }
}
