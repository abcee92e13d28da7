//! Vouchers: chain-ready encoding (checked against a hand computation of the
//! TON cell representation hash), signatures, and every refusal a client or
//! worker applies.

use cocoon_core::Nanoton;
use cocoon_pay::{SignedVoucher, Voucher, VoucherBook, VoucherError, VoucherKind, VoucherSigner};
use ring::signature::Ed25519KeyPair;
use tycho_types::cell::HashBytes;
use tycho_types::models::StdAddr;

fn signer() -> VoucherSigner {
    let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    VoucherSigner::from_pkcs8(doc.as_ref()).unwrap()
}

fn addr(b: u8) -> StdAddr {
    StdAddr::new(0, HashBytes([b; 32]))
}

fn voucher(kind: VoucherKind, total: u64, seqno: u64) -> Voucher {
    Voucher {
        kind,
        contract: addr(1),
        party: addr(2),
        total: Nanoton::new(total),
        seqno,
        expires_at: 2_000_000_000,
    }
}

/// Bits, most significant first.
#[derive(Default)]
struct Bits(Vec<bool>);
impl Bits {
    fn uint(&mut self, v: u128, n: usize) {
        for i in (0..n).rev() {
            self.0.push((v >> i) & 1 == 1);
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        for x in b {
            self.uint(u128::from(*x), 8);
        }
    }
}

/// The representation hash of a cell with no references, per the TON
/// whitepaper: SHA-256(d1 ‖ d2 ‖ data padded with a completion tag).
fn repr_hash(bits: &Bits) -> [u8; 32] {
    let n = bits.0.len();
    let d1 = 0u8; // no references, ordinary, level 0
    let d2 = (n / 8 + n.div_ceil(8)) as u8;
    let mut padded = bits.0.clone();
    if !n.is_multiple_of(8) {
        padded.push(true);
        while !padded.len().is_multiple_of(8) {
            padded.push(false);
        }
    }
    let mut data = vec![d1, d2];
    for chunk in padded.chunks(8) {
        data.push(chunk.iter().fold(0u8, |a, b| (a << 1) | u8::from(*b)));
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &data).as_ref());
    out
}

#[test]
fn the_signed_hash_is_the_ton_representation_hash_of_the_documented_layout() {
    let v = voucher(VoucherKind::Worker, 1_234_567, 42);
    let mut b = Bits::default();
    b.uint(0xecd0_a149, 32);
    for a in [&v.contract, &v.party] {
        b.uint(0b10, 2); // addr_std$10
        b.uint(0, 1); // no anycast
        b.uint(0, 8); // workchain 0
        b.bytes(&a.address.0);
    }
    // Coins: 4-bit byte length, then the value in that many bytes.
    b.uint(3, 4);
    b.uint(1_234_567, 24);
    b.uint(42, 64);
    b.uint(2_000_000_000, 32);
    assert_eq!(v.hash().unwrap(), repr_hash(&b));
}

#[test]
fn a_signed_voucher_round_trips_and_verifies() {
    let s = signer();
    let v = s.sign(voucher(VoucherKind::Client, 10, 1)).unwrap();
    let boc = v.to_boc().unwrap();
    let back = SignedVoucher::from_boc(&boc).unwrap();
    assert_eq!(back, v);
    back.verify_signature(&s.public_key()).unwrap();
}

#[test]
fn a_flipped_bit_anywhere_is_refused() {
    let s = signer();
    let good = s.sign(voucher(VoucherKind::Client, 10, 1)).unwrap();
    let boc = good.to_boc().unwrap();
    for i in 0..boc.len() * 8 {
        let mut bad = boc.clone();
        bad[i / 8] ^= 0x80 >> (i % 8);
        if let Ok(v) = SignedVoucher::from_boc(&bad) {
            // Only encoding details outside the signed content (BoC header
            // flags) may change without effect on what verifies.
            if v.verify_signature(&s.public_key()).is_ok() {
                assert_eq!(v, good, "bit {i} changed a voucher that still verifies");
            }
        }
    }
    // Tampering with the total after signing breaks the signature.
    let mut v = good.clone();
    v.voucher.total = Nanoton::new(9);
    let err = v.verify_signature(&s.public_key()).unwrap_err();
    assert!(matches!(err, VoucherError::Signature { .. }), "{err}");
}

#[test]
fn the_book_refuses_other_contracts_kinds_parties_replays_regressions_and_expiry() {
    let s = signer();
    let mut book = VoucherBook::new(VoucherKind::Client, addr(1), addr(2), s.public_key());
    book.accept(s.sign(voucher(VoucherKind::Client, 100, 5)).unwrap(), 0)
        .unwrap();

    let check = |book: &mut VoucherBook, v: Voucher, name: &str| {
        let err = book.accept(s.sign(v).unwrap(), 1_000).unwrap_err();
        assert_eq!(
            book.latest().unwrap().voucher.seqno,
            5,
            "a refused voucher changed the book"
        );
        assert!(err.to_string().contains(name), "{name}: {err}");
    };
    let mut other_contract = voucher(VoucherKind::Client, 200, 6);
    other_contract.contract = addr(9);
    check(&mut book, other_contract, "for contract");
    let mut other_party = voucher(VoucherKind::Client, 200, 6);
    other_party.party = addr(9);
    check(&mut book, other_party, "expected 0:0202");
    check(
        &mut book,
        voucher(VoucherKind::Worker, 200, 6),
        "worker voucher",
    );
    check(&mut book, voucher(VoucherKind::Client, 100, 5), "replayed");
    check(&mut book, voucher(VoucherKind::Client, 90, 4), "replayed");
    check(
        &mut book,
        voucher(VoucherKind::Client, 90, 6),
        "went backwards",
    );
    // An older seqno claiming a larger total, or the same seqno with another
    // total: the proxy signed inconsistent totals.
    check(
        &mut book,
        voucher(VoucherKind::Client, 101, 4),
        "went backwards",
    );
    check(
        &mut book,
        voucher(VoucherKind::Client, 99, 5),
        "went backwards",
    );
    let mut expired = voucher(VoucherKind::Client, 200, 6);
    expired.expires_at = 999;
    check(&mut book, expired, "expired");
    // Signed by someone else.
    let err = book
        .accept(
            signer().sign(voucher(VoucherKind::Client, 200, 6)).unwrap(),
            1_000,
        )
        .unwrap_err();
    assert!(matches!(err, VoucherError::Signature { .. }), "{err}");
    // A proper successor is accepted.
    book.accept(s.sign(voucher(VoucherKind::Client, 150, 6)).unwrap(), 1_000)
        .unwrap();
    assert_eq!(book.latest().unwrap().voucher.total, Nanoton::new(150));
}
