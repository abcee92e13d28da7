//! Per-minute rate limits over a sliding window: requests started and
//! tokens answered in the last 60 seconds.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::policy::SpendPolicy;

const WINDOW: Duration = Duration::from_secs(60);

/// The last minute of an account.
#[derive(Debug, Default)]
pub(super) struct RateWindow {
    started: VecDeque<Instant>,
    tokens: VecDeque<(Instant, u64)>,
}

/// A limit reached.
#[derive(Debug)]
pub(super) struct Limited {
    pub what: &'static str,
    pub allowed: u64,
    pub used: u64,
    /// Seconds until the oldest counted item leaves the window.
    pub retry_after: u32,
}

impl RateWindow {
    fn prune(&mut self, now: Instant) {
        while self
            .started
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.started.pop_front();
        }
        while self
            .tokens
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= WINDOW)
        {
            self.tokens.pop_front();
        }
    }

    /// Whether one more request may start now.
    pub fn admit(&mut self, policy: &SpendPolicy, now: Instant) -> Result<(), Limited> {
        self.prune(now);
        let retry = |oldest: Option<Instant>| {
            oldest.map_or(1, |t| {
                (WINDOW.saturating_sub(now.duration_since(t)).as_secs() as u32).max(1)
            })
        };
        if let Some(rpm) = policy.requests_per_minute {
            if self.started.len() as u64 >= u64::from(rpm) {
                return Err(Limited {
                    what: "requests",
                    allowed: u64::from(rpm),
                    used: self.started.len() as u64,
                    retry_after: retry(self.started.front().copied()),
                });
            }
        }
        if let Some(tpm) = policy.tokens_per_minute {
            let used: u64 = self.tokens.iter().map(|(_, n)| n).sum();
            if used >= tpm {
                return Err(Limited {
                    what: "tokens",
                    allowed: tpm,
                    used,
                    retry_after: retry(self.tokens.front().map(|(t, _)| *t)),
                });
            }
        }
        Ok(())
    }

    /// Counts a request started.
    pub fn start(&mut self, now: Instant) {
        self.started.push_back(now);
    }

    /// Counts an answer's tokens.
    pub fn tokens(&mut self, now: Instant, n: u64) {
        self.prune(now);
        self.tokens.push_back((now, n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_tokens_per_minute_slide() {
        let policy = SpendPolicy {
            requests_per_minute: Some(2),
            tokens_per_minute: Some(100),
            ..Default::default()
        };
        let t0 = Instant::now();
        let mut w = RateWindow::default();
        assert!(w.admit(&policy, t0).is_ok());
        w.start(t0);
        w.start(t0 + Duration::from_secs(10));
        let limited = w.admit(&policy, t0 + Duration::from_secs(20)).unwrap_err();
        assert_eq!(
            (limited.what, limited.allowed, limited.used),
            ("requests", 2, 2)
        );
        assert_eq!(limited.retry_after, 40);
        // The first request leaves the window after a minute.
        assert!(w.admit(&policy, t0 + Duration::from_secs(61)).is_ok());
        w.tokens(t0 + Duration::from_secs(61), 150);
        let limited = w.admit(&policy, t0 + Duration::from_secs(71)).unwrap_err();
        assert_eq!(limited.what, "tokens");
        assert!(w.admit(&policy, t0 + Duration::from_secs(122)).is_ok());
    }
}
