//! The simulated TEE, for development on machines without TDX or SEV-SNP.
//!
//! A sim quote looks like a TD quote's body — MRTD, RTMR0-3 and 64 bytes of
//! report data — signed with Ed25519 by a *sim root*: a key generated once
//! and kept in the node's data directory. It proves nothing about hardware:
//! anyone with the root key can produce any measurement. A policy accepts
//! sim evidence only when it names `sim` and the root's public key, and a
//! production configuration refuses such a policy.

use std::path::{Path, PathBuf};

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use sha2::Digest;

use crate::{ImageHash, TcbStatus};

const TCB_ORDER: [TcbStatus; 8] = TcbStatus::ALL;

fn tcb_tag(t: TcbStatus) -> u8 {
    TCB_ORDER.iter().position(|x| *x == t).unwrap_or(0) as u8
}

/// First bytes of every sim quote.
pub const MAGIC: &[u8; 16] = b"COCOON-SIM-QT-v1";
/// Length of a sim quote: magic, root key, MRTD, RTMR0-3, simulated TCB
/// status, report data, signature.
pub const QUOTE_LEN: usize = 16 + 32 + 48 + 4 * 48 + 1 + 64 + 64;
/// File name of the root key in a data directory.
pub const ROOT_FILE: &str = "sim-tee-root.pk8";

/// The key that signs sim quotes.
pub struct SimRoot {
    key: Ed25519KeyPair,
    path: PathBuf,
}

impl std::fmt::Debug for SimRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimRoot")
            .field("public_key", &hex::encode(self.public_key()))
            .field("path", &self.path)
            .finish()
    }
}

/// Why a sim root or quote was not usable.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The root key file could not be read or written.
    #[error("sim root key {path}: {reason}")]
    Root {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The quote is not a sim quote.
    #[error("sim quote: {0}")]
    Malformed(String),
    /// The quote's root is not one the policy trusts.
    #[error("sim quote is signed by root {found}, which the policy does not trust (trusted: [{trusted}])")]
    UntrustedRoot {
        /// The quote's root, hex.
        found: String,
        /// The trusted roots, hex, comma-separated.
        trusted: String,
    },
    /// The signature does not verify.
    #[error("sim quote signature does not verify under root {root}")]
    Signature {
        /// The root, hex.
        root: String,
    },
}

impl SimRoot {
    /// Loads the root from `dir`, creating it (mode 0600) on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, SimError> {
        let path = dir.join(ROOT_FILE);
        let err = |reason: String| SimError::Root {
            path: path.clone(),
            reason,
        };
        let pkcs8 = crate::keyfile::ed25519_pkcs8(&path).map_err(|e| err(e.to_string()))?;
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|e| err(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        Ok(SimRoot { key, path })
    }

    /// The root's public key: what a sim-accepting policy lists.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.key.public_key().as_ref());
        out
    }

    /// Signs `message` with the root key: how the root endorses the sim
    /// GPU's certificate root.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.key.sign(message).as_ref());
        out
    }

    /// A secret derived from the root key for `label` (Ed25519 signatures
    /// are deterministic): the sim GPU's keys, the same on every start.
    pub(crate) fn derive(&self, label: &str) -> [u8; 48] {
        let sig = self.key.sign(label.as_bytes());
        sha2::Sha384::digest(sig.as_ref()).into()
    }

    /// Signs a sim quote over the given registers and report data.
    pub fn quote(
        &self,
        mrtd: &[u8; 48],
        rtmr: &[[u8; 48]; 4],
        tcb: TcbStatus,
        report_data: &[u8; 64],
    ) -> Vec<u8> {
        let mut q = Vec::with_capacity(QUOTE_LEN);
        q.extend_from_slice(MAGIC);
        q.extend_from_slice(&self.public_key());
        q.extend_from_slice(mrtd);
        for r in rtmr {
            q.extend_from_slice(r);
        }
        q.push(tcb_tag(tcb));
        q.extend_from_slice(report_data);
        let sig = self.key.sign(&q);
        q.extend_from_slice(sig.as_ref());
        q
    }
}

/// What a verified sim quote shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvidence {
    /// The root that signed it.
    pub root: [u8; 32],
    /// Simulated MRTD.
    pub mrtd: [u8; 48],
    /// Simulated RTMR0-3.
    pub rtmr: [[u8; 48]; 4],
    /// The TCB status the sim platform claims (to exercise policies).
    pub tcb_status: TcbStatus,
    /// The 64 bytes bound into the quote.
    pub report_data: [u8; 64],
    /// SHA-256 over MRTD and RTMR0-3, as for TDX.
    pub image_hash: ImageHash,
}

/// Verifies a sim quote against the roots a policy trusts.
pub fn verify(quote: &[u8], trusted_roots: &[[u8; 32]]) -> Result<SimEvidence, SimError> {
    if quote.len() != QUOTE_LEN || &quote[..16] != MAGIC {
        return Err(SimError::Malformed(format!(
            "expected {QUOTE_LEN} bytes starting with {:?}, found {} bytes",
            String::from_utf8_lossy(MAGIC),
            quote.len()
        )));
    }
    let mut root = [0u8; 32];
    root.copy_from_slice(&quote[16..48]);
    if !trusted_roots.contains(&root) {
        return Err(SimError::UntrustedRoot {
            found: hex::encode(root),
            trusted: trusted_roots
                .iter()
                .map(hex::encode)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let (body, sig) = quote.split_at(QUOTE_LEN - 64);
    UnparsedPublicKey::new(&ED25519, root)
        .verify(body, sig)
        .map_err(|_| SimError::Signature {
            root: hex::encode(root),
        })?;
    let reg = |i: usize| -> [u8; 48] {
        let mut r = [0u8; 48];
        r.copy_from_slice(&body[48 + 48 * i..96 + 48 * i]);
        r
    };
    let mrtd = reg(0);
    let rtmr = [reg(1), reg(2), reg(3), reg(4)];
    let tcb_status = TCB_ORDER
        .get(usize::from(body[288]))
        .copied()
        .ok_or_else(|| SimError::Malformed(format!("TCB status tag {}", body[288])))?;
    let mut report_data = [0u8; 64];
    report_data.copy_from_slice(&body[289..353]);
    Ok(SimEvidence {
        root,
        mrtd,
        rtmr,
        tcb_status,
        report_data,
        image_hash: ImageHash::over(&[&mrtd, &rtmr[0], &rtmr[1], &rtmr[2], &rtmr[3]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quote_verifies_under_its_root_only() {
        let dir = std::env::temp_dir().join(format!("cocoon-sim-{}", std::process::id()));
        let root = SimRoot::load_or_create(&dir).unwrap();
        // Loading again gives the same root.
        assert_eq!(
            SimRoot::load_or_create(&dir).unwrap().public_key(),
            root.public_key()
        );
        let q = root.quote(&[1; 48], &[[2; 48]; 4], TcbStatus::UpToDate, &[3; 64]);
        let ev = verify(&q, &[root.public_key()]).unwrap();
        assert_eq!((ev.mrtd, ev.report_data), ([1; 48], [3; 64]));
        assert!(matches!(
            verify(&q, &[[9; 32]]),
            Err(SimError::UntrustedRoot { .. })
        ));
        for i in 48..QUOTE_LEN {
            let mut bad = q.clone();
            bad[i] ^= 1;
            assert!(verify(&bad, &[root.public_key()]).is_err(), "byte {i}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
