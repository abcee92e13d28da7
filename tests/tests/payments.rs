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
    assert_eq!(
        w["info"]["earned_nanoton"],
        earned.to_string().as_str(),
        "{w}"
    );
    assert!(w["info"]["proxy_refused"].is_null());

    // The proxy's books balance: charged = earned + commission.
    let (_, _, body) = get(&format!("{}/jsonstats", net.proxy_http)).await;
    let p: Value = serde_json::from_slice(&body).unwrap();
    let n = |k: &str| p["info"][k].as_str().unwrap().parse::<u64>().unwrap();
    assert_eq!(n("ledger_charged_nanoton"), spent);
    assert_eq!(n("ledger_earned_nanoton"), earned);
    assert_eq!(n("ledger_commission_nanoton"), spent - earned);
    assert_eq!(n("ledger_in_flight"), 0);
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
