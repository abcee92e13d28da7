//! Amounts of TON and what a request costs.

use std::fmt;

use crate::{Coefficient, Usage};

/// An amount in nanoton (10⁻⁹ TON). Held in a `u64`: every real amount fits
/// (the whole TON supply is about 5·10¹⁸ nanoton), and arithmetic is checked,
/// so an amount never wraps.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Nanoton(u64);

/// Arithmetic that would leave the range of [`Nanoton`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// A sum or product above `u64::MAX` nanoton.
    #[error("amount overflow: {0}")]
    Overflow(String),
    /// A difference below zero.
    #[error("amount underflow: {0}")]
    Underflow(String),
}

impl Nanoton {
    /// Nothing.
    pub const ZERO: Nanoton = Nanoton(0);
    /// One TON.
    pub const TON: Nanoton = Nanoton(1_000_000_000);

    /// Wraps a count of nanoton.
    pub const fn new(nanoton: u64) -> Self {
        Nanoton(nanoton)
    }

    /// The count of nanoton.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// `self + other`, or an error naming both.
    pub fn checked_add(self, other: Nanoton) -> Result<Nanoton, MoneyError> {
        self.0
            .checked_add(other.0)
            .map(Nanoton)
            .ok_or_else(|| MoneyError::Overflow(format!("{self} + {other}")))
    }

    /// `self - other`, or an error naming both.
    pub fn checked_sub(self, other: Nanoton) -> Result<Nanoton, MoneyError> {
        self.0
            .checked_sub(other.0)
            .map(Nanoton)
            .ok_or_else(|| MoneyError::Underflow(format!("{self} - {other}")))
    }

    /// `self - other`, or zero.
    pub fn saturating_sub(self, other: Nanoton) -> Nanoton {
        Nanoton(self.0.saturating_sub(other.0))
    }
}

impl fmt::Display for Nanoton {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} nanoton", self.0)
    }
}

/// A multiplier in basis points: 10000 = 1×.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct BasisPoints(u32);

impl BasisPoints {
    /// 1×.
    pub const ONE: BasisPoints = BasisPoints(10_000);
    /// Largest multiplier accepted: 100×.
    pub const MAX: u32 = 1_000_000;

    /// A multiplier of `bp` / 10000, at most 100×.
    pub fn new(bp: u32) -> Result<Self, PriceError> {
        if bp > Self::MAX {
            return Err(PriceError::Multiplier {
                found: bp,
                max: Self::MAX,
            });
        }
        Ok(BasisPoints(bp))
    }

    /// The basis points.
    pub const fn get(self) -> u32 {
        self.0
    }
}

/// A price list that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    /// A multiplier above 100×.
    #[error("a token multiplier is at most {max} basis points (100x), found {found}")]
    Multiplier {
        /// The rejected value.
        found: u32,
        /// The limit.
        max: u32,
    },
    /// Workers would earn more per token than clients pay.
    #[error("worker_fee_per_token {fee} is above price_per_token {price}: the proxy would pay out more than it takes in")]
    FeeAbovePrice {
        /// The worker fee.
        fee: Nanoton,
        /// The client price.
        price: Nanoton,
    },
    /// The cost does not fit in an amount.
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// What one token costs, by kind, before the worker's coefficient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PriceList {
    /// What a client pays per token at 1× multiplier and coefficient.
    pub price_per_token: Nanoton,
    /// What a worker earns per token likewise; the proxy keeps the rest.
    pub worker_fee_per_token: Nanoton,
    /// Multiplier for prompt tokens not served from cache.
    pub prompt: BasisPoints,
    /// Multiplier for prompt tokens served from cache.
    pub cached: BasisPoints,
    /// Multiplier for completion tokens that are not reasoning.
    pub completion: BasisPoints,
    /// Multiplier for reasoning tokens.
    pub reasoning: BasisPoints,
}

/// What a request costs the client and earns the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Charge {
    /// Paid by the client.
    pub client: Nanoton,
    /// Earned by the worker.
    pub worker: Nanoton,
}

impl Charge {
    /// What the proxy keeps.
    pub fn commission(&self) -> Nanoton {
        self.client.saturating_sub(self.worker)
    }
}

/// Basis points × per-mille: the divisor that turns weighted tokens into a price.
const SCALE: u128 = 10_000 * 1_000;

impl PriceList {
    /// A price list; the worker fee may not exceed the price.
    pub fn new(
        price_per_token: Nanoton,
        worker_fee_per_token: Nanoton,
        [prompt, cached, completion, reasoning]: [BasisPoints; 4],
    ) -> Result<Self, PriceError> {
        if worker_fee_per_token > price_per_token {
            return Err(PriceError::FeeAbovePrice {
                fee: worker_fee_per_token,
                price: price_per_token,
            });
        }
        Ok(PriceList {
            price_per_token,
            worker_fee_per_token,
            prompt,
            cached,
            completion,
            reasoning,
        })
    }

    /// Tokens weighted by their multipliers, in basis points. Cached tokens
    /// are a part of the prompt and reasoning tokens a part of the
    /// completion; each token is counted once, at its own kind's multiplier.
    fn weighted(&self, u: &Usage) -> u128 {
        let cached = u.cached.min(u.prompt);
        let reasoning = u.reasoning.min(u.completion);
        u128::from(u.prompt - cached) * u128::from(self.prompt.get())
            + u128::from(cached) * u128::from(self.cached.get())
            + u128::from(u.completion - reasoning) * u128::from(self.completion.get())
            + u128::from(reasoning) * u128::from(self.reasoning.get())
    }

    /// The cost of `usage` at a worker's `coefficient`:
    /// Σ tokens_k × mult_k / 10000 × price × coefficient / 1000, in integers
    /// with one rounding down at the end, so costs never drift and the
    /// worker's share never exceeds the client's payment.
    pub fn cost(&self, usage: &Usage, coefficient: Coefficient) -> Result<Charge, PriceError> {
        let weighted = self.weighted(usage);
        let k = u128::from(coefficient.per_mille());
        let apply = |per_token: Nanoton, who: &str| -> Result<Nanoton, PriceError> {
            let v = weighted
                .checked_mul(u128::from(per_token.get()))
                .and_then(|x| x.checked_mul(k))
                .map(|x| x / SCALE)
                .and_then(|x| u64::try_from(x).ok())
                .ok_or_else(|| {
                    MoneyError::Overflow(format!(
                        "{who} cost of {usage:?} at {per_token} per token and coefficient {k}"
                    ))
                })?;
            Ok(Nanoton(v))
        };
        Ok(Charge {
            client: apply(self.price_per_token, "client")?,
            worker: apply(self.worker_fee_per_token, "worker")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bp(v: u32) -> BasisPoints {
        BasisPoints::new(v).unwrap()
    }

    fn usage(prompt: u64, cached: u64, completion: u64, reasoning: u64) -> Usage {
        Usage {
            prompt,
            cached,
            completion,
            reasoning,
        }
    }

    /// Hand-computed: every multiplier and a non-default coefficient.
    #[test]
    fn the_pricing_table() {
        // 20 nanoton per token to clients, 15 to workers; prompt 1x, cached
        // 0.25x, completion 2x, reasoning 1.5x.
        let p = PriceList::new(
            Nanoton::new(20),
            Nanoton::new(15),
            [bp(10_000), bp(2_500), bp(20_000), bp(15_000)],
        )
        .unwrap();
        let k = |c| Coefficient::new(c).unwrap();
        let rows: &[(Usage, u64, u64, u64)] = &[
            // (usage, coefficient, client, worker)
            (usage(0, 0, 0, 0), 1000, 0, 0),
            // 100 prompt tokens at 1x: 100 × 20 = 2000; worker 1500.
            (usage(100, 0, 0, 0), 1000, 2000, 1500),
            // 40 of them cached: 60×1 + 40×0.25 = 70 tokens → 1400 / 1050.
            (usage(100, 40, 0, 0), 1000, 1400, 1050),
            // 50 completion at 2x: 100 tokens → 2000 / 1500.
            (usage(0, 0, 50, 0), 1000, 2000, 1500),
            // 50 completion, 20 reasoning: 30×2 + 20×1.5 = 90 → 1800 / 1350.
            (usage(0, 0, 50, 20), 1000, 1800, 1350),
            // Everything at coefficient 1.5: (70 + 90) × 20 × 1.5 = 4800; 160 × 15 × 1.5 = 3600.
            (usage(100, 40, 50, 20), 1500, 4800, 3600),
            // Rounding down once at the end: 1 cached token (0.25) × 20 × 0.333 = 1.665 → 1;
            // worker 0.25 × 15 × 0.333 = 1.24875 → 1.
            (usage(1, 1, 0, 0), 333, 1, 1),
            // 7 prompt tokens at coefficient 0.001: 7 × 20 × 0.001 = 0.14 → 0.
            (usage(7, 0, 0, 0), 1, 0, 0),
        ];
        for (u, c, client, worker) in rows {
            let charge = p.cost(u, k(*c)).unwrap();
            assert_eq!(
                (charge.client.get(), charge.worker.get()),
                (*client, *worker),
                "{u:?} at {c}"
            );
            assert_eq!(charge.commission().get(), client - worker);
        }
    }

    #[test]
    fn a_fee_above_the_price_and_absurd_multipliers_are_refused() {
        let err =
            PriceList::new(Nanoton::new(1), Nanoton::new(2), [BasisPoints::ONE; 4]).unwrap_err();
        assert!(err.to_string().contains("worker_fee_per_token"), "{err}");
        assert!(BasisPoints::new(1_000_001).is_err());
        // An amount that does not fit is an error, not a wrapped number.
        let p = PriceList::new(
            Nanoton::new(u64::MAX),
            Nanoton::new(1),
            [BasisPoints::ONE; 4],
        )
        .unwrap();
        let err = p
            .cost(
                &usage(u64::MAX, 0, 0, 0),
                Coefficient::new(1_000_000).unwrap(),
            )
            .unwrap_err();
        assert!(
            matches!(err, PriceError::Money(MoneyError::Overflow(_))),
            "{err}"
        );
        assert!(Nanoton::new(1).checked_sub(Nanoton::new(2)).is_err());
    }

    /// A small deterministic generator, so the property tests need no crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Cost is monotonic in every token count and in the coefficient, and
    /// the client always pays at least what the worker earns.
    #[test]
    fn cost_is_monotonic_and_covers_the_worker() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let price = r.below(1_000_000) + 1;
            let p = PriceList::new(
                Nanoton::new(price),
                Nanoton::new(r.below(price + 1)),
                [
                    bp(r.below(100_001) as u32),
                    bp(r.below(100_001) as u32),
                    bp(r.below(100_001) as u32),
                    bp(r.below(100_001) as u32),
                ],
            )
            .unwrap();
            let prompt = r.below(100_000);
            let completion = r.below(100_000);
            let u = usage(
                prompt,
                r.below(prompt + 1),
                completion,
                r.below(completion + 1),
            );
            let c = Coefficient::new(r.below(1_000_000) + 1).unwrap();
            let base = p.cost(&u, c).unwrap();
            assert!(base.client >= base.worker, "{p:?} {u:?} {c:?}");
            let more = [
                usage(u.prompt + 1, u.cached, u.completion, u.reasoning),
                usage(u.prompt + 1, u.cached + 1, u.completion, u.reasoning),
                usage(u.prompt, u.cached, u.completion + 1, u.reasoning),
                usage(u.prompt, u.cached, u.completion + 1, u.reasoning + 1),
            ];
            for m in more {
                let after = p.cost(&m, c).unwrap();
                assert!(
                    after.client >= base.client && after.worker >= base.worker,
                    "{m:?}"
                );
            }
            if c.per_mille() < 1_000_000 {
                let dearer = Coefficient::new(u64::from(c.per_mille()) + 1).unwrap();
                let after = p.cost(&u, dearer).unwrap();
                assert!(after.client >= base.client && after.worker >= base.worker);
            }
        }
    }
}
