//! Following a message to what it did, as TON shows it: a message counts as
//! delivered only once the destination's transaction that received it is
//! found (by the message's hash, through `getTransactions`), and a request
//! counts as done only once every message it caused has landed.
//!
//! On TON a message sent is not a message received: an external is
//! included some blocks later or never, and every internal hop lands in a
//! later block, maybe on another shard. Nothing here trusts a wallet's
//! seqno or an account's balance to say what happened.

use std::time::Duration;

use tycho_types::cell::{Cell, HashBytes};
use tycho_types::models::{ComputePhase, IntAddr, MsgInfo, StdAddr, Transaction, TxInfo};

use crate::chain::{Chain, ChainError, TransactionId, TransactionRecord};

/// The most transactions one trace is followed through.
pub const MAX_TRACE: usize = 64;

/// How many of an account's transactions one page reads.
const PAGE: usize = 16;

/// A message a transaction sent to another account.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The message's hash.
    pub hash: HashBytes,
    /// Its destination.
    pub to: StdAddr,
    /// Its creation logical time: the destination's transaction comes after.
    pub created_lt: u64,
    /// Whether it is a bounce.
    pub bounced: bool,
}

/// One transaction of a trace, read from its cell.
#[derive(Debug, Clone)]
pub struct Landed {
    /// The account it ran on.
    pub account: StdAddr,
    /// Its identity.
    pub id: TransactionId,
    /// Unix time.
    pub utime: u32,
    /// The inbound message's hash.
    pub in_msg: HashBytes,
    /// The first 32 bits of the inbound body (the op), when present.
    pub op: Option<u32>,
    /// Whether the inbound message was a bounce.
    pub bounce_in: bool,
    /// The compute phase's exit code (`None`: skipped, e.g. no code).
    pub exit_code: Option<i32>,
    /// Whether the transaction was aborted (nothing it did stands).
    pub aborted: bool,
    /// The internal messages it sent.
    pub sent: Vec<Sent>,
    /// Total fees it charged.
    pub fees: u64,
    /// Storage fees it collected from the account (part of `fees`): paid
    /// by the account, not by the message.
    pub storage_fee: u64,
    /// The forwarding fee its inbound message paid on the way (an internal
    /// message's `fwd_fee`: the part of the sender's forwarding fee that
    /// neither transaction's total counts).
    pub in_fwd_fee: u64,
}

impl Landed {
    /// Reads a transaction of `account` from its record.
    pub fn read(account: &StdAddr, record: &TransactionRecord) -> Result<Self, TxUnreadable> {
        read_cell(account, record.id, record.utime, &record.cell)
    }

    /// Whether the destination took the message. Its code ran and was not
    /// aborted; or it had nothing to run (no code, or too little value to
    /// buy gas: a notification to a wallet) and kept the value rather than
    /// bouncing it.
    pub fn succeeded(&self) -> bool {
        match self.exit_code {
            Some(code) => !self.aborted && (code == 0 || code == 1),
            None => !self.sent.iter().any(|m| m.bounced),
        }
    }

    /// What it did, for an error message.
    pub fn describe(&self) -> String {
        let op = self
            .op
            .map(|o| format!("op {o:#010x}"))
            .unwrap_or_else(|| "a plain transfer".into());
        let exit = self
            .exit_code
            .map(|c| format!("exit code {c}"))
            .unwrap_or_else(|| "no compute phase".into());
        format!(
            "{} ({op}{}): {exit}{}",
            self.account,
            if self.bounce_in { ", a bounce" } else { "" },
            if self.aborted { ", aborted" } else { "" }
        )
    }
}

fn read_cell(
    account: &StdAddr,
    id: TransactionId,
    utime: u32,
    cell: &Cell,
) -> Result<Landed, TxUnreadable> {
    let part = |part: &'static str| move |error| TxUnreadable::Parse { part, error };
    let tx: Transaction = cell.parse().map_err(part("a transaction"))?;
    let in_cell = tx.in_msg.as_ref().ok_or(TxUnreadable::NoInbound)?;
    let in_msg = (tx.load_in_msg())
        .map_err(part("its inbound message"))?
        .ok_or(TxUnreadable::NoInbound)?;
    let bounce_in = matches!(&in_msg.info, MsgInfo::Int(i) if i.bounced);
    let in_fwd_fee = match &in_msg.info {
        MsgInfo::Int(i) => u64::try_from(i.fwd_fee.into_inner()).unwrap_or(u64::MAX),
        _ => 0,
    };
    let body = in_msg.body;
    let op = (body.size_bits() >= 32)
        .then(|| body.get_u32(0).ok())
        .flatten();
    let info = tx.load_info().map_err(part("its description"))?;
    let (exit_code, aborted, storage) = match info {
        TxInfo::Ordinary(o) => {
            let storage = o
                .storage_phase
                .map(|s| s.storage_fees_collected.into_inner())
                .unwrap_or(0);
            match o.compute_phase {
                ComputePhase::Executed(c) => (Some(c.exit_code), o.aborted, storage),
                ComputePhase::Skipped(_) => (None, o.aborted, storage),
            }
        }
        TxInfo::TickTock(t) => (
            None,
            t.aborted,
            t.storage_phase.storage_fees_collected.into_inner(),
        ),
    };
    let mut sent = Vec::new();
    for out in tx.out_msgs.values() {
        let out = out.map_err(part("an outbound message"))?;
        let msg: tycho_types::models::Message<'_> =
            out.parse().map_err(part("an outbound message"))?;
        if let MsgInfo::Int(i) = &msg.info {
            if let IntAddr::Std(to) = &i.dst {
                sent.push(Sent {
                    hash: *out.repr_hash(),
                    to: to.clone(),
                    created_lt: i.created_lt,
                    bounced: i.bounced,
                });
            }
        }
    }
    Ok(Landed {
        account: account.clone(),
        id,
        utime,
        in_msg: *in_cell.repr_hash(),
        op,
        bounce_in,
        exit_code,
        aborted,
        sent,
        fees: u64::try_from(tx.total_fees.tokens.into_inner()).unwrap_or(u64::MAX),
        storage_fee: u64::try_from(storage).unwrap_or(u64::MAX),
        in_fwd_fee,
    })
}

/// Why a transaction's cell does not read as one.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TxUnreadable {
    /// A part of it does not parse.
    #[error("{part}: {error}")]
    Parse {
        /// Which part.
        part: &'static str,
        /// What the parser said.
        error: tycho_types::error::Error,
    },
    /// It received nothing.
    #[error("a transaction without an inbound message")]
    NoInbound,
}

/// Why following a message failed.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The chain could not be read.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The chain answered something that does not read as a transaction.
    #[error("a transaction of {account}: {reason}")]
    Unreadable {
        /// The account.
        account: StdAddr,
        /// What was wrong.
        reason: TxUnreadable,
    },
    /// The messages did not all land in time.
    #[error("{landed} transactions found, but a message to {to} had not landed after {waited:?}")]
    Unfinished {
        /// Transactions found so far.
        landed: usize,
        /// Where the message that did not land went.
        to: StdAddr,
        /// How long it was waited for.
        waited: Duration,
    },
    /// More transactions than [`MAX_TRACE`]: a loop.
    #[error("the messages caused more than {MAX_TRACE} transactions; stopped following them")]
    TooLong,
}

/// Looks once for the transaction of `account` that received the message
/// with hash `msg`, among those after `after` (exclusive): the message was
/// created at that logical time, or the account's last transaction before
/// it was sent. `None`: not (yet) there.
pub async fn find_receipt(
    chain: &impl Chain,
    account: &StdAddr,
    msg: &HashBytes,
    after: u64,
) -> Result<Option<Landed>, TraceError> {
    let unreadable = |reason: TxUnreadable| TraceError::Unreadable {
        account: account.clone(),
        reason,
    };
    let mut from: Option<TransactionId> = None;
    loop {
        let page = chain.transactions(account, from, PAGE).await?;
        // A page after the first starts with the transaction it was asked
        // from, already seen.
        let skip = usize::from(from.is_some());
        let fresh: Vec<&TransactionRecord> = page.iter().skip(skip).collect();
        if fresh.is_empty() {
            return Ok(None);
        }
        for record in &fresh {
            if record.id.lt <= after {
                return Ok(None);
            }
            let landed = Landed::read(account, record).map_err(unreadable)?;
            if landed.in_msg == *msg {
                return Ok(Some(landed));
            }
        }
        from = fresh.last().map(|r| r.id);
    }
}

/// How often the chain is asked again while waiting: quickly at first, as
/// a devnet makes blocks in a fraction of a second, then every second.
pub(crate) fn poll_pause(round: u32) -> Duration {
    Duration::from_millis(50u64 << round.min(4)).min(Duration::from_secs(1))
}

/// Follows every message `first` sent, and every message those caused,
/// until all have landed, waiting at most `timeout`. Returns the
/// transactions in the order found, `first` included.
pub async fn follow(
    chain: &impl Chain,
    first: Landed,
    timeout: Duration,
) -> Result<Vec<Landed>, TraceError> {
    let started = tokio::time::Instant::now();
    let mut waiting: Vec<Sent> = first.sent.clone();
    let mut out = vec![first];
    let mut round = 0;
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for m in waiting {
            match find_receipt(chain, &m.to, &m.hash, m.created_lt).await? {
                Some(landed) => {
                    if out.len() >= MAX_TRACE {
                        return Err(TraceError::TooLong);
                    }
                    still.extend(landed.sent.iter().cloned());
                    out.push(landed);
                }
                None => still.push(m),
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        if started.elapsed() >= timeout {
            return Err(TraceError::Unfinished {
                landed: out.len(),
                to: waiting[0].to.clone(),
                waited: timeout,
            });
        }
        tokio::time::sleep(poll_pause(round)).await;
        round += 1;
    }
    Ok(out)
}

/// The first transaction of a trace that failed, if any: what was asked was
/// refused there (and any value it carried bounced back).
pub fn first_failure(trace: &[Landed]) -> Option<&Landed> {
    trace.iter().find(|t| !t.succeeded())
}
