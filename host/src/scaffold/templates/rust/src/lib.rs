//! `{{name}}`: a sinkhost sink that writes every message as one JSON file,
//! `<directory>/<stream>-<stream_sequence>.json`, replaced on redelivery (so
//! a message is stored at most once).
//!
//! Config (the `sink` section):
//!
//! | option | default | meaning |
//! | --- | --- | --- |
//! | `directory` | required | guest path of a granted read-write directory, e.g. `/data/out` |
//! | `payload_mode` | `json_or_envelope` | `json_or_envelope`, `text_envelope`, `base64` or `json_only` |
//! | `pretty` | `false` | indent the JSON |
//! | `fsync` | `true` | fsync each file and the directory before reporting it stored |

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sinkhost_sdk::{log, normalise, BatchReport, Envelope, PayloadMode, Sink, SinkError};

/// The `sink` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the files go (guest path).
    pub directory: PathBuf,
    /// How payload bytes become the stored JSON value.
    #[serde(default)]
    pub payload_mode: PayloadMode,
    /// Indent the JSON.
    #[serde(default)]
    pub pretty: bool,
    /// fsync files and the directory.
    #[serde(default = "yes")]
    pub fsync: bool,
}

fn yes() -> bool {
    true
}

/// The sink: its configuration.
#[derive(Debug)]
pub struct {{name_camel}} {
    config: Config,
}

impl Sink for {{name_camel}} {
    fn init(config: &str) -> Result<Self, String> {
        let config: Config = sinkhost_sdk::parse_config(config)?;
        if !config.directory.is_absolute() {
            return Err("sink.directory: must be an absolute guest path such as /data/out".into());
        }
        if !config.directory.is_dir() {
            log::warn("sink.directory does not exist yet (is it granted in plugin.grants.files?)");
        }
        log::info("{{name}} ready");
        Ok({{name_camel}} { config })
    }

    fn write_batch(&mut self, batch: &[Envelope]) -> Result<BatchReport, SinkError> {
        let report = BatchReport::each(batch, |envelope| self.store(envelope));
        if self.config.fsync && report.failures.len() < batch.len() {
            // The renames above are durable only once the directory is.
            sync_dir(&self.config.directory)
                .map_err(|err| SinkError::transient(format!("fsync of the directory: {err}")))?;
        }
        Ok(report)
    }
}

impl {{name_camel}} {
    /// Writes one message: a temporary file, then a rename over the final
    /// name. I/O errors are transient (retrying can help); a payload the
    /// configured mode refuses is permanent.
    fn store(&self, envelope: &Envelope) -> Result<(), SinkError> {
        let payload = normalise(envelope.payload_bytes(), self.config.payload_mode)?;
        let record = serde_json::json!({
            "schema": "{{name}}.message.v1",
            "metadata": envelope.metadata_json(),
            "payload_sha256": payload.sha256,
            "payload": payload.value,
        });
        let bytes = if self.config.pretty {
            serde_json::to_vec_pretty(&record)
        } else {
            serde_json::to_vec(&record)
        }
        .map_err(|err| SinkError::permanent(format!("cannot encode the record: {err}")))?;
        let key = envelope.idempotency_key();
        let temp = self.config.directory.join(format!(".{key}.tmp"));
        let path = self.config.directory.join(format!("{key}.json"));
        write_file(&temp, &bytes, self.config.fsync)
            .and_then(|()| fs::rename(&temp, &path))
            .map_err(|err| {
                let _ = fs::remove_file(&temp);
                SinkError::transient(format!("cannot write {}: {err}", path.display()))
            })
    }
}

fn write_file(path: &Path, bytes: &[u8], fsync: bool) -> std::io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    if fsync {
        file.sync_all()?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

sinkhost_sdk::export_sink!({{name_camel}});

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(dir: &Path) -> {{name_camel}} {
        let config = serde_json::json!({"directory": dir}).to_string();
        {{name_camel}}::init(&config).expect("init")
    }

    #[test]
    fn refuses_unknown_options_and_relative_paths() {
        assert!({{name_camel}}::init(r#"{"directory":"/d","nope":1}"#).unwrap_err().contains("nope"));
        assert!({{name_camel}}::init(r#"{"directory":"d"}"#).is_err());
        assert!({{name_camel}}::init("42").is_err());
    }

    #[test]
    fn writes_one_file_per_message_and_replaces_on_redelivery() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sink = sink(dir.path());
        let mut envelope = Envelope::new("ORDERS", 7, "orders.created", br#"{"id":1}"#.to_vec());
        assert!(sink.write_batch(&[envelope.clone()]).expect("write").failures.is_empty());
        envelope.delivery_count = 2;
        assert!(sink.write_batch(&[envelope]).expect("write").failures.is_empty());
        let names: Vec<_> = fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, ["ORDERS-7.json"]);
        let record: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join("ORDERS-7.json")).expect("read")).expect("json");
        assert_eq!(record["payload"]["id"], 1);
        assert_eq!(record["metadata"]["subject"], "orders.created");
    }

    #[test]
    fn missing_directory_is_transient() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sink = sink(&dir.path().join("missing"));
        let report = sink.write_batch(&[Envelope::new("S", 1, "a", b"{}".to_vec())]);
        let failure = &report.expect("report").failures[0];
        assert!(failure.error.is_transient());
    }
}
