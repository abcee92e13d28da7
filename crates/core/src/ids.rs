use std::fmt;

/// Identifier of one request, chosen by the client and carried by every hop,
/// log line and response so that one request can be followed end to end.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(String);

/// Why a string is not a valid [`RequestId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("request id must be 1 to 64 characters of [A-Za-z0-9_-], found {found:?}")]
pub struct RequestIdError {
    /// The rejected string (truncated).
    pub found: String,
}

impl RequestId {
    /// A fresh random id.
    pub fn generate() -> Self {
        RequestId(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Parses an id received from a peer.
    pub fn parse(s: &str) -> Result<Self, RequestIdError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(RequestId(s.to_owned()))
        } else {
            Err(RequestIdError {
                found: s.chars().take(80).collect(),
            })
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_differ() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a, b);
        assert_eq!(RequestId::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn bad_ids_are_rejected() {
        assert!(RequestId::parse("").is_err());
        assert!(RequestId::parse("a b").is_err());
        assert!(RequestId::parse(&"x".repeat(65)).is_err());
        assert!(RequestId::parse("abc-DEF_123").is_ok());
    }
}
