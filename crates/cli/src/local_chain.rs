//! What `cocoon up` puts on its devnet before it serves: wallets for the
//! registry's owner, the proxy's operator, the client and the worker
//! (funded by the faucet), the root registry, the proxy registered and
//! staked, this image and model allowed, and the client's contract with a
//! first deposit. Every step goes through the chain's API, as it would on
//! testnet, and is skipped when the chain already shows it done, so a
//! restart of `cocoon up` on the same data directory changes nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cocoon_chain::contracts::{self, Codes, Prices, ProxyConfig, Role, Terms};
use cocoon_chain::wallet::{Transfer, WalletV5};
use cocoon_chain::{AccountStatus, Chain, Toncenter, ToncenterConfig};
use cocoon_core::Nanoton;
use cocoon_devnet::Devnet;
use tycho_types::cell::HashBytes;
use tycho_types::models::{StateInit, StdAddr};
use tycho_types::num::Tokens;

/// How long one chain step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Gas sent with each registry or contract message; the rest comes back.
const GAS: Nanoton = Nanoton::new(100_000_000);
/// What a proxy's registration carries: the proxy contract's storage
/// reserve, which the root sends on, and gas; the rest comes back.
const REGISTER_VALUE: Nanoton = Nanoton::new(500_000_000);

/// The network's terms on the local chain.
pub const TERMS: Terms = Terms {
    min_proxy_stake: Nanoton::new(10 * Nanoton::TON.get()),
    min_client_stake: Nanoton::new(Nanoton::TON.get()),
    min_worker_stake: Nanoton::TON,
    proxy_close_delay: 86_400,
    client_close_delay: 3_600,
    slash_share: 1_000,
};

/// What the client deposits on first start.
pub const CLIENT_DEPOSIT: Nanoton = Nanoton::new(10 * Nanoton::TON.get());

/// The local network's accounts on chain.
#[derive(Debug, Clone)]
pub struct LocalChain {
    /// The chain's API.
    pub endpoint: String,
    /// The root registry.
    pub root: StdAddr,
    /// The proxy's contract (vouchers name it).
    pub proxy_contract: StdAddr,
    /// The proxy operator's wallet: it pays for commits.
    pub proxy_wallet: Arc<WalletV5>,
    /// The client's wallet.
    pub client_wallet: Arc<WalletV5>,
    /// The client's contract: its payer address.
    pub client_contract: StdAddr,
    /// The worker's wallet: where its earnings go.
    pub worker_wallet: Arc<WalletV5>,
    /// The worker's contract: its payee address in vouchers.
    pub worker_contract: StdAddr,
    /// The worker contract's initial state (deployed when the worker stakes).
    pub worker_contract_init: StateInit,
}

/// The four wallets, their keys kept in `dir/keys/` (mode 0600).
struct Wallets {
    root_owner: WalletV5,
    proxy_owner: WalletV5,
    client: WalletV5,
    worker: WalletV5,
}

fn wallet(dir: &Path, name: &str, global_id: i32) -> anyhow::Result<WalletV5> {
    let options = crate::options::ChainOptions::default();
    let key = crate::chain_node::wallet_key(&options, dir, name, global_id, true)?;
    Ok(WalletV5::new(key, global_id)?)
}

/// Sets up (or finds) the local network's accounts on `devnet`, whose API
/// is at `endpoint`. `voucher_key` is the proxy's; `image` and `model` are
/// what `cocoon up` runs.
pub async fn bootstrap(
    devnet: &Devnet,
    endpoint: &str,
    data_dir: &Path,
    voucher_key: [u8; 32],
    prices: Prices,
    image: [u8; 32],
    model: Option<([u8; 32], String)>,
) -> anyhow::Result<LocalChain> {
    let chain = Toncenter::new(ToncenterConfig::single(endpoint))?;
    let global_id = devnet.global_id();
    let w = Wallets {
        root_owner: wallet(data_dir, "registry-owner", global_id)?,
        proxy_owner: wallet(data_dir, "proxy-operator", global_id)?,
        client: wallet(data_dir, "client", global_id)?,
        worker: wallet(data_dir, "worker", global_id)?,
    };
    fund(devnet, &chain, &w).await?;

    TERMS.check().context("the local network's terms")?;
    prices.check().context("the local network's prices")?;
    let codes = Codes::committed()?;
    let root_init = contracts::root_state_init(&w.root_owner.address(), &prices, &TERMS, &codes)?;
    let root = contracts::address_of(&root_init);
    let key = HashBytes(voucher_key);
    let config = ProxyConfig::under(&root, &TERMS, &codes);
    let proxy_contract = contracts::address_of(&contracts::proxy_state_init(
        &w.proxy_owner.address(),
        &key,
        &config,
        &codes.proxy,
    )?);

    // The registry in one request: deployed, the proxy registered, this
    // image and model allowed (each hop a block later on the devnet, so
    // one request rather than five).
    let ops = registry_ops(
        &chain,
        &w,
        root_init,
        &root,
        &proxy_contract,
        &key,
        image,
        &model,
    )
    .await?;
    if !ops.is_empty() {
        w.root_owner
            .send(&chain, &ops, STEP_TIMEOUT)
            .await
            .context("setting up the root registry")?;
        tracing::info!(%root, %proxy_contract, "root registry set up, proxy registered");
    }

    // Then three wallets at once: the proxy's stake, the client's first
    // deposit, the worker's stake.
    let client_init =
        contracts::client_state_init(&proxy_contract, &key, &config, &w.client.address())?;
    let client_contract = contracts::address_of(&client_init);
    let worker_contract_init =
        contracts::worker_state_init(&proxy_contract, &key, &config, &w.worker.address())?;
    let worker_contract = contracts::address_of(&worker_contract_init);
    let (proxy, client, worker) = tokio::join!(
        stake_proxy(&chain, &w.proxy_owner, &proxy_contract),
        open_client(&chain, &w.client, &client_contract, client_init),
        stake_worker(&chain, &w.worker, &worker_contract, &worker_contract_init),
    );
    proxy.context("staking the proxy")?;
    client.context("the client's first deposit")?;
    worker.context("staking the worker")?;
    Ok(LocalChain {
        endpoint: endpoint.to_string(),
        root,
        proxy_contract,
        proxy_wallet: Arc::new(w.proxy_owner),
        client_wallet: Arc::new(w.client),
        client_contract,
        worker_wallet: Arc::new(w.worker),
        worker_contract,
        worker_contract_init,
    })
}

/// Development money: tops each wallet up to what it needs.
async fn fund(devnet: &Devnet, chain: &Toncenter, w: &Wallets) -> anyhow::Result<()> {
    for (wallet, want) in [
        (&w.root_owner, 100u64),
        (&w.proxy_owner, 100),
        (&w.client, 100),
        (&w.worker, 3),
    ] {
        let want = u128::from(want * Nanoton::TON.get());
        let have = chain.account(&wallet.address()).await?.balance.get();
        if u128::from(have) < want / 2 {
            devnet.faucet(&wallet.address(), Tokens::new(want - u128::from(have)))?;
        }
    }
    Ok(())
}

/// What the registry still lacks, as messages from its owner's wallet.
#[allow(clippy::too_many_arguments)]
async fn registry_ops(
    chain: &Toncenter,
    w: &Wallets,
    root_init: StateInit,
    root: &StdAddr,
    proxy_contract: &StdAddr,
    key: &HashBytes,
    image: [u8; 32],
    model: &Option<([u8; 32], String)>,
) -> anyhow::Result<Vec<Transfer>> {
    let to_root = |body, value| Transfer {
        to: root.clone(),
        value,
        bounce: true,
        body: Some(body),
        init: None,
    };
    let mut ops = Vec::new();
    let deployed = is_active(chain, root).await?;
    if !deployed {
        ops.push(Transfer {
            to: root.clone(),
            value: Nanoton::TON,
            bounce: false,
            body: None,
            init: Some(root_init),
        });
    }
    if !is_active(chain, proxy_contract).await? {
        let body =
            contracts::register_proxy(1, &w.proxy_owner.address(), key, "tls://127.0.0.1:10010")?;
        ops.push(to_root(body, REGISTER_VALUE));
    }
    let hash = HashBytes(image);
    for role in [Role::Proxy, Role::Worker, Role::Client] {
        if !deployed || !image_allowed(chain, root, role, &hash).await? {
            ops.push(to_root(contracts::set_image(3, role, &hash, true)?, GAS));
        }
    }
    if let Some((hash, name)) = model {
        let hash = HashBytes(*hash);
        if !deployed || !model_registered(chain, root, &hash).await? {
            ops.push(to_root(contracts::set_model(4, &hash, Some(name))?, GAS));
        }
    }
    Ok(ops)
}

/// Tops the proxy's stake up to the terms' minimum.
async fn stake_proxy(chain: &Toncenter, owner: &WalletV5, proxy: &StdAddr) -> anyhow::Result<()> {
    let stake = proxy_stake(chain, proxy).await?;
    if stake >= TERMS.min_proxy_stake.get() {
        return Ok(());
    }
    let amount = Nanoton::new(TERMS.min_proxy_stake.get() - stake);
    let t = Transfer {
        to: proxy.clone(),
        value: amount.checked_add(GAS)?,
        bounce: true,
        body: Some(contracts::add_proxy_stake(2, amount)?),
        init: None,
    };
    owner.send(chain, &[t], STEP_TIMEOUT).await?;
    Ok(())
}

/// Deploys the client's contract with its first deposit.
async fn open_client(
    chain: &Toncenter,
    client: &WalletV5,
    contract: &StdAddr,
    init: StateInit,
) -> anyhow::Result<()> {
    if is_active(chain, contract).await? {
        return Ok(());
    }
    let t = Transfer {
        to: contract.clone(),
        value: CLIENT_DEPOSIT.checked_add(GAS)?,
        bounce: true,
        body: Some(contracts::top_up(5, CLIENT_DEPOSIT)?),
        init: Some(init),
    };
    client.send(chain, &[t], STEP_TIMEOUT).await?;
    tracing::info!(client_contract = %contract, deposit = %CLIENT_DEPOSIT, "client contract opened");
    Ok(())
}

/// Stakes the worker's contract up to the terms' minimum (deploying it).
async fn stake_worker(
    chain: &Toncenter,
    worker: &WalletV5,
    contract: &StdAddr,
    init: &StateInit,
) -> anyhow::Result<()> {
    let staked = worker_stake(chain, contract).await?;
    if staked >= TERMS.min_worker_stake.get() {
        return Ok(());
    }
    let amount = Nanoton::new(TERMS.min_worker_stake.get() - staked);
    let t = Transfer {
        to: contract.clone(),
        value: amount
            .checked_add(GAS)?
            .checked_add(contracts::reserve::WORKER)?,
        bounce: false,
        body: Some(contracts::add_worker_stake(6, amount)?),
        init: Some(init.clone()),
    };
    worker.send(chain, &[t], STEP_TIMEOUT).await?;
    tracing::info!(worker_contract = %contract, stake = %amount, "worker staked");
    Ok(())
}

async fn is_active(chain: &impl Chain, address: &StdAddr) -> anyhow::Result<bool> {
    Ok(chain.account(address).await?.status == AccountStatus::Active)
}

async fn proxy_stake(chain: &impl Chain, proxy: &StdAddr) -> anyhow::Result<u64> {
    Ok(cocoon_chain::views::proxy_data(chain, proxy)
        .await?
        .stake
        .get())
}

/// What `worker`'s contract has at stake (0 before it exists).
async fn worker_stake(chain: &impl Chain, worker: &StdAddr) -> anyhow::Result<u64> {
    if !is_active(chain, worker).await? {
        return Ok(0);
    }
    Ok(cocoon_chain::views::worker_stake(chain, worker)
        .await?
        .stake
        .get())
}

async fn image_allowed(
    chain: &impl Chain,
    root: &StdAddr,
    role: Role,
    hash: &HashBytes,
) -> anyhow::Result<bool> {
    Ok(cocoon_chain::registry::image_allowed(chain, root, role, hash).await?)
}

async fn model_registered(
    chain: &impl Chain,
    root: &StdAddr,
    hash: &HashBytes,
) -> anyhow::Result<bool> {
    Ok(cocoon_chain::registry::model(chain, root, hash)
        .await?
        .is_some())
}
