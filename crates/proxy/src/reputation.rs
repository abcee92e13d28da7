//! What the proxy has seen of each worker's answers when it could compare
//! them: in a replicated request, whether the worker's answer was the one
//! most runs agreed on, or a spot-check confirmed it. Kept by the worker's
//! proved identity ([`WorkerId`]), across reconnects and renames.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::worker_id::WorkerId;

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

/// A record per worker identity.
#[derive(Debug)]
pub struct PerWorker<R> {
    by_worker: Mutex<BTreeMap<WorkerId, R>>,
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
    pub fn update(&self, worker: &WorkerId, f: impl FnOnce(&mut R)) {
        let mut g = self.by_worker.lock().unwrap_or_else(|p| p.into_inner());
        f(g.entry(worker.clone()).or_default());
    }

    /// `worker`'s record.
    pub fn of(&self, worker: &WorkerId) -> R {
        self.by_worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(worker)
            .copied()
            .unwrap_or_default()
    }

    /// Every record, by worker.
    pub fn all(&self) -> BTreeMap<WorkerId, R> {
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
    pub fn record(&self, worker: &WorkerId, agreed: bool) {
        self.0.update(worker, |r| {
            if agreed {
                r.agreed += 1;
            } else {
                r.dissented += 1;
            }
        });
    }

    /// `worker`'s record.
    pub fn of(&self, worker: &WorkerId) -> Record {
        self.0.of(worker)
    }

    /// Every record, by worker.
    pub fn all(&self) -> BTreeMap<WorkerId, Record> {
        self.0.all()
    }

    /// The table as published: JSON with no whitespace, workers sorted by
    /// identity (`worker`: [`WorkerId`]'s text) and members in the order written here, so that the same records always give the same bytes and the
    /// same SHA-256 (what the proxy contract's `publish_reputation` holds).
    pub fn table(&self, proxy: &str) -> Vec<u8> {
        let workers: Vec<serde_json::Value> = self
            .all()
            .into_iter()
            .map(|(worker, r)| {
                serde_json::json!({
                    "worker": worker.to_string(),
                    "agreed": r.agreed,
                    "dissented": r.dissented,
                    "avoided": r.suspect(),
                })
            })
            .collect();
        let table = serde_json::json!({ "proxy": proxy, "workers": workers });
        serde_json::to_vec(&table).unwrap_or_default()
    }
}

/// The table last published on chain, whose SHA-256 the proxy contract
/// holds: served at `/reputation/published` so that anyone can compare.
#[derive(Debug, Default)]
pub(crate) struct PublishedTable(Mutex<Option<Vec<u8>>>);

impl PublishedTable {
    pub(crate) fn get(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, table: Vec<u8>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(table);
    }
}

/// How often the table is published when it changed.
const PUBLISH_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
/// Gas carried with a publication; what is left comes back.
const PUBLISH_GAS: cocoon_core::Nanoton = cocoon_core::Nanoton::new(50_000_000);

/// Publishes the table's digest to the proxy contract from the operator's
/// wallet, every [`PUBLISH_EVERY`] when it changed, until `stop`.
pub(crate) async fn publish(
    shared: std::sync::Arc<crate::Shared>,
    contracts: std::sync::Arc<crate::client_contracts::ClientContracts>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PUBLISH_EVERY) => {}
            _ = stop.changed() => return,
        }
        let reputation = shared.registry.reputation();
        let table = reputation.table(&shared.config.name);
        if shared.published.get().as_deref() == Some(table.as_slice()) {
            continue;
        }
        let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&table).into();
        let workers = reputation.all().len() as u32;
        let sent = async {
            let body = cocoon_chain::contracts::publish_reputation(
                cocoon_core::unix_now(),
                &tycho_types::cell::HashBytes(digest),
                workers,
            )
            .map_err(|e| e.to_string())?;
            contracts
                .operator_send(
                    contracts.proxy_contract().clone(),
                    body,
                    PUBLISH_GAS,
                    std::time::Duration::from_secs(60),
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        .await;
        match sent {
            Ok(()) => {
                tracing::info!(digest = %hex::encode(digest), workers, "reputation table published on chain");
                shared.published.set(table);
            }
            Err(e) => {
                tracing::warn!(error = %e, "publishing the reputation table failed; will try again")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(name: &str) -> WorkerId {
        WorkerId::ReceiptKey([name.as_bytes()[name.len() - 1]; 32])
    }

    #[test]
    fn one_dissent_in_ten_is_tolerated_more_is_not() {
        let r = Reputation::default();
        assert!(!r.of(&w("w")).suspect(), "an unknown worker is not suspect");
        r.record(&w("w"), false);
        assert!(r.of(&w("w")).suspect());
        for _ in 0..9 {
            r.record(&w("w"), true);
        }
        assert!(!r.of(&w("w")).suspect(), "{}", r.of(&w("w")));
        r.record(&w("w"), false);
        assert!(r.of(&w("w")).suspect(), "{}", r.of(&w("w")));
        assert_eq!(r.of(&w("w")).to_string(), "9 agreed, 2 dissented (avoided)");
    }

    #[test]
    fn the_published_table_is_the_same_bytes_for_the_same_records_in_any_order() {
        let a = Reputation::default();
        a.record(&w("w2"), true);
        a.record(&w("w1"), false);
        let b = Reputation::default();
        b.record(&w("w1"), false);
        b.record(&w("w2"), true);
        assert_eq!(a.table("p"), b.table("p"));
        assert_eq!(
            String::from_utf8(a.table("p")).unwrap(),
            format!(
                r#"{{"proxy":"p","workers":[{{"worker":"key:{}","agreed":0,"dissented":1,"avoided":true}},{{"worker":"key:{}","agreed":1,"dissented":0,"avoided":false}}]}}"#,
                "31".repeat(32),
                "32".repeat(32)
            )
        );
        b.record(&w("w2"), true);
        assert_ne!(
            a.table("p"),
            b.table("p"),
            "a new record changes the digest"
        );
    }
}
