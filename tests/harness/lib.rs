//! Harness for end-to-end tests: starts real `cocoon` processes on
//! loopback in front of the in-process deterministic test upstream, and
//! talks to them over plain HTTP. Every process is killed when its handle
//! is dropped; every wait is bounded.
// Test support: items are documented where they are not obvious.
#![allow(missing_docs)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub use cocoon_testkit::{TestUpstream, UpstreamBehaviour};

pub mod chain;
pub mod telegram;

/// Directory holding the built `cocoon` binary (next to the test binary's
/// `deps/` directory).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target directory")
        .to_path_buf();
    let cocoon = dir.join("cocoon");
    assert!(
        cocoon.exists(),
        "{} is missing: build it first (cargo build -p cocoon-cli); `cargo nextest run --workspace` builds it",
        cocoon.display()
    );
    let built = modified(&cocoon);
    // Cargo's value at run time, not the one compiled in: a test binary
    // built from another checkout sharing the target directory must still
    // look at this one.
    let workspace = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("..");
    if let Some(newer) = binary_sources(&dir.join("cocoon.d"), &workspace)
        .into_iter()
        .map(|p| (modified(&p), p))
        .filter(|(t, _)| *t > built)
        .max()
    {
        panic!(
            "{} is older than {}: rebuild it (cargo build -p cocoon-cli) or run the whole workspace's tests",
            cocoon.display(),
            newer.1.display()
        );
    }
    dir
}

fn modified(p: &std::path::Path) -> std::time::SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// The workspace source files the binary was built from, as cargo's
/// dep-info file lists them, re-rooted onto `workspace` (the list may name
/// another checkout that shares the target directory).
fn binary_sources(dep_info: &std::path::Path, workspace: &std::path::Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(dep_info) else {
        return Vec::new();
    };
    let deps = text.split_once(": ").map_or("", |(_, deps)| deps);
    deps.replace("\\ ", "\u{0}")
        .split_whitespace()
        .filter_map(|p| p.find("/crates/").map(|i| p[i + 1..].replace('\u{0}', " ")))
        .map(|rel| workspace.join(rel))
        .filter(|p| p.exists())
        .collect()
}

/// A port free at the time of the call, for a process to listen on later.
///
/// Chosen at random below Linux's ephemeral range (32768 and up), where the
/// kernel puts outgoing connections and `bind(0)`: a port handed out here
/// cannot be taken by them before the process that was given it binds it.
/// Test binaries run side by side (one process per test), so a port is also
/// reserved across processes: this process holds a lock on a file named after
/// it until it exits, which covers the gap before a child binds the port and
/// a restarted child binding it again.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static HELD: std::sync::Mutex<Vec<(u16, std::fs::File)>> = std::sync::Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("cocoon-e2e-ports");
    std::fs::create_dir_all(&dir).expect("create the port reservation directory");
    for attempt in 0u64..10_000 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(attempt);
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        if held.iter().any(|(p, _)| *p == port) {
            continue;
        }
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{port}.lock")))
        else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            held.push((port, file));
            return port;
        }
    }
    panic!("no free port between 20000 and 32000")
}

/// A child process that is killed on drop; its output goes to a log file
/// that is printed if the test is failing.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `cocoon ARGS`, logging at debug level for Cocoon's own crates.
    pub fn cocoon(name: &str, args: &[String]) -> Proc {
        Proc::spawn(name, args, Some("info,cocoon=debug"))
    }

    /// Starts `cocoon ARGS` with the log filter a user gets (no `RUST_LOG`).
    pub fn cocoon_as_user(name: &str, args: &[String]) -> Proc {
        Proc::spawn(name, args, None)
    }

    fn spawn(name: &str, args: &[String], rust_log: Option<&str>) -> Proc {
        let log = std::env::temp_dir().join(format!(
            "cocoon-e2e-{}-{}-{}.log",
            std::process::id(),
            name,
            free_port()
        ));
        let file = std::fs::File::create(&log).expect("create log file");
        let mut command = Command::new(bin_dir().join("cocoon"));
        match rust_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let child = command
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().expect("clone log file")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn cocoon");
        Proc {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits (at most 10 s) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (at most 10 s) for the process to exit on its own.
    pub fn wait_exit(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The process's log so far.
    /// Waits (at most `secs`) until the log contains `needle`.
    pub async fn wait_for_log(&self, needle: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{} never logged {needle:?}:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: String = log
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!(
                "----- log of {} ({}) -----\n{tail}",
                self.name,
                self.log.display()
            );
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// `cocoon up ARGS` serving the default model in the embedded engine, the
/// client API on 127.0.0.1:`api`, every other port free, its own data
/// directory (sim root, ledger) and a small context to spare memory.
pub fn up_embedded_args(data_dir: &std::path::Path, api: u16) -> Vec<String> {
    [
        "up".to_string(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{api}"),
        "--proxy-listen".into(),
        format!("127.0.0.1:{}", free_port()),
        "--proxy-http-listen".into(),
        format!("127.0.0.1:{}", free_port()),
        "--worker-http-listen".into(),
        format!("127.0.0.1:{}", free_port()),
        "--devnet-listen".into(),
        format!("127.0.0.1:{}", free_port()),
        "--context-size".into(),
        "2048".into(),
    ]
    .to_vec()
}

/// Runs a one-shot `cocoon ARGS` command; returns its JSON output, or
/// panics with its error output when it fails.
pub fn cocoon_json(args: &[&str]) -> Value {
    let out = cocoon_once(args);
    assert!(
        out.status.success(),
        "cocoon {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "cocoon {}: not JSON ({e}): {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs a one-shot `cocoon ARGS` command to its end.
pub fn cocoon_once(args: &[&str]) -> std::process::Output {
    Command::new(bin_dir().join("cocoon"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run cocoon")
}

/// Makes sure the default model is in the cache (`cocoon model fetch`; a
/// no-op when a verified copy is there, which scripts/test arranges).
pub fn ensure_default_model() {
    let out = Command::new(bin_dir().join("cocoon"))
        .args(["model", "fetch"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run cocoon model fetch");
    assert!(
        out.status.success(),
        "the default model is not available: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Options of one worker.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    pub name: String,
    pub model: String,
    pub upstream: String,
    pub coefficient: u32,
    pub max_active: u32,
    /// The MRTD its sim TEE reports, 96 hex digits; `None` for this
    /// executable's own measurement (the image the policy allows).
    pub sim_mrtd: Option<String>,
    /// Ask the upstream for token counts in every chunk
    /// (`--upstream-running-usage`).
    pub running_usage: bool,
    /// The weights the upstream serves, declared (`--model-hash`).
    pub model_hash: Option<String>,
    /// The receipt key file (`--receipt-key`); `None` for one per name.
    pub receipt_key: Option<PathBuf>,
    /// More flags (`--gpu sim`, `--region eu`).
    pub extra_args: Vec<String>,
}

impl WorkerSpec {
    pub fn new(name: &str, model: &str, upstream: &TestUpstream) -> Self {
        WorkerSpec {
            name: name.into(),
            model: model.into(),
            upstream: upstream.base_url(),
            coefficient: 1000,
            max_active: 16,
            sim_mrtd: None,
            running_usage: false,
            model_hash: None,
            receipt_key: None,
            extra_args: Vec::new(),
        }
    }

    /// The same worker, signing with the receipt key in `path`.
    pub fn with_receipt_key(mut self, path: PathBuf) -> Self {
        self.receipt_key = Some(path);
        self
    }

    /// The same worker, with more flags.
    pub fn with_args(mut self, args: &[&str]) -> Self {
        self.extra_args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// The same worker, asking its upstream for running token counts.
    pub fn with_running_usage(mut self) -> Self {
        self.running_usage = true;
        self
    }

    /// A worker running the default model in its embedded engine.
    pub fn embedded(name: &str) -> Self {
        WorkerSpec {
            name: name.into(),
            model: "SmolLM2-135M-Instruct".into(),
            upstream: String::new(),
            coefficient: 1000,
            max_active: 4,
            sim_mrtd: None,
            running_usage: false,
            model_hash: None,
            receipt_key: None,
            extra_args: Vec::new(),
        }
    }
}

/// A running worker process.
pub struct WorkerProc {
    pub proc: Proc,
    pub http: String,
    pub spec: WorkerSpec,
}

/// The development attestation every node of a test network uses: the sim
/// TEE with a root in a directory of the network's own, under the policy
/// `cocoon attest dev-policy` writes for this build.
pub struct DevAttestation {
    pub dir: PathBuf,
    pub policy: PathBuf,
}

impl DevAttestation {
    pub fn new() -> DevAttestation {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cocoon-e2e-tee-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the sim TEE directory");
        let policy = dir.join("policy.toml");
        let out = Command::new(bin_dir().join("cocoon"))
            .args(["attest", "dev-policy", "--data-dir"])
            .arg(&dir)
            .arg("--out")
            .arg(&policy)
            .stdin(Stdio::null())
            .output()
            .expect("run cocoon attest dev-policy");
        assert!(
            out.status.success(),
            "cocoon attest dev-policy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        DevAttestation { dir, policy }
    }

    /// The flags that make a node use it.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--dev".into(),
            "--tee".into(),
            "sim".into(),
            "--peer-policy".into(),
            self.policy.display().to_string(),
            "--data-dir".into(),
            self.dir.display().to_string(),
        ]
    }

    /// The image hash the policy allows (every node of this build).
    pub fn image_hash(&self) -> String {
        let text = std::fs::read_to_string(&self.policy).expect("read the policy");
        let line = text
            .lines()
            .find(|l| l.starts_with("proxy = "))
            .expect("the policy allows a proxy image");
        line.split('"').nth(1).expect("an image hash").to_string()
    }
}

impl Default for DevAttestation {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for DevAttestation {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What test clients credit themselves on the proxy's development ledger:
/// 1000 TON, more than any test spends unless it means to.
pub const CLIENT_DEV_DEPOSIT: u64 = 1_000_000_000_000;

/// Proxy and client processes, plus any number of workers.
pub struct Network {
    pub tee: DevAttestation,
    pub proxy: Proc,
    /// The flags the proxy was started with.
    pub proxy_args: Vec<String>,
    pub proxy_addr: String,
    pub proxy_http: String,
    pub client: Proc,
    /// `http://127.0.0.1:PORT` of the client API (without `/v1`).
    pub api: String,
    pub workers: Vec<WorkerProc>,
}

impl Network {
    /// Starts a proxy and a client, and waits for both to listen.
    pub async fn start() -> Network {
        Network::start_with_client_args(&[]).await
    }

    /// Like [`start`](Self::start), with extra flags for the client.
    pub async fn start_with_client_args(extra: &[&str]) -> Network {
        Network::start_with(extra, CLIENT_DEV_DEPOSIT).await
    }

    /// Like [`start_with_client_args`](Self::start_with_client_args), with
    /// the client's development deposit in nanoton.
    pub async fn start_with(extra: &[&str], deposit: u64) -> Network {
        Network::launch(extra, &[], deposit).await
    }

    /// Like [`start`](Self::start), with extra flags for the proxy.
    pub async fn start_with_proxy_args(extra: &[&str]) -> Network {
        Network::launch(&[], extra, CLIENT_DEV_DEPOSIT).await
    }

    async fn launch(client_extra: &[&str], proxy_extra: &[&str], deposit: u64) -> Network {
        let tee = DevAttestation::new();
        let (pp, ph, cp) = (free_port(), free_port(), free_port());
        let proxy_addr = format!("127.0.0.1:{pp}");
        let mut proxy_args: Vec<String> = vec![
            "proxy".into(),
            "--listen".into(),
            proxy_addr.clone(),
            "--http-listen".into(),
            format!("127.0.0.1:{ph}"),
            "--dev-deposits".into(),
        ];
        proxy_args.extend(tee.args());
        proxy_args.extend(proxy_extra.iter().map(|s| s.to_string()));
        let proxy = Proc::cocoon("proxy", &proxy_args);
        let mut client_args: Vec<String> = vec![
            "client".into(),
            "--listen".into(),
            format!("127.0.0.1:{cp}"),
            "--proxy".into(),
            proxy_addr.clone(),
            "--dev-deposit".into(),
            deposit.to_string(),
        ];
        client_args.extend(tee.args());
        client_args.extend(client_extra.iter().map(|s| s.to_string()));
        let client = Proc::cocoon("client", &client_args);
        let net = Network {
            tee,
            proxy,
            proxy_args,
            proxy_addr,
            proxy_http: format!("http://127.0.0.1:{ph}"),
            client,
            api: format!("http://127.0.0.1:{cp}"),
            workers: Vec::new(),
        };
        wait_ok(&format!("{}/healthz", net.proxy_http)).await;
        wait_ok(&format!("{}/healthz", net.api)).await;
        net
    }

    /// Kills the proxy with SIGKILL (no chance to clean up) and starts it
    /// again with the same flags, address and data directory; waits until it
    /// answers.
    pub async fn crash_and_restart_proxy(&mut self, name: &str) {
        self.proxy.kill();
        self.proxy = Proc::cocoon(name, &self.proxy_args);
        wait_ok(&format!("{}/healthz", self.proxy_http)).await;
    }

    /// Starts a worker and waits until the proxy lists it.
    pub async fn add_worker(&mut self, spec: WorkerSpec) -> usize {
        let before = self.worker_count(&spec.model).await;
        let i = self.spawn_worker(spec.clone());
        self.wait_workers(&spec.model, before + 1).await;
        i
    }

    /// Starts a worker without waiting for the proxy to accept it.
    pub fn spawn_worker(&mut self, spec: WorkerSpec) -> usize {
        let wp = free_port();
        let args = vec![
            "worker".into(),
            "--name".into(),
            spec.name.clone(),
            "--proxy".into(),
            self.proxy_addr.clone(),
            "--model".into(),
            spec.model.clone(),
            "--coefficient".into(),
            spec.coefficient.to_string(),
            "--max-active-requests".into(),
            spec.max_active.to_string(),
            "--http-listen".into(),
            format!("127.0.0.1:{wp}"),
        ];
        let mut args = args;
        let mut tee = self.tee.args();
        if spec.extra_args.iter().any(|a| a == "--tee") {
            // The spec names its own TEE (an open-tier worker's none).
            if let Some(i) = tee.iter().position(|a| a == "--tee") {
                tee.drain(i..i + 2);
            }
        }
        args.extend(tee);
        if let Some(m) = &spec.sim_mrtd {
            args.extend(["--sim-mrtd".to_string(), m.clone()]);
        }
        if let Some(k) = &spec.receipt_key {
            args.extend(["--receipt-key".to_string(), k.display().to_string()]);
        }
        args.extend(spec.extra_args.iter().cloned());
        if !spec.upstream.is_empty() {
            args.extend(["--upstream".to_string(), spec.upstream.clone()]);
            if spec.running_usage {
                args.push("--upstream-running-usage".into());
            }
            if let Some(h) = &spec.model_hash {
                args.extend(["--model-hash".to_string(), h.clone()]);
            }
        } else {
            args.extend(["--context-size".to_string(), "2048".to_string()]);
        }
        let proc = Proc::cocoon(&spec.name, &args);
        self.workers.push(WorkerProc {
            proc,
            http: format!("http://127.0.0.1:{wp}"),
            spec,
        });
        self.workers.len() - 1
    }

    /// Workers the client's `/v1/models` reports for `model`.
    pub async fn worker_count(&self, model: &str) -> u64 {
        let mut req = http::Request::get(format!("{}/v1/models", self.api));
        if let Some(admin) = self.admin_token() {
            req = req.header("authorization", format!("Bearer {admin}"));
        }
        let (status, _, body) = send(req.body(Full::new(Bytes::new())).expect("request")).await;
        if status != 200 {
            return 0;
        }
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        v["data"]
            .as_array()
            .and_then(|d| d.iter().find(|m| m["id"] == model))
            .and_then(|m| m["cocoon"]["workers"].as_u64())
            .unwrap_or(0)
    }

    /// Waits (at most 60 s: loading a model takes a while) until
    /// `/v1/models` shows `n` workers for `model`.
    pub async fn wait_workers(&self, model: &str, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let have = self.worker_count(model).await;
            if have == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} workers for {model}, have {have}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The client's admin token (its state directory is under the
    /// network's data directory), once the client has made it.
    pub fn admin_token(&self) -> Option<String> {
        let clients = std::fs::read_dir(self.tee.dir.join("client")).ok()?;
        let dir = clients.flatten().next()?.path();
        let token = std::fs::read_to_string(dir.join("admin.token")).ok()?;
        Some(token.trim().to_string())
    }

    pub fn chat_url(&self) -> String {
        format!("{}/v1/chat/completions", self.api)
    }
}

fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// Polls `url` until it answers 200 (at most 60 s: a node that sets up a
/// chain first, on a machine busy with other tests, takes a while).
pub async fn wait_ok(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(resp) = tokio::time::timeout(
            Duration::from_secs(2),
            http_client().get(url.parse().expect("url")),
        )
        .await
        {
            if resp.map(|r| r.status() == 200).unwrap_or(false) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A whole response.
pub type Answer = (u16, http::HeaderMap, Bytes);

pub async fn get(url: &str) -> Answer {
    let req = http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(req).await
}

pub async fn post(url: &str, body: impl Into<Bytes>, headers: &[(&str, &str)]) -> Answer {
    let mut b = http::Request::post(url).header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(Full::new(body.into())).expect("request")).await
}

pub async fn post_json(url: &str, body: &Value) -> Answer {
    post(url, body.to_string(), &[]).await
}

/// Sends any request (headers of the caller's choosing) and reads the
/// whole answer.
pub async fn send_request(req: http::Request<Full<Bytes>>) -> Answer {
    send(req).await
}

async fn send(req: http::Request<Full<Bytes>>) -> Answer {
    let fut = async {
        let resp = http_client().request(req).await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("body read")
            .to_bytes();
        (status, headers, body)
    };
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("answer within 60 s")
}

/// A streamed response read event by event.
pub struct SseReader {
    pub status: u16,
    pub headers: http::HeaderMap,
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl SseReader {
    pub async fn open(url: &str, body: &Value, headers: &[(&str, &str)]) -> SseReader {
        let mut b = http::Request::post(url).header("content-type", "application/json");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(30), http_client().request(req))
            .await
            .expect("headers within 30 s")
            .expect("request sent");
        SseReader {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.into_body(),
            buf: Vec::new(),
        }
    }

    /// Like [`open`](Self::open), but `None` when the request fails or the
    /// answer is not a 200 event stream (load tests that expect failures).
    pub async fn try_open(url: &str, body: &Value) -> Option<SseReader> {
        let req = http::Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .ok()?;
        let resp = tokio::time::timeout(Duration::from_secs(30), http_client().request(req))
            .await
            .ok()?
            .ok()?;
        (resp.status() == 200).then(|| SseReader {
            status: 200,
            headers: resp.headers().clone(),
            body: resp.into_body(),
            buf: Vec::new(),
        })
    }

    /// The next `data:` payload, or None at the end of the body.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = self.buf.drain(..pos + 2).collect();
                let text = String::from_utf8(event).expect("SSE is UTF-8");
                let data = text
                    .trim_end()
                    .strip_prefix("data: ")
                    .unwrap_or_else(|| panic!("not a data event: {text:?}"));
                return Some(data.to_string());
            }
            let frame = tokio::time::timeout(Duration::from_secs(30), self.body.frame())
                .await
                .expect("next event within 30 s")?;
            match frame {
                Ok(f) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.extend_from_slice(&d);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Every remaining payload.
    pub async fn rest(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}

/// Polls `cond` every 20 ms for at most `limit`; true if it came true.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (at most `secs`) until the client API at `api` lists `model`.
pub async fn wait_for_model(api: &str, model: &str, secs: u64) {
    for _ in 0..secs * 10 {
        let (_, _, body) = get(&format!("{api}/v1/models")).await;
        if String::from_utf8_lossy(&body).contains(model) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{api} does not list {model} after {secs} s");
}

/// A chat request body.
/// The proxy's record (`/jsonstats` detail) of the worker identity whose
/// session announces `name` now; `Null` if none does.
pub fn worker_record(stats: &Value, name: &str) -> Value {
    stats["detail"]["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| {
            w["names"]
                .as_array()
                .is_some_and(|n| n.iter().any(|x| x == name))
        })
        .cloned()
        .unwrap_or(Value::Null)
}

/// The proxy's `/jsonstats`.
pub async fn proxy_stats(net: &Network) -> Value {
    let (_, _, body) = get(&format!("{}/jsonstats", net.proxy_http)).await;
    serde_json::from_slice(&body).unwrap_or(Value::Null)
}

pub fn chat_body(model: &str, stream: bool) -> Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "Hello there"}],
    })
}

/// Starts a test upstream on a free loopback port.
pub async fn upstream(behaviour: UpstreamBehaviour) -> TestUpstream {
    TestUpstream::start("127.0.0.1:0".parse().expect("addr"), behaviour)
        .await
        .expect("start test upstream")
}
