//! Every E2EE v2 refusal a service makes, with the error type the
//! specification names for it.

use cocoon_aci::e2ee::{
    self, header, Context, Direction, E2eeError, Endpoint, Opened, ReplayGuard, RequestHeaders,
    ServiceKey,
};
use serde_json::json;

const NOW: u64 = 1_750_000_000;

fn service() -> ServiceKey {
    ServiceKey::from_seed("e2ee-1", [3; 32])
}

fn client() -> ServiceKey {
    ServiceKey::from_seed("client", [4; 32])
}

struct Request {
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn request(nonce: &str, model: &str) -> Request {
    let ctx = Context {
        algo: e2ee::X25519_SUITE.into(),
        model: model.into(),
        nonce: nonce.into(),
        ts: NOW,
    };
    let mut body =
        json!({"model": model, "messages": [{"role": "user", "content": "secret marker"}]});
    e2ee::seal_fields(
        &mut body,
        Endpoint::Chat,
        Direction::Request,
        &ctx,
        &service().public(),
        "",
    )
    .unwrap();
    Request {
        headers: vec![
            (header::VERSION, "2".into()),
            (header::CLIENT_KEY, hex::encode(client().public())),
            (header::MODEL_KEY, hex::encode(service().public())),
            (header::NONCE, nonce.into()),
            (header::TIMESTAMP, NOW.to_string()),
        ],
        body: serde_json::to_vec(&body).unwrap(),
    }
}

impl Request {
    fn set(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        if let Some(n) = [
            header::VERSION,
            header::CLIENT_KEY,
            header::MODEL_KEY,
            header::NONCE,
            header::TIMESTAMP,
            header::LEGACY_SIGNING_ALGO,
        ]
        .into_iter()
        .find(|n| *n == name)
        {
            self.headers.push((n, value.into()));
        }
        self
    }

    fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self
    }

    fn open(&self, now: u64) -> Result<Opened, E2eeError> {
        let h = RequestHeaders::read(|n| {
            self.headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
        })?
        .expect("v2 headers");
        let key = service();
        Opened::open(&h, &self.body, Endpoint::Chat, &[&key], now)
    }
}

fn kind(r: Result<Opened, E2eeError>) -> &'static str {
    r.err().map(|e| e.error_type()).unwrap_or("accepted")
}

const N1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

#[test]
fn a_well_formed_request_opens_to_its_plaintext() {
    let opened = request(N1, "demo-model").open(NOW).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&opened.body).unwrap();
    assert_eq!(body["messages"][0]["content"], "secret marker");
    // Its answer comes back sealed to the client, bound to the response id.
    let sealed = opened.sealer.seal_body(br#"{"id":"chatcmpl-1","choices":[{"index":0,"message":{"role":"assistant","content":"hello"}}]}"#).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains("hello"));
    let ctx = opened.sealer.context().clone();
    e2ee::open_fields(
        &mut v,
        Endpoint::Chat,
        Direction::Response,
        &ctx,
        "chatcmpl-1",
        &|f, aad| client().open(f, aad),
    )
    .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "hello");
    // Under another response id, the field does not open.
    let mut v: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
    assert!(e2ee::open_fields(
        &mut v,
        Endpoint::Chat,
        Direction::Response,
        &ctx,
        "chatcmpl-2",
        &|f, aad| client().open(f, aad)
    )
    .is_err());
}

#[test]
fn no_headers_is_a_plaintext_request_and_a_partial_set_is_refused() {
    assert_eq!(RequestHeaders::read(|_| None).unwrap(), None);
    assert_eq!(
        kind(request(N1, "m").without(header::NONCE).open(NOW)),
        "e2ee_header_missing"
    );
    let legacy = request(N1, "m").set(header::LEGACY_SIGNING_ALGO, "ecdsa");
    assert_eq!(kind(legacy.open(NOW)), "e2ee_invalid_version");
}

#[test]
fn each_bad_header_has_its_own_error_type() {
    let cases = [
        (
            request(N1, "m").set(header::VERSION, "1"),
            "e2ee_invalid_version",
        ),
        (
            request(N1, "m").set(header::CLIENT_KEY, "zz"),
            "e2ee_invalid_public_key",
        ),
        (
            request(N1, "m").set(header::CLIENT_KEY, &"ab".repeat(33)),
            "e2ee_invalid_public_key",
        ),
        (
            request(N1, "m").set(header::MODEL_KEY, &hex::encode(client().public())),
            "e2ee_model_key_mismatch",
        ),
        (
            request(N1, "m").set(header::NONCE, &N1[..63]),
            "e2ee_invalid_nonce",
        ),
        (
            request(N1, "m").set(header::NONCE, &format!("0x{}", &N1[2..])),
            "e2ee_invalid_nonce",
        ),
        (
            request(N1, "m").set(header::TIMESTAMP, "soon"),
            "e2ee_invalid_timestamp",
        ),
        (
            request(N1, "m").set(header::TIMESTAMP, &(NOW - 301).to_string()),
            "e2ee_invalid_timestamp",
        ),
    ];
    for (i, (req, expected)) in cases.into_iter().enumerate() {
        assert_eq!(kind(req.open(NOW)), expected, "case {i}");
    }
    // The associated data binds the nonce and time: right headers, other
    // values than the fields were sealed under, do not open.
    let other = "ff".repeat(32);
    assert_eq!(
        kind(request(N1, "m").set(header::NONCE, &other).open(NOW)),
        "e2ee_decryption_failed"
    );
    assert_eq!(
        kind(
            request(N1, "m")
                .set(header::TIMESTAMP, &(NOW + 1).to_string())
                .open(NOW)
        ),
        "e2ee_decryption_failed"
    );
}

#[test]
fn the_body_must_name_its_model_and_carry_sealed_fields_in_place() {
    let mut r = request(N1, "demo-model");
    let mut v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["model"] = json!(7);
    r.body = serde_json::to_vec(&v).unwrap();
    assert_eq!(kind(r.open(NOW)), "e2ee_invalid_payload_model");
    // The model is in the associated data: renaming it breaks every field.
    let mut r = request(N1, "demo-model");
    r.body = String::from_utf8(r.body)
        .unwrap()
        .replace("demo-model", "other-model")
        .into_bytes();
    assert_eq!(kind(r.open(NOW)), "e2ee_decryption_failed");
    // Ciphertext moved to another message is refused.
    let mut r = request(N1, "demo-model");
    let mut v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let sealed = v["messages"][0].clone();
    v["messages"] = json!([{"role": "system", "content": [{"type": "text", "text": "x"}]}, sealed]);
    v["messages"][0]["content"][0]["text"] = json!(v["messages"][1]["content"].clone());
    r.body = serde_json::to_vec(&v).unwrap();
    assert_eq!(kind(r.open(NOW)), "e2ee_decryption_failed");
    // A plaintext field among sealed ones is refused, as is no sealed field.
    let mut r = request(N1, "demo-model");
    let mut v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["messages"][0]["content"] = json!("in the clear");
    r.body = serde_json::to_vec(&v).unwrap();
    assert_eq!(kind(r.open(NOW)), "e2ee_decryption_failed");
}

#[test]
fn a_nonce_is_good_for_one_request_in_either_case() {
    let guard = ReplayGuard::default();
    let first = request(N1, "m").open(NOW).unwrap();
    guard.admit(&first, NOW).unwrap();
    let again = request(N1, "m").open(NOW).unwrap();
    assert_eq!(
        guard.admit(&again, NOW + 1).unwrap_err().error_type(),
        "e2ee_replay_detected"
    );
    let upper = request(&N1.to_uppercase(), "m").open(NOW).unwrap();
    assert_eq!(
        guard.admit(&upper, NOW + 2).unwrap_err().error_type(),
        "e2ee_replay_detected"
    );
    let fresh = request(&"22".repeat(32), "m").open(NOW).unwrap();
    guard.admit(&fresh, NOW).unwrap();
}
