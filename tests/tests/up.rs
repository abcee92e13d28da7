//! `cocoon up`: a whole network from one command.

use cocoon_e2e::*;
use serde_json::Value;

fn up_args(api: u16, upstream: &TestUpstream) -> Vec<String> {
    let data_dir = std::env::temp_dir().join(format!("cocoon-up-{}-{api}", std::process::id()));
    up_args_in(&data_dir, api, free_port(), upstream)
}

fn up_args_in(
    data_dir: &std::path::Path,
    api: u16,
    devnet: u16,
    upstream: &TestUpstream,
) -> Vec<String> {
    let ports = [free_port(), free_port(), free_port(), devnet];
    [
        "up",
        "--data-dir",
        &data_dir.display().to_string(),
        "--upstream",
        &upstream.base_url(),
        "--model",
        "up-model",
        "--listen",
        &format!("127.0.0.1:{api}"),
        "--proxy-listen",
        &format!("127.0.0.1:{}", ports[0]),
        "--proxy-http-listen",
        &format!("127.0.0.1:{}", ports[1]),
        "--worker-http-listen",
        &format!("127.0.0.1:{}", ports[2]),
        "--devnet-listen",
        &format!("127.0.0.1:{}", ports[3]),
    ]
    .map(String::from)
    .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_a_request_and_stops_cleanly() {
    let upstream = upstream(UpstreamBehaviour {
        chunks: 2,
        chunk_size: 8,
        ..Default::default()
    })
    .await;
    let api = free_port();
    let mut proc = Proc::cocoon("up", &up_args(api, &upstream));
    let base = format!("http://127.0.0.1:{api}");
    wait_ok(&format!("{base}/healthz")).await;
    // The banner is printed once the worker is connected: the moment a user
    // is told to send requests.
    proc.wait_for_log("Press Ctrl-C", 30).await;
    let (status, headers, body) = post_json(
        &format!("{base}/v1/chat/completions"),
        &chat_body("up-model", false),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["x-cocoon-worker"], "local-worker");
    // Every hop is RA-TLS with the sim TEE: the client names what it verified.
    assert_eq!(headers["x-cocoon-proxy-tee"], "sim");
    assert_eq!(headers["x-cocoon-worker-tee"], "sim");
    let image = headers["x-cocoon-proxy-image-hash"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(image.len(), 64);
    assert_eq!(headers["x-cocoon-worker-image-hash"], image.as_str());
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 2);
    let log = proc.log();
    assert!(
        log.contains(&format!("client API  http://127.0.0.1:{api}/v1")),
        "start-up summary names the API:\n{log}"
    );
    assert!(
        log.contains("SIMULATED TEE")
            && log.contains(&format!("Image hash of every node: {image}")),
        "development mode and the image hash are announced:\n{log}"
    );
    let status = proc.terminate().expect("exits after SIGTERM");
    assert!(
        status.success(),
        "clean shutdown: {status:?}\n{}",
        proc.log()
    );
    // A clean stop closes every connection cleanly: nothing to warn about.
    let log = proc.log();
    let stopping = log
        .split_once("shutting down")
        .map_or("", |(_, after)| after);
    assert!(
        stopping.contains("worker disconnected") && !stopping.contains("WARN"),
        "a clean shutdown warns of nothing:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_refuses_a_taken_port_with_a_clear_message() {
    let upstream = upstream(UpstreamBehaviour::default()).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut proc = Proc::cocoon("up-taken", &up_args(port, &upstream));
    let status = proc.wait_exit().expect("exits on its own");
    assert!(!status.success());
    let log = proc.log();
    assert!(
        log.contains(&format!("cannot listen for the API on 127.0.0.1:{port}")),
        "{log}"
    );
    assert!(log.contains("Address already in use"), "{log}");
}

/// What a user watching `cocoon up` sees once it serves: nothing, while it
/// is idle. The client checks its link to the proxy every 5 s and the
/// worker holds a session open; neither may print a line per check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_up_is_quiet_at_info_level() {
    ensure_default_model();
    let api = free_port();
    let data_dir = std::env::temp_dir().join(format!("cocoon-up-quiet-{}", std::process::id()));
    let args = up_embedded_args(&data_dir, api);
    // The default model in the embedded engine, logging as a user's does.
    let mut proc = Proc::cocoon_as_user("up-quiet", &args);
    let base = format!("http://127.0.0.1:{api}");
    wait_ok(&format!("{base}/healthz")).await;
    proc.wait_for_log("Press Ctrl-C", 120).await;
    // One answer first, so that whatever serving sets up is in place.
    let (status, _, body) = post_json(
        &format!("{base}/v1/chat/completions"),
        &serde_json::json!({
            "model": "SmolLM2-135M-Instruct",
            "max_tokens": 4,
            "messages": [{"role": "user", "content": "Hi"}],
        }),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // Let the answer's own lines, if any, be written.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let before = proc.log();
    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    let after = proc.log();
    assert!(
        before.contains("connected to proxy") && before.contains("client connected"),
        "the connections are announced once, at start-up:\n{before}"
    );
    let new = after.get(before.len()..).unwrap_or(&after);
    assert!(
        new.is_empty(),
        "an idle `cocoon up` printed, in 30 s:\n{new}\n(full log:\n{after})"
    );
    // Still serving after the quiet spell: the link checks kept it up.
    let (status, _, body) = get(&format!("{base}/v1/models")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(proc.terminate().expect("cocoon up exits").success());
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// `cocoon up` puts its network on its own devnet: a registry, the proxy's
/// contract, the client's contract with a deposit, the worker's contract
/// as its payee; a restart on the same data directory finds them and
/// deploys nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_puts_its_network_on_its_devnet_once() {
    let upstream = upstream(UpstreamBehaviour::default()).await;
    let data_dir = std::env::temp_dir().join(format!("cocoon-up-chain-{}", std::process::id()));
    let (api, devnet) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{api}");
    let chain_api = format!("http://127.0.0.1:{devnet}/api/v2");
    let mut proc = Proc::cocoon("up-chain", &up_args_in(&data_dir, api, devnet, &upstream));
    wait_ok(&format!("{base}/healthz")).await;
    proc.wait_for_log("Press Ctrl-C", 30).await;

    let (status, _, body) = get(&format!("{base}/v1/cocoon/chain")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let chain: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(chain["endpoint"], chain_api.as_str());
    let contract = chain["client_contract"].as_str().unwrap().to_string();
    for key in ["root", "proxy_contract", "client_contract", "client_wallet"] {
        assert!(
            chain[key].as_str().unwrap().starts_with("0:"),
            "{key}: {chain}"
        );
    }
    let (_, _, body) = get(&format!(
        "{chain_api}/getAddressInformation?address={contract}"
    ))
    .await;
    let account: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(account["result"]["state"], "active", "{account}");
    let balance: u64 = account["result"]["balance"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        balance >= 10_000_000_000,
        "the client's first deposit is on chain: {balance}"
    );
    for key in ["root", "proxy_contract"] {
        let (_, _, body) = get(&format!(
            "{chain_api}/getAddressInformation?address={}",
            chain[key].as_str().unwrap()
        ))
        .await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["result"]["state"], "active", "{key}: {v}");
    }

    // The proxy's ledger takes the deposit from the chain.
    let (_, _, body) = get(&format!("{base}/v1/cocoon/balance")).await;
    let b: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(b["deposited"], 10_000_000_000u64, "{b}");

    // A top-up from the command line goes through the client's wallet.
    let topped = cocoon_json(&["client", "deposit", "--api", &base, "--amount", "2.5"]);
    assert_eq!(topped["deposited"], 12_500_000_000u64, "{topped}");
    let (_, _, body) = get(&format!(
        "{chain_api}/getAddressInformation?address={contract}"
    ))
    .await;
    let account: Value = serde_json::from_slice(&body).unwrap();
    let on_chain: u64 = account["result"]["balance"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(on_chain >= 12_500_000_000, "{account}");
    // More than the wallet holds: refused, nothing moves.
    let out = cocoon_once(&["client", "deposit", "--api", &base, "--amount", "1000000"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wallet"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, _, body) = get(&format!("{base}/v1/cocoon/balance")).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["deposited"],
        12_500_000_000u64
    );

    // The worker is paid through its contract, to its wallet.
    let log = proc.log();
    let worker_stats = log
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("stats http://"))
        .map(|s| s.trim().to_string())
        .expect("the banner names the worker's stats");
    let (_, _, body) = get(&format!(
        "http://{}",
        worker_stats.replace("/stats", "/jsonstats")
    ))
    .await;
    let stats: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        stats["info"]["wallet"]
            .as_str()
            .unwrap_or_default()
            .starts_with("0:"),
        "{stats}"
    );
    assert_eq!(stats["info"]["worker_contract"], stats["info"]["payee"]);

    let (_, _, body) = get(&format!("{chain_api}/devnet/status")).await;
    let blocks = serde_json::from_slice::<Value>(&body).unwrap()["result"]["blocks"].clone();
    assert!(proc.terminate().expect("exits").success());

    let mut proc = Proc::cocoon("up-chain-2", &up_args_in(&data_dir, api, devnet, &upstream));
    wait_ok(&format!("{base}/healthz")).await;
    proc.wait_for_log("Press Ctrl-C", 30).await;
    let (_, _, body) = get(&format!("{base}/v1/cocoon/chain")).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        chain,
        "the same accounts"
    );
    let (_, _, body) = get(&format!("{chain_api}/devnet/status")).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["result"]["blocks"],
        blocks,
        "a restart deploys nothing again"
    );
    assert!(proc.terminate().expect("exits").success());
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// Money on chain, from deposit to close: the client's deposit is its
/// contract's; requests are charged in the ledger; the proxy commits the
/// client's voucher to the contract; `cocoon worker withdraw` has the worker
/// contract pay the worker's wallet what it earned, less the chain's fees;
/// the proxy contract's books equal the ledger's; the client withdraws,
/// closes, waits out the delay and gets the rest: every nanoton it put in
/// is accounted for. Refusals (a second withdrawal, closing too early,
/// more than the wallet holds) move nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_on_chain_from_deposit_to_close() {
    let upstream = upstream(UpstreamBehaviour {
        chunks: 5,
        chunk_size: 8,
        ..Default::default()
    })
    .await;
    let data_dir = std::env::temp_dir().join(format!("cocoon-up-withdraw-{}", std::process::id()));
    let (api, devnet, worker_http) = (free_port(), free_port(), free_port());
    let mut args = up_args_in(&data_dir, api, devnet, &upstream);
    let at = args
        .iter()
        .position(|a| a == "--worker-http-listen")
        .unwrap();
    args[at + 1] = format!("127.0.0.1:{worker_http}");
    // Commit every charge, so that this test sees one; and a fifth of the
    // external messages the devnet accepts are lost, as on TON.
    args.extend(["--commit-above", "1", "--devnet-drop-externals", "0.2"].map(String::from));
    let base = format!("http://127.0.0.1:{api}");
    let chain_api = format!("http://127.0.0.1:{devnet}/api/v2");
    let mut proc = Proc::cocoon("up-withdraw", &args);
    wait_ok(&format!("{base}/healthz")).await;
    proc.wait_for_log("Press Ctrl-C", 30).await;

    for _ in 0..3 {
        let (status, _, body) = post_json(
            &format!("{base}/v1/chat/completions"),
            &chat_body("up-model", false),
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    // The worker holds the proxy's voucher for what it earned.
    let stats_url = format!("http://127.0.0.1:{worker_http}/jsonstats");
    let mut earned = 0u64;
    for _ in 0..100 {
        let (_, _, body) = get(&stats_url).await;
        let stats: Value = serde_json::from_slice(&body).unwrap();
        earned = stats["detail"]["earned"].as_u64().unwrap_or(0);
        if earned > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(earned > 0, "the worker was paid in vouchers");
    let (_, _, body) = get(&stats_url).await;
    let wallet = serde_json::from_slice::<Value>(&body).unwrap()["info"]["wallet"]
        .as_str()
        .unwrap()
        .to_string();

    // The proxy commits the client's voucher to its contract.
    let (_, _, body) = get(&format!("{base}/v1/cocoon/chain")).await;
    let chain: Value = serde_json::from_slice(&body).unwrap();
    let (_, _, body) = get(&format!("{base}/v1/cocoon/balance")).await;
    let spent = serde_json::from_slice::<Value>(&body).unwrap()["spent"]
        .as_u64()
        .unwrap();
    assert!(
        spent > earned,
        "the client paid more than the worker earned"
    );
    let client_data = |contract: String| {
        let url = format!("{chain_api}/runGetMethod");
        async move {
            let (_, _, body) = post_json(
                &url,
                &serde_json::json!({"address": contract, "method": "get_client_data", "stack": []}),
            )
            .await;
            serde_json::from_slice::<Value>(&body).unwrap()
        }
    };
    let num = |v: &Value| {
        u64::from_str_radix(v[1].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    };
    let mut committed = 0;
    for _ in 0..100 {
        let d = client_data(chain["client_contract"].as_str().unwrap().to_string()).await;
        committed = num(&d["result"]["stack"][7]);
        if committed == spent {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        committed, spent,
        "the client contract committed what the ledger charged"
    );

    let worker_api = format!("http://127.0.0.1:{worker_http}");
    let w = cocoon_json(&["worker", "withdraw", "--api", &worker_api]);
    let n = |k: &str| w[k].as_str().unwrap().parse::<u64>().unwrap();
    assert_eq!(
        n("paid"),
        earned,
        "the contract paid exactly what the voucher says: {w}"
    );
    assert_eq!(n("paid_before"), 0);
    assert_eq!(w["wallet"], wallet.as_str());
    assert!(
        n("fees") > 0 && n("fees") < 100_000_000,
        "fees are the chain's, under the gas sent: {w}"
    );
    assert_eq!(
        n("wallet_balance_after"),
        n("wallet_balance_before") + n("paid") - n("fees"),
        "{w}"
    );
    // Every nanoton the wallet paid is a fee the chain charged along the
    // payout's transactions: all of them, but for the contracts' own
    // storage fees, which their reserves may have borne.
    assert!(
        n("fees") <= n("chain_fees") && n("fees") + n("contracts_storage_fees") >= n("chain_fees"),
        "the wallet paid the fees its payout's transactions charged: {w}"
    );
    // The devnet's API shows the same balance.
    let (_, _, body) = get(&format!(
        "{chain_api}/getAddressInformation?address={wallet}"
    ))
    .await;
    let account: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        account["result"]["balance"].as_str().unwrap(),
        w["wallet_balance_after"].as_str().unwrap()
    );

    // The proxy contract's books agree with the ledger, to the nanoton.
    let (_, _, body) = post_json(
        &format!("{chain_api}/runGetMethod"),
        &serde_json::json!({"address": chain["proxy_contract"], "method": "get_proxy_data", "stack": []}),
    )
    .await;
    let p: Value = serde_json::from_slice(&body).unwrap();
    let stack = &p["result"]["stack"];
    assert_eq!(
        num(&stack[7]),
        spent,
        "charged on chain = charged in the ledger: {p}"
    );
    assert_eq!(
        num(&stack[8]),
        earned,
        "paid on chain = earned in the ledger: {p}"
    );

    // The client takes 1 TON back, then closes: the delay runs (closing
    // again is refused until it is over), then the rest goes to its wallet.
    let took = cocoon_json(&["client", "withdraw", "--api", &base, "--amount", "1"]);
    assert_eq!(
        took["balance"],
        10_000_000_000u64 - spent - 1_000_000_000,
        "{took}"
    );
    let closing = cocoon_json(&["client", "close", "--api", &base]);
    assert_eq!(closing["state"], "closing", "{closing}");
    let early = cocoon_once(&["client", "close", "--api", &base]);
    assert!(!early.status.success());
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("close_delay_running"),
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );
    let (status, _, _) = post_json(
        &format!("{chain_api}/devnet/advanceClock"),
        &serde_json::json!({"seconds": 3600}),
    )
    .await;
    assert_eq!(status, 200);
    let closed = cocoon_json(&["client", "close", "--api", &base]);
    assert_eq!(closed["state"], "closed", "{closed}");
    assert_eq!(closed["balance"], 0u64);
    let rest = closing["balance"].as_u64().unwrap();
    let paid_back =
        closed["wallet_balance"].as_u64().unwrap() - closing["wallet_balance"].as_u64().unwrap();
    assert!(
        paid_back + 100_000_000 > rest && paid_back <= rest,
        "the rest came back, less the chain's fees: {rest} vs {paid_back}"
    );
    // Every nanoton the client put in is accounted for.
    assert_eq!(
        closed["committed"].as_u64().unwrap() + 1_000_000_000 + rest,
        10_000_000_000
    );

    // Nothing more to pay: refused with the reason, no balance moves.
    let again = cocoon_once(&["worker", "withdraw", "--api", &worker_api]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already paid"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let (_, _, body) = get(&format!(
        "{chain_api}/getAddressInformation?address={wallet}"
    ))
    .await;
    let account: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        account["result"]["balance"].as_str().unwrap(),
        w["wallet_balance_after"].as_str().unwrap()
    );
    assert!(proc.terminate().expect("exits").success());
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// A burst far beyond the worker's slots, as a bot's app sends at peak:
/// `cocoon up` with default options queues what it cannot run at once and
/// serves every request with the real model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_200_requests_is_served_in_full() {
    ensure_default_model();
    let api = free_port();
    let data_dir = std::env::temp_dir().join(format!("cocoon-up-burst-{}", std::process::id()));
    let mut proc = Proc::cocoon("up-burst", &up_embedded_args(&data_dir, api));
    let base = format!("http://127.0.0.1:{api}");
    wait_ok(&format!("{base}/healthz")).await;
    proc.wait_for_log("Press Ctrl-C", 120).await;
    let url = format!("{base}/v1/chat/completions");
    let burst: Vec<_> = (0..200)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let body = serde_json::json!({
                    "model": "SmolLM2-135M-Instruct",
                    "max_tokens": 4,
                    "temperature": 0,
                    "messages": [{"role": "user", "content": format!("Say the number {i}.")}],
                });
                post_json(&url, &body).await
            })
        })
        .collect();
    let mut refused = Vec::new();
    for (i, call) in burst.into_iter().enumerate() {
        let (status, _, body) = call.await.expect("request task");
        if status != 200 {
            refused.push(format!("#{i}: {status} {}", String::from_utf8_lossy(&body)));
        }
    }
    assert!(
        refused.is_empty(),
        "{} of 200 were not served:\n{}",
        refused.len(),
        refused.join("\n")
    );
    assert!(proc.terminate().expect("cocoon up exits").success());
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// `cocoon explorer` on its own: the registry `cocoon up` deployed, read
/// from the devnet; an answer from `up` checked under the dev policy of
/// its data directory; a wrong root refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_explorer_reads_the_registry_and_checks_answers() {
    let upstream = upstream(UpstreamBehaviour {
        chunks: 3,
        chunk_size: 8,
        ..Default::default()
    })
    .await;
    let api = free_port();
    let data_dir =
        std::env::temp_dir().join(format!("cocoon-up-explorer-{}-{api}", std::process::id()));
    let mut up = Proc::cocoon(
        "up-explorer",
        &up_args_in(&data_dir, api, free_port(), &upstream),
    );
    let base = format!("http://127.0.0.1:{api}");
    wait_ok(&format!("{base}/healthz")).await;
    up.wait_for_log("Press Ctrl-C", 60).await;
    let (_, _, chain) = get(&format!("{base}/v1/cocoon/chain")).await;
    let chain: Value = serde_json::from_slice(&chain).unwrap();
    let (endpoint, root) = (
        chain["endpoint"].as_str().unwrap(),
        chain["root"].as_str().unwrap(),
    );
    let (status, _, answer) = post_json(
        &format!("{base}/v1/chat/completions"),
        &chat_body("up-model", false),
    )
    .await;
    assert_eq!(status, 200);

    let policy = data_dir.join("explorer-policy.toml");
    let d = data_dir.display().to_string();
    let p = policy.display().to_string();
    let out = cocoon_once(&["attest", "dev-policy", "--data-dir", &d, "--out", &p]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args: Vec<String> = [
        "explorer", "--chain", endpoint, "--root", root, "--listen", &listen, "--policy", &p,
        "--dev",
    ]
    .map(String::from)
    .to_vec();
    let _explorer = Proc::cocoon("explorer", &args);
    let url = format!("http://{listen}");
    wait_ok(&format!("{url}/")).await;
    let (status, headers, page) = get(&format!("{url}/")).await;
    assert_eq!(status, 200);
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert!(String::from_utf8_lossy(&page).contains("Cocoon explorer"));
    let (_, _, v) = get(&format!("{url}/v1/cocoon/explorer")).await;
    let v: Value = serde_json::from_slice(&v).unwrap();
    assert_eq!(v["standalone"], true);
    assert_eq!(v["registry"]["root"], root);
    let proxies = v["registry"]["proxies"].as_array().expect("proxies");
    assert_eq!(proxies.len(), 1, "{v}");
    assert_eq!(proxies[0]["on_chain"]["state"], "open", "{v}");
    assert_eq!(
        v["registry"]["images"]["worker"].as_array().map(Vec::len),
        Some(1),
        "{v}"
    );

    let (status, _, report) = post(
        &format!("{url}/v1/cocoon/receipts/verify"),
        answer.clone(),
        &[],
    )
    .await;
    let report: Value = serde_json::from_slice(&report).unwrap();
    assert_eq!(
        (status, &report["verified"]),
        (200, &Value::Bool(true)),
        "{report:#}"
    );
    assert_eq!(report["evidence"]["simulated"], true);
    // One byte of the answer changed: the report says which check failed.
    let tampered =
        String::from_utf8_lossy(&answer).replacen("\"content\":\"", "\"content\":\"X", 1);
    let (_, _, report) = post(&format!("{url}/v1/cocoon/receipts/verify"), tampered, &[]).await;
    let report: Value = serde_json::from_slice(&report).unwrap();
    assert_eq!(report["verified"], false, "{report:#}");
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .filter_map(|c| c["check"].as_str())
        .collect();
    assert_eq!(failed, ["answer"], "{report:#}");

    // A root that is no registry: refused at start, saying what was read.
    let wrong = "0:0000000000000000000000000000000000000000000000000000000000000001";
    let out = cocoon_once(&[
        "explorer",
        "--chain",
        endpoint,
        "--root",
        wrong,
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("reading the root registry"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = up.terminate();
    let _ = std::fs::remove_dir_all(&data_dir);
}
