//! A node's W5R1 wallet (crates/chain) on the devnet: funded by the faucet,
//! deployed by its first transfer, seqno counted, replays and stale
//! requests refused: the same behaviour contracts/test/wallet.test.mjs
//! proves in the sandbox.

use cocoon_chain::stack::StackReader;
use cocoon_chain::wallet::{Transfer, WalletKey, WalletV5};
use cocoon_core::Nanoton;
use cocoon_devnet::{AccountStatus, Devnet, DevnetError, DevnetOptions};
use tycho_types::cell::HashBytes;
use tycho_types::models::StdAddr;
use tycho_types::num::Tokens;

const TON: u64 = 1_000_000_000;

/// A development devnet in `dir` with a frozen clock and `faults`.
fn devnet_with(dir: &std::path::Path, faults: cocoon_devnet::Faults) -> Devnet {
    Devnet::open(
        dir,
        DevnetOptions {
            dev: true,
            frozen_clock: Some(1_800_000_000),
            faults,
        },
    )
    .expect("opens")
}

/// The wallet of seed `[seed; 32]` on `devnet`, funded with `ton` TON.
fn funded_wallet(devnet: &Devnet, seed: u8, ton: u64) -> WalletV5 {
    let wallet = WalletV5::new(
        WalletKey::from_seed(&[seed; 32]).expect("key"),
        devnet.global_id(),
    )
    .expect("wallet");
    devnet
        .faucet(&wallet.address(), Tokens::new(u128::from(ton * TON)))
        .expect("faucet");
    wallet
}

/// A plain transfer of `ton` TON to `to`.
fn pay(to: &StdAddr, ton: u64) -> Transfer {
    Transfer {
        to: to.clone(),
        value: Nanoton::new(ton * TON),
        bounce: false,
        body: None,
        init: None,
    }
}

#[test]
fn a_wallet_deploys_pays_and_refuses_replays() {
    let dir = tempfile::tempdir().expect("dir");
    let devnet = devnet_with(dir.path(), Default::default());
    let wallet = WalletV5::new(
        WalletKey::from_seed(&[0x33; 32]).expect("key"),
        devnet.global_id(),
    )
    .expect("wallet");
    let payee = StdAddr::new(0, HashBytes([0x44; 32]));
    devnet
        .faucet(&wallet.address(), Tokens::new(u128::from(5 * TON)))
        .expect("faucet");
    assert_eq!(
        devnet.account(&wallet.address()).expect("account").status,
        AccountStatus::Uninit
    );

    let pay = |seqno: u32, deploy: bool, valid_until: u32| {
        let t = pay(&payee, 1);
        devnet.send_external(
            wallet
                .transfer(seqno, valid_until, &[t], deploy)
                .expect("signed"),
        )
    };
    let now = devnet.now();
    let block = pay(0, true, now + 60).expect("first transfer");
    assert_eq!(block.transactions.len(), 2, "the wallet's and the payee's");
    assert_eq!(
        devnet.account(&wallet.address()).expect("account").status,
        AccountStatus::Active
    );
    assert_eq!(
        devnet.account(&payee).expect("payee").balance.into_inner(),
        u128::from(TON)
    );
    let seqno = |d: &Devnet| {
        let out = d
            .run_get_method(&wallet.address(), "seqno", &[])
            .expect("seqno");
        StackReader::new(out.stack).u64().expect("a number")
    };
    assert_eq!(seqno(&devnet), 1);

    pay(1, false, now + 60).expect("second transfer");
    assert_eq!(seqno(&devnet), 2);
    assert!(
        matches!(pay(1, false, now + 60), Err(DevnetError::Rejected { .. })),
        "a replay is refused"
    );
    assert!(
        matches!(pay(2, false, now - 1), Err(DevnetError::Rejected { .. })),
        "an expired request is refused"
    );
    assert_eq!(
        devnet.account(&payee).expect("payee").balance.into_inner(),
        u128::from(2 * TON)
    );
    assert_eq!(seqno(&devnet), 2);
}

#[test]
fn messages_sent_together_share_blocks_and_a_refused_one_leaves_no_trace() {
    let dir = tempfile::tempdir().expect("dir");
    let devnet = devnet_with(dir.path(), Default::default());
    let payee = StdAddr::new(0, HashBytes([0x55; 32]));
    let wallets: Vec<WalletV5> = [0x01u8, 0x02]
        .iter()
        .map(|b| {
            WalletV5::new(
                WalletKey::from_seed(&[*b; 32]).expect("key"),
                devnet.global_id(),
            )
            .expect("wallet")
        })
        .collect();
    for w in &wallets {
        devnet
            .faucet(&w.address(), Tokens::new(u128::from(3 * TON)))
            .expect("faucet");
    }
    let blocks_before = devnet.counters().blocks;
    let until = devnet.now() + 60;
    let t = || pay(&payee, 1);
    let first = wallets[0].transfer(0, until, &[t()], true).expect("signed");
    let results = devnet
        .send_externals(vec![
            first.clone(),
            wallets[1].transfer(0, until, &[t()], true).expect("signed"),
            first, // the same request again: accepted, then refused in its block
        ])
        .expect("the block is written");
    assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    assert!(
        matches!(results[2], Err(DevnetError::Rejected { .. })),
        "{:?}",
        results[2]
    );
    // The two wallets' transactions share a block; the payments they send
    // land together in the next one.
    assert_eq!(
        devnet.counters().blocks,
        blocks_before + 2,
        "one block for the wallets, one for the payee"
    );
    assert_eq!(
        devnet.account(&payee).expect("payee").balance.into_inner(),
        u128::from(2 * TON)
    );
}

/// TON's timing, block by block: sendBoc's "accepted" is not "included",
/// and every hop of a chain of messages lands in a later block.
#[test]
fn an_accepted_message_lands_in_a_later_block_and_each_hop_in_the_next() {
    let dir = tempfile::tempdir().expect("dir");
    let devnet = devnet_with(dir.path(), Default::default());
    assert_eq!(devnet.global_id(), cocoon_devnet::config::DEVNET_GLOBAL_ID);
    assert!(
        ![
            cocoon_chain::wallet::network::MAINNET,
            cocoon_chain::wallet::network::TESTNET
        ]
        .contains(&devnet.global_id()),
        "the devnet's own global id"
    );
    let wallet = funded_wallet(&devnet, 0x66, 3);
    let payee = StdAddr::new(0, HashBytes([0x77; 32]));
    let t = pay(&payee, 1);
    let msg = wallet
        .transfer(0, devnet.now() + 60, &[t], true)
        .expect("signed");
    let hash = devnet.accept_external(msg).expect("accepted");
    let status = |a: &StdAddr| devnet.account(a).expect("account").status;
    assert_eq!(
        status(&wallet.address()),
        AccountStatus::Uninit,
        "accepted, not yet included"
    );
    assert!(!devnet.is_settled(&hash));

    let first = devnet.produce_block().expect("block");
    assert_eq!(first.transactions.len(), 1, "only the wallet's transaction");
    assert_eq!(first.transactions[0].origin, hash);
    assert_eq!(status(&wallet.address()), AccountStatus::Active);
    assert_eq!(
        status(&payee),
        AccountStatus::Nonexist,
        "the payment is on its way"
    );
    assert_eq!(devnet.pending(), (0, 1));

    let second = devnet.produce_block().expect("block");
    assert_eq!(second.transactions.len(), 1, "the payee's, one block later");
    assert_eq!(
        devnet.account(&payee).expect("payee").balance.into_inner(),
        u128::from(TON)
    );
    assert!(devnet.is_settled(&hash));
    assert!(
        devnet
            .produce_block()
            .expect("nothing due")
            .transactions
            .is_empty(),
        "no work, no block"
    );

    // A message in transit survives a restart: it is value on its way.
    let again = wallet
        .transfer(1, devnet.now() + 60, &[pay(&payee, 1)], false)
        .expect("signed");
    devnet.accept_external(again).expect("accepted");
    devnet.produce_block().expect("the wallet's block");
    assert_eq!(devnet.pending(), (0, 1));
    drop(devnet);
    let devnet = devnet_with(dir.path(), Default::default());
    assert_eq!(devnet.pending(), (0, 1), "still on its way");
    devnet.produce_block().expect("delivered");
    assert_eq!(
        devnet.account(&payee).expect("payee").balance.into_inner(),
        u128::from(2 * TON)
    );
}

/// With every external dropped, sendBoc still says "ok" and nothing
/// happens: what a node must be ready for.
#[test]
fn a_dropped_external_is_accepted_and_never_included() {
    let dir = tempfile::tempdir().expect("dir");
    let devnet = devnet_with(
        dir.path(),
        cocoon_devnet::Faults {
            drop_externals: 1.0,
            delay_blocks: 0,
        },
    );
    let wallet = funded_wallet(&devnet, 0x68, 3);
    let msg = wallet
        .transfer(
            0,
            devnet.now() + 60,
            &[pay(&StdAddr::new(0, HashBytes([0x78; 32])), 1)],
            true,
        )
        .expect("signed");
    let hash = devnet.accept_external(msg).expect("accepted");
    assert!(devnet
        .produce_block()
        .expect("block")
        .transactions
        .is_empty());
    assert!(devnet.is_settled(&hash), "gone");
    assert_eq!(
        devnet.account(&wallet.address()).expect("wallet").status,
        AccountStatus::Uninit,
        "never included"
    );
}

/// With `--delay-blocks`, a message waits that many blocks more; the blocks
/// pass even when nothing else happens.
#[test]
fn a_delayed_message_lands_after_the_blocks_it_waits() {
    let dir = tempfile::tempdir().expect("dir");
    let devnet = devnet_with(
        dir.path(),
        cocoon_devnet::Faults {
            drop_externals: 0.0,
            delay_blocks: 3,
        },
    );
    let payee = StdAddr::new(0, HashBytes([0x79; 32]));
    let origin = devnet
        .faucet_later(&payee, Tokens::new(u128::from(TON)))
        .expect("queued");
    let blocks = devnet.counters().blocks;
    let mut made = 0;
    while !devnet.is_settled(&origin) && made < 10 {
        devnet.produce_block().expect("a block");
        made += 1;
    }
    assert_eq!(made, 1, "the faucet's own message is not delayed");
    let wallet = funded_wallet(&devnet, 0x6a, 3);
    let msg = wallet
        .transfer(0, devnet.now() + 60, &[pay(&payee, 1)], true)
        .expect("signed");
    let hash = devnet.accept_external(msg).expect("accepted");
    let before = devnet.counters().blocks;
    let mut waited = 0;
    while !devnet.is_settled(&hash) && waited < 20 {
        devnet.produce_block().expect("a block");
        waited += 1;
    }
    assert_eq!(
        waited, 8,
        "the external 1 + 3 blocks, the payment 1 + 3 more"
    );
    assert_eq!(devnet.counters().blocks, before + 8);
    assert!(devnet.counters().blocks > blocks);
    assert_eq!(
        devnet.account(&payee).expect("payee").balance.into_inner(),
        u128::from(2 * TON)
    );
}
