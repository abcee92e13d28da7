//! The client's ACI identity: a receipt key and an E2EE key generated in
//! this process (inside its TEE, never written anywhere), listed in a
//! keyset that expires and is replaced halfway through its life.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};

use cocoon_aci::e2ee::ServiceKey;
use cocoon_aci::keyset::WorkloadKeyset;
use cocoon_aci::receipt::ReceiptKey;

/// How long a keyset is valid.
const KEYSET_LIFETIME_SECS: u64 = 24 * 3600;
/// Keysets kept after they were replaced: receipts they signed stay
/// verifiable, and requests sealed to their key still open, until they
/// expire.
const KEPT_PREVIOUS: usize = 2;

/// One keyset and its private keys.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) receipt: ReceiptKey,
    pub(crate) e2ee: ServiceKey,
    pub(crate) keyset: WorkloadKeyset,
    /// `sha256:<hex>` of the keyset's JCS form.
    pub(crate) digest: String,
    created: u64,
}

/// Why keys could not be made.
#[derive(Debug, thiserror::Error)]
#[error("could not generate the ACI keys: the system's randomness failed")]
pub struct KeyGenError;

impl Identity {
    fn generate(subject: &str, now: u64) -> Result<Identity, KeyGenError> {
        let receipt = ReceiptKey::generate("receipt").map_err(|_| KeyGenError)?;
        let e2ee = ServiceKey::generate("e2ee").map_err(|_| KeyGenError)?;
        // Ids a client can tell apart across rotations.
        let receipt_entry = receipt.entry();
        let e2ee_entry = e2ee.entry();
        let receipt = receipt.renamed(&format!("receipt-{}", &receipt_entry.public_key[..12]));
        let e2ee = e2ee.renamed(&format!("e2ee-{}", &e2ee_entry.public_key[..12]));
        let keyset = WorkloadKeyset {
            subject: Some(subject.to_owned()),
            not_after: now + KEYSET_LIFETIME_SECS,
            receipt_signing_keys: vec![receipt.entry()],
            e2ee_public_keys: vec![e2ee.entry()],
            tls_public_keys: Vec::new(),
        };
        let digest = keyset
            .digest()
            .expect("a keyset holds strings and integers only");
        Ok(Identity {
            receipt,
            e2ee,
            keyset,
            digest,
            created: now,
        })
    }
}

/// The current identity and the recent ones.
#[derive(Debug)]
pub(crate) struct Identities {
    subject: String,
    current: RwLock<Arc<Identity>>,
    previous: Mutex<VecDeque<Arc<Identity>>>,
}

impl Identities {
    /// A first identity, for the client named `name`.
    pub(crate) fn new(name: &str) -> Result<Self, KeyGenError> {
        let subject = format!("cocoon-client:{name}");
        let first = Identity::generate(&subject, cocoon_core::unix_now())?;
        Ok(Identities {
            subject,
            current: RwLock::new(Arc::new(first)),
            previous: Mutex::new(VecDeque::new()),
        })
    }

    /// The identity to use now; replaces it once half its life is over.
    pub(crate) fn current(&self) -> Arc<Identity> {
        let now = cocoon_core::unix_now();
        let current = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if now < current.created + KEYSET_LIFETIME_SECS / 2 {
            return current;
        }
        let mut slot = self.current.write().unwrap_or_else(|p| p.into_inner());
        if !Arc::ptr_eq(&slot, &current) {
            return slot.clone();
        }
        match Identity::generate(&self.subject, now) {
            Ok(fresh) => {
                tracing::info!(old = %current.digest, new = %fresh.digest, "ACI keyset replaced");
                let mut previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
                previous.push_front(std::mem::replace(&mut *slot, Arc::new(fresh)));
                previous.truncate(KEPT_PREVIOUS);
                slot.clone()
            }
            Err(e) => {
                tracing::error!(error = %e, "keeping the current ACI keyset");
                current
            }
        }
    }

    /// Every identity whose keyset has not expired, current first.
    pub(crate) fn live(&self) -> Vec<Arc<Identity>> {
        let now = cocoon_core::unix_now();
        let mut all = vec![self.current()];
        let previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        all.extend(
            previous
                .iter()
                .filter(|i| now < i.keyset.not_after)
                .cloned(),
        );
        all
    }
}
