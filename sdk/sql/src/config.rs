//! The `sink` section of a database sink.
//!
//! ```json
//! "sink": {
//!   "connection": "events",
//!   "table": "nats_events",
//!   "key": "stream_sequence",
//!   "on_conflict": "skip",
//!   "payload_mode": "json",
//!   "columns": {"payload": "body", "custody_json": null},
//!   "payload_columns": {"order_id": "order.id"}
//! }
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

/// The standard columns, in the order they are written, with what each
/// holds. Every one can be renamed or left out through `columns`.
pub const STANDARD_COLUMNS: &[(&str, &str)] = &[
    ("stream_name", "JetStream stream"),
    ("stream_sequence", "position in the stream"),
    ("subject", "NATS subject"),
    ("message_id", "Nats-Msg-Id (or Nats-Message-Id, message-id)"),
    ("priority", "message priority"),
    ("classification", "message classification"),
    ("labels", "labels joined with ';'"),
    ("payload", "the payload, per payload_mode"),
    ("headers_json", "NATS headers as a JSON object of arrays"),
    (
        "metadata_json",
        "consumer, delivery and metadata facts as JSON",
    ),
    (
        "custody_json",
        "custody hashes as JSON (null when custody is off)",
    ),
    ("jetstream_timestamp", "when JetStream stored the message"),
    ("received_at", "when the host received it"),
    ("stored_at", "when the sink wrote the row"),
];

/// Which columns identify a message, so a redelivery never makes a second row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Key {
    /// `(stream_name, stream_sequence)`: unique per stream, always present.
    StreamSequence,
    /// `message_id`: the producer's id; a message without one is refused.
    MessageId,
}

/// What to do when the key is already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// Keep the stored row (a redelivery is a no-op).
    Skip,
    /// Overwrite the stored row's other columns with the new values.
    Update,
}

/// How the payload column is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadMode {
    /// A JSON value: JSON payloads as they are, other payloads wrapped as
    /// `{"encoding": "text"|"base64", "data": ...}`. For JSON columns.
    Json,
    /// UTF-8 text; a payload that is not UTF-8 is a permanent failure.
    Text,
    /// The bytes as they are. For `bytea`/`BLOB`/`RAW` columns.
    Bytes,
}

/// The parsed `sink` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Name of the `sql` grant to use.
    pub connection: String,
    /// Table to write; `schema.table` allowed. Must be granted.
    #[serde(default = "default_table")]
    pub table: String,
    /// Idempotency key.
    #[serde(default = "default_key")]
    pub key: Key,
    /// Policy when the key exists.
    #[serde(default = "default_on_conflict")]
    pub on_conflict: OnConflict,
    /// Payload column content.
    #[serde(default = "default_payload_mode")]
    pub payload_mode: PayloadMode,
    /// Renames (`"payload": "body"`) or leaves out (`"custody_json": null`)
    /// standard columns.
    #[serde(default)]
    pub columns: BTreeMap<String, Option<String>>,
    /// Extra columns filled from the JSON payload: column name to a dotted
    /// path (`"order.id"`). A missing field is NULL.
    #[serde(default)]
    pub payload_columns: BTreeMap<String, String>,
}

fn default_table() -> String {
    String::from("nats_events")
}

fn default_key() -> Key {
    Key::StreamSequence
}

fn default_on_conflict() -> OnConflict {
    OnConflict::Skip
}

fn default_payload_mode() -> PayloadMode {
    PayloadMode::Json
}

/// One column the sink writes: its name in the table and where its value
/// comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Name in the table.
    pub name: String,
    /// Where the value comes from.
    pub source: Source,
}

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A standard column (its standard name).
    Standard(&'static str),
    /// A dotted path into the JSON payload.
    PayloadField(Vec<String>),
}

impl SinkConfig {
    /// Parses and checks the section; errors name the field.
    pub fn parse(json: &str) -> Result<Self, String> {
        let config: SinkConfig =
            serde_json::from_str(json).map_err(|err| format!("sink: {err}"))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.connection.trim().is_empty() {
            return Err("sink.connection: must name a grant in plugin.grants.sql".into());
        }
        check_table_name(&self.table).map_err(|message| format!("sink.table: {message}"))?;
        for (standard, renamed) in &self.columns {
            if !STANDARD_COLUMNS.iter().any(|(name, _)| name == standard) {
                return Err(format!(
                    "sink.columns: `{standard}` is not a standard column (one of: {})",
                    STANDARD_COLUMNS
                        .iter()
                        .map(|(name, _)| *name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if let Some(renamed) = renamed {
                check_identifier(renamed)
                    .map_err(|message| format!("sink.columns.{standard}: {message}"))?;
            }
        }
        for (column, path) in &self.payload_columns {
            check_identifier(column)
                .map_err(|message| format!("sink.payload_columns: `{column}` {message}"))?;
            if path.split('.').any(|part| part.is_empty()) {
                return Err(format!(
                    "sink.payload_columns.{column}: `{path}` is not a dotted path like `order.id`"
                ));
            }
        }
        for key_column in self.key_standard_columns() {
            if self.columns.get(*key_column) == Some(&None) {
                return Err(format!(
                    "sink.columns.{key_column}: the key column cannot be left out"
                ));
            }
        }
        let columns = self.columns_in_order();
        let mut seen = std::collections::BTreeSet::new();
        for column in &columns {
            if !seen.insert(column.name.to_ascii_lowercase()) {
                return Err(format!("sink: column `{}` is written twice", column.name));
            }
        }
        Ok(())
    }

    /// The standard columns that form the key.
    pub fn key_standard_columns(&self) -> &'static [&'static str] {
        match self.key {
            Key::StreamSequence => &["stream_name", "stream_sequence"],
            Key::MessageId => &["message_id"],
        }
    }

    /// The key columns' names in the table.
    pub fn key_columns(&self) -> Vec<String> {
        self.key_standard_columns()
            .iter()
            .map(|standard| self.column_name(standard))
            .collect()
    }

    fn column_name(&self, standard: &str) -> String {
        match self.columns.get(standard) {
            Some(Some(renamed)) => renamed.clone(),
            _ => standard.to_string(),
        }
    }

    /// Every column written, in order: standard ones (renamed, minus those
    /// left out), then payload-field columns.
    pub fn columns_in_order(&self) -> Vec<Column> {
        let mut columns: Vec<Column> = STANDARD_COLUMNS
            .iter()
            .filter(|(standard, _)| self.columns.get(*standard) != Some(&None))
            .map(|(standard, _)| Column {
                name: self.column_name(standard),
                source: Source::Standard(standard),
            })
            .collect();
        columns.extend(self.payload_columns.iter().map(|(name, path)| Column {
            name: name.clone(),
            source: Source::PayloadField(path.split('.').map(String::from).collect()),
        }));
        columns
    }
}

/// A plain SQL identifier: letters, digits, `_` and `$`, not starting with
/// a digit. Quoting is never needed, so names fold as the database folds
/// unquoted names, and nothing from the config is ever spliced into SQL
/// unchecked.
pub fn check_identifier(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        || name.len() > 128
    {
        return Err(format!("`{name}` is not a plain identifier (letters, digits, _ and $; not starting with a digit)"));
    }
    Ok(())
}

fn check_table_name(table: &str) -> Result<(), String> {
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() > 2 {
        return Err(format!("`{table}` has more than schema.table"));
    }
    parts.iter().try_for_each(|part| check_identifier(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_write_every_standard_column() {
        let config = SinkConfig::parse(r#"{"connection": "events"}"#).expect("config");
        assert_eq!(config.table, "nats_events");
        assert_eq!(config.columns_in_order().len(), STANDARD_COLUMNS.len());
        assert_eq!(config.key_columns(), ["stream_name", "stream_sequence"]);
    }

    #[test]
    fn renames_omissions_and_payload_fields() {
        let config = SinkConfig::parse(
            r#"{"connection": "e", "key": "message_id", "columns": {"payload": "body", "custody_json": null},
                "payload_columns": {"order_id": "order.id"}}"#,
        )
        .expect("config");
        let names: Vec<String> = config
            .columns_in_order()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert!(
            names.contains(&"body".to_string()) && !names.contains(&"custody_json".to_string())
        );
        assert_eq!(names.last().map(String::as_str), Some("order_id"));
        assert_eq!(config.key_columns(), ["message_id"]);
    }

    #[test]
    fn mistakes_name_the_field() {
        let error = |json: &str| SinkConfig::parse(json).expect_err(json);
        assert!(error(r#"{"connection": ""}"#).contains("sink.connection"));
        assert!(error(r#"{"connection": "e", "table": "x; drop table y"}"#).contains("sink.table"));
        assert!(error(r#"{"connection": "e", "columns": {"nope": "x"}}"#)
            .contains("not a standard column"));
        assert!(
            error(r#"{"connection": "e", "columns": {"payload": "a b"}}"#)
                .contains("plain identifier")
        );
        assert!(
            error(r#"{"connection": "e", "columns": {"stream_sequence": null}}"#)
                .contains("key column")
        );
        assert!(
            error(r#"{"connection": "e", "payload_columns": {"subject": "a"}}"#).contains("twice")
        );
        assert!(
            error(r#"{"connection": "e", "payload_columns": {"x": "a..b"}}"#)
                .contains("dotted path")
        );
        assert!(error(r#"{"connection": "e", "mode": "x"}"#).contains("unknown field"));
    }
}
