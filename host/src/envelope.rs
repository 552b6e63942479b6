//! The host's view of one message: what is handed to a sink after the host
//! has verified and normalised it. Converted to the WIT `envelope` record by
//! the plugin runtime of the plugin's WIT version.

/// Routing and handling metadata of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageMetadata {
    /// Priority, e.g. `urgent`.
    pub priority: Option<String>,
    /// Classification, e.g. `restricted`.
    pub classification: Option<String>,
    /// Labels in producer order.
    pub labels: Vec<String>,
    /// Security labels profile as a JSON document.
    pub security_labels: Option<String>,
    /// Mission metadata as a JSON document.
    pub mission_metadata: Option<String>,
}

/// Custody hashes computed by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Custody {
    /// `sha256` or `sha512`.
    pub algorithm: String,
    /// Custody policy key id.
    pub key_id: Option<String>,
    /// Hex digest of the stored payload.
    pub payload_hash: Option<String>,
    /// Hex digest of the canonical metadata.
    pub metadata_hash: Option<String>,
    /// Hex digest of the custody record.
    pub record_hash: String,
    /// The producer's previous record hash.
    pub previous_record_hash: Option<String>,
}

/// One message as a sink receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// NATS subject.
    pub subject: String,
    /// Headers in received order; names may repeat.
    pub headers: Vec<(String, String)>,
    /// Body as it should be stored.
    pub payload: bytes::Bytes,
    /// Stream name.
    pub stream: String,
    /// Consumer name.
    pub consumer: String,
    /// Stream sequence (stable across redeliveries).
    pub stream_sequence: u64,
    /// Consumer sequence.
    pub consumer_sequence: u64,
    /// Times delivered, 1 = first delivery.
    pub delivery_count: u64,
    /// Pending count reported with this message.
    pub pending: u64,
    /// JetStream timestamp, ns since the epoch.
    pub timestamp_ns: i64,
    /// When the host received it, ns since the epoch.
    pub received_at_ns: i64,
    /// Message id from `Nats-Msg-Id`, `Nats-Message-Id` or `message-id`.
    pub message_id: Option<String>,
    /// Priority, classification, labels.
    pub metadata: MessageMetadata,
    /// Custody hashes, when enabled.
    pub custody: Option<Custody>,
}

/// Header names that carry the message id, in order of precedence (matched
/// case-insensitively, as the reference does).
pub const MESSAGE_ID_HEADERS: [&str; 3] = ["Nats-Msg-Id", "Nats-Message-Id", "message-id"];

/// The message id exactly as the reference derives it: the value of the
/// first of `Nats-Msg-Id`, `Nats-Message-Id`, `message-id` (names ignoring
/// case) that is present and non-empty. The value is not trimmed.
pub fn message_id_from_headers(headers: &[(String, String)]) -> Option<&str> {
    MESSAGE_ID_HEADERS
        .into_iter()
        .find_map(|name| header_value(headers, name).filter(|value| !value.is_empty()))
}

/// The value of the first header named `name`, ignoring case (and, as the
/// reference normalises header names, surrounding whitespace in the name).
pub fn header_value<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(key, _)| names_equal_ignoring_case(key.trim(), name))
        .map(|(_, value)| value.as_str())
}

fn names_equal_ignoring_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

impl Envelope {
    /// Whether JetStream delivered this message before.
    pub fn redelivered(&self) -> bool {
        self.delivery_count > 1
    }

    /// The reference's idempotency key: `stream-sequence:STREAM:SEQ`, else
    /// `message-id:ID`, else `payload-sha256:SUBJECT:HEX`.
    pub fn idempotency_key(&self) -> String {
        if !self.stream.is_empty() && self.stream_sequence > 0 {
            return format!("stream-sequence:{}:{}", self.stream, self.stream_sequence);
        }
        if let Some(id) = &self.message_id {
            return format!("message-id:{id}");
        }
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&self.payload);
        format!("payload-sha256:{}:{}", self.subject, hex::encode(digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn message_id_prefers_nats_msg_id_case_insensitively() {
        let h = headers(&[
            ("message-id", "c"),
            ("nats-msg-id", "a"),
            ("Nats-Message-Id", "b"),
        ]);
        assert_eq!(message_id_from_headers(&h), Some("a"));
        let h = headers(&[("message-id", "c"), ("Nats-Message-Id", "b")]);
        assert_eq!(message_id_from_headers(&h), Some("b"));
        let h = headers(&[("Nats-Msg-Id", ""), ("message-id", " c ")]);
        assert_eq!(
            message_id_from_headers(&h),
            Some(" c "),
            "not trimmed, like the reference"
        );
        assert_eq!(message_id_from_headers(&[]), None);
    }
}
