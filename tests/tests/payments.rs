//! Pay per token, end to end: a client with a balance for about three
//! answers gets three, each charged exactly its price, then a 402; a request
//! refused before its first byte costs nothing; the client's voucher and
//! the worker's earnings state the same totals as the ledger.

use cocoon_e2e::*;
use serde_json::{json, Value};

const MODEL: &str = "test-model";
/// The proxy's default prices: 100 nanoton per token to clients, 80 to workers.
const PRICE: u64 = 100;
const FEE: u64 = 80;

async fn balance(net: &Network) -> Value {
    let (status, _, body) = get(&format!("{}/v1/cocoon/balance", net.api)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balance_for_three_answers_buys_three_then_a_402() {
    let up = upstream(UpstreamBehaviour::default()).await;
    // Each answer: ~1 prompt + 400 completion tokens ≈ 40100 nanoton; the
    // reservation (request bytes + 400 tokens) ≈ 50000. Three fit, not four.
    let deposit = 150_000;
    let mut net = Network::start_with(&[], deposit).await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;
    let ask = |extra: Value| {
        let mut b = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 400});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };

    // Refused by the engine before any byte: nothing is charged.
    let (status, _, _) = post_json(&net.chat_url(), &ask(json!({"user": "reject"}))).await;
    assert_eq!(status, 400);
    let b = balance(&net).await;
    assert_eq!(
        (b["deposited"].as_u64(), b["spent"].as_u64()),
        (Some(deposit), Some(0))
    );
    assert_eq!(b["reserved"], 0);

    let mut spent = 0;
    let mut earned = 0;
    for i in 0..3 {
        let (status, headers, body) = post_json(&net.chat_url(), &ask(json!({}))).await;
        assert_eq!(
            status,
            200,
            "answer {i}: {}",
            String::from_utf8_lossy(&body)
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        let tokens = v["usage"]["prompt_tokens"].as_u64().unwrap()
            + v["usage"]["completion_tokens"].as_u64().unwrap();
        let cost = v["usage"]["cost_nanoton"].as_u64().unwrap();
        assert_eq!(
            cost,
            tokens * PRICE,
            "answer {i} is charged exactly its tokens"
        );
        assert_eq!(headers["x-cocoon-cost-nanoton"], cost.to_string().as_str());
        spent += cost;
        earned += tokens * FEE;
    }

    let (status, _, body) = post_json(&net.chat_url(), &ask(json!({}))).await;
    assert_eq!(status, 402, "{}", String::from_utf8_lossy(&body));
    let e: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(e["error"]["code"], "insufficient_funds");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("insufficient balance"));

    let b = balance(&net).await;
    assert_eq!(b["spent"].as_u64(), Some(spent), "{b}");
    assert_eq!(b["reserved"], 0);
    assert_eq!(b["available"].as_u64(), Some(deposit - spent));
    assert_eq!(b["voucher"]["total"].as_u64(), Some(spent));
    assert_eq!(b["voucher"]["seqno"], 3);
    assert!(b["distrusted"].is_null());

    // The worker holds a checked voucher for exactly its share.
    let (_, _, body) = get(&format!("{}/jsonstats", net.workers[0].http)).await;
    let w: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(w["detail"]["earned"], earned, "{w}");
    assert!(w["info"]["proxy_refused"].is_null());

    // Topped up from the command line, the client is served again.
    let out = std::process::Command::new(bin_dir().join("cocoon"))
        .args(["client", "deposit", "--api", &net.api, "--amount", "0.0001"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let topped: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(topped["deposited"].as_u64(), Some(deposit + 100_000));
    let (status, _, body) = post_json(&net.chat_url(), &ask(json!({}))).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    spent += serde_json::from_slice::<Value>(&body).unwrap()["usage"]["cost_nanoton"]
        .as_u64()
        .unwrap();
    earned = spent * FEE / PRICE;

    // The proxy's books balance: charged = earned + commission.
    let (_, _, body) = get(&format!("{}/jsonstats", net.proxy_http)).await;
    let p: Value = serde_json::from_slice(&body).unwrap();
    let n = |k: &str| p["detail"]["ledger"][k].as_u64().unwrap();
    assert_eq!(n("charged"), spent);
    assert_eq!(n("earned"), earned);
    assert_eq!(n("commission"), spent - earned);
    assert_eq!(n("in_flight"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_carries_its_cost_in_the_usage_chunk() {
    let up = upstream(UpstreamBehaviour {
        chunks: 3,
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;
    let body = json!({
        "model": MODEL, "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hi"}]
    });
    let mut sse = SseReader::open(&net.chat_url(), &body, &[]).await;
    let mut usage = Value::Null;
    while let Some(data) = sse.next().await {
        if data == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(&data).unwrap();
        if !v["usage"].is_null() {
            usage = v["usage"].clone();
        }
    }
    let tokens =
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap();
    assert_eq!(
        usage["cost_nanoton"].as_u64(),
        Some(tokens * PRICE),
        "{usage}"
    );
    let b = balance(&net).await;
    assert_eq!(b["spent"].as_u64(), Some(tokens * PRICE));
}

/// A test upstream answering a chunk every 10 ms, and a network (its proxy
/// started with `proxy_args`) whose worker reports running token counts.
async fn paced_network(proxy_args: &[&str]) -> (TestUpstream, Network) {
    let up = upstream(UpstreamBehaviour {
        delay: std::time::Duration::from_millis(10),
        ..Default::default()
    })
    .await;
    let mut net = Network::start_with_proxy_args(proxy_args).await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up).with_running_usage())
        .await;
    (up, net)
}

/// How a streamed request ended, seen from the app.
enum Ended {
    /// The answer completed: its cost and prompt tokens.
    Complete { cost: u64, prompt: u64 },
    /// Refused or cut off after this many chunks of text.
    Incomplete(u64),
}

async fn stream_once(url: &str) -> Ended {
    let body = json!({
        "model": MODEL, "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hi"}], "max_tokens": 40
    });
    let Some(mut sse) = SseReader::try_open(url, &body).await else {
        return Ended::Incomplete(0);
    };
    let (mut texts, mut usage) = (0, None);
    while let Some(data) = sse.next().await {
        if data == "[DONE]" {
            return match usage {
                Some((cost, prompt)) => Ended::Complete { cost, prompt },
                None => Ended::Incomplete(texts),
            };
        }
        let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
        if v["choices"][0]["delta"]["content"].is_string() {
            texts += 1;
        }
        if let Some(c) = v["usage"]["cost_nanoton"].as_u64() {
            usage = Some((c, v["usage"]["prompt_tokens"].as_u64().unwrap_or(0)));
        }
    }
    Ended::Incomplete(texts)
}

/// Concurrent streaming load while the proxy is killed with SIGKILL at
/// random moments and restarted. Afterwards: the books balance, nothing is
/// left reserved, every completed answer was charged exactly its tokens
/// and once, no chunk an app received went uncharged (the proxy makes a
/// chunk's cost durable before forwarding it), and no voucher ever went
/// backwards (client and worker still trust the proxy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_proxy_loses_no_charge_and_pays_nobody_twice() {
    // 40-chunk answers at 10 ms a chunk, so crashes cut answers midway.
    let (_up, mut net) = paced_network(&[]).await;
    let url = net.chat_url();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..6 {
        let (url, stop) = (url.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut ends = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let end = stream_once(&url).await;
                if let Ended::Incomplete(_) = end {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                ends.push(end);
            }
            ends
        }));
    }
    // A fixed seed keeps the kill times reproducible.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for round in 0..3 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(std::time::Duration::from_millis(300 + seed % 500)).await;
        net.crash_and_restart_proxy(&format!("proxy-after-crash-{round}"))
            .await;
        net.wait_workers(MODEL, 1).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut ends = Vec::new();
    for t in load {
        ends.extend(t.await.unwrap());
    }
    let (mut complete, mut costs, mut prompt) = (0u64, 0u64, 0u64);
    let (mut cut, mut cut_texts) = (0u64, 0u64);
    for end in &ends {
        match *end {
            Ended::Complete { cost, prompt: p } => {
                complete += 1;
                costs += cost;
                prompt = p;
            }
            Ended::Incomplete(0) => {}
            Ended::Incomplete(texts) => {
                cut += 1;
                cut_texts += texts;
            }
        }
    }
    assert!(
        complete > 10 && cut > 0,
        "the load ran and crashes cut answers: {complete} complete, {cut} cut off"
    );
    let per_answer = (prompt + 40) * PRICE;
    assert_eq!(
        costs,
        complete * per_answer,
        "every completed answer costs exactly its tokens"
    );
    // What apps received of cut-off answers: the prompt and each chunk
    // (the worker reports running counts, one token per chunk).
    let received = cut * prompt * PRICE + cut_texts * PRICE;
    eprintln!(
        "crash test: {complete} complete ({costs} nanoton), {cut} cut off after {cut_texts} chunks in all ({received} nanoton)"
    );

    let (_, _, body) = get(&format!("{}/jsonstats", net.proxy_http)).await;
    let p: Value = serde_json::from_slice(&body).unwrap();
    let n = |k: &str| p["detail"]["ledger"][k].as_u64().unwrap();
    let charged = n("charged");
    assert_eq!(charged, n("earned") + n("commission"));
    assert_eq!((n("reserved"), n("in_flight")), (0, 0));
    // Nothing received went uncharged.
    assert!(
        charged >= costs + received,
        "apps received {} nanoton of answers, the ledger charged {charged}",
        costs + received
    );
    // And nothing was charged twice: beyond what apps received, at most
    // what was in transit when a crash struck, one answer per stream.
    assert!(
        charged - costs - received <= 6 * 3 * per_answer,
        "charged {charged}; apps received {}",
        costs + received
    );

    eprintln!("crash test: ledger charged {charged}");
    let b = balance(&net).await;
    assert_eq!(b["spent"].as_u64(), Some(charged));
    assert!(b["distrusted"].is_null(), "{b}");
    assert_eq!(b["voucher"]["total"].as_u64(), Some(charged), "{b}");
    let (_, _, body) = get(&format!("{}/jsonstats", net.workers[0].http)).await;
    let w: Value = serde_json::from_slice(&body).unwrap();
    assert!(w["info"]["proxy_refused"].is_null(), "{w}");
    assert_eq!(w["detail"]["earned"].as_u64(), Some(n("earned")), "{w}");
}

/// An app that hangs up mid-answer pays for what was delivered, prompt
/// included, as the engine counted it: not for the whole answer and not
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_answer_is_charged_for_what_was_delivered() {
    let (_up, net) = paced_network(&[]).await;
    // 44 bytes: 11 prompt tokens for the test upstream.
    let content = "tell me a long story about the sea, please!!";
    let prompt = content.len().div_ceil(4) as u64;
    let body = json!({
        "model": MODEL, "stream": true,
        "messages": [{"role": "user", "content": content}], "max_tokens": 400
    });
    let mut sse = SseReader::open(&net.chat_url(), &body, &[]).await;
    for _ in 0..40 {
        assert!(sse.next().await.is_some());
    }
    drop(sse);
    // Wait for the proxy to notice and settle.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let spent = loop {
        let b = balance(&net).await;
        if b["reserved"] == 0 {
            break b["spent"].as_u64().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "never settled: {b}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        spent >= (prompt + 40) * PRICE,
        "charged {spent} for the prompt and at least 40 delivered chunks"
    );
    assert!(
        spent < (prompt + 400) * PRICE,
        "charged {spent}: the whole answer was not delivered"
    );
    assert_eq!(spent % PRICE, 0);
    let (_, _, body) = get(&format!("{}/jsonstats", net.proxy_http)).await;
    let p: Value = serde_json::from_slice(&body).unwrap();
    let n = |k: &str| p["detail"]["ledger"][k].as_u64().unwrap();
    assert_eq!(n("charged"), spent);
}

/// Ledger operations the proxy has made so far.
async fn ledger_ops(net: &Network) -> u64 {
    let (_, _, body) = get(&format!("{}/jsonstats", net.proxy_http)).await;
    let p: Value = serde_json::from_slice(&body).unwrap();
    p["detail"]["ledger"]["ops"].as_u64().unwrap()
}

/// One paced 40-chunk streamed answer; returns its cost and the ledger
/// operations it took.
async fn paced_answer(net: &Network) -> (u64, u64) {
    let before = ledger_ops(net).await;
    let Ended::Complete { cost, .. } = stream_once(&net.chat_url()).await else {
        panic!("the answer did not complete");
    };
    (cost, ledger_ops(net).await - before)
}

/// By default each chunk is made durable as it arrives (a chunk every
/// 10 ms outpaces no commit here), so an answer takes about one ledger
/// operation per chunk. A checkpoint window holds chunks so that one
/// operation covers several, and charges the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_window_covers_several_chunks_per_ledger_step() {
    let (up, strict) = paced_network(&[]).await;
    let (cost, ops) = paced_answer(&strict).await;
    assert!(ops >= 15, "{ops} ledger operations for 40 paced chunks");
    drop((up, strict));

    let (_up, windowed) = paced_network(&["--checkpoint-window-ms", "200"]).await;
    let (windowed_cost, windowed_ops) = paced_answer(&windowed).await;
    eprintln!("ledger operations per answer: {ops} strict, {windowed_ops} with a 200 ms window");
    assert_eq!(windowed_cost, cost, "the window changes no price");
    // Reserve, settle, and a checkpoint per 200 ms of a ~400 ms answer.
    assert!(
        windowed_ops <= 10,
        "{windowed_ops} ledger operations with a 200 ms window"
    );
}
