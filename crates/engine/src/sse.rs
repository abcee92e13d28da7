use bytes::{Buf, Bytes, BytesMut};

/// Incremental decoder of a server-sent-events stream that yields the data
/// of each event. Accepts `\n`, `\r\n` and `\r` line endings, ignores
/// comments and non-`data` fields, joins multi-line data with `\n`.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: BytesMut,
    data: Option<BytesMut>,
    /// A `\r` ended the previous line; a following `\n` belongs to it.
    after_cr: bool,
}

/// Largest single line accepted; a longer one means the peer is not
/// speaking SSE (or is hostile).
const MAX_LINE: usize = 16 * 1024 * 1024;

/// A line longer than the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server-sent event line exceeds {MAX_LINE} bytes")]
pub struct LineTooLong;

impl SseDecoder {
    /// Feeds bytes; returns the data of every event completed by them.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, LineTooLong> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        loop {
            if self.after_cr && !self.buf.is_empty() {
                if self.buf[0] == b'\n' {
                    self.buf.advance(1);
                }
                self.after_cr = false;
            }
            let Some(end) = self.buf.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if self.buf.len() > MAX_LINE {
                    return Err(LineTooLong);
                }
                break;
            };
            let line = self.buf.split_to(end).freeze();
            let terminator = self.buf[0];
            self.buf.advance(1);
            self.after_cr = terminator == b'\r';
            if let Some(data) = self.line(line) {
                events.push(data);
            }
        }
        Ok(events)
    }

    fn line(&mut self, line: Bytes) -> Option<Bytes> {
        if line.is_empty() {
            return self.data.take().map(BytesMut::freeze);
        }
        if line[0] == b':' {
            return None;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let mut v = line.slice(i + 1..);
                if v.first() == Some(&b' ') {
                    v.advance(1);
                }
                (line.slice(..i), v)
            }
            None => (line.clone(), Bytes::new()),
        };
        if &field[..] == b"data" {
            match &mut self.data {
                Some(d) => {
                    d.extend_from_slice(b"\n");
                    d.extend_from_slice(&value);
                }
                None => self.data = Some(BytesMut::from(&value[..])),
            }
        }
        None
    }

    /// At end of stream: the data of an event that was not terminated by a
    /// blank line, if any.
    pub fn finish(&mut self) -> Option<Bytes> {
        if !self.buf.is_empty() {
            let rest = self.buf.split().freeze();
            let _ = self.line(rest);
        }
        self.data.take().map(BytesMut::freeze)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[&[u8]]) -> Vec<String> {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        for part in input {
            for e in d.push(part).unwrap() {
                out.push(String::from_utf8(e.to_vec()).unwrap());
            }
        }
        if let Some(e) = d.finish() {
            out.push(String::from_utf8(e.to_vec()).unwrap());
        }
        out
    }

    #[test]
    fn decodes_split_events_and_line_endings() {
        assert_eq!(
            all(&[b"data: {\"a\":1}\n\ndata: [DONE]\n\n"]),
            ["{\"a\":1}", "[DONE]"]
        );
        assert_eq!(all(&[b"data: x\r\n\r\n", b"data:y\r\r"]), ["x", "y"]);
        assert_eq!(all(&[b"da", b"ta: hel", b"lo\n", b"\n"]), ["hello"]);
        assert_eq!(all(&[b"data: a\r", b"\n\r", b"\n"]), ["a"]);
        assert_eq!(
            all(&[b": keepalive\n\nevent: x\ndata: 1\ndata: 2\n\n"]),
            ["1\n2"]
        );
        assert_eq!(
            all(&[b"data: tail-without-blank-line"]),
            ["tail-without-blank-line"]
        );
    }

    #[test]
    fn refuses_endless_lines() {
        let mut d = SseDecoder::default();
        let big = vec![b'a'; MAX_LINE + 1];
        assert_eq!(d.push(&big), Err(LineTooLong));
    }
}
