//! Ledger throughput with durability on (`cargo bench -p cocoon-pay --bench
//! ledger`): charged requests per second (reserve, then settle with two
//! signed vouchers), each operation durable before it is answered. Run side
//! by side: one request at a time (every operation its own fsync: the
//! reference) and many concurrent requests sharing commits.
//!
//! The database lives under the target directory, on the same disk as a
//! real deployment's data directory (not a RAM-backed /tmp).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use cocoon_core::{Charge, Nanoton};
use cocoon_pay::{Ledger, Op, VoucherSigner, VoucherTerms};
use ring::signature::Ed25519KeyPair;
use tycho_types::cell::HashBytes;
use tycho_types::models::StdAddr;

fn addr(b: u8) -> StdAddr {
    StdAddr::new(0, HashBytes([b; 32]))
}

fn open(dir: &std::path::Path) -> Ledger {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let key = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    Ledger::open(
        &dir.join("ledger.redb"),
        VoucherSigner::from_pkcs8(key.as_ref()).unwrap(),
        VoucherTerms {
            contract: addr(0xcc),
            ttl_secs: 86_400,
        },
    )
    .unwrap()
    .0
}

async fn run(l: Arc<Ledger>, concurrency: u32, per_task: u32) -> (f64, f64) {
    for c in 0..16u8 {
        l.submit(Op::Deposit {
            client: addr(c),
            amount: Nanoton::new(u64::MAX / 32),
        })
        .await
        .unwrap();
    }
    let (c0, o0) = l.commit_stats();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_task {
                let id = format!("{t}-{i}");
                l.submit(Op::Reserve {
                    request: id.clone(),
                    client: addr((t % 16) as u8),
                    worker: addr(100 + (i % 4) as u8),
                    amount: Nanoton::new(10_000),
                })
                .await
                .unwrap();
                l.submit(Op::Settle {
                    request: id,
                    charge: Charge {
                        client: Nanoton::new(7_000),
                        worker: Nanoton::new(5_000),
                    },
                })
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let (c1, o1) = l.commit_stats();
    let requests = f64::from(concurrency * per_task);
    (requests / secs, (o1 - o0) as f64 / (c1 - c0) as f64)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-ledger");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("## Ledger: charged requests/s, durable (reserve + settle + 2 vouchers)\n");
    println!("| concurrency | requests/s | operations per commit | ratio vs 1 |");
    println!("|---:|---:|---:|---:|");
    let mut base = 0.0;
    for (concurrency, per_task) in [(1u32, 500u32), (16, 200), (64, 100), (256, 40)] {
        let per_task = if quick { per_task / 5 } else { per_task };
        let l = Arc::new(open(&dir));
        let (rps, per_commit) = rt.block_on(run(l, concurrency, per_task));
        if concurrency == 1 {
            base = rps;
        }
        println!(
            "| {concurrency} | {rps:.0} | {per_commit:.1} | {:.1} |",
            rps / base
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
