//! Engines turn a validated OpenAI request into an answer. A worker holds
//! one [`Engine`]; this crate has the trait and the OpenAI-compatible
//! upstream engine ([`OpenAiUpstream`]) that fronts vLLM, SGLang,
//! llama.cpp's server, Ollama or anything else speaking the same API.
//!
//! Engines produce the answer as ready-to-send chunk payloads (the JSON
//! objects that follow `data:` in the SSE stream, or the whole body when not
//! streaming) and finish with a typed [`Completion`] carrying usage. They are
//! the only place an engine's output is parsed.

#[cfg(feature = "embedded")]
mod llama;
mod sse;
mod upstream;

#[cfg(feature = "embedded")]
pub use llama::{LlamaConfig, LlamaEngine};
pub use sse::SseDecoder;
pub use upstream::{read_answer, OpenAiUpstream, StreamReader, UpstreamConfig};

use std::pin::Pin;

use bytes::Bytes;
use cocoon_core::{Endpoint, RequestId, Usage};
use futures_util::future::BoxFuture;
use futures_util::Stream;

/// One request for an engine.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// The request's id, for logs.
    pub request_id: RequestId,
    /// Which API operation.
    pub endpoint: Endpoint,
    /// The validated OpenAI request body (JSON object).
    pub body: Bytes,
    /// Whether the answer is streamed.
    pub stream: bool,
}

/// An answer to score under an engine's model (teacher forcing).
#[derive(Debug, Clone)]
pub struct ScoreRequest {
    /// Which API operation the answer was for.
    pub endpoint: Endpoint,
    /// The validated OpenAI request body the answer was given to.
    pub body: Bytes,
    /// The answer's text (its first choice).
    pub answer: String,
}

/// How likely an answer is under an engine's model: the log-probability
/// of each of its tokens given the prompt and the tokens before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Answer tokens scored.
    pub tokens: u32,
    /// Mean natural-log probability per token, under the distribution the
    /// request's temperature gives.
    pub mean_logprob: f64,
    /// Mean of each token's surprise (−log p) minus the distribution's
    /// entropy at that position, in nats: about 0 for an answer sampled
    /// from this model at the request's temperature, large for text it
    /// would not have written. What a spot-check judges by.
    pub excess_surprise: f64,
    /// Share of tokens that were the model's most likely next token.
    pub top1_share: f64,
}

/// Final accounting of an answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completion {
    /// Token counts from the engine.
    pub usage: Usage,
    /// The engine's response id (`chatcmpl-…`), if it gave one.
    pub response_id: String,
    /// The engine's `created` timestamp.
    pub created: i64,
    /// Model name as it appeared in the answer.
    pub model: String,
}

/// What an engine yields while answering.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// Streaming: one SSE `data:` payload. Not streaming: the whole body.
    Chunk {
        /// The payload.
        data: Bytes,
        /// The tokens the answer has used up to and including this chunk,
        /// when the engine reports them; what a cut-off answer is charged.
        so_far: Option<Usage>,
    },
    /// The answer is complete; always the last event.
    Done(Completion),
}

/// Why an engine could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The engine refused the request as invalid; its status and message
    /// are passed to the app unchanged.
    #[error("engine rejected the request with HTTP {status}: {message}")]
    Rejected {
        /// The engine's HTTP status (4xx).
        status: u16,
        /// The engine's message.
        message: String,
    },
    /// The engine could not be reached.
    #[error("engine unreachable: {0}")]
    Unavailable(String),
    /// The engine failed while answering.
    #[error("engine failed: {0}")]
    Failed(String),
    /// The request body was not something this engine can send.
    #[error("bad request for engine: {0}")]
    BadRequest(String),
}

/// The answer as it is produced. Dropping it cancels the request at the
/// engine.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<EngineEvent, EngineError>> + Send>>;

/// An inference engine.
pub trait Engine: Send + Sync + 'static {
    /// Short description for logs and `/stats` (`upstream http://…`).
    fn describe(&self) -> String;

    /// SHA-256 of the weights this engine serves, when it knows them.
    fn model_hash(&self) -> Option<cocoon_core::ModelHash> {
        None
    }

    /// Starts answering `request`. Errors before the first chunk are
    /// returned here; later ones arrive in the stream.
    fn generate(&self, request: GenerateRequest)
        -> BoxFuture<'_, Result<EventStream, EngineError>>;

    /// Scores `request.answer` under this engine's model: one prefill over
    /// prompt and answer. Engines that run no model themselves (an
    /// upstream server) cannot.
    fn score(&self, request: ScoreRequest) -> BoxFuture<'_, Result<Score, EngineError>> {
        let _ = request;
        Box::pin(async {
            Err(EngineError::Unavailable(
                "this engine cannot score answers (only the embedded engine can)".into(),
            ))
        })
    }
}
