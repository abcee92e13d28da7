//! The most a request may cost, and its admission under the caller's
//! account: computed as the proxy computes its own reservation (the same
//! price list, the prompt's bytes as a bound on its tokens, `max_tokens`
//! or the proxy's default, the highest coefficient allowed, every
//! replica), so the hold covers whatever the proxy may charge.

use cocoon_core::{Coefficient, PriceList, Usage};
use cocoon_proto::ListModelsRequest;

use axum::http::StatusCode;

use crate::access::{Admission, Principal};
use crate::openai::{ApiError, Validated};
use crate::Shared;

/// What the proxy charges, as its last hello said.
#[derive(Debug, Clone)]
pub(crate) enum Tariff {
    /// No hello yet.
    Unknown,
    /// It does not charge.
    Free,
    /// Its prices.
    Priced(ProxyPrices),
    /// It charges, but its prices are missing or not a valid list: no
    /// hold can bound a request.
    Unusable,
}

impl Tariff {
    /// From a hello.
    pub(crate) fn from_hello(hello: &cocoon_proto::ProxyHello) -> Tariff {
        if !hello.payments {
            return Tariff::Free;
        }
        let Some(p) = hello.prices.as_ref() else {
            return Tariff::Unusable;
        };
        match (
            cocoon_proto::convert::prices(p),
            cocoon_proto::convert::tier_prices(p),
        ) {
            (Ok(list), Ok(tiers)) => Tariff::Priced(ProxyPrices {
                list,
                tiers: std::sync::Arc::new(tiers),
                default_max_tokens: hello.default_max_tokens,
            }),
            _ => Tariff::Unusable,
        }
    }

    /// The prices, when known.
    pub(crate) fn prices(&self) -> Option<ProxyPrices> {
        match self {
            Tariff::Priced(p) => Some(p.clone()),
            _ => None,
        }
    }
}

/// The proxy's prices, from its hello.
#[derive(Debug, Clone)]
pub(crate) struct ProxyPrices {
    pub list: PriceList,
    /// Its tier multipliers.
    pub tiers: std::sync::Arc<cocoon_core::tier_prices::TierPrices>,
    /// Completion tokens the proxy reserves for a request without max_tokens.
    pub default_max_tokens: u64,
}

impl ProxyPrices {
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
    if !matches!(who, Principal::Key(_) | Principal::Telegram(_)) {
        return shared.access.admit(who, v.model.as_str(), 0);
    }
    let tariff = shared
        .prices
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let prices = match tariff {
        Tariff::Free => return shared.access.admit(who, v.model.as_str(), 0),
        Tariff::Priced(p) => p,
        Tariff::Unknown | Tariff::Unusable => {
            return Err(ApiError::server(
                StatusCode::SERVICE_UNAVAILABLE,
                "prices_unknown",
                "the proxy has not stated usable prices yet, so this request's cost cannot be held against your budget; try again shortly",
            ))
        }
    };
    let ceiling = match v
        .controls
        .max_coefficient
        .or(shared.config.default_max_coefficient)
    {
        Some(c) => c,
        None => market_ceiling(shared, v.model.as_str()).await?,
    };
    // One value bounds both the hold and the workers the proxy may pick.
    let coefficient = Coefficient::new(u64::from(ceiling))
        .map_err(|e| ApiError::invalid("max_coefficient", "invalid_value", e.to_string()))?;
    v.controls.max_coefficient = Some(coefficient.per_mille());
    // The worker is not known yet: hold for the dearest tier the request
    // could be served in.
    let replicas = v.controls.replicas.unwrap_or(1);
    let tiered = u64::from(coefficient.per_mille())
        .saturating_mul(prices.tiers.ceiling(&v.controls.trust, replicas))
        / u64::from(cocoon_core::BasisPoints::ONE.get());
    let held =
        Coefficient::new(tiered.clamp(1, u64::from(Coefficient::MAX))).unwrap_or(coefficient);
    let max_cost = prices.max_cost(v.body.len(), v.max_tokens, held, replicas);
    shared.access.admit(who, v.model.as_str(), max_cost)
}

/// The highest coefficient among the workers serving `model` now; 1x when
/// none does (the proxy will then say the model is not served).
async fn market_ceiling(shared: &Shared, model: &str) -> Result<u32, ApiError> {
    let mut proxy = shared.proxy.clone();
    let listed = proxy.list_models(ListModelsRequest {}).await.map_err(|s| {
        ApiError::server(
            StatusCode::SERVICE_UNAVAILABLE,
            "proxy_unavailable",
            format!(
                "cannot learn the workers' prices from the proxy to hold this request's cost: {}",
                s.message()
            ),
        )
    })?;
    let ceiling = listed
        .into_inner()
        .models
        .into_iter()
        .find(|m| m.name == model)
        .map(|m| m.max_coefficient);
    Ok(ceiling
        .filter(|c| *c > 0)
        .unwrap_or(Coefficient::ONE.per_mille()))
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
            tiers: Default::default(),
            default_max_tokens: 4096,
        };
        let one = Coefficient::ONE;
        assert_eq!(p.max_cost(1000, Some(24), one, 1), (1000 + 24) * 100);
        assert_eq!(p.max_cost(1000, None, one, 1), (1000 + 4096) * 100);
        let double = Coefficient::new(2000).unwrap();
        assert_eq!(p.max_cost(1000, Some(24), double, 3), (1000 + 24) * 200 * 3);
    }
}
