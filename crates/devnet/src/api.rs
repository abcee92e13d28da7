//! The devnet over HTTP: the subset of toncenter's API v2 that Cocoon's
//! nodes use (`cocoon_chain::toncenter` reads exactly these shapes), under
//! `/api/v2`, plus the development tools under `/api/v2/devnet/` (refused
//! unless the devnet runs with `--dev`).

use std::net::SocketAddr;
use std::sync::Arc;

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

use crate::{Block, Devnet, DevnetError};

/// The default listening address of the devnet's API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:10030";

/// One external message waiting for the next block, and who to tell.
type Pending = (
    Cell,
    tokio::sync::oneshot::Sender<Result<Block, DevnetError>>,
);

/// The most messages one block takes from the queue.
const MAX_BLOCK_MESSAGES: usize = 512;

/// Shared by the handlers.
#[derive(Clone)]
struct ApiState {
    devnet: Arc<Devnet>,
    blocks: std::sync::mpsc::Sender<Pending>,
}

impl std::ops::Deref for ApiState {
    type Target = Arc<Devnet>;
    fn deref(&self) -> &Arc<Devnet> {
        &self.devnet
    }
}

/// Makes blocks of the messages sent while the previous block ran: one
/// disk write for all of them, as a busy chain does; an idle chain makes
/// a block per message at once. Stops when the router is dropped.
fn spawn_block_producer(devnet: &Arc<Devnet>) -> std::sync::mpsc::Sender<Pending> {
    // Weak: the producer must not keep a devnet alive that its owner closed.
    let devnet = Arc::downgrade(devnet);
    let (tx, rx) = std::sync::mpsc::channel::<Pending>();
    std::thread::Builder::new()
        .name("devnet-blocks".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while batch.len() < MAX_BLOCK_MESSAGES {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let (messages, replies): (Vec<Cell>, Vec<_>) = batch.into_iter().unzip();
                let Some(devnet) = devnet.upgrade() else {
                    break;
                };
                match devnet.send_externals(messages) {
                    Ok(results) => {
                        for (reply, r) in replies.into_iter().zip(results) {
                            let _ = reply.send(r);
                        }
                    }
                    Err(e) => {
                        let text = e.to_string();
                        for reply in replies {
                            let _ = reply.send(Err(DevnetError::Malformed(format!(
                                "the block was not written: {text}"
                            ))));
                        }
                    }
                }
            }
        })
        .expect("a thread for the devnet's blocks");
    tx
}

/// The routes, over a shared devnet.
pub fn router(devnet: Arc<Devnet>) -> Router {
    let state = ApiState {
        blocks: spawn_block_producer(&devnet),
        devnet,
    };
    Router::new()
        .route("/api/v2/getAddressInformation", get(address_information))
        .route("/api/v2/getTransactions", get(transactions))
        .route("/api/v2/getMasterchainInfo", get(masterchain_info))
        .route("/api/v2/runGetMethod", post(run_get_method))
        .route("/api/v2/sendBoc", post(send_boc))
        .route("/api/v2/sendBocReturnHash", post(send_boc_return_hash))
        .route("/api/v2/estimateFee", post(estimate_fee))
        .route("/api/v2/devnet/status", get(status))
        .route("/api/v2/devnet/faucet", post(faucet))
        .route("/api/v2/devnet/advanceClock", post(advance_clock))
        .fallback(|| async {
            reply::<()>(Err(ApiError(
                404,
                "no such method in this devnet's toncenter v2 subset".into(),
            )))
        })
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    devnet: Arc<Devnet>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(devnet))
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
    reply(
        blocking(&d, move |d| {
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
                state: info.status.as_str().into(),
            })
        })
        .await,
    )
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
    reply(
        blocking(&d, move |d| {
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
        .await,
    )
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
    reply(
        blocking(&d, |d| {
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
        .await,
    )
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| bad(format!("the request body is not the expected JSON: {e}")))
}

async fn run_get_method(State(d): State<ApiState>, body: axum::body::Bytes) -> Response {
    reply(
        blocking(&d, move |d| {
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
        .await,
    )
}

fn boc_of(body: &[u8]) -> Result<Cell, ApiError> {
    let req: SendBocRequest = json_body(body)?;
    cell_from_base64(&req.boc).map_err(|e| bad(format!("boc: {e}")))
}

/// Queues an external message for the next block and waits for it.
async fn submit(d: &ApiState, body: &[u8]) -> Result<HashBytes, ApiError> {
    let msg = boc_of(body)?;
    let hash = *msg.repr_hash();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let stopped = || ApiError(503, "the devnet's block producer has stopped".into());
    d.blocks.send((msg, tx)).map_err(|_| stopped())?;
    rx.await.map_err(|_| stopped())??;
    Ok(hash)
}

async fn send_boc(State(d): State<ApiState>, body: axum::body::Bytes) -> Response {
    reply(submit(&d, &body).await.map(|_| json!({"@type": "ok"})))
}

async fn send_boc_return_hash(State(d): State<ApiState>, body: axum::body::Bytes) -> Response {
    reply(submit(&d, &body).await.map(|hash| ExtMessageInfo {
        kind: "raw.extMessageInfo".into(),
        hash: base64_hash(&hash),
    }))
}

async fn estimate_fee(State(d): State<ApiState>, body: axum::body::Bytes) -> Response {
    reply(
        blocking(&d, move |d| {
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
        .await,
    )
}

async fn status(State(d): State<ApiState>) -> Response {
    reply(
        blocking(&d, |d| {
            let c = d.counters();
            Ok(json!({
                "dev": d.is_dev(),
                "global_id": d.global_id(),
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

async fn faucet(State(d): State<ApiState>, body: axum::body::Bytes) -> Response {
    reply(
        blocking(&d, move |d| {
            if !d.is_dev() {
                return Err(DevnetError::DevOnly("the faucet").into());
            }
            let req: FaucetRequest = json_body(&body)?;
            let to = parse_address(&req.address)?;
            if req.amount == 0 {
                return Err(bad("amount must be above zero nanotons"));
            }
            let block = d.faucet(&to, Tokens::new(u128::from(req.amount)))?;
            let balance = d.account(&to)?.balance.into_inner();
            Ok(json!({
                "address": friendly(&to),
                "amount": req.amount.to_string(),
                "balance": balance.to_string(),
                "transactions": block.transactions.len(),
            }))
        })
        .await,
    )
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
