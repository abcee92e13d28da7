//! The client as an ACI (`aci/1`) service: an aggregator whose upstreams
//! are the workers it verifies. Apps (or any ACI verifier) fetch its
//! attestation report with their nonce, may encrypt requests to its
//! attested E2EE key (E2EE v2), and get a signed receipt for every answer,
//! citing the attested session of the worker that served it.

mod identity;
mod report;
mod sessions;
mod transcript;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use cocoon_aci::e2ee::ReplayGuard;

pub(crate) use identity::KeyGenError;
pub(crate) use sessions::Certificate;
pub(crate) use transcript::{open_request, Transcript};

use crate::Shared;

/// Receipts kept for lookup; the oldest go first.
const KEPT_RECEIPTS: usize = 10_000;
/// Sessions kept; each worker certificate makes one.
const KEPT_SESSIONS: usize = 2_000;

/// The client's ACI state.
#[derive(Debug)]
pub(crate) struct Aci {
    identities: identity::Identities,
    replay: ReplayGuard,
    receipts: Kept<(Option<String>, Arc<serde_json::Value>)>,
    pub(crate) sessions: sessions::Sessions,
}

impl Aci {
    /// Fresh keys for the client named `name`.
    pub(crate) fn new(name: &str) -> Result<Self, KeyGenError> {
        Ok(Aci {
            identities: identity::Identities::new(name)?,
            replay: ReplayGuard::default(),
            receipts: Kept::new(KEPT_RECEIPTS),
            sessions: sessions::Sessions::new(KEPT_SESSIONS),
        })
    }

    fn keep_receipt(&self, id: String, account: Option<String>, receipt: serde_json::Value) {
        self.receipts.insert(id, (account, Arc::new(receipt)));
    }
}

/// Who may read a request's receipt besides the operator: the account of
/// the key (or Telegram user) that made it; `operator` for the operator's
/// own; nobody in particular (anyone) on an open API.
pub(crate) fn receipt_owner(who: &crate::access::Principal) -> Option<String> {
    match who {
        crate::access::Principal::Operator => Some("operator".into()),
        other => other.account(),
    }
}

/// A bounded map: the oldest entries go first.
#[derive(Debug)]
pub(crate) struct Kept<T> {
    inner: Mutex<(HashMap<String, T>, VecDeque<String>)>,
    cap: usize,
}

impl<T: Clone> Kept<T> {
    fn new(cap: usize) -> Self {
        Kept {
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
            cap,
        }
    }

    fn insert(&self, id: String, value: T) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *g;
        if map.insert(id.clone(), value).is_none() {
            order.push_back(id);
        }
        while order.len() > self.cap {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }

    fn get(&self, id: &str) -> Option<T> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.get(id).cloned()
    }

    fn newest(&self, n: usize) -> Vec<T> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.1.iter()
            .rev()
            .take(n)
            .filter_map(|id| g.0.get(id).cloned())
            .collect()
    }
}

/// `X-ACI-Version` and `X-ACI-Keyset-Digest` on every response.
pub(crate) async fn headers(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    let mut resp = next.run(req).await;
    let digest = shared.aci.identities.current().digest.clone();
    let h = resp.headers_mut();
    h.insert(
        HeaderName::from_static("x-aci-version"),
        HeaderValue::from_static(cocoon_aci::API_VERSION),
    );
    if let Ok(v) = HeaderValue::from_str(&digest) {
        h.insert(HeaderName::from_static("x-aci-keyset-digest"), v);
    }
    resp
}

/// `/v1/aci/receipts/{id}`: behind the API's authentication, since a
/// receipt made for an API key is shown to that key only.
pub(crate) fn receipt_routes() -> axum::Router<Arc<Shared>> {
    use axum::routing::get;
    let refuse = crate::api::method_not_allowed;
    axum::Router::new().route(
        "/v1/aci/receipts/{id}",
        get(report::receipt).fallback(refuse),
    )
}

/// The attestation report and the sessions: transparency artifacts,
/// served to anyone (they hold no request's content).
pub(crate) fn public_routes() -> axum::Router<Arc<Shared>> {
    use axum::routing::get;
    let refuse = crate::api::method_not_allowed;
    axum::Router::new()
        .route(
            "/v1/aci/attestation",
            get(report::attestation).fallback(refuse),
        )
        .route("/v1/aci/sessions", get(sessions::list).fallback(refuse))
        .route("/v1/aci/sessions/{id}", get(sessions::one).fallback(refuse))
}
