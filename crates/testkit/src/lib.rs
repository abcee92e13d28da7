//! Test support: a deterministic OpenAI-compatible upstream.
//!
//! It stands in for an inference engine in tests and benchmarks, where the
//! subject is the network (routing, relaying, cancellation), not the model.
//! Every answer is `chunks` pieces of exactly `chunk_size` bytes of text
//! (`max_tokens`, when given, sets the number of pieces), optionally paced,
//! followed by a usage chunk when asked for and `[DONE]`. Asked for
//! `stream_options.continuous_usage_stats` (as vLLM offers), every chunk
//! also carries the token counts so far. It counts
//! requests, completions and cancellations (a client that went away before
//! the end), readable in-process or at `GET /test/stats`.
//!
//! A request with `"user": "reject"` is refused with HTTP 400, to exercise
//! error paths.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// How the upstream answers.
#[derive(Debug, Clone)]
pub struct UpstreamBehaviour {
    /// Pieces per answer when the request has no `max_tokens`.
    pub chunks: usize,
    /// Bytes of text per piece.
    pub chunk_size: usize,
    /// Pause between pieces.
    pub delay: Duration,
    /// Pause before the first piece (and before a non-streamed answer).
    pub first_byte_delay: Duration,
    /// Answer with these words, one per piece (`chunk_size` is then
    /// unused), instead of numbered letters: text no language model would
    /// write, for tests that score answers.
    pub words: Option<&'static str>,
}

impl UpstreamBehaviour {
    fn piece(&self, i: usize) -> String {
        match self.words {
            Some(words) => {
                let words: Vec<&str> = words.split_whitespace().collect();
                format!("{} ", words.get(i % words.len().max(1)).unwrap_or(&""))
            }
            None => piece(i, self.chunk_size),
        }
    }
}

impl Default for UpstreamBehaviour {
    fn default() -> Self {
        UpstreamBehaviour {
            chunks: 50,
            chunk_size: 128,
            delay: Duration::ZERO,
            first_byte_delay: Duration::ZERO,
            words: None,
        }
    }
}

/// What the upstream has seen.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests received.
    pub requests: AtomicU64,
    /// Answers sent in full.
    pub completed: AtomicU64,
    /// Streams abandoned by the caller before the end.
    pub cancelled: AtomicU64,
    /// Streams in progress.
    pub active: AtomicU64,
    /// Requests whose body asked for `stream_options.include_usage`.
    pub asked_usage: AtomicU64,
}

impl Counters {
    /// The counters as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "requests": self.requests.load(Ordering::SeqCst),
            "completed": self.completed.load(Ordering::SeqCst),
            "cancelled": self.cancelled.load(Ordering::SeqCst),
            "active": self.active.load(Ordering::SeqCst),
            "asked_usage": self.asked_usage.load(Ordering::SeqCst),
        })
    }
}

struct Upstream {
    behaviour: UpstreamBehaviour,
    counters: Arc<Counters>,
}

/// A running test upstream.
pub struct TestUpstream {
    /// Bound address.
    pub addr: SocketAddr,
    /// Live counters.
    pub counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl TestUpstream {
    /// Starts serving on `addr` (port 0 picks a free port).
    pub async fn start(
        addr: SocketAddr,
        behaviour: UpstreamBehaviour,
    ) -> std::io::Result<TestUpstream> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let state = Arc::new(Upstream {
            behaviour,
            counters: counters.clone(),
        });
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(chat))
            .route("/v1/completions", axum::routing::post(legacy))
            .route("/test/stats", axum::routing::get(stats))
            .with_state(state);
        let task = tokio::spawn(async move {
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|t| {
                let _ = t.set_nodelay(true);
            });
            let _ = axum::serve(listener, app).await;
        });
        Ok(TestUpstream {
            addr,
            counters,
            task,
        })
    }

    /// Base URL of its OpenAI API.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn stats(State(up): State<Arc<Upstream>>) -> Response {
    json(StatusCode::OK, up.counters.to_json())
}

async fn chat(State(up): State<Arc<Upstream>>, body: Bytes) -> Response {
    answer(up, body, true).await
}

async fn legacy(State(up): State<Arc<Upstream>>, body: Bytes) -> Response {
    answer(up, body, false).await
}

fn json(status: StatusCode, v: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}});
    json(status, body)
}

/// Piece `i` of an answer: its index, then filler, exactly `size` bytes.
fn piece(i: usize, size: usize) -> String {
    let mut s = format!("[{i:04}]");
    while s.len() < size {
        s.push((b'a' + (s.len() % 26) as u8) as char);
    }
    s.truncate(size);
    s
}

fn prompt_tokens(req: &Value) -> u64 {
    let text_len = |v: &Value| -> usize {
        match v {
            Value::String(s) => s.len(),
            other => other.to_string().len(),
        }
    };
    let bytes: usize = match (req.get("messages"), req.get("prompt")) {
        (Some(Value::Array(ms)), _) => ms
            .iter()
            .map(|m| m.get("content").map(text_len).unwrap_or(0))
            .sum(),
        (_, Some(p)) => text_len(p),
        _ => 0,
    };
    (bytes as u64).div_ceil(4).max(1)
}

async fn answer(up: Arc<Upstream>, body: Bytes, chat: bool) -> Response {
    up.counters.requests.fetch_add(1, Ordering::SeqCst);
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return error(StatusCode::BAD_REQUEST, "body must be a JSON object"),
    };
    if req.get("user").and_then(Value::as_str) == Some("reject") {
        return error(
            StatusCode::BAD_REQUEST,
            "the test upstream rejects requests from user 'reject'",
        );
    }
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("test")
        .to_string();
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = req
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if include_usage {
        up.counters.asked_usage.fetch_add(1, Ordering::SeqCst);
    }
    let running_usage = req
        .pointer("/stream_options/continuous_usage_stats")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let limit = req
        .get("max_tokens")
        .or_else(|| req.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .map(|n| n as usize);
    let n = limit.unwrap_or(up.behaviour.chunks);
    let finish = if limit.is_some() { "length" } else { "stop" };
    let prompt = prompt_tokens(&req);
    let seq = up.counters.requests.load(Ordering::SeqCst);
    let id = if chat {
        format!("chatcmpl-test-{seq}")
    } else {
        format!("cmpl-test-{seq}")
    };
    let created = 1_700_000_000u64;
    let usage = serde_json::json!({"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n as u64});
    let behaviour = up.behaviour.clone();

    if !stream {
        tokio::time::sleep(up.behaviour.first_byte_delay).await;
        let text: String = (0..n).map(|i| behaviour.piece(i)).collect();
        let choice = if chat {
            serde_json::json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": null})
        } else {
            serde_json::json!({"index": 0, "text": text, "finish_reason": finish, "logprobs": null})
        };
        let object = if chat {
            "chat.completion"
        } else {
            "text_completion"
        };
        up.counters.completed.fetch_add(1, Ordering::SeqCst);
        return json(
            StatusCode::OK,
            serde_json::json!({
                "id": id, "object": object, "created": created, "model": model,
                "choices": [choice], "usage": usage,
            }),
        );
    }

    let object = if chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let frame = move |i: usize| -> Bytes {
        let last = i + 1 == n;
        let fr = if last {
            Value::String(finish.into())
        } else {
            Value::Null
        };
        let choice = if chat {
            serde_json::json!({"index": 0, "delta": {"content": behaviour.piece(i)}, "finish_reason": fr})
        } else {
            serde_json::json!({"index": 0, "text": behaviour.piece(i), "finish_reason": fr, "logprobs": null})
        };
        let mut chunk = serde_json::json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice]});
        if running_usage {
            chunk["usage"] = serde_json::json!({"prompt_tokens": prompt, "completion_tokens": i + 1, "total_tokens": prompt + i as u64 + 1});
        }
        Bytes::from(format!("data: {chunk}\n\n"))
    };
    let usage_frame = {
        let usage_chunk = serde_json::json!({"id": format!("usage-{seq}"), "object": object, "created": created, "choices": [], "usage": usage});
        Bytes::from(format!("data: {usage_chunk}\n\n"))
    };

    struct Guard {
        counters: Arc<Counters>,
        done: bool,
    }
    impl Drop for Guard {
        fn drop(&mut self) {
            self.counters.active.fetch_sub(1, Ordering::SeqCst);
            if self.done {
                self.counters.completed.fetch_add(1, Ordering::SeqCst);
            } else {
                self.counters.cancelled.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    up.counters.active.fetch_add(1, Ordering::SeqCst);
    let guard = Guard {
        counters: up.counters.clone(),
        done: false,
    };
    let behaviour = up.behaviour.clone();
    let stream = futures_util::stream::unfold((0usize, guard), move |(i, mut guard)| {
        let behaviour = behaviour.clone();
        let frame = frame.clone();
        let usage_frame = usage_frame.clone();
        async move {
            if i == 0 {
                tokio::time::sleep(behaviour.first_byte_delay).await;
            } else if i < n && !behaviour.delay.is_zero() {
                tokio::time::sleep(behaviour.delay).await;
            }
            let out = if i < n {
                frame(i)
            } else if i == n {
                if include_usage {
                    let mut b = usage_frame.to_vec();
                    b.extend_from_slice(b"data: [DONE]\n\n");
                    guard.done = true;
                    Bytes::from(b)
                } else {
                    guard.done = true;
                    Bytes::from_static(b"data: [DONE]\n\n")
                }
            } else {
                return None;
            };
            Some((Ok::<_, std::convert::Infallible>(out), (i + 1, guard)))
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response build failed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_have_exact_size_and_index() {
        assert_eq!(piece(3, 128).len(), 128);
        assert!(piece(3, 128).starts_with("[0003]"));
        assert_eq!(piece(12, 4), "[001");
    }
}
