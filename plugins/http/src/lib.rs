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
//! into the batch report; this file is only the export glue.

pub mod config;
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

    struct HttpSinkComponent;

    impl Guest for HttpSinkComponent {
        fn init(config: String) -> Result<(), String> {
            crate::sink::init(&config)
        }

        fn write_batch(batch: Vec<Envelope>) -> Result<BatchReport, SinkError> {
            crate::sink::write_batch(&batch)
        }
    }

    crate::bindings::export!(HttpSinkComponent with_types_in crate::bindings);
}
