//! The Cocoon wire protocol (`proto/cocoon/v1/cocoon.proto`) and its
//! generated gRPC client and server code.
#![allow(missing_docs)]

/// Version 1 of the protocol.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("cocoon.v1");
}

pub use v1::*;

/// Largest message accepted on either service (an inference body or a
/// non-streamed answer).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
