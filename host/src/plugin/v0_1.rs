//! Bindings for plugins built against `sinkhost:sink@0.1.x`, and the
//! conversions between the host's types and this version's WIT types.
//!
//! One module per supported WIT version: when the contract changes, the old
//! WIT is frozen under `wit/versions/` and keeps its module here, so plugins
//! built against it keep working.

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::Store;

use super::state::{LogLevel, StoreState};
use super::{ErrorKind, MessageFailure, PluginFault, SinkError, WriteOutcome};
use crate::envelope::Envelope;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { default: async },
    exports: { default: async },
});

use self::sinkhost::sink::types as wit;

/// The WIT version this module binds.
pub const VERSION: &str = "0.1.0";

/// Adds this version's host imports (the `log` interface) to a linker.
pub fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    self::sinkhost::sink::log::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |state| state)
}

impl self::sinkhost::sink::log::Host for StoreState {
    async fn log(&mut self, level: self::sinkhost::sink::log::Level, message: String) {
        use self::sinkhost::sink::log::Level;
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        self.log.line(level, "log", &message);
    }
}

impl self::sinkhost::sink::types::Host for StoreState {}

/// Pre-linked component of this version: instantiating it is cheap.
#[derive(Clone)]
pub struct Prepared(PluginPre<StoreState>);

impl Prepared {
    /// Links the component against the host's imports.
    pub fn new(linker: &Linker<StoreState>, component: &Component) -> wasmtime::Result<Self> {
        Ok(Self(PluginPre::new(linker.instantiate_pre(component)?)?))
    }

    /// A new instance in `store`.
    pub async fn instantiate(&self, store: &mut Store<StoreState>) -> wasmtime::Result<Bindings> {
        Ok(Bindings(self.0.instantiate_async(store).await?))
    }
}

/// An instance's exports.
pub struct Bindings(Plugin);

impl Bindings {
    /// Calls `init`; `Ok(Err(message))` is the plugin refusing its config.
    pub async fn init(&self, store: &mut Store<StoreState>, config: &str) -> wasmtime::Result<Result<(), String>> {
        self.0.sinkhost_sink_sink().call_init(store, config).await
    }

    /// Calls `write-batch`.
    pub async fn write_batch(
        &self,
        store: &mut Store<StoreState>,
        batch: &[Envelope],
    ) -> wasmtime::Result<Result<WriteOutcome, PluginFault>> {
        let envelopes: Vec<wit::Envelope> = batch.iter().map(to_wit).collect();
        let result = self.0.sinkhost_sink_sink().call_write_batch(store, &envelopes).await?;
        Ok(match result {
            Ok(report) => outcome_from_report(report, batch.len()),
            Err(error) => Ok(WriteOutcome::Failed(sink_error(error))),
        })
    }
}

fn to_wit(envelope: &Envelope) -> wit::Envelope {
    let metadata = &envelope.metadata;
    wit::Envelope {
        subject: envelope.subject.clone(),
        headers: envelope.headers.clone(),
        payload: envelope.payload.to_vec(),
        stream: envelope.stream.clone(),
        consumer: envelope.consumer.clone(),
        stream_sequence: envelope.stream_sequence,
        consumer_sequence: envelope.consumer_sequence,
        delivery_count: envelope.delivery_count,
        pending: envelope.pending,
        timestamp_ns: envelope.timestamp_ns,
        received_at_ns: envelope.received_at_ns,
        message_id: envelope.message_id.clone(),
        metadata: wit::MessageMetadata {
            priority: metadata.priority.clone(),
            classification: metadata.classification.clone(),
            labels: metadata.labels.clone(),
            security_labels: metadata.security_labels.clone(),
            mission_metadata: metadata.mission_metadata.clone(),
        },
        custody: envelope.custody.as_ref().map(|custody| wit::Custody {
            algorithm: custody.algorithm.clone(),
            key_id: custody.key_id.clone(),
            payload_hash: custody.payload_hash.clone(),
            metadata_hash: custody.metadata_hash.clone(),
            record_hash: custody.record_hash.clone(),
            previous_record_hash: custody.previous_record_hash.clone(),
        }),
    }
}

fn sink_error(error: wit::SinkError) -> SinkError {
    SinkError {
        kind: match error.kind {
            wit::ErrorKind::Transient => ErrorKind::Transient,
            wit::ErrorKind::Permanent => ErrorKind::Permanent,
        },
        message: error.message,
    }
}

/// Checks the report against the batch: each index in range, at most once.
fn outcome_from_report(report: wit::BatchReport, batch_len: usize) -> Result<WriteOutcome, PluginFault> {
    let mut seen = vec![false; batch_len];
    let mut failures = Vec::with_capacity(report.failures.len());
    for failure in report.failures {
        let index = failure.index as usize;
        match seen.get_mut(index) {
            None => {
                return Err(PluginFault::Protocol {
                    message: format!("reported a failure for message {index} of a batch of {batch_len}"),
                })
            }
            Some(true) => {
                return Err(PluginFault::Protocol {
                    message: format!("reported message {index} as failed twice"),
                })
            }
            Some(slot) => *slot = true,
        }
        failures.push(MessageFailure {
            index,
            error: sink_error(failure.error),
        });
    }
    Ok(WriteOutcome::Stored { failures })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(index: u32) -> wit::MessageFailure {
        wit::MessageFailure {
            index,
            error: wit::SinkError {
                kind: wit::ErrorKind::Permanent,
                message: "bad".into(),
            },
        }
    }

    #[test]
    fn report_indexes_are_validated() {
        let ok = outcome_from_report(wit::BatchReport { failures: vec![failure(1)] }, 2);
        assert!(matches!(ok, Ok(WriteOutcome::Stored { failures }) if failures.len() == 1));
        let out_of_range = outcome_from_report(wit::BatchReport { failures: vec![failure(2)] }, 2);
        assert!(matches!(out_of_range, Err(PluginFault::Protocol { .. })));
        let twice = outcome_from_report(wit::BatchReport { failures: vec![failure(0), failure(0)] }, 2);
        assert!(matches!(twice, Err(PluginFault::Protocol { .. })));
    }
}
