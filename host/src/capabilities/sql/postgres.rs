//! PostgreSQL through `tokio-postgres`, pooled by `deadpool-postgres`.
//!
//! Statements are prepared (and cached per connection), so the server says
//! which type each placeholder has and a plugin's value is encoded for that
//! type: an `integer` binds to `smallint`, `integer`, `bigint` or a float
//! column, `text` and `json` to `json`/`jsonb`/`text`, a `timestamp` to
//! `timestamptz`/`timestamp`, and `null` to anything. A value that cannot
//! fit is a permanent error naming the parameter's position and type.

use std::error::Error as StdError;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use deadpool_postgres::{Manager, ManagerConfig, Object, RecyclingMethod, Runtime};
use futures::StreamExt as _;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

use super::endpoint::Endpoint;
use super::postgres_wire::{Wire, WireConnect};
use super::{
    catalog_name, row_bytes, scrub_database_message, ResultBudget, ServerLimits, SqlError,
    SqlErrorKind, SqlRows, SqlValue, DEFAULT_QUERY_BYTES,
};
use crate::config::SqlDriver;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const POSTGRES_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// A lazy pool: connections are opened on demand and checked (a round trip)
/// before each reuse, so a restarted server costs one failed batch at most.
pub struct Pool {
    pool: deadpool_postgres::Pool,
    /// How sessions are opened (TLS, the message cap), and cancelled.
    wire: Wire,
}

impl Pool {
    /// A pool of `size` connections to `endpoint`; connects nothing yet.
    pub fn new(
        endpoint: &Endpoint,
        size: u32,
        connect_timeout: Duration,
        limits: &ServerLimits,
    ) -> Result<Self, String> {
        let wire = Wire::new(
            &endpoint.host,
            endpoint.port,
            connect_timeout,
            super::tls::client_config(&endpoint.tls)?,
            DEFAULT_QUERY_BYTES,
        );
        let mut config = tokio_postgres::Config::new();
        config
            // TLS or not, never "prefer": no silent fallback to plaintext.
            .ssl_mode(if wire.is_tls() {
                SslMode::Require
            } else {
                SslMode::Disable
            })
            .host(&endpoint.host)
            .port(endpoint.port)
            .dbname(&endpoint.service)
            .user(&endpoint.user)
            .password(endpoint.password.as_bytes())
            .application_name("sinkhost")
            // Set once per session, at connect: a plugin cannot send `SET`
            // (the policy refuses it), so these hold for every statement.
            .options(session_options(limits))
            .connect_timeout(connect_timeout);
        let manager = Manager::from_connect(
            config,
            WireConnect(wire.clone()),
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(size as usize)
            .wait_timeout(Some(connect_timeout))
            .create_timeout(Some(connect_timeout))
            .recycle_timeout(Some(connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|err| format!("cannot build the connection pool: {err}"))?;
        Ok(Self { pool, wire })
    }

    /// Takes a connection and starts a transaction (the server-side limits
    /// were set when the session was opened, see [`session_options`]).
    pub async fn begin(&self, _statement_timeout: Duration) -> Result<Transaction, SqlError> {
        let client = self.connection().await?;
        client.batch_execute("BEGIN").await.map_err(classify)?;
        Ok(Transaction {
            client: Some(client),
            wire: self.wire.clone(),
        })
    }

    /// Caps every message a session reads at `bytes` (a row bigger than
    /// one query may return is refused at its header, never buffered).
    pub fn set_max_message(&self, bytes: usize) {
        self.wire.set_max_message(bytes);
    }

    async fn connection(&self) -> Result<Object, SqlError> {
        self.pool.get().await.map_err(|err| match err {
            deadpool_postgres::PoolError::Backend(err) => classify(err),
            other => SqlError::transient(format!("no PostgreSQL connection: {other}")),
        })
    }

    /// The table's columns, from `information_schema`.
    pub async fn columns(&self, table: &str) -> Result<Vec<String>, SqlError> {
        let (schema, name) = catalog_name(SqlDriver::Postgres, table);
        let client = self.connection().await?;
        let rows = client
            .query(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = COALESCE($1, current_schema()) AND table_name = $2 \
                 ORDER BY ordinal_position",
                &[&schema, &name],
            )
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|row| row.try_get::<_, String>(0).map_err(classify))
            .collect()
    }
}

/// An open transaction.
pub struct Transaction {
    client: Option<Object>,
    wire: Wire,
}

impl Transaction {
    fn client(&self) -> Result<&Object, SqlError> {
        self.client
            .as_ref()
            .ok_or_else(|| SqlError::transient("the connection is closed"))
    }

    /// Runs one statement.
    pub async fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64, SqlError> {
        let client = self.client()?;
        let statement = client.prepare_cached(sql).await.map_err(classify)?;
        client
            .execute_raw(&statement, params.iter().map(Param))
            .await
            .map_err(classify)
    }

    /// Runs one statement per row, prepared once, pipelined in one
    /// transaction.
    pub async fn execute_many(
        &mut self,
        sql: &str,
        rows: &[Vec<SqlValue>],
    ) -> Result<u64, SqlError> {
        let client = self.client()?;
        let statement = client.prepare_cached(sql).await.map_err(classify)?;
        let mut affected = 0;
        for (index, row) in rows.iter().enumerate() {
            affected += client
                .execute_raw(&statement, row.iter().map(Param))
                .await
                .map_err(|err| classify(err).at_row(index))?;
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
        let oversized = self.wire.oversized();
        let outcome = self.stream_rows(sql, params, budget).await;
        if outcome.is_err() && self.wire.oversized() != oversized {
            return Err(SqlError::permanent(format!(
                "a row of the query's result passed {} bytes, the plugin's memory_mb; \
                 it was stopped: select fewer rows or columns",
                self.wire.max_message()
            ))
            .stopping_query());
        }
        outcome
    }

    async fn stream_rows(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        budget: &mut ResultBudget,
    ) -> Result<SqlRows, SqlError> {
        let client = self.client()?;
        let statement = client.prepare_cached(sql).await.map_err(classify)?;
        let stream = client
            .query_raw(&statement, params.iter().map(Param))
            .await
            .map_err(classify)?;
        futures::pin_mut!(stream);
        let columns = statement
            .columns()
            .iter()
            .map(|column| column.name().to_string())
            .collect();
        let mut values = Vec::new();
        while let Some(row) = stream.next().await {
            // Any error mid-result leaves the session mid-protocol.
            let row = row.map_err(|error| classify(error).stopping_query())?;
            let mut cells = Vec::with_capacity(row.len());
            for index in 0..row.len() {
                let cell = row
                    .try_get::<_, Cell>(index)
                    .map_err(|error| classify(error).stopping_query())?;
                cells.push(cell.0);
            }
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

    async fn finish(&mut self, command: &str) -> Result<(), SqlError> {
        self.client()?
            .batch_execute(command)
            .await
            .map_err(classify)
    }

    /// Closes the connection instead of returning it to the pool; the server
    /// rolls back whatever was open. A statement still running on the
    /// server (the host gave up on it, or stopped reading its rows) is
    /// cancelled too: closing the socket alone would not stop a statement
    /// that sends nothing back (`SELECT count(*)` over a cartesian join)
    /// before its `statement_timeout`.
    pub fn abandon(mut self) {
        if let Some(client) = self.client.take() {
            let cancel = client.cancel_token();
            drop(Object::take(client));
            let wire = self.wire.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(error) = wire.cancel(cancel).await {
                        tracing::debug!(%error, "could not cancel an abandoned PostgreSQL statement");
                    }
                });
            }
        }
    }
}

/// The session parameters every connection starts with (the startup
/// packet's `options`): the grant's statement timeout on the server, so a
/// statement the host gave up on stops there too; the same bound on lock
/// waits; and an idle-in-transaction bound for a host that stopped
/// talking without closing the socket.
fn session_options(limits: &ServerLimits) -> String {
    format!(
        "-c statement_timeout={} -c lock_timeout={} -c idle_in_transaction_session_timeout={}",
        limits.statement.as_millis(),
        limits.lock.as_millis(),
        limits.idle_in_transaction.as_millis()
    )
}

/// A plugin's value bound to a placeholder of the type the server inferred.
#[derive(Debug)]
struct Param<'a>(&'a SqlValue);

/// A value that does not fit the placeholder's type: a permanent error.
#[derive(Debug)]
struct BindError(String);

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for BindError {}

type BoxError = Box<dyn StdError + Sync + Send>;

fn mismatch(value: &SqlValue, ty: &Type) -> BoxError {
    Box::new(BindError(format!(
        "a {} value cannot be bound to a parameter of type {ty}",
        value.kind_name()
    )))
}

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let value = self.0;
        match value {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Boolean(flag) if *ty == Type::BOOL => flag.to_sql(ty, out),
            SqlValue::Integer(number) => match *ty {
                Type::INT2 => i16::try_from(*number)
                    .map_err(|_| out_of_range(value, ty))?
                    .to_sql(ty, out),
                Type::INT4 => i32::try_from(*number)
                    .map_err(|_| out_of_range(value, ty))?
                    .to_sql(ty, out),
                Type::INT8 => number.to_sql(ty, out),
                Type::FLOAT4 => (*number as f32).to_sql(ty, out),
                Type::FLOAT8 => (*number as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR => {
                    number.to_string().as_str().to_sql(ty, out)
                }
                _ => Err(mismatch(value, ty)),
            },
            SqlValue::Float(number) => match *ty {
                Type::FLOAT4 => (*number as f32).to_sql(ty, out),
                Type::FLOAT8 => number.to_sql(ty, out),
                _ => Err(mismatch(value, ty)),
            },
            SqlValue::Text(text) | SqlValue::Json(text) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    text.as_str().to_sql(ty, out)
                }
                Type::JSON => {
                    out.put_slice(text.as_bytes());
                    Ok(IsNull::No)
                }
                Type::JSONB => {
                    // jsonb's binary form: a version byte, then the text.
                    out.put_u8(1);
                    out.put_slice(text.as_bytes());
                    Ok(IsNull::No)
                }
                _ => Err(mismatch(value, ty)),
            },
            SqlValue::Bytes(bytes) if *ty == Type::BYTEA => bytes.as_slice().to_sql(ty, out),
            SqlValue::Timestamp(nanos) if *ty == Type::TIMESTAMPTZ || *ty == Type::TIMESTAMP => {
                out.put_i64(nanos.div_euclid(1_000) - POSTGRES_EPOCH_OFFSET_MICROS);
                Ok(IsNull::No)
            }
            _ => Err(mismatch(value, ty)),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        // Every type is tried; `to_sql` refuses what does not fit.
        true
    }

    to_sql_checked!();
}

fn out_of_range(value: &SqlValue, ty: &Type) -> BoxError {
    Box::new(BindError(format!(
        "a {} value is out of range for a parameter of type {ty}",
        value.kind_name()
    )))
}

/// One cell of a result row, decoded by its column type.
struct Cell(SqlValue);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let value = match *ty {
            Type::BOOL => SqlValue::Boolean(bool::from_sql(ty, raw)?),
            Type::INT2 => SqlValue::Integer(i16::from_sql(ty, raw)?.into()),
            Type::INT4 => SqlValue::Integer(i32::from_sql(ty, raw)?.into()),
            Type::INT8 => SqlValue::Integer(i64::from_sql(ty, raw)?),
            Type::FLOAT4 => SqlValue::Float(f32::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => SqlValue::Float(f64::from_sql(ty, raw)?),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                SqlValue::Text(String::from_sql(ty, raw)?)
            }
            Type::JSON => SqlValue::Json(std::str::from_utf8(raw)?.to_string()),
            Type::JSONB => {
                SqlValue::Json(std::str::from_utf8(raw.get(1..).unwrap_or_default())?.to_string())
            }
            Type::BYTEA => SqlValue::Bytes(raw.to_vec()),
            Type::TIMESTAMPTZ | Type::TIMESTAMP => {
                let micros = i64::from_sql(&Type::INT8, raw)?;
                SqlValue::Timestamp(
                    micros
                        .saturating_add(POSTGRES_EPOCH_OFFSET_MICROS)
                        .saturating_mul(1_000),
                )
            }
            _ => {
                return Err(Box::new(BindError(format!(
                    "a column of type {ty} cannot be returned; cast it to text in the query"
                ))))
            }
        };
        Ok(Cell(value))
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, BoxError> {
        Ok(Cell(SqlValue::Null))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// Sorts a driver error into transient, permanent; keeps SQLSTATE.
fn classify(error: tokio_postgres::Error) -> SqlError {
    if let Some(db) = error.as_db_error() {
        let state = db.code();
        let kind = if is_transient_state(state) {
            SqlErrorKind::Transient
        } else if is_statement_state(state) {
            SqlErrorKind::InvalidStatement
        } else {
            SqlErrorKind::Permanent
        };
        // The primary message only, scrubbed (DETAIL, which holds the
        // row's values, is never included); identifiers from their fields.
        let mut message = format!(
            "PostgreSQL {}: {}",
            state.code(),
            scrub_database_message(db.message())
        );
        for (what, name) in [
            ("table", db.table()),
            ("column", db.column()),
            ("constraint", db.constraint()),
        ] {
            if let Some(name) = name {
                message.push_str(&format!(" ({what} {})", scrub_identifier(name)));
            }
        }
        tracing::debug!(code = state.code(), message = %message, "PostgreSQL error");
        return SqlError::new(kind, Some(state.code().to_string()), message);
    }
    let bind_error = error
        .source()
        .and_then(|source| source.downcast_ref::<BindError>());
    if let Some(bind_error) = bind_error {
        return SqlError::permanent(format!("PostgreSQL: {error}: {bind_error}"));
    }
    // I/O, a closed connection, a refused connect: the database may come back.
    SqlError::transient(format!(
        "PostgreSQL: {}",
        scrub_database_message(&error.to_string())
    ))
}

/// An identifier from an error's structured field, kept only when it looks
/// like one (a name, not text a value could hide in).
fn scrub_identifier(name: &str) -> String {
    if name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
    {
        name.to_string()
    } else {
        String::from("…")
    }
}

/// Connection exceptions (08), a refused login (28), transaction rollbacks (40: serialisation
/// failure, deadlock), insufficient resources (53), operator intervention
/// (57: statement timeout, server shutdown) and system errors (58).
fn is_transient_state(state: &SqlState) -> bool {
    let code = state.code();
    // 55P03: lock_timeout passed waiting for another session's lock.
    // 28: the login was refused (a wrong or rotated password): an operator
    // fixes it, the messages wait; never a reason to dead-letter them.
    code == "55P03"
        || ["08", "28", "40", "53", "57", "58"]
            .iter()
            .any(|class| code.starts_with(class))
}

/// Syntax errors and access rules (42: unknown table or column, missing
/// privilege), unsupported features (0A), invalid catalog or schema names
/// (3D, 3F).
fn is_statement_state(state: &SqlState) -> bool {
    let code = state.code();
    ["42", "0A", "3D", "3F"]
        .iter()
        .any(|class| code.starts_with(class))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(value: SqlValue, ty: Type) -> Result<Vec<u8>, String> {
        let mut out = BytesMut::new();
        match Param(&value).to_sql(&ty, &mut out) {
            Ok(IsNull::Yes) => Ok(Vec::new()),
            Ok(IsNull::No) => Ok(out.to_vec()),
            Err(err) => Err(err.to_string()),
        }
    }

    #[test]
    fn values_are_encoded_for_the_inferred_type() {
        assert_eq!(
            encode(SqlValue::Integer(7), Type::INT4).expect("int4"),
            7i32.to_be_bytes()
        );
        assert_eq!(
            encode(SqlValue::Integer(7), Type::INT8).expect("int8"),
            7i64.to_be_bytes()
        );
        assert!(encode(SqlValue::Integer(1 << 40), Type::INT4)
            .expect_err("range")
            .contains("out of range"));
        assert_eq!(
            encode(SqlValue::Json("{}".into()), Type::JSONB).expect("jsonb"),
            b"\x01{}"
        );
        assert_eq!(
            encode(SqlValue::Json("{}".into()), Type::JSON).expect("json"),
            b"{}"
        );
        assert_eq!(encode(SqlValue::Null, Type::INT8).expect("null"), b"");
        let epoch_2000 = encode(
            SqlValue::Timestamp(946_684_800_000_000_000),
            Type::TIMESTAMPTZ,
        )
        .expect("ts");
        assert_eq!(epoch_2000, 0i64.to_be_bytes());
        let error = encode(SqlValue::Bytes(vec![1]), Type::INT8).expect_err("mismatch");
        assert!(error.contains("bytes") && error.contains("int8"), "{error}");
    }

    #[test]
    fn cells_decode_back() {
        let Cell(value) = Cell::from_sql(&Type::TIMESTAMPTZ, &0i64.to_be_bytes()).expect("ts");
        assert_eq!(value, SqlValue::Timestamp(946_684_800_000_000_000));
        let Cell(value) = Cell::from_sql(&Type::JSONB, b"\x01{\"a\":1}").expect("jsonb");
        assert_eq!(value, SqlValue::Json("{\"a\":1}".into()));
        assert!(Cell::from_sql(&Type::NUMERIC, b"").is_err());
    }

    #[test]
    fn states_are_classified() {
        assert!(is_transient_state(&SqlState::T_R_DEADLOCK_DETECTED));
        assert!(is_transient_state(&SqlState::T_R_SERIALIZATION_FAILURE));
        assert!(is_transient_state(&SqlState::QUERY_CANCELED));
        assert!(is_transient_state(&SqlState::ADMIN_SHUTDOWN));
        assert!(is_transient_state(&SqlState::CONNECTION_FAILURE));
        assert!(is_transient_state(&SqlState::LOCK_NOT_AVAILABLE));
        assert!(is_transient_state(&SqlState::INVALID_PASSWORD));
        assert!(!is_transient_state(&SqlState::UNIQUE_VIOLATION));
        assert!(!is_transient_state(&SqlState::NOT_NULL_VIOLATION));
        assert!(!is_transient_state(&SqlState::INVALID_TEXT_REPRESENTATION));
        assert!(is_statement_state(&SqlState::UNDEFINED_TABLE));
        assert!(is_statement_state(&SqlState::UNDEFINED_COLUMN));
        assert!(is_statement_state(&SqlState::INSUFFICIENT_PRIVILEGE));
        assert!(!is_statement_state(&SqlState::CHECK_VIOLATION));
    }
}
