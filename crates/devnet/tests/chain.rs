//! The devnet behind the nodes' own `Chain` interface, in process: a
//! node's wallet sends through it and follows its request to the end, as
//! it does over toncenter's HTTP API, while another thread makes blocks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cocoon_chain::chain::Chain;
use cocoon_chain::wallet::{Transfer, WalletKey, WalletV5};
use cocoon_core::Nanoton;
use cocoon_devnet::{AccountStatus, Devnet, DevnetOptions};
use tycho_types::num::Tokens;

const TON: u64 = 1_000_000_000;

/// Makes a block every 20 ms while anything waits, until dropped.
struct BlockMaker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BlockMaker {
    fn start(devnet: Arc<Devnet>) -> BlockMaker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if devnet.wait_for_work(Duration::from_millis(20)) {
                    devnet.produce_block().expect("a block");
                }
            }
        });
        BlockMaker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for BlockMaker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test]
async fn a_wallet_pays_and_follows_its_request_through_the_chain_interface() {
    let dir = tempfile::tempdir().expect("dir");
    let devnet = Arc::new(
        Devnet::open(
            dir.path(),
            DevnetOptions {
                dev: true,
                frozen_clock: Some(1_800_000_000),
                faults: Default::default(),
            },
        )
        .expect("opens"),
    );
    let wallet = WalletV5::new(
        WalletKey::from_seed(&[0x44; 32]).expect("key"),
        devnet.global_id(),
    )
    .expect("wallet");
    devnet
        .faucet(&wallet.address(), Tokens::new(u128::from(5 * TON)))
        .expect("faucet");
    let to = WalletV5::new(WalletKey::from_seed(&[0x45; 32]).expect("key"), 0)
        .expect("wallet")
        .address();
    let chain: &Devnet = &devnet;
    let before = Chain::account(chain, &wallet.address())
        .await
        .expect("account");
    assert_eq!(before.status, AccountStatus::Uninit);
    assert_eq!(before.balance, Nanoton::new(5 * TON));

    let _blocks = BlockMaker::start(devnet.clone());
    let pay = Transfer {
        to: to.clone(),
        value: Nanoton::new(TON),
        bounce: false,
        body: None,
        init: None,
    };
    let delivery = wallet
        .send(chain, &[pay], Duration::from_secs(30))
        .await
        .expect("delivered");
    // The wallet's transaction, then the payee's.
    assert_eq!(delivery.trace.len(), 2, "{:?}", delivery.trace);
    assert_eq!(delivery.trace[1].account, to);
    let paid = Chain::account(chain, &to).await.expect("account");
    assert_eq!(paid.balance, Nanoton::new(TON));
    let after = Chain::account(chain, &wallet.address())
        .await
        .expect("account");
    assert_eq!(after.status, AccountStatus::Active);
    assert_eq!(
        after.balance.get() + TON + delivery.trace[0].fees + delivery.trace[1].in_fwd_fee,
        5 * TON,
        "what left the wallet is the payment and the fees the trace names"
    );
    assert_eq!(wallet.seqno(chain).await.expect("seqno"), (1, true));
    let txs = Chain::transactions(chain, &wallet.address(), None, 10)
        .await
        .expect("transactions");
    assert_eq!(txs[0].id, delivery.trace[0].id, "newest first");
    assert!(Chain::head(chain).await.expect("head").seqno >= 2);
}
