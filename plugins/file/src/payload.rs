//! Payload normalisation: message bytes to the JSON value stored in the
//! record's `payload`, following the reference's storage contract.
//!
//! - JSON (standard JSON only: no NaN/Infinity, no duplicate keys) is embedded
//!   as the parsed value; numbers keep their original text.
//! - Otherwise the bytes are wrapped in the reference's payload envelope:
//!   `{"_nats_sinks": {"payload_envelope_version": 1, "payload_format":
//!   "text"|"bytes", "payload_encoding": "utf-8"|"base64", "sha256", "size_bytes"},
//!   "payload": <text or base64>}`.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::json::{self, Json};

/// `payload_mode` of the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadMode {
    /// JSON as is, other UTF-8 text wrapped as text, other bytes as base64.
    JsonOrEnvelope,
    /// Always wrapped as UTF-8 text; non-UTF-8 payloads fail (permanent).
    TextEnvelope,
    /// Always wrapped as base64 (the reference's `bytes_envelope`).
    Base64,
    /// Must be JSON; anything else fails (permanent).
    JsonOnly,
}

impl PayloadMode {
    pub fn name(self) -> &'static str {
        match self {
            PayloadMode::JsonOrEnvelope => "json_or_envelope",
            PayloadMode::TextEnvelope => "text_envelope",
            PayloadMode::Base64 => "base64",
            PayloadMode::JsonOnly => "json_only",
        }
    }
}

/// The stored value plus the facts recorded in `payload_info`.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizedPayload {
    pub value: Json,
    /// `json`, `text` or `bytes`.
    pub original_format: &'static str,
    pub wrapped: bool,
    /// Hex SHA-256 of the message bytes.
    pub sha256: String,
    pub size_bytes: usize,
}

/// Why a payload cannot be stored in the configured mode. A permanent
/// failure of that message. Carries no payload content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadError {
    NotUtf8 { mode: PayloadMode },
    NotJson { reason: json::ParseError },
}

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PayloadError::NotUtf8 { mode } => {
                write!(
                    f,
                    "payload is not valid UTF-8 (payload_mode {})",
                    mode.name()
                )
            }
            PayloadError::NotJson { reason } => {
                write!(
                    f,
                    "payload is not valid JSON ({reason}; payload_mode json_only)"
                )
            }
        }
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    out
}

fn envelope(
    payload: String,
    format: &'static str,
    encoding: &str,
    sha256: &str,
    size: usize,
) -> Json {
    Json::object(vec![
        (
            "_nats_sinks",
            Json::object(vec![
                ("payload_envelope_version", Json::u64(1)),
                ("payload_format", Json::str(format)),
                ("payload_encoding", Json::str(encoding)),
                ("sha256", Json::str(sha256)),
                ("size_bytes", Json::u64(size as u64)),
            ]),
        ),
        ("payload", Json::String(payload)),
    ])
}

fn wrap_text(text: &str, sha256: String, size: usize) -> NormalizedPayload {
    NormalizedPayload {
        value: envelope(text.to_owned(), "text", "utf-8", &sha256, size),
        original_format: "text",
        wrapped: true,
        sha256,
        size_bytes: size,
    }
}

fn wrap_bytes(data: &[u8], sha256: String, size: usize) -> NormalizedPayload {
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    NormalizedPayload {
        value: envelope(encoded, "bytes", "base64", &sha256, size),
        original_format: "bytes",
        wrapped: true,
        sha256,
        size_bytes: size,
    }
}

/// Normalises message bytes for storage in `mode`.
pub fn normalize(data: &[u8], mode: PayloadMode) -> Result<NormalizedPayload, PayloadError> {
    let sha256 = sha256_hex(data);
    let size = data.len();
    if mode == PayloadMode::Base64 {
        return Ok(wrap_bytes(data, sha256, size));
    }
    let text = match std::str::from_utf8(data) {
        Ok(text) => text,
        Err(_) if mode == PayloadMode::JsonOrEnvelope => return Ok(wrap_bytes(data, sha256, size)),
        Err(_) => return Err(PayloadError::NotUtf8 { mode }),
    };
    if mode == PayloadMode::TextEnvelope {
        return Ok(wrap_text(text, sha256, size));
    }
    match json::parse(text) {
        Ok(value) => Ok(NormalizedPayload {
            value,
            original_format: "json",
            wrapped: false,
            sha256,
            size_bytes: size,
        }),
        Err(reason) if mode == PayloadMode::JsonOnly => Err(PayloadError::NotJson { reason }),
        Err(_) => Ok(wrap_text(text, sha256, size)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_embedded() {
        let p = normalize(
            br#"{"track_id":"T-1001","quality":"synthetic"}"#,
            PayloadMode::JsonOrEnvelope,
        )
        .unwrap();
        assert_eq!(p.original_format, "json");
        assert!(!p.wrapped);
        assert_eq!(p.size_bytes, 43);
        assert_eq!(
            p.sha256,
            "5415693dba3f63a61bb3a63d68fee2c9313099093d209053e93d9c91f2524b24"
        );
        assert_eq!(
            p.value.to_compact(),
            r#"{"quality":"synthetic","track_id":"T-1001"}"#
        );
        // json_only accepts it too; scalars are JSON as well.
        assert_eq!(
            normalize(b" 42 ", PayloadMode::JsonOnly).unwrap().value,
            Json::u64(42)
        );
    }

    #[test]
    fn text_is_wrapped() {
        let p = normalize(b"hello", PayloadMode::JsonOrEnvelope).unwrap();
        assert_eq!(p.original_format, "text");
        assert!(p.wrapped);
        assert_eq!(
            p.value.to_compact(),
            format!(
                r#"{{"_nats_sinks":{{"payload_encoding":"utf-8","payload_envelope_version":1,"payload_format":"text","sha256":"{}","size_bytes":5}},"payload":"hello"}}"#,
                sha256_hex(b"hello")
            )
        );
        // NaN and duplicate keys are not JSON: wrapped as text.
        for not_json in [&b"NaN"[..], br#"{"a":1,"a":2}"#, b"", b"{'a':1}"] {
            assert_eq!(
                normalize(not_json, PayloadMode::JsonOrEnvelope)
                    .unwrap()
                    .original_format,
                "text"
            );
        }
        // text_envelope wraps JSON too.
        let p = normalize(b"{}", PayloadMode::TextEnvelope).unwrap();
        assert_eq!(p.original_format, "text");
        assert_eq!(p.value.get("payload"), Some(&Json::str("{}")));
    }

    #[test]
    fn bytes_are_base64() {
        let data = [0xff, 0x00, 0x80];
        let p = normalize(&data, PayloadMode::JsonOrEnvelope).unwrap();
        assert_eq!(p.original_format, "bytes");
        assert_eq!(p.value.get("payload"), Some(&Json::str("/wCA")));
        let meta = p.value.get("_nats_sinks").unwrap();
        assert_eq!(meta.get("payload_encoding"), Some(&Json::str("base64")));
        assert_eq!(meta.get("payload_format"), Some(&Json::str("bytes")));
        // base64 mode wraps even JSON.
        let p = normalize(b"{}", PayloadMode::Base64).unwrap();
        assert_eq!(p.original_format, "bytes");
        assert_eq!(p.value.get("payload"), Some(&Json::str("e30=")));
    }

    #[test]
    fn strict_modes_fail() {
        assert_eq!(
            normalize(&[0xff], PayloadMode::TextEnvelope),
            Err(PayloadError::NotUtf8 {
                mode: PayloadMode::TextEnvelope
            })
        );
        assert_eq!(
            normalize(&[0xff], PayloadMode::JsonOnly),
            Err(PayloadError::NotUtf8 {
                mode: PayloadMode::JsonOnly
            })
        );
        let e = normalize(b"plain text", PayloadMode::JsonOnly).unwrap_err();
        assert!(matches!(e, PayloadError::NotJson { .. }));
        assert!(
            !e.to_string().contains("plain"),
            "error must not echo the payload"
        );
        assert!(normalize(br#"{"a":1,"a":1}"#, PayloadMode::JsonOnly).is_err());
    }
}
