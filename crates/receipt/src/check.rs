//! Checking a receipt against the certificate of the worker that signed it.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use cocoon_core::{Coefficient, Role};
use cocoon_tee::{Attested, PeerAttestation, RaTlsVerifier};

use crate::body::{ReceiptBody, SignedReceipt};
use crate::digest::sha256_hex;

/// Why a receipt, or the answer it covers, does not verify. Each variant
/// names the check and what was found.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// Not a receipt this code reads.
    #[error("receipt: {0}")]
    Malformed(String),
    /// The worker's certificate is not one the policy accepts.
    #[error("worker certificate: {0}")]
    Certificate(#[from] cocoon_tee::RaTlsError),
    /// The receipt names another certificate than the one given.
    #[error(
        "the receipt was signed with certificate {named}, not with the given certificate {given}"
    )]
    CertificateMismatch {
        /// SHA-256 named in the receipt.
        named: String,
        /// SHA-256 of the certificate checked.
        given: String,
    },
    /// The signature does not verify under the certificate's key.
    #[error("signature: does not verify under the key of worker certificate {certificate}: the receipt was altered or not signed by that worker")]
    Signature {
        /// SHA-256 of the certificate.
        certificate: String,
    },
    /// A signed member disagrees with the attested certificate, the
    /// answer, the request or the price arithmetic.
    #[error("{what}: the receipt says {claimed}, but {against} is {found}")]
    Mismatch {
        /// The member checked.
        what: &'static str,
        /// What the receipt says.
        claimed: String,
        /// What it was checked against.
        against: &'static str,
        /// What that is.
        found: String,
    },
}

fn mismatch(
    what: &'static str,
    claimed: impl ToString,
    against: &'static str,
    found: impl ToString,
) -> ReceiptError {
    ReceiptError::Mismatch {
        what,
        claimed: claimed.to_string(),
        against,
        found: found.to_string(),
    }
}

fn or_none<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "none".to_string(), T::to_string)
}

/// A worker certificate that a verifier accepted, with the keys that sign
/// its receipts. Only [`WorkerIdentity::verify`] builds one.
#[derive(Debug, Clone)]
pub struct WorkerIdentity {
    certificate_sha256: String,
    /// The certificate's own key: it signed receipts before version 4.
    public_key: [u8; 32],
    /// The receipt key its claims name: it signs receipts of version 4.
    receipt_key: Option<[u8; 32]>,
    attestation: Attested<PeerAttestation>,
    /// Batch roots whose signature already verified under one of its keys.
    verified: Arc<VerifiedRoots>,
}

/// Roots recently verified under one key, with the signature that did:
/// the receipts of one batch share a root and a signature, and only the
/// first of them pays for the check. Bounded; the oldest go first.
#[derive(Debug, Default)]
struct VerifiedRoots(Mutex<(HashSet<SignedRoot>, VecDeque<SignedRoot>)>);

/// A batch root and the signature over it.
type SignedRoot = ([u8; 32], [u8; 64]);

/// Verified roots remembered per worker certificate.
const KEPT_ROOTS: usize = 256;

impl VerifiedRoots {
    fn contains(&self, root: &[u8; 32], signature: &[u8; 64]) -> bool {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.0.contains(&(*root, *signature))
    }

    fn insert(&self, root: [u8; 32], signature: [u8; 64]) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *g;
        if set.insert((root, signature)) {
            order.push_back((root, signature));
            if order.len() > KEPT_ROOTS {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
        }
    }
}

impl WorkerIdentity {
    /// Verifies `certificate` (DER) as a worker's RA-TLS certificate under
    /// `verifier`'s policy, as of `at` (UNIX seconds): now for a live
    /// answer, the receipt's time for a saved one.
    pub fn verify(
        certificate: &[u8],
        verifier: &RaTlsVerifier,
        at: u64,
    ) -> Result<Self, ReceiptError> {
        let attestation = verifier.verify(certificate, &[Role::Worker], at)?;
        let cert = cocoon_tee::cert::parse(certificate).map_err(cocoon_tee::RaTlsError::Cert)?;
        if let Some(key) = cert.claims.receipt_key {
            if cocoon_core::ed25519::is_small_order(&key) {
                return Err(mismatch(
                    "receipt_key",
                    hex::encode(key),
                    "a key only its holder can sign under",
                    "a point of small order",
                ));
            }
        }
        Ok(WorkerIdentity {
            certificate_sha256: sha256_hex(certificate),
            public_key: cert.claims.public_key,
            receipt_key: cert.claims.receipt_key,
            attestation,
            verified: Arc::default(),
        })
    }

    /// What the certificate's evidence proved.
    pub fn attestation(&self) -> &Attested<PeerAttestation> {
        &self.attestation
    }

    /// SHA-256 of the certificate, hex.
    pub fn certificate_sha256(&self) -> &str {
        &self.certificate_sha256
    }

    /// The key that signs this worker's receipts of `version`: its receipt
    /// key from version 4 on, its certificate's key before.
    /// A certificate that names a receipt key signs nothing else: a receipt
    /// of an earlier version under it is refused (such receipts state no
    /// time, so they could never be evidence).
    pub fn signing_key(&self, version: u32) -> Result<[u8; 32], ReceiptError> {
        if version < 4 {
            return match self.receipt_key {
                None => Ok(self.public_key),
                Some(_) => Err(mismatch(
                    "version",
                    version,
                    "the version of a certificate that names a receipt key",
                    "4",
                )),
            };
        }
        self.receipt_key.ok_or_else(|| {
            mismatch(
                "version",
                version,
                "the receipt key the certificate's claims name",
                "none",
            )
        })
    }

    /// Checks that this worker signed `signed` and that what it signed
    /// agrees with its attested certificate and with the price arithmetic.
    /// The answer and request hashes are the caller's to compare
    /// ([`ReceiptBody::expect`]).
    pub fn check(&self, signed: &SignedReceipt) -> Result<(), ReceiptError> {
        let r = &signed.receipt;
        if r.worker_certificate_sha256 != self.certificate_sha256 {
            return Err(ReceiptError::CertificateMismatch {
                named: r.worker_certificate_sha256.clone(),
                given: self.certificate_sha256.clone(),
            });
        }
        let signature: [u8; 64] = hex::decode(&signed.signature)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| ReceiptError::Signature {
                certificate: self.certificate_sha256.clone(),
            })?;
        let root = signed.signed_message()?;
        if !self.verified.contains(&root, &signature) {
            let key = self.signing_key(r.version)?;
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &key)
                .verify(&root, &signature)
                .map_err(|_| ReceiptError::Signature {
                    certificate: self.certificate_sha256.clone(),
                })?;
            self.verified.insert(root, signature);
        }
        let a = &self.attestation;
        if let Some(tee) = &r.tee {
            if tee != a.kind.as_str() {
                return Err(mismatch("tee", tee, "the certificate's evidence", a.kind));
            }
        }
        if let Some(image) = &r.image_hash {
            if *image != a.image_hash.to_string() {
                return Err(mismatch(
                    "image_hash",
                    image,
                    "the certificate's evidence",
                    a.image_hash,
                ));
            }
        }
        if let Some(claimed) = a.model_hash {
            if r.model_hash.as_deref() != Some(claimed.to_hex().as_str()) {
                return Err(mismatch(
                    "model_hash",
                    or_none(&r.model_hash),
                    "the certificate's attested claim",
                    claimed.to_hex(),
                ));
            }
        }
        let signed_at = r.finished_at_ms / 1000;
        if r.started_at_ms > r.finished_at_ms {
            return Err(mismatch(
                "started_at_ms",
                r.started_at_ms,
                "finished_at_ms",
                r.finished_at_ms,
            ));
        }
        if signed_at + cocoon_tee::ratls::CLOCK_SKEW_SECS < a.issued_at || signed_at > a.expires_at
        {
            return Err(mismatch(
                "finished_at_ms",
                r.finished_at_ms,
                "the certificate's validity (UNIX seconds)",
                format!("{}..{}", a.issued_at, a.expires_at),
            ));
        }
        r.check_cost()
    }
}

impl ReceiptBody {
    /// The cost members must be what the price list gives for the usage at
    /// the coefficient, and absent without a price list.
    fn check_cost(&self) -> Result<(), ReceiptError> {
        let Some(prices) = &self.prices else {
            if self.cost_nanoton.is_some() || self.worker_fee_nanoton.is_some() {
                return Err(mismatch(
                    "cost_nanoton",
                    or_none(&self.cost_nanoton),
                    "the cost without a price list",
                    "none",
                ));
            }
            return Ok(());
        };
        let coefficient = Coefficient::new(u64::from(self.coefficient))
            .map_err(|e| ReceiptError::Malformed(format!("coefficient: {e}")))?;
        let charge = prices
            .cost(&self.usage.into(), coefficient)
            .map_err(|e| ReceiptError::Malformed(format!("cost: {e}")))?;
        if self.cost_nanoton != Some(charge.client.get()) {
            return Err(mismatch(
                "cost_nanoton",
                or_none(&self.cost_nanoton),
                "the price list applied to the usage",
                charge.client.get(),
            ));
        }
        if self.worker_fee_nanoton != Some(charge.worker.get()) {
            return Err(mismatch(
                "worker_fee_nanoton",
                or_none(&self.worker_fee_nanoton),
                "the price list applied to the usage",
                charge.worker.get(),
            ));
        }
        Ok(())
    }

    /// The answer's digest ([`crate::digest`]) must be the one signed.
    pub fn expect_answer(&self, digest: &str) -> Result<(), ReceiptError> {
        if self.answer_sha256 != digest {
            return Err(mismatch(
                "answer_sha256",
                &self.answer_sha256,
                "the answer received",
                digest,
            ));
        }
        Ok(())
    }

    /// The request's SHA-256 must be the one signed: the engine ran what
    /// the client sent.
    pub fn expect_request(&self, sha256: &str) -> Result<(), ReceiptError> {
        if self.request_sha256 != sha256 {
            return Err(mismatch(
                "request_sha256",
                &self.request_sha256,
                "the request sent",
                sha256,
            ));
        }
        Ok(())
    }

    /// The usage reported beside the answer must be the one signed.
    pub fn expect_usage(&self, usage: cocoon_core::Usage) -> Result<(), ReceiptError> {
        let found = crate::ReceiptUsage::from(usage);
        if self.usage != found {
            return Err(mismatch(
                "usage",
                format!("{:?}", self.usage),
                "the usage reported",
                format!("{found:?}"),
            ));
        }
        Ok(())
    }
}
