//! `cocoon devnet`: a TON devnet process serving toncenter's v2 API on
//! loopback, with its development tools only behind --dev, and its state
//! kept across a restart.

use cocoon_e2e::*;
use serde_json::{json, Value};

fn devnet_args(data_dir: &std::path::Path, port: u16, dev: bool) -> Vec<String> {
    let mut args = vec![
        "devnet".to_string(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--devnet-listen".into(),
        format!("127.0.0.1:{port}"),
    ];
    if dev {
        args.push("--dev".into());
    }
    args
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devnet_pays_from_its_faucet_only_in_dev_and_keeps_its_state() {
    let data_dir = std::env::temp_dir().join(format!("cocoon-devnet-{}", std::process::id()));
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}/api/v2");
    let who = format!("0:{}", "ab".repeat(32));

    let mut proc = Proc::cocoon("devnet", &devnet_args(&data_dir, port, true));
    proc.wait_for_log("Press Ctrl-C", 30).await;
    let log = proc.log();
    assert!(log.contains(&format!("API        {api}")), "{log}");
    assert!(
        log.contains("DEVELOPMENT ONLY"),
        "dev mode is announced:\n{log}"
    );

    let (status, _, body) = post_json(
        &format!("{api}/devnet/faucet"),
        &json!({"address": who, "amount": "2500000000"}),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = get(&format!("{api}/getAddressInformation?address={who}")).await;
    assert_eq!(status, 200);
    let v = json_of(&body);
    assert_eq!(v["ok"], true);
    assert_eq!(v["result"]["balance"], "2500000000");
    assert_eq!(v["result"]["state"], "uninitialized");

    // A bad address is refused with the reason.
    let (status, _, body) = get(&format!("{api}/getAddressInformation?address=nonsense")).await;
    assert_eq!(status, 400);
    assert!(json_of(&body)["error"]
        .as_str()
        .unwrap_or_default()
        .contains("not a TON address"));
    assert!(proc.terminate().expect("exits").success());

    // Restarted without --dev: the balance is still there, the faucet is not.
    let mut proc = Proc::cocoon("devnet-2", &devnet_args(&data_dir, port, false));
    proc.wait_for_log("Press Ctrl-C", 30).await;
    let (_, _, body) = get(&format!("{api}/getAddressInformation?address={who}")).await;
    assert_eq!(json_of(&body)["result"]["balance"], "2500000000");
    let (status, _, body) = post_json(
        &format!("{api}/devnet/faucet"),
        &json!({"address": who, "amount": "1"}),
    )
    .await;
    assert_eq!(status, 403);
    assert!(json_of(&body)["error"]
        .as_str()
        .unwrap_or_default()
        .contains("--dev"));
    let (status, _, body) = get(&format!("{api}/getMasterchainInfo")).await;
    assert_eq!(status, 200);
    assert_eq!(
        json_of(&body)["result"]["last"]["seqno"],
        1,
        "one block: the faucet's"
    );
    assert!(proc.terminate().expect("exits").success());
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// A TON developer's own client library against the devnet: `@ton/ton`'s
/// TonClient (from npm, as contracts/ installs it), over toncenter's
/// `/jsonRPC`, reads a balance, runs a get-method, estimates a fee and
/// sends a transfer that lands (contracts/scripts/tonclient-check.mjs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tons_own_client_library_reads_and_sends_through_the_devnet() {
    let contracts = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("contracts");
    assert!(
        contracts.join("node_modules/@ton/ton").exists(),
        "run `npm ci` in contracts/ (scripts/test does)"
    );
    let data_dir = std::env::temp_dir().join(format!("cocoon-devnet-ton-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let port = free_port();
    let mut args = devnet_args(&data_dir, port, true);
    args.extend(["--block-interval-ms".to_string(), "50".into()]);
    let mut proc = Proc::cocoon("devnet-ton", &args);
    proc.wait_for_log("Press Ctrl-C", 30).await;
    let api = format!("http://127.0.0.1:{port}/api/v2");
    let out = tokio::process::Command::new("node")
        .arg("scripts/tonclient-check.mjs")
        .arg(&api)
        .current_dir(&contracts)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), out)
        .await
        .expect("the check ends")
        .expect("node runs");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = json_of(said.trim().as_bytes());
    assert_eq!(seen["payee_balance"], "1000000000", "{seen}");
    assert_eq!(seen["transactions"], 1);
    let (_, _, body) = get(&format!("{api}/devnet/status")).await;
    let global_id = json_of(&body)["result"]["global_id"].clone();
    assert_eq!(seen["global_id"], global_id);

    // Cocoon's nodes take the network from the chain and refuse to be told
    // another: a wallet signs for one network only.
    let keys = data_dir.join("node");
    let wallet = |extra: &[&str]| {
        let mut args = vec![
            "wallet",
            "--role",
            "client",
            "--chain",
            &api,
            "--data-dir",
            keys.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        cocoon_once(&args)
    };
    let shown = wallet(&[]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    for told in [
        &["--global-id", "-239"][..],
        &["--network", "mainnet"],
        &["--network", "testnet"],
    ] {
        let refused = wallet(told);
        assert!(!refused.status.success(), "{told:?}");
        let why = String::from_utf8_lossy(&refused.stderr);
        assert!(
            why.contains(&format!("global id {global_id}")) || why.contains("contradicts"),
            "{told:?}: {why}"
        );
    }
    // A new wallet is a TON mnemonic, which `cocoon wallet export` shows;
    // the same words in @ton/crypto give the same key (the derivation is
    // TON's, tested against it in crates/chain).
    let exported = wallet(&["export"]);
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let words = json_of(&exported.stdout)["mnemonic"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(words.split(' ').count(), 24);
    assert!(String::from_utf8_lossy(&exported.stderr).contains("Keep them offline"));
    let again = json_of(&wallet(&[]).stdout);
    let from_file = keys.join("client.words");
    std::fs::write(&from_file, &words).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&from_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let imported =
        json_of(&wallet(&["--wallet-mnemonic-file", from_file.to_str().unwrap()]).stdout);
    assert_eq!(
        imported["address"], again["address"],
        "the words are the wallet"
    );
    // A key others may read is refused.
    let key = keys.join("keys").join("client.wallet-mnemonic");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let exposed = wallet(&[]);
    assert!(!exposed.status.success());
    assert!(
        String::from_utf8_lossy(&exposed.stderr).contains("chmod 600"),
        "{}",
        String::from_utf8_lossy(&exposed.stderr)
    );
    assert!(proc.terminate().expect("exits").success());
    let _ = std::fs::remove_dir_all(&data_dir);
}
