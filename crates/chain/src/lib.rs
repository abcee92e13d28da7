//! Cocoon on TON.
//!
//! Today: the compiled code of the settlement contracts, exactly as
//! `contracts/build/` commits it ([`artifacts`]). The chain interface,
//! wallets and the embedded devnet land here beside it.

pub mod artifacts;
pub mod stack;

pub use artifacts::{ArtifactError, ContractCode, ContractKind};
