//! Cocoon's Telegram bot: a message gets a private answer from the
//! network, a document a summary, `/verify` on an answer shows what ran it
//! and checks its receipt; `/balance`, `/model`, `/help`.
//!
//! The bot holds no money and enforces no limit itself: it calls the
//! client's API for each Telegram user with initData signed by the bot's
//! token, and the client (started with the same token) applies that
//! user's budget and rate limits. The user id anchors the limits; the
//! bot keeps no message content beyond the receipts of recent answers.
//!
//! Telegram is reached through teloxide; `telegram_api` points it at
//! another Bot API server (a local one, or a test double).

pub mod conversation;
pub mod documents;
pub mod network;
mod replies;
mod verdict;

use std::sync::Arc;
use std::time::Duration;

use teloxide::prelude::*;
use teloxide::types::UpdateKind;
use tokio::sync::watch;

/// How the bot runs.
#[derive(Debug, Clone)]
pub struct BotConfig {
    /// The bot's token, from @BotFather.
    pub token: String,
    /// The Cocoon client's API (`http://127.0.0.1:10000`).
    pub api: String,
    /// The Bot API server [default: Telegram's].
    pub telegram_api: Option<String>,
    /// The model asked unless a user picks one [default: the first served].
    pub model: Option<String>,
    /// The model's context, in tokens: documents longer than fits are
    /// summarised in parts.
    pub context_tokens: usize,
    /// Most tokens an answer (or a part's summary) may take: what a
    /// request holds against the user's budget follows from it.
    pub max_answer_tokens: u64,
    /// Most tokens a summary (of a document, or of one of its parts) may
    /// take.
    pub summary_tokens: u64,
    /// Parts summarised at most; a longer document is refused.
    pub max_parts: usize,
    /// Largest document downloaded, in bytes.
    pub max_document_bytes: u64,
    /// Where `/verify` links a receipt to (the explorer of the client, as
    /// users can reach it) [default: `api`].
    pub public_url: Option<String>,
    /// The program that reads a PDF's text in a process of its own (see
    /// [`documents::pdf_text_isolated`]); `None` reads it in this process.
    pub pdf_reader: Option<(std::path::PathBuf, Vec<String>)>,
}

/// Why the bot stopped.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// The Bot API URL is not a URL.
    #[error("--telegram-api-url {url:?} is not a URL: {reason}")]
    ApiUrl {
        /// The value.
        url: String,
        /// Why.
        reason: String,
    },
    /// Telegram refused the token.
    #[error("Telegram refused the bot's token (getMe): {0}")]
    Token(String),
    /// The Cocoon client is unusable.
    #[error(transparent)]
    Cocoon(#[from] network::CallError),
}

/// Runs the bot until `shutdown` turns true.
pub async fn run(config: BotConfig, mut shutdown: watch::Receiver<bool>) -> Result<(), BotError> {
    let mut bot = Bot::new(config.token.clone());
    if let Some(url) = &config.telegram_api {
        let parsed = reqwest::Url::parse(url).map_err(|e| BotError::ApiUrl {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        bot = bot.set_api_url(parsed);
    }
    let me = bot
        .get_me()
        .await
        .map_err(|e| BotError::Token(e.to_string()))?;
    let api = network::CocoonApi::new(&config.api, &config.token)?;
    tracing::info!(bot = %me.username(), api = %config.api, "Telegram bot started");
    let conversation = Arc::new(conversation::Conversation::new(bot.clone(), api, config));
    let mut offset: i32 = 0;
    let mut backoff = Duration::from_millis(200);
    loop {
        let poll = bot.get_updates().offset(offset).timeout(10);
        let updates = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
            u = poll => u,
        };
        match updates {
            Ok(updates) => {
                backoff = Duration::from_millis(200);
                for u in updates {
                    offset =
                        offset.max(i32::try_from(u.id.0).unwrap_or(i32::MAX).saturating_add(1));
                    if let UpdateKind::Message(m) = u.kind {
                        tokio::spawn(conversation.clone().handle(m));
                    }
                }
            }
            Err(teloxide::RequestError::RetryAfter(s)) => tokio::time::sleep(s.duration()).await,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "polling Telegram failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
