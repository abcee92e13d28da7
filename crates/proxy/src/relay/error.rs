//! Every way a relayed request can stop short of a completed answer, and
//! what each means: whether another worker may be tried, what the client
//! is told.

use cocoon_proto::{ErrorCode, InferError};

use crate::idempotency::IdempotencyError;
use crate::registry::NoWorker;
use crate::settlement::{ReserveError, SettleError};

/// When a client whose charges wait for a commit, or whose contract has not
/// been read yet, may try again: a commit lands within a few blocks.
const SETTLEMENT_RETRY_AFTER_S: u32 = 5;

/// Why a request stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayError {
    /// The request cannot be served as sent.
    #[error("{0}")]
    BadRequest(String),
    /// No worker could take it; `after` is why the previous attempt failed.
    #[error("{}", no_worker_message(.no, .after.as_deref()))]
    NoWorker {
        /// Why none qualified.
        no: NoWorker,
        /// The previous attempt's failure, when this was a retry.
        after: Option<String>,
    },
    /// Every worker was busy and the line of waiting requests was full.
    #[error("every worker for model {model:?} is busy and {waiting} requests are already waiting for one (the most this proxy queues); retry after {retry_after_s} s")]
    QueueFull {
        /// The model asked for.
        model: String,
        /// Requests waiting for it.
        waiting: usize,
        /// When a retry may be admitted, by the proxy's estimate.
        retry_after_s: u32,
    },
    /// The deadline passed while the request waited for a worker slot;
    /// nothing ran and nothing is charged.
    #[error("the request's deadline passed after {waited_ms} ms waiting for a free worker for model {model:?}; nothing was charged")]
    QueuedTooLong {
        /// The model asked for.
        model: String,
        /// How long it waited.
        waited_ms: u64,
    },
    /// The chosen worker has nowhere for its earnings to go.
    #[error("worker {0} has no payee address")]
    NoPayee(String),
    /// The maximum cost could not be held.
    #[error("{0}")]
    Reserve(ReserveError),
    /// The chain must confirm something before this payer is served: its
    /// contract was never read (so its owner is unknown), or its charges
    /// not yet committed have reached what the contract guarantees.
    #[error("{0}")]
    Unsettled(String),
    /// The worker's session ended before the request reached it.
    #[error("worker {0} disconnected before the request reached it")]
    Dispatch(String),
    /// The worker's session ended while the request ran.
    #[error("worker {worker} disconnected{}", if *.mid_answer { " in the middle of the answer" } else { "" })]
    WorkerLost {
        /// The worker.
        worker: String,
        /// Whether part of the answer had arrived.
        mid_answer: bool,
    },
    /// The worker reported a failure.
    #[error("worker {worker} failed: {}", .error.message)]
    Worker {
        /// The worker.
        worker: String,
        /// What it reported.
        error: InferError,
    },
    /// The request's deadline passed.
    #[error("the request's deadline passed")]
    Timeout,
    /// The client hung up.
    #[error("the client went away")]
    ClientGone,
    /// The client stopped reading and its queue filled up.
    #[error("the client stopped reading its answer")]
    ClientTooSlow,
    /// The cost of what was about to be forwarded could not be made durable.
    #[error("the proxy's ledger could not record the answer's cost: {0}")]
    Books(SettleError),
    /// The ledger failed to charge a replica; its reservation stays for
    /// recovery.
    #[error("the proxy's ledger could not charge a replica's answer")]
    ChargeFailed,
    /// No answer was shared by enough runs of a replicated request.
    #[error("the replicas did not agree: {0}")]
    ReplicasDisagree(String),
    /// The request's idempotency key cannot be used for it.
    #[error("{0}")]
    Idempotency(crate::idempotency::IdempotencyError),
}

fn no_worker_message(no: &NoWorker, after: Option<&str>) -> String {
    match after {
        Some(failure) => format!("{failure}; no other worker could take the request ({no})"),
        None => no.to_string(),
    }
}

impl RelayError {
    /// Whether another worker may take the request, provided nothing of
    /// the answer has reached the client.
    pub(crate) fn retryable(&self) -> bool {
        match self {
            RelayError::Dispatch(_) | RelayError::WorkerLost { .. } => true,
            RelayError::Worker { error, .. } => matches!(
                ErrorCode::of(error),
                ErrorCode::EngineFailed | ErrorCode::WorkersBusy
            ),
            _ => false,
        }
    }

    /// Whether the request was refused before any worker ran it (logged as
    /// a refusal, not a failure).
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(
            self,
            RelayError::NoWorker { .. }
                | RelayError::NoPayee(_)
                | RelayError::Reserve(_)
                | RelayError::Unsettled(_)
                | RelayError::QueueFull { .. }
                | RelayError::QueuedTooLong { .. }
                | RelayError::Idempotency(_)
        )
    }

    /// The wire code.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            RelayError::BadRequest(_) => ErrorCode::BadRequest,
            RelayError::NoWorker { no, after } => match no {
                NoWorker::NoWorkersForModel { .. } if after.is_some() => ErrorCode::WorkerLost,
                NoWorker::NoWorkersForModel { .. } => ErrorCode::ModelNotFound,
                NoWorker::AllBusy { .. } => ErrorCode::WorkersBusy,
                NoWorker::TooExpensive { .. } => ErrorCode::PriceLimit,
                NoWorker::NotSealedTo { .. } => ErrorCode::WorkerLost,
                NoWorker::Unmet(_) => ErrorCode::TrustUnmet,
            },
            RelayError::Reserve(ReserveError::Refused(
                SettleError::InsufficientFunds(_) | SettleError::NotActive(_),
            )) => ErrorCode::InsufficientFunds,
            RelayError::Unsettled(_) => ErrorCode::SettlementPending,
            RelayError::NoPayee(_)
            | RelayError::Reserve(_)
            | RelayError::Books(_)
            | RelayError::ChargeFailed => ErrorCode::Internal,
            RelayError::ReplicasDisagree(_) => ErrorCode::ReplicasDisagree,
            RelayError::Idempotency(e) => match e {
                IdempotencyError::Malformed { .. } => ErrorCode::BadRequest,
                IdempotencyError::InUse => ErrorCode::IdempotencyInUse,
                IdempotencyError::Reused => ErrorCode::IdempotencyReused,
            },
            RelayError::Dispatch(_) | RelayError::WorkerLost { .. } => ErrorCode::WorkerLost,
            RelayError::Worker { error, .. } => ErrorCode::of(error),
            RelayError::Timeout | RelayError::QueuedTooLong { .. } => ErrorCode::Timeout,
            RelayError::QueueFull { .. } => ErrorCode::QueueFull,
            RelayError::ClientGone | RelayError::ClientTooSlow => ErrorCode::Unspecified,
        }
    }

    /// The reason counted in the error metrics.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            RelayError::ClientGone => "client_cancelled",
            RelayError::ClientTooSlow => "client_too_slow",
            other => other.code().reason(),
        }
    }

    /// What the client is told; `None` when nobody is listening.
    /// `answered`: part of the answer had already reached the client.
    pub(crate) fn to_wire(&self, answered: bool) -> Option<InferError> {
        let message = match self {
            RelayError::ClientGone | RelayError::ClientTooSlow => return None,
            RelayError::Worker { error, .. } => error.message.clone(),
            RelayError::Reserve(ReserveError::Refused(e @ SettleError::InsufficientFunds(_))) => {
                format!("{e}; top up the client's balance or lower max_tokens")
            }
            RelayError::Reserve(ReserveError::Refused(SettleError::Books(e))) => {
                format!("the ledger could not reserve: {e}")
            }
            other => other.to_string(),
        };
        // The client decides the HTTP status from the code; only an
        // engine's own refusal status travels with it.
        let engine_status = match self {
            RelayError::Worker { error, .. } => error.engine_status,
            _ => 0,
        };
        let retry_after_seconds = match self {
            RelayError::QueueFull { retry_after_s, .. } => *retry_after_s,
            RelayError::Unsettled(_) => SETTLEMENT_RETRY_AFTER_S,
            _ => 0,
        };
        Some(InferError {
            code: self.code() as i32,
            message,
            engine_status,
            before_first_byte: !answered,
            retry_after_seconds,
        })
    }
}

/// A request that stopped, and whether any of its answer had arrived from
/// the worker by then (which rules out trying another).
#[derive(Debug)]
pub(crate) struct Stopped {
    pub(crate) error: RelayError,
    pub(crate) answered: bool,
}

impl Stopped {
    /// Stopped before any worker answered.
    pub(crate) fn early(error: RelayError) -> Self {
        Stopped {
            error,
            answered: false,
        }
    }

    /// Whether another worker may be tried.
    pub(crate) fn retryable(&self) -> bool {
        !self.answered && self.error.retryable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker_error(code: ErrorCode) -> RelayError {
        RelayError::Worker {
            worker: "w".into(),
            error: InferError {
                code: code as i32,
                message: "boom".into(),
                engine_status: 0,
                before_first_byte: true,
                retry_after_seconds: 0,
            },
        }
    }

    #[test]
    fn only_worker_failures_before_the_answer_are_retried() {
        assert!(Stopped::early(RelayError::Dispatch("w".into())).retryable());
        assert!(Stopped::early(worker_error(ErrorCode::EngineFailed)).retryable());
        assert!(!Stopped::early(worker_error(ErrorCode::EngineRejected)).retryable());
        assert!(!Stopped::early(RelayError::Timeout).retryable());
        let mid = Stopped {
            error: RelayError::WorkerLost {
                worker: "w".into(),
                mid_answer: true,
            },
            answered: true,
        };
        assert!(!mid.retryable(), "part of the answer reached the client");
    }

    #[test]
    fn the_client_is_told_what_happened_unless_it_left() {
        assert!(RelayError::ClientGone.to_wire(false).is_none());
        assert_eq!(RelayError::ClientTooSlow.reason(), "client_too_slow");
        let lost = RelayError::WorkerLost {
            worker: "w1".into(),
            mid_answer: true,
        }
        .to_wire(true)
        .unwrap();
        assert_eq!(
            lost.message,
            "worker w1 disconnected in the middle of the answer"
        );
        assert!(!lost.before_first_byte);
        let e = worker_error(ErrorCode::EngineFailed);
        assert_eq!(e.to_string(), "worker w failed: boom");
        let wire = e.to_wire(false).unwrap();
        assert_eq!((wire.message.as_str(), wire.engine_status), ("boom", 0));
    }

    #[test]
    fn a_retry_that_finds_no_worker_says_why_the_first_failed() {
        let e = RelayError::NoWorker {
            no: NoWorker::NoWorkersForModel { model: "m".into() },
            after: Some("worker w disconnected".into()),
        };
        assert_eq!(e.code(), ErrorCode::WorkerLost);
        assert!(e
            .to_string()
            .starts_with("worker w disconnected; no other worker could take the request"));
        let first = RelayError::NoWorker {
            no: NoWorker::NoWorkersForModel { model: "m".into() },
            after: None,
        };
        assert_eq!(first.code(), ErrorCode::ModelNotFound);
    }

    #[test]
    fn a_full_queue_says_how_long_it_is_and_when_to_retry() {
        let e = RelayError::QueueFull {
            model: "m".into(),
            waiting: 1024,
            retry_after_s: 7,
        };
        assert!(e.is_refusal() && !e.retryable());
        let wire = e.to_wire(false).unwrap();
        assert_eq!(ErrorCode::of(&wire), ErrorCode::QueueFull);
        assert_eq!(wire.retry_after_seconds, 7);
        assert!(
            wire.message.contains("1024 requests are already waiting"),
            "{}",
            wire.message
        );
        let late = RelayError::QueuedTooLong {
            model: "m".into(),
            waited_ms: 2000,
        };
        assert_eq!(late.code(), ErrorCode::Timeout);
        assert!(late.to_string().contains("nothing was charged"));
    }
}
