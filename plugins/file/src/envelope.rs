//! Plain Rust mirror of the WIT `envelope` record and the batch outcome types,
//! so the sink logic compiles and is tested natively. `lib.rs` converts the
//! generated bindings into these (moves only, no copies of payloads).

/// Routing and handling metadata (WIT `message-metadata`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageMetadata {
    pub priority: Option<String>,
    pub classification: Option<String>,
    pub labels: Vec<String>,
    /// JSON document.
    pub security_labels: Option<String>,
    /// JSON document.
    pub mission_metadata: Option<String>,
}

/// Custody hashes computed by the host (WIT `custody`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Custody {
    pub algorithm: String,
    pub key_id: Option<String>,
    pub payload_hash: Option<String>,
    pub metadata_hash: Option<String>,
    pub record_hash: String,
    pub previous_record_hash: Option<String>,
}

/// One message (WIT `envelope`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub subject: String,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
    pub stream: String,
    pub consumer: String,
    pub stream_sequence: u64,
    pub consumer_sequence: u64,
    pub delivery_count: u64,
    pub pending: u64,
    pub timestamp_ns: i64,
    pub received_at_ns: i64,
    pub message_id: Option<String>,
    pub metadata: MessageMetadata,
    pub custody: Option<Custody>,
}

/// Whether retrying can help (WIT `error-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Transient,
    Permanent,
}

/// An error for one message or a whole batch (WIT `sink-error`). The message
/// never contains payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkError {
    pub kind: ErrorKind,
    pub message: String,
}

impl SinkError {
    pub fn transient(message: impl Into<String>) -> Self {
        SinkError {
            kind: ErrorKind::Transient,
            message: message.into(),
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        SinkError {
            kind: ErrorKind::Permanent,
            message: message.into(),
        }
    }
}

/// A message of the batch that was not stored (WIT `message-failure`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFailure {
    pub index: u32,
    pub error: SinkError,
}

/// Outcome of a batch (WIT `batch-report`): every index not listed is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub failures: Vec<MessageFailure>,
}

impl BatchReport {
    pub fn fail(&mut self, index: usize, error: SinkError) {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        self.failures.push(MessageFailure { index, error });
    }

    /// Failures in index order.
    pub fn sorted(mut self) -> Self {
        self.failures.sort_by_key(|f| f.index);
        self
    }
}
