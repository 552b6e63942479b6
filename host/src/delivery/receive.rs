//! Turning a JetStream message into the host's [`Envelope`] plus the handle
//! that ACKs it. The handle stays in the host; the plugin gets the envelope.

use async_nats::jetstream::message::Acker;

use crate::envelope::{header_value, message_id_from_headers, Envelope, MessageMetadata};

/// Producer header carrying the message priority.
pub const PRIORITY_HEADER: &str = "Nats-Sinks-Priority";
/// Producer header carrying the classification.
pub const CLASSIFICATION_HEADER: &str = "Nats-Sinks-Classification";
/// Producer header carrying `;`-separated labels.
pub const LABELS_HEADER: &str = "Nats-Sinks-Labels";

/// A fetched message: what the sink will see, and how to settle it.
pub struct Received {
    /// The message as handed to the sink.
    pub envelope: Envelope,
    /// ACK/NAK handle (holds the reply subject; never given to a plugin).
    pub acker: Acker,
}

/// Why a fetched message could not be read (it is left unACKed and will be
/// redelivered; such a message is a server-side anomaly, not user input).
#[derive(Debug, thiserror::Error)]
#[error("JetStream message on `{subject}` has no usable metadata: {reason}")]
pub struct ReceiveError {
    subject: String,
    reason: String,
}

/// Converts a JetStream message.
pub fn receive(message: async_nats::jetstream::Message, received_at_ns: i64) -> Result<Received, ReceiveError> {
    let subject = message.subject.to_string();
    let info = message.info().map_err(|err| ReceiveError {
        subject: subject.clone(),
        reason: err.to_string(),
    })?;
    let stream = info.stream.to_string();
    let consumer = info.consumer.to_string();
    let stream_sequence = info.stream_sequence;
    let consumer_sequence = info.consumer_sequence;
    let delivery_count = u64::try_from(info.delivered).unwrap_or(1).max(1);
    let pending = info.pending;
    let timestamp_ns = i64::try_from(info.published.unix_timestamp_nanos()).unwrap_or(0);
    let (message, acker) = message.split();
    let headers = headers_of(message.headers.as_ref());
    let message_id = message_id_from_headers(&headers);
    let metadata = metadata_from_headers(&headers);
    Ok(Received {
        envelope: Envelope {
            subject,
            headers,
            payload: message.payload,
            stream,
            consumer,
            stream_sequence,
            consumer_sequence,
            delivery_count,
            pending,
            timestamp_ns,
            received_at_ns,
            message_id,
            metadata,
            custody: None,
        },
        acker,
    })
}

/// Headers as (name, value) pairs, sorted by name (the client library does
/// not keep wire order); repeated values of one name keep their order.
fn headers_of(map: Option<&async_nats::HeaderMap>) -> Vec<(String, String)> {
    let Some(map) = map else {
        return Vec::new();
    };
    let mut pairs: Vec<(String, String)> = map
        .iter()
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |value| (name.to_string(), value.as_str().to_string()))
        })
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

/// Priority, classification and labels from the producer's headers.
pub fn metadata_from_headers(headers: &[(String, String)]) -> MessageMetadata {
    let text = |name: &str| {
        header_value(headers, name)
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_string)
    };
    let labels = header_value(headers, LABELS_HEADER)
        .map(|value| {
            value
                .split(';')
                .map(str::trim)
                .filter(|label| !label.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    MessageMetadata {
        priority: text(PRIORITY_HEADER),
        classification: text(CLASSIFICATION_HEADER),
        labels,
        security_labels: None,
        mission_metadata: None,
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(now).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_split_on_semicolons() {
        let headers = vec![
            ("nats-sinks-labels".to_string(), " sensor; ;audit ".to_string()),
            ("Nats-Sinks-Priority".to_string(), "urgent".to_string()),
        ];
        let metadata = metadata_from_headers(&headers);
        assert_eq!(metadata.labels, vec!["sensor", "audit"]);
        assert_eq!(metadata.priority.as_deref(), Some("urgent"));
        assert_eq!(metadata.classification, None);
    }
}
