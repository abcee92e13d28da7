//! toncenter's HTTP API v2, as JSON: the envelope and the objects of the
//! methods Cocoon uses, in the shapes toncenter documents. The client reads
//! them and the devnet writes them, so both agree by construction; the
//! client's tests read recorded toncenter answers to keep the shapes honest.

use base64::prelude::{Engine as _, BASE64_STANDARD};
use num_bigint::BigInt;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use tycho_types::boc::Boc;
use tycho_types::cell::{Cell, HashBytes};

use crate::stack::StackEntry;

/// `{"ok": true, "result": ...}` or `{"ok": false, "error": ..., "code": ...}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Whether the call succeeded.
    pub ok: bool,
    /// The answer, when `ok`.
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub result: Option<T>,
    /// Why not, when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// An HTTP-style error code, when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
}

fn none<T>() -> Option<T> {
    None
}

impl<T> Envelope<T> {
    /// A successful answer.
    pub fn ok(result: T) -> Self {
        Envelope {
            ok: true,
            result: Some(result),
            error: None,
            code: None,
        }
    }

    /// A refusal.
    pub fn err(code: i64, error: impl Into<String>) -> Self {
        Envelope {
            ok: false,
            result: None,
            error: Some(error.into()),
            code: Some(code),
        }
    }
}

/// Numbers toncenter sends sometimes as strings, sometimes as numbers.
pub fn flexible_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        S(String),
        U(u64),
        I(i64),
    }
    match N::deserialize(d)? {
        N::S(s) => s.parse().map_err(serde::de::Error::custom),
        N::U(u) => Ok(u),
        N::I(i) => u64::try_from(i).map_err(serde::de::Error::custom),
    }
}

/// `internal.transactionId`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransactionIdJson {
    /// `internal.transactionId`.
    #[serde(rename = "@type", default)]
    pub kind: String,
    /// Logical time, as a decimal string.
    #[serde(deserialize_with = "flexible_u64")]
    #[serde(serialize_with = "as_string")]
    pub lt: u64,
    /// The hash, standard base64.
    pub hash: String,
}

fn as_string<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

impl TransactionIdJson {
    /// From a logical time and hash.
    pub fn new(lt: u64, hash: &HashBytes) -> Self {
        TransactionIdJson {
            kind: "internal.transactionId".into(),
            lt,
            hash: BASE64_STANDARD.encode(hash.as_slice()),
        }
    }
}

/// `ton.blockIdExt`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockIdExt {
    /// `ton.blockIdExt`.
    #[serde(rename = "@type", default)]
    pub kind: String,
    /// Workchain.
    pub workchain: i32,
    /// Shard, as a signed decimal string.
    pub shard: String,
    /// Block number.
    pub seqno: u32,
    /// Root hash, base64.
    pub root_hash: String,
    /// File hash, base64.
    pub file_hash: String,
}

impl BlockIdExt {
    /// A masterchain block id with `seqno` and hashes.
    pub fn masterchain(seqno: u32, root_hash: &HashBytes) -> Self {
        BlockIdExt {
            kind: "ton.blockIdExt".into(),
            workchain: -1,
            shard: "-9223372036854775808".into(),
            seqno,
            root_hash: BASE64_STANDARD.encode(root_hash.as_slice()),
            file_hash: BASE64_STANDARD.encode(root_hash.as_slice()),
        }
    }
}

/// `raw.fullAccountState` (getAddressInformation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FullAccountState {
    /// `raw.fullAccountState`.
    #[serde(rename = "@type", default)]
    pub kind: String,
    /// Nanotons, decimal.
    #[serde(deserialize_with = "flexible_u64", serialize_with = "as_string")]
    pub balance: u64,
    /// Extra currencies (always empty here).
    #[serde(default)]
    pub extra_currencies: Vec<Value>,
    /// The code's bag of cells, base64; empty when none.
    #[serde(default)]
    pub code: String,
    /// The data's bag of cells, base64; empty when none.
    #[serde(default)]
    pub data: String,
    /// The last transaction (lt 0 when none).
    pub last_transaction_id: TransactionIdJson,
    /// The block the state was read at.
    pub block_id: BlockIdExt,
    /// Hash of the frozen state; empty unless frozen.
    #[serde(default)]
    pub frozen_hash: String,
    /// Time of the state.
    #[serde(default)]
    pub sync_utime: i64,
    /// `active`, `uninitialized`, `frozen` or `nonexist`.
    pub state: String,
}

/// `accountAddress`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountAddress {
    /// `accountAddress`.
    #[serde(rename = "@type", default)]
    pub kind: String,
    /// The address, user-friendly.
    pub account_address: String,
}

/// `msg.dataRaw`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MsgData {
    /// `msg.dataRaw` (or a text variant this client ignores).
    #[serde(rename = "@type", default)]
    pub kind: String,
    /// The body's bag of cells, base64.
    #[serde(default)]
    pub body: String,
    /// The state init's bag of cells, base64; empty when none.
    #[serde(default)]
    pub init_state: String,
}

/// `raw.message`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawMessage {
    /// `raw.message`.
    #[serde(rename = "@type", default)]
    pub kind: String,
    /// The message's hash, base64.
    #[serde(default)]
    pub hash: String,
    /// Source address (empty for external inbound).
    #[serde(default)]
    pub source: String,
    /// Destination address (empty for external outbound).
    #[serde(default)]
    pub destination: String,
    /// Nanotons carried.
    #[serde(deserialize_with = "flexible_u64", serialize_with = "as_string")]
    pub value: u64,
    /// Forwarding fee.
    #[serde(deserialize_with = "flexible_u64", serialize_with = "as_string")]
    pub fwd_fee: u64,
    /// Instant hypercube routing fee (always 0).
    #[serde(deserialize_with = "flexible_u64", serialize_with = "as_string")]
    pub ihr_fee: u64,
    /// Creation logical time.
    #[serde(deserialize_with = "flexible_u64", serialize_with = "as_string")]
    pub created_lt: u64,
    /// The body's hash, base64.
    #[serde(default)]
    pub body_hash: String,
    /// The body.
    pub msg_data: MsgData,
}

/// `raw.transaction` (getTransactions).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawTransaction {
    /// `raw.transaction`.
    #[serde(rename = "@type", default)]
    pub kind: String,
    /// The account (some servers leave it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<AccountAddress>,
    /// Unix time.
    pub utime: u32,
    /// The transaction's bag of cells, base64.
    pub data: String,
    /// Its identity.
    pub transaction_id: TransactionIdJson,
    /// Total fees.
    #[serde(deserialize_with = "flexible_u64", serialize_with = "as_string")]
    pub fee: u64,
    /// Storage fees.
    #[serde(deserialize_with = "flexible_u64", serialize_with = "as_string")]
    pub storage_fee: u64,
    /// Other fees.
    #[serde(deserialize_with = "flexible_u64", serialize_with = "as_string")]
    pub other_fee: u64,
    /// The inbound message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_msg: Option<RawMessage>,
    /// The outbound messages.
    #[serde(default)]
    pub out_msgs: Vec<RawMessage>,
}

/// The body of `runGetMethod`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunGetMethodRequest {
    /// The account.
    pub address: String,
    /// The method's name.
    pub method: String,
    /// Arguments, in toncenter's legacy stack encoding.
    #[serde(default)]
    pub stack: Vec<Value>,
}

/// `smc.runResult`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// `smc.runResult`.
    #[serde(rename = "@type", default)]
    pub kind: String,
    /// Gas used.
    #[serde(deserialize_with = "flexible_u64", serialize_with = "as_u64")]
    pub gas_used: u64,
    /// Results, in the legacy stack encoding.
    pub stack: Vec<Value>,
    /// The VM's exit code.
    pub exit_code: i32,
}

fn as_u64<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(*v)
}

/// `blocks.masterchainInfo`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MasterchainInfo {
    /// `blocks.masterchainInfo`.
    #[serde(rename = "@type", default)]
    pub kind: String,
    /// The newest block.
    pub last: BlockIdExt,
    /// Its state's root hash, base64.
    #[serde(default)]
    pub state_root_hash: String,
    /// The zero state.
    pub init: BlockIdExt,
}

/// The body of `sendBoc` and `sendBocReturnHash`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendBocRequest {
    /// The message's bag of cells, base64.
    pub boc: String,
}

/// `raw.extMessageInfo` (sendBocReturnHash).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtMessageInfo {
    /// `raw.extMessageInfo`.
    #[serde(rename = "@type", default)]
    pub kind: String,
    /// The message's hash, base64.
    pub hash: String,
}

/// The body of `estimateFee`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EstimateFeeRequest {
    /// The destination.
    pub address: String,
    /// The external message's body, base64 bag of cells.
    pub body: String,
    /// Code to deploy with it, base64; empty when none.
    #[serde(default)]
    pub init_code: String,
    /// Data to deploy with it, base64; empty when none.
    #[serde(default)]
    pub init_data: String,
    /// Whether to pretend signatures check.
    #[serde(default)]
    pub ignore_chksig: bool,
}

/// `fees`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Fees {
    /// `fees`.
    #[serde(rename = "@type", default)]
    pub kind: String,
    /// Import fee.
    #[serde(deserialize_with = "flexible_u64", serialize_with = "as_u64")]
    pub in_fwd_fee: u64,
    /// Storage fee.
    #[serde(deserialize_with = "flexible_u64", serialize_with = "as_u64")]
    pub storage_fee: u64,
    /// Gas fee.
    #[serde(deserialize_with = "flexible_u64", serialize_with = "as_u64")]
    pub gas_fee: u64,
    /// Forwarding fees.
    #[serde(deserialize_with = "flexible_u64", serialize_with = "as_u64")]
    pub fwd_fee: u64,
}

/// `query.fees`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryFees {
    /// `query.fees`.
    #[serde(rename = "@type", default)]
    pub kind: String,
    /// What the destination pays for the external message.
    pub source_fees: Fees,
    /// What the messages it sends cost their destinations.
    #[serde(default)]
    pub destination_fees: Vec<Fees>,
}

/// A bag of cells as toncenter writes it: standard base64.
pub fn boc_base64(cell: &Cell) -> String {
    BASE64_STANDARD.encode(Boc::encode(cell))
}

/// What toncenter's JSON held that this side cannot read (or send).
#[derive(Debug, Clone, thiserror::Error)]
pub enum WireError {
    /// Neither standard nor URL-safe base64.
    #[error("not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// Base64, but not a bag of cells.
    #[error("not a bag of cells: {0}")]
    Boc(String),
    /// A hash of the wrong length.
    #[error("a hash of {0} bytes, not 32")]
    HashLength(usize),
    /// An argument toncenter v2 cannot take.
    #[error("a {0} argument: toncenter v2 takes numbers, cells and slices")]
    Argument(&'static str),
    /// A number that does not parse.
    #[error("{0:?} is not a number")]
    Number(String),
    /// A stack entry of the wrong shape; the text says which.
    #[error("{0}")]
    Shape(&'static str),
    /// A stack entry of a type this side does not know.
    #[error("a stack entry of unknown type {0:?}")]
    UnknownType(String),
}

/// Reads a base64 bag of cells (standard or URL-safe alphabet).
pub fn cell_from_base64(s: &str) -> Result<Cell, WireError> {
    let bytes = BASE64_STANDARD
        .decode(s.trim())
        .or_else(|_| base64::prelude::BASE64_URL_SAFE.decode(s.trim()))?;
    Boc::decode(bytes).map_err(|e| WireError::Boc(e.to_string()))
}

/// Reads a hash in base64 (toncenter's form) or hex.
pub fn hash_from_str(s: &str) -> Result<HashBytes, WireError> {
    let s = s.trim();
    let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        // Checked above: every pair is two hex digits.
        (0..32)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or_default())
            .collect::<Vec<u8>>()
    } else {
        BASE64_STANDARD
            .decode(s)
            .or_else(|_| base64::prelude::BASE64_URL_SAFE.decode(s))?
    };
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| WireError::HashLength(b.len()))?;
    Ok(HashBytes(arr))
}

/// Encodes a stack entry in toncenter's legacy form: `["num", "0x.."]`,
/// `["tvm.Cell", base64]`, `["tvm.Slice", base64]` (arguments) and
/// `["cell", {"bytes": base64}]`, `["tuple", {...}]` (results).
pub fn encode_argument(entry: &StackEntry) -> Result<Value, WireError> {
    Ok(match entry {
        StackEntry::Int(v) => json!(["num", hex_int(v)]),
        StackEntry::Cell(c) => json!(["tvm.Cell", boc_base64(c)]),
        StackEntry::Slice(c) => json!(["tvm.Slice", boc_base64(c)]),
        StackEntry::Builder(c) => json!(["tvm.Cell", boc_base64(c)]),
        StackEntry::Tuple(_) | StackEntry::Null => {
            return Err(WireError::Argument(entry.type_name()))
        }
    })
}

/// Encodes a returned stack entry as toncenter v2 returns it.
pub fn encode_result(entry: &StackEntry) -> Value {
    match entry {
        StackEntry::Int(v) => json!(["num", hex_int(v)]),
        StackEntry::Cell(c) | StackEntry::Builder(c) => json!(["cell", {"bytes": boc_base64(c)}]),
        // toncenter returns slices as cells (an address comes back as
        // `["cell", {"bytes": ...}]`); clients read either.
        StackEntry::Slice(c) => json!(["cell", {"bytes": boc_base64(c)}]),
        StackEntry::Tuple(items) => json!(["tuple", {
            "@type": "tvm.tuple",
            "elements": items.iter().map(encode_element).collect::<Vec<_>>(),
        }]),
        StackEntry::Null => json!(["null", null]),
    }
}

fn encode_element(entry: &StackEntry) -> Value {
    match entry {
        StackEntry::Int(v) => {
            json!({"@type": "tvm.stackEntryNumber", "number": {"@type": "tvm.numberDecimal", "number": v.to_string()}})
        }
        StackEntry::Cell(c) | StackEntry::Builder(c) => {
            json!({"@type": "tvm.stackEntryCell", "cell": {"@type": "tvm.cell", "bytes": boc_base64(c)}})
        }
        StackEntry::Slice(c) => {
            json!({"@type": "tvm.stackEntrySlice", "slice": {"@type": "tvm.slice", "bytes": boc_base64(c)}})
        }
        StackEntry::Tuple(items) => {
            json!({"@type": "tvm.stackEntryTuple", "tuple": {"@type": "tvm.tuple", "elements": items.iter().map(encode_element).collect::<Vec<_>>()}})
        }
        StackEntry::Null => json!({"@type": "tvm.stackEntryUnsupported"}),
    }
}

fn hex_int(v: &BigInt) -> String {
    if v.sign() == num_bigint::Sign::Minus {
        format!("-0x{:x}", -v)
    } else {
        format!("0x{v:x}")
    }
}

fn parse_int(s: &str) -> Result<BigInt, WireError> {
    let s = s.trim();
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let v = match rest.strip_prefix("0x").or_else(|| rest.strip_prefix("0X")) {
        Some(h) => BigInt::parse_bytes(h.as_bytes(), 16),
        None => BigInt::parse_bytes(rest.as_bytes(), 10),
    }
    .ok_or_else(|| WireError::Number(s.to_string()))?;
    Ok(if neg { -v } else { v })
}

fn bytes_of(v: &Value) -> Result<Cell, WireError> {
    let s = match v {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o
            .get("bytes")
            .and_then(Value::as_str)
            .ok_or(WireError::Shape("a cell entry without \"bytes\""))?,
        _ => {
            return Err(WireError::Shape(
                "a cell entry that is neither a string nor an object",
            ))
        }
    };
    cell_from_base64(s)
}

/// Decodes one entry of a legacy stack (either direction).
pub fn decode_entry(v: &Value) -> Result<StackEntry, WireError> {
    const NOT_A_PAIR: WireError =
        WireError::Shape("a stack entry that is not a [type, value] pair");
    let pair = v.as_array().ok_or(NOT_A_PAIR)?;
    let (kind, value) = match pair.as_slice() {
        [Value::String(k), value] => (k.as_str(), value),
        _ => return Err(NOT_A_PAIR),
    };
    Ok(match kind {
        "num" | "int" | "number" => match value {
            Value::String(s) => StackEntry::Int(parse_int(s)?),
            Value::Number(n) => StackEntry::Int(parse_int(&n.to_string())?),
            _ => {
                return Err(WireError::Shape(
                    "a number entry whose value is not a number",
                ))
            }
        },
        "cell" | "tvm.Cell" => StackEntry::Cell(bytes_of(value)?),
        "slice" | "tvm.Slice" => StackEntry::Slice(bytes_of(value)?),
        "builder" | "tvm.Builder" => StackEntry::Builder(bytes_of(value)?),
        "tuple" | "list" | "tvm.Tuple" | "tvm.List" => {
            let elements = value
                .get("elements")
                .and_then(Value::as_array)
                .ok_or(WireError::Shape("a tuple without \"elements\""))?;
            StackEntry::Tuple(
                elements
                    .iter()
                    .map(decode_element)
                    .collect::<Result<_, _>>()?,
            )
        }
        "null" => StackEntry::Null,
        other => return Err(WireError::UnknownType(other.to_string())),
    })
}

fn decode_element(v: &Value) -> Result<StackEntry, WireError> {
    let kind = v.get("@type").and_then(Value::as_str).unwrap_or_default();
    Ok(match kind {
        "tvm.stackEntryNumber" => {
            let n = v
                .pointer("/number/number")
                .and_then(Value::as_str)
                .ok_or(WireError::Shape("a number element without number.number"))?;
            StackEntry::Int(parse_int(n)?)
        }
        "tvm.stackEntryCell" => StackEntry::Cell(bytes_of(
            (v.get("cell")).ok_or(WireError::Shape("a cell element without cell"))?,
        )?),
        "tvm.stackEntrySlice" => StackEntry::Slice(bytes_of(
            (v.get("slice")).ok_or(WireError::Shape("a slice element without slice"))?,
        )?),
        "tvm.stackEntryTuple" | "tvm.stackEntryList" => {
            let key = if kind == "tvm.stackEntryTuple" {
                "/tuple/elements"
            } else {
                "/list/elements"
            };
            let elements = v
                .pointer(key)
                .and_then(Value::as_array)
                .ok_or(WireError::Shape("a tuple element without elements"))?;
            StackEntry::Tuple(
                elements
                    .iter()
                    .map(decode_element)
                    .collect::<Result<_, _>>()?,
            )
        }
        "tvm.stackEntryUnsupported" => StackEntry::Null,
        other => return Err(WireError::UnknownType(other.to_string())),
    })
}
