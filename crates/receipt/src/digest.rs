//! The hashes a receipt signs: of the request as the engine ran it, and of
//! the answer as delivered.
//!
//! - A streamed answer: SHA-256 over a domain tag, then every chunk
//!   payload (the JSON of one SSE `data:` event, as the worker sent it) as
//!   a 4-byte big-endian length and its bytes. The client forwards the
//!   payloads byte for byte, so a saved stream hashes the same.
//! - A sealed request (end to end, cocoon-seal): each of these with its
//!   [`Salt`] after another domain tag, over the plaintext.
//! - A whole answer: SHA-256 over a domain tag and the answer's JSON in a
//!   canonical form (object members sorted, no whitespace), without the
//!   members the client adds after the worker (`cocoon`, and `cost_nanoton`
//!   and `cost_breakdown` in `usage`). A body that is not a JSON object is hashed as it is.

use sha2::{Digest, Sha256};

const STREAM_DOMAIN: &[u8] = b"cocoon/answer/stream/v1\0";
const WHOLE_DOMAIN: &[u8] = b"cocoon/answer/whole/v1\0";
const RAW_DOMAIN: &[u8] = b"cocoon/answer/raw/v1\0";
const SALTED_REQUEST_DOMAIN: &[u8] = b"cocoon/request/salted/v1\0";
const SALTED_STREAM_DOMAIN: &[u8] = b"cocoon/answer/stream/salted/v1\0";
const SALTED_WHOLE_DOMAIN: &[u8] = b"cocoon/answer/whole/salted/v1\0";
const SALTED_RAW_DOMAIN: &[u8] = b"cocoon/answer/raw/salted/v1\0";
const SALTED_CONTENT_DOMAIN: &[u8] = b"cocoon/content/salted/v1\0";

/// The salt of a request sealed end to end (cocoon-seal): every digest its
/// receipts state is taken with it, so they bind the plaintext the client
/// and the worker saw without letting the proxy that relays them test a
/// guess of a short prompt or answer against them. The client keeps it with
/// the answer, and anyone it shows the answer to can verify it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Salt(pub [u8; 32]);

impl std::fmt::Debug for Salt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Salt(..)")
    }
}

impl Salt {
    /// From 64 hex characters.
    pub fn from_hex(s: &str) -> Option<Salt> {
        let b = hex::decode(s).ok()?;
        Some(Salt(<[u8; 32]>::try_from(b.as_slice()).ok()?))
    }

    /// As 64 hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// The digest a receipt states of a request body: SHA-256, salted for a
/// sealed request.
pub fn request_digest(body: &[u8], salt: Option<&Salt>) -> String {
    match salt {
        None => sha256_hex(body),
        Some(s) => {
            let mut h = Sha256::new();
            h.update(SALTED_REQUEST_DOMAIN);
            h.update(s.0);
            h.update(body);
            hex::encode(h.finalize())
        }
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The digest of a streamed answer, fed chunk by chunk.
#[derive(Debug, Clone)]
pub struct StreamDigest(Sha256);

impl Default for StreamDigest {
    fn default() -> Self {
        let mut h = Sha256::new();
        h.update(STREAM_DOMAIN);
        StreamDigest(h)
    }
}

impl StreamDigest {
    /// A digest salted for a sealed request (plain without a salt).
    pub fn salted(salt: Option<&Salt>) -> Self {
        let Some(s) = salt else {
            return Self::default();
        };
        let mut h = Sha256::new();
        h.update(SALTED_STREAM_DOMAIN);
        h.update(s.0);
        StreamDigest(h)
    }

    /// Adds one chunk payload.
    pub fn push(&mut self, chunk: &[u8]) {
        let len = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        self.0.update(len.to_be_bytes());
        self.0.update(chunk);
    }

    /// The digest, hex.
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// The digest of a whole (non-streamed) answer, hex.
pub fn whole_answer(body: &[u8]) -> String {
    whole_answer_salted(body, None)
}

/// The digest of a whole answer, salted for a sealed request.
pub fn whole_answer_salted(body: &[u8], salt: Option<&Salt>) -> String {
    let mut h = Sha256::new();
    let (whole, raw) = match salt {
        None => (WHOLE_DOMAIN, RAW_DOMAIN),
        Some(_) => (SALTED_WHOLE_DOMAIN, SALTED_RAW_DOMAIN),
    };
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut answer)) => {
            answer.remove("cocoon");
            if let Some(serde_json::Value::Object(usage)) = answer.get_mut("usage") {
                usage.remove("cost_nanoton");
                usage.remove("cost_breakdown");
            }
            let mut out = Vec::with_capacity(body.len());
            canonical(&serde_json::Value::Object(answer), &mut out);
            h.update(whole);
            h.update(salt.map_or(&[][..], |s| &s.0[..]));
            h.update(&out);
        }
        _ => {
            h.update(raw);
            h.update(salt.map_or(&[][..], |s| &s.0[..]));
            h.update(body);
        }
    }
    hex::encode(h.finalize())
}

/// Whether an honest worker gives the same content for `request` (a chat
/// or completion body) again: temperature 0, or a seed. Only such answers
/// carry a content digest, are spot-checked, and can be slashed for.
pub fn deterministic(request: &[u8]) -> bool {
    Sampling::of(request).is_ok_and(|s| s.deterministic())
}

/// What a request's body says about how its answer is sampled.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sampling {
    /// `temperature`, if given.
    pub temperature: Option<f64>,
    /// Whether a `seed` is given.
    pub seeded: bool,
}

impl Sampling {
    /// Reads the sampling members of a request body (a JSON object).
    pub fn of(request: &[u8]) -> Result<Sampling, serde_json::Error> {
        #[derive(serde::Deserialize)]
        struct Members {
            temperature: Option<f64>,
            seed: Option<serde::de::IgnoredAny>,
        }
        let m: Members = serde_json::from_slice(request)?;
        Ok(Sampling {
            temperature: m.temperature,
            seeded: m.seed.is_some(),
        })
    }

    /// Whether an honest replay gives the same answer: temperature 0, or a
    /// seed.
    pub fn deterministic(&self) -> bool {
        self.temperature == Some(0.0) || self.seeded
    }
}

/// What an answer says, whatever its form: per choice, its text and finish
/// reason, hashed (hex). A streamed and a whole answer with the same
/// content, or answers from two workers that differ only in ids and
/// timestamps, have the same content digest: what replicas are compared
/// by. `chunks` are a stream's chunk payloads, or a whole answer's body (in
/// one or more pieces).
pub fn content(stream: bool, chunks: &[impl AsRef<[u8]>]) -> String {
    content_salted(stream, chunks, None)
}

/// [`content`], salted for a sealed request: replicas of the request share
/// the salt, so their digests still compare.
pub fn content_salted(stream: bool, chunks: &[impl AsRef<[u8]>], salt: Option<&Salt>) -> String {
    let listing = content_listing(stream, chunks);
    match salt {
        None => sha256_hex(&listing),
        Some(s) => {
            let mut h = Sha256::new();
            h.update(SALTED_CONTENT_DOMAIN);
            h.update(s.0);
            h.update(&listing);
            hex::encode(h.finalize())
        }
    }
}

/// What [`content`] hashes: each choice's index, text and finish reason,
/// as JSON.
pub fn content_listing(stream: bool, chunks: &[impl AsRef<[u8]>]) -> Vec<u8> {
    let choices = choices(stream, chunks);
    let listed: Vec<(u64, &str, &str)> = choices
        .iter()
        .map(|(i, (t, f))| (*i, t.as_str(), f.as_str()))
        .collect();
    serde_json::to_vec(&listed).expect("strings always encode")
}

/// The text of an answer's first choice, whatever its form.
pub fn first_choice_text(stream: bool, chunks: &[impl AsRef<[u8]>]) -> String {
    choices(stream, chunks)
        .into_iter()
        .next()
        .map(|(_, (text, _))| text)
        .unwrap_or_default()
}

/// Per choice index, its text and finish reason.
///
/// Reads only the members it needs, borrowing the rest unparsed: this runs
/// over every chunk of every deterministic answer. Whatever has another
/// type than expected counts as absent, as a lookup in a parsed tree would:
/// a chunk that is not JSON adds nothing, a choice that is not an object
/// counts as choice 0 with no text, an index that is not a whole number as
/// 0, a text or finish reason that is not a string as none.
fn choices(
    stream: bool,
    chunks: &[impl AsRef<[u8]>],
) -> std::collections::BTreeMap<u64, (String, String)> {
    use serde_json::value::RawValue;

    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        choices: Option<&'a RawValue>,
    }
    #[derive(serde::Deserialize, Default)]
    struct Choice<'a> {
        #[serde(borrow)]
        index: Option<&'a RawValue>,
        #[serde(borrow)]
        delta: Option<&'a RawValue>,
        #[serde(borrow)]
        message: Option<&'a RawValue>,
        #[serde(borrow)]
        text: Option<&'a RawValue>,
        #[serde(borrow)]
        finish_reason: Option<&'a RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        content: Option<&'a RawValue>,
    }
    fn string(raw: Option<&RawValue>) -> Option<String> {
        raw.filter(|r| r.get().starts_with('"'))
            .and_then(|r| serde_json::from_str(r.get()).ok())
    }
    // Derived structs also read JSON arrays, by position; a tree lookup
    // finds no member in an array.
    fn object(json: &[u8]) -> bool {
        json.trim_ascii_start().starts_with(b"{")
    }
    fn message_content(raw: Option<&RawValue>) -> Option<String> {
        let raw = raw.filter(|r| object(r.get().as_bytes()))?;
        let message: Message = serde_json::from_str(raw.get()).ok()?;
        string(message.content)
    }

    let mut choices: std::collections::BTreeMap<u64, (String, String)> = Default::default();
    let mut read = |answer: &[u8]| {
        if !object(answer) {
            return;
        }
        let Ok(Answer {
            choices: Some(list),
        }) = serde_json::from_slice::<Answer>(answer)
        else {
            return;
        };
        let Ok(list) = serde_json::from_str::<Vec<&RawValue>>(list.get()) else {
            return;
        };
        for raw in list {
            let choice: Choice = if object(raw.get().as_bytes()) {
                serde_json::from_str(raw.get()).unwrap_or_default()
            } else {
                Choice::default()
            };
            let index = choice
                .index
                .and_then(|i| serde_json::from_str::<u64>(i.get()).ok())
                .unwrap_or(0);
            let text = if stream {
                message_content(choice.delta)
            } else {
                message_content(choice.message)
            }
            .or_else(|| string(choice.text));
            let entry = choices.entry(index).or_default();
            if let Some(t) = text {
                entry.0.push_str(&t);
            }
            if let Some(f) = string(choice.finish_reason) {
                entry.1 = f;
            }
        }
    };
    if stream {
        for c in chunks {
            read(c.as_ref());
        }
    } else {
        read(
            &chunks
                .iter()
                .map(AsRef::as_ref)
                .collect::<Vec<&[u8]>>()
                .concat(),
        );
    }
    choices
}

/// JSON with object members sorted by key and no whitespace; scalars as
/// serde_json writes them (a parsed number prints the same every time).
fn canonical(v: &serde_json::Value, out: &mut Vec<u8>) {
    const INFALLIBLE: &str = "writing JSON to memory cannot fail";
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect(INFALLIBLE);
                out.push(b':');
                canonical(&m[k], out);
            }
            out.push(b'}');
        }
        serde_json::Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(x, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect(INFALLIBLE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_whole_answer_hashes_its_content_not_its_layout_nor_the_clients_members() {
        let worker =
            br#"{"id":"a","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3}}"#;
        let delivered =
            br#"{ "cocoon": {"worker":"w"}, "usage": {"cost_nanoton": 9, "prompt_tokens": 3, "cost_breakdown": {"factors": []}},
            "choices": [{"message": {"content": "hi"}}], "id": "a" }"#;
        assert_eq!(whole_answer(worker), whole_answer(delivered));
        let altered =
            br#"{"id":"a","choices":[{"message":{"content":"ho"}}],"usage":{"prompt_tokens":3}}"#;
        assert_ne!(whole_answer(worker), whole_answer(altered));
        let more_usage =
            br#"{"id":"a","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":4}}"#;
        assert_ne!(whole_answer(worker), whole_answer(more_usage));
        assert_ne!(whole_answer(b"not json"), whole_answer(b"not jsom"));
    }

    #[test]
    fn content_is_text_and_finish_reason_whatever_the_form() {
        let stream: Vec<&[u8]> = vec![
            br#"{"id":"a","created":1,"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}"#,
            br#"{"id":"a","created":2,"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}"#,
        ];
        let whole: Vec<&[u8]> = vec![br#"{"id":"b","created":9,"choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}]}"#];
        assert_eq!(content(true, &stream), content(false, &whole));
        let cut: Vec<&[u8]> = vec![br#"{"id":"b","choices":[{"index":0,"message":{"content":"Hello"},"finish_reason":"length"}]}"#];
        assert_ne!(content(false, &whole), content(false, &cut));
        let other: Vec<&[u8]> = vec![br#"{"id":"b","choices":[{"index":0,"message":{"content":"Hellp"},"finish_reason":"stop"}]}"#];
        assert_ne!(content(false, &whole), content(false, &other));
    }

    /// The reading of `choices` before it borrowed: a lookup in a parsed
    /// tree. Workers of both versions must give the same content digest.
    fn choices_by_tree(stream: bool, chunks: &[&[u8]]) -> BTreeMap<u64, (String, String)> {
        let mut choices: BTreeMap<u64, (String, String)> = Default::default();
        let parsed: Vec<serde_json::Value> = if stream {
            chunks
                .iter()
                .filter_map(|c| serde_json::from_slice(c).ok())
                .collect()
        } else {
            serde_json::from_slice(&chunks.concat())
                .ok()
                .into_iter()
                .collect()
        };
        for v in &parsed {
            for choice in v["choices"].as_array().into_iter().flatten() {
                let member = if stream { "delta" } else { "message" };
                let text = choice[member]["content"]
                    .as_str()
                    .or(choice["text"].as_str());
                let entry = choices
                    .entry(choice["index"].as_u64().unwrap_or(0))
                    .or_default();
                if let Some(t) = text {
                    entry.0.push_str(t);
                }
                if let Some(f) = choice["finish_reason"].as_str() {
                    entry.1 = f.to_string();
                }
            }
        }
        choices
    }

    #[test]
    fn choices_read_as_a_parsed_tree_would_whatever_the_types() {
        let cases: Vec<(bool, Vec<&[u8]>)> = vec![
            (true, vec![
                br#"{"choices":[{"index":0,"delta":{"content":"a\"b\u00e9\n"}}]}"#,
                br#"{"choices":[{"index":1,"delta":{"content":"x"}},{"index":0,"delta":{"content":"c"},"finish_reason":"stop"}]}"#,
                br#" {"choices":[{"index":1,"delta":null,"text":"t","finish_reason":7}]}"#,
            ]),
            (true, vec![
                br#"{"choices":[5,"s",null,[1,2],{"index":"2","delta":{"content":["part"]}}]}"#,
                br#"{"choices":[{"index":2.0,"delta":"text","text":"fallback"}]}"#,
                br#"{"choices":[{"index":-1,"delta":{"content":null},"text":5}]}"#,
                br#"{"choices":[{"index":3,"delta":[{"content":"by position"}]}]}"#,
                br#"{"choices":{"index":0}}"#,
                br#"[[{"index":0,"delta":{"content":"array"}}]]"#,
                br#"not json"#,
                br#"{"choices":[{"index":0,"delta":{"content":"cut"}}]"#,
                br#"{"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"length"}],"extra":{"deep":[1,{"a":null}]}}"#,
                br#"{"choices":null}"#,
                br#"{}"#,
            ]),
            (false, vec![
                br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"Hel"#,
                br#"lo"},"finish_reason":"stop"},{"index":1,"text":"legacy"}]}"#,
            ]),
            (false, vec![br#"{"choices":[{"message":{"content":7},"text":"t"}]}"#]),
            (false, vec![br#"[{"choices":[]}]"#]),
            (false, vec![br#"{"choices":[{"delta":{"content":"streamed member in a whole answer"}}]}"#]),
        ];
        for (stream, chunks) in cases {
            assert_eq!(
                choices(stream, &chunks),
                choices_by_tree(stream, &chunks),
                "{:?}",
                chunks
                    .iter()
                    .map(|c| String::from_utf8_lossy(c))
                    .collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn a_stream_hashes_each_chunk_and_its_boundaries() {
        let digest = |chunks: &[&[u8]]| {
            let mut d = StreamDigest::default();
            for c in chunks {
                d.push(c);
            }
            d.finish()
        };
        let base = digest(&[b"{\"a\":1}", b"{\"b\":2}"]);
        assert_eq!(base, digest(&[b"{\"a\":1}", b"{\"b\":2}"]));
        assert_ne!(base, digest(&[b"{\"a\":1}{\"b\":2}"]));
        assert_ne!(base, digest(&[b"{\"a\":1}", b"{\"b\":3}"]));
        assert_ne!(base, digest(&[b"{\"a\":1}"]));
    }
}
