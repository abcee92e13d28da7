//! TDX verification on real quotes and collateral from
//! ../shared/fixtures/tee/tdx (see its README for the fixed times).

use std::path::PathBuf;

use cocoon_tee::tdx::{verify, TdxError};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../../shared/fixtures/tee/tdx")
    .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// The validity window of tdx_quote with its collateral.
const FIRST_OK: u64 = 1750329147;
const LAST_OK: u64 = 1752919234;

#[test]
fn the_sample_quote_verifies_up_to_date() {
    let ev = verify(
        &fixture("tdx_quote"),
        &fixture("tdx_quote_collateral.json"),
        LAST_OK,
    )
    .unwrap();
    assert_eq!(ev.tcb_status, "UpToDate");
    assert!(ev.advisories.is_empty());
    assert_eq!((ev.version, ev.body), (4, "TD1.0"));
    // The image hash covers MRTD and RTMR0-3 only.
    let q = fixture("tdx_quote");
    let regs: Vec<u8> = [
        &q[184..232],
        &q[376..424],
        &q[424..472],
        &q[472..520],
        &q[520..568],
    ]
    .concat();
    let mut expected = [0u8; 32];
    expected.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &regs).as_ref());
    assert_eq!(ev.image_hash.as_bytes(), &expected);
    assert_eq!(&ev.mrtd[..], &q[184..232]);
    assert_eq!(&ev.report_data[..], &q[568..632]);
    verify(&q, &fixture("tdx_quote_collateral.json"), FIRST_OK).unwrap();
}

#[test]
fn outside_the_collateral_window_fails() {
    let (q, c) = (fixture("tdx_quote"), fixture("tdx_quote_collateral.json"));
    let late = verify(&q, &c, LAST_OK + 1).unwrap_err();
    assert!(
        matches!(late, TdxError::Verification { at, .. } if at == LAST_OK + 1),
        "{late}"
    );
    let early = verify(&q, &c, FIRST_OK - 1).unwrap_err();
    assert!(matches!(early, TdxError::Verification { .. }), "{early}");
}

#[test]
fn a_flipped_byte_anywhere_that_matters_fails() {
    let (q, c) = (fixture("tdx_quote"), fixture("tdx_quote_collateral.json"));
    for (what, at) in [
        ("header", 8usize),
        ("MRTD", 184),
        ("RTMR3", 520),
        ("report data", 600),
        ("signature", 640),
    ] {
        let mut bad = q.clone();
        bad[at] ^= 0x01;
        let err = verify(&bad, &c, LAST_OK);
        assert!(
            err.is_err(),
            "a flipped bit in the {what} (offset {at}) was accepted"
        );
    }
}

#[test]
fn the_cocoon_quote_verifies_with_its_fmspc_collateral() {
    let ev = verify(
        &fixture("cocoon_quote.dat"),
        &fixture("tdx_quote_outdated_collateral.json"),
        1774003274,
    )
    .unwrap();
    assert_eq!(ev.tcb_status, "UpToDate");
    assert_eq!(ev.body, "TD1.0");
}

#[test]
fn an_outdated_platform_has_no_matching_tcb_level() {
    let err = verify(
        &fixture("tdx_quote_outdated"),
        &fixture("tdx_quote_outdated_collateral.json"),
        1774003274,
    )
    .unwrap_err();
    assert!(err.to_string().contains("No matching TCB level"), "{err}");
}

#[test]
fn bad_inputs_are_named() {
    assert!(matches!(
        verify(b"short", b"{}", LAST_OK),
        Err(TdxError::Truncated(5))
    ));
    let err = verify(&fixture("tdx_quote"), b"{not json", LAST_OK).unwrap_err();
    assert!(err.to_string().contains("collateral is not valid"), "{err}");
}
