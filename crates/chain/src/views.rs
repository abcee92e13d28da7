//! Typed views of the proxy, client and worker contracts' get-methods:
//! the one place that knows which stack position holds what
//! (`contracts/README.md` lists them). Nodes read contract state through
//! these, never through stack positions of their own.

use cocoon_core::Nanoton;
use num_bigint::BigInt;
use tycho_types::cell::HashBytes;
use tycho_types::models::StdAddr;

use crate::chain::Chain;
use crate::registry::{call, shape, to_hash, uint256, ReadError};
use crate::stack::{StackReader, StackTypeError};

/// Where a proxy or client contract is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Open for business.
    Open,
    /// Closing: vouchers may still be committed until `close_at`.
    Closing,
    /// Closed (or a state this software does not know).
    Closed,
}

impl Lifecycle {
    fn of(state: u64) -> Lifecycle {
        match state {
            0 => Lifecycle::Open,
            1 => Lifecycle::Closing,
            _ => Lifecycle::Closed,
        }
    }

    /// `open`, `closing` or `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Open => "open",
            Lifecycle::Closing => "closing",
            Lifecycle::Closed => "closed",
        }
    }
}

/// `get_proxy_data` of a proxy contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyData {
    /// The root registry that registered it.
    pub root: StdAddr,
    /// Its operator's wallet.
    pub owner: StdAddr,
    /// The key its vouchers are signed with.
    pub key: HashBytes,
    /// Open, closing or closed.
    pub state: Lifecycle,
    /// When a close may finish (0 unless closing).
    pub close_at: u64,
    /// The operator's stake.
    pub stake: Nanoton,
    /// Commission it holds.
    pub commission: Nanoton,
    /// Charged to clients, in total.
    pub charged: Nanoton,
    /// Paid to workers, in total.
    pub paid: Nanoton,
    /// Owed to workers it could not pay yet.
    pub owed: Nanoton,
}

/// Reads a proxy contract's state.
pub async fn proxy_data(chain: &impl Chain, proxy: &StdAddr) -> Result<ProxyData, ReadError> {
    let m = "get_proxy_data";
    let mut r = call(chain, proxy, m, &[]).await?;
    let mut read = || -> Result<ProxyData, StackTypeError> {
        Ok(ProxyData {
            root: r.address()?,
            owner: r.address()?,
            key: to_hash(&r.int()?),
            state: Lifecycle::of(r.u64()?),
            close_at: r.u64()?,
            stake: nano(&mut r)?,
            commission: nano(&mut r)?,
            charged: nano(&mut r)?,
            paid: nano(&mut r)?,
            owed: nano(&mut r)?,
        })
    };
    read().map_err(shape(m, proxy))
}

/// `get_proxy_terms` of a proxy contract: the root's terms it was
/// registered under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyTerms {
    /// How long a proxy's close takes, seconds.
    pub proxy_close_delay: u64,
    /// How long a client's close takes, seconds.
    pub client_close_delay: u64,
    /// Least stake of a client contract.
    pub min_client_stake: Nanoton,
    /// Least stake of a worker contract.
    pub min_worker_stake: Nanoton,
    /// Least stake of the proxy contract.
    pub min_proxy_stake: Nanoton,
    /// Share of a slashed stake the root takes, basis points.
    pub slash_share: u64,
}

/// Reads the terms a proxy contract was registered under.
pub async fn proxy_terms(chain: &impl Chain, proxy: &StdAddr) -> Result<ProxyTerms, ReadError> {
    let m = "get_proxy_terms";
    let mut r = call(chain, proxy, m, &[]).await?;
    let mut read = || -> Result<ProxyTerms, StackTypeError> {
        Ok(ProxyTerms {
            proxy_close_delay: r.u64()?,
            client_close_delay: r.u64()?,
            min_client_stake: nano(&mut r)?,
            min_worker_stake: nano(&mut r)?,
            min_proxy_stake: nano(&mut r)?,
            slash_share: r.u64()?,
        })
    };
    read().map_err(shape(m, proxy))
}

/// `get_client_data` of a client contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientData {
    /// The proxy contract it belongs to.
    pub proxy: StdAddr,
    /// The client's wallet.
    pub owner: StdAddr,
    /// The proxy's voucher key it checks vouchers with.
    pub proxy_key: HashBytes,
    /// Open, closing or closed.
    pub state: Lifecycle,
    /// When a close may finish (0 unless closing).
    pub close_at: u64,
    /// What it holds for charges.
    pub balance: Nanoton,
    /// The client's stake.
    pub stake: Nanoton,
    /// What vouchers committed so far.
    pub committed: Nanoton,
    /// The seqno of the last voucher committed.
    pub last_seqno: u64,
    /// How long its close takes, seconds.
    pub close_delay: u64,
}

/// Reads a client contract's state.
pub async fn client_data(chain: &impl Chain, client: &StdAddr) -> Result<ClientData, ReadError> {
    let m = "get_client_data";
    let mut r = call(chain, client, m, &[]).await?;
    let mut read = || -> Result<ClientData, StackTypeError> {
        Ok(ClientData {
            proxy: r.address()?,
            owner: r.address()?,
            proxy_key: to_hash(&r.int()?),
            state: Lifecycle::of(r.u64()?),
            close_at: r.u64()?,
            balance: nano(&mut r)?,
            stake: nano(&mut r)?,
            committed: nano(&mut r)?,
            last_seqno: r.u64()?,
            close_delay: r.u64()?,
        })
    };
    read().map_err(shape(m, client))
}

/// `get_worker_data` of a worker contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerData {
    /// The proxy contract it belongs to.
    pub proxy: StdAddr,
    /// The worker operator's wallet.
    pub owner: StdAddr,
    /// The proxy's voucher key it checks vouchers with.
    pub proxy_key: HashBytes,
    /// Paid out of the vouchers so far.
    pub committed: Nanoton,
    /// The seqno of the last voucher committed.
    pub last_seqno: u64,
    /// A payout on its way to the proxy contract.
    pub in_flight: Nanoton,
    /// What the last payout asked for and the proxy contract could not pay.
    pub owed: Nanoton,
}

/// Reads a worker contract's payout state.
pub async fn worker_data(chain: &impl Chain, worker: &StdAddr) -> Result<WorkerData, ReadError> {
    let m = "get_worker_data";
    let mut r = call(chain, worker, m, &[]).await?;
    let mut read = || -> Result<WorkerData, StackTypeError> {
        Ok(WorkerData {
            proxy: r.address()?,
            owner: r.address()?,
            proxy_key: to_hash(&r.int()?),
            committed: nano(&mut r)?,
            last_seqno: r.u64()?,
            in_flight: nano(&mut r)?,
            owed: nano(&mut r)?,
        })
    };
    read().map_err(shape(m, worker))
}

/// `get_worker_stake` of a worker contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerStake {
    /// What it has at stake.
    pub stake: Nanoton,
    /// The root's minimum for workers.
    pub min_stake: Nanoton,
    /// When a withdrawal asked for unlocks (0: none asked).
    pub unlock_at: u64,
    /// Slashed so far.
    pub slashed: Nanoton,
    /// How long a stake stays slashable after a request, seconds.
    pub stake_delay: u64,
    /// The root's share of a slash, basis points.
    pub slash_share: u64,
    /// How long an unlocked stake may be withdrawn, seconds.
    pub withdraw_window: u64,
}

impl WorkerStake {
    /// Until when a withdrawal of the stake runs, if one does at `now`: the
    /// worker takes no new requests and is paid nothing meanwhile.
    pub fn withdrawing_until(&self, now: u64) -> Option<u64> {
        let until = self.unlock_at.saturating_add(self.withdraw_window);
        (self.unlock_at != 0 && now < until).then_some(until)
    }
}

/// Reads a worker contract's stake.
pub async fn worker_stake(chain: &impl Chain, worker: &StdAddr) -> Result<WorkerStake, ReadError> {
    let m = "get_worker_stake";
    let mut r = call(chain, worker, m, &[]).await?;
    let mut read = || -> Result<WorkerStake, StackTypeError> {
        Ok(WorkerStake {
            stake: nano(&mut r)?,
            min_stake: nano(&mut r)?,
            unlock_at: r.u64()?,
            slashed: nano(&mut r)?,
            stake_delay: r.u64()?,
            slash_share: r.u64()?,
            withdraw_window: r.u64()?,
        })
    };
    read().map_err(shape(m, worker))
}

/// Whether a worker contract lets slash evidence name a receipt key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKeyStatus {
    /// Never registered: evidence may not name it.
    Unknown,
    /// Registered and in force.
    Active,
    /// Removed: it still counts until this time.
    Removed {
        /// When it stops counting.
        until: u64,
    },
}

/// Reads what a worker contract says of receipt key `key`.
pub async fn receipt_key(
    chain: &impl Chain,
    worker: &StdAddr,
    key: &[u8; 32],
) -> Result<ReceiptKeyStatus, ReadError> {
    let m = "get_receipt_key";
    let mut r = call(chain, worker, m, &[uint256(&HashBytes(*key))]).await?;
    let state = r.int().map_err(shape(m, worker))?;
    Ok(if state == BigInt::from(0) {
        ReceiptKeyStatus::Active
    } else if state < BigInt::from(0) {
        ReceiptKeyStatus::Unknown
    } else {
        ReceiptKeyStatus::Removed {
            until: u64::try_from(&state).unwrap_or(u64::MAX),
        }
    })
}

fn nano(r: &mut StackReader) -> Result<Nanoton, StackTypeError> {
    r.u64().map(Nanoton::new)
}
