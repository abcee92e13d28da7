//! Prices by trust tier: what a request pays on top of the token price for
//! the tier it demanded and the worker that served it.
//!
//! A request is charged at an effective coefficient: the worker's own
//! coefficient times each factor that applies, in this order, each step
//! rounded down to a whole per-mille:
//!
//! 1. `tee`: the worker's TEE kind (`tdx`, `sev-snp`: the privacy
//!    premium), or `open` for an open-tier worker (a discount);
//! 2. `gpu`: the request demanded an attested GPU;
//! 3. `region`: the request demanded regions (the domicile surcharge of
//!    the most specific listed region the worker's lies within);
//! 4. `model`: the weights' size class (their VRAM footprint), listed by
//!    model hash;
//! 5. `replication`: the request runs on more than one worker (every run
//!    is charged at it).
//!
//! A factor whose multiplier is not listed is 1× and not shown. The cost is
//! then `PriceList::cost` at the effective coefficient.

use std::collections::BTreeMap;

use crate::money::{BasisPoints, PriceError};
use crate::tee::TeeKind;
use crate::trust::{TrustOffer, TrustRequirements};
use crate::{Coefficient, CoefficientError, ModelHash, Region};

/// Multipliers by tier, basis points (10000 = 1×), each 1 to 1000000.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierPrices {
    /// Workers in Intel TDX.
    pub tdx: BasisPoints,
    /// Workers in AMD SEV-SNP.
    pub sev_snp: BasisPoints,
    /// Open-tier workers (no TEE).
    pub open: BasisPoints,
    /// Requests that demand an attested GPU.
    pub gpu: BasisPoints,
    /// Each run of a replicated request.
    pub replication: BasisPoints,
    /// Domicile surcharges of requests that demand regions, by region.
    pub regions: BTreeMap<Region, BasisPoints>,
    /// Size classes, by the SHA-256 of the weights.
    pub models: BTreeMap<ModelHash, BasisPoints>,
}

impl Default for TierPrices {
    fn default() -> Self {
        TierPrices {
            tdx: BasisPoints::ONE,
            sev_snp: BasisPoints::ONE,
            open: BasisPoints::ONE,
            gpu: BasisPoints::ONE,
            replication: BasisPoints::ONE,
            regions: BTreeMap::new(),
            models: BTreeMap::new(),
        }
    }
}

/// One factor applied to a request's price.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CostFactor {
    /// `tee`, `gpu`, `region`, `model` or `replication`.
    pub name: &'static str,
    /// What it was applied for: `tdx`, `open`, `eu-west`, a model hash, `3 runs`.
    pub value: String,
    /// The multiplier, basis points.
    pub multiplier_bp: u32,
}

/// The factors applied to one run of a request, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct CostFactors(pub Vec<CostFactor>);

/// A request whose factors push its coefficient out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the tier factors {factors} take coefficient {base} to {found} per-mille, beyond what a coefficient may be ({source})")]
pub struct TierOverflow {
    /// The worker's coefficient.
    pub base: u32,
    /// The factors, shown.
    pub factors: String,
    /// Where they took it.
    pub found: u64,
    /// The coefficient's bound.
    pub source: CoefficientError,
}

impl TierPrices {
    /// Checks every multiplier is 1 to 1000000 basis points.
    pub fn check(&self) -> Result<(), PriceError> {
        let all = [
            self.tdx,
            self.sev_snp,
            self.open,
            self.gpu,
            self.replication,
        ]
        .into_iter()
        .chain(self.regions.values().copied())
        .chain(self.models.values().copied());
        for m in all {
            if m.get() == 0 {
                return Err(PriceError::Multiplier {
                    found: 0,
                    max: BasisPoints::MAX,
                });
            }
        }
        Ok(())
    }

    /// The factors for a run on `offer`'s worker, serving weights `model`,
    /// of a request demanding `demanded` over `replicas` runs.
    pub fn factors(
        &self,
        offer: &TrustOffer,
        model: Option<&ModelHash>,
        demanded: &TrustRequirements,
        replicas: u32,
    ) -> CostFactors {
        let mut out = Vec::new();
        let mut push = |name, value: String, m: BasisPoints| {
            if m != BasisPoints::ONE {
                out.push(CostFactor {
                    name,
                    value,
                    multiplier_bp: m.get(),
                });
            }
        };
        let tee = match (offer.open, offer.tee) {
            (true, _) => Some(("open".to_owned(), self.open)),
            (false, Some(TeeKind::Tdx)) => Some(("tdx".to_owned(), self.tdx)),
            (false, Some(TeeKind::SevSnp)) => Some(("sev-snp".to_owned(), self.sev_snp)),
            _ => None,
        };
        if let Some((value, m)) = tee {
            push("tee", value, m);
        }
        if demanded.gpu == Some(true) {
            push("gpu", "attested".to_owned(), self.gpu);
        }
        if let (Some(_), Some(region)) = (&demanded.regions, &offer.region) {
            if let Some((listed, m)) = self.region(region) {
                push("region", listed.to_string(), m);
            }
        }
        if let Some((hash, m)) = model.and_then(|h| self.models.get(h).map(|m| (h, *m))) {
            push("model", hash.to_hex(), m);
        }
        if replicas > 1 {
            push("replication", format!("{replicas} runs"), self.replication);
        }
        CostFactors(out)
    }

    /// The most specific listed region `region` lies within.
    fn region(&self, region: &Region) -> Option<(&Region, BasisPoints)> {
        self.regions
            .iter()
            .filter(|(listed, _)| region.within(listed))
            .max_by_key(|(listed, _)| listed.as_str().len())
            .map(|(r, m)| (r, *m))
    }

    /// At least the largest factor product any worker could bring a request for
    /// `demanded` over `replicas` runs, basis points: what a client holds
    /// for before it knows the worker.
    pub fn ceiling(&self, demanded: &TrustRequirements, replicas: u32) -> u64 {
        let one = u64::from(BasisPoints::ONE.get());
        let bp = |m: BasisPoints| u64::from(m.get());
        let mut tee = [self.tdx, self.sev_snp, BasisPoints::ONE]
            .into_iter()
            .map(bp)
            .max()
            .unwrap_or(one);
        if demanded.accepts_open() {
            tee = tee.max(bp(self.open));
        }
        let gpu = if demanded.gpu == Some(true) {
            bp(self.gpu)
        } else {
            one
        };
        let region = match &demanded.regions {
            Some(_) => self
                .regions
                .values()
                .copied()
                .map(bp)
                .max()
                .unwrap_or(one)
                .max(one),
            None => one,
        };
        let model = self
            .models
            .values()
            .copied()
            .map(bp)
            .max()
            .unwrap_or(one)
            .max(one);
        let replication = if replicas > 1 {
            bp(self.replication).max(one)
        } else {
            one
        };
        // Rounded up at each step: the hold never falls short of a charge,
        // which rounds down.
        [gpu, region, model, replication]
            .into_iter()
            .fold(tee, |acc, m| acc.saturating_mul(m).div_ceil(one))
    }
}

impl CostFactors {
    /// `coefficient` with every factor applied in order, each step rounded
    /// down to a whole per-mille.
    pub fn apply(&self, coefficient: Coefficient) -> Result<Coefficient, TierOverflow> {
        let one = u64::from(BasisPoints::ONE.get());
        let found = self
            .0
            .iter()
            .fold(u64::from(coefficient.per_mille()), |c, f| {
                c.saturating_mul(u64::from(f.multiplier_bp)) / one
            });
        Coefficient::new(found).map_err(|source| TierOverflow {
            base: coefficient.per_mille(),
            factors: self.to_string(),
            found,
            source,
        })
    }
}

impl std::fmt::Display for CostFactors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(
                f,
                "{} {} ×{}.{:04}",
                c.name,
                c.value,
                c.multiplier_bp / 10_000,
                c.multiplier_bp % 10_000
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tee::TcbStatus;

    fn bp(v: u32) -> BasisPoints {
        BasisPoints::new(v).unwrap()
    }

    fn region(s: &str) -> Region {
        Region::new(s).unwrap()
    }

    fn prices() -> TierPrices {
        TierPrices {
            tdx: bp(12_000),
            sev_snp: bp(11_000),
            open: bp(5_000),
            gpu: bp(15_000),
            replication: bp(9_000),
            regions: [(region("eu"), bp(11_000)), (region("eu-west"), bp(13_000))].into(),
            models: [(ModelHash::from_bytes([7; 32]), bp(20_000))].into(),
        }
    }

    fn offer(open: bool, tee: Option<TeeKind>, r: &str) -> TrustOffer {
        TrustOffer {
            open,
            tee,
            tcb: TcbStatus::UpToDate,
            gpu: None,
            region: Some(region(r)),
        }
    }

    /// Hand-computed: each factor, then all of them, at a non-default
    /// coefficient, each step rounded down.
    #[test]
    fn the_tier_table() {
        let p = prices();
        let k = |c| Coefficient::new(c).unwrap();
        let demand = |gpu: bool, regions: bool| TrustRequirements {
            gpu: gpu.then_some(true),
            regions: regions.then(|| [region("eu")].into()),
            ..Default::default()
        };
        let tdx_eu = offer(false, Some(TeeKind::Tdx), "eu-west-2");
        let big = ModelHash::from_bytes([7; 32]);
        let rows: Vec<(
            TrustOffer,
            Option<ModelHash>,
            TrustRequirements,
            u32,
            u64,
            u64,
        )> = vec![
            // (offer, model, demanded, replicas, coefficient, effective)
            // A sim worker, nothing demanded: 1000.
            (
                offer(false, Some(TeeKind::Sim), "us"),
                None,
                demand(false, false),
                1,
                1000,
                1000,
            ),
            // TDX: ×1.2.
            (tdx_eu.clone(), None, demand(false, false), 1, 1000, 1200),
            // TDX and a GPU: 1000 × 1.2 × 1.5 = 1800.
            (tdx_eu.clone(), None, demand(true, false), 1, 1000, 1800),
            // The most specific region wins: eu-west ×1.3, 1200 × 1.3 = 1560.
            (tdx_eu.clone(), None, demand(false, true), 1, 1000, 1560),
            // Everything at 1.333: 1333 → ×1.2 = 1599.6 → 1599 → ×1.5 = 2398.5
            // → 2398 → ×1.3 = 3117.4 → 3117 → ×2 = 6234 → ×0.9 = 5610.6 → 5610.
            (tdx_eu.clone(), Some(big), demand(true, true), 3, 1333, 5610),
            // The open tier at half price: 1000 × 0.5 = 500.
            (
                offer(true, None, "us"),
                None,
                demand(false, false),
                1,
                1000,
                500,
            ),
            // SEV-SNP, 1 per-mille: 1 × 1.1 = 1.1 → 1.
            (
                offer(false, Some(TeeKind::SevSnp), "us"),
                None,
                demand(false, false),
                1,
                1,
                1,
            ),
        ];
        for (o, m, d, n, c, want) in rows {
            let f = p.factors(&o, m.as_ref(), &d, n);
            let got = f.apply(k(c)).unwrap().per_mille();
            assert_eq!(u64::from(got), want, "{o} {d:?} {n}: {f}");
            assert!(
                u64::from(got) * 10_000 <= c * p.ceiling(&d, n),
                "{f}: the ceiling holds enough"
            );
        }
    }

    #[test]
    fn factors_name_what_applied_and_an_overflow_is_refused() {
        let p = prices();
        let d = TrustRequirements {
            gpu: Some(true),
            regions: Some([region("eu")].into()),
            ..Default::default()
        };
        let f = p.factors(&offer(false, Some(TeeKind::Tdx), "eu"), None, &d, 2);
        assert_eq!(
            f.to_string(),
            "tee tdx ×1.2000, gpu attested ×1.5000, region eu ×1.1000, replication 2 runs ×0.9000"
        );
        let k = Coefficient::new(u64::from(Coefficient::MAX)).unwrap();
        assert!(f.apply(k).is_err());
        // A zero multiplier would make the request free: refused.
        let zero = TierPrices {
            gpu: BasisPoints::new(0).unwrap(),
            ..TierPrices::default()
        };
        assert!(zero.check().is_err());
        assert!(prices().check().is_ok());
    }
}
