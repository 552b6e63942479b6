//! `sinkhost-plugin-file`: the first-party file sink, a WebAssembly component
//! of world `sinkhost:sink/plugin@0.1.0`.
//!
//! Writes every message as a JSON record of schema
//! `nats_sinks.file.message.v1` (compatible with the reference `nats-sinks`
//! 0.4.3 file sink), one file per message or one JSON-lines segment per
//! batch, with atomic placement and fsync. See `docs/file-sink.md`.
//!
//! Built on the Rust SDK (`sdk/rust`, crate `sinkhost-sdk`): the WIT types,
//! logging and the component exports come from there ([`sink::FileSink`]
//! implements [`sinkhost_sdk::Sink`]). The logic lives in plain Rust modules
//! that are unit tested natively (`cargo test -p sinkhost-plugin-file`).

pub mod config;
pub mod fs;
pub mod json;
pub mod layout;
pub mod payload;
pub mod record;
pub mod sink;
pub mod time;

sinkhost_sdk::export_sink!(crate::sink::FileSink);
