//! The configuration a node attests to: `config_hash` in its RA-TLS claims,
//! so that a peer (or an auditor holding the certificate) can tell which
//! settings a node was started with.
//!
//! The encoding is fixed; changing it changes every node's claims:
//!
//! - a JSON object `{"attestation": A, "options": O, "role": R}`, where `R`
//!   is the command (`"proxy"`, `"worker"`, `"client"`, or `"up proxy"`,
//!   `"up worker"`, `"up client"` for the nodes of `cocoon up`), `O` the
//!   command's options and `A` the attestation options, each an object of
//!   the options that are set (by flag, environment or file) under their
//!   configuration-file names; unset options are left out, and so are
//!   secrets (an engine's API key);
//! - members in byte order of their names, at every level; no whitespace;
//!   strings escaped as JSON requires (`"`, `\`, control characters as
//!   `\u00XX` or their short forms), everything else written as is; numbers
//!   as decimal integers, booleans as `true`/`false`;
//! - `config_hash` is the SHA-256 of those UTF-8 bytes.

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;
use sha2::Digest;

use crate::options::AttestationOptions;

/// The canonical encoding of a node's configuration (see the module docs).
pub fn canonical(
    role: &str,
    options: &impl Serialize,
    attestation: &AttestationOptions,
) -> anyhow::Result<String> {
    let mut top = serde_json::Map::new();
    top.insert("role".into(), Value::String(role.into()));
    top.insert(
        "options".into(),
        serde_json::to_value(options).context("encoding the node's options")?,
    );
    top.insert(
        "attestation".into(),
        serde_json::to_value(attestation).context("encoding the attestation options")?,
    );
    let mut out = String::new();
    write(&Value::Object(top), &mut out);
    Ok(out)
}

/// SHA-256 of [`canonical`].
pub fn config_hash(
    role: &str,
    options: &impl Serialize,
    attestation: &AttestationOptions,
) -> anyhow::Result<[u8; 32]> {
    let text = canonical(role, options, attestation)?;
    Ok(sha2::Sha256::digest(text.as_bytes()).into())
}

/// Writes `v` canonically: sorted members, unset (null) members left out.
/// The map's own order is not relied on (another crate may make it keep
/// insertion order).
fn write(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> =
                map.iter().filter(|(_, v)| !v.is_null()).collect();
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{EngineOptions, WorkerOptions};

    fn worker() -> WorkerOptions {
        WorkerOptions {
            name: Some("w1".into()),
            proxy: Some("10.0.0.1:10010".into()),
            coefficient: Some(cocoon_core::Coefficient::new(1200).unwrap()),
            engine: EngineOptions {
                upstream: Some("http://127.0.0.1:8000/v1".into()),
                model: Some("qwen".into()),
                upstream_api_key: Some("secret".into()),
                upstream_running_usage: Some(true),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn attestation() -> AttestationOptions {
        AttestationOptions {
            peer_policy: Some("policy.toml".into()),
            tee: Some("tdx".into()),
            ..Default::default()
        }
    }

    /// The encoding is pinned: if this test fails, every node's attested
    /// claims change, and policies or auditors relying on them must be told.
    #[test]
    fn the_encoding_and_its_hash_are_pinned() {
        let text = canonical("worker", &worker(), &attestation()).unwrap();
        assert_eq!(
            text,
            r#"{"attestation":{"peer_policy":"policy.toml","tee":"tdx"},"options":{"coefficient":1200,"model":"qwen","name":"w1","proxy":"10.0.0.1:10010","upstream":"http://127.0.0.1:8000/v1","upstream_running_usage":true},"role":"worker"}"#
        );
        // `printf '%s' TEXT | sha256sum` gives the same.
        let hash = config_hash("worker", &worker(), &attestation()).unwrap();
        assert_eq!(
            hex::encode(hash),
            "d902bc5ca2f61e018357c4de3fd8ce9c72c2225636481193d14dbb0027917709"
        );
    }

    #[test]
    fn secrets_and_unset_options_are_left_out_and_any_setting_counts() {
        let text = canonical("worker", &worker(), &attestation()).unwrap();
        assert!(!text.contains("secret"));
        assert!(!text.contains("null"));
        let mut dearer = worker();
        dearer.coefficient = Some(cocoon_core::Coefficient::new(1300).unwrap());
        assert_ne!(
            config_hash("worker", &worker(), &attestation()).unwrap(),
            config_hash("worker", &dearer, &attestation()).unwrap()
        );
        assert_ne!(
            config_hash("worker", &worker(), &attestation()).unwrap(),
            config_hash("up worker", &worker(), &attestation()).unwrap()
        );
    }
}
