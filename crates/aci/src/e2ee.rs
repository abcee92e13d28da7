//! E2EE v2 (the extension the ACI report advertises as `"2"`): content
//! fields of a request are encrypted, each on its own, to the service's
//! attested X25519 key, and the generated fields of the answer back to the
//! client's key. Each field is `ephemeral key ‖ AES-GCM nonce ‖ ciphertext
//! ‖ tag` in hex, under a key HKDF-SHA256 derives from the X25519 secret,
//! and its associated data (JCS) names the field's path, the model, and the
//! request's nonce and time, so no ciphertext can be moved or replayed.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use serde_json::{json, Value};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::keyset::KeyEntry;

/// The extension's version, as headers and the report carry it.
pub const VERSION: &str = "2";
/// The X25519 suite's `algo`.
pub const X25519_SUITE: &str = "x25519-aes-256-gcm-hkdf-sha256";
const X25519_INFO: &[u8] = b"aci.e2ee.v2.x25519";
const REQUEST_PURPOSE: &str = "aci.e2ee.request.v2";
const RESPONSE_PURPOSE: &str = "aci.e2ee.response.v2";
/// How far a request's timestamp may be from the service's clock, seconds.
pub const MAX_SKEW_SECS: u64 = 300;
/// Ephemeral key, AES-GCM nonce and tag: what a field adds to its plaintext.
const OVERHEAD: usize = 32 + 12 + 16;

/// The request headers, by their lowercase names.
pub mod header {
    /// `2`.
    pub const VERSION: &str = "x-e2ee-version";
    /// The key the answer's fields are encrypted to.
    pub const CLIENT_KEY: &str = "x-client-pub-key";
    /// The attested service key the request's fields are encrypted to.
    pub const MODEL_KEY: &str = "x-model-pub-key";
    /// The request's replay token.
    pub const NONCE: &str = "x-e2ee-nonce";
    /// The request's time, UNIX seconds.
    pub const TIMESTAMP: &str = "x-e2ee-timestamp";
    /// The pre-ACI scheme's selector, which v2 requests must not send.
    pub const LEGACY_SIGNING_ALGO: &str = "x-signing-algo";
    /// Response: whether fields were encrypted.
    pub const APPLIED: &str = "x-e2ee-applied";
    /// Response: the suite used.
    pub const ALGO: &str = "x-e2ee-algo";
}

/// A refusal, with the error type the specification gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum E2eeError {
    /// Some, not all, of the five headers.
    #[error("E2EE v2 needs all five headers (X-E2EE-Version, X-Client-Pub-Key, X-Model-Pub-Key, X-E2EE-Nonce, X-E2EE-Timestamp); missing {0}")]
    HeaderMissing(String),
    /// Another version, or the legacy scheme.
    #[error("{0}")]
    InvalidVersion(String),
    /// A key that is not one of the suite's.
    #[error("{0}")]
    InvalidPublicKey(String),
    /// `X-Model-Pub-Key` is not in the attested keyset.
    #[error("X-Model-Pub-Key {0} is not an E2EE key of this service's attested keyset (GET /v1/aci/attestation)")]
    ModelKeyMismatch(String),
    /// A nonce that is not 64 hex characters.
    #[error("X-E2EE-Nonce must be exactly 64 hexadecimal characters, found {0:?}")]
    InvalidNonce(String),
    /// The (client key, service key, nonce) was used before.
    #[error("this X-E2EE-Nonce was already used by this client key within the last {} seconds; send a fresh nonce", 2 * MAX_SKEW_SECS)]
    ReplayDetected,
    /// Malformed or too far from now.
    #[error("{0}")]
    InvalidTimestamp(String),
    /// The body's `model` is missing or not a string.
    #[error("an E2EE request's top-level \"model\" must be a string: it is bound into every field's associated data")]
    InvalidPayloadModel,
    /// A field did not decrypt, or did not restore.
    #[error("{0}")]
    DecryptionFailed(String),
    /// V2 was asked of an endpoint it does not define.
    #[error("E2EE v2 is not defined for {0}")]
    UnsupportedEndpoint(String),
    /// The answer could not be encrypted.
    #[error("could not encrypt the answer: {0}")]
    EncryptionFailed(String),
}

impl E2eeError {
    /// The error `type` the specification names.
    pub fn error_type(&self) -> &'static str {
        match self {
            E2eeError::HeaderMissing(_) => "e2ee_header_missing",
            E2eeError::InvalidVersion(_) => "e2ee_invalid_version",
            E2eeError::InvalidPublicKey(_) => "e2ee_invalid_public_key",
            E2eeError::ModelKeyMismatch(_) => "e2ee_model_key_mismatch",
            E2eeError::InvalidNonce(_) => "e2ee_invalid_nonce",
            E2eeError::ReplayDetected => "e2ee_replay_detected",
            E2eeError::InvalidTimestamp(_) => "e2ee_invalid_timestamp",
            E2eeError::InvalidPayloadModel => "e2ee_invalid_payload_model",
            E2eeError::DecryptionFailed(_) => "e2ee_decryption_failed",
            E2eeError::UnsupportedEndpoint(_) => "e2ee_unsupported_endpoint",
            E2eeError::EncryptionFailed(_) => "e2ee_encryption_failed",
        }
    }
}

/// The endpoints v2 defines fields for that this service serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`: `messages`, `choices.{i}.message` / `delta`.
    Chat,
    /// `/v1/completions`: `prompt`, `choices.{i}.text`.
    Completions,
}

/// A 32-byte X25519 public key from hex (an optional `0x`, either case).
pub fn parse_public_key(what: &str, s: &str) -> Result<[u8; 32], E2eeError> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    let bytes = hex::decode(digits)
        .map_err(|_| E2eeError::InvalidPublicKey(format!("{what} is not hex: {:?}", short(s))))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        E2eeError::InvalidPublicKey(format!(
            "{what} must be a 32-byte X25519 key, found {} bytes",
            bytes.len()
        ))
    })
}

fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

/// An X25519 key the service decrypts with, and its keyset id.
pub struct ServiceKey {
    key_id: String,
    secret: StaticSecret,
    public: [u8; 32],
}

impl std::fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceKey")
            .field("key_id", &self.key_id)
            .field("public", &hex::encode(self.public))
            .finish_non_exhaustive()
    }
}

impl ServiceKey {
    /// The key whose private scalar is `seed`.
    pub fn from_seed(key_id: &str, seed: [u8; 32]) -> Self {
        let secret = StaticSecret::from(seed);
        let public = PublicKey::from(&secret).to_bytes();
        ServiceKey {
            key_id: key_id.to_owned(),
            secret,
            public,
        }
    }

    /// A fresh key from the system's randomness.
    pub fn generate(key_id: &str) -> Result<Self, ring::error::Unspecified> {
        Ok(Self::from_seed(key_id, random()?))
    }

    /// The same key under another id.
    pub fn renamed(mut self, key_id: &str) -> Self {
        self.key_id = key_id.to_owned();
        self
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// The keyset entry naming this key.
    pub fn entry(&self) -> KeyEntry {
        KeyEntry {
            key_id: self.key_id.clone(),
            algo: X25519_SUITE.to_owned(),
            public_key: hex::encode(self.public),
        }
    }

    /// Opens one field sealed to this key.
    pub fn open(&self, field_hex: &str, aad: &[u8]) -> Result<Vec<u8>, E2eeError> {
        open_with(&self.secret, field_hex, aad)
    }
}

fn random<const N: usize>() -> Result<[u8; N], ring::error::Unspecified> {
    let mut out = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut out)?;
    Ok(out)
}

/// The AES-256-GCM key for a shared X25519 secret.
fn field_key(shared: &[u8; 32]) -> LessSafeKey {
    struct Len32;
    impl ring::hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let mut key = [0u8; 32];
    // RFC 5869: no salt is HashLen zero bytes, which HMAC treats as no key.
    ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[])
        .extract(shared)
        .expand(&[X25519_INFO], Len32)
        .and_then(|okm| okm.fill(&mut key))
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("a 32-byte AES-256 key"))
}

/// Seals `plaintext` to `recipient` with the given ephemeral scalar and
/// AES-GCM nonce: the deterministic core of [`seal`], for test vectors.
pub fn seal_with(
    recipient: &[u8; 32],
    plaintext: &[u8],
    aad: &[u8],
    ephemeral: [u8; 32],
    iv: [u8; 12],
) -> Result<String, E2eeError> {
    let ephemeral = StaticSecret::from(ephemeral);
    let shared = ephemeral.diffie_hellman(&PublicKey::from(*recipient));
    if !shared.was_contributory() {
        return Err(E2eeError::InvalidPublicKey(
            "the recipient key is a low-order X25519 point".into(),
        ));
    }
    let mut buf = plaintext.to_vec();
    field_key(shared.as_bytes())
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::from(aad), &mut buf)
        .map_err(|_| E2eeError::EncryptionFailed("AES-GCM refused the field".into()))?;
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.extend_from_slice(PublicKey::from(&ephemeral).as_bytes());
    out.extend_from_slice(&iv);
    out.extend_from_slice(&buf);
    Ok(hex::encode(out))
}

/// Seals `plaintext` to `recipient` under `aad`, with a fresh ephemeral key
/// and nonce.
pub fn seal(recipient: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Result<String, E2eeError> {
    let fail = |_| E2eeError::EncryptionFailed("the system's randomness failed".into());
    seal_with(
        recipient,
        plaintext,
        aad,
        random().map_err(fail)?,
        random().map_err(fail)?,
    )
}

/// Opens a field sealed to `secret`'s public key under `aad`.
pub fn open_with(secret: &StaticSecret, field_hex: &str, aad: &[u8]) -> Result<Vec<u8>, E2eeError> {
    let fail = |why: &str| E2eeError::DecryptionFailed(why.to_owned());
    let bytes = hex::decode(field_hex).map_err(|_| fail("a sealed field is not hex"))?;
    if bytes.len() < OVERHEAD {
        return Err(fail(
            "a sealed field is shorter than its key, nonce and tag",
        ));
    }
    let (ephemeral, rest) = bytes.split_at(32);
    let (iv, sealed) = rest.split_at(12);
    let ephemeral = <[u8; 32]>::try_from(ephemeral).map_err(|_| fail("ephemeral key"))?;
    let shared = secret.diffie_hellman(&PublicKey::from(ephemeral));
    if !shared.was_contributory() {
        return Err(fail(
            "a sealed field's ephemeral key is a low-order X25519 point",
        ));
    }
    let iv = <[u8; 12]>::try_from(iv).map_err(|_| fail("nonce"))?;
    let mut buf = sealed.to_vec();
    let plain = field_key(shared.as_bytes())
        .open_in_place(Nonce::assume_unique_for_key(iv), Aad::from(aad), &mut buf)
        .map_err(|_| {
            fail("a field failed authentication (wrong key, or moved or altered ciphertext)")
        })?;
    Ok(plain.to_vec())
}

/// What every field of one request is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The suite.
    pub algo: String,
    /// The request's `model`, byte for byte.
    pub model: String,
    /// `X-E2EE-Nonce` as sent.
    pub nonce: String,
    /// `X-E2EE-Timestamp`.
    pub ts: u64,
}

impl Context {
    /// The associated data of the request field at `field`.
    pub fn request_aad(&self, field: &str) -> Vec<u8> {
        jcs_bytes(json!({
            "purpose": REQUEST_PURPOSE, "algo": self.algo, "model": self.model,
            "field": field, "nonce": self.nonce, "ts": self.ts,
        }))
    }

    /// The associated data of the response field at `field` of the response
    /// whose `id` is `id` (`""` when it has none).
    pub fn response_aad(&self, id: &str, field: &str) -> Vec<u8> {
        jcs_bytes(json!({
            "purpose": RESPONSE_PURPOSE, "algo": self.algo, "model": self.model,
            "id": id, "field": field, "nonce": self.nonce, "ts": self.ts,
        }))
    }
}

fn jcs_bytes(v: Value) -> Vec<u8> {
    crate::jcs::canonical(&v).expect("strings and an integer always canonicalize")
}

mod fields;
mod request;
pub use fields::{open_fields, seal_fields, Direction, FieldOpener};
pub use request::{Opened, ReplayGuard, RequestHeaders, Sealer};
