use std::sync::Arc;

use cocoon_telemetry::{Snapshot, StatsSource};

use crate::Shared;

impl StatsSource for Shared {
    fn snapshot(&self) -> Snapshot {
        let workers: Vec<_> = self.registry.all().iter().map(|w| w.load()).collect();
        let mut info = std::collections::BTreeMap::new();
        info.insert("listen".into(), self.config.listen.to_string());
        info.insert("trust".into(), self.config.trust.describe());
        info.insert("workers_connected".into(), workers.len().to_string());
        self.metrics
            .snapshot("proxy", &self.config.name, self.started, workers, info)
            .with_peers_refused(self.config.trust.refusals())
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    cocoon_telemetry::router(shared).route("/healthz", axum::routing::get(|| async { "ok\n" }))
}
