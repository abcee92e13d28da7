//! Separate nodes on a chain, as on TON testnet, with a `cocoon devnet` in
//! its place: the registry's owner deploys the root and registers the
//! proxy; the proxy finds its contract through the root; the client and the
//! worker find theirs through the proxy's contract; the client's first
//! top-up deploys its contract; requests are paid from it and the proxy
//! commits the voucher. Then the chain goes away mid-load: requests are
//! still served, the proxy says the chain is unreachable, and when it comes
//! back the proxy catches up and commits exactly what it charged, once.
//! A worker adds to its stake on demand; a dishonest worker outvoted in a
//! replicated request is slashed on chain by the proxy (its receipt key,
//! which it registered itself, signed the accused receipt), and the root's
//! share of its stake lands in the client's contract. Only --chain tells
//! the nodes where the chain is. The devnet behaves like TON at its worst
//! that is still TON: every hop a block later, and a fifth of the external
//! messages it accepts never included.

use cocoon_e2e::chain::{after, hex_num, on_chain, proxy_args, wallet, ChainDevnet};
use cocoon_e2e::*;
use serde_json::{json, Value};

/// The devnet of these tests: as TON may, it leaves a fifth of the external
/// messages it accepts out of every block; the nodes must find out and send
/// them again.
const FAULTS: &[&str] = &["--drop-externals", "0.2", "--block-interval-ms", "100"];

/// What `contract` has committed on chain, once it reaches `want` (or what
/// it is after 20 s).
async fn committed_on(chain: &str, contract: &str, want: u64) -> u64 {
    let mut committed = 0;
    for _ in 0..100 {
        let (_, _, body) = post_json(
            &format!("{chain}/runGetMethod"),
            &json!({"address": contract, "method": "get_client_data", "stack": []}),
        )
        .await;
        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
            committed = hex_num(&v["result"]["stack"][7]);
            if committed == want {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    committed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_nodes_find_their_contracts_on_the_chain_and_pay_through_them() {
    let upstream = upstream(UpstreamBehaviour::default()).await;
    let tee = DevAttestation::new();
    let dir = tee.dir.display().to_string();
    let chain_dir = tee.dir.join("chain");
    let net = ChainDevnet::start(&chain_dir, FAULTS).await;
    let chain = net.api.clone();

    // The registry's owner deploys the root.
    let owner = wallet(&chain, &dir, "registry-owner");
    net.fund(&owner, 100).await;
    let deployed = cocoon_json(&["registry", "deploy", "--chain", &chain, "--data-dir", &dir]);
    let root = deployed["root"].as_str().unwrap().to_string();

    // Outside development mode a node refuses a chain whose faucet is on.
    let no_dev: Vec<String> = vec![
        "proxy".into(),
        "--chain".into(),
        chain.clone(),
        "--root".into(),
        root.clone(),
        "--tee".into(),
        "sim".into(),
        "--peer-policy".into(),
        tee.policy.display().to_string(),
        "--data-dir".into(),
        dir.clone(),
    ];
    let refused = cocoon_once(&no_dev.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("anyone can mint TON there"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // An unregistered proxy is told what to have registered.
    let operator = wallet(&chain, &dir, "proxy-operator");
    net.fund(&operator, 100).await;
    let (pp, ph) = (free_port(), free_port());
    let mut proxy_args = proxy_args(pp, ph, &chain, &root, &tee);
    proxy_args.extend(["--commit-above".into(), "1".into()]);
    let refused = cocoon_once(&proxy_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(why.contains("not registered"), "{why}");
    assert_eq!(after(&why, "with owner"), operator, "{why}");
    let key = after(&why, "voucher key");

    // The owner's commands, each with the chain, its data and the root.
    let common = ["--chain", &chain, "--data-dir", &dir, "--root", &root];
    let registry = |args: &[&str]| {
        let all = [&["registry", args[0]][..], &common, &args[1..]].concat();
        cocoon_json(&all)
    };
    let endpoint = format!("tls://127.0.0.1:{pp}");
    let registered = registry(&[
        "register-proxy",
        "--owner",
        &operator,
        "--key",
        &key,
        "--endpoint",
        &endpoint,
    ]);
    let proxy_contract = registered["proxy_contract"].as_str().unwrap().to_string();
    let shown = registry(&["show"]);
    assert_eq!(
        shown["proxies"][0]["contract"],
        proxy_contract.as_str(),
        "{shown}"
    );
    assert_eq!(shown["owner"], owner.as_str());

    // The registry sets the prices; the proxy charges them, not flags.
    let priced = registry(&[
        "set-prices",
        "--price-per-token",
        "200",
        "--worker-fee-per-token",
        "150",
    ]);
    assert!(priced["version"].as_u64().unwrap() > registered["version"].as_u64().unwrap());
    let mut flagged: Vec<&str> = proxy_args.iter().map(String::as_str).collect();
    flagged.extend(["--price-per-token", "5"]);
    let refused = cocoon_once(&flagged);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("the root registry's"));
    // Tier prices too, and the operators the registry lists.
    let tiers = registry(&[
        "set-tier-prices",
        "--tdx",
        "12000",
        "--open",
        "5000",
        "--gpu",
        "15000",
    ]);
    assert!(tiers["version"].as_u64().unwrap() > priced["version"].as_u64().unwrap());
    registry(&["set-region-price", "eu", "--multiplier", "11000"]);
    registry(&["set-operator", &owner, "--region", "eu", "--open"]);
    let shown = registry(&["show"]);
    let t = &shown["tiers"];
    assert_eq!(t["multipliers"]["tdx"], 12000, "{shown}");
    assert_eq!(t["multipliers"]["gpu"], 15000, "{shown}");
    assert_eq!(t["regions"]["eu"], 11000, "{shown}");
    assert_eq!(t["operators"][owner.as_str()]["open"], true, "{shown}");
    assert_eq!(
        t["operators"][owner.as_str()]["regions"],
        json!(["eu"]),
        "{shown}"
    );
    let mut tiered: Vec<&str> = proxy_args.iter().map(String::as_str).collect();
    tiered.extend(["--tier-prices", r#"{"gpu": 1}"#]);
    let refused = cocoon_once(&tiered);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("set-tier-prices"));
    // Nor can clients credit themselves: deposits are the contracts'.
    let mut minting: Vec<&str> = proxy_args.iter().map(String::as_str).collect();
    minting.push("--dev-deposits");
    let refused = cocoon_once(&minting);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("client contracts' own"));

    // The registry decides which weights may serve.
    let weights = "ab".repeat(32);
    registry(&["add-model", &weights, "--name", "chain-model"]);

    // The registry decides which images each role may run.
    let image = tee.image_hash();
    for role in ["proxy", "worker", "client"] {
        registry(&["add-image", "--role", role, &image]);
    }

    // Unstaked, its contract would book no charge: the proxy says so.
    let refused = cocoon_once(&proxy_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(why.contains("below the root's minimum"), "{why}");
    let staked = cocoon_json(&[&["proxy", "stake", "--amount", "10"][..], &common[..]].concat());
    assert_eq!(staked["stake"], 10_000_000_000u64, "{staked}");

    let proxy = Proc::cocoon("proxy-chain", &proxy_args);
    wait_ok(&format!("http://127.0.0.1:{ph}/healthz")).await;
    let (_, _, body) = get(&format!("http://127.0.0.1:{ph}/jsonstats")).await;
    let stats: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(stats["detail"]["ledger"]["price_per_token"], 200, "{stats}");
    assert_eq!(stats["detail"]["ledger"]["worker_fee_per_token"], 150);
    assert!(
        stats["info"]["registry"]
            .as_str()
            .unwrap_or_default()
            .contains(&root),
        "{stats}"
    );
    let trust = stats["info"]["trust"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(trust.contains("images: the root registry"), "{trust}");
    // One endpoint: its word is all there is, and /stats says so (with two,
    // trust changes only when they agree).
    assert!(trust.contains("one endpoint configured"), "{trust}");

    // The worker and the client find their contracts through the proxy's.
    let worker_wallet = wallet(&chain, &dir, "worker");
    // Enough for the minimum stake (1 TON) its first payout locks first.
    net.fund(&worker_wallet, 3).await;
    let wh = free_port();
    let mut worker_args: Vec<String> = vec![
        "worker".into(),
        "--name".into(),
        "chain-worker".into(),
        "--proxy".into(),
        format!("127.0.0.1:{pp}"),
        "--model".into(),
        "chain-model".into(),
        "--upstream".into(),
        upstream.base_url(),
        "--http-listen".into(),
        format!("127.0.0.1:{wh}"),
        "--payout-above".into(),
        "1".into(),
        "--model-hash".into(),
        weights.clone(),
        // Attested hardware (the simulated GPU), so that replicas are exact
        // replays and a dissenter can be slashed.
        "--gpu".into(),
        "sim".into(),
    ];
    worker_args.extend(on_chain(&chain, &proxy_contract, &tee));
    let _worker = Proc::cocoon("worker-chain", &worker_args);

    // Weights the registry does not list are turned away.
    let mut rogue = worker_args.clone();
    let at = rogue.iter().position(|a| a == "--model-hash").unwrap();
    rogue[at + 1] = "cd".repeat(32);
    let at = rogue.iter().position(|a| a == "--http-listen").unwrap();
    rogue[at + 1] = format!("127.0.0.1:{}", free_port());
    let at = rogue.iter().position(|a| a == "--name").unwrap();
    rogue[at + 1] = "rogue-worker".into();
    let rogue = Proc::cocoon("worker-rogue", &rogue);
    rogue
        .wait_for_log("not registered by the root registry", 20)
        .await;

    let client_wallet = wallet(&chain, &dir, "client");
    net.fund(&client_wallet, 20).await;
    let cp = free_port();
    let api = format!("http://127.0.0.1:{cp}");
    let client_on_chain = |port: u16, name: &str| {
        let mut args: Vec<String> = vec![
            "client".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--proxy".into(),
            format!("127.0.0.1:{pp}"),
        ];
        args.extend(on_chain(&chain, &proxy_contract, &tee));
        Proc::cocoon(name, &args)
    };
    let _client = client_on_chain(cp, "client-chain");
    wait_ok(&format!("{api}/healthz")).await;
    let (_, _, body) = get(&format!("{api}/v1/cocoon/chain")).await;
    let info: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(info["root"], root.as_str(), "{info}");
    assert_eq!(info["proxy_contract"], proxy_contract.as_str());
    assert_eq!(info["client_wallet"], client_wallet.as_str());
    wait_for_model(&api, "chain-model", 10).await;

    // No contract yet: nothing to pay with.
    let (status, _, body) = post_json(
        &format!("{api}/v1/chat/completions"),
        &chat_body("chain-model", false),
    )
    .await;
    assert_eq!(status, 402, "{}", String::from_utf8_lossy(&body));

    // The first top-up deploys the client's contract; then requests are paid.
    let topped = cocoon_json(&["client", "deposit", "--api", &api, "--amount", "5"]);
    assert_eq!(topped["deposited"], 5_000_000_000u64, "{topped}");
    let (status, _, body) = post_json(
        &format!("{api}/v1/chat/completions"),
        &chat_body("chain-model", false),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (_, _, body) = get(&format!("{api}/v1/cocoon/balance")).await;
    let spent = serde_json::from_slice::<Value>(&body).unwrap()["spent"]
        .as_u64()
        .unwrap();
    assert!(spent > 0);

    // The proxy commits the voucher to the client's contract.
    let contract = info["client_contract"].as_str().unwrap().to_string();
    assert_eq!(
        committed_on(&chain, &contract, spent).await,
        spent,
        "the proxy committed what it charged"
    );

    // The doctor finds everything in order.
    let doctor = [
        &[
            "doctor",
            "--role",
            "client",
            "--proxy-contract",
            &proxy_contract,
        ][..],
        &common,
    ]
    .concat();
    let out = cocoon_once(&doctor);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("ok   client contract") && said.contains("ok   root"),
        "{said}"
    );

    // The chain goes away mid-load: requests are still served on the
    // balances last read; the proxy's stats say the chain is unreachable.
    let mut net = net;
    net.proc.kill();
    let out = cocoon_once(&doctor);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FAIL chain"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for _ in 0..5 {
        let (status, _, body) = post_json(
            &format!("{api}/v1/chat/completions"),
            &chat_body("chain-model", false),
        )
        .await;
        assert_eq!(
            status,
            200,
            "served while the chain is down: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let (_, _, body) = get(&format!("{api}/v1/cocoon/balance")).await;
    let spent = serde_json::from_slice::<Value>(&body).unwrap()["spent"]
        .as_u64()
        .unwrap();
    let mut stats = Value::Null;
    for _ in 0..100 {
        let (_, _, body) = get(&format!("http://127.0.0.1:{ph}/jsonstats")).await;
        stats = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if stats["detail"]["chain"]["unreachable_for_s"].is_u64() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        stats["detail"]["chain"]["unreachable_for_s"].is_u64(),
        "the proxy says the chain is unreachable: {stats}"
    );

    // It comes back: the proxy catches up, and commits exactly what it
    // charged: the proxy contract booked every charge once.
    let net = ChainDevnet::start_at(&chain_dir, &chain, FAULTS).await;
    assert_eq!(
        committed_on(&chain, &contract, spent).await,
        spent,
        "caught up after the outage"
    );
    // The client contract's charge reaches the proxy contract a block later.
    let mut p = Value::Null;
    for _ in 0..100 {
        let (_, _, body) = post_json(
            &format!("{chain}/runGetMethod"),
            &json!({"address": proxy_contract, "method": "get_proxy_data", "stack": []}),
        )
        .await;
        p = serde_json::from_slice(&body).unwrap();
        if hex_num(&p["result"]["stack"][7]) >= spent {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        hex_num(&p["result"]["stack"][7]),
        spent,
        "charged once on chain: {p}"
    );

    let (_, _, body) = get(&format!("http://127.0.0.1:{wh}/jsonstats")).await;
    let stats: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(stats["info"]["wallet"], worker_wallet.as_str(), "{stats}");
    // The worker staked the root's minimum from its wallet when it
    // started; the proxy admits no worker on a chain without it.
    let worker_contract = stats["info"]["worker_contract"].as_str().unwrap();
    let (_, _, body) = post_json(
        &format!("{chain}/runGetMethod"),
        &json!({"address": worker_contract, "method": "get_worker_stake", "stack": []}),
    )
    .await;
    let s: Value = serde_json::from_slice(&body).unwrap();
    let stake = &s["result"]["stack"];
    // At least the minimum: the rogue worker above shares this wallet, and
    // two workers starting at once may each top it up.
    assert!(hex_num(&stake[0]) >= 1_000_000_000, "staked: {s}");
    assert_eq!(hex_num(&stake[1]), 1_000_000_000, "the root's minimum: {s}");

    // More on demand: `cocoon worker stake` adds exactly the amount from
    // the wallet, and says what it found before and after.
    let stake_before = hex_num(&stake[0]);
    let worker_api = format!("http://127.0.0.1:{wh}");
    let added = cocoon_json(&["worker", "stake", "--api", &worker_api, "--amount", "0.25"]);
    assert_eq!(added["added"], "250000000 nanoton", "{added}");
    assert_eq!(
        added["stake_before"],
        format!("{stake_before} nanoton"),
        "{added}"
    );
    assert_eq!(
        added["stake_after"],
        format!("{} nanoton", stake_before + 250_000_000),
        "{added}"
    );
    let (_, _, body) = post_json(
        &format!("{chain}/runGetMethod"),
        &json!({"address": worker_contract, "method": "get_worker_stake", "stack": []}),
    )
    .await;
    let s: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        hex_num(&s["result"]["stack"][0]),
        stake_before + 250_000_000,
        "{s}"
    );
    // Nothing, or more than the wallet holds, is refused before anything is sent.
    let zero = cocoon_once(&["worker", "stake", "--api", &worker_api, "--amount", "0"]);
    assert!(!zero.status.success());
    let huge = cocoon_once(&[
        "worker",
        "stake",
        "--api",
        &worker_api,
        "--amount",
        "18000000000",
    ]);
    assert!(!huge.status.success());
    let why = String::from_utf8_lossy(&huge.stderr);
    assert!(why.contains("less than the"), "{why}");

    // A worker proven wrong is slashed on chain by the proxy itself. Two
    // more workers serve the model, each with its own wallet and receipt
    // key, one of them answering differently; a replicated request (one
    // seed: deterministic) outvotes it, and the proxy sends the signed
    // evidence from its operator wallet to the dissenter's worker
    // contract, which checks the three workers' receipt signatures and
    // that the accused key is one it registered, and pays the root's share
    // of its stake, through the proxy contract, into the client's contract.
    let dishonest = cocoon_e2e::upstream(UpstreamBehaviour {
        chunk_size: 13,
        ..Default::default()
    })
    .await;
    let mut extra = Vec::new();
    let mut dissenter_http = 0;
    for (name, up) in [
        ("chain-worker-2", &upstream),
        ("chain-worker-3", &dishonest),
    ] {
        let key = tee.dir.join("keys").join(format!("{name}.wallet-key"));
        let key = key.display().to_string();
        let w = cocoon_json(&[
            "wallet",
            "--role",
            "worker",
            "--chain",
            &chain,
            "--data-dir",
            &dir,
            "--wallet-key",
            &key,
        ]);
        net.fund(w["address"].as_str().unwrap(), 3).await;
        let http = free_port();
        let mut args = worker_args.clone();
        let at = args.iter().position(|a| a == "--name").unwrap();
        args[at + 1] = name.into();
        let at = args.iter().position(|a| a == "--http-listen").unwrap();
        args[at + 1] = format!("127.0.0.1:{http}");
        let at = args.iter().position(|a| a == "--upstream").unwrap();
        args[at + 1] = up.base_url();
        args.extend(["--wallet-key".to_string(), key]);
        extra.push(Proc::cocoon(name, &args));
        dissenter_http = http;
    }
    for _ in 0..300 {
        let (_, _, body) = get(&format!("{api}/v1/models")).await;
        let models: Value = serde_json::from_slice(&body).unwrap();
        if models["data"][0]["cocoon"]["workers"] == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, _, body) = get(&format!("http://127.0.0.1:{dissenter_http}/jsonstats")).await;
    let dissenter_contract = serde_json::from_slice::<Value>(&body).unwrap()["info"]
        ["worker_contract"]
        .as_str()
        .unwrap()
        .to_string();
    let stake_of = |contract: String| {
        let chain = chain.clone();
        async move {
            let (_, _, body) = post_json(
                &format!("{chain}/runGetMethod"),
                &json!({"address": contract, "method": "get_worker_stake", "stack": []}),
            )
            .await;
            let s: Value = serde_json::from_slice(&body).unwrap();
            (
                hex_num(&s["result"]["stack"][0]),
                hex_num(&s["result"]["stack"][3]),
            )
        }
    };
    assert_eq!(
        stake_of(dissenter_contract.clone()).await,
        (1_000_000_000, 0)
    );
    let balance_of = |address: String| {
        let chain = chain.clone();
        async move {
            let (_, _, body) =
                get(&format!("{chain}/getAddressInformation?address={address}")).await;
            serde_json::from_slice::<Value>(&body).unwrap()["result"]["balance"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        }
    };
    let client_data = |address: String| {
        let chain = chain.clone();
        async move {
            let (_, _, body) = post_json(
                &format!("{chain}/runGetMethod"),
                &json!({"address": address, "method": "get_client_data", "stack": []}),
            )
            .await;
            let s: Value = serde_json::from_slice(&body).unwrap();
            // balance, committed
            (
                hex_num(&s["result"]["stack"][5]),
                hex_num(&s["result"]["stack"][7]),
            )
        }
    };
    let (balance_before, committed_before) = client_data(contract.clone()).await;
    let wallet_before = balance_of(client_wallet.clone()).await;

    let mut body = chat_body("chain-model", false);
    body["cocoon"] = json!({"replicas": 3});
    let (status, _, answer) = post_json(&format!("{api}/v1/chat/completions"), &body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let v: Value = serde_json::from_slice(&answer).unwrap();
    let r = &v["cocoon"]["replication"];
    assert_eq!(r["dissented"], json!(["chain-worker-3"]), "{r}");
    assert_eq!(r["slash_evidence"].as_array().unwrap().len(), 1, "{r}");
    // On a chain a worker is its staked contract, whatever its name.
    let (_, _, stats) = get(&format!("http://127.0.0.1:{ph}/jsonstats")).await;
    let stats: Value = serde_json::from_slice(&stats).unwrap();
    let record = worker_record(&stats, "chain-worker-3");
    assert_eq!(record["identity"], dissenter_contract.as_str(), "{stats}");
    assert_eq!(record["reputation"]["dissented"], 1, "{stats}");
    let accused = r["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["receipt"]["worker"] == "chain-worker-3")
        .unwrap_or_else(|| panic!("the dissenter's receipt: {r}"))["receipt"]
        .clone();
    let request = accused["request_sha256"].as_str().unwrap().to_string();
    let time = accused["finished_at_ms"].as_u64().unwrap() / 1000;

    let mut submitted = Value::Null;
    for _ in 0..200 {
        let (_, _, log) = get(&format!("http://127.0.0.1:{ph}/evidence")).await;
        let log: Value = serde_json::from_slice(&log).unwrap();
        submitted = log[0].clone();
        let state = submitted["submitted"].as_str().unwrap_or("not yet");
        if state != "not yet" && state != "sending" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(submitted["submitted"], "sent", "{submitted}");
    assert_eq!(submitted["worker_contract"], dissenter_contract.as_str());
    assert_eq!(
        submitted["client_owner"],
        client_wallet.as_str(),
        "paid into the contract of the client's wallet"
    );
    // The contract took the root's share (10 %) of the stake, remembers
    // the receipt, and the client's contract received it into its balance.
    let mut stake = (0, 0);
    for _ in 0..100 {
        stake = stake_of(dissenter_contract.clone()).await;
        if stake.1 > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(stake, (900_000_000, 100_000_000), "stake left and slashed");
    let (_, _, body) = post_json(
        &format!("{chain}/runGetMethod"),
        &json!({"address": dissenter_contract, "method": "was_slashed_for",
                "stack": [["num", format!("{time:#x}")], ["num", format!("0x{request}")]]}),
    )
    .await;
    let w: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(w["result"]["stack"][0][1], "-0x1", "true: {w}");
    let (balance_after, committed_after) = client_data(contract.clone()).await;
    let charged = committed_after - committed_before;
    assert_eq!(
        balance_after + charged,
        balance_before + 100_000_000,
        "the client's contract gained the slashed amount (less any charge committed meanwhile)"
    );
    assert_eq!(
        balance_of(client_wallet.clone()).await,
        wallet_before,
        "nothing went to the wallet itself"
    );
    drop(extra);

    // The worker takes its earnings out by itself above its threshold,
    // staking the root's minimum first (payouts are refused below it): the
    // proxy contract pays it exactly what the ledger says it earned.
    let (_, _, body) = get(&format!("http://127.0.0.1:{wh}/jsonstats")).await;
    let earned: u64 = serde_json::from_slice::<Value>(&body).unwrap()["detail"]["earned"]
        .as_u64()
        .unwrap();
    let mut paid = 0;
    for _ in 0..60 {
        let (_, _, body) = post_json(
            &format!("{chain}/runGetMethod"),
            &json!({"address": proxy_contract, "method": "get_proxy_data", "stack": []}),
        )
        .await;
        paid = hex_num(&serde_json::from_slice::<Value>(&body).unwrap()["result"]["stack"][8]);
        if paid == earned {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    assert_eq!(
        paid, earned,
        "the worker withdrew what it earned, by itself"
    );

    // A client given only the root picks the proxy the registry lists.
    let cp3 = free_port();
    let mut picking: Vec<String> = vec![
        "client".into(),
        "--listen".into(),
        format!("127.0.0.1:{cp3}"),
        "--chain".into(),
        chain.clone(),
        "--root".into(),
        root.clone(),
    ];
    picking.extend(tee.args());
    let _picking = Proc::cocoon("client-picks", &picking);
    wait_ok(&format!("http://127.0.0.1:{cp3}/healthz")).await;
    let (_, _, body) = get(&format!("http://127.0.0.1:{cp3}/v1/cocoon/chain")).await;
    let picked: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        picked["proxy_contract"],
        proxy_contract.as_str(),
        "{picked}"
    );
    let (status, _, body) = post_json(
        &format!("http://127.0.0.1:{cp3}/v1/chat/completions"),
        &chat_body("chain-model", false),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // A client naming another's contract as its payer spends nothing: it
    // cannot sign for the wallet that owns it.
    let cp4 = free_port();
    let mut thief: Vec<String> = vec![
        "client".into(),
        "--listen".into(),
        format!("127.0.0.1:{cp4}"),
        "--proxy".into(),
        format!("127.0.0.1:{pp}"),
        "--address".into(),
        contract.clone(),
    ];
    thief.extend(tee.args());
    let _thief = Proc::cocoon("client-thief", &thief);
    wait_ok(&format!("http://127.0.0.1:{cp4}/healthz")).await;
    let (_, _, body) = get(&format!("{api}/v1/cocoon/balance")).await;
    let before = serde_json::from_slice::<Value>(&body).unwrap()["spent"].clone();
    let (status, _, body) = post_json(
        &format!("http://127.0.0.1:{cp4}/v1/chat/completions"),
        &chat_body("chain-model", false),
    )
    .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("payer not authorized"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (_, _, body) = get(&format!("{api}/v1/cocoon/balance")).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["spent"],
        before,
        "nothing was charged"
    );

    // The registry withdraws the proxy's image: a client that reads it now
    // refuses the proxy, whatever its policy file lists.
    registry(&["remove-image", "--role", "proxy", &image]);
    let cp2 = free_port();
    let late_client = client_on_chain(cp2, "client-late");
    wait_ok(&format!("http://127.0.0.1:{cp2}/healthz")).await;
    let (status, _, body) = post_json(
        &format!("http://127.0.0.1:{cp2}/v1/chat/completions"),
        &chat_body("chain-model", false),
    )
    .await;
    assert_ne!(status, 200, "{}", String::from_utf8_lossy(&body));
    late_client.wait_for_log("per the root registry", 10).await;

    // The operator closes the proxy's contract: the delay runs, then the
    // commission left comes back to its wallet.
    let close = [&["proxy", "close"][..], &common[..]].concat();
    let closing = cocoon_json(&close);
    assert_eq!(closing["state"], "closing", "{closing}");
    let early = cocoon_once(&close);
    assert!(!early.status.success());
    assert!(String::from_utf8_lossy(&early.stderr).contains("close again after that"));
    let (status, _, _) = post_json(
        &format!("{chain}/devnet/advanceClock"),
        &json!({"seconds": 86_400}),
    )
    .await;
    assert_eq!(status, 200);
    let closed = cocoon_json(&close);
    assert_eq!(closed["state"], "closed", "{closed}");
    assert_eq!(closed["commission"], 0u64);
    drop(proxy);
    drop(net.proc);
}
