//! Replicated requests: the same request (with one seed, which the client
//! sets) on several distinct workers at once, answered with what most runs
//! agree on by content (each choice's text and finish reason).
//!
//! Nothing of the answer reaches the client before the runs are compared,
//! so a replicated stream carries only what the majority agreed on, and
//! arrives when that is known. A split (no content that at least two runs
//! share and more runs share than any other) is settled by one more run on
//! another worker, if one can take it. Every completed run is charged —
//! the client asked for all of them — and settled before any of the answer
//! goes out; each worker's agreement or dissent goes to its reputation.

use std::sync::Arc;

use bytes::Bytes;
use cocoon_proto::{infer_event, Completion, Replication, WorkerEvent};
use cocoon_telemetry::ActiveRequest;
use futures_util::future::join_all;
use tokio::sync::mpsc;

use super::attempt::charge;
use super::{close, collect, majority, Claimed, Relay, RelayError, Stopped};
use crate::registry::{Lease, WorkerHandle};
use crate::worker_id::Owner;
use tycho_types::models::StdAddr;

/// One worker's run of the request.
struct Run {
    worker: Arc<WorkerHandle>,
    outcome: Result<Settled, RelayError>,
}

/// A complete answer, settled.
struct Settled {
    chunks: Vec<Bytes>,
    done: Completion,
    content: String,
}

impl Relay {
    /// Runs the request on workers of distinct owners and relays the answer
    /// most of them agree on, naming who agreed and who did not.
    pub(super) async fn replicated(&self, active: &mut ActiveRequest) -> Result<(), Stopped> {
        let claimed = self
            .wait_in_line(|| self.claim_distinct(self.job.replicas), true)
            .await?;
        let mut tried: Vec<Owner> = claimed.iter().map(|(l, _)| l.worker.owner()).collect();
        let mut runs: Vec<Run> = join_all(
            claimed
                .into_iter()
                .enumerate()
                .map(|(i, (lease, events))| self.run_whole(i + 1, lease, events)),
        )
        .await;
        let mut winner = agreed(&runs);
        if winner.is_none() && runs.iter().any(|r| r.outcome.is_ok()) {
            // A split: one more run decides, if another owner's worker can
            // take it.
            match self.acquire(&tried, None).await {
                Ok((lease, events)) => {
                    tried.push(lease.worker.owner());
                    tracing::info!(worker = %lease.worker.name, "replicas split; one more run decides");
                    let n = runs.len() + 1;
                    runs.push(self.run_whole(n, lease, events).await);
                    winner = agreed(&runs);
                }
                Err(stop) => {
                    tracing::info!(reason = %stop.error, "replicas split and no other worker can break the tie")
                }
            }
        }
        let Some(content) = winner else {
            return Err(Stopped::early(RelayError::ReplicasDisagree(summary(&runs))));
        };
        self.deliver(runs, &content, active).await
    }

    /// Claims slots on workers of `n` distinct owners at once, or on none:
    /// a request never holds slots idle while it waits for more, so
    /// replicated requests cannot starve one another of the last slots.
    /// Fewer owners serving the model than asked for is a bad request.
    fn claim_distinct(&self, n: u32) -> Result<Vec<Claimed>, Stopped> {
        let owners = self.shared.registry.owners_serving(self.job.model.as_str());
        if owners > 0 && owners < n as usize {
            return Err(Stopped::early(RelayError::BadRequest(format!(
                "replicas: {n} workers of distinct owners asked for, but only {owners} {} model {:?}",
                if owners == 1 { "owner serves" } else { "owners serve" },
                self.job.model.as_str()
            ))));
        }
        let mut claimed: Vec<Claimed> = Vec::new();
        for _ in 0..n {
            let tried: Vec<Owner> = claimed.iter().map(|(l, _)| l.worker.owner()).collect();
            match self.select(&tried, None) {
                Ok(got) => claimed.push(got),
                Err(stop) => {
                    for (lease, _) in claimed {
                        lease.give_back();
                    }
                    return Err(stop);
                }
            }
        }
        Ok(claimed)
    }

    /// Runs the request to its end on one leased worker, settling it as
    /// run `n` of the request: nothing of it reaches the client yet.
    async fn run_whole(&self, n: usize, lease: Lease, events: mpsc::Receiver<WorkerEvent>) -> Run {
        let worker = lease.worker.clone();
        let key = format!("{}#{n}", self.job.id);
        let outcome = match self.start_run(lease, events, &key).await {
            Ok((mut run, reservation)) => {
                let answered = collect(&mut run).await;
                run.end(answered.as_ref().err().is_none_or(|e| !e.retryable()))
                    .await;
                match answered {
                    Ok(answer) => self.settle_run(&worker, answer, reservation).await,
                    Err(e) => {
                        // Nothing of it reached the client: nothing is charged.
                        close(reservation).await;
                        Err(e)
                    }
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &outcome {
            tracing::info!(worker = %worker.name, error = %e, "a replica failed");
        }
        Run { worker, outcome }
    }

    /// Charges a replica's complete answer (the client asked for every run).
    async fn settle_run(
        &self,
        worker: &WorkerHandle,
        answer: super::Answer,
        reservation: Option<crate::settlement::Reservation>,
    ) -> Result<Settled, RelayError> {
        let super::Answer { chunks, mut done } = answer;
        let usage = done.usage();
        self.shared.metrics.record_usage(&usage);
        if let Some(r) = reservation {
            charge(worker, r, &usage, &mut done)
                .await
                .map_err(|_| RelayError::ChargeFailed)?;
        }
        let content = match &self.job.sealed_to {
            // Sealed chunks are compared by the MAC the workers share a key
            // for; a run without one agrees with nobody.
            Some(_) if done.content_mac.is_empty() => format!("{}: no content MAC", worker.name),
            Some(_) => done.content_mac.clone(),
            None => cocoon_receipt::digest::content(self.job.wire.stream, &chunks),
        };
        Ok(Settled {
            chunks,
            done,
            content,
        })
    }

    /// Sends the agreed answer (its first worker's), with every run's cost
    /// and receipt, and records each worker's agreement or dissent.
    async fn deliver(
        &self,
        runs: Vec<Run>,
        content: &str,
        active: &mut ActiveRequest,
    ) -> Result<(), Stopped> {
        let mut replication = self.tally(&runs, content);
        if let Some(payer) = &self.job.payer {
            replication.slash_evidence = self.slash_dissenters(&runs, content, payer);
        }
        let chosen = runs.iter().find_map(|r| match &r.outcome {
            Ok(a) if a.content == content => Some((&r.worker, a)),
            _ => None,
        });
        let Some((worker, answer)) = chosen else {
            return Err(Stopped::early(RelayError::ReplicasDisagree(summary(&runs))));
        };
        let mut done = answer.done.clone();
        done.cost_nanoton = runs
            .iter()
            .filter_map(|r| r.outcome.as_ref().ok())
            .fold(0u64, |sum, a| sum.saturating_add(a.done.cost_nanoton));
        // The client's latest cumulative voucher covers every run.
        if let (Some(p), Some(payer)) = (self.shared.config.charging.payments(), &self.job.payer) {
            if let Some(v) = p.ledger.client_voucher(payer).and_then(|v| v.to_boc().ok()) {
                done.client_voucher = v.into();
            }
        }
        done.replication = Some(replication);
        if self.send(self.assigned(worker, 1)).await.is_err() {
            return Err(Stopped::early(RelayError::ClientGone));
        }
        active.first_byte();
        for c in &answer.chunks {
            self.send(infer_event::Event::Chunk(c.clone()))
                .await
                .map_err(|error| Stopped {
                    error,
                    answered: true,
                })?;
        }
        active.succeed();
        let _ = self.send(infer_event::Event::Done(done)).await;
        Ok(())
    }

    /// Who agreed with `content`, who dissented and who failed, with their
    /// receipts (the agreeing first), each vote recorded in the workers'
    /// reputation.
    fn tally(&self, runs: &[Run], content: &str) -> Replication {
        let mut replication = Replication::default();
        let mut dissent_receipts = Vec::new();
        for run in runs {
            let name = run.worker.name.clone();
            let a = match &run.outcome {
                Ok(a) => a,
                Err(e) => {
                    replication.failed.push(format!("{name}: {e}"));
                    continue;
                }
            };
            let agrees = a.content == content;
            (self.shared.registry.reputation()).record(&run.worker.identity, agrees);
            if agrees {
                replication.agreed.push(name);
                replication.receipts.push(a.done.receipt.clone());
            } else {
                tracing::warn!(worker = %name, "a replica's answer differs from the majority's");
                replication.dissented.push(name);
                dissent_receipts.push(a.done.receipt.clone());
            }
        }
        replication.receipts.extend(dissent_receipts);
        replication
    }

    /// Signs slash evidence against every run that dissented from
    /// `content`, with two agreeing runs as witnesses.
    fn slash_dissenters(&self, runs: &[Run], content: &str, payer: &StdAddr) -> Vec<Bytes> {
        let answered: Vec<crate::slashing::Run<'_>> = runs
            .iter()
            .filter_map(|r| {
                r.outcome.as_ref().ok().map(|a| crate::slashing::Run {
                    worker: &r.worker,
                    receipt: &a.done.receipt,
                    content: &a.content,
                })
            })
            .collect();
        let agreeing: Vec<&crate::slashing::Run<'_>> =
            answered.iter().filter(|r| r.content == content).collect();
        let [first, second, ..] = agreeing.as_slice() else {
            return Vec::new();
        };
        answered
            .iter()
            .filter(|r| r.content != content)
            .filter_map(|accused| {
                crate::slashing::on_dissent(&self.shared, accused, [first, second], payer)
                    .map(Bytes::from)
            })
            .collect()
    }
}

/// The content the majority of the completed runs agree on ([`majority`]).
fn agreed(runs: &[Run]) -> Option<String> {
    majority(
        runs.iter()
            .filter_map(|r| r.outcome.as_ref().ok().map(|a| a.content.as_str())),
    )
    .map(str::to_string)
}

/// How the runs went, for an error that says why there is no answer.
fn summary(runs: &[Run]) -> String {
    runs.iter()
        .map(|r| match &r.outcome {
            Ok(a) => format!("{} answered {}", r.worker.name, &a.content[..12]),
            Err(e) => format!("{} failed ({e})", r.worker.name),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
