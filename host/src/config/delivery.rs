//! The `delivery` and `consumer_management` sections.

use serde::{Deserialize, Serialize};

use super::Invalid;

/// Largest batch a single `write-batch` call may carry.
const MAX_BATCH_SIZE: usize = 10_000;
/// Each in-flight batch holds its own plugin instance (memory); keep it sane.
const MAX_IN_FLIGHT_BATCHES: usize = 64;

/// Batching, retry and heartbeat policy, with the reference's names and
/// defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Messages per fetch and per `write-batch` call.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// How long a fetch waits to fill a batch before handing over what it has.
    #[serde(default = "default_batch_timeout_ms")]
    pub batch_timeout_ms: u64,
    /// Batches written concurrently, each by its own plugin instance. With
    /// more than one, batches may complete out of order.
    #[serde(default = "default_in_flight")]
    pub max_in_flight_batches: usize,
    /// Only `after_sink_commit` exists: ACK after the sink reported success.
    #[serde(default = "default_ack_policy")]
    pub ack_policy: String,
    /// Deliveries of a message that may end in a transient failure before it
    /// is dead-lettered (attempt `max_retries + 1` failing sends it to the DLQ).
    #[serde(default = "default_max_retries")]
    pub max_retries: u64,
    /// Base delay before a retry.
    #[serde(default = "default_backoff_ms")]
    pub retry_backoff_ms: u64,
    /// Largest delay before a retry.
    #[serde(default = "default_backoff_max_ms")]
    pub retry_backoff_max_ms: u64,
    /// How the delay grows with the attempt.
    #[serde(default)]
    pub retry_backoff_mode: BackoffMode,
    /// Growth factor for `exponential`.
    #[serde(default = "default_multiplier")]
    pub retry_backoff_multiplier: f64,
    /// Randomisation of the delay.
    #[serde(default)]
    pub retry_jitter: JitterMode,
    /// `nak` (with the computed delay) or `leave_unacked` (wait for ack_wait).
    #[serde(default)]
    pub temporary_failure_action: TemporaryFailureAction,
    /// Progress heartbeats that keep JetStream from redelivering while a slow
    /// write is still running.
    #[serde(default)]
    pub in_progress: InProgressConfig,
}

/// Growth of the retry delay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackoffMode {
    /// Always `retry_backoff_ms`.
    Fixed,
    /// `retry_backoff_ms × attempt`.
    Linear,
    /// `retry_backoff_ms × multiplier^(attempt-1)`.
    #[default]
    Exponential,
}

/// Randomisation of the retry delay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JitterMode {
    /// The computed delay.
    None,
    /// Uniform in `[0, delay]`.
    #[default]
    Full,
    /// Uniform in `[delay/2, delay]`.
    Equal,
}

/// What to do with a message after a transient failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemporaryFailureAction {
    /// NAK with the backoff delay.
    #[default]
    Nak,
    /// Do nothing; JetStream redelivers after `ack_wait`.
    LeaveUnacked,
}

/// In-progress (`+WPI`) heartbeats while a batch is being written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InProgressConfig {
    /// On by default in sinkhost (the reference defaults to off): a slow sink
    /// must not cause a redelivery of a batch that is still being written.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Interval between heartbeats; keep it well below the consumer's ack_wait.
    #[serde(default = "default_in_progress_interval")]
    pub interval_ms: u64,
    /// Heartbeats per batch at most (bounds how long a stuck write can hold
    /// messages; the plugin call deadline normally ends it sooner).
    #[serde(default = "default_max_heartbeats")]
    pub max_heartbeats: u32,
}

impl Default for InProgressConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: default_in_progress_interval(),
            max_heartbeats: default_max_heartbeats(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_batch_size() -> usize {
    100
}
fn default_batch_timeout_ms() -> u64 {
    1_000
}
fn default_in_flight() -> usize {
    1
}
fn default_ack_policy() -> String {
    "after_sink_commit".to_string()
}
fn default_max_retries() -> u64 {
    5
}
fn default_backoff_ms() -> u64 {
    1_000
}
fn default_backoff_max_ms() -> u64 {
    60_000
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_in_progress_interval() -> u64 {
    5_000
}
fn default_max_heartbeats() -> u32 {
    12
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            batch_size: default_batch_size(),
            batch_timeout_ms: default_batch_timeout_ms(),
            max_in_flight_batches: default_in_flight(),
            ack_policy: default_ack_policy(),
            max_retries: default_max_retries(),
            retry_backoff_ms: default_backoff_ms(),
            retry_backoff_max_ms: default_backoff_max_ms(),
            retry_backoff_mode: BackoffMode::default(),
            retry_backoff_multiplier: default_multiplier(),
            retry_jitter: JitterMode::default(),
            temporary_failure_action: TemporaryFailureAction::default(),
            in_progress: InProgressConfig::default(),
        }
    }
}

impl DeliveryConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            return Err(Invalid::new(
                "delivery.batch_size",
                format!("must be between 1 and {MAX_BATCH_SIZE}"),
            ));
        }
        if self.batch_timeout_ms == 0 {
            return Err(Invalid::new(
                "delivery.batch_timeout_ms",
                "must be at least 1",
            ));
        }
        if self.max_in_flight_batches == 0 || self.max_in_flight_batches > MAX_IN_FLIGHT_BATCHES {
            return Err(Invalid::new(
                "delivery.max_in_flight_batches",
                format!("must be between 1 and {MAX_IN_FLIGHT_BATCHES}"),
            ));
        }
        if self.ack_policy != "after_sink_commit" {
            return Err(Invalid::new(
                "delivery.ack_policy",
                "only `after_sink_commit` is supported: a message is ACKed after the sink committed it",
            ));
        }
        if self.retry_backoff_max_ms < self.retry_backoff_ms {
            return Err(Invalid::new(
                "delivery.retry_backoff_max_ms",
                "must be at least retry_backoff_ms",
            ));
        }
        if !(1.0..=10.0).contains(&self.retry_backoff_multiplier) {
            return Err(Invalid::new(
                "delivery.retry_backoff_multiplier",
                "must be between 1.0 and 10.0",
            ));
        }
        if self.in_progress.enabled && self.in_progress.interval_ms == 0 {
            return Err(Invalid::new(
                "delivery.in_progress.interval_ms",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// How the host treats the durable consumer at start-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerManagementConfig {
    /// `create_if_missing` (default), `bind_only` or `reconcile`.
    #[serde(default)]
    pub mode: ConsumerMode,
    /// Several filter subjects instead of `nats.subject` (needs a server
    /// that supports them, 2.10+).
    #[serde(default)]
    pub filter_subjects: Vec<String>,
    /// Where a new consumer starts.
    #[serde(default)]
    pub deliver_policy: DeliverPolicy,
    /// How long JetStream waits for an ACK before redelivering. Default 30 s.
    #[serde(default)]
    pub ack_wait_seconds: Option<f64>,
    /// Deliveries before JetStream gives up on a message (-1 unlimited is the
    /// server default). Leave it unset or above `delivery.max_retries + 1` so
    /// the host dead-letters before the server drops anything.
    #[serde(default)]
    pub max_deliver: Option<i64>,
    /// Server-side redelivery delays for unACKed messages.
    #[serde(default)]
    pub backoff_seconds: Option<Vec<f64>>,
    /// Unacknowledged messages the server allows outstanding.
    #[serde(default)]
    pub max_ack_pending: Option<i64>,
    /// Pull requests the server keeps waiting at most.
    #[serde(default)]
    pub max_waiting: Option<i64>,
}

impl Default for ConsumerManagementConfig {
    fn default() -> Self {
        Self {
            mode: ConsumerMode::default(),
            filter_subjects: Vec::new(),
            deliver_policy: DeliverPolicy::default(),
            ack_wait_seconds: None,
            max_deliver: None,
            backoff_seconds: None,
            max_ack_pending: None,
            max_waiting: None,
        }
    }
}

/// Consumer management mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerMode {
    /// Create the durable consumer if it does not exist; bind otherwise.
    #[default]
    CreateIfMissing,
    /// Bind to an existing consumer; fail if it is missing.
    BindOnly,
    /// Create it, or update its settings to match the config.
    Reconcile,
}

/// Where a newly created consumer starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliverPolicy {
    /// Every message in the stream.
    #[default]
    All,
    /// The last message.
    Last,
    /// Only messages published after creation.
    New,
    /// The last message of each subject.
    LastPerSubject,
}

impl ConsumerManagementConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if let Some(wait) = self.ack_wait_seconds {
            if !(wait > 0.0 && wait <= 86_400.0) {
                return Err(Invalid::new(
                    "consumer_management.ack_wait_seconds",
                    "must be in (0, 86400]",
                ));
            }
        }
        if let Some(max) = self.max_deliver {
            if max == 0 || max < -1 {
                return Err(Invalid::new(
                    "consumer_management.max_deliver",
                    "must be -1 (unlimited) or at least 1",
                ));
            }
        }
        if let Some(backoff) = &self.backoff_seconds {
            if backoff.iter().any(|s| !(*s > 0.0)) {
                return Err(Invalid::new(
                    "consumer_management.backoff_seconds",
                    "every delay must be positive",
                ));
            }
        }
        if let Some(pending) = self.max_ack_pending {
            if pending == 0 || pending < -1 {
                return Err(Invalid::new(
                    "consumer_management.max_ack_pending",
                    "must be -1 (unlimited) or at least 1",
                ));
            }
        }
        Ok(())
    }
}
