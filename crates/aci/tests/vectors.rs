//! The published ACI and E2EE v2 test vectors (spec/test-vectors.md and
//! spec/e2ee-v2-test-vectors.md of the ACI specification), byte for byte,
//! one test per vector; and E2EE v2 field ciphertexts made by an independent
//! implementation (Node's OpenSSL-backed crypto, tests/independent/).

use cocoon_aci::e2ee::{self, Context, Direction, Endpoint, ServiceKey};
use cocoon_aci::keyset::{self, KeyEntry, ReportNonce, TlsKey, WorkloadKeyset};
use cocoon_aci::receipt::{self, Receipt, ReceiptKey};
use cocoon_aci::session::{Claim, Evidence, Session};
use cocoon_aci::{jcs, sha256_digest, sha256_hex};
use serde_json::{json, Value};

const NONCE: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const KEYSET_JCS: &str = r#"{"e2ee_public_keys":[{"algo":"x25519-aes-256-gcm-hkdf-sha256","key_id":"e2ee-1","public_key":"5dfedd3b6bd47f6fa28ee15d969d5bb0ea53774d488bdaf9df1c6e0124b3ef22"}],"not_after":1800000000,"receipt_signing_keys":[{"algo":"ed25519","key_id":"receipt-1","public_key":"8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394"}],"subject":"dstack-app://example-app","tls_public_keys":[{"domain":"api.example.com","spki_sha256":"c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0"}]}"#;
const KEYSET_DIGEST: &str =
    "sha256:53a5cd44b30dcc51999754c719f2628a041f174ecbf9662a6f8e898a10cd9371";
const SESSION_ID: &str = "95ad1cb4dd25445808c2e9d116caf420b05703730b506395e8fc1ca6faeae28f";
const SIGNATURE: &str = "d5b005e093bde3b577faf270b7184b09e169cacb0ecb206b103bd2581f997db03da616175454b063323a23ac1dc68f1ce506c2a6eba8aa0561d5e724f0b80c03";

fn receipt_key() -> ReceiptKey {
    ReceiptKey::from_seed("receipt-1", &[2; 32])
}

fn e2ee_key() -> ServiceKey {
    ServiceKey::from_seed("e2ee-1", [3; 32])
}

fn keyset() -> WorkloadKeyset {
    WorkloadKeyset {
        subject: Some("dstack-app://example-app".into()),
        not_after: 1_800_000_000,
        receipt_signing_keys: vec![receipt_key().entry()],
        e2ee_public_keys: vec![e2ee_key().entry()],
        tls_public_keys: vec![TlsKey {
            spki_sha256: "c0".repeat(32),
            domain: Some("api.example.com".into()),
        }],
    }
}

#[test]
fn fixed_keys_derive_the_published_public_keys() {
    assert_eq!(
        receipt_key().entry().public_key,
        "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394"
    );
    assert_eq!(
        e2ee_key().entry(),
        KeyEntry {
            key_id: "e2ee-1".into(),
            algo: "x25519-aes-256-gcm-hkdf-sha256".into(),
            public_key: "5dfedd3b6bd47f6fa28ee15d969d5bb0ea53774d488bdaf9df1c6e0124b3ef22".into(),
        }
    );
}

#[test]
fn vector_1_the_keyset_canonicalizes_and_digests() {
    assert_eq!(
        String::from_utf8(jcs::canonical_of(&keyset()).unwrap()).unwrap(),
        KEYSET_JCS
    );
    assert_eq!(keyset().digest().unwrap(), KEYSET_DIGEST);
    // Any encoding of the same keyset: pretty-printed, members reordered.
    let pretty: Value = serde_json::from_str(
        &serde_json::to_string_pretty(&json!({
            "tls_public_keys": [{"spki_sha256": "c0".repeat(32), "domain": "api.example.com"}],
            "subject": "dstack-app://example-app",
            "receipt_signing_keys": [receipt_key().entry()],
            "not_after": 1_800_000_000u64,
            "e2ee_public_keys": [e2ee_key().entry()],
        }))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        sha256_digest(&jcs::canonical(&pretty).unwrap()),
        KEYSET_DIGEST
    );
}

#[test]
fn vector_2_the_statement_with_a_nonce_gives_the_report_data() {
    let nonce = ReportNonce::parse(NONCE).unwrap();
    assert_eq!(
        keyset::statement(KEYSET_DIGEST, Some(&nonce)),
        format!(
            r#"{{"keyset_digest":"{KEYSET_DIGEST}","nonce":"{NONCE}","purpose":"aci.report_data.v1"}}"#
        )
    );
    let rd = keyset::report_data(KEYSET_DIGEST, Some(&nonce));
    assert_eq!(
        hex::encode(rd),
        "df2174d28130852b413646a3786927b93e94c11d770268b65def8bdba45cb49e"
    );
    assert_eq!(
        hex::encode(keyset::report_data_slot(&rd)),
        format!(
            "df2174d28130852b413646a3786927b93e94c11d770268b65def8bdba45cb49e{}",
            "0".repeat(64)
        )
    );
}

#[test]
fn vector_2_the_unchallenged_statement_has_a_null_nonce() {
    assert_eq!(
        keyset::statement(KEYSET_DIGEST, None),
        format!(
            r#"{{"keyset_digest":"{KEYSET_DIGEST}","nonce":null,"purpose":"aci.report_data.v1"}}"#
        )
    );
    assert_eq!(
        hex::encode(keyset::report_data(KEYSET_DIGEST, None)),
        "0633919ca3f00e97bafaa3304278eb22420cc3ff0d19f87dfca2d3f7508150bc"
    );
}

#[test]
fn report_nonces_are_exactly_64_lowercase_hex() {
    assert!(ReportNonce::parse(NONCE).is_ok());
    for bad in [
        &NONCE.to_uppercase(),
        &NONCE[..62],
        &format!("{NONCE}00"),
        &format!("0x{}", &NONCE[2..]),
        &"g".repeat(64),
    ] {
        assert!(ReportNonce::parse(bad).is_err(), "{bad}");
    }
}

fn session() -> Session {
    let unknown = || serde_json::to_value(Claim::unknown()).unwrap();
    let claims = json!({
        "extra": {"gpu_arch": "HOPPER", "tcb_status": "UpToDate"},
        "gpu_attested": unknown(), "model_weights_provenance": unknown(),
        "os_known_good": unknown(), "serving_software_known_good": unknown(),
        "tcb_up_to_date": unknown(),
        "tee_attested": Claim::asserted("hardware_proven", "example quote verified"),
    });
    Session {
        api_version: "aci/1".into(),
        upstream_name: "demo-upstream".into(),
        endpoint: Some("https://upstream.example.com".into()),
        verifier_id: "example/1".into(),
        established_at: 1_750_000_000,
        expires_at: 1_750_003_600,
        identity: None,
        channel_binding: vec![
            json!({"type": "tls_spki_sha256", "origin": "https://upstream.example.com", "spki_sha256": "d1".repeat(32)}),
        ],
        claims: claims.as_object().unwrap().clone(),
        evidence: Evidence::of("text/plain", b"example-evidence"),
    }
}

#[test]
fn vector_3_the_session_is_addressed_by_its_jcs_digest() {
    let s = session();
    assert_eq!(
        s.evidence.digest,
        "sha256:80d70e44d0ae1e829fd5f37c3ee4a60dfbea8d3aa18407ea3f34cf7ec91da34d"
    );
    assert_eq!(
        s.evidence.data.as_deref(),
        Some("data:text/plain;base64,ZXhhbXBsZS1ldmlkZW5jZQ==")
    );
    let jcs = String::from_utf8(jcs::canonical_of(&s).unwrap()).unwrap();
    assert!(jcs.starts_with(r#"{"api_version":"aci/1","channel_binding":[{"origin":"https://upstream.example.com","spki_sha256":"d1d1"#), "{jcs}");
    assert!(
        jcs.ends_with(
            r#""expires_at":1750003600,"upstream_name":"demo-upstream","verifier_id":"example/1"}"#
        ),
        "{jcs}"
    );
    assert_eq!(s.id().unwrap(), SESSION_ID);
}

fn vector_receipt() -> Receipt {
    let request = br#"{"messages":[{"content":"hi","role":"user"}],"model":"demo-model"}"#;
    let response = br#"{"choices":[],"id":"chatcmpl-123"}"#;
    Receipt {
        api_version: "aci/1".into(),
        receipt_id: "rcpt-0001".into(),
        chat_id: Some("chatcmpl-123".into()),
        model: Some("demo-model".into()),
        workload_keyset_digest: KEYSET_DIGEST.into(),
        endpoint: "/v1/chat/completions".into(),
        method: "POST".into(),
        served_at: 1_750_000_000,
        event_log: vec![
            receipt::body_event("request.received", request),
            receipt::body_event("request.forwarded", request),
            json!({"type": "upstream.verified", "result": "verified", "required": true, "model_id": "demo-model", "session_id": SESSION_ID}),
            receipt::body_event("response.returned", response),
        ],
        key_id: String::new(),
        signature: String::new(),
    }
}

#[test]
fn vector_4_body_hashes() {
    let r = vector_receipt();
    assert_eq!(
        r.event_log[0]["body_hash"],
        "sha256:94d809bf47380d8a2eab0eb6e126d4dda9364b0b4725cdf7ead52dd70b2aa87b"
    );
    assert_eq!(
        r.event_log[3]["body_hash"],
        "sha256:dedfffe5b14d031b8e2c01996d021a15293cb7c63b56be7e4be9e89b6f0a5f61"
    );
}

#[test]
fn vector_4_the_receipt_signs_to_the_published_signature() {
    let signed = receipt_key().sign(vector_receipt()).unwrap();
    let doc = serde_json::to_value(&signed).unwrap();
    let input = receipt::signing_input(&doc).unwrap();
    assert_eq!(
        sha256_hex(&input),
        "1bd328e6880a5a12b3915af95ea32111310e04ab9e21ac3d71ce268e33b965c9"
    );
    assert_eq!(signed.signature, SIGNATURE);
    let served = String::from_utf8(jcs::canonical(&doc).unwrap()).unwrap();
    assert!(served.contains(&format!(
        r#""served_at":1750000000,"signature":"{SIGNATURE}","workload"#
    )));
    assert_eq!(receipt::verify(&doc, &keyset()).unwrap(), signed);
}

#[test]
fn vector_4_a_tampered_or_foreign_receipt_is_refused() {
    let doc = serde_json::to_value(receipt_key().sign(vector_receipt()).unwrap()).unwrap();
    let mut tampered = doc.clone();
    tampered["event_log"][3]["body_hash"] = json!(format!("sha256:{}", "00".repeat(32)));
    assert!(matches!(
        receipt::verify(&tampered, &keyset()),
        Err(receipt::ReceiptError::BadSignature(_))
    ));
    let mut other = keyset();
    other.not_after += 1;
    assert!(matches!(
        receipt::verify(&doc, &other),
        Err(receipt::ReceiptError::Keyset { .. })
    ));
    let mut renamed = doc.clone();
    renamed["key_id"] = json!("receipt-2");
    assert!(matches!(
        receipt::verify(&renamed, &keyset()),
        Err(receipt::ReceiptError::UnknownKey(_))
    ));
    let mut version = doc;
    version["api_version"] = json!("aci/2");
    assert!(matches!(
        receipt::verify(&version, &keyset()),
        Err(receipt::ReceiptError::Version(_))
    ));
}

fn ctx() -> Context {
    Context {
        algo: e2ee::X25519_SUITE.into(),
        model: "demo-model".into(),
        nonce: NONCE.into(),
        ts: 1_750_000_000,
    }
}

#[test]
fn e2ee_vector_request_field_aad() {
    assert_eq!(
        String::from_utf8(ctx().request_aad("messages.0.content")).unwrap(),
        r#"{"algo":"x25519-aes-256-gcm-hkdf-sha256","field":"messages.0.content","model":"demo-model","nonce":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f","purpose":"aci.e2ee.request.v2","ts":1750000000}"#
    );
}

#[test]
fn e2ee_vector_response_field_aad() {
    assert_eq!(
        String::from_utf8(ctx().response_aad("chatcmpl-123", "choices.0.message.content")).unwrap(),
        r#"{"algo":"x25519-aes-256-gcm-hkdf-sha256","field":"choices.0.message.content","id":"chatcmpl-123","model":"demo-model","nonce":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f","purpose":"aci.e2ee.response.v2","ts":1750000000}"#
    );
}

/// Made by tests/independent/e2ee-vectors.mjs: "hi" sealed to the service
/// key (seed 3) with ephemeral seed 5 and nonce 6…6.
const NODE_REQUEST_FIELD: &str = "50a61409b1ddd0325e9b16b700e719e9772c07000b1bd7786e907c653d20495d060606060606060606060606b4c525eea88ef7e3ef8580790bf7e4b04a95";
/// "Hello!" sealed to the client key (seed 4) with ephemeral seed 7 and nonce 8…8.
const NODE_RESPONSE_FIELD: &str = "13be4feaeaf204c7fd3358fc9c00721881d174278128227ec674f37f7fe97b6d08080808080808080808080876453ac4b2d91d291c1d149e57fb0fbadb967c29eca6";

#[test]
fn e2ee_fields_sealed_by_an_independent_implementation_open_and_reseal_identically() {
    let aad = ctx().request_aad("messages.0.content");
    assert_eq!(e2ee_key().open(NODE_REQUEST_FIELD, &aad).unwrap(), b"hi");
    let sealed = e2ee::seal_with(&e2ee_key().public(), b"hi", &aad, [5; 32], [6; 12]).unwrap();
    assert_eq!(sealed, NODE_REQUEST_FIELD);
    let client = ServiceKey::from_seed("client", [4; 32]);
    let aad = ctx().response_aad("chatcmpl-123", "choices.0.message.content");
    assert_eq!(client.open(NODE_RESPONSE_FIELD, &aad).unwrap(), b"Hello!");
    assert_eq!(
        e2ee::seal_with(&client.public(), b"Hello!", &aad, [7; 32], [8; 12]).unwrap(),
        NODE_RESPONSE_FIELD
    );
    // The same ciphertext under another field's associated data fails.
    let moved = ctx().request_aad("messages.1.content");
    assert!(matches!(
        e2ee_key().open(NODE_REQUEST_FIELD, &moved),
        Err(e2ee::E2eeError::DecryptionFailed(_))
    ));
}

#[test]
fn a_whole_request_round_trips_and_structured_content_is_restored() {
    let mut body = json!({"model": "demo-model", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ], "max_tokens": 5});
    let original = serde_json::to_vec(&body).unwrap();
    let n = e2ee::seal_fields(
        &mut body,
        Endpoint::Chat,
        Direction::Request,
        &ctx(),
        &e2ee_key().public(),
        "",
    )
    .unwrap();
    assert_eq!(n, 2);
    assert!(!body.to_string().contains("be brief"));
    let opened = e2ee::open_fields(
        &mut body,
        Endpoint::Chat,
        Direction::Request,
        &ctx(),
        "",
        &|f, aad| e2ee_key().open(f, aad),
    )
    .unwrap();
    assert_eq!(opened, 2);
    assert_eq!(
        serde_json::to_vec(&body).unwrap(),
        original,
        "members keep their order"
    );
}
