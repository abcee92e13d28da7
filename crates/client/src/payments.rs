//! The client's side of payments: who pays (its TON address), the vouchers
//! the proxy signs for it, checked on arrival, and the balance.
//!
//! A voucher that fails a check (signature, contract, party, seqno, a total
//! going backwards) means the proxy cannot be trusted with money: the client
//! stops sending it requests and says why.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use cocoon_pay::{SignedVoucher, VoucherBook, VoucherKind};
use tycho_types::models::StdAddr;

use crate::openai::ApiError;
use crate::Shared;

/// What the client knows of its account with the proxy.
#[derive(Debug, Default)]
pub(crate) struct ClientPayments {
    book: Mutex<Option<VoucherBook>>,
    distrust: Mutex<Option<String>>,
}

impl ClientPayments {
    /// Learns the proxy's voucher key and contract from its hello.
    pub(crate) fn on_hello(&self, address: &StdAddr, hello: &cocoon_proto::ProxyHello) {
        if !hello.payments {
            return;
        }
        let (Ok(key), Ok(contract)) = (
            <[u8; 32]>::try_from(hello.voucher_key.as_ref()),
            hello.contract_address.parse::<StdAddr>(),
        ) else {
            self.distrust_because(format!(
                "the proxy charges but announced an unusable voucher key ({} bytes) or contract {:?}",
                hello.voucher_key.len(),
                hello.contract_address
            ));
            return;
        };
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        let same = book
            .as_ref()
            .is_some_and(|b| b.proxy_key() == &key && b.contract() == &contract);
        if !same {
            *book = Some(VoucherBook::new(
                VoucherKind::Client,
                contract,
                address.clone(),
                key,
            ));
        }
    }

    fn distrust_because(&self, why: String) {
        tracing::error!(reason = %why, "no longer trusting the proxy with payments");
        *self.distrust.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// The proxy sent a new voucher with an answer it said was replayed
    /// from its record, uncharged: it charged twice for one answer.
    pub(crate) fn charged_a_replay(&self) {
        self.distrust_because(
            "the proxy charged again for an answer it replayed to an idempotent retry".into(),
        );
    }

    /// Why the proxy is no longer trusted, if it is not.
    pub(crate) fn distrusted(&self) -> Option<String> {
        self.distrust
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Checks the voucher that came with an answer and keeps it.
    pub(crate) fn on_voucher(&self, boc: &[u8]) {
        if boc.is_empty() {
            return;
        }
        let checked = SignedVoucher::from_boc(boc).and_then(|v| {
            let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
            match book.as_mut() {
                Some(b) => b.accept(v, cocoon_core::unix_now()),
                None => Err(cocoon_pay::VoucherError::Malformed(
                    "a voucher arrived before the proxy announced its key".into(),
                )),
            }
        });
        match checked {
            Ok(()) => {}
            // Answers finish out of order; an older, consistent voucher is
            // simply not the latest.
            Err(cocoon_pay::VoucherError::Replayed { .. }) => {}
            Err(e) => self.distrust_because(format!("the proxy sent a bad voucher: {e}")),
        }
    }

    /// The latest voucher accepted.
    pub(crate) fn latest(&self) -> Option<SignedVoucher> {
        self.book
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|b| b.latest().cloned())
    }
}

/// The error for requests while the proxy is distrusted.
pub(crate) fn distrusted_error(why: &str) -> ApiError {
    ApiError::server(
        axum::http::StatusCode::BAD_GATEWAY,
        "proxy_voucher_invalid",
        format!("requests are not sent to this proxy any more: {why}"),
    )
}

/// `POST /v1/cocoon/deposit` with `{"amount_nanoton": N}`: on chain, the
/// client's wallet tops its contract up and the answer waits until the
/// proxy has seen it; without a chain, it credits the development ledger
/// (the proxy refuses unless it allows that). Answers like
/// `GET /v1/cocoon/balance`.
pub(crate) async fn deposit(
    State(shared): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Deposit {
        amount_nanoton: u64,
    }
    let d: Deposit = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => {
            return ApiError::invalid(
                "amount_nanoton",
                "invalid_value",
                format!("expected {{\"amount_nanoton\": <integer nanoton>}}: {e}"),
            )
            .into_response()
        }
    };
    if d.amount_nanoton == 0 {
        return ApiError::invalid(
            "amount_nanoton",
            "invalid_value",
            "the amount must be above zero".to_string(),
        )
        .into_response();
    }
    if let Some(w) = shared.config.wallet.clone() {
        return match top_up_on_chain(&shared, &w, cocoon_core::Nanoton::new(d.amount_nanoton)).await
        {
            Ok(()) => balance(State(shared), None).await,
            Err(e) => e.into_response(),
        };
    }
    let mut proxy = shared.proxy.clone();
    let req = cocoon_proto::DevDepositRequest {
        client_address: shared.address.to_string(),
        amount_nanoton: d.amount_nanoton,
    };
    if let Err(status) = proxy.dev_deposit(req).await {
        let http = match status.code() {
            tonic::Code::PermissionDenied => axum::http::StatusCode::FORBIDDEN,
            tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument => {
                axum::http::StatusCode::BAD_REQUEST
            }
            _ => axum::http::StatusCode::SERVICE_UNAVAILABLE,
        };
        return ApiError::request(http, "deposit_refused", status.message().to_string())
            .into_response();
    }
    balance(State(shared), None).await
}

/// Gas carried with a top-up; what is left comes back to the wallet.
const TOP_UP_GAS: cocoon_core::Nanoton = cocoon_core::Nanoton::new(100_000_000);

/// Sends a top-up from the client's wallet to its contract and waits (at
/// most a minute) until the proxy's ledger shows it.
async fn top_up_on_chain(
    shared: &Shared,
    w: &crate::ClientWallet,
    amount: cocoon_core::Nanoton,
) -> Result<(), ApiError> {
    use cocoon_chain::wallet::Transfer;
    use cocoon_chain::Chain;
    let unavailable = |what: String| {
        ApiError::server(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "chain_unavailable",
            what,
        )
    };
    let deposited = |b: &cocoon_proto::BalanceResponse| b.deposited;
    let mut proxy = shared.proxy.clone();
    let req = || cocoon_proto::BalanceRequest {
        client_address: shared.address.to_string(),
    };
    let before = proxy
        .balance(req())
        .await
        .map(|r| deposited(&r.into_inner()))
        .unwrap_or(0);
    let body = cocoon_chain::contracts::top_up(cocoon_core::unix_now(), amount)
        .map_err(|e| unavailable(format!("building the top-up: {e}")))?;
    let value = amount
        .checked_add(TOP_UP_GAS)
        .map_err(|e| ApiError::invalid("amount_nanoton", "invalid_value", e.to_string()))?;
    let deployed = w
        .chain
        .account(&shared.address)
        .await
        .map(|a| a.status == cocoon_chain::AccountStatus::Active)
        .map_err(|e| unavailable(e.to_string()))?;
    let t = Transfer {
        to: shared.address.clone(),
        value,
        bounce: true,
        body: Some(body),
        init: if deployed {
            None
        } else {
            w.contract_init.clone()
        },
    };
    w.wallet
        .send(w.chain.as_ref(), &[t], std::time::Duration::from_secs(60))
        .await
        .map_err(|e| match e {
            cocoon_chain::wallet::SendError::Insufficient { .. } => ApiError::request(
                axum::http::StatusCode::PAYMENT_REQUIRED,
                "wallet_insufficient_funds",
                e.to_string(),
            ),
            e @ (cocoon_chain::wallet::SendError::Unsettled { .. }
            | cocoon_chain::wallet::SendError::Unknown { .. }) => unavailable(format!(
                "the top-up was sent and may yet land: {e}. Do not send it again before the balance shows it"
            )),
            other => unavailable(format!("the top-up did not happen: {other}")),
        })?;
    tracing::info!(client = %shared.address, %amount, "top-up sent from the client's wallet");
    for _ in 0..240 {
        if let Ok(r) = proxy.balance(req()).await {
            if deposited(&r.into_inner()) >= before.saturating_add(amount.get()) {
                return Ok(());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    Err(unavailable(format!(
        "the top-up of {amount} is on chain, but the proxy has not seen it within a minute; it will count once the proxy reads the chain"
    )))
}

/// `GET /v1/cocoon/balance`: integer nanoton fields and the latest voucher.
pub(crate) async fn balance(
    State(shared): State<Arc<Shared>>,
    who: Option<axum::Extension<crate::access::Principal>>,
) -> Response {
    // A key or a Telegram user sees its own account, not the client's.
    if let Some(account) = who.and_then(|w| shared.access.account_view(&w.0)) {
        return (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "account": account }).to_string(),
        )
            .into_response();
    }
    let mut proxy = shared.proxy.clone();
    let req = cocoon_proto::BalanceRequest {
        client_address: shared.address.to_string(),
    };
    let b = match proxy.balance(req).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            return ApiError::server(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "proxy_unavailable",
                format!(
                    "cannot reach the proxy for the balance: {}",
                    status.message()
                ),
            )
            .into_response()
        }
    };
    // The proxy's copy is checked like any voucher; the latest checked one
    // is shown (answers under load carry one voucher per batch, so the
    // proxy's may be newer than the last one an answer brought).
    if !b.latest_voucher.is_empty() {
        shared.payments.on_voucher(&b.latest_voucher);
    }
    let voucher = shared.payments.latest();
    let body = serde_json::json!({
        "address": shared.address.to_string(),
        "payments": b.payments,
        "deposited": b.deposited,
        "reserved": b.reserved,
        "spent": b.spent,
        "available": b.available,
        "stake": b.stake,
        "voucher": voucher.map(|v| serde_json::json!({
            "total": v.voucher.total.get(),
            "seqno": v.voucher.seqno,
            "contract": v.voucher.contract.to_string(),
            "expires_at": v.voucher.expires_at,
            "boc_hex": v.to_boc().map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>()).unwrap_or_default(),
        })),
        "distrusted": shared.payments.distrusted(),
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
