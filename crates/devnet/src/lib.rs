//! A TON devnet in one process: Cocoon's own compiled contracts executed by
//! `tycho-executor` under the configuration `@ton/sandbox` charges by, with
//! state kept on disk.
//!
//! One external message (or, in development, one faucet payment) makes one
//! block: the message's transaction, then every internal message it causes,
//! delivered in logical-time order, until the queue is empty. The block is
//! written to disk before the call returns. The devnet is one shard of the
//! basechain with no masterchain: enough for contracts whose behaviour does
//! not depend on block boundaries, which ours do not.
//!
//! The faucet, the movable clock and loading raw accounts are development
//! tools: refused unless the devnet was opened with `dev`.

pub mod api;
pub mod config;
mod store;

use std::collections::{BinaryHeap, HashMap};
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
use store::{BlockWrite, Store};
pub use store::{Counters, StoreError};

/// The most transactions one block may run: a chain of messages longer
/// than this is a loop, and is stopped rather than run forever.
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
    /// A block ran more transactions than [`MAX_TRANSACTIONS_PER_BLOCK`].
    #[error(
        "the message caused more than {0} transactions: stopped as a loop; nothing was applied"
    )]
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
        reason: String,
    },
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

/// How the devnet is opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct DevnetOptions {
    /// Enables the faucet, the movable clock and raw account loading.
    pub dev: bool,
    /// Freezes the clock at this Unix time (plus whatever it is moved
    /// forward) instead of following the host's: for replays that must
    /// run at recorded times. Development only.
    pub frozen_clock: Option<u32>,
}

struct State {
    accounts: HashMap<StdAddr, ShardAccount>,
    counters: Counters,
    parsed: Option<(u32, ParsedConfig)>,
    /// The time last handed to a block: the clock never goes back, even if
    /// the host's does.
    last_now: u32,
    frozen_clock: Option<u32>,
}

/// The devnet. All methods are synchronous and serialised; wrap it in an
/// `Arc` and call it from blocking threads.
pub struct Devnet {
    state: Mutex<State>,
    config: NetworkConfig,
    store: Store,
    options: DevnetOptions,
}

/// An internal message waiting for delivery, ordered by creation time.
struct Queued {
    created_lt: u64,
    seq: u64,
    msg: Cell,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.created_lt, self.seq) == (o.created_lt, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    // BinaryHeap is a max-heap: the earliest message is the greatest.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.created_lt, o.seq).cmp(&(self.created_lt, self.seq))
    }
}

fn system_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

impl Devnet {
    /// Opens the devnet whose state lives in `dir` (created when new).
    pub fn open(dir: &Path, options: DevnetOptions) -> Result<Self, DevnetError> {
        if options.frozen_clock.is_some() && !options.dev {
            return Err(DevnetError::DevOnly("a frozen clock"));
        }
        let config = NetworkConfig::embedded()?;
        let store = Store::open(dir)?;
        let accounts = store.load_accounts()?.into_iter().collect();
        let mut counters = store.counters()?;
        counters.lt = counters.lt.max(1_000_000);
        Ok(Devnet {
            state: Mutex::new(State {
                accounts,
                counters,
                parsed: None,
                last_now: 0,
                frozen_clock: options.frozen_clock,
            }),
            config,
            store,
            options,
        })
    }

    /// The network's global id, which wallets bind their ids to.
    pub fn global_id(&self) -> i32 {
        self.config
            .global_id()
            .unwrap_or(cocoon_chain::wallet::network::MAINNET)
    }

    /// Whether development tools are enabled.
    pub fn is_dev(&self) -> bool {
        self.options.dev
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

    /// The counters (logical time, clock offset, faucet total).
    pub fn counters(&self) -> Counters {
        self.lock().counters
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

    /// Pays `amount` nanotons to `to` out of nothing (development only),
    /// as an internal message from [`faucet_address`] with no bounce.
    pub fn faucet(&self, to: &StdAddr, amount: Tokens) -> Result<Block, DevnetError> {
        if !self.options.dev {
            return Err(DevnetError::DevOnly("the faucet"));
        }
        let mut st = self.lock();
        let created_lt = st.counters.lt;
        let now = Self::now_of(&st);
        let msg = faucet_message(to, amount, created_lt, now)
            .map_err(|e| DevnetError::Malformed(format!("building the faucet message: {e}")))?;
        let minted = st
            .counters
            .minted
            .saturating_add(amount.into_inner() as u64);
        self.run_one(&mut st, Inbound::Internal(msg), Mode::Apply, |c| {
            c.minted = minted
        })
    }

    /// Sends an external message (a bag of cells' root), as `sendBoc`.
    pub fn send_external(&self, message: Cell) -> Result<Block, DevnetError> {
        let parsed: OwnedMessage = message.parse().map_err(malformed("decoding the message"))?;
        if !matches!(parsed.info, MsgInfo::ExtIn(_)) {
            return Err(DevnetError::Malformed(
                "only external inbound messages can be sent from outside; this one is internal or outbound"
                    .into(),
            ));
        }
        let mut st = self.lock();
        self.run_one(&mut st, Inbound::External(message), Mode::Apply, |_| {})
    }

    /// Sends several external messages as one block, written to disk once:
    /// what a busy chain does, and what the API does with requests that
    /// arrive together. Each message gets its own answer; one refused does
    /// not affect the others.
    pub fn send_externals(
        &self,
        messages: Vec<Cell>,
    ) -> Result<Vec<Result<Block, DevnetError>>, DevnetError> {
        let inbounds = messages
            .into_iter()
            .map(|m| {
                let parsed: OwnedMessage = m.parse().map_err(malformed("decoding the message"))?;
                match parsed.info {
                    MsgInfo::ExtIn(_) => Ok(Inbound::External(m)),
                    _ => Err(DevnetError::Malformed(
                        "only external inbound messages can be sent from outside; this one is internal or outbound".into(),
                    )),
                }
            })
            .collect::<Vec<_>>();
        let mut st = self.lock();
        let (ok, bad): (Vec<_>, Vec<_>) = inbounds
            .into_iter()
            .enumerate()
            .partition(|(_, r)| r.is_ok());
        let order: Vec<usize> = ok.iter().map(|(i, _)| *i).collect();
        let blocks = self.run_block(
            &mut st,
            ok.into_iter().filter_map(|(_, r)| r.ok()).collect(),
            Mode::Apply,
            |_| {},
        )?;
        let mut out: Vec<Option<Result<Block, DevnetError>>> =
            (0..order.len() + bad.len()).map(|_| None).collect();
        for (i, b) in order.into_iter().zip(blocks) {
            out[i] = Some(b);
        }
        for (i, r) in bad {
            out[i] = r.err().map(Err);
        }
        Ok(out
            .into_iter()
            .map(|r| r.expect("every message answered"))
            .collect())
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
        let mode = Mode::DryRun { ignore_signatures };
        let block = self.run_one(&mut st, Inbound::External(message), mode, |_| {})?;
        let first = block
            .transactions
            .first()
            .ok_or_else(|| DevnetError::Malformed("the message caused no transaction".into()))?;
        fee_breakdown(&first.cell)
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
        let fail = |reason: String| DevnetError::GetMethod {
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
                .map_err(|e| fail(format!("the stored account does not decode: {e}")))?
                .flatten();
            (account, Self::now_of(&st))
        };
        let account: Account = account.ok_or_else(|| fail("no account at this address".into()))?;
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

    /// Executes one block: each inbound message and the whole chain of
    /// internal messages it causes, one after the other. A message that
    /// fails (refused, a loop) leaves no trace and does not stop the
    /// others. The block is written to disk in one transaction, then
    /// applied to memory; a dry run does neither.
    fn run_block(
        &self,
        st: &mut State,
        inbounds: Vec<Inbound>,
        mode: Mode,
        adjust: impl FnOnce(&mut Counters),
    ) -> Result<Vec<Result<Block, DevnetError>>, DevnetError> {
        let now = Self::now_of(st);
        if st.parsed.as_ref().map(|(t, _)| *t) != Some(now) {
            st.parsed = Some((now, self.config.parse_at(now)?));
        }
        let lt0 = st.counters.lt;
        let mut params = ExecutorParams {
            block_unixtime: now,
            block_lt: lt0,
            rand_seed: block_seed(lt0, now),
            ..Default::default()
        };
        if let Mode::DryRun {
            ignore_signatures: true,
        } = mode
        {
            params.vm_modifiers.chksig_always_succeed = true;
        }
        let mut run = BlockRun {
            params: &params,
            config: &st.parsed.as_ref().expect("parsed just above").1,
            committed: &st.accounts,
            touched: HashMap::new(),
            transactions: Vec::new(),
            lt: lt0,
        };
        let results: Vec<Result<Block, DevnetError>> =
            inbounds.into_iter().map(|i| run.chain(i)).collect();
        if let Mode::DryRun { .. } = mode {
            return Ok(results);
        }
        let (touched, transactions, lt) = (run.touched, run.transactions, run.lt);
        if results.iter().all(Result::is_err) {
            return Ok(results);
        }
        let mut counters = st.counters;
        counters.lt = lt;
        counters.blocks += 1;
        adjust(&mut counters);
        let write = BlockWrite {
            accounts: touched
                .iter()
                .map(|(a, s)| (a.clone(), s.clone()))
                .collect(),
            transactions,
            counters,
        };
        self.store.write(&write)?;
        st.accounts.extend(touched);
        st.counters = counters;
        st.last_now = now;
        Ok(results)
    }

    /// [`Self::run_block`] for one message.
    fn run_one(
        &self,
        st: &mut State,
        inbound: Inbound,
        mode: Mode,
        adjust: impl FnOnce(&mut Counters),
    ) -> Result<Block, DevnetError> {
        self.run_block(st, vec![inbound], mode, adjust)?
            .pop()
            .expect("one result per message")
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
    lt: u64,
}

impl BlockRun<'_> {
    /// Runs one inbound message and everything it causes, in logical-time
    /// order. On failure the block is as if the message never came.
    fn chain(&mut self, inbound: Inbound) -> Result<Block, DevnetError> {
        let mut local: HashMap<StdAddr, ShardAccount> = HashMap::new();
        let mut lt = self.lt;
        let mut seq = 0u64;
        let mut queue = BinaryHeap::new();
        let mut block = Block::default();
        let mut txs = Vec::new();
        let (first, is_external) = match inbound {
            Inbound::External(m) => (m, true),
            Inbound::Internal(m) => (m, false),
        };
        let mut next: Option<(Cell, bool, u64)> = Some((first, is_external, lt));
        loop {
            let Some((msg, external, created_lt)) = next
                .take()
                .or_else(|| queue.pop().map(|q: Queued| (q.msg, false, q.created_lt)))
            else {
                break;
            };
            if block.transactions.len() >= MAX_TRANSACTIONS_PER_BLOCK {
                return Err(DevnetError::TooManyTransactions(MAX_TRANSACTIONS_PER_BLOCK));
            }
            let dest = destination(&msg)?;
            if dest.workchain != 0 {
                // Only the basechain exists here; a masterchain message
                // would never be delivered. Say so rather than lose value.
                return Err(DevnetError::Malformed(format!(
                    "a message to workchain {} ({dest}): this devnet has only workchain 0",
                    dest.workchain
                )));
            }
            let state = local
                .get(&dest)
                .or_else(|| self.touched.get(&dest))
                .or_else(|| self.committed.get(&dest))
                .cloned()
                .unwrap_or_else(empty_shard_account);
            let min_lt = lt.max(created_lt + 1);
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
            lt = lt.max(output.transaction_meta.next_lt);
            let tx_cell = output.transaction.inner().clone();
            let summary = summarize(&dest, &tx_cell, &msg, output.new_state_meta.balance.tokens)?;
            for out in &output.transaction_meta.out_msgs {
                let out_cell = out.inner().clone();
                let parsed_out: OwnedMessage =
                    out_cell.parse().map_err(malformed("an outbound message"))?;
                match parsed_out.info {
                    MsgInfo::Int(IntMsgInfo { created_lt, .. }) => {
                        queue.push(Queued {
                            created_lt,
                            seq,
                            msg: out_cell,
                        });
                        seq += 1;
                    }
                    _ => block.external_out.push(out_cell),
                }
            }
            txs.push((dest.clone(), summary.lt, tx_cell));
            local.insert(dest, output.new_state);
            block.transactions.push(summary);
        }
        self.lt = lt;
        self.touched.extend(local);
        self.transactions.extend(txs);
        Ok(block)
    }
}

#[derive(Clone, Copy)]
enum Mode {
    Apply,
    DryRun { ignore_signatures: bool },
}

enum Inbound {
    External(Cell),
    Internal(Cell),
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
) -> Result<GetterOutput, String> {
    let AccountState::Active(state) = &account.state else {
        return Err("the account has no code".into());
    };
    let code = state.code.clone().ok_or("the account has no code")?;
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
        .map_err(|e| format!("the configuration: {e}"))?
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

fn to_vm(entry: &StackEntry) -> Result<RcStackValue, String> {
    Ok(match entry {
        StackEntry::Int(v) => RcStackValue::new_dyn_value(v.clone()),
        StackEntry::Cell(c) => RcStackValue::new_dyn_value(c.clone()),
        StackEntry::Slice(c) => {
            RcStackValue::new_dyn_value(OwnedCellSlice::new_allow_exotic(c.clone()))
        }
        StackEntry::Builder(c) => {
            let mut b = CellBuilder::new();
            b.store_slice(c.as_slice_allow_exotic())
                .map_err(|e| format!("a builder argument: {e}"))?;
            RcStackValue::new_dyn_value(b)
        }
        StackEntry::Tuple(items) => {
            let items = items.iter().map(to_vm).collect::<Result<Tuple, _>>()?;
            RcStackValue::new_dyn_value(items)
        }
        StackEntry::Null => RcStackValue::new_dyn_value(()),
    })
}

fn from_vm(value: &RcStackValue) -> Result<StackEntry, String> {
    if let Some(i) = value.as_int() {
        return Ok(StackEntry::Int(BigInt::clone(i)));
    }
    if let Some(c) = value.as_cell() {
        return Ok(StackEntry::Cell(c.clone()));
    }
    if let Some(s) = value.as_cell_slice() {
        let mut b = CellBuilder::new();
        b.store_slice(s.apply())
            .map_err(|e| format!("a returned slice: {e}"))?;
        return Ok(StackEntry::Slice(
            b.build().map_err(|e| format!("a returned slice: {e}"))?,
        ));
    }
    if let Some(b) = value.as_cell_builder() {
        return Ok(StackEntry::Builder(
            b.clone()
                .build()
                .map_err(|e| format!("a returned builder: {e}"))?,
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
    Err(format!(
        "a returned value of a type get-methods do not return ({value:?})"
    ))
}

/// The devnet is shared between server threads.
#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Devnet>();
}
