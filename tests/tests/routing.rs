//! The proxy's choices: price limits, capacity, load spreading, retry when a
//! worker dies before answering, an error event when it dies mid-answer,
//! and cancellation reaching the engine when the app hangs up.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cocoon_e2e::*;
use serde_json::{json, Value};

const MODEL: &str = "test-model";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coefficient_limit_is_respected() {
    let cheap_up = upstream(UpstreamBehaviour {
        chunks: 1,
        ..Default::default()
    })
    .await;
    let dear_up = upstream(UpstreamBehaviour {
        chunks: 1,
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    let mut cheap = WorkerSpec::new("cheap", MODEL, &cheap_up);
    cheap.coefficient = 800;
    let mut dear = WorkerSpec::new("dear", MODEL, &dear_up);
    dear.coefficient = 2000;
    net.add_worker(cheap).await;
    net.add_worker(dear).await;

    for _ in 0..6 {
        let (status, headers, _) = post(
            &net.chat_url(),
            chat_body(MODEL, false).to_string(),
            &[("x-cocoon-max-coefficient", "1000")],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-cocoon-worker"], "cheap");
        assert_eq!(headers["x-cocoon-coefficient"], "800");
    }
    assert_eq!(
        dear_up.counters.requests.load(Ordering::SeqCst),
        0,
        "the dear worker got nothing"
    );

    // The body extension works too, and an impossible limit says why.
    let mut body = chat_body(MODEL, false);
    body["cocoon"] = json!({"max_coefficient": 500});
    let (status, _, resp) = post_json(&net.chat_url(), &body).await;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(v["error"]["param"], "max_coefficient");
    assert_eq!(v["error"]["code"], "price_limit_exceeded");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("cheapest available coefficient is 800"),
        "{msg}"
    );

    // Without a limit both workers are used.
    for _ in 0..10 {
        let (status, _, _) = post_json(&net.chat_url(), &chat_body(MODEL, false)).await;
        assert_eq!(status, 200);
    }
    assert!(dear_up.counters.requests.load(Ordering::SeqCst) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_default_limit_applies() {
    let up = upstream(UpstreamBehaviour {
        chunks: 1,
        ..Default::default()
    })
    .await;
    let mut net = Network::start_with_client_args(&["--max-coefficient", "1200"]).await;
    let mut w = WorkerSpec::new("w", MODEL, &up);
    w.coefficient = 1300;
    net.add_worker(w).await;
    let (status, _, body) = post_json(&net.chat_url(), &chat_body(MODEL, false)).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    // A request may raise its own limit.
    let (status, _, _) = post(
        &net.chat_url(),
        chat_body(MODEL, false).to_string(),
        &[("x-cocoon-max-coefficient", "1300")],
    )
    .await;
    assert_eq!(status, 200);
}

/// A network whose one worker has two slots, both held by streams that
/// have started, with the proxy's line `queue_length` long.
async fn both_slots_busy(queue_length: &str) -> (TestUpstream, Network, SseReader, SseReader) {
    let up = upstream(UpstreamBehaviour {
        chunks: 40,
        chunk_size: 8,
        delay: Duration::from_millis(50),
        ..Default::default()
    })
    .await;
    let mut net = Network::start_with_proxy_args(&["--queue-length", queue_length]).await;
    let mut w = WorkerSpec::new("solo", MODEL, &up);
    w.max_active = 2;
    net.add_worker(w).await;

    let mut a = SseReader::open(&net.chat_url(), &chat_body(MODEL, true), &[]).await;
    let mut b = SseReader::open(&net.chat_url(), &chat_body(MODEL, true), &[]).await;
    assert_eq!((a.status, b.status), (200, 200));
    assert!(a.next().await.is_some() && b.next().await.is_some());
    (up, net, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_respected_without_a_queue() {
    let (up, net, a, b) = both_slots_busy("0").await;
    let (status, _, body) = post_json(&net.chat_url(), &chat_body(MODEL, false)).await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "workers_busy");
    assert!(v["error"]["message"].as_str().unwrap().contains("busy"));
    assert_eq!(
        up.counters.requests.load(Ordering::SeqCst),
        2,
        "the third request never reached the engine"
    );
    drop(a);
    drop(b);
    // Slots come back once the streams are gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, _) = post_json(&net.chat_url(), &json!({"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]})).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slots were never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The proxy's admission queue as `/jsonstats` shows it.
async fn queue_stats(net: &Network) -> Value {
    let (_, _, body) = get(&format!("{}/jsonstats", net.proxy_http)).await;
    let v: Value = serde_json::from_slice(&body).expect("jsonstats is JSON");
    v["queue"].clone()
}

/// Waits until `model` has `n` requests in the proxy's line.
async fn wait_waiting(net: &Network, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let q = queue_stats(net).await;
        if q["waiting"][MODEL].as_u64().unwrap_or(0) == n {
            return q;
        }
        assert!(Instant::now() < deadline, "never {n} waiting: {q}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_workers_queue_requests_until_a_slot_frees() {
    let (up, net, a, b) = both_slots_busy("2").await;

    // Both slots are taken: the next request waits instead of being refused.
    let url = net.chat_url();
    let waiting = tokio::spawn(async move { post_json(&url, &chat_body(MODEL, false)).await });
    wait_waiting(&net, 1).await;
    // One that its app gives up on leaves the line at once.
    let url = net.chat_url();
    let abandoned = tokio::spawn(async move { post_json(&url, &chat_body(MODEL, false)).await });
    wait_waiting(&net, 2).await;

    // The line is full: 429, with when to retry and the line's length.
    let (status, headers, body) = post_json(&net.chat_url(), &chat_body(MODEL, false)).await;
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "queue_full");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("2 requests are already waiting"), "{msg}");

    abandoned.abort();
    let q = wait_waiting(&net, 1).await;
    assert_eq!(q["cancelled"], 1, "{q}");
    assert_eq!(q["refused_full"], 1, "{q}");

    // A deadline that passes in the line: 504, and it never ran.
    let (status, _, body) = post(
        &net.chat_url(),
        chat_body(MODEL, false).to_string(),
        &[("x-cocoon-timeout-ms", "300")],
    )
    .await;
    assert_eq!(status, 504, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("waiting for a free worker") && msg.contains("nothing was charged"),
        "{msg}"
    );
    assert_eq!(
        up.counters.requests.load(Ordering::SeqCst),
        2,
        "nothing waiting reached the engine while both slots were taken"
    );

    // A slot frees: the request at the front of the line is served.
    drop(a);
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("served once a slot freed")
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let q = queue_stats(&net).await;
    assert_eq!(
        (q["admitted"].as_u64(), q["timed_out"].as_u64()),
        (Some(1), Some(1)),
        "{q}"
    );
    assert!(q["waiting"].as_object().unwrap().is_empty(), "{q}");
    let (_, _, metrics) = get(&format!("{}/metrics", net.proxy_http)).await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("cocoon_queue_ended_total{role=\"proxy\",outcome=\"admitted\"} 1"),
        "{metrics}"
    );
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_is_spread_across_workers() {
    let up_a = upstream(UpstreamBehaviour {
        chunks: 10,
        chunk_size: 8,
        delay: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let up_b = upstream(UpstreamBehaviour {
        chunks: 10,
        chunk_size: 8,
        delay: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("a", MODEL, &up_a)).await;
    net.add_worker(WorkerSpec::new("b", MODEL, &up_b)).await;
    let url = net.chat_url();
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { post_json(&url, &chat_body(MODEL, false)).await.0 })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let (a, b) = (
        up_a.counters.requests.load(Ordering::SeqCst),
        up_b.counters.requests.load(Ordering::SeqCst),
    );
    assert_eq!(a + b, 12);
    assert!(a >= 3 && b >= 3, "12 concurrent requests split {a}/{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_before_its_first_byte_is_retried_elsewhere() {
    let slow = upstream(UpstreamBehaviour {
        chunks: 3,
        chunk_size: 8,
        first_byte_delay: Duration::from_secs(30),
        ..Default::default()
    })
    .await;
    let fast = upstream(UpstreamBehaviour {
        chunks: 3,
        chunk_size: 8,
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    let doomed = net
        .add_worker(WorkerSpec::new("doomed", MODEL, &slow))
        .await;

    let url = net.chat_url();
    let pending = tokio::spawn(async move { post_json(&url, &chat_body(MODEL, false)).await });
    assert!(
        eventually(Duration::from_secs(10), || slow
            .counters
            .requests
            .load(Ordering::SeqCst)
            == 1)
        .await,
        "the request reached the doomed worker"
    );
    net.add_worker(WorkerSpec::new("rescuer", MODEL, &fast))
        .await;
    net.workers[doomed].proc.kill();

    let (status, headers, body) = pending.await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["x-cocoon-worker"], "rescuer");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(fast.counters.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_retry_then_a_clear_error() {
    let slow = upstream(UpstreamBehaviour {
        chunks: 3,
        first_byte_delay: Duration::from_secs(30),
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    let doomed = net
        .add_worker(WorkerSpec::new("doomed", MODEL, &slow))
        .await;
    let url = net.chat_url();
    let pending = tokio::spawn(async move { post_json(&url, &chat_body(MODEL, false)).await });
    assert!(
        eventually(Duration::from_secs(10), || slow
            .counters
            .requests
            .load(Ordering::SeqCst)
            == 1)
        .await
    );
    net.workers[doomed].proc.kill();
    let (status, _, body) = pending.await.unwrap();
    assert_eq!(status, 502);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "worker_lost");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("doomed") && msg.contains("no other worker"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_stream_ends_the_stream_with_an_error_event() {
    let paced = upstream(UpstreamBehaviour {
        chunks: 200,
        chunk_size: 16,
        delay: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let spare = upstream(UpstreamBehaviour::default()).await;
    let mut net = Network::start().await;
    let victim = net
        .add_worker(WorkerSpec::new("victim", MODEL, &paced))
        .await;
    let mut sse = SseReader::open(&net.chat_url(), &chat_body(MODEL, true), &[]).await;
    assert_eq!(sse.status, 200);
    for _ in 0..3 {
        let e = sse.next().await.unwrap();
        assert!(e.contains("chat.completion.chunk"));
    }
    // A second worker is available, but a started answer is not retried.
    net.add_worker(WorkerSpec::new("spare", MODEL, &spare))
        .await;
    net.workers[victim].proc.kill();
    let rest = sse.rest().await;
    let last = rest.last().expect("an event after the kill");
    let v: Value =
        serde_json::from_str(last).unwrap_or_else(|_| panic!("last event is JSON: {last}"));
    assert_eq!(v["error"]["code"], "worker_lost", "{last}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("middle of the answer"));
    assert!(
        !rest.iter().any(|e| e == "[DONE]"),
        "a failed stream does not claim to be done"
    );
    assert!(rest.len() < 200);
    assert_eq!(spare.counters.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_reaches_the_engine() {
    let paced = upstream(UpstreamBehaviour {
        chunks: 500,
        chunk_size: 16,
        delay: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w", MODEL, &paced)).await;
    let mut sse = SseReader::open(&net.chat_url(), &chat_body(MODEL, true), &[]).await;
    assert!(sse.next().await.is_some());
    assert_eq!(paced.counters.active.load(Ordering::SeqCst), 1);
    let hung_up = Instant::now();
    drop(sse);
    // The full answer would take 10 s; the engine must see the hang-up long before.
    let cancelled = eventually(Duration::from_secs(5), || {
        paced.counters.cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    let took = hung_up.elapsed();
    assert!(cancelled, "the engine's request was not aborted");
    eprintln!("engine saw the cancellation {took:?} after the app hung up");
    assert_eq!(paced.counters.completed.load(Ordering::SeqCst), 0);
    assert_eq!(paced.counters.active.load(Ordering::SeqCst), 0);

    // Every node counts it and frees the slot.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, _, body) = get(&format!("{}/jsonstats", net.proxy_http)).await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        if v["requests"]["active"] == 0 && v["errors"]["client_cancelled"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "proxy never recorded the cancellation: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_stops_the_request() {
    let slow = upstream(UpstreamBehaviour {
        chunks: 100,
        chunk_size: 8,
        delay: Duration::from_millis(50),
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w", MODEL, &slow)).await;
    let mut sse = SseReader::open(
        &net.chat_url(),
        &chat_body(MODEL, true),
        &[("x-cocoon-timeout-ms", "600")],
    )
    .await;
    assert_eq!(sse.status, 200);
    let events = sse.rest().await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "timeout");
    assert!(
        eventually(Duration::from_secs(5), || slow
            .counters
            .cancelled
            .load(Ordering::SeqCst)
            == 1)
        .await,
        "the engine request was aborted"
    );
}

/// An app that stops reading a long answer must not stall the other
/// requests its worker is serving: they share one session with the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_stall_its_worker() {
    use tokio::io::AsyncWriteExt;
    // 64 MiB answers: more than every buffer on the way can hold.
    let up = upstream(UpstreamBehaviour {
        chunks: 16384,
        chunk_size: 4096,
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("shared", MODEL, &up)).await;
    let body = chat_body(MODEL, true).to_string();
    let addr = net.api.trim_start_matches("http://").to_string();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stalled.write_all(req.as_bytes()).await.unwrap();
    // Never read from `stalled`. Give the pipeline time to fill up.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let small =
        json!({"model": MODEL, "max_tokens": 3, "messages": [{"role": "user", "content": "x"}]});
    let answer =
        tokio::time::timeout(Duration::from_secs(20), post_json(&net.chat_url(), &small)).await;
    let (status, _, resp) =
        answer.expect("a request on the same worker was stalled by a client that does not read");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    // The stalled request was dropped on its own and its engine request aborted.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, stats) = get(&format!("{}/jsonstats", net.proxy_http)).await;
        let v: Value = serde_json::from_slice(&stats).unwrap();
        if v["errors"]["client_too_slow"] == 1 && up.counters.cancelled.load(Ordering::SeqCst) == 1
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled request was not dropped: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stalled);
}
