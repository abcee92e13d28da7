//! The worker's receipts: signed with its receipt key (named in every
//! RA-TLS certificate's claims and registered in its worker contract), for
//! every answer it completes, in batches when answers finish while the
//! signer is busy (`cocoon_receipt::batch`). Each receipt names the certificate
//! current when it was signed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cocoon_receipt::{PreparedReceipt, ProxyIdentity, ReceiptBody, ReceiptSigner, SignedReceipt};
use cocoon_tee::RaTlsVerifier;
use cocoon_transport::NodeCredentials;
use tokio::sync::{mpsc, oneshot};

/// Signs receipts group-commit style, on a signer task of its own: a
/// receipt that finds the signer idle is signed at once, alone; those
/// queued while it signs are signed together next, under one signature.
/// Nothing waits on a timer: an idle worker adds no delay, and a busy one
/// shares each signature among exactly the receipts that queued behind the
/// previous one.
pub(crate) struct ReceiptBatcher {
    /// The signer task's queue, started with the first receipt.
    queue: OnceLock<mpsc::UnboundedSender<Waiting>>,
    counts: Arc<Counts>,
}

/// Receipts signed, and the signatures that covered them.
#[derive(Default)]
struct Counts {
    receipts: AtomicU64,
    signatures: AtomicU64,
}

type Waiting = (
    Arc<ReceiptSigner>,
    PreparedReceipt,
    oneshot::Sender<SignedReceipt>,
);

impl ReceiptBatcher {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ReceiptBatcher {
            queue: OnceLock::new(),
            counts: Arc::default(),
        })
    }

    /// Receipts signed so far, and the signatures that covered them.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.counts.receipts.load(Ordering::Relaxed),
            self.counts.signatures.load(Ordering::Relaxed),
        )
    }

    /// Signs `body` with `signer`: at once if the signer is idle, else in
    /// the batch it signs next.
    pub(crate) async fn sign(
        &self,
        signer: &Arc<ReceiptSigner>,
        body: ReceiptBody,
    ) -> Result<SignedReceipt, cocoon_receipt::ReceiptError> {
        let prepared = signer.prepare(body)?;
        let (tx, rx) = oneshot::channel();
        let queue = self.queue.get_or_init(|| {
            let (queue, waiting) = mpsc::unbounded_channel();
            tokio::spawn(sign_queued(waiting, self.counts.clone()));
            queue
        });
        let dropped =
            || cocoon_receipt::ReceiptError::Malformed("the receipt signer stopped".into());
        queue
            .send((signer.clone(), prepared, tx))
            .map_err(|_| dropped())?;
        rx.await.map_err(|_| dropped())
    }
}

/// The signer task: takes every receipt queued, signs them (one signature
/// per run of receipts naming the same certificate), and starts over; ends
/// when the batcher is dropped.
async fn sign_queued(mut queue: mpsc::UnboundedReceiver<Waiting>, counts: Arc<Counts>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = queue.try_recv() {
            batch.push(more);
        }
        // A certificate rotated while receipts waited: each is signed
        // with the key of the certificate it names.
        let mut rest = batch.into_iter().peekable();
        while let Some((signer, prepared, tx)) = rest.next() {
            let mut group = vec![(prepared, tx)];
            while let Some((_, p, t)) = rest.next_if(|(s, _, _)| Arc::ptr_eq(s, &signer)) {
                group.push((p, t));
            }
            deliver(&counts, &signer, group);
        }
    }
}

fn deliver(
    counts: &Counts,
    signer: &ReceiptSigner,
    waiting: Vec<(PreparedReceipt, oneshot::Sender<SignedReceipt>)>,
) {
    let n = waiting.len();
    let (prepared, senders): (Vec<_>, Vec<_>) = waiting.into_iter().unzip();
    if n > 1 {
        tracing::debug!(receipts = n, "signing a batch of receipts");
    }
    counts.receipts.fetch_add(n as u64, Ordering::Relaxed);
    counts.signatures.fetch_add(
        n.div_ceil(cocoon_receipt::batch::MAX_BATCH) as u64,
        Ordering::Relaxed,
    );
    for (signed, tx) in signer.sign_batch(prepared).into_iter().zip(senders) {
        // An answer abandoned meanwhile no longer needs its receipt.
        let _ = tx.send(signed);
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
    ) -> Self {
        ReceiptKeys {
            credentials,
            receipt_key,
            verifier,
            signer: Mutex::new(None),
            proxy: Mutex::default(),
            batcher: ReceiptBatcher::new(),
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
    use std::time::Duration;
    use tokio::time::Instant;

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
            e2e_key: None,
            region: None,
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

    #[tokio::test(start_paused = true)]
    async fn an_idle_worker_signs_each_receipt_at_once_and_alone() {
        let signer = signer();
        let batcher = ReceiptBatcher::new();
        let t = Instant::now();
        for i in 0..3 {
            let r = batcher.sign(&signer, body(i)).await.unwrap();
            assert!(r.batch.is_none(), "signed alone");
        }
        assert_eq!(t.elapsed(), Duration::ZERO, "no receipt waited");
        assert_eq!(batcher.counts(), (3, 3));
    }

    // One thread: the signer task runs only when the test yields, so the
    // receipts finished meanwhile are queued behind it, as on a busy worker.
    #[tokio::test(start_paused = true)]
    async fn receipts_queued_while_the_signer_is_busy_share_the_next_signature() {
        let signer = signer();
        let batcher = ReceiptBatcher::new();
        let t = Instant::now();
        let batch =
            futures_util::future::join_all((0..5).map(|i| batcher.sign(&signer, body(i)))).await;
        let batch: Vec<SignedReceipt> = batch.into_iter().map(Result::unwrap).collect();
        assert_eq!(t.elapsed(), Duration::ZERO, "no timer");
        assert!(batch.iter().all(|r| r.signature == batch[0].signature));
        let indices: Vec<u32> = batch
            .iter()
            .map(|r| r.batch.as_ref().unwrap().index)
            .collect();
        assert_eq!(indices, [0, 1, 2, 3, 4], "in the order they finished");
        assert_eq!(batcher.counts(), (5, 1), "five receipts, one signature");
        let next = batcher.sign(&signer, body(9)).await.unwrap();
        assert!(next.batch.is_none(), "an idle signer signs one alone");
        assert_eq!(batcher.counts(), (6, 2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_receipts_all_verify_and_never_cost_more_signatures_than_receipts() {
        let signer = signer();
        let batcher = ReceiptBatcher::new();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let (b, s) = (batcher.clone(), signer.clone());
                tokio::spawn(async move { b.sign(&s, body(i)).await.unwrap() })
            })
            .collect();
        for t in tasks {
            let r = t.await.unwrap();
            assert_eq!(
                r.receipt.worker_certificate_sha256,
                signer.certificate_sha256()
            );
        }
        let (receipts, signatures) = batcher.counts();
        assert_eq!(receipts, 200);
        assert!((1..=200).contains(&signatures), "{signatures}");
    }
}
