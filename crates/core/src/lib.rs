//! Shared vocabulary of the Cocoon network: identifiers, model names, price
//! coefficients and token usage. This crate performs no I/O so that every
//! role (client, proxy, worker) and every later concern (attestation,
//! payments, chain) can agree on the same types.

mod coefficient;
pub mod ed25519;
mod ids;
mod model;
mod money;
mod region;
pub mod tee;
pub mod tier_prices;
pub mod trust;
mod usage;

pub use coefficient::{Coefficient, CoefficientError};
pub use ids::{RequestId, RequestIdError};
pub use model::{ModelName, ModelNameError};
pub use money::{BasisPoints, Charge, MoneyError, Nanoton, PriceError, PriceList};
pub use region::{Region, RegionError, MAX_REGION_LEN};
pub use usage::Usage;

/// The current time in UNIX seconds (0 if the clock is before 1970): the one
/// clock reading every time check in the network uses.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The UTC calendar date and time of day of `unix` seconds: (year,
/// month 1-12, day 1-31, seconds into the day). Howard Hinnant's
/// civil_from_days, valid for any date from 1970 on.
pub fn utc_date(unix: u64) -> (i64, u32, u32, u32) {
    let days = (unix / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, (unix % 86_400) as u32)
}

/// How long a request may take when neither the app nor the node's
/// configuration says: the one default every role uses.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Version of the client↔proxy and worker↔proxy wire protocol. Peers with a
/// different major version refuse each other with a message naming both.
pub const PROTOCOL_VERSION: u32 = 1;

/// Roles a node can play in the network.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Speaks the OpenAI API to apps and forwards to a proxy.
    Client,
    /// Routes requests between clients and workers, meters them.
    Proxy,
    /// Runs inference on an engine.
    Worker,
}

impl Role {
    /// Lower-case name used in logs, metrics and certificates.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Proxy => "proxy",
            Role::Worker => "worker",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The OpenAI API operation a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/completions`
    Completions,
}

impl Endpoint {
    /// Path below the API base (`/chat/completions`).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
        }
    }
}

mod model_hash;
pub use model_hash::{ModelHash, ModelHashError};
