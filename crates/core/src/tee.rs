//! The kinds of trusted execution environment and how current a platform's
//! TCB is: the vocabulary attestation verifies and requests demand.

use std::fmt;

/// A kind of trusted execution environment.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub enum TeeKind {
    /// Intel TDX.
    Tdx,
    /// AMD SEV-SNP.
    SevSnp,
    /// The simulated TEE: development only, proves nothing.
    Sim,
    /// No TEE at all: an open-tier worker, admitted only by an explicit
    /// policy section and a registry listing, serving only requests that
    /// accept the open tier.
    None,
}

impl TeeKind {
    /// `tdx`, `sev-snp` or `sim`.
    pub fn as_str(self) -> &'static str {
        match self {
            TeeKind::Tdx => "tdx",
            TeeKind::SevSnp => "sev-snp",
            TeeKind::Sim => "sim",
            TeeKind::None => "none",
        }
    }
}

impl fmt::Display for TeeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A TEE kind name that is not known.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown TEE kind {0:?}: expected tdx, sev-snp, sim or none")]
pub struct TeeKindError(pub String);

impl std::str::FromStr for TeeKind {
    type Err = TeeKindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tdx" => Ok(TeeKind::Tdx),
            "sev-snp" | "snp" => Ok(TeeKind::SevSnp),
            "sim" => Ok(TeeKind::Sim),
            "none" => Ok(TeeKind::None),
            other => Err(TeeKindError(other.to_owned())),
        }
    }
}

/// How current a platform's TCB is, lowest first. TDX reports Intel's
/// status; SEV-SNP and sim evidence, which have no such service, count as
/// `UpToDate` once their own checks pass.
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
#[serde(try_from = "String", into = "String")]
pub enum TcbStatus {
    /// A status this verifier does not know: ranked below everything.
    #[default]
    Unknown,
    /// The platform's keys are revoked.
    Revoked,
    /// Out of date and needs configuration.
    OutOfDateConfigurationNeeded,
    /// Out of date.
    OutOfDate,
    /// Needs configuration and software hardening.
    ConfigurationAndSWHardeningNeeded,
    /// Needs configuration.
    ConfigurationNeeded,
    /// Needs software hardening.
    SWHardeningNeeded,
    /// Current.
    UpToDate,
}

impl TcbStatus {
    /// Intel's name for the status.
    pub fn as_str(self) -> &'static str {
        match self {
            TcbStatus::Unknown => "Unknown",
            TcbStatus::Revoked => "Revoked",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::SWHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::UpToDate => "UpToDate",
        }
    }

    /// The name requests and answers use: `up_to_date`, `out_of_date`, ...
    pub fn snake_name(self) -> &'static str {
        match self {
            TcbStatus::Unknown => "unknown",
            TcbStatus::Revoked => "revoked",
            TcbStatus::OutOfDateConfigurationNeeded => "out_of_date_configuration_needed",
            TcbStatus::OutOfDate => "out_of_date",
            TcbStatus::ConfigurationAndSWHardeningNeeded => "configuration_and_sw_hardening_needed",
            TcbStatus::ConfigurationNeeded => "configuration_needed",
            TcbStatus::SWHardeningNeeded => "sw_hardening_needed",
            TcbStatus::UpToDate => "up_to_date",
        }
    }

    /// Reads a status by its snake_case name or Intel's; `None` for anything
    /// else (including `unknown`, which no one can demand).
    pub fn from_name(s: &str) -> Option<Self> {
        let t = TcbStatus::parse(s);
        if t != TcbStatus::Unknown {
            return Some(t);
        }
        TcbStatus::ALL
            .into_iter()
            .find(|t| *t != TcbStatus::Unknown && t.snake_name() == s)
    }

    /// Every status, lowest first.
    pub const ALL: [TcbStatus; 8] = [
        TcbStatus::Unknown,
        TcbStatus::Revoked,
        TcbStatus::OutOfDateConfigurationNeeded,
        TcbStatus::OutOfDate,
        TcbStatus::ConfigurationAndSWHardeningNeeded,
        TcbStatus::ConfigurationNeeded,
        TcbStatus::SWHardeningNeeded,
        TcbStatus::UpToDate,
    ];

    /// Parses Intel's name; anything else is `Unknown`.
    pub fn parse(s: &str) -> Self {
        TcbStatus::ALL
            .into_iter()
            .find(|t| *t != TcbStatus::Unknown && t.as_str() == s)
            .unwrap_or(TcbStatus::Unknown)
    }
}

impl fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for TeeKind {
    type Error = TeeKindError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TeeKind> for String {
    fn from(k: TeeKind) -> Self {
        k.as_str().to_owned()
    }
}

/// A TCB status name that is not known.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown TCB status {0:?}: expected up_to_date, sw_hardening_needed, configuration_needed, configuration_and_sw_hardening_needed, out_of_date, out_of_date_configuration_needed or revoked")]
pub struct TcbStatusError(pub String);

impl TryFrom<String> for TcbStatus {
    type Error = TcbStatusError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TcbStatus::from_name(&s).ok_or(TcbStatusError(s))
    }
}

impl From<TcbStatus> for String {
    fn from(t: TcbStatus) -> Self {
        t.snake_name().to_owned()
    }
}
