//! The `logging` section.

use serde::{Deserialize, Serialize};

/// Log level and output format. Payloads and secrets are never logged,
/// whatever the level.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// `TRACE`, `DEBUG`, `INFO`, `WARNING`/`WARN` or `ERROR` (case-insensitive),
    /// or a `tracing` filter such as `sinkhost=debug,info`. `RUST_LOG`
    /// overrides it.
    #[serde(default = "default_level")]
    pub level: String,
    /// `text` (default) or `json` lines.
    #[serde(default)]
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

fn default_level() -> String {
    "INFO".to_string()
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: default_level(),
            format: LogFormat::Text,
        }
    }
}

impl LoggingConfig {
    /// The level as a `tracing` filter directive.
    pub fn filter_directive(&self) -> String {
        match self.level.to_ascii_uppercase().as_str() {
            "TRACE" => "trace".into(),
            "DEBUG" => "debug".into(),
            "INFO" => "info".into(),
            "WARN" | "WARNING" => "warn".into(),
            "ERROR" | "CRITICAL" => "error".into(),
            _ => self.level.clone(),
        }
    }
}
