//! NVIDIA GPU evidence from the driver, through NVML (see `cocoon-nvml`):
//! one report and chain per GPU, each answering the certificate's nonce.

use crate::attester::{AttestError, GpuAttester};
use crate::gpu::GpuEvidence;

/// This machine's NVIDIA GPUs, in confidential-computing mode.
#[derive(Debug)]
pub struct NvmlGpus(cocoon_nvml::NvmlGpus);

impl NvmlGpus {
    /// Loads the driver's NVML and counts the GPUs; refuses a machine with
    /// none, or without NVIDIA's driver.
    pub fn open() -> Result<Self, AttestError> {
        cocoon_nvml::NvmlGpus::open()
            .map(NvmlGpus)
            .map_err(|e| AttestError::Gpu(e.to_string()))
    }

    /// How many GPUs give evidence.
    pub fn count(&self) -> u32 {
        self.0.count()
    }
}

impl GpuAttester for NvmlGpus {
    fn attest(&self, nonce: &[u8; 32]) -> Result<Vec<GpuEvidence>, AttestError> {
        (0..self.0.count())
            .map(|i| {
                self.0
                    .attest(i, nonce)
                    .map(|a| GpuEvidence::Nvidia {
                        report: a.report,
                        chain: a.chain,
                    })
                    .map_err(|e| AttestError::Gpu(format!("GPU {i}: {e}")))
            })
            .collect()
    }
}
