//! Idempotent requests: an app that retries a request with the same
//! `Idempotency-Key` and body gets the first answer again, charged once.
//!
//! The client keys both the app's key and the request's fingerprint with a
//! secret of its own (HMAC), so the proxy sees neither the app's key nor
//! anything it could test a guessed prompt against; records are kept per
//! payer, so one client cannot replay another's answers. The proxy keeps
//! the events it sent for each completed answer, in memory, for
//! [`WINDOW`] and within [`MAX_BYTES`] in all; a retry:
//!
//! - of a completed answer with the same fingerprint is sent the recorded
//!   events, marked replayed, without a new charge or voucher;
//! - while the first still runs, or with another fingerprint, is refused;
//! - of a request that failed or was cut off, or whose record expired, was
//!   evicted or lost with a restart, runs anew and is charged anew (the
//!   first was charged at most for what it delivered).
//!
//! Records hold answers in the clear for requests that were not sealed, so
//! they live only in the proxy's (enclave) memory, never on disk.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cocoon_proto::{infer_event, InferEvent, InferRequest};
use prost::Message;

/// How long a completed answer can be replayed.
pub(crate) const WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The most the records may hold in all; the oldest go first.
pub(crate) const MAX_BYTES: usize = 64 * 1024 * 1024;
/// The largest answer recorded; a larger one is answered but not kept (a
/// retry of it runs anew).
pub(crate) const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// A request's idempotency key and fingerprint, as the client keyed them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RecordKey {
    payer: String,
    id: [u8; 32],
}

/// Why an idempotent request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IdempotencyError {
    /// The id or fingerprint is not 64 hex digits.
    #[error("{field} must be 64 hex digits (an HMAC-SHA-256), found {found:?}")]
    Malformed {
        /// Which field.
        field: &'static str,
        /// What was sent (cut short).
        found: String,
    },
    /// The first request with this key is still running.
    #[error("a request with this Idempotency-Key is still running; retry once it has finished")]
    InUse,
    /// The key was used with another request.
    #[error("this Idempotency-Key was used with a different request (another body, endpoint or Cocoon controls); use a new key for a new request")]
    Reused,
}

/// What to do with an idempotent request.
#[derive(Debug)]
pub(crate) enum Claim {
    /// The first of its kind (or the first since the last one failed):
    /// run it, recording what is sent.
    Run(Recorder),
    /// Answered before: send these events again.
    Replay(Arc<[InferEvent]>),
}

#[derive(Debug)]
enum State {
    Running,
    Answered(Arc<[InferEvent]>),
}

#[derive(Debug)]
struct Record {
    fingerprint: [u8; 32],
    at: Instant,
    bytes: usize,
    state: State,
}

#[derive(Debug, Default)]
struct Records {
    by_key: HashMap<RecordKey, Record>,
    /// Completed answers, oldest first, for expiry and eviction.
    answered: VecDeque<(Instant, RecordKey)>,
    bytes: usize,
    replayed: u64,
    refused: u64,
}

/// The proxy's records of idempotent requests.
#[derive(Debug, Default)]
pub(crate) struct IdempotencyBook {
    records: Mutex<Records>,
}

/// What the book has done, for `/jsonstats`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct IdempotencyStats {
    /// Answers held for replay.
    pub(crate) held: usize,
    /// Their size, bytes.
    pub(crate) bytes: usize,
    /// Retries answered from a record.
    pub(crate) replayed: u64,
    /// Retries refused: the first still running, or another request.
    pub(crate) refused: u64,
}

fn hex32(field: &'static str, s: &str) -> Result<[u8; 32], IdempotencyError> {
    let mut out = [0u8; 32];
    match hex::decode_to_slice(s, &mut out) {
        Ok(()) => Ok(out),
        Err(_) => Err(IdempotencyError::Malformed {
            field,
            found: s.chars().take(80).collect(),
        }),
    }
}

impl IdempotencyBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims `req`'s idempotency key: `None` when it has none.
    pub(crate) fn claim(
        self: &Arc<Self>,
        req: &InferRequest,
    ) -> Result<Option<Claim>, IdempotencyError> {
        if req.idempotency_id.is_empty() && req.idempotency_fingerprint.is_empty() {
            return Ok(None);
        }
        let key = RecordKey {
            payer: req.client_address.clone(),
            id: hex32("idempotency_id", &req.idempotency_id)?,
        };
        let fingerprint = hex32("idempotency_fingerprint", &req.idempotency_fingerprint)?;
        let now = Instant::now();
        let mut records = self.lock();
        records.expire(now);
        if let Some(r) = records.by_key.get(&key) {
            let claim = match &r.state {
                _ if r.fingerprint != fingerprint => Err(IdempotencyError::Reused),
                State::Running => Err(IdempotencyError::InUse),
                State::Answered(events) => Ok(Some(Claim::Replay(events.clone()))),
            };
            match claim {
                Ok(_) => records.replayed += 1,
                Err(_) => records.refused += 1,
            }
            return claim;
        }
        records.by_key.insert(
            key.clone(),
            Record {
                fingerprint,
                at: now,
                bytes: 0,
                state: State::Running,
            },
        );
        Ok(Some(Claim::Run(Recorder {
            book: self.clone(),
            key,
            events: Vec::new(),
            bytes: 0,
            finished: false,
        })))
    }

    /// How much is held.
    pub(crate) fn stats(&self) -> IdempotencyStats {
        let records = self.lock();
        IdempotencyStats {
            held: records.answered.len(),
            bytes: records.bytes,
            replayed: records.replayed,
            refused: records.refused,
        }
    }

    fn answered(&self, key: &RecordKey, events: Vec<InferEvent>, bytes: usize) {
        let now = Instant::now();
        let mut records = self.lock();
        let Some(r) = records.by_key.get_mut(key) else {
            return;
        };
        r.state = State::Answered(events.into());
        r.bytes = bytes;
        r.at = now;
        records.bytes += bytes;
        records.answered.push_back((now, key.clone()));
        while records.bytes > MAX_BYTES {
            if !records.evict_oldest() {
                break;
            }
        }
    }

    fn forget(&self, key: &RecordKey) {
        let mut records = self.lock();
        if matches!(
            records.by_key.get(key).map(|r| &r.state),
            Some(State::Running)
        ) {
            records.by_key.remove(key);
        }
    }
}

impl Records {
    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.answered.front() {
            if now.duration_since(*at) < WINDOW {
                break;
            }
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) -> bool {
        let Some((_, key)) = self.answered.pop_front() else {
            return false;
        };
        if let Some(r) = self.by_key.remove(&key) {
            self.bytes -= r.bytes;
        }
        true
    }
}

/// Records what is sent for a request being run: kept for replay when it
/// ends in a completed answer, forgotten when dropped otherwise.
#[derive(Debug)]
pub(crate) struct Recorder {
    book: Arc<IdempotencyBook>,
    key: RecordKey,
    events: Vec<InferEvent>,
    bytes: usize,
    finished: bool,
}

impl Recorder {
    /// Passes the relay's events on to the client, recording them, until
    /// the relay ends or the client goes away: then `from` is dropped,
    /// which the relay sees as the client gone, and it cancels the run.
    /// Returns itself, to be dropped once the relay has ended (a failed
    /// run's key is free only then: a retry never overlaps its cleanup).
    pub(crate) async fn forward(
        mut self,
        mut from: tokio::sync::mpsc::Receiver<Result<InferEvent, tonic::Status>>,
        to: crate::relay::ToClient,
    ) -> Self {
        loop {
            let item = tokio::select! {
                item = from.recv() => item,
                // Gone while the relay had nothing to send (queued, in
                // prefill, or a replicated run): tell it now.
                _ = to.closed() => return self,
            };
            let Some(item) = item else {
                break;
            };
            let terminal = matches!(
                &item,
                Ok(InferEvent {
                    event: Some(infer_event::Event::Done(_) | infer_event::Event::Error(_))
                }) | Err(_)
            );
            if let (Ok(event), false) = (&item, self.finished) {
                self.push(event);
            }
            // Kept before its last event goes: an answer charged in full
            // stays answered even if that event never arrives, and a retry
            // right after it finds the record.
            if terminal {
                self.finish();
            }
            if to.send(item).await.is_err() {
                return self;
            }
        }
        self.finish();
        self
    }

    fn push(&mut self, event: &InferEvent) {
        if self.bytes > MAX_ANSWER_BYTES {
            return;
        }
        self.bytes += event.encoded_len();
        if self.bytes > MAX_ANSWER_BYTES {
            // Too large to keep: nothing of it is held any longer.
            self.events = Vec::new();
            return;
        }
        self.events.push(event.clone());
    }

    /// Keeps the answer if it is complete. A failed or cut-off one is left
    /// for the drop to forget, once the relay has ended.
    fn finish(&mut self) {
        let complete = matches!(
            self.events.last().and_then(|e| e.event.as_ref()),
            Some(infer_event::Event::Done(_))
        );
        if self.finished || !complete || self.bytes > MAX_ANSWER_BYTES {
            return;
        }
        self.finished = true;
        let events = std::mem::take(&mut self.events);
        self.book
            .answered(&self.key, replayable(events), self.bytes);
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if !self.finished {
            self.book.forget(&self.key);
        }
    }
}

/// The events as a replay sends them: marked replayed, the voucher of the
/// first charge left out (the client holds it already).
fn replayable(mut events: Vec<InferEvent>) -> Vec<InferEvent> {
    for e in &mut events {
        match e.event.as_mut() {
            Some(infer_event::Event::Assigned(a)) => a.replayed = true,
            Some(infer_event::Event::Done(d)) => d.client_voucher = Default::default(),
            _ => {}
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_proto::{Assigned, Completion};

    fn request(id: u8, fingerprint: u8) -> InferRequest {
        InferRequest {
            client_address: "0:11".into(),
            idempotency_id: hex::encode([id; 32]),
            idempotency_fingerprint: hex::encode([fingerprint; 32]),
            ..Default::default()
        }
    }

    fn event(e: infer_event::Event) -> InferEvent {
        InferEvent { event: Some(e) }
    }

    fn answer() -> Vec<InferEvent> {
        vec![
            event(infer_event::Event::Assigned(Assigned::default())),
            event(infer_event::Event::Chunk(b"hello".to_vec().into())),
            event(infer_event::Event::Done(Completion {
                cost_nanoton: 7,
                client_voucher: b"voucher".to_vec().into(),
                ..Default::default()
            })),
        ]
    }

    fn run(book: &Arc<IdempotencyBook>, req: &InferRequest, events: Vec<InferEvent>) {
        let Ok(Some(Claim::Run(mut r))) = book.claim(req) else {
            panic!("expected a first run");
        };
        for e in &events {
            r.push(e);
        }
        r.finish();
    }

    #[test]
    fn a_completed_answer_is_replayed_marked_and_without_its_voucher() {
        let book = Arc::new(IdempotencyBook::default());
        run(&book, &request(1, 1), answer());
        let Ok(Some(Claim::Replay(events))) = book.claim(&request(1, 1)) else {
            panic!("expected a replay");
        };
        assert_eq!(events.len(), 3);
        assert!(matches!(&events[0].event, Some(infer_event::Event::Assigned(a)) if a.replayed));
        match &events[2].event {
            Some(infer_event::Event::Done(d)) => {
                assert_eq!(d.cost_nanoton, 7, "what it cost then");
                assert!(d.client_voucher.is_empty(), "no voucher the second time");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(book.stats().held, 1);
    }

    #[test]
    fn another_body_or_a_running_first_is_refused() {
        let book = Arc::new(IdempotencyBook::default());
        let Ok(Some(Claim::Run(first))) = book.claim(&request(1, 1)) else {
            panic!("expected a first run");
        };
        assert_eq!(
            book.claim(&request(1, 1)).unwrap_err(),
            IdempotencyError::InUse
        );
        assert_eq!(
            book.claim(&request(1, 2)).unwrap_err(),
            IdempotencyError::Reused
        );
        drop(first);
        // Dropped before an answer: the key is free again.
        assert!(matches!(
            book.claim(&request(1, 2)),
            Ok(Some(Claim::Run(_)))
        ));
    }

    #[test]
    fn a_failed_or_cut_off_answer_is_not_kept() {
        let book = Arc::new(IdempotencyBook::default());
        let mut cut = answer();
        cut.pop();
        run(&book, &request(1, 1), cut);
        assert!(matches!(
            book.claim(&request(1, 1)),
            Ok(Some(Claim::Run(_)))
        ));
    }

    #[test]
    fn records_are_per_payer_and_keys_must_be_hex() {
        let book = Arc::new(IdempotencyBook::default());
        run(&book, &request(1, 1), answer());
        let mut other = request(1, 1);
        other.client_address = "0:22".into();
        assert!(matches!(book.claim(&other), Ok(Some(Claim::Run(_)))));
        let mut bad = request(1, 1);
        bad.idempotency_id = "not hex".into();
        assert!(matches!(
            book.claim(&bad),
            Err(IdempotencyError::Malformed {
                field: "idempotency_id",
                ..
            })
        ));
        assert!(matches!(book.claim(&InferRequest::default()), Ok(None)));
    }

    #[test]
    fn the_oldest_answers_go_when_the_records_are_full() {
        let book = Arc::new(IdempotencyBook::default());
        let big = vec![0u8; MAX_ANSWER_BYTES / 2];
        for id in 0..=(MAX_BYTES / (MAX_ANSWER_BYTES / 2)) as u8 {
            let mut events = answer();
            events[1] = event(infer_event::Event::Chunk(big.clone().into()));
            run(&book, &request(id, 1), events);
        }
        assert!(book.stats().bytes <= MAX_BYTES);
        assert!(
            matches!(book.claim(&request(0, 1)), Ok(Some(Claim::Run(_)))),
            "evicted"
        );
    }
}
