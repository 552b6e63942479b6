//! Typed access to an [`Envelope`]: headers by name, the payload as bytes,
//! text or JSON, and idempotency keys. The fields themselves (`subject`,
//! `stream`, `stream_sequence`, `delivery_count`, `message_id`, `metadata`,
//! `custody`...) are public; the methods here cover what needs a rule.

use crate::{Envelope, MessageMetadata};

impl Envelope {
    /// An envelope with the given stream, stream sequence, subject and
    /// payload, delivered once and with everything else empty: for tests.
    ///
    /// ```
    /// let envelope = sinkhost_sdk::Envelope::new("ORDERS", 7, "orders.created", b"{}".to_vec());
    /// assert_eq!(envelope.delivery_count, 1);
    /// assert_eq!(envelope.idempotency_key(), "ORDERS-7");
    /// ```
    pub fn new(stream: &str, stream_sequence: u64, subject: &str, payload: Vec<u8>) -> Envelope {
        Envelope {
            subject: subject.to_owned(),
            headers: Vec::new(),
            payload,
            stream: stream.to_owned(),
            consumer: String::new(),
            stream_sequence,
            consumer_sequence: stream_sequence,
            delivery_count: 1,
            pending: 0,
            timestamp_ns: 0,
            received_at_ns: 0,
            message_id: None,
            metadata: MessageMetadata {
                priority: None,
                classification: None,
                labels: Vec::new(),
                security_labels: None,
                mission_metadata: None,
            },
            custody: None,
        }
    }

    /// The first value of header `name` (NATS header names compare
    /// case-insensitively here).
    ///
    /// ```
    /// let mut envelope = sinkhost_sdk::Envelope::new("S", 1, "a", Vec::new());
    /// envelope.headers.push(("Content-Type".into(), "application/json".into()));
    /// assert_eq!(envelope.header("content-type"), Some("application/json"));
    /// assert_eq!(envelope.header("missing"), None);
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Every value of header `name`, in received order.
    ///
    /// ```
    /// let mut envelope = sinkhost_sdk::Envelope::new("S", 1, "a", Vec::new());
    /// envelope.headers.push(("Tag".into(), "a".into()));
    /// envelope.headers.push(("Tag".into(), "b".into()));
    /// assert_eq!(envelope.header_values("tag").collect::<Vec<_>>(), ["a", "b"]);
    /// ```
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The payload bytes, exactly as the host hands them (the producer's
    /// bytes, or the host's encrypted envelope document).
    ///
    /// ```
    /// let envelope = sinkhost_sdk::Envelope::new("S", 1, "a", vec![1, 2]);
    /// assert_eq!(envelope.payload_bytes(), &[1, 2]);
    /// ```
    pub fn payload_bytes(&self) -> &[u8] {
        &self.payload
    }

    /// The payload as UTF-8 text, or `None` when it is not UTF-8.
    ///
    /// ```
    /// let envelope = sinkhost_sdk::Envelope::new("S", 1, "a", b"hello".to_vec());
    /// assert_eq!(envelope.payload_str(), Some("hello"));
    /// assert_eq!(sinkhost_sdk::Envelope::new("S", 1, "a", vec![0xff]).payload_str(), None);
    /// ```
    pub fn payload_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.payload).ok()
    }

    /// The payload parsed as JSON. The error says why (never quotes the
    /// payload), ready for a permanent [`SinkError`](crate::SinkError).
    ///
    /// ```
    /// let envelope = sinkhost_sdk::Envelope::new("S", 1, "a", br#"{"id":3}"#.to_vec());
    /// assert_eq!(envelope.payload_json().unwrap()["id"], 3);
    /// assert!(sinkhost_sdk::Envelope::new("S", 1, "a", b"nope".to_vec()).payload_json().is_err());
    /// ```
    pub fn payload_json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.payload).map_err(|err| {
            format!(
                "payload is not valid JSON (line {}, column {})",
                err.line(),
                err.column()
            )
        })
    }

    /// The payload parsed into `T` (any `serde` type).
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Order { id: u32 }
    /// let envelope = sinkhost_sdk::Envelope::new("S", 1, "a", br#"{"id":3}"#.to_vec());
    /// assert_eq!(envelope.payload_as::<Order>().unwrap().id, 3);
    /// ```
    pub fn payload_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.payload)
            .map_err(|err| format!("payload does not match the expected shape: {err}"))
    }

    /// Whether this is a redelivery (`delivery_count` above 1): an earlier
    /// attempt may have stored it already.
    ///
    /// ```
    /// let mut envelope = sinkhost_sdk::Envelope::new("S", 1, "a", Vec::new());
    /// assert!(!envelope.is_redelivery());
    /// envelope.delivery_count = 2;
    /// assert!(envelope.is_redelivery());
    /// ```
    pub fn is_redelivery(&self) -> bool {
        self.delivery_count > 1
    }

    /// The idempotency key `<stream>-<stream_sequence>`: unique per message,
    /// stable across redeliveries. Safe as a file name when the stream name
    /// is (JetStream stream names hold no `/`, spaces or control characters).
    ///
    /// ```
    /// let envelope = sinkhost_sdk::Envelope::new("ORDERS", 42, "orders.created", Vec::new());
    /// assert_eq!(envelope.idempotency_key(), "ORDERS-42");
    /// ```
    pub fn idempotency_key(&self) -> String {
        format!("{}-{}", self.stream, self.stream_sequence)
    }

    /// The idempotency key by the producer's message id (`Nats-Msg-Id`...):
    /// `<stream>-msgid-<id>` with every character outside `[A-Za-z0-9._-]`
    /// percent-encoded, so it is safe as a file name or object key; `None`
    /// when the message has no id. Use it when the same logical message may
    /// be published twice with different sequences.
    ///
    /// ```
    /// let mut envelope = sinkhost_sdk::Envelope::new("ORDERS", 42, "orders.created", Vec::new());
    /// assert_eq!(envelope.message_id_key(), None);
    /// envelope.message_id = Some("order/17".into());
    /// assert_eq!(envelope.message_id_key().as_deref(), Some("ORDERS-msgid-order%2F17"));
    /// ```
    pub fn message_id_key(&self) -> Option<String> {
        let id = self.message_id.as_deref()?;
        let mut key = format!("{}-msgid-", self.stream);
        for byte in id.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-') {
                key.push(char::from(byte));
            } else {
                key.push_str(&format!("%{byte:02X}"));
            }
        }
        Some(key)
    }

    /// The metadata's security labels profile, parsed (`None` when absent or
    /// not valid JSON).
    ///
    /// ```
    /// let mut envelope = sinkhost_sdk::Envelope::new("S", 1, "a", Vec::new());
    /// envelope.metadata.security_labels = Some(r#"{"caveat":"x"}"#.into());
    /// assert_eq!(envelope.security_labels().unwrap()["caveat"], "x");
    /// ```
    pub fn security_labels(&self) -> Option<serde_json::Value> {
        self.metadata
            .security_labels
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
    }

    /// The metadata's mission metadata, parsed (`None` when absent or not
    /// valid JSON).
    ///
    /// ```
    /// let mut envelope = sinkhost_sdk::Envelope::new("S", 1, "a", Vec::new());
    /// envelope.metadata.mission_metadata = Some(r#"{"op":"y"}"#.into());
    /// assert_eq!(envelope.mission_metadata().unwrap()["op"], "y");
    /// ```
    pub fn mission_metadata(&self) -> Option<serde_json::Value> {
        self.metadata
            .mission_metadata
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
    }

    /// The envelope's metadata as a JSON object (subject, stream, sequences,
    /// delivery count, times, message id, headers, priority, classification,
    /// labels, custody): what a sink usually stores beside the payload.
    ///
    /// ```
    /// let envelope = sinkhost_sdk::Envelope::new("ORDERS", 3, "orders.created", Vec::new());
    /// let meta = envelope.metadata_json();
    /// assert_eq!(meta["stream_sequence"], 3);
    /// assert_eq!(meta["subject"], "orders.created");
    /// ```
    pub fn metadata_json(&self) -> serde_json::Value {
        let headers: serde_json::Map<String, serde_json::Value> =
            self.headers
                .iter()
                .fold(serde_json::Map::new(), |mut map, (name, value)| {
                    if let serde_json::Value::Array(values) = map
                        .entry(name.clone())
                        .or_insert_with(|| serde_json::Value::Array(Vec::new()))
                    {
                        values.push(value.clone().into());
                    }
                    map
                });
        let custody = self.custody.as_ref().map(|c| {
            serde_json::json!({
                "algorithm": c.algorithm,
                "key_id": c.key_id,
                "payload_hash": c.payload_hash,
                "metadata_hash": c.metadata_hash,
                "record_hash": c.record_hash,
                "previous_record_hash": c.previous_record_hash,
            })
        });
        serde_json::json!({
            "subject": self.subject,
            "stream": self.stream,
            "consumer": self.consumer,
            "stream_sequence": self.stream_sequence,
            "consumer_sequence": self.consumer_sequence,
            "delivery_count": self.delivery_count,
            "timestamp_ns": self.timestamp_ns,
            "received_at_ns": self.received_at_ns,
            "message_id": self.message_id,
            "headers": headers,
            "priority": self.metadata.priority,
            "classification": self.metadata.classification,
            "labels": self.metadata.labels,
            "security_labels": self.security_labels(),
            "mission_metadata": self.mission_metadata(),
            "custody": custody,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{Custody, Envelope};

    #[test]
    fn repeated_headers_group_in_metadata() {
        let mut envelope = Envelope::new("S", 1, "a", Vec::new());
        envelope.headers = vec![
            ("A".into(), "1".into()),
            ("A".into(), "2".into()),
            ("B".into(), "3".into()),
        ];
        let meta = envelope.metadata_json();
        assert_eq!(meta["headers"]["A"], serde_json::json!(["1", "2"]));
        assert_eq!(meta["headers"]["B"], serde_json::json!(["3"]));
    }

    #[test]
    fn custody_is_copied_into_metadata() {
        let mut envelope = Envelope::new("S", 1, "a", Vec::new());
        envelope.custody = Some(Custody {
            algorithm: "sha256".into(),
            key_id: None,
            payload_hash: Some("ab".into()),
            metadata_hash: None,
            record_hash: "cd".into(),
            previous_record_hash: None,
        });
        assert_eq!(envelope.metadata_json()["custody"]["record_hash"], "cd");
    }

    #[test]
    fn message_id_key_encodes_unsafe_characters() {
        let mut envelope = Envelope::new("S", 1, "a", Vec::new());
        envelope.message_id = Some("a b/..é".into());
        assert_eq!(
            envelope.message_id_key().unwrap(),
            "S-msgid-a%20b%2F..%C3%A9"
        );
    }

    #[test]
    fn invalid_json_error_does_not_quote_the_payload() {
        let envelope = Envelope::new("S", 1, "a", b"secret-value".to_vec());
        let err = envelope.payload_json().unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }
}
