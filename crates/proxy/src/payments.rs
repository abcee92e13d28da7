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

use cocoon_core::{Charge, Coefficient, Nanoton, PriceList, Usage};
use cocoon_pay::{Ledger, LedgerError, Op, Outcome, Settlement};
use tycho_types::models::StdAddr;

/// The proxy's payment setup.
#[derive(Debug)]
pub struct Payments {
    /// The durable ledger.
    pub ledger: Arc<Ledger>,
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

    /// Holds `amount` for `request`.
    pub async fn reserve(
        &self,
        request: &str,
        client: &StdAddr,
        worker: &StdAddr,
        amount: Nanoton,
    ) -> Result<(), LedgerError> {
        self.ledger
            .submit(Op::Reserve {
                request: request.to_owned(),
                client: client.clone(),
                worker: worker.clone(),
                amount,
            })
            .await
            .map(|_| ())
    }

    /// Gives `request`'s reservation back.
    pub async fn release(&self, request: &str) {
        if let Err(e) = self
            .ledger
            .submit(Op::Release {
                request: request.to_owned(),
            })
            .await
        {
            tracing::error!(request, error = %e, "releasing a reservation failed");
        }
    }

    /// Charges `request` `charge` (capped at its reservation by the ledger).
    pub async fn settle(&self, request: &str, charge: Charge) -> Result<Settlement, LedgerError> {
        match self
            .ledger
            .submit(Op::Settle {
                request: request.to_owned(),
                charge,
            })
            .await?
        {
            Outcome::Settled(s) => Ok(*s),
            other => Err(LedgerError::Store {
                path: "ledger".into(),
                reason: format!("settle answered {other:?}"),
            }),
        }
    }
}
