//! The bot's side of the Cocoon client API: every call is made for one
//! Telegram user, signed as Telegram signs a Mini App's initData (the bot
//! holds the same token), so the user has one budget in the bot and the
//! app, and the client, not the bot, enforces it.

use std::time::Duration;

use cocoon_client::access::telegram::{InitDataKey, TelegramUserId};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::watch;

/// A call to the client that did not give an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The client answered with an error.
    #[error("{message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The OpenAI error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The client could not be reached.
    #[error("the Cocoon client at {api} is unreachable: {reason}")]
    Unreachable {
        /// Its URL.
        api: String,
        /// What failed.
        reason: String,
    },
    /// The answer broke off or was malformed.
    #[error("the answer broke off: {0}")]
    Broken(String),
}

/// How long an answer may be, and how it is sampled.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most completion tokens.
    pub max_tokens: u64,
    /// The sampling temperature; `None`: the model's default. 0 makes the
    /// answer reproducible (and so checkable by a replay).
    pub temperature: Option<f64>,
}

/// A complete answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The text.
    pub text: String,
    /// The stream exactly as received: what its receipt is checked against.
    pub raw: String,
    /// The closing chunk's `cocoon` member: who answered, the receipt.
    pub cocoon: Value,
    /// The usage, with `cost_nanoton`.
    pub usage: Value,
}

/// The client API, for one bot.
#[derive(Clone)]
pub struct CocoonApi {
    base: String,
    http: reqwest::Client,
    key: InitDataKey,
}

impl CocoonApi {
    /// A client of `base` (`http://127.0.0.1:10000`), signing for users with
    /// the bot's token.
    pub fn new(base: &str, bot_token: &str) -> Result<CocoonApi, CallError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // A stalled answer frees its user: nothing for two minutes, or
            // ten in all, ends the call.
            .read_timeout(Duration::from_secs(120))
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| CallError::Unreachable {
                api: base.into(),
                reason: e.to_string(),
            })?;
        Ok(CocoonApi {
            base: base.trim_end_matches('/').to_string(),
            http,
            key: InitDataKey::from_bot_token(bot_token),
        })
    }

    /// The client's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn auth(&self, user: i64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!("tma {}", self.key.sign(TelegramUserId(user), now))
    }

    fn unreachable(&self, e: reqwest::Error) -> CallError {
        CallError::Unreachable {
            api: self.base.clone(),
            reason: e.to_string(),
        }
    }

    /// Asks `model` for the answer to `messages` on behalf of `user`,
    /// streaming: `progress` holds the text received so far.
    pub async fn ask(
        &self,
        user: i64,
        model: &str,
        messages: &[Value],
        limits: Limits,
        progress: &watch::Sender<String>,
    ) -> Result<Answer, CallError> {
        let mut body = json!({
            "model": model,
            "messages": messages,
            "max_tokens": limits.max_tokens,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if let Some(t) = limits.temperature {
            body["temperature"] = json!(t);
        }
        let resp = self
            .http
            .post(format!("{}/v1/chat/completions", self.base))
            .header("authorization", self.auth(user))
            .json(&body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !resp.status().is_success() {
            return Err(refusal(resp).await);
        }
        let mut answer = Answer {
            text: String::new(),
            raw: String::new(),
            cocoon: Value::Null,
            usage: Value::Null,
        };
        let mut events = SseEvents::default();
        let mut raw = Vec::new();
        let mut body = resp.bytes_stream();
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| CallError::Broken(e.to_string()))?;
            raw.extend_from_slice(&piece);
            for data in events.push(&piece) {
                if absorb(&mut answer, &data)? {
                    progress.send_replace(answer.text.clone());
                }
            }
        }
        // Whole events only were decoded; the stream as a whole is kept
        // byte for byte, as its receipt names it.
        answer.raw = String::from_utf8(raw)
            .map_err(|_| CallError::Broken("the stream is not UTF-8".into()))?;
        if answer.cocoon.is_null() {
            return Err(CallError::Broken(
                "the stream ended without its closing chunk".into(),
            ));
        }
        Ok(answer)
    }

    /// Checks a saved answer (`POST /v1/cocoon/receipts/verify`).
    pub async fn verify(&self, raw: &str) -> Result<Value, CallError> {
        let resp = self
            .http
            .post(format!("{}/v1/cocoon/receipts/verify", self.base))
            .body(raw.to_string())
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        json_of(resp).await
    }

    /// `user`'s account (`GET /v1/cocoon/balance`).
    pub async fn balance(&self, user: i64) -> Result<Value, CallError> {
        self.get(user, "/v1/cocoon/balance").await
    }

    /// The models served (`GET /v1/models`).
    pub async fn models(&self, user: i64) -> Result<Value, CallError> {
        self.get(user, "/v1/models").await
    }

    async fn get(&self, user: i64, path: &str) -> Result<Value, CallError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("authorization", self.auth(user))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        json_of(resp).await
    }
}

/// Takes one event's payload into the answer; whether the text grew.
fn absorb(answer: &mut Answer, data: &str) -> Result<bool, CallError> {
    if data == "[DONE]" {
        return Ok(false);
    }
    let chunk: Value = serde_json::from_str(data)
        .map_err(|e| CallError::Broken(format!("a chunk is not JSON: {e}")))?;
    if let Some(message) = chunk["error"]["message"].as_str() {
        return Err(CallError::Refused {
            status: 502,
            code: chunk["error"]["code"].as_str().unwrap_or("").to_string(),
            message: message.to_string(),
        });
    }
    if chunk["cocoon"].is_object() {
        answer.cocoon = chunk["cocoon"].clone();
    }
    if chunk["usage"].is_object() {
        answer.usage = chunk["usage"].clone();
    }
    match chunk["choices"][0]["delta"]["content"].as_str() {
        Some(t) if !t.is_empty() => {
            answer.text.push_str(t);
            Ok(true)
        }
        _ => Ok(false),
    }
}

async fn json_of(resp: reqwest::Response) -> Result<Value, CallError> {
    if !resp.status().is_success() {
        return Err(refusal(resp).await);
    }
    resp.json()
        .await
        .map_err(|e| CallError::Broken(format!("not JSON: {e}")))
}

async fn refusal(resp: reqwest::Response) -> CallError {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    CallError::Refused {
        status,
        code: body["error"]["code"].as_str().unwrap_or("").to_string(),
        message: body["error"]["message"]
            .as_str()
            .map_or_else(|| format!("HTTP {status}"), str::to_string),
    }
}

/// Server-sent events split out of a byte stream (a read may end inside
/// a character; an event never does).
#[derive(Debug, Default)]
struct SseEvents {
    pending: Vec<u8>,
}

impl SseEvents {
    /// Adds received bytes; returns the data of every event they completed.
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(cut) = self.pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = self.pending.drain(..cut + 2).collect();
            let event = String::from_utf8_lossy(&event);
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                out.push(data.join("\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_reads_are_put_together() {
        let mut e = SseEvents::default();
        assert!(e.push(b"data: {\"a\"").is_empty());
        assert_eq!(e.push(b":1}\n\ndata: [DO"), vec!["{\"a\":1}".to_string()]);
        assert_eq!(e.push(b"NE]\n\n"), vec!["[DONE]".to_string()]);
        // A character split between two reads.
        let text = "data: \u{e9}t\u{e9}\n\n".as_bytes();
        assert!(e.push(&text[..7]).is_empty());
        assert_eq!(e.push(&text[7..]), vec!["\u{e9}t\u{e9}".to_string()]);
    }
}
