//! `cocoon receipt verify`: checks a saved answer or receipt offline, with
//! no trust in the proxy or the network, only in an attestation policy.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use cocoon_receipt::{SavedAnswer, Verification};
use cocoon_tee::evidence::{CollateralSource, FileCollateral};
use cocoon_tee::{Policy, RaTlsVerifier};

use crate::options::ReceiptVerifyOptions;

pub fn verify(o: ReceiptVerifyOptions) -> anyhow::Result<()> {
    let bytes = if o.file.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
            .context("reading standard input")?;
        b
    } else {
        std::fs::read(&o.file).with_context(|| format!("cannot read {}", o.file.display()))?
    };
    let saved = SavedAnswer::parse(&bytes).map_err(|e| anyhow!("{}: {e}", o.file.display()))?;
    let der = certificate(&o, &saved)?;
    let verifier = verifier(&o)?;
    let request = match &o.request {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    let v = saved
        .verify(&der, request.as_deref(), &verifier)
        .map_err(|e| anyhow!("{}: {e}", o.file.display()))?;
    if o.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_text(&v);
    }
    match v.failure() {
        Some(f) => bail!("the receipt did not verify: {f}"),
        None => Ok(()),
    }
}

fn print_text(v: &Verification) {
    let r = &v.receipt;
    println!("{} for request {}: {}", v.file, r.request_id, v.verdict);
    println!(
        "  worker     {} (certificate {})",
        r.worker, r.worker_certificate_sha256
    );
    println!(
        "  ran in     {} TEE, image {}",
        r.tee.as_deref().unwrap_or("unstated"),
        r.image_hash.as_deref().unwrap_or("unstated")
    );
    println!(
        "  model      {}, weights {}",
        r.model,
        r.model_hash.as_deref().unwrap_or("not stated")
    );
    println!(
        "  through    proxy {}{}",
        r.proxy.name,
        r.proxy
            .contract
            .as_deref()
            .map(|c| format!(" (contract {c})"))
            .unwrap_or_default()
    );
    println!(
        "  when       {} ({} UNIX ms), {} ms of work",
        utc(r.started_at_ms),
        r.started_at_ms,
        r.finished_at_ms.saturating_sub(r.started_at_ms)
    );
    println!("  tokens     {}", r.usage);
    match (r.cost_nanoton, r.worker_fee_nanoton) {
        (Some(c), Some(w)) => println!(
            "  price      {c} nanoton at coefficient {} ({w} to the worker)",
            r.coefficient
        ),
        _ => println!("  price      not charged (coefficient {})", r.coefficient),
    }
    println!("checks:");
    for c in &v.checks {
        println!(
            "  {} {:<28} {}",
            if c.ok { "ok    " } else { "FAILED" },
            c.name,
            c.detail
        );
    }
}

/// UNIX milliseconds as an ISO 8601 UTC time.
fn utc(ms: u64) -> String {
    let (year, month, day, secs) = cocoon_core::utc_date(ms / 1000);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        ms % 1000
    )
}

/// The worker certificate: --certificate, else the one the file carries.
fn certificate(o: &ReceiptVerifyOptions, saved: &SavedAnswer) -> anyhow::Result<Vec<u8>> {
    if let Some(path) = &o.certificate {
        let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        return crate::attest::certificate_der(&raw)
            .with_context(|| format!("certificate {}", path.display()));
    }
    saved.certificate().map_err(|e| match e {
        cocoon_receipt::saved::SavedError::NoCertificate => {
            anyhow!("the file carries no worker certificate; give it with --certificate FILE")
        }
        e => anyhow!(e),
    })
}

/// The verifier of the worker's certificate.
fn verifier(o: &ReceiptVerifyOptions) -> anyhow::Result<RaTlsVerifier> {
    verifier_from(&VerifierOptions {
        policy: o.policy.as_deref(),
        dev: o.dev,
        data_dir: o.data_dir.as_deref(),
        collateral: o.collateral.as_deref(),
        pccs_url: o.pccs_url.as_deref(),
    })
}

/// What a receipt verifier is built from.
pub struct VerifierOptions<'a> {
    /// The attestation policy's file.
    pub policy: Option<&'a Path>,
    /// Whether a policy accepting the simulated TEE is meant.
    pub dev: bool,
    /// With `dev` and no policy: the data directory of the `cocoon up`
    /// whose sim root to trust.
    pub data_dir: Option<&'a Path>,
    /// TDX collateral for quotes that carry none.
    pub collateral: Option<&'a Path>,
    /// Or a PCCS to fetch it from.
    pub pccs_url: Option<&'a str>,
}

/// A verifier of workers' certificates as receipts name them: judged at
/// each receipt's own time, so nothing is cached.
pub fn verifier_from(o: &VerifierOptions<'_>) -> anyhow::Result<RaTlsVerifier> {
    let policy = match (o.policy, o.dev) {
        (Some(path), dev) => {
            let p = Policy::load(path)?;
            if p.accepts_sim() && !dev {
                bail!(
                    "policy {} accepts SIMULATED TEE evidence, which anyone can forge; add --dev if that is what you mean",
                    path.display()
                );
            }
            p
        }
        (None, true) => {
            let dir = o.data_dir.map_or_else(crate::trust::default_data_dir, Path::to_path_buf);
            if !dir.join(cocoon_tee::sim::ROOT_FILE).exists() {
                bail!(
                    "{} holds no sim root: give the data directory of the `cocoon up` that answered (--data-dir)",
                    dir.display()
                );
            }
            crate::trust::dev_policy(&dir, &[])?.0
        }
        (None, false) => bail!(
            "no policy: pass --policy FILE (an attestation policy naming the worker images you trust), \
             or, for an answer from `cocoon up`, --dev [--data-dir DIR]"
        ),
    };
    if policy.accepts_sim() {
        eprintln!("warning: DEVELOPMENT policy: it accepts the SIMULATED TEE, which proves nothing about the hardware or the code a worker runs");
    }
    let collateral: Option<Arc<dyn CollateralSource>> = match (o.collateral, o.pccs_url) {
        (Some(path), _) => Some(Arc::new(read_collateral(path)?)),
        (None, Some(url)) => Some(Arc::new(cocoon_tee::pccs::Pccs::new(url)?)),
        (None, None) => None,
    };
    // Offline: a receipt is judged once, at its own time; nothing to cache.
    Ok(RaTlsVerifier::new(policy, collateral).without_cache())
}

fn read_collateral(path: &Path) -> anyhow::Result<FileCollateral> {
    FileCollateral::read(path)
        .with_context(|| format!("cannot read TDX collateral {}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_times() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::utc(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(super::utc(1_795_880_028_644), "2026-11-28T15:33:48.644Z");
    }
}
