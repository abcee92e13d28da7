//! `cocoon-test-upstream`: the deterministic OpenAI-compatible upstream used
//! by the end-to-end tests and the benchmark. It is not an inference
//! engine; its answers are fixed filler text.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use cocoon_testkit::{TestUpstream, UpstreamBehaviour};

/// A deterministic OpenAI-compatible upstream for tests and benchmarks.
///
/// Answers every chat or legacy completion with CHUNKS pieces of CHUNK_SIZE
/// bytes (max_tokens, when given, sets the number of pieces), streamed as
/// server-sent events with a final usage chunk when asked for. Counters are
/// at GET /test/stats.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Pieces per answer when the request sets no max_tokens.
    #[arg(long, default_value_t = 50)]
    chunks: usize,
    /// Bytes of text per piece.
    #[arg(long, default_value_t = 128)]
    chunk_size: usize,
    /// Milliseconds between pieces (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Milliseconds before the first piece.
    #[arg(long, default_value_t = 0)]
    first_byte_delay_ms: u64,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let up = TestUpstream::start(
        args.listen,
        UpstreamBehaviour {
            chunks: args.chunks,
            chunk_size: args.chunk_size,
            delay: Duration::from_millis(args.delay_ms),
            first_byte_delay: Duration::from_millis(args.first_byte_delay_ms),
            words: None,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    println!("listening on {}", up.addr);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
