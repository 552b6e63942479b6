//! `sinkhost-plugin-http`: the first-party HTTP sink, a WebAssembly component
//! of world `sinkhost:sink/plugin@0.1.0`.
//!
//! Sends each message (or each batch, as JSON lines or a JSON array) to one
//! fixed URL through `wasi:http`. The host lets the request reach only the
//! origins granted in `plugin.grants.http` and adds the credentials; this
//! plugin never sees them. See `docs/http-sink.md`.
//!
//! Layout (shared with the S3 sink): `config` parses and checks the `sink`
//! section, `request` builds requests from envelopes, `sink` turns outcomes
//! into the batch report (`HttpSink`, a `sinkhost_sdk::Sink`); this file
//! exports it. The WIT types and logging come from `sinkhost-sdk`.

pub mod config;
pub mod request;
pub mod sink;

pub use sinkhost_sdk::{BatchReport, Envelope, ErrorKind, MessageFailure, SinkError};

sinkhost_sdk::export_sink!(crate::sink::HttpSink);
