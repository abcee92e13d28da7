//! NVIDIA GPU evidence on real Hopper reports and chains from
//! ../shared/fixtures/tee/nvidia (see its README): two H100s' reports and
//! chains verify; every tampered variant fails, naming what broke.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cocoon_tee::nvidia::{decode_hex, verify, GpuArch, GpuError, GpuPolicy};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../../shared/fixtures/tee/nvidia")
    .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn report() -> Vec<u8> {
    decode_hex(&fixture("hopperAttestationReport.txt")).unwrap()
}

fn chain() -> Vec<u8> {
    fixture("hopperCertChain.txt")
}

/// 2026-12-01T00:00:00Z: every certificate in the fixtures is valid then.
const NOW: u64 = 1_796_083_200;

const NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
const FWID: &str = "f5c384aebb579217a2c66b17ed0f28e6a9b8d639041acd7b4721cec004f7275494ba94bb5cdfdb3055ee051762b1f75d";

#[test]
fn the_hopper_report_verifies_and_names_its_gpu() {
    let gpu = verify(&report(), &chain(), NOW).unwrap();
    assert_eq!(gpu.arch, GpuArch::Hopper);
    assert_eq!(gpu.chip, "GH100 A01");
    assert_eq!(hex::encode(gpu.fwid), FWID);
    assert_eq!(hex::encode(gpu.nonce), NONCE);
    assert_eq!(gpu.measurements.len(), 64);
    assert!(gpu.measurements.iter().all(|m| m.value.len() == 48));
    assert!(!gpu.driver_version.is_empty());
    assert!(gpu.vbios_version.contains('.'));
    let mut expected = [0u8; 32];
    expected.copy_from_slice(&hex::decode(NONCE).unwrap());
    gpu.check_nonce(&expected).unwrap();
}

#[test]
fn the_second_hopper_report_verifies_with_its_own_chain_only() {
    let report = decode_hex(&fixture("trustee_hopper_coco_report1.txt")).unwrap();
    let gpu = verify(&report, &fixture("trustee_hopper_coco_certs1.txt"), NOW).unwrap();
    assert!(hex::encode(gpu.nonce).starts_with("87d8e24a"));
    // The other GPU's chain has another leaf: its FWID or key cannot match.
    let err = verify(&report, &chain(), NOW).unwrap_err();
    assert!(
        matches!(err, GpuError::Fwid { .. } | GpuError::Signature { .. }),
        "{err}"
    );
}

#[test]
fn a_report_for_another_nonce_is_refused() {
    let gpu = verify(&report(), &chain(), NOW).unwrap();
    let err = gpu.check_nonce(&[7u8; 32]).unwrap_err();
    assert!(err.to_string().contains(NONCE), "{err}");
}

#[test]
fn every_flipped_byte_of_the_signed_part_breaks_the_report() {
    let good = report();
    // Nonce, a measurement, the opaque data, the signature itself.
    for at in [5, 60, 3000, good.len() - 200, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        let err = verify(&bad, &chain(), NOW).unwrap_err();
        assert!(
            matches!(
                err,
                GpuError::Signature { .. } | GpuError::Fwid { .. } | GpuError::Report(_)
            ),
            "byte {at}: {err}"
        );
    }
}

#[test]
fn truncated_and_extended_reports_are_refused() {
    let good = report();
    for len in [0, 10, 37, 100, good.len() - 1] {
        let err = verify(&good[..len], &chain(), NOW).unwrap_err();
        assert!(matches!(err, GpuError::Report(_)), "{len}: {err}");
    }
    // Zero padding after the signature is the driver's buffer; anything
    // else there would be unsigned and is refused.
    let mut padded = good.clone();
    padded.extend([0, 0, 0]);
    verify(&padded, &chain(), NOW).unwrap();
    padded.push(1);
    let err = verify(&padded, &chain(), NOW).unwrap_err();
    assert!(err.to_string().contains("follow the signature"), "{err}");
}

#[test]
fn the_bad_chains_are_refused() {
    for (file, says) in [
        (
            "trustee_hopper_cert_chain_case2.txt",
            "no certificate below",
        ),
        ("trustee_hopper_cert_chain_case3.txt", "issued by"),
        ("trustee_hopper_cert_chain_case4.txt", "FWID"),
    ] {
        let err = verify(&report(), &fixture(file), NOW).unwrap_err();
        assert!(err.to_string().contains(says), "{file}: {err}");
    }
}

#[test]
fn a_chain_to_another_root_is_refused() {
    // Everything but the root: the pinned root is then the issuer, and the
    // chain still verifies. Swap the root for a self-signed stranger: it no
    // longer does.
    let text = String::from_utf8(chain()).unwrap();
    let certs: Vec<&str> = text
        .split_inclusive("-----END CERTIFICATE-----")
        .filter(|c| c.contains("BEGIN"))
        .collect();
    assert_eq!(certs.len(), 5);
    let without_root = certs[..4].concat();
    verify(&report(), without_root.as_bytes(), NOW).unwrap();
    let stranger = String::from_utf8(fixture("trustee_hopper_signing_cert.pem")).unwrap();
    let rerooted = format!("{}{}", certs[..4].concat(), stranger);
    let err = verify(&report(), rerooted.as_bytes(), NOW).unwrap_err();
    assert!(matches!(err, GpuError::Chain(_)), "{err}");
}

#[test]
fn a_tampered_certificate_is_refused() {
    let text = String::from_utf8(chain()).unwrap();
    // Change one base64 character inside the second certificate's body.
    let second = text.match_indices("-----BEGIN").nth(1).unwrap().0;
    let at = second + 200;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let err = verify(&report(), &bytes, NOW).unwrap_err();
    assert!(
        matches!(err, GpuError::Chain(_) | GpuError::Certificate(_)),
        "{err}"
    );
}

#[test]
fn certificates_are_checked_against_the_time() {
    // 2020-01-01: before the NVIDIA root was issued.
    let err = verify(&report(), &chain(), 1_577_836_800).unwrap_err();
    assert!(matches!(err, GpuError::Expired { .. }), "{err}");
}

#[test]
fn the_policy_pins_measurements_drivers_and_vbios() {
    let gpu = verify(&report(), &chain(), NOW).unwrap();
    GpuPolicy::default().check(&gpu).unwrap();
    let golden: BTreeMap<u8, Vec<Vec<u8>>> = gpu
        .measurements
        .iter()
        .map(|m| (m.index, vec![m.value.clone()]))
        .collect();
    let mut policy = GpuPolicy {
        measurements: golden,
        drivers: vec![gpu.driver_version.clone()],
        vbios: vec![gpu.vbios_version.clone()],
    };
    policy.check(&gpu).unwrap();
    let first = gpu.measurements[0].index;
    policy.measurements.insert(first, vec![vec![0xAA; 48]]);
    let err = policy.check(&gpu).unwrap_err();
    assert!(
        err.to_string().contains(&format!("measurement {first}")),
        "{err}"
    );
    policy.measurements.clear();
    policy.drivers = vec!["1.0".into()];
    assert!(policy
        .check(&gpu)
        .unwrap_err()
        .to_string()
        .contains("driver"));
    policy.drivers.clear();
    policy.vbios = vec!["1.0".into()];
    assert!(policy
        .check(&gpu)
        .unwrap_err()
        .to_string()
        .contains("VBIOS"));
}

fn multi(i: usize, what: &str) -> Vec<u8> {
    let path = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/fixtures/nvidia")
    .join(format!("multi_gpu_hopper_{i}_{what}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// Four Hopper GPUs of one machine (NVIDIA's attestation SDK test data):
/// each verifies with its own chain, all answer the one nonce and run the
/// same firmware (one FWID), and a report checked against another GPU's
/// chain fails: each GPU's identity is its own.
#[test]
fn four_gpus_of_one_machine_verify_each_with_its_own_chain() {
    let mut nonce = [0u8; 32];
    hex::decode_to_slice(
        String::from_utf8(multi(0, "nonce.hex")).unwrap().trim(),
        &mut nonce,
    )
    .unwrap();
    let mut fwids = std::collections::BTreeSet::new();
    for i in 0..4 {
        let report = decode_hex(&multi(i, "report.hex")).unwrap();
        let gpu = verify(&report, &multi(i, "chain.pem"), NOW).unwrap();
        assert_eq!(gpu.arch, GpuArch::Hopper);
        gpu.check_nonce(&nonce).unwrap();
        fwids.insert(gpu.fwid);
        let other = verify(&report, &multi((i + 1) % 4, "chain.pem"), NOW);
        assert!(
            other.is_err(),
            "GPU {i}'s report under GPU {}'s chain",
            (i + 1) % 4
        );
    }
    assert_eq!(fwids.len(), 1, "one firmware on the four GPUs");
}
