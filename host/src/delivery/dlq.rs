//! Dead-letter records: the reference's headers and JSON body, and the
//! confirmed publish that must succeed before the original is ACKed.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::config::DeadLetterConfig;
use crate::envelope::Envelope;

/// Header naming the failure class, as the reference writes it.
pub const ERROR_TYPE_HEADER: &str = "Nats-Sinks-Error-Type";
/// Header carrying the subject the message was first published on.
pub const ORIGINAL_SUBJECT_HEADER: &str = "Nats-Sinks-Original-Subject";
/// Prefix of the `Nats-Msg-Id` set on DLQ publishes: a DLQ publish repeated
/// after a crash (before the original's ACK) is deduplicated by JetStream.
pub const DLQ_MSG_ID_PREFIX: &str = "sinkhost-dlq:";

/// Which incarnation of the source stream a message came from: its name and
/// the time the server created it. A stream deleted and created again under
/// the same name restarts its sequences at 1, so the name and sequence alone
/// would make its first dead letters look like duplicates of the old
/// stream's inside the DLQ stream's duplicate window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamIncarnation {
    /// Creation time of the stream, nanoseconds since the Unix epoch.
    pub created_ns: i128,
}

/// The `Nats-Msg-Id` of a message's DLQ record: unique per stream
/// incarnation, consumer and stream sequence, and the same for every
/// redelivery of that message to that consumer, so a DLQ publish repeated
/// after a crash is de-duplicated while two consumers of one stream (or a
/// re-created stream) each get their own record.
pub fn msg_id(incarnation: &StreamIncarnation, envelope: &Envelope) -> String {
    format!(
        "{DLQ_MSG_ID_PREFIX}{}:{}:{}:{}",
        envelope.stream, incarnation.created_ns, envelope.consumer, envelope.stream_sequence
    )
}

/// Why a DLQ publish was not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The publish itself failed (no stream bound to the subject, disconnected...).
    #[error("dead-letter publish to `{subject}` failed: {reason}")]
    Publish {
        /// DLQ subject.
        subject: String,
        /// What the client or server said.
        reason: String,
    },
    /// JetStream did not confirm in time.
    #[error("dead-letter publish to `{subject}` was not confirmed within {timeout:?}")]
    Timeout {
        /// DLQ subject.
        subject: String,
        /// How long we waited.
        timeout: Duration,
    },
}

/// The DLQ record body: compact JSON with sorted keys, field for field the
/// reference's.
pub fn body(
    envelope: &Envelope,
    error_type: &str,
    error: &str,
    config: &DeadLetterConfig,
) -> Vec<u8> {
    let headers_map: BTreeMap<&str, &str> = envelope
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let size_header = headers_map
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("Nats-Msg-Size"))
        .map(|(_, value)| *value);
    let size_header_malformed = size_header.is_some_and(|v| v.trim().parse::<u64>().is_err());
    let payload_len = envelope.payload.len();

    let mut body = json!({
        "subject": envelope.subject,
        "stream": envelope.stream,
        "consumer": envelope.consumer,
        "stream_sequence": envelope.stream_sequence,
        "consumer_sequence": envelope.consumer_sequence,
        "message_id": envelope.message_id,
        "priority": envelope.metadata.priority,
        "classification": envelope.metadata.classification,
        "labels": envelope.metadata.labels,
        "redelivered": envelope.redelivered(),
        "pending": envelope.pending,
        "idempotency_key": envelope.idempotency_key(),
        "idempotency_key_unavailable_reason": Value::Null,
        "payload": {
            "present": true,
            "omitted": false,
            "omitted_reason": Value::Null,
            "original_size_bytes": payload_len,
            "delivered_size_bytes": payload_len,
            "nats_msg_size_header": size_header,
            "nats_msg_size_header_malformed": size_header_malformed,
        },
    });
    let Value::Object(fields) = &mut body else {
        return Vec::new();
    };
    if config.include_error {
        fields.insert("error_type".into(), json!(error_type));
        fields.insert("error".into(), json!(capped_error(error)));
    }
    if envelope.timestamp_ns > 0 {
        fields.insert(
            "timestamp".into(),
            json!(python_isoformat(envelope.timestamp_ns)),
        );
    }
    if config.include_headers {
        fields.insert("headers".into(), json!(headers_map));
    }
    if config.include_payload {
        fields.insert(
            "payload_base64".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(&envelope.payload)),
        );
    }
    // serde_json's map is ordered by key, so this is the sorted compact form.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Longest `error` text a DLQ record carries. Sink and fault messages are
/// already cut where they enter the host; this bounds every other source
/// (a screening reason quoting publisher values) in the stream that keeps
/// them.
pub const MAX_DLQ_ERROR_BYTES: usize = 4096;

/// `error` cut to [`MAX_DLQ_ERROR_BYTES`] on a character boundary.
fn capped_error(error: &str) -> std::borrow::Cow<'_, str> {
    if error.len() <= MAX_DLQ_ERROR_BYTES {
        return std::borrow::Cow::Borrowed(error);
    }
    let mut end = MAX_DLQ_ERROR_BYTES;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &error[..end]))
}

/// The DLQ message headers.
pub fn headers(
    incarnation: &StreamIncarnation,
    envelope: &Envelope,
    error_type: &str,
) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(ERROR_TYPE_HEADER, error_type);
    headers.insert(ORIGINAL_SUBJECT_HEADER, envelope.subject.as_str());
    let msg_id = msg_id(incarnation, envelope);
    headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id.as_str());
    headers
}

/// Publishes one DLQ record and waits for JetStream's confirmation.
pub async fn publish(
    jetstream: &async_nats::jetstream::Context,
    subject: &str,
    incarnation: &StreamIncarnation,
    envelope: &Envelope,
    error_type: &str,
    error: &str,
    config: &DeadLetterConfig,
) -> Result<(), DeadLetterError> {
    let timeout = Duration::from_millis(config.publish_timeout_ms);
    let payload = body(envelope, error_type, error, config);
    let headers = headers(incarnation, envelope, error_type);
    let confirmed = async {
        let ack_future = jetstream
            .publish_with_headers(subject.to_string(), headers, payload.into())
            .await
            .map_err(|err| DeadLetterError::Publish {
                subject: subject.to_string(),
                reason: err.to_string(),
            })?;
        ack_future.await.map_err(|err| DeadLetterError::Publish {
            subject: subject.to_string(),
            reason: err.to_string(),
        })
    };
    match tokio::time::timeout(timeout, confirmed).await {
        Ok(Ok(_ack)) => Ok(()),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(DeadLetterError::Timeout {
            subject: subject.to_string(),
            timeout,
        }),
    }
}

/// Formats nanoseconds since the epoch like Python's
/// `datetime.isoformat()` for a UTC datetime, as the reference writes
/// timestamps: `2026-05-22T12:00:00+00:00`, with `.ffffff` microseconds
/// only when they are not zero (Python truncates to microseconds).
pub fn python_isoformat(epoch_ns: i64) -> String {
    let Ok(datetime) = time::OffsetDateTime::from_unix_timestamp_nanos(epoch_ns as i128) else {
        return String::new();
    };
    let micros = datetime.microsecond();
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        datetime.year(),
        u8::from(datetime.month()),
        datetime.day(),
        datetime.hour(),
        datetime.minute(),
        datetime.second()
    );
    if micros == 0 {
        format!("{base}+00:00")
    } else {
        format!("{base}.{micros:06}+00:00")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::MessageMetadata;

    fn vectors() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/nats-sinks-vectors.json"
        );
        let text = std::fs::read_to_string(path).expect("vectors file is checked in");
        serde_json::from_str(&text).expect("vectors parse")
    }

    #[test]
    fn body_matches_reference_dlq_vector_byte_for_byte() {
        let vectors = vectors();
        let source = &vectors["custody"]["envelope"];
        let headers: Vec<(String, String)> = source["headers"]
            .as_object()
            .expect("headers")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let payload = base64::engine::general_purpose::STANDARD
            .decode(source["payload_b64"].as_str().expect("payload"))
            .expect("b64");
        let envelope = Envelope {
            subject: "mission.sensor.track".into(),
            headers,
            payload: payload.into(),
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
                ..Default::default()
            },
            custody: None,
        };
        let got = body(
            &envelope,
            "PermanentSinkError",
            "example failure",
            &DeadLetterConfig::default(),
        );
        let expected = vectors["dlq_body_utf8"].as_str().expect("dlq body");
        assert_eq!(String::from_utf8(got).expect("utf8"), expected);
    }

    fn envelope_of(stream: &str, consumer: &str, sequence: u64, delivery_count: u64) -> Envelope {
        Envelope {
            subject: "events.a".into(),
            headers: vec![("Nats-Msg-Id".into(), "same-producer-id".into())],
            payload: bytes::Bytes::from_static(b"{}"),
            stream: stream.into(),
            consumer: consumer.into(),
            stream_sequence: sequence,
            consumer_sequence: sequence,
            delivery_count,
            pending: 0,
            timestamp_ns: 0,
            received_at_ns: 0,
            message_id: Some("same-producer-id".into()),
            metadata: MessageMetadata::default(),
            custody: None,
        }
    }

    #[test]
    fn dlq_ids_differ_per_consumer_and_stream_incarnation_and_not_per_delivery() {
        let first = StreamIncarnation { created_ns: 1_000 };
        let again = StreamIncarnation { created_ns: 2_000 };
        let one = msg_id(&first, &envelope_of("S", "a", 7, 1));
        assert_eq!(one, "sinkhost-dlq:S:1000:a:7");
        assert_eq!(
            one,
            msg_id(&first, &envelope_of("S", "a", 7, 3)),
            "a redelivery keeps the id, so a repeated publish is de-duplicated"
        );
        assert_ne!(
            one,
            msg_id(&first, &envelope_of("S", "b", 7, 1)),
            "another consumer"
        );
        assert_ne!(
            one,
            msg_id(&again, &envelope_of("S", "a", 7, 1)),
            "a re-created stream"
        );
        assert_ne!(
            one,
            msg_id(&first, &envelope_of("S", "a", 8, 1)),
            "another sequence"
        );
        assert_ne!(
            one,
            msg_id(&first, &envelope_of("T", "a", 7, 1)),
            "another stream"
        );
    }

    #[test]
    fn isoformat_like_python() {
        assert_eq!(
            python_isoformat(1_779_451_200_000_000_000),
            "2026-05-22T12:00:00+00:00"
        );
        assert_eq!(
            python_isoformat(1_795_344_967_389_552_266),
            "2026-11-22T10:56:07.389552+00:00"
        );
    }
}
