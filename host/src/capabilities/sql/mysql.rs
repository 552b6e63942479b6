//! MySQL and MariaDB through `sqlx`.
//!
//! Statements are prepared and cached per connection by sqlx. MySQL converts
//! bound values to the column's type itself, so values are bound as their
//! natural type: `json` as text, `timestamp` as a UTC `DATETIME` (sqlx sets
//! the session time zone to UTC on connect).

use std::time::Duration;

use futures::StreamExt as _;

use sqlx::mysql::{
    MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlPoolOptions, MySqlRow,
    MySqlSslMode,
};
use sqlx::pool::PoolConnection;
// The `Executor` methods return boxed futures: `Query::execute` is generic
// over the executor and its future cannot be proven `Send` inside wasmtime's
// host calls.
use sqlx::{Column as _, Executor as _, MySql, Row as _, TypeInfo as _, ValueRef as _};

use super::endpoint::{Endpoint, Tls};
use super::{
    catalog_name, row_bytes, scrub_database_message, ResultBudget, ServerLimits, SqlError,
    SqlErrorKind, SqlRows, SqlValue,
};
use crate::config::SqlDriver;
use crate::config::SqlTlsMode;

/// Server error numbers after which the same batch can succeed later:
/// too many connections (1040), login refused (1045: an operator fixes the
/// password, the messages wait), shutdown (1053), lock wait timeout (1205),
/// deadlock (1213), query interrupted (1317), connection killed (1927),
/// statement time limits (1969 MariaDB, 3024 MySQL), server gone (2006,
/// 2013).
const TRANSIENT_ERRORS: &[u16] = &[
    1040, 1045, 1053, 1205, 1213, 1317, 1927, 1969, 2006, 2013, 3024,
];

/// Server error numbers that mean the statement is wrong for this database:
/// access denied to a database, table or column (1044, 1142, 1143), no
/// database (1046), unknown database (1049), unknown column (1054), syntax
/// (1064), unknown table (1146).
const STATEMENT_ERRORS: &[u16] = &[1044, 1046, 1049, 1054, 1064, 1142, 1143, 1146];

/// A lazy pool; each connection is pinged before reuse.
pub struct Pool(sqlx::MySqlPool);

impl Pool {
    /// A pool of `size` connections to `endpoint`; connects nothing yet.
    pub fn new(
        endpoint: &Endpoint,
        size: u32,
        connect_timeout: Duration,
        limits: &ServerLimits,
    ) -> Result<Self, String> {
        let limits = *limits;
        // sqlx's rustls verifier takes the process-wide provider: ring, as
        // everywhere in the host (an error only says one is installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut options = MySqlConnectOptions::new()
            .host(&endpoint.host)
            .port(endpoint.port)
            .database(&endpoint.service)
            .username(&endpoint.user)
            .password(&endpoint.password)
            .ssl_mode(ssl_mode(&endpoint.tls));
        if let Some(ca_file) = &endpoint.tls.ca_file {
            if !ca_file.is_file() {
                return Err(format!(
                    "tls.ca_file `{}` is not a readable file",
                    ca_file.display()
                ));
            }
            options = options.ssl_ca(ca_file);
        }
        let pool = MySqlPoolOptions::new()
            .max_connections(size)
            .min_connections(0)
            .acquire_timeout(connect_timeout)
            .test_before_acquire(true)
            // Below the server's `wait_timeout`, so the pool closes an idle
            // session before the server does.
            .idle_timeout(limits.idle_session.mul_f32(0.9))
            .after_connect(move |connection, _| {
                Box::pin(async move { set_session_limits(connection, &limits).await })
            })
            .connect_lazy_with(options);
        Ok(Self(pool))
    }

    /// Takes a connection and starts a transaction (the server-side limits
    /// were set when the session was opened, see [`set_session_limits`]).
    pub async fn begin(&self, _statement_timeout: Duration) -> Result<Transaction, SqlError> {
        let mut connection = self.0.acquire().await.map_err(classify)?;
        (&mut *connection)
            .execute("START TRANSACTION")
            .await
            .map_err(classify)?;
        Ok(Transaction {
            connection: Some(connection),
        })
    }

    /// The table's columns, from `information_schema`.
    pub async fn columns(&self, table: &str) -> Result<Vec<String>, SqlError> {
        let (schema, name) = catalog_name(SqlDriver::Mysql, table);
        let query = sqlx::query(
            "SELECT CAST(column_name AS CHAR) FROM information_schema.columns \
             WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ? ORDER BY ordinal_position",
        )
        .bind(schema)
        .bind(name);
        let rows = (&self.0).fetch_all(query).await.map_err(classify)?;
        rows.iter()
            .map(|row| row.try_get::<String, _>(0).map_err(classify))
            .collect()
    }
}

/// An open transaction.
pub struct Transaction {
    connection: Option<PoolConnection<MySql>>,
}

type MySqlQuery<'q> = sqlx::query::Query<'q, MySql, sqlx::mysql::MySqlArguments>;

fn bind<'q>(mut query: MySqlQuery<'q>, params: &'q [SqlValue]) -> Result<MySqlQuery<'q>, SqlError> {
    for value in params {
        query = match value {
            SqlValue::Null => query.bind(None::<String>),
            SqlValue::Boolean(flag) => query.bind(*flag),
            SqlValue::Integer(number) => query.bind(*number),
            SqlValue::Float(number) => query.bind(*number),
            SqlValue::Text(text) | SqlValue::Json(text) => query.bind(text.as_str()),
            SqlValue::Bytes(bytes) => query.bind(bytes.as_slice()),
            SqlValue::Timestamp(nanos) => {
                let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(*nanos))
                    .map_err(|_| SqlError::permanent("a timestamp value is out of range"))?;
                query.bind(time)
            }
        };
    }
    Ok(query)
}

impl Transaction {
    fn connection(&mut self) -> Result<&mut MySqlConnection, SqlError> {
        self.connection
            .as_deref_mut()
            .ok_or_else(|| SqlError::transient("the connection is closed"))
    }

    /// Runs one statement.
    pub async fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64, SqlError> {
        let query = bind(sqlx::query(sql), params)?;
        let done = self.connection()?.execute(query).await.map_err(classify)?;
        Ok(done.rows_affected())
    }

    /// Runs one statement per row (prepared once, cached by sqlx).
    pub async fn execute_many(
        &mut self,
        sql: &str,
        rows: &[Vec<SqlValue>],
    ) -> Result<u64, SqlError> {
        let mut affected = 0;
        for (index, row) in rows.iter().enumerate() {
            let query = bind(sqlx::query(sql), row).map_err(|err| err.at_row(index))?;
            let done = self
                .connection()?
                .execute(query)
                .await
                .map_err(|err| classify(err).at_row(index))?;
            affected += done.rows_affected();
        }
        Ok(affected)
    }

    /// Runs one query, streaming its rows: reading stops at the first row
    /// past either cap of `budget` (the caller then closes the session).
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        budget: &mut ResultBudget,
    ) -> Result<SqlRows, SqlError> {
        let query = bind(sqlx::query(sql), params)?;
        let mut stream = self.connection()?.fetch(query);
        let mut columns = Vec::new();
        let mut values = Vec::new();
        while let Some(row) = stream.next().await {
            // Any error mid-result leaves the session mid-protocol.
            let row = row.map_err(|error| classify(error).stopping_query())?;
            if values.is_empty() {
                columns = row
                    .columns()
                    .iter()
                    .map(|column| column.name().to_string())
                    .collect();
            }
            let cells = decode_row(&row).map_err(SqlError::stopping_query)?;
            budget.take_row(row_bytes(&cells))?;
            values.push(cells);
        }
        Ok(SqlRows {
            columns,
            rows: values,
        })
    }

    /// Commits.
    pub async fn commit(&mut self) -> Result<(), SqlError> {
        self.finish("COMMIT").await
    }

    /// Rolls back.
    pub async fn rollback(&mut self) -> Result<(), SqlError> {
        self.finish("ROLLBACK").await
    }

    async fn finish(&mut self, command: &'static str) -> Result<(), SqlError> {
        self.connection()?
            .execute(command)
            .await
            .map(|_| ())
            .map_err(classify)
    }

    /// Closes the connection instead of returning it to the pool; the server
    /// rolls back whatever was open.
    pub fn abandon(mut self) {
        if let Some(mut connection) = self.connection.take() {
            connection.close_on_drop();
        }
    }
}

/// sqlx's mode for a TLS requirement; never `Preferred` (which falls back
/// to plaintext). With a CA file, sqlx trusts it in addition to the
/// system's roots.
fn ssl_mode(tls: &Tls) -> MySqlSslMode {
    match tls.mode {
        SqlTlsMode::Disable => MySqlSslMode::Disabled,
        SqlTlsMode::Require => MySqlSslMode::Required,
        SqlTlsMode::VerifyCa => MySqlSslMode::VerifyCa,
        SqlTlsMode::VerifyFull => MySqlSslMode::VerifyIdentity,
    }
}

/// Sets the session's server-side bounds right after it connects: MariaDB
/// bounds every statement with `max_statement_time` (seconds), MySQL only
/// read-only `SELECT`s with `max_execution_time` (milliseconds; its writes
/// are bounded by `innodb_lock_wait_timeout` and the host's timeout); both
/// bound lock waits and idle sessions. Which server it is comes from
/// `VERSION()`.
async fn set_session_limits(
    connection: &mut MySqlConnection,
    limits: &ServerLimits,
) -> Result<(), sqlx::Error> {
    let version = (&mut *connection).fetch_one("SELECT VERSION()").await?;
    let version: String = version.try_get(0)?;
    let statement = if is_mariadb(&version) {
        format!(
            "SET SESSION max_statement_time = {:.3}",
            limits.statement.as_secs_f64()
        )
    } else {
        format!(
            "SET SESSION max_execution_time = {}",
            limits.statement.as_millis()
        )
    };
    (&mut *connection).execute(statement.as_str()).await?;
    let bounds = format!(
        "SET SESSION innodb_lock_wait_timeout = {}, wait_timeout = {}",
        whole_seconds(limits.lock),
        whole_seconds(limits.idle_session)
    );
    (&mut *connection).execute(bounds.as_str()).await?;
    Ok(())
}

/// Whether `VERSION()` names MariaDB (`10.11.6-MariaDB-0+deb12u1`).
fn is_mariadb(version: &str) -> bool {
    version.to_ascii_lowercase().contains("mariadb")
}

/// A duration in whole seconds, rounded up, at least 1 (the unit of
/// `innodb_lock_wait_timeout` and `wait_timeout`).
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_millis().div_ceil(1000).max(1) as u64
}

fn decode_row(row: &MySqlRow) -> Result<Vec<SqlValue>, SqlError> {
    (0..row.len())
        .map(|index| decode_cell(row, index))
        .collect()
}

fn decode_cell(row: &MySqlRow, index: usize) -> Result<SqlValue, SqlError> {
    let raw = row.try_get_raw(index).map_err(classify)?;
    if raw.is_null() {
        return Ok(SqlValue::Null);
    }
    let type_name = raw.type_info().name().to_string();
    let unsupported = || {
        SqlError::permanent(format!(
            "column {} has type {type_name}, which cannot be returned; cast it to CHAR in the query",
            row.columns()[index].name()
        ))
    };
    let base = type_name.split_whitespace().next().unwrap_or_default();
    let value = match base {
        "BOOLEAN" => SqlValue::Boolean(row.try_get_unchecked::<bool, _>(index).map_err(classify)?),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR"
            if type_name.ends_with("UNSIGNED") =>
        {
            let number = row.try_get_unchecked::<u64, _>(index).map_err(classify)?;
            SqlValue::Integer(i64::try_from(number).map_err(|_| unsupported())?)
        }
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
            SqlValue::Integer(row.try_get_unchecked::<i64, _>(index).map_err(classify)?)
        }
        "FLOAT" => SqlValue::Float(
            row.try_get_unchecked::<f32, _>(index)
                .map_err(classify)?
                .into(),
        ),
        "DOUBLE" => SqlValue::Float(row.try_get_unchecked::<f64, _>(index).map_err(classify)?),
        "JSON" => SqlValue::Json(
            row.try_get_unchecked::<String, _>(index)
                .map_err(classify)?,
        ),
        "CHAR" | "VARCHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET"
        | "DECIMAL" => SqlValue::Text(
            row.try_get_unchecked::<String, _>(index)
                .map_err(classify)?,
        ),
        "BINARY" | "VARBINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BIT" => {
            SqlValue::Bytes(
                row.try_get_unchecked::<Vec<u8>, _>(index)
                    .map_err(classify)?,
            )
        }
        "DATETIME" | "TIMESTAMP" => {
            let time = row
                .try_get_unchecked::<time::PrimitiveDateTime, _>(index)
                .map_err(classify)?;
            let nanos = time.assume_utc().unix_timestamp_nanos();
            SqlValue::Timestamp(i64::try_from(nanos).map_err(|_| unsupported())?)
        }
        _ => return Err(unsupported()),
    };
    Ok(value)
}

/// Sorts a driver error into transient or permanent; keeps the error number.
fn classify(error: sqlx::Error) -> SqlError {
    match &error {
        sqlx::Error::Database(database) => {
            let Some(mysql) = database.try_downcast_ref::<MySqlDatabaseError>() else {
                return SqlError::permanent(format!(
                    "MySQL: {}",
                    scrub_database_message(database.message())
                ));
            };
            let number = mysql.number();
            let state = mysql.code().unwrap_or_default();
            let transient = TRANSIENT_ERRORS.contains(&number)
                || state.starts_with("08")
                || state.starts_with("40");
            let kind = if transient {
                SqlErrorKind::Transient
            } else if STATEMENT_ERRORS.contains(&number) || state.starts_with("42") {
                SqlErrorKind::InvalidStatement
            } else {
                SqlErrorKind::Permanent
            };
            // Scrubbed: MySQL quotes values (`Duplicate entry 'secret'`),
            // users and client hosts (`'app'@'10.0.0.7'`) in its messages.
            let message = format!(
                "MySQL {number} ({state}): {}",
                scrub_database_message(mysql.message())
            );
            tracing::debug!(code = number, message = %message, "MySQL error");
            SqlError::new(kind, Some(number.to_string()), message)
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => SqlError::transient(format!(
            "MySQL: {}",
            scrub_database_message(&error.to_string())
        )),
        _ => SqlError::permanent(format!(
            "MySQL: {}",
            scrub_database_message(&error.to_string())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_is_told_apart_by_its_version() {
        assert!(is_mariadb("10.11.6-MariaDB-0+deb12u1"));
        assert!(!is_mariadb("8.0.36"));
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(30)), 30);
    }
}
