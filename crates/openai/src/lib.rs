//! The OpenAI wire format, in one home: the answers, streamed chunks, usage
//! objects, model lists and error bodies that Cocoon writes and reads. The
//! client (which strictly validates requests and shapes errors) and the
//! engines (which write answers and read an upstream's usage) use these
//! types; no OpenAI JSON is assembled by hand anywhere else.

mod answer;
mod error;
mod models;
mod receipt;
mod usage;

pub use answer::{
    answer_object, chunk_object, Answer, AnswerChoice, Chunk, ChunkChoice, Delta, Message,
};
pub use error::{ErrorBody, ErrorObject};
pub use models::{CoefficientSpread, Model, ModelList, ModelMarket, ModelReputation, ModelTrust};
pub use receipt::{stamp_answer, Receipt};
pub use usage::{CompletionTokensDetails, PromptTokensDetails, UsageObject};

/// The `data: ...` framing of one server-sent event.
pub fn sse_event(payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(payload.len() + 8);
    b.extend_from_slice(b"data: ");
    b.extend_from_slice(payload);
    b.extend_from_slice(b"\n\n");
    b
}

/// The event that ends a stream.
pub const SSE_DONE: &[u8] = b"data: [DONE]\n\n";
