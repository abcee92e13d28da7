//! The one interface nodes use to reach TON: send a message, run a
//! get-method, read an account, list its transactions, see the chain's
//! head, estimate a fee. [`crate::toncenter::Toncenter`] implements it over
//! toncenter's HTTP API v2, which the embedded devnet also serves, so a
//! local network, testnet and mainnet differ only in the endpoint.

use std::future::Future;

use cocoon_core::Nanoton;
use tycho_types::cell::{Cell, HashBytes};
use tycho_types::models::{StateInit, StdAddr};

use crate::stack::StackEntry;

/// A transaction's identity: its logical time and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId {
    /// Logical time.
    pub lt: u64,
    /// Representation hash of the transaction cell.
    pub hash: HashBytes,
}

/// An account's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    /// Nothing at this address.
    Nonexist,
    /// A balance without code.
    Uninit,
    /// Code and data.
    Active,
    /// Frozen for unpaid storage.
    Frozen,
}

impl AccountStatus {
    /// toncenter's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Nonexist => "nonexist",
            AccountStatus::Uninit => "uninitialized",
            AccountStatus::Active => "active",
            AccountStatus::Frozen => "frozen",
        }
    }

    /// Parses toncenter's name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "nonexist" => AccountStatus::Nonexist,
            "uninitialized" | "uninit" => AccountStatus::Uninit,
            "active" => AccountStatus::Active,
            "frozen" => AccountStatus::Frozen,
            _ => return None,
        })
    }
}

/// An account as the chain reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountState {
    /// Its balance.
    pub balance: Nanoton,
    /// Its status.
    pub status: AccountStatus,
    /// Its code, when active.
    pub code: Option<Cell>,
    /// Its data, when active.
    pub data: Option<Cell>,
    /// Its last transaction, `None` when it never had one.
    pub last_transaction: Option<TransactionId>,
    /// The time of the state the answer was read from.
    pub sync_utime: u32,
}

impl AccountState {
    /// The code's hash, when active.
    pub fn code_hash(&self) -> Option<HashBytes> {
        self.code.as_ref().map(|c| *c.repr_hash())
    }

    /// The data's hash, when active.
    pub fn data_hash(&self) -> Option<HashBytes> {
        self.data.as_ref().map(|c| *c.repr_hash())
    }
}

/// One transaction of an account.
#[derive(Debug, Clone)]
pub struct TransactionRecord {
    /// Its identity.
    pub id: TransactionId,
    /// Unix time.
    pub utime: u32,
    /// Total fees it charged.
    pub fee: Nanoton,
    /// The transaction cell (TL-B `Transaction`), for whoever needs more.
    pub cell: Cell,
}

/// A get-method's answer.
#[derive(Debug, Clone)]
pub struct GetMethodOutput {
    /// The VM's exit code: 0 and 1 are success.
    pub exit_code: i32,
    /// Gas used.
    pub gas_used: u64,
    /// The returned values, first returned first.
    pub stack: Vec<StackEntry>,
}

impl GetMethodOutput {
    /// Whether the method returned normally.
    pub fn succeeded(&self) -> bool {
        self.exit_code == 0 || self.exit_code == 1
    }
}

/// The newest block the endpoint knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// Masterchain block number.
    pub seqno: u32,
}

/// What a message would cost its destination, in nanotons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeeEstimate {
    /// Import fee of the inbound external message.
    pub in_fwd_fee: u64,
    /// Storage fee collected.
    pub storage_fee: u64,
    /// Gas fee of the compute phase.
    pub gas_fee: u64,
    /// Forwarding fees of the messages it sends.
    pub fwd_fee: u64,
}

impl FeeEstimate {
    /// Everything together.
    pub fn total(&self) -> u64 {
        self.in_fwd_fee
            .saturating_add(self.storage_fee)
            .saturating_add(self.gas_fee)
            .saturating_add(self.fwd_fee)
    }
}

/// Why a chain call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChainError {
    /// No endpoint answered (after the retries).
    #[error("no chain endpoint answered ({tried}): {reason}")]
    Unreachable {
        /// The endpoints tried.
        tried: String,
        /// The last failure.
        reason: String,
    },
    /// The endpoint refused the call and said why.
    #[error("{endpoint} refused {method} (code {code}): {message}")]
    Refused {
        /// The endpoint.
        endpoint: String,
        /// The API method.
        method: &'static str,
        /// The API's error code (HTTP status style).
        code: i64,
        /// The API's message.
        message: String,
    },
    /// The endpoint answered something this client cannot read.
    #[error("{endpoint} answered {method} with something unreadable: {reason}")]
    Malformed {
        /// The endpoint.
        endpoint: String,
        /// The API method.
        method: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The request could not be made from what was given.
    #[error("{0}")]
    BadRequest(String),
}

/// TON as nodes see it. Implementations retry and fail over by themselves;
/// an error means the chain could not be reached or refused.
pub trait Chain: Send + Sync {
    /// Sends an external message; returns its hash.
    fn send_message(
        &self,
        message: &Cell,
    ) -> impl Future<Output = Result<HashBytes, ChainError>> + Send;

    /// Runs a get-method on the latest state.
    fn run_get_method(
        &self,
        address: &StdAddr,
        method: &str,
        args: &[StackEntry],
    ) -> impl Future<Output = Result<GetMethodOutput, ChainError>> + Send;

    /// Reads an account (a non-existent one is `Nonexist`, not an error).
    fn account(
        &self,
        address: &StdAddr,
    ) -> impl Future<Output = Result<AccountState, ChainError>> + Send;

    /// Up to `limit` transactions of `address`, newest first, starting at
    /// `from` (inclusive) or at the latest.
    fn transactions(
        &self,
        address: &StdAddr,
        from: Option<TransactionId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<TransactionRecord>, ChainError>> + Send;

    /// The newest block.
    fn head(&self) -> impl Future<Output = Result<ChainHead, ChainError>> + Send;

    /// What an external message with `body` (and `init` when deploying)
    /// would cost at `address`.
    fn estimate_fee(
        &self,
        address: &StdAddr,
        body: &Cell,
        init: Option<&StateInit>,
    ) -> impl Future<Output = Result<FeeEstimate, ChainError>> + Send;
}
