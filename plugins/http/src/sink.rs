//! `init` and `write-batch`: requests out, batch report back.

use std::time::Duration;

use sinkhost_sdk::{log, Sink};
use sinkhost_sdk_http::{classify, send_all, Class, Outcome};

use crate::config::{HttpSinkConfig, Mode};
use crate::{request, BatchReport, Envelope, ErrorKind, MessageFailure, SinkError};

/// The HTTP sink: the checked `sink` section.
pub struct HttpSink {
    config: HttpSinkConfig,
}

impl Sink for HttpSink {
    /// Checks and keeps the `sink` section.
    fn init(text: &str) -> Result<Self, String> {
        let config = HttpSinkConfig::parse(text)?;
        log::info(&format!(
            "http sink ready: {} {} ({:?})",
            config.method, config.url, config.mode
        ));
        Ok(HttpSink { config })
    }

    /// Sends the batch and reports what was stored.
    fn write_batch(&mut self, batch: &[Envelope]) -> Result<BatchReport, SinkError> {
        let config = &self.config;
        let requests =
            request::requests(config, batch).map_err(|err| error(ErrorKind::Permanent, err))?;
        let outcomes = send_all(&requests, config.max_in_flight);
        report(config, batch, &outcomes)
    }
}

/// Turns outcomes into the batch report: per message in `per_message`
/// mode, for the whole batch otherwise. Honours a `Retry-After` up to
/// `retry_after_max_ms` by waiting before reporting.
pub fn report(
    config: &HttpSinkConfig,
    batch: &[Envelope],
    outcomes: &[Outcome],
) -> Result<BatchReport, SinkError> {
    let classes: Vec<Class> = outcomes.iter().map(classify).collect();
    wait_for_retry_after(config, &classes);
    if config.mode != Mode::PerMessage {
        return match classes.first() {
            Some(Class::Stored) | None => Ok(BatchReport {
                failures: Vec::new(),
            }),
            Some(Class::Transient { reason, .. }) => {
                Err(error(ErrorKind::Transient, batch_reason(batch, reason)))
            }
            Some(Class::Permanent { reason }) => {
                Err(error(ErrorKind::Permanent, batch_reason(batch, reason)))
            }
        };
    }
    let mut failures = Vec::new();
    for (index, (class, envelope)) in classes.iter().zip(batch).enumerate() {
        let (kind, reason) = match class {
            Class::Stored => continue,
            Class::Transient { reason, .. } => (ErrorKind::Transient, reason),
            Class::Permanent { reason } => (ErrorKind::Permanent, reason),
        };
        failures.push(MessageFailure {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            error: error(
                kind,
                format!(
                    "{} {}: {reason}",
                    config.url,
                    request::idempotency_key(envelope)
                ),
            ),
        });
    }
    if let Some(first) = failures.first() {
        log::warn(&format!(
            "{} of {} messages not stored by {}; first: {}",
            failures.len(),
            batch.len(),
            config.url,
            first.error.message
        ));
    }
    Ok(BatchReport { failures })
}

fn batch_reason(batch: &[Envelope], reason: &str) -> String {
    match (batch.first(), batch.last()) {
        (Some(first), Some(last)) => format!(
            "batch {}-{}..{}: {reason}",
            first.stream, first.stream_sequence, last.stream_sequence
        ),
        _ => reason.to_string(),
    }
}

fn wait_for_retry_after(config: &HttpSinkConfig, classes: &[Class]) {
    let longest = classes
        .iter()
        .filter_map(|class| match class {
            Class::Transient {
                retry_after_seconds: Some(seconds),
                ..
            } => Some(seconds.saturating_mul(1000)),
            _ => None,
        })
        .max();
    if let Some(millis) = longest {
        let wait = millis.min(config.retry_after_max_ms);
        if wait > 0 {
            log::info(&format!(
                "server asked to retry after {millis} ms; waiting {wait} ms"
            ));
            std::thread::sleep(Duration::from_millis(wait));
        }
    }
}

fn error(kind: ErrorKind, message: String) -> SinkError {
    SinkError { kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::tests::envelope;
    use sinkhost_sdk_http::{Failure, Response};

    fn response(status: u16) -> Outcome {
        Ok(Response {
            status,
            headers: Vec::new(),
            body: b"nope".to_vec(),
        })
    }

    #[test]
    fn per_message_outcomes_become_per_message_failures() {
        let config = HttpSinkConfig::parse(r#"{"url": "http://h/in"}"#).unwrap();
        let batch = [
            envelope(1, b"a"),
            envelope(2, b"b"),
            envelope(3, b"c"),
            envelope(4, b"d"),
        ];
        let outcomes = [
            response(200),
            response(400),
            response(503),
            Err(Failure::Refused("HttpRequestDenied".into())),
        ];
        let report = report(&config, &batch, &outcomes).unwrap();
        let kinds: Vec<(u32, ErrorKind)> = report
            .failures
            .iter()
            .map(|f| (f.index, f.error.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                (1, ErrorKind::Permanent),
                (2, ErrorKind::Transient),
                (3, ErrorKind::Transient)
            ]
        );
        assert!(report.failures[0].error.message.contains("ORDERS-2"));
        assert!(report.failures[0].error.message.contains("HTTP 400: nope"));
    }

    #[test]
    fn a_batch_request_succeeds_or_fails_as_a_whole() {
        let config =
            HttpSinkConfig::parse(r#"{"url": "http://h/in", "mode": "json_array"}"#).unwrap();
        let batch = [envelope(1, b"a"), envelope(2, b"b")];
        assert!(report(&config, &batch, &[response(204)])
            .unwrap()
            .failures
            .is_empty());
        let err = report(&config, &batch, &[response(500)]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Transient);
        assert!(err.message.contains("ORDERS-1..2"), "{}", err.message);
        assert_eq!(
            report(&config, &batch, &[response(422)]).unwrap_err().kind,
            ErrorKind::Permanent
        );
    }
}
