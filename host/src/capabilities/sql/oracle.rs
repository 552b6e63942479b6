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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    catalog_name, row_bytes, scrub_database_message, ResultBudget, ServerLimits, SqlError,
    SqlErrorKind, SqlRows, SqlValue,
};
use crate::config::{SqlDriver, SqlTlsMode};

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
///
/// The driver's `acquire` blocks its thread until a connection is free,
/// with no deadline; so the host hands out at most `size` connections
/// itself (`slots`, waited for under the grant's `connect_timeout_ms`), and
/// the driver is only asked when one is free.
pub struct Pool {
    config: oracledb::PoolConfig,
    pool: Arc<OnceLock<oracledb::Pool>>,
    slots: Arc<Semaphore>,
    acquire_timeout: Duration,
    call_timeout: Duration,
}

impl Pool {
    /// A pool of `size` connections to `endpoint`; connects nothing yet.
    pub fn new(
        endpoint: &Endpoint,
        size: u32,
        connect_timeout: Duration,
        limits: &ServerLimits,
    ) -> Result<Self, String> {
        let connect_string = connect_string(endpoint)?;
        let mut config = oracledb::PoolConfig::default()
            .set_credentials(&endpoint.user, &endpoint.password)
            .set_connect_string(&connect_string)
            .map_err(|err| format!("invalid Oracle connect string: {err}"))?
            .set_min_connections(0)
            .set_max_connections(size as usize)
            .set_connection_increment(1)
            // Checks an idle connection before reuse, so a restarted
            // database costs one failed batch at most.
            .set_ping_interval(Some(Duration::from_secs(0)));
        if let Some(ca_file) = &endpoint.tls.ca_file {
            // The driver reads trusted certificates from a wallet directory
            // (its `ewallet.pem`), not from a named file.
            let directory = ca_file
                .file_name()
                .filter(|name| *name == "ewallet.pem")
                .and(ca_file.parent())
                .ok_or_else(|| {
                    format!(
                        "tls.ca_file `{}`: for Oracle it must be a wallet's `ewallet.pem`",
                        ca_file.display()
                    )
                })?;
            config = config.set_wallet_location(directory.display().to_string());
        }
        Ok(Self {
            config,
            pool: Arc::new(OnceLock::new()),
            slots: Arc::new(Semaphore::new(size as usize)),
            acquire_timeout: connect_timeout,
            call_timeout: limits.statement,
        })
    }

    /// Waits (at most `connect_timeout_ms`) for one of the pool's slots.
    async fn slot(&self) -> Result<OwnedSemaphorePermit, SqlError> {
        match tokio::time::timeout(
            self.acquire_timeout,
            Arc::clone(&self.slots).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(SqlError::transient("the Oracle pool is closed")),
            Err(_) => Err(SqlError::transient(format!(
                "no Oracle connection became free within the grant's connect_timeout_ms ({} ms)",
                self.acquire_timeout.as_millis()
            ))),
        }
    }

    async fn connection(&self) -> Result<Pooled, SqlError> {
        let slot = self.slot().await?;
        let config = self.config.clone();
        let cell = Arc::clone(&self.pool);
        let call_timeout = self.call_timeout;
        let connection = blocking(move || {
            if cell.get().is_none() {
                let pool = oracledb::create_pool(config).map_err(classify)?;
                let _ = cell.set(pool);
            }
            let pool = cell
                .get()
                .ok_or_else(|| SqlError::transient("the Oracle pool is not available"))?;
            let connection = pool.acquire().map_err(classify)?;
            // The driver's call timeout: past it, the driver breaks the call
            // on the server and the call fails (DPY-4024), so a statement
            // the host gave up on does not run on.
            connection
                .set_call_timeout(Some(call_timeout))
                .map_err(classify)?;
            Ok(connection)
        })
        .await?;
        Ok(Pooled {
            connection,
            _slot: slot,
        })
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
        let pooled = self.connection().await?;
        blocking(move || {
            let connection = &pooled.connection;
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

/// The driver's Easy Connect string: `tcps://` when TLS is required (the
/// driver then verifies the certificate chain and the server's name), plain
/// `host:port/service` otherwise. The driver has no mode that encrypts
/// without verifying, or verifies the chain but not the name: those are
/// refused rather than approximated.
fn connect_string(endpoint: &Endpoint) -> Result<String, String> {
    let address = format!(
        "{}:{}/{}",
        bracket_ipv6(&endpoint.host),
        endpoint.port,
        endpoint.service
    );
    match endpoint.tls.mode {
        SqlTlsMode::Disable => Ok(address),
        SqlTlsMode::VerifyFull => Ok(format!("tcps://{address}")),
        mode => Err(format!(
            "tls.mode {} is not available for Oracle (use verify-full or disable)",
            mode.name()
        )),
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

/// A driver connection and the host's slot for it (freed with it).
struct Pooled {
    connection: oracledb::Connection,
    _slot: OwnedSemaphorePermit,
}

/// An open transaction.
pub struct Transaction {
    connection: Option<Pooled>,
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
            let outcome = call(&connection.connection);
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

    /// Runs one query, fetching its rows until either cap of `budget` is
    /// passed (the caller then closes the session).
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        budget: &mut ResultBudget,
    ) -> Result<SqlRows, SqlError> {
        let sql = sql.to_string();
        let params = bind_values(params)?;
        let mut owned = std::mem::replace(budget, ResultBudget::new(0, 0));
        let (outcome, returned) = self
            .with_connection(move |connection| {
                let outcome = fetch_rows(connection, &sql, &params, &mut owned);
                Ok((outcome, owned))
            })
            .await?;
        *budget = returned;
        outcome
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
                let _ = connection.connection.rollback();
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

/// Runs a query on a blocking thread, counting each row against `budget`.
fn fetch_rows(
    connection: &oracledb::Connection,
    sql: &str,
    params: &[Box<dyn ToDbValue + Send>],
    budget: &mut ResultBudget,
) -> Result<SqlRows, SqlError> {
    let refs: Vec<&dyn ToDbValue> = params
        .iter()
        .map(|value| value.as_ref() as &dyn ToDbValue)
        .collect();
    let cursor = connection.query(sql, &refs).map_err(classify)?;
    let columns: Vec<String> = cursor
        .columns()
        .iter()
        .map(|column| column.name().to_string())
        .collect();
    let mut rows = Vec::new();
    for row in cursor {
        let row = row.map_err(|error| classify(error).stopping_query())?;
        let cells = decode_row(&row).map_err(SqlError::stopping_query)?;
        budget.take_row(row_bytes(&cells))?;
        rows.push(cells);
    }
    Ok(SqlRows { columns, rows })
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
                format!("Oracle: {}", scrub_database_message(db.message())),
            )
        }
        ErrorKind::DeadConnection
        | ErrorKind::NotConnected
        | ErrorKind::CallTimeoutExceeded
        | ErrorKind::ListenerRefusedConnection(..)
        | ErrorKind::StreamOperation
        | ErrorKind::TlsOperation
        | ErrorKind::PoolNotOpen
        | ErrorKind::UnableToRecover => SqlError::transient(format!(
            "Oracle: {}",
            scrub_database_message(&error.to_string())
        )),
        _ => SqlError::permanent(format!(
            "Oracle: {}",
            scrub_database_message(&error.to_string())
        )),
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
        Pool::new(&endpoint, 2, Duration::from_secs(1), &limits()).expect("lazy pool");
    }

    #[test]
    fn tls_becomes_tcps_or_is_refused() {
        let mut endpoint =
            Endpoint::from_url(SqlDriver::Oracle, "oracle://app:pw@db.example/FREEPDB1")
                .expect("url");
        assert_eq!(
            endpoint.tls.mode,
            SqlTlsMode::VerifyFull,
            "remote: verified"
        );
        assert_eq!(
            connect_string(&endpoint).expect("tcps"),
            "tcps://db.example:1521/FREEPDB1"
        );
        Pool::new(&endpoint, 1, Duration::from_secs(1), &limits()).expect("a tcps pool");
        endpoint.tls.mode = SqlTlsMode::Require;
        assert!(connect_string(&endpoint)
            .expect_err("no such mode")
            .contains("require"));
        endpoint.tls.mode = SqlTlsMode::VerifyFull;
        endpoint.tls.ca_file = Some("/etc/ca.pem".into());
        let error = Pool::new(&endpoint, 1, Duration::from_secs(1), &limits())
            .err()
            .expect("not a wallet");
        assert!(error.contains("ewallet.pem"), "{error}");
        endpoint.tls.ca_file = Some("/etc/wallet/ewallet.pem".into());
        Pool::new(&endpoint, 1, Duration::from_secs(1), &limits()).expect("a wallet");
    }

    fn limits() -> ServerLimits {
        ServerLimits {
            statement: Duration::from_secs(1),
            lock: Duration::from_secs(1),
            idle_in_transaction: Duration::from_secs(60),
            idle_session: Duration::from_secs(600),
        }
    }

    /// A full pool makes `begin` fail after `connect_timeout_ms` instead of
    /// parking a thread on the driver's unbounded wait; nothing connects.
    #[tokio::test]
    async fn a_full_pool_times_out_instead_of_blocking() {
        let endpoint =
            Endpoint::from_url(SqlDriver::Oracle, "oracle://app:pw@127.0.0.1:1/FREEPDB1")
                .expect("url");
        let pool = Pool::new(&endpoint, 1, Duration::from_millis(100), &limits()).expect("pool");
        let taken = pool.slot().await.expect("the one slot");
        let started = std::time::Instant::now();
        let error = pool
            .begin(Duration::from_secs(1))
            .await
            .err()
            .expect("full");
        assert_eq!(error.kind, SqlErrorKind::Transient);
        assert!(
            error.message.contains("connect_timeout_ms"),
            "{}",
            error.message
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(pool.pool.get().is_none(), "the driver was never asked");
        drop(taken);
        assert!(
            pool.slot().await.is_ok(),
            "a freed slot is handed out again"
        );
    }
}
