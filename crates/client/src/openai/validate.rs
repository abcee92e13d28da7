//! Strict validation of chat and legacy completion requests.
//!
//! The body is read as a JSON object whose members are kept as raw JSON, so
//! that duplicate members can be refused (a lenient parser silently keeps
//! the last one) and every problem can name its parameter. Members are then
//! checked one by one against the endpoint's table; unknown members are
//! refused like the OpenAI API does. The forwarded body is rebuilt from the
//! checked members, minus Cocoon's own `cocoon` extension object.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use cocoon_core::{Endpoint, ModelName};
use cocoon_receipt::digest::Sampling;
use serde::de::{self, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use cocoon_core::trust::TrustRequirements;

use super::ApiError;

/// Header with the highest worker coefficient (per-mille) the app accepts.
pub const MAX_COEFFICIENT_HEADER: &str = "x-cocoon-max-coefficient";
/// Header with the request's deadline in milliseconds.
pub const TIMEOUT_HEADER: &str = "x-cocoon-timeout-ms";
/// Header asking for the request to run on this many distinct workers.
pub const REPLICAS_HEADER: &str = "x-cocoon-replicas";
/// Headers with the request's trust requirements, one per field of
/// `cocoon.trust`: comma-separated lists, `true`/`false`, a status name.
pub const TRUST_HEADERS: [(&str, &str); 5] = [
    ("x-cocoon-trust-tee", "tee"),
    ("x-cocoon-trust-tcb", "tcb"),
    ("x-cocoon-trust-gpu", "gpu"),
    ("x-cocoon-trust-regions", "regions"),
    ("x-cocoon-trust-open", "open"),
];

/// Most runs of one replicated request.
const MAX_REPLICAS: i64 = 5;

/// Largest `max_tokens` accepted.
const MAX_TOKENS_LIMIT: i64 = 1 << 24;
/// Longest deadline accepted, one hour.
const MAX_TIMEOUT_MS: i64 = 3_600_000;

/// Cocoon's controls for one request, from headers or the `cocoon` member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Controls {
    /// Highest worker coefficient accepted.
    pub max_coefficient: Option<u32>,
    /// Deadline for the whole request.
    pub timeout_ms: Option<u64>,
    /// Distinct workers to run the request on, answered by majority.
    pub replicas: Option<u32>,
    /// Whether the request is sealed end to end to the workers.
    pub e2e: Option<E2eMode>,
    /// What the worker must offer (`cocoon.trust`, `X-Cocoon-Trust-*`).
    pub trust: TrustRequirements,
}

/// Whether a request is sealed end to end to the workers (`cocoon.e2e`,
/// `X-Cocoon-E2E`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum E2eMode {
    /// Sealed, or refused when no worker this client verified can take it.
    Required,
    /// Sealed when a verified worker can take it (the default).
    Preferred,
    /// In the clear to the proxy (for a proxy-side spot-check, say).
    Off,
}

/// ACI's serving constraints (`provider.aci_verified`,
/// `provider.aci_session_ids`, ACI §5.3): the client takes them out of the
/// body and enforces them before anything is forwarded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServingConstraints {
    /// Serve only through a worker this client verified.
    pub verified: bool,
    /// Serve only through one of these attested sessions (`GET
    /// /v1/aci/sessions`): the request is sealed to their workers alone.
    pub sessions: Option<Vec<String>>,
}

fn provider_from_body(raw: &RawValue) -> Result<ServingConstraints, ApiError> {
    let o: serde_json::Map<String, Value> = serde_json::from_str(raw.get()).map_err(|_| {
        ApiError::invalid("provider", "invalid_type", "'provider' must be an object")
    })?;
    let mut c = ServingConstraints::default();
    let mut verified = None;
    for (k, v) in &o {
        let param = format!("provider.{k}");
        match (k.as_str(), v) {
            ("aci_verified", Value::Bool(b)) => verified = Some(*b),
            ("aci_session_ids", Value::Array(ids)) if !ids.is_empty() => {
                let ids: Option<Vec<String>> = ids
                    .iter()
                    .map(|id| id.as_str().filter(|s| is_session_id(s)).map(str::to_owned))
                    .collect();
                c.sessions = Some(ids.ok_or_else(|| {
                    ApiError::invalid(&param, "invalid_value", format!("'{param}' must list attested session ids, each 64 lowercase hex characters"))
                })?);
            }
            ("aci_verified" | "aci_session_ids", _) => {
                return Err(ApiError::invalid(&param, "invalid_value", format!("'{param}' must be a boolean (aci_verified) or a non-empty array of session ids (aci_session_ids)")))
            }
            (other, _) if other.starts_with("aci_") => {
                return Err(ApiError::invalid(&param, "unknown_parameter", format!("Unrecognized ACI serving constraint: {param}")))
            }
            // The rest of `provider` is outside ACI: nothing here uses it.
            _ => {}
        }
    }
    if c.sessions.is_some() && verified == Some(false) {
        return Err(ApiError::invalid(
            "provider.aci_verified",
            "invalid_value",
            "'provider.aci_session_ids' implies aci_verified; it cannot be false with them",
        ));
    }
    c.verified = verified.unwrap_or(false) || c.sessions.is_some();
    Ok(c)
}

fn is_session_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The header naming a request's [`E2eMode`].
pub const E2E_HEADER: &str = "x-cocoon-e2e";

fn e2e_mode(param: &str, v: Option<&str>, shown: &str) -> Result<E2eMode, ApiError> {
    match v {
        Some("required") => Ok(E2eMode::Required),
        Some("preferred") | Some("auto") => Ok(E2eMode::Preferred),
        Some("off") => Ok(E2eMode::Off),
        _ => Err(ApiError::invalid(
            param,
            "invalid_value",
            format!("'{param}' must be \"required\", \"preferred\" or \"off\", found {shown}"),
        )),
    }
}

/// A request that passed validation.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The requested model.
    pub model: ModelName,
    /// How the answer is sampled (temperature, seed): whether a replay must
    /// give the same answer.
    pub sampling: Sampling,
    /// Whether the answer is streamed.
    pub stream: bool,
    /// Whether the app asked for a usage chunk at the end of the stream.
    pub include_usage: bool,
    /// The body to forward.
    pub body: Bytes,
    /// Cocoon controls.
    pub controls: Controls,
    /// ACI serving constraints.
    pub serving: ServingConstraints,
    /// The completion token limit the request sets, if any.
    pub max_tokens: Option<u64>,
}

/// Validates `raw` as a request for `endpoint`, with Cocoon controls from
/// `headers`.
pub fn validate(
    endpoint: Endpoint,
    raw: &[u8],
    headers: &HeaderMap,
) -> Result<Validated, ApiError> {
    validate_under(endpoint, raw, headers, &TrustRequirements::default())
}

/// [`validate`], for an app whose trust requirements are `defaults`: the
/// request's own may only tighten them.
pub fn validate_under(
    endpoint: Endpoint,
    raw: &[u8],
    headers: &HeaderMap,
    defaults: &TrustRequirements,
) -> Result<Validated, ApiError> {
    let text = std::str::from_utf8(raw).map_err(|e| {
        ApiError::request(
            StatusCode::BAD_REQUEST,
            "invalid_encoding",
            format!(
                "request body is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::request(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "request body is empty; expected a JSON object",
        ));
    }
    let members = parse_members(text)?;
    let mut seen = Seen::new(endpoint, controls_from_headers(headers)?);
    let mut required: Vec<&str> = match endpoint {
        Endpoint::ChatCompletions => vec!["model", "messages"],
        Endpoint::Completions => vec!["model", "prompt"],
    };
    let mut out = String::with_capacity(raw.len() + 16);
    out.push('{');
    for (key, raw_value) in &members {
        let key: &str = key;
        required.retain(|r| *r != key);
        if !seen.member(key, raw_value)? {
            continue;
        }
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(key).unwrap_or_default());
        out.push(':');
        out.push_str(raw_value.get());
    }
    seen.apply_trust(defaults)?;
    seen.seed_replicas(&mut out);
    out.push('}');
    if let Some(missing) = required.first() {
        return Err(ApiError::invalid(
            *missing,
            "missing_required_parameter",
            format!("Missing required parameter: '{missing}'"),
        ));
    }
    seen.check_together()?;
    seen.into_validated(Bytes::from(out))
}

impl Seen {
    /// Puts the request's trust requirements under the app's `defaults`,
    /// and makes `replicas` one figure: `cocoon.replicas` and
    /// `cocoon.trust.replicas` must agree when both are given.
    fn apply_trust(&mut self, defaults: &TrustRequirements) -> Result<(), ApiError> {
        let c = &mut self.controls;
        if let (Some(a), Some(b)) = (c.replicas, c.trust.replicas) {
            if a != b {
                return Err(ApiError::invalid(
                    "cocoon.trust.replicas",
                    "invalid_value",
                    format!("cocoon.replicas says {a}, cocoon.trust.replicas says {b}"),
                ));
            }
        }
        c.trust.replicas = c.trust.replicas.or(c.replicas);
        let loosened = |e: cocoon_core::trust::Loosened| {
            ApiError::invalid("cocoon.trust", "trust_loosened", e.to_string())
        };
        c.trust = defaults
            .tightened_by(&self.header_trust)
            .map_err(loosened)?
            .tightened_by(&c.trust)
            .map_err(loosened)?;
        c.trust
            .check()
            .map_err(|e| ApiError::invalid("cocoon.trust", "invalid_value", e.to_string()))?;
        c.replicas = c.trust.replicas;
        Ok(())
    }

    /// Replicas must sample alike to be compared: one seed for all of
    /// them, set here (into the body `out`, still open) so that the
    /// request the workers sign is the one sent.
    fn seed_replicas(&mut self, out: &mut String) {
        if self.controls.replicas.unwrap_or(1) <= 1 || self.seed {
            return;
        }
        use std::hash::{BuildHasher, Hasher};
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as u32;
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&format!("\"seed\":{seed}"));
        self.seed = true;
    }

    /// The typed request, with `body` to forward.
    fn into_validated(self, body: Bytes) -> Result<Validated, ApiError> {
        let model = self.model.ok_or_else(|| {
            ApiError::invalid(
                "model",
                "missing_required_parameter",
                "Missing required parameter: 'model'",
            )
        })?;
        Ok(Validated {
            model,
            sampling: Sampling {
                temperature: self.temperature,
                seeded: self.seed,
            },
            stream: self.stream,
            include_usage: self.include_usage,
            body,
            controls: self.controls,
            serving: self.serving,
            max_tokens: self.max_tokens,
        })
    }
}

/// What the members read so far said, for the checks that span several.
struct Seen {
    endpoint: Endpoint,
    controls: Controls,
    /// The trust requirements the headers set: a `cocoon` member replaces
    /// the other controls, but may only tighten these.
    header_trust: TrustRequirements,
    serving: ServingConstraints,
    model: Option<ModelName>,
    temperature: Option<f64>,
    stream: bool,
    stream_options: bool,
    include_usage: bool,
    logprobs_on: bool,
    top_logprobs: bool,
    n: i64,
    max_tokens: Option<u64>,
    best_of: Option<i64>,
    seed: bool,
}

impl Seen {
    fn new(endpoint: Endpoint, controls: Controls) -> Self {
        Seen {
            endpoint,
            header_trust: controls.trust.clone(),
            controls,
            serving: ServingConstraints::default(),
            model: None,
            temperature: None,
            stream: false,
            stream_options: false,
            include_usage: false,
            logprobs_on: false,
            top_logprobs: false,
            n: 1,
            max_tokens: None,
            best_of: None,
            seed: false,
        }
    }

    /// Checks one member. `Ok(false)` for Cocoon's own member, which is
    /// taken out of the body; an unknown member is refused by name.
    fn member(&mut self, key: &str, raw: &RawValue) -> Result<bool, ApiError> {
        if key == "cocoon" {
            self.controls = controls_from_body(raw)?;
            return Ok(false);
        }
        if key == "provider" {
            self.serving = provider_from_body(raw)?;
            return Ok(false);
        }
        let known = self.common(key, raw)?
            || match self.endpoint {
                Endpoint::ChatCompletions => self.chat(key, raw)?,
                Endpoint::Completions => self.completion(key, raw)?,
            };
        if !known {
            return Err(ApiError::invalid(
                key,
                "unknown_parameter",
                format!("Unrecognized request argument supplied: {key}"),
            ));
        }
        Ok(true)
    }

    /// Members both endpoints take; false if `key` is not one.
    fn common(&mut self, key: &str, raw: &RawValue) -> Result<bool, ApiError> {
        let is_null = raw.get() == "null";
        match key {
            "model" => {
                let m: String = typed(key, raw, "a string")?;
                if m.is_empty() {
                    return Err(ApiError::invalid(
                        key,
                        "invalid_value",
                        "model must not be empty",
                    ));
                }
                // No worker can serve a name that is not a model name.
                let name = ModelName::new(&m)
                    .map_err(|e| ApiError::invalid(key, "invalid_value", e.to_string()))?;
                self.model = Some(name);
            }
            "stream" if !is_null => self.stream = typed(key, raw, "a boolean")?,
            "stream_options" if !is_null => {
                self.stream_options = true;
                self.include_usage = stream_options(raw)?;
            }
            "stream" | "stream_options" => {}
            "temperature" => self.temperature = range_f64(key, raw, 0.0, 2.0)?,
            "top_p" | "min_p" => {
                range_f64(key, raw, 0.0, 1.0)?;
            }
            "presence_penalty" | "frequency_penalty" => {
                range_f64(key, raw, -2.0, 2.0)?;
            }
            "repetition_penalty" => {
                range_f64(key, raw, 0.0, 2.0)?;
            }
            "top_k" => {
                range_i64(key, raw, -1, 1 << 20)?;
            }
            "n" => {
                if let Some(x) = range_i64(key, raw, 1, 128)? {
                    self.n = x;
                }
            }
            "max_tokens" => {
                let min = i64::from(self.endpoint == Endpoint::ChatCompletions);
                self.limit_tokens(range_i64(key, raw, min, MAX_TOKENS_LIMIT)?);
            }
            "seed" => {
                range_i64(key, raw, i64::MIN, i64::MAX)?;
                self.seed = raw.get() != "null";
            }
            "stop" => stop(raw)?,
            "user" => {
                let _: Option<String> = typed(key, raw, "a string")?;
            }
            "logit_bias" => logit_bias(raw)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Members only chat completions take; false if `key` is not one.
    fn chat(&mut self, key: &str, raw: &RawValue) -> Result<bool, ApiError> {
        match key {
            "max_completion_tokens" => {
                self.limit_tokens(range_i64(key, raw, 1, MAX_TOKENS_LIMIT)?);
            }
            "messages" => messages(raw)?,
            "logprobs" => {
                self.logprobs_on = typed::<Option<bool>>(key, raw, "a boolean")?.unwrap_or(false);
            }
            "top_logprobs" => self.top_logprobs = range_i64(key, raw, 0, 20)?.is_some(),
            "response_format" => response_format(raw)?,
            "tools" => tools(raw)?,
            "tool_choice" => tool_choice(raw)?,
            "parallel_tool_calls" | "store" => {
                let _: Option<bool> = typed(key, raw, "a boolean")?;
            }
            "metadata" => {
                let _: Option<serde_json::Map<String, Value>> = typed(key, raw, "an object")?;
            }
            "reasoning_effort" => one_of(key, raw, &["minimal", "low", "medium", "high"])?,
            "service_tier" => {
                let _: Option<String> = typed(key, raw, "a string")?;
            }
            "functions" | "function_call" | "modalities" | "audio" | "prediction" => {}
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Members only legacy completions take; false if `key` is not one.
    fn completion(&mut self, key: &str, raw: &RawValue) -> Result<bool, ApiError> {
        match key {
            "prompt" => prompt(raw)?,
            "suffix" => {
                let _: Option<String> = typed(key, raw, "a string")?;
            }
            "echo" => {
                let _: Option<bool> = typed(key, raw, "a boolean")?;
            }
            "logprobs" => {
                range_i64(key, raw, 0, 5)?;
            }
            "best_of" => self.best_of = range_i64(key, raw, 1, 20)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `max_tokens` and `max_completion_tokens` together: the lower wins.
    fn limit_tokens(&mut self, limit: Option<i64>) {
        if let Some(m) = limit {
            let m = m as u64;
            self.max_tokens = Some(self.max_tokens.map_or(m, |o| o.min(m)));
        }
    }

    /// The checks that involve several members.
    fn check_together(&self) -> Result<(), ApiError> {
        if self.stream_options && !self.stream {
            return Err(ApiError::invalid(
                "stream_options",
                "invalid_value",
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            ));
        }
        if self.top_logprobs && !self.logprobs_on {
            return Err(ApiError::invalid(
                "top_logprobs",
                "invalid_value",
                "'top_logprobs' requires 'logprobs' to be true",
            ));
        }
        match self.best_of {
            Some(b) if b < self.n => Err(ApiError::invalid(
                "best_of",
                "invalid_value",
                format!(
                    "best_of ({b}) must be greater than or equal to n ({})",
                    self.n
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// Reads the top-level object, refusing duplicate members.
fn parse_members(text: &str) -> Result<Vec<(Cow<'_, str>, &RawValue)>, ApiError> {
    struct Members;
    impl<'de> Visitor<'de> for Members {
        type Value = Vec<(Cow<'de, str>, &'de RawValue)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            while let Some(key) = map.next_key::<CowStr<'de>>()? {
                let key = key.0;
                if !seen.insert(key.clone()) {
                    return Err(de::Error::custom(format_args!("duplicate member {key:?}")));
                }
                let value: &'de RawValue = map.next_value()?;
                out.push((key, value));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed =
        serde::Deserializer::deserialize_map(&mut de, Members).and_then(|m| de.end().map(|()| m));
    parsed.map_err(|e| {
        let msg = e.to_string();
        if let Some(rest) = msg.strip_prefix("duplicate member ") {
            let name = rest.split('"').nth(1).unwrap_or("").to_string();
            return ApiError::invalid(
                name.clone(),
                "duplicate_parameter",
                format!("parameter '{name}' appears more than once in the request body"),
            );
        }
        let what = if e.is_data() {
            "the request body must be a JSON object"
        } else {
            "the request body is not valid JSON"
        };
        ApiError::request(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("{what}: {msg}"),
        )
    })
}

/// A borrowed-when-possible string key.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

fn json_type(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

fn typed<'a, T: Deserialize<'a>>(
    param: &str,
    raw: &'a RawValue,
    expected: &str,
) -> Result<T, ApiError> {
    serde_json::from_str(raw.get()).map_err(|_| {
        ApiError::invalid(
            param,
            "invalid_type",
            format!(
                "Invalid type for '{param}': expected {expected}, but got {}.",
                json_type(raw)
            ),
        )
    })
}

/// A number within `min..=max`, or null.
fn range_f64(param: &str, raw: &RawValue, min: f64, max: f64) -> Result<Option<f64>, ApiError> {
    let x = typed::<Option<f64>>(param, raw, "a number")?;
    if let Some(x) = x {
        if !(min..=max).contains(&x) {
            return Err(ApiError::invalid(
                param,
                "invalid_value",
                format!("'{param}' must be between {min} and {max}, found {x}"),
            ));
        }
    }
    Ok(x)
}

fn range_i64(param: &str, raw: &RawValue, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
    let x = typed::<Option<i64>>(param, raw, "an integer")?;
    if let Some(x) = x {
        if !(min..=max).contains(&x) {
            return Err(ApiError::invalid(
                param,
                "invalid_value",
                format!("'{param}' must be between {min} and {max}, found {x}"),
            ));
        }
    }
    Ok(x)
}

fn one_of(param: &str, raw: &RawValue, allowed: &[&str]) -> Result<(), ApiError> {
    if let Some(s) = typed::<Option<String>>(param, raw, "a string")? {
        if !allowed.contains(&s.as_str()) {
            return Err(ApiError::invalid(
                param,
                "invalid_value",
                format!("'{param}' must be one of {allowed:?}, found {s:?}"),
            ));
        }
    }
    Ok(())
}

fn stream_options(raw: &RawValue) -> Result<bool, ApiError> {
    let o: serde_json::Map<String, Value> = typed("stream_options", raw, "an object")?;
    let mut include = false;
    for (k, v) in &o {
        let param = format!("stream_options.{k}");
        match k.as_str() {
            "include_usage" => {
                include = match v {
                    Value::Bool(b) => *b,
                    Value::Null => false,
                    _ => {
                        return Err(ApiError::invalid(
                            param,
                            "invalid_type",
                            "'stream_options.include_usage' must be a boolean",
                        ))
                    }
                }
            }
            "include_obfuscation" => {}
            _ => {
                return Err(ApiError::invalid(
                    param.clone(),
                    "unknown_parameter",
                    format!("Unrecognized request argument supplied: {param}"),
                ))
            }
        }
    }
    Ok(include)
}

fn stop(raw: &RawValue) -> Result<(), ApiError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    #[allow(dead_code)] // only the shape is checked
    enum Stop {
        One(String),
        Many(Vec<String>),
    }
    match typed::<Option<Stop>>("stop", raw, "a string or an array of strings")? {
        Some(Stop::Many(v)) if v.len() > 4 => Err(ApiError::invalid(
            "stop",
            "invalid_value",
            format!("'stop' may hold at most 4 sequences, found {}", v.len()),
        )),
        Some(Stop::Many(v)) if v.iter().any(String::is_empty) => Err(ApiError::invalid(
            "stop",
            "invalid_value",
            "'stop' sequences must not be empty",
        )),
        _ => Ok(()),
    }
}

fn logit_bias(raw: &RawValue) -> Result<(), ApiError> {
    let Some(map) =
        typed::<Option<serde_json::Map<String, Value>>>("logit_bias", raw, "an object")?
    else {
        return Ok(());
    };
    for (k, v) in &map {
        if k.parse::<u32>().is_err() {
            return Err(ApiError::invalid(
                "logit_bias",
                "invalid_value",
                format!("'logit_bias' keys must be token ids, found {k:?}"),
            ));
        }
        match v.as_f64() {
            Some(x) if (-100.0..=100.0).contains(&x) => {}
            _ => {
                return Err(ApiError::invalid(
                    "logit_bias",
                    "invalid_value",
                    format!(
                    "'logit_bias' values must be numbers between -100 and 100, found {v} for {k}"
                ),
                ))
            }
        }
    }
    Ok(())
}

fn messages(raw: &RawValue) -> Result<(), ApiError> {
    let list: Vec<Value> = typed("messages", raw, "an array")?;
    if list.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "invalid_value",
            "'messages' must contain at least one message",
        ));
    }
    list.iter().enumerate().try_for_each(|(i, m)| message(i, m))
}

/// One chat message: an object with a known role and text or parts.
fn message(i: usize, m: &Value) -> Result<(), ApiError> {
    let Some(obj) = m.as_object() else {
        return Err(ApiError::invalid(
            format!("messages[{i}]"),
            "invalid_type",
            format!("messages[{i}] must be an object"),
        ));
    };
    let role = match obj.get("role") {
        Some(Value::String(r)) => r.as_str(),
        Some(_) => {
            return Err(ApiError::invalid(
                format!("messages[{i}].role"),
                "invalid_type",
                format!("messages[{i}].role must be a string"),
            ))
        }
        None => {
            return Err(ApiError::invalid(
                format!("messages[{i}].role"),
                "missing_required_parameter",
                format!("messages[{i}] has no 'role'"),
            ))
        }
    };
    if ![
        "system",
        "user",
        "assistant",
        "tool",
        "developer",
        "function",
    ]
    .contains(&role)
    {
        return Err(ApiError::invalid(
                format!("messages[{i}].role"),
                "invalid_value",
                format!("messages[{i}].role must be one of system, developer, user, assistant, tool; found {role:?}"),
            ));
    }
    let content = obj.get("content");
    let ok = match content {
        Some(Value::String(_)) | Some(Value::Array(_)) => true,
        Some(Value::Null) | None => role == "assistant" || role == "function",
        _ => false,
    };
    if !ok {
        let code = if content.is_none() {
            "missing_required_parameter"
        } else {
            "invalid_type"
        };
        return Err(ApiError::invalid(
            format!("messages[{i}].content"),
            code,
            format!("messages[{i}].content must be a string or an array of content parts"),
        ));
    }
    if let Some(Value::Array(parts)) = content {
        for (j, p) in parts.iter().enumerate() {
            if !p.get("type").is_some_and(Value::is_string) {
                return Err(ApiError::invalid(
                    format!("messages[{i}].content[{j}].type"),
                    "missing_required_parameter",
                    format!("messages[{i}].content[{j}] must be an object with a 'type'"),
                ));
            }
        }
    }
    Ok(())
}

fn prompt(raw: &RawValue) -> Result<(), ApiError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    #[allow(dead_code)] // only the shape is checked
    enum Prompt {
        Text(String),
        Texts(Vec<String>),
        Tokens(Vec<u32>),
        TokenLists(Vec<Vec<u32>>),
    }
    match typed::<Prompt>(
        "prompt",
        raw,
        "a string, an array of strings or an array of token ids",
    )? {
        Prompt::Texts(v) if v.is_empty() => Err(ApiError::invalid(
            "prompt",
            "invalid_value",
            "'prompt' must not be an empty array",
        )),
        Prompt::Tokens(v) if v.is_empty() => Err(ApiError::invalid(
            "prompt",
            "invalid_value",
            "'prompt' must not be an empty array",
        )),
        Prompt::TokenLists(v) if v.is_empty() || v.iter().any(Vec::is_empty) => {
            Err(ApiError::invalid(
                "prompt",
                "invalid_value",
                "'prompt' token lists must not be empty",
            ))
        }
        _ => Ok(()),
    }
}

fn response_format(raw: &RawValue) -> Result<(), ApiError> {
    let Some(o) =
        typed::<Option<serde_json::Map<String, Value>>>("response_format", raw, "an object")?
    else {
        return Ok(());
    };
    match o.get("type").and_then(Value::as_str) {
        Some("text" | "json_object" | "json_schema") => Ok(()),
        _ => Err(ApiError::invalid(
            "response_format.type",
            "invalid_value",
            "'response_format.type' must be one of text, json_object, json_schema",
        )),
    }
}

fn tools(raw: &RawValue) -> Result<(), ApiError> {
    let Some(list) = typed::<Option<Vec<Value>>>("tools", raw, "an array")? else {
        return Ok(());
    };
    for (i, t) in list.iter().enumerate() {
        if !t.get("type").is_some_and(Value::is_string) {
            return Err(ApiError::invalid(
                format!("tools[{i}].type"),
                "missing_required_parameter",
                format!("tools[{i}] must be an object with a 'type'"),
            ));
        }
    }
    Ok(())
}

fn tool_choice(raw: &RawValue) -> Result<(), ApiError> {
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::String(s)) if ["none", "auto", "required"].contains(&s.as_str()) => Ok(()),
        Ok(Value::Object(_) | Value::Null) => Ok(()),
        _ => Err(ApiError::invalid(
            "tool_choice",
            "invalid_value",
            "'tool_choice' must be \"none\", \"auto\", \"required\" or an object naming a tool",
        )),
    }
}

fn controls_from_body(raw: &RawValue) -> Result<Controls, ApiError> {
    let Some(o) = typed::<Option<serde_json::Map<String, Value>>>("cocoon", raw, "an object")?
    else {
        return Ok(Controls::default());
    };
    let mut c = Controls::default();
    for (k, v) in &o {
        let param = format!("cocoon.{k}");
        match k.as_str() {
            "max_coefficient" => {
                c.max_coefficient = Some(coefficient(&param, v.as_i64(), &v.to_string())?)
            }
            "timeout_ms" => c.timeout_ms = Some(timeout(&param, v.as_i64(), &v.to_string())?),
            "replicas" => c.replicas = Some(replicas(&param, v.as_i64(), &v.to_string())?),
            "e2e" => c.e2e = Some(e2e_mode(&param, v.as_str(), &v.to_string())?),
            "trust" => c.trust = trust(&param, v.clone())?,
            _ => {
                return Err(ApiError::invalid(
                    param.clone(),
                    "unknown_parameter",
                    format!("Unrecognized request argument supplied: {param}"),
                ))
            }
        }
    }
    Ok(c)
}

fn controls_from_headers(headers: &HeaderMap) -> Result<Controls, ApiError> {
    let mut c = Controls::default();
    let read = |name: &str| -> Option<String> {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("<not ASCII>").trim().to_string())
    };
    if let Some(s) = read(MAX_COEFFICIENT_HEADER) {
        c.max_coefficient = Some(coefficient(MAX_COEFFICIENT_HEADER, s.parse().ok(), &s)?);
    }
    if let Some(s) = read(TIMEOUT_HEADER) {
        c.timeout_ms = Some(timeout(TIMEOUT_HEADER, s.parse().ok(), &s)?);
    }
    if let Some(s) = read(REPLICAS_HEADER) {
        c.replicas = Some(replicas(REPLICAS_HEADER, s.parse().ok(), &s)?);
    }
    if let Some(s) = read(E2E_HEADER) {
        c.e2e = Some(e2e_mode(E2E_HEADER, Some(&s), &s)?);
    }
    let mut fields = serde_json::Map::new();
    for (header, field) in TRUST_HEADERS {
        let Some(s) = read(header) else { continue };
        let value = match field {
            "tee" | "regions" => Value::from(
                s.split(',')
                    .map(|p| p.trim().to_owned())
                    .collect::<Vec<_>>(),
            ),
            "gpu" | "open" => match s.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => {
                    return Err(ApiError::invalid(
                        header,
                        "invalid_value",
                        format!("'{header}' must be true or false, found {s:?}"),
                    ))
                }
            },
            _ => Value::String(s),
        };
        fields.insert(field.to_owned(), value);
    }
    if !fields.is_empty() {
        c.trust = trust("X-Cocoon-Trust-*", Value::Object(fields))?;
    }
    Ok(c)
}

/// Reads trust requirements (the `cocoon.trust` object's shape) and
/// refuses contradictory ones.
fn trust(param: &str, v: Value) -> Result<TrustRequirements, ApiError> {
    if !v.is_object() {
        return Err(ApiError::invalid(
            param,
            "invalid_type",
            format!("'{param}' must be an object, found {v}"),
        ));
    }
    let t: TrustRequirements = serde_json::from_value(v)
        .map_err(|e| ApiError::invalid(param, "invalid_value", format!("'{param}': {e}")))?;
    t.check()
        .map_err(|e| ApiError::invalid(param, "invalid_value", e.to_string()))?;
    Ok(t)
}

fn coefficient(param: &str, n: Option<i64>, shown: &str) -> Result<u32, ApiError> {
    let max = cocoon_core::Coefficient::MAX as i64;
    match n {
        Some(n) if (1..=max).contains(&n) => Ok(n as u32),
        _ => Err(ApiError::invalid(
            param,
            "invalid_value",
            format!("'{param}' must be an integer price coefficient in per-mille between 1 and {max}, found {shown}"),
        )),
    }
}

fn replicas(param: &str, n: Option<i64>, shown: &str) -> Result<u32, ApiError> {
    match n {
        Some(n) if (1..=MAX_REPLICAS).contains(&n) => Ok(n as u32),
        _ => Err(ApiError::invalid(
            param,
            "invalid_value",
            format!("'{param}' must be an integer number of distinct workers between 1 and {MAX_REPLICAS}, found {shown}"),
        )),
    }
}

fn timeout(param: &str, n: Option<i64>, shown: &str) -> Result<u64, ApiError> {
    match n {
        Some(n) if (1..=MAX_TIMEOUT_MS).contains(&n) => Ok(n as u64),
        _ => Err(ApiError::invalid(
            param,
            "invalid_value",
            format!("'{param}' must be an integer number of milliseconds between 1 and {MAX_TIMEOUT_MS}, found {shown}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<Validated, ApiError> {
        validate(
            Endpoint::ChatCompletions,
            body.as_bytes(),
            &HeaderMap::new(),
        )
    }

    const OK: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

    fn with_trust(
        trust: &str,
        headers: &HeaderMap,
        app: &TrustRequirements,
    ) -> Result<Validated, ApiError> {
        let body = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}]{}}}"#,
            if trust.is_empty() {
                String::new()
            } else {
                format!(r#","cocoon":{{"trust":{trust}}}"#)
            }
        );
        validate_under(Endpoint::ChatCompletions, body.as_bytes(), headers, app)
    }

    #[test]
    fn trust_requirements_come_from_the_body_or_headers_and_only_tighten_the_app() {
        let none = HeaderMap::new();
        let app = TrustRequirements::default();
        let v = with_trust(
            r#"{"tee":["tdx","sev-snp"],"tcb":"up_to_date","gpu":true,"regions":["eu"],"replicas":2}"#,
            &none,
            &app,
        )
        .unwrap();
        assert_eq!(v.controls.trust.gpu, Some(true));
        assert_eq!(v.controls.replicas, Some(2));
        let body: Value = serde_json::from_slice(&v.body).unwrap();
        assert!(body.get("seed").is_some(), "replicas sample alike");
        let mut headers = HeaderMap::new();
        headers.insert("x-cocoon-trust-tee", "tdx, sev-snp".parse().unwrap());
        headers.insert("x-cocoon-trust-gpu", "true".parse().unwrap());
        headers.insert("x-cocoon-trust-regions", "eu".parse().unwrap());
        let v = with_trust("", &headers, &app).unwrap();
        assert_eq!(v.controls.trust.tee.as_ref().map(|t| t.len()), Some(2));
        for (bad, says) in [
            (r#"{"tee":["sgx"]}"#, "unknown TEE kind"),
            (r#"{"tcb":"fine"}"#, "unknown TCB status"),
            (r#"{"colour":"red"}"#, "unknown field"),
            (r#"{"open":true,"gpu":true}"#, "cannot be demanded"),
            (r#"{"replicas":9}"#, "1 to 5"),
            (r#"[]"#, "cocoon.trust"),
        ] {
            let e = with_trust(bad, &none, &app).unwrap_err();
            assert!(e.message.contains(says), "{bad}: {}", e.message);
            assert_eq!(e.param.as_deref(), Some("cocoon.trust"), "{bad}");
        }
        // A body's cocoon member may not drop what the headers demand.
        let mut eu = HeaderMap::new();
        eu.insert("x-cocoon-trust-regions", "eu".parse().unwrap());
        let v = with_trust(r#"{"gpu":true}"#, &eu, &app).unwrap();
        assert_eq!(v.controls.trust.regions.as_ref().map(|r| r.len()), Some(1));
        assert_eq!(v.controls.trust.gpu, Some(true));
        assert!(with_trust(r#"{"regions":["us"]}"#, &eu, &app).is_err());
        let mut bad = HeaderMap::new();
        bad.insert("x-cocoon-trust-gpu", "yes".parse().unwrap());
        assert!(with_trust("", &bad, &app).is_err());
        // An app that demands an attested GPU in the EU.
        let app: TrustRequirements =
            serde_json::from_str(r#"{"gpu":true,"regions":["eu"],"open":false}"#).unwrap();
        let v = with_trust("", &none, &app).unwrap();
        assert_eq!(v.controls.trust, app);
        let v = with_trust(r#"{"regions":["eu-west"]}"#, &none, &app).unwrap();
        assert_eq!(v.controls.trust.gpu, Some(true));
        for looser in [
            r#"{"gpu":false}"#,
            r#"{"regions":["us"]}"#,
            r#"{"open":true}"#,
        ] {
            let e = with_trust(looser, &none, &app).unwrap_err();
            assert_eq!(e.code.as_deref(), Some("trust_loosened"), "{looser}");
        }
    }

    #[test]
    fn accepts_and_rebuilds_a_good_request() {
        let v = chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,
            "stream_options":{"include_usage":true},"temperature":0.5,"cocoon":{"max_coefficient":1500,"timeout_ms":2000}}"#)
        .unwrap();
        assert_eq!(v.model.as_str(), "m");
        assert!(v.stream && v.include_usage);
        assert_eq!(
            v.controls,
            Controls {
                max_coefficient: Some(1500),
                timeout_ms: Some(2000),
                replicas: None,
                e2e: None,
                trust: TrustRequirements::default(),
            }
        );
        let body: Value = serde_json::from_slice(&v.body).unwrap();
        assert!(body.get("cocoon").is_none(), "extension is not forwarded");
        assert_eq!(body["temperature"], 0.5);
        assert_eq!(body["messages"][0]["content"], "hi");
    }

    #[test]
    fn duplicate_members_name_the_parameter() {
        let e = chat(r#"{"model":"m","model":"n","messages":[]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        assert_eq!(e.code.as_deref(), Some("duplicate_parameter"));
    }

    #[test]
    fn escaped_keys_are_compared_decoded() {
        let e = chat(r#"{"model":"m","mod\u0065l":"n","messages":[]}"#).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("duplicate_parameter"));
    }

    #[test]
    fn headers_set_controls() {
        let mut h = HeaderMap::new();
        h.insert(MAX_COEFFICIENT_HEADER, "900".parse().unwrap());
        let v = validate(Endpoint::ChatCompletions, OK.as_bytes(), &h).unwrap();
        assert_eq!(v.controls.max_coefficient, Some(900));
        h.insert(MAX_COEFFICIENT_HEADER, "zero".parse().unwrap());
        let e = validate(Endpoint::ChatCompletions, OK.as_bytes(), &h).unwrap_err();
        assert_eq!(e.param.as_deref(), Some(MAX_COEFFICIENT_HEADER));
    }

    #[test]
    fn replicas_get_one_seed_unless_the_app_set_one() {
        let v = chat(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"cocoon":{"replicas":3}}"#,
        )
        .unwrap();
        assert_eq!(v.controls.replicas, Some(3));
        let body: Value = serde_json::from_slice(&v.body).unwrap();
        assert!(body["seed"].is_u64(), "{body}");
        assert!(body.get("cocoon").is_none());
        let v = chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"seed":7,"cocoon":{"replicas":3}}"#).unwrap();
        let body: Value = serde_json::from_slice(&v.body).unwrap();
        assert_eq!(body["seed"], 7);
        let v = chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        let body: Value = serde_json::from_slice(&v.body).unwrap();
        assert!(
            body.get("seed").is_none(),
            "one worker: the body is the app's"
        );
        for bad in ["0", "6", "\"3\"", "1.5"] {
            let e = chat(&format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"cocoon":{{"replicas":{bad}}}}}"#)).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("cocoon.replicas"), "{bad}");
        }
    }

    #[test]
    fn nulls_mean_not_given() {
        chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":null,"stop":null,"max_tokens":null}"#).unwrap();
    }
}
