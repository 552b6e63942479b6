//! Building the JSON record of one message, schema
//! `nats_sinks.file.message.v1`, compatible with the reference file sink.
//!
//! Pure: no I/O, no clock (the caller passes `stored_at`).
//!
//! Field sources, where sinkhost differs from the reference's inputs:
//! - `metadata.reply` is always `null`: plugins never see the ACK subject.
//! - `metadata.jetstream.domain` is `null`: the envelope does not carry it.
//! - `metadata.jetstream.redelivered` is `delivery-count > 1`.
//! - `*_epoch_ns` keep the host's full nanosecond precision; the ISO texts
//!   (`timestamp`, `received_at`, `stored_at`) have microseconds, formatted as
//!   Python's `isoformat()` (fraction omitted when zero).
//! - `metadata.payload.original_size_bytes` is the delivered size (or the
//!   `Nats-Msg-Size` header): the envelope does not carry the size before the
//!   host's encryption.
//! - Headers: the envelope keeps repeated names; the record's `headers` object
//!   keeps the *last* value of a repeated name (at the position of its first
//!   occurrence for the case-insensitive look-ups below). Names are trimmed;
//!   empty names and names with control characters are dropped, as in the
//!   reference.

use crate::config::has_control_chars;
use crate::json::{self, Json};
use crate::payload::{self, PayloadError, PayloadMode};
use crate::time::{iso_utc_micros, parse_rfc3339_ns};
use sinkhost_sdk::{Custody, Envelope};

pub const SCHEMA: &str = "nats_sinks.file.message.v1";
pub const CUSTODY_SCHEMA: &str = "nats_sinks.custody.v1";

/// NATS headers the reference names explicitly in `metadata.nats`.
const RESERVED_HEADER_NAMES: &[&str] = &[
    "Nats-Msg-Id",
    "Nats-Expected-Stream",
    "Nats-Expected-Last-Msg-Id",
    "Nats-Expected-Last-Sequence",
    "Nats-Expected-Last-Subject-Sequence",
    "Nats-Expected-Last-Subject-Sequence-Subject",
    "Nats-Rollup",
    "Nats-TTL",
    "Nats-Stream",
    "Nats-Subject",
    "Nats-Sequence",
    "Nats-Last-Sequence",
    "Nats-Time-Stamp",
    "Nats-Num-Pending",
    "Nats-UpTo-Sequence",
    "Nats-Stream-Source",
    "Nats-Trace-Dest",
    "Nats-Trace-Only",
    "Nats-Trace-Hop",
    "Nats-Trace-Origin-Account",
    "Nats-Schedule",
    "Nats-Schedule-TTL",
    "Nats-Schedule-Target",
    "Nats-Schedule-Time-Zone",
    // Standard headers that are not `Nats-` prefixed.
    "traceparent",
    "Accept-Encoding",
];

/// Case folding for header-name comparison: lower case plus the few full
/// case foldings (Python `str.casefold`) that produce ASCII letters.
fn fold(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            'ß' | 'ẞ' => out.push_str("ss"),
            'ſ' => out.push('s'),
            'ﬀ' => out.push_str("ff"),
            'ﬁ' => out.push_str("fi"),
            'ﬂ' => out.push_str("fl"),
            'ﬃ' => out.push_str("ffi"),
            'ﬄ' => out.push_str("ffl"),
            'ﬅ' | 'ﬆ' => out.push_str("st"),
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// The envelope's headers as the record stores them: trimmed names, invalid
/// names dropped, one entry per exact name (last value wins, first position
/// kept).
pub fn normalized_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = name.trim();
        if name.is_empty() || has_control_chars(name) {
            continue;
        }
        match out.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1.clone_from(value),
            None => out.push((name.to_owned(), value.clone())),
        }
    }
    out
}

/// The headers with their case-folded names, folded once per record.
struct FoldedHeaders<'a> {
    headers: &'a [(String, String)],
    folded: Vec<String>,
}

impl<'a> FoldedHeaders<'a> {
    fn new(headers: &'a [(String, String)]) -> Self {
        FoldedHeaders {
            headers,
            folded: headers.iter().map(|(n, _)| fold(n)).collect(),
        }
    }

    /// First header whose name matches `name` case-insensitively.
    fn lookup(&self, name: &str) -> Option<&'a str> {
        if self.headers.is_empty() {
            return None;
        }
        let wanted = fold(name);
        self.folded
            .iter()
            .position(|f| *f == wanted)
            .map(|i| self.headers[i].1.as_str())
    }
}

/// Known NATS headers under their canonical names, plus any other header whose
/// name starts with `Nats-` (any case) under its own name.
fn reserved_headers(headers: &FoldedHeaders<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if headers.headers.is_empty() {
        return out;
    }
    let mut seen: Vec<String> = Vec::new();
    for name in RESERVED_HEADER_NAMES {
        if let Some(value) = headers.lookup(name) {
            out.push(((*name).to_owned(), value.to_owned()));
            seen.push(fold(name));
        }
    }
    for ((name, value), folded) in headers.headers.iter().zip(&headers.folded) {
        if folded.starts_with("nats-") && !seen.contains(folded) {
            out.push((name.clone(), value.clone()));
            seen.push(folded.clone());
        }
    }
    out
}

/// Python `int(text.strip())` for the `Nats-Msg-Size` header: optional sign,
/// ASCII digits with single `_` separators. Negative or unparsable (or beyond
/// 64 bits) is malformed.
fn parse_msg_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'+') => (false, &t[1..]),
        Some(b'-') => (true, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let value: u64 = digits.replace('_', "").parse().ok()?;
    if negative && value != 0 {
        return None;
    }
    Some(value)
}

/// Trimmed; empty becomes `None` (reference `normalise_metadata_value`).
fn clean(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// Labels split on `;`, trimmed, empties dropped, duplicates removed keeping
/// the first (reference `normalise_labels_value`).
pub fn normalized_labels(labels: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for label in labels {
        for part in label.split(';') {
            let part = part.trim();
            if !part.is_empty() && !out.contains(&part) {
                out.push(part);
            }
        }
    }
    out
}

/// A JSON document from the host (mission metadata, security labels). Not
/// valid JSON (a host bug) is stored as a string rather than losing it.
fn json_document(text: Option<&str>) -> Json {
    match text {
        None => Json::Null,
        Some(text) => json::parse(text).unwrap_or_else(|_| Json::str(text)),
    }
}

fn custody_json(custody: Option<&Custody>) -> Json {
    let Some(c) = custody else { return Json::Null };
    Json::object(vec![
        ("schema", Json::str(CUSTODY_SCHEMA)),
        ("schema_version", Json::u64(1)),
        ("algorithm", Json::str(c.algorithm.as_str())),
        ("hash_input_format", Json::str("canonical-json")),
        ("key_id", Json::opt_str(c.key_id.as_deref())),
        ("payload_hash", Json::opt_str(c.payload_hash.as_deref())),
        ("metadata_hash", Json::opt_str(c.metadata_hash.as_deref())),
        ("record_hash", Json::str(c.record_hash.as_str())),
        (
            "previous_record_hash",
            Json::opt_str(c.previous_record_hash.as_deref()),
        ),
        ("hash_payload", Json::Bool(c.payload_hash.is_some())),
        ("hash_metadata", Json::Bool(c.metadata_hash.is_some())),
        ("privacy", Json::str("hashes_are_not_encryption")),
    ])
}

fn pairs_object(pairs: &[(String, String)]) -> Json {
    Json::object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Json::str(v.as_str())))
            .collect(),
    )
}

/// `max(0, (later - earlier) / 1e9)` seconds.
fn age_seconds(later_ns: i64, earlier_ns: i64) -> Json {
    let seconds = (i128::from(later_ns) - i128::from(earlier_ns)) as f64 / 1e9;
    Json::f64(if seconds > 0.0 { seconds } else { 0.0 })
}

/// Everything a record says that is derived rather than copied from the
/// envelope, computed once for both ways of writing a record
/// ([`build_record`] and the direct compact writer).
struct RecordFacts<'a> {
    payload: payload::NormalizedPayload,
    reserved: Vec<(String, String)>,
    priority: Option<&'a str>,
    classification: Option<&'a str>,
    labels: Vec<&'a str>,
    mission_metadata: Json,
    security_labels: Json,
    time_stamp_header: Option<&'a str>,
    created_ns: i64,
    created_source: &'static str,
    created_malformed: bool,
    size_header: Option<&'a str>,
    size_malformed: bool,
    delivered: u64,
    present: bool,
    omitted: bool,
    omitted_reason: Option<&'static str>,
    original_size: u64,
}

impl<'a> RecordFacts<'a> {
    /// `headers` are the envelope's headers after [`normalized_headers`].
    fn derive(
        env: &'a Envelope,
        headers: &'a [(String, String)],
        mode: PayloadMode,
    ) -> Result<Self, PayloadError> {
        let payload = payload::normalize(&env.payload, mode)?;
        let folded = FoldedHeaders::new(headers);
        let reserved = reserved_headers(&folded);
        let meta = &env.metadata;

        // When the message was created: a valid `Nats-Time-Stamp` header,
        // else the JetStream timestamp.
        let time_stamp_header = folded.lookup("Nats-Time-Stamp");
        let (created_ns, created_source, created_malformed) =
            match time_stamp_header.map(parse_rfc3339_ns) {
                Some(Some(ns)) => (ns, "nats_time_stamp", false),
                Some(None) => (env.timestamp_ns, "jetstream_timestamp", true),
                None => (env.timestamp_ns, "jetstream_timestamp", false),
            };

        // Headers-only messages (`Nats-Msg-Size` with an empty body).
        let size_header = folded.lookup("Nats-Msg-Size");
        let parsed_size = size_header.map(parse_msg_size);
        let delivered = env.payload.len() as u64;
        let (present, omitted, omitted_reason, original_size) = match parsed_size {
            Some(Some(size)) if env.payload.is_empty() => (false, true, Some("headers_only"), size),
            Some(Some(size)) => (true, false, None, size),
            _ => (true, false, None, delivered),
        };

        Ok(Self {
            payload,
            reserved,
            priority: clean(meta.priority.as_deref()),
            classification: clean(meta.classification.as_deref()),
            labels: normalized_labels(&meta.labels),
            mission_metadata: json_document(meta.mission_metadata.as_deref()),
            security_labels: json_document(meta.security_labels.as_deref()),
            time_stamp_header,
            created_ns,
            created_source,
            created_malformed,
            size_header,
            size_malformed: matches!(parsed_size, Some(None)),
            delivered,
            present,
            omitted,
            omitted_reason,
            original_size,
        })
    }
}

/// The names of `reserved`, sorted (`reserved_headers_present`).
fn sorted_names(reserved: &[(String, String)]) -> Vec<&str> {
    let mut names: Vec<&str> = reserved.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    names
}

/// Builds the record. Fails only when the payload cannot be stored in `mode`
/// (a permanent failure of that message).
pub fn build_record(
    env: &Envelope,
    mode: PayloadMode,
    stored_at_ns: i64,
) -> Result<Json, PayloadError> {
    let headers = normalized_headers(&env.headers);
    let RecordFacts {
        payload,
        reserved,
        priority,
        classification,
        labels,
        mission_metadata,
        security_labels,
        time_stamp_header,
        created_ns,
        created_source,
        created_malformed,
        size_header,
        size_malformed,
        delivered,
        present,
        omitted,
        omitted_reason,
        original_size,
    } = RecordFacts::derive(env, &headers, mode)?;
    let labels_text = if labels.is_empty() {
        None
    } else {
        Some(labels.join(";"))
    };
    let message_id = Json::opt_str(env.message_id.as_deref());

    let metadata = Json::object(vec![
        ("metadata_version", Json::u64(1)),
        ("subject", Json::str(env.subject.as_str())),
        ("reply", Json::Null),
        ("message_id", message_id.clone()),
        (
            "message_metadata",
            Json::object(vec![
                ("priority", Json::opt_str(priority)),
                ("classification", Json::opt_str(classification)),
                ("labels", Json::strings(labels.iter().copied())),
            ]),
        ),
        ("mission_metadata", mission_metadata.clone()),
        ("security_labels", security_labels.clone()),
        ("headers", pairs_object(&headers)),
        (
            "payload",
            Json::object(vec![
                ("present", Json::Bool(present)),
                ("omitted", Json::Bool(omitted)),
                ("omitted_reason", Json::opt_str(omitted_reason)),
                ("original_size_bytes", Json::u64(original_size)),
                ("delivered_size_bytes", Json::u64(delivered)),
                ("nats_msg_size_header", Json::opt_str(size_header)),
                ("nats_msg_size_header_malformed", Json::Bool(size_malformed)),
            ]),
        ),
        (
            "nats",
            Json::object(vec![
                ("reserved_headers", pairs_object(&reserved)),
                (
                    "reserved_headers_present",
                    Json::strings(sorted_names(&reserved)),
                ),
            ]),
        ),
        (
            "jetstream",
            Json::object(vec![
                ("stream", Json::str(env.stream.as_str())),
                ("consumer", Json::str(env.consumer.as_str())),
                ("domain", Json::Null),
                ("stream_sequence", Json::u64(env.stream_sequence)),
                ("consumer_sequence", Json::u64(env.consumer_sequence)),
                ("redelivered", Json::Bool(env.delivery_count > 1)),
                ("pending", Json::u64(env.pending)),
                ("timestamp", Json::String(iso_utc_micros(env.timestamp_ns))),
                ("timestamp_epoch_ns", Json::i64(env.timestamp_ns)),
            ]),
        ),
        (
            "timestamps",
            Json::object(vec![
                ("message_created_at_epoch_ns", Json::i64(created_ns)),
                ("message_created_at_source", Json::str(created_source)),
                (
                    "message_created_at_header_malformed",
                    Json::Bool(created_malformed),
                ),
                ("nats_time_stamp", Json::opt_str(time_stamp_header)),
                ("jetstream_timestamp_epoch_ns", Json::i64(env.timestamp_ns)),
                (
                    "received_at",
                    Json::String(iso_utc_micros(env.received_at_ns)),
                ),
                ("received_at_epoch_ns", Json::i64(env.received_at_ns)),
                ("stored_at", Json::String(iso_utc_micros(stored_at_ns))),
                ("stored_at_epoch_ns", Json::i64(stored_at_ns)),
            ]),
        ),
        (
            "freshness",
            Json::object(vec![
                (
                    "event_age_at_receive_seconds",
                    age_seconds(env.received_at_ns, created_ns),
                ),
                (
                    "event_age_at_store_seconds",
                    age_seconds(stored_at_ns, created_ns),
                ),
                (
                    "source_clock_skew_seconds",
                    age_seconds(created_ns, env.received_at_ns),
                ),
                ("message_created_at_source", Json::str(created_source)),
                ("message_created_at_missing", Json::Bool(false)),
                (
                    "message_created_at_header_malformed",
                    Json::Bool(created_malformed),
                ),
            ]),
        ),
    ]);

    Ok(Json::object(vec![
        ("schema", Json::str(SCHEMA)),
        ("schema_version", Json::u64(1)),
        ("subject", Json::str(env.subject.as_str())),
        ("stream", Json::str(env.stream.as_str())),
        ("stream_sequence", Json::u64(env.stream_sequence)),
        ("consumer", Json::str(env.consumer.as_str())),
        ("consumer_sequence", Json::u64(env.consumer_sequence)),
        ("message_id", message_id),
        ("priority", Json::opt_str(priority)),
        ("classification", Json::opt_str(classification)),
        ("labels", labels_text.map_or(Json::Null, Json::String)),
        ("labels_list", Json::strings(labels.iter().copied())),
        ("mission_metadata", mission_metadata),
        ("security_labels", security_labels),
        ("custody", custody_json(env.custody.as_ref())),
        ("payload", payload.value),
        (
            "payload_info",
            Json::object(vec![
                ("original_format", Json::str(payload.original_format)),
                ("wrapped", Json::Bool(payload.wrapped)),
                ("sha256", Json::String(payload.sha256)),
                ("size_bytes", Json::u64(payload.size_bytes as u64)),
            ]),
        ),
        ("metadata", metadata),
    ]))
}

/// The bytes written for a record: sorted keys, compact (or indented when
/// `pretty`), followed by a newline, like the reference.
pub fn render(record: &Json, pretty: bool) -> Vec<u8> {
    let mut text = if pretty {
        record.to_pretty()
    } else {
        record.to_compact()
    };
    text.push('\n');
    text.into_bytes()
}

/// The bytes of a record, as [`render`]`(&`[`build_record`]`(..), pretty)`
/// produces them. The compact form (every segment line and the per-message
/// default) is written directly, without building the JSON tree: the same
/// fields in the same (sorted) order, byte for byte, about three times
/// faster, which matters at tens of thousands of records per second. The
/// tests check both paths against each other.
pub fn render_record(
    env: &Envelope,
    mode: PayloadMode,
    stored_at_ns: i64,
    pretty: bool,
) -> Result<Vec<u8>, PayloadError> {
    if pretty {
        return Ok(render(&build_record(env, mode, stored_at_ns)?, true));
    }
    let mut out = String::with_capacity(2048 + env.payload.len() * 2);
    write_compact_record(env, mode, stored_at_ns, &mut out)?;
    out.push('\n');
    Ok(out.into_bytes())
}

/// Writes `"key":` (after a `,` unless `first`). Keys are static ASCII
/// names that need no escaping.
fn key(out: &mut String, first: bool, name: &str) {
    if !first {
        out.push(',');
    }
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
}

fn put_str(out: &mut String, value: &str) {
    json::write_string(value, out);
}

fn put_opt_str(out: &mut String, value: Option<&str>) {
    match value {
        Some(value) => json::write_string(value, out),
        None => out.push_str("null"),
    }
}

fn put_bool(out: &mut String, value: bool) {
    out.push_str(if value { "true" } else { "false" });
}

fn put_int(out: &mut String, value: impl std::fmt::Display) {
    use std::fmt::Write as _;
    let _ = write!(out, "{value}");
}

fn put_strings<'a>(out: &mut String, values: impl IntoIterator<Item = &'a str>) {
    out.push('[');
    for (i, value) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::write_string(value, out);
    }
    out.push(']');
}

/// An object of string pairs, as [`Json::object`] orders it: by key, and
/// the last value of a repeated key.
fn put_pairs(out: &mut String, pairs: &[(String, String)]) {
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by(|&a, &b| pairs[a].0.cmp(&pairs[b].0));
    out.push('{');
    let mut first = true;
    for (n, &i) in order.iter().enumerate() {
        if order
            .get(n + 1)
            .is_some_and(|&next| pairs[next].0 == pairs[i].0)
        {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        json::write_string(&pairs[i].0, out);
        out.push(':');
        json::write_string(&pairs[i].1, out);
    }
    out.push('}');
}

fn put_age(out: &mut String, later_ns: i64, earlier_ns: i64) {
    json::write_compact(&age_seconds(later_ns, earlier_ns), out);
}

/// The compact text of [`build_record`], written field by field in sorted key
/// order (keep in step with `build_record`; `direct_rendering_matches_tree`
/// checks it).
fn write_compact_record(
    env: &Envelope,
    mode: PayloadMode,
    stored_at_ns: i64,
    out: &mut String,
) -> Result<(), PayloadError> {
    let headers = normalized_headers(&env.headers);
    let RecordFacts {
        payload,
        reserved,
        priority,
        classification,
        labels,
        mission_metadata,
        security_labels,
        time_stamp_header,
        created_ns,
        created_source,
        created_malformed,
        size_header,
        size_malformed,
        delivered,
        present,
        omitted,
        omitted_reason,
        original_size,
    } = RecordFacts::derive(env, &headers, mode)?;
    let message_id = env.message_id.as_deref();

    out.push('{');
    key(out, true, "classification");
    put_opt_str(out, classification);
    key(out, false, "consumer");
    put_str(out, &env.consumer);
    key(out, false, "consumer_sequence");
    put_int(out, env.consumer_sequence);
    key(out, false, "custody");
    json::write_compact(&custody_json(env.custody.as_ref()), out);
    key(out, false, "labels");
    if labels.is_empty() {
        out.push_str("null");
    } else {
        put_str(out, &labels.join(";"));
    }
    key(out, false, "labels_list");
    put_strings(out, labels.iter().copied());
    key(out, false, "message_id");
    put_opt_str(out, message_id);

    key(out, false, "metadata");
    {
        out.push('{');
        key(out, true, "freshness");
        out.push('{');
        key(out, true, "event_age_at_receive_seconds");
        put_age(out, env.received_at_ns, created_ns);
        key(out, false, "event_age_at_store_seconds");
        put_age(out, stored_at_ns, created_ns);
        key(out, false, "message_created_at_header_malformed");
        put_bool(out, created_malformed);
        key(out, false, "message_created_at_missing");
        put_bool(out, false);
        key(out, false, "message_created_at_source");
        put_str(out, created_source);
        key(out, false, "source_clock_skew_seconds");
        put_age(out, created_ns, env.received_at_ns);
        out.push('}');

        key(out, false, "headers");
        put_pairs(out, &headers);

        key(out, false, "jetstream");
        out.push('{');
        key(out, true, "consumer");
        put_str(out, &env.consumer);
        key(out, false, "consumer_sequence");
        put_int(out, env.consumer_sequence);
        key(out, false, "domain");
        out.push_str("null");
        key(out, false, "pending");
        put_int(out, env.pending);
        key(out, false, "redelivered");
        put_bool(out, env.delivery_count > 1);
        key(out, false, "stream");
        put_str(out, &env.stream);
        key(out, false, "stream_sequence");
        put_int(out, env.stream_sequence);
        key(out, false, "timestamp");
        put_str(out, &iso_utc_micros(env.timestamp_ns));
        key(out, false, "timestamp_epoch_ns");
        put_int(out, env.timestamp_ns);
        out.push('}');

        key(out, false, "message_id");
        put_opt_str(out, message_id);

        key(out, false, "message_metadata");
        out.push('{');
        key(out, true, "classification");
        put_opt_str(out, classification);
        key(out, false, "labels");
        put_strings(out, labels.iter().copied());
        key(out, false, "priority");
        put_opt_str(out, priority);
        out.push('}');

        key(out, false, "metadata_version");
        out.push('1');
        key(out, false, "mission_metadata");
        json::write_compact(&mission_metadata, out);

        key(out, false, "nats");
        out.push('{');
        key(out, true, "reserved_headers");
        put_pairs(out, &reserved);
        key(out, false, "reserved_headers_present");
        put_strings(out, sorted_names(&reserved));
        out.push('}');

        key(out, false, "payload");
        out.push('{');
        key(out, true, "delivered_size_bytes");
        put_int(out, delivered);
        key(out, false, "nats_msg_size_header");
        put_opt_str(out, size_header);
        key(out, false, "nats_msg_size_header_malformed");
        put_bool(out, size_malformed);
        key(out, false, "omitted");
        put_bool(out, omitted);
        key(out, false, "omitted_reason");
        put_opt_str(out, omitted_reason);
        key(out, false, "original_size_bytes");
        put_int(out, original_size);
        key(out, false, "present");
        put_bool(out, present);
        out.push('}');

        key(out, false, "reply");
        out.push_str("null");
        key(out, false, "security_labels");
        json::write_compact(&security_labels, out);
        key(out, false, "subject");
        put_str(out, &env.subject);

        key(out, false, "timestamps");
        out.push('{');
        key(out, true, "jetstream_timestamp_epoch_ns");
        put_int(out, env.timestamp_ns);
        key(out, false, "message_created_at_epoch_ns");
        put_int(out, created_ns);
        key(out, false, "message_created_at_header_malformed");
        put_bool(out, created_malformed);
        key(out, false, "message_created_at_source");
        put_str(out, created_source);
        key(out, false, "nats_time_stamp");
        put_opt_str(out, time_stamp_header);
        key(out, false, "received_at");
        put_str(out, &iso_utc_micros(env.received_at_ns));
        key(out, false, "received_at_epoch_ns");
        put_int(out, env.received_at_ns);
        key(out, false, "stored_at");
        put_str(out, &iso_utc_micros(stored_at_ns));
        key(out, false, "stored_at_epoch_ns");
        put_int(out, stored_at_ns);
        out.push('}');
        out.push('}');
    }

    key(out, false, "mission_metadata");
    json::write_compact(&mission_metadata, out);
    key(out, false, "payload");
    json::write_compact(&payload.value, out);
    key(out, false, "payload_info");
    out.push('{');
    key(out, true, "original_format");
    put_str(out, payload.original_format);
    key(out, false, "sha256");
    put_str(out, &payload.sha256);
    key(out, false, "size_bytes");
    put_int(out, payload.size_bytes);
    key(out, false, "wrapped");
    put_bool(out, payload.wrapped);
    out.push('}');
    key(out, false, "priority");
    put_opt_str(out, priority);
    key(out, false, "schema");
    put_str(out, SCHEMA);
    key(out, false, "schema_version");
    out.push('1');
    key(out, false, "security_labels");
    json::write_compact(&security_labels, out);
    key(out, false, "stream");
    put_str(out, &env.stream);
    key(out, false, "stream_sequence");
    put_int(out, env.stream_sequence);
    key(out, false, "subject");
    put_str(out, &env.subject);
    out.push('}');
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sinkhost_sdk::MessageMetadata;

    const VECTORS: &str = include_str!("../testdata/nats-sinks-vectors.json");

    /// The envelope behind the `file_sink` vector (same as the `custody`
    /// vector's envelope, with the metadata the vector's record shows).
    pub(crate) fn vector_envelope() -> Envelope {
        Envelope {
            subject: "mission.sensor.track".into(),
            headers: vec![
                ("Nats-Msg-Id".into(), "example-message-id".into()),
                (
                    "Nats-Sinks-Previous-Custody-Hash".into(),
                    "abababababababababababababababababababababababababababababababab".into(),
                ),
            ],
            payload: br#"{"track_id":"T-1001","quality":"synthetic"}"#.to_vec(),
            stream: "BENCH".into(),
            consumer: "c1".into(),
            stream_sequence: 7,
            consumer_sequence: 3,
            delivery_count: 1,
            pending: 0,
            timestamp_ns: 1_779_451_200_000_000_000,
            received_at_ns: 1_779_451_201_000_000_000,
            message_id: Some("example-message-id".into()),
            metadata: MessageMetadata {
                priority: Some("urgent".into()),
                classification: Some("restricted".into()),
                labels: vec!["sensor".into(), "audit".into()],
                security_labels: None,
                mission_metadata: None,
            },
            custody: None,
        }
    }

    pub(crate) const VECTOR_STORED_AT: i64 = 1_779_451_202_000_000_000;

    fn vectors() -> serde_json::Value {
        serde_json::from_str(VECTORS).unwrap()
    }

    fn as_value(record: &Json) -> serde_json::Value {
        serde_json::from_slice(&render(record, false)).unwrap()
    }

    #[test]
    fn matches_reference_vector() {
        let expected = vectors()["file_sink"]["record"].clone();
        let record = build_record(
            &vector_envelope(),
            PayloadMode::JsonOrEnvelope,
            VECTOR_STORED_AT,
        )
        .unwrap();
        let actual = as_value(&record);
        assert_eq!(
            actual, expected,
            "\nactual:   {actual}\nexpected: {expected}"
        );
    }

    #[test]
    fn sample_records_have_same_shape() {
        // Our record for an equivalent message has exactly the keys of the
        // records the reference wrote (recursively, outside `payload`).
        fn keys(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
            if let serde_json::Value::Object(map) = v {
                for (k, child) in map {
                    let p = format!("{path}.{k}");
                    out.push(p.clone());
                    // Not into the user payload or the header maps.
                    if p != ".payload" && k != "headers" && k != "reserved_headers" {
                        keys(child, &p, out);
                    }
                }
            }
        }
        for sample in ["file_record_plain.json", "file_record_features.json"] {
            let path = format!("/work/shared/reference/{sample}");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
            let mut env = vector_envelope();
            env.headers.clear();
            if sample.contains("features") {
                env.custody = Some(Custody {
                    algorithm: "sha256".into(),
                    key_id: None,
                    payload_hash: Some("a".repeat(64)),
                    metadata_hash: Some("b".repeat(64)),
                    record_hash: "c".repeat(64),
                    previous_record_hash: None,
                });
            }
            let actual = as_value(
                &build_record(&env, PayloadMode::JsonOrEnvelope, VECTOR_STORED_AT).unwrap(),
            );
            let (mut a, mut e) = (Vec::new(), Vec::new());
            keys(&actual, "", &mut a);
            keys(&expected, "", &mut e);
            a.sort();
            e.sort();
            assert_eq!(a, e, "{sample}");
            // The sample's custody object has exactly our keys and the
            // constants we write.
            if let serde_json::Value::Object(c) = &expected["custody"] {
                for k in [
                    "schema",
                    "schema_version",
                    "hash_input_format",
                    "privacy",
                    "hash_payload",
                    "hash_metadata",
                ] {
                    assert_eq!(actual["custody"][k], c[k], "{k}");
                }
            }
        }
    }

    #[test]
    fn compact_sorted_output() {
        let record = build_record(
            &vector_envelope(),
            PayloadMode::JsonOrEnvelope,
            VECTOR_STORED_AT,
        )
        .unwrap();
        let bytes = render(&record, false);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.ends_with("}\n"));
        assert!(text.starts_with(r#"{"classification":"restricted","consumer":"c1","consumer_sequence":3,"custody":null,"labels":"sensor;audit","labels_list":["sensor","audit"],"message_id":"example-message-id","metadata":{"freshness":{"event_age_at_receive_seconds":1.0,"#));
        assert!(text
            .contains(r#""payload":{"quality":"synthetic","track_id":"T-1001"},"payload_info""#));
        let pretty = String::from_utf8(render(&record, true)).unwrap();
        assert!(pretty.starts_with("{\n  \"classification\": \"restricted\",\n"));
        let reparsed: serde_json::Value = serde_json::from_str(&pretty).unwrap();
        assert_eq!(reparsed, as_value(&record));
    }

    #[test]
    fn headers_metadata_and_custody() {
        let mut env = vector_envelope();
        env.headers = vec![
            ("X-Trace".into(), "1".into()),
            ("nats-msg-id".into(), "first".into()),
            ("  X-Trace ".into(), "2".into()),
            ("".into(), "dropped".into()),
            ("Bad\u{1}Name".into(), "dropped".into()),
            ("NATS-Future-Thing".into(), "kept".into()),
            ("Nats-Time-Stamp".into(), "2026-05-22T11:59:59.5Z".into()),
            ("Traceparent".into(), "tp".into()),
        ];
        env.metadata.labels = vec![" a ; b".into(), "a".into(), " ".into(), "c".into()];
        env.metadata.priority = Some("  ".into());
        env.metadata.mission_metadata = Some(r#"{"op":"x"}"#.into());
        env.metadata.security_labels = Some("not json".into());
        env.delivery_count = 3;
        env.custody = Some(Custody {
            algorithm: "sha512".into(),
            key_id: Some("policy-v1".into()),
            payload_hash: None,
            metadata_hash: Some("m".into()),
            record_hash: "r".into(),
            previous_record_hash: Some("p".into()),
        });
        let v =
            as_value(&build_record(&env, PayloadMode::JsonOrEnvelope, VECTOR_STORED_AT).unwrap());
        let m = &v["metadata"];
        assert_eq!(
            m["headers"],
            serde_json::json!({"X-Trace":"2","nats-msg-id":"first","NATS-Future-Thing":"kept","Nats-Time-Stamp":"2026-05-22T11:59:59.5Z","Traceparent":"tp"})
        );
        assert_eq!(
            m["nats"]["reserved_headers"],
            serde_json::json!({"Nats-Msg-Id":"first","Nats-Time-Stamp":"2026-05-22T11:59:59.5Z","traceparent":"tp","NATS-Future-Thing":"kept"})
        );
        assert_eq!(
            m["nats"]["reserved_headers_present"],
            serde_json::json!([
                "NATS-Future-Thing",
                "Nats-Msg-Id",
                "Nats-Time-Stamp",
                "traceparent"
            ])
        );
        assert_eq!(
            m["timestamps"]["message_created_at_source"],
            "nats_time_stamp"
        );
        assert_eq!(
            m["timestamps"]["message_created_at_epoch_ns"],
            1_779_451_199_500_000_000i64
        );
        assert_eq!(m["freshness"]["event_age_at_receive_seconds"], 1.5);
        assert_eq!(m["freshness"]["event_age_at_store_seconds"], 2.5);
        assert_eq!(m["jetstream"]["redelivered"], true);
        assert_eq!(v["labels"], "a;b;c");
        assert_eq!(v["labels_list"], serde_json::json!(["a", "b", "c"]));
        assert_eq!(v["priority"], serde_json::Value::Null);
        assert_eq!(v["mission_metadata"], serde_json::json!({"op":"x"}));
        assert_eq!(m["mission_metadata"], serde_json::json!({"op":"x"}));
        assert_eq!(v["security_labels"], "not json");
        assert_eq!(
            v["custody"],
            serde_json::json!({"algorithm":"sha512","hash_input_format":"canonical-json","hash_metadata":true,
                "hash_payload":false,"key_id":"policy-v1","metadata_hash":"m","payload_hash":null,
                "previous_record_hash":"p","privacy":"hashes_are_not_encryption","record_hash":"r",
                "schema":"nats_sinks.custody.v1","schema_version":1})
        );
    }

    #[test]
    fn malformed_time_stamp_and_future_skew() {
        let mut env = vector_envelope();
        env.headers.push(("Nats-Time-Stamp".into(), "soon".into()));
        let v =
            as_value(&build_record(&env, PayloadMode::JsonOrEnvelope, VECTOR_STORED_AT).unwrap());
        let t = &v["metadata"]["timestamps"];
        assert_eq!(t["message_created_at_source"], "jetstream_timestamp");
        assert_eq!(t["message_created_at_header_malformed"], true);
        assert_eq!(t["nats_time_stamp"], "soon");
        assert_eq!(
            v["metadata"]["freshness"]["message_created_at_header_malformed"],
            true
        );

        let mut env = vector_envelope();
        env.headers
            .push(("Nats-Time-Stamp".into(), "2026-05-22T12:00:11Z".into()));
        let v =
            as_value(&build_record(&env, PayloadMode::JsonOrEnvelope, VECTOR_STORED_AT).unwrap());
        let f = &v["metadata"]["freshness"];
        assert_eq!(f["source_clock_skew_seconds"], 10.0);
        assert_eq!(f["event_age_at_receive_seconds"], 0.0);
    }

    #[test]
    fn headers_only_payload() {
        let mut env = vector_envelope();
        env.payload.clear();
        env.headers.push(("Nats-Msg-Size".into(), " 1_024 ".into()));
        let v =
            as_value(&build_record(&env, PayloadMode::JsonOrEnvelope, VECTOR_STORED_AT).unwrap());
        assert_eq!(
            v["metadata"]["payload"],
            serde_json::json!({"delivered_size_bytes":0,"nats_msg_size_header":" 1_024 ",
                "nats_msg_size_header_malformed":false,"omitted":true,"omitted_reason":"headers_only",
                "original_size_bytes":1024,"present":false})
        );
        let mut env = vector_envelope();
        env.headers.push(("nats-msg-size".into(), "-3".into()));
        let v =
            as_value(&build_record(&env, PayloadMode::JsonOrEnvelope, VECTOR_STORED_AT).unwrap());
        assert_eq!(
            v["metadata"]["payload"]["nats_msg_size_header_malformed"],
            true
        );
        assert_eq!(v["metadata"]["payload"]["original_size_bytes"], 43);
        assert_eq!(v["metadata"]["payload"]["present"], true);
    }

    #[test]
    fn msg_size_parsing() {
        assert_eq!(parse_msg_size("12"), Some(12));
        assert_eq!(parse_msg_size(" +1_000 "), Some(1000));
        assert_eq!(parse_msg_size("-0"), Some(0));
        assert_eq!(parse_msg_size("007"), Some(7));
        for bad in [
            "",
            "-1",
            "1__0",
            "_1",
            "1_",
            "1.0",
            "x",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_msg_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn payload_modes_in_record() {
        let mut env = vector_envelope();
        env.payload = b"plain".to_vec();
        let v = as_value(&build_record(&env, PayloadMode::JsonOrEnvelope, 0).unwrap());
        assert_eq!(v["payload"]["payload"], "plain");
        assert_eq!(v["payload_info"]["original_format"], "text");
        assert_eq!(v["payload_info"]["wrapped"], true);
        assert!(build_record(&env, PayloadMode::JsonOnly, 0).is_err());
        let v = as_value(&build_record(&vector_envelope(), PayloadMode::Base64, 0).unwrap());
        assert_eq!(v["payload_info"]["original_format"], "bytes");
        assert_eq!(v["payload"]["_nats_sinks"]["payload_encoding"], "base64");
    }

    /// Envelopes that exercise every branch of the record.
    fn varied_envelopes() -> Vec<Envelope> {
        let base = vector_envelope();
        // An envelope with every field empty or zero (delivery count too).
        let mut empty = Envelope::new("", 0, "", Vec::new());
        empty.delivery_count = 0;
        let mut out = vec![base.clone(), empty];
        let header_sets: Vec<Vec<(&str, &str)>> = vec![
            vec![],
            vec![("nats-msg-id", "lower"), ("NATS-MSG-ID", "upper")],
            vec![("Nats-Time-Stamp", "2026-05-22T12:00:00.5Z")],
            vec![("nats-time-stamp", "yesterday"), ("X-Other", "o")],
            vec![("Nats-Msg-Size", "1_024")],
            vec![("Nats-Msg-Size", "-5"), ("b", "2"), ("a", "1"), ("b", "3")],
            vec![
                ("Nats-Custom", "c"),
                ("nats-custom", "d"),
                ("traceparent", "t"),
            ],
            vec![
                ("  Spaced ", "v"),
                ("", "empty"),
                ("bad\u{1}", "ctl"),
                ("Ünï", "\"q\"\n"),
            ],
            vec![
                ("ſtraße", "fold"),
                ("Nats-Expected-Stream", "S"),
                ("accept-encoding", "gz"),
            ],
        ];
        for headers in header_sets {
            let mut env = base.clone();
            env.headers = headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            out.push(env.clone());
            env.payload.clear();
            out.push(env);
        }
        let mut env = base.clone();
        env.subject = "quote\"back\\slash\ttab\u{7f}é".into();
        env.stream = "S\u{2028}".into();
        env.consumer = "c\u{0}".into();
        env.delivery_count = 3;
        env.timestamp_ns = -1_234_567_891;
        env.received_at_ns = 0;
        env.message_id = None;
        env.metadata = MessageMetadata {
            priority: Some("  ".into()),
            classification: Some(" secret ".into()),
            labels: vec!["a; b;;a".into(), " c ".into(), "".into()],
            security_labels: Some(r#"{"z":1,"a":[true,null,1.50]}"#.into()),
            mission_metadata: Some("not json".into()),
        };
        env.custody = Some(Custody {
            algorithm: "sha256".into(),
            key_id: Some("k1".into()),
            payload_hash: None,
            metadata_hash: Some("m".into()),
            record_hash: "r".into(),
            previous_record_hash: Some("p".into()),
        });
        out.push(env.clone());
        for payload in [
            b"".to_vec(),
            b"plain text".to_vec(),
            vec![0xff, 0x00, 0x80],
            br#"{"b":[1,2.5e3,{"y":null,"x":"\u00e9\n"}],"a":-0}"#.to_vec(),
            b"  [1, 2]  ".to_vec(),
            b"NaN".to_vec(),
            b"\"just a string\"".to_vec(),
        ] {
            env.payload = payload;
            out.push(env.clone());
        }
        out
    }

    #[test]
    fn direct_rendering_matches_tree() {
        let modes = [
            PayloadMode::JsonOrEnvelope,
            PayloadMode::TextEnvelope,
            PayloadMode::Base64,
            PayloadMode::JsonOnly,
        ];
        let mut compared = 0;
        for env in varied_envelopes() {
            for mode in modes {
                for stored_at in [VECTOR_STORED_AT, 0, env.timestamp_ns + 1_500] {
                    for pretty in [false, true] {
                        let tree = build_record(&env, mode, stored_at).map(|r| render(&r, pretty));
                        let direct = render_record(&env, mode, stored_at, pretty);
                        match (&tree, &direct) {
                            (Ok(t), Ok(d)) => {
                                compared += 1;
                                assert_eq!(
                                    String::from_utf8_lossy(d),
                                    String::from_utf8_lossy(t),
                                    "{env:?} {mode:?} pretty={pretty}"
                                );
                            }
                            (Err(a), Err(b)) => assert_eq!(a, b),
                            _ => panic!("{env:?} {mode:?}: {tree:?} vs {direct:?}"),
                        }
                    }
                }
            }
        }
        assert!(compared > 300, "{compared}");
        // And the reference vector, through the direct path.
        let direct: serde_json::Value = serde_json::from_slice(
            &render_record(
                &vector_envelope(),
                PayloadMode::JsonOrEnvelope,
                VECTOR_STORED_AT,
                false,
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(direct, vectors()["file_sink"]["record"]);
    }
}
