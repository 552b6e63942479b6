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
//! Which messages are looked up at all:
//! - a **first delivery** (`delivery_count == 1`) whose sequence is above the
//!   high-water mark found when this instance started (largest `last` of the
//!   segments in `segments/` at `init`) is new, with no I/O. JetStream hands
//!   a message to one pull request at a time and counts every hand-out, so a
//!   message with count 1 was never given to any sink call before this one,
//!   and no segment written since this instance started can hold it. This is
//!   what keeps several instances cheap: their batches interleave sequences,
//!   so "below what I have seen" says nothing; the delivery count does.
//! - everything else is looked up: a **redelivery** (`delivery_count > 1`,
//!   or 0 = unknown), and a first delivery at or below the start-up
//!   high-water mark (a replay by a new consumer, segments of an earlier run).
//!   First the segments this instance knows the members of (written or read,
//!   the last [`RECENT_SEGMENTS`]); for the rest `segments/` is listed once
//!   for the batch (so segments of other instances are seen) and every
//!   segment whose range holds such a sequence and whose members are not
//!   known yet is read.
//!
//! Duplicates remain possible when two instances write the same redelivered
//! message at the same moment (neither sees the other's file yet), when
//! segments are moved away from `segments/` and their messages are delivered
//! again, and when JetStream hands out a stored message again as a first
//! delivery (the consumer was deleted and re-created while an instance kept
//! running, or the server lost the consumer's delivery state in a crash).
//! All leave two lines with the same stream and sequence in different
//! files; readers can drop duplicates by that key.
//!
//! If the final name is taken (a differently composed batch produced the same
//! first/last), the existing file is read, the messages it holds are treated
//! as already stored, and the rest is placed under the new first/last.
//!
//! All I/O errors fail the whole batch as transient (nothing is reported
//! stored); segments already linked stay known to the index, so the retry
//! skips them (and fsyncs `segments/` before reporting success).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

use crate::config::{DuplicatePolicy, FileSinkConfig};
use crate::fs::{self, Placed, TempNames};
use crate::json;
use crate::layout::{safe_path_component, sorted};
use crate::payload::sha256_hex;
use crate::record;
use sinkhost_sdk::log;
use sinkhost_sdk::{BatchReport, Envelope, SinkError};

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
    members: Members,
}

/// How much looking up the index did (for logs and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// Messages that had to be looked up on disk (redeliveries and replays
    /// not found in a segment this instance knows).
    pub looked_up: u64,
    /// Listings of `segments/`.
    pub listings: u64,
    /// Segment files read.
    pub segments_read: u64,
}

/// What the sink knows about the segments on disk (see the module docs).
#[derive(Debug, Default)]
pub struct SegmentIndex {
    /// Per stream component: the largest `last` of the segments listed at
    /// start-up. Fixed for the life of the instance.
    startup_high_water: HashMap<String, u64>,
    /// Segments whose members are known (written by this instance, or read),
    /// oldest first.
    recent: VecDeque<Segment>,
    stats: LookupStats,
}

impl SegmentIndex {
    /// Lists `dir` once for the start-up high-water marks. Returns the index
    /// and the number of segment files found.
    pub fn load(dir: &Path) -> io::Result<(Self, usize)> {
        let mut index = SegmentIndex::default();
        let mut count = 0usize;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().and_then(parse_segment_file_name) else {
                continue;
            };
            count += 1;
            let hw = index
                .startup_high_water
                .entry(name.component.clone())
                .or_insert(0);
            *hw = (*hw).max(name.last);
        }
        Ok((index, count))
    }

    /// The largest `last` of the stream's segments at start-up.
    pub fn startup_high_water(&self, component: &str) -> Option<u64> {
        self.startup_high_water.get(component).copied()
    }

    pub fn stats(&self) -> LookupStats {
        self.stats
    }

    /// Whether a message must be looked up (see the module docs): anything
    /// but a first delivery above the start-up high-water mark.
    pub fn needs_lookup(&self, component: &str, seq: u64, delivery_count: u64) -> bool {
        delivery_count != 1
            || self
                .startup_high_water(component)
                .is_some_and(|hw| seq <= hw)
    }

    /// Remembers a segment and its members (written, or read from disk).
    pub fn remember(&mut self, name: SegmentName, members: Members) {
        if let Some(seg) = self.recent.iter_mut().find(|s| s.name == name) {
            seg.members = members;
            return;
        }
        self.recent.push_back(Segment { name, members });
        while self.recent.len() > RECENT_SEGMENTS {
            self.recent.pop_front();
        }
    }

    fn known_members(&self, name: &SegmentName) -> Option<&Members> {
        self.recent
            .iter()
            .find(|s| s.name == *name)
            .map(|s| &s.members)
    }

    /// Whether a segment whose members are known holds the message (no I/O).
    pub fn known_stored(&self, stream: &str, component: &str, seq: u64) -> bool {
        self.recent.iter().any(|s| {
            s.name.component == component
                && s.name.first <= seq
                && seq <= s.name.last
                && s.members.contains(stream, seq)
        })
    }

    /// Lists `dir` once and checks every segment whose range holds one of
    /// `wanted` (stream, component, seq), reading those whose members are not
    /// known yet. Returns the positions in `wanted` that are stored.
    pub fn scan(&mut self, dir: &Path, wanted: &[(&str, &str, u64)]) -> io::Result<HashSet<usize>> {
        let mut by_component: HashMap<&str, Vec<u64>> = HashMap::new();
        for (_, component, seq) in wanted {
            by_component.entry(component).or_default().push(*seq);
        }
        for seqs in by_component.values_mut() {
            seqs.sort_unstable();
        }
        self.stats.listings += 1;
        let mut stored = HashSet::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().and_then(parse_segment_file_name) else {
                continue;
            };
            let Some(seqs) = by_component.get(name.component.as_str()) else {
                continue;
            };
            let at = seqs.partition_point(|&s| s < name.first);
            if at >= seqs.len() || seqs[at] > name.last {
                continue;
            }
            if self.known_members(&name).is_none() {
                let members = match read_members(&entry.path()) {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                self.stats.segments_read += 1;
                self.remember(name.clone(), members);
            }
            let Some(members) = self.known_members(&name) else {
                continue;
            };
            for (pos, (stream, component, seq)) in wanted.iter().enumerate() {
                if *component == name.component && members.contains(stream, *seq) {
                    stored.insert(pos);
                }
            }
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
            index.startup_high_water.len()
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

    /// How much looking up this instance did so far.
    pub fn lookup_stats(&self) -> LookupStats {
        self.index.stats()
    }

    pub fn write_batch(
        &mut self,
        batch: &[Envelope],
        cfg: &FileSinkConfig,
        clock: &dyn Fn() -> i64,
    ) -> Result<BatchReport, SinkError> {
        let mut report = BatchReport::all_stored();
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
                if !self
                    .index
                    .needs_lookup(component, env.stream_sequence, env.delivery_count)
                {
                    State::New
                } else if self
                    .index
                    .known_stored(&env.stream, component, env.stream_sequence)
                {
                    State::Stored
                } else {
                    State::Unknown
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
            self.index.stats.looked_up += wanted.len() as u64;
            log::debug(&format!(
                "{} redelivered or replayed message(s) not in a known segment: scanning {}",
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
            match record::render_record(env, cfg.payload_mode, clock(), false) {
                Ok(bytes) => {
                    let line = Line {
                        index: i,
                        seq: env.stream_sequence,
                        bytes,
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
        Ok(sorted(report))
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
    use crate::payload::PayloadMode;
    use crate::record::tests::{vector_envelope, VECTOR_STORED_AT};
    use sinkhost_sdk::ErrorKind;

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

    /// The same messages, delivered again (`delivery_count` 2).
    fn again(seqs: &[u64]) -> Vec<Envelope> {
        seqs.iter()
            .map(|&s| Envelope {
                delivery_count: 2,
                ..msg(s)
            })
            .collect()
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
        // 2 and 3 come again (their ACK was lost), 4 and 5 are new.
        let mut b = again(&[2, 3]);
        b.extend(batch(&[4, 5]));
        let report = w.write_batch(&b, &c, &clock).unwrap();
        assert!(report.failures.is_empty());
        assert_eq!(all_seqs(root.path()), vec![1, 2, 3, 4, 5]);
        // Found in this instance's memory: no listing, no read.
        assert_eq!(
            w.lookup_stats(),
            LookupStats {
                looked_up: 0,
                listings: 0,
                segments_read: 0
            }
        );
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
            .write_batch(&again(&[10, 11, 12, 13, 15, 16, 17, 18]), &c, &clock)
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
        let report = w.write_batch(&again(&[1, 2]), &c, &clock).unwrap();
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
        let mut b = again(&[3]);
        b.extend(batch(&[4, 4]));
        let report = w.write_batch(&b, &c, &clock).unwrap();
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
        assert_eq!(index.startup_high_water("S"), Some(20));
        assert_eq!(index.startup_high_water("T"), None);
        // First deliveries above the start-up mark: no look-up.
        assert!(!index.needs_lookup("S", 21, 1));
        assert!(!index.needs_lookup("T", 3, 1));
        // At or below it (a replay), redelivered, or unknown count: look up.
        assert!(index.needs_lookup("S", 20, 1));
        assert!(index.needs_lookup("S", 21, 2));
        assert!(index.needs_lookup("T", 3, 0));
        // Empty files hold nothing: not stored.
        let stored = index.scan(&dir, &[("S", "S", 3), ("S", "S", 20)]).unwrap();
        assert!(stored.is_empty());
        assert_eq!(index.stats().segments_read, 2);
        assert!(!index.known_stored("S", "S", 3));
    }

    /// Like the host's pool: instances whose batches interleave sequences.
    #[test]
    fn concurrent_instances_first_deliveries_need_no_lookup() {
        let root = tempfile::tempdir().unwrap();
        let c = FileSinkConfig {
            fsync: true,
            ..cfg(root.path())
        };
        let mut a = SegmentWriter::open(root.path(), true).unwrap();
        let mut b = SegmentWriter::open(root.path(), true).unwrap();
        let (mut seqs_a, mut seqs_b) = (Vec::new(), Vec::new());
        for round in 0..20u64 {
            let base = round * 10;
            let odd: Vec<u64> = (1..=9).step_by(2).map(|k| base + k).collect();
            let even: Vec<u64> = (2..=10).step_by(2).map(|k| base + k).collect();
            // Out of order on purpose: b's batch lies below a's latest.
            assert!(b
                .write_batch(&batch(&even), &c, &clock)
                .unwrap()
                .failures
                .is_empty());
            assert!(a
                .write_batch(&batch(&odd), &c, &clock)
                .unwrap()
                .failures
                .is_empty());
            seqs_a.extend(odd);
            seqs_b.extend(even);
        }
        assert_eq!(all_seqs(root.path()), (1..=200).collect::<Vec<u64>>());
        for w in [&a, &b] {
            assert_eq!(w.lookup_stats(), LookupStats::default());
        }

        // Redeliveries: 5 (a wrote it), 6 (b wrote it: a must read b's
        // segment), 201 (never written).
        let report = a.write_batch(&again(&[5, 6, 201]), &c, &clock).unwrap();
        assert!(report.failures.is_empty());
        assert_eq!(all_seqs(root.path()), (1..=201).collect::<Vec<u64>>());
        let stats = a.lookup_stats();
        assert_eq!(stats.looked_up, 2, "{stats:?}"); // 5 was known in memory
        assert_eq!(stats.listings, 1, "{stats:?}");
        assert_eq!(stats.segments_read, 1, "{stats:?}"); // only b's 2..10 holds 6
        assert!(segments(root.path()).contains(&(
            "BENCH-00000000000000000201-00000000000000000201.jsonl".into(),
            vec![201]
        )));

        // Found segments are remembered: the same redelivery again reads nothing new.
        let report = a.write_batch(&again(&[6]), &c, &clock).unwrap();
        assert!(report.failures.is_empty());
        assert_eq!(a.lookup_stats().segments_read, 1);
        assert_eq!(a.lookup_stats().listings, 1);
    }

    #[test]
    fn a_new_instance_looks_up_first_deliveries_up_to_what_existed_at_start() {
        let root = tempfile::tempdir().unwrap();
        let c = cfg(root.path());
        {
            let mut w = SegmentWriter::open(root.path(), false).unwrap();
            w.write_batch(&batch(&[1, 2, 3]), &c, &clock).unwrap();
            w.write_batch(&batch(&[4, 5]), &c, &clock).unwrap();
        }
        // A re-created consumer replays everything as first deliveries.
        let mut w = SegmentWriter::open(root.path(), false).unwrap();
        let report = w
            .write_batch(&batch(&[1, 2, 3, 4, 5, 6]), &c, &clock)
            .unwrap();
        assert!(report.failures.is_empty());
        assert_eq!(all_seqs(root.path()), vec![1, 2, 3, 4, 5, 6]);
        let stats = w.lookup_stats();
        assert_eq!(
            (stats.looked_up, stats.listings, stats.segments_read),
            (5, 1, 2)
        );
        // Above the start-up mark, first deliveries are not looked up.
        w.write_batch(&batch(&[7, 8]), &c, &clock).unwrap();
        assert_eq!(w.lookup_stats(), stats);
    }
}
