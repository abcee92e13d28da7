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

use bytes::Bytes;
use cocoon_proto::{infer_event, worker_event, Completion, Replication, WorkerEvent};
use cocoon_telemetry::ActiveRequest;
use futures_util::future::join_all;
use tokio::sync::mpsc;
use tycho_types::models::StdAddr;

use super::attempt::charge;
use super::{close, Relay, RelayError, Stopped};
use crate::registry::Lease;
use crate::worker_id::Owner;

/// Most runs one request may ask for.
pub(crate) const MAX_REPLICAS: u32 = 5;

/// One worker's run of the request.
struct Run {
    lease: Lease,
    outcome: Result<Answer, RelayError>,
}

/// A complete, settled answer.
struct Answer {
    chunks: Vec<Bytes>,
    done: Completion,
    content: String,
}

impl Relay {
    /// Runs the request on `replicas` distinct workers and relays the
    /// answer most of them agree on, naming who agreed and who did not.
    pub(super) async fn replicated(
        &self,
        replicas: u32,
        payer: Option<&StdAddr>,
        active: &mut ActiveRequest,
    ) -> Result<(), Stopped> {
        if replicas > MAX_REPLICAS {
            return Err(Stopped::early(RelayError::BadRequest(format!(
                "replicas: at most {MAX_REPLICAS} runs per request, asked for {replicas}"
            ))));
        }
        let claimed = self
            .wait_in_line(|| self.claim_distinct(replicas), true)
            .await?;
        let mut tried: Vec<Owner> = claimed.iter().map(|(l, _)| l.worker.owner()).collect();
        let mut runs: Vec<Run> = join_all(
            claimed
                .into_iter()
                .enumerate()
                .map(|(i, (lease, events))| self.run_whole(i + 1, lease, events, payer)),
        )
        .await;
        let mut winner = majority(&runs);
        if winner.is_none() && runs.iter().any(|r| r.outcome.is_ok()) {
            // A split: one more run decides, if another worker can take it.
            match self.acquire(&tried, None).await {
                Ok((lease, events)) => {
                    tried.push(lease.worker.owner());
                    tracing::info!(worker = %lease.worker.name, "replicas split; one more run decides");
                    let n = runs.len() + 1;
                    runs.push(self.run_whole(n, lease, events, payer).await);
                    winner = majority(&runs);
                }
                Err(stop) => {
                    tracing::info!(reason = %stop.error, "replicas split and no other worker can break the tie")
                }
            }
        }
        for run in &mut runs {
            run.lease.finish(run.outcome.is_ok());
        }
        let Some(content) = winner else {
            return Err(Stopped::early(RelayError::ReplicasDisagree(summary(&runs))));
        };
        self.deliver(runs, &content, payer, active).await
    }

    /// Claims slots on workers of `n` distinct owners at once, or on none:
    /// a request never holds slots idle while it waits for more, so
    /// replicated requests cannot starve one another of the last slots.
    /// Fewer owners serving the model than asked for is a bad request.
    fn claim_distinct(&self, n: u32) -> Result<Vec<(Lease, mpsc::Receiver<WorkerEvent>)>, Stopped> {
        let owners = self.shared.registry.owners_serving(&self.req.model);
        if owners > 0 && owners < n as usize {
            return Err(Stopped::early(RelayError::BadRequest(format!(
                "replicas: {n} workers of distinct owners asked for, but only {owners} {} model {:?}",
                if owners == 1 { "owner serves" } else { "owners serve" },
                self.req.model
            ))));
        }
        let mut claimed: Vec<(Lease, mpsc::Receiver<WorkerEvent>)> = Vec::new();
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
    /// run `n` of the request.
    async fn run_whole(
        &self,
        n: usize,
        lease: Lease,
        mut events: mpsc::Receiver<WorkerEvent>,
        payer: Option<&StdAddr>,
    ) -> Run {
        let outcome = self.collect(n, &lease, &mut events, payer).await;
        if let Err(e) = &outcome {
            tracing::info!(worker = %lease.worker.name, error = %e, "a replica failed");
        }
        Run { lease, outcome }
    }

    async fn collect(
        &self,
        n: usize,
        lease: &Lease,
        events: &mut mpsc::Receiver<WorkerEvent>,
        payer: Option<&StdAddr>,
    ) -> Result<Answer, RelayError> {
        let worker = &*lease.worker;
        let key = format!("{}#{n}", self.req.request_id);
        let reservation = match payer {
            Some(p) => Some(self.reserve_as(&key, p, worker).await?),
            None => None,
        };
        if !worker.send(self.work_request(reservation.as_ref())).await {
            close(reservation).await;
            return Err(RelayError::Dispatch(worker.name.clone()));
        }
        let mut chunks = Vec::new();
        let ended = loop {
            let ev = tokio::select! {
                biased;
                _ = self.to_client.closed() => break Err(RelayError::ClientGone),
                _ = tokio::time::sleep_until(self.deadline) => break Err(RelayError::Timeout),
                ev = events.recv() => ev,
            };
            match ev.map(|e| e.event) {
                Some(Some(worker_event::Event::Chunk(b))) => {
                    lease.first_byte();
                    chunks.push(b);
                }
                Some(Some(worker_event::Event::Done(done))) => {
                    lease.first_byte();
                    break Ok(done);
                }
                Some(Some(worker_event::Event::Error(error))) => {
                    break Err(RelayError::Worker {
                        worker: worker.name.clone(),
                        error,
                    })
                }
                Some(None | Some(worker_event::Event::Scored(_))) => {}
                None => {
                    break Err(RelayError::WorkerLost {
                        worker: worker.name.clone(),
                        mid_answer: !chunks.is_empty(),
                    })
                }
            }
        };
        let mut done = match ended {
            Ok(done) => done,
            Err(e) => {
                if e.worker_still_running() {
                    self.cancel(worker).await;
                }
                // Nothing of it reached the client: nothing is charged.
                close(reservation).await;
                return Err(e);
            }
        };
        let usage = done.usage();
        self.shared.metrics.record_usage(&usage);
        if let Some(r) = reservation {
            if !charge(worker, r, &usage, &mut done).await {
                return Err(RelayError::ChargeFailed);
            }
        }
        let content = cocoon_receipt::digest::content(self.req.stream, &chunks);
        Ok(Answer {
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
        payer: Option<&StdAddr>,
        active: &mut ActiveRequest,
    ) -> Result<(), Stopped> {
        let mut replication = Replication::default();
        let mut agreed_receipts = Vec::new();
        let mut dissent_receipts = Vec::new();
        let mut cost = 0u64;
        let mut chosen: Option<(&Lease, &Answer)> = None;
        for run in &runs {
            let id = run.lease.worker.name.clone();
            match &run.outcome {
                Ok(a) => {
                    cost = cost.saturating_add(a.done.cost_nanoton);
                    let agrees = a.content == content;
                    (self.shared.registry.reputation()).record(&run.lease.worker.identity, agrees);
                    if agrees {
                        replication.agreed.push(id);
                        agreed_receipts.push(a.done.receipt.clone());
                        chosen.get_or_insert((&run.lease, a));
                    } else {
                        tracing::warn!(worker = %id, "a replica's answer differs from the majority's");
                        replication.dissented.push(id);
                        dissent_receipts.push(a.done.receipt.clone());
                    }
                }
                Err(e) => replication.failed.push(format!("{id}: {e}")),
            }
        }
        replication.receipts = agreed_receipts;
        replication.receipts.extend(dissent_receipts);
        if let Some(payer) = payer {
            replication.slash_evidence = self.slash_dissenters(&runs, content, payer);
        }
        let Some((lease, answer)) = chosen else {
            return Err(Stopped::early(RelayError::ReplicasDisagree(summary(&runs))));
        };
        let mut done = answer.done.clone();
        done.cost_nanoton = cost;
        // The client's latest cumulative voucher covers every run.
        if let (Some(p), Some(payer)) = (&self.shared.config.payments, payer) {
            if let Some(v) = p.ledger.client_voucher(payer).and_then(|v| v.to_boc().ok()) {
                done.client_voucher = v.into();
            }
        }
        done.replication = Some(replication);
        if self.send(self.assigned(&lease.worker, 1)).await.is_err() {
            return Err(Stopped::early(RelayError::ClientGone));
        }
        active.first_byte();
        for c in &answer.chunks {
            self.send(infer_event::Event::Chunk(c.clone()))
                .await
                .map_err(|e| Stopped {
                    error: e,
                    answered: true,
                })?;
        }
        active.succeed();
        let _ = self.send(infer_event::Event::Done(done)).await;
        Ok(())
    }
}

impl Relay {
    /// Signs slash evidence against every run that dissented from
    /// `content`, with two agreeing runs as witnesses.
    fn slash_dissenters(&self, runs: &[Run], content: &str, payer: &StdAddr) -> Vec<Bytes> {
        let answered: Vec<crate::slashing::Run<'_>> = runs
            .iter()
            .filter_map(|r| {
                r.outcome.as_ref().ok().map(|a| crate::slashing::Run {
                    worker: &r.lease.worker,
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

/// The content at least two runs share and more runs share than any other.
fn majority(runs: &[Run]) -> Option<String> {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in runs {
        if let Ok(a) = &r.outcome {
            *counts.entry(a.content.as_str()).or_default() += 1;
        }
    }
    let best = counts.values().copied().max()?;
    let leaders: Vec<&str> = counts
        .iter()
        .filter(|(_, n)| **n == best)
        .map(|(c, _)| *c)
        .collect();
    (best >= 2 && leaders.len() == 1).then(|| leaders[0].to_string())
}

/// How the runs went, for an error that says why there is no answer.
fn summary(runs: &[Run]) -> String {
    runs.iter()
        .map(|r| match &r.outcome {
            Ok(a) => format!("{} answered {}", r.lease.worker.name, &a.content[..12]),
            Err(e) => format!("{} failed ({e})", r.lease.worker.name),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
