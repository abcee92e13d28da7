//! Idempotent requests: an app sends `Idempotency-Key: K` (as payment APIs
//! take it); a retry with the same key and request within the proxy's
//! window gets the first answer again, charged once (see the proxy's
//! `idempotency` module for what it keeps and for how long).
//!
//! The proxy is given neither K nor anything derived from the body it
//! could test a guess against: both go as HMAC-SHA-256 under this client's
//! own secret (kept in its state folder, so retries through a restarted
//! client still match), scoped to the caller (API key or Telegram user), so
//! one app cannot reach another's answers. The request's id and, sealed,
//! its request key are derived from the key too: a recorded answer names
//! the same id in its receipt and opens under the same key.

use std::path::Path;

use axum::http::{HeaderMap, StatusCode};
use cocoon_core::{Endpoint, RequestId};
use ring::hmac;

use crate::openai::ApiError;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The response header set on an answer replayed from the proxy's record.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;
/// Where the secret is kept in the client's state folder.
const SECRET_FILE: &str = "idempotency.key";

/// The client's secret for keying idempotency keys and fingerprints.
pub(crate) struct IdempotencySecret(hmac::Key);

impl std::fmt::Debug for IdempotencySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdempotencySecret(..)")
    }
}

impl IdempotencySecret {
    /// The secret kept in `dir` (made on first use, readable by the owner
    /// only), or, without a folder, one for this process alone: retries then
    /// match only while it runs.
    pub(crate) fn load_or_create(dir: Option<&Path>) -> std::io::Result<Self> {
        let bytes = match dir {
            Some(dir) => {
                let path = dir.join(SECRET_FILE);
                read_or_make(&path).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                })?
            }
            None => random()?,
        };
        Ok(IdempotencySecret(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.0);
        for p in parts {
            // Length-prefixed: no two different part lists collide.
            ctx.update(&(p.len() as u64).to_be_bytes());
            ctx.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }
}

fn random() -> std::io::Result<[u8; 32]> {
    let mut out = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut out)
        .map_err(|_| std::io::Error::other("the system's random generator failed"))?;
    Ok(out)
}

fn read_or_make(path: &Path) -> std::io::Result<[u8; 32]> {
    match std::fs::read(path) {
        Ok(bytes) => {
            return <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                std::io::Error::other(format!(
                    "{} holds {} bytes, not a 32-byte secret",
                    path.display(),
                    bytes.len()
                ))
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let secret = random()?;
    let tmp = dir.join(format!("{SECRET_FILE}.partial-{}", std::process::id()));
    {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(&secret)?;
        f.sync_all()?;
    }
    // Two clients starting at once: the first link wins and both read it.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(secret),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_or_make(path),
        Err(e) => Err(e),
    }
}

/// An app's idempotency key, as it sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key in `headers`, if any; a malformed or repeated one is a 400.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
        let mut values = headers.get_all(HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        let bad = |message: String| {
            ApiError::request(StatusCode::BAD_REQUEST, "invalid_idempotency_key", message)
        };
        if values.next().is_some() {
            return Err(bad(
                "Idempotency-Key is given more than once; send one key".into()
            ));
        }
        let key = value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|k| k.bytes().all(|b| (0x20..0x7f).contains(&b)))
            .ok_or_else(|| bad("Idempotency-Key must be printable ASCII".into()))?;
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(bad(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} characters, found {}",
                key.len()
            )));
        }
        Ok(Some(IdempotencyKey(key.to_string())))
    }

    /// The key as `secret` keys it for `caller` (an account, or `""`).
    pub(crate) fn keyed(&self, secret: &IdempotencySecret, caller: &str) -> Idempotent {
        let id = secret.mac(&[
            b"cocoon/idempotency/id/v1",
            caller.as_bytes(),
            self.0.as_bytes(),
        ]);
        let request = secret.mac(&[b"cocoon/idempotency/request/v1", &id]);
        let request_id = RequestId::parse(&format!("idem-{}", hex::encode(&request[..16])))
            .expect("idem- and hex make a request id");
        Idempotent {
            id,
            request_id,
            request_key: None,
            fingerprint: None,
        }
    }
}

/// An idempotent request as this client sends it.
#[derive(Debug, Clone)]
pub(crate) struct Idempotent {
    /// The keyed idempotency key.
    id: [u8; 32],
    /// The request's id, the same for every retry.
    pub(crate) request_id: RequestId,
    /// The secret its sealed body's request key is made from: of the key
    /// and the fingerprint, so another request under the same key never
    /// shares it.
    request_key: Option<[u8; 32]>,
    /// The keyed fingerprint of the request, once read.
    fingerprint: Option<[u8; 32]>,
}

impl Idempotent {
    /// Fingerprints the request: its endpoint, its body as the app sent it
    /// (opened, if it came encrypted) and its Cocoon control headers but
    /// the deadline. Any change there makes another request.
    pub(crate) fn fingerprint(
        &mut self,
        secret: &IdempotencySecret,
        endpoint: Endpoint,
        body: &[u8],
        headers: &HeaderMap,
    ) {
        let mut controls: Vec<(&str, &[u8])> = headers
            .iter()
            .filter(|(name, _)| {
                name.as_str().starts_with("x-cocoon-") && *name != crate::openai::TIMEOUT_HEADER
            })
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        controls.sort();
        let mut parts: Vec<&[u8]> = vec![
            b"cocoon/idempotency/fingerprint/v1",
            &self.id,
            endpoint.path().as_bytes(),
            body,
        ];
        for (name, value) in &controls {
            parts.push(name.as_bytes());
            parts.push(value);
        }
        let fingerprint = secret.mac(&parts);
        self.request_key =
            Some(secret.mac(&[b"cocoon/idempotency/request-key/v1", &self.id, &fingerprint]));
        self.fingerprint = Some(fingerprint);
    }

    /// The request key its body is sealed under, once fingerprinted.
    pub(crate) fn request_key(&self) -> Option<cocoon_seal::RequestKey> {
        self.request_key.map(cocoon_seal::RequestKey::from_secret)
    }

    /// The keyed id and fingerprint, as the proxy receives them.
    pub(crate) fn wire(&self) -> (String, String) {
        (
            hex::encode(self.id),
            self.fingerprint.map(hex::encode).unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn keys_are_read_as_sent_and_bad_ones_named() {
        let k = IdempotencyKey::from_headers(&headers(&[(HEADER, " order-7 ")])).unwrap();
        assert_eq!(k, Some(IdempotencyKey("order-7".into())));
        assert_eq!(
            IdempotencyKey::from_headers(&HeaderMap::new()).unwrap(),
            None
        );
        for bad in [
            headers(&[(HEADER, "")]),
            headers(&[(HEADER, &"k".repeat(MAX_KEY_LEN + 1))]),
            headers(&[(HEADER, "a"), (HEADER, "b")]),
        ] {
            let e = IdempotencyKey::from_headers(&bad).unwrap_err();
            assert_eq!(e.kind, "invalid_request_error", "{e:?}");
            assert_eq!(e.code.as_deref(), Some("invalid_idempotency_key"));
        }
    }

    #[test]
    fn the_same_key_and_request_give_the_same_wire_and_anything_else_differs() {
        let dir = tempfile::tempdir().unwrap();
        let secret = IdempotencySecret::load_or_create(Some(dir.path())).unwrap();
        let again = IdempotencySecret::load_or_create(Some(dir.path())).unwrap();
        let key = IdempotencyKey("k1".into());
        let body = br#"{"model":"m"}"#;
        let wire = |s: &IdempotencySecret, caller: &str, body: &[u8], h: &HeaderMap| {
            let mut i = key.keyed(s, caller);
            i.fingerprint(s, Endpoint::ChatCompletions, body, h);
            (i.wire(), i.request_id.clone())
        };
        let none = HeaderMap::new();
        let first = wire(&secret, "", body, &none);
        assert_eq!(first, wire(&again, "", body, &none), "kept across restarts");
        assert_ne!(
            first.0 .0,
            wire(&secret, "key-2", body, &none).0 .0,
            "per caller"
        );
        let other_body = wire(&secret, "", br#"{"model":"n"}"#, &none);
        assert_eq!(first.0 .0, other_body.0 .0);
        assert_ne!(first.0 .1, other_body.0 .1, "another body");
        let controls = headers(&[("x-cocoon-trust-tee", "tdx")]);
        assert_ne!(
            first.0 .1,
            wire(&secret, "", body, &controls).0 .1,
            "other controls"
        );
        let deadline = headers(&[(crate::openai::TIMEOUT_HEADER, "90000")]);
        assert_eq!(
            first,
            wire(&secret, "", body, &deadline),
            "a longer deadline is a retry"
        );
        // Another body under the same key is sealed under another key.
        let sealing = |body: &[u8]| {
            let mut i = key.keyed(&secret, "");
            assert!(i.request_key().is_none(), "no key before the fingerprint");
            i.fingerprint(&secret, Endpoint::ChatCompletions, body, &none);
            i.request_key
        };
        assert_eq!(sealing(body), sealing(body));
        assert_ne!(sealing(body), sealing(br#"{"model":"n"}"#));
        assert!(first.1.as_str().starts_with("idem-"));
        let fresh = tempfile::tempdir().unwrap();
        let other = IdempotencySecret::load_or_create(Some(fresh.path())).unwrap();
        assert_ne!(first.0, wire(&other, "", body, &none).0, "another client");
        assert!(!first.0 .0.contains("k1"));
    }
}
