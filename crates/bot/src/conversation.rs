//! What the bot does with each message: commands, questions (answered
//! privately by the network, streamed into the reply), documents
//! (summarised, in parts when long), and `/verify` on an answer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use teloxide::net::Download;
use teloxide::prelude::*;
use teloxide::types::{Document, MessageId};
use tokio::sync::watch;

use crate::documents::{self, CHARS_PER_TOKEN};
use crate::network::{Answer, CallError, CocoonApi, Limits};
use crate::replies::{finish, follow, pace, patiently, reply};
use crate::BotConfig;

/// Answers remembered for `/verify`, and the most bytes of their streams.
const REMEMBERED: usize = 2000;
const REMEMBERED_BYTES: usize = 64 << 20;
/// Messages worked on at once, for all users together.
const AT_ONCE: usize = 16;
/// How long a PDF's text may take to read.
const PDF_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

const HELP: &str = "I answer privately through Cocoon: your message is encrypted to an attested enclave, and nobody outside it, the GPU owner included, sees it or the answer.\n\n\
Send a question, or a document (text, markdown or PDF) to have it summarised.\n\n\
/verify — reply with it to one of my answers: what ran it, where, at what price, and its receipt checked\n\
/balance — what you have spent and have left this month\n\
/model — the models served; /model NAME picks one\n\
/help — this message";

/// An answer the bot gave, for `/verify`.
#[derive(Debug, Clone)]
struct Given {
    /// Each request's stream as received (one, or one per part and the
    /// summary of the parts).
    raws: Vec<String>,
    cocoon: Value,
    model: String,
}

/// The bot's memory: each user's model, and recent answers.
#[derive(Debug, Default)]
struct Memory {
    models: HashMap<u64, String>,
    given: HashMap<(i64, i32), Given>,
    order: VecDeque<(i64, i32)>,
    bytes: usize,
    /// Users whose previous message is still being answered.
    busy: std::collections::HashSet<u64>,
}

/// Everything a handler needs.
pub struct Conversation {
    pub(crate) bot: Bot,
    pub(crate) api: CocoonApi,
    pub(crate) config: BotConfig,
    memory: Mutex<Memory>,
    working: tokio::sync::Semaphore,
}

impl Conversation {
    /// A conversation over `bot` with the network at `api`.
    pub fn new(bot: Bot, api: CocoonApi, config: BotConfig) -> Conversation {
        Conversation {
            bot,
            api,
            config,
            memory: Mutex::default(),
            working: tokio::sync::Semaphore::new(AT_ONCE),
        }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handles one message; failures are told to the user, never lost.
    pub async fn handle(self: Arc<Self>, msg: Message) {
        let Some(user) = msg.from.as_ref().map(|u| u.id.0) else {
            return;
        };
        // One message at a time per user: a flood waits its turn in no
        // queue, it is told to.
        if !self.memory().busy.insert(user) {
            let _ = reply(&self.bot, msg.chat.id, msg.id, "⏳ I am still answering your previous message; send this one again when it is done.").await;
            return;
        }
        let span = tracing::info_span!("telegram", chat = msg.chat.id.0, message = msg.id.0);
        let outcome = match self.working.acquire().await {
            Ok(_turn) => tracing::Instrument::instrument(self.dispatch(user, &msg), span).await,
            Err(_) => Ok(()),
        };
        self.memory().busy.remove(&user);
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "could not reply on Telegram");
        }
    }

    async fn dispatch(&self, user: u64, msg: &Message) -> Result<(), teloxide::RequestError> {
        if let Some(doc) = msg.document() {
            return self.summarise(user, msg, doc).await;
        }
        let Some(text) = msg.text() else {
            return reply(
                &self.bot,
                msg.chat.id,
                msg.id,
                "I read text messages and documents (text, markdown or PDF).",
            )
            .await
            .map(drop);
        };
        let (command, rest) = command(text);
        match command {
            Some("start") | Some("help") => {
                reply(&self.bot, msg.chat.id, msg.id, HELP).await.map(drop)
            }
            Some("balance") => self.balance(user, msg).await,
            Some("model") => self.model(user, msg, rest).await,
            Some("verify") => self.verify(msg).await,
            Some(other) => reply(
                &self.bot,
                msg.chat.id,
                msg.id,
                &format!("I do not know /{other}.\n\n{HELP}"),
            )
            .await
            .map(drop),
            None => {
                let messages = vec![json!({"role": "user", "content": text})];
                self.answer(user, msg, &messages).await
            }
        }
    }

    /// The user's model: theirs, the configured one, or the first served.
    async fn model_for(&self, user: u64) -> Result<String, CallError> {
        if let Some(m) = self.memory().models.get(&user) {
            return Ok(m.clone());
        }
        if let Some(m) = &self.config.model {
            return Ok(m.clone());
        }
        let list = self.api.models(user as i64).await?;
        list["data"][0]["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| CallError::Refused {
                status: 503,
                code: "no_model".into(),
                message: "no model is served right now; try again in a minute".into(),
            })
    }

    /// Answers `messages` in a reply that fills in as the answer streams.
    async fn answer(
        &self,
        user: u64,
        msg: &Message,
        messages: &[Value],
    ) -> Result<(), teloxide::RequestError> {
        let placeholder = reply(&self.bot, msg.chat.id, msg.id, "…").await?;
        let outcome = async {
            let model = self.model_for(user).await?;
            let limits = Limits {
                max_tokens: self.config.max_answer_tokens,
                temperature: None,
            };
            let answer = self
                .stream(user, &model, messages, limits, (msg.chat.id, placeholder))
                .await?;
            Ok::<_, CallError>((model, answer))
        }
        .await;
        let outcome = outcome.map(|(model, answer)| {
            let raws = vec![answer.raw.clone()];
            (model, answer, raws)
        });
        self.conclude(user, (msg.chat.id, placeholder), String::new(), outcome)
            .await
    }

    /// Ends a reply: the answer under `heading` with who answered it (and
    /// remembered for `/verify`), or what went wrong and what to do.
    async fn conclude(
        &self,
        user: u64,
        (chat, placeholder): (ChatId, MessageId),
        heading: String,
        outcome: Result<(String, Answer, Vec<String>), CallError>,
    ) -> Result<(), teloxide::RequestError> {
        match outcome {
            Ok((model, answer, raws)) => {
                let text = format!(
                    "{heading}{}\n\n{}",
                    answer.text.trim(),
                    footer(&answer, &model)
                );
                finish(&self.bot, chat, placeholder, &text).await?;
                self.remember(chat, placeholder, raws, &answer, &model);
                Ok(())
            }
            Err(e) => finish(&self.bot, chat, placeholder, &self.explain(user, &e).await).await,
        }
    }

    /// One request, its text shown in `shown` as it arrives.
    async fn stream(
        &self,
        user: u64,
        model: &str,
        messages: &[Value],
        limits: Limits,
        (chat, shown): (ChatId, MessageId),
    ) -> Result<Answer, CallError> {
        let (tx, rx) = watch::channel(String::new());
        let edited = Arc::new(Mutex::new(None));
        let editor = tokio::spawn(follow(self.bot.clone(), (chat, shown), rx, edited.clone()));
        let answer = self
            .api
            .ask(user as i64, model, messages, limits, &tx)
            .await;
        editor.abort();
        // The final edit follows: at Telegram's pace, not refused.
        pace(&edited).await;
        answer
    }

    /// Summaries are sampled at temperature 0: the same document gets the
    /// same summary, which a replay on another worker can check.
    fn summary_limits(&self) -> Limits {
        Limits {
            max_tokens: self.config.summary_tokens,
            temperature: Some(0.0),
        }
    }

    /// Summarises a document: read, split to fit the context, each part
    /// summarised, then the parts' summaries combined.
    async fn summarise(
        &self,
        user: u64,
        msg: &Message,
        doc: &Document,
    ) -> Result<(), teloxide::RequestError> {
        let name = doc
            .file_name
            .clone()
            .unwrap_or_else(|| "the document".into());
        let placeholder =
            reply(&self.bot, msg.chat.id, msg.id, &format!("Reading {name}…")).await?;
        let text = match self.read(doc, &name).await {
            Ok(t) => t,
            Err(why) => {
                return finish(&self.bot, msg.chat.id, placeholder, &format!("⚠️ {why}")).await
            }
        };
        let part_chars =
            self.config.context_tokens.saturating_sub(RESERVED_TOKENS) * CHARS_PER_TOKEN;
        let parts = match documents::parts(&name, &text, part_chars, self.config.max_parts) {
            Ok(p) => p,
            Err(why) => {
                return finish(&self.bot, msg.chat.id, placeholder, &format!("⚠️ {why}")).await
            }
        };
        let instruction = msg
            .caption()
            .unwrap_or("Summarise this document in two or three sentences.");
        let outcome = self
            .summarise_parts(user, msg.chat.id, placeholder, instruction, &name, &parts)
            .await;
        let n = if parts.len() > 1 {
            format!(" ({} parts)", parts.len())
        } else {
            String::new()
        };
        let heading = format!("📄 {name}{n}\n\n");
        self.conclude(user, (msg.chat.id, placeholder), heading, outcome)
            .await
    }

    async fn summarise_parts(
        &self,
        user: u64,
        chat: ChatId,
        shown: MessageId,
        instruction: &str,
        name: &str,
        parts: &[String],
    ) -> Result<(String, Answer, Vec<String>), CallError> {
        let model = self.model_for(user).await?;
        let ask = |content: String| vec![json!({"role": "user", "content": content})];
        if parts.len() == 1 {
            let answer = self
                .stream(
                    user,
                    &model,
                    &ask(format!("{instruction}\n\n--- {name} ---\n{}", parts[0])),
                    self.summary_limits(),
                    (chat, shown),
                )
                .await?;
            let raws = vec![answer.raw.clone()];
            return Ok((model, answer, raws));
        }
        let mut summaries = Vec::new();
        let mut raws = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let _ = self
                .bot
                .edit_message_text(
                    chat,
                    shown,
                    format!("Summarising {name}: part {} of {}…", i + 1, parts.len()),
                )
                .await;
            let (tx, _rx) = watch::channel(String::new());
            let prompt = format!(
                "Summarise part {} of {} of {name} in three sentences.\n\n{part}",
                i + 1,
                parts.len()
            );
            let a = self
                .api
                .ask(
                    user as i64,
                    &model,
                    &ask(prompt),
                    self.summary_limits(),
                    &tx,
                )
                .await?;
            summaries.push(a.text.trim().to_string());
            raws.push(a.raw);
        }
        let combined = format!(
            "{instruction} It is given as summaries of its {} parts, in order.\n\n{}",
            parts.len(),
            summaries.join("\n\n")
        );
        let answer = self
            .stream(
                user,
                &model,
                &ask(combined),
                self.summary_limits(),
                (chat, shown),
            )
            .await?;
        raws.push(answer.raw.clone());
        Ok((model, answer, raws))
    }

    /// The document's text, downloaded from Telegram.
    async fn read(&self, doc: &Document, name: &str) -> Result<String, String> {
        let size = u64::from(doc.file.size);
        if size > self.config.max_document_bytes {
            return Err(documents::DocumentError::TooLarge {
                name: name.into(),
                size,
                max: self.config.max_document_bytes,
            }
            .to_string());
        }
        let file = patiently("getFile", || self.bot.get_file(doc.file.id.clone()))
            .await
            .map_err(|e| format!("Telegram did not give me {name}: {e}"))?;
        let mut bytes = Vec::new();
        self.bot
            .download_file(&file.path, &mut bytes)
            .await
            .map_err(|e| format!("I could not download {name}: {e}"))?;
        let mime = doc.mime_type.as_ref().map(|m| m.essence_str().to_string());
        if let (Some(reader), true) = (
            &self.config.pdf_reader,
            documents::is_pdf(name, mime.as_deref(), &bytes),
        ) {
            let text = documents::pdf_text_isolated(name, reader, &bytes, PDF_LIMIT)
                .await
                .map_err(|e| e.to_string())?;
            return documents::from_text(name, &text).map_err(|e| e.to_string());
        }
        let name = name.to_string();
        tokio::task::spawn_blocking(move || documents::extract(&name, mime.as_deref(), &bytes))
            .await
            .map_err(|e| format!("reading the document failed: {e}"))?
            .map_err(|e| e.to_string())
    }

    fn remember(
        &self,
        chat: ChatId,
        id: MessageId,
        raws: Vec<String>,
        answer: &Answer,
        model: &str,
    ) {
        let mut m = self.memory();
        let key = (chat.0, id.0);
        m.bytes += raws.iter().map(String::len).sum::<usize>();
        m.given.insert(
            key,
            Given {
                raws,
                cocoon: answer.cocoon.clone(),
                model: model.to_string(),
            },
        );
        m.order.push_back(key);
        while m.order.len() > REMEMBERED || m.bytes > REMEMBERED_BYTES {
            let Some(old) = m.order.pop_front() else {
                break;
            };
            if let Some(g) = m.given.remove(&old) {
                m.bytes -= g.raws.iter().map(String::len).sum::<usize>();
            }
        }
    }

    /// A failed call, for the user: what happened and what to do.
    async fn explain(&self, user: u64, e: &CallError) -> String {
        match e {
            CallError::Refused { code, .. } if code == "insufficient_quota" => {
                let account = self.api.balance(user as i64).await.ok();
                let a = account.as_ref().map(|v| &v["account"]);
                match a {
                    Some(a) if a.is_object() => format!(
                        "⛔ Not enough budget left for this request: you have spent {} of your {} nanoton this month ({} left){}. Ask something shorter, or wait for the renewal.",
                        a["spent_nanoton"], a["budget_nanoton"], a["available_nanoton"],
                        a["renews_at"].as_u64().map(|t| format!("; it renews at {}", utc(t))).unwrap_or_default()
                    ),
                    _ => format!("⛔ Not enough budget left for this request: {e}"),
                }
            }
            CallError::Refused { code, message, .. } if code == "rate_limit_exceeded" => format!("⏳ Slow down: {message}"),
            CallError::Refused { status: 401, message, .. } => format!("⚠️ The network did not accept this bot's sign-in ({message}); the operator must start the client with this bot's token."),
            other => format!("⚠️ The network could not answer: {other}"),
        }
    }

    async fn balance(&self, user: u64, msg: &Message) -> Result<(), teloxide::RequestError> {
        let text = match self.api.balance(user as i64).await {
            Ok(v) if v["account"].is_object() => {
                let a = &v["account"];
                format!(
                    "💰 This month you have spent {} of {} nanoton; {} left.{}\n{} answers so far.",
                    a["spent_nanoton"],
                    a["budget_nanoton"],
                    a["available_nanoton"],
                    a["renews_at"]
                        .as_u64()
                        .map(|t| format!(" It renews at {}.", utc(t)))
                        .unwrap_or_default(),
                    a["requests"]
                )
            }
            Ok(_) => "This network keeps no budget for you.".to_string(),
            Err(e) => self.explain(user, &e).await,
        };
        reply(&self.bot, msg.chat.id, msg.id, &text).await.map(drop)
    }

    async fn model(
        &self,
        user: u64,
        msg: &Message,
        choice: &str,
    ) -> Result<(), teloxide::RequestError> {
        let list = match self.api.models(user as i64).await {
            Ok(v) => v,
            Err(e) => {
                return reply(
                    &self.bot,
                    msg.chat.id,
                    msg.id,
                    &self.explain(user, &e).await,
                )
                .await
                .map(drop)
            }
        };
        let names: Vec<String> = list["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .collect();
        let text = if choice.is_empty() {
            let current = self.model_for(user).await.unwrap_or_default();
            let lines: Vec<String> = names
                .iter()
                .map(|n| format!("{} {n}", if *n == current { "•" } else { " " }))
                .collect();
            format!(
                "Models served now:\n{}\n\nPick one with /model NAME.",
                lines.join("\n")
            )
        } else if names.iter().any(|n| n == choice) {
            self.memory().models.insert(user, choice.to_string());
            format!("From now on I ask {choice}.")
        } else {
            format!("{choice} is not served now. Served: {}", names.join(", "))
        };
        reply(&self.bot, msg.chat.id, msg.id, &text).await.map(drop)
    }

    async fn verify(&self, msg: &Message) -> Result<(), teloxide::RequestError> {
        let Some(target) = msg.reply_to_message() else {
            return reply(
                &self.bot,
                msg.chat.id,
                msg.id,
                "Reply with /verify to one of my answers.",
            )
            .await
            .map(drop);
        };
        let given = self
            .memory()
            .given
            .get(&(msg.chat.id.0, target.id.0))
            .cloned();
        let Some(given) = given else {
            return reply(
                &self.bot,
                msg.chat.id,
                msg.id,
                "I do not remember that answer (I keep the latest 2000, until I restart).",
            )
            .await
            .map(drop);
        };
        let mut verdicts = Vec::new();
        for raw in &given.raws {
            verdicts.push(self.api.verify(raw).await);
        }
        let link = self.config.public_url.as_deref().unwrap_or(self.api.base());
        let text = crate::verdict::describe(
            &given.cocoon,
            &given.model,
            &verdicts,
            link.trim_end_matches('/'),
        );
        reply(&self.bot, msg.chat.id, msg.id, &text).await.map(drop)
    }
}

/// Tokens of the context kept for the instruction, the chat template and
/// the summary itself.
const RESERVED_TOKENS: usize = 600;

/// `/name rest` (`/name@bot rest` in groups), or no command.
pub fn command(text: &str) -> (Option<&str>, &str) {
    let Some(rest) = text.strip_prefix('/') else {
        return (None, text);
    };
    let (head, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let name = head.split('@').next().unwrap_or(head);
    (Some(name), tail.trim())
}

/// Who answered and what it cost, under an answer.
fn footer(a: &Answer, model: &str) -> String {
    let tee = a.cocoon["worker_tee"].as_str().unwrap_or("unattested");
    let cost = a.usage["cost_nanoton"]
        .as_u64()
        .map(|c| format!(" · {c} nanoton"))
        .unwrap_or_default();
    format!("🔒 {model} in a {tee} TEE{cost} · reply /verify to check")
}

/// Unix seconds as a UTC date and time.
pub(crate) fn utc(unix: u64) -> String {
    let (y, m, d, s) = cocoon_core::utc_date(unix);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        s / 3600,
        s % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_read_as_telegram_sends_them() {
        assert_eq!(command("/verify"), (Some("verify"), ""));
        assert_eq!(
            command("/model@cocoon_bot SmolLM2"),
            (Some("model"), "SmolLM2")
        );
        assert_eq!(command("hello /there"), (None, "hello /there"));
    }
}
