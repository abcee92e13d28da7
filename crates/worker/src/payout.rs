//! Taking earnings out: the worker's wallet sends its latest voucher to its
//! worker contract (`Payout`), which has the proxy's contract pay the
//! voucher's increase over what was already paid to the wallet.
//! `POST /admin/withdraw` (and `cocoon worker withdraw`) does it on demand.
//! `POST /admin/stake` (`cocoon worker stake`) adds to the contract's stake
//! beyond the minimum the worker keeps by itself. At start the worker also
//! registers its receipt key in the contract (`add_receipt_key`): slash
//! evidence against it must carry a receipt signed by a registered key.

use std::sync::Arc;
use std::time::Duration;

use cocoon_chain::contracts;
use cocoon_chain::registry::ReadError;
use cocoon_chain::views;
use cocoon_chain::wallet::{Transfer, WalletV5};
use cocoon_chain::{AccountStatus, Chain, Toncenter};
use cocoon_core::Nanoton;
use tycho_types::boc::Boc;
use tycho_types::models::{StateInit, StdAddr};

/// Gas carried with a payout: the worker contract's, the proxy contract's
/// and the payment's; what is left comes back to the wallet.
const PAYOUT_GAS: Nanoton = Nanoton::new(100_000_000);
/// Gas carried with a stake top-up; what is left comes back.
const STAKE_GAS: Nanoton = Nanoton::new(50_000_000);
/// Gas carried with a receipt key's registration; what is left comes back.
const KEY_GAS: Nanoton = Nanoton::new(50_000_000);
/// How long a payout may take to be applied.
const PAYOUT_TIMEOUT: Duration = Duration::from_secs(60);

/// How the worker reaches its money on chain.
#[derive(Clone)]
pub struct WorkerChain {
    /// The chain's API.
    pub chain: Arc<Toncenter>,
    /// The wallet that owns the worker contract and receives the payouts.
    pub wallet: Arc<WalletV5>,
    /// The worker contract's initial state, sent along while it is not
    /// deployed yet.
    pub contract_init: Option<StateInit>,
    /// Withdraw by itself when what is earned and not yet paid passes this;
    /// `None`: only on demand.
    pub payout_above: Option<Nanoton>,
}

/// How often earnings are checked against [`WorkerChain::payout_above`].
const PAYOUT_CHECK: Duration = Duration::from_secs(30);
/// The longest wait after payouts that failed or paid nothing: each costs
/// gas, and a proxy contract that holds nothing pays nothing the next
/// minute either.
const PAYOUT_BACKOFF_MAX: Duration = Duration::from_secs(3600);

/// Withdraws whenever earnings not yet paid pass the threshold, until
/// `stop` turns true. A failure is logged and tried again later, waiting
/// twice as long after each one in a row (up to an hour).
pub(crate) async fn payouts(
    shared: Arc<crate::Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(above) = shared.config.chain.as_ref().and_then(|c| c.payout_above) else {
        return;
    };
    let mut wait = PAYOUT_CHECK;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        let Some(c) = shared.config.chain.as_ref() else {
            return;
        };
        let Some(v) = shared.earnings.latest_voucher() else {
            continue;
        };
        let paid = match paid_on_chain(&c.chain, &shared.address).await {
            Ok((paid, _)) => paid,
            Err(e) => {
                tracing::debug!(error = %e, "earnings not checked on chain");
                continue;
            }
        };
        if v.voucher.total.saturating_sub(paid) > above {
            match withdraw(&shared).await {
                Ok(w) => {
                    wait = PAYOUT_CHECK;
                    tracing::info!(paid = %w.paid, fees = %w.fees, "earnings withdrawn above the threshold")
                }
                Err(e) => {
                    wait = (wait * 2).min(PAYOUT_BACKOFF_MAX);
                    tracing::warn!(error = %e, retry_in_s = wait.as_secs(), "withdrawing earnings above the threshold failed; will try again")
                }
            }
        }
    }
}

impl std::fmt::Debug for WorkerChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerChain")
            .field("endpoints", &self.chain.endpoints())
            .field("wallet", &self.wallet.address())
            .finish()
    }
}

/// What a withdrawal did.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Withdrawal {
    pub wallet: String,
    pub worker_contract: String,
    pub voucher_total: String,
    pub voucher_seqno: u64,
    /// Paid on chain before this withdrawal.
    pub paid_before: String,
    /// Paid by this withdrawal: the voucher's increase, or as much of it
    /// as the proxy contract held.
    pub paid: String,
    /// What the proxy contract could not pay: the same voucher claims it
    /// again later.
    pub still_owed: String,
    /// Staked by this withdrawal, to reach the minimum payouts need.
    pub staked: String,
    pub wallet_balance_before: String,
    pub wallet_balance_after: String,
    /// What the withdrawal cost the wallet: gas and forwarding, net of the
    /// excess that came back.
    pub fees: String,
    /// The fees of every transaction the withdrawal caused and every
    /// message's forwarding fee, as the chain reports them (found by message
    /// hash). `fees` is this, less whatever of `contracts_storage_fees` the
    /// contracts paid from their own reserves rather than from the gas.
    pub chain_fees: String,
    /// The storage fees the contracts on the way collected from themselves.
    pub contracts_storage_fees: String,
    /// How many transactions it took.
    pub transactions: usize,
}

/// Why a withdrawal did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WithdrawError {
    #[error("this worker is not connected to a chain")]
    NoChain,
    #[error("nothing earned yet: no voucher from the proxy")]
    NothingEarned,
    #[error("already paid: the worker contract has paid {paid}, the latest voucher says {total}")]
    AlreadyPaid { paid: Nanoton, total: Nanoton },
    #[error(
        "a payout of {amount} is still on its way to the proxy contract; try again once it lands"
    )]
    InFlight { amount: Nanoton },
    #[error("the latest voucher cannot be paid out: {0}")]
    Voucher(#[from] cocoon_pay::voucher::VoucherError),
    #[error("a withdrawal of the stake is under way until {until} (UNIX time): the contract pays nothing meanwhile; withdraw the stake, cancel the withdrawal, or wait for its window to pass")]
    StakeWithdrawing { until: u64 },
    #[error("the payout sent to {contract} did not land on chain within 15 s; nothing is known to be paid yet")]
    NotSettled { contract: StdAddr },
    #[error("the payout paid nothing: the proxy contract holds nothing for workers now, or refused it (closed, or past its close delay); {owed} stays owed and the voucher stays claimable")]
    NothingPaid { owed: Nanoton },
    #[error("the chain: {0}")]
    Chain(#[from] cocoon_chain::ChainError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("the wallet's message: {0}")]
    Send(#[from] cocoon_chain::SendError),
    #[error("building the message: {0}")]
    Message(#[from] tycho_types::error::Error),
    #[error("the latest voucher does not decode as a cell: {0}")]
    VoucherCell(#[from] tycho_types::boc::de::Error),
    #[error("the {what} sent to {contract} did not show on chain within 15 s")]
    NotShown {
        what: &'static str,
        contract: StdAddr,
    },
    #[error("a stake of zero adds nothing")]
    ZeroStake,
    #[error("the wallet holds {balance}, less than the {amount} asked and {gas} of gas")]
    WalletShort {
        amount: Nanoton,
        gas: Nanoton,
        balance: Nanoton,
    },
    #[error("the worker contract must hold a stake of at least {min} for payouts; it holds {staked}, and the wallet's {balance} cannot cover the rest and the gas: top the wallet up")]
    CannotStake {
        min: Nanoton,
        staked: Nanoton,
        balance: Nanoton,
    },
}

impl WithdrawError {
    /// Whether the chain failed (or did not show the result in time),
    /// rather than the request.
    pub(crate) fn is_chain(&self) -> bool {
        matches!(
            self,
            WithdrawError::Chain(_)
                | WithdrawError::Read(_)
                | WithdrawError::Send(_)
                | WithdrawError::NotShown { .. }
                | WithdrawError::NotSettled { .. }
        )
    }
}

/// The least stake the worker contract asks for payouts, as its initial
/// data states it (`terms.min_stake`, contracts/README.md).
fn min_stake_of(init: &StateInit) -> Option<Nanoton> {
    use tycho_types::cell::Load;
    let data = init.data.as_ref()?;
    let terms = data.reference(1)?;
    let mut s = terms.as_slice().ok()?;
    StdAddr::load_from(&mut s).ok()?;
    s.load_u256().ok()?;
    let min = tycho_types::num::Tokens::load_from(&mut s)
        .ok()?
        .into_inner();
    u64::try_from(min).ok().map(Nanoton::new)
}

/// What the worker contract has at stake now (zero before it exists).
async fn staked(
    chain: &Toncenter,
    contract: &StdAddr,
    deployed: bool,
) -> Result<Nanoton, WithdrawError> {
    if !deployed {
        return Ok(Nanoton::ZERO);
    }
    Ok(views::worker_stake(chain, contract).await?.stake)
}

/// Until when a withdrawal of the worker contract's stake runs, if one
/// does now: the contract pays nothing meanwhile.
async fn withdrawing_until(
    chain: &Toncenter,
    contract: &StdAddr,
) -> Result<Option<u64>, WithdrawError> {
    let stake = views::worker_stake(chain, contract).await?;
    Ok(stake.withdrawing_until(cocoon_core::unix_now()))
}

/// What the worker contract says of its payouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct PayoutState {
    /// Paid out of the vouchers so far.
    committed: Nanoton,
    /// The voucher seqno last committed.
    last_seqno: u64,
    /// A payout on its way to the proxy contract.
    in_flight: Nanoton,
    /// What the last payout asked for and the proxy contract could not pay.
    owed: Nanoton,
    /// Whether the contract is deployed.
    deployed: bool,
    /// Its last transaction: a payout has landed (settled, refused or
    /// bounced) when nothing is in flight and this moved.
    last_tx: Option<cocoon_chain::TransactionId>,
}

async fn payout_state(chain: &Toncenter, contract: &StdAddr) -> Result<PayoutState, WithdrawError> {
    let account = chain.account(contract).await?;
    if account.status != AccountStatus::Active {
        return Ok(PayoutState {
            last_tx: account.last_transaction,
            ..PayoutState::default()
        });
    }
    let data = views::worker_data(chain, contract).await?;
    Ok(PayoutState {
        committed: data.committed,
        last_seqno: data.last_seqno,
        in_flight: data.in_flight,
        owed: data.owed,
        deployed: true,
        last_tx: account.last_transaction,
    })
}

async fn paid_on_chain(
    chain: &Toncenter,
    contract: &StdAddr,
) -> Result<(Nanoton, bool), WithdrawError> {
    let s = payout_state(chain, contract).await?;
    Ok((s.committed, s.deployed))
}

/// The transfer that brings the worker contract's stake up to the
/// minimum payouts need, and its amount; `None` when it holds enough.
/// `balance` is the wallet's; `more_gas` what else the same message sends.
async fn stake_transfer(
    c: &WorkerChain,
    contract: &StdAddr,
    deployed: bool,
    balance: Nanoton,
    more_gas: Nanoton,
) -> Result<Option<(Transfer, Nanoton)>, WithdrawError> {
    let min = c
        .contract_init
        .as_ref()
        .and_then(min_stake_of)
        .unwrap_or(Nanoton::ZERO);
    let staked_before = staked(&c.chain, contract, deployed).await?;
    let stake = min.saturating_sub(staked_before);
    if stake == Nanoton::ZERO {
        return Ok(None);
    }
    let value = Nanoton::new(stake.get() + STAKE_GAS.get() + deploy_reserve(deployed).get());
    if balance.get() < value.get() + more_gas.get() {
        return Err(WithdrawError::CannotStake {
            min,
            staked: staked_before,
            balance,
        });
    }
    tracing::info!(%contract, %stake, %min, "staking the worker contract's minimum");
    let transfer = stake_message(c, contract, deployed, stake, value)?;
    Ok(Some((transfer, stake)))
}

/// What the message that deploys the worker contract carries besides its
/// amount and gas: the contract's storage reserve.
fn deploy_reserve(deployed: bool) -> Nanoton {
    if deployed {
        Nanoton::ZERO
    } else {
        contracts::reserve::WORKER
    }
}

/// `add_worker_stake` of `amount` to `contract`, carrying `value`, with the
/// contract's initial state while it is not deployed.
fn stake_message(
    c: &WorkerChain,
    contract: &StdAddr,
    deployed: bool,
    amount: Nanoton,
    value: Nanoton,
) -> Result<Transfer, WithdrawError> {
    Ok(Transfer {
        to: contract.clone(),
        value,
        bounce: false,
        body: Some(contracts::add_worker_stake(
            cocoon_core::unix_now(),
            amount,
        )?),
        init: if deployed {
            None
        } else {
            c.contract_init.clone()
        },
    })
}

/// Stakes the minimum from the wallet when the worker contract holds less
/// (deploying the contract if needed), so that the proxy admits the worker
/// and its payouts go through. Returns what it staked.
pub(crate) async fn ensure_stake(shared: &crate::Shared) -> Result<Nanoton, WithdrawError> {
    let c = shared.config.chain.as_ref().ok_or(WithdrawError::NoChain)?;
    let contract = &shared.address;
    let (_, deployed) = paid_on_chain(&c.chain, contract).await?;
    let balance = c.chain.account(&c.wallet.address()).await?.balance;
    let Some((t, stake)) = stake_transfer(c, contract, deployed, balance, Nanoton::ZERO).await?
    else {
        return Ok(Nanoton::ZERO);
    };
    c.wallet
        .send(c.chain.as_ref(), &[t], PAYOUT_TIMEOUT)
        .await?;
    // On a live network the contract's state may lag the wallet's.
    for _ in 0..60 {
        let (_, deployed) = paid_on_chain(&c.chain, contract).await?;
        if staked(&c.chain, contract, deployed).await? >= stake {
            return Ok(stake);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(WithdrawError::NotShown {
        what: "stake",
        contract: contract.clone(),
    })
}

/// Whether evidence may name `key` now (registered and not removed).
async fn receipt_key_active(
    chain: &Toncenter,
    contract: &StdAddr,
    key: &[u8; 32],
) -> Result<bool, WithdrawError> {
    let status = views::receipt_key(chain, contract, key).await?;
    Ok(status == views::ReceiptKeyStatus::Active)
}

/// Registers `key` as a receipt key of the worker contract (the wallet
/// owns it) unless it is active there already; returns whether it sent
/// the registration.
pub(crate) async fn ensure_receipt_key(
    shared: &crate::Shared,
    key: &[u8; 32],
) -> Result<bool, WithdrawError> {
    let c = shared.config.chain.as_ref().ok_or(WithdrawError::NoChain)?;
    let contract = &shared.address;
    if receipt_key_active(&c.chain, contract, key).await? {
        return Ok(false);
    }
    let body = contracts::add_receipt_key(cocoon_core::unix_now(), key)?;
    let transfer = Transfer {
        to: contract.clone(),
        value: KEY_GAS,
        bounce: true,
        body: Some(body),
        init: None,
    };
    c.wallet
        .send(c.chain.as_ref(), &[transfer], PAYOUT_TIMEOUT)
        .await?;
    // On a live network the contract's state may lag the wallet's.
    for _ in 0..60 {
        if receipt_key_active(&c.chain, contract, key).await? {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(WithdrawError::NotShown {
        what: "receipt key",
        contract: contract.clone(),
    })
}

/// What adding to the stake did.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Staking {
    pub wallet: String,
    pub worker_contract: String,
    /// Added by this call.
    pub added: String,
    pub stake_before: String,
    pub stake_after: String,
    pub wallet_balance_before: String,
    pub wallet_balance_after: String,
    /// What it cost the wallet besides the stake: gas and forwarding, net
    /// of the excess that came back.
    pub fees: String,
}

/// Adds `amount` to the worker contract's stake from the wallet (deploying
/// the contract if needed) and reports what moved once the chain shows it.
pub(crate) async fn add_stake(
    shared: &crate::Shared,
    amount: Nanoton,
) -> Result<Staking, WithdrawError> {
    let c = shared.config.chain.as_ref().ok_or(WithdrawError::NoChain)?;
    if amount == Nanoton::ZERO {
        return Err(WithdrawError::ZeroStake);
    }
    let contract = &shared.address;
    let wallet = c.wallet.address();
    let (_, deployed) = paid_on_chain(&c.chain, contract).await?;
    let before = c.chain.account(&wallet).await?.balance;
    let value = amount
        .checked_add(STAKE_GAS)
        .and_then(|v| v.checked_add(deploy_reserve(deployed)))
        .map_err(|_| WithdrawError::WalletShort {
            amount,
            gas: STAKE_GAS,
            balance: before,
        })?;
    if before < value {
        return Err(WithdrawError::WalletShort {
            amount,
            gas: STAKE_GAS,
            balance: before,
        });
    }
    let stake_before = staked(&c.chain, contract, deployed).await?;
    let transfer = stake_message(c, contract, deployed, amount, value)?;
    tracing::info!(%contract, %amount, "adding to the worker contract's stake");
    c.wallet
        .send(c.chain.as_ref(), &[transfer], PAYOUT_TIMEOUT)
        .await?;
    let want = stake_before
        .checked_add(amount)
        .unwrap_or(Nanoton::new(u64::MAX));
    let mut stake_after = stake_before;
    // On a live network the contract's state may lag the wallet's.
    for _ in 0..60 {
        stake_after = staked(&c.chain, contract, true).await?;
        if stake_after >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if stake_after < want {
        tracing::warn!(%contract, holds = %stake_after, wanted = %want, "the stake sent did not show on chain");
        return Err(WithdrawError::NotShown {
            what: "stake",
            contract: contract.clone(),
        });
    }
    let after = c.chain.account(&wallet).await?.balance;
    Ok(Staking {
        wallet: wallet.to_string(),
        worker_contract: contract.to_string(),
        added: amount.to_string(),
        stake_before: stake_before.to_string(),
        stake_after: stake_after.to_string(),
        wallet_balance_before: before.to_string(),
        wallet_balance_after: after.to_string(),
        fees: before
            .saturating_sub(after)
            .saturating_sub(amount)
            .to_string(),
    })
}

/// Refuses, before any fee, a payout the worker contract would refuse or
/// that cannot pay: nothing new, one in flight, a stake withdrawal under
/// way, or a voucher the contract's own checks refuse.
async fn payout_preflight(
    chain: &Toncenter,
    contract: &StdAddr,
    state: &PayoutState,
    voucher: &cocoon_pay::Voucher,
) -> Result<(), WithdrawError> {
    if voucher.total <= state.committed {
        return Err(WithdrawError::AlreadyPaid {
            paid: state.committed,
            total: voucher.total,
        });
    }
    if state.in_flight > Nanoton::ZERO {
        return Err(WithdrawError::InFlight {
            amount: state.in_flight,
        });
    }
    if state.deployed {
        if let Some(until) = withdrawing_until(chain, contract).await? {
            return Err(WithdrawError::StakeWithdrawing { until });
        }
    }
    let committed = cocoon_pay::voucher::Committed {
        total: state.committed,
        seqno: state.last_seqno,
    };
    voucher
        .check_commit(&committed, cocoon_core::unix_now())
        .map(|_| ())
        .map_err(WithdrawError::Voucher)
}

/// The transfers of a payout of `voucher`: the stake's top-up to the
/// minimum first when the contract holds less (in the same external
/// message), then the payout itself. Returns them and what they stake.
async fn payout_transfers(
    c: &WorkerChain,
    contract: &StdAddr,
    deployed: bool,
    balance: Nanoton,
    voucher: &cocoon_pay::SignedVoucher,
) -> Result<(Vec<Transfer>, Nanoton), WithdrawError> {
    let cell = Boc::decode(voucher.to_boc()?)?;
    let body = contracts::payout(cocoon_core::unix_now(), cell)?;
    let mut init = if deployed {
        None
    } else {
        c.contract_init.clone()
    };
    let mut transfers = Vec::new();
    let mut stake = Nanoton::ZERO;
    if let Some((t, amount)) = stake_transfer(c, contract, deployed, balance, PAYOUT_GAS).await? {
        transfers.push(t);
        stake = amount;
        init = None;
    }
    transfers.push(Transfer {
        to: contract.clone(),
        value: PAYOUT_GAS,
        bounce: true,
        body: Some(body),
        init,
    });
    Ok((transfers, stake))
}

/// Waits for the payout sent after `sent` (the contract's state then) to
/// land: the contract has a newer transaction and nothing is on its way
/// (the proxy's settlement, or a refusal or bounce that paid nothing). On a
/// live network that may take a few blocks. Returns the contract's state
/// and the wallet's balance then.
async fn payout_landed(
    c: &WorkerChain,
    contract: &StdAddr,
    sent: &PayoutState,
) -> Result<(PayoutState, Nanoton), WithdrawError> {
    for _ in 0..60 {
        let now = payout_state(&c.chain, contract).await?;
        if now.in_flight == Nanoton::ZERO && now.last_tx != sent.last_tx {
            let wallet = c.chain.account(&c.wallet.address()).await?;
            return Ok((now, wallet.balance));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(WithdrawError::NotSettled {
        contract: contract.clone(),
    })
}

/// Sends the latest voucher for payout and reports what moved.
pub(crate) async fn withdraw(shared: &crate::Shared) -> Result<Withdrawal, WithdrawError> {
    let c = shared.config.chain.as_ref().ok_or(WithdrawError::NoChain)?;
    let voucher = shared
        .earnings
        .latest_voucher()
        .ok_or(WithdrawError::NothingEarned)?;
    let contract = shared.address.clone();
    let state = payout_state(&c.chain, &contract).await?;
    payout_preflight(&c.chain, &contract, &state, &voucher.voucher).await?;
    let paid_before = state.committed;
    let total = voucher.voucher.total;
    let wallet = c.wallet.address();
    let before = c.chain.account(&wallet).await?.balance;
    let (transfers, stake) =
        payout_transfers(c, &contract, state.deployed, before, &voucher).await?;
    let delivery = c
        .wallet
        .send(c.chain.as_ref(), &transfers, PAYOUT_TIMEOUT)
        .await?;
    let (now, after) = payout_landed(c, &contract, &state).await?;
    let paid = now.committed.saturating_sub(paid_before);
    if paid == Nanoton::ZERO {
        return Err(WithdrawError::NothingPaid { owed: now.owed });
    }
    // before - stake - gas sent + excess back + paid = after, so
    // fees = before + paid - stake - after.
    let fees = (before.get() + paid.get()).saturating_sub(after.get() + stake.get());
    tracing::info!(%contract, %wallet, %paid, fees, "earnings withdrawn");
    Ok(Withdrawal {
        wallet: wallet.to_string(),
        worker_contract: contract.to_string(),
        voucher_total: total.get().to_string(),
        voucher_seqno: voucher.voucher.seqno,
        paid_before: paid_before.get().to_string(),
        paid: paid.get().to_string(),
        still_owed: now.owed.get().to_string(),
        staked: stake.get().to_string(),
        wallet_balance_before: before.get().to_string(),
        wallet_balance_after: after.get().to_string(),
        fees: fees.to_string(),
        chain_fees: delivery.fees().get().to_string(),
        contracts_storage_fees: delivery.others_storage_fees().get().to_string(),
        transactions: delivery.trace.len(),
    })
}
