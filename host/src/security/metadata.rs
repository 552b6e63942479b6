//! Message metadata in the host: priority, classification, labels and the
//! structured security-label profile of each message (the `message_metadata`
//! and `security_labels` sections), and the metadata document that custody
//! hashes and the file sink stores.
//!
//! Everything follows the reference `nats-sinks` 0.4.3; see
//! `docs/metadata.md`.
//!
//! Resolution, per field (priority, classification, labels):
//!
//! 1. the configured header present and non-blank: its value (labels split
//!    on `;`);
//! 2. the header present but blank: none (a publisher can say "no
//!    priority");
//! 3. the header absent: the first subject rule that sets the field, else
//!    the section default.
//!
//! The security-label profile (when enabled): the header's JSON object, else
//! the first matching rule's profile (`null` = none), else `default`.
//! Missing `priority`/`classification`/`labels` in a profile are filled from
//! the resolved fields; the allow lists are then enforced on the profile, and
//! a message outside them is rejected ([`MetadataRejection`], a permanent
//! failure: DLQ).

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use crate::config::{MessageMetadataConfig, SecurityLabelsConfig};
use crate::envelope::{Envelope, MessageMetadata};
use crate::security::custody::json::{self, Json};
use crate::security::subjects;

/// Python's `str.strip()` whitespace: Unicode White_Space plus the ASCII
/// separators U+001C..U+001F.
pub(crate) fn py_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// ASCII control characters (U+0000..U+001F and U+007F), as the reference
/// tests metadata values.
pub(crate) fn has_ascii_control(text: &str) -> bool {
    text.chars().any(|c| (c as u32) <= 31 || c as u32 == 127)
}

/// Labels normalised as the reference does: each item split on `;`,
/// trimmed, empties dropped, duplicates removed keeping the first.
/// Linear in the input: duplicates are found with a hash set (this runs for
/// every delivery, on a publisher-controlled header).
pub(crate) fn normalize_labels<'a>(items: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen: HashSet<&'a str> = HashSet::new();
    for item in items {
        for part in py_strip(item).split(';') {
            let part = py_strip(part);
            if !part.is_empty() && seen.insert(part) {
                out.push(part.to_string());
            }
        }
    }
    out
}

/// A metadata default as the reference normalises it: trimmed, blank is
/// none.
pub(crate) fn clean_default(value: Option<&str>) -> Option<String> {
    value
        .map(py_strip)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Most headers one message may carry. Real messages carry tens; JetStream
/// lets a publisher send thousands of tiny ones inside its header limit, and
/// every header is walked (and folded) on every delivery before any
/// signature is checked. Past this the message is refused (DLQ).
pub const MAX_HEADERS: usize = 1_024;
/// Most header bytes (names plus values) one message may carry: the 64 KiB
/// JetStream header limit, so any message a default server accepts fits,
/// and no larger input reaches the normaliser.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most distinct labels one message may carry (`Nats-Sinks-Labels` after
/// splitting and de-duplication). Each label is copied into the envelope of
/// every batch, signed over and stored; real messages carry a handful.
pub const MAX_LABELS: usize = 1_024;

/// Refuses a message whose headers are past [`MAX_HEADERS`] or
/// [`MAX_HEADER_BYTES`]. One pass over the headers, nothing allocated:
/// this runs before any other work on them.
pub fn check_header_limits(headers: &[(String, String)]) -> Result<(), MetadataRejection> {
    if headers.len() > MAX_HEADERS {
        return Err(MetadataRejection {
            reason: format!(
                "message has {} headers; at most {MAX_HEADERS} are accepted",
                headers.len()
            ),
        });
    }
    let bytes = headers.iter().fold(0usize, |sum, (name, value)| {
        sum.saturating_add(name.len()).saturating_add(value.len())
    });
    if bytes > MAX_HEADER_BYTES {
        return Err(MetadataRejection {
            reason: format!(
                "message headers hold {bytes} bytes; at most {MAX_HEADER_BYTES} are accepted"
            ),
        });
    }
    Ok(())
}

/// Value of the `profile` field of every security-label profile.
pub const SECURITY_LABEL_PROFILE_NAME: &str = "nats-sinks.security-label.v1";

const MAX_LIST_ITEMS: usize = 128;
const MAX_STRING_CHARS: usize = 512;
const GENERIC_MAX_DEPTH: usize = 8;
const GENERIC_MAX_OBJECT_FIELDS: usize = 128;
const GENERIC_MAX_ARRAY_ITEMS: usize = 256;
const GENERIC_MAX_KEY_CHARS: usize = 128;
const GENERIC_MAX_STRING_CHARS: usize = 4096;
const GENERIC_MAX_INTEGER: u64 = 9_007_199_254_740_991;
const SECRET_KEY_PARTS: [&str; 9] = [
    "password",
    "passwd",
    "pwd",
    "token",
    "secret",
    "private_key",
    "credential",
    "api_key",
    "key_material",
];
const SCALAR_FIELDS: [&str; 7] = [
    "profile",
    "priority",
    "classification",
    "owner",
    "originator",
    "policy_id",
    "retention_category",
];
const LIST_FIELDS: [&str; 3] = ["labels", "releasability", "handling_caveats"];

/// A message whose metadata the policy refuses. Permanent: the message goes
/// to the DLQ (or stays unACKed without one), as in the reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct MetadataRejection {
    /// The reference's message, e.g. `security label field 'classification'
    /// must be one of the configured values: internal, public`.
    pub reason: String,
}

impl MetadataRejection {
    /// The reference's error class for DLQ records (`Nats-Sinks-Error-Type`).
    pub fn error_type(&self) -> &'static str {
        "ValidationError"
    }
}

/// Size and vocabulary limits of security-label profiles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileLimits {
    max_bytes: usize,
    allowed_priorities: Vec<String>,
    allowed_classifications: Vec<String>,
    allowed_releasability: Vec<String>,
    allowed_handling_caveats: Vec<String>,
    allowed_retention_categories: Vec<String>,
}

impl ProfileLimits {
    /// The limits of a `security_labels` section.
    pub fn from_config(config: &SecurityLabelsConfig) -> Self {
        Self {
            max_bytes: usize::try_from(config.max_bytes).unwrap_or(usize::MAX),
            allowed_priorities: config.allowed_priorities.0.clone(),
            allowed_classifications: config.allowed_classifications.0.clone(),
            allowed_releasability: config.allowed_releasability.0.clone(),
            allowed_handling_caveats: config.allowed_handling_caveats.0.clone(),
            allowed_retention_categories: config.allowed_retention_categories.0.clone(),
        }
    }
}

/// Values a profile inherits when it does not set them.
#[derive(Debug, Clone, Copy, Default)]
struct Fallback<'a> {
    priority: Option<&'a str>,
    classification: Option<&'a str>,
    labels: &'a [String],
}

/// Validates a configured profile (config check, no fallbacks).
pub(crate) fn check_configured_profile(
    profile: &Value,
    limits: &ProfileLimits,
    source: &str,
) -> Result<(), String> {
    normalize_profile(
        &Json::from_value(profile),
        limits,
        Fallback::default(),
        source,
    )
    .map(|_| ())
}

#[derive(Debug, Clone)]
struct MetadataRule {
    subject: String,
    priority: Option<Option<String>>,
    classification: Option<Option<String>>,
    labels: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
struct SecurityLabelsPolicy {
    header: String,
    default: Option<Json>,
    rules: Vec<(String, Option<Json>)>,
    limits: ProfileLimits,
}

/// Resolves the metadata of each message.
#[derive(Debug, Clone)]
pub struct MetadataPolicy {
    priority_header: String,
    priority_default: Option<String>,
    classification_header: String,
    classification_default: Option<String>,
    labels_header: String,
    labels_default: Vec<String>,
    rules: Vec<MetadataRule>,
    security_labels: Option<SecurityLabelsPolicy>,
}

impl MetadataPolicy {
    /// The policy of both sections. Fails only on what `Config::validate`
    /// rejects (a configured profile outside the limits).
    pub fn from_config(
        metadata: &MessageMetadataConfig,
        security_labels: &SecurityLabelsConfig,
    ) -> Result<Self, crate::config::Invalid> {
        metadata.validate()?;
        security_labels.validate()?;
        let security = security_labels.enabled.then(|| SecurityLabelsPolicy {
            header: py_strip(&security_labels.header).to_string(),
            default: security_labels.default.as_ref().map(Json::from_value),
            rules: security_labels
                .rules
                .iter()
                .map(|rule| {
                    let profile = rule.profile.clone().flatten();
                    (rule.subject.clone(), profile.as_ref().map(Json::from_value))
                })
                .collect(),
            limits: ProfileLimits::from_config(security_labels),
        });
        Ok(Self {
            priority_header: py_strip(&metadata.priority.header).to_string(),
            priority_default: clean_default(metadata.priority.default.as_deref()),
            classification_header: py_strip(&metadata.classification.header).to_string(),
            classification_default: clean_default(metadata.classification.default.as_deref()),
            labels_header: py_strip(&metadata.labels.header).to_string(),
            labels_default: metadata.labels.default.0.clone(),
            rules: metadata
                .rules
                .iter()
                .map(|rule| MetadataRule {
                    subject: rule.subject.clone(),
                    priority: rule.priority.as_ref().map(|v| clean_default(v.as_deref())),
                    classification: rule
                        .classification
                        .as_ref()
                        .map(|v| clean_default(v.as_deref())),
                    labels: rule.labels.as_ref().map(|l| l.0.clone()),
                })
                .collect(),
            security_labels: security,
        })
    }

    /// The metadata of one message. `mission_metadata` is left `None`.
    pub fn apply(
        &self,
        subject: &str,
        headers: &[(String, String)],
    ) -> Result<MessageMetadata, MetadataRejection> {
        check_header_limits(headers)?;
        let headers = normalized_headers(headers);
        let matching = || {
            self.rules
                .iter()
                .filter(|rule| subjects::matches_subject(&rule.subject, subject))
        };

        let priority = match lookup(&headers, &self.priority_header) {
            Some(value) => clean_default(Some(value)),
            None => matching()
                .find_map(|rule| rule.priority.clone())
                .unwrap_or_else(|| self.priority_default.clone()),
        };
        let classification = match lookup(&headers, &self.classification_header) {
            Some(value) => clean_default(Some(value)),
            None => matching()
                .find_map(|rule| rule.classification.clone())
                .unwrap_or_else(|| self.classification_default.clone()),
        };
        let labels = match lookup(&headers, &self.labels_header) {
            Some(value) => normalize_labels([value]),
            None => matching()
                .find_map(|rule| rule.labels.clone())
                .unwrap_or_else(|| self.labels_default.clone()),
        };
        if labels.len() > MAX_LABELS {
            return Err(MetadataRejection {
                reason: format!(
                    "message has {} labels; at most {MAX_LABELS} are accepted",
                    labels.len()
                ),
            });
        }
        let security_labels = match &self.security_labels {
            None => None,
            Some(policy) => {
                let fallback = Fallback {
                    priority: priority.as_deref(),
                    classification: classification.as_deref(),
                    labels: &labels,
                };
                policy
                    .resolve(subject, &headers, fallback)
                    .map_err(|reason| MetadataRejection { reason })?
                    .map(|profile| json::canonical(&profile, false))
                    .transpose()
                    .map_err(|reason| MetadataRejection { reason })?
            }
        };
        Ok(MessageMetadata {
            priority,
            classification,
            labels,
            security_labels,
            mission_metadata: None,
        })
    }
}

impl SecurityLabelsPolicy {
    fn resolve(
        &self,
        subject: &str,
        headers: &[(String, String)],
        fallback: Fallback<'_>,
    ) -> Result<Option<Json>, String> {
        if let Some(text) = lookup(headers, &self.header) {
            if py_strip(text).is_empty() {
                return Ok(None);
            }
            if text.len() > self.limits.max_bytes {
                return Err(format!(
                    "security label header exceeds the configured {} byte limit",
                    self.limits.max_bytes
                ));
            }
            let parsed = json::parse(text)
                .map_err(|_| "security label header is not valid JSON".to_string())?;
            return normalize_profile(&parsed, &self.limits, fallback, "security label header")
                .map(Some);
        }
        for (pattern, profile) in &self.rules {
            if subjects::matches_subject(pattern, subject) {
                return match profile {
                    None => Ok(None),
                    Some(profile) => normalize_profile(
                        profile,
                        &self.limits,
                        fallback,
                        &format!("security label rule {pattern}"),
                    )
                    .map(Some),
                };
            }
        }
        match &self.default {
            None => Ok(None),
            Some(profile) => {
                normalize_profile(profile, &self.limits, fallback, "security label default")
                    .map(Some)
            }
        }
    }
}

/// Python's `repr()` of a string, as the reference's messages quote keys and
/// field names.
fn py_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::new();
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
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn valid_generic_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

/// The reference's generic checks of a JSON metadata object (depth, sizes,
/// key grammar, secret-like keys, finite numbers).
fn check_generic(value: &Json, source: &str, depth: usize) -> Result<(), String> {
    if depth > GENERIC_MAX_DEPTH {
        return Err(format!(
            "{source} exceeds nesting depth {GENERIC_MAX_DEPTH}"
        ));
    }
    match value {
        Json::Null | Json::Bool(_) => Ok(()),
        Json::Str(s) => {
            if s.chars().count() > GENERIC_MAX_STRING_CHARS {
                return Err(format!(
                    "{source} string value exceeds {GENERIC_MAX_STRING_CHARS} characters"
                ));
            }
            if has_ascii_control(s) {
                return Err(format!("{source} string value contains control characters"));
            }
            Ok(())
        }
        Json::Int(digits) => {
            let magnitude = digits.trim_start_matches('-');
            let too_big = magnitude.len() > 16
                || magnitude
                    .parse::<u64>()
                    .map_or(true, |m| m > GENERIC_MAX_INTEGER);
            if too_big {
                return Err(format!(
                    "{source} integer value exceeds {GENERIC_MAX_INTEGER}"
                ));
            }
            Ok(())
        }
        Json::Float(f) => {
            if !f.is_finite() {
                return Err(format!("{source} float value must be finite"));
            }
            Ok(())
        }
        Json::Object(members) => {
            if members.len() > GENERIC_MAX_OBJECT_FIELDS {
                return Err(format!(
                    "{source} object exceeds {GENERIC_MAX_OBJECT_FIELDS} fields"
                ));
            }
            for (key, item) in members {
                if py_strip(key) != key {
                    return Err(format!(
                        "{source} contains a key with leading or trailing whitespace"
                    ));
                }
                if key.is_empty() {
                    return Err(format!("{source} contains an empty key"));
                }
                if key.chars().count() > GENERIC_MAX_KEY_CHARS {
                    return Err(format!(
                        "{source} key {} exceeds {GENERIC_MAX_KEY_CHARS} characters",
                        py_repr(key)
                    ));
                }
                if key.chars().any(|c| (c as u32) < 32 || c as u32 == 127) {
                    return Err(format!(
                        "{source} key {} contains control characters",
                        py_repr(key)
                    ));
                }
                if !valid_generic_key(key) {
                    return Err(format!(
                        "{source} key {} must start with a letter and contain only letters, numbers, \
                         underscores, dots, colons, or hyphens",
                        py_repr(key)
                    ));
                }
                let lower = key.to_lowercase();
                if SECRET_KEY_PARTS.iter().any(|part| lower.contains(part)) {
                    return Err(format!(
                        "{source} key {} looks secret-like and is not allowed",
                        py_repr(key)
                    ));
                }
                check_generic(item, &format!("{source}.{key}"), depth + 1)?;
            }
            Ok(())
        }
        Json::Array(items) => {
            if items.len() > GENERIC_MAX_ARRAY_ITEMS {
                return Err(format!(
                    "{source} array exceeds {GENERIC_MAX_ARRAY_ITEMS} items"
                ));
            }
            for item in items {
                check_generic(item, &format!("{source}[]"), depth + 1)?;
            }
            Ok(())
        }
    }
}

/// Generic checks, then the canonical size limit.
fn check_generic_object(value: &Json, max_bytes: usize, source: &str) -> Result<(), String> {
    if !matches!(value, Json::Object(_)) {
        return Err(format!("{source} must be a JSON object"));
    }
    check_generic(value, source, 0)?;
    let size = json::canonical(value, false)
        .map_err(|_| "mission metadata could not be serialized as JSON".to_string())?
        .len();
    if size > max_bytes {
        return Err(format!(
            "{source} exceeds the configured {max_bytes} byte limit"
        ));
    }
    Ok(())
}

fn scalar(value: Option<&Json>, field: &str) -> Result<Option<String>, String> {
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Str(s)) => {
            let s = py_strip(s);
            if s.is_empty() {
                return Ok(None);
            }
            if s.chars().count() > MAX_STRING_CHARS {
                return Err(format!(
                    "security label field '{field}' exceeds {MAX_STRING_CHARS} characters"
                ));
            }
            if has_ascii_control(s) {
                return Err(format!(
                    "security label field '{field}' contains control characters"
                ));
            }
            Ok(Some(s.to_string()))
        }
        Some(_) => Err(format!("security label field '{field}' must be a string")),
    }
}

fn list(value: Option<&Json>, field: &str) -> Result<Vec<String>, String> {
    let labels = match value {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Str(s)) => normalize_labels([s.as_str()]),
        Some(Json::Array(items)) => {
            let mut raw: Vec<&str> = Vec::new();
            for item in items {
                let Json::Str(s) = item else {
                    return Err(format!(
                        "security label field '{field}' must contain only strings"
                    ));
                };
                let s = py_strip(s);
                if s.is_empty() {
                    continue;
                }
                if s.contains(';') {
                    return Err(format!(
                        "security label field '{field}' list items must not contain the semicolon separator"
                    ));
                }
                raw.push(s);
            }
            normalize_labels(raw)
        }
        Some(_) => {
            return Err(format!(
                "security label field '{field}' must be a string or list of strings"
            ))
        }
    };
    if labels.len() > MAX_LIST_ITEMS {
        return Err(format!(
            "security label field '{field}' exceeds {MAX_LIST_ITEMS} items"
        ));
    }
    for item in &labels {
        if item.chars().count() > MAX_STRING_CHARS {
            return Err(format!(
                "security label field '{field}' contains an item longer than {MAX_STRING_CHARS} characters"
            ));
        }
        if has_ascii_control(item) {
            return Err(format!(
                "security label field '{field}' contains control characters"
            ));
        }
    }
    Ok(labels)
}

fn sorted_joined(values: &[String]) -> String {
    let mut sorted: Vec<&str> = values.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.join(", ")
}

fn require_allowed(value: Option<&str>, field: &str, allowed: &[String]) -> Result<(), String> {
    match value {
        Some(value) if !allowed.is_empty() && !allowed.iter().any(|a| a == value) => Err(format!(
            "security label field '{field}' must be one of the configured values: {}",
            sorted_joined(allowed)
        )),
        _ => Ok(()),
    }
}

fn require_allowed_list(values: &[String], field: &str, allowed: &[String]) -> Result<(), String> {
    if allowed.is_empty() {
        return Ok(());
    }
    let unknown: Vec<&str> = values
        .iter()
        .filter(|v| !allowed.contains(v))
        .map(String::as_str)
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(format!(
        "security label field '{field}' contains values outside the configured allow list: {}. Allowed values: {}",
        unknown.join(", "),
        sorted_joined(allowed)
    ))
}

/// The reference's `normalize_security_label_profile`: validated, missing
/// priority/classification/labels filled from `fallback`, allow lists
/// enforced. The result has every field (absent ones `null`/`[]`).
fn normalize_profile(
    value: &Json,
    limits: &ProfileLimits,
    fallback: Fallback<'_>,
    source: &str,
) -> Result<Json, String> {
    check_generic_object(value, limits.max_bytes, source)?;
    let Json::Object(members) = value else {
        return Err(format!("{source} must be a JSON object"));
    };
    let mut unknown: Vec<&str> = members
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !SCALAR_FIELDS.contains(k) && !LIST_FIELDS.contains(k) && *k != "extensions")
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        unknown.dedup();
        return Err(format!(
            "{source} contains unsupported security label fields: {}",
            unknown.join(", ")
        ));
    }
    let get = |key: &str| value.get(key);
    let profile_default = Json::Str(SECURITY_LABEL_PROFILE_NAME.to_string());
    let profile = scalar(Some(get("profile").unwrap_or(&profile_default)), "profile")?;
    if profile.as_deref() != Some(SECURITY_LABEL_PROFILE_NAME) {
        return Err(format!(
            "{source} profile must be '{SECURITY_LABEL_PROFILE_NAME}'"
        ));
    }
    let with_fallback = |key: &str, fallback: Option<&str>| -> Result<Option<String>, String> {
        match get(key) {
            Some(v) => scalar(Some(v), key),
            None => scalar(fallback.map(|f| Json::Str(f.to_string())).as_ref(), key),
        }
    };
    let priority = with_fallback("priority", fallback.priority)?;
    let classification = with_fallback("classification", fallback.classification)?;
    let owner = scalar(get("owner"), "owner")?;
    let originator = scalar(get("originator"), "originator")?;
    let policy_id = scalar(get("policy_id"), "policy_id")?;
    let retention_category = scalar(get("retention_category"), "retention_category")?;
    let fallback_labels = Json::Array(
        fallback
            .labels
            .iter()
            .map(|l| Json::Str(l.clone()))
            .collect(),
    );
    let labels = list(Some(get("labels").unwrap_or(&fallback_labels)), "labels")?;
    let releasability = list(get("releasability"), "releasability")?;
    let handling_caveats = list(get("handling_caveats"), "handling_caveats")?;

    require_allowed(priority.as_deref(), "priority", &limits.allowed_priorities)?;
    require_allowed(
        classification.as_deref(),
        "classification",
        &limits.allowed_classifications,
    )?;
    require_allowed(
        retention_category.as_deref(),
        "retention_category",
        &limits.allowed_retention_categories,
    )?;
    require_allowed_list(
        &releasability,
        "releasability",
        &limits.allowed_releasability,
    )?;
    require_allowed_list(
        &handling_caveats,
        "handling_caveats",
        &limits.allowed_handling_caveats,
    )?;

    let text = |v: Option<String>| v.map_or(Json::Null, Json::Str);
    let strings = |v: Vec<String>| Json::Array(v.into_iter().map(Json::Str).collect());
    let mut result = vec![
        (
            "profile".to_string(),
            Json::Str(SECURITY_LABEL_PROFILE_NAME.to_string()),
        ),
        ("priority".to_string(), text(priority)),
        ("classification".to_string(), text(classification)),
        ("labels".to_string(), strings(labels)),
        ("releasability".to_string(), strings(releasability)),
        ("handling_caveats".to_string(), strings(handling_caveats)),
        ("owner".to_string(), text(owner)),
        ("originator".to_string(), text(originator)),
        ("policy_id".to_string(), text(policy_id)),
        ("retention_category".to_string(), text(retention_category)),
    ];
    match get("extensions") {
        None | Some(Json::Null) => {}
        Some(extensions @ Json::Object(_)) => {
            check_generic_object(
                extensions,
                limits.max_bytes,
                &format!("{source}.extensions"),
            )?;
            result.push(("extensions".to_string(), extensions.clone()));
        }
        Some(_) => return Err(format!("{source}.extensions must be a JSON object")),
    }
    let result = Json::Object(result);
    check_generic_object(&result, limits.max_bytes, source)?;
    Ok(result)
}

// ---------------------------------------------------------------------------
// Headers and the metadata document.

/// Case folding for header names: lower case plus the full case foldings
/// (Python `str.casefold`) that produce ASCII letters, as the file sink does.
/// Borrows when the name is already folded (the common, ASCII lower-case
/// case): this runs for every header of every message.
fn fold(name: &str) -> std::borrow::Cow<'_, str> {
    if name.is_ascii() {
        return if name.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(name.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(name)
        };
    }
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            'ß' | 'ẞ' => out.push_str("ss"),
            'ſ' => out.push('s'),
            'ﬀ' => out.push_str("ff"),
            'ﬁ' => out.push_str("fi"),
            'ﬂ' => out.push_str("fl"),
            'ﬃ' => out.push_str("ffi"),
            'ﬄ' => out.push_str("ffl"),
            'ﬅ' | 'ﬆ' => out.push_str("st"),
            c => out.extend(c.to_lowercase()),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether `name` folds to `folded` (already folded), without allocating
/// when both are ASCII.
fn folds_to(name: &str, folded: &str) -> bool {
    if name.is_ascii() {
        name.eq_ignore_ascii_case(folded)
    } else {
        fold(name) == folded
    }
}

/// Headers as the reference (and the file sink's record) keep them: names
/// trimmed, empty names and names with control characters dropped, one entry
/// per exact name (the last value, at the position of the first).
///
/// Linear in the number of headers: each name's position is kept in a hash
/// map (a publisher controls how many headers a message has).
pub fn normalized_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(headers.len());
    let mut position: HashMap<&str, usize> = HashMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name = py_strip(name);
        if name.is_empty() || has_ascii_control(name) {
            continue;
        }
        match position.get(name) {
            Some(&index) => out[index].1.clone_from(value),
            None => {
                position.insert(name, out.len());
                out.push((name.to_string(), value.clone()));
            }
        }
    }
    out
}

/// First header whose name matches case-insensitively (case folding).
fn lookup<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let wanted = fold(name);
    headers
        .iter()
        .find(|(n, _)| folds_to(n, &wanted))
        .map(|(_, v)| v.as_str())
}

/// NATS headers the reference names in `metadata.nats.reserved_headers`.
const RESERVED_HEADER_NAMES: [&str; 26] = [
    "Nats-Msg-Id",
    "Nats-Expected-Stream",
    "Nats-Expected-Last-Msg-Id",
    "Nats-Expected-Last-Sequence",
    "Nats-Expected-Last-Subject-Sequence",
    "Nats-Expected-Last-Subject-Sequence-Subject",
    "Nats-Rollup",
    "Nats-TTL",
    "Nats-Stream",
    "Nats-Subject",
    "Nats-Sequence",
    "Nats-Last-Sequence",
    "Nats-Time-Stamp",
    "Nats-Num-Pending",
    "Nats-UpTo-Sequence",
    "Nats-Stream-Source",
    "Nats-Trace-Dest",
    "Nats-Trace-Only",
    "Nats-Trace-Hop",
    "Nats-Trace-Origin-Account",
    "Nats-Schedule",
    "Nats-Schedule-TTL",
    "Nats-Schedule-Target",
    "Nats-Schedule-Time-Zone",
    "traceparent",
    "Accept-Encoding",
];

/// Known headers under their canonical names, then any other header whose
/// name starts with `Nats-` (any case) under its own name.
fn reserved_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    // Each header name is folded once (not once per reserved name).
    let folded: Vec<_> = headers.iter().map(|(name, _)| fold(name)).collect();
    // First position of each folded name: one pass, then a lookup per
    // reserved name (linear, not reserved names × headers × `Nats-` names).
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(folded.len());
    for (index, name) in folded.iter().enumerate() {
        first.entry(name.as_ref()).or_insert(index);
    }
    let mut out = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for (canonical, wanted) in RESERVED_HEADER_NAMES
        .iter()
        .zip(reserved_header_names_folded())
    {
        if let Some(&index) = first.get(wanted.as_str()) {
            out.push((canonical.to_string(), headers[index].1.clone()));
            seen.insert(wanted);
        }
    }
    for ((name, value), folded) in headers.iter().zip(&folded) {
        if folded.starts_with("nats-") && seen.insert(folded.as_ref()) {
            out.push((name.clone(), value.clone()));
        }
    }
    out
}

/// [`RESERVED_HEADER_NAMES`] folded (they are ASCII), computed once.
fn reserved_header_names_folded() -> &'static [String] {
    static FOLDED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    FOLDED.get_or_init(|| {
        RESERVED_HEADER_NAMES
            .iter()
            .map(|name| name.to_ascii_lowercase())
            .collect()
    })
}

/// Python `int(text.strip())` for `Nats-Msg-Size`: optional sign, ASCII
/// digits with single `_` separators; negative is malformed.
fn parse_msg_size(text: &str) -> Option<u64> {
    let t = py_strip(text);
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'+') => (false, &t[1..]),
        Some(b'-') => (true, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let value: u64 = digits.replace('_', "").parse().ok()?;
    if negative && value != 0 {
        return None;
    }
    Some(value)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => 0,
    }
}

/// Parses a `Nats-Time-Stamp` header (RFC 3339 / ISO 8601 extended) into
/// Unix nanoseconds, with the grammar the file sink uses: `YYYY-MM-DD`,
/// optionally `T`/`t`/space and `HH[:MM[:SS[.fraction]]]`, optional offset
/// `Z`, `±HH`, `±HHMM`, `±HH:MM`; no offset means UTC. The fraction is kept
/// to the nanosecond.
pub fn parse_time_stamp_ns(text: &str) -> Option<i64> {
    let s = text.as_bytes();
    let mut pos = 0usize;
    let digits = |pos: &mut usize, n: usize| -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let c = *s.get(*pos)?;
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
            *pos += 1;
        }
        Some(v)
    };
    let eat = |pos: &mut usize, c: u8| -> bool {
        if s.get(*pos) == Some(&c) {
            *pos += 1;
            true
        } else {
            false
        }
    };
    let year = i64::from(digits(&mut pos, 4)?);
    if !eat(&mut pos, b'-') {
        return None;
    }
    let month = digits(&mut pos, 2)?;
    if !eat(&mut pos, b'-') {
        return None;
    }
    let day = digits(&mut pos, 2)?;
    if year < 1 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let (mut hour, mut minute, mut second, mut nanos) = (0u32, 0u32, 0u32, 0u32);
    let mut offset: i64 = 0;
    if pos < s.len() {
        if !(eat(&mut pos, b'T') || eat(&mut pos, b't') || eat(&mut pos, b' ')) {
            return None;
        }
        hour = digits(&mut pos, 2)?;
        if eat(&mut pos, b':') {
            minute = digits(&mut pos, 2)?;
            if eat(&mut pos, b':') {
                second = digits(&mut pos, 2)?;
                if eat(&mut pos, b'.') || eat(&mut pos, b',') {
                    let mut n = 0usize;
                    while let Some(d) = s.get(pos).filter(|d| d.is_ascii_digit()) {
                        if n < 9 {
                            nanos = nanos * 10 + u32::from(d - b'0');
                        }
                        n += 1;
                        pos += 1;
                    }
                    if n == 0 {
                        return None;
                    }
                    for _ in n..9 {
                        nanos *= 10;
                    }
                }
            }
        }
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        match s.get(pos) {
            None => {}
            Some(b'Z' | b'z') => pos += 1,
            Some(&sign @ (b'+' | b'-')) => {
                pos += 1;
                let oh = digits(&mut pos, 2)?;
                let om = if eat(&mut pos, b':') || pos < s.len() {
                    digits(&mut pos, 2)?
                } else {
                    0
                };
                if oh > 23 || om > 59 {
                    return None;
                }
                let magnitude = i64::from(oh) * 3600 + i64::from(om) * 60;
                offset = if sign == b'-' { -magnitude } else { magnitude };
            }
            Some(_) => return None,
        }
        if pos < s.len() {
            return None;
        }
    }
    let secs = days_from_civil(year, month, day) * 86_400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second)
        - offset;
    secs.checked_mul(1_000_000_000)?
        .checked_add(i64::from(nanos))
}

/// `max(0, (later − earlier) / 10⁹)` seconds, correctly rounded as Python's
/// integer true division is (also beyond 2⁵³ ns, about 104 days).
pub fn age_seconds(later_ns: i64, earlier_ns: i64) -> f64 {
    let diff = i128::from(later_ns) - i128::from(earlier_ns);
    if diff <= 0 {
        return 0.0;
    }
    correctly_rounded_div_1e9(diff)
}

/// `n / 1e9` rounded to nearest, ties to even, for `0 < n < 2^65`.
fn correctly_rounded_div_1e9(n: i128) -> f64 {
    if n < (1 << 53) {
        // Both operands exact: IEEE division rounds correctly.
        return n as f64 / 1e9;
    }
    // The estimate is within an ulp or two; pick the candidate c = m·2^e
    // with the smallest exact error |m·1e9·2^e − n|, scaled by 2^SCALE to
    // stay in integers (here 2^23 < c < 2^36, so −29 ≤ e ≤ −17).
    const SCALE: i32 = 40;
    let error = |c: f64| -> i128 {
        let bits = c.to_bits();
        let e = ((bits >> 52) & 0x7ff) as i32 - 1075;
        let m = i128::from((bits & ((1u64 << 52) - 1)) | (1u64 << 52));
        ((m * 1_000_000_000) << (e + SCALE)).abs_diff(n << SCALE) as i128
    };
    let estimate = n as f64 / 1e9;
    let mut best = estimate;
    let mut best_error = error(estimate);
    for step in [-2i64, -1, 1, 2] {
        let candidate = f64::from_bits(estimate.to_bits().wrapping_add_signed(step));
        let candidate_error = error(candidate);
        if candidate_error < best_error
            || (candidate_error == best_error && candidate.to_bits() & 1 == 0)
        {
            best = candidate;
            best_error = candidate_error;
        }
    }
    best
}

/// A host document (mission metadata, security labels) as the record
/// stores it: parsed JSON, or the text itself when it is not JSON.
fn json_document(text: Option<&str>) -> Value {
    match text {
        None => Value::Null,
        Some(text) => {
            json::parse(text).map_or_else(|_| Value::String(text.to_string()), |v| v.to_value())
        }
    }
}

fn pairs_object(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// The reference's metadata document of one message (the file sink's
/// `record.metadata`), which custody's `metadata_hash` covers.
///
/// `envelope.payload` is the body as received (it gives
/// `payload.original_size_bytes`, or the `Nats-Msg-Size` header does);
/// `stored_payload` is the body handed to the sink, possibly encrypted (it
/// gives `delivered_size_bytes`). With `stored_at_ns` `None` this is the
/// custody form: no `timestamps.stored_at*`, and
/// `freshness.event_age_at_store_seconds` taken at receipt, as the reference
/// computes custody with `stored_at = received_at`.
pub fn metadata_document(
    envelope: &Envelope,
    stored_payload: &[u8],
    stored_at_ns: Option<i64>,
) -> Value {
    use crate::delivery::dlq::python_isoformat;

    let headers = normalized_headers(&envelope.headers);
    let reserved = reserved_headers(&headers);
    let mut reserved_names: Vec<&str> = reserved.iter().map(|(k, _)| k.as_str()).collect();
    reserved_names.sort_unstable();
    let meta = &envelope.metadata;
    let labels = normalize_labels(meta.labels.iter().map(String::as_str));

    let time_stamp = lookup(&headers, "Nats-Time-Stamp");
    let (created_ns, created_source, created_malformed) = match time_stamp.map(parse_time_stamp_ns)
    {
        Some(Some(ns)) => (ns, "nats_time_stamp", false),
        Some(None) => (envelope.timestamp_ns, "jetstream_timestamp", true),
        None => (envelope.timestamp_ns, "jetstream_timestamp", false),
    };

    let size_header = lookup(&headers, "Nats-Msg-Size");
    let parsed_size = size_header.map(parse_msg_size);
    let size_malformed = matches!(parsed_size, Some(None));
    let received_len = envelope.payload.len() as u64;
    let (present, omitted, omitted_reason, original_size) = match parsed_size {
        Some(Some(size)) if envelope.payload.is_empty() => {
            (false, true, Some("headers_only"), size)
        }
        Some(Some(size)) => (true, false, None, size),
        _ => (true, false, None, received_len),
    };
    let store_ns = stored_at_ns.unwrap_or(envelope.received_at_ns);

    let mut timestamps = json!({
        "message_created_at_epoch_ns": created_ns,
        "message_created_at_source": created_source,
        "message_created_at_header_malformed": created_malformed,
        "nats_time_stamp": time_stamp,
        "jetstream_timestamp_epoch_ns": envelope.timestamp_ns,
        "received_at": python_isoformat(envelope.received_at_ns),
        "received_at_epoch_ns": envelope.received_at_ns,
    });
    if let (Some(stored_at), Some(map)) = (stored_at_ns, timestamps.as_object_mut()) {
        map.insert(
            "stored_at".to_string(),
            Value::String(python_isoformat(stored_at)),
        );
        map.insert("stored_at_epoch_ns".to_string(), Value::from(stored_at));
    }

    json!({
        "metadata_version": 1,
        "subject": envelope.subject,
        "reply": null,
        "message_id": envelope.message_id,
        "message_metadata": {
            "priority": clean_default(meta.priority.as_deref()),
            "classification": clean_default(meta.classification.as_deref()),
            "labels": labels,
        },
        "mission_metadata": json_document(meta.mission_metadata.as_deref()),
        "security_labels": json_document(meta.security_labels.as_deref()),
        "headers": pairs_object(&headers),
        "payload": {
            "present": present,
            "omitted": omitted,
            "omitted_reason": omitted_reason,
            "original_size_bytes": original_size,
            "delivered_size_bytes": stored_payload.len() as u64,
            "nats_msg_size_header": size_header,
            "nats_msg_size_header_malformed": size_malformed,
        },
        "nats": {
            "reserved_headers": pairs_object(&reserved),
            "reserved_headers_present": reserved_names,
        },
        "jetstream": {
            "stream": envelope.stream,
            "consumer": envelope.consumer,
            "domain": null,
            "stream_sequence": envelope.stream_sequence,
            "consumer_sequence": envelope.consumer_sequence,
            "redelivered": envelope.delivery_count > 1,
            "pending": envelope.pending,
            "timestamp": python_isoformat(envelope.timestamp_ns),
            "timestamp_epoch_ns": envelope.timestamp_ns,
        },
        "timestamps": timestamps,
        "freshness": {
            "event_age_at_receive_seconds": age_seconds(envelope.received_at_ns, created_ns),
            "event_age_at_store_seconds": age_seconds(store_ns, created_ns),
            "source_clock_skew_seconds": age_seconds(created_ns, envelope.received_at_ns),
            "message_created_at_source": created_source,
            "message_created_at_missing": false,
            "message_created_at_header_malformed": created_malformed,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn policy(metadata: &str, labels: &str) -> MetadataPolicy {
        let metadata: MessageMetadataConfig = serde_json::from_str(metadata).unwrap();
        let labels: SecurityLabelsConfig = serde_json::from_str(labels).unwrap();
        MetadataPolicy::from_config(&metadata, &labels).unwrap()
    }

    #[test]
    fn label_dedup_keeps_the_first_of_each_in_order() {
        assert_eq!(
            normalize_labels([" b ; a;b;;c ", "a; d"]),
            vec!["b", "a", "c", "d"]
        );
        // Many labels, many duplicates: same order as the old quadratic scan.
        let value: Vec<String> = (0..5_000).map(|i| format!("l{}", i % 1_000)).collect();
        let labels = normalize_labels([value.join(";").as_str()]);
        assert_eq!(labels.len(), 1_000);
        assert_eq!(labels[0], "l0");
        assert_eq!(labels[999], "l999");
    }

    #[test]
    fn header_dedup_keeps_the_last_value_at_the_first_position() {
        let h = headers(&[("A", "1"), ("b", "x"), (" A ", "2"), ("", "e"), ("a", "3")]);
        assert_eq!(
            normalized_headers(&h),
            headers(&[("A", "2"), ("b", "x"), ("a", "3")])
        );
        let many: Vec<(String, String)> = (0..3_000)
            .map(|i| (format!("Nats-H{}", i % 700), i.to_string()))
            .collect();
        let normal = normalized_headers(&many);
        assert_eq!(normal.len(), 700);
        assert_eq!(normal[0], ("Nats-H0".to_string(), "2800".to_string()));
        assert_eq!(reserved_headers(&normal).len(), 700);
    }

    #[test]
    fn too_many_headers_are_refused_before_normalisation() {
        let p = policy("{}", "{}");
        let ok: Vec<(String, String)> = (0..MAX_HEADERS)
            .map(|i| (format!("X-{i}"), String::new()))
            .collect();
        assert!(p.apply("a", &ok).is_ok());
        let mut over = ok.clone();
        over.push(("X-last".into(), String::new()));
        let err = p.apply("a", &over).unwrap_err();
        assert_eq!(err.error_type(), "ValidationError");
        assert!(
            err.reason.contains("at most 1024 are accepted"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn too_many_header_bytes_are_refused() {
        let p = policy("{}", "{}");
        let fits = headers(&[("X-Big", &"v".repeat(60 * 1024))]);
        assert!(p.apply("a", &fits).is_ok(), "a 60 KiB value fits");
        let over = headers(&[("X-Big", &"v".repeat(MAX_HEADER_BYTES))]);
        let err = p.apply("a", &over).unwrap_err();
        assert!(err.reason.contains("header"), "{}", err.reason);
    }

    #[test]
    fn too_many_labels_are_refused() {
        let p = policy("{}", "{}");
        let value = |n: usize| {
            (0..n)
                .map(|i| format!("l{i}"))
                .collect::<Vec<_>>()
                .join(";")
        };
        let fits = headers(&[("Nats-Sinks-Labels", &value(MAX_LABELS))]);
        assert_eq!(p.apply("a", &fits).expect("fits").labels.len(), MAX_LABELS);
        let over = headers(&[("Nats-Sinks-Labels", &value(MAX_LABELS + 1))]);
        let err = p.apply("a", &over).unwrap_err();
        assert!(err.reason.contains("labels"), "{}", err.reason);
        // Duplicates do not count twice.
        let dup = headers(&[("Nats-Sinks-Labels", &"x;".repeat(5_000))]);
        assert_eq!(p.apply("a", &dup).expect("dups").labels, vec!["x"]);
    }

    #[test]
    fn headers_win_over_rules_and_defaults() {
        let p = policy(
            r#"{"priority":{"default":"normal"},"classification":{"default":"internal"},
                "labels":{"default":"base"},
                "rules":[{"subject":"ops.>","priority":"high","labels":["ops","audit"]},
                         {"subject":"ops.alerts","priority":"critical","classification":"restricted"}]}"#,
            "{}",
        );
        // Defaults.
        let m = p.apply("app.x", &[]).unwrap();
        assert_eq!(m.priority.as_deref(), Some("normal"));
        assert_eq!(m.classification.as_deref(), Some("internal"));
        assert_eq!(m.labels, ["base"]);
        assert_eq!(m.security_labels, None);
        // Rules, per field, first matching rule that sets it.
        let m = p.apply("ops.alerts", &[]).unwrap();
        assert_eq!(m.priority.as_deref(), Some("high"));
        assert_eq!(m.classification.as_deref(), Some("restricted"));
        assert_eq!(m.labels, ["ops", "audit"]);
        // Headers win (names case-insensitive); labels split on `;`.
        let h = headers(&[
            ("nats-sinks-priority", " urgent "),
            ("NATS-SINKS-CLASSIFICATION", "secret"),
            ("Nats-Sinks-Labels", " a ;b;; a ; c"),
        ]);
        let m = p.apply("ops.alerts", &h).unwrap();
        assert_eq!(m.priority.as_deref(), Some("urgent"));
        assert_eq!(m.classification.as_deref(), Some("secret"));
        assert_eq!(m.labels, ["a", "b", "c"]);
        // A present but blank header means none, not the default.
        let h = headers(&[("Nats-Sinks-Priority", "  "), ("Nats-Sinks-Labels", "")]);
        let m = p.apply("ops.alerts", &h).unwrap();
        assert_eq!(m.priority, None);
        assert!(m.labels.is_empty());
        assert_eq!(m.classification.as_deref(), Some("restricted"));
    }

    #[test]
    fn rule_null_clears_default_and_custom_headers() {
        let p = policy(
            r#"{"priority":{"header":"X-Prio","default":"normal"},
                "rules":[{"subject":"quiet.*","priority":null}]}"#,
            "{}",
        );
        assert_eq!(p.apply("quiet.a", &[]).unwrap().priority, None);
        assert_eq!(
            p.apply("quiet.a.b", &[]).unwrap().priority.as_deref(),
            Some("normal")
        );
        let h = headers(&[("x-prio", "low"), ("Nats-Sinks-Priority", "ignored")]);
        assert_eq!(
            p.apply("quiet.a", &h).unwrap().priority.as_deref(),
            Some("low")
        );
    }

    #[test]
    fn security_labels_resolve_and_fill_from_metadata() {
        let p = policy(
            r#"{"classification":{"default":"internal"}}"#,
            r#"{"enabled":true,"default":{"owner":"ops"},
                "rules":[{"subject":"open.>","profile":null},
                         {"subject":"mission.>","profile":{"releasability":"NATO; EU","policy_id":"p-7"}}]}"#,
        );
        let m = p
            .apply("app.x", &headers(&[("Nats-Sinks-Labels", "x;y")]))
            .unwrap();
        assert_eq!(
            m.security_labels.as_deref(),
            Some(
                "{\"classification\":\"internal\",\"handling_caveats\":[],\"labels\":[\"x\",\"y\"],\
                 \"originator\":null,\"owner\":\"ops\",\"policy_id\":null,\"priority\":null,\
                 \"profile\":\"nats-sinks.security-label.v1\",\"releasability\":[],\"retention_category\":null}"
            )
        );
        assert_eq!(p.apply("open.data", &[]).unwrap().security_labels, None);
        let m = p.apply("mission.a", &[]).unwrap();
        let v: Value = serde_json::from_str(m.security_labels.as_deref().unwrap()).unwrap();
        assert_eq!(v["releasability"], json!(["NATO", "EU"]));
        assert_eq!(v["policy_id"], "p-7");
        // The header wins; explicit null in the header is kept as null.
        let h = headers(&[(
            "Nats-Sinks-Security-Labels",
            r#"{"classification":null,"labels":["h"],"extensions":{"mission":"m1","level":2}}"#,
        )]);
        let v: Value = serde_json::from_str(
            p.apply("mission.a", &h)
                .unwrap()
                .security_labels
                .as_deref()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(v["classification"], Value::Null);
        assert_eq!(v["labels"], json!(["h"]));
        assert_eq!(v["extensions"], json!({"mission":"m1","level":2}));
        // A blank header means no profile.
        let h = headers(&[("Nats-Sinks-Security-Labels", "  ")]);
        assert_eq!(p.apply("mission.a", &h).unwrap().security_labels, None);
    }

    #[test]
    fn disallowed_values_are_rejected_with_the_reference_reason() {
        let p = policy(
            "{}",
            r#"{"enabled":true,"default":{},"allowed_classifications":["public","internal"],
                "allowed_releasability":["NATO","EU"]}"#,
        );
        let h = headers(&[("Nats-Sinks-Classification", "secret")]);
        let err = p.apply("a", &h).unwrap_err();
        assert_eq!(
            err.reason,
            "security label field 'classification' must be one of the configured values: internal, public"
        );
        assert_eq!(err.error_type(), "ValidationError");
        assert!(p
            .apply("a", &headers(&[("Nats-Sinks-Classification", "public")]))
            .is_ok());
        // No classification at all is not outside the list.
        assert!(p.apply("a", &[]).is_ok());
        let h = headers(&[(
            "Nats-Sinks-Security-Labels",
            r#"{"releasability":["NATO","FVEY","X"]}"#,
        )]);
        assert_eq!(
            p.apply("a", &h).unwrap_err().reason,
            "security label field 'releasability' contains values outside the configured allow list: FVEY, X. \
             Allowed values: EU, NATO"
        );
    }

    #[test]
    fn malformed_security_label_headers_are_rejected() {
        let p = policy("{}", r#"{"enabled":true,"max_bytes":200}"#);
        let reject = |value: &str| {
            p.apply("a", &headers(&[("Nats-Sinks-Security-Labels", value)]))
                .unwrap_err()
                .reason
        };
        assert_eq!(reject("{"), "security label header is not valid JSON");
        assert_eq!(
            reject(r#"{"owner":"a","owner":"b"}"#),
            "security label header is not valid JSON"
        );
        assert_eq!(reject("[1]"), "security label header must be a JSON object");
        assert_eq!(
            reject(r#"{"colour":"red","api":1}"#),
            "security label header contains unsupported security label fields: api, colour"
        );
        assert_eq!(
            reject(r#"{"extensions":{"api_token":"x"}}"#),
            "security label header.extensions key 'api_token' looks secret-like and is not allowed"
        );
        assert_eq!(
            reject(r#"{"profile":"other"}"#),
            "security label header profile must be 'nats-sinks.security-label.v1'"
        );
        assert_eq!(
            reject(r#"{"owner":5}"#),
            "security label field 'owner' must be a string"
        );
        assert_eq!(
            reject(r#"{"labels":["a;b"]}"#),
            "security label field 'labels' list items must not contain the semicolon separator"
        );
        assert_eq!(
            reject(&format!(r#"{{"owner":"{}"}}"#, "x".repeat(300))),
            "security label header exceeds the configured 200 byte limit"
        );
        assert_eq!(
            reject(r#"{"extensions":{"n":1e400}}"#),
            "security label header.extensions.n float value must be finite"
        );
    }

    #[test]
    fn header_normalisation() {
        let h = headers(&[
            ("A", "1"),
            (" A ", "2"),
            ("", "x"),
            ("B\u{1}", "y"),
            ("a", "3"),
        ]);
        assert_eq!(normalized_headers(&h), headers(&[("A", "2"), ("a", "3")]));
        assert_eq!(lookup(&normalized_headers(&h), "a"), Some("2"));
        assert_eq!(fold("Straße"), "strasse");
    }

    #[test]
    fn ages_are_correctly_rounded() {
        assert_eq!(age_seconds(1_000_000_000, 0), 1.0);
        assert_eq!(age_seconds(0, 1_000), 0.0);
        assert_eq!(age_seconds(1_500, 0), 1.5e-6);
        // Beyond 2^53 ns: compare with exact rational rounding.
        for n in [
            (1i128 << 53) + 1,
            9_007_199_254_740_993,
            12_345_678_901_234_567_891,
            18_446_744_073_709_551_615,
            (1i128 << 60) + 123_456_789,
        ] {
            let got = correctly_rounded_div_1e9(n);
            // Exact check: no neighbour is closer.
            let err = |c: f64| {
                let bits = c.to_bits();
                let exp = ((bits >> 52) & 0x7ff) as i32 - 1075;
                let m = i128::from((bits & ((1u64 << 52) - 1)) | (1u64 << 52));
                assert!(exp < 0);
                ((m * 1_000_000_000) - (n << -exp)).abs()
            };
            let below = f64::from_bits(got.to_bits() - 1);
            let above = f64::from_bits(got.to_bits() + 1);
            assert!(err(got) <= err(below) && err(got) <= err(above), "{n}");
        }
    }

    #[test]
    fn time_stamps() {
        assert_eq!(
            parse_time_stamp_ns("2026-05-22T12:00:00Z"),
            Some(1_779_451_200_000_000_000)
        );
        assert_eq!(
            parse_time_stamp_ns("2026-05-22T14:00:00+02:00"),
            Some(1_779_451_200_000_000_000)
        );
        assert_eq!(
            parse_time_stamp_ns("2026-05-22 12:00"),
            Some(1_779_451_200_000_000_000)
        );
        assert_eq!(
            parse_time_stamp_ns("2026-11-22T10:56:07.389552266Z"),
            Some(1_795_344_967_389_552_266)
        );
        for bad in [
            "",
            "soon",
            "2026-02-29",
            "2026-05-22T24:00:00Z",
            "2026-05-22T12:00:00Z ",
        ] {
            assert_eq!(parse_time_stamp_ns(bad), None, "{bad:?}");
        }
        assert_eq!(parse_msg_size(" 1_024 "), Some(1024));
        assert_eq!(parse_msg_size("-1"), None);
    }

    #[test]
    fn document_with_stored_at_and_time_stamp_header() {
        let envelope = Envelope {
            subject: "s".into(),
            headers: headers(&[
                ("Nats-Time-Stamp", "2026-05-22T11:59:59.5Z"),
                ("Nats-Msg-Size", "10"),
            ]),
            payload: bytes::Bytes::new(),
            stream: "S".into(),
            consumer: "c".into(),
            stream_sequence: 1,
            consumer_sequence: 1,
            delivery_count: 3,
            pending: 4,
            timestamp_ns: 1_779_451_200_000_000_000,
            received_at_ns: 1_779_451_201_000_000_000,
            message_id: None,
            metadata: MessageMetadata {
                security_labels: Some("{\"b\":1.0,\"a\":[]}".into()),
                ..MessageMetadata::default()
            },
            custody: None,
        };
        let doc = metadata_document(&envelope, b"0123456789ab", Some(1_779_451_202_000_000_000));
        assert_eq!(
            doc["timestamps"]["message_created_at_source"],
            "nats_time_stamp"
        );
        assert_eq!(doc["timestamps"]["stored_at"], "2026-05-22T12:00:02+00:00");
        assert_eq!(doc["freshness"]["event_age_at_receive_seconds"], 1.5);
        assert_eq!(doc["freshness"]["event_age_at_store_seconds"], 2.5);
        assert_eq!(doc["jetstream"]["redelivered"], true);
        assert_eq!(
            doc["payload"],
            json!({"present":false,"omitted":true,"omitted_reason":"headers_only","original_size_bytes":10,
                   "delivered_size_bytes":12,"nats_msg_size_header":"10","nats_msg_size_header_malformed":false})
        );
        assert_eq!(
            crate::security::canonical::to_canonical_string(&doc["security_labels"]),
            "{\"a\":[],\"b\":1.0}"
        );
        let hash_form = metadata_document(&envelope, b"", None);
        assert!(hash_form["timestamps"].get("stored_at").is_none());
        assert_eq!(hash_form["freshness"]["event_age_at_store_seconds"], 1.5);
    }
}
