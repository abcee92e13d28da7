//! The devnet's toncenter v2 API, read by Cocoon's own toncenter client on
//! loopback: the second half of the recorded settlement scenario is sent
//! over HTTP and must leave every balance where the sandbox left it; get
//! methods, transactions and the development tools answer as documented;
//! the state survives a restart.

mod common;

use std::sync::Arc;

use cocoon_chain::stack::{StackEntry, StackReader};
use cocoon_chain::{AccountStatus, Chain, ChainError, Toncenter, ToncenterConfig};
use cocoon_devnet::{api, Devnet, DevnetOptions};
use common::{decode_hex, parse_raw, seed, vector};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tycho_types::boc::Boc;
use tycho_types::models::StdAddr;

const TOP_UP: u32 = 0x43c0_0001;

struct Server {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn start(devnet: Arc<Devnet>) -> (String, Server) {
    start_with(
        devnet,
        api::ApiOptions {
            block_interval: std::time::Duration::from_millis(10),
            rate_limit: None,
        },
    )
    .await
}

async fn start_with(devnet: Arc<Devnet>, options: api::ApiOptions) -> (String, Server) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(api::serve(listener, devnet, options, async move {
        let _ = stopped.await;
    }));
    (format!("http://{addr}/api/v2"), Server { stop, task })
}

/// Waits until the devnet's block producer has delivered everything.
async fn settled(devnet: &Devnet) {
    for _ in 0..1_000 {
        if devnet.pending() == (0, 0) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!(
        "the devnet still has messages waiting: {:?}",
        devnet.pending()
    );
}

/// A bare HTTP POST, for the development routes the client does not use.
async fn post(endpoint: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let rest = endpoint.strip_prefix("http://").expect("http");
    let (host, base) = rest.split_once('/').expect("path");
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    let req = format!(
        "POST /{base}/{path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    let status = out[9..12].parse().expect("status");
    let json = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (
        status,
        serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scenario_over_http_ends_where_the_sandbox_ended() {
    let v = vector("settlement.json");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = DevnetOptions {
        dev: true,
        frozen_clock: Some(v.steps[0].now),
        ..Default::default()
    };
    let devnet = Arc::new(Devnet::open(dir.path(), options).expect("opens"));
    seed(&devnet, &v);
    let half = v.steps.len() / 2;
    for step in &v.steps[..half] {
        devnet
            .send_external(Boc::decode(decode_hex(&step.message)).expect("msg"))
            .expect("step");
    }

    let (endpoint, stop) = start(devnet.clone()).await;
    let chain = Toncenter::new(ToncenterConfig::single(&endpoint)).expect("client");
    for (i, step) in v.steps.iter().enumerate().skip(half) {
        let now = devnet.now();
        if step.now > now {
            let body = format!("{{\"seconds\": {}}}", step.now - now);
            let (status, answer) = post(&endpoint, "devnet/advanceClock", &body).await;
            assert_eq!(status, 200, "{answer}");
        }
        let msg = Boc::decode(decode_hex(&step.message)).expect("msg");
        let hash = chain
            .send_message(&msg)
            .await
            .unwrap_or_else(|e| panic!("step {i}: {e}"));
        assert_eq!(hash, *msg.repr_hash());
        settled(&devnet).await;
        for (addr, expected) in &step.balances {
            let account = chain
                .account(&parse_raw(addr))
                .await
                .expect("getAddressInformation");
            assert_eq!(
                account.balance.get().to_string(),
                *expected,
                "step {i}: balance of {addr}"
            );
        }
    }

    // The client contract: found by its first top-up, closed by the end.
    let client: StdAddr = v
        .steps
        .iter()
        .flat_map(|s| &s.transactions)
        .find(|t| t.op == Some(TOP_UP))
        .map(|t| parse_raw(&t.account))
        .expect("a top-up in the scenario");
    let account = chain.account(&client).await.expect("account");
    assert_eq!(account.status, AccountStatus::Active);
    assert!(account.code_hash().is_some());
    let data = chain
        .run_get_method(&client, "get_client_data", &[])
        .await
        .expect("get-method");
    assert!(data.succeeded(), "exit code {}", data.exit_code);
    let mut r = StackReader::new(data.stack);
    r.address().expect("proxy");
    r.address().expect("owner");
    r.int().expect("proxy key");
    assert_eq!(r.u64().expect("state"), 2, "the client contract is closed");

    // Its transactions, newest first, each hashing to its id, the fees the
    // sandbox charged.
    let txs = chain
        .transactions(&client, None, 50)
        .await
        .expect("getTransactions");
    let expected: Vec<u64> = v
        .steps
        .iter()
        .flat_map(|s| &s.transactions)
        .filter(|t| parse_raw(&t.account) == client)
        .map(|t| t.fees.parse().expect("fees"))
        .collect();
    assert_eq!(txs.len(), expected.len());
    let fees: Vec<u64> = txs.iter().rev().map(|t| t.fee.get()).collect();
    assert_eq!(fees, expected);
    let older = chain
        .transactions(&client, Some(txs[1].id), 1)
        .await
        .expect("paged");
    assert_eq!(
        older[0].id, txs[1].id,
        "paging starts at the given transaction"
    );

    // Bad input is refused with the reason.
    match chain.run_get_method(&client, "no_such_method", &[]).await {
        Ok(out) => assert!(!out.succeeded(), "an unknown method fails"),
        Err(e) => panic!("{e}"),
    }
    let (status, answer) = post(&endpoint, "sendBoc", "{\"boc\": \"not a bag of cells\"}").await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap_or_default().contains("boc"),
        "{answer}"
    );
    let stranger = StdAddr::new(0, tycho_types::cell::HashBytes([7; 32]));
    let missing = chain
        .run_get_method(&stranger, "get_client_data", &[StackEntry::Null])
        .await;
    assert!(
        matches!(missing, Err(ChainError::BadRequest(_))),
        "a null argument cannot be sent: {missing:?}"
    );

    // The faucet pays out of nothing and counts it.
    let body = format!(
        "{{\"address\": \"{}\", \"amount\": \"5000000000\"}}",
        common::raw(&stranger)
    );
    let (status, answer) = post(&endpoint, "devnet/faucet", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        chain
            .account(&stranger)
            .await
            .expect("account")
            .balance
            .get(),
        5_000_000_000
    );
    assert_eq!(devnet.counters().minted, 5_000_000_000);

    // Everything is on disk: a restarted devnet reads the same.
    drop(chain);
    stop.shutdown().await;
    let before = devnet.account(&client).expect("account").balance;
    // The block producer lets go within a moment of the server stopping.
    for _ in 0..200 {
        if Arc::strong_count(&devnet) == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let devnet = Arc::into_inner(devnet).expect("the server let go");
    let counters = devnet.counters();
    drop(devnet);
    let reopened = Devnet::open(dir.path(), options).expect("reopens");
    assert_eq!(reopened.account(&client).expect("account").balance, before);
    assert_eq!(reopened.counters(), counters);
    assert_eq!(
        reopened
            .transactions(&client, None, 100)
            .expect("txs")
            .len(),
        expected.len()
    );
}

#[tokio::test]
async fn development_tools_are_refused_without_dev() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let devnet = Arc::new(Devnet::open(dir.path(), DevnetOptions::default()).expect("opens"));
    let (endpoint, _stop) = start(devnet.clone()).await;
    let body = format!("{{\"address\": \"0:{}\", \"amount\": 1}}", "11".repeat(32));
    let (status, answer) = post(&endpoint, "devnet/faucet", &body).await;
    assert_eq!(status, 403);
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("--dev"),
        "{answer}"
    );
    let (status, _) = post(&endpoint, "devnet/advanceClock", "{\"seconds\": 60}").await;
    assert_eq!(status, 403);
    assert!(Devnet::open(
        tempfile::tempdir().expect("dir").path(),
        DevnetOptions {
            dev: false,
            frozen_clock: Some(1),
            ..Default::default()
        }
    )
    .is_err());
    // The chain's head is there from the start.
    let chain = Toncenter::new(ToncenterConfig::single(&endpoint)).expect("client");
    assert_eq!(chain.head().await.expect("head").seqno, 0);
}

/// toncenter's pace without an API key is about one call a second; the
/// devnet can be as strict, and the client paces itself rather than fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_answers_429_and_the_client_paces_itself_through_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let devnet = Arc::new(Devnet::open(dir.path(), DevnetOptions::default()).expect("opens"));
    let (endpoint, _stop) = start_with(
        devnet.clone(),
        api::ApiOptions {
            block_interval: std::time::Duration::from_millis(10),
            rate_limit: Some(5.0),
        },
    )
    .await;
    let stranger = StdAddr::new(0, tycho_types::cell::HashBytes([9; 32]));
    let query = format!(
        "{{\"id\": 1, \"jsonrpc\": \"2.0\", \"method\": \"getAddressInformation\", \"params\": {{\"address\": \"{}\"}}}}",
        common::raw(&stranger)
    );
    let mut limited = None;
    for _ in 0..20 {
        let (status, answer) = post(&endpoint, "jsonRPC", &query).await;
        if status == 429 {
            limited = Some(answer);
            break;
        }
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["result"]["state"], "uninitialized", "{answer}");
        assert_eq!(answer["id"], 1);
    }
    let limited = limited.expect("a burst beyond 5 calls/s is refused");
    assert_eq!(limited["ok"], false);
    assert_eq!(limited["code"], 429);

    // Cocoon's own client, with a single attempt per call, gets through a
    // burst by waiting its turn (at an API key's pace: 10 calls/s).
    let chain = Toncenter::new(ToncenterConfig {
        attempts: 1,
        api_key: Some("key".into()),
        ..ToncenterConfig::single(&endpoint)
    })
    .expect("client");
    let calls = (0..12).map(|_| chain.account(&stranger));
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.expect("paced, not failed").status, AccountStatus::Uninit);
    }
    // The configuration answers too, with the devnet's own global id.
    let (status, answer) = post(
        &endpoint,
        "jsonRPC",
        "{\"id\": 2, \"jsonrpc\": \"2.0\", \"method\": \"getConfigParam\", \"params\": {\"config_id\": 19}}",
    )
    .await;
    if status == 200 {
        assert_eq!(answer["result"]["@type"], "configInfo", "{answer}");
    } else {
        assert_eq!(status, 429, "{answer}");
    }
    assert_eq!(
        chain.global_id().await.expect("param 19"),
        devnet.global_id()
    );
}

/// A `sendBoc` whose answer is lost on the way back: the devnet accepted
/// the message, the wallet heard nothing. The wallet looks for it, finds it
/// landed and says so, rather than report that nothing was sent (which
/// would have it sent again: the money moving twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_send_answer_was_lost_is_found_landed_and_paid_once() {
    use axum::routing::post;
    use cocoon_chain::wallet::{Transfer, WalletKey, WalletV5};
    use std::sync::atomic::{AtomicUsize, Ordering};

    let dir = tempfile::tempdir().expect("a temporary directory");
    let devnet = Arc::new(
        Devnet::open(
            dir.path(),
            DevnetOptions {
                dev: true,
                ..Default::default()
            },
        )
        .expect("opens"),
    );
    let wallet = WalletV5::new(
        WalletKey::from_seed(&[0x5b; 32]).expect("key"),
        devnet.global_id(),
    )
    .expect("wallet");
    devnet
        .faucet(
            &wallet.address(),
            tycho_types::num::Tokens::new(3_000_000_000),
        )
        .expect("faucet");

    // In front of the devnet's API: sendBoc hands the message to the
    // devnet, then answers 504 as a gateway that lost the answer would.
    let lost = Arc::new(AtomicUsize::new(0));
    let (d, count) = (devnet.clone(), lost.clone());
    let front = axum::Router::new()
        .route(
            "/api/v2/sendBoc",
            post(move |body: axum::body::Bytes| {
                let (d, count) = (d.clone(), count.clone());
                async move {
                    let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    if let Ok(cell) = cocoon_chain::toncenter::wire::cell_from_base64(
                        req["boc"].as_str().unwrap_or_default(),
                    ) {
                        let _ = d.accept_external(cell);
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    (
                        axum::http::StatusCode::GATEWAY_TIMEOUT,
                        "upstream timed out",
                    )
                }
            }),
        )
        .fallback_service(api::router_with(
            devnet.clone(),
            api::ApiOptions {
                block_interval: std::time::Duration::from_millis(10),
                rate_limit: None,
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, front).await });
    let chain = Toncenter::new(ToncenterConfig {
        attempts: 1,
        ..ToncenterConfig::single(format!("http://{addr}/api/v2"))
    })
    .expect("client");

    let payee = StdAddr::new(0, tycho_types::cell::HashBytes([0x5c; 32]));
    let delivery = wallet
        .send(
            &chain,
            &[Transfer {
                to: payee.clone(),
                value: cocoon_core::Nanoton::new(1_000_000_000),
                bounce: false,
                body: None,
                init: None,
            }],
            std::time::Duration::from_secs(30),
        )
        .await
        .expect("found landed, though the send was never answered");
    assert!(lost.load(Ordering::SeqCst) >= 1);
    assert_eq!(delivery.trace.len(), 2, "the wallet's and the payee's");
    assert_eq!(delivery.trace[1].account, payee);
    settled(&devnet).await;
    assert_eq!(
        devnet.account(&payee).expect("payee").balance.into_inner(),
        1_000_000_000,
        "paid once"
    );
}
