//! Observability shared by every node: request counters, token counters by
//! kind, errors by reason, latency histograms, and their three renderings —
//! Prometheus text (`/metrics`), a page for humans (`/stats`) and JSON
//! (`/jsonstats`). Also the logging set-up.

mod histogram;
mod metrics;
mod render;

pub use histogram::{Histogram, HistogramSnapshot};
pub use metrics::{ActiveRequest, RequestMetrics};
pub use render::{render_human, render_prometheus};

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::response::IntoResponse;
use serde::Serialize;

/// Everything a node reports about itself at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// `client`, `proxy` or `worker`.
    pub role: &'static str,
    /// The node's name.
    pub node: String,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// Request counters.
    pub requests: RequestCounts,
    /// Tokens served, by kind.
    pub tokens: TokenCounts,
    /// Failed requests by reason.
    pub errors: BTreeMap<String, u64>,
    /// Peers refused at the TLS handshake, by the attestation check that failed.
    pub peers_refused: BTreeMap<String, u64>,
    /// Whole-request latency.
    pub latency: HistogramSnapshot,
    /// Time to first answer byte.
    pub time_to_first_byte: HistogramSnapshot,
    /// Per-worker load (proxy: every connected worker; worker: itself).
    pub workers: Vec<WorkerLoad>,
    /// Free-form facts: peer addresses, link state, configuration.
    pub info: BTreeMap<String, String>,
    /// Requests waiting for a worker slot (proxies only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueStats>,
    /// The node's own figures from its typed records (a proxy: each
    /// worker identity's record, its ledger), numbers as numbers; `null`
    /// when it has none. `/stats` shows the same, indented.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
    /// The node's own labelled Prometheus series (a client: usage per API
    /// key); `/jsonstats` carries the same figures in `detail`.
    #[serde(skip)]
    pub series: Vec<Series>,
}

/// One labelled Prometheus metric family of a node's own.
#[derive(Debug, Clone)]
pub struct Series {
    /// The name after `cocoon_`.
    pub name: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    /// What it counts.
    pub help: &'static str,
    /// Each sample's labels (beside `role`) and value.
    pub samples: Vec<(Vec<(&'static str, String)>, u64)>,
}

impl Snapshot {
    /// Adds the node's own typed figures (see [`Snapshot::detail`]).
    pub fn with_detail(mut self, detail: &impl Serialize) -> Self {
        self.detail = serde_json::to_value(detail).unwrap_or_else(|e| {
            serde_json::Value::String(format!("figures could not be encoded: {e}"))
        });
        self
    }

    /// Adds labelled series of the node's own (see [`Snapshot::series`]).
    pub fn with_series(mut self, series: Vec<Series>) -> Self {
        self.series.extend(series);
        self
    }

    /// Adds the admission queue's figures.
    pub fn with_queue(mut self, queue: QueueStats) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Adds the peers refused at the handshake, by failed check, and the
    /// latest refusal's message (as `info.last_peer_refusal`).
    pub fn with_peers_refused(
        mut self,
        (refused, last): (BTreeMap<&'static str, u64>, Option<String>),
    ) -> Self {
        self.peers_refused = refused
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        if let Some(last) = last {
            self.info.insert("last_peer_refusal".into(), last);
        }
        self
    }
}

/// Requests waiting for a worker slot, and how their waits ended.
#[derive(Debug, Clone, Serialize)]
pub struct QueueStats {
    /// Most requests that may wait per model.
    pub max_waiting: u64,
    /// Requests waiting now, by model (models with nobody waiting omitted).
    pub waiting: BTreeMap<String, u64>,
    /// Waits that ended with a worker slot.
    pub admitted: u64,
    /// Requests refused because the line was full.
    pub refused_full: u64,
    /// Waits that ended at the request's deadline.
    pub timed_out: u64,
    /// Waits abandoned by the caller.
    pub cancelled: u64,
    /// Time spent waiting, over every ended wait.
    pub wait: HistogramSnapshot,
}

/// Request counters.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RequestCounts {
    /// In flight now.
    pub active: u64,
    /// Started since boot.
    pub total: u64,
    /// Finished with a complete answer.
    pub succeeded: u64,
    /// Finished with an error.
    pub failed: u64,
}

/// Tokens by kind.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TokenCounts {
    /// Prompt tokens (cached included).
    pub prompt: u64,
    /// Prompt tokens served from cache.
    pub cached: u64,
    /// Completion tokens (reasoning included).
    pub completion: u64,
    /// Reasoning tokens.
    pub reasoning: u64,
}

/// Load of one worker as seen by the reporting node.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerLoad {
    /// The name the worker announced (a label).
    pub id: String,
    /// Who the worker is, as the reporting node proved it (a worker
    /// contract, `key:` and its receipt key, or `name:` when unproven);
    /// what its records are kept under. Empty in a worker's own report.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub identity: String,
    /// Model served.
    pub model: String,
    /// Price coefficient, per-mille.
    pub coefficient: u32,
    /// Requests running now.
    pub running: u32,
    /// Most requests it accepts at once.
    pub max_active: u32,
    /// Requests sent to it since it connected.
    pub total: u64,
    /// Requests that failed on it.
    pub failed: u64,
    /// Moving average of request duration, milliseconds.
    pub avg_latency_ms: f64,
    /// Moving average of the time to the answer's first byte, milliseconds.
    pub avg_ttft_ms: f64,
}

/// A node that can describe itself.
pub trait StatsSource: Send + Sync + 'static {
    /// The current state.
    fn snapshot(&self) -> Snapshot;
}

/// Routes `/metrics`, `/stats` and `/jsonstats` for a node.
pub fn router<S: StatsSource>(source: Arc<S>) -> axum::Router {
    use axum::routing::get;
    let (a, b, c) = (source.clone(), source.clone(), source);
    axum::Router::new()
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    render_prometheus(&a.snapshot()),
                )
                    .into_response()
            }),
        )
        .route(
            "/stats",
            get(move || async move {
                (
                    [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    render_human(&b.snapshot()),
                )
                    .into_response()
            }),
        )
        .route(
            "/jsonstats",
            get(move || async move {
                let body = serde_json::to_string_pretty(&c.snapshot())
                    .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
                ([(http::header::CONTENT_TYPE, "application/json")], body).into_response()
            }),
        )
}

/// Sets up logging to stderr. `RUST_LOG` overrides `default_filter`.
/// Colours only on a terminal that takes them: a log file or a pipe gets
/// plain text, and `NO_COLOR` (any value) turns them off.
pub fn init_logging(default_filter: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none()
        && std::env::var("TERM").map_or(true, |t| t != "dumb");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(colour)
        .try_init();
}
