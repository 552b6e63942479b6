//! The `encryption` section: which subjects' payloads the host encrypts, and
//! with which key, before any sink sees them.
//!
//! Names and defaults follow the reference `nats-sinks` (0.4.3). sinkhost
//! differences, all documented in `docs/payload-encryption.md`:
//!
//! - key material is never in the file: only `key_b64_env`, the name of an
//!   environment variable holding the base64 key, is accepted; the
//!   reference's inline `key_b64` is rejected;
//! - sinkhost encrypts with AES-256-GCM only (96-bit nonces, 128-bit tags);
//!   `aes-256-ccm` is refused for encryption, but CCM envelopes written by
//!   the reference are still decrypted by [`crate::security::encryption::decrypt`];
//! - `envelope_version` (new): `1` writes the reference's
//!   `nats_sinks.encrypted_payload.v1` envelope byte for byte (no associated
//!   data); `2` writes `sinkhost.encrypted_payload.v2`, which binds subject,
//!   stream and stream sequence as associated data;
//! - `decrypt_keys` (new): further keys kept only for decryption (rotation);
//! - one `key_id` always means one key: configuring two different variables
//!   under the same `key_id` is an error (the reference silently lets a rule
//!   with its own key inherit the top-level `key_id`).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::Invalid;
use crate::subjects;

/// Longest accepted key identifier, in characters (as the reference).
pub const MAX_ENCRYPTION_KEY_ID_CHARS: usize = 128;
/// The only nonce size sinkhost encrypts with (GCM's native 96 bits).
pub const GCM_NONCE_SIZE_BYTES: u8 = 12;
/// The only tag length sinkhost encrypts with.
pub const GCM_TAG_LENGTH: u8 = 16;
/// The reference's default `key_id`.
pub const DEFAULT_ENCRYPTION_KEY_ID: &str = "default";

/// An AEAD algorithm name as written in the file or in an envelope.
///
/// Accepted spellings are case-insensitive and may use `_` for `-`, as in the
/// reference (`AES_256_GCM` is `aes-256-gcm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncryptionAlgorithm {
    /// AES-256 in Galois/Counter Mode: what sinkhost encrypts with.
    #[default]
    Aes256Gcm,
    /// AES-256 in CCM mode: decrypted (reference data), never written.
    Aes256Ccm,
}

impl EncryptionAlgorithm {
    /// The canonical name, as written into envelopes.
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptionAlgorithm::Aes256Gcm => "aes-256-gcm",
            EncryptionAlgorithm::Aes256Ccm => "aes-256-ccm",
        }
    }

    /// Parses a spelling the reference accepts.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "aes-256-gcm" => Some(EncryptionAlgorithm::Aes256Gcm),
            "aes-256-ccm" => Some(EncryptionAlgorithm::Aes256Ccm),
            _ => None,
        }
    }
}

impl fmt::Display for EncryptionAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EncryptionAlgorithm {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EncryptionAlgorithm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AlgorithmVisitor;
        impl Visitor<'_> for AlgorithmVisitor {
            type Value = EncryptionAlgorithm;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"aes-256-gcm\"")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                EncryptionAlgorithm::parse(value)
                    .ok_or_else(|| E::custom("unknown algorithm; expected \"aes-256-gcm\""))
            }
        }
        deserializer.deserialize_str(AlgorithmVisitor)
    }
}

/// Placeholder for the reference's inline `key_b64`: sinkhost refuses key
/// material in the configuration file. Deserializing it always fails, with a
/// message that never repeats the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InlineKeyRefused;

impl<'de> Deserialize<'de> for InlineKeyRefused {
    fn deserialize<D: Deserializer<'de>>(_deserializer: D) -> Result<Self, D::Error> {
        Err(de::Error::custom(
            "key material is not accepted in the configuration file: put the base64 key in an \
             environment variable and name that variable in `key_b64_env`",
        ))
    }
}

/// The `encryption` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Encrypt subjects that no rule matches.
    #[serde(default)]
    pub enabled: bool,
    /// Must be `aes-256-gcm` (see the module documentation).
    #[serde(default)]
    pub algorithm: EncryptionAlgorithm,
    /// Non-secret identifier written into every envelope; selects the key
    /// when decrypting.
    #[serde(default = "default_key_id")]
    pub key_id: String,
    /// Environment variable holding the base64 32-byte key.
    #[serde(default)]
    pub key_b64_env: Option<String>,
    /// Refused: see [`InlineKeyRefused`].
    #[serde(default, skip_serializing)]
    pub key_b64: Option<InlineKeyRefused>,
    /// Must be 12.
    #[serde(default = "default_nonce_size")]
    pub nonce_size_bytes: u8,
    /// Must be 16.
    #[serde(default = "default_tag_length")]
    pub tag_length: u8,
    /// `1` (default): the reference's v1 envelope, no associated data. `2`:
    /// sinkhost's v2 envelope, bound to subject, stream and sequence.
    #[serde(default = "default_envelope_version")]
    pub envelope_version: u8,
    /// Per-subject overrides, first match wins; unmatched subjects follow
    /// `enabled`.
    #[serde(default)]
    pub rules: Vec<EncryptionRuleConfig>,
    /// Keys accepted only for decryption (older keys during a rotation).
    #[serde(default)]
    pub decrypt_keys: Vec<DecryptKeyConfig>,
}

/// One per-subject encryption rule. Omitted fields inherit the top level.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionRuleConfig {
    /// NATS subject pattern (`*` and `>` wildcards).
    pub subject: String,
    /// `false` exempts matching subjects from encryption.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Must be `aes-256-gcm` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<EncryptionAlgorithm>,
    /// Key identifier for matching subjects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Environment variable holding this rule's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_b64_env: Option<String>,
    /// Refused: see [`InlineKeyRefused`].
    #[serde(default, skip_serializing)]
    pub key_b64: Option<InlineKeyRefused>,
    /// Must be 12 when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce_size_bytes: Option<u8>,
    /// Must be 16 when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_length: Option<u8>,
    /// Envelope version for matching subjects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope_version: Option<u8>,
}

/// A key kept for decryption only.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecryptKeyConfig {
    /// The `key_id` the old envelopes carry.
    pub key_id: String,
    /// Environment variable holding the base64 32-byte key.
    pub key_b64_env: String,
}

fn default_key_id() -> String {
    DEFAULT_ENCRYPTION_KEY_ID.to_string()
}
fn default_nonce_size() -> u8 {
    GCM_NONCE_SIZE_BYTES
}
fn default_tag_length() -> u8 {
    GCM_TAG_LENGTH
}
fn default_envelope_version() -> u8 {
    1
}
fn yes() -> bool {
    true
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            algorithm: EncryptionAlgorithm::Aes256Gcm,
            key_id: default_key_id(),
            key_b64_env: None,
            key_b64: None,
            nonce_size_bytes: GCM_NONCE_SIZE_BYTES,
            tag_length: GCM_TAG_LENGTH,
            envelope_version: 1,
            rules: Vec::new(),
            decrypt_keys: Vec::new(),
        }
    }
}

/// Where one key comes from: a config location and a variable name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySource {
    /// The key identifier.
    pub key_id: String,
    /// JSON path of the `key_b64_env` field that names the variable.
    pub field: String,
    /// The environment variable name.
    pub variable: String,
}

/// The settings that apply to one subject after rules and inheritance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectivePolicy {
    /// JSON path of what decided: `encryption.rules[N]` or `encryption`.
    pub decided_by: String,
    /// Whether the payload is encrypted.
    pub encrypt: bool,
    /// Key identifier (meaningful when `encrypt`).
    pub key_id: String,
    /// Where the key comes from (when `encrypt`).
    pub key: Option<KeySource>,
    /// 1 or 2.
    pub envelope_version: u8,
}

impl EncryptionConfig {
    /// Whether any subject can be encrypted at all.
    pub fn any_enabled(&self) -> bool {
        self.enabled || self.rules.iter().any(|rule| rule.enabled)
    }

    /// The top-level policy (for subjects no rule matches).
    pub fn default_policy(&self) -> EffectivePolicy {
        EffectivePolicy {
            decided_by: "encryption".to_string(),
            encrypt: self.enabled,
            key_id: self.key_id.clone(),
            key: self.key_b64_env.as_ref().map(|variable| KeySource {
                key_id: self.key_id.clone(),
                field: "encryption.key_b64_env".to_string(),
                variable: variable.clone(),
            }),
            envelope_version: self.envelope_version,
        }
    }

    /// The policy of rule `index`, with omitted fields inherited.
    pub fn rule_policy(&self, index: usize) -> Option<EffectivePolicy> {
        let rule = self.rules.get(index)?;
        let key_id = rule.key_id.clone().unwrap_or_else(|| self.key_id.clone());
        let key = match &rule.key_b64_env {
            Some(variable) => Some(KeySource {
                key_id: key_id.clone(),
                field: format!("encryption.rules[{index}].key_b64_env"),
                variable: variable.clone(),
            }),
            None => self.key_b64_env.as_ref().map(|variable| KeySource {
                key_id: key_id.clone(),
                field: "encryption.key_b64_env".to_string(),
                variable: variable.clone(),
            }),
        };
        Some(EffectivePolicy {
            decided_by: format!("encryption.rules[{index}]"),
            encrypt: rule.enabled,
            key_id,
            key,
            envelope_version: rule.envelope_version.unwrap_or(self.envelope_version),
        })
    }

    /// Every key that encryption or decryption needs, one entry per distinct
    /// `key_id` (the first place that names it). Keys of disabled policies
    /// are left out, except `decrypt_keys`, which are always loaded.
    pub fn key_sources(&self) -> Vec<KeySource> {
        let mut out: Vec<KeySource> = Vec::new();
        let mut push = |source: KeySource| {
            if !out.iter().any(|s| s.key_id == source.key_id) {
                out.push(source);
            }
        };
        if self.enabled {
            if let Some(source) = self.default_policy().key {
                push(source);
            }
        }
        for index in 0..self.rules.len() {
            if let Some(policy) = self.rule_policy(index) {
                if policy.encrypt {
                    if let Some(source) = policy.key {
                        push(source);
                    }
                }
            }
        }
        for (index, key) in self.decrypt_keys.iter().enumerate() {
            push(KeySource {
                key_id: key.key_id.clone(),
                field: format!("encryption.decrypt_keys[{index}].key_b64_env"),
                variable: key.key_b64_env.clone(),
            });
        }
        out
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        validate_algorithm("encryption.algorithm", self.algorithm)?;
        validate_key_id("encryption.key_id", &self.key_id)?;
        validate_env_name("encryption.key_b64_env", self.key_b64_env.as_deref())?;
        validate_nonce_size("encryption.nonce_size_bytes", self.nonce_size_bytes)?;
        validate_tag_length("encryption.tag_length", self.tag_length)?;
        validate_envelope_version("encryption.envelope_version", self.envelope_version)?;
        if self.enabled && self.key_b64_env.is_none() {
            return Err(Invalid::new(
                "encryption.key_b64_env",
                "required when encryption.enabled is true (name the environment variable that \
                 holds the base64 32-byte key)",
            ));
        }
        for (index, rule) in self.rules.iter().enumerate() {
            let at = |field: &str| format!("encryption.rules[{index}].{field}");
            subjects::validate_subject_pattern(&rule.subject)
                .map_err(|err| Invalid::new(at("subject"), err.to_string()))?;
            if let Some(algorithm) = rule.algorithm {
                validate_algorithm(&at("algorithm"), algorithm)?;
            }
            if let Some(key_id) = &rule.key_id {
                validate_key_id(&at("key_id"), key_id)?;
            }
            validate_env_name(&at("key_b64_env"), rule.key_b64_env.as_deref())?;
            if let Some(size) = rule.nonce_size_bytes {
                validate_nonce_size(&at("nonce_size_bytes"), size)?;
            }
            if let Some(length) = rule.tag_length {
                validate_tag_length(&at("tag_length"), length)?;
            }
            if let Some(version) = rule.envelope_version {
                validate_envelope_version(&at("envelope_version"), version)?;
            }
            if rule.enabled && rule.key_b64_env.is_none() && self.key_b64_env.is_none() {
                return Err(Invalid::new(
                    at("key_b64_env"),
                    "required because no top-level encryption.key_b64_env is configured",
                ));
            }
        }
        for (index, key) in self.decrypt_keys.iter().enumerate() {
            validate_key_id(
                &format!("encryption.decrypt_keys[{index}].key_id"),
                &key.key_id,
            )?;
            validate_env_name(
                &format!("encryption.decrypt_keys[{index}].key_b64_env"),
                Some(&key.key_b64_env),
            )?;
        }
        self.validate_key_ids_unambiguous()
    }

    /// One `key_id` must always name the same variable: a decryptor selects
    /// the key by `key_id` alone.
    fn validate_key_ids_unambiguous(&self) -> Result<(), Invalid> {
        let mut all: Vec<KeySource> = Vec::new();
        if let Some(source) = self.default_policy().key {
            all.push(source);
        }
        for index in 0..self.rules.len() {
            if let Some(EffectivePolicy {
                encrypt: true,
                key: Some(source),
                ..
            }) = self.rule_policy(index)
            {
                all.push(source);
            }
        }
        for (index, key) in self.decrypt_keys.iter().enumerate() {
            all.push(KeySource {
                key_id: key.key_id.clone(),
                field: format!("encryption.decrypt_keys[{index}].key_b64_env"),
                variable: key.key_b64_env.clone(),
            });
        }
        let mut seen: BTreeMap<&str, &KeySource> = BTreeMap::new();
        for source in &all {
            match seen.get(source.key_id.as_str()) {
                Some(first) if first.variable != source.variable => {
                    return Err(Invalid::new(
                        source.field.clone(),
                        format!(
                            "key_id `{}` would name two keys: variable {} here and {} at `{}`; \
                             give each key its own key_id",
                            source.key_id, source.variable, first.variable, first.field
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    seen.insert(source.key_id.as_str(), source);
                }
            }
        }
        Ok(())
    }
}

fn validate_algorithm(location: &str, algorithm: EncryptionAlgorithm) -> Result<(), Invalid> {
    match algorithm {
        EncryptionAlgorithm::Aes256Gcm => Ok(()),
        EncryptionAlgorithm::Aes256Ccm => Err(Invalid::new(
            location,
            "sinkhost encrypts with aes-256-gcm only; aes-256-ccm envelopes written by nats-sinks \
             are still decrypted (see docs/payload-encryption.md)",
        )),
    }
}

/// Non-empty, at most 128 characters, no control characters.
pub(crate) fn validate_key_id(location: &str, key_id: &str) -> Result<(), Invalid> {
    if key_id.trim().is_empty() {
        return Err(Invalid::new(location, "must not be empty"));
    }
    if key_id.chars().count() > MAX_ENCRYPTION_KEY_ID_CHARS {
        return Err(Invalid::new(
            location,
            format!("must not exceed {MAX_ENCRYPTION_KEY_ID_CHARS} characters"),
        ));
    }
    if key_id.chars().any(char::is_control) {
        return Err(Invalid::new(
            location,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn validate_env_name(location: &str, name: Option<&str>) -> Result<(), Invalid> {
    let Some(name) = name else { return Ok(()) };
    if name.trim().is_empty() {
        return Err(Invalid::new(location, "must not be empty"));
    }
    if name.contains(['=', '\0']) || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Invalid::new(
            location,
            "must be an environment variable name (no whitespace, `=` or control characters)",
        ));
    }
    Ok(())
}

fn validate_nonce_size(location: &str, size: u8) -> Result<(), Invalid> {
    if size != GCM_NONCE_SIZE_BYTES {
        return Err(Invalid::new(
            location,
            "must be 12: sinkhost encrypts with 96-bit AES-GCM nonces",
        ));
    }
    Ok(())
}

fn validate_tag_length(location: &str, length: u8) -> Result<(), Invalid> {
    if length != GCM_TAG_LENGTH {
        return Err(Invalid::new(
            location,
            "must be 16: AES-GCM tags are 16 bytes",
        ));
    }
    Ok(())
}

fn validate_envelope_version(location: &str, version: u8) -> Result<(), Invalid> {
    if !(1..=2).contains(&version) {
        return Err(Invalid::new(
            location,
            "must be 1 (nats_sinks.encrypted_payload.v1) or 2 (sinkhost.encrypted_payload.v2)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EncryptionConfig, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        let config: EncryptionConfig = serde_path_to_error::deserialize(&mut de)
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
        assert_eq!(config.algorithm, EncryptionAlgorithm::Aes256Gcm);
        assert_eq!(config.key_id, "default");
        assert_eq!(config.nonce_size_bytes, 12);
        assert_eq!(config.tag_length, 16);
        assert_eq!(config.envelope_version, 1);
        assert!(!config.any_enabled());
    }

    #[test]
    fn inline_key_is_refused_without_echoing_it() {
        let err =
            parse(r#"{"enabled":true,"key_b64":"QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8="}"#)
                .unwrap_err();
        assert!(
            err.starts_with("key_b64: key material is not accepted"),
            "{err}"
        );
        assert!(!err.contains("QEFC"), "{err}");
        let err = parse(r#"{"rules":[{"subject":"a","key_b64":"c2VjcmV0"}]}"#).unwrap_err();
        assert!(err.starts_with("rules[0].key_b64:"), "{err}");
        assert!(!err.contains("c2Vj"), "{err}");
    }

    #[test]
    fn algorithm_spellings_and_ccm_refused() {
        let config = parse(r#"{"algorithm":" AES_256_GCM "}"#).unwrap();
        assert_eq!(config.algorithm, EncryptionAlgorithm::Aes256Gcm);
        let err = parse(r#"{"algorithm":"aes-256-ccm"}"#).unwrap_err();
        assert!(err.starts_with("encryption.algorithm: sinkhost encrypts with aes-256-gcm only"));
        assert!(parse(r#"{"algorithm":"des"}"#)
            .unwrap_err()
            .starts_with("algorithm:"));
        let err =
            parse(r#"{"rules":[{"subject":"a.>","algorithm":"aes-256-ccm"}],"key_b64_env":"K"}"#)
                .unwrap_err();
        assert!(err.starts_with("encryption.rules[0].algorithm:"), "{err}");
    }

    #[test]
    fn enabled_needs_a_key_variable() {
        let err = parse(r#"{"enabled":true}"#).unwrap_err();
        assert!(err.starts_with("encryption.key_b64_env: required"), "{err}");
        let err = parse(r#"{"rules":[{"subject":"secret.>"}]}"#).unwrap_err();
        assert!(
            err.starts_with("encryption.rules[0].key_b64_env: required"),
            "{err}"
        );
        // A disabled rule needs no key.
        parse(r#"{"rules":[{"subject":"public.>","enabled":false}]}"#).unwrap();
        parse(r#"{"rules":[{"subject":"secret.>","key_id":"s","key_b64_env":"S"}]}"#).unwrap();
    }

    #[test]
    fn gcm_parameters_are_fixed() {
        assert!(parse(r#"{"nonce_size_bytes":13}"#)
            .unwrap_err()
            .contains("must be 12"));
        assert!(parse(r#"{"tag_length":8}"#)
            .unwrap_err()
            .contains("must be 16"));
        assert!(parse(r#"{"envelope_version":3}"#)
            .unwrap_err()
            .contains("must be 1"));
        let config = parse(r#"{"envelope_version":2}"#).unwrap();
        assert_eq!(config.envelope_version, 2);
    }

    #[test]
    fn rule_subjects_and_key_ids_are_checked() {
        let err = parse(r#"{"key_b64_env":"K","rules":[{"subject":"a.>.b"}]}"#).unwrap_err();
        assert!(err.starts_with("encryption.rules[0].subject:"), "{err}");
        let err = parse(r#"{"key_id":" "}"#).unwrap_err();
        assert!(
            err.starts_with("encryption.key_id: must not be empty"),
            "{err}"
        );
        let long = "k".repeat(129);
        let err = parse(&format!(r#"{{"key_id":"{long}"}}"#)).unwrap_err();
        assert!(err.contains("128"), "{err}");
    }

    #[test]
    fn one_key_id_names_one_variable() {
        // A rule with its own variable but the inherited key_id `default`.
        let err = parse(
            r#"{"enabled":true,"key_b64_env":"A","rules":[{"subject":"x.>","key_b64_env":"B"}]}"#,
        )
        .unwrap_err();
        assert!(
            err.starts_with("encryption.rules[0].key_b64_env: key_id `default`"),
            "{err}"
        );
        let err = parse(
            r#"{"enabled":true,"key_id":"k2","key_b64_env":"NEW","decrypt_keys":[{"key_id":"k2","key_b64_env":"OLD"}]}"#,
        )
        .unwrap_err();
        assert!(
            err.starts_with("encryption.decrypt_keys[0].key_b64_env"),
            "{err}"
        );
        // The same variable under the same key_id is fine.
        let config = parse(
            r#"{"enabled":true,"key_id":"k2","key_b64_env":"NEW",
                "rules":[{"subject":"x.>","key_b64_env":"NEW"},{"subject":"y.>","key_id":"y","key_b64_env":"Y"}],
                "decrypt_keys":[{"key_id":"k1","key_b64_env":"OLD"}]}"#,
        )
        .unwrap();
        let ids: Vec<_> = config.key_sources().into_iter().map(|s| s.key_id).collect();
        assert_eq!(ids, ["k2", "y", "k1"]);
    }

    #[test]
    fn rule_policy_inherits() {
        let config = parse(
            r#"{"enabled":false,"key_id":"top","key_b64_env":"TOP","envelope_version":2,
                "rules":[{"subject":"a.>"},{"subject":"b.>","key_id":"b","key_b64_env":"B","envelope_version":1},
                         {"subject":"c.>","enabled":false}]}"#,
        )
        .unwrap();
        let a = config.rule_policy(0).unwrap();
        assert!(a.encrypt);
        assert_eq!(a.key_id, "top");
        assert_eq!(a.key.unwrap().field, "encryption.key_b64_env");
        assert_eq!(a.envelope_version, 2);
        let b = config.rule_policy(1).unwrap();
        assert_eq!(b.key_id, "b");
        assert_eq!(b.key.unwrap().variable, "B");
        assert_eq!(b.envelope_version, 1);
        assert!(!config.rule_policy(2).unwrap().encrypt);
        assert!(config.any_enabled());
        // Serialized form never carries key_b64.
        let value = serde_json::to_value(&config).unwrap();
        assert!(value.get("key_b64").is_none());
    }
}
