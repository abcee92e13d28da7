//! Reading the scenario vectors (contracts/vectors) and seeding a devnet
//! with their starting accounts.
#![allow(dead_code)]

use std::path::PathBuf;

use cocoon_devnet::{Devnet, ExecutedTx};
use serde::Deserialize;
use tycho_types::boc::BocRepr;
use tycho_types::models::{IntAddr, ShardAccount, StdAddr};

#[derive(Deserialize)]
pub struct Vector {
    pub accounts: Vec<String>,
    pub steps: Vec<Step>,
}

#[derive(Deserialize)]
pub struct Step {
    pub now: u32,
    pub message: String,
    pub transactions: Vec<Tx>,
    pub balances: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize, Debug, PartialEq)]
pub struct Tx {
    pub account: String,
    pub op: Option<u32>,
    pub bounced: bool,
    pub gas: Option<u64>,
    pub exit: Option<i32>,
    pub aborted: bool,
    pub fees: String,
    pub out: usize,
}

pub fn vector(name: &str) -> Vector {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"));
    let path = dir.join("../../contracts/vectors").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn raw(addr: &StdAddr) -> String {
    format!("{}:{}", addr.workchain, addr.address)
}

pub fn parse_raw(s: &str) -> StdAddr {
    s.parse().unwrap_or_else(|e| panic!("address {s}: {e:?}"))
}

impl Tx {
    /// The same summary of a devnet transaction.
    pub fn of(t: &ExecutedTx) -> Tx {
        Tx {
            account: raw(&t.account),
            op: t.op,
            bounced: t.bounced,
            gas: t.gas_used,
            exit: t.exit_code,
            aborted: t.aborted,
            fees: t.total_fees.into_inner().to_string(),
            out: t.out_msgs,
        }
    }
}

/// Places the vector's starting accounts.
pub fn seed(devnet: &Devnet, v: &Vector) {
    for hex in &v.accounts {
        let shard: ShardAccount = BocRepr::decode(decode_hex(hex)).expect("a ShardAccount");
        let account = shard.load_account().expect("decodes").expect("exists");
        let IntAddr::Std(addr) = account.address else {
            panic!("a standard address")
        };
        devnet.put_account(addr, shard).expect("seeded");
    }
}

pub fn decode_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}
