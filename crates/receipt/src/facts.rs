//! What a receipt signature covers: a small TON cell of the facts a
//! contract must compare (which request, what content, which weights) and
//! the hash of the whole signed body. Signing the cell's representation
//! hash (or the root of a batch of them, [`crate::batch`]) lets the worker
//! contract check the same signature a client checks
//! (contracts/src/common/evidence.tolk):
//!
//! ```text
//! receipt_facts_v4#52435402 request:bits256 content:bits256 model:bits256
//!     time:uint32 body:^[ body_sha256:bits256 ] = ReceiptFacts;
//! receipt_facts#52435401 request:bits256 content:bits256 model:bits256
//!     body:^[ body_sha256:bits256 ] = ReceiptFacts;   // versions 2 and 3
//! batch_path$_ sibling:bits256 up:(Maybe ^BatchPath) = BatchPath;
//! receipt_batch$_ index:uint16 path:BatchPath = ReceiptBatch;
//! signed_receipt$_ key:bits256 signature:bits512 facts:^ReceiptFacts
//!     batch:(Maybe ^ReceiptBatch) = SignedReceiptFacts;
//! ```

use sha2::{Digest, Sha256};
use tycho_types::cell::{Cell, CellBuilder, HashBytes};

use crate::batch::BatchProof;
use crate::body::{ReceiptBody, SignedReceipt};
use crate::check::ReceiptError;

/// The constructor tag of `receipt_facts` (receipts of versions 2 and 3).
pub const FACTS_TAG: u32 = 0x5243_5401;

/// The constructor tag of `receipt_facts_v4`, which states the receipt's
/// time: a contract takes only this kind as slash evidence, and only while
/// it is recent.
pub const FACTS_TAG_V4: u32 = 0x5243_5402;

/// Domain separation: a receipt body hash cannot be mistaken for any other
/// hash signed with the same key.
const BODY_DOMAIN: &[u8] = b"cocoon/receipt/v2\0";

/// The facts of one receipt, as the chain sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptFacts {
    /// SHA-256 of the request the engine ran.
    pub request: [u8; 32],
    /// The answer's content digest ([`crate::digest::content`]); zero when
    /// the worker did not compute it (a request that is not deterministic).
    pub content: [u8; 32],
    /// SHA-256 of the weights; zero when the engine cannot tell.
    pub model: [u8; 32],
    /// When the worker finished the answer, UNIX seconds (receipts of
    /// version 4 on; `None` before).
    pub time: Option<u32>,
    /// SHA-256 of the domain tag and the body's JSON: binds every other
    /// member of the receipt.
    pub body: [u8; 32],
}

fn hash32(what: &'static str, hex_str: &str) -> Result<[u8; 32], ReceiptError> {
    hex::decode(hex_str)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            ReceiptError::Malformed(format!("{what} is not 32 bytes of hex: {hex_str:?}"))
        })
}

fn cell_error(e: tycho_types::error::Error) -> ReceiptError {
    ReceiptError::Malformed(format!("receipt facts cell: {e}"))
}

impl ReceiptFacts {
    /// The facts of `body`.
    pub fn of(body: &ReceiptBody) -> Result<Self, ReceiptError> {
        let optional = |what, v: &Option<String>| match v {
            Some(h) => hash32(what, h),
            None => Ok([0; 32]),
        };
        let mut h = Sha256::new();
        h.update(BODY_DOMAIN);
        serde_json::to_writer(HashWriter(&mut h), body)
            .map_err(|e| ReceiptError::Malformed(format!("receipt body: {e}")))?;
        let time = if body.version >= 4 {
            let secs = body.finished_at_ms / 1000;
            Some(u32::try_from(secs).map_err(|_| {
                ReceiptError::Malformed(format!(
                    "finished_at_ms {} is beyond a 32-bit UNIX time",
                    body.finished_at_ms
                ))
            })?)
        } else {
            None
        };
        Ok(ReceiptFacts {
            request: hash32("request_sha256", &body.request_sha256)?,
            content: optional("content_sha256", &body.content_sha256)?,
            model: optional("model_hash", &body.model_hash)?,
            time,
            body: h.finalize().into(),
        })
    }

    /// The `receipt_facts` cell.
    pub fn cell(&self) -> Result<Cell, ReceiptError> {
        let mut body = CellBuilder::new();
        body.store_u256(&HashBytes(self.body)).map_err(cell_error)?;
        let mut b = CellBuilder::new();
        b.store_u32(self.tag()).map_err(cell_error)?;
        b.store_u256(&HashBytes(self.request)).map_err(cell_error)?;
        b.store_u256(&HashBytes(self.content)).map_err(cell_error)?;
        b.store_u256(&HashBytes(self.model)).map_err(cell_error)?;
        if let Some(time) = self.time {
            b.store_u32(time).map_err(cell_error)?;
        }
        b.store_reference(body.build().map_err(cell_error)?)
            .map_err(cell_error)?;
        b.build().map_err(cell_error)
    }

    /// The cell's representation hash: what the worker signs, alone or as
    /// a leaf of a batch. Computed directly, as [`crate::batch::node`] is
    /// (a test checks it against [`Self::cell`]): every receipt is hashed
    /// on both ends, and building the cells costs more than hashing them.
    pub fn hash(&self) -> Result<[u8; 32], ReceiptError> {
        // The body cell: descriptors 0 (no references, level 0) and 64
        // (32 whole bytes), then the hash.
        let mut h = Sha256::new();
        h.update([0x00, 0x40]);
        h.update(self.body);
        let body: [u8; 32] = h.finalize().into();
        // The facts cell: descriptors 1 (one reference) and twice its
        // whole data bytes (100, or 104 with the time), the data, the
        // reference's depth (0) and its hash.
        let mut h = Sha256::new();
        h.update([0x01, if self.time.is_some() { 0xD0 } else { 0xC8 }]);
        h.update(self.tag().to_be_bytes());
        h.update(self.request);
        h.update(self.content);
        h.update(self.model);
        if let Some(time) = self.time {
            h.update(time.to_be_bytes());
        }
        h.update([0x00, 0x00]);
        h.update(body);
        Ok(h.finalize().into())
    }

    fn tag(&self) -> u32 {
        if self.time.is_some() {
            FACTS_TAG_V4
        } else {
            FACTS_TAG
        }
    }
}

/// Feeds JSON straight into a hash, without an intermediate buffer.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A receipt's facts with the worker's key and signature: what slash
/// evidence carries of each of the three workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedReceiptFacts {
    /// The worker's Ed25519 public key that signed: its receipt key
    /// (version 4), its RA-TLS certificate's before.
    pub key: [u8; 32],
    /// The receipt's signature.
    pub signature: [u8; 64],
    /// What it covers.
    pub facts: ReceiptFacts,
    /// The path from the facts to the signed root, when signed in a batch.
    pub batch: Option<BatchProof>,
}

impl SignedReceiptFacts {
    /// The facts of `receipt`, signed by `key`; checks the signature.
    pub fn of(receipt: &SignedReceipt, key: [u8; 32]) -> Result<Self, ReceiptError> {
        let signature: [u8; 64] = hex::decode(&receipt.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| ReceiptError::Malformed("signature is not 64 bytes of hex".into()))?;
        let s = SignedReceiptFacts {
            key,
            signature,
            facts: ReceiptFacts::of(&receipt.receipt)?,
            batch: receipt.batch.clone(),
        };
        s.verify()?;
        Ok(s)
    }

    /// Checks the signature under the key it names.
    pub fn verify(&self) -> Result<(), ReceiptError> {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &self.key)
            .verify(
                &crate::batch::root(self.facts.hash()?, self.batch.as_ref())?,
                &self.signature,
            )
            .map_err(|_| ReceiptError::Signature {
                certificate: format!("with key {}", hex::encode(self.key)),
            })
    }

    /// The `signed_receipt` cell.
    pub fn cell(&self) -> Result<Cell, ReceiptError> {
        let mut b = CellBuilder::new();
        b.store_u256(&HashBytes(self.key)).map_err(cell_error)?;
        b.store_raw(&self.signature, 512).map_err(cell_error)?;
        b.store_reference(self.facts.cell()?).map_err(cell_error)?;
        match &self.batch {
            None => b.store_bit_zero().map_err(cell_error)?,
            Some(proof) => {
                b.store_bit_one().map_err(cell_error)?;
                b.store_reference(batch_cell(proof)?).map_err(cell_error)?;
            }
        }
        b.build().map_err(cell_error)
    }

    /// Reads a `signed_receipt` cell.
    pub fn from_cell(cell: &tycho_types::cell::DynCell) -> Result<Self, ReceiptError> {
        let mut s = cell.as_slice().map_err(cell_error)?;
        let key = s.load_u256().map_err(cell_error)?.0;
        let mut signature = [0u8; 64];
        s.load_raw(&mut signature, 512).map_err(cell_error)?;
        let facts_cell = s.load_reference().map_err(cell_error)?;
        let mut f = facts_cell.as_slice().map_err(cell_error)?;
        let tag = f.load_u32().map_err(cell_error)?;
        if tag != FACTS_TAG && tag != FACTS_TAG_V4 {
            return Err(ReceiptError::Malformed(format!(
                "receipt facts tag {tag:#010x}, expected {FACTS_TAG_V4:#010x} or {FACTS_TAG:#010x}"
            )));
        }
        let request = f.load_u256().map_err(cell_error)?.0;
        let content = f.load_u256().map_err(cell_error)?.0;
        let model = f.load_u256().map_err(cell_error)?.0;
        let time = if tag == FACTS_TAG_V4 {
            Some(f.load_u32().map_err(cell_error)?)
        } else {
            None
        };
        let body = f
            .load_reference()
            .and_then(|c| c.as_slice())
            .and_then(|mut b| b.load_u256())
            .map_err(cell_error)?
            .0;
        let batch = if s.load_bit().map_err(cell_error)? {
            Some(read_batch(s.load_reference().map_err(cell_error)?)?)
        } else {
            None
        };
        Ok(SignedReceiptFacts {
            key,
            signature,
            facts: ReceiptFacts {
                request,
                content,
                model,
                time,
                body,
            },
            batch,
        })
    }
}

/// The `receipt_batch` cell of `proof`: the index and the first sibling,
/// each further sibling one cell up the chain of references.
fn batch_cell(proof: &BatchProof) -> Result<Cell, ReceiptError> {
    let index = u16::try_from(proof.index)
        .map_err(|_| ReceiptError::Malformed(format!("batch index {}", proof.index)))?;
    let mut up: Option<Cell> = None;
    for (level, sibling) in proof.path.iter().enumerate().rev() {
        let mut b = CellBuilder::new();
        if level == 0 {
            b.store_u16(index).map_err(cell_error)?;
        }
        b.store_u256(&HashBytes(*sibling)).map_err(cell_error)?;
        match up.take() {
            None => b.store_bit_zero().map_err(cell_error)?,
            Some(c) => {
                b.store_bit_one().map_err(cell_error)?;
                b.store_reference(c).map_err(cell_error)?;
            }
        }
        up = Some(b.build().map_err(cell_error)?);
    }
    up.ok_or_else(|| ReceiptError::Malformed("a batch path without siblings".into()))
}

/// Reads a `receipt_batch` cell; at most [`crate::batch::MAX_BATCH_DEPTH`]
/// levels.
fn read_batch(cell: &tycho_types::cell::DynCell) -> Result<BatchProof, ReceiptError> {
    let mut s = cell.as_slice().map_err(cell_error)?;
    let index = u32::from(s.load_u16().map_err(cell_error)?);
    let mut path = Vec::new();
    loop {
        if path.len() == crate::batch::MAX_BATCH_DEPTH {
            return Err(ReceiptError::Malformed(format!(
                "batch path deeper than {} levels",
                crate::batch::MAX_BATCH_DEPTH
            )));
        }
        path.push(s.load_u256().map_err(cell_error)?.0);
        if !s.load_bit().map_err(cell_error)? {
            break;
        }
        s = s
            .load_reference()
            .and_then(|c| c.as_slice())
            .map_err(cell_error)?;
    }
    Ok(BatchProof { index, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_facts_hash_is_the_cells_representation_hash() {
        for seed in 0u8..8 {
            let fill = |k: u8| std::array::from_fn(|i| (i as u8).wrapping_mul(seed ^ k));
            let facts = ReceiptFacts {
                request: fill(1),
                content: if seed % 2 == 0 { [0; 32] } else { fill(2) },
                model: fill(3),
                time: (seed % 3 != 0).then_some(1_800_000_000 + u32::from(seed)),
                body: fill(4),
            };
            assert_eq!(
                facts.hash().unwrap(),
                facts.cell().unwrap().repr_hash().0,
                "seed {seed}"
            );
        }
    }
}
