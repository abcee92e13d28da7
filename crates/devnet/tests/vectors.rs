//! The devnet replays the settlement scenario recorded in `@ton/sandbox`
//! (`contracts/vectors/settlement.json`, re-recorded and compared by
//! `contracts/test/vectors.test.mjs`) and must charge the same: every
//! transaction's gas, fees, exit code and abort flag, and every balance
//! after every step, to the nanoton.

mod common;

use cocoon_chain::stack::{StackEntry, StackReader};
use cocoon_devnet::{Devnet, DevnetOptions};
use common::{decode_hex, parse_raw, seed, vector, Tx};
use tycho_types::boc::Boc;

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
            ..Default::default()
        },
    )
    .expect("the devnet opens");
    seed(&devnet, &v);

    let mut compared = 0;
    for (i, step) in v.steps.iter().enumerate() {
        if devnet.now() != step.now {
            devnet.set_clock(step.now).expect("the clock moves forward");
        }
        let msg = Boc::decode(decode_hex(&step.message)).expect("a message");
        let block = devnet
            .send_external(msg)
            .unwrap_or_else(|e| panic!("step {i}: {e}"));
        let got: Vec<Tx> = block.transactions.iter().map(Tx::of).collect();
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

    // Get-methods that compute addresses (Tolk emits TVM 12's BTOS for
    // them) answer as the contracts do in the sandbox.
    let find = |op: u32| {
        v.steps
            .iter()
            .find_map(|s| {
                s.transactions
                    .iter()
                    .position(|t| t.op == Some(op))
                    .map(|i| (s, i))
            })
            .expect("the op is in the scenario")
    };
    let (step, i) = find(0x43c0_0001); // the client's first top-up
    let client = parse_raw(&step.transactions[i].account);
    let owner = parse_raw(&step.transactions[0].account);
    let (step, i) = find(0x50c0_0001); // the proxy's stake
    let proxy = parse_raw(&step.transactions[i].account);
    let out = devnet
        .run_get_method(&proxy, "get_client_address", &[StackEntry::address(&owner)])
        .expect("runs");
    assert_eq!(out.exit_code, 0, "get_client_address runs");
    let derived = StackReader::new(out.stack).address().expect("an address");
    assert_eq!(derived, client);
}
