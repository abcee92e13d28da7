use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cocoon_core::Usage;

use crate::{Histogram, RequestCounts, TokenCounts};

/// Counters every node keeps about the requests passing through it.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    active: AtomicU64,
    total: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    prompt: AtomicU64,
    cached: AtomicU64,
    completion: AtomicU64,
    reasoning: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    latency: Histogram,
    ttfb: Histogram,
}

impl RequestMetrics {
    /// Counts a request as started; the returned guard counts it as
    /// finished (failed, unless [`ActiveRequest::succeed`] was called) when dropped.
    pub fn start(self: &Arc<Self>) -> ActiveRequest {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        ActiveRequest {
            metrics: self.clone(),
            started: Instant::now(),
            first_byte: false,
            outcome: None,
        }
    }

    /// Adds an answer's tokens.
    pub fn record_usage(&self, u: &Usage) {
        self.prompt.fetch_add(u.prompt, Ordering::Relaxed);
        self.cached.fetch_add(u.cached, Ordering::Relaxed);
        self.completion.fetch_add(u.completion, Ordering::Relaxed);
        self.reasoning.fetch_add(u.reasoning, Ordering::Relaxed);
    }

    /// Counts an error that did not come with a started request (for
    /// example a request refused by validation).
    pub fn record_error(&self, reason: &str) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *errors.entry(reason.to_string()).or_default() += 1;
    }

    /// Request counters now.
    pub fn counts(&self) -> RequestCounts {
        RequestCounts {
            active: self.active.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            succeeded: self.succeeded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    /// Token counters now.
    pub fn tokens(&self) -> TokenCounts {
        TokenCounts {
            prompt: self.prompt.load(Ordering::Relaxed),
            cached: self.cached.load(Ordering::Relaxed),
            completion: self.completion.load(Ordering::Relaxed),
            reasoning: self.reasoning.load(Ordering::Relaxed),
        }
    }

    /// Errors by reason now.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A node's snapshot from these counters; the caller adds what only it
    /// knows (its workers and facts).
    pub fn snapshot(
        &self,
        role: &'static str,
        node: &str,
        started: Instant,
        workers: Vec<crate::WorkerLoad>,
        info: BTreeMap<String, String>,
    ) -> crate::Snapshot {
        crate::Snapshot {
            role,
            node: node.to_string(),
            uptime_seconds: started.elapsed().as_secs(),
            requests: self.counts(),
            tokens: self.tokens(),
            errors: self.errors(),
            peers_refused: BTreeMap::new(),
            latency: self.latency.snapshot(),
            time_to_first_byte: self.ttfb.snapshot(),
            workers,
            info,
            queue: None,
            detail: serde_json::Value::Null,
            series: Vec::new(),
        }
    }

    /// Whole-request latency.
    pub fn latency(&self) -> &Histogram {
        &self.latency
    }

    /// Time to first byte.
    pub fn ttfb(&self) -> &Histogram {
        &self.ttfb
    }
}

/// A request in flight. Dropping it finishes the request: as succeeded if
/// [`succeed`](Self::succeed) was called, else as failed with the reason
/// given to [`fail`](Self::fail) (or `"abandoned"`).
#[derive(Debug)]
pub struct ActiveRequest {
    metrics: Arc<RequestMetrics>,
    started: Instant,
    first_byte: bool,
    outcome: Option<Outcome>,
}

/// How a request ended, as the metrics count it.
#[derive(Debug)]
enum Outcome {
    Succeeded,
    /// Failed, for a reason (a short snake_case word, the metric's label).
    Failed(String),
}

impl ActiveRequest {
    /// Marks the first answer byte (recorded once).
    pub fn first_byte(&mut self) {
        if !self.first_byte {
            self.first_byte = true;
            self.metrics.ttfb.observe(self.started.elapsed());
        }
    }

    /// Marks the request as answered in full.
    pub fn succeed(&mut self) {
        self.outcome = Some(Outcome::Succeeded);
    }

    /// Marks the request as failed for `reason` (a short snake_case word).
    pub fn fail(&mut self, reason: &str) {
        self.outcome = Some(Outcome::Failed(reason.to_string()));
    }

    /// Time since the request started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        let m = &self.metrics;
        m.active.fetch_sub(1, Ordering::Relaxed);
        m.latency.observe(self.started.elapsed());
        match self.outcome.take() {
            Some(Outcome::Succeeded) => {
                m.succeeded.fetch_add(1, Ordering::Relaxed);
            }
            Some(Outcome::Failed(reason)) => {
                m.failed.fetch_add(1, Ordering::Relaxed);
                m.record_error(&reason);
            }
            None => {
                m.failed.fetch_add(1, Ordering::Relaxed);
                m.record_error("abandoned");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_accounts_outcomes() {
        let m = Arc::new(RequestMetrics::default());
        {
            let mut a = m.start();
            assert_eq!(m.counts().active, 1);
            a.first_byte();
            a.succeed();
        }
        {
            let mut b = m.start();
            b.fail("worker_lost");
        }
        drop(m.start());
        let c = m.counts();
        assert_eq!((c.active, c.total, c.succeeded, c.failed), (0, 3, 1, 2));
        let e = m.errors();
        assert_eq!(e["worker_lost"], 1);
        assert_eq!(e["abandoned"], 1);
        assert_eq!(m.ttfb().snapshot().count, 1);
        assert_eq!(m.latency().snapshot().count, 3);
    }
}
