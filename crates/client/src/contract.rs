//! The client's contract on chain, driven by the client's wallet: take back
//! what is above the stake (`POST /v1/cocoon/withdraw`), and close
//! (`POST /v1/cocoon/close`: the first call starts the close delay, during
//! which the proxy commits its last voucher; a call after it pays the rest
//! to the wallet).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cocoon_chain::contracts;
use cocoon_chain::registry::ReadError;
use cocoon_chain::views;
use cocoon_chain::wallet::Transfer;
use cocoon_chain::Chain;
use cocoon_core::Nanoton;

use crate::openai::ApiError;
use crate::{ClientWallet, Shared};

/// Gas carried with a message to the contract; the rest comes back.
const GAS: Nanoton = Nanoton::new(100_000_000);
const TIMEOUT: Duration = Duration::from_secs(60);

/// The contract as `get_client_data` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ContractState {
    pub client_contract: String,
    pub state: &'static str,
    pub close_at: u64,
    pub balance: u64,
    pub stake: u64,
    pub committed: u64,
    pub wallet: String,
    pub wallet_balance: u64,
    /// The chain's time when this was read.
    pub now: u32,
}

fn unavailable(what: String) -> ApiError {
    ApiError::server(StatusCode::SERVICE_UNAVAILABLE, "chain_unavailable", what)
}

fn wallet_of(shared: &Shared) -> Result<ClientWallet, ApiError> {
    shared.config.wallet.clone().ok_or_else(|| {
        ApiError::request(
            StatusCode::NOT_FOUND,
            "no_chain",
            "this client has no wallet on a chain: it runs on a development ledger",
        )
    })
}

pub(crate) async fn read(shared: &Shared, w: &ClientWallet) -> Result<ContractState, ApiError> {
    let contract = &shared.address;
    let account = w
        .chain
        .account(contract)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let wallet = w
        .chain
        .account(&w.wallet.address())
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let mut state = ContractState {
        client_contract: contract.to_string(),
        state: "none",
        close_at: 0,
        balance: 0,
        stake: 0,
        committed: 0,
        wallet: w.wallet.address().to_string(),
        wallet_balance: wallet.balance.get(),
        now: account.sync_utime,
    };
    let data = match views::client_data(w.chain.as_ref(), contract).await {
        Ok(data) => data,
        // Not deployed (yet): no contract to speak of.
        Err(ReadError::Failed { .. }) => return Ok(state),
        Err(e) => return Err(unavailable(e.to_string())),
    };
    state.state = data.state.as_str();
    (state.close_at, state.balance, state.stake, state.committed) = (
        data.close_at,
        data.balance.get(),
        data.stake.get(),
        data.committed.get(),
    );
    Ok(state)
}

async fn send(
    shared: &Shared,
    w: &ClientWallet,
    body: tycho_types::cell::Cell,
) -> Result<(), ApiError> {
    let t = Transfer {
        to: shared.address.clone(),
        value: GAS,
        bounce: true,
        body: Some(body),
        init: None,
    };
    w.wallet
        .send(w.chain.as_ref(), &[t], TIMEOUT)
        .await
        .map_err(|e| match e {
            cocoon_chain::wallet::SendError::Insufficient { .. } => ApiError::request(
                StatusCode::PAYMENT_REQUIRED,
                "wallet_insufficient_funds",
                e.to_string(),
            ),
            other => unavailable(other.to_string()),
        })?;
    Ok(())
}

fn json(status: StatusCode, v: &impl serde::Serialize) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(v).unwrap_or_default(),
    )
        .into_response()
}

/// `POST /v1/cocoon/withdraw {"amount_nanoton": N}`: takes N back from the
/// contract to the wallet (what stays must cover the stake while open).
pub(crate) async fn withdraw(
    State(shared): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Withdraw {
        amount_nanoton: u64,
    }
    let run = async {
        let w = wallet_of(&shared)?;
        let req: Withdraw = serde_json::from_slice(&body).map_err(|e| {
            ApiError::invalid(
                "amount_nanoton",
                "invalid_value",
                format!("expected {{\"amount_nanoton\": <integer nanoton>}}: {e}"),
            )
        })?;
        let before = read(&shared, &w).await?;
        let open_stake = if before.state == "open" {
            before.stake
        } else {
            0
        };
        let free = before.balance.saturating_sub(open_stake);
        if req.amount_nanoton == 0 || req.amount_nanoton > free {
            return Err(ApiError::request(
                StatusCode::BAD_REQUEST,
                "withdrawal_refused",
                format!(
                    "the contract holds {} nanoton of which {} must stay as the stake while it is {}: at most {free} can be withdrawn, {} was asked",
                    before.balance, open_stake, before.state, req.amount_nanoton
                ),
            ));
        }
        let b =
            contracts::withdraw_balance(cocoon_core::unix_now(), Nanoton::new(req.amount_nanoton))
                .map_err(|e| unavailable(e.to_string()))?;
        send(&shared, &w, b).await?;
        let after = read(&shared, &w).await?;
        if after.balance + req.amount_nanoton != before.balance {
            return Err(ApiError::request(
                StatusCode::CONFLICT,
                "withdrawal_refused",
                format!(
                    "the contract did not pay it out: its balance went from {} to {}",
                    before.balance, after.balance
                ),
            ));
        }
        tracing::info!(amount = req.amount_nanoton, contract = %shared.address, "withdrawn from the client contract");
        Ok(after)
    };
    match run.await {
        Ok(s) => json(StatusCode::OK, &s),
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/cocoon/close`: starts closing an open contract; finishes a
/// closing one once its delay is over (the rest goes to the wallet).
pub(crate) async fn close(State(shared): State<Arc<Shared>>) -> Response {
    let run = async {
        let w = wallet_of(&shared)?;
        let before = read(&shared, &w).await?;
        let q = cocoon_core::unix_now();
        match before.state {
            "open" => {
                let b =
                    contracts::request_client_close(q).map_err(|e| unavailable(e.to_string()))?;
                send(&shared, &w, b).await?;
            }
            "closing" if u64::from(before.now) < before.close_at => {
                return Err(ApiError::request(
                    StatusCode::CONFLICT,
                    "close_delay_running",
                    format!(
                        "closing: the proxy may commit its last voucher until {}, {} s from now; close again after that",
                        before.close_at,
                        before.close_at - u64::from(before.now)
                    ),
                ));
            }
            "closing" | "closed" => {
                let b =
                    contracts::finish_client_close(q).map_err(|e| unavailable(e.to_string()))?;
                send(&shared, &w, b).await?;
            }
            _ => {
                return Err(ApiError::request(
                    StatusCode::CONFLICT,
                    "no_contract",
                    "the client has no contract on chain",
                ))
            }
        }
        let after = read(&shared, &w).await?;
        tracing::info!(contract = %shared.address, from = before.state, to = after.state, "client contract close");
        Ok(after)
    };
    match run.await {
        Ok(s) => json(StatusCode::OK, &s),
        Err(e) => e.into_response(),
    }
}
