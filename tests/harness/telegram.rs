//! A local double of the Telegram Bot API, for tests only: Telegram cannot
//! be reached from here. Written from Telegram's published Bot API
//! documentation for the methods the bot uses: getMe, getUpdates (long
//! polling, offsets confirming updates), sendMessage, editMessageText,
//! sendChatAction, getFile and the file download
//! (`/file/bot<token>/<file_path>`). Answers are `{"ok":true,"result":…}`
//! or `{"ok":false,"error_code","description","parameters"}` as Telegram's.
//!
//! As hostile as the real service may be: every call is delayed a little;
//! the first getUpdates fails with 502 as Telegram's front end does under
//! load; editing a chat's messages more than once a second gets 429 with
//! `retry_after`; an edit that changes nothing gets Telegram's "message is
//! not modified" 400; a wrong token gets 401.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::Notify;

/// The bot's own identity in getMe and in the messages it sends.
const BOT_ID: i64 = 7_000_000_001;

/// A message the bot sent, with every text it had.
#[derive(Debug, Clone)]
pub struct BotMessage {
    pub chat: i64,
    pub id: i64,
    /// Texts in order: as sent, then each edit.
    pub texts: Vec<(Instant, String)>,
    /// The message it replied to.
    pub reply_to: Option<i64>,
}

impl BotMessage {
    pub fn text(&self) -> &str {
        self.texts.last().map_or("", |(_, t)| t.as_str())
    }
}

#[derive(Default)]
struct Double {
    updates: Vec<Value>,
    next_update: i64,
    next_message: i64,
    /// Every message in every chat (users' and the bot's), by id.
    messages: BTreeMap<i64, Value>,
    sent: BTreeMap<i64, BotMessage>,
    files: HashMap<String, (String, Vec<u8>)>,
    last_edit: HashMap<i64, Instant>,
    polls: u64,
    calls: Vec<(Instant, String)>,
    jitter: u64,
}

/// The running double.
#[derive(Clone)]
pub struct BotApiDouble {
    pub addr: SocketAddr,
    pub token: String,
    state: Arc<Mutex<Double>>,
    arrived: Arc<Notify>,
}

impl BotApiDouble {
    /// Starts the double on a free loopback port for `token`.
    pub async fn start(token: &str) -> BotApiDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the double");
        let addr = listener.local_addr().expect("its address");
        let double = BotApiDouble {
            addr,
            token: token.to_string(),
            state: Arc::new(Mutex::new(Double {
                next_update: 100,
                next_message: 1,
                jitter: 7,
                ..Default::default()
            })),
            arrived: Arc::new(Notify::new()),
        };
        let app = axum::Router::new()
            .route("/{bot}/{method}", axum::routing::any(method))
            .route("/file/{bot}/{*path}", axum::routing::get(download))
            .with_state(double.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        double
    }

    /// The URL to give the bot (`--telegram-api-url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Double> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, user: i64, mut message: Value) -> i64 {
        let mut s = self.lock();
        let id = s.next_message;
        s.next_message += 1;
        message["message_id"] = json!(id);
        message["date"] = json!(unix_now());
        message["chat"] =
            json!({"id": user, "type": "private", "first_name": format!("User {user}")});
        message["from"] = json!({"id": user, "is_bot": false, "first_name": format!("User {user}"), "language_code": "en"});
        s.messages.insert(id, message.clone());
        let update_id = s.next_update;
        s.next_update += 1;
        s.updates
            .push(json!({"update_id": update_id, "message": message}));
        drop(s);
        self.arrived.notify_waiters();
        id
    }

    /// `user` writes `text` to the bot (in their private chat).
    pub fn user_sends_text(&self, user: i64, text: &str) -> i64 {
        let mut m = json!({"text": text});
        if let Some(cmd) = text.strip_prefix('/') {
            let len = cmd.split_whitespace().next().map_or(0, str::len) + 1;
            m["entities"] = json!([{"type": "bot_command", "offset": 0, "length": len}]);
        }
        self.push(user, m)
    }

    /// `user` replies to message `to` with `text`.
    pub fn user_replies(&self, user: i64, to: i64, text: &str) -> i64 {
        let original = self
            .lock()
            .messages
            .get(&to)
            .cloned()
            .unwrap_or(Value::Null);
        let mut m = json!({"text": text, "reply_to_message": original});
        if text.starts_with('/') {
            let len = text.split_whitespace().next().map_or(0, str::len);
            m["entities"] = json!([{"type": "bot_command", "offset": 0, "length": len}]);
        }
        self.push(user, m)
    }

    /// `user` sends a document.
    pub fn user_sends_document(
        &self,
        user: i64,
        name: &str,
        mime: &str,
        bytes: &[u8],
        caption: Option<&str>,
    ) -> i64 {
        let file_id = {
            let mut s = self.lock();
            let n = s.files.len() + 1;
            let id = format!("BQACAgIAAxkBAAI{n}");
            s.files.insert(
                id.clone(),
                (format!("documents/file_{n}_{name}"), bytes.to_vec()),
            );
            id
        };
        let mut m = json!({"document": {
            "file_id": file_id,
            "file_unique_id": format!("AgAD{}", file_id.len()),
            "file_name": name,
            "mime_type": mime,
            "file_size": bytes.len(),
        }});
        if let Some(c) = caption {
            m["caption"] = json!(c);
        }
        self.push(user, m)
    }

    /// The bot's messages in `chat`, oldest first.
    pub fn bot_messages(&self, chat: i64) -> Vec<BotMessage> {
        self.lock()
            .sent
            .values()
            .filter(|m| m.chat == chat)
            .cloned()
            .collect()
    }

    /// Waits (at most `secs`) for the bot's reply to message `to` to
    /// satisfy `done`, and returns it.
    pub async fn reply_to(
        &self,
        chat: i64,
        to: i64,
        secs: u64,
        done: impl Fn(&str) -> bool,
    ) -> BotMessage {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let found = self
                .bot_messages(chat)
                .into_iter()
                .find(|m| m.reply_to == Some(to) && done(m.text()));
            if let Some(m) = found {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no reply to message {to} as expected within {secs} s; the bot said: {:#?}",
                self.bot_messages(chat)
                    .iter()
                    .map(|m| m.text().to_string())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many times each method was called.
    pub fn calls(&self, method: &str) -> usize {
        let method = method.to_ascii_lowercase();
        self.lock()
            .calls
            .iter()
            .filter(|(_, m)| *m == method)
            .count()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn ok(result: Value) -> Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

fn error(status: StatusCode, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({"ok": false, "error_code": status.as_u16(), "description": description});
    if let Some(p) = parameters {
        body["parameters"] = p;
    }
    (status, axum::Json(body)).into_response()
}

async fn method(
    State(d): State<BotApiDouble>,
    Path((bot, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let jitter = {
        let mut s = d.lock();
        s.calls.push((Instant::now(), name.to_ascii_lowercase()));
        s.jitter = s
            .jitter
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (s.jitter >> 33) % 60
    };
    tokio::time::sleep(Duration::from_millis(jitter)).await;
    if bot != format!("bot{}", d.token) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized", None);
    }
    let p: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    if p.is_null() {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request: the request body is not JSON",
            None,
        );
    }
    // Bot API method names are case-insensitive.
    match name.to_ascii_lowercase().as_str() {
        "getme" => ok(
            json!({"id": BOT_ID, "is_bot": true, "first_name": "Cocoon", "username": "cocoon_test_bot",
            "can_join_groups": false, "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": true}),
        ),
        "getupdates" => get_updates(&d, &p).await,
        "sendmessage" => send_message(&d, &p),
        "editmessagetext" => edit_message_text(&d, &p),
        "sendchataction" => ok(json!(true)),
        "getfile" => get_file(&d, &p),
        "deletewebhook" => ok(json!(true)),
        other => error(
            StatusCode::NOT_FOUND,
            &format!("Not Found: method {other} is not in this double"),
            None,
        ),
    }
}

async fn get_updates(d: &BotApiDouble, p: &Value) -> Response {
    let first = {
        let mut s = d.lock();
        s.polls += 1;
        s.polls == 1
    };
    if first {
        return (
            StatusCode::BAD_GATEWAY,
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response();
    }
    let offset = p["offset"].as_i64().unwrap_or(0);
    let timeout = p["timeout"].as_u64().unwrap_or(0).min(50);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let arrived = d.arrived.notified();
        let pending: Vec<Value> = {
            let mut s = d.lock();
            // An offset confirms every update before it.
            s.updates
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            s.updates.iter().take(100).cloned().collect()
        };
        if !pending.is_empty() || tokio::time::Instant::now() >= deadline {
            return ok(json!(pending));
        }
        let _ = tokio::time::timeout_at(deadline, arrived).await;
    }
}

fn send_message(d: &BotApiDouble, p: &Value) -> Response {
    let (Some(chat), Some(text)) = (p["chat_id"].as_i64(), p["text"].as_str()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request: chat_id and text are required",
            None,
        );
    };
    if text.is_empty() || text.chars().count() > 4096 {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request: message text is empty or too long",
            None,
        );
    }
    let mut s = d.lock();
    let id = s.next_message;
    s.next_message += 1;
    let reply_to = p["reply_parameters"]["message_id"]
        .as_i64()
        .or(p["reply_to_message_id"].as_i64());
    let message = json!({"message_id": id, "date": unix_now(), "text": text,
        "chat": {"id": chat, "type": "private", "first_name": format!("User {chat}")},
        "from": {"id": BOT_ID, "is_bot": true, "first_name": "Cocoon", "username": "cocoon_test_bot"}});
    s.messages.insert(id, message.clone());
    s.sent.insert(
        id,
        BotMessage {
            chat,
            id,
            texts: vec![(Instant::now(), text.to_string())],
            reply_to,
        },
    );
    ok(message)
}

fn edit_message_text(d: &BotApiDouble, p: &Value) -> Response {
    let (Some(chat), Some(id), Some(text)) = (
        p["chat_id"].as_i64(),
        p["message_id"].as_i64(),
        p["text"].as_str(),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request: chat_id, message_id and text are required",
            None,
        );
    };
    let mut s = d.lock();
    let now = Instant::now();
    if s.last_edit
        .get(&chat)
        .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(1))
    {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests: retry after 1",
            Some(json!({"retry_after": 1})),
        );
    }
    let Some(m) = s.sent.get_mut(&id).filter(|m| m.chat == chat) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request: message to edit not found",
            None,
        );
    };
    if m.text() == text {
        return error(StatusCode::BAD_REQUEST, "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message", None);
    }
    if text.chars().count() > 4096 {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request: MESSAGE_TOO_LONG",
            None,
        );
    }
    m.texts.push((now, text.to_string()));
    s.last_edit.insert(chat, now);
    let message = json!({"message_id": id, "date": unix_now(), "edit_date": unix_now(), "text": text,
        "chat": {"id": chat, "type": "private", "first_name": format!("User {chat}")},
        "from": {"id": BOT_ID, "is_bot": true, "first_name": "Cocoon", "username": "cocoon_test_bot"}});
    s.messages.insert(id, message.clone());
    ok(message)
}

fn get_file(d: &BotApiDouble, p: &Value) -> Response {
    let id = p["file_id"].as_str().unwrap_or("");
    match d.lock().files.get(id) {
        Some((path, bytes)) => ok(
            json!({"file_id": id, "file_unique_id": format!("AgAD{}", id.len()), "file_size": bytes.len(), "file_path": path}),
        ),
        None => error(
            StatusCode::BAD_REQUEST,
            "Bad Request: invalid file_id",
            None,
        ),
    }
}

async fn download(
    State(d): State<BotApiDouble>,
    Path((bot, path)): Path<(String, String)>,
) -> Response {
    if bot != format!("bot{}", d.token) {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    let found = d
        .lock()
        .files
        .values()
        .find(|(p, _)| *p == path)
        .map(|(_, b)| b.clone());
    match found {
        Some(bytes) => bytes.into_response(),
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

/// initData for `user` signed at `auth_date` with `token`, as Telegram
/// hands it to a Mini App, computed by Python's hmac from Telegram's
/// documented algorithm (not by the code under test).
pub fn init_data(token: &str, user: i64, auth_date: u64) -> String {
    let script = r#"
import hmac, hashlib, sys, urllib.parse
token, user, date = sys.argv[1], sys.argv[2], sys.argv[3]
fields = {"auth_date": date, "query_id": "AAH-test", "user": '{"id":%s,"first_name":"Ann","language_code":"en"}' % user}
dcs = "\n".join(f"{k}={fields[k]}" for k in sorted(fields))
secret = hmac.new(b"WebAppData", token.encode(), hashlib.sha256).digest()
fields["hash"] = hmac.new(secret, dcs.encode(), hashlib.sha256).hexdigest()
print(urllib.parse.urlencode(fields))
"#;
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            token,
            &user.to_string(),
            &auth_date.to_string(),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("ASCII")
        .trim()
        .to_string()
}
