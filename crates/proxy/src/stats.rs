use std::sync::Arc;

use axum::response::IntoResponse as _;

use cocoon_telemetry::{Snapshot, StatsSource};
use serde::Serialize;

use crate::spot_check::CheckRecord;
use crate::worker_id::WorkerId;
use crate::Shared;

impl StatsSource for Shared {
    fn snapshot(&self) -> Snapshot {
        let workers: Vec<_> = self.registry.all().iter().map(|w| w.load()).collect();
        let mut info = std::collections::BTreeMap::new();
        info.insert("listen".into(), self.config.listen.to_string());
        info.insert("trust".into(), self.config.trust.describe());
        info.insert("workers_connected".into(), workers.len().to_string());
        chain_info(&self.config.charging, &mut info);
        let detail = ProxyFigures {
            workers: self.worker_records(),
            ledger: self
                .config
                .charging
                .payments()
                .map(|p| LedgerFigures::of(p)),
            chain: self.config.charging.contracts().map(|c| c.figures()),
            slash_evidence: self.slashing.all(),
            idempotency: self.idempotency.stats(),
        };
        self.metrics
            .snapshot("proxy", &self.config.name, self.started, workers, info)
            .with_peers_refused(self.config.trust.refusals())
            .with_queue(self.registry.admission().stats())
            .with_detail(&detail)
    }
}

impl Shared {
    /// Every worker identity with a record, or connected now.
    fn worker_records(&self) -> Vec<WorkerRecord> {
        let mut by_id: std::collections::BTreeMap<WorkerId, WorkerRecord> = Default::default();
        let blank = |identity: &WorkerId| WorkerRecord {
            identity: identity.clone(),
            names: Vec::new(),
            reputation: ReputationFigures::default(),
            spot_checks: CheckRecord::default(),
        };
        for w in self.registry.all() {
            let r = by_id
                .entry(w.identity.clone())
                .or_insert_with(|| blank(&w.identity));
            if !r.names.contains(&w.name) {
                r.names.push(w.name.clone());
            }
        }
        for (id, rec) in self.registry.reputation().all() {
            by_id
                .entry(id.clone())
                .or_insert_with(|| blank(&id))
                .reputation = ReputationFigures {
                agreed: rec.agreed,
                dissented: rec.dissented,
                avoided: rec.suspect(),
            };
        }
        for (id, rec) in self.spot_checks.all() {
            by_id
                .entry(id.clone())
                .or_insert_with(|| blank(&id))
                .spot_checks = rec;
        }
        by_id.into_values().collect()
    }
}

/// The proxy's own figures in `/jsonstats` (`detail`).
#[derive(Debug, Serialize)]
struct ProxyFigures {
    /// Every worker identity it has a record of.
    workers: Vec<WorkerRecord>,
    /// Its books, when it charges.
    #[serde(skip_serializing_if = "Option::is_none")]
    ledger: Option<LedgerFigures>,
    /// Client contracts on chain, when it charges on one.
    #[serde(skip_serializing_if = "Option::is_none")]
    chain: Option<crate::client_contracts::ChainFigures>,
    /// Slash evidence it signed.
    slash_evidence: Vec<crate::slashing::SlashRecord>,
    /// Answers held for retries of idempotent requests.
    idempotency: crate::idempotency::IdempotencyStats,
}

/// What the proxy knows of one worker identity.
#[derive(Debug, Serialize)]
struct WorkerRecord {
    identity: WorkerId,
    /// The names its sessions announce now (labels; none while away).
    names: Vec<String>,
    reputation: ReputationFigures,
    spot_checks: CheckRecord,
}

#[derive(Debug, Default, Serialize)]
struct ReputationFigures {
    agreed: u64,
    dissented: u64,
    /// Whether routing avoids it.
    avoided: bool,
}

/// The ledger, in nanoton.
#[derive(Debug, Serialize)]
struct LedgerFigures {
    deposited: u64,
    charged: u64,
    earned: u64,
    commission: u64,
    reserved: u64,
    in_flight: u64,
    /// Ledger transactions committed, and the operations they carried.
    commits: u64,
    ops: u64,
    price_per_token: u64,
    worker_fee_per_token: u64,
    clients: Vec<ClientFigures>,
    workers: Vec<WorkerAccountFigures>,
}

#[derive(Debug, Serialize)]
struct ClientFigures {
    address: String,
    deposited: u64,
    spent: u64,
    reserved: u64,
    available: u64,
    seqno: u64,
    status: &'static str,
}

#[derive(Debug, Serialize)]
struct WorkerAccountFigures {
    address: String,
    earned: u64,
    paid_out: u64,
    seqno: u64,
    /// Check fees the commission could not cover yet.
    checks_due: u64,
}

impl LedgerFigures {
    fn of(p: &crate::Payments) -> Self {
        let t = p.ledger.totals();
        let (commits, ops) = p.ledger.commit_stats();
        let prices = p.prices.get();
        LedgerFigures {
            deposited: t.deposited.get(),
            charged: t.charged.get(),
            earned: t.earned.get(),
            commission: t.commission.get(),
            reserved: t.reserved.get(),
            in_flight: t.in_flight,
            commits,
            ops,
            price_per_token: prices.price_per_token.get(),
            worker_fee_per_token: prices.worker_fee_per_token.get(),
            clients: (p.ledger.clients().into_iter())
                .map(|(addr, a)| ClientFigures {
                    address: addr.to_string(),
                    deposited: a.deposited.get(),
                    spent: a.charged.get(),
                    reserved: a.reserved.get(),
                    available: a.available().get(),
                    seqno: a.seqno,
                    status: a.status.as_str(),
                })
                .collect(),
            workers: (p.ledger.workers().into_iter())
                .map(|(addr, a)| WorkerAccountFigures {
                    address: addr.to_string(),
                    earned: a.earned.get(),
                    paid_out: a.paid_out.get(),
                    seqno: a.seqno,
                    checks_due: a.checks_due.get(),
                })
                .collect(),
        }
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    let evidence = shared.clone();
    let current = shared.clone();
    let published = shared.clone();
    cocoon_telemetry::router(shared)
        .route(
            "/reputation",
            axum::routing::get(move || {
                let table = current.registry.reputation().table(&current.config.name);
                async move { json(table) }
            }),
        )
        .route(
            "/reputation/published",
            axum::routing::get(move || {
                let table = published.published.get();
                async move {
                    match table {
                        Some(t) => json(t).into_response(),
                        None => (
                            axum::http::StatusCode::NOT_FOUND,
                            "no reputation table published on chain yet\n",
                        )
                            .into_response(),
                    }
                }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route(
            "/evidence",
            axum::routing::get(move || {
                let body = serde_json::to_string_pretty(&evidence.slashing.all())
                    .unwrap_or_else(|_| "[]".into());
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                }
            }),
        )
}

fn json(body: Vec<u8>) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
}

/// The chain's facts that are text, as `info` entries: the proxy contract
/// and the root registry.
fn chain_info(charging: &crate::Charging, info: &mut std::collections::BTreeMap<String, String>) {
    if let Some(p) = charging.payments() {
        info.insert("contract".into(), p.contract.to_string());
    }
    if let Some(r) = charging.registry() {
        let (k, v) = r.describe();
        info.insert(k, v);
    }
}
