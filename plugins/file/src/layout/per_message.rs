//! One JSON file per message, at the reference's path:
//! `<directory>/<safe subject>/<SAFE_STREAM>-<stream_sequence:020><extension>`
//! (no subject directory when `partition_by_subject` is false).
//!
//! # Writing one message
//!
//! With `write_mode = "atomic"` (the default) the record is written to a
//! temporary file (synced when fsync is on) which is then hard-linked to the
//! final name (never replaces; `overwrite` renames instead) and removed: a
//! reader sees no file or a complete one. With `write_mode = "direct"` the
//! final name is created with `create_new` (`O_EXCL`), written, synced and
//! closed ([`fs::write_new`]): one path operation instead of three, but a
//! reader can see the file while it is written. Neither checks for an
//! existing file first: the exclusive link or create reports it.
//!
//! When the name is taken (a redelivery, or a message written twice in one
//! batch), the existing file is read and classified:
//! - **this message's record** (parses as JSON and its `stream` and
//!   `stream_sequence` are the message's): stored before. `skip_existing`:
//!   success; with fsync on the file is fsynced first (it may have been
//!   written by a run that crashed before its fsync). `fail`: a permanent
//!   failure of that message. The file is not modified.
//! - **torn** (does not parse: a crash in the middle of a write, or a file
//!   left empty): it was never reported stored, so it is repaired: the record
//!   is written to a temporary file (synced when fsync is on) and renamed over
//!   it, under every policy.
//! - **another message's record** (parses, but another stream or sequence,
//!   which only a name collision between two sanitised stream names can
//!   produce): left untouched, permanent failure of the message.
//!
//! `overwrite` replaces an existing file with a temporary file and a rename.
//!
//! # Failures and fsync
//!
//! Every message is handled on its own: a message that cannot be stored is
//! reported in the batch report with its index while its neighbours are
//! written.
//! - bad data (payload not storable in `payload_mode`, missing stream name),
//!   an existing record under `duplicate_policy = "fail"` and another
//!   message's record under the name are *permanent* failures of that
//!   message;
//! - I/O errors (ENOSPC, EIO, EACCES, ...) are *transient* failures of that
//!   message (a partially written file is removed); the remaining messages
//!   are still attempted (an error may be local to one subject directory);
//! - when fsync is on, each directory that received or holds a stored file is
//!   fsynced once at the end of the batch, and so is the parent of a
//!   directory this instance has not confirmed yet (it created it, or it sees
//!   it for the first time); if that fails, every message of that directory
//!   in this batch is reported as a transient failure.
//!
//! Directories are not checked before writing: a missing one shows up as
//! `NotFound` on create, is created, and the write is tried once more.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use crate::config::{DuplicatePolicy, FileSinkConfig, WriteMode};
use crate::fs::{self, Created, Placed, TempNames};
use crate::json;
use crate::layout::{safe_path_component, sorted};
use crate::record;
use sinkhost_sdk::log;
use sinkhost_sdk::{BatchReport, Envelope, SinkError};

/// Directories whose entry is known to be durable are remembered up to this
/// many entries (forgetting one only costs one more fsync of its parent).
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

/// What an existing file under a message's name holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    /// A complete record of this message (same stream and sequence).
    ThisMessage,
    /// Not a complete JSON document: a write that never finished.
    Torn,
    /// A complete JSON document that is not this message's record.
    Other(String),
}

/// Classifies the content of the file found under `env`'s name.
pub fn classify_existing(content: &[u8], env: &Envelope) -> Existing {
    let Ok(text) = std::str::from_utf8(content) else {
        return Existing::Torn;
    };
    // A record nests the payload one level down.
    let Ok(doc) = json::parse_with_depth(text, json::MAX_DEPTH + 1) else {
        return Existing::Torn;
    };
    let stream = doc.get("stream").and_then(json::Json::as_str);
    let seq = doc.get("stream_sequence").and_then(json::Json::as_u64);
    if stream == Some(env.stream.as_str()) && seq == Some(env.stream_sequence) {
        Existing::ThisMessage
    } else {
        Existing::Other(match (stream, seq) {
            (Some(stream), Some(seq)) => format!("the record of stream {stream:?} sequence {seq}"),
            _ => "a JSON document that is not a record of this sink".to_owned(),
        })
    }
}

enum Outcome {
    /// Stored: a new file, or this message's existing record under
    /// `skip_existing`. The directory must be synced before the message
    /// counts as durable.
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
    /// Directories this instance wrote into whose own entry is durable (with
    /// fsync on: their parent was fsynced after they were first seen).
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

    /// Runs `op` in `dir`; if the directory is missing, creates it and runs
    /// `op` once more.
    fn in_dir<T>(
        &mut self,
        dir: &Path,
        mut op: impl FnMut(&mut Self) -> io::Result<T>,
    ) -> io::Result<T> {
        match op(self) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.known_dirs.remove(dir);
                match std::fs::create_dir_all(dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                op(self)
            }
            other => other,
        }
    }

    /// Writes `bytes` to a temporary file and renames it over `dest`.
    fn replace(
        &mut self,
        dir: &Path,
        dest: &Path,
        hint: &str,
        bytes: &[u8],
        fsync: bool,
    ) -> io::Result<()> {
        self.in_dir(dir, |w| {
            let temp = fs::write_temp(dir, &mut w.temp_names, hint, bytes, fsync)?;
            fs::place_replace(&temp, dest).map(drop)
        })
    }

    fn write_one(&mut self, env: &Envelope, cfg: &FileSinkConfig, stored_at_ns: i64) -> Outcome {
        let rel = match relative_path(env, cfg) {
            Ok(rel) => rel,
            Err(e) => return Outcome::Failed(e),
        };
        let dir = match &rel.subdirectory {
            Some(sub) => self.root.join(sub),
            None => self.root.clone(),
        };
        let dest = dir.join(&rel.file_name);

        let bytes = match record::render_record(env, cfg.payload_mode, stored_at_ns, cfg.pretty) {
            Ok(bytes) => bytes,
            Err(e) => return Outcome::Failed(SinkError::permanent(e.to_string())),
        };

        let hint = rel
            .file_name
            .strip_suffix(cfg.extension.as_str())
            .unwrap_or(&rel.file_name)
            .to_owned();
        // The normal path: the name is free.
        let created = match cfg.write_mode {
            // Direct: one create + write (+ sync) + close.
            WriteMode::Direct => self.in_dir(&dir, |_| fs::write_new(&dest, &bytes, cfg.fsync)),
            // Atomic: temporary file, then link (never replaces) or rename.
            WriteMode::Atomic => self.in_dir(&dir, |w| {
                let temp = fs::write_temp(&dir, &mut w.temp_names, &hint, &bytes, cfg.fsync)?;
                let placed = if cfg.duplicate_policy == DuplicatePolicy::Overwrite {
                    fs::place_replace(&temp, &dest)
                } else {
                    fs::place_no_replace(&temp, &dest)
                };
                placed.map(|placed| match placed {
                    Placed::Created => Created::Written,
                    Placed::AlreadyExists => Created::AlreadyExists,
                })
            }),
        };
        match created {
            Ok(Created::Written) => return Outcome::Stored { dir },
            Ok(Created::AlreadyExists) => {}
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                return Outcome::Failed(transient(
                    "cannot link (hard links unsupported here: use write_mode \"direct\" or duplicate_policy \"overwrite\")",
                    &dest,
                    &e,
                ))
            }
            Err(e) => return Outcome::Failed(transient("cannot write", &dest, &e)),
        }

        // The name is taken.
        if cfg.duplicate_policy == DuplicatePolicy::Overwrite {
            return match self.replace(&dir, &dest, &hint, &bytes, cfg.fsync) {
                Ok(()) => Outcome::Stored { dir },
                Err(e) => Outcome::Failed(transient("cannot replace", &dest, &e)),
            };
        }
        let (file, content) = match fs::read_existing(&dest) {
            Ok(found) => found,
            Err(e) => return Outcome::Failed(transient("cannot read existing", &dest, &e)),
        };
        match classify_existing(&content, env) {
            Existing::ThisMessage => match cfg.duplicate_policy {
                DuplicatePolicy::Fail => Outcome::Failed(SinkError::permanent(format!(
                    "file sink destination already exists: {} (duplicate_policy \"fail\")",
                    rel.to_slash_string()
                ))),
                // skip_existing: stored before, maybe by a run that crashed
                // before its fsync: make it durable before reporting it.
                _ => match if cfg.fsync { file.sync_all() } else { Ok(()) } {
                    Ok(()) => Outcome::Stored { dir },
                    Err(e) => Outcome::Failed(transient("cannot fsync existing", &dest, &e)),
                },
            },
            Existing::Torn => {
                drop(file);
                log::warn(&format!(
                    "{} is incomplete ({} bytes, an interrupted write): replacing it",
                    dest.display(),
                    content.len()
                ));
                match self.replace(&dir, &dest, &hint, &bytes, cfg.fsync) {
                    Ok(()) => Outcome::Stored { dir },
                    Err(e) => Outcome::Failed(transient("cannot repair", &dest, &e)),
                }
            }
            Existing::Other(what) => Outcome::Failed(SinkError::permanent(format!(
                "file sink destination {} holds {what}, not this message's record (two stream names \
                 that sanitise to the same name?); left untouched",
                rel.to_slash_string()
            ))),
        }
    }

    /// Writes a batch; never fails as a whole.
    pub fn write_batch(
        &mut self,
        batch: &[Envelope],
        cfg: &FileSinkConfig,
        clock: &dyn Fn() -> i64,
    ) -> BatchReport {
        let mut report = BatchReport::all_stored();
        // Stored messages by the directory that must be synced.
        let mut stored: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();

        for (index, env) in batch.iter().enumerate() {
            match self.write_one(env, cfg, clock()) {
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

        if !cfg.fsync {
            return sorted(report);
        }
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
        let mut confirmed = BTreeSet::new();
        for (dir, indices) in &stored {
            let mut result = sync(dir);
            if result.is_ok() && !self.known_dirs.contains(dir) {
                // Created by this or another instance, maybe just now: make
                // its entry in the parent durable too (once per instance).
                if let Some(parent) = dir.parent().filter(|_| *dir != self.root) {
                    result = sync(parent);
                }
                if result.is_ok() {
                    confirmed.insert(dir.clone());
                }
            }
            if let Err(message) = result {
                log::warn(&message);
                for &index in indices {
                    report.fail(index, SinkError::transient(message.clone()));
                }
            }
        }
        if self.known_dirs.len() + confirmed.len() > KNOWN_DIRS_LIMIT {
            self.known_dirs.clear();
        }
        self.known_dirs.extend(confirmed);
        sorted(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Layout;
    use crate::payload::PayloadMode;
    use crate::record::tests::{vector_envelope, VECTOR_STORED_AT};
    use sinkhost_sdk::ErrorKind;

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
        for write_mode in [WriteMode::Atomic, WriteMode::Direct] {
            writes_and_skips_with(write_mode);
        }
    }

    fn writes_and_skips_with(write_mode: WriteMode) {
        let root = tempfile::tempdir().unwrap();
        let c = FileSinkConfig {
            write_mode,
            ..cfg(root.path())
        };
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

    fn seq_path(root: &Path, seq: u64) -> PathBuf {
        root.join(format!("s/BENCH-{seq:020}.json"))
    }

    #[test]
    fn existing_record_of_this_message_is_stored_and_untouched() {
        let root = tempfile::tempdir().unwrap();
        for fsync in [false, true] {
            let c = FileSinkConfig {
                fsync,
                ..cfg(root.path())
            };
            let mut w = PerMessageWriter::new(root.path().to_path_buf());
            let seq = if fsync { 2 } else { 1 };
            assert!(w
                .write_batch(&[msg("s", seq, b"1")], &c, &clock)
                .failures
                .is_empty());
            let before = std::fs::read(seq_path(root.path(), seq)).unwrap();
            // A redelivery (new instance, other payload, other stored_at).
            let mut w = PerMessageWriter::new(root.path().to_path_buf());
            let mut env = msg("s", seq, b"2");
            env.delivery_count = 2;
            let report = w.write_batch(&[env], &c, &|| VECTOR_STORED_AT + 5);
            assert!(report.failures.is_empty(), "{report:?}");
            assert_eq!(std::fs::read(seq_path(root.path(), seq)).unwrap(), before);
        }
    }

    #[test]
    fn torn_files_are_repaired_under_every_policy() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("s")).unwrap();
        let good = record::render_record(
            &msg("s", 1, b"{}"),
            PayloadMode::JsonOrEnvelope,
            VECTOR_STORED_AT,
            false,
        )
        .unwrap();
        let torn: Vec<Vec<u8>> = vec![
            Vec::new(),                      // crashed right after create
            good[..good.len() / 2].to_vec(), // crashed mid-write
            good[..good.len() - 2].to_vec(), // all but the closing brace
            vec![0; good.len()],             // unwritten blocks after a power loss
        ];
        let mut seq = 0;
        for policy in [
            DuplicatePolicy::SkipExisting,
            DuplicatePolicy::Fail,
            DuplicatePolicy::Overwrite,
        ] {
            for (content, write_mode) in torn
                .iter()
                .flat_map(|t| [(t, WriteMode::Atomic), (t, WriteMode::Direct)])
            {
                for fsync in [false, true] {
                    seq += 1;
                    std::fs::write(seq_path(root.path(), seq), content).unwrap();
                    let c = FileSinkConfig {
                        duplicate_policy: policy,
                        fsync,
                        write_mode,
                        ..cfg(root.path())
                    };
                    let mut w = PerMessageWriter::new(root.path().to_path_buf());
                    let report = w.write_batch(&[msg("s", seq, b"{\"n\":1}")], &c, &clock);
                    assert!(report.failures.is_empty(), "{policy:?} {report:?}");
                    let v: serde_json::Value =
                        serde_json::from_slice(&std::fs::read(seq_path(root.path(), seq)).unwrap())
                            .unwrap();
                    assert_eq!(v["stream_sequence"], seq);
                    assert_eq!(v["payload"]["n"], 1);
                }
            }
        }
        // Only the records: no temporary files left.
        assert_eq!(
            std::fs::read_dir(root.path().join("s")).unwrap().count(),
            seq as usize
        );
    }

    #[test]
    fn fail_policy_with_existing_record() {
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
        let before = std::fs::read(seq_path(root.path(), 1)).unwrap();
        let report = w.write_batch(&[msg("s", 1, b"2"), msg("s", 2, b"2")], &fail, &clock);
        assert_eq!(report.failures.len(), 1);
        assert_eq!(report.failures[0].index, 0);
        assert_eq!(report.failures[0].error.kind, ErrorKind::Permanent);
        assert_eq!(std::fs::read(seq_path(root.path(), 1)).unwrap(), before);
        assert!(seq_path(root.path(), 2).exists());
    }

    #[test]
    fn another_messages_record_under_the_name_is_never_replaced() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("s")).unwrap();
        // Streams "BENCH" and "BENCH " sanitise to the same file name.
        let mut other = msg("s", 1, b"{}");
        other.stream = "BENCH ".into();
        let foreign = record::render_record(&other, PayloadMode::JsonOrEnvelope, 0, false).unwrap();
        std::fs::write(seq_path(root.path(), 1), &foreign).unwrap();
        std::fs::write(seq_path(root.path(), 2), b"[1,2,3]\n").unwrap();
        for policy in [DuplicatePolicy::SkipExisting, DuplicatePolicy::Fail] {
            let c = FileSinkConfig {
                duplicate_policy: policy,
                ..cfg(root.path())
            };
            let mut w = PerMessageWriter::new(root.path().to_path_buf());
            let report = w.write_batch(&[msg("s", 1, b"1"), msg("s", 2, b"2")], &c, &clock);
            let kinds: Vec<(u32, ErrorKind)> = report
                .failures
                .iter()
                .map(|f| (f.index, f.error.kind))
                .collect();
            assert_eq!(
                kinds,
                vec![(0, ErrorKind::Permanent), (1, ErrorKind::Permanent)]
            );
            assert!(report.failures[0]
                .error
                .message
                .contains("stream \"BENCH \" sequence 1"));
            assert_eq!(std::fs::read(seq_path(root.path(), 1)).unwrap(), foreign);
            assert_eq!(
                std::fs::read(seq_path(root.path(), 2)).unwrap(),
                b"[1,2,3]\n"
            );
        }
    }

    #[test]
    fn classify() {
        let env = msg("s", 7, b"{}");
        let rec = record::render_record(&env, PayloadMode::JsonOrEnvelope, 0, false).unwrap();
        assert_eq!(classify_existing(&rec, &env), Existing::ThisMessage);
        let pretty = record::render_record(&env, PayloadMode::JsonOrEnvelope, 0, true).unwrap();
        assert_eq!(classify_existing(&pretty, &env), Existing::ThisMessage);
        // Without the final newline the record is still complete.
        assert_eq!(
            classify_existing(&rec[..rec.len() - 1], &env),
            Existing::ThisMessage
        );
        for cut in [0, 1, rec.len() / 3, rec.len() - 2] {
            assert_eq!(
                classify_existing(&rec[..cut], &env),
                Existing::Torn,
                "{cut}"
            );
        }
        assert_eq!(classify_existing(&[0xff, 0xfe], &env), Existing::Torn);
        let mut other = env.clone();
        other.stream_sequence = 8;
        assert!(matches!(
            classify_existing(&rec, &other),
            Existing::Other(_)
        ));
        assert!(matches!(
            classify_existing(b"{\"a\":1}", &env),
            Existing::Other(_)
        ));
    }
}
