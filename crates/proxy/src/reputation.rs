//! What the proxy has seen of each worker's answers when it could compare
//! them: in a replicated request, whether the worker's answer was the one
//! most runs agreed on. Kept by worker name, across reconnects.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// One worker's record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    /// Compared answers that agreed with the majority.
    pub agreed: u64,
    /// Compared answers that differed from it.
    pub dissented: u64,
}

impl Record {
    /// Routing avoids a worker once more than one in ten of its compared
    /// answers differed from the majority (a single dissent on a worker
    /// with no agreements is enough), as long as another worker serves the
    /// model.
    pub fn suspect(&self) -> bool {
        self.dissented > 0 && self.dissented * 10 > self.agreed + self.dissented
    }
}

impl std::fmt::Display for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} agreed, {} dissented", self.agreed, self.dissented)?;
        if self.suspect() {
            f.write_str(" (avoided)")?;
        }
        Ok(())
    }
}

/// A record per worker name.
#[derive(Debug)]
pub struct PerWorker<R> {
    by_worker: Mutex<BTreeMap<String, R>>,
}

impl<R> Default for PerWorker<R> {
    fn default() -> Self {
        PerWorker {
            by_worker: Mutex::default(),
        }
    }
}

impl<R: Copy + Default> PerWorker<R> {
    /// Changes `worker`'s record.
    pub fn update(&self, worker: &str, f: impl FnOnce(&mut R)) {
        let mut g = self.by_worker.lock().unwrap_or_else(|p| p.into_inner());
        f(g.entry(worker.to_string()).or_default());
    }

    /// `worker`'s record.
    pub fn of(&self, worker: &str) -> R {
        self.by_worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(worker)
            .copied()
            .unwrap_or_default()
    }

    /// Every record, by worker.
    pub fn all(&self) -> BTreeMap<String, R> {
        self.by_worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Every worker's record.
#[derive(Debug, Default)]
pub struct Reputation(PerWorker<Record>);

impl Reputation {
    /// Records one compared answer of `worker`.
    pub fn record(&self, worker: &str, agreed: bool) {
        self.0.update(worker, |r| {
            if agreed {
                r.agreed += 1;
            } else {
                r.dissented += 1;
            }
        });
    }

    /// `worker`'s record.
    pub fn of(&self, worker: &str) -> Record {
        self.0.of(worker)
    }

    /// Every record, by worker.
    pub fn all(&self) -> BTreeMap<String, Record> {
        self.0.all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_dissent_in_ten_is_tolerated_more_is_not() {
        let r = Reputation::default();
        assert!(!r.of("w").suspect(), "an unknown worker is not suspect");
        r.record("w", false);
        assert!(r.of("w").suspect());
        for _ in 0..9 {
            r.record("w", true);
        }
        assert!(!r.of("w").suspect(), "{}", r.of("w"));
        r.record("w", false);
        assert!(r.of("w").suspect(), "{}", r.of("w"));
        assert_eq!(r.of("w").to_string(), "9 agreed, 2 dissented (avoided)");
    }
}
