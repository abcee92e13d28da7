//! What moves money or proves misconduct: vouchers, receipts in saved
//! answers, and the slash evidence a proxy signs.

use cocoon_pay::{SignedVoucher, VoucherBook, VoucherKind, VoucherSigner};
use cocoon_receipt::evidence::SignedEvidence;
use cocoon_receipt::SavedAnswer;
use tycho_types::models::StdAddr;

/// The proxy's voucher key in every target (and seed).
pub(crate) const PROXY_SEED: [u8; 32] = [9; 32];
/// The time vouchers are judged at.
pub(crate) const VOUCHER_AT: u64 = 1_790_000_000;

/// The proxy contract vouchers name.
pub(crate) fn contract() -> StdAddr {
    StdAddr::new(0, [0x11; 32].into())
}

/// The party vouchers name.
pub(crate) fn party() -> StdAddr {
    StdAddr::new(0, [0x22; 32].into())
}

fn proxy_key() -> [u8; 32] {
    VoucherSigner::from_seed(&PROXY_SEED)
        .expect("a fixed seed is a key")
        .public_key()
}

/// A signed voucher's bag of cells, as a worker (selector bit 0) or client
/// receives it, offered to its book: accepted only with the proxy's
/// signature, for this contract and party, and moving forward.
pub(crate) fn voucher(data: &[u8]) -> bool {
    let Some((select, rest)) = crate::selector(data) else {
        return false;
    };
    let Ok(signed) = SignedVoucher::from_boc(rest) else {
        return false;
    };
    if let Ok(again) = signed.to_boc() {
        // What was read writes back to a bag that reads the same.
        assert_eq!(SignedVoucher::from_boc(&again).ok(), Some(signed.clone()));
    }
    let kind = if select & 1 == 0 {
        VoucherKind::Client
    } else {
        VoucherKind::Worker
    };
    let mut book = VoucherBook::new(kind, contract(), party(), proxy_key());
    let accepted = book.accept(signed.clone(), VOUCHER_AT).is_ok();
    if accepted {
        assert!(signed.verify_signature(&proxy_key()).is_ok());
        // The same voucher twice does not move the book.
        assert!(book.accept(signed, VOUCHER_AT).is_err());
    }
    accepted
}

/// A saved answer, stream or receipt as `cocoon receipt verify` and the
/// explorer read it (selector 0), checked against the certificate it
/// carries; or slash evidence as a contract would receive it (otherwise).
pub(crate) fn receipt(data: &[u8]) -> bool {
    let Some((select, rest)) = crate::selector(data) else {
        return false;
    };
    if select != 0 {
        let Ok(evidence) = SignedEvidence::from_boc(rest) else {
            return false;
        };
        return evidence.verify(&proxy_key()).is_ok();
    }
    let Ok(saved) = SavedAnswer::parse(rest) else {
        return false;
    };
    let Ok(certificate) = saved.certificate() else {
        return false;
    };
    let verifier = crate::tee::sim_verifier();
    match saved.verify(&certificate, None, verifier) {
        Ok(v) => v.verified,
        Err(_) => false,
    }
}
