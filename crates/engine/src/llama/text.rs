//! Turning generated token bytes into streamed text: UTF-8 that is never
//! split inside a character, and stop sequences that never leak.

/// Collects token bytes and releases the longest complete UTF-8 prefix, so
/// a character split across tokens is held until its last byte arrives.
#[derive(Debug, Default)]
pub(crate) struct Utf8Accumulator {
    pending: Vec<u8>,
}

impl Utf8Accumulator {
    /// Adds bytes; returns the text that is now complete.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // SAFETY of the unwrap: the prefix was just validated.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // Incomplete character at the end: wait for more.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        // Bytes that can never be UTF-8: replace, go on.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// At the end. Bytes still pending are the start of a character that
    /// generation stopped before completing (max_tokens cut it): not text,
    /// so they are dropped rather than shown as U+FFFD.
    pub(crate) fn finish(&mut self) {
        self.pending.clear();
    }
}

/// Finds stop sequences in generated text. Text that could still turn into
/// a stop sequence is held back, so the app never sees a partial stop.
#[derive(Debug, Default)]
pub(crate) struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

/// What to do with new text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Matched {
    /// Emit this text and continue.
    Continue(String),
    /// Emit this text, then stop: a stop sequence was found.
    Stop(String),
}

impl StopMatcher {
    pub(crate) fn new(stops: Vec<String>) -> Self {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    pub(crate) fn push(&mut self, text: &str) -> Matched {
        if self.stops.is_empty() {
            return Matched::Continue(text.to_string());
        }
        self.held.push_str(text);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let out = self.held[..at].to_string();
            self.held.clear();
            return Matched::Stop(out);
        }
        // Hold back the longest suffix that is a prefix of some stop.
        let mut keep = 0;
        for stop in &self.stops {
            for (i, _) in stop.char_indices().skip(1) {
                if self.held.ends_with(&stop[..i]) {
                    keep = keep.max(i);
                }
            }
        }
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        Matched::Continue(out)
    }

    /// At the end of generation: text held back that turned out not to be
    /// a stop.
    pub(crate) fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multibyte_characters_split_across_tokens_survive() {
        let text = "héllo 世界 🙂";
        let bytes = text.as_bytes();
        let mut acc = Utf8Accumulator::default();
        let mut out = String::new();
        for b in bytes {
            let piece = acc.push(std::slice::from_ref(b));
            assert!(!piece.contains('\u{fffd}'));
            out.push_str(&piece);
        }
        acc.finish();
        assert_eq!(out, text);
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut acc = Utf8Accumulator::default();
        assert_eq!(acc.push(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(acc.push(b"\xe4\xb8"), "", "an incomplete character is held");
        assert_eq!(acc.push(b"\xad"), "中");
        assert_eq!(acc.push(b"\xe4\xb8"), "");
        acc.finish();
        assert_eq!(
            acc.push(b"ok"),
            "ok",
            "a character cut by the end of generation is dropped"
        );
    }

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            match m.push(p) {
                Matched::Continue(s) => out.push_str(&s),
                Matched::Stop(s) => {
                    out.push_str(&s);
                    return (out, true);
                }
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn stop_sequences_end_the_text_without_leaking() {
        assert_eq!(
            run(&["END"], &["hello E", "N", "D more"]),
            ("hello ".into(), true)
        );
        assert_eq!(
            run(&["\n\n"], &["a\n", "b\n", "\nc"]),
            ("a\nb".into(), true)
        );
        assert_eq!(run(&["stop"], &["sto", "ck"]), ("stock".into(), false));
        assert_eq!(run(&["xy", "abc"], &["ab", "cxy"]), ("".into(), true));
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
        assert_eq!(run(&["世界"], &["你好世", "界!"]), ("你好".into(), true));
    }
}
