//! Cocoon payments, off chain: vouchers the proxy signs in the form the TON
//! settlement contracts will check.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod voucher;

pub use voucher::{SignedVoucher, Voucher, VoucherBook, VoucherError, VoucherKind, VoucherSigner};
