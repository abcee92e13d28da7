//! Receipts: the worker's signed account of one answer.
//!
//! A worker signs, with the Ed25519 key of its RA-TLS certificate (whose
//! claims bind that key into the TEE evidence), a [`ReceiptBody`] for every
//! answer it completes: which request it ran (by hash), what it answered
//! (by hash), the tokens, the weights, the price, and when. Anyone holding
//! the receipt, the answer and the certificate can check, without trusting
//! the proxy or the network, that an attested worker produced exactly that
//! answer ([`WorkerIdentity::check`]).

pub mod batch;
mod body;
mod check;
pub mod digest;
pub mod evidence;
mod facts;
pub mod saved;

pub use batch::BatchProof;
pub use body::{
    PreparedReceipt, ProxyIdentity, ReceiptBody, ReceiptSigner, ReceiptUsage, SignedReceipt,
    RECEIPT_VERSION,
};
pub use check::{ReceiptError, WorkerIdentity};
pub use facts::{ReceiptFacts, SignedReceiptFacts, FACTS_TAG};
pub use saved::{SavedAnswer, Verification};
