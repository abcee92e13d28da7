//! The workload keyset (spec §3.1) and the attestation statement that binds
//! it, with the verifier's nonce, into TEE evidence (§3.2).

use serde::{Deserialize, Serialize};

use crate::jcs::{self, JcsError};

/// Receipt signatures: the `ed25519` baseline.
pub const ED25519: &str = "ed25519";

/// The statement's purpose tag.
pub const REPORT_DATA_PURPOSE: &str = "aci.report_data.v1";

/// A public key in the keyset, for one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// A stable name receipts and requests use to pick the key.
    pub key_id: String,
    /// The algorithm; entries with one a verifier does not know are skipped.
    pub algo: String,
    /// Lowercase hex.
    pub public_key: String,
}

/// A TLS key clients pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsKey {
    /// SHA-256 of the certificate's SubjectPublicKeyInfo, hex.
    pub spki_sha256: String,
    /// The one hostname the entry is for, when it is for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// The workload's current public keys: its whole identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadKeyset {
    /// A policy-interpreted name, or none.
    pub subject: Option<String>,
    /// UNIX seconds after which nothing under this keyset is accepted.
    pub not_after: u64,
    /// Keys that sign receipts.
    pub receipt_signing_keys: Vec<KeyEntry>,
    /// Keys requests are encrypted to.
    pub e2ee_public_keys: Vec<KeyEntry>,
    /// TLS keys of HTTPS endpoints that take plaintext.
    pub tls_public_keys: Vec<TlsKey>,
}

impl WorkloadKeyset {
    /// `"sha256:" || hex(sha256(JCS(keyset)))`.
    pub fn digest(&self) -> Result<String, JcsError> {
        Ok(crate::sha256_digest(&jcs::canonical_of(self)?))
    }

    /// The receipt key named `key_id`, with the algorithm its entry gives.
    pub fn receipt_key(&self, key_id: &str) -> Option<&KeyEntry> {
        self.receipt_signing_keys
            .iter()
            .find(|k| k.key_id == key_id)
    }
}

/// A verifier's freshness challenge: 32 bytes, sent as exactly 64
/// lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportNonce(String);

/// A `nonce` that is not 64 lowercase hex characters.
#[derive(Debug, Clone, thiserror::Error)]
#[error("nonce must be exactly 64 lowercase hex characters (32 bytes), found {found:?}")]
pub struct NonceError {
    /// What was sent (cut short when long).
    pub found: String,
}

impl ReportNonce {
    /// Checks `s`.
    pub fn parse(s: &str) -> Result<Self, NonceError> {
        let ok = s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(ReportNonce(s.to_owned()))
        } else {
            Err(NonceError {
                found: s.chars().take(80).collect(),
            })
        }
    }

    /// The hex form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The statement's exact bytes: its template is its own JCS form, and every
/// input is hex or a fixed tag, so nothing needs escaping.
pub fn statement(keyset_digest: &str, nonce: Option<&ReportNonce>) -> String {
    let nonce = match nonce {
        Some(n) => format!("\"{}\"", n.as_str()),
        None => "null".to_owned(),
    };
    format!(
        "{{\"keyset_digest\":\"{keyset_digest}\",\"nonce\":{nonce},\"purpose\":\"{REPORT_DATA_PURPOSE}\"}}"
    )
}

/// `sha256(statement)`.
pub fn report_data(keyset_digest: &str, nonce: Option<&ReportNonce>) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(statement(keyset_digest, nonce).as_bytes()).into()
}

/// The TEE's 64-byte report-data slot: the digest, then 32 zero bytes.
pub fn report_data_slot(report_data: &[u8; 32]) -> [u8; 64] {
    let mut slot = [0u8; 64];
    slot[..32].copy_from_slice(report_data);
    slot
}
