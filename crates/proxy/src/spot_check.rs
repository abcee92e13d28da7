//! Spot-checks: the proxy re-runs a sample of answers on another worker
//! serving the same weights and compares what they say (each choice's text
//! and finish reason). Every newly seen worker's first answers are
//! checked, and a configurable share of the rest.
//!
//! Deterministic requests (temperature 0, or a seed) are re-run: an exact
//! replay must then give the same content on an honest worker. When the
//! two differ a third worker decides; each run's agreement or dissent goes
//! to its worker's reputation. Sampled answers are scored instead: another
//! worker with the same weights and an embedded engine computes how
//! surprising the answer is under the model at the request's temperature
//! (teacher forcing, one prefill); text the model would not have written —
//! another model's, or none's — fails. The checks are the network's cost:
//! they are not charged to the client; the proxy pays the checking worker
//! its fee for the run from its commission, as it would for a client's
//! request (a scoring run as a prefill of the prompt and the answer), and
//! sends it the voucher. Results per worker are in the proxy's `/stats`.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cocoon_core::{ModelHash, RequestId};
use cocoon_proto::{proxy_message, worker_event, InferRequest, ProxyMessage, WorkRequest};
use tokio::sync::mpsc;

use crate::registry::WorkerHandle;
use crate::reputation::PerWorker;
use crate::worker_id::{Owner, WorkerId};
use crate::Shared;

/// How many answers are checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpotCheckConfig {
    /// Share of answers re-run, 0 to 1.
    pub rate: f64,
    /// Answers of each newly seen worker that are always re-run.
    pub first_answers: u32,
}

impl Default for SpotCheckConfig {
    fn default() -> Self {
        SpotCheckConfig {
            rate: 0.01,
            first_answers: 1,
        }
    }
}

/// One worker's checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckRecord {
    /// Checks planned on its answers.
    pub planned: u64,
    /// Its answer was confirmed.
    pub passed: u64,
    /// Its answer was outvoted.
    pub failed: u64,
    /// Two answers differed and no third worker could decide.
    pub inconclusive: u64,
    /// No other worker with the same weights was free to re-run it.
    pub skipped: u64,
    /// Of the checks done, how many scored a sampled answer rather than
    /// replaying it.
    pub scored: u64,
    /// Checks this worker ran on other workers' answers, at the proxy's
    /// cost.
    pub checks_run: u64,
    /// Their fees, nanoton: paid from the commission, or due to the
    /// worker until it covers them (the worker's account says which).
    pub check_fees: u64,
}

impl std::fmt::Display for CheckRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} inconclusive, {} skipped ({} by scoring)",
            self.passed, self.failed, self.inconclusive, self.skipped, self.scored
        )?;
        if self.checks_run > 0 {
            write!(
                f,
                "; ran {} for others, fees {} nanoton",
                self.checks_run, self.check_fees
            )?;
        }
        Ok(())
    }
}

/// Deadline of one re-run.
const RERUN_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub(crate) struct SpotChecks {
    config: SpotCheckConfig,
    by_worker: PerWorker<CheckRecord>,
    draws: AtomicU64,
    seed: std::collections::hash_map::RandomState,
}

impl SpotChecks {
    pub(crate) fn new(config: SpotCheckConfig) -> Self {
        SpotChecks {
            config,
            by_worker: PerWorker::default(),
            draws: AtomicU64::new(0),
            seed: Default::default(),
        }
    }

    /// Whether to check the answer `worker` is about to give to `req`.
    pub(crate) fn wants(&self, worker: &WorkerHandle, req: &InferRequest) -> bool {
        if worker.model_hash.is_none() || req.replicas > 1 {
            return false;
        }
        let planned = self.of(&worker.identity).planned;
        let sampled =
            planned < u64::from(self.config.first_answers) || self.draw() < self.config.rate;
        if !sampled {
            return false;
        }
        self.update(&worker.identity, |r| r.planned += 1);
        true
    }

    fn draw(&self) -> f64 {
        let mut h = self.seed.build_hasher();
        h.write_u64(self.draws.fetch_add(1, Ordering::Relaxed));
        (h.finish() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn update(&self, worker: &WorkerId, f: impl FnOnce(&mut CheckRecord)) {
        self.by_worker.update(worker, f);
    }

    /// `worker`'s record.
    pub(crate) fn of(&self, worker: &WorkerId) -> CheckRecord {
        self.by_worker.of(worker)
    }

    /// Every record, by worker.
    pub(crate) fn all(&self) -> BTreeMap<WorkerId, CheckRecord> {
        self.by_worker.all()
    }
}

/// The answer a spot-check judges, as relayed.
pub(crate) struct Original {
    /// The worker that gave it.
    pub worker: Arc<WorkerHandle>,
    /// Its chunks.
    pub chunks: Vec<Bytes>,
    /// Its signed receipt (JSON).
    pub receipt: Bytes,
    /// Who paid for it: the client a wrong answer affected.
    pub payer: Option<tycho_types::models::StdAddr>,
}

/// One run of the request: the worker, the content of its answer and its
/// receipt.
struct Rerun {
    worker: Arc<WorkerHandle>,
    content: String,
    receipt: Bytes,
}

impl Rerun {
    fn view(&self) -> crate::slashing::Run<'_> {
        crate::slashing::Run {
            worker: &self.worker,
            receipt: &self.receipt,
            content: &self.content,
        }
    }
}

/// Re-runs `req` elsewhere and judges `original`'s answer. Runs in the
/// background, after the client has its answer. When the original is
/// outvoted by two re-runs that agree, the proxy signs slash evidence
/// against it on behalf of the client who got it.
pub(crate) async fn check(shared: Arc<Shared>, req: InferRequest, original: Original) {
    let checks = &shared.spot_checks;
    let Some(hash) = original.worker.model_hash else {
        return;
    };
    if !cocoon_receipt::digest::deterministic(&req.body) {
        return score_check(&shared, &req, hash, &original).await;
    }
    let mut answers = vec![Rerun {
        worker: original.worker.clone(),
        content: cocoon_receipt::digest::content(req.stream, &original.chunks),
        receipt: original.receipt.clone(),
    }];
    // Checkers are of other owners than the original's, and than each
    // other's: one owner's sessions are one witness.
    let mut exclude = vec![original.worker.owner()];
    // A re-run of the same request uses what the original did: the most a
    // checker is paid for, whatever usage it reports.
    let paid_up_to = receipt_usage(&original.receipt);
    // One re-run; a second only if the first disagrees.
    while answers.len() < 3 {
        let Some(run) = rerun(&shared, &req, hash, &exclude, paid_up_to).await else {
            break;
        };
        exclude.push(run.worker.owner());
        answers.push(run);
        if answers.len() == 2 && answers[0].content == answers[1].content {
            break;
        }
    }
    let id = &original.worker.identity;
    let reputation = shared.registry.reputation();
    match answers.len() {
        1 => checks.update(id, |r| r.skipped += 1),
        2 if answers[0].content == answers[1].content => {
            for a in &answers {
                reputation.record(&a.worker.identity, true);
            }
            checks.update(id, |r| r.passed += 1);
        }
        2 => {
            tracing::warn!(worker = %original.worker.name, %id, checker = %answers[1].worker.name, "a spot-check disagreed and no third worker could decide");
            checks.update(id, |r| r.inconclusive += 1);
        }
        _ => {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for a in &answers {
                *counts.entry(a.content.as_str()).or_default() += 1;
            }
            let majority = counts
                .iter()
                .find(|(_, n)| **n >= 2)
                .map(|(c, _)| c.to_string());
            let Some(majority) = majority else {
                checks.update(id, |r| r.inconclusive += 1);
                return;
            };
            for a in &answers {
                let agrees = a.content == majority;
                reputation.record(&a.worker.identity, agrees);
                if !agrees {
                    tracing::warn!(worker = %a.worker.name, "a spot-check outvoted this worker's answer");
                }
            }
            let passed = answers[0].content == majority;
            checks.update(id, |r| if passed { r.passed += 1 } else { r.failed += 1 });
            if let (false, Some(payer)) = (passed, &original.payer) {
                let (accused, first, second) =
                    (answers[0].view(), answers[1].view(), answers[2].view());
                crate::slashing::on_dissent(&shared, &accused, [&first, &second], payer);
            }
        }
    }
}

/// Surprise above the model's own, per token (nats), beyond which a
/// sampled answer fails scoring. The model's own samples score about 0
/// (within ±0.3 for SmolLM2-135M at temperatures up to 1); text it did not
/// write scores 1.5 and more (`cargo run -p cocoon-engine --example score`).
pub(crate) const MAX_EXCESS_SURPRISE: f64 = 1.0;
/// Fewer answer tokens than this prove nothing either way.
const MIN_SCORED_TOKENS: u32 = 16;
/// Above this temperature the model's own samples are as surprising as
/// noise, and scoring cannot tell them apart.
const MAX_SCORED_TEMPERATURE: f64 = 1.0;
/// Workers asked to score before the check is given up.
const SCORERS: usize = 2;

/// Scores a sampled answer under the same weights on another worker.
async fn score_check(shared: &Shared, req: &InferRequest, hash: ModelHash, original: &Original) {
    let checks = &shared.spot_checks;
    let id = &original.worker.identity;
    let temperature = serde_json::from_slice::<serde_json::Value>(&req.body)
        .ok()
        .and_then(|v| v["temperature"].as_f64())
        .unwrap_or(1.0);
    let answer = cocoon_receipt::digest::first_choice_text(req.stream, &original.chunks);
    if temperature > MAX_SCORED_TEMPERATURE || answer.is_empty() {
        checks.update(id, |r| r.inconclusive += 1);
        return;
    }
    let mut exclude = vec![original.worker.owner()];
    for _ in 0..SCORERS {
        let Some((scorer, result)) = score_on(shared, req, &answer, hash, &exclude).await else {
            break;
        };
        exclude.push(scorer.owner());
        let Some(s) = result else {
            continue; // this worker cannot score (an upstream engine)
        };
        if let Some(u) = receipt_usage(&original.receipt) {
            // One prefill over the prompt and the answer.
            let prefill = cocoon_core::Usage {
                prompt: u.prompt + u.completion,
                ..Default::default()
            };
            pay_checker(shared, &scorer, &prefill).await;
        }
        if s.tokens < MIN_SCORED_TOKENS {
            checks.update(id, |r| r.inconclusive += 1);
            return;
        }
        let passed = s.excess_surprise <= MAX_EXCESS_SURPRISE;
        shared.registry.reputation().record(id, passed);
        if !passed {
            tracing::warn!(worker = %original.worker.name, %id, scorer = %scorer.name, excess_surprise = s.excess_surprise, tokens = s.tokens, "a sampled answer failed scoring under the model it claims");
        }
        checks.update(id, |r| {
            r.scored += 1;
            if passed {
                r.passed += 1
            } else {
                r.failed += 1
            }
        });
        return;
    }
    checks.update(id, |r| r.skipped += 1);
}

/// A slot on a free worker serving the same weights, not in `exclude`,
/// under a fresh request id whose events arrive on the receiver.
fn claim_checker(
    shared: &Shared,
    req: &InferRequest,
    hash: ModelHash,
    exclude: &[Owner],
) -> Option<(
    RequestId,
    crate::registry::Lease,
    mpsc::Receiver<cocoon_proto::WorkerEvent>,
)> {
    let id = RequestId::generate();
    let (tx, events) = mpsc::channel(crate::relay::EVENT_QUEUE);
    let lease = shared
        .registry
        .select_same_weights(&req.model, hash, exclude, &id, tx)?;
    Some((id, lease, events))
}

/// Asks a free worker serving the same weights, not in `exclude`, to score
/// `answer`: the worker and its score (`None` if it could not), or `None`
/// when no such worker is free.
async fn score_on(
    shared: &Shared,
    req: &InferRequest,
    answer: &str,
    hash: ModelHash,
    exclude: &[Owner],
) -> Option<(Arc<WorkerHandle>, Option<cocoon_proto::ScoreResult>)> {
    let (id, mut lease, mut events) = claim_checker(shared, req, hash, exclude)?;
    let worker = lease.worker.clone();
    let sent = worker
        .send(ProxyMessage {
            msg: Some(proxy_message::Msg::Score(cocoon_proto::ScoreRequest {
                request_id: id.to_string(),
                endpoint: req.endpoint,
                body: req.body.clone(),
                answer: answer.to_string(),
            })),
        })
        .await;
    if !sent {
        lease.finish(false);
        return Some((worker, None));
    }
    let result = tokio::time::timeout(RERUN_TIMEOUT, async {
        while let Some(ev) = events.recv().await {
            match ev.event {
                Some(worker_event::Event::Scored(s)) => return Some(s),
                Some(worker_event::Event::Error(e)) => {
                    tracing::info!(scorer = %worker.name, error = %e.message, "a worker could not score an answer");
                    return None;
                }
                _ => {}
            }
        }
        None
    })
    .await
    .unwrap_or(None);
    lease.finish(result.is_some());
    Some((worker, result))
}

/// Runs `req` on a free worker serving the same weights, not in
/// `exclude`; its serial, name and answer's content, or `None` when none
/// could. The worker is paid for the usage it reports, at most
/// `paid_up_to` (the original's); not at all when that is unknown.
async fn rerun(
    shared: &Shared,
    req: &InferRequest,
    hash: ModelHash,
    exclude: &[Owner],
    paid_up_to: Option<cocoon_core::Usage>,
) -> Option<Rerun> {
    let (id, mut lease, mut events) = claim_checker(shared, req, hash, exclude)?;
    let worker = lease.worker.clone();
    let sent = worker
        .send(ProxyMessage {
            msg: Some(proxy_message::Msg::Request(WorkRequest {
                request_id: id.to_string(),
                endpoint: req.endpoint,
                body: req.body.clone(),
                stream: req.stream,
                timeout_ms: RERUN_TIMEOUT.as_millis() as u64,
                prices: None,
                coefficient: 0,
            })),
        })
        .await;
    if !sent {
        return None;
    }
    let mut chunks = Vec::new();
    let mut receipt = Bytes::new();
    let mut usage = None;
    let collected = tokio::time::timeout(RERUN_TIMEOUT, async {
        while let Some(ev) = events.recv().await {
            match ev.event {
                Some(worker_event::Event::Chunk(b)) => chunks.push(b),
                Some(worker_event::Event::Done(done)) => {
                    usage = Some(done.usage());
                    receipt = done.receipt;
                    return true;
                }
                Some(worker_event::Event::Error(e)) => {
                    tracing::info!(checker = %worker.name, error = %e.message, "a spot-check re-run failed");
                    return false;
                }
                Some(worker_event::Event::Scored(_)) | None => {}
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    lease.finish(collected);
    if let (Some(u), Some(cap), true) = (usage, paid_up_to, collected) {
        let capped = cocoon_core::Usage {
            prompt: u.prompt.min(cap.prompt),
            cached: u.cached.min(cap.cached),
            completion: u.completion.min(cap.completion),
            reasoning: u.reasoning.min(cap.reasoning),
        };
        pay_checker(shared, &worker, &capped).await;
    }
    collected.then(|| Rerun {
        content: cocoon_receipt::digest::content(req.stream, &chunks),
        worker,
        receipt,
    })
}

/// The usage a worker's signed receipt states, if it is one.
fn receipt_usage(receipt: &[u8]) -> Option<cocoon_core::Usage> {
    cocoon_receipt::SignedReceipt::from_json(receipt)
        .ok()
        .map(|r| r.receipt.usage.into())
}

/// Pays `worker` from the commission for a check's run that used `usage`:
/// its fee for that usage at the current prices and its coefficient, as a
/// client's request would have earned it, with its new voucher. What the
/// commission cannot cover yet stays due to the worker (the ledger pays it
/// as the commission grows). Nothing to pay when the proxy charges nothing.
async fn pay_checker(shared: &Shared, worker: &WorkerHandle, usage: &cocoon_core::Usage) {
    let (Some(payments), Some(payee)) = (shared.config.payments.as_deref(), &worker.payee) else {
        return;
    };
    let fee = match payments.prices.get().cost(usage, worker.coefficient()) {
        Ok(charge) => charge.worker,
        Err(e) => {
            tracing::warn!(checker = %worker.name, error = %e, "cannot price a check's run; it goes unpaid");
            return;
        }
    };
    if fee == cocoon_core::Nanoton::ZERO {
        return;
    }
    let op = cocoon_pay::Op::PayCheck {
        worker: payee.clone(),
        fee,
    };
    match payments.ledger.submit(op).await {
        Ok(cocoon_pay::Outcome::Settled(s)) => {
            shared.spot_checks.update(&worker.identity, |r| {
                r.checks_run += 1;
                r.check_fees = r.check_fees.saturating_add(fee.get());
            });
            if s.charged.worker < fee {
                tracing::info!(checker = %worker.name, fee = %fee, paid = %s.charged.worker, "the commission covers only part of a check's fee; the rest is due to the worker");
            }
            crate::relay::send_voucher(worker, s.worker_voucher).await;
        }
        Ok(other) => {
            tracing::error!(checker = %worker.name, outcome = ?other, "paying a check answered with something else than a settlement")
        }
        Err(e) => {
            tracing::error!(checker = %worker.name, fee = %fee, error = %e, "the books could not record a check's fee")
        }
    }
}
