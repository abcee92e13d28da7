use std::fmt;

/// A worker's price coefficient in per-mille: 1000 means the network's base
/// price, 1500 means 1.5×. Zero is not a price; the upper bound keeps cost
/// arithmetic far from overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Coefficient(u32);

/// Why a number is not a valid [`Coefficient`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("price coefficient must be between {min} and {max} per-mille, found {found}")]
pub struct CoefficientError {
    /// Smallest accepted value.
    pub min: u32,
    /// Largest accepted value.
    pub max: u32,
    /// The rejected value.
    pub found: u64,
}

impl Coefficient {
    /// Smallest accepted coefficient (0.001×).
    pub const MIN: u32 = 1;
    /// Largest accepted coefficient (1000×).
    pub const MAX: u32 = 1_000_000;
    /// The base price, 1×.
    pub const ONE: Coefficient = Coefficient(1000);

    /// Checks the range and wraps the value.
    pub fn new(per_mille: u64) -> Result<Self, CoefficientError> {
        if (Self::MIN as u64..=Self::MAX as u64).contains(&per_mille) {
            Ok(Coefficient(per_mille as u32))
        } else {
            Err(CoefficientError {
                min: Self::MIN,
                max: Self::MAX,
                found: per_mille,
            })
        }
    }

    /// The value in per-mille.
    pub fn per_mille(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Coefficient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for Coefficient {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n: u64 = s.trim().parse().map_err(|_| {
            format!("price coefficient must be an integer in per-mille, found {s:?}")
        })?;
        Coefficient::new(n).map_err(|e| e.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Coefficient {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        Coefficient::new(n).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_enforced() {
        assert!(Coefficient::new(0).is_err());
        assert_eq!(Coefficient::new(1).unwrap().per_mille(), 1);
        assert_eq!(Coefficient::new(1_000_000).unwrap().per_mille(), 1_000_000);
        let err = Coefficient::new(1_000_001).unwrap_err();
        assert_eq!(err.found, 1_000_001);
        assert!(err.to_string().contains("1000001"));
        assert!("abc".parse::<Coefficient>().is_err());
        assert_eq!("1500".parse::<Coefficient>().unwrap().per_mille(), 1500);
    }
}
