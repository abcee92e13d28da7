//! The voucher boundary table (contracts/vectors/voucher-boundaries.json)
//! judged by `Voucher::check_commit`, row by row, exactly as
//! contracts/test/boundaries.test.mjs has a client contract judge it: a
//! party never pays for a commit the contract refuses, nor skips one it
//! would take. And a voucher book, which keeps the latest voucher a party
//! received, calls a voucher expired exactly when the contract does.

use cocoon_core::Nanoton;
use cocoon_pay::voucher::Committed;
use cocoon_pay::{Voucher, VoucherBook, VoucherError, VoucherKind, VoucherSigner};
use serde_json::Value;
use tycho_types::cell::HashBytes;
use tycho_types::models::StdAddr;

fn table() -> Value {
    // The package's directory as the test runner says (a build cached from
    // a checkout elsewhere would carry that checkout's path).
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let path = dir.join("../../contracts/vectors/voucher-boundaries.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the boundary table"))
        .expect("the boundary table is JSON")
}

fn number(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().expect("a number"),
        other => other.as_u64().expect("a number"),
    }
}

fn voucher(v: &Value) -> Voucher {
    Voucher {
        kind: VoucherKind::Client,
        contract: StdAddr::new(0, HashBytes([1; 32])),
        party: StdAddr::new(0, HashBytes([2; 32])),
        total: Nanoton::new(number(&v["total"])),
        seqno: number(&v["seqno"]),
        expires_at: u32::try_from(number(&v["expires_at"])).expect("a 32-bit time"),
    }
}

fn verdict(r: &Result<Nanoton, VoucherError>) -> String {
    match r {
        Ok(increase) => increase.get().to_string(),
        Err(VoucherError::Expired { .. }) => "Expired".into(),
        Err(VoucherError::NotAboveCommitted { .. }) => "NotAboveCommitted".into(),
        Err(VoucherError::SeqnoBelowCommitted { .. }) => "SeqnoBelowCommitted".into(),
        Err(other) => format!("unexpected: {other}"),
    }
}

#[test]
fn every_row_is_judged_as_the_contract_judges_it() {
    let t = table();
    let now = number(&t["now"]);
    let rows = t["rows"].as_array().expect("rows");
    assert!(rows.len() >= 10, "the table covers every boundary");
    for row in rows {
        let name = row["name"].as_str().unwrap_or_default();
        let committed = Committed {
            total: Nanoton::new(number(&row["committed"]["total"])),
            seqno: number(&row["committed"]["seqno"]),
        };
        let judged = voucher(&row["voucher"]).check_commit(&committed, now);
        let want = row["rust"].as_str().expect("a verdict");
        assert_eq!(verdict(&judged), want, "row {name:?}");
        // The contract takes exactly the rows crates/pay lets through.
        assert_eq!(row["exit"] == 0, judged.is_ok(), "row {name:?}");
    }
}

#[test]
fn a_voucher_book_calls_a_voucher_expired_exactly_when_the_contract_does() {
    let signer = VoucherSigner::from_seed(&[3; 32]).expect("a key");
    let now = 1_800_000_100u64;
    let at = |expires_at: u32| {
        let mut book = VoucherBook::new(
            VoucherKind::Client,
            StdAddr::new(0, HashBytes([1; 32])),
            StdAddr::new(0, HashBytes([2; 32])),
            signer.public_key(),
        );
        let mut v = voucher(&serde_json::json!({"total": "5", "seqno": "1", "expires_at": 0}));
        v.expires_at = expires_at;
        book.accept(signer.sign(v).expect("signs"), now)
    };
    assert!(matches!(at(now as u32), Err(VoucherError::Expired { .. })));
    assert!(matches!(
        at(now as u32 - 1),
        Err(VoucherError::Expired { .. })
    ));
    at(now as u32 + 1).expect("valid until, and not at, its expiry");
}

#[test]
fn a_voucher_book_refuses_every_voucher_under_a_small_order_proxy_key() {
    let signer = VoucherSigner::from_seed(&[3; 32]).expect("a key");
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut book = VoucherBook::new(
        VoucherKind::Client,
        StdAddr::new(0, HashBytes([1; 32])),
        StdAddr::new(0, HashBytes([2; 32])),
        identity,
    );
    let v =
        voucher(&serde_json::json!({"total": "5", "seqno": "1", "expires_at": 2_000_000_000u32}));
    let err = book
        .accept(signer.sign(v).expect("signs"), 1_800_000_000)
        .unwrap_err();
    assert!(matches!(err, VoucherError::WeakKey { .. }), "{err}");
}
