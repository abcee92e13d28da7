use std::fmt;

/// Name under which a model is served and requested (`"SmolLM2-135M-Instruct"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ModelName(String);

/// Why a string is not a valid [`ModelName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model name must be 1 to 256 printable characters without whitespace, found {found:?}")]
pub struct ModelNameError {
    /// The rejected string (truncated).
    pub found: String,
}

impl ModelName {
    /// Checks and wraps a model name.
    pub fn new(s: &str) -> Result<Self, ModelNameError> {
        let ok = !s.is_empty()
            && s.len() <= 256
            && s.chars().all(|c| !c.is_whitespace() && !c.is_control());
        if ok {
            Ok(ModelName(s.to_owned()))
        } else {
            Err(ModelNameError {
                found: s.chars().take(80).collect(),
            })
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ModelName {
    type Err = ModelNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelName::new(s)
    }
}

impl<'de> serde::Deserialize<'de> for ModelName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ModelName::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert!(ModelName::new("SmolLM2-135M-Instruct").is_ok());
        assert!(ModelName::new("org/model:q4").is_ok());
        assert!(ModelName::new("").is_err());
        assert!(ModelName::new("a b").is_err());
        assert!(ModelName::new(&"m".repeat(257)).is_err());
    }
}
