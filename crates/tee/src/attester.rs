//! Producing evidence: from the Linux configfs-tsm interface on a TDX or
//! SEV-SNP guest, or from the sim TEE.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use crate::gpu::GpuEvidence;
use crate::sim::SimRoot;
use crate::{Evidence, TeeKind};

/// Produces evidence binding 64 bytes of report data.
pub trait Attester: Send + Sync + Debug {
    /// The TEE kind this attester speaks for.
    fn kind(&self) -> TeeKind;
    /// Evidence whose report data is `report_data`.
    fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence, AttestError>;
    /// Evidence of the node's GPUs answering `nonce`; none by default.
    fn gpu_evidence(&self, nonce: &[u8; 32]) -> Result<Vec<GpuEvidence>, AttestError> {
        let _ = nonce;
        Ok(Vec::new())
    }
}

/// Produces evidence of a node's GPUs for a nonce.
pub trait GpuAttester: Send + Sync + Debug {
    /// One piece of evidence per GPU, each answering `nonce`.
    fn attest(&self, nonce: &[u8; 32]) -> Result<Vec<GpuEvidence>, AttestError>;
}

/// A TEE attester whose certificates also carry GPU evidence.
#[derive(Debug, Clone)]
pub struct WithGpus {
    /// The TEE's attester.
    pub tee: std::sync::Arc<dyn Attester>,
    /// The GPUs'.
    pub gpus: std::sync::Arc<dyn GpuAttester>,
}

impl Attester for WithGpus {
    fn kind(&self) -> TeeKind {
        self.tee.kind()
    }
    fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence, AttestError> {
        self.tee.attest(report_data)
    }
    fn gpu_evidence(&self, nonce: &[u8; 32]) -> Result<Vec<GpuEvidence>, AttestError> {
        self.gpus.attest(nonce)
    }
}

/// Why evidence could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// A configfs-tsm file could not be used.
    #[error("configfs-tsm {path}: {reason}")]
    Configfs {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The provider is not a TEE this attester knows.
    #[error("configfs-tsm provider is {found:?}, expected tdx_guest or sev_guest")]
    Provider {
        /// What `provider` said.
        found: String,
    },
    /// Evidence came back without something it needs.
    #[error("{0}")]
    Incomplete(String),
    /// A GPU's evidence could not be had.
    #[error("GPU attestation: {0}")]
    Gpu(String),
}

/// The Linux configfs-tsm report interface (`/sys/kernel/config/tsm/report`
/// on a guest): write the report data to `inblob`, read the quote or report
/// from `outblob` and the TEE from `provider`.
#[derive(Debug, Clone)]
pub struct ConfigfsTsm {
    entry: PathBuf,
    kind: TeeKind,
    tdx_collateral: Option<Vec<u8>>,
    snp_certs: Option<(Vec<u8>, Vec<u8>)>,
}

/// Where configfs-tsm lives on a guest.
pub const CONFIGFS_TSM_ROOT: &str = "/sys/kernel/config/tsm/report";

impl ConfigfsTsm {
    /// Opens (creating if needed) the report entry `name` under `root` and
    /// reads which TEE it is.
    pub fn open(root: &Path, name: &str) -> Result<Self, AttestError> {
        let entry = root.join(name);
        if !entry.is_dir() {
            std::fs::create_dir(&entry).map_err(|e| AttestError::Configfs {
                path: entry.clone(),
                reason: format!("cannot create the report entry: {e}"),
            })?;
        }
        let provider = read(&entry.join("provider"))?;
        let provider = String::from_utf8_lossy(&provider).trim().to_owned();
        let kind = match provider.as_str() {
            "tdx_guest" => TeeKind::Tdx,
            "sev_guest" => TeeKind::SevSnp,
            _ => return Err(AttestError::Provider { found: provider }),
        };
        Ok(ConfigfsTsm {
            entry,
            kind,
            tdx_collateral: None,
            snp_certs: None,
        })
    }

    /// Attaches TDX collateral (QuoteCollateralV3 JSON) to every quote, so
    /// verifiers need no PCCS of their own.
    pub fn with_tdx_collateral(mut self, collateral: Vec<u8>) -> Self {
        self.tdx_collateral = Some(collateral);
        self
    }

    /// The SEV-SNP VCEK or VLEK and its AMD chain, attached to every report.
    pub fn with_snp_certificates(mut self, vek: Vec<u8>, chain: Vec<u8>) -> Self {
        self.snp_certs = Some((vek, chain));
        self
    }
}

fn read(path: &Path) -> Result<Vec<u8>, AttestError> {
    std::fs::read(path).map_err(|e| AttestError::Configfs {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

impl Attester for ConfigfsTsm {
    fn kind(&self) -> TeeKind {
        self.kind
    }

    fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence, AttestError> {
        let inblob = self.entry.join("inblob");
        std::fs::write(&inblob, report_data).map_err(|e| AttestError::Configfs {
            path: inblob.clone(),
            reason: e.to_string(),
        })?;
        let out = read(&self.entry.join("outblob"))?;
        match self.kind {
            TeeKind::Tdx => Ok(Evidence::Tdx {
                quote: out,
                collateral: self.tdx_collateral.clone(),
            }),
            TeeKind::SevSnp => {
                let (vek, chain) = self.snp_certs.clone().ok_or_else(|| {
                    AttestError::Incomplete(
                        "SEV-SNP evidence needs the VCEK/VLEK and its chain; none configured"
                            .into(),
                    )
                })?;
                Ok(Evidence::SevSnp {
                    report: out,
                    vek,
                    chain,
                })
            }
            TeeKind::Sim | TeeKind::None => {
                unreachable!("configfs-tsm reports only tdx_guest or sev_guest")
            }
        }
    }
}

/// The sim TEE: quotes signed by a [`SimRoot`] over fixed measurements.
#[derive(Debug)]
pub struct SimAttester {
    root: SimRoot,
    mrtd: [u8; 48],
    rtmr: [[u8; 48]; 4],
    tcb: crate::TcbStatus,
}

impl SimAttester {
    /// A sim TEE measuring `image` into MRTD (RTMRs zero).
    pub fn new(root: SimRoot, image: [u8; 48]) -> Self {
        SimAttester {
            root,
            mrtd: image,
            rtmr: [[0; 48]; 4],
            tcb: crate::TcbStatus::UpToDate,
        }
    }

    /// Makes the simulated platform claim another TCB status.
    pub fn with_tcb_status(mut self, tcb: crate::TcbStatus) -> Self {
        self.tcb = tcb;
        self
    }

    /// The image hash its quotes will carry.
    pub fn image_hash(&self) -> crate::ImageHash {
        let r = &self.rtmr;
        crate::ImageHash::over(&[&self.mrtd, &r[0], &r[1], &r[2], &r[3]])
    }

    /// The root's public key.
    pub fn root_public_key(&self) -> [u8; 32] {
        self.root.public_key()
    }
}

/// SHA-384 of a file: the sim TEE's stand-in for a launch measurement of
/// the running executable.
pub fn measure_file(path: &Path) -> std::io::Result<[u8; 48]> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha384::new();
    std::io::copy(&mut f, &mut h)?;
    let mut out = [0u8; 48];
    out.copy_from_slice(&h.finalize());
    Ok(out)
}

impl Attester for SimAttester {
    fn kind(&self) -> TeeKind {
        TeeKind::Sim
    }

    fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence, AttestError> {
        Ok(Evidence::Sim {
            quote: self
                .root
                .quote(&self.mrtd, &self.rtmr, self.tcb, report_data),
        })
    }
}

/// No TEE: the evidence of an open-tier worker, which proves nothing but
/// that it claims none. Its certificate still binds its claims (its keys,
/// its model, its region) to its key by its own signature.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTee;

impl Attester for NoTee {
    fn kind(&self) -> TeeKind {
        TeeKind::None
    }

    fn attest(&self, _report_data: &[u8; 64]) -> Result<Evidence, AttestError> {
        Ok(Evidence::None)
    }
}
