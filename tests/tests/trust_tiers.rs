//! Trust tiers end to end, on the sim TEE: requests that demand a TEE kind,
//! a TCB, an attested GPU or a region reach only workers that offer them
//! (attested by their certificates: the simulated GPU's SPDM report and the
//! region claim), refusals name the unmet requirement, and every answer
//! says what it got.

use cocoon_e2e::*;
use serde_json::{json, Value};

const MODEL: &str = "tiered-model";

fn ask(trust: Value) -> Value {
    let mut body = chat_body(MODEL, false);
    body["cocoon"] = json!({ "trust": trust });
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_only_workers_that_meet_their_trust_requirements() {
    let up = upstream(UpstreamBehaviour::default()).await;
    let mut net = Network::start().await;
    net.add_worker(
        WorkerSpec::new("gpu-eu", MODEL, &up).with_args(&["--gpu", "sim", "--region", "eu-west"]),
    )
    .await;
    net.add_worker(WorkerSpec::new("plain-us", MODEL, &up).with_args(&["--region", "us-east"]))
        .await;

    // An attested GPU in the EU: only gpu-eu, every time; the answer says
    // what it got, as the client itself verified it.
    for _ in 0..4 {
        let (status, _, body) = post_json(
            &net.chat_url(),
            &ask(json!({"tee": ["sim"], "tcb": "up_to_date", "gpu": true, "regions": ["eu"]})),
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["cocoon"]["worker"], "gpu-eu");
        let got = &v["cocoon"]["trust"];
        assert_eq!(got["tee"], "sim");
        assert_eq!(got["tcb"], "up_to_date");
        assert_eq!(got["gpu"], "sim hopper GH100 A01");
        assert_eq!(got["region"], "eu-west");
        assert_eq!(got["open"], false);
        assert_eq!(got["demanded"]["regions"], json!(["eu"]));
    }
    // Through headers too: the US worker alone.
    let (status, _, body) = post(
        &net.chat_url(),
        chat_body(MODEL, false).to_string(),
        &[
            ("content-type", "application/json"),
            ("x-cocoon-trust-regions", "us"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["cocoon"]["worker"], "plain-us");
    assert_eq!(v["cocoon"]["trust"]["gpu"], Value::Null);

    // Nobody offers these: the refusal names what the best worker lacks.
    for (trust, says) in [
        (
            json!({"regions": ["asia"]}),
            "regions: the request accepts [asia]",
        ),
        (
            json!({"tee": ["tdx"]}),
            "tee: the request accepts [tdx], the worker runs sim",
        ),
        (
            json!({"gpu": true, "regions": ["us"]}),
            "the best available worker offers sim",
        ),
    ] {
        let (status, _, body) = post_json(&net.chat_url(), &ask(trust.clone())).await;
        assert_eq!(status, 400, "{trust}: {}", String::from_utf8_lossy(&body));
        let e: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(e["error"]["code"], "trust_requirements_unmet", "{e}");
        let msg = e["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{trust}: {msg}");
    }

    // /v1/models shows what the model's workers offer.
    let (_, _, body) = get(&format!("{}/v1/models", net.api)).await;
    let models: Value = serde_json::from_slice(&body).unwrap();
    let m = models["data"]
        .as_array()
        .and_then(|d| d.iter().find(|m| m["id"] == MODEL))
        .cloned()
        .unwrap_or(Value::Null);
    let trust = &m["cocoon"]["trust"];
    assert_eq!(trust["gpus"], json!(["sim hopper GH100 A01"]), "{m}");
    assert_eq!(trust["regions"], json!(["eu-west", "us-east"]), "{m}");
    assert_eq!(trust["tees"], json!(["sim"]), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_show_the_tier_factors_they_were_charged_at() {
    let up = upstream(UpstreamBehaviour::default()).await;
    let mut net = Network::start_with_proxy_args(&[
        "--tier-prices",
        r#"{"gpu": 15000, "regions": {"eu": 12000, "eu-west": 13000}, "open": 5000}"#,
    ])
    .await;
    net.add_worker(
        WorkerSpec::new("gpu-eu", MODEL, &up).with_args(&["--gpu", "sim", "--region", "eu"]),
    )
    .await;
    net.add_worker(WorkerSpec::new("plain-us", MODEL, &up).with_args(&["--region", "us"]))
        .await;
    let cost = |v: &Value| {
        let u = &v["usage"];
        let tokens =
            u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap();
        (u["cost_nanoton"].as_u64().unwrap(), tokens)
    };

    // 100 nanoton per token, coefficient 1000, ×1.5 for the GPU, ×1.2 for
    // the EU: 180 per token.
    let (status, _, body) = post_json(
        &net.chat_url(),
        &ask(json!({"gpu": true, "regions": ["eu"]})),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    let b = &v["usage"]["cost_breakdown"];
    assert_eq!(b["coefficient"], 1000, "{v}");
    assert_eq!(b["charged_coefficient"], 1800, "{v}");
    assert_eq!(
        b["factors"],
        json!([
            {"name": "gpu", "value": "attested", "multiplier_bp": 15000},
            {"name": "region", "value": "eu", "multiplier_bp": 12000},
        ])
    );
    assert_eq!(b["matches_published_tiers"], true);
    let (charged, tokens) = cost(&v);
    assert!(tokens > 0);
    assert_eq!(charged, 180 * tokens, "{v}");

    // Nothing demanded: no factor, 100 per token (whichever worker).
    let (status, _, body) = post_json(&net.chat_url(), &chat_body(MODEL, false)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["usage"]["cost_breakdown"]["factors"], json!([]), "{v}");
    let (charged, tokens) = cost(&v);
    assert_eq!(charged, 100 * tokens, "{v}");
}

fn open_worker(name: &str, up: &TestUpstream, hash: &str) -> WorkerSpec {
    let mut spec = WorkerSpec::new(name, MODEL, up).with_args(&["--tee", "none", "--region", "us"]);
    spec.model_hash = Some(hash.to_owned());
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_tier_serves_only_requests_that_opt_in_cheaper_and_spot_checked() {
    let up = upstream(UpstreamBehaviour::default()).await;
    let mut net = Network::start_with_proxy_args(&["--tier-prices", r#"{"open": 5000}"#]).await;
    let hash = "cd".repeat(32);
    net.add_worker(open_worker("open-us", &up, &hash)).await;

    // Only an open worker serves the model: a confidential request is
    // refused, naming why, whether it is sealed or sent in the clear.
    for e2e in ["required", "off"] {
        let mut body = chat_body(MODEL, false);
        body["cocoon"] = json!({"e2e": e2e});
        let (status, _, body) = post_json(&net.chat_url(), &body).await;
        assert_eq!(status, 400, "{e2e}: {}", String::from_utf8_lossy(&body));
        let e: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(e["error"]["code"], "trust_requirements_unmet", "{e}");
        let msg = e["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("open: the worker has no TEE"), "{msg}");
        assert!(msg.contains("offers the open tier (no TEE)"), "{msg}");
    }

    let mut sim = WorkerSpec::new("sim-eu", MODEL, &up).with_args(&["--region", "eu"]);
    sim.model_hash = Some(hash.clone());
    net.add_worker(sim).await;
    // Confidential requests go to the TEE worker only, every time.
    for _ in 0..6 {
        let (status, _, body) = post_json(&net.chat_url(), &chat_body(MODEL, false)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["cocoon"]["worker"], "sim-eu", "{v}");
    }

    // An opted-in request in the US reaches the open worker, at half price,
    // and says what it got. Its answers are spot-checked far more often.
    let mut opted = ask(json!({"open": true, "regions": ["us"]}));
    opted["temperature"] = json!(0);
    for _ in 0..40 {
        let (status, _, body) = post_json(&net.chat_url(), &opted).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["cocoon"]["worker"], "open-us", "{v}");
        assert_eq!(v["cocoon"]["trust"]["open"], true);
        assert_eq!(v["cocoon"]["trust"]["tee"], "none");
        let b = &v["usage"]["cost_breakdown"];
        assert_eq!(
            b["factors"],
            json!([{"name": "tee", "value": "open", "multiplier_bp": 5000}]),
            "{v}"
        );
        let u = &v["usage"];
        let tokens =
            u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap();
        assert_eq!(u["cost_nanoton"].as_u64().unwrap(), 50 * tokens, "{v}");
    }
    let mut planned = 0;
    for _ in 0..100 {
        let stats = proxy_stats(&net).await;
        let open = worker_record(&stats, "open-us");
        planned = open["spot_checks"]["planned"].as_u64().unwrap_or(0);
        let done = ["passed", "failed", "inconclusive", "skipped"]
            .iter()
            .filter_map(|k| open["spot_checks"][k].as_u64())
            .sum::<u64>();
        if planned >= 2 && done >= planned {
            assert_eq!(open["spot_checks"]["failed"], 0, "{open}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        planned >= 2,
        "open answers are checked at the open tier's rate: {planned} of 40"
    );
}
