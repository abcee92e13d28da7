//! Node wallets: the standard wallet v5 (W5R1), driven by a node's Ed25519
//! key, with its code byte for byte as `@ton/ton` ships it
//! (`contracts/build/WalletV5R1.json`). The same key in a consumer TON
//! wallet app opens the same wallet at the same address.
//!
//! Keys come from a 32-byte seed or a TON mnemonic (24 words, TON's own
//! derivation, not BIP-39's).

use cocoon_core::Nanoton;
use ring::signature::{Ed25519KeyPair, KeyPair};
use tycho_types::cell::{Cell, CellBuilder, CellFamily, HashBytes};
use tycho_types::models::{
    CurrencyCollection, ExtInMsgInfo, IntAddr, Message, MsgInfo, RelaxedIntMsgInfo, RelaxedMessage,
    RelaxedMsgInfo, StateInit, StdAddr,
};
use tycho_types::num::Tokens;

use crate::artifacts::{ArtifactError, ContractKind};

/// The network global ids W5 binds its wallet id to.
pub mod network {
    /// TON mainnet.
    pub const MAINNET: i32 = -239;
    /// TON testnet.
    pub const TESTNET: i32 = -3;
}

/// `sign` in ASCII: a W5 request signed for an external message.
const AUTH_SIGNED_EXTERNAL: u32 = 0x7369_676e;
/// `action_send_msg` in TL-B.
const ACTION_SEND_MSG: u32 = 0x0ec3_c86d;
/// Send modes.
const PAY_FEES_SEPARATELY: u8 = 1;
const IGNORE_ERRORS: u8 = 2;
/// The most messages one W5 request may carry.
pub const MAX_MESSAGES: usize = 255;

/// What went wrong with a key or a transfer.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The mnemonic is not 24 words of a TON mnemonic.
    #[error("not a TON mnemonic: {0}")]
    Mnemonic(String),
    /// The key could not be used.
    #[error("the wallet key: {0}")]
    Key(String),
    /// The wallet code artifact failed to load.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// A message could not be built.
    #[error("building the transfer: {0}")]
    Build(String),
}

/// An Ed25519 key that signs for a wallet.
pub struct WalletKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for WalletKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WalletKey({})", HashBytes(self.public_key()))
    }
}

impl WalletKey {
    /// The key of a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, WalletError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| WalletError::Key(e.to_string()))?;
        Ok(WalletKey { pair })
    }

    /// The key in a PKCS#8 document (as nodes keep their keys on disk).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, WalletError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|e| WalletError::Key(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        Ok(WalletKey { pair })
    }

    /// The key of a TON mnemonic (24 words, no password), derived as TON's
    /// wallets do: entropy = HMAC-SHA512(words, ""), seed = PBKDF2-SHA512
    /// (entropy, "TON default seed", 100 000), key = seed's first 32 bytes.
    pub fn from_mnemonic(phrase: &str) -> Result<Self, WalletError> {
        let words: Vec<String> = phrase.split_whitespace().map(str::to_lowercase).collect();
        if words.len() != 24 {
            return Err(WalletError::Mnemonic(format!(
                "{} words, a TON mnemonic has 24",
                words.len()
            )));
        }
        if let Some(w) = words.iter().find(|w| !crate::mnemonic::is_word(w)) {
            return Err(WalletError::Mnemonic(format!(
                "{w:?} is not a word of the mnemonic word list (BIP-39 English)"
            )));
        }
        let joined = words.join(" ");
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA512, joined.as_bytes()),
            b"",
        );
        let entropy = mac.as_ref();
        // TON's check that the words form a mnemonic without a password:
        // one in 256 random phrases passes, so a mistyped word is caught.
        let mut version = [0u8; 64];
        pbkdf2(entropy, b"TON seed version", 100_000 / 256, &mut version);
        if version[0] != 0 {
            return Err(WalletError::Mnemonic(
                "the words do not form a TON mnemonic (a mistyped or missing word?)".into(),
            ));
        }
        let mut seed = [0u8; 64];
        pbkdf2(entropy, b"TON default seed", 100_000, &mut seed);
        let mut first = [0u8; 32];
        first.copy_from_slice(&seed[..32]);
        Self::from_seed(&first)
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.pair.public_key().as_ref());
        k
    }

    /// Signs that the holder of this key pays for request `request_id` from
    /// `payer` (its client contract): see [`payer_message`].
    pub fn sign_payer(&self, request_id: &str, payer: &StdAddr) -> [u8; 64] {
        let mut s = [0u8; 64];
        s.copy_from_slice(self.pair.sign(&payer_message(request_id, payer)).as_ref());
        s
    }

    /// Signs that this key's wallet, owner of `contract` (its worker
    /// contract), lets the worker of the certificate with SHA-256
    /// `certificate_sha256` earn and stake through it: see
    /// [`worker_owner_message`].
    pub fn sign_worker_owner(&self, certificate_sha256: &[u8; 32], contract: &StdAddr) -> [u8; 64] {
        let mut s = [0u8; 64];
        s.copy_from_slice(
            self.pair
                .sign(&worker_owner_message(certificate_sha256, contract))
                .as_ref(),
        );
        s
    }

    fn sign(&self, hash: &HashBytes) -> [u8; 64] {
        let mut s = [0u8; 64];
        s.copy_from_slice(self.pair.sign(hash.as_slice()).as_ref());
        s
    }
}

/// What a client's wallet signs to spend from its client contract on one
/// request: a domain, the request id, and the contract's address. A proxy
/// accepts a payer only with this signature by the contract's owner.
pub fn payer_message(request_id: &str, payer: &StdAddr) -> Vec<u8> {
    let mut m = b"cocoon/payer/v1\0".to_vec();
    m.extend_from_slice(request_id.as_bytes());
    m.push(0);
    m.push(payer.workchain as u8);
    m.extend_from_slice(payer.address.as_slice());
    m
}

/// Checks a payer signature (see [`payer_message`]).
pub fn verify_payer(key: &[u8], signature: &[u8], request_id: &str, payer: &StdAddr) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
        .verify(&payer_message(request_id, payer), signature)
        .is_ok()
}

/// What a worker contract's owner signs to let one worker certificate earn
/// and answer through it: a domain, the SHA-256 of the worker's RA-TLS
/// certificate and the contract's address. A proxy admits a worker naming a
/// worker contract only with this signature by the contract's owner, so no
/// worker can put another owner's stake behind its answers.
pub fn worker_owner_message(certificate_sha256: &[u8; 32], contract: &StdAddr) -> Vec<u8> {
    let mut m = b"cocoon/worker-owner/v1\0".to_vec();
    m.extend_from_slice(certificate_sha256);
    m.push(contract.workchain as u8);
    m.extend_from_slice(contract.address.as_slice());
    m
}

/// Checks a worker owner signature (see [`worker_owner_message`]).
pub fn verify_worker_owner(
    key: &[u8],
    signature: &[u8],
    certificate_sha256: &[u8; 32],
    contract: &StdAddr,
) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
        .verify(
            &worker_owner_message(certificate_sha256, contract),
            signature,
        )
        .is_ok()
}

fn pbkdf2(secret: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    let n = std::num::NonZeroU32::new(iterations.max(1)).expect("at least one iteration");
    ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA512, n, salt, secret, out);
}

/// One message a wallet sends.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// The destination.
    pub to: StdAddr,
    /// Nanotons to carry.
    pub value: Nanoton,
    /// Whether it bounces back if the destination fails.
    pub bounce: bool,
    /// The body (empty when `None`).
    pub body: Option<Cell>,
    /// A state init, to deploy the destination.
    pub init: Option<StateInit>,
}

/// A W5R1 wallet of one key on one network.
#[derive(Debug)]
pub struct WalletV5 {
    key: WalletKey,
    wallet_id: i32,
    code: Cell,
    /// Requests go one at a time: never two in flight with one seqno.
    queue: tokio::sync::Mutex<()>,
}

impl WalletV5 {
    /// The basechain wallet of `key` (subwallet 0) on the network with
    /// `network_global_id` (see [`network`]; the devnet reports its own).
    pub fn new(key: WalletKey, network_global_id: i32) -> Result<Self, WalletError> {
        // The client context: 1 bit set, workchain, version 0, subwallet 0.
        let context: i32 = (1u32 << 31) as i32;
        let code = ContractKind::WalletV5R1.code()?.code;
        Ok(WalletV5 {
            key,
            wallet_id: network_global_id ^ context,
            code,
            queue: tokio::sync::Mutex::new(()),
        })
    }

    /// The wallet id stored in the wallet and in every request.
    pub fn wallet_id(&self) -> i32 {
        self.wallet_id
    }

    /// The signing key.
    pub fn key(&self) -> &WalletKey {
        &self.key
    }

    /// The address of the W5R1 wallet of `public_key` on the network with
    /// `network_global_id` (as [`WalletV5::new`] would give it).
    pub fn address_of_key(
        public_key: &[u8; 32],
        network_global_id: i32,
    ) -> Result<StdAddr, WalletError> {
        let code = ContractKind::WalletV5R1.code()?.code;
        let wallet_id = network_global_id ^ ((1u32 << 31) as i32);
        let init = w5_state_init(code, wallet_id, public_key);
        let cell = CellBuilder::build_from(init).map_err(|e| WalletError::Build(e.to_string()))?;
        Ok(StdAddr::new(0, *cell.repr_hash()))
    }

    /// The wallet's initial state: code and data with seqno 0.
    pub fn state_init(&self) -> StateInit {
        w5_state_init(self.code.clone(), self.wallet_id, &self.key.public_key())
    }
}

fn w5_state_init(code: Cell, wallet_id: i32, public_key: &[u8; 32]) -> StateInit {
    let mut b = CellBuilder::new();
    let data = (|| {
        b.store_bit_one()?; // signatures allowed
        b.store_u32(0)?; // seqno
        b.store_u32(wallet_id as u32)?;
        b.store_raw(public_key, 256)?;
        b.store_bit_zero()?; // no extensions
        b.build()
    })()
    .expect("W5 data always fits a cell");
    crate::contracts::state_init(code, data)
}

impl WalletV5 {
    /// The wallet's address.
    pub fn address(&self) -> StdAddr {
        let cell =
            CellBuilder::build_from(self.state_init()).expect("a state init always serialises");
        StdAddr::new(0, *cell.repr_hash())
    }

    /// A signed external message that sends `transfers` (each with mode
    /// "pay fees separately, ignore errors", as W5 requires of external
    /// requests), valid until `valid_until`. With `deploy`, the message
    /// carries the wallet's state init (its first use).
    pub fn transfer(
        &self,
        seqno: u32,
        valid_until: u32,
        transfers: &[Transfer],
        deploy: bool,
    ) -> Result<Cell, WalletError> {
        if transfers.is_empty() || transfers.len() > MAX_MESSAGES {
            return Err(WalletError::Build(format!(
                "{} messages; one request carries 1 to {MAX_MESSAGES}",
                transfers.len()
            )));
        }
        let err = |e: tycho_types::error::Error| WalletError::Build(e.to_string());
        // out_list$_ prev:^(OutList n) action:OutAction, the first action innermost.
        let mut list = Cell::empty_cell();
        for t in transfers {
            let msg = relaxed_message(t).map_err(err)?;
            let mut b = CellBuilder::new();
            b.store_reference(list).map_err(err)?;
            b.store_u32(ACTION_SEND_MSG).map_err(err)?;
            b.store_u8(PAY_FEES_SEPARATELY | IGNORE_ERRORS)
                .map_err(err)?;
            b.store_reference(msg).map_err(err)?;
            list = b.build().map_err(err)?;
        }
        let mut request = CellBuilder::new();
        request.store_u32(AUTH_SIGNED_EXTERNAL).map_err(err)?;
        request.store_u32(self.wallet_id as u32).map_err(err)?;
        request.store_u32(valid_until).map_err(err)?;
        request.store_u32(seqno).map_err(err)?;
        request.store_bit_one().map_err(err)?; // Maybe ^OutList: present
        request.store_reference(list).map_err(err)?;
        request.store_bit_zero().map_err(err)?; // no extended actions
        let unsigned = request.clone().build().map_err(err)?;
        let signature = self.key.sign(unsigned.repr_hash());
        request.store_raw(&signature, 512).map_err(err)?;
        let body = request.build().map_err(err)?;

        CellBuilder::build_from(Message {
            info: MsgInfo::ExtIn(ExtInMsgInfo {
                src: None,
                dst: IntAddr::Std(self.address()),
                import_fee: Tokens::ZERO,
            }),
            init: deploy.then(|| self.state_init()),
            body: body.as_slice().map_err(err)?,
            layout: None,
        })
        .map_err(err)
    }
}

fn relaxed_message(t: &Transfer) -> Result<Cell, tycho_types::error::Error> {
    let body = t.body.clone().unwrap_or_else(Cell::empty_cell);
    let info = RelaxedIntMsgInfo {
        ihr_disabled: true,
        bounce: t.bounce,
        bounced: false,
        src: None,
        dst: IntAddr::Std(t.to.clone()),
        value: CurrencyCollection::new(u128::from(t.value.get())),
        extra_flags: Default::default(),
        fwd_fee: Tokens::ZERO,
        created_lt: 0,
        created_at: 0,
    };
    CellBuilder::build_from(RelaxedMessage {
        info: RelaxedMsgInfo::Int(info),
        init: t.init.clone(),
        body: body.as_slice()?,
        layout: None,
    })
}

/// Why a wallet could not send, or what is known of a request that was.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The chain could not be reached or refused the message outright:
    /// nothing was sent.
    #[error(transparent)]
    Chain(#[from] crate::chain::ChainError),
    /// The message could not be built.
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// The wallet cannot cover what it was asked to send.
    #[error("wallet {address} holds {balance}, the transfer needs {needed} plus fees")]
    Insufficient {
        /// The wallet.
        address: StdAddr,
        /// What it holds.
        balance: Nanoton,
        /// What the transfers carry.
        needed: Nanoton,
    },
    /// The wallet has no transaction for the request and never will: its
    /// `valid_until` passed, or another request (another process with this
    /// wallet's key) used its seqno. Nothing moved; it can be sent again.
    #[error("wallet {address}: request {seqno} was never included ({why}); nothing moved, it can be sent again")]
    NotIncluded {
        /// The wallet.
        address: StdAddr,
        /// The request's seqno.
        seqno: u32,
        /// The proof.
        why: NeverIncluded,
    },
    /// The request was included, and a transaction it caused failed: what
    /// was asked was refused there, and the value it carried bounced back
    /// (less fees).
    #[error("wallet {address}: request {seqno} was included, but {what}")]
    Refused {
        /// The wallet.
        address: StdAddr,
        /// The request's seqno.
        seqno: u32,
        /// Which transaction failed and how.
        what: String,
        /// What the chain shows of it, every transaction found.
        trace: Vec<crate::trace::Landed>,
    },
    /// The request was sent, and the chain could not be read long enough
    /// to know whether it was included: it may still have moved money. Do
    /// not send it again before the wallet's transactions say.
    #[error("wallet {address}: request {seqno} was sent; whether it was included is unknown ({reason}); check the wallet's transactions before sending it again")]
    Unknown {
        /// The wallet.
        address: StdAddr,
        /// The request's seqno.
        seqno: u32,
        /// Why it is not known.
        reason: String,
    },
    /// The request was included, but not every message it caused had landed
    /// within the time given: it may still complete. Nothing is known to
    /// have failed.
    #[error("wallet {address}: request {seqno} was included; its effects are not all on chain yet: {reason}")]
    Unsettled {
        /// The wallet.
        address: StdAddr,
        /// The request's seqno.
        seqno: u32,
        /// What is missing.
        reason: String,
    },
}

/// How a request is known never to be included.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NeverIncluded {
    /// The chain's time passed its `valid_until` without it.
    #[error("it expired at {valid_until} and the chain's time is {chain_time}")]
    Expired {
        /// When it expired.
        valid_until: u32,
        /// The chain's time when it was last looked for.
        chain_time: u32,
    },
    /// The wallet's seqno moved past it without it: another request with
    /// this key (another process) used its seqno.
    #[error("the wallet's seqno is already {now}: another request with this key used it")]
    SeqnoTaken {
        /// The wallet's seqno.
        now: u32,
    },
}

/// How many times a request whose seqno another request took is signed
/// again with the next one.
const SEQNO_RETRIES: usize = 3;

/// What a request did on chain: the wallet's transaction, then every
/// transaction its messages caused, all found by message hash.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The request's seqno.
    pub seqno: u32,
    /// The transactions, the wallet's first.
    pub trace: Vec<crate::trace::Landed>,
}

impl Delivery {
    /// What the request cost in fees: every transaction's total, and the
    /// forwarding fee each internal message paid on its way.
    pub fn fees(&self) -> Nanoton {
        Nanoton::new(self.trace.iter().map(|t| t.fees + t.in_fwd_fee).sum())
    }

    /// The storage fees the accounts other than the sending wallet
    /// collected from themselves along the way: a contract whose reserve
    /// they wore down refills it from the message (so the sender pays
    /// them), one with room to spare does not.
    pub fn others_storage_fees(&self) -> Nanoton {
        let wallet = &self.trace[0].account;
        Nanoton::new(
            self.trace
                .iter()
                .filter(|t| &t.account != wallet)
                .map(|t| t.storage_fee)
                .sum(),
        )
    }

    /// The transactions on `account`.
    pub fn on<'a>(
        &'a self,
        account: &'a StdAddr,
    ) -> impl Iterator<Item = &'a crate::trace::Landed> + 'a {
        self.trace.iter().filter(move |t| &t.account == account)
    }
}

/// How long a signed request stays valid.
const REQUEST_TTL_SECS: u32 = 120;

/// How soon a request not yet included is broadcast again (the same
/// message: the wallet's seqno makes a second copy harmless); the wait
/// doubles each time, up to [`REBROADCAST_MAX`].
const REBROADCAST: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest wait between two broadcasts of one request.
const REBROADCAST_MAX: std::time::Duration = std::time::Duration::from_secs(8);

impl WalletV5 {
    /// The wallet's seqno (0 before it is deployed) and whether it is.
    pub async fn seqno(
        &self,
        chain: &impl crate::chain::Chain,
    ) -> Result<(u32, bool), crate::chain::ChainError> {
        let account = chain.account(&self.address()).await?;
        if account.status != crate::chain::AccountStatus::Active {
            return Ok((0, false));
        }
        let out = chain.run_get_method(&self.address(), "seqno", &[]).await?;
        let seqno = crate::stack::StackReader::new(out.stack)
            .u64()
            .ok()
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or(0);
        Ok((seqno, true))
    }

    /// Sends `transfers` in one request and follows it to its end: the
    /// wallet's transaction found by the message's hash, then every message
    /// it caused until all have landed (waiting up to `timeout` for those).
    /// Requests from this wallet go one at a time: the next takes its seqno
    /// only once this one's is used. Deploys the wallet with its first
    /// request. Fails with what the chain shows when anything was refused.
    pub async fn send(
        &self,
        chain: &impl crate::chain::Chain,
        transfers: &[Transfer],
        timeout: std::time::Duration,
    ) -> Result<Delivery, SendError> {
        let mut tries = 0;
        loop {
            match self.send_once(chain, transfers, timeout).await {
                Err(SendError::NotIncluded {
                    why: NeverIncluded::SeqnoTaken { .. },
                    seqno,
                    ..
                }) if tries < SEQNO_RETRIES => {
                    tries += 1;
                    tracing::info!(address = %self.address(), seqno, "another request used this seqno; signing again with the next");
                }
                other => return other,
            }
        }
    }

    async fn send_once(
        &self,
        chain: &impl crate::chain::Chain,
        transfers: &[Transfer],
        timeout: std::time::Duration,
    ) -> Result<Delivery, SendError> {
        let address = self.address();
        let queue = self.queue.lock().await;
        let account = chain.account(&address).await?;
        let needed = transfers.iter().fold(Nanoton::ZERO, |sum, t| {
            sum.checked_add(t.value).unwrap_or(sum)
        });
        if account.balance.get() <= needed.get() {
            return Err(SendError::Insufficient {
                address,
                balance: account.balance,
                needed,
            });
        }
        let (seqno, deployed) = self.seqno(chain).await?;
        let after = account.last_transaction.map(|t| t.lt).unwrap_or(0);
        let valid_until = account.sync_utime.max(unix_now()) + REQUEST_TTL_SECS;
        let message = self.transfer(seqno, valid_until, transfers, !deployed)?;
        match chain.send_message(&message).await {
            // Refused as it stands: nothing was sent.
            Err(e @ crate::chain::ChainError::Refused { .. }) => return Err(e.into()),
            // No answer: it may have been accepted; look for it (and
            // broadcast it again) as for one that was.
            Err(e) => {
                tracing::debug!(%address, seqno, error = %e, "the request's first broadcast got no answer")
            }
            Ok(_) => {}
        }
        let request = Request {
            message,
            seqno,
            valid_until,
            after,
        };
        let landed = self.await_inclusion(chain, &request).await?;
        // The seqno is used: the next request may go.
        drop(queue);
        let refused = |what: String, trace: Vec<crate::trace::Landed>| SendError::Refused {
            address: address.clone(),
            seqno,
            what,
            trace,
        };
        if !landed.succeeded() || landed.sent.len() < transfers.len() {
            let what = format!(
                "the wallet sent {} of its {} messages ({})",
                landed.sent.len(),
                transfers.len(),
                landed.describe()
            );
            return Err(refused(what, vec![landed]));
        }
        let trace = crate::trace::follow(chain, landed, timeout)
            .await
            .map_err(|e| SendError::Unsettled {
                address: address.clone(),
                seqno,
                reason: e.to_string(),
            })?;
        if let Some(failed) = crate::trace::first_failure(&trace) {
            return Err(refused(failed.describe(), trace));
        }
        Ok(Delivery { seqno, trace })
    }

    /// One look for `request`'s transaction: the chain's time first, then
    /// the wallet's transactions (a transaction missing from a read made
    /// well after `valid_until` can never come), and now and then the
    /// seqno (moved past the request without it: another request took it;
    /// looked for once more after the seqno was read, in case it was this
    /// one landing in between).
    async fn look_for(
        &self,
        chain: &impl crate::chain::Chain,
        request: &Request,
        hash: &HashBytes,
        round: u32,
    ) -> Result<Looked, crate::trace::TraceError> {
        let address = self.address();
        let find = || crate::trace::find_receipt(chain, &address, hash, request.after);
        let now = chain.account(&address).await?.sync_utime;
        if let Some(landed) = find().await? {
            return Ok(Looked::Found(landed));
        }
        if now > request.valid_until.saturating_add(EXPIRY_MARGIN_SECS) {
            return Ok(Looked::Never(NeverIncluded::Expired {
                valid_until: request.valid_until,
                chain_time: now,
            }));
        }
        if round % 4 == 3 {
            if let Ok((seqno, true)) = self.seqno(chain).await {
                if seqno > request.seqno {
                    if let Some(landed) = find().await? {
                        return Ok(Looked::Found(landed));
                    }
                    return Ok(Looked::Never(NeverIncluded::SeqnoTaken { now: seqno }));
                }
            }
        }
        Ok(Looked::NotYet)
    }

    /// Waits until the wallet's transaction for `request` is found, or the
    /// chain's time passes its `valid_until` without it (proven never to be
    /// included). Broadcasts it again now and then meanwhile, as an
    /// accepted external may be lost.
    async fn await_inclusion(
        &self,
        chain: &impl crate::chain::Chain,
        request: &Request,
    ) -> Result<crate::trace::Landed, SendError> {
        let address = self.address();
        let hash = *request.message.repr_hash();
        let mut broadcast = tokio::time::Instant::now();
        let mut every = REBROADCAST;
        let mut round = 0;
        let not_included = |why: NeverIncluded| SendError::NotIncluded {
            address: address.clone(),
            seqno: request.seqno,
            why,
        };
        // Reads that fail are tried again; past this (by the local clock)
        // with the chain still unreadable, the outcome is unknown.
        let give_up = tokio::time::Instant::now()
            + std::time::Duration::from_secs(u64::from(
                request.valid_until.saturating_sub(unix_now()) + EXPIRY_MARGIN_SECS + 60,
            ));
        let mut last_error = String::new();
        loop {
            if tokio::time::Instant::now() > give_up {
                return Err(SendError::Unknown {
                    address,
                    seqno: request.seqno,
                    reason: last_error,
                });
            }
            match self.look_for(chain, request, &hash, round).await {
                Ok(Looked::Found(landed)) => return Ok(landed),
                Ok(Looked::Never(why)) => return Err(not_included(why)),
                Ok(Looked::NotYet) => {}
                Err(e) => last_error = e.to_string(),
            }
            if broadcast.elapsed() >= every {
                // Refused now most likely means the first copy landed.
                if let Err(e) = chain.send_message(&request.message).await {
                    tracing::debug!(%address, seqno = request.seqno, error = %e, "broadcasting the request again");
                }
                broadcast = tokio::time::Instant::now();
                every = (every * 2).min(REBROADCAST_MAX);
            }
            tokio::time::sleep(crate::trace::poll_pause(round)).await;
            round += 1;
        }
    }
}

/// What one look for a request found.
enum Looked {
    Found(crate::trace::Landed),
    Never(NeverIncluded),
    NotYet,
}

/// How long past a request's `valid_until` the chain's time must be before
/// its absence counts as proof: a shard block made before `valid_until` may
/// reach an endpoint after a later masterchain time did.
const EXPIRY_MARGIN_SECS: u32 = 30;

/// A signed request on its way.
struct Request {
    message: Cell,
    seqno: u32,
    valid_until: u32,
    /// The wallet's last transaction before it was sent.
    after: u64,
}

fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payer_signature_binds_the_key_the_request_and_the_contract() {
        let key = WalletKey::from_seed(&[7; 32]).expect("key");
        let wallet = WalletV5::new(
            WalletKey::from_seed(&[7; 32]).expect("key"),
            network::MAINNET,
        )
        .expect("wallet");
        let public = key.public_key();
        assert_eq!(
            WalletV5::address_of_key(&public, network::MAINNET).expect("address"),
            wallet.address()
        );
        assert_ne!(
            WalletV5::address_of_key(&public, network::TESTNET).expect("address"),
            wallet.address()
        );

        let payer = StdAddr::new(0, HashBytes([1; 32]));
        let other = StdAddr::new(0, HashBytes([2; 32]));
        let sig = key.sign_payer("req-1", &payer);
        assert!(verify_payer(&public, &sig, "req-1", &payer));
        assert!(
            !verify_payer(&public, &sig, "req-2", &payer),
            "another request"
        );
        assert!(
            !verify_payer(&public, &sig, "req-1", &other),
            "another payer"
        );
        let stranger = WalletKey::from_seed(&[8; 32]).expect("key").public_key();
        assert!(
            !verify_payer(&stranger, &sig, "req-1", &payer),
            "another key"
        );
        assert!(
            !verify_payer(&public, &sig[..63], "req-1", &payer),
            "a truncated signature"
        );
    }
}
