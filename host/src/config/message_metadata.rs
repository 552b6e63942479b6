//! The `message_metadata` and `security_labels` sections: how the host
//! derives each message's priority, classification, labels and structured
//! security-label profile from headers, subject rules and defaults.
//!
//! Names, defaults, precedence and limits follow the reference `nats-sinks`
//! (0.4.3); see `docs/metadata.md`. In short, per field: a present header
//! wins (present but blank means "none"), else the first subject rule that
//! sets the field, else the section default.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::Invalid;
use crate::security::metadata::{clean_default, has_ascii_control, normalize_labels, py_strip};
use crate::subjects;

/// Default priority header.
pub const DEFAULT_PRIORITY_HEADER: &str = "Nats-Sinks-Priority";
/// Default classification header.
pub const DEFAULT_CLASSIFICATION_HEADER: &str = "Nats-Sinks-Classification";
/// Default labels header (`;`-separated).
pub const DEFAULT_LABELS_HEADER: &str = "Nats-Sinks-Labels";
/// Separator of labels in a header or a configured string.
pub const LABEL_SEPARATOR: char = ';';
/// Default security-label profile header (a JSON object).
pub const DEFAULT_SECURITY_LABELS_HEADER: &str = "Nats-Sinks-Security-Labels";
/// Default `security_labels.max_bytes`.
pub const DEFAULT_MAX_SECURITY_LABEL_BYTES: u64 = 8192;
/// Largest accepted `security_labels.max_bytes`.
pub const MAX_SECURITY_LABEL_BYTES: u64 = 262_144;

/// A list of labels written as `"a;b"` or `["a", "b"]` (array items must not
/// contain `;`), normalised when read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelList(pub Vec<String>);

impl Serialize for LabelList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for LabelList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LabelsVisitor;
        impl<'de> Visitor<'de> for LabelsVisitor {
            type Value = LabelList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a `;`-separated string or an array of strings")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LabelList::default())
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                checked_labels(normalize_labels([value])).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items: Vec<String> = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    if py_strip(&item).contains(LABEL_SEPARATOR) {
                        return Err(de::Error::custom(
                            "list items must not contain the semicolon separator",
                        ));
                    }
                    items.push(item);
                }
                checked_labels(normalize_labels(items.iter().map(String::as_str)))
                    .map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_any(LabelsVisitor)
    }
}

fn checked_labels(labels: Vec<String>) -> Result<LabelList, &'static str> {
    if labels.iter().any(|label| has_ascii_control(label)) {
        return Err("labels must not contain control characters");
    }
    Ok(LabelList(labels))
}

/// An allow list written as one string or an array of strings; items are
/// trimmed, must not be empty, and repeats are dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(pub Vec<String>);

impl AllowList {
    /// No restriction when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for AllowList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for AllowList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AllowVisitor;
        impl<'de> Visitor<'de> for AllowVisitor {
            type Value = AllowList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(AllowList::default())
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                allow_list([value.to_string()]).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                allow_list(items).map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_any(AllowVisitor)
    }
}

fn allow_list(items: impl IntoIterator<Item = String>) -> Result<AllowList, &'static str> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let item = py_strip(&item);
        if item.is_empty() {
            return Err("must not contain empty values");
        }
        if has_ascii_control(item) {
            return Err("must not contain control characters");
        }
        if !out.iter().any(|seen| seen == item) {
            out.push(item.to_string());
        }
    }
    Ok(AllowList(out))
}

/// Distinguishes an absent field (`None`) from an explicit `null`
/// (`Some(None)`): a rule's explicit `null` clears the default.
fn explicit<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// How one scalar field (priority or classification) is resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetadataFieldConfig {
    /// Header that carries the value (case-insensitive).
    pub header: String,
    /// Value when the header is absent (and no rule sets one).
    pub default: Option<String>,
}

/// How labels are resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetadataLabelsConfig {
    /// Header that carries `;`-separated labels (case-insensitive).
    pub header: String,
    /// Labels when the header is absent (and no rule sets them).
    pub default: LabelList,
}

/// Subject-specific defaults; a rule never changes which headers are read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataRuleConfig {
    /// NATS subject pattern.
    pub subject: String,
    /// Priority default for matching subjects (`null` clears it).
    #[serde(
        default,
        deserialize_with = "explicit",
        skip_serializing_if = "Option::is_none"
    )]
    pub priority: Option<Option<String>>,
    /// Classification default for matching subjects (`null` clears it).
    #[serde(
        default,
        deserialize_with = "explicit",
        skip_serializing_if = "Option::is_none"
    )]
    pub classification: Option<Option<String>>,
    /// Label defaults for matching subjects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<LabelList>,
}

/// The `message_metadata` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawMessageMetadataConfig")]
pub struct MessageMetadataConfig {
    /// Priority resolution.
    pub priority: MetadataFieldConfig,
    /// Classification resolution.
    pub classification: MetadataFieldConfig,
    /// Labels resolution.
    pub labels: MetadataLabelsConfig,
    /// Ordered subject rules; per field, the first matching rule that sets
    /// the field gives its default.
    pub rules: Vec<MetadataRuleConfig>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawField {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    default: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLabels {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    default: LabelList,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMessageMetadataConfig {
    #[serde(default)]
    priority: RawField,
    #[serde(default)]
    classification: RawField,
    #[serde(default)]
    labels: RawLabels,
    #[serde(default)]
    rules: Vec<MetadataRuleConfig>,
}

impl From<RawMessageMetadataConfig> for MessageMetadataConfig {
    fn from(raw: RawMessageMetadataConfig) -> Self {
        let field = |raw: RawField, header: &str| MetadataFieldConfig {
            header: raw.header.unwrap_or_else(|| header.to_string()),
            default: raw.default,
        };
        Self {
            priority: field(raw.priority, DEFAULT_PRIORITY_HEADER),
            classification: field(raw.classification, DEFAULT_CLASSIFICATION_HEADER),
            labels: MetadataLabelsConfig {
                header: raw
                    .labels
                    .header
                    .unwrap_or_else(|| DEFAULT_LABELS_HEADER.to_string()),
                default: raw.labels.default,
            },
            rules: raw.rules,
        }
    }
}

impl Default for MessageMetadataConfig {
    fn default() -> Self {
        RawMessageMetadataConfig::default().into()
    }
}

fn validate_header(location: &str, header: &str) -> Result<(), Invalid> {
    let header = py_strip(header);
    if header.is_empty() {
        return Err(Invalid::new(location, "must not be empty"));
    }
    if has_ascii_control(header) {
        return Err(Invalid::new(
            location,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn validate_default(location: &str, value: Option<&str>) -> Result<(), Invalid> {
    if let Some(value) = clean_default(value) {
        if has_ascii_control(&value) {
            return Err(Invalid::new(
                location,
                "must not contain control characters",
            ));
        }
    }
    Ok(())
}

impl MessageMetadataConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        validate_header("message_metadata.priority.header", &self.priority.header)?;
        validate_header(
            "message_metadata.classification.header",
            &self.classification.header,
        )?;
        validate_header("message_metadata.labels.header", &self.labels.header)?;
        validate_default(
            "message_metadata.priority.default",
            self.priority.default.as_deref(),
        )?;
        validate_default(
            "message_metadata.classification.default",
            self.classification.default.as_deref(),
        )?;
        for (index, rule) in self.rules.iter().enumerate() {
            let at = |field: &str| format!("message_metadata.rules[{index}].{field}");
            subjects::validate_subject_pattern(&rule.subject)
                .map_err(|err| Invalid::new(at("subject"), err.to_string()))?;
            if rule.priority.is_none() && rule.classification.is_none() && rule.labels.is_none() {
                return Err(Invalid::new(
                    format!("message_metadata.rules[{index}]"),
                    "a subject rule must set priority, classification, labels, or a combination",
                ));
            }
            if let Some(value) = &rule.priority {
                validate_default(&at("priority"), value.as_deref())?;
            }
            if let Some(value) = &rule.classification {
                validate_default(&at("classification"), value.as_deref())?;
            }
        }
        Ok(())
    }
}

/// One subject-specific security-label profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityLabelRuleConfig {
    /// NATS subject pattern.
    pub subject: String,
    /// The profile for matching subjects when the header is absent; must be
    /// given, `null` meaning "no profile".
    #[serde(default, deserialize_with = "explicit")]
    pub profile: Option<Option<serde_json::Value>>,
}

/// The `security_labels` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityLabelsConfig {
    /// Resolve a security-label profile for every message.
    #[serde(default)]
    pub enabled: bool,
    /// Header carrying the profile as a JSON object.
    #[serde(default = "default_security_labels_header")]
    pub header: String,
    /// Profile when the header is absent and no rule matches.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// Ordered subject rules; the first match gives the profile.
    #[serde(default)]
    pub rules: Vec<SecurityLabelRuleConfig>,
    /// Largest profile (header bytes and canonical JSON).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Accepted priorities (empty: any).
    #[serde(default)]
    pub allowed_priorities: AllowList,
    /// Accepted classifications (empty: any).
    #[serde(default)]
    pub allowed_classifications: AllowList,
    /// Accepted releasability markings (empty: any).
    #[serde(default)]
    pub allowed_releasability: AllowList,
    /// Accepted handling caveats (empty: any).
    #[serde(default)]
    pub allowed_handling_caveats: AllowList,
    /// Accepted retention categories (empty: any).
    #[serde(default)]
    pub allowed_retention_categories: AllowList,
}

fn default_security_labels_header() -> String {
    DEFAULT_SECURITY_LABELS_HEADER.to_string()
}
fn default_max_bytes() -> u64 {
    DEFAULT_MAX_SECURITY_LABEL_BYTES
}

impl Default for SecurityLabelsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            header: default_security_labels_header(),
            default: None,
            rules: Vec::new(),
            max_bytes: DEFAULT_MAX_SECURITY_LABEL_BYTES,
            allowed_priorities: AllowList::default(),
            allowed_classifications: AllowList::default(),
            allowed_releasability: AllowList::default(),
            allowed_handling_caveats: AllowList::default(),
            allowed_retention_categories: AllowList::default(),
        }
    }
}

impl SecurityLabelsConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        validate_header("security_labels.header", &self.header)?;
        if !(1..=MAX_SECURITY_LABEL_BYTES).contains(&self.max_bytes) {
            return Err(Invalid::new(
                "security_labels.max_bytes",
                format!("must be between 1 and {MAX_SECURITY_LABEL_BYTES}"),
            ));
        }
        let limits = crate::security::metadata::ProfileLimits::from_config(self);
        if let Some(profile) = &self.default {
            crate::security::metadata::check_configured_profile(
                profile,
                &limits,
                "security label default",
            )
            .map_err(|message| Invalid::new("security_labels.default", message))?;
        }
        for (index, rule) in self.rules.iter().enumerate() {
            subjects::validate_subject_pattern(&rule.subject).map_err(|err| {
                Invalid::new(
                    format!("security_labels.rules[{index}].subject"),
                    err.to_string(),
                )
            })?;
            match &rule.profile {
                None => {
                    return Err(Invalid::new(
                        format!("security_labels.rules[{index}].profile"),
                        "security label rule must set profile, including null if desired",
                    ))
                }
                Some(None) => {}
                Some(Some(profile)) => crate::security::metadata::check_configured_profile(
                    profile,
                    &limits,
                    &format!("security label rule {}", rule.subject),
                )
                .map_err(|message| {
                    Invalid::new(format!("security_labels.rules[{index}].profile"), message)
                })?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_metadata(text: &str) -> Result<MessageMetadataConfig, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        let config: MessageMetadataConfig = serde_path_to_error::deserialize(&mut de)
            .map_err(|err| format!("{}: {}", err.path(), err.inner()))?;
        config
            .validate()
            .map_err(|invalid| format!("{}: {}", invalid.location, invalid.message))?;
        Ok(config)
    }

    fn parse_labels(text: &str) -> Result<SecurityLabelsConfig, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        let config: SecurityLabelsConfig = serde_path_to_error::deserialize(&mut de)
            .map_err(|err| format!("{}: {}", err.path(), err.inner()))?;
        config
            .validate()
            .map_err(|invalid| format!("{}: {}", invalid.location, invalid.message))?;
        Ok(config)
    }

    #[test]
    fn metadata_defaults_follow_the_reference() {
        let config = parse_metadata("{}").unwrap();
        assert_eq!(config.priority.header, "Nats-Sinks-Priority");
        assert_eq!(config.classification.header, "Nats-Sinks-Classification");
        assert_eq!(config.labels.header, "Nats-Sinks-Labels");
        assert_eq!(config, MessageMetadataConfig::default());
        // Only a default given: the header stays standard.
        let config = parse_metadata(r#"{"priority":{"default":"normal"}}"#).unwrap();
        assert_eq!(config.priority.header, "Nats-Sinks-Priority");
        assert_eq!(config.priority.default.as_deref(), Some("normal"));
    }

    #[test]
    fn labels_as_text_or_list() {
        let config = parse_metadata(r#"{"labels":{"default":" a ; b;;a "}}"#).unwrap();
        assert_eq!(config.labels.default.0, ["a", "b"]);
        let config = parse_metadata(r#"{"labels":{"default":["x"," y ","x",""]}}"#).unwrap();
        assert_eq!(config.labels.default.0, ["x", "y"]);
        let err = parse_metadata(r#"{"labels":{"default":["a;b"]}}"#).unwrap_err();
        assert!(err.starts_with("labels.default:"), "{err}");
        assert!(parse_metadata(r#"{"labels":{"default":"a\u0001"}}"#).is_err());
    }

    #[test]
    fn rules_must_set_something_and_keep_explicit_null() {
        let err = parse_metadata(r#"{"rules":[{"subject":"a.>"}]}"#).unwrap_err();
        assert!(err.starts_with("message_metadata.rules[0]:"), "{err}");
        let config = parse_metadata(r#"{"rules":[{"subject":"a.>","priority":null}]}"#).unwrap();
        assert_eq!(config.rules[0].priority, Some(None));
        assert_eq!(config.rules[0].classification, None);
        assert!(parse_metadata(r#"{"rules":[{"subject":"a.>.b","priority":"x"}]}"#).is_err());
        assert!(parse_metadata(r#"{"priority":{"header":"  "}}"#).is_err());
        assert!(parse_metadata(r#"{"priority":{"hedaer":"x"}}"#)
            .unwrap_err()
            .starts_with("priority"));
    }

    #[test]
    fn security_labels_defaults_and_validation() {
        let config = parse_labels("{}").unwrap();
        assert!(!config.enabled);
        assert_eq!(config.header, "Nats-Sinks-Security-Labels");
        assert_eq!(config.max_bytes, 8192);
        let config =
            parse_labels(r#"{"allowed_classifications":[" secret ","public","secret"]}"#).unwrap();
        assert_eq!(config.allowed_classifications.0, ["secret", "public"]);
        let config = parse_labels(r#"{"allowed_priorities":"urgent"}"#).unwrap();
        assert_eq!(config.allowed_priorities.0, ["urgent"]);
        assert!(parse_labels(r#"{"allowed_priorities":[""]}"#).is_err());
        assert!(parse_labels(r#"{"max_bytes":0}"#).is_err());
        assert!(parse_labels(r#"{"max_bytes":262145}"#).is_err());
        let err = parse_labels(r#"{"rules":[{"subject":"a"}]}"#).unwrap_err();
        assert!(err.contains("must set profile"), "{err}");
        parse_labels(r#"{"rules":[{"subject":"a","profile":null}]}"#).unwrap();
        let err = parse_labels(r#"{"default":{"colour":"red"}}"#).unwrap_err();
        assert_eq!(
            err,
            "security_labels.default: security label default contains unsupported security label fields: colour"
        );
        let err = parse_labels(
            r#"{"allowed_classifications":["public"],"rules":[{"subject":"x.>","profile":{"classification":"secret"}}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "security_labels.rules[0].profile: security label field 'classification' must be one of the configured values: public"
        );
    }
}
