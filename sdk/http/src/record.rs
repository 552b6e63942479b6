//! The JSON record of one message, shared by the HTTP and S3 sinks (schema
//! `sinkhost.message.v1`), and header-safe text.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::wit::sinkhost::sink::types::Envelope;

/// Schema name of the record.
pub const RECORD_SCHEMA: &str = "sinkhost.message.v1";

/// What a record holds, borrowed from a plugin's envelope (each plugin has
/// its own generated WIT types; this is the common view of them).
#[derive(Debug, Clone, Default)]
pub struct MessageView<'a> {
    /// NATS subject.
    pub subject: &'a str,
    /// NATS headers, in order.
    pub headers: &'a [(String, String)],
    /// Payload bytes.
    pub payload: &'a [u8],
    /// Stream name.
    pub stream: &'a str,
    /// Stream sequence.
    pub stream_sequence: u64,
    /// Consumer sequence.
    pub consumer_sequence: u64,
    /// Delivery count.
    pub delivery_count: u64,
    /// JetStream timestamp, ns since the epoch.
    pub timestamp_ns: i64,
    /// When the host received it, ns since the epoch.
    pub received_at_ns: i64,
    /// Message id.
    pub message_id: Option<&'a str>,
    /// Priority.
    pub priority: Option<&'a str>,
    /// Classification.
    pub classification: Option<&'a str>,
    /// Labels.
    pub labels: &'a [String],
    /// Security labels (JSON text).
    pub security_labels: Option<&'a str>,
    /// Mission metadata (JSON text).
    pub mission_metadata: Option<&'a str>,
    /// Custody hashes as a JSON object, when the host computed them.
    pub custody: Option<Value>,
}

/// The common view of a WIT envelope.
pub fn view(envelope: &Envelope) -> MessageView<'_> {
    let metadata = &envelope.metadata;
    MessageView {
        subject: &envelope.subject,
        headers: &envelope.headers,
        payload: &envelope.payload,
        stream: &envelope.stream,
        stream_sequence: envelope.stream_sequence,
        consumer_sequence: envelope.consumer_sequence,
        delivery_count: envelope.delivery_count,
        timestamp_ns: envelope.timestamp_ns,
        received_at_ns: envelope.received_at_ns,
        message_id: envelope.message_id.as_deref(),
        priority: metadata.priority.as_deref(),
        classification: metadata.classification.as_deref(),
        labels: &metadata.labels,
        security_labels: metadata.security_labels.as_deref(),
        mission_metadata: metadata.mission_metadata.as_deref(),
        custody: envelope.custody.as_ref().map(|custody| {
            json!({
                "algorithm": custody.algorithm,
                "key_id": custody.key_id,
                "payload_hash": custody.payload_hash,
                "metadata_hash": custody.metadata_hash,
                "record_hash": custody.record_hash,
                "previous_record_hash": custody.previous_record_hash,
            })
        }),
    }
}

/// The record of a WIT envelope.
pub fn envelope_record(envelope: &Envelope) -> Value {
    record(&view(envelope))
}

/// The record: identity, headers, payload (embedded JSON when it is JSON,
/// else text or base64, named by `payload_encoding`), metadata, custody.
pub fn record(message: &MessageView<'_>) -> Value {
    let (payload, encoding) = payload_value(message.payload);
    let headers: Vec<Value> = message.headers.iter().map(|(k, v)| json!([k, v])).collect();
    let parse = |text: Option<&str>| text.and_then(|t| serde_json::from_str::<Value>(t).ok());
    let mut record = Map::new();
    record.insert("schema".into(), json!(RECORD_SCHEMA));
    record.insert("subject".into(), json!(message.subject));
    record.insert("stream".into(), json!(message.stream));
    record.insert("stream_sequence".into(), json!(message.stream_sequence));
    record.insert("consumer_sequence".into(), json!(message.consumer_sequence));
    record.insert("delivery_count".into(), json!(message.delivery_count));
    record.insert("timestamp_ns".into(), json!(message.timestamp_ns));
    record.insert("received_at_ns".into(), json!(message.received_at_ns));
    record.insert("message_id".into(), json!(message.message_id));
    record.insert("headers".into(), Value::Array(headers));
    record.insert("payload_encoding".into(), json!(encoding));
    record.insert("payload".into(), payload);
    record.insert(
        "metadata".into(),
        json!({
            "priority": message.priority,
            "classification": message.classification,
            "labels": message.labels,
            "security_labels": parse(message.security_labels),
            "mission_metadata": parse(message.mission_metadata),
        }),
    );
    if let Some(custody) = &message.custody {
        record.insert("custody".into(), custody.clone());
    }
    Value::Object(record)
}

/// JSON payloads embedded as JSON, other UTF-8 as a string, anything else
/// as base64.
pub fn payload_value(payload: &[u8]) -> (Value, &'static str) {
    if let Ok(value) = serde_json::from_slice::<Value>(payload) {
        return (value, "json");
    }
    match std::str::from_utf8(payload) {
        Ok(text) => (Value::String(text.to_string()), "text"),
        Err(_) => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(payload)),
            "base64",
        ),
    }
}

/// A message's identity and metadata as header-safe `(field, value)` pairs,
/// in a fixed order, for a sink to send under its own prefix
/// (`X-Sinkhost-Subject`, `x-amz-meta-subject`...). Optional fields are left
/// out when absent; labels are `;`-separated.
pub fn metadata_fields(envelope: &Envelope) -> Vec<(&'static str, Vec<u8>)> {
    let metadata = &envelope.metadata;
    let mut fields = vec![
        ("Subject", header_value(&envelope.subject)),
        ("Stream", header_value(&envelope.stream)),
        (
            "Sequence",
            envelope.stream_sequence.to_string().into_bytes(),
        ),
        (
            "Delivery-Count",
            envelope.delivery_count.to_string().into_bytes(),
        ),
        (
            "Timestamp-Ns",
            envelope.timestamp_ns.to_string().into_bytes(),
        ),
    ];
    let optional = [
        ("Message-Id", envelope.message_id.as_deref()),
        ("Priority", metadata.priority.as_deref()),
        ("Classification", metadata.classification.as_deref()),
        (
            "Payload-Hash",
            envelope
                .custody
                .as_ref()
                .and_then(|c| c.payload_hash.as_deref()),
        ),
        (
            "Record-Hash",
            envelope.custody.as_ref().map(|c| c.record_hash.as_str()),
        ),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            fields.push((name, header_value(value)));
        }
    }
    if !metadata.labels.is_empty() {
        fields.push(("Labels", header_value(&metadata.labels.join(";"))));
    }
    fields
}

/// Text a header can carry: visible ASCII and spaces kept, anything else
/// (and `%`) percent-encoded, so any subject or label can be sent.
pub fn header_value(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(byte);
        } else {
            out.extend_from_slice(format!("%{byte:02X}").as_bytes());
        }
    }
    out
}

/// A complete example envelope (stream `ORDERS`, subject `orders.created`,
/// priority `high`, classification `internal`, labels `a` and `b`, JetStream
/// time 2023-11-14T22:13:20.123Z), for plugins' unit tests.
pub fn example_envelope(sequence: u64, payload: &[u8]) -> Envelope {
    use crate::wit::sinkhost::sink::types::MessageMetadata;
    Envelope {
        subject: "orders.created".into(),
        headers: vec![("Nats-Msg-Id".into(), format!("m{sequence}"))],
        payload: payload.to_vec(),
        stream: "ORDERS".into(),
        consumer: "sinkhost".into(),
        stream_sequence: sequence,
        consumer_sequence: sequence,
        delivery_count: 1,
        pending: 0,
        timestamp_ns: 1_700_000_000_123_000_000,
        received_at_ns: 1_700_000_000_200_000_000,
        message_id: Some(format!("m{sequence}")),
        metadata: MessageMetadata {
            priority: Some("high".into()),
            classification: Some("internal".into()),
            labels: vec!["a".into(), "b".into()],
            security_labels: None,
            mission_metadata: None,
        },
        custody: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_embedded_by_kind() {
        assert_eq!(payload_value(b"{\"a\":1}"), (json!({"a": 1}), "json"));
        assert_eq!(payload_value(b"plain"), (json!("plain"), "text"));
        assert_eq!(payload_value(&[0xff, 0x00]), (json!("/wA="), "base64"));
    }

    #[test]
    fn records_hold_identity_metadata_and_custody() {
        let labels = vec!["a".to_string()];
        let view = MessageView {
            subject: "s.x",
            stream: "S",
            stream_sequence: 9,
            payload: b"{\"k\":true}",
            labels: &labels,
            security_labels: Some("{\"level\":\"x\"}"),
            custody: Some(json!({"record_hash": "ab"})),
            ..MessageView::default()
        };
        let r = record(&view);
        assert_eq!(r["schema"], RECORD_SCHEMA);
        assert_eq!(r["stream_sequence"], 9);
        assert_eq!(r["payload"], json!({"k": true}));
        assert_eq!(r["metadata"]["labels"], json!(["a"]));
        assert_eq!(r["metadata"]["security_labels"], json!({"level": "x"}));
        assert_eq!(r["custody"]["record_hash"], "ab");
    }

    #[test]
    fn metadata_fields_leave_out_what_is_absent() {
        let mut envelope = example_envelope(7, b"x");
        let names: Vec<&str> = metadata_fields(&envelope).iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "Subject",
                "Stream",
                "Sequence",
                "Delivery-Count",
                "Timestamp-Ns",
                "Message-Id",
                "Priority",
                "Classification",
                "Labels"
            ]
        );
        envelope.metadata.labels.clear();
        envelope.message_id = None;
        let fields = metadata_fields(&envelope);
        assert!(fields
            .iter()
            .all(|(n, _)| *n != "Labels" && *n != "Message-Id"));
        assert_eq!(fields[2], ("Sequence", b"7".to_vec()));
    }

    #[test]
    fn header_values_are_always_sendable() {
        assert_eq!(header_value("orders.é\n%"), b"orders.%C3%A9%0A%25");
    }
}
