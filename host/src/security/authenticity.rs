//! Message authenticity: verifying a producer's signature before any sink
//! sees a message, wire-compatible with the reference `nats-sinks` 0.4.3.
//!
//! NATS authentication and TLS protect the connection to the broker; they do
//! not prove that a message was produced by an authorised publisher. A
//! producer signs a small canonical JSON document that binds the SHA-256 of
//! the payload and selected metadata (by default the subject and the message
//! id) and sends the signature, the algorithm and the key id in headers:
//!
//! ```text
//! Nats-Sinks-Authenticity-Signature: <standard base64, padded>
//! Nats-Sinks-Authenticity-Algorithm: hmac-sha256 | ed25519
//! Nats-Sinks-Authenticity-Key-Id:    <key id>
//! ```
//!
//! The signed bytes are the canonical JSON (see [`crate::security::canonical`])
//! of
//!
//! ```text
//! {"algorithm":…,"key_id":…,"metadata":{<signed fields>},
//!  "payload_sha256":"<hex>","schema":"nats_sinks.message_authenticity.v1","version":1}
//! ```
//!
//! [`Verifier`] is built once from the configuration (it reads the keys from
//! the environment then) and checks each message with [`Verifier::verify`].
//! The checks run in the reference's order, and a failure carries the
//! reference's reason code ([`FailureReason`]). Nothing here ever logs or
//! returns key material, signatures or header values.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, VerifyingKey};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::config::{read_secret_env, MessageAuthenticityRuleConfig, SecretError};
pub use crate::config::{
    AuthenticityAlgorithm, MessageAuthenticityConfig, SignedField, UnmatchedSubjectAction,
};
pub use crate::envelope::{header_value, message_id_from_headers};
use crate::security::canonical::to_canonical_bytes;
use crate::security::subjects::matches_subject;

/// Ed25519 signing key (for producers and tests): build one from a 32-byte
/// seed with `SigningKey::from_bytes(&seed)`.
pub use ed25519_dalek::SigningKey;

/// The `schema` value of the signed document.
pub const SCHEMA: &str = "nats_sinks.message_authenticity.v1";
/// The `version` value of the signed document.
pub const VERSION: u64 = 1;
/// Longest accepted decoded signature, in bytes (as the reference).
pub const MAX_SIGNATURE_BYTES: usize = 1024;
/// Longest accepted signature header after trimming, in characters: the
/// base64 length of [`MAX_SIGNATURE_BYTES`]. Longer headers are rejected
/// without being decoded.
pub const MAX_SIGNATURE_BASE64_CHARS: usize = 4 * MAX_SIGNATURE_BYTES.div_ceil(3);
/// Shortest accepted HMAC-SHA256 key, in bytes (as the reference).
pub const MIN_HMAC_KEY_BYTES: usize = 32;
/// Longest accepted HMAC-SHA256 key, in bytes (as the reference).
pub const MAX_HMAC_KEY_BYTES: usize = 1024;
/// Length of a raw Ed25519 public key.
pub const ED25519_PUBLIC_KEY_BYTES: usize = 32;
/// Length of an HMAC-SHA256 signature.
pub const HMAC_SHA256_SIGNATURE_BYTES: usize = 32;
/// Length of an Ed25519 signature.
pub const ED25519_SIGNATURE_BYTES: usize = 64;
/// `error_type` the reference writes in the DLQ record of a rejected message.
pub const DLQ_ERROR_TYPE: &str = "PolicyViolationError";

/// Standard alphabet, canonical padding required. Non-zero trailing bits
/// are tolerated because Python's `b64decode(validate=True)` tolerates them
/// (they do not change the decoded bytes).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

type HmacSha256 = Hmac<Sha256>;

/// What the verifier needs to know about one message.
///
/// `headers` are searched by name ignoring case; the first match wins. The
/// other fields are the host's *normalised* values, the same ones the sink
/// will see: they are what the producer signed. Fields a rule does not sign
/// are ignored, and a missing one is signed as `null` (`labels` as a list,
/// `[]` when empty).
#[derive(Debug, Clone, Copy)]
pub struct MessageToVerify<'a> {
    /// The NATS subject.
    pub subject: &'a str,
    /// Headers in received order; names may repeat.
    pub headers: &'a [(String, String)],
    /// The payload as received (before any decryption or re-encoding).
    pub payload: &'a [u8],
    /// The message id: `Nats-Msg-Id`, else `Nats-Message-Id`, else
    /// `message-id` (see [`message_id_from_headers`]).
    pub message_id: Option<&'a str>,
    /// Normalised priority.
    pub priority: Option<&'a str>,
    /// Normalised classification.
    pub classification: Option<&'a str>,
    /// Normalised labels in producer order.
    pub labels: &'a [String],
    /// Mission metadata object, as the sink would store it.
    pub mission_metadata: Option<&'a Value>,
    /// Security labels profile, as the sink would store it.
    pub security_labels: Option<&'a Value>,
}

impl<'a> MessageToVerify<'a> {
    /// A message with only subject, headers and payload; the message id is
    /// taken from the headers as the reference does, and priority,
    /// classification, labels, mission metadata and security labels are
    /// absent. Set the other fields when a rule signs them.
    pub fn new(subject: &'a str, headers: &'a [(String, String)], payload: &'a [u8]) -> Self {
        Self {
            subject,
            headers,
            payload,
            message_id: message_id_from_headers(headers),
            priority: None,
            classification: None,
            labels: &[],
            mission_metadata: None,
            security_labels: None,
        }
    }
}

/// Whitespace as Python's `str.strip()` removes it: Unicode White_Space
/// plus U+001C..U+001F.
fn python_strip(value: &str) -> &str {
    value.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// The canonical document as a JSON value (see the module documentation).
pub fn canonical_value(
    algorithm: AuthenticityAlgorithm,
    key_id: &str,
    signed_fields: &[SignedField],
    message: &MessageToVerify<'_>,
) -> Value {
    fn text(value: Option<&str>) -> Value {
        value.map_or(Value::Null, |v| Value::String(v.to_string()))
    }
    let mut metadata = Map::new();
    for field in signed_fields {
        let value = match field {
            SignedField::Subject => Value::String(message.subject.to_string()),
            SignedField::MessageId => text(message.message_id),
            SignedField::Priority => text(message.priority),
            SignedField::Classification => text(message.classification),
            SignedField::Labels => Value::Array(
                message
                    .labels
                    .iter()
                    .map(|label| Value::String(label.clone()))
                    .collect(),
            ),
            SignedField::MissionMetadata => {
                message.mission_metadata.cloned().unwrap_or(Value::Null)
            }
            SignedField::SecurityLabels => message.security_labels.cloned().unwrap_or(Value::Null),
        };
        metadata.insert(field.as_str().to_string(), value);
    }
    let mut document = Map::new();
    document.insert("algorithm".into(), Value::String(algorithm.as_str().into()));
    document.insert("key_id".into(), Value::String(key_id.into()));
    document.insert("metadata".into(), Value::Object(metadata));
    document.insert(
        "payload_sha256".into(),
        Value::String(hex::encode(Sha256::digest(message.payload))),
    );
    document.insert("schema".into(), Value::String(SCHEMA.into()));
    document.insert("version".into(), Value::from(VERSION));
    Value::Object(document)
}

/// The exact bytes that are signed: canonical JSON of [`canonical_value`].
pub fn canonical_document(
    algorithm: AuthenticityAlgorithm,
    key_id: &str,
    signed_fields: &[SignedField],
    message: &MessageToVerify<'_>,
) -> Vec<u8> {
    to_canonical_bytes(&canonical_value(algorithm, key_id, signed_fields, message))
}

/// Why a producer-side signing helper refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The HMAC key is outside what verifiers accept.
    #[error("HMAC-SHA256 key must be {MIN_HMAC_KEY_BYTES} to {MAX_HMAC_KEY_BYTES} bytes, got {0}")]
    HmacKeyLength(usize),
}

/// Signs `message` with HMAC-SHA256 and returns the standard, padded base64
/// signature for the signature header. For producers and tests.
pub fn sign_hmac(
    key: &[u8],
    key_id: &str,
    signed_fields: &[SignedField],
    message: &MessageToVerify<'_>,
) -> Result<String, SignError> {
    if !(MIN_HMAC_KEY_BYTES..=MAX_HMAC_KEY_BYTES).contains(&key.len()) {
        return Err(SignError::HmacKeyLength(key.len()));
    }
    let document = canonical_document(
        AuthenticityAlgorithm::HmacSha256,
        key_id,
        signed_fields,
        message,
    );
    let mut mac =
        HmacSha256::new_from_slice(key).map_err(|_| SignError::HmacKeyLength(key.len()))?;
    mac.update(&document);
    Ok(BASE64.encode(mac.finalize().into_bytes()))
}

/// Signs `message` with Ed25519 and returns the standard, padded base64
/// signature for the signature header. For producers and tests.
pub fn sign_ed25519(
    signing_key: &SigningKey,
    key_id: &str,
    signed_fields: &[SignedField],
    message: &MessageToVerify<'_>,
) -> String {
    let document = canonical_document(
        AuthenticityAlgorithm::Ed25519,
        key_id,
        signed_fields,
        message,
    );
    BASE64.encode(signing_key.sign(&document).to_bytes())
}

/// The three headers a producer adds, with the default header names.
pub fn authenticity_headers(
    algorithm: AuthenticityAlgorithm,
    key_id: &str,
    signature_b64: &str,
) -> [(String, String); 3] {
    use crate::config::{
        DEFAULT_ALGORITHM_HEADER, DEFAULT_KEY_ID_HEADER, DEFAULT_SIGNATURE_HEADER,
    };
    [
        (
            DEFAULT_SIGNATURE_HEADER.to_string(),
            signature_b64.to_string(),
        ),
        (
            DEFAULT_ALGORITHM_HEADER.to_string(),
            algorithm.as_str().to_string(),
        ),
        (DEFAULT_KEY_ID_HEADER.to_string(), key_id.to_string()),
    ]
}

/// Why verification failed: the reference's reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// No rule matches the subject and `unmatched_subject_action` is
    /// `reject`: `subject_not_covered_by_authenticity_policy`.
    SubjectNotCovered,
    /// The algorithm header is absent or blank.
    AlgorithmHeaderMissing,
    /// The algorithm header names another algorithm than the rule's.
    AlgorithmMismatch,
    /// The key id header is absent or blank.
    KeyIdHeaderMissing,
    /// The key id is not one of the rule's keys.
    KeyIdMismatch,
    /// The signature header is absent or blank.
    SignatureHeaderMissing,
    /// The signature is malformed (not base64, too long, wrong length) or
    /// does not verify.
    SignatureInvalid,
}

impl FailureReason {
    /// The reason code, as the reference writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::SubjectNotCovered => "subject_not_covered_by_authenticity_policy",
            FailureReason::AlgorithmHeaderMissing => "algorithm_header_missing",
            FailureReason::AlgorithmMismatch => "algorithm_mismatch",
            FailureReason::KeyIdHeaderMissing => "key_id_header_missing",
            FailureReason::KeyIdMismatch => "key_id_mismatch",
            FailureReason::SignatureHeaderMissing => "signature_header_missing",
            FailureReason::SignatureInvalid => "signature_invalid",
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for FailureReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The rule label the reference reports for an unmatched subject.
pub const UNMATCHED_RULE_LABEL: &str = "<unmatched>";

/// A message failed verification. Permanent: the message must not reach the
/// sink. Holds no header value, signature or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message authenticity verification failed: rule `{rule_subject}`: {reason} ({detail})")]
pub struct AuthenticityFailure {
    /// The reference's reason code.
    pub reason: FailureReason,
    /// A human explanation for logs and the DLQ record.
    pub detail: String,
    /// The matched rule's subject pattern, or `<unmatched>`.
    pub rule_subject: String,
}

impl AuthenticityFailure {
    fn new(reason: FailureReason, rule_subject: &str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            rule_subject: rule_subject.to_string(),
        }
    }

    /// The `error` text the reference puts in the DLQ record of a rejected
    /// message (its error type is [`DLQ_ERROR_TYPE`]), for one message:
    /// `message authenticity verification rejected 1 message(s); first
    /// subject='…' rule='…' reason=…`.
    pub fn reference_error_message(&self, subject: &str) -> String {
        format!(
            "message authenticity verification rejected 1 message(s); first subject={} rule={} reason={}",
            python_repr(subject),
            python_repr(&self.rule_subject),
            self.reason
        )
    }
}

/// Python's `repr(str)`, for reference-identical error texts: single quotes
/// unless the text contains `'` and no `"`; backslash escapes; non-printable
/// characters as `\xNN`, `\uNNNN` or `\UNNNNNNNN` (control characters are
/// taken as the non-printable ones).
fn python_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let code = c as u32;
                if code < 0x100 {
                    out.push_str(&format!("\\x{code:02x}"));
                } else if code < 0x10000 {
                    out.push_str(&format!("\\u{code:04x}"));
                } else {
                    out.push_str(&format!("\\U{code:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// A message that may go on to the sink, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// `message_authenticity.enabled` is false: nothing was checked.
    NotEnabled,
    /// No rule matches the subject and `unmatched_subject_action` is `allow`.
    UnmatchedAllowed,
    /// The first matching rule is disabled: an explicit exemption.
    Exempt {
        /// Index of the rule in `message_authenticity.rules`.
        rule_index: usize,
        /// The rule's subject pattern.
        rule_subject: String,
    },
    /// The signature verified.
    Signed {
        /// Index of the rule in `message_authenticity.rules`.
        rule_index: usize,
        /// The rule's subject pattern.
        rule_subject: String,
        /// The rule's algorithm.
        algorithm: AuthenticityAlgorithm,
        /// The key that verified it.
        key_id: String,
    },
}

/// The verifier could not be built from the configuration. Messages name
/// the config location and the environment variable, never a key.
#[derive(Debug, thiserror::Error)]
pub enum AuthenticityConfigError {
    /// The section does not validate.
    #[error("invalid config at `{location}`: {message}")]
    Invalid {
        /// JSON path of the offending value.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A `key_b64_env` variable is unset, empty or not UTF-8.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The key text is not standard, padded base64.
    #[error("`{location}`: {key_source} is not valid base64 (standard alphabet, padded)")]
    KeyNotBase64 {
        /// JSON path of the key's config field.
        location: String,
        /// `environment variable NAME` or `inline public_key_b64`.
        key_source: String,
    },
    /// The key decodes to a length the algorithm does not accept.
    #[error(
        "`{location}`: {key_source} decodes to {actual} bytes, but {algorithm} needs {expected}"
    )]
    KeyLength {
        /// JSON path of the key's config field.
        location: String,
        /// `environment variable NAME` or `inline public_key_b64`.
        key_source: String,
        /// The rule's algorithm.
        algorithm: AuthenticityAlgorithm,
        /// Decoded length.
        actual: usize,
        /// What is accepted, e.g. `32 to 1024 bytes`.
        expected: &'static str,
    },
    /// 32 bytes that are not a usable Ed25519 public key.
    #[error("`{location}`: {key_source} is not a usable Ed25519 public key: {problem}")]
    Ed25519Key {
        /// JSON path of the key's config field.
        location: String,
        /// `environment variable NAME` or `inline public_key_b64`.
        key_source: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// Why a base64 Ed25519 public key is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ed25519KeyProblem {
    /// Not standard, padded base64.
    #[error("not valid base64 (standard alphabet, padded)")]
    NotBase64,
    /// Not 32 bytes.
    #[error("decodes to {0} bytes, but an Ed25519 public key is exactly 32")]
    Length(usize),
    /// Not a point on the curve.
    #[error("not a valid curve point")]
    NotAPoint,
    /// A small-order ("weak") key, under which forgeries are trivial.
    #[error("a weak (small-order) key")]
    Weak,
}

/// Decodes a standard, padded base64 Ed25519 public key and checks that it
/// is a usable (valid, not small-order) curve point.
pub fn decode_ed25519_public_key(text: &str) -> Result<VerifyingKey, Ed25519KeyProblem> {
    let bytes = decode_key_b64(text).ok_or(Ed25519KeyProblem::NotBase64)?;
    ed25519_key_from_bytes(&bytes)
}

fn ed25519_key_from_bytes(bytes: &[u8]) -> Result<VerifyingKey, Ed25519KeyProblem> {
    let array: &[u8; ED25519_PUBLIC_KEY_BYTES] = bytes
        .try_into()
        .map_err(|_| Ed25519KeyProblem::Length(bytes.len()))?;
    let key = VerifyingKey::from_bytes(array).map_err(|_| Ed25519KeyProblem::NotAPoint)?;
    if key.is_weak() {
        return Err(Ed25519KeyProblem::Weak);
    }
    Ok(key)
}

/// Strict base64 of a key; surrounding whitespace (a trailing newline from a
/// secret file) is ignored. `None` when malformed.
fn decode_key_b64(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    BASE64
        .decode(text.trim_matches(|c: char| c.is_ascii_whitespace()))
        .ok()
        .map(Zeroizing::new)
}

/// A key of a prepared rule.
struct PreparedKey {
    key_id: String,
    material: KeyMaterial,
}

enum KeyMaterial {
    /// The MAC already keyed: cloned per message, so the key is hashed once.
    Hmac(Box<HmacSha256>),
    Ed25519(VerifyingKey),
}

struct PreparedRule {
    subject: String,
    enabled: bool,
    algorithm: AuthenticityAlgorithm,
    signed_fields: Vec<SignedField>,
    keys: Vec<PreparedKey>,
}

/// Checks message signatures against the configured rules. Built once at
/// start-up; cheap to share (`&self`) between tasks.
pub struct Verifier {
    enabled: bool,
    unmatched_subject_action: UnmatchedSubjectAction,
    signature_header: String,
    algorithm_header: String,
    key_id_header: String,
    rules: Vec<PreparedRule>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only: never key material.
        let rules: Vec<String> = self
            .rules
            .iter()
            .map(|rule| {
                let ids: Vec<&str> = rule.keys.iter().map(|k| k.key_id.as_str()).collect();
                format!(
                    "{} enabled={} {} keys={:?} fields={:?}",
                    rule.subject, rule.enabled, rule.algorithm, ids, rule.signed_fields
                )
            })
            .collect();
        f.debug_struct("Verifier")
            .field("enabled", &self.enabled)
            .field("unmatched_subject_action", &self.unmatched_subject_action)
            .field("signature_header", &self.signature_header)
            .field("algorithm_header", &self.algorithm_header)
            .field("key_id_header", &self.key_id_header)
            .field("rules", &rules)
            .finish()
    }
}

impl Verifier {
    /// Validates the section and, when it is enabled, reads and checks every
    /// key of every enabled rule (from the environment through
    /// [`read_secret_env`], or inline Ed25519 public keys). A disabled
    /// section reads nothing and yields a verifier that accepts everything
    /// as [`Verified::NotEnabled`].
    pub fn from_config(
        config: &MessageAuthenticityConfig,
    ) -> Result<Self, AuthenticityConfigError> {
        config
            .validate()
            .map_err(|invalid| AuthenticityConfigError::Invalid {
                location: invalid.location,
                message: invalid.message,
            })?;
        let mut rules = Vec::new();
        if config.enabled {
            for (index, rule) in config.rules.iter().enumerate() {
                rules.push(prepare_rule(index, rule)?);
            }
        }
        Ok(Self {
            enabled: config.enabled,
            unmatched_subject_action: config.unmatched_subject_action,
            signature_header: config.signature_header.trim().to_string(),
            algorithm_header: config.algorithm_header.trim().to_string(),
            key_id_header: config.key_id_header.trim().to_string(),
            rules,
        })
    }

    /// Whether verification is on.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Checks one message. The first rule whose subject pattern matches
    /// applies; then, in the reference's order: algorithm header present and
    /// equal to the rule's, key id header present and one of the rule's
    /// keys, signature header present, well-formed and valid.
    pub fn verify(&self, message: &MessageToVerify<'_>) -> Result<Verified, AuthenticityFailure> {
        if !self.enabled {
            return Ok(Verified::NotEnabled);
        }
        let Some((rule_index, rule)) = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, rule)| matches_subject(&rule.subject, message.subject))
        else {
            return match self.unmatched_subject_action {
                UnmatchedSubjectAction::Allow => Ok(Verified::UnmatchedAllowed),
                UnmatchedSubjectAction::Reject => Err(AuthenticityFailure::new(
                    FailureReason::SubjectNotCovered,
                    UNMATCHED_RULE_LABEL,
                    "no message_authenticity rule matches the subject and \
                     unmatched_subject_action is reject",
                )),
            };
        };
        if !rule.enabled {
            return Ok(Verified::Exempt {
                rule_index,
                rule_subject: rule.subject.clone(),
            });
        }
        let fail =
            |reason, detail: String| Err(AuthenticityFailure::new(reason, &rule.subject, detail));

        let algorithm = header_value(message.headers, &self.algorithm_header)
            .map(python_strip)
            .filter(|value| !value.is_empty());
        let Some(algorithm) = algorithm else {
            return fail(
                FailureReason::AlgorithmHeaderMissing,
                format!("header {} is missing or empty", self.algorithm_header),
            );
        };
        if !algorithm_matches(algorithm, rule.algorithm.as_str()) {
            return fail(
                FailureReason::AlgorithmMismatch,
                format!(
                    "header {} does not name {}, the rule's algorithm",
                    self.algorithm_header, rule.algorithm
                ),
            );
        }

        let key_id = header_value(message.headers, &self.key_id_header)
            .map(python_strip)
            .filter(|value| !value.is_empty());
        let Some(key_id) = key_id else {
            return fail(
                FailureReason::KeyIdHeaderMissing,
                format!("header {} is missing or empty", self.key_id_header),
            );
        };
        let Some(key) = rule.keys.iter().find(|key| key.key_id == key_id) else {
            let known: Vec<&str> = rule.keys.iter().map(|k| k.key_id.as_str()).collect();
            return fail(
                FailureReason::KeyIdMismatch,
                format!(
                    "header {} names none of the rule's keys {:?}",
                    self.key_id_header, known
                ),
            );
        };

        let signature = header_value(message.headers, &self.signature_header)
            .map(python_strip)
            .filter(|value| !value.is_empty());
        let Some(signature) = signature else {
            return fail(
                FailureReason::SignatureHeaderMissing,
                format!("header {} is missing or empty", self.signature_header),
            );
        };
        // Bound before decoding: a huge header costs nothing but this check.
        if signature.len() > MAX_SIGNATURE_BASE64_CHARS {
            return fail(
                FailureReason::SignatureInvalid,
                format!(
                    "header {} is {} bytes long, more than the {} a signature may take",
                    self.signature_header,
                    signature.len(),
                    MAX_SIGNATURE_BASE64_CHARS
                ),
            );
        }
        let mut decoded = [0u8; MAX_SIGNATURE_BASE64_CHARS / 4 * 3];
        let Ok(length) = BASE64.decode_slice(signature.as_bytes(), &mut decoded) else {
            return fail(
                FailureReason::SignatureInvalid,
                format!(
                    "header {} is not valid base64 (standard alphabet, padded)",
                    self.signature_header
                ),
            );
        };
        let signature = &decoded[..length];

        let document = canonical_document(rule.algorithm, key_id, &rule.signed_fields, message);
        match &key.material {
            KeyMaterial::Hmac(keyed) => {
                if signature.len() != HMAC_SHA256_SIGNATURE_BYTES {
                    return fail(
                        FailureReason::SignatureInvalid,
                        format!(
                            "signature is {} bytes, an HMAC-SHA256 signature is {}",
                            signature.len(),
                            HMAC_SHA256_SIGNATURE_BYTES
                        ),
                    );
                }
                let mut mac = keyed.as_ref().clone();
                mac.update(&document);
                // Constant-time comparison.
                if mac.verify_slice(signature).is_err() {
                    return fail(
                        FailureReason::SignatureInvalid,
                        "HMAC-SHA256 signature does not match the message".to_string(),
                    );
                }
            }
            KeyMaterial::Ed25519(public_key) => {
                let Ok(signature) = Signature::from_slice(signature) else {
                    return fail(
                        FailureReason::SignatureInvalid,
                        format!(
                            "signature is {} bytes, an Ed25519 signature is {}",
                            signature.len(),
                            ED25519_SIGNATURE_BYTES
                        ),
                    );
                };
                if public_key.verify_strict(&document, &signature).is_err() {
                    return fail(
                        FailureReason::SignatureInvalid,
                        "Ed25519 signature does not verify for the message".to_string(),
                    );
                }
            }
        }
        Ok(Verified::Signed {
            rule_index,
            rule_subject: rule.subject.clone(),
            algorithm: rule.algorithm,
            key_id: key.key_id.clone(),
        })
    }
}

/// Whether a (trimmed) algorithm header names `expected` once normalised as
/// the reference does (lowercase, `_` as `-`), without allocating.
fn algorithm_matches(header: &str, expected: &str) -> bool {
    header
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == '_' { '-' } else { c })
        .eq(expected.chars())
}

fn prepare_rule(
    index: usize,
    rule: &MessageAuthenticityRuleConfig,
) -> Result<PreparedRule, AuthenticityConfigError> {
    let location = format!("message_authenticity.rules[{index}]");
    let mut keys = Vec::new();
    if rule.enabled {
        if let Some(key_id) = &rule.key_id {
            keys.push(prepare_key(
                rule.algorithm,
                key_id,
                rule.key_b64_env.as_deref(),
                rule.public_key_b64.as_deref(),
                &location,
            )?);
        }
        for (key_index, extra) in rule.keys.iter().enumerate() {
            keys.push(prepare_key(
                rule.algorithm,
                &extra.key_id,
                extra.key_b64_env.as_deref(),
                extra.public_key_b64.as_deref(),
                &format!("{location}.keys[{key_index}]"),
            )?);
        }
    }
    Ok(PreparedRule {
        subject: rule.subject.clone(),
        enabled: rule.enabled,
        algorithm: rule.algorithm,
        signed_fields: rule.signed_fields.clone(),
        keys,
    })
}

fn prepare_key(
    algorithm: AuthenticityAlgorithm,
    key_id: &str,
    key_b64_env: Option<&str>,
    public_key_b64: Option<&str>,
    location: &str,
) -> Result<PreparedKey, AuthenticityConfigError> {
    let (field_location, key_source, text) = match (key_b64_env, public_key_b64) {
        (Some(variable), _) => {
            let field_location = format!("{location}.key_b64_env");
            let text = Zeroizing::new(read_secret_env(&field_location, variable)?);
            (
                field_location,
                format!("environment variable {variable}"),
                text,
            )
        }
        (None, Some(inline)) => (
            format!("{location}.public_key_b64"),
            "inline public_key_b64".to_string(),
            Zeroizing::new(inline.to_string()),
        ),
        // Unreachable after validation; reported rather than assumed.
        (None, None) => {
            return Err(AuthenticityConfigError::Invalid {
                location: format!("{location}.key_b64_env"),
                message: "no key configured".to_string(),
            })
        }
    };
    let Some(bytes) = decode_key_b64(&text) else {
        return Err(AuthenticityConfigError::KeyNotBase64 {
            location: field_location,
            key_source,
        });
    };
    let material = match algorithm {
        AuthenticityAlgorithm::HmacSha256 => {
            if !(MIN_HMAC_KEY_BYTES..=MAX_HMAC_KEY_BYTES).contains(&bytes.len()) {
                return Err(AuthenticityConfigError::KeyLength {
                    location: field_location,
                    key_source,
                    algorithm,
                    actual: bytes.len(),
                    expected: "32 to 1024 bytes",
                });
            }
            let keyed = HmacSha256::new_from_slice(&bytes).map_err(|_| {
                AuthenticityConfigError::KeyLength {
                    location: field_location.clone(),
                    key_source: key_source.clone(),
                    algorithm,
                    actual: bytes.len(),
                    expected: "32 to 1024 bytes",
                }
            })?;
            KeyMaterial::Hmac(Box::new(keyed))
        }
        AuthenticityAlgorithm::Ed25519 => match ed25519_key_from_bytes(&bytes) {
            Ok(key) => KeyMaterial::Ed25519(key),
            Err(Ed25519KeyProblem::Length(actual)) => {
                return Err(AuthenticityConfigError::KeyLength {
                    location: field_location,
                    key_source,
                    algorithm,
                    actual,
                    expected: "exactly 32 bytes (a raw public key)",
                })
            }
            Err(problem) => {
                return Err(AuthenticityConfigError::Ed25519Key {
                    location: field_location,
                    key_source,
                    problem: match problem {
                        Ed25519KeyProblem::Weak => "a weak (small-order) key",
                        _ => "not a valid curve point",
                    },
                })
            }
        },
    };
    Ok(PreparedKey {
        key_id: key_id.to_string(),
        material,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_signed_fields;
    use serde_json::json;

    const VECTORS: &str = include_str!("../../tests/data/nats-sinks-vectors.json");

    /// One `message_authenticity` test vector.
    struct Vector {
        algorithm: AuthenticityAlgorithm,
        canonical: String,
        key_b64: Option<String>,
        public_key_b64: Option<String>,
        seed_b64: Option<String>,
        key_id: String,
        signature_b64: String,
        signed_fields: Vec<SignedField>,
        headers: Vec<(String, String)>,
        payload: Vec<u8>,
        subject: String,
        priority: Option<String>,
        classification: Option<String>,
        labels: Vec<String>,
    }

    fn vectors() -> Vec<Vector> {
        let all: Value = serde_json::from_str(VECTORS).expect("vectors parse");
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        all["message_authenticity"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|v| Vector {
                algorithm: AuthenticityAlgorithm::parse(&text(v, "algorithm").expect("algorithm"))
                    .expect("known algorithm"),
                canonical: text(v, "canonical_utf8").expect("canonical"),
                key_b64: text(v, "key_b64"),
                public_key_b64: text(v, "public_key_b64"),
                seed_b64: text(v, "private_seed_b64"),
                key_id: text(v, "key_id").expect("key id"),
                signature_b64: text(v, "signature_b64").expect("signature"),
                signed_fields: v["signed_fields"]
                    .as_array()
                    .expect("fields")
                    .iter()
                    .map(|f| SignedField::parse(f.as_str().expect("str")).expect("known field"))
                    .collect(),
                headers: v["headers"]
                    .as_object()
                    .expect("headers")
                    .iter()
                    .map(|(k, h)| (k.clone(), h.as_str().expect("str").to_string()))
                    .collect(),
                payload: BASE64
                    .decode(text(v, "payload_b64").expect("payload"))
                    .expect("payload base64"),
                subject: text(v, "subject").expect("subject"),
                priority: text(v, "priority"),
                classification: text(v, "classification"),
                labels: v
                    .get("labels")
                    .and_then(Value::as_array)
                    .map(|l| {
                        l.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    }

    impl Vector {
        /// The vector's headers plus the three authenticity headers.
        fn signed_headers(&self) -> Vec<(String, String)> {
            let mut headers = self.headers.clone();
            headers.extend(authenticity_headers(
                self.algorithm,
                &self.key_id,
                &self.signature_b64,
            ));
            headers
        }

        fn message<'a>(&'a self, headers: &'a [(String, String)]) -> MessageToVerify<'a> {
            MessageToVerify {
                priority: self.priority.as_deref(),
                classification: self.classification.as_deref(),
                labels: &self.labels,
                ..MessageToVerify::new(&self.subject, headers, &self.payload)
            }
        }

        /// A verifier with one rule for `mission.>` holding this vector's
        /// key, read from a fresh environment variable named after `tag`.
        fn verifier(&self, tag: &str) -> Verifier {
            Verifier::from_config(&self.config(tag)).expect("verifier builds")
        }

        fn config(&self, tag: &str) -> MessageAuthenticityConfig {
            let variable = format!("SINKHOST_TEST_AUTH_{tag}");
            let key = self
                .key_b64
                .as_ref()
                .or(self.public_key_b64.as_ref())
                .expect("a key");
            std::env::set_var(&variable, key);
            config(json!({
                "enabled": true,
                "rules": [{
                    "subject": "mission.>",
                    "algorithm": self.algorithm.as_str(),
                    "key_id": self.key_id,
                    "key_b64_env": variable,
                    "signed_fields": self.signed_fields,
                }]
            }))
        }
    }

    fn config(value: Value) -> MessageAuthenticityConfig {
        serde_json::from_value(value).expect("config parses")
    }

    fn set_env(tag: &str, value: &str) -> String {
        let variable = format!("SINKHOST_TEST_AUTH_{tag}");
        std::env::set_var(&variable, value);
        variable
    }

    fn replace_header(headers: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        if let Some(value) = value {
            headers.push((name.to_string(), value.to_string()));
        }
    }

    fn reason(result: Result<Verified, AuthenticityFailure>) -> FailureReason {
        result.expect_err("must be rejected").reason
    }

    #[test]
    fn there_are_three_vectors() {
        let all = vectors();
        assert_eq!(all.len(), 3);
        assert_eq!(
            all.iter()
                .filter(|v| v.algorithm == AuthenticityAlgorithm::Ed25519)
                .count(),
            1
        );
    }

    #[test]
    fn canonical_bytes_equal_the_vectors() {
        for vector in vectors() {
            let headers = vector.signed_headers();
            let document = canonical_document(
                vector.algorithm,
                &vector.key_id,
                &vector.signed_fields,
                &vector.message(&headers),
            );
            assert_eq!(
                String::from_utf8(document).expect("utf-8"),
                vector.canonical
            );
        }
    }

    #[test]
    fn every_vector_verifies() {
        for (index, vector) in vectors().iter().enumerate() {
            let verifier = vector.verifier(&format!("EVERY_{index}"));
            let headers = vector.signed_headers();
            let verified = verifier
                .verify(&vector.message(&headers))
                .expect("verifies");
            assert_eq!(
                verified,
                Verified::Signed {
                    rule_index: 0,
                    rule_subject: "mission.>".into(),
                    algorithm: vector.algorithm,
                    key_id: vector.key_id.clone(),
                }
            );
        }
    }

    #[test]
    fn signing_helpers_reproduce_the_vectors() {
        for vector in vectors() {
            let headers = vector.headers.clone();
            let message = vector.message(&headers);
            let signature = match vector.algorithm {
                AuthenticityAlgorithm::HmacSha256 => {
                    let key = BASE64
                        .decode(vector.key_b64.as_ref().expect("key"))
                        .expect("b64");
                    sign_hmac(&key, &vector.key_id, &vector.signed_fields, &message).expect("signs")
                }
                AuthenticityAlgorithm::Ed25519 => {
                    let seed = BASE64
                        .decode(vector.seed_b64.as_ref().expect("seed"))
                        .expect("b64");
                    let seed: [u8; 32] = seed.as_slice().try_into().expect("32 bytes");
                    let signing_key = SigningKey::from_bytes(&seed);
                    assert_eq!(
                        BASE64.encode(signing_key.verifying_key().to_bytes()),
                        vector.public_key_b64.clone().expect("public key")
                    );
                    sign_ed25519(
                        &signing_key,
                        &vector.key_id,
                        &vector.signed_fields,
                        &message,
                    )
                }
            };
            assert_eq!(signature, vector.signature_b64);
        }
        assert_eq!(
            sign_hmac(&[0u8; 16], "k", &[], &MessageToVerify::new("a", &[], b"")),
            Err(SignError::HmacKeyLength(16))
        );
    }

    #[test]
    fn tampering_fails_with_the_right_reason() {
        for (index, vector) in vectors().iter().enumerate() {
            let verifier = vector.verifier(&format!("TAMPER_{index}"));
            let headers = vector.signed_headers();
            let base = vector.message(&headers);

            let mut payload = vector.payload.clone();
            payload.push(b' ');
            let changed = MessageToVerify {
                payload: &payload,
                ..base
            };
            assert_eq!(
                reason(verifier.verify(&changed)),
                FailureReason::SignatureInvalid
            );

            // Still matched by `mission.>`, but the subject is signed.
            let changed = MessageToVerify {
                subject: "mission.sensor.other",
                ..base
            };
            assert_eq!(
                reason(verifier.verify(&changed)),
                FailureReason::SignatureInvalid
            );

            let changed = MessageToVerify {
                message_id: Some("another-id"),
                ..base
            };
            assert_eq!(
                reason(verifier.verify(&changed)),
                FailureReason::SignatureInvalid
            );
            let changed = MessageToVerify {
                message_id: None,
                ..base
            };
            assert_eq!(
                reason(verifier.verify(&changed)),
                FailureReason::SignatureInvalid
            );

            let mut tampered = headers.clone();
            replace_header(&mut tampered, DEFAULT_KEY_ID_HEADER_NAME, Some("k-other"));
            let changed = MessageToVerify {
                headers: &tampered,
                ..base
            };
            assert_eq!(
                reason(verifier.verify(&changed)),
                FailureReason::KeyIdMismatch
            );

            let other = match vector.algorithm {
                AuthenticityAlgorithm::HmacSha256 => "ed25519",
                AuthenticityAlgorithm::Ed25519 => "hmac-sha256",
            };
            let mut tampered = headers.clone();
            replace_header(&mut tampered, DEFAULT_ALGORITHM_HEADER_NAME, Some(other));
            let changed = MessageToVerify {
                headers: &tampered,
                ..base
            };
            assert_eq!(
                reason(verifier.verify(&changed)),
                FailureReason::AlgorithmMismatch
            );

            for (name, expected) in [
                (
                    DEFAULT_ALGORITHM_HEADER_NAME,
                    FailureReason::AlgorithmHeaderMissing,
                ),
                (
                    DEFAULT_KEY_ID_HEADER_NAME,
                    FailureReason::KeyIdHeaderMissing,
                ),
                (
                    DEFAULT_SIGNATURE_HEADER_NAME,
                    FailureReason::SignatureHeaderMissing,
                ),
            ] {
                let mut tampered = headers.clone();
                replace_header(&mut tampered, name, None);
                let changed = MessageToVerify {
                    headers: &tampered,
                    ..base
                };
                assert_eq!(reason(verifier.verify(&changed)), expected, "{name} absent");
                let mut tampered = headers.clone();
                replace_header(&mut tampered, name, Some("  "));
                let changed = MessageToVerify {
                    headers: &tampered,
                    ..base
                };
                assert_eq!(reason(verifier.verify(&changed)), expected, "{name} blank");
            }

            // A signature from another key of the same length is invalid.
            let mut forged = BASE64.decode(&vector.signature_b64).expect("b64");
            forged[0] ^= 1;
            let mut tampered = headers.clone();
            replace_header(
                &mut tampered,
                DEFAULT_SIGNATURE_HEADER_NAME,
                Some(&BASE64.encode(&forged)),
            );
            let changed = MessageToVerify {
                headers: &tampered,
                ..base
            };
            assert_eq!(
                reason(verifier.verify(&changed)),
                FailureReason::SignatureInvalid
            );
        }
    }

    const DEFAULT_SIGNATURE_HEADER_NAME: &str = "Nats-Sinks-Authenticity-Signature";
    const DEFAULT_ALGORITHM_HEADER_NAME: &str = "Nats-Sinks-Authenticity-Algorithm";
    const DEFAULT_KEY_ID_HEADER_NAME: &str = "Nats-Sinks-Authenticity-Key-Id";

    #[test]
    fn signed_metadata_fields_are_bound() {
        let all = vectors();
        let vector = &all[1];
        assert!(vector.signed_fields.contains(&SignedField::Labels));
        let verifier = vector.verifier("METADATA");
        let headers = vector.signed_headers();
        let base = vector.message(&headers);
        assert!(verifier.verify(&base).is_ok());
        let changed = MessageToVerify {
            priority: Some("routine"),
            ..base
        };
        assert_eq!(
            reason(verifier.verify(&changed)),
            FailureReason::SignatureInvalid
        );
        let changed = MessageToVerify {
            classification: None,
            ..base
        };
        assert_eq!(
            reason(verifier.verify(&changed)),
            FailureReason::SignatureInvalid
        );
        let reordered = vec!["audit".to_string(), "sensor".to_string()];
        let changed = MessageToVerify {
            labels: &reordered,
            ..base
        };
        assert_eq!(
            reason(verifier.verify(&changed)),
            FailureReason::SignatureInvalid
        );
        // Vector 0 does not sign priority: changing it is harmless.
        let vector = &all[0];
        let verifier = vector.verifier("METADATA_UNSIGNED");
        let headers = vector.signed_headers();
        let changed = MessageToVerify {
            priority: Some("routine"),
            ..vector.message(&headers)
        };
        assert!(verifier.verify(&changed).is_ok());
    }

    #[test]
    fn missing_fields_are_null_and_labels_a_list() {
        let message = MessageToVerify::new("a.b", &[], b"x");
        let document = canonical_value(
            AuthenticityAlgorithm::HmacSha256,
            "k",
            &SignedField::ALL,
            &message,
        );
        assert_eq!(
            document["metadata"],
            json!({"subject": "a.b", "message_id": null, "priority": null,
                   "classification": null, "labels": [], "mission_metadata": null,
                   "security_labels": null})
        );
        let mission = json!({"z": 1.0, "a": ["ü", null]});
        let message = MessageToVerify {
            mission_metadata: Some(&mission),
            ..message
        };
        let bytes = canonical_document(
            AuthenticityAlgorithm::Ed25519,
            "k",
            &[SignedField::MissionMetadata],
            &message,
        );
        assert_eq!(
            String::from_utf8(bytes).expect("utf-8"),
            "{\"algorithm\":\"ed25519\",\"key_id\":\"k\",\"metadata\":{\"mission_metadata\":\
             {\"a\":[\"ü\",null],\"z\":1.0}},\"payload_sha256\":\
             \"2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881\",\
             \"schema\":\"nats_sinks.message_authenticity.v1\",\"version\":1}"
        );
    }

    #[test]
    fn headers_match_ignoring_case_and_values_are_trimmed() {
        let all = vectors();
        let vector = &all[0];
        let verifier = vector.verifier("CASE");
        let headers: Vec<(String, String)> = vector
            .signed_headers()
            .into_iter()
            .map(|(k, v)| {
                let v = if k.starts_with("Nats-Sinks-Authenticity-Algorithm") {
                    " HMAC_SHA256 ".to_string()
                } else {
                    format!(" {v}\t")
                };
                (k.to_lowercase(), v)
            })
            .collect();
        // `nats-msg-id` is now " example-message-id\t": the reference would
        // sign the raw value, so pass the message id explicitly here.
        let message = MessageToVerify {
            message_id: Some("example-message-id"),
            ..vector.message(&headers)
        };
        assert!(verifier.verify(&message).is_ok());
        assert_eq!(
            message_id_from_headers(&headers),
            Some(" example-message-id\t")
        );
    }

    #[test]
    fn message_id_follows_the_reference_order() {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let headers = h(&[
            ("message-id", "c"),
            ("NATS-MSG-ID", "a"),
            ("Nats-Message-Id", "b"),
        ]);
        assert_eq!(message_id_from_headers(&headers), Some("a"));
        let headers = h(&[("Nats-Msg-Id", ""), ("message-id", "c")]);
        assert_eq!(message_id_from_headers(&headers), Some("c"));
        assert_eq!(message_id_from_headers(&[]), None);
    }

    #[test]
    fn rotation_accepts_old_and_new_keys_selected_by_key_id() {
        let old_key = [7u8; 32];
        let new_key = [9u8; 48];
        let old_var = set_env("ROTATION_OLD", &BASE64.encode(old_key));
        let new_var = set_env("ROTATION_NEW", &BASE64.encode(new_key));
        let verifier = Verifier::from_config(&config(json!({
            "enabled": true,
            "rules": [{
                "subject": "orders.>", "key_id": "2025-06", "key_b64_env": new_var,
                "keys": [{"key_id": "2025-01", "key_b64_env": old_var}]
            }]
        })))
        .expect("builds");
        let fields = default_signed_fields();
        for (key, key_id, accepted) in [
            (&new_key[..], "2025-06", true),
            (&old_key[..], "2025-01", true),
            (&old_key[..], "2025-06", false),
            (&new_key[..], "2025-01", false),
        ] {
            let bare = MessageToVerify::new("orders.eu", &[], b"{}");
            let signature = sign_hmac(key, key_id, &fields, &bare).expect("signs");
            let headers =
                authenticity_headers(AuthenticityAlgorithm::HmacSha256, key_id, &signature)
                    .to_vec();
            let message = MessageToVerify::new("orders.eu", &headers, b"{}");
            match verifier.verify(&message) {
                Ok(Verified::Signed { key_id: used, .. }) => {
                    assert!(accepted, "{key_id}");
                    assert_eq!(used, key_id);
                }
                other => {
                    assert!(!accepted, "{key_id}: {other:?}");
                    assert_eq!(reason(other), FailureReason::SignatureInvalid);
                }
            }
        }
        let headers =
            authenticity_headers(AuthenticityAlgorithm::HmacSha256, "2024-01", "AAAA").to_vec();
        let message = MessageToVerify::new("orders.eu", &headers, b"{}");
        assert_eq!(
            reason(verifier.verify(&message)),
            FailureReason::KeyIdMismatch
        );
    }

    #[test]
    fn ed25519_rotation_with_inline_public_keys() {
        let old = SigningKey::from_bytes(&[1u8; 32]);
        let new = SigningKey::from_bytes(&[2u8; 32]);
        let verifier = Verifier::from_config(&config(json!({
            "enabled": true,
            "rules": [{
                "subject": "ops.*", "algorithm": "ED25519", "key_id": "new",
                "public_key_b64": BASE64.encode(new.verifying_key().to_bytes()),
                "keys": [{"key_id": "old",
                          "public_key_b64": BASE64.encode(old.verifying_key().to_bytes())}]
            }]
        })))
        .expect("builds");
        for (key, key_id) in [(&old, "old"), (&new, "new")] {
            let bare = MessageToVerify::new("ops.x", &[], b"p");
            let signature = sign_ed25519(key, key_id, &default_signed_fields(), &bare);
            let headers =
                authenticity_headers(AuthenticityAlgorithm::Ed25519, key_id, &signature).to_vec();
            assert!(verifier
                .verify(&MessageToVerify::new("ops.x", &headers, b"p"))
                .is_ok());
        }
    }

    #[test]
    fn unmatched_subjects_follow_the_configured_action() {
        let all = vectors();
        let vector = &all[0];
        let headers = vector.signed_headers();
        let message = MessageToVerify {
            subject: "elsewhere.x",
            ..vector.message(&headers)
        };

        let mut section = vector.config("UNMATCHED");
        let rejecting = Verifier::from_config(&section).expect("builds");
        let failure = rejecting.verify(&message).expect_err("rejected by default");
        assert_eq!(failure.reason, FailureReason::SubjectNotCovered);
        assert_eq!(
            failure.reason.as_str(),
            "subject_not_covered_by_authenticity_policy"
        );
        assert_eq!(failure.rule_subject, "<unmatched>");
        assert_eq!(
            failure.reference_error_message("elsewhere.x"),
            "message authenticity verification rejected 1 message(s); first \
             subject='elsewhere.x' rule='<unmatched>' reason=subject_not_covered_by_authenticity_policy"
        );

        section.unmatched_subject_action = UnmatchedSubjectAction::Allow;
        let allowing = Verifier::from_config(&section).expect("builds");
        assert_eq!(allowing.verify(&message), Ok(Verified::UnmatchedAllowed));
    }

    #[test]
    fn disabled_rule_is_an_exemption_and_first_match_wins() {
        let variable = set_env("EXEMPT", &BASE64.encode([3u8; 32]));
        let verifier = Verifier::from_config(&config(json!({
            "enabled": true,
            "rules": [
                {"subject": "public.>", "enabled": false},
                {"subject": ">", "key_id": "k", "key_b64_env": variable}
            ]
        })))
        .expect("builds");
        let unsigned = MessageToVerify::new("public.news", &[], b"x");
        assert_eq!(
            verifier.verify(&unsigned),
            Ok(Verified::Exempt {
                rule_index: 0,
                rule_subject: "public.>".into()
            })
        );
        let unsigned = MessageToVerify::new("private.news", &[], b"x");
        let failure = verifier.verify(&unsigned).expect_err("second rule applies");
        assert_eq!(failure.reason, FailureReason::AlgorithmHeaderMissing);
        assert_eq!(failure.rule_subject, ">");
    }

    #[test]
    fn disabled_section_checks_nothing_and_reads_no_key() {
        let section = config(json!({
            "rules": [{"subject": "a", "key_id": "k", "key_b64_env": "SINKHOST_TEST_AUTH_NEVER_SET"}]
        }));
        let verifier = Verifier::from_config(&section).expect("nothing read");
        assert!(!verifier.is_enabled());
        assert_eq!(
            verifier.verify(&MessageToVerify::new("a", &[], b"")),
            Ok(Verified::NotEnabled)
        );
    }

    #[test]
    fn malformed_signatures_are_invalid() {
        let all = vectors();
        let vector = &all[0];
        let verifier = vector.verifier("MALFORMED");
        let good = BASE64.decode(&vector.signature_b64).expect("b64");
        let unpadded = vector.signature_b64.trim_end_matches('=').to_string();
        let short = BASE64.encode(&good[..31]);
        let long = BASE64.encode([good.as_slice(), &[0u8]].concat());
        for (bad, detail) in [
            ("not base64!!", "not valid base64"),
            ("ü", "not valid base64"),
            (unpadded.as_str(), "not valid base64"),
            ("AAAA====", "not valid base64"),
            (short.as_str(), "signature is 31 bytes"),
            (long.as_str(), "signature is 33 bytes"),
        ] {
            let mut headers = vector.signed_headers();
            replace_header(&mut headers, DEFAULT_SIGNATURE_HEADER_NAME, Some(bad));
            let failure = verifier.verify(&vector.message(&headers)).expect_err(bad);
            assert_eq!(failure.reason, FailureReason::SignatureInvalid, "{bad}");
            assert!(failure.detail.contains(detail), "{bad}: {}", failure.detail);
            assert!(
                !failure.detail.contains(bad) || bad == "ü",
                "no header value in detail"
            );
        }
        // Non-zero trailing bits decode to the same bytes: Python accepts
        // them, and so do we.
        let mut sloppy = vector.signature_b64.clone();
        let last = sloppy.len() - 2; // the character before the single `=`
        let c = sloppy.as_bytes()[last];
        assert_eq!(c, b'c');
        sloppy.replace_range(last..=last, "d");
        assert_eq!(BASE64.decode(&sloppy).expect("lenient"), good);
        let mut headers = vector.signed_headers();
        replace_header(&mut headers, DEFAULT_SIGNATURE_HEADER_NAME, Some(&sloppy));
        assert!(verifier.verify(&vector.message(&headers)).is_ok());
    }

    #[test]
    fn ten_megabyte_header_is_rejected_quickly() {
        let all = vectors();
        let vector = &all[0];
        let verifier = vector.verifier("HUGE");
        let huge = "A".repeat(10 * 1024 * 1024);
        for name in [
            DEFAULT_SIGNATURE_HEADER_NAME,
            DEFAULT_ALGORITHM_HEADER_NAME,
            DEFAULT_KEY_ID_HEADER_NAME,
        ] {
            let mut headers = vector.signed_headers();
            replace_header(&mut headers, name, Some(&huge));
            let started = std::time::Instant::now();
            let failure = verifier
                .verify(&vector.message(&headers))
                .expect_err("rejected");
            let elapsed = started.elapsed();
            assert!(
                elapsed < std::time::Duration::from_millis(200),
                "{name}: {elapsed:?}"
            );
            let expected = match name {
                DEFAULT_SIGNATURE_HEADER_NAME => FailureReason::SignatureInvalid,
                DEFAULT_ALGORITHM_HEADER_NAME => FailureReason::AlgorithmMismatch,
                _ => FailureReason::KeyIdMismatch,
            };
            assert_eq!(failure.reason, expected);
            assert!(failure.detail.len() < 200, "detail stays short");
        }
        // Exactly at the bound: decoded, then rejected for its length.
        let at_bound = "A".repeat(MAX_SIGNATURE_BASE64_CHARS);
        let mut headers = vector.signed_headers();
        replace_header(&mut headers, DEFAULT_SIGNATURE_HEADER_NAME, Some(&at_bound));
        let failure = verifier
            .verify(&vector.message(&headers))
            .expect_err("rejected");
        assert!(failure.detail.contains("1026 bytes"), "{}", failure.detail);
    }

    #[test]
    fn key_problems_name_the_rule_and_variable_never_the_key() {
        let rule = |variable: &str, algorithm: &str| {
            config(json!({
                "enabled": true,
                "rules": [
                    {"subject": "x", "enabled": false},
                    {"subject": "a.>", "algorithm": algorithm, "key_id": "k", "key_b64_env": variable}
                ]
            }))
        };
        let short_key = BASE64.encode([5u8; 16]);
        let cases = [
            (
                "SHORT",
                short_key.as_str(),
                "hmac-sha256",
                "decodes to 16 bytes",
            ),
            (
                "LONG",
                &BASE64.encode([5u8; 1025]) as &str,
                "hmac-sha256",
                "decodes to 1025 bytes",
            ),
            (
                "GARBAGE",
                "%%%not-base64%%%",
                "hmac-sha256",
                "is not valid base64",
            ),
            (
                "ED_SHORT",
                &BASE64.encode([5u8; 31]) as &str,
                "ed25519",
                "decodes to 31 bytes",
            ),
            (
                "ED_WEAK",
                &BASE64.encode([0u8; 32]) as &str,
                "ed25519",
                "weak",
            ),
            ("EMPTY", "", "hmac-sha256", "is empty"),
        ];
        for (tag, value, algorithm, expected) in cases {
            let variable = set_env(&format!("KEYS_{tag}"), value);
            let err = Verifier::from_config(&rule(&variable, algorithm)).expect_err(tag);
            let text = err.to_string();
            assert!(text.contains(expected), "{tag}: {text}");
            assert!(
                text.contains("message_authenticity.rules[1].key_b64_env"),
                "{tag}: {text}"
            );
            assert!(text.contains(&variable), "{tag}: {text}");
            if !value.is_empty() {
                assert!(!text.contains(value), "{tag}: key material leaked: {text}");
            }
        }
        let err = Verifier::from_config(&rule("SINKHOST_TEST_AUTH_KEYS_UNSET", "hmac-sha256"))
            .expect_err("unset");
        assert!(err.to_string().contains("is not set"), "{err}");
        // A trailing newline (secret files) is tolerated.
        let variable = set_env("KEYS_NEWLINE", &format!("{}\n", BASE64.encode([6u8; 32])));
        assert!(Verifier::from_config(&rule(&variable, "hmac-sha256")).is_ok());
    }

    #[test]
    fn invalid_section_is_reported_with_its_location() {
        let err = Verifier::from_config(&config(json!({"enabled": true}))).expect_err("no rules");
        assert!(
            matches!(&err, AuthenticityConfigError::Invalid { location, .. } if location == "message_authenticity.rules"),
            "{err}"
        );
        let err = serde_json::from_value::<MessageAuthenticityConfig>(json!({
            "rules": [{"subject": "a", "algorithm": "hmac-sha512", "key_id": "k"}]
        }))
        .expect_err("unknown algorithm");
        assert!(err.to_string().contains("unknown algorithm"), "{err}");
    }

    #[test]
    fn debug_output_holds_no_key_material() {
        let secret = BASE64.encode([0x5au8; 32]);
        let variable = set_env("DEBUG", &secret);
        let verifier = Verifier::from_config(&config(json!({
            "enabled": true,
            "rules": [{"subject": "a", "key_id": "k1", "key_b64_env": variable}]
        })))
        .expect("builds");
        let text = format!("{verifier:?}");
        assert!(text.contains("k1"));
        assert!(!text.contains(&secret));
        assert!(!text.contains("90, 90"), "no raw bytes: {text}");
    }

    #[test]
    fn custom_header_names_are_used() {
        let key = [4u8; 32];
        let variable = set_env("CUSTOM_HEADERS", &BASE64.encode(key));
        let verifier = Verifier::from_config(&config(json!({
            "enabled": true,
            "signature_header": "X-Sig", "algorithm_header": "X-Alg", "key_id_header": "X-Kid",
            "rules": [{"subject": "a", "key_id": "k", "key_b64_env": variable}]
        })))
        .expect("builds");
        let signature = sign_hmac(
            &key,
            "k",
            &default_signed_fields(),
            &MessageToVerify::new("a", &[], b""),
        )
        .expect("signs");
        let headers = vec![
            ("x-sig".to_string(), signature),
            ("X-ALG".to_string(), "hmac-sha256".to_string()),
            ("x-kid".to_string(), "k".to_string()),
        ];
        assert!(verifier
            .verify(&MessageToVerify::new("a", &headers, b""))
            .is_ok());
        let default_named =
            authenticity_headers(AuthenticityAlgorithm::HmacSha256, "k", &headers[0].1).to_vec();
        assert_eq!(
            reason(verifier.verify(&MessageToVerify::new("a", &default_named, b""))),
            FailureReason::AlgorithmHeaderMissing
        );
    }

    #[test]
    fn python_repr_quotes_like_python() {
        assert_eq!(python_repr("a.b"), "'a.b'");
        assert_eq!(python_repr("it's"), "\"it's\"");
        assert_eq!(python_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(python_repr("x\ny\u{1}\\"), "'x\\ny\\x01\\\\'");
        assert_eq!(python_repr("é"), "'é'");
    }
}
