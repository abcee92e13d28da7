//! `cocoon receipt verify`: checks a saved answer or receipt offline, with
//! no trust in the proxy or the network, only in an attestation policy.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use cocoon_receipt::{digest, SignedReceipt, WorkerIdentity};
use cocoon_tee::evidence::{CollateralSource, FileCollateral};
use cocoon_tee::{Policy, RaTlsVerifier};
use serde_json::{json, Value};

use crate::options::ReceiptVerifyOptions;

/// What the file held.
enum Saved {
    /// A whole answer's JSON, with the receipt in its `cocoon` member.
    Whole { body: Vec<u8>, member: Value },
    /// A stream: the worker's chunk payloads, then the client's last chunk
    /// whose `cocoon` member holds the receipt.
    Stream {
        payloads: Vec<Vec<u8>>,
        member: Value,
    },
    /// A receipt without its answer.
    ReceiptOnly { member: Value },
}

impl Saved {
    fn member(&self) -> &Value {
        match self {
            Saved::Whole { member, .. }
            | Saved::Stream { member, .. }
            | Saved::ReceiptOnly { member } => member,
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Saved::Whole { .. } => "a whole answer",
            Saved::Stream { .. } => "a streamed answer",
            Saved::ReceiptOnly { .. } => "a receipt without its answer",
        }
    }
}

/// One line of the report: a check and how it went.
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

pub fn verify(o: ReceiptVerifyOptions) -> anyhow::Result<()> {
    let bytes = if o.file.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
            .context("reading standard input")?;
        b
    } else {
        std::fs::read(&o.file).with_context(|| format!("cannot read {}", o.file.display()))?
    };
    let saved = parse_saved(&bytes)?;
    let signed = SignedReceipt::from_value(&saved.member()["receipt"])
        .map_err(|e| anyhow!("{}: {e}", o.file.display()))?;
    let der = certificate(&o, saved.member())?;
    let verifier = verifier(&o)?;
    let r = &signed.receipt;
    let at = r.finished_at_ms / 1000;

    let mut checks = Vec::new();
    let mut check = |name, result: Result<String, String>| {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        checks.push(Check { name, ok, detail });
    };
    let identity = WorkerIdentity::verify(&der, &verifier, at);
    check(
        "worker certificate",
        identity
            .as_ref()
            .map(|id| {
                let a = id.attestation();
                format!(
                    "{} evidence verified at the receipt's time ({at}): image {}, TCB {}{}",
                    a.kind,
                    a.image_hash,
                    a.tcb_status,
                    if a.kind == cocoon_tee::TeeKind::Sim {
                        " — SIMULATED TEE, proves nothing about hardware"
                    } else {
                        ""
                    }
                )
            })
            .map_err(|e| e.to_string()),
    );
    if let Ok(id) = &identity {
        check(
            "signature and signed facts",
            id.check(&signed)
                .map(|()| {
                    let batch = match &signed.batch {
                        Some(b) => format!(
                            " (one signature for a batch of up to {} receipts; this is number {})",
                            1u64 << b.path.len(),
                            b.index
                        ),
                        None => String::new(),
                    };
                    format!("signed by the key of certificate {}{batch}; TEE, image, weights, validity and price arithmetic agree", id.certificate_sha256())
                })
                .map_err(|e| e.to_string()),
        );
    }
    match &saved {
        Saved::Whole { body, .. } => {
            check(
                "answer",
                r.expect_answer(&digest::whole_answer(body))
                    .map(|()| "the answer's content is the one signed".into())
                    .map_err(|e| e.to_string()),
            );
            if let Ok(v) = serde_json::from_slice::<Value>(body) {
                check("usage", usage_matches(r, &v["usage"]));
            }
        }
        Saved::Stream { payloads, member } => {
            let mut d = digest::StreamDigest::default();
            for p in payloads {
                d.push(p);
            }
            check(
                "answer",
                r.expect_answer(&d.finish())
                    .map(|()| format!("the {} streamed chunks are the ones signed", payloads.len()))
                    .map_err(|e| e.to_string()),
            );
            let _ = member;
        }
        Saved::ReceiptOnly { .. } => {}
    }
    if let Some(path) = &o.request {
        let req = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        check(
            "request",
            r.expect_request(&digest::sha256_hex(&req))
                .map(|()| "the request is the one the engine ran".into())
                .map_err(|e| e.to_string()),
        );
    }

    let replication = &saved.member()["replication"];
    if replication.is_object() {
        checks.extend(replicas(replication, &signed, &verifier));
    }
    let failed = checks
        .iter()
        .find(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail));
    let verdict = match (&failed, &saved) {
        (Some(_), _) => "NOT VERIFIED",
        (None, Saved::ReceiptOnly { .. }) => {
            "VERIFIED (the receipt only: no answer was given to compare)"
        }
        (None, _) => "VERIFIED",
    };
    if o.json {
        let out = json!({
            "verified": failed.is_none(),
            "verdict": verdict,
            "file": saved.what(),
            "receipt": r,
            "checks": checks.iter().map(|c| json!({"check": c.name, "ok": c.ok, "detail": c.detail})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_text(&saved, &signed, &checks, verdict);
    }
    match failed {
        Some(f) => bail!("the receipt did not verify: {f}"),
        None => Ok(()),
    }
}

fn print_text(saved: &Saved, signed: &SignedReceipt, checks: &[Check], verdict: &str) {
    let r = &signed.receipt;
    println!("{} for request {}: {verdict}", saved.what(), r.request_id);
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
    for c in checks {
        println!(
            "  {} {:<28} {}",
            if c.ok { "ok    " } else { "FAILED" },
            c.name,
            c.detail
        );
    }
}

/// The runs of a replicated answer: each receipt verified against its
/// certificate (carried in `certificates`), at its own time, naming the
/// same request as the answer's receipt, which must be one of them.
fn replicas(replication: &Value, answer: &SignedReceipt, verifier: &RaTlsVerifier) -> Vec<Check> {
    let agreed: Vec<&str> = replication["agreed"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut checks = Vec::new();
    let mut found_answer = false;
    for r in replication["receipts"].as_array().into_iter().flatten() {
        let result = (|| -> Result<(String, String), String> {
            let signed = SignedReceipt::from_value(r).map_err(|e| e.to_string())?;
            let b = &signed.receipt;
            let cert = replication["certificates"][&b.worker_certificate_sha256]
                .as_str()
                .ok_or_else(|| {
                    format!(
                        "no certificate {} for worker {}",
                        b.worker_certificate_sha256, b.worker
                    )
                })?;
            let der = base64::engine::general_purpose::STANDARD
                .decode(cert)
                .map_err(|e| format!("certificate of worker {}: {e}", b.worker))?;
            let id = WorkerIdentity::verify(&der, verifier, b.finished_at_ms / 1000)
                .map_err(|e| format!("worker {}: {e}", b.worker))?;
            id.check(&signed)
                .map_err(|e| format!("worker {}: {e}", b.worker))?;
            b.expect_request(&answer.receipt.request_sha256)
                .map_err(|e| format!("worker {}: {e}", b.worker))?;
            if signed == *answer {
                found_answer = true;
            }
            let side = if agreed.contains(&b.worker.as_str()) {
                "agreed"
            } else {
                "dissented"
            };
            Ok((b.worker.clone(), side.to_string()))
        })();
        checks.push(match result {
            Ok((worker, side)) => Check {
                name: "replica",
                ok: true,
                detail: format!(
                    "{worker} ({side}): receipt and certificate verified, same request"
                ),
            },
            Err(e) => Check {
                name: "replica",
                ok: false,
                detail: e,
            },
        });
    }
    checks.push(Check {
        name: "replication",
        ok: found_answer,
        detail: if found_answer {
            format!(
                "the answer's receipt is one of the {} runs; agreed: {}; dissented: {}",
                replication["receipts"].as_array().map_or(0, Vec::len),
                agreed.join(", "),
                replication["dissented"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            "the answer's receipt is not among the runs' receipts".into()
        },
    });
    checks
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

/// The usage beside the answer must be the receipt's (the answer may not
/// report one).
fn usage_matches(r: &cocoon_receipt::ReceiptBody, usage: &Value) -> Result<String, String> {
    if usage.is_null() {
        return Ok("the answer reports no usage".into());
    }
    let field = |k: &str| usage[k].as_u64().unwrap_or(0);
    let cached = usage["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0);
    let found = cocoon_core::Usage {
        prompt: field("prompt_tokens"),
        cached,
        completion: field("completion_tokens"),
        reasoning: usage["completion_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .unwrap_or(0),
    };
    r.expect_usage(found)
        .map(|()| "the usage reported is the one signed".into())
        .map_err(|e| e.to_string())
}

fn parse_saved(bytes: &[u8]) -> anyhow::Result<Saved> {
    let text = std::str::from_utf8(bytes).context("the file is not UTF-8 text")?;
    let trimmed = text.trim_start();
    if trimmed.starts_with("data:") || trimmed.starts_with("event:") || trimmed.starts_with(':') {
        return parse_stream(text);
    }
    let v: Value = serde_json::from_str(text).context(
        "the file is neither JSON (a whole answer or a receipt) nor a stream of server-sent events",
    )?;
    if v["cocoon"].is_object() {
        if v["cocoon"]["receipt"].is_null() {
            bail!("the answer's `cocoon` member has no receipt: it was not signed (an answer from before receipts, or through a client without them)");
        }
        return Ok(Saved::Whole {
            body: bytes.to_vec(),
            member: v["cocoon"].clone(),
        });
    }
    if v["receipt"]["signature"].is_string() {
        return Ok(Saved::ReceiptOnly { member: v });
    }
    if v["signature"].is_string() && v["receipt"].is_object() {
        return Ok(Saved::ReceiptOnly {
            member: json!({ "receipt": v }),
        });
    }
    bail!("no receipt found: expected an answer with a `cocoon` member, an entry of /v1/cocoon/receipts, or a signed receipt")
}

/// Server-sent events: every `data:` payload but `[DONE]`; the last one
/// must be the client's closing chunk with the receipt.
fn parse_stream(text: &str) -> anyhow::Result<Saved> {
    let mut payloads = Vec::new();
    let mut data: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if let Some(d) = data.take() {
                payloads.push(d);
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("data:") {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(rest);
                }
                None => data = Some(rest.to_string()),
            }
        }
    }
    if let Some(d) = data.take() {
        payloads.push(d);
    }
    if payloads.last().map(String::as_str) != Some("[DONE]") {
        bail!("the stream does not end with [DONE]: it was cut off, or it failed (its last event says why)");
    }
    payloads.pop();
    let last = payloads
        .pop()
        .ok_or_else(|| anyhow!("the stream has no events"))?;
    let v: Value = serde_json::from_str(&last).context("the stream's last event is not JSON")?;
    let member = v["cocoon"].clone();
    if member["receipt"].is_null() {
        bail!("the stream's last event carries no receipt");
    }
    Ok(Saved::Stream {
        payloads: payloads.into_iter().map(String::into_bytes).collect(),
        member,
    })
}

/// The worker certificate: --certificate, else the one the file carries.
fn certificate(o: &ReceiptVerifyOptions, member: &Value) -> anyhow::Result<Vec<u8>> {
    if let Some(path) = &o.certificate {
        let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        return crate::attest::certificate_der(&raw)
            .with_context(|| format!("certificate {}", path.display()));
    }
    let b64 = member["worker_certificate"].as_str().ok_or_else(|| {
        anyhow!("the file carries no worker certificate; give it with --certificate FILE")
    })?;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .context("the file's worker_certificate is not base64")
}

/// The verifier of the worker's certificate.
fn verifier(o: &ReceiptVerifyOptions) -> anyhow::Result<RaTlsVerifier> {
    let policy = match (&o.policy, o.dev) {
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
            let dir = o.data_dir.clone().unwrap_or_else(crate::trust::default_data_dir);
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
    let collateral: Option<Arc<dyn CollateralSource>> = match (&o.collateral, &o.pccs_url) {
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
