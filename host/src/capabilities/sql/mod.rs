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
#[cfg(feature = "sql-postgres")]
mod postgres_wire;
#[cfg_attr(not(feature = "sql-postgres"), allow(dead_code))]
mod tls;

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

/// What one cell costs the host besides its text or bytes (the `SqlValue`
/// itself), so a result of a million empty cells still counts.
pub const CELL_OVERHEAD_BYTES: usize = std::mem::size_of::<SqlValue>();

/// Byte budget of one `query` when the host was not told the plugin's
/// `memory_mb` (the default `memory_mb`, 64 MiB).
pub const DEFAULT_QUERY_BYTES: usize = 64 * 1024 * 1024;

/// Counts the rows and bytes of a streamed result against both caps; the
/// drivers stop reading (and give up the connection) at the first row over
/// either, so the host never holds more than one row past the budget.
#[derive(Debug)]
pub struct ResultBudget {
    max_rows: usize,
    max_bytes: usize,
    rows: usize,
    bytes: usize,
}

impl ResultBudget {
    /// A budget of `max_rows` rows and `max_bytes` bytes.
    pub fn new(max_rows: usize, max_bytes: usize) -> Self {
        Self {
            max_rows,
            max_bytes,
            rows: 0,
            bytes: 0,
        }
    }

    /// Counts one more row of `bytes` bytes (see [`value_bytes`]); an error
    /// once either cap is passed.
    pub fn take_row(&mut self, bytes: usize) -> Result<(), SqlError> {
        self.rows += 1;
        self.bytes = self.bytes.saturating_add(bytes);
        if self.rows > self.max_rows {
            return Err(SqlError::permanent(format!(
                "the query returned more than {} rows, the most one query may return; \
                 it was stopped",
                self.max_rows
            ))
            .stopping_query());
        }
        if self.bytes > self.max_bytes {
            return Err(SqlError::permanent(format!(
                "the query's result passed {} bytes, the plugin's memory_mb; \
                 it was stopped: select fewer rows or columns",
                self.max_bytes
            ))
            .stopping_query());
        }
        Ok(())
    }
}

/// What a decoded row costs against a [`ResultBudget`].
pub fn row_bytes(row: &[SqlValue]) -> usize {
    row.iter().map(value_bytes).sum()
}

/// What one decoded value costs: its payload plus [`CELL_OVERHEAD_BYTES`].
pub fn value_bytes(value: &SqlValue) -> usize {
    CELL_OVERHEAD_BYTES
        + match value {
            SqlValue::Text(text) | SqlValue::Json(text) => text.len(),
            SqlValue::Bytes(bytes) => bytes.len(),
            _ => 0,
        }
}

/// Shortest server-side bound on a session idle inside a transaction. The
/// host ends every transaction when the plugin call that began it returns;
/// this is the backstop for a host that stopped talking without closing the
/// socket, long enough for a plugin computing between two statements.
const MIN_IDLE_IN_TRANSACTION: Duration = Duration::from_secs(60);

/// Server-side bound on an idle session (MySQL's `wait_timeout`, which
/// also covers a session idle inside a transaction). Pooled connections
/// idle longer are closed by the server and reopened on demand.
const IDLE_SESSION: Duration = Duration::from_secs(600);

/// The bounds every session of a grant is opened with, so that a statement
/// the host gave up on also stops on the server.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// One statement (PostgreSQL `statement_timeout`, MariaDB
    /// `max_statement_time`, MySQL `max_execution_time`, Oracle's call
    /// timeout): the grant's `statement_timeout_ms`.
    pub statement: Duration,
    /// Waiting for a row lock (PostgreSQL `lock_timeout`, InnoDB's
    /// `innodb_lock_wait_timeout`, rounded up to whole seconds).
    pub lock: Duration,
    /// Idle inside a transaction (PostgreSQL
    /// `idle_in_transaction_session_timeout`).
    pub idle_in_transaction: Duration,
    /// Idle session (MySQL `wait_timeout`).
    pub idle_session: Duration,
}

impl ServerLimits {
    /// The limits of `grant`.
    pub fn of(grant: &SqlGrant) -> Self {
        let statement = Duration::from_millis(grant.statement_timeout_ms);
        Self {
            statement,
            lock: statement,
            idle_in_transaction: statement.max(MIN_IDLE_IN_TRANSACTION),
            idle_session: statement.max(IDLE_SESSION),
        }
    }
}

/// Longest database message handed to a plugin; the rest is cut.
const MAX_DATABASE_MESSAGE_CHARS: usize = 240;

/// A database's error text made fit for a plugin: its first line only
/// (PostgreSQL's DETAIL and HINT are never included by the drivers' callers,
/// but a server may put them on further lines), every quoted part (where
/// servers put bound values, user names and client hosts: `Duplicate entry
/// 'secret'`, `user 'app'@'10.0.0.7'`, `invalid input syntax for type
/// integer: "secret"`) replaced by `'…'`, control characters dropped, and
/// the length capped. Identifiers the plugin needs (constraint, table)
/// are added back by the drivers from the error's structured fields.
pub fn scrub_database_message(text: &str) -> String {
    let first_line = text.lines().next().unwrap_or_default();
    let mut out = String::with_capacity(first_line.len().min(MAX_DATABASE_MESSAGE_CHARS));
    let mut quote: Option<char> = None;
    for character in first_line.chars() {
        match quote {
            Some(open) if character == open => {
                out.push('…');
                out.push(character);
                quote = None;
            }
            Some(_) => {}
            None if matches!(character, '\'' | '"') => {
                out.push(character);
                quote = Some(character);
            }
            None if character.is_control() => {}
            None => out.push(character),
        }
        if out.chars().count() >= MAX_DATABASE_MESSAGE_CHARS {
            out.push('…');
            break;
        }
    }
    if let Some(open) = quote {
        // An unterminated quote: its content is dropped all the same.
        out.push('…');
        out.push(open);
    }
    out
}

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
    /// Set when a driver stopped reading a result mid-way (a cap was
    /// passed): the session is closed rather than reused.
    pub stopped_query: bool,
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
            stopped_query: false,
        }
    }

    /// The same error, marking that the driver stopped reading mid-result.
    pub fn stopping_query(mut self) -> Self {
        self.stopped_query = true;
        self
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
    /// Bytes one `query` may return: the plugin's `memory_mb`.
    query_bytes: usize,
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
            query_bytes: DEFAULT_QUERY_BYTES,
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

    /// The same grants, with one `query`'s result capped at `bytes` (the
    /// plugin's `memory_mb`: a result the plugin could not hold in its own
    /// memory is never buffered by the host).
    pub fn with_query_bytes(mut self, bytes: usize) -> Self {
        self.query_bytes = bytes.max(1);
        for database in self.databases.values() {
            database.pool.set_max_message(self.query_bytes);
        }
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
            ended_with_call: false,
            query_bytes: self.query_bytes,
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

/// The transactions one plugin call began (by their handles in the
/// instance's resource table), ended by the host when the call returns: a
/// transaction never outlives the `init` or `write-batch` call that began
/// it, so a plugin cannot hold row locks or pin the vacuum horizon between
/// batches.
#[derive(Debug, Default)]
pub struct CallTransactions {
    handles: Vec<u32>,
}

impl CallTransactions {
    /// Records a transaction the running call began.
    pub fn began(&mut self, handle: &wasmtime::component::Resource<Transaction>) {
        self.handles.push(handle.rep());
    }

    /// Whether the running call began no transaction.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Ends every transaction the call began that is still in `table` (a
    /// handle the plugin dropped, or one whose slot now holds another kind
    /// of resource, is skipped); returns how many were still open.
    pub async fn end_all(&mut self, table: &mut wasmtime::component::ResourceTable) -> usize {
        let mut ended = 0;
        for rep in std::mem::take(&mut self.handles) {
            let handle = wasmtime::component::Resource::<Transaction>::new_own(rep);
            if let Ok(transaction) = table.get_mut(&handle) {
                if !transaction.ended_with_call && transaction.connection.is_some() {
                    ended += usize::from(!transaction.finished);
                }
                transaction.end_with_call().await;
            }
        }
        ended
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
    /// Set when the plugin call that began it returned (see
    /// [`CallTransactions`]): the handle is dead from then on.
    ended_with_call: bool,
    /// Bytes one query may return.
    query_bytes: usize,
}

impl Transaction {
    fn open(&mut self) -> Result<&mut Connection, SqlError> {
        if self.ended_with_call {
            return Err(SqlError::refused(
                "the transaction ended with the plugin call that began it \
                 (it was rolled back unless committed); begin a new one",
            ));
        }
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
        let mut budget = ResultBudget::new(MAX_QUERY_ROWS, self.query_bytes);
        let outcome =
            tokio::time::timeout(timeout, self.open()?.query(statement, params, &mut budget)).await;
        let result = self.settle("the query", outcome);
        if matches!(&result, Err(error) if error.stopped_query) {
            // The driver stopped reading mid-result: the session is
            // mid-protocol, so it is closed (the server stops the query).
            if let Some(connection) = self.connection.take() {
                connection.abandon();
            }
        }
        result
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

    /// Ends the transaction because the plugin call that began it returned:
    /// rolls back what was not committed (abandoning the connection if that
    /// fails), gives the connection back, and makes every later call on the
    /// handle an error. No lock or snapshot outlives the call.
    pub async fn end_with_call(&mut self) {
        if self.ended_with_call {
            return;
        }
        if !self.finished && self.connection.is_some() {
            // `rollback` abandons the connection itself when it fails.
            let _ = self.rollback().await;
        }
        self.finished = true;
        self.ended_with_call = true;
        // Rolled back (or committed) cleanly: back to the pool.
        self.connection = None;
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
        let limits = ServerLimits::of(grant);
        let connect_timeout = Duration::from_millis(grant.connect_timeout_ms);
        match grant.driver {
            #[cfg(feature = "sql-postgres")]
            SqlDriver::Postgres => Ok(Pool::Postgres(postgres::Pool::new(
                &endpoint,
                size,
                connect_timeout,
                &limits,
            )?)),
            #[cfg(feature = "sql-mysql")]
            SqlDriver::Mysql => Ok(Pool::Mysql(mysql::Pool::new(
                &endpoint,
                size,
                connect_timeout,
                &limits,
            )?)),
            #[cfg(feature = "sql-oracle")]
            SqlDriver::Oracle => Ok(Pool::Oracle(Box::new(oracle::Pool::new(
                &endpoint,
                size,
                connect_timeout,
                &limits,
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

    /// Caps a single message from the server where the driver allows it
    /// (PostgreSQL); MySQL and MariaDB cap a row at `max_allowed_packet`.
    fn set_max_message(&self, bytes: usize) {
        match self {
            #[cfg(feature = "sql-postgres")]
            Pool::Postgres(pool) => pool.set_max_message(bytes),
            #[allow(unreachable_patterns)]
            _ => {
                let _ = bytes;
            }
        }
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

    async fn query(
        &mut self,
        statement: &str,
        params: &[SqlValue],
        budget: &mut ResultBudget,
    ) -> Result<SqlRows, SqlError> {
        each_driver!(self, connection => connection.query(statement, params, budget).await)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Real server texts: none of the values, users or hosts survive.
    #[test]
    fn database_messages_lose_values_users_and_hosts() {
        for (text, secrets) in [
            (
                "Access denied for user 'app_user'@'10.1.2.3' (using password: YES)",
                &["app_user", "10.1.2.3"][..],
            ),
            (
                "Duplicate entry 'top-secret-42' for key 'PRIMARY'",
                &["top-secret-42"],
            ),
            (
                "Incorrect integer value: 'hunter2' for column `app`.`t`.`n` at row 1",
                &["hunter2"],
            ),
            (
                "duplicate key value violates unique constraint \"t_pkey\"\nDETAIL:  Key (a)=(secret) already exists.",
                &["secret"],
            ),
            (
                "invalid input syntax for type integer: \"s3cr3t\"",
                &["s3cr3t"],
            ),
            (
                "password authentication failed for user \"app_user\"",
                &["app_user"],
            ),
            ("value 'unterminated secret", &["secret"]),
        ] {
            let scrubbed = scrub_database_message(text);
            for secret in secrets {
                assert!(!scrubbed.contains(secret), "{scrubbed}");
            }
            assert!(!scrubbed.contains('\n'), "{scrubbed}");
        }
        assert_eq!(
            scrub_database_message("Duplicate entry 'x' for key 'PRIMARY'"),
            "Duplicate entry '…' for key '…'"
        );
        assert_eq!(
            scrub_database_message("numeric field overflow"),
            "numeric field overflow"
        );
        let long = "x".repeat(10_000);
        assert!(scrub_database_message(&long).chars().count() <= MAX_DATABASE_MESSAGE_CHARS + 1);
    }

    #[test]
    fn a_result_stops_at_the_row_cap_and_at_the_byte_cap() {
        let mut rows = ResultBudget::new(2, usize::MAX);
        assert!(rows.take_row(1).is_ok() && rows.take_row(1).is_ok());
        let error = rows.take_row(1).expect_err("third row");
        assert!(error.stopped_query && error.kind == SqlErrorKind::Permanent);
        let mut bytes = ResultBudget::new(1_000, 100);
        let row = [SqlValue::Text("x".repeat(60))];
        assert!(bytes.take_row(row_bytes(&row)).is_ok());
        let error = bytes.take_row(row_bytes(&row)).expect_err("over");
        assert!(error.message.contains("memory_mb"), "{}", error.message);
        // Empty cells still cost something: a million NULLs is not free.
        assert!(value_bytes(&SqlValue::Null) >= 16);
    }

    #[test]
    fn server_limits_follow_the_grant() {
        let grant: SqlGrant = serde_json::from_value(serde_json::json!({
            "name": "e", "driver": "postgres", "url_env": "U", "tables": ["t"],
            "statements": ["insert"], "statement_timeout_ms": 2500}))
        .expect("grant");
        let limits = ServerLimits::of(&grant);
        assert_eq!(limits.statement, Duration::from_millis(2500));
        assert_eq!(limits.lock, Duration::from_millis(2500));
        assert!(limits.idle_in_transaction >= MIN_IDLE_IN_TRANSACTION);
    }
}
