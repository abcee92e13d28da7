use std::fmt;

/// Identity of a model: the SHA-256 of its weights file (GGUF). Workers
/// announce it, answers name it, and the registry will allow-list it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelHash([u8; 32]);

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a model hash is 64 hexadecimal digits (SHA-256), found {found:?}")]
pub struct ModelHashError {
    /// The rejected string (truncated).
    pub found: String,
}

impl ModelHash {
    /// Wraps a digest.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ModelHash(bytes)
    }

    /// The digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::str::FromStr for ModelHash {
    type Err = ModelHashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ModelHashError {
            found: s.chars().take(80).collect(),
        };
        if s.len() != 64 || !s.is_ascii() {
            return Err(err());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| err())?;
        }
        Ok(ModelHash(out))
    }
}

impl fmt::Display for ModelHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ModelHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModelHash({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let hex = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
        let h: ModelHash = hex.parse().unwrap();
        assert_eq!(h.to_string(), hex);
        assert!("b179".parse::<ModelHash>().is_err());
        assert!(hex.replace('b', "g").parse::<ModelHash>().is_err());
        assert!(hex.to_uppercase().parse::<ModelHash>().is_ok());
    }
}
