//! Requests sealed end to end from the client to the workers it verified:
//! the proxy routes, meters and settles them on ciphertext only. A test
//! build of the proxy (the `relay-record` feature, on for this package)
//! records every message it relays; a sealed request, whole or streamed,
//! leaves neither its prompt nor its answer in that record, while the same
//! request sent in the clear does (so the record is real).

use cocoon_e2e::*;
use serde_json::{json, Value};

const MODEL: &str = "test-model";
const MARKER: &str = "MARKER-c0c0a-7f3a";

fn record() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cocoon-relay-record-{}.bin", std::process::id()))
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn body(stream: bool, e2e: &str) -> Value {
    json!({"model": MODEL, "stream": stream, "max_tokens": 8,
        "messages": [{"role": "user", "content": format!("remember {MARKER}")}],
        "cocoon": {"e2e": e2e}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_relays_only_ciphertext_of_a_sealed_request() {
    let path = record();
    let _ = std::fs::remove_file(&path);
    // Inherited by the processes the network starts; only the proxy records.
    std::env::set_var("COCOON_RELAY_RECORD", &path);
    let up = upstream(UpstreamBehaviour {
        chunks: 4,
        chunk_size: 10,
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;

    let (status, headers, whole) = post_json(&net.chat_url(), &body(false, "required")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&whole));
    assert_eq!(headers["x-cocoon-e2e"], "sealed");
    let whole: Value = serde_json::from_slice(&whole).unwrap();
    let text = whole["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(whole["cocoon"]["receipt_status"], "verified", "{whole}");
    assert!(whole["cocoon"]["salt"].is_string(), "{whole}");
    let mut sse = SseReader::open(&net.chat_url(), &body(true, "required"), &[]).await;
    assert_eq!(sse.status, 200);
    let events = sse.rest().await;
    let streamed: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(streamed, text, "the same answer, streamed");

    let sealed = std::fs::read(&path).unwrap_or_default();
    assert!(!sealed.is_empty(), "the proxy recorded nothing: it must be a test build (relay-record), as `cargo nextest run --workspace` builds it");
    assert!(
        !contains(&sealed, MARKER),
        "the prompt's marker crossed the proxy in the clear"
    );
    for piece in text
        .as_bytes()
        .chunks(10)
        .map(|c| String::from_utf8_lossy(c).into_owned())
    {
        assert!(
            !contains(&sealed, &piece),
            "the answer's {piece:?} crossed the proxy in the clear"
        );
    }
    // The same request in the clear is in the record: the record is real.
    let (status, headers, _) = post_json(&net.chat_url(), &body(false, "off")).await;
    assert_eq!(status, 200);
    assert!(headers.get("x-cocoon-e2e").is_none());
    let all = std::fs::read(&path).unwrap();
    assert!(contains(&all[sealed.len()..], MARKER));
    assert!(contains(&all[sealed.len()..], &text[..10]));
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_answers_verify_offline_and_replicas_agree_through_their_salted_digests() {
    let up = upstream(UpstreamBehaviour {
        chunks: 3,
        chunk_size: 8,
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    for w in ["w1", "w2", "w3"] {
        net.add_worker(WorkerSpec::new(w, MODEL, &up)).await;
    }
    let mut b = body(false, "required");
    b["temperature"] = json!(0);
    b["cocoon"]["replicas"] = json!(3);
    let (status, headers, answer) = post_json(&net.chat_url(), &b).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(headers["x-cocoon-e2e"], "sealed");
    let v: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(
        v["cocoon"]["replication"]["agreed"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "{v}"
    );
    // Saved, the answer verifies offline with the salt it carries, and not
    // without it.
    let dir = tempfile_dir();
    let file = dir.join("answer.json");
    std::fs::write(&file, &answer).unwrap();
    let verify = |file: &std::path::Path| {
        let policy = net.tee.policy.display().to_string();
        cocoon_once(&[
            "receipt",
            "verify",
            &file.display().to_string(),
            "--policy",
            &policy,
            "--dev",
        ])
    };
    let out = verify(&file);
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.contains("VERIFIED") && !said.contains("NOT VERIFIED"),
        "{said}"
    );
    let mut unsalted = v.clone();
    unsalted["cocoon"].as_object_mut().unwrap().remove("salt");
    std::fs::write(&file, serde_json::to_vec(&unsalted).unwrap()).unwrap();
    let out = verify(&file);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cocoon-sealed-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_e2e_control_is_refused() {
    let up = upstream(UpstreamBehaviour::default()).await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;
    let (status, _, body) = post_json(&net.chat_url(), &body(false, "sometimes")).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("cocoon.e2e"));
}
