//! Scores answers under a model, to see what a spot-check's scoring
//! threshold separates: the model's own sampled answers, at several
//! temperatures, against text it did not write.
//!
//! cargo run --release -p cocoon-engine --example score -- MODEL.gguf [ANSWERS]

use bytes::Bytes;
use cocoon_core::{Endpoint, ModelHash, RequestId};
use cocoon_engine::{Engine, EngineEvent, GenerateRequest, LlamaConfig, LlamaEngine, ScoreRequest};
use futures_util::StreamExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model = args
        .get(1)
        .ok_or_else(|| anyhow::anyhow!("usage: score MODEL.gguf [ANSWERS]"))?;
    let n: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(4);
    let engine = LlamaEngine::load(LlamaConfig {
        model_path: model.into(),
        served_model: "m".into(),
        model_hash: ModelHash::from_bytes([0; 32]),
        context_per_sequence: 2048,
        max_sequences: 2,
        threads: 0,
        gpu_layers: 0,
        chat_template: None,
    })?;
    println!("| answer | temperature | tokens | mean logprob | excess surprise | top-1 share |");
    println!("|---|---|---|---|---|---|");
    let topics = [
        "the sea",
        "a small robot",
        "bread",
        "the moon",
        "rain",
        "trains",
    ];
    for i in 0..n {
        let prompt = format!("Tell me about {}.", topics[i % topics.len()]);
        let body = |t: f64| {
            Bytes::from(
                serde_json::to_vec(&serde_json::json!({
                    "model": "m", "temperature": t, "max_tokens": 80,
                    "messages": [{"role": "user", "content": prompt}],
                }))
                .unwrap_or_default(),
            )
        };
        for t in [0.0, 0.7, 1.0, 1.5] {
            let mut stream = engine
                .generate(GenerateRequest {
                    request_id: RequestId::generate(),
                    endpoint: Endpoint::ChatCompletions,
                    body: body(t),
                    stream: false,
                })
                .await?;
            let mut whole = Vec::new();
            while let Some(ev) = stream.next().await {
                if let EngineEvent::Chunk { data, .. } = ev? {
                    whole.extend_from_slice(&data);
                }
            }
            let v: serde_json::Value = serde_json::from_slice(&whole)?;
            let answer = v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let s = engine
                .score(ScoreRequest {
                    endpoint: Endpoint::ChatCompletions,
                    body: body(t),
                    answer,
                })
                .await?;
            println!(
                "| own #{i} | {t} | {} | {:.2} | {:.2} | {:.2} |",
                s.tokens, s.mean_logprob, s.excess_surprise, s.top1_share
            );
        }
        for (what, answer) in [
            ("another topic's text", format!("The stock market closed higher today as investors weighed inflation data and earnings from {i} large firms.")),
            ("shuffled words", "sea the blue is and waves the very of deep much animals many live there".to_string()),
            ("random letters", "qzx vbnm ptr kwl dfgh jjkl mnbv cxz asdf qwer tyui opzx".to_string()),
        ] {
            for t in [0.7, 1.0, 1.5] {
                let s = engine
                    .score(ScoreRequest { endpoint: Endpoint::ChatCompletions, body: body(t), answer: answer.clone() })
                    .await?;
                println!("| {what} #{i} | {t} | {} | {:.2} | {:.2} | {:.2} |", s.tokens, s.mean_logprob, s.excess_surprise, s.top1_share);
            }
        }
    }
    Ok(())
}
