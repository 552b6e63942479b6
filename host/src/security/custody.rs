//! Custody: tamper-evidence hashes over what a sink is about to store,
//! computed in the host, compatible with the reference `nats-sinks` 0.4.3
//! (`nats_sinks.custody.v1`).
//!
//! Three digests (SHA-256 or SHA-512, lower-case hex), each over canonical
//! JSON (sorted keys, `,`/`:` separators, UTF-8, non-ASCII not escaped,
//! numbers as Python prints them):
//!
//! - `payload_hash`: the stored payload as the reference's JSON storage
//!   normalises it: valid JSON is re-serialised canonically; other UTF-8 text
//!   and other bytes are wrapped in the `_nats_sinks` payload envelope;
//! - `metadata_hash`: the metadata document of
//!   [`crate::security::metadata::metadata_document`] without `stored_at`
//!   (the sink's own clock), `freshness.event_age_at_store_seconds` taken at
//!   receipt;
//! - `record_hash`: `{schema, schema_version, algorithm, key_id,
//!   payload_hash, metadata_hash, previous_record_hash, subject, stream,
//!   stream_sequence, message_id}`.
//!
//! See `docs/custody.md` for how a verifier recomputes them from a record.

use base64::Engine as _;
use serde::Serialize;
use sha2::Digest as _;

use crate::config::{CustodyAlgorithm, CustodyConfig};
use crate::envelope::{Custody, Envelope};

/// Schema of the custody object and of the record-hash document.
pub const CUSTODY_SCHEMA: &str = "nats_sinks.custody.v1";
/// Version number in the custody object.
pub const CUSTODY_SCHEMA_VERSION: u64 = 1;
/// `hash_input_format` of the custody object.
pub const CUSTODY_HASH_INPUT_FORMAT: &str = "canonical-json";
/// `privacy` note of the custody object.
pub const CUSTODY_PRIVACY_NOTE: &str = "hashes_are_not_encryption";

/// Why custody could not be computed. Every variant is a permanent failure
/// of that message (DLQ), as in the reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustodyError {
    /// A canonical hash input is larger than `max_hash_input_bytes`.
    #[error("custody {input} hash input exceeds custody max_hash_input_bytes ({limit})")]
    InputTooLarge {
        /// `payload`, `metadata` or `record`.
        input: &'static str,
        /// The configured limit.
        limit: u64,
    },
    /// The payload parses as JSON but cannot be written as standard JSON
    /// (a number overflowing to infinity, a lone surrogate escape) or nests
    /// too deeply.
    #[error("custody payload hash input is not canonical JSON serializable: {0}")]
    PayloadNotSerializable(String),
    /// The previous-hash header is present but not a hex SHA-256/512 digest.
    #[error("custody previous_record_hash must be a sha256 or sha512 hexadecimal digest")]
    BadPreviousHash,
}

impl CustodyError {
    /// The reference's error class for DLQ records (`Nats-Sinks-Error-Type`).
    pub fn error_type(&self) -> &'static str {
        "ValidationError"
    }
}

/// Computes custody hashes under one `custody` configuration.
#[derive(Debug, Clone)]
pub struct CustodyPolicy {
    algorithm: CustodyAlgorithm,
    key_id: Option<String>,
    hash_payload: bool,
    hash_metadata: bool,
    previous_hash_header: Option<String>,
    max_bytes: u64,
}

impl CustodyPolicy {
    /// The policy of an enabled section; `None` when custody is off.
    pub fn from_config(config: &CustodyConfig) -> Option<Self> {
        config.enabled.then(|| Self::new(config))
    }

    /// The policy regardless of `enabled` (tests, verification tools).
    pub fn new(config: &CustodyConfig) -> Self {
        Self {
            algorithm: config.algorithm,
            key_id: config.effective_key_id(),
            hash_payload: config.hash_payload,
            hash_metadata: config.hash_metadata,
            previous_hash_header: config
                .include_previous_hash
                .then(|| config.effective_previous_hash_header().to_string()),
            max_bytes: config.max_hash_input_bytes,
        }
    }

    /// The hash algorithm.
    pub fn algorithm(&self) -> CustodyAlgorithm {
        self.algorithm
    }

    /// Custody for one message.
    ///
    /// `envelope.payload` is the body as received (before the host's
    /// encryption: it gives `metadata.payload.original_size_bytes`);
    /// `stored_payload` is the body the sink will store (after encryption;
    /// it gives `payload_hash` and `delivered_size_bytes`). Without
    /// encryption both are the same bytes. `envelope.metadata` must already
    /// hold the final priority, classification, labels and security labels.
    pub fn compute(
        &self,
        envelope: &Envelope,
        stored_payload: &[u8],
    ) -> Result<Custody, CustodyError> {
        self.compute_with(envelope, stored_payload, StoredForm::AsReceived)
    }

    /// Custody for a message whose stored payload is an encrypted envelope
    /// this host has just rendered (`security::encryption`): canonical,
    /// ASCII-only JSON. When it holds no escape sequence, its canonical form
    /// is the bytes themselves, so the payload is hashed without being
    /// parsed and re-rendered; otherwise this is [`Self::compute`].
    pub fn compute_sealed(
        &self,
        envelope: &Envelope,
        sealed_payload: &[u8],
    ) -> Result<Custody, CustodyError> {
        self.compute_with(envelope, sealed_payload, StoredForm::RenderedCanonicalAscii)
    }

    fn compute_with(
        &self,
        envelope: &Envelope,
        stored_payload: &[u8],
        form: StoredForm,
    ) -> Result<Custody, CustodyError> {
        let payload_hash = if self.hash_payload {
            let hash = match form {
                StoredForm::RenderedCanonicalAscii if is_its_own_canonical_form(stored_payload) => {
                    self.check_size("payload", stored_payload)?;
                    self.digest(stored_payload)
                }
                _ => self.digest(&self.payload_hash_input(stored_payload)?),
            };
            Some(hash)
        } else {
            None
        };
        let metadata_hash = if self.hash_metadata {
            let input = self.metadata_hash_input(envelope, stored_payload)?;
            Some(self.digest(&input))
        } else {
            None
        };
        let previous_record_hash = self.previous_record_hash(envelope)?;
        let record = serde_json::json!({
            "schema": CUSTODY_SCHEMA,
            "schema_version": CUSTODY_SCHEMA_VERSION,
            "algorithm": self.algorithm.as_str(),
            "key_id": self.key_id,
            "payload_hash": payload_hash,
            "metadata_hash": metadata_hash,
            "previous_record_hash": previous_record_hash,
            "subject": envelope.subject,
            "stream": envelope.stream,
            "stream_sequence": envelope.stream_sequence,
            "message_id": envelope.message_id,
        });
        let record_input = crate::security::canonical::to_canonical_bytes(&record);
        self.check_size("record", &record_input)?;
        Ok(Custody {
            algorithm: self.algorithm.as_str().to_string(),
            key_id: self.key_id.clone(),
            payload_hash,
            metadata_hash,
            record_hash: self.digest(&record_input),
            previous_record_hash,
        })
    }

    /// The exact bytes `payload_hash` is computed over.
    pub fn payload_hash_input(&self, stored_payload: &[u8]) -> Result<Vec<u8>, CustodyError> {
        let input = payload_hash_input(stored_payload)?;
        self.check_size("payload", &input)?;
        Ok(input)
    }

    /// The exact bytes `metadata_hash` is computed over.
    pub fn metadata_hash_input(
        &self,
        envelope: &Envelope,
        stored_payload: &[u8],
    ) -> Result<Vec<u8>, CustodyError> {
        let document = crate::security::metadata::metadata_document(envelope, stored_payload, None);
        let input = crate::security::canonical::to_canonical_bytes(&document);
        self.check_size("metadata", &input)?;
        Ok(input)
    }

    fn check_size(&self, input: &'static str, bytes: &[u8]) -> Result<(), CustodyError> {
        if bytes.len() as u64 > self.max_bytes {
            return Err(CustodyError::InputTooLarge {
                input,
                limit: self.max_bytes,
            });
        }
        Ok(())
    }

    fn digest(&self, bytes: &[u8]) -> String {
        match self.algorithm {
            CustodyAlgorithm::Sha256 => hex::encode(sha2::Sha256::digest(bytes)),
            CustodyAlgorithm::Sha512 => hex::encode(sha2::Sha512::digest(bytes)),
        }
    }

    /// The producer's previous record hash: trimmed, lower-cased, 64 or 128
    /// hex digits; an absent or blank header is none.
    fn previous_record_hash(&self, envelope: &Envelope) -> Result<Option<String>, CustodyError> {
        let Some(header) = &self.previous_hash_header else {
            return Ok(None);
        };
        let headers = crate::security::metadata::normalized_headers(&envelope.headers);
        let wanted = header.to_lowercase();
        let Some((_, value)) = headers
            .iter()
            .find(|(name, _)| name.to_lowercase() == wanted)
        else {
            return Ok(None);
        };
        let value = value.trim();
        if value.is_empty() {
            return Ok(None);
        }
        if !(value.len() == 64 || value.len() == 128)
            || !value.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(CustodyError::BadPreviousHash);
        }
        Ok(Some(value.to_ascii_lowercase()))
    }
}

/// What the host knows about the form of a stored payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoredForm {
    /// Bytes as a producer sent them: normalise as the reference does.
    AsReceived,
    /// Rendered by this host with `json::canonical_ascii`.
    RenderedCanonicalAscii,
}

/// Whether canonical-ASCII JSON rendered by this host is byte-identical to
/// its canonical (`ensure_ascii=False`) form: true when it has no backslash,
/// i.e. no escape sequence that the two forms could write differently.
fn is_its_own_canonical_form(rendered: &[u8]) -> bool {
    rendered.is_ascii() && !rendered.contains(&b'\\')
}

/// The full custody object as a record stores it (`custody` in the file
/// sink's record), with the reference's constant fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustodyObject {
    /// `sha256` or `sha512`.
    pub algorithm: String,
    /// Always `canonical-json`.
    pub hash_input_format: &'static str,
    /// Whether `metadata_hash` was computed.
    pub hash_metadata: bool,
    /// Whether `payload_hash` was computed.
    pub hash_payload: bool,
    /// Custody policy key id.
    pub key_id: Option<String>,
    /// Hex digest of the canonical metadata document.
    pub metadata_hash: Option<String>,
    /// Hex digest of the canonical payload.
    pub payload_hash: Option<String>,
    /// The producer's previous record hash.
    pub previous_record_hash: Option<String>,
    /// Always `hashes_are_not_encryption`.
    pub privacy: &'static str,
    /// Hex digest of the record-hash document.
    pub record_hash: String,
    /// Always `nats_sinks.custody.v1`.
    pub schema: &'static str,
    /// Always 1.
    pub schema_version: u64,
}

impl From<&Custody> for CustodyObject {
    fn from(custody: &Custody) -> Self {
        Self {
            algorithm: custody.algorithm.clone(),
            hash_input_format: CUSTODY_HASH_INPUT_FORMAT,
            hash_metadata: custody.metadata_hash.is_some(),
            hash_payload: custody.payload_hash.is_some(),
            key_id: custody.key_id.clone(),
            metadata_hash: custody.metadata_hash.clone(),
            payload_hash: custody.payload_hash.clone(),
            previous_record_hash: custody.previous_record_hash.clone(),
            privacy: CUSTODY_PRIVACY_NOTE,
            record_hash: custody.record_hash.clone(),
            schema: CUSTODY_SCHEMA,
            schema_version: CUSTODY_SCHEMA_VERSION,
        }
    }
}

impl CustodyObject {
    /// As a JSON value.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// The canonical bytes the reference hashes for a payload (its
/// `json_or_envelope` storage form): valid standard JSON re-serialised;
/// other UTF-8 text as `{"_nats_sinks":{...,"payload_format":"text"},
/// "payload":TEXT}`; anything else as base64 with `"payload_format":"bytes"`.
pub fn payload_hash_input(data: &[u8]) -> Result<Vec<u8>, CustodyError> {
    let value = match std::str::from_utf8(data) {
        Ok(text) => match json::parse(text) {
            Ok(value) => value,
            Err(json::ParseError::LoneSurrogate) => {
                return Err(CustodyError::PayloadNotSerializable(
                    "a string holds an unpaired surrogate escape".to_string(),
                ))
            }
            Err(json::ParseError::TooDeep) => {
                return Err(CustodyError::PayloadNotSerializable(format!(
                    "nesting deeper than {} levels",
                    json::MAX_DEPTH
                )))
            }
            Err(_) => payload_envelope(data, "text", "utf-8", json::Json::Str(text.to_string())),
        },
        Err(_) => payload_envelope(
            data,
            "bytes",
            "base64",
            json::Json::Str(base64::engine::general_purpose::STANDARD.encode(data)),
        ),
    };
    json::canonical(&value, false)
        .map(String::into_bytes)
        .map_err(CustodyError::PayloadNotSerializable)
}

fn payload_envelope(data: &[u8], format: &str, encoding: &str, payload: json::Json) -> json::Json {
    use json::Json;
    Json::Object(vec![
        (
            "_nats_sinks".to_string(),
            Json::Object(vec![
                (
                    "payload_envelope_version".to_string(),
                    Json::Int("1".to_string()),
                ),
                ("payload_format".to_string(), Json::Str(format.to_string())),
                (
                    "payload_encoding".to_string(),
                    Json::Str(encoding.to_string()),
                ),
                (
                    "sha256".to_string(),
                    Json::Str(hex::encode(sha2::Sha256::digest(data))),
                ),
                ("size_bytes".to_string(), Json::Int(data.len().to_string())),
            ]),
        ),
        ("payload".to_string(), payload),
    ])
}

/// JSON as Python's `json` module reads and writes it — the byte-level
/// contract of the reference's hashes, signatures and envelopes.
///
/// - [`parse`]: standard JSON only (no `NaN`/`Infinity`), duplicate object
///   keys rejected, integers kept exactly (with Python's 4300-digit limit),
///   other numbers as `f64`;
/// - [`canonical`] (for [`Json`]) and [`canonical_ascii`] (for `serde_json`
///   values, ASCII form): `json.dumps(value, sort_keys=True,
///   separators=(",", ":"), ensure_ascii=E, allow_nan=False)`: floats as
///   Python's `repr` (`1.0`, `1e-05`, `1e+16`), strings escaped as Python
///   does.
///
/// `serde_json::Value` documents are rendered by [`crate::security::canonical`];
/// this module adds what that cannot do: parsing with duplicate-key
/// rejection, integers beyond 64 bits, and the `ensure_ascii=True` form.
pub(crate) mod json {
    use std::fmt::Write as _;

    /// Deepest nesting accepted (Python's own limit is near 1000).
    pub(crate) const MAX_DEPTH: usize = 512;
    /// Python's default limit on digits of an integer read from text.
    const MAX_INT_DIGITS: usize = 4300;

    /// A parsed JSON value, object members in document order.
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) enum Json {
        Null,
        Bool(bool),
        /// Decimal digits with optional `-`, no leading zeros, never `-0`.
        Int(String),
        Float(f64),
        Str(String),
        Array(Vec<Json>),
        Object(Vec<(String, Json)>),
    }

    impl Json {
        /// Member `key` of an object.
        pub(crate) fn get(&self, key: &str) -> Option<&Json> {
            match self {
                Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }

        pub(crate) fn as_str(&self) -> Option<&str> {
            match self {
                Json::Str(s) => Some(s),
                _ => None,
            }
        }

        /// A non-negative integer that fits in `u64`.
        pub(crate) fn as_u64(&self) -> Option<u64> {
            match self {
                Json::Int(digits) => digits.parse().ok(),
                _ => None,
            }
        }

        /// From a `serde_json` value (objects in the map's order).
        pub(crate) fn from_value(value: &serde_json::Value) -> Json {
            match value {
                serde_json::Value::Null => Json::Null,
                serde_json::Value::Bool(b) => Json::Bool(*b),
                serde_json::Value::Number(n) => {
                    if let Some(i) = n.as_i64() {
                        Json::Int(i.to_string())
                    } else if let Some(u) = n.as_u64() {
                        Json::Int(u.to_string())
                    } else {
                        Json::Float(n.as_f64().unwrap_or(f64::NAN))
                    }
                }
                serde_json::Value::String(s) => Json::Str(s.clone()),
                serde_json::Value::Array(items) => {
                    Json::Array(items.iter().map(Json::from_value).collect())
                }
                serde_json::Value::Object(map) => Json::Object(
                    map.iter()
                        .map(|(k, v)| (k.clone(), Json::from_value(v)))
                        .collect(),
                ),
            }
        }

        /// To a `serde_json` value (integers beyond 64 bits become floats).
        pub(crate) fn to_value(&self) -> serde_json::Value {
            match self {
                Json::Null => serde_json::Value::Null,
                Json::Bool(b) => serde_json::Value::Bool(*b),
                Json::Int(digits) => {
                    if let Ok(i) = digits.parse::<i64>() {
                        i.into()
                    } else if let Ok(u) = digits.parse::<u64>() {
                        u.into()
                    } else {
                        digits
                            .parse::<f64>()
                            .ok()
                            .and_then(serde_json::Number::from_f64)
                            .map_or(serde_json::Value::Null, serde_json::Value::Number)
                    }
                }
                Json::Float(f) => serde_json::Number::from_f64(*f)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number),
                Json::Str(s) => serde_json::Value::String(s.clone()),
                Json::Array(items) => {
                    serde_json::Value::Array(items.iter().map(Json::to_value).collect())
                }
                Json::Object(members) => serde_json::Value::Object(
                    members
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_value()))
                        .collect(),
                ),
            }
        }
    }

    /// Why text is not accepted as JSON.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum ParseError {
        /// Not JSON (position in bytes).
        Syntax(usize),
        /// An object has this key twice.
        DuplicateKey(String),
        /// More than [`MAX_DEPTH`] nested arrays/objects.
        TooDeep,
        /// A `\uD8xx`-style escape without its pair (Python reads it, but
        /// cannot encode it as UTF-8).
        LoneSurrogate,
        /// An integer with more than 4300 digits (Python refuses it).
        IntegerTooLong,
    }

    impl std::fmt::Display for ParseError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                ParseError::Syntax(at) => write!(f, "not valid JSON (at byte {at})"),
                ParseError::DuplicateKey(key) => write!(f, "duplicate JSON object key: {key}"),
                ParseError::TooDeep => write!(f, "nested deeper than {MAX_DEPTH} levels"),
                ParseError::LoneSurrogate => f.write_str("unpaired surrogate escape in a string"),
                ParseError::IntegerTooLong => {
                    write!(f, "integer longer than {MAX_INT_DIGITS} digits")
                }
            }
        }
    }

    /// Parses standard JSON text.
    pub(crate) fn parse(text: &str) -> Result<Json, ParseError> {
        let mut parser = Parser {
            s: text.as_bytes(),
            pos: 0,
            depth: 0,
        };
        parser.ws();
        let value = parser.value()?;
        parser.ws();
        if parser.pos != parser.s.len() {
            return Err(ParseError::Syntax(parser.pos));
        }
        Ok(value)
    }

    struct Parser<'a> {
        s: &'a [u8],
        pos: usize,
        depth: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while matches!(self.s.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.pos += 1;
            }
        }

        fn err<T>(&self) -> Result<T, ParseError> {
            Err(ParseError::Syntax(self.pos))
        }

        fn literal(&mut self, word: &[u8], value: Json) -> Result<Json, ParseError> {
            if self.s[self.pos..].starts_with(word) {
                self.pos += word.len();
                Ok(value)
            } else {
                self.err()
            }
        }

        fn value(&mut self) -> Result<Json, ParseError> {
            match self.s.get(self.pos) {
                Some(b'{') => self.object(),
                Some(b'[') => self.array(),
                Some(b'"') => Ok(Json::Str(self.string()?)),
                Some(b't') => self.literal(b"true", Json::Bool(true)),
                Some(b'f') => self.literal(b"false", Json::Bool(false)),
                Some(b'n') => self.literal(b"null", Json::Null),
                Some(b'-' | b'0'..=b'9') => self.number(),
                _ => self.err(),
            }
        }

        fn enter(&mut self) -> Result<(), ParseError> {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(ParseError::TooDeep);
            }
            Ok(())
        }

        fn object(&mut self) -> Result<Json, ParseError> {
            self.enter()?;
            self.pos += 1;
            let mut members: Vec<(String, Json)> = Vec::new();
            self.ws();
            if self.s.get(self.pos) == Some(&b'}') {
                self.pos += 1;
                self.depth -= 1;
                return Ok(Json::Object(members));
            }
            loop {
                self.ws();
                if self.s.get(self.pos) != Some(&b'"') {
                    return self.err();
                }
                let key = self.string()?;
                self.ws();
                if self.s.get(self.pos) != Some(&b':') {
                    return self.err();
                }
                self.pos += 1;
                self.ws();
                let value = self.value()?;
                if members.iter().any(|(k, _)| *k == key) {
                    return Err(ParseError::DuplicateKey(key));
                }
                members.push((key, value));
                self.ws();
                match self.s.get(self.pos) {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        self.depth -= 1;
                        return Ok(Json::Object(members));
                    }
                    _ => return self.err(),
                }
            }
        }

        fn array(&mut self) -> Result<Json, ParseError> {
            self.enter()?;
            self.pos += 1;
            let mut items = Vec::new();
            self.ws();
            if self.s.get(self.pos) == Some(&b']') {
                self.pos += 1;
                self.depth -= 1;
                return Ok(Json::Array(items));
            }
            loop {
                self.ws();
                items.push(self.value()?);
                self.ws();
                match self.s.get(self.pos) {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        self.depth -= 1;
                        return Ok(Json::Array(items));
                    }
                    _ => return self.err(),
                }
            }
        }

        fn hex4(&mut self) -> Result<u32, ParseError> {
            let digits = self
                .s
                .get(self.pos..self.pos + 4)
                .ok_or(ParseError::Syntax(self.pos))?;
            let mut value = 0u32;
            for &d in digits {
                let v = (d as char)
                    .to_digit(16)
                    .ok_or(ParseError::Syntax(self.pos))?;
                value = value * 16 + v;
            }
            self.pos += 4;
            Ok(value)
        }

        fn string(&mut self) -> Result<String, ParseError> {
            self.pos += 1; // opening quote
            let mut out = String::new();
            loop {
                let start = self.pos;
                while let Some(&b) = self.s.get(self.pos) {
                    if b == b'"' || b == b'\\' || b < 0x20 {
                        break;
                    }
                    self.pos += 1;
                }
                // The input is a `str`, and the run stops at ASCII bytes, so
                // the run is valid UTF-8.
                out.push_str(
                    std::str::from_utf8(&self.s[start..self.pos])
                        .map_err(|_| ParseError::Syntax(start))?,
                );
                match self.s.get(self.pos) {
                    Some(b'"') => {
                        self.pos += 1;
                        return Ok(out);
                    }
                    Some(b'\\') => {
                        self.pos += 1;
                        let escape = *self.s.get(self.pos).ok_or(ParseError::Syntax(self.pos))?;
                        self.pos += 1;
                        match escape {
                            b'"' => out.push('"'),
                            b'\\' => out.push('\\'),
                            b'/' => out.push('/'),
                            b'b' => out.push('\u{8}'),
                            b'f' => out.push('\u{c}'),
                            b'n' => out.push('\n'),
                            b'r' => out.push('\r'),
                            b't' => out.push('\t'),
                            b'u' => {
                                let unit = self.hex4()?;
                                let code = if (0xD800..0xDC00).contains(&unit) {
                                    if self.s.get(self.pos..self.pos + 2) == Some(b"\\u") {
                                        let save = self.pos;
                                        self.pos += 2;
                                        let low = self.hex4()?;
                                        if (0xDC00..0xE000).contains(&low) {
                                            0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                                        } else {
                                            self.pos = save;
                                            return Err(ParseError::LoneSurrogate);
                                        }
                                    } else {
                                        return Err(ParseError::LoneSurrogate);
                                    }
                                } else if (0xDC00..0xE000).contains(&unit) {
                                    return Err(ParseError::LoneSurrogate);
                                } else {
                                    unit
                                };
                                out.push(char::from_u32(code).ok_or(ParseError::LoneSurrogate)?);
                            }
                            _ => return Err(ParseError::Syntax(self.pos - 1)),
                        }
                    }
                    _ => return self.err(), // end of input or a control character
                }
            }
        }

        fn digits(&mut self) -> usize {
            let start = self.pos;
            while matches!(self.s.get(self.pos), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            self.pos - start
        }

        fn number(&mut self) -> Result<Json, ParseError> {
            let start = self.pos;
            let negative = self.s[self.pos] == b'-';
            if negative {
                self.pos += 1;
            }
            let int_start = self.pos;
            match self.s.get(self.pos) {
                Some(b'0') => self.pos += 1,
                Some(b'1'..=b'9') => {
                    self.digits();
                }
                _ => return self.err(),
            }
            let int_end = self.pos;
            let mut is_float = false;
            // A fraction or exponent only counts when complete (Python's
            // pattern); otherwise the number ends before it.
            if self.s.get(self.pos) == Some(&b'.')
                && matches!(self.s.get(self.pos + 1), Some(b'0'..=b'9'))
            {
                self.pos += 1;
                self.digits();
                is_float = true;
            }
            if matches!(self.s.get(self.pos), Some(b'e' | b'E')) {
                let save = self.pos;
                self.pos += 1;
                if matches!(self.s.get(self.pos), Some(b'+' | b'-')) {
                    self.pos += 1;
                }
                if self.digits() == 0 {
                    self.pos = save;
                } else {
                    is_float = true;
                }
            }
            let text = std::str::from_utf8(&self.s[start..self.pos])
                .map_err(|_| ParseError::Syntax(start))?;
            if is_float {
                let value: f64 = text.parse().map_err(|_| ParseError::Syntax(start))?;
                return Ok(Json::Float(value));
            }
            let digits = std::str::from_utf8(&self.s[int_start..int_end])
                .map_err(|_| ParseError::Syntax(start))?;
            if digits.len() > MAX_INT_DIGITS {
                return Err(ParseError::IntegerTooLong);
            }
            if digits == "0" {
                return Ok(Json::Int("0".to_string()));
            }
            Ok(Json::Int(if negative {
                format!("-{digits}")
            } else {
                digits.to_string()
            }))
        }
    }

    /// Python's `repr(float)`: shortest round-trip digits, positional
    /// between 1e-4 and 1e16, otherwise `d.ddde±XX`.
    pub(crate) fn float_repr(value: f64) -> String {
        if value == 0.0 {
            return if value.is_sign_negative() {
                "-0.0"
            } else {
                "0.0"
            }
            .to_string();
        }
        let sci = format!("{value:e}");
        let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
        let exponent: i32 = exponent.parse().unwrap_or(0);
        let (sign, mantissa) = match mantissa.strip_prefix('-') {
            Some(rest) => ("-", rest),
            None => ("", mantissa),
        };
        let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
        let digits = python_tie_break(value.abs(), digits, exponent);
        let n = digits.len() as i32;
        let point = exponent + 1; // value = 0.DIGITS × 10^point
        let mut out = String::from(sign);
        if -4 < point && point <= 16 {
            if point <= 0 {
                out.push_str("0.");
                out.extend(std::iter::repeat_n('0', (-point) as usize));
                out.push_str(&digits);
            } else if point >= n {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', (point - n) as usize));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point as usize]);
                out.push('.');
                out.push_str(&digits[point as usize..]);
            }
        } else {
            out.push_str(&digits[..1]);
            if n > 1 {
                out.push('.');
                out.push_str(&digits[1..]);
            }
            let _ = write!(
                out,
                "e{}{:02}",
                if exponent < 0 { '-' } else { '+' },
                exponent.abs()
            );
        }
        out
    }

    /// Rust's shortest digits round an exact decimal tie up (`…983.25` →
    /// `…983.3`); Python's picks the even digit (`…983.2`). Both round-trip.
    /// A tie exists only when the exact value has one digit more than the
    /// shortest form and that digit is 5.
    fn python_tie_break(abs: f64, digits: String, exponent: i32) -> String {
        let exact = format!("{abs:.40e}");
        let Some((mantissa, exact_exponent)) = exact.split_once('e') else {
            return digits;
        };
        let exact_digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
        let exact_digits = exact_digits.trim_end_matches('0');
        let n = digits.len();
        if exact_exponent.parse::<i32>() != Ok(exponent)
            || exact_digits.len() != n + 1
            || !exact_digits.ends_with('5')
        {
            return digits;
        }
        let lower = &exact_digits[..n];
        let lower_is_even = lower
            .bytes()
            .last()
            .is_some_and(|d| (d - b'0').is_multiple_of(2));
        if lower == digits || !lower_is_even {
            return digits;
        }
        let candidate = format!("{}.{}e{exponent}", &lower[..1], &lower[1..]);
        if candidate.parse::<f64>() == Ok(abs) {
            lower.to_string()
        } else {
            digits
        }
    }

    /// Appends `"text"` escaped as Python's `json` does.
    pub(crate) fn write_string(out: &mut String, text: &str, ensure_ascii: bool) {
        out.push('"');
        // Runs of characters that need no escaping are copied whole; only
        // the ASCII specials and (with `ensure_ascii`) non-ASCII characters
        // are handled one by one.
        let mut plain_start = 0;
        for (index, &byte) in text.as_bytes().iter().enumerate() {
            let special =
                matches!(byte, b'"' | b'\\') || byte < 0x20 || (ensure_ascii && byte > 0x7e);
            if !special || index < plain_start {
                continue;
            }
            out.push_str(&text[plain_start..index]);
            let Some(c) = text[index..].chars().next() else {
                break;
            };
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => {
                    // ensure_ascii and c > U+007E.
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        let _ = write!(out, "\\u{unit:04x}");
                    }
                }
            }
            plain_start = index + c.len_utf8();
        }
        out.push_str(&text[plain_start..]);
        out.push('"');
    }

    fn write(out: &mut String, value: &Json, ensure_ascii: bool) -> Result<(), String> {
        match value {
            Json::Null => out.push_str("null"),
            Json::Bool(true) => out.push_str("true"),
            Json::Bool(false) => out.push_str("false"),
            Json::Int(digits) => out.push_str(digits),
            Json::Float(f) => {
                if !f.is_finite() {
                    return Err("Out of range float values are not JSON compliant".to_string());
                }
                out.push_str(&float_repr(*f));
            }
            Json::Str(s) => write_string(out, s, ensure_ascii),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(out, item, ensure_ascii)?;
                }
                out.push(']');
            }
            Json::Object(members) => {
                let mut sorted: Vec<&(String, Json)> = members.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                out.push('{');
                for (i, (key, item)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(out, key, ensure_ascii);
                    out.push(':');
                    write(out, item, ensure_ascii)?;
                }
                out.push('}');
            }
        }
        Ok(())
    }

    /// Canonical text of a parsed value; fails on a non-finite float.
    pub(crate) fn canonical(value: &Json, ensure_ascii: bool) -> Result<String, String> {
        let mut out = String::new();
        write(&mut out, value, ensure_ascii)?;
        Ok(out)
    }

    /// `json.dumps(value, sort_keys=True, separators=(",", ":"),
    /// ensure_ascii=True)`: the shared canonical text with every character
    /// outside U+0020..U+007E escaped as `\uXXXX` (such characters only occur
    /// inside strings there, control characters already escaped).
    pub(crate) fn canonical_ascii(value: &serde_json::Value) -> String {
        let text = crate::security::canonical::to_canonical_string(value);
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            if (c as u32) > 0x7e {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        #[allow(clippy::excessive_precision)] // exact halfway values on purpose
        fn floats_print_like_python() {
            for (value, text) in [
                (1.0, "1.0"),
                (0.0, "0.0"),
                (-0.0, "-0.0"),
                (1.5, "1.5"),
                (0.1, "0.1"),
                (0.0001, "0.0001"),
                (0.00001, "1e-05"),
                (1.25e-7, "1.25e-07"),
                (123456789.125, "123456789.125"),
                (1e15, "1000000000000000.0"),
                (1e16, "1e+16"),
                (1.5e16, "1.5e+16"),
                (9999999999999998.0, "9999999999999998.0"),
                (1e100, "1e+100"),
                (-2.5e-300, "-2.5e-300"),
                (86400.000001, "86400.000001"),
                (631972354103983.25, "631972354103983.2"),
                (631972354103983.75, "631972354103983.8"),
                (-906476276974848.25, "-906476276974848.2"),
            ] {
                assert_eq!(float_repr(value), text, "{value:e}");
            }
        }

        #[test]
        fn parse_is_strict_and_canonical_is_pythonic() {
            let value = parse(
                " {\"b\":[1,2.50,-0,1E2,true,null],\"a\":\"\\u00e9\\ud83d\\ude00\\n\\u0001\"} ",
            )
            .unwrap();
            assert_eq!(
                canonical(&value, false).unwrap(),
                "{\"a\":\"é😀\\n\\u0001\",\"b\":[1,2.5,0,100.0,true,null]}"
            );
            assert_eq!(
                canonical(&value, true).unwrap(),
                "{\"a\":\"\\u00e9\\ud83d\\ude00\\n\\u0001\",\"b\":[1,2.5,0,100.0,true,null]}"
            );
            let big = "123456789012345678901234567890";
            assert_eq!(canonical(&parse(big).unwrap(), false).unwrap(), big);
            assert_eq!(
                parse("{\"a\":1,\"a\":2}"),
                Err(ParseError::DuplicateKey("a".into()))
            );
            assert_eq!(parse("\"\\ud800\""), Err(ParseError::LoneSurrogate));
            assert_eq!(parse(&"1".repeat(4301)), Err(ParseError::IntegerTooLong));
            assert!(parse(&"1".repeat(4300)).is_ok());
            assert!(canonical(&parse("1e400").unwrap(), false).is_err());
            for bad in [
                "",
                "NaN",
                "Infinity",
                "-Infinity",
                "01",
                "1.",
                ".5",
                "[1,]",
                "{\"a\":1,}",
                "\"a\u{1}\"",
                "'a'",
                "\u{feff}1",
                "[1] x",
                "tru",
                "\"\\x\"",
                "-",
            ] {
                assert!(matches!(parse(bad), Err(ParseError::Syntax(_))), "{bad:?}");
            }
            let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
            assert_eq!(parse(&deep), Err(ParseError::TooDeep));
            let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
            assert!(parse(&ok).is_ok());
        }

        #[test]
        fn ascii_form_escapes_like_python() {
            let value = serde_json::json!({"z": 1, "a": {"y": 0.5, "b": "\u{7f}ü😀\n"}, "m": [u64::MAX, -3]});
            assert_eq!(
                canonical_ascii(&value),
                "{\"a\":{\"b\":\"\\u007f\\u00fc\\ud83d\\ude00\\n\",\"y\":0.5},\"m\":[18446744073709551615,-3],\"z\":1}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::MessageMetadata;

    fn vectors() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/nats-sinks-vectors.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn parse_iso_ns(text: &str) -> i64 {
        let parsed =
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .unwrap();
        i64::try_from(parsed.unix_timestamp_nanos()).unwrap()
    }

    /// The vector's envelope, with the metadata its `metadata_hash_input`
    /// shows.
    fn vector_envelope(vector: &serde_json::Value) -> Envelope {
        let e = &vector["envelope"];
        let payload = base64::engine::general_purpose::STANDARD
            .decode(e["payload_b64"].as_str().unwrap())
            .unwrap();
        let headers = e["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect::<Vec<_>>();
        Envelope {
            subject: e["subject"].as_str().unwrap().into(),
            message_id: crate::envelope::message_id_from_headers(&headers).map(str::to_string),
            headers,
            payload: payload.into(),
            stream: e["stream"].as_str().unwrap().into(),
            consumer: e["consumer"].as_str().unwrap().into(),
            stream_sequence: e["stream_sequence"].as_u64().unwrap(),
            consumer_sequence: e["consumer_sequence"].as_u64().unwrap(),
            delivery_count: if e["redelivered"].as_bool().unwrap() {
                2
            } else {
                1
            },
            pending: e["pending"].as_u64().unwrap(),
            timestamp_ns: parse_iso_ns(e["timestamp"].as_str().unwrap()),
            received_at_ns: parse_iso_ns(e["received_at"].as_str().unwrap()),
            metadata: MessageMetadata {
                priority: Some("urgent".into()),
                classification: Some("restricted".into()),
                labels: vec!["sensor".into(), "audit".into()],
                security_labels: None,
                mission_metadata: None,
            },
            custody: None,
        }
    }

    fn config_from(value: &serde_json::Value) -> CustodyConfig {
        let config: CustodyConfig = serde_json::from_value(value.clone()).unwrap();
        config.validate().unwrap();
        config
    }

    #[test]
    fn matches_reference_vectors_sha256_and_sha512() {
        let vectors = vectors();
        let custody = &vectors["custody"];
        let envelope = vector_envelope(custody);
        let results = custody["results"].as_array().unwrap();
        let mut algorithms = Vec::new();
        for result in results {
            let config = config_from(&result["config"]);
            let policy = CustodyPolicy::from_config(&config).expect("enabled");
            algorithms.push(policy.algorithm().as_str());
            let input = policy
                .metadata_hash_input(&envelope, &envelope.payload)
                .unwrap();
            assert_eq!(
                std::str::from_utf8(&input).unwrap(),
                result["metadata_hash_input_utf8"].as_str().unwrap()
            );
            let computed = policy.compute(&envelope, &envelope.payload).unwrap();
            let object = CustodyObject::from(&computed).to_value();
            assert_eq!(object, result["custody"], "{}", result["algorithm"]);
        }
        assert_eq!(algorithms, ["sha256", "sha512"]);
    }

    #[test]
    fn hash_flags_previous_hash_and_limits() {
        let vectors = vectors();
        let custody = &vectors["custody"];
        let mut envelope = vector_envelope(custody);
        let mut config = config_from(&custody["results"][0]["config"]);

        config.hash_payload = false;
        let c = CustodyPolicy::new(&config)
            .compute(&envelope, &envelope.payload)
            .unwrap();
        assert_eq!(c.payload_hash, None);
        assert!(c.metadata_hash.is_some());
        let object = CustodyObject::from(&c);
        assert!(!object.hash_payload && object.hash_metadata);

        config.hash_payload = true;
        config.include_previous_hash = false;
        let c = CustodyPolicy::new(&config)
            .compute(&envelope, &envelope.payload)
            .unwrap();
        assert_eq!(c.previous_record_hash, None);

        // Header name matched case-insensitively; value trimmed and lower-cased.
        config.include_previous_hash = true;
        let upper = "AB".repeat(64);
        envelope.headers[1] = (
            "nats-sinks-previous-custody-hash".into(),
            format!(" {upper} "),
        );
        let c = CustodyPolicy::new(&config)
            .compute(&envelope, &envelope.payload)
            .unwrap();
        assert_eq!(c.previous_record_hash, Some("ab".repeat(64)));
        envelope.headers[1].1 = "  ".into();
        let c = CustodyPolicy::new(&config)
            .compute(&envelope, &envelope.payload)
            .unwrap();
        assert_eq!(c.previous_record_hash, None);
        for bad in ["abc", &"g".repeat(64), &"a".repeat(65)] {
            envelope.headers[1].1 = bad.to_string();
            assert_eq!(
                CustodyPolicy::new(&config).compute(&envelope, &envelope.payload),
                Err(CustodyError::BadPreviousHash)
            );
        }
        envelope.headers.truncate(1);

        config.max_hash_input_bytes = 1024;
        envelope.payload = vec![b'x'; 2000].into();
        let err = CustodyPolicy::new(&config)
            .compute(&envelope, &envelope.payload)
            .unwrap_err();
        assert_eq!(
            err,
            CustodyError::InputTooLarge {
                input: "payload",
                limit: 1024
            }
        );
        assert_eq!(err.error_type(), "ValidationError");
    }

    #[test]
    fn payload_forms() {
        // JSON is re-serialised canonically.
        assert_eq!(
            payload_hash_input(br#"{ "b": 1.50, "a": [true] }"#).unwrap(),
            br#"{"a":[true],"b":1.5}"#
        );
        // Text (and JSON with duplicate keys) is wrapped.
        let text = String::from_utf8(payload_hash_input(b"hello").unwrap()).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"_nats_sinks\":{{\"payload_encoding\":\"utf-8\",\"payload_envelope_version\":1,\
                 \"payload_format\":\"text\",\"sha256\":\"{}\",\"size_bytes\":5}},\"payload\":\"hello\"}}",
                hex::encode(sha2::Sha256::digest(b"hello"))
            )
        );
        let dup = String::from_utf8(payload_hash_input(br#"{"a":1,"a":2}"#).unwrap()).unwrap();
        assert!(dup.contains("\"payload_format\":\"text\""));
        // Bytes are base64.
        let bytes = String::from_utf8(payload_hash_input(&[0xff, 0x00]).unwrap()).unwrap();
        assert!(bytes.contains("\"payload\":\"/wA=\""), "{bytes}");
        assert!(bytes.contains("\"payload_format\":\"bytes\""));
        // An empty body is empty text.
        let empty = String::from_utf8(payload_hash_input(b"").unwrap()).unwrap();
        assert!(empty.ends_with("\"payload\":\"\"}"));
        // JSON that Python reads but cannot write fails, as in the reference.
        assert!(matches!(
            payload_hash_input(b"[1e400]"),
            Err(CustodyError::PayloadNotSerializable(_))
        ));
        assert!(matches!(
            payload_hash_input(br#""\udc00""#),
            Err(CustodyError::PayloadNotSerializable(_))
        ));
    }

    #[test]
    fn sealed_payloads_hash_like_any_other() {
        let config = CustodyConfig {
            enabled: true,
            ..CustodyConfig::default()
        };
        let policy = CustodyPolicy::new(&config);
        let envelope = vector_envelope(&vectors()["custody"]);
        // Canonical ASCII as the encryptor renders it: plain, with an escape
        // that both forms write alike, and with a non-ASCII escape that the
        // canonical (`ensure_ascii=False`) form writes as raw UTF-8.
        for value in [
            serde_json::json!({"_nats_sinks_encryption": {"key_id": "k1", "version": 1}}),
            serde_json::json!({"_nats_sinks_encryption": {"key_id": "a\"b", "version": 1}}),
            serde_json::json!({"_nats_sinks_encryption": {"key_id": "clé", "version": 1}}),
        ] {
            let rendered = json::canonical_ascii(&value).into_bytes();
            assert_eq!(
                policy.compute_sealed(&envelope, &rendered).unwrap(),
                policy.compute(&envelope, &rendered).unwrap(),
                "{value}"
            );
        }
    }

    #[test]
    fn record_hash_covers_identity() {
        let vectors = vectors();
        let custody = &vectors["custody"];
        let envelope = vector_envelope(custody);
        let config = config_from(&custody["results"][0]["config"]);
        let policy = CustodyPolicy::new(&config);
        let base = policy.compute(&envelope, &envelope.payload).unwrap();
        let mut moved = envelope.clone();
        moved.stream_sequence += 1;
        let other = policy.compute(&moved, &moved.payload).unwrap();
        assert_eq!(base.payload_hash, other.payload_hash);
        assert_ne!(base.record_hash, other.record_hash);
        // Encrypted storage: the stored bytes give payload_hash and the
        // delivered size, the received bytes the original size.
        let stored = br#"{"_nats_sinks_encryption":{"x":1}}"#;
        let c = policy.compute(&envelope, stored).unwrap();
        assert_eq!(
            c.payload_hash.as_deref(),
            Some(
                hex::encode(sha2::Sha256::digest(
                    br#"{"_nats_sinks_encryption":{"x":1}}"#
                ))
                .as_str()
            )
        );
        let input =
            String::from_utf8(policy.metadata_hash_input(&envelope, stored).unwrap()).unwrap();
        assert!(input.contains("\"delivered_size_bytes\":34,"), "{input}");
        assert!(input.contains("\"original_size_bytes\":43,"), "{input}");
    }

    /// A record the reference file sink wrote with authenticity, encryption
    /// and custody on: recomputing custody from the record's own fields (the
    /// stored payload is the encryption envelope; the received body had
    /// `original_size_bytes`) gives the reference's hashes.
    #[test]
    fn matches_a_reference_record_with_encryption() {
        let path = "/work/shared/reference/file_record_features.json";
        let Ok(text) = std::fs::read_to_string(path) else {
            return; // shared reference material not present
        };
        let record: serde_json::Value = serde_json::from_str(&text).unwrap();
        let m = &record["metadata"];
        let headers = m["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect::<Vec<_>>();
        let original = m["payload"]["original_size_bytes"].as_u64().unwrap() as usize;
        let stored = json::canonical_ascii(&record["payload"]).into_bytes();
        assert_eq!(
            stored.len() as u64,
            m["payload"]["delivered_size_bytes"].as_u64().unwrap()
        );
        let envelope = Envelope {
            subject: record["subject"].as_str().unwrap().into(),
            headers,
            payload: vec![b'x'; original].into(),
            stream: record["stream"].as_str().unwrap().into(),
            consumer: m["jetstream"]["consumer"].as_str().unwrap().into(),
            stream_sequence: record["stream_sequence"].as_u64().unwrap(),
            consumer_sequence: m["jetstream"]["consumer_sequence"].as_u64().unwrap(),
            delivery_count: 1,
            pending: m["jetstream"]["pending"].as_u64().unwrap(),
            timestamp_ns: m["jetstream"]["timestamp_epoch_ns"].as_i64().unwrap(),
            received_at_ns: m["timestamps"]["received_at_epoch_ns"].as_i64().unwrap(),
            message_id: record["message_id"].as_str().map(str::to_string),
            metadata: MessageMetadata::default(),
            custody: None,
        };
        let config = CustodyConfig {
            enabled: true,
            ..CustodyConfig::default()
        };
        let policy = CustodyPolicy::new(&config);
        let custody = policy.compute(&envelope, &stored).unwrap();
        assert_eq!(
            custody.payload_hash.as_deref(),
            record["custody"]["payload_hash"].as_str()
        );
        assert_eq!(policy.compute_sealed(&envelope, &stored).unwrap(), custody);
        // The metadata document is the reference's, in custody form, except
        // `reply`: the reference stores the JetStream ACK subject there,
        // sinkhost always `null` (sinks never see the ACK subject).
        let mut expected = m.clone();
        expected["reply"] = serde_json::Value::Null;
        let timestamps = expected["timestamps"].as_object_mut().unwrap();
        timestamps.remove("stored_at");
        timestamps.remove("stored_at_epoch_ns");
        expected["freshness"]["event_age_at_store_seconds"] =
            expected["freshness"]["event_age_at_receive_seconds"].clone();
        assert_eq!(
            String::from_utf8(policy.metadata_hash_input(&envelope, &stored).unwrap()).unwrap(),
            crate::security::canonical::to_canonical_string(&expected)
        );
    }
}
