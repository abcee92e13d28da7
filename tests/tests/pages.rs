//! The explorer and the private chat in headless Chromium (Debian's
//! `chromium`, driven by tests/browser/pages.mjs with playwright-core), on
//! a whole `cocoon up` network: the devnet's registry and the local proxy
//! on the explorer; a real answer from the default model on the chat page,
//! its receipt verified; nothing loaded from another origin. Screenshots
//! are left under `target/<profile>/test-output/pages/` for a person to
//! look at.

use std::path::PathBuf;

use cocoon_e2e::*;
use serde_json::Value;

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explorer_and_the_chat_work_in_a_browser() {
    ensure_default_model();
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed in {}: scripts/test installs it (npm ci there)",
        dir.display()
    );
    let chromium = std::env::var("COCOON_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: scripts/setup installs Debian's chromium for the tests"
    );
    let api = free_port();
    let data_dir = std::env::temp_dir().join(format!("cocoon-pages-{}-{api}", std::process::id()));
    let mut proc = Proc::cocoon("up-pages", &up_embedded_args(&data_dir, api));
    let base = format!("http://127.0.0.1:{api}");
    wait_ok(&format!("{base}/healthz")).await;
    proc.wait_for_log("Press Ctrl-C", 120).await;

    let out = bin_dir().join("test-output").join("pages");
    let _ = std::fs::remove_dir_all(&out);
    let run = tokio::process::Command::new("node")
        .arg(dir.join("pages.mjs"))
        .args(["--base", &base, "--out"])
        .arg(&out)
        .current_dir(&dir)
        .env("COCOON_CHROMIUM", &chromium)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(420), run)
        .await
        .expect("the browser run ends within 7 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = serde_json::from_str(&stdout).unwrap_or_else(|_| {
        panic!(
            "the browser run printed no summary:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(
        output.status.success(),
        "the pages failed in the browser: {summary:#}"
    );
    assert_eq!(summary["chat"]["receipt"], "verified", "{summary:#}");
    assert!(
        !summary["chat"]["answer"]
            .as_str()
            .unwrap_or("")
            .trim()
            .is_empty(),
        "{summary:#}"
    );
    assert_eq!(summary["foreign_requests"], serde_json::json!([]));
    for shot in summary["screenshots"].as_array().expect("screenshots") {
        let path = PathBuf::from(shot.as_str().unwrap());
        assert!(
            std::fs::metadata(&path)
                .map(|m| m.len() > 1000)
                .unwrap_or(false),
            "{path:?}"
        );
        eprintln!("screenshot: {}", path.display());
    }
    let _ = proc.terminate();
    let _ = std::fs::remove_dir_all(&data_dir);
}
