//! A standalone node on a chain (`--chain URL`): its toncenter client, its
//! wallet, and its contract found through the contracts' own get-methods.
//! TON testnet, mainnet and a `cocoon devnet` differ only in the URL.

use cocoon_chain::views::Lifecycle;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use cocoon_chain::contracts::{self, ProxyConfig};
use cocoon_chain::wallet::{network, WalletKey, WalletV5};
use cocoon_chain::{registry, AccountStatus, Chain, Toncenter, ToncenterConfig};
use tycho_types::cell::HashBytes;
use tycho_types::models::{StateInit, StdAddr};

use crate::options::ChainOptions;

/// A node's way onto the chain.
pub struct NodeChain {
    /// The endpoints, as given.
    pub endpoint: String,
    /// The client.
    pub chain: Arc<Toncenter>,
    /// The node's wallet.
    pub wallet: Arc<WalletV5>,
    /// The network's global id, as the chain reports it.
    pub global_id: i32,
}

/// A network `--network` names: its endpoint and global id.
struct Preset {
    endpoint: &'static str,
    global_id: i32,
}

fn preset(name: &str) -> anyhow::Result<Preset> {
    Ok(match name {
        "devnet" => Preset {
            endpoint: "http://127.0.0.1:10030/api/v2",
            global_id: cocoon_devnet::config::DEVNET_GLOBAL_ID,
        },
        "testnet" => Preset {
            endpoint: "https://testnet.toncenter.com/api/v2",
            global_id: network::TESTNET,
        },
        "mainnet" => Preset {
            endpoint: "https://toncenter.com/api/v2",
            global_id: network::MAINNET,
        },
        other => bail!("--network must be devnet, testnet or mainnet, found {other:?}"),
    })
}

/// The node's chain, or `None` without `--chain` or `--network`. The
/// network's global id is the chain's own (config param 19); a
/// `--global-id` or `--network` that says otherwise is refused, since a
/// wallet signs for one network only. On mainnet no wallet key is created
/// by itself (`create_key` allows it).
pub async fn open(
    o: &ChainOptions,
    data_dir: &Path,
    role: &str,
    create_key: bool,
) -> anyhow::Result<Option<NodeChain>> {
    let preset = o.network.as_deref().map(preset).transpose()?;
    let Some(endpoints) = o
        .chain
        .clone()
        .or_else(|| preset.as_ref().map(|p| p.endpoint.to_string()))
    else {
        if o.wallet_key.is_some() || o.wallet_mnemonic_file.is_some() || o.chain_api_key.is_some() {
            bail!("wallet and chain options need --chain (the chain's toncenter v2 endpoint) or --network");
        }
        return Ok(None);
    };
    let list: Vec<String> = endpoints
        .split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    let mut config = ToncenterConfig::single(list.first().cloned().unwrap_or_default());
    config.endpoints = list;
    config.api_key = o.chain_api_key.clone();
    let chain = Arc::new(Toncenter::new(config).context("--chain")?);
    let expected = match (o.global_id, preset.as_ref().map(|p| p.global_id)) {
        (Some(a), Some(b)) if a != b => bail!(
            "--global-id {a} contradicts --network {} (global id {b})",
            o.network.as_deref().unwrap_or_default()
        ),
        (a, b) => a.or(b),
    };
    let global_id = network_global_id(&chain, &endpoints, expected).await?;
    let key = wallet_key(o, data_dir, role, global_id, create_key)?;
    let wallet = WalletV5::new(key, global_id)?;
    tracing::info!(chain = %endpoints, global_id, wallet = %wallet.address(), "on chain");
    Ok(Some(NodeChain {
        endpoint: endpoints,
        chain,
        wallet: Arc::new(wallet),
        global_id,
    }))
}

/// The chain's global id, checked against what this node was told.
async fn network_global_id(
    chain: &Toncenter,
    endpoints: &str,
    expected: Option<i32>,
) -> anyhow::Result<i32> {
    let reported = chain.global_id().await.with_context(|| {
        format!("reading the global id (config param 19) of the chain at {endpoints}")
    })?;
    match expected {
        Some(e) if e != reported => bail!(
            "the chain at {endpoints} is the network with global id {reported} (its config param 19), but this node was told {e}: a wallet signs for one network, so this node refuses to start"
        ),
        _ => Ok(reported),
    }
}

/// The node's wallet key: from `--wallet-mnemonic-file`, `--wallet-key`
/// (PKCS#8), or the role's own file in `DATA_DIR/keys/`: `ROLE.wallet-key`
/// when an earlier version created one, else `ROLE.wallet-mnemonic` (24
/// words, which `cocoon wallet export` shows). Key files must be readable by
/// their owner only. A missing one is created (mode 0600) except on mainnet,
/// unless asked.
pub fn wallet_key(
    o: &ChainOptions,
    data_dir: &Path,
    role: &str,
    global_id: i32,
    create_key: bool,
) -> anyhow::Result<WalletKey> {
    if o.wallet_mnemonic_file.is_some() && o.wallet_key.is_some() {
        bail!("give --wallet-key or --wallet-mnemonic-file, not both");
    }
    if let Some(file) = &o.wallet_mnemonic_file {
        return mnemonic_key(file);
    }
    let may_create = global_id != network::MAINNET || create_key;
    let refuse = |path: &Path| {
        anyhow!(
            "no wallet key at {}: on mainnet a node never creates one by itself. Import a wallet with \
             --wallet-mnemonic-file, or create a key deliberately with `cocoon wallet --role {role} --network mainnet --create-key`",
            path.display()
        )
    };
    if let Some(path) = &o.wallet_key {
        if !path.exists() && !may_create {
            return Err(refuse(path));
        }
        return pkcs8_key(path);
    }
    let (pkcs8, words) = role_key_files(data_dir, role);
    if pkcs8.exists() {
        return pkcs8_key(&pkcs8);
    }
    if !words.exists() {
        if !may_create {
            return Err(refuse(&words));
        }
        create_mnemonic_file(&words)?;
    }
    mnemonic_key(&words)
}

/// A role's key files in `data_dir`: the PKCS#8 one earlier versions
/// created, and the mnemonic one.
pub fn role_key_files(data_dir: &Path, role: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let keys = data_dir.join("keys");
    (
        keys.join(format!("{role}.wallet-key")),
        keys.join(format!("{role}.wallet-mnemonic")),
    )
}

fn pkcs8_key(path: &Path) -> anyhow::Result<WalletKey> {
    if path.exists() {
        private_only(path)?;
    }
    let pkcs8 = cocoon_tee::keyfile::ed25519_pkcs8(path)
        .with_context(|| format!("wallet key {}", path.display()))?;
    WalletKey::from_pkcs8(&pkcs8).with_context(|| format!("wallet key {}", path.display()))
}

fn mnemonic_key(path: &Path) -> anyhow::Result<WalletKey> {
    private_only(path)?;
    let words =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    WalletKey::from_mnemonic(&words).with_context(|| format!("{}", path.display()))
}

/// Writes a new mnemonic to `path` (mode 0600); a file another process
/// wrote meanwhile wins.
pub fn create_mnemonic_file(path: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let words = cocoon_chain::mnemonic::generate().map_err(|e| anyhow!("{e}"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut f) => {
            f.write_all(format!("{words}\n").as_bytes())?;
            f.sync_all()?;
            tracing::info!(path = %path.display(), "a new wallet: its 24 words are in this file (cocoon wallet export shows them)");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// Refuses a key file that anyone but its owner may read or write.
fn private_only(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "{} may be read or written by others (mode {:o}): a wallet key must be the owner's alone; chmod 600 it",
                path.display(),
                mode & 0o777
            );
        }
    }
    Ok(())
}

fn parse(flag: &str, value: Option<&str>) -> anyhow::Result<StdAddr> {
    let v = value.ok_or_else(|| anyhow!("{flag} is required with --chain"))?;
    crate::payments::address(Some(v), flag)?
        .ok_or_else(|| anyhow!("{flag} is required with --chain"))
}

/// Refuses a chain whose endpoint is a devnet with its faucet on, unless
/// this node runs in development mode (then says so loudly): money there
/// can be minted by anyone.
pub async fn refuse_devnet_tools(c: &NodeChain, dev: bool) -> anyhow::Result<()> {
    if c.chain.devnet_tools().await == Some(true) {
        if !dev {
            bail!(
                "the chain at {} is a devnet with its faucet and clock on: anyone can mint TON there. \
                 Refused outside development mode (--dev)",
                c.endpoint
            );
        }
        tracing::warn!(chain = %c.endpoint, "DEVELOPMENT CHAIN: this devnet's faucet mints TON; its money is worth nothing");
    }
    Ok(())
}

/// The proxy's contract: registered by the root for this proxy's wallet and
/// voucher key, and deployed.
pub async fn proxy_contract(
    c: &NodeChain,
    root: Option<&str>,
    voucher_key: [u8; 32],
) -> anyhow::Result<StdAddr> {
    let root = parse("--root", root)?;
    let owner = c.wallet.address();
    let key = HashBytes(voucher_key);
    let contract = registry::proxy_address(c.chain.as_ref(), &root, &owner, &key)
        .await
        .with_context(|| format!("asking the root registry {root} for this proxy's contract"))?;
    let account = c.chain.account(&contract).await?;
    if account.status != AccountStatus::Active {
        bail!(
            "this proxy is not registered: its contract {contract} does not exist. The registry's owner registers it with \
             owner {owner} (this proxy's wallet) and voucher key {key}"
        );
    }
    Ok(contract)
}

/// Refuses to serve from a proxy contract whose stake is below the root's
/// minimum: it books no charge, so every commit would bounce and the proxy
/// would serve for nothing.
pub async fn require_proxy_stake(c: &NodeChain, contract: &StdAddr) -> anyhow::Result<()> {
    let (stake, min) = proxy_stake_and_minimum(c, contract).await?;
    if stake < min {
        bail!(
            "this proxy's contract {contract} holds a stake of {stake} nanoton, below the root's minimum of {min}: \
             it books no charge until staked (`cocoon proxy stake --amount {}`)",
            min - stake
        );
    }
    Ok(())
}

/// The proxy contract's stake and the root's `min_proxy_stake` it was
/// registered under, in nanoton.
async fn proxy_stake_and_minimum(c: &NodeChain, contract: &StdAddr) -> anyhow::Result<(u64, u64)> {
    let chain = c.chain.as_ref();
    let stake = cocoon_chain::views::proxy_data(chain, contract)
        .await?
        .stake;
    let terms = cocoon_chain::views::proxy_terms(chain, contract).await?;
    Ok((stake.get(), terms.min_proxy_stake.get()))
}

/// A client's or worker's contract with a proxy.
pub struct PartyContract {
    /// The contract's address, as the proxy contract derives it.
    pub address: StdAddr,
    /// Its initial state (rebuilt from the registry, checked against the
    /// address): it deploys the contract with the first message.
    pub init: StateInit,
    /// The proxy contract.
    pub proxy: StdAddr,
    /// The root registry that registered the proxy.
    pub root: StdAddr,
}

/// This node's client or worker contract with `--proxy-contract`, derived
/// by the proxy contract from this node's wallet.
pub async fn party_contract(
    c: &NodeChain,
    proxy_contract: Option<&str>,
    role: &str,
) -> anyhow::Result<PartyContract> {
    let proxy = parse("--proxy-contract", proxy_contract)?;
    let owner = c.wallet.address();
    let chain = c.chain.as_ref();
    let (root, key) = registry::proxy_identity(chain, &proxy)
        .await
        .with_context(|| format!("reading the proxy contract {proxy}"))?;
    let terms = registry::terms(chain, &root).await?;
    let codes = registry::codes(chain, &root).await?;
    let config = ProxyConfig::under(&root, &terms, &codes);
    let (address, init) = if role == "client" {
        (
            registry::client_address(chain, &proxy, &owner).await?,
            contracts::client_state_init(&proxy, &key, &config, &owner)?,
        )
    } else {
        (
            registry::worker_address(chain, &proxy, &owner).await?,
            contracts::worker_state_init(&proxy, &key, &config, &owner)?,
        )
    };
    if contracts::address_of(&init) != address {
        bail!(
            "the proxy contract derives this {role}'s contract as {address}, but the registry's current terms give {}: \
             the registry changed its terms or code since the proxy was registered",
            contracts::address_of(&init)
        );
    }
    Ok(PartyContract {
        address,
        init,
        proxy,
        root,
    })
}
/// A proxy the root lists for a client: the one at `at` (HOST:PORT) if
/// given, else the first in address order. Returns its contract and the
/// HOST:PORT it is registered at.
pub async fn pick_proxy(
    c: &NodeChain,
    root: &str,
    at: Option<&str>,
) -> anyhow::Result<(StdAddr, String)> {
    let root = parse("--root", Some(root))?;
    let listed = registry::proxies(c.chain.as_ref(), &root)
        .await
        .with_context(|| format!("reading the proxies the root {root} registered"))?;
    let endpoint_of = |p: &registry::RegisteredProxy| {
        p.endpoints
            .split([',', ' '])
            .map(|e| e.trim().trim_start_matches("tls://").to_string())
            .find(|e| !e.is_empty())
    };
    let chosen = listed.iter().find(|p| match at {
        Some(at) => p
            .endpoints
            .split([',', ' '])
            .any(|e| e.trim().trim_start_matches("tls://") == at),
        None => endpoint_of(p).is_some(),
    });
    let Some(p) = chosen else {
        bail!(
            "the root {root} lists no proxy{}: {} registered",
            at.map(|a| format!(" at {a}")).unwrap_or_default(),
            listed.len()
        );
    };
    let endpoint = match at {
        Some(at) => at.to_string(),
        None => endpoint_of(p)
            .ok_or_else(|| anyhow!("the proxy {} registered no endpoint", p.contract))?,
    };
    tracing::info!(proxy = %p.contract, %endpoint, "using a proxy the registry lists");
    Ok((p.contract.clone(), endpoint))
}

/// How often the registry's image list is read again.
const IMAGES_REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

async fn read_images(
    chain: &Toncenter,
    root: &StdAddr,
) -> anyhow::Result<cocoon_tee::allowlist::ImagesByRole> {
    use cocoon_chain::contracts::Role as R;
    let mut sets = std::collections::BTreeMap::new();
    for (role, r) in [
        (cocoon_core::Role::Proxy, R::Proxy),
        (cocoon_core::Role::Worker, R::Worker),
        (cocoon_core::Role::Client, R::Client),
    ] {
        let hashes = registry::images(chain, root, r).await?;
        let set = hashes
            .iter()
            .map(|h| h.to_string().parse::<cocoon_tee::ImageHash>())
            .collect::<Result<std::collections::BTreeSet<_>, _>>()
            .map_err(|e| anyhow!("an image hash in the registry: {e}"))?;
        sets.insert(role, set);
    }
    Ok(sets)
}

/// The images the root registry allows per role, read now (a node does not
/// start without them) and every 30 s after; the last list read stands
/// while the chain is unreachable. With several endpoints, a list is taken
/// only when two agree on it: one endpoint alone never changes whom RA-TLS
/// accepts (`/stats` shows which it was).
pub async fn registry_images(
    chain: Arc<Toncenter>,
    root: StdAddr,
) -> anyhow::Result<Arc<cocoon_tee::ImageAllowList>> {
    let witnesses = Arc::new(cocoon_chain::corroborate::Corroborator::new(
        chain.config(),
    )?);
    let list = Arc::new(cocoon_tee::ImageAllowList::new(format!(
        "the root registry {root}"
    )));
    let read = |w: Arc<cocoon_chain::corroborate::Corroborator>, root: StdAddr| async move {
        w.read(|c| {
            let root = root.clone();
            async move { read_images(&c, &root).await }
        })
        .await
    };
    let first = read(witnesses.clone(), root.clone()).await;
    list.note(first.describe());
    match first.value() {
        Some(sets) => list.replace(sets),
        None => bail!(
            "reading the allowed images from the root registry: {}",
            list.note_text()
        ),
    }
    let refreshed = list.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(IMAGES_REFRESH).await;
            let agreement = read(witnesses.clone(), root.clone()).await;
            refreshed.note(agreement.describe());
            match agreement {
                a @ (cocoon_chain::corroborate::Agreement::Agreed(_)
                | cocoon_chain::corroborate::Agreement::Single(_)) => {
                    if let Some(sets) = a.value() {
                        refreshed.replace(sets);
                    }
                }
                other => {
                    tracing::warn!(status = %other.describe(), "the registry's images were not confirmed; the last list stands")
                }
            }
        }
    });
    Ok(list)
}

/// The node's chain for a command that needs one.
pub async fn required(
    o: &ChainOptions,
    data_dir: Option<&Path>,
    role: &str,
) -> anyhow::Result<NodeChain> {
    required_creating(o, data_dir, role, false).await
}

/// [`required`], creating the wallet key even on mainnet when asked.
pub async fn required_creating(
    o: &ChainOptions,
    data_dir: Option<&Path>,
    role: &str,
    create_key: bool,
) -> anyhow::Result<NodeChain> {
    let data_dir = data_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(crate::trust::default_data_dir);
    open(o, &data_dir, role, create_key).await?.ok_or_else(|| {
        anyhow!("--chain or --network is required: the chain's toncenter v2 endpoint")
    })
}

/// `cocoon wallet`: a node's wallet address, balance and state, so that an
/// operator knows what to fund.
pub async fn show_wallet(o: crate::options::WalletOptions) -> anyhow::Result<()> {
    let roles = ["registry-owner", "proxy-operator", "worker", "client"];
    if !roles.contains(&o.role.as_str()) {
        bail!(
            "--role must be one of {}, found {:?}",
            roles.join(", "),
            o.role
        );
    }
    if let Some(action) = &o.action {
        if action != "export" {
            bail!("`cocoon wallet {action}`: the only action is export");
        }
        return export_wallet(&o);
    }
    let c = required_creating(&o.chain, o.data_dir.as_deref(), &o.role, o.create_key).await?;
    let address = c.wallet.address();
    let account = c.chain.account(&address).await?;
    let doc = serde_json::json!({
        "role": o.role,
        "address": address.to_string(),
        "friendly": address.display_base64_url(false).to_string(),
        "balance": account.balance.get().to_string(),
        "state": account.status.as_str(),
    });
    println!("{doc}");
    Ok(())
}

/// `cocoon wallet export`: the role's 24 words, to import its wallet into a
/// TON wallet app. A key an earlier version kept as PKCS#8 has no words.
fn export_wallet(o: &crate::options::WalletOptions) -> anyhow::Result<()> {
    let data_dir = o
        .data_dir
        .clone()
        .unwrap_or_else(crate::trust::default_data_dir);
    let path = match (&o.chain.wallet_mnemonic_file, &o.chain.wallet_key) {
        (Some(words), _) => words.clone(),
        (None, Some(pkcs8)) => bail!(
            "{} is a PKCS#8 key, not a mnemonic: it cannot be shown as words; move its funds to a wallet created from a mnemonic",
            pkcs8.display()
        ),
        (None, None) => {
            let (pkcs8, words) = role_key_files(&data_dir, &o.role);
            if pkcs8.exists() {
                bail!(
                    "the {} wallet's key ({}) was created before wallets had mnemonics: it cannot be shown as words; move its funds to a wallet created from a mnemonic",
                    o.role,
                    pkcs8.display()
                );
            }
            words
        }
    };
    private_only(&path)?;
    let words =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let words = words.split_whitespace().collect::<Vec<_>>().join(" ");
    WalletKey::from_mnemonic(&words).with_context(|| format!("{}", path.display()))?;
    eprintln!("These 24 words ARE the {} wallet: anyone who sees them can spend from it. Keep them offline.", o.role);
    println!("{}", serde_json::json!({"role": o.role, "mnemonic": words}));
    Ok(())
}

/// `cocoon doctor`: checks, one line each, what a node needs on chain: every
/// endpoint answers, the root is a registry, the wallet can pay fees, the
/// node's contract exists. Exits non-zero when a check fails.
pub async fn doctor(o: crate::options::DoctorOptions) -> anyhow::Result<()> {
    let data_dir = o
        .data_dir
        .clone()
        .unwrap_or_else(crate::trust::default_data_dir);
    let c = match required(&o.chain, Some(&data_dir), &o.role).await {
        Ok(c) => c,
        Err(e) => {
            // The first read of the chain (its global id) failed: that is
            // the diagnosis.
            println!("FAIL chain: {e:#}");
            bail!("1 check(s) failed");
        }
    };
    let mut failed = 0;
    let mut report = |ok: bool, what: String| {
        println!("{} {what}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            failed += 1;
        }
    };
    for endpoint in c.chain.endpoints() {
        let one = Toncenter::new(ToncenterConfig {
            attempts: 1,
            ..ToncenterConfig::single(endpoint.clone())
        })?;
        let started = std::time::Instant::now();
        match one.head().await {
            Ok(h) => report(
                true,
                format!(
                    "chain {endpoint}: block {} ({:.0?})",
                    h.seqno,
                    started.elapsed()
                ),
            ),
            Err(e) => report(false, format!("chain {endpoint}: {e}")),
        }
    }
    let chain = c.chain.as_ref();
    let wallet = c.wallet.address();
    match chain.account(&wallet).await {
        Ok(a) => {
            let enough = a.balance.get() >= 200_000_000;
            report(
                enough,
                format!(
                    "wallet {wallet}: {} ({}){}",
                    a.balance,
                    a.status.as_str(),
                    if enough {
                        ""
                    } else {
                        "; fund it: it pays this node's fees"
                    }
                ),
            );
        }
        Err(e) => report(false, format!("wallet {wallet}: {e}")),
    }
    let root = crate::payments::address(o.root.as_deref(), "--root")?;
    if let Some(root) = &root {
        match registry::terms(chain, root).await {
            Ok(t) => report(
                true,
                format!(
                    "root {root}: a registry (client stake {}, proxy stake {}, worker stake {})",
                    t.min_client_stake, t.min_proxy_stake, t.min_worker_stake
                ),
            ),
            Err(e) => report(false, format!("root {root}: {e}")),
        }
    }
    match o.role.as_str() {
        "proxy-operator" => match crate::payments::voucher_public_key(&data_dir) {
            Ok(key) => match proxy_contract(&c, o.root.as_deref(), key).await {
                Ok(p) => report(true, format!("proxy contract {p}: registered and deployed")),
                Err(e) => report(false, format!("proxy contract: {e:#}")),
            },
            Err(e) => report(false, format!("voucher key: {e:#}")),
        },
        role @ ("client" | "worker") => {
            match party_contract(&c, o.proxy_contract.as_deref(), role).await {
                Ok(p) => {
                    let state = chain
                        .account(&p.address)
                        .await
                        .map(|a| a.status.as_str())
                        .unwrap_or("unknown");
                    report(
                        true,
                        format!(
                            "{role} contract {}: {state} (proxy {}, root {})",
                            p.address, p.proxy, p.root
                        ),
                    );
                }
                Err(e) => report(false, format!("{role} contract: {e:#}")),
            }
        }
        _ => {}
    }
    if failed > 0 {
        bail!("{failed} check(s) failed");
    }
    Ok(())
}

/// `cocoon proxy close`: starts closing the proxy's contract, or, once the
/// delay is over, finishes it. Prints the contract's state afterwards.
pub async fn close_proxy(o: crate::options::RegistryCommon) -> anyhow::Result<()> {
    let data_dir = o
        .data_dir
        .clone()
        .unwrap_or_else(crate::trust::default_data_dir);
    let c = required(&o.chain, Some(&data_dir), "proxy-operator").await?;
    let key = crate::payments::voucher_public_key(&data_dir)?;
    let contract = proxy_contract(&c, o.root.as_deref(), key).await?;
    let chain = c.chain.as_ref();
    let read = || async {
        let data = cocoon_chain::views::proxy_data(chain, &contract).await?;
        let now = chain.account(&contract).await?.sync_utime;
        anyhow::Ok((data, now))
    };
    let (data, now) = read().await?;
    let q = cocoon_core::unix_now();
    let close_at = data.close_at;
    let body = match data.state {
        Lifecycle::Open => contracts::request_proxy_close(q)?,
        Lifecycle::Closing if u64::from(now) < close_at => bail!(
            "closing: clients and workers may commit their vouchers until {close_at}, {} s from now; close again after that",
            close_at - u64::from(now)
        ),
        _ => contracts::finish_proxy_close(q)?,
    };
    let t = cocoon_chain::Transfer {
        to: contract.clone(),
        value: cocoon_core::Nanoton::new(100_000_000),
        bounce: true,
        body: Some(body),
        init: None,
    };
    c.wallet
        .send(chain, &[t], std::time::Duration::from_secs(60))
        .await?;
    let (data, _) = read().await?;
    let (name, close_at, stake, commission) = (
        data.state.as_str(),
        data.close_at,
        data.stake.get(),
        data.commission.get(),
    );
    let wallet = chain.account(&c.wallet.address()).await?.balance;
    println!(
        "{}",
        serde_json::json!({
            "proxy_contract": contract.to_string(),
            "state": name,
            "close_at": close_at,
            "stake": stake,
            "commission": commission,
            "wallet": c.wallet.address().to_string(),
            "wallet_balance": wallet.get(),
        })
    );
    Ok(())
}

/// `cocoon proxy stake`: sends `amount` from the operator's wallet to the
/// proxy's contract as stake; prints the stake afterwards.
pub async fn stake_proxy(o: crate::options::StakeOptions) -> anyhow::Result<()> {
    let data_dir = o
        .common
        .data_dir
        .clone()
        .unwrap_or_else(crate::trust::default_data_dir);
    let c = required(&o.common.chain, Some(&data_dir), "proxy-operator").await?;
    let key = crate::payments::voucher_public_key(&data_dir)?;
    let contract = proxy_contract(&c, o.common.root.as_deref(), key).await?;
    let gas = cocoon_core::Nanoton::new(100_000_000);
    let t = cocoon_chain::Transfer {
        to: contract.clone(),
        value: o.amount.checked_add(gas)?,
        bounce: true,
        body: Some(contracts::add_proxy_stake(
            cocoon_core::unix_now(),
            o.amount,
        )?),
        init: None,
    };
    c.wallet
        .send(c.chain.as_ref(), &[t], std::time::Duration::from_secs(60))
        .await?;
    let stake = cocoon_chain::views::proxy_data(c.chain.as_ref(), &contract)
        .await?
        .stake
        .get();
    println!(
        "{}",
        serde_json::json!({"proxy_contract": contract.to_string(), "stake": stake})
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_wallet_key_is_made_on_mainnet_unless_asked_and_a_new_one_is_words() {
        let dir = std::env::temp_dir().join(format!("cocoon-wallet-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let o = ChainOptions::default();
        let err = wallet_key(&o, &dir, "client", network::MAINNET, false).unwrap_err();
        assert!(
            err.to_string().contains("never creates one by itself"),
            "{err}"
        );
        assert!(!dir.join("keys").exists(), "nothing was written");
        // Asked for, or on another network: 24 words, the owner's alone.
        let key = wallet_key(&o, &dir, "client", network::MAINNET, true).unwrap();
        let (_, words) = role_key_files(&dir, "client");
        let text = std::fs::read_to_string(&words).unwrap();
        assert_eq!(text.split_whitespace().count(), 24);
        assert_eq!(
            WalletKey::from_mnemonic(&text).unwrap().public_key(),
            key.public_key()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&words).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The same key next time, even on mainnet: it exists now.
        let again = wallet_key(&o, &dir, "client", network::MAINNET, false).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
