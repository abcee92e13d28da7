//! HTTP handlers of the OpenAI-compatible API.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::{BufMut, Bytes, BytesMut};
use cocoon_core::{Endpoint, RequestId};
use cocoon_proto::{
    infer_event, Completion, ErrorCode, InferError, InferEvent, InferRequest, ListModelsRequest,
};
use cocoon_telemetry::{ActiveRequest, Snapshot, StatsSource};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use tonic::Streaming;
use tracing::Instrument;

use cocoon_openai::{Chunk, Receipt, UsageObject};

use base64::Engine as _;

use crate::openai::{validate_under, ApiError, Validated};
use crate::Shared;

/// Response header naming the worker that answered.
pub const WORKER_HEADER: &str = "x-cocoon-worker";
/// Response header with the answering worker's coefficient.
pub const COEFFICIENT_HEADER: &str = "x-cocoon-coefficient";
/// Response header with the SHA-256 of the weights that answered.
pub const MODEL_HASH_HEADER: &str = "x-cocoon-model-hash";
/// Response header: what the request cost, in nanoton (non-streamed
/// answers; a stream carries it in its usage chunk).
pub const COST_HEADER: &str = "x-cocoon-cost-nanoton";
/// Response header: the TEE kind of the proxy, as this client verified it.
pub const PROXY_TEE_HEADER: &str = "x-cocoon-proxy-tee";
/// Response header: the proxy's image hash, as this client verified it.
pub const PROXY_IMAGE_HEADER: &str = "x-cocoon-proxy-image-hash";
/// Response header: the worker's TEE kind, as the attested proxy verified it.
pub const WORKER_TEE_HEADER: &str = "x-cocoon-worker-tee";
/// Response header: the worker's image hash, as the attested proxy verified it.
pub const WORKER_IMAGE_HEADER: &str = "x-cocoon-worker-image-hash";
/// Response header: the worker's signed receipt, base64 of its JSON
/// (non-streamed answers; a stream carries it in its last chunk).
pub const RECEIPT_HEADER: &str = "x-cocoon-receipt";

pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    let api = axum::Router::new()
        .route(
            "/v1/chat/completions",
            post(chat_completions).fallback(method_not_allowed),
        )
        .route(
            "/v1/completions",
            post(completions).fallback(method_not_allowed),
        )
        .route("/v1/models", get(models).fallback(method_not_allowed))
        .route(
            "/v1/cocoon/attestation",
            get(crate::attestation::report).fallback(method_not_allowed),
        )
        .route(
            "/v1/cocoon/receipts",
            get(crate::receipts::list).fallback(method_not_allowed),
        )
        .route(
            "/v1/cocoon/balance",
            get(crate::payments::balance).fallback(method_not_allowed),
        )
        .route(
            "/v1/cocoon/chain",
            get(chain_info).fallback(method_not_allowed),
        )
        .route(
            "/v1/cocoon/withdraw",
            post(crate::contract::withdraw).fallback(method_not_allowed),
        )
        .route(
            "/v1/cocoon/close",
            post(crate::contract::close).fallback(method_not_allowed),
        )
        .route(
            "/v1/cocoon/deposit",
            post(crate::payments::deposit).fallback(method_not_allowed),
        )
        .merge(crate::aci::receipt_routes())
        .with_state(shared.clone())
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            authenticate,
        ));
    cocoon_telemetry::router(shared.clone())
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(api)
        .merge(crate::access::admin_routes(shared.access.clone()))
        .merge(crate::aci::public_routes().with_state(shared.clone()))
        .merge(crate::web::routes(shared.clone()))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(request_id))
        .layer(axum::middleware::from_fn_with_state(
            shared,
            crate::aci::headers,
        ))
}

/// What only the operator may do, always (the `cocoon client` commands
/// send its token): move the contract's money. Asking for the token even
/// on an open loopback API keeps a web page the operator visits from
/// moving it.
const OPERATOR_PATHS: [&str; 3] = [
    "/v1/cocoon/withdraw",
    "/v1/cocoon/close",
    "/v1/cocoon/deposit",
];

/// A POST that spends or moves money must say it is JSON. Browsers send
/// JSON across sites only after asking (a CORS preflight this API never
/// grants), so a web page the operator visits cannot spend through an
/// open loopback API.
fn json_only(req: &Request) -> Result<(), ApiError> {
    if req.method() != axum::http::Method::POST {
        return Ok(());
    }
    let kind = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = kind.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(ApiError::request(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("the request body must be sent as Content-Type: application/json, found {kind:?}"),
    ))
}

/// Names who makes each API request (see [`crate::access`]), or answers
/// 401/403 for them.
async fn authenticate(State(shared): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    if let Err(e) = json_only(&req) {
        return e.into_response();
    }
    let access = &shared.access;
    if OPERATOR_PATHS.contains(&req.uri().path()) {
        if let Err(e) = access.require_operator(req.headers()) {
            return e.into_response();
        }
    }
    match access.authenticate(req.headers()) {
        Ok(who) => {
            req.extensions_mut().insert(who);
            next.run(req).await
        }
        Err(e) => {
            shared.metrics.record_error("unauthorized");
            e.into_response()
        }
    }
}

/// Gives every request an id, visible to handlers and in `x-request-id`.
async fn request_id(mut req: Request, next: Next) -> Response {
    let id = RequestId::generate();
    req.extensions_mut().insert(id.clone());
    let mut resp = next.run(req).await;
    // An idempotent request's id is its key's, set by its handler.
    if let (false, Ok(v)) = (
        resp.headers().contains_key("x-request-id"),
        HeaderValue::from_str(id.as_str()),
    ) {
        resp.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), v);
    }
    resp
}

/// `GET /v1/cocoon/chain[?amount_nanoton=N]`: where this client's money
/// lives on chain, and a `ton://transfer` link that tops its contract up by
/// N (default 1 TON) from any TON wallet app.
async fn chain_info(
    State(shared): State<Arc<Shared>>,
    query: axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let Some(info) = &shared.config.chain else {
        return ApiError::request(
            StatusCode::NOT_FOUND,
            "no_chain",
            "this client is not connected to a chain: it runs on a development ledger",
        )
        .into_response();
    };
    let amount = match query.get("amount_nanoton").map(|v| v.parse::<u64>()) {
        None => cocoon_core::Nanoton::TON,
        Some(Ok(n)) if n > 0 => cocoon_core::Nanoton::new(n),
        Some(_) => {
            return ApiError::invalid(
                "amount_nanoton",
                "invalid_value",
                "amount_nanoton must be a whole number of nanoton above zero",
            )
            .into_response()
        }
    };
    let init = shared
        .config
        .wallet
        .as_ref()
        .and_then(|w| w.contract_init.as_ref());
    let link = cocoon_chain::contracts::top_up_link(&shared.address, amount, init)
        .map(|l| l.to_string())
        .unwrap_or_default();
    let mut v = serde_json::to_value(info).unwrap_or_default();
    v["deposit_link"] = serde_json::Value::String(link);
    v["deposit_link_amount_nanoton"] = serde_json::json!(amount.get());
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::request(
        StatusCode::NOT_FOUND,
        "unknown_url",
        format!("Unknown request URL: {} {}", req.method(), req.uri().path()),
    )
}

pub(crate) async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::request(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "Method {} is not allowed for {}",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn chat_completions(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    complete(shared, Endpoint::ChatCompletions, req).await
}

async fn completions(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    complete(shared, Endpoint::Completions, req).await
}

/// `GET /v1/models`: what the network serves; an API key limited to some
/// models sees only those.
async fn models(
    State(shared): State<Arc<Shared>>,
    who: Option<axum::Extension<crate::access::Principal>>,
) -> Response {
    let allowed = who.and_then(|w| shared.access.allowed_models(&w.0));
    match model_list(&shared).await {
        Ok(mut list) => {
            if let Some(allowed) = allowed {
                list.data.retain(|m| allowed.contains(&m.id));
            }
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                list.to_json(),
            )
                .into_response()
        }
        Err(status) => proxy_unreachable(&shared, &status).into_response(),
    }
}

/// The models the proxy's workers serve, with their market and reputation.
pub(crate) async fn model_list(shared: &Shared) -> Result<cocoon_openai::ModelList, tonic::Status> {
    let mut proxy = shared.proxy.clone();
    let resp = proxy.list_models(ListModelsRequest {}).await?;
    let data = resp
        .into_inner()
        .models
        .into_iter()
        .map(|m| {
            let market = cocoon_openai::ModelMarket {
                workers: m.worker_count,
                coefficient: cocoon_openai::CoefficientSpread {
                    min: m.min_coefficient,
                    median: m.median_coefficient,
                    max: m.max_coefficient,
                },
                capacity: m.capacity,
                running: m.running,
                model_hashes: m.model_hashes,
                reputation: cocoon_openai::ModelReputation {
                    compared_answers: m.compared_answers,
                    dissenting_answers: m.dissenting_answers,
                    avoided_workers: m.avoided_workers,
                    requests: m.requests,
                    failed_requests: m.failed_requests,
                    median_latency_ms: (m.median_latency_micros > 0)
                        .then(|| m.median_latency_micros.div_ceil(1000)),
                    median_ttft_ms: (m.median_ttft_micros > 0)
                        .then(|| m.median_ttft_micros.div_ceil(1000)),
                },
                trust: cocoon_openai::ModelTrust {
                    tees: m.tees,
                    gpus: m.gpus,
                    regions: m.regions,
                },
            };
            cocoon_openai::Model::new(m.name, market)
        })
        .collect();
    Ok(cocoon_openai::ModelList::new(data))
}

/// The answer for a call to the proxy that failed (`Some`) or ended
/// (`None`) before the answer was complete, nothing having been sent yet.
fn call_failed(
    shared: &Shared,
    active: &mut ActiveRequest,
    status: Option<&tonic::Status>,
) -> Response {
    match status {
        Some(status) => {
            active.fail("proxy_unavailable");
            proxy_unreachable(shared, status).into_response()
        }
        None => {
            active.fail("proxy_closed");
            ApiError::server(
                StatusCode::BAD_GATEWAY,
                "proxy_closed",
                "the proxy ended the request before the answer was complete",
            )
            .into_response()
        }
    }
}

fn proxy_unreachable(shared: &Shared, status: &tonic::Status) -> ApiError {
    shared.metrics.record_error("proxy_unavailable");
    ApiError::server(
        StatusCode::SERVICE_UNAVAILABLE,
        "proxy_unavailable",
        format!(
            "the proxy at {} is not reachable: {}",
            shared.config.proxy,
            status.message()
        ),
    )
}

async fn complete(shared: Arc<Shared>, endpoint: Endpoint, req: Request) -> Response {
    let mut idempotent = match idempotent(&shared, &req) {
        Ok(i) => i,
        Err(e) => {
            shared.metrics.record_error("invalid_request");
            return e.into_response();
        }
    };
    let id = match &idempotent {
        Some(i) => i.request_id.clone(),
        None => req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(RequestId::generate),
    };
    let (parts, body) = req.into_parts();
    let span = tracing::info_span!("request", id = %id, model = tracing::field::Empty);
    async move {
        let raw = match read_body(&shared, body).await {
            Ok(raw) => raw,
            Err(refused) => return refused,
        };
        let (raw, sealer) = match crate::aci::open_request(&shared, &parts.headers, raw, endpoint) {
            Ok(opened) => opened,
            Err(e) => {
                tracing::info!(error = %e, "E2EE request refused");
                shared.metrics.record_error("e2ee_refused");
                return e.into_response();
            }
        };
        if let Some(i) = idempotent.as_mut() {
            i.fingerprint(&shared.idempotency, endpoint, &raw, &parts.headers);
        }
        // The middleware names every caller; a request it did not see is
        // refused rather than served as nobody's.
        let Some(who) = parts.extensions.get::<crate::access::Principal>().cloned() else {
            return ApiError::server(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the request was not authenticated",
            )
            .into_response();
        };
        let mut v = match validated(&shared, &who, endpoint, &raw, &parts.headers) {
            Ok(v) => v,
            Err(refused) => return refused.into_response(),
        };
        tracing::Span::current().record("model", v.model.as_str());
        if sealer.is_some() {
            // Encrypted to this client, the request goes on sealed or not at all.
            v.controls.e2e = Some(crate::openai::E2eMode::Required);
        }
        let mut aci = crate::aci::Transcript::new(
            endpoint,
            v.model.as_str(),
            &raw,
            sealer,
            crate::aci::receipt_owner(&who),
        );
        aci.forwarded(&v.body);
        let keyed = idempotent.is_some();
        // Boxed: the answer's state is large and lives as long as the call.
        let mut resp = Box::pin(forward(shared, endpoint, &id, v, who, aci, idempotent)).await;
        if let (true, Ok(v)) = (keyed, HeaderValue::from_str(id.as_str())) {
            resp.headers_mut()
                .insert(HeaderName::from_static("x-request-id"), v);
        }
        resp
    }
    .instrument(span)
    .await
}

/// The request body, within the size limit.
async fn read_body(shared: &Shared, body: axum::body::Body) -> Result<Bytes, Response> {
    let limit = shared.config.max_body_bytes;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            let err = if e.is::<http_body_util::LengthLimitError>() {
                ApiError::request(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request_too_large",
                    format!("request body exceeds the limit of {limit} bytes"),
                )
            } else {
                ApiError::request(
                    StatusCode::BAD_REQUEST,
                    "body_read_failed",
                    format!("could not read the request body: {e}"),
                )
            };
            shared.metrics.record_error("invalid_request");
            Err(err.into_response())
        }
    }
}

/// The request's idempotency key, keyed for its caller; a malformed key is
/// refused.
fn idempotent(
    shared: &Shared,
    req: &Request,
) -> Result<Option<crate::idempotency::Idempotent>, ApiError> {
    let Some(key) = crate::idempotency::IdempotencyKey::from_headers(req.headers())? else {
        return Ok(None);
    };
    let caller = req
        .extensions()
        .get::<crate::access::Principal>()
        .and_then(crate::access::Principal::account)
        .unwrap_or_default();
    Ok(Some(key.keyed(&shared.idempotency, &caller)))
}

/// The request validated under `who`'s trust requirements, or the refusal.
fn validated(
    shared: &Shared,
    who: &crate::access::Principal,
    endpoint: Endpoint,
    raw: &[u8],
    headers: &axum::http::HeaderMap,
) -> Result<Validated, Box<ApiError>> {
    let defaults = shared.trust_defaults(who);
    defaults
        .and_then(|d| validate_under(endpoint, raw, headers, &d))
        .map_err(|e| {
            tracing::info!(error = %e, "invalid request");
            shared.metrics.record_error("invalid_request");
            Box::new(e)
        })
}

/// Sends a validated request through the proxy and answers the app: an
/// HTTP error if it fails before the first byte, else the answer, whole or
/// streamed.
async fn forward(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    id: &RequestId,
    mut v: Validated,
    who: crate::access::Principal,
    mut aci: crate::aci::Transcript,
    idempotent: Option<crate::idempotency::Idempotent>,
) -> Response {
    let mut active = shared.metrics.start();
    let admission = match admitted(&shared, &who, &mut v, &mut active).await {
        Ok(a) => a,
        Err(refused) => return refused,
    };
    let Dispatched {
        sealed,
        mut headers,
        events,
        receipt,
        assigned,
        first,
    } = match dispatch(&shared, endpoint, id, &v, &mut active, idempotent.as_ref()).await {
        Ok(d) => d,
        Err(refused) => return refused,
    };
    let (replayed, admission) = match replay(
        &shared,
        idempotent.is_some(),
        assigned.as_ref(),
        admission,
        &mut headers,
    ) {
        Ok(r) => r,
        Err(refused) => return (headers, refused).into_response(),
    };
    let facts = (sealed.is_some(), replayed);
    let (worker, offer, cost_breakdown) =
        match worker_and_terms(&shared, &first, facts, assigned.as_ref(), &v, &mut active).await {
            Ok(w) => w,
            Err(refused) => return (headers, refused).into_response(),
        };
    aci.served_by(&shared, &worker, assigned.as_ref(), sealed.is_some());
    let salt = sealed.as_ref().map(|s| s.salt());
    let opener = match opener(
        &shared,
        sealed.as_ref(),
        &worker,
        &first,
        replayed,
        &mut headers,
    ) {
        Ok(o) => o,
        Err(refused) => {
            active.fail("proxy_distrusted");
            return (headers, refused).into_response();
        }
    };
    let answer = Answer {
        opener,
        aci,
        shared,
        endpoint,
        receipt: Receipt {
            trust: Some(trust_member(&offer, &v.controls.trust)),
            cost_breakdown,
            ..receipt
        },
        worker,
        request_sha256: cocoon_receipt::digest::request_digest(&v.body, salt.as_ref()),
        salt,
        deterministic: v.sampling.deterministic(),
        events,
        active,
        admission,
        account: who.account(),
        replayed,
    };
    respond(answer, first, headers, &v).await
}

/// Before any byte reaches the app: the worker, if it is one this client's
/// own policy accepts. An error needs no verified worker, unless it is a
/// sealed request's, whose message only that worker's seal opens.
/// The caller's hold on its account for the request, once the proxy is
/// known to be usable: its prices bound what the request holds.
async fn admitted(
    shared: &Shared,
    who: &crate::access::Principal,
    v: &mut Validated,
    active: &mut ActiveRequest,
) -> Result<crate::access::Admission, Response> {
    proxy_usable(shared, active).await?;
    crate::admission::admit(shared, who, v).await.map_err(|e| {
        tracing::info!(error = %e, caller = %who.label(), "refused by the caller's limits");
        active.fail("limit_exceeded");
        e.into_response()
    })
}

/// The worker, verified, and the terms it serves the request on.
async fn worker_and_terms(
    shared: &Shared,
    first: &infer_event::Event,
    facts: (bool, bool),
    assigned: Option<&cocoon_proto::Assigned>,
    v: &Validated,
    active: &mut ActiveRequest,
) -> Result<
    (
        crate::receipts::Worker,
        cocoon_core::trust::TrustOffer,
        Option<serde_json::Value>,
    ),
    ApiError,
> {
    let worker = verified_worker(shared, first, facts, assigned, active).await?;
    let (offer, cost_breakdown) = served_terms(shared, &worker, assigned, v, active)?;
    Ok((worker, offer, cost_breakdown))
}

/// `(sealed, replayed)`: a worker that no longer verifies for an answer
/// replayed from the proxy's record (its certificate may have expired
/// since the first run) refuses the answer without distrusting the proxy.
async fn verified_worker(
    shared: &Shared,
    first: &infer_event::Event,
    (sealed, replayed): (bool, bool),
    assigned: Option<&cocoon_proto::Assigned>,
    active: &mut ActiveRequest,
) -> Result<crate::receipts::Worker, ApiError> {
    if matches!(first, infer_event::Event::Error(_)) && (!sealed || assigned.is_none()) {
        return Ok(crate::receipts::Worker::Unattested);
    }
    shared
        .receipts
        .worker(&shared.proxy, assigned)
        .await
        .map_err(|refusal| {
            active.fail(refusal.reason());
            let err = match replayed {
                true => refusal.into_replay_error(),
                false => refusal.into_error(shared),
            };
            tracing::warn!(error = %err, "refused the proxy's worker");
            err
        })
}

/// Whether the answer is the proxy's record of an earlier run of this
/// request, which was charged then and costs the caller nothing now (its
/// hold is given back, and the answer is marked so). Honoured only for a
/// request sent as idempotent: a proxy that marks any other answer
/// replayed is not trusted again.
fn replay(
    shared: &Shared,
    idempotent: bool,
    assigned: Option<&cocoon_proto::Assigned>,
    admission: crate::access::Admission,
    headers: &mut HeaderMap,
) -> Result<(bool, Option<crate::access::Admission>), ApiError> {
    if !assigned.is_some_and(|a| a.replayed) {
        return Ok((false, Some(admission)));
    }
    if !idempotent {
        let why = "the proxy marked an answer replayed from its record for a request sent without an Idempotency-Key";
        return Err(receipt_refused(shared, why));
    }
    admission.free();
    headers.insert(
        HeaderName::from_static(crate::idempotency::REPLAYED_HEADER),
        HeaderValue::from_static("true"),
    );
    Ok((true, None))
}

/// What the worker offers the request's trust requirements (refused when
/// it falls short of them) and how the request's price was made.
fn served_terms(
    shared: &Shared,
    worker: &crate::receipts::Worker,
    assigned: Option<&cocoon_proto::Assigned>,
    v: &Validated,
    active: &mut ActiveRequest,
) -> Result<(cocoon_core::trust::TrustOffer, Option<serde_json::Value>), ApiError> {
    let offer = crate::receipts::trust_offer(worker, assigned, shared.receipts.checks_gpus());
    check_trust(shared, worker, &offer, v, active)?;
    let model_hash = match worker {
        crate::receipts::Worker::Verified { identity, .. } => identity.attestation().model_hash,
        crate::receipts::Worker::Unattested => assigned.and_then(|a| a.model_hash.parse().ok()),
    };
    let breakdown = cost_breakdown(shared, assigned, &offer, model_hash, v).inspect_err(|_| {
        active.fail("proxy_distrusted");
    })?;
    Ok((offer, breakdown))
}

/// The answer's `cocoon.trust`: what the worker offered, and what the
/// request demanded.
fn trust_member(
    offer: &cocoon_core::trust::TrustOffer,
    demanded: &cocoon_core::trust::TrustRequirements,
) -> serde_json::Value {
    serde_json::json!({
        "tee": if offer.open { Some("none".to_owned()) } else { offer.tee.map(|k| k.to_string()) },
        "tcb": offer.tee.map(|_| offer.tcb.snake_name()),
        "gpu": offer.gpu,
        "region": offer.region,
        "open": offer.open,
        "demanded": demanded,
    })
}

/// How a charged request's price was made, as the proxy states it
/// (`Assigned.cost_factors`), its arithmetic checked: the stated factors
/// must take the worker's coefficient to the coefficient charged, or the
/// proxy is no longer trusted. Whether they are the factors the proxy's
/// published tier prices give for the worker this client verified is shown
/// beside them (`matches_published_tiers`): prices may change between the
/// proxy's hello and the request.
fn cost_breakdown(
    shared: &Shared,
    assigned: Option<&cocoon_proto::Assigned>,
    offer: &cocoon_core::trust::TrustOffer,
    model_hash: Option<cocoon_core::ModelHash>,
    v: &Validated,
) -> Result<Option<serde_json::Value>, ApiError> {
    use cocoon_core::tier_prices::{CostFactor, CostFactors};
    let Some(a) = assigned.filter(|a| a.charged_coefficient > 0) else {
        return Ok(None);
    };
    let stated = CostFactors(
        a.cost_factors
            .iter()
            .map(|f| CostFactor {
                name: match f.name.as_str() {
                    "tee" => "tee",
                    "gpu" => "gpu",
                    "region" => "region",
                    "model" => "model",
                    "replication" => "replication",
                    _ => "unknown",
                },
                value: f.value.clone(),
                multiplier_bp: f.multiplier_bp,
            })
            .collect(),
    );
    let base = cocoon_core::Coefficient::new(u64::from(a.coefficient));
    let adds_up = base
        .as_ref()
        .ok()
        .and_then(|k| stated.apply(*k).ok())
        .is_some_and(|k| k.per_mille() == a.charged_coefficient);
    if !adds_up || stated.0.iter().any(|f| f.name == "unknown") {
        let why = format!(
            "the proxy charges coefficient {} for worker coefficient {} with factors {stated}, which do not make it",
            a.charged_coefficient, a.coefficient
        );
        shared.receipts.distrust(&why);
        return Err(ApiError::server(
            StatusCode::BAD_GATEWAY,
            "proxy_distrusted",
            format!(
                "refused the answer: {why}; this client stops using proxy {}",
                shared.config.proxy
            ),
        ));
    }
    let published = shared
        .prices
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .prices()
        .map(|p| {
            p.tiers.factors(
                offer,
                model_hash.as_ref(),
                &v.controls.trust,
                v.controls.replicas.unwrap_or(1),
            )
        });
    Ok(Some(serde_json::json!({
        "coefficient": a.coefficient,
        "factors": stated,
        "charged_coefficient": a.charged_coefficient,
        "matches_published_tiers": published.as_ref() == Some(&stated),
    })))
}

/// Refuses an answer from a worker that this client verified and found
/// short of the request's trust requirements: the attested proxy routed it
/// there anyway, so it is no longer trusted.
fn check_trust(
    shared: &Shared,
    worker: &crate::receipts::Worker,
    offer: &cocoon_core::trust::TrustOffer,
    v: &Validated,
    active: &mut ActiveRequest,
) -> Result<(), ApiError> {
    let unmet = v.controls.trust.unmet(offer);
    if unmet.is_empty() || matches!(worker, crate::receipts::Worker::Unattested) {
        return Ok(());
    }
    let why = format!(
        "the proxy sent the request to a worker that does not meet its trust requirements ({}): it offers {offer}",
        unmet.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    );
    shared.receipts.distrust(&why);
    active.fail("proxy_distrusted");
    tracing::warn!(reason = %why, "refused the proxy's worker");
    Err(ApiError::server(
        StatusCode::BAD_GATEWAY,
        "proxy_distrusted",
        format!(
            "refused the answer: {why}; this client stops using proxy {}",
            shared.config.proxy
        ),
    ))
}

/// A request the proxy took: the assigned worker and the first event of
/// its answer, and, sealed, what it was sealed with.
struct Dispatched {
    sealed: Option<crate::e2e::Sealed>,
    headers: HeaderMap,
    events: Streaming<InferEvent>,
    receipt: Receipt,
    assigned: Option<cocoon_proto::Assigned>,
    first: infer_event::Event,
}

/// Seals the request (unless the app turned that off), sends it, and waits
/// for its first event. A sealed request whose workers all left before
/// answering is sealed again, once, to those serving now: the proxy cannot
/// hand it to a worker it was not sealed to.
async fn dispatch(
    shared: &Shared,
    endpoint: Endpoint,
    id: &RequestId,
    v: &Validated,
    active: &mut ActiveRequest,
    idempotent: Option<&crate::idempotency::Idempotent>,
) -> Result<Dispatched, Response> {
    if v.serving.verified && !shared.receipts.checks() {
        active.fail("upstream_verification_failed");
        let message = "provider.aci_verified: this client verifies no worker (it runs without attestation), so it cannot serve the request through a verified one; nothing was forwarded";
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            kind: "upstream_verification_failed",
            param: None,
            code: None,
            retry_after: None,
        }
        .into_response());
    }
    let key = idempotent.and_then(crate::idempotency::Idempotent::request_key);
    let seal = |fresh| crate::e2e::seal(shared, id.as_str(), endpoint, v, fresh, key.clone());
    let unsealable = |active: &mut ActiveRequest, e: crate::e2e::CannotSeal| {
        active.fail(e.reason());
        match e {
            crate::e2e::CannotSeal::ProxyUnreachable(status) => {
                proxy_unreachable(shared, &status).into_response()
            }
            other => other.into_error().into_response(),
        }
    };
    let mut sealed = seal(false).await.map_err(|e| unsealable(active, e))?;
    let mut resealed = false;
    loop {
        let mut request = infer_request(shared, endpoint, id, v, sealed.as_ref());
        if let Some(i) = idempotent {
            (request.idempotency_id, request.idempotency_fingerprint) = i.wire();
        }
        let mut events = match shared.proxy.clone().infer(request).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                active.fail("proxy_unavailable");
                return Err(proxy_unreachable(shared, &status).into_response());
            }
        };
        // Wait for the first answer byte (or a failure) before choosing the
        // HTTP status: an error before any byte is a proper HTTP error.
        let mut headers = HeaderMap::new();
        crate::attestation::proxy_headers(shared, &mut headers);
        let (receipt, assigned, first) = assignment(shared, &mut events, &mut headers)
            .await
            .map_err(|status| call_failed(shared, active, status.as_ref()))?;
        let workers_left = matches!(&first, infer_event::Event::Error(e)
            if ErrorCode::of(e) == ErrorCode::WorkerLost && e.before_first_byte);
        if sealed.is_some() && workers_left && !resealed {
            resealed = true;
            // None to seal to any more: the proxy's error stands.
            if let Ok(Some(again)) = seal(true).await {
                finish(&mut events).await;
                tracing::info!("the workers the request was sealed to left; sealing it again");
                sealed = Some(again);
                continue;
            }
        }
        return Ok(Dispatched {
            sealed,
            headers,
            events,
            receipt,
            assigned,
            first,
        });
    }
}

/// For a sealed request, what opens the assigned worker's answer, marked in
/// the answer's headers; a worker the request was not sealed to means the
/// proxy sent it elsewhere, and the answer is refused.
fn opener(
    shared: &Shared,
    sealed: Option<&crate::e2e::Sealed>,
    worker: &crate::receipts::Worker,
    first: &infer_event::Event,
    replayed: bool,
    headers: &mut HeaderMap,
) -> Result<Option<crate::e2e::Opener>, ApiError> {
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let key = match worker {
        crate::receipts::Worker::Verified { identity, .. } => identity.attestation().e2e_key,
        crate::receipts::Worker::Unattested => None,
    };
    if let infer_event::Event::Error(_) = first {
        // Only to open the worker's sealed message, if it sent one.
        return Ok(sealed.opener(key));
    }
    // A recorded answer came from a worker the first run was sealed to,
    // which may have left since: the key its chunks must open under is
    // this request's own all the same.
    let opener = if replayed {
        key.map(|k| sealed.opener_for_replay(k))
    } else {
        sealed.opener(key)
    };
    let opener = opener.ok_or_else(|| {
        receipt_refused(
            shared,
            "the proxy assigned the sealed request to a worker it was not sealed to",
        )
    })?;
    headers.insert(
        HeaderName::from_static("x-cocoon-e2e"),
        HeaderValue::from_static("sealed"),
    );
    Ok(Some(opener))
}

/// A sealed request's error as its worker sealed it for this client (the
/// engine's message, which the proxy relayed unread), opened in place.
fn unseal_message(opener: Option<&crate::e2e::Opener>, e: &mut InferError) {
    if !e.message.starts_with(cocoon_seal::SEALED_MESSAGE_PREFIX) {
        return;
    }
    e.message = opener
        .and_then(|o| o.open_error(&e.message))
        .unwrap_or_else(|| {
            "the worker sealed its error message for this client, and it did not open".into()
        });
}

/// Waits (briefly) for the proxy's first hello (before it the client does
/// not know whether the proxy charges or which key signs its vouchers), and
/// refuses a proxy an earlier check distrusted.
async fn proxy_usable(shared: &Shared, active: &mut ActiveRequest) -> Result<(), Response> {
    let mut introduced = shared.introduced.subscribe();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        introduced.wait_for(|done| *done),
    )
    .await;
    if let Some(why) = shared.payments.distrusted() {
        active.fail("proxy_voucher_invalid");
        return Err(crate::payments::distrusted_error(&why).into_response());
    }
    if let Some(why) = shared.receipts.distrusted() {
        active.fail("proxy_distrusted");
        let message = format!(
            "this client no longer uses proxy {}: an earlier answer through it failed a check: {why}",
            shared.config.proxy
        );
        return Err(
            ApiError::server(StatusCode::BAD_GATEWAY, "proxy_distrusted", message).into_response(),
        );
    }
    Ok(())
}

/// Answers the app from the first event on: an HTTP error, a stream, or a
/// whole answer.
async fn respond(
    mut answer: Answer,
    first: infer_event::Event,
    mut headers: HeaderMap,
    v: &Validated,
) -> Response {
    match first {
        infer_event::Event::Error(mut e) => {
            unseal_message(answer.opener.as_ref(), &mut e);
            if ErrorCode::of(&e) == ErrorCode::ReplicasDisagree {
                // Every run was charged, though none is answered.
                if let Some(a) = answer.admission.as_mut() {
                    a.chargeable();
                }
            }
            answer.active.fail(reason(&e));
            let err = error_for(&e, v);
            tracing::info!(error = %err, "request failed before the first byte");
            finish(&mut answer.events).await;
            (headers, err).into_response()
        }
        first if v.stream => {
            answer.active.first_byte();
            if let Some(a) = answer.admission.as_mut() {
                a.chargeable();
            }
            // Until the stream says otherwise, a dropped body means the app hung up.
            answer.active.fail("client_disconnected");
            headers.insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            headers.insert(
                axum::http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            );
            answer.aci.response_headers(&mut headers);
            let body = sse_body(answer, v.include_usage, first);
            (headers, Body::from_stream(body)).into_response()
        }
        first => {
            answer.active.first_byte();
            if let Some(a) = answer.admission.as_mut() {
                a.chargeable();
            }
            whole_answer(answer, first, headers, v).await
        }
    }
}

/// An answer being received from the proxy.
struct Answer {
    /// Opens a sealed answer's chunks.
    opener: Option<crate::e2e::Opener>,
    /// What its ACI receipt records.
    aci: crate::aci::Transcript,
    shared: Arc<Shared>,
    endpoint: Endpoint,
    receipt: Receipt,
    /// The worker, as this client verified it.
    worker: crate::receipts::Worker,
    /// The digest of the request body sent, which the receipt must name.
    request_sha256: String,
    /// A sealed request's receipt salt: every digest of its receipts is
    /// taken with it.
    salt: Option<cocoon_receipt::digest::Salt>,
    /// Whether a replay must give the same answer (temperature 0 or a
    /// seed): the receipt must then state the answer's content, which is
    /// what a worker can be slashed for.
    deterministic: bool,
    events: Streaming<InferEvent>,
    active: ActiveRequest,
    /// The caller's hold on its account, settled with the answer's cost.
    admission: Option<crate::access::Admission>,
    /// The caller's account, which its receipt is kept under.
    account: Option<String>,
    /// Answered from the proxy's record of an earlier run: nothing was
    /// spent now.
    replayed: bool,
}

impl Answer {
    /// A chunk of the answer as the app gets it: opened, when sealed.
    fn open(&mut self, chunk: Bytes) -> Result<Bytes, ApiError> {
        let Some(opener) = self.opener.as_mut() else {
            return Ok(chunk);
        };
        opener.open(&chunk).map_err(|e| {
            self.active.fail("e2e_invalid");
            receipt_refused(&self.shared, &format!("a sealed answer chunk: {e}"))
        })
    }

    /// What a whole answer's receipt must name as its digest.
    fn whole_digest(&mut self, body: &[u8]) -> String {
        if !self.shared.receipts.checks() {
            return String::new();
        }
        cocoon_receipt::digest::whole_answer_salted(body, self.salt.as_ref())
    }

    /// Counts a complete answer: its voucher, the metrics and history, and
    /// its cost against the caller's account; a replayed one counts nothing.
    async fn settle(&mut self, done: &Completion) {
        if self.replayed {
            // Charged when it was first answered: a voucher with it means
            // the proxy charged the retry too.
            if !done.client_voucher.is_empty() {
                self.shared.payments.charged_a_replay();
            }
            return;
        }
        self.shared.payments.on_voucher(&done.client_voucher);
        let usage = done.usage();
        let cost = done.cost().unwrap_or(0);
        self.shared.metrics.record_usage(&usage);
        self.shared.history.record(
            cocoon_core::unix_now(),
            usage.prompt + usage.completion,
            cost,
        );
        if let Some(a) = self.admission.take() {
            a.settle(cost, &usage).await;
        }
    }
}

/// The request as the proxy receives it.
fn infer_request(
    shared: &Shared,
    endpoint: Endpoint,
    id: &RequestId,
    v: &Validated,
    sealed: Option<&crate::e2e::Sealed>,
) -> InferRequest {
    let timeout = v
        .controls
        .timeout_ms
        .unwrap_or(shared.config.default_timeout.as_millis() as u64);
    InferRequest {
        request_id: id.to_string(),
        model: v.model.to_string(),
        endpoint: cocoon_proto::Endpoint::from(endpoint) as i32,
        body: match sealed {
            Some(_) => Bytes::new(),
            None => v.body.clone(),
        },
        sealed: sealed.map(|s| s.body.clone()),
        stream: v.stream,
        max_coefficient: v
            .controls
            .max_coefficient
            .or(shared.config.default_max_coefficient)
            .unwrap_or(0),
        client_address: shared.address.to_string(),
        max_tokens: v.max_tokens.unwrap_or(0),
        replicas: v.controls.replicas.unwrap_or(1),
        trust: (!v.controls.trust.is_empty())
            .then(|| cocoon_proto::TrustRequirements::from(&v.controls.trust)),
        timeout_ms: timeout,
        // On a chain, proof that this client may spend from its contract.
        payer_key: shared
            .config
            .wallet
            .as_ref()
            .map(|w| w.wallet.key().public_key().to_vec())
            .unwrap_or_default()
            .into(),
        payer_signature: shared
            .config
            .wallet
            .as_ref()
            .map(|w| {
                w.wallet
                    .key()
                    .sign_payer(id.as_str(), &shared.address)
                    .to_vec()
            })
            .unwrap_or_default()
            .into(),
        // Set by the caller for an idempotent request.
        idempotency_id: String::new(),
        idempotency_fingerprint: String::new(),
    }
}

/// Reads the proxy's assignments (who answers; a retry assigns again) until
/// the first event of the answer itself, and returns the last assignment
/// with it. `Err` when the call failed (`Some`) or ended (`None`) before any.
async fn assignment(
    shared: &Shared,
    events: &mut Streaming<InferEvent>,
    headers: &mut HeaderMap,
) -> Result<(Receipt, Option<cocoon_proto::Assigned>, infer_event::Event), Option<tonic::Status>> {
    let mut receipt = Receipt::default();
    let mut assigned = None;
    loop {
        match events.next().await {
            Some(Ok(InferEvent {
                event: Some(infer_event::Event::Assigned(a)),
            })) => {
                receipt = self::receipt(&a);
                shared.attestation.saw_worker(&a);
                worker_headers(headers, &a);
                assigned = Some(a);
            }
            Some(Ok(InferEvent { event: Some(ev) })) => return Ok((receipt, assigned, ev)),
            Some(Ok(InferEvent { event: None })) => continue,
            Some(Err(status)) => return Err(Some(status)),
            None => return Err(None),
        }
    }
}

/// Names the assigned worker, its price, weights and attestation in the
/// answer's headers (replacing a previous assignment's).
fn worker_headers(headers: &mut HeaderMap, a: &cocoon_proto::Assigned) {
    for (name, value) in [
        (WORKER_TEE_HEADER, &a.worker_tee),
        (WORKER_IMAGE_HEADER, &a.worker_image_hash),
        (MODEL_HASH_HEADER, &a.model_hash),
    ] {
        match HeaderValue::from_str(value) {
            Ok(v) if !value.is_empty() => {
                headers.insert(HeaderName::from_static(name), v);
            }
            _ => {
                headers.remove(name);
            }
        }
    }
    if let Ok(v) = HeaderValue::from_str(&a.worker_id) {
        headers.insert(HeaderName::from_static(WORKER_HEADER), v);
    }
    headers.insert(
        HeaderName::from_static(COEFFICIENT_HEADER),
        HeaderValue::from(a.coefficient),
    );
}

/// Gathers a non-streamed answer, then answers with it, stamped with the
/// receipt and cost, or with the error that ended it.
async fn whole_answer(
    mut a: Answer,
    first: infer_event::Event,
    mut headers: HeaderMap,
    v: &Validated,
) -> Response {
    let mut body = BytesMut::new();
    let mut next = Some(Ok(InferEvent { event: Some(first) }));
    loop {
        match next {
            Some(Ok(InferEvent {
                event: Some(infer_event::Event::Chunk(b)),
            })) => match a.open(b) {
                Ok(b) => body.put(b),
                Err(e) => return (headers, e).into_response(),
            },
            Some(Ok(InferEvent {
                event: Some(infer_event::Event::Done(done)),
            })) => {
                a.settle(&done).await;
                let body = body.freeze();
                let answer_sha256 = a.whole_digest(&body);
                if let Err((reason, err)) = check_receipts(&mut a, &done, &answer_sha256).await {
                    a.active.fail(reason);
                    finish(&mut a.events).await;
                    return (headers, err).into_response();
                }
                if let Ok(v) = HeaderValue::from_str(
                    &base64::engine::general_purpose::STANDARD.encode(&done.receipt),
                ) {
                    if !done.receipt.is_empty() {
                        headers.insert(HeaderName::from_static(RECEIPT_HEADER), v);
                    }
                }
                if let Some(cost) = done.cost() {
                    headers.insert(
                        HeaderName::from_static(COST_HEADER),
                        HeaderValue::from(cost),
                    );
                }
                a.active.succeed();
                finish(&mut a.events).await;
                headers.insert(
                    axum::http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                let body = cocoon_openai::stamp_answer(&body, &a.receipt, done.cost())
                    .map(Bytes::from)
                    .unwrap_or(body);
                let body = match a.aci.seal_body(body) {
                    Ok(body) => body,
                    Err(e) => return (headers, e).into_response(),
                };
                a.aci.completed(&done);
                a.aci.returned(&body);
                a.aci.response_headers(&mut headers);
                a.aci.finish(&a.shared);
                return (headers, body).into_response();
            }
            Some(Ok(InferEvent {
                event: Some(infer_event::Event::Error(mut e)),
            })) => {
                unseal_message(a.opener.as_ref(), &mut e);
                a.active.fail(reason(&e));
                finish(&mut a.events).await;
                return (headers, error_for(&e, v)).into_response();
            }
            Some(Ok(_)) => {}
            Some(Err(status)) => return call_failed(&a.shared, &mut a.active, Some(&status)),
            None => return call_failed(&a.shared, &mut a.active, None),
        }
        next = a.events.next().await;
    }
}

/// Reads a finished call to its end (the gRPC trailers follow the last
/// event at once). Dropping a call before its end resets the HTTP/2 stream;
/// the connection is shared by every request and h2 closes it after too
/// many resets, so completed calls must end cleanly.
async fn finish(events: &mut Streaming<InferEvent>) {
    let drain = async { while let Some(Ok(_)) = events.next().await {} };
    if tokio::time::timeout(std::time::Duration::from_secs(2), drain)
        .await
        .is_err()
    {
        tracing::warn!("the proxy did not end a finished call within 2 s");
    }
}

fn reason(e: &InferError) -> &'static str {
    ErrorCode::of(e).reason()
}

/// The OpenAI-style error for a network error.
fn error_for(e: &InferError, v: &Validated) -> ApiError {
    let code = ErrorCode::of(e);
    let msg = e.message.clone();
    match code {
        ErrorCode::ModelNotFound => ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "The model '{}' does not exist or is not served by any connected worker",
                v.model
            ),
            kind: "invalid_request_error",
            param: Some("model".into()),
            code: Some("model_not_found".into()),
            retry_after: None,
        },
        ErrorCode::PriceLimit => ApiError::invalid("max_coefficient", "price_limit_exceeded", msg),
        ErrorCode::TrustUnmet => ApiError::invalid("cocoon.trust", "trust_requirements_unmet", msg),
        ErrorCode::IdempotencyInUse => {
            ApiError::request(StatusCode::CONFLICT, "idempotency_key_in_use", msg)
        }
        ErrorCode::IdempotencyReused => {
            ApiError::request(StatusCode::CONFLICT, "idempotency_key_reused", msg)
        }
        ErrorCode::WorkersBusy => {
            ApiError::server(StatusCode::SERVICE_UNAVAILABLE, "workers_busy", msg)
        }
        ErrorCode::QueueFull => ApiError::overloaded(msg, e.retry_after_seconds),
        ErrorCode::SettlementPending => ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: msg,
            kind: "requests",
            param: None,
            code: Some("settlement_pending".into()),
            retry_after: Some(e.retry_after_seconds.max(1)),
        },
        ErrorCode::ReplicasDisagree => {
            ApiError::server(StatusCode::BAD_GATEWAY, "replicas_disagree", msg)
        }
        ErrorCode::EngineRejected => {
            let status = u16::try_from(e.engine_status)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .filter(StatusCode::is_client_error)
                .unwrap_or(StatusCode::BAD_REQUEST);
            ApiError::request(status, "engine_rejected", msg)
        }
        ErrorCode::EngineFailed => ApiError::server(StatusCode::BAD_GATEWAY, "engine_failed", msg),
        ErrorCode::WorkerLost => ApiError::server(StatusCode::BAD_GATEWAY, "worker_lost", msg),
        ErrorCode::Timeout => ApiError::server(StatusCode::GATEWAY_TIMEOUT, "timeout", msg),
        ErrorCode::BadRequest => ApiError::request(StatusCode::BAD_REQUEST, "bad_request", msg),
        ErrorCode::VersionMismatch => {
            ApiError::server(StatusCode::BAD_GATEWAY, "version_mismatch", msg)
        }
        ErrorCode::InsufficientFunds => {
            ApiError::request(StatusCode::PAYMENT_REQUIRED, "insufficient_funds", msg)
        }
        ErrorCode::Unspecified | ErrorCode::Internal => {
            ApiError::server(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg)
        }
    }
}

/// Who answered, from the proxy's assignment: the worker, its price and
/// the weights and image it ran.
fn receipt(a: &cocoon_proto::Assigned) -> Receipt {
    let known = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Receipt {
        worker: a.worker_id.clone(),
        coefficient: a.coefficient,
        model_hash: known(&a.model_hash),
        worker_tee: known(&a.worker_tee),
        worker_image_hash: known(&a.worker_image_hash),
        ..Receipt::default()
    }
}

/// Checks a completed answer's receipt (and every replica's) and puts
/// them in the answer's `cocoon` member. The error refuses the answer, with
/// the reason it is counted under.
async fn check_receipts(
    a: &mut Answer,
    done: &Completion,
    answer_sha256: &str,
) -> Result<(), (&'static str, ApiError)> {
    let replicas = a
        .shared
        .receipts
        .replicas(&a.shared.proxy, done, &a.request_sha256)
        .await
        .map_err(|r| (r.reason(), r.into_error(&a.shared)))?;
    let cost = replicas.as_ref().map(|r| r.1);
    let checked = a
        .shared
        .receipts
        .check(
            &a.worker,
            done,
            &a.request_sha256,
            answer_sha256,
            cost,
            a.deterministic,
        )
        .map_err(|why| {
            (
                "receipt_invalid",
                receipt_refused(&a.shared, &why.to_string()),
            )
        })?;
    a.shared.receipts.keep(&checked, a.account.clone());
    crate::receipts::attach(&mut a.receipt, &a.worker, checked);
    a.receipt.salt = a.salt.map(|s| s.to_hex());
    a.receipt.replication = replicas.map(|r| r.0);
    Ok(())
}

/// The error for an answer whose receipt failed a check: the proxy is
/// distrusted from now on.
fn receipt_refused(shared: &Shared, why: &str) -> ApiError {
    shared.receipts.distrust(why);
    let message = format!(
        "refused the answer: its receipt failed a check: {why}; this client stops using proxy {}",
        shared.config.proxy
    );
    tracing::warn!(%message, "receipt check failed");
    ApiError::server(StatusCode::BAD_GATEWAY, "receipt_invalid", message)
}

/// A stream's last chunk: the receipt as its `cocoon` member, with the
/// usage and cost when the app asked for usage.
fn closing_chunk(endpoint: Endpoint, d: &Completion, receipt: Receipt, usage: bool) -> Bytes {
    let usage = usage.then(|| {
        UsageObject::from(d.usage())
            .with_cost(d.cost())
            .with_breakdown(receipt.cost_breakdown.clone())
    });
    let chunk = Chunk::closing(
        endpoint,
        (&d.response_id, d.created, &d.model),
        usage,
        receipt,
    );
    sse_data(&chunk.to_json())
}

fn sse_data(payload: &[u8]) -> Bytes {
    Bytes::from(cocoon_openai::sse_event(payload))
}

struct SseState {
    answer: Answer,
    /// The answer as received, for the receipt.
    digest: cocoon_receipt::digest::StreamDigest,
    include_usage: bool,
    pending: Option<infer_event::Event>,
    finished: bool,
    span: tracing::Span,
}

/// The SSE body: chunks as they come, then the usage chunk if asked for and
/// `[DONE]`; an error after the first byte ends the stream with an error
/// event instead.
fn sse_body(
    answer: Answer,
    include_usage: bool,
    first: infer_event::Event,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    let state = SseState {
        digest: cocoon_receipt::digest::StreamDigest::salted(answer.salt.as_ref()),
        answer,
        include_usage,
        pending: Some(first),
        finished: false,
        span: tracing::Span::current(),
    };
    futures_util::stream::unfold(state, |mut st| async move {
        if st.finished {
            finish(&mut st.answer.events).await;
            return None;
        }
        let out = st.next_event().await;
        st.answer.aci.returned(&out);
        if st.finished {
            st.answer.aci.finish(&st.answer.shared);
        }
        Some((Ok(out), st))
    })
}

impl SseState {
    /// The next piece of the stream; sets `finished` on the last.
    async fn next_event(&mut self) -> Bytes {
        loop {
            let ev = match self.pending.take() {
                Some(ev) => ev,
                None => match self.answer.events.next().await {
                    Some(Ok(InferEvent { event: Some(ev) })) => ev,
                    Some(Ok(InferEvent { event: None })) => continue,
                    Some(Err(status)) => {
                        let message = format!("lost the proxy mid-answer: {}", status.message());
                        return self.fail("proxy_unavailable", message);
                    }
                    None => {
                        let message = "the answer ended before it was complete".to_string();
                        return self.fail("proxy_closed", message);
                    }
                },
            };
            match ev {
                infer_event::Event::Chunk(b) => {
                    let b = match self.answer.opener.as_mut().map(|o| o.open(&b)) {
                        None => b,
                        Some(Ok(plain)) => plain,
                        Some(Err(e)) => {
                            let why = format!("a sealed answer chunk: {e}");
                            self.answer.shared.receipts.distrust(&why);
                            return self.fail("e2e_invalid", why);
                        }
                    };
                    if self.answer.shared.receipts.checks() {
                        self.digest.push(&b);
                    }
                    return match self.answer.aci.seal_chunk(b) {
                        Ok(payload) => sse_data(&payload),
                        Err(e) => self.fail("e2ee_failed", e.to_string()),
                    };
                }
                infer_event::Event::Done(done) => return self.done(&done).await,
                infer_event::Event::Error(mut e) => {
                    unseal_message(self.answer.opener.as_ref(), &mut e);
                    return self.fail(reason(&e), e.message);
                }
                infer_event::Event::Assigned(_) => continue,
            }
        }
    }

    /// The end of a complete answer, once its receipt checks out: the
    /// usage chunk if asked for (else a chunk with the receipt alone), then
    /// `[DONE]`.
    async fn done(&mut self, done: &Completion) -> Bytes {
        self.finished = true;
        let digest = std::mem::take(&mut self.digest).finish();
        let a = &mut self.answer;
        a.settle(done).await;
        a.aci.completed(done);
        if let Err((reason, err)) = check_receipts(a, done, &digest).await {
            a.active.fail(reason);
            return sse_data(&err.body());
        }
        a.active.succeed();
        let mut out = BytesMut::new();
        // The answer ends here: its receipt goes out with the last chunk.
        out.put(closing_chunk(
            a.endpoint,
            done,
            std::mem::take(&mut a.receipt),
            self.include_usage,
        ));
        out.put_slice(cocoon_openai::SSE_DONE);
        out.freeze()
    }

    /// An error event ending the stream: the status line has gone out, so
    /// the failure can only be told in the body.
    fn fail(&mut self, reason: &'static str, message: String) -> Bytes {
        self.finished = true;
        self.answer.active.fail(reason);
        let err = ApiError::server(StatusCode::BAD_GATEWAY, reason, message);
        self.span
            .in_scope(|| tracing::warn!(error = %err, "answer failed mid-stream"));
        sse_data(&err.body())
    }
}

impl StatsSource for Shared {
    fn snapshot(&self) -> Snapshot {
        let mut info = std::collections::BTreeMap::new();
        info.insert("api".into(), format!("http://{}/v1", self.config.listen));
        info.insert("proxy".into(), self.config.proxy.clone());
        info.insert(
            "proxy_link".into(),
            if self.proxy_up.load(Ordering::Relaxed) {
                "up"
            } else {
                "down"
            }
            .into(),
        );
        let name = self
            .proxy_name
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !name.is_empty() {
            info.insert("proxy_name".into(), name);
        }
        info.insert("trust".into(), self.config.trust.describe());
        self.metrics
            .snapshot("client", &self.config.name, self.started, Vec::new(), info)
            .with_peers_refused(self.config.trust.refusals())
            .with_detail(&serde_json::json!({ "access": self.access.figures() }))
            .with_series(self.access.series())
    }
}
