//! The Telegram bot's token, as the client (Mini App sign-in) and the bot
//! read it.

use anyhow::{bail, Context};

/// Reads a bot token from `file` and checks its shape (`<bot id>:<secret>`),
/// so a wrong file is named now rather than as forged sign-ins later.
pub fn read_token(file: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the Telegram bot token from {}", file.display()))?;
    let token = text.trim();
    let shaped = token.split_once(':').is_some_and(|(id, secret)| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && !secret.is_empty()
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    if !shaped {
        bail!(
            "{} does not hold a Telegram bot token: expected <bot id>:<secret>, as @BotFather gives it",
            file.display()
        );
    }
    Ok(token.to_string())
}
