//! Bad requests are refused by the client with an OpenAI-style error that
//! names the parameter, before anything reaches a worker.

use std::sync::atomic::Ordering;

use cocoon_e2e::*;
use serde_json::Value;

const MODEL: &str = "test-model";

/// (what, endpoint, body, extra header, expected status, expected param)
type Case = (
    &'static str,
    &'static str,
    Vec<u8>,
    Option<(&'static str, &'static str)>,
    u16,
    Option<&'static str>,
);

fn cases() -> Vec<Case> {
    let chat = "/v1/chat/completions";
    let legacy = "/v1/completions";
    let msgs = r#""messages":[{"role":"user","content":"hi"}]"#;
    let c = |extra: &str| format!(r#"{{"model":"{MODEL}",{msgs}{extra}}}"#);
    let cases: Vec<(&str, &str, String, _, u16, _)> = vec![
        ("invalid JSON", chat, "{\"model\":".into(), None, 400, None),
        ("not an object", chat, "[1,2]".into(), None, 400, None),
        ("empty body", chat, "".into(), None, 400, None),
        (
            "duplicate field",
            chat,
            c(r#","temperature":1,"temperature":2"#),
            None,
            400,
            Some("temperature"),
        ),
        (
            "missing model",
            chat,
            format!("{{{msgs}}}"),
            None,
            400,
            Some("model"),
        ),
        (
            "model not a string",
            chat,
            format!(r#"{{"model":7,{msgs}}}"#),
            None,
            400,
            Some("model"),
        ),
        (
            "missing messages",
            chat,
            format!(r#"{{"model":"{MODEL}"}}"#),
            None,
            400,
            Some("messages"),
        ),
        (
            "empty messages",
            chat,
            format!(r#"{{"model":"{MODEL}","messages":[]}}"#),
            None,
            400,
            Some("messages"),
        ),
        (
            "bad role",
            chat,
            format!(r#"{{"model":"{MODEL}","messages":[{{"role":"wizard","content":"x"}}]}}"#),
            None,
            400,
            Some("messages[0].role"),
        ),
        (
            "user without content",
            chat,
            format!(r#"{{"model":"{MODEL}","messages":[{{"role":"user"}}]}}"#),
            None,
            400,
            Some("messages[0].content"),
        ),
        (
            "temperature too high",
            chat,
            c(r#","temperature":2.5"#),
            None,
            400,
            Some("temperature"),
        ),
        (
            "temperature mistyped",
            chat,
            c(r#","temperature":"hot""#),
            None,
            400,
            Some("temperature"),
        ),
        (
            "top_p above 1",
            chat,
            c(r#","top_p":1.5"#),
            None,
            400,
            Some("top_p"),
        ),
        (
            "presence_penalty below -2",
            chat,
            c(r#","presence_penalty":-3"#),
            None,
            400,
            Some("presence_penalty"),
        ),
        (
            "frequency_penalty above 2",
            chat,
            c(r#","frequency_penalty":2.1"#),
            None,
            400,
            Some("frequency_penalty"),
        ),
        ("n zero", chat, c(r#","n":0"#), None, 400, Some("n")),
        ("n fractional", chat, c(r#","n":1.5"#), None, 400, Some("n")),
        (
            "max_tokens zero",
            chat,
            c(r#","max_tokens":0"#),
            None,
            400,
            Some("max_tokens"),
        ),
        (
            "max_tokens negative",
            chat,
            c(r#","max_tokens":-5"#),
            None,
            400,
            Some("max_tokens"),
        ),
        (
            "max_completion_tokens mistyped",
            chat,
            c(r#","max_completion_tokens":"many""#),
            None,
            400,
            Some("max_completion_tokens"),
        ),
        (
            "stream mistyped",
            chat,
            c(r#","stream":"yes""#),
            None,
            400,
            Some("stream"),
        ),
        (
            "stream_options without stream",
            chat,
            c(r#","stream_options":{"include_usage":true}"#),
            None,
            400,
            Some("stream_options"),
        ),
        (
            "stream_options unknown member",
            chat,
            c(r#","stream":true,"stream_options":{"include_usage":true,"x":1}"#),
            None,
            400,
            Some("stream_options.x"),
        ),
        (
            "too many stop sequences",
            chat,
            c(r#","stop":["a","b","c","d","e"]"#),
            None,
            400,
            Some("stop"),
        ),
        (
            "stop mistyped",
            chat,
            c(r#","stop":5"#),
            None,
            400,
            Some("stop"),
        ),
        (
            "logit_bias out of range",
            chat,
            c(r#","logit_bias":{"50256":-101}"#),
            None,
            400,
            Some("logit_bias"),
        ),
        (
            "top_logprobs without logprobs",
            chat,
            c(r#","top_logprobs":3"#),
            None,
            400,
            Some("top_logprobs"),
        ),
        (
            "unknown parameter",
            chat,
            c(r#","temperatur":1"#),
            None,
            400,
            Some("temperatur"),
        ),
        (
            "response_format type",
            chat,
            c(r#","response_format":{"type":"yaml"}"#),
            None,
            400,
            Some("response_format.type"),
        ),
        (
            "tool_choice value",
            chat,
            c(r#","tool_choice":"sometimes""#),
            None,
            400,
            Some("tool_choice"),
        ),
        (
            "cocoon extension unknown member",
            chat,
            c(r#","cocoon":{"max_price":1}"#),
            None,
            400,
            Some("cocoon.max_price"),
        ),
        (
            "cocoon timeout zero",
            chat,
            c(r#","cocoon":{"timeout_ms":0}"#),
            None,
            400,
            Some("cocoon.timeout_ms"),
        ),
        (
            "max coefficient header",
            chat,
            c(""),
            Some(("x-cocoon-max-coefficient", "cheap")),
            400,
            Some("x-cocoon-max-coefficient"),
        ),
        (
            "timeout header",
            chat,
            c(""),
            Some(("x-cocoon-timeout-ms", "-1")),
            400,
            Some("x-cocoon-timeout-ms"),
        ),
        (
            "unknown model",
            chat,
            format!(r#"{{"model":"no-such-model",{msgs}}}"#),
            None,
            404,
            Some("model"),
        ),
        (
            "body over the size limit",
            chat,
            format!(
                r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"{}"}}]}}"#,
                "x".repeat(70_000)
            ),
            None,
            413,
            None,
        ),
        (
            "legacy: missing prompt",
            legacy,
            format!(r#"{{"model":"{MODEL}"}}"#),
            None,
            400,
            Some("prompt"),
        ),
        (
            "legacy: prompt mistyped",
            legacy,
            format!(r#"{{"model":"{MODEL}","prompt":{{"a":1}}}}"#),
            None,
            400,
            Some("prompt"),
        ),
        (
            "legacy: logprobs above 5",
            legacy,
            format!(r#"{{"model":"{MODEL}","prompt":"x","logprobs":6}}"#),
            None,
            400,
            Some("logprobs"),
        ),
        (
            "legacy: best_of below n",
            legacy,
            format!(r#"{{"model":"{MODEL}","prompt":"x","n":3,"best_of":2}}"#),
            None,
            400,
            Some("best_of"),
        ),
        (
            "legacy: messages is not a completions field",
            legacy,
            format!(r#"{{"model":"{MODEL}","prompt":"x",{msgs}}}"#),
            None,
            400,
            Some("messages"),
        ),
    ];
    let mut table: Vec<Case> = cases
        .into_iter()
        .map(|(w, p, b, h, s, q)| (w, p, b.into_bytes(), h, s, q))
        .collect();
    table.push((
        "invalid UTF-8",
        chat,
        b"{\"model\":\"m\xff\",\"messages\":[]}".to_vec(),
        None,
        400,
        None,
    ));
    table
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_the_right_status_and_param() {
    let up = upstream(UpstreamBehaviour {
        chunks: 1,
        ..Default::default()
    })
    .await;
    let mut net = Network::start_with_client_args(&["--max-body-bytes", "65536"]).await;
    net.add_worker(WorkerSpec::new("w", MODEL, &up)).await;
    let table = cases();
    assert!(table.len() >= 20);
    let mut failures = Vec::new();
    for (what, path, body, header, status, param) in &table {
        let headers: Vec<(&str, &str)> = header.iter().copied().collect();
        let (got, resp_headers, resp) =
            post(&format!("{}{path}", net.api), body.clone(), &headers).await;
        if *what == "invalid UTF-8" {
            assert!(
                String::from_utf8_lossy(&resp).contains("invalid_encoding"),
                "{}",
                String::from_utf8_lossy(&resp)
            );
        }
        let v: Value = serde_json::from_slice(&resp).unwrap_or(Value::Null);
        let err = &v["error"];
        let ok = got == *status
            && err["message"].as_str().is_some_and(|m| !m.is_empty())
            && err["type"].is_string()
            && err.get("code").is_some()
            && err["param"].as_str() == *param
            && resp_headers.contains_key("x-request-id");
        if !ok {
            failures.push(format!(
                "{what}: expected {status} param {param:?}, got {got} {}",
                String::from_utf8_lossy(&resp)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
    assert_eq!(
        up.counters.requests.load(Ordering::SeqCst),
        0,
        "no bad request reached the engine"
    );

    // The same request, made valid, goes through.
    let (status, _, _) = post_json(&net.chat_url(), &chat_body(MODEL, false)).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_and_paths_get_openai_errors() {
    let net = Network::start().await;
    let (status, _, body) = get(&net.chat_url()).await;
    assert_eq!(status, 405);
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["error"]["message"].is_string());
    let (status, _, body) = get(&format!("{}/v1/engines", net.api)).await;
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"]["code"],
        "unknown_url"
    );
}
