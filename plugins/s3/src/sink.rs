//! `init` and `write-batch`: objects out, batch report back.

use sinkhost_sdk::{log, Sink};
use sinkhost_sdk_http::{classify, classify_status, excerpt, send_all, Class, Outcome};

use crate::config::{Mode, S3SinkConfig};
use crate::request::{self, ObjectWrite};
use crate::{BatchReport, Envelope, ErrorKind, MessageFailure, SinkError};

/// The S3 sink: the checked `sink` section.
pub struct S3Sink {
    config: S3SinkConfig,
}

impl Sink for S3Sink {
    /// Checks and keeps the `sink` section.
    fn init(text: &str) -> Result<Self, String> {
        let config = S3SinkConfig::parse(text)?;
        log::info(&format!(
            "s3 sink ready: bucket {} at {} ({:?}, keys {})",
            config.bucket,
            config.endpoint,
            config.mode,
            config.key.source()
        ));
        Ok(S3Sink { config })
    }

    /// Writes the batch's objects and reports what was stored.
    fn write_batch(&mut self, batch: &[Envelope]) -> Result<BatchReport, SinkError> {
        let config = &self.config;
        let writes =
            request::objects(config, batch).map_err(|err| error(ErrorKind::Permanent, err))?;
        let outcomes = send_all(
            writes.iter().map(|write| &write.request),
            config.max_in_flight,
        );
        report(config, batch, &writes, &outcomes)
    }
}

/// What an S3 answer means for the object.
pub fn classify_object(outcome: &Outcome) -> Class {
    match outcome {
        // The object exists: a redelivered message was stored before.
        Ok(response) if response.status == 412 => Class::Stored,
        // Another writer is creating the same key right now.
        Ok(response) if response.status == 409 => Class::Transient {
            reason: format!("HTTP 409 (concurrent write){}", excerpt(&response.body)),
            retry_after_seconds: None,
        },
        // Wrong or expired credentials, or a missing bucket: an operator
        // fixes it, and nothing may be dead-lettered meanwhile.
        Ok(response) if response.status == 403 || response.status == 404 => Class::Transient {
            reason: format!(
                "HTTP {} from the store (check the grant's credentials and the bucket){}",
                response.status,
                excerpt(&response.body)
            ),
            retry_after_seconds: None,
        },
        Ok(response) => classify_status(
            response.status,
            response.header("retry-after"),
            &response.body,
        ),
        Err(_) => classify(outcome),
    }
}

/// Per message: a message is stored when all its objects are; otherwise it
/// fails with the worst outcome (permanent over transient). Per batch: the
/// one object decides for the whole batch.
pub fn report(
    config: &S3SinkConfig,
    batch: &[Envelope],
    writes: &[ObjectWrite],
    outcomes: &[Outcome],
) -> Result<BatchReport, SinkError> {
    let mut worst: Vec<Option<(ErrorKind, String)>> = vec![None; batch.len()];
    for (write, outcome) in writes.iter().zip(outcomes) {
        let failure = match classify_object(outcome) {
            Class::Stored => continue,
            Class::Transient { reason, .. } => {
                (ErrorKind::Transient, format!("{}: {reason}", write.key))
            }
            Class::Permanent { reason } => {
                (ErrorKind::Permanent, format!("{}: {reason}", write.key))
            }
        };
        for &index in &write.messages {
            if let Some(slot) = worst.get_mut(index) {
                if !matches!(slot, Some((ErrorKind::Permanent, _))) {
                    *slot = Some(failure.clone());
                }
            }
        }
    }
    if config.mode == Mode::PerBatch {
        return match worst.into_iter().flatten().next() {
            None => Ok(BatchReport {
                failures: Vec::new(),
            }),
            Some((kind, message)) => Err(error(kind, message)),
        };
    }
    let failures: Vec<MessageFailure> = worst
        .into_iter()
        .enumerate()
        .filter_map(|(index, failure)| {
            failure.map(|(kind, message)| MessageFailure {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                error: error(kind, message),
            })
        })
        .collect();
    if let Some(first) = failures.first() {
        log::warn(&format!(
            "{} of {} messages not stored in bucket {}; first: {}",
            failures.len(),
            batch.len(),
            config.bucket,
            first.error.message
        ));
    }
    Ok(BatchReport { failures })
}

fn error(kind: ErrorKind, message: String) -> SinkError {
    SinkError { kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::tests::envelope;
    use sinkhost_sdk_http::Response;

    fn status(code: u16) -> Outcome {
        Ok(Response {
            status: code,
            headers: vec![],
            body: b"<Error><Code>X</Code></Error>".to_vec(),
        })
    }

    #[test]
    fn s3_answers_are_classified() {
        assert_eq!(classify_object(&status(200)), Class::Stored);
        assert_eq!(
            classify_object(&status(412)),
            Class::Stored,
            "already stored"
        );
        assert!(matches!(
            classify_object(&status(403)),
            Class::Transient { .. }
        ));
        assert!(matches!(
            classify_object(&status(503)),
            Class::Transient { .. }
        ));
        assert!(matches!(
            classify_object(&status(409)),
            Class::Transient { .. }
        ));
        assert!(matches!(
            classify_object(&status(400)),
            Class::Permanent { .. }
        ));
    }

    #[test]
    fn a_message_is_stored_only_when_all_its_objects_are() {
        let config = S3SinkConfig::parse(
            r#"{"endpoint": "http://h:1", "bucket": "events", "metadata": "sidecar"}"#,
        )
        .unwrap();
        let batch = [envelope(1, b"a"), envelope(2, b"b"), envelope(3, b"c")];
        let writes = request::objects(&config, &batch).unwrap();
        assert_eq!(writes.len(), 6);
        let outcomes = [
            status(200),
            status(412),
            status(200),
            status(503),
            status(400),
            status(200),
        ];
        let report = report(&config, &batch, &writes, &outcomes).unwrap();
        let kinds: Vec<(u32, ErrorKind)> = report
            .failures
            .iter()
            .map(|f| (f.index, f.error.kind))
            .collect();
        assert_eq!(
            kinds,
            [(1, ErrorKind::Transient), (2, ErrorKind::Permanent)]
        );
        assert!(report.failures[0].error.message.contains(".meta.json"));
    }

    #[test]
    fn a_batch_object_decides_for_the_batch() {
        let config = S3SinkConfig::parse(
            r#"{"endpoint": "http://h:1", "bucket": "events", "mode": "per_batch"}"#,
        )
        .unwrap();
        let batch = [envelope(1, b"a"), envelope(2, b"b")];
        let writes = request::objects(&config, &batch).unwrap();
        assert!(report(&config, &batch, &writes, &[status(200)])
            .unwrap()
            .failures
            .is_empty());
        assert_eq!(
            report(&config, &batch, &writes, &[status(403)])
                .unwrap_err()
                .kind,
            ErrorKind::Transient
        );
    }
}
