//! Idempotent requests end to end: a retry with the same `Idempotency-Key`
//! and body gets the first answer again (replayed from the proxy's record,
//! not run again) and is charged once, sealed end to end or in the clear,
//! whole or streamed, also through a restarted client; the same key with
//! another body, or while the first still runs, is a 409 that moves no
//! balance; a request that failed, or whose app hung up, is run anew.

use std::time::Duration;

use cocoon_e2e::*;
use serde_json::{json, Value};

const MODEL: &str = "test-model";
const KEY: &str = "idempotency-key";

async fn spent(net: &Network) -> u64 {
    let (status, _, body) = get(&format!("{}/v1/cocoon/balance", net.api)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let b: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(b["reserved"], 0, "nothing stays reserved: {b}");
    b["spent"].as_u64().unwrap()
}

fn upstream_requests(up: &TestUpstream) -> u64 {
    up.counters
        .requests
        .load(std::sync::atomic::Ordering::SeqCst)
}

fn ask(max_tokens: u64) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens})
}

/// The answer's text and its receipt's signature: a replay has both, byte
/// for byte.
fn whole(body: &[u8]) -> (String, String) {
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(body)));
    (
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string(),
        v["cocoon"]["receipt"]["signature"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

/// A streamed answer's text, from its SSE events.
async fn streamed(
    net: &Network,
    body: &Value,
    headers: &[(&str, &str)],
) -> (String, http::HeaderMap) {
    let mut sse = SseReader::open(&net.chat_url(), body, headers).await;
    assert_eq!(sse.status, 200);
    let mut text = String::new();
    for event in sse.rest().await {
        if event == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(&event).unwrap();
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
    }
    (text, sse.headers.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_is_answered_from_the_record_and_charged_once() {
    let up = upstream(UpstreamBehaviour::default()).await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;

    for (case, e2e) in [("sealed", "required"), ("clear", "off")] {
        let key = format!("order-{case}");
        let headers = [(KEY, key.as_str()), ("x-cocoon-e2e", e2e)];
        let body = ask(40).to_string();
        let before = (spent(&net).await, upstream_requests(&up));
        let (status, first_headers, first) = post(&net.chat_url(), body.clone(), &headers).await;
        assert_eq!(status, 200, "{case}: {}", String::from_utf8_lossy(&first));
        assert!(first_headers.get("idempotent-replayed").is_none());
        let charged = spent(&net).await - before.0;
        assert!(charged > 0, "{case}: the first answer is charged");
        assert_eq!(upstream_requests(&up), before.1 + 1);

        let (status, again_headers, again) = post(&net.chat_url(), body.clone(), &headers).await;
        assert_eq!(status, 200, "{case}: {}", String::from_utf8_lossy(&again));
        assert_eq!(again_headers["idempotent-replayed"], "true", "{case}");
        assert_eq!(
            whole(&again),
            whole(&first),
            "{case}: the same answer, receipt and all"
        );
        assert_eq!(
            again_headers["x-request-id"], first_headers["x-request-id"],
            "{case}: one request id for every retry"
        );
        assert_eq!(
            spent(&net).await - before.0,
            charged,
            "{case}: charged once"
        );
        assert_eq!(
            upstream_requests(&up),
            before.1 + 1,
            "{case}: not run again"
        );
        if e2e == "required" {
            assert_eq!(again_headers["x-cocoon-e2e"], "sealed");
        }

        // The same key for another request: refused, nothing moves.
        let (status, _, refused) = post(&net.chat_url(), ask(41).to_string(), &headers).await;
        assert_eq!(status, 409, "{case}: {}", String::from_utf8_lossy(&refused));
        let e: Value = serde_json::from_slice(&refused).unwrap();
        assert_eq!(e["error"]["code"], "idempotency_key_reused");
        assert_eq!(spent(&net).await - before.0, charged);
        assert_eq!(upstream_requests(&up), before.1 + 1);
    }

    // Streamed: the replay streams the same text.
    let headers = [(KEY, "order-stream")];
    let mut body = ask(30);
    body["stream"] = json!(true);
    let before = spent(&net).await;
    let (first, h1) = streamed(&net, &body, &headers).await;
    let charged = spent(&net).await - before;
    let (again, h2) = streamed(&net, &body, &headers).await;
    assert!(!first.is_empty());
    assert_eq!(again, first);
    assert!(h1.get("idempotent-replayed").is_none());
    assert_eq!(h2["idempotent-replayed"], "true");
    assert_eq!(
        spent(&net).await - before,
        charged,
        "a streamed retry is free too"
    );

    // A restarted client keeps its secret: its retry still matches.
    net.client.kill();
    let args = net_client_args(&net);
    net.client = Proc::cocoon("client", &args);
    wait_ok(&format!("{}/healthz", net.api)).await;
    let before = (spent(&net).await, upstream_requests(&up));
    let headers = [(KEY, "order-clear"), ("x-cocoon-e2e", "off")];
    let (status, h, _) = post(&net.chat_url(), ask(40).to_string(), &headers).await;
    assert_eq!(status, 200);
    assert_eq!(h["idempotent-replayed"], "true", "replayed after a restart");
    assert_eq!((spent(&net).await, upstream_requests(&up)), before);
}

/// The client's command line, to start it again as it was.
fn net_client_args(net: &Network) -> Vec<String> {
    let port = net.api.rsplit(':').next().unwrap().to_string();
    let mut args: Vec<String> = vec![
        "client".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--proxy".into(),
        net.proxy_addr.clone(),
        "--dev-deposit".into(),
        CLIENT_DEV_DEPOSIT.to_string(),
    ];
    args.extend(net.tee.args());
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_use_bad_keys_and_failed_requests() {
    let up = upstream(UpstreamBehaviour {
        chunks: 20,
        delay: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;

    // While the first runs, a retry is told to wait: 409, nothing runs twice.
    let mut body = ask(20);
    body["stream"] = json!(true);
    let headers = [(KEY, "slow-1")];
    let mut first = SseReader::open(&net.chat_url(), &body, &headers).await;
    assert_eq!(first.status, 200);
    assert!(first.next().await.is_some());
    let (status, _, refused) = post(&net.chat_url(), body.to_string(), &headers).await;
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&refused));
    let e: Value = serde_json::from_slice(&refused).unwrap();
    assert_eq!(e["error"]["code"], "idempotency_key_in_use");
    first.rest().await;
    let (status, h, _) = post(&net.chat_url(), body.to_string(), &headers).await;
    assert_eq!(status, 200);
    assert_eq!(h["idempotent-replayed"], "true", "once done, replayed");
    assert_eq!(upstream_requests(&up), 1);

    // An app that hangs up mid-answer frees its key once the proxy has
    // cancelled the run: the retry runs anew (never 409 for good).
    let headers = [(KEY, "hung-up-1")];
    let mut gone = SseReader::open(&net.chat_url(), &body, &headers).await;
    assert!(gone.next().await.is_some());
    drop(gone);
    let mut retried = None;
    for _ in 0..50 {
        let (status, h, _) = post(&net.chat_url(), body.to_string(), &headers).await;
        if status != 409 {
            retried = Some((status, h));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, h) = retried.expect("the key is free within 5 s of the hang-up");
    assert_eq!(status, 200);
    assert!(
        h.get("idempotent-replayed").is_none(),
        "a cut-off answer is run anew"
    );
    assert_eq!(upstream_requests(&up), 3);

    // Malformed keys.
    for (bad, why) in [("k".repeat(256), "too long"), (String::new(), "empty")] {
        let (status, _, body) =
            post(&net.chat_url(), ask(5).to_string(), &[(KEY, bad.as_str())]).await;
        assert_eq!(status, 400, "{why}: {}", String::from_utf8_lossy(&body));
        let e: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(e["error"]["code"], "invalid_idempotency_key", "{why}");
    }

    // A request the engine refused is not kept: its retry runs again, and
    // neither is charged.
    let before = spent(&net).await;
    let mut rejected = ask(5);
    rejected["user"] = json!("reject");
    let headers = [(KEY, "rejected-1")];
    for attempt in 0..2 {
        let (status, h, _) = post(&net.chat_url(), rejected.to_string(), &headers).await;
        assert_eq!(status, 400, "attempt {attempt}");
        assert!(h.get("idempotent-replayed").is_none());
    }
    assert_eq!(upstream_requests(&up), 5, "both attempts ran");
    assert_eq!(spent(&net).await, before, "refusals cost nothing");
}

/// A key's spending after `cocoon client keys list`.
fn key_spent(net: &Network, id: &str) -> u64 {
    let listed = cocoon_json(&["client", "keys", "list", "--api", &net.api]);
    listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap()["spent_nanoton"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_costs_the_api_key_nothing_and_keys_do_not_share_records() {
    let up = upstream(UpstreamBehaviour::default()).await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;
    let make = |name: &str| {
        let k = cocoon_json(&[
            "client",
            "keys",
            "create",
            "--api",
            &net.api,
            "--name",
            name,
            "--budget",
            "100000000",
        ]);
        (
            k["id"].as_str().unwrap().to_string(),
            format!("Bearer {}", k["secret"].as_str().unwrap()),
        )
    };
    let (a_id, a_auth) = make("app-a");
    let (b_id, b_auth) = make("app-b");
    let body = ask(20).to_string();
    let send = |auth: String| {
        let url = net.chat_url();
        let body = body.clone();
        async move { post(&url, body, &[("authorization", &auth), (KEY, "shared-key")]).await }
    };

    let (status, h, first) = send(a_auth.clone()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&first));
    assert!(h.get("idempotent-replayed").is_none());
    let a_spent = key_spent(&net, &a_id);
    assert!(a_spent > 0);

    let (status, h, _) = send(a_auth.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(h["idempotent-replayed"], "true");
    assert_eq!(
        key_spent(&net, &a_id),
        a_spent,
        "the replay is not counted against the key"
    );

    // The same key from another app is another request: run and charged.
    let (status, h, _) = send(b_auth).await;
    assert_eq!(status, 200);
    assert!(
        h.get("idempotent-replayed").is_none(),
        "keys do not share records"
    );
    assert!(key_spent(&net, &b_id) > 0);
    assert_eq!(upstream_requests(&up), 2);
}
