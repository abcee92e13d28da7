//! `cocoon attest`: verify evidence and certificates by hand, and write
//! development policies.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use cocoon_tee::evidence::{self, CollateralSource, FileCollateral, VerifyContext};
use cocoon_tee::{cert, nvidia, snp, tdx, RaTlsVerifier};
use serde_json::{json, Value};

use crate::options::{AttestVerifyOptions, DevPolicyOptions};

/// Reads a file holding raw bytes or hex text.
fn read_binary(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let raw =
        std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    let text: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if !text.is_empty() && text.len().is_multiple_of(2) && text.iter().all(u8::is_ascii_hexdigit) {
        return hex::decode(&text).map_err(|e| anyhow!("{what} {}: {e}", path.display()));
    }
    Ok(raw)
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// Named values in the order they are printed.
#[derive(Default)]
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn insert(&mut self, k: String, v: Value) {
        self.0.push((k, v));
    }
}

/// Prints `fields` as aligned text or as JSON (without the notes, whose
/// names are empty).
fn print(json_out: bool, fields: Fields) -> anyhow::Result<()> {
    let fields = fields.0;
    if json_out {
        let mut o: serde_json::Map<String, Value> = fields
            .into_iter()
            .filter(|(k, _)| !k.is_empty())
            .map(|(k, v)| {
                if k == "verified" {
                    ("summary".to_owned(), v)
                } else {
                    (k, v)
                }
            })
            .collect();
        o.insert("verified".into(), json!(true));
        println!("{}", serde_json::to_string_pretty(&Value::Object(o))?);
        return Ok(());
    }
    for (k, v) in &fields {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Array(a) if a.is_empty() => "none".into(),
            Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect::<Vec<_>>()
                .join(", "),
            Value::Null => "none".into(),
            other => other.to_string(),
        };
        println!("{:<12} {text}", k.replace('_', " "));
    }
    Ok(())
}

fn obj(pairs: Vec<(&str, Value)>) -> Fields {
    Fields(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// `cocoon attest verify`.
pub fn verify(o: AttestVerifyOptions) -> anyhow::Result<()> {
    let at = o.at.unwrap_or_else(cocoon_core::unix_now);
    if o.policy.is_some() && o.cert.is_none() && o.gpu_report.is_none() {
        bail!("--policy goes with --cert or --gpu-report");
    }
    if let Some(q) = &o.quote {
        return verify_quote(&o, q, at);
    }
    if let Some(r) = &o.snp_report {
        let (Some(vcek), Some(chain)) = (&o.vcek, &o.chain) else {
            bail!("--snp-report needs --vcek and --chain");
        };
        let ev = snp::verify(
            &read_binary(r, "SNP report")?,
            &read(vcek, "VCEK")?,
            &read(chain, "AMD chain")?,
            at,
        )?;
        let mut f = obj(vec![
            (
                "verified",
                json!(format!(
                    "SEV-SNP report v{} ({}, signed by its {}) at {at}",
                    ev.version,
                    ev.product,
                    ev.signer.as_str()
                )),
            ),
            ("kind", json!("sev-snp")),
            (
                "tcb_status",
                json!(format!("reported TCB {}", ev.reported_tcb)),
            ),
            ("advisories", json!([])),
            ("vmpl", json!(ev.vmpl)),
            ("policy", json!(format!("{:#x}", ev.policy))),
            ("measurement", json!(hex::encode(ev.measurement))),
            ("host_data", json!(hex::encode(ev.host_data))),
            ("chip_id", json!(hex::encode(ev.chip_id))),
            ("report_data", json!(hex::encode(ev.report_data))),
            ("image_hash", json!(ev.image_hash.to_string())),
        ]);
        f.insert(
            "".into(),
            json!("(image hash = SHA-256 over MEASUREMENT, HOST_DATA)"),
        );
        return print(o.json, f);
    }
    if let Some(report) = &o.gpu_report {
        return verify_gpu(&o, report, at);
    }
    let Some(path) = &o.cert else {
        bail!("give one of --quote, --snp-report, --gpu-report or --cert");
    };
    verify_cert(&o, path, at)
}

/// `cocoon attest verify --quote`.
fn verify_quote(o: &AttestVerifyOptions, q: &Path, at: u64) -> anyhow::Result<()> {
    let quote = read_binary(q, "quote")?;
    let collateral = match (&o.collateral, &o.pccs_url) {
        (Some(c), _) => read(c, "collateral")?,
        (None, Some(url)) => cocoon_tee::pccs::Pccs::new(url)?
            .collateral(&quote, at)
            .map_err(|e| anyhow!("collateral: {e}"))?,
        (None, None) => {
            bail!("--quote needs --collateral (QuoteCollateralV3 JSON) or --pccs-url")
        }
    };
    let ev = tdx::verify(&quote, &collateral, at)?;
    let mut f = obj(vec![
        (
            "verified",
            json!(format!("TDX quote v{} ({}) at {at}", ev.version, ev.body)),
        ),
        ("kind", json!("tdx")),
        ("tcb_status", json!(ev.tcb_status)),
        ("advisories", json!(ev.advisories)),
        ("mrtd", json!(hex::encode(ev.mrtd))),
    ]);
    for (i, r) in ev.rtmr.iter().enumerate() {
        f.insert(format!("rtmr{i}"), json!(hex::encode(r)));
    }
    f.insert("report_data".into(), json!(hex::encode(ev.report_data)));
    f.insert("image_hash".into(), json!(ev.image_hash.to_string()));
    f.insert(
        "".into(),
        json!("(image hash = SHA-256 over MRTD, RTMR0-3)"),
    );
    print(o.json, f)
}

/// `cocoon attest verify --gpu-report`.
fn verify_gpu(o: &AttestVerifyOptions, report: &Path, at: u64) -> anyhow::Result<()> {
    let Some(chain) = &o.gpu_chain else {
        bail!("--gpu-report needs --gpu-chain (the GPU's PEM chain, leaf first)");
    };
    let report = read_binary(report, "GPU report")?;
    let gpu = nvidia::verify(&report, &read(chain, "GPU chain")?, at)?;
    let nonce = match &o.nonce {
        Some(h) => {
            let mut n = [0u8; 32];
            hex::decode_to_slice(h.trim(), &mut n)
                .map_err(|_| anyhow!("--nonce must be 64 hex digits, found {h:?}"))?;
            gpu.check_nonce(&n)?;
            "verified"
        }
        None => "not checked (no --nonce given)",
    };
    let measurements = match &o.policy {
        Some(p) => {
            let policy = cocoon_tee::Policy::load(p)?;
            let gpu_policy = policy
                .gpu
                .as_ref()
                .ok_or_else(|| anyhow!("policy {} has no [gpu] section", p.display()))?;
            gpu_policy.check(&gpu)?;
            format!("verified against {}", p.display())
        }
        None => "not compared (no --policy given)".to_owned(),
    };
    let mut f = obj(vec![
        (
            "verified",
            json!(format!(
                "NVIDIA {} GPU report, chain to NVIDIA's Device Identity CA, signature at {at}",
                gpu.arch
            )),
        ),
        ("gpu", json!(gpu.describe())),
        ("fwid", json!(hex::encode(gpu.fwid))),
        ("driver", json!(gpu.driver_version)),
        ("vbios", json!(gpu.vbios_version)),
        ("nonce", json!(hex::encode(gpu.nonce))),
        ("nonce_check", json!(nonce)),
        ("golden", json!(measurements)),
    ]);
    for m in &gpu.measurements {
        f.insert(format!("msr{}", m.index), json!(hex::encode(&m.value)));
    }
    print(o.json, f)
}

fn verify_cert(o: &AttestVerifyOptions, path: &Path, at: u64) -> anyhow::Result<()> {
    let raw = read(path, "certificate")?;
    let der = certificate_der(&raw).with_context(|| format!("certificate {}", path.display()))?;
    let parsed = cert::parse(&der).context("RA-TLS certificate")?;
    let sim_roots = o
        .sim_root
        .iter()
        .map(|h| {
            let mut k = [0u8; 32];
            hex::decode_to_slice(h, &mut k)
                .map(|()| k)
                .map_err(|_| anyhow!("--sim-root must be 64 hex digits, found {h:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let collateral = match &o.collateral {
        Some(c) => Some(
            FileCollateral::read(c)
                .with_context(|| format!("cannot read collateral {}", c.display()))?,
        ),
        None => None,
    };
    let ev = evidence::verify(
        &parsed.evidence,
        VerifyContext {
            now: at,
            sim_roots: &sim_roots,
            collateral: collateral.as_ref().map(|c| c as &dyn CollateralSource),
        },
    )
    .context("evidence")?;
    let claims = &parsed.claims;
    let expected = claims.report_data();
    if ev.report_data != expected {
        bail!(
            "binding: the evidence's report data {} is not SHA-512 of the certificate's claims {}",
            hex::encode(ev.report_data),
            hex::encode(expected)
        );
    }
    let mut f = obj(vec![
        (
            "verified",
            json!(format!(
                "RA-TLS certificate with {} evidence at {at}",
                ev.kind
            )),
        ),
        ("kind", json!(ev.kind.as_str())),
        ("role", json!(claims.role.as_str())),
        ("public_key", json!(hex::encode(claims.public_key))),
        ("issued_at", json!(claims.issued_at)),
        ("expires_at", json!(claims.expires_at)),
        ("config_hash", json!(hex::encode(claims.config_hash))),
        (
            "model_hash",
            json!(claims.model_hash.map(|m| m.to_string())),
        ),
        ("tcb_status", json!(ev.tcb_status.as_str())),
        ("advisories", json!(ev.advisories)),
    ]);
    for (name, value) in &ev.measurements {
        f.insert((*name).to_owned(), json!(value));
    }
    f.insert("report_data".into(), json!(hex::encode(ev.report_data)));
    f.insert(
        "binding".into(),
        json!("report data = SHA-512(claims): yes"),
    );
    f.insert("image_hash".into(), json!(ev.image_hash.to_string()));
    f.insert(
        "".into(),
        json!("(image hash = SHA-256 over the measurement registers)"),
    );
    if let Some(policy_path) = &o.policy {
        let policy = cocoon_tee::Policy::load(policy_path)?;
        let verifier = RaTlsVerifier::new(policy, collateral.map(|c| std::sync::Arc::new(c) as _));
        verifier
            .verify(&der, &[claims.role], at)
            .with_context(|| format!("policy {}", policy_path.display()))?;
        f.insert(
            "policy".into(),
            json!(format!("{}: accepted", policy_path.display())),
        );
    }
    print(o.json, f)
}

/// A certificate given as DER, PEM or bare base64, as DER.
pub(crate) fn certificate_der(raw: &[u8]) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    if raw.first() == Some(&0x30) {
        return Ok(raw.to_vec());
    }
    let text = String::from_utf8_lossy(raw);
    let b64: String = match text.find("-----BEGIN") {
        Some(start) => text[start..]
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect(),
        None => text.split_whitespace().collect(),
    };
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| anyhow!("neither DER, PEM nor base64: {e}"))
}

/// `cocoon attest dev-policy`.
pub fn dev_policy(o: DevPolicyOptions) -> anyhow::Result<()> {
    let dir = o.data_dir.unwrap_or_else(crate::trust::default_data_dir);
    let (policy, attester) = crate::trust::dev_policy(&dir, &o.allow_image)?;
    let text = format!(
        "# Development policy: accepts the SIMULATED TEE, which proves nothing.\n\
         # Nodes refuse it unless started with --dev.\n\
         # Sim root: {}/{}; this executable's image hash: {}\n{}",
        dir.display(),
        cocoon_tee::sim::ROOT_FILE,
        attester.image_hash(),
        policy.to_toml()
    );
    match o.out {
        Some(path) => std::fs::write(&path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}
