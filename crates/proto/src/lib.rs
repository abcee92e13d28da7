//! The Cocoon wire protocol (`proto/cocoon/v1/cocoon.proto`) and its
//! generated gRPC client and server code.
#![allow(missing_docs)]

/// Version 1 of the protocol.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("cocoon.v1");
}

pub use v1::*;

pub mod convert;

/// Largest message accepted on either service (an inference body or a
/// non-streamed answer).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

impl ErrorCode {
    /// Short snake_case name, used as the reason in error counters.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorCode::Unspecified | ErrorCode::Internal => "internal",
            ErrorCode::ModelNotFound => "model_not_found",
            ErrorCode::WorkersBusy => "workers_busy",
            ErrorCode::PriceLimit => "price_limit",
            ErrorCode::EngineRejected => "engine_rejected",
            ErrorCode::EngineFailed => "engine_failed",
            ErrorCode::WorkerLost => "worker_lost",
            ErrorCode::Timeout => "timeout",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::VersionMismatch => "version_mismatch",
            ErrorCode::InsufficientFunds => "insufficient_funds",
            ErrorCode::QueueFull => "queue_full",
            ErrorCode::ReplicasDisagree => "replicas_disagree",
            ErrorCode::SettlementPending => "settlement_pending",
            ErrorCode::TrustUnmet => "trust_unmet",
            ErrorCode::IdempotencyInUse => "idempotency_key_in_use",
            ErrorCode::IdempotencyReused => "idempotency_key_reused",
        }
    }

    /// The code of a received error; unknown codes (from a newer peer) read
    /// as `Internal`.
    pub fn of(e: &InferError) -> ErrorCode {
        ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Internal)
    }
}
