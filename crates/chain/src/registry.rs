//! Reading the registry and a proxy's contract through their get-methods:
//! what a node needs to find its own contract on a live network.

use cocoon_core::Nanoton;
use num_bigint::BigInt;
use tycho_types::cell::HashBytes;
use tycho_types::models::StdAddr;

use crate::chain::{Chain, ChainError};
use crate::contracts::{Codes, Terms};
use crate::stack::{StackEntry, StackReader, StackTypeError};

/// A get-method could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    /// The chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The method failed on chain.
    #[error("{method} on {address} exits with {exit_code} (is it the contract it should be?)")]
    Failed {
        /// The method.
        method: &'static str,
        /// The account.
        address: StdAddr,
        /// The VM's exit code.
        exit_code: i32,
    },
    /// The answer had the wrong shape.
    #[error("{method} on {address}: {source}")]
    Shape {
        /// The method.
        method: &'static str,
        /// The account.
        address: StdAddr,
        /// What was wrong.
        source: StackTypeError,
    },
}

pub(crate) async fn call(
    chain: &impl Chain,
    address: &StdAddr,
    method: &'static str,
    args: &[StackEntry],
) -> Result<StackReader, ReadError> {
    let out = chain.run_get_method(address, method, args).await?;
    if !out.succeeded() {
        return Err(ReadError::Failed {
            method,
            address: address.clone(),
            exit_code: out.exit_code,
        });
    }
    Ok(StackReader::new(out.stack))
}

pub(crate) fn shape<'a>(
    method: &'static str,
    address: &'a StdAddr,
) -> impl FnOnce(StackTypeError) -> ReadError + 'a {
    move |source| ReadError::Shape {
        method,
        address: address.clone(),
        source,
    }
}

/// The dictionary a get-method returns first (`None`: empty).
async fn dict_root(
    chain: &impl Chain,
    address: &StdAddr,
    method: &'static str,
    args: &[StackEntry],
) -> Result<Option<tycho_types::cell::Cell>, ReadError> {
    Ok(match call(chain, address, method, args).await?.any() {
        Some(StackEntry::Cell(c) | StackEntry::Slice(c)) => Some(c),
        _ => None,
    })
}

/// A dictionary entry that does not read as `expected`.
fn entry_shape<'a>(
    method: &'static str,
    address: &'a StdAddr,
    expected: &'static str,
) -> impl Fn(tycho_types::error::Error) -> ReadError + 'a {
    move |e| ReadError::Shape {
        method,
        address: address.clone(),
        source: StackTypeError {
            index: 0,
            expected,
            found: e.to_string(),
        },
    }
}

/// A 256-bit value as a get-method argument.
pub fn uint256(h: &HashBytes) -> StackEntry {
    StackEntry::Int(BigInt::from_bytes_be(num_bigint::Sign::Plus, h.as_slice()))
}

pub(crate) fn to_hash(v: &BigInt) -> HashBytes {
    let (_, bytes) = v.to_bytes_be();
    let mut out = [0u8; 32];
    let n = bytes.len().min(32);
    out[32 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    HashBytes(out)
}

/// The root's owner.
pub async fn owner(chain: &impl Chain, root: &StdAddr) -> Result<StdAddr, ReadError> {
    let m = "get_owner";
    call(chain, root, m, &[])
        .await?
        .address()
        .map_err(shape(m, root))
}

/// The name the root lists for the model with weights `hash`, if it lists
/// them.
pub async fn model(
    chain: &impl Chain,
    root: &StdAddr,
    hash: &HashBytes,
) -> Result<Option<String>, ReadError> {
    let m = "get_model";
    let mut out = call(chain, root, m, &[uint256(hash)]).await?;
    Ok(match out.any() {
        Some(StackEntry::Cell(c) | StackEntry::Slice(c)) => Some(cell_text(&c)),
        _ => None,
    })
}

/// The version of the root's parameters: it rises with every change.
pub async fn params_version(chain: &impl Chain, root: &StdAddr) -> Result<u64, ReadError> {
    let m = "get_params_version";
    call(chain, root, m, &[])
        .await?
        .u64()
        .map_err(shape(m, root))
}

/// The root's prices as it states them: per-token price and worker fee,
/// and the four multipliers (prompt, cached, completion, reasoning) in
/// basis points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootPrices {
    /// Price per token, nanoton.
    pub price_per_token: u64,
    /// Worker fee per token, nanoton.
    pub worker_fee_per_token: u64,
    /// Multipliers, basis points: prompt, cached, completion, reasoning.
    pub multipliers: [u64; 4],
}

impl RootPrices {
    /// As a price list; an error names the value out of range.
    pub fn price_list(&self) -> Result<cocoon_core::PriceList, cocoon_core::PriceError> {
        let mut m = [cocoon_core::BasisPoints::ONE; 4];
        for (slot, v) in m.iter_mut().zip(self.multipliers) {
            // Beyond u32 is beyond any multiplier: refused as the largest.
            *slot = cocoon_core::BasisPoints::new(u32::try_from(v).unwrap_or(u32::MAX))?;
        }
        cocoon_core::PriceList::new(
            Nanoton::new(self.price_per_token),
            Nanoton::new(self.worker_fee_per_token),
            m,
        )
    }
}

/// The root's current prices.
pub async fn prices(chain: &impl Chain, root: &StdAddr) -> Result<RootPrices, ReadError> {
    let m = "get_prices";
    let mut r = call(chain, root, m, &[]).await?;
    let mut read = || -> Result<RootPrices, StackTypeError> {
        Ok(RootPrices {
            price_per_token: r.u64()?,
            worker_fee_per_token: r.u64()?,
            multipliers: [r.u64()?, r.u64()?, r.u64()?, r.u64()?],
        })
    };
    read().map_err(shape(m, root))
}

/// An operator the root lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootOperator {
    /// Whether its workers may join the open tier (no TEE).
    pub open: bool,
    /// The regions its workers may declare.
    pub regions: std::collections::BTreeSet<cocoon_core::Region>,
}

/// The root's trust tiers: multipliers, regions, models, operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootTiers {
    /// tdx, sev-snp, open, gpu, replication, basis points.
    pub multipliers: [u64; 5],
    /// Whether a worker's declared region must be one its operator registered.
    pub require_regions: bool,
    /// Domicile surcharges by region.
    pub regions: std::collections::BTreeMap<cocoon_core::Region, u64>,
    /// Size-class multipliers by the SHA-256 of the weights.
    pub models: std::collections::BTreeMap<[u8; 32], u64>,
    /// Listed operators, by wallet.
    pub operators: std::collections::BTreeMap<StdAddr, RootOperator>,
}

impl RootTiers {
    /// As tier prices; an error names the value out of range.
    pub fn tier_prices(
        &self,
    ) -> Result<cocoon_core::tier_prices::TierPrices, cocoon_core::PriceError> {
        let bp = |v: u64| cocoon_core::BasisPoints::new(u32::try_from(v).unwrap_or(u32::MAX));
        let [tdx, sev_snp, open, gpu, replication] = self.multipliers;
        let mut t = cocoon_core::tier_prices::TierPrices {
            tdx: bp(tdx)?,
            sev_snp: bp(sev_snp)?,
            open: bp(open)?,
            gpu: bp(gpu)?,
            replication: bp(replication)?,
            ..Default::default()
        };
        for (r, v) in &self.regions {
            t.regions.insert(r.clone(), bp(*v)?);
        }
        for (h, v) in &self.models {
            t.models
                .insert(cocoon_core::ModelHash::from_bytes(*h), bp(*v)?);
        }
        t.check()?;
        Ok(t)
    }
}

struct OperatorEntry {
    open: bool,
    regions: tycho_types::dict::Dict<HashBytes, bool>,
}

impl<'a> tycho_types::cell::Load<'a> for OperatorEntry {
    fn load_from(
        s: &mut tycho_types::cell::CellSlice<'a>,
    ) -> Result<Self, tycho_types::error::Error> {
        Ok(OperatorEntry {
            open: s.load_bit()?,
            regions: tycho_types::dict::Dict::load_from(s)?,
        })
    }
}

/// The root's trust tiers.
pub async fn tiers(chain: &impl Chain, root: &StdAddr) -> Result<RootTiers, ReadError> {
    let m = "get_tier_multipliers";
    let mut r = call(chain, root, m, &[]).await?;
    let mut read = || -> Result<([u64; 5], bool), StackTypeError> {
        let multipliers = [r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?];
        Ok((multipliers, r.int()? != BigInt::from(0)))
    };
    let (multipliers, require_regions) = read().map_err(shape(m, root))?;
    let mut regions = std::collections::BTreeMap::new();
    for (key, v) in uint_map(chain, root, "get_region_prices").await? {
        if let Some(region) = crate::contracts::region_of_key(&HashBytes(key)) {
            regions.insert(region, v);
        }
    }
    let models = uint_map(chain, root, "get_model_prices").await?;
    let m = "get_operators";
    let root_cell = dict_root(chain, root, m, &[]).await?;
    let dict = tycho_types::dict::Dict::<StdAddr, OperatorEntry>::from_raw(root_cell);
    let mut operators = std::collections::BTreeMap::new();
    for entry in dict.iter() {
        let (wallet, e) = entry.map_err(entry_shape(m, root, "a map of operators"))?;
        let mut set = std::collections::BTreeSet::new();
        for r in e.regions.keys() {
            let key = r.map_err(entry_shape(m, root, "an operator's regions"))?;
            set.extend(crate::contracts::region_of_key(&key));
        }
        operators.insert(
            wallet,
            RootOperator {
                open: e.open,
                regions: set,
            },
        );
    }
    Ok(RootTiers {
        multipliers,
        require_regions,
        regions,
        models,
        operators,
    })
}

/// A `map<uint256, uint32>` a get-method returns.
async fn uint_map(
    chain: &impl Chain,
    root: &StdAddr,
    m: &'static str,
) -> Result<std::collections::BTreeMap<[u8; 32], u64>, ReadError> {
    let root_cell = dict_root(chain, root, m, &[]).await?;
    let dict = tycho_types::dict::Dict::<HashBytes, u32>::from_raw(root_cell);
    let mut out = std::collections::BTreeMap::new();
    for entry in dict.iter() {
        let (k, v) = entry.map_err(entry_shape(m, root, "a map of multipliers"))?;
        out.insert(k.0, u64::from(v));
    }
    Ok(out)
}

/// The models the root lists: the SHA-256 of their weights, and their names.
pub async fn models(
    chain: &impl Chain,
    root: &StdAddr,
) -> Result<std::collections::BTreeMap<[u8; 32], String>, ReadError> {
    let m = "get_models";
    let root_cell = dict_root(chain, root, m, &[]).await?;
    let dict = tycho_types::dict::Dict::<HashBytes, tycho_types::cell::Cell>::from_raw(root_cell);
    let mut listed = std::collections::BTreeMap::new();
    for entry in dict.iter() {
        let (hash, name) = entry.map_err(entry_shape(m, root, "a map of model hashes to names"))?;
        listed.insert(hash.0, cell_text(&name));
    }
    Ok(listed)
}

/// Whether the root allows image `hash` for `role`.
pub async fn image_allowed(
    chain: &impl Chain,
    root: &StdAddr,
    role: crate::contracts::Role,
    hash: &HashBytes,
) -> Result<bool, ReadError> {
    let m = "is_image_allowed";
    let args = [StackEntry::Int(BigInt::from(role as u8)), uint256(hash)];
    let v = call(chain, root, m, &args)
        .await?
        .int()
        .map_err(shape(m, root))?;
    Ok(v != BigInt::from(0))
}

/// The root's current terms for new proxies.
pub async fn terms(chain: &impl Chain, root: &StdAddr) -> Result<Terms, ReadError> {
    let m = "get_terms";
    let mut r = call(chain, root, m, &[]).await?;
    let mut read = || -> Result<Terms, StackTypeError> {
        Ok(Terms {
            min_proxy_stake: Nanoton::new(r.u64()?),
            min_client_stake: Nanoton::new(r.u64()?),
            min_worker_stake: Nanoton::new(r.u64()?),
            proxy_close_delay: r.u64()? as u32,
            client_close_delay: r.u64()? as u32,
            slash_share: r.u64()? as u16,
        })
    };
    read().map_err(shape(m, root))
}

/// The contract code the root deploys and derives with.
pub async fn codes(chain: &impl Chain, root: &StdAddr) -> Result<Codes, ReadError> {
    let m = "get_codes";
    let mut r = call(chain, root, m, &[]).await?;
    let mut read = || -> Result<Codes, StackTypeError> {
        Ok(Codes {
            proxy: r.cell()?,
            client: r.cell()?,
            worker: r.cell()?,
        })
    };
    read().map_err(shape(m, root))
}

/// The proxy contract the root gives `owner` with voucher key `key`.
pub async fn proxy_address(
    chain: &impl Chain,
    root: &StdAddr,
    owner: &StdAddr,
    key: &HashBytes,
) -> Result<StdAddr, ReadError> {
    let m = "get_proxy_address";
    let mut r = call(chain, root, m, &[StackEntry::address(owner), uint256(key)]).await?;
    r.address().map_err(shape(m, root))
}

/// A proxy contract's root and voucher key.
pub async fn proxy_identity(
    chain: &impl Chain,
    proxy: &StdAddr,
) -> Result<(StdAddr, HashBytes), ReadError> {
    let m = "get_proxy_data";
    let mut r = call(chain, proxy, m, &[]).await?;
    let mut read = || -> Result<(StdAddr, HashBytes), StackTypeError> {
        let root = r.address()?;
        r.skip()?; // owner
        let key = to_hash(&r.int()?);
        Ok((root, key))
    };
    read().map_err(shape(m, proxy))
}

/// `owner`'s client contract with `proxy`, as the proxy contract derives it.
pub async fn client_address(
    chain: &impl Chain,
    proxy: &StdAddr,
    owner: &StdAddr,
) -> Result<StdAddr, ReadError> {
    let m = "get_client_address";
    let mut r = call(chain, proxy, m, &[StackEntry::address(owner)]).await?;
    r.address().map_err(shape(m, proxy))
}

/// `owner`'s worker contract with `proxy`, as the proxy contract derives it.
pub async fn worker_address(
    chain: &impl Chain,
    proxy: &StdAddr,
    owner: &StdAddr,
) -> Result<StdAddr, ReadError> {
    let m = "get_worker_address";
    let mut r = call(chain, proxy, m, &[StackEntry::address(owner)]).await?;
    r.address().map_err(shape(m, proxy))
}

/// The image hashes the root allows for `role`.
pub async fn images(
    chain: &impl Chain,
    root: &StdAddr,
    role: crate::contracts::Role,
) -> Result<Vec<HashBytes>, ReadError> {
    let m = "get_images";
    let args = [StackEntry::Int(BigInt::from(role as u8))];
    let root_cell = dict_root(chain, root, m, &args).await?;
    let dict = tycho_types::dict::Dict::<HashBytes, bool>::from_raw(root_cell);
    let mut allowed = Vec::new();
    for entry in dict.iter() {
        let (hash, yes) = entry.map_err(entry_shape(m, root, "a map of image hashes"))?;
        if yes {
            allowed.push(hash);
        }
    }
    Ok(allowed)
}

/// A proxy the root registered.
#[derive(Debug, Clone)]
pub struct RegisteredProxy {
    /// Its contract.
    pub contract: StdAddr,
    /// Its operator's wallet.
    pub owner: StdAddr,
    /// Its voucher key.
    pub key: HashBytes,
    /// Where it is reached, as registered (e.g. `tls://host:10010`).
    pub endpoints: String,
}

struct ProxyEntry {
    owner: tycho_types::models::IntAddr,
    key: HashBytes,
    endpoints: tycho_types::cell::Cell,
}

impl<'a> tycho_types::cell::Load<'a> for ProxyEntry {
    fn load_from(
        s: &mut tycho_types::cell::CellSlice<'a>,
    ) -> Result<Self, tycho_types::error::Error> {
        Ok(ProxyEntry {
            owner: tycho_types::models::IntAddr::load_from(s)?,
            key: HashBytes::load_from(s)?,
            endpoints: s.load_reference_cloned()?,
        })
    }
}

/// A cell's bytes as text (endpoints, model names).
pub fn cell_text(cell: &tycho_types::cell::Cell) -> String {
    let bytes = cell
        .as_slice()
        .ok()
        .map(|s| {
            let n = s.size_bits() / 8;
            let mut buf = vec![0u8; n as usize];
            let _ = s.get_raw(0, &mut buf, n * 8);
            buf
        })
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The proxies the root registered, in address order.
pub async fn proxies(
    chain: &impl Chain,
    root: &StdAddr,
) -> Result<Vec<RegisteredProxy>, ReadError> {
    let m = "get_proxies";
    let root_cell = dict_root(chain, root, m, &[]).await?;
    let dict = tycho_types::dict::Dict::<StdAddr, ProxyEntry>::from_raw(root_cell);
    let mut list = Vec::new();
    for entry in dict.iter() {
        let (contract, e) = entry.map_err(entry_shape(m, root, "a map of proxies"))?;
        let Some(owner) = e.owner.as_std().cloned() else {
            continue;
        };
        list.push(RegisteredProxy {
            contract,
            owner,
            key: e.key,
            endpoints: cell_text(&e.endpoints),
        });
    }
    Ok(list)
}

/// The root registry as people read it (`cocoon registry show`, the
/// explorer): owner, parameter version, prices, terms, allowed images by
/// role, models by hash, and each registered proxy with its contract's
/// state, stake and commission (or why it could not be read).
pub async fn describe(chain: &impl Chain, root: &StdAddr) -> Result<serde_json::Value, ReadError> {
    use crate::contracts::Role;
    let owner = owner(chain, root).await?;
    let version = params_version(chain, root).await?;
    let prices = prices(chain, root).await?;
    let terms = terms(chain, root).await?;
    let mut images = serde_json::Map::new();
    for (name, role) in [
        ("proxy", Role::Proxy),
        ("worker", Role::Worker),
        ("client", Role::Client),
    ] {
        let list = images_of(chain, root, role).await?;
        images.insert(name.into(), serde_json::json!(list));
    }
    let model_list: serde_json::Map<String, serde_json::Value> = models(chain, root)
        .await?
        .into_iter()
        .map(|(k, name)| (HashBytes(k).to_string(), serde_json::Value::String(name)))
        .collect();
    let mut proxy_list = Vec::new();
    for p in proxies(chain, root).await? {
        let state = match crate::views::proxy_data(chain, &p.contract).await {
            Ok(d) => serde_json::json!({
                "state": d.state.as_str(),
                "stake": d.stake.get(),
                "commission": d.commission.get(),
                "charged": d.charged.get(),
                "paid": d.paid.get(),
            }),
            Err(e) => serde_json::json!({ "unreadable": e.to_string() }),
        };
        proxy_list.push(serde_json::json!({
            "contract": p.contract.to_string(),
            "owner": p.owner.to_string(),
            "key": p.key.to_string(),
            "endpoints": p.endpoints,
            "on_chain": state,
        }));
    }
    Ok(serde_json::json!({
        "root": root.to_string(),
        "owner": owner.to_string(),
        "version": version,
        "prices": {
            "price_per_token": prices.price_per_token,
            "worker_fee_per_token": prices.worker_fee_per_token,
            "multipliers": prices.multipliers,
        },
        "terms": {
            "min_proxy_stake": terms.min_proxy_stake.get(),
            "min_client_stake": terms.min_client_stake.get(),
            "min_worker_stake": terms.min_worker_stake.get(),
            "proxy_close_delay": terms.proxy_close_delay,
            "client_close_delay": terms.client_close_delay,
            "slash_share_basis_points": terms.slash_share,
        },
        "images": images,
        "models": model_list,
        "proxies": proxy_list,
        "tiers": tiers(chain, root).await?.to_json(),
    }))
}

impl RootTiers {
    /// As `cocoon registry show` prints it.
    pub fn to_json(&self) -> serde_json::Value {
        let [tdx, sev_snp, open, gpu, replication] = self.multipliers;
        let operators: serde_json::Map<String, serde_json::Value> = self
            .operators
            .iter()
            .map(|(w, o)| {
                (
                    w.to_string(),
                    serde_json::json!({"open": o.open, "regions": o.regions}),
                )
            })
            .collect();
        serde_json::json!({
            "multipliers": {"tdx": tdx, "sev_snp": sev_snp, "open": open, "gpu": gpu, "replication": replication},
            "require_regions": self.require_regions,
            "regions": self.regions,
            "models": self.models.iter().map(|(h, m)| (HashBytes(*h).to_string(), *m)).collect::<std::collections::BTreeMap<_, _>>(),
            "operators": operators,
        })
    }
}

async fn images_of(
    chain: &impl Chain,
    root: &StdAddr,
    role: crate::contracts::Role,
) -> Result<Vec<String>, ReadError> {
    Ok(images(chain, root, role)
        .await?
        .iter()
        .map(ToString::to_string)
        .collect())
}
