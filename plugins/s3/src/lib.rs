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
//! headers), `sink` (outcomes to the batch report); this file is glue.

pub mod config;
pub mod key;
pub mod request;
pub mod sink;

/// The WIT bindings (types are plain Rust, so the logic is tested natively).
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        // The shared types of the SDK, so its record helpers take our
        // envelopes.
        with: { "sinkhost:sink/types@0.1.0": sinkhost_sdk_http::wit::sinkhost::sink::types },
    });
}

pub use sinkhost_sdk_http::wit::sinkhost::sink::types::{BatchReport, Envelope, ErrorKind, MessageFailure, SinkError};

/// Logs through the host (`sinkhost:sink/log`); a no-op off wasm32.
pub fn log(level: bindings::sinkhost::sink::log::Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::sinkhost::sink::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, message);
}

#[cfg(target_arch = "wasm32")]
mod glue {
    use crate::bindings::exports::sinkhost::sink::sink::Guest;
    use crate::{BatchReport, Envelope, SinkError};

    struct S3SinkComponent;

    impl Guest for S3SinkComponent {
        fn init(config: String) -> Result<(), String> {
            crate::sink::init(&config)
        }

        fn write_batch(batch: Vec<Envelope>) -> Result<BatchReport, SinkError> {
            crate::sink::write_batch(&batch)
        }
    }

    crate::bindings::export!(S3SinkComponent with_types_in crate::bindings);
}
