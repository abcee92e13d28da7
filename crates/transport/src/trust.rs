//! How a node proves itself and judges its peers: RA-TLS under an
//! attestation policy, or (development only) nothing at all.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cocoon_core::{ModelHash, Role};
use cocoon_tee::{Attester, Claims, RaTlsVerifier};
use rustls::pki_types::{CertificateDer, UnixTime};

use crate::{
    CredentialsError, InsecureAcceptAny, NodeCredentials, PeerIdentity, PeerVerifier, VerifyError,
};

/// How long an RA-TLS certificate is valid. It is replaced after two thirds
/// of that, so peers always see a fresh one.
pub const CERT_LIFETIME: Duration = Duration::from_secs(3600);

/// A node's trust setup.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Plain certificates, any peer accepted: encrypted, NOT authenticated.
    /// Development only; the CLI refuses it outside development mode.
    Insecure,
    /// Mutual RA-TLS: this node's certificates carry evidence from its
    /// attester, and peers must satisfy the policy.
    Attested(Arc<Attestation>),
}

/// The parts of RA-TLS a node needs.
#[derive(Debug)]
pub struct Attestation {
    attester: Arc<dyn Attester>,
    verifier: Arc<RaTlsVerifier>,
    config_hash: [u8; 32],
    lifetime: Duration,
    refusals: Arc<Refusals>,
    region: Option<cocoon_core::Region>,
}

/// Peers refused so far, by failed check, and the latest reason.
#[derive(Debug, Default)]
pub struct Refusals {
    inner: Mutex<(BTreeMap<&'static str, u64>, Option<String>)>,
}

impl Refusals {
    fn record(&self, check: &'static str, message: String) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *g.0.entry(check).or_default() += 1;
        g.1 = Some(message);
    }

    /// Counts by check, and the latest refusal's message.
    pub fn snapshot(&self) -> (BTreeMap<&'static str, u64>, Option<String>) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Attestation {
    /// RA-TLS with `attester` for this node's evidence and `verifier` for
    /// its peers'. `config_hash` goes into this node's claims.
    pub fn new(
        attester: Arc<dyn Attester>,
        verifier: Arc<RaTlsVerifier>,
        config_hash: [u8; 32],
    ) -> Self {
        Attestation {
            attester,
            verifier,
            config_hash,
            lifetime: CERT_LIFETIME,
            refusals: Arc::default(),
            region: None,
        }
    }

    /// Names the region this node's operator configured in every
    /// certificate's claims.
    pub fn with_region(mut self, region: Option<cocoon_core::Region>) -> Self {
        self.region = region;
        self
    }

    /// Overrides the certificate lifetime (tests of rotation).
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The verifier.
    pub fn verifier(&self) -> &Arc<RaTlsVerifier> {
        &self.verifier
    }

    /// The attester.
    pub fn attester(&self) -> &Arc<dyn Attester> {
        &self.attester
    }

    fn mint(
        &self,
        role: Role,
        model_hash: Option<ModelHash>,
        keys: ClaimedKeys,
    ) -> Result<cocoon_tee::cert::MintedCert, CredentialsError> {
        let now = cocoon_core::unix_now();
        let claims = Claims {
            public_key: [0; 32],
            role,
            issued_at: now,
            expires_at: now + self.lifetime.as_secs(),
            config_hash: self.config_hash,
            model_hash,
            receipt_key: keys.receipt,
            e2e_key: keys.e2e,
            region: self.region.clone(),
        };
        cocoon_tee::cert::mint(claims, &*self.attester).map_err(|e| CredentialsError(e.to_string()))
    }
}

/// The keys a certificate's claims name besides its own.
#[derive(Debug, Clone, Copy, Default)]
struct ClaimedKeys {
    receipt: Option<[u8; 32]>,
    e2e: Option<[u8; 32]>,
}

impl Trust {
    /// This node's credentials. Under RA-TLS they are minted now and
    /// re-minted in the background before they expire, for as long as the
    /// returned credentials are alive (needs a Tokio runtime).
    pub fn credentials(
        &self,
        role: Role,
        name: &str,
        model_hash: Option<ModelHash>,
    ) -> Result<Arc<NodeCredentials>, CredentialsError> {
        self.credentials_claiming(role, name, model_hash, ClaimedKeys::default())
    }

    /// A worker's credentials: as [`Trust::credentials`], and every
    /// certificate's claims name `receipt_key`, the key its receipts are
    /// signed with, and `e2e_key`, the X25519 key clients seal requests to.
    pub fn worker_credentials(
        &self,
        name: &str,
        model_hash: Option<ModelHash>,
        receipt_key: [u8; 32],
        e2e_key: [u8; 32],
    ) -> Result<Arc<NodeCredentials>, CredentialsError> {
        let keys = ClaimedKeys {
            receipt: Some(receipt_key),
            e2e: Some(e2e_key),
        };
        self.credentials_claiming(Role::Worker, name, model_hash, keys)
    }

    fn credentials_claiming(
        &self,
        role: Role,
        name: &str,
        model_hash: Option<ModelHash>,
        keys: ClaimedKeys,
    ) -> Result<Arc<NodeCredentials>, CredentialsError> {
        let att = match self {
            Trust::Insecure => return Ok(Arc::new(NodeCredentials::generate(role, name)?)),
            Trust::Attested(att) => att.clone(),
        };
        let minted = att.mint(role, model_hash, keys)?;
        let creds = Arc::new(NodeCredentials::from_der(minted.der, minted.pkcs8)?);
        let weak = Arc::downgrade(&creds);
        let every = att.lifetime * 2 / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(creds) = weak.upgrade() else { return };
                // Attesting can block on the TEE driver: keep it off the reactor.
                let att2 = att.clone();
                let minted =
                    tokio::task::spawn_blocking(move || att2.mint(role, model_hash, keys)).await;
                match minted {
                    Ok(Ok(m)) => match creds.replace(m.der, m.pkcs8) {
                        Ok(()) => tracing::info!(%role, "RA-TLS certificate rotated"),
                        Err(e) => tracing::error!(error = %e, "RA-TLS rotation failed"),
                    },
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "RA-TLS rotation failed; retrying next period")
                    }
                    Err(e) => tracing::error!(error = %e, "RA-TLS rotation task failed"),
                }
            }
        });
        Ok(creds)
    }

    /// A verifier for connections that accept peers in `roles`. `context`
    /// names the connection in logs.
    pub fn verifier(&self, context: &str, roles: &[Role]) -> Arc<dyn PeerVerifier> {
        match self {
            Trust::Insecure => Arc::new(InsecureAcceptAny::new(context)),
            Trust::Attested(att) => Arc::new(AttestedPeers {
                verifier: att.verifier.clone(),
                roles: roles.to_vec(),
                context: context.to_owned(),
                refusals: att.refusals.clone(),
                last: Mutex::new(None),
            }),
        }
    }

    /// `none` or `ra-tls (KINDS)`, for banners and stats.
    pub fn describe(&self) -> String {
        match self {
            Trust::Insecure => "none".into(),
            Trust::Attested(att) => format!(
                "ra-tls (self: {}; peers: {}{})",
                att.attester.kind(),
                att.verifier
                    .policy()
                    .kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                att.verifier
                    .registry_images()
                    .map(|l| format!("; images: {}", l.describe()))
                    .unwrap_or_default()
            ),
        }
    }

    /// Peers refused, by check, with the latest reason (RA-TLS only).
    pub fn refusals(&self) -> (BTreeMap<&'static str, u64>, Option<String>) {
        match self {
            Trust::Insecure => Default::default(),
            Trust::Attested(att) => att.refusals.snapshot(),
        }
    }
}

/// The RA-TLS [`PeerVerifier`].
#[derive(Debug)]
struct AttestedPeers {
    verifier: Arc<RaTlsVerifier>,
    roles: Vec<Role>,
    context: String,
    refusals: Arc<Refusals>,
    last: Mutex<Option<Arc<PeerIdentity>>>,
}

impl PeerVerifier for AttestedPeers {
    fn policy_name(&self) -> &str {
        "ra-tls"
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        now: UnixTime,
    ) -> Result<PeerIdentity, VerifyError> {
        match self
            .verifier
            .verify(end_entity.as_ref(), &self.roles, now.as_secs())
        {
            Ok(attested) => {
                let identity = PeerIdentity {
                    fingerprint: crate::verifier::fingerprint(end_entity),
                    policy: "ra-tls".into(),
                    authenticated: true,
                    attestation: Some(Arc::new(attested)),
                };
                *self.last.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Arc::new(identity.clone()));
                Ok(identity)
            }
            Err(e) => {
                self.refusals
                    .record(e.check(), format!("{}: {e}", self.context));
                Err(VerifyError::Attestation(Arc::new(e)))
            }
        }
    }

    fn last_verified(&self) -> Option<Arc<PeerIdentity>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
