//! The devnet replays the settlement scenario recorded in `@ton/sandbox`
//! (`contracts/vectors/settlement.json`, re-recorded and compared by
//! `contracts/test/vectors.test.mjs`) and must charge the same: every
//! transaction's gas, fees, exit code and abort flag, and every balance
//! after every step, to the nanoton.

use std::path::PathBuf;

use cocoon_devnet::{Devnet, DevnetOptions};
use serde::Deserialize;
use tycho_types::boc::{Boc, BocRepr};
use tycho_types::models::{IntAddr, ShardAccount, StdAddr};

#[derive(Deserialize)]
struct Vector {
    accounts: Vec<String>,
    steps: Vec<Step>,
}

#[derive(Deserialize)]
struct Step {
    now: u32,
    message: String,
    transactions: Vec<Tx>,
    balances: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Tx {
    account: String,
    op: Option<u32>,
    bounced: bool,
    gas: Option<u64>,
    exit: Option<i32>,
    aborted: bool,
    fees: String,
    out: usize,
}

fn vector(name: &str) -> Vector {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"));
    let path = dir.join("../../contracts/vectors").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn raw(addr: &StdAddr) -> String {
    format!("{}:{}", addr.workchain, addr.address)
}

fn parse_raw(s: &str) -> StdAddr {
    s.parse().unwrap_or_else(|e| panic!("address {s}: {e:?}"))
}

#[test]
fn the_devnet_charges_exactly_what_the_sandbox_charged() {
    let v = vector("settlement.json");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let start = v.steps[0].now;
    let devnet = Devnet::open(
        dir.path(),
        DevnetOptions {
            dev: true,
            frozen_clock: Some(start),
        },
    )
    .expect("the devnet opens");

    for hex in &v.accounts {
        let bytes = decode_hex(hex);
        let shard: ShardAccount = BocRepr::decode(&bytes).expect("a ShardAccount");
        let account = shard.load_account().expect("decodes").expect("exists");
        let IntAddr::Std(addr) = account.address else {
            panic!("a standard address")
        };
        devnet.put_account(addr, shard).expect("seeded");
    }

    let mut compared = 0;
    for (i, step) in v.steps.iter().enumerate() {
        if devnet.now() != step.now {
            devnet.set_clock(step.now).expect("the clock moves forward");
        }
        let msg = Boc::decode(decode_hex(&step.message)).expect("a message");
        let block = devnet
            .send_external(msg)
            .unwrap_or_else(|e| panic!("step {i}: {e}"));
        let got: Vec<Tx> = block
            .transactions
            .iter()
            .map(|t| Tx {
                account: raw(&t.account),
                op: t.op,
                bounced: t.bounced,
                gas: t.gas_used,
                exit: t.exit_code,
                aborted: t.aborted,
                fees: t.total_fees.into_inner().to_string(),
                out: t.out_msgs,
            })
            .collect();
        assert_eq!(
            got, step.transactions,
            "step {i}: the transactions differ from the sandbox's"
        );
        for (addr, expected) in &step.balances {
            let info = devnet.account(&parse_raw(addr)).expect("account");
            assert_eq!(
                info.balance.into_inner().to_string(),
                *expected,
                "step {i}: the balance of {addr} differs from the sandbox's"
            );
        }
        compared += got.len();
    }
    assert!(
        compared > 40,
        "the vector exercised {compared} transactions"
    );
}

fn decode_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}
