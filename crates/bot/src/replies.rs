//! Talking back on Telegram: sending, editing a reply as an answer
//! streams in (at most one edit a second, as Telegram allows), waiting out
//! Telegram's rate limits, and splitting text over its 4096-character
//! limit.

use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use teloxide::prelude::*;
use teloxide::types::{ChatAction, MessageId, ReplyParameters};
use teloxide::RequestError;
use tokio::sync::watch;

/// Characters per Telegram message (its limit is 4096).
const MESSAGE_CHARS: usize = 4000;
/// The least time between two edits of a streaming reply.
const EDIT_EVERY: Duration = Duration::from_millis(1100);
/// Tries of a call Telegram rate-limits.
const TRIES: u32 = 5;

/// Runs a Bot API call, waiting as long as Telegram asks when it answers
/// 429, and once briefly on a network failure.
pub async fn patiently<T, F, Fut>(what: &str, call: F) -> Result<T, RequestError>
where
    F: Fn() -> Fut,
    Fut: IntoFuture<Output = Result<T, RequestError>>,
{
    let mut last = None;
    for _ in 0..TRIES {
        match call().into_future().await {
            Err(RequestError::RetryAfter(s)) => {
                tracing::debug!(call = what, wait_s = s.seconds(), "Telegram asks to wait");
                tokio::time::sleep(s.duration()).await;
                last = Some(RequestError::RetryAfter(s));
            }
            Err(RequestError::Network(e)) => {
                tracing::debug!(call = what, error = %e, "Telegram unreachable; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                last = Some(RequestError::Network(e));
            }
            other => return other,
        }
    }
    Err(last.unwrap_or(RequestError::RetryAfter(
        teloxide::types::Seconds::from_seconds(1),
    )))
}

/// Sends `text` as a reply to `to`.
pub async fn reply(
    bot: &Bot,
    chat: ChatId,
    to: MessageId,
    text: &str,
) -> Result<MessageId, RequestError> {
    let text = clip(text);
    let sent = patiently("sendMessage", || {
        bot.send_message(chat, text.clone())
            .reply_parameters(ReplyParameters::new(to).allow_sending_without_reply())
    })
    .await?;
    Ok(sent.id)
}

/// Replaces a reply's text; the rest beyond one message goes in new ones.
pub async fn finish(
    bot: &Bot,
    chat: ChatId,
    id: MessageId,
    text: &str,
) -> Result<(), RequestError> {
    let mut pieces = split(text).into_iter();
    let first = pieces.next().unwrap_or_default();
    let edited = patiently("editMessageText", || {
        bot.edit_message_text(chat, id, first.clone())
    })
    .await;
    match edited {
        Ok(_) => {}
        // The same text again: nothing to change.
        Err(RequestError::Api(teloxide::ApiError::MessageNotModified)) => {}
        Err(e) => return Err(e),
    }
    for rest in pieces {
        patiently("sendMessage", || bot.send_message(chat, rest.clone())).await?;
    }
    Ok(())
}

/// Shows the text received so far in a reply while an answer streams,
/// until `progress` closes; Telegram's "typing…" meanwhile.
///
/// `edited` holds when the reply was last edited, so that the final edit
/// can wait just long enough for Telegram's pace ([`pace`]) instead of
/// being refused and waiting a whole `retry_after`.
pub async fn follow(
    bot: Bot,
    (chat, id): (ChatId, MessageId),
    mut progress: watch::Receiver<String>,
    edited: Arc<Mutex<Option<Instant>>>,
) {
    let mut shown = String::new();
    let _ = bot.send_chat_action(chat, ChatAction::Typing).await;
    while progress.changed().await.is_ok() {
        let text = progress.borrow_and_update().clone();
        if text.trim().is_empty() || text == shown {
            continue;
        }
        match bot
            .edit_message_text(chat, id, clip(&format!("{text} ▍")))
            .await
        {
            Err(RequestError::RetryAfter(s)) => tokio::time::sleep(s.duration()).await,
            Err(e) => {
                tracing::debug!(error = %e, "a streaming edit failed; the next one will catch up")
            }
            Ok(_) => {
                shown = text;
                *edited.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            }
        }
        tokio::time::sleep(EDIT_EVERY).await;
        let _ = bot.send_chat_action(chat, ChatAction::Typing).await;
    }
}

/// Waits until the next edit of a reply last edited at `edited` keeps
/// Telegram's pace of about one edit a second per chat.
pub async fn pace(edited: &Mutex<Option<Instant>>) {
    let last = *edited.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(at) = last {
        let next = at + EDIT_EVERY;
        tokio::time::sleep_until(next.into()).await;
    }
}

/// At most one message's worth, ending with "…" when cut.
fn clip(text: &str) -> String {
    if text.chars().count() <= MESSAGE_CHARS {
        return text.to_string();
    }
    let mut out: String = text.chars().take(MESSAGE_CHARS - 1).collect();
    out.push('…');
    out
}

/// Message-sized pieces, cut at line ends where possible.
fn split(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        if current.chars().count() + line.chars().count() > MESSAGE_CHARS && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        if line.chars().count() > MESSAGE_CHARS {
            let chars: Vec<char> = line.chars().collect();
            for c in chars.chunks(MESSAGE_CHARS) {
                out.push(c.iter().collect());
            }
            continue;
        }
        current.push_str(line);
    }
    if !current.is_empty() || out.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_split_into_messages_without_loss() {
        let text = format!("{}\n{}", "a".repeat(3000), "b".repeat(9000));
        let pieces = split(&text);
        assert!(pieces.iter().all(|p| p.chars().count() <= MESSAGE_CHARS));
        assert_eq!(pieces.concat(), text);
        assert_eq!(split("short"), vec!["short".to_string()]);
        assert_eq!(clip(&"x".repeat(5000)).chars().count(), MESSAGE_CHARS);
    }
}
