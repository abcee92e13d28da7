//! The worker's receipts: signed with the key of its current RA-TLS
//! certificate, for every answer it completes.

use std::sync::{Arc, Mutex};

use cocoon_receipt::{ProxyIdentity, ReceiptSigner};
use cocoon_tee::RaTlsVerifier;
use cocoon_transport::NodeCredentials;

/// The signer for the worker's current certificate, rebuilt when the
/// certificate rotates.
pub(crate) struct ReceiptKeys {
    credentials: Arc<NodeCredentials>,
    /// Checks the worker's own evidence, to state its TEE and image.
    verifier: Option<Arc<RaTlsVerifier>>,
    signer: Mutex<Option<Arc<ReceiptSigner>>>,
    /// The proxy of the current session, named in receipts.
    pub(crate) proxy: Mutex<ProxyIdentity>,
}

impl ReceiptKeys {
    pub(crate) fn new(
        credentials: Arc<NodeCredentials>,
        verifier: Option<Arc<RaTlsVerifier>>,
    ) -> Self {
        ReceiptKeys {
            credentials,
            verifier,
            signer: Mutex::new(None),
            proxy: Mutex::default(),
        }
    }

    /// The signer for the certificate presented now; `None` if its key
    /// cannot sign (logged).
    pub(crate) fn current(&self) -> Option<Arc<ReceiptSigner>> {
        let (cert, pkcs8) = self.credentials.current_with_key();
        let mut cached = self.signer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = cached.as_ref().filter(|s| s.certificate() == cert.as_ref()) {
            return Some(s.clone());
        }
        // What the certificate's own evidence proves; a worker whose policy
        // cannot check its own kind of evidence states nothing, and verifiers
        // read the certificate instead.
        let own = self.verifier.as_ref().and_then(|v| {
            v.inspect_own(cert.as_ref(), cocoon_core::unix_now())
                .map_err(|e| tracing::warn!(error = %e, "cannot read this worker's own evidence; receipts will not state its TEE and image"))
                .ok()
        });
        match ReceiptSigner::new(cert.to_vec(), &pkcs8, own.map(|o| o.0), own.map(|o| o.1)) {
            Ok(s) => {
                let s = Arc::new(s);
                tracing::info!(certificate = %s.certificate_sha256(), "receipts are signed with this certificate's key");
                *cached = Some(s.clone());
                Some(s)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot sign receipts with this certificate");
                None
            }
        }
    }

    pub(crate) fn proxy(&self) -> ProxyIdentity {
        self.proxy.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
