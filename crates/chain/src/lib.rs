//! Cocoon on TON.
//!
//! - [`artifacts`]: the settlement contracts' compiled code, exactly as
//!   `contracts/build/` commits it;
//! - [`stack`]: get-method arguments and results as plain data;
//! - [`contracts`]: the contracts' initial states (every address derived
//!   here, as the contracts derive it) and the messages nodes send them;
//! - [`chain`]: the [`Chain`] interface nodes use to reach TON;
//! - [`corroborate`]: trust read from two endpoints, changed only when they
//!   agree;
//! - [`toncenter`]: its implementation over toncenter's HTTP API v2, which
//!   the embedded devnet (`crates/devnet`) serves too;
//! - [`trace`]: following a message to the transactions it caused;
//! - [`wallet`]: node wallets (standard W5R1) and their keys;
//! - [`mnemonic`]: TON mnemonics, generated as TON's wallets do.

pub mod artifacts;
pub mod chain;
pub mod contracts;
pub mod corroborate;
pub mod mnemonic;
pub mod registry;
pub mod stack;
pub mod toncenter;
pub mod trace;
pub mod views;
pub mod wallet;

pub use artifacts::{ArtifactError, ContractCode, ContractKind};
pub use chain::{
    AccountState, AccountStatus, Chain, ChainError, ChainHead, FeeEstimate, GetMethodOutput,
    TransactionId, TransactionRecord,
};
pub use stack::{StackEntry, StackReader};
pub use toncenter::{Toncenter, ToncenterConfig};
pub use wallet::{Delivery, NeverIncluded, SendError, Transfer, WalletError, WalletKey, WalletV5};
