use std::sync::Arc;

use axum::response::IntoResponse as _;

use cocoon_telemetry::{Snapshot, StatsSource};

use crate::Shared;

impl StatsSource for Shared {
    fn snapshot(&self) -> Snapshot {
        let workers: Vec<_> = self.registry.all().iter().map(|w| w.load()).collect();
        let mut info = std::collections::BTreeMap::new();
        info.insert("listen".into(), self.config.listen.to_string());
        info.insert("trust".into(), self.config.trust.describe());
        info.insert("workers_connected".into(), workers.len().to_string());
        if let Some(p) = &self.config.payments {
            ledger_info(p, &mut info);
        }
        for (worker, record) in self.registry.reputation().all() {
            info.insert(format!("reputation {worker}"), record.to_string());
        }
        for (worker, record) in self.spot_checks.all() {
            info.insert(format!("spot-checks {worker}"), record.to_string());
        }
        for r in self.slashing.all() {
            info.insert(
                format!(
                    "slash evidence {} request {}",
                    r.worker,
                    &r.request_sha256[..16]
                ),
                format!(
                    "the root's share of {} to the client contract of {}: {}",
                    r.worker_contract, r.client_owner, r.submitted
                ),
            );
        }
        self.metrics
            .snapshot("proxy", &self.config.name, self.started, workers, info)
            .with_peers_refused(self.config.trust.refusals())
            .with_queue(self.registry.admission().stats())
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

/// The ledger's totals and every account, as `info` entries: integer
/// nanoton, one line per client (`client 0:…`) and worker (`worker 0:…`).
fn ledger_info(p: &crate::Payments, info: &mut std::collections::BTreeMap<String, String>) {
    let t = p.ledger.totals();
    for (k, v) in [
        ("ledger_deposited_nanoton", t.deposited),
        ("ledger_charged_nanoton", t.charged),
        ("ledger_earned_nanoton", t.earned),
        ("ledger_commission_nanoton", t.commission),
        ("ledger_reserved_nanoton", t.reserved),
    ] {
        info.insert(k.into(), v.get().to_string());
    }
    info.insert("ledger_in_flight".into(), t.in_flight.to_string());
    let (commits, ops) = p.ledger.commit_stats();
    info.insert("ledger_commits".into(), commits.to_string());
    info.insert("ledger_ops".into(), ops.to_string());
    info.insert("contract".into(), p.contract.to_string());
    if let Some(d) = &p.client_contracts {
        info.extend(d.describe());
    }
    if let Some(r) = &p.registry {
        let (k, v) = r.describe();
        info.insert(k, v);
    }
    let prices = p.prices.get();
    info.insert(
        "price_per_token_nanoton".into(),
        prices.price_per_token.get().to_string(),
    );
    info.insert(
        "worker_fee_per_token_nanoton".into(),
        prices.worker_fee_per_token.get().to_string(),
    );
    for (addr, a) in p.ledger.clients() {
        info.insert(
            format!("client {addr}"),
            format!(
                "deposited={} spent={} reserved={} available={} seqno={} status={}",
                a.deposited.get(),
                a.charged.get(),
                a.reserved.get(),
                a.available().get(),
                a.seqno,
                a.status.as_str()
            ),
        );
    }
    for (addr, a) in p.ledger.workers() {
        info.insert(
            format!("worker {addr}"),
            format!(
                "earned={} paid_out={} seqno={} checks_due={}",
                a.earned.get(),
                a.paid_out.get(),
                a.seqno,
                a.checks_due.get()
            ),
        );
    }
}
