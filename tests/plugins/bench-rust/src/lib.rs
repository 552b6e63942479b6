//! The per-language benchmark sink, Rust edition (`cargo bench -p
//! sinkhost-e2e --bench languages`, docs/benchmarks.md). The same sink
//! exists in Python (`tests/plugins/bench-python/app.py`) and JavaScript
//! (`tests/plugins/bench-js/sink.js`); the three behave identically, so the
//! bench compares the languages and their runtimes, not the sinks.
//!
//! Config (the `sink` section):
//!
//! - `behaviour`: `"discard"` (report every message stored, touch nothing)
//!   or `"files"` (one JSON record per message);
//! - `directory` (for `files`): guest path of a granted writable directory;
//! - `fsync` (for `files`, default false): fsync each record before the
//!   rename.
//!
//! A record is `<directory>/<stream>-<stream_sequence>.json`, written to a
//! temporary name and renamed over the final one: `id`, `stream`,
//! `stream_sequence`, `subject`, `message_id`, `timestamp_ns` (a string),
//! `headers` (an object; a repeated name maps to the list of its values),
//! `payload_encoding` (`json`, `text` or `base64`, whichever fits first) and
//! `payload`.

use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use sinkhost_sdk::{BatchReport, Envelope, Sink, SinkError};

/// What the sink does with each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Report it stored; touch nothing.
    Discard,
    /// Write one JSON record file.
    Files,
}

/// The `sink` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What to do with each message.
    pub behaviour: Behaviour,
    /// Where records go (`files`).
    #[serde(default)]
    pub directory: Option<PathBuf>,
    /// fsync each record (`files`).
    #[serde(default)]
    pub fsync: bool,
}

/// The benchmark sink.
#[derive(Debug)]
pub struct BenchSink {
    behaviour: Behaviour,
    directory: PathBuf,
    fsync: bool,
}

impl Sink for BenchSink {
    fn init(config: &str) -> Result<Self, String> {
        let config: Config = sinkhost_sdk::parse_config(config)?;
        let directory = match (config.behaviour, config.directory) {
            (Behaviour::Files, None) => {
                return Err("sink.directory: required when sink.behaviour is \"files\"".into())
            }
            (_, directory) => directory.unwrap_or_default(),
        };
        Ok(BenchSink {
            behaviour: config.behaviour,
            directory,
            fsync: config.fsync,
        })
    }

    fn write_batch(&mut self, batch: &[Envelope]) -> Result<BatchReport, SinkError> {
        Ok(match self.behaviour {
            Behaviour::Discard => BatchReport::all_stored(),
            Behaviour::Files => BatchReport::each(batch, |envelope| self.store(envelope)),
        })
    }
}

impl BenchSink {
    /// Writes one record: a temporary file, then a rename over the final name.
    fn store(&self, envelope: &Envelope) -> Result<(), SinkError> {
        let key = envelope.idempotency_key();
        let mut bytes = serde_json::to_vec(&record(envelope))
            .map_err(|err| SinkError::permanent(format!("record not serialisable: {err}")))?;
        bytes.push(b'\n');
        let temporary = self.directory.join(format!(".{key}.tmp"));
        let io = |err: std::io::Error| SinkError::transient(format!("writing {key}: {err}"));
        let mut file = File::create(&temporary).map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        if self.fsync {
            file.sync_data().map_err(io)?;
        }
        drop(file);
        std::fs::rename(&temporary, self.directory.join(format!("{key}.json"))).map_err(io)
    }
}

/// The JSON record of one message (see the crate documentation).
pub fn record(envelope: &Envelope) -> Value {
    let (encoding, payload) = match std::str::from_utf8(envelope.payload_bytes()) {
        Err(_) => (
            "base64",
            Value::String(sinkhost_sdk::payload::base64(envelope.payload_bytes())),
        ),
        Ok(text) => match serde_json::from_str::<Value>(text) {
            Ok(value) => ("json", value),
            Err(_) => ("text", Value::String(text.to_owned())),
        },
    };
    json!({
        "id": envelope.idempotency_key(),
        "stream": envelope.stream,
        "stream_sequence": envelope.stream_sequence,
        "subject": envelope.subject,
        "message_id": envelope.message_id,
        "timestamp_ns": envelope.timestamp_ns.to_string(),
        "headers": headers(envelope),
        "payload_encoding": encoding,
        "payload": payload,
    })
}

/// Headers as an object: a name seen once maps to its value, a repeated one
/// to the list of its values.
fn headers(envelope: &Envelope) -> Value {
    let mut out = Map::new();
    for (name, value) in &envelope.headers {
        match out.get_mut(name) {
            None => {
                out.insert(name.clone(), Value::String(value.clone()));
            }
            Some(Value::Array(values)) => values.push(Value::String(value.clone())),
            Some(first) => *first = json!([first.take(), value]),
        }
    }
    Value::Object(out)
}

sinkhost_sdk::export_sink!(BenchSink);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_picks_json_then_text_then_base64() {
        let mut envelope = Envelope::new("S", 7, "a.b", br#"{"x":1}"#.to_vec());
        envelope.headers = vec![
            ("K".into(), "1".into()),
            ("K".into(), "2".into()),
            ("J".into(), "3".into()),
        ];
        let json = record(&envelope);
        assert_eq!(json["id"], "S-7");
        assert_eq!(json["payload_encoding"], "json");
        assert_eq!(json["payload"]["x"], 1);
        assert_eq!(json["headers"], json!({"K": ["1", "2"], "J": "3"}));
        envelope.payload = b"plain".to_vec();
        assert_eq!(record(&envelope)["payload"], "plain");
        envelope.payload = vec![0xff, 0x00];
        assert_eq!(record(&envelope)["payload"], "/wA=");
    }

    #[test]
    fn files_writes_one_record_per_message_and_replaces_on_redelivery() {
        let dir = tempfile::tempdir().unwrap();
        let config = json!({"behaviour": "files", "directory": dir.path()}).to_string();
        let mut sink = BenchSink::init(&config).unwrap();
        let envelope = Envelope::new("S", 1, "a", b"{}".to_vec());
        for _ in 0..2 {
            assert!(sink
                .write_batch(&[envelope.clone()])
                .unwrap()
                .failures
                .is_empty());
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("S-1.json")]);
    }

    #[test]
    fn config_errors_name_the_field() {
        let err = BenchSink::init(r#"{"behaviour":"files"}"#).unwrap_err();
        assert!(err.contains("sink.directory"), "{err}");
        let err = BenchSink::init(r#"{"behaviour":"shred"}"#).unwrap_err();
        assert!(err.contains("behaviour"), "{err}");
    }
}
