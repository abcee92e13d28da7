//! Which moments of a link to a peer deserve a log line: it came up, it was
//! lost, it came back. Never the health checks or retries in between, so an
//! idle node's log stays still and an outage is one warning, not one a
//! retry.

use std::time::{Duration, Instant};

/// Tracks one outbound link (a client's or a worker's to its proxy) and
/// says, on each attempt's outcome, whether that outcome is news.
#[derive(Debug, Clone)]
pub struct LinkLog {
    state: State,
    ever_up: bool,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// No attempt has finished yet.
    Starting,
    Up,
    /// Down since `since`, after `failures` failed attempts.
    Down {
        since: Instant,
        failures: u32,
    },
}

/// What an attempt that succeeded means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkUp {
    /// The link is up for the first time; `failures` attempts failed before
    /// (the peer was still starting, say).
    Connected {
        /// Failed attempts before this one.
        failures: u32,
    },
    /// The link is back after an outage.
    Reconnected {
        /// How long it was down.
        outage: Duration,
        /// Failed attempts during the outage.
        failures: u32,
    },
    /// The link was up already: a routine check, nothing to report.
    StillUp,
}

/// What an attempt that failed means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkDown {
    /// The link was up and is now lost.
    Lost,
    /// The very first attempts fail (or the first failure of any outage
    /// that did not follow an up link).
    Unreachable,
    /// Another failure of an outage already reported.
    StillDown {
        /// Failed attempts in this outage so far, this one included.
        failures: u32,
    },
}

impl LinkDown {
    /// Whether this failure starts an outage, the one worth a warning.
    pub fn is_news(self) -> bool {
        !matches!(self, LinkDown::StillDown { .. })
    }
}

impl LinkUp {
    /// Whether this success changes the link's state, worth an info line.
    pub fn is_news(self) -> bool {
        !matches!(self, LinkUp::StillUp)
    }
}

impl Default for LinkLog {
    fn default() -> Self {
        LinkLog::new()
    }
}

impl LinkLog {
    /// A link not yet attempted.
    pub fn new() -> Self {
        LinkLog {
            state: State::Starting,
            ever_up: false,
        }
    }

    /// Whether the last attempt succeeded.
    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up)
    }

    /// An attempt (a connection, a health check) succeeded.
    pub fn up(&mut self) -> LinkUp {
        self.up_at(Instant::now())
    }

    /// An attempt failed, or an established link was lost.
    pub fn down(&mut self) -> LinkDown {
        self.down_at(Instant::now())
    }

    fn up_at(&mut self, now: Instant) -> LinkUp {
        let before = std::mem::replace(&mut self.state, State::Up);
        let ever_up = std::mem::replace(&mut self.ever_up, true);
        match before {
            State::Up => LinkUp::StillUp,
            State::Starting => LinkUp::Connected { failures: 0 },
            State::Down { failures, .. } if !ever_up => LinkUp::Connected { failures },
            State::Down { since, failures } => LinkUp::Reconnected {
                outage: now.saturating_duration_since(since),
                failures,
            },
        }
    }

    fn down_at(&mut self, now: Instant) -> LinkDown {
        match &mut self.state {
            State::Down { failures, .. } => {
                *failures += 1;
                LinkDown::StillDown {
                    failures: *failures,
                }
            }
            State::Up => {
                self.state = State::Down {
                    since: now,
                    failures: 0,
                };
                LinkDown::Lost
            }
            State::Starting => {
                self.state = State::Down {
                    since: now,
                    failures: 1,
                };
                LinkDown::Unreachable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routine_checks_are_not_news() {
        let mut link = LinkLog::new();
        let t = Instant::now();
        assert_eq!(link.up_at(t), LinkUp::Connected { failures: 0 });
        for _ in 0..100 {
            assert_eq!(link.up_at(t), LinkUp::StillUp);
            assert!(!link.up_at(t).is_news());
        }
        assert!(link.is_up());
    }

    #[test]
    fn an_outage_is_reported_once_and_its_end_with_its_length() {
        let mut link = LinkLog::new();
        let t = Instant::now();
        link.up_at(t);
        assert_eq!(link.down_at(t), LinkDown::Lost);
        assert!(!link.is_up());
        // The session was lost; every retry that fails is one more failure.
        assert_eq!(link.down_at(t), LinkDown::StillDown { failures: 1 });
        assert_eq!(link.down_at(t), LinkDown::StillDown { failures: 2 });
        assert!(!link.down_at(t).is_news());
        assert_eq!(
            link.up_at(t + Duration::from_secs(7)),
            LinkUp::Reconnected {
                outage: Duration::from_secs(7),
                failures: 3
            }
        );
        assert_eq!(link.up_at(t), LinkUp::StillUp);
        // A second outage is news again.
        assert!(link.down_at(t).is_news());
    }

    #[test]
    fn a_peer_still_starting_is_reported_once_then_connected() {
        let mut link = LinkLog::new();
        let t = Instant::now();
        assert_eq!(link.down_at(t), LinkDown::Unreachable);
        assert_eq!(link.down_at(t), LinkDown::StillDown { failures: 2 });
        assert_eq!(link.up_at(t), LinkUp::Connected { failures: 2 });
    }
}
