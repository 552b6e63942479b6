//! `plugin.grants.sql`: database connections a plugin may use through the
//! host's `sql` interface. The host owns the connection, the pool and the
//! credentials; the plugin names the grant and never sees them.

use serde::{Deserialize, Serialize};

use super::Invalid;

/// Default connections per granted database.
const DEFAULT_POOL_SIZE: u32 = 4;
/// More connections than this from one sink is a typo, not a plan.
const MAX_POOL_SIZE: u32 = 256;
/// Default deadline of one statement (and of commit and rollback).
const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 30_000;
/// Default deadline to get a connection from the pool (connecting included).
const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;

/// One database connection the plugin may use.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlGrant {
    /// What the plugin calls it (`sql.begin("events")`).
    pub name: String,
    /// Which database speaks at the other end.
    pub driver: SqlDriver,
    /// Variable holding the whole connection URL, credentials included:
    /// `postgres://user:password@host:5432/db`, `mysql://user:password@host:3306/db`,
    /// `oracle://user:password@host:1521/service`. Alternative to the fields below.
    #[serde(default)]
    pub url_env: Option<String>,
    /// Database host name or address.
    #[serde(default)]
    pub host: Option<String>,
    /// Port; the driver's default when absent (5432, 3306, 1521).
    #[serde(default)]
    pub port: Option<u16>,
    /// Database name (PostgreSQL, MySQL) or service name (Oracle).
    #[serde(default)]
    pub service: Option<String>,
    /// User name.
    #[serde(default)]
    pub user: Option<String>,
    /// Variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Tables the plugin's statements may name. Unquoted names compare as
    /// the database folds them (lower case for PostgreSQL, upper case for
    /// Oracle, exactly for MySQL, whose table names are case-sensitive on
    /// Linux); `schema.table` must be written the same way in the SQL.
    pub tables: Vec<String>,
    /// Statement kinds the plugin may run.
    pub statements: Vec<StatementKind>,
    /// Whether `CREATE`/`ALTER`/`DROP`/`TRUNCATE` on the granted tables is
    /// allowed. Off: schema changes belong to migrations, not to a sink.
    #[serde(default)]
    pub allow_ddl: bool,
    /// Connections in the pool.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Deadline of one statement, commit or rollback, in milliseconds.
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// Deadline to get a connection (connecting when needed), in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Encryption of the connection. Absent: `verify-full` against the
    /// system's roots, except for a loopback host (`127.0.0.0/8`, `::1`,
    /// `localhost`), where it is `disable` (nothing leaves the machine).
    #[serde(default)]
    pub tls: Option<SqlTls>,
}

/// How the connection to a granted database is encrypted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlTls {
    /// How much is required of the server.
    pub mode: SqlTlsMode,
    /// PEM file of the CA certificates the server's certificate must chain
    /// to, instead of the system's roots (`verify-ca`, `verify-full`).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

/// A TLS requirement, strictest last. The host never falls back to a weaker
/// one: a server that cannot meet it is not connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SqlTlsMode {
    /// Plaintext; the credentials and the rows cross the network unprotected.
    Disable,
    /// Encrypted, the server's certificate not checked (a man in the middle
    /// can read everything): only for servers whose certificate cannot be
    /// checked.
    Require,
    /// Encrypted, the certificate chains to a trusted CA; its name is not
    /// checked.
    VerifyCa,
    /// Encrypted, the certificate chains to a trusted CA and names the host.
    VerifyFull,
}

impl SqlTlsMode {
    /// The name used in the config and in messages.
    pub fn name(self) -> &'static str {
        match self {
            SqlTlsMode::Disable => "disable",
            SqlTlsMode::Require => "require",
            SqlTlsMode::VerifyCa => "verify-ca",
            SqlTlsMode::VerifyFull => "verify-full",
        }
    }
}

fn default_pool_size() -> u32 {
    DEFAULT_POOL_SIZE
}

fn default_statement_timeout_ms() -> u64 {
    DEFAULT_STATEMENT_TIMEOUT_MS
}

fn default_connect_timeout_ms() -> u64 {
    DEFAULT_CONNECT_TIMEOUT_MS
}

/// A database driver built into the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlDriver {
    /// Oracle Database, through Oracle's pure-Rust thin driver.
    Oracle,
    /// MySQL or MariaDB.
    Mysql,
    /// PostgreSQL.
    Postgres,
}

impl SqlDriver {
    /// The name used in the config and in messages.
    pub fn name(self) -> &'static str {
        match self {
            SqlDriver::Oracle => "oracle",
            SqlDriver::Mysql => "mysql",
            SqlDriver::Postgres => "postgres",
        }
    }

    /// The port the database listens on unless told otherwise.
    pub fn default_port(self) -> u16 {
        match self {
            SqlDriver::Oracle => 1521,
            SqlDriver::Mysql => 3306,
            SqlDriver::Postgres => 5432,
        }
    }
}

/// A kind of statement a grant may allow. Kinds are exact: a statement
/// needs every kind its parts need (`INSERT ... ON CONFLICT DO UPDATE ...
/// RETURNING` needs `upsert` and `returning`), and no kind includes another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementKind {
    /// `INSERT` that only adds rows: plain, `ON CONFLICT DO NOTHING`, or
    /// MySQL `ON DUPLICATE KEY UPDATE k = k` (an identity that changes no
    /// row).
    Insert,
    /// MySQL `REPLACE INTO` (deletes the conflicting row, then inserts).
    Replace,
    /// An insert that changes existing rows on a key conflict:
    /// `ON CONFLICT ... DO UPDATE`, `ON DUPLICATE KEY UPDATE c = VALUES(c)`,
    /// and a `MERGE`'s `WHEN MATCHED THEN UPDATE`.
    Upsert,
    /// `RETURNING` on `INSERT`, `UPDATE` or `DELETE` (reads rows back),
    /// needed on top of the statement's own kind.
    Returning,
    /// `MERGE` (its `WHEN NOT MATCHED THEN INSERT`; an `UPDATE` branch
    /// needs `upsert` too, a `DELETE` branch `delete`).
    Merge,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `SELECT` (not `SELECT ... INTO`, not `FOR UPDATE`).
    Select,
}

impl StatementKind {
    /// The SQL keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            StatementKind::Insert => "INSERT",
            StatementKind::Replace => "REPLACE",
            StatementKind::Upsert => "UPSERT",
            StatementKind::Returning => "RETURNING",
            StatementKind::Merge => "MERGE",
            StatementKind::Update => "UPDATE",
            StatementKind::Delete => "DELETE",
            StatementKind::Select => "SELECT",
        }
    }

    /// The name in the config (`"upsert"`).
    pub fn name(self) -> &'static str {
        match self {
            StatementKind::Insert => "insert",
            StatementKind::Replace => "replace",
            StatementKind::Upsert => "upsert",
            StatementKind::Returning => "returning",
            StatementKind::Merge => "merge",
            StatementKind::Update => "update",
            StatementKind::Delete => "delete",
            StatementKind::Select => "select",
        }
    }
}

impl SqlGrant {
    /// Checks one grant; `location` is e.g. `plugin.grants.sql[0]`.
    pub(crate) fn validate(&self, location: &str) -> Result<(), Invalid> {
        let field = |name: &str| format!("{location}.{name}");
        if self.name.trim().is_empty() {
            return Err(Invalid::new(field("name"), "must not be empty"));
        }
        match (&self.url_env, &self.host) {
            (Some(_), Some(_)) => {
                return Err(Invalid::new(
                    field("url_env"),
                    "give either url_env or host/port/service/user/password_env, not both",
                ))
            }
            (None, None) => {
                return Err(Invalid::new(
                    field("url_env"),
                    "missing: name a variable holding the connection URL, or give host, service, user and password_env",
                ))
            }
            (None, Some(_)) => {
                for (name, value) in [("service", &self.service), ("user", &self.user)] {
                    if value.as_deref().is_none_or(|text| text.trim().is_empty()) {
                        return Err(Invalid::new(field(name), "is required when host is given"));
                    }
                }
            }
            (Some(_), None) => {
                for (name, value) in [
                    ("port", self.port.map(|_| ())),
                    ("service", self.service.as_ref().map(|_| ())),
                    ("user", self.user.as_ref().map(|_| ())),
                    ("password_env", self.password_env.as_ref().map(|_| ())),
                ] {
                    if value.is_some() {
                        return Err(Invalid::new(field(name), "cannot be combined with url_env (the URL holds it)"));
                    }
                }
            }
        }
        if self.tables.is_empty() {
            return Err(Invalid::new(
                field("tables"),
                "must name at least one table",
            ));
        }
        if let Some(index) = self.tables.iter().position(|table| table.trim().is_empty()) {
            return Err(Invalid::new(
                format!("{location}.tables[{index}]"),
                "must not be empty",
            ));
        }
        if self.statements.is_empty() {
            return Err(Invalid::new(
                field("statements"),
                "must list at least one of insert, replace, upsert, returning, merge, update, delete, select",
            ));
        }
        if !(1..=MAX_POOL_SIZE).contains(&self.pool_size) {
            return Err(Invalid::new(
                field("pool_size"),
                format!("must be between 1 and {MAX_POOL_SIZE}"),
            ));
        }
        if let Some(tls) = &self.tls {
            if tls.ca_file.is_some()
                && matches!(tls.mode, SqlTlsMode::Disable | SqlTlsMode::Require)
            {
                return Err(Invalid::new(
                    field("tls.ca_file"),
                    format!(
                        "is only used with mode verify-ca or verify-full, not {}",
                        tls.mode.name()
                    ),
                ));
            }
        }
        for (name, value) in [
            ("statement_timeout_ms", self.statement_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
        ] {
            if value == 0 {
                return Err(Invalid::new(field(name), "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// Checks the list as a whole: each grant, and names unique.
pub(crate) fn validate_grants(grants: &[SqlGrant]) -> Result<(), Invalid> {
    let mut names = std::collections::HashSet::new();
    for (index, grant) in grants.iter().enumerate() {
        let location = format!("plugin.grants.sql[{index}]");
        grant.validate(&location)?;
        if !names.insert(grant.name.as_str()) {
            return Err(Invalid::new(
                format!("{location}.name"),
                format!("`{}` is granted twice", grant.name),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(json: serde_json::Value) -> Result<(), String> {
        let grant: SqlGrant = serde_json::from_value(json).map_err(|err| err.to_string())?;
        validate_grants(&[grant]).map_err(|err| format!("{}: {}", err.location, err.message))
    }

    #[test]
    fn a_url_grant_and_a_field_grant_are_accepted() {
        grant(
            serde_json::json!({"name": "events", "driver": "postgres", "url_env": "PG_URL",
            "tables": ["nats_events"], "statements": ["insert"]}),
        )
        .expect("url grant");
        grant(
            serde_json::json!({"name": "events", "driver": "oracle", "host": "db", "port": 1521,
            "service": "FREEPDB1", "user": "app", "password_env": "ORA_PASSWORD",
            "tables": ["NATS_EVENTS"], "statements": ["merge", "select"], "pool_size": 2}),
        )
        .expect("field grant");
    }

    #[test]
    fn mistakes_name_the_field() {
        let base = serde_json::json!({"name": "e", "driver": "mysql", "url_env": "U", "tables": ["t"], "statements": ["insert"]});
        let with = |key: &str, value: serde_json::Value| {
            let mut json = base.clone();
            json[key] = value;
            grant(json).expect_err("refused")
        };
        assert!(with("host", "db".into()).contains("url_env"));
        assert!(with("user", "u".into()).contains("user"));
        assert!(with("tables", serde_json::json!([])).contains("tables"));
        assert!(with("statements", serde_json::json!([])).contains("statements"));
        assert!(with("pool_size", 0.into()).contains("pool_size"));
        assert!(with("statement_timeout_ms", 0.into()).contains("statement_timeout_ms"));
        assert!(with("statements", serde_json::json!(["drop"])).contains("unknown variant"));
        assert!(with("driver", "sqlite".into()).contains("unknown variant"));
        assert!(with("password", "x".into()).contains("unknown field"));
        assert!(with("tls", serde_json::json!({"mode": "prefer"})).contains("unknown variant"));
        assert!(with(
            "tls",
            serde_json::json!({"mode": "require", "ca_file": "/ca.pem"})
        )
        .contains("tls.ca_file"));
        grant({
            let mut json = base.clone();
            json["tls"] = serde_json::json!({"mode": "verify-full", "ca_file": "/ca.pem"});
            json
        })
        .expect("a verified grant");
        let mut fields = base.clone();
        fields.as_object_mut().expect("object").remove("url_env");
        fields["host"] = "db".into();
        assert!(grant(fields)
            .expect_err("service missing")
            .contains("service"));
    }

    #[test]
    fn a_name_granted_twice_is_refused() {
        let one: SqlGrant =
            serde_json::from_value(serde_json::json!({"name": "e", "driver": "mysql",
            "url_env": "U", "tables": ["t"], "statements": ["insert"]}))
            .expect("grant");
        let error = validate_grants(&[one.clone(), one]).expect_err("twice");
        assert_eq!(error.location, "plugin.grants.sql[1].name");
    }
}
