//! The proxy's ledger: every account and every request in flight, durable
//! in an embedded `redb` database, with group commit.
//!
//! Operations are applied by one committer thread in arrival order. It
//! takes every operation waiting, applies them to a working copy of the
//! records they touch, writes all changes in one transaction, commits
//! (fsync), and only then answers each caller and makes the changes
//! visible. One fsync thus serves many requests, and nothing is reported
//! done before it is durable. An operation that fails changes nothing.
//!
//! Requests in flight are recorded at reservation with the client, the
//! worker and the amount held, and may record progress (the cost of what
//! was delivered so far). On open, requests left by a crash are settled at
//! their last recorded progress, or released when none was recorded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cocoon_core::{Charge, Nanoton};
use redb::{Database, ReadableTable, TableDefinition};
use tycho_types::cell::HashBytes;
use tycho_types::models::StdAddr;

use crate::account::{AccountError, ClientAccount, WorkerAccount};
use crate::voucher::{SignedVoucher, Voucher, VoucherError, VoucherKind, VoucherSigner};

const CLIENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("clients");
const WORKERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("workers");
const REQUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("requests");
const TOTALS: TableDefinition<&str, u64> = TableDefinition::new("totals");
const COMMISSION: &str = "commission";

/// The longest wait between the end of one commit and the start of the
/// next when operations arrive concurrently.
const COMMIT_SPACING: std::time::Duration = std::time::Duration::from_millis(1);

/// Most operations committed in one transaction.
const MAX_BATCH: usize = 4096;

/// A client or worker, by its TON address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PartyId([u8; 33]);

impl PartyId {
    fn of(addr: &StdAddr) -> Self {
        let mut b = [0u8; 33];
        b[0] = addr.workchain as u8;
        b[1..].copy_from_slice(&addr.address.0);
        PartyId(b)
    }

    fn addr(&self) -> StdAddr {
        let mut a = [0u8; 32];
        a.copy_from_slice(&self.0[1..]);
        StdAddr::new(self.0[0] as i8, HashBytes(a))
    }

    fn from_slice(b: &[u8]) -> Option<Self> {
        b.try_into().ok().map(PartyId)
    }
}

/// A request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    client: PartyId,
    worker: PartyId,
    reserved: Nanoton,
    progress: Charge,
}

impl InFlight {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(90);
        b.extend_from_slice(&self.client.0);
        b.extend_from_slice(&self.worker.0);
        b.extend_from_slice(&self.reserved.get().to_le_bytes());
        b.extend_from_slice(&self.progress.client.get().to_le_bytes());
        b.extend_from_slice(&self.progress.worker.get().to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != 90 {
            return None;
        }
        let u = |i: usize| {
            Nanoton::new(u64::from_le_bytes(
                b[i..i + 8].try_into().unwrap_or_default(),
            ))
        };
        Some(InFlight {
            client: PartyId::from_slice(&b[0..33])?,
            worker: PartyId::from_slice(&b[33..66])?,
            reserved: u(66),
            progress: Charge {
                client: u(74),
                worker: u(82),
            },
        })
    }
}

/// An operation on the ledger.
#[derive(Debug, Clone)]
pub enum Op {
    /// Credit a client's deposit.
    Deposit {
        /// The client.
        client: StdAddr,
        /// Amount deposited.
        amount: Nanoton,
    },
    /// Take a client's deposit and stake as its contract on chain reports
    /// them (absolute: a withdrawal on chain lowers it).
    SyncDeposit {
        /// The client (its contract's address).
        client: StdAddr,
        /// Booked balance plus committed vouchers.
        deposited: Nanoton,
        /// The stake the contract keeps.
        stake: Nanoton,
        /// What vouchers committed on chain.
        committed: Nanoton,
        /// The contract's state: only an open one takes new requests.
        status: crate::account::AccountStatus,
    },
    /// Hold a request's maximum cost before it is forwarded.
    Reserve {
        /// The request (unique while in flight).
        request: String,
        /// Who pays.
        client: StdAddr,
        /// Who serves.
        worker: StdAddr,
        /// The maximum cost.
        amount: Nanoton,
    },
    /// Record the cost of what was delivered so far (charged if the proxy
    /// stops before the request ends).
    Progress {
        /// The request.
        request: String,
        /// Cost so far.
        charge: Charge,
    },
    /// Charge a finished (or partly delivered) request and pay its worker.
    Settle {
        /// The request.
        request: String,
        /// Its cost.
        charge: Charge,
    },
    /// Give a request's reservation back: it failed before any byte.
    Release {
        /// The request.
        request: String,
    },
    /// Pay a worker from the proxy's commission for checking another
    /// worker's answer (a spot-check's re-run or scoring): the network's
    /// cost, charged to no client. What the commission cannot cover now
    /// stays due to the worker ([`WorkerAccount::checks_due`]) and is paid
    /// as the commission grows.
    PayCheck {
        /// The checking worker.
        worker: StdAddr,
        /// Its fee.
        fee: Nanoton,
    },
}

/// A settled request: what moved, and the vouchers stating the new totals.
///
/// Vouchers are cumulative, so within one committed batch only each party's
/// last settlement carries one: earlier ones in the batch would be
/// superseded before they arrived. Under light load every settlement has
/// both; under heavy load signing costs one signature per party per commit.
#[derive(Debug, Clone)]
pub struct Settlement {
    /// What the client was charged and the worker earned.
    pub charged: Charge,
    /// The client's new cumulative voucher, if this is the client's last
    /// settlement in its batch.
    pub client_voucher: Option<SignedVoucher>,
    /// The worker's new cumulative voucher, likewise.
    pub worker_voucher: Option<SignedVoucher>,
}

/// What an operation did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The client's account after a deposit or reservation.
    Client(ClientAccount),
    /// Progress recorded, or a reservation released.
    Done,
    /// A request settled.
    Settled(Box<Settlement>),
}

/// Why an operation failed. Nothing moved.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// The account refused the transition.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// No such request in flight.
    #[error("no request {0:?} is in flight (already settled, released, or never reserved)")]
    UnknownRequest(String),
    /// A request id already in flight.
    #[error("request {0:?} is already in flight")]
    DuplicateRequest(String),
    /// Progress or a charge larger than the request's reservation.
    #[error("request {request:?}: {what} {found} is above its reservation {reserved}")]
    AboveReservation {
        /// The request.
        request: String,
        /// Which amount.
        what: &'static str,
        /// The amount.
        found: Nanoton,
        /// The reservation.
        reserved: Nanoton,
    },
    /// A worker's fee above the client's charge.
    #[error("request {0:?}: worker fee above the client's charge")]
    FeeAboveCharge(String),
    /// The database failed; the batch was not committed.
    #[error("ledger store {path}: {reason}")]
    Store {
        /// The database file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// Signing a voucher failed.
    #[error(transparent)]
    Voucher(#[from] VoucherError),
    /// The ledger has shut down.
    #[error("the ledger has shut down")]
    Closed,
}

/// What opening the ledger found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Requests left in flight and settled at their recorded progress.
    pub settled: u64,
    /// Requests left in flight with no progress, released.
    pub released: u64,
    /// Charged to clients by that recovery.
    pub charged: Nanoton,
}

/// Sums over the whole ledger, for invariants and stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Charged to all clients.
    pub charged: Nanoton,
    /// Earned by all workers.
    pub earned: Nanoton,
    /// Kept by the proxy.
    pub commission: Nanoton,
    /// Reserved by requests in flight.
    pub reserved: Nanoton,
    /// Deposited by all clients.
    pub deposited: Nanoton,
    /// Requests in flight.
    pub in_flight: u64,
}

#[derive(Debug, Default, Clone)]
struct State {
    clients: HashMap<PartyId, ClientAccount>,
    workers: HashMap<PartyId, WorkerAccount>,
    requests: HashMap<String, InFlight>,
    commission: Nanoton,
}

/// Records touched by a batch: `None` means deleted (requests only).
#[derive(Default)]
struct Overlay {
    clients: HashMap<PartyId, ClientAccount>,
    workers: HashMap<PartyId, WorkerAccount>,
    requests: HashMap<String, Option<InFlight>>,
    commission: Option<Nanoton>,
}

impl Overlay {
    fn client(&self, st: &State, id: PartyId) -> ClientAccount {
        self.clients
            .get(&id)
            .or_else(|| st.clients.get(&id))
            .copied()
            .unwrap_or_default()
    }

    fn worker(&self, st: &State, id: PartyId) -> WorkerAccount {
        self.workers
            .get(&id)
            .or_else(|| st.workers.get(&id))
            .copied()
            .unwrap_or_default()
    }

    fn request(&self, st: &State, id: &str) -> Option<InFlight> {
        match self.requests.get(id) {
            Some(r) => *r,
            None => st.requests.get(id).copied(),
        }
    }

    fn commission(&self, st: &State) -> Nanoton {
        self.commission.unwrap_or(st.commission)
    }

    fn merge_into(self, st: &mut State) {
        st.clients.extend(self.clients);
        st.workers.extend(self.workers);
        for (k, v) in self.requests {
            match v {
                Some(r) => {
                    st.requests.insert(k, r);
                }
                None => {
                    st.requests.remove(&k);
                }
            }
        }
        if let Some(c) = self.commission {
            st.commission = c;
        }
    }
}

/// A settlement waiting for its vouchers, signed once the batch is durable.
struct Unsigned {
    charged: Charge,
    /// `None` for a payment no client makes (a check's fee).
    client: Option<(PartyId, ClientAccount)>,
    worker: (PartyId, WorkerAccount),
    /// Whether the worker's total moved (a check's fee may only be due).
    worker_moved: bool,
}

enum Applied {
    Client(ClientAccount),
    Done,
    Settled(Unsigned),
}

fn settle(
    ov: &mut Overlay,
    st: &State,
    request: &str,
    r: InFlight,
    charge: Charge,
) -> Result<Unsigned, LedgerError> {
    if charge.worker > charge.client {
        return Err(LedgerError::FeeAboveCharge(request.to_owned()));
    }
    let mut client = ov.client(st, r.client);
    let charged_client = client.settle(r.reserved, charge.client)?;
    // A charge capped at the reservation caps the worker's fee likewise.
    let fee = charge.worker.min(charged_client);
    let mut worker = ov.worker(st, r.worker);
    worker.earn(fee)?;
    let mut commission = ov
        .commission(st)
        .checked_add(
            charged_client
                .checked_sub(fee)
                .map_err(AccountError::from)?,
        )
        .map_err(AccountError::from)?;
    // Checks this worker ran that the commission could not cover before.
    worker.pay_checks(&mut commission)?;
    ov.clients.insert(r.client, client);
    ov.workers.insert(r.worker, worker);
    ov.requests.insert(request.to_owned(), None);
    ov.commission = Some(commission);
    Ok(Unsigned {
        charged: Charge {
            client: charged_client,
            worker: fee,
        },
        client: Some((r.client, client)),
        worker: (r.worker, worker),
        worker_moved: true,
    })
}

/// Applies `op` to the batch's overlay. Every fallible step runs on copies
/// before anything is written to `ov`, so a failed op leaves it untouched.
fn apply(op: &Op, ov: &mut Overlay, st: &State) -> Result<Applied, LedgerError> {
    match op {
        Op::Deposit { client, amount } => {
            let id = PartyId::of(client);
            let mut a = ov.client(st, id);
            a.deposit(*amount)?;
            ov.clients.insert(id, a);
            Ok(Applied::Client(a))
        }
        Op::SyncDeposit {
            client,
            deposited,
            stake,
            committed,
            status,
        } => {
            let id = PartyId::of(client);
            let mut a = ov.client(st, id);
            a.sync_from_chain(*deposited, *stake, *committed, *status);
            ov.clients.insert(id, a);
            Ok(Applied::Client(a))
        }
        Op::Reserve {
            request,
            client,
            worker,
            amount,
        } => {
            if ov.request(st, request).is_some() {
                return Err(LedgerError::DuplicateRequest(request.clone()));
            }
            let id = PartyId::of(client);
            let mut a = ov.client(st, id);
            a.reserve(*amount)?;
            ov.clients.insert(id, a);
            ov.requests.insert(
                request.clone(),
                Some(InFlight {
                    client: id,
                    worker: PartyId::of(worker),
                    reserved: *amount,
                    progress: Charge::default(),
                }),
            );
            Ok(Applied::Client(a))
        }
        Op::Progress { request, charge } => {
            let mut r = ov
                .request(st, request)
                .ok_or_else(|| LedgerError::UnknownRequest(request.clone()))?;
            if charge.client > r.reserved {
                return Err(LedgerError::AboveReservation {
                    request: request.clone(),
                    what: "progress",
                    found: charge.client,
                    reserved: r.reserved,
                });
            }
            if charge.worker > charge.client {
                return Err(LedgerError::FeeAboveCharge(request.clone()));
            }
            // Progress only grows: a late, smaller checkpoint changes nothing.
            if charge.client >= r.progress.client {
                r.progress = *charge;
                ov.requests.insert(request.clone(), Some(r));
            }
            Ok(Applied::Done)
        }
        Op::Settle { request, charge } => {
            let r = ov
                .request(st, request)
                .ok_or_else(|| LedgerError::UnknownRequest(request.clone()))?;
            Ok(Applied::Settled(settle(ov, st, request, r, *charge)?))
        }
        Op::Release { request } => {
            let r = ov
                .request(st, request)
                .ok_or_else(|| LedgerError::UnknownRequest(request.clone()))?;
            let mut a = ov.client(st, r.client);
            a.release(r.reserved)?;
            ov.clients.insert(r.client, a);
            ov.requests.insert(request.clone(), None);
            Ok(Applied::Done)
        }
        Op::PayCheck { worker, fee } => {
            let id = PartyId::of(worker);
            let mut w = ov.worker(st, id);
            w.checks_due = w.checks_due.checked_add(*fee).map_err(AccountError::from)?;
            let mut commission = ov.commission(st);
            let paid = w.pay_checks(&mut commission)?;
            ov.workers.insert(id, w);
            ov.commission = Some(commission);
            Ok(Applied::Settled(Unsigned {
                charged: Charge {
                    client: Nanoton::ZERO,
                    worker: paid,
                },
                client: None,
                worker: (id, w),
                worker_moved: paid > Nanoton::ZERO,
            }))
        }
    }
}

struct Job {
    op: Op,
    reply: tokio::sync::oneshot::Sender<Result<Outcome, LedgerError>>,
}

/// The proxy's durable ledger.
pub struct Ledger {
    state: Arc<Mutex<State>>,
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    committer: Option<std::thread::JoinHandle<()>>,
    stats: Arc<Mutex<(u64, u64)>>,
    path: PathBuf,
    signer: Arc<VoucherSigner>,
    terms: VoucherTerms,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Where vouchers point and how long they last.
#[derive(Debug, Clone)]
pub struct VoucherTerms {
    /// The proxy contract.
    pub contract: StdAddr,
    /// Seconds a voucher stays valid after it is signed.
    pub ttl_secs: u32,
}

fn store_err(path: &Path, e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Store {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path`, recovers requests a
    /// crash left in flight, and starts the committer.
    pub fn open(
        path: &Path,
        signer: VoucherSigner,
        terms: VoucherTerms,
    ) -> Result<(Ledger, Recovery), LedgerError> {
        let db = Database::create(path).map_err(|e| store_err(path, e))?;
        let mut st = load(&db, path)?;
        let recovery = recover(&db, path, &mut st)?;
        let state = Arc::new(Mutex::new(st));
        let stats = Arc::new(Mutex::new((0u64, 0u64)));
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let signer = Arc::new(signer);
        let committer = {
            let state = state.clone();
            let stats = stats.clone();
            let signer = signer.clone();
            let terms = terms.clone();
            let owned = path.to_owned();
            std::thread::Builder::new()
                .name("ledger-commit".into())
                .spawn(move || commit_loop(db, owned, state, stats, rx, signer, terms))
                .map_err(|e| store_err(path, e))?
        };
        Ok((
            Ledger {
                state,
                jobs: Some(tx),
                committer: Some(committer),
                stats,
                path: path.to_owned(),
                signer,
                terms,
            },
            recovery,
        ))
    }

    /// The client's voucher for its committed total, signed now; `None`
    /// before its first charge.
    pub fn client_voucher(&self, client: &StdAddr) -> Option<SignedVoucher> {
        let a = self.client(client);
        (a.seqno > 0).then(|| self.voucher(VoucherKind::Client, client, a.charged, a.seqno))?
    }

    /// The worker's voucher for its committed earnings, signed now; `None`
    /// before its first earning.
    pub fn worker_voucher(&self, worker: &StdAddr) -> Option<SignedVoucher> {
        let a = self.worker(worker);
        (a.seqno > 0).then(|| self.voucher(VoucherKind::Worker, worker, a.earned, a.seqno))?
    }

    fn voucher(
        &self,
        kind: VoucherKind,
        party: &StdAddr,
        total: Nanoton,
        seqno: u64,
    ) -> Option<SignedVoucher> {
        self.signer
            .sign(Voucher {
                kind,
                contract: self.terms.contract.clone(),
                party: party.clone(),
                total,
                seqno,
                expires_at: expiry(&self.terms),
            })
            .ok()
    }

    /// Signs another cell the proxy vouches for (slash evidence) with the
    /// voucher key: its representation hash.
    pub fn sign_cell_hash(&self, hash: &[u8; 32]) -> [u8; 64] {
        self.signer.sign_cell_hash(hash)
    }

    /// The proxy's voucher key.
    pub fn voucher_key(&self) -> [u8; 32] {
        self.signer.public_key()
    }

    /// The proxy contract vouchers name.
    pub fn contract(&self) -> &StdAddr {
        &self.terms.contract
    }

    /// Submits an operation; resolves once it is durable (or refused).
    pub async fn submit(&self, op: Op) -> Result<Outcome, LedgerError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .as_ref()
            .ok_or(LedgerError::Closed)?
            .send(Job { op, reply })
            .map_err(|_| LedgerError::Closed)?;
        rx.await.map_err(|_| LedgerError::Closed)?
    }

    /// Like [`Ledger::submit`], for callers outside an async runtime.
    pub fn submit_blocking(&self, op: Op) -> Result<Outcome, LedgerError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .as_ref()
            .ok_or(LedgerError::Closed)?
            .send(Job { op, reply })
            .map_err(|_| LedgerError::Closed)?;
        rx.blocking_recv().map_err(|_| LedgerError::Closed)?
    }

    /// A client's account as last committed.
    pub fn client(&self, client: &StdAddr) -> ClientAccount {
        self.lock()
            .clients
            .get(&PartyId::of(client))
            .copied()
            .unwrap_or_default()
    }

    /// A worker's account as last committed.
    pub fn worker(&self, worker: &StdAddr) -> WorkerAccount {
        self.lock()
            .workers
            .get(&PartyId::of(worker))
            .copied()
            .unwrap_or_default()
    }

    /// The ledger's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every client account, as last committed.
    pub fn clients(&self) -> Vec<(StdAddr, ClientAccount)> {
        let st = self.lock();
        st.clients.iter().map(|(k, v)| (k.addr(), *v)).collect()
    }

    /// Every worker account, as last committed.
    pub fn workers(&self) -> Vec<(StdAddr, WorkerAccount)> {
        let st = self.lock();
        st.workers.iter().map(|(k, v)| (k.addr(), *v)).collect()
    }

    /// Sums over the ledger.
    pub fn totals(&self) -> Totals {
        let st = self.lock();
        let mut t = Totals {
            commission: st.commission,
            in_flight: st.requests.len() as u64,
            ..Totals::default()
        };
        let add = |a: Nanoton, b: Nanoton| Nanoton::new(a.get().saturating_add(b.get()));
        for c in st.clients.values() {
            t.charged = add(t.charged, c.charged);
            t.reserved = add(t.reserved, c.reserved);
            t.deposited = add(t.deposited, c.deposited);
        }
        for w in st.workers.values() {
            t.earned = add(t.earned, w.earned);
        }
        t
    }

    /// Transactions committed and operations they carried.
    pub fn commit_stats(&self) -> (u64, u64) {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.committer.take() {
            let _ = t.join();
        }
    }
}

fn load(db: &Database, path: &Path) -> Result<State, LedgerError> {
    let e = |x: &dyn std::fmt::Display| store_err(path, x);
    let tx = db.begin_write().map_err(|x| e(&x))?;
    // Create the tables on first open so reads below find them.
    {
        tx.open_table(CLIENTS).map_err(|x| e(&x))?;
        tx.open_table(WORKERS).map_err(|x| e(&x))?;
        tx.open_table(REQUESTS).map_err(|x| e(&x))?;
        tx.open_table(TOTALS).map_err(|x| e(&x))?;
    }
    tx.commit().map_err(|x| e(&x))?;
    let rx = db.begin_read().map_err(|x| e(&x))?;
    let mut st = State::default();
    let corrupt = |what: &str| store_err(path, format!("corrupt {what} record"));
    for (id, v) in party_rows(&rx, CLIENTS, path)? {
        let a = ClientAccount::decode(&v).ok_or_else(|| corrupt("client"))?;
        st.clients.insert(id, a);
    }
    for (id, v) in party_rows(&rx, WORKERS, path)? {
        let a = WorkerAccount::decode(&v).ok_or_else(|| corrupt("worker"))?;
        st.workers.insert(id, a);
    }
    for row in rx
        .open_table(REQUESTS)
        .map_err(|x| e(&x))?
        .iter()
        .map_err(|x| e(&x))?
    {
        let (k, v) = row.map_err(|x| e(&x))?;
        st.requests.insert(
            k.value().to_owned(),
            InFlight::decode(v.value()).ok_or_else(|| corrupt("request"))?,
        );
    }
    if let Some(c) = rx
        .open_table(TOTALS)
        .map_err(|x| e(&x))?
        .get(COMMISSION)
        .map_err(|x| e(&x))?
    {
        st.commission = Nanoton::new(c.value());
    }
    Ok(st)
}

/// Every row of a table keyed by party, with its raw value.
fn party_rows(
    rx: &redb::ReadTransaction,
    table: TableDefinition<&[u8], &[u8]>,
    path: &Path,
) -> Result<Vec<(PartyId, Vec<u8>)>, LedgerError> {
    let e = |x: &dyn std::fmt::Display| store_err(path, x);
    let mut out = Vec::new();
    for row in rx
        .open_table(table)
        .map_err(|x| e(&x))?
        .iter()
        .map_err(|x| e(&x))?
    {
        let (k, v) = row.map_err(|x| e(&x))?;
        let id = PartyId::from_slice(k.value())
            .ok_or_else(|| store_err(path, format!("corrupt party key in {table}")))?;
        out.push((id, v.value().to_vec()));
    }
    Ok(out)
}

fn write(db: &Database, path: &Path, ov: &Overlay) -> Result<(), LedgerError> {
    let e = |x: &dyn std::fmt::Display| store_err(path, x);
    let tx = db.begin_write().map_err(|x| e(&x))?;
    {
        let mut t = tx.open_table(CLIENTS).map_err(|x| e(&x))?;
        for (k, v) in &ov.clients {
            t.insert(k.0.as_slice(), v.encode().as_slice())
                .map_err(|x| e(&x))?;
        }
        let mut t = tx.open_table(WORKERS).map_err(|x| e(&x))?;
        for (k, v) in &ov.workers {
            t.insert(k.0.as_slice(), v.encode().as_slice())
                .map_err(|x| e(&x))?;
        }
        let mut t = tx.open_table(REQUESTS).map_err(|x| e(&x))?;
        for (k, v) in &ov.requests {
            match v {
                Some(r) => {
                    t.insert(k.as_str(), r.encode().as_slice())
                        .map_err(|x| e(&x))?;
                }
                None => {
                    t.remove(k.as_str()).map_err(|x| e(&x))?;
                }
            }
        }
        if let Some(c) = ov.commission {
            let mut t = tx.open_table(TOTALS).map_err(|x| e(&x))?;
            t.insert(COMMISSION, c.get()).map_err(|x| e(&x))?;
        }
    }
    tx.commit().map_err(|x| e(&x))
}

fn recover(db: &Database, path: &Path, st: &mut State) -> Result<Recovery, LedgerError> {
    let mut rec = Recovery::default();
    if st.requests.is_empty() {
        return Ok(rec);
    }
    let mut ov = Overlay::default();
    let mut ids: Vec<String> = st.requests.keys().cloned().collect();
    ids.sort();
    for id in ids {
        let r = st.requests[&id];
        if r.progress.client > Nanoton::ZERO {
            let u = settle(&mut ov, st, &id, r, r.progress)?;
            rec.settled += 1;
            rec.charged = rec
                .charged
                .checked_add(u.charged.client)
                .map_err(AccountError::from)?;
        } else {
            let mut a = ov.client(st, r.client);
            a.release(r.reserved)?;
            ov.clients.insert(r.client, a);
            ov.requests.insert(id, None);
            rec.released += 1;
        }
    }
    write(db, path, &ov)?;
    ov.merge_into(st);
    Ok(rec)
}

fn expiry(terms: &VoucherTerms) -> u32 {
    u32::try_from(cocoon_core::unix_now().saturating_add(u64::from(terms.ttl_secs)))
        .unwrap_or(u32::MAX)
}

fn sign(
    signer: &VoucherSigner,
    terms: &VoucherTerms,
    u: &Unsigned,
    (for_client, for_worker): (bool, bool),
) -> Result<Settlement, LedgerError> {
    let expires_at = expiry(terms);
    let voucher = |wanted: bool, kind, party: PartyId, total, seqno| {
        wanted
            .then(|| {
                signer.sign(Voucher {
                    kind,
                    contract: terms.contract.clone(),
                    party: party.addr(),
                    total,
                    seqno,
                    expires_at,
                })
            })
            .transpose()
    };
    let client_voucher = match &u.client {
        Some((id, account)) => voucher(
            for_client,
            VoucherKind::Client,
            *id,
            account.charged,
            account.seqno,
        )?,
        None => None,
    };
    let worker = &u.worker;
    let worker_voucher = voucher(
        for_worker,
        VoucherKind::Worker,
        worker.0,
        worker.1.earned,
        worker.1.seqno,
    )?;
    Ok(Settlement {
        charged: u.charged,
        client_voucher,
        worker_voucher,
    })
}

fn commit_loop(
    db: Database,
    path: PathBuf,
    state: Arc<Mutex<State>>,
    stats: Arc<Mutex<(u64, u64)>>,
    rx: std::sync::mpsc::Receiver<Job>,
    signer: Arc<VoucherSigner>,
    terms: VoucherTerms,
) {
    // When the last commit ended, how long it took, and how many
    // operations it carried.
    let mut last: Option<(std::time::Instant, std::time::Duration, usize)> = None;
    while let Ok(first) = rx.recv() {
        // Under concurrent load, wait as long as a commit takes (at most
        // COMMIT_SPACING) before the next, so each gathers more operations:
        // fewer fsyncs and vouchers per request for a little latency. A
        // lone operation is committed at once.
        if let Some((ended, took, n)) = last {
            let gap = took.min(COMMIT_SPACING);
            let since = ended.elapsed();
            if n > 1 && since < gap {
                std::thread::sleep(gap - since);
            }
        }
        let started = std::time::Instant::now();
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        let mut ov = Overlay::default();
        let results: Vec<Result<Applied, LedgerError>> =
            jobs.iter().map(|j| apply(&j.op, &mut ov, &st)).collect();
        let committed = write(&db, &path, &ov);
        if committed.is_ok() {
            ov.merge_into(&mut st);
        }
        drop(st);
        {
            let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
            s.0 += 1;
            s.1 += jobs.len() as u64;
        }
        last = Some((std::time::Instant::now(), started.elapsed(), jobs.len()));
        // Each party's last settlement in the batch gets its voucher.
        let mut last_client: HashMap<PartyId, usize> = HashMap::new();
        let mut last_worker: HashMap<PartyId, usize> = HashMap::new();
        for (i, r) in results.iter().enumerate() {
            if let Ok(Applied::Settled(u)) = r {
                if let Some((client, _)) = &u.client {
                    last_client.insert(*client, i);
                }
                if u.worker_moved {
                    last_worker.insert(u.worker.0, i);
                }
            }
        }
        for (i, (job, result)) in jobs.into_iter().zip(results).enumerate() {
            let answer = match (&committed, result) {
                (Err(e), _) => Err(e.clone()),
                (Ok(()), Err(e)) => Err(e),
                (Ok(()), Ok(Applied::Client(a))) => Ok(Outcome::Client(a)),
                (Ok(()), Ok(Applied::Done)) => Ok(Outcome::Done),
                (Ok(()), Ok(Applied::Settled(u))) => {
                    let which = (
                        u.client.as_ref().is_some_and(|c| last_client[&c.0] == i),
                        u.worker_moved && last_worker[&u.worker.0] == i,
                    );
                    sign(&signer, &terms, &u, which).map(|s| Outcome::Settled(Box::new(s)))
                }
            };
            let _ = job.reply.send(answer);
        }
    }
}
