//! Connected workers and the choice of a worker for a request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use cocoon_core::tee::TcbStatus;
use cocoon_core::trust::{TrustOffer, TrustRequirements};
use cocoon_core::{Coefficient, ModelHash, ModelName, Region, RequestId};
use cocoon_proto::{ProxyMessage, WorkerEvent};
use cocoon_tee::{ImageHash, TeeKind};
use cocoon_telemetry::WorkerLoad;
use tokio::sync::mpsc;

use crate::admission::{AdmissionQueue, QueueLimits};
use crate::worker_id::{Owner, WorkerId};

/// What the proxy sends to a worker's session stream.
pub(crate) type Outbound = mpsc::Sender<Result<ProxyMessage, tonic::Status>>;

/// Prior for a worker's average request duration until it has finished a
/// request; only its ordering relative to measured workers matters.
const PRIOR_MICROS: u64 = 1_000_000;

/// One connected worker session.
#[derive(Debug)]
pub struct WorkerHandle {
    /// Connection serial, unique within this proxy run.
    pub serial: u64,
    /// Who the worker is, as proved when it connected.
    pub identity: WorkerId,
    /// The name the worker announced: a label for people, proving nothing.
    pub name: String,
    /// The model it serves.
    pub model: ModelName,
    /// SHA-256 of the weights; `None` if the worker cannot tell.
    pub model_hash: Option<ModelHash>,
    /// The TEE kind its RA-TLS evidence proved; `None` without attestation.
    pub tee: Option<TeeKind>,
    /// The image hash its evidence proved; `None` without attestation.
    pub image_hash: Option<ImageHash>,
    /// The key its attested claims name for end-to-end requests; only
    /// requests sealed to it may go to it sealed.
    pub e2e_key: Option<[u8; 32]>,
    /// Its attested GPUs, drivers and VBIOS, as one string; `None` when
    /// its hardware is unknown.
    pub hardware: Option<String>,
    /// What it offers a request's trust requirements.
    pub offer: TrustOffer,
    /// Where its earnings go, when the proxy charges.
    pub payee: Option<tycho_types::models::StdAddr>,
    coefficient: AtomicU32,
    max_active: u32,
    running: AtomicU32,
    /// Its identity's record, shared by its sessions, kept across them.
    record: Arc<RoutingRecord>,
    closed: AtomicBool,
    /// SHA-256 of the certificate its receipts are signed with; empty
    /// without one.
    certificate: Mutex<String>,
    outbound: Outbound,
    pending: Mutex<HashMap<String, Waiter>>,
}

/// How a worker identity's requests went, across its sessions: what
/// routing prefers and avoids, so a worker cannot shed a bad record by
/// reconnecting.
#[derive(Debug, Default)]
pub(crate) struct RoutingRecord {
    total: AtomicU64,
    failed: AtomicU64,
    avg_micros: AtomicU64,
    /// Moving average of the time to an answer's first byte, as relayed.
    avg_ttft_micros: AtomicU64,
}

/// What a worker runs, as far as the proxy knows it: the weights it
/// announced and, under RA-TLS, the TEE and image its evidence proved.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// SHA-256 of the weights, if the worker can tell.
    pub model_hash: Option<ModelHash>,
    /// TEE kind, under attestation.
    pub tee: Option<TeeKind>,
    /// Image hash, under attestation.
    pub image_hash: Option<ImageHash>,
    /// Its end-to-end key, under attestation.
    pub e2e_key: Option<[u8; 32]>,
    /// Its platform's TCB status, under attestation.
    pub tcb: TcbStatus,
    /// Its attested GPU, described; `None` without one.
    pub gpu: Option<String>,
    /// The region its claims name.
    pub region: Option<Region>,
    /// Whether it joined the open tier (no TEE).
    pub open: bool,
    /// Every attested GPU, with its driver and VBIOS, described as one
    /// string; `None` without GPU evidence (hardware unknown).
    pub hardware: Option<String>,
}

/// A request waiting for a worker's events.
#[derive(Debug)]
struct Waiter {
    events: mpsc::Sender<WorkerEvent>,
    overflow: Arc<Overflow>,
}

/// Raised when a request's client fell so far behind that its queue filled
/// up and the request was dropped; wakes the relay even while it is waiting
/// on that client.
#[derive(Debug, Default)]
struct Overflow {
    raised: AtomicBool,
    notify: tokio::sync::Notify,
}

/// What a worker offers in its hello: a model, at a price, so many at once.
#[derive(Debug, Clone)]
pub(crate) struct Offer {
    pub(crate) model: ModelName,
    pub(crate) provenance: Provenance,
    pub(crate) coefficient: Coefficient,
    pub(crate) max_active: u32,
}

impl WorkerHandle {
    pub(crate) fn new(
        serial: u64,
        identity: WorkerId,
        name: String,
        Offer {
            model,
            provenance:
                Provenance {
                    model_hash,
                    tee,
                    image_hash,
                    e2e_key,
                    tcb,
                    gpu,
                    region,
                    open,
                    hardware,
                },
            coefficient,
            max_active,
        }: Offer,
        outbound: Outbound,
    ) -> Self {
        WorkerHandle {
            hardware,
            offer: TrustOffer {
                open,
                tee,
                tcb,
                gpu,
                region,
            },
            serial,
            name,
            record: Arc::default(),
            identity,
            model,
            model_hash,
            tee,
            image_hash,
            e2e_key,
            payee: None,
            coefficient: AtomicU32::new(coefficient.per_mille()),
            max_active,
            running: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            certificate: Mutex::new(String::new()),
            outbound,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Names where the worker's earnings go.
    pub(crate) fn with_payee(mut self, payee: Option<tycho_types::models::StdAddr>) -> Self {
        self.payee = payee;
        self
    }

    /// SHA-256 (hex) of the certificate that signs its receipts now.
    pub fn certificate_sha256(&self) -> String {
        self.certificate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_certificate(&self, sha256: String) {
        *self.certificate.lock().unwrap_or_else(|p| p.into_inner()) = sha256;
    }

    /// Current price coefficient.
    pub fn coefficient(&self) -> Coefficient {
        // Only ever stored from a `Coefficient`.
        Coefficient::new(u64::from(self.coefficient.load(Ordering::Relaxed)))
            .unwrap_or(Coefficient::ONE)
    }

    pub(crate) fn set_coefficient(&self, c: Coefficient) {
        self.coefficient.store(c.per_mille(), Ordering::Relaxed);
    }

    /// Who stands behind it.
    pub fn owner(&self) -> Owner {
        self.identity.owner()
    }

    /// Whether more than one in ten of its identity's requests failed on
    /// it (over at least ten requests): dispatch errors, a lost session,
    /// engine failures that sent the request elsewhere.
    pub fn unreliable(&self) -> bool {
        let total = self.record.total.load(Ordering::Relaxed);
        total >= 10 && self.record.failed.load(Ordering::Relaxed) * 10 > total
    }

    /// Most requests it runs at once.
    pub fn max_active(&self) -> u32 {
        self.max_active
    }

    /// Requests running on it now.
    pub fn running(&self) -> u32 {
        self.running.load(Ordering::Relaxed)
    }

    fn avg(&self) -> u64 {
        match self.record.avg_micros.load(Ordering::Relaxed) {
            0 => PRIOR_MICROS,
            n => n,
        }
    }

    /// Claims one of its slots if it has a free one.
    fn try_reserve(&self) -> bool {
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
                (r < self.max_active).then_some(r + 1)
            })
            .is_ok()
    }

    /// Sends a message to the worker; false if its session is gone.
    pub(crate) async fn send(&self, msg: ProxyMessage) -> bool {
        !self.closed.load(Ordering::Acquire) && self.outbound.send(Ok(msg)).await.is_ok()
    }

    /// Routes an event from the worker to the request waiting for it.
    ///
    /// Never waits: one session carries every request of the worker, so a
    /// client that stops reading must not stall the others. A request whose
    /// queue is full is dropped instead (its relay sees the overflow).
    pub(crate) fn deliver(&self, event: WorkerEvent) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let Some(waiter) = pending.get(event.request_id.as_str()) else {
            tracing::debug!(request_id = %event.request_id, "event for a request no longer waiting");
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(event)) = waiter.events.try_send(event) {
            waiter.overflow.raised.store(true, Ordering::Release);
            waiter.overflow.notify.notify_one();
            pending.remove(event.request_id.as_str());
            tracing::warn!(request_id = %event.request_id, worker = %self.name, "client is not reading its answer; dropping the request");
        }
    }

    /// Marks the session over: every waiting request sees its channel close.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Load figures for stats pages.
    pub fn load(&self) -> WorkerLoad {
        WorkerLoad {
            id: self.name.clone(),
            identity: self.identity.to_string(),
            model: self.model.to_string(),
            coefficient: self.coefficient().per_mille(),
            running: self.running(),
            max_active: self.max_active,
            total: self.record.total.load(Ordering::Relaxed),
            failed: self.record.failed.load(Ordering::Relaxed),
            avg_latency_ms: self.record.avg_micros.load(Ordering::Relaxed) as f64 / 1000.0,
            avg_ttft_ms: self.record.avg_ttft_micros.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}

/// A request's claim on a worker slot. Dropping it frees the slot and stops
/// routing the worker's events for the request.
#[derive(Debug)]
pub struct Lease {
    /// The worker.
    pub worker: Arc<WorkerHandle>,
    request_id: String,
    overflow: Arc<Overflow>,
    started: std::time::Instant,
    outcome: Option<bool>,
    admission: Arc<AdmissionQueue>,
    /// Given back unused: no statistics, no wake.
    unused: bool,
    /// The answer's first byte was relayed (its time recorded).
    first_byte: AtomicBool,
}

impl Lease {
    /// The lease of a slot already claimed on `worker`: its events for
    /// `request_id` go to `events` from now on.
    fn start(
        worker: Arc<WorkerHandle>,
        request_id: &RequestId,
        events: mpsc::Sender<WorkerEvent>,
        admission: Arc<AdmissionQueue>,
    ) -> Lease {
        worker.record.total.fetch_add(1, Ordering::Relaxed);
        let overflow = Arc::new(Overflow::default());
        let waiter = Waiter {
            events,
            overflow: overflow.clone(),
        };
        worker
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request_id.as_str().to_string(), waiter);
        Lease {
            worker,
            request_id: request_id.as_str().to_string(),
            overflow,
            started: std::time::Instant::now(),
            outcome: None,
            admission,
            unused: false,
            first_byte: AtomicBool::new(false),
        }
    }

    /// The id the worker's events for this request carry.
    pub(crate) fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Records the time to the answer's first byte on the worker (once).
    pub fn first_byte(&self) {
        if !self.first_byte.swap(true, Ordering::Relaxed) {
            moving_average(
                &self.worker.record.avg_ttft_micros,
                self.started.elapsed().as_micros() as u64,
            );
        }
    }

    /// Gives the slot back without having used it: the worker's
    /// statistics stay as they were and the line is not woken (the caller
    /// claimed and freed it within one selection, so no slot changed hands).
    pub(crate) fn give_back(mut self) {
        self.unused = true;
    }

    /// Whether the request was dropped because its client stopped reading.
    pub fn overflowed(&self) -> bool {
        self.overflow.raised.load(Ordering::Acquire)
    }

    /// Resolves when the request is dropped for overflow (at once if it
    /// already was).
    pub async fn overflow(&self) {
        if !self.overflowed() {
            self.overflow.notify.notified().await;
        }
    }

    /// Records the outcome used for the worker's statistics.
    pub fn finish(&mut self, success: bool) {
        self.outcome = Some(success);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let w = &self.worker;
        w.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.request_id);
        w.running.fetch_sub(1, Ordering::AcqRel);
        if self.unused {
            w.record.total.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        self.admission.wake(w.model.as_str());
        match self.outcome {
            Some(true) => moving_average(
                &w.record.avg_micros,
                self.started.elapsed().as_micros() as u64,
            ),
            Some(false) | None => {
                w.record.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The distinct values, sorted.
fn distinct(values: impl Iterator<Item = String>) -> Vec<String> {
    let set: std::collections::BTreeSet<String> = values.collect();
    set.into_iter().collect()
}

/// The median of the averages that have a sample; 0 when none has.
fn median_sample<'a>(averages: impl Iterator<Item = &'a AtomicU64>) -> u64 {
    let mut v: Vec<u64> = averages
        .map(|a| a.load(Ordering::Relaxed))
        .filter(|&x| x > 0)
        .collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Exponential moving average, weight 1/5 to the new sample; 0 means no
/// sample yet.
fn moving_average(average: &AtomicU64, sample: u64) {
    let _ = average.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
        Some(if old == 0 {
            sample.max(1)
        } else {
            (old * 4 + sample) / 5
        })
    });
}

/// Why no worker could take a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoWorker {
    /// Nobody serves the model.
    #[error("no worker serves model {model:?}")]
    NoWorkersForModel {
        /// The model asked for.
        model: String,
    },
    /// Every worker within the price limit is at capacity.
    #[error("all {count} workers for model {model:?} within the price limit are busy")]
    AllBusy {
        /// The model asked for.
        model: String,
        /// Workers that were considered.
        count: usize,
    },
    /// Every worker costs more than the client accepts.
    #[error("no worker for model {model:?} within max coefficient {max}; the cheapest available coefficient is {cheapest}")]
    TooExpensive {
        /// The model asked for.
        model: String,
        /// The client's limit.
        max: u32,
        /// The lowest coefficient on offer.
        cheapest: u32,
    },
    /// No worker serving the model meets the request's trust requirements.
    #[error(transparent)]
    Unmet(Box<cocoon_core::trust::Shortfall>),
    /// A sealed request's workers are gone: none of those serving the
    /// model holds a key it was sealed to.
    #[error("none of the {serving} workers serving model {model:?} holds a key this request was sealed to; the client's roster is out of date")]
    NotSealedTo {
        /// The model asked for.
        model: String,
        /// Workers serving it.
        serving: usize,
    },
}

/// What a request asks of the worker that runs it.
#[derive(Debug, Clone, Copy)]
pub struct Demand<'a> {
    /// The model.
    pub model: &'a str,
    /// Highest price coefficient accepted (per-mille); 0 = any.
    pub max_coefficient: u32,
    /// Owners not to pick (tried already, or replicas' owners).
    pub exclude: &'a [Owner],
    /// For a sealed request: the only workers' keys that may run it.
    pub sealed_to: Option<&'a [[u8; 32]]>,
    /// What the worker must offer.
    pub trust: &'a TrustRequirements,
}

/// Every connected worker, by model, and the requests waiting for one.
#[derive(Debug)]
pub struct WorkerRegistry {
    by_model: RwLock<HashMap<ModelName, Vec<Arc<WorkerHandle>>>>,
    /// Every identity's routing record, kept while it is away.
    records: Mutex<HashMap<WorkerId, Arc<RoutingRecord>>>,
    next_serial: AtomicU64,
    rotation: AtomicU64,
    admission: Arc<AdmissionQueue>,
    reputation: crate::reputation::Reputation,
}

impl Default for WorkerRegistry {
    fn default() -> Self {
        WorkerRegistry::new(QueueLimits::default())
    }
}

impl WorkerRegistry {
    /// An empty registry whose busy workers queue requests within `limits`.
    pub fn new(limits: QueueLimits) -> Self {
        WorkerRegistry {
            by_model: RwLock::new(HashMap::new()),
            records: Mutex::default(),
            next_serial: AtomicU64::new(0),
            rotation: AtomicU64::new(0),
            reputation: Default::default(),
            admission: Arc::new(AdmissionQueue::new(limits)),
        }
    }

    /// The lines of requests waiting for a worker slot.
    /// What compared answers showed of each worker.
    pub fn reputation(&self) -> &crate::reputation::Reputation {
        &self.reputation
    }

    pub(crate) fn admission(&self) -> &Arc<AdmissionQueue> {
        &self.admission
    }

    pub(crate) fn next_serial(&self) -> u64 {
        self.next_serial.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Adds a worker session, under its identity's routing record.
    pub fn insert(&self, mut w: WorkerHandle) -> Arc<WorkerHandle> {
        w.record = self
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(w.identity.clone())
            .or_default()
            .clone();
        let w = Arc::new(w);
        let model = w.model.to_string();
        let added = w.clone();
        let mut map = self.by_model.write().unwrap_or_else(|p| p.into_inner());
        map.entry(w.model.clone()).or_default().push(w);
        drop(map);
        self.admission.wake(&model);
        added
    }

    /// Removes a worker and fails its waiting requests.
    pub fn remove(&self, w: &WorkerHandle) {
        w.close();
        let mut map = self.by_model.write().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = map.get_mut(&w.model) {
            list.retain(|x| x.serial != w.serial);
            if list.is_empty() {
                map.remove(&w.model);
            }
        }
        drop(map);
        // Whoever waits learns whether anyone still serves the model.
        self.admission.wake(w.model.as_str());
    }

    /// Every worker, for stats and listings.
    pub fn all(&self) -> Vec<Arc<WorkerHandle>> {
        let map = self.by_model.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = map.values().flatten().cloned().collect();
        v.sort_by_key(|w| w.serial);
        v
    }

    /// Picks a worker for `demand.model` and claims a slot on it.
    ///
    /// Workers above the price limit, at capacity, of an owner in
    /// `demand.exclude`, not meeting the trust requirements, or, for a
    /// sealed request, without a key it was sealed to are skipped; among
    /// the rest the one with the least `running × average duration` wins,
    /// ties broken in rotation so idle workers share the load.
    pub fn select(
        &self,
        demand: &Demand<'_>,
        request_id: &RequestId,
        events: mpsc::Sender<WorkerEvent>,
    ) -> Result<Lease, NoWorker> {
        let model = demand.model;
        let max_coefficient = demand.max_coefficient;
        let mut candidates = self.candidates(model, demand.exclude);
        if candidates.is_empty() {
            return Err(NoWorker::NoWorkersForModel {
                model: model.to_string(),
            });
        }
        (demand.trust)
            .keep_meeting(model, &mut candidates, |w| {
                (&w.offer, w.coefficient().per_mille())
            })
            .map_err(|s| NoWorker::Unmet(Box::new(s)))?;
        if let Some(keys) = demand.sealed_to {
            let serving = candidates.len();
            candidates.retain(|w| w.e2e_key.is_some_and(|k| keys.contains(&k)));
            if candidates.is_empty() {
                return Err(NoWorker::NotSealedTo {
                    model: model.to_string(),
                    serving,
                });
            }
        }
        let affordable: Vec<&Arc<WorkerHandle>> = candidates
            .iter()
            .filter(|w| max_coefficient == 0 || w.coefficient().per_mille() <= max_coefficient)
            .collect();
        if affordable.is_empty() {
            let cheapest = candidates
                .iter()
                .map(|w| w.coefficient().per_mille())
                .min()
                .unwrap_or(0);
            return Err(NoWorker::TooExpensive {
                model: model.to_string(),
                max: max_coefficient,
                cheapest,
            });
        }
        let Some(worker) = self.claim_least_loaded(&affordable) else {
            return Err(NoWorker::AllBusy {
                model: model.to_string(),
                count: affordable.len(),
            });
        };
        Ok(Lease::start(
            worker,
            request_id,
            events,
            self.admission.clone(),
        ))
    }

    /// Claims a slot on a free worker serving `model` with the weights
    /// `hash`, of an owner not in `exclude`, without waiting; `None` if
    /// none is free.
    pub(crate) fn select_same_weights(
        &self,
        demand: &Demand<'_>,
        hash: ModelHash,
        request_id: &RequestId,
        events: mpsc::Sender<WorkerEvent>,
    ) -> Option<Lease> {
        let same: Vec<Arc<WorkerHandle>> = self
            .candidates(demand.model, demand.exclude)
            .into_iter()
            .filter(|w| w.model_hash == Some(hash) && demand.trust.unmet(&w.offer).is_empty())
            .collect();
        let refs: Vec<&Arc<WorkerHandle>> = same.iter().collect();
        let worker = self.claim_least_loaded(&refs)?;
        Some(Lease::start(
            worker,
            request_id,
            events,
            self.admission.clone(),
        ))
    }

    /// Seconds until a request behind `waiting` others may get a slot for
    /// `model`: the line's length over the slots serving it, times their
    /// mean request duration; at least 1.
    pub(crate) fn retry_after(&self, model: &str, waiting: usize) -> u32 {
        let workers = self.candidates(model, &[]);
        let slots: u64 = workers.iter().map(|w| u64::from(w.max_active)).sum();
        if slots == 0 {
            return 1;
        }
        let mean_micros = workers.iter().map(|w| w.avg()).sum::<u64>() / workers.len() as u64;
        let micros = (waiting as u64 + 1).saturating_mul(mean_micros) / slots;
        u32::try_from(micros.div_ceil(1_000_000))
            .unwrap_or(u32::MAX)
            .max(1)
    }

    /// Open sessions serving `model`, except those of owners in `exclude`,
    /// and except workers whose compared answers made them suspect while
    /// any other serves the model.
    fn candidates(&self, model: &str, exclude: &[Owner]) -> Vec<Arc<WorkerHandle>> {
        let Ok(key) = ModelName::new(model) else {
            return Vec::new();
        };
        let map = self.by_model.read().unwrap_or_else(|p| p.into_inner());
        let open: Vec<Arc<WorkerHandle>> = map
            .get(&key)
            .map(|l| {
                l.iter()
                    .filter(|w| !w.closed.load(Ordering::Acquire) && !exclude.contains(&w.owner()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let (trusted, suspect): (Vec<_>, Vec<_>) = open
            .into_iter()
            .partition(|w| !self.reputation.of(&w.identity).suspect());
        if trusted.is_empty() {
            suspect
        } else {
            trusted
        }
    }

    /// Claims a slot on the worker with the least `running × average
    /// duration`, ties broken in rotation so idle workers share the load;
    /// unreliable workers ([`WorkerHandle::unreliable`]) only when every
    /// reliable one is busy.
    fn claim_least_loaded(&self, workers: &[&Arc<WorkerHandle>]) -> Option<Arc<WorkerHandle>> {
        let turn = self.rotation.fetch_add(1, Ordering::Relaxed) as usize;
        let n = workers.len();
        // A slot can be taken by a concurrent request between scoring and
        // reserving; try the candidates in score order.
        let mut order: Vec<(bool, u128, usize)> = workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let score = w.running() as u128 * w.avg() as u128;
                (w.unreliable(), score, (i + n - turn % n) % n)
            })
            .collect();
        order.sort();
        order.into_iter().find_map(|(_, _, rotated)| {
            let w = workers[(rotated + turn) % n];
            w.try_reserve().then(|| w.clone())
        })
    }

    /// How many distinct owners serve `model` now.
    pub(crate) fn owners_serving(&self, model: &str) -> usize {
        let Ok(key) = ModelName::new(model) else {
            return 0;
        };
        let map = self.by_model.read().unwrap_or_else(|p| p.into_inner());
        let mut owners: Vec<Owner> = map
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|w| !w.closed.load(Ordering::Acquire))
            .map(|w| w.owner())
            .collect();
        owners.sort();
        owners.dedup();
        owners.len()
    }

    /// Per-model summary for `/v1/models`.
    pub fn models(&self) -> Vec<cocoon_proto::ModelInfo> {
        let map = self.by_model.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<cocoon_proto::ModelInfo> = map
            .iter()
            .filter(|(_, l)| !l.is_empty())
            .map(|(name, list)| {
                let mut coefs: Vec<u32> =
                    list.iter().map(|w| w.coefficient().per_mille()).collect();
                coefs.sort_unstable();
                let mut hashes: Vec<String> = list
                    .iter()
                    .filter_map(|w| w.model_hash.map(|h| h.to_hex()))
                    .collect();
                hashes.sort_unstable();
                hashes.dedup();
                // An identity with several sessions counts once.
                let mut identities: Vec<&Arc<WorkerHandle>> = list.iter().collect();
                identities.sort_by(|a, b| a.identity.cmp(&b.identity));
                identities.dedup_by(|a, b| a.identity == b.identity);
                let records: Vec<_> = identities
                    .iter()
                    .map(|w| self.reputation.of(&w.identity))
                    .collect();
                let routing = || identities.iter().map(|w| &w.record);
                cocoon_proto::ModelInfo {
                    compared_answers: records.iter().map(|r| r.agreed + r.dissented).sum(),
                    dissenting_answers: records.iter().map(|r| r.dissented).sum(),
                    avoided_workers: records.iter().filter(|r| r.suspect()).count() as u32,
                    requests: routing().map(|r| r.total.load(Ordering::Relaxed)).sum(),
                    failed_requests: routing().map(|r| r.failed.load(Ordering::Relaxed)).sum(),
                    median_latency_micros: median_sample(routing().map(|r| &r.avg_micros)),
                    median_ttft_micros: median_sample(routing().map(|r| &r.avg_ttft_micros)),
                    name: name.to_string(),
                    worker_count: list.len() as u32,
                    min_coefficient: coefs[0],
                    median_coefficient: coefs[coefs.len() / 2],
                    max_coefficient: coefs[coefs.len() - 1],
                    capacity: list.iter().map(|w| w.max_active).sum(),
                    running: list.iter().map(|w| w.running()).sum(),
                    model_hashes: hashes,
                    tees: distinct(list.iter().map(|w| match (w.offer.open, w.offer.tee) {
                        (true, _) => "open".to_owned(),
                        (false, Some(k)) => k.to_string(),
                        (false, None) => "unattested".to_owned(),
                    })),
                    gpus: distinct(list.iter().filter_map(|w| w.offer.gpu.clone())),
                    regions: distinct(
                        list.iter()
                            .filter_map(|w| w.offer.region.as_ref().map(Region::to_string)),
                    ),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(
        reg: &WorkerRegistry,
        id: &str,
        model: &str,
        coef: u64,
        max: u32,
    ) -> Arc<WorkerHandle> {
        let serial = reg.next_serial() + 1_000_000;
        session(reg, WorkerId::Unproven(serial), id, model, coef, max)
    }

    fn session(
        reg: &WorkerRegistry,
        identity: WorkerId,
        name: &str,
        model: &str,
        coef: u64,
        max: u32,
    ) -> Arc<WorkerHandle> {
        offering(reg, identity, name, model, coef, max, Provenance::default())
    }

    fn offering(
        reg: &WorkerRegistry,
        identity: WorkerId,
        name: &str,
        model: &str,
        coef: u64,
        max: u32,
        provenance: Provenance,
    ) -> Arc<WorkerHandle> {
        let (tx, rx) = mpsc::channel(8);
        std::mem::forget(rx);
        let offer = Offer {
            model: ModelName::new(model).unwrap(),
            provenance,
            coefficient: Coefficient::new(coef).unwrap(),
            max_active: max,
        };
        reg.insert(WorkerHandle::new(
            reg.next_serial(),
            identity,
            name.into(),
            offer,
            tx,
        ))
    }

    fn demand<'a>(model: &'a str, max: u32, exclude: &'a [Owner]) -> Demand<'a> {
        static PLAIN: std::sync::LazyLock<TrustRequirements> =
            std::sync::LazyLock::new(TrustRequirements::default);
        Demand {
            model,
            max_coefficient: max,
            exclude,
            sealed_to: None,
            trust: &PLAIN,
        }
    }

    fn pick(reg: &WorkerRegistry, model: &str, max: u32) -> Result<Lease, NoWorker> {
        let (tx, _rx) = mpsc::channel(1);
        reg.select(&demand(model, max, &[]), &RequestId::generate(), tx)
    }

    #[test]
    fn explains_why_nothing_qualifies() {
        let reg = WorkerRegistry::default();
        assert!(matches!(
            pick(&reg, "m", 0),
            Err(NoWorker::NoWorkersForModel { .. })
        ));
        worker(&reg, "a", "m", 1500, 1);
        worker(&reg, "b", "m", 1200, 1);
        let err = pick(&reg, "m", 1000).unwrap_err();
        assert_eq!(
            err,
            NoWorker::TooExpensive {
                model: "m".into(),
                max: 1000,
                cheapest: 1200
            }
        );
        assert!(err
            .to_string()
            .contains("cheapest available coefficient is 1200"));
        let _a = pick(&reg, "m", 0).unwrap();
        let _b = pick(&reg, "m", 0).unwrap();
        assert_eq!(
            pick(&reg, "m", 0).unwrap_err(),
            NoWorker::AllBusy {
                model: "m".into(),
                count: 2
            }
        );
    }

    #[test]
    fn respects_price_limit_and_frees_slots() {
        let reg = WorkerRegistry::default();
        let cheap = worker(&reg, "cheap", "m", 800, 2);
        worker(&reg, "dear", "m", 2000, 2);
        for _ in 0..5 {
            let l = pick(&reg, "m", 1000).unwrap();
            assert_eq!(l.worker.name, "cheap");
        }
        assert_eq!(cheap.running(), 0, "dropped leases free their slots");
    }

    #[test]
    fn unreliable_workers_only_when_the_reliable_are_busy() {
        let reg = WorkerRegistry::default();
        let flaky = worker(&reg, "flaky", "m", 1000, 4);
        let steady = worker(&reg, "steady", "m", 1000, 1);
        for _ in 0..10 {
            let mut l = pick(&reg, "m", 0).unwrap();
            if l.worker.name == "flaky" {
                l.finish(false);
            } else {
                l.finish(true);
            }
        }
        // Half its requests, at least, went to "flaky" and failed there.
        while flaky.record.total.load(Ordering::Relaxed) < 10 {
            let (tx, _rx) = mpsc::channel(1);
            let mut l = reg
                .select(
                    &demand("m", 0, &[steady.owner()]),
                    &RequestId::generate(),
                    tx,
                )
                .unwrap();
            assert_eq!(l.worker.name, "flaky");
            l.finish(false);
        }
        assert!(flaky.unreliable());
        let first = pick(&reg, "m", 0).unwrap();
        assert_eq!(first.worker.name, "steady", "the reliable worker first");
        let second = pick(&reg, "m", 0).unwrap();
        assert_eq!(
            second.worker.name, "flaky",
            "the unreliable one when the other is busy"
        );
    }

    #[test]
    fn an_identity_keeps_its_record_across_sessions_and_names() {
        let reg = WorkerRegistry::default();
        let key = WorkerId::ReceiptKey([9; 32]);
        let first = session(&reg, key.clone(), "first", "m", 1000, 4);
        for _ in 0..10 {
            pick(&reg, "m", 0).unwrap().finish(false);
        }
        assert!(first.unreliable());
        reg.remove(&first);
        let renamed = session(&reg, key.clone(), "renamed", "m", 1000, 4);
        assert!(renamed.unreliable(), "a new name does not clear the record");
        reg.reputation().record(&key, false);
        let other = session(&reg, WorkerId::ReceiptKey([8; 32]), "other", "m", 1000, 4);
        assert_eq!(pick(&reg, "m", 0).unwrap().worker.name, "other");
        // Two sessions of one identity are one owner.
        session(&reg, key.clone(), "again", "m", 1000, 4);
        assert_eq!(reg.owners_serving("m"), 2);
        let (tx, _rx) = mpsc::channel(1);
        let no = reg.select(
            &demand("m", 0, &[other.owner(), renamed.owner()]),
            &RequestId::generate(),
            tx,
        );
        assert!(
            matches!(no, Err(NoWorker::NoWorkersForModel { .. })),
            "{no:?}"
        );
    }

    #[test]
    fn prefers_least_loaded_and_rotates_ties() {
        let reg = WorkerRegistry::default();
        worker(&reg, "a", "m", 1000, 10);
        worker(&reg, "b", "m", 1000, 10);
        let mut held = Vec::new();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..10 {
            let l = pick(&reg, "m", 0).unwrap();
            *counts.entry(l.worker.name.clone()).or_default() += 1;
            held.push(l);
        }
        assert_eq!(counts["a"], 5, "load is spread evenly: {counts:?}");
        assert_eq!(counts["b"], 5);
    }

    #[test]
    fn updates_average_and_lists_models() {
        let reg = WorkerRegistry::default();
        let a = worker(&reg, "a", "m", 900, 3);
        worker(&reg, "b", "m", 1100, 3);
        worker(&reg, "c", "m", 1000, 3);
        worker(&reg, "x", "other", 1000, 1);
        let models = reg.models();
        assert_eq!(
            (
                models[0].median_latency_micros,
                models[0].median_ttft_micros
            ),
            (0, 0),
            "no sample before any answer"
        );
        let mut l = pick(&reg, "m", 0).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        l.first_byte();
        l.first_byte(); // recorded once
        l.finish(true);
        let served = l.worker.name.clone();
        drop(l);
        let loads: Vec<_> = reg.all().iter().map(|w| w.load()).collect();
        let load = loads.iter().find(|w| w.id == served).unwrap();
        assert!(
            load.avg_latency_ms >= 2.0 && load.avg_ttft_ms >= 2.0,
            "{load:?}"
        );
        assert!(load.avg_ttft_ms <= load.avg_latency_ms);
        let models = reg.models();
        assert_eq!(models.len(), 2);
        let m = &models[0];
        // One of three workers answered: the median is its average.
        assert!(
            m.median_ttft_micros
                .abs_diff((load.avg_ttft_ms * 1000.0).round() as u64)
                <= 1
        );
        assert!(m.median_latency_micros >= m.median_ttft_micros);
        assert_eq!(
            (
                m.worker_count,
                m.min_coefficient,
                m.median_coefficient,
                m.max_coefficient
            ),
            (3, 900, 1000, 1100)
        );
        assert_eq!(m.capacity, 9);
        reg.remove(&a);
        assert_eq!(reg.models()[0].worker_count, 2);
    }

    fn tier(reg: &WorkerRegistry, name: &str, coef: u64, provenance: Provenance) {
        let serial = reg.next_serial() + 1_000_000;
        offering(
            reg,
            WorkerId::Unproven(serial),
            name,
            "m",
            coef,
            4,
            provenance,
        );
    }

    fn tdx(tcb: TcbStatus, gpu: bool, region: &str) -> Provenance {
        Provenance {
            tee: Some(cocoon_core::tee::TeeKind::Tdx),
            tcb,
            gpu: gpu.then(|| "hopper GH100 A01".to_owned()),
            region: Some(Region::new(region).unwrap()),
            ..Provenance::default()
        }
    }

    fn open_worker() -> Provenance {
        Provenance {
            open: true,
            region: Some(Region::new("us").unwrap()),
            model_hash: Some(ModelHash::from_bytes([0; 32])),
            ..Provenance::default()
        }
    }

    fn pick_with(reg: &WorkerRegistry, trust: &TrustRequirements) -> Result<Lease, NoWorker> {
        let (tx, _rx) = mpsc::channel(1);
        let d = Demand {
            trust,
            ..demand("m", 0, &[])
        };
        reg.select(&d, &RequestId::generate(), tx)
    }

    #[test]
    fn trust_requirements_filter_workers_and_name_what_the_best_lacks() {
        let reg = WorkerRegistry::default();
        tier(
            &reg,
            "old-eu",
            1000,
            tdx(TcbStatus::OutOfDate, true, "eu-west"),
        );
        tier(
            &reg,
            "new-us",
            900,
            tdx(TcbStatus::UpToDate, true, "us-east"),
        );
        tier(&reg, "open", 300, open_worker());
        let strict = TrustRequirements {
            tee: Some([cocoon_core::tee::TeeKind::Tdx].into()),
            tcb: Some(TcbStatus::UpToDate),
            gpu: Some(true),
            regions: Some([Region::new("eu").unwrap()].into()),
            ..Default::default()
        };
        let err = pick_with(&reg, &strict).unwrap_err();
        let text = err.to_string();
        // Both TEE workers lack one requirement; the cheaper one is named.
        assert!(
            text.contains("regions: the request accepts [eu], the worker declared us-east"),
            "{text}"
        );
        assert!(
            text.contains("offers tdx (tcb up_to_date), attested GPU"),
            "{text}"
        );
        let eu = TrustRequirements {
            tcb: None,
            ..strict.clone()
        };
        for _ in 0..4 {
            assert_eq!(pick_with(&reg, &eu).unwrap().worker.name, "old-eu");
        }
    }

    #[test]
    fn a_confidential_request_never_reaches_an_open_worker() {
        let reg = WorkerRegistry::default();
        let open = {
            let serial = reg.next_serial() + 1_000_000;
            offering(
                &reg,
                WorkerId::Unproven(serial),
                "open",
                "m",
                300,
                8,
                open_worker(),
            )
        };
        let plain = TrustRequirements::default();
        let err = pick_with(&reg, &plain).unwrap_err();
        assert!(
            err.to_string().contains("open: the worker has no TEE"),
            "{err}"
        );
        // Not as a spot-check or replica either.
        let (tx, _rx) = mpsc::channel(1);
        let same = reg.select_same_weights(
            &demand("m", 0, &[]),
            ModelHash::from_bytes([0; 32]),
            &RequestId::generate(),
            tx,
        );
        assert!(same.is_none());
        // An opted-in request is served there; a TEE worker is preferred by
        // nothing but load and price.
        let opted = TrustRequirements {
            open: Some(true),
            ..Default::default()
        };
        assert_eq!(pick_with(&reg, &opted).unwrap().worker.name, "open");
        tier(&reg, "tdx", 1000, tdx(TcbStatus::UpToDate, false, "eu"));
        for _ in 0..8 {
            assert_eq!(pick_with(&reg, &plain).unwrap().worker.name, "tdx");
        }
        assert_eq!(open.running(), 0);
        let models = reg.models();
        assert_eq!(models[0].tees, vec!["open".to_owned(), "tdx".to_owned()]);
        assert_eq!(models[0].regions, vec!["eu".to_owned(), "us".to_owned()]);
    }

    #[test]
    fn exact_replay_needs_the_same_code_weights_and_hardware() {
        let reg = WorkerRegistry::default();
        let image: cocoon_tee::ImageHash = "11".repeat(32).parse().unwrap();
        let with = |gpu: bool, open: bool, image: Option<cocoon_tee::ImageHash>| {
            let serial = reg.next_serial() + 1_000_000;
            let p = Provenance {
                image_hash: image,
                model_hash: Some(ModelHash::from_bytes([3; 32])),
                gpu: gpu.then(|| "hopper GH100 A01".to_owned()),
                hardware: Some(
                    if gpu {
                        "1x hopper GH100 A01"
                    } else {
                        "1x blackwell GB100 A01"
                    }
                    .to_owned(),
                ),
                open,
                ..tdx(TcbStatus::UpToDate, gpu, "eu")
            };
            offering(&reg, WorkerId::Unproven(serial), "w", "m", 1000, 1, p)
        };
        let cpu = crate::slashing::replay_class(&with(false, false, Some(image)));
        assert!(cpu.is_some());
        let unknown = {
            let serial = reg.next_serial() + 1_000_000;
            let p = Provenance {
                image_hash: Some(image),
                model_hash: Some(ModelHash::from_bytes([3; 32])),
                ..tdx(TcbStatus::UpToDate, false, "eu")
            };
            offering(&reg, WorkerId::Unproven(serial), "u", "m", 1000, 1, p)
        };
        assert_eq!(
            crate::slashing::replay_class(&unknown),
            None,
            "without GPU evidence the hardware is unknown"
        );
        assert_eq!(
            cpu,
            crate::slashing::replay_class(&with(false, false, Some(image)))
        );
        let gpu = crate::slashing::replay_class(&with(true, false, Some(image)));
        assert_ne!(cpu, gpu, "another hardware class is no exact replay");
        assert_eq!(
            crate::slashing::replay_class(&with(false, true, Some(image))),
            None
        );
        assert_eq!(
            crate::slashing::replay_class(&with(false, false, None)),
            None
        );
    }
}
