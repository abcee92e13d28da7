//! The client as an ACI service, checked by a client written from the ACI
//! specification alone (tests/aci/aci-client.mjs, Node's own crypto): it
//! binds its nonce into the attestation, encrypts chat requests with E2EE
//! v2, decrypts the answers, verifies their receipts and the attested
//! sessions they cite, and has each refusal the spec defines made, none of
//! which reaches a worker or costs anything.

use std::sync::atomic::Ordering;

use cocoon_e2e::*;
use serde_json::Value;

const MODEL: &str = "test-model";

/// Runs the independent ACI client against `api` (`model`, or the first
/// one served); its report, or a panic with what it printed.
async fn aci_client(api: &str, model: Option<&str>, log: impl Fn() -> String) -> Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("aci/aci-client.mjs");
    let mut command = tokio::process::Command::new("node");
    command.arg(&script).arg(api).args(model).kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), command.output())
        .await
        .expect("the ACI client finishes within 120 s")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

async fn spent(net: &Network) -> u64 {
    let (_, _, body) = get(&format!("{}/v1/cocoon/balance", net.api)).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["spent"]
        .as_u64()
        .unwrap_or_else(|| panic!("no spent in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_aci_client_verifies_encrypts_and_is_refused_as_specified() {
    let up = upstream(UpstreamBehaviour {
        chunks: 3,
        chunk_size: 8,
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;
    let before = spent(&net).await;
    let report = aci_client(&net.api, Some(MODEL), || net.client.log()).await;
    assert_eq!(report["tee_type"], "cocoon-sim", "{report}");
    // The answers decrypted to what the worker's engine said.
    assert!(!report["whole"].as_str().unwrap().is_empty(), "{report}");
    assert!(!report["streamed"].as_str().unwrap().is_empty(), "{report}");
    for r in report["receipts"].as_array().unwrap() {
        assert_eq!(r["upstream"], "verified", "{report}");
        assert_eq!(r["required"], true);
        // The session is the worker's: sim evidence is refuted, and the
        // worker's end-to-end key is bound.
        assert_eq!(r["session"]["tee_attested"], "refuted", "{report}");
        let bindings = r["session"]["bindings"].to_string();
        assert!(bindings.contains("e2ee_public_key_sha256"), "{bindings}");
        assert_eq!(r["served"]["worker"], "w1");
        assert_eq!(r["sealed_to_worker"], true, "{report}");
    }
    assert_eq!(report["refusals"].as_array().unwrap().len(), 6);
    // Only the two answered requests reached the worker, and only they cost.
    assert_eq!(up.counters.requests.load(Ordering::Relaxed), 2);
    let costs: u64 = report["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["served"]["cost_nanoton"].as_u64().unwrap())
        .sum();
    assert!(costs > 0, "{report}");
    assert_eq!(spent(&net).await - before, costs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_answer_carries_aci_headers_and_a_receipt_over_its_exact_bytes() {
    let up = upstream(UpstreamBehaviour::default()).await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;
    let body = chat_body(MODEL, false);
    let (status, headers, answer) = post_json(&net.chat_url(), &body).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-aci-version"], "aci/1");
    let digest = headers["x-aci-keyset-digest"].to_str().unwrap().to_owned();
    let id = headers["x-receipt-id"].to_str().unwrap().to_owned();
    let (status, _, receipt) = get(&format!("{}/v1/aci/receipts/{id}", net.api)).await;
    assert_eq!(status, 200);
    let receipt: Value = serde_json::from_slice(&receipt).unwrap();
    assert_eq!(receipt["workload_keyset_digest"], digest.as_str());
    let returned = &receipt["event_log"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "response.returned")
        .unwrap()["body_hash"];
    use sha2::Digest;
    assert_eq!(
        returned,
        &format!("sha256:{}", hex::encode(sha2::Sha256::digest(&answer)))
    );
    let received = &receipt["event_log"][0]["body_hash"];
    assert_eq!(
        received,
        &format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(serde_json::to_vec(&body).unwrap()))
        )
    );
    // Errors carry the ACI headers too; unknown receipts are not found.
    let (status, headers, _) = get(&format!("{}/v1/aci/receipts/rcpt-nope", net.api)).await;
    assert_eq!(status, 404);
    assert_eq!(headers["x-aci-version"], "aci/1");
    let (status, _, body) = get(&format!("{}/v1/aci/attestation?nonce=ABC", net.api)).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
}

/// The whole path on `cocoon up` with the real model: the
/// independent client checks the report, sends sealed requests, decrypts
/// the answers and verifies their receipts; the client seals them on to
/// the embedded worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cocoon_up_an_independent_aci_client_gets_private_verified_answers() {
    ensure_default_model();
    let api = free_port();
    let data_dir = std::env::temp_dir().join(format!("cocoon-aci-up-{}", std::process::id()));
    let up = Proc::cocoon("up-aci", &up_embedded_args(&data_dir, api));
    let base = format!("http://127.0.0.1:{api}");
    wait_ok(&format!("{base}/healthz")).await;
    up.wait_for_log("Press Ctrl-C", 120).await;
    let report = aci_client(&base, None, || up.log()).await;
    for r in report["receipts"].as_array().unwrap() {
        assert_eq!(r["upstream"], "verified", "{report}");
        assert_eq!(r["sealed_to_worker"], true, "{report}");
    }
    assert!(
        !report["whole"].as_str().unwrap().trim().is_empty(),
        "{report}"
    );
    drop(up);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// ACI §5.3: pinned sessions are served by their workers alone, or refused
/// before anything is forwarded; malformed constraints are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_sessions_are_honoured_or_refused_before_forwarding() {
    let up = upstream(UpstreamBehaviour::default()).await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;
    let (status, _, _) = post_json(&net.chat_url(), &chat_body(MODEL, false)).await;
    assert_eq!(status, 200);
    let (_, _, list) = get(&format!("{}/v1/aci/sessions?model={MODEL}", net.api)).await;
    let list: Value = serde_json::from_slice(&list).unwrap();
    let session = list["sessions"][0]["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        list["sessions"][0]["evidence"]["data"].is_null(),
        "list entries are abbreviated"
    );

    let mut body = chat_body(MODEL, false);
    body["provider"] = serde_json::json!({"aci_session_ids": [session], "order": ["ignored"]});
    let (status, headers, answer) = post_json(&net.chat_url(), &body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(headers["x-cocoon-e2e"], "sealed");
    let id = headers["x-receipt-id"].to_str().unwrap().to_owned();
    let (_, _, receipt) = get(&format!("{}/v1/aci/receipts/{id}", net.api)).await;
    let receipt: Value = serde_json::from_slice(&receipt).unwrap();
    let cited = receipt["event_log"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "upstream.verified")
        .unwrap();
    assert_eq!(cited["session_id"], session.as_str(), "{receipt}");

    let served = up.counters.requests.load(Ordering::Relaxed);
    let cases = [
        (
            serde_json::json!({"aci_session_ids": ["00".repeat(32)]}),
            412,
            "session_not_accepted",
        ),
        (
            serde_json::json!({"aci_unknown": true}),
            400,
            "invalid_request_error",
        ),
        (
            serde_json::json!({"aci_verified": false, "aci_session_ids": [session]}),
            400,
            "invalid_request_error",
        ),
        (
            serde_json::json!({"aci_session_ids": []}),
            400,
            "invalid_request_error",
        ),
        (
            serde_json::json!({"aci_session_ids": ["ABC"]}),
            400,
            "invalid_request_error",
        ),
    ];
    for (provider, status, kind) in cases {
        let mut body = chat_body(MODEL, false);
        body["provider"] = provider.clone();
        let (got, _, answer) = post_json(&net.chat_url(), &body).await;
        let v: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(
            (got, v["error"]["type"].as_str().unwrap()),
            (status, kind),
            "{provider}: {v}"
        );
    }
    assert_eq!(
        up.counters.requests.load(Ordering::Relaxed),
        served,
        "no refused request reached the worker"
    );
}
