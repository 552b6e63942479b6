//! Turning a JetStream message into the host's [`Envelope`] plus the handle
//! that ACKs it. The handle stays in the host; the plugin gets the envelope.

use async_nats::jetstream::message::Acker;

use crate::envelope::{message_id_from_headers, Envelope, MessageMetadata};

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
pub fn receive(
    message: async_nats::jetstream::Message,
    received_at_ns: i64,
) -> Result<Received, ReceiveError> {
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
    let message_id = message_id_from_headers(&headers).map(str::to_string);
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
            // Filled by the security pipeline (headers, defaults, rules).
            metadata: MessageMetadata::default(),
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

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(now).unwrap_or(i64::MAX)
}
