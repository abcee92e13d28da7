//! The pages people use: the network explorer (`/`) and the private chat
//! (`/chat`, which also runs as a Telegram Mini App). Small static assets
//! compiled into the binary; every page is served with a content security
//! policy that lets nothing load from another origin.
//!
//! Public data behind them (no key needed; nothing in it is secret):
//! - `GET /v1/cocoon/explorer`: the registry, what this client verified,
//!   the models and workers, and tokens and spend per minute;
//! - `POST /v1/cocoon/receipts/verify`: a saved answer checked;
//! - `GET /v1/cocoon/receipts/{request_id}`: one kept receipt;
//! - `GET /v1/cocoon/deposit-qr.svg?amount_nanoton=N`: the top-up link as
//!   a QR code.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::openai::ApiError;
use crate::Shared;

/// How long a read of the registry is shown before it is read again.
const REGISTRY_TTL: Duration = Duration::from_secs(10);

/// No script, style, image or connection from another origin; no framing
/// by another origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'self' https://web.telegram.org";

/// The embedded assets: name, content type, bytes.
const ASSETS: [(&str, &str, &str); 6] = [
    (
        "cocoon.css",
        "text/css; charset=utf-8",
        include_str!("assets/cocoon.css"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/common.js"),
    ),
    (
        "explorer.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/explorer.js"),
    ),
    (
        "chat.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/chat.js"),
    ),
    (
        "e2ee.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/e2ee.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("assets/favicon.svg"),
    ),
];

/// The last registry read.
#[derive(Debug, Default)]
pub struct RegistryCache(Mutex<Option<(Instant, serde_json::Value)>>);

impl RegistryCache {
    /// The registry `root` describes on `chain`, read at most every
    /// [`REGISTRY_TTL`]; what could not be read says why.
    async fn read(
        &self,
        chain: &cocoon_chain::Toncenter,
        root: &tycho_types::models::StdAddr,
    ) -> serde_json::Value {
        let cached = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some((_, v)) = cached.filter(|(at, _)| at.elapsed() < REGISTRY_TTL) {
            return v;
        }
        let v = cocoon_chain::registry::describe(chain, root)
            .await
            .unwrap_or_else(|e| serde_json::json!({ "unreadable": e.to_string() }));
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), v.clone()));
        v
    }
}

pub(crate) fn routes(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route(
            "/",
            get(|| async { page(include_str!("assets/explorer.html")) }),
        )
        .route(
            "/chat",
            get(|| async { page(include_str!("assets/chat.html")) }),
        )
        .route("/assets/{name}", get(asset))
        .route("/v1/cocoon/explorer", get(explorer))
        .route(
            "/v1/cocoon/receipts/verify",
            post(crate::receipts::verify_saved).fallback(crate::api::method_not_allowed),
        )
        .route("/v1/cocoon/receipts/{id}", get(crate::receipts::one))
        .route("/v1/cocoon/deposit-qr.svg", get(deposit_qr))
        .with_state(shared)
}

fn page(html: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    secure(&mut r);
    r
}

fn secure(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => {
            let mut r = ([(header::CONTENT_TYPE, *kind)], *body).into_response();
            secure(&mut r);
            r
        }
        None => ApiError::request(
            StatusCode::NOT_FOUND,
            "unknown_asset",
            format!("no asset {name:?}"),
        )
        .into_response(),
    }
}

/// Everything the explorer shows, in one read.
async fn explorer(State(shared): State<Arc<Shared>>) -> Response {
    let models = match crate::api::model_list(&shared).await {
        Ok(list) => serde_json::from_slice(&list.to_json()).unwrap_or_default(),
        Err(status) => serde_json::json!({ "unreachable": status.message() }),
    };
    let prices = shared
        .prices
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .prices();
    let body = serde_json::json!({
        "client": {
            "name": shared.config.name,
            "proxy": shared.config.proxy,
            "proxy_name": shared.proxy_name.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            "proxy_link": if shared.proxy_up.load(std::sync::atomic::Ordering::Relaxed) { "up" } else { "down" },
            "receipts_checked": shared.receipts.checks(),
            "uptime_seconds": shared.started.elapsed().as_secs(),
        },
        "access": {
            "restricted": shared.access.restricted(),
            "telegram": shared.config.access.telegram.is_some(),
        },
        "prices": prices.map(|p| serde_json::json!({
            "price_per_token": p.list.price_per_token.get(),
            "worker_fee_per_token": p.list.worker_fee_per_token.get(),
            "multipliers_bp": {
                "prompt": p.list.prompt.get(),
                "cached": p.list.cached.get(),
                "completion": p.list.completion.get(),
                "reasoning": p.list.reasoning.get(),
            },
            "default_max_tokens": p.default_max_tokens,
        })),
        "chain": shared.config.chain,
        "registry": registry(&shared).await,
        "attestation": crate::attestation::summary(&shared),
        "models": models,
        "history": shared.history.minutes(),
        "price_history": shared.history.prices(),
        "receipts_kept": shared.receipts.kept_count(),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The root registry, read at most every [`REGISTRY_TTL`].
async fn registry(shared: &Shared) -> serde_json::Value {
    let (Some(info), Some(wallet)) = (&shared.config.chain, &shared.config.wallet) else {
        return serde_json::Value::Null;
    };
    match info.root.parse() {
        Ok(root) => shared.registry.read(wallet.chain.as_ref(), &root).await,
        Err(e) => serde_json::json!({ "unreadable": format!("root {}: {e}", info.root) }),
    }
}

#[derive(Debug, serde::Deserialize)]
struct QrQuery {
    amount_nanoton: Option<u64>,
}

/// The top-up link of this client's contract as an SVG QR code, for a
/// wallet app's camera.
async fn deposit_qr(State(shared): State<Arc<Shared>>, Query(q): Query<QrQuery>) -> Response {
    if shared.config.chain.is_none() {
        return ApiError::request(
            StatusCode::NOT_FOUND,
            "no_chain",
            "this client is not connected to a chain: it runs on a development ledger",
        )
        .into_response();
    }
    let amount = cocoon_core::Nanoton::new(
        q.amount_nanoton
            .filter(|n| *n > 0)
            .unwrap_or(cocoon_core::Nanoton::TON.get()),
    );
    let init = shared
        .config
        .wallet
        .as_ref()
        .and_then(|w| w.contract_init.as_ref());
    let link = match cocoon_chain::contracts::top_up_link(&shared.address, amount, init) {
        Ok(l) => l,
        Err(e) => {
            return ApiError::server(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the top-up link: {e}"),
            )
            .into_response()
        }
    };
    match qrcode::QrCode::new(link.as_bytes()) {
        Ok(code) => {
            let svg = code
                .render::<qrcode::render::svg::Color>()
                .min_dimensions(240, 240)
                .build();
            let mut r = ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response();
            secure(&mut r);
            r
        }
        Err(e) => ApiError::server(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the top-up link does not fit a QR code: {e}"),
        )
        .into_response(),
    }
}

/// A standalone explorer (`cocoon explorer`): the root registry read from a
/// chain, and saved answers checked under an attestation policy, with no
/// client behind it.
pub struct ChainExplorer {
    /// The chain's API.
    pub chain: Arc<cocoon_chain::Toncenter>,
    /// Its endpoint, as shown.
    pub endpoint: String,
    /// The root registry.
    pub root: tycho_types::models::StdAddr,
    /// Checks workers' certificates in receipts; `None`: receipts are not
    /// checked here.
    pub verifier: Option<Arc<cocoon_tee::RaTlsVerifier>>,
    /// What the verifier accepts, for people.
    pub policy: String,
    cache: RegistryCache,
}

impl ChainExplorer {
    /// An explorer of `root` on `chain`.
    pub fn new(
        chain: Arc<cocoon_chain::Toncenter>,
        endpoint: String,
        root: tycho_types::models::StdAddr,
        verifier: Option<Arc<cocoon_tee::RaTlsVerifier>>,
        policy: String,
    ) -> ChainExplorer {
        ChainExplorer {
            chain,
            endpoint,
            root,
            verifier,
            policy,
            cache: RegistryCache::default(),
        }
    }
}

/// Serves a standalone explorer on `listen` until the task is dropped;
/// returns the bound address.
pub async fn serve_explorer(
    listen: std::net::SocketAddr,
    explorer: ChainExplorer,
) -> std::io::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/",
            get(|| async { page(include_str!("assets/explorer.html")) }),
        )
        .route("/assets/{name}", get(asset))
        .route("/v1/cocoon/explorer", get(chain_explorer))
        .route("/v1/cocoon/receipts/verify", post(chain_verify))
        .with_state(Arc::new(explorer));
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the explorer stopped");
        }
    });
    Ok((bound, task))
}

async fn chain_explorer(State(x): State<Arc<ChainExplorer>>) -> Response {
    let registry = x.cache.read(x.chain.as_ref(), &x.root).await;
    let body = serde_json::json!({
        "standalone": true,
        "chain": { "endpoint": x.endpoint, "root": x.root.to_string() },
        "policy": x.policy,
        "registry": registry,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn chain_verify(State(x): State<Arc<ChainExplorer>>, body: axum::body::Bytes) -> Response {
    crate::receipts::verification(
        x.verifier.clone(),
        "this explorer was started without an attestation policy (--policy), so it checks no receipts",
        body,
    )
    .await
}
