//! Intel TDX: DCAP quote verification with collateral.

use dcap_qvl::quote::Report;
use dcap_qvl::QuoteCollateralV3;

use crate::ImageHash;

/// What a verified TDX quote proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxEvidence {
    /// Quote format version (4 or 5).
    pub version: u16,
    /// `TD1.0` or `TD1.5`.
    pub body: &'static str,
    /// Intel's TCB status of the platform (`UpToDate`, `SWHardeningNeeded`, ...).
    pub tcb_status: String,
    /// Intel security advisories that apply (`INTEL-SA-…`).
    pub advisories: Vec<String>,
    /// Measurement of the initial TD contents.
    pub mrtd: [u8; 48],
    /// Runtime measurement registers 0–3.
    pub rtmr: [[u8; 48]; 4],
    /// The 64 bytes the TD bound into the quote.
    pub report_data: [u8; 64],
    /// SHA-256 over MRTD and RTMR0–3.
    pub image_hash: ImageHash,
}

/// Why a TDX quote was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TdxError {
    /// The collateral is not QuoteCollateralV3 JSON.
    #[error("collateral is not valid QuoteCollateralV3 JSON: {0}")]
    Collateral(String),
    /// The quote is too short to have a header.
    #[error("quote is {0} bytes, too short for a DCAP quote header")]
    Truncated(usize),
    /// DCAP verification failed: signature, certificate chain, CRLs, TCB
    /// level, QE identity, or the validity window at the given time.
    #[error("TDX quote verification failed at {at}: {reason}")]
    Verification {
        /// The verification time, UNIX seconds.
        at: u64,
        /// dcap-qvl's account of the failed check.
        reason: String,
    },
    /// The quote verified but is not a TD quote (an SGX enclave's).
    #[error("the quote is an SGX enclave quote, not a TDX one")]
    NotTdx,
}

/// Verifies a TDX quote (raw bytes) with its collateral (JSON) at time
/// `now` (UNIX seconds): the PCK chain to Intel's root, CRLs, TCB info and
/// QE identity, each within its validity window at `now`.
pub fn verify(quote: &[u8], collateral_json: &[u8], now: u64) -> Result<TdxEvidence, TdxError> {
    if quote.len() < 48 {
        return Err(TdxError::Truncated(quote.len()));
    }
    let collateral: QuoteCollateralV3 =
        serde_json::from_slice(collateral_json).map_err(|e| TdxError::Collateral(e.to_string()))?;
    let verified =
        dcap_qvl::verify::verify(quote, &collateral, now).map_err(|e| TdxError::Verification {
            at: now,
            reason: format!("{e:#}"),
        })?;
    let (body, td) = match &verified.report {
        Report::TD10(r) => ("TD1.0", r),
        Report::TD15(r) => ("TD1.5", &r.base),
        Report::TD15Ex(r) => ("TD1.5", &r.base.base),
        Report::SgxEnclave(_) => return Err(TdxError::NotTdx),
    };
    let rtmr = [td.rt_mr0, td.rt_mr1, td.rt_mr2, td.rt_mr3];
    Ok(TdxEvidence {
        version: u16::from_le_bytes([quote[0], quote[1]]),
        body,
        tcb_status: verified.status.clone(),
        advisories: verified.advisory_ids.clone(),
        mrtd: td.mr_td,
        rtmr,
        report_data: td.report_data,
        image_hash: ImageHash::over(&[&td.mr_td, &rtmr[0], &rtmr[1], &rtmr[2], &rtmr[3]]),
    })
}
