//! End-to-end requests at the worker: opened here, inside the TEE, with the
//! key only this process holds, and their answers sealed chunk by chunk
//! before they leave it. The proxy relays ciphertext only.

use bytes::Bytes;
use cocoon_core::Endpoint;
use cocoon_proto::WorkRequest;
use cocoon_receipt::digest;
use cocoon_seal::{Binding, SealError};

use crate::Shared;

/// Seals one request's answer.
pub(crate) struct Seal {
    answer: cocoon_seal::AnswerKey,
    salt: digest::Salt,
    next: u64,
}

impl Seal {
    /// Seals the next chunk of the answer.
    pub(crate) fn seal(&mut self, chunk: &[u8]) -> Result<Bytes, SealError> {
        let sealed = self.answer.seal(self.next, chunk)?;
        self.next += 1;
        Ok(Bytes::from(sealed))
    }

    /// An error message for the client's eyes only: the engine's message
    /// may quote the request.
    pub(crate) fn seal_message(&self, message: &str) -> String {
        match self
            .answer
            .seal(cocoon_seal::ERROR_INDEX, message.as_bytes())
        {
            Ok(sealed) => format!(
                "{}{}",
                cocoon_seal::SEALED_MESSAGE_PREFIX,
                hex::encode(sealed)
            ),
            Err(_) => "the worker could not seal its error message".into(),
        }
    }

    /// The salt of the request's receipt digests.
    pub(crate) fn salt(&self) -> digest::Salt {
        self.salt
    }
}

/// A sealed request opened: the body the engine runs, what seals its
/// answer, and what its receipt names as the request (its salted digest).
struct Opened {
    body: Bytes,
    seal: Seal,
    request_sha256: String,
}

/// The body the engine runs, what seals its answer when it is sealed, and
/// the request digest its receipt states (none when `sign` is off and it
/// is not sealed).
pub(crate) fn body(
    shared: &Shared,
    req: &WorkRequest,
    endpoint: Endpoint,
    sign: bool,
) -> Result<(Bytes, Option<Seal>, String), String> {
    if req.sealed.is_none() {
        let sha = if sign {
            digest::sha256_hex(&req.body)
        } else {
            String::new()
        };
        return Ok((req.body.clone(), None, sha));
    }
    let o = open(shared, req, endpoint)?;
    Ok((o.body, Some(o.seal), o.request_sha256))
}

/// Opens `req`'s sealed body, refusing one not sealed to this worker, or
/// whose body disagrees with the clear facts the proxy routed it by.
fn open(shared: &Shared, req: &WorkRequest, endpoint: Endpoint) -> Result<Opened, String> {
    let Some(s) = &req.sealed else {
        return Err("the request is not sealed".into());
    };
    let me = shared.e2e.public();
    let wrapped = s
        .keys
        .iter()
        .find(|k| k.worker_key.as_ref() == me)
        .ok_or_else(|| {
            format!(
                "the request is not sealed to this worker's key {}",
                hex::encode(me)
            )
        })?;
    let ephemeral = <[u8; 32]>::try_from(s.ephemeral_key.as_ref()).map_err(|_| {
        format!(
            "the ephemeral key is {} bytes, not 32",
            s.ephemeral_key.len()
        )
    })?;
    let binding = Binding {
        request_id: &req.request_id,
        model: &s.model,
        endpoint: endpoint.path(),
        stream: req.stream,
        max_tokens: s.max_tokens,
        deterministic: s.deterministic,
    };
    // A request for another model is not this worker's to answer, whatever
    // the proxy's routing says.
    if s.model != shared.config.model.as_str() {
        return Err(format!(
            "the request was sealed for model {:?}; this worker serves {}",
            s.model, shared.config.model
        ));
    }
    let (body, key) = shared
        .e2e
        .open(&ephemeral, &wrapped.wrapped, &s.ciphertext, &binding)
        .map_err(|e| format!("the sealed request does not open: {e}"))?;
    agrees(&body, &binding)?;
    let seal = Seal {
        answer: key.answer(&me, &req.request_id),
        salt: digest::Salt(key.receipt_salt()),
        next: 0,
    };
    Ok(Opened {
        request_sha256: digest::request_digest(&body, Some(&seal.salt())),
        body: Bytes::from(body),
        seal,
    })
}

/// The opened body says what the clear facts say: the proxy held and
/// routed the request by those.
fn agrees(body: &[u8], b: &Binding<'_>) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    struct Facts {
        model: Option<String>,
        stream: Option<bool>,
        max_tokens: Option<u64>,
        max_completion_tokens: Option<u64>,
    }
    let f: Facts = serde_json::from_slice(body)
        .map_err(|e| format!("the sealed body is not a request: {e}"))?;
    let max_tokens = match (f.max_tokens, f.max_completion_tokens) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(0),
    };
    let deterministic = digest::deterministic(body);
    if f.model.as_deref() != Some(b.model)
        || f.stream.unwrap_or(false) != b.stream
        || max_tokens != b.max_tokens
        || deterministic != b.deterministic
    {
        return Err(format!(
            "the sealed body (model {:?}, stream {:?}, max_tokens {max_tokens}, deterministic {deterministic}) disagrees with its clear facts (model {:?}, stream {}, max_tokens {}, deterministic {})",
            f.model, f.stream, b.model, b.stream, b.max_tokens, b.deterministic
        ));
    }
    Ok(())
}
