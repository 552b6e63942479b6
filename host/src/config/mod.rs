//! The operator's configuration file: typed sections, defaults, validation.
//!
//! The file is JSON. Unknown keys are rejected with the path of the offending
//! key, so a typo never silently falls back to a default. Section and field
//! names follow the reference `nats-sinks` wherever they mean the same thing;
//! what is new to sinkhost (the `plugin` section) is documented in
//! `docs/configuration.md`.
//!
//! Secrets are never written in the file: a field whose name ends in `_env`
//! names an environment variable that holds the secret, read only by the host.

mod authenticity;
mod certification;
mod custody;
mod dead_letter;
mod delivery;
mod encryption;
mod logging;
mod message_metadata;
mod nats;
mod plugin;
mod sql;
mod trust;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use authenticity::{
    default_signed_fields, AuthenticityAlgorithm, MessageAuthenticityConfig,
    MessageAuthenticityKeyConfig, MessageAuthenticityRuleConfig, SignedField,
    UnmatchedSubjectAction, DEFAULT_ALGORITHM_HEADER, DEFAULT_KEY_ID_HEADER,
    DEFAULT_SIGNATURE_HEADER,
};
pub use certification::{CertificationConfig, SampleMessage, UnavailableScenario};
pub use custody::{CustodyAlgorithm, CustodyConfig};
pub use dead_letter::DeadLetterConfig;
pub use delivery::{
    BackoffMode, ConsumerManagementConfig, ConsumerMode, DeliverPolicy, DeliveryConfig,
    InProgressConfig, JitterMode, TemporaryFailureAction,
};
pub use encryption::{
    DecryptKeyConfig, EffectivePolicy, EncryptionAlgorithm, EncryptionConfig, EncryptionRuleConfig,
    InlineKeyRefused, KeySource,
};
pub use logging::{LogFormat, LoggingConfig};
pub use message_metadata::{
    AllowList, LabelList, MessageMetadataConfig, MetadataFieldConfig, MetadataLabelsConfig,
    MetadataRuleConfig, SecurityLabelRuleConfig, SecurityLabelsConfig,
};
pub use nats::NatsConfig;
pub use plugin::{FileAccess, FileGrant, Grants, HttpAuth, HttpGrant, PluginConfig, PluginLimits};
pub use sql::{SqlDriver, SqlGrant, SqlTls, SqlTlsMode, StatementKind};
pub use trust::{TrustConfig, TrustedPublisher};

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to connect and what to consume.
    pub nats: NatsConfig,
    /// Whether and how the host creates or reconciles the durable consumer.
    #[serde(default)]
    pub consumer_management: ConsumerManagementConfig,
    /// Batching, retries, in-progress heartbeats.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Where permanently failed messages are published.
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,
    /// Log level and format.
    #[serde(default)]
    pub logging: LoggingConfig,
    /// Priority, classification and labels: headers, defaults, subject rules.
    #[serde(default)]
    pub message_metadata: MessageMetadataConfig,
    /// Security labels profile and the classifications allowed through.
    #[serde(default)]
    pub security_labels: SecurityLabelsConfig,
    /// Signature verification of incoming messages (HMAC-SHA256, Ed25519).
    #[serde(default)]
    pub message_authenticity: MessageAuthenticityConfig,
    /// Payload encryption before the sink sees the message (AES-256-GCM).
    #[serde(default)]
    pub encryption: EncryptionConfig,
    /// Chain-of-custody hashes handed to the sink with each message.
    #[serde(default)]
    pub custody: CustodyConfig,
    /// Which sink component to run and what it is granted.
    pub plugin: PluginConfig,
    /// Which publishers' plugins this host runs (signatures). Absent: no
    /// signature is required (a warning says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustConfig>,
    /// How `sinkhost certify` checks the sink (ignored by `run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certification: Option<CertificationConfig>,
    /// The plugin's own settings, passed as JSON to its `init`.
    #[serde(default = "empty_object")]
    pub sink: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// Why a configuration could not be used. Every variant names what is wrong
/// and where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON or does not match the schema.
    #[error("invalid config {path} at `{location}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// JSON path of the offending key or value (`.` for the root).
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A value is well-formed but not acceptable.
    #[error("invalid config {path} at `{location}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// JSON path of the offending value.
        location: String,
        /// What is wrong.
        message: String,
    },
}

/// A semantic problem found by [`Config::validate`], before the file path is
/// attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// JSON path of the offending value, e.g. `delivery.batch_size`.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl Invalid {
    pub(crate) fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            location: location.into(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Reads, parses and validates a configuration file.
    ///
    /// Relative paths inside the file (plugin path, granted directories,
    /// credential files) are resolved against the current directory, as a
    /// shell user expects; see `docs/configuration.md`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&text).map_err(|err| match err {
            ParseOrInvalid::Parse { location, message } => ConfigError::Parse {
                path: path.to_path_buf(),
                location,
                message,
            },
            ParseOrInvalid::Invalid(Invalid { location, message }) => ConfigError::Invalid {
                path: path.to_path_buf(),
                location,
                message,
            },
        })
    }

    /// Parses and validates configuration text (used by `load` and tests).
    pub fn from_json_str(text: &str) -> Result<Self, ParseOrInvalid> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let config: Config =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
                let location = err.path().to_string();
                let inner = err.into_inner();
                ParseOrInvalid::Parse {
                    location,
                    message: strip_position(&inner),
                }
            })?;
        deserializer.end().map_err(|err| ParseOrInvalid::Parse {
            location: ".".to_string(),
            message: err.to_string(),
        })?;
        config.validate().map_err(ParseOrInvalid::Invalid)?;
        Ok(config)
    }

    /// Checks relations between values that the types alone cannot express.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.nats.validate()?;
        self.consumer_management.validate()?;
        self.delivery.validate()?;
        self.dead_letter.validate()?;
        self.message_metadata.validate()?;
        self.security_labels.validate()?;
        self.message_authenticity.validate()?;
        self.encryption.validate()?;
        self.custody.validate()?;
        self.plugin.validate()?;
        if let Some(certification) = &self.certification {
            certification.validate()?;
        }
        if let Some(trust) = &self.trust {
            trust.validate()?;
        }
        if !self.sink.is_object() {
            return Err(Invalid::new("sink", "must be a JSON object"));
        }
        self.validate_across_sections()
    }

    /// Whether a consumer's `max_deliver` lets JetStream stop redelivering
    /// before delivery `max_retries + 1`, the one that dead-letters: true
    /// only with a DLQ and a finite `max_deliver` at or below that.
    pub fn max_deliver_ends_before_the_dlq(&self, max_deliver: i64) -> bool {
        let budget = self.delivery.max_retries.saturating_add(1);
        self.dead_letter.active_subject().is_some()
            && u64::try_from(max_deliver).is_ok_and(|max| max > 0 && max <= budget)
    }

    /// Settings that are each valid but together would lose a message or
    /// loop: a DLQ the host consumes again, a redelivery budget that ends
    /// before the DLQ takes over, heartbeats slower than redelivery.
    fn validate_across_sections(&self) -> Result<(), Invalid> {
        if let Some(dlq) = self.dead_letter.active_subject() {
            let consumed = std::iter::once(&self.nats.subject)
                .chain(&self.consumer_management.filter_subjects);
            if let Some(pattern) = consumed
                .into_iter()
                .find(|pattern| crate::subjects::matches_subject(pattern, dlq))
            {
                return Err(Invalid::new(
                    "dead_letter.subject",
                    format!("`{dlq}` is consumed by this host itself (it matches `{pattern}`): every dead letter would be delivered again; use a subject outside the consumed ones"),
                ));
            }
            let budget = self.delivery.max_retries.saturating_add(1);
            if let Some(max) = self.consumer_management.max_deliver {
                if self.max_deliver_ends_before_the_dlq(max) {
                    return Err(Invalid::new(
                        "consumer_management.max_deliver",
                        format!("{max} lets JetStream stop redelivering before attempt {budget} (delivery.max_retries + 1) dead-letters the message, which would then be dropped silently; set it above {budget} or to -1"),
                    ));
                }
            }
        }
        let in_progress = &self.delivery.in_progress;
        if in_progress.enabled {
            let interval = in_progress.interval_ms as f64 / 1_000.0;
            let redelivery = self
                .consumer_management
                .ack_wait_seconds
                .into_iter()
                .chain(
                    self.consumer_management
                        .backoff_seconds
                        .iter()
                        .flatten()
                        .copied(),
                )
                .reduce(f64::min);
            if let Some(shortest) = redelivery.filter(|shortest| interval >= *shortest) {
                return Err(Invalid::new(
                    "delivery.in_progress.interval_ms",
                    format!("{} ms does not fit the consumer's redelivery delay of {shortest} s (ack_wait_seconds / backoff_seconds): messages would be redelivered while still being written; use an interval well below it", in_progress.interval_ms),
                ));
            }
        }
        Ok(())
    }

    /// The configuration with every default filled in and nothing secret in
    /// it, for `sinkhost show-effective-config`. Secrets are never in the
    /// file (only the names of the variables that hold them), so this also
    /// reports whether each named variable is set, never its value.
    pub fn effective(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        annotate_env_fields(&mut value);
        if let serde_json::Value::Object(sections) = &mut value {
            // Which encryption rule applies to which subject pattern.
            sections.insert(
                "encryption_rules_in_effect".to_string(),
                crate::security::encryption::describe_rules(&self.encryption),
            );
        }
        value
    }
}

/// Parse failure or semantic failure, without the file path.
#[derive(Debug)]
pub enum ParseOrInvalid {
    /// JSON syntax or schema error.
    Parse {
        /// JSON path of the offending key.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A semantic problem.
    Invalid(Invalid),
}

impl std::fmt::Display for ParseOrInvalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseOrInvalid::Parse { location, message } => write!(f, "at `{location}`: {message}"),
            ParseOrInvalid::Invalid(Invalid { location, message }) => {
                write!(f, "at `{location}`: {message}")
            }
        }
    }
}

/// serde_json appends " at line L column C"; keep it (it helps) but make the
/// message start with what is wrong.
fn strip_position(err: &serde_json::Error) -> String {
    err.to_string()
}

/// Replaces every `*_env` string field's value `"NAME"` by
/// `"NAME (set)"` or `"NAME (not set)"`, recursively.
fn annotate_env_fields(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                if key.ends_with("_env") {
                    if let serde_json::Value::String(name) = field {
                        let state = if std::env::var_os(name.as_str()).is_some() {
                            "set"
                        } else {
                            "not set"
                        };
                        *field = serde_json::Value::String(format!("{name} ({state})"));
                    }
                } else {
                    annotate_env_fields(field);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(annotate_env_fields),
        _ => {}
    }
}

/// Reads a secret from the environment variable named by a `*_env` field.
pub fn read_secret_env(field: &str, variable: &str) -> Result<String, SecretError> {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => Ok(value),
        Ok(_) => Err(SecretError {
            field: field.to_string(),
            variable: variable.to_string(),
            problem: "is empty",
        }),
        Err(std::env::VarError::NotPresent) => Err(SecretError {
            field: field.to_string(),
            variable: variable.to_string(),
            problem: "is not set",
        }),
        Err(std::env::VarError::NotUnicode(_)) => Err(SecretError {
            field: field.to_string(),
            variable: variable.to_string(),
            problem: "is not valid UTF-8",
        }),
    }
}

/// A secret named by a `*_env` field could not be read.
#[derive(Debug, thiserror::Error)]
#[error("`{field}` names environment variable {variable}, which {problem}")]
pub struct SecretError {
    /// The config field, e.g. `nats.password_env`.
    pub field: String,
    /// The variable name.
    pub variable: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

#[cfg(test)]
mod tests;
