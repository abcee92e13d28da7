//! `cocoon client keys create|list|revoke`: a running client's API keys,
//! managed with its admin token.

use anyhow::{anyhow, bail, Context};

use crate::options::{KeysAction, KeysCommon};

const DEFAULT_API: &str = "http://127.0.0.1:10000";

/// The operator's token: from `file`, else, for a client on this machine
/// (a loopback `--api`), from the file it says it keeps the token in, which
/// only its user can read. A client elsewhere is never sent a token it
/// did not get from `--admin-token-file`, nor told the contents of a file
/// it names: the file must be a client's `admin.token`.
pub async fn operator_token(api: &str, file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let path = match file {
        Some(f) => f.to_path_buf(),
        None if !is_loopback(api) => {
            bail!("{api} is not on this machine: pass its admin token with --admin-token-file")
        }
        None => {
            let (status, body) =
                crate::run::call_local("GET", api, "/v1/cocoon/admin", "", None).await?;
            if status != "200" {
                bail!(
                    "the client at {api} does not say where its admin token is (HTTP {status}): {}",
                    body.trim()
                );
            }
            let v: serde_json::Value = serde_json::from_str(body.trim())
                .with_context(|| format!("the client at {api} answered {:?}", body.trim()))?;
            let Some(p) = v["admin_token_file"].as_str() else {
                bail!("the client at {api} keeps its admin token in memory only; pass --admin-token-file");
            };
            let p = std::path::PathBuf::from(p);
            if p.file_name().and_then(|n| n.to_str()) != Some("admin.token") {
                bail!("the client at {api} names {} as its admin token, which is not a client's admin.token; pass --admin-token-file", p.display());
            }
            p
        }
    };
    let token = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading the client's admin token from {} (run this as the client's user on its machine, or pass --admin-token-file)",
            path.display()
        )
    })?;
    Ok(token.trim().to_string())
}

/// Whether `api` (`http://HOST:PORT`) is on this machine.
pub fn is_loopback(api: &str) -> bool {
    let rest = api.strip_prefix("http://").unwrap_or(api);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Runs one keys action and prints the client's JSON answer.
pub async fn run(action: KeysAction) -> anyhow::Result<()> {
    let (common, method, path, body) = match action {
        KeysAction::Create {
            common,
            name,
            budget,
            requests_per_minute,
            tokens_per_minute,
            model,
            monthly,
        } => {
            let body = serde_json::json!({
                "name": name,
                "budget_nanoton": budget,
                "requests_per_minute": requests_per_minute,
                "tokens_per_minute": tokens_per_minute,
                "models": model,
                "renewal": if monthly { "monthly" } else { "never" },
            });
            (
                common,
                "POST",
                "/v1/cocoon/keys".to_string(),
                body.to_string(),
            )
        }
        KeysAction::List { common } => (common, "GET", "/v1/cocoon/keys".into(), String::new()),
        KeysAction::Revoke { common, id } => {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                bail!("{id:?} is not a key id (key_ and 12 hex digits, as `keys list` shows)");
            }
            (
                common,
                "DELETE",
                format!("/v1/cocoon/keys/{id}"),
                String::new(),
            )
        }
    };
    let KeysCommon {
        api,
        admin_token_file,
    } = common;
    let api = api.unwrap_or_else(|| DEFAULT_API.to_string());
    let token = operator_token(&api, admin_token_file.as_deref()).await?;
    let (status, answer) = crate::run::call_local(method, &api, &path, &body, Some(&token)).await?;
    if !status.starts_with('2') {
        let v: serde_json::Value = serde_json::from_str(answer.trim()).unwrap_or_default();
        let why = v["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| answer.trim().to_string());
        return Err(anyhow!("the client refused (HTTP {status}): {why}"));
    }
    let v: serde_json::Value = serde_json::from_str(answer.trim()).unwrap_or_default();
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or(answer));
    if method == "POST" {
        eprintln!("The secret above is shown this once: give it to the app now (Authorization: Bearer <secret>).");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_this_machine_is_loopback() {
        for api in [
            "http://127.0.0.1:10000",
            "http://localhost:1",
            "http://[::1]:10000",
            "http://127.8.0.1",
        ] {
            assert!(super::is_loopback(api), "{api}");
        }
        for api in [
            "http://10.0.0.1:10000",
            "http://example.com:10000",
            "http://127.0.0.1.example.com:1",
        ] {
            assert!(!super::is_loopback(api), "{api}");
        }
    }
}
