//! The database sinks (`plugins/postgres`, `plugins/mysql`) end to end:
//! real JetStream, the real `sinkhost` binary, real PostgreSQL and MariaDB
//! servers on 127.0.0.1 (tests/src/databases.rs), and the host's `sql`
//! capability checked directly against a real server.

use std::time::Duration;

use serde_json::{json, Value};
use sinkhost::capabilities::sql::SqlErrorKind;
use sinkhost::capabilities::{Capability as _, Sql};
use sinkhost::config::SqlGrant;
use sinkhost_e2e::databases::{MariaDb, Postgres};
use sinkhost_e2e::*;

const STREAM: &str = "EVENTS";
const URL_VARIABLE: &str = "EVENTS_DB_URL";

/// The shipped `CREATE TABLE` script of a dialect for table `nats_events`.
fn create_table_sql(dialect: &str) -> String {
    let path = repo_root().join(format!("sdk/sql/sql/{dialect}.sql.in"));
    std::fs::read_to_string(path)
        .expect("table script")
        .replace("{table}", "nats_events")
}

fn sql_config(
    server: &NatsServer,
    work: &std::path::Path,
    plugin_name: &str,
    driver: &str,
    sink: Value,
) -> Value {
    let out = work.join("out");
    let mut config = base_config(server, STREAM, "events.>", &plugin(plugin_name), &out, sink);
    set(&mut config, "plugin.grants.files", json!([]));
    set(
        &mut config,
        "plugin.grants.sql",
        json!([{"name": "events", "driver": driver, "url_env": URL_VARIABLE,
                "tables": ["nats_events"], "statements": ["insert"], "statement_timeout_ms": 5000,
                "connect_timeout_ms": 2000}]),
    );
    config
}

async fn drained(js: &Js, timeout: Duration) -> bool {
    wait_until(timeout, || async {
        matches!(js.consumer_backlog(STREAM, "sinkhost").await, Ok((0, 0)))
    })
    .await
}

fn count(rows: Vec<Vec<String>>) -> u64 {
    rows.first()
        .and_then(|row| row.first())
        .and_then(|cell| cell.parse().ok())
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_becomes_one_row_in_postgres() {
    const N: usize = 500;
    let db = Postgres::start().expect("postgres");
    db.execute(&create_table_sql("postgres")).expect("table");
    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["events.>"])
        .await
        .expect("stream");
    js.publish_json("events.order", N).await.expect("publish");

    let dir = tempfile::tempdir().expect("tempdir");
    let sink = json!({"connection": "events", "payload_columns": {}});
    let path = write_config(
        dir.path(),
        &sql_config(&server, dir.path(), "postgres", "postgres", sink),
    );
    let url = db.url();
    let (code, stdout, stderr) = sinkhost_with_env(
        &["validate", path.to_str().expect("utf-8")],
        &[(URL_VARIABLE, &url)],
    );
    assert_eq!(code, 0, "validate:\n{stdout}{stderr}");
    let mut host =
        Host::start_with_env(&path, &dir.path().join("host.log"), &[(URL_VARIABLE, &url)])
            .expect("start");
    assert!(
        drained(&js, Duration::from_secs(90)).await,
        "not drained:\n{}",
        host.log()
    );
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );
    assert!(
        !host.log().contains(db_password()),
        "the password never reaches the log"
    );

    let rows = db.query("SELECT count(*), count(DISTINCT stream_sequence), min(stream_sequence), max(stream_sequence) FROM nats_events").expect("query");
    assert_eq!(
        rows[0],
        vec![N.to_string(), N.to_string(), "1".into(), N.to_string()]
    );
    let sample = db
        .query("SELECT stream_name, subject, payload->>'kind', payload->>'n', headers_json::text <> '', metadata_json->>'delivery_count', stored_at >= received_at FROM nats_events WHERE stream_sequence = 7")
        .expect("sample");
    assert_eq!(
        sample[0],
        vec!["EVENTS", "events.order", "test", "6", "t", "1", "t"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_becomes_one_row_in_mariadb_and_redelivery_adds_none() {
    const N: usize = 300;
    let db = MariaDb::start().expect("mariadb");
    db.execute(&create_table_sql("mysql")).expect("table");
    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["events.>"])
        .await
        .expect("stream");
    js.publish_json("events.order", N).await.expect("publish");

    let dir = tempfile::tempdir().expect("tempdir");
    let sink = json!({"connection": "events", "payload_columns": {"n": "n"}, "columns": {"custody_json": null}});
    // `n` is an extra column filled from the payload.
    db.execute("ALTER TABLE nats_events ADD COLUMN n BIGINT")
        .expect("extra column");
    let path = write_config(
        dir.path(),
        &sql_config(&server, dir.path(), "mysql", "mysql", sink),
    );
    let url = db.url();
    let mut host =
        Host::start_with_env(&path, &dir.path().join("host.log"), &[(URL_VARIABLE, &url)])
            .expect("start");
    assert!(
        drained(&js, Duration::from_secs(90)).await,
        "not drained:\n{}",
        host.log()
    );
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );

    let rows = db.query("SELECT COUNT(*), COUNT(DISTINCT stream_sequence), SUM(n = stream_sequence - 1) FROM nats_events").expect("query");
    assert_eq!(rows[0], vec![N.to_string(), N.to_string(), N.to_string()]);
    let sample = db
        .query("SELECT JSON_VALUE(payload, '$.kind'), subject, JSON_VALUE(metadata_json, '$.delivery_count') FROM nats_events WHERE stream_sequence = 3")
        .expect("sample");
    assert_eq!(sample[0], vec!["test", "events.order", "1"]);

    // A second consumer re-reads the whole stream: the key makes every
    // write a no-op.
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("config")).expect("json");
    set(&mut config, "nats.consumer", json!("replay"));
    let replay = write_config(dir.path(), &config);
    let mut host = Host::start_with_env(
        &replay,
        &dir.path().join("replay.log"),
        &[(URL_VARIABLE, &url)],
    )
    .expect("start");
    let replayed = wait_until(Duration::from_secs(90), || async {
        matches!(js.consumer_backlog(STREAM, "replay").await, Ok((0, 0)))
    })
    .await;
    assert!(replayed, "{}", host.log());
    assert_eq!(host.terminate(Duration::from_secs(20)), Some(0));
    assert_eq!(
        count(db.query("SELECT COUNT(*) FROM nats_events").expect("count")),
        N as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_database_rejects_goes_alone_to_the_dlq() {
    let db = Postgres::start().expect("postgres");
    db.execute(&create_table_sql("postgres")).expect("table");
    db.execute(
        "ALTER TABLE nats_events ADD CONSTRAINT no_poison CHECK (payload->>'kind' <> 'POISON')",
    )
    .expect("check");
    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["events.>"])
        .await
        .expect("stream");
    js.create_stream("DLQ", &["dlq.events"]).await.expect("dlq");
    for i in 0..6 {
        let kind = if i == 3 { "POISON" } else { "test" };
        js.publish_with_headers(
            "events.order",
            &[],
            json!({"kind": kind, "i": i}).to_string().as_bytes(),
        )
        .await
        .expect("publish");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = sql_config(
        &server,
        dir.path(),
        "postgres",
        "postgres",
        json!({"connection": "events"}),
    );
    set(
        &mut config,
        "dead_letter",
        json!({"enabled": true, "subject": "dlq.events"}),
    );
    let path = write_config(dir.path(), &config);
    let mut host = Host::start_with_env(
        &path,
        &dir.path().join("host.log"),
        &[(URL_VARIABLE, &db.url())],
    )
    .expect("start");
    assert!(
        drained(&js, Duration::from_secs(60)).await,
        "not drained:\n{}",
        host.log()
    );
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );

    let stored = db
        .query("SELECT stream_sequence FROM nats_events ORDER BY 1")
        .expect("rows");
    let stored: Vec<&str> = stored.iter().map(|row| row[0].as_str()).collect();
    assert_eq!(
        stored,
        ["1", "2", "3", "5", "6"],
        "the neighbours are stored"
    );
    let dlq = js.read_all("DLQ").await.expect("dlq");
    assert_eq!(dlq.len(), 1, "only the rejected message is dead-lettered");
    let record: Value = serde_json::from_slice(&dlq[0].payload).expect("dlq json");
    assert_eq!(record["stream_sequence"], 4, "{record}");
    assert!(
        record.to_string().contains("no_poison"),
        "the DLQ record names the constraint: {record}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_down_nothing_is_acked_and_nothing_is_lost() {
    let mut db = Postgres::start().expect("postgres");
    db.execute(&create_table_sql("postgres")).expect("table");
    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["events.>"])
        .await
        .expect("stream");
    js.publish_json("events.before", 100)
        .await
        .expect("publish");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = sql_config(
        &server,
        dir.path(),
        "postgres",
        "postgres",
        json!({"connection": "events"}),
    );
    set(&mut config, "delivery.max_retries", json!(10_000));
    let path = write_config(dir.path(), &config);
    let mut host = Host::start_with_env(
        &path,
        &dir.path().join("host.log"),
        &[(URL_VARIABLE, &db.url())],
    )
    .expect("start");
    assert!(
        drained(&js, Duration::from_secs(60)).await,
        "first part:\n{}",
        host.log()
    );

    db.stop().expect("stop postgres");
    js.publish_json("events.during", 100)
        .await
        .expect("publish");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        js.unacked(STREAM, "sinkhost").await.expect("unacked"),
        100,
        "nothing ACKed while the database is down:\n{}",
        host.log()
    );
    assert!(host.is_running(), "the host keeps running:\n{}", host.log());

    db.start_again().expect("start postgres");
    assert!(
        drained(&js, Duration::from_secs(90)).await,
        "not drained after the restart:\n{}",
        host.log()
    );
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );
    let rows = db
        .query("SELECT count(*), count(DISTINCT stream_sequence) FROM nats_events")
        .expect("count");
    assert_eq!(rows[0], vec!["200", "200"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_20000_messages_leaves_exactly_one_row_each() {
    const TOTAL: u64 = 20_000;
    let db = MariaDb::start().expect("mariadb");
    db.execute(&create_table_sql("mysql")).expect("table");
    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["events.>"])
        .await
        .expect("stream");
    js.publish_json("events.load", TOTAL as usize)
        .await
        .expect("publish");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = sql_config(
        &server,
        dir.path(),
        "mysql",
        "mysql",
        json!({"connection": "events"}),
    );
    // Small batches, so the run lasts long enough to be killed often.
    set(&mut config, "delivery.batch_size", json!(50));
    set(&mut config, "delivery.max_in_flight_batches", json!(2));
    let path = write_config(dir.path(), &config);
    let url = db.url();
    let log = dir.path().join("host.log");

    let stored = || count(db.query("SELECT COUNT(*) FROM nats_events").expect("count"));
    let mut kills = 0;
    while kills < 6 {
        let mut host = Host::start_with_env(&path, &log, &[(URL_VARIABLE, &url)]).expect("start");
        let before = stored();
        let progressed = wait_until(Duration::from_secs(30), || async { stored() > before }).await;
        if !progressed || stored() >= TOTAL {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10 + 20 * kills)).await;
        host.kill9();
        kills += 1;
    }
    let started = delivering_lines(&log);
    let mut host = Host::start_with_env(&path, &log, &[(URL_VARIABLE, &url)]).expect("start");
    // The killed hosts may have stored everything already: wait until this
    // one is delivering before asking it to stop, or SIGTERM lands during
    // start-up and ends it by the signal (no exit code).
    assert!(
        wait_until(Duration::from_secs(60), || async { delivering_lines(&log) > started }).await,
        "the last host never started delivering:\n{}",
        host.log()
    );
    assert!(
        drained(&js, Duration::from_secs(300)).await,
        "not drained:\n{}",
        host.log()
    );
    assert_eq!(
        host.terminate(Duration::from_secs(30)),
        Some(0),
        "{}",
        host.log()
    );
    eprintln!("killed the host {kills} times");
    assert!(
        kills >= 3,
        "killed only {kills} times before the work was done"
    );
    let rows = db.query("SELECT COUNT(*), COUNT(DISTINCT stream_sequence), MIN(stream_sequence), MAX(stream_sequence) FROM nats_events").expect("rows");
    assert_eq!(
        rows[0],
        vec![
            TOTAL.to_string(),
            TOTAL.to_string(),
            "1".into(),
            TOTAL.to_string()
        ],
        "killed {kills} times"
    );
}

fn db_password() -> &'static str {
    sinkhost_e2e::databases::DB_PASSWORD
}

fn grant(driver: &str, url_env: &str) -> SqlGrant {
    serde_json::from_value(
        json!({"name": "events", "driver": driver, "url_env": url_env,
        "tables": ["nats_events"], "statements": ["insert", "select"]}),
    )
    .expect("grant")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_grant_refuses_everything_it_does_not_name_on_a_real_database() {
    let db = Postgres::start().expect("postgres");
    db.execute(&create_table_sql("postgres")).expect("table");
    db.execute("CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('s3cr3t')")
        .expect("other table");
    // SAFETY of the test: this process's environment, read once by prepare.
    std::env::set_var("GRANT_TEST_DB_URL", db.url());
    let sql = Sql::prepare(&[grant("postgres", "GRANT_TEST_DB_URL")]).expect("prepare");
    let description = sql.describe().join("\n");
    assert!(
        !description.contains(db_password()) && !description.contains("127.0.0.1"),
        "{description}"
    );

    let refused = |outcome: Result<u64, sinkhost::capabilities::sql::SqlError>| {
        let error = outcome.expect_err("refused");
        assert_eq!(error.kind, SqlErrorKind::Refused, "{error:?}");
        error.message
    };
    let mut tx = sql.begin("events").await.expect("begin");
    assert!(
        refused(tx.execute("INSERT INTO secrets (v) VALUES ($1)", &[]).await).contains("secrets")
    );
    assert!(refused(tx.execute("DROP TABLE nats_events", &[]).await).contains("DDL"));
    assert!(refused(tx.execute("DELETE FROM nats_events", &[]).await).contains("DELETE"));
    assert!(refused(
        tx.execute("SELECT 1 FROM nats_events; DROP TABLE secrets", &[])
            .await
    )
    .contains("2 statements"));
    assert!(
        refused(tx.execute("SELECT pg_read_file('/etc/passwd')", &[]).await)
            .contains("pg_read_file")
    );
    let query = tx
        .query("SELECT v FROM secrets", &[])
        .await
        .expect_err("other table");
    assert_eq!(query.kind, SqlErrorKind::Refused);
    tx.rollback().await.expect("rollback");
    let not_granted = sql
        .begin("prod")
        .await
        .err()
        .expect("connection not granted");
    assert_eq!(not_granted.kind, SqlErrorKind::Refused);
    let columns = sql
        .columns("events", "secrets")
        .await
        .expect_err("table not granted");
    assert_eq!(columns.kind, SqlErrorKind::Refused);
    assert!(sql
        .columns("events", "nats_events")
        .await
        .expect("columns")
        .contains(&"payload".to_string()));
    assert_eq!(
        count(db.query("SELECT count(*) FROM secrets").expect("secrets")),
        1,
        "the other table is untouched"
    );

    // An unfinished transaction is rolled back, never inherited.
    let mut tx = sql.begin("events").await.expect("begin");
    let insert = "INSERT INTO nats_events (stream_name, stream_sequence, subject, headers_json, metadata_json, \
                  jetstream_timestamp, received_at, stored_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $6)";
    use sinkhost::capabilities::sql::SqlValue as V;
    let params = [
        V::Text("S".into()),
        V::Integer(1),
        V::Text("s".into()),
        V::Json("{}".into()),
        V::Json("{}".into()),
        V::Timestamp(0),
    ];
    assert_eq!(tx.execute(insert, &params).await.expect("insert"), 1);
    drop(tx);
    let mut tx = sql.begin("events").await.expect("begin again");
    tx.commit().await.expect("commit nothing");
    assert_eq!(
        count(db.query("SELECT count(*) FROM nats_events").expect("count")),
        0,
        "the dropped transaction left nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_names_a_missing_column_and_an_unreachable_database() {
    let db = MariaDb::start().expect("mariadb");
    db.execute("CREATE TABLE nats_events (stream_name VARCHAR(255), stream_sequence BIGINT, PRIMARY KEY (stream_name, stream_sequence))")
        .expect("short table");
    let server = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(
        dir.path(),
        &sql_config(
            &server,
            dir.path(),
            "mysql",
            "mysql",
            json!({"connection": "events"}),
        ),
    );
    let config = path.to_str().expect("utf-8");
    let (code, stdout, stderr) =
        sinkhost_with_env(&["validate", config], &[(URL_VARIABLE, &db.url())]);
    assert_ne!(code, 0, "{stdout}");
    assert!(stderr.contains("has no column subject"), "{stderr}");

    let nowhere = format!(
        "mysql://sinkhost:{}@127.0.0.1:{}/sinkhost",
        db_password(),
        free_port()
    );
    let (code, _, stderr) = sinkhost_with_env(&["validate", config], &[(URL_VARIABLE, &nowhere)]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("plugin.grants.sql `events`: cannot connect"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(db_password()),
        "the URL is never echoed: {stderr}"
    );

    let (code, _, stderr) = sinkhost_with_env(&["validate", config], &[]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains(URL_VARIABLE) && stderr.contains("not set"),
        "{stderr}"
    );
}

/// Every statement the three database sinks can write passes the host's
/// policy for the grant their docs show (offline: this is how the Oracle
/// sink's SQL is checked without an Oracle server).
#[test]
fn the_sinks_statements_pass_the_host_policy_in_every_dialect() {
    use sinkhost::capabilities::sql::policy::StatementPolicy;
    use sinkhost_sdk_sql::sink::DatabaseSink;
    use sinkhost_sdk_sql::Dialect;
    let configs = [
        r#"{"connection": "events"}"#,
        r#"{"connection": "events", "on_conflict": "update"}"#,
        r#"{"connection": "events", "key": "message_id", "payload_columns": {"order_id": "order.id"}}"#,
        r#"{"connection": "events", "key": "message_id", "on_conflict": "update", "columns": {"payload": "body", "custody_json": null}}"#,
    ];
    for (dialect, driver, kind) in [
        (Dialect::Postgres, "postgres", "insert"),
        (Dialect::Mysql, "mysql", "insert"),
        (Dialect::Oracle, "oracle", "merge"),
    ] {
        let grant: SqlGrant =
            serde_json::from_value(json!({"name": "events", "driver": driver, "url_env": "U",
            "tables": ["nats_events"], "statements": [kind]}))
            .expect("grant");
        let policy = StatementPolicy::new(&grant);
        let mut ddl_grant = grant.clone();
        ddl_grant.allow_ddl = true;
        let script = create_table_sql(if driver == "mysql" { "mysql" } else { driver });
        StatementPolicy::new(&ddl_grant)
            .check(&script)
            .unwrap_or_else(|refusal| panic!("{driver} table script: {refusal}"));
        // `on_conflict: update` changes existing rows: it needs `upsert` too.
        let mut upsert_grant = grant.clone();
        upsert_grant.statements.push(sinkhost::config::StatementKind::Upsert);
        let upsert_policy = StatementPolicy::new(&upsert_grant);
        for config in configs {
            let updates = config.contains("\"update\"");
            let sink = DatabaseSink::new(dialect, config).expect("sink config");
            let parsed = sinkhost_sdk_sql::config::SinkConfig::parse(config).expect("sink config");
            let multi_row = dialect.upsert_rows(&parsed, 500);
            for statement in [sink.statement(), multi_row.as_str()] {
                if updates {
                    let refusal = policy.check(statement).expect_err("update needs upsert");
                    assert!(refusal.0.contains("\"upsert\""), "{driver}: {refusal}");
                }
                let policy = if updates { &upsert_policy } else { &policy };
                policy
                    .check(statement)
                    .unwrap_or_else(|refusal| panic!("{driver}: {refusal}\n{statement}"));
            }
        }
    }
}

/// The Oracle sink end to end against a real Oracle Database, when one is
/// given: `SINKHOST_ORACLE_URL=oracle://user:password@host:1521/service`.
/// The user needs CREATE TABLE. Ignored by default: no Oracle server can be
/// had on CI machines (docs/oracle-sink.md); run it with `--ignored` and the
/// variable set. Run without the variable, it fails instead of passing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an Oracle Database: set SINKHOST_ORACLE_URL and run with --ignored"]
async fn oracle_end_to_end_when_a_server_is_given() {
    const N: usize = 200;
    let url = std::env::var("SINKHOST_ORACLE_URL")
        .expect("SINKHOST_ORACLE_URL must name an Oracle Database for this test");
    let table = format!("SINKHOST_E2E_{}", std::process::id());
    let mut ddl_grant = grant("oracle", "SINKHOST_ORACLE_URL");
    ddl_grant.tables = vec![table.clone()];
    ddl_grant.allow_ddl = true;
    let admin = Sql::prepare(&[ddl_grant]).expect("oracle grant");
    let script = std::fs::read_to_string(repo_root().join("sdk/sql/sql/oracle.sql.in"))
        .expect("script")
        .replace("{table}", &table);
    let mut tx = admin.begin("events").await.expect("connect to Oracle");
    tx.execute(&script, &[]).await.expect("create table");
    tx.commit().await.expect("commit");

    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["events.>"])
        .await
        .expect("stream");
    js.publish_json("events.order", N).await.expect("publish");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = sql_config(
        &server,
        dir.path(),
        "oracle",
        "oracle",
        json!({"connection": "events", "table": table}),
    );
    set(
        &mut config,
        "plugin.grants.sql",
        json!([{"name": "events", "driver": "oracle", "url_env": "SINKHOST_ORACLE_URL", "tables": [table], "statements": ["merge"]}]),
    );
    let path = write_config(dir.path(), &config);
    let mut host = Host::start_with_env(
        &path,
        &dir.path().join("host.log"),
        &[("SINKHOST_ORACLE_URL", &url)],
    )
    .expect("start");
    let done = drained(&js, Duration::from_secs(120)).await;
    host.terminate(Duration::from_secs(20));

    let mut tx = admin.begin("events").await.expect("connect");
    let rows = tx
        .query(
            &format!("SELECT COUNT(*), COUNT(DISTINCT stream_sequence) FROM {table}"),
            &[],
        )
        .await;
    tx.execute(&format!("DROP TABLE {table}"), &[])
        .await
        .expect("drop table");
    assert!(done, "not drained:\n{}", host.log());
    let rows = rows.expect("count");
    use sinkhost::capabilities::sql::SqlValue as V;
    assert_eq!(
        rows.rows[0],
        vec![V::Integer(N as i64), V::Integer(N as i64)]
    );
}

/// A hostile plugin (tests/plugins/sql-probe) running under the real host
/// against a real PostgreSQL: everything the grant does not name is refused,
/// and the credentials are nowhere in its sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_reaches_only_what_the_sql_grant_names() {
    let db = Postgres::start().expect("postgres");
    db.execute(&create_table_sql("postgres")).expect("table");
    db.execute("CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('s3cr3t')")
        .expect("other table");
    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["events.>"])
        .await
        .expect("stream");
    let good_insert = "INSERT INTO nats_events (stream_name, stream_sequence, subject, headers_json, metadata_json, \
                       jetstream_timestamp, received_at, stored_at) VALUES ($1, $2, $3, '{}', '{}', now(), now(), now())";
    let probes = [
        json!({"connection": "events", "statement": good_insert, "params": ["S", 1, "s"]}),
        json!({"connection": "events", "statement": "INSERT INTO secrets (v) VALUES ($1)", "params": ["x"]}),
        json!({"connection": "events", "statement": "SELECT v FROM secrets"}),
        json!({"connection": "events", "statement": "DROP TABLE nats_events"}),
        json!({"connection": "events", "statement": "DELETE FROM nats_events; DROP TABLE secrets"}),
        json!({"connection": "admin", "statement": good_insert, "params": ["S", 2, "s"]}),
        json!({"connection": "events", "columns_of": "secrets"}),
        json!({"environment": true}),
        json!({"connection": "events", "statement": "INSERT INTO nats_events (subject) VALUES (pg_read_file('/etc/passwd'))"}),
    ];
    for probe in &probes {
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
    set(
        &mut config,
        "plugin.grants.sql",
        json!([{"name": "events", "driver": "postgres", "url_env": URL_VARIABLE,
                "tables": ["nats_events"], "statements": ["insert"]}]),
    );
    let path = write_config(dir.path(), &config);
    let mut host = Host::start_with_env(
        &path,
        &dir.path().join("host.log"),
        &[(URL_VARIABLE, &db.url())],
    )
    .expect("start");
    assert!(
        drained(&js, Duration::from_secs(60)).await,
        "not drained:\n{}",
        host.log()
    );
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );
    let log = host.log();
    let outcome = |sequence: usize| -> String {
        let marker = format!("probe {sequence}: ");
        let line = log
            .lines()
            .find(|line| line.contains(&marker))
            .unwrap_or_else(|| panic!("no probe {sequence}:\n{log}"));
        line[line.find(&marker).expect("marker") + marker.len()..].to_string()
    };
    assert!(
        outcome(1).starts_with("ok 1 rows"),
        "the granted insert works: {}",
        outcome(1)
    );
    assert!(
        outcome(2).starts_with("refused:") && outcome(2).contains("secrets"),
        "{}",
        outcome(2)
    );
    assert!(
        outcome(3).starts_with("refused:") && outcome(3).contains("SELECT"),
        "{}",
        outcome(3)
    );
    assert!(
        outcome(4).starts_with("refused:") && outcome(4).contains("DDL"),
        "{}",
        outcome(4)
    );
    assert!(
        outcome(5).starts_with("refused:") && outcome(5).contains("2 statements"),
        "{}",
        outcome(5)
    );
    assert!(
        outcome(6).starts_with("refused:") && outcome(6).contains("`admin` is not granted"),
        "{}",
        outcome(6)
    );
    assert!(outcome(7).starts_with("refused:"), "{}", outcome(7));
    assert!(
        outcome(8).starts_with("ok environment [] arguments []"),
        "nothing in the sandbox: {}",
        outcome(8)
    );
    assert!(
        outcome(9).starts_with("refused:") && outcome(9).contains("pg_read_file"),
        "{}",
        outcome(9)
    );
    assert!(
        !log.contains(db_password()),
        "the password is nowhere in the log"
    );
    assert_eq!(
        count(db.query("SELECT count(*) FROM nats_events").expect("count")),
        0,
        "probes roll back"
    );
    assert_eq!(
        count(db.query("SELECT count(*) FROM secrets").expect("secrets")),
        1,
        "the other table is untouched"
    );
}

/// How many hosts have reached the delivery loop in the shared log `log`.
fn delivering_lines(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("delivering stream=")
        .count()
}
