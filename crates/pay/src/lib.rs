//! Cocoon payments, off chain: account state machines, the proxy's durable
//! ledger, and vouchers the proxy signs in the form the TON settlement
//! contracts will check.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod account;
pub mod ledger;
pub mod voucher;

pub use account::{AccountError, AccountStatus, ClientAccount, WorkerAccount};
pub use ledger::{Ledger, LedgerError, Op, Outcome, Recovery, Settlement, Totals, VoucherTerms};
pub use voucher::{SignedVoucher, Voucher, VoucherBook, VoucherError, VoucherKind, VoucherSigner};
