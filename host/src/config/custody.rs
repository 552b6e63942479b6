//! The `custody` section: tamper-evidence hashes the host computes for every
//! message before a sink sees it. Names, defaults and limits follow the
//! reference `nats-sinks` (0.4.3); see `docs/custody.md`.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::Invalid;

/// Default header carrying the producer's previous record hash.
pub const DEFAULT_PREVIOUS_HASH_HEADER: &str = "Nats-Sinks-Previous-Custody-Hash";
/// Longest accepted custody `key_id`, in characters.
pub const MAX_CUSTODY_KEY_ID_CHARS: usize = 128;
/// Default and bounds of `max_hash_input_bytes`.
pub const DEFAULT_MAX_HASH_INPUT_BYTES: u64 = 16_777_216;
/// Smallest accepted `max_hash_input_bytes`.
pub const MIN_MAX_HASH_INPUT_BYTES: u64 = 1024;
/// Largest accepted `max_hash_input_bytes`.
pub const MAX_MAX_HASH_INPUT_BYTES: u64 = 1_073_741_824;

/// The custody hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CustodyAlgorithm {
    /// SHA-256, 64 hex digits.
    #[default]
    Sha256,
    /// SHA-512, 128 hex digits.
    Sha512,
}

impl CustodyAlgorithm {
    /// The canonical name written into custody objects.
    pub fn as_str(self) -> &'static str {
        match self {
            CustodyAlgorithm::Sha256 => "sha256",
            CustodyAlgorithm::Sha512 => "sha512",
        }
    }

    /// Parses as the reference does: trimmed, case-insensitive, `_` ignored
    /// (`SHA_256` is `sha256`).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_lowercase().replace('_', "").as_str() {
            "sha256" => Some(CustodyAlgorithm::Sha256),
            "sha512" => Some(CustodyAlgorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for CustodyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for CustodyAlgorithm {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CustodyAlgorithm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AlgorithmVisitor;
        impl Visitor<'_> for AlgorithmVisitor {
            type Value = CustodyAlgorithm;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"sha256\" or \"sha512\"")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                CustodyAlgorithm::parse(value)
                    .ok_or_else(|| E::custom("custody.algorithm must be one of: sha256, sha512"))
            }
        }
        deserializer.deserialize_str(AlgorithmVisitor)
    }
}

/// The `custody` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodyConfig {
    /// Compute custody hashes for every message.
    #[serde(default)]
    pub enabled: bool,
    /// `sha256` (default) or `sha512`.
    #[serde(default)]
    pub algorithm: CustodyAlgorithm,
    /// Hash the payload as stored (after encryption).
    #[serde(default = "yes")]
    pub hash_payload: bool,
    /// Hash the canonical metadata document.
    #[serde(default = "yes")]
    pub hash_metadata: bool,
    /// Chain records: read the producer's previous record hash from
    /// `previous_hash_header`.
    #[serde(default)]
    pub include_previous_hash: bool,
    /// Header carrying the previous record hash.
    #[serde(default = "default_previous_hash_header")]
    pub previous_hash_header: String,
    /// Non-secret policy or version identifier recorded with the hashes
    /// (custody hashes are unkeyed).
    #[serde(default)]
    pub key_id: Option<String>,
    /// Largest canonical input hashed; a larger message fails permanently.
    #[serde(default = "default_max_hash_input_bytes")]
    pub max_hash_input_bytes: u64,
}

fn yes() -> bool {
    true
}
fn default_previous_hash_header() -> String {
    DEFAULT_PREVIOUS_HASH_HEADER.to_string()
}
fn default_max_hash_input_bytes() -> u64 {
    DEFAULT_MAX_HASH_INPUT_BYTES
}

impl Default for CustodyConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            algorithm: CustodyAlgorithm::Sha256,
            hash_payload: true,
            hash_metadata: true,
            include_previous_hash: false,
            previous_hash_header: default_previous_hash_header(),
            key_id: None,
            max_hash_input_bytes: DEFAULT_MAX_HASH_INPUT_BYTES,
        }
    }
}

impl CustodyConfig {
    /// The key id as recorded: trimmed, blank means none.
    pub fn effective_key_id(&self) -> Option<String> {
        self.key_id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_string)
    }

    /// The header name as used: trimmed.
    pub fn effective_previous_hash_header(&self) -> &str {
        self.previous_hash_header.trim()
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.enabled && !(self.hash_payload || self.hash_metadata) {
            return Err(Invalid::new(
                "custody.hash_payload",
                "custody.enabled requires hash_payload or hash_metadata",
            ));
        }
        let header = self.previous_hash_header.trim();
        if header.is_empty() {
            return Err(Invalid::new(
                "custody.previous_hash_header",
                "must not be empty",
            ));
        }
        if header.chars().any(char::is_control) {
            return Err(Invalid::new(
                "custody.previous_hash_header",
                "must not contain control characters",
            ));
        }
        if let Some(key_id) = self.effective_key_id() {
            if key_id.chars().count() > MAX_CUSTODY_KEY_ID_CHARS {
                return Err(Invalid::new(
                    "custody.key_id",
                    format!("must not exceed {MAX_CUSTODY_KEY_ID_CHARS} characters"),
                ));
            }
            if key_id.chars().any(|c| (c as u32) < 32 || c as u32 == 127) {
                return Err(Invalid::new(
                    "custody.key_id",
                    "must not contain control characters",
                ));
            }
        }
        if !(MIN_MAX_HASH_INPUT_BYTES..=MAX_MAX_HASH_INPUT_BYTES)
            .contains(&self.max_hash_input_bytes)
        {
            return Err(Invalid::new(
                "custody.max_hash_input_bytes",
                format!(
                    "must be between {MIN_MAX_HASH_INPUT_BYTES} and {MAX_MAX_HASH_INPUT_BYTES}"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CustodyConfig, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        let config: CustodyConfig = serde_path_to_error::deserialize(&mut de)
            .map_err(|err| format!("{}: {}", err.path(), err.inner()))?;
        config
            .validate()
            .map_err(|invalid| format!("{}: {}", invalid.location, invalid.message))?;
        Ok(config)
    }

    #[test]
    fn defaults_follow_the_reference() {
        let config = parse("{}").unwrap();
        assert!(!config.enabled);
        assert_eq!(config.algorithm, CustodyAlgorithm::Sha256);
        assert!(config.hash_payload && config.hash_metadata);
        assert!(!config.include_previous_hash);
        assert_eq!(
            config.previous_hash_header,
            "Nats-Sinks-Previous-Custody-Hash"
        );
        assert_eq!(config.key_id, None);
        assert_eq!(config.max_hash_input_bytes, 16_777_216);
    }

    #[test]
    fn algorithm_spellings() {
        assert_eq!(
            parse(r#"{"algorithm":" SHA_512"}"#).unwrap().algorithm,
            CustodyAlgorithm::Sha512
        );
        let err = parse(r#"{"algorithm":"md5"}"#).unwrap_err();
        assert!(err.contains("must be one of: sha256, sha512"), "{err}");
        assert!(parse(r#"{"algorithm":"sha-256"}"#).is_err());
    }

    #[test]
    fn validation() {
        let err =
            parse(r#"{"enabled":true,"hash_payload":false,"hash_metadata":false}"#).unwrap_err();
        assert!(
            err.contains("requires hash_payload or hash_metadata"),
            "{err}"
        );
        assert!(parse(r#"{"previous_hash_header":"  "}"#).is_err());
        assert!(parse(r#"{"max_hash_input_bytes":1023}"#).is_err());
        assert!(parse(r#"{"max_hash_input_bytes":1073741825}"#).is_err());
        assert!(parse(&format!(r#"{{"key_id":"{}"}}"#, "k".repeat(129))).is_err());
        assert!(parse(r#"{"key_id":"a\u0007"}"#).is_err());
        assert!(parse(r#"{"unknown":1}"#).is_err());
        let config = parse(r#"{"key_id":"  "}"#).unwrap();
        assert_eq!(config.effective_key_id(), None);
        let config = parse(r#"{"key_id":" policy-v1 "}"#).unwrap();
        assert_eq!(config.effective_key_id().as_deref(), Some("policy-v1"));
    }
}
