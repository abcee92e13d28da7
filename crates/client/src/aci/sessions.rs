//! Attested sessions: one per worker certificate this client verified,
//! recording what its RA-TLS evidence proved and the certificate itself, so
//! a receipt's `upstream.verified` event can be re-checked from outside.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use cocoon_aci::session::{Claim, Evidence, Session};
use cocoon_receipt::WorkerIdentity;
use cocoon_tee::{PeerAttestation, TcbStatus, TeeKind};
use serde_json::{json, Map, Value};

use super::Kept;
use crate::Shared;

/// Names the checks that built the sessions.
const VERIFIER_ID: &str = "cocoon-client/ra-tls/1";

/// A worker's certificate, in whichever form the caller holds it: only a
/// session's first sight of it needs the bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Certificate<'a> {
    /// DER.
    Der(&'a [u8]),
    /// Base64 of the DER.
    Base64(&'a str),
}

/// A stored session.
#[derive(Debug)]
struct Stored {
    id: String,
    model: String,
    document: Value,
}

/// The sessions, by id, and which certificate made which.
#[derive(Debug)]
pub(crate) struct Sessions {
    by_id: Kept<Arc<Stored>>,
    by_certificate: Mutex<HashMap<String, String>>,
}

impl Sessions {
    pub(super) fn new(cap: usize) -> Self {
        Sessions {
            by_id: Kept::new(cap),
            by_certificate: Mutex::new(HashMap::new()),
        }
    }

    /// The id of the session for a worker this client verified, recorded
    /// the first time its certificate is seen.
    pub(crate) fn for_worker(
        &self,
        worker_id: &str,
        model: &str,
        identity: &WorkerIdentity,
        certificate: Certificate<'_>,
    ) -> Option<String> {
        let cert_sha = identity.certificate_sha256().to_owned();
        let known = self
            .by_certificate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&cert_sha)
            .cloned();
        if let Some(id) = known.filter(|id| self.by_id.get(id).is_some()) {
            return Some(id);
        }
        let der = match certificate {
            Certificate::Der(der) => der.to_vec(),
            Certificate::Base64(b64) => {
                base64::engine::general_purpose::STANDARD.decode(b64).ok()?
            }
        };
        let session = document(worker_id, identity, &der);
        let id = session.id().ok()?;
        let document = serde_json::to_value(&session).ok()?;
        self.by_id.insert(
            id.clone(),
            Arc::new(Stored {
                id: id.clone(),
                model: model.to_owned(),
                document,
            }),
        );
        let mut by_cert = self
            .by_certificate
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if by_cert.len() > 4 * super::KEPT_SESSIONS {
            by_cert.clear();
        }
        by_cert.insert(cert_sha, id.clone());
        Some(id)
    }
}

fn document(worker_id: &str, identity: &WorkerIdentity, der: &[u8]) -> Session {
    let att: &PeerAttestation = identity.attestation();
    let mut binding = vec![json!({
        "type": "cocoon_ra_tls_certificate_sha256",
        "certificate_sha256": identity.certificate_sha256(),
    })];
    if let Some(key) = att.e2e_key {
        binding.push(json!({
            "type": "e2ee_public_key_sha256",
            "provider": "cocoon-worker",
            "algorithm": cocoon_aci::e2ee::X25519_SUITE,
            "public_key_sha256": cocoon_aci::sha256_hex(&key),
        }));
    }
    Session {
        api_version: cocoon_aci::API_VERSION.into(),
        upstream_name: worker_id.to_owned(),
        endpoint: None,
        verifier_id: VERIFIER_ID.into(),
        established_at: cocoon_core::unix_now(),
        expires_at: att.expires_at,
        identity: Some(json!({
            "receipt_key": att.receipt_key.map(hex::encode),
            "e2ee_key": att.e2e_key.map(hex::encode),
        })),
        channel_binding: binding,
        claims: claims(att, identity.certificate_sha256()),
        evidence: Evidence::of("application/pkix-cert", der),
    }
}

/// What the worker's verified certificate proves, in ACI's vocabulary.
fn claims(att: &PeerAttestation, certificate_sha256: &str) -> Map<String, Value> {
    let hardware = att.kind != TeeKind::Sim;
    let tee = if hardware {
        Claim::asserted("hardware_proven", format!("{} evidence in the worker's RA-TLS certificate verified under this client's policy; it binds the certificate's key and claims", att.kind))
    } else {
        Claim::refuted(
            "verifier_derived",
            "simulated TEE evidence: development only, it proves nothing",
        )
    };
    let tcb = match (hardware, att.tcb_status) {
        (false, _) => Claim::unknown(),
        (true, TcbStatus::UpToDate) => {
            Claim::asserted("hardware_proven", "the platform TCB is up to date")
        }
        (true, s) => Claim::refuted(
            "hardware_proven",
            format!("platform TCB status {}", s.as_str()),
        ),
    };
    let software = Claim::asserted(
        "verifier_derived",
        format!(
            "image {} is one this client's policy allows",
            att.image_hash
        ),
    );
    let weights = match &att.model_hash {
        Some(m) => Claim::asserted(
            "verifier_derived",
            format!("the attested claims name weights {m}, hashed inside the worker's TEE"),
        ),
        None => Claim::unknown(),
    };
    let value = |c: Claim| serde_json::to_value(c).unwrap_or(Value::Null);
    let mut m = Map::new();
    m.insert("tee_attested".into(), value(tee));
    m.insert("gpu_attested".into(), value(Claim::unknown()));
    m.insert("tcb_up_to_date".into(), value(tcb));
    m.insert("os_known_good".into(), value(Claim::unknown()));
    m.insert("serving_software_known_good".into(), value(software));
    m.insert("model_weights_provenance".into(), value(weights));
    m.insert(
        "extra".into(),
        json!({
            "tee": att.kind.as_str(),
            "image_hash": att.image_hash.to_string(),
            "tcb_status": att.tcb_status.as_str(),
            "advisories": att.advisories,
            "config_hash": hex::encode(att.config_hash),
            "model_hash": att.model_hash.as_ref().map(|m| m.to_string()),
            "certificate_sha256": certificate_sha256,
        }),
    );
    m
}

/// `GET /v1/aci/sessions/{id}`: the full record.
pub(super) async fn one(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match shared.aci.sessions.by_id.get(&id) {
        Some(s) => super::report::json(&s.document),
        None => super::report::not_found(format!(
            "no attested session {id:?} (sessions are kept while receipts citing them are)"
        )),
    }
}

/// Query of the session list.
#[derive(Debug, serde::Deserialize)]
pub(super) struct ListQuery {
    model: Option<String>,
    upstream_name: Option<String>,
}

/// `GET /v1/aci/sessions?model=&upstream_name=`: the current sessions,
/// abbreviated (no evidence data).
pub(super) async fn list(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<ListQuery>,
) -> Response {
    let now = cocoon_core::unix_now();
    let sessions: Vec<Value> = shared
        .aci
        .sessions
        .by_id
        .newest(usize::MAX)
        .into_iter()
        .filter(|s| q.model.as_deref().is_none_or(|m| m == s.model))
        .filter(|s| {
            q.upstream_name
                .as_deref()
                .is_none_or(|u| Some(u) == s.document["upstream_name"].as_str())
        })
        .filter(|s| s.document["expires_at"].as_u64().is_some_and(|t| t > now))
        .map(|s| {
            let mut d = s.document.clone();
            d["session_id"] = json!(s.id);
            if let Some(e) = d["evidence"].as_object_mut() {
                e.remove("data");
            }
            d
        })
        .collect();
    super::report::json(&json!({"api_version": cocoon_aci::API_VERSION, "sessions": sessions}))
        .into_response()
}
