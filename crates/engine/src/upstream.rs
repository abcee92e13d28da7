use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::sse::SseDecoder;
use crate::{Completion, Engine, EngineError, EngineEvent, EventStream, GenerateRequest};

/// How to reach an OpenAI-compatible engine.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// API base, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// Model name the engine knows the model by (for Ollama `smollm2:135m`);
    /// the `model` field of requests is replaced by it.
    pub upstream_model: String,
    /// Model name announced to the network; answers are relabelled with it.
    pub served_model: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<String>,
    /// Limit for connecting to the engine.
    pub connect_timeout: Duration,
    /// Ask for token counts in every streamed chunk
    /// (`stream_options.continuous_usage_stats`, which vLLM and SGLang
    /// support), so an answer cut off midway is charged exactly. Engines
    /// that refuse unknown options must leave it off; their cut-off
    /// answers are then charged by counting chunks.
    pub running_usage: bool,
    /// The SHA-256 of the weights the engine serves, as its operator declares
    /// it (an upstream engine cannot be asked); `None` when not declared.
    pub model_hash: Option<cocoon_core::ModelHash>,
}

/// An engine reached over HTTP with the OpenAI API.
#[derive(Debug, Clone)]
pub struct OpenAiUpstream {
    config: UpstreamConfig,
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// The largest non-streamed answer or error body read from an engine.
const MAX_BODY: usize = 64 * 1024 * 1024;

impl OpenAiUpstream {
    /// Checks the URL and prepares a connection pool.
    pub fn new(config: UpstreamConfig) -> Result<Self, EngineError> {
        let base = config.base_url.trim_end_matches('/').to_string();
        let uri: http::Uri = base.parse().map_err(|e| {
            EngineError::BadRequest(format!("upstream URL {base:?} is invalid: {e}"))
        })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(EngineError::BadRequest(format!(
                "upstream URL {base:?} must be http://HOST:PORT/PATH (the engine runs beside the worker, inside its TEE)"
            )));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(OpenAiUpstream {
            config,
            base,
            client,
        })
    }

    fn prepare_body(&self, req: &GenerateRequest) -> Result<Bytes, EngineError> {
        let mut body: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&req.body).map_err(|e| {
                EngineError::BadRequest(format!("request body is not a JSON object: {e}"))
            })?;
        body.insert(
            "model".into(),
            serde_json::Value::String(self.config.upstream_model.clone()),
        );
        body.insert("stream".into(), serde_json::Value::Bool(req.stream));
        if req.stream {
            // Usage is what the network bills by: always ask for it.
            let opts = body
                .entry("stream_options")
                .or_insert_with(|| serde_json::json!({}));
            if let Some(o) = opts.as_object_mut() {
                o.insert("include_usage".into(), serde_json::Value::Bool(true));
                if self.config.running_usage {
                    o.insert(
                        "continuous_usage_stats".into(),
                        serde_json::Value::Bool(true),
                    );
                }
            }
        } else {
            body.remove("stream_options");
        }
        serde_json::to_vec(&body)
            .map(Bytes::from)
            .map_err(|e| EngineError::BadRequest(e.to_string()))
    }

    async fn send(&self, req: GenerateRequest) -> Result<EventStream, EngineError> {
        let body = self.prepare_body(&req)?;
        let mut builder = http::Request::post(format!("{}{}", self.base, req.endpoint.path()))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-request-id", req.request_id.as_str());
        if req.stream {
            builder = builder.header(http::header::ACCEPT, "text/event-stream");
        }
        if let Some(key) = &self.config.api_key {
            builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| EngineError::BadRequest(e.to_string()))?;
        let response =
            self.client.request(request).await.map_err(|e| {
                EngineError::Unavailable(format!("{}: {}", self.base, error_chain(&e)))
            })?;

        let status = response.status();
        if !status.is_success() {
            let body = read_limited(response.into_body()).await.unwrap_or_default();
            let message = error_message(&body);
            return Err(if status.is_client_error() {
                EngineError::Rejected {
                    status: status.as_u16(),
                    message,
                }
            } else {
                EngineError::Failed(format!("HTTP {status}: {message}"))
            });
        }

        let relabel = Relabel::new(&self.config);
        if !req.stream {
            let body = read_limited(response.into_body()).await?;
            let (body, completion) = non_streamed(body, &relabel)?;
            let events = vec![
                Ok(EngineEvent::Chunk {
                    data: body,
                    so_far: Some(completion.usage),
                }),
                Ok(EngineEvent::Done(completion)),
            ];
            return Ok(Box::pin(futures_util::stream::iter(events)));
        }
        Ok(Box::pin(streamed(response.into_body(), relabel)))
    }
}

impl Engine for OpenAiUpstream {
    fn model_hash(&self) -> Option<cocoon_core::ModelHash> {
        self.config.model_hash
    }

    fn describe(&self) -> String {
        format!(
            "openai-upstream {} (model {})",
            self.base, self.config.upstream_model
        )
    }

    fn generate(
        &self,
        request: GenerateRequest,
    ) -> BoxFuture<'_, Result<EventStream, EngineError>> {
        Box::pin(self.send(request))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The engine's whole answer body, at most [`MAX_BODY`] bytes.
async fn read_limited(body: hyper::body::Incoming) -> Result<Bytes, EngineError> {
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    limited
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| EngineError::Failed(format!("reading the engine's answer failed: {e}")))
}

/// The `error.message` of an OpenAI-style error body, else the body text.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Wrapper {
        error: Inner,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Inner {
        Obj { message: String },
        Text(String),
    }
    match serde_json::from_slice::<Wrapper>(body) {
        Ok(Wrapper {
            error: Inner::Obj { message } | Inner::Text(message),
        }) => message,
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
    }
}

/// The members of a chunk the worker needs; everything else is skipped
/// without being materialised.
#[derive(Deserialize)]
struct ChunkPeek<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    created: Option<i64>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    choices: Option<Vec<serde::de::IgnoredAny>>,
    #[serde(default)]
    usage: Option<cocoon_openai::UsageObject>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Replaces the model name in the engine's answers by the served one when
/// they differ.
#[derive(Debug, Clone)]
struct Relabel {
    to: String,
}

impl Relabel {
    fn new(c: &UpstreamConfig) -> Self {
        Relabel {
            to: c.served_model.clone(),
        }
    }

    fn needed(&self, model: Option<&str>) -> bool {
        matches!(model, Some(m) if m != self.to)
    }

    fn apply(&self, payload: &[u8]) -> Result<Bytes, EngineError> {
        let mut v: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|e| EngineError::Failed(format!("engine sent invalid JSON: {e}")))?;
        if let Some(o) = v.as_object_mut() {
            o.insert("model".into(), serde_json::Value::String(self.to.clone()));
        }
        serde_json::to_vec(&v)
            .map(Bytes::from)
            .map_err(|e| EngineError::Failed(e.to_string()))
    }
}

fn non_streamed(body: Bytes, relabel: &Relabel) -> Result<(Bytes, Completion), EngineError> {
    let peek: ChunkPeek<'_> = serde_json::from_slice(&body)
        .map_err(|e| EngineError::Failed(format!("engine answer is not valid JSON: {e}")))?;
    if let Some(err) = peek.error {
        return Err(EngineError::Failed(format!(
            "engine reported an error: {err}"
        )));
    }
    let completion = Completion {
        usage: peek.usage.map(|u| u.usage()).unwrap_or_default(),
        response_id: peek.id.map(Cow::into_owned).unwrap_or_default(),
        created: peek.created.unwrap_or(0),
        model: relabel.to.clone(),
    };
    let body = if relabel.needed(peek.model.as_deref()) {
        relabel.apply(&body)?
    } else {
        body.clone()
    };
    Ok((body, completion))
}

/// Reads an engine's streamed answer: the body's bytes in, engine events
/// out. Kept apart from the HTTP body so that any bytes can be fed to it,
/// as a hostile or broken engine might send them.
#[derive(Debug)]
pub struct StreamReader {
    decoder: SseDecoder,
    relabel: Relabel,
    completion: Completion,
    saw_usage: bool,
    pending: std::collections::VecDeque<Result<EngineEvent, EngineError>>,
    finished: bool,
}

impl StreamReader {
    /// A reader for an answer served as `model` (chunks naming another
    /// model are relabelled).
    pub fn new(model: &str) -> Self {
        StreamReader {
            decoder: SseDecoder::default(),
            completion: Completion {
                model: model.to_string(),
                ..Completion::default()
            },
            relabel: Relabel { to: model.into() },
            saw_usage: false,
            pending: Default::default(),
            finished: false,
        }
    }

    /// Feeds bytes of the body as they arrive; nothing after the answer
    /// ended (or failed) is read.
    pub fn feed(&mut self, data: &[u8]) {
        if self.finished {
            return;
        }
        match self.decoder.push(data) {
            Ok(events) => {
                for e in events {
                    self.payload(e);
                    if self.finished {
                        break;
                    }
                }
            }
            Err(e) => self.fail(e.to_string()),
        }
    }

    /// The body ended: an answer without `[DONE]` is complete only if the
    /// engine reported its usage.
    pub fn end(&mut self) {
        if let Some(e) = self.decoder.finish() {
            if !self.finished {
                self.payload(e);
            }
        }
        if !self.finished {
            if self.saw_usage {
                // Some engines close without [DONE] after usage.
                self.done();
            } else {
                self.fail("engine closed the stream before [DONE]".into());
            }
        }
    }

    /// The next event read, in order.
    pub fn next_event(&mut self) -> Option<Result<EngineEvent, EngineError>> {
        self.pending.pop_front()
    }

    /// Whether the answer ended (done or failed) and every event was taken.
    pub fn is_over(&self) -> bool {
        self.finished && self.pending.is_empty()
    }

    fn fail(&mut self, message: String) {
        self.pending.push_back(Err(EngineError::Failed(message)));
        self.finished = true;
    }

    fn done(&mut self) {
        let c = std::mem::take(&mut self.completion);
        self.pending.push_back(Ok(EngineEvent::Done(c)));
        self.finished = true;
    }
    fn payload(&mut self, data: Bytes) {
        if &data[..] == b"[DONE]" {
            if !self.saw_usage {
                tracing::warn!("engine reported no usage for a streamed answer");
            }
            self.done();
            return;
        }
        let peek: ChunkPeek<'_> = match serde_json::from_slice(&data) {
            Ok(p) => p,
            Err(e) => return self.fail(format!("engine sent a chunk that is not JSON: {e}")),
        };
        if let Some(err) = peek.error {
            return self.fail(format!("engine reported an error mid-answer: {err}"));
        }
        if self.completion.response_id.is_empty() {
            if let Some(id) = &peek.id {
                self.completion.response_id = id.to_string();
            }
            self.completion.created = peek.created.unwrap_or(0);
        }
        let has_choices = peek.choices.as_ref().is_some_and(|c| !c.is_empty());
        let mut so_far = None;
        if let Some(u) = peek.usage {
            let u = u.usage();
            self.completion.usage = u;
            self.saw_usage = true;
            so_far = Some(u);
            if !has_choices {
                // The usage-only chunk travels as the typed completion; the
                // client re-emits it if the app asked for usage.
                return;
            }
        }
        let out = if self.relabel.needed(peek.model.as_deref()) {
            match self.relabel.apply(&data) {
                Ok(b) => b,
                Err(e) => {
                    self.pending.push_back(Err(e));
                    self.finished = true;
                    return;
                }
            }
        } else {
            data
        };
        self.pending
            .push_back(Ok(EngineEvent::Chunk { data: out, so_far }));
    }
}

/// Reads an answer that is not streamed: its body and what it says of
/// itself, relabelled to `model`.
pub fn read_answer(body: Bytes, model: &str) -> Result<(Bytes, Completion), EngineError> {
    non_streamed(body, &Relabel { to: model.into() })
}

fn streamed(
    body: hyper::body::Incoming,
    relabel: Relabel,
) -> impl futures_util::Stream<Item = Result<EngineEvent, EngineError>> + Send {
    let reader = StreamReader::new(&relabel.to);
    futures_util::stream::unfold((body, reader), |(mut body, mut reader)| async move {
        loop {
            if let Some(ev) = reader.next_event() {
                return Some((ev, (body, reader)));
            }
            if reader.finished {
                return None;
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        reader.feed(&data);
                    }
                }
                Some(Err(e)) => reader.fail(format!("engine connection failed mid-answer: {e}")),
                None => reader.end(),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_core::Usage;

    fn relabel(to: &str) -> Relabel {
        Relabel { to: to.into() }
    }

    #[test]
    fn non_streamed_reads_usage_and_relabels() {
        let body = Bytes::from_static(
            br#"{"id":"cmpl-1","created":7,"model":"up","choices":[{"index":0}],
                "usage":{"prompt_tokens":5,"completion_tokens":3,
                "prompt_tokens_details":{"cached_tokens":2},
                "completion_tokens_details":{"reasoning_tokens":1}}}"#,
        );
        let (out, c) = non_streamed(body, &relabel("served")).unwrap();
        assert_eq!(
            c.usage,
            Usage {
                prompt: 5,
                cached: 2,
                completion: 3,
                reasoning: 1
            }
        );
        assert_eq!(c.response_id, "cmpl-1");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "served");
    }

    #[test]
    fn payloads_are_forwarded_untouched_when_names_match() {
        let mut st = stream_state();
        let chunk = Bytes::from_static(
            br#"{"id":"x","created":3,"model":"m","choices":[{"delta":{"content":"hi"}}]}"#,
        );
        st.payload(chunk.clone());
        st.payload(Bytes::from_static(br#"{"id":"x","model":"m","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":9}}"#));
        st.payload(Bytes::from_static(b"[DONE]"));
        let events: Vec<_> = st.pending.drain(..).collect();
        assert_eq!(events.len(), 2, "usage-only chunk is not forwarded");
        assert_eq!(
            events[0],
            Ok(EngineEvent::Chunk {
                data: chunk,
                so_far: None
            })
        );
        match &events[1] {
            Ok(EngineEvent::Done(c)) => {
                assert_eq!(c.usage.prompt, 4);
                assert_eq!(c.usage.completion, 9);
                assert_eq!(c.response_id, "x");
                assert_eq!(c.created, 3);
            }
            other => panic!("expected Done, got {other:?}"),
        }
        assert!(st.finished);
    }

    #[test]
    fn running_usage_in_chunks_travels_with_them() {
        let mut st = stream_state();
        // vLLM's continuous_usage_stats: every chunk carries the counts so far.
        st.payload(Bytes::from_static(br#"{"id":"x","model":"m","choices":[{"delta":{"content":"a"}}],"usage":{"prompt_tokens":7,"completion_tokens":1}}"#));
        st.payload(Bytes::from_static(br#"{"id":"x","model":"m","choices":[{"delta":{"content":"bc"}}],"usage":{"prompt_tokens":7,"completion_tokens":3}}"#));
        let so_far: Vec<_> = st
            .pending
            .drain(..)
            .map(|e| match e {
                Ok(EngineEvent::Chunk { so_far, .. }) => so_far,
                other => panic!("expected a chunk, got {other:?}"),
            })
            .collect();
        let counts = |completion| {
            Some(Usage {
                prompt: 7,
                completion,
                ..Usage::default()
            })
        };
        assert_eq!(so_far, vec![counts(1), counts(3)]);
    }

    #[test]
    fn error_payload_fails_the_stream() {
        let mut st = stream_state();
        st.payload(Bytes::from_static(br#"{"error":{"message":"boom"}}"#));
        assert!(
            matches!(st.pending.pop_front(), Some(Err(EngineError::Failed(m))) if m.contains("boom"))
        );
    }

    #[test]
    fn error_messages_are_extracted() {
        assert_eq!(
            error_message(br#"{"error":{"message":"bad model","type":"x"}}"#),
            "bad model"
        );
        assert_eq!(error_message(br#"{"error":"plain"}"#), "plain");
        assert_eq!(error_message(b"not json"), "not json");
    }

    /// A stream being relayed for model `m`, fed by hand.
    fn stream_state() -> StreamReader {
        StreamReader::new("m")
    }

    #[test]
    fn a_stream_reads_the_same_however_its_bytes_are_split() {
        let body = b"data: {\"id\":\"x\",\"model\":\"up\",\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\r\n: keep-alive\n\ndata: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
        let read = |cut: usize| {
            let mut r = StreamReader::new("m");
            r.feed(&body[..cut]);
            r.feed(&body[cut..]);
            r.end();
            std::iter::from_fn(|| r.next_event()).collect::<Vec<_>>()
        };
        let whole = read(body.len());
        assert_eq!(whole.len(), 2, "{whole:?}");
        assert!(matches!(&whole[1], Ok(EngineEvent::Done(c)) if c.usage.completion == 1));
        for cut in 0..body.len() {
            assert_eq!(read(cut), whole, "split at {cut}");
        }
    }

    #[test]
    fn a_stream_cut_before_done_without_usage_fails() {
        let mut r = StreamReader::new("m");
        r.feed(b"data: {\"choices\":[{}]}\n\n");
        r.end();
        assert!(matches!(
            r.next_event(),
            Some(Ok(EngineEvent::Chunk { .. }))
        ));
        assert!(
            matches!(r.next_event(), Some(Err(EngineError::Failed(m))) if m.contains("before [DONE]"))
        );
        assert!(r.is_over());
    }
}
