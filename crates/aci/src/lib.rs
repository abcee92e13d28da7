//! Attested Confidential Inference, `aci/1`: the artifacts that let anyone
//! check an inference service from outside, byte for byte as the public
//! specification and its test vectors define them.
//!
//! - [`jcs`]: the canonical JSON (RFC 8785) every digest and signature is over;
//! - [`keyset`]: the workload keyset, its digest, and the attestation
//!   statement whose SHA-256 the TEE evidence binds;
//! - [`receipt`]: the signed per-request event log;
//! - [`session`]: the content-addressed record of one verified upstream;
//! - [`e2ee`]: the E2EE v2 field encryption (X25519, HKDF-SHA256,
//!   AES-256-GCM), its associated data, and its refusals.

pub mod e2ee;
pub mod jcs;
pub mod keyset;
pub mod receipt;
pub mod session;

/// The protocol version every artifact names.
pub const API_VERSION: &str = "aci/1";

/// `"sha256:" || hex(sha256(bytes))`, the form of every ACI digest field.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// Lowercase hex of SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
