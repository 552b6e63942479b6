//! Bindings for plugins built against `sinkhost:sink@0.1.x`, and the
//! conversions between the host's types and this version's WIT types.
//!
//! One module per supported WIT version: when the contract changes, the old
//! WIT is frozen under `wit/versions/` and keeps its module here, so plugins
//! built against it keep working.

use wasmtime::component::{Component, HasSelf, Linker, Resource};
use wasmtime::Store;

use super::state::{LogLevel, StoreState};
use super::{ErrorKind, MessageFailure, PluginFault, SinkError, WriteOutcome};
use crate::envelope::Envelope;

wasmtime::component::bindgen!({
    path: "../wit",
    // The widest world of this version: a component that imports less (no
    // `sql`) links against it just the same.
    world: "sql-plugin",
    imports: { "sinkhost:sink/sql@0.1.0": async | trappable, default: async },
    exports: { default: async },
    with: { "sinkhost:sink/sql.transaction": crate::capabilities::sql::Transaction },
});

use self::sinkhost::sink::sql as wit_sql;
use self::sinkhost::sink::types as wit;
use crate::capabilities::sql::{SqlError, SqlErrorKind, SqlRows, SqlValue, Transaction};

/// The WIT version this module binds.
pub const VERSION: &str = "0.1.0";

/// Adds this version's host imports (`log` and `sql`) to a linker.
pub fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    self::sinkhost::sink::log::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |state| {
        state
    })?;
    wit_sql::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |state| state)
}

impl self::sinkhost::sink::log::Host for StoreState {
    async fn log(&mut self, level: self::sinkhost::sink::log::Level, message: String) {
        use self::sinkhost::sink::log::Level;
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        self.log.line(level, "log", &message);
    }
}

impl self::sinkhost::sink::types::Host for StoreState {}

impl StoreState {
    /// The WIT error of a host SQL error; a refusal by the grant is also
    /// recorded (see `crate::capabilities::Refusals`).
    fn sql_error(&self, error: SqlError) -> wit_sql::SqlError {
        if error.kind == SqlErrorKind::Refused {
            self.sql.refusals().record("sql", error.message.clone());
        }
        sql_error_to_wit(error)
    }
}

impl wit_sql::Host for StoreState {
    async fn begin(
        &mut self,
        connection: String,
    ) -> wasmtime::Result<Result<Resource<Transaction>, wit_sql::SqlError>> {
        match self.sql.begin(&connection).await {
            Ok(transaction) => {
                let handle = self.table().push(transaction)?;
                self.sql_transactions.began(&handle);
                Ok(Ok(handle))
            }
            Err(error) => Ok(Err(self.sql_error(error))),
        }
    }

    async fn columns(
        &mut self,
        connection: String,
        table: String,
    ) -> wasmtime::Result<Result<Vec<String>, wit_sql::SqlError>> {
        let result = self.sql.columns(&connection, &table).await;
        Ok(result.map_err(|error| self.sql_error(error)))
    }
}

impl wit_sql::HostTransaction for StoreState {
    async fn execute(
        &mut self,
        transaction: Resource<Transaction>,
        statement: String,
        params: Vec<wit_sql::Value>,
    ) -> wasmtime::Result<Result<u64, wit_sql::SqlError>> {
        let params: Vec<SqlValue> = params.into_iter().map(value_from_wit).collect();
        let transaction = self.table().get_mut(&transaction)?;
        let result = transaction.execute(&statement, &params).await;
        Ok(result.map_err(|error| self.sql_error(error)))
    }

    async fn execute_many(
        &mut self,
        transaction: Resource<Transaction>,
        statement: String,
        rows: Vec<Vec<wit_sql::Value>>,
    ) -> wasmtime::Result<Result<u64, wit_sql::SqlError>> {
        let rows: Vec<Vec<SqlValue>> = rows
            .into_iter()
            .map(|row| row.into_iter().map(value_from_wit).collect())
            .collect();
        let transaction = self.table().get_mut(&transaction)?;
        let result = transaction.execute_many(&statement, &rows).await;
        Ok(result.map_err(|error| self.sql_error(error)))
    }

    async fn query(
        &mut self,
        transaction: Resource<Transaction>,
        statement: String,
        params: Vec<wit_sql::Value>,
    ) -> wasmtime::Result<Result<wit_sql::Rows, wit_sql::SqlError>> {
        let params: Vec<SqlValue> = params.into_iter().map(value_from_wit).collect();
        let transaction = self.table().get_mut(&transaction)?;
        let result = transaction.query(&statement, &params).await;
        Ok(result
            .map(rows_to_wit)
            .map_err(|error| self.sql_error(error)))
    }

    async fn commit(
        &mut self,
        transaction: Resource<Transaction>,
    ) -> wasmtime::Result<Result<(), wit_sql::SqlError>> {
        let transaction = self.table().get_mut(&transaction)?;
        let result = transaction.commit().await;
        Ok(result.map_err(|error| self.sql_error(error)))
    }

    async fn rollback(
        &mut self,
        transaction: Resource<Transaction>,
    ) -> wasmtime::Result<Result<(), wit_sql::SqlError>> {
        let transaction = self.table().get_mut(&transaction)?;
        let result = transaction.rollback().await;
        Ok(result.map_err(|error| self.sql_error(error)))
    }

    async fn drop(&mut self, transaction: Resource<Transaction>) -> wasmtime::Result<()> {
        let transaction = self.table().delete(transaction)?;
        transaction.close().await;
        Ok(())
    }
}

fn value_from_wit(value: wit_sql::Value) -> SqlValue {
    use wit_sql::Value;
    match value {
        Value::Null => SqlValue::Null,
        Value::Boolean(flag) => SqlValue::Boolean(flag),
        Value::Integer(number) => SqlValue::Integer(number),
        Value::Float(number) => SqlValue::Float(number),
        Value::Text(text) => SqlValue::Text(text),
        Value::Bytes(bytes) => SqlValue::Bytes(bytes),
        Value::Json(text) => SqlValue::Json(text),
        Value::Timestamp(nanos) => SqlValue::Timestamp(nanos),
    }
}

fn value_to_wit(value: SqlValue) -> wit_sql::Value {
    use wit_sql::Value;
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Boolean(flag) => Value::Boolean(flag),
        SqlValue::Integer(number) => Value::Integer(number),
        SqlValue::Float(number) => Value::Float(number),
        SqlValue::Text(text) => Value::Text(text),
        SqlValue::Bytes(bytes) => Value::Bytes(bytes),
        SqlValue::Json(text) => Value::Json(text),
        SqlValue::Timestamp(nanos) => Value::Timestamp(nanos),
    }
}

fn rows_to_wit(rows: SqlRows) -> wit_sql::Rows {
    wit_sql::Rows {
        columns: rows.columns,
        rows: rows
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(value_to_wit).collect())
            .collect(),
    }
}

fn sql_error_to_wit(error: SqlError) -> wit_sql::SqlError {
    wit_sql::SqlError {
        kind: match error.kind {
            SqlErrorKind::Transient => wit_sql::ErrorKind::Transient,
            SqlErrorKind::Permanent => wit_sql::ErrorKind::Permanent,
            SqlErrorKind::InvalidStatement => wit_sql::ErrorKind::InvalidStatement,
            SqlErrorKind::Refused => wit_sql::ErrorKind::Refused,
        },
        code: error.code,
        row: error.row,
        message: error.message,
    }
}

/// Pre-linked component of this version: instantiating it is cheap.
#[derive(Clone)]
pub struct Prepared(SqlPluginPre<StoreState>);

impl Prepared {
    /// Links the component against the host's imports.
    pub fn new(linker: &Linker<StoreState>, component: &Component) -> wasmtime::Result<Self> {
        Ok(Self(SqlPluginPre::new(linker.instantiate_pre(component)?)?))
    }

    /// A new instance in `store`.
    pub async fn instantiate(&self, store: &mut Store<StoreState>) -> wasmtime::Result<Bindings> {
        Ok(Bindings(self.0.instantiate_async(store).await?))
    }
}

/// An instance's exports.
pub struct Bindings(SqlPlugin);

impl Bindings {
    /// Calls `init`; `Ok(Err(message))` is the plugin refusing its config.
    pub async fn init(
        &self,
        store: &mut Store<StoreState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        self.0.sinkhost_sink_sink().call_init(store, config).await
    }

    /// Calls `write-batch`.
    pub async fn write_batch(
        &self,
        store: &mut Store<StoreState>,
        batch: &[Envelope],
    ) -> wasmtime::Result<Result<WriteOutcome, PluginFault>> {
        let envelopes: Vec<wit::Envelope> = batch.iter().map(to_wit).collect();
        let result = self
            .0
            .sinkhost_sink_sink()
            .call_write_batch(store, &envelopes)
            .await?;
        Ok(match result {
            Ok(report) => outcome_from_report(report, batch.len()),
            Err(error) => Ok(WriteOutcome::Failed(sink_error(error))),
        })
    }
}

fn to_wit(envelope: &Envelope) -> wit::Envelope {
    let metadata = &envelope.metadata;
    wit::Envelope {
        subject: envelope.subject.clone(),
        headers: envelope.headers.clone(),
        payload: envelope.payload.to_vec(),
        stream: envelope.stream.clone(),
        consumer: envelope.consumer.clone(),
        stream_sequence: envelope.stream_sequence,
        consumer_sequence: envelope.consumer_sequence,
        delivery_count: envelope.delivery_count,
        pending: envelope.pending,
        timestamp_ns: envelope.timestamp_ns,
        received_at_ns: envelope.received_at_ns,
        message_id: envelope.message_id.clone(),
        metadata: wit::MessageMetadata {
            priority: metadata.priority.clone(),
            classification: metadata.classification.clone(),
            labels: metadata.labels.clone(),
            security_labels: metadata.security_labels.clone(),
            mission_metadata: metadata.mission_metadata.clone(),
        },
        custody: envelope.custody.as_ref().map(|custody| wit::Custody {
            algorithm: custody.algorithm.clone(),
            key_id: custody.key_id.clone(),
            payload_hash: custody.payload_hash.clone(),
            metadata_hash: custody.metadata_hash.clone(),
            record_hash: custody.record_hash.clone(),
            previous_record_hash: custody.previous_record_hash.clone(),
        }),
    }
}

fn sink_error(error: wit::SinkError) -> SinkError {
    SinkError {
        kind: match error.kind {
            wit::ErrorKind::Transient => ErrorKind::Transient,
            wit::ErrorKind::Permanent => ErrorKind::Permanent,
        },
        // Cut and escaped: it reaches the host log and every DLQ record.
        message: super::state::clean_message(&error.message),
    }
}

/// Checks the report against the batch: each index in range, at most once.
fn outcome_from_report(
    report: wit::BatchReport,
    batch_len: usize,
) -> Result<WriteOutcome, PluginFault> {
    let mut seen = vec![false; batch_len];
    let mut failures = Vec::with_capacity(report.failures.len());
    for failure in report.failures {
        let index = failure.index as usize;
        match seen.get_mut(index) {
            None => {
                return Err(PluginFault::Protocol {
                    message: format!(
                        "reported a failure for message {index} of a batch of {batch_len}"
                    ),
                })
            }
            Some(true) => {
                return Err(PluginFault::Protocol {
                    message: format!("reported message {index} as failed twice"),
                })
            }
            Some(slot) => *slot = true,
        }
        failures.push(MessageFailure {
            index,
            error: sink_error(failure.error),
        });
    }
    Ok(WriteOutcome::Stored { failures })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(index: u32) -> wit::MessageFailure {
        wit::MessageFailure {
            index,
            error: wit::SinkError {
                kind: wit::ErrorKind::Permanent,
                message: "bad".into(),
            },
        }
    }

    #[test]
    fn report_indexes_are_validated() {
        let ok = outcome_from_report(
            wit::BatchReport {
                failures: vec![failure(1)],
            },
            2,
        );
        assert!(matches!(ok, Ok(WriteOutcome::Stored { failures }) if failures.len() == 1));
        let out_of_range = outcome_from_report(
            wit::BatchReport {
                failures: vec![failure(2)],
            },
            2,
        );
        assert!(matches!(out_of_range, Err(PluginFault::Protocol { .. })));
        let twice = outcome_from_report(
            wit::BatchReport {
                failures: vec![failure(0), failure(0)],
            },
            2,
        );
        assert!(matches!(twice, Err(PluginFault::Protocol { .. })));
    }
}
