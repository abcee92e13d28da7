//! The embedded engine (llama.cpp in-process) serving the real default
//! model, SmolLM2-135M-Instruct, through client → proxy → worker.

use std::time::Duration;

use cocoon_e2e::*;
use serde_json::{json, Value};

const MODEL: &str = "SmolLM2-135M-Instruct";
const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

async fn network() -> Network {
    ensure_default_model();
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::embedded("llama")).await;
    net
}

fn ask(content: &str, extra: Value) -> Value {
    let mut body = json!({"model": MODEL, "temperature": 0, "seed": 7, "messages": [{"role": "user", "content": content}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn complete(net: &Network, body: &Value) -> Value {
    let (status, headers, resp) = post_json(&net.chat_url(), body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(headers["x-cocoon-model-hash"], SHA256);
    serde_json::from_slice(&resp).unwrap()
}

/// Streams `body`; returns the text, the finish reason and the usage chunk.
async fn stream(net: &Network, body: &Value) -> (String, String, Value) {
    let mut body = body.clone();
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let mut sse = SseReader::open(&net.chat_url(), &body, &[]).await;
    assert_eq!(sse.status, 200);
    let (mut text, mut finish, mut usage) = (String::new(), String::new(), Value::Null);
    let events = sse.rest().await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(e).unwrap_or_else(|_| panic!("chunk is JSON: {e}"));
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            assert!(
                !c.contains('\u{fffd}'),
                "a character was broken across chunks: {e}"
            );
            text.push_str(c);
        }
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            finish = f.to_string();
        }
        if !v["usage"].is_null() {
            usage = v.clone();
        }
    }
    (text, finish, usage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_model_answers_and_is_identified() {
    let net = network().await;
    let v = complete(
        &net,
        &ask("What is the capital of France?", json!({"max_tokens": 24})),
    )
    .await;
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.trim().is_empty(), "{v}");
    assert_eq!(v["model"], MODEL);
    assert_eq!(v["cocoon"]["model_hash"], SHA256);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 5);
    let (_, _, models) = get(&format!("{}/v1/models", net.api)).await;
    let models: Value = serde_json::from_slice(&models).unwrap();
    assert_eq!(models["data"][0]["id"], MODEL);
    assert_eq!(models["data"][0]["cocoon"]["model_hashes"], json!([SHA256]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_and_non_streaming_agree_at_temperature_zero() {
    let net = network().await;
    let body = ask(
        "Write one sentence about the sea.",
        json!({"max_tokens": 32}),
    );
    let whole = complete(&net, &body).await;
    let (streamed, finish, usage) = stream(&net, &body).await;
    assert_eq!(
        streamed,
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(
        finish,
        whole["choices"][0]["finish_reason"].as_str().unwrap()
    );
    assert_eq!(
        usage["usage"]["completion_tokens"],
        whole["usage"]["completion_tokens"]
    );
    assert_eq!(
        usage["usage"]["prompt_tokens"],
        whole["usage"]["prompt_tokens"]
    );
    // And again: the same seed at temperature 0 gives the same answer.
    let again = complete(&net, &body).await;
    assert_eq!(
        again["choices"][0]["message"]["content"],
        whole["choices"][0]["message"]["content"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_is_a_truthful_length_limit() {
    let net = network().await;
    let body = ask(
        "Count from one to one hundred in words.",
        json!({"max_tokens": 5}),
    );
    let v = complete(&net, &body).await;
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    let (text, finish, usage) = stream(&net, &body).await;
    assert_eq!(finish, "length");
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    assert!(!text.is_empty());
    // A short answer that ends by itself says "stop".
    let v = complete(
        &net,
        &ask("What is the capital of France?", json!({"max_tokens": 64})),
    )
    .await;
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() < 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_sequence_ends_the_text() {
    let net = network().await;
    let body = ask(
        "Name three colours, separated by commas.",
        json!({"max_tokens": 40}),
    );
    let full = complete(&net, &body).await["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    // Stop on the answer's second word: the text must end right before it.
    let words: Vec<&str> = full.split_whitespace().collect();
    assert!(words.len() >= 3, "answer too short to test stops: {full:?}");
    let stop = words[1];
    let at = full.find(stop).unwrap();
    let mut stopped_body = body.clone();
    stopped_body["stop"] = json!([stop]);
    let v = complete(&net, &stopped_body).await;
    assert_eq!(
        v["choices"][0]["message"]["content"].as_str().unwrap(),
        &full[..at]
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let (text, finish, _) = stream(&net, &stopped_body).await;
    assert_eq!((text.as_str(), finish.as_str()), (&full[..at], "stop"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multibyte_text_survives_streaming() {
    let net = network().await;
    let body = ask(
        "Translate to Japanese: good morning. 日本語で「おはよう」と書いてください。",
        json!({"max_tokens": 48}),
    );
    let whole = complete(&net, &body).await;
    let whole = whole["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let (streamed, _, _) = stream(&net, &body).await;
    assert_eq!(streamed, whole);
    assert!(!whole.contains('\u{fffd}'));
    assert!(
        whole.chars().any(|c| c.len_utf8() > 1),
        "the answer has multi-byte characters: {whole:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_the_model_and_cancellation_frees_slots() {
    let net = network().await;
    let url = net.chat_url();
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                post_json(
                    &url,
                    &ask(
                        &format!("Say a number bigger than {i}."),
                        json!({"max_tokens": 16}),
                    ),
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    // A long answer abandoned after two chunks frees its sequence.
    let mut body = ask(
        "Write a very long story about a dragon.",
        json!({"max_tokens": 1500}),
    );
    body["stream"] = json!(true);
    let mut sse = SseReader::open(&net.chat_url(), &body, &[]).await;
    assert!(sse.next().await.is_some() && sse.next().await.is_some());
    drop(sse);
    let freed = async {
        loop {
            let (_, _, s) = get(&format!("{}/jsonstats", net.workers[0].http)).await;
            let s: Value = serde_json::from_slice(&s).unwrap();
            if s["workers"][0]["running"] == 0 {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let s = tokio::time::timeout(Duration::from_secs(10), freed)
        .await
        .expect("the abandoned request was not freed");
    assert!(
        s["tokens"]["completion"].as_u64().unwrap() < 4 * 16 + 1500,
        "generation stopped early: {s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_engine_cannot_honour_are_refused_clearly() {
    let net = network().await;
    let (status, _, body) = post_json(&net.chat_url(), &ask("hi", json!({"n": 2}))).await;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("'n'"),
        "{v}"
    );
    let long = "word ".repeat(3000);
    let (status, _, body) = post_json(&net.chat_url(), &ask(&long, json!({}))).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("context holds 2048 tokens"));
}

/// The second turn of a conversation reuses the KV cells of the first
/// (prompt caching): it says so in `usage.prompt_tokens_details`, pays the
/// cached multiplier for those tokens, and answers exactly what an engine
/// without the cache answers at temperature 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_reuses_its_cached_prefix() {
    let first = json!([{"role": "user", "content": "Name three colours."}]);
    let turn = |answer: &str| {
        let mut m = first.as_array().unwrap().clone();
        m.push(json!({"role": "assistant", "content": answer}));
        m.push(json!({"role": "user", "content": "And three animals?"}));
        json!({"model": MODEL, "temperature": 0, "max_tokens": 24, "messages": m})
    };

    let net = network().await;
    let one = complete(
        &net,
        &json!({"model": MODEL, "temperature": 0, "max_tokens": 24, "messages": first}),
    )
    .await;
    assert_eq!(one["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let answer = one["choices"][0]["message"]["content"].as_str().unwrap();
    let second = turn(answer);
    let cached = complete(&net, &second).await;
    let reused = cached["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    let first_prompt = one["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(
        reused >= first_prompt,
        "the whole first turn ({first_prompt} tokens) is reused, not {reused}: {cached}"
    );
    assert!(reused < cached["usage"]["prompt_tokens"].as_u64().unwrap());

    // The same turn on an engine that has cached nothing.
    let fresh_net = network().await;
    let fresh = complete(&fresh_net, &second).await;
    assert_eq!(fresh["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(
        cached["choices"][0]["message"]["content"], fresh["choices"][0]["message"]["content"],
        "the cache changes no answer at temperature 0"
    );
    assert_eq!(
        cached["usage"]["prompt_tokens"],
        fresh["usage"]["prompt_tokens"]
    );
    assert_eq!(
        cached["usage"]["completion_tokens"],
        fresh["usage"]["completion_tokens"]
    );
    let cost = |v: &Value| v["usage"]["cost_nanoton"].as_u64().expect("charged");
    assert!(
        cost(&cached) < cost(&fresh),
        "cached tokens are charged at the cached multiplier: {} vs {}",
        cost(&cached),
        cost(&fresh)
    );
}

/// A worker that claims the real model's weights but answers with text the
/// model would not write: its sampled answers cannot be replayed, so a
/// spot-check scores them under the real model on the embedded worker
/// (teacher forcing), and they fail; the impostor loses reputation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampled_answer_from_other_weights_fails_scoring_under_the_real_model() {
    let impostor = upstream(UpstreamBehaviour {
        chunks: 30,
        words: Some(
            "quarterly gravel invoices hum beneath violet tax orchestras while seventeen \
             lemons litigate sideways over a philharmonic carburetor, and the marmalade \
             senate of Tuesday refuses every triangular lighthouse its pension",
        ),
        ..Default::default()
    })
    .await;
    let mut net = network().await;
    let mut spec = WorkerSpec::new("impostor", MODEL, &impostor);
    spec.model_hash = Some(SHA256.into());
    net.add_worker(spec).await;
    // The proxy spot-checks only answers it may read: this one is not sealed.
    let body = json!({"model": MODEL, "temperature": 0.8, "max_tokens": 40,
        "messages": [{"role": "user", "content": "Tell me about the sea."}],
        "cocoon": {"e2e": "off"}});
    let mut stats = Value::Null;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        let (status, _, answer) = post_json(&net.chat_url(), &body).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        tokio::time::sleep(Duration::from_millis(500)).await;
        stats = proxy_stats(&net).await;
        if worker_record(&stats, "impostor")["spot_checks"]["failed"] == 1 {
            break;
        }
    }
    let impostor = worker_record(&stats, "impostor");
    let checks = &impostor["spot_checks"];
    assert_eq!(
        [
            &checks["passed"],
            &checks["failed"],
            &checks["inconclusive"],
            &checks["skipped"],
            &checks["scored"]
        ],
        [0, 1, 0, 0, 1],
        "{stats}"
    );
    assert_eq!(impostor["reputation"]["dissented"], 1, "{stats}");
    assert_eq!(impostor["reputation"]["avoided"], true, "{stats}");
    // The real model's own answers pass (or, checked by the impostor,
    // which cannot score, are skipped); they never fail.
    let llama = worker_record(&stats, "llama");
    assert!(
        llama.is_null() || llama["spot_checks"]["failed"] == 0,
        "{stats}"
    );
}
