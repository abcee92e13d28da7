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
use cocoon_proto::proxy_message;
use tokio::sync::mpsc;

use crate::registry::{Demand, WorkerHandle};
use crate::relay::{collect, Answer, Job, RunEvent, WorkerRun};
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
    /// Share of open-tier workers' answers re-run or scored, 0 to 1: their
    /// hardware proves nothing, so they are checked far more often (the
    /// proxy's policy `[open] spot_check_rate` sets it).
    pub open_rate: f64,
}

impl Default for SpotCheckConfig {
    fn default() -> Self {
        SpotCheckConfig {
            rate: 0.01,
            first_answers: 1,
            open_rate: cocoon_tee::policy::DEFAULT_OPEN_SPOT_CHECK_RATE,
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

/// Deadline of one re-run: its own, whatever was left of the original's
/// (else a worker that answered just before its deadline would leave its
/// checkers no time, and escape every check).
const RERUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Checkers asked to re-run one answer, failed ones included.
const MAX_CHECKERS: usize = 4;

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

    /// Whether to check the answer `worker` is about to give to `job`.
    pub(crate) fn wants(&self, worker: &WorkerHandle, job: &Job) -> bool {
        // A sealed answer is for its client's eyes only: the client checks
        // it by replicas or by its own spot-checks.
        if worker.model_hash.is_none() || job.replicas > 1 || job.sealed_to.is_some() {
            return false;
        }
        let planned = self.of(&worker.identity).planned;
        let rate = if worker.offer.open {
            self.config.open_rate.max(self.config.rate)
        } else {
            self.config.rate
        };
        let sampled = planned < u64::from(self.config.first_answers) || self.draw() < rate;
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
    /// The answer: its chunks and completion (with its signed receipt).
    pub answer: Answer,
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

/// Re-runs `job` elsewhere and judges `original`'s answer. Runs in the
/// background, after the client has its answer. When the original is
/// outvoted by two re-runs that agree, the proxy signs slash evidence
/// against it on behalf of the client who got it.
pub(crate) async fn check(shared: Arc<Shared>, job: Job, original: Original) {
    let Some(hash) = original.worker.model_hash else {
        return;
    };
    if !job.sampling.deterministic() {
        return score_check(&shared, &job, hash, &original).await;
    }
    let receipt = original.answer.done.receipt.clone();
    let mut answers = vec![Rerun {
        worker: original.worker.clone(),
        content: cocoon_receipt::digest::content(job.wire.stream, &original.answer.chunks),
        receipt: receipt.clone(),
    }];
    // Checkers are of other owners than the original's, and than each
    // other's: one owner's sessions are one witness.
    let mut exclude = vec![original.worker.owner()];
    // A re-run of the same request uses what the original did: the most a
    // checker is paid for, whatever usage it reports.
    let paid_up_to = receipt_usage(&receipt);
    // One re-run; a second only if the first disagrees. A checker that
    // fails is passed over for the next owner's, a few times at most.
    let mut tries = 0;
    while answers.len() < 3 && tries < MAX_CHECKERS {
        tries += 1;
        let run = match rerun(&shared, &job, hash, &exclude, paid_up_to).await {
            None => break,
            Some(Err(failed)) => {
                exclude.push(failed.owner());
                continue;
            }
            Some(Ok(run)) => run,
        };
        exclude.push(run.worker.owner());
        answers.push(run);
        if answers.len() == 2 && answers[0].content == answers[1].content {
            break;
        }
    }
    if outvoted_across_replay_classes(&answers) {
        // Honest hardware can disagree there: judged by scoring under the
        // model, never by bytes (and never slashed for it).
        tracing::info!(worker = %original.worker.name, "a deterministic answer differs from re-runs on other code, weights or hardware; scoring it instead");
        return score_check(&shared, &job, hash, &original).await;
    }
    judge(&shared, &original, &answers);
}

/// Whether the original (`answers[0]`) is outvoted by re-runs of which
/// some ran where an exact replay is not guaranteed
/// ([`crate::slashing::replay_class`]).
fn outvoted_across_replay_classes(answers: &[Rerun]) -> bool {
    let Some(majority) = crate::relay::majority(answers.iter().map(|a| a.content.as_str())) else {
        return false;
    };
    let original = &answers[0];
    let class = crate::slashing::replay_class(&original.worker);
    original.content != majority
        && answers
            .iter()
            .filter(|a| a.content == majority)
            .any(|a| class.is_none() || crate::slashing::replay_class(&a.worker) != class)
}

/// Records what the re-runs say of the original (`answers[0]`): passed
/// when the majority ([`crate::relay::majority`]) agrees with it, failed
/// (and slash evidence signed, when someone paid for it) when the majority
/// is another answer, inconclusive without a majority, skipped when no
/// other worker could re-run it.
fn judge(shared: &Arc<Shared>, original: &Original, answers: &[Rerun]) {
    let checks = &shared.spot_checks;
    let id = &original.worker.identity;
    if answers.len() < 2 {
        return checks.update(id, |r| r.skipped += 1);
    }
    let Some(majority) = crate::relay::majority(answers.iter().map(|a| a.content.as_str())) else {
        tracing::warn!(worker = %original.worker.name, %id, "a spot-check disagreed and no third worker could decide");
        return checks.update(id, |r| r.inconclusive += 1);
    };
    let reputation = shared.registry.reputation();
    for a in answers {
        let agrees = a.content == majority;
        reputation.record(&a.worker.identity, agrees);
        if !agrees {
            tracing::warn!(worker = %a.worker.name, identity = %a.worker.identity, "a spot-check outvoted this worker's answer");
        }
    }
    let passed = answers[0].content == majority;
    checks.update(id, |r| if passed { r.passed += 1 } else { r.failed += 1 });
    if let (false, Some(payer), [accused, first, second, ..]) = (passed, &original.payer, answers) {
        let (accused, first, second) = (accused.view(), first.view(), second.view());
        crate::slashing::on_dissent(shared, &accused, [&first, &second], payer);
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
async fn score_check(shared: &Shared, job: &Job, hash: ModelHash, original: &Original) {
    let checks = &shared.spot_checks;
    let id = &original.worker.identity;
    let temperature = job.sampling.temperature.unwrap_or(1.0);
    let answer =
        cocoon_receipt::digest::first_choice_text(job.wire.stream, &original.answer.chunks);
    if temperature > MAX_SCORED_TEMPERATURE || answer.is_empty() {
        checks.update(id, |r| r.inconclusive += 1);
        return;
    }
    let mut exclude = vec![original.worker.owner()];
    for _ in 0..SCORERS {
        let Some((scorer, result)) = score_on(shared, job, &answer, hash, &exclude).await else {
            break;
        };
        exclude.push(scorer.owner());
        let Some(s) = result else {
            continue; // this worker cannot score (an upstream engine)
        };
        if let Some(u) = receipt_usage(&original.answer.done.receipt) {
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

/// Dispatches `msg` (built for a fresh request id) to a free worker serving
/// the same weights, of an owner not in `exclude`; `None` when none is
/// free. The worker's handle comes back either way, the run only if the
/// message reached it.
async fn run_on_checker(
    shared: &Shared,
    job: &Job,
    hash: ModelHash,
    exclude: &[Owner],
    msg: impl FnOnce(&str, &WorkerHandle) -> proxy_message::Msg,
) -> Option<(Arc<WorkerHandle>, Option<WorkerRun>)> {
    let id = RequestId::generate();
    let (tx, events) = mpsc::channel(crate::relay::EVENT_QUEUE);
    // Checkers meet the request's requirements and are never open-tier
    // workers: an open worker checking another proves nothing.
    let trust = cocoon_core::trust::TrustRequirements {
        open: None,
        ..job.trust.clone()
    };
    let demand = Demand {
        trust: &trust,
        ..job.demand(exclude)
    };
    let lease = (shared.registry).select_same_weights(&demand, hash, &id, tx)?;
    let worker = lease.worker.clone();
    let deadline = tokio::time::Instant::now() + RERUN_TIMEOUT;
    let msg = msg(id.as_str(), &worker);
    let run = WorkerRun::dispatch(lease, events, msg, deadline, None).await;
    Some((worker, run.ok()))
}

/// Asks a free worker serving the same weights, of an owner not in
/// `exclude`, to score `answer`: the worker and its score (`None` if it
/// could not), or `None` when no such worker is free.
async fn score_on(
    shared: &Shared,
    job: &Job,
    answer: &str,
    hash: ModelHash,
    exclude: &[Owner],
) -> Option<(Arc<WorkerHandle>, Option<cocoon_proto::ScoreResult>)> {
    let score = |request_id: &str, _: &WorkerHandle| {
        proxy_message::Msg::Score(cocoon_proto::ScoreRequest {
            request_id: request_id.to_string(),
            endpoint: cocoon_proto::Endpoint::from(job.endpoint).into(),
            body: job.wire.body.clone(),
            answer: answer.to_string(),
        })
    };
    let (worker, run) = run_on_checker(shared, job, hash, exclude, score).await?;
    let Some(mut run) = run else {
        return Some((worker, None));
    };
    let result = loop {
        match run.next().await {
            Ok(RunEvent::Scored(s)) => break Ok(s),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    run.end(result.is_ok()).await;
    match result {
        Ok(s) => Some((worker, Some(s))),
        Err(e) => {
            tracing::info!(scorer = %worker.name, error = %e, "a worker could not score an answer");
            Some((worker, None))
        }
    }
}

/// Runs `job` on a free worker serving the same weights, of an owner not in
/// `exclude`: `None` when none is free, the worker when it failed. The
/// worker is paid for the usage it reports, at most `paid_up_to` (the
/// original's); not at all when that is unknown.
async fn rerun(
    shared: &Shared,
    job: &Job,
    hash: ModelHash,
    exclude: &[Owner],
    paid_up_to: Option<cocoon_core::Usage>,
) -> Option<Result<Rerun, Arc<WorkerHandle>>> {
    // The proxy's own run: no prices, nobody charged.
    let deadline = tokio::time::Instant::now() + RERUN_TIMEOUT;
    let request = |request_id: &str, worker: &WorkerHandle| {
        job.work_request(request_id, deadline, None, worker)
    };
    let (worker, run) = run_on_checker(shared, job, hash, exclude, request).await?;
    let Some(mut run) = run else {
        return Some(Err(worker));
    };
    let collected = collect(&mut run).await;
    run.end(collected.is_ok()).await;
    let answer = match collected {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(checker = %worker.name, error = %e, "a spot-check re-run failed");
            return Some(Err(worker));
        }
    };
    if let Some(cap) = paid_up_to {
        let u = answer.done.usage();
        let capped = cocoon_core::Usage {
            prompt: u.prompt.min(cap.prompt),
            cached: u.cached.min(cap.cached),
            completion: u.completion.min(cap.completion),
            reasoning: u.reasoning.min(cap.reasoning),
        };
        pay_checker(shared, &worker, &capped).await;
    }
    Some(Ok(Rerun {
        content: cocoon_receipt::digest::content(job.wire.stream, &answer.chunks),
        worker,
        receipt: answer.done.receipt,
    }))
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
    let (Some(payments), Some(payee)) = (
        shared.config.charging.payments().map(|p| &**p),
        &worker.payee,
    ) else {
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
