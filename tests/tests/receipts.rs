//! Verifiable answers: every answer carries the worker's signed receipt,
//! the client checks the worker's certificate against its own policy, and
//! `cocoon receipt verify` checks a saved answer offline.

use cocoon_e2e::*;
use serde_json::{json, Value};
use sha2::Digest;

const MODEL: &str = "test-model";

fn verify_file(net: &Network, path: &std::path::Path) -> std::process::Output {
    cocoon_once(&[
        "receipt",
        "verify",
        &path.display().to_string(),
        "--policy",
        &net.tee.policy.display().to_string(),
        "--dev",
    ])
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Replaces the first `from` in the file by `to`.
fn tamper(path: &std::path::Path, from: &str, to: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in {text}");
    let out = path.with_extension("tampered");
    std::fs::write(&out, text.replacen(from, to, 1)).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_answer_verifies_offline_and_fails_after_any_change() {
    let up = upstream(UpstreamBehaviour {
        chunks: 3,
        chunk_size: 12,
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w1", MODEL, &up)).await;
    let image = net.tee.image_hash();

    // A whole answer: the receipt in the `cocoon` member and a header.
    let (status, headers, body) = post_json(&net.chat_url(), &chat_body(MODEL, false)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    let c = &v["cocoon"];
    assert_eq!(c["receipt_status"], "verified", "{c}");
    let r = &c["receipt"]["receipt"];
    assert_eq!(r["worker"], "w1");
    assert_eq!(r["tee"], "sim");
    assert_eq!(r["image_hash"], image.as_str());
    assert_eq!(r["stream"], false);
    assert_eq!(
        r["usage"]["completion_tokens"],
        v["usage"]["completion_tokens"]
    );
    assert_eq!(r["request_id"], headers["x-request-id"].to_str().unwrap());
    // The proxy charges: the worker signs the prices and what they cost.
    assert_eq!(r["cost_nanoton"], v["usage"]["cost_nanoton"]);
    assert!(r["prices"]["price_per_token"].as_u64().unwrap() > 0, "{r}");
    assert!(headers.contains_key("x-cocoon-receipt"));

    let dir = net.tee.dir.join("saved");
    std::fs::create_dir_all(&dir).unwrap();
    let whole = dir.join("answer.json");
    std::fs::write(&whole, &body).unwrap();
    let out = verify_file(&net, &whole);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("VERIFIED"), "{}", text(&out));
    assert!(
        text(&out).contains("SIMULATED"),
        "a sim verdict says so: {}",
        text(&out)
    );

    // Any change to the answer, the receipt or the certificate fails,
    // naming the check.
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    let mut altered = content.to_string();
    altered.replace_range(0..1, if content.starts_with('X') { "Y" } else { "X" });
    let out = verify_file(&net, &tamper(&whole, content, &altered));
    assert!(!out.status.success());
    assert!(text(&out).contains("answer_sha256"), "{}", text(&out));
    let tokens = format!("\"completion_tokens\":{}", r["usage"]["completion_tokens"]);
    let more = format!(
        "\"completion_tokens\":{}",
        r["usage"]["completion_tokens"].as_u64().unwrap() + 1
    );
    let out = verify_file(&net, &tamper(&whole, &tokens, &more));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("signature") || text(&out).contains("usage"),
        "{}",
        text(&out)
    );
    let cert = c["worker_certificate"].as_str().unwrap();
    let out = verify_file(&net, &tamper(&whole, &cert[100..110], "AAAAAAAAAA"));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("certificate"), "{}", text(&out));

    // A streamed answer, saved as the events came, without asking for usage:
    // its last chunk still carries the receipt.
    let mut sse = SseReader::open(&net.chat_url(), &chat_body(MODEL, true), &[]).await;
    let events = sse.rest().await;
    assert_eq!(
        events.len(),
        3 + 2,
        "3 chunks, the receipt chunk, [DONE]: {events:?}"
    );
    let last: Value = serde_json::from_str(&events[3]).unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["cocoon"]["receipt_status"], "verified");
    assert_eq!(last["cocoon"]["receipt"]["receipt"]["stream"], true);
    let saved: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    let stream = dir.join("stream.txt");
    std::fs::write(&stream, &saved).unwrap();
    let out = verify_file(&net, &stream);
    assert!(out.status.success(), "{}", text(&out));
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    let piece = first["choices"][0]["delta"]["content"].as_str().unwrap();
    let out = verify_file(
        &net,
        &tamper(
            &stream,
            piece,
            &piece
                .to_uppercase()
                .replace(|c: char| c.is_ascii_digit(), "x"),
        ),
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("answer_sha256"), "{}", text(&out));

    // The client keeps the last receipts; an entry verifies on its own.
    let (status, _, body) = get(&format!("{}/v1/cocoon/receipts", net.api)).await;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");
    assert_eq!(
        list["data"][0]["receipt"]["receipt"]["stream"], true,
        "newest first"
    );
    let entry = dir.join("entry.json");
    std::fs::write(&entry, list["data"][1].to_string()).unwrap();
    let out = verify_file(&net, &entry);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("receipt only"), "{}", text(&out));

    // Without --dev a sim policy is refused: it proves nothing.
    let out = cocoon_once(&[
        "receipt",
        "verify",
        &whole.display().to_string(),
        "--policy",
        &net.tee.policy.display().to_string(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("SIMULATED"), "{}", text(&out));
}

/// The proxy accepts a worker image that the client's own policy does not:
/// the client checks the worker's certificate itself, refuses the answer
/// before any byte of it reaches the app, and stops using that proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_refuses_a_worker_its_own_policy_does_not_allow() {
    let up = upstream(UpstreamBehaviour::default()).await;
    let mut net = Network::start().await;
    // The client's development deposit is in the proxy's ledger before the
    // proxy restarts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, _, b) = get(&format!("{}/v1/cocoon/balance", net.api)).await;
        let b: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
        if b["deposited"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no deposit: {b}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The rogue worker's sim image: SHA-256 over its MRTD and four zero RTMRs.
    let mrtd = [0xab_u8; 48];
    let mut h = sha2::Sha256::new();
    h.update(mrtd);
    h.update([0u8; 48 * 4]);
    let rogue_image: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    // The proxy (only) allows it for workers.
    let lenient = net.tee.dir.join("lenient.toml");
    let policy = std::fs::read_to_string(&net.tee.policy).unwrap();
    let image = net.tee.image_hash();
    let worker_line = format!("worker = [\"{image}\"]");
    assert!(policy.contains(&worker_line), "{policy}");
    std::fs::write(
        &lenient,
        policy.replace(
            &worker_line,
            &format!("worker = [\"{image}\", \"{rogue_image}\"]"),
        ),
    )
    .unwrap();
    let i = net
        .proxy_args
        .iter()
        .position(|a| a == "--peer-policy")
        .unwrap();
    net.proxy_args[i + 1] = lenient.display().to_string();
    net.crash_and_restart_proxy("lenient-proxy").await;
    let mut rogue = WorkerSpec::new("rogue", MODEL, &up);
    rogue.sim_mrtd = Some(hex(&mrtd));
    net.add_worker(rogue).await;

    // Sealed (the default), the request goes to no worker this client does
    // not verify itself: it is refused before it leaves.
    let (status, _, body) = post_json(&net.chat_url(), &chat_body(MODEL, false)).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("e2e_unavailable"), "{text}");
    assert_eq!(
        up.counters
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    // In the clear, the proxy's choice is checked when it names the worker.
    let mut clear = chat_body(MODEL, false);
    clear["cocoon"] = json!({"e2e": "off"});
    let (status, _, body) = post_json(&net.chat_url(), &clear).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("worker_not_trusted"), "{text}");
    assert!(
        text.contains("image") && text.contains(&rogue_image),
        "names the check and the image: {text}"
    );
    assert_eq!(
        up.counters
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the worker ran it, but none of it reached the app"
    );

    // From now on this client does not use the proxy.
    let (status, _, body) = post_json(&net.chat_url(), &chat_body(MODEL, true)).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 502, "{text}");
    assert!(
        text.contains("proxy_distrusted") && text.contains("image"),
        "{text}"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Three workers, one of which answers differently: a replicated request
/// gets the honest answer, names the dissenter, carries every run's
/// receipt and charges all three; the dissenter's reputation falls and
/// ordinary requests are no longer routed to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_request_outvotes_a_dishonest_worker() {
    let honest = upstream(UpstreamBehaviour {
        chunks: 4,
        chunk_size: 12,
        ..Default::default()
    })
    .await;
    let dishonest = upstream(UpstreamBehaviour {
        chunks: 4,
        chunk_size: 13,
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    // All three name the same weights and run the same attested image on
    // the same attested hardware (the simulated GPU): an exact replay,
    // where bytes may be compared for money.
    for (name, up) in [("w1", &honest), ("w2", &honest), ("w3", &dishonest)] {
        let mut spec = WorkerSpec::new(name, MODEL, up).with_args(&["--gpu", "sim"]);
        spec.model_hash = Some("ab".repeat(32));
        net.add_worker(spec).await;
    }

    let mut body = chat_body(MODEL, false);
    body["cocoon"] = json!({"replicas": 3});
    let (status, headers, answer) = post_json(&net.chat_url(), &body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let v: Value = serde_json::from_slice(&answer).unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(content.len(), 4 * 12, "the honest answer: {content}");
    let r = &v["cocoon"]["replication"];
    let mut agreed: Vec<&str> = r["agreed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    agreed.sort();
    assert_eq!(agreed, ["w1", "w2"], "{r}");
    assert_eq!(r["dissented"], json!(["w3"]), "{r}");
    assert_eq!(r["receipts"].as_array().unwrap().len(), 3, "{r}");
    assert_eq!(v["cocoon"]["receipt_status"], "verified");
    assert_ne!(headers["x-cocoon-worker"], "w3");
    // The saved answer verifies offline, every run's receipt with it.
    let saved = net.tee.dir.join("replicated.json");
    std::fs::write(&saved, &answer).unwrap();
    let out = verify_file(&net, &saved);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        text(&out)
            .matches("receipt and certificate verified")
            .count(),
        3,
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("dissented: w3"), "{}", text(&out));
    // The client paid for the three runs it asked for.
    let costs: u64 = r["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["receipt"]["cost_nanoton"].as_u64().unwrap())
        .sum();
    assert_eq!(v["usage"]["cost_nanoton"].as_u64().unwrap(), costs);
    // The request the workers ran carried one seed, set by the client.
    let seeds: Vec<&str> = r["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["receipt"]["request_sha256"].as_str().unwrap())
        .collect();
    assert!(
        seeds.windows(2).all(|p| p[0] == p[1]),
        "every run ran the same request: {seeds:?}"
    );
    // The proxy signed slash evidence against the dissenter: the three
    // workers' own signed receipt facts, which its worker contract checks.
    let evidence = r["slash_evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), 1, "{r}");
    use base64::Engine as _;
    let boc = base64::engine::general_purpose::STANDARD
        .decode(evidence[0].as_str().unwrap())
        .unwrap();
    let signed = cocoon_receipt::evidence::SignedEvidence::from_boc(&boc).unwrap();
    signed.evidence.check_receipts().unwrap();
    assert_eq!(
        hex(&signed.evidence.accused.facts.request),
        seeds[0],
        "the evidence is about the request the workers ran"
    );
    let (_, _, log) = get(&format!("{}/evidence", net.proxy_http)).await;
    let log: Value = serde_json::from_slice(&log).unwrap();
    assert_eq!(log[0]["worker"], "w3", "{log}");
    assert_eq!(log[0]["evidence"], evidence[0], "{log}");
    // The dissenter's reputation fell, under its attested receipt key,
    // and routing avoids it.
    let stats = proxy_stats(&net).await;
    let w3 = worker_record(&stats, "w3");
    assert!(
        w3["identity"]
            .as_str()
            .is_some_and(|i| i.starts_with("key:")),
        "{stats}"
    );
    assert_eq!(
        w3["reputation"],
        json!({"agreed": 0, "dissented": 1, "avoided": true}),
        "{stats}"
    );
    // The table whose digest the proxy publishes on chain names it too.
    let (_, _, table) = get(&format!("{}/reputation", net.proxy_http)).await;
    let table: Value = serde_json::from_slice(&table).unwrap();
    let in_table = table["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["worker"] == w3["identity"])
        .cloned()
        .unwrap_or_default();
    assert_eq!(in_table["dissented"], 1, "{table}");
    assert_eq!(in_table["avoided"], true, "{table}");
    let (_, _, models) = get(&format!("{}/v1/models", net.api)).await;
    let models: Value = serde_json::from_slice(&models).unwrap();
    let rep = &models["data"][0]["cocoon"]["reputation"];
    assert_eq!(rep["compared_answers"], 3, "{models}");
    assert_eq!(rep["dissenting_answers"], 1, "{models}");
    assert_eq!(rep["avoided_workers"], 1, "{models}");
    assert_eq!(
        rep["requests"], 3,
        "one replicated request, three runs: {models}"
    );
    assert_eq!(rep["failed_requests"], 0, "{models}");
    for _ in 0..6 {
        let (status, headers, body) = post_json(&net.chat_url(), &chat_body(MODEL, false)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_ne!(
            headers["x-cocoon-worker"], "w3",
            "a suspect worker takes no ordinary requests"
        );
    }

    // A replicated stream carries only the agreed answer, and the replicas
    // in its last chunk.
    let mut body = chat_body(MODEL, true);
    body["cocoon"] = json!({"replicas": 3});
    let mut sse = SseReader::open(&net.chat_url(), &body, &[]).await;
    assert_eq!(sse.status, 200);
    let events = sse.rest().await;
    let text: String = events[..events.len() - 2]
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(text, content, "the same honest answer, streamed");
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(
        last["cocoon"]["replication"]["dissented"],
        json!(["w3"]),
        "{last}"
    );

    // Asking for more distinct workers than serve the model says so.
    let mut body = chat_body(MODEL, false);
    body["cocoon"] = json!({"replicas": 4});
    let (status, _, answer) = post_json(&net.chat_url(), &body).await;
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("only 3 owners serve"), "{text}");
}

/// Off chain a worker is the receipt key its attested certificate names:
/// under a new name it keeps its record, and two workers of one key are
/// one owner, never two replicas of one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_its_key_not_its_name() {
    let honest = upstream(UpstreamBehaviour {
        chunks: 2,
        chunk_size: 10,
        ..Default::default()
    })
    .await;
    let dishonest = upstream(UpstreamBehaviour {
        chunks: 2,
        chunk_size: 9,
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    let key = |k: &str| net.tee.dir.join(format!("operator-{k}.key"));
    let (a, b, c) = (key("a"), key("b"), key("c"));
    net.add_worker(WorkerSpec::new("w1", MODEL, &honest).with_receipt_key(a.clone()))
        .await;
    net.add_worker(WorkerSpec::new("w2", MODEL, &honest).with_receipt_key(b))
        .await;
    let w3 = net
        .add_worker(WorkerSpec::new("w3", MODEL, &dishonest).with_receipt_key(c.clone()))
        .await;
    let mut replicated = chat_body(MODEL, false);
    replicated["cocoon"] = json!({"replicas": 3});
    let (status, _, answer) = post_json(&net.chat_url(), &replicated).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let stats = proxy_stats(&net).await;
    let outvoted = worker_record(&stats, "w3");
    assert_eq!(outvoted["reputation"]["dissented"], 1, "{stats}");

    // A second worker of w1's owner: three owners still, however many
    // workers, and never two replicas of one owner.
    net.add_worker(WorkerSpec::new("w1-twin", MODEL, &honest).with_receipt_key(a))
        .await;
    let mut four = replicated.clone();
    four["cocoon"] = json!({"replicas": 4});
    let (status, _, answer) = post_json(&net.chat_url(), &four).await;
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("only 3 owners serve"), "{text}");
    for _ in 0..4 {
        let (status, _, answer) = post_json(&net.chat_url(), &replicated).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        let v: Value = serde_json::from_slice(&answer).unwrap();
        let r = &v["cocoon"]["replication"];
        let ran: Vec<&str> = ["agreed", "dissented"]
            .iter()
            .flat_map(|k| r[k].as_array().unwrap().iter())
            .map(|w| w.as_str().unwrap())
            .collect();
        assert_eq!(ran.len(), 3, "{r}");
        assert!(
            !(ran.contains(&"w1") && ran.contains(&"w1-twin")),
            "one owner ran two replicas: {r}"
        );
    }

    // Back under a new name with the same key, w3 is the worker it was.
    net.workers[w3].proc.kill();
    net.wait_workers(MODEL, 3).await;
    net.add_worker(WorkerSpec::new("fresh-start", MODEL, &dishonest).with_receipt_key(c))
        .await;
    let stats = proxy_stats(&net).await;
    let renamed = worker_record(&stats, "fresh-start");
    assert_eq!(renamed["identity"], outvoted["identity"], "{stats}");
    assert_eq!(renamed["names"], json!(["fresh-start"]), "{stats}");
    assert!(
        renamed["reputation"]["dissented"].as_u64() >= Some(1)
            && renamed["reputation"]["avoided"] == true,
        "{stats}"
    );
    for _ in 0..4 {
        let (status, headers, body) = post_json(&net.chat_url(), &chat_body(MODEL, false)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_ne!(headers["x-cocoon-worker"], "fresh-start");
    }
}

/// Asks `url` for `body`: what the answer cost the client, and the fee its
/// receipt says the worker earned.
async fn charged_answer(url: &str, body: &Value) -> (u64, u64) {
    let (status, _, answer) = post_json(url, body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let v: Value = serde_json::from_slice(&answer).unwrap();
    (
        v["usage"]["cost_nanoton"].as_u64().unwrap(),
        v["cocoon"]["receipt"]["receipt"]["worker_fee_nanoton"]
            .as_u64()
            .unwrap(),
    )
}

/// Three workers declaring the same weights, one answering differently:
/// each new worker's first deterministic answer is re-run on another, a
/// disagreement is settled by a third, the outvoted worker loses
/// reputation, the client pays only for the answers it got, and the
/// checking workers are paid from the commission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_checks_catch_a_worker_serving_other_weights_under_the_same_hash() {
    let honest = upstream(UpstreamBehaviour {
        chunks: 3,
        chunk_size: 12,
        ..Default::default()
    })
    .await;
    let dishonest = upstream(UpstreamBehaviour {
        chunks: 3,
        chunk_size: 11,
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    let hash = "ab".repeat(32);
    for (name, up) in [("w1", &honest), ("w2", &honest), ("w3", &dishonest)] {
        let mut spec = WorkerSpec::new(name, MODEL, up);
        spec.model_hash = Some(hash.clone());
        net.add_worker(spec).await;
    }
    let mut body = chat_body(MODEL, false);
    body["temperature"] = json!(0);
    // The proxy spot-checks only answers it may read: these are not sealed.
    body["cocoon"] = json!({"e2e": "off"});
    // The first answers of w1 and w2 are re-run on another worker; w3's
    // answer differs whether it answered or re-ran, and a third decides.
    let (mut charged, mut fees) = (0, 0);
    let mut stats = Value::Null;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let (cost, fee) = charged_answer(&net.chat_url(), &body).await;
        (charged, fees) = (charged + cost, fees + fee);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        stats = proxy_stats(&net).await;
        if worker_record(&stats, "w3")["reputation"]["avoided"] == true {
            break;
        }
    }
    let w3 = worker_record(&stats, "w3");
    assert_eq!(
        w3["reputation"]["agreed"], 0,
        "w3 was not outvoted: {stats}"
    );
    assert_eq!(w3["reputation"]["avoided"], true, "{stats}");
    for w in ["w1", "w2"] {
        let r = worker_record(&stats, w);
        assert!(
            r.is_null() || r["reputation"]["dissented"] == 0,
            "{w}: {stats}"
        );
    }
    let checks = |stats: &Value, field: &str| -> u64 {
        ["w1", "w2", "w3"]
            .iter()
            .filter_map(|w| worker_record(stats, w)["spot_checks"][field].as_u64())
            .sum()
    };
    assert!(
        checks(&stats, "planned") > 0,
        "spot-checks are in the stats: {stats}"
    );
    // Re-runs are the network's cost, not the client's.
    let (_, _, balance) = get(&format!("{}/v1/cocoon/balance", net.api)).await;
    let balance: Value = serde_json::from_slice(&balance).unwrap();
    assert_eq!(balance["spent"].as_u64().unwrap(), charged, "{balance}");
    // The workers that re-ran answers are paid from the commission: at
    // once what it held, the rest as later answers bring more. Their
    // workers (one payee here) earned the fees of the client's answers and
    // the checks' fees, less what is still due.
    for _ in 0..3 {
        let (cost, fee) = charged_answer(&net.chat_url(), &body).await;
        (charged, fees) = (charged + cost, fees + fee);
    }
    let books = |stats: &Value| {
        let ledger = &stats["detail"]["ledger"];
        let due: u64 = ledger["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w["checks_due"].as_u64())
            .sum();
        (
            ledger["earned"].as_u64().unwrap_or(0),
            ledger["commission"].as_u64().unwrap_or(0),
            due,
            checks(stats, "check_fees"),
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (earned, commission, due, check_fees) = loop {
        stats = proxy_stats(&net).await;
        let b = books(&stats);
        if b.0 + b.2 == fees + b.3 || std::time::Instant::now() > deadline {
            break b;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(check_fees > 0, "no check's fee was recorded: {stats}");
    assert!(due < check_fees, "none of the checks was paid: {stats}");
    assert_eq!(earned + due, fees + check_fees, "{stats}");
    assert_eq!(commission + earned, charged, "{stats}");
}

/// More replicated requests than the workers have slots for at once: each
/// claims all its workers together or waits in line holding none, so none
/// of them starves the others, and every one is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_replicated_requests_is_served_in_full() {
    let up = upstream(UpstreamBehaviour {
        chunks: 4,
        chunk_size: 8,
        delay: std::time::Duration::from_millis(40),
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    for name in ["w1", "w2", "w3"] {
        let mut spec = WorkerSpec::new(name, MODEL, &up);
        spec.max_active = 2;
        net.add_worker(spec).await;
    }
    let mut body = chat_body(MODEL, false);
    body["cocoon"] = json!({"replicas": 3, "timeout_ms": 30000});
    let url = net.chat_url();
    let answers = futures_util::future::join_all((0..8).map(|_| post_json(&url, &body))).await;
    for (status, _, answer) in answers {
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        let v: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(
            v["cocoon"]["replication"]["agreed"]
                .as_array()
                .unwrap()
                .len(),
            3,
            "{v}"
        );
    }
}

/// Temperature-0 output may differ on honest hardware of another class: a
/// replicated request outvotes the run that differs, but no slash evidence
/// is signed when it ran on other hardware than its witnesses (here a
/// simulated GPU beside workers whose hardware is unknown), where exact
/// replay is not guaranteed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disagreement_across_hardware_classes_is_never_slashed() {
    let majority = upstream(UpstreamBehaviour {
        chunks: 4,
        chunk_size: 12,
        ..Default::default()
    })
    .await;
    let other = upstream(UpstreamBehaviour {
        chunks: 4,
        chunk_size: 13,
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    for (name, up, gpu) in [
        ("c1", &majority, false),
        ("c2", &majority, false),
        ("g1", &other, true),
    ] {
        let mut spec = WorkerSpec::new(name, MODEL, up);
        spec.model_hash = Some("ab".repeat(32));
        if gpu {
            spec = spec.with_args(&["--gpu", "sim"]);
        }
        net.add_worker(spec).await;
    }
    let mut body = chat_body(MODEL, false);
    body["cocoon"] = json!({"replicas": 3});
    body["temperature"] = json!(0);
    let (status, _, answer) = post_json(&net.chat_url(), &body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let v: Value = serde_json::from_slice(&answer).unwrap();
    let r = &v["cocoon"]["replication"];
    assert_eq!(r["dissented"], json!(["g1"]), "{r}");
    assert_eq!(
        r["slash_evidence"],
        json!([]),
        "no evidence across hardware classes: {r}"
    );
    assert!(
        net.proxy.log().contains("no exact replay"),
        "the proxy says why it signed none:\n{}",
        net.proxy.log()
    );
}
