//! Documents people send the bot: text, markdown and PDF (its text, with
//! pdf-extract), split into parts that fit the model's context.

/// Why a document cannot be summarised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Bigger than the bot downloads.
    #[error("{name} is {size} bytes; I read documents up to {max} bytes")]
    TooLarge {
        /// The file's name.
        name: String,
        /// Its size.
        size: u64,
        /// The most read.
        max: u64,
    },
    /// Not a kind the bot reads.
    #[error("I can read text, markdown and PDF documents; {name} is {kind}")]
    Unsupported {
        /// The file's name.
        name: String,
        /// What it seems to be.
        kind: String,
    },
    /// Claims to be text but is not.
    #[error("{name} is not text (it is not UTF-8, or holds binary data); send it as a text, markdown or PDF file")]
    NotText {
        /// The file's name.
        name: String,
    },
    /// A PDF whose text could not be read.
    #[error("I could not read the text of {name}: {reason}")]
    Pdf {
        /// The file's name.
        name: String,
        /// What failed.
        reason: String,
    },
    /// Nothing to summarise.
    #[error("{name} has no text to summarise (a scanned PDF holds images, not text)")]
    Empty {
        /// The file's name.
        name: String,
    },
    /// Longer than the bot summarises, even in parts.
    #[error("{name} is about {tokens} tokens; the model reads about {part_tokens} at a time and I summarise at most {max_parts} parts ({max_tokens} tokens). Send a shorter document, or a part of it")]
    TooLong {
        /// The file's name.
        name: String,
        /// Its estimated tokens.
        tokens: usize,
        /// Tokens per part.
        part_tokens: usize,
        /// Parts summarised at most.
        max_parts: usize,
        /// Their tokens.
        max_tokens: usize,
    },
}

/// Characters per token, roughly, for English text: used to estimate
/// what fits the model's context.
pub const CHARS_PER_TOKEN: usize = 4;

/// Whether a document is a PDF, by its type, name or first bytes.
pub fn is_pdf(name: &str, mime: Option<&str>, bytes: &[u8]) -> bool {
    mime == Some("application/pdf")
        || name.to_ascii_lowercase().ends_with(".pdf")
        || bytes.starts_with(b"%PDF-")
}

/// A document's text, read according to its kind.
pub fn extract(name: &str, mime: Option<&str>, bytes: &[u8]) -> Result<String, DocumentError> {
    let lower = name.to_ascii_lowercase();
    let text = if is_pdf(name, mime, bytes) {
        pdf_text(name, bytes)?
    } else if is_textual(&lower, mime) {
        let text =
            std::str::from_utf8(bytes).map_err(|_| DocumentError::NotText { name: name.into() })?;
        if text.contains('\0') {
            return Err(DocumentError::NotText { name: name.into() });
        }
        text.to_string()
    } else {
        return Err(DocumentError::Unsupported {
            name: name.into(),
            kind: mime.unwrap_or("of an unknown kind").to_string(),
        });
    };
    from_text(name, &text)
}

/// Extracted text, tidied; refused when there is none.
pub fn from_text(name: &str, text: &str) -> Result<String, DocumentError> {
    let text = tidy(text);
    if text.trim().is_empty() {
        return Err(DocumentError::Empty { name: name.into() });
    }
    Ok(text)
}

/// The text of a PDF read by `reader` (a program taking the PDF on its
/// standard input and writing the text), in a process of its own: a file
/// that overflows the extractor's stack or memory ends that process, not
/// the bot, and one that takes longer than `limit` is killed.
pub async fn pdf_text_isolated(
    name: &str,
    reader: &(std::path::PathBuf, Vec<String>),
    bytes: &[u8],
    limit: std::time::Duration,
) -> Result<String, DocumentError> {
    use tokio::io::AsyncWriteExt;
    let pdf = |reason: String| DocumentError::Pdf {
        name: name.into(),
        reason,
    };
    let mut child = tokio::process::Command::new(&reader.0)
        .args(&reader.1)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| pdf(format!("the PDF reader did not start: {e}")))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| pdf("the PDF reader has no input".into()))?;
    let input = bytes.to_vec();
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
    });
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| pdf(format!("reading it took longer than {} s", limit.as_secs())))?
        .map_err(|e| pdf(e.to_string()))?;
    feed.abort();
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(pdf(if why.is_empty() {
            "the file is malformed".into()
        } else {
            why
        }));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What the PDF reader process runs: the text of the PDF on standard
/// input, to standard output (`cocoon read-pdf`).
pub fn read_pdf_stdio() -> Result<(), String> {
    use std::io::{Read, Write};
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    let text = pdf_text("the PDF", &bytes).map_err(|e| e.to_string())?;
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())
}

fn is_textual(lower_name: &str, mime: Option<&str>) -> bool {
    const EXTENSIONS: [&str; 7] = [".txt", ".md", ".markdown", ".csv", ".json", ".log", ".rst"];
    mime.is_some_and(|m| m.starts_with("text/") || m == "application/json")
        || EXTENSIONS.iter().any(|e| lower_name.ends_with(e))
}

/// The text of a PDF. pdf-extract can panic on a malformed file: that is
/// caught and reported as unreadable, never taken down with the bot.
fn pdf_text(name: &str, bytes: &[u8]) -> Result<String, DocumentError> {
    let pdf = |reason: String| DocumentError::Pdf {
        name: name.into(),
        reason,
    };
    match std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(bytes)) {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(e)) => Err(pdf(e.to_string())),
        Err(_) => Err(pdf("the file is malformed".into())),
    }
}

/// Collapses runs of blank lines and trailing spaces (PDF text is full of
/// them); the words are untouched.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_string()
}

/// Splits `text` into parts of at most `part_chars` characters, at
/// paragraph, then sentence, then word boundaries; refuses more than
/// `max_parts`.
pub fn parts(
    name: &str,
    text: &str,
    part_chars: usize,
    max_parts: usize,
) -> Result<Vec<String>, DocumentError> {
    let part_chars = part_chars.max(200);
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for piece in pieces(text, part_chars) {
        if !current.is_empty() && current.chars().count() + piece.chars().count() > part_chars {
            out.push(std::mem::take(&mut current));
        }
        current.push_str(piece);
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    if out.len() > max_parts {
        return Err(DocumentError::TooLong {
            name: name.into(),
            tokens: text.chars().count() / CHARS_PER_TOKEN,
            part_tokens: part_chars / CHARS_PER_TOKEN,
            max_parts,
            max_tokens: part_chars / CHARS_PER_TOKEN * max_parts,
        });
    }
    Ok(out)
}

/// Paragraphs (with their line break); a paragraph longer than a part is
/// cut at sentence ends, and a sentence longer than a part at spaces.
fn pieces(text: &str, part_chars: usize) -> Vec<&str> {
    let mut out = Vec::new();
    for para in text.split_inclusive('\n') {
        if para.chars().count() <= part_chars {
            out.push(para);
            continue;
        }
        for sentence in para.split_inclusive(". ") {
            if sentence.chars().count() <= part_chars {
                out.push(sentence);
                continue;
            }
            for word in sentence.split_inclusive(' ') {
                if word.chars().count() <= part_chars {
                    out.push(word);
                } else {
                    // Text without spaces: cut where the part ends.
                    out.extend(char_chunks(word, part_chars));
                }
            }
        }
    }
    out
}

/// `text` in pieces of at most `n` characters.
fn char_chunks(text: &str, n: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (count, (i, _)) in text.char_indices().enumerate() {
        if count > 0 && count % n == 0 {
            out.push(&text[start..i]);
            start = i;
        }
    }
    out.push(&text[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_markdown_and_what_is_refused() {
        assert_eq!(
            extract("a.md", None, b"# Title\n\n\n\nBody  \n").unwrap(),
            "# Title\n\nBody"
        );
        assert_eq!(extract("notes", Some("text/plain"), b"hi").unwrap(), "hi");
        assert!(matches!(
            extract("a.txt", None, &[0xff, 0xfe, 0]),
            Err(DocumentError::NotText { .. })
        ));
        assert!(matches!(
            extract("a.txt", None, b"a\0b"),
            Err(DocumentError::NotText { .. })
        ));
        assert!(matches!(
            extract("photo.jpg", Some("image/jpeg"), b"\xff\xd8"),
            Err(DocumentError::Unsupported { .. })
        ));
        assert!(matches!(
            extract("a.txt", None, b"  \n "),
            Err(DocumentError::Empty { .. })
        ));
        let broken = extract("x.pdf", None, b"%PDF-1.4 not really");
        assert!(
            matches!(broken, Err(DocumentError::Pdf { .. })),
            "{broken:?}"
        );
    }

    /// A real producer's PDF (Chromium's printer; see tests/fixtures).
    #[test]
    fn a_pdf_has_its_text_read() {
        let pdf = include_bytes!("../tests/fixtures/supplier-review.pdf");
        let text = extract("supplier-review.pdf", Some("application/pdf"), pdf).unwrap();
        for words in [
            "Quarterly supplier review",
            "Northwind Metals delivered 96 percent",
            "A pilot of a shared forecast",
        ] {
            assert!(text.contains(words), "{words:?} not in {text:?}");
        }
    }

    #[test]
    fn long_text_is_split_at_boundaries_and_too_long_is_refused() {
        let para = "One sentence here. Another one there. ".repeat(20);
        let text = format!("{para}\n{para}\n{para}");
        let p = parts("doc", &text, 1000, 10).unwrap();
        assert!(p.len() >= 3, "{}", p.len());
        assert!(p.iter().all(|x| x.chars().count() <= 1000));
        assert_eq!(p.concat(), text, "nothing is lost or repeated");
        let solid = "é".repeat(2500);
        let p = parts("doc", &solid, 1000, 10).unwrap();
        assert_eq!(p.len(), 3);
        assert!(p.iter().all(|x| x.chars().count() <= 1000));
        assert_eq!(p.concat(), solid);
        let refused = parts("doc", &text, 300, 2).unwrap_err();
        assert!(refused.to_string().contains("at most 2 parts"), "{refused}");
    }
}
