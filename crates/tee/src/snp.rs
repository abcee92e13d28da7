//! AMD SEV-SNP: attestation report verification.
//!
//! The `sev` crate checks the RSA-PSS certificate chain (ARK self-signed,
//! ARK→ASK/ASVK, ASK/ASVK→VCEK/VLEK). Everything else a report needs is
//! checked here, because that crate does not:
//!
//! - the ARK is one of AMD's published roots (a chain that is merely
//!   self-consistent proves nothing);
//! - every certificate is within its validity window at the verification time;
//! - the report's signing key kind (VCEK or VLEK) matches the certificate;
//! - a VCEK's hardware id equals the report's CHIP_ID and its TCB extensions
//!   equal the REPORTED_TCB;
//! - the guest policy forbids debugging;
//! - the ECDSA P-384 signature covers the report's raw bytes `0x000..0x2A0`
//!   (not a re-serialisation of the parsed report, which would let a change
//!   to a reserved byte go unnoticed).

use der::Decode;
use p384::ecdsa::signature::DigestVerifier;
use sev::certs::snp::{Certificate as SevCertificate, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;
use sha2::Digest;
use x509_cert::der;
use x509_cert::Certificate;

use crate::x509::{self, common_name, extension};
use crate::ImageHash;

/// Size of an attestation report as the firmware returns it.
pub const REPORT_LEN: usize = 0x4A0;
/// End of the signed part of a report.
const SIGNED_LEN: usize = 0x2A0;

const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";

/// Which AMD key signed a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndorsementKey {
    /// Versioned Chip Endorsement Key: unique to one chip, chain ARK→ASK→VCEK.
    Vcek,
    /// Versioned Loaded Endorsement Key: loaded by a cloud provider, chain
    /// ARK→ASVK→VLEK.
    Vlek,
}

impl EndorsementKey {
    /// `VCEK` or `VLEK`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndorsementKey::Vcek => "VCEK",
            EndorsementKey::Vlek => "VLEK",
        }
    }
}

/// The platform's security versions, as reported and as certified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnpTcb {
    /// SVN of the PSP bootloader.
    pub bootloader: u8,
    /// SVN of the PSP operating system.
    pub tee: u8,
    /// SVN of the SNP firmware.
    pub snp: u8,
    /// Lowest microcode patch level of all cores.
    pub microcode: u8,
    /// SVN of the FMC firmware (Turin and later).
    pub fmc: Option<u8>,
}

impl std::fmt::Display for SnpTcb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bootloader={} tee={} snp={} microcode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )?;
        if let Some(fmc) = self.fmc {
            write!(f, " fmc={fmc}")?;
        }
        Ok(())
    }
}

/// What a verified SNP report proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpEvidence {
    /// Report format version.
    pub version: u32,
    /// Processor generation named by the ARK (`Milan`, `Genoa`, `Turin`).
    pub product: &'static str,
    /// The key that signed the report.
    pub signer: EndorsementKey,
    /// Virtual machine privilege level the report was requested at.
    pub vmpl: u32,
    /// Guest policy bits.
    pub policy: u64,
    /// The TCB the report claims, equal to the VCEK's where the key is a VCEK.
    pub reported_tcb: SnpTcb,
    /// Launch measurement of the guest.
    pub measurement: [u8; 48],
    /// Data the host supplied at launch.
    pub host_data: [u8; 32],
    /// The 64 bytes the guest bound into the report.
    pub report_data: [u8; 64],
    /// The chip's unique id (zero when masked).
    pub chip_id: [u8; 64],
    /// SHA-256 over MEASUREMENT and HOST_DATA.
    pub image_hash: ImageHash,
}

/// Why an SNP report was not accepted. Each variant names the failed check.
#[derive(Debug, thiserror::Error)]
pub enum SnpError {
    /// The report is not a firmware attestation report.
    #[error("report: {0}")]
    Report(String),
    /// A certificate could not be read.
    #[error("certificate {what}: {reason}")]
    Certificate {
        /// Which certificate.
        what: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// The chain has no AMD root, or no intermediate that issued the key.
    #[error("certificate chain: {0}")]
    Chain(String),
    /// A signature in the chain does not verify.
    #[error("certificate chain signature: {0}")]
    ChainSignature(String),
    /// A certificate is outside its validity window.
    #[error("certificate {subject} is not valid at {at}: valid from {not_before} to {not_after}")]
    Expired {
        /// The certificate's subject common name.
        subject: String,
        /// The verification time, UNIX seconds.
        at: u64,
        /// Start of validity, UNIX seconds.
        not_before: u64,
        /// End of validity, UNIX seconds.
        not_after: u64,
    },
    /// The report says it was signed by one key kind, the certificate is the other.
    #[error("report says it is signed by the {reported}, but the certificate is a {certificate}")]
    SignerKind {
        /// What the report's KEY_INFO says.
        reported: String,
        /// What the certificate is.
        certificate: &'static str,
    },
    /// The VCEK was issued to another chip.
    #[error("VCEK hardware id {vcek} does not match the report's chip id {report}")]
    ChipId {
        /// The VCEK's hwID extension, hex.
        vcek: String,
        /// The report's CHIP_ID, hex.
        report: String,
    },
    /// The VCEK certifies another TCB than the report claims.
    #[error("VCEK certifies TCB {vcek}, the report claims {report}")]
    Tcb {
        /// From the VCEK's extensions.
        vcek: SnpTcb,
        /// The report's REPORTED_TCB.
        report: SnpTcb,
    },
    /// The guest may be debugged, so its memory is not confidential.
    #[error("guest policy {policy:#x} allows debugging")]
    DebugAllowed {
        /// The policy bits.
        policy: u64,
    },
    /// The report's signature does not verify under the endorsement key.
    #[error("report signature does not verify under the {key}: {reason}")]
    Signature {
        /// VCEK or VLEK.
        key: &'static str,
        /// The verifier's message.
        reason: String,
    },
}

/// AMD's root keys, pinned: a chain must end at one of these.
fn amd_roots() -> [(&'static str, &'static [u8]); 3] {
    use sev::certs::snp::builtin;
    [
        ("Milan", builtin::milan::ARK),
        ("Genoa", builtin::genoa::ARK),
        ("Turin", builtin::turin::ARK),
    ]
}

/// Reads one certificate, DER or PEM.
fn read_cert(what: &'static str, bytes: &[u8]) -> Result<Certificate, SnpError> {
    x509::read_cert(bytes).map_err(|reason| SnpError::Certificate { what, reason })
}

/// Reads every certificate of a PEM bundle (or one DER certificate).
fn read_bundle(bytes: &[u8]) -> Result<Vec<Certificate>, SnpError> {
    x509::read_bundle(bytes).map_err(|reason| SnpError::Certificate {
        what: "chain",
        reason,
    })
}

fn to_sev(cert: &Certificate) -> SevCertificate {
    SevCertificate::from(cert.clone())
}

fn check_validity(cert: &Certificate, at: u64) -> Result<(), SnpError> {
    let (not_before, not_after) = x509::validity(cert);
    if at < not_before || at > not_after {
        return Err(SnpError::Expired {
            subject: common_name(cert),
            at,
            not_before,
            not_after,
        });
    }
    Ok(())
}

fn extension_u8(cert: &Certificate, oid: &str) -> Result<Option<u8>, SnpError> {
    let Some(value) = extension(cert, oid) else {
        return Ok(None);
    };
    let n = u32::from_der(value).map_err(|e| SnpError::Certificate {
        what: "VCEK",
        reason: format!("extension {oid} is not an INTEGER: {e}"),
    })?;
    u8::try_from(n)
        .map(Some)
        .map_err(|_| SnpError::Certificate {
            what: "VCEK",
            reason: format!("extension {oid} is {n}, more than a security version can be"),
        })
}

fn vcek_tcb(cert: &Certificate) -> Result<SnpTcb, SnpError> {
    let need = |oid: &str| -> Result<u8, SnpError> {
        extension_u8(cert, oid)?.ok_or_else(|| SnpError::Certificate {
            what: "VCEK",
            reason: format!("missing TCB extension {oid}"),
        })
    };
    Ok(SnpTcb {
        bootloader: need(OID_BL_SPL)?,
        tee: need(OID_TEE_SPL)?,
        snp: need(OID_SNP_SPL)?,
        microcode: need(OID_UCODE_SPL)?,
        fmc: extension_u8(cert, OID_FMC_SPL)?,
    })
}

fn vcek_hwid(cert: &Certificate) -> Result<Vec<u8>, SnpError> {
    let raw = extension(cert, OID_HWID).ok_or(SnpError::Certificate {
        what: "VCEK",
        reason: format!("missing hardware id extension {OID_HWID}"),
    })?;
    // AMD writes the id as the raw extension value; accept a DER OCTET STRING too.
    if raw.len() == 64 || raw.len() == 8 {
        return Ok(raw.to_vec());
    }
    der::asn1::OctetString::from_der(raw)
        .map(|o| o.as_bytes().to_vec())
        .map_err(|e| SnpError::Certificate {
            what: "VCEK",
            reason: format!(
                "hardware id extension is {} bytes and not DER: {e}",
                raw.len()
            ),
        })
}

/// Verifies an SNP attestation report (raw, 1184 bytes) signed by `vek`
/// (the VCEK or VLEK, DER or PEM) whose issuer and AMD root are in `chain`
/// (PEM bundle: ASK or ASVK, and ARK, in any order; extra certificates are
/// ignored), every certificate valid at `at` (UNIX seconds).
pub fn verify(report: &[u8], vek: &[u8], chain: &[u8], at: u64) -> Result<SnpEvidence, SnpError> {
    if report.len() != REPORT_LEN {
        return Err(SnpError::Report(format!(
            "{} bytes, an attestation report is {REPORT_LEN}",
            report.len()
        )));
    }
    let parsed =
        AttestationReport::from_bytes(report).map_err(|e| SnpError::Report(e.to_string()))?;

    // The chain: pinned ARK → intermediate that issued the key → key.
    let vek = read_cert("VEK", vek)?;
    let bundle = read_bundle(chain)?;
    let roots = amd_roots();
    let mut ark = None;
    for cert in &bundle {
        for (product, pem) in roots {
            let root = read_cert("built-in ARK", pem)?;
            if *cert == root {
                ark = Some((product, root));
            }
        }
    }
    let Some((product, ark)) = ark else {
        let found: Vec<String> = bundle.iter().map(common_name).collect();
        return Err(SnpError::Chain(format!(
            "no AMD root key (ARK-Milan, ARK-Genoa or ARK-Turin) among [{}]",
            found.join(", ")
        )));
    };
    let issuer = &vek.tbs_certificate.issuer;
    let intermediate = bundle
        .iter()
        .find(|c| &c.tbs_certificate.subject == issuer && **c != ark)
        .ok_or_else(|| {
            SnpError::Chain(format!(
                "no certificate in the chain issued the {} (issuer {issuer})",
                common_name(&vek)
            ))
        })?;
    let signer = match common_name(intermediate) {
        n if n.starts_with("SEV-VLEK-") => EndorsementKey::Vlek,
        n if n.starts_with("SEV-") => EndorsementKey::Vcek,
        n => {
            return Err(SnpError::Chain(format!(
                "intermediate {n} is neither an ASK (SEV-…) nor an ASVK (SEV-VLEK-…)"
            )))
        }
    };
    let (ark_s, mid_s, vek_s) = (to_sev(&ark), to_sev(intermediate), to_sev(&vek));
    (&ark_s, &ark_s)
        .verify()
        .map_err(|e| SnpError::ChainSignature(format!("ARK is not self-signed: {e}")))?;
    (&ark_s, &mid_s).verify().map_err(|e| {
        SnpError::ChainSignature(format!(
            "ARK did not sign {}: {e}",
            common_name(intermediate)
        ))
    })?;
    (&mid_s, &vek_s).verify().map_err(|e| {
        SnpError::ChainSignature(format!(
            "{} did not sign {}: {e}",
            common_name(intermediate),
            common_name(&vek)
        ))
    })?;
    for cert in [&ark, intermediate, &vek] {
        check_validity(cert, at)?;
    }

    // The report against its certificate.
    let reported_signer = match parsed.key_info.signing_key() {
        0 => EndorsementKey::Vcek,
        1 => EndorsementKey::Vlek,
        other => {
            return Err(SnpError::SignerKind {
                reported: format!("key {other} (none)"),
                certificate: signer.as_str(),
            })
        }
    };
    if reported_signer != signer {
        return Err(SnpError::SignerKind {
            reported: reported_signer.as_str().to_owned(),
            certificate: signer.as_str(),
        });
    }
    let t = parsed.reported_tcb;
    let reported_tcb = SnpTcb {
        bootloader: t.bootloader,
        tee: t.tee,
        snp: t.snp,
        microcode: t.microcode,
        fmc: t.fmc,
    };
    if signer == EndorsementKey::Vcek {
        let hwid = vcek_hwid(&vek)?;
        let chip = &parsed.chip_id[..hwid.len().min(64)];
        if hwid.as_slice() != chip {
            return Err(SnpError::ChipId {
                vcek: hex::encode(&hwid),
                report: hex::encode(parsed.chip_id),
            });
        }
        let certified = vcek_tcb(&vek)?;
        let comparable = SnpTcb {
            fmc: certified.fmc.and(reported_tcb.fmc),
            ..certified
        };
        if comparable != reported_tcb {
            return Err(SnpError::Tcb {
                vcek: certified,
                report: reported_tcb,
            });
        }
    }
    let policy = u64::from_le_bytes(report[0x08..0x10].try_into().unwrap_or_default());
    if parsed.policy.debug_allowed() {
        return Err(SnpError::DebugAllowed { policy });
    }

    // The signature over the raw signed bytes.
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(to_sev(&vek).public_key_sec1()).map_err(
        |e| SnpError::Signature {
            key: signer.as_str(),
            reason: format!("the certificate's key is not a P-384 point: {e}"),
        },
    )?;
    let sig = raw_signature(&report[SIGNED_LEN..]).map_err(|e| SnpError::Signature {
        key: signer.as_str(),
        reason: e.to_string(),
    })?;
    key.verify_digest(sha2::Sha384::new_with_prefix(&report[..SIGNED_LEN]), &sig)
        .map_err(|e| SnpError::Signature {
            key: signer.as_str(),
            reason: e.to_string(),
        })?;

    Ok(SnpEvidence {
        version: parsed.version,
        product,
        signer,
        vmpl: parsed.vmpl,
        policy,
        reported_tcb,
        measurement: parsed.measurement,
        host_data: parsed.host_data,
        report_data: parsed.report_data,
        chip_id: parsed.chip_id,
        image_hash: ImageHash::over(&[&parsed.measurement, &parsed.host_data]),
    })
}

/// The report's signature: R and S, each 72 bytes little-endian, of which
/// a P-384 scalar uses 48; the rest must be zero.
/// Why a report's signature area holds no P-384 signature.
#[derive(Debug, thiserror::Error)]
enum RawSignatureError {
    #[error("signature area is {0} bytes, expected 144")]
    Short(usize),
    #[error("a signature component is wider than 384 bits")]
    Wide,
    #[error("not a valid signature: {0}")]
    Invalid(p384::ecdsa::Error),
}

fn raw_signature(sig: &[u8]) -> Result<p384::ecdsa::Signature, RawSignatureError> {
    if sig.len() < 144 {
        return Err(RawSignatureError::Short(sig.len()));
    }
    let scalar = |le: &[u8]| -> Result<[u8; 48], RawSignatureError> {
        if le[48..72].iter().any(|&b| b != 0) {
            return Err(RawSignatureError::Wide);
        }
        let mut be = [0u8; 48];
        for (i, b) in le[..48].iter().enumerate() {
            be[47 - i] = *b;
        }
        Ok(be)
    };
    let (r, s) = (scalar(&sig[..72])?, scalar(&sig[72..144])?);
    p384::ecdsa::Signature::from_scalars(r, s).map_err(RawSignatureError::Invalid)
}
