//! Attested sessions (spec §8): the immutable record of one verified
//! upstream channel, addressed by the SHA-256 of its JCS form.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jcs::{self, JcsError};

/// One claim about the upstream (§8.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// `asserted`, `refuted` or `unknown`.
    pub status: String,
    /// Who stands behind it; absent when `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Why; absent when `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Claim {
    /// Nothing is known.
    pub fn unknown() -> Self {
        Claim {
            status: "unknown".into(),
            source: None,
            reason: None,
        }
    }

    /// Proven true by `source` for `reason`.
    pub fn asserted(source: &str, reason: impl Into<String>) -> Self {
        Claim {
            status: "asserted".into(),
            source: Some(source.into()),
            reason: Some(reason.into()),
        }
    }

    /// Proven false by `source` for `reason`.
    pub fn refuted(source: &str, reason: impl Into<String>) -> Self {
        Claim {
            status: "refuted".into(),
            source: Some(source.into()),
            reason: Some(reason.into()),
        }
    }
}

/// The evidence a verifier consumed, as a data URI and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// `sha256:<hex>` of the decoded bytes.
    pub digest: String,
    /// `data:<content-type>;base64,<bytes>`; dropped from list entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl Evidence {
    /// Evidence holding `bytes` of `content_type`.
    pub fn of(content_type: &str, bytes: &[u8]) -> Self {
        use base64::Engine;
        Evidence {
            digest: crate::sha256_digest(bytes),
            data: Some(format!(
                "data:{content_type};base64,{}",
                base64::engine::general_purpose::STANDARD.encode(bytes)
            )),
        }
    }
}

/// A session document (§8.2); its id is not inside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Always `aci/1`.
    pub api_version: String,
    /// The service's label for the upstream.
    pub upstream_name: String,
    /// The verified origin, or none (a per-instance E2EE binding).
    pub endpoint: Option<String>,
    /// Which verifier checked it.
    pub verifier_id: String,
    /// When, UNIX seconds.
    pub established_at: u64,
    /// Until when it may serve new requests.
    pub expires_at: u64,
    /// The upstream's verified identity keys, when there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Value>,
    /// What the channel to the upstream was bound to.
    pub channel_binding: Vec<Value>,
    /// What was proven, by name, and `extra` facts.
    pub claims: serde_json::Map<String, Value>,
    /// What the verifier consumed.
    pub evidence: Evidence,
}

impl Session {
    /// `hex(sha256(JCS(document)))`.
    pub fn id(&self) -> Result<String, JcsError> {
        Ok(crate::sha256_hex(&jcs::canonical_of(self)?))
    }
}
