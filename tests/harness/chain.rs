//! Separate nodes on a chain: a `cocoon devnet` process standing in for TON,
//! node wallets, and reading contracts through its toncenter API. Every
//! call to the devnet made here waits through its rate limit (HTTP 429),
//! as a node does.

use serde_json::{json, Value};

use crate::{cocoon_json, free_port, get, post_json, Answer, DevAttestation, Proc};

/// A `cocoon devnet --dev` process.
pub struct ChainDevnet {
    /// The process.
    pub proc: Proc,
    /// Its API base (`http://127.0.0.1:PORT/api/v2`).
    pub api: String,
}

impl ChainDevnet {
    /// A devnet on a free port with its state in `dir`, with `extra` flags
    /// (faults, block interval).
    pub async fn start(dir: &std::path::Path, extra: &[&str]) -> Self {
        Self::start_at(
            dir,
            &format!("http://127.0.0.1:{}/api/v2", free_port()),
            extra,
        )
        .await
    }

    /// A devnet on `api`'s port, with its state in `dir` (kept from any run
    /// before).
    pub async fn start_at(dir: &std::path::Path, api: &str, extra: &[&str]) -> Self {
        let port: u16 = api
            .rsplit(':')
            .next()
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse().ok())
            .expect("a port in the API base");
        let mut args = vec![
            "devnet".to_string(),
            "--dev".into(),
            "--data-dir".into(),
            dir.display().to_string(),
            "--devnet-listen".into(),
            format!("127.0.0.1:{port}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = Proc::cocoon("devnet", &args);
        proc.wait_for_log("Press Ctrl-C", 30).await;
        ChainDevnet {
            proc,
            api: format!("http://127.0.0.1:{port}/api/v2"),
        }
    }

    /// Pays `ton` TON to `address` from the faucet.
    pub async fn fund(&self, address: &str, ton: u64) {
        let (status, _, body) = post_json(
            &format!("{}/devnet/faucet", self.api),
            &json!({"address": address, "amount": (ton * 1_000_000_000).to_string()}),
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    /// Moves the devnet's clock forward.
    pub async fn advance_clock(&self, seconds: u64) {
        let (status, _, body) = post_json(
            &format!("{}/devnet/advanceClock", self.api),
            &json!({ "seconds": seconds }),
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    /// A get-method's result stack (`None` when the call fails).
    pub async fn run_get(&self, address: &str, method: &str) -> Option<Value> {
        let url = format!("{}/runGetMethod", self.api);
        let body = json!({"address": address, "method": method, "stack": []});
        let (status, _, body) = paced(|| post_json(&url, &body)).await;
        let v: Value = serde_json::from_slice(&body).ok()?;
        (status == 200 && v["result"]["exit_code"] == 0).then(|| v["result"]["stack"].clone())
    }

    /// An account's balance in nanoton.
    pub async fn balance(&self, address: &str) -> u64 {
        let url = format!("{}/getAddressInformation?address={address}", self.api);
        let (_, _, body) = paced(|| get(&url)).await;
        serde_json::from_slice::<Value>(&body).expect("JSON")["result"]["balance"]
            .as_str()
            .and_then(|b| b.parse().ok())
            .expect("a balance")
    }
}

/// Calls again while the devnet answers 429 (bounded).
pub async fn paced<'a, F, Fut>(call: F) -> Answer
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Answer> + 'a,
{
    for _ in 0..100 {
        let a = call().await;
        if a.0 != 429 {
            return a;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the devnet kept answering 429");
}

/// The flags of a proxy listening on `pp` (gRPC) and `ph` (HTTP) on the
/// chain at `chain` under the root registry `root`, attested by `tee`.
pub fn proxy_args(pp: u16, ph: u16, chain: &str, root: &str, tee: &DevAttestation) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "proxy".into(),
        "--listen".into(),
        format!("127.0.0.1:{pp}"),
        "--http-listen".into(),
        format!("127.0.0.1:{ph}"),
        "--chain".into(),
        chain.to_string(),
        "--root".into(),
        root.to_string(),
    ];
    args.extend(tee.args());
    args
}

/// The flags of a client or worker on the chain with `proxy_contract`.
pub fn on_chain(chain: &str, proxy_contract: &str, tee: &DevAttestation) -> Vec<String> {
    let mut args = vec![
        "--chain".to_string(),
        chain.to_string(),
        "--proxy-contract".into(),
        proxy_contract.to_string(),
    ];
    args.extend(tee.args());
    args
}

/// A number in a get-method's stack entry (`["num", "0x…"]`).
pub fn hex_num(v: &Value) -> u64 {
    u64::from_str_radix(v[1].as_str().unwrap_or("0x0").trim_start_matches("0x"), 16)
        .expect("a hex number")
}

/// The wallet `cocoon wallet` shows for `role` (created when new).
pub fn wallet(chain: &str, data_dir: &str, role: &str) -> String {
    let w = cocoon_json(&[
        "wallet",
        "--chain",
        chain,
        "--data-dir",
        data_dir,
        "--role",
        role,
    ]);
    w["address"].as_str().expect("an address").to_string()
}

/// The value after `label ` in `text`, up to the next space or dot.
pub fn after(text: &str, label: &str) -> String {
    let rest = text
        .split(label)
        .nth(1)
        .unwrap_or_else(|| panic!("{label:?} in {text}"));
    rest.trim_start()
        .split([' ', ')', '\n'])
        .next()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_string()
}
