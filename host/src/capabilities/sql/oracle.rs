//! Oracle Database through Oracle's pure-Rust thin driver (`oracledb`): no
//! Instant Client needed. The driver is blocking, so every call runs on
//! tokio's blocking pool with the connection moved in and back out.
//!
//! `execute-many` uses the driver's array binding (`execute_batch`, one
//! round trip per call). When such a call fails, Oracle has undone that
//! statement only (statement-level atomicity), so the rows are replayed one
//! by one to say which row failed; the caller rolls back anyway.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use oracledb::{DbType, ErrorKind, ToDbValue};

use super::endpoint::Endpoint;
use super::{catalog_name, SqlError, SqlErrorKind, SqlRows, SqlValue, MAX_QUERY_ROWS};
use crate::config::SqlDriver;

/// `ORA-` codes after which the same batch can succeed later: resource busy
/// (51, 54), deadlock (60), user cancel or call timeout (1013), instance
/// shutting down or unavailable (1033, 1034, 1089, 1090), lost connection
/// (3113, 3114, 3135), can't serialise (8177), TNS failures (12170, 12514,
/// 12528, 12537, 12541, 12543), failover (25408).
const TRANSIENT_ERRORS: &[usize] = &[
    51, 54, 60, 1013, 1033, 1034, 1089, 1090, 3113, 3114, 3135, 8177, 12170, 12514, 12528, 12537,
    12541, 12543, 25408,
];

/// `ORA-` codes that mean the statement is wrong: the parse errors
/// ORA-00900 to ORA-00999 (942: no such table, 904: invalid identifier) and
/// insufficient privileges (1031).
fn is_statement_error(code: usize) -> bool {
    (900..1000).contains(&code) || code == 1031
}

/// A pool created on first use (creating it connects), shared by all calls.
pub struct Pool {
    config: oracledb::PoolConfig,
    pool: Arc<OnceLock<oracledb::Pool>>,
}

impl Pool {
    /// A pool of `size` connections to `endpoint`; connects nothing yet.
    pub fn new(endpoint: &Endpoint, size: u32, _connect_timeout: Duration) -> Result<Self, String> {
        let connect_string = format!(
            "{}:{}/{}",
            bracket_ipv6(&endpoint.host),
            endpoint.port,
            endpoint.service
        );
        let config = oracledb::PoolConfig::default()
            .set_credentials(&endpoint.user, &endpoint.password)
            .set_connect_string(&connect_string)
            .map_err(|err| format!("invalid Oracle connect string: {err}"))?
            .set_min_connections(0)
            .set_max_connections(size as usize)
            .set_connection_increment(1)
            // Checks an idle connection before reuse, so a restarted
            // database costs one failed batch at most.
            .set_ping_interval(Some(Duration::from_secs(0)));
        Ok(Self {
            config,
            pool: Arc::new(OnceLock::new()),
        })
    }

    async fn connection(&self) -> Result<oracledb::Connection, SqlError> {
        let config = self.config.clone();
        let cell = Arc::clone(&self.pool);
        blocking(move || {
            if cell.get().is_none() {
                let pool = oracledb::create_pool(config).map_err(classify)?;
                let _ = cell.set(pool);
            }
            let pool = cell
                .get()
                .ok_or_else(|| SqlError::transient("the Oracle pool is not available"))?;
            pool.acquire().map_err(classify)
        })
        .await
    }

    /// Takes a connection; Oracle starts the transaction with the first
    /// statement and never commits unless told to.
    pub async fn begin(&self, _statement_timeout: Duration) -> Result<Transaction, SqlError> {
        Ok(Transaction {
            connection: Some(self.connection().await?),
        })
    }

    /// The table's columns, from `ALL_TAB_COLUMNS`.
    pub async fn columns(&self, table: &str) -> Result<Vec<String>, SqlError> {
        let (owner, name) = catalog_name(SqlDriver::Oracle, table);
        let connection = self.connection().await?;
        blocking(move || {
            let owner: Option<String> = owner;
            let cursor = connection
                .query(
                    "SELECT column_name FROM all_tab_columns WHERE owner = NVL(:1, USER) AND table_name = :2 ORDER BY column_id",
                    &[&owner, &name],
                )
                .map_err(classify)?;
            let mut columns = Vec::new();
            for row in cursor {
                let row = row.map_err(classify)?;
                columns.push(row.get::<String>(0).map_err(classify)?);
            }
            Ok(columns)
        })
        .await
    }
}

fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Runs a blocking driver call on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, SqlError> + Send + 'static,
) -> Result<T, SqlError> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|err| {
            Err(SqlError::transient(format!(
                "the Oracle driver call failed: {err}"
            )))
        })
}

/// An open transaction.
pub struct Transaction {
    connection: Option<oracledb::Connection>,
}

impl Transaction {
    /// Moves the connection into a blocking call and back.
    async fn with_connection<T: Send + 'static>(
        &mut self,
        call: impl FnOnce(&oracledb::Connection) -> Result<T, SqlError> + Send + 'static,
    ) -> Result<T, SqlError> {
        let connection = self
            .connection
            .take()
            .ok_or_else(|| SqlError::transient("the connection is closed"))?;
        let (connection, outcome) = tokio::task::spawn_blocking(move || {
            let outcome = call(&connection);
            (connection, outcome)
        })
        .await
        .map_err(|err| SqlError::transient(format!("the Oracle driver call failed: {err}")))?;
        self.connection = Some(connection);
        outcome
    }

    /// Runs one statement.
    pub async fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64, SqlError> {
        let sql = sql.to_string();
        let params = bind_values(params)?;
        self.with_connection(move |connection| {
            let refs: Vec<&dyn ToDbValue> = params
                .iter()
                .map(|value| value.as_ref() as &dyn ToDbValue)
                .collect();
            connection
                .execute(&sql, &refs)
                .map(|done| done.rows_affected())
                .map_err(classify)
        })
        .await
    }

    /// Runs one statement for every row with array binding.
    pub async fn execute_many(
        &mut self,
        sql: &str,
        rows: &[Vec<SqlValue>],
    ) -> Result<u64, SqlError> {
        let sql = sql.to_string();
        let rows = rows
            .iter()
            .enumerate()
            .map(|(index, row)| bind_values(row).map_err(|err| err.at_row(index)))
            .collect::<Result<Vec<_>, _>>()?;
        self.with_connection(move |connection| {
            let row_refs: Vec<Vec<&dyn ToDbValue>> = rows
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|value| value.as_ref() as &dyn ToDbValue)
                        .collect()
                })
                .collect();
            let slices: Vec<&[&dyn ToDbValue]> =
                row_refs.iter().map(|row| row.as_slice()).collect();
            match connection.execute_batch(&sql, slices.as_slice()) {
                Ok(done) => Ok(done.rows_affected()),
                Err(batch_error) => {
                    let error = classify(batch_error);
                    if error.kind != SqlErrorKind::Permanent {
                        return Err(error);
                    }
                    // Find the row: replay one by one (the failed array
                    // statement left nothing behind).
                    for (index, row) in row_refs.iter().enumerate() {
                        if let Err(row_error) = connection.execute(&sql, row) {
                            return Err(classify(row_error).at_row(index));
                        }
                    }
                    Err(error)
                }
            }
        })
        .await
    }

    /// Runs one query.
    pub async fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<SqlRows, SqlError> {
        let sql = sql.to_string();
        let params = bind_values(params)?;
        self.with_connection(move |connection| {
            let refs: Vec<&dyn ToDbValue> = params
                .iter()
                .map(|value| value.as_ref() as &dyn ToDbValue)
                .collect();
            let cursor = connection.query(&sql, &refs).map_err(classify)?;
            let columns: Vec<String> = cursor
                .columns()
                .iter()
                .map(|column| column.name().to_string())
                .collect();
            let mut rows = Vec::new();
            for row in cursor {
                let row = row.map_err(classify)?;
                if rows.len() == MAX_QUERY_ROWS {
                    return Err(SqlError::permanent(format!(
                        "the query returned more than {MAX_QUERY_ROWS} rows"
                    )));
                }
                rows.push(decode_row(&row)?);
            }
            Ok(SqlRows { columns, rows })
        })
        .await
    }

    /// Commits.
    pub async fn commit(&mut self) -> Result<(), SqlError> {
        self.with_connection(|connection| connection.commit().map_err(classify))
            .await
    }

    /// Rolls back.
    pub async fn rollback(&mut self) -> Result<(), SqlError> {
        self.with_connection(|connection| connection.rollback().map_err(classify))
            .await
    }

    /// Gives the connection up without committing: the driver rolls back
    /// an uncommitted transaction when its connection is released.
    pub fn abandon(mut self) {
        if let Some(connection) = self.connection.take() {
            let release = move || {
                let _ = connection.rollback();
                drop(connection);
            };
            // Rolling back talks to the server: not on an async thread.
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(release)),
                Err(_) => release(),
            }
        }
    }
}

fn bind_values(values: &[SqlValue]) -> Result<Vec<Box<dyn ToDbValue + Send>>, SqlError> {
    values.iter().map(bind_value).collect()
}

fn bind_value(value: &SqlValue) -> Result<Box<dyn ToDbValue + Send>, SqlError> {
    Ok(match value {
        SqlValue::Null => Box::new(None::<String>),
        SqlValue::Boolean(flag) => Box::new(*flag),
        SqlValue::Integer(number) => Box::new(*number),
        SqlValue::Float(number) => Box::new(*number),
        SqlValue::Text(text) | SqlValue::Json(text) => Box::new(text.clone()),
        SqlValue::Bytes(bytes) => Box::new(bytes.clone()),
        SqlValue::Timestamp(nanos) => {
            let utc = chrono::DateTime::from_timestamp_nanos(*nanos).naive_utc();
            Box::new(oracledb::OracleTimestamp::from(utc))
        }
    })
}

fn decode_row(row: &oracledb::Row) -> Result<Vec<SqlValue>, SqlError> {
    let mut cells = Vec::with_capacity(row.columns().len());
    for (index, column) in row.columns().iter().enumerate() {
        let db_type: &DbType = column.db_type();
        let is = |other: &DbType| db_type == other;
        let cell = if is(oracledb::DB_TYPE_RAW) || is(oracledb::DB_TYPE_BLOB) {
            row.get::<Option<Vec<u8>>>(index)
                .map_err(classify)?
                .map(SqlValue::Bytes)
        } else if is(oracledb::DB_TYPE_BINARY_DOUBLE) || is(oracledb::DB_TYPE_BINARY_FLOAT) {
            row.get::<Option<f64>>(index)
                .map_err(classify)?
                .map(SqlValue::Float)
        } else if is(oracledb::DB_TYPE_NUMBER) && column.scale() == 0 {
            row.get::<Option<i64>>(index)
                .map_err(classify)?
                .map(SqlValue::Integer)
        } else if is(oracledb::DB_TYPE_NUMBER) {
            row.get::<Option<f64>>(index)
                .map_err(classify)?
                .map(SqlValue::Float)
        } else {
            row.get::<Option<String>>(index)
                .map_err(classify)?
                .map(SqlValue::Text)
        };
        cells.push(cell.unwrap_or(SqlValue::Null));
    }
    Ok(cells)
}

/// Sorts a driver error into transient or permanent; keeps the `ORA-` code.
fn classify(error: oracledb::Error) -> SqlError {
    match error.kind() {
        ErrorKind::DbError(db) => {
            let code = db.code();
            let kind = if TRANSIENT_ERRORS.contains(&code) {
                SqlErrorKind::Transient
            } else if is_statement_error(code) {
                SqlErrorKind::InvalidStatement
            } else {
                SqlErrorKind::Permanent
            };
            SqlError::new(
                kind,
                Some(format!("ORA-{code:05}")),
                format!("Oracle: {}", db.message()),
            )
        }
        ErrorKind::DeadConnection
        | ErrorKind::NotConnected
        | ErrorKind::CallTimeoutExceeded
        | ErrorKind::ListenerRefusedConnection(..)
        | ErrorKind::StreamOperation
        | ErrorKind::TlsOperation
        | ErrorKind::PoolNotOpen
        | ErrorKind::UnableToRecover => SqlError::transient(format!("Oracle: {error}")),
        _ => SqlError::permanent(format!("Oracle: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_kind_binds() {
        let values = [
            SqlValue::Null,
            SqlValue::Boolean(true),
            SqlValue::Integer(-1),
            SqlValue::Float(0.5),
            SqlValue::Text("t".into()),
            SqlValue::Json("{}".into()),
            SqlValue::Bytes(vec![1]),
            SqlValue::Timestamp(1_700_000_000_123_456_789),
        ];
        assert_eq!(bind_values(&values).expect("binds").len(), values.len());
    }

    #[test]
    fn pools_are_built_without_connecting() {
        let endpoint =
            Endpoint::from_url(SqlDriver::Oracle, "oracle://app:pw@127.0.0.1:1/FREEPDB1")
                .expect("url");
        Pool::new(&endpoint, 2, Duration::from_secs(1)).expect("lazy pool");
    }
}
