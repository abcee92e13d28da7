//! `GET /v1/aci/attestation` and `GET /v1/aci/receipts/{id}`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use cocoon_aci::keyset::{self, ReportNonce};
use cocoon_transport::Trust;
use serde_json::{json, Value};

use crate::openai::ApiError;
use crate::Shared;

/// A JSON response.
pub(super) fn json(v: &Value) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// ACI's `not_found`.
pub(super) fn not_found(message: String) -> Response {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message,
        kind: "not_found",
        param: None,
        code: None,
        retry_after: None,
    }
    .into_response()
}

/// The report's query.
#[derive(Debug, serde::Deserialize)]
pub(super) struct ReportQuery {
    nonce: Option<String>,
}

/// `GET /v1/aci/attestation?nonce=`: the keyset, and TEE evidence whose
/// report data is SHA-256 of the statement naming the keyset's digest and
/// the verifier's nonce.
pub(super) async fn attestation(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let nonce = match q.nonce.as_deref().map(ReportNonce::parse).transpose() {
        Ok(n) => n,
        Err(e) => {
            return ApiError::request(StatusCode::BAD_REQUEST, "invalid_nonce", e.to_string())
                .into_response()
        }
    };
    let identity = shared.aci.identities.current();
    let report_data = keyset::report_data(&identity.digest, nonce.as_ref());
    let slot = keyset::report_data_slot(&report_data);
    let trust = shared.config.trust.clone();
    let evidence = tokio::task::spawn_blocking(move || evidence(&trust, &slot)).await;
    let (tee_type, evidence) = match evidence {
        Ok(Ok(e)) => e,
        Ok(Err(why)) => {
            return ApiError::server(
                StatusCode::SERVICE_UNAVAILABLE,
                "attestation_failed",
                format!("the TEE did not produce evidence: {why}"),
            )
            .into_response()
        }
        Err(e) => {
            return ApiError::server(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("attesting: {e}"),
            )
            .into_response()
        }
    };
    json(&json!({
        "api_version": cocoon_aci::API_VERSION,
        "workload_keyset_digest": identity.digest,
        "attestation": {
            "tee_type": tee_type,
            "workload_keyset": identity.keyset,
            "report_data": hex::encode(report_data),
            "source_provenance": {
                "repo_url": option_env!("CARGO_PKG_REPOSITORY"),
                "repo_commit": Value::Null,
                "image_digest": Value::Null,
                "image_provenance": Value::Null,
            },
            "evidence": evidence,
        },
        "service_capabilities": {
            "supported_e2ee_versions": [cocoon_aci::e2ee::VERSION],
            "serving": "aggregator",
        },
    }))
}

/// The TEE's evidence over `slot`, in the report's form.
fn evidence(trust: &Trust, slot: &[u8; 64]) -> Result<(&'static str, Value), String> {
    let att = match trust {
        Trust::Attested(att) => att,
        Trust::Insecure => {
            return Ok((
                "none",
                json!({
                    "development": "this client runs without a TEE (--insecure): nothing in this report is attested, and its keys could be anyone's",
                    "report_data_slot": hex::encode(slot),
                }),
            ))
        }
    };
    let ev = att.attester().attest(slot).map_err(|e| e.to_string())?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = json!({
        "format": "cocoon-evidence/1",
        "envelope_b64": b64.encode(ev.encode()),
        "report_data_slot": hex::encode(slot),
    });
    let tee_type = match &ev {
        cocoon_tee::Evidence::Tdx { quote, .. } => {
            out["quote"] = json!(hex::encode(quote));
            "tdx"
        }
        cocoon_tee::Evidence::SevSnp { report, .. } => {
            out["report"] = json!(hex::encode(report));
            "sev_snp"
        }
        cocoon_tee::Evidence::Sim { quote } => {
            out["quote"] = json!(hex::encode(quote));
            out["development"] = json!("SIMULATED TEE: this evidence is signed by a development key and proves nothing about the hardware or the code");
            "cocoon-sim"
        }
        cocoon_tee::Evidence::None => {
            return Err("this client runs without a TEE: it has no evidence to give".into());
        }
    };
    Ok((tee_type, out))
}

/// `GET /v1/aci/receipts/{id}`: a receipt made for an API key is shown
/// only to that key (or the operator); to anyone else it does not exist.
pub(super) async fn receipt(
    State(shared): State<Arc<Shared>>,
    who: Option<axum::Extension<crate::access::Principal>>,
    Path(id): Path<String>,
) -> Response {
    let missing = || {
        not_found(format!(
            "no receipt {id:?}: unknown, expired, or not this credential's"
        ))
    };
    let Some((owner, receipt)) = shared.aci.receipts.get(&id) else {
        return missing();
    };
    let who = who.map(|w| w.0);
    let allowed = match (&owner, &who) {
        (None, _) => true,
        (Some(_), Some(crate::access::Principal::Operator)) => true,
        (Some(o), Some(w)) => w.account().as_deref() == Some(o.as_str()),
        (Some(_), None) => false,
    };
    if allowed {
        json(&receipt)
    } else {
        missing()
    }
}
