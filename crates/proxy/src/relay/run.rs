//! One worker's run of one request: the only place the proxy talks to a
//! worker about a request. Plain requests, each replica of a replicated
//! one, spot-check re-runs and scoring all go through a [`WorkerRun`]:
//! dispatched on a leased slot, read event by event until the answer ends,
//! the deadline passes or the client leaves, and ended once, which tells
//! the worker to stop if it still runs and frees the slot with the
//! outcome its statistics record.

use std::sync::Arc;

use bytes::Bytes;
use cocoon_proto::{
    proxy_message, worker_event, CancelRequest, Completion, ProxyMessage, ScoreResult, TokenCounts,
    WorkerEvent,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{RelayError, ToClient};
use crate::registry::{Lease, WorkerHandle};

/// What a worker sends about a request it runs.
#[derive(Debug)]
pub(crate) enum RunEvent {
    /// A piece of the answer, with the engine's running token count if it
    /// sent one.
    Chunk(Bytes, Option<TokenCounts>),
    /// The answer is complete.
    Done(Box<Completion>),
    /// A scoring request's result.
    Scored(ScoreResult),
}

/// A request dispatched to one leased worker.
pub(crate) struct WorkerRun {
    lease: Lease,
    events: mpsc::Receiver<WorkerEvent>,
    /// The id the worker knows the request by.
    request_id: String,
    deadline: Instant,
    /// The client whose departure ends the run; `None` for the proxy's own
    /// runs (checks), which end only at their deadline.
    client: Option<ToClient>,
    /// An event read ahead and put back.
    next: Option<RunEvent>,
    /// Whether any of the answer arrived.
    answered: bool,
    /// Whether the worker is done with the request (it finished, failed or
    /// left), so ending the run need not tell it to stop.
    over: bool,
}

impl WorkerRun {
    /// Sends `msg` (the request, or a scoring request, known to the worker
    /// as `request_id`) down the leased worker's session.
    pub(crate) async fn dispatch(
        lease: Lease,
        events: mpsc::Receiver<WorkerEvent>,
        msg: proxy_message::Msg,
        deadline: Instant,
        client: Option<ToClient>,
    ) -> Result<WorkerRun, RelayError> {
        let request_id = lease.request_id().to_string();
        if !lease.worker.send(ProxyMessage { msg: Some(msg) }).await {
            return Err(RelayError::Dispatch(lease.worker.name.clone()));
        }
        Ok(WorkerRun {
            lease,
            events,
            request_id,
            deadline,
            client,
            next: None,
            answered: false,
            over: false,
        })
    }

    /// The worker running it.
    pub(crate) fn worker(&self) -> &Arc<WorkerHandle> {
        &self.lease.worker
    }

    /// Whether any of the answer arrived.
    pub(crate) fn answered(&self) -> bool {
        self.answered
    }

    /// The deadline it runs under.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The worker's next event; an error when the worker fails or leaves,
    /// the deadline passes or the client leaves first.
    pub(crate) async fn next(&mut self) -> Result<RunEvent, RelayError> {
        match self.next_before(self.deadline).await? {
            Some(ev) => Ok(ev),
            None => Err(RelayError::Timeout),
        }
    }

    /// Like [`WorkerRun::next`], but `Ok(None)` once `until` passes first
    /// (at once when it has passed and nothing waits).
    pub(crate) async fn next_before(
        &mut self,
        until: Instant,
    ) -> Result<Option<RunEvent>, RelayError> {
        if let Some(ev) = self.next.take() {
            return Ok(Some(ev));
        }
        let client_gone = async {
            match &self.client {
                Some(c) => c.closed().await,
                None => std::future::pending().await,
            }
        };
        let received = tokio::select! {
            biased;
            _ = client_gone => {
                tracing::info!(worker = %self.lease.worker.name, "client went away; cancelling");
                return Err(RelayError::ClientGone);
            }
            ev = self.events.recv() => ev,
            _ = tokio::time::sleep_until(until.min(self.deadline)) => {
                return match Instant::now() >= self.deadline {
                    true => Err(RelayError::Timeout),
                    false => Ok(None),
                };
            }
        };
        let Some(ev) = received else {
            // Dropped for overflow, the worker still runs the request and
            // must be told to stop; a closed session ended it.
            if self.lease.overflowed() {
                return Err(RelayError::ClientTooSlow);
            }
            self.over = true;
            return Err(RelayError::WorkerLost {
                worker: self.lease.worker.name.clone(),
                mid_answer: self.answered,
            });
        };
        self.read(ev).map(Some)
    }

    /// The events already waiting, without waiting for more.
    pub(crate) fn ready(&mut self) -> Option<Result<RunEvent, RelayError>> {
        if let Some(ev) = self.next.take() {
            return Some(Ok(ev));
        }
        let ev = self.events.try_recv().ok()?;
        Some(self.read(ev))
    }

    /// Puts an event back, to be the next one read.
    pub(crate) fn put_back(&mut self, ev: RunEvent) {
        self.next = Some(ev);
    }

    fn read(&mut self, ev: WorkerEvent) -> Result<RunEvent, RelayError> {
        let WorkerEvent { event, so_far, .. } = ev;
        match event {
            Some(worker_event::Event::Chunk(bytes)) => {
                if !self.answered {
                    self.answered = true;
                    self.lease.first_byte();
                }
                Ok(RunEvent::Chunk(bytes, so_far))
            }
            Some(worker_event::Event::Done(done)) => {
                self.over = true;
                self.lease.first_byte();
                Ok(RunEvent::Done(Box::new(done)))
            }
            Some(worker_event::Event::Scored(score)) => {
                self.over = true;
                Ok(RunEvent::Scored(score))
            }
            Some(worker_event::Event::Error(error)) => {
                self.over = true;
                Err(RelayError::Worker {
                    worker: self.lease.worker.name.clone(),
                    error,
                })
            }
            // An empty event says nothing; the next one will.
            None => Err(RelayError::Worker {
                worker: self.lease.worker.name.clone(),
                error: cocoon_proto::InferError {
                    message: "the worker sent an empty event".into(),
                    ..Default::default()
                },
            }),
        }
    }

    /// Resolves when the request is dropped because its client stopped
    /// reading (at once if it already was).
    pub(crate) async fn overflow(&self) {
        self.lease.overflow().await
    }

    /// Ends the run: tells the worker to stop if it still runs, and
    /// records `succeeded` in the worker's statistics, which count it when
    /// the run is dropped and its slot freed.
    pub(crate) async fn end(&mut self, succeeded: bool) {
        if !std::mem::replace(&mut self.over, true) {
            let cancel = proxy_message::Msg::Cancel(CancelRequest {
                request_id: self.request_id.clone(),
            });
            let _ = self
                .lease
                .worker
                .send(ProxyMessage { msg: Some(cancel) })
                .await;
        }
        self.lease.finish(succeeded);
    }
}

/// A complete answer, as one run gave it.
pub(crate) struct Answer {
    /// Its chunks (a stream's chunk payloads, or a whole answer's body).
    pub(crate) chunks: Vec<Bytes>,
    /// Its completion: usage, receipt.
    pub(crate) done: Completion,
}

/// Reads a run's whole answer.
pub(crate) async fn collect(run: &mut WorkerRun) -> Result<Answer, RelayError> {
    let mut chunks = Vec::new();
    loop {
        match run.next().await? {
            RunEvent::Chunk(bytes, _) => chunks.push(bytes),
            RunEvent::Done(done) => {
                return Ok(Answer {
                    chunks,
                    done: *done,
                })
            }
            // Only a scoring request is answered with a score.
            RunEvent::Scored(_) => {}
        }
    }
}

/// The content most runs agree on: the one at least two runs share and
/// more runs share than any other. Replication and spot-checks both vote
/// by it; a tie, or no content shared by two, has no majority.
pub(crate) fn majority<'a>(contents: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for c in contents {
        *counts.entry(c).or_default() += 1;
    }
    let best = counts.values().copied().max()?;
    let mut leaders = counts.iter().filter(|(_, n)| **n == best);
    let (leader, _) = leaders.next()?;
    (best >= 2 && leaders.next().is_none()).then_some(*leader)
}

#[cfg(test)]
mod tests {
    use super::majority;

    #[test]
    fn a_majority_is_shared_by_two_and_by_more_than_any_other() {
        assert_eq!(majority(["a", "a", "b"]), Some("a"));
        assert_eq!(majority(["a", "a"]), Some("a"));
        assert_eq!(majority(["a", "b"]), None, "no content shared by two");
        assert_eq!(majority(["a", "a", "b", "b"]), None, "a tie");
        assert_eq!(majority(["a", "b", "b", "a", "b"]), Some("b"));
        assert_eq!(majority(["a"]), None);
        assert_eq!(majority([]), None);
    }
}
