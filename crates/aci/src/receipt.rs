//! Inference receipts (spec §7): a per-request event log, signed over its
//! JCS form without the `signature` member by a key of the workload keyset.

use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jcs::{self, JcsError};
use crate::keyset::{WorkloadKeyset, ED25519};

/// One receipt. Events are flat JSON objects (`type` and its fields), so
/// the extension events a service adds travel and verify untouched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// Always `aci/1`.
    pub api_version: String,
    /// The `X-Receipt-Id` the response carried.
    pub receipt_id: String,
    /// The OpenAI-compatible response id, if the response had one.
    pub chat_id: Option<String>,
    /// The model the client asked for.
    pub model: Option<String>,
    /// The keyset whose key signed the receipt.
    pub workload_keyset_digest: String,
    /// The request path, e.g. `/v1/chat/completions`.
    pub endpoint: String,
    /// The HTTP method.
    pub method: String,
    /// When the response completed (self-asserted), UNIX seconds.
    pub served_at: u64,
    /// What happened, in order; the first is `request.received`.
    pub event_log: Vec<Value>,
    /// The keyset entry whose key signed it.
    pub key_id: String,
    /// Hex signature over the JCS form without this member.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signature: String,
}

/// `{"type": "<kind>", "body_hash": "sha256:<hex of bytes>"}`.
pub fn body_event(kind: &str, bytes: &[u8]) -> Value {
    serde_json::json!({ "type": kind, "body_hash": crate::sha256_digest(bytes) })
}

/// The `body_hash` of bytes seen piece by piece (a stream as it goes out).
#[derive(Debug, Clone, Default)]
pub struct BodyHash(sha2::Sha256);

impl BodyHash {
    /// Adds the next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        sha2::Digest::update(&mut self.0, bytes);
    }

    /// `{"type": kind, "body_hash": "sha256:<hex>"}` of everything added.
    pub fn event(self, kind: &str) -> Value {
        let digest = format!("sha256:{}", hex::encode(sha2::Digest::finalize(self.0)));
        serde_json::json!({ "type": kind, "body_hash": digest })
    }
}

/// Why a receipt does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// The document is not a receipt.
    #[error("not an ACI receipt: {0}")]
    Malformed(String),
    /// Another protocol version.
    #[error("api_version is {0:?}, expected \"aci/1\"")]
    Version(String),
    /// Signed under another keyset.
    #[error("workload_keyset_digest is {found}, the established keyset is {expected}")]
    Keyset {
        /// The receipt's.
        found: String,
        /// The keyset's.
        expected: String,
    },
    /// No such key, or one of an algorithm this verifier does not implement.
    #[error("key_id {0:?} names no ed25519 key in the keyset's receipt_signing_keys")]
    UnknownKey(String),
    /// The signature is wrong.
    #[error("the signature does not verify over the receipt's JCS form under key {0:?}")]
    BadSignature(String),
    /// The document has no canonical form.
    #[error(transparent)]
    Jcs(#[from] JcsError),
}

/// An Ed25519 receipt key, with the id its keyset entry carries.
pub struct ReceiptKey {
    key_id: String,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for ReceiptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ReceiptKey {
    /// The key whose RFC 8032 seed is `seed`.
    pub fn from_seed(key_id: &str, seed: &[u8; 32]) -> Self {
        let pair =
            Ed25519KeyPair::from_seed_unchecked(seed).expect("any 32 bytes are an Ed25519 seed");
        ReceiptKey {
            key_id: key_id.to_owned(),
            pair,
        }
    }

    /// A fresh key from the system's randomness.
    pub fn generate(key_id: &str) -> Result<Self, ring::error::Unspecified> {
        let seed: [u8; 32] = ring::rand::generate(&ring::rand::SystemRandom::new())?.expose();
        Ok(Self::from_seed(key_id, &seed))
    }

    /// The same key under another id.
    pub fn renamed(mut self, key_id: &str) -> Self {
        self.key_id = key_id.to_owned();
        self
    }

    /// The keyset entry naming this key.
    pub fn entry(&self) -> crate::keyset::KeyEntry {
        crate::keyset::KeyEntry {
            key_id: self.key_id.clone(),
            algo: ED25519.to_owned(),
            public_key: hex::encode(self.pair.public_key().as_ref()),
        }
    }

    /// Signs `receipt` (naming this key), returning it with its signature.
    pub fn sign(&self, mut receipt: Receipt) -> Result<Receipt, JcsError> {
        receipt.key_id = self.key_id.clone();
        receipt.signature = String::new();
        let input = jcs::canonical_of(&receipt)?;
        receipt.signature = hex::encode(self.pair.sign(&input).as_ref());
        Ok(receipt)
    }
}

/// The signing input of a receipt document as parsed: its JCS form without
/// `signature`.
pub fn signing_input(document: &Value) -> Result<Vec<u8>, ReceiptError> {
    let mut doc = document.clone();
    let Some(members) = doc.as_object_mut() else {
        return Err(ReceiptError::Malformed("not a JSON object".into()));
    };
    members.remove("signature");
    Ok(jcs::canonical(&doc)?)
}

/// Checks a receipt document, in whatever encoding it was served, against
/// an established keyset (spec §9.3 steps 1 and 2).
pub fn verify(document: &Value, keyset: &WorkloadKeyset) -> Result<Receipt, ReceiptError> {
    let receipt: Receipt = serde_json::from_value(document.clone())
        .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    if receipt.api_version != crate::API_VERSION {
        return Err(ReceiptError::Version(receipt.api_version));
    }
    let expected = keyset.digest()?;
    if receipt.workload_keyset_digest != expected {
        return Err(ReceiptError::Keyset {
            found: receipt.workload_keyset_digest,
            expected,
        });
    }
    let key = keyset
        .receipt_key(&receipt.key_id)
        .filter(|k| k.algo == ED25519)
        .and_then(|k| hex::decode(&k.public_key).ok())
        .ok_or_else(|| ReceiptError::UnknownKey(receipt.key_id.clone()))?;
    let signature = hex::decode(&receipt.signature)
        .map_err(|_| ReceiptError::BadSignature(receipt.key_id.clone()))?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
        .verify(&signing_input(document)?, &signature)
        .map_err(|_| ReceiptError::BadSignature(receipt.key_id.clone()))?;
    Ok(receipt)
}
