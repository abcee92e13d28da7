//! Slash evidence: a proxy's signed statement that a worker answered a
//! deterministic request differently from two other workers, with the
//! three workers' own signed receipt facts. The worker contract checks it
//! (contracts/src/common/evidence.tolk) and pays part of the worker's stake
//! to the affected client:
//!
//! ```text
//! slash_evidence#5e1a5402 worker:MsgAddressInt client_owner:MsgAddressInt
//!     expires_at:uint32 accused:^SignedReceiptFacts
//!     first:^SignedReceiptFacts second:^SignedReceiptFacts = SlashEvidence;
//! signed_evidence$_ signature:bits512 evidence:^SlashEvidence = SignedEvidence;
//! ```
//!
//! The contract verifies the three workers' signatures itself, and that
//! the accused receipt's key is one its owner registered in the worker
//! contract; it slashes the share of the stake the root's terms set and
//! pays it, through the proxy contract, into the client contract of
//! `client_owner`. The proxy's signature vouches for what the chain cannot
//! see: that the witnesses are other attested workers, and that the
//! request was deterministic. Only receipts of version 4 are evidence:
//! they state their time, and a contract takes them only while recent.

use tycho_types::boc::Boc;
use tycho_types::cell::{Cell, CellBuilder, CellFamily, Load, Store};
use tycho_types::models::StdAddr;

use crate::facts::SignedReceiptFacts;

/// The constructor tag of `slash_evidence`.
pub const EVIDENCE_TAG: u32 = 0x5e1a_5402;

/// Why evidence is not evidence. Each variant names the check, in the
/// order (and with the exit code) of the worker contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// Not a signed evidence cell.
    #[error("malformed slash evidence: {0}")]
    Malformed(String),
    /// 130: the proxy's signature does not verify.
    #[error("slash evidence signature does not verify under proxy key {0}")]
    Signature(String),
    /// 109: a receipt names a key of small order, under which anyone signs.
    #[error("the {0} receipt names a key of small order, under which anyone can sign")]
    WeakKey(&'static str),
    /// 133: a receipt is not signed by the key it names.
    #[error("the {0} receipt's signature does not verify under the key it names")]
    ReceiptSignature(&'static str),
    /// 134: not one request on one model.
    #[error("the receipts are not about one request on one model: {0}")]
    Mismatch(String),
    /// 135: no dissent shown.
    #[error("the receipts show no dissent: {0}")]
    NotADissent(&'static str),
}

fn malformed(e: impl std::fmt::Display) -> EvidenceError {
    EvidenceError::Malformed(e.to_string())
}

/// What a proxy states when it asks a worker contract to slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlashEvidence {
    /// The accused worker's contract.
    pub worker: StdAddr,
    /// The owner of the client contract the slashed amount goes to: the
    /// client the dissent affected.
    pub client_owner: StdAddr,
    /// After this UNIX time the contract refuses the evidence.
    pub expires_at: u32,
    /// The accused worker's receipt.
    pub accused: SignedReceiptFacts,
    /// Two other workers' receipts for the same request, which agree.
    pub first: SignedReceiptFacts,
    /// The second of them.
    pub second: SignedReceiptFacts,
}

impl SlashEvidence {
    /// The `slash_evidence` cell.
    pub fn cell(&self) -> Result<Cell, EvidenceError> {
        let ctx = Cell::empty_context();
        let mut b = CellBuilder::new();
        b.store_u32(EVIDENCE_TAG).map_err(malformed)?;
        self.worker.store_into(&mut b, ctx).map_err(malformed)?;
        self.client_owner
            .store_into(&mut b, ctx)
            .map_err(malformed)?;
        b.store_u32(self.expires_at).map_err(malformed)?;
        for r in [&self.accused, &self.first, &self.second] {
            b.store_reference(r.cell().map_err(malformed)?)
                .map_err(malformed)?;
        }
        b.build().map_err(malformed)
    }

    /// What the proxy signs: the cell's representation hash.
    pub fn hash(&self) -> Result<[u8; 32], EvidenceError> {
        Ok(self.cell()?.repr_hash().0)
    }

    /// The checks the contract makes of the receipts, here first, so a
    /// proxy never signs evidence the contract would refuse.
    pub fn check_receipts(&self) -> Result<(), EvidenceError> {
        for (name, r) in [
            ("accused", &self.accused),
            ("first witness's", &self.first),
            ("second witness's", &self.second),
        ] {
            if cocoon_core::ed25519::is_small_order(&r.key) {
                return Err(EvidenceError::WeakKey(name));
            }
            r.verify()
                .map_err(|_| EvidenceError::ReceiptSignature(name))?;
            if r.facts.time.is_none() {
                return Err(EvidenceError::Mismatch(format!(
                    "the {name} receipt is older than version 4 and states no time"
                )));
            }
        }
        let (a, f, s) = (&self.accused.facts, &self.first.facts, &self.second.facts);
        if f.request != a.request || s.request != a.request {
            return Err(EvidenceError::Mismatch("different request hashes".into()));
        }
        if f.model != a.model || s.model != a.model {
            return Err(EvidenceError::Mismatch("different model hashes".into()));
        }
        if a.content == [0; 32] || f.content == [0; 32] {
            return Err(EvidenceError::NotADissent(
                "a receipt states no content digest (the request was not deterministic)",
            ));
        }
        if f.content != s.content {
            return Err(EvidenceError::NotADissent("the two witnesses disagree"));
        }
        if a.content == f.content {
            return Err(EvidenceError::NotADissent(
                "the accused answered what the witnesses answered",
            ));
        }
        let keys = [self.accused.key, self.first.key, self.second.key];
        if keys[0] == keys[1] || keys[0] == keys[2] || keys[1] == keys[2] {
            return Err(EvidenceError::NotADissent("two receipts share a key"));
        }
        Ok(())
    }
}

/// Evidence with the proxy's signature: what `slash` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedEvidence {
    /// The evidence.
    pub evidence: SlashEvidence,
    /// Ed25519 over the evidence cell's representation hash, by the
    /// proxy's voucher key.
    pub signature: [u8; 64],
}

impl SignedEvidence {
    /// Checks the receipts, then signs with `sign` (the proxy's voucher key
    /// over a 32-byte hash).
    pub fn sign(
        evidence: SlashEvidence,
        sign: impl FnOnce(&[u8; 32]) -> [u8; 64],
    ) -> Result<Self, EvidenceError> {
        evidence.check_receipts()?;
        let signature = sign(&evidence.hash()?);
        Ok(SignedEvidence {
            evidence,
            signature,
        })
    }

    /// The `signed_evidence` cell.
    pub fn cell(&self) -> Result<Cell, EvidenceError> {
        let mut b = CellBuilder::new();
        b.store_raw(&self.signature, 512).map_err(malformed)?;
        b.store_reference(self.evidence.cell()?)
            .map_err(malformed)?;
        b.build().map_err(malformed)
    }

    /// As a bag of cells.
    pub fn to_boc(&self) -> Result<Vec<u8>, EvidenceError> {
        Ok(Boc::encode(self.cell()?))
    }

    /// Reads a bag of cells written by [`SignedEvidence::to_boc`].
    pub fn from_boc(bytes: &[u8]) -> Result<Self, EvidenceError> {
        let root = Boc::decode(bytes).map_err(malformed)?;
        let mut s = root.as_slice().map_err(malformed)?;
        let mut signature = [0u8; 64];
        s.load_raw(&mut signature, 512).map_err(malformed)?;
        let cell = s.load_reference().map_err(malformed)?;
        let mut e = cell.as_slice().map_err(malformed)?;
        let tag = e.load_u32().map_err(malformed)?;
        if tag != EVIDENCE_TAG {
            return Err(EvidenceError::Malformed(format!(
                "tag {tag:#010x}, expected {EVIDENCE_TAG:#010x}"
            )));
        }
        let worker = StdAddr::load_from(&mut e).map_err(malformed)?;
        let client_owner = StdAddr::load_from(&mut e).map_err(malformed)?;
        let expires_at = e.load_u32().map_err(malformed)?;
        let mut receipt = || -> Result<SignedReceiptFacts, EvidenceError> {
            let c = e.load_reference().map_err(malformed)?;
            SignedReceiptFacts::from_cell(c).map_err(malformed)
        };
        let (accused, first, second) = (receipt()?, receipt()?, receipt()?);
        Ok(SignedEvidence {
            evidence: SlashEvidence {
                worker,
                client_owner,
                expires_at,
                accused,
                first,
                second,
            },
            signature,
        })
    }

    /// Checks the proxy's signature under `proxy_key`, then the receipts.
    pub fn verify(&self, proxy_key: &[u8; 32]) -> Result<(), EvidenceError> {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, proxy_key)
            .verify(&self.evidence.hash()?, &self.signature)
            .map_err(|_| EvidenceError::Signature(hex::encode(proxy_key)))?;
        self.evidence.check_receipts()
    }
}
