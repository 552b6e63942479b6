//! `sinkhost-sdk`: write [sinkhost](https://example.invalid/sinkhost) sink
//! plugins in Rust.
//!
//! A sink is a WebAssembly component of world `sinkhost:sink/plugin@0.1.0`
//! (`wit/sink.wit`). With this crate a plugin is one type implementing
//! [`Sink`] and one line, [`export_sink!`], that generates the component's
//! exports:
//!
//! ```
//! use sinkhost_sdk::{BatchReport, Envelope, Sink, SinkError};
//!
//! /// Stores nothing; counts what it sees.
//! struct Discard {
//!     seen: u64,
//! }
//!
//! impl Sink for Discard {
//!     fn init(_config: &str) -> Result<Self, String> {
//!         Ok(Discard { seen: 0 })
//!     }
//!
//!     fn write_batch(&mut self, batch: &[Envelope]) -> Result<BatchReport, SinkError> {
//!         self.seen += batch.len() as u64;
//!         Ok(BatchReport::all_stored())
//!     }
//! }
//!
//! sinkhost_sdk::export_sink!(Discard);
//! # fn main() {}
//! ```
//!
//! What the crate gives a sink:
//!
//! - [`Envelope`] (the WIT record) with typed accessors: [`Envelope::header`],
//!   [`Envelope::payload_str`], [`Envelope::payload_json`],
//!   [`Envelope::idempotency_key`], [`Envelope::message_id_key`]...;
//! - [`payload`]: payload normalisation to a JSON value (JSON as is, text or
//!   base64 in an envelope). Nothing is ever decrypted: plugins hold no keys,
//!   and an encrypted payload is the host's envelope document, stored as is;
//! - [`config`]: the `sink` section parsed into your `serde` type with an
//!   error that names the offending field;
//! - [`log`]: lines in the host's log (`sinkhost:sink/log`);
//! - [`BatchReport`] and [`SinkError`] helpers for per-message outcomes.
//!
//! Everything except the WIT imports works natively, so a plugin's logic is
//! unit tested with a plain `cargo test`. Build the component with
//! `cargo build --release --target wasm32-wasip2`.

pub mod config;
pub mod envelope;
pub mod log;
pub mod payload;
pub mod report;
#[doc(hidden)]
pub mod runtime;

/// The WIT bindings of world `sinkhost:sink/plugin@0.1.0`, generated once in
/// this crate: [`Envelope`], [`SinkError`], [`BatchReport`] and the other
/// records are these types. [`export_sink!`] uses the `export!` macro
/// generated here; plugins rarely need this module directly.
pub mod wit {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "::sinkhost_sdk::wit",
        additional_derives: [PartialEq, Eq],
    });
}

pub use config::{parse_config, ConfigError};
pub use payload::{normalise, NormalisedPayload, PayloadError, PayloadMode};
pub use wit::sinkhost::sink::types::{
    BatchReport, Custody, Envelope, ErrorKind, MessageFailure, MessageMetadata, SinkError,
};

/// A sink: what a plugin implements. One value lives per plugin instance.
///
/// - [`Sink::init`] receives the operator's `sink` section as a JSON
///   document and returns the sink, or a clear message naming the offending
///   field (the host then refuses to start). Use [`parse_config`].
/// - [`Sink::write_batch`] stores a batch durably. `Ok(report)`: every
///   message not listed in `report.failures` is stored (the host ACKs it);
///   `Err(e)`: nothing is assumed stored. The same message may come again
///   after a crash or timeout: store it at most once, keyed on
///   [`Envelope::idempotency_key`].
///
/// ```
/// use sinkhost_sdk::{BatchReport, Envelope, Sink, SinkError};
///
/// struct Counter(usize);
///
/// impl Sink for Counter {
///     fn init(config: &str) -> Result<Self, String> {
///         if config.trim() == "{}" { Ok(Counter(0)) } else { Err("sink: no options expected".into()) }
///     }
///     fn write_batch(&mut self, batch: &[Envelope]) -> Result<BatchReport, SinkError> {
///         self.0 += batch.len();
///         Ok(BatchReport::all_stored())
///     }
/// }
///
/// let mut sink = Counter::init("{}").unwrap();
/// let report = sink.write_batch(&[Envelope::new("ORDERS", 1, "orders.created", b"{}".to_vec())]).unwrap();
/// assert!(report.failures.is_empty());
/// assert!(Counter::init(r#"{"x":1}"#).is_err());
/// ```
pub trait Sink: Sized + 'static {
    /// Validates the `sink` section (a JSON document) and builds the sink.
    fn init(config: &str) -> Result<Self, String>;

    /// Stores `batch` durably; see the trait's documentation.
    fn write_batch(&mut self, batch: &[Envelope]) -> Result<BatchReport, SinkError>;
}

/// Makes the calling crate a sink component: exports `sinkhost:sink/sink`
/// backed by the [`Sink`] type given. The crate must be a `cdylib` built for
/// `wasm32-wasip2`; off `wasm32` the macro expands to nothing, so native unit
/// tests of the same crate still build.
///
/// ```
/// use sinkhost_sdk::{BatchReport, Envelope, Sink, SinkError};
///
/// struct Nothing;
///
/// impl Sink for Nothing {
///     fn init(_config: &str) -> Result<Self, String> { Ok(Nothing) }
///     fn write_batch(&mut self, _batch: &[Envelope]) -> Result<BatchReport, SinkError> {
///         Ok(BatchReport::all_stored())
///     }
/// }
///
/// sinkhost_sdk::export_sink!(Nothing);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_sink {
    ($sink:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct SinkhostComponent;

            impl $crate::wit::exports::sinkhost::sink::sink::Guest for SinkhostComponent {
                fn init(
                    config: ::std::string::String,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::runtime::init::<$sink>(&config)
                }

                fn write_batch(
                    batch: ::std::vec::Vec<$crate::Envelope>,
                ) -> ::std::result::Result<$crate::BatchReport, $crate::SinkError> {
                    $crate::runtime::write_batch::<$sink>(&batch)
                }
            }

    $crate::wit::export!(SinkhostComponent with_types_in $crate::wit);
        };
    };
}
