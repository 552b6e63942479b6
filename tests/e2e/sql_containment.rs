//! The hostile SQL suite (issue 14, section 1): a hostile plugin
//! (tests/plugins/sql-probe) tries every known escape from the `sql`
//! grant's allow-list against a real PostgreSQL and a real MariaDB, under
//! the real `sinkhost` binary, with every probe *committed* so that an
//! escape the host failed to refuse would leave its effect behind. Each
//! test asserts the effect did not happen (the sleep never ran on the
//! server, the secret never reached the plugin, the other table still
//! exists, the row did not change, the executable comment did not run),
//! then that the host kept delivering (a later healthy probe is stored and
//! every message is ACKed).

use std::time::Duration;

use serde_json::{json, Value};
use sinkhost_e2e::databases::{MariaDb, Postgres};
use sinkhost_e2e::*;

const STREAM: &str = "EVENTS";
const URL_VARIABLE: &str = "EVENTS_DB_URL";
/// Planted in a table the grant does not name; must never reach the plugin.
const SECRET: &str = "s3cr3t-value-7f3a";
/// How long a sleep probe asks the server to sleep; the probe must come
/// back well before (the refusal happens before anything is sent).
const SLEEP_SECONDS: u64 = 6;

/// The shipped `CREATE TABLE` script of a dialect for table `nats_events`.
fn create_table_sql(dialect: &str) -> String {
    let path = repo_root().join(format!("sdk/sql/sql/{dialect}.sql.in"));
    std::fs::read_to_string(path)
        .expect("table script")
        .replace("{table}", "nats_events")
}

/// A probe that runs `statement` and commits when it succeeds.
fn probe(statement: &str) -> Value {
    json!({"connection": "events", "statement": statement, "commit": true, "timed": true})
}

/// Like [`probe`], through `query` (the rows come back to the plugin).
fn query_probe(statement: &str) -> Value {
    json!({"connection": "events", "statement": statement, "show_rows": true, "commit": true, "timed": true})
}

/// The outcome lines of one host run, by stream sequence (1-based).
struct Outcomes {
    log: String,
}

impl Outcomes {
    fn of(&self, sequence: usize) -> String {
        let marker = format!("probe {sequence}: ");
        let line = self
            .log
            .lines()
            .find(|line| line.contains(&marker))
            .unwrap_or_else(|| panic!("no probe {sequence}:\n{}", self.log));
        line[line.find(&marker).expect("marker") + marker.len()..].to_string()
    }

    /// Asserts probe `sequence` was refused by the host (nothing was sent).
    #[track_caller]
    fn refused(&self, sequence: usize, needle: &str) -> String {
        let outcome = self.of(sequence);
        assert!(
            outcome.starts_with("refused:")
                && outcome.to_lowercase().contains(&needle.to_lowercase()),
            "probe {sequence} should be refused naming `{needle}`: {outcome}"
        );
        outcome
    }

    /// How long probe `sequence` took, from its `[took <n> ms]` suffix.
    fn took(&self, sequence: usize) -> Duration {
        let outcome = self.of(sequence);
        let millis = outcome
            .split("[took ")
            .nth(1)
            .and_then(|rest| rest.split(" ms]").next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no duration in {outcome}"));
        Duration::from_millis(millis)
    }
}

/// Publishes `probes`, runs the host with the sql-probe plugin and `grant`
/// until every message is ACKed, and returns the outcomes.
async fn run_probes(url: &str, grant: Value, probes: &[Value]) -> Outcomes {
    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["events.>"])
        .await
        .expect("stream");
    for probe in probes {
        js.publish_with_headers("events.probe", &[], probe.to_string().as_bytes())
            .await
            .expect("publish");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let mut config = base_config(
        &server,
        STREAM,
        "events.>",
        &test_plugin("sql-probe"),
        &out,
        json!({}),
    );
    set(&mut config, "plugin.grants.files", json!([]));
    set(&mut config, "plugin.grants.sql", json!([grant]));
    let path = write_config(dir.path(), &config);
    let mut host =
        Host::start_with_env(&path, &dir.path().join("host.log"), &[(URL_VARIABLE, url)])
            .expect("start");
    let drained = wait_until(Duration::from_secs(90), || async {
        matches!(js.consumer_backlog(STREAM, "sinkhost").await, Ok((0, 0)))
    })
    .await;
    assert!(
        drained,
        "the host kept delivering and ACKed every probe:\n{}",
        host.log()
    );
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );
    Outcomes { log: host.log() }
}

fn grant(driver: &str, tables: &[&str], statements: &[&str], allow_ddl: bool) -> Value {
    json!({"name": "events", "driver": driver, "url_env": URL_VARIABLE,
           "tables": tables, "statements": statements, "allow_ddl": allow_ddl,
           "statement_timeout_ms": 20000, "connect_timeout_ms": 5000})
}

fn cell(rows: Vec<Vec<String>>) -> String {
    rows.first()
        .and_then(|row| row.first())
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_statements_have_no_effect_on_a_real_postgres() {
    let db = Postgres::start().expect("postgres");
    db.execute(&create_table_sql("postgres")).expect("table");
    db.execute(
        "INSERT INTO nats_events (stream_name, stream_sequence, subject, headers_json, metadata_json, \
         jetstream_timestamp, received_at, stored_at) VALUES ('S', 1, 'row', '{}', '{}', now(), now(), now())",
    )
    .expect("one row, so a per-row sleep would run");
    db.execute("CREATE TABLE inbox (v text UNIQUE)")
        .expect("inbox");
    db.execute("INSERT INTO inbox VALUES ('original')")
        .expect("inbox row");
    db.execute(&format!(
        "CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('{SECRET}')"
    ))
    .expect("secrets");
    db.execute("CREATE TABLE other (v int); INSERT INTO other VALUES (1)")
        .expect("other");
    db.execute("CREATE SCHEMA app; CREATE TABLE app.kept (v int)")
        .expect("schema");
    // Every statement that reaches the server is logged: what the host
    // refused must be absent from this log.
    db.execute_as_admin("ALTER SYSTEM SET log_statement = 'all'")
        .expect("log_statement");
    db.execute_as_admin("SELECT pg_reload_conf()")
        .expect("reload");

    let sleep = format!("pg_sleep({SLEEP_SECONDS})");
    let probes = [
        // 1..=4: functions as table sources.
        query_probe(&format!("SELECT 1 FROM nats_events, LATERAL {sleep} AS x")),
        query_probe(&format!("SELECT 1 FROM {sleep}")),
        query_probe("SELECT * FROM query_to_xml('SELECT v FROM secrets', true, true, '')"),
        query_probe("SELECT * FROM set_config('log_statement', 'none', false)"),
        // 5..=6: the TABLE query body.
        probe("INSERT INTO inbox (v) TABLE secrets"),
        query_probe("SELECT v FROM inbox UNION ALL TABLE secrets"),
        // 7..=11: DDL on names other than the granted tables.
        probe("DROP TABLE other"),
        probe("DROP SCHEMA app CASCADE"),
        probe("TRUNCATE other"),
        probe("ALTER TABLE inbox RENAME TO renamed"),
        probe("CREATE TABLE inbox2 AS SELECT * FROM secrets"),
        // 12..=14: kinds beyond a plain insert.
        query_probe("INSERT INTO inbox (v) VALUES ('returned') RETURNING v"),
        probe(
            "INSERT INTO inbox (v) VALUES ('original') ON CONFLICT (v) DO UPDATE SET v = 'changed'",
        ),
        probe("WITH w AS (UPDATE inbox SET v = 'changed' RETURNING v) SELECT 1"),
        // 15..=20: variants.
        query_probe(&format!("SELECT 1 FROM nats_events -- {sleep}")),
        query_probe(&format!(
            "SELECT 1 FROM nats_events WHERE 1 = 1 /* */ AND {sleep} IS NULL"
        )),
        query_probe("SELECT $$x$$ FROM nats_events"),
        query_probe("SELECT 'secrets'::regclass::text"),
        query_probe("SELECT xmin::text FROM nats_events"),
        query_probe("SELECT v FROM inbox FOR UPDATE"),
        query_probe("SELECT CASE WHEN true THEN (SELECT v FROM secrets) END"),
        query_probe(&format!("SELECT pg_catalog.{sleep}")),
        // 23: the host still delivers, and granted work still works.
        probe("INSERT INTO inbox (v) VALUES ('healthy-after')"),
        query_probe("SELECT v FROM inbox ORDER BY v"),
    ];
    let grant = grant(
        "postgres",
        &["nats_events", "inbox"],
        &["insert", "select"],
        true,
    );
    let started = std::time::Instant::now();
    let outcomes = run_probes(&db.url(), grant, &probes).await;
    let elapsed = started.elapsed();

    for sequence in [1, 2] {
        outcomes.refused(sequence, "table function");
        assert!(
            outcomes.took(sequence) < Duration::from_secs(SLEEP_SECONDS / 2),
            "the sleep never ran: {}",
            outcomes.of(sequence)
        );
    }
    outcomes.refused(3, "table function");
    outcomes.refused(4, "table function");
    outcomes.refused(5, "TABLE name");
    outcomes.refused(6, "TABLE name");
    outcomes.refused(7, "`other` is not granted");
    outcomes.refused(8, "DROP SCHEMA");
    outcomes.refused(9, "`other` is not granted");
    outcomes.refused(10, "not allowed");
    outcomes.refused(11, "AS SELECT");
    outcomes.refused(12, "add \"returning\"");
    outcomes.refused(13, "add \"upsert\"");
    outcomes.refused(14, "not granted");
    outcomes.refused(15, "comment");
    outcomes.refused(16, "comment");
    outcomes.refused(17, "$");
    outcomes.refused(18, "regclass");
    outcomes.refused(19, "system column");
    outcomes.refused(20, "locks");
    outcomes.refused(21, "secrets");
    outcomes.refused(22, "function");
    assert!(
        outcomes.of(23).starts_with("ok 1 rows"),
        "a granted insert after the hostile ones works: {}",
        outcomes.of(23)
    );
    assert!(
        outcomes
            .of(24)
            .starts_with("ok rows [[healthy-after], [original]]"),
        "the inbox holds exactly its own rows: {}",
        outcomes.of(24)
    );

    // The effects did not happen.
    assert!(
        !outcomes.log.contains(SECRET),
        "the secret never reached the plugin:\n{}",
        outcomes.log
    );
    assert!(
        elapsed < Duration::from_secs(60),
        "no probe slept: {elapsed:?}"
    );
    let server_log = db.log();
    assert!(
        server_log.contains("healthy-after"),
        "statement logging works (the granted insert is logged)"
    );
    for absent in [
        "pg_sleep",
        "query_to_xml",
        "set_config",
        "TABLE secrets",
        "DROP",
        "TRUNCATE",
        "RENAME",
        "RETURNING",
        "regclass",
        "FOR UPDATE",
        "inbox2",
        "'changed'",
    ] {
        assert!(
            !server_log.contains(absent),
            "`{absent}` never reached the server:\n{server_log}"
        );
    }
    assert_eq!(
        cell(db.query("SELECT count(*) FROM other").expect("other")),
        "1",
        "other still exists, untruncated"
    );
    assert_eq!(
        cell(
            db.query("SELECT count(*) FROM app.kept")
                .expect("app schema")
        ),
        "0",
        "schema app still exists"
    );
    assert_eq!(
        cell(
            db.query("SELECT string_agg(v, ',' ORDER BY v) FROM inbox")
                .expect("inbox")
        ),
        "healthy-after,original",
        "the inbox was neither renamed nor changed, and holds no secret"
    );
    assert_eq!(
        cell(
            db.query("SELECT count(*) FROM pg_tables WHERE tablename = 'inbox2'")
                .expect("inbox2")
        ),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_statements_have_no_effect_on_a_real_mariadb() {
    let db = MariaDb::start().expect("mariadb");
    db.execute(&create_table_sql("mysql")).expect("table");
    db.execute("CREATE TABLE inbox (k INT PRIMARY KEY, v VARCHAR(64))")
        .expect("inbox");
    db.execute("INSERT INTO inbox VALUES (1, 'original')")
        .expect("inbox row");
    db.execute(&format!(
        "CREATE TABLE secrets (v VARCHAR(64)); INSERT INTO secrets VALUES ('{SECRET}')"
    ))
    .expect("secrets");
    db.execute("CREATE TABLE other (v INT); INSERT INTO other VALUES (1)")
        .expect("other");
    // Every statement that reaches the server lands in mysql.general_log.
    db.execute_as_admin("SET GLOBAL log_output = 'TABLE'")
        .expect("log_output");
    db.execute_as_admin("SET GLOBAL general_log = 1")
        .expect("general_log");

    let outfile = tempfile::tempdir().expect("tempdir");
    let outfile = outfile.path().join("dump.txt");
    let probes = [
        // 1..=4: executable comments, hints and comments.
        probe("INSERT INTO inbox (k, v) VALUES (2, 'plain') /*M! , (3, 'mariadb-ran') */"),
        probe("INSERT INTO inbox (k, v) VALUES (4, 'plain') /*!50000 , (5, 'mysql-ran') */"),
        probe("INSERT /*+ NO_RANGE_OPTIMIZATION(inbox) */ INTO inbox (k, v) VALUES (6, 'hinted')"),
        query_probe("SELECT v FROM inbox WHERE k = 1 # AND SLEEP(6)"),
        // 5..=8: kinds beyond a plain insert.
        probe("REPLACE INTO inbox (k, v) VALUES (1, 'replaced')"),
        probe("INSERT INTO inbox (k, v) VALUES (1, 'x') ON DUPLICATE KEY UPDATE v = VALUES(v)"),
        probe("INSERT INTO inbox (k, v) VALUES (1, 'x') ON DUPLICATE KEY UPDATE v = 'changed'"),
        query_probe("INSERT INTO inbox (k, v) VALUES (7, 'returned') RETURNING v"),
        // 9..=10: DDL on other names (MariaDB DDL commits on its own: a
        // rollback would not save the table).
        probe("DROP TABLE other"),
        probe("TRUNCATE other"),
        // 11..=17: variants.
        query_probe(&format!("SELECT SLEEP({SLEEP_SECONDS})")),
        query_probe("SELECT @@version"),
        query_probe("SELECT v FROM inbox UNION SELECT v FROM secrets"),
        probe("INSERT INTO inbox (k, v) SELECT 8, v FROM secrets"),
        query_probe(&format!(
            "SELECT v FROM inbox INTO OUTFILE '{}'",
            outfile.display()
        )),
        query_probe("SELECT v FROM inbox LOCK IN SHARE MODE"),
        query_probe("SELECT 'a\\' , (SELECT v FROM secrets) , '' FROM inbox"),
        // 18..=20: the identity skip is a plain insert; the host still delivers.
        probe("INSERT INTO inbox (k, v) VALUES (1, 'dup') ON DUPLICATE KEY UPDATE k = k"),
        probe("INSERT INTO inbox (k, v) VALUES (9, 'healthy-after')"),
        query_probe("SELECT k, v FROM inbox ORDER BY k"),
    ];
    let grant = grant(
        "mysql",
        &["nats_events", "inbox"],
        &["insert", "select"],
        true,
    );
    let outcomes = run_probes(&db.url(), grant, &probes).await;

    for sequence in 1..=4 {
        outcomes.refused(sequence, "comment");
    }
    outcomes.refused(5, "add \"replace\"");
    outcomes.refused(6, "add \"upsert\"");
    outcomes.refused(7, "add \"upsert\"");
    let returning = outcomes.of(8);
    assert!(returning.starts_with("refused:"), "{returning}");
    outcomes.refused(9, "`other` is not granted");
    outcomes.refused(10, "`other` is not granted");
    outcomes.refused(11, "sleep");
    assert!(outcomes.took(11) < Duration::from_secs(SLEEP_SECONDS / 2));
    outcomes.refused(12, "@");
    outcomes.refused(13, "secrets");
    outcomes.refused(14, "secrets");
    let into = outcomes.of(15);
    assert!(into.starts_with("refused:"), "{into}");
    // sqlparser does not parse `LOCK IN SHARE MODE`: refused either way.
    outcomes.refused(16, "");
    outcomes.refused(17, "backslash");
    assert!(
        outcomes.of(18).starts_with("ok "),
        "the identity skip runs: {}",
        outcomes.of(18)
    );
    assert!(
        outcomes.of(19).starts_with("ok 1 rows"),
        "{}",
        outcomes.of(19)
    );
    assert!(
        outcomes
            .of(20)
            .starts_with("ok rows [[1, original], [9, healthy-after]]"),
        "the inbox holds exactly its own rows: {}",
        outcomes.of(20)
    );

    assert!(
        !outcomes.log.contains(SECRET),
        "the secret never reached the plugin"
    );
    assert!(!outfile.exists(), "no server file was written");
    assert_eq!(
        cell(
            db.query("SELECT GROUP_CONCAT(CONCAT(k, '=', v) ORDER BY k) FROM inbox")
                .expect("inbox")
        ),
        "1=original,9=healthy-after",
        "no row replaced, updated, returned or smuggled in by an executable comment"
    );
    assert_eq!(
        cell(db.query("SELECT COUNT(*) FROM other").expect("other")),
        "1",
        "other still exists, untruncated"
    );
    let general = db
        .execute_as_admin("SELECT argument FROM mysql.general_log")
        .expect("general log");
    let general: Vec<String> = general.into_iter().flatten().collect();
    assert!(
        general.iter().any(|line| line.contains("healthy-after")),
        "the general log records what reached the server"
    );
    for absent in [
        "mariadb-ran",
        "mysql-ran",
        "hinted",
        "replaced",
        "changed",
        "returned",
        "DROP",
        "TRUNCATE",
        "SLEEP",
        "@@version",
        "OUTFILE",
        "SHARE MODE",
        "secrets",
    ] {
        assert!(
            !general.iter().any(|line| line.contains(absent)),
            "`{absent}` never reached the server"
        );
    }
}

/// The first-party statements run on the real servers with exactly the
/// kinds they need: skip with `insert`, update with `upsert` (and the same
/// update is refused without it, the row unchanged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sinks_upsert_needs_the_upsert_kind_on_a_real_mariadb() {
    let db = MariaDb::start().expect("mariadb");
    db.execute("CREATE TABLE inbox (k INT PRIMARY KEY, v VARCHAR(64))")
        .expect("inbox");
    db.execute("INSERT INTO inbox VALUES (1, 'original')")
        .expect("row");
    let update = "INSERT INTO inbox (k, v) VALUES (?, ?) ON DUPLICATE KEY UPDATE v = VALUES(v)";
    let skip = "INSERT INTO inbox (k, v) VALUES (?, ?) ON DUPLICATE KEY UPDATE k = k";
    let with_params = |statement: &str, k: i64, v: &str| json!({"connection": "events", "statement": statement, "params": [k, v], "commit": true});
    let insert_only = run_probes(
        &db.url(),
        grant("mysql", &["inbox"], &["insert"], false),
        &[
            with_params(update, 1, "updated"),
            with_params(skip, 1, "skipped"),
        ],
    )
    .await;
    insert_only.refused(1, "add \"upsert\"");
    assert!(
        insert_only.of(2).starts_with("ok "),
        "{}",
        insert_only.of(2)
    );
    assert_eq!(
        cell(db.query("SELECT v FROM inbox WHERE k = 1").expect("row")),
        "original"
    );
    let upsert = run_probes(
        &db.url(),
        grant("mysql", &["inbox"], &["insert", "upsert"], false),
        &[with_params(update, 1, "updated")],
    )
    .await;
    assert!(upsert.of(1).starts_with("ok "), "{}", upsert.of(1));
    assert_eq!(
        cell(db.query("SELECT v FROM inbox WHERE k = 1").expect("row")),
        "updated"
    );
}
