//! One request as ACI records it: the bytes received (restored, for an
//! E2EE request) and forwarded, the worker that served it, and the bytes
//! returned, signed into a receipt when the response ends. An E2EE
//! request's answer is sealed to the app here, field by field.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use bytes::Bytes;
use cocoon_aci::e2ee::{self, E2eeError, Opened, RequestHeaders, Sealer};
use cocoon_aci::receipt::{body_event, BodyHash, Receipt};
use cocoon_core::{Endpoint, RequestId};
use cocoon_proto::{Assigned, Completion};
use serde_json::{json, Value};

use super::sessions::Certificate;
use crate::openai::ApiError;
use crate::receipts::Worker;
use crate::Shared;

/// The refusal for an E2EE error, with the type the specification names.
fn refusal(e: E2eeError) -> ApiError {
    let status = match e {
        E2eeError::EncryptionFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError {
        status,
        message: e.to_string(),
        kind: e.error_type(),
        param: None,
        code: None,
        retry_after: None,
    }
}

fn suite_endpoint(endpoint: Endpoint) -> e2ee::Endpoint {
    match endpoint {
        Endpoint::ChatCompletions => e2ee::Endpoint::Chat,
        Endpoint::Completions => e2ee::Endpoint::Completions,
    }
}

/// Opens an E2EE v2 request (nothing to do for a plaintext one): the body
/// the request continues with, and what seals its answer. Refused before
/// anything is held or charged.
pub(crate) fn open_request(
    shared: &Shared,
    headers: &HeaderMap,
    raw: Bytes,
    endpoint: Endpoint,
) -> Result<(Bytes, Option<Sealer>), ApiError> {
    let read = RequestHeaders::read(|n| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let Some(h) = read.map_err(refusal)? else {
        return Ok((raw, None));
    };
    let identities = shared.aci.identities.live();
    let keys: Vec<&e2ee::ServiceKey> = identities.iter().map(|i| &i.e2ee).collect();
    let now = cocoon_core::unix_now();
    let opened = Opened::open(&h, &raw, suite_endpoint(endpoint), &keys, now).map_err(refusal)?;
    shared.aci.replay.admit(&opened, now).map_err(refusal)?;
    Ok((Bytes::from(opened.body), Some(opened.sealer)))
}

/// One request's record, signed into a receipt when its response ends.
#[derive(Debug)]
pub(crate) struct Transcript {
    receipt_id: String,
    endpoint: Endpoint,
    model: String,
    account: Option<String>,
    events: Vec<Value>,
    upstream: Option<Value>,
    served: Option<Value>,
    returned: BodyHash,
    chat_id: Option<String>,
    sealer: Option<Sealer>,
    finished: bool,
}

impl Transcript {
    /// A request whose body, as received (restored from E2EE), is `received`.
    pub(crate) fn new(
        endpoint: Endpoint,
        model: &str,
        received: &[u8],
        sealer: Option<Sealer>,
        account: Option<String>,
    ) -> Self {
        Transcript {
            // Not the network's request id, which the proxy knows: only
            // the app that got the response can name its receipt.
            receipt_id: format!("rcpt-{}", RequestId::generate()),
            endpoint,
            model: model.to_owned(),
            account,
            events: vec![body_event("request.received", received)],
            upstream: None,
            served: None,
            returned: BodyHash::default(),
            chat_id: None,
            sealer,
            finished: false,
        }
    }

    /// The body sent to the proxy.
    pub(crate) fn forwarded(&mut self, body: &[u8]) {
        self.events.push(body_event("request.forwarded", body));
    }

    /// The worker that serves the request, as this client verified it.
    pub(crate) fn served_by(
        &mut self,
        shared: &Shared,
        worker: &Worker,
        assigned: Option<&Assigned>,
        sealed: bool,
    ) {
        let name = assigned.map(|a| a.worker_id.as_str()).unwrap_or("");
        self.upstream = Some(match worker {
            // The worker was verified, but the channel it binds (its
            // end-to-end key) was not used: the proxy read the request.
            Worker::Verified { .. } if !sealed => failed(
                &self.model,
                name,
                "sent to the proxy in the clear (cocoon.e2e \"off\"): the worker was verified, not the channel to it",
                false,
            ),
            Worker::Verified {
                identity,
                certificate,
            } => {
                match shared
                    .aci
                    .sessions
                    .for_worker(name, &self.model, identity, Certificate::Base64(certificate))
                {
                    Some(session) => {
                        json!({"type": "upstream.verified", "result": "verified", "required": true, "model_id": self.model, "session_id": session})
                    }
                    None => failed(
                        &self.model,
                        name,
                        "the worker's certificate could not be recorded as a session",
                        true,
                    ),
                }
            }
            Worker::Unattested => failed(
                &self.model,
                name,
                "this client runs without attestation (development): the worker was not verified",
                false,
            ),
        });
        if let Some(a) = assigned {
            let known = |s: &str| (!s.is_empty()).then(|| s.to_owned());
            self.served = Some(json!({
                "type": "cocoon.served",
                "worker": a.worker_id,
                "tee": known(&a.worker_tee),
                "image_hash": known(&a.worker_image_hash),
                "model_hash": known(&a.model_hash),
                "coefficient": a.coefficient,
                "sealed_to_worker": sealed,
            }));
        }
    }

    /// The answer completed: its cost and the worker's own signed receipt.
    pub(crate) fn completed(&mut self, done: &Completion) {
        if let Some(served) = self.served.as_mut() {
            served["cost_nanoton"] = json!(done.cost());
            served["worker_receipt_sha256"] =
                json!((!done.receipt.is_empty()).then(|| cocoon_aci::sha256_hex(&done.receipt)));
        }
    }

    /// `X-Receipt-Id`, and the E2EE response headers when the answer is sealed.
    pub(crate) fn response_headers(&self, headers: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(&self.receipt_id) {
            headers.insert(HeaderName::from_static("x-receipt-id"), v);
        }
        if self.sealer.is_some() {
            headers.insert(
                HeaderName::from_static(e2ee::header::APPLIED),
                HeaderValue::from_static("true"),
            );
            headers.insert(
                HeaderName::from_static(e2ee::header::VERSION),
                HeaderValue::from_static(e2ee::VERSION),
            );
            headers.insert(
                HeaderName::from_static(e2ee::header::ALGO),
                HeaderValue::from_static(e2ee::X25519_SUITE),
            );
        }
    }

    /// A whole answer as it goes out: sealed for an E2EE request.
    pub(crate) fn seal_body(&mut self, body: Bytes) -> Result<Bytes, ApiError> {
        self.chat_id = response_id(&body);
        match &self.sealer {
            Some(s) => s.seal_body(&body).map(Bytes::from).map_err(refusal),
            None => Ok(body),
        }
    }

    /// One SSE chunk's JSON as it goes out: sealed for an E2EE request.
    pub(crate) fn seal_chunk(&mut self, payload: Bytes) -> Result<Bytes, E2eeError> {
        if self.chat_id.is_none() {
            self.chat_id = response_id(&payload);
        }
        match &self.sealer {
            Some(s) => s.seal_chunk(&payload).map(Bytes::from),
            None => Ok(payload),
        }
    }

    /// Bytes of the response body, in order, as they go out.
    pub(crate) fn returned(&mut self, bytes: &[u8]) {
        self.returned.update(bytes);
    }

    /// Signs the receipt and keeps it for `GET /v1/aci/receipts/{id}`.
    pub(crate) fn finish(&mut self, shared: &Shared) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let mut events = std::mem::take(&mut self.events);
        events.extend(self.upstream.take());
        events.push(std::mem::take(&mut self.returned).event("response.returned"));
        events.extend(self.served.take());
        let identity = shared.aci.identities.current();
        let receipt = Receipt {
            api_version: cocoon_aci::API_VERSION.into(),
            receipt_id: self.receipt_id.clone(),
            chat_id: self.chat_id.take(),
            model: Some(self.model.clone()),
            workload_keyset_digest: identity.digest.clone(),
            endpoint: self.endpoint.path().into(),
            method: "POST".into(),
            served_at: cocoon_core::unix_now(),
            event_log: events,
            key_id: String::new(),
            signature: String::new(),
        };
        match identity
            .receipt
            .sign(receipt)
            .map(|r| serde_json::to_value(&r))
        {
            Ok(Ok(doc)) => {
                shared
                    .aci
                    .keep_receipt(self.receipt_id.clone(), self.account.take(), doc)
            }
            Ok(Err(e)) => tracing::error!(error = %e, "could not keep the ACI receipt"),
            Err(e) => tracing::error!(error = %e, "could not sign the ACI receipt"),
        }
    }
}

fn failed(model: &str, upstream: &str, reason: &str, required: bool) -> Value {
    json!({"type": "upstream.verified", "result": "failed", "required": required, "model_id": model, "reason": reason, "upstream_name": upstream})
}

fn response_id(json_bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: Option<String>,
    }
    serde_json::from_slice::<Id>(json_bytes)
        .ok()
        .and_then(|i| i.id)
}
