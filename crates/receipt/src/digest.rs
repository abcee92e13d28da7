//! The hashes a receipt signs: of the request as the engine ran it, and of
//! the answer as delivered.
//!
//! - A streamed answer: SHA-256 over a domain tag, then every chunk
//!   payload (the JSON of one SSE `data:` event, as the worker sent it) as
//!   a 4-byte big-endian length and its bytes. The client forwards the
//!   payloads byte for byte, so a saved stream hashes the same.
//! - A whole answer: SHA-256 over a domain tag and the answer's JSON in a
//!   canonical form (object members sorted, no whitespace), without the
//!   members the client adds after the worker (`cocoon`, and `cost_nanoton`
//!   in `usage`). A body that is not a JSON object is hashed as it is.

use sha2::{Digest, Sha256};

const STREAM_DOMAIN: &[u8] = b"cocoon/answer/stream/v1\0";
const WHOLE_DOMAIN: &[u8] = b"cocoon/answer/whole/v1\0";
const RAW_DOMAIN: &[u8] = b"cocoon/answer/raw/v1\0";

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
    let mut h = Sha256::new();
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut answer)) => {
            answer.remove("cocoon");
            if let Some(serde_json::Value::Object(usage)) = answer.get_mut("usage") {
                usage.remove("cost_nanoton");
            }
            let mut out = Vec::with_capacity(body.len());
            canonical(&serde_json::Value::Object(answer), &mut out);
            h.update(WHOLE_DOMAIN);
            h.update(&out);
        }
        _ => {
            h.update(RAW_DOMAIN);
            h.update(body);
        }
    }
    hex::encode(h.finalize())
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

    #[test]
    fn a_whole_answer_hashes_its_content_not_its_layout_nor_the_clients_members() {
        let worker =
            br#"{"id":"a","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3}}"#;
        let delivered =
            br#"{ "cocoon": {"worker":"w"}, "usage": {"cost_nanoton": 9, "prompt_tokens": 3},
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
