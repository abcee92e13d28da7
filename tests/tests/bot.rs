//! The Telegram bot, end to end, against a local double of the Bot API
//! (tests/harness/telegram.rs; Telegram cannot be reached from here):
//! questions answered privately by the network and streamed into the reply,
//! a document summarised (markdown and a real producer's PDF), `/verify`
//! on an answer checking its receipt, what cannot be read refused clearly,
//! and a user over their budget told so — the budget kept by the client,
//! which checks the bot's sign-in for each user.

use std::path::PathBuf;

use cocoon_e2e::telegram::BotApiDouble;
use cocoon_e2e::*;

const TOKEN: &str = "7000000001:AAF-bot_double-token";

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/bot/tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn token_file(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cocoon-bot-{tag}-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bot.token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    file
}

fn bot(double: &BotApiDouble, api: &str, token: &std::path::Path, extra: &[&str]) -> Proc {
    let mut args: Vec<String> = [
        "bot",
        "--token-file",
        &token.display().to_string(),
        "--api",
        api,
        "--telegram-api-url",
        &double.url(),
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    Proc::cocoon("bot", &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_answers_summarises_and_verifies_with_the_real_model() {
    ensure_default_model();
    let token = token_file("real");
    let api = free_port();
    let data_dir = std::env::temp_dir().join(format!("cocoon-bot-up-{}-{api}", std::process::id()));
    let mut args = up_embedded_args(&data_dir, api);
    args.extend([
        "--telegram-token-file".to_string(),
        token.display().to_string(),
    ]);
    let mut up = Proc::cocoon("up-bot", &args);
    let base = format!("http://127.0.0.1:{api}");
    wait_ok(&format!("{base}/healthz")).await;
    up.wait_for_log("Press Ctrl-C", 120).await;
    let double = BotApiDouble::start(TOKEN).await;
    let bot = bot(&double, &base, &token, &[]);
    bot.wait_for_log("Telegram bot started", 30).await;
    let user = 4242;

    // A question: the reply fills in as the answer streams, then says who answered.
    let q = double.user_sends_text(
        user,
        "What is the capital of France? Answer in one sentence.",
    );
    let answer = double
        .reply_to(user, q, 120, |t| t.contains("reply /verify"))
        .await;
    // Sampled at the model's default temperature: what it says varies, not
    // that it says something.
    let said = answer
        .text()
        .split("🔒")
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    assert!(
        said.len() > 5 && !said.starts_with('⚠'),
        "{}",
        answer.text()
    );
    assert!(answer.text().contains("sim TEE"), "{}", answer.text());

    // /verify on it: the receipt checked by the client, what ran it shown.
    let v = double.user_replies(user, answer.id, "/verify");
    let verified = double
        .reply_to(user, v, 60, |t| {
            t.contains("Verified") || t.contains("NOT verified")
        })
        .await;
    let text = verified.text();
    assert!(text.starts_with("✅ Verified"), "{text}");
    for fact in [
        "sim TEE",
        "SIMULATED",
        "SmolLM2-135M-Instruct",
        "b179c952",
        "Price:",
        "✓ answer",
        &format!("{base}/?request="),
    ] {
        assert!(text.contains(fact), "{fact:?} missing from {text}");
    }

    // A document: summarised.
    let md = fixture("supplier-review.md");
    let d = double.user_sends_document(user, "supplier-review.md", "text/markdown", &md, None);
    let summary = double
        .reply_to(user, d, 180, |t| t.contains("reply /verify"))
        .await;
    assert!(
        summary.text().starts_with("📄 supplier-review.md"),
        "{}",
        summary.text()
    );
    let v = double.user_replies(user, summary.id, "/verify");
    let verified = double
        .reply_to(user, v, 60, |t| t.contains("erified"))
        .await;
    assert!(
        verified.text().starts_with("✅ Verified"),
        "{}",
        verified.text()
    );

    // The same memo as a PDF: its text read and summarised.
    let pdf = fixture("supplier-review.pdf");
    let d = double.user_sends_document(
        user,
        "supplier-review.pdf",
        "application/pdf",
        &pdf,
        Some("Summarise this in two sentences."),
    );
    let summary = double
        .reply_to(user, d, 180, |t| {
            t.contains("reply /verify") || t.starts_with("⚠️")
        })
        .await;
    assert!(
        summary.text().starts_with("📄 supplier-review.pdf"),
        "{}",
        summary.text()
    );

    // What cannot be read gets a clear reply, and costs nothing.
    let d = double.user_sends_document(
        user,
        "photo.jpg",
        "image/jpeg",
        &[0xff, 0xd8, 0xff, 0xe0, 0, 0x10],
        None,
    );
    let refused = double.reply_to(user, d, 30, |t| t.starts_with("⚠️")).await;
    assert!(
        refused
            .text()
            .contains("I can read text, markdown and PDF documents"),
        "{}",
        refused.text()
    );

    // /balance: the user's own account, as the client keeps it.
    let b = double.user_sends_text(user, "/balance");
    let balance = double.reply_to(user, b, 30, |t| t.contains("spent")).await;
    assert!(
        balance.text().contains("of 100000000 nanoton"),
        "{}",
        balance.text()
    );

    // Streaming edits met the double's 429s and still finished.
    assert!(double.calls("editMessageText") > 3);
    drop(bot);
    let _ = up.terminate();
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_over_budget_is_told_so_and_another_is_not() {
    let token = token_file("budget");
    let tf = token.display().to_string();
    let up = upstream(UpstreamBehaviour {
        chunk_size: 8,
        ..Default::default()
    })
    .await;
    // Each answer of 64 tokens costs ~7000 nanoton and holds (its request's
    // bytes + 64) × 100 ≈ 25000 while in flight: 40000 pays for a few.
    let mut net = Network::start_with_client_args(&[
        "--telegram-token-file",
        &tf,
        "--telegram-user-budget",
        "40000",
    ])
    .await;
    net.add_worker(WorkerSpec::new("w1", "test-model", &up))
        .await;
    let double = BotApiDouble::start(TOKEN).await;
    let bot = bot(&double, &net.api, &token, &["--max-answer-tokens", "64"]);
    bot.wait_for_log("Telegram bot started", 30).await;

    let user = 1001;
    let mut refusal = None;
    let mut answered = 0;
    for i in 0..8 {
        let q = double.user_sends_text(user, &format!("question {i}"));
        let r = double
            .reply_to(user, q, 30, |t| {
                t.contains("reply /verify") || t.starts_with("⛔") || t.starts_with("⚠️")
            })
            .await;
        if r.text().starts_with("⛔") {
            refusal = Some(r.text().to_string());
            break;
        }
        assert!(r.text().contains("reply /verify"), "{}", r.text());
        answered += 1;
    }
    let refusal = refusal.expect("the budget ran out");
    assert!(answered >= 1, "the budget paid for nothing: {refusal}");
    assert!(
        refusal.contains("Not enough budget left") && refusal.contains("of your 40000 nanoton"),
        "{refusal}"
    );
    assert!(refusal.contains("renews at"), "{refusal}");

    // Another user has a budget of their own.
    let other = double.user_sends_text(2002, "hello");
    let r = double
        .reply_to(2002, other, 30, |t| {
            t.contains("reply /verify") || t.starts_with("⛔")
        })
        .await;
    assert!(r.text().contains("reply /verify"), "{}", r.text());
    drop(bot);
}
