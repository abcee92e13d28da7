//! `cocoon registry`: the root registry's owner at work. Every change is a
//! message from the owner's wallet; `show` reads the registry through its
//! get-methods. The chain is any toncenter v2 endpoint (`--chain`).

use anyhow::{anyhow, bail, Context};
use cocoon_chain::contracts::{self, Codes, Prices, Role};
use cocoon_chain::wallet::Transfer;
use cocoon_chain::{AccountStatus, Chain};
use cocoon_core::Nanoton;
use tycho_types::cell::{Cell, HashBytes};
use tycho_types::models::StdAddr;

use crate::chain_node::NodeChain;
use crate::options::{RegistryAction, RegistryOptions};

const GAS: Nanoton = Nanoton::new(100_000_000);
/// What a registration carries: the proxy contract's storage reserve,
/// which the root sends on with its deployment, and gas; the rest comes
/// back.
const REGISTER_VALUE: Nanoton = Nanoton::new(500_000_000);
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn hash(s: &str, what: &str) -> anyhow::Result<HashBytes> {
    let s = s.trim();
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{what} must be 64 hex digits, found {s:?}");
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| anyhow!("{what}: {e}"))?;
    }
    Ok(HashBytes(out))
}

fn role(s: &str) -> anyhow::Result<Role> {
    Ok(match s {
        "proxy" => Role::Proxy,
        "worker" => Role::Worker,
        "client" => Role::Client,
        other => bail!("--role must be proxy, worker or client, found {other:?}"),
    })
}

/// Runs a registry command.
pub async fn run(o: RegistryOptions) -> anyhow::Result<()> {
    let common = o.action.common();
    let c =
        crate::chain_node::required(&common.chain, common.data_dir.as_deref(), "registry-owner")
            .await?;
    let root = || {
        crate::payments::address(common.root.as_deref(), "--root")?
            .ok_or_else(|| anyhow!("--root is required"))
    };
    match &o.action {
        RegistryAction::Deploy { .. } => {
            let codes = Codes::committed()?;
            let prices = crate::payments::default_registry_prices();
            let terms = crate::local_chain::TERMS;
            let init = contracts::root_state_init(&c.wallet.address(), &prices, &terms, &codes)?;
            let address = contracts::address_of(&init);
            if c.chain.account(&address).await?.status == AccountStatus::Active {
                println!("{{\"root\":\"{address}\",\"deployed\":false}}");
                return Ok(());
            }
            let t = Transfer {
                to: address.clone(),
                value: Nanoton::TON,
                bounce: false,
                body: None,
                init: Some(init),
            };
            c.wallet
                .send(c.chain.as_ref(), &[t], TIMEOUT)
                .await
                .context("deploying the root registry")?;
            println!(
                "{{\"root\":\"{address}\",\"deployed\":true,\"owner\":\"{}\"}}",
                c.wallet.address()
            );
        }
        RegistryAction::Show { .. } => show(&c, &root()?).await?,
        RegistryAction::AddImage {
            role: r, hash: h, ..
        } => set_image(&c, &root()?, r, h, true).await?,
        RegistryAction::RemoveImage {
            role: r, hash: h, ..
        } => set_image(&c, &root()?, r, h, false).await?,
        RegistryAction::AddModel { hash: h, name, .. } => {
            let body = contracts::set_model(
                cocoon_core::unix_now(),
                &hash(h, "the model hash")?,
                Some(name),
            )?;
            println!(
                "{}",
                serde_json::json!({"version": send(&c, &root()?, body, GAS).await?})
            );
        }
        RegistryAction::RegisterProxy {
            owner,
            key,
            endpoint,
            ..
        } => {
            let owner = crate::payments::address(Some(owner), "--owner")?
                .ok_or_else(|| anyhow!("--owner"))?;
            let key = hash(key, "the voucher key")?;
            if cocoon_core::ed25519::is_small_order(&key.0) {
                bail!("the voucher key {key} is a point of small order: anyone could sign vouchers under it, and the root refuses it (exit code 109)");
            }
            let body = contracts::register_proxy(cocoon_core::unix_now(), &owner, &key, endpoint)?;
            let root = root()?;
            let version = send(&c, &root, body, REGISTER_VALUE).await?;
            let contract =
                cocoon_chain::registry::proxy_address(c.chain.as_ref(), &root, &owner, &key)
                    .await?;
            println!(
                "{}",
                serde_json::json!({"version": version, "proxy_contract": contract.to_string()})
            );
        }
        RegistryAction::SetPrices {
            price_per_token,
            worker_fee_per_token,
            multipliers,
            ..
        } => {
            let body = prices_message(*price_per_token, *worker_fee_per_token, multipliers)?;
            let version = send(&c, &root()?, body, GAS).await?;
            println!("{}", serde_json::json!({ "version": version }));
        }
        tiers => {
            let body = tier_message(tiers)?;
            let version = send(&c, &root()?, body, GAS).await?;
            println!("{}", serde_json::json!({ "version": version }));
        }
    }
    Ok(())
}

/// The owner's `set_prices` message, its values checked as the root checks them.
fn prices_message(
    price_per_token: u64,
    worker_fee_per_token: u64,
    multipliers: &str,
) -> anyhow::Result<Cell> {
    let m: Vec<u32> = multipliers
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<u32>()
                .map_err(|_| anyhow!("--multipliers: {p:?} is not a whole number"))
        })
        .collect::<Result<_, _>>()?;
    let [prompt, cached, completion, reasoning] = m[..] else {
        bail!("--multipliers takes four values: prompt,cached,completion,reasoning");
    };
    let prices = Prices {
        price_per_token: Nanoton::new(price_per_token),
        worker_fee_per_token: Nanoton::new(worker_fee_per_token),
        prompt_multiplier: prompt,
        cached_multiplier: cached,
        completion_multiplier: completion,
        reasoning_multiplier: reasoning,
    };
    prices
        .check()
        .context("the root refuses these prices (exit code 106)")?;
    Ok(contracts::set_prices(cocoon_core::unix_now(), &prices)?)
}

/// The owner's message for a trust-tier command, its values checked as the
/// root checks them.
fn tier_message(action: &RegistryAction) -> anyhow::Result<Cell> {
    let now = cocoon_core::unix_now();
    let bp = |m: u32, what: &str| -> anyhow::Result<u32> {
        if !(1..=cocoon_core::BasisPoints::MAX).contains(&m) {
            bail!("{what} must be 1 to 1000000 basis points, found {m}; the root refuses it (exit code 106)");
        }
        Ok(m)
    };
    let region = |r: &str| cocoon_core::Region::new(r).map_err(|e| anyhow!("{e}"));
    Ok(match action {
        RegistryAction::SetTierPrices {
            tdx,
            sev_snp,
            open,
            gpu,
            replication,
            require_regions,
            ..
        } => contracts::set_tier_multipliers(
            now,
            [
                bp(*tdx, "--tdx")?,
                bp(*sev_snp, "--sev-snp")?,
                bp(*open, "--open")?,
                bp(*gpu, "--gpu")?,
                bp(*replication, "--replication")?,
            ],
            *require_regions,
        )?,
        RegistryAction::SetRegionPrice {
            region: r,
            multiplier,
            ..
        } => {
            let m = if *multiplier == 0 {
                0
            } else {
                bp(*multiplier, "--multiplier")?
            };
            contracts::set_region_price(now, &region(r)?, m)?
        }
        RegistryAction::SetModelPrice {
            hash: h,
            multiplier,
            ..
        } => {
            let m = if *multiplier == 0 {
                0
            } else {
                bp(*multiplier, "--multiplier")?
            };
            contracts::set_model_price(now, &hash(h, "the model hash")?, m)?
        }
        RegistryAction::SetOperator {
            wallet,
            regions,
            open,
            remove,
            ..
        } => {
            let wallet = crate::payments::address(Some(wallet), "the operator's wallet")?
                .ok_or_else(|| anyhow!("the operator's wallet"))?;
            let regions = regions
                .iter()
                .map(|r| region(r))
                .collect::<anyhow::Result<Vec<_>>>()?;
            contracts::set_operator(now, &wallet, !remove, *open, &regions)?
        }
        other => bail!("not a trust-tier command: {other:?}"),
    })
}

async fn set_image(
    c: &NodeChain,
    root: &StdAddr,
    r: &str,
    h: &str,
    allowed: bool,
) -> anyhow::Result<()> {
    let body = contracts::set_image(
        cocoon_core::unix_now(),
        role(r)?,
        &hash(h, "the image hash")?,
        allowed,
    )?;
    println!(
        "{}",
        serde_json::json!({ "version": send(c, root, body, GAS).await? })
    );
    Ok(())
}

/// Sends a change carrying `value` from the owner's wallet; returns the
/// registry's new version.
async fn send(c: &NodeChain, root: &StdAddr, body: Cell, value: Nanoton) -> anyhow::Result<u64> {
    let before = version(c, root).await?;
    let t = Transfer {
        to: root.clone(),
        value,
        bounce: true,
        body: Some(body),
        init: None,
    };
    c.wallet.send(c.chain.as_ref(), &[t], TIMEOUT).await?;
    let after = version(c, root).await?;
    if after == before {
        bail!(
            "the registry did not change (version {before}): is this wallet, {}, its owner?",
            c.wallet.address()
        );
    }
    Ok(after)
}

async fn version(c: &NodeChain, root: &StdAddr) -> anyhow::Result<u64> {
    Ok(cocoon_chain::registry::params_version(c.chain.as_ref(), root).await?)
}

async fn show(c: &NodeChain, root: &StdAddr) -> anyhow::Result<()> {
    let doc = cocoon_chain::registry::describe(c.chain.as_ref(), root).await?;
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
