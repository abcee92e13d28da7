//! The embedded engine alone, without the network: aggregate tokens/s of
//! N concurrent greedy streams, to tell engine cost from relay cost.
//!
//! cargo run --release -p cocoon-engine --example throughput -- MODEL.gguf [STREAMS] [TOKENS] [THREADS] [ROUNDS]

use std::time::Instant;

use cocoon_core::{Endpoint, ModelHash, RequestId};
use cocoon_engine::{Engine, EngineEvent, GenerateRequest, LlamaConfig, LlamaEngine};
use futures_util::StreamExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model = args.get(1).ok_or_else(|| {
        anyhow::anyhow!("usage: throughput MODEL.gguf [STREAMS] [TOKENS] [THREADS] [ROUNDS]")
    })?;
    let n: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(16);
    let tokens: u32 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(128);
    let threads: u32 = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let rounds: usize = args.get(5).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let engine = LlamaEngine::load(LlamaConfig {
        model_path: model.into(),
        served_model: "m".into(),
        model_hash: ModelHash::from_bytes([0; 32]),
        context_per_sequence: 4096,
        max_sequences: 16,
        threads,
        gpu_layers: 0,
        chat_template: None,
    })?;
    for round in 0..rounds {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..n {
            let body = serde_json::json!({
                "model": "m", "temperature": 0, "max_tokens": tokens, "ignore_eos": true,
                "messages": [{"role": "user", "content": format!("Write a long story about topic {i} in round {round}.")}],
            });
            let stream = engine
                .generate(GenerateRequest {
                    request_id: RequestId::generate(),
                    endpoint: Endpoint::ChatCompletions,
                    body: serde_json::to_vec(&body)?.into(),
                    stream: true,
                })
                .await?;
            tasks.push(tokio::spawn(async move {
                let mut s = stream;
                let mut done = 0;
                while let Some(ev) = s.next().await {
                    if let Ok(EngineEvent::Done(c)) = ev {
                        done = c.usage.completion;
                    }
                }
                done
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await?;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "round {round}: {n} streams, {total} tokens in {secs:.2}s = {:.1} tok/s",
            total as f64 / secs
        );
    }
    Ok(())
}
