//! [`Chain`] over toncenter's HTTP API v2: toncenter itself, compatible
//! servers, and the devnet's own API. Several endpoints are tried in turn;
//! a failed call is retried with backoff on the next endpoint; refusals the
//! API states (bad address, rejected message) are returned at once.
//!
//! HTTP 429 is pacing, not an outage: toncenter answers about one call a
//! second without an API key. An endpoint that says 429 is called no faster
//! than it allows from then on (honouring `Retry-After`), and the call
//! waits its turn rather than fail; the pace relaxes again as calls pass.

pub mod wire;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cocoon_core::Nanoton;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tycho_types::cell::{CellBuilder, HashBytes};
use tycho_types::models::{StateInit, StdAddr};

use crate::chain::{
    AccountState, AccountStatus, Chain, ChainError, ChainHead, FeeEstimate, GetMethodOutput,
    TransactionId, TransactionRecord,
};
use crate::stack::StackEntry;
use wire::*;

/// How to reach toncenter-compatible endpoints.
#[derive(Debug, Clone)]
pub struct ToncenterConfig {
    /// API bases, each ending in `/api/v2` (e.g. `http://127.0.0.1:10030/api/v2`).
    pub endpoints: Vec<String>,
    /// Sent as `X-API-Key` when set.
    pub api_key: Option<String>,
    /// Limit for one HTTP call.
    pub timeout: Duration,
    /// Calls per request before giving up (each on the next endpoint).
    pub attempts: u32,
}

impl ToncenterConfig {
    /// One endpoint with the default timeout and retries.
    pub fn single(endpoint: impl Into<String>) -> Self {
        ToncenterConfig {
            endpoints: vec![endpoint.into()],
            api_key: None,
            timeout: Duration::from_secs(10),
            attempts: 4,
        }
    }
}

/// The largest answer read from an endpoint.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// A toncenter v2 client.
#[derive(Debug)]
pub struct Toncenter {
    config: ToncenterConfig,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// The endpoint that answered last, tried first.
    preferred: AtomicUsize,
    /// One per endpoint.
    pacers: Vec<Pacer>,
}

enum Outcome<T> {
    Done(T),
    /// Worth another try elsewhere.
    Retry(String),
    /// The endpoint asks to be called more slowly (HTTP 429), and when
    /// again, if it says.
    RateLimited(Option<Duration>),
    /// The API said no.
    Refused(i64, String),
}

/// The most 429 answers one call waits through before it gives up.
const MAX_RATE_LIMITED: u32 = 60;

/// Spaces the calls to one endpoint once it answered 429.
#[derive(Debug)]
struct Pacer {
    state: std::sync::Mutex<Pace>,
    /// The gap a 429 sets at least: toncenter's pace without an API key
    /// (1 call/s), or with one (10 calls/s).
    floor: Duration,
}

#[derive(Debug)]
struct Pace {
    /// The gap kept between calls (zero until a 429).
    gap: Duration,
    /// When the next call may go.
    next: tokio::time::Instant,
    /// When the gap was last widened: 429s to calls made before the new
    /// gap took effect do not widen it again.
    widened: tokio::time::Instant,
}

impl Pacer {
    fn new(with_key: bool) -> Self {
        let now = tokio::time::Instant::now();
        Pacer {
            state: std::sync::Mutex::new(Pace {
                gap: Duration::ZERO,
                next: now,
                widened: now,
            }),
            floor: if with_key {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(1)
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pace> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for this call's turn.
    async fn turn(&self) {
        let at = {
            let mut s = self.lock();
            let at = s.next.max(tokio::time::Instant::now());
            s.next = at + s.gap;
            at
        };
        tokio::time::sleep_until(at).await;
    }

    /// A 429: slow down to at least the floor, doubling if even the pace
    /// in force was too fast, and wait what the endpoint asked.
    fn limited(&self, retry_after: Option<Duration>) {
        let mut s = self.lock();
        let now = tokio::time::Instant::now();
        if s.gap < self.floor {
            s.gap = self.floor;
            s.widened = now;
        } else if now.duration_since(s.widened) > s.gap * 2 {
            s.gap = (s.gap * 2).min(Duration::from_secs(4));
            s.widened = now;
        }
        let wait = retry_after.unwrap_or(s.gap).min(Duration::from_secs(30));
        s.next = s.next.max(now + wait);
    }

    /// An answer: relax the pace a little.
    fn answered(&self) {
        let mut s = self.lock();
        s.gap = s.gap.mul_f64(0.95);
        if s.gap < Duration::from_millis(5) {
            s.gap = Duration::ZERO;
        }
    }
}

impl Toncenter {
    /// Checks the endpoints and prepares a connection pool.
    pub fn new(mut config: ToncenterConfig) -> Result<Self, ChainError> {
        if config.endpoints.is_empty() {
            return Err(ChainError::BadRequest(
                "no chain endpoint configured".into(),
            ));
        }
        for e in &mut config.endpoints {
            *e = e.trim_end_matches('/').to_string();
            let uri: http::Uri = e
                .parse()
                .map_err(|err| ChainError::BadRequest(format!("chain endpoint {e:?}: {err}")))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(ChainError::BadRequest(format!(
                    "chain endpoint {e:?} must be http(s)://HOST[:PORT]/api/v2"
                )));
            }
        }
        config.attempts = config.attempts.max(1);
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.timeout));
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ChainError::BadRequest(format!("TLS set-up: {e}")))?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let pacers = config
            .endpoints
            .iter()
            .map(|_| Pacer::new(config.api_key.is_some()))
            .collect();
        Ok(Toncenter {
            config,
            client,
            preferred: AtomicUsize::new(0),
            pacers,
        })
    }

    /// The endpoints, in configured order.
    pub fn endpoints(&self) -> &[String] {
        &self.config.endpoints
    }

    /// How it was configured.
    pub fn config(&self) -> &ToncenterConfig {
        &self.config
    }

    /// Calls `method` (GET with `query` when `body` is `None`, POST JSON
    /// otherwise) until an endpoint answers.
    async fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        query: &[(&str, String)],
        body: Option<&impl Serialize>,
    ) -> Result<T, ChainError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ChainError::BadRequest(format!("encoding {method}: {e}")))?;
        let n = self.config.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut last = String::new();
        let (mut attempt, mut limited) = (0u32, 0u32);
        while attempt < self.config.attempts {
            let index = (first + attempt as usize) % n;
            let endpoint = &self.config.endpoints[index];
            self.pacers[index].turn().await;
            match self
                .call_once::<T>(endpoint, method, query, body.as_deref())
                .await
            {
                Outcome::Done(v) => {
                    self.pacers[index].answered();
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(v);
                }
                Outcome::Refused(code, message) => {
                    self.pacers[index].answered();
                    return Err(ChainError::Refused {
                        endpoint: endpoint.clone(),
                        method,
                        code,
                        message,
                    });
                }
                // Pacing: wait for the endpoint's turn, without spending an
                // attempt, up to a point.
                Outcome::RateLimited(retry_after) if limited < MAX_RATE_LIMITED => {
                    limited += 1;
                    self.pacers[index].limited(retry_after);
                    tracing::debug!(endpoint, method, ?retry_after, "rate limited: pacing calls");
                    last = format!("{endpoint}: rate limited (HTTP 429)");
                }
                Outcome::RateLimited(_) => {
                    last = format!("{endpoint}: still rate limited after {limited} tries");
                    attempt += 1;
                }
                Outcome::Retry(reason) => {
                    tracing::debug!(endpoint, method, attempt, %reason, "chain call failed, retrying");
                    last = format!("{endpoint}: {reason}");
                    attempt += 1;
                    let backoff =
                        Duration::from_millis(100u64 << attempt.min(5)).min(Duration::from_secs(2));
                    tokio::time::sleep(backoff).await;
                }
            }
        }
        Err(ChainError::Unreachable {
            tried: self.config.endpoints.join(", "),
            reason: last,
        })
    }

    async fn call_once<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        method: &'static str,
        query: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Outcome<T> {
        let mut uri = format!("{endpoint}/{method}");
        for (i, (k, v)) in query.iter().enumerate() {
            uri.push(if i == 0 { '?' } else { '&' });
            uri.push_str(k);
            uri.push('=');
            uri.push_str(&percent_encode(v));
        }
        let mut req = http::Request::builder()
            .uri(&uri)
            .header("accept", "application/json");
        if let Some(key) = &self.config.api_key {
            req = req.header("x-api-key", key);
        }
        let req = match body {
            Some(b) => req
                .method("POST")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::copy_from_slice(b))),
            None => req.method("GET").body(Full::new(Bytes::new())),
        };
        let req = match req {
            Ok(r) => r,
            Err(e) => return Outcome::Refused(400, format!("building the request: {e}")),
        };
        let answer = tokio::time::timeout(self.config.timeout, async {
            let resp = self.client.request(req).await.map_err(|e| format!("{e}"))?;
            let status = resp.status();
            let retry_after = retry_after(resp.headers());
            let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body, retry_after))
        })
        .await;
        let (status, body, retry_after) = match answer {
            Err(_) => return Outcome::Retry(format!("no answer within {:?}", self.config.timeout)),
            Ok(Err(e)) => return Outcome::Retry(e),
            Ok(Ok(v)) => v,
        };
        if status.as_u16() == 429 {
            return Outcome::RateLimited(retry_after);
        }
        let envelope: Envelope<T> = match serde_json::from_slice(&body) {
            Ok(e) => e,
            Err(e) => {
                if status.is_server_error() {
                    return Outcome::Retry(format!("HTTP {status}"));
                }
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                return Outcome::Retry(format!("HTTP {status}, not a v2 answer ({e}): {text}"));
            }
        };
        match (envelope.ok, envelope.result) {
            (true, Some(r)) => Outcome::Done(r),
            (true, None) => Outcome::Retry("\"ok\": true without a result".into()),
            (false, _) => {
                let code = envelope.code.unwrap_or(status.as_u16() as i64);
                let message = envelope.error.unwrap_or_else(|| "no reason given".into());
                // Server trouble is worth another endpoint; a refusal of
                // what was asked is not.
                if code == 429 {
                    Outcome::RateLimited(retry_after)
                } else if code >= 500 && !is_definite_refusal(&message) {
                    Outcome::Retry(format!("code {code}: {message}"))
                } else {
                    Outcome::Refused(code, message)
                }
            }
        }
    }

    /// Whether an endpoint is a `cocoon devnet` with its development tools
    /// on (a faucet that mints TON, a clock that moves): `Some(true)` then,
    /// `Some(false)` for a devnet without them, `None` for anything else
    /// (toncenter has no such method). Asked of each endpoint: a node must
    /// not mistake a devnet with a faucet for a real chain.
    pub async fn devnet_tools(&self) -> Option<bool> {
        let mut any = None;
        for (index, endpoint) in self.config.endpoints.iter().enumerate() {
            let mut outcome = Outcome::Retry(String::new());
            for _ in 0..MAX_RATE_LIMITED {
                self.pacers[index].turn().await;
                outcome = self
                    .call_once::<serde_json::Value>(endpoint, "devnet/status", &[], None)
                    .await;
                match &outcome {
                    Outcome::RateLimited(after) => self.pacers[index].limited(*after),
                    _ => break,
                }
            }
            if let Outcome::Done(v) = outcome {
                let dev = v
                    .get("dev")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false);
                any = Some(any.unwrap_or(false) || dev);
            }
        }
        any
    }

    /// The network's global id, from its configuration (param 19): what
    /// wallet ids are bound to, so a node can check it is on the network
    /// it was told.
    pub async fn global_id(&self) -> Result<i32, ChainError> {
        let r: serde_json::Value = self
            .call(
                "getConfigParam",
                &[("config_id", "19".to_string())],
                None::<&()>,
            )
            .await?;
        let bytes = r["config"]["bytes"]
            .as_str()
            .ok_or_else(|| self.malformed("getConfigParam", "no config.bytes in the answer"))?;
        let cell = cell_from_base64(bytes).map_err(|e| self.malformed("getConfigParam", e))?;
        cell.as_slice()
            .and_then(|mut s| s.load_u32())
            .map(|v| v as i32)
            .map_err(|e| self.malformed("getConfigParam", format!("param 19: {e}")))
    }

    fn malformed(&self, method: &'static str, reason: impl std::fmt::Display) -> ChainError {
        let endpoint = self.config.endpoints
            [self.preferred.load(Ordering::Relaxed) % self.config.endpoints.len()]
        .clone();
        ChainError::Malformed {
            endpoint,
            method,
            reason: reason.to_string(),
        }
    }
}

/// A `Retry-After` in seconds, when given.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// toncenter answers a rejected external message with a 500 whose text
/// says so; sending it again elsewhere cannot help.
fn is_definite_refusal(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("cannot apply external message")
        || m.contains("not accepted")
        || m.contains("duplicate")
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The raw form toncenter accepts everywhere.
pub fn raw_address(a: &StdAddr) -> String {
    format!("{}:{}", a.workchain, a.address)
}

fn nanoton(v: u64) -> Nanoton {
    Nanoton::new(v)
}

impl Chain for Toncenter {
    async fn send_message(
        &self,
        message: &tycho_types::cell::Cell,
    ) -> Result<HashBytes, ChainError> {
        let body = SendBocRequest {
            boc: boc_base64(message),
        };
        let _: serde_json::Value = self.call("sendBoc", &[], Some(&body)).await?;
        Ok(*message.repr_hash())
    }

    async fn run_get_method(
        &self,
        address: &StdAddr,
        method: &str,
        args: &[StackEntry],
    ) -> Result<GetMethodOutput, ChainError> {
        let stack = args
            .iter()
            .map(encode_argument)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ChainError::BadRequest(e.to_string()))?;
        let body = RunGetMethodRequest {
            address: raw_address(address),
            method: method.to_string(),
            stack,
        };
        let r: RunResult = self.call("runGetMethod", &[], Some(&body)).await?;
        get_method_from_wire(&r).map_err(|e| self.malformed("runGetMethod", e))
    }

    async fn account(&self, address: &StdAddr) -> Result<AccountState, ChainError> {
        let r: FullAccountState = self
            .call(
                "getAddressInformation",
                &[("address", raw_address(address))],
                None::<&()>,
            )
            .await?;
        account_from_wire(&r).map_err(|e| self.malformed("getAddressInformation", e))
    }

    async fn transactions(
        &self,
        address: &StdAddr,
        from: Option<TransactionId>,
        limit: usize,
    ) -> Result<Vec<TransactionRecord>, ChainError> {
        let mut query = vec![
            ("address", raw_address(address)),
            ("limit", limit.max(1).to_string()),
        ];
        if let Some(id) = from {
            query.push(("lt", id.lt.to_string()));
            query.push(("hash", id.hash.to_string()));
        }
        let r: Vec<RawTransaction> = self.call("getTransactions", &query, None::<&()>).await?;
        r.iter()
            .map(transaction_from_wire)
            .collect::<Result<Vec<_>, WireError>>()
            .map_err(|e| self.malformed("getTransactions", e))
    }

    async fn head(&self) -> Result<ChainHead, ChainError> {
        let r: MasterchainInfo = self.call("getMasterchainInfo", &[], None::<&()>).await?;
        Ok(ChainHead {
            seqno: r.last.seqno,
        })
    }

    async fn estimate_fee(
        &self,
        address: &StdAddr,
        body: &tycho_types::cell::Cell,
        init: Option<&StateInit>,
    ) -> Result<FeeEstimate, ChainError> {
        let (init_code, init_data) = match init {
            Some(i) => (
                i.code.as_ref().map(boc_base64).unwrap_or_default(),
                i.data.as_ref().map(boc_base64).unwrap_or_default(),
            ),
            None => (String::new(), String::new()),
        };
        let req = EstimateFeeRequest {
            address: raw_address(address),
            body: boc_base64(body),
            init_code,
            init_data,
            ignore_chksig: true,
        };
        let r: QueryFees = self.call("estimateFee", &[], Some(&req)).await?;
        let f = r.source_fees;
        Ok(FeeEstimate {
            in_fwd_fee: f.in_fwd_fee,
            storage_fee: f.storage_fee,
            gas_fee: f.gas_fee,
            fwd_fee: f.fwd_fee,
        })
    }
}

/// Reads `smc.runResult`.
pub fn get_method_from_wire(r: &RunResult) -> Result<GetMethodOutput, WireError> {
    let stack = r
        .stack
        .iter()
        .map(decode_entry)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(GetMethodOutput {
        exit_code: r.exit_code,
        gas_used: r.gas_used,
        stack,
    })
}

/// Reads one `raw.transaction`; its bytes must hash to the id it claims.
pub fn transaction_from_wire(t: &RawTransaction) -> Result<TransactionRecord, WireError> {
    let cell = cell_from_base64(&t.data)?;
    let hash = hash_from_str(&t.transaction_id.hash)?;
    if *cell.repr_hash() != hash {
        return Err(WireError::Shape(
            "a transaction that does not hash to its id",
        ));
    }
    Ok(TransactionRecord {
        id: TransactionId {
            lt: t.transaction_id.lt,
            hash,
        },
        utime: t.utime,
        fee: nanoton(t.fee),
        cell,
    })
}

/// Reads `raw.fullAccountState`.
pub fn account_from_wire(r: &FullAccountState) -> Result<AccountState, WireError> {
    let status = AccountStatus::parse(&r.state)
        .ok_or_else(|| WireError::UnknownType(format!("account state {}", r.state)))?;
    let cell = |s: &str| {
        if s.is_empty() {
            Ok(None)
        } else {
            cell_from_base64(s).map(Some)
        }
    };
    let hash = hash_from_str(&r.last_transaction_id.hash)?;
    let last_transaction = (r.last_transaction_id.lt != 0).then_some(TransactionId {
        lt: r.last_transaction_id.lt,
        hash,
    });
    Ok(AccountState {
        balance: nanoton(r.balance),
        status,
        code: cell(&r.code)?,
        data: cell(&r.data)?,
        last_transaction,
        sync_utime: u32::try_from(r.sync_utime.max(0)).unwrap_or(u32::MAX),
    })
}

/// An empty cell's bag, for callers that need a body (a plain transfer).
pub fn empty_body() -> tycho_types::cell::Cell {
    CellBuilder::new()
        .build()
        .expect("an empty cell always builds")
}
