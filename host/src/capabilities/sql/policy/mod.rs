//! What a `sql` grant lets a plugin run. The policy is an allow-list:
//! a statement runs only if everything in it is recognised as granted.
//!
//! 1. The raw text and the tokenizer's reading of it hold no comment, no
//!    optimizer hint, no escape and no quoting form where the server's
//!    lexer and `sqlparser`'s could disagree ([`lexical`]).
//! 2. It parses (in the database's dialect) as exactly one statement.
//! 3. A walk over the whole tree ([`walker`]) accepts only the node kinds it
//!    has reviewed: table sources are granted tables, CTEs of the statement
//!    or subqueries; every function is on [`ALLOWED_FUNCTIONS`]; qualified
//!    column names are qualified by a table or alias of the statement; every
//!    name in DDL is a granted table.
//! 4. Every statement kind the tree needs (`insert`, `upsert`, `returning`
//!    ...) is granted: kinds are exact.
//!
//! Checked before anything reaches the database. This is defence in depth:
//! the database account the grant logs in as should itself hold only the
//! privileges the sink needs.

mod functions;
mod lexical;
mod walker;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use sqlparser::ast::{ObjectName, ObjectNamePart};
use sqlparser::dialect::{Dialect, MySqlDialect, OracleDialect, PostgreSqlDialect};
use sqlparser::parser::Parser;

use crate::config::{SqlDriver, SqlGrant, StatementKind};

pub use functions::ALLOWED_FUNCTIONS;
pub use lexical::MAX_STATEMENT_BYTES;
pub use walker::{MAX_DEPTH, MAX_VALUES_ROWS};

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
    kinds: BTreeSet<StatementKind>,
    allow_ddl: bool,
    /// Accepted statements by their exact text (never a hash: a collision
    /// must not let a different statement through).
    accepted: Arc<Mutex<HashMap<String, CheckedStatement>>>,
}

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
            kinds: grant.statements.iter().copied().collect(),
            allow_ddl: grant.allow_ddl,
            accepted: Arc::default(),
        }
    }

    /// The granted statement kinds, as SQL keywords.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.iter().map(|kind| kind.keyword())
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
        lexical::check_text(self.driver, sql)?;
        let dialect = dialect(self.driver);
        lexical::check_tokens(dialect.as_ref(), self.driver, sql)?;
        let statements = Parser::new(dialect.as_ref())
            .with_recursion_limit(MAX_DEPTH)
            .try_with_sql(sql)
            .and_then(|mut parser| parser.parse_statements())
            .map_err(|err| {
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
        if !self.allow_ddl && is_ddl(statement) {
            return Err(Refusal(
                "schema changes (DDL) are not granted; set allow_ddl in the grant to allow them on the granted tables"
                    .into(),
            ));
        }
        // The statement's own kind first: the most useful message.
        if let Some((kind, what)) = base_kind(statement) {
            if !self.kinds.contains(&kind) {
                return Err(self.kind_refusal(kind, what));
            }
        }
        let needs = walker::Walker::new(walker::Grant {
            driver: self.driver,
            tables: &self.tables,
        })
        .walk(statement)?;
        for (kind, what) in &needs.kinds {
            if !self.kinds.contains(kind) {
                return Err(self.kind_refusal(*kind, what));
            }
        }
        Ok(CheckedStatement {
            kind: top_kind(statement, &needs),
        })
    }

    fn kind_refusal(&self, kind: StatementKind, what: &str) -> Refusal {
        let granted = self.granted_kinds();
        let why = match kind {
            StatementKind::Upsert => " (it changes existing rows)",
            StatementKind::Returning => " (it reads rows back)",
            StatementKind::Replace => " (it deletes the conflicting row)",
            _ => "",
        };
        let message = if what == kind.keyword() {
            format!("{what} statements are not granted")
        } else {
            format!("{what} is not granted{why}")
        };
        Refusal(format!(
            "{message}: add \"{}\" to the grant's statements to allow it (the grant allows: {granted})",
            kind.name()
        ))
    }

    fn granted_kinds(&self) -> String {
        self.kinds
            .iter()
            .map(|kind| kind.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn is_ddl(statement: &sqlparser::ast::Statement) -> bool {
    use sqlparser::ast::Statement as S;
    matches!(
        statement,
        S::CreateTable { .. }
            | S::CreateIndex { .. }
            | S::CreateView { .. }
            | S::CreateSequence { .. }
            | S::CreateSchema { .. }
            | S::CreateDatabase { .. }
            | S::CreateFunction { .. }
            | S::CreateRole { .. }
            | S::CreateExtension { .. }
            | S::AlterTable { .. }
            | S::AlterIndex { .. }
            | S::AlterView { .. }
            | S::AlterRole { .. }
            | S::Drop { .. }
            | S::DropFunction { .. }
            | S::Truncate { .. }
            | S::Comment { .. }
    )
}

/// The kind a DML statement needs whatever its clauses, with its name.
fn base_kind(statement: &sqlparser::ast::Statement) -> Option<(StatementKind, &'static str)> {
    use sqlparser::ast::Statement as S;
    match statement {
        S::Query { .. } => Some((StatementKind::Select, "SELECT")),
        S::Insert(insert) if insert.replace_into => Some((StatementKind::Replace, "REPLACE INTO")),
        S::Insert { .. } => Some((StatementKind::Insert, "INSERT")),
        S::Merge { .. } => Some((StatementKind::Merge, "MERGE")),
        S::Update { .. } => Some((StatementKind::Update, "UPDATE")),
        S::Delete { .. } => Some((StatementKind::Delete, "DELETE")),
        _ => None,
    }
}

/// The kind of the top-level statement; `None` for DDL.
fn top_kind(statement: &sqlparser::ast::Statement, needs: &walker::Needs) -> Option<StatementKind> {
    use sqlparser::ast::Statement as S;
    if needs.ddl {
        return None;
    }
    match statement {
        S::Query { .. } => Some(StatementKind::Select),
        S::Insert(insert) if insert.replace_into => Some(StatementKind::Replace),
        S::Insert { .. } if needs.kinds.contains_key(&StatementKind::Upsert) => {
            Some(StatementKind::Upsert)
        }
        S::Insert { .. } => Some(StatementKind::Insert),
        S::Merge { .. } => Some(StatementKind::Merge),
        S::Update { .. } => Some(StatementKind::Update),
        S::Delete { .. } => Some(StatementKind::Delete),
        _ => None,
    }
}

fn dialect(driver: SqlDriver) -> Box<dyn Dialect> {
    match driver {
        SqlDriver::Oracle => Box::new(OracleDialect {}),
        SqlDriver::Mysql => Box::new(MySqlDialect {}),
        SqlDriver::Postgres => Box::new(PostgreSqlDialect {}),
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
mod tests;
