//! The `sink` section of the operator's config, parsed into your own `serde`
//! type with an error that names the offending field.
//!
//! Put `#[serde(deny_unknown_fields)]` on the type so a misspelt option is
//! refused at `init` instead of silently ignored.

use std::fmt;

/// Why the `sink` section was refused. Its text names the field
/// (for example ``sink.directory: invalid type: integer `3`, expected a string``) and is
/// what `init` returns to the host, which prints it and refuses to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where: `sink` or `sink.<field path>`.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for String {
    fn from(error: ConfigError) -> String {
        error.to_string()
    }
}

/// Parses the `sink` section (`config`, the JSON document `init` receives)
/// into `T`.
///
/// ```
/// #[derive(Debug, serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Config {
///     directory: String,
///     #[serde(default)]
///     pretty: bool,
/// }
///
/// let config: Config = sinkhost_sdk::parse_config(r#"{"directory": "/data"}"#).unwrap();
/// assert_eq!(config.directory, "/data");
///
/// let err = sinkhost_sdk::parse_config::<Config>(r#"{"directory": "/data", "prety": true}"#).unwrap_err();
/// assert_eq!(err.to_string(), "sink.prety: unknown field `prety`, expected `directory` or `pretty`");
///
/// let err = sinkhost_sdk::parse_config::<Config>(r#"{"directory": 3}"#).unwrap_err();
/// assert_eq!(err.field, "sink.directory");
/// ```
pub fn parse_config<T: serde::de::DeserializeOwned>(config: &str) -> Result<T, ConfigError> {
    let mut deserializer = serde_json::Deserializer::from_str(config);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." || path.is_empty() {
            "sink".to_owned()
        } else {
            format!("sink.{path}")
        };
        ConfigError {
            field,
            problem: without_position(err.inner()),
        }
    })?;
    deserializer.end().map_err(|err| ConfigError {
        field: "sink".to_owned(),
        problem: without_position(&err),
    })?;
    Ok(value)
}

/// serde_json's message without its ` at line L column C` suffix (the
/// config the host passes is generated, so positions mean nothing to the
/// operator).
fn without_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        level: u8,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[allow(dead_code)]
        directory: String,
        #[allow(dead_code)]
        inner: Option<Inner>,
    }

    #[test]
    fn missing_field_is_named() {
        let err = parse_config::<Config>("{}").unwrap_err();
        assert_eq!(err.to_string(), "sink: missing field `directory`");
    }

    #[test]
    fn nested_field_path_is_named() {
        let err =
            parse_config::<Config>(r#"{"directory":"/d","inner":{"level":"x"}}"#).unwrap_err();
        assert_eq!(err.field, "sink.inner.level");
    }

    #[test]
    fn not_json_is_refused() {
        let err = parse_config::<Config>("not json").unwrap_err();
        assert_eq!(err.field, "sink");
        assert!(err.problem.starts_with("expected"), "{err}");
    }

    #[test]
    fn trailing_data_is_refused() {
        assert!(parse_config::<Config>(r#"{"directory":"/d"} x"#).is_err());
    }
}
