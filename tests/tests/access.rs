//! Who may call a client, end to end: API keys made with `cocoon client
//! keys`, their budgets (429 before any money moves), rate limits, models
//! and revocation; Telegram sign-in (`Authorization: tma <initData>`)
//! signed by an independent implementation of Telegram's algorithm
//! (Python's hmac), forged and stale data refused.

use cocoon_e2e::*;
use serde_json::{json, Value};

const MODEL: &str = "test-model";

fn keys(net: &Network, args: &[&str]) -> Value {
    let mut all = vec!["client", "keys"];
    all.extend_from_slice(&args[..1]);
    all.extend_from_slice(&["--api", &net.api]);
    all.extend_from_slice(&args[1..]);
    cocoon_json(&all)
}

fn ask(max_tokens: u64) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens})
}

async fn chat(net: &Network, auth: &str, body: &Value) -> (u16, http::HeaderMap, Value) {
    let (status, headers, body) = post(
        &net.chat_url(),
        body.to_string(),
        &[("authorization", auth)],
    )
    .await;
    let v = serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body)));
    (status, headers, v)
}

/// The client's whole balance, as the operator sees it.
async fn client_spent(net: &Network, admin: &str) -> u64 {
    let url = format!("{}/v1/cocoon/balance", net.api);
    let req = http::Request::get(url)
        .header("authorization", format!("Bearer {admin}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let (status, _, body) = send_request(req).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["spent"].as_u64().expect("the client's spent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_budget_gets_429_and_no_money_moves() {
    let up = upstream(UpstreamBehaviour::default()).await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;

    // Open until the first key exists.
    let (status, _, v) = chat(&net, "Bearer anything", &ask(4)).await;
    assert_eq!(status, 200, "{v}");

    // Answers of ~21 tokens cost ~2100 nanoton; each holds (its bytes + 20)
    // × 100 ≈ 13000 while in flight. A budget of 20000 buys a few.
    let budget = 20_000u64;
    let key = keys(
        &net,
        &["create", "--name", "app", "--budget", &budget.to_string()],
    );
    let secret = key["secret"]
        .as_str()
        .expect("the secret is shown")
        .to_string();
    assert!(secret.starts_with("sk-cocoon-"), "{key}");
    let id = key["id"].as_str().unwrap().to_string();
    let auth = format!("Bearer {secret}");

    // Now every request names its key.
    let (status, _, v) = chat(&net, "", &ask(4)).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("missing_api_key")),
        "{v}"
    );
    let (status, _, v) = chat(&net, "Bearer sk-cocoon-made-up-0000000000", &ask(4)).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("invalid_api_key")),
        "{v}"
    );
    assert!(
        !v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("made-up-0000000000"),
        "a wrong secret is not echoed whole"
    );
    // A key holder may not move the client's money.
    let (status, _, v) = {
        let (s, h, b) = post(
            &format!("{}/v1/cocoon/withdraw", net.api),
            "{\"amount_nanoton\":1}",
            &[("authorization", &auth)],
        )
        .await;
        (s, h, serde_json::from_slice::<Value>(&b).unwrap())
    };
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("operator_only")),
        "{v}"
    );

    let admin = net.admin_token().expect("the client's admin token");
    let mut spent = 0u64;
    let mut answers = 0;
    let refusal = loop {
        let (status, headers, v) = chat(&net, &auth, &ask(20)).await;
        if status == 429 {
            break v;
        }
        assert_eq!(status, 200, "{v}");
        spent += headers["x-cocoon-cost-nanoton"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap();
        answers += 1;
        assert!(answers < 20, "the budget never ran out");
    };
    assert!(answers >= 2, "the budget bought {answers} answers");
    assert_eq!(refusal["error"]["code"], "insufficient_quota", "{refusal}");
    assert_eq!(refusal["error"]["type"], "insufficient_quota");
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&id) && message.contains(&format!("{spent} of {budget} nanoton spent")),
        "{message}"
    );

    // The refusal moved nothing: the client's spending is unchanged by
    // another refused request, and the key's spending is what its answers cost.
    let before = client_spent(&net, &admin).await;
    let (status, _, _) = chat(&net, &auth, &ask(20)).await;
    assert_eq!(status, 429);
    assert_eq!(client_spent(&net, &admin).await, before);
    let listed = keys(&net, &["list"]);
    let k = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(k["spent_nanoton"].as_u64(), Some(spent), "{k}");
    assert!(spent <= budget);
    assert_eq!(k["requests"].as_u64(), Some(answers), "{k}");
    assert!(k["refused"].as_u64().unwrap() >= 2, "{k}");
    // A smaller answer still fits what is left.
    let (status, _, v) = chat(&net, &auth, &ask(1)).await;
    assert!(status == 200 || status == 429, "{v}");

    // Usage per key in /metrics and /jsonstats.
    let (_, _, metrics) = get(&format!("{}/metrics", net.api)).await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains(&format!(
            "cocoon_api_key_requests_total{{role=\"client\",key=\"{id}\",name=\"app\"}}"
        )),
        "{metrics}"
    );
    let (_, _, stats) = get(&format!("{}/jsonstats", net.api)).await;
    let stats: Value = serde_json::from_slice(&stats).unwrap();
    assert_eq!(stats["detail"]["access"]["restricted"], true);

    // Revoked: refused at once.
    keys(&net, &["revoke", &id]);
    let (status, _, v) = chat(&net, &auth, &ask(1)).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("revoked_api_key")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_models_per_key() {
    let up = upstream(UpstreamBehaviour::default()).await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;
    let key = keys(
        &net,
        &["create", "--name", "slow", "--rpm", "2", "--model", MODEL],
    );
    let auth = format!("Bearer {}", key["secret"].as_str().unwrap());
    for _ in 0..2 {
        let (status, _, v) = chat(&net, &auth, &ask(2)).await;
        assert_eq!(status, 200, "{v}");
    }
    let (status, headers, v) = chat(&net, &auth, &ask(2)).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (429, Some("rate_limit_exceeded")),
        "{v}"
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");

    let other = keys(
        &net,
        &["create", "--name", "narrow", "--model", "another-model"],
    );
    let auth = format!("Bearer {}", other["secret"].as_str().unwrap());
    let (status, _, v) = chat(&net, &auth, &ask(2)).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("model_not_allowed")),
        "{v}"
    );
    assert_eq!(v["error"]["param"], "model");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_users_sign_in_with_init_data_under_a_budget_each() {
    let up = upstream(UpstreamBehaviour::default()).await;
    let token = "7000000001:AAF-test_token-for-cocoon";
    let dir = std::env::temp_dir().join(format!("cocoon-tma-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("bot.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let tf = token_file.display().to_string();
    let mut net = Network::start_with_client_args(&[
        "--telegram-token-file",
        &tf,
        "--telegram-user-budget",
        "20000",
    ])
    .await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    // Signed by Telegram's algorithm with this bot's token: accepted.
    let good = cocoon_e2e::telegram::init_data(token, 4242, now - 60);
    let (status, _, v) = chat(&net, &format!("tma {good}"), &ask(4)).await;
    assert_eq!(status, 200, "{v}");

    // Forged: the user id changed after signing; another bot's token; stale.
    let forged = good.replace("4242", "4243");
    let (status, _, v) = chat(&net, &format!("tma {forged}"), &ask(4)).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("invalid_init_data")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{v}"
    );
    let foreign = cocoon_e2e::telegram::init_data("7000000002:AAF-other", 4242, now - 60);
    let (status, _, _) = chat(&net, &format!("tma {foreign}"), &ask(4)).await;
    assert_eq!(status, 401);
    let stale = cocoon_e2e::telegram::init_data(token, 4242, now - 86_400 - 120);
    let (status, _, v) = chat(&net, &format!("tma {stale}"), &ask(4)).await;
    assert_eq!(status, 401);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("stale"),
        "{v}"
    );
    // With Telegram sign-in on, anonymous calls are refused.
    let (status, _, _) = chat(&net, "", &ask(4)).await;
    assert_eq!(status, 401);

    // The user's own budget runs out; another user's does not.
    let mut refused = None;
    for _ in 0..20 {
        let (status, _, v) = chat(&net, &format!("tma {good}"), &ask(20)).await;
        if status == 429 {
            refused = Some(v);
            break;
        }
        assert_eq!(status, 200, "{v}");
    }
    let refused = refused.expect("the user's budget ran out");
    assert_eq!(refused["error"]["code"], "insufficient_quota");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("your Telegram account is over its budget"),
        "{refused}"
    );
    let other = cocoon_e2e::telegram::init_data(token, 777, now);
    let (status, _, v) = chat(&net, &format!("tma {other}"), &ask(4)).await;
    assert_eq!(status, 200, "{v}");
    // The user sees their own account, not the client's.
    let req = http::Request::get(format!("{}/v1/cocoon/balance", net.api))
        .header("authorization", format!("tma {good}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let (status, _, body) = send_request(req).await;
    assert_eq!(status, 200);
    let b: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(b["account"]["budget_nanoton"], 20_000, "{b}");
    assert!(b.get("deposited").is_none(), "{b}");
    let _ = std::fs::remove_dir_all(dir);
}

/// An answer cut off after its first byte is counted at its hold (the most
/// the proxy can have charged for what it delivered), so hanging up early
/// buys nothing for free; one refused before any byte costs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_off_counts_its_hold_and_a_refusal_counts_nothing() {
    let up = upstream(UpstreamBehaviour {
        chunks: 200,
        chunk_size: 8,
        delay: std::time::Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;
    let key = keys(
        &net,
        &["create", "--name", "reader", "--budget", "10000000"],
    );
    let id = key["id"].as_str().unwrap().to_string();
    let auth = format!("Bearer {}", key["secret"].as_str().unwrap());
    let spent = |net: &Network| {
        let listed = keys(net, &["list"]);
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id.as_str())
            .unwrap()["spent_nanoton"]
            .as_u64()
            .unwrap()
    };

    // Refused before any byte (the engine rejects it): nothing counted.
    let mut reject = ask(50);
    reject["user"] = json!("reject");
    let (status, _, _) = chat(&net, &auth, &reject).await;
    assert_eq!(status, 400);
    assert_eq!(spent(&net), 0);

    // Read a few chunks of a long stream, then hang up.
    let mut body = ask(200);
    body["stream"] = json!(true);
    let mut sse = SseReader::open(&net.chat_url(), &body, &[("authorization", &auth)]).await;
    assert_eq!(sse.status, 200);
    for _ in 0..3 {
        sse.next().await.expect("a chunk");
    }
    drop(sse);
    let counted = {
        let mut counted = 0;
        for _ in 0..100 {
            counted = spent(&net);
            if counted > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        counted
    };
    // The hold: (request bytes + 200 completion tokens) × 100 nanoton.
    let bytes = body.to_string().len() as u64;
    assert!(
        counted >= 200 * 100 && counted <= (bytes + 64 + 200) * 100,
        "counted {counted}"
    );
}

/// Moving the client's money needs the admin token even on an open
/// loopback API, and anything that spends must be sent as JSON: a web page
/// the operator visits can do neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_page_cannot_spend_or_move_money_through_an_open_client() {
    let up = upstream(UpstreamBehaviour::default()).await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;
    // What a cross-site form or fetch without a preflight can send.
    let (status, _, body) = post(
        &format!("{}/v1/cocoon/close", net.api),
        "{}",
        &[("content-type", "application/json")],
    )
    .await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("operator_only")),
        "{v}"
    );
    let req = http::Request::post(net.chat_url())
        .header("content-type", "text/plain")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            ask(4).to_string(),
        )))
        .unwrap();
    let (status, _, body) = send_request(req).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (415, Some("unsupported_media_type")),
        "{v}"
    );
    // The operator's own commands still work (they send the token).
    let out = cocoon_once(&["client", "close", "--api", &net.api]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("operator_only"), "{err}");
}
