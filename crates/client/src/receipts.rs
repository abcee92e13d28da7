//! Verifiable answers, checked here: the worker's certificate (fetched
//! from the proxy once per certificate and verified against this client's
//! own policy, not the proxy's word) and the receipt it signs for every
//! answer, compared with the request sent and the answer received. A
//! failed check refuses the answer and stops this client from using the
//! proxy, which either chose an untrusted worker or altered what passed
//! through it. The last receipts are kept for `GET /v1/cocoon/receipts`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use cocoon_proto::client_gateway_client::ClientGatewayClient;
use cocoon_receipt::{SignedReceipt, WorkerIdentity};
use cocoon_tee::RaTlsVerifier;
use serde_json::value::RawValue;
use tonic::transport::Channel;

use crate::openai::ApiError;
use crate::Shared;

/// Receipts kept for `GET /v1/cocoon/receipts`.
const KEPT_RECEIPTS: usize = 100;
/// Verified worker certificates remembered.
const KEPT_WORKERS: usize = 1024;

/// The worker an answer comes from, as far as this client could check it.
#[derive(Debug, Clone)]
pub(crate) enum Worker {
    /// Its certificate satisfied this client's policy.
    Verified {
        identity: Arc<WorkerIdentity>,
        /// The certificate, base64 DER, to hand out with receipts (encoded
        /// once per certificate).
        certificate: Arc<str>,
    },
    /// This client attests nothing (development without attestation).
    Unattested,
}

/// What the receipt check concluded about one answer: also what
/// `GET /v1/cocoon/receipts` lists.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    /// The receipt, the worker's JSON as it came (passed on without being
    /// parsed into a tree again).
    pub(crate) receipt: Option<Box<RawValue>>,
    /// The worker's certificate, base64 DER, when known.
    pub(crate) certificate: Option<Arc<str>>,
    /// "verified", or why it could not be.
    pub(crate) status: String,
}

impl serde::Serialize for Checked {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Checked", 3)?;
        st.serialize_field("receipt", &self.receipt)?;
        st.serialize_field("worker_certificate", &self.certificate.as_deref())?;
        st.serialize_field("receipt_status", &self.status)?;
        st.end()
    }
}

/// The worker's receipt bytes as JSON passed through, if they are JSON.
fn raw_json(bytes: &[u8]) -> Option<Box<RawValue>> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| RawValue::from_string(s.to_string()).ok())
}

#[derive(Debug)]
pub(crate) struct Receipts {
    /// `None` when this client checks nothing: it attests nothing, or its
    /// receipt checks are off (a development benchmark).
    verifier: Option<Arc<RaTlsVerifier>>,
    /// What an unchecked receipt's status says.
    unchecked: &'static str,
    workers: Mutex<HashMap<String, Arc<WorkerIdentity>>>,
    /// Verified certificates by SHA-256, base64 DER.
    certificates: Mutex<HashMap<String, Arc<str>>>,
    /// Why the proxy is no longer trusted, once a check failed.
    refused: Mutex<Option<String>>,
    kept: Mutex<VecDeque<(Option<String>, Checked)>>,
}

impl Receipts {
    /// Checks receipts when `trust` attests and `check` is on.
    pub(crate) fn new(trust: &cocoon_transport::Trust, check: bool) -> Self {
        Receipts {
            verifier: match trust {
                cocoon_transport::Trust::Attested(att) if check => Some(att.verifier().clone()),
                _ => None,
            },
            unchecked: if check {
                "unverified: this client attests nothing (development without attestation)"
            } else {
                "unverified: this client's receipt checks are off (development benchmark)"
            },
            workers: Mutex::default(),
            certificates: Mutex::default(),
            refused: Mutex::new(None),
            kept: Mutex::default(),
        }
    }

    /// How many checked receipts are kept for `/v1/cocoon/receipts`.
    pub(crate) fn kept_count(&self) -> usize {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether answers are hashed and their receipts checked.
    pub(crate) fn checks(&self) -> bool {
        self.verifier.is_some()
    }

    /// Why the proxy is refused, once a check failed.
    pub(crate) fn distrusted(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops using the proxy: every later request is refused with `why`.
    pub(crate) fn distrust(&self, why: &str) {
        tracing::error!(
            reason = why,
            "the proxy failed a receipt check; refusing to use it from now on"
        );
        let mut g = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        g.get_or_insert_with(|| why.to_string());
    }

    /// The assigned worker, its certificate verified under this client's
    /// policy (fetched from the proxy the first time). A refusal names the
    /// failed check.
    pub(crate) async fn worker(
        &self,
        proxy: &ClientGatewayClient<Channel>,
        assigned: Option<&cocoon_proto::Assigned>,
    ) -> Result<Worker, Refusal> {
        let Some(verifier) = &self.verifier else {
            return Ok(Worker::Unattested);
        };
        let Some(a) = assigned else {
            return Err(Refusal::Untrusted(
                "the proxy began an answer without naming the worker".into(),
            ));
        };
        let sha = &a.worker_certificate_sha256;
        if sha.is_empty() {
            return Err(Refusal::Untrusted(format!(
                "the proxy assigned worker {} without a receipt certificate",
                a.worker_id
            )));
        }
        let (identity, certificate) = self
            .identity(proxy, verifier, &a.worker_id, sha, &a.worker_certificate)
            .await?;
        Ok(Worker::Verified {
            identity,
            certificate,
        })
    }

    /// A worker's certificate (DER) verified under this client's policy,
    /// from the cache when it was seen before; `None` when this client
    /// checks no workers.
    pub(crate) async fn verified(
        &self,
        proxy: &ClientGatewayClient<Channel>,
        worker: &str,
        der: &[u8],
    ) -> Option<Result<Arc<WorkerIdentity>, Refusal>> {
        let verifier = self.verifier.as_ref()?;
        let sha = cocoon_receipt::digest::sha256_hex(der);
        Some(
            self.identity(proxy, verifier, worker, &sha, der)
                .await
                .map(|(i, _)| i),
        )
    }

    /// A worker certificate by hash, verified under this client's policy:
    /// from the cache, else the one that came with the assignment
    /// (`attached`), else fetched from the proxy.
    async fn identity(
        &self,
        proxy: &ClientGatewayClient<Channel>,
        verifier: &RaTlsVerifier,
        worker: &str,
        sha: &str,
        attached: &[u8],
    ) -> Result<(Arc<WorkerIdentity>, Arc<str>), Refusal> {
        let cached = self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sha)
            .cloned();
        let base64_cached = self
            .certificates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sha)
            .cloned();
        if let (Some(identity), Some(certificate)) = (cached, base64_cached) {
            return Ok((identity, certificate));
        }
        let der = match attached {
            [] => fetch_certificate(proxy, worker, sha).await?,
            der => bytes::Bytes::copy_from_slice(der),
        };
        let found = cocoon_receipt::digest::sha256_hex(&der);
        if found != sha {
            return Err(Refusal::Untrusted(format!(
                "the proxy returned certificate {found} when asked for {sha}"
            )));
        }
        let identity = WorkerIdentity::verify(&der, verifier, cocoon_core::unix_now())
            .map_err(|e| Refusal::Untrusted(format!("worker {}: {e}", worker)))?;
        let identity = Arc::new(identity);
        let certificate: Arc<str> = base64::engine::general_purpose::STANDARD
            .encode(&der)
            .into();
        let mut w = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let mut d = self.certificates.lock().unwrap_or_else(|p| p.into_inner());
        if w.len() >= KEPT_WORKERS {
            w.clear();
            d.clear();
        }
        w.insert(sha.to_string(), identity.clone());
        d.insert(sha.to_string(), certificate.clone());
        tracing::info!(worker = %worker, certificate = %sha, tee = %identity.attestation().kind, image = %identity.attestation().image_hash, "verified a worker's certificate");
        Ok((identity, certificate))
    }

    /// The runs of a replicated request: every receipt verified against its
    /// worker's certificate (fetched once per certificate) and naming the
    /// request this client sent. Returns the `replication` member for the
    /// app and what all runs cost together; `None` for a request run once.
    pub(crate) async fn replicas(
        &self,
        proxy: &ClientGatewayClient<Channel>,
        done: &cocoon_proto::Completion,
        request_sha256: &str,
    ) -> Result<Option<(serde_json::Value, u64)>, Refusal> {
        let Some(r) = &done.replication else {
            return Ok(None);
        };
        let mut receipts = Vec::new();
        let mut certificates = serde_json::Map::new();
        let mut cost = 0u64;
        for bytes in &r.receipts {
            let value: serde_json::Value = serde_json::from_slice(bytes)
                .map_err(|e| Refusal::Untrusted(format!("a replica's receipt: {e}")))?;
            if let Some(verifier) = &self.verifier {
                let signed = SignedReceipt::from_json(bytes)
                    .map_err(|e| Refusal::Untrusted(format!("a replica's receipt: {e}")))?;
                let b = &signed.receipt;
                let (identity, certificate) = self
                    .identity(
                        proxy,
                        verifier,
                        &b.worker,
                        &b.worker_certificate_sha256,
                        &[],
                    )
                    .await?;
                certificates.insert(
                    b.worker_certificate_sha256.clone(),
                    certificate.to_string().into(),
                );
                identity
                    .check(&signed)
                    .and_then(|()| b.expect_request(request_sha256))
                    .map_err(|e| Refusal::Untrusted(format!("replica {}: {e}", b.worker)))?;
                cost = cost.saturating_add(b.cost_nanoton.unwrap_or(0));
            }
            receipts.push(value);
        }
        let member = serde_json::json!({
            "agreed": r.agreed,
            "dissented": r.dissented,
            "failed": r.failed,
            "receipts": receipts,
            "certificates": certificates,
            // Signed by the proxy against each dissenter: the body of a
            // `slash` message to its worker contract, which anyone may send.
            "slash_evidence": r
                .slash_evidence
                .iter()
                .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
                .collect::<Vec<_>>(),
        });
        Ok(Some((member, cost)))
    }

    /// Checks the receipt of a completed answer: signed by the assigned
    /// worker, over the request this client sent (its digest, salted for a
    /// sealed request) and the answer it
    /// received, with the usage reported and no more than the cost
    /// charged. `Err` names the failed check.
    pub(crate) fn check(
        &self,
        worker: &Worker,
        done: &cocoon_proto::Completion,
        request_sha256: &str,
        answer_sha256: &str,
        replicas_cost: Option<u64>,
        deterministic: bool,
    ) -> Result<Checked, ReceiptRefused> {
        let Worker::Verified {
            identity,
            certificate,
        } = worker
        else {
            return Ok(Checked {
                receipt: raw_json(&done.receipt),
                certificate: None,
                status: self.unchecked.into(),
            });
        };
        if done.receipt.is_empty() {
            return Err(ReceiptRefused::Missing);
        }
        let signed = SignedReceipt::from_json(&done.receipt)?;
        identity.check(&signed)?;
        let r = &signed.receipt;
        r.expect_request(request_sha256)?;
        r.expect_answer(answer_sha256)?;
        r.expect_usage(done.usage())?;
        // A worker that states no content for a replayable answer could not
        // be held to it.
        if deterministic && r.content_sha256.is_none() {
            return Err(ReceiptRefused::NoContent);
        }
        // A replicated request costs what all its runs' receipts say.
        let signed_cost = replicas_cost.or(r.cost_nanoton);
        if let (Some(charged), Some(signed)) = (done.cost(), signed_cost) {
            if charged > signed {
                return Err(ReceiptRefused::Overcharged { charged, signed });
            }
        }
        Ok(Checked {
            receipt: raw_json(&done.receipt),
            certificate: Some(certificate.clone()),
            status: "verified".into(),
        })
    }

    /// Keeps a checked receipt for `GET /v1/cocoon/receipts`.
    /// Keeps a checked receipt for `/v1/cocoon/receipts`, under the
    /// account that asked (`None`: the operator or an open caller).
    pub(crate) fn keep(&self, c: &Checked, account: Option<String>) {
        let entry = (account, c.clone());
        let mut g = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= KEPT_RECEIPTS {
            g.pop_back();
        }
        g.push_front(entry);
    }
}

/// Why a completed answer's receipt fails this client's checks.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReceiptRefused {
    /// There is none.
    #[error("the answer came without the worker's receipt")]
    Missing,
    /// It is malformed, or states other facts than the answer's.
    #[error(transparent)]
    Check(#[from] cocoon_receipt::ReceiptError),
    /// The answer is replayable, and the receipt states no content digest.
    #[error("the request is deterministic (temperature 0 or a seed), but the receipt states no content digest: the worker would not answer for its content")]
    NoContent,
    /// The proxy charged more than the receipts say the answer cost.
    #[error("cost: the proxy charged {charged} nanoton, the workers' receipts say the answer cost {signed}")]
    Overcharged {
        /// What the proxy charged.
        charged: u64,
        /// What the receipts say.
        signed: u64,
    },
}

/// Why an answer's worker was refused before any of the answer was passed on.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Its certificate could not be fetched now; the proxy is not blamed.
    Unavailable(String),
    /// It failed a check: the proxy is distrusted from now on.
    Untrusted(String),
}

impl Refusal {
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Refusal::Unavailable(_) => "worker_certificate_unavailable",
            Refusal::Untrusted(_) => "worker_not_trusted",
        }
    }

    /// The app's error for an answer replayed from the proxy's record: its
    /// worker need not verify any longer (a certificate expires), so the
    /// proxy is not distrusted for it.
    pub(crate) fn into_replay_error(self) -> crate::openai::ApiError {
        let why = match self {
            Refusal::Unavailable(why) | Refusal::Untrusted(why) => why,
        };
        crate::openai::ApiError::server(
            axum::http::StatusCode::BAD_GATEWAY,
            "idempotent_replay_unverifiable",
            format!("the proxy's record of this request's earlier answer no longer verifies ({why}); send the request with a new Idempotency-Key to run it again"),
        )
    }

    /// The app's error; distrusts the proxy for an untrusted worker.
    pub(crate) fn into_error(self, shared: &Shared) -> crate::openai::ApiError {
        use axum::http::StatusCode;
        let reason = self.reason();
        match self {
            Refusal::Unavailable(why) => crate::openai::ApiError::server(
                StatusCode::BAD_GATEWAY,
                reason,
                format!("could not verify the worker chosen for this request: {why}"),
            ),
            Refusal::Untrusted(why) => {
                shared.receipts.distrust(&why);
                crate::openai::ApiError::server(
                    StatusCode::BAD_GATEWAY,
                    reason,
                    format!(
                        "refused the answer: {why}; this client stops using proxy {}",
                        shared.config.proxy
                    ),
                )
            }
        }
    }
}

/// What the worker offers a request's trust requirements. Its TEE, TCB
/// and region are what this client verified; its GPU too when this
/// client's policy judges GPU evidence, else the attested proxy's word
/// (`Assigned.worker_gpu`). Without attestation, only the proxy's word.
pub(crate) fn trust_offer(
    worker: &Worker,
    assigned: Option<&cocoon_proto::Assigned>,
    checks_gpus: bool,
) -> cocoon_core::trust::TrustOffer {
    let said_gpu = assigned
        .map(|a| a.worker_gpu.clone())
        .filter(|g| !g.is_empty());
    match worker {
        Worker::Verified { identity, .. } => {
            let a = identity.attestation();
            let gpu = if checks_gpus {
                a.gpus.first().map(|g| g.describe())
            } else {
                said_gpu
            };
            offer_of(a, gpu)
        }
        Worker::Unattested => cocoon_core::trust::TrustOffer {
            open: assigned.is_some_and(|a| a.worker_open),
            tee: assigned.and_then(|a| a.worker_tee.parse().ok()),
            tcb: assigned
                .and_then(|a| cocoon_core::tee::TcbStatus::from_name(&a.worker_tcb))
                .unwrap_or_default(),
            gpu: said_gpu,
            region: assigned.and_then(|a| cocoon_core::Region::new(&a.worker_region).ok()),
        },
    }
}

/// What a worker this client verified offers, with `gpu` as described.
pub(crate) fn offer_of(
    a: &cocoon_tee::PeerAttestation,
    gpu: Option<String>,
) -> cocoon_core::trust::TrustOffer {
    let open = a.kind == cocoon_core::tee::TeeKind::None;
    cocoon_core::trust::TrustOffer {
        open,
        tee: (!open).then_some(a.kind),
        tcb: a.tcb_status,
        gpu,
        region: a.region.clone(),
    }
}

impl Receipts {
    /// Whether this client's own policy judges GPU evidence.
    pub(crate) fn checks_gpus(&self) -> bool {
        self.verifier
            .as_ref()
            .is_some_and(|v| v.policy().gpu.is_some())
    }
}

/// Puts a checked receipt in the answer's `cocoon` member; with a verified
/// worker, its TEE and image are the ones this client verified.
pub(crate) fn attach(member: &mut cocoon_openai::Receipt, worker: &Worker, c: Checked) {
    if let Worker::Verified { identity, .. } = worker {
        member.worker_tee = Some(identity.attestation().kind.to_string());
        member.worker_image_hash = Some(identity.attestation().image_hash.to_string());
    }
    member.receipt = c.receipt;
    member.worker_certificate = c.certificate;
    member.receipt_status = Some(c.status);
}

/// `GET /v1/cocoon/receipts`: the last receipts, newest first, each with
/// the worker's certificate, as `cocoon receipt verify` reads them.
/// `GET /v1/cocoon/receipts`: the latest receipts, newest first; an API
/// key or a Telegram user sees its own only.
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    who: Option<axum::Extension<crate::access::Principal>>,
) -> Response {
    let mine = who.and_then(|w| w.0.account());
    let kept: Vec<Checked> = shared
        .receipts
        .kept
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(owner, _)| mine.is_none() || *owner == mine)
        .map(|(_, c)| c.clone())
        .collect();
    let body = serde_json::json!({ "object": "list", "data": kept });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Asks the proxy for the worker certificate `sha` (one it named without
/// sending it: this client was sent it before, or a replica's).
async fn fetch_certificate(
    proxy: &ClientGatewayClient<Channel>,
    worker: &str,
    sha: &str,
) -> Result<bytes::Bytes, Refusal> {
    let answer = proxy
        .clone()
        .worker_certificate(cocoon_proto::WorkerCertificateRequest {
            sha256: sha.to_string(),
        })
        .await
        .map_err(|s| {
            let why = format!(
                "fetching worker {worker}'s certificate {sha} from the proxy: {}",
                s.message()
            );
            // Not found included: an honest proxy may have let an old
            // certificate go. Nothing unverified is passed on either way.
            Refusal::Unavailable(why)
        })?;
    Ok(answer.into_inner().der)
}

/// `POST /v1/cocoon/receipts/verify`: checks a saved answer, stream or
/// receipt (the request body) as `cocoon receipt verify` does, under this
/// client's own attestation policy, and reports each check.
pub(crate) async fn verify_saved(
    State(shared): State<Arc<Shared>>,
    body: bytes::Bytes,
) -> Response {
    verification(
        shared.receipts.verifier.clone(),
        shared.receipts.unchecked,
        body,
    )
    .await
}

/// A saved answer checked with `verifier` (or refused, saying `unchecked`,
/// when there is none), as the verification report.
pub(crate) async fn verification(
    verifier: Option<Arc<RaTlsVerifier>>,
    unchecked: &'static str,
    body: bytes::Bytes,
) -> Response {
    let Some(verifier) = verifier else {
        return ApiError::request(
            axum::http::StatusCode::CONFLICT,
            "receipts_unchecked",
            unchecked,
        )
        .into_response();
    };
    let checked = tokio::task::spawn_blocking(move || {
        let saved = cocoon_receipt::SavedAnswer::parse(&body)?;
        let der = saved.certificate()?;
        saved.verify(&der, None, &verifier)
    })
    .await;
    match checked {
        Ok(Ok(v)) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&v).unwrap_or_default(),
        )
            .into_response(),
        Ok(Err(e)) => {
            ApiError::invalid("body", "unreadable_receipt", e.to_string()).into_response()
        }
        Err(e) => ApiError::server(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the verification failed to run: {e}"),
        )
        .into_response(),
    }
}

/// `GET /v1/cocoon/receipts/{request_id}`: one kept receipt, for a link to
/// it (the bot's `/verify`, the explorer). A receipt states hashes, the
/// model, the worker and the price, never a prompt or an answer; its
/// request id is unguessable.
pub(crate) async fn one(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let kept = shared
        .receipts
        .kept
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let found = kept.iter().map(|(_, c)| c).find(|c| {
        c.receipt.as_ref().is_some_and(|r| {
            serde_json::from_str::<serde_json::Value>(r.get())
                .is_ok_and(|v| v["receipt"]["request_id"] == id.as_str())
        })
    });
    match found {
        Some(c) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(c).unwrap_or_default(),
        )
            .into_response(),
        None => ApiError::request(
            axum::http::StatusCode::NOT_FOUND,
            "unknown_receipt",
            format!("this client keeps no receipt for request {id:?} (it keeps the latest 100)"),
        )
        .into_response(),
    }
}
