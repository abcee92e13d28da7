//! Devnet throughput against `@ton/sandbox`, side by side in one run, on
//! the same workload: the settlement scenario vector
//! (`contracts/vectors/settlement.json`) replayed ROUNDS times, each round
//! on a fresh chain seeded with the vector's accounts. Only the sending is
//! timed, in both.
//!
//! - sandbox: `contracts/bench/sandbox-throughput.mjs` (Node.js, the
//!   emulator @ton/sandbox ships);
//! - devnet, a block per message: every external message is its own block,
//!   written to disk (redb, durable) before the next;
//! - devnet, batched: the messages sent at the same time make one block,
//!   as the API's block producer does under load.
//!
//! Also prints the gas and fees of every settlement operation in the
//! scenario, as the devnet charged them (equal to the sandbox's: the
//! vectors test proves it).
//!
//! ```sh
//! cargo bench -p cocoon-devnet --bench throughput            # 20 rounds
//! COCOON_BENCH_ROUNDS=50 cargo bench -p cocoon-devnet --bench throughput
//! ```
//! Needs Node.js and `npm ci` in contracts/.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use cocoon_devnet::{Devnet, DevnetOptions};
use serde::Deserialize;
use tycho_types::boc::{Boc, BocRepr};
use tycho_types::cell::Cell;
use tycho_types::models::{IntAddr, ShardAccount};

#[derive(Deserialize)]
struct Vector {
    accounts: Vec<String>,
    steps: Vec<Step>,
}

#[derive(Deserialize)]
struct Step {
    now: u32,
    message: String,
}

#[derive(Deserialize)]
struct Reference {
    transactions: u64,
    seconds: f64,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fresh(v: &Vector) -> (tempfile::TempDir, Devnet) {
    let dir = tempfile::tempdir().expect("dir");
    let devnet = Devnet::open(
        dir.path(),
        DevnetOptions {
            dev: true,
            frozen_clock: Some(v.steps[0].now),
            ..Default::default()
        },
    )
    .expect("opens");
    for hex in &v.accounts {
        let shard: ShardAccount = BocRepr::decode(unhex(hex)).expect("account");
        let account = shard.load_account().expect("decodes").expect("exists");
        let IntAddr::Std(addr) = account.address else {
            panic!("std address")
        };
        devnet.put_account(addr, shard).expect("seeded");
    }
    (dir, devnet)
}

/// Replays one round; returns (transactions, seconds sending).
fn round(v: &Vector, batched: bool) -> (u64, f64) {
    let (_dir, devnet) = fresh(v);
    let messages: Vec<(u32, Cell)> = v
        .steps
        .iter()
        .map(|s| (s.now, Boc::decode(unhex(&s.message)).expect("message")))
        .collect();
    let mut txs = 0u64;
    let start = Instant::now();
    if batched {
        let mut i = 0;
        while i < messages.len() {
            let now = messages[i].0;
            let mut batch = Vec::new();
            while i < messages.len() && messages[i].0 == now {
                batch.push(messages[i].1.clone());
                i += 1;
            }
            if devnet.now() < now {
                devnet.set_clock(now).expect("clock");
            }
            for r in devnet.send_externals(batch).expect("block written") {
                txs += r.expect("accepted").transactions.len() as u64;
            }
        }
    } else {
        for (now, msg) in messages {
            if devnet.now() < now {
                devnet.set_clock(now).expect("clock");
            }
            txs += devnet
                .send_external(msg)
                .expect("accepted")
                .transactions
                .len() as u64;
        }
    }
    (txs, start.elapsed().as_secs_f64())
}

fn main() {
    let rounds: u32 = std::env::var("COCOON_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let text =
        std::fs::read_to_string(repo().join("contracts/vectors/settlement.json")).expect("vector");
    let v: Vector = serde_json::from_str(&text).expect("vector json");

    let contracts = repo().join("contracts");
    if !contracts.join("node_modules/@ton/sandbox").exists() {
        eprintln!("contracts/node_modules is missing: run `npm ci` in contracts/ first");
        std::process::exit(2);
    }
    eprintln!("sandbox: {rounds} rounds...");
    let out = Command::new("node")
        .arg("bench/sandbox-throughput.mjs")
        .arg(rounds.to_string())
        .current_dir(&contracts)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "sandbox bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: Reference =
        serde_json::from_slice(out.stdout.trim_ascii()).expect("the sandbox bench's JSON line");

    let mut results = Vec::new();
    for (name, batched) in [
        ("devnet, a block per message", false),
        ("devnet, batched blocks", true),
    ] {
        eprintln!("{name}: {rounds} rounds...");
        let (mut txs, mut secs) = (0u64, 0f64);
        for _ in 0..rounds {
            let (t, s) = round(&v, batched);
            txs += t;
            secs += s;
        }
        assert_eq!(
            txs, reference.transactions,
            "the devnet ran the same transactions as the sandbox"
        );
        results.push((name, txs as f64 / secs));
    }
    let sandbox = reference.transactions as f64 / reference.seconds;

    let mut report = String::new();
    report.push_str(&format!(
        "# Devnet throughput ({rounds} rounds of the settlement scenario, {} transactions each)\n\n",
        reference.transactions / u64::from(rounds)
    ));
    report.push_str("| chain | transactions/s | × sandbox |\n|---|---:|---:|\n");
    report.push_str(&format!("| @ton/sandbox 0.41.0 | {sandbox:.0} | 1.0 |\n"));
    for (name, tps) in &results {
        report.push_str(&format!("| {name} | {tps:.0} | {:.1} |\n", tps / sandbox));
    }

    // What each settlement operation costs, as charged on the devnet.
    report.push_str(
        "\n## Gas and fees per operation (the whole chain of transactions it causes)\n\n",
    );
    report.push_str("| step | first contract op | transactions | gas | fees, nanoton |\n|---:|---|---:|---:|---:|\n");
    let (_dir, devnet) = fresh(&v);
    for (i, step) in v.steps.iter().enumerate() {
        if devnet.now() < step.now {
            devnet.set_clock(step.now).expect("clock");
        }
        let block = devnet
            .send_external(Boc::decode(unhex(&step.message)).expect("msg"))
            .expect("step");
        // The first transaction is the sender's wallet; the op is the next one's.
        let op = block
            .transactions
            .get(1)
            .and_then(|t| t.op)
            .map(|o| format!("0x{o:08x}"))
            .unwrap_or_else(|| "-".into());
        let gas: u64 = block.transactions.iter().filter_map(|t| t.gas_used).sum();
        let fees: u128 = block
            .transactions
            .iter()
            .map(|t| t.total_fees.into_inner())
            .sum();
        report.push_str(&format!(
            "| {i} | {op} | {} | {gas} | {fees} |\n",
            block.transactions.len()
        ));
    }
    // What committing vouchers costs per million requests at the default
    // threshold (a client's voucher is committed when what it owes passes
    // half its stake), for a stated typical request.
    let (stake, price) = (1_000_000_000u128, 100u128); // 1 TON stake; 100 nanoton per token
    let (prompt, completion) = (1000u128, 300u128);
    let request_cost = (prompt + completion) * price;
    let per_commit = (stake / 2).div_ceil(request_cost);
    let (_dir, devnet) = fresh(&v);
    let mut commit_fee = 0u128;
    let mut payout_fee = 0u128;
    for step in &v.steps {
        if devnet.now() < step.now {
            devnet.set_clock(step.now).expect("clock");
        }
        let block = devnet
            .send_external(Boc::decode(unhex(&step.message)).expect("msg"))
            .expect("step");
        let fees: u128 = block
            .transactions
            .iter()
            .map(|t| t.total_fees.into_inner())
            .sum();
        let op = block.transactions.get(1).and_then(|t| t.op);
        let ok = block.transactions.iter().all(|t| !t.aborted);
        if op == Some(0x43c0_0003) && ok && commit_fee == 0 {
            commit_fee = fees;
        }
        if op == Some(0x57c0_0001) && ok && payout_fee == 0 {
            payout_fee = fees;
        }
    }
    let commits = 1_000_000u128.div_ceil(per_commit);
    report.push_str(&format!(
        "\n## On-chain cost per million requests (default commit threshold)\n\n\
         A request of {prompt} prompt and {completion} completion tokens at {price} nanoton per token costs \
         {request_cost} nanoton; a client's voucher is committed when it owes half its stake ({} nanoton), \
         every {per_commit} requests: {commits} commits per million requests at {commit_fee} nanoton each \
         (the whole chain: the sender's wallet, the client contract, the proxy contract) = **{:.3} TON**. \
         A worker's payout costs {payout_fee} nanoton each time it withdraws, whatever it earned.\n",
        stake / 2,
        (commits * commit_fee) as f64 / 1e9,
    ));
    println!("{report}");
    let dir = repo().join("bench/results");
    let _ = std::fs::create_dir_all(&dir);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let path = dir.join(format!("devnet-{stamp}.md"));
    if std::fs::write(&path, &report).is_ok() {
        eprintln!("written to {}", path.display());
    }
}
