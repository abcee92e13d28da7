//! Telegram Mini App sign-in: `Authorization: tma <initData>`, checked as
//! Telegram documents it ("Validating data received via the Mini App"):
//!
//! - the data-check-string is every field but `hash`, decoded, as
//!   `key=value`, sorted by key and joined with `\n`;
//! - the secret key is HMAC-SHA-256 of the bot token under the key
//!   `"WebAppData"`;
//! - `hash` is the hex HMAC-SHA-256 of the data-check-string under the
//!   secret key;
//! - `auth_date` (Unix seconds) must be recent: here, no older than a day.
//!
//! Whoever holds the bot token can sign such data: the bot does, for the
//! users who write to it, so a user has one budget in the bot and the app.

use ring::hmac;

/// How old `auth_date` may be.
pub const MAX_AGE_SECS: u64 = 86_400;
/// How far in the future `auth_date` may be (clock skew).
const MAX_SKEW_SECS: u64 = 300;

/// A Telegram user id: the anchor of a user's limits, nothing more (no
/// name or content is kept with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TelegramUserId(pub i64);

impl std::fmt::Display for TelegramUserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why initData was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitDataError {
    /// A field is missing.
    #[error("Telegram initData has no {0:?} field")]
    Missing(&'static str),
    /// A field appears twice.
    #[error("Telegram initData has the field {0:?} twice")]
    Repeated(String),
    /// `hash` is not 64 hex digits.
    #[error("Telegram initData's hash is not 64 hex digits: {0:?}")]
    HashFormat(String),
    /// The HMAC does not match: not signed with this bot's token.
    #[error("Telegram initData's hash does not match its fields under this bot's token: forged, altered, or signed for another bot")]
    Forged,
    /// `auth_date` is not a number.
    #[error("Telegram initData's auth_date is not Unix seconds: {0:?}")]
    AuthDate(String),
    /// `auth_date` is too old.
    #[error("Telegram initData is stale: signed {age_secs} s ago, more than the {max} s accepted; reopen the app")]
    Stale {
        /// Its age.
        age_secs: u64,
        /// The most accepted.
        max: u64,
    },
    /// `auth_date` is in the future.
    #[error("Telegram initData's auth_date is {ahead_secs} s in the future")]
    Future {
        /// How far ahead.
        ahead_secs: u64,
    },
    /// `user` is not the JSON object Telegram sends, with an integer id.
    #[error("Telegram initData's user field is not a JSON object with an integer id: {0}")]
    User(String),
}

/// Verifies (and, for the bot, signs) initData under one bot's token.
#[derive(Clone)]
pub struct InitDataKey {
    key: hmac::Key,
}

impl std::fmt::Debug for InitDataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InitDataKey(..)")
    }
}

impl InitDataKey {
    /// The key derived from a bot token.
    pub fn from_bot_token(token: &str) -> InitDataKey {
        let derive = hmac::Key::new(hmac::HMAC_SHA256, b"WebAppData");
        let secret = hmac::sign(&derive, token.trim().as_bytes());
        InitDataKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_ref()),
        }
    }

    /// Checks `init_data` (the raw query string) at `now` (Unix seconds)
    /// and returns the user it names.
    pub fn verify(&self, init_data: &str, now: u64) -> Result<TelegramUserId, InitDataError> {
        let mut fields: Vec<(String, String)> = Vec::new();
        let mut hash = None;
        for (k, v) in form_urlencoded::parse(init_data.trim().as_bytes()) {
            if k == "hash" {
                if hash.replace(v.into_owned()).is_some() {
                    return Err(InitDataError::Repeated("hash".into()));
                }
                continue;
            }
            if fields.iter().any(|(seen, _)| *seen == k) {
                return Err(InitDataError::Repeated(k.into_owned()));
            }
            fields.push((k.into_owned(), v.into_owned()));
        }
        let hash = hash.ok_or(InitDataError::Missing("hash"))?;
        let tag = decode_hex32(&hash).ok_or_else(|| InitDataError::HashFormat(hash.clone()))?;
        fields.sort();
        hmac::verify(&self.key, check_string(&fields).as_bytes(), &tag)
            .map_err(|_| InitDataError::Forged)?;
        let field = |name: &'static str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .ok_or(InitDataError::Missing(name))
        };
        let auth_date = field("auth_date")?;
        let signed: u64 = auth_date
            .parse()
            .map_err(|_| InitDataError::AuthDate(auth_date.to_string()))?;
        if signed > now + MAX_SKEW_SECS {
            return Err(InitDataError::Future {
                ahead_secs: signed - now,
            });
        }
        if now.saturating_sub(signed) > MAX_AGE_SECS {
            return Err(InitDataError::Stale {
                age_secs: now - signed,
                max: MAX_AGE_SECS,
            });
        }
        user_id(field("user")?)
    }

    /// initData for `user` signed at `auth_date`, as Telegram would hand
    /// it to the app: what the bot sends on behalf of a user who wrote to
    /// it (it holds the same token).
    pub fn sign(&self, user: TelegramUserId, auth_date: u64) -> String {
        let mut fields = vec![
            ("auth_date".to_string(), auth_date.to_string()),
            ("user".to_string(), format!("{{\"id\":{}}}", user.0)),
        ];
        fields.sort();
        let tag = hmac::sign(&self.key, check_string(&fields).as_bytes());
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &fields {
            out.append_pair(k, v);
        }
        out.append_pair("hash", &hex(tag.as_ref()));
        out.finish()
    }
}

/// `key=value` lines, sorted by key (the caller sorts).
fn check_string(sorted: &[(String, String)]) -> String {
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn user_id(user: &str) -> Result<TelegramUserId, InitDataError> {
    let v: serde_json::Value =
        serde_json::from_str(user).map_err(|e| InitDataError::User(e.to_string()))?;
    v.get("id")
        .and_then(serde_json::Value::as_i64)
        .map(TelegramUserId)
        .ok_or_else(|| InitDataError::User(format!("{user:.80}")))
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "5768337691:AAH5YkoiEuPk8-FZa32hStHTqXiLPtAEhx8";

    /// Computed independently with Python's hmac and hashlib from
    /// Telegram's documented algorithm (see the module docs):
    /// ```text
    /// secret = hmac.new(b"WebAppData", TOKEN.encode(), sha256).digest()
    /// dcs = "auth_date=1733580000\nquery_id=AAHdF6IQAAAAAN0XohDhrOrc\nuser=" + USER
    /// hmac.new(secret, dcs.encode(), sha256).hexdigest()
    /// ```
    const USER: &str = r#"{"id":279058397,"first_name":"Vladislav","last_name":"Kibenko","username":"vdkfrost","language_code":"ru","is_premium":true,"allows_write_to_pm":true}"#;
    const VECTOR_HASH: &str = "48b3e1c3ce38843c88f24fa88ccbf40ac1127f48daed15244a46fc81a850885b";
    const AUTH_DATE: u64 = 1_733_580_000;

    fn vector() -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.append_pair("query_id", "AAHdF6IQAAAAAN0XohDhrOrc");
        s.append_pair("user", USER);
        s.append_pair("auth_date", &AUTH_DATE.to_string());
        s.append_pair("hash", VECTOR_HASH);
        s.finish()
    }

    #[test]
    fn the_documented_algorithm_accepts_its_own_vector() {
        let key = InitDataKey::from_bot_token(TOKEN);
        assert_eq!(
            key.verify(&vector(), AUTH_DATE + 60),
            Ok(TelegramUserId(279_058_397))
        );
    }

    #[test]
    fn forged_altered_stale_and_foreign_data_are_refused() {
        let key = InitDataKey::from_bot_token(TOKEN);
        let now = AUTH_DATE + 60;
        // Another user id under the same hash.
        let altered = vector().replace("279058397", "279058398");
        assert_eq!(key.verify(&altered, now), Err(InitDataError::Forged));
        // Signed for another bot.
        let other = InitDataKey::from_bot_token("1:other");
        assert_eq!(other.verify(&vector(), now), Err(InitDataError::Forged));
        // A day and a second old.
        assert!(matches!(
            key.verify(&vector(), AUTH_DATE + MAX_AGE_SECS + 1),
            Err(InitDataError::Stale { .. })
        ));
        // No hash, a short hash, a repeated field.
        let bare = vector().replace(&format!("&hash={VECTOR_HASH}"), "");
        assert_eq!(key.verify(&bare, now), Err(InitDataError::Missing("hash")));
        let short = vector().replace(VECTOR_HASH, "abcd");
        assert!(matches!(
            key.verify(&short, now),
            Err(InitDataError::HashFormat(_))
        ));
        let twice = format!("auth_date=1&{}", vector());
        assert!(matches!(
            key.verify(&twice, now),
            Err(InitDataError::Repeated(_))
        ));
    }

    #[test]
    fn what_the_bot_signs_the_client_accepts() {
        let key = InitDataKey::from_bot_token(TOKEN);
        let data = key.sign(TelegramUserId(42), 1_000_000);
        assert_eq!(key.verify(&data, 1_000_100), Ok(TelegramUserId(42)));
        assert_eq!(
            InitDataKey::from_bot_token("2:x").verify(&data, 1_000_100),
            Err(InitDataError::Forged)
        );
    }
}
