//! The worker's HTTP port: stats pages and a small admin API.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use cocoon_core::Coefficient;
use cocoon_telemetry::{Snapshot, StatsSource, WorkerLoad};

use crate::Shared;

impl StatsSource for Shared {
    fn snapshot(&self) -> Snapshot {
        let coefficient = self.coefficient.borrow().per_mille();
        let latency = self.metrics.latency().snapshot();
        let counts = self.metrics.counts();
        let avg_ms = if latency.count > 0 {
            latency.sum_seconds * 1000.0 / latency.count as f64
        } else {
            0.0
        };
        let first_byte = self.metrics.ttfb().snapshot();
        let ttft_ms = if first_byte.count > 0 {
            first_byte.sum_seconds * 1000.0 / first_byte.count as f64
        } else {
            0.0
        };
        let mut info = std::collections::BTreeMap::new();
        info.insert("proxy".into(), self.config.proxy.clone());
        info.insert(
            "proxy_link".into(),
            if self.connected.load(Ordering::Relaxed) {
                "up"
            } else {
                "down"
            }
            .into(),
        );
        info.insert("engine".into(), self.engine.describe());
        info.insert("trust".into(), self.config.trust.describe());
        info.insert("payee".into(), self.address.to_string());
        // The key clients seal requests to; its certificate's claims name it.
        info.insert("e2e_key".into(), hex::encode(self.e2e.public()));
        if let Some(chain) = &self.config.chain {
            // On chain the payee is the worker's contract, which pays out
            // to this wallet.
            info.insert("wallet".into(), chain.wallet.address().to_string());
            info.insert("worker_contract".into(), self.address.to_string());
        }
        if let Some(why) = self.earnings.refused() {
            info.insert("proxy_refused".into(), why);
        }
        let me = WorkerLoad {
            id: self.config.name.clone(),
            identity: String::new(),
            model: self.config.model.to_string(),
            coefficient,
            running: self.jobs.len(),
            max_active: self.config.max_active_requests,
            total: counts.total,
            failed: counts.failed,
            avg_latency_ms: avg_ms,
            avg_ttft_ms: ttft_ms,
        };
        let (signed, signatures) = self.receipts.batcher.counts();
        let (earned, voucher_seqno) = self.earnings.latest().unwrap_or_default();
        let detail = WorkerFigures {
            earned,
            voucher_seqno,
            receipts_signed: signed,
            receipt_signatures: signatures,
            sessions_opened: self.connections.load(Ordering::Relaxed),
        };
        self.metrics
            .snapshot("worker", &self.config.name, self.started, vec![me], info)
            .with_peers_refused(self.config.trust.refusals())
            .with_detail(&detail)
    }
}

/// The worker's own figures in `/jsonstats` (`detail`).
#[derive(Debug, serde::Serialize)]
struct WorkerFigures {
    /// Earned in total, nanoton: the latest voucher's total (0 before one).
    earned: u64,
    /// The latest voucher's seqno.
    voucher_seqno: u64,
    /// Receipts signed, and the signatures that covered them.
    receipts_signed: u64,
    receipt_signatures: u64,
    /// Sessions with the proxy opened since start.
    sessions_opened: u32,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SetCoefficient {
    coefficient: u64,
}

/// `POST /admin/coefficient {"coefficient": N}`: changes the price
/// coefficient; the proxy learns it at once over the open session.
async fn set_coefficient(
    State(shared): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let req: SetCoefficient = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("expected {{\"coefficient\": PER_MILLE}}: {e}\n"),
            )
        }
    };
    match Coefficient::new(req.coefficient) {
        Ok(c) => {
            let old = shared.coefficient.send_replace(c);
            tracing::info!(from = %old, to = %c, "coefficient changed");
            (StatusCode::OK, format!("coefficient {old} -> {c}\n"))
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

/// `POST /admin/withdraw`: has the worker contract pay the latest
/// voucher's increase to the worker's wallet; answers what moved.
async fn withdraw(State(shared): State<Arc<Shared>>) -> axum::response::Response {
    match crate::payout::withdraw(&shared).await {
        Ok(w) => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&w).unwrap_or_default(),
        )
            .into_response(),
        Err(e) => {
            let status = match &e {
                e if e.is_chain() => StatusCode::BAD_GATEWAY,
                _ => StatusCode::CONFLICT,
            };
            let body = serde_json::json!({"error": e.to_string()}).to_string();
            (
                status,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
    }
}

/// `POST /admin/stake` `{"amount_nanoton": N}`: adds N to the worker
/// contract's stake from the wallet; answers what moved.
async fn stake(
    State(shared): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use crate::payout::WithdrawError;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ask {
        amount_nanoton: u64,
    }
    let json = |status: StatusCode, body: String| {
        (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    };
    let ask: Ask = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            let msg = format!("expected {{\"amount_nanoton\": N}}: {e}");
            return json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": msg }).to_string(),
            );
        }
    };
    match crate::payout::add_stake(&shared, cocoon_core::Nanoton::new(ask.amount_nanoton)).await {
        Ok(s) => json(
            StatusCode::OK,
            serde_json::to_string(&s).unwrap_or_default(),
        ),
        Err(e) => {
            let status = match &e {
                e if e.is_chain() => StatusCode::BAD_GATEWAY,
                WithdrawError::ZeroStake => StatusCode::BAD_REQUEST,
                _ => StatusCode::CONFLICT,
            };
            json(
                status,
                serde_json::json!({"error": e.to_string()}).to_string(),
            )
        }
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    let admin = axum::Router::new()
        .route("/admin/coefficient", axum::routing::post(set_coefficient))
        .route("/admin/withdraw", axum::routing::post(withdraw))
        .route("/admin/stake", axum::routing::post(stake))
        .with_state(shared.clone());
    cocoon_telemetry::router(shared)
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .merge(admin)
}
