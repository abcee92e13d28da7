//! The explorer and the private chat in headless Chromium (Debian's
//! `chromium`, driven by tests/browser/pages.mjs with playwright-core), on
//! whole `cocoon up` networks: the devnet's registry and the local proxy
//! and worker on the explorer; a real answer from the default model on the
//! chat page, its receipt verified; the chat as a Telegram Mini App (its
//! initData signed by Python's hmac from Telegram's documented algorithm),
//! with the user's balance and a top-up QR code, and forged initData
//! refused; nothing loaded from another origin. Screenshots are left under
//! `target/<profile>/test-output/pages/` for a person to look at.

use std::path::{Path, PathBuf};

use cocoon_e2e::*;
use serde_json::Value;

const TOKEN: &str = "7000000001:AAF-mini_app-token";

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn chromium() -> String {
    let chromium = std::env::var("COCOON_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: scripts/setup installs Debian's chromium for the tests"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is not installed in {}: scripts/test installs it (npm ci there)",
        browser_dir().display()
    );
    chromium
}

/// Starts `cocoon up` (the default model, embedded) with `extra` flags,
/// runs the page driver against it with `driver` flags, and returns its
/// summary once it passed.
async fn pages(tag: &str, extra: &[String], driver: &[String]) -> Value {
    ensure_default_model();
    let chromium = chromium();
    let api = free_port();
    let data_dir =
        std::env::temp_dir().join(format!("cocoon-pages-{tag}-{}-{api}", std::process::id()));
    let mut args = up_embedded_args(&data_dir, api);
    args.extend(extra.iter().cloned());
    let mut proc = Proc::cocoon(&format!("up-{tag}"), &args);
    let base = format!("http://127.0.0.1:{api}");
    wait_ok(&format!("{base}/healthz")).await;
    proc.wait_for_log("Press Ctrl-C", 120).await;

    let out = bin_dir().join("test-output").join("pages").join(tag);
    let _ = std::fs::remove_dir_all(&out);
    let run = tokio::process::Command::new("node")
        .arg(browser_dir().join("pages.mjs"))
        .args(["--base", &base, "--out"])
        .arg(&out)
        .args(driver)
        .current_dir(browser_dir())
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
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explorer_and_the_chat_work_in_a_browser() {
    let summary = pages("open", &[], &[]).await;
    assert_eq!(summary["chat"]["receipt"], "verified", "{summary:#}");
    assert_eq!(summary["explorer_receipt"], "verified", "{summary:#}");
    assert!(
        !summary["chat"]["answer"]
            .as_str()
            .unwrap_or("")
            .trim()
            .is_empty(),
        "{summary:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_runs_as_a_telegram_mini_app() {
    let dir = std::env::temp_dir().join(format!("cocoon-pages-token-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("bot.token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = cocoon_e2e::telegram::init_data(TOKEN, 31337, now - 5);
    let forged = good.replace("31337", "31338");
    let summary = pages(
        "mini-app",
        &[
            "--telegram-token-file".into(),
            token_file.display().to_string(),
        ],
        &[
            "--init-data".into(),
            good,
            "--forged-init-data".into(),
            forged,
        ],
    )
    .await;
    assert_eq!(summary["chat"]["receipt"], "verified", "{summary:#}");
    assert!(
        summary["mini_app"]["account"]
            .as_str()
            .unwrap()
            .contains("available"),
        "{summary:#}"
    );
    assert!(
        summary["mini_app"]["deposit_link"]
            .as_str()
            .unwrap()
            .starts_with("ton://transfer/"),
        "{summary:#}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
