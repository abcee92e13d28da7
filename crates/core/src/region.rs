//! Where a worker declares it runs: a region name its operator configures,
//! binds into its attested claims and registers on chain.
//!
//! Hardware cannot prove where it is. A region proves that the attested
//! image was configured for it and that the operator declared it; nothing
//! more.

use std::fmt;

/// A region name: 1 to 32 characters, lowercase ASCII letters, digits and
/// `-`, starting with a letter, e.g. `eu`, `eu-west`, `us-east-1`. Regions
/// nest by `-`: `eu-west` lies within `eu`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);

/// A region name that is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("region {found:?}: {reason}")]
pub struct RegionError {
    /// What was given.
    pub found: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Longest region name.
pub const MAX_REGION_LEN: usize = 32;

impl Region {
    /// Checks and wraps a region name.
    pub fn new(name: &str) -> Result<Self, RegionError> {
        let bad = |reason| {
            Err(RegionError {
                found: name.chars().take(64).collect(),
                reason,
            })
        };
        if name.is_empty() || name.len() > MAX_REGION_LEN {
            return bad("must be 1 to 32 characters");
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return bad("must start with a lowercase letter");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad("may hold only lowercase letters, digits and '-'");
        }
        if name.ends_with('-') || name.contains("--") {
            return bad("'-' separates parts and cannot end one or repeat");
        }
        Ok(Region(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this region is `outer` or lies within it (`eu-west` within
    /// `eu`, not within `e`).
    pub fn within(&self, outer: &Region) -> bool {
        self.0 == outer.0
            || self
                .0
                .strip_prefix(outer.0.as_str())
                .is_some_and(|rest| rest.starts_with('-'))
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Region {
    type Error = RegionError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Region::new(&s)
    }
}

impl From<Region> for String {
    fn from(r: Region) -> Self {
        r.0
    }
}

impl std::str::FromStr for Region {
    type Err = RegionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Region::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_checked_and_nest_by_dash() {
        for good in ["eu", "eu-west", "us-east-1", "a"] {
            assert_eq!(Region::new(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "EU",
            "1eu",
            "eu_west",
            "eu-",
            "eu--w",
            &"e".repeat(33),
            "é",
        ] {
            assert!(Region::new(bad).is_err(), "{bad}");
        }
        let r = |s| Region::new(s).unwrap();
        assert!(r("eu-west").within(&r("eu")));
        assert!(r("eu").within(&r("eu")));
        assert!(!r("eu").within(&r("eu-west")));
        assert!(!r("europe").within(&r("eu")));
        assert!(!r("us-east").within(&r("eu")));
    }
}
