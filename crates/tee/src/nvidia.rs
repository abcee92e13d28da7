//! NVIDIA GPU attestation: Hopper and Blackwell GPUs in confidential
//! computing mode answer an SPDM 1.1 `GET_MEASUREMENTS` request with a
//! signed report of their firmware measurements.
//!
//! The evidence is the report (the 37-byte request followed by the response,
//! as the driver returns it) and the GPU's PEM certificate chain, leaf first.
//! [`verify`] checks, in this order, and refuses at the first failure:
//!
//! - the report parses exactly: request, measurement blocks in DMTF form,
//!   opaque data, a raw P-384 signature, nothing after it;
//! - every certificate in the chain is issued by the next (issuer name,
//!   ECDSA-with-SHA384 signature, CA constraint), is valid at the
//!   verification time, and the chain ends at NVIDIA's Device Identity CA,
//!   pinned here (a chain that is merely self-consistent proves nothing);
//! - the leaf's FWID extension equals the report's FWID;
//! - the signature over request ‖ response-without-signature verifies under
//!   the leaf's key.
//!
//! The caller then checks the nonce ([`VerifiedGpu::check_nonce`]) and the
//! measurements ([`GpuPolicy::check`]). Revocation (NVIDIA's OCSP service)
//! and reference measurements (NVIDIA's RIM service) are online services
//! this verifier does not reach: golden values come from the policy.

use std::collections::BTreeMap;
use std::fmt;

use p384::ecdsa::signature::Verifier;
use sha2::Digest;
use x509_cert::Certificate;

use crate::x509::{self, common_name};

/// NVIDIA's Device Identity CA, the root of every GPU's identity chain.
const DEVICE_ROOT_PEM: &[u8] = include_bytes!("../roots/nvidia-device-identity-ca.pem");

/// TCG DICE FWID extension: the firmware digest the leaf was issued for.
pub(crate) const OID_FWID: &str = "2.23.133.5.4.1";
const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";

pub(crate) const SPDM_VERSION: u8 = 0x11;
pub(crate) const GET_MEASUREMENTS: u8 = 0xE0;
pub(crate) const MEASUREMENTS: u8 = 0x60;
const REQUEST_LEN: usize = 37;
pub(crate) const SIGNATURE_LEN: usize = 96;
pub(crate) const FWID_LEN: usize = 48;

pub(crate) const OPAQUE_DRIVER_VERSION: u16 = 3;
pub(crate) const OPAQUE_VBIOS_VERSION: u16 = 6;
pub(crate) const OPAQUE_FWID: u16 = 20;

/// GPU evidence that failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    /// The report is not a well-formed SPDM request and response.
    #[error("GPU report: {0}")]
    Report(String),
    /// A certificate could not be read.
    #[error("GPU certificate chain: {0}")]
    Certificate(String),
    /// The chain does not lead to NVIDIA's root.
    #[error("GPU certificate chain: {0}")]
    Chain(String),
    /// A certificate is outside its validity window.
    #[error(
        "GPU certificate {subject} is not valid at {at}: valid from {not_before} to {not_after}"
    )]
    Expired {
        /// The certificate's common name.
        subject: String,
        /// The verification time, UNIX seconds.
        at: u64,
        /// Start of validity, UNIX seconds.
        not_before: u64,
        /// End of validity, UNIX seconds.
        not_after: u64,
    },
    /// The leaf was issued for other firmware than the report names.
    #[error("GPU FWID: the leaf certificate says {certificate}, the report says {report}")]
    Fwid {
        /// From the leaf's FWID extension, hex.
        certificate: String,
        /// From the report's opaque data, hex.
        report: String,
    },
    /// The report's signature does not verify under the leaf's key.
    #[error("GPU report signature does not verify under the leaf certificate {leaf}: {reason}")]
    Signature {
        /// The leaf's common name.
        leaf: String,
        /// The verifier's message.
        reason: String,
    },
    /// The report answers another request than the one expected.
    #[error("GPU report nonce is {found}, expected {expected}")]
    Nonce {
        /// The nonce the verifier derived, hex.
        expected: String,
        /// The nonce in the report's request, hex.
        found: String,
    },
    /// The GPU's firmware or driver is not what the policy allows.
    #[error("GPU policy: {0}")]
    Policy(String),
}

/// A GPU architecture with confidential computing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GpuArch {
    /// H100, H200, H20, GH200.
    Hopper,
    /// B100, B200, GB200 and their family.
    Blackwell,
}

impl GpuArch {
    /// `hopper` or `blackwell`.
    pub fn as_str(self) -> &'static str {
        match self {
            GpuArch::Hopper => "hopper",
            GpuArch::Blackwell => "blackwell",
        }
    }

    /// From the chip name NVIDIA puts in the chain's common names.
    fn from_chip(chip: &str) -> Option<Self> {
        if chip.starts_with("GH1") {
            Some(GpuArch::Hopper)
        } else if chip.starts_with("GB1") || chip.starts_with("GB2") {
            Some(GpuArch::Blackwell)
        } else {
            None
        }
    }
}

impl fmt::Display for GpuArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One measurement block of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    /// The block's index, from 1.
    pub index: u8,
    /// The DMTF measurement value (a SHA-384 digest on Hopper).
    pub value: Vec<u8>,
}

/// A GPU whose report and chain verified. Built only by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedGpu {
    /// The architecture.
    pub arch: GpuArch,
    /// The chip and its revision, from the leaf's name, e.g. `GH100 A01`.
    pub chip: String,
    /// The firmware id the leaf was issued for.
    pub fwid: [u8; FWID_LEN],
    /// The driver version the report names.
    pub driver_version: String,
    /// The VBIOS version, as NVIDIA prints it (e.g. `96.00.5e.00.01`).
    pub vbios_version: String,
    /// The nonce of the request the report answers.
    pub nonce: [u8; 32],
    /// The measurements, by index.
    pub measurements: Vec<Measurement>,
    /// The simulated GPU of development setups, which proves nothing.
    pub simulated: bool,
}

impl VerifiedGpu {
    /// Refuses a report that answers another request than `expected`.
    pub fn check_nonce(&self, expected: &[u8; 32]) -> Result<(), GpuError> {
        if &self.nonce != expected {
            return Err(GpuError::Nonce {
                expected: hex::encode(expected),
                found: hex::encode(self.nonce),
            });
        }
        Ok(())
    }

    /// A short name for people: `hopper GH100 A01` (`sim` first when
    /// simulated).
    pub fn describe(&self) -> String {
        let sim = if self.simulated { "sim " } else { "" };
        format!("{sim}{} {}", self.arch, self.chip)
    }
}

/// Reads a report as NVIDIA's tools print it: hex text, whitespace allowed.
pub fn decode_hex(text: &[u8]) -> Result<Vec<u8>, GpuError> {
    let digits: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    hex::decode(&digits).map_err(|e| GpuError::Report(format!("not hex text: {e}")))
}

/// Verifies a GPU report against its certificate chain at `at` (UNIX
/// seconds). See the module's documentation for what is checked.
pub fn verify(report: &[u8], chain_pem: &[u8], at: u64) -> Result<VerifiedGpu, GpuError> {
    verify_under(report, chain_pem, at, &device_root())
}

/// [`verify`] with another root than NVIDIA's: the sim GPU's, whose root a
/// sim TEE root endorses (see [`crate::gpu`]). Proves nothing about
/// hardware.
pub(crate) fn verify_under(
    report: &[u8],
    chain_pem: &[u8],
    at: u64,
    root: &Certificate,
) -> Result<VerifiedGpu, GpuError> {
    let parsed = SpdmReport::parse(report)?;
    let chain = x509::read_bundle(chain_pem).map_err(GpuError::Certificate)?;
    let leaf = check_chain(&chain, root, at)?;
    let cert_fwid = leaf_fwid(leaf)?;
    if cert_fwid != parsed.opaque.fwid {
        return Err(GpuError::Fwid {
            certificate: hex::encode(cert_fwid),
            report: hex::encode(&parsed.opaque.fwid),
        });
    }
    check_signature(leaf, &report[..parsed.signed_len], &parsed.signature)?;
    let leaf_name = common_name(leaf);
    let chip = chip_name(&leaf_name);
    let arch = GpuArch::from_chip(&chip).ok_or_else(|| {
        GpuError::Chain(format!(
            "leaf {leaf_name:?} names no Hopper or Blackwell chip"
        ))
    })?;
    let mut fwid = [0u8; FWID_LEN];
    fwid.copy_from_slice(&cert_fwid);
    Ok(VerifiedGpu {
        arch,
        chip,
        fwid,
        driver_version: parsed.opaque.driver_version,
        vbios_version: parsed.opaque.vbios_version,
        nonce: parsed.request_nonce,
        measurements: parsed.measurements,
        simulated: false,
    })
}

/// `GH100 A01 GSP FMC LF` → `GH100 A01`.
fn chip_name(leaf: &str) -> String {
    leaf.split(" GSP").next().unwrap_or(leaf).trim().to_owned()
}

fn device_root() -> Certificate {
    // The pinned root is part of this crate; its test proves it parses.
    x509::read_cert(DEVICE_ROOT_PEM).expect("the pinned NVIDIA root parses")
}

/// Checks the chain leaf first, and returns the leaf.
fn check_chain<'a>(
    chain: &'a [Certificate],
    root: &Certificate,
    at: u64,
) -> Result<&'a Certificate, GpuError> {
    let mut certs: Vec<&Certificate> = chain.iter().collect();
    if certs.last().is_some_and(|c| *c == root) {
        certs.pop();
    }
    if certs.is_empty() {
        return Err(GpuError::Chain(
            "no certificate below NVIDIA's root: the chain must start with the GPU's leaf".into(),
        ));
    }
    for (i, cert) in certs.iter().enumerate() {
        check_validity(cert, at)?;
        let issuer = certs.get(i + 1).copied().unwrap_or(root);
        check_issued(cert, issuer)?;
    }
    check_validity(root, at)?;
    Ok(certs[0])
}

fn check_validity(cert: &Certificate, at: u64) -> Result<(), GpuError> {
    let (not_before, not_after) = x509::validity(cert);
    if at < not_before || at > not_after {
        return Err(GpuError::Expired {
            subject: common_name(cert),
            at,
            not_before,
            not_after,
        });
    }
    Ok(())
}

/// `cert` names `issuer` as its issuer, `issuer` is a CA, and its key signed
/// `cert` with ECDSA P-384 and SHA-384.
fn check_issued(cert: &Certificate, issuer: &Certificate) -> Result<(), GpuError> {
    let (child, parent) = (common_name(cert), common_name(issuer));
    if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return Err(GpuError::Chain(format!(
            "{child:?} is issued by {}, not by the next certificate {parent:?}",
            cert.tbs_certificate.issuer
        )));
    }
    if !x509::is_ca(issuer) {
        return Err(GpuError::Chain(format!(
            "{parent:?} issued {child:?} but is not a CA"
        )));
    }
    if cert.signature_algorithm.oid.to_string() != OID_ECDSA_SHA384 {
        return Err(GpuError::Chain(format!(
            "{child:?} is signed with {}, expected ecdsa-with-SHA384",
            cert.signature_algorithm.oid
        )));
    }
    let key = issuer_key(issuer)?;
    let signature = cert
        .signature
        .as_bytes()
        .and_then(|der| p384::ecdsa::Signature::from_der(der).ok())
        .ok_or_else(|| GpuError::Chain(format!("{child:?} has a malformed signature")))?;
    let tbs = x509::tbs_der(cert).map_err(GpuError::Certificate)?;
    key.verify(&tbs, &signature).map_err(|_| {
        GpuError::Chain(format!(
            "{child:?}'s signature does not verify under {parent:?}'s key"
        ))
    })
}

fn issuer_key(cert: &Certificate) -> Result<p384::ecdsa::VerifyingKey, GpuError> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    spki.subject_public_key
        .as_bytes()
        .and_then(|sec1| p384::ecdsa::VerifyingKey::from_sec1_bytes(sec1).ok())
        .ok_or_else(|| GpuError::Chain(format!("{:?} has no P-384 public key", common_name(cert))))
}

/// The FWID is the last 48 bytes of the DICE FWID extension (a SEQUENCE of
/// the hash algorithm and the digest).
fn leaf_fwid(leaf: &Certificate) -> Result<Vec<u8>, GpuError> {
    let value = x509::extension(leaf, OID_FWID).ok_or_else(|| {
        GpuError::Chain(format!(
            "the leaf {:?} has no FWID extension: it is not a GPU attestation certificate",
            common_name(leaf)
        ))
    })?;
    value
        .len()
        .checked_sub(FWID_LEN)
        .map(|start| value[start..].to_vec())
        .ok_or_else(|| GpuError::Chain("the leaf's FWID extension is too short".into()))
}

fn check_signature(leaf: &Certificate, signed: &[u8], raw: &[u8; 96]) -> Result<(), GpuError> {
    let leaf_name = common_name(leaf);
    let key = issuer_key(leaf)?;
    let r = p384::FieldBytes::clone_from_slice(&raw[..48]);
    let s = p384::FieldBytes::clone_from_slice(&raw[48..]);
    let signature =
        p384::ecdsa::Signature::from_scalars(r, s).map_err(|e| GpuError::Signature {
            leaf: leaf_name.clone(),
            reason: e.to_string(),
        })?;
    key.verify(signed, &signature)
        .map_err(|e| GpuError::Signature {
            leaf: leaf_name,
            reason: e.to_string(),
        })
}

/// The fields of a report this verifier uses.
struct SpdmReport {
    request_nonce: [u8; 32],
    measurements: Vec<Measurement>,
    opaque: Opaque,
    /// Length of request ‖ response without the signature.
    signed_len: usize,
    signature: [u8; SIGNATURE_LEN],
}

struct Opaque {
    driver_version: String,
    vbios_version: String,
    fwid: Vec<u8>,
}

/// A cursor over the report that refuses to read past its end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], GpuError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| {
            GpuError::Report(format!(
                "{what} at byte {} needs {n} bytes, {} are left",
                self.at,
                self.bytes.len() - self.at
            ))
        })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, GpuError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, GpuError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u24(&mut self, what: &str) -> Result<usize, GpuError> {
        let b = self.take(3, what)?;
        Ok(usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16)
    }
}

fn expect(found: u8, wanted: u8, what: &str) -> Result<(), GpuError> {
    if found != wanted {
        return Err(GpuError::Report(format!(
            "{what} is {found:#04x}, expected {wanted:#04x}"
        )));
    }
    Ok(())
}

impl SpdmReport {
    fn parse(bytes: &[u8]) -> Result<Self, GpuError> {
        let mut r = Reader { bytes, at: 0 };
        let request_nonce = parse_request(&mut r)?;
        expect(
            r.u8("response version")?,
            SPDM_VERSION,
            "response SPDM version",
        )?;
        expect(r.u8("response code")?, MEASUREMENTS, "response code")?;
        let _param1 = r.u8("response param1")?;
        let _slot = r.u8("response param2")?;
        let blocks = r.u8("number of blocks")?;
        let record_len = r.u24("measurement record length")?;
        let record = r.take(record_len, "measurement record")?;
        let measurements = parse_record(record, blocks)?;
        let _responder_nonce = r.take(32, "responder nonce")?;
        let opaque_len = usize::from(r.u16("opaque data length")?);
        let opaque = parse_opaque(r.take(opaque_len, "opaque data")?)?;
        let signed_len = r.at;
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(r.take(SIGNATURE_LEN, "signature")?);
        // Drivers hand the report over in a larger buffer: zero padding may
        // follow the signature, nothing else may (it would not be signed).
        if bytes[r.at..].iter().any(|&b| b != 0) {
            return Err(GpuError::Report(format!(
                "{} bytes that are not zero padding follow the signature",
                bytes.len() - r.at
            )));
        }
        Ok(SpdmReport {
            request_nonce,
            measurements,
            opaque,
            signed_len,
            signature,
        })
    }
}

/// The request: version, GET_MEASUREMENTS with a signature asked for all
/// measurements, the nonce, the slot.
fn parse_request(r: &mut Reader<'_>) -> Result<[u8; 32], GpuError> {
    let start = r.at;
    expect(
        r.u8("request version")?,
        SPDM_VERSION,
        "request SPDM version",
    )?;
    expect(r.u8("request code")?, GET_MEASUREMENTS, "request code")?;
    if r.u8("request param1")? & 1 == 0 {
        return Err(GpuError::Report(
            "the request did not ask for a signature".into(),
        ));
    }
    expect(
        r.u8("request param2")?,
        0xFF,
        "request param2 (all measurements)",
    )?;
    let mut nonce = [0u8; 32];
    nonce.copy_from_slice(r.take(32, "request nonce")?);
    let _slot = r.u8("request slot")?;
    debug_assert_eq!(r.at - start, REQUEST_LEN);
    Ok(nonce)
}

fn parse_record(record: &[u8], blocks: u8) -> Result<Vec<Measurement>, GpuError> {
    let mut r = Reader {
        bytes: record,
        at: 0,
    };
    let mut out: Vec<Measurement> = Vec::with_capacity(usize::from(blocks));
    for _ in 0..blocks {
        let index = r.u8("measurement index")?;
        expect(
            r.u8("measurement specification")?,
            1,
            "measurement specification (DMTF)",
        )?;
        let size = usize::from(r.u16("measurement size")?);
        let mut m = Reader {
            bytes: r.take(size, "measurement")?,
            at: 0,
        };
        let _kind = m.u8("DMTF value type")?;
        let len = usize::from(m.u16("DMTF value size")?);
        let value = m.take(len, "DMTF value")?.to_vec();
        if m.at != size {
            return Err(GpuError::Report(format!(
                "measurement {index} has {} bytes after its value",
                size - m.at
            )));
        }
        if out.last().is_some_and(|prev| prev.index >= index) {
            return Err(GpuError::Report(format!(
                "measurement index {index} is out of order"
            )));
        }
        out.push(Measurement { index, value });
    }
    if r.at != record.len() {
        return Err(GpuError::Report(format!(
            "{} bytes follow the {blocks} measurement blocks",
            record.len() - r.at
        )));
    }
    Ok(out)
}

fn parse_opaque(bytes: &[u8]) -> Result<Opaque, GpuError> {
    let mut r = Reader { bytes, at: 0 };
    let mut fields: BTreeMap<u16, &[u8]> = BTreeMap::new();
    while r.at < bytes.len() {
        let kind = r.u16("opaque field type")?;
        let len = usize::from(r.u16("opaque field size")?);
        let value = r.take(len, "opaque field")?;
        if fields.insert(kind, value).is_some() {
            return Err(GpuError::Report(format!(
                "opaque field {kind} appears twice"
            )));
        }
    }
    let field = |kind: u16, name: &str| {
        fields
            .get(&kind)
            .copied()
            .ok_or_else(|| GpuError::Report(format!("opaque data has no {name}")))
    };
    let fwid = field(OPAQUE_FWID, "FWID")?;
    if fwid.len() != FWID_LEN {
        return Err(GpuError::Report(format!(
            "FWID is {} bytes, expected {FWID_LEN}",
            fwid.len()
        )));
    }
    let driver = field(OPAQUE_DRIVER_VERSION, "driver version")?;
    Ok(Opaque {
        driver_version: String::from_utf8_lossy(driver)
            .trim_end_matches('\0')
            .to_owned(),
        vbios_version: vbios_version(field(OPAQUE_VBIOS_VERSION, "VBIOS version")?)?,
        fwid: fwid.to_vec(),
    })
}

/// NVIDIA prints the VBIOS version as the first half's bytes reversed, then
/// the first byte of the second half: `00 9f 00 96 01 00 00 00` →
/// `96.00.9f.00.01`.
fn vbios_version(bytes: &[u8]) -> Result<String, GpuError> {
    let half = bytes.len() / 2;
    let last = bytes
        .get(half)
        .ok_or_else(|| GpuError::Report("VBIOS version is empty".into()))?;
    let mut parts: Vec<String> = bytes[..half]
        .iter()
        .rev()
        .map(|b| format!("{b:02x}"))
        .collect();
    parts.push(format!("{last:02x}"));
    Ok(parts.join("."))
}

/// What a node accepts of a GPU beyond a verified chain and signature.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GpuPolicy {
    /// Golden measurements by index: each listed index must equal one of its
    /// values. Empty means unpinned, which the policy must say explicitly.
    pub measurements: BTreeMap<u8, Vec<Vec<u8>>>,
    /// Accepted driver versions; empty accepts any.
    pub drivers: Vec<String>,
    /// Accepted VBIOS versions; empty accepts any.
    pub vbios: Vec<String>,
}

impl GpuPolicy {
    /// Refuses a GPU whose driver, VBIOS or measurements the policy does not
    /// allow, naming the first that fails.
    pub fn check(&self, gpu: &VerifiedGpu) -> Result<(), GpuError> {
        if !self.drivers.is_empty() && !self.drivers.contains(&gpu.driver_version) {
            return Err(GpuError::Policy(format!(
                "driver {} is not one of {:?}",
                gpu.driver_version, self.drivers
            )));
        }
        if !self.vbios.is_empty() && !self.vbios.contains(&gpu.vbios_version) {
            return Err(GpuError::Policy(format!(
                "VBIOS {} is not one of {:?}",
                gpu.vbios_version, self.vbios
            )));
        }
        for (index, golden) in &self.measurements {
            let found = gpu.measurements.iter().find(|m| m.index == *index);
            match found {
                Some(m) if golden.contains(&m.value) => {}
                Some(m) => {
                    return Err(GpuError::Policy(format!(
                        "measurement {index} is {}, not a golden value",
                        hex::encode(&m.value)
                    )))
                }
                None => {
                    return Err(GpuError::Policy(format!(
                        "measurement {index} is missing from the report"
                    )))
                }
            }
        }
        Ok(())
    }
}

/// The nonce a GPU report bound to RA-TLS claims must answer: SHA-256 over
/// a domain and the claims' canonical encoding, so a report made for one
/// certificate cannot be moved to another.
pub fn claims_nonce(claims_encoding: &[u8]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    h.update(b"cocoon/gpu-nonce/v1\0");
    h.update(claims_encoding);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_root_parses_and_is_self_signed() {
        let root = device_root();
        check_issued(&root, &root).unwrap();
        assert_eq!(common_name(&root), "NVIDIA Device Identity CA");
    }

    #[test]
    fn vbios_versions_print_as_nvidia_prints_them() {
        let v = vbios_version(&[0x00, 0x9f, 0x00, 0x96, 0x01, 0, 0, 0]).unwrap();
        assert_eq!(v, "96.00.9f.00.01");
        assert!(vbios_version(&[]).is_err());
    }
}
