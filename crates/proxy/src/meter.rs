//! Metering one answer: what the worker says it has used, what reached the
//! client, and what the ledger holds durably.
//!
//! The rule the relay keeps: no chunk reaches the client before the cost of
//! everything up to and including it is durable. Chunks the worker has
//! already sent when one arrives ride on the same ledger commit (a burst),
//! and a burst that ends the answer rides on the settlement itself, so a
//! short answer costs a reservation and a settlement and nothing more. A
//! proxy killed at any moment has therefore lost no charge for anything
//! delivered; at worst it charges one burst that was made durable but not
//! yet forwarded.

use cocoon_core::{Charge, Coefficient, Nanoton, Usage};
use cocoon_proto::TokenCounts;

use crate::Payments;

/// A reservation held for one attempt on one worker.
pub(crate) struct Hold<'a> {
    pub(crate) payments: &'a Payments,
    pub(crate) coefficient: Coefficient,
    /// The most the request may cost the client.
    pub(crate) reserved: Nanoton,
}

impl Hold<'_> {
    /// What `usage` costs at this worker's coefficient, capped at the
    /// reservation: whatever a worker reports, a request never costs the
    /// client more than it agreed to hold.
    pub(crate) fn cost(&self, usage: &Usage) -> Charge {
        capped(
            self.payments.prices.cost(usage, self.coefficient),
            self.reserved,
        )
    }
}

/// A price capped at a reservation; the worker's fee never exceeds what
/// the client pays. Only absurd counts overflow; they cost the reservation.
fn capped(full: Result<Charge, cocoon_core::PriceError>, reserved: Nanoton) -> Charge {
    let full = full.unwrap_or(Charge {
        client: Nanoton::new(u64::MAX),
        worker: Nanoton::new(u64::MAX),
    });
    let client = full.client.min(reserved);
    Charge {
        client,
        worker: full.worker.min(client),
    }
}

/// The running account of one attempt's answer.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    /// The engine's latest count of tokens used.
    reported: Usage,
    /// Chunks received since that count.
    unreported: u64,
    /// Tokens used through the last chunk forwarded to the client.
    delivered: Usage,
    /// Chunks forwarded to the client.
    delivered_chunks: u64,
    /// The client cost last made durable, and when.
    durable: Nanoton,
    durable_at: Option<tokio::time::Instant>,
}

impl Meter {
    /// Counts a chunk received from the worker and returns the tokens used
    /// through it. Engines that report no counts are charged one completion
    /// token per chunk after their last report: a lower bound, since a
    /// chunk carries at least one token of text.
    pub(crate) fn receive(&mut self, so_far: Option<&TokenCounts>) -> Usage {
        match so_far {
            Some(c) => {
                self.reported = Usage {
                    prompt: c.prompt_tokens,
                    cached: c.cached_tokens,
                    completion: c.completion_tokens,
                    reasoning: c.reasoning_tokens,
                };
                self.unreported = 0;
            }
            None => self.unreported += 1,
        }
        Usage {
            completion: self.reported.completion.saturating_add(self.unreported),
            ..self.reported
        }
    }

    /// Records that a chunk reached the client.
    pub(crate) fn delivered(&mut self, through: Usage) {
        self.delivered = through;
        self.delivered_chunks += 1;
    }

    /// Chunks forwarded to the client so far.
    pub(crate) fn delivered_chunks(&self) -> u64 {
        self.delivered_chunks
    }

    /// Tokens used through the last chunk the client received: what a
    /// cut-off answer is charged.
    pub(crate) fn delivered_usage(&self) -> Usage {
        self.delivered
    }

    /// Whether `charge` is more than the ledger already holds durably.
    pub(crate) fn above_durable(&self, charge: &Charge) -> bool {
        charge.client > self.durable
    }

    /// Records that `charge` is durable.
    pub(crate) fn made_durable(&mut self, charge: &Charge) {
        self.durable = self.durable.max(charge.client);
        self.durable_at = Some(tokio::time::Instant::now());
    }

    /// Until when chunks may be held to share the next durable step: a
    /// `window` after the last one. `None` before the first, so the first
    /// chunk is never held.
    pub(crate) fn hold_until(&self, window: std::time::Duration) -> Option<tokio::time::Instant> {
        if window.is_zero() {
            return None;
        }
        self.durable_at.map(|t| t + window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(prompt: u64, completion: u64) -> TokenCounts {
        TokenCounts {
            prompt_tokens: prompt,
            completion_tokens: completion,
            ..TokenCounts::default()
        }
    }

    #[test]
    fn engine_counts_are_used_as_reported() {
        let mut m = Meter::default();
        assert_eq!(m.receive(Some(&counts(0, 0))), Usage::default());
        let u = m.receive(Some(&counts(12, 3)));
        assert_eq!((u.prompt, u.completion), (12, 3));
        m.delivered(u);
        assert_eq!(m.delivered_usage(), u);
        assert_eq!(m.delivered_chunks(), 1);
    }

    #[test]
    fn chunks_without_counts_add_one_completion_token_each() {
        let mut m = Meter::default();
        assert_eq!(m.receive(None).completion, 1);
        assert_eq!(m.receive(None).completion, 2);
        // A count resets the estimate; later silent chunks build on it.
        let u = m.receive(Some(&counts(9, 5)));
        assert_eq!((u.prompt, u.completion), (9, 5));
        let u = m.receive(None);
        assert_eq!((u.prompt, u.completion), (9, 6));
    }

    #[test]
    fn costs_are_capped_at_the_reservation() {
        let c = |client, worker| Charge {
            client: Nanoton::new(client),
            worker: Nanoton::new(worker),
        };
        let reserved = Nanoton::new(1000);
        assert_eq!(capped(Ok(c(500, 400)), reserved), c(500, 400));
        // A worker reporting more than the client agreed to hold.
        assert_eq!(capped(Ok(c(5000, 4000)), reserved), c(1000, 1000));
        assert_eq!(capped(Ok(c(1200, 900)), reserved), c(1000, 900));
        let overflow = cocoon_core::PriceList::new(
            Nanoton::new(u64::MAX),
            Nanoton::new(1),
            [cocoon_core::BasisPoints::ONE; 4],
        )
        .and_then(|p| {
            p.cost(
                &Usage {
                    prompt: u64::MAX,
                    ..Usage::default()
                },
                Coefficient::ONE,
            )
        });
        assert!(overflow.is_err());
        assert_eq!(capped(overflow, reserved), c(1000, 1000));
    }

    #[test]
    fn durable_cost_only_grows() {
        let mut m = Meter::default();
        let c = |n| Charge {
            client: Nanoton::new(n),
            worker: Nanoton::new(n / 2),
        };
        assert!(m.above_durable(&c(10)));
        m.made_durable(&c(10));
        assert!(!m.above_durable(&c(10)));
        m.made_durable(&c(4));
        assert!(
            !m.above_durable(&c(8)),
            "a smaller checkpoint lowers nothing"
        );
        assert!(m.above_durable(&c(11)));
    }
}
