//! The scheduler thread: continuous batching over one llama.cpp context.

use std::num::NonZeroU32;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;

use bytes::Bytes;
use cocoon_core::{Endpoint, Usage};
use cocoon_openai::Delta;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::UnboundedSender;

use super::request::GenParams;
use super::slots::Slots;
use super::text::{Matched, StopMatcher, Utf8Accumulator};
use crate::{Completion, EngineError, EngineEvent};

/// Most tokens decoded in one step (prompts are fed in chunks of this).
const BATCH_TOKENS: usize = 512;

pub(super) struct Setup {
    pub model: Arc<LlamaModel>,
    pub total_ctx: NonZeroU32,
    pub context_per_sequence: u32,
    pub max_sequences: u32,
    pub threads: i32,
}

/// One request handed to the scheduler.
pub(super) struct Job {
    pub response_id: String,
    pub endpoint: Endpoint,
    pub stream: bool,
    pub created: i64,
    pub model: String,
    pub prompt: Vec<LlamaToken>,
    pub max_tokens: u32,
    pub params: GenParams,
    pub events: UnboundedSender<Result<EngineEvent, EngineError>>,
}

/// A sequence being generated.
struct Seq {
    slot: i32,
    job: Job,
    /// Prompt tokens already in the KV cache.
    fed: usize,
    /// Prompt tokens that were already in the slot's cache when it was taken.
    reused: usize,
    /// Every token in the slot's KV cells, positions 0.. in order: what the
    /// slot caches for the next request once this one ends.
    history: Vec<LlamaToken>,
    /// Next position in the sequence.
    pos: i32,
    /// The token to feed next, once the prompt is in.
    next: Option<LlamaToken>,
    /// Index in the current batch whose logits to sample, if any.
    logits_at: Option<i32>,
    sampler: LlamaSampler,
    generated: u32,
    utf8: Utf8Accumulator,
    stops: StopMatcher,
    /// The whole answer, for non-streamed requests.
    text: String,
}

fn sampler(p: &GenParams, n_vocab: i32) -> LlamaSampler {
    let mut chain = Vec::new();
    if p.repetition_penalty != 1.0 || p.frequency_penalty != 0.0 || p.presence_penalty != 0.0 {
        chain.push(LlamaSampler::penalties(
            n_vocab,
            64,
            p.repetition_penalty.max(0.01),
            p.frequency_penalty,
            p.presence_penalty,
        ));
    }
    if p.temperature <= 0.0 {
        // Greedy: the same prompt gives the same answer, whatever the seed.
        chain.push(LlamaSampler::greedy());
        return LlamaSampler::chain_simple(chain);
    }
    if p.top_k > 0 {
        chain.push(LlamaSampler::top_k(p.top_k));
    }
    if p.top_p < 1.0 {
        chain.push(LlamaSampler::top_p(p.top_p, 1));
    }
    if p.min_p > 0.0 {
        chain.push(LlamaSampler::min_p(p.min_p, 1));
    }
    chain.push(LlamaSampler::temp(p.temperature));
    chain.push(LlamaSampler::dist(p.seed.unwrap_or_else(rand_seed)));
    LlamaSampler::chain_simple(chain)
}

fn rand_seed() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ d.as_secs() as u32)
        .unwrap_or(1);
    t ^ std::process::id().rotate_left(16)
}

pub(super) fn run(
    backend: &'static LlamaBackend,
    setup: Setup,
    jobs: Receiver<Job>,
    ready: Sender<Result<(), EngineError>>,
) {
    let model = setup.model.clone();
    // Every generating sequence adds one token per step, so a step can
    // hold at least one token per sequence.
    let capacity = BATCH_TOKENS.max(setup.max_sequences as usize);
    let params = LlamaContextParams::default()
        .with_n_ctx(Some(setup.total_ctx))
        .with_n_batch(capacity as u32)
        .with_n_ubatch(capacity as u32)
        .with_n_seq_max(setup.max_sequences)
        .with_n_threads(setup.threads)
        .with_n_threads_batch(setup.threads)
        // A KV stream per slot: a sequence attends only to its own cells,
        // and a slot's cached prefix cannot slow the others down.
        .with_kv_unified(false);
    let mut ctx = match model.new_context(backend, params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(EngineError::Failed(format!(
                "cannot create a llama.cpp context: {e}"
            ))));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let vocab = model.vocab();
    let n_vocab = model.n_vocab();
    let mut batch = LlamaBatch::new(
        BATCH_TOKENS.max(setup.max_sequences as usize),
        setup.max_sequences as i32,
    );
    let mut slots = Slots::new(setup.max_sequences);
    let mut active: Vec<Seq> = Vec::new();

    loop {
        // Admit work: block only when idle.
        if active.is_empty() {
            match jobs.recv() {
                Ok(job) => admit(job, &mut active, &mut slots, &mut ctx, n_vocab),
                Err(_) => return,
            }
        }
        while slots.any_idle() {
            match jobs.try_recv() {
                Ok(job) => admit(job, &mut active, &mut slots, &mut ctx, n_vocab),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if active.is_empty() {
                        return;
                    }
                    break;
                }
            }
        }
        // Requests whose caller went away are dropped before any work.
        let mut i = 0;
        while i < active.len() {
            if active[i].job.events.is_closed() {
                let s = active.swap_remove(i);
                slots.put(s.slot, s.history);
            } else {
                i += 1;
            }
        }
        if active.is_empty() {
            continue;
        }

        // One step: the next token of every generating sequence, then
        // prompt chunks while room remains. With a KV stream per slot,
        // llama.cpp puts in one micro-batch only sequences whose ids
        // follow one another in the batch (0, 1, 2, …): in any other order
        // each sequence would be decoded on its own.
        active.sort_unstable_by_key(|s| s.slot);
        batch.clear();
        let mut room = capacity;
        let mut failed = None;
        for s in active.iter_mut() {
            s.logits_at = None;
            if let Some(tok) = s.next {
                if let Err(e) = batch.add(tok, s.pos, &[s.slot], true) {
                    failed = Some(e.to_string());
                    break;
                }
                s.logits_at = Some(batch.n_tokens() - 1);
                s.history.push(tok);
                room = room.saturating_sub(1);
            }
        }
        for s in active.iter_mut().filter(|s| s.next.is_none()) {
            if room == 0 || failed.is_some() {
                break;
            }
            let take = (s.job.prompt.len() - s.fed).min(room);
            for i in 0..take {
                let last = s.fed + i + 1 == s.job.prompt.len();
                if let Err(e) = batch.add(s.job.prompt[s.fed + i], s.pos, &[s.slot], last) {
                    failed = Some(e.to_string());
                    break;
                }
                s.pos += 1;
                if last {
                    s.logits_at = Some(batch.n_tokens() - 1);
                }
            }
            s.history
                .extend_from_slice(&s.job.prompt[s.fed..s.fed + take]);
            s.fed += take;
            room -= take;
        }
        if failed.is_none() {
            if let Err(e) = ctx.decode(&mut batch) {
                failed = Some(format!("llama.cpp decode failed: {e}"));
            }
        }
        if let Some(reason) = failed {
            for s in active.drain(..) {
                let _ = s.job.events.send(Err(EngineError::Failed(reason.clone())));
                // What the failed step wrote is unknown: cache nothing.
                let _ = ctx.clear_kv_cache_seq(Some(s.slot as u32), None, None);
                slots.put(s.slot, Vec::new());
            }
            continue;
        }

        let mut i = 0;
        while i < active.len() {
            let s = &mut active[i];
            let Some(at) = s.logits_at else {
                i += 1;
                continue;
            };
            if s.next.is_some() {
                s.pos += 1;
            }
            let token = s.sampler.sample(&ctx, at);
            let finish = if vocab.is_eog(token) {
                Some("stop")
            } else {
                s.generated += 1;
                let piece = vocab.token_to_piece(token, false, None);
                let text = s.utf8.push(&piece);
                let mut stopped = false;
                match s.stops.push(&text) {
                    Matched::Continue(t) => emit(s, &t),
                    Matched::Stop(t) => {
                        emit(s, &t);
                        stopped = true;
                    }
                }
                if stopped {
                    Some("stop")
                } else if s.generated >= s.job.max_tokens
                    || s.pos as u32 + 1 >= setup.context_per_sequence
                {
                    Some("length")
                } else {
                    s.next = Some(token);
                    None
                }
            };
            match finish {
                Some(reason) => {
                    let mut s = active.swap_remove(i);
                    let history = std::mem::take(&mut s.history);
                    slots.put(s.slot, history);
                    complete(s, reason);
                }
                None => i += 1,
            }
        }
    }
}

impl Seq {
    /// Tokens used so far: the whole prompt (it is computed before the
    /// first token) and every token generated, shown or not.
    fn usage(&self) -> Usage {
        Usage {
            prompt: self.job.prompt.len() as u64,
            cached: self.reused as u64,
            completion: u64::from(self.generated),
            reasoning: 0,
        }
    }
}

fn admit(
    job: Job,
    active: &mut Vec<Seq>,
    slots: &mut Slots,
    ctx: &mut LlamaContext<'_>,
    n_vocab: i32,
) {
    let Some(taken) = slots.take(&job.prompt) else {
        let _ = job
            .events
            .send(Err(EngineError::Failed("no free sequence slot".into())));
        return;
    };
    let slot = taken.slot;
    let mut reuse = taken.reuse;
    if taken.held > reuse {
        // Drop the cells past the shared prefix; a model whose memory
        // cannot be cut (recurrent) starts over.
        let cut = u32::try_from(reuse).ok().and_then(|p0| {
            ctx.clear_kv_cache_seq(Some(slot as u32), Some(p0), None)
                .ok()
        });
        if cut != Some(true) {
            let _ = ctx.clear_kv_cache_seq(Some(slot as u32), None, None);
            reuse = 0;
        }
    }
    let sampler = sampler(&job.params, n_vocab);
    let stops = StopMatcher::new(job.params.stop.clone());
    let history = job.prompt[..reuse].to_vec();
    let mut s = Seq {
        slot,
        fed: reuse,
        reused: reuse,
        history,
        pos: reuse as i32,
        next: None,
        logits_at: None,
        sampler,
        generated: 0,
        utf8: Utf8Accumulator::default(),
        stops,
        text: String::new(),
        job,
    };
    if s.job.stream && s.job.endpoint == Endpoint::ChatCompletions {
        // OpenAI opens a chat stream with the assistant's role.
        // Nothing is computed yet: the prompt counts from the first token.
        let open = Delta {
            role: Some("assistant"),
            content: Some(String::new()),
        };
        let chunk = chunk_json(&s.job, open, None);
        let _ = s.job.events.send(Ok(EngineEvent::Chunk {
            data: chunk,
            so_far: Some(Usage::default()),
        }));
    }
    s.text.reserve(256);
    active.push(s);
}

fn chunk_json(job: &Job, delta: Delta, finish: Option<&str>) -> Bytes {
    let meta = (job.response_id.as_str(), job.created, job.model.as_str());
    Bytes::from(cocoon_openai::Chunk::new(job.endpoint, meta, delta, finish).to_json())
}

fn emit(s: &mut Seq, text: &str) {
    if text.is_empty() {
        return;
    }
    if s.job.stream {
        let delta = Delta {
            role: None,
            content: Some(text.to_string()),
        };
        let chunk = chunk_json(&s.job, delta, None);
        let _ = s.job.events.send(Ok(EngineEvent::Chunk {
            data: chunk,
            so_far: Some(s.usage()),
        }));
    } else {
        s.text.push_str(text);
    }
}

fn complete(mut s: Seq, reason: &str) {
    s.utf8.finish();
    // Text held back as a possible stop sequence turned out not to be one.
    let held = s.stops.finish();
    emit(&mut s, &held);
    let usage = s.usage();
    let job = &s.job;
    if job.stream {
        let _ = job.events.send(Ok(EngineEvent::Chunk {
            data: chunk_json(job, Delta::default(), Some(reason)),
            so_far: Some(usage),
        }));
    } else {
        let meta = (job.response_id.as_str(), job.created, job.model.as_str());
        let answer = cocoon_openai::Answer::new(
            job.endpoint,
            meta,
            std::mem::take(&mut s.text),
            reason,
            usage.into(),
        );
        let _ = job.events.send(Ok(EngineEvent::Chunk {
            data: Bytes::from(answer.to_json()),
            so_far: Some(usage),
        }));
    }
    let _ = job.events.send(Ok(EngineEvent::Done(Completion {
        usage,
        response_id: job.response_id.clone(),
        created: job.created,
        model: job.model.clone(),
    })));
}
