use std::sync::Arc;

use crate::{InsecureAcceptAny, PeerVerifier};

/// The peer verification policy a node was configured with. There is no
/// default: an operator must name one, so that running without
/// authentication is always a visible decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerPolicy {
    /// Accept any peer (encrypted, not authenticated). Development only.
    InsecureNone,
}

/// A policy name that is not known.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown peer policy {found:?}: the only policy available is \"none\" (insecure, development only)")]
pub struct PeerPolicyError {
    /// The rejected name.
    pub found: String,
}

impl std::str::FromStr for PeerPolicy {
    type Err = PeerPolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(PeerPolicy::InsecureNone),
            other => Err(PeerPolicyError {
                found: other.to_string(),
            }),
        }
    }
}

impl std::fmt::Display for PeerPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerPolicy::InsecureNone => f.write_str("none"),
        }
    }
}

impl PeerPolicy {
    /// Builds the verifier for this policy. `context` names the connection
    /// it guards, for the warning an insecure policy logs.
    pub fn verifier(self, context: &str) -> Arc<dyn PeerVerifier> {
        match self {
            PeerPolicy::InsecureNone => Arc::new(InsecureAcceptAny::new(context)),
        }
    }
}
