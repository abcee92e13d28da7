//! The most a request may cost, and its admission under the caller's
//! account: computed as the proxy computes its own reservation (the same
//! price list, the prompt's bytes as a bound on its tokens, `max_tokens`
//! or the proxy's default, the highest coefficient allowed, every
//! replica), so the hold covers whatever the proxy may charge.

use cocoon_core::{Coefficient, PriceList, Usage};
use cocoon_proto::ListModelsRequest;

use crate::access::{Admission, Principal};
use crate::openai::{ApiError, Validated};
use crate::Shared;

/// The proxy's prices, from its hello.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProxyPrices {
    pub list: PriceList,
    /// Completion tokens the proxy reserves for a request without max_tokens.
    pub default_max_tokens: u64,
}

impl ProxyPrices {
    /// From a hello; `None` when the proxy does not charge or its prices
    /// are not a valid list.
    pub(crate) fn from_hello(hello: &cocoon_proto::ProxyHello) -> Option<ProxyPrices> {
        let p = hello.prices.as_ref().filter(|_| hello.payments)?;
        let list = cocoon_proto::convert::prices(p).ok()?;
        Some(ProxyPrices {
            list,
            default_max_tokens: hello.default_max_tokens,
        })
    }

    /// The most a request of `body_len` bytes may cost at `coefficient`.
    fn max_cost(
        &self,
        body_len: usize,
        max_tokens: Option<u64>,
        coefficient: Coefficient,
        replicas: u32,
    ) -> u64 {
        let usage = Usage {
            prompt: body_len as u64,
            cached: 0,
            completion: max_tokens
                .filter(|t| *t > 0)
                .unwrap_or(self.default_max_tokens),
            reasoning: 0,
        };
        self.list
            .cost(&usage, coefficient)
            .map(|c| c.client.get())
            .unwrap_or(u64::MAX)
            .saturating_mul(u64::from(replicas.max(1)))
    }
}

/// Admits a validated request under `who`'s account, holding the most it
/// may cost. A request without a price ceiling gets the market's current
/// highest coefficient for its model as one, so the hold bounds it.
pub(crate) async fn admit(
    shared: &Shared,
    who: &Principal,
    v: &mut Validated,
) -> Result<Admission, ApiError> {
    let accounted = matches!(who, Principal::Key(_) | Principal::Telegram(_));
    let prices = *shared.prices.lock().unwrap_or_else(|p| p.into_inner());
    let max_cost = match prices.filter(|_| accounted) {
        None => 0,
        Some(prices) => {
            let ceiling = match v
                .controls
                .max_coefficient
                .or(shared.config.default_max_coefficient)
            {
                Some(c) => c,
                None => market_ceiling(shared, v.model.as_str()).await,
            };
            v.controls.max_coefficient = Some(ceiling);
            let coefficient = Coefficient::new(u64::from(ceiling)).unwrap_or(Coefficient::ONE);
            prices.max_cost(
                v.body.len(),
                v.max_tokens,
                coefficient,
                v.controls.replicas.unwrap_or(1),
            )
        }
    };
    shared.access.admit(who, v.model.as_str(), max_cost)
}

/// The highest coefficient among the workers serving `model` now; 1x when
/// none does (the proxy will say the model is not served).
async fn market_ceiling(shared: &Shared, model: &str) -> u32 {
    let mut proxy = shared.proxy.clone();
    let listed = proxy
        .list_models(ListModelsRequest {})
        .await
        .ok()
        .and_then(|r| {
            r.into_inner()
                .models
                .into_iter()
                .find(|m| m.name == model)
                .map(|m| m.max_coefficient)
        });
    listed
        .filter(|c| *c > 0)
        .unwrap_or(Coefficient::ONE.per_mille())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_core::{BasisPoints, Nanoton};

    /// The hold is the proxy's own reservation formula (crates/proxy
    /// `Payments::max_cost`): prompt bytes, max_tokens or the default, at
    /// the coefficient, for each replica.
    #[test]
    fn the_hold_is_what_the_proxy_may_reserve() {
        let list =
            PriceList::new(Nanoton::new(100), Nanoton::new(80), [BasisPoints::ONE; 4]).unwrap();
        let p = ProxyPrices {
            list,
            default_max_tokens: 4096,
        };
        let one = Coefficient::ONE;
        assert_eq!(p.max_cost(1000, Some(24), one, 1), (1000 + 24) * 100);
        assert_eq!(p.max_cost(1000, None, one, 1), (1000 + 4096) * 100);
        let double = Coefficient::new(2000).unwrap();
        assert_eq!(p.max_cost(1000, Some(24), double, 3), (1000 + 24) * 200 * 3);
    }
}
