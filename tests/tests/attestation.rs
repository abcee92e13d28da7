//! Mutual RA-TLS on every hop, with the sim TEE: what the client reports it
//! verified, and peers refused for running an image the policy does not allow.

use std::time::{Duration, Instant};

use cocoon_e2e::*;
use serde_json::Value;

const MODEL: &str = "test-model";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_name_the_verified_proxy_and_worker_images() {
    let up = upstream(UpstreamBehaviour {
        chunks: 2,
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;
    let image = net.tee.image_hash();

    let (status, headers, body) = post_json(&net.chat_url(), &chat_body(MODEL, false)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["x-cocoon-proxy-tee"], "sim");
    assert_eq!(headers["x-cocoon-proxy-image-hash"], image.as_str());
    assert_eq!(headers["x-cocoon-worker-tee"], "sim");
    assert_eq!(headers["x-cocoon-worker-image-hash"], image.as_str());
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["cocoon"]["worker_image_hash"], image.as_str());

    let (status, _, body) = get(&format!("{}/v1/cocoon/attestation", net.api)).await;
    assert_eq!(status, 200);
    let a: Value = serde_json::from_slice(&body).unwrap();
    let proxy = &a["proxy"]["evidence"];
    assert_eq!(proxy["role"], "proxy");
    assert_eq!(proxy["tee"], "sim");
    assert_eq!(proxy["image_hash"], image.as_str());
    assert_eq!(proxy["tcb_status"], "UpToDate");
    assert_eq!(proxy["measurements"]["mrtd"].as_str().unwrap().len(), 96);
    assert_eq!(a["workers"][0]["worker"], "w1");
    assert_eq!(a["workers"][0]["image_hash"], image.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_running_an_image_the_policy_does_not_allow_takes_no_requests() {
    let up = upstream(UpstreamBehaviour::default()).await;
    let mut net = Network::start().await;
    let mut rogue = WorkerSpec::new("rogue", "rogue-model", &up);
    rogue.sim_mrtd = Some("ab".repeat(48));
    net.spawn_worker(rogue);

    // The proxy refuses the handshake, says why in its stats, and never
    // lists the worker's model.
    let deadline = Instant::now() + Duration::from_secs(20);
    let stats = loop {
        let (_, _, body) = get(&format!("{}/jsonstats", net.proxy_http)).await;
        let s: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if s["peers_refused"]["image_hash"].as_u64().unwrap_or(0) >= 1 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the rogue worker was not refused: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let why = stats["info"]["last_peer_refusal"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("is not allowed for role worker") && why.contains(&net.tee.image_hash()),
        "{why}"
    );
    assert_eq!(net.worker_count("rogue-model").await, 0);
    let (status, _, body) = post_json(&net.chat_url(), &chat_body("rogue-model", false)).await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert!(
        net.proxy.log().contains("image hash"),
        "the proxy's log says why:\n{}",
        net.proxy.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_refuses_a_proxy_its_policy_does_not_allow() {
    let up = upstream(UpstreamBehaviour::default()).await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;
    // A second client whose policy allows only another image.
    let strict = net.tee.dir.join("strict.toml");
    let text = std::fs::read_to_string(&net.tee.policy)
        .unwrap()
        .replace(&net.tee.image_hash(), &"cd".repeat(32));
    std::fs::write(&strict, text).unwrap();
    let port = free_port();
    let mut args: Vec<String> = [
        "client",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--proxy",
        &net.proxy_addr,
    ]
    .map(String::from)
    .to_vec();
    args.extend(net.tee.args());
    let i = args.iter().position(|a| a == "--peer-policy").unwrap();
    args[i + 1] = strict.display().to_string();
    let client = Proc::cocoon("strict-client", &args);
    let api = format!("http://127.0.0.1:{port}");
    wait_ok(&format!("{api}/healthz")).await;
    let (status, _, body) = post_json(
        &format!("{api}/v1/chat/completions"),
        &chat_body(MODEL, false),
    )
    .await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("proxy_unavailable"));
    let (_, _, body) = get(&format!("{api}/jsonstats")).await;
    let s: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        s["peers_refused"]["image_hash"].as_u64().unwrap_or(0) >= 1,
        "{s}"
    );
    drop(client);
}

/// An auditor takes the running proxy's certificate with an independent
/// TLS stack (the `openssl` tool) and checks it with `cocoon attest verify`;
/// OpenSSL parsing it also checks the certificate's DER.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_verifies_the_running_proxys_certificate() {
    let net = Network::start().await;
    let der = net.tee.dir.join("proxy.der");
    let script = format!(
        "openssl s_client -connect {} -alpn h2 </dev/null 2>/dev/null | openssl x509 -outform der > {}",
        net.proxy_addr,
        der.display()
    );
    let status = std::process::Command::new("sh")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success() && std::fs::metadata(&der).unwrap().len() > 0);
    let policy = std::fs::read_to_string(&net.tee.policy).unwrap();
    let root = policy
        .lines()
        .find(|l| l.starts_with("sim_roots"))
        .and_then(|l| l.split('"').nth(1))
        .unwrap()
        .to_string();
    let out = std::process::Command::new(bin_dir().join("cocoon"))
        .args(["attest", "verify", "--json", "--cert"])
        .arg(&der)
        .args(["--sim-root", &root, "--policy"])
        .arg(&net.tee.policy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["role"], "proxy");
    assert_eq!(v["kind"], "sim");
    assert_eq!(v["image_hash"], net.tee.image_hash().as_str());
    assert_eq!(v["verified"], true);
}
