//! Cocoon payments, off chain: account state machines, the proxy's durable
//! ledger, and vouchers the proxy signs in the form the TON settlement
//! contracts will check.

pub mod account;
pub mod ledger;
pub mod voucher;

pub use account::{AccountError, AccountStatus, Backing, ClientAccount, WorkerAccount};
pub use ledger::{Ledger, LedgerError, Op, Outcome, Recovery, Settlement, Totals, VoucherTerms};
pub use voucher::{SignedVoucher, Voucher, VoucherBook, VoucherError, VoucherKind, VoucherSigner};

/// A development address for a node name: `0:` SHA-256 of the name. Until
/// wallets come from the chain, it names the account a development ledger
/// keeps for this client.
pub fn dev_address(name: &str) -> tycho_types::models::StdAddr {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("cocoon-dev-address:{name}").as_bytes(),
    );
    let mut a = [0u8; 32];
    a.copy_from_slice(digest.as_ref());
    tycho_types::models::StdAddr::new(0, tycho_types::cell::HashBytes(a))
}
