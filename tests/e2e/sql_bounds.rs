//! A database call cannot outlive its budget (issue 14, section 2): a hostile
//! plugin (tests/plugins/sql-probe) under the real host, against real
//! PostgreSQL and MariaDB servers (TLS on, tests/src/databases.rs). Every
//! test asserts the effect on the server or on the host, not only the error:
//! host memory stayed bounded, no lock or session outlived the call, the
//! server stopped the statement, the error text carries no value, user or
//! host, plaintext never happened where TLS was required, and the host kept
//! delivering.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sinkhost::capabilities::sql::SqlErrorKind;
use sinkhost::capabilities::{Capability as _, Sql};
use sinkhost::config::SqlGrant;
use sinkhost_e2e::databases::{MariaDb, Postgres, DB_PASSWORD, DB_USER};
use sinkhost_e2e::*;

const STREAM: &str = "PROBES";
const URL_VARIABLE: &str = "PROBE_DB_URL";

/// The sql-probe plugin running under the host, fed one batch at a time.
struct ProbeRun {
    js: Js,
    host: Host,
    published: usize,
    _server: NatsServer,
    _dir: tempfile::TempDir,
}

impl ProbeRun {
    /// Starts NATS and the host with `grants` (the `url_env` of each is
    /// given its URL in `env`).
    async fn start(grants: Value, env: &[(&str, &str)]) -> Self {
        let server = NatsServer::start().expect("nats-server");
        let js = Js::connect(&server).await.expect("connect");
        js.create_stream(STREAM, &["probes.>"])
            .await
            .expect("stream");
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let mut config = base_config(
            &server,
            STREAM,
            "probes.>",
            &test_plugin("sql-probe"),
            &out,
            json!({}),
        );
        set(&mut config, "plugin.grants.files", json!([]));
        set(&mut config, "plugin.grants.sql", grants);
        // One batch at a time, so every batch runs on the same instance.
        set(&mut config, "delivery.max_in_flight_batches", json!(1));
        let path = write_config(dir.path(), &config);
        let host = Host::start_with_env(&path, &dir.path().join("host.log"), env).expect("start");
        Self {
            js,
            host,
            published: 0,
            _server: server,
            _dir: dir,
        }
    }

    /// Publishes `probes` and waits until the host acked them all; returns
    /// their outcomes in order.
    async fn run(&mut self, probes: &[Value]) -> Vec<String> {
        for probe in probes {
            self.js
                .publish_with_headers("probes.p", &[], probe.to_string().as_bytes())
                .await
                .expect("publish");
        }
        let first = self.published + 1;
        self.published += probes.len();
        let drained = wait_until(Duration::from_secs(60), || async {
            matches!(
                self.js.consumer_backlog(STREAM, "sinkhost").await,
                Ok((0, 0))
            )
        })
        .await;
        assert!(drained, "not drained:\n{}", self.host.log());
        (first..=self.published)
            .map(|sequence| self.outcome(sequence))
            .collect()
    }

    fn outcome(&self, sequence: usize) -> String {
        let log = self.host.log();
        let marker = format!("probe {sequence}: ");
        let line = log
            .lines()
            .find(|line| line.contains(&marker))
            .unwrap_or_else(|| panic!("no probe {sequence}:\n{log}"));
        let outcome = &line[line.find(&marker).expect("marker") + marker.len()..];
        // The host appends the plugin's name and stream to each log line.
        match outcome.rfind(" plugin=\"") {
            Some(end) => outcome[..end].to_string(),
            None => outcome.to_string(),
        }
    }

    fn finish(mut self) -> String {
        let log = self.host.log();
        assert_eq!(
            self.host.terminate(Duration::from_secs(20)),
            Some(0),
            "{log}"
        );
        assert!(
            !log.contains(DB_PASSWORD),
            "the password never reaches the log"
        );
        log
    }
}

fn grant(driver: &str, tables: &[&str], statements: &[&str], timeout_ms: u64) -> Value {
    json!({"name": "events", "driver": driver, "url_env": URL_VARIABLE, "tables": tables,
           "statements": statements, "statement_timeout_ms": timeout_ms, "connect_timeout_ms": 3000})
}

fn probe(statement: &str) -> Value {
    json!({"connection": "events", "statement": statement})
}

fn query(statement: &str) -> Value {
    json!({"connection": "events", "statement": statement, "query": true})
}

fn first_cell(rows: Vec<Vec<String>>) -> String {
    rows.first()
        .and_then(|row| row.first())
        .cloned()
        .expect("a cell")
}

/// PostgreSQL sessions of the host (its `application_name`) in `state`.
fn pg_sessions(db: &Postgres, state: &str) -> u64 {
    first_cell(
        db.execute_as_admin(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sinkhost' \
             AND usename = '{DB_USER}' AND state = '{state}'"
        ))
        .expect("pg_stat_activity"),
    )
    .parse()
    .expect("count")
}

/// MariaDB statements of the host's user running now (not sleeping).
fn mariadb_running(db: &MariaDb) -> u64 {
    first_cell(
        db.execute_as_admin(&format!(
            "SELECT count(*) FROM information_schema.processlist WHERE user = '{DB_USER}' \
             AND command = 'Query'"
        ))
        .expect("processlist"),
    )
    .parse()
    .expect("count")
}

/// Whether `check` becomes true within `within`.
fn soon(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A cartesian join of big rows and a 1,000,000-row cartesian join: the
/// host streams, stops at the byte cap (the plugin's `memory_mb`) and at
/// the row cap, its memory stays bounded, the server stops sending, and
/// the host keeps delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_result_stops_at_the_caps_and_host_memory_stays_bounded() {
    let db = Postgres::start().expect("postgres");
    // 16 rows of 4 MB: the join below is 256 rows of 8 MB, 2 GB.
    db.execute(
        "CREATE TABLE big (id int PRIMARY KEY, v text); \
         INSERT INTO big SELECT g, repeat('x', 4000000) FROM generate_series(1, 16) g; \
         CREATE TABLE many (id int PRIMARY KEY); \
         INSERT INTO many SELECT g FROM generate_series(1, 1000) g",
    )
    .expect("tables");
    let url = db.url();
    let mut run = ProbeRun::start(
        json!([grant("postgres", &["big", "many"], &["select"], 20_000)]),
        &[(URL_VARIABLE, &url)],
    )
    .await;
    let baseline = run.run(&[query("SELECT id FROM many WHERE id = 1")]).await;
    assert_eq!(baseline, ["ok 1 rows"]);
    let before_mb = run.host.peak_rss_mb().expect("VmHWM");
    let outcomes = run
        .run(&[
            query("SELECT a.v, b.v FROM big a, big b"),
            query("SELECT a.id, b.id FROM many a, many b"),
            query("SELECT count(*) FROM many"),
            // One row of 80 MB: more than memory_mb in a single message.
            query(&format!(
                "SELECT {} FROM big a",
                vec!["a.v"; 20].join(" || ")
            )),
            query("SELECT count(*) FROM many"),
        ])
        .await;
    let after_mb = run.host.peak_rss_mb().expect("VmHWM");
    assert!(
        outcomes[0].starts_with("permanent:") && outcomes[0].contains("memory_mb"),
        "{}",
        outcomes[0]
    );
    assert!(
        outcomes[1].starts_with("permanent:") && outcomes[1].contains("10000 rows"),
        "{}",
        outcomes[1]
    );
    assert_eq!(outcomes[2], "ok 1 rows", "the host keeps answering");
    assert!(
        outcomes[3].starts_with("permanent:") && outcomes[3].contains("memory_mb"),
        "{}",
        outcomes[3]
    );
    assert_eq!(outcomes[4], "ok 1 rows", "the host keeps answering");
    eprintln!("host peak RSS: {before_mb:.0} MB before, {after_mb:.0} MB after the huge results");
    assert!(
        after_mb - before_mb < 300.0,
        "host peak RSS grew from {before_mb:.0} MB to {after_mb:.0} MB"
    );
    assert!(
        soon(Duration::from_secs(5), || pg_sessions(&db, "active") == 0),
        "the server stopped sending the abandoned results"
    );
    run.finish();
}

/// A transaction the plugin leaves open (a row lock held) ends with the
/// `write-batch` call: another session can update the row at once, no
/// session of the host is idle in a transaction, the plugin's update was
/// rolled back, and the handle is dead in the next batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_left_open_holds_no_lock_after_the_call_postgres() {
    let db = Postgres::start().expect("postgres");
    db.execute("CREATE TABLE locked (id int PRIMARY KEY, n int); INSERT INTO locked VALUES (1, 0)")
        .expect("table");
    let url = db.url();
    let mut run = ProbeRun::start(
        json!([grant("postgres", &["locked"], &["update", "select"], 5_000)]),
        &[(URL_VARIABLE, &url)],
    )
    .await;
    let left = json!({"connection": "events", "statement": "UPDATE locked SET n = n + 1 WHERE id = 1",
                      "leave_open": true});
    assert_eq!(run.run(&[left]).await, ["ok 1 rows (left open)"]);
    assert_eq!(pg_sessions(&db, "idle in transaction"), 0);
    // Would wait for the plugin's row lock; fails after 2 s if it is held.
    db.execute("SET lock_timeout = '2s'; UPDATE locked SET n = 100 WHERE id = 1")
        .expect("the row is not locked any more");
    let reuse = json!({"use_left": true, "statement": "UPDATE locked SET n = n + 1 WHERE id = 1"});
    let outcome = run.run(&[reuse]).await;
    assert!(
        outcome[0].starts_with("refused:") && outcome[0].contains("ended with the plugin call"),
        "{}",
        outcome[0]
    );
    assert_eq!(
        first_cell(db.query("SELECT n FROM locked").expect("n")),
        "100",
        "the plugin's uncommitted update was rolled back, its later one never ran"
    );
    run.finish();
}

/// The same against MariaDB (InnoDB row locks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_left_open_holds_no_lock_after_the_call_mariadb() {
    let db = MariaDb::start().expect("mariadb");
    db.execute("CREATE TABLE locked (id int PRIMARY KEY, n int) ENGINE=InnoDB; INSERT INTO locked VALUES (1, 0)")
        .expect("table");
    let url = db.url();
    let mut run = ProbeRun::start(
        json!([grant("mysql", &["locked"], &["update", "select"], 5_000)]),
        &[(URL_VARIABLE, &url)],
    )
    .await;
    let left = json!({"connection": "events", "statement": "UPDATE locked SET n = n + 1 WHERE id = 1",
                      "leave_open": true});
    assert_eq!(run.run(&[left]).await, ["ok 1 rows (left open)"]);
    let open: u64 = first_cell(
        db.execute_as_admin("SELECT count(*) FROM information_schema.innodb_trx")
            .expect("innodb_trx"),
    )
    .parse()
    .expect("count");
    assert_eq!(open, 0, "no transaction of the host is open");
    db.execute("SET SESSION innodb_lock_wait_timeout = 2; UPDATE locked SET n = 100 WHERE id = 1")
        .expect("the row is not locked any more");
    let reuse = json!({"use_left": true, "statement": "UPDATE locked SET n = n + 1 WHERE id = 1"});
    let outcome = run.run(&[reuse]).await;
    assert!(
        outcome[0].starts_with("refused:") && outcome[0].contains("ended with the plugin call"),
        "{}",
        outcome[0]
    );
    assert_eq!(
        first_cell(db.query("SELECT n FROM locked").expect("n")),
        "100"
    );
    run.finish();
}

/// A statement that would run for hours (a three-way cartesian count) and
/// one that waits for a row lock the test holds: the server stops both at
/// the grant's statement timeout (no statement of the host is left running
/// on the server), and the host keeps delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_the_host_gave_up_on_stops_on_the_postgres_server() {
    let db = Postgres::start().expect("postgres");
    db.execute(
        "CREATE TABLE many (id int PRIMARY KEY, n int); \
         INSERT INTO many SELECT g, 0 FROM generate_series(1, 3000) g",
    )
    .expect("table");
    let url = db.url();
    let mut run = ProbeRun::start(
        json!([grant("postgres", &["many"], &["select", "update"], 1_500)]),
        &[(URL_VARIABLE, &url)],
    )
    .await;
    // The test holds row 1's lock for 30 s from another session.
    let mut holder = std::process::Command::new(&db.query_command("x")[0]);
    let mut argv = db.query_command(
        "BEGIN; SELECT id FROM many WHERE id = 1 FOR UPDATE; SELECT pg_sleep(30); COMMIT",
    );
    holder.args(argv.drain(1..));
    let mut holder = holder
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("lock holder");
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let outcomes = run
        .run(&[
            query("SELECT count(*) FROM many a, many b, many c"),
            probe("UPDATE many SET n = 7 WHERE id = 1"),
            query("SELECT count(*) FROM many"),
        ])
        .await;
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(outcomes[0].starts_with("transient:"), "{}", outcomes[0]);
    assert!(outcomes[1].starts_with("transient:"), "{}", outcomes[1]);
    assert_eq!(outcomes[2], "ok 1 rows");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        soon(Duration::from_secs(3), || pg_sessions(&db, "active") == 0),
        "no statement of the host is still running on the server"
    );
    assert_eq!(
        first_cell(db.query("SELECT n FROM many WHERE id = 1").expect("n")),
        "0",
        "the update never happened"
    );
    run.finish();
}

/// The same against MariaDB: `max_statement_time` stops the cartesian count
/// and `innodb_lock_wait_timeout` the lock wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_the_host_gave_up_on_stops_on_the_mariadb_server() {
    let db = MariaDb::start().expect("mariadb");
    db.execute(
        "CREATE TABLE digits (i int); \
         INSERT INTO digits VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9); \
         CREATE TABLE many (id int PRIMARY KEY, n int) ENGINE=InnoDB; \
         INSERT INTO many SELECT a.i * 1000 + b.i * 100 + c.i * 10 + d.i + 1, 0 \
         FROM digits a, digits b, digits c, digits d WHERE a.i < 3",
    )
    .expect("table");
    let url = db.url();
    let mut run = ProbeRun::start(
        json!([grant("mysql", &["many"], &["select", "update"], 1_500)]),
        &[(URL_VARIABLE, &url)],
    )
    .await;
    let started = Instant::now();
    let outcomes = run
        .run(&[
            query("SELECT count(*) FROM many a, many b, many c"),
            query("SELECT count(*) FROM many"),
        ])
        .await;
    assert!(outcomes[0].starts_with("transient:"), "{}", outcomes[0]);
    assert_eq!(outcomes[1], "ok 1 rows");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        soon(Duration::from_secs(3), || mariadb_running(&db) == 0),
        "no statement of the host is still running on the server"
    );
    run.finish();
}

/// What a plugin reads in a database error: the kind and the code, never
/// the bound value, the database user or the client's host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_errors_reach_the_plugin_without_values_users_or_hosts() {
    const SECRET: &str = "s3cr3t-value-4242";
    let pg = Postgres::start().expect("postgres");
    let maria = MariaDb::start().expect("mariadb");
    for db_execute in [
        pg.execute("CREATE TABLE t (k text PRIMARY KEY, n int)"),
        maria.execute("CREATE TABLE t (k varchar(64) PRIMARY KEY, n int)"),
    ] {
        db_execute.expect("table");
    }
    let pg_url = pg.url();
    let maria_url = maria.url();
    let wrong_pg = pg.url().replace(DB_PASSWORD, "wrong-password");
    let wrong_maria = maria.url().replace(DB_PASSWORD, "wrong-password");
    let grants = json!([
        {"name": "pg", "driver": "postgres", "url_env": "PG_URL", "tables": ["t"], "statements": ["insert"]},
        {"name": "maria", "driver": "mysql", "url_env": "MARIA_URL", "tables": ["t"], "statements": ["insert"]},
        {"name": "pg_wrong", "driver": "postgres", "url_env": "PG_WRONG", "tables": ["t"], "statements": ["insert"]},
        {"name": "maria_wrong", "driver": "mysql", "url_env": "MARIA_WRONG", "tables": ["t"], "statements": ["insert"]},
    ]);
    let mut run = ProbeRun::start(
        grants,
        &[
            ("PG_URL", &pg_url),
            ("MARIA_URL", &maria_url),
            ("PG_WRONG", &wrong_pg),
            ("MARIA_WRONG", &wrong_maria),
        ],
    )
    .await;
    let outcomes = run
        .run(&[
            // The same key twice: a unique violation quoting the key.
            json!({"connection": "pg", "statement": "INSERT INTO t (k, n) VALUES ($1, 1), ($2, 2)",
                   "params": [SECRET, SECRET]}),
            json!({"connection": "maria", "statement": "INSERT INTO t (k, n) VALUES (?, 1), (?, 2)",
                   "params": [SECRET, SECRET]}),
            // A text where a number goes: servers quote the value.
            json!({"connection": "maria", "statement": "INSERT INTO t (k, n) VALUES ('a', ?)",
                   "params": [SECRET]}),
            json!({"connection": "pg_wrong", "statement": "INSERT INTO t (k, n) VALUES ('a', 1)"}),
            json!({"connection": "maria_wrong", "statement": "INSERT INTO t (k, n) VALUES ('a', 1)"}),
            json!({"connection": "pg", "statement": "INSERT INTO t (k, n) VALUES ($1, 1)", "params": ["ok"]}),
            json!({"connection": "pg", "statement": "INSERT INTO t (k, n) VALUES ('b', CAST(CAST($1 AS text) AS int))",
                   "params": [SECRET]}),
        ])
        .await;
    assert!(outcomes[2].contains("1366"), "{}", outcomes[2]);
    assert!(
        outcomes[0].starts_with("permanent:") && outcomes[0].contains("23505"),
        "{}",
        outcomes[0]
    );
    assert!(
        outcomes[1].starts_with("permanent:") && outcomes[1].contains("1062"),
        "{}",
        outcomes[1]
    );
    assert!(
        outcomes[3].starts_with("transient:") && outcomes[3].contains("28P01"),
        "{}",
        outcomes[3]
    );
    assert!(
        outcomes[4].starts_with("transient:") && outcomes[4].contains("1045"),
        "{}",
        outcomes[4]
    );
    assert_eq!(outcomes[5], "ok 1 rows", "the host keeps delivering");
    for outcome in &outcomes {
        for leak in [
            SECRET,
            "127.0.0.1",
            "'sinkhost'",
            "\"sinkhost\"",
            "wrong-password",
        ] {
            assert!(
                !outcome.contains(leak),
                "`{leak}` reached the plugin: {outcome}"
            );
        }
    }
    let log = run.finish();
    assert!(
        !log.contains(SECRET),
        "the value never reaches the host log"
    );
}

fn tls_grant(driver: &str, variable: &str, tls: Value) -> SqlGrant {
    let mut grant = json!({"name": "events", "driver": driver, "url_env": variable,
                           "tables": ["t"], "statements": ["select"], "connect_timeout_ms": 3000});
    if !tls.is_null() {
        grant["tls"] = tls;
    }
    serde_json::from_value(grant).expect("grant")
}

/// PostgreSQL sessions of the host that use TLS / do not.
fn pg_tls_sessions(db: &Postgres) -> (u64, u64) {
    let rows = db
        .execute_as_admin(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = 'sinkhost'",
        )
        .expect("pg_stat_ssl");
    (
        rows[0][0].parse().expect("count"),
        rows[0][1].parse().expect("count"),
    )
}

/// TLS to PostgreSQL: verify-full with the test CA connects encrypted; a
/// wrong CA connects nothing; `require` against a server without TLS is
/// refused rather than sent in plaintext; URL TLS parameters are honoured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tls_is_verified_and_never_falls_back_to_plaintext() {
    let db = Postgres::start().expect("postgres");
    db.execute("CREATE TABLE t (k text)").expect("table");
    let tls = db.tls().expect("the test server runs TLS");
    std::env::set_var("TLS_PG_URL", db.url());
    let verified = Sql::prepare(&[tls_grant(
        "postgres",
        "TLS_PG_URL",
        json!({"mode": "verify-full", "ca_file": tls.ca_file()}),
    )])
    .expect("prepare");
    let mut transaction = verified
        .begin("events")
        .await
        .expect("verify-full connects");
    assert_eq!(pg_tls_sessions(&db), (1, 0), "the session is encrypted");
    transaction.rollback().await.expect("rollback");
    drop(transaction);

    let wrong_ca = Sql::prepare(&[tls_grant(
        "postgres",
        "TLS_PG_URL",
        json!({"mode": "verify-ca", "ca_file": tls.other_ca_file()}),
    )])
    .expect("prepare");
    let error = wrong_ca
        .begin("events")
        .await
        .err()
        .expect("a wrong CA is refused");
    assert_eq!(error.kind, SqlErrorKind::Transient, "{error:?}");

    std::env::set_var(
        "TLS_PG_URL_PARAMS",
        format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            db.url(),
            tls.ca_file().display()
        ),
    );
    let from_url =
        Sql::prepare(&[tls_grant("postgres", "TLS_PG_URL_PARAMS", Value::Null)]).expect("prepare");
    let mut transaction = from_url
        .begin("events")
        .await
        .expect("sslmode from the URL");
    let (encrypted, plain) = pg_tls_sessions(&db);
    assert!(encrypted >= 1 && plain == 0, "({encrypted}, {plain})");
    transaction.rollback().await.expect("rollback");

    std::env::set_var("TLS_PG_URL_PREFER", format!("{}?sslmode=prefer", db.url()));
    let prefer = Sql::prepare(&[tls_grant("postgres", "TLS_PG_URL_PREFER", Value::Null)])
        .err()
        .expect("prefer is refused");
    assert!(prefer.to_string().contains("sslmode=prefer"), "{prefer}");

    let plain = Postgres::start_without_tls().expect("postgres without TLS");
    plain.execute("CREATE TABLE t (k text)").expect("table");
    std::env::set_var("TLS_PG_PLAIN_URL", plain.url());
    let required = Sql::prepare(&[tls_grant(
        "postgres",
        "TLS_PG_PLAIN_URL",
        json!({"mode": "require"}),
    )])
    .expect("prepare");
    required
        .begin("events")
        .await
        .err()
        .expect("require against a server without TLS is refused");
    let sessions: u64 = first_cell(
        plain
            .execute_as_admin(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sinkhost'",
            )
            .expect("sessions"),
    )
    .parse()
    .expect("count");
    assert_eq!(sessions, 0, "no plaintext session was opened");
}

/// TLS to MariaDB: the account requires TLS (`REQUIRE SSL`), so a session
/// that connects proves it is encrypted; a wrong CA and `require` against a
/// server without TLS are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_tls_is_verified_and_never_falls_back_to_plaintext() {
    let db = MariaDb::start().expect("mariadb");
    db.execute("CREATE TABLE t (k text)").expect("table");
    db.execute_as_admin(&format!(
        "ALTER USER '{DB_USER}'@'127.0.0.1' REQUIRE SSL; FLUSH PRIVILEGES"
    ))
    .expect("require ssl");
    let tls = db.tls().expect("the test server runs TLS");
    std::env::set_var("TLS_MARIA_URL", db.url());
    let plaintext = Sql::prepare(&[tls_grant(
        "mysql",
        "TLS_MARIA_URL",
        json!({"mode": "disable"}),
    )])
    .expect("prepare");
    plaintext
        .begin("events")
        .await
        .err()
        .expect("the account refuses plaintext: the check below means something");
    let verified = Sql::prepare(&[tls_grant(
        "mysql",
        "TLS_MARIA_URL",
        json!({"mode": "verify-full", "ca_file": tls.ca_file()}),
    )])
    .expect("prepare");
    let mut transaction = verified
        .begin("events")
        .await
        .expect("verify-full connects");
    transaction.rollback().await.expect("rollback");
    let wrong_ca = Sql::prepare(&[tls_grant(
        "mysql",
        "TLS_MARIA_URL",
        json!({"mode": "verify-ca", "ca_file": tls.other_ca_file()}),
    )])
    .expect("prepare");
    wrong_ca
        .begin("events")
        .await
        .err()
        .expect("a wrong CA is refused");

    let plain = MariaDb::start_without_tls().expect("mariadb without TLS");
    std::env::set_var("TLS_MARIA_PLAIN_URL", plain.url());
    let required = Sql::prepare(&[tls_grant(
        "mysql",
        "TLS_MARIA_PLAIN_URL",
        json!({"mode": "require"}),
    )])
    .expect("prepare");
    required
        .begin("events")
        .await
        .err()
        .expect("require against a server without TLS is refused");
}
