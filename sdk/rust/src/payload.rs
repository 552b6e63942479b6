//! Payload normalisation: message bytes to the JSON value a sink stores.
//!
//! - JSON payloads are kept as the parsed value.
//! - Other payloads are wrapped in the payload envelope of the reference
//!   `nats-sinks` storage contract:
//!   `{"_nats_sinks": {"payload_envelope_version": 1, "payload_format":
//!   "text"|"bytes", "payload_encoding": "utf-8"|"base64", "sha256",
//!   "size_bytes"}, "payload": <text or base64>}`.
//!
//! Nothing is ever decrypted: plugins hold no keys. When the operator
//! encrypts a subject, the payload a sink receives is the host's encrypted
//! envelope, a JSON object with the single key `_nats_sinks_encryption`
//! ([`is_encrypted`]); [`PayloadMode::JsonOrEnvelope`] stores it as is.

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// How to turn payload bytes into the stored JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadMode {
    /// JSON as is; other UTF-8 text wrapped as text; other bytes as base64.
    #[default]
    JsonOrEnvelope,
    /// Always wrapped as UTF-8 text; a non-UTF-8 payload is refused.
    TextEnvelope,
    /// Always wrapped as base64.
    Base64,
    /// Must be JSON; anything else is refused.
    JsonOnly,
}

/// The stored value and the facts about the original bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalisedPayload {
    /// What to store.
    pub value: Value,
    /// `json`, `text` or `bytes`: what the payload was.
    pub format: &'static str,
    /// Whether `value` is the `_nats_sinks` payload envelope.
    pub wrapped: bool,
    /// Lower-case hex SHA-256 of the payload bytes.
    pub sha256: String,
    /// Size of the payload in bytes.
    pub size_bytes: usize,
}

/// Why a payload cannot be stored in the chosen mode: a permanent failure of
/// that message. Its text never quotes the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadError {
    /// `TextEnvelope` and the payload is not UTF-8.
    NotUtf8,
    /// `JsonOnly` and the payload is not JSON.
    NotJson,
}

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PayloadError::NotUtf8 => {
                write!(f, "payload is not valid UTF-8 (payload mode text_envelope)")
            }
            PayloadError::NotJson => {
                write!(f, "payload is not valid JSON (payload mode json_only)")
            }
        }
    }
}

impl std::error::Error for PayloadError {}

impl From<PayloadError> for crate::SinkError {
    fn from(error: PayloadError) -> crate::SinkError {
        crate::SinkError::permanent(error.to_string())
    }
}

/// Normalises `payload` in `mode`.
///
/// ```
/// use sinkhost_sdk::{normalise, PayloadMode};
///
/// let json = normalise(br#"{"id":1}"#, PayloadMode::JsonOrEnvelope).unwrap();
/// assert_eq!(json.value["id"], 1);
/// assert!(!json.wrapped);
///
/// let text = normalise(b"hello", PayloadMode::JsonOrEnvelope).unwrap();
/// assert_eq!(text.value["payload"], "hello");
/// assert_eq!(text.value["_nats_sinks"]["payload_format"], "text");
///
/// let bytes = normalise(&[0xff, 0x00], PayloadMode::JsonOrEnvelope).unwrap();
/// assert_eq!(bytes.value["payload"], "/wA=");
///
/// assert!(normalise(b"hello", PayloadMode::JsonOnly).is_err());
/// ```
pub fn normalise(payload: &[u8], mode: PayloadMode) -> Result<NormalisedPayload, PayloadError> {
    let sha256 = sha256_hex(payload);
    let size_bytes = payload.len();
    let parsed_json = || serde_json::from_slice::<Value>(payload).ok();
    let (value, format, wrapped) = match mode {
        PayloadMode::JsonOrEnvelope => match (parsed_json(), std::str::from_utf8(payload)) {
            (Some(value), _) => (value, "json", false),
            (None, Ok(text)) => (
                wrap(
                    Value::String(text.to_owned()),
                    "text",
                    "utf-8",
                    &sha256,
                    size_bytes,
                ),
                "text",
                true,
            ),
            (None, Err(_)) => (
                wrap(
                    base64_value(payload),
                    "bytes",
                    "base64",
                    &sha256,
                    size_bytes,
                ),
                "bytes",
                true,
            ),
        },
        PayloadMode::TextEnvelope => {
            let text = std::str::from_utf8(payload).map_err(|_| PayloadError::NotUtf8)?;
            (
                wrap(
                    Value::String(text.to_owned()),
                    "text",
                    "utf-8",
                    &sha256,
                    size_bytes,
                ),
                "text",
                true,
            )
        }
        PayloadMode::Base64 => (
            wrap(
                base64_value(payload),
                "bytes",
                "base64",
                &sha256,
                size_bytes,
            ),
            "bytes",
            true,
        ),
        PayloadMode::JsonOnly => (parsed_json().ok_or(PayloadError::NotJson)?, "json", false),
    };
    Ok(NormalisedPayload {
        value,
        format,
        wrapped,
        sha256,
        size_bytes,
    })
}

/// Whether `payload` is the host's encrypted envelope (a JSON object whose
/// only key is `_nats_sinks_encryption`). A sink stores it as is; it cannot
/// and must not try to decrypt it.
///
/// ```
/// assert!(sinkhost_sdk::payload::is_encrypted(br#"{"_nats_sinks_encryption":{"v":1}}"#));
/// assert!(!sinkhost_sdk::payload::is_encrypted(br#"{"id":1}"#));
/// ```
pub fn is_encrypted(payload: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(map)) => map.len() == 1 && map.contains_key("_nats_sinks_encryption"),
        _ => false,
    }
}

/// Standard base64 (with padding) of `bytes`.
///
/// ```
/// assert_eq!(sinkhost_sdk::payload::base64(b"hi"), "aGk=");
/// ```
pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Lower-case hex SHA-256 of `bytes`.
///
/// ```
/// assert_eq!(
///     sinkhost_sdk::payload::sha256_hex(b""),
///     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/// );
/// ```
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn base64_value(payload: &[u8]) -> Value {
    Value::String(base64(payload))
}

fn wrap(payload: Value, format: &str, encoding: &str, sha256: &str, size_bytes: usize) -> Value {
    json!({
        "_nats_sinks": {
            "payload_envelope_version": 1,
            "payload_format": format,
            "payload_encoding": encoding,
            "sha256": sha256,
            "size_bytes": size_bytes,
        },
        "payload": payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_envelope_is_stored_as_is() {
        let payload = br#"{"_nats_sinks_encryption":{"ciphertext":"AAAA"}}"#;
        let normalised = normalise(payload, PayloadMode::JsonOrEnvelope).unwrap();
        assert!(!normalised.wrapped);
        assert_eq!(
            normalised.value,
            serde_json::from_slice::<Value>(payload).unwrap()
        );
    }

    #[test]
    fn text_mode_refuses_binary() {
        assert_eq!(
            normalise(&[0xff], PayloadMode::TextEnvelope).unwrap_err(),
            PayloadError::NotUtf8
        );
    }

    #[test]
    fn base64_mode_wraps_json_too() {
        let normalised = normalise(b"{}", PayloadMode::Base64).unwrap();
        assert_eq!(normalised.value["payload"], "e30=");
        assert_eq!(normalised.value["_nats_sinks"]["size_bytes"], 2);
    }

    #[test]
    fn mode_parses_from_config_names() {
        let mode: PayloadMode = serde_json::from_str("\"json_only\"").unwrap();
        assert_eq!(mode, PayloadMode::JsonOnly);
    }
}
