use cocoon_core::Endpoint;
use serde::Serialize;

use crate::{Receipt, UsageObject};

/// A whole, non-streamed answer: `chat.completion` or `text_completion`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// The response id (`chatcmpl-...`, `cmpl-...`).
    pub id: String,
    /// `chat.completion` or `text_completion`.
    pub object: &'static str,
    /// UNIX seconds.
    pub created: i64,
    /// The model that answered.
    pub model: String,
    /// The one choice Cocoon's engines produce.
    pub choices: Vec<AnswerChoice>,
    /// Token counts.
    pub usage: UsageObject,
}

/// One choice of a whole answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AnswerChoice {
    /// A chat answer's message.
    Chat {
        /// Its position.
        index: u32,
        /// The assistant's message.
        message: Message,
        /// Always `null`: log probabilities are not offered.
        logprobs: Option<()>,
        /// Why generation stopped (`stop`, `length`).
        finish_reason: String,
    },
    /// A legacy completion's text.
    Text {
        /// Its position.
        index: u32,
        /// The generated text.
        text: String,
        /// Always `null`.
        logprobs: Option<()>,
        /// Why generation stopped.
        finish_reason: String,
    },
}

/// A chat message in an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `assistant`.
    pub role: &'static str,
    /// The text.
    pub content: String,
}

impl Answer {
    /// The answer to a request at `endpoint`: `text`, stopped for `finish_reason`.
    pub fn new(
        endpoint: Endpoint,
        (id, created, model): (&str, i64, &str),
        text: String,
        finish_reason: &str,
        usage: UsageObject,
    ) -> Self {
        let finish_reason = finish_reason.to_string();
        let choice = match endpoint {
            Endpoint::ChatCompletions => AnswerChoice::Chat {
                index: 0,
                message: Message {
                    role: "assistant",
                    content: text,
                },
                logprobs: None,
                finish_reason,
            },
            Endpoint::Completions => AnswerChoice::Text {
                index: 0,
                text,
                logprobs: None,
                finish_reason,
            },
        };
        Answer {
            id: id.to_string(),
            object: answer_object(endpoint),
            created,
            model: model.to_string(),
            choices: vec![choice],
            usage,
        }
    }
}

/// One streamed chunk: `chat.completion.chunk` or `text_completion`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chunk {
    /// The response id, the same in every chunk of an answer.
    pub id: String,
    /// `chat.completion.chunk` or `text_completion`.
    pub object: &'static str,
    /// UNIX seconds.
    pub created: i64,
    /// The model that answered.
    pub model: String,
    /// One choice's increment; empty in the closing usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Token counts, in the usage chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageObject>,
    /// Who answered and at what price, in the usage chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cocoon: Option<Receipt>,
}

/// One choice's increment in a chunk.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ChunkChoice {
    /// A chat answer's delta.
    Chat {
        /// Its position.
        index: u32,
        /// What the message gained.
        delta: Delta,
        /// Always `null`.
        logprobs: Option<()>,
        /// Set in the last chunk of the choice.
        finish_reason: Option<String>,
    },
    /// A legacy completion's text.
    Text {
        /// Its position.
        index: u32,
        /// What the text gained.
        text: String,
        /// Always `null`.
        logprobs: Option<()>,
        /// Set in the last chunk of the choice.
        finish_reason: Option<String>,
    },
}

/// What a chat message gained in one chunk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Delta {
    /// `assistant`, in the opening chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// Text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl Chunk {
    /// A chunk of an answer at `endpoint` adding `text` (a chat stream may
    /// open with the role alone: `Delta { role: Some("assistant"), .. }`).
    pub fn new(
        endpoint: Endpoint,
        (id, created, model): (&str, i64, &str),
        delta: Delta,
        finish_reason: Option<&str>,
    ) -> Self {
        let finish_reason = finish_reason.map(str::to_string);
        let choice = match endpoint {
            Endpoint::ChatCompletions => ChunkChoice::Chat {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            },
            Endpoint::Completions => ChunkChoice::Text {
                index: 0,
                text: delta.content.unwrap_or_default(),
                logprobs: None,
                finish_reason,
            },
        };
        Chunk {
            id: id.to_string(),
            object: chunk_object(endpoint),
            created,
            model: model.to_string(),
            choices: vec![choice],
            usage: None,
            cocoon: None,
        }
    }

    /// The last chunk of a stream: no choices, Cocoon's receipt, and the
    /// usage when the app asked for it (`stream_options.include_usage`, as
    /// OpenAI sends it). Without usage it is still sent, so that every
    /// streamed answer carries its receipt.
    pub fn closing(
        endpoint: Endpoint,
        (id, created, model): (&str, i64, &str),
        usage: Option<UsageObject>,
        receipt: Receipt,
    ) -> Self {
        Chunk {
            id: id.to_string(),
            object: chunk_object(endpoint),
            created,
            model: model.to_string(),
            choices: Vec::new(),
            usage,
            cocoon: Some(receipt),
        }
    }

    /// The chunk as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        to_json(self)
    }
}

impl Answer {
    /// The answer as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        to_json(self)
    }
}

/// Serialising these types cannot fail: no maps with non-string keys, no
/// failing `Serialize` impls.
pub(crate) fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// The `object` of a streamed chunk at `endpoint`.
pub fn chunk_object(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::ChatCompletions => "chat.completion.chunk",
        Endpoint::Completions => "text_completion",
    }
}

/// The `object` of a whole answer at `endpoint`.
pub fn answer_object(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::ChatCompletions => "chat.completion",
        Endpoint::Completions => "text_completion",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn chat_chunks_have_openais_shape() {
        let meta = ("chatcmpl-1", 7, "m");
        let open = Delta {
            role: Some("assistant"),
            content: Some(String::new()),
        };
        let v = parse(&Chunk::new(Endpoint::ChatCompletions, meta, open, None).to_json());
        assert_eq!(
            v,
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m",
                   "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                "logprobs": null, "finish_reason": null}]})
        );
        let last = Chunk::new(
            Endpoint::ChatCompletions,
            meta,
            Delta::default(),
            Some("stop"),
        );
        let v = parse(&last.to_json());
        assert_eq!(v["choices"][0]["delta"], json!({}));
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn completion_chunks_and_answers_carry_text() {
        let meta = ("cmpl-1", 7, "m");
        let delta = Delta {
            role: None,
            content: Some("hi".into()),
        };
        let v = parse(&Chunk::new(Endpoint::Completions, meta, delta, None).to_json());
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], "hi");
        let usage = UsageObject::from(cocoon_core::Usage {
            prompt: 2,
            completion: 1,
            ..Default::default()
        });
        let a = Answer::new(Endpoint::Completions, meta, "hi".into(), "length", usage);
        let v = parse(&a.to_json());
        assert_eq!(v["choices"][0]["text"], "hi");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["total_tokens"], 3);
        let a = Answer::new(
            Endpoint::ChatCompletions,
            ("chatcmpl-1", 7, "m"),
            "yo".into(),
            "stop",
            UsageObject::default(),
        );
        let v = parse(&a.to_json());
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(
            v["choices"][0]["message"],
            json!({"role": "assistant", "content": "yo"})
        );
    }

    #[test]
    fn the_usage_chunk_has_no_choices_and_a_receipt() {
        let c = Chunk::closing(
            Endpoint::ChatCompletions,
            ("chatcmpl-1", 7, "m"),
            Some(UsageObject::default().with_cost(Some(9))),
            Receipt::default(),
        );
        let v = parse(&c.to_json());
        assert_eq!(v["choices"], json!([]));
        assert_eq!(v["usage"]["cost_nanoton"], 9);
        assert!(v["cocoon"].is_object());
    }
}
