//! Cocoon's contracts from the Rust side: their initial states (so nodes
//! derive every address themselves, exactly as the contracts do), and the
//! bodies of the messages nodes send them. The layouts are those of
//! `contracts/src/common/{layouts,messages}.tolk`; `contracts/test`
//! cross-checks each derivation against the contracts' own get-methods.

use cocoon_core::Nanoton;
use tycho_types::cell::{Cell, CellBuilder, CellFamily, HashBytes, Store};
use tycho_types::error::Error;
use tycho_types::models::{StateInit, StdAddr};
use tycho_types::num::Tokens;

use crate::artifacts::{ArtifactError, ContractKind};

/// Operation codes (contracts/README.md).
pub mod op {
    /// Root: register a proxy (owner only).
    pub const REGISTER_PROXY: u32 = 0x52c0_0001;
    /// Root: allow or disallow an image for a role.
    pub const SET_IMAGE: u32 = 0x52c0_0003;
    /// Root: add or remove a model.
    pub const SET_MODEL: u32 = 0x52c0_0004;
    /// Root: set the prices.
    pub const SET_PRICES: u32 = 0x52c0_0005;
    /// Root: set the terms new proxy contracts get.
    pub const SET_TERMS: u32 = 0x52c0_0006;
    /// Root: set the tier multipliers and whether regions must be registered.
    pub const SET_TIER_MULTIPLIERS: u32 = 0x52c0_000b;
    /// Root: set or remove a region's domicile surcharge.
    pub const SET_REGION_PRICE: u32 = 0x52c0_000c;
    /// Root: set or remove a model's size-class multiplier.
    pub const SET_MODEL_PRICE: u32 = 0x52c0_000d;
    /// Root: list or remove an operator.
    pub const SET_OPERATOR: u32 = 0x52c0_000e;
    /// Proxy: add to the operator's stake.
    pub const ADD_PROXY_STAKE: u32 = 0x50c0_0001;
    /// Proxy: withdraw commission.
    pub const WITHDRAW_COMMISSION: u32 = 0x50c0_0002;
    /// Proxy: start closing.
    pub const REQUEST_PROXY_CLOSE: u32 = 0x50c0_0003;
    /// Proxy: finish closing after the delay.
    pub const FINISH_PROXY_CLOSE: u32 = 0x50c0_0004;
    /// Client: add to the balance.
    pub const TOP_UP: u32 = 0x43c0_0001;
    /// Client: take back what is above the stake.
    pub const WITHDRAW_BALANCE: u32 = 0x43c0_0002;
    /// Client: commit a proxy-signed voucher.
    pub const CHARGE: u32 = 0x43c0_0003;
    /// Client: start closing.
    pub const REQUEST_CLIENT_CLOSE: u32 = 0x43c0_0004;
    /// Client: finish closing after the delay.
    pub const FINISH_CLIENT_CLOSE: u32 = 0x43c0_0005;
    /// Worker: claim a proxy-signed voucher.
    pub const PAYOUT: u32 = 0x57c0_0001;
    /// Worker: add to the worker's stake.
    pub const ADD_WORKER_STAKE: u32 = 0x57c0_0003;
    /// Worker: start the stake's withdrawal delay.
    pub const REQUEST_STAKE_WITHDRAWAL: u32 = 0x57c0_0004;
    /// Worker: take the stake back after the delay.
    pub const WITHDRAW_WORKER_STAKE: u32 = 0x57c0_0005;
    /// Worker: slash on proxy-signed evidence.
    pub const SLASH: u32 = 0x57c0_0006;
    /// Worker: register a receipt key (owner only).
    pub const ADD_RECEIPT_KEY: u32 = 0x57c0_0009;
    /// Worker: remove a receipt key; it stays evidence for the stake's delay.
    pub const REMOVE_RECEIPT_KEY: u32 = 0x57c0_000a;
    /// Worker: withdraw a request to take the stake back.
    pub const CANCEL_STAKE_WITHDRAWAL: u32 = 0x57c0_000b;
    /// Proxy: publish the reputation table's digest (owner only).
    pub const PUBLISH_REPUTATION: u32 = 0x50c0_0008;
}

/// Each contract's storage reserve (contracts/src/common/value.tolk): the
/// first message to a contract carries it besides its amount and gas, and
/// an op whose value cannot refill it is refused (exit code 102).
pub mod reserve {
    use cocoon_core::Nanoton;

    /// The root registry's.
    pub const ROOT: Nanoton = Nanoton::new(500_000_000);
    /// A proxy contract's: the root sends it with the deployment.
    pub const PROXY: Nanoton = Nanoton::new(300_000_000);
    /// A client contract's.
    pub const CLIENT: Nanoton = Nanoton::new(60_000_000);
    /// A worker contract's.
    pub const WORKER: Nanoton = Nanoton::new(150_000_000);
}

/// Image roles in the root's lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Proxies.
    Proxy = 0,
    /// Workers.
    Worker = 1,
    /// Clients.
    Client = 2,
}

/// What tokens cost, as the root stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prices {
    /// Base price of one token, nanoton.
    pub price_per_token: Nanoton,
    /// The worker's share of it, nanoton.
    pub worker_fee_per_token: Nanoton,
    /// Multipliers ×10000 by token kind.
    pub prompt_multiplier: u32,
    /// Cached prompt tokens.
    pub cached_multiplier: u32,
    /// Completion tokens.
    pub completion_multiplier: u32,
    /// Reasoning tokens.
    pub reasoning_multiplier: u32,
}

/// Stakes, close delays and the slash share new proxy contracts get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// The least a proxy stakes.
    pub min_proxy_stake: Nanoton,
    /// The least a client keeps in its contract.
    pub min_client_stake: Nanoton,
    /// The least a worker stakes in its contract to be paid.
    pub min_worker_stake: Nanoton,
    /// Seconds between a proxy's close request and its end.
    pub proxy_close_delay: u32,
    /// Seconds between a client's close request and its end.
    pub client_close_delay: u32,
    /// The most one slash takes, in basis points of a worker's stake.
    pub slash_share: u16,
}

/// A price or term outside the bounds the root enforces
/// (contracts/README.md, "Bounds"): the root refuses it with exit code
/// 106 (prices) or 108 (terms).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is {found}, outside the root's bounds {bounds}")]
pub struct OutOfBounds {
    /// The field.
    pub what: &'static str,
    /// Its value.
    pub found: u64,
    /// What the root accepts.
    pub bounds: String,
}

/// The root's bounds (contracts/src/RootContract.tolk).
pub mod bounds {
    use cocoon_core::Nanoton;

    /// The most any stake in the terms may be: 10^9 TON.
    pub const MAX_TERM_COINS: Nanoton = Nanoton::new(1_000_000_000_000_000_000);
    /// The least a proxy's or a worker's stake may be.
    pub const MIN_STAKE_TERM: Nanoton = Nanoton::new(100_000_000);
    /// The shortest close delay, seconds.
    pub const MIN_DELAY: u32 = 600;
    /// The longest close delay: 90 days.
    pub const MAX_DELAY: u32 = 90 * 24 * 3600;
    /// The largest slash share, basis points.
    pub const MAX_SLASH_SHARE: u16 = 10_000;
    /// The most a token may cost: 1 TON.
    pub const MAX_PRICE_PER_TOKEN: Nanoton = Nanoton::TON;
    /// The largest multiplier, basis points.
    pub const MAX_MULTIPLIER: u32 = 1_000_000;
}

fn within(what: &'static str, found: u64, least: u64, most: u64) -> Result<(), OutOfBounds> {
    if (least..=most).contains(&found) {
        Ok(())
    } else {
        Err(OutOfBounds {
            what,
            found,
            bounds: format!("{least}..={most}"),
        })
    }
}

impl Terms {
    /// The check the root makes of `set_terms`, field by field.
    pub fn check(&self) -> Result<(), OutOfBounds> {
        use bounds::*;
        let (least, most) = (MIN_STAKE_TERM.get(), MAX_TERM_COINS.get());
        within("min_proxy_stake", self.min_proxy_stake.get(), least, most)?;
        within("min_client_stake", self.min_client_stake.get(), 0, most)?;
        within("min_worker_stake", self.min_worker_stake.get(), least, most)?;
        let (least, most) = (u64::from(MIN_DELAY), u64::from(MAX_DELAY));
        within(
            "proxy_close_delay",
            self.proxy_close_delay.into(),
            least,
            most,
        )?;
        within(
            "client_close_delay",
            self.client_close_delay.into(),
            least,
            most,
        )?;
        within(
            "slash_share",
            self.slash_share.into(),
            1,
            MAX_SLASH_SHARE.into(),
        )
    }
}

impl Prices {
    /// The check the root makes of `set_prices`, field by field: a
    /// worker's fee never above the price, no multiplier zero.
    pub fn check(&self) -> Result<(), OutOfBounds> {
        use bounds::*;
        let price = self.price_per_token.get();
        within("price_per_token", price, 0, MAX_PRICE_PER_TOKEN.get())?;
        within(
            "worker_fee_per_token",
            self.worker_fee_per_token.get(),
            0,
            price,
        )?;
        for (what, m) in [
            ("prompt_multiplier", self.prompt_multiplier),
            ("cached_multiplier", self.cached_multiplier),
            ("completion_multiplier", self.completion_multiplier),
            ("reasoning_multiplier", self.reasoning_multiplier),
        ] {
            within(what, m.into(), 1, MAX_MULTIPLIER.into())?;
        }
        Ok(())
    }
}

/// The code of the contracts the root deploys or derives.
#[derive(Debug, Clone)]
pub struct Codes {
    /// The proxy contract.
    pub proxy: Cell,
    /// The client contract.
    pub client: Cell,
    /// The worker contract.
    pub worker: Cell,
}

impl Codes {
    /// The committed artifacts.
    pub fn committed() -> Result<Self, ArtifactError> {
        Ok(Codes {
            proxy: ContractKind::Proxy.code()?.code,
            client: ContractKind::Client.code()?.code,
            worker: ContractKind::Worker.code()?.code,
        })
    }
}

/// What a proxy contract is bound to for life (part of its address).
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The root that registered it.
    pub root: StdAddr,
    /// Its close delay.
    pub proxy_close_delay: u32,
    /// Its clients' close delay.
    pub client_close_delay: u32,
    /// Below this stake it books no charge.
    pub min_proxy_stake: Nanoton,
    /// Its clients' stake.
    pub min_client_stake: Nanoton,
    /// Its workers' least stake.
    pub min_worker_stake: Nanoton,
    /// Basis points of a worker's stake one slash takes.
    pub slash_share: u16,
    /// The client contract code.
    pub client_code: Cell,
    /// The worker contract code.
    pub worker_code: Cell,
}

impl ProxyConfig {
    /// The config the root gives a proxy it registers under `terms`.
    pub fn under(root: &StdAddr, terms: &Terms, codes: &Codes) -> Self {
        ProxyConfig {
            root: root.clone(),
            proxy_close_delay: terms.proxy_close_delay,
            client_close_delay: terms.client_close_delay,
            min_proxy_stake: terms.min_proxy_stake,
            min_client_stake: terms.min_client_stake,
            min_worker_stake: terms.min_worker_stake,
            slash_share: terms.slash_share,
            client_code: codes.client.clone(),
            worker_code: codes.worker.clone(),
        }
    }
}

fn coins(b: &mut CellBuilder, n: Nanoton) -> Result<(), Error> {
    Tokens::new(u128::from(n.get())).store_into(b, Cell::empty_context())
}

fn addr_none(b: &mut CellBuilder) -> Result<(), Error> {
    b.store_small_uint(0, 2)
}

/// A state init of `code` and `data`, no libraries.
pub fn state_init(code: Cell, data: Cell) -> StateInit {
    StateInit {
        split_depth: None,
        special: None,
        code: Some(code),
        data: Some(data),
        libraries: Default::default(),
    }
}

/// The basechain address of a state init.
pub fn address_of(init: &StateInit) -> StdAddr {
    let cell = CellBuilder::build_from(init).expect("a state init always serialises");
    StdAddr::new(0, *cell.repr_hash())
}

fn store_prices(b: &mut CellBuilder, p: &Prices) -> Result<(), Error> {
    coins(b, p.price_per_token)?;
    coins(b, p.worker_fee_per_token)?;
    b.store_u32(p.prompt_multiplier)?;
    b.store_u32(p.cached_multiplier)?;
    b.store_u32(p.completion_multiplier)?;
    b.store_u32(p.reasoning_multiplier)
}

fn store_terms(b: &mut CellBuilder, t: &Terms) -> Result<(), Error> {
    coins(b, t.min_proxy_stake)?;
    coins(b, t.min_client_stake)?;
    coins(b, t.min_worker_stake)?;
    b.store_u32(t.proxy_close_delay)?;
    b.store_u32(t.client_close_delay)?;
    b.store_u16(t.slash_share)
}

/// The root registry's initial state: `owner`, no images, models or
/// proxies, version 0.
pub fn root_state_init(
    owner: &StdAddr,
    prices: &Prices,
    terms: &Terms,
    codes: &Codes,
) -> Result<StateInit, Error> {
    let mut params = CellBuilder::new();
    store_prices(&mut params, prices)?;
    store_terms(&mut params, terms)?;
    params.store_reference(default_tiers()?)?;
    let mut c = CellBuilder::new();
    c.store_reference(codes.proxy.clone())?;
    c.store_reference(codes.client.clone())?;
    c.store_reference(codes.worker.clone())?;
    let mut lists = CellBuilder::new();
    lists.store_small_uint(0, 4)?; // four empty maps
    let mut data = CellBuilder::new();
    owner.store_into(&mut data, Cell::empty_context())?;
    addr_none(&mut data)?; // no pending owner
    data.store_u32(0)?; // version
    data.store_reference(params.build()?)?;
    data.store_reference(c.build()?)?;
    data.store_reference(lists.build()?)?;
    data.store_bit_zero()?; // no proxies
    Ok(state_init(
        ContractKind::Root
            .code()
            .map_err(|_| Error::InvalidData)?
            .code,
        data.build()?,
    ))
}

/// A proxy contract's initial state, as the root derives it.
pub fn proxy_state_init(
    owner: &StdAddr,
    key: &HashBytes,
    config: &ProxyConfig,
    proxy_code: &Cell,
) -> Result<StateInit, Error> {
    let mut books = CellBuilder::new();
    for _ in 0..5 {
        coins(&mut books, Nanoton::ZERO)?; // stake, commission, charged, paid, owed
    }
    let mut cfg = CellBuilder::new();
    config.root.store_into(&mut cfg, Cell::empty_context())?;
    cfg.store_u32(config.proxy_close_delay)?;
    cfg.store_u32(config.client_close_delay)?;
    coins(&mut cfg, config.min_proxy_stake)?;
    coins(&mut cfg, config.min_client_stake)?;
    coins(&mut cfg, config.min_worker_stake)?;
    cfg.store_u16(config.slash_share)?;
    cfg.store_reference(config.client_code.clone())?;
    cfg.store_reference(config.worker_code.clone())?;
    let mut data = CellBuilder::new();
    owner.store_into(&mut data, Cell::empty_context())?;
    data.store_u256(key)?;
    data.store_small_uint(0, 2)?; // open
    data.store_u32(0)?; // closeAt
    data.store_reference(books.build()?)?;
    data.store_reference(cfg.build()?)?;
    let mut reputation = CellBuilder::new();
    reputation.store_u256(&HashBytes::ZERO)?; // digest
    reputation.store_u32(0)?; // workers
    reputation.store_u32(0)?; // seqno
    reputation.store_u32(0)?; // publishedAt
    data.store_reference(reputation.build()?)?;
    Ok(state_init(proxy_code.clone(), data.build()?))
}

/// `owner`'s client contract with the proxy contract `proxy`.
pub fn client_state_init(
    proxy: &StdAddr,
    proxy_key: &HashBytes,
    config: &ProxyConfig,
    owner: &StdAddr,
) -> Result<StateInit, Error> {
    let mut terms = CellBuilder::new();
    proxy.store_into(&mut terms, Cell::empty_context())?;
    terms.store_u256(proxy_key)?;
    coins(&mut terms, config.min_client_stake)?;
    terms.store_u32(config.client_close_delay)?;
    let mut data = CellBuilder::new();
    owner.store_into(&mut data, Cell::empty_context())?;
    data.store_small_uint(0, 2)?; // open
    data.store_u32(0)?; // closeAt
    coins(&mut data, Nanoton::ZERO)?; // balance
    coins(&mut data, Nanoton::ZERO)?; // committed
    data.store_u64(0)?; // lastSeqno
    data.store_reference(terms.build()?)?;
    Ok(state_init(config.client_code.clone(), data.build()?))
}

/// `owner`'s worker contract with the proxy contract `proxy`.
pub fn worker_state_init(
    proxy: &StdAddr,
    proxy_key: &HashBytes,
    config: &ProxyConfig,
    owner: &StdAddr,
) -> Result<StateInit, Error> {
    let mut terms = CellBuilder::new();
    proxy.store_into(&mut terms, Cell::empty_context())?;
    terms.store_u256(proxy_key)?;
    coins(&mut terms, config.min_worker_stake)?;
    terms.store_u32(config.proxy_close_delay)?; // the stake's withdrawal delay
    terms.store_u16(config.slash_share)?;
    let mut stake = CellBuilder::new();
    coins(&mut stake, Nanoton::ZERO)?; // stake
    stake.store_u32(0)?; // unlockAt
    coins(&mut stake, Nanoton::ZERO)?; // slashed
    stake.store_bit_zero()?; // no slashed receipts
    let mut data = CellBuilder::new();
    owner.store_into(&mut data, Cell::empty_context())?;
    coins(&mut data, Nanoton::ZERO)?; // committed
    data.store_u64(0)?; // lastSeqno
    coins(&mut data, Nanoton::ZERO)?; // inFlight
    coins(&mut data, Nanoton::ZERO)?; // owed
    data.store_bit_zero()?; // no receipt keys
    data.store_reference(stake.build()?)?;
    data.store_reference(terms.build()?)?;
    Ok(state_init(config.worker_code.clone(), data.build()?))
}

fn body(
    op: u32,
    query_id: u64,
    fill: impl FnOnce(&mut CellBuilder) -> Result<(), Error>,
) -> Result<Cell, Error> {
    let mut b = CellBuilder::new();
    b.store_u32(op)?;
    b.store_u64(query_id)?;
    fill(&mut b)?;
    b.build()
}

/// A short string as a cell's bytes (endpoints, model names).
pub fn text_cell(s: &str) -> Result<Cell, Error> {
    let bytes = s.as_bytes();
    if bytes.len() > 127 {
        return Err(Error::CellOverflow);
    }
    let mut b = CellBuilder::new();
    b.store_raw(bytes, (bytes.len() * 8) as u16)?;
    b.build()
}

/// Root: register `owner`'s proxy with voucher key `key`, reachable at
/// `endpoints`.
pub fn register_proxy(
    query_id: u64,
    owner: &StdAddr,
    key: &HashBytes,
    endpoints: &str,
) -> Result<Cell, Error> {
    let endpoints = text_cell(endpoints)?;
    body(op::REGISTER_PROXY, query_id, |b| {
        owner.store_into(b, Cell::empty_context())?;
        b.store_u256(key)?;
        b.store_reference(endpoints)
    })
}

/// Root: allow (or disallow) image `hash` for `role`.
pub fn set_image(
    query_id: u64,
    role: Role,
    hash: &HashBytes,
    allowed: bool,
) -> Result<Cell, Error> {
    body(op::SET_IMAGE, query_id, |b| {
        b.store_u8(role as u8)?;
        b.store_u256(hash)?;
        b.store_bit(allowed)
    })
}

/// Root: add model `hash` named `name` (or remove it with `None`).
pub fn set_model(query_id: u64, hash: &HashBytes, name: Option<&str>) -> Result<Cell, Error> {
    let name = name.map(text_cell).transpose()?;
    body(op::SET_MODEL, query_id, |b| {
        b.store_u256(hash)?;
        match name {
            Some(c) => {
                b.store_bit_one()?;
                b.store_reference(c)
            }
            None => b.store_bit_zero(),
        }
    })
}

/// Root: set the prices.
pub fn set_prices(query_id: u64, prices: &Prices) -> Result<Cell, Error> {
    body(op::SET_PRICES, query_id, |b| store_prices(b, prices))
}

/// The trust tiers a root starts with: every multiplier 1x, regions not
/// required, no region, model or operator listed.
fn default_tiers() -> Result<Cell, Error> {
    let mut b = CellBuilder::new();
    for _ in 0..5 {
        b.store_u32(10_000)?;
    }
    b.store_bit_zero()?; // regions not required
    b.store_small_uint(0, 3)?; // three empty maps
    b.build()
}

/// A region as the root keys it: its name's bytes, left-aligned in 256 bits.
pub fn region_key(region: &cocoon_core::Region) -> HashBytes {
    let mut key = [0u8; 32];
    let name = region.as_str().as_bytes();
    key[..name.len()].copy_from_slice(name);
    HashBytes(key)
}

/// The region a root key names, if it is one.
pub fn region_of_key(key: &HashBytes) -> Option<cocoon_core::Region> {
    let end = key.0.iter().position(|b| *b == 0).unwrap_or(32);
    if key.0[end..].iter().any(|b| *b != 0) {
        return None;
    }
    std::str::from_utf8(&key.0[..end])
        .ok()
        .and_then(|s| cocoon_core::Region::new(s).ok())
}

/// Root: the tier multipliers (tdx, sev-snp, open, gpu, replication, basis
/// points) and whether workers' regions must be registered.
pub fn set_tier_multipliers(
    query_id: u64,
    multipliers: [u32; 5],
    require_regions: bool,
) -> Result<Cell, Error> {
    body(op::SET_TIER_MULTIPLIERS, query_id, |b| {
        for m in multipliers {
            b.store_u32(m)?;
        }
        b.store_bit(require_regions)
    })
}

/// Root: `region`'s domicile surcharge (basis points; 0 removes it).
pub fn set_region_price(
    query_id: u64,
    region: &cocoon_core::Region,
    multiplier: u32,
) -> Result<Cell, Error> {
    body(op::SET_REGION_PRICE, query_id, |b| {
        b.store_u256(&region_key(region))?;
        b.store_u32(multiplier)
    })
}

/// Root: model `hash`'s size-class multiplier (basis points; 0 removes it).
pub fn set_model_price(query_id: u64, hash: &HashBytes, multiplier: u32) -> Result<Cell, Error> {
    body(op::SET_MODEL_PRICE, query_id, |b| {
        b.store_u256(hash)?;
        b.store_u32(multiplier)
    })
}

/// Root: list the operator whose wallet is `wallet` (its workers may
/// declare `regions`, and join the open tier if `open`), or remove it.
pub fn set_operator(
    query_id: u64,
    wallet: &StdAddr,
    listed: bool,
    open: bool,
    regions: &[cocoon_core::Region],
) -> Result<Cell, Error> {
    let mut set = tycho_types::dict::Dict::<HashBytes, bool>::new();
    for r in regions {
        set.set(region_key(r), true)?;
    }
    body(op::SET_OPERATOR, query_id, |b| {
        wallet.store_into(b, Cell::empty_context())?;
        b.store_bit(listed)?;
        b.store_bit(open)?;
        set.store_into(b, Cell::empty_context())
    })
}

/// Proxy: add `amount` to the stake (the message carries it plus gas).
pub fn add_proxy_stake(query_id: u64, amount: Nanoton) -> Result<Cell, Error> {
    body(op::ADD_PROXY_STAKE, query_id, |b| coins(b, amount))
}

/// Client: add `amount` to the balance (the message carries it plus gas).
pub fn top_up(query_id: u64, amount: Nanoton) -> Result<Cell, Error> {
    body(op::TOP_UP, query_id, |b| coins(b, amount))
}

/// Client: take back `amount` of what is above the stake.
pub fn withdraw_balance(query_id: u64, amount: Nanoton) -> Result<Cell, Error> {
    body(op::WITHDRAW_BALANCE, query_id, |b| coins(b, amount))
}

/// Client: commit a signed voucher (its cell, as `cocoon-pay` signs it).
pub fn charge(query_id: u64, signed_voucher: Cell) -> Result<Cell, Error> {
    body(op::CHARGE, query_id, |b| b.store_reference(signed_voucher))
}

/// Worker: claim a signed voucher.
pub fn payout(query_id: u64, signed_voucher: Cell) -> Result<Cell, Error> {
    body(op::PAYOUT, query_id, |b| b.store_reference(signed_voucher))
}

/// Worker: add `amount` (carried in the value) to the stake.
pub fn add_worker_stake(query_id: u64, amount: Nanoton) -> Result<Cell, Error> {
    body(op::ADD_WORKER_STAKE, query_id, |b| coins(b, amount))
}

/// Worker: start the stake's withdrawal delay.
pub fn request_stake_withdrawal(query_id: u64) -> Result<Cell, Error> {
    body(op::REQUEST_STAKE_WITHDRAWAL, query_id, |_| Ok(()))
}

/// Worker: take the stake back once the delay has passed.
pub fn withdraw_worker_stake(query_id: u64) -> Result<Cell, Error> {
    body(op::WITHDRAW_WORKER_STAKE, query_id, |_| Ok(()))
}

/// Root: set the terms new proxy contracts get.
pub fn set_terms(query_id: u64, terms: &Terms) -> Result<Cell, Error> {
    body(op::SET_TERMS, query_id, |b| store_terms(b, terms))
}

/// Worker: register `key` as a key the worker signs receipts with.
pub fn add_receipt_key(query_id: u64, key: &[u8; 32]) -> Result<Cell, Error> {
    body(op::ADD_RECEIPT_KEY, query_id, |b| {
        b.store_u256(&HashBytes(*key))
    })
}

/// Worker: remove receipt key `key`; it stays evidence for the stake's delay.
pub fn remove_receipt_key(query_id: u64, key: &[u8; 32]) -> Result<Cell, Error> {
    body(op::REMOVE_RECEIPT_KEY, query_id, |b| {
        b.store_u256(&HashBytes(*key))
    })
}

/// Worker: withdraw a request to take the stake back.
pub fn cancel_stake_withdrawal(query_id: u64) -> Result<Cell, Error> {
    body(op::CANCEL_STAKE_WITHDRAWAL, query_id, |_| Ok(()))
}

/// Worker: slash on `signed_evidence` (a `SignedEvidence` cell).
pub fn slash(query_id: u64, signed_evidence: Cell) -> Result<Cell, Error> {
    body(op::SLASH, query_id, |b| b.store_reference(signed_evidence))
}

/// Proxy: publish `digest` of a reputation table of `workers` workers.
pub fn publish_reputation(query_id: u64, digest: &HashBytes, workers: u32) -> Result<Cell, Error> {
    body(op::PUBLISH_REPUTATION, query_id, |b| {
        b.store_u256(digest)?;
        b.store_u32(workers)
    })
}

/// Client: start closing.
pub fn request_client_close(query_id: u64) -> Result<Cell, Error> {
    body(op::REQUEST_CLIENT_CLOSE, query_id, |_| Ok(()))
}

/// Client: finish closing after the delay.
pub fn finish_client_close(query_id: u64) -> Result<Cell, Error> {
    body(op::FINISH_CLIENT_CLOSE, query_id, |_| Ok(()))
}

/// Proxy: start closing.
pub fn request_proxy_close(query_id: u64) -> Result<Cell, Error> {
    body(op::REQUEST_PROXY_CLOSE, query_id, |_| Ok(()))
}

/// Proxy: finish closing after the delay (stake and commission to the owner).
pub fn finish_proxy_close(query_id: u64) -> Result<Cell, Error> {
    body(op::FINISH_PROXY_CLOSE, query_id, |_| Ok(()))
}

/// Gas a top-up link carries beyond its amount: enough for the top-up's
/// gas and, on a first deposit, the contract's whole storage reserve; the
/// contract returns what is left.
pub const TOP_UP_LINK_GAS: Nanoton = Nanoton::new(100_000_000);

/// A `ton://transfer/...` link any TON wallet app opens to top `contract`
/// up by `amount`: the value (amount and gas), the top-up payload (`bin`)
/// and, so the first top-up deploys the contract, its initial state
/// (`init`; ignored once the contract exists).
pub fn top_up_link(
    contract: &StdAddr,
    amount: Nanoton,
    init: Option<&StateInit>,
) -> Result<String, Error> {
    use base64::Engine;
    let b64 = |c: &Cell| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tycho_types::boc::Boc::encode(c))
    };
    let value = amount
        .get()
        .checked_add(TOP_UP_LINK_GAS.get())
        .ok_or(Error::IntOverflow)?;
    let body = top_up(0, amount)?;
    let mut link = format!(
        "ton://transfer/{}?amount={value}&bin={}",
        contract.display_base64_url(true),
        b64(&body)
    );
    if let Some(init) = init {
        link.push_str(&format!("&init={}", b64(&CellBuilder::build_from(init)?)));
    }
    Ok(link)
}
