//! sinkhost: moves events from NATS JetStream into sandboxed WebAssembly sink
//! components, ACKing a message only after the sink stored it durably.
//!
//! One module per concern:
//! - [`config`]: the operator's configuration file.
//! - [`envelope`]: the host's view of a message handed to a sink.
//! - [`delivery`]: the JetStream consumer, batching, retries, DLQ and ACK.
//! - [`plugin`]: the wasmtime runtime that loads, sandboxes and calls sinks.
//! - [`security`]: authenticity, payload encryption, metadata and custody.
//! - [`capabilities`]: what an operator can grant a plugin (directories,
//!   HTTP origins, database connections).
//! - [`signing`]: plugin signatures, certifications and the trust policy.
//! - [`certify`]: the certification suite (`sinkhost certify`).
//! - [`registry`]: plugins pushed to and pulled from OCI registries.
//! - [`cli`]: the `sinkhost` command line.
//! - [`logging`]: the host log.
//! - [`subjects`]: NATS subject patterns (validation, matching); imports nothing.
//! - [`manifest`]: the plugin manifest embedded in a component.

#![warn(missing_docs)]

pub mod capabilities;
pub mod certify;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod envelope;
pub mod logging;
pub mod manifest;
pub mod plugin;
pub mod registry;
pub mod scaffold;
pub mod security;
pub mod signing;
pub mod subjects;
