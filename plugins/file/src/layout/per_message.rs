//! One JSON file per message, at the reference's path:
//! `<directory>/<safe subject>/<SAFE_STREAM>-<stream_sequence:020><extension>`
//! (no subject directory when `partition_by_subject` is false).
//!
//! Every message is handled on its own: a message that cannot be stored is
//! reported in the batch report with its index while its neighbours are
//! written.
//! - bad data (payload not storable in `payload_mode`, missing stream name)
//!   and an existing file under `duplicate_policy = "fail"` are *permanent*
//!   failures of that message;
//! - I/O errors (ENOSPC, EIO, EACCES, ...) are *transient* failures of that
//!   message; the remaining messages are still attempted (an error may be
//!   local to one subject directory);
//! - when fsync is on, each directory that received a file is fsynced once at
//!   the end of the batch (and the parent of a newly created subject
//!   directory); if that fails, every message placed in that directory in
//!   this batch is reported as a transient failure.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use crate::config::{DuplicatePolicy, FileSinkConfig};
use crate::envelope::{BatchReport, Envelope, SinkError};
use crate::fs::{self, Placed, TempNames};
use crate::layout::safe_path_component;
use crate::log;
use crate::record;

/// Directories known to exist are remembered up to this many entries.
const KNOWN_DIRS_LIMIT: usize = 4096;

/// The relative location of a message: optional subject directory and file
/// name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelativePath {
    pub subdirectory: Option<String>,
    pub file_name: String,
}

impl RelativePath {
    /// `/`-joined, as the reference vector spells it.
    pub fn to_slash_string(&self) -> String {
        match &self.subdirectory {
            Some(dir) => format!("{dir}/{}", self.file_name),
            None => self.file_name.clone(),
        }
    }
}

/// The file stem `<SAFE_STREAM>-<seq:020>`; a message without a stream name
/// cannot be named (permanent, as in the reference).
pub fn file_stem(env: &Envelope) -> Result<String, SinkError> {
    if env.stream.is_empty() {
        return Err(SinkError::permanent(
            "file sink names files by stream and stream sequence, but the message has no stream name",
        ));
    }
    Ok(format!(
        "{}-{:020}",
        safe_path_component(&env.stream, "stream"),
        env.stream_sequence
    ))
}

/// Where a message goes, relative to the output directory.
pub fn relative_path(env: &Envelope, cfg: &FileSinkConfig) -> Result<RelativePath, SinkError> {
    let file_name = format!("{}{}", file_stem(env)?, cfg.extension);
    let subdirectory = cfg
        .partition_by_subject
        .then(|| safe_path_component(&env.subject, "subject"));
    Ok(RelativePath {
        subdirectory,
        file_name,
    })
}

enum Outcome {
    /// Stored: a new file, or an existing one under `skip_existing`. The
    /// directory must be synced before the message counts as durable.
    Stored {
        dir: PathBuf,
    },
    Failed(SinkError),
}

fn transient(what: &str, path: &Path, e: &io::Error) -> SinkError {
    SinkError::transient(format!("{what} {}: {}", path.display(), fs::describe(e)))
}

/// Writes one file per message.
#[derive(Debug)]
pub struct PerMessageWriter {
    root: PathBuf,
    known_dirs: HashSet<PathBuf>,
    temp_names: TempNames,
}

impl PerMessageWriter {
    pub fn new(root: PathBuf) -> Self {
        PerMessageWriter {
            root,
            known_dirs: HashSet::new(),
            temp_names: TempNames::new(),
        }
    }

    /// Makes sure `dir` exists. Returns the parent to fsync when it had to
    /// be created.
    fn ensure_dir(&mut self, dir: &Path, refresh: bool) -> io::Result<Option<PathBuf>> {
        if refresh {
            self.known_dirs.remove(dir);
        }
        if self.known_dirs.contains(dir) {
            return Ok(None);
        }
        let created = match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => None,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists and is not a directory",
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                dir.parent().map(Path::to_path_buf)
            }
            Err(e) => return Err(e),
        };
        if self.known_dirs.len() >= KNOWN_DIRS_LIMIT {
            self.known_dirs.clear();
        }
        self.known_dirs.insert(dir.to_path_buf());
        Ok(created)
    }

    fn write_one(
        &mut self,
        env: &Envelope,
        cfg: &FileSinkConfig,
        stored_at_ns: i64,
        new_dirs: &mut BTreeMap<PathBuf, PathBuf>,
    ) -> Outcome {
        let rel = match relative_path(env, cfg) {
            Ok(rel) => rel,
            Err(e) => return Outcome::Failed(e),
        };
        let dir = match &rel.subdirectory {
            Some(sub) => self.root.join(sub),
            None => self.root.clone(),
        };
        let dest = dir.join(&rel.file_name);

        // Cheap duplicate check before building anything (a redelivery).
        if cfg.duplicate_policy != DuplicatePolicy::Overwrite {
            match fs::exists(&dest) {
                Ok(true) => return existing(cfg, &rel, dir),
                Ok(false) => {}
                Err(e) => return Outcome::Failed(transient("cannot check", &dest, &e)),
            }
        }

        let record = match record::build_record(env, cfg.payload_mode, stored_at_ns) {
            Ok(record) => record,
            Err(e) => return Outcome::Failed(SinkError::permanent(e.to_string())),
        };
        let bytes = record::render(&record, cfg.pretty);
        drop(record);

        let hint = rel
            .file_name
            .strip_suffix(cfg.extension.as_str())
            .unwrap_or(&rel.file_name)
            .to_owned();
        let mut refresh = false;
        let temp = loop {
            match self.ensure_dir(&dir, refresh) {
                Ok(Some(parent)) => {
                    new_dirs.insert(dir.clone(), parent);
                }
                Ok(None) => {}
                Err(e) => return Outcome::Failed(transient("cannot create directory", &dir, &e)),
            }
            match fs::write_temp(&dir, &mut self.temp_names, &hint, &bytes, cfg.fsync) {
                Ok(temp) => break temp,
                // The directory vanished since we last saw it: once more.
                Err(e) if e.kind() == io::ErrorKind::NotFound && !refresh => refresh = true,
                Err(e) => {
                    return Outcome::Failed(transient("cannot write temporary file in", &dir, &e))
                }
            }
        };

        let placed = match cfg.duplicate_policy {
            DuplicatePolicy::Overwrite => fs::place_replace(&temp, &dest),
            _ => fs::place_no_replace(&temp, &dest),
        };
        match placed {
            Ok(Placed::Created) => Outcome::Stored { dir },
            Ok(Placed::AlreadyExists) => existing(cfg, &rel, dir),
            Err(e) => {
                let mut err = transient("cannot place", &dest, &e);
                if e.kind() == io::ErrorKind::Unsupported {
                    err.message.push_str(
                        " (hard links unsupported here: use duplicate_policy \"overwrite\", which renames)",
                    );
                }
                Outcome::Failed(err)
            }
        }
    }

    /// Writes a batch; never fails as a whole.
    pub fn write_batch(
        &mut self,
        batch: &[Envelope],
        cfg: &FileSinkConfig,
        clock: &dyn Fn() -> i64,
    ) -> BatchReport {
        let mut report = BatchReport::default();
        // Stored messages by the directory that must be synced.
        let mut stored: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();
        // Newly created directory -> its parent (to sync as well).
        let mut new_dirs: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();

        for (index, env) in batch.iter().enumerate() {
            match self.write_one(env, cfg, clock(), &mut new_dirs) {
                Outcome::Stored { dir } => stored.entry(dir).or_default().push(index),
                Outcome::Failed(error) => {
                    log::warn(&format!(
                        "message {index} (stream {:?} sequence {}) not stored: {}",
                        env.stream, env.stream_sequence, error.message
                    ));
                    report.fail(index, error);
                }
            }
        }

        if cfg.fsync {
            let mut synced: BTreeMap<PathBuf, Result<(), String>> = BTreeMap::new();
            let mut sync = |dir: &Path| -> Result<(), String> {
                synced
                    .entry(dir.to_path_buf())
                    .or_insert_with(|| {
                        fs::sync_dir(dir).map_err(|e| {
                            format!(
                                "cannot fsync directory {}: {}",
                                dir.display(),
                                fs::describe(&e)
                            )
                        })
                    })
                    .clone()
            };
            for (dir, indices) in &stored {
                let mut result = sync(dir);
                if let (Ok(()), Some(parent)) = (&result, new_dirs.get(dir)) {
                    result = sync(parent);
                }
                if let Err(message) = result {
                    log::warn(&message);
                    for &index in indices {
                        report.fail(index, SinkError::transient(message.clone()));
                    }
                }
            }
        }
        report.sorted()
    }
}

fn existing(cfg: &FileSinkConfig, rel: &RelativePath, dir: PathBuf) -> Outcome {
    match cfg.duplicate_policy {
        DuplicatePolicy::Fail => Outcome::Failed(SinkError::permanent(format!(
            "file sink destination already exists: {} (duplicate_policy \"fail\")",
            rel.to_slash_string()
        ))),
        // skip_existing: stored before. (overwrite never gets here.)
        _ => Outcome::Stored { dir },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Layout;
    use crate::envelope::ErrorKind;
    use crate::payload::PayloadMode;
    use crate::record::tests::{vector_envelope, VECTOR_STORED_AT};

    fn cfg(dir: &Path) -> FileSinkConfig {
        FileSinkConfig {
            directory: dir.display().to_string(),
            layout: Layout::PerMessage,
            ..FileSinkConfig::default()
        }
    }

    fn msg(subject: &str, seq: u64, payload: &[u8]) -> Envelope {
        Envelope {
            subject: subject.into(),
            stream_sequence: seq,
            payload: payload.to_vec(),
            ..vector_envelope()
        }
    }

    fn clock() -> i64 {
        VECTOR_STORED_AT
    }

    #[test]
    fn vector_relative_path() {
        let c = cfg(Path::new("/out"));
        let rel = relative_path(&vector_envelope(), &c).unwrap();
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../testdata/nats-sinks-vectors.json")).unwrap();
        assert_eq!(
            rel.to_slash_string(),
            vectors["file_sink"]["relative_path"].as_str().unwrap()
        );
        let flat = FileSinkConfig {
            partition_by_subject: false,
            extension: ".rec".into(),
            ..c
        };
        assert_eq!(
            relative_path(&vector_envelope(), &flat)
                .unwrap()
                .to_slash_string(),
            "BENCH-00000000000000000007.rec"
        );
    }

    #[test]
    fn hostile_names_stay_inside() {
        let c = cfg(Path::new("/out"));
        for subject in [".", "..", "../etc", "a/../../b"] {
            let mut env = msg(subject, 1, b"{}");
            env.stream = "../S".into();
            let rel = relative_path(&env, &c).unwrap();
            let dir = rel.subdirectory.unwrap();
            assert!(
                !dir.contains('/') && dir != "." && dir != "..",
                "{subject:?} -> {dir}"
            );
            assert!(rel.file_name.starts_with("S-"), "{}", rel.file_name);
        }
        let mut env = msg("a", 1, b"{}");
        env.stream.clear();
        assert_eq!(
            relative_path(&env, &c).unwrap_err().kind,
            ErrorKind::Permanent
        );
    }

    #[test]
    fn writes_record_files_and_skips_duplicates() {
        let root = tempfile::tempdir().unwrap();
        let c = cfg(root.path());
        let mut w = PerMessageWriter::new(root.path().to_path_buf());
        let batch = vec![vector_envelope(), msg("other", 8, b"text")];
        let report = w.write_batch(&batch, &c, &clock);
        assert!(report.failures.is_empty(), "{report:?}");

        let path = root
            .path()
            .join("mission.sensor.track/BENCH-00000000000000000007.json");
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../testdata/nats-sinks-vectors.json")).unwrap();
        assert_eq!(written, vectors["file_sink"]["record"]);
        assert!(root
            .path()
            .join("other/BENCH-00000000000000000008.json")
            .exists());

        // Redelivery with a different payload: left untouched.
        let again = vec![msg("mission.sensor.track", 7, b"changed")];
        assert!(w.write_batch(&again, &c, &clock).failures.is_empty());
        let still: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(still, written);
        // No temporary files left anywhere.
        for sub in ["mission.sensor.track", "other"] {
            for entry in std::fs::read_dir(root.path().join(sub)).unwrap() {
                let name = entry.unwrap().file_name();
                assert!(!name.to_string_lossy().starts_with(".tmp-"), "{name:?}");
            }
        }
    }

    #[test]
    fn bad_message_does_not_block_neighbours() {
        let root = tempfile::tempdir().unwrap();
        let c = FileSinkConfig {
            payload_mode: PayloadMode::JsonOnly,
            ..cfg(root.path())
        };
        let mut w = PerMessageWriter::new(root.path().to_path_buf());
        let batch = vec![
            msg("s", 1, b"{}"),
            msg("s", 2, b"not json"),
            msg("s", 3, b"[1]"),
        ];
        let report = w.write_batch(&batch, &c, &clock);
        assert_eq!(report.failures.len(), 1);
        assert_eq!(report.failures[0].index, 1);
        assert_eq!(report.failures[0].error.kind, ErrorKind::Permanent);
        assert!(!report.failures[0].error.message.contains("not json"));
        assert!(root
            .path()
            .join("s/BENCH-00000000000000000001.json")
            .exists());
        assert!(!root
            .path()
            .join("s/BENCH-00000000000000000002.json")
            .exists());
        assert!(root
            .path()
            .join("s/BENCH-00000000000000000003.json")
            .exists());
    }

    #[test]
    fn duplicate_policies() {
        let root = tempfile::tempdir().unwrap();
        let fail = FileSinkConfig {
            duplicate_policy: DuplicatePolicy::Fail,
            ..cfg(root.path())
        };
        let mut w = PerMessageWriter::new(root.path().to_path_buf());
        assert!(w
            .write_batch(&[msg("s", 1, b"1")], &fail, &clock)
            .failures
            .is_empty());
        // Second time (and twice in one batch): permanent for that message only.
        let report = w.write_batch(
            &[msg("s", 1, b"1"), msg("s", 2, b"2"), msg("s", 2, b"2")],
            &fail,
            &clock,
        );
        let failed: Vec<(u32, ErrorKind)> = report
            .failures
            .iter()
            .map(|f| (f.index, f.error.kind))
            .collect();
        assert_eq!(
            failed,
            vec![(0, ErrorKind::Permanent), (2, ErrorKind::Permanent)]
        );
        assert!(report.failures[0]
            .error
            .message
            .contains("already exists: s/BENCH-00000000000000000001.json"));

        let over = FileSinkConfig {
            duplicate_policy: DuplicatePolicy::Overwrite,
            ..cfg(root.path())
        };
        assert!(w
            .write_batch(&[msg("s", 1, b"\"new\"")], &over, &clock)
            .failures
            .is_empty());
        let v: serde_json::Value = serde_json::from_slice(
            &std::fs::read(root.path().join("s/BENCH-00000000000000000001.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(v["payload"], "new");
    }

    #[test]
    fn vanished_directory_is_recreated() {
        let root = tempfile::tempdir().unwrap();
        let c = cfg(root.path());
        let mut w = PerMessageWriter::new(root.path().to_path_buf());
        assert!(w
            .write_batch(&[msg("s", 1, b"1")], &c, &clock)
            .failures
            .is_empty());
        std::fs::remove_dir_all(root.path().join("s")).unwrap();
        assert!(w
            .write_batch(&[msg("s", 2, b"2")], &c, &clock)
            .failures
            .is_empty());
        assert!(root
            .path()
            .join("s/BENCH-00000000000000000002.json")
            .exists());
    }

    #[cfg(unix)]
    #[test]
    fn io_errors_are_transient_per_message() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let c = cfg(root.path());
        let mut w = PerMessageWriter::new(root.path().to_path_buf());
        std::fs::create_dir(root.path().join("locked")).unwrap();
        std::fs::set_permissions(
            root.path().join("locked"),
            std::fs::Permissions::from_mode(0o500),
        )
        .unwrap();
        // Root can write anywhere: then there is nothing to observe.
        let probe = root.path().join("locked/probe");
        if std::fs::write(&probe, b"").is_ok() {
            return;
        }
        let report = w.write_batch(&[msg("locked", 1, b"1"), msg("open", 2, b"2")], &c, &clock);
        assert_eq!(report.failures.len(), 1);
        assert_eq!(report.failures[0].index, 0);
        assert_eq!(report.failures[0].error.kind, ErrorKind::Transient);
        assert!(root
            .path()
            .join("open/BENCH-00000000000000000002.json")
            .exists());
    }

    #[test]
    fn pretty_files() {
        let root = tempfile::tempdir().unwrap();
        let c = FileSinkConfig {
            pretty: true,
            partition_by_subject: false,
            ..cfg(root.path())
        };
        let mut w = PerMessageWriter::new(root.path().to_path_buf());
        assert!(w
            .write_batch(&[vector_envelope()], &c, &clock)
            .failures
            .is_empty());
        let text =
            std::fs::read_to_string(root.path().join("BENCH-00000000000000000007.json")).unwrap();
        assert!(
            text.starts_with("{\n  \"classification\": \"restricted\",") && text.ends_with("}\n")
        );
    }
}
