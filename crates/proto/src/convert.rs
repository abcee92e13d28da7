//! The one place where wire messages meet the domain types of
//! `cocoon-core`: handlers convert at the boundary and then see `Usage`,
//! `Endpoint`, `ModelHash` and `Coefficient`, never raw fields.

use cocoon_core::{Coefficient, CoefficientError, ModelHash, ModelHashError, Usage};

use crate::{Completion, Endpoint, Prices, TokenCounts};

impl From<Usage> for TokenCounts {
    fn from(u: Usage) -> Self {
        TokenCounts {
            prompt_tokens: u.prompt,
            cached_tokens: u.cached,
            completion_tokens: u.completion,
            reasoning_tokens: u.reasoning,
        }
    }
}

impl From<&TokenCounts> for Usage {
    fn from(c: &TokenCounts) -> Self {
        Usage {
            prompt: c.prompt_tokens,
            cached: c.cached_tokens,
            completion: c.completion_tokens,
            reasoning: c.reasoning_tokens,
        }
    }
}

impl From<&cocoon_core::PriceList> for Prices {
    fn from(p: &cocoon_core::PriceList) -> Self {
        Prices {
            price_per_token: p.price_per_token.get(),
            worker_fee_per_token: p.worker_fee_per_token.get(),
            prompt: p.prompt.get(),
            cached: p.cached.get(),
            completion: p.completion.get(),
            reasoning: p.reasoning.get(),
            ..Prices::default()
        }
    }
}

/// A price list from the wire, checked as the registry's are.
pub fn prices(p: &Prices) -> Result<cocoon_core::PriceList, cocoon_core::PriceError> {
    use cocoon_core::{BasisPoints, Nanoton};
    cocoon_core::PriceList::new(
        Nanoton::new(p.price_per_token),
        Nanoton::new(p.worker_fee_per_token),
        [
            BasisPoints::new(p.prompt)?,
            BasisPoints::new(p.cached)?,
            BasisPoints::new(p.completion)?,
            BasisPoints::new(p.reasoning)?,
        ],
    )
}

impl Completion {
    /// The answer's token counts.
    pub fn usage(&self) -> Usage {
        Usage {
            prompt: self.prompt_tokens,
            cached: self.cached_tokens,
            completion: self.completion_tokens,
            reasoning: self.reasoning_tokens,
        }
    }

    /// Sets the answer's token counts.
    pub fn set_usage(&mut self, u: Usage) {
        self.prompt_tokens = u.prompt;
        self.cached_tokens = u.cached;
        self.completion_tokens = u.completion;
        self.reasoning_tokens = u.reasoning;
    }

    /// What the answer cost the client, when the proxy charged for it:
    /// `None` from a proxy that does not charge (no cost, no voucher).
    pub fn cost(&self) -> Option<u64> {
        (self.cost_nanoton > 0 || !self.client_voucher.is_empty()).then_some(self.cost_nanoton)
    }
}

impl From<cocoon_core::Endpoint> for Endpoint {
    fn from(e: cocoon_core::Endpoint) -> Self {
        match e {
            cocoon_core::Endpoint::ChatCompletions => Endpoint::ChatCompletions,
            cocoon_core::Endpoint::Completions => Endpoint::Completions,
        }
    }
}

/// A wire endpoint that names no API operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("endpoint must be chat completions (1) or completions (2), found {0}")]
pub struct UnknownEndpoint(pub i32);

/// The API operation of a wire endpoint field.
pub fn endpoint(field: i32) -> Result<cocoon_core::Endpoint, UnknownEndpoint> {
    match Endpoint::try_from(field) {
        Ok(Endpoint::ChatCompletions) => Ok(cocoon_core::Endpoint::ChatCompletions),
        Ok(Endpoint::Completions) => Ok(cocoon_core::Endpoint::Completions),
        Ok(Endpoint::Unspecified) | Err(_) => Err(UnknownEndpoint(field)),
    }
}

/// A model hash field: empty means the peer cannot tell.
pub fn model_hash(field: &str) -> Result<Option<ModelHash>, ModelHashError> {
    if field.is_empty() {
        return Ok(None);
    }
    field.parse().map(Some)
}

/// A coefficient field.
pub fn coefficient(field: u32) -> Result<Coefficient, CoefficientError> {
    Coefficient::new(u64::from(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_survives_the_wire_both_ways() {
        let u = Usage {
            prompt: 11,
            cached: 3,
            completion: 7,
            reasoning: 2,
        };
        assert_eq!(Usage::from(&TokenCounts::from(u)), u);
        let mut c = Completion::default();
        c.set_usage(u);
        assert_eq!(c.usage(), u);
        assert_eq!(c.cost(), None, "no cost and no voucher: not charged");
        c.client_voucher = vec![1].into();
        assert_eq!(
            c.cost(),
            Some(0),
            "a voucher for a free answer is a charge of 0"
        );
    }

    #[test]
    fn endpoints_map_and_unknown_ones_are_named() {
        for e in [
            cocoon_core::Endpoint::ChatCompletions,
            cocoon_core::Endpoint::Completions,
        ] {
            assert_eq!(endpoint(Endpoint::from(e) as i32), Ok(e));
        }
        assert_eq!(endpoint(0), Err(UnknownEndpoint(0)));
        assert!(endpoint(9).unwrap_err().to_string().contains("found 9"));
    }

    #[test]
    fn an_empty_model_hash_is_unknown_and_a_bad_one_refused() {
        assert_eq!(model_hash(""), Ok(None));
        let hex = "ab".repeat(32);
        assert_eq!(model_hash(&hex).unwrap().unwrap().to_hex(), hex);
        assert!(model_hash("xyz").is_err());
    }
}

impl From<&cocoon_core::trust::TrustRequirements> for crate::TrustRequirements {
    fn from(t: &cocoon_core::trust::TrustRequirements) -> Self {
        crate::TrustRequirements {
            tee: t
                .tee
                .iter()
                .flatten()
                .map(|k| k.as_str().to_owned())
                .collect(),
            tcb: t.tcb.map(|s| s.snake_name().to_owned()).unwrap_or_default(),
            gpu: t.gpu == Some(true),
            regions: t.regions.iter().flatten().map(|r| r.to_string()).collect(),
            open: t.open == Some(true),
        }
    }
}

/// A trust requirements field that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("trust.{field}: {reason}")]
pub struct BadTrust {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// Reads a request's trust requirements; `replicas` is the request's own
/// field. Unset or empty fields demand nothing.
pub fn trust(
    wire: Option<&crate::TrustRequirements>,
    replicas: u32,
) -> Result<cocoon_core::trust::TrustRequirements, BadTrust> {
    use cocoon_core::tee::{TcbStatus, TeeKind};
    let bad = |field, reason: String| BadTrust { field, reason };
    let mut out = cocoon_core::trust::TrustRequirements {
        replicas: (replicas > 1).then_some(replicas),
        ..Default::default()
    };
    let Some(w) = wire else {
        return Ok(out);
    };
    if !w.tee.is_empty() {
        let kinds = w
            .tee
            .iter()
            .map(|k| k.parse::<TeeKind>())
            .collect::<Result<_, _>>()
            .map_err(|e| bad("tee", e.to_string()))?;
        out.tee = Some(kinds);
    }
    if !w.tcb.is_empty() {
        out.tcb = Some(
            TcbStatus::from_name(&w.tcb)
                .ok_or_else(|| bad("tcb", format!("{:?} is not a TCB status", w.tcb)))?,
        );
    }
    out.gpu = w.gpu.then_some(true);
    if !w.regions.is_empty() {
        let regions = w
            .regions
            .iter()
            .map(|r| cocoon_core::Region::new(r))
            .collect::<Result<_, _>>()
            .map_err(|e| bad("regions", e.to_string()))?;
        out.regions = Some(regions);
    }
    out.open = w.open.then_some(true);
    Ok(out)
}

impl Prices {
    /// The same prices, stating `tiers` too.
    pub fn with_tiers(mut self, tiers: &cocoon_core::tier_prices::TierPrices) -> Self {
        self.tdx = tiers.tdx.get();
        self.sev_snp = tiers.sev_snp.get();
        self.open = tiers.open.get();
        self.gpu = tiers.gpu.get();
        self.replication = tiers.replication.get();
        self.regions = tiers
            .regions
            .iter()
            .map(|(r, m)| (r.to_string(), m.get()))
            .collect();
        self.models = tiers
            .models
            .iter()
            .map(|(h, m)| (h.to_hex(), m.get()))
            .collect();
        self
    }
}

/// The tier multipliers a price list states, checked as the registry's
/// are; 0 reads as 1x (a peer that states none).
pub fn tier_prices(p: &Prices) -> Result<cocoon_core::tier_prices::TierPrices, String> {
    use cocoon_core::BasisPoints;
    let m = |bp: u32| match bp {
        0 => Ok(BasisPoints::ONE),
        n => BasisPoints::new(n).map_err(|e| e.to_string()),
    };
    let mut regions = std::collections::BTreeMap::new();
    for (r, v) in &p.regions {
        regions.insert(
            cocoon_core::Region::new(r).map_err(|e| e.to_string())?,
            m(*v)?,
        );
    }
    let mut models = std::collections::BTreeMap::new();
    for (h, v) in &p.models {
        let hash = h
            .parse::<ModelHash>()
            .map_err(|e| format!("model {h:?}: {e}"))?;
        models.insert(hash, m(*v)?);
    }
    let tiers = cocoon_core::tier_prices::TierPrices {
        tdx: m(p.tdx)?,
        sev_snp: m(p.sev_snp)?,
        open: m(p.open)?,
        gpu: m(p.gpu)?,
        replication: m(p.replication)?,
        regions,
        models,
    };
    tiers.check().map_err(|e| e.to_string())?;
    Ok(tiers)
}

impl From<&cocoon_core::tier_prices::CostFactor> for crate::CostFactor {
    fn from(f: &cocoon_core::tier_prices::CostFactor) -> Self {
        crate::CostFactor {
            name: f.name.to_owned(),
            value: f.value.clone(),
            multiplier_bp: f.multiplier_bp,
        }
    }
}
