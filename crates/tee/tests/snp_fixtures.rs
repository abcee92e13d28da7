//! SEV-SNP verification on real reports and AMD certificates from
//! ../shared/fixtures/tee/sev-snp (see its README).

use std::path::PathBuf;

use cocoon_tee::snp::{verify, EndorsementKey, SnpError, REPORT_LEN};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../../shared/fixtures/tee/sev-snp")
    .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn milan_report() -> Vec<u8> {
    let text = String::from_utf8(fixture("report_milan.hex")).unwrap();
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(digits).unwrap()
}

/// 2026-11-24T00:00:00Z: inside every VCEK's validity, after the VLEK's.
const TODAY: u64 = 1_795_478_400;
/// 2025-06-01T00:00:00Z: inside the VLEK's validity (2024-12-10 to 2025-12-10).
const VLEK_VALID: u64 = 1_748_736_000;

#[test]
fn the_milan_vcek_report_verifies() {
    let ev = verify(
        &milan_report(),
        &fixture("vcek_milan.der"),
        &fixture("cert_chain_milan.pem"),
        TODAY,
    )
    .unwrap();
    assert_eq!(ev.signer, EndorsementKey::Vcek);
    assert_eq!(ev.product, "Milan");
    // The image hash covers MEASUREMENT and HOST_DATA only.
    let r = milan_report();
    let mut regs = r[0x90..0xC0].to_vec();
    regs.extend_from_slice(&r[0xC0..0xE0]);
    assert_eq!(&ev.measurement[..], &r[0x90..0xC0]);
    assert_eq!(&ev.report_data[..], &r[0x50..0x90]);
    let expected = ring::digest::digest(&ring::digest::SHA256, &regs);
    assert_eq!(ev.image_hash.as_bytes(), expected.as_ref());
}

#[test]
fn the_trustee_vcek_report_verifies_with_an_ask_ark_asvk_bundle() {
    let ev = verify(
        &fixture("trustee_test-report.bin"),
        &fixture("trustee_test-vcek.der"),
        &fixture("trustee_milan_ask_ark_asvk.pem"),
        TODAY,
    )
    .unwrap();
    assert_eq!(ev.signer, EndorsementKey::Vcek);
}

#[test]
fn the_vlek_report_verifies_while_its_certificate_is_valid_and_not_after() {
    let (r, k, c) = (
        fixture("trustee_test-vlek-report.bin"),
        fixture("trustee_test-vlek.der"),
        fixture("trustee_milan_ask_ark_asvk.pem"),
    );
    let ev = verify(&r, &k, &c, VLEK_VALID).unwrap();
    assert_eq!(ev.signer, EndorsementKey::Vlek);
    assert_eq!(ev.vmpl, 1);
    match verify(&r, &k, &c, TODAY).unwrap_err() {
        SnpError::Expired {
            subject, not_after, ..
        } => {
            assert_eq!(subject, "SEV-VLEK");
            assert_eq!(not_after, 1_765_404_861); // 2025-12-10T22:14:21Z
        }
        other => panic!("expected Expired, got {other}"),
    }
}

#[test]
fn altered_vceks_fail_the_chain() {
    for name in [
        "trustee_test-vcek-invalid-legacy.der",
        "trustee_test-vcek-invalid-new.der",
    ] {
        let err = verify(
            &fixture("trustee_test-report.bin"),
            &fixture(name),
            &fixture("trustee_milan_ask_ark_asvk.pem"),
            TODAY,
        )
        .unwrap_err();
        assert!(matches!(err, SnpError::ChainSignature(_)), "{name}: {err}");
        assert!(
            err.to_string().contains("SEV-Milan did not sign SEV-VCEK"),
            "{err}"
        );
    }
}

#[test]
fn every_flipped_signed_byte_fails() {
    let (k, c) = (fixture("vcek_milan.der"), fixture("cert_chain_milan.pem"));
    let good = milan_report();
    // The signed body, and R and S (48 significant bytes each).
    let positions = (0..0x2A0).chain(0x2A0..0x2A0 + 48).chain(0x2E8..0x2E8 + 48);
    for i in positions {
        let mut r = good.clone();
        r[i] ^= 0x01;
        assert!(
            verify(&r, &k, &c, TODAY).is_err(),
            "flipping byte {i:#x} went unnoticed"
        );
    }
}

#[test]
fn a_vcek_for_another_chip_fails_on_the_chip_id() {
    let err = verify(
        &milan_report(),
        &fixture("trustee_test-vcek.der"),
        &fixture("cert_chain_milan.pem"),
        TODAY,
    )
    .unwrap_err();
    assert!(matches!(err, SnpError::ChipId { .. }), "{err}");
}

#[test]
fn a_debuggable_guest_is_refused() {
    let mut r = milan_report();
    r[0x08 + 2] |= 0x08; // policy bit 19: DEBUG
    let err = verify(
        &r,
        &fixture("vcek_milan.der"),
        &fixture("cert_chain_milan.pem"),
        TODAY,
    )
    .unwrap_err();
    assert!(matches!(err, SnpError::DebugAllowed { .. }), "{err}");
}

#[test]
fn a_chain_without_an_amd_root_is_refused() {
    let chain = String::from_utf8(fixture("cert_chain_milan.pem")).unwrap();
    let ask_only = &chain[..chain.find("-----END CERTIFICATE-----").unwrap() + 25];
    let err = verify(
        &milan_report(),
        &fixture("vcek_milan.der"),
        ask_only.as_bytes(),
        TODAY,
    )
    .unwrap_err();
    assert!(err.to_string().contains("no AMD root key"), "{err}");
}

#[test]
fn a_report_of_the_wrong_size_is_refused() {
    let r = milan_report();
    let err = verify(&r[..REPORT_LEN - 1], &[], &[], TODAY).unwrap_err();
    assert!(matches!(err, SnpError::Report(_)), "{err}");
}

#[test]
fn a_reported_tcb_the_vcek_does_not_certify_is_refused() {
    let mut r = milan_report();
    r[0x180 + 6] = r[0x180 + 6].wrapping_add(1); // REPORTED_TCB.snp
    let err = verify(
        &r,
        &fixture("vcek_milan.der"),
        &fixture("cert_chain_milan.pem"),
        TODAY,
    )
    .unwrap_err();
    assert!(matches!(err, SnpError::Tcb { .. }), "{err}");
}
