//! The devnet over HTTP: the subset of toncenter's API v2 that Cocoon's
//! nodes use (`cocoon_chain::toncenter` reads exactly these shapes), under
//! `/api/v2`, plus the development tools under `/api/v2/devnet/` (refused
//! unless the devnet runs with `--dev`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cocoon_chain::toncenter::wire::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tycho_types::cell::{Cell, CellBuilder, HashBytes};
use tycho_types::models::{
    ExtInMsgInfo, IntAddr, Message, MsgInfo, StateInit, StdAddr, StdAddrFormat, Transaction,
};
use tycho_types::num::Tokens;

use crate::{Devnet, DevnetError};

/// The default listening address of the devnet's API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:10030";

/// How the API serves the devnet.
#[derive(Debug, Clone, Copy)]
pub struct ApiOptions {
    /// How long a block collects messages once one is waiting (zero: a
    /// block as soon as anything waits).
    pub block_interval: Duration,
    /// Calls answered per second before HTTP 429, as toncenter limits a
    /// caller (`None`: no limit). Development tools are not limited.
    pub rate_limit: Option<f64>,
}

/// The default block interval for local use.
pub const DEFAULT_BLOCK_INTERVAL: Duration = Duration::from_millis(300);

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            block_interval: DEFAULT_BLOCK_INTERVAL,
            rate_limit: None,
        }
    }
}

/// Shared by the handlers.
#[derive(Clone)]
struct ApiState {
    devnet: Arc<Devnet>,
    /// The number of the last block made.
    blocks: tokio::sync::watch::Receiver<u64>,
    options: ApiOptions,
    limiter: Option<Arc<RateLimiter>>,
}

impl std::ops::Deref for ApiState {
    type Target = Arc<Devnet>;
    fn deref(&self) -> &Arc<Devnet> {
        &self.devnet
    }
}

/// Makes a block whenever messages wait, `interval` after the first of them
/// arrived, and tells the handlers. Stops when the router is dropped.
fn spawn_block_producer(
    devnet: &Arc<Devnet>,
    interval: Duration,
) -> tokio::sync::watch::Receiver<u64> {
    // Weak: the producer must not keep a devnet alive that its owner closed.
    let weak = Arc::downgrade(devnet);
    let (tx, rx) = tokio::sync::watch::channel(devnet.counters().blocks);
    std::thread::Builder::new()
        .name("devnet-blocks".into())
        .spawn(move || loop {
            if tx.is_closed() {
                break;
            }
            let Some(devnet) = weak.upgrade() else {
                break;
            };
            if !devnet.wait_for_work(Duration::from_millis(200)) {
                continue;
            }
            std::thread::sleep(interval);
            match devnet.produce_block() {
                Ok(_) => {
                    tx.send_replace(devnet.counters().blocks);
                }
                Err(e) => {
                    tracing::error!(error = %e, "the devnet could not write a block; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        })
        .expect("a thread for the devnet's blocks");
    rx
}

/// The routes, over a shared devnet, with the default options.
pub fn router(devnet: Arc<Devnet>) -> Router {
    router_with(devnet, ApiOptions::default())
}

/// The routes, over a shared devnet.
pub fn router_with(devnet: Arc<Devnet>, options: ApiOptions) -> Router {
    let state = ApiState {
        blocks: spawn_block_producer(&devnet, options.block_interval),
        devnet,
        options,
        limiter: options.rate_limit.map(|r| Arc::new(RateLimiter::new(r))),
    };
    Router::new()
        .route("/api/v2/getAddressInformation", get(address_information))
        .route("/api/v2/getTransactions", get(transactions))
        .route("/api/v2/getMasterchainInfo", get(masterchain_info))
        .route("/api/v2/getConfigParam", get(config_param))
        .route("/api/v2/runGetMethod", post(run_get_method))
        .route("/api/v2/sendBoc", post(send_boc))
        .route("/api/v2/sendBocReturnHash", post(send_boc_return_hash))
        .route("/api/v2/estimateFee", post(estimate_fee))
        .route("/api/v2/jsonRPC", post(json_rpc))
        .route("/api/v2/devnet/status", get(status))
        .route("/api/v2/devnet/faucet", post(faucet))
        .route("/api/v2/devnet/advanceClock", post(advance_clock))
        .fallback(|| async {
            reply::<()>(Err(ApiError(
                404,
                "no such method in this devnet's toncenter v2 subset".into(),
            )))
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit,
        ))
        .with_state(state)
}

/// A token bucket over every caller together.
struct RateLimiter {
    per_second: f64,
    bucket: std::sync::Mutex<(f64, std::time::Instant)>,
}

impl RateLimiter {
    fn new(per_second: f64) -> Self {
        let per_second = per_second.max(0.001);
        RateLimiter {
            per_second,
            bucket: std::sync::Mutex::new((per_second.max(1.0), std::time::Instant::now())),
        }
    }

    /// Takes a token; `Err` with the seconds until one is free.
    fn take(&self) -> Result<(), f64> {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        let capacity = self.per_second.max(1.0);
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * self.per_second).min(capacity);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            Ok(())
        } else {
            Err((1.0 - b.0) / self.per_second)
        }
    }
}

/// Answers beyond the rate limit with HTTP 429 and toncenter's body.
async fn rate_limit(
    State(d): State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(limiter) = &d.limiter {
        if !req.uri().path().starts_with("/api/v2/devnet/") {
            if let Err(wait) = limiter.take() {
                let mut r = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(Envelope::<()>::err(429, "Ratelimit exceed")),
                )
                    .into_response();
                // Whole seconds, as the header takes them; zero when the
                // next token is less than a second away.
                let secs = wait.floor() as u64;
                if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
                    r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
                }
                return r;
            }
        }
    }
    next.run(req).await
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    devnet: Arc<Devnet>,
    options: ApiOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router_with(devnet, options))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `addr` (loopback unless asked otherwise).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

struct ApiError(u16, String);

impl From<DevnetError> for ApiError {
    fn from(e: DevnetError) -> Self {
        let code = match &e {
            DevnetError::Malformed(_) | DevnetError::ClockBackwards { .. } => 400,
            DevnetError::DevOnly(_) => 403,
            DevnetError::GetMethod { .. } => 400,
            // toncenter's answer to a refused external message.
            DevnetError::Rejected { .. } | DevnetError::TooManyTransactions(_) => 500,
            DevnetError::Config(_) | DevnetError::Store(_) | DevnetError::Execution { .. } => 503,
        };
        let text = match &e {
            DevnetError::Rejected { .. } => {
                format!("cannot apply external message to current state: {e}")
            }
            _ => e.to_string(),
        };
        ApiError(code, text)
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(400, message.into())
}

fn reply<T: Serialize>(r: Result<T, ApiError>) -> Response {
    match r {
        Ok(v) => Json(Envelope::ok(v)).into_response(),
        Err(ApiError(code, message)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, Json(Envelope::<()>::err(code as i64, message))).into_response()
        }
    }
}

/// Runs blocking devnet work off the async threads.
async fn blocking<T: Send + 'static>(
    devnet: &ApiState,
    f: impl FnOnce(&Devnet) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let d = devnet.devnet.clone();
    tokio::task::spawn_blocking(move || f(&d))
        .await
        .map_err(|e| ApiError(503, format!("the devnet's worker thread failed: {e}")))?
}

fn parse_address(s: &str) -> Result<StdAddr, ApiError> {
    StdAddr::from_str_ext(s.trim(), StdAddrFormat::any())
        .map(|(a, _)| a)
        .map_err(|e| {
            bad(format!(
                "{s:?} is not a TON address (raw 0:HEX or user-friendly base64): {e}"
            ))
        })
}

fn friendly(a: &StdAddr) -> String {
    a.display_base64_url(true).to_string()
}

fn block_id(devnet: &Devnet) -> BlockIdExt {
    let c = devnet.counters();
    let seqno = u32::try_from(c.blocks).unwrap_or(u32::MAX);
    let mut b = CellBuilder::new();
    let _ = b.store_u64(c.lt);
    let _ = b.store_u64(c.blocks);
    let root = b.build().map(|c| *c.repr_hash()).unwrap_or(HashBytes::ZERO);
    BlockIdExt::masterchain(seqno, &root)
}

#[derive(Deserialize)]
struct AddressQuery {
    address: String,
}

async fn address_information(State(d): State<ApiState>, q: Query<AddressQuery>) -> Response {
    reply(address_information_of(&d, q.0).await)
}

async fn address_information_of(
    d: &ApiState,
    q: AddressQuery,
) -> Result<FullAccountState, ApiError> {
    blocking(d, move |d| {
        let addr = parse_address(&q.address)?;
        let info = d.account(&addr)?;
        Ok(FullAccountState {
            kind: "raw.fullAccountState".into(),
            balance: u64::try_from(info.balance.into_inner()).unwrap_or(u64::MAX),
            extra_currencies: vec![],
            code: info.code.as_ref().map(boc_base64).unwrap_or_default(),
            data: info.data.as_ref().map(boc_base64).unwrap_or_default(),
            last_transaction_id: TransactionIdJson::new(
                info.last_transaction.0,
                &info.last_transaction.1,
            ),
            block_id: block_id(d),
            frozen_hash: String::new(),
            sync_utime: i64::from(d.now()),
            // toncenter calls an account that never existed
            // uninitialized too.
            state: match info.status {
                crate::AccountStatus::Nonexist => "uninitialized".into(),
                s => s.as_str().into(),
            },
        })
    })
    .await
}

#[derive(Deserialize)]
struct TransactionsQuery {
    address: String,
    limit: Option<usize>,
    lt: Option<String>,
    hash: Option<String>,
    to_lt: Option<String>,
}

async fn transactions(State(d): State<ApiState>, q: Query<TransactionsQuery>) -> Response {
    reply(transactions_of(&d, q.0).await)
}

async fn transactions_of(
    d: &ApiState,
    q: TransactionsQuery,
) -> Result<Vec<RawTransaction>, ApiError> {
    blocking(d, move |d| {
        let addr = parse_address(&q.address)?;
        let limit = q.limit.unwrap_or(10).clamp(1, 100);
        let lt =
            q.lt.as_deref()
                .map(str::parse::<u64>)
                .transpose()
                .map_err(|e| bad(format!("lt: {e}")))?;
        let to_lt = q
            .to_lt
            .as_deref()
            .map(str::parse::<u64>)
            .transpose()
            .map_err(|e| bad(format!("to_lt: {e}")))?;
        let cells = d.transactions(&addr, lt, limit)?;
        let mut out = Vec::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == 0 {
                if let Some(h) = &q.hash {
                    let want = hash_from_str(h).map_err(|e| bad(format!("hash: {e}")))?;
                    if *cell.repr_hash() != want {
                        return Err(bad("no transaction with this lt and hash"));
                    }
                }
            }
            let tx: Transaction = cell
                .parse()
                .map_err(|e| ApiError(503, format!("a stored transaction: {e}")))?;
            if to_lt.is_some_and(|t| tx.lt <= t) {
                break;
            }
            out.push(raw_transaction(&addr, cell, &tx)?);
        }
        Ok(out)
    })
    .await
}

fn raw_transaction(
    addr: &StdAddr,
    cell: &Cell,
    tx: &Transaction,
) -> Result<RawTransaction, ApiError> {
    let internal =
        |e: tycho_types::error::Error| ApiError(503, format!("a stored transaction: {e}"));
    let in_msg = match &tx.in_msg {
        Some(m) => Some(raw_message(m).map_err(internal)?),
        None => None,
    };
    let mut out_msgs = Vec::new();
    for m in tx.out_msgs.values() {
        out_msgs.push(raw_message(&m.map_err(internal)?).map_err(internal)?);
    }
    let (storage, fee) = storage_and_total(tx).map_err(internal)?;
    Ok(RawTransaction {
        kind: "raw.transaction".into(),
        address: Some(AccountAddress {
            kind: "accountAddress".into(),
            account_address: friendly(addr),
        }),
        utime: tx.now,
        data: boc_base64(cell),
        transaction_id: TransactionIdJson::new(tx.lt, cell.repr_hash()),
        fee,
        storage_fee: storage,
        other_fee: fee.saturating_sub(storage),
        in_msg,
        out_msgs,
    })
}

fn storage_and_total(tx: &Transaction) -> Result<(u64, u64), tycho_types::error::Error> {
    let storage = match tx.load_info()? {
        tycho_types::models::TxInfo::Ordinary(o) => o
            .storage_phase
            .map(|s| s.storage_fees_collected.into_inner())
            .unwrap_or(0),
        tycho_types::models::TxInfo::TickTock(t) => {
            t.storage_phase.storage_fees_collected.into_inner()
        }
    };
    let total = tx.total_fees.tokens.into_inner();
    let n = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
    Ok((n(storage), n(total)))
}

fn raw_message(cell: &Cell) -> Result<RawMessage, tycho_types::error::Error> {
    let msg: Message<'_> = cell.parse()?;
    let addr = |a: &IntAddr| a.as_std().map(friendly).unwrap_or_default();
    let (source, destination, value, fwd_fee, created_lt) = match &msg.info {
        MsgInfo::Int(i) => (
            addr(&i.src),
            addr(&i.dst),
            i.value.tokens.into_inner(),
            i.fwd_fee.into_inner(),
            i.created_lt,
        ),
        MsgInfo::ExtIn(i) => (String::new(), addr(&i.dst), 0, 0, 0),
        MsgInfo::ExtOut(o) => (addr(&o.src), String::new(), 0, 0, o.created_lt),
    };
    let mut body = CellBuilder::new();
    body.store_slice(msg.body)?;
    let body = body.build()?;
    let init_state = match &msg.init {
        Some(init) => boc_base64(&CellBuilder::build_from(init)?),
        None => String::new(),
    };
    let n = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
    Ok(RawMessage {
        kind: "raw.message".into(),
        hash: base64_hash(cell.repr_hash()),
        source,
        destination,
        value: n(value),
        fwd_fee: n(fwd_fee),
        ihr_fee: 0,
        created_lt,
        body_hash: base64_hash(body.repr_hash()),
        msg_data: MsgData {
            kind: "msg.dataRaw".into(),
            body: boc_base64(&body),
            init_state,
        },
    })
}

fn base64_hash(h: &HashBytes) -> String {
    TransactionIdJson::new(0, h).hash
}

async fn masterchain_info(State(d): State<ApiState>) -> Response {
    reply(masterchain_info_of(&d).await)
}

async fn masterchain_info_of(d: &ApiState) -> Result<MasterchainInfo, ApiError> {
    blocking(d, |d| {
        let last = block_id(d);
        let mut init = BlockIdExt::masterchain(0, &HashBytes::ZERO);
        init.seqno = 0;
        Ok(MasterchainInfo {
            kind: "blocks.masterchainInfo".into(),
            state_root_hash: last.root_hash.clone(),
            last,
            init,
        })
    })
    .await
}

#[derive(Deserialize)]
struct ConfigQuery {
    #[serde(deserialize_with = "flexible_u64")]
    config_id: u64,
}

async fn config_param(State(d): State<ApiState>, q: Query<ConfigQuery>) -> Response {
    reply(config_param_of(&d, q.0).await)
}

/// `getConfigParam`: one parameter of the configuration, as a cell.
async fn config_param_of(d: &ApiState, q: ConfigQuery) -> Result<serde_json::Value, ApiError> {
    let index = u32::try_from(q.config_id).map_err(|_| bad("config_id is out of range"))?;
    let cell = d.config_param(index).ok_or_else(|| {
        ApiError(
            404,
            format!("config param {index} is not set on this devnet"),
        )
    })?;
    Ok(json!({
        "@type": "configInfo",
        "config": {"@type": "tvm.cell", "bytes": boc_base64(&cell)},
    }))
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| bad(format!("the request body is not the expected JSON: {e}")))
}

async fn run_get_method(State(d): State<ApiState>, body: axum::body::Bytes) -> Response {
    reply(run_get_method_of(&d, body.to_vec()).await)
}

async fn run_get_method_of(d: &ApiState, body: Vec<u8>) -> Result<RunResult, ApiError> {
    blocking(d, move |d| {
        let req: RunGetMethodRequest = json_body(&body)?;
        let addr = parse_address(&req.address)?;
        let args = req
            .stack
            .iter()
            .map(decode_entry)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("stack: {e}")))?;
        let r = d.run_get_method(&addr, &req.method, &args)?;
        Ok(RunResult {
            kind: "smc.runResult".into(),
            gas_used: r.gas_used,
            stack: r.stack.iter().map(encode_result).collect(),
            exit_code: r.exit_code,
        })
    })
    .await
}

fn boc_of(body: &[u8]) -> Result<Cell, ApiError> {
    let req: SendBocRequest = json_body(body)?;
    cell_from_base64(&req.boc).map_err(|e| bad(format!("boc: {e}")))
}

/// Checks an external message against the last block's state and queues
/// it for a later block, as toncenter does: "ok" means accepted, not
/// included.
async fn submit(d: &ApiState, body: Vec<u8>) -> Result<HashBytes, ApiError> {
    let msg = boc_of(&body)?;
    blocking(d, move |d| Ok(d.accept_external(msg)?)).await
}

async fn send_boc(State(d): State<ApiState>, body: axum::body::Bytes) -> Response {
    reply(
        submit(&d, body.to_vec())
            .await
            .map(|_| json!({"@type": "ok"})),
    )
}

async fn send_boc_return_hash(State(d): State<ApiState>, body: axum::body::Bytes) -> Response {
    reply(submit(&d, body.to_vec()).await.map(|hash| ExtMessageInfo {
        kind: "raw.extMessageInfo".into(),
        hash: base64_hash(&hash),
    }))
}

/// A JSON-RPC call, as TON's client libraries make them.
#[derive(Deserialize)]
struct RpcCall {
    #[serde(default)]
    id: serde_json::Value,
    method: String,
    #[serde(default)]
    params: serde_json::Value,
}

fn to_json<T: Serialize>(r: Result<T, ApiError>) -> Result<serde_json::Value, ApiError> {
    r.and_then(|v| {
        serde_json::to_value(v).map_err(|e| ApiError(503, format!("encoding the answer: {e}")))
    })
}

fn params<T: serde::de::DeserializeOwned>(p: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(p).map_err(|e| bad(format!("params: {e}")))
}

/// toncenter's `/jsonRPC`: the same methods, named in the body.
async fn json_rpc(State(d): State<ApiState>, body: axum::body::Bytes) -> Response {
    let call: RpcCall = match json_body(&body) {
        Ok(c) => c,
        Err(e) => return reply::<()>(Err(e)),
    };
    let p = match call.params {
        serde_json::Value::Null => json!({}),
        p => p,
    };
    let bytes = serde_json::to_vec(&p).unwrap_or_default();
    let result = match call.method.as_str() {
        "getAddressInformation" => match params(p) {
            Ok(q) => to_json(address_information_of(&d, q).await),
            Err(e) => Err(e),
        },
        "getTransactions" => match params(p) {
            Ok(q) => to_json(transactions_of(&d, q).await),
            Err(e) => Err(e),
        },
        "getMasterchainInfo" => to_json(masterchain_info_of(&d).await),
        "getConfigParam" => match params(p) {
            Ok(q) => config_param_of(&d, q).await,
            Err(e) => Err(e),
        },
        "runGetMethod" => to_json(run_get_method_of(&d, bytes).await),
        "sendBoc" => submit(&d, bytes).await.map(|_| json!({"@type": "ok"})),
        "sendBocReturnHash" => submit(&d, bytes)
            .await
            .map(|h| json!({"@type": "raw.extMessageInfo", "hash": base64_hash(&h)})),
        "estimateFee" => to_json(estimate_fee_of(&d, bytes).await),
        other => Err(ApiError(
            404,
            format!("method {other:?} is not in this devnet's toncenter v2 subset"),
        )),
    };
    let (status, mut body) = match result {
        Ok(v) => (StatusCode::OK, json!({"ok": true, "result": v})),
        Err(ApiError(code, message)) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            json!({"ok": false, "error": message, "code": code}),
        ),
    };
    body["jsonrpc"] = json!("2.0");
    body["id"] = call.id;
    (status, Json(body)).into_response()
}

async fn estimate_fee(State(d): State<ApiState>, body: axum::body::Bytes) -> Response {
    reply(estimate_fee_of(&d, body.to_vec()).await)
}

async fn estimate_fee_of(d: &ApiState, body: Vec<u8>) -> Result<QueryFees, ApiError> {
    blocking(d, move |d| {
        let req: EstimateFeeRequest = json_body(&body)?;
        let dst = parse_address(&req.address)?;
        let body = cell_from_base64(&req.body).map_err(|e| bad(format!("body: {e}")))?;
        let cell = |s: &str, what: &str| -> Result<Option<Cell>, ApiError> {
            if s.is_empty() {
                Ok(None)
            } else {
                cell_from_base64(s)
                    .map(Some)
                    .map_err(|e| bad(format!("{what}: {e}")))
            }
        };
        let code = cell(&req.init_code, "init_code")?;
        let data = cell(&req.init_data, "init_data")?;
        let init = (code.is_some() || data.is_some()).then(|| StateInit {
            split_depth: None,
            special: None,
            code,
            data,
            libraries: Default::default(),
        });
        let msg = CellBuilder::build_from(Message {
            info: MsgInfo::ExtIn(ExtInMsgInfo {
                src: None,
                dst: IntAddr::Std(dst),
                import_fee: Tokens::ZERO,
            }),
            init,
            body: body.as_slice_allow_exotic(),
            layout: None,
        })
        .map_err(|e| bad(format!("building the message: {e}")))?;
        let f = d.estimate_external(msg, req.ignore_chksig)?;
        let fees = |f: &cocoon_chain::FeeEstimate| Fees {
            kind: "fees".into(),
            in_fwd_fee: f.in_fwd_fee,
            storage_fee: f.storage_fee,
            gas_fee: f.gas_fee,
            fwd_fee: f.fwd_fee,
        };
        Ok(QueryFees {
            kind: "query.fees".into(),
            source_fees: fees(&f),
            destination_fees: vec![],
        })
    })
    .await
}

async fn status(State(d): State<ApiState>) -> Response {
    let options = d.options;
    reply(
        blocking(&d, move |d| {
            let c = d.counters();
            let (accepted, in_transit) = d.pending();
            let faults = d.faults();
            Ok(json!({
                "dev": d.is_dev(),
                "global_id": d.global_id(),
                "block_interval_ms": options.block_interval.as_millis() as u64,
                "rate_limit_rps": options.rate_limit,
                "drop_externals": faults.drop_externals,
                "delay_blocks": faults.delay_blocks,
                "externals_waiting": accepted,
                "internal_messages_in_transit": in_transit,
                "now": d.now(),
                "lt": c.lt.to_string(),
                "blocks": c.blocks,
                "clock_offset": c.clock_offset,
                "minted": c.minted.to_string(),
            }))
        })
        .await,
    )
}

#[derive(Deserialize)]
struct FaucetRequest {
    address: String,
    /// Nanotons, as a decimal string or a number.
    #[serde(deserialize_with = "flexible_u64")]
    amount: u64,
}

/// How long the faucet waits for its payment to land.
const FAUCET_WAIT: Duration = Duration::from_secs(60);

/// Mints into the next block and answers once the payment (and whatever it
/// causes) is delivered.
async fn faucet(State(d): State<ApiState>, body: axum::body::Bytes) -> Response {
    reply(faucet_of(&d, body.to_vec()).await)
}

async fn faucet_of(d: &ApiState, body: Vec<u8>) -> Result<serde_json::Value, ApiError> {
    if !d.is_dev() {
        return Err(DevnetError::DevOnly("the faucet").into());
    }
    let req: FaucetRequest = json_body(&body)?;
    let to = parse_address(&req.address)?;
    if req.amount == 0 {
        return Err(bad("amount must be above zero nanotons"));
    }
    let amount = Tokens::new(u128::from(req.amount));
    let target = to.clone();
    let origin = blocking(d, move |d| Ok(d.faucet_later(&target, amount)?)).await?;
    let mut blocks = d.blocks.clone();
    let settled = tokio::time::timeout(FAUCET_WAIT, async {
        while !d.is_settled(&origin) {
            if blocks.changed().await.is_err() {
                return false;
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    if !settled {
        return Err(ApiError(
            503,
            format!("the faucet's payment was not delivered within {FAUCET_WAIT:?}"),
        ));
    }
    let shown = friendly(&to);
    let balance = blocking(d, move |d| Ok(d.account(&to)?.balance.into_inner())).await?;
    Ok(json!({
        "address": shown,
        "amount": req.amount.to_string(),
        "balance": balance.to_string(),
    }))
}

#[derive(Deserialize)]
struct ClockRequest {
    seconds: u32,
}

async fn advance_clock(State(d): State<ApiState>, body: axum::body::Bytes) -> Response {
    reply(
        blocking(&d, move |d| {
            if !d.is_dev() {
                return Err(DevnetError::DevOnly("moving the clock").into());
            }
            let req: ClockRequest = json_body(&body)?;
            let now = d.advance_clock(req.seconds)?;
            Ok(json!({"now": now}))
        })
        .await,
    )
}
