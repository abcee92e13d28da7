//! What an engine sends back: a streamed answer's server-sent events, or a
//! whole answer's JSON.

use bytes::Bytes;
use cocoon_engine::{read_answer, EngineEvent, StreamReader};

/// A streamed answer fed in pieces of the selector's size (1 to 64 bytes),
/// then read whole as an answer that is not streamed. Every stream ends in
/// exactly one verdict: done or failed, and nothing after it.
pub(crate) fn engine_stream(data: &[u8]) -> bool {
    let Some((select, rest)) = crate::selector(data) else {
        return false;
    };
    let piece = usize::from(select % 64) + 1;
    let mut reader = StreamReader::new("served");
    let mut events = Vec::new();
    for chunk in rest.chunks(piece) {
        reader.feed(chunk);
        events.extend(std::iter::from_fn(|| reader.next_event()));
    }
    reader.end();
    events.extend(std::iter::from_fn(|| reader.next_event()));
    assert!(reader.is_over(), "the stream did not end");
    let verdicts = events
        .iter()
        .filter(|e| !matches!(e, Ok(EngineEvent::Chunk { .. })))
        .count();
    assert_eq!(verdicts, 1, "one verdict per stream: {events:?}");
    assert!(
        !matches!(events.last(), Some(Ok(EngineEvent::Chunk { .. }))),
        "the verdict comes last"
    );
    let done = matches!(events.last(), Some(Ok(EngineEvent::Done(_))));
    let _ = read_answer(Bytes::copy_from_slice(rest), "served");
    done
}
