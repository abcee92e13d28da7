//! The simulated GPU, for development and tests on machines without one:
//! SPDM measurement reports in NVIDIA's exact format, signed with ECDSA
//! P-384 by a leaf certificate under a sim GPU root certificate, whose DER
//! the sim TEE root endorses. Every key derives from the sim root, so a node
//! presents the same GPU on every start.
//!
//! It exercises the real verifier (parser, chain, FWID, signature, nonce,
//! golden values) but proves nothing about hardware; only a policy that
//! accepts the sim TEE and trusts the endorsing root accepts it.

use p384::ecdsa::signature::Signer;
use p384::ecdsa::{Signature, SigningKey};

use crate::attester::{AttestError, GpuAttester};
use crate::cert::{seq, time, tlv};
use crate::gpu::{GpuEvidence, SIM_ENDORSEMENT_DOMAIN};
use crate::nvidia::{
    FWID_LEN, GET_MEASUREMENTS, MEASUREMENTS, OPAQUE_DRIVER_VERSION, OPAQUE_FWID,
    OPAQUE_VBIOS_VERSION, SPDM_VERSION,
};
use crate::sim::SimRoot;

const ECDSA_SHA384: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
];
const EC_P384_SPKI_ALG: &[u8] = &[
    0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04,
    0x00, 0x22,
];
/// 2.23.133.5.4.1, TCG DICE FWID.
const FWID_OID: &[u8] = &[0x67, 0x81, 0x05, 0x05, 0x04, 0x01];
/// 2.16.840.1.101.3.4.2.2, SHA-384.
const SHA384_OID: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
/// 2.5.29.19, basic constraints.
const BASIC_CONSTRAINTS_OID: &[u8] = &[0x55, 0x1d, 0x13];
/// Validity end: 9999-12-31T23:59:59Z, as NVIDIA's chains have it.
const NOT_AFTER: u64 = 253_402_300_799;

/// How many measurement blocks the sim GPU reports.
const BLOCKS: u8 = 8;

/// A simulated GPU.
pub struct SimGpu {
    leaf_key: SigningKey,
    chain_pem: Vec<u8>,
    sim_root: [u8; 32],
    endorsement: [u8; 64],
    fwid: [u8; FWID_LEN],
    measurements: Vec<[u8; 48]>,
    seed: [u8; 48],
}

impl std::fmt::Debug for SimGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimGpu")
            .field("sim_root", &hex::encode(self.sim_root))
            .finish_non_exhaustive()
    }
}

fn signing_key(root: &SimRoot, label: &str) -> SigningKey {
    // A derived secret is a valid P-384 scalar but for a chance of 2^-190;
    // derive again under a counter if not.
    (0u32..)
        .find_map(|i| {
            let secret = root.derive(&format!("{label}/{i}"));
            SigningKey::from_bytes(&secret.into()).ok()
        })
        .expect("some derived secret is a valid P-384 scalar")
}

impl SimGpu {
    /// The sim GPU of the node whose sim TEE root is `root`.
    pub fn new(root: &SimRoot) -> Self {
        let root_key = signing_key(root, "cocoon/sim-gpu/root-key");
        let leaf_key = signing_key(root, "cocoon/sim-gpu/leaf-key");
        let fwid = root.derive("cocoon/sim-gpu/fwid");
        let root_name = name("Cocoon simulated GPU root");
        let root_cert = certificate(&root_key, &root_key, &root_name, &root_name, &[ca()]);
        let leaf_name = name("GH100 A01 GSP FMC LF");
        let leaf_cert = certificate(
            &root_key,
            &leaf_key,
            &root_name,
            &leaf_name,
            &[fwid_ext(&fwid)],
        );
        let endorsement = root.sign(&[SIM_ENDORSEMENT_DOMAIN, &root_cert].concat());
        let chain_pem = [pem(&leaf_cert), pem(&root_cert)].concat().into_bytes();
        let measurements = (1..=BLOCKS)
            .map(|i| root.derive(&format!("cocoon/sim-gpu/measurement/{i}")))
            .collect();
        SimGpu {
            leaf_key,
            chain_pem,
            sim_root: root.public_key(),
            endorsement,
            fwid,
            measurements,
            seed: root.derive("cocoon/sim-gpu/responder-nonce"),
        }
    }

    /// A signed report answering `nonce`.
    pub fn report(&self, nonce: &[u8; 32]) -> Vec<u8> {
        let mut out = vec![SPDM_VERSION, GET_MEASUREMENTS, 0x01, 0xFF];
        out.extend_from_slice(nonce);
        out.push(0);
        let mut record = Vec::new();
        for (i, m) in (1u8..).zip(&self.measurements) {
            record.extend_from_slice(&[i, 0x01]);
            record.extend_from_slice(&51u16.to_le_bytes());
            record.push(0x01);
            record.extend_from_slice(&48u16.to_le_bytes());
            record.extend_from_slice(m);
        }
        out.extend_from_slice(&[SPDM_VERSION, MEASUREMENTS, 0, 0, BLOCKS]);
        out.extend_from_slice(&(record.len() as u32).to_le_bytes()[..3]);
        out.extend_from_slice(&record);
        out.extend_from_slice(&self.seed[..32]);
        let mut opaque = Vec::new();
        for (kind, value) in [
            (OPAQUE_DRIVER_VERSION, &b"sim\0"[..]),
            (OPAQUE_VBIOS_VERSION, &[0, 0, 0, 0x96, 1, 0, 0, 0][..]),
            (OPAQUE_FWID, &self.fwid[..]),
        ] {
            opaque.extend_from_slice(&kind.to_le_bytes());
            opaque.extend_from_slice(&(value.len() as u16).to_le_bytes());
            opaque.extend_from_slice(value);
        }
        out.extend_from_slice(&(opaque.len() as u16).to_le_bytes());
        out.extend_from_slice(&opaque);
        let signature: Signature = self.leaf_key.sign(&out);
        out.extend_from_slice(&signature.to_bytes());
        out
    }

    /// The evidence for `nonce`.
    pub fn evidence(&self, nonce: &[u8; 32]) -> GpuEvidence {
        GpuEvidence::Sim {
            report: self.report(nonce),
            chain: self.chain_pem.clone(),
            sim_root: self.sim_root,
            endorsement: self.endorsement,
        }
    }
}

impl GpuAttester for SimGpu {
    fn attest(&self, nonce: &[u8; 32]) -> Result<Vec<GpuEvidence>, AttestError> {
        Ok(vec![self.evidence(nonce)])
    }
}

fn name(cn: &str) -> Vec<u8> {
    seq(&[&tlv(
        0x31,
        &seq(&[&tlv(0x06, &[0x55, 0x04, 0x03]), &tlv(0x0c, cn.as_bytes())]),
    )])
}

fn ca() -> Vec<u8> {
    seq(&[
        &tlv(0x06, BASIC_CONSTRAINTS_OID),
        &[0x01, 0x01, 0xff],
        &tlv(0x04, &[0x30, 0x03, 0x01, 0x01, 0xff]),
    ])
}

fn fwid_ext(fwid: &[u8; FWID_LEN]) -> Vec<u8> {
    let value = seq(&[&seq(&[&tlv(0x06, SHA384_OID), &tlv(0x04, fwid)])]);
    seq(&[&tlv(0x06, FWID_OID), &tlv(0x04, &value)])
}

/// A certificate for `subject_key` under `subject`, signed by `issuer_key`.
fn certificate(
    issuer_key: &SigningKey,
    subject_key: &SigningKey,
    issuer: &[u8],
    subject: &[u8],
    extensions: &[Vec<u8>],
) -> Vec<u8> {
    let point = subject_key.verifying_key().to_encoded_point(false);
    let spki = seq(&[
        EC_P384_SPKI_ALG,
        &tlv(0x03, &[&[0u8][..], point.as_bytes()].concat()),
    ]);
    let exts: Vec<&[u8]> = extensions.iter().map(Vec::as_slice).collect();
    let tbs = seq(&[
        &[0xa0, 0x03, 0x02, 0x01, 0x02],
        &tlv(0x02, &[0x01]),
        ECDSA_SHA384,
        issuer,
        &seq(&[&time(0), &time(NOT_AFTER)]),
        subject,
        &spki,
        &tlv(0xa3, &seq(&exts)),
    ]);
    let signature: Signature = issuer_key.sign(&tbs);
    let der = signature.to_der();
    seq(&[
        &tbs,
        ECDSA_SHA384,
        &tlv(0x03, &[&[0u8][..], der.as_bytes()].concat()),
    ])
}

fn pem(der: &[u8]) -> String {
    use x509_cert::der::{Decode, EncodePem};
    x509_cert::Certificate::from_der(der)
        .and_then(|c| c.to_pem(x509_cert::der::pem::LineEnding::LF))
        .expect("a certificate written here reads back")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvidia;

    #[test]
    fn the_sim_gpu_verifies_under_its_own_root_only() {
        let dir = std::env::temp_dir().join(format!("cocoon-sim-gpu-{}", std::process::id()));
        let root = SimRoot::load_or_create(&dir).unwrap();
        let gpu = SimGpu::new(&root);
        let report = gpu.report(&[5; 32]);
        // NVIDIA's root did not issue it.
        let err = nvidia::verify(&report, &gpu.chain_pem, 1_800_000_000).unwrap_err();
        assert!(matches!(err, nvidia::GpuError::Chain(_)), "{err}");
        let certs = crate::x509::read_bundle(&gpu.chain_pem).unwrap();
        let v = nvidia::verify_under(&report, &gpu.chain_pem, 1_800_000_000, &certs[1]).unwrap();
        assert_eq!(v.nonce, [5; 32]);
        assert_eq!(v.measurements.len(), usize::from(BLOCKS));
        assert_eq!(v.chip, "GH100 A01");
        // The same root gives the same GPU.
        assert_eq!(SimGpu::new(&root).chain_pem, gpu.chain_pem);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
