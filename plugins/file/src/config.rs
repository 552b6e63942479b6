//! The file sink's configuration: the `sink` section of the operator's
//! config, passed as JSON to `init`.
//!
//! Unknown keys are rejected (serde `deny_unknown_fields`) and every error
//! names the offending field as `sink.<field>`. Each field is first captured
//! as raw JSON and then checked on its own, so a wrong type reads
//! `sink.fsync must be true or false, got "yes"` rather than a bare serde
//! message without the field.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::payload::PayloadMode;

/// How messages are laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One JSON file per message (the reference's `one_file_per_message`).
    PerMessage,
    /// One JSON-lines file per batch under `segments/`.
    Segment,
}

/// How a per-message file reaches its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Temporary file, then hard link (or rename for `overwrite`) to the
    /// final name: a reader sees no file or a complete one (the reference's
    /// behaviour).
    Atomic,
    /// The final name is created exclusively and written in place: one path
    /// operation instead of three, but a reader can see a file while it is
    /// being written (a crash can leave it torn until its redelivery repairs
    /// it).
    Direct,
}

/// What happens when a message's destination already holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicatePolicy {
    /// Already stored: success, the file is left untouched.
    SkipExisting,
    /// Replace the file (per-message layout only).
    Overwrite,
    /// A permanent failure of that message.
    Fail,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSinkConfig {
    /// Guest path of the output directory, e.g. `/out`.
    pub directory: String,
    pub layout: Layout,
    pub duplicate_policy: DuplicatePolicy,
    pub payload_mode: PayloadMode,
    pub fsync: bool,
    pub partition_by_subject: bool,
    pub extension: String,
    pub pretty: bool,
    pub create_directory: bool,
    /// Per-message layout: how a file reaches its name.
    pub write_mode: WriteMode,
    /// Keys given explicitly that the chosen layout ignores (for a warning).
    pub ignored: Vec<&'static str>,
}

impl Default for FileSinkConfig {
    fn default() -> Self {
        FileSinkConfig {
            directory: String::new(),
            layout: Layout::PerMessage,
            duplicate_policy: DuplicatePolicy::SkipExisting,
            payload_mode: PayloadMode::JsonOrEnvelope,
            fsync: true,
            partition_by_subject: true,
            extension: ".json".to_owned(),
            pretty: false,
            create_directory: true,
            write_mode: WriteMode::Atomic,
            ignored: Vec::new(),
        }
    }
}

/// Longest accepted `extension`, in bytes (the reference has no limit; a
/// longer one would only make every file name fail with ENAMETOOLONG).
pub const MAX_EXTENSION_LEN: usize = 32;

/// Keeps an explicitly given `null` distinct from a missing key.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default, rename = "type", deserialize_with = "present")]
    kind: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    directory: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    layout: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    duplicate_policy: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    payload_mode: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    fsync: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    partition_by_subject: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    extension: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pretty: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    create_directory: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    write_mode: Option<Value>,
    // Options of the reference file sink, accepted only with the value that
    // describes what this sink does, so a reference config that spells out
    // its defaults keeps working.
    #[serde(default, deserialize_with = "present")]
    mode: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    filename_strategy: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    compression: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    compression_level: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    include_metadata: Option<Value>,
}

fn describe(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 60 {
        let mut cut = 57;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &text[..cut])
    } else {
        text
    }
}

fn want_bool(field: &str, value: Option<Value>, default: bool) -> Result<bool, String> {
    match value {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(b),
        Some(other) => Err(format!(
            "sink.{field} must be true or false, got {}",
            describe(&other)
        )),
    }
}

fn want_string(field: &str, value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!(
            "sink.{field} must be a string, got {}",
            describe(other)
        )),
    }
}

/// Matches a string field against its allowed values.
fn want_choice<T: Copy>(
    field: &str,
    value: Option<Value>,
    default: T,
    choices: &[(&str, T)],
) -> Result<T, String> {
    let Some(value) = value else {
        return Ok(default);
    };
    let allowed = || {
        choices
            .iter()
            .map(|(name, _)| format!("\"{name}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = match &value {
        Value::String(s) => s.as_str(),
        other => {
            return Err(format!(
                "sink.{field} must be one of {}, got {}",
                allowed(),
                describe(other)
            ))
        }
    };
    choices
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            format!(
                "sink.{field} must be one of {}, got {}",
                allowed(),
                describe(&value)
            )
        })
}

/// Control characters as the reference defines them (U+0000..U+001F, U+007F).
pub fn has_control_chars(text: &str) -> bool {
    text.chars().any(|c| (c as u32) <= 31 || c as u32 == 127)
}

fn validate_extension(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("sink.extension must not be empty".into());
    }
    if value != value.trim() || has_control_chars(value) {
        return Err("sink.extension must not contain padding or control characters".into());
    }
    if !value.starts_with('.') {
        return Err("sink.extension must start with '.'".into());
    }
    if value.contains('/') || value.contains('\\') {
        return Err("sink.extension must not contain path separators".into());
    }
    if value == "." || value == ".." {
        return Err("sink.extension must include a suffix after '.'".into());
    }
    if value.len() > MAX_EXTENSION_LEN {
        return Err(format!(
            "sink.extension must be at most {MAX_EXTENSION_LEN} bytes"
        ));
    }
    Ok(())
}

/// Accepts a reference-only option only with its no-op value.
fn reference_only(
    field: &str,
    value: Option<Value>,
    accepted: &Value,
    what: &str,
) -> Result<(), String> {
    match value {
        None => Ok(()),
        Some(v) if &v == accepted => Ok(()),
        Some(v) => Err(format!(
            "sink.{field} = {} is not supported by the sinkhost file sink ({what}); \
             remove the key or set it to {accepted}",
            describe(&v)
        )),
    }
}

impl FileSinkConfig {
    /// Parses and validates the `sink` section.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("sink: invalid JSON: {e}"))?;
        if !value.is_object() {
            return Err(format!(
                "sink must be a JSON object, got {}",
                describe(&value)
            ));
        }
        let raw: RawConfig = serde_json::from_value(value).map_err(|e| format!("sink: {e}"))?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawConfig) -> Result<Self, String> {
        let defaults = FileSinkConfig::default();
        if let Some(kind) = &raw.kind {
            if kind.as_str() != Some("file") {
                return Err(format!(
                    "sink.type must be \"file\", got {}",
                    describe(kind)
                ));
            }
        }
        reference_only(
            "mode",
            raw.mode,
            &Value::from("one_file_per_message"),
            "use sink.layout",
        )?;
        reference_only(
            "filename_strategy",
            raw.filename_strategy,
            &Value::from("stream_sequence"),
            "files are always named by stream and stream sequence",
        )?;
        reference_only(
            "compression",
            raw.compression,
            &Value::from("none"),
            "files are not compressed",
        )?;
        if let Some(level) = raw.compression_level {
            if !level.as_u64().is_some_and(|l| (1..=9).contains(&l)) {
                return Err(format!(
                    "sink.compression_level must be an integer from 1 to 9, got {}",
                    describe(&level)
                ));
            }
        }
        reference_only(
            "include_metadata",
            raw.include_metadata,
            &Value::Bool(true),
            "records always include metadata",
        )?;

        let directory = match &raw.directory {
            None => return Err("sink.directory is required (the guest path of the output directory, e.g. \"/out\")".into()),
            Some(v) => want_string("directory", v)?,
        };
        if directory.trim().is_empty() {
            return Err("sink.directory must not be empty".into());
        }
        if has_control_chars(&directory) {
            return Err("sink.directory must not contain control characters".into());
        }

        let layout = want_choice(
            "layout",
            raw.layout,
            defaults.layout,
            &[
                ("per_message", Layout::PerMessage),
                ("segment", Layout::Segment),
            ],
        )?;
        let duplicate_policy = want_choice(
            "duplicate_policy",
            raw.duplicate_policy,
            defaults.duplicate_policy,
            &[
                ("skip_existing", DuplicatePolicy::SkipExisting),
                ("overwrite", DuplicatePolicy::Overwrite),
                ("fail", DuplicatePolicy::Fail),
            ],
        )?;
        let payload_mode = want_choice(
            "payload_mode",
            raw.payload_mode,
            defaults.payload_mode,
            &[
                ("json_or_envelope", PayloadMode::JsonOrEnvelope),
                ("text_envelope", PayloadMode::TextEnvelope),
                ("base64", PayloadMode::Base64),
                ("bytes_envelope", PayloadMode::Base64),
                ("json_only", PayloadMode::JsonOnly),
            ],
        )?;
        let write_mode = want_choice(
            "write_mode",
            raw.write_mode.clone(),
            defaults.write_mode,
            &[("atomic", WriteMode::Atomic), ("direct", WriteMode::Direct)],
        )?;
        let mut ignored = Vec::new();
        if layout == Layout::Segment {
            if raw.write_mode.is_some() {
                ignored.push("write_mode");
            }
            if raw.partition_by_subject.is_some() {
                ignored.push("partition_by_subject");
            }
            if raw.extension.is_some() {
                ignored.push("extension");
            }
        }
        let fsync = want_bool("fsync", raw.fsync, defaults.fsync)?;
        let partition_by_subject = want_bool(
            "partition_by_subject",
            raw.partition_by_subject,
            defaults.partition_by_subject,
        )?;
        let pretty = want_bool("pretty", raw.pretty, defaults.pretty)?;
        let create_directory = want_bool(
            "create_directory",
            raw.create_directory,
            defaults.create_directory,
        )?;
        let extension = match &raw.extension {
            None => defaults.extension,
            Some(v) => want_string("extension", v)?,
        };
        validate_extension(&extension)?;

        if layout == Layout::Segment {
            if duplicate_policy == DuplicatePolicy::Overwrite {
                return Err("sink.duplicate_policy \"overwrite\" is not supported with sink.layout \"segment\" \
                     (segments are immutable; use \"skip_existing\" or \"fail\")"
                    .into());
            }
            if pretty {
                return Err(
                    "sink.pretty must be false with sink.layout \"segment\" (one record per line)"
                        .into(),
                );
            }
        }

        Ok(FileSinkConfig {
            directory,
            layout,
            duplicate_policy,
            payload_mode,
            fsync,
            partition_by_subject,
            extension,
            pretty,
            create_directory,
            write_mode,
            ignored,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        FileSinkConfig::from_json(json).expect_err(json)
    }

    #[test]
    fn write_mode_choices() {
        let direct =
            FileSinkConfig::from_json(r#"{"directory": "/out", "write_mode": "direct"}"#).unwrap();
        assert_eq!(direct.write_mode, WriteMode::Direct);
        assert_eq!(
            FileSinkConfig::from_json(r#"{"directory": "/out"}"#)
                .unwrap()
                .write_mode,
            WriteMode::Atomic
        );
        assert!(err(r#"{"directory": "/out", "write_mode": "fast"}"#)
            .contains("sink.write_mode must be one of \"atomic\", \"direct\""));
        let segment = FileSinkConfig::from_json(
            r#"{"directory": "/out", "layout": "segment", "write_mode": "direct"}"#,
        )
        .unwrap();
        assert_eq!(segment.ignored, vec!["write_mode"]);
    }

    #[test]
    fn defaults() {
        let c = FileSinkConfig::from_json(r#"{"directory": "/out"}"#).unwrap();
        assert_eq!(
            c,
            FileSinkConfig {
                directory: "/out".into(),
                ..FileSinkConfig::default()
            }
        );
        assert_eq!(c.layout, Layout::PerMessage);
        assert_eq!(c.duplicate_policy, DuplicatePolicy::SkipExisting);
        assert_eq!(c.payload_mode, PayloadMode::JsonOrEnvelope);
        assert!(c.fsync && c.partition_by_subject && c.create_directory && !c.pretty);
        assert_eq!(c.extension, ".json");
    }

    #[test]
    fn all_fields() {
        let c = FileSinkConfig::from_json(
            r#"{"type":"file","directory":"/data","layout":"segment","duplicate_policy":"fail",
                "payload_mode":"bytes_envelope","fsync":false,"create_directory":false}"#,
        )
        .unwrap();
        assert_eq!(c.layout, Layout::Segment);
        assert_eq!(c.duplicate_policy, DuplicatePolicy::Fail);
        assert_eq!(c.payload_mode, PayloadMode::Base64);
        assert!(!c.fsync && !c.create_directory);
        let c = FileSinkConfig::from_json(
            r#"{"directory":"/d","payload_mode":"base64","extension":".ndjson","pretty":true,
                "partition_by_subject":false,"duplicate_policy":"overwrite","mode":"one_file_per_message",
                "filename_strategy":"stream_sequence","compression":"none","compression_level":6,
                "include_metadata":true}"#,
        )
        .unwrap();
        assert_eq!(c.payload_mode, PayloadMode::Base64);
        assert_eq!(c.extension, ".ndjson");
        assert!(c.pretty && !c.partition_by_subject);
        assert_eq!(c.duplicate_policy, DuplicatePolicy::Overwrite);
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err(r#"{"directory":"/o","fsynk":true}"#).contains("unknown field `fsynk`"));
        assert!(err(r#"{}"#).contains("sink.directory is required"));
        assert!(err(r#"{"directory":"  "}"#).contains("sink.directory must not be empty"));
        assert!(err(r#"{"directory":5}"#).contains("sink.directory must be a string"));
        assert!(err(r#"{"directory":"/o","fsync":"yes"}"#)
            .contains("sink.fsync must be true or false, got \"yes\""));
        assert!(err(r#"{"directory":"/o","fsync":null}"#).contains("sink.fsync"));
        assert!(err(r#"{"directory":"/o","layout":"daily"}"#)
            .contains("sink.layout must be one of \"per_message\", \"segment\""));
        assert!(err(r#"{"directory":"/o","duplicate_policy":1}"#).contains("sink.duplicate_policy"));
        assert!(err(r#"{"directory":"/o","payload_mode":"xml"}"#).contains("sink.payload_mode"));
        assert!(err(r#"{"directory":"/o","type":"s3"}"#).contains("sink.type"));
        assert!(err(r#"{"directory":"/o","compression":"gzip"}"#).contains("sink.compression"));
        assert!(
            err(r#"{"directory":"/o","compression_level":10}"#).contains("sink.compression_level")
        );
        assert!(
            err(r#"{"directory":"/o","filename_strategy":"message_id"}"#)
                .contains("sink.filename_strategy")
        );
        assert!(err(r#"{"directory":"/o","mode":"append"}"#).contains("sink.mode"));
        assert!(
            err(r#"{"directory":"/o","include_metadata":false}"#).contains("sink.include_metadata")
        );
        assert!(err(r#"[1]"#).contains("sink must be a JSON object"));
        assert!(err(r#"{"directory":"/o""#).contains("invalid JSON"));
        assert!(
            err(r#"{"directory":"/o","layout":"segment","duplicate_policy":"overwrite"}"#)
                .contains("overwrite")
        );
        assert!(
            err(r#"{"directory":"/o","layout":"segment","pretty":true}"#).contains("sink.pretty")
        );
    }

    #[test]
    fn extension_rules() {
        for (ext, msg) in [
            ("", "must not be empty"),
            ("json", "must start with '.'"),
            (" .json", "padding"),
            (".js\non", "control"),
            (".a/b", "separators"),
            (".a\\b", "separators"),
            (".", "suffix"),
            ("..", "suffix"),
            (".aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "at most"),
        ] {
            let json = serde_json::json!({"directory": "/o", "extension": ext}).to_string();
            let e = err(&json);
            assert!(
                e.starts_with("sink.extension") && e.contains(msg),
                "{ext:?}: {e}"
            );
        }
        assert!(FileSinkConfig::from_json(r#"{"directory":"/o","extension":".json.txt"}"#).is_ok());
    }

    #[test]
    fn segment_notes_ignored_keys() {
        let c = FileSinkConfig::from_json(
            r#"{"directory":"/o","layout":"segment","extension":".x","partition_by_subject":true}"#,
        )
        .unwrap();
        assert_eq!(c.ignored, vec!["partition_by_subject", "extension"]);
    }
}
