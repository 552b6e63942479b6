//! `sinkhost-test-sql-probe`: a test-only sink that tries what a hostile
//! database plugin would, for the host's `sql` grant tests. Never ship it.
//!
//! Each message's payload is one probe, run in its own transaction that is
//! then rolled back:
//! - `{"connection": "events", "statement": "...", "params": [1, "text", null]}`
//!   runs `execute` (numbers bind as integers, strings as text);
//!   with `"show_rows": true` it runs `query` instead and logs the rows it
//!   got back; with `"commit": true` the transaction is committed instead of
//!   rolled back (so an effect the host failed to refuse would persist);
//!   with `"timed": true` the line ends with ` [took <n> ms]`;
//! - `{"connection": "events", "columns_of": "table"}` calls `columns`;
//! - `{"environment": true}` looks for credentials in what the sandbox shows:
//!   environment variables and arguments;
//! - `"query": true` runs `query` instead of `execute` (`ok <n> rows`);
//! - `"leave_open": true` runs the statement and keeps the transaction open
//!   in the instance for later batches (neither commit nor rollback);
//! - `{"use_left": true, "statement": "..."}` runs the statement on the
//!   transaction a former probe left open (`ok ...`, or the host's error).
//!
//! The outcome goes to the host log as one line
//! `probe <sequence>: ok <detail>` or `probe <sequence>: <error-kind>: <message>`.
//! Every message is accepted: the test reads the log.

use serde_json::Value as Json;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "sql-plugin",
    with: {
        "sinkhost:sink/types@0.1.0": sinkhost_sdk_http::wit::sinkhost::sink::types,
        "sinkhost:sink/sql@0.1.0": sinkhost_sdk_sql::wit::sinkhost::sink::sql,
    },
});

use exports::sinkhost::sink::sink::Guest;
use sinkhost::sink::log::{log, Level};
use sinkhost_sdk_http::wit::sinkhost::sink::types::{BatchReport, Envelope, SinkError};
use sinkhost_sdk_sql::wit::sinkhost::sink::sql;

struct Probe;

thread_local! {
    /// A transaction a `leave_open` probe kept, for a later `use_left`.
    static LEFT_OPEN: std::cell::RefCell<Option<sql::Transaction>> =
        const { std::cell::RefCell::new(None) };
}

fn describe(error: &sql::SqlError) -> String {
    let kind = match error.kind {
        sql::ErrorKind::Transient => "transient",
        sql::ErrorKind::Permanent => "permanent",
        sql::ErrorKind::InvalidStatement => "invalid-statement",
        sql::ErrorKind::Refused => "refused",
    };
    format!("{kind}: {}", error.message)
}

fn bind(value: &Json) -> sql::Value {
    match value {
        Json::Null => sql::Value::Null,
        Json::Bool(flag) => sql::Value::Boolean(*flag),
        Json::Number(number) => number
            .as_i64()
            .map_or(sql::Value::Null, sql::Value::Integer),
        Json::String(text) => sql::Value::Text(text.clone()),
        other => sql::Value::Json(other.to_string()),
    }
}

fn run(probe: &Json) -> Result<String, String> {
    if probe.get("environment").is_some() {
        let variables: Vec<String> = std::env::vars()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        let arguments: Vec<String> = std::env::args().collect();
        return Ok(format!("environment {variables:?} arguments {arguments:?}"));
    }
    let connection = probe["connection"].as_str().unwrap_or_default();
    if let Some(table) = probe.get("columns_of").and_then(Json::as_str) {
        return sql::columns(connection, table)
            .map(|columns| format!("columns {columns:?}"))
            .map_err(|e| describe(&e));
    }
    let statement = probe["statement"].as_str().unwrap_or_default();
    let params: Vec<sql::Value> = probe["params"]
        .as_array()
        .map(|values| values.iter().map(bind).collect())
        .unwrap_or_default();
    let run_on = |transaction: &sql::Transaction| {
        if probe.get("show_rows").and_then(Json::as_bool) == Some(true) {
            transaction
                .query(statement, &params)
                .map(|rows| format!("rows {}", show_rows(&rows)))
                .map_err(|e| describe(&e))
        } else if probe.get("query").is_some() {
            transaction
                .query(statement, &params)
                .map(|rows| format!("{} rows", rows.rows.len()))
                .map_err(|e| describe(&e))
        } else {
            transaction
                .execute(statement, &params)
                .map(|rows| format!("{rows} rows"))
                .map_err(|e| describe(&e))
        }
    };
    if probe.get("use_left").is_some() {
        return LEFT_OPEN.with(|left| match left.borrow().as_ref() {
            Some(transaction) => run_on(transaction),
            None => Err(String::from("no transaction was left open")),
        });
    }
    let transaction = sql::begin(connection).map_err(|e| describe(&e))?;
    let outcome = run_on(&transaction);
    if probe.get("leave_open").is_some() {
        LEFT_OPEN.with(|left| *left.borrow_mut() = Some(transaction));
        return outcome.map(|detail| format!("{detail} (left open)"));
    }
    if probe.get("commit").and_then(Json::as_bool) == Some(true) && outcome.is_ok() {
        transaction.commit().map_err(|e| describe(&e))?;
    } else {
        let _ = transaction.rollback();
    }
    outcome
}

/// The rows as one line: `[[a, b], [c, d]]`.
fn show_rows(rows: &sql::Rows) -> String {
    let shown: Vec<String> = rows
        .rows
        .iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .map(|value| match value {
                    sql::Value::Null => "null".to_string(),
                    sql::Value::Boolean(flag) => flag.to_string(),
                    sql::Value::Integer(n) => n.to_string(),
                    sql::Value::Float(x) => x.to_string(),
                    sql::Value::Text(text) | sql::Value::Json(text) => text.clone(),
                    sql::Value::Bytes(bytes) => format!("{} bytes", bytes.len()),
                    sql::Value::Timestamp(nanos) => nanos.to_string(),
                })
                .collect();
            format!("[{}]", cells.join(", "))
        })
        .collect();
    format!("[{}]", shown.join(", "))
}

impl Guest for Probe {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn write_batch(batch: Vec<Envelope>) -> Result<BatchReport, SinkError> {
        for envelope in &batch {
            let line = match serde_json::from_slice::<Json>(&envelope.payload) {
                Ok(probe) => {
                    let started = std::time::Instant::now();
                    let line = match run(&probe) {
                        Ok(detail) => format!("ok {detail}"),
                        Err(error) => error,
                    };
                    if probe.get("timed").and_then(Json::as_bool) == Some(true) {
                        format!("{line} [took {} ms]", started.elapsed().as_millis())
                    } else {
                        line
                    }
                }
                Err(err) => format!("bad probe: {err}"),
            };
            log(
                Level::Info,
                &format!("probe {}: {line}", envelope.stream_sequence),
            );
        }
        Ok(BatchReport {
            failures: Vec::new(),
        })
    }
}

export!(Probe);
