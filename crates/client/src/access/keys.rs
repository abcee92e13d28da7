//! API keys: made, listed and revoked by the operator over the client's
//! API (`cocoon client keys`), authenticated with the admin token.
//!
//! - `POST /v1/cocoon/keys`: a new key; its secret is in this answer only.
//! - `GET /v1/cocoon/keys`: every key with its limits and spending.
//! - `DELETE /v1/cocoon/keys/{id}`: revoke (the record stays, for audit).
//! - `GET /v1/cocoon/admin`: where the admin token file is, so that
//!   `cocoon client keys` on this machine can read it (reading the file
//!   is the proof).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use base64::Engine as _;
use serde::Deserialize;

use super::policy::{Renewal, SpendPolicy, Spending};
use super::store::{sha256, KeyRecord};
use super::{Access, KeyState, Live};
use crate::openai::ApiError;

/// A key's secret, as handed to its app once.
#[derive(Debug, Clone)]
pub struct ApiKeySecret(pub String);

/// `prefix` and 32 random bytes, base64url.
pub(super) fn random_secret(prefix: &str) -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    // The OS generator only fails when there is none; then nothing secret
    // can be made at all.
    if let Err(e) = ring::rand::SystemRandom::new().fill(&mut bytes) {
        panic!("the system's random number generator failed: {e}");
    }
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The operator's routes.
pub fn admin_routes(access: Arc<Access>) -> axum::Router {
    axum::Router::new()
        .route("/v1/cocoon/keys", get(list).post(create))
        .route("/v1/cocoon/keys/{id}", delete(revoke))
        .route("/v1/cocoon/admin", get(admin_info))
        .with_state(access)
}

impl Access {
    /// Refuses anyone but the operator (`Authorization: Bearer <admin
    /// token>`).
    pub fn require_operator(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        match token {
            Some(t) if self.admin.matches(t) => Ok(()),
            Some(_) => Err(ApiError::request(
                StatusCode::FORBIDDEN,
                "operator_only",
                "only the operator may do this: send the admin token (the client's admin.token file) as the bearer",
            )),
            None => Err(ApiError::request(
                StatusCode::UNAUTHORIZED,
                "operator_only",
                format!(
                    "only the operator may do this: send the admin token{} as `Authorization: Bearer <token>`",
                    self.admin
                        .file
                        .as_ref()
                        .map(|f| format!(" (in {})", f.display()))
                        .unwrap_or_default()
                ),
            )),
        }
    }

    /// Every key as listed, with its live state.
    pub fn keys_json(&self) -> Vec<serde_json::Value> {
        let now = cocoon_core::unix_now();
        self.lock()
            .keys
            .values()
            .map(|k| key_json(&k.record, &k.live, now))
            .collect()
    }

    /// Usage per key and of Telegram users together, for `/jsonstats`.
    pub fn figures(&self) -> serde_json::Value {
        let now = cocoon_core::unix_now();
        let accounts = self.lock();
        let keys: Vec<_> = accounts
            .keys
            .values()
            .map(|k| key_json(&k.record, &k.live, now))
            .collect();
        let users = accounts.users.values();
        let (mut spent, mut requests, mut refused) = (0u64, 0u64, 0u64);
        for u in users {
            spent += u.spending.lifetime_nanoton;
            requests += u.spending.requests;
            refused += u.spending.refused;
        }
        serde_json::json!({
            "restricted": self.telegram.is_some() || accounts.live_keys() > 0,
            "api_keys": keys,
            "telegram_users": if self.telegram.is_some() {
                serde_json::json!({
                    "users": accounts.users.len(),
                    "spent_nanoton": spent,
                    "requests": requests,
                    "refused": refused,
                })
            } else {
                serde_json::Value::Null
            },
        })
    }

    /// Usage per key as Prometheus series.
    pub fn series(&self) -> Vec<cocoon_telemetry::Series> {
        let accounts = self.lock();
        let mut spent = Vec::new();
        let mut requests = Vec::new();
        let mut refused = Vec::new();
        let mut tokens = Vec::new();
        for k in accounts.keys.values() {
            let s = &k.record.spending;
            let l = || {
                vec![
                    ("key", k.record.id.clone()),
                    ("name", k.record.name.clone()),
                ]
            };
            spent.push((l(), s.lifetime_nanoton));
            requests.push((l(), s.requests));
            refused.push((l(), s.refused));
            let mut p = l();
            p.push(("kind", "prompt".into()));
            tokens.push((p, s.prompt_tokens));
            let mut c = l();
            c.push(("kind", "completion".into()));
            tokens.push((c, s.completion_tokens));
        }
        let family = |name, kind, help, samples| cocoon_telemetry::Series {
            name,
            kind,
            help,
            samples,
        };
        vec![
            family(
                "api_key_spent_nanoton_total",
                "counter",
                "Nanoton spent by an API key since it was made.",
                spent,
            ),
            family(
                "api_key_requests_total",
                "counter",
                "Answers completed for an API key.",
                requests,
            ),
            family(
                "api_key_refused_total",
                "counter",
                "Requests of an API key refused by its limits.",
                refused,
            ),
            family(
                "api_key_tokens_total",
                "counter",
                "Tokens answered for an API key, by kind.",
                tokens,
            ),
        ]
    }
}

fn key_json(r: &KeyRecord, live: &Live, now: u64) -> serde_json::Value {
    let mut v = super::account_json(&r.policy, &r.spending, live, now);
    if let Some(o) = v.as_object_mut() {
        o.insert("id".into(), r.id.clone().into());
        o.insert("name".into(), r.name.clone().into());
        o.insert("created".into(), r.created.into());
        o.insert("revoked_at".into(), serde_json::json!(r.revoked_at));
        o.insert("renewal".into(), serde_json::json!(r.policy.renewal));
        o.insert(
            "lifetime_nanoton".into(),
            r.spending.lifetime_nanoton.into(),
        );
        o.insert("prompt_tokens".into(), r.spending.prompt_tokens.into());
        o.insert(
            "completion_tokens".into(),
            r.spending.completion_tokens.into(),
        );
        o.insert("refused".into(), r.spending.refused.into());
        o.insert("in_flight".into(), live.in_flight.into());
    }
    v
}

/// What `POST /v1/cocoon/keys` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    #[serde(default)]
    budget_nanoton: Option<u64>,
    #[serde(default)]
    requests_per_minute: Option<u32>,
    #[serde(default)]
    tokens_per_minute: Option<u64>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    renewal: Renewal,
    #[serde(default)]
    trust: cocoon_core::trust::TrustRequirements,
}

impl NewKey {
    fn policy(self) -> Result<(String, SpendPolicy), ApiError> {
        let name = self.name.trim().to_string();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "name",
                "invalid_value",
                "name must be 1 to 64 printable characters",
            ));
        }
        if self.requests_per_minute == Some(0) || self.tokens_per_minute == Some(0) {
            return Err(ApiError::invalid(
                "requests_per_minute",
                "invalid_value",
                "a rate limit of 0 would refuse everything: leave it out for no limit",
            ));
        }
        if self.renewal == Renewal::Monthly && self.budget_nanoton.is_none() {
            return Err(ApiError::invalid(
                "renewal",
                "invalid_value",
                "a monthly renewal needs a budget to renew (budget_nanoton)",
            ));
        }
        for m in &self.models {
            cocoon_core::ModelName::new(m)
                .map_err(|e| ApiError::invalid("models", "invalid_value", e.to_string()))?;
        }
        self.trust
            .check()
            .map_err(|e| ApiError::invalid("trust", "invalid_value", e.to_string()))?;
        Ok((
            name,
            SpendPolicy {
                budget_nanoton: self.budget_nanoton,
                requests_per_minute: self.requests_per_minute,
                tokens_per_minute: self.tokens_per_minute,
                models: self.models,
                renewal: self.renewal,
                trust: self.trust,
            },
        ))
    }
}

fn json(status: StatusCode, v: serde_json::Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

async fn create(
    State(access): State<Arc<Access>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(e) = access.require_operator(&headers) {
        return e.into_response();
    }
    let (name, policy) = match serde_json::from_slice::<NewKey>(&body)
        .map_err(|e| {
            ApiError::request(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("a new key: {e}"),
            )
        })
        .and_then(NewKey::policy)
    {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let secret = random_secret("sk-cocoon-");
    let digest = sha256(secret.as_bytes());
    let id = format!("key_{}", &hex(&sha256(random_secret("").as_bytes()))[..12]);
    let record = KeyRecord {
        id: id.clone(),
        name,
        secret_sha256: hex(&digest),
        created: cocoon_core::unix_now(),
        revoked_at: None,
        policy,
        spending: Spending::default(),
    };
    // Durable before the secret is shown: a key handed out survives a crash.
    let stored = {
        let _turn = access.writing.lock().await;
        let a = access.clone();
        let r = record.clone();
        tokio::task::spawn_blocking(move || a.put_key(&r)).await
    };
    match stored {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return ApiError::server(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_failed",
                e.to_string(),
            )
            .into_response()
        }
        Err(e) => {
            return ApiError::server(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_failed",
                e.to_string(),
            )
            .into_response()
        }
    }
    let mut v = key_json(&record, &Live::default(), record.created);
    {
        let mut accounts = access.lock();
        accounts.by_secret.insert(digest, id.clone());
        let live = Live::default();
        accounts.keys.insert(id.clone(), KeyState { record, live });
    }
    tracing::info!(key = %id, "API key created");
    if let Some(o) = v.as_object_mut() {
        o.insert("secret".into(), secret.into());
    }
    json(StatusCode::CREATED, v)
}

async fn list(State(access): State<Arc<Access>>, headers: HeaderMap) -> Response {
    if let Err(e) = access.require_operator(&headers) {
        return e.into_response();
    }
    json(
        StatusCode::OK,
        serde_json::json!({ "keys": access.keys_json() }),
    )
}

async fn revoke(
    State(access): State<Arc<Access>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(e) = access.require_operator(&headers) {
        return e.into_response();
    }
    let now = cocoon_core::unix_now();
    let record = access.lock().keys.get(&id).map(|k| k.record.clone());
    let Some(mut record) = record else {
        return ApiError::request(
            StatusCode::NOT_FOUND,
            "unknown_key",
            format!("no API key {id:?} here"),
        )
        .into_response();
    };
    let at = *record.revoked_at.get_or_insert(now);
    // Refused from now on, whatever the store says: revoking must never
    // wait on a disk.
    if let Some(k) = access.lock().keys.get_mut(&id) {
        k.record.revoked_at.get_or_insert(at);
    }
    if let Err(e) = access.persist(&super::Principal::Key(id.clone())).await {
        return ApiError::server(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_failed",
            format!("key {id} is refused from now on, but its revocation could not be stored and would not survive a restart: {e}; revoke it again"),
        )
        .into_response();
    }
    tracing::info!(key = %id, "API key revoked");
    let keys = access.keys_json();
    let v = keys
        .into_iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap_or_default();
    json(StatusCode::OK, v)
}

async fn admin_info(State(access): State<Arc<Access>>) -> Response {
    json(
        StatusCode::OK,
        serde_json::json!({
            "admin_token_file": access.admin_token_file().map(|p| p.display().to_string()),
            "restricted": access.restricted(),
        }),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
