//! The devnet's state on disk: accounts, transactions, counters and the
//! internal messages still on their way, in one redb file, written in one
//! transaction per block, so a crash loses no value in flight. Accepted
//! external messages not yet included are not kept: TON may lose those too.

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};
use tycho_types::boc::{Boc, BocRepr};
use tycho_types::cell::{Cell, HashBytes};
use tycho_types::models::{ShardAccount, StdAddr};

/// Address (workchain byte + 32 bytes) → ShardAccount bag of cells.
const ACCOUNTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("accounts");
/// Address + logical time (big-endian) → Transaction bag of cells.
const TRANSACTIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("transactions");
/// Counters: the logical time, the clock's offset, the faucet's total.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Internal messages on their way: id (big-endian) → due block, created
/// logical time, origin hash and the message's bag of cells.
const TRANSIT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("transit");

/// An internal message sent in one block and delivered in a later one.
#[derive(Debug, Clone)]
pub struct InTransit {
    /// Its order of sending (unique).
    pub id: u64,
    /// The first block it may be delivered in.
    pub due: u64,
    /// Its creation logical time: messages are delivered in this order.
    pub created_lt: u64,
    /// The hash of the external (or faucet) message whose chain it is.
    pub origin: HashBytes,
    /// The message.
    pub msg: Cell,
}

impl InTransit {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(48 + 256);
        v.extend_from_slice(&self.due.to_be_bytes());
        v.extend_from_slice(&self.created_lt.to_be_bytes());
        v.extend_from_slice(self.origin.as_slice());
        v.extend_from_slice(&Boc::encode(&self.msg));
        v
    }

    fn decode(id: u64, v: &[u8]) -> Result<Self, StoreError> {
        let short = || StoreError {
            doing: "reading a message in transit",
            reason: format!("{} bytes, fewer than its header", v.len()),
        };
        if v.len() < 48 {
            return Err(short());
        }
        let u = |i: usize| u64::from_be_bytes(v[i..i + 8].try_into().unwrap_or_default());
        let mut origin = [0u8; 32];
        origin.copy_from_slice(&v[16..48]);
        Ok(InTransit {
            id,
            due: u(0),
            created_lt: u(8),
            origin: HashBytes(origin),
            msg: Boc::decode(&v[48..]).map_err(err("decoding a message in transit"))?,
        })
    }
}

/// A failure of the state file, naming what was being done.
#[derive(Debug, thiserror::Error)]
#[error("devnet state ({doing}): {reason}")]
pub struct StoreError {
    doing: &'static str,
    reason: String,
}

fn err<E: std::fmt::Display>(doing: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError {
        doing,
        reason: e.to_string(),
    }
}

/// Key of an account.
pub fn account_key(addr: &StdAddr) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = addr.workchain as u8;
    k[1..].copy_from_slice(addr.address.as_slice());
    k
}

fn address_of_key(k: &[u8]) -> Option<StdAddr> {
    if k.len() < 33 {
        return None;
    }
    let mut h = [0u8; 32];
    h.copy_from_slice(&k[1..33]);
    Some(StdAddr::new(k[0] as i8, HashBytes(h)))
}

fn tx_key(addr: &StdAddr, lt: u64) -> [u8; 41] {
    let mut k = [0u8; 41];
    k[..33].copy_from_slice(&account_key(addr));
    k[33..].copy_from_slice(&lt.to_be_bytes());
    k
}

/// Persistent counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// The next logical time to hand out.
    pub lt: u64,
    /// Seconds the development clock was moved forward.
    pub clock_offset: u64,
    /// Nanotons the faucet has minted.
    pub minted: u64,
    /// Blocks applied so far (the API's block number).
    pub blocks: u64,
    /// The next id of a message in transit.
    pub transit_id: u64,
}

/// What one block changes.
#[derive(Default)]
pub struct BlockWrite {
    /// Accounts after the block.
    pub accounts: Vec<(StdAddr, ShardAccount)>,
    /// The block's transactions: account, logical time, the transaction cell.
    pub transactions: Vec<(StdAddr, u64, Cell)>,
    /// The counters after the block.
    pub counters: Counters,
    /// Messages the block sent, to be delivered later.
    pub transit_added: Vec<InTransit>,
    /// Ids of messages the block delivered.
    pub transit_removed: Vec<u64>,
}

/// The open state file.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) `dir/devnet.redb`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(err("creating the data directory"))?;
        let db = Database::create(dir.join("devnet.redb")).map_err(err("opening devnet.redb"))?;
        let tx = db.begin_write().map_err(err("starting a write"))?;
        {
            tx.open_table(ACCOUNTS).map_err(err("opening accounts"))?;
            tx.open_table(TRANSACTIONS)
                .map_err(err("opening transactions"))?;
            tx.open_table(META).map_err(err("opening meta"))?;
            tx.open_table(TRANSIT).map_err(err("opening transit"))?;
        }
        tx.commit().map_err(err("creating the tables"))?;
        Ok(Store { db })
    }

    /// Every account, for the in-memory state at start.
    pub fn load_accounts(&self) -> Result<Vec<(StdAddr, ShardAccount)>, StoreError> {
        let rx = self.db.begin_read().map_err(err("starting a read"))?;
        let table = rx.open_table(ACCOUNTS).map_err(err("opening accounts"))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(err("reading accounts"))? {
            let (k, v) = row.map_err(err("reading an account"))?;
            let addr = address_of_key(k.value()).ok_or(StoreError {
                doing: "reading an account",
                reason: "a key is not an address".into(),
            })?;
            let state: ShardAccount =
                BocRepr::decode(v.value()).map_err(err("decoding an account"))?;
            out.push((addr, state));
        }
        Ok(out)
    }

    /// The counters (zero on a new devnet).
    pub fn counters(&self) -> Result<Counters, StoreError> {
        let rx = self.db.begin_read().map_err(err("starting a read"))?;
        let table = rx.open_table(META).map_err(err("opening meta"))?;
        let get = |k: &str| -> Result<u64, StoreError> {
            Ok(table
                .get(k)
                .map_err(err("reading meta"))?
                .map(|v| v.value())
                .unwrap_or(0))
        };
        Ok(Counters {
            lt: get("lt")?,
            clock_offset: get("clock_offset")?,
            minted: get("minted")?,
            blocks: get("blocks")?,
            transit_id: get("transit_id")?,
        })
    }

    /// Every internal message still on its way.
    pub fn load_transit(&self) -> Result<Vec<InTransit>, StoreError> {
        let rx = self.db.begin_read().map_err(err("starting a read"))?;
        let table = rx.open_table(TRANSIT).map_err(err("opening transit"))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(err("reading transit"))? {
            let (k, v) = row.map_err(err("reading a message in transit"))?;
            let id = u64::from_be_bytes(k.value().try_into().map_err(|_| StoreError {
                doing: "reading a message in transit",
                reason: "a key is not an id".into(),
            })?);
            out.push(InTransit::decode(id, v.value())?);
        }
        Ok(out)
    }

    /// Applies a block atomically.
    pub fn write(&self, block: &BlockWrite) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err("starting a write"))?;
        {
            let mut accounts = tx.open_table(ACCOUNTS).map_err(err("opening accounts"))?;
            for (addr, state) in &block.accounts {
                let bytes = BocRepr::encode(state).map_err(err("encoding an account"))?;
                accounts
                    .insert(account_key(addr).as_slice(), bytes.as_slice())
                    .map_err(err("writing an account"))?;
            }
            let mut txs = tx
                .open_table(TRANSACTIONS)
                .map_err(err("opening transactions"))?;
            for (addr, lt, cell) in &block.transactions {
                let bytes = Boc::encode(cell);
                txs.insert(tx_key(addr, *lt).as_slice(), bytes.as_slice())
                    .map_err(err("writing a transaction"))?;
            }
            let mut meta = tx.open_table(META).map_err(err("opening meta"))?;
            let c = block.counters;
            for (k, v) in [
                ("lt", c.lt),
                ("clock_offset", c.clock_offset),
                ("minted", c.minted),
                ("blocks", c.blocks),
                ("transit_id", c.transit_id),
            ] {
                meta.insert(k, v).map_err(err("writing meta"))?;
            }
            let mut transit = tx.open_table(TRANSIT).map_err(err("opening transit"))?;
            for id in &block.transit_removed {
                transit
                    .remove(id.to_be_bytes().as_slice())
                    .map_err(err("removing a delivered message"))?;
            }
            for m in &block.transit_added {
                transit
                    .insert(m.id.to_be_bytes().as_slice(), m.encode().as_slice())
                    .map_err(err("writing a message in transit"))?;
            }
        }
        tx.commit().map_err(err("committing a block"))
    }

    /// Up to `limit` transactions of `addr` with logical time at most
    /// `to_lt`, newest first.
    pub fn transactions(
        &self,
        addr: &StdAddr,
        to_lt: u64,
        limit: usize,
    ) -> Result<Vec<Cell>, StoreError> {
        let rx = self.db.begin_read().map_err(err("starting a read"))?;
        let table = rx
            .open_table(TRANSACTIONS)
            .map_err(err("opening transactions"))?;
        let lo = tx_key(addr, 0);
        let hi = tx_key(addr, to_lt);
        let mut out = Vec::new();
        let range = table
            .range(lo.as_slice()..=hi.as_slice())
            .map_err(err("reading transactions"))?;
        for row in range.rev().take(limit) {
            let (_, v) = row.map_err(err("reading a transaction"))?;
            out.push(Boc::decode(v.value()).map_err(err("decoding a transaction"))?);
        }
        Ok(out)
    }
}
