//! Database sinks for sinkhost, shared by the Oracle, MySQL and PostgreSQL
//! plugins: the three differ only in their [`Dialect`].
//!
//! - [`config`] parses the `sink` section (table, idempotency key, conflict
//!   policy, payload mode, column names, payload-field columns);
//! - [`row`] maps a message to the values of one row;
//! - [`dialect`] writes the idempotent statement for each database (`ON
//!   CONFLICT`, `ON DUPLICATE KEY UPDATE`, `MERGE`);
//! - [`sink`] stores a batch in one transaction, setting aside only the rows
//!   the database rejects, and commits before reporting success.
//!
//! The database is reached through the host's `sql` interface
//! ([`Database`]); off `wasm32` a test double stands in for it, so all of
//! this is tested natively.

pub mod config;
pub mod dialect;
pub mod row;
pub mod sink;

pub use dialect::Dialect;

/// The WIT `sinkhost:sink/sql` interface, generated once: database plugins
/// map their bindings onto it
/// (`with: { "sinkhost:sink/sql@0.1.0": sinkhost_sdk_sql::wit::sinkhost::sink::sql }`).
pub mod wit {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "sql-client",
        additional_derives: [PartialEq],
    });
}

pub use wit::sinkhost::sink::sql::{ErrorKind as SqlErrorKind, SqlError, Value};

/// What a sink needs from a database: one transaction at a time. The host's
/// `sql` interface implements it on `wasm32` ([`HostDatabase`]); tests use
/// their own.
pub trait Database {
    /// An open transaction.
    type Transaction: Transaction;
    /// Starts a transaction on granted connection `connection`.
    fn begin(&self, connection: &str) -> Result<Self::Transaction, SqlError>;
    /// The columns of granted table `table`.
    fn columns(&self, connection: &str, table: &str) -> Result<Vec<String>, SqlError>;
}

/// One open transaction.
pub trait Transaction {
    /// Runs `statement` once with `params`; returns the rows affected.
    fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, SqlError>;
    /// Runs `statement` once per row of values; returns the rows affected.
    fn execute_many(&self, statement: &str, rows: &[Vec<Value>]) -> Result<u64, SqlError>;
    /// Commits.
    fn commit(&self) -> Result<(), SqlError>;
    /// Rolls back.
    fn rollback(&self) -> Result<(), SqlError>;
}

/// The host's `sql` interface (only inside a component).
#[cfg(target_arch = "wasm32")]
pub struct HostDatabase;

#[cfg(target_arch = "wasm32")]
impl Database for HostDatabase {
    type Transaction = wit::sinkhost::sink::sql::Transaction;

    fn begin(&self, connection: &str) -> Result<Self::Transaction, SqlError> {
        wit::sinkhost::sink::sql::begin(connection)
    }

    fn columns(&self, connection: &str, table: &str) -> Result<Vec<String>, SqlError> {
        wit::sinkhost::sink::sql::columns(connection, table)
    }
}

#[cfg(target_arch = "wasm32")]
impl Transaction for wit::sinkhost::sink::sql::Transaction {
    fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, SqlError> {
        wit::sinkhost::sink::sql::Transaction::execute(self, statement, params)
    }

    fn execute_many(&self, statement: &str, rows: &[Vec<Value>]) -> Result<u64, SqlError> {
        wit::sinkhost::sink::sql::Transaction::execute_many(self, statement, rows)
    }

    fn commit(&self) -> Result<(), SqlError> {
        wit::sinkhost::sink::sql::Transaction::commit(self)
    }

    fn rollback(&self) -> Result<(), SqlError> {
        wit::sinkhost::sink::sql::Transaction::rollback(self)
    }
}

/// The wall clock, nanoseconds since the Unix epoch (for `stored_at`).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX)
        })
}

/// Makes the calling crate a database sink component for `$dialect`: the
/// WIT bindings of world `sql-plugin` (on this SDK's shared types) and the
/// `sink` export, which parses the config and checks the table at `init` and
/// stores batches with [`sink::DatabaseSink`]. The calling crate depends on
/// `wit-bindgen`, `sinkhost-sdk-http` and this crate, and lives two levels
/// below the repository root (the WIT is read from `../../wit`).
///
/// ```ignore
/// sinkhost_sdk_sql::database_sink_component!(sinkhost_sdk_sql::Dialect::Postgres);
/// ```
// `crate::` in the expansion is deliberate: it names the calling crate,
// where the bindings are generated.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! database_sink_component {
    ($dialect:expr) => {
        /// The dialect this sink writes.
        pub const DIALECT: $crate::Dialect = $dialect;

        /// The WIT bindings, on the SDKs' shared types.
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

            use $crate::sink::DatabaseSink;
            use $crate::HostDatabase;
            use crate::bindings::exports::sinkhost::sink::sink::Guest;
            use crate::bindings::sinkhost::sink::log::{log, Level};
            use sinkhost_sdk_http::wit::sinkhost::sink::types::{BatchReport, Envelope, ErrorKind, SinkError};

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
                        kind: ErrorKind::Permanent,
                        message: "write-batch before init".into(),
                    })?;
                    sink.write_batch(&HostDatabase, &batch, $crate::now_ns())
                }
            }

            crate::bindings::export!(Component with_types_in crate::bindings);
        }
    };
}
