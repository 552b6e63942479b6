//! `sinkhost-plugin-postgres`: the first-party PostgreSQL sink, a WebAssembly component
//! of world `sinkhost:sink/sql-plugin@0.1.0`.
//!
//! One row per message, idempotent on the configured key, written through
//! the host's `sql` interface: the host holds the connection and the
//! credentials; this plugin never sees them. Everything but the dialect
//! lives in `sinkhost-sdk-sql`, shared with the other database sinks; this
//! file is only the export glue. See `docs/postgres-sink.md`.

/// The dialect this sink writes.
pub const DIALECT: sinkhost_sdk_sql::Dialect = sinkhost_sdk_sql::Dialect::Postgres;

/// The WIT bindings, on the SDK's shared types.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "sql-plugin",
        with: {
            "sinkhost:sink/types@0.1.0": sinkhost_sdk_http::wit::sinkhost::sink::types,
            "sinkhost:sink/sql@0.1.0": sinkhost_sdk_sql::wit::sinkhost::sink::sql,
        },
    });
}

#[cfg(target_arch = "wasm32")]
mod glue {
    use std::sync::OnceLock;

    use crate::bindings::exports::sinkhost::sink::sink::Guest;
    use crate::bindings::sinkhost::sink::log::{log, Level};
    use sinkhost_sdk_http::wit::sinkhost::sink::types::{BatchReport, Envelope, SinkError};
    use sinkhost_sdk_sql::sink::DatabaseSink;
    use sinkhost_sdk_sql::HostDatabase;

    static SINK: OnceLock<DatabaseSink> = OnceLock::new();

    struct Component;

    impl Guest for Component {
        fn init(config: String) -> Result<(), String> {
            let sink = DatabaseSink::new(crate::DIALECT, &config)?;
            if let Some(warning) = sink.check_table(&HostDatabase)? {
                log(Level::Warn, &warning);
            }
            let _ = SINK.set(sink);
            Ok(())
        }

        fn write_batch(batch: Vec<Envelope>) -> Result<BatchReport, SinkError> {
            let sink = SINK.get().ok_or_else(|| SinkError {
                kind: sinkhost_sdk_http::wit::sinkhost::sink::types::ErrorKind::Permanent,
                message: "write-batch before init".into(),
            })?;
            sink.write_batch(&HostDatabase, &batch, sinkhost_sdk_sql::now_ns())
        }
    }

    crate::bindings::export!(Component with_types_in crate::bindings);
}
