//! The `dead_letter` section: where permanently failed messages go.

use serde::{Deserialize, Serialize};

use super::Invalid;

/// Dead-letter queue settings, as in the reference.
///
/// A message is ACKed after a permanent failure only once its DLQ publish was
/// confirmed by JetStream. With the DLQ disabled, a permanently failed message
/// is left unACKed (it is redelivered until the consumer's `max_deliver`), so
/// nothing is ever dropped silently.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// Publish permanent failures to `subject`.
    #[serde(default)]
    pub enabled: bool,
    /// DLQ subject; a JetStream stream must capture it (the publish is
    /// acknowledged by the stream, otherwise it counts as failed).
    #[serde(default)]
    pub subject: Option<String>,
    /// Copy the payload into the DLQ record as base64.
    #[serde(default = "yes")]
    pub include_payload: bool,
    /// Copy the headers into the DLQ record.
    #[serde(default = "yes")]
    pub include_headers: bool,
    /// Copy the error type and message into the DLQ record.
    #[serde(default = "yes")]
    pub include_error: bool,
    /// After the DLQ publish, terminate (`AckTerm`) instead of ACK.
    #[serde(default)]
    pub ack_term_after_publish: bool,
    /// How long to wait for the DLQ stream to confirm a publish.
    #[serde(default = "default_publish_timeout")]
    pub publish_timeout_ms: u64,
}

fn yes() -> bool {
    true
}
fn default_publish_timeout() -> u64 {
    5_000
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            subject: None,
            include_payload: true,
            include_headers: true,
            include_error: true,
            ack_term_after_publish: false,
            publish_timeout_ms: default_publish_timeout(),
        }
    }
}

impl DeadLetterConfig {
    /// The DLQ subject when dead-lettering is on.
    pub fn active_subject(&self) -> Option<&str> {
        if self.enabled {
            self.subject.as_deref()
        } else {
            None
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.enabled {
            match self.subject.as_deref() {
                None => {
                    return Err(Invalid::new(
                        "dead_letter.subject",
                        "required when dead_letter.enabled is true",
                    ))
                }
                Some(s)
                    if s.trim().is_empty()
                        || s.contains(['*', '>'])
                        || s.contains(char::is_whitespace) =>
                {
                    return Err(Invalid::new(
                        "dead_letter.subject",
                        "must be a concrete subject (no wildcards, no whitespace)",
                    ))
                }
                Some(_) => {}
            }
        }
        if self.publish_timeout_ms == 0 {
            return Err(Invalid::new(
                "dead_letter.publish_timeout_ms",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
