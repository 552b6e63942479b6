//! Storing a batch: one transaction, idempotent statements, commit before
//! success.
//!
//! PostgreSQL and MySQL get one multi-row statement per
//! [`MAX_ROWS_PER_STATEMENT`] rows (one round trip each); Oracle gets one
//! `MERGE` bound as an array. If a multi-row statement fails for its data,
//! the batch is written again one statement per row, so the database says
//! which row it rejects.
//!
//! When the database rejects a row for its data (a constraint, a value that
//! does not fit), the transaction is rolled back, that message alone is
//! reported as a permanent failure (the host dead-letters it) and the rest
//! are written again in a new transaction. Anything else (connection lost,
//! deadlock, timeout, a wrong statement, a refused grant) fails the whole
//! batch as transient: nothing is ACKed and the messages wait in the stream.

use sinkhost_sdk_http::wit::sinkhost::sink::types::{
    BatchReport, Envelope, ErrorKind, MessageFailure, SinkError,
};

use crate::config::{Column, SinkConfig};
use crate::{row, Database, Dialect, SqlError, SqlErrorKind, Transaction};

/// Most rows in one multi-row statement: large enough that a round trip
/// carries hundreds of rows, small enough to stay far below the 65,535
/// placeholders both PostgreSQL and MySQL allow per statement.
pub const MAX_ROWS_PER_STATEMENT: usize = 500;
/// Placeholders one statement may hold (PostgreSQL's and MySQL's limit).
const MAX_PLACEHOLDERS: usize = 65_535;

/// A configured database sink.
#[derive(Debug, Clone)]
pub struct DatabaseSink {
    config: SinkConfig,
    dialect: Dialect,
    columns: Vec<Column>,
    statement: String,
    /// Rows per multi-row statement (0: the dialect has none).
    rows_per_statement: usize,
    /// The multi-row statement for a full chunk.
    full_chunk_statement: String,
}

impl DatabaseSink {
    /// Parses the `sink` section and writes the statement for `dialect`.
    pub fn new(dialect: Dialect, config_json: &str) -> Result<Self, String> {
        let config = SinkConfig::parse(config_json)?;
        let statement = dialect.upsert(&config);
        let columns = config.columns_in_order();
        let rows_per_statement = if dialect.has_multi_row_upsert() {
            MAX_ROWS_PER_STATEMENT.min(MAX_PLACEHOLDERS / columns.len().max(1))
        } else {
            0
        };
        let full_chunk_statement = dialect.upsert_rows(&config, rows_per_statement.max(1));
        Ok(Self {
            config,
            dialect,
            columns,
            statement,
            rows_per_statement,
            full_chunk_statement,
        })
    }

    /// The statement each row is written with.
    pub fn statement(&self) -> &str {
        &self.statement
    }

    /// Checks that the table exists with every column the sink writes.
    /// `Ok(Some(warning))` when the database cannot be reached now: the
    /// check is not fatal then (batches wait until it is back).
    pub fn check_table(&self, database: &impl Database) -> Result<Option<String>, String> {
        let table = &self.config.table;
        let connection = &self.config.connection;
        match database.columns(connection, table) {
            Ok(found) if found.is_empty() => Err(format!(
                "sink.table: table `{table}` does not exist on `{connection}` (or its user cannot see it); \
                 create it with the script in docs (sdk/sql/sql/)"
            )),
            Ok(found) => {
                let missing: Vec<&str> = self
                    .columns
                    .iter()
                    .map(|column| column.name.as_str())
                    .filter(|name| !found.iter().any(|existing| existing.eq_ignore_ascii_case(name)))
                    .collect();
                if missing.is_empty() {
                    Ok(None)
                } else {
                    Err(format!("sink.table: table `{table}` has no column {}", missing.join(", ")))
                }
            }
            Err(error) if error.kind == SqlErrorKind::Transient => Ok(Some(format!(
                "could not check table `{table}` now ({}); batches wait until the database answers",
                error.message
            ))),
            Err(error) => Err(format!("sink: `{connection}`: {}", error.message)),
        }
    }

    /// Stores `batch`; `now_ns` is the `stored_at` time.
    pub fn write_batch(
        &self,
        database: &impl Database,
        batch: &[Envelope],
        now_ns: i64,
    ) -> Result<BatchReport, SinkError> {
        let mut failures = Vec::new();
        let mut pending: Vec<(usize, Vec<crate::Value>)> = Vec::with_capacity(batch.len());
        for (index, envelope) in batch.iter().enumerate() {
            match row::row(&self.config, &self.columns, envelope, now_ns) {
                Ok(values) => pending.push((index, values)),
                Err(message) => failures.push(permanent(index, message)),
            }
        }
        // Each round either commits or sets aside one rejected row.
        while !pending.is_empty() {
            match self.try_store(database, &pending) {
                Ok(()) => break,
                Err(Rejected::Row(position, error)) => {
                    let (index, _) = pending.remove(position);
                    failures.push(permanent(
                        index,
                        format!("the database rejected the row: {}", describe(&error)),
                    ));
                }
                Err(Rejected::Batch(error)) => return Err(batch_error(&error)),
            }
        }
        failures.sort_by_key(|failure| failure.index);
        Ok(BatchReport { failures })
    }

    fn try_store(
        &self,
        database: &impl Database,
        pending: &[(usize, Vec<crate::Value>)],
    ) -> Result<(), Rejected> {
        if self.rows_per_statement > 1 && pending.len() > 1 {
            match self.store_multi_row(database, pending) {
                Ok(()) => return Ok(()),
                // A row's data: find it below, one statement per row.
                Err(error) if error.kind == SqlErrorKind::Permanent => {}
                Err(error) => return Err(Rejected::Batch(error)),
            }
        }
        self.store_row_by_row(database, pending)
    }

    fn store_multi_row(
        &self,
        database: &impl Database,
        pending: &[(usize, Vec<crate::Value>)],
    ) -> Result<(), SqlError> {
        let transaction = database.begin(&self.config.connection)?;
        for chunk in pending.chunks(self.rows_per_statement) {
            let statement = if chunk.len() == self.rows_per_statement {
                std::borrow::Cow::Borrowed(self.full_chunk_statement.as_str())
            } else {
                std::borrow::Cow::Owned(self.dialect.upsert_rows(&self.config, chunk.len()))
            };
            let params: Vec<crate::Value> = chunk
                .iter()
                .flat_map(|(_, values)| values.iter().cloned())
                .collect();
            if let Err(error) = transaction.execute(&statement, &params) {
                let _ = transaction.rollback();
                return Err(error);
            }
        }
        transaction.commit()
    }

    fn store_row_by_row(
        &self,
        database: &impl Database,
        pending: &[(usize, Vec<crate::Value>)],
    ) -> Result<(), Rejected> {
        let transaction = database
            .begin(&self.config.connection)
            .map_err(Rejected::Batch)?;
        let rows: Vec<Vec<crate::Value>> =
            pending.iter().map(|(_, values)| values.clone()).collect();
        match transaction.execute_many(&self.statement, &rows) {
            Ok(_) => transaction.commit().map_err(Rejected::Batch),
            Err(error) => {
                // Best effort: dropping the transaction rolls back too.
                let _ = transaction.rollback();
                match (error.kind, error.row) {
                    (SqlErrorKind::Permanent, Some(row)) if (row as usize) < pending.len() => {
                        Err(Rejected::Row(row as usize, error))
                    }
                    _ => Err(Rejected::Batch(error)),
                }
            }
        }
    }
}

enum Rejected {
    /// One row's data was rejected (its position in `pending`).
    Row(usize, SqlError),
    /// The batch cannot be stored now.
    Batch(SqlError),
}

fn permanent(index: usize, message: String) -> MessageFailure {
    MessageFailure {
        index: u32::try_from(index).unwrap_or(u32::MAX),
        error: SinkError {
            kind: ErrorKind::Permanent,
            message,
        },
    }
}

fn describe(error: &SqlError) -> String {
    match &error.code {
        Some(code) if !error.message.contains(code.as_str()) => {
            format!("{} [{code}]", error.message)
        }
        _ => error.message.clone(),
    }
}

/// A whole-batch failure is always transient: the messages stay in the
/// stream. A wrong statement or a refused grant needs an operator, not the
/// DLQ.
fn batch_error(error: &SqlError) -> SinkError {
    let advice = match error.kind {
        SqlErrorKind::InvalidStatement => {
            " (fix the table or the sink's columns; messages wait in the stream)"
        }
        SqlErrorKind::Refused => " (the host refused it: check plugin.grants.sql)",
        _ => "",
    };
    SinkError {
        kind: ErrorKind::Transient,
        message: format!("{}{advice}", describe(error)),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;
    use std::rc::Rc;

    use super::*;
    use crate::Value;
    use sinkhost_sdk_http::record::example_envelope;

    /// A database that keeps committed sequences and rejects rows whose
    /// payload is `"BAD"`.
    #[derive(Default, Clone)]
    struct FakeDatabase {
        committed: Rc<RefCell<BTreeSet<i64>>>,
        begins: Rc<RefCell<usize>>,
        multi_row_statements: Rc<RefCell<usize>>,
        width: usize,
        down: bool,
    }

    struct FakeTransaction {
        database: FakeDatabase,
        staged: RefCell<Vec<i64>>,
    }

    impl Database for FakeDatabase {
        type Transaction = FakeTransaction;

        fn begin(&self, _connection: &str) -> Result<FakeTransaction, SqlError> {
            *self.begins.borrow_mut() += 1;
            if self.down {
                return Err(SqlError {
                    kind: SqlErrorKind::Transient,
                    code: None,
                    row: None,
                    message: "connection refused".into(),
                });
            }
            Ok(FakeTransaction {
                database: self.clone(),
                staged: RefCell::new(Vec::new()),
            })
        }

        fn columns(&self, _connection: &str, _table: &str) -> Result<Vec<String>, SqlError> {
            Ok(vec!["stream_name".into(), "STREAM_SEQUENCE".into()])
        }
    }

    impl Transaction for FakeTransaction {
        fn execute(&self, _statement: &str, params: &[Value]) -> Result<u64, SqlError> {
            // A multi-row statement: all or nothing, no row named.
            let width = params.len() / self.database.width.max(1);
            let rows: Vec<Vec<Value>> = params
                .chunks(self.database.width)
                .map(<[Value]>::to_vec)
                .collect();
            self.execute_many("", &rows)
                .map_err(|error| SqlError { row: None, ..error })?;
            *self.database.multi_row_statements.borrow_mut() += 1;
            Ok(width as u64)
        }

        fn execute_many(&self, _statement: &str, rows: &[Vec<Value>]) -> Result<u64, SqlError> {
            for (index, row) in rows.iter().enumerate() {
                if row
                    .iter()
                    .any(|value| matches!(value, Value::Json(text) if text.contains("BAD")))
                {
                    return Err(SqlError {
                        kind: SqlErrorKind::Permanent,
                        code: Some("23514".into()),
                        row: Some(index as u32),
                        message: "check constraint violated".into(),
                    });
                }
                let Value::Integer(sequence) = row[1] else {
                    panic!("sequence column")
                };
                self.staged.borrow_mut().push(sequence);
            }
            Ok(rows.len() as u64)
        }

        fn commit(&self) -> Result<(), SqlError> {
            self.database
                .committed
                .borrow_mut()
                .extend(self.staged.borrow().iter());
            Ok(())
        }

        fn rollback(&self) -> Result<(), SqlError> {
            self.staged.borrow_mut().clear();
            Ok(())
        }
    }

    fn sink() -> DatabaseSink {
        DatabaseSink::new(Dialect::Postgres, r#"{"connection": "events"}"#).expect("sink")
    }

    fn database() -> FakeDatabase {
        FakeDatabase {
            width: crate::config::STANDARD_COLUMNS.len(),
            ..FakeDatabase::default()
        }
    }

    #[test]
    fn a_clean_batch_is_one_multi_row_statement_per_chunk() {
        let database = database();
        let batch: Vec<Envelope> = (1..=1_200)
            .map(|sequence| example_envelope(sequence, b"{}"))
            .collect();
        let report = sink().write_batch(&database, &batch, 0).expect("report");
        assert!(report.failures.is_empty());
        assert_eq!(database.committed.borrow().len(), 1_200);
        assert_eq!(
            *database.multi_row_statements.borrow(),
            3,
            "500 + 500 + 200 rows"
        );
        assert_eq!(*database.begins.borrow(), 1);
    }

    #[test]
    fn a_rejected_row_fails_alone_and_its_neighbours_are_committed() {
        let database = database();
        let batch: Vec<Envelope> = (1..=5)
            .map(|sequence| {
                example_envelope(sequence, if sequence == 3 { br#""BAD""# } else { b"{}" })
            })
            .collect();
        let report = sink().write_batch(&database, &batch, 0).expect("report");
        assert_eq!(report.failures.len(), 1);
        assert_eq!(report.failures[0].index, 2);
        assert!(
            report.failures[0]
                .error
                .message
                .contains("check constraint"),
            "{}",
            report.failures[0].error.message
        );
        assert_eq!(*database.committed.borrow(), BTreeSet::from([1, 2, 4, 5]));
        assert_eq!(
            *database.begins.borrow(),
            3,
            "the multi-row try, the row-by-row try that names the row, the retry without it"
        );
    }

    #[test]
    fn an_unreachable_database_fails_the_batch_as_transient() {
        let database = FakeDatabase {
            down: true,
            ..database()
        };
        let error = sink()
            .write_batch(&database, &[example_envelope(1, b"{}")], 0)
            .expect_err("down");
        assert_eq!(error.kind, ErrorKind::Transient);
    }

    #[test]
    fn the_table_check_names_missing_columns() {
        let error = sink()
            .check_table(&FakeDatabase::default())
            .expect_err("missing");
        assert!(error.contains("has no column subject"), "{error}");
    }
}
