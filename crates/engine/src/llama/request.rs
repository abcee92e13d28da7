//! What an OpenAI request asks the embedded engine to do. Parameters it
//! cannot honour are refused with HTTP 400 naming them, never ignored.

use cocoon_core::Endpoint;
use serde_json::Value;

use crate::EngineError;

/// The prompt, before the chat template is applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Prompt {
    /// `(role, content)` pairs.
    Chat(Vec<(String, String)>),
    /// A legacy completion prompt.
    Text(String),
}

/// Sampling and stopping parameters of one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GenParams {
    pub prompt: Prompt,
    pub max_tokens: Option<u32>,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: i32,
    pub min_p: f32,
    pub seed: Option<u32>,
    pub stop: Vec<String>,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub repetition_penalty: f32,
}

fn unsupported(param: &str, why: &str) -> EngineError {
    EngineError::Rejected {
        status: 400,
        message: format!("'{param}' {why} (not supported by the embedded engine)"),
    }
}

fn num(v: &Value, key: &str, default: f64) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(default)
}

fn text_of(content: &Value, i: usize) -> Result<String, EngineError> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                match (
                    p.get("type").and_then(Value::as_str),
                    p.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => out.push_str(t),
                    (kind, _) => {
                        return Err(unsupported(
                            &format!("messages[{i}].content"),
                            &format!(
                                "has a part of type {:?}; only text is understood",
                                kind.unwrap_or("?")
                            ),
                        ))
                    }
                }
            }
            Ok(out)
        }
        _ => Err(EngineError::BadRequest(format!(
            "messages[{i}].content is not text"
        ))),
    }
}

/// Reads a validated request body.
pub(crate) fn parse(endpoint: Endpoint, body: &[u8]) -> Result<GenParams, EngineError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| EngineError::BadRequest(format!("request body is not JSON: {e}")))?;
    let prompt = match endpoint {
        Endpoint::ChatCompletions => {
            let msgs = v
                .get("messages")
                .and_then(Value::as_array)
                .ok_or_else(|| EngineError::BadRequest("messages missing".into()))?;
            let mut out = Vec::with_capacity(msgs.len());
            for (i, m) in msgs.iter().enumerate() {
                let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
                let role = if role == "developer" { "system" } else { role };
                if m.get("tool_calls").is_some_and(|t| !t.is_null()) {
                    return Err(unsupported(&format!("messages[{i}].tool_calls"), "is set"));
                }
                out.push((
                    role.to_string(),
                    text_of(m.get("content").unwrap_or(&Value::Null), i)?,
                ));
            }
            Prompt::Chat(out)
        }
        Endpoint::Completions => match v.get("prompt") {
            Some(Value::String(s)) => Prompt::Text(s.clone()),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                Prompt::Text(a[0].as_str().unwrap_or_default().to_string())
            }
            _ => return Err(unsupported("prompt", "must be one string")),
        },
    };
    for (key, why) in [
        ("tools", "is set"),
        ("functions", "is set"),
        ("logprobs", "is requested"),
        ("top_logprobs", "is requested"),
        ("suffix", "is set"),
        ("echo", "is requested"),
    ] {
        match v.get(key) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(Value::Number(n)) if key == "logprobs" && n.as_u64() == Some(0) => {}
            Some(_) => return Err(unsupported(key, why)),
        }
    }
    if num(&v, "n", 1.0) != 1.0 {
        return Err(unsupported("n", "must be 1"));
    }
    if num(&v, "best_of", 1.0) != 1.0 {
        return Err(unsupported("best_of", "must be 1"));
    }
    if v.get("logit_bias")
        .and_then(Value::as_object)
        .is_some_and(|o| !o.is_empty())
    {
        return Err(unsupported("logit_bias", "is set"));
    }
    if let Some(kind) = v.pointer("/response_format/type").and_then(Value::as_str) {
        if kind != "text" {
            return Err(unsupported("response_format", &format!("asks for {kind}")));
        }
    }
    let max_tokens = v
        .get("max_completion_tokens")
        .or_else(|| v.get("max_tokens"))
        .and_then(Value::as_u64)
        .map(|n| n.min(u32::MAX as u64) as u32);
    let stop = match v.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    };
    let seed = v
        .get("seed")
        .and_then(Value::as_i64)
        .map(|s| (s as u64 ^ ((s as u64) >> 32)) as u32);
    Ok(GenParams {
        prompt,
        max_tokens,
        temperature: num(&v, "temperature", 1.0) as f32,
        top_p: num(&v, "top_p", 1.0) as f32,
        top_k: num(&v, "top_k", 0.0) as i32,
        min_p: num(&v, "min_p", 0.0) as f32,
        seed,
        stop,
        frequency_penalty: num(&v, "frequency_penalty", 0.0) as f32,
        presence_penalty: num(&v, "presence_penalty", 0.0) as f32,
        repetition_penalty: num(&v, "repetition_penalty", 1.0) as f32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sampling_parameters() {
        let p = parse(
            Endpoint::ChatCompletions,
            br#"{"model":"m","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}],
                "temperature":0,"top_p":0.9,"top_k":5,"seed":42,"stop":["\n"],"max_tokens":7,"presence_penalty":0.5}"#,
        )
        .unwrap();
        assert_eq!(
            p.prompt,
            Prompt::Chat(vec![
                ("system".into(), "be brief".into()),
                ("user".into(), "hi".into())
            ])
        );
        assert_eq!(
            (p.temperature, p.top_p, p.top_k, p.max_tokens),
            (0.0, 0.9, 5, Some(7))
        );
        assert_eq!(p.seed, Some(42));
        assert_eq!(p.stop, vec!["\n".to_string()]);
        assert_eq!(p.presence_penalty, 0.5);
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        for (body, param) in [
            (
                r#"{"messages":[{"role":"user","content":"x"}],"n":2}"#,
                "'n'",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"logprobs":true}"#,
                "'logprobs'",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]}"#,
                "'tools'",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}"#,
                "'response_format'",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
                "'messages[0].content'",
            ),
        ] {
            match parse(Endpoint::ChatCompletions, body.as_bytes()) {
                Err(EngineError::Rejected {
                    status: 400,
                    message,
                }) => assert!(message.contains(param), "{message}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        assert!(parse(
            Endpoint::ChatCompletions,
            br#"{"messages":[{"role":"user","content":"x"}],"logprobs":false,"tools":[]}"#
        )
        .is_ok());
        assert!(matches!(
            parse(Endpoint::Completions, br#"{"prompt":["a","b"]}"#),
            Err(EngineError::Rejected { .. })
        ));
    }
}
