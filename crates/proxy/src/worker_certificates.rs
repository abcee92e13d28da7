//! The certificates whose keys sign workers' receipts: checked when a
//! worker announces one, and kept by hash so that clients can fetch and
//! verify them themselves (`WorkerCertificate`), once per certificate.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use cocoon_core::{ModelHash, Role};
use cocoon_tee::{Attested, PeerAttestation};
use cocoon_transport::Trust;

/// Certificates kept after their worker left, so that receipts of answers
/// just given still find theirs.
const KEPT: usize = 1024;

/// Why a worker's receipt certificate is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CertificateRefused {
    /// None was announced, and this proxy needs signed receipts.
    #[error("the worker announced no receipt certificate; this proxy attests workers and their answers need signed receipts")]
    Missing,
    /// It fails the proxy's policy for workers.
    #[error("receipt certificate refused: {0}")]
    Policy(#[from] cocoon_tee::RaTlsError),
    /// It proves another TEE or image than the session's certificate.
    #[error("receipt certificate proves {proved}, but the session's certificate proved {session}")]
    OtherImage {
        /// What the receipt certificate proves.
        proved: String,
        /// What the session's proved.
        session: String,
    },
    /// It names another receipt key than the session's certificate.
    #[error("receipt certificate names receipt key {proved}, but the session's certificate named {session}")]
    OtherReceiptKey {
        /// The key it names, hex.
        proved: String,
        /// The session's, hex.
        session: String,
    },
    /// It claims other weights than the worker announced.
    #[error("receipt certificate claims weights {proved}, the worker announced {announced}")]
    OtherWeights {
        /// The weights it claims.
        proved: String,
        /// The weights announced.
        announced: String,
    },
}

fn key_hex(k: Option<[u8; 32]>) -> String {
    k.map_or("none".into(), hex::encode)
}

#[derive(Debug)]
pub(crate) struct WorkerCertificates {
    trust: Trust,
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    by_hash: HashMap<String, Bytes>,
    order: VecDeque<String>,
}

impl WorkerCertificates {
    pub(crate) fn new(trust: Trust) -> Self {
        WorkerCertificates {
            trust,
            kept: Mutex::default(),
        }
    }

    /// Checks the certificate a worker announced for its receipts and keeps
    /// it; returns its SHA-256 (hex), empty when there is none. Under
    /// RA-TLS it must satisfy the proxy's policy for workers and prove the
    /// same TEE, image and weights as the session's own certificate: a
    /// worker cannot sign receipts with a key its session did not attest.
    pub(crate) fn admit(
        &self,
        der: &[u8],
        session: Option<&Attested<PeerAttestation>>,
        model_hash: Option<ModelHash>,
    ) -> Result<String, CertificateRefused> {
        let Trust::Attested(att) = &self.trust else {
            // No attestation: nothing to check it against; clients say so.
            return Ok(self.keep(der));
        };
        if der.is_empty() {
            return Err(CertificateRefused::Missing);
        }
        let proved = att
            .verifier()
            .verify(der, &[Role::Worker], cocoon_core::unix_now())?;
        if let Some(s) = session {
            if (proved.kind, proved.image_hash) != (s.kind, s.image_hash) {
                return Err(CertificateRefused::OtherImage {
                    proved: format!("{} image {}", proved.kind, proved.image_hash),
                    session: format!("{} image {}", s.kind, s.image_hash),
                });
            }
            // The session's receipt key is the one checked against the
            // worker contract: receipts under another would be evidence
            // against no one.
            if proved.receipt_key != s.receipt_key {
                return Err(CertificateRefused::OtherReceiptKey {
                    proved: key_hex(proved.receipt_key),
                    session: key_hex(s.receipt_key),
                });
            }
        }
        if proved.model_hash != model_hash {
            let hex = |h: Option<ModelHash>| h.map_or("none".into(), |h| h.to_hex());
            return Err(CertificateRefused::OtherWeights {
                proved: hex(proved.model_hash),
                announced: hex(model_hash),
            });
        }
        Ok(self.keep(der))
    }

    fn keep(&self, der: &[u8]) -> String {
        if der.is_empty() {
            return String::new();
        }
        let hash = cocoon_receipt::digest::sha256_hex(der);
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if !kept.by_hash.contains_key(&hash) {
            if kept.order.len() >= KEPT {
                if let Some(old) = kept.order.pop_front() {
                    kept.by_hash.remove(&old);
                }
            }
            kept.order.push_back(hash.clone());
            kept.by_hash
                .insert(hash.clone(), Bytes::copy_from_slice(der));
        }
        hash
    }

    /// A certificate by its SHA-256 (hex).
    pub(crate) fn get(&self, sha256: &str) -> Option<Bytes> {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_hash
            .get(sha256)
            .cloned()
    }
}
