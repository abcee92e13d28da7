//! The compiled code of Cocoon's contracts, embedded from
//! `contracts/build/<Name>.json`.
//!
//! Those files are what `contracts/scripts/build.mjs` writes from the Tolk
//! sources (CI fails if they differ), so a node runs and derives addresses
//! from byte for byte the code that was tested, with no Node.js at run
//! time. Each file carries the code hash beside the code; loading checks
//! one against the other.

use serde::Deserialize;
use tycho_types::boc::Boc;
use tycho_types::cell::{Cell, HashBytes};

/// One of the four contracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContractKind {
    /// The root registry.
    Root,
    /// One per proxy instance.
    Proxy,
    /// One per (client owner, proxy contract).
    Client,
    /// One per (worker owner, proxy contract).
    Worker,
    /// The standard wallet v5 that node keys drive (not ours: the code as
    /// `@ton/ton` ships it).
    WalletV5R1,
}

impl ContractKind {
    /// Every settlement contract, in the order a deployment needs them.
    pub const ALL: [ContractKind; 4] = [
        ContractKind::Root,
        ContractKind::Proxy,
        ContractKind::Client,
        ContractKind::Worker,
    ];

    /// The contract's name, as its source and artifact files are named.
    pub fn name(self) -> &'static str {
        match self {
            ContractKind::Root => "RootContract",
            ContractKind::Proxy => "ProxyContract",
            ContractKind::Client => "ClientContract",
            ContractKind::Worker => "WorkerContract",
            ContractKind::WalletV5R1 => "WalletV5R1",
        }
    }

    fn artifact(self) -> &'static str {
        match self {
            ContractKind::Root => include_str!("../../../contracts/build/RootContract.json"),
            ContractKind::Proxy => include_str!("../../../contracts/build/ProxyContract.json"),
            ContractKind::Client => include_str!("../../../contracts/build/ClientContract.json"),
            ContractKind::Worker => include_str!("../../../contracts/build/WorkerContract.json"),
            ContractKind::WalletV5R1 => include_str!("../../../contracts/build/WalletV5R1.json"),
        }
    }

    /// The contract's compiled code, checked against its committed hash.
    pub fn code(self) -> Result<ContractCode, ArtifactError> {
        ContractCode::parse(self, self.artifact())
    }
}

/// Why a committed artifact could not be used. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Not the JSON `contracts/scripts/build.mjs` writes.
    #[error("contracts/build/{name}.json: {reason}")]
    Malformed {
        /// The contract.
        name: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The code does not hash to the hash committed beside it.
    #[error("contracts/build/{name}.json: the code hashes to {found}, the file says {expected}")]
    HashMismatch {
        /// The contract.
        name: &'static str,
        /// The committed hash.
        expected: String,
        /// The code's representation hash.
        found: String,
    },
}

/// A contract's compiled code.
#[derive(Debug, Clone)]
pub struct ContractCode {
    /// Which contract.
    pub kind: ContractKind,
    /// The code cell.
    pub code: Cell,
    /// Its representation hash: the code hash an account on chain shows.
    pub hash: HashBytes,
    /// The compiler that produced it, e.g. `tolk 1.3.0`.
    pub compiler: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Artifact {
    name: String,
    compiler: String,
    code_hash: String,
    code_boc: String,
}

impl ContractCode {
    fn parse(kind: ContractKind, json: &str) -> Result<Self, ArtifactError> {
        let name = kind.name();
        let malformed = |reason: String| ArtifactError::Malformed { name, reason };
        let a: Artifact = serde_json::from_str(json).map_err(|e| malformed(e.to_string()))?;
        if a.name != name {
            return Err(malformed(format!("it names {}", a.name)));
        }
        let boc = hex_decode(&a.code_boc).ok_or_else(|| malformed("codeBoc is not hex".into()))?;
        let code = Boc::decode(boc).map_err(|e| malformed(format!("codeBoc: {e}")))?;
        let hash = *code.repr_hash();
        let found = hex_encode(hash.as_slice());
        if found != a.code_hash.to_ascii_lowercase() {
            return Err(ArtifactError::HashMismatch {
                name,
                expected: a.code_hash,
                found,
            });
        }
        Ok(ContractCode {
            kind,
            code,
            hash,
            compiler: a.compiler,
        })
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_committed_contract_loads_and_matches_its_hash() {
        let mut hashes = Vec::new();
        for kind in ContractKind::ALL {
            let code = kind.code().unwrap_or_else(|e| panic!("{e}"));
            assert!(code.compiler.starts_with("tolk "), "{}", code.compiler);
            assert!(code.code.bit_len() > 0 || code.code.reference_count() > 0);
            hashes.push(code.hash);
        }
        hashes.sort();
        hashes.dedup();
        assert_eq!(hashes.len(), 4, "four distinct contracts");
    }

    #[test]
    fn the_wallet_code_is_the_standard_w5r1() {
        let code = ContractKind::WalletV5R1
            .code()
            .unwrap_or_else(|e| panic!("{e}"));
        // The code hash every TON wallet app knows W5R1 by.
        assert_eq!(
            hex_encode(code.hash.as_slice()),
            "20834b7b72b112147e1b2fb457b84e74d1a30f04f737d4f62a668e9552d2b72f"
        );
        assert!(code.compiler.starts_with("@ton/ton "), "{}", code.compiler);
    }

    #[test]
    fn a_tampered_artifact_is_refused_with_the_reason() {
        let good = ContractKind::Worker.artifact();
        let a: serde_json::Value = serde_json::from_str(good).expect("json");
        let hash = a["codeHash"].as_str().expect("hash").to_string();
        let flipped = if hash.starts_with('0') { "1" } else { "0" };
        let bad = good.replacen(&hash, &format!("{flipped}{}", &hash[1..]), 1);
        let err = ContractCode::parse(ContractKind::Worker, &bad).expect_err("hash mismatch");
        assert!(matches!(err, ArtifactError::HashMismatch { .. }), "{err}");
        assert!(err.to_string().contains("WorkerContract.json"), "{err}");

        let renamed = good.replacen("\"WorkerContract\"", "\"ClientContract\"", 1);
        let err = ContractCode::parse(ContractKind::Worker, &renamed).expect_err("wrong name");
        assert!(err.to_string().contains("it names ClientContract"), "{err}");

        let err = ContractCode::parse(ContractKind::Worker, "{}").expect_err("empty");
        assert!(matches!(err, ArtifactError::Malformed { .. }), "{err}");
    }
}
