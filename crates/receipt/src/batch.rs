//! Receipts signed together: one Ed25519 signature over the Merkle root of
//! the facts of the receipts a worker finished at about the same time, and
//! in each receipt the path from its facts to that root.
//!
//! A signature costs the worker about as much CPU as relaying a whole
//! streamed answer, and checking one costs the client twice that; a busy
//! worker signs one root per batch instead of one facts hash per receipt,
//! and a client that receives several receipts of one batch checks the
//! root's signature once. Every receipt still verifies alone, offline and
//! on chain: the path is a few hashes.
//!
//! The tree is made of TON cells, so that a worker contract recomputes the
//! root with one `HASHBU` per level (contracts/src/common/evidence.tolk):
//! a leaf is the representation hash of the receipt's `receipt_facts`
//! cell, a node the representation hash of an ordinary cell holding the
//! two child hashes (512 data bits, no references). Leaves are padded with
//! zero hashes to a power of two. A batch of one has no path: its root is
//! its leaf, which is what a receipt without a batch signs.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::check::ReceiptError;

/// The deepest tree a receipt's path may climb: 256 receipts per signature.
pub const MAX_BATCH_DEPTH: usize = 8;
/// The most receipts one signature covers.
pub const MAX_BATCH: usize = 1 << MAX_BATCH_DEPTH;

/// Where one receipt sits in its batch's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchProof {
    /// The receipt's position among the batch's leaves: its bits, lowest
    /// first, say on which side each level's sibling lies.
    pub index: u32,
    /// The siblings from the leaf up, SHA-256 representation hashes, hex.
    #[serde(with = "hex_hashes")]
    pub path: Vec<[u8; 32]>,
}

/// The representation hash of an ordinary cell of 512 data bits (`left`
/// then `right`) and no references: descriptor bytes 0 (no references,
/// level 0) and 128 (64 whole bytes), then the data.
pub fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0x00, 0x80]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root a receipt's signature covers: its facts hash climbed along
/// `proof`, or the facts hash itself without one. Refuses a path deeper
/// than [`MAX_BATCH_DEPTH`] or an index beyond its tree.
pub fn root(leaf: [u8; 32], proof: Option<&BatchProof>) -> Result<[u8; 32], ReceiptError> {
    let Some(proof) = proof else {
        return Ok(leaf);
    };
    let depth = proof.path.len();
    if depth == 0 || depth > MAX_BATCH_DEPTH {
        return Err(ReceiptError::Malformed(format!(
            "batch path of {depth} levels; a batch has 1 to {MAX_BATCH_DEPTH}"
        )));
    }
    if u64::from(proof.index) >= 1u64 << depth {
        return Err(ReceiptError::Malformed(format!(
            "batch index {} is beyond a tree of {depth} levels",
            proof.index
        )));
    }
    let mut h = leaf;
    for (level, sibling) in proof.path.iter().enumerate() {
        h = if proof.index >> level & 1 == 1 {
            node(sibling, &h)
        } else {
            node(&h, sibling)
        };
    }
    Ok(h)
}

/// The tree over `leaves` (1 to [`MAX_BATCH`] of them): its root and each
/// leaf's proof, in order; `None` for a batch of one.
pub fn tree(leaves: &[[u8; 32]]) -> ([u8; 32], Vec<Option<BatchProof>>) {
    assert!(
        (1..=MAX_BATCH).contains(&leaves.len()),
        "a batch holds 1 to {MAX_BATCH} receipts, not {}",
        leaves.len()
    );
    if leaves.len() == 1 {
        return (leaves[0], vec![None]);
    }
    let width = leaves.len().next_power_of_two();
    let mut level: Vec<[u8; 32]> = leaves.to_vec();
    level.resize(width, [0; 32]);
    let mut paths: Vec<Vec<[u8; 32]>> = vec![Vec::new(); leaves.len()];
    while level.len() > 1 {
        for (i, path) in paths.iter_mut().enumerate() {
            let at = i >> path.len();
            path.push(level[at ^ 1]);
        }
        level = level.chunks(2).map(|p| node(&p[0], &p[1])).collect();
    }
    let proofs = paths
        .into_iter()
        .enumerate()
        .map(|(i, path)| {
            Some(BatchProof {
                index: i as u32,
                path,
            })
        })
        .collect();
    (level[0], proofs)
}

mod hex_hashes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(hex::encode))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        let strings = Vec::<String>::deserialize(d)?;
        strings
            .iter()
            .map(|s| {
                hex::decode(s)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| {
                        serde::de::Error::custom(format!(
                            "batch path hash is not 32 bytes of hex: {s:?}"
                        ))
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tycho_types::cell::{CellBuilder, HashBytes};

    fn leaf(i: u8) -> [u8; 32] {
        Sha256::digest([i]).into()
    }

    #[test]
    fn a_node_is_the_hash_of_the_cell_a_contract_builds() {
        let (l, r) = (leaf(1), leaf(2));
        let mut b = CellBuilder::new();
        b.store_u256(&HashBytes(l)).unwrap();
        b.store_u256(&HashBytes(r)).unwrap();
        assert_eq!(b.build().unwrap().repr_hash().0, node(&l, &r));
    }

    #[test]
    fn every_leaf_of_every_size_climbs_to_the_root() {
        for n in [1usize, 2, 3, 5, 8, 13, 256] {
            let leaves: Vec<_> = (0..n).map(|i| leaf(i as u8)).collect();
            let (top, proofs) = tree(&leaves);
            assert_eq!(proofs.len(), n);
            for (l, p) in leaves.iter().zip(&proofs) {
                assert_eq!(root(*l, p.as_ref()).unwrap(), top, "batch of {n}");
            }
        }
    }

    #[test]
    fn a_wrong_leaf_index_or_sibling_climbs_elsewhere() {
        let leaves: Vec<_> = (0..5).map(leaf).collect();
        let (top, proofs) = tree(&leaves);
        let p = proofs[2].clone().unwrap();
        assert_ne!(root(leaves[3], Some(&p)).unwrap(), top);
        let mut moved = p.clone();
        moved.index = 3;
        assert_ne!(root(leaves[2], Some(&moved)).unwrap(), top);
        let mut altered = p.clone();
        altered.path[1][0] ^= 1;
        assert_ne!(root(leaves[2], Some(&altered)).unwrap(), top);
        let mut beyond = p.clone();
        beyond.index = 8;
        assert!(root(leaves[2], Some(&beyond)).is_err());
        let empty = BatchProof {
            index: 0,
            path: vec![],
        };
        assert!(root(leaves[2], Some(&empty)).is_err());
        let deep = BatchProof {
            index: 0,
            path: vec![[0; 32]; MAX_BATCH_DEPTH + 1],
        };
        assert!(root(leaves[2], Some(&deep)).is_err());
    }

    #[test]
    fn a_proof_reads_back_from_its_json() {
        let (_, proofs) = tree(&[leaf(1), leaf(2), leaf(3)]);
        let p = proofs[1].clone().unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<BatchProof>(&json).unwrap(), p);
        assert!(serde_json::from_str::<BatchProof>(r#"{"index":0,"path":["00"]}"#).is_err());
    }
}
