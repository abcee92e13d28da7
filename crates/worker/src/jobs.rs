//! Requests running on this worker, so they can be counted and cancelled.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::task::AbortHandle;

/// Running requests by id, bounded by `max_active_requests`.
pub(crate) struct Jobs {
    max: u32,
    running: Mutex<HashMap<String, AbortHandle>>,
}

/// Why a job could not be admitted.
#[derive(Debug)]
pub(crate) enum Refused {
    Full(u32),
    Duplicate,
}

impl Jobs {
    pub(crate) fn new(max: u32) -> Self {
        Jobs {
            max,
            running: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, AbortHandle>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a job if there is room; `start` spawns it and returns its
    /// abort handle while the lock is held, so a cancel cannot slip between.
    pub(crate) fn admit(
        &self,
        id: &str,
        start: impl FnOnce() -> AbortHandle,
    ) -> Result<(), Refused> {
        let mut running = self.lock();
        if running.contains_key(id) {
            return Err(Refused::Duplicate);
        }
        if running.len() as u32 >= self.max {
            return Err(Refused::Full(self.max));
        }
        running.insert(id.to_string(), start());
        Ok(())
    }

    /// Forgets a finished job.
    pub(crate) fn finished(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Aborts a job; true if it was running.
    pub(crate) fn cancel(&self, id: &str) -> bool {
        match self.lock().remove(id) {
            Some(h) => {
                h.abort();
                true
            }
            None => false,
        }
    }

    /// Aborts every job (the session with the proxy is gone).
    pub(crate) fn abort_all(&self) -> usize {
        let drained: Vec<_> = self.lock().drain().collect();
        for (_, h) in &drained {
            h.abort();
        }
        drained.len()
    }

    pub(crate) fn len(&self) -> u32 {
        self.lock().len() as u32
    }
}
