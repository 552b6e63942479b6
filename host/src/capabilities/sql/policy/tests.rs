use super::*;

fn policy(driver: &str, tables: &[&str], statements: &[&str], allow_ddl: bool) -> StatementPolicy {
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
    let pg = policy(
        "postgres",
        &["nats_events"],
        &["insert", "select", "upsert"],
        false,
    );
    pg.check("INSERT INTO nats_events (stream_name, stream_sequence, payload) VALUES ($1, $2, $3) ON CONFLICT (stream_name, stream_sequence) DO NOTHING")
        .expect("pg insert");
    pg.check(
        "INSERT INTO NATS_EVENTS (a) VALUES ($1) ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.b",
    )
    .expect("unquoted names fold to lower case");
    pg.check("SELECT count(*) FROM nats_events WHERE stream_name = $1")
        .expect("pg select");

    let my = policy("mysql", &["nats_events"], &["insert", "upsert"], false);
    my.check("INSERT INTO nats_events (a, b) VALUES (?, ?) ON DUPLICATE KEY UPDATE b = VALUES(b)")
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
    assert!(refused(&pg, "INSERT INTO users (a) VALUES ($1)").contains("`users` is not granted"));
    assert!(refused(
        &pg,
        "SELECT * FROM nats_events WHERE a IN (SELECT a FROM secrets)"
    )
    .contains("secrets"));
    assert!(refused(&pg, "INSERT INTO nats_events SELECT * FROM pg_shadow").contains("pg_shadow"));
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
    assert!(refused(&pg, "DELETE FROM nats_events").contains("DELETE statements are not granted"));
    assert!(refused(&pg, "SELECT 1 FROM nats_events").contains("SELECT statements are not granted"));
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

// ----- the allow-list (issue 14) ------------------------------------------

/// The default columns of the first-party sinks (sdk/sql).
const COLUMNS: &[&str] = &[
    "stream_name",
    "stream_sequence",
    "subject",
    "message_id",
    "priority",
    "classification",
    "labels",
    "payload",
    "headers_json",
    "metadata_json",
    "custody_json",
    "jetstream_timestamp",
    "received_at",
    "stored_at",
];
const KEYS: &[&str] = &["stream_name", "stream_sequence"];

/// The statement sdk/sql/src/dialect.rs generates (same shape, copied:
/// the host does not depend on the SDK; tests/e2e/sql_sinks.rs checks the
/// SDK's own output).
fn first_party(driver: SqlDriver, update: bool, rows: usize) -> String {
    let width = COLUMNS.len();
    let placeholder = |n: usize| match driver {
        SqlDriver::Postgres => format!("${n}"),
        SqlDriver::Mysql => "?".to_string(),
        SqlDriver::Oracle => format!(":{n}"),
    };
    let groups = (0..rows)
        .map(|row| {
            let group: Vec<String> = (1..=width).map(|n| placeholder(row * width + n)).collect();
            format!("({})", group.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let others: Vec<&&str> = COLUMNS.iter().filter(|c| !KEYS.contains(c)).collect();
    let list = COLUMNS.join(", ");
    match driver {
        SqlDriver::Postgres => {
            let action = if update {
                format!(
                    "DO UPDATE SET {}",
                    others
                        .iter()
                        .map(|c| format!("{c} = EXCLUDED.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                "DO NOTHING".to_string()
            };
            format!("INSERT INTO nats_events ({list}) VALUES {groups} ON CONFLICT (stream_name, stream_sequence) {action}")
        }
        SqlDriver::Mysql => {
            let updates = if update {
                others
                    .iter()
                    .map(|c| format!("{c} = VALUES({c})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                "stream_name = stream_name".to_string()
            };
            format!("INSERT INTO nats_events ({list}) VALUES {groups} ON DUPLICATE KEY UPDATE {updates}")
        }
        SqlDriver::Oracle => {
            let selected: Vec<String> = COLUMNS
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{} AS {c}", placeholder(i + 1)))
                .collect();
            let values: Vec<String> = COLUMNS.iter().map(|c| format!("s.{c}")).collect();
            let mut merge = format!(
                "MERGE INTO nats_events t USING (SELECT {} FROM dual) s ON (t.stream_name = s.stream_name AND t.stream_sequence = s.stream_sequence) \
                 WHEN NOT MATCHED THEN INSERT ({list}) VALUES ({})",
                selected.join(", "),
                values.join(", ")
            );
            if update {
                let sets: Vec<String> = others.iter().map(|c| format!("t.{c} = s.{c}")).collect();
                merge.push_str(&format!(
                    " WHEN MATCHED THEN UPDATE SET {}",
                    sets.join(", ")
                ));
            }
            merge
        }
    }
}

#[test]
fn every_first_party_statement_passes_with_the_kinds_it_needs() {
    for (driver, name, kind) in [
        (SqlDriver::Postgres, "postgres", "insert"),
        (SqlDriver::Mysql, "mysql", "insert"),
        (SqlDriver::Oracle, "oracle", "merge"),
    ] {
        let table = if driver == SqlDriver::Oracle {
            "NATS_EVENTS"
        } else {
            "nats_events"
        };
        let skip_only = policy(name, &[table], &[kind], false);
        let with_upsert = policy(name, &[table], &[kind, "upsert"], false);
        for rows in [1, 2, 500] {
            let skip = first_party(driver, false, rows);
            let checked = skip_only
                .check(&skip)
                .unwrap_or_else(|r| panic!("{name} skip {rows}: {r}\n{skip}"));
            assert_ne!(checked.kind, Some(StatementKind::Upsert), "{name}");
            let update = first_party(driver, true, rows);
            let refusal = refused(&skip_only, &update);
            assert!(
                refusal.contains("add \"upsert\""),
                "{name}: an update needs the upsert kind: {refusal}"
            );
            with_upsert
                .check(&update)
                .unwrap_or_else(|r| panic!("{name} update {rows}: {r}\n{update}"));
        }
    }
}

#[test]
fn the_shipped_table_scripts_pass_with_allow_ddl() {
    for (name, file, table) in [
        (
            "postgres",
            include_str!("../../../../../sdk/sql/sql/postgres.sql.in"),
            "nats_events",
        ),
        (
            "mysql",
            include_str!("../../../../../sdk/sql/sql/mysql.sql.in"),
            "nats_events",
        ),
        (
            "oracle",
            include_str!("../../../../../sdk/sql/sql/oracle.sql.in"),
            "NATS_EVENTS",
        ),
    ] {
        let ddl = policy(name, &[table], &["insert"], true);
        let script = file.replace("{table}", "nats_events");
        ddl.check(&script)
            .unwrap_or_else(|r| panic!("{name}: {r}\n{script}"));
        let other = file.replace("{table}", "other");
        assert!(refused(&ddl, &other).contains("other"), "{name}");
    }
}

fn pg() -> StatementPolicy {
    policy(
        "postgres",
        &["nats_events"],
        &["insert", "select", "update", "delete"],
        false,
    )
}

fn my() -> StatementPolicy {
    policy(
        "mysql",
        &["nats_events"],
        &["insert", "select", "update", "delete"],
        false,
    )
}

fn ora() -> StatementPolicy {
    policy(
        "oracle",
        &["NATS_EVENTS"],
        &["insert", "merge", "select", "update"],
        false,
    )
}

#[track_caller]
fn refused_containing(policy: &StatementPolicy, sql: &str, needle: &str) {
    let refusal = refused(policy, sql);
    assert!(
        refusal.to_lowercase().contains(&needle.to_lowercase()),
        "`{sql}` was refused, but the message does not name `{needle}`: {refusal}"
    );
}

#[test]
fn table_functions_are_refused_as_table_sources() {
    let pg = pg();
    for sql in [
        "SELECT 1 FROM nats_events, LATERAL pg_sleep(10) AS x",
        "SELECT 1 FROM nats_events, pg_sleep(10)",
        "SELECT 1 FROM pg_sleep(10)",
        "SELECT * FROM query_to_xml('SELECT * FROM secrets', true, true, '')",
        "SELECT * FROM set_config('statement_timeout', '0', false)",
        "SELECT * FROM dblink('host=evil', 'SELECT 1') AS t(a int)",
        "SELECT * FROM pg_read_file('/etc/passwd')",
        "SELECT * FROM ROWS FROM (pg_sleep(1), generate_series(1, 10))",
        "SELECT * FROM unnest(ARRAY[1, 2])",
        "SELECT * FROM generate_series(1, 100000000)",
        "INSERT INTO nats_events (subject) SELECT x FROM pg_ls_dir('/') AS x",
        "SELECT 1 FROM nats_events, LATERAL (SELECT pg_sleep(1)) AS x",
    ] {
        let refusal = refused(&pg, sql);
        assert!(
            refusal.contains("table function")
                || refusal.contains("not allowed")
                || refusal.contains("does not parse"),
            "{sql}: {refusal}"
        );
    }
}

#[test]
fn the_table_query_body_is_refused() {
    let pg = pg();
    refused_containing(
        &pg,
        "INSERT INTO nats_events (a, b) TABLE public.secrets",
        "TABLE name",
    );
    // Not a statement sqlparser parses; refused either way.
    refused(&pg, "TABLE secrets");
    refused(&pg, "TABLE nats_events");
    refused_containing(
        &pg,
        "SELECT * FROM nats_events UNION TABLE secrets",
        "TABLE name",
    );
}

#[test]
fn comments_and_hints_are_refused_in_every_form() {
    let my = my();
    for sql in [
        "INSERT INTO nats_events (a) VALUES (1) /*!99999 , (2) */",
        "INSERT INTO nats_events (a) VALUES (1) /*!50000 ON DUPLICATE KEY UPDATE a = 2 */",
        "INSERT INTO nats_events (a) VALUES (1) /*M! , (2) */",
        "INSERT INTO nats_events (a) VALUES (1) /*M!100000 , (2) */",
        "INSERT /*+ SET_VAR(foreign_key_checks=OFF) */ INTO nats_events (a) VALUES (1)",
        "SELECT /*+ MAX_EXECUTION_TIME(0) */ a FROM nats_events",
        "SELECT a FROM nats_events -- trailing",
        "SELECT a FROM nats_events # mysql comment",
        "SELECT a FROM nats_events #",
        "SELECT a FROM nats_events /* a */",
        "SELECT a FROM nats_events /* nested /* inner */ */",
        "SELECT a--1 FROM nats_events",
        "SELECT '--' FROM nats_events",
        "SELECT '/*' FROM nats_events",
    ] {
        let refusal = refused(&my, sql);
        assert!(refusal.contains("comment"), "{sql}: {refusal}");
    }
    let pg = pg();
    for sql in [
        "SELECT a FROM nats_events -- x",
        "SELECT a FROM nats_events /* x */",
        "SELECT a FROM nats_events /* /* nested */ */",
        "/*+ SeqScan(nats_events) */ SELECT a FROM nats_events",
    ] {
        refused_containing(&pg, sql, "comment");
    }
    let ora = ora();
    refused_containing(
        &ora,
        "SELECT /*+ FULL(t) */ a FROM nats_events t",
        "comment",
    );
    refused_containing(&ora, "SELECT a FROM nats_events -- x", "comment");
}

#[test]
fn lexer_traps_are_refused() {
    let pg = pg();
    for (sql, needle) in [
        ("SELECT $$x$$ FROM nats_events", "$"),
        ("SELECT $tag$x$tag$ FROM nats_events", "$"),
        ("SELECT E'\\x41' FROM nats_events", "backslash"),
        ("SELECT e'a' FROM nats_events", "literal"),
        ("SELECT U&'\\0041' FROM nats_events", "U&"),
        ("SELECT U&'d0061' FROM nats_events", "U&"),
        ("SELECT U&\"d0061\" FROM nats_events", "U&"),
        ("SELECT 'caf\u{e9}' FROM nats_events", "non-ASCII"),
        ("SELECT 'a\u{0}' FROM nats_events", "control"),
        ("SELECT X'41' FROM nats_events", "literal"),
        ("SELECT B'01' FROM nats_events", ""),
    ] {
        refused_containing(&pg, sql, needle);
    }
    let my = my();
    for (sql, needle) in [
        (
            "SELECT 'a\\' , load_file('/etc/passwd') , '' FROM nats_events",
            "backslash",
        ),
        ("SELECT \"a\" FROM nats_events", "double quote"),
        ("SELECT @@version", "@"),
        ("SELECT @x := 1", "@"),
        ("SET @a = 1", "@"),
        ("SELECT N'a' FROM nats_events", "literal"),
        ("SELECT _utf8'a' FROM nats_events", ""),
        ("SELECT {fn now()} FROM nats_events", ""),
    ] {
        refused_containing(&my, sql, needle);
    }
    let ora = ora();
    refused_containing(&ora, "SELECT q'[a]' FROM nats_events", "q'");
    refused_containing(&ora, "SELECT nq'[a]' FROM nats_events", "q'");
    refused_containing(&ora, "SELECT N'a' FROM nats_events", "literal");
}

#[test]
fn ddl_names_only_granted_tables() {
    let ddl = policy("postgres", &["nats_events"], &["insert"], true);
    ddl.check("CREATE TABLE nats_events (a int NOT NULL DEFAULT 0, b text, PRIMARY KEY (a))")
        .expect("create granted");
    ddl.check("DROP TABLE nats_events").expect("drop granted");
    ddl.check("DROP TABLE IF EXISTS nats_events")
        .expect("drop if exists");
    ddl.check("TRUNCATE nats_events").expect("truncate granted");
    ddl.check("ALTER TABLE nats_events ADD COLUMN c text")
        .expect("add column");
    ddl.check("ALTER TABLE nats_events DROP COLUMN c")
        .expect("drop column");
    ddl.check("CREATE INDEX nats_events_subject ON nats_events (subject)")
        .expect("index");
    for (sql, needle) in [
        ("DROP TABLE other", "other"),
        ("DROP TABLE nats_events, other", "other"),
        ("DROP TABLE nats_events CASCADE", "CASCADE"),
        ("DROP SCHEMA app CASCADE", "SCHEMA"),
        ("DROP SCHEMA public", "SCHEMA"),
        ("DROP ROLE admin", "ROLE"),
        ("DROP DATABASE app", "DATABASE"),
        ("DROP VIEW nats_events", "VIEW"),
        ("DROP INDEX nats_events", "INDEX"),
        ("DROP SEQUENCE nats_events", "SEQUENCE"),
        ("DROP FUNCTION f", "never granted"),
        ("DROP EXTENSION dblink", ""),
        ("ALTER TABLE nats_events RENAME TO x", "not allowed"),
        ("ALTER TABLE other ADD COLUMN c text", "other"),
        (
            "ALTER TABLE nats_events ADD COLUMN c text DEFAULT pg_sleep(1)",
            "pg_sleep",
        ),
        ("ALTER TABLE nats_events OWNER TO admin", "not allowed"),
        ("ALTER TABLE nats_events DROP COLUMN c CASCADE", "CASCADE"),
        ("CREATE INDEX ON other (a)", "other"),
        (
            "CREATE INDEX i ON nats_events ((pg_sleep(1)::text))",
            "plain column",
        ),
        (
            "CREATE INDEX i ON nats_events (a) WHERE pg_sleep(1) IS NULL",
            "only",
        ),
        ("TRUNCATE other", "other"),
        ("TRUNCATE nats_events, other", "other"),
        ("TRUNCATE nats_events CASCADE", "CASCADE"),
        (
            "CREATE TABLE nats_events AS SELECT * FROM secrets",
            "AS SELECT",
        ),
        ("CREATE TABLE other (a int)", "other"),
        (
            "CREATE TABLE nats_events (a int REFERENCES secrets (id))",
            "not allowed",
        ),
        (
            "CREATE TABLE nats_events (a int, FOREIGN KEY (a) REFERENCES secrets (id))",
            "not allowed",
        ),
        (
            "CREATE TABLE nats_events (a int CHECK (pg_sleep(1) IS NULL))",
            "pg_sleep",
        ),
        (
            "CREATE TABLE nats_events (a int DEFAULT nextval('s'))",
            "nextval",
        ),
        ("CREATE TABLE nats_events (LIKE secrets)", ""),
        (
            "CREATE TABLE nats_events (a int) INHERITS (secrets)",
            "not allowed",
        ),
        (
            "CREATE TABLE nats_events PARTITION OF secrets FOR VALUES IN (1)",
            "",
        ),
        ("CREATE TEMPORARY TABLE nats_events (a int)", "not allowed"),
        (
            "CREATE OR REPLACE VIEW nats_events AS SELECT * FROM secrets",
            "VIEW",
        ),
        ("CREATE SCHEMA evil", "SCHEMA"),
        ("CREATE ROLE evil", "ROLE"),
        ("CREATE EXTENSION dblink", "EXTENSION"),
        (
            "CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql",
            "FUNCTION",
        ),
        ("CREATE SEQUENCE nats_events", "SEQUENCE"),
        ("COMMENT ON TABLE nats_events IS 'x'", "COMMENT"),
        ("GRANT ALL ON secrets TO PUBLIC", "GRANT"),
    ] {
        let refusal = refused(&ddl, sql);
        assert!(
            refusal.to_lowercase().contains(&needle.to_lowercase()),
            "{sql}: {refusal}"
        );
    }
}

#[test]
fn qualified_names_must_be_qualified_by_the_statement() {
    let ora = ora();
    ora.check("SELECT t.stream_name FROM nats_events t")
        .expect("alias");
    ora.check("SELECT nats_events.stream_name FROM nats_events")
        .expect("table name");
    for sql in [
        "SELECT dbms_random.value FROM dual",
        "INSERT INTO nats_events (a) VALUES (seq.NEXTVAL)",
        "INSERT INTO nats_events (a) VALUES (seq.nextval)",
        "SELECT pkg.fn FROM nats_events",
        "SELECT app.pkg.fn FROM nats_events",
        "SELECT dbms_lock.sleep FROM dual",
        "UPDATE nats_events SET a = other.b",
        "SELECT s.a FROM nats_events t",
    ] {
        refused_containing(&ora, sql, "not a table, alias or CTE");
    }
    for sql in [
        "SELECT SYS_CONTEXT('USERENV', 'SESSION_USER') FROM dual",
        "SELECT dbms_lock.sleep(10) FROM dual",
        "SELECT utl_http.request('http://x') FROM dual",
        "SELECT \"LOWER\"('A') FROM dual",
        "SELECT sys.dbms_x.y(1) FROM dual",
    ] {
        refused_containing(&ora, sql, "function");
    }
    for sql in [
        "SELECT USER FROM dual",
        "SELECT ROWID FROM nats_events",
        "SELECT ROWNUM FROM nats_events",
        "SELECT ORA_ROWSCN FROM nats_events",
        "SELECT t.ROWID FROM nats_events t",
    ] {
        refused_containing(&ora, sql, "pseudo-column");
    }
    let pg = pg();
    for sql in [
        "SELECT ctid FROM nats_events",
        "SELECT xmin, xmax FROM nats_events",
        "SELECT nats_events.tableoid FROM nats_events",
        "UPDATE nats_events SET subject = 'x' WHERE ctid = '(0,1)'",
    ] {
        refused_containing(&pg, sql, "system column");
    }
    refused_containing(&pg, "SELECT pg_catalog.lower('A')", "function");
    refused_containing(&pg, "SELECT \"lower\"('A')", "unquoted");
    refused_containing(&pg, "SELECT \"pg_sleep\"(1)", "function");
    refused_containing(&pg, "SELECT PG_SLEEP(1)", "function");
    refused_containing(&pg, "SELECT * FROM pg_catalog.pg_shadow", "not granted");
    refused_containing(
        &pg,
        "SELECT * FROM information_schema.tables",
        "not granted",
    );
    refused_containing(&pg, "SELECT * FROM pg_stat_activity", "not granted");
    refused_containing(&pg, "SELECT current_user", "function");
    refused_containing(&pg, "SELECT session_user", "");
    refused_containing(&pg, "SELECT nextval('s')", "nextval");
    refused_containing(&pg, "SELECT currval('s')", "currval");
    refused_containing(
        &pg,
        "SELECT a FROM nats_events WHERE evil.x = 1",
        "not a table",
    );
}

#[test]
fn an_insert_grant_allows_no_replace_upsert_or_returning() {
    let my = policy("mysql", &["nats_events"], &["insert"], false);
    refused_containing(
        &my,
        "REPLACE INTO nats_events (a, b) VALUES (?, ?)",
        "add \"replace\"",
    );
    refused_containing(
        &my,
        "INSERT INTO nats_events (a, b) VALUES (?, ?) ON DUPLICATE KEY UPDATE b = VALUES(b)",
        "add \"upsert\"",
    );
    refused_containing(
        &my,
        "INSERT INTO nats_events (a, b) VALUES (?, ?) ON DUPLICATE KEY UPDATE b = 'x'",
        "add \"upsert\"",
    );
    refused_containing(
        &my,
        "INSERT INTO nats_events (a, b) VALUES (?, ?) ON DUPLICATE KEY UPDATE a = b",
        "add \"upsert\"",
    );
    my.check("INSERT INTO nats_events (a, b) VALUES (?, ?) ON DUPLICATE KEY UPDATE a = a")
        .expect("identity skip is an insert");
    my.check("INSERT IGNORE INTO nats_events (a, b) VALUES (?, ?)")
        .expect("insert ignore adds rows only");
    let replace = policy("mysql", &["nats_events"], &["replace"], false);
    assert_eq!(
        replace
            .check("REPLACE INTO nats_events (a, b) VALUES (?, ?)")
            .expect("granted")
            .kind,
        Some(StatementKind::Replace)
    );
    refused_containing(
        &replace,
        "INSERT INTO nats_events (a) VALUES (?)",
        "add \"insert\"",
    );

    let pg = policy("postgres", &["nats_events"], &["insert"], false);
    for sql in [
        "INSERT INTO nats_events (a) VALUES ($1) ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.b",
        "INSERT INTO nats_events (a) VALUES ($1) ON CONFLICT (a) DO UPDATE SET b = 1 WHERE nats_events.a = 1",
        "INSERT INTO nats_events (a) VALUES ($1) ON CONFLICT ON CONSTRAINT k DO UPDATE SET b = 1",
    ] {
        refused_containing(&pg, sql, "add \"upsert\"");
    }
    for sql in [
        "INSERT INTO nats_events (a) VALUES ($1) RETURNING *",
        "INSERT INTO nats_events (a) VALUES ($1) RETURNING a",
        "INSERT INTO nats_events (a) VALUES ($1) ON CONFLICT DO NOTHING RETURNING a",
    ] {
        refused_containing(&pg, sql, "add \"returning\"");
    }
    let all = policy(
        "postgres",
        &["nats_events"],
        &["insert", "upsert", "returning", "update", "delete"],
        false,
    );
    all.check("INSERT INTO nats_events (a) VALUES ($1) ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.b RETURNING a")
        .expect("granted");
    all.check("UPDATE nats_events SET a = 1 RETURNING a")
        .expect("granted");
    all.check("DELETE FROM nats_events WHERE a = 1 RETURNING a")
        .expect("granted");
    let no_returning = policy("postgres", &["nats_events"], &["update", "delete"], false);
    refused_containing(
        &no_returning,
        "UPDATE nats_events SET a = 1 RETURNING a",
        "returning",
    );
    refused_containing(
        &no_returning,
        "DELETE FROM nats_events RETURNING *",
        "returning",
    );
    // Upsert inside a data-modifying CTE.
    refused_containing(
        &pg,
        "WITH x AS (INSERT INTO nats_events (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 2 RETURNING a) SELECT 1",
        "not granted",
    );

    let merge = policy("oracle", &["NATS_EVENTS"], &["merge"], false);
    refused_containing(
        &merge,
        "MERGE INTO nats_events t USING (SELECT :1 AS a FROM dual) s ON (t.a = s.a) WHEN MATCHED THEN DELETE",
        "add \"delete\"",
    );
    refused_containing(
        &merge,
        "MERGE INTO nats_events t USING (SELECT :1 AS a FROM dual) s ON (t.a = s.a) WHEN MATCHED THEN UPDATE SET t.b = s.b",
        "add \"upsert\"",
    );
    refused_containing(
        &merge,
        "MERGE INTO nats_events t USING secrets s ON (t.a = s.a) WHEN NOT MATCHED THEN INSERT (a) VALUES (s.a)",
        "secrets",
    );
}

#[test]
fn subqueries_everywhere_are_walked() {
    let pg = pg();
    for sql in [
        "INSERT INTO nats_events (a) VALUES ((SELECT v FROM secrets))",
        "INSERT INTO nats_events (a) VALUES (1) ON CONFLICT (a) DO NOTHING",
        "SELECT a FROM nats_events ORDER BY (SELECT v FROM secrets)",
        "SELECT a FROM nats_events LIMIT (SELECT count(*) FROM secrets)",
        "SELECT a FROM nats_events OFFSET (SELECT count(*) FROM secrets)",
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM secrets) THEN 1 ELSE 0 END",
        "SELECT coalesce((SELECT v FROM secrets), 'x')",
        "SELECT a FROM nats_events GROUP BY a HAVING count(*) > (SELECT count(*) FROM secrets)",
        "SELECT a FROM nats_events WHERE a = ANY (SELECT v FROM secrets)",
        "SELECT a FROM nats_events JOIN secrets ON true",
        "SELECT a FROM nats_events WHERE a IN (SELECT v FROM (SELECT v FROM secrets) AS x)",
        "SELECT (SELECT v FROM secrets)::text",
        "UPDATE nats_events SET a = (SELECT v FROM secrets)",
        "DELETE FROM nats_events USING secrets WHERE true",
        "SELECT a FROM nats_events UNION SELECT v FROM secrets",
        "WITH x AS (SELECT v FROM secrets) SELECT * FROM x",
        "SELECT DISTINCT ON ((SELECT v FROM secrets)) a FROM nats_events",
    ] {
        if sql.ends_with("DO NOTHING") {
            continue;
        }
        refused_containing(&pg, sql, "secrets");
    }
    let upsert = policy("postgres", &["nats_events"], &["insert", "upsert"], false);
    refused_containing(
        &upsert,
        "INSERT INTO nats_events (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 1 WHERE EXISTS (SELECT 1 FROM secrets)",
        "secrets",
    );
    let my = my();
    refused_containing(
        &my,
        "INSERT INTO nats_events (a) VALUES (1) ON DUPLICATE KEY UPDATE a = (SELECT v FROM secrets)",
        "secrets",
    );
}

#[test]
fn other_constructs_are_refused() {
    let pg = pg();
    for (sql, needle) in [
        ("SELECT 'secrets'::regclass", "regclass"),
        ("SELECT 'pg_sleep'::regproc", "regproc"),
        ("SELECT regclass 'secrets'", ""),
        ("SELECT 1::oid", "oid"),
        ("SELECT count(*) OVER () FROM nats_events", "window"),
        ("SELECT a FROM nats_events FOR UPDATE", "locks"),
        ("SELECT a FROM nats_events FOR SHARE", "locks"),
        ("SELECT a FROM nats_events FOR UPDATE SKIP LOCKED", "locks"),
        ("SELECT * INTO copy_of FROM nats_events", "INTO"),
        ("DO 'BEGIN PERFORM pg_sleep(10); END'", ""),
        ("SET statement_timeout = 0", "SET"),
        ("RESET ALL", ""),
        ("PREPARE p AS SELECT 1", "PREPARE"),
        ("EXECUTE p", "EXECUTE"),
        ("DEALLOCATE p", ""),
        ("EXPLAIN ANALYZE SELECT pg_sleep(10)", ""),
        ("LISTEN x", ""),
        ("NOTIFY x", ""),
        ("VACUUM nats_events", ""),
        ("LOCK TABLE nats_events", "LOCK"),
        ("CALL p()", "CALL"),
        ("COPY nats_events TO PROGRAM 'id'", "COPY"),
        (
            "WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT 1 FROM r) SELECT * FROM r",
            "RECURSIVE",
        ),
        ("SELECT a FROM nats_events WHERE a ~ '(a+)+$'", ""),
        (
            "SELECT a FROM nats_events WHERE a SIMILAR TO 'x'",
            "not reviewed",
        ),
        ("SELECT a OPERATOR(pg_catalog.+) 1 FROM nats_events", ""),
        ("SELECT 1 # 2", "not allowed"),
        ("SELECT ARRAY[1]", "not reviewed"),
        ("SELECT ROW(1, 2)", ""),
        ("SELECT a FROM nats_events TABLESAMPLE SYSTEM (10)", ""),
        ("SELECT a FROM ONLY nats_events", ""),
        ("SELECT lpad('x', 500000000, 'x')", "lpad"),
        ("SELECT repeat('x', 500000000)", "repeat"),
        (
            "SELECT count(*) FILTER (WHERE pg_sleep(1) IS NULL) FROM nats_events",
            "",
        ),
        ("SELECT max(a ORDER BY a) FROM nats_events", ""),
        ("SELECT lower(a => 'x')", ""),
        ("SELECT a FROM nats_events, secrets", "secrets"),
        ("SELECT $1::regclass", "regclass"),
    ] {
        let refusal = refused(&pg, sql);
        assert!(
            refusal.to_lowercase().contains(&needle.to_lowercase()),
            "{sql}: {refusal}"
        );
    }
    let my = my();
    for sql in [
        "SELECT a FROM nats_events INTO OUTFILE '/tmp/x'",
        "SELECT a FROM nats_events INTO DUMPFILE '/tmp/x'",
        "SELECT a INTO OUTFILE '/tmp/x' FROM nats_events",
        "LOAD DATA INFILE '/etc/passwd' INTO TABLE nats_events",
        "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE nats_events",
        "HANDLER nats_events OPEN",
        "SELECT a FROM nats_events LOCK IN SHARE MODE",
        "SELECT a FROM nats_events FOR UPDATE",
        "SELECT SLEEP(10)",
        "SELECT BENCHMARK(100000000, md5('x'))",
        "SELECT LOAD_FILE('/etc/passwd')",
        "SELECT GET_LOCK('x', 10)",
        "SELECT a FROM nats_events WHERE a REGEXP '(a+)+$'",
        "SELECT SQL_CALC_FOUND_ROWS a FROM nats_events",
        "SELECT a FROM nats_events FORCE INDEX (PRIMARY)",
        "INSERT DELAYED INTO nats_events (a) VALUES (1)",
        "INSERT INTO nats_events SET a = SLEEP(1)",
        "SHOW GRANTS",
        "KILL 1",
        "USE mysql",
        "SELECT a FROM nats_events PROCEDURE ANALYSE()",
        "SELECT CONVERT(a USING latin1) FROM nats_events",
        "INSERT INTO nats_events (a) VALUES (1) AS new ON DUPLICATE KEY UPDATE a = new.a",
    ] {
        let refusal = refused(&my, sql);
        assert!(!refusal.is_empty(), "{sql}");
    }
}

#[test]
fn nesting_and_size_are_bounded() {
    let pg = pg();
    let deep = format!(
        "SELECT {}1{} FROM nats_events",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    refused(&pg, &deep);
    let chain = format!(
        "SELECT a FROM nats_events WHERE {}",
        vec!["a = 1"; 5_000].join(" OR ")
    );
    refused(&pg, &chain);
    let subqueries = format!(
        "SELECT a FROM nats_events WHERE a IN {}1{}",
        "(SELECT a FROM nats_events WHERE a IN ".repeat(200),
        ")".repeat(200)
    );
    refused(&pg, &subqueries);
    let huge = format!("SELECT '{}'", "x".repeat(MAX_STATEMENT_BYTES));
    refused_containing(&pg, &huge, "bytes");
    let rows = vec!["(1)"; MAX_VALUES_ROWS + 1].join(", ");
    refused_containing(
        &pg,
        &format!("INSERT INTO nats_events (a) VALUES {rows}"),
        "rows",
    );
    let fine = format!(
        "SELECT a FROM nats_events WHERE {}",
        vec!["a = 1"; 20].join(" OR ")
    );
    pg.check(&fine).expect("a short chain is fine");
}

#[test]
fn harmless_statements_still_pass() {
    let pg = pg();
    for sql in [
        "SELECT count(*) FROM nats_events WHERE stream_name = $1",
        "SELECT COALESCE(max(stream_sequence), 0) FROM nats_events",
        "SELECT e.subject FROM nats_events e WHERE e.stream_sequence BETWEEN $1 AND $2 ORDER BY e.stream_sequence DESC LIMIT 10",
        "SELECT a FROM nats_events WHERE a IN (SELECT a FROM nats_events WHERE b IS NOT NULL)",
        "WITH x AS (SELECT a FROM nats_events) SELECT x.a FROM x",
        "SELECT CASE WHEN a > 1 THEN 'big' ELSE 'small' END FROM nats_events",
        "SELECT payload->>'id' FROM nats_events",
        "SELECT CAST($1 AS bigint)",
        "SELECT $1::text, $2::jsonb, $3::timestamptz",
        "UPDATE nats_events SET subject = $1 WHERE stream_name = $2",
        "DELETE FROM nats_events WHERE stream_sequence < $1",
        "SELECT a FROM nats_events WHERE a = ANY($1)",
        "SELECT a FROM nats_events WHERE subject LIKE 'a%'",
        "SELECT now()",
        "SELECT CURRENT_TIMESTAMP",
        "SELECT a FROM nats_events n JOIN nats_events m ON n.a = m.a",
        "SELECT * FROM nats_events",
        "SELECT n.* FROM nats_events n",
        "INSERT INTO nats_events (a) SELECT a FROM nats_events WHERE false",
    ] {
        pg.check(sql).unwrap_or_else(|r| panic!("{sql}: {r}"));
    }
    let my = my();
    for sql in [
        "SELECT count(*) FROM nats_events WHERE stream_name = ?",
        "SELECT `a` FROM `nats_events`",
        "INSERT INTO nats_events (a, b) VALUES (?, ?), (?, ?)",
        "SELECT a FROM nats_events LIMIT 10",
    ] {
        my.check(sql).unwrap_or_else(|r| panic!("{sql}: {r}"));
    }
    let ora = ora();
    for sql in [
        "SELECT count(*) FROM nats_events WHERE stream_name = :1",
        "SELECT SYSTIMESTAMP FROM dual",
        "INSERT INTO nats_events (a) VALUES (:1)",
    ] {
        ora.check(sql).unwrap_or_else(|r| panic!("{sql}: {r}"));
    }
}
