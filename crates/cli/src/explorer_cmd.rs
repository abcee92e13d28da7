//! `cocoon explorer`: the network explorer on its own, reading a chain.

use std::sync::Arc;

use anyhow::Context;
use cocoon_chain::{Toncenter, ToncenterConfig};

use crate::options::ExplorerOptions;
use crate::receipt_cmd::{verifier_from, VerifierOptions};

pub async fn run(o: ExplorerOptions) -> anyhow::Result<()> {
    let root = o
        .root
        .parse()
        .map_err(|e| anyhow::anyhow!("--root {:?} is not a TON address: {e}", o.root))?;
    let mut config = ToncenterConfig::single(o.chain.clone());
    config.api_key = o.chain_api_key.clone();
    let chain = Arc::new(Toncenter::new(config).context("--chain")?);
    // The registry must be readable now: a wrong endpoint or root is told
    // at once, not as an empty page.
    cocoon_chain::registry::params_version(chain.as_ref(), &root)
        .await
        .with_context(|| format!("reading the root registry {root} at {}", o.chain))?;
    let (verifier, policy) = match &o.policy {
        Some(path) => {
            let v = verifier_from(&VerifierOptions {
                policy: Some(path),
                dev: o.dev,
                data_dir: None,
                collateral: o.collateral.as_deref(),
                pccs_url: o.pccs_url.as_deref(),
            })?;
            (Some(Arc::new(v)), format!("policy {}", path.display()))
        }
        None => (None, "no policy: receipts are not checked here".to_string()),
    };
    let listen = o.listen.unwrap_or_else(|| ([127, 0, 0, 1], 10040).into());
    let explorer =
        cocoon_client::web::ChainExplorer::new(chain, o.chain.clone(), root, verifier, policy);
    let (bound, task) = cocoon_client::web::serve_explorer(listen, explorer)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(explorer = %format!("http://{bound}/"), root = %o.root, chain = %o.chain, "explorer started");
    crate::run::ctrl_c().await;
    task.abort();
    Ok(())
}
