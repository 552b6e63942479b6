//! What a `sql` grant lets a plugin run: every statement is parsed (with
//! `sqlparser`, in the database's dialect) and refused unless it is one
//! statement, of a granted kind, naming only granted tables and calling only
//! harmless functions. Checked before anything reaches the database.
//!
//! This is defence in depth: the database account the grant logs in as should
//! itself hold only the privileges the sink needs.

use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use sqlparser::ast::{
    visit_expressions, visit_relations, visit_statements, Expr, ObjectName, ObjectNamePart,
    SetExpr, Statement,
};
use sqlparser::dialect::{Dialect, MySqlDialect, OracleDialect, PostgreSqlDialect};
use sqlparser::parser::Parser;

use crate::config::{SqlDriver, SqlGrant, StatementKind};

/// Functions a statement may call. Everything else is refused, because
/// databases ship functions that read server files (`pg_read_file`,
/// `LOAD_FILE`), open connections (`dblink`), sleep or take locks. Names
/// compare case-insensitively.
pub const ALLOWED_FUNCTIONS: &[&str] = &[
    // conditionals and comparisons
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "nvl",
    "ifnull",
    "if",
    // text
    "lower",
    "upper",
    "length",
    "char_length",
    "substr",
    "substring",
    "trim",
    "ltrim",
    "rtrim",
    "concat",
    "replace",
    "left",
    "right",
    "lpad",
    "rpad",
    // numbers
    "abs",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "mod",
    // time
    "now",
    "current_timestamp",
    "localtimestamp",
    "systimestamp",
    "sys_extract_utc",
    "utc_timestamp",
    "to_timestamp",
    "to_timestamp_tz",
    "from_unixtime",
    "to_char",
    "to_date",
    "date_trunc",
    "numtodsinterval",
    "from_tz",
    // JSON
    "json_value",
    "json_query",
    "json_extract",
    "json_object",
    "json_array",
    "json_build_object",
    "to_json",
    "to_jsonb",
    "jsonb_build_object",
    "json",
    "json_serialize",
    "json_unquote",
    // aggregates
    "count",
    "sum",
    "min",
    "max",
    "avg",
    // MySQL `ON DUPLICATE KEY UPDATE c = VALUES(c)`
    "values",
    // conversions
    "cast",
    "to_number",
    "hextoraw",
    "rawtohex",
    "utl_raw.cast_to_raw",
];

/// Statements remembered as accepted, per grant. A sink sends the same few
/// statements again and again (a multi-row `INSERT` of 500 rows is tens of
/// kilobytes to parse); beyond this many distinct ones the memory is
/// cleared and refilled.
const MAX_REMEMBERED_STATEMENTS: usize = 64;

/// Why a statement was refused. The message names what is wrong and never
/// echoes bound values (there are none in the text: values are bound).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// What a checked statement is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedStatement {
    /// The kind of its top-level statement; `None` for granted DDL.
    pub kind: Option<StatementKind>,
}

/// The rules of one grant.
#[derive(Debug, Clone)]
pub struct StatementPolicy {
    driver: SqlDriver,
    /// Granted tables, each as normalised name parts (`["app", "events"]`).
    tables: BTreeSet<Vec<String>>,
    kinds: BTreeSet<StatementKindOrd>,
    allow_ddl: bool,
    /// Accepted statements by their exact text (never a hash: a collision
    /// must not let a different statement through).
    accepted: Arc<Mutex<HashMap<String, CheckedStatement>>>,
}

/// `StatementKind` ordered for the set (the config type needs no `Ord`).
type StatementKindOrd = &'static str;

impl StatementPolicy {
    /// The policy of a grant.
    pub fn new(grant: &SqlGrant) -> Self {
        let driver = grant.driver;
        Self {
            driver,
            tables: grant
                .tables
                .iter()
                .map(|table| normalise_written_name(driver, table))
                .collect(),
            kinds: grant.statements.iter().map(|kind| kind.keyword()).collect(),
            allow_ddl: grant.allow_ddl,
            accepted: Arc::default(),
        }
    }

    /// The granted statement kinds, as SQL keywords.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.iter().copied()
    }

    /// Whether DDL on the granted tables is allowed.
    pub fn allows_ddl(&self) -> bool {
        self.allow_ddl
    }

    /// Whether `table` (as a plugin wrote it) is one of the granted tables.
    pub fn grants_table(&self, table: &str) -> bool {
        self.tables
            .contains(&normalise_written_name(self.driver, table))
    }

    /// Checks one statement (remembered once accepted).
    pub fn check(&self, sql: &str) -> Result<CheckedStatement, Refusal> {
        if let Some(checked) = self
            .accepted
            .lock()
            .ok()
            .and_then(|accepted| accepted.get(sql).cloned())
        {
            return Ok(checked);
        }
        let checked = self.parse_and_check(sql)?;
        if let Ok(mut accepted) = self.accepted.lock() {
            if accepted.len() >= MAX_REMEMBERED_STATEMENTS {
                accepted.clear();
            }
            accepted.insert(sql.to_string(), checked.clone());
        }
        Ok(checked)
    }

    fn parse_and_check(&self, sql: &str) -> Result<CheckedStatement, Refusal> {
        let dialect = dialect(self.driver);
        let statements = Parser::parse_sql(dialect.as_ref(), sql).map_err(|err| {
            Refusal(format!(
                "the statement does not parse as {} SQL: {err}",
                self.driver.name()
            ))
        })?;
        let statement = match statements.as_slice() {
            [one] => one,
            [] => return Err(Refusal("no statement given".into())),
            many => {
                return Err(Refusal(format!(
                    "{} statements in one call; send one statement per call",
                    many.len()
                )))
            }
        };
        let kind = self.check_kinds(statement)?;
        self.check_tables(statement)?;
        check_functions(statement)?;
        check_no_select_into(statement)?;
        Ok(CheckedStatement { kind })
    }

    /// Every statement in the tree (data-modifying CTEs included) must be of
    /// a granted kind; returns the top-level kind.
    fn check_kinds(&self, statement: &Statement) -> Result<Option<StatementKind>, Refusal> {
        let top = self.check_kind(statement)?;
        let nested = visit_statements(statement, |inner| match self.check_kind(inner) {
            Ok(_) => ControlFlow::Continue(()),
            Err(refusal) => ControlFlow::Break(refusal),
        });
        match nested {
            ControlFlow::Break(refusal) => Err(refusal),
            ControlFlow::Continue(()) => Ok(top),
        }
    }

    fn check_kind(&self, statement: &Statement) -> Result<Option<StatementKind>, Refusal> {
        match statement_class(statement) {
            Class::Kind(kind) if self.kinds.contains(kind.keyword()) => Ok(Some(kind)),
            Class::Kind(kind) => Err(Refusal(format!(
                "{} statements are not granted (the grant allows: {})",
                kind.keyword(),
                self.granted_kinds()
            ))),
            Class::Ddl if self.allow_ddl => Ok(None),
            Class::Ddl => Err(Refusal(
                "schema changes (DDL) are not granted; set allow_ddl in the grant to allow them"
                    .into(),
            )),
            Class::Other(name) => Err(Refusal(format!(
                "{name} statements are never granted to plugins"
            ))),
        }
    }

    fn granted_kinds(&self) -> String {
        self.kinds.iter().copied().collect::<Vec<_>>().join(", ")
    }

    fn check_tables(&self, statement: &Statement) -> Result<(), Refusal> {
        let outcome = visit_relations(statement, |relation| {
            let parts = normalise_parsed_name(self.driver, relation);
            if self.tables.contains(&parts) || self.is_dummy_table(&parts) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(Refusal(format!("table `{relation}` is not granted")))
            }
        });
        match outcome {
            ControlFlow::Break(refusal) => Err(refusal),
            ControlFlow::Continue(()) => Ok(()),
        }
    }

    /// Oracle's one-row `DUAL`, needed to select bound values in a `MERGE`.
    fn is_dummy_table(&self, parts: &[String]) -> bool {
        self.driver == SqlDriver::Oracle && parts == ["DUAL"]
    }
}

fn dialect(driver: SqlDriver) -> Box<dyn Dialect> {
    match driver {
        SqlDriver::Oracle => Box::new(OracleDialect {}),
        SqlDriver::Mysql => Box::new(MySqlDialect {}),
        SqlDriver::Postgres => Box::new(PostgreSqlDialect {}),
    }
}

enum Class {
    Kind(StatementKind),
    Ddl,
    Other(&'static str),
}

fn statement_class(statement: &Statement) -> Class {
    match statement {
        Statement::Insert(_) => Class::Kind(StatementKind::Insert),
        Statement::Merge(_) => Class::Kind(StatementKind::Merge),
        Statement::Update(_) => Class::Kind(StatementKind::Update),
        Statement::Delete(_) => Class::Kind(StatementKind::Delete),
        Statement::Query(_) => Class::Kind(StatementKind::Select),
        Statement::CreateTable(_)
        | Statement::CreateIndex(_)
        | Statement::CreateView(_)
        | Statement::CreateSequence { .. }
        | Statement::AlterTable(_)
        | Statement::AlterIndex { .. }
        | Statement::AlterView { .. }
        | Statement::Drop { .. }
        | Statement::Truncate(_)
        | Statement::Comment { .. } => Class::Ddl,
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. } => {
            Class::Other("transaction control (use the transaction's commit and rollback)")
        }
        Statement::Set(_) => Class::Other("SET"),
        Statement::Call(_) => Class::Other("CALL"),
        Statement::Copy { .. } => Class::Other("COPY"),
        Statement::Grant(_) | Statement::Revoke(_) => Class::Other("GRANT and REVOKE"),
        Statement::Lock(_) => Class::Other("LOCK"),
        _ => Class::Other("these"),
    }
}

fn check_functions(statement: &Statement) -> Result<(), Refusal> {
    let outcome = visit_expressions(statement, |expr| {
        if let Expr::Function(function) = expr {
            let name = function.name.to_string().to_ascii_lowercase();
            let plain = name.trim_matches('"').trim_matches('`');
            if !ALLOWED_FUNCTIONS.contains(&plain) {
                return ControlFlow::Break(Refusal(format!(
                    "function `{}` is not allowed (see ALLOWED_FUNCTIONS in docs/sql-capability.md)",
                    function.name
                )));
            }
        }
        ControlFlow::Continue(())
    });
    match outcome {
        ControlFlow::Break(refusal) => Err(refusal),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// `SELECT ... INTO` creates a table (PostgreSQL) or writes a server file
/// (MySQL `INTO OUTFILE`).
fn check_no_select_into(statement: &Statement) -> Result<(), Refusal> {
    fn body_has_into(body: &SetExpr) -> bool {
        match body {
            SetExpr::Select(select) => select.into.is_some(),
            SetExpr::Query(query) => body_has_into(&query.body),
            SetExpr::SetOperation { left, right, .. } => {
                body_has_into(left) || body_has_into(right)
            }
            _ => false,
        }
    }
    let outcome = visit_statements(statement, |inner| match inner {
        Statement::Query(query) if body_has_into(&query.body) => {
            ControlFlow::Break(Refusal("SELECT ... INTO is not allowed".into()))
        }
        _ => ControlFlow::Continue(()),
    });
    match outcome {
        ControlFlow::Break(refusal) => Err(refusal),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Folds an identifier the way the database does when it is unquoted.
fn fold(driver: SqlDriver, identifier: &str) -> String {
    match driver {
        SqlDriver::Postgres => identifier.to_lowercase(),
        SqlDriver::Oracle => identifier.to_uppercase(),
        SqlDriver::Mysql => identifier.to_string(),
    }
}

fn normalise_parsed_name(driver: SqlDriver, name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) if ident.quote_style.is_some() => ident.value.clone(),
            ObjectNamePart::Identifier(ident) => fold(driver, &ident.value),
            // A computed name part never matches a granted table.
            ObjectNamePart::Function(_) => String::from("\u{0}"),
        })
        .collect()
}

/// A table name as the operator or a plugin wrote it (`app.events`,
/// `"Mixed"`): quoted parts are kept, unquoted ones folded.
fn normalise_written_name(driver: SqlDriver, name: &str) -> Vec<String> {
    name.split('.')
        .map(|part| {
            let trimmed = part.trim();
            let quoted = ['"', '`'].iter().find_map(|quote| {
                trimmed
                    .strip_prefix(*quote)
                    .and_then(|rest| rest.strip_suffix(*quote))
            });
            match quoted {
                Some(inner) => inner.to_string(),
                None => fold(driver, trimmed),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(
        driver: &str,
        tables: &[&str],
        statements: &[&str],
        allow_ddl: bool,
    ) -> StatementPolicy {
        let grant: SqlGrant = serde_json::from_value(serde_json::json!({
            "name": "events", "driver": driver, "url_env": "URL",
            "tables": tables, "statements": statements, "allow_ddl": allow_ddl,
        }))
        .expect("grant");
        StatementPolicy::new(&grant)
    }

    fn refused(policy: &StatementPolicy, sql: &str) -> String {
        policy.check(sql).expect_err(sql).0
    }

    #[test]
    fn the_sinks_own_statements_pass() {
        let pg = policy("postgres", &["nats_events"], &["insert", "select"], false);
        pg.check("INSERT INTO nats_events (stream_name, stream_sequence, payload) VALUES ($1, $2, $3) ON CONFLICT (stream_name, stream_sequence) DO NOTHING")
            .expect("pg insert");
        pg.check(
            "INSERT INTO NATS_EVENTS (a) VALUES ($1) ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.b",
        )
        .expect("unquoted names fold to lower case");
        pg.check("SELECT count(*) FROM nats_events WHERE stream_name = $1")
            .expect("pg select");

        let my = policy("mysql", &["nats_events"], &["insert"], false);
        my.check(
            "INSERT INTO nats_events (a, b) VALUES (?, ?) ON DUPLICATE KEY UPDATE b = VALUES(b)",
        )
        .expect("mysql upsert");
        assert!(refused(&my, "INSERT INTO NATS_EVENTS (a) VALUES (?)").contains("not granted"));

        let ora = policy("oracle", &["NATS_EVENTS"], &["merge"], false);
        ora.check(
            "MERGE INTO nats_events t USING (SELECT :1 AS stream_name, :2 AS stream_sequence FROM dual) s \
             ON (t.stream_name = s.stream_name AND t.stream_sequence = s.stream_sequence) \
             WHEN NOT MATCHED THEN INSERT (stream_name, stream_sequence) VALUES (s.stream_name, s.stream_sequence)",
        )
        .expect("oracle merge");
    }

    #[test]
    fn another_table_is_refused_wherever_it_appears() {
        let pg = policy(
            "postgres",
            &["nats_events"],
            &["insert", "select", "update"],
            false,
        );
        assert!(
            refused(&pg, "INSERT INTO users (a) VALUES ($1)").contains("`users` is not granted")
        );
        assert!(refused(
            &pg,
            "SELECT * FROM nats_events WHERE a IN (SELECT a FROM secrets)"
        )
        .contains("secrets"));
        assert!(
            refused(&pg, "INSERT INTO nats_events SELECT * FROM pg_shadow").contains("pg_shadow")
        );
        assert!(refused(
            &pg,
            "UPDATE nats_events SET a = 1 FROM accounts WHERE accounts.id = 1"
        )
        .contains("accounts"));
        assert!(refused(&pg, "SELECT * FROM public.nats_events").contains("not granted"));
        assert!(refused(&pg, "SELECT * FROM \"NATS_EVENTS\"").contains("not granted"));
        assert!(refused(&pg, "WITH x AS (SELECT * FROM other) SELECT * FROM x").contains("other"));
    }

    #[test]
    fn kinds_ddl_and_multiple_statements_are_refused() {
        let pg = policy("postgres", &["nats_events"], &["insert"], false);
        assert!(
            refused(&pg, "DELETE FROM nats_events").contains("DELETE statements are not granted")
        );
        assert!(
            refused(&pg, "SELECT 1 FROM nats_events").contains("SELECT statements are not granted")
        );
        assert!(refused(&pg, "DROP TABLE nats_events").contains("DDL"));
        assert!(refused(&pg, "CREATE TABLE nats_events (a int)").contains("DDL"));
        assert!(refused(&pg, "TRUNCATE nats_events").contains("DDL"));
        assert!(refused(
            &pg,
            "INSERT INTO nats_events (a) VALUES ($1); DROP TABLE nats_events"
        )
        .contains("2 statements"));
        assert!(refused(&pg, "COMMIT").contains("transaction control"));
        assert!(refused(&pg, "SET statement_timeout = 0").contains("SET"));
        assert!(refused(&pg, "COPY nats_events FROM '/etc/passwd'").contains("never granted"));
        assert!(refused(&pg, "").contains("no statement"));
        assert!(refused(&pg, "INSERT INTO").contains("does not parse"));
        let with_ddl = policy("postgres", &["nats_events"], &["insert"], true);
        with_ddl
            .check("CREATE TABLE nats_events (a int)")
            .expect("ddl granted");
        assert!(refused(&with_ddl, "CREATE TABLE other (a int)").contains("other"));
    }

    #[test]
    fn dangerous_functions_and_select_into_are_refused() {
        let pg = policy("postgres", &["nats_events"], &["insert", "select"], false);
        assert!(refused(&pg, "SELECT pg_read_file('/etc/passwd')").contains("pg_read_file"));
        assert!(
            refused(&pg, "INSERT INTO nats_events (a) VALUES (pg_sleep(100))").contains("pg_sleep")
        );
        assert!(refused(&pg, "SELECT * INTO copy_of FROM nats_events").contains("INTO"));
        pg.check("SELECT COALESCE(max(stream_sequence), 0) FROM nats_events")
            .expect("harmless functions");
        let my = policy("mysql", &["nats_events"], &["select"], false);
        assert!(refused(&my, "SELECT LOAD_FILE('/etc/passwd')").contains("LOAD_FILE"));
        let outfile = refused(&my, "SELECT a FROM nats_events INTO OUTFILE '/tmp/x'");
        assert!(
            outfile.contains("INTO") || outfile.contains("does not parse"),
            "{outfile}"
        );
    }

    #[test]
    fn data_modifying_ctes_need_their_own_kind() {
        let pg = policy("postgres", &["nats_events"], &["insert"], false);
        let refusal = refused(
            &pg,
            "WITH gone AS (DELETE FROM nats_events RETURNING *) INSERT INTO nats_events SELECT * FROM gone",
        );
        assert!(refusal.contains("not granted"), "{refusal}");
    }

    #[test]
    fn an_accepted_statement_is_remembered_and_a_refused_one_never_is() {
        let pg = policy("postgres", &["nats_events"], &["insert"], false);
        let good = "INSERT INTO nats_events (a) VALUES ($1)";
        pg.check(good).expect("accepted");
        pg.check(good).expect("remembered");
        assert!(pg.check("DELETE FROM nats_events").is_err());
        assert!(
            pg.check("DELETE FROM nats_events").is_err(),
            "a refusal is checked again, never remembered"
        );
        for n in 0..(MAX_REMEMBERED_STATEMENTS * 2) {
            pg.check(&format!("INSERT INTO nats_events (a) VALUES ({n})"))
                .expect("accepted");
        }
        assert!(pg.accepted.lock().expect("lock").len() <= MAX_REMEMBERED_STATEMENTS);
    }

    #[test]
    fn written_names_fold_like_the_database() {
        let ora = policy("oracle", &["app.NATS_EVENTS"], &["insert"], false);
        assert!(ora.grants_table("APP.nats_events"));
        assert!(!ora.grants_table("nats_events"));
        let my = policy("mysql", &["nats_events"], &["insert"], false);
        assert!(my.grants_table("`nats_events`"));
        assert!(!my.grants_table("NATS_EVENTS"));
    }
}
