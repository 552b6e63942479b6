//! `sinkhost-plugin-file`: the first-party file sink, a WebAssembly component
//! of world `sinkhost:sink/plugin@0.1.0`.
//!
//! Writes every message as a JSON record of schema
//! `nats_sinks.file.message.v1` (compatible with the reference `nats-sinks`
//! 0.4.3 file sink), one file per message or one JSON-lines segment per
//! batch, with atomic placement and fsync. See `docs/file-sink.md`.
//!
//! This file is only the export glue; the logic lives in plain Rust modules
//! that are unit tested natively (`cargo test -p sinkhost-plugin-file`).

pub mod config;
pub mod envelope;
pub mod fs;
pub mod json;
pub mod layout;
pub mod log;
pub mod payload;
pub mod record;
pub mod sink;
pub mod time;

#[cfg(target_arch = "wasm32")]
mod glue {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
    });

    use self::exports::sinkhost::sink::sink::Guest;
    use self::sinkhost::sink::types as wit;
    use crate::envelope as own;

    struct FileSinkComponent;

    fn metadata(m: wit::MessageMetadata) -> own::MessageMetadata {
        own::MessageMetadata {
            priority: m.priority,
            classification: m.classification,
            labels: m.labels,
            security_labels: m.security_labels,
            mission_metadata: m.mission_metadata,
        }
    }

    fn custody(c: wit::Custody) -> own::Custody {
        own::Custody {
            algorithm: c.algorithm,
            key_id: c.key_id,
            payload_hash: c.payload_hash,
            metadata_hash: c.metadata_hash,
            record_hash: c.record_hash,
            previous_record_hash: c.previous_record_hash,
        }
    }

    fn envelope(e: wit::Envelope) -> own::Envelope {
        own::Envelope {
            subject: e.subject,
            headers: e.headers,
            payload: e.payload,
            stream: e.stream,
            consumer: e.consumer,
            stream_sequence: e.stream_sequence,
            consumer_sequence: e.consumer_sequence,
            delivery_count: e.delivery_count,
            pending: e.pending,
            timestamp_ns: e.timestamp_ns,
            received_at_ns: e.received_at_ns,
            message_id: e.message_id,
            metadata: metadata(e.metadata),
            custody: e.custody.map(custody),
        }
    }

    fn sink_error(e: own::SinkError) -> wit::SinkError {
        wit::SinkError {
            kind: match e.kind {
                own::ErrorKind::Transient => wit::ErrorKind::Transient,
                own::ErrorKind::Permanent => wit::ErrorKind::Permanent,
            },
            message: e.message,
        }
    }

    impl Guest for FileSinkComponent {
        fn init(config: String) -> Result<(), String> {
            crate::sink::init(&config)
        }

        fn write_batch(batch: Vec<wit::Envelope>) -> Result<wit::BatchReport, wit::SinkError> {
            let batch: Vec<own::Envelope> = batch.into_iter().map(envelope).collect();
            match crate::sink::write_batch(&batch) {
                Ok(report) => Ok(wit::BatchReport {
                    failures: report
                        .failures
                        .into_iter()
                        .map(|f| wit::MessageFailure {
                            index: f.index,
                            error: sink_error(f.error),
                        })
                        .collect(),
                }),
                Err(e) => Err(sink_error(e)),
            }
        }
    }

    export!(FileSinkComponent);
}

#[cfg(target_arch = "wasm32")]
pub(crate) use glue::sinkhost;
