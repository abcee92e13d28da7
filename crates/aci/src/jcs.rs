//! The JSON Canonicalization Scheme (RFC 8785) for ACI's documents.
//!
//! Members are sorted by their names' UTF-16 code units, nothing is
//! indented, and strings are escaped as ECMAScript's `JSON.stringify`
//! escapes them (which is how `serde_json` escapes them too). ACI's
//! documents hold integers only; a fractional number is refused rather
//! than risk a form another implementation would not reproduce.

use serde_json::Value;

/// A value with no canonical form here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot canonicalize the number {0}: ACI documents hold integers only")]
pub struct JcsError(pub String);

/// The JCS bytes of `value`.
pub fn canonical(value: &Value) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out)?;
    Ok(out)
}

/// The JCS bytes of any serializable document.
pub fn canonical_of<T: serde::Serialize>(doc: &T) -> Result<Vec<u8>, JcsError> {
    let value = serde_json::to_value(doc).map_err(|e| JcsError(e.to_string()))?;
    canonical(&value)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), JcsError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut names: Vec<&String> = members.keys().collect();
            names.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (i, name) in names.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                write(&members[name], out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) -> Result<(), JcsError> {
    if let Some(i) = n.as_i64() {
        out.extend_from_slice(i.to_string().as_bytes());
    } else if let Some(u) = n.as_u64() {
        out.extend_from_slice(u.to_string().as_bytes());
    } else {
        // ECMAScript prints an integral double below 1e21 as an integer.
        match n.as_f64() {
            Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => {
                out.extend_from_slice(format!("{}", f as i64).as_bytes())
            }
            _ => return Err(JcsError(n.to_string())),
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_sort_by_utf16_code_units_and_strings_escape_as_ecmascript() {
        // RFC 8785 §3.2.3's example: U+1F600 is the surrogates D83D DE00 in
        // UTF-16, so it sorts before U+FB33 (it would after, by code point).
        let v = json!({"\u{20ac}": 1, "\u{1f600}": 2, "\r": 3, "1": 4, "\u{80}": 5, "\u{f6}": 6, "\u{fb33}": 7});
        let got = String::from_utf8(canonical(&v).unwrap()).unwrap();
        assert_eq!(
            got,
            "{\"\\r\":3,\"1\":4,\"\u{80}\":5,\"\u{f6}\":6,\"\u{20ac}\":1,\"\u{1f600}\":2,\"\u{fb33}\":7}"
        );
        let v = json!({"s": "\u{1}\u{1f}\"\\/\u{7f}é\n"});
        assert_eq!(
            String::from_utf8(canonical(&v).unwrap()).unwrap(),
            "{\"s\":\"\\u0001\\u001f\\\"\\\\/\u{7f}é\\n\"}"
        );
    }

    #[test]
    fn integers_print_plainly_and_fractions_are_refused() {
        let v: Value =
            serde_json::from_str(r#"{"a":[1,-2,18446744073709551615,1e2,1.5]}"#).unwrap();
        assert!(canonical(&v).is_err());
        let v: Value = serde_json::from_str(r#"{"a":[1,-2,18446744073709551615,1e2]}"#).unwrap();
        assert_eq!(
            canonical(&v).unwrap(),
            br#"{"a":[1,-2,18446744073709551615,100]}"#
        );
    }
}
