//! Where v2's encrypted fields live (spec §5), and sealing or opening all of
//! them in a body.

use serde_json::{Map, Value};

use super::{Context, E2eeError, Endpoint};

/// Which body the fields are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The request: message contents, or the prompt.
    Request,
    /// A whole answer: `choices.{i}.message` (or `.text`).
    Response,
    /// One SSE chunk: `choices.{i}.delta` (or `.text`).
    Stream,
}

/// Opens one field: `(sealed hex, associated data)` to plaintext.
pub type FieldOpener<'a> = dyn Fn(&str, &[u8]) -> Result<Vec<u8>, E2eeError> + 'a;

type Visit<'a> = dyn FnMut(&str, &mut Value) -> Result<(), E2eeError> + 'a;

/// Calls `visit` with the path and value of every field location present.
/// `whole_content`: a structured request content is one field (when
/// sealing) rather than one per part (when opening, the parts are the
/// locations a client may have used).
fn visit(
    body: &mut Value,
    endpoint: Endpoint,
    direction: Direction,
    whole_content: bool,
    visit: &mut Visit<'_>,
) -> Result<(), E2eeError> {
    match (direction, endpoint) {
        (Direction::Request, Endpoint::Chat) => {
            let Some(messages) = body.get_mut("messages").and_then(Value::as_array_mut) else {
                return Ok(());
            };
            for (m, message) in messages.iter_mut().enumerate() {
                let Some(content) = message.get_mut("content") else {
                    continue;
                };
                let path = format!("messages.{m}.content");
                match content {
                    Value::Array(parts) if !whole_content => {
                        for (c, part) in parts.iter_mut().enumerate() {
                            visit_part(part, &format!("{path}.{c}"), visit)?;
                        }
                    }
                    Value::String(_) | Value::Array(_) => visit(&path, content)?,
                    _ => {}
                }
            }
        }
        (Direction::Request, Endpoint::Completions) => match body.get_mut("prompt") {
            Some(prompt @ Value::String(_)) => visit("prompt", prompt)?,
            Some(Value::Array(items)) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if item.is_string() {
                        visit(&format!("prompt.{i}"), item)?;
                    }
                }
            }
            _ => {}
        },
        (_, endpoint) => visit_choices(body, endpoint, direction, visit)?,
    }
    Ok(())
}

fn visit_part(part: &mut Value, path: &str, visit: &mut Visit<'_>) -> Result<(), E2eeError> {
    let (outer, inner) = match part.get("type").and_then(Value::as_str) {
        Some("text") => ("text", None),
        Some("image_url") => ("image_url", Some("url")),
        Some("input_audio") => ("input_audio", Some("data")),
        _ => return Ok(()),
    };
    let Some(value) = part.get_mut(outer) else {
        return Ok(());
    };
    match inner {
        None if value.is_string() => visit(&format!("{path}.{outer}"), value),
        Some(inner) => match value.get_mut(inner) {
            Some(v) if v.is_string() => visit(&format!("{path}.{outer}.{inner}"), v),
            _ => Ok(()),
        },
        None => Ok(()),
    }
}

fn visit_choices(
    body: &mut Value,
    endpoint: Endpoint,
    direction: Direction,
    visit: &mut Visit<'_>,
) -> Result<(), E2eeError> {
    let Some(choices) = body.get_mut("choices").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    for (position, choice) in choices.iter_mut().enumerate() {
        let index = choice
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let Some(choice) = choice.as_object_mut() else {
            continue;
        };
        if endpoint == Endpoint::Completions {
            generated(choice, "text", &format!("choices.{index}"), visit)?;
            continue;
        }
        let member = if direction == Direction::Stream {
            "delta"
        } else {
            "message"
        };
        let Some(Value::Object(message)) = choice.get_mut(member) else {
            continue;
        };
        // An empty delta is sealed too (the specification allows dropping
        // it): the app then restores exactly the chunk the worker sent,
        // which the worker's receipt hashes.
        let path = format!("choices.{index}.{member}");
        for name in ["content", "reasoning", "reasoning_content"] {
            generated(message, name, &path, visit)?;
        }
        if direction == Direction::Response {
            if let Some(Value::Object(audio)) = message.get_mut("audio") {
                generated(audio, "data", &format!("{path}.audio"), visit)?;
            }
        }
    }
    Ok(())
}

/// A generated field: a string is a location, `null` or absent is nothing,
/// anything else cannot be encrypted.
fn generated(
    container: &mut Map<String, Value>,
    name: &str,
    path: &str,
    visit: &mut Visit<'_>,
) -> Result<(), E2eeError> {
    match container.get_mut(name) {
        None | Some(Value::Null) => Ok(()),
        Some(v @ Value::String(_)) => visit(&format!("{path}.{name}"), v),
        Some(_) => Err(E2eeError::EncryptionFailed(format!(
            "{path}.{name} is neither a string nor null"
        ))),
    }
}

/// Seals every field location of `body` to `recipient`; `id` is the
/// response's id for answers (ignored for requests). Returns how many.
pub fn seal_fields(
    body: &mut Value,
    endpoint: Endpoint,
    direction: Direction,
    ctx: &Context,
    recipient: &[u8; 32],
    id: &str,
) -> Result<usize, E2eeError> {
    let mut sealed = 0;
    visit(body, endpoint, direction, true, &mut |path, value| {
        let plaintext = match &*value {
            Value::String(s) => s.clone().into_bytes(),
            other => {
                serde_json::to_vec(other).map_err(|e| E2eeError::EncryptionFailed(e.to_string()))?
            }
        };
        let aad = match direction {
            Direction::Request => ctx.request_aad(path),
            _ => ctx.response_aad(id, path),
        };
        *value = Value::String(super::seal(recipient, &plaintext, &aad)?);
        sealed += 1;
        Ok(())
    })?;
    Ok(sealed)
}

/// Opens every field location of `body` with `open(field_hex, aad)`: all
/// of them must open. A whole request content that opens to a JSON array is
/// restored as structured content. Returns how many were opened.
pub fn open_fields(
    body: &mut Value,
    endpoint: Endpoint,
    direction: Direction,
    ctx: &Context,
    id: &str,
    open: &FieldOpener<'_>,
) -> Result<usize, E2eeError> {
    let mut opened = 0;
    visit(body, endpoint, direction, false, &mut |path, value| {
        let Value::String(field) = value else {
            return Err(E2eeError::DecryptionFailed(format!(
                "{path} is not a sealed string"
            )));
        };
        let aad = match direction {
            Direction::Request => ctx.request_aad(path),
            _ => ctx.response_aad(id, path),
        };
        let plain = open(field, &aad).map_err(|e| match e {
            E2eeError::DecryptionFailed(why) => {
                E2eeError::DecryptionFailed(format!("{path}: {why}"))
            }
            other => other,
        })?;
        let text = String::from_utf8(plain).map_err(|_| {
            E2eeError::DecryptionFailed(format!("{path} decrypted to bytes that are not UTF-8"))
        })?;
        let whole_content = direction == Direction::Request
            && path.starts_with("messages.")
            && path.ends_with(".content");
        *value = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(items)) if whole_content => Value::Array(items),
            _ => Value::String(text),
        };
        opened += 1;
        Ok(())
    })?;
    Ok(opened)
}
