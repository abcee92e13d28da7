//! `/verify`'s answer: what ran an answer, where, at what price, and how
//! its receipt checked out, from the client's verification of each request
//! behind it.

use serde_json::Value;

use crate::network::CallError;

/// The text of `/verify` for an answer: `cocoon` is its closing chunk's
/// member, `verdicts` the verification of each request behind it.
pub fn describe(
    cocoon: &Value,
    model: &str,
    verdicts: &[Result<Value, CallError>],
    base: &str,
) -> String {
    let failed: Vec<String> = verdicts
        .iter()
        .filter_map(|v| match v {
            Ok(v) if v["verified"] == true => None,
            Ok(v) => Some(first_failure(v)),
            Err(e) => Some(e.to_string()),
        })
        .collect();
    let head = match (failed.first(), verdicts.len()) {
        (None, 1) => "✅ Verified: this is the answer an attested worker signed.".to_string(),
        (None, n) => format!(
            "✅ Verified: all {n} requests behind this answer were signed by attested workers."
        ),
        (Some(why), _) => format!("❌ NOT verified: {why}"),
    };
    let last = verdicts.last().and_then(|v| v.as_ref().ok());
    let mut lines = vec![head, String::new()];
    lines.extend(facts(cocoon, model, last, base));
    lines.join("\n")
}

/// What ran the answer, where and at what price, from the last request's
/// verification (`last`) and the answer's `cocoon` member.
fn facts(cocoon: &Value, model: &str, last: Option<&Value>, base: &str) -> Vec<String> {
    let receipt = last.map(|v| &v["receipt"]).filter(|r| r.is_object());
    let evidence = last.map(|v| &v["evidence"]).filter(|e| e.is_object());
    let mut lines = Vec::new();
    let tee = evidence
        .and_then(|e| e["tee"].as_str())
        .or_else(|| cocoon["worker_tee"].as_str())
        .unwrap_or("unstated");
    let simulated = evidence.is_some_and(|e| e["simulated"] == true);
    lines.push(format!(
        "Ran in: a {tee} TEE{}, image {}",
        if simulated {
            " (SIMULATED: proves nothing about hardware)"
        } else {
            ""
        },
        short(
            evidence
                .and_then(|e| e["image_hash"].as_str())
                .or_else(|| cocoon["worker_image_hash"].as_str())
        )
    ));
    if let Some(e) = evidence {
        lines.push(format!(
            "TCB status: {}",
            e["tcb_status"].as_str().unwrap_or("unknown")
        ));
    }
    lines.push(format!(
        "Model: {model}, weights {}",
        short(cocoon["model_hash"].as_str())
    ));
    lines.push(format!(
        "Worker: {}, at {:.3}× the base price",
        cocoon["worker"].as_str().unwrap_or("unknown"),
        cocoon["coefficient"].as_f64().unwrap_or(1000.0) / 1000.0
    ));
    if let Some(r) = receipt {
        match r["cost_nanoton"].as_u64() {
            Some(c) => lines.push(format!("Price: {c} nanoton")),
            None => lines.push("Price: not charged".into()),
        }
        lines.push(format!(
            "Through proxy: {}",
            r["proxy"]["name"].as_str().unwrap_or("unknown")
        ));
        let checks: Vec<String> = last
            .and_then(|v| v["checks"].as_array())
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{} {}",
                    if c["ok"] == true { "✓" } else { "✗" },
                    c["check"].as_str().unwrap_or("?")
                )
            })
            .collect();
        lines.push(format!("Checks: {}", checks.join(", ")));
        if let Some(id) = r["request_id"].as_str() {
            lines.push(format!("Receipt: {base}/?request={id}"));
        }
    }
    lines
}

fn first_failure(v: &Value) -> String {
    v["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["ok"] != true)
        .map(|c| {
            format!(
                "{}: {}",
                c["check"].as_str().unwrap_or("?"),
                c["detail"].as_str().unwrap_or("")
            )
        })
        .unwrap_or_else(|| {
            v["verdict"]
                .as_str()
                .unwrap_or("the receipt did not verify")
                .to_string()
        })
}

fn short(s: Option<&str>) -> String {
    let Some(s) = s else {
        return "unstated".into();
    };
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 16 {
        return s.to_string();
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 6..].iter().collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_failed_check_is_named_first() {
        let ok = json!({"verified": true, "receipt": {"request_id": "r1", "cost_nanoton": 2800, "proxy": {"name": "p"}},
            "evidence": {"tee": "tdx", "image_hash": "ab".repeat(32), "tcb_status": "UpToDate", "simulated": false},
            "checks": [{"check": "answer", "ok": true, "detail": ""}]});
        let bad = json!({"verified": false, "checks": [{"check": "answer", "ok": false, "detail": "digest differs"}]});
        let cocoon = json!({"worker": "w", "coefficient": 1500, "model_hash": "cd".repeat(32)});
        let text = describe(&cocoon, "m", &[Ok(ok.clone())], "http://x");
        assert!(
            text.starts_with("✅ Verified")
                && text.contains("tdx TEE")
                && text.contains("2800 nanoton")
                && text.contains("http://x/?request=r1"),
            "{text}"
        );
        assert!(text.contains("1.500×"), "{text}");
        let text = describe(&cocoon, "m", &[Ok(bad), Ok(ok)], "http://x");
        assert!(
            text.starts_with("❌ NOT verified: answer: digest differs"),
            "{text}"
        );
    }
}
