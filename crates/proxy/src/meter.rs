//! Metering one answer: what the worker says it has used and what reached
//! the client. What the books hold durably is the
//! [`Reservation`](crate::settlement::Reservation)'s to know.
//!
//! The rule the relay keeps: no chunk reaches the client before the cost of
//! everything up to and including it is durable. Chunks the worker has
//! already sent when one arrives ride on the same ledger commit (a burst),
//! and a burst that ends the answer rides on the settlement itself, so a
//! short answer costs a reservation and a settlement and nothing more. A
//! proxy killed at any moment has therefore lost no charge for anything
//! delivered; at worst it charges one burst that was made durable but not
//! yet forwarded.

use cocoon_core::Usage;
use cocoon_proto::TokenCounts;

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
}

impl Meter {
    /// Counts a chunk received from the worker and returns the tokens used
    /// through it. Engines that report no counts are charged one completion
    /// token per chunk after their last report: a lower bound, since a
    /// chunk carries at least one token of text.
    pub(crate) fn receive(&mut self, so_far: Option<&TokenCounts>) -> Usage {
        match so_far {
            Some(c) => {
                self.reported = Usage::from(c);
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
}
