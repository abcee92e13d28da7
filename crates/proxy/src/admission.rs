//! Requests waiting for a worker slot.
//!
//! When every qualifying worker is at capacity a request joins its model's
//! line instead of being refused. The line is first in, first out: a request
//! that finds people waiting joins the end even if a slot happens to be
//! free, and a freed slot wakes the request at the front, which tries to
//! claim it. A request leaves the line when it gets a slot, when its
//! deadline passes, or at once when its caller goes away (its [`Place`] is
//! dropped). The line is bounded; a full line refuses at once, naming its
//! length.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cocoon_telemetry::{Histogram, QueueStats};
use tokio::sync::Notify;

/// How requests wait for a worker slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most requests waiting per model; 0 refuses at once when every
    /// worker is busy.
    pub max_waiting: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_waiting: DEFAULT_MAX_WAITING,
        }
    }
}

/// Default bound per model: enough for a few hundred concurrent requests
/// from one app, small enough that a request at the end still has a chance
/// within the default deadline.
pub const DEFAULT_MAX_WAITING: usize = 1024;

/// One waiting request.
#[derive(Debug)]
struct Waiter {
    ticket: u64,
    wake: Notify,
}

/// The lines of waiting requests, one per model.
#[derive(Debug)]
pub(crate) struct AdmissionQueue {
    limits: QueueLimits,
    lines: Mutex<HashMap<String, VecDeque<Arc<Waiter>>>>,
    next_ticket: AtomicU64,
    admitted: AtomicU64,
    full: AtomicU64,
    timed_out: AtomicU64,
    cancelled: AtomicU64,
    wait: Histogram,
}

/// The line was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueFull {
    /// Requests waiting for the model.
    pub waiting: usize,
}

impl AdmissionQueue {
    pub(crate) fn new(limits: QueueLimits) -> Self {
        AdmissionQueue {
            limits,
            lines: Mutex::new(HashMap::new()),
            next_ticket: AtomicU64::new(1),
            admitted: AtomicU64::new(0),
            full: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            wait: Histogram::default(),
        }
    }

    fn lines(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Arc<Waiter>>>> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether requests may wait at all.
    pub(crate) fn enabled(&self) -> bool {
        self.limits.max_waiting > 0
    }

    /// Requests waiting for `model`.
    pub(crate) fn waiting(&self, model: &str) -> usize {
        self.lines().get(model).map_or(0, VecDeque::len)
    }

    /// Joins the end of `model`'s line.
    pub(crate) fn join(self: &Arc<Self>, model: &str) -> Result<Place, QueueFull> {
        let mut lines = self.lines();
        let line = lines.entry(model.to_string()).or_default();
        if line.len() >= self.limits.max_waiting {
            let waiting = line.len();
            if waiting == 0 {
                lines.remove(model);
            }
            self.full.fetch_add(1, Ordering::Relaxed);
            return Err(QueueFull { waiting });
        }
        let waiter = Arc::new(Waiter {
            ticket: self.next_ticket.fetch_add(1, Ordering::Relaxed),
            wake: Notify::new(),
        });
        line.push_back(waiter.clone());
        Ok(Place {
            queue: self.clone(),
            model: model.to_string(),
            waiter,
            since: Instant::now(),
            outcome: Outcome::Cancelled,
        })
    }

    /// A slot may have become free for `model` (a request ended, a worker
    /// joined or left): the request at the front tries to claim it.
    pub(crate) fn wake(&self, model: &str) {
        if let Some(front) = self.lines().get(model).and_then(|l| l.front()) {
            front.wake.notify_one();
        }
    }

    /// Counters for stats pages.
    pub(crate) fn stats(&self) -> QueueStats {
        let lines = self.lines();
        QueueStats {
            max_waiting: self.limits.max_waiting as u64,
            waiting: lines
                .iter()
                .filter(|(_, l)| !l.is_empty())
                .map(|(m, l)| (m.clone(), l.len() as u64))
                .collect(),
            admitted: self.admitted.load(Ordering::Relaxed),
            refused_full: self.full.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            wait: self.wait.snapshot(),
        }
    }
}

/// How a wait ended, for the counters.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Admitted,
    TimedOut,
    /// The caller went away, or the request stopped for another reason.
    Cancelled,
}

/// A request's place in a line. Dropping it leaves the line; the request
/// behind moves up and is woken if it is now at the front.
#[derive(Debug)]
pub(crate) struct Place {
    queue: Arc<AdmissionQueue>,
    model: String,
    waiter: Arc<Waiter>,
    since: Instant,
    outcome: Outcome,
}

impl Place {
    /// Whether no one is ahead.
    pub(crate) fn at_front(&self) -> bool {
        self.queue
            .lines()
            .get(&self.model)
            .and_then(|l| l.front())
            .is_some_and(|f| f.ticket == self.waiter.ticket)
    }

    /// Resolves when a slot may have freed up and this request is at the
    /// front (or was, when the wake was sent).
    pub(crate) async fn woken(&self) {
        self.waiter.wake.notified().await;
    }

    /// Passes a wake this request could not use to the one behind it.
    pub(crate) fn pass_on(&self) {
        let lines = self.queue.lines();
        let Some(line) = lines.get(&self.model) else {
            return;
        };
        let mut behind = line
            .iter()
            .skip_while(|w| w.ticket != self.waiter.ticket)
            .skip(1);
        if let Some(next) = behind.next() {
            next.wake.notify_one();
        }
    }

    /// How long the request has waited.
    pub(crate) fn waited(&self) -> std::time::Duration {
        self.since.elapsed()
    }

    /// The request got a slot.
    pub(crate) fn admitted(mut self) {
        self.outcome = Outcome::Admitted;
    }

    /// The request's deadline passed while it waited.
    pub(crate) fn timed_out(mut self) {
        self.outcome = Outcome::TimedOut;
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let q = &self.queue;
        q.wait.observe(self.since.elapsed());
        let counter = match self.outcome {
            Outcome::Admitted => &q.admitted,
            Outcome::TimedOut => &q.timed_out,
            Outcome::Cancelled => &q.cancelled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut lines = q.lines();
        let Some(line) = lines.get_mut(&self.model) else {
            return;
        };
        let was_front = line.front().is_some_and(|f| f.ticket == self.waiter.ticket);
        line.retain(|w| w.ticket != self.waiter.ticket);
        match line.front() {
            // The next request may be able to use what this one leaves
            // (a slot it took has other free ones beside it, or a wake it
            // never used).
            Some(next) if was_front => next.wake.notify_one(),
            Some(_) => {}
            None => {
                lines.remove(&self.model);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn queue(max: usize) -> Arc<AdmissionQueue> {
        Arc::new(AdmissionQueue::new(QueueLimits { max_waiting: max }))
    }

    #[test]
    fn a_full_line_refuses_and_names_its_length() {
        let q = queue(2);
        let a = q.join("m").unwrap();
        let _b = q.join("m").unwrap();
        assert_eq!(q.join("m").unwrap_err(), QueueFull { waiting: 2 });
        // Lines are per model.
        let _c = q.join("other").unwrap();
        drop(a);
        assert!(q.join("m").is_ok());
        assert_eq!(q.stats().refused_full, 1);
    }

    #[test]
    fn leaving_the_line_moves_the_next_request_up_at_once() {
        let q = queue(8);
        let a = q.join("m").unwrap();
        let b = q.join("m").unwrap();
        let c = q.join("m").unwrap();
        assert!(a.at_front() && !b.at_front());
        // Cancelled from the middle: nobody moves in front of b.
        drop(c);
        assert_eq!(q.waiting("m"), 2);
        drop(a);
        assert!(b.at_front());
        assert_eq!(q.stats().cancelled, 2);
        b.admitted();
        assert_eq!(q.waiting("m"), 0);
        assert!(q.stats().waiting.is_empty(), "an empty line is forgotten");
        assert_eq!(q.stats().admitted, 1);
    }

    #[tokio::test]
    async fn a_wake_reaches_the_front_and_is_not_lost_before_it_waits() {
        let q = queue(8);
        let a = q.join("m").unwrap();
        let b = q.join("m").unwrap();
        // Sent before anyone waits: kept for the front.
        q.wake("m");
        tokio::time::timeout(Duration::from_secs(1), a.woken())
            .await
            .expect("the front request is woken");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), b.woken())
                .await
                .is_err(),
            "only the front is woken"
        );
        // A wake the front cannot use travels down the line.
        a.pass_on();
        tokio::time::timeout(Duration::from_secs(1), b.woken())
            .await
            .expect("passed on");
    }

    #[tokio::test]
    async fn the_front_leaving_wakes_the_next() {
        let q = queue(8);
        let a = q.join("m").unwrap();
        let b = q.join("m").unwrap();
        a.timed_out();
        tokio::time::timeout(Duration::from_secs(1), b.woken())
            .await
            .expect("the new front is woken");
        assert_eq!(q.stats().timed_out, 1);
        assert_eq!(q.stats().wait.count, 1);
    }
}
