//! The root registry in charge of prices: with a registry, the proxy
//! charges what the root says, read at start and every [`REFRESH`], and
//! shows the version and the age of its copy in `/stats`. When the chain
//! is unreachable, the last prices read stand. The models the root lists
//! decide which workers may serve: with several endpoints they change only
//! when two agree.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cocoon_chain::corroborate::Agreement;
use cocoon_chain::registry::ReadError;
use cocoon_chain::Toncenter;
use cocoon_core::PriceList;
use tycho_types::models::StdAddr;

/// How often the registry is read again.
pub const REFRESH: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct Seen {
    version: Option<u64>,
    at: Option<Instant>,
    error: Option<String>,
    /// The model hashes the root lists.
    models: std::collections::BTreeSet<[u8; 32]>,
    /// How the last reading of the models was confirmed.
    models_note: String,
    /// The operators the root lists, and whether regions must be theirs.
    operators: std::collections::BTreeMap<StdAddr, cocoon_chain::registry::RootOperator>,
    require_regions: bool,
}

/// Why the registry could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// A get-method failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The root states prices no price list can hold.
    #[error("the root's prices: {0}")]
    Prices(#[from] cocoon_core::PriceError),
}

/// Reads the root's prices into the proxy's price board.
pub struct RegistryWatch {
    chain: Arc<Toncenter>,
    /// Each endpoint on its own, for the models (trust).
    witnesses: Option<cocoon_chain::corroborate::Corroborator>,
    root: StdAddr,
    seen: Mutex<Seen>,
    check_models: bool,
}

impl std::fmt::Debug for RegistryWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryWatch")
            .field("root", &self.root)
            .finish()
    }
}

impl RegistryWatch {
    /// Watches `root`.
    pub fn new(chain: Arc<Toncenter>, root: StdAddr) -> Self {
        RegistryWatch {
            witnesses: cocoon_chain::corroborate::Corroborator::new(chain.config()).ok(),
            chain,
            root,
            seen: Mutex::new(Seen::default()),
            check_models: false,
        }
    }

    /// Also admits only workers whose weights the root lists.
    pub fn checking_models(mut self) -> Self {
        self.check_models = true;
        self
    }

    /// Whether workers' weights must be the root's.
    pub fn checks_models(&self) -> bool {
        self.check_models
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The root's parameters version and prices now.
    pub async fn read(&self) -> Result<(u64, PriceList), RegistryError> {
        let chain = self.chain.as_ref();
        let version = cocoon_chain::registry::params_version(chain, &self.root).await?;
        let prices = cocoon_chain::registry::prices(chain, &self.root).await?;
        Ok((version, prices.price_list()?))
    }

    /// The model hashes the root lists now, as two endpoints agree (or the
    /// only one says).
    async fn read_models(&self) -> Agreement<std::collections::BTreeSet<[u8; 32]>> {
        let root = self.root.clone();
        match &self.witnesses {
            Some(w) => {
                w.read(|c| {
                    let root = root.clone();
                    async move { models_of(&c, &root).await }
                })
                .await
            }
            // Several endpoints but no client for each: nothing confirms.
            None if self.chain.endpoints().len() > 1 => Agreement::Unconfirmed {
                detail: "the endpoints could not be asked one by one".into(),
            },
            None => match models_of(&self.chain, &root).await {
                Ok(m) => Agreement::Single(m),
                Err(e) => Agreement::Unconfirmed {
                    detail: e.to_string(),
                },
            },
        }
    }

    /// Whether the root lists the model with these weights (as last read).
    pub fn allows_model(&self, hash: &cocoon_core::ModelHash) -> bool {
        self.seen().models.contains(hash.as_bytes())
    }

    /// Reads the prices and the models, and puts the prices on `board`.
    pub async fn refresh(&self, board: &crate::PriceBoard) -> Result<(), RegistryError> {
        match self.read().await {
            Ok((version, prices)) => {
                let models = self.read_models().await;
                let note = models.describe();
                match models.value() {
                    Some(m) => self.seen().models = m,
                    None => {
                        tracing::warn!(root = %self.root, status = %note, "the registry's models were not confirmed; the last list stands")
                    }
                }
                self.seen().models_note = note;
                if board.set(prices) {
                    tracing::info!(root = %self.root, version, price_per_token = %prices.price_per_token, worker_fee_per_token = %prices.worker_fee_per_token, "prices from the registry");
                }
                self.refresh_tiers(board).await?;
                let mut s = self.seen();
                s.version = Some(version);
                s.at = Some(Instant::now());
                s.error = None;
                Ok(())
            }
            Err(e) => {
                let mut s = self.seen();
                if s.error.is_none() {
                    tracing::warn!(root = %self.root, error = %e, "the registry could not be read: charging the prices last read");
                }
                s.error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Reads the trust tiers: their prices onto `board`, the operators for
    /// admission.
    async fn refresh_tiers(&self, board: &crate::PriceBoard) -> Result<(), RegistryError> {
        let tiers = cocoon_chain::registry::tiers(self.chain.as_ref(), &self.root).await?;
        if board.set_tiers(tiers.tier_prices()?) {
            tracing::info!(root = %self.root, tiers = %tiers.to_json(), "tier prices from the registry");
        }
        let mut s = self.seen();
        s.operators = tiers.operators;
        s.require_regions = tiers.require_regions;
        Ok(())
    }

    /// Whether the operator whose wallet is `owner` may serve a worker
    /// declaring `region` (when the root requires registered regions) and,
    /// for an open-tier worker, whether the root lists it for the open tier.
    /// The refusal says which.
    pub fn admits_operator(
        &self,
        owner: &StdAddr,
        region: Option<&cocoon_core::Region>,
        open: bool,
    ) -> Result<(), String> {
        let s = self.seen();
        let listed = s.operators.get(owner);
        if open && !listed.is_some_and(|o| o.open) {
            return Err(format!(
                "the root registry does not list operator {owner} for the open tier"
            ));
        }
        if let (true, Some(r)) = (s.require_regions, region) {
            if !listed.is_some_and(|o| o.regions.contains(r)) {
                return Err(format!(
                    "the root registry requires registered regions, and operator {owner} has not registered {r}"
                ));
            }
        }
        Ok(())
    }

    /// Reads the registry every [`REFRESH`] until `stop` turns true.
    pub async fn run(
        self: Arc<Self>,
        payments: Arc<crate::Payments>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {}
                _ = stop.changed() => return,
            }
            let _ = self.refresh(&payments.prices).await;
        }
    }

    /// For `/stats`.
    pub fn describe(&self) -> (String, String) {
        let s = self.seen();
        let age =
            s.at.map(|t| format!("read {:.0?} ago", t.elapsed()))
                .unwrap_or_else(|| "never read".into());
        let version = s
            .version
            .map(|v| format!("version {v}, "))
            .unwrap_or_default();
        let err = s
            .error
            .as_ref()
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default();
        let models = if s.models_note.is_empty() {
            String::new()
        } else {
            format!("; models: {}", s.models_note)
        };
        (
            "registry".into(),
            format!("{} ({version}prices {age}{models}){err}", self.root),
        )
    }
}

/// The model hashes `root` lists, read through `chain`.
async fn models_of(
    chain: &Toncenter,
    root: &StdAddr,
) -> Result<std::collections::BTreeSet<[u8; 32]>, ReadError> {
    let listed = cocoon_chain::registry::models(chain, root).await?;
    Ok(listed.into_keys().collect())
}

/// Every [`REFRESH`] until `stop` turns true, takes out of routing the
/// workers whose operator the registry no longer lists for their region or
/// for the open tier: a listing is checked when a worker connects, and a
/// delisting must not wait for it to reconnect.
pub(crate) async fn drop_delisted(
    shared: Arc<crate::Shared>,
    watch: Arc<RegistryWatch>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(REFRESH) => {}
            _ = stop.changed() => return,
        }
        for w in shared.registry.all() {
            let crate::worker_id::WorkerId::Contract { owner, .. } = &w.identity else {
                continue;
            };
            if let Err(why) = watch.admits_operator(owner, w.offer.region.as_ref(), w.offer.open) {
                tracing::warn!(worker = %w.name, reason = %why, "the registry no longer lists this worker's operator for what it offers; it takes no more requests");
                shared.registry.remove(&w);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> StdAddr {
        StdAddr::new(0, tycho_types::cell::HashBytes([n; 32]))
    }

    /// What admission and `drop_delisted` ask: an open-tier worker's
    /// operator must be listed for the open tier, and a declared region must
    /// be its operator's when the root requires registered regions.
    #[test]
    fn operators_are_admitted_for_what_the_registry_lists() {
        let chain = cocoon_chain::Toncenter::new(cocoon_chain::toncenter::ToncenterConfig::single(
            "http://127.0.0.1:9/api/v2",
        ))
        .unwrap();
        let w = RegistryWatch::new(Arc::new(chain), addr(0));
        let eu = cocoon_core::Region::new("eu").unwrap();
        let us = cocoon_core::Region::new("us").unwrap();
        // Nothing listed, regions not required: a TEE worker anywhere.
        assert!(w.admits_operator(&addr(1), Some(&us), false).is_ok());
        let err = w.admits_operator(&addr(1), None, true).unwrap_err();
        assert!(err.contains("open tier"), "{err}");
        {
            let mut s = w.seen();
            s.require_regions = true;
            s.operators.insert(
                addr(1),
                cocoon_chain::registry::RootOperator {
                    open: true,
                    regions: [eu.clone()].into(),
                },
            );
        }
        assert!(w.admits_operator(&addr(1), Some(&eu), true).is_ok());
        let err = w.admits_operator(&addr(1), Some(&us), false).unwrap_err();
        assert!(err.contains("has not registered us"), "{err}");
        assert!(w.admits_operator(&addr(2), Some(&eu), false).is_err());
        // Delisted: no longer admitted.
        w.seen().operators.clear();
        assert!(w.admits_operator(&addr(1), Some(&eu), true).is_err());
    }
}
