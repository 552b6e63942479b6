//! Segment layout: one JSON-lines file per batch (and stream), for
//! throughput. Each line is the same record as the per-message layout writes.
//!
//! File name: `<directory>/segments/<STREAM>-<first:020>-<last:020>.jsonl`,
//! where `first`/`last` are the smallest and largest stream sequence *in the
//! file* and `<STREAM>` is the sanitised stream name (plus `_<16 hex of
//! sha256(stream)>` when sanitising changed it, so two streams never share a
//! name). A segment is written once: temp file, one fsync, hard link to the
//! final name (never replaced), one fsync of `segments/` per batch.
//!
//! # Recognising already stored messages
//!
//! The rule that keeps it correct: **a message counts as already stored only
//! if a segment file was read and contains a line whose `stream` and
//! `stream_sequence` are the message's** (or this instance wrote it). A
//! file name alone proves nothing about the sequences between `first` and
//! `last` (batches may have gaps), so names are only used to find which files
//! to read. Not finding a stored message can only cause a duplicate line in a
//! later segment, never a lost message.
//!
//! The in-memory index keeps, per stream, the *high-water mark* (largest
//! `last` of any segment seen) and the last [`RECENT_SEGMENTS`] segments with
//! their member sequences (read lazily for segments found on disk). It is
//! loaded at `init` by listing `segments/` once. For each message:
//! 1. `seq > high-water`: new (the normal in-order case, no I/O);
//! 2. else a recent segment whose range holds `seq` is read (once) and
//!    checked;
//! 3. else (rare: a redelivery after a failed batch, a replay, a segment
//!    written by another instance) `segments/` is listed once for the whole
//!    batch and every segment whose range holds such a sequence is read.
//!
//! Duplicates remain possible only when two instances write the same
//! redelivered message at the same moment (neither sees the other's file yet)
//! or when segments are moved away from `segments/` and their messages are
//! delivered again. Both leave two lines with the same stream and sequence
//! in different files; readers can drop duplicates by that key.
//!
//! If the final name is taken (a differently composed batch produced the same
//! first/last), the existing file is read, the messages it holds are treated
//! as already stored, and the rest is placed under the new first/last.
//!
//! All I/O errors fail the whole batch as transient (nothing is reported
//! stored); segments already linked stay known to the index, so the retry
//! skips them (and fsyncs `segments/` before reporting success).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

use crate::config::{DuplicatePolicy, FileSinkConfig};
use crate::envelope::{BatchReport, Envelope, SinkError};
use crate::fs::{self, Placed, TempNames};
use crate::json;
use crate::layout::safe_path_component;
use crate::log;
use crate::payload::sha256_hex;
use crate::record;

/// Sub-directory of the output directory that holds the segments.
pub const SEGMENTS_DIR: &str = "segments";
/// Extension of segment files.
pub const SEGMENT_EXTENSION: &str = ".jsonl";
/// Segments whose members are kept in memory.
pub const RECENT_SEGMENTS: usize = 256;
/// Attempts to place one segment when its name is taken.
const PLACE_ATTEMPTS: usize = 4;

/// The name component of a stream: sanitised as in the per-message layout,
/// plus a digest suffix when sanitising changed the name.
pub fn stream_component(stream: &str) -> String {
    let safe = safe_path_component(stream, "stream");
    if safe == stream {
        safe
    } else {
        format!("{safe}_{}", &sha256_hex(stream.as_bytes())[..16])
    }
}

pub fn segment_file_name(component: &str, first: u64, last: u64) -> String {
    format!("{component}-{first:020}-{last:020}{SEGMENT_EXTENSION}")
}

/// A parsed segment file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentName {
    pub component: String,
    pub first: u64,
    pub last: u64,
}

fn seq20(text: &str) -> Option<u64> {
    if text.len() == 20 && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

/// Parses `<component>-<first:020>-<last:020>.jsonl`; anything else (temp
/// files, foreign files) is `None`.
pub fn parse_segment_file_name(name: &str) -> Option<SegmentName> {
    let stem = name.strip_suffix(SEGMENT_EXTENSION)?;
    if stem.starts_with('.') {
        return None;
    }
    let (rest, last) = stem.rsplit_once('-')?;
    let (component, first) = rest.rsplit_once('-')?;
    let (first, last) = (seq20(first)?, seq20(last)?);
    if component.is_empty() || first > last {
        return None;
    }
    Some(SegmentName {
        component: component.to_owned(),
        first,
        last,
    })
}

/// The messages a segment holds: exact stream name -> sorted sequences.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members(Vec<(String, Vec<u64>)>);

impl Members {
    pub fn contains(&self, stream: &str, seq: u64) -> bool {
        self.0
            .iter()
            .any(|(s, seqs)| s == stream && seqs.binary_search(&seq).is_ok())
    }

    fn insert(&mut self, stream: &str, seq: u64) {
        match self.0.iter_mut().find(|(s, _)| s == stream) {
            Some((_, seqs)) => seqs.push(seq),
            None => self.0.push((stream.to_owned(), vec![seq])),
        }
    }

    fn finish(mut self) -> Self {
        for (_, seqs) in &mut self.0 {
            seqs.sort_unstable();
            seqs.dedup();
        }
        self
    }

    /// Members of a segment's content: every line that parses as a record
    /// with a string `stream` and an integer `stream_sequence`. Lines that do
    /// not (never produced by this sink) are ignored, which can only cause a
    /// duplicate later, never a loss.
    pub fn from_content(content: &[u8]) -> Members {
        let mut members = Members::default();
        for line in content.split(|&b| b == b'\n') {
            let Ok(text) = std::str::from_utf8(line) else {
                continue;
            };
            if text.trim().is_empty() {
                continue;
            }
            // A record nests the payload one level down.
            let Ok(record) = json::parse_with_depth(text, json::MAX_DEPTH + 1) else {
                continue;
            };
            if let (Some(stream), Some(seq)) = (
                record.get("stream").and_then(json::Json::as_str),
                record.get("stream_sequence").and_then(json::Json::as_u64),
            ) {
                members.insert(stream, seq);
            }
        }
        members.finish()
    }

    pub fn from_sequences(stream: &str, seqs: impl IntoIterator<Item = u64>) -> Members {
        let mut members = Members::default();
        for seq in seqs {
            members.insert(stream, seq);
        }
        members.finish()
    }
}

fn read_members(path: &Path) -> io::Result<Members> {
    Ok(Members::from_content(&std::fs::read(path)?))
}

#[derive(Debug)]
struct Segment {
    name: SegmentName,
    /// `None` until read.
    members: Option<Members>,
}

/// What the index knows about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Not stored (beyond every known segment).
    New,
    /// Stored in a segment that was read.
    Stored,
    /// Not in a recent segment, but older segments could hold it.
    Unknown,
}

/// What the sink knows about the segments on disk (see the module docs).
#[derive(Debug, Default)]
pub struct SegmentIndex {
    high_water: HashMap<String, u64>,
    recent: VecDeque<Segment>,
}

impl SegmentIndex {
    /// Lists `dir` once: high-water marks of every stream, the most recent
    /// segments (members read later, when needed).
    pub fn load(dir: &Path) -> io::Result<(Self, usize)> {
        let mut index = SegmentIndex::default();
        let mut newest: BinaryHeap<Reverse<(u64, SegmentName)>> = BinaryHeap::new();
        let mut count = 0usize;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().and_then(parse_segment_file_name) else {
                continue;
            };
            count += 1;
            index.raise_high_water(&name);
            newest.push(Reverse((name.last, name)));
            if newest.len() > RECENT_SEGMENTS {
                newest.pop();
            }
        }
        let mut names: Vec<SegmentName> = newest.into_iter().map(|Reverse((_, n))| n).collect();
        names.sort_by_key(|n| (n.last, n.first));
        index.recent = names
            .into_iter()
            .map(|name| Segment {
                name,
                members: None,
            })
            .collect();
        Ok((index, count))
    }

    fn raise_high_water(&mut self, name: &SegmentName) {
        let hw = self.high_water.entry(name.component.clone()).or_insert(0);
        *hw = (*hw).max(name.last);
    }

    pub fn high_water(&self, component: &str) -> Option<u64> {
        self.high_water.get(component).copied()
    }

    /// Remembers a segment and its members (written, or read from disk).
    pub fn remember(&mut self, name: SegmentName, members: Members) {
        self.raise_high_water(&name);
        if let Some(seg) = self.recent.iter_mut().find(|s| s.name == name) {
            seg.members = Some(members);
            return;
        }
        self.recent.push_back(Segment {
            name,
            members: Some(members),
        });
        while self.recent.len() > RECENT_SEGMENTS {
            self.recent.pop_front();
        }
    }

    /// Steps 1 and 2 of the module docs.
    pub fn lookup(
        &mut self,
        dir: &Path,
        stream: &str,
        component: &str,
        seq: u64,
    ) -> io::Result<Lookup> {
        match self.high_water(component) {
            Some(hw) if seq <= hw => {}
            _ => return Ok(Lookup::New),
        }
        let mut i = 0;
        while i < self.recent.len() {
            let seg = &mut self.recent[i];
            if seg.name.component == component && seg.name.first <= seq && seq <= seg.name.last {
                if seg.members.is_none() {
                    let path =
                        dir.join(segment_file_name(component, seg.name.first, seg.name.last));
                    match read_members(&path) {
                        Ok(members) => seg.members = Some(members),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            // Moved away: forget it.
                            self.recent.remove(i);
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
                if seg
                    .members
                    .as_ref()
                    .is_some_and(|m| m.contains(stream, seq))
                {
                    return Ok(Lookup::Stored);
                }
            }
            i += 1;
        }
        Ok(Lookup::Unknown)
    }

    /// Step 3: lists `dir` once and reads every segment whose range holds one
    /// of `wanted` (stream, component, seq). Returns the positions in
    /// `wanted` that are stored.
    pub fn scan(&mut self, dir: &Path, wanted: &[(&str, &str, u64)]) -> io::Result<HashSet<usize>> {
        let mut by_component: HashMap<&str, Vec<u64>> = HashMap::new();
        for (_, component, seq) in wanted {
            by_component.entry(component).or_default().push(*seq);
        }
        for seqs in by_component.values_mut() {
            seqs.sort_unstable();
        }
        let mut stored = HashSet::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().and_then(parse_segment_file_name) else {
                continue;
            };
            self.raise_high_water(&name);
            let Some(seqs) = by_component.get(name.component.as_str()) else {
                continue;
            };
            let at = seqs.partition_point(|&s| s < name.first);
            if at >= seqs.len() || seqs[at] > name.last {
                continue;
            }
            if self
                .recent
                .iter()
                .any(|s| s.name == name && s.members.is_some())
            {
                continue; // already checked by `lookup`
            }
            let members = match read_members(&entry.path()) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for (pos, (stream, component, seq)) in wanted.iter().enumerate() {
                if *component == name.component && members.contains(stream, *seq) {
                    stored.insert(pos);
                }
            }
            self.remember(name, members);
        }
        Ok(stored)
    }
}

/// Writes one segment per batch and stream.
#[derive(Debug)]
pub struct SegmentWriter {
    dir: PathBuf,
    index: SegmentIndex,
    temp_names: TempNames,
    /// `segments/` has entries this sink relies on that are not fsynced yet.
    dirty: bool,
}

fn io_error(what: &str, path: &Path, e: &io::Error) -> SinkError {
    SinkError::transient(format!("{what} {}: {}", path.display(), fs::describe(e)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Failed,
    New,
    Stored,
    Unknown,
    /// Same stream and sequence as an earlier message of the batch.
    DuplicateOf(usize),
}

struct Line {
    index: usize,
    seq: u64,
    bytes: Vec<u8>,
}

impl SegmentWriter {
    /// Opens `<root>/segments` (creating it) and loads the index.
    pub fn open(root: &Path, fsync: bool) -> Result<Self, String> {
        let dir = root.join(SEGMENTS_DIR);
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                if fsync {
                    fs::sync_dir(root).map_err(|e| {
                        format!("cannot fsync {}: {}", root.display(), fs::describe(&e))
                    })?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(format!(
                    "cannot create {}: {}",
                    dir.display(),
                    fs::describe(&e)
                ))
            }
        }
        let (index, count) = SegmentIndex::load(&dir)
            .map_err(|e| format!("cannot list {}: {}", dir.display(), fs::describe(&e)))?;
        log::info(&format!(
            "segment index: {count} segment file(s) in {}, {} stream(s)",
            dir.display(),
            index.high_water.len()
        ));
        Ok(SegmentWriter {
            dir,
            index,
            temp_names: TempNames::new(),
            dirty: false,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn write_batch(
        &mut self,
        batch: &[Envelope],
        cfg: &FileSinkConfig,
        clock: &dyn Fn() -> i64,
    ) -> Result<BatchReport, SinkError> {
        let mut report = BatchReport::default();
        let mut states = vec![State::Failed; batch.len()];
        let mut components: HashMap<&str, String> = HashMap::new();
        let mut first_seen: HashMap<(&str, u64), usize> = HashMap::new();

        // 1. What is already stored?
        for (i, env) in batch.iter().enumerate() {
            if env.stream.is_empty() {
                report.fail(
                    i,
                    SinkError::permanent(
                        "segment layout needs the stream name, but the message has none",
                    ),
                );
                continue;
            }
            if let Some(&j) = first_seen.get(&(env.stream.as_str(), env.stream_sequence)) {
                states[i] = State::DuplicateOf(j);
                continue;
            }
            first_seen.insert((env.stream.as_str(), env.stream_sequence), i);
            let component = components
                .entry(env.stream.as_str())
                .or_insert_with(|| stream_component(&env.stream));
            states[i] =
                match self
                    .index
                    .lookup(&self.dir, &env.stream, component, env.stream_sequence)
                {
                    Ok(Lookup::New) => State::New,
                    Ok(Lookup::Stored) => State::Stored,
                    Ok(Lookup::Unknown) => State::Unknown,
                    Err(e) => return Err(io_error("cannot read segments in", &self.dir, &e)),
                };
        }
        let unknown: Vec<usize> = (0..batch.len())
            .filter(|&i| states[i] == State::Unknown)
            .collect();
        if !unknown.is_empty() {
            let wanted: Vec<(&str, &str, u64)> = unknown
                .iter()
                .map(|&i| {
                    let env = &batch[i];
                    (
                        env.stream.as_str(),
                        components[env.stream.as_str()].as_str(),
                        env.stream_sequence,
                    )
                })
                .collect();
            log::debug(&format!(
                "{} message(s) below the high-water mark and not in a recent segment: scanning {}",
                wanted.len(),
                self.dir.display()
            ));
            let stored = self
                .index
                .scan(&self.dir, &wanted)
                .map_err(|e| io_error("cannot scan segments in", &self.dir, &e))?;
            for (pos, &i) in unknown.iter().enumerate() {
                states[i] = if stored.contains(&pos) {
                    State::Stored
                } else {
                    State::New
                };
            }
        }

        // 2. Records of the new messages, grouped by stream in batch order.
        let mut groups: Vec<(&str, Vec<Line>)> = Vec::new();
        for (i, env) in batch.iter().enumerate() {
            if states[i] != State::New {
                continue;
            }
            match record::build_record(env, cfg.payload_mode, clock()) {
                Ok(rec) => {
                    let line = Line {
                        index: i,
                        seq: env.stream_sequence,
                        bytes: record::render(&rec, false),
                    };
                    match groups.iter_mut().find(|(s, _)| *s == env.stream) {
                        Some((_, lines)) => lines.push(line),
                        None => groups.push((env.stream.as_str(), vec![line])),
                    }
                }
                Err(e) => {
                    states[i] = State::Failed;
                    report.fail(i, SinkError::permanent(e.to_string()));
                }
            }
        }

        // 3. One segment per stream.
        for (stream, lines) in groups {
            let component = components[stream].clone();
            for index in self.place(stream, &component, lines, cfg.fsync)? {
                states[index] = State::Stored;
            }
        }

        // 4. Duplicates: the policy; in-batch repeats follow their first.
        for (i, state) in states.iter().enumerate() {
            let state = match *state {
                State::DuplicateOf(j) if states[j] == State::Failed => {
                    if let Some(f) = report
                        .failures
                        .iter()
                        .find(|f| f.index as usize == j)
                        .cloned()
                    {
                        report.fail(i, f.error);
                    }
                    continue;
                }
                State::DuplicateOf(_) => State::Stored,
                other => other,
            };
            if state == State::Stored {
                self.dirty = true;
                if cfg.duplicate_policy == DuplicatePolicy::Fail {
                    report.fail(
                        i,
                        SinkError::permanent(format!(
                            "message {} sequence {} is already stored in a segment (duplicate_policy \"fail\")",
                            batch[i].stream, batch[i].stream_sequence
                        )),
                    );
                }
            }
        }

        // 5. One directory fsync for the batch.
        if cfg.fsync && self.dirty {
            fs::sync_dir(&self.dir).map_err(|e| io_error("cannot fsync", &self.dir, &e))?;
        }
        self.dirty = false;
        Ok(report.sorted())
    }

    /// Writes `lines` as one segment. Returns the indices found already
    /// stored in an existing segment of the same name.
    fn place(
        &mut self,
        stream: &str,
        component: &str,
        mut lines: Vec<Line>,
        fsync: bool,
    ) -> Result<Vec<usize>, SinkError> {
        let mut found = Vec::new();
        for _ in 0..PLACE_ATTEMPTS {
            let (Some(first), Some(last)) = (
                lines.iter().map(|l| l.seq).min(),
                lines.iter().map(|l| l.seq).max(),
            ) else {
                return Ok(found);
            };
            let name = SegmentName {
                component: component.to_owned(),
                first,
                last,
            };
            let dest = self.dir.join(segment_file_name(component, first, last));
            let mut content = Vec::with_capacity(lines.iter().map(|l| l.bytes.len()).sum());
            for line in &lines {
                content.extend_from_slice(&line.bytes);
            }
            let hint = format!("{component}-{first:020}");
            let temp = fs::write_temp(&self.dir, &mut self.temp_names, &hint, &content, fsync)
                .map_err(|e| io_error("cannot write temporary segment in", &self.dir, &e))?;
            drop(content);
            match fs::place_no_replace(&temp, &dest) {
                Ok(Placed::Created) => {
                    self.dirty = true;
                    let members = Members::from_sequences(stream, lines.iter().map(|l| l.seq));
                    self.index.remember(name, members);
                    return Ok(found);
                }
                Ok(Placed::AlreadyExists) => {
                    let members =
                        read_members(&dest).map_err(|e| io_error("cannot read", &dest, &e))?;
                    let before = lines.len();
                    lines.retain(|l| {
                        let stored = members.contains(stream, l.seq);
                        if stored {
                            found.push(l.index);
                        }
                        !stored
                    });
                    self.index.remember(name, members);
                    self.dirty = true;
                    if lines.len() == before {
                        break;
                    }
                    log::info(&format!(
                        "segment {} already exists: {} of its messages were stored before",
                        dest.display(),
                        before - lines.len()
                    ));
                }
                Err(e) => return Err(io_error("cannot place", &dest, &e)),
            }
        }
        let message = format!(
            "cannot place a segment for stream {stream:?}: a file of the same name exists in {} and does not \
             hold these messages (unreadable or foreign file?); move it away",
            self.dir.display()
        );
        log::error(&message);
        Err(SinkError::transient(message))
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
            layout: Layout::Segment,
            ..FileSinkConfig::default()
        }
    }

    fn msg(seq: u64) -> Envelope {
        Envelope {
            stream_sequence: seq,
            payload: format!("{{\"n\":{seq}}}").into_bytes(),
            ..vector_envelope()
        }
    }

    fn batch(seqs: &[u64]) -> Vec<Envelope> {
        seqs.iter().map(|&s| msg(s)).collect()
    }

    fn clock() -> i64 {
        VECTOR_STORED_AT
    }

    /// (file name, sequences in it) of every segment, sorted.
    fn segments(root: &Path) -> Vec<(String, Vec<u64>)> {
        let mut out: Vec<(String, Vec<u64>)> = std::fs::read_dir(root.join(SEGMENTS_DIR))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                let content = std::fs::read_to_string(e.path()).unwrap();
                let seqs = content
                    .lines()
                    .map(|l| {
                        serde_json::from_str::<serde_json::Value>(l).unwrap()["stream_sequence"]
                            .as_u64()
                            .unwrap()
                    })
                    .collect();
                (name, seqs)
            })
            .collect();
        out.sort();
        out
    }

    fn all_seqs(root: &Path) -> Vec<u64> {
        let mut all: Vec<u64> = segments(root).into_iter().flat_map(|(_, s)| s).collect();
        all.sort_unstable();
        all
    }

    #[test]
    fn names() {
        assert_eq!(
            segment_file_name("BENCH", 1, 100),
            "BENCH-00000000000000000001-00000000000000000100.jsonl"
        );
        assert_eq!(
            parse_segment_file_name("A-B-00000000000000000001-00000000000000000100.jsonl"),
            Some(SegmentName {
                component: "A-B".into(),
                first: 1,
                last: 100
            })
        );
        for bad in [
            ".tmp-BENCH-00000000000000000001-00000000000000000100.jsonl",
            "BENCH-00000000000000000001-00000000000000000100.json",
            "BENCH-1-100.jsonl",
            "-00000000000000000001-00000000000000000100.jsonl",
            "BENCH-00000000000000000100-00000000000000000001.jsonl",
            "BENCH-0000000000000000000x-00000000000000000100.jsonl",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
        assert_eq!(stream_component("BENCH"), "BENCH");
        let odd = stream_component("a b");
        assert!(odd.starts_with("a_b_") && odd.len() == 4 + 16, "{odd}");
        assert_ne!(stream_component("a b"), stream_component("a_b"));
        assert_eq!(stream_component("a_b"), "a_b");
    }

    #[test]
    fn members_from_content() {
        let rec = String::from_utf8(record::render(
            &record::build_record(&vector_envelope(), PayloadMode::JsonOrEnvelope, 0).unwrap(),
            false,
        ))
        .unwrap();
        // A payload that mentions stream_sequence does not confuse it.
        let mut tricky = msg(9);
        tricky.payload = br#"{"stream":"BENCH","stream_sequence":1000}"#.to_vec();
        let rec2 = String::from_utf8(record::render(
            &record::build_record(&tricky, PayloadMode::JsonOrEnvelope, 0).unwrap(),
            false,
        ))
        .unwrap();
        let content = format!("{rec}{rec2}garbage\n{{\"stream\":\"X\"}}\n");
        let m = Members::from_content(content.as_bytes());
        assert!(m.contains("BENCH", 7) && m.contains("BENCH", 9));
        assert!(!m.contains("BENCH", 1000) && !m.contains("BENCH", 8) && !m.contains("OTHER", 7));
    }

    #[test]
    fn writes_one_segment_per_batch() {
        let root = tempfile::tempdir().unwrap();
        let c = cfg(root.path());
        let mut w = SegmentWriter::open(root.path(), true).unwrap();
        let report = w.write_batch(&batch(&[1, 2, 3]), &c, &clock).unwrap();
        assert!(report.failures.is_empty());
        assert_eq!(
            segments(root.path()),
            vec![(
                "BENCH-00000000000000000001-00000000000000000003.jsonl".into(),
                vec![1, 2, 3]
            )]
        );
        // Lines are the per-message record.
        let text = std::fs::read_to_string(
            root.path()
                .join("segments/BENCH-00000000000000000001-00000000000000000003.jsonl"),
        )
        .unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["schema"], "nats_sinks.file.message.v1");
        assert_eq!(first["payload"], serde_json::json!({"n": 1}));
        assert!(text.ends_with('\n') && !text.contains(".tmp-"));
        assert_eq!(
            std::fs::read_dir(root.path().join(SEGMENTS_DIR))
                .unwrap()
                .count(),
            1
        );
    }

    #[test]
    fn redelivery_in_same_instance_is_skipped() {
        let root = tempfile::tempdir().unwrap();
        let c = cfg(root.path());
        let mut w = SegmentWriter::open(root.path(), false).unwrap();
        w.write_batch(&batch(&[1, 2, 3]), &c, &clock).unwrap();
        let report = w.write_batch(&batch(&[2, 3, 4, 5]), &c, &clock).unwrap();
        assert!(report.failures.is_empty());
        assert_eq!(all_seqs(root.path()), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn redelivery_after_restart_differently_composed() {
        let root = tempfile::tempdir().unwrap();
        let c = cfg(root.path());
        {
            let mut w = SegmentWriter::open(root.path(), true).unwrap();
            // A batch with gaps: 10, 12, 15 (11, 13, 14 belong to another consumer's filter).
            w.write_batch(&batch(&[10, 12, 15]), &c, &clock).unwrap();
            w.write_batch(&batch(&[16, 17]), &c, &clock).unwrap();
        }
        // "Crash": new instance, redelivery composed differently, including
        // sequences inside the first segment's range that it does not hold.
        let mut w = SegmentWriter::open(root.path(), true).unwrap();
        let report = w
            .write_batch(&batch(&[11, 12, 13, 15, 16, 18]), &c, &clock)
            .unwrap();
        assert!(report.failures.is_empty());
        assert_eq!(all_seqs(root.path()), vec![10, 11, 12, 13, 15, 16, 17, 18]);
        assert!(segments(root.path()).contains(&(
            "BENCH-00000000000000000011-00000000000000000018.jsonl".to_string(),
            vec![11, 13, 18]
        )));
        // Once more, everything is stored: nothing new is written.
        let before = segments(root.path()).len();
        let report = w
            .write_batch(&batch(&[10, 11, 12, 13, 15, 16, 17, 18]), &c, &clock)
            .unwrap();
        assert!(report.failures.is_empty());
        assert_eq!(segments(root.path()).len(), before);
    }

    #[test]
    fn old_segments_beyond_the_recent_window_are_found_by_scanning() {
        let root = tempfile::tempdir().unwrap();
        let c = cfg(root.path());
        let mut w = SegmentWriter::open(root.path(), false).unwrap();
        for n in 0..(RECENT_SEGMENTS as u64 + 10) {
            w.write_batch(&batch(&[2 * n + 1]), &c, &clock).unwrap();
        }
        let total = segments(root.path()).len();
        // Seq 1 is in the very first segment (evicted from memory); seq 2 was never written.
        let report = w.write_batch(&batch(&[1, 2]), &c, &clock).unwrap();
        assert!(report.failures.is_empty());
        assert_eq!(segments(root.path()).len(), total + 1);
        assert!(segments(root.path()).contains(&(
            "BENCH-00000000000000000002-00000000000000000002.jsonl".into(),
            vec![2]
        )));
    }

    #[test]
    fn name_collision_with_foreign_composition() {
        let root = tempfile::tempdir().unwrap();
        let c = cfg(root.path());
        // Another instance wrote 1 and 3 (name 1-3); this instance does not know it.
        let mut w = SegmentWriter::open(root.path(), false).unwrap();
        let mut other = SegmentWriter::open(root.path(), false).unwrap();
        other.write_batch(&batch(&[1, 3]), &c, &clock).unwrap();
        let report = w.write_batch(&batch(&[1, 2, 3]), &c, &clock).unwrap();
        assert!(report.failures.is_empty());
        assert_eq!(
            segments(root.path()),
            vec![
                (
                    "BENCH-00000000000000000001-00000000000000000003.jsonl".into(),
                    vec![1, 3]
                ),
                (
                    "BENCH-00000000000000000002-00000000000000000002.jsonl".into(),
                    vec![2]
                ),
            ]
        );
    }

    #[test]
    fn corrupt_file_under_the_name_is_a_transient_error() {
        let root = tempfile::tempdir().unwrap();
        let c = cfg(root.path());
        let mut w = SegmentWriter::open(root.path(), false).unwrap();
        std::fs::write(
            root.path()
                .join("segments/BENCH-00000000000000000001-00000000000000000002.jsonl"),
            b"junk\n",
        )
        .unwrap();
        let e = w.write_batch(&batch(&[1, 2]), &c, &clock).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Transient);
        // No temp files left behind.
        assert_eq!(
            std::fs::read_dir(root.path().join(SEGMENTS_DIR))
                .unwrap()
                .count(),
            1
        );
    }

    #[test]
    fn per_message_failures_and_fail_policy() {
        let root = tempfile::tempdir().unwrap();
        let c = FileSinkConfig {
            payload_mode: PayloadMode::JsonOnly,
            duplicate_policy: DuplicatePolicy::Fail,
            ..cfg(root.path())
        };
        let mut w = SegmentWriter::open(root.path(), true).unwrap();
        let mut b = batch(&[1, 2, 3]);
        b[1].payload = b"not json".to_vec();
        let report = w.write_batch(&b, &c, &clock).unwrap();
        assert_eq!(report.failures.len(), 1);
        assert_eq!(
            (report.failures[0].index, report.failures[0].error.kind),
            (1, ErrorKind::Permanent)
        );
        assert_eq!(all_seqs(root.path()), vec![1, 3]);

        // Under "fail", already stored messages are permanent failures; new ones are written.
        let report = w.write_batch(&batch(&[3, 4, 4]), &c, &clock).unwrap();
        let failed: Vec<u32> = report.failures.iter().map(|f| f.index).collect();
        assert_eq!(failed, vec![0, 2]);
        assert!(report
            .failures
            .iter()
            .all(|f| f.error.kind == ErrorKind::Permanent));
        assert_eq!(all_seqs(root.path()), vec![1, 3, 4]);
    }

    #[test]
    fn duplicate_in_batch_follows_its_first() {
        let root = tempfile::tempdir().unwrap();
        let c = FileSinkConfig {
            payload_mode: PayloadMode::JsonOnly,
            ..cfg(root.path())
        };
        let mut w = SegmentWriter::open(root.path(), false).unwrap();
        let mut b = batch(&[1, 1, 2, 2]);
        b[2].payload = b"x".to_vec();
        b[3].payload = b"x".to_vec();
        let report = w.write_batch(&b, &c, &clock).unwrap();
        let failed: Vec<u32> = report.failures.iter().map(|f| f.index).collect();
        assert_eq!(failed, vec![2, 3]);
        assert_eq!(all_seqs(root.path()), vec![1]);
    }

    #[test]
    fn streams_get_their_own_segments() {
        let root = tempfile::tempdir().unwrap();
        let c = cfg(root.path());
        let mut w = SegmentWriter::open(root.path(), false).unwrap();
        let mut b = batch(&[1, 2]);
        b.push(Envelope {
            stream: "OTHER".into(),
            ..msg(1)
        });
        b.push(Envelope {
            stream: String::new(),
            ..msg(5)
        });
        let report = w.write_batch(&b, &c, &clock).unwrap();
        assert_eq!(report.failures.len(), 1);
        assert_eq!(report.failures[0].index, 3);
        let names: Vec<String> = segments(root.path()).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            vec![
                "BENCH-00000000000000000001-00000000000000000002.jsonl",
                "OTHER-00000000000000000001-00000000000000000001.jsonl"
            ]
        );
    }

    #[test]
    fn index_loading() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(SEGMENTS_DIR);
        std::fs::create_dir(&dir).unwrap();
        for (f, l) in [(1u64, 5u64), (6, 9), (20, 20)] {
            std::fs::write(dir.join(segment_file_name("S", f, l)), b"").unwrap();
        }
        std::fs::write(dir.join(".tmp-S-00000000000000000030-abc-1"), b"").unwrap();
        std::fs::write(dir.join("README"), b"").unwrap();
        let (mut index, count) = SegmentIndex::load(&dir).unwrap();
        assert_eq!(count, 3);
        assert_eq!(index.high_water("S"), Some(20));
        assert_eq!(index.high_water("T"), None);
        assert_eq!(index.lookup(&dir, "S", "S", 21).unwrap(), Lookup::New);
        // Empty files hold nothing: not stored, and not "new" either.
        assert_eq!(index.lookup(&dir, "S", "S", 3).unwrap(), Lookup::Unknown);
        assert_eq!(index.lookup(&dir, "T", "T", 3).unwrap(), Lookup::New);
    }
}
