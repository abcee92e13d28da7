//! A saved answer (or a receipt alone) checked offline, with no trust in
//! the proxy or the network, only in the verifier's attestation policy:
//! what `cocoon receipt verify` prints and what the client's explorer shows.
//!
//! The file may be a whole answer's JSON (the receipt in its `cocoon`
//! member), a stream of server-sent events (the receipt in the last
//! chunk), an entry of `/v1/cocoon/receipts`, or a signed receipt.

use base64::Engine as _;
use cocoon_tee::RaTlsVerifier;
use serde::Serialize;
use serde_json::{json, Value};

use crate::{digest, ReceiptBody, SignedReceipt, WorkerIdentity};

/// Why a file could not be read as a saved answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SavedError {
    /// Not UTF-8.
    #[error("the file is not UTF-8 text")]
    NotText,
    /// Neither JSON nor a stream.
    #[error("the file is neither JSON (a whole answer or a receipt) nor a stream of server-sent events: {0}")]
    NotJson(String),
    /// No receipt in it.
    #[error("{0}")]
    NoReceipt(String),
    /// A stream that did not end well.
    #[error("{0}")]
    Stream(String),
    /// The receipt is malformed.
    #[error("the receipt: {0}")]
    Receipt(String),
    /// No certificate to check it with.
    #[error("the file carries no worker certificate; give it separately")]
    NoCertificate,
    /// The certificate is not base64.
    #[error("the file's worker_certificate is not base64: {0}")]
    CertificateEncoding(String),
}

/// What the file held.
#[derive(Debug, Clone)]
pub enum SavedAnswer {
    /// A whole answer's JSON, with the receipt in its `cocoon` member.
    Whole {
        /// The answer's bytes as received.
        body: Vec<u8>,
        /// Its `cocoon` member.
        member: Value,
    },
    /// A stream: the worker's chunk payloads, then the client's last chunk
    /// whose `cocoon` member holds the receipt.
    Stream {
        /// Each chunk's payload, as received.
        payloads: Vec<Vec<u8>>,
        /// The last chunk's `cocoon` member.
        member: Value,
    },
    /// A receipt without its answer.
    ReceiptOnly {
        /// `{"receipt": …, "worker_certificate": …}`.
        member: Value,
    },
}

/// One line of a verification: a check and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    #[serde(rename = "check")]
    pub name: &'static str,
    /// Whether it held.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// The worker's attestation as verified, decoded for people.
#[derive(Debug, Clone, Serialize)]
pub struct EvidenceSummary {
    /// TEE kind.
    pub tee: String,
    /// The image it runs.
    pub image_hash: String,
    /// The platform's TCB status.
    pub tcb_status: String,
    /// Applicable advisories.
    pub advisories: Vec<String>,
    /// Measurement registers (MRTD and RTMRs, or the SEV-SNP measurement).
    pub measurements: Vec<(String, String)>,
    /// The weights its certificate names.
    pub model_hash: Option<String>,
    /// The certificate's validity, Unix seconds.
    pub issued_at: u64,
    /// Its end.
    pub expires_at: u64,
    /// Whether this is the simulated TEE, which proves nothing.
    pub simulated: bool,
}

/// The outcome of checking a saved answer.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Every check held.
    pub verified: bool,
    /// `VERIFIED`, `NOT VERIFIED`, or verified for a receipt alone.
    pub verdict: &'static str,
    /// What the file held.
    pub file: &'static str,
    /// The signed facts.
    pub receipt: ReceiptBody,
    /// Each check.
    pub checks: Vec<Check>,
    /// The worker's evidence, when its certificate verified.
    pub evidence: Option<EvidenceSummary>,
}

impl Verification {
    /// The first failed check, as `name: detail`.
    pub fn failure(&self) -> Option<String> {
        self.checks
            .iter()
            .find(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
    }
}

impl SavedAnswer {
    /// Reads a saved answer, stream or receipt.
    pub fn parse(bytes: &[u8]) -> Result<SavedAnswer, SavedError> {
        let text = std::str::from_utf8(bytes).map_err(|_| SavedError::NotText)?;
        let trimmed = text.trim_start();
        if trimmed.starts_with("data:") || trimmed.starts_with("event:") || trimmed.starts_with(':')
        {
            return parse_stream(text);
        }
        let v: Value =
            serde_json::from_str(text).map_err(|e| SavedError::NotJson(e.to_string()))?;
        if v["cocoon"].is_object() {
            if v["cocoon"]["receipt"].is_null() {
                return Err(SavedError::NoReceipt("the answer's `cocoon` member has no receipt: it was not signed (an answer from before receipts, or through a client without them)".into()));
            }
            return Ok(SavedAnswer::Whole {
                body: bytes.to_vec(),
                member: v["cocoon"].clone(),
            });
        }
        if v["receipt"]["signature"].is_string() {
            return Ok(SavedAnswer::ReceiptOnly { member: v });
        }
        if v["signature"].is_string() && v["receipt"].is_object() {
            return Ok(SavedAnswer::ReceiptOnly {
                member: json!({ "receipt": v }),
            });
        }
        Err(SavedError::NoReceipt("no receipt found: expected an answer with a `cocoon` member, an entry of /v1/cocoon/receipts, or a signed receipt".into()))
    }

    /// The `cocoon` member (or the receipt's wrapper).
    pub fn member(&self) -> &Value {
        match self {
            SavedAnswer::Whole { member, .. }
            | SavedAnswer::Stream { member, .. }
            | SavedAnswer::ReceiptOnly { member } => member,
        }
    }

    /// What it is, for people.
    pub fn what(&self) -> &'static str {
        match self {
            SavedAnswer::Whole { .. } => "a whole answer",
            SavedAnswer::Stream { .. } => "a streamed answer",
            SavedAnswer::ReceiptOnly { .. } => "a receipt without its answer",
        }
    }

    /// The worker certificate (DER) the file carries.
    pub fn certificate(&self) -> Result<Vec<u8>, SavedError> {
        let b64 = self.member()["worker_certificate"]
            .as_str()
            .ok_or(SavedError::NoCertificate)?;
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| SavedError::CertificateEncoding(e.to_string()))
    }

    /// Checks everything the file lets one check: the worker's certificate
    /// at the receipt's time, the signature and signed facts, the answer's
    /// content and usage, the request (when given), and each replica.
    pub fn verify(
        &self,
        certificate: &[u8],
        request: Option<&[u8]>,
        verifier: &RaTlsVerifier,
    ) -> Result<Verification, SavedError> {
        let signed = SignedReceipt::from_value(&self.member()["receipt"])
            .map_err(|e| SavedError::Receipt(e.to_string()))?;
        let r = &signed.receipt;
        let mut checks = Vec::new();
        let identity = WorkerIdentity::verify(certificate, verifier, r.finished_at_ms / 1000);
        checks.push(certificate_check(&identity, r.finished_at_ms / 1000));
        if let Ok(id) = &identity {
            checks.push(signature_check(id, &signed));
        }
        let salt = self.salt();
        checks.extend(self.content_checks(r, salt.as_ref()));
        if let Some(req) = request {
            checks.push(outcome(
                "request",
                r.expect_request(&digest::request_digest(req, salt.as_ref()))
                    .map(|()| "the request is the one the engine ran".into())
                    .map_err(|e| e.to_string()),
            ));
        }
        let replication = &self.member()["replication"];
        if replication.is_object() {
            checks.extend(replicas(replication, &signed, verifier));
        }
        let failed = checks.iter().any(|c| !c.ok);
        let verdict = match (failed, self) {
            (true, _) => "NOT VERIFIED",
            (false, SavedAnswer::ReceiptOnly { .. }) => {
                "VERIFIED (the receipt only: no answer was given to compare)"
            }
            (false, _) => "VERIFIED",
        };
        Ok(Verification {
            verified: !failed,
            verdict,
            file: self.what(),
            receipt: r.clone(),
            checks,
            evidence: identity.ok().map(|id| summary(&id)),
        })
    }

    /// The salt of a sealed answer's digests, which it carries.
    fn salt(&self) -> Option<digest::Salt> {
        self.member()["salt"]
            .as_str()
            .and_then(digest::Salt::from_hex)
    }

    /// The answer's content (and usage) against the receipt.
    fn content_checks(&self, r: &ReceiptBody, salt: Option<&digest::Salt>) -> Vec<Check> {
        match self {
            SavedAnswer::Whole { body, .. } => {
                let mut out = vec![outcome(
                    "answer",
                    r.expect_answer(&digest::whole_answer_salted(body, salt))
                        .map(|()| "the answer's content is the one signed".into())
                        .map_err(|e| e.to_string()),
                )];
                if let Ok(v) = serde_json::from_slice::<Value>(body) {
                    out.push(outcome("usage", usage_matches(r, &v["usage"])));
                }
                out
            }
            SavedAnswer::Stream { payloads, .. } => {
                let mut d = digest::StreamDigest::salted(salt);
                for p in payloads {
                    d.push(p);
                }
                vec![outcome(
                    "answer",
                    r.expect_answer(&d.finish())
                        .map(|()| {
                            format!("the {} streamed chunks are the ones signed", payloads.len())
                        })
                        .map_err(|e| e.to_string()),
                )]
            }
            SavedAnswer::ReceiptOnly { .. } => Vec::new(),
        }
    }
}

fn outcome(name: &'static str, result: Result<String, String>) -> Check {
    let (ok, detail) = match result {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    Check { name, ok, detail }
}

fn certificate_check(identity: &Result<WorkerIdentity, crate::ReceiptError>, at: u64) -> Check {
    outcome(
        "worker certificate",
        identity
            .as_ref()
            .map(|id| {
                let a = id.attestation();
                format!(
                    "{} evidence verified at the receipt's time ({at}): image {}, TCB {}{}",
                    a.kind,
                    a.image_hash,
                    a.tcb_status,
                    if a.kind == cocoon_tee::TeeKind::Sim {
                        " — SIMULATED TEE, proves nothing about hardware"
                    } else {
                        ""
                    }
                )
            })
            .map_err(|e| e.to_string()),
    )
}

fn signature_check(id: &WorkerIdentity, signed: &SignedReceipt) -> Check {
    outcome(
        "signature and signed facts",
        id.check(signed)
            .map(|()| {
                let batch = match &signed.batch {
                    Some(b) => format!(
                        " (one signature for a batch of up to {} receipts; this is number {})",
                        1u64 << b.path.len(),
                        b.index
                    ),
                    None => String::new(),
                };
                format!("signed by the key of certificate {}{batch}; TEE, image, weights, validity and price arithmetic agree", id.certificate_sha256())
            })
            .map_err(|e| e.to_string()),
    )
}

fn summary(id: &WorkerIdentity) -> EvidenceSummary {
    let a = id.attestation();
    EvidenceSummary {
        tee: a.kind.to_string(),
        image_hash: a.image_hash.to_string(),
        tcb_status: a.tcb_status.to_string(),
        advisories: a.advisories.clone(),
        measurements: a
            .measurements
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        model_hash: a.model_hash.as_ref().map(ToString::to_string),
        issued_at: a.issued_at,
        expires_at: a.expires_at,
        simulated: a.kind == cocoon_tee::TeeKind::Sim,
    }
}

/// The most runs a replicated answer can have (the proxy's replica limit
/// and spot-check re-runs, with room to spare).
const MAX_RUNS: usize = 16;

/// The runs of a replicated answer: each receipt verified against its
/// certificate (carried in `certificates`), at its own time, naming the
/// same request as the answer's receipt, which must be one of them.
fn replicas(replication: &Value, answer: &SignedReceipt, verifier: &RaTlsVerifier) -> Vec<Check> {
    let agreed: Vec<&str> = replication["agreed"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut checks = Vec::new();
    let mut found_answer = false;
    let runs = replication["receipts"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    if runs.len() > MAX_RUNS {
        // Each run costs a full attestation check: a file naming more runs
        // than any request can have is refused, not worked through.
        return vec![Check {
            name: "replication",
            ok: false,
            detail: format!(
                "{} runs named; a request has at most {MAX_RUNS}",
                runs.len()
            ),
        }];
    }
    for r in runs {
        let result = replica(r, answer).and_then(|signed| {
            let b = &signed.receipt;
            let cert = replication["certificates"][&b.worker_certificate_sha256]
                .as_str()
                .ok_or_else(|| {
                    format!(
                        "no certificate {} for worker {}",
                        b.worker_certificate_sha256, b.worker
                    )
                })?;
            let der = base64::engine::general_purpose::STANDARD
                .decode(cert)
                .map_err(|e| format!("certificate of worker {}: {e}", b.worker))?;
            let id = WorkerIdentity::verify(&der, verifier, b.finished_at_ms / 1000)
                .map_err(|e| format!("worker {}: {e}", b.worker))?;
            id.check(&signed)
                .map_err(|e| format!("worker {}: {e}", b.worker))?;
            found_answer |= signed == *answer;
            let side = if agreed.contains(&b.worker.as_str()) {
                "agreed"
            } else {
                "dissented"
            };
            Ok(format!(
                "{} ({side}): receipt and certificate verified, same request",
                b.worker
            ))
        });
        checks.push(outcome("replica", result));
    }
    let dissented: Vec<&str> = replication["dissented"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    checks.push(Check {
        name: "replication",
        ok: found_answer,
        detail: if found_answer {
            format!(
                "the answer's receipt is one of the {} runs; agreed: {}; dissented: {}",
                replication["receipts"].as_array().map_or(0, Vec::len),
                agreed.join(", "),
                dissented.join(", ")
            )
        } else {
            "the answer's receipt is not among the runs' receipts".into()
        },
    });
    checks
}

/// A replica's receipt, naming the same request as the answer's.
fn replica(r: &Value, answer: &SignedReceipt) -> Result<SignedReceipt, String> {
    let signed = SignedReceipt::from_value(r).map_err(|e| e.to_string())?;
    signed
        .receipt
        .expect_request(&answer.receipt.request_sha256)
        .map_err(|e| format!("worker {}: {e}", signed.receipt.worker))?;
    Ok(signed)
}

/// The usage beside the answer must be the receipt's (the answer may not
/// report one).
fn usage_matches(r: &ReceiptBody, usage: &Value) -> Result<String, String> {
    if usage.is_null() {
        return Ok("the answer reports no usage".into());
    }
    let field = |k: &str| usage[k].as_u64().unwrap_or(0);
    let found = cocoon_core::Usage {
        prompt: field("prompt_tokens"),
        cached: usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0),
        completion: field("completion_tokens"),
        reasoning: usage["completion_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .unwrap_or(0),
    };
    r.expect_usage(found)
        .map(|()| "the usage reported is the one signed".into())
        .map_err(|e| e.to_string())
}

/// Server-sent events: every `data:` payload but `[DONE]`; the last one
/// must be the client's closing chunk with the receipt.
fn parse_stream(text: &str) -> Result<SavedAnswer, SavedError> {
    let mut payloads = Vec::new();
    let mut data: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if let Some(d) = data.take() {
                payloads.push(d);
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("data:") {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(rest);
                }
                None => data = Some(rest.to_string()),
            }
        }
    }
    if let Some(d) = data.take() {
        payloads.push(d);
    }
    if payloads.last().map(String::as_str) != Some("[DONE]") {
        return Err(SavedError::Stream("the stream does not end with [DONE]: it was cut off, or it failed (its last event says why)".into()));
    }
    payloads.pop();
    let last = payloads
        .pop()
        .ok_or_else(|| SavedError::Stream("the stream has no events".into()))?;
    let v: Value = serde_json::from_str(&last)
        .map_err(|e| SavedError::Stream(format!("the stream's last event is not JSON: {e}")))?;
    let member = v["cocoon"].clone();
    if member["receipt"].is_null() {
        return Err(SavedError::Stream(
            "the stream's last event carries no receipt".into(),
        ));
    }
    Ok(SavedAnswer::Stream {
        payloads: payloads.into_iter().map(String::into_bytes).collect(),
        member,
    })
}
