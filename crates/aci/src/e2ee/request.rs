//! A service's side of one v2 request: its headers checked, its fields
//! opened, replays refused, and its answer sealed back to the client.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use super::{
    header, open_fields, parse_public_key, seal_fields, short, Context, Direction, E2eeError,
    Endpoint, ServiceKey, MAX_SKEW_SECS, VERSION,
};

/// The five v2 headers as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeaders {
    version: String,
    client_key: String,
    model_key: String,
    nonce: String,
    timestamp: String,
}

impl RequestHeaders {
    /// Reads the headers with `get` (by lowercase name): `None` for a
    /// plaintext request (none of them), a refusal for a partial or legacy
    /// set.
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, E2eeError> {
        let names = [
            header::VERSION,
            header::CLIENT_KEY,
            header::MODEL_KEY,
            header::NONCE,
            header::TIMESTAMP,
        ];
        let values: Vec<Option<String>> = names.iter().map(|n| get(n)).collect();
        let legacy = get(header::LEGACY_SIGNING_ALGO).is_some();
        if values.iter().all(Option::is_none) && !legacy {
            return Ok(None);
        }
        if legacy {
            return Err(E2eeError::InvalidVersion(
                "X-Signing-Algo selects the pre-ACI E2EE scheme, which this service does not terminate; send E2EE v2 (X-E2EE-Version: 2) without it".into(),
            ));
        }
        let missing: Vec<&str> = names
            .iter()
            .zip(&values)
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| *n)
            .collect();
        if !missing.is_empty() {
            return Err(E2eeError::HeaderMissing(missing.join(", ")));
        }
        let mut v = values.into_iter().map(Option::unwrap_or_default);
        let mut next = || v.next().unwrap_or_default();
        Ok(Some(RequestHeaders {
            version: next(),
            client_key: next(),
            model_key: next(),
            nonce: next(),
            timestamp: next(),
        }))
    }
}

/// A request whose fields were opened: its restored body and what its
/// answer must be sealed with.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The restored body, compact, members in the order they were sent:
    /// what the receipt's `request.received` hashes.
    pub body: Vec<u8>,
    /// Seals the answer.
    pub sealer: Sealer,
    replay: ReplayKey,
}

type ReplayKey = ([u8; 32], [u8; 32], [u8; 32]);

/// Seals one request's answer to its client.
#[derive(Debug, Clone)]
pub struct Sealer {
    ctx: Context,
    client_key: [u8; 32],
    endpoint: Endpoint,
}

impl Opened {
    /// Checks the headers against `keys` (the keyset's E2EE keys) and the
    /// clock, then opens every field of `body`.
    pub fn open(
        headers: &RequestHeaders,
        body: &[u8],
        endpoint: Endpoint,
        keys: &[&ServiceKey],
        now: u64,
    ) -> Result<Opened, E2eeError> {
        if headers.version != VERSION {
            return Err(E2eeError::InvalidVersion(format!(
                "X-E2EE-Version must be \"2\", found {:?}",
                short(&headers.version)
            )));
        }
        let client_key = parse_public_key("X-Client-Pub-Key", &headers.client_key)?;
        // A low-order key would fail only when the answer is sealed, after
        // the request ran and was charged: refuse it now.
        let probe = x25519_dalek::StaticSecret::from([1u8; 32]);
        if !probe
            .diffie_hellman(&x25519_dalek::PublicKey::from(client_key))
            .was_contributory()
        {
            return Err(E2eeError::InvalidPublicKey(
                "X-Client-Pub-Key is a low-order X25519 point: nothing could be sealed to it"
                    .into(),
            ));
        }
        let model_key = parse_public_key("X-Model-Pub-Key", &headers.model_key)?;
        let key = keys
            .iter()
            .find(|k| k.public() == model_key)
            .ok_or_else(|| E2eeError::ModelKeyMismatch(short(&headers.model_key)))?;
        let nonce = parse_nonce(&headers.nonce)?;
        let ts = check_timestamp(&headers.timestamp, now)?;
        let mut value: Value = serde_json::from_slice(body).map_err(|e| {
            E2eeError::DecryptionFailed(format!("the request body is not JSON: {e}"))
        })?;
        let model = match value.get("model") {
            Some(Value::String(m)) => m.clone(),
            _ => return Err(E2eeError::InvalidPayloadModel),
        };
        let ctx = Context {
            algo: super::X25519_SUITE.to_owned(),
            model,
            nonce: headers.nonce.clone(),
            ts,
        };
        let opened = open_fields(
            &mut value,
            endpoint,
            Direction::Request,
            &ctx,
            "",
            &|f, aad| key.open(f, aad),
        )?;
        if opened == 0 {
            return Err(E2eeError::DecryptionFailed(
                "the request has no encrypted field; E2EE v2 requests encrypt their content".into(),
            ));
        }
        let body = serde_json::to_vec(&value)
            .map_err(|e| E2eeError::DecryptionFailed(format!("restoring the body: {e}")))?;
        Ok(Opened {
            body,
            sealer: Sealer {
                ctx,
                client_key,
                endpoint,
            },
            replay: (client_key, model_key, nonce),
        })
    }
}

fn parse_nonce(s: &str) -> Result<[u8; 32], E2eeError> {
    let bad = || E2eeError::InvalidNonce(short(s));
    if s.len() != 64 || s.starts_with("0x") {
        return Err(bad());
    }
    let bytes = hex::decode(s).map_err(|_| bad())?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| bad())
}

fn check_timestamp(s: &str, now: u64) -> Result<u64, E2eeError> {
    let ts: u64 = s.parse().map_err(|_| {
        E2eeError::InvalidTimestamp(format!(
            "X-E2EE-Timestamp must be UNIX seconds, found {:?}",
            short(s)
        ))
    })?;
    if ts.abs_diff(now) > MAX_SKEW_SECS {
        return Err(E2eeError::InvalidTimestamp(format!(
            "X-E2EE-Timestamp {ts} is {} seconds from this service's clock ({now}); at most {MAX_SKEW_SECS} are accepted",
            ts.abs_diff(now)
        )));
    }
    Ok(ts)
}

impl Sealer {
    /// What the answer's fields are bound to.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Seals a whole answer's generated fields.
    pub fn seal_body(&self, body: &[u8]) -> Result<Vec<u8>, E2eeError> {
        self.seal(body, Direction::Response)
    }

    /// Seals one SSE chunk's generated fields (the JSON after `data: `).
    pub fn seal_chunk(&self, payload: &[u8]) -> Result<Vec<u8>, E2eeError> {
        self.seal(payload, Direction::Stream)
    }

    fn seal(&self, body: &[u8], direction: Direction) -> Result<Vec<u8>, E2eeError> {
        let mut value: Value = serde_json::from_slice(body)
            .map_err(|e| E2eeError::EncryptionFailed(format!("the answer is not JSON: {e}")))?;
        let id = value
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        seal_fields(
            &mut value,
            self.endpoint,
            direction,
            &self.ctx,
            &self.client_key,
            &id,
        )?;
        serde_json::to_vec(&value).map_err(|e| E2eeError::EncryptionFailed(e.to_string()))
    }
}

/// The (client key, service key, nonce) tuples seen within the window, so
/// a request cannot be played twice.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    /// The tuples seen, with when, and when they were last pruned.
    seen: Mutex<(HashMap<ReplayKey, u64>, u64)>,
}

impl ReplayGuard {
    /// Records `opened`'s tuple at `now`, refusing one seen within the
    /// acceptance window (a timestamp may be that far on either side).
    pub fn admit(&self, opened: &Opened, now: u64) -> Result<(), E2eeError> {
        let mut guard = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (seen, pruned) = &mut *guard;
        let window = 2 * MAX_SKEW_SECS;
        // Expired tuples go once a second at most: a flood of requests
        // costs one pass per second, not one per request.
        if seen.len() > 4096 && now > *pruned {
            seen.retain(|_, at| now.saturating_sub(*at) <= window);
            *pruned = now;
        }
        match seen.get(&opened.replay) {
            Some(at) if now.saturating_sub(*at) <= window => Err(E2eeError::ReplayDetected),
            _ => {
                seen.insert(opened.replay, now);
                Ok(())
            }
        }
    }
}
