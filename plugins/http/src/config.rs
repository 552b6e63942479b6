//! The `sink` section of the HTTP sink.

use std::collections::BTreeMap;

use serde::Deserialize;

/// How messages map to requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One request per message.
    #[default]
    PerMessage,
    /// One request per batch: one JSON record per line.
    JsonLines,
    /// One request per batch: a JSON array of records.
    JsonArray,
}

/// What a per-message request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// The payload bytes as received (after the host's encryption, if any).
    #[default]
    Payload,
    /// The JSON record: payload plus subject, stream, sequence, headers,
    /// metadata and custody.
    Record,
}

/// The HTTP sink's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// The one URL every request goes to; its origin must be granted.
    pub url: String,
    /// `POST` (default) or `PUT`.
    #[serde(default = "default_method")]
    pub method: String,
    /// `per_message` (default), `json_lines` or `json_array`.
    #[serde(default)]
    pub mode: Mode,
    /// Per-message body: `payload` (default) or `record`. Batch modes always
    /// send records.
    #[serde(default)]
    pub body: Body,
    /// `Content-Type`; default `application/json` for records and batches,
    /// `application/octet-stream` for payloads.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Fixed extra headers (never secrets: credentials belong in the grant).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Send the message's subject, stream, sequence, id and metadata as
    /// `X-Sinkhost-*` headers (default true).
    #[serde(default = "yes")]
    pub metadata_headers: bool,
    /// Compress bodies with gzip (`Content-Encoding: gzip`).
    #[serde(default)]
    pub gzip: bool,
    /// Requests in flight at once in `per_message` mode (default 8).
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Longest a `Retry-After` is honoured inside one call before the
    /// failure goes back to the host (default 5000 ms; keep it well under
    /// `plugin.limits.call_timeout_ms`).
    #[serde(default = "default_retry_after_max_ms")]
    pub retry_after_max_ms: u64,
}

fn default_method() -> String {
    "POST".into()
}
fn yes() -> bool {
    true
}
fn default_in_flight() -> usize {
    8
}
fn default_retry_after_max_ms() -> u64 {
    5_000
}

/// Headers the sink sets itself; the config may not override them.
const RESERVED_HEADERS: [&str; 5] = [
    "idempotency-key",
    "content-type",
    "content-encoding",
    "content-length",
    "host",
];
/// Headers that carry credentials: they belong in the host's grant.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

impl HttpSinkConfig {
    /// Parses and checks the `sink` section; the error names the field.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = serde_json::from_str(text).map_err(|err| format!("sink: {err}"))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        sinkhost_sdk_http::split_url(&self.url).map_err(|err| format!("sink.url: {err}"))?;
        if !matches!(self.method.as_str(), "POST" | "PUT") {
            return Err(format!("sink.method: `{}` is not POST or PUT", self.method));
        }
        for name in self.headers.keys() {
            let lower = name.to_ascii_lowercase();
            if CREDENTIAL_HEADERS.contains(&lower.as_str()) {
                return Err(format!(
                    "sink.headers.{name}: credentials never go in the sink config; use plugin.grants.http[].auth"
                ));
            }
            if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-sinkhost-") {
                return Err(format!("sink.headers.{name}: set by the sink itself"));
            }
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            {
                return Err(format!("sink.headers: `{name}` is not a valid header name"));
            }
        }
        if self.max_in_flight == 0 || self.max_in_flight > 256 {
            return Err("sink.max_in_flight: must be between 1 and 256".into());
        }
        Ok(())
    }

    /// The `Content-Type` of the requests.
    pub fn content_type(&self) -> &str {
        match (&self.content_type, self.mode, self.body) {
            (Some(value), _, _) => value,
            (None, Mode::JsonLines, _) => "application/x-ndjson",
            (None, Mode::PerMessage, Body::Payload) => "application/octet-stream",
            (None, _, _) => "application/json",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let config = HttpSinkConfig::parse(r#"{"url": "http://127.0.0.1:8080/in"}"#).unwrap();
        assert_eq!(config.method, "POST");
        assert_eq!(config.mode, Mode::PerMessage);
        assert_eq!(config.body, Body::Payload);
        assert!(config.metadata_headers);
        assert!(!config.gzip);
        assert_eq!(config.content_type(), "application/octet-stream");
    }

    #[test]
    fn errors_name_the_field() {
        for (text, field) in [
            (r#"{"url": "nope"}"#, "sink.url"),
            (r#"{"url": "http://h/", "method": "GET"}"#, "sink.method"),
            (
                r#"{"url": "http://h/", "headers": {"Authorization": "Bearer x"}}"#,
                "sink.headers.Authorization",
            ),
            (
                r#"{"url": "http://h/", "headers": {"Idempotency-Key": "x"}}"#,
                "sink.headers.Idempotency-Key",
            ),
            (
                r#"{"url": "http://h/", "max_in_flight": 0}"#,
                "sink.max_in_flight",
            ),
            (r#"{"url": "http://h/", "unknown": 1}"#, "unknown field"),
            (r#"{"url": "http://h/", "mode": "xml"}"#, "unknown variant"),
        ] {
            let err = HttpSinkConfig::parse(text).unwrap_err();
            assert!(err.contains(field), "{text}: {err}");
        }
    }
}
