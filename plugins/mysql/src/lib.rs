//! `sinkhost-plugin-mysql`: the first-party MySQL and MariaDB sink, a WebAssembly component
//! of world `sinkhost:sink/sql-plugin@0.1.0`.
//!
//! One row per message, idempotent on the configured key, written through
//! the host's `sql` interface: the host holds the connection and the
//! credentials; this plugin never sees them. Everything but the dialect
//! lives in `sinkhost-sdk-sql`, shared with the other database sinks. See
//! `docs/mysql-sink.md`.

sinkhost_sdk_sql::database_sink_component!(sinkhost_sdk_sql::Dialect::Mysql);
