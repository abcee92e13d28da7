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

use crate::Settlement;

/// The proxy's payment setup.
#[derive(Debug)]
pub struct Payments {
    /// The durable ledger: accounts, deposits, vouchers.
    pub ledger: Arc<Ledger>,
    /// Where requests' money is held and moved (today the ledger itself).
    pub settlement: Arc<dyn Settlement>,
    /// Prices.
    pub prices: PriceList,
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
    /// Deposits read from client contracts on chain; `None` on a
    /// development ledger.
    pub client_contracts: Option<Arc<crate::client_contracts::ClientContracts>>,
}

impl Payments {
    /// The most a request can cost at `coefficient`.
    pub fn max_cost(
        &self,
        body_len: usize,
        max_tokens: u64,
        coefficient: Coefficient,
    ) -> Result<Charge, cocoon_core::PriceError> {
        let completion = if max_tokens == 0 {
            self.default_max_tokens
        } else {
            max_tokens
        };
        self.prices.cost(
            &Usage {
                prompt: body_len as u64,
                cached: 0,
                completion,
                reasoning: 0,
            },
            coefficient,
        )
    }
}
