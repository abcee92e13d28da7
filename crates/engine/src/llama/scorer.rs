//! Scoring an answer under the model (teacher forcing): one prefill over
//! the prompt and the answer's tokens, reading at each answer position the
//! model's log-probability of the token that follows. A spot-check uses it
//! where an exact replay cannot work (sampled answers): an answer produced
//! by another model, or not by a model at all, is unlikely under this one.
//!
//! The scorer has its own small context on its own thread, so that a check
//! never takes a sequence slot from the requests being served.

use std::num::NonZeroU32;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::{EngineError, Score};

/// Tokens per decode: every position asks for logits, so this bounds the
/// logits buffer (tokens × vocabulary × 4 bytes).
const BATCH: usize = 64;

/// One answer to score.
pub(super) struct ScoreJob {
    /// The prompt's tokens, as generation would feed them.
    pub prompt: Vec<LlamaToken>,
    /// The answer's tokens.
    pub answer: Vec<LlamaToken>,
    /// The temperature it was sampled at: scores are under the tempered
    /// distribution the sampler drew from.
    pub temperature: f32,
    pub reply: tokio::sync::oneshot::Sender<Result<Score, EngineError>>,
}

pub(super) fn run(
    backend: &'static LlamaBackend,
    model: Arc<LlamaModel>,
    context: u32,
    threads: i32,
    jobs: Receiver<ScoreJob>,
) {
    let Some(n_ctx) = NonZeroU32::new(context) else {
        return;
    };
    let params = LlamaContextParams::default()
        .with_n_ctx(Some(n_ctx))
        .with_n_batch(BATCH as u32)
        .with_n_ubatch(BATCH as u32)
        .with_n_seq_max(1)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    // Made on the first job: most workers are never asked to score.
    let mut ctx = None;
    let mut batch = LlamaBatch::new(BATCH, 1);
    while let Ok(job) = jobs.recv() {
        if ctx.is_none() {
            match model.new_context(backend, params.clone()) {
                Ok(c) => ctx = Some(c),
                Err(e) => {
                    let _ = job.reply.send(Err(EngineError::Failed(format!(
                        "cannot create a scoring context: {e}"
                    ))));
                    continue;
                }
            }
        }
        let Some(c) = ctx.as_mut() else { continue };
        let result = score(c, &mut batch, &job.prompt, &job.answer, job.temperature);
        c.clear_kv_cache();
        let _ = job.reply.send(result);
    }
}

fn score(
    ctx: &mut llama_cpp_2::context::LlamaContext<'_>,
    batch: &mut LlamaBatch,
    prompt: &[LlamaToken],
    answer: &[LlamaToken],
    temperature: f32,
) -> Result<Score, EngineError> {
    // Greedy answers are replayed, not scored; score them as sampled at 1.
    let t = if temperature > 0.0 {
        f64::from(temperature)
    } else {
        1.0
    };
    let all: Vec<LlamaToken> = prompt.iter().chain(answer).copied().collect();
    let first = prompt.len();
    if first == 0 || answer.is_empty() {
        return Err(EngineError::BadRequest(
            "nothing to score: the prompt or the answer is empty".into(),
        ));
    }
    let (mut sum, mut excess, mut top1, mut scored) = (0f64, 0f64, 0u32, 0u32);
    for (start, chunk) in (0..all.len())
        .step_by(BATCH)
        .map(|s| (s, &all[s..(s + BATCH).min(all.len())]))
    {
        batch.clear();
        for (i, &tok) in chunk.iter().enumerate() {
            let pos = start + i;
            // The logits at `pos` predict the token at `pos + 1`: wanted
            // from the prompt's last token to the answer's last but one.
            let wanted = pos + 1 >= first && pos + 1 < all.len();
            batch
                .add(tok, pos as i32, &[0], wanted)
                .map_err(|e| EngineError::Failed(format!("scoring batch: {e}")))?;
        }
        ctx.decode(batch)
            .map_err(|e| EngineError::Failed(format!("scoring decode: {e}")))?;
        for i in 0..chunk.len() {
            let pos = start + i;
            if !(pos + 1 >= first && pos + 1 < all.len()) {
                continue;
            }
            let logits = ctx.get_logits_ith(i as i32);
            let next = all[pos + 1].0 as usize;
            let Some(&target) = logits.get(next) else {
                return Err(EngineError::Failed(format!(
                    "token {next} is outside the vocabulary"
                )));
            };
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            // Tempered log-softmax: log p(v) = (l_v - max)/t - log Σ e^((l - max)/t).
            let scaled = |l: f32| f64::from(l - max) / t;
            let z: f64 = logits.iter().map(|&l| scaled(l).exp()).sum();
            let log_z = z.ln();
            // The distribution's entropy: what an honest sample's surprise
            // averages to at this position.
            let entropy: f64 = -logits
                .iter()
                .map(|&l| {
                    let lp = scaled(l) - log_z;
                    lp.exp() * lp
                })
                .sum::<f64>();
            let logprob = scaled(target) - log_z;
            sum += logprob;
            excess += -logprob - entropy;
            if target >= max {
                top1 += 1;
            }
            scored += 1;
        }
    }
    Ok(Score {
        tokens: scored,
        mean_logprob: sum / f64::from(scored.max(1)),
        excess_surprise: excess / f64::from(scored.max(1)),
        top1_share: f64::from(top1) / f64::from(scored.max(1)),
    })
}
