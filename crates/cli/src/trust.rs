//! Turns the `[attestation]` options into a node's [`Trust`]: its attester,
//! its peer policy, and the guard that keeps development-only settings out
//! of production.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use cocoon_core::Role;
use cocoon_tee::attester::{measure_file, CONFIGFS_TSM_ROOT};
use cocoon_tee::evidence::{CollateralSource, FileCollateral};
use cocoon_tee::policy::DEFAULT_MAX_CERT_AGE_SECS;
use cocoon_tee::sim::SimRoot;
use cocoon_tee::{Attester, ConfigfsTsm, Policy, RaTlsVerifier, SimAttester, TcbStatus, TeeKind};
use cocoon_transport::{Attestation, Trust};

use crate::options::AttestationOptions;

/// `$XDG_DATA_HOME/cocoon`, else `~/.local/share/cocoon`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("cocoon");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| ".".into());
    home.join(".local/share/cocoon")
}

fn warn_dev(what: &str) {
    tracing::warn!(
        "DEVELOPMENT MODE: {what}. This proves nothing about the hardware or the code a peer runs; \
         never use it in production."
    );
}

fn sim_attester(o: &AttestationOptions, data_dir: &Path) -> anyhow::Result<SimAttester> {
    let root = SimRoot::load_or_create(data_dir)?;
    let mrtd = match &o.sim_mrtd {
        Some(h) => {
            let mut m = [0u8; 48];
            hex::decode_to_slice(h, &mut m)
                .map_err(|_| anyhow!("--sim-mrtd must be 96 hex digits, found {h:?}"))?;
            m
        }
        None => this_executable_measurement()?,
    };
    Ok(SimAttester::new(root, mrtd))
}

/// SHA-384 of the running executable: the sim TEE's MRTD.
pub fn this_executable_measurement() -> anyhow::Result<[u8; 48]> {
    let exe = std::env::current_exe().context("cannot locate this executable to measure it")?;
    measure_file(&exe).with_context(|| format!("cannot measure {}", exe.display()))
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// Builds the node's trust from its options. `config_hash` (see
/// [`crate::config_hash`]) goes into the node's claims.
/// With `registry_images`, the images peers may run are the root
/// registry's, not the policy file's `[images]`.
pub fn build(
    o: &AttestationOptions,
    config_hash: [u8; 32],
    registry_images: Option<Arc<cocoon_tee::ImageAllowList>>,
) -> anyhow::Result<Trust> {
    let dev = o.dev.unwrap_or(false);
    let Some(policy_arg) = o.peer_policy.as_deref() else {
        bail!(
            "no peer policy is configured: pass --peer-policy FILE (an attestation policy; see \
             `cocoon attest dev-policy` for a development one), or, for development only, \
             --dev --peer-policy none"
        );
    };
    if policy_arg == "none" {
        if !dev {
            bail!(
                "--peer-policy none accepts any peer without authentication and is refused \
                 outside development mode; add --dev if this is a development machine"
            );
        }
        if o.tee.is_some() || o.gpu.is_some() || o.region.is_some() {
            bail!("--tee, --gpu and --region need an attestation policy; with --peer-policy none nothing is attested");
        }
        warn_dev("peer policy 'none': peers are encrypted to but NOT authenticated");
        return Ok(Trust::Insecure);
    }
    let policy_path = Path::new(policy_arg);
    let policy = Policy::load(policy_path)?;
    if policy.accepts_sim() {
        if !dev {
            bail!(
                "policy {} accepts sim evidence, which anyone can forge; refused outside \
                 development mode (--dev)",
                policy_path.display()
            );
        }
        warn_dev(&format!(
            "policy {} accepts SIMULATED TEE evidence",
            policy_path.display()
        ));
    }
    let kind: TeeKind = o
        .tee
        .as_deref()
        .ok_or_else(|| {
            anyhow!("--tee is required with an attestation policy: tdx, sev-snp, sim, or none (an open-tier worker)")
        })?
        .parse()?;
    let data_dir = o.data_dir.clone().unwrap_or_else(default_data_dir);
    let attester = attester(o, kind, dev, &data_dir)?;
    let collateral: Option<Arc<dyn CollateralSource>> = match (&o.tdx_collateral, &o.pccs_url) {
        (Some(path), _) => {
            Some(Arc::new(FileCollateral::read(path).with_context(|| {
                format!("cannot read TDX collateral {}", path.display())
            })?))
        }
        (None, Some(url)) => Some(Arc::new(cocoon_tee::pccs::Pccs::new(url)?)),
        (None, None) => None,
    };
    tracing::info!(
        policy = %policy_path.display(),
        tee = %kind,
        kinds = ?policy.kinds,
        "RA-TLS: peers must satisfy the attestation policy"
    );
    let mut verifier = RaTlsVerifier::new(policy, collateral);
    if let Some(list) = registry_images {
        tracing::info!(source = %list.source(), "RA-TLS: the images peers may run are the registry's, not the policy file's");
        verifier = verifier.with_registry_images(list);
    }
    let verifier = Arc::new(verifier);
    let attester = with_gpus(attester, o, dev, &data_dir)?;
    let region = o
        .region
        .as_deref()
        .map(cocoon_core::Region::new)
        .transpose()
        .context("--region")?;
    Ok(Trust::Attested(Arc::new(
        Attestation::new(attester, verifier, config_hash).with_region(region),
    )))
}

/// The node's attester for `--tee kind`.
fn attester(
    o: &AttestationOptions,
    kind: TeeKind,
    dev: bool,
    data_dir: &Path,
) -> anyhow::Result<Arc<dyn Attester>> {
    Ok(match kind {
        TeeKind::Sim => {
            if !dev {
                bail!("--tee sim is a simulated TEE that proves nothing; refused outside development mode (--dev)");
            }
            warn_dev("this node attests with the SIMULATED TEE");
            Arc::new(sim_attester(o, data_dir)?)
        }
        TeeKind::None => {
            tracing::warn!(
                "OPEN TIER: this node runs WITHOUT A TEE. Its operator, and anyone with access to \
             this machine, can read every request it serves. Peers admit it only as an \
             open-tier worker (an [open] policy section and a registry listing), and it only \
             receives requests that accept the open tier."
            );
            Arc::new(cocoon_tee::NoTee)
        }
        TeeKind::Tdx | TeeKind::SevSnp => {
            let root = o
                .tsm_root
                .clone()
                .unwrap_or_else(|| CONFIGFS_TSM_ROOT.into());
            let mut tsm = ConfigfsTsm::open(&root, &format!("cocoon-{}", std::process::id()))?;
            if tsm.kind() != kind {
                bail!(
                    "--tee {kind} was asked for, but configfs-tsm at {} is a {} guest",
                    root.display(),
                    tsm.kind()
                );
            }
            if let Some(c) = &o.tdx_collateral {
                tsm = tsm.with_tdx_collateral(read(c, "TDX collateral")?);
            }
            if kind == TeeKind::SevSnp {
                let (Some(vek), Some(chain)) = (&o.snp_vek, &o.snp_chain) else {
                    bail!("--tee sev-snp needs --snp-vek and --snp-chain (the VCEK or VLEK and its AMD chain)");
                };
                tsm = tsm.with_snp_certificates(read(vek, "VEK")?, read(chain, "AMD chain")?);
            }
            Arc::new(tsm)
        }
    })
}

/// `--gpu`: the node's certificates carry its GPUs' evidence too.
fn with_gpus(
    tee: Arc<dyn Attester>,
    o: &AttestationOptions,
    dev: bool,
    data_dir: &Path,
) -> anyhow::Result<Arc<dyn Attester>> {
    let gpus: Arc<dyn cocoon_tee::GpuAttester> = match o.gpu.as_deref().unwrap_or("none") {
        "none" => return Ok(tee),
        "sim" => {
            if !dev || tee.kind() != TeeKind::Sim {
                bail!("--gpu sim is a simulated GPU that proves nothing; it goes only with --dev and --tee sim");
            }
            warn_dev("this node presents a SIMULATED GPU");
            Arc::new(cocoon_tee::sim_gpu::SimGpu::new(&SimRoot::load_or_create(
                data_dir,
            )?))
        }
        "nvidia" => {
            let gpus = cocoon_tee::nvml::NvmlGpus::open().context("--gpu nvidia")?;
            tracing::info!(
                gpus = gpus.count(),
                "certificates carry NVIDIA GPU evidence"
            );
            Arc::new(gpus)
        }
        other => bail!("--gpu must be nvidia, sim or none, found {other:?}"),
    };
    Ok(Arc::new(cocoon_tee::WithGpus { tee, gpus }))
}

/// A development policy for this executable under the sim TEE: every role
/// must run this very binary (or one of `extra_images`), attested by the
/// sim root in `data_dir`. Workers fronting an external engine cannot name
/// their weights, so the model hash claim is not required.
pub fn dev_policy(
    data_dir: &Path,
    extra_images: &[String],
) -> anyhow::Result<(Policy, SimAttester)> {
    let attester = SimAttester::new(
        SimRoot::load_or_create(data_dir)?,
        this_executable_measurement()?,
    );
    let mut images = std::collections::BTreeSet::from([attester.image_hash()]);
    for h in extra_images {
        images.insert(h.parse().map_err(|e| anyhow!("--allow-image: {e}"))?);
    }
    let policy = Policy {
        kinds: [TeeKind::Sim].into(),
        images: [Role::Client, Role::Proxy, Role::Worker]
            .into_iter()
            .map(|r| (r, images.clone()))
            .collect(),
        min_tcb: TcbStatus::UpToDate,
        max_cert_age_secs: DEFAULT_MAX_CERT_AGE_SECS,
        required_claims: Default::default(),
        sim_roots: vec![attester.root_public_key()],
        gpu: Some(Default::default()),
        open: Some(cocoon_tee::policy::OpenTier {
            spot_check_rate: cocoon_tee::policy::DEFAULT_OPEN_SPOT_CHECK_RATE,
        }),
    };
    Ok((policy, attester))
}

/// The sim TEE and development policy shared by the nodes of `cocoon up`.
pub struct DevNetwork {
    attester: Arc<dyn Attester>,
    verifier: Arc<RaTlsVerifier>,
    /// The image hash of every node.
    pub image_hash: cocoon_tee::ImageHash,
}

impl DevNetwork {
    /// Loads (or creates) the sim root in `data_dir` and measures this executable.
    pub fn new(data_dir: &Path) -> anyhow::Result<Self> {
        let (policy, attester) = dev_policy(data_dir, &[])?;
        Ok(DevNetwork {
            image_hash: attester.image_hash(),
            attester: Arc::new(attester),
            verifier: Arc::new(RaTlsVerifier::new(policy, None)),
        })
    }

    /// One node's trust, with its configuration hash in its claims.
    pub fn node(&self, config_hash: [u8; 32]) -> Trust {
        Trust::Attested(Arc::new(Attestation::new(
            self.attester.clone(),
            self.verifier.clone(),
            config_hash,
        )))
    }
}
