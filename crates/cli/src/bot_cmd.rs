//! `cocoon bot`: the Telegram bot.

use anyhow::Context;

use crate::options::BotOptions;

/// `cocoon read-pdf`: the text of the PDF on standard input, for the bot.
pub fn read_pdf() -> anyhow::Result<()> {
    cocoon_bot::documents::read_pdf_stdio().map_err(|e| anyhow::anyhow!(e))
}

pub async fn run(o: BotOptions) -> anyhow::Result<()> {
    let token = crate::telegram::read_token(&o.token_file)?;
    let config = cocoon_bot::BotConfig {
        token,
        api: o.api.unwrap_or_else(|| "http://127.0.0.1:10000".into()),
        telegram_api: o.telegram_api_url,
        model: o.model,
        context_tokens: o.context_tokens.unwrap_or(2048),
        max_answer_tokens: o.max_answer_tokens.unwrap_or(512).max(1),
        summary_tokens: o.summary_tokens.unwrap_or(96).max(1),
        max_parts: o.max_parts.unwrap_or(8),
        max_document_bytes: o.max_document_bytes.unwrap_or(10_000_000),
        public_url: o.public_url,
        // PDFs are read by this executable in a process of its own.
        pdf_reader: std::env::current_exe()
            .ok()
            .map(|exe| (exe, vec!["read-pdf".to_string()])),
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
