//! The configfs-tsm attester against directories shaped like
//! /sys/kernel/config/tsm/report, holding real fixture evidence (there is no
//! TDX or SEV-SNP guest here; the kernel interface is files, so a directory
//! with the same files is a faithful stand-in).

use std::path::{Path, PathBuf};

use cocoon_core::Role;
use cocoon_tee::evidence::{self, VerifyContext};
use cocoon_tee::{Attester, Claims, ConfigfsTsm, Evidence, TeeKind};

fn fixture(dir: &str, name: &str) -> Vec<u8> {
    let path = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../../shared/fixtures/tee")
    .join(dir)
    .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A report entry as the kernel shows it: provider and outblob.
fn fake_tsm(name: &str, provider: &str, outblob: &[u8]) -> PathBuf {
    let root = std::env::temp_dir().join(format!("cocoon-tsm-{name}-{}", std::process::id()));
    let entry = root.join("entry");
    std::fs::create_dir_all(&entry).unwrap();
    std::fs::write(entry.join("provider"), format!("{provider}\n")).unwrap();
    std::fs::write(entry.join("outblob"), outblob).unwrap();
    root
}

fn cleanup(root: &Path) {
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_tdx_guest_yields_its_quote_and_the_report_data_is_written() {
    let quote = fixture("tdx", "tdx_quote");
    let collateral = fixture("tdx", "tdx_quote_collateral.json");
    let root = fake_tsm("tdx", "tdx_guest", &quote);
    let tsm = ConfigfsTsm::open(&root, "entry")
        .unwrap()
        .with_tdx_collateral(collateral.clone());
    assert_eq!(tsm.kind(), TeeKind::Tdx);
    let ev = tsm.attest(&[9; 64]).unwrap();
    assert_eq!(
        std::fs::read(root.join("entry/inblob")).unwrap(),
        vec![9; 64]
    );
    assert_eq!(
        ev,
        Evidence::Tdx {
            quote: quote.clone(),
            collateral: Some(collateral)
        }
    );
    // The quote is real and verifies; a certificate minted over it is not
    // bound to its claims, because this quote's report data is someone else's.
    let v = evidence::verify(
        &ev,
        VerifyContext {
            now: 1_752_919_234,
            sim_roots: &[],
            collateral: None,
        },
    )
    .unwrap();
    let claims = Claims {
        public_key: [0; 32],
        role: Role::Worker,
        issued_at: 1_752_919_200,
        expires_at: 1_752_922_800,
        config_hash: [0; 32],
        model_hash: None,
        receipt_key: None,
        e2e_key: None,
        region: None,
    };
    let minted = cocoon_tee::cert::mint(claims, &tsm).unwrap();
    assert_ne!(v.report_data, minted.claims.report_data());
    cleanup(&root);
}

#[test]
fn an_snp_guest_yields_a_report_with_its_certificates() {
    let report = fixture("sev-snp", "trustee_test-report.bin");
    let root = fake_tsm("snp", "sev_guest", &report);
    let tsm = ConfigfsTsm::open(&root, "entry").unwrap();
    assert_eq!(tsm.kind(), TeeKind::SevSnp);
    // Without the VCEK and chain the evidence would be unverifiable: refused.
    let err = tsm.attest(&[0; 64]).unwrap_err();
    assert!(err.to_string().contains("VCEK/VLEK"), "{err}");
    let tsm = tsm.with_snp_certificates(
        fixture("sev-snp", "trustee_test-vcek.der"),
        fixture("sev-snp", "trustee_milan_ask_ark_asvk.pem"),
    );
    let ev = tsm.attest(&[0; 64]).unwrap();
    let v = evidence::verify(
        &ev,
        VerifyContext {
            now: 1_795_478_400,
            sim_roots: &[],
            collateral: None,
        },
    )
    .unwrap();
    assert_eq!(v.kind, TeeKind::SevSnp);
    cleanup(&root);
}

#[test]
fn an_unknown_provider_or_a_missing_interface_is_named() {
    let root = fake_tsm("other", "arm_cca_guest", b"");
    let err = ConfigfsTsm::open(&root, "entry").unwrap_err();
    assert!(err.to_string().contains("arm_cca_guest"), "{err}");
    cleanup(&root);
    let err = ConfigfsTsm::open(Path::new("/nonexistent/tsm/report"), "entry").unwrap_err();
    assert!(
        err.to_string().contains("configfs-tsm /nonexistent"),
        "{err}"
    );
}
