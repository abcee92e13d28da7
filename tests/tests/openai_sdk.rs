//! The official OpenAI Python SDK, as an app would use it, against a real
//! client → proxy → worker chain.

use std::process::Command;

use cocoon_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_sdk_works_against_cocoon() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import openai; print(openai.__version__)"])
        .output();
    let probe = probe.unwrap_or_else(|e| {
        panic!("cannot run {python}: {e}; install Python 3 and `pip install openai` (.ci/run does)")
    });
    assert!(
        probe.status.success(),
        "the OpenAI SDK is not installed for {python}: run `pip install openai` (.ci/run does)\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );

    let up = upstream(UpstreamBehaviour {
        chunks: 6,
        chunk_size: 20,
        ..Default::default()
    })
    .await;
    let mut net = Network::start().await;
    net.add_worker(WorkerSpec::new("w1", "sdk-model", &up))
        .await;
    let script = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("python/sdk_check.py");
    let base = format!("{}/v1", net.api);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(base)
            .arg("sdk-model")
            .output()
    })
    .await
    .unwrap()
    .expect("run the SDK script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK checks failed:\n{stdout}\n{stderr}"
    );
    for check in [
        "models.list",
        "chat non-streaming",
        "chat streaming",
        "completions",
        "NotFoundError",
        "BadRequestError",
    ] {
        assert!(
            stdout.contains(&format!("ok {check}")),
            "missing check {check}:\n{stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_sdk_works_against_cocoon_up_with_the_real_model() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    ensure_default_model();
    let api = free_port();
    // Its own data directory: the sim root and the development ledger.
    let data_dir = std::env::temp_dir().join(format!("cocoon-sdk-up-{}", std::process::id()));
    let args = up_embedded_args(&data_dir, api);
    let mut up = Proc::cocoon("up-sdk", &args);
    let base = format!("http://127.0.0.1:{api}");
    wait_ok(&format!("{base}/healthz")).await;
    up.wait_for_log("Press Ctrl-C", 120).await;
    let script = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("python/sdk_up_check.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(format!("{base}/v1"))
            .output()
    })
    .await
    .unwrap()
    .expect("run the SDK script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in [
        "models.list",
        "chat non-streaming",
        "chat streaming",
        "completions",
        "NotFoundError",
    ] {
        assert!(
            stdout.contains(&format!("ok {check}")),
            "missing check {check}:\n{stdout}"
        );
    }
    assert!(up.terminate().expect("cocoon up exits").success());
    let _ = std::fs::remove_dir_all(&data_dir);
}
