//! RA-TLS certificates: self-signed Ed25519 certificates whose critical
//! extensions carry the holder's [`Claims`] and TEE [`Evidence`] over them.
//!
//! Extension OIDs are minted under the UUID arc 2.25.<uuid> (ITU-T X.667),
//! so they can collide with no one's: `<arc>.1` holds the claims, `<arc>.2`
//! the evidence. Because the arc is a 128-bit number, which common X.509
//! builders cannot express, the certificate is written here directly in DER.

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use crate::attester::{AttestError, Attester};
use crate::claims::{Claims, ClaimsDecodeError};
use crate::evidence::{Evidence, EvidenceDecodeError};
use crate::gpu::GpuEvidence;

/// The UUID under 2.25 that Cocoon's certificate extensions live under
/// (88bfca43-4f6e-478d-ab55-354e8e4a8f86).
pub const OID_ARC_UUID: u128 = 0x88bfca43_4f6e_478d_ab55_354e8e4a8f86;

/// The claims extension's OID, dotted.
pub fn claims_oid() -> String {
    format!("2.25.{OID_ARC_UUID}.1")
}

/// The evidence extension's OID, dotted.
pub fn evidence_oid() -> String {
    format!("2.25.{OID_ARC_UUID}.2")
}

/// The GPU evidence extension's OID, dotted.
pub fn gpu_evidence_oid() -> String {
    format!("2.25.{OID_ARC_UUID}.3")
}

/// DER content bytes of `2.25.<uuid>.<last>`.
fn oid_content(last: u8) -> Vec<u8> {
    let mut out = vec![2 * 40 + 25];
    let mut groups = Vec::new();
    let mut n = OID_ARC_UUID;
    loop {
        groups.push((n & 0x7f) as u8);
        n >>= 7;
        if n == 0 {
            break;
        }
    }
    for (i, g) in groups.iter().rev().enumerate() {
        out.push(if i + 1 < groups.len() { g | 0x80 } else { *g });
    }
    out.push(last);
    out
}

const ED25519_ALG: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
const ED25519_OID: &[u8] = &[0x2b, 0x65, 0x70];

pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

pub(crate) fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// UTCTime before 2050, GeneralizedTime from then on (RFC 5280 4.1.2.5).
pub(crate) fn time(unix: u64) -> Vec<u8> {
    let (y, m, d, secs) = cocoon_core::utc_date(unix);
    let hms = format!("{:02}{:02}{:02}Z", secs / 3600, secs / 60 % 60, secs % 60);
    if y < 2050 {
        tlv(0x17, format!("{:02}{m:02}{d:02}{hms}", y % 100).as_bytes())
    } else {
        tlv(0x18, format!("{y:04}{m:02}{d:02}{hms}").as_bytes())
    }
}

/// DER content of the claims extension's OID.
pub fn claims_oid_der() -> Vec<u8> {
    oid_content(1)
}

/// DER content of the evidence extension's OID.
pub fn evidence_oid_der() -> Vec<u8> {
    oid_content(2)
}

/// DER content of the GPU evidence extension's OID.
pub fn gpu_evidence_oid_der() -> Vec<u8> {
    oid_content(3)
}

/// The parts of a certificate, for [`assemble`].
pub struct CertParts<'a> {
    /// Signs the certificate; its public key is the subject's.
    pub key: &'a Ed25519KeyPair,
    /// Issuer common name; `None` makes it equal to the subject (self-signed).
    pub issuer_cn: Option<String>,
    /// Subject common name.
    pub subject_cn: String,
    /// Validity start, UNIX seconds.
    pub not_before: u64,
    /// Validity end, UNIX seconds.
    pub not_after: u64,
    /// Extensions: OID content bytes, critical, value.
    pub extensions: Vec<(Vec<u8>, bool, Vec<u8>)>,
}

/// Writes and signs a certificate from its parts. Nodes use [`mint`]; this
/// is the low-level writer under it, public so that tools and tests can
/// build certificates a verifier must refuse.
pub fn assemble(parts: &CertParts<'_>) -> Vec<u8> {
    let rng = ring::rand::SystemRandom::new();
    let mut serial = [0u8; 16];
    // A failing system RNG leaves a fixed serial; the key is what identifies.
    let _ = ring::rand::SecureRandom::fill(&rng, &mut serial);
    serial[0] = (serial[0] & 0x7f) | 0x01;
    let name = |cn: &str| {
        seq(&[&tlv(
            0x31,
            &seq(&[&tlv(0x06, &[0x55, 0x04, 0x03]), &tlv(0x0c, cn.as_bytes())]),
        )])
    };
    let subject = name(&parts.subject_cn);
    let issuer = parts
        .issuer_cn
        .as_deref()
        .map(name)
        .unwrap_or_else(|| subject.clone());
    let exts: Vec<Vec<u8>> = parts
        .extensions
        .iter()
        .map(|(oid, critical, value)| {
            let crit: &[u8] = if *critical { &[0x01, 0x01, 0xff] } else { &[] };
            seq(&[&tlv(0x06, oid), crit, &tlv(0x04, value)])
        })
        .collect();
    let ext_refs: Vec<&[u8]> = exts.iter().map(|e| e.as_slice()).collect();
    let public = parts.key.public_key().as_ref();
    let spki = seq(&[ED25519_ALG, &tlv(0x03, &[&[0u8][..], public].concat())]);
    let mut tbs_parts: Vec<Vec<u8>> = vec![
        vec![0xa0, 0x03, 0x02, 0x01, 0x02],
        tlv(0x02, &serial),
        ED25519_ALG.to_vec(),
        issuer,
        seq(&[&time(parts.not_before), &time(parts.not_after)]),
        subject,
        spki,
    ];
    if !exts.is_empty() {
        tbs_parts.push(tlv(0xa3, &seq(&ext_refs)));
    }
    let tbs = tlv(0x30, &tbs_parts.concat());
    let sig = parts.key.sign(&tbs);
    seq(&[
        &tbs,
        ED25519_ALG,
        &tlv(0x03, &[&[0u8][..], sig.as_ref()].concat()),
    ])
}

/// What minting produces: the certificate and its private key.
#[derive(Clone)]
pub struct MintedCert {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The Ed25519 private key, PKCS#8 DER.
    pub pkcs8: Vec<u8>,
    /// The claims it carries.
    pub claims: Claims,
}

impl std::fmt::Debug for MintedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedCert")
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

/// Why a certificate could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// Evidence could not be produced.
    #[error("attestation: {0}")]
    Attest(#[from] AttestError),
    /// Key generation failed.
    #[error("key generation: {0}")]
    Key(String),
}

/// Mints a certificate: a fresh Ed25519 key, claims naming it, and evidence
/// from `attester` over the claims. `claims.public_key` is overwritten.
pub fn mint(mut claims: Claims, attester: &dyn Attester) -> Result<MintedCert, MintError> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| MintError::Key(e.to_string()))?;
    let key =
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| MintError::Key(e.to_string()))?;
    claims.public_key.copy_from_slice(key.public_key().as_ref());
    let evidence = attester.attest(&claims.report_data())?;
    let gpus = attester.gpu_evidence(&crate::nvidia::claims_nonce(&claims.encode()))?;
    let mut extensions = vec![
        (claims_oid_der(), true, claims.encode()),
        (evidence_oid_der(), true, evidence.encode()),
    ];
    if !gpus.is_empty() {
        extensions.push((
            gpu_evidence_oid_der(),
            true,
            GpuEvidence::encode_list(&gpus),
        ));
    }
    let der = assemble(&CertParts {
        key: &key,
        issuer_cn: None,
        subject_cn: format!("cocoon-{}", claims.role.as_str()),
        not_before: claims.issued_at,
        not_after: claims.expires_at,
        extensions,
    });
    Ok(MintedCert {
        der,
        pkcs8: pkcs8.as_ref().to_vec(),
        claims,
    })
}

/// A parsed, self-consistent RA-TLS certificate. Its evidence is not yet
/// verified: that is the [`crate::RaTlsVerifier`]'s job.
#[derive(Debug, Clone)]
pub struct RaTlsCert {
    /// The claims extension.
    pub claims: Claims,
    /// The evidence extension, decoded.
    pub evidence: Evidence,
    /// The evidence extension's bytes (the verification cache key is their hash).
    pub evidence_bytes: Vec<u8>,
    /// Evidence of the holder's GPUs, bound to the claims by its nonce;
    /// empty when it offers none.
    pub gpus: Vec<GpuEvidence>,
    /// The certificate's SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
    /// Validity start, UNIX seconds.
    pub not_before: u64,
    /// Validity end, UNIX seconds.
    pub not_after: u64,
}

/// Why a certificate is not a well-formed RA-TLS certificate.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CertError {
    /// Not DER X.509.
    #[error("not an X.509 certificate: {0}")]
    Malformed(String),
    /// Signed by something other than Ed25519.
    #[error("certificate {what} algorithm is {found}, expected Ed25519 (1.3.101.112)")]
    NotEd25519 {
        /// Signature or key.
        what: &'static str,
        /// The OID found.
        found: String,
    },
    /// The issuer is not the subject: part of a chain, not self-signed.
    #[error("certificate is not self-signed: issuer {issuer:?} is not subject {subject:?}")]
    NotSelfSigned {
        /// Issuer name.
        issuer: String,
        /// Subject name.
        subject: String,
    },
    /// The certificate's signature does not verify under its own key.
    #[error("certificate signature does not verify under its own key")]
    Signature,
    /// An extension marked critical that this verifier does not know.
    #[error("unknown critical extension {0}")]
    UnknownCriticalExtension(String),
    /// A required extension is absent.
    #[error("missing {0} extension")]
    MissingExtension(&'static str),
    /// An extension appears twice.
    #[error("duplicate {0} extension")]
    DuplicateExtension(&'static str),
    /// The claims name another key than the certificate's.
    #[error("claims name public key {claimed}, the certificate's key is {actual}")]
    KeyMismatch {
        /// From the claims, hex.
        claimed: String,
        /// From the certificate, hex.
        actual: String,
    },
    /// The claims' times differ from the certificate's validity.
    #[error("claims say issued {claims_issued} expires {claims_expires}, certificate says {not_before} to {not_after}")]
    TimesMismatch {
        /// From the claims.
        claims_issued: u64,
        /// From the claims.
        claims_expires: u64,
        /// From the certificate.
        not_before: u64,
        /// From the certificate.
        not_after: u64,
    },
    /// The claims extension does not decode.
    #[error(transparent)]
    Claims(#[from] ClaimsDecodeError),
    /// The evidence extension does not decode.
    #[error(transparent)]
    Evidence(#[from] EvidenceDecodeError),
    /// The GPU evidence extension does not decode.
    #[error("GPU evidence encoding: {0}")]
    GpuEvidence(String),
}

/// The values of the claims, evidence and GPU evidence extensions, each at
/// most once; an unknown critical extension is refused.
fn our_extensions<'a>(
    cert: &'a x509_parser::certificate::X509Certificate<'a>,
) -> Result<[Option<&'a [u8]>; 3], CertError> {
    let oids = [oid_content(1), oid_content(2), oid_content(3)];
    const NAMES: [&str; 3] = ["claims", "evidence", "GPU evidence"];
    let mut found: [Option<&[u8]>; 3] = [None; 3];
    for ext in cert.extensions() {
        let oid = ext.oid.as_bytes();
        let Some(i) = oids.iter().position(|o| o.as_slice() == oid) else {
            if ext.critical {
                return Err(CertError::UnknownCriticalExtension(ext.oid.to_id_string()));
            }
            continue;
        };
        if found[i].replace(ext.value).is_some() {
            return Err(CertError::DuplicateExtension(NAMES[i]));
        }
    }
    Ok(found)
}

/// Parses an RA-TLS certificate and checks what can be checked without
/// evidence: self-signed Ed25519, only known critical extensions, claims
/// naming this certificate's key and validity.
pub fn parse(der: &[u8]) -> Result<RaTlsCert, CertError> {
    use x509_parser::prelude::*;
    let (rest, cert) =
        parse_x509_certificate(der).map_err(|e| CertError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CertError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    let sig_alg = cert.signature_algorithm.algorithm.as_bytes();
    if sig_alg != ED25519_OID {
        return Err(CertError::NotEd25519 {
            what: "signature",
            found: cert.signature_algorithm.algorithm.to_id_string(),
        });
    }
    let spki = cert.public_key();
    if spki.algorithm.algorithm.as_bytes() != ED25519_OID {
        return Err(CertError::NotEd25519 {
            what: "key",
            found: spki.algorithm.algorithm.to_id_string(),
        });
    }
    if cert.issuer().as_raw() != cert.subject().as_raw() {
        return Err(CertError::NotSelfSigned {
            issuer: cert.issuer().to_string(),
            subject: cert.subject().to_string(),
        });
    }
    let key = spki.subject_public_key.data.as_ref();
    UnparsedPublicKey::new(&ED25519, key)
        .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
        .map_err(|_| CertError::Signature)?;

    let [claims, evidence, gpus] = our_extensions(&cert)?;
    let gpus = match gpus {
        Some(bytes) => GpuEvidence::decode_list(bytes).map_err(CertError::GpuEvidence)?,
        None => Vec::new(),
    };
    let claims = Claims::decode(claims.ok_or(CertError::MissingExtension("claims"))?)?;
    let evidence_bytes = evidence
        .ok_or(CertError::MissingExtension("evidence"))?
        .to_vec();
    let evidence = Evidence::decode(&evidence_bytes)?;
    if claims.public_key.as_slice() != key {
        return Err(CertError::KeyMismatch {
            claimed: hex::encode(claims.public_key),
            actual: hex::encode(key),
        });
    }
    let validity = cert.validity();
    let not_before = u64::try_from(validity.not_before.timestamp()).unwrap_or(0);
    let not_after = u64::try_from(validity.not_after.timestamp()).unwrap_or(0);
    if claims.issued_at != not_before || claims.expires_at != not_after {
        return Err(CertError::TimesMismatch {
            claims_issued: claims.issued_at,
            claims_expires: claims.expires_at,
            not_before,
            not_after,
        });
    }
    Ok(RaTlsCert {
        claims,
        evidence,
        evidence_bytes,
        gpus,
        spki: spki.raw.to_vec(),
        not_before,
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oid_arc_encodes_as_x667_says() {
        // 2.25 → 105; the arc's base-128 groups; then the suffix.
        let c = oid_content(1);
        assert_eq!(c[0], 105);
        assert_eq!(*c.last().unwrap(), 1);
        let mut n: u128 = 0;
        for b in &c[1..c.len() - 1] {
            n = (n << 7) | u128::from(b & 0x7f);
        }
        assert_eq!(n, OID_ARC_UUID);
        assert_eq!(
            claims_oid(),
            "2.25.181770838506338172402504241450561736582.1"
        );
    }

    #[test]
    fn times_are_encoded_as_rfc5280_asks() {
        assert_eq!(time(0), tlv(0x17, b"700101000000Z"));
        assert_eq!(time(1_795_478_400), tlv(0x17, b"261124000000Z"));
        assert_eq!(time(2_524_607_999), tlv(0x17, b"491231235959Z"));
        assert_eq!(time(2_524_608_000), tlv(0x18, b"20500101000000Z"));
    }
}
