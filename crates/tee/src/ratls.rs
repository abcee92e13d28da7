//! Judging a peer's RA-TLS certificate against a [`Policy`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cocoon_core::{ModelHash, Role};
use sha2::Digest;

use crate::cert::{self, CertError};
use crate::evidence::{self, CollateralSource, EvidenceError, VerifiedEvidence, VerifyContext};
use crate::policy::{Policy, RequiredClaim};
use crate::{ImageHash, TcbStatus, TeeKind};

/// How far a peer's clock may run ahead of ours.
pub const CLOCK_SKEW_SECS: u64 = 60;
/// How long a verified piece of evidence is trusted without re-verifying.
pub const CACHE_TTL_SECS: u64 = 300;
const CACHE_CAPACITY: usize = 4096;

/// What a verified peer proved. Only [`RaTlsVerifier`] builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAttestation {
    /// The peer's role, from its claims.
    pub role: Role,
    /// The TEE kind.
    pub kind: TeeKind,
    /// The code it runs.
    pub image_hash: ImageHash,
    /// Platform TCB status.
    pub tcb_status: TcbStatus,
    /// Applicable advisories.
    pub advisories: Vec<String>,
    /// SHA-256 of its configuration.
    pub config_hash: [u8; 32],
    /// For workers: the weights.
    pub model_hash: Option<ModelHash>,
    /// For workers: the key that signs their receipts.
    pub receipt_key: Option<[u8; 32]>,
    /// For workers: the X25519 key requests are sealed to end to end.
    pub e2e_key: Option<[u8; 32]>,
    /// For workers: the region its operator configured (what it proves:
    /// see [`cocoon_core::Region`]).
    pub region: Option<cocoon_core::Region>,
    /// Its GPUs whose evidence verified under the policy's `[gpu]`
    /// section; empty without one, or without GPU evidence.
    pub gpus: Vec<crate::nvidia::VerifiedGpu>,
    /// Certificate issue time.
    pub issued_at: u64,
    /// Certificate expiry.
    pub expires_at: u64,
    /// Measurement registers, named.
    pub measurements: Vec<(&'static str, String)>,
}

/// A value that a verifier established. It cannot be built elsewhere, so a
/// function taking `Attested<T>` knows the check happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested<T>(T);

impl<T> std::ops::Deref for Attested<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Attested<T> {
    /// The value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// Why a peer was refused. Each variant names the check and what was found.
#[derive(Debug, thiserror::Error)]
pub enum RaTlsError {
    /// The certificate is not a well-formed RA-TLS certificate.
    #[error("certificate: {0}")]
    Cert(#[from] CertError),
    /// The peer claims a role this connection does not accept.
    #[error("role: peer claims {found}, this connection accepts {expected}")]
    WrongRole {
        /// Claimed role.
        found: Role,
        /// Accepted roles.
        expected: String,
    },
    /// Not yet valid.
    #[error("validity: certificate issued at {issued_at}, which is in the future (now {now})")]
    NotYetValid {
        /// Issue time.
        issued_at: u64,
        /// Now.
        now: u64,
    },
    /// Expired.
    #[error("validity: certificate expired at {expires_at} (now {now})")]
    Expired {
        /// Expiry.
        expires_at: u64,
        /// Now.
        now: u64,
    },
    /// Older than the policy allows: a replayed certificate.
    #[error("certificate age: issued {age}s ago, policy allows at most {max}s")]
    TooOld {
        /// Seconds since issue.
        age: u64,
        /// Policy maximum.
        max: u64,
    },
    /// The TEE kind is not accepted.
    #[error("tee kind: {found} is not accepted (policy accepts {accepted})")]
    KindNotAllowed {
        /// The evidence's kind.
        found: TeeKind,
        /// Accepted kinds.
        accepted: String,
    },
    /// The evidence does not verify.
    #[error("evidence: {0}")]
    Evidence(#[from] EvidenceError),
    /// The evidence's report data is not SHA-512 of the certificate's claims.
    #[error("binding: evidence report data {found} is not SHA-512 of the certificate's claims ({expected}); the evidence belongs to another key or the claims were edited")]
    NotBound {
        /// From the evidence, hex.
        found: String,
        /// From the claims, hex.
        expected: String,
    },
    /// The image is not on the allow-list for the role.
    #[error("image hash: {found} is not allowed for role {role} (allowed: [{allowed}])")]
    ImageNotAllowed {
        /// The peer's role.
        role: Role,
        /// Its image hash.
        found: ImageHash,
        /// The allow-list.
        allowed: String,
    },
    /// TCB below the minimum.
    #[error("tcb status: {found} is below the policy minimum {min}")]
    TcbTooLow {
        /// Found.
        found: TcbStatus,
        /// Minimum.
        min: TcbStatus,
    },
    /// A required claim is missing.
    #[error("claims: {role} certificate lacks the required {claim} claim")]
    MissingClaim {
        /// The peer's role.
        role: Role,
        /// Which.
        claim: &'static str,
    },
    /// A peer without a TEE, where the policy has no open tier (or the peer
    /// is not a worker, the only role the open tier admits).
    #[error("tee kind: the peer has no TEE (open tier) and {0}")]
    OpenTierRefused(String),
    /// The certificate's GPU evidence does not verify under the policy.
    #[error("gpu evidence: {0}")]
    Gpu(#[from] crate::nvidia::GpuError),
}

impl RaTlsError {
    /// A short name of the failed check, for metrics and logs.
    pub fn check(&self) -> &'static str {
        match self {
            RaTlsError::Cert(_) => "certificate",
            RaTlsError::WrongRole { .. } => "role",
            RaTlsError::NotYetValid { .. } | RaTlsError::Expired { .. } => "validity",
            RaTlsError::TooOld { .. } => "certificate_age",
            RaTlsError::KindNotAllowed { .. } => "tee_kind",
            RaTlsError::Evidence(_) => "evidence",
            RaTlsError::NotBound { .. } => "binding",
            RaTlsError::ImageNotAllowed { .. } => "image_hash",
            RaTlsError::TcbTooLow { .. } => "tcb_status",
            RaTlsError::MissingClaim { .. } => "claims",
            RaTlsError::Gpu(_) => "gpu",
            RaTlsError::OpenTierRefused(_) => "tee_kind",
        }
    }
}

struct CacheEntry {
    verified: Arc<VerifiedEvidence>,
    at: u64,
}

/// Verifies RA-TLS certificates against a policy, caching evidence
/// verification by the hash of the evidence (the expensive part: DCAP
/// collateral checks, RSA chains). Claims and policy are checked every time.
pub struct RaTlsVerifier {
    policy: Policy,
    /// When set, the images allowed (the registry's), instead of the
    /// policy's `[images]`.
    registry_images: Option<Arc<crate::allowlist::ImageAllowList>>,
    collateral: Option<Arc<dyn CollateralSource>>,
    cache: Mutex<HashMap<[u8; 32], CacheEntry>>,
    caching: bool,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for RaTlsVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaTlsVerifier")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl RaTlsVerifier {
    /// A verifier for `policy`, taking TDX collateral from `collateral` when
    /// a quote carries none.
    pub fn new(policy: Policy, collateral: Option<Arc<dyn CollateralSource>>) -> Self {
        RaTlsVerifier {
            policy,
            registry_images: None,
            collateral,
            cache: Mutex::new(HashMap::new()),
            caching: true,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Takes the allowed images from `list` (the root registry's) instead of
    /// the policy's `[images]`.
    pub fn with_registry_images(mut self, list: Arc<crate::allowlist::ImageAllowList>) -> Self {
        self.registry_images = Some(list);
        self
    }

    /// The registry's image list, when it decides.
    pub fn registry_images(&self) -> Option<&Arc<crate::allowlist::ImageAllowList>> {
        self.registry_images.as_ref()
    }

    /// Verifies every piece of evidence afresh: for measuring what the
    /// cache saves. Nodes always cache.
    pub fn without_cache(mut self) -> Self {
        self.caching = false;
        self
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Cache hits and misses so far.
    pub fn cache_stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Forgets every cached verification.
    pub fn clear_cache(&self) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Judges `cert_der` for a connection accepting `roles`, at `now`.
    pub fn verify(
        &self,
        cert_der: &[u8],
        roles: &[Role],
        now: u64,
    ) -> Result<Attested<PeerAttestation>, RaTlsError> {
        let cert = cert::parse(cert_der)?;
        let claims = &cert.claims;
        if !roles.contains(&claims.role) {
            return Err(RaTlsError::WrongRole {
                found: claims.role,
                expected: roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
            });
        }
        self.check_times(claims, now)?;
        let kind = cert.evidence.kind();
        if kind == TeeKind::None {
            return self.verify_open(&cert);
        }
        if !self.policy.kinds.contains(&kind) {
            return Err(RaTlsError::KindNotAllowed {
                found: kind,
                accepted: self
                    .policy
                    .kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let verified = self.verify_evidence(&cert, now)?;
        let expected = claims.report_data();
        if verified.report_data != expected {
            return Err(RaTlsError::NotBound {
                found: hex::encode(verified.report_data),
                expected: hex::encode(expected),
            });
        }
        self.check_image(claims.role, &verified.image_hash)?;
        if verified.tcb_status < self.policy.min_tcb {
            return Err(RaTlsError::TcbTooLow {
                found: verified.tcb_status,
                min: self.policy.min_tcb,
            });
        }
        self.check_required_claims(claims)?;
        let gpus = crate::gpu::verify_all(&cert.gpus, &claims.encode(), &self.policy, now)?;
        if kind != TeeKind::Sim && gpus.iter().any(|g| g.simulated) {
            return Err(RaTlsError::Gpu(crate::nvidia::GpuError::Chain(format!(
                "a simulated GPU beside a {kind} TEE proves nothing about the hardware"
            ))));
        }
        Ok(Attested(PeerAttestation {
            role: claims.role,
            kind,
            image_hash: verified.image_hash,
            tcb_status: verified.tcb_status,
            advisories: verified.advisories.clone(),
            config_hash: claims.config_hash,
            model_hash: claims.model_hash,
            receipt_key: claims.receipt_key,
            e2e_key: claims.e2e_key,
            region: claims.region.clone(),
            gpus,
            issued_at: claims.issued_at,
            expires_at: claims.expires_at,
            measurements: verified.measurements.clone(),
        }))
    }

    /// Refuses a worker certificate without a claim the policy requires.
    fn check_required_claims(&self, claims: &crate::Claims) -> Result<(), RaTlsError> {
        let required = &self.policy.required_claims;
        if claims.role == Role::Worker
            && required.contains(&RequiredClaim::ModelHash)
            && claims.model_hash.is_none()
        {
            return Err(RaTlsError::MissingClaim {
                role: claims.role,
                claim: "model_hash",
            });
        }
        Ok(())
    }

    /// Refuses a certificate not yet valid, expired, or older than the
    /// policy allows (a replay).
    fn check_times(&self, claims: &crate::Claims, now: u64) -> Result<(), RaTlsError> {
        if claims.issued_at > now + CLOCK_SKEW_SECS {
            return Err(RaTlsError::NotYetValid {
                issued_at: claims.issued_at,
                now,
            });
        }
        if now > claims.expires_at {
            return Err(RaTlsError::Expired {
                expires_at: claims.expires_at,
                now,
            });
        }
        let age = now.saturating_sub(claims.issued_at);
        if age > self.policy.max_cert_age_secs {
            return Err(RaTlsError::TooOld {
                age,
                max: self.policy.max_cert_age_secs,
            });
        }
        Ok(())
    }

    /// An open-tier worker: accepted only under a policy with an `[open]`
    /// section. Its certificate proves its claims are its key's, nothing
    /// about its code or hardware; GPU evidence without a TEE to bind it to
    /// attested code proves nothing either and is not counted.
    fn verify_open(&self, cert: &cert::RaTlsCert) -> Result<Attested<PeerAttestation>, RaTlsError> {
        let claims = &cert.claims;
        if self.policy.open.is_none() {
            return Err(RaTlsError::OpenTierRefused(
                "this node's policy has no [open] section".into(),
            ));
        }
        if claims.role != Role::Worker {
            return Err(RaTlsError::OpenTierRefused(format!(
                "the open tier admits workers only, not a {}",
                claims.role
            )));
        }
        self.check_required_claims(claims)?;
        Ok(Attested(PeerAttestation {
            role: claims.role,
            kind: TeeKind::None,
            image_hash: ImageHash::unmeasured(),
            tcb_status: TcbStatus::Unknown,
            advisories: Vec::new(),
            config_hash: claims.config_hash,
            model_hash: claims.model_hash,
            receipt_key: claims.receipt_key,
            e2e_key: claims.e2e_key,
            region: claims.region.clone(),
            gpus: Vec::new(),
            issued_at: claims.issued_at,
            expires_at: claims.expires_at,
            measurements: Vec::new(),
        }))
    }

    /// Refuses an image the registry's list (or, without one, the policy)
    /// does not allow for `role`.
    fn check_image(&self, role: Role, image: &ImageHash) -> Result<(), RaTlsError> {
        if let Some(list) = &self.registry_images {
            return list
                .check(role, image)
                .map_err(|refused| RaTlsError::ImageNotAllowed {
                    role,
                    found: *image,
                    allowed: refused.allowed,
                });
        }
        let allowed = self.policy.images.get(&role);
        if allowed.is_some_and(|set| set.contains(image)) {
            return Ok(());
        }
        Err(RaTlsError::ImageNotAllowed {
            role,
            found: *image,
            allowed: allowed
                .map(|s| {
                    s.iter()
                        .map(|h| h.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
        })
    }

    /// What a certificate's own evidence proves, its TEE kind and image,
    /// checked (signatures, binding to the claims) but not judged against
    /// this policy's roles, images or ages: how a node learns what its own
    /// certificate says of it, to state it in what it signs.
    pub fn inspect_own(
        &self,
        cert_der: &[u8],
        now: u64,
    ) -> Result<(TeeKind, ImageHash), RaTlsError> {
        let cert = cert::parse(cert_der)?;
        let verified = self.verify_evidence(&cert, now)?;
        let expected = cert.claims.report_data();
        if verified.report_data != expected {
            return Err(RaTlsError::NotBound {
                found: hex::encode(verified.report_data),
                expected: hex::encode(expected),
            });
        }
        Ok((verified.kind, verified.image_hash))
    }

    fn verify_evidence(
        &self,
        cert: &cert::RaTlsCert,
        now: u64,
    ) -> Result<Arc<VerifiedEvidence>, RaTlsError> {
        let key: [u8; 32] = sha2::Sha256::digest(&cert.evidence_bytes).into();
        if self.caching {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = cache.get(&key) {
                if now >= e.at && now - e.at <= CACHE_TTL_SECS {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(e.verified.clone());
                }
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let ctx = VerifyContext {
            now,
            sim_roots: &self.policy.sim_roots,
            collateral: self.collateral.as_deref(),
        };
        let verified = Arc::new(evidence::verify(&cert.evidence, ctx)?);
        if !self.caching {
            return Ok(verified);
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, e| now.saturating_sub(e.at) <= CACHE_TTL_SECS);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(
            key,
            CacheEntry {
                verified: verified.clone(),
                at: now,
            },
        );
        Ok(verified)
    }
}
