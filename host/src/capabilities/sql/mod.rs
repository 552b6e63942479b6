//! `plugin.grants.sql`: database connections owned by the host and lent to
//! a plugin one transaction at a time through the `sql` interface.
//!
//! - **prepare** reads the credentials from the host's environment and sets
//!   up a lazy pool per grant (nothing connects until the first use, so a
//!   database that is down at start-up delays batches instead of stopping
//!   the host);
//! - **apply** adds nothing to WASI: the plugin reaches the database only
//!   through the `sql` host interface, never through a socket;
//! - **describe** names each grant's driver, tables and statement kinds,
//!   never its address or credentials.
//!
//! Every statement passes [`policy::StatementPolicy`] before it is sent. Each
//! call runs under the grant's statement timeout; a transaction that timed
//! out, or that a trapped plugin left open, never returns its connection to
//! the pool (closing it makes the server roll back).

// A host built with no driver at all compiles, with nothing to dispatch to.
#![cfg_attr(
    not(any(
        feature = "sql-postgres",
        feature = "sql-mysql",
        feature = "sql-oracle"
    )),
    allow(unused_variables, unreachable_code, unreachable_patterns, dead_code)
)]

mod endpoint;
#[cfg(feature = "sql-mysql")]
mod mysql;
#[cfg(feature = "sql-oracle")]
mod oracle;
pub mod policy;
#[cfg(feature = "sql-postgres")]
mod postgres;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use wasmtime_wasi::WasiCtxBuilder;

use super::{Capability, GrantError};
use crate::config::{SqlDriver, SqlGrant};
use endpoint::Endpoint;
use policy::StatementPolicy;

/// Rows one `query` may return; more is an error, so one plugin call cannot
/// make the host buffer a whole table.
pub const MAX_QUERY_ROWS: usize = 10_000;

/// A value bound to a placeholder or read from a row (the host's side of the
/// WIT `sql.value`).
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL `NULL`.
    Null,
    /// A boolean.
    Boolean(bool),
    /// A 64-bit integer.
    Integer(i64),
    /// A double.
    Float(f64),
    /// Text.
    Text(String),
    /// Binary data.
    Bytes(Vec<u8>),
    /// A JSON document as text.
    Json(String),
    /// Nanoseconds since the Unix epoch, UTC.
    Timestamp(i64),
}

impl SqlValue {
    /// The variant's name, for error messages (never the value itself).
    pub fn kind_name(&self) -> &'static str {
        match self {
            SqlValue::Null => "null",
            SqlValue::Boolean(_) => "boolean",
            SqlValue::Integer(_) => "integer",
            SqlValue::Float(_) => "float",
            SqlValue::Text(_) => "text",
            SqlValue::Bytes(_) => "bytes",
            SqlValue::Json(_) => "json",
            SqlValue::Timestamp(_) => "timestamp",
        }
    }
}

/// Whether retrying can help (the WIT `sql.error-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlErrorKind {
    /// Connection lost, deadlock, timeout, pool exhausted: retry later.
    Transient,
    /// The data is wrong (constraint, value does not fit): retrying the
    /// same data fails again.
    Permanent,
    /// The statement is wrong for this database (syntax, unknown table or
    /// column, privilege): nothing can be stored until it is fixed.
    InvalidStatement,
    /// The grant does not allow it; nothing reached the database.
    Refused,
}

/// An error of a `sql` call, as the plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SqlError {
    /// Whether retrying can help.
    pub kind: SqlErrorKind,
    /// The database's code (SQLSTATE, `ORA-nnnnn`, MySQL error number).
    pub code: Option<String>,
    /// For `execute-many`: the row that failed.
    pub row: Option<u32>,
    /// What went wrong; never contains bound values or credentials.
    pub message: String,
}

impl SqlError {
    /// A refusal by the host.
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(SqlErrorKind::Refused, None, message)
    }

    /// A transient failure.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(SqlErrorKind::Transient, None, message)
    }

    /// A permanent failure.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(SqlErrorKind::Permanent, None, message)
    }

    /// An error with all fields but the row.
    pub fn new(kind: SqlErrorKind, code: Option<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            row: None,
            message: message.into(),
        }
    }

    /// The same error, attributed to row `row` of an `execute-many`.
    pub fn at_row(mut self, row: usize) -> Self {
        self.row = u32::try_from(row).ok();
        self
    }
}

/// The rows of a query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SqlRows {
    /// Column names.
    pub columns: Vec<String>,
    /// Values, one list per row.
    pub rows: Vec<Vec<SqlValue>>,
}

/// The granted databases, checked and ready; shared by every instance.
#[derive(Clone, Default)]
pub struct Sql {
    databases: BTreeMap<String, Arc<Database>>,
    refusals: super::Refusals,
}

impl std::fmt::Debug for Sql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.databases.keys()).finish()
    }
}

/// One granted database: its rules and its pool.
struct Database {
    name: String,
    driver: SqlDriver,
    tables: Vec<String>,
    policy: StatementPolicy,
    statement_timeout: Duration,
    pool: Pool,
}

/// A pool of one driver.
enum Pool {
    #[cfg(feature = "sql-postgres")]
    Postgres(postgres::Pool),
    #[cfg(feature = "sql-mysql")]
    Mysql(mysql::Pool),
    /// Boxed: its configuration is far larger than the other pools.
    #[cfg(feature = "sql-oracle")]
    Oracle(Box<oracle::Pool>),
}

/// An open transaction of one driver.
enum Connection {
    #[cfg(feature = "sql-postgres")]
    Postgres(postgres::Transaction),
    #[cfg(feature = "sql-mysql")]
    Mysql(mysql::Transaction),
    #[cfg(feature = "sql-oracle")]
    Oracle(oracle::Transaction),
}

impl Capability for Sql {
    type Grant = SqlGrant;
    const NAME: &'static str = "sql";

    fn prepare(grants: &[SqlGrant]) -> Result<Self, GrantError> {
        let mut databases = BTreeMap::new();
        for (index, grant) in grants.iter().enumerate() {
            let location = format!("sql[{index}]");
            let endpoint = Endpoint::from_grant(grant).map_err(|message| GrantError {
                location: location.clone(),
                message,
            })?;
            let pool = Pool::new(grant, endpoint).map_err(|message| GrantError {
                location: location.clone(),
                message,
            })?;
            let database = Database {
                name: grant.name.clone(),
                driver: grant.driver,
                tables: grant.tables.clone(),
                policy: StatementPolicy::new(grant),
                statement_timeout: Duration::from_millis(grant.statement_timeout_ms),
                pool,
            };
            databases.insert(grant.name.clone(), Arc::new(database));
        }
        Ok(Self {
            databases,
            refusals: super::Refusals::default(),
        })
    }

    fn apply(&self, _builder: &mut WasiCtxBuilder) -> Result<(), GrantError> {
        // Deliberately nothing: no socket, no environment variable. The
        // plugin reaches the database only through the `sql` interface.
        Ok(())
    }

    fn describe(&self) -> Vec<String> {
        self.databases
            .values()
            .map(|database| {
                let kinds: Vec<&str> = database.policy.kinds().collect();
                format!(
                    "sql `{}`: {} database, tables {}, statements {}{}",
                    database.name,
                    database.driver.name(),
                    database.tables.join(", "),
                    kinds.join(", "),
                    if database.policy.allows_ddl() {
                        ", DDL allowed"
                    } else {
                        ""
                    },
                )
            })
            .collect()
    }
}

impl Sql {
    /// The same grants, recording refusals into `refusals`.
    pub fn with_refusals(mut self, refusals: super::Refusals) -> Self {
        self.refusals = refusals;
        self
    }

    /// Where refused statements are recorded.
    pub fn refusals(&self) -> &super::Refusals {
        &self.refusals
    }

    /// Whether no database is granted.
    pub fn is_empty(&self) -> bool {
        self.databases.is_empty()
    }

    fn database(&self, connection: &str) -> Result<&Arc<Database>, SqlError> {
        self.databases
            .get(connection)
            .ok_or_else(|| SqlError::refused(format!("connection `{connection}` is not granted")))
    }

    /// Starts a transaction on the granted connection `connection`.
    pub async fn begin(&self, connection: &str) -> Result<Transaction, SqlError> {
        let database = Arc::clone(self.database(connection)?);
        let timeout = database.statement_timeout;
        let connection = within(timeout, "BEGIN", database.pool.begin(timeout)).await?;
        Ok(Transaction {
            database,
            connection: Some(connection),
            finished: false,
        })
    }

    /// The columns of granted table `table` on `connection`.
    pub async fn columns(&self, connection: &str, table: &str) -> Result<Vec<String>, SqlError> {
        let database = self.database(connection)?;
        if !database.policy.grants_table(table) {
            return Err(SqlError::refused(format!(
                "table `{table}` is not granted on `{connection}`"
            )));
        }
        within(
            database.statement_timeout,
            "reading the table's columns",
            database.pool.columns(table),
        )
        .await
    }

    /// Connects to every granted database once (for `sinkhost validate`).
    /// Returns, per grant name, the error if it could not connect.
    pub async fn check_connections(&self) -> Vec<(String, Result<(), SqlError>)> {
        let mut outcomes = Vec::new();
        for (name, database) in &self.databases {
            let outcome = match self.begin(name).await {
                Ok(mut transaction) => transaction.rollback().await,
                Err(error) => Err(error),
            };
            outcomes.push((
                name.clone(),
                outcome.map(|_| ()).map_err(|error| SqlError {
                    message: format!(
                        "{} database `{}`: {}",
                        database.driver.name(),
                        name,
                        error.message
                    ),
                    ..error
                }),
            ));
        }
        outcomes
    }
}

/// Runs `future` under `timeout`; a timeout is transient.
async fn within<T>(
    timeout: Duration,
    what: &str,
    future: impl Future<Output = Result<T, SqlError>>,
) -> Result<T, SqlError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(outcome) => outcome,
        Err(_) => Err(SqlError::transient(format!(
            "{what} did not finish within the grant's statement_timeout_ms ({} ms)",
            timeout.as_millis()
        ))),
    }
}

/// One transaction on one pooled connection (the WIT `sql.transaction`).
///
/// Dropped unfinished (a plugin trap, a timeout), its connection is closed
/// rather than returned to the pool, so the server rolls it back and no
/// later transaction inherits its writes.
pub struct Transaction {
    database: Arc<Database>,
    /// `None` once a timeout left the connection in an unknown state.
    connection: Option<Connection>,
    finished: bool,
}

impl Transaction {
    fn open(&mut self) -> Result<&mut Connection, SqlError> {
        if self.finished {
            return Err(SqlError::refused(
                "the transaction is already committed or rolled back",
            ));
        }
        self.connection.as_mut().ok_or_else(|| {
            SqlError::transient("the transaction was abandoned after a timeout; start a new one")
        })
    }

    fn check(&self, statement: &str) -> Result<(), SqlError> {
        self.database
            .policy
            .check(statement)
            .map(|_| ())
            .map_err(|refusal| {
                SqlError::refused(format!("sql `{}`: {refusal}", self.database.name))
            })
    }

    /// The outcome of a call that ran under the statement timeout; a
    /// timeout abandons the connection (the driver may be mid-protocol).
    fn settle<T>(
        &mut self,
        what: &str,
        outcome: Result<Result<T, SqlError>, tokio::time::error::Elapsed>,
    ) -> Result<T, SqlError> {
        match outcome {
            Ok(result) => result,
            Err(_) => {
                if let Some(connection) = self.connection.take() {
                    connection.abandon();
                }
                Err(SqlError::transient(format!(
                    "{what} did not finish within the grant's statement_timeout_ms ({} ms)",
                    self.database.statement_timeout.as_millis()
                )))
            }
        }
    }

    /// Runs one statement; returns the rows it affected.
    pub async fn execute(&mut self, statement: &str, params: &[SqlValue]) -> Result<u64, SqlError> {
        self.check(statement)?;
        let timeout = self.database.statement_timeout;
        let outcome = tokio::time::timeout(timeout, self.open()?.execute(statement, params)).await;
        self.settle("the statement", outcome)
    }

    /// Runs one statement once per row of parameters.
    pub async fn execute_many(
        &mut self,
        statement: &str,
        rows: &[Vec<SqlValue>],
    ) -> Result<u64, SqlError> {
        self.check(statement)?;
        if rows.is_empty() {
            return Ok(0);
        }
        let timeout = self.database.statement_timeout;
        let outcome =
            tokio::time::timeout(timeout, self.open()?.execute_many(statement, rows)).await;
        self.settle("the statements", outcome)
    }

    /// Runs one `SELECT`.
    pub async fn query(
        &mut self,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<SqlRows, SqlError> {
        self.check(statement)?;
        let timeout = self.database.statement_timeout;
        let outcome = tokio::time::timeout(timeout, self.open()?.query(statement, params)).await;
        self.settle("the query", outcome)
    }

    /// Commits: after `Ok`, the transaction's writes are durable.
    pub async fn commit(&mut self) -> Result<(), SqlError> {
        let timeout = self.database.statement_timeout;
        let outcome = tokio::time::timeout(timeout, self.open()?.commit()).await;
        self.finish("COMMIT", outcome)
    }

    /// Rolls back.
    pub async fn rollback(&mut self) -> Result<(), SqlError> {
        let timeout = self.database.statement_timeout;
        let outcome = tokio::time::timeout(timeout, self.open()?.rollback()).await;
        self.finish("ROLLBACK", outcome)
    }

    /// Ends the transaction. A COMMIT or ROLLBACK that failed leaves the
    /// session in an unknown state: its connection is closed, never
    /// returned to the pool (for every driver, here rather than in each).
    fn finish(
        &mut self,
        what: &str,
        outcome: Result<Result<(), SqlError>, tokio::time::error::Elapsed>,
    ) -> Result<(), SqlError> {
        self.finished = true;
        let result = self.settle(what, outcome);
        if result.is_err() {
            if let Some(connection) = self.connection.take() {
                connection.abandon();
            }
        }
        result
    }

    /// Ends a transaction the plugin dropped: rolls it back, or abandons its
    /// connection if that fails.
    pub async fn close(mut self) {
        if !self.finished && self.connection.is_some() && self.rollback().await.is_err() {
            self.connection = None;
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.finished {
            if let Some(connection) = self.connection.take() {
                connection.abandon();
            }
        }
    }
}

/// What every driver module provides, so the three read alike.
macro_rules! each_driver {
    ($value:expr, $pattern:ident => $body:expr) => {
        match $value {
            #[cfg(feature = "sql-postgres")]
            Self::Postgres($pattern) => $body,
            #[cfg(feature = "sql-mysql")]
            Self::Mysql($pattern) => $body,
            #[cfg(feature = "sql-oracle")]
            Self::Oracle($pattern) => $body,
            // Built without any driver: no value of these enums exists.
            #[cfg(not(any(
                feature = "sql-postgres",
                feature = "sql-mysql",
                feature = "sql-oracle"
            )))]
            _ => unreachable!("no database driver is built in"),
        }
    };
}

impl Pool {
    fn new(grant: &SqlGrant, endpoint: Endpoint) -> Result<Self, String> {
        let size = grant.pool_size;
        let connect_timeout = Duration::from_millis(grant.connect_timeout_ms);
        match grant.driver {
            #[cfg(feature = "sql-postgres")]
            SqlDriver::Postgres => Ok(Pool::Postgres(postgres::Pool::new(
                &endpoint,
                size,
                connect_timeout,
            )?)),
            #[cfg(feature = "sql-mysql")]
            SqlDriver::Mysql => Ok(Pool::Mysql(mysql::Pool::new(
                &endpoint,
                size,
                connect_timeout,
            )?)),
            #[cfg(feature = "sql-oracle")]
            SqlDriver::Oracle => Ok(Pool::Oracle(Box::new(oracle::Pool::new(
                &endpoint,
                size,
                connect_timeout,
            )?))),
            #[allow(unreachable_patterns)]
            driver => Err(format!(
                "this sinkhost was built without the {} driver (cargo feature `sql-{}`)",
                driver.name(),
                driver.name()
            )),
        }
    }

    async fn begin(&self, statement_timeout: Duration) -> Result<Connection, SqlError> {
        Ok(match self {
            #[cfg(feature = "sql-postgres")]
            Pool::Postgres(pool) => Connection::Postgres(pool.begin(statement_timeout).await?),
            #[cfg(feature = "sql-mysql")]
            Pool::Mysql(pool) => Connection::Mysql(pool.begin(statement_timeout).await?),
            #[cfg(feature = "sql-oracle")]
            Pool::Oracle(pool) => Connection::Oracle(pool.begin(statement_timeout).await?),
            #[cfg(not(any(
                feature = "sql-postgres",
                feature = "sql-mysql",
                feature = "sql-oracle"
            )))]
            _ => {
                let _ = statement_timeout;
                unreachable!("no database driver is built in")
            }
        })
    }

    async fn columns(&self, table: &str) -> Result<Vec<String>, SqlError> {
        each_driver!(self, pool => pool.columns(table).await)
    }
}

impl Connection {
    async fn execute(&mut self, statement: &str, params: &[SqlValue]) -> Result<u64, SqlError> {
        each_driver!(self, connection => connection.execute(statement, params).await)
    }

    async fn execute_many(
        &mut self,
        statement: &str,
        rows: &[Vec<SqlValue>],
    ) -> Result<u64, SqlError> {
        each_driver!(self, connection => connection.execute_many(statement, rows).await)
    }

    async fn query(&mut self, statement: &str, params: &[SqlValue]) -> Result<SqlRows, SqlError> {
        each_driver!(self, connection => connection.query(statement, params).await)
    }

    async fn commit(&mut self) -> Result<(), SqlError> {
        each_driver!(self, connection => connection.commit().await)
    }

    async fn rollback(&mut self) -> Result<(), SqlError> {
        each_driver!(self, connection => connection.rollback().await)
    }

    fn abandon(self) {
        each_driver!(self, connection => connection.abandon())
    }
}

/// Splits `schema.table` into its schema (if any) and table, folded as the
/// database folds unquoted names (catalog queries compare exact strings).
fn catalog_name(driver: SqlDriver, table: &str) -> (Option<String>, String) {
    let fold = |part: &str| -> String {
        let part = part.trim();
        if let Some(inner) = part
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
            .or_else(|| {
                part.strip_prefix('`')
                    .and_then(|rest| rest.strip_suffix('`'))
            })
        {
            return inner.to_string();
        }
        match driver {
            SqlDriver::Postgres => part.to_lowercase(),
            SqlDriver::Oracle => part.to_uppercase(),
            SqlDriver::Mysql => part.to_string(),
        }
    };
    match table.rsplit_once('.') {
        Some((schema, name)) => (Some(fold(schema)), fold(name)),
        None => (None, fold(table)),
    }
}
