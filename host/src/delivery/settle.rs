//! Deciding what happens to each message of a batch after the sink answered:
//! ACK, retry later (NAK with backoff) or dead-letter. Pure logic, no I/O, so
//! the rules can be tested exhaustively.

use std::time::Duration;

use crate::plugin::{ErrorKind, PluginFault, SinkError, WriteOutcome};

use super::retry::RetryPolicy;

/// Reason recorded in a DLQ record's `error_type`, in the reference's style.
pub mod error_type {
    /// The sink reported a permanent failure for the message.
    pub const PERMANENT: &str = "PermanentSinkError";
    /// The sink kept failing transiently until retries ran out.
    pub const RETRIES_EXHAUSTED: &str = "RetriesExhaustedError";
    /// The plugin kept crashing (trap, timeout, memory) on the message's batch.
    pub const PLUGIN_FAULT: &str = "PluginFaultError";
}

/// What to do with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Stored durably: ACK it.
    Ack,
    /// Not stored, may succeed later: NAK with this delay (or leave unACKed).
    Retry {
        /// Delay before redelivery.
        delay: Duration,
        /// Why, for the log.
        reason: String,
    },
    /// Can never be stored: publish to the DLQ, then ACK.
    DeadLetter {
        /// The DLQ record's `error_type`.
        error_type: &'static str,
        /// The DLQ record's `error`.
        error: String,
    },
}

/// Decides the disposition of each message of a batch.
///
/// `attempts[i]` is the delivery count of message `i` (1 = first delivery).
pub fn settle(
    outcome: &Result<WriteOutcome, PluginFault>,
    attempts: &[u64],
    retry: &RetryPolicy,
) -> Vec<Disposition> {
    match outcome {
        Ok(WriteOutcome::Stored { failures }) => {
            let mut dispositions = vec![Disposition::Ack; attempts.len()];
            for failure in failures {
                if let Some(slot) = dispositions.get_mut(failure.index) {
                    *slot = for_sink_error(&failure.error, attempts[failure.index], retry);
                }
            }
            dispositions
        }
        Ok(WriteOutcome::Failed(error)) => attempts
            .iter()
            .map(|attempt| for_sink_error(error, *attempt, retry))
            .collect(),
        Err(fault) => attempts
            .iter()
            .map(|attempt| for_fault(fault, *attempt, retry))
            .collect(),
    }
}

fn for_sink_error(error: &SinkError, attempt: u64, retry: &RetryPolicy) -> Disposition {
    match error.kind {
        ErrorKind::Permanent => Disposition::DeadLetter {
            error_type: error_type::PERMANENT,
            error: error.message.clone(),
        },
        ErrorKind::Transient if retry.may_retry(attempt) => Disposition::Retry {
            delay: retry.delay(attempt),
            reason: format!("transient sink error: {}", error.message),
        },
        ErrorKind::Transient => Disposition::DeadLetter {
            error_type: error_type::RETRIES_EXHAUSTED,
            error: format!(
                "gave up after {attempt} deliveries; last transient sink error: {}",
                error.message
            ),
        },
    }
}

fn for_fault(fault: &PluginFault, attempt: u64, retry: &RetryPolicy) -> Disposition {
    if retry.may_retry(attempt) {
        Disposition::Retry {
            delay: retry.delay(attempt),
            reason: format!("plugin fault: {fault}"),
        }
    } else {
        Disposition::DeadLetter {
            error_type: error_type::PLUGIN_FAULT,
            error: format!("gave up after {attempt} deliveries; last plugin fault: {fault}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DeliveryConfig, JitterMode};
    use crate::plugin::MessageFailure;

    fn policy() -> RetryPolicy {
        let mut delivery = DeliveryConfig::default();
        delivery.retry_jitter = JitterMode::None;
        RetryPolicy::from_config(&delivery)
    }

    fn error(kind: ErrorKind) -> SinkError {
        SinkError {
            kind,
            message: "boom".into(),
        }
    }

    #[test]
    fn stored_batch_acks_all_but_failures() {
        let outcome = Ok(WriteOutcome::Stored {
            failures: vec![
                MessageFailure {
                    index: 1,
                    error: error(ErrorKind::Permanent),
                },
                MessageFailure {
                    index: 2,
                    error: error(ErrorKind::Transient),
                },
            ],
        });
        let d = settle(&outcome, &[1, 1, 1, 1], &policy());
        assert_eq!(d[0], Disposition::Ack);
        assert!(matches!(
            d[1],
            Disposition::DeadLetter {
                error_type: error_type::PERMANENT,
                ..
            }
        ));
        assert!(
            matches!(d[2], Disposition::Retry { delay, .. } if delay == Duration::from_secs(1))
        );
        assert_eq!(d[3], Disposition::Ack);
    }

    #[test]
    fn transient_failure_dead_letters_after_max_retries() {
        let outcome = Ok(WriteOutcome::Failed(error(ErrorKind::Transient)));
        let d = settle(&outcome, &[5, 6], &policy());
        assert!(matches!(d[0], Disposition::Retry { .. }));
        assert!(matches!(
            d[1],
            Disposition::DeadLetter {
                error_type: error_type::RETRIES_EXHAUSTED,
                ..
            }
        ));
    }

    #[test]
    fn whole_batch_permanent_failure_dead_letters_every_message() {
        let outcome = Ok(WriteOutcome::Failed(error(ErrorKind::Permanent)));
        let d = settle(&outcome, &[1, 1], &policy());
        assert!(d
            .iter()
            .all(|d| matches!(d, Disposition::DeadLetter { .. })));
    }

    #[test]
    fn plugin_fault_retries_then_dead_letters() {
        let outcome = Err(PluginFault::Timeout { after_ms: 10 });
        let d = settle(&outcome, &[1, 6], &policy());
        assert!(matches!(d[0], Disposition::Retry { .. }));
        assert!(matches!(
            d[1],
            Disposition::DeadLetter {
                error_type: error_type::PLUGIN_FAULT,
                ..
            }
        ));
    }
}
