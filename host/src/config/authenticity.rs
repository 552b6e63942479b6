//! The `message_authenticity` section: which subjects must carry a producer
//! signature, with which algorithm and keys.
//!
//! Names and defaults follow the reference `nats-sinks` (0.4.3), with two
//! sinkhost differences, both about key material:
//!
//! - secrets are never in the file: an HMAC secret is only ever read from the
//!   environment variable named by `key_b64_env` (the reference's inline
//!   `key_b64` is rejected as an unknown key). An Ed25519 *public* key is not
//!   secret and may be written inline as `public_key_b64`, or also come from
//!   `key_b64_env`;
//! - a rule may list additional `keys` for rotation: during a rollover the
//!   old and the new key are both valid and the producer's Key-Id header
//!   selects one.
//!
//! See `docs/message-authenticity.md` for the whole feature.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::Invalid;

/// Longest accepted key identifier, in characters (as the reference).
pub const MAX_KEY_ID_CHARS: usize = 128;
/// Most keys one rule may hold (its own plus `keys`).
pub const MAX_KEYS_PER_RULE: usize = 16;
/// Default header carrying the base64 signature.
pub const DEFAULT_SIGNATURE_HEADER: &str = "Nats-Sinks-Authenticity-Signature";
/// Default header carrying the algorithm name.
pub const DEFAULT_ALGORITHM_HEADER: &str = "Nats-Sinks-Authenticity-Algorithm";
/// Default header carrying the key identifier.
pub const DEFAULT_KEY_ID_HEADER: &str = "Nats-Sinks-Authenticity-Key-Id";

/// Message-level authenticity verification, before any sink sees a message.
///
/// NATS authentication and TLS protect the connection; they do not prove
/// that a given message was produced by an authorised publisher. When
/// enabled, every message whose subject matches a rule must carry a valid
/// signature over its payload hash and selected metadata; a message that
/// fails is never delivered to the sink (it goes to the DLQ with the reason
/// and is then ACKed; with no DLQ it stays unACKed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageAuthenticityConfig {
    /// Turn verification on. Requires at least one rule.
    #[serde(default)]
    pub enabled: bool,
    /// What to do with a message whose subject matches no rule:
    /// `reject` (default, fail closed) or `allow`.
    #[serde(default)]
    pub unmatched_subject_action: UnmatchedSubjectAction,
    /// Header holding the standard, padded base64 signature.
    #[serde(
        default = "default_signature_header",
        deserialize_with = "deserialize_trimmed"
    )]
    pub signature_header: String,
    /// Header holding the algorithm (`hmac-sha256` or `ed25519`).
    #[serde(
        default = "default_algorithm_header",
        deserialize_with = "deserialize_trimmed"
    )]
    pub algorithm_header: String,
    /// Header holding the key identifier.
    #[serde(
        default = "default_key_id_header",
        deserialize_with = "deserialize_trimmed"
    )]
    pub key_id_header: String,
    /// Rules in order; the first whose `subject` matches a message applies.
    #[serde(default)]
    pub rules: Vec<MessageAuthenticityRuleConfig>,
}

fn default_signature_header() -> String {
    DEFAULT_SIGNATURE_HEADER.to_string()
}
fn default_algorithm_header() -> String {
    DEFAULT_ALGORITHM_HEADER.to_string()
}
fn default_key_id_header() -> String {
    DEFAULT_KEY_ID_HEADER.to_string()
}

impl Default for MessageAuthenticityConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            unmatched_subject_action: UnmatchedSubjectAction::default(),
            signature_header: default_signature_header(),
            algorithm_header: default_algorithm_header(),
            key_id_header: default_key_id_header(),
            rules: Vec::new(),
        }
    }
}

/// What happens to a message whose subject matches no rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnmatchedSubjectAction {
    /// Deliver it unverified.
    Allow,
    /// Reject it (`subject_not_covered_by_authenticity_policy`). The default.
    #[default]
    Reject,
}

/// One subject-specific verification rule.
///
/// An enabled rule needs `key_id` and a key source; a disabled rule is an
/// explicit exemption (matching messages are delivered unverified, and later
/// rules are not consulted), to be used sparingly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageAuthenticityRuleConfig {
    /// NATS subject pattern (`*` one token, `>` one or more trailing tokens).
    pub subject: String,
    /// `false` makes this rule an exemption.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `hmac-sha256` (default) or `ed25519`; case and `_`/`-` variants such
    /// as `HMAC_SHA256` are accepted and stored in canonical form.
    #[serde(default)]
    pub algorithm: AuthenticityAlgorithm,
    /// Identifier of this rule's key, compared with the Key-Id header and
    /// signed. Required when enabled; at most 128 characters, no control
    /// characters, surrounding whitespace removed.
    #[serde(default, deserialize_with = "deserialize_trimmed_opt")]
    pub key_id: Option<String>,
    /// Environment variable holding the base64 key: the HMAC secret
    /// (32 to 1024 bytes), or the raw 32-byte Ed25519 public key.
    #[serde(default)]
    pub key_b64_env: Option<String>,
    /// Ed25519 only: the raw 32-byte public key, base64, inline (public keys
    /// are not secret). Exclusive with `key_b64_env`.
    #[serde(default)]
    pub public_key_b64: Option<String>,
    /// Additional keys accepted by this rule, for rotation. Same algorithm;
    /// each with its own `key_id`.
    #[serde(default)]
    pub keys: Vec<MessageAuthenticityKeyConfig>,
    /// Metadata fields bound by the signature, besides the payload hash.
    /// Default `["subject", "message_id"]`. A single string is accepted as a
    /// one-element list; names are matched ignoring case, `-` is read as `_`,
    /// and repeats are dropped.
    #[serde(
        default = "default_signed_fields",
        deserialize_with = "deserialize_signed_fields"
    )]
    pub signed_fields: Vec<SignedField>,
}

fn yes() -> bool {
    true
}

/// The reference's default signed fields: `subject`, `message_id`.
pub fn default_signed_fields() -> Vec<SignedField> {
    vec![SignedField::Subject, SignedField::MessageId]
}

/// An additional key of a rule (rotation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageAuthenticityKeyConfig {
    /// Identifier producers put in the Key-Id header to select this key.
    #[serde(deserialize_with = "deserialize_trimmed")]
    pub key_id: String,
    /// Environment variable holding the base64 key (as for the rule).
    #[serde(default)]
    pub key_b64_env: Option<String>,
    /// Ed25519 only: the base64 public key inline.
    #[serde(default)]
    pub public_key_b64: Option<String>,
}

/// A signature algorithm the verifier accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AuthenticityAlgorithm {
    /// HMAC with SHA-256 and a shared secret of 32 to 1024 bytes.
    #[default]
    HmacSha256,
    /// Ed25519 with a raw 32-byte public key.
    Ed25519,
}

impl AuthenticityAlgorithm {
    /// The canonical name, as in headers and in the signed document.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthenticityAlgorithm::HmacSha256 => "hmac-sha256",
            AuthenticityAlgorithm::Ed25519 => "ed25519",
        }
    }

    /// Parses a name the way the reference normalises it: surrounding
    /// whitespace removed, lowercased, `_` read as `-`.
    pub fn parse(name: &str) -> Option<Self> {
        let normalised = name.trim().to_lowercase().replace('_', "-");
        match normalised.as_str() {
            "hmac-sha256" => Some(AuthenticityAlgorithm::HmacSha256),
            "ed25519" => Some(AuthenticityAlgorithm::Ed25519),
            _ => None,
        }
    }
}

impl fmt::Display for AuthenticityAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for AuthenticityAlgorithm {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AuthenticityAlgorithm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        AuthenticityAlgorithm::parse(&name).ok_or_else(|| {
            de::Error::custom(format!(
                "unknown algorithm `{}`, expected `hmac-sha256` or `ed25519`",
                name.escape_debug()
            ))
        })
    }
}

/// A metadata field that a signature may bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SignedField {
    /// The NATS subject.
    Subject,
    /// The message id (`Nats-Msg-Id`, else `Nats-Message-Id`, else `message-id`).
    MessageId,
    /// The normalised priority.
    Priority,
    /// The normalised classification.
    Classification,
    /// The labels, as a list.
    Labels,
    /// The mission metadata object.
    MissionMetadata,
    /// The security labels profile.
    SecurityLabels,
}

impl SignedField {
    /// Every field, in the order they are documented.
    pub const ALL: [SignedField; 7] = [
        SignedField::Subject,
        SignedField::MessageId,
        SignedField::Priority,
        SignedField::Classification,
        SignedField::Labels,
        SignedField::MissionMetadata,
        SignedField::SecurityLabels,
    ];

    /// The field's name, as in config and in the signed document.
    pub fn as_str(self) -> &'static str {
        match self {
            SignedField::Subject => "subject",
            SignedField::MessageId => "message_id",
            SignedField::Priority => "priority",
            SignedField::Classification => "classification",
            SignedField::Labels => "labels",
            SignedField::MissionMetadata => "mission_metadata",
            SignedField::SecurityLabels => "security_labels",
        }
    }

    /// Parses a name as the reference does: trimmed, lowercased, `-` read
    /// as `_`.
    pub fn parse(name: &str) -> Option<Self> {
        let normalised = name.trim().to_lowercase().replace('-', "_");
        SignedField::ALL
            .into_iter()
            .find(|field| field.as_str() == normalised)
    }
}

impl fmt::Display for SignedField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SignedField {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SignedField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        SignedField::parse(&name).ok_or_else(|| {
            de::Error::custom(format!(
                "unknown signed field `{}`, expected one of: classification, labels, \
                 message_id, mission_metadata, priority, security_labels, subject",
                name.escape_debug()
            ))
        })
    }
}

/// `signed_fields`: a list of names, a single name, or null (the default).
fn deserialize_signed_fields<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<SignedField>, D::Error> {
    struct FieldsVisitor;

    impl<'de> Visitor<'de> for FieldsVisitor {
        type Value = Vec<SignedField>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of signed field names, or one name")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(default_signed_fields())
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(default_signed_fields())
        }

        fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
            let field = SignedField::deserialize(de::value::StrDeserializer::<E>::new(name))?;
            Ok(vec![field])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut fields = Vec::new();
            while let Some(field) = seq.next_element::<SignedField>()? {
                if !fields.contains(&field) {
                    fields.push(field);
                }
            }
            Ok(fields)
        }
    }

    deserializer.deserialize_any(FieldsVisitor)
}

fn deserialize_trimmed<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(String::deserialize(deserializer)?.trim().to_string())
}

fn deserialize_trimmed_opt<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.map(|value| value.trim().to_string()))
}

const SECTION: &str = "message_authenticity";

impl MessageAuthenticityConfig {
    /// Checks what the types cannot: header names, subject patterns, key
    /// identifiers, key sources and inline public keys. Environment
    /// variables are not read here; [`crate::security::authenticity::Verifier`]
    /// reads and checks them when it is built.
    pub fn validate(&self) -> Result<(), Invalid> {
        let headers = [
            ("signature_header", &self.signature_header),
            ("algorithm_header", &self.algorithm_header),
            ("key_id_header", &self.key_id_header),
        ];
        for (field, name) in headers {
            validate_header_name(name)
                .map_err(|m| Invalid::new(format!("{SECTION}.{field}"), m))?;
        }
        for (index, (field, name)) in headers.iter().enumerate() {
            let lowered = name.to_lowercase();
            if headers[..index]
                .iter()
                .any(|(_, other)| other.to_lowercase() == lowered)
            {
                return Err(Invalid::new(
                    format!("{SECTION}.{field}"),
                    "the three authenticity header names must be distinct (ignoring case)",
                ));
            }
        }
        if self.enabled && self.rules.is_empty() {
            return Err(Invalid::new(
                format!("{SECTION}.rules"),
                "at least one rule is required when message_authenticity.enabled is true",
            ));
        }
        for (index, rule) in self.rules.iter().enumerate() {
            rule.validate(&format!("{SECTION}.rules[{index}]"))?;
        }
        Ok(())
    }
}

impl MessageAuthenticityRuleConfig {
    /// Checks one rule; `location` is its JSON path, e.g.
    /// `message_authenticity.rules[0]`.
    pub fn validate(&self, location: &str) -> Result<(), Invalid> {
        crate::subjects::validate_subject_pattern(&self.subject)
            .map_err(|err| Invalid::new(format!("{location}.subject"), err.to_string()))?;
        if self.signed_fields.is_empty() {
            // Allowed by the reference, but then the signature binds neither
            // subject nor message id: say so clearly rather than guess.
            return Err(Invalid::new(
                format!("{location}.signed_fields"),
                "must name at least one field (default: [\"subject\", \"message_id\"])",
            ));
        }
        let mut seen_fields = Vec::new();
        for field in &self.signed_fields {
            if seen_fields.contains(field) {
                return Err(Invalid::new(
                    format!("{location}.signed_fields"),
                    format!("`{field}` is listed twice"),
                ));
            }
            seen_fields.push(*field);
        }
        if let Some(key_id) = &self.key_id {
            validate_key_id(key_id).map_err(|m| Invalid::new(format!("{location}.key_id"), m))?;
        }
        if self.enabled && self.key_id.is_none() {
            return Err(Invalid::new(
                format!("{location}.key_id"),
                "required when the rule is enabled",
            ));
        }
        validate_key_source(
            self.algorithm,
            self.key_b64_env.as_deref(),
            self.public_key_b64.as_deref(),
            self.enabled,
            location,
        )?;
        if self.keys.len() + 1 > MAX_KEYS_PER_RULE {
            return Err(Invalid::new(
                format!("{location}.keys"),
                format!("at most {} additional keys per rule", MAX_KEYS_PER_RULE - 1),
            ));
        }
        let mut key_ids: Vec<&str> = self.key_id.iter().map(String::as_str).collect();
        for (index, key) in self.keys.iter().enumerate() {
            let key_location = format!("{location}.keys[{index}]");
            validate_key_id(&key.key_id)
                .map_err(|m| Invalid::new(format!("{key_location}.key_id"), m))?;
            if key_ids.contains(&key.key_id.as_str()) {
                return Err(Invalid::new(
                    format!("{key_location}.key_id"),
                    format!(
                        "key id `{}` is used twice in this rule",
                        key.key_id.escape_debug()
                    ),
                ));
            }
            key_ids.push(&key.key_id);
            validate_key_source(
                self.algorithm,
                key.key_b64_env.as_deref(),
                key.public_key_b64.as_deref(),
                true,
                &key_location,
            )?;
        }
        Ok(())
    }
}

/// One key's source: `key_b64_env` for HMAC; exactly one of `key_b64_env`
/// and `public_key_b64` for Ed25519. With `required` false (a disabled
/// rule) no source is needed, but what is given must be well-formed.
fn validate_key_source(
    algorithm: AuthenticityAlgorithm,
    key_b64_env: Option<&str>,
    public_key_b64: Option<&str>,
    required: bool,
    location: &str,
) -> Result<(), Invalid> {
    if let Some(variable) = key_b64_env {
        validate_env_name(variable)
            .map_err(|m| Invalid::new(format!("{location}.key_b64_env"), m))?;
    }
    match (algorithm, key_b64_env, public_key_b64) {
        (AuthenticityAlgorithm::HmacSha256, _, Some(_)) => Err(Invalid::new(
            format!("{location}.public_key_b64"),
            "only for ed25519; an HMAC secret is never written in the file: \
             put it, base64, in an environment variable named by key_b64_env",
        )),
        (AuthenticityAlgorithm::Ed25519, Some(_), Some(_)) => Err(Invalid::new(
            format!("{location}.public_key_b64"),
            "set either key_b64_env or public_key_b64, not both",
        )),
        (AuthenticityAlgorithm::Ed25519, None, Some(public_key)) => {
            crate::security::authenticity::decode_ed25519_public_key(public_key)
                .map(|_| ())
                .map_err(|problem| {
                    Invalid::new(format!("{location}.public_key_b64"), problem.to_string())
                })
        }
        (_, None, None) if required => Err(Invalid::new(
            format!("{location}.key_b64_env"),
            match algorithm {
                AuthenticityAlgorithm::HmacSha256 => {
                    "required: name the environment variable holding the base64 HMAC secret"
                }
                AuthenticityAlgorithm::Ed25519 => {
                    "a key is required: set key_b64_env or public_key_b64"
                }
            },
        )),
        _ => Ok(()),
    }
}

/// Key ids are signed and compared exactly: 1 to 128 characters, no
/// control characters, no surrounding whitespace.
fn validate_key_id(key_id: &str) -> Result<(), String> {
    if key_id.trim().is_empty() {
        return Err("must not be empty".to_string());
    }
    if key_id.trim() != key_id {
        return Err("must not have surrounding whitespace".to_string());
    }
    if key_id.chars().count() > MAX_KEY_ID_CHARS {
        return Err(format!("must be at most {MAX_KEY_ID_CHARS} characters"));
    }
    if key_id.chars().any(is_ascii_control) {
        return Err("must not contain control characters".to_string());
    }
    Ok(())
}

/// Environment variable names as the reference accepts them:
/// `[A-Z_][A-Z0-9_]{0,127}`.
fn validate_env_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let well_formed = !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_uppercase() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_');
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not an environment variable name: use uppercase letters, digits and `_` \
             (not starting with a digit), at most 128 characters; the value itself never goes \
             in the file",
            name.escape_debug()
        ))
    }
}

/// Header names: non-empty, no control characters (the reference's rule),
/// and, as NATS header names can never contain them, no whitespace or `:`.
fn validate_header_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".to_string());
    }
    if name
        .chars()
        .any(|c| is_ascii_control(c) || c.is_whitespace() || c == ':')
    {
        return Err("must not contain whitespace, `:` or control characters".to_string());
    }
    Ok(())
}

fn is_ascii_control(c: char) -> bool {
    (c as u32) < 0x20 || c == '\u{7f}'
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ED_PUBLIC: &str = "Kay64UG8yvCyLhqU000LxzYeUm0L/hLIl5S8kyKWbdc=";

    fn parse(value: serde_json::Value) -> Result<MessageAuthenticityConfig, String> {
        let config: MessageAuthenticityConfig =
            serde_json::from_value(value).map_err(|err| format!("parse: {err}"))?;
        config
            .validate()
            .map_err(|err| format!("{}: {}", err.location, err.message))?;
        Ok(config)
    }

    #[test]
    fn defaults_match_the_reference() {
        let config = parse(json!({})).expect("empty section is valid");
        assert_eq!(config, MessageAuthenticityConfig::default());
        assert!(!config.enabled);
        assert_eq!(
            config.unmatched_subject_action,
            UnmatchedSubjectAction::Reject
        );
        assert_eq!(config.signature_header, "Nats-Sinks-Authenticity-Signature");
        assert_eq!(config.algorithm_header, "Nats-Sinks-Authenticity-Algorithm");
        assert_eq!(config.key_id_header, "Nats-Sinks-Authenticity-Key-Id");
        let rule: MessageAuthenticityRuleConfig =
            serde_json::from_value(json!({"subject": "a.>"})).expect("parses");
        assert!(rule.enabled);
        assert_eq!(rule.algorithm, AuthenticityAlgorithm::HmacSha256);
        assert_eq!(rule.signed_fields, default_signed_fields());
        assert!(rule.keys.is_empty());
    }

    #[test]
    fn full_example_parses() {
        let config = parse(json!({
            "enabled": true,
            "unmatched_subject_action": "allow",
            "rules": [
                {"subject": "mission.>", "algorithm": "HMAC_SHA256", "key_id": " k1 ",
                 "key_b64_env": "MISSION_HMAC_KEY",
                 "keys": [{"key_id": "k0", "key_b64_env": "MISSION_HMAC_KEY_OLD"}],
                 "signed_fields": ["subject", "Message-Id", "labels", "labels"]},
                {"subject": "ops.*", "algorithm": "Ed25519", "key_id": "ed1",
                 "public_key_b64": ED_PUBLIC},
                {"subject": "public.>", "enabled": false}
            ]
        }))
        .expect("valid");
        let rule = &config.rules[0];
        assert_eq!(rule.algorithm, AuthenticityAlgorithm::HmacSha256);
        assert_eq!(
            rule.key_id.as_deref(),
            Some("k1"),
            "trimmed like the reference"
        );
        assert_eq!(
            rule.signed_fields,
            vec![
                SignedField::Subject,
                SignedField::MessageId,
                SignedField::Labels
            ]
        );
        assert_eq!(config.rules[1].algorithm, AuthenticityAlgorithm::Ed25519);
        // A single string is a one-element list.
        let rule: MessageAuthenticityRuleConfig =
            serde_json::from_value(json!({"subject": "a", "signed_fields": "priority"}))
                .expect("parses");
        assert_eq!(rule.signed_fields, vec![SignedField::Priority]);
    }

    #[test]
    fn serialisation_holds_no_key_material() {
        let config = parse(json!({
            "enabled": true,
            "rules": [
                {"subject": "a", "key_id": "k1", "key_b64_env": "A_KEY"},
                {"subject": "b", "algorithm": "ed25519", "key_id": "e", "public_key_b64": ED_PUBLIC}
            ]
        }))
        .expect("valid");
        let text = serde_json::to_string(&config).expect("serialises");
        assert!(text.contains("\"key_b64_env\":\"A_KEY\""));
        assert!(text.contains("\"algorithm\":\"hmac-sha256\""));
        assert!(text.contains("\"signed_fields\":[\"subject\",\"message_id\"]"));
        assert!(!text.contains("\"key_b64\""));
        // And it reads back to the same value.
        let back: MessageAuthenticityConfig = serde_json::from_str(&text).expect("round-trips");
        assert_eq!(back, config);
    }

    #[test]
    fn inline_secret_is_rejected() {
        let err = parse(json!({
            "rules": [{"subject": "a", "key_id": "k1", "key_b64": "AAAA"}]
        }))
        .expect_err("key_b64 is not a field");
        assert!(err.contains("unknown field `key_b64`"), "{err}");
        let err = parse(json!({
            "rules": [{"subject": "a", "key_id": "k1", "public_key_b64": ED_PUBLIC}]
        }))
        .expect_err("HMAC has no public key");
        assert!(
            err.starts_with("message_authenticity.rules[0].public_key_b64:"),
            "{err}"
        );
    }

    #[test]
    fn unknown_algorithm_and_field_are_rejected() {
        let err = parse(json!({"rules": [{"subject": "a", "algorithm": "rsa", "key_id": "k"}]}))
            .expect_err("unknown algorithm");
        assert!(err.contains("unknown algorithm `rsa`"), "{err}");
        let err = parse(json!({"rules": [{"subject": "a", "signed_fields": ["payload"]}]}))
            .expect_err("unknown field");
        assert!(err.contains("unknown signed field `payload`"), "{err}");
        let err = parse(json!({"unmatched_subject_action": "drop"})).expect_err("bad action");
        assert!(err.contains("unknown variant `drop`"), "{err}");
        let err = parse(json!({"bogus": 1})).expect_err("unknown key");
        assert!(err.contains("unknown field `bogus`"), "{err}");
    }

    #[test]
    fn semantic_errors_name_their_location() {
        let cases = [
            (json!({"enabled": true}), "message_authenticity.rules"),
            (
                json!({"rules": [{"subject": "a..b", "key_id": "k", "key_b64_env": "K"}]}),
                "message_authenticity.rules[0].subject",
            ),
            (
                json!({"rules": [{"subject": "a", "key_b64_env": "K"}]}),
                "message_authenticity.rules[0].key_id",
            ),
            (
                json!({"rules": [{"subject": "a", "key_id": "k"}]}),
                "message_authenticity.rules[0].key_b64_env",
            ),
            (
                json!({"rules": [{"subject": "a", "key_id": "k", "key_b64_env": "lower_case"}]}),
                "message_authenticity.rules[0].key_b64_env",
            ),
            (
                json!({"rules": [{"subject": "a", "key_id": "k\u{1}", "key_b64_env": "K"}]}),
                "message_authenticity.rules[0].key_id",
            ),
            (
                json!({"rules": [{"subject": "a", "key_id": "x".repeat(129), "key_b64_env": "K"}]}),
                "message_authenticity.rules[0].key_id",
            ),
            (
                json!({"rules": [{"subject": "a", "key_id": "k", "key_b64_env": "K",
                                  "keys": [{"key_id": "k", "key_b64_env": "K2"}]}]}),
                "message_authenticity.rules[0].keys[0].key_id",
            ),
            (
                json!({"rules": [{"subject": "a", "key_id": "k", "key_b64_env": "K",
                                  "keys": [{"key_id": "k2"}]}]}),
                "message_authenticity.rules[0].keys[0].key_b64_env",
            ),
            (
                json!({"rules": [{"subject": "a", "algorithm": "ed25519", "key_id": "k",
                                  "key_b64_env": "K", "public_key_b64": ED_PUBLIC}]}),
                "message_authenticity.rules[0].public_key_b64",
            ),
            (
                json!({"rules": [{"subject": "a", "algorithm": "ed25519", "key_id": "k",
                                  "public_key_b64": "AAAA"}]}),
                "message_authenticity.rules[0].public_key_b64",
            ),
            (
                json!({"rules": [{"subject": "a", "algorithm": "ed25519", "key_id": "k",
                                  "public_key_b64": "not base64!"}]}),
                "message_authenticity.rules[0].public_key_b64",
            ),
            (
                json!({"rules": [{"subject": "a", "key_id": "k", "key_b64_env": "K",
                                  "signed_fields": []}]}),
                "message_authenticity.rules[0].signed_fields",
            ),
            (
                json!({"signature_header": ""}),
                "message_authenticity.signature_header",
            ),
            (
                json!({"key_id_header": "A\u{7}"}),
                "message_authenticity.key_id_header",
            ),
            (
                json!({"key_id_header": "nats-sinks-authenticity-signature"}),
                "message_authenticity.key_id_header",
            ),
        ];
        for (value, location) in cases {
            let err = parse(value.clone()).expect_err(&value.to_string());
            assert!(
                err.starts_with(&format!("{location}: ")),
                "{value}: expected {location}, got {err}"
            );
        }
    }

    #[test]
    fn disabled_rule_needs_no_key() {
        let config =
            parse(json!({"enabled": true, "rules": [{"subject": "a.>", "enabled": false}]}))
                .expect("an exemption needs no key");
        assert!(!config.rules[0].enabled);
    }

    #[test]
    fn key_id_with_surrounding_whitespace_is_rejected_when_built_in_code() {
        let mut config = MessageAuthenticityConfig::default();
        config.rules.push(MessageAuthenticityRuleConfig {
            subject: "a".into(),
            enabled: true,
            algorithm: AuthenticityAlgorithm::HmacSha256,
            key_id: Some(" k ".into()),
            key_b64_env: Some("K".into()),
            public_key_b64: None,
            keys: Vec::new(),
            signed_fields: default_signed_fields(),
        });
        let err = config.validate().expect_err("untrimmed");
        assert_eq!(err.location, "message_authenticity.rules[0].key_id");
    }
}
