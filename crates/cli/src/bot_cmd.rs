//! `cocoon bot`: the Telegram bot.

use anyhow::Context;

use crate::options::BotOptions;

pub async fn run(o: BotOptions) -> anyhow::Result<()> {
    let token = crate::telegram::read_token(&o.token_file)?;
    let config = cocoon_bot::BotConfig {
        token,
        api: o.api.unwrap_or_else(|| "http://127.0.0.1:10000".into()),
        telegram_api: o.telegram_api_url,
        model: o.model,
        context_tokens: o.context_tokens.unwrap_or(2048),
        max_answer_tokens: o.max_answer_tokens.unwrap_or(512).max(1),
        max_parts: o.max_parts.unwrap_or(8),
        max_document_bytes: o.max_document_bytes.unwrap_or(10_000_000),
    };
    if config.context_tokens < 1024 {
        anyhow::bail!("--context-tokens must be at least 1024 (the instruction and the summary need room), found {}", config.context_tokens);
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let bot = tokio::spawn(cocoon_bot::run(config, stopped));
    tokio::select! {
        _ = crate::run::ctrl_c() => {
            let _ = stop.send(true);
            Ok(())
        }
        r = bot => Ok(r.context("the bot's task")??),
    }
}
