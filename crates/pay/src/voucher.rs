//! Vouchers: the proxy's signed statement of a cumulative total owed to a
//! worker or charged to a client, in the form a TON contract checks.
//!
//! TL-B:
//!
//! ```text
//! client_voucher#55f2abf7 contract:MsgAddressInt client:MsgAddressInt
//!     total:Coins seqno:uint64 expires_at:uint32 = Voucher;
//! worker_voucher#ecd0a149 contract:MsgAddressInt worker:MsgAddressInt
//!     total:Coins seqno:uint64 expires_at:uint32 = Voucher;
//! signed_voucher$_ signature:bits512 voucher:^Voucher = SignedVoucher;
//! ```
//!
//! The tags are the CRC32 of each constructor's TL-B (with `#_`), as TON
//! tooling derives them; distinct tags keep a client's voucher from being
//! presented as a worker's. `contract` is the proxy contract, so a voucher
//! for one proxy instance means nothing to another. The signature is
//! Ed25519 over the voucher cell's representation hash: exactly what
//! `checkSignature(voucher.hash(), signature, proxy_key)` verifies on chain.
//! Totals are cumulative and never go backwards; `seqno` orders vouchers.

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use tycho_types::boc::Boc;
use tycho_types::cell::{Cell, CellBuilder, CellFamily, DynCell, Load, Store};
use tycho_types::models::StdAddr;
use tycho_types::num::Tokens;

use cocoon_core::Nanoton;

/// Whose total a voucher states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VoucherKind {
    /// What a client has been charged in total.
    Client,
    /// What a worker has earned in total.
    Worker,
}

impl VoucherKind {
    /// The constructor tag.
    pub const fn tag(self) -> u32 {
        match self {
            VoucherKind::Client => 0x55f2_abf7,
            VoucherKind::Worker => 0xecd0_a149,
        }
    }

    fn from_tag(tag: u32) -> Option<Self> {
        [VoucherKind::Client, VoucherKind::Worker]
            .into_iter()
            .find(|k| k.tag() == tag)
    }

    /// `client` or `worker`.
    pub fn as_str(self) -> &'static str {
        match self {
            VoucherKind::Client => "client",
            VoucherKind::Worker => "worker",
        }
    }
}

/// An unsigned voucher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voucher {
    /// Client or worker voucher.
    pub kind: VoucherKind,
    /// The proxy contract it is for.
    pub contract: StdAddr,
    /// The client or worker it is for.
    pub party: StdAddr,
    /// Cumulative total, nanoton.
    pub total: Nanoton,
    /// Strictly increasing per (contract, party, kind).
    pub seqno: u64,
    /// After this UNIX time the contract refuses it.
    pub expires_at: u32,
}

/// Why a voucher is refused. Each variant names the check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoucherError {
    /// Not a signed voucher cell.
    #[error("malformed voucher: {0}")]
    Malformed(String),
    /// The signature does not verify under the proxy's key.
    #[error("voucher signature does not verify under proxy key {key}")]
    Signature {
        /// The proxy key, hex.
        key: String,
    },
    /// A client voucher where a worker voucher was expected, or the reverse.
    #[error("voucher is a {found} voucher, expected a {expected} voucher")]
    Kind {
        /// Expected kind.
        expected: &'static str,
        /// Found kind.
        found: &'static str,
    },
    /// Another proxy contract.
    #[error("voucher is for contract {found}, expected {expected}")]
    Contract {
        /// Expected contract.
        expected: String,
        /// Found contract.
        found: String,
    },
    /// Another client or worker.
    #[error("voucher is for {found}, expected {expected}")]
    Party {
        /// Expected party.
        expected: String,
        /// Found party.
        found: String,
    },
    /// Not newer than the latest voucher held, and consistent with it: a
    /// replayed or reordered voucher, refused as the latest but harmless.
    #[error("voucher seqno {found} is not after the latest held, {latest}: a replayed or reordered voucher")]
    Replayed {
        /// Latest seqno held.
        latest: u64,
        /// This voucher's seqno.
        found: u64,
    },
    /// The total went down.
    #[error("voucher total {found} is below the latest held, {latest}: the proxy's ledger went backwards")]
    Regressed {
        /// Latest total held.
        latest: Nanoton,
        /// This voucher's total.
        found: Nanoton,
    },
    /// Past its expiry: a voucher is valid while `now < expires_at`, as
    /// the contracts judge it.
    #[error("voucher expired at {expires_at} (now {now})")]
    Expired {
        /// Expiry.
        expires_at: u32,
        /// Now.
        now: u64,
    },
    /// A commit would move nothing: the total is not above what the
    /// contract has committed (exit code 114).
    #[error("voucher total {total} is not above the {committed} the contract has committed")]
    NotAboveCommitted {
        /// What the contract committed.
        committed: Nanoton,
        /// This voucher's total.
        total: Nanoton,
    },
    /// Older than the voucher the contract committed last (exit code 115).
    #[error("voucher seqno {found} is below the {committed} the contract committed last")]
    SeqnoBelowCommitted {
        /// The seqno committed last.
        committed: u64,
        /// This voucher's seqno.
        found: u64,
    },
    /// The proxy key encodes a point of small order: anyone could sign
    /// under it, so nothing signed under it is worth anything.
    #[error("proxy key {key} is a point of small order: anyone can sign under it")]
    WeakKey {
        /// The key, hex.
        key: String,
    },
}

fn malformed(e: impl std::fmt::Display) -> VoucherError {
    VoucherError::Malformed(e.to_string())
}

impl Voucher {
    /// The voucher as a cell.
    pub fn to_cell(&self) -> Result<Cell, VoucherError> {
        let ctx = Cell::empty_context();
        let mut b = CellBuilder::new();
        b.store_u32(self.kind.tag()).map_err(malformed)?;
        self.contract.store_into(&mut b, ctx).map_err(malformed)?;
        self.party.store_into(&mut b, ctx).map_err(malformed)?;
        Tokens::new(u128::from(self.total.get()))
            .store_into(&mut b, ctx)
            .map_err(malformed)?;
        b.store_u64(self.seqno).map_err(malformed)?;
        b.store_u32(self.expires_at).map_err(malformed)?;
        b.build().map_err(malformed)
    }

    /// Reads a voucher cell, refusing trailing bits or references.
    pub fn from_cell(cell: &DynCell) -> Result<Self, VoucherError> {
        let mut s = cell.as_slice().map_err(malformed)?;
        let tag = s.load_u32().map_err(malformed)?;
        let kind = VoucherKind::from_tag(tag)
            .ok_or_else(|| VoucherError::Malformed(format!("unknown voucher tag {tag:#010x}")))?;
        let contract = StdAddr::load_from(&mut s).map_err(malformed)?;
        let party = StdAddr::load_from(&mut s).map_err(malformed)?;
        let total = Tokens::load_from(&mut s).map_err(malformed)?.into_inner();
        let total = u64::try_from(total)
            .map(Nanoton::new)
            .map_err(|_| VoucherError::Malformed(format!("total {total} is out of range")))?;
        let seqno = s.load_u64().map_err(malformed)?;
        let expires_at = s.load_u32().map_err(malformed)?;
        if !s.is_empty() {
            return Err(VoucherError::Malformed(format!(
                "{} trailing bits and {} references",
                s.size_bits(),
                s.size_refs()
            )));
        }
        Ok(Voucher {
            kind,
            contract,
            party,
            total,
            seqno,
            expires_at,
        })
    }

    /// The representation hash of the voucher cell: what is signed.
    pub fn hash(&self) -> Result<[u8; 32], VoucherError> {
        Ok(self.to_cell()?.repr_hash().0)
    }

    /// Whether it is still valid at `now` (UNIX seconds): until, and not
    /// at, `expires_at`, as the contracts judge it.
    pub fn is_valid_at(&self, now: u64) -> Result<(), VoucherError> {
        if now >= u64::from(self.expires_at) {
            return Err(VoucherError::Expired {
                expires_at: self.expires_at,
                now,
            });
        }
        Ok(())
    }

    /// The checks a client or worker contract makes of this voucher's
    /// numbers against what it has `committed`, at `now`, in its order
    /// (contracts/README.md, "Voucher boundaries"); the increase the
    /// commit would claim. A party runs it before paying for a commit the
    /// contract would refuse. Signature, kind, contract and party are
    /// [`VoucherBook::accept`]'s.
    pub fn check_commit(&self, committed: &Committed, now: u64) -> Result<Nanoton, VoucherError> {
        if self.total <= committed.total {
            return Err(VoucherError::NotAboveCommitted {
                committed: committed.total,
                total: self.total,
            });
        }
        if self.seqno < committed.seqno {
            return Err(VoucherError::SeqnoBelowCommitted {
                committed: committed.seqno,
                found: self.seqno,
            });
        }
        self.is_valid_at(now)?;
        Ok(self.total.saturating_sub(committed.total))
    }
}

/// What a client or worker contract has committed of its vouchers: the
/// total paid and the seqno of the last voucher paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Committed {
    /// The committed total.
    pub total: Nanoton,
    /// The last committed seqno.
    pub seqno: u64,
}

/// A voucher with the proxy's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedVoucher {
    /// The voucher.
    pub voucher: Voucher,
    /// Ed25519 over the voucher cell's representation hash.
    pub signature: [u8; 64],
}

impl SignedVoucher {
    /// As a bag of cells: what nodes send each other and, later, the chain.
    pub fn to_boc(&self) -> Result<Vec<u8>, VoucherError> {
        let mut b = CellBuilder::new();
        b.store_raw(&self.signature, 512).map_err(malformed)?;
        b.store_reference(self.voucher.to_cell()?)
            .map_err(malformed)?;
        Ok(Boc::encode(b.build().map_err(malformed)?))
    }

    /// Reads a bag of cells written by [`SignedVoucher::to_boc`].
    pub fn from_boc(bytes: &[u8]) -> Result<Self, VoucherError> {
        let root = Boc::decode(bytes).map_err(malformed)?;
        let mut s = root.as_slice().map_err(malformed)?;
        let mut signature = [0u8; 64];
        s.load_raw(&mut signature, 512).map_err(malformed)?;
        let voucher = Voucher::from_cell(s.load_reference().map_err(malformed)?)?;
        if !s.is_empty() {
            return Err(VoucherError::Malformed(
                "trailing data after the voucher".into(),
            ));
        }
        Ok(SignedVoucher { voucher, signature })
    }

    /// Checks the signature under the proxy's public key.
    pub fn verify_signature(&self, proxy_key: &[u8; 32]) -> Result<(), VoucherError> {
        let hash = self.voucher.hash()?;
        UnparsedPublicKey::new(&ED25519, proxy_key)
            .verify(&hash, &self.signature)
            .map_err(|_| VoucherError::Signature {
                key: hex(proxy_key),
            })
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The proxy's voucher signing key.
pub struct VoucherSigner {
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for VoucherSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VoucherSigner({})", hex(&self.public_key()))
    }
}

impl VoucherSigner {
    /// A signer from an Ed25519 PKCS#8 key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, VoucherError> {
        Ed25519KeyPair::from_pkcs8(pkcs8)
            .map(|key| VoucherSigner { key })
            .map_err(|e| VoucherError::Malformed(format!("signing key: {e}")))
    }

    /// A signer from a raw 32-byte Ed25519 seed, as a TON mnemonic or a
    /// test derives it.
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, VoucherError> {
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map(|key| VoucherSigner { key })
            .map_err(|e| VoucherError::Malformed(format!("signing seed: {e}")))
    }

    /// The public key clients and workers verify with.
    pub fn public_key(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.key.public_key().as_ref());
        k
    }

    /// Signs the representation hash of another cell the proxy vouches
    /// for with this key (slash evidence): contracts tell the two apart by
    /// the cell's constructor tag.
    pub fn sign_cell_hash(&self, hash: &[u8; 32]) -> [u8; 64] {
        let mut signature = [0u8; 64];
        signature.copy_from_slice(self.key.sign(hash).as_ref());
        signature
    }

    /// Signs `voucher`.
    pub fn sign(&self, voucher: Voucher) -> Result<SignedVoucher, VoucherError> {
        let sig = self.key.sign(&voucher.hash()?);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(sig.as_ref());
        Ok(SignedVoucher { voucher, signature })
    }
}

/// What a client or worker keeps of its vouchers from one proxy: the
/// latest, accepted only after every check.
#[derive(Debug, Clone)]
pub struct VoucherBook {
    kind: VoucherKind,
    contract: StdAddr,
    party: StdAddr,
    proxy_key: [u8; 32],
    latest: Option<SignedVoucher>,
}

impl VoucherBook {
    /// A book for `party`'s vouchers of `kind` from the proxy contract
    /// `contract` signed with `proxy_key`.
    pub fn new(kind: VoucherKind, contract: StdAddr, party: StdAddr, proxy_key: [u8; 32]) -> Self {
        VoucherBook {
            kind,
            contract,
            party,
            proxy_key,
            latest: None,
        }
    }

    /// The latest voucher accepted.
    pub fn latest(&self) -> Option<&SignedVoucher> {
        self.latest.as_ref()
    }

    /// The proxy key it checks signatures with.
    pub fn proxy_key(&self) -> &[u8; 32] {
        &self.proxy_key
    }

    /// The proxy contract it expects.
    pub fn contract(&self) -> &StdAddr {
        &self.contract
    }

    /// Checks `v` (signature, kind, contract, party, expiry, seqno after the
    /// latest, total not below it) and keeps it as the latest. On error
    /// nothing changes.
    pub fn accept(&mut self, v: SignedVoucher, now: u64) -> Result<(), VoucherError> {
        if cocoon_core::ed25519::is_small_order(&self.proxy_key) {
            return Err(VoucherError::WeakKey {
                key: hex(&self.proxy_key),
            });
        }
        v.verify_signature(&self.proxy_key)?;
        let x = &v.voucher;
        if x.kind != self.kind {
            return Err(VoucherError::Kind {
                expected: self.kind.as_str(),
                found: x.kind.as_str(),
            });
        }
        if x.contract != self.contract {
            return Err(VoucherError::Contract {
                expected: self.contract.to_string(),
                found: x.contract.to_string(),
            });
        }
        if x.party != self.party {
            return Err(VoucherError::Party {
                expected: self.party.to_string(),
                found: x.party.to_string(),
            });
        }
        x.is_valid_at(now)?;
        if let Some(latest) = &self.latest {
            let l = &latest.voucher;
            // Two signed vouchers whose order and totals disagree prove the
            // proxy's ledger went backwards, whichever arrived first.
            let inconsistent = (x.seqno < l.seqno && x.total > l.total)
                || (x.seqno == l.seqno && x.total != l.total);
            if inconsistent {
                return Err(VoucherError::Regressed {
                    latest: l.total.max(x.total),
                    found: l.total.min(x.total),
                });
            }
            if x.seqno <= l.seqno {
                return Err(VoucherError::Replayed {
                    latest: l.seqno,
                    found: x.seqno,
                });
            }
            if x.total < latest.voucher.total {
                return Err(VoucherError::Regressed {
                    latest: latest.voucher.total,
                    found: x.total,
                });
            }
        }
        self.latest = Some(v);
        Ok(())
    }
}
