//! The `sink` section of the S3 sink.

use serde::Deserialize;

use crate::key::KeyTemplate;

/// Default object key of one message: deterministic (stream, JetStream
/// date, sequence), so a redelivery targets the same key.
pub const DEFAULT_MESSAGE_KEY: &str = "{stream}/{yyyy}/{mm}/{dd}/{stream}-{sequence:020}.json";
/// Default object key of one batch.
pub const DEFAULT_BATCH_KEY: &str =
    "{stream}/{yyyy}/{mm}/{dd}/{stream}-{first_sequence:020}-{last_sequence:020}.jsonl";

/// One object per message or per batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One object per message.
    #[default]
    PerMessage,
    /// One JSON-lines object of records per batch.
    PerBatch,
}

/// What a per-message object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// The JSON record (`sinkhost.message.v1`): payload plus metadata.
    #[default]
    Record,
    /// The payload bytes only.
    Payload,
}

/// Where the message metadata goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Metadata {
    /// `x-amz-meta-*` headers on the object.
    #[default]
    Headers,
    /// A second object `<key>.meta.json` holding the record without payload.
    Sidecar,
    /// Nowhere (the record body already holds it).
    None,
}

/// Path-style (`endpoint/bucket/key`) or virtual-host style
/// (`bucket.endpoint/key`) addressing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Addressing {
    /// `http://endpoint/bucket/key`.
    #[default]
    Path,
    /// `http://bucket.endpoint/key`.
    VirtualHost,
}

/// The S3 sink's configuration (as written).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3SinkConfigFile {
    endpoint: String,
    bucket: String,
    #[serde(default)]
    addressing: Addressing,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    key_template: Option<String>,
    #[serde(default)]
    body: Body,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    gzip: bool,
    #[serde(default = "default_in_flight")]
    max_in_flight: usize,
}

fn default_in_flight() -> usize {
    8
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct S3SinkConfig {
    /// `http(s)://host[:port]` of the S3 service, no path.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// Path or virtual-host style.
    pub addressing: Addressing,
    /// Per message or per batch.
    pub mode: Mode,
    /// Object key template.
    pub key: KeyTemplate,
    /// Per-message object body.
    pub body: Body,
    /// Where metadata goes.
    pub metadata: Metadata,
    /// `Content-Type` of the objects.
    pub content_type: String,
    /// `Content-Encoding: gzip` bodies.
    pub gzip: bool,
    /// Requests in flight at once.
    pub max_in_flight: usize,
}

impl S3SinkConfig {
    /// Parses and checks the `sink` section; errors name the field.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: S3SinkConfigFile =
            serde_json::from_str(text).map_err(|err| format!("sink: {err}"))?;
        let (_, authority, path) = sinkhost_sdk_http::split_url(&file.endpoint)
            .map_err(|err| format!("sink.endpoint: {err}"))?;
        if path != "/" || authority.contains('@') {
            return Err(
                "sink.endpoint: write only scheme://host[:port], e.g. http://127.0.0.1:8333".into(),
            );
        }
        check_bucket(&file.bucket)?;
        let template = file.key_template.clone().unwrap_or_else(|| {
            match file.mode {
                Mode::PerMessage => DEFAULT_MESSAGE_KEY,
                Mode::PerBatch => DEFAULT_BATCH_KEY,
            }
            .to_string()
        });
        let key = KeyTemplate::parse(&template, file.mode)
            .map_err(|err| format!("sink.key_template: {err}"))?;
        if file.max_in_flight == 0 || file.max_in_flight > 256 {
            return Err("sink.max_in_flight: must be between 1 and 256".into());
        }
        let content_type = file.content_type.clone().unwrap_or_else(|| {
            match (file.mode, file.body) {
                (Mode::PerBatch, _) => "application/x-ndjson",
                (Mode::PerMessage, Body::Record) => "application/json",
                (Mode::PerMessage, Body::Payload) => "application/octet-stream",
            }
            .to_string()
        });
        Ok(Self {
            endpoint: file.endpoint.trim_end_matches('/').to_string(),
            bucket: file.bucket,
            addressing: file.addressing,
            mode: file.mode,
            key,
            body: file.body,
            metadata: file.metadata,
            content_type,
            gzip: file.gzip,
            max_in_flight: file.max_in_flight,
        })
    }
}

/// S3 bucket naming rules (3-63 characters, lower case, digits, `.` and
/// `-`, starting and ending with a letter or digit).
fn check_bucket(bucket: &str) -> Result<(), String> {
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "sink.bucket: `{bucket}` is not a valid S3 bucket name"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_deterministic_per_message_records() {
        let c = S3SinkConfig::parse(r#"{"endpoint": "http://127.0.0.1:8333", "bucket": "events"}"#)
            .unwrap();
        assert_eq!(c.mode, Mode::PerMessage);
        assert_eq!(c.body, Body::Record);
        assert_eq!(c.metadata, Metadata::Headers);
        assert_eq!(c.addressing, Addressing::Path);
        assert_eq!(c.content_type, "application/json");
        assert_eq!(c.key.source(), DEFAULT_MESSAGE_KEY);
    }

    #[test]
    fn errors_name_the_field() {
        for (text, field) in [
            (
                r#"{"endpoint": "nope", "bucket": "events"}"#,
                "sink.endpoint",
            ),
            (
                r#"{"endpoint": "http://h/path", "bucket": "events"}"#,
                "sink.endpoint",
            ),
            (r#"{"endpoint": "http://h", "bucket": "Ev"}"#, "sink.bucket"),
            (
                r#"{"endpoint": "http://h", "bucket": "events", "key_template": "{nope}"}"#,
                "sink.key_template",
            ),
            (
                r#"{"endpoint": "http://h", "bucket": "events", "key_template": "{stream}/fixed"}"#,
                "sink.key_template",
            ),
            (
                r#"{"endpoint": "http://h", "bucket": "events", "mode": "per_batch", "key_template": "{sequence}"}"#,
                "sink.key_template",
            ),
            (
                r#"{"endpoint": "http://h", "bucket": "events", "access_key": "x"}"#,
                "unknown field",
            ),
        ] {
            let err = S3SinkConfig::parse(text).unwrap_err();
            assert!(err.contains(field), "{text}: {err}");
        }
    }
}
