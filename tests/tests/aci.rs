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
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("aci/aci-client.mjs");
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&net.api)
        .arg(MODEL)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("the ACI client finishes within 60 s")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        net.client.log()
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
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
