//! The embedded engine: llama.cpp in-process through `llama-cpp-2`.
//!
//! One scheduler thread owns the llama.cpp context and runs continuous
//! batching: every step decodes one batch holding the next token of every
//! active sequence (and chunks of newly admitted prompts), so concurrent
//! requests share the model and each step's matrix work. Requests arrive
//! over a channel; answers leave as engine events over per-request
//! channels; a request whose receiver is gone is dropped at the next step
//! and its KV cells freed.

mod request;
mod scheduler;
mod scorer;
mod slots;
mod text;

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use cocoon_core::{Endpoint, ModelHash};
use futures_util::future::BoxFuture;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};

use crate::{Engine, EngineError, EventStream, GenerateRequest, Score, ScoreRequest};

/// How to load and run a GGUF model.
#[derive(Debug, Clone)]
pub struct LlamaConfig {
    /// The weights file.
    pub model_path: PathBuf,
    /// Name under which the model is served.
    pub served_model: String,
    /// Its SHA-256 (computed by the caller, who also verified it).
    pub model_hash: ModelHash,
    /// Context length per sequence, in tokens (capped at the model's).
    pub context_per_sequence: u32,
    /// Sequences decoded together (the worker's max_active_requests).
    pub max_sequences: u32,
    /// CPU threads; 0 = all cores.
    pub threads: u32,
    /// Layers offloaded to a GPU (needs a GPU build); 0 = CPU only.
    pub gpu_layers: u32,
    /// A chat template (Jinja subset llama.cpp understands) to use instead
    /// of the one in the GGUF metadata.
    pub chat_template: Option<String>,
}

/// llama.cpp is initialised once per process.
fn backend() -> Result<&'static LlamaBackend, EngineError> {
    // A failed start is kept and told to every caller.
    static BACKEND: OnceLock<Result<LlamaBackend, EngineError>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(
                llama_cpp_2::LogOptions::default().with_logs_enabled(false),
            );
            LlamaBackend::init()
                .map_err(|e| EngineError::Failed(format!("cannot initialise llama.cpp: {e}")))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A GGUF model served in-process.
pub struct LlamaEngine {
    config: LlamaConfig,
    model: Arc<LlamaModel>,
    template: Option<LlamaChatTemplate>,
    context_per_sequence: u32,
    jobs: std::sync::mpsc::Sender<scheduler::Job>,
    scores: std::sync::Mutex<std::sync::mpsc::Sender<scorer::ScoreJob>>,
}

impl std::fmt::Debug for LlamaEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaEngine")
            .field("config", &self.config)
            .finish()
    }
}

impl LlamaEngine {
    /// Loads the model and starts the scheduler thread.
    pub fn load(config: LlamaConfig) -> Result<Self, EngineError> {
        let backend = backend()?;
        if !config.model_path.is_file() {
            return Err(EngineError::BadRequest(format!(
                "model file {} does not exist",
                config.model_path.display()
            )));
        }
        let params = LlamaModelParams::default().with_n_gpu_layers(config.gpu_layers);
        let model =
            LlamaModel::load_from_file(backend, &config.model_path, &params).map_err(|e| {
                EngineError::Failed(format!(
                    "cannot load {} as a GGUF model: {e}",
                    config.model_path.display()
                ))
            })?;
        let model = Arc::new(model);
        let template = match &config.chat_template {
            Some(t) => Some(
                LlamaChatTemplate::new(t)
                    .map_err(|e| EngineError::BadRequest(format!("chat template: {e}")))?,
            ),
            None => model.chat_template(None).ok(),
        };
        if template.is_none() {
            tracing::warn!(model = %config.model_path.display(), "the model has no chat template: chat completions will be refused (set one explicitly to enable them)");
        }
        let context_per_sequence = config.context_per_sequence.min(model.n_ctx_train()).max(64);
        let max_sequences = config.max_sequences.max(1);
        let threads = match config.threads {
            0 => std::thread::available_parallelism()
                .map(|n| n.get() as i32)
                .unwrap_or(2),
            n => n as i32,
        };
        let total_ctx = NonZeroU32::new(context_per_sequence.saturating_mul(max_sequences))
            .ok_or_else(|| EngineError::BadRequest("context size is zero".into()))?;
        let (jobs, rx) = std::sync::mpsc::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let setup = scheduler::Setup {
            model: model.clone(),
            total_ctx,
            context_per_sequence,
            max_sequences,
            threads,
        };
        std::thread::Builder::new()
            .name("llama-scheduler".into())
            .spawn(move || scheduler::run(backend, setup, rx, ready_tx))
            .map_err(|e| EngineError::Failed(format!("cannot start the scheduler thread: {e}")))?;
        ready_rx.recv().map_err(|_| {
            EngineError::Failed("the scheduler thread died while starting".into())
        })??;
        let (scores, score_rx) = std::sync::mpsc::channel();
        let scoring_model = model.clone();
        std::thread::Builder::new()
            .name("llama-scorer".into())
            .spawn(move || {
                scorer::run(
                    backend,
                    scoring_model,
                    context_per_sequence,
                    threads,
                    score_rx,
                )
            })
            .map_err(|e| EngineError::Failed(format!("cannot start the scorer thread: {e}")))?;
        tracing::info!(
            model = %config.model_path.display(),
            sha256 = %config.model_hash,
            context_per_sequence,
            max_sequences,
            threads,
            "embedded engine ready"
        );
        Ok(LlamaEngine {
            config,
            model,
            template,
            context_per_sequence,
            jobs,
            scores: std::sync::Mutex::new(scores),
        })
    }

    async fn score_answer(&self, req: ScoreRequest) -> Result<Score, EngineError> {
        let params = request::parse(req.endpoint, &req.body)?;
        let text = self.prompt_text(&params.prompt)?;
        let add_bos = matches!(params.prompt, request::Prompt::Text(_));
        let vocab = self.model.vocab();
        let prompt = vocab.tokenize(text.as_bytes(), add_bos, true);
        let answer = vocab.tokenize(req.answer.as_bytes(), false, false);
        let limit = self.context_per_sequence as usize;
        if prompt.len() + answer.len() > limit {
            return Err(EngineError::Rejected {
                status: 400,
                message: format!(
                    "prompt and answer are {} tokens; this model's context holds {limit} tokens per request",
                    prompt.len() + answer.len()
                ),
            });
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.scores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(scorer::ScoreJob {
                prompt,
                answer,
                temperature: params.temperature,
                reply,
            })
            .map_err(|_| EngineError::Failed("the scorer has stopped".into()))?;
        rx.await
            .map_err(|_| EngineError::Failed("the scorer stopped while scoring".into()))?
    }

    fn prompt_text(&self, prompt: &request::Prompt) -> Result<String, EngineError> {
        match prompt {
            request::Prompt::Text(t) => Ok(t.clone()),
            request::Prompt::Chat(messages) => {
                let template = self.template.as_ref().ok_or_else(|| EngineError::Rejected {
                    status: 400,
                    message: "this model has no chat template; use /v1/completions or configure a template".into(),
                })?;
                let chat = messages
                    .iter()
                    .map(|(role, content)| LlamaChatMessage::new(role.clone(), content.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        EngineError::BadRequest(format!("message contains a NUL byte: {e}"))
                    })?;
                self.model
                    .apply_chat_template(template, &chat, true)
                    .map_err(|e| {
                        EngineError::Failed(format!("applying the chat template failed: {e}"))
                    })
            }
        }
    }

    async fn start(&self, req: GenerateRequest) -> Result<EventStream, EngineError> {
        let params = request::parse(req.endpoint, &req.body)?;
        let text = self.prompt_text(&params.prompt)?;
        let add_bos = matches!(params.prompt, request::Prompt::Text(_));
        let tokens = self.model.vocab().tokenize(text.as_bytes(), add_bos, true);
        if tokens.is_empty() {
            return Err(EngineError::Rejected {
                status: 400,
                message: "the prompt is empty".into(),
            });
        }
        let limit = self.context_per_sequence as usize;
        if tokens.len() >= limit {
            return Err(EngineError::Rejected {
                status: 400,
                message: format!(
                    "the prompt is {} tokens; this model's context holds {limit} tokens per request",
                    tokens.len()
                ),
            });
        }
        let room = (limit - tokens.len()) as u32;
        let max_tokens = params.max_tokens.unwrap_or(room).min(room);
        let (events, rx) = tokio::sync::mpsc::unbounded_channel();
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let id_prefix = match req.endpoint {
            Endpoint::ChatCompletions => "chatcmpl",
            Endpoint::Completions => "cmpl",
        };
        let job = scheduler::Job {
            response_id: format!("{id_prefix}-{}", req.request_id),
            endpoint: req.endpoint,
            stream: req.stream,
            created,
            model: self.config.served_model.clone(),
            prompt: tokens,
            max_tokens,
            params,
            events,
        };
        self.jobs
            .send(job)
            .map_err(|_| EngineError::Failed("the embedded engine has stopped".into()))?;
        Ok(Box::pin(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        ))
    }
}

impl Engine for LlamaEngine {
    fn describe(&self) -> String {
        format!(
            "embedded llama.cpp {} (sha256 {})",
            self.config.model_path.display(),
            self.config.model_hash
        )
    }

    fn model_hash(&self) -> Option<ModelHash> {
        Some(self.config.model_hash)
    }

    fn generate(
        &self,
        request: GenerateRequest,
    ) -> BoxFuture<'_, Result<EventStream, EngineError>> {
        Box::pin(self.start(request))
    }

    fn score(&self, request: ScoreRequest) -> BoxFuture<'_, Result<Score, EngineError>> {
        Box::pin(self.score_answer(request))
    }
}
