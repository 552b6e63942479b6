//! `sinkhost-plugin-s3`: the first-party S3 sink, a WebAssembly component of
//! world `sinkhost:sink/plugin@0.1.0`.
//!
//! Writes one object per message (or per batch) with `If-None-Match: *`, so
//! a redelivered message never overwrites what is stored (`412` counts as
//! already stored). The plugin builds plain S3 requests; the host signs them
//! with SigV4 from `plugin.grants.http[].auth.aws_sigv4`, and the plugin
//! never sees the keys. See `docs/s3-sink.md`.
//!
//! Laid out like the HTTP sink: `config`, `request` (keys, objects,
//! headers), `sink` (outcomes to the batch report; `S3Sink`, a
//! `sinkhost_sdk::Sink`); this file exports it. The WIT types and logging
//! come from `sinkhost-sdk`.

pub mod config;
pub mod key;
pub mod request;
pub mod sink;

pub use sinkhost_sdk::{BatchReport, Envelope, ErrorKind, MessageFailure, SinkError};

sinkhost_sdk::export_sink!(crate::sink::S3Sink);
