//! Tokens and spend over time: one bucket per minute for the last day, in
//! memory, for the explorer's chart (the totals since start are in
//! `/metrics`).

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

/// Minutes kept.
const MINUTES: usize = 24 * 60;

/// One minute of answers.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub(crate) struct Minute {
    /// Unix seconds at the minute's start.
    pub at: u64,
    /// Answers completed.
    pub requests: u64,
    /// Prompt and completion tokens.
    pub tokens: u64,
    /// Nanoton spent.
    pub spent: u64,
}

/// The last day, minute by minute (minutes without answers omitted), and
/// the proxy's prices each time they changed.
#[derive(Debug, Default)]
pub(crate) struct History {
    minutes: Mutex<VecDeque<Minute>>,
    prices: Mutex<VecDeque<PriceChange>>,
}

/// Prices changes kept.
const PRICE_CHANGES: usize = 100;

/// The proxy's prices as this client learned them, from a moment on.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub(crate) struct PriceChange {
    /// Unix seconds when this client first saw them.
    pub since: u64,
    /// Nanoton per token at 1x.
    pub price_per_token: u64,
    /// What workers earn per token at 1x.
    pub worker_fee_per_token: u64,
}

impl History {
    /// Counts a completed answer at `now` (Unix seconds).
    pub(crate) fn record(&self, now: u64, tokens: u64, spent: u64) {
        let at = now - now % 60;
        let mut m = self.minutes.lock().unwrap_or_else(|p| p.into_inner());
        match m.back_mut() {
            Some(last) if last.at == at => {
                last.requests += 1;
                last.tokens += tokens;
                last.spent += spent;
            }
            _ => m.push_back(Minute {
                at,
                requests: 1,
                tokens,
                spent,
            }),
        }
        let oldest = at.saturating_sub(MINUTES as u64 * 60);
        while m.front().is_some_and(|f| f.at < oldest) {
            m.pop_front();
        }
    }

    /// Notes the proxy's prices at `now`, if they changed.
    pub(crate) fn prices_seen(&self, now: u64, price_per_token: u64, worker_fee_per_token: u64) {
        let mut p = self.prices.lock().unwrap_or_else(|p| p.into_inner());
        let same = p.back().is_some_and(|l| {
            (l.price_per_token, l.worker_fee_per_token) == (price_per_token, worker_fee_per_token)
        });
        if !same {
            p.push_back(PriceChange {
                since: now,
                price_per_token,
                worker_fee_per_token,
            });
            if p.len() > PRICE_CHANGES {
                p.pop_front();
            }
        }
    }

    /// The price changes seen, oldest first.
    pub(crate) fn prices(&self) -> Vec<PriceChange> {
        self.prices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// The minutes kept, oldest first.
    pub(crate) fn minutes(&self) -> Vec<Minute> {
        self.minutes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_fall_into_their_minute_and_old_minutes_go() {
        let h = History::default();
        h.record(120, 10, 1000);
        h.record(179, 5, 500);
        h.record(180, 1, 100);
        assert_eq!(
            h.minutes(),
            vec![
                Minute {
                    at: 120,
                    requests: 2,
                    tokens: 15,
                    spent: 1500
                },
                Minute {
                    at: 180,
                    requests: 1,
                    tokens: 1,
                    spent: 100
                },
            ]
        );
        h.record(180 + 86_400, 1, 1);
        assert_eq!(h.minutes().len(), 2, "the day-old minute at 120 is gone");
        assert_eq!(h.minutes()[0].at, 180);
    }

    #[test]
    fn only_changed_prices_are_kept() {
        let h = History::default();
        h.prices_seen(10, 100, 80);
        h.prices_seen(15, 100, 80);
        h.prices_seen(20, 120, 90);
        let seen: Vec<u64> = h.prices().iter().map(|p| p.since).collect();
        assert_eq!(seen, vec![10, 20]);
    }
}
