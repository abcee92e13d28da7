//! Answers travel app → client → proxy → worker → engine and back intact,
//! streamed and not, for both endpoints, with usage and request ids.

use std::sync::atomic::Ordering;

use cocoon_e2e::*;
use serde_json::{json, Value};

const MODEL: &str = "test-model";

async fn one_worker_network(behaviour: UpstreamBehaviour) -> (Network, TestUpstream) {
    let up = upstream(behaviour).await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;
    (net, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chat_arrives_complete_with_usage_and_done() {
    let (net, up) = one_worker_network(UpstreamBehaviour {
        chunks: 5,
        chunk_size: 32,
        ..Default::default()
    })
    .await;
    let mut body = chat_body(MODEL, true);
    body["stream_options"] = json!({"include_usage": true});
    let mut sse = SseReader::open(&net.chat_url(), &body, &[]).await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.headers["content-type"], "text/event-stream");
    assert!(sse.headers.contains_key("x-request-id"));
    assert_eq!(sse.headers["x-cocoon-worker"], "w1");
    let events = sse.rest().await;
    assert_eq!(events.len(), 5 + 2, "5 chunks, usage, [DONE]: {events:?}");
    let mut text = String::new();
    for (i, e) in events[..5].iter().enumerate() {
        let v: Value = serde_json::from_str(e).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        let piece = v["choices"][0]["delta"]["content"].as_str().unwrap();
        assert_eq!(piece.len(), 32);
        assert!(piece.starts_with(&format!("[{i:04}]")), "chunks in order");
        text.push_str(piece);
    }
    let usage: Value = serde_json::from_str(&events[5]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    assert_eq!(
        usage["usage"]["total_tokens"],
        usage["usage"]["prompt_tokens"].as_u64().unwrap() + 5
    );
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(
        usage["id"], first["id"],
        "usage chunk continues the same completion"
    );
    assert_eq!(events[6], "[DONE]");
    assert_eq!(
        up.counters.asked_usage.load(Ordering::SeqCst),
        1,
        "the worker asks the engine for usage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_chunk_only_when_asked_for() {
    let (net, up) = one_worker_network(UpstreamBehaviour {
        chunks: 3,
        chunk_size: 8,
        ..Default::default()
    })
    .await;
    let mut sse = SseReader::open(&net.chat_url(), &chat_body(MODEL, true), &[]).await;
    let events = sse.rest().await;
    assert_eq!(
        events.len(),
        5,
        "3 chunks, the closing chunk with the receipt, [DONE]; no usage chunk: {events:?}"
    );
    for e in &events[..4] {
        let v: Value = serde_json::from_str(e).unwrap();
        assert!(v["usage"].is_null(), "no usage member: {e}");
    }
    let closing: Value = serde_json::from_str(&events[3]).unwrap();
    assert_eq!(closing["choices"], json!([]));
    assert_eq!(closing["cocoon"]["worker"], "w1");
    assert!(
        closing["cocoon"]["receipt"]["signature"].is_string(),
        "{closing}"
    );
    // The engine was still asked for usage: the network meters every answer.
    assert_eq!(up.counters.asked_usage.load(Ordering::SeqCst), 1);
    let (_, _, stats) = get(&format!("{}/jsonstats", net.api)).await;
    let stats: Value = serde_json::from_slice(&stats).unwrap();
    assert_eq!(stats["tokens"]["completion"], 3);
    assert_eq!(stats["requests"]["succeeded"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_streamed_chat_and_legacy_completions() {
    let (net, _up) = one_worker_network(UpstreamBehaviour {
        chunks: 4,
        chunk_size: 10,
        ..Default::default()
    })
    .await;
    let (status, headers, body) = post_json(&net.chat_url(), &chat_body(MODEL, false)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers.contains_key("x-request-id"));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], MODEL);
    assert_eq!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .len(),
        40
    );
    assert_eq!(v["usage"]["completion_tokens"], 4);

    let legacy = json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 2});
    let (status, _, body) = post_json(&format!("{}/v1/completions", net.api), &legacy).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 2);

    let mut stream = legacy.clone();
    stream["stream"] = json!(true);
    stream["stream_options"] = json!({"include_usage": true});
    let mut sse = SseReader::open(&format!("{}/v1/completions", net.api), &stream, &[]).await;
    let events = sse.rest().await;
    assert_eq!(events.len(), 4, "{events:?}");
    let usage: Value = serde_json::from_str(&events[2]).unwrap();
    assert_eq!(usage["object"], "text_completion");
    assert_eq!(usage["usage"]["completion_tokens"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_distinct_request_id() {
    let (net, _up) = one_worker_network(UpstreamBehaviour {
        chunks: 1,
        ..Default::default()
    })
    .await;
    let mut ids = std::collections::HashSet::new();
    for url in [
        net.chat_url(),
        net.chat_url(),
        format!("{}/v1/models", net.api),
        format!("{}/v1/nowhere", net.api),
    ] {
        let (_, headers, _) = if url.ends_with("models") {
            get(&url).await
        } else {
            post_json(&url, &chat_body(MODEL, false)).await
        };
        let id = headers
            .get("x-request-id")
            .expect("x-request-id")
            .to_str()
            .unwrap()
            .to_string();
        assert!(ids.insert(id), "ids are unique");
    }
    let (status, _, body) = post(&net.chat_url(), "{", &[]).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("invalid_json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_list_reports_workers_and_coefficients() {
    let up = upstream(UpstreamBehaviour::default()).await;
    let mut net = Network::start().await;
    for (name, coef) in [("a", 900), ("b", 1500), ("c", 1100)] {
        let mut spec = WorkerSpec::new(name, MODEL, &up);
        spec.coefficient = coef;
        net.add_worker(spec).await;
    }
    net.add_worker(WorkerSpec::new("d", "other-model", &up))
        .await;
    let (status, _, body) = get(&format!("{}/v1/models", net.api)).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["object"], "list");
    let m = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == MODEL)
        .unwrap();
    assert_eq!(m["object"], "model");
    assert_eq!(m["cocoon"]["workers"], 3);
    assert_eq!(
        m["cocoon"]["coefficient"],
        json!({"min": 900, "median": 1100, "max": 1500})
    );
    assert_eq!(v["data"].as_array().unwrap().len(), 2);

    // A worker changes its price while connected; the proxy learns it.
    let (status, _, _) = post(
        &format!("{}/admin/coefficient", net.workers[1].http),
        r#"{"coefficient": 700}"#,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let mut seen = false;
    for _ in 0..100 {
        let (_, _, body) = get(&format!("{}/v1/models", net.api)).await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        let m = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == MODEL)
            .unwrap()
            .clone();
        if m["cocoon"]["coefficient"] == json!({"min": 700, "median": 900, "max": 1100}) {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(seen, "coefficient update reached the proxy");
    let (status, _, body) = post(
        &format!("{}/admin/coefficient", net.workers[1].http),
        r#"{"coefficient": 0}"#,
        &[],
    )
    .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));

    // When the last worker of a model leaves, the model leaves the list.
    net.workers[3].proc.kill();
    net.wait_workers("other-model", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_pages_on_every_node() {
    let (net, _up) = one_worker_network(UpstreamBehaviour {
        chunks: 2,
        ..Default::default()
    })
    .await;
    let (status, _, _) = post_json(&net.chat_url(), &chat_body(MODEL, false)).await;
    assert_eq!(status, 200);
    let (status, _, _) = post_json(&net.chat_url(), &chat_body("missing-model", false)).await;
    assert_eq!(status, 404);
    for base in [
        net.api.clone(),
        net.proxy_http.clone(),
        net.workers[0].http.clone(),
    ] {
        let (s, h, metrics) = get(&format!("{base}/metrics")).await;
        assert_eq!(s, 200);
        assert!(h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        let metrics = String::from_utf8_lossy(&metrics);
        assert!(
            metrics.contains("cocoon_requests_total{"),
            "{base}: {metrics}"
        );
        assert!(
            metrics.contains("kind=\"completion\"} 2"),
            "{base} counts completion tokens:\n{metrics}"
        );
        let (s, _, human) = get(&format!("{base}/stats")).await;
        assert_eq!(s, 200);
        assert!(String::from_utf8_lossy(&human).contains("requests:"));
        let (s, _, json) = get(&format!("{base}/jsonstats")).await;
        assert_eq!(s, 200);
        let v: Value = serde_json::from_slice(&json).unwrap();
        assert!(v["requests"]["total"].as_u64().unwrap() >= 1);
    }
    let (_, _, proxy) = get(&format!("{}/jsonstats", net.proxy_http)).await;
    let proxy: Value = serde_json::from_slice(&proxy).unwrap();
    // A model nobody serves is refused by the client itself: with no worker
    // to seal it to, the request never leaves it.
    assert!(proxy["errors"]["model_not_found"].is_null(), "{proxy}");
    assert_eq!(proxy["workers"][0]["id"], "w1");
    assert_eq!(proxy["workers"][0]["total"], 1);
    let (_, _, client) = get(&format!("{}/jsonstats", net.api)).await;
    let client: Value = serde_json::from_slice(&client).unwrap();
    assert_eq!(client["info"]["proxy_link"], "up");
    assert_eq!(client["errors"]["model_not_found"], 1, "{client}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_errors_keep_their_status_and_message() {
    let (net, _up) = one_worker_network(UpstreamBehaviour::default()).await;
    let mut body = chat_body(MODEL, false);
    body["user"] = json!("reject");
    let (status, _, resp) = post_json(&net.chat_url(), &body).await;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(v["error"]["code"], "engine_rejected");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("rejects requests from user 'reject'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_reconnects_after_proxy_restart() {
    let up = upstream(UpstreamBehaviour {
        chunks: 1,
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;
    net.proxy.kill();
    let (status, _, body) = post_json(&net.chat_url(), &chat_body(MODEL, false)).await;
    assert_eq!(
        status,
        503,
        "proxy down: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(String::from_utf8_lossy(&body).contains("proxy_unavailable"));
    // Same address again: worker and client find it on their own.
    net.crash_and_restart_proxy("proxy2").await;
    net.wait_workers(MODEL, 1).await;
    let (status, _, _) = post_json(&net.chat_url(), &chat_body(MODEL, false)).await;
    assert_eq!(status, 200);
    // The outage is one warning and one recovery line in the worker's log,
    // however many retries it took (those are at debug level).
    let worker = &net.workers[0].proc;
    worker.wait_for_log("reconnected to proxy", 10).await;
    let log = worker.log();
    let count = |needle: &str| log.matches(needle).count();
    assert_eq!(count("lost the session with the proxy"), 1, "{log}");
    assert_eq!(count("reconnected to proxy"), 1, "{log}");
    assert_eq!(count("retrying with backoff"), 0, "{log}");
    assert_eq!(
        count("connected to proxy"),
        2,
        "first connection and recovery: {log}"
    );
}

/// Thousands of requests share the client's one connection to the proxy.
/// Completed calls must end cleanly: h2 closes a connection after 1024
/// stream resets, which once failed every request in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_share_one_proxy_connection_without_errors() {
    let up = upstream(UpstreamBehaviour {
        chunks: 1,
        chunk_size: 4,
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    let mut spec = WorkerSpec::new("w1", MODEL, &up);
    spec.max_active = 64;
    net.add_worker(spec).await;
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let url = net.chat_url();
            tokio::spawn(async move {
                let mut failures = Vec::new();
                for i in 0..50 {
                    let stream = (t + i) % 2 == 0;
                    let (status, _, body) = post_json(&url, &chat_body(MODEL, stream)).await;
                    if status != 200 || String::from_utf8_lossy(&body).contains("\"error\"") {
                        failures.push(format!("{status} {}", String::from_utf8_lossy(&body)));
                    }
                }
                failures
            })
        })
        .collect();
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} of 1600 failed, first: {}",
        failures.len(),
        failures[0]
    );
    assert_eq!(up.counters.completed.load(Ordering::SeqCst), 1600);
    let (_, _, stats) = get(&format!("{}/jsonstats", net.api)).await;
    let stats: Value = serde_json::from_slice(&stats).unwrap();
    assert_eq!(stats["requests"]["succeeded"], 1600);
    assert_eq!(stats["requests"]["failed"], 0);
}
