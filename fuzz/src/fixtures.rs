//! Real evidence recorded from hardware (`../shared/fixtures/tee`), built
//! into the targets so they check hostile bytes against genuine
//! collateral and chains, and the fixed times at which those verify.

/// A TDX quote (v4) and its collateral; both verify at [`TDX_AT`].
pub const TDX_QUOTE: &[u8] = include_bytes!("../../../shared/fixtures/tee/tdx/tdx_quote");
/// The collateral of [`TDX_QUOTE`].
pub const TDX_COLLATERAL: &[u8] =
    include_bytes!("../../../shared/fixtures/tee/tdx/tdx_quote_collateral.json");
/// An out-of-date TDX quote (a seed that fails late, on its TCB).
pub const TDX_QUOTE_OUTDATED: &[u8] =
    include_bytes!("../../../shared/fixtures/tee/tdx/tdx_quote_outdated");
/// A quote from a Cocoon TDX guest.
pub const TDX_COCOON_QUOTE: &[u8] =
    include_bytes!("../../../shared/fixtures/tee/tdx/cocoon_quote.dat");
/// Within the validity window of [`TDX_QUOTE`] with its collateral.
pub const TDX_AT: u64 = 1_752_919_234;

/// An SEV-SNP report from a Milan machine, hex.
pub const SNP_REPORT_HEX: &[u8] =
    include_bytes!("../../../shared/fixtures/tee/sev-snp/report_milan.hex");
/// The VCEK that signed [`SNP_REPORT_HEX`].
pub const SNP_VCEK: &[u8] = include_bytes!("../../../shared/fixtures/tee/sev-snp/vcek_milan.der");
/// AMD's Milan ASK and ARK.
pub const SNP_CHAIN: &[u8] =
    include_bytes!("../../../shared/fixtures/tee/sev-snp/cert_chain_milan.pem");
/// Inside the VCEK's validity.
pub const SNP_AT: u64 = 1_795_478_400;

/// An NVIDIA Hopper attestation report, hex.
pub const GPU_REPORT_HEX: &[u8] =
    include_bytes!("../../../shared/fixtures/tee/nvidia/hopperAttestationReport.txt");
/// The GPU's certificate chain, PEM.
pub const GPU_CHAIN: &[u8] =
    include_bytes!("../../../shared/fixtures/tee/nvidia/hopperCertChain.txt");
/// Inside the GPU chain's validity.
pub const GPU_AT: u64 = 1_796_083_200;

/// The SEV-SNP report, decoded.
pub fn snp_report() -> Vec<u8> {
    let digits: Vec<u8> = SNP_REPORT_HEX
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    hex::decode(digits).unwrap_or_default()
}

/// The GPU report, decoded.
pub fn gpu_report() -> Vec<u8> {
    cocoon_tee::nvidia::decode_hex(GPU_REPORT_HEX).unwrap_or_default()
}
