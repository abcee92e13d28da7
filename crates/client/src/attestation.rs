//! What this client verified about the network: the proxy's RA-TLS
//! evidence (checked here) and the workers' (checked by that proxy and
//! reported with each answer). Served at `GET /v1/cocoon/attestation` and
//! summarised in response headers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::api::{PROXY_IMAGE_HEADER, PROXY_TEE_HEADER};
use crate::Shared;

/// The workers seen in answers, by worker id.
#[derive(Debug, Default)]
pub(crate) struct WorkersSeen {
    inner: Mutex<BTreeMap<String, serde_json::Value>>,
}

/// Workers remembered at most; the oldest entries are dropped first.
const MAX_WORKERS: usize = 256;

impl WorkersSeen {
    pub(crate) fn saw_worker(&self, a: &cocoon_proto::Assigned) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let entry = serde_json::json!({
            "worker": a.worker_id,
            "tee": (!a.worker_tee.is_empty()).then_some(&a.worker_tee),
            "image_hash": (!a.worker_image_hash.is_empty()).then_some(&a.worker_image_hash),
            "model_hash": (!a.model_hash.is_empty()).then_some(&a.model_hash),
            "coefficient": a.coefficient,
            "last_seen": now,
        });
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.insert(a.worker_id.clone(), entry);
        if g.len() > MAX_WORKERS {
            let oldest = g
                .iter()
                .min_by_key(|(_, v)| v["last_seen"].as_u64().unwrap_or(0))
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                g.remove(&k);
            }
        }
    }

    fn all(&self) -> Vec<serde_json::Value> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

fn proxy_summary(shared: &Shared) -> Option<Arc<cocoon_transport::PeerIdentity>> {
    shared.proxy_verifier.last_verified()
}

/// Adds the proxy's verified TEE kind and image hash to a response.
pub(crate) fn proxy_headers(shared: &Shared, headers: &mut HeaderMap) {
    let Some(att) = proxy_summary(shared).and_then(|id| id.attestation.clone()) else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(att.kind.as_str()) {
        headers.insert(HeaderName::from_static(PROXY_TEE_HEADER), v);
    }
    if let Ok(v) = HeaderValue::from_str(&att.image_hash.to_string()) {
        headers.insert(HeaderName::from_static(PROXY_IMAGE_HEADER), v);
    }
}

/// What this client verified: the proxy's evidence and the workers seen.
pub(crate) fn summary(shared: &Shared) -> serde_json::Value {
    let proxy = proxy_summary(shared).map(|id| {
        let evidence = id.attestation.as_ref().map(|a| {
            serde_json::json!({
                "role": a.role.as_str(),
                "tee": a.kind.as_str(),
                "image_hash": a.image_hash.to_string(),
                "tcb_status": a.tcb_status.as_str(),
                "advisories": a.advisories,
                "config_hash": hex(&a.config_hash),
                "issued_at": a.issued_at,
                "expires_at": a.expires_at,
                "measurements": a.measurements.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            })
        });
        serde_json::json!({
            "address": shared.config.proxy,
            "certificate_sha256": id.fingerprint,
            "authenticated": id.authenticated,
            "evidence": evidence,
        })
    });
    serde_json::json!({
        "trust": shared.config.trust.describe(),
        "proxy": proxy,
        "workers": shared.attestation.all(),
    })
}

/// `GET /v1/cocoon/attestation`.
pub(crate) async fn report(State(shared): State<Arc<Shared>>) -> Response {
    let body = summary(&shared);
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
