//! `cocoon client keys create|list|revoke`: a running client's API keys,
//! managed with its admin token.

use anyhow::{anyhow, bail, Context};

use crate::options::{KeysAction, KeysCommon};

const DEFAULT_API: &str = "http://127.0.0.1:10000";

/// The operator's token: from `file`, else from the file the client says
/// it keeps it in (readable only on its machine, by its user).
pub async fn operator_token(api: &str, file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let path = match file {
        Some(f) => f.to_path_buf(),
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
            p.into()
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
