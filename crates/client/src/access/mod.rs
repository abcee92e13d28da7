//! Who may call the client's API, and how much they may spend.
//!
//! Without API keys and Telegram sign-in the API is open, as on a
//! developer's loopback. Once a key exists (or a bot token is configured),
//! every request names who makes it:
//!
//! - `Authorization: Bearer sk-cocoon-…`: an API key, with its budget
//!   (nanoton, optionally renewed monthly), rate limits and models;
//! - `Authorization: tma <initData>`: a Telegram user, signed by Telegram
//!   (the Mini App) or by the bot holding the same token, under the
//!   budget and limits every Telegram user gets;
//! - `Authorization: Bearer <admin token>`: the operator, unlimited.
//!
//! Before a request goes to the proxy the most it can cost is held against
//! the account's budget; the answer's real cost replaces the hold. A
//! request the budget cannot cover is refused with 429 before any money
//! moves.

mod keys;
mod policy;
mod rate;
mod store;
pub mod telegram;

pub use keys::{admin_routes, ApiKeySecret};
pub use policy::{Month, Renewal, SpendPolicy, Spending};
pub use store::{AccountStore, AdminToken, StoreError};

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use cocoon_core::Usage;

use crate::openai::ApiError;
use rate::RateWindow;
use store::KeyRecord;
use telegram::{InitDataKey, TelegramUserId};

/// How the client decides who may call it.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// Where keys, what they spent and the admin token are kept; `None`
    /// keeps them in memory.
    pub state_dir: Option<PathBuf>,
    /// Telegram sign-in (the Mini App and the bot): the bot's token, and
    /// what each Telegram user may spend.
    pub telegram: Option<TelegramAccess>,
    /// Serve requests without a key even beyond loopback.
    pub open_beyond_loopback: bool,
}

/// Telegram sign-in.
#[derive(Debug, Clone)]
pub struct TelegramAccess {
    /// The key derived from the bot's token.
    pub key: InitDataKey,
    /// Every Telegram user's limits.
    pub policy: SpendPolicy,
}

/// Who makes a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Nobody in particular: access is not restricted.
    Open,
    /// The operator (the admin token).
    Operator,
    /// An API key, by id.
    Key(String),
    /// A Telegram user.
    Telegram(TelegramUserId),
}

impl Principal {
    /// The account it spends from, if any (`key_…` or `tg:<id>`): what
    /// its receipts are kept under.
    pub fn account(&self) -> Option<String> {
        match self {
            Principal::Key(id) => Some(id.clone()),
            Principal::Telegram(user) => Some(format!("tg:{user}")),
            Principal::Open | Principal::Operator => None,
        }
    }

    /// How it shows in logs and stats.
    pub fn label(&self) -> String {
        match self {
            Principal::Open => "open".into(),
            Principal::Operator => "operator".into(),
            Principal::Key(id) => id.clone(),
            Principal::Telegram(_) => "telegram".into(),
        }
    }
}

/// What is happening on an account right now (not stored).
#[derive(Debug, Default)]
struct Live {
    held: u64,
    in_flight: u32,
    window: RateWindow,
}

#[derive(Debug)]
struct KeyState {
    record: KeyRecord,
    live: Live,
}

#[derive(Debug, Default)]
struct UserState {
    spending: Spending,
    live: Live,
}

#[derive(Debug, Default)]
struct Accounts {
    keys: BTreeMap<String, KeyState>,
    by_secret: HashMap<[u8; 32], String>,
    users: HashMap<TelegramUserId, UserState>,
}

impl Accounts {
    fn live_keys(&self) -> usize {
        self.keys
            .values()
            .filter(|k| k.record.revoked_at.is_none())
            .count()
    }

    /// The policy, spending and live state of an account.
    fn account(
        &mut self,
        who: &Principal,
        telegram: Option<&SpendPolicy>,
    ) -> Option<(SpendPolicy, &mut Spending, &mut Live)> {
        match who {
            Principal::Key(id) => self
                .keys
                .get_mut(id)
                .map(|k| (k.record.policy.clone(), &mut k.record.spending, &mut k.live)),
            Principal::Telegram(user) => {
                let policy = telegram?.clone();
                let u = self.users.entry(*user).or_default();
                Some((policy, &mut u.spending, &mut u.live))
            }
            Principal::Open | Principal::Operator => None,
        }
    }
}

/// The client's access control.
#[derive(Debug)]
pub struct Access {
    /// The store, opened when there is something to keep (see
    /// [`Access::store`]).
    store: Mutex<Option<Arc<AccountStore>>>,
    state_dir: Option<PathBuf>,
    /// Serialises writes so that the last one written is the newest state.
    writing: tokio::sync::Mutex<()>,
    accounts: Mutex<Accounts>,
    admin: AdminToken,
    telegram: Option<TelegramAccess>,
    /// The API listens beyond loopback without --open-api: callers must
    /// say who they are even when no key is live (after the last one is
    /// revoked, only the operator may call).
    exposed: bool,
}

/// Why access control could not start.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The admin token could not be read or made.
    #[error("the admin token in {dir}: {reason}")]
    AdminToken {
        /// The state directory.
        dir: String,
        /// The OS error.
        reason: std::io::Error,
    },
}

impl Access {
    /// Opens the store and the admin token; `exposed`: the API listens
    /// beyond loopback and was not told to serve open.
    pub fn open(config: &AccessConfig, exposed: bool) -> Result<Access, AccessError> {
        let dir = config.state_dir.as_deref();
        // A client that never made a key needs no store: two clients of one
        // name may then share a data directory, as before keys existed.
        let existing = dir.is_none_or(AccountStore::exists) || config.telegram.is_some();
        let store = if existing {
            Some(Arc::new(AccountStore::open(dir)?))
        } else {
            None
        };
        let admin = AdminToken::open(dir).map_err(|reason| AccessError::AdminToken {
            dir: dir.map_or("(memory)".into(), |d| d.display().to_string()),
            reason,
        })?;
        let (keys, users) = match &store {
            Some(s) => s.load()?,
            None => Default::default(),
        };
        let mut accounts = Accounts::default();
        for record in keys {
            if let Some(digest) = decode_digest(&record.secret_sha256) {
                accounts.by_secret.insert(digest, record.id.clone());
            }
            let live = Live::default();
            accounts
                .keys
                .insert(record.id.clone(), KeyState { record, live });
        }
        for (user, spending) in users {
            let live = Live::default();
            accounts
                .users
                .insert(TelegramUserId(user), UserState { spending, live });
        }
        Ok(Access {
            store: Mutex::new(store),
            state_dir: config.state_dir.clone(),
            writing: tokio::sync::Mutex::new(()),
            accounts: Mutex::new(accounts),
            admin,
            telegram: config.telegram.clone(),
            exposed,
        })
    }

    /// The store, opened on first use.
    fn store(&self) -> Result<Arc<AccountStore>, StoreError> {
        let mut slot = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let opened = Arc::new(AccountStore::open(self.state_dir.as_deref())?);
        *slot = Some(opened.clone());
        Ok(opened)
    }

    /// Writes a key, durably.
    fn put_key(&self, k: &KeyRecord) -> Result<(), StoreError> {
        self.store()?.put_key(k)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Accounts> {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether requests must say who makes them: a key exists, or
    /// Telegram sign-in is on.
    pub fn restricted(&self) -> bool {
        self.telegram.is_some() || self.exposed || self.lock().live_keys() > 0
    }

    /// Whether a live key or Telegram sign-in asks callers who they are
    /// (as opposed to the listener's exposure alone).
    pub fn restricted_by_credentials(&self) -> bool {
        self.telegram.is_some() || self.lock().live_keys() > 0
    }

    /// The admin token's file, for `cocoon client keys` on this machine.
    pub fn admin_token_file(&self) -> Option<&std::path::Path> {
        self.admin.file.as_deref()
    }

    /// Who makes a request, from its `Authorization` header.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let auth = headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or("\u{fffd}").trim());
        let restricted = self.restricted();
        let Some(auth) = auth.filter(|a| !a.is_empty()) else {
            return if restricted {
                Err(unauthorized(
                    "missing_api_key",
                    "You didn't provide an API key: this client requires one. Send it as \
                     `Authorization: Bearer <key>` (the operator creates keys with \
                     `cocoon client keys create`).",
                ))
            } else {
                Ok(Principal::Open)
            };
        };
        let (scheme, credential) = auth.split_once(' ').unwrap_or((auth, ""));
        let credential = credential.trim();
        if scheme.eq_ignore_ascii_case("tma") && self.telegram.is_some() {
            return self.telegram_user(credential);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            // An open client ignores what it does not use (a proxy's Basic
            // credentials, say).
            if !restricted {
                return Ok(Principal::Open);
            }
            if scheme.eq_ignore_ascii_case("tma") {
                return self.telegram_user(credential);
            }
            return Err(unauthorized(
                "invalid_authorization",
                format!("Authorization scheme {scheme:?} is not accepted: use `Bearer <key>` or `tma <initData>`"),
            ));
        }
        if !credential.is_empty() && self.admin.matches(credential) {
            return Ok(Principal::Operator);
        }
        let digest = store::sha256(credential.as_bytes());
        let accounts = self.lock();
        match accounts.by_secret.get(&digest) {
            Some(id) => match accounts.keys.get(id).and_then(|k| k.record.revoked_at) {
                Some(at) => Err(unauthorized(
                    "revoked_api_key",
                    format!("API key {id} was revoked at {at} (Unix seconds)"),
                )),
                None => Ok(Principal::Key(id.clone())),
            },
            // An SDK must send some key; an open client ignores it.
            None if !restricted => Ok(Principal::Open),
            None => Err(unauthorized(
                "invalid_api_key",
                format!(
                    "Incorrect API key provided: {}. This client knows no such key (or it was never made here).",
                    redact(credential)
                ),
            )),
        }
    }

    fn telegram_user(&self, init_data: &str) -> Result<Principal, ApiError> {
        let Some(tg) = &self.telegram else {
            return Err(unauthorized(
                "telegram_not_enabled",
                "this client does not accept Telegram sign-in: it was started without --telegram-token-file",
            ));
        };
        tg.key
            .verify(init_data, cocoon_core::unix_now())
            .map(Principal::Telegram)
            .map_err(|e| unauthorized("invalid_init_data", e.to_string()))
    }

    /// Admits a request of `who` for `model` that may cost up to
    /// `max_cost` nanoton: checks the models, the rate limits and the
    /// budget, then holds `max_cost` until the answer settles.
    pub fn admit(
        self: &Arc<Self>,
        who: &Principal,
        model: &str,
        max_cost: u64,
    ) -> Result<Admission, ApiError> {
        let now = cocoon_core::unix_now();
        let mut accounts = self.lock();
        let tg_policy = self.telegram.as_ref().map(|t| &t.policy);
        let Some((policy, spending, live)) = accounts.account(who, tg_policy) else {
            return Ok(Admission::unlimited(self.clone(), who.clone()));
        };
        let checked = check(&policy, spending, live, who, model, max_cost, now);
        if let Err(e) = checked {
            spending.refused += 1;
            return Err(e);
        }
        live.window.start(std::time::Instant::now());
        live.held = live.held.saturating_add(max_cost);
        live.in_flight += 1;
        Ok(Admission {
            access: self.clone(),
            who: who.clone(),
            hold: max_cost,
            open: true,
            chargeable: false,
        })
    }

    /// What a principal's account looks like now (keys and Telegram
    /// users), for `/v1/cocoon/balance`.
    pub fn account_view(&self, who: &Principal) -> Option<serde_json::Value> {
        let now = cocoon_core::unix_now();
        let mut accounts = self.lock();
        let tg_policy = self.telegram.as_ref().map(|t| &t.policy);
        let (policy, spending, live) = accounts.account(who, tg_policy)?;
        Some(account_json(&policy, spending, live, now))
    }

    /// The models `who` may use; `None`: every model.
    pub fn allowed_models(&self, who: &Principal) -> Option<Vec<String>> {
        let mut accounts = self.lock();
        let tg_policy = self.telegram.as_ref().map(|t| &t.policy);
        let (policy, _, _) = accounts.account(who, tg_policy)?;
        (!policy.models.is_empty()).then_some(policy.models)
    }

    /// The trust requirements `who`'s key holds its requests to; `None`
    /// without an account.
    pub fn trust_defaults(&self, who: &Principal) -> Option<cocoon_core::trust::TrustRequirements> {
        let mut accounts = self.lock();
        let tg_policy = self.telegram.as_ref().map(|t| &t.policy);
        let (policy, _, _) = accounts.account(who, tg_policy)?;
        Some(policy.trust)
    }

    /// Ends an admission: the hold goes, the real cost and tokens count.
    fn release(&self, who: &Principal, hold: u64, outcome: Option<(u64, &Usage)>) -> bool {
        let now = cocoon_core::unix_now();
        let mut accounts = self.lock();
        let tg_policy = self.telegram.as_ref().map(|t| &t.policy);
        let Some((policy, spending, live)) = accounts.account(who, tg_policy) else {
            return false;
        };
        live.held = live.held.saturating_sub(hold);
        live.in_flight = live.in_flight.saturating_sub(1);
        let Some((cost, usage)) = outcome else {
            return false;
        };
        spending.record(&policy, now, cost, usage.prompt, usage.completion);
        live.window
            .tokens(std::time::Instant::now(), usage.prompt + usage.completion);
        true
    }

    /// Writes an account's current state to the store.
    async fn persist(self: &Arc<Self>, who: &Principal) -> Result<(), String> {
        let _turn = self.writing.lock().await;
        let this = self.clone();
        let who2 = who.clone();
        match tokio::task::spawn_blocking(move || this.write_now(&who2)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("the store's writer failed: {e}")),
        }
    }

    fn write_now(&self, who: &Principal) -> Result<(), StoreError> {
        let snapshot = {
            let accounts = self.lock();
            match who {
                Principal::Key(id) => accounts.keys.get(id).map(|k| Ok(k.record.clone())),
                Principal::Telegram(u) => accounts
                    .users
                    .get(u)
                    .map(|s| Err((u.0, s.spending.clone()))),
                _ => None,
            }
        };
        match snapshot {
            Some(Ok(key)) => self.put_key(&key),
            Some(Err((user, spending))) => self.store()?.put_user(user, &spending),
            None => Ok(()),
        }
    }
}

/// The checks of [`Access::admit`], in the order a caller can act on:
/// the model, the rate, then the money.
fn check(
    policy: &SpendPolicy,
    spending: &Spending,
    live: &mut Live,
    who: &Principal,
    model: &str,
    max_cost: u64,
    now: u64,
) -> Result<(), ApiError> {
    let label = match who {
        Principal::Key(id) => format!("API key {id}"),
        Principal::Telegram(_) => "your Telegram account".to_string(),
        _ => "this caller".to_string(),
    };
    if !policy.models.is_empty() && !policy.models.iter().any(|m| m == model) {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            message: format!(
                "{label} may not use model {model:?}; it may use: {}",
                policy.models.join(", ")
            ),
            kind: "invalid_request_error",
            param: Some("model".into()),
            code: Some("model_not_allowed".into()),
            retry_after: None,
        });
    }
    live.window
        .admit(policy, std::time::Instant::now())
        .map_err(|limit| rate_limited(&label, &limit))?;
    let Some(budget) = policy.budget_nanoton else {
        return Ok(());
    };
    let spent = spending.spent_at(policy, now);
    let left = budget.saturating_sub(spent).saturating_sub(live.held);
    if max_cost > left || (max_cost == 0 && spent >= budget) {
        let renews = match policy.renewal {
            Renewal::Monthly => format!(
                "; it renews at {} (Unix seconds)",
                Month::of(now).next_start()
            ),
            Renewal::Never => String::new(),
        };
        return Err(ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "{label} is over its budget: {spent} of {budget} nanoton spent, {} held by requests in flight, \
                 and this request may cost up to {max_cost} nanoton (lower max_tokens to need less){renews}",
                live.held
            ),
            kind: "insufficient_quota",
            param: None,
            code: Some("insufficient_quota".into()),
            retry_after: None,
        });
    }
    Ok(())
}

fn rate_limited(label: &str, limit: &rate::Limited) -> ApiError {
    ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        message: format!(
            "Rate limit reached for {label}: {} {} per minute allowed, {} used in the last minute; retry in {} s",
            limit.allowed, limit.what, limit.used, limit.retry_after
        ),
        kind: limit.what,
        param: None,
        code: Some("rate_limit_exceeded".into()),
        retry_after: Some(limit.retry_after),
    }
}

fn account_json(policy: &SpendPolicy, s: &Spending, live: &Live, now: u64) -> serde_json::Value {
    let spent = s.spent_at(policy, now);
    serde_json::json!({
        "budget_nanoton": policy.budget_nanoton,
        "spent_nanoton": spent,
        "held_nanoton": live.held,
        "available_nanoton": policy.budget_nanoton.map(|b| b.saturating_sub(spent).saturating_sub(live.held)),
        "renews_at": (policy.renewal == Renewal::Monthly).then(|| Month::of(now).next_start()),
        "requests": s.requests,
        "requests_per_minute": policy.requests_per_minute,
        "tokens_per_minute": policy.tokens_per_minute,
        "models": policy.models,
        "trust": policy.trust,
    })
}

fn unauthorized(code: &str, message: impl Into<String>) -> ApiError {
    ApiError::request(StatusCode::UNAUTHORIZED, code, message)
}

/// A secret as OpenAI shows a wrong one: its start and end only.
fn redact(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len().min(8));
    }
    let head: String = chars[..7].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

fn decode_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// A request admitted under an account: its hold is replaced by the real
/// cost when it settles. One that ends without its cost is free when
/// nothing can have been charged (it failed before any answer), and
/// counted at its hold otherwise (cut off mid-answer, replicas that
/// disagreed): the proxy charges what it delivered, up to the hold.
#[derive(Debug)]
pub struct Admission {
    access: Arc<Access>,
    who: Principal,
    hold: u64,
    open: bool,
    /// Set once the proxy may have charged for it (an answer's first byte
    /// went out, or its replicas ran): ended without its cost, it is then
    /// counted at its hold, the most the proxy can have charged.
    chargeable: bool,
}

impl Admission {
    fn unlimited(access: Arc<Access>, who: Principal) -> Admission {
        Admission {
            access,
            who,
            hold: 0,
            open: false,
            chargeable: false,
        }
    }

    /// The proxy may charge for it from now on (see [`Admission`]).
    pub fn chargeable(&mut self) {
        self.chargeable = true;
    }

    /// Who was admitted.
    pub fn principal(&self) -> &Principal {
        &self.who
    }

    /// Gives the hold back, counting nothing: the answer cost nothing now
    /// (it was recorded from an earlier run, and counted then).
    pub fn free(mut self) {
        if self.open {
            self.open = false;
            self.access.release(&self.who, self.hold, None);
        }
    }

    /// Counts a completed answer's cost (nanoton) and tokens, durably.
    pub async fn settle(mut self, cost: u64, usage: &Usage) {
        if !self.open {
            return;
        }
        self.open = false;
        if self
            .access
            .release(&self.who, self.hold, Some((cost, usage)))
        {
            if let Err(e) = self.access.persist(&self.who).await {
                tracing::error!(error = %e, account = %self.who.label(), "could not store what an account spent");
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        if !self.chargeable {
            self.access.release(&self.who, self.hold, None);
            return;
        }
        let counted =
            self.access
                .release(&self.who, self.hold, Some((self.hold, &Usage::default())));
        if let (true, Ok(rt)) = (counted, tokio::runtime::Handle::try_current()) {
            let (access, who) = (self.access.clone(), self.who.clone());
            rt.spawn(async move {
                if let Err(e) = access.persist(&who).await {
                    tracing::error!(error = %e, account = %who.label(), "could not store what an account spent");
                }
            });
        }
    }
}
