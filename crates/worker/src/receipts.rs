//! The worker's receipts: signed with its receipt key (named in every
//! RA-TLS certificate's claims and registered in its worker contract), for
//! every answer it completes, in batches when answers finish close
//! together (`cocoon_receipt::batch`). Each receipt names the certificate
//! current when it was signed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cocoon_receipt::{PreparedReceipt, ProxyIdentity, ReceiptBody, ReceiptSigner, SignedReceipt};
use cocoon_tee::RaTlsVerifier;
use cocoon_transport::NodeCredentials;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long a receipt may wait to share a signature, by default. It delays
/// only the end of an answer (a stream's closing chunk, a whole answer's
/// body): the worker relays the text as it comes.
pub const DEFAULT_RECEIPT_BATCH: Duration = Duration::from_millis(20);

/// Receipts waiting that are signed at once, without waiting for the
/// window's end: a signature shared by this many already costs each of
/// them under a microsecond to sign and two to check.
pub const FULL_BATCH: usize = 64;

/// Signs at most one batch per window: a receipt finished when nothing was
/// signed for a window is signed at once, alone; one finished sooner waits
/// for the window's end, or until [`FULL_BATCH`] wait, and is signed with
/// every other receipt finished meanwhile. An idle worker adds no latency;
/// a busy one spends at most one signature per window however many answers
/// it finishes, and adds at most a window to the end of an answer.
pub(crate) struct ReceiptBatcher {
    window: Duration,
    state: Mutex<BatchState>,
    /// Receipts signed, and the signatures that covered them.
    receipts: AtomicU64,
    signatures: AtomicU64,
}

type Waiting = (PreparedReceipt, oneshot::Sender<SignedReceipt>);

#[derive(Default)]
struct BatchState {
    /// Receipts waiting for the window's end, with the signer they name.
    waiting: Vec<Waiting>,
    signer: Option<Arc<ReceiptSigner>>,
    last_signed: Option<Instant>,
    flush_scheduled: bool,
}

impl ReceiptBatcher {
    pub(crate) fn new(window: Duration) -> Arc<Self> {
        Arc::new(ReceiptBatcher {
            window,
            state: Mutex::default(),
            receipts: AtomicU64::new(0),
            signatures: AtomicU64::new(0),
        })
    }

    /// Receipts signed so far, and the signatures that covered them.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.receipts.load(Ordering::Relaxed),
            self.signatures.load(Ordering::Relaxed),
        )
    }

    /// Signs `body` with `signer`, alone or in the current window's batch.
    pub(crate) async fn sign(
        self: &Arc<Self>,
        signer: &Arc<ReceiptSigner>,
        body: ReceiptBody,
    ) -> Result<SignedReceipt, cocoon_receipt::ReceiptError> {
        let prepared = signer.prepare(body)?;
        if self.window.is_zero() {
            return Ok(self.sign_alone(signer, prepared));
        }
        let (tx, rx) = oneshot::channel();
        let (rotated, full) = {
            let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let idle = g
                .last_signed
                .is_none_or(|t| now.duration_since(t) >= self.window);
            if idle && !g.flush_scheduled {
                g.last_signed = Some(now);
                drop(g);
                return Ok(self.sign_alone(signer, prepared));
            }
            // A certificate rotated while receipts waited: those are signed
            // with the key they name, now, and the window starts anew.
            let rotated = match &g.signer {
                Some(s) if !Arc::ptr_eq(s, signer) && !g.waiting.is_empty() => {
                    Some((s.clone(), std::mem::take(&mut g.waiting)))
                }
                _ => None,
            };
            g.signer = Some(signer.clone());
            g.waiting.push((prepared, tx));
            // A full batch is signed now: waiting longer saves nothing worth
            // the latency. The timer already set signs what finishes
            // meanwhile.
            let full = (g.waiting.len() >= FULL_BATCH).then(|| {
                g.last_signed = Some(now);
                std::mem::take(&mut g.waiting)
            });
            if full.is_none() && !g.flush_scheduled {
                g.flush_scheduled = true;
                let at = g.last_signed.map_or(now, |t| t + self.window);
                let me = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    me.flush();
                });
            }
            (rotated, full)
        };
        if let Some((old, waiting)) = rotated {
            self.deliver(&old, waiting);
        }
        if let Some(full) = full {
            self.deliver(signer, full);
        }
        rx.await.map_err(|_| {
            cocoon_receipt::ReceiptError::Malformed("the receipt batch was dropped".into())
        })
    }

    /// Signs what waited for the window's end.
    fn flush(&self) {
        let (signer, waiting) = {
            let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
            g.flush_scheduled = false;
            if !g.waiting.is_empty() {
                g.last_signed = Some(Instant::now());
            }
            (g.signer.clone(), std::mem::take(&mut g.waiting))
        };
        if let Some(signer) = signer {
            self.deliver(&signer, waiting);
        }
    }

    fn sign_alone(&self, signer: &ReceiptSigner, prepared: PreparedReceipt) -> SignedReceipt {
        self.receipts.fetch_add(1, Ordering::Relaxed);
        self.signatures.fetch_add(1, Ordering::Relaxed);
        signer
            .sign_batch(vec![prepared])
            .pop()
            .expect("one receipt in, one out")
    }

    fn deliver(&self, signer: &ReceiptSigner, waiting: Vec<Waiting>) {
        if waiting.is_empty() {
            return;
        }
        let n = waiting.len();
        let (prepared, senders): (Vec<_>, Vec<_>) = waiting.into_iter().unzip();
        tracing::debug!(receipts = n, "signing a batch of receipts");
        self.receipts.fetch_add(n as u64, Ordering::Relaxed);
        self.signatures.fetch_add(
            n.div_ceil(cocoon_receipt::batch::MAX_BATCH) as u64,
            Ordering::Relaxed,
        );
        for (signed, tx) in signer.sign_batch(prepared).into_iter().zip(senders) {
            // An answer abandoned meanwhile no longer needs its receipt.
            let _ = tx.send(signed);
        }
    }
}

/// The signer for the worker's current certificate, rebuilt when the
/// certificate rotates; the key it signs with stays.
pub(crate) struct ReceiptKeys {
    credentials: Arc<NodeCredentials>,
    /// The receipt key, PKCS#8 Ed25519.
    receipt_key: Vec<u8>,
    /// Checks the worker's own evidence, to state its TEE and image.
    verifier: Option<Arc<RaTlsVerifier>>,
    signer: Mutex<Option<Arc<ReceiptSigner>>>,
    /// The proxy of the current session, named in receipts.
    pub(crate) proxy: Mutex<ProxyIdentity>,
    /// Shares signatures among receipts finished together.
    pub(crate) batcher: Arc<ReceiptBatcher>,
}

impl ReceiptKeys {
    pub(crate) fn new(
        credentials: Arc<NodeCredentials>,
        receipt_key: Vec<u8>,
        verifier: Option<Arc<RaTlsVerifier>>,
        batch_window: Duration,
    ) -> Self {
        ReceiptKeys {
            credentials,
            receipt_key,
            verifier,
            signer: Mutex::new(None),
            proxy: Mutex::default(),
            batcher: ReceiptBatcher::new(batch_window),
        }
    }

    /// The signer for the certificate presented now; `None` if the
    /// certificate does not name this worker's receipt key (logged).
    pub(crate) fn current(&self) -> Option<Arc<ReceiptSigner>> {
        let (cert, _) = self.credentials.current_with_key();
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
        match ReceiptSigner::new(
            cert.to_vec(),
            &self.receipt_key,
            own.map(|o| o.0),
            own.map(|o| o.1),
        ) {
            Ok(s) => {
                let s = Arc::new(s);
                tracing::info!(certificate = %s.certificate_sha256(), receipt_key = %hex::encode(s.public_key()), "receipts name this certificate");
                *cached = Some(s.clone());
                Some(s)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot sign receipts with this certificate");
                None
            }
        }
    }

    /// The receipt key's public half.
    pub(crate) fn public_key(&self) -> [u8; 32] {
        public_key(&self.receipt_key).unwrap_or_default()
    }

    pub(crate) fn proxy(&self) -> ProxyIdentity {
        self.proxy.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The public half of a PKCS#8 Ed25519 key.
pub(crate) fn public_key(pkcs8: &[u8]) -> Result<[u8; 32], ring::error::KeyRejected> {
    use ring::signature::KeyPair;
    let key = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)?;
    let mut out = [0u8; 32];
    out.copy_from_slice(key.public_key().as_ref());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_core::Role;
    use cocoon_tee::sim::SimRoot;
    use cocoon_tee::{Claims, SimAttester};

    fn signer() -> Arc<ReceiptSigner> {
        use ring::signature::KeyPair;
        let dir = tempfile::tempdir().unwrap();
        let attester = SimAttester::new(SimRoot::load_or_create(dir.path()).unwrap(), [1; 48]);
        let receipt_key =
            ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                .unwrap();
        let public = ring::signature::Ed25519KeyPair::from_pkcs8(receipt_key.as_ref())
            .unwrap()
            .public_key()
            .as_ref()
            .try_into()
            .unwrap();
        let now = cocoon_core::unix_now();
        let claims = Claims {
            public_key: [0; 32],
            role: Role::Worker,
            issued_at: now,
            expires_at: now + 3600,
            config_hash: [0; 32],
            model_hash: None,
            receipt_key: Some(public),
        };
        let minted = cocoon_tee::cert::mint(claims, &attester).unwrap();
        Arc::new(ReceiptSigner::new(minted.der, receipt_key.as_ref(), None, None).unwrap())
    }

    fn body(i: u32) -> ReceiptBody {
        ReceiptBody {
            version: 0,
            request_id: format!("r{i}"),
            request_sha256: "00".repeat(32),
            stream: false,
            answer_sha256: "11".repeat(32),
            content_sha256: None,
            response_id: format!("chatcmpl-{i}"),
            model: "m".into(),
            model_hash: None,
            usage: Default::default(),
            worker: "w".into(),
            worker_certificate_sha256: String::new(),
            tee: None,
            image_hash: None,
            coefficient: 1000,
            prices: None,
            cost_nanoton: None,
            worker_fee_nanoton: None,
            proxy: ProxyIdentity::default(),
            started_at_ms: 1,
            finished_at_ms: 2,
        }
    }

    // Tokio's paused clock: time moves only when every task waits, so the
    // waits below are exact, not measured.
    #[tokio::test(start_paused = true)]
    async fn an_idle_worker_signs_at_once_and_a_busy_one_once_per_window() {
        let signer = signer();
        let window = Duration::from_millis(200);
        let batcher = ReceiptBatcher::new(window);
        let t = Instant::now();
        let first = batcher.sign(&signer, body(0)).await.unwrap();
        assert!(first.batch.is_none(), "the first receipt is signed alone");
        assert_eq!(t.elapsed(), Duration::ZERO, "and without waiting");

        // Five more finish within the window: they wait for its end and
        // share one signature.
        let batch =
            futures_util::future::join_all((1..6).map(|i| batcher.sign(&signer, body(i)))).await;
        assert_eq!(t.elapsed(), window, "they waited for the window's end");
        let batch: Vec<SignedReceipt> = batch.into_iter().map(Result::unwrap).collect();
        assert!(batch.iter().all(|r| r.signature == batch[0].signature));
        assert_ne!(batch[0].signature, first.signature);
        let indices: Vec<u32> = batch
            .iter()
            .map(|r| r.batch.as_ref().unwrap().index)
            .collect();
        assert_eq!(indices, [0, 1, 2, 3, 4], "in the order they finished");
        for r in &batch {
            assert_eq!(
                r.receipt.worker_certificate_sha256,
                signer.certificate_sha256()
            );
        }
        assert_eq!(batcher.counts(), (6, 2), "six receipts, two signatures");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_is_signed_without_waiting_for_the_window() {
        let signer = signer();
        let window = Duration::from_millis(200);
        let batcher = ReceiptBatcher::new(window);
        let t = Instant::now();
        batcher.sign(&signer, body(0)).await.unwrap();
        // A full batch and one more finish within the window: the full
        // batch is signed as its last receipt arrives, the one more at the
        // window's end.
        let n = FULL_BATCH as u32;
        let full = futures_util::future::join_all((1..=n).map(|i| {
            let batcher = batcher.clone();
            let signer = signer.clone();
            async move {
                let r = batcher.sign(&signer, body(i)).await.unwrap();
                (r, t.elapsed())
            }
        }));
        let late = async {
            tokio::time::sleep(window / 2).await;
            let r = batcher.sign(&signer, body(n + 1)).await.unwrap();
            (r, t.elapsed())
        };
        let (full, (late, late_at)) = tokio::join!(full, late);
        for (r, at) in &full {
            assert_eq!(*at, Duration::ZERO, "a full batch does not wait");
            assert_eq!(r.signature, full[0].0.signature);
        }
        assert_eq!(
            late_at, window,
            "a later receipt waits for the window's end"
        );
        assert_ne!(late.signature, full[0].0.signature);
        assert_eq!(batcher.counts(), (u64::from(n) + 2, 3));
    }

    #[tokio::test]
    async fn a_zero_window_signs_every_receipt_alone() {
        let signer = signer();
        let batcher = ReceiptBatcher::new(Duration::ZERO);
        let all =
            futures_util::future::join_all((0..4).map(|i| batcher.sign(&signer, body(i)))).await;
        for r in all {
            assert!(r.unwrap().batch.is_none());
        }
    }
}
