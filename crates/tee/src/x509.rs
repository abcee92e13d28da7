//! X.509 helpers shared by the verifiers whose vendors root evidence in a
//! certificate chain (AMD, NVIDIA).

use der::{Decode, DecodePem, Encode};
use x509_cert::der;
use x509_cert::Certificate;

/// Reads one certificate, DER or PEM.
pub(crate) fn read_cert(bytes: &[u8]) -> Result<Certificate, String> {
    if bytes.starts_with(b"-----BEGIN") {
        Certificate::from_pem(bytes).map_err(|e| e.to_string())
    } else {
        Certificate::from_der(bytes).map_err(|e| e.to_string())
    }
}

/// Reads every certificate of a PEM bundle (or one DER certificate).
pub(crate) fn read_bundle(bytes: &[u8]) -> Result<Vec<Certificate>, String> {
    let text = trim_ascii_start(bytes);
    if !text.starts_with(b"-----BEGIN") {
        return Ok(vec![read_cert(bytes)?]);
    }
    Certificate::load_pem_chain(text).map_err(|e| e.to_string())
}

fn trim_ascii_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// The subject's common name, or the whole subject when it has none.
pub(crate) fn common_name(cert: &Certificate) -> String {
    cert.tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3"))
        .and_then(|atv| {
            atv.value
                .decode_as::<der::asn1::Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_owned())
                .or_else(|_| {
                    atv.value
                        .decode_as::<der::asn1::PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_owned())
                })
                .ok()
        })
        .unwrap_or_else(|| cert.tbs_certificate.subject.to_string())
}

/// The validity window, UNIX seconds: (not before, not after).
pub(crate) fn validity(cert: &Certificate) -> (u64, u64) {
    let v = &cert.tbs_certificate.validity;
    (
        v.not_before.to_unix_duration().as_secs(),
        v.not_after.to_unix_duration().as_secs(),
    )
}

/// The value of the extension with this OID, if the certificate has it.
pub(crate) fn extension<'a>(cert: &'a Certificate, oid: &str) -> Option<&'a [u8]> {
    let oid = der::asn1::ObjectIdentifier::new(oid).ok()?;
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == oid)
        .map(|e| e.extn_value.as_bytes())
}

/// Whether the certificate's basic constraints make it a CA.
pub(crate) fn is_ca(cert: &Certificate) -> bool {
    extension(cert, "2.5.29.19")
        .and_then(|v| x509_cert::ext::pkix::BasicConstraints::from_der(v).ok())
        .is_some_and(|bc| bc.ca)
}

/// The DER bytes of the to-be-signed part, as the issuer signed them.
pub(crate) fn tbs_der(cert: &Certificate) -> Result<Vec<u8>, String> {
    cert.tbs_certificate.to_der().map_err(|e| e.to_string())
}

/// The certificate's DER encoding.
pub(crate) fn cert_der(cert: &Certificate) -> Result<Vec<u8>, String> {
    cert.to_der().map_err(|e| e.to_string())
}
