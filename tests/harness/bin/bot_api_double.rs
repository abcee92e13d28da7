//! The Bot API double as a process, for the Telegram demo benchmark
//! (bench/telegram_demo.py): serves the double on a loopback port and, on
//! another, a control API the benchmark drives it with:
//!
//! - `POST /document` `{"user", "name", "mime", "text"}`: the user sends a
//!   document; answers `{"message_id"}`;
//! - `GET /reply/{user}/{message_id}`: the bot's reply to it once it is
//!   final (it names its receipt), with the milliseconds from the
//!   document's arrival to its first and its last text; 404 until then.
//!
//! Usage: bot-api-double TOKEN  (prints `api=URL control=URL`).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use cocoon_e2e::telegram::BotApiDouble;
use serde_json::{json, Value};

type Sent = Arc<Mutex<std::collections::HashMap<i64, Instant>>>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let token = std::env::args()
        .nth(1)
        .expect("usage: bot-api-double TOKEN");
    let double = BotApiDouble::start(&token).await;
    let sent: Sent = Arc::default();
    let app = axum::Router::new()
        .route("/document", axum::routing::post(document))
        .route("/reply/{user}/{id}", axum::routing::get(reply))
        .with_state((double.clone(), sent));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the control API");
    println!(
        "api={} control=http://{}",
        double.url(),
        listener.local_addr().expect("address")
    );
    axum::serve(listener, app)
        .await
        .expect("serve the control API");
}

async fn document(
    State((double, sent)): State<(BotApiDouble, Sent)>,
    body: axum::Json<Value>,
) -> impl IntoResponse {
    let user = body["user"].as_i64().unwrap_or(1);
    let text = body["text"].as_str().unwrap_or("");
    let at = Instant::now();
    let id = double.user_sends_document(
        user,
        body["name"].as_str().unwrap_or("document.md"),
        body["mime"].as_str().unwrap_or("text/markdown"),
        text.as_bytes(),
        None,
    );
    sent.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, at);
    axum::Json(json!({ "message_id": id }))
}

async fn reply(
    State((double, sent)): State<(BotApiDouble, Sent)>,
    Path((user, id)): Path<(i64, i64)>,
) -> impl IntoResponse {
    let Some(at) = sent
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id)
        .copied()
    else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "no such document"})),
        );
    };
    let done = double
        .bot_messages(user)
        .into_iter()
        .find(|m| m.reply_to == Some(id) && m.text().contains("reply /verify"));
    match done {
        Some(m) => {
            let ms = |t: Instant| t.duration_since(at).as_secs_f64() * 1000.0;
            let first = m.texts.first().map_or(0.0, |(t, _)| ms(*t));
            let last = m.texts.last().map_or(0.0, |(t, _)| ms(*t));
            (
                StatusCode::OK,
                axum::Json(
                    json!({"text": m.text(), "first_ms": first, "final_ms": last, "edits": m.texts.len()}),
                ),
            )
        }
        None => (StatusCode::NOT_FOUND, axum::Json(json!({"pending": true}))),
    }
}
