//! What apps and Telegram send: OpenAI requests, Mini App initData, bot
//! updates and the documents in them.

use cocoon_bot::documents;
use cocoon_client::access::telegram::InitDataKey;
use cocoon_client::openai::validate_under;
use cocoon_core::trust::TrustRequirements;
use cocoon_core::Endpoint;
use http::{HeaderMap, HeaderName, HeaderValue};
use teloxide::types::{Update, UpdateKind};

/// The bot token the initData target's key is derived from.
pub(crate) const BOT_TOKEN: &str = "123456:fuzzing-token";
/// The time initData is checked at.
pub(crate) const INIT_DATA_AT: u64 = 1_790_000_000;

/// A request body for the chat or completions endpoint (selector bit 0),
/// optionally preceded by `name: value` header lines and a blank line (bit
/// 1), under an app's default trust requirements (bit 2).
pub(crate) fn openai_request(data: &[u8]) -> bool {
    let Some((select, rest)) = crate::selector(data) else {
        return false;
    };
    let endpoint = if select & 1 == 0 {
        Endpoint::ChatCompletions
    } else {
        Endpoint::Completions
    };
    let (headers, body) = if select & 2 != 0 {
        headers_then_body(rest)
    } else {
        (HeaderMap::new(), rest)
    };
    let defaults: TrustRequirements = if select & 4 != 0 {
        serde_json::from_str(r#"{"tee":["tdx","sev-snp"],"tcb":"up_to_date"}"#)
            .expect("the app defaults are well formed")
    } else {
        TrustRequirements::default()
    };
    match validate_under(endpoint, body, &headers, &defaults) {
        Ok(v) => {
            // What goes on to the proxy is JSON, whatever came in.
            assert!(
                serde_json::from_slice::<serde_json::Value>(&v.body).is_ok(),
                "the forwarded body is not JSON"
            );
            true
        }
        Err(_) => false,
    }
}

/// Header lines up to the first blank line, then the body.
fn headers_then_body(data: &[u8]) -> (HeaderMap, &[u8]) {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (&data[..0], data),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(n, v);
        }
    }
    (headers, body)
}

/// A Mini App's `Authorization: tma` initData.
pub(crate) fn telegram_init_data(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    InitDataKey::from_bot_token(BOT_TOKEN)
        .verify(text, INIT_DATA_AT)
        .is_ok()
}

/// An update from the Bot API (selector 0: its JSON, read as the bot reads
/// it), or a document sent to the bot (otherwise: the selector's low bits
/// pick its name and type). PDFs are out of scope here: the bot reads them
/// in a process of its own, which a crash or a hang only ends.
pub(crate) fn bot_update(data: &[u8]) -> bool {
    let Some((select, rest)) = crate::selector(data) else {
        return false;
    };
    if select == 0 {
        let Ok(update) = serde_json::from_slice::<Update>(rest) else {
            return false;
        };
        let UpdateKind::Message(msg) = update.kind else {
            return true;
        };
        if let Some(text) = msg.text() {
            let (command, args) = cocoon_bot::conversation::command(text);
            assert!(command.is_none_or(|c| !c.contains(char::is_whitespace)));
            assert!(args.len() <= text.len());
        }
        return true;
    }
    let (name, mime) = match select % 4 {
        0 => ("notes.txt", Some("text/plain")),
        1 => ("memo.md", None),
        2 => ("report.csv", Some("text/csv")),
        _ => ("upload.bin", Some("application/octet-stream")),
    };
    if documents::is_pdf(name, mime, rest) {
        return false;
    }
    let Ok(text) = documents::extract(name, mime, rest) else {
        return false;
    };
    match documents::parts(name, &text, 300, 8) {
        Ok(parts) => {
            assert!(!parts.is_empty() && parts.len() <= 8);
            true
        }
        Err(_) => false,
    }
}
