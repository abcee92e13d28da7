use std::time::Duration;

/// Exponential backoff with jitter for reconnecting to a peer: the delay
/// doubles from `initial` up to `max`, each delay randomised to 50–100% so
/// that many workers restarting together do not reconnect in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    seed: u64,
}

impl Backoff {
    /// A backoff starting at `initial` and capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15)
            | 1;
        Backoff {
            initial,
            max,
            next: initial,
            seed,
        }
    }

    /// The delay before the next attempt; grows on every call.
    pub fn next_delay(&mut self) -> Duration {
        // xorshift64: jitter only needs to decorrelate peers, not be secure.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let frac = 0.5 + (self.seed % 1000) as f64 / 2000.0;
        base.mul_f64(frac)
    }

    /// Call after a successful connection: the next failure starts over.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(2));
        }
        let late = b.next_delay();
        assert!(
            late >= Duration::from_secs(1),
            "capped delay stays near max: {late:?}"
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
