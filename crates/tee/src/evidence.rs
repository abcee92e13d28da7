//! One envelope for every TEE kind's evidence, and one verifier over it.

use std::fmt;

use crate::{sim, snp, tdx, ImageHash};

pub use cocoon_core::tee::{TcbStatus, TeeKind, TeeKindError};

/// The envelope's tag for each kind.
fn kind_tag(kind: TeeKind) -> u8 {
    match kind {
        TeeKind::Tdx => 1,
        TeeKind::SevSnp => 2,
        TeeKind::Sim => 3,
        TeeKind::None => 4,
    }
}

/// Evidence as carried in an RA-TLS certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// A TDX DCAP quote, with the collateral to check it when the attester
    /// had it (collateral is signed by Intel, so carrying it is safe).
    Tdx {
        /// The raw quote.
        quote: Vec<u8>,
        /// QuoteCollateralV3 JSON, if attached.
        collateral: Option<Vec<u8>>,
    },
    /// An SEV-SNP report with its VCEK or VLEK and the AMD chain.
    SevSnp {
        /// The raw 1184-byte report.
        report: Vec<u8>,
        /// The endorsement key certificate (DER or PEM).
        vek: Vec<u8>,
        /// ASK or ASVK, and ARK (PEM).
        chain: Vec<u8>,
    },
    /// A sim quote.
    Sim {
        /// The raw sim quote.
        quote: Vec<u8>,
    },
    /// No TEE (the open tier): nothing to verify, and nothing proved.
    None,
}

/// Evidence that could not be decoded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("evidence encoding: {0}")]
pub struct EvidenceDecodeError(String);

const ENVELOPE_VERSION: u8 = 1;

impl Evidence {
    /// The TEE kind.
    pub fn kind(&self) -> TeeKind {
        match self {
            Evidence::Tdx { .. } => TeeKind::Tdx,
            Evidence::SevSnp { .. } => TeeKind::SevSnp,
            Evidence::Sim { .. } => TeeKind::Sim,
            Evidence::None => TeeKind::None,
        }
    }

    fn fields(&self) -> Vec<&[u8]> {
        match self {
            Evidence::Tdx { quote, collateral } => {
                vec![quote, collateral.as_deref().unwrap_or_default()]
            }
            Evidence::SevSnp { report, vek, chain } => vec![report, vek, chain],
            Evidence::Sim { quote } => vec![quote],
            Evidence::None => Vec::new(),
        }
    }

    /// Encoding: version, kind tag, then each field as a 4-byte big-endian
    /// length and its bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ENVELOPE_VERSION, kind_tag(self.kind())];
        for f in self.fields() {
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    /// Strict inverse of [`Evidence::encode`]: trailing bytes are refused.
    pub fn decode(bytes: &[u8]) -> Result<Self, EvidenceDecodeError> {
        let err = |m: String| EvidenceDecodeError(m);
        let [version, tag, rest @ ..] = bytes else {
            return Err(err(format!("{} bytes, too short", bytes.len())));
        };
        if *version != ENVELOPE_VERSION {
            return Err(err(format!(
                "version {version}, this verifier reads {ENVELOPE_VERSION}"
            )));
        }
        let mut rest = rest;
        let mut next = |name: &str| -> Result<Vec<u8>, EvidenceDecodeError> {
            if rest.len() < 4 {
                return Err(err(format!("{name}: length missing")));
            }
            let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if rest.len() - 4 < n {
                return Err(err(format!(
                    "{name}: {n} bytes announced, {} present",
                    rest.len() - 4
                )));
            }
            let v = rest[4..4 + n].to_vec();
            rest = &rest[4 + n..];
            Ok(v)
        };
        let ev = match tag {
            1 => {
                let quote = next("quote")?;
                let collateral = next("collateral")?;
                Evidence::Tdx {
                    quote,
                    collateral: (!collateral.is_empty()).then_some(collateral),
                }
            }
            2 => Evidence::SevSnp {
                report: next("report")?,
                vek: next("vek")?,
                chain: next("chain")?,
            },
            3 => Evidence::Sim {
                quote: next("quote")?,
            },
            4 => Evidence::None,
            other => return Err(err(format!("unknown TEE kind tag {other}"))),
        };
        if !rest.is_empty() {
            return Err(err(format!("{} trailing bytes", rest.len())));
        }
        Ok(ev)
    }
}

/// What verified evidence proves, whatever its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEvidence {
    /// The TEE kind.
    pub kind: TeeKind,
    /// Identity of the code.
    pub image_hash: ImageHash,
    /// The 64 bytes the TEE bound into the evidence.
    pub report_data: [u8; 64],
    /// Platform TCB status.
    pub tcb_status: TcbStatus,
    /// Security advisories that apply (TDX).
    pub advisories: Vec<String>,
    /// Measurement registers, named, hex: for people reading logs and stats.
    pub measurements: Vec<(&'static str, String)>,
}

/// Where TDX collateral comes from when the evidence does not carry it.
pub trait CollateralSource: Send + Sync + fmt::Debug {
    /// QuoteCollateralV3 JSON for this quote, current at `now` (UNIX seconds).
    fn collateral(&self, quote: &[u8], now: u64) -> Result<Vec<u8>, CollateralError>;
}

/// Why no collateral could be had for a quote.
#[derive(Debug, thiserror::Error)]
pub enum CollateralError {
    /// The quote carries none and nothing else provides it.
    #[error("the quote carries none and no collateral source is configured")]
    NotConfigured,
    /// The collateral file is empty.
    #[error("{0} is empty")]
    EmptyFile(String),
    /// The quote does not name what collateral it needs.
    #[error("{what}: {reason}")]
    Quote {
        /// What was read of the quote.
        what: &'static str,
        /// What the quote parser said.
        reason: String,
    },
    /// The PCCS could not provide it.
    #[error("PCCS {endpoint} for FMSPC {fmspc}: {error}")]
    Pccs {
        /// The PCCS, host:port.
        endpoint: String,
        /// The platform's FMSPC.
        fmspc: String,
        /// What failed.
        error: crate::pccs::PccsError,
    },
}

/// Collateral read once from a file (offline verification, or a node
/// given collateral by its operator): the same JSON for every quote.
#[derive(Debug, Clone)]
pub struct FileCollateral {
    path: String,
    json: Vec<u8>,
}

impl FileCollateral {
    /// Reads QuoteCollateralV3 JSON from `path`.
    pub fn read(path: &std::path::Path) -> std::io::Result<Self> {
        Ok(FileCollateral {
            path: path.display().to_string(),
            json: std::fs::read(path)?,
        })
    }
}

impl CollateralSource for FileCollateral {
    fn collateral(&self, _quote: &[u8], _now: u64) -> Result<Vec<u8>, CollateralError> {
        if self.json.is_empty() {
            return Err(CollateralError::EmptyFile(self.path.clone()));
        }
        Ok(self.json.clone())
    }
}

/// What a verifier needs besides the evidence.
#[derive(Debug, Clone, Copy)]
pub struct VerifyContext<'a> {
    /// Verification time, UNIX seconds.
    pub now: u64,
    /// Sim roots the policy trusts.
    pub sim_roots: &'a [[u8; 32]],
    /// Collateral for TDX quotes that do not carry their own.
    pub collateral: Option<&'a dyn CollateralSource>,
}

/// Why evidence did not verify.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// TDX.
    #[error(transparent)]
    Tdx(#[from] tdx::TdxError),
    /// SEV-SNP.
    #[error(transparent)]
    Snp(#[from] snp::SnpError),
    /// Sim.
    #[error(transparent)]
    Sim(#[from] sim::SimError),
    /// A TDX quote came without collateral and none is configured.
    #[error("TDX collateral: {0}")]
    NoCollateral(#[from] CollateralError),
    /// The open tier's "evidence" proves nothing to verify.
    #[error("the peer has no TEE (open tier): there is no evidence to verify")]
    NoTee,
}

/// Verifies evidence of any kind at `ctx.now`.
pub fn verify(
    evidence: &Evidence,
    ctx: VerifyContext<'_>,
) -> Result<VerifiedEvidence, EvidenceError> {
    Ok(match evidence {
        Evidence::Tdx { quote, collateral } => {
            let fetched;
            let collateral = match (collateral, ctx.collateral) {
                (Some(c), _) => c.as_slice(),
                (None, Some(source)) => {
                    fetched = source.collateral(quote, ctx.now)?;
                    fetched.as_slice()
                }
                (None, None) => return Err(CollateralError::NotConfigured.into()),
            };
            let ev = tdx::verify(quote, collateral, ctx.now)?;
            let mut measurements = vec![("mrtd", hex::encode(ev.mrtd))];
            for (name, r) in ["rtmr0", "rtmr1", "rtmr2", "rtmr3"]
                .into_iter()
                .zip(&ev.rtmr)
            {
                measurements.push((name, hex::encode(r)));
            }
            VerifiedEvidence {
                kind: TeeKind::Tdx,
                image_hash: ev.image_hash,
                report_data: ev.report_data,
                tcb_status: TcbStatus::parse(&ev.tcb_status),
                advisories: ev.advisories,
                measurements,
            }
        }
        Evidence::SevSnp { report, vek, chain } => {
            let ev = snp::verify(report, vek, chain, ctx.now)?;
            VerifiedEvidence {
                kind: TeeKind::SevSnp,
                image_hash: ev.image_hash,
                report_data: ev.report_data,
                tcb_status: TcbStatus::UpToDate,
                advisories: Vec::new(),
                measurements: vec![
                    ("measurement", hex::encode(ev.measurement)),
                    ("host_data", hex::encode(ev.host_data)),
                ],
            }
        }
        Evidence::None => return Err(EvidenceError::NoTee),
        Evidence::Sim { quote } => {
            let ev = sim::verify(quote, ctx.sim_roots)?;
            let mut measurements = vec![("mrtd", hex::encode(ev.mrtd))];
            for (name, r) in ["rtmr0", "rtmr1", "rtmr2", "rtmr3"]
                .into_iter()
                .zip(&ev.rtmr)
            {
                measurements.push((name, hex::encode(r)));
            }
            VerifiedEvidence {
                kind: TeeKind::Sim,
                image_hash: ev.image_hash,
                report_data: ev.report_data,
                tcb_status: ev.tcb_status,
                advisories: Vec::new(),
                measurements,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_round_trips_and_refuses_junk() {
        for ev in [
            Evidence::Tdx {
                quote: vec![1, 2],
                collateral: None,
            },
            Evidence::Tdx {
                quote: vec![1],
                collateral: Some(b"{}".to_vec()),
            },
            Evidence::SevSnp {
                report: vec![3],
                vek: vec![],
                chain: vec![4, 5],
            },
            Evidence::Sim { quote: vec![6; 10] },
            Evidence::None,
        ] {
            let bytes = ev.encode();
            assert_eq!(Evidence::decode(&bytes).unwrap(), ev);
            let mut long = bytes.clone();
            long.push(0);
            assert!(Evidence::decode(&long).is_err());
            assert!(Evidence::decode(&bytes[..bytes.len() - 1]).is_err());
        }
        assert!(Evidence::decode(&[2, 3]).is_err());
    }

    #[test]
    fn tcb_statuses_are_ordered_by_how_current_they_are() {
        assert!(TcbStatus::UpToDate > TcbStatus::SWHardeningNeeded);
        assert!(TcbStatus::OutOfDate > TcbStatus::Revoked);
        assert_eq!(TcbStatus::parse("Nonsense"), TcbStatus::Unknown);
        assert_eq!(
            TcbStatus::parse("ConfigurationNeeded").as_str(),
            "ConfigurationNeeded"
        );
    }
}
