//! A TON devnet in one process: Cocoon's own compiled contracts executed by
//! `tycho-executor` under the configuration `@ton/sandbox` charges by, with
//! state kept on disk.
//!
//! It behaves as TON does towards whoever sends to it: an external message
//! is checked against the state as of the last block and accepted, then
//! included in a later block (or, if its destination no longer accepts it
//! by then, dropped without a trace); every internal message a transaction
//! sends is delivered in a later block than the one that sent it. Reads
//! show the state as of the last block. Blocks are made by whoever drives
//! the devnet: [`Devnet::produce_block`] (the API's block producer, at an
//! interval) or [`Devnet::settle`] (tests and replays). Each block is
//! written to disk, messages still on their way included, before it is
//! visible. The devnet is one shard of the basechain with no masterchain,
//! under its own global id.
//!
//! The faucet, the movable clock and loading raw accounts are development
//! tools: refused unless the devnet was opened with `dev`.

pub mod api;
mod chain;
pub mod config;
mod store;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use cocoon_chain::stack::StackEntry;
use cocoon_chain::FeeEstimate;
use num_bigint::BigInt;
use tycho_executor::{Executor, ExecutorParams, ParsedConfig, TxError};
use tycho_types::cell::{Cell, CellBuilder, CellFamily, HashBytes, Lazy};
use tycho_types::models::{
    Account, AccountState, ComputePhase, CurrencyCollection, IntAddr, IntMsgInfo, MsgInfo,
    OwnedMessage, ShardAccount, StdAddr, TxInfo,
};
use tycho_types::num::Tokens;
use tycho_vm::{
    GasParams, OwnedCellSlice, RcStackValue, SmcInfoBase, Tuple, VmGetterMethodId, VmStateBuilder,
    VmVersion,
};

pub use cocoon_chain::AccountStatus;
pub use config::{ConfigError, NetworkConfig};
use store::{BlockWrite, InTransit, Store};
pub use store::{Counters, StoreError};

/// The most transactions one block runs; what is left waits for the next.
pub const MAX_TRANSACTIONS_PER_BLOCK: usize = 10_000;

/// The address the faucet's payments come from (the zero address, as in
/// `@ton/sandbox`).
pub fn faucet_address() -> StdAddr {
    StdAddr::new(0, HashBytes::ZERO)
}

/// What went wrong, naming what was checked and what was found.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// The configuration could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state file failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The message is not a well-formed TON message of the kind expected.
    #[error("the message is not accepted: {0}")]
    Malformed(String),
    /// The destination account did not accept the external message.
    #[error("external message to {address} was not accepted: {reason}")]
    Rejected {
        /// The destination.
        address: StdAddr,
        /// Why, from the executor.
        reason: String,
    },
    /// A development tool was used on a devnet opened without `dev`.
    #[error("{0} is a development tool: the devnet was not started with --dev")]
    DevOnly(&'static str),
    /// The clock may only move forward.
    #[error("the devnet clock only moves forward: it is {now}, {requested} was asked")]
    ClockBackwards {
        /// The current time.
        now: u32,
        /// The requested time.
        requested: u32,
    },
    /// Waiting for a chain of messages to end took more than
    /// [`MAX_SETTLE_BLOCKS`] blocks: a loop.
    #[error("the messages still cause transactions after {0} blocks: a loop")]
    TooManyTransactions(usize),
    /// The executor failed on something it should always handle.
    #[error("executing a transaction on {address}: {reason}")]
    Execution {
        /// The account.
        address: StdAddr,
        /// The executor's error.
        reason: String,
    },
    /// A get-method could not be run.
    #[error("get-method {method} on {address}: {reason}")]
    GetMethod {
        /// The account.
        address: StdAddr,
        /// The method.
        method: String,
        /// What was wrong.
        reason: GetterError,
    },
}

/// Why a get-method could not be run.
#[derive(Debug, thiserror::Error)]
pub enum GetterError {
    /// No account, or one without code.
    #[error("no account with code at this address")]
    NoCode,
    /// The stored account does not decode.
    #[error("the stored account does not decode: {0}")]
    Stored(tycho_types::error::Error),
    /// A stack value could not cross between the VM and the caller.
    #[error("{what}: {error}")]
    Stack {
        /// Which value.
        what: &'static str,
        /// What the cell layer said.
        error: tycho_types::error::Error,
    },
    /// The VM returned a value get-methods do not return.
    #[error("a returned value of a type get-methods do not return ({0})")]
    Unreturnable(String),
}

fn malformed(what: &str) -> impl FnOnce(tycho_types::error::Error) -> DevnetError + '_ {
    move |e| DevnetError::Malformed(format!("{what}: {e}"))
}

/// One executed transaction, summarised.
#[derive(Debug, Clone)]
pub struct ExecutedTx {
    /// The account it ran on.
    pub account: StdAddr,
    /// Its logical time.
    pub lt: u64,
    /// Its hash.
    pub hash: HashBytes,
    /// The transaction cell.
    pub cell: Cell,
    /// The first 32 bits of the inbound message's body, when it has them.
    pub op: Option<u32>,
    /// Whether the inbound message was a bounce.
    pub bounced: bool,
    /// Gas used by the compute phase (`None` when it was skipped).
    pub gas_used: Option<u64>,
    /// The compute phase's exit code (`None` when it was skipped).
    pub exit_code: Option<i32>,
    /// Whether the transaction was aborted.
    pub aborted: bool,
    /// Total fees the transaction charged.
    pub total_fees: Tokens,
    /// Messages it sent.
    pub out_msgs: usize,
    /// The account's balance after it.
    pub balance_after: Tokens,
    /// The hash of the external (or faucet) message whose chain it is part of.
    pub origin: HashBytes,
    /// The external outbound messages (logs) it sent.
    pub external_out: Vec<Cell>,
}

/// What one block did.
#[derive(Debug, Clone, Default)]
pub struct Block {
    /// The transactions, in execution order.
    pub transactions: Vec<ExecutedTx>,
    /// External outbound messages (logs) the block's transactions sent.
    pub external_out: Vec<Cell>,
}

/// An account as the API reports it.
#[derive(Debug, Clone)]
pub struct AccountInfo {
    /// Nanotons.
    pub balance: Tokens,
    /// Active, uninitialised, frozen, or non-existent.
    pub status: AccountStatus,
    /// The code, when active.
    pub code: Option<Cell>,
    /// The data, when active.
    pub data: Option<Cell>,
    /// The last transaction's logical time and hash (zero when none).
    pub last_transaction: (u64, HashBytes),
    /// Unix time storage was last paid.
    pub storage_last_paid: u32,
}

/// A get-method's result.
#[derive(Debug, Clone)]
pub struct GetMethodResult {
    /// The VM's exit code (0 and 1 are success).
    pub exit_code: i32,
    /// Gas used.
    pub gas_used: u64,
    /// The returned stack, first returned value first.
    pub stack: Vec<StackEntry>,
}

/// Faults a test may ask of the devnet, as TON's own network may cause them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// The fraction (0 to 1) of accepted external messages never included:
    /// the API said "ok", and nothing happens.
    pub drop_externals: f64,
    /// Extra blocks every message waits before it is delivered.
    pub delay_blocks: u32,
}

/// How the devnet is opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct DevnetOptions {
    /// Enables the faucet, the movable clock and raw account loading.
    pub dev: bool,
    /// Freezes the clock at this Unix time (plus whatever it is moved
    /// forward) instead of following the host's: for replays that must
    /// run at recorded times. Development only.
    pub frozen_clock: Option<u32>,
    /// Faults to inject.
    pub faults: Faults,
}

/// An accepted external message waiting for its block (in memory only:
/// TON may lose one too).
struct Accepted {
    due: u64,
    msg: Cell,
}

struct State {
    accounts: HashMap<StdAddr, ShardAccount>,
    counters: Counters,
    parsed: Option<(u32, ParsedConfig)>,
    /// The time last handed to a block: the clock never goes back, even if
    /// the host's does.
    last_now: u32,
    frozen_clock: Option<u32>,
    mempool: Vec<Accepted>,
    transit: Vec<InTransit>,
    /// Drives which externals a fault drops.
    rng: u64,
}

impl State {
    /// The next block's number.
    fn next_block(&self) -> u64 {
        self.counters.blocks + 1
    }

    /// Whether anything waits for a block.
    fn has_work(&self) -> bool {
        !self.mempool.is_empty() || !self.transit.is_empty()
    }

    /// What block `number` delivers: internal messages due (in the order
    /// they were created), then accepted externals, at most
    /// [`MAX_TRANSACTIONS_PER_BLOCK`] in all; the rest waits. The externals
    /// leave the mempool; the internals stay in transit until the block is
    /// written.
    fn take_due(&mut self, number: u64) -> (Vec<InTransit>, Vec<Accepted>) {
        let mut internals: Vec<InTransit> = self
            .transit
            .iter()
            .filter(|m| m.due <= number)
            .cloned()
            .collect();
        internals.sort_by_key(|m| (m.created_lt, m.id));
        internals.truncate(MAX_TRANSACTIONS_PER_BLOCK);
        let room = MAX_TRANSACTIONS_PER_BLOCK - internals.len();
        let (mut externals, later): (Vec<Accepted>, Vec<Accepted>) =
            std::mem::take(&mut self.mempool)
                .into_iter()
                .partition(|m| m.due <= number);
        self.mempool = later;
        if externals.len() > room {
            self.mempool.extend(externals.split_off(room));
        }
        (internals, externals)
    }
}

/// What a block's transactions did, before it is written.
struct Ran {
    touched: HashMap<StdAddr, ShardAccount>,
    transactions: Vec<(StdAddr, u64, Cell)>,
    sent: Vec<(u64, HashBytes, Cell)>,
    lt: u64,
}

/// The devnet. All methods are synchronous and serialised; wrap it in an
/// `Arc` and call it from blocking threads.
pub struct Devnet {
    state: Mutex<State>,
    /// Notified after every block and whenever work arrives.
    changed: std::sync::Condvar,
    config: NetworkConfig,
    store: Store,
    options: DevnetOptions,
}

fn system_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// The most blocks [`Devnet::settle`] makes before it calls a chain of
/// messages a loop.
pub const MAX_SETTLE_BLOCKS: usize = 1_000;

impl Devnet {
    /// Opens the devnet whose state lives in `dir` (created when new).
    pub fn open(dir: &Path, options: DevnetOptions) -> Result<Self, DevnetError> {
        if options.frozen_clock.is_some() && !options.dev {
            return Err(DevnetError::DevOnly("a frozen clock"));
        }
        if !(0.0..=1.0).contains(&options.faults.drop_externals) {
            return Err(DevnetError::Malformed(format!(
                "the fraction of externals to drop must be between 0 and 1, not {}",
                options.faults.drop_externals
            )));
        }
        let config = NetworkConfig::embedded()?;
        let store = Store::open(dir)?;
        let accounts = store.load_accounts()?.into_iter().collect();
        let transit = store.load_transit()?;
        let mut counters = store.counters()?;
        counters.lt = counters.lt.max(1_000_000);
        let rng = counters.lt ^ u64::from(system_now()) ^ 0x9e37_79b9_7f4a_7c15;
        Ok(Devnet {
            state: Mutex::new(State {
                accounts,
                counters,
                parsed: None,
                last_now: 0,
                frozen_clock: options.frozen_clock,
                mempool: Vec::new(),
                transit,
                rng,
            }),
            changed: std::sync::Condvar::new(),
            config,
            store,
            options,
        })
    }

    /// The network's global id (param 19), which wallets bind their ids to:
    /// the devnet's own, neither mainnet's nor testnet's.
    pub fn global_id(&self) -> i32 {
        self.config.global_id().unwrap_or(config::DEVNET_GLOBAL_ID)
    }

    /// A configuration parameter's cell, as `getConfigParam` returns it.
    pub fn config_param(&self, index: u32) -> Option<Cell> {
        self.config.param(index)
    }

    /// Whether development tools are enabled.
    pub fn is_dev(&self) -> bool {
        self.options.dev
    }

    /// The faults it injects.
    pub fn faults(&self) -> Faults {
        self.options.faults
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half
        // written: blocks are applied to memory only after disk.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The devnet's current time: the host's clock plus what development
    /// tools moved it, never earlier than a time already used.
    pub fn now(&self) -> u32 {
        let st = self.lock();
        Self::now_of(&st)
    }

    fn now_of(st: &State) -> u32 {
        let base = st.frozen_clock.unwrap_or_else(system_now);
        let t = base.saturating_add(st.counters.clock_offset.min(u32::MAX as u64) as u32);
        t.max(st.last_now)
    }

    /// The counters (logical time, clock offset, faucet total, blocks).
    pub fn counters(&self) -> Counters {
        self.lock().counters
    }

    /// Messages waiting for a block: accepted externals and internal
    /// messages on their way.
    pub fn pending(&self) -> (usize, usize) {
        let st = self.lock();
        (st.mempool.len(), st.transit.len())
    }

    /// Moves the clock forward by `seconds` (development only).
    pub fn advance_clock(&self, seconds: u32) -> Result<u32, DevnetError> {
        if !self.options.dev {
            return Err(DevnetError::DevOnly("moving the clock"));
        }
        let mut st = self.lock();
        let mut counters = st.counters;
        counters.clock_offset += u64::from(seconds);
        self.store.write(&BlockWrite {
            counters,
            ..Default::default()
        })?;
        st.counters = counters;
        Ok(Self::now_of(&st))
    }

    /// Sets the clock to `unix_time`, which must not be earlier than now
    /// (development only).
    pub fn set_clock(&self, unix_time: u32) -> Result<u32, DevnetError> {
        let now = self.now();
        if unix_time < now {
            return Err(DevnetError::ClockBackwards {
                now,
                requested: unix_time,
            });
        }
        self.advance_clock(unix_time - now)
    }

    /// Places an account exactly as given (development only: tests seed
    /// accounts recorded elsewhere).
    pub fn put_account(&self, address: StdAddr, account: ShardAccount) -> Result<(), DevnetError> {
        if !self.options.dev {
            return Err(DevnetError::DevOnly("loading a raw account"));
        }
        let mut st = self.lock();
        let counters = st.counters;
        self.store.write(&BlockWrite {
            accounts: vec![(address.clone(), account.clone())],
            counters,
            ..Default::default()
        })?;
        st.accounts.insert(address, account);
        Ok(())
    }

    /// Queues a payment of `amount` nanotons to `to` out of nothing
    /// (development only), as an internal message from [`faucet_address`]
    /// with no bounce, delivered in the next block. Returns its hash, the
    /// origin of what it causes.
    pub fn faucet_later(&self, to: &StdAddr, amount: Tokens) -> Result<HashBytes, DevnetError> {
        if !self.options.dev {
            return Err(DevnetError::DevOnly("the faucet"));
        }
        let mut st = self.lock();
        let created_lt = st.counters.lt;
        let now = Self::now_of(&st);
        let msg = faucet_message(to, amount, created_lt, now)
            .map_err(|e| DevnetError::Malformed(format!("building the faucet message: {e}")))?;
        let origin = *msg.repr_hash();
        let mut counters = st.counters;
        counters.minted = counters.minted.saturating_add(amount.into_inner() as u64);
        let entry = InTransit {
            id: counters.transit_id,
            due: st.next_block(),
            created_lt,
            origin,
            msg,
        };
        counters.transit_id += 1;
        self.store.write(&BlockWrite {
            counters,
            transit_added: vec![entry.clone()],
            ..Default::default()
        })?;
        st.counters = counters;
        st.transit.push(entry);
        drop(st);
        self.changed.notify_all();
        Ok(origin)
    }

    /// [`Self::faucet_later`], then blocks until the payment and all it
    /// causes are delivered.
    pub fn faucet(&self, to: &StdAddr, amount: Tokens) -> Result<Block, DevnetError> {
        let origin = self.faucet_later(to, amount)?;
        self.settle(&[origin]).map(|mut b| b.remove(0))
    }

    /// Checks an external message as toncenter's `sendBoc` does, against
    /// the state as of the last block (its destination must accept it),
    /// and queues it for a later block. Returns its hash. Accepted is not
    /// included: the message may still fail then, or (with the
    /// [`Faults::drop_externals`] fault) never be included at all.
    pub fn accept_external(&self, message: Cell) -> Result<HashBytes, DevnetError> {
        let parsed: OwnedMessage = message.parse().map_err(malformed("decoding the message"))?;
        if !matches!(parsed.info, MsgInfo::ExtIn(_)) {
            return Err(DevnetError::Malformed(
                "only external inbound messages can be sent from outside; this one is internal or outbound"
                    .into(),
            ));
        }
        let hash = *message.repr_hash();
        let mut st = self.lock();
        self.dry_run(&mut st, message.clone(), false)?;
        let due = st.next_block() + u64::from(self.options.faults.delay_blocks);
        st.mempool.push(Accepted { due, msg: message });
        drop(st);
        self.changed.notify_all();
        Ok(hash)
    }

    /// Sends an external message and makes blocks until it and every
    /// message it causes are delivered: what a test or a replay wants.
    /// Other traffic waiting is delivered on the way.
    pub fn send_external(&self, message: Cell) -> Result<Block, DevnetError> {
        self.send_externals(vec![message])?
            .pop()
            .expect("one result per message")
    }

    /// [`Self::send_external`] for several messages, which share blocks.
    /// Each gets its own answer; one refused does not affect the others.
    pub fn send_externals(
        &self,
        messages: Vec<Cell>,
    ) -> Result<Vec<Result<Block, DevnetError>>, DevnetError> {
        let answers: Vec<Result<(HashBytes, StdAddr), DevnetError>> = messages
            .into_iter()
            .map(|m| {
                let dest = destination(&m)?;
                Ok((self.accept_external(m)?, dest))
            })
            .collect();
        let origins: Vec<HashBytes> = answers
            .iter()
            .filter_map(|a| a.as_ref().ok().map(|(h, _)| *h))
            .collect();
        let mut blocks = self.settle(&origins)?.into_iter();
        Ok(answers
            .into_iter()
            .map(|a| {
                let (_, address) = a?;
                let block = blocks.next().expect("one block per accepted message");
                if block.transactions.is_empty() {
                    return Err(DevnetError::Rejected {
                        address,
                        reason: "it was accepted, then not included (refused by the time its block came, or dropped)".into(),
                    });
                }
                Ok(block)
            })
            .collect())
    }

    /// Makes blocks until nothing caused by `origins` waits any more, and
    /// returns, for each, the transactions it caused. Meant for a devnet
    /// nobody else makes blocks for (tests, replays, start-up funding):
    /// blocks another thread makes meanwhile are not in the answer.
    pub fn settle(&self, origins: &[HashBytes]) -> Result<Vec<Block>, DevnetError> {
        let mut out: Vec<Block> = origins.iter().map(|_| Block::default()).collect();
        for _ in 0..MAX_SETTLE_BLOCKS {
            let waiting = {
                let st = self.lock();
                st.mempool
                    .iter()
                    .any(|m| origins.contains(m.msg.repr_hash()))
                    || st.transit.iter().any(|m| origins.contains(&m.origin))
            };
            if !waiting {
                return Ok(out);
            }
            let block = self.produce_block()?;
            for tx in block.transactions {
                if let Some(i) = origins.iter().position(|o| *o == tx.origin) {
                    out[i].external_out.extend(tx.external_out.iter().cloned());
                    out[i].transactions.push(tx);
                }
            }
        }
        Err(DevnetError::TooManyTransactions(MAX_SETTLE_BLOCKS))
    }

    /// Whether everything caused by `origin` has been delivered.
    pub fn is_settled(&self, origin: &HashBytes) -> bool {
        let st = self.lock();
        !st.mempool.iter().any(|m| m.msg.repr_hash() == origin)
            && !st.transit.iter().any(|m| m.origin == *origin)
    }

    /// Waits up to `timeout` for work to arrive (or a block to be made);
    /// returns whether there is work waiting.
    pub fn wait_for_work(&self, timeout: std::time::Duration) -> bool {
        let st = self.lock();
        if st.has_work() {
            return true;
        }
        let (st, _) = self
            .changed
            .wait_timeout(st, timeout)
            .unwrap_or_else(|p| p.into_inner());
        st.has_work()
    }

    /// What an external message would cost its destination, without
    /// applying anything (as `estimateFee`). With `ignore_signatures`, the
    /// VM treats every signature check as passing, so a message can be
    /// priced before it is signed.
    pub fn estimate_external(
        &self,
        message: Cell,
        ignore_signatures: bool,
    ) -> Result<FeeEstimate, DevnetError> {
        let mut st = self.lock();
        let tx = self.dry_run(&mut st, message, ignore_signatures)?;
        fee_breakdown(&tx.cell)
    }

    /// Runs `message` on the state as of the last block, applying nothing.
    fn dry_run(
        &self,
        st: &mut State,
        message: Cell,
        ignore_signatures: bool,
    ) -> Result<ExecutedTx, DevnetError> {
        let now = Self::now_of(st);
        self.refresh_config(st, now)?;
        let lt0 = st.counters.lt;
        let mut params = executor_params(lt0, now);
        params.vm_modifiers.chksig_always_succeed = ignore_signatures;
        let mut run = BlockRun::on(st, &params, lt0);
        let origin = *message.repr_hash();
        run.deliver(message, true, origin)
    }

    fn refresh_config(&self, st: &mut State, now: u32) -> Result<(), DevnetError> {
        if st.parsed.as_ref().map(|(t, _)| *t) != Some(now) {
            st.parsed = Some((now, self.config.parse_at(now)?));
        }
        Ok(())
    }

    /// Makes one block of everything due: internal messages sent in
    /// earlier blocks (in logical-time order), then accepted externals.
    /// Each is one transaction; what it sends waits for a later block. An
    /// external its destination no longer accepts is dropped without a
    /// trace, as TON drops it. The block is written to disk in one
    /// transaction, then applied to memory. Nothing due: no block.
    pub fn produce_block(&self) -> Result<Block, DevnetError> {
        let mut st = self.lock();
        let block = self.produce(&mut st)?;
        drop(st);
        self.changed.notify_all();
        Ok(block)
    }

    fn produce(&self, st: &mut State) -> Result<Block, DevnetError> {
        let number = st.next_block();
        let (internals, externals) = st.take_due(number);
        if internals.is_empty() && externals.is_empty() {
            // Messages waiting for a later block (delayed): an empty block
            // brings them closer. Nothing waiting: no block.
            if st.has_work() {
                let mut counters = st.counters;
                counters.blocks = number;
                self.store.write(&BlockWrite {
                    counters,
                    ..Default::default()
                })?;
                st.counters = counters;
            }
            return Ok(Block::default());
        }
        let now = Self::now_of(st);
        self.refresh_config(st, now)?;
        let lt0 = st.counters.lt;
        let params = executor_params(lt0, now);
        let mut rng = st.rng;
        let drop_fraction = self.options.faults.drop_externals;
        let mut run = BlockRun::on(st, &params, lt0);
        let mut block = Block::default();
        for m in &internals {
            match run.deliver(m.msg.clone(), false, m.origin) {
                Ok(tx) => block.transactions.push(tx),
                // A message the executor cannot run at all is a devnet bug,
                // or a message to a workchain that does not exist here.
                Err(e) => {
                    tracing::error!(error = %e, "an internal message could not be delivered and is dropped")
                }
            }
        }
        for m in externals {
            rng = splitmix(rng);
            if drop_fraction > 0.0 && ((rng >> 11) as f64 / (1u64 << 53) as f64) < drop_fraction {
                tracing::debug!(hash = %m.msg.repr_hash(), "an accepted external is dropped (fault injection)");
                continue;
            }
            let origin = *m.msg.repr_hash();
            // One its destination no longer accepts is dropped, as TON does.
            if let Ok(tx) = run.deliver(m.msg, true, origin) {
                block.transactions.push(tx);
            }
        }
        let ran = Ran {
            touched: run.touched,
            transactions: run.transactions,
            sent: run.sent,
            lt: run.lt,
        };
        block.external_out = run.external_out;
        self.commit_block(st, number, now, &internals, ran)?;
        st.rng = rng;
        Ok(block)
    }

    /// Writes a block to disk, then applies it to memory: the accounts it
    /// changed, its transactions, the messages it delivered and sent.
    fn commit_block(
        &self,
        st: &mut State,
        number: u64,
        now: u32,
        delivered: &[InTransit],
        ran: Ran,
    ) -> Result<(), DevnetError> {
        let mut counters = st.counters;
        counters.lt = ran.lt;
        counters.blocks = number;
        let due = number + 1 + u64::from(self.options.faults.delay_blocks);
        let added: Vec<InTransit> = ran
            .sent
            .into_iter()
            .map(|(created_lt, origin, msg)| {
                let id = counters.transit_id;
                counters.transit_id += 1;
                InTransit {
                    id,
                    due,
                    created_lt,
                    origin,
                    msg,
                }
            })
            .collect();
        let removed: Vec<u64> = delivered.iter().map(|m| m.id).collect();
        self.store.write(&BlockWrite {
            accounts: ran
                .touched
                .iter()
                .map(|(a, s)| (a.clone(), s.clone()))
                .collect(),
            transactions: ran.transactions,
            counters,
            transit_added: added.clone(),
            transit_removed: removed.clone(),
        })?;
        let removed: std::collections::HashSet<u64> = removed.into_iter().collect();
        st.accounts.extend(ran.touched);
        st.transit.retain(|m| !removed.contains(&m.id));
        st.transit.extend(added);
        st.counters = counters;
        st.last_now = now;
        Ok(())
    }

    /// The account at `address`, `None` when it does not exist.
    pub fn account(&self, address: &StdAddr) -> Result<AccountInfo, DevnetError> {
        let st = self.lock();
        let Some(shard) = st.accounts.get(address) else {
            return Ok(AccountInfo {
                balance: Tokens::ZERO,
                status: AccountStatus::Nonexist,
                code: None,
                data: None,
                last_transaction: (0, HashBytes::ZERO),
                storage_last_paid: 0,
            });
        };
        let account = shard
            .load_account()
            .map_err(|e| DevnetError::Malformed(format!("stored account {address}: {e}")))?;
        let last = (shard.last_trans_lt, shard.last_trans_hash);
        Ok(match account {
            None => AccountInfo {
                balance: Tokens::ZERO,
                status: AccountStatus::Nonexist,
                code: None,
                data: None,
                last_transaction: last,
                storage_last_paid: 0,
            },
            Some(a) => {
                let (status, code, data) = match &a.state {
                    AccountState::Active(init) => {
                        (AccountStatus::Active, init.code.clone(), init.data.clone())
                    }
                    AccountState::Uninit => (AccountStatus::Uninit, None, None),
                    AccountState::Frozen(_) => (AccountStatus::Frozen, None, None),
                };
                AccountInfo {
                    balance: a.balance.tokens,
                    status,
                    code,
                    data,
                    last_transaction: last,
                    storage_last_paid: a.storage_stat.last_paid,
                }
            }
        })
    }

    /// The raw account state, as the executor keeps it.
    pub fn shard_account(&self, address: &StdAddr) -> Option<ShardAccount> {
        self.lock().accounts.get(address).cloned()
    }

    /// Up to `limit` transactions of `address` at or before `to_lt`
    /// (`None`: the latest), newest first.
    pub fn transactions(
        &self,
        address: &StdAddr,
        to_lt: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Cell>, DevnetError> {
        Ok(self
            .store
            .transactions(address, to_lt.unwrap_or(u64::MAX), limit)?)
    }

    /// Runs a get-method by name with `args` (first argument first).
    pub fn run_get_method(
        &self,
        address: &StdAddr,
        method: &str,
        args: &[StackEntry],
    ) -> Result<GetMethodResult, DevnetError> {
        let fail = |reason: GetterError| DevnetError::GetMethod {
            address: address.clone(),
            method: method.to_string(),
            reason,
        };
        let (account, now) = {
            let st = self.lock();
            let account = st
                .accounts
                .get(address)
                .map(|s| s.load_account())
                .transpose()
                .map_err(|e| fail(GetterError::Stored(e)))?
                .flatten();
            (account, Self::now_of(&st))
        };
        let account: Account = account.ok_or_else(|| fail(GetterError::NoCode))?;
        let stack = args
            .iter()
            .map(to_vm)
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        let out = run_getter(&account, method, stack, now, self.config.params()).map_err(fail)?;
        let stack = out
            .stack
            .iter()
            .map(from_vm)
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        Ok(GetMethodResult {
            exit_code: out.exit_code,
            gas_used: out.gas_used,
            stack,
        })
    }
}

/// A block being executed: what it changed so far, on top of the
/// committed state.
struct BlockRun<'a> {
    params: &'a ExecutorParams,
    config: &'a ParsedConfig,
    committed: &'a HashMap<StdAddr, ShardAccount>,
    touched: HashMap<StdAddr, ShardAccount>,
    transactions: Vec<(StdAddr, u64, Cell)>,
    /// Internal messages sent: created logical time, origin, message.
    sent: Vec<(u64, HashBytes, Cell)>,
    external_out: Vec<Cell>,
    lt: u64,
}

impl<'a> BlockRun<'a> {
    /// A block on top of `st`'s committed state (its configuration parsed
    /// for the block's time), starting at logical time `lt`.
    fn on(st: &'a State, params: &'a ExecutorParams, lt: u64) -> Self {
        BlockRun {
            params,
            config: &st.parsed.as_ref().expect("parsed before a block").1,
            committed: &st.accounts,
            touched: HashMap::new(),
            transactions: Vec::new(),
            sent: Vec::new(),
            external_out: Vec::new(),
            lt,
        }
    }

    /// Runs one message as one transaction on the block's state so far.
    /// What it sends is collected, for a later block.
    fn deliver(
        &mut self,
        msg: Cell,
        external: bool,
        origin: HashBytes,
    ) -> Result<ExecutedTx, DevnetError> {
        let parsed: OwnedMessage = msg.parse().map_err(malformed("decoding a message"))?;
        let created_lt = match &parsed.info {
            MsgInfo::Int(i) => i.created_lt,
            _ => self.lt,
        };
        let dest = destination(&msg)?;
        if dest.workchain != 0 {
            return Err(DevnetError::Malformed(format!(
                "a message to workchain {} ({dest}): this devnet has only workchain 0",
                dest.workchain
            )));
        }
        let state = self
            .touched
            .get(&dest)
            .or_else(|| self.committed.get(&dest))
            .cloned()
            .unwrap_or_else(empty_shard_account);
        let min_lt = self.lt.max(created_lt + 1);
        let executor = Executor::new(self.params, self.config).with_min_lt(min_lt);
        let output = match executor.begin_ordinary(&dest, external, msg.clone(), &state) {
            Ok(tx) => tx.commit().map_err(|e| DevnetError::Execution {
                address: dest.clone(),
                reason: format!("{e:#}"),
            })?,
            Err(TxError::Skipped) if external => {
                return Err(DevnetError::Rejected {
                    address: dest,
                    reason: "the account did not accept it (no code, or its code refused before accepting)"
                        .into(),
                });
            }
            Err(e) => {
                return Err(DevnetError::Execution {
                    address: dest,
                    reason: format!("{e:#}"),
                })
            }
        };
        self.lt = self.lt.max(output.transaction_meta.next_lt);
        let tx_cell = output.transaction.inner().clone();
        let mut summary = summarize(
            &dest,
            &tx_cell,
            &msg,
            output.new_state_meta.balance.tokens,
            origin,
        )?;
        for out in &output.transaction_meta.out_msgs {
            let out_cell = out.inner().clone();
            let parsed_out: OwnedMessage =
                out_cell.parse().map_err(malformed("an outbound message"))?;
            match parsed_out.info {
                MsgInfo::Int(IntMsgInfo { created_lt, .. }) => {
                    self.sent.push((created_lt, origin, out_cell));
                }
                _ => {
                    summary.external_out.push(out_cell.clone());
                    self.external_out.push(out_cell);
                }
            }
        }
        self.transactions.push((dest.clone(), summary.lt, tx_cell));
        self.touched.insert(dest, output.new_state);
        Ok(summary)
    }
}

fn executor_params(lt: u64, now: u32) -> ExecutorParams {
    ExecutorParams {
        block_unixtime: now,
        block_lt: lt,
        rand_seed: block_seed(lt, now),
        ..Default::default()
    }
}

/// SplitMix64: enough randomness to pick which externals a fault drops.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn empty_shard_account() -> ShardAccount {
    ShardAccount {
        account: Lazy::new(&tycho_types::models::OptionalAccount::EMPTY)
            .expect("an empty account always serialises"),
        last_trans_hash: HashBytes::ZERO,
        last_trans_lt: 0,
    }
}

fn block_seed(lt: u64, now: u32) -> HashBytes {
    let mut b = CellBuilder::new();
    let _ = b.store_u64(lt);
    let _ = b.store_u32(now);
    b.build().map(|c| *c.repr_hash()).unwrap_or(HashBytes::ZERO)
}

fn destination(msg: &Cell) -> Result<StdAddr, DevnetError> {
    let parsed: OwnedMessage = msg.parse().map_err(malformed("decoding a message"))?;
    let dst = match &parsed.info {
        MsgInfo::Int(i) => &i.dst,
        MsgInfo::ExtIn(i) => &i.dst,
        MsgInfo::ExtOut(_) => {
            return Err(DevnetError::Malformed(
                "an external outbound message has no destination".into(),
            ))
        }
    };
    match dst {
        IntAddr::Std(a) => Ok(a.clone()),
        IntAddr::Var(_) => Err(DevnetError::Malformed(
            "variable-length addresses are not supported".into(),
        )),
    }
}

fn faucet_message(
    to: &StdAddr,
    amount: Tokens,
    created_lt: u64,
    created_at: u32,
) -> Result<Cell, tycho_types::error::Error> {
    let info = IntMsgInfo {
        ihr_disabled: true,
        bounce: false,
        bounced: false,
        src: IntAddr::Std(faucet_address()),
        dst: IntAddr::Std(to.clone()),
        value: CurrencyCollection::new(amount.into_inner()),
        extra_flags: Default::default(),
        fwd_fee: Tokens::ZERO,
        created_lt,
        created_at,
    };
    CellBuilder::build_from(tycho_types::models::Message {
        info: MsgInfo::Int(info),
        init: None,
        body: Cell::empty_cell_ref().as_slice_allow_exotic(),
        layout: None,
    })
}

fn summarize(
    account: &StdAddr,
    tx_cell: &Cell,
    in_msg: &Cell,
    balance_after: Tokens,
    origin: HashBytes,
) -> Result<ExecutedTx, DevnetError> {
    let tx: tycho_types::models::Transaction = tx_cell
        .parse()
        .map_err(malformed("the executed transaction"))?;
    let info = tx
        .load_info()
        .map_err(malformed("the transaction's description"))?;
    let (gas_used, exit_code, aborted) = match info {
        TxInfo::Ordinary(o) => match o.compute_phase {
            ComputePhase::Executed(c) => {
                (Some(c.gas_used.into_inner()), Some(c.exit_code), o.aborted)
            }
            ComputePhase::Skipped(_) => (None, None, o.aborted),
        },
        TxInfo::TickTock(_) => (None, None, false),
    };
    let parsed: OwnedMessage = in_msg.parse().map_err(malformed("the inbound message"))?;
    let bounced = matches!(&parsed.info, MsgInfo::Int(i) if i.bounced);
    let slice = tycho_types::cell::CellSlice::apply_allow_exotic(&parsed.body);
    let op = if slice.size_bits() >= 32 {
        slice.get_u32(0).ok()
    } else {
        None
    };
    Ok(ExecutedTx {
        account: account.clone(),
        lt: tx.lt,
        hash: *tx_cell.repr_hash(),
        cell: tx_cell.clone(),
        op,
        bounced,
        gas_used,
        exit_code,
        aborted,
        total_fees: tx.total_fees.tokens,
        out_msgs: tx.out_msg_count.into_inner() as usize,
        balance_after,
        origin,
        external_out: Vec::new(),
    })
}

/// What a get-method left.
struct GetterOutput {
    exit_code: i32,
    gas_used: u64,
    stack: Vec<RcStackValue>,
}

/// Runs a get-method as TON's get-method runner does, at the VM version
/// transactions run at. (tycho-vm's own getter runs at the version its
/// contract info implies, 11, where `BTOS`, which Tolk emits for address
/// calculations, does not exist yet.)
fn run_getter(
    account: &Account,
    method: &str,
    mut stack: Vec<RcStackValue>,
    now: u32,
    config: &tycho_types::models::BlockchainConfigParams,
) -> Result<GetterOutput, GetterError> {
    let AccountState::Active(state) = &account.state else {
        return Err(GetterError::NoCode);
    };
    let code = state.code.clone().ok_or(GetterError::NoCode)?;
    stack.push(RcStackValue::new_dyn_value(BigInt::from(
        method.as_getter_method_id(),
    )));
    let address = match &account.address {
        IntAddr::Std(a) => a.address,
        IntAddr::Var(_) => HashBytes::ZERO,
    };
    let smc_info = SmcInfoBase::new()
        .with_now(now)
        .with_block_lt(account.last_trans_lt)
        .with_tx_lt(account.last_trans_lt)
        .with_mixed_rand_seed(&HashBytes::ZERO, &address)
        .with_account_balance(account.balance.clone())
        .with_account_addr(account.address.clone())
        .with_config(config.clone())
        .require_ton_v4()
        .with_code(code.clone())
        .require_ton_v6()
        .fill_unpacked_config()
        .map_err(|error| GetterError::Stack {
            what: "the configuration",
            error,
        })?
        .require_ton_v11();
    let version = config.get_global_version().map(|g| g.version).unwrap_or(12);
    let public_libraries =
        tycho_types::dict::Dict::<HashBytes, tycho_types::models::LibDescr>::new();
    let libraries = (&state.libraries, &public_libraries);
    let mut vm = VmStateBuilder::new()
        .with_smc_info(smc_info)
        .with_code(code)
        .with_data(state.data.clone().unwrap_or_default())
        .with_libraries(&libraries)
        .with_init_selector(false)
        .with_stack(stack)
        .with_gas(GasParams::getter())
        .with_version(VmVersion::Ton(version))
        .build();
    let exit_code = !vm.run();
    Ok(GetterOutput {
        exit_code,
        gas_used: vm.gas.consumed(),
        stack: vm.stack.items.clone(),
    })
}

/// Splits a transaction's fees as `estimateFee` reports them.
fn fee_breakdown(tx_cell: &Cell) -> Result<FeeEstimate, DevnetError> {
    let tx: tycho_types::models::Transaction = tx_cell
        .parse()
        .map_err(malformed("the estimated transaction"))?;
    let info = tx
        .load_info()
        .map_err(malformed("the transaction's description"))?;
    let TxInfo::Ordinary(o) = info else {
        return Ok(FeeEstimate::default());
    };
    let storage = o
        .storage_phase
        .map(|s| s.storage_fees_collected.into_inner())
        .unwrap_or(0);
    let gas = match &o.compute_phase {
        ComputePhase::Executed(c) => c.gas_fees.into_inner(),
        ComputePhase::Skipped(_) => 0,
    };
    let (fwd, action) = o
        .action_phase
        .map(|a| {
            (
                a.total_fwd_fees.map(|t| t.into_inner()).unwrap_or(0),
                a.total_action_fees.map(|t| t.into_inner()).unwrap_or(0),
            )
        })
        .unwrap_or((0, 0));
    let total = tx.total_fees.tokens.into_inner();
    let import = total.saturating_sub(storage + gas + action);
    let n = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
    Ok(FeeEstimate {
        in_fwd_fee: n(import),
        storage_fee: n(storage),
        gas_fee: n(gas),
        fwd_fee: n(fwd),
    })
}

fn to_vm(entry: &StackEntry) -> Result<RcStackValue, GetterError> {
    Ok(match entry {
        StackEntry::Int(v) => RcStackValue::new_dyn_value(v.clone()),
        StackEntry::Cell(c) => RcStackValue::new_dyn_value(c.clone()),
        StackEntry::Slice(c) => {
            RcStackValue::new_dyn_value(OwnedCellSlice::new_allow_exotic(c.clone()))
        }
        StackEntry::Builder(c) => {
            let mut b = CellBuilder::new();
            b.store_slice(c.as_slice_allow_exotic())
                .map_err(stack("a builder argument"))?;
            RcStackValue::new_dyn_value(b)
        }
        StackEntry::Tuple(items) => {
            let items = items.iter().map(to_vm).collect::<Result<Tuple, _>>()?;
            RcStackValue::new_dyn_value(items)
        }
        StackEntry::Null => RcStackValue::new_dyn_value(()),
    })
}

fn stack(what: &'static str) -> impl Fn(tycho_types::error::Error) -> GetterError {
    move |error| GetterError::Stack { what, error }
}

fn from_vm(value: &RcStackValue) -> Result<StackEntry, GetterError> {
    if let Some(i) = value.as_int() {
        return Ok(StackEntry::Int(BigInt::clone(i)));
    }
    if let Some(c) = value.as_cell() {
        return Ok(StackEntry::Cell(c.clone()));
    }
    if let Some(s) = value.as_cell_slice() {
        let mut b = CellBuilder::new();
        b.store_slice(s.apply())
            .map_err(stack("a returned slice"))?;
        return Ok(StackEntry::Slice(
            b.build().map_err(stack("a returned slice"))?,
        ));
    }
    if let Some(b) = value.as_cell_builder() {
        return Ok(StackEntry::Builder(
            b.clone().build().map_err(stack("a returned builder"))?,
        ));
    }
    if let Some(t) = value.as_tuple() {
        return Ok(StackEntry::Tuple(
            t.iter().map(from_vm).collect::<Result<_, _>>()?,
        ));
    }
    if value.is_null() {
        return Ok(StackEntry::Null);
    }
    Err(GetterError::Unreturnable(format!("{value:?}")))
}

/// The devnet is shared between server threads.
#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Devnet>();
}
