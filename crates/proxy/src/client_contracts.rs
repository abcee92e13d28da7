//! The proxy and its clients' contracts on chain.
//!
//! - **Deposits**: a client's money is its client contract's, as the chain
//!   reports it. The proxy reads each paying client's contract when it
//!   first appears and then every few seconds, checks that the contract is
//!   one of *this* proxy's (its proxy address and voucher key), and sets
//!   the ledger's deposit to what the contract holds plus what vouchers
//!   already committed.
//! - **Commits**: when a client's charges not yet committed pass a
//!   threshold (by default half its stake: worth the fee, and well inside
//!   what the stake covers), or the client has asked to close (its close
//!   delay runs), the proxy's wallet sends the client's latest voucher to
//!   the contract (`Charge`). One commit per client is in flight at a time;
//!   the contract refuses an old voucher anyway, so nothing is charged twice.
//!
//! Nothing per request touches the chain: the ledger stays the fast path,
//! and when the chain is unreachable the last balances stand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cocoon_chain::registry::ReadError;
use cocoon_chain::views::{self, Lifecycle};
use cocoon_chain::wallet::{Transfer, WalletV5};
use cocoon_chain::{AccountStatus, Chain, Toncenter};
use cocoon_core::Nanoton;
use cocoon_pay::{Ledger, Op};
use tycho_types::models::StdAddr;

/// How often known clients' contracts are read again.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The chain as the proxy's watch of client contracts sees it.
#[derive(Debug, serde::Serialize)]
pub struct ChainFigures {
    /// Seconds since the chain stopped answering; `None` while it answers
    /// (requests are served on the balances last read meanwhile).
    pub unreachable_for_s: Option<u64>,
    /// When it last answered.
    pub last_read_ms_ago: Option<u64>,
    /// Every client contract watched.
    pub clients: Vec<ClientContractFigures>,
}

/// One client contract as last read, beside the ledger's account (nanoton).
#[derive(Debug, serde::Serialize)]
pub struct ClientContractFigures {
    /// Its address.
    pub address: String,
    /// When it was last read; `None`: never yet.
    pub read_ms_ago: Option<u64>,
    /// Open, closing or closed, as last read.
    pub state: Option<&'static str>,
    /// What it holds, booked.
    pub balance: u64,
    /// The client's stake.
    pub stake: u64,
    /// What vouchers committed on chain.
    pub committed: u64,
    /// What the ledger charged.
    pub charged: u64,
    /// Charged and not yet committed.
    pub uncommitted: u64,
    /// Commits sent.
    pub commits: u64,
    /// The last read's failure, if it failed.
    pub last_error: Option<String>,
}

/// What the last read of a client's contract found.
#[derive(Debug, Clone)]
pub struct ContractSeen {
    /// When it was read.
    pub at: Instant,
    /// What the contract holds, booked (not counting its storage reserve).
    pub balance: Nanoton,
    /// What vouchers already committed on chain.
    pub committed: Nanoton,
    /// The seqno of the voucher committed last.
    pub last_seqno: u64,
    /// The stake it keeps.
    pub stake: Nanoton,
    /// Open, closing or closed.
    pub state: Lifecycle,
    /// The wallet that owns the contract (`None` before it exists).
    pub owner: Option<StdAddr>,
}

#[derive(Debug, Default, Clone)]
struct Known {
    seen: Option<ContractSeen>,
    error: Option<String>,
    /// The voucher seqno of a commit sent and not yet seen on chain.
    committing: Option<u64>,
    /// The voucher seqno the client contract last refused, and when: not
    /// sent again (fees for nothing) until a newer voucher or a while.
    refused: Option<(u64, Instant)>,
    /// Commits that reached the chain.
    commits: u64,
}

/// Gas carried with a commit: the client contract's and the proxy
/// contract's; what is left comes back to the proxy's wallet.
const COMMIT_GAS: Nanoton = Nanoton::new(100_000_000);
/// How long a commit's messages may take to land once it is included.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a voucher the contract refused waits before it is tried again
/// (its state may have changed: a top-up, a reopening).
const REFUSED_RETRY: Duration = Duration::from_secs(600);

/// How the proxy commits vouchers.
#[derive(Clone)]
pub struct Committer {
    /// The proxy operator's wallet, which pays the commits' fees.
    pub wallet: Arc<WalletV5>,
    /// Commit when charges not yet committed pass this, or half of what
    /// the client's contract guarantees (its stake, or its balance when
    /// lower) if that is less.
    pub above: Option<Nanoton>,
}

/// Reads client contracts and keeps the ledger's deposits in step.
pub struct ClientContracts {
    pub(crate) chain: Arc<Toncenter>,
    pub(crate) contract: StdAddr,
    key: [u8; 32],
    ledger: Arc<Ledger>,
    known: Mutex<HashMap<StdAddr, Known>>,
    committer: Option<Committer>,
    /// The network's global id, which wallet addresses depend on.
    pub(crate) global_id: i32,
    /// Since when the chain has not answered (`None`: it answers), and
    /// when it last did.
    health: Mutex<(Option<Instant>, Option<Instant>)>,
}

impl std::fmt::Debug for ClientContracts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientContracts")
            .field("contract", &self.contract)
            .finish()
    }
}

/// Why a commit did not complete.
#[derive(Debug, thiserror::Error)]
enum CommitError {
    /// The message could not be built.
    #[error("building the commit: {0}")]
    Build(String),
    /// Sending it failed or was refused.
    #[error(transparent)]
    Send(OperatorSendError),
}

/// Why the operator's wallet could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum OperatorSendError {
    /// The proxy runs without an operator wallet.
    #[error("this proxy has no operator wallet")]
    NoWallet,
    /// The wallet's request failed, or was refused on chain.
    #[error(transparent)]
    Send(#[from] cocoon_chain::SendError),
}

/// Why a request may not spend from the contract it names.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PayerError {
    /// The contract's owner is not known (never read from the chain).
    #[error("{0}")]
    Unknown(String),
    /// The request's proof does not show its signer owns the contract.
    #[error("{0}")]
    Refused(String),
}

/// Why a client's contract does not count as a deposit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DepositError {
    /// The chain could not be read.
    #[error("the chain: {0}")]
    Chain(#[from] cocoon_chain::ChainError),
    /// The address holds something other than a client contract.
    #[error("{address} is not a client contract: {source}")]
    Unreadable {
        /// The address.
        address: String,
        /// What its get-method answered.
        source: Box<ReadError>,
    },
    /// A client contract of another proxy contract.
    #[error("{address} is not a client contract of this proxy: it belongs to proxy contract {found}, this proxy is {ours}")]
    OtherProxy {
        /// The address.
        address: String,
        /// The proxy contract it names.
        found: String,
        /// This proxy's.
        ours: String,
    },
    /// A client contract checking vouchers with another key.
    #[error(
        "{0} is not a client contract of this proxy: its proxy key is not this proxy's voucher key"
    )]
    OtherKey(String),
}

impl ClientContracts {
    /// Watches client contracts of the proxy contract `contract` whose
    /// voucher key is `key`.
    pub fn new(
        chain: Arc<Toncenter>,
        contract: StdAddr,
        key: [u8; 32],
        ledger: Arc<Ledger>,
    ) -> Self {
        ClientContracts {
            chain,
            contract,
            key,
            ledger,
            known: Mutex::new(HashMap::new()),
            committer: None,
            global_id: cocoon_chain::wallet::network::MAINNET,
            health: Mutex::new((None, None)),
        }
    }

    /// Checks that the sender of request `request_id` may spend from
    /// `client`: `signature` by `key` over the payer message, and `key`'s
    /// wallet (W5R1 on this network) owns the contract. Without this, any
    /// client could name another's contract and spend its money. Fails
    /// closed: a contract never read from the chain (a restart while the
    /// chain is unreachable) has no known owner, so nothing is served on it.
    pub fn authorize(
        &self,
        client: &StdAddr,
        request_id: &str,
        key: &[u8],
        signature: &[u8],
    ) -> Result<(), PayerError> {
        let (seen, error) = match self.known().get(client) {
            Some(k) => (k.seen.clone(), k.error.clone()),
            None => (None, None),
        };
        let Some(seen) = seen else {
            return Err(PayerError::Unknown(format!(
                "client contract {client} has not been read from the chain yet ({}), so who may spend from it is unknown; nothing is served on it until it is",
                error.unwrap_or_else(|| "no answer yet".into())
            )));
        };
        // Read, and no contract there: nothing to spend; the ledger holds a
        // zero deposit for it and the reservation says so (402).
        let Some(owner) = seen.owner else {
            return Ok(());
        };
        let refused = PayerError::Refused;
        let key: [u8; 32] = key.try_into().map_err(|_| {
            refused(format!("the request carries no payer proof for {client}: a client on a chain signs each request with the wallet that owns its contract"))
        })?;
        if !cocoon_chain::wallet::verify_payer(&key, signature, request_id, client) {
            return Err(refused(format!(
                "the payer signature for {client} does not verify"
            )));
        }
        let signer = cocoon_chain::WalletV5::address_of_key(&key, self.global_id)
            .map_err(|e| refused(e.to_string()))?;
        if signer != owner {
            return Err(refused(format!(
                "the request is signed by wallet {signer}, but {client} belongs to {owner}"
            )));
        }
        Ok(())
    }

    /// The wallet that owns `client`'s contract, as last read.
    pub fn owner_of(&self, client: &StdAddr) -> Option<StdAddr> {
        self.known()
            .get(client)
            .and_then(|k| k.seen.as_ref())
            .and_then(|s| s.owner.clone())
    }

    /// Sends `body` with `value` to `to` from the operator's wallet (slash
    /// evidence, the reputation digest, commits) and follows it until every
    /// message it caused has landed; fails when the proxy has no wallet, or
    /// with what the chain shows when anything was refused.
    pub async fn operator_send(
        &self,
        to: StdAddr,
        body: tycho_types::cell::Cell,
        value: Nanoton,
        timeout: Duration,
    ) -> Result<cocoon_chain::Delivery, OperatorSendError> {
        let c = self.committer.as_ref().ok_or(OperatorSendError::NoWallet)?;
        let t = Transfer {
            to,
            value,
            bounce: true,
            body: Some(body),
            init: None,
        };
        Ok(c.wallet.send(self.chain.as_ref(), &[t], timeout).await?)
    }

    /// The proxy contract this watcher serves.
    pub fn proxy_contract(&self) -> &StdAddr {
        &self.contract
    }

    /// Wallet addresses are those of the network with `global_id` (default:
    /// mainnet's, which the devnet shares).
    pub fn on_network(mut self, global_id: i32) -> Self {
        self.global_id = global_id;
        self
    }

    /// Also commits vouchers, with this wallet, above this threshold.
    pub fn with_committer(mut self, committer: Committer) -> Self {
        self.committer = Some(committer);
        self
    }

    /// Commits `client`'s latest voucher if it is due; returns whether a
    /// commit was sent and applied.
    pub async fn commit_if_due(&self, client: &StdAddr) -> bool {
        let Some((voucher, uncommitted, closing)) = self.due_commit(client) else {
            return false;
        };
        // Checked and marked under one lock: one commit per client in flight.
        {
            let mut known = self.known();
            let k = known.entry(client.clone()).or_default();
            if k.committing.is_some() {
                return false;
            }
            k.committing = Some(voucher.voucher.seqno);
        }
        let seqno = voucher.voucher.seqno;
        let (ok, refused) = match self.send_commit(client, &voucher).await {
            Ok(d) => {
                tracing::info!(%client, total = %voucher.voucher.total, seqno, %uncommitted, closing, fees = %d.fees(), "client voucher committed on chain");
                (true, false)
            }
            Err(CommitError::Send(OperatorSendError::Send(
                e @ cocoon_chain::SendError::Refused { .. },
            ))) => {
                tracing::warn!(%client, seqno, error = %e, "the client contract refused the voucher; not sent again for a while");
                (false, true)
            }
            Err(e) => {
                tracing::warn!(%client, seqno, error = %e, "committing the client's voucher did not complete; will try again");
                (false, false)
            }
        };
        {
            let mut known = self.known();
            let k = known.entry(client.clone()).or_default();
            k.committing = None;
            if ok {
                k.commits += 1;
            }
            if refused {
                k.refused = Some((seqno, Instant::now()));
            }
        }
        let _ = self.sync(client).await;
        ok
    }

    /// `client`'s latest voucher, if a commit is due: nothing in flight,
    /// not refused lately, accepted by the contract's own checks (a commit
    /// it would refuse costs fees for nothing), and either the charges not
    /// yet committed pass the threshold or the client is closing. With
    /// them, and whether it is closing.
    fn due_commit(&self, client: &StdAddr) -> Option<(cocoon_pay::SignedVoucher, Nanoton, bool)> {
        let c = self.committer.as_ref()?;
        let voucher = self.ledger.client_voucher(client)?;
        let (seen, in_flight, refused) = {
            let known = self.known();
            let k = known.get(client)?;
            (k.seen.clone()?, k.committing, k.refused)
        };
        if in_flight.is_some()
            || refused.is_some_and(|(seqno, at)| {
                seqno == voucher.voucher.seqno && at.elapsed() < REFUSED_RETRY
            })
        {
            return None;
        }
        let committed = cocoon_pay::voucher::Committed {
            total: seen.committed,
            seqno: seen.last_seqno,
        };
        let uncommitted = match voucher
            .voucher
            .check_commit(&committed, cocoon_core::unix_now())
        {
            Ok(increase) => increase,
            Err(cocoon_pay::VoucherError::NotAboveCommitted { .. }) => return None,
            Err(e) => {
                tracing::warn!(%client, error = %e, "the client's latest voucher cannot be committed");
                return None;
            }
        };
        // Half of what the contract guarantees at the latest (or earlier,
        // as configured): the ledger serves up to all of it, so the commit
        // lands while half is still left.
        let half = Nanoton::new(seen.balance.min(seen.stake).get() / 2);
        let threshold = c.above.map_or(half, |above| above.min(half));
        let closing = seen.state == Lifecycle::Closing;
        (uncommitted > threshold || closing).then_some((voucher, uncommitted, closing))
    }

    /// Sends `voucher` to `client`'s contract (`Charge`) and follows it
    /// until the charge has reached the proxy contract.
    async fn send_commit(
        &self,
        client: &StdAddr,
        voucher: &cocoon_pay::SignedVoucher,
    ) -> Result<cocoon_chain::Delivery, CommitError> {
        let build = |e: String| CommitError::Build(e);
        let boc = voucher.to_boc().map_err(|e| build(e.to_string()))?;
        let cell = tycho_types::boc::Boc::decode(boc).map_err(|e| build(e.to_string()))?;
        let body = cocoon_chain::contracts::charge(cocoon_core::unix_now(), cell)
            .map_err(|e| build(e.to_string()))?;
        self.operator_send(client.clone(), body, COMMIT_GAS, COMMIT_TIMEOUT)
            .await
            .map_err(CommitError::Send)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<StdAddr, Known>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes sure `client` has been read at least once (the first request
    /// of a new client waits for it; later ones do not).
    pub async fn ensure(&self, client: &StdAddr) {
        let fresh = self.known().get(client).is_some_and(|k| k.seen.is_some());
        if !fresh {
            self.known().entry(client.clone()).or_default();
            if let Err(e) = self.sync(client).await {
                tracing::warn!(%client, error = %e, "client deposit not read from the chain");
            }
        }
    }

    /// Reads `client`'s contract and updates the ledger.
    pub async fn sync(&self, client: &StdAddr) -> Result<ContractSeen, DepositError> {
        let result = self.read(client).await;
        match &result {
            Ok(seen) => {
                let op = Op::SyncDeposit {
                    client: client.clone(),
                    deposited: seen
                        .balance
                        .checked_add(seen.committed)
                        .unwrap_or(seen.balance),
                    stake: seen.stake,
                    committed: seen.committed,
                    status: match seen.state {
                        Lifecycle::Open => cocoon_pay::AccountStatus::Active,
                        Lifecycle::Closing => cocoon_pay::AccountStatus::Closing,
                        Lifecycle::Closed => cocoon_pay::AccountStatus::Closed,
                    },
                };
                if let Err(e) = self.ledger.submit(op).await {
                    tracing::warn!(%client, error = %e, "the ledger refused the chain's deposit");
                }
                let mut known = self.known();
                let k = known.entry(client.clone()).or_default();
                let changed = k.seen.as_ref().map(|s| (s.balance, s.committed))
                    != Some((seen.balance, seen.committed));
                if changed {
                    tracing::info!(%client, balance = %seen.balance, committed = %seen.committed, "client deposit on chain");
                }
                k.seen = Some(seen.clone());
                k.error = None;
            }
            Err(e) => {
                self.known().entry(client.clone()).or_default().error = Some(e.to_string());
            }
        }
        result
    }

    async fn read(&self, client: &StdAddr) -> Result<ContractSeen, DepositError> {
        let account = self.chain.account(client).await?;
        if account.status != AccountStatus::Active {
            return Ok(ContractSeen {
                at: Instant::now(),
                balance: Nanoton::ZERO,
                committed: Nanoton::ZERO,
                last_seqno: 0,
                stake: Nanoton::ZERO,
                state: Lifecycle::Open,
                owner: None,
            });
        }
        let data = match views::client_data(self.chain.as_ref(), client).await {
            Ok(data) => data,
            Err(ReadError::Chain(e)) => return Err(DepositError::Chain(e)),
            Err(other) => {
                return Err(DepositError::Unreadable {
                    address: client.to_string(),
                    source: Box::new(other),
                })
            }
        };
        if data.proxy != self.contract {
            return Err(DepositError::OtherProxy {
                address: client.to_string(),
                found: data.proxy.to_string(),
                ours: self.contract.to_string(),
            });
        }
        if data.proxy_key.0 != self.key {
            return Err(DepositError::OtherKey(client.to_string()));
        }
        Ok(ContractSeen {
            at: Instant::now(),
            balance: data.balance,
            committed: data.committed,
            last_seqno: data.last_seqno,
            stake: data.stake,
            state: data.state,
            owner: Some(data.owner),
        })
    }

    /// Reads every known client's contract again, every [`POLL_INTERVAL`],
    /// until `stop` turns true.
    pub async fn poll(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        self.watch_ledger_clients();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = stop.changed() => return,
            }
            let clients: Vec<StdAddr> = self.known().keys().cloned().collect();
            for c in clients {
                match self.sync(&c).await {
                    Ok(_) => {
                        self.chain_answered();
                        // A commit waits for its messages to land: it must
                        // not hold up reading (and committing) the others.
                        // The in-flight mark keeps it one per client.
                        if self.due_commit(&c).is_some() {
                            let me = self.clone();
                            tokio::spawn(async move { me.commit_if_due(&c).await });
                        }
                    }
                    Err(DepositError::Chain(e)) => self.chain_failed(&e.to_string()),
                    Err(_) => {}
                }
            }
        }
    }

    /// Watches every client the ledger holds a contract-backed account
    /// for: a client that never comes back after a restart still has its
    /// charges committed, before its close delay runs out.
    fn watch_ledger_clients(&self) {
        let mut known = self.known();
        let mut added = 0;
        for (client, account) in self.ledger.clients() {
            if matches!(account.backing, cocoon_pay::Backing::Contract { .. })
                && !known.contains_key(&client)
            {
                known.insert(client, Known::default());
                added += 1;
            }
        }
        if added > 0 {
            tracing::info!(clients = added, "watching the ledger's client contracts");
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, (Option<Instant>, Option<Instant>)> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long the chain has not answered, during an outage.
    pub fn outage(&self) -> Option<Duration> {
        self.health().0.map(|since| since.elapsed())
    }

    /// Logged once per outage: requests go on being served on the balances
    /// last read, each client up to what its contract guarantees.
    fn chain_failed(&self, error: &str) {
        let mut h = self.health();
        if h.0.is_none() {
            h.0 = Some(Instant::now());
            let age =
                h.1.map(|t| format!("{:.0?}", t.elapsed()))
                    .unwrap_or_else(|| "never".into());
            tracing::warn!(%error, last_read = %age, "the chain is unreachable: serving on the balances last read, each client up to its contract's stake");
        }
    }

    fn chain_answered(&self) {
        let mut h = self.health();
        if let Some(since) = h.0.take() {
            tracing::info!(outage = ?since.elapsed(), "the chain answers again: catching up");
        }
        h.1 = Some(Instant::now());
    }

    /// What the watch knows now, for `/jsonstats`.
    pub fn figures(&self) -> ChainFigures {
        let known = self.known();
        let clients = known
            .iter()
            .map(|(addr, k)| {
                let charged = self.ledger.client(addr).charged;
                let seen = k.seen.as_ref();
                let n = |f: fn(&ContractSeen) -> Nanoton| seen.map_or(0, |s| f(s).get());
                ClientContractFigures {
                    address: addr.to_string(),
                    read_ms_ago: seen.map(|s| s.at.elapsed().as_millis() as u64),
                    state: seen.map(|s| s.state.as_str()),
                    balance: n(|s| s.balance),
                    stake: n(|s| s.stake),
                    committed: n(|s| s.committed),
                    charged: charged.get(),
                    uncommitted: charged
                        .saturating_sub(seen.map_or(Nanoton::ZERO, |s| s.committed))
                        .get(),
                    commits: k.commits,
                    last_error: k.error.clone(),
                }
            })
            .collect();
        drop(known);
        let (down, last) = *self.health();
        ChainFigures {
            unreachable_for_s: down.map(|since| since.elapsed().as_secs()),
            last_read_ms_ago: last.map(|t| t.elapsed().as_millis() as u64),
            clients,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watcher(name: &str) -> (ClientContracts, Arc<Ledger>) {
        let dir = std::env::temp_dir().join(format!(
            "cocoon-client-contracts-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let proxy: StdAddr = "0:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
            .parse()
            .unwrap();
        let (ledger, _) = Ledger::open(
            &dir.join("ledger.redb"),
            cocoon_pay::VoucherSigner::from_seed(&[3; 32]).unwrap(),
            cocoon_pay::VoucherTerms {
                contract: proxy.clone(),
                ttl_secs: 86_400,
            },
        )
        .unwrap();
        let ledger = Arc::new(ledger);
        // Never called: an endpoint nothing listens on.
        let chain = Toncenter::new(cocoon_chain::ToncenterConfig::single(
            "http://127.0.0.1:9/api/v2",
        ))
        .unwrap();
        let watcher = ClientContracts::new(Arc::new(chain), proxy, [0; 32], ledger.clone());
        (watcher, ledger)
    }

    /// After a restart with the chain unreachable, a contract the ledger
    /// knows but the proxy has not read has no known owner: whoever names
    /// it spends nothing, and is told why.
    #[tokio::test]
    async fn the_payer_check_fails_closed_on_a_contract_never_read() {
        let (watcher, ledger) = watcher("closed");
        let client: StdAddr = "0:1111111111111111111111111111111111111111111111111111111111111111"
            .parse()
            .unwrap();
        ledger
            .submit(Op::SyncDeposit {
                client: client.clone(),
                deposited: Nanoton::new(5_000_000_000),
                stake: Nanoton::new(1_000_000_000),
                committed: Nanoton::ZERO,
                status: cocoon_pay::AccountStatus::Active,
            })
            .await
            .unwrap();
        let err = watcher
            .authorize(&client, "r1", &[7; 32], &[0; 64])
            .unwrap_err();
        assert!(
            matches!(&err, PayerError::Unknown(why) if why.contains("has not been read from the chain")),
            "{err}"
        );
        // Started again, the proxy watches every contract its ledger holds,
        // dev deposits aside, so a client who never returns is still
        // committed before its close delay runs out.
        let dev: StdAddr = "0:2222222222222222222222222222222222222222222222222222222222222222"
            .parse()
            .unwrap();
        ledger
            .submit(Op::Deposit {
                client: dev.clone(),
                amount: Nanoton::new(1),
            })
            .await
            .unwrap();
        watcher.watch_ledger_clients();
        let watched: Vec<StdAddr> = watcher.known().keys().cloned().collect();
        assert_eq!(watched, vec![client]);
    }
}
