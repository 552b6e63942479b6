//! Database sinks bench: the PostgreSQL and MySQL sinks against real
//! PostgreSQL and MariaDB servers on 127.0.0.1, draining one stream of
//! 256-byte JSON messages per contender through a real JetStream, with
//! batches of 1, 100 and 1,000 (2 in flight). Each batch is one transaction
//! (one commit, so one WAL/redo flush) of one idempotent upsert per row.
//!
//! Prints rows/s per database and batch size, and the ratio to batch 100.
//! The first rows use the discarding test plugin (no database) to show what
//! the host and JetStream cost alone at each batch size.
//! Run: `cargo bench -p sinkhost-e2e --bench sql_sinks` (after building the
//! host and the plugins). `BENCH_SQL_MESSAGES` overrides the count (default
//! 10,000; batch size 1 uses a tenth of it).

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use sinkhost_e2e::databases::{MariaDb, Postgres};
use sinkhost_e2e::*;

const PAYLOAD_BYTES: usize = 256;

fn payload(i: usize) -> Vec<u8> {
    let head = format!(r#"{{"id":{i},"kind":"bench","pad":""#);
    let pad = PAYLOAD_BYTES.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad)).into_bytes()
}

fn table_script(dialect: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(repo_root().join(format!("sdk/sql/sql/{dialect}.sql.in")))?;
    Ok(text.replace("{table}", "nats_events"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total: usize = std::env::var("BENCH_SQL_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let server = NatsServer::start()?;
    let js = Js::connect(&server).await?;
    let postgres = Postgres::start()?;
    let mariadb = MariaDb::start()?;
    postgres.execute(&table_script("postgres")?)?;
    mariadb.execute(&table_script("mysql")?)?;
    let work = tempfile::tempdir()?;
    // `BENCH_KEEP_LOGS=1` keeps each run's config and host log (info level)
    // in a directory that is printed, to see where a slow run spent its time.
    let keep_logs = std::env::var_os("BENCH_KEEP_LOGS").is_some();
    let work_path = if keep_logs {
        let kept = work.keep();
        eprintln!("bench work directory kept: {}", kept.display());
        kept
    } else {
        work.path().to_path_buf()
    };

    let mut rows = Vec::new();
    let mut index = 0;
    for (database, plugin_name, driver, url) in [
        // The discarding test plugin: what the host and JetStream cost alone.
        ("none (discard)", "chaos", "postgres", postgres.url()),
        ("PostgreSQL", "postgres", "postgres", postgres.url()),
        ("MariaDB", "mysql", "mysql", mariadb.url()),
    ] {
        for batch_size in [1usize, 100, 1000] {
            let count = if batch_size == 1 { total / 10 } else { total };
            index += 1;
            let stream = format!("SQL{index}");
            let subject = format!("sql{index}.>");
            js.create_stream(&stream, &[subject.as_str()]).await?;
            js.publish_many(&format!("sql{index}.events"), count, payload)
                .await?;
            let name = format!("{plugin_name}-batch-{batch_size}");
            let seconds = run(
                &server,
                &js,
                &work_path,
                &name,
                &stream,
                &subject,
                plugin_name,
                driver,
                &url,
                batch_size,
                keep_logs,
            )
            .await?;
            rows.push((database, batch_size, count, seconds));
        }
    }

    println!();
    println!("| database | batch size | rows | seconds | rows/s | vs batch 100 |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (database, batch_size, count, seconds) in &rows {
        let rate = *count as f64 / seconds;
        let baseline = rows
            .iter()
            .find(|(d, b, _, _)| d == database && *b == 100)
            .map(|(_, _, c, s)| *c as f64 / s)
            .unwrap_or(f64::NAN);
        println!(
            "| {database} | {batch_size} | {count} | {seconds:.2} | {rate:.0} | {:.3} |",
            rate / baseline
        );
    }
    Ok(())
}

/// Drains `stream` with one `sinkhost run`; seconds from the first delivery
/// to nothing pending and nothing unACKed.
#[allow(clippy::too_many_arguments)]
async fn run(
    server: &NatsServer,
    js: &Js,
    work: &Path,
    name: &str,
    stream: &str,
    subject: &str,
    plugin_name: &str,
    driver: &str,
    url: &str,
    batch_size: usize,
    keep_logs: bool,
) -> anyhow::Result<f64> {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir)?;
    let (plugin_path, sink) = if plugin_name == "chaos" {
        (test_plugin("chaos"), json!({"behaviour": "discard"}))
    } else {
        (plugin(plugin_name), json!({"connection": "events"}))
    };
    let mut config = base_config(
        server,
        stream,
        subject,
        &plugin_path,
        &dir.join("out"),
        sink,
    );
    set(&mut config, "plugin.grants.files", json!([]));
    if plugin_name != "chaos" {
        set(
            &mut config,
            "plugin.grants.sql",
            json!([{"name": "events", "driver": driver, "url_env": "BENCH_DB_URL", "tables": ["nats_events"], "statements": ["insert"]}]),
        );
    }
    set(&mut config, "delivery.batch_size", json!(batch_size));
    set(&mut config, "delivery.batch_timeout_ms", json!(50));
    set(&mut config, "delivery.max_in_flight_batches", json!(2));
    set(
        &mut config,
        "logging.level",
        json!(if keep_logs { "info" } else { "warn" }),
    );
    set(&mut config, "plugin.limits.call_timeout_ms", json!(60_000));
    let path = write_config(&dir, &config);
    let mut host =
        Host::start_with_env(&path, &dir.join("sinkhost.log"), &[("BENCH_DB_URL", url)])?;
    let seconds = seconds_to_drain(js, stream, &host, Duration::from_secs(900)).await?;
    host.terminate(Duration::from_secs(30));
    Ok(seconds)
}
