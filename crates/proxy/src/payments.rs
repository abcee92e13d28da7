//! Metering: what the proxy holds before it forwards a request, and what it
//! charges and pays when the answer is done.
//!
//! Before a request goes to a worker, its maximum cost is reserved: the
//! request body's size in bytes bounds its prompt tokens (a token is at
//! least one byte of text), and its max_tokens (or the proxy's default
//! limit) bounds its completion, at the chosen worker's coefficient. A
//! request failing before its first byte is released; a finished one is
//! charged its actual cost, at most the reservation.

use std::sync::Arc;

use cocoon_core::{Charge, Coefficient, PriceList, Usage};
use cocoon_pay::Ledger;
use tycho_types::models::StdAddr;

use crate::client_contracts::ClientContracts;
use crate::registry_watch::RegistryWatch;
use crate::Settlement;

/// The proxy's payment setup.
#[derive(Debug)]
pub struct Payments {
    /// The durable ledger: accounts, deposits, vouchers.
    pub ledger: Arc<Ledger>,
    /// Where requests' money is held and moved (today the ledger itself).
    pub settlement: Arc<dyn Settlement>,
    /// Prices: the flags', or the root registry's as last read.
    pub prices: PriceBoard,
    /// Completion tokens reserved for a request that sets no limit.
    pub default_max_tokens: u64,
    /// Whether clients may credit themselves (development ledger only).
    pub dev_deposits: bool,
    /// The proxy contract named in vouchers.
    pub contract: StdAddr,
    /// The key vouchers are signed with.
    pub voucher_key: [u8; 32],
    /// How long chunks may be held after a durable step so that the next
    /// one covers more of them: zero makes each chunk durable as soon as it
    /// arrives; more trades streaming smoothness for fewer ledger commits.
    pub checkpoint_window: std::time::Duration,
}

/// How the proxy is paid for the requests it serves.
#[derive(Debug, Clone)]
pub enum Charging {
    /// It serves without charging.
    Free,
    /// A development ledger: clients' balances are the ledger's own
    /// deposits, prices the flags'.
    DevLedger(Arc<Payments>),
    /// On a chain: deposits read from client contracts (and commits sent
    /// to them), prices and models from the root registry.
    OnChain {
        /// The ledger and prices.
        payments: Arc<Payments>,
        /// The client contracts' watch and the commits.
        contracts: Arc<ClientContracts>,
        /// The root registry, read for prices and models.
        registry: Arc<RegistryWatch>,
    },
}

impl Charging {
    /// The ledger and prices, when the proxy charges.
    pub fn payments(&self) -> Option<&Arc<Payments>> {
        match self {
            Charging::Free => None,
            Charging::DevLedger(p) | Charging::OnChain { payments: p, .. } => Some(p),
        }
    }

    /// The client contracts, on a chain.
    pub fn contracts(&self) -> Option<&Arc<ClientContracts>> {
        match self {
            Charging::OnChain { contracts, .. } => Some(contracts),
            _ => None,
        }
    }

    /// The root registry, on a chain.
    pub fn registry(&self) -> Option<&Arc<RegistryWatch>> {
        match self {
            Charging::OnChain { registry, .. } => Some(registry),
            _ => None,
        }
    }
}

/// The prices requests are charged at now. Fixed by flags on a development
/// ledger; with a registry, replaced whenever it is read (a request keeps
/// the prices it was reserved at).
#[derive(Debug)]
pub struct PriceBoard {
    current: std::sync::RwLock<PriceList>,
    tiers: std::sync::RwLock<Arc<cocoon_core::tier_prices::TierPrices>>,
}

impl PriceBoard {
    /// Starts with `prices`.
    pub fn new(prices: PriceList) -> Self {
        PriceBoard {
            current: std::sync::RwLock::new(prices),
            tiers: std::sync::RwLock::default(),
        }
    }

    /// The tier multipliers now (1x for every tier until a registry states
    /// others).
    pub fn tiers(&self) -> Arc<cocoon_core::tier_prices::TierPrices> {
        self.tiers.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the tier multipliers; returns whether they changed.
    pub fn set_tiers(&self, tiers: cocoon_core::tier_prices::TierPrices) -> bool {
        let mut t = self.tiers.write().unwrap_or_else(|p| p.into_inner());
        let changed = **t != tiers;
        *t = Arc::new(tiers);
        changed
    }

    /// The prices and tiers as the wire states them.
    pub fn to_wire(&self) -> cocoon_proto::Prices {
        cocoon_proto::Prices::from(&self.get()).with_tiers(&self.tiers())
    }

    /// The prices now.
    pub fn get(&self) -> PriceList {
        *self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the prices; returns whether they changed.
    pub fn set(&self, prices: PriceList) -> bool {
        let mut c = self.current.write().unwrap_or_else(|p| p.into_inner());
        let changed = *c != prices;
        *c = prices;
        changed
    }
}

impl Payments {
    /// The most a request can cost at `coefficient`, and the prices it was
    /// computed at.
    pub fn max_cost(
        &self,
        body_len: usize,
        max_tokens: u64,
        coefficient: Coefficient,
    ) -> Result<(Charge, PriceList), cocoon_core::PriceError> {
        let prices = self.prices.get();
        let completion = if max_tokens == 0 {
            self.default_max_tokens
        } else {
            max_tokens
        };
        let max = prices.cost(
            &Usage {
                prompt: body_len as u64,
                cached: 0,
                completion,
                reasoning: 0,
            },
            coefficient,
        )?;
        Ok((max, prices))
    }
}
