//! End-to-end requests: sealed (cocoon-seal) to workers whose certificates
//! this client verified itself, so the proxy routes, queues, meters and
//! settles ciphertext only; their answers are opened here.
//!
//! The proxy offers the workers serving a model (`Roster`); the client
//! keeps those whose attested claims name an end-to-end key, and wraps the
//! request key for each, leaving the proxy its choice among them, as Private
//! Cloud Compute's clients do for the nodes a request may reach.

use bytes::Bytes;
use cocoon_proto::{RosterRequest, SealedBody, WrappedKey};
use cocoon_seal::{Binding, RequestKey};

use crate::openai::{E2eMode, Validated};
use crate::Shared;

/// A worker this client verified, with its end-to-end key and its
/// attested session (ACI).
#[derive(Debug, Clone)]
struct Candidate {
    name: String,
    key: [u8; 32],
    session: Option<String>,
    coefficient: u32,
    /// What it offers trust requirements, as this client verified it.
    offer: cocoon_core::trust::TrustOffer,
}

/// How long a verified roster is reused: under load one serves many
/// requests; a worker that joined since is found on a retry, which asks
/// again.
const ROSTER_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// How long one ephemeral key seals requests: the X25519 agreement with a
/// worker is made once in that time, each request still drawing its own
/// request key.
const SENDER_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Verified rosters, by model, with when they were asked for; and the
/// current ephemeral key.
#[derive(Debug, Default)]
pub(crate) struct Rosters {
    sender: std::sync::Mutex<Option<(std::time::Instant, std::sync::Arc<cocoon_seal::Sender>)>>,
    by_model:
        std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Vec<Candidate>)>>,
}

impl Rosters {
    /// The ephemeral key of the current window.
    fn sender(&self) -> Result<std::sync::Arc<cocoon_seal::Sender>, cocoon_seal::SealError> {
        let mut current = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        match &*current {
            Some((at, s)) if at.elapsed() < SENDER_WINDOW => Ok(s.clone()),
            _ => {
                let s = std::sync::Arc::new(cocoon_seal::Sender::generate()?);
                *current = Some((std::time::Instant::now(), s.clone()));
                Ok(s)
            }
        }
    }

    fn get(&self, model: &str) -> Option<Vec<Candidate>> {
        let map = self.by_model.lock().unwrap_or_else(|p| p.into_inner());
        map.get(model)
            .filter(|(at, _)| at.elapsed() < ROSTER_TTL)
            .map(|(_, c)| c.clone())
    }

    fn put(&self, model: &str, candidates: &[Candidate]) {
        let mut map = self.by_model.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(
            model.to_owned(),
            (std::time::Instant::now(), candidates.to_vec()),
        );
    }
}

/// Most workers one request is sealed to (the proxy refuses more).
const MAX_SEALED_TO: usize = 64;

/// A request sealed end to end: what the proxy gets, and what opens its
/// answer.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub(crate) body: SealedBody,
    key: RequestKey,
    request_id: String,
    to: Vec<[u8; 32]>,
}

/// The workers serving `model` now that this client verified (each
/// certificate once) and can seal to; empty when it can verify none. Asked
/// for each request: a roster kept longer misses workers that just joined.
/// `fresh`: ask the proxy even if a recent roster is known.
async fn candidates(
    shared: &Shared,
    model: &str,
    fresh: bool,
) -> Result<Vec<Candidate>, CannotSeal> {
    if !fresh {
        if let Some(known) = shared.rosters.get(model) {
            return Ok(known);
        }
    }
    let mut proxy = shared.proxy.clone();
    let request = RosterRequest {
        model: model.to_owned(),
    };
    let entries = match proxy.roster(request).await {
        Ok(r) => r.into_inner().workers,
        Err(status) => return Err(CannotSeal::ProxyUnreachable(status)),
    };
    let mut verified = Vec::new();
    for e in entries {
        match shared
            .receipts
            .verified(&shared.proxy, &e.worker_id, &e.certificate)
            .await
        {
            Some(Ok(identity)) => {
                if let Some(key) = identity.attestation().e2e_key {
                    let sessions = &shared.aci.sessions;
                    let der = crate::aci::Certificate::Der(&e.certificate);
                    let session = sessions.for_worker(&e.worker_id, model, &identity, der);
                    let a = identity.attestation();
                    let offer = crate::receipts::offer_of(a, a.gpus.first().map(|g| g.describe()));
                    verified.push(Candidate {
                        name: e.worker_id,
                        key,
                        session,
                        coefficient: e.coefficient,
                        offer,
                    });
                }
            }
            // Not one to seal to; the proxy is not blamed for offering it
            // (another client's policy may accept it).
            Some(Err(
                crate::receipts::Refusal::Untrusted(why)
                | crate::receipts::Refusal::Unavailable(why),
            )) => {
                tracing::info!(worker = %e.worker_id, %why, "not sealing to a worker this client does not accept");
            }
            None => break,
        }
    }
    shared.rosters.put(model, &verified);
    Ok(verified)
}

/// Why a request that must be sealed could not be.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CannotSeal {
    /// No worker this client verified can take it.
    #[error("{0}")]
    Unavailable(String),
    /// None of the attested sessions the request pinned can serve it.
    #[error("{0}")]
    SessionNotAccepted(String),
    /// The proxy could not be asked who serves the model.
    #[error("the proxy did not answer for its roster: {}", .0.message())]
    ProxyUnreachable(tonic::Status),
    /// Nobody serves the model at all.
    #[error("The model '{0}' does not exist or is not served by any connected worker")]
    ModelNotFound(String),
    /// No worker this client verified meets the request's trust requirements.
    #[error("{0}")]
    TrustUnmet(String),
}

/// Whether the proxy lists anyone serving `v`'s model: an empty roster for
/// an unknown model is that, not a sealing failure.
async fn served(shared: &Shared, v: &Validated) -> bool {
    match crate::api::model_list(shared).await {
        Ok(list) => list.data.iter().any(|m| m.id == v.model.as_str()),
        Err(_) => true,
    }
}

impl CannotSeal {
    /// What the failure is counted as.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            CannotSeal::Unavailable(_) => "e2e_unavailable",
            CannotSeal::SessionNotAccepted(_) => "session_not_accepted",
            CannotSeal::ProxyUnreachable(_) => "proxy_unavailable",
            CannotSeal::ModelNotFound(_) => "model_not_found",
            CannotSeal::TrustUnmet(_) => "trust_unmet",
        }
    }

    /// The refusal the app gets: nothing was forwarded.
    pub(crate) fn into_error(self) -> crate::openai::ApiError {
        use axum::http::StatusCode;
        let (status, kind) = match &self {
            CannotSeal::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "e2e_unavailable"),
            CannotSeal::SessionNotAccepted(_) => {
                (StatusCode::PRECONDITION_FAILED, "session_not_accepted")
            }
            CannotSeal::ProxyUnreachable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "proxy_unavailable")
            }
            CannotSeal::TrustUnmet(why) => {
                return crate::openai::ApiError::invalid(
                    "cocoon.trust",
                    "trust_requirements_unmet",
                    why.clone(),
                );
            }
            CannotSeal::ModelNotFound(_) => {
                let mut e =
                    crate::openai::ApiError::invalid("model", "model_not_found", self.to_string());
                e.status = StatusCode::NOT_FOUND;
                return e;
            }
        };
        crate::openai::ApiError {
            status,
            message: self.to_string(),
            kind,
            param: None,
            code: Some(kind.to_owned()),
            retry_after: None,
        }
    }
}

/// Seals `v`'s body to the verified workers serving its model, as its
/// mode asks: `None` to send it in the clear.
/// `fresh`: with the roster asked for anew (the last one's workers left).
/// `key`: the request key an idempotent request is sealed under every
/// time; `None` makes a fresh one.
pub(crate) async fn seal(
    shared: &Shared,
    request_id: &str,
    endpoint: cocoon_core::Endpoint,
    v: &Validated,
    fresh: bool,
    key: Option<RequestKey>,
) -> Result<Option<Sealed>, CannotSeal> {
    let Some(candidates) = chosen(shared, v, fresh).await? else {
        return Ok(None);
    };
    let max_tokens = v.max_tokens.unwrap_or(0);
    let deterministic = v.sampling.deterministic();
    let binding = Binding {
        request_id,
        model: v.model.as_str(),
        endpoint: endpoint.path(),
        stream: v.stream,
        max_tokens,
        deterministic,
    };
    let to: Vec<[u8; 32]> = candidates.iter().map(|c| c.key).collect();
    let unavailable = |e: cocoon_seal::SealError| CannotSeal::Unavailable(e.to_string());
    let sender = shared.rosters.sender().map_err(unavailable)?;
    let (sealed, key) = match key {
        Some(key) => cocoon_seal::seal_with(&sender, key, &v.body, &binding, &to),
        None => cocoon_seal::seal_from(&sender, &v.body, &binding, &to),
    }
    .map_err(unavailable)?;
    tracing::debug!(workers = ?candidates.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), "sealed end to end");
    let body = SealedBody {
        ephemeral_key: sealed.ephemeral.to_vec().into(),
        keys: sealed
            .keys
            .into_iter()
            .map(|(worker, wrapped)| WrappedKey {
                worker_key: worker.to_vec().into(),
                wrapped: wrapped.into(),
            })
            .collect(),
        ciphertext: sealed.ciphertext.into(),
        model: v.model.to_string(),
        max_tokens,
        deterministic,
    };
    Ok(Some(Sealed {
        body,
        key,
        request_id: request_id.to_owned(),
        to,
    }))
}

/// The workers to seal `v` to (the cheapest, at most as many as the proxy
/// accepts), as its mode and pinned sessions allow; `None` to send it in
/// the clear.
async fn chosen(
    shared: &Shared,
    v: &Validated,
    fresh: bool,
) -> Result<Option<Vec<Candidate>>, CannotSeal> {
    // Pinned sessions are enforced by sealing to their workers alone.
    let pinned = v.serving.sessions.as_ref();
    // A request that accepts the open tier travels in the clear: an open
    // worker's operator reads it anyway, and the proxy must, to spot-check
    // open workers' answers.
    if v.controls.trust.accepts_open() {
        if pinned.is_some() || v.controls.e2e == Some(E2eMode::Required) {
            return Err(CannotSeal::Unavailable(
                "a request that accepts the open tier (cocoon.trust.open) is not sealed end to end: open workers' operators read what they serve, and the proxy spot-checks them; drop \"open\" or the end-to-end requirement".into(),
            ));
        }
        return Ok(None);
    }
    let mode = match (pinned, v.controls.e2e) {
        (Some(_), _) => E2eMode::Required,
        (None, Some(mode)) => mode,
        // A client that verifies workers never falls back to the clear on
        // its own: a proxy that offered no roster could otherwise read
        // every request. Only the app's explicit "off" sends it clear.
        (None, None) if shared.receipts.checks() => E2eMode::Required,
        (None, None) => E2eMode::Preferred,
    };
    if mode == E2eMode::Off {
        return Ok(None);
    }
    let mut candidates = candidates(shared, v.model.as_str(), fresh).await?;
    if let Err(unmet) = meeting_trust(shared, v, &mut candidates) {
        // A roster from moments ago may miss the worker that meets them.
        if fresh {
            return Err(unmet);
        }
        candidates = self::candidates(shared, v.model.as_str(), true).await?;
        meeting_trust(shared, v, &mut candidates)?;
    }
    if let Some(ids) = pinned {
        candidates.retain(|c| c.session.as_ref().is_some_and(|s| ids.contains(s)));
        if candidates.is_empty() {
            return Err(CannotSeal::SessionNotAccepted(format!(
                "none of the {} attested sessions the request pinned is a worker serving {} now (GET /v1/aci/sessions?model={} lists them)",
                ids.len(),
                v.model,
                v.model
            )));
        }
    }
    match (candidates.is_empty(), mode) {
        (true, E2eMode::Required) if !served(shared, v).await => {
            Err(CannotSeal::ModelNotFound(v.model.to_string()))
        }
        (true, E2eMode::Required) => Err(CannotSeal::Unavailable(format!(
            "this request must be sealed end to end (a client that verifies workers seals every request unless the app sends cocoon.e2e \"off\"), but no worker serving {} now has a certificate this client verified with an end-to-end key",
            v.model
        ))),
        (true, _) => Ok(None),
        (false, _) => {
            candidates.sort_by_key(|c| c.coefficient);
            candidates.truncate(MAX_SEALED_TO);
            Ok(Some(candidates))
        }
    }
}

/// Keeps the candidates that meet `v`'s trust requirements (never an
/// open-tier worker: open requests are not sealed). When this client's
/// policy judges no GPU evidence, the GPU requirement is left to the
/// attested proxy. If candidates were verified but none meets them, the
/// refusal names what the best of them lacks, as the proxy would.
fn meeting_trust(
    shared: &Shared,
    v: &Validated,
    candidates: &mut Vec<Candidate>,
) -> Result<(), CannotSeal> {
    let mut trust = v.controls.trust.clone();
    if !shared.receipts.checks_gpus() {
        trust.gpu = None;
    }
    trust
        .keep_meeting(v.model.as_str(), candidates, |c| (&c.offer, c.coefficient))
        .map_err(|shortfall| CannotSeal::TrustUnmet(shortfall.to_string()))
}

impl Sealed {
    /// The salt of its receipts' digests.
    pub(crate) fn salt(&self) -> cocoon_receipt::digest::Salt {
        cocoon_receipt::digest::Salt(self.key.receipt_salt())
    }

    /// What opens the answer of the worker whose key is `worker`: `None`
    /// when the request was not sealed to it (the proxy sent it elsewhere).
    pub(crate) fn opener(&self, worker: Option<[u8; 32]>) -> Option<Opener> {
        let worker = worker.filter(|w| self.to.contains(w))?;
        Some(self.opener_for_replay(worker))
    }

    /// What opens an answer the proxy recorded from an earlier run of this
    /// idempotent request, sealed under the same request key by `worker`
    /// (one the first run was sealed to, not necessarily this one): only a
    /// holder of the request key can have sealed chunks that open.
    pub(crate) fn opener_for_replay(&self, worker: [u8; 32]) -> Opener {
        Opener {
            answer: self.key.answer(&worker, &self.request_id),
            next: 0,
        }
    }
}

/// Opens one worker's sealed answer, chunk by chunk, in order.
#[derive(Debug)]
pub(crate) struct Opener {
    answer: cocoon_seal::AnswerKey,
    next: u64,
}

impl Opener {
    /// The worker's sealed error message, opened; `None` when it is not
    /// one, or does not open.
    pub(crate) fn open_error(&self, message: &str) -> Option<String> {
        let sealed = hex::decode(message.strip_prefix(cocoon_seal::SEALED_MESSAGE_PREFIX)?).ok()?;
        let plain = self.answer.open(cocoon_seal::ERROR_INDEX, &sealed).ok()?;
        String::from_utf8(plain).ok()
    }

    /// Opens the next chunk.
    pub(crate) fn open(&mut self, sealed: &[u8]) -> Result<Bytes, cocoon_seal::SealError> {
        let plain = self.answer.open(self.next, sealed)?;
        self.next += 1;
        Ok(Bytes::from(plain))
    }
}
