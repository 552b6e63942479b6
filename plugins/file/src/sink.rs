//! The sink itself: `init` validates the config and prepares the directory,
//! `write_batch` dispatches to the layout. [`FileSink`] implements
//! [`sinkhost_sdk::Sink`]; `lib.rs` exports it with `export_sink!`.

use std::io;
use std::path::{Path, PathBuf};

use sinkhost_sdk::{log, BatchReport, Envelope, Sink, SinkError};

use crate::config::{FileSinkConfig, Layout};
use crate::fs::{self, TempNames};
use crate::layout::per_message::PerMessageWriter;
use crate::layout::segment::SegmentWriter;
use crate::time;

#[derive(Debug)]
enum Writer {
    PerMessage(PerMessageWriter),
    Segment(SegmentWriter),
}

/// An initialised file sink.
#[derive(Debug)]
pub struct FileSink {
    config: FileSinkConfig,
    writer: Writer,
}

/// Checks that the directory exists (creating it when allowed) and that a
/// file can be created in it.
fn prepare_directory(cfg: &FileSinkConfig) -> Result<PathBuf, String> {
    let root = PathBuf::from(&cfg.directory);
    let shown = &cfg.directory;
    match std::fs::metadata(&root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(format!(
                "sink.directory {shown:?} exists and is not a directory"
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if !cfg.create_directory {
                return Err(format!(
                    "sink.directory {shown:?} does not exist (sink.create_directory is false)"
                ));
            }
            std::fs::create_dir_all(&root).map_err(|e| {
                format!(
                    "cannot create sink.directory {shown:?}: {} (is it inside a directory granted \
                     read-write to the plugin?)",
                    fs::describe(&e)
                )
            })?;
        }
        Err(e) => {
            return Err(format!(
                "cannot access sink.directory {shown:?}: {} (is it granted to the plugin?)",
                fs::describe(&e)
            ))
        }
    }
    // Probe: the same create/sync/remove a write does.
    let probe =
        fs::write_temp(&root, &mut TempNames::new(), "probe", b"", cfg.fsync).map_err(|e| {
            format!(
                "sink.directory {shown:?} is not writable: {} (grant it read-write)",
                fs::describe(&e)
            )
        })?;
    let _ = std::fs::remove_file(&probe);
    if cfg.fsync {
        fs::sync_dir(&root).map_err(|e| {
            format!(
                "cannot fsync sink.directory {shown:?}: {} (set sink.fsync to false?)",
                fs::describe(&e)
            )
        })?;
    }
    Ok(root)
}

impl FileSink {
    /// `init`: parses the `sink` section and prepares the output directory.
    pub fn open(config_json: &str) -> Result<Self, String> {
        let config = FileSinkConfig::from_json(config_json)?;
        let root = prepare_directory(&config)?;
        let writer = match config.layout {
            Layout::PerMessage => Writer::PerMessage(PerMessageWriter::new(root.clone())),
            Layout::Segment => Writer::Segment(SegmentWriter::open(&root, config.fsync)?),
        };
        for key in &config.ignored {
            log::warn(&format!(
                "sink.{key} has no effect with sink.layout \"segment\""
            ));
        }
        log::info(&format!(
            "file sink ready: directory={} layout={} duplicate_policy={} payload_mode={} fsync={}{}",
            config.directory,
            match config.layout {
                Layout::PerMessage => "per_message",
                Layout::Segment => "segment",
            },
            match config.duplicate_policy {
                crate::config::DuplicatePolicy::SkipExisting => "skip_existing",
                crate::config::DuplicatePolicy::Overwrite => "overwrite",
                crate::config::DuplicatePolicy::Fail => "fail",
            },
            config.payload_mode.name(),
            config.fsync,
            match config.layout {
                Layout::PerMessage => format!(
                    " partition_by_subject={} extension={}",
                    config.partition_by_subject, config.extension
                ),
                Layout::Segment => String::new(),
            }
        ));
        Ok(FileSink { config, writer })
    }

    pub fn config(&self) -> &FileSinkConfig {
        &self.config
    }

    /// The directory records are written to (segments: `<dir>/segments`).
    pub fn output_dir(&self) -> &Path {
        match &self.writer {
            Writer::PerMessage(_) => Path::new(&self.config.directory),
            Writer::Segment(w) => w.dir(),
        }
    }

    /// `write-batch` with a given clock for `stored_at`.
    pub fn write_batch_at(
        &mut self,
        batch: &[Envelope],
        clock: &dyn Fn() -> i64,
    ) -> Result<BatchReport, SinkError> {
        if batch.is_empty() {
            return Ok(BatchReport::all_stored());
        }
        match &mut self.writer {
            Writer::PerMessage(w) => Ok(w.write_batch(batch, &self.config, clock)),
            Writer::Segment(w) => w.write_batch(batch, &self.config, clock).inspect_err(|e| {
                log::warn(&format!(
                    "batch of {} not stored: {}",
                    batch.len(),
                    e.message
                ));
            }),
        }
    }
}

impl Sink for FileSink {
    /// Export `init`: [`FileSink::open`], logging why it failed.
    fn init(config_json: &str) -> Result<Self, String> {
        FileSink::open(config_json).inspect_err(|e| log::error(&format!("init failed: {e}")))
    }

    /// Export `write-batch` with the wall clock.
    fn write_batch(&mut self, batch: &[Envelope]) -> Result<BatchReport, SinkError> {
        self.write_batch_at(batch, &time::now_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::vector_envelope;

    #[test]
    fn init_creates_directory_and_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        let config = serde_json::json!({"directory": dir, "fsync": true}).to_string();
        let mut sink = FileSink::open(&config).unwrap();
        let report = sink.write_batch(&[vector_envelope()]).unwrap();
        assert!(report.failures.is_empty());
        let path = dir.join("mission.sensor.track/BENCH-00000000000000000007.json");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        // stored_at comes from the wall clock.
        assert!(
            v["metadata"]["timestamps"]["stored_at_epoch_ns"]
                .as_i64()
                .unwrap()
                > 1_700_000_000_000_000_000
        );
        // Only the record and its directory: the probe file is gone.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert!(sink.write_batch(&[]).unwrap().failures.is_empty());
    }

    #[test]
    fn init_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing");
        let e = FileSink::open(
            &serde_json::json!({"directory": missing, "create_directory": false}).to_string(),
        )
        .unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        let file = tmp.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let e = FileSink::open(&serde_json::json!({"directory": file}).to_string()).unwrap_err();
        assert!(e.contains("not a directory"), "{e}");
        let e = FileSink::open(r#"{"directory":"/o","bogus":1}"#).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn segment_sink() {
        let tmp = tempfile::tempdir().unwrap();
        let config = serde_json::json!({"directory": tmp.path(), "layout": "segment"}).to_string();
        let mut sink = FileSink::open(&config).unwrap();
        let report = sink.write_batch(&[vector_envelope()]).unwrap();
        assert!(report.failures.is_empty());
        assert!(tmp
            .path()
            .join("segments/BENCH-00000000000000000007-00000000000000000007.jsonl")
            .exists());
        assert_eq!(sink.output_dir(), tmp.path().join("segments"));
    }

    #[test]
    fn exports_drive_the_sink_like_the_host() {
        // What `export_sink!` calls: the SDK keeps the sink between calls.
        use sinkhost_sdk::runtime;
        let e = runtime::init::<FileSink>(r#"{"directory":"/o","bogus":1}"#).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let tmp = tempfile::tempdir().unwrap();
        let config = serde_json::json!({"directory": tmp.path(), "fsync": false}).to_string();
        runtime::init::<FileSink>(&config).unwrap();
        let report = runtime::write_batch::<FileSink>(&[vector_envelope()]).unwrap();
        assert!(report.failures.is_empty());
        assert!(tmp
            .path()
            .join("mission.sensor.track/BENCH-00000000000000000007.json")
            .exists());
    }
}
