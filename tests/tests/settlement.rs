//! Money on a chain that behaves like TON at its worst: a devnet that
//! rate-limits (HTTP 429, about what toncenter allows), drops a fifth of
//! the external messages it accepts, and delays every hop. A client runs
//! up charges as fast as it can, the proxy is killed with charges not yet
//! committed, the client's owner takes everything above the stake out of
//! the contract and closes it; the proxy comes back and is paid in full,
//! to the nanoton of its ledger.

use cocoon_e2e::chain::{after, hex_num, on_chain, proxy_args, wallet, ChainDevnet};
use cocoon_e2e::*;
use serde_json::{json, Value};

/// Nanoton per token: dear enough that a client's stake (1 TON) covers a
/// few dozen requests, so the limit is reached in a test.
const PRICE: &str = "2000000";

/// A request of a few tokens.
fn small_request(model: &str) -> Value {
    let mut body = chat_body(model, false);
    body["max_tokens"] = json!(8);
    body
}

/// What the client's contract shows: (booked balance, stake, committed,
/// state).
async fn client_data(net: &ChainDevnet, contract: &str) -> (u64, u64, u64, u64) {
    let s = net
        .run_get(contract, "get_client_data")
        .await
        .expect("get_client_data");
    (
        hex_num(&s[5]),
        hex_num(&s[6]),
        hex_num(&s[7]),
        hex_num(&s[3]),
    )
}

/// Pays a `ton://transfer` link from a fresh wallet of `@ton/ton`, as a
/// wallet app would (contracts/scripts/tonclient-check.mjs --pay).
async fn pay_link(chain: &str, link: &str) {
    let contracts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts");
    let out = tokio::process::Command::new("node")
        .args(["scripts/tonclient-check.mjs", chain, "--pay", link])
        .current_dir(&contracts)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), out)
        .await
        .expect("the payment ends")
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `nanoton` as `cocoon`'s TON amounts (nine decimals).
fn ton(nanoton: u64) -> String {
    format!("{}.{:09}", nanoton / 1_000_000_000, nanoton % 1_000_000_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_withdraws_and_closes_before_a_commit_leaves_the_proxy_paid() {
    let upstream = upstream(UpstreamBehaviour::default()).await;
    let tee = DevAttestation::new();
    let dir = tee.dir.display().to_string();
    let net = ChainDevnet::start(
        &tee.dir.join("chain"),
        &[
            "--rate-limit",
            "30",
            "--drop-externals",
            "0.2",
            "--block-interval-ms",
            "100",
            "--delay-blocks",
            "4",
        ],
    )
    .await;
    let chain = net.api.clone();

    // The registry, a proxy registered and staked, one model and this image.
    let owner = wallet(&chain, &dir, "registry-owner");
    net.fund(&owner, 100).await;
    let deployed = cocoon_json(&["registry", "deploy", "--chain", &chain, "--data-dir", &dir]);
    let root = deployed["root"].as_str().unwrap().to_string();
    let operator = wallet(&chain, &dir, "proxy-operator");
    net.fund(&operator, 100).await;
    let (pp, ph) = (free_port(), free_port());
    let proxy_args = proxy_args(pp, ph, &chain, &root, &tee);
    let unregistered = cocoon_once(&proxy_args.iter().map(String::as_str).collect::<Vec<_>>());
    let key = after(
        &String::from_utf8_lossy(&unregistered.stderr),
        "voucher key",
    );
    let common = ["--chain", &chain, "--data-dir", &dir, "--root", &root];
    let registry =
        |args: &[&str]| cocoon_json(&[&["registry", args[0]][..], &common, &args[1..]].concat());
    let registered = registry(&[
        "register-proxy",
        "--owner",
        &operator,
        "--key",
        &key,
        "--endpoint",
        &format!("tls://127.0.0.1:{pp}"),
    ]);
    let proxy_contract = registered["proxy_contract"].as_str().unwrap().to_string();
    registry(&[
        "set-prices",
        "--price-per-token",
        PRICE,
        "--worker-fee-per-token",
        "1500000",
    ]);
    let weights = "ef".repeat(32);
    registry(&["add-model", &weights, "--name", "settle-model"]);
    for role in ["proxy", "worker", "client"] {
        registry(&["add-image", "--role", role, &tee.image_hash()]);
    }
    cocoon_json(&[&["proxy", "stake", "--amount", "10"][..], &common[..]].concat());
    let mut proxy = Proc::cocoon("proxy-settle", &proxy_args);
    wait_ok(&format!("http://127.0.0.1:{ph}/healthz")).await;

    // A worker and a client on it; the client deposits 3 TON (its stake,
    // the root's minimum, is 1 TON).
    let worker_wallet = wallet(&chain, &dir, "worker");
    net.fund(&worker_wallet, 3).await;
    let mut worker_args: Vec<String> = vec![
        "worker".into(),
        "--name".into(),
        "settle-worker".into(),
        "--proxy".into(),
        format!("127.0.0.1:{pp}"),
        "--model".into(),
        "settle-model".into(),
        "--upstream".into(),
        upstream.base_url(),
        "--http-listen".into(),
        format!("127.0.0.1:{}", free_port()),
        "--model-hash".into(),
        weights.clone(),
    ];
    worker_args.extend(on_chain(&chain, &proxy_contract, &tee));
    let _worker = Proc::cocoon("worker-settle", &worker_args);
    let client_wallet = wallet(&chain, &dir, "client");
    net.fund(&client_wallet, 20).await;
    let cp = free_port();
    let api = format!("http://127.0.0.1:{cp}");
    let mut client_args: Vec<String> = vec![
        "client".into(),
        "--listen".into(),
        format!("127.0.0.1:{cp}"),
        "--proxy".into(),
        format!("127.0.0.1:{pp}"),
    ];
    client_args.extend(on_chain(&chain, &proxy_contract, &tee));
    let _client = Proc::cocoon("client-settle", &client_args);
    wait_ok(&format!("{api}/healthz")).await;
    wait_for_model(&api, "settle-model", 60).await;
    let topped = cocoon_json(&["client", "deposit", "--api", &api, "--amount", "3"]);
    assert_eq!(topped["deposited"], 3_000_000_000u64, "{topped}");
    // Half a TON more from any wallet app: the client's top-up link, paid
    // from a wallet of TON's own client library.
    let (_, _, body) = get(&format!("{api}/v1/cocoon/chain?amount_nanoton=500000000")).await;
    let info: Value = serde_json::from_slice(&body).unwrap();
    let contract = info["client_contract"].as_str().unwrap().to_string();
    let link = info["deposit_link"].as_str().unwrap().to_string();
    assert!(link.starts_with("ton://transfer/"), "{info}");
    let printed = cocoon_once(&[
        "client", "deposit", "--api", &api, "--amount", "0.5", "--link",
    ]);
    assert_eq!(String::from_utf8_lossy(&printed.stdout).trim(), link);
    pay_link(&chain, &link).await;
    let mut deposited = 0;
    for _ in 0..200 {
        let (_, _, body) = get(&format!("{api}/v1/cocoon/balance")).await;
        deposited = serde_json::from_slice::<Value>(&body).unwrap()["deposited"]
            .as_u64()
            .unwrap_or(0);
        if deposited == 3_500_000_000 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(deposited, 3_500_000_000, "the link's top-up counts");

    // The client spends as fast as it can. It is served only while what it
    // owes and the proxy has not committed stays within its stake: then it
    // is told to wait for the commit, and why.
    let mut served = 0;
    let mut held_back = None;
    for _ in 0..200 {
        let (status, headers, body) = post_json(
            &format!("{api}/v1/chat/completions"),
            &small_request("settle-model"),
        )
        .await;
        match status {
            200 => served += 1,
            429 => {
                held_back = Some((headers, String::from_utf8_lossy(&body).to_string()));
                break;
            }
            other => panic!("{other}: {}", String::from_utf8_lossy(&body)),
        }
    }
    let (headers, why) = held_back.expect("the client is held at its stake");
    assert!(served > 3, "served {served} before the limit");
    assert!(
        why.contains("settlement_pending") && why.contains("not yet committed on chain"),
        "{why}"
    );
    assert!(headers.get("retry-after").is_some(), "{headers:?}");
    let (_, _, body) = get(&format!("{api}/v1/cocoon/balance")).await;
    let spent = serde_json::from_slice::<Value>(&body).unwrap()["spent"]
        .as_u64()
        .unwrap();

    // The proxy dies with charges not yet committed. Whatever commit it
    // had sent lands (messages in flight go on without it) and covers less
    // than was spent.
    proxy.kill();
    let mut settled = (0, 0, 0, 0);
    for _ in 0..50 {
        let now = client_data(&net, &contract).await;
        if now == settled {
            break;
        }
        settled = now;
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    }
    let (balance, stake, committed_at_kill, _) = settled;
    assert!(
        committed_at_kill < spent,
        "commits pending at the kill: {committed_at_kill} committed of {spent} spent"
    );
    assert!(
        spent - committed_at_kill <= stake,
        "never more uncommitted than the stake: {spent} spent, {committed_at_kill} committed, stake {stake}"
    );

    // The attack: everything above the stake leaves the contract, and the
    // contract is closed, while the proxy is away.
    let withdrawn = cocoon_json(&[
        "client",
        "withdraw",
        "--api",
        &api,
        "--amount",
        &ton(balance - stake),
    ]);
    assert_eq!(withdrawn["balance"], stake, "{withdrawn}");
    let closing = cocoon_json(&["client", "close", "--api", &api]);
    assert_eq!(closing["state"], "closing", "{closing}");

    // The proxy comes back: it finds the client in its ledger (the client
    // sends nothing more), sees the contract closing, and commits the rest
    // within the close delay.
    let _proxy = Proc::cocoon("proxy-settle-again", &proxy_args);
    let mut now = (0, 0, 0, 0);
    for _ in 0..200 {
        now = client_data(&net, &contract).await;
        if now.2 == spent {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert_eq!(now.2, spent, "the proxy is paid in full: {now:?}");
    // A closing contract is settled, not spent from (once the worker is
    // back with the restarted proxy, so nothing else refuses first).
    wait_for_model(&api, "settle-model", 30).await;
    let (status, _, body) = post_json(
        &format!("{api}/v1/chat/completions"),
        &small_request("settle-model"),
    )
    .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 402, "{body}");
    assert!(body.contains("closing"), "{body}");
    // The charge reaches the proxy contract some blocks later.
    let mut booked = 0;
    for _ in 0..100 {
        let proxy_data = net
            .run_get(&proxy_contract, "get_proxy_data")
            .await
            .expect("get_proxy_data");
        booked = hex_num(&proxy_data[7]);
        if booked >= spent {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert_eq!(booked, spent, "the proxy contract booked every charge once");

    // The close delay passes; the rest goes back to the client's wallet.
    net.advance_clock(3_700).await;
    let wallet_before = net.balance(&client_wallet).await;
    let closed = cocoon_json(&["client", "close", "--api", &api]);
    assert_eq!(closed["state"], "closed", "{closed}");
    let (left, _, committed, state) = client_data(&net, &contract).await;
    assert_eq!((left, committed, state), (0, spent, 2));
    // What stayed (the stake) less what the last commit took, back to the
    // wallet, less the close request's fees (under its 0.2 TON of gas).
    let rest = stake - (spent - committed_at_kill);
    let wallet_after = net.balance(&client_wallet).await;
    assert!(
        wallet_after + 200_000_000 > wallet_before + rest
            && wallet_after < wallet_before + rest + 200_000_000,
        "the rest came back: {wallet_before} -> {wallet_after}, rest {rest}"
    );
}
