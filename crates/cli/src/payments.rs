//! Turns the proxy's payment options into its ledger, prices and voucher
//! key; parses the addresses clients and workers are paid from and to.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use cocoon_core::tier_prices::TierPrices;
use cocoon_core::{BasisPoints, Nanoton, PriceList};
use cocoon_pay::{Ledger, VoucherSigner, VoucherTerms};
use cocoon_proxy::Payments;
use tycho_types::models::StdAddr;

use crate::options::ProxyOptions;

/// File of the proxy's voucher signing key in its data directory.
const VOUCHER_KEY_FILE: &str = "proxy-voucher-key.pk8";
/// File of the proxy's ledger in its data directory.
const LEDGER_FILE: &str = "ledger.redb";
/// How long a voucher stays valid.
const VOUCHER_TTL_SECS: u32 = 30 * 24 * 3600;

/// A TON address given on the command line.
pub fn address(value: Option<&str>, flag: &str) -> anyhow::Result<Option<StdAddr>> {
    value
        .map(|s| {
            s.parse::<StdAddr>().map_err(|e| {
                anyhow!("{flag} {s:?} is not a TON address (\"0:<64 hex digits>\"): {e}")
            })
        })
        .transpose()
}

/// The voucher key in `dir`, created (mode 0600) on first use.
fn voucher_key(dir: &Path) -> anyhow::Result<VoucherSigner> {
    let path = dir.join(VOUCHER_KEY_FILE);
    let pkcs8 = cocoon_tee::keyfile::ed25519_pkcs8(&path)
        .with_context(|| format!("voucher key {}", path.display()))?;
    VoucherSigner::from_pkcs8(&pkcs8).with_context(|| format!("voucher key {}", path.display()))
}

/// The proxy's voucher public key (the key its contract checks), the key
/// file created on first use.
pub fn voucher_public_key(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    Ok(voucher_key(data_dir)?.public_key())
}

/// The default prices of a proxy (`--price-per-token` 100,
/// `--worker-fee-per-token` 80, multipliers 10000,2500,10000,10000), as the
/// root registry stores them.
pub fn default_registry_prices() -> cocoon_chain::contracts::Prices {
    cocoon_chain::contracts::Prices {
        price_per_token: Nanoton::new(100),
        worker_fee_per_token: Nanoton::new(80),
        prompt_multiplier: 10_000,
        cached_multiplier: 2_500,
        completion_multiplier: 10_000,
        reasoning_multiplier: 10_000,
    }
}

fn multipliers(s: &str) -> anyhow::Result<[BasisPoints; 4]> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.len() != 4 {
        bail!("--token-multipliers takes four basis-point values (prompt,cached,completion,reasoning), found {s:?}");
    }
    let mut out = [BasisPoints::ONE; 4];
    for (slot, p) in out.iter_mut().zip(parts) {
        let v: u32 = p.parse().map_err(|_| {
            anyhow!("--token-multipliers: {p:?} is not a whole number of basis points")
        })?;
        *slot = BasisPoints::new(v).map_err(|e| anyhow!("--token-multipliers: {e}"))?;
    }
    Ok(out)
}

/// `--tier-prices`: the JSON form of [`TierPrices`].
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TierPricesJson {
    #[serde(default)]
    tdx: Option<u32>,
    #[serde(default)]
    sev_snp: Option<u32>,
    #[serde(default)]
    open: Option<u32>,
    #[serde(default)]
    gpu: Option<u32>,
    #[serde(default)]
    replication: Option<u32>,
    #[serde(default)]
    regions: std::collections::BTreeMap<String, u32>,
    #[serde(default)]
    models: std::collections::BTreeMap<String, u32>,
}

/// Reads `--tier-prices`; every multiplier 1 to 1000000 basis points.
pub fn tier_prices(json: Option<&str>) -> anyhow::Result<TierPrices> {
    let Some(json) = json else {
        return Ok(TierPrices::default());
    };
    let j: TierPricesJson = serde_json::from_str(json)
        .map_err(|e| anyhow!("--tier-prices must be a JSON object of multipliers: {e}"))?;
    let bp = |v: Option<u32>| -> anyhow::Result<BasisPoints> {
        BasisPoints::new(v.unwrap_or(10_000)).map_err(|e| anyhow!("--tier-prices: {e}"))
    };
    let mut t = TierPrices {
        tdx: bp(j.tdx)?,
        sev_snp: bp(j.sev_snp)?,
        open: bp(j.open)?,
        gpu: bp(j.gpu)?,
        replication: bp(j.replication)?,
        ..TierPrices::default()
    };
    for (r, v) in j.regions {
        let region = cocoon_core::Region::new(&r).map_err(|e| anyhow!("--tier-prices: {e}"))?;
        t.regions.insert(region, bp(Some(v))?);
    }
    for (h, v) in j.models {
        let hash: cocoon_core::ModelHash = h
            .parse()
            .map_err(|e| anyhow!("--tier-prices: model {h:?}: {e}"))?;
        t.models.insert(hash, bp(Some(v))?);
    }
    t.check().map_err(|e| anyhow!("--tier-prices: {e}"))?;
    Ok(t)
}

/// The prices the flags set (a development ledger's; a registry's replace
/// them on a chain).
fn flag_prices(o: &ProxyOptions) -> anyhow::Result<PriceList> {
    Ok(PriceList::new(
        Nanoton::new(o.price_per_token.unwrap_or(100)),
        Nanoton::new(o.worker_fee_per_token.unwrap_or(80)),
        multipliers(
            o.token_multipliers
                .as_deref()
                .unwrap_or("10000,2500,10000,10000"),
        )?,
    )?)
}

/// Refuses development-only payment flags outside development mode.
pub fn check_dev_flags(o: &ProxyOptions, dev: bool) -> anyhow::Result<()> {
    if o.dev_deposits.unwrap_or(false) && !dev {
        bail!("--dev-deposits lets clients credit themselves; it is refused outside development mode (--dev)");
    }
    Ok(())
}

/// A proxy on a chain: how it reaches it, commits, reads the registry,
/// and which network its wallets are on.
pub struct ProxyOnChain {
    /// The chain's API.
    pub chain: Arc<cocoon_chain::Toncenter>,
    /// The operator's wallet and the commit threshold.
    pub committer: cocoon_proxy::client_contracts::Committer,
    /// The root registry's prices.
    pub registry: Arc<cocoon_proxy::registry_watch::RegistryWatch>,
    /// The network's global id.
    pub global_id: i32,
}

/// How the proxy charges: not at all with `--payments off`, on its
/// development ledger, or through contracts on `chain`.
pub fn proxy(
    o: &ProxyOptions,
    data_dir: &Path,
    dev: bool,
    chain: Option<ProxyOnChain>,
) -> anyhow::Result<cocoon_proxy::Charging> {
    if o.payments == Some(crate::options::Switch::Off) {
        return Ok(cocoon_proxy::Charging::Free);
    }
    check_dev_flags(o, dev)?;
    let dev_deposits = o.dev_deposits.unwrap_or(false);
    let prices = flag_prices(o)?;
    let signer = voucher_key(data_dir)?;
    let contract = match address(o.contract.as_deref(), "--contract")? {
        Some(c) => c,
        None => cocoon_pay::dev_address(&format!(
            "contract:{}",
            signer
                .public_key()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )),
    };
    let voucher_key = signer.public_key();
    let path = data_dir.join(LEDGER_FILE);
    let (ledger, recovery) = Ledger::open(
        &path,
        signer,
        VoucherTerms {
            contract: contract.clone(),
            ttl_secs: VOUCHER_TTL_SECS,
        },
    )
    .with_context(|| format!("opening the ledger {}", path.display()))?;
    if recovery.settled + recovery.released > 0 {
        tracing::warn!(
            settled = recovery.settled,
            released = recovery.released,
            charged = %recovery.charged,
            "ledger: requests left in flight by the last run were settled at their recorded progress or released"
        );
    }
    let t = ledger.totals();
    tracing::info!(
        ledger = %path.display(),
        %contract,
        price_per_token = %prices.price_per_token,
        worker_fee_per_token = %prices.worker_fee_per_token,
        charged = %t.charged,
        commission = %t.commission,
        "payments on"
    );
    let ledger = Arc::new(ledger);
    let payments = Arc::new(Payments {
        settlement: ledger.clone(),
        ledger: ledger.clone(),
        prices: cocoon_proxy::PriceBoard::new(prices),
        default_max_tokens: o.default_max_tokens.unwrap_or(4096),
        dev_deposits,
        contract: contract.clone(),
        voucher_key,
        checkpoint_window: match o.checkpoint_window_ms.unwrap_or(0) {
            ms @ 0..=1000 => std::time::Duration::from_millis(ms),
            ms => bail!("--checkpoint-window-ms must be at most 1000, found {ms}: chunks would be held too long"),
        },
    });
    payments
        .prices
        .set_tiers(tier_prices(o.tier_prices.as_deref())?);
    let Some(c) = chain else {
        return Ok(cocoon_proxy::Charging::DevLedger(payments));
    };
    let contracts = cocoon_proxy::client_contracts::ClientContracts::new(
        c.chain,
        contract,
        voucher_key,
        ledger,
    )
    .on_network(c.global_id)
    .with_committer(c.committer);
    Ok(cocoon_proxy::Charging::OnChain {
        payments,
        contracts: Arc::new(contracts),
        registry: c.registry,
    })
}
