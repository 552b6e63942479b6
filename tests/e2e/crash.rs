//! Crash safety: `kill -9` the host again and again while it works through
//! 50,000 messages; at the end every message has exactly one record.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;
use sinkhost_e2e::*;

const STREAM: &str = "CRASH";
const TOTAL: u64 = 50_000;
const KILLS: usize = 6;

fn sequence_of(path: &std::path::Path) -> Option<u64> {
    // `<subject dir>/CRASH-00000000000000000042.json`
    let name = path.file_stem()?.to_str()?;
    name.strip_prefix("CRASH-")?.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_repeatedly_loses_nothing_and_duplicates_nothing() {
    kill_9_loop("atomic").await;
}

/// Direct writes can leave a torn file under the final name: its redelivery
/// must repair it.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_with_direct_writes_repairs_torn_files() {
    kill_9_loop("direct").await;
}

async fn kill_9_loop(write_mode: &str) {
    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["crash.>"])
        .await
        .expect("stream");
    js.publish_many("crash.events", TOTAL as usize, |i| {
        format!(r#"{{"n":{i},"pad":"{}"}}"#, "x".repeat(200)).into_bytes()
    })
    .await
    .expect("publish");

    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let mut config = base_config(
        &server,
        STREAM,
        "crash.>",
        &plugin("file"),
        &out,
        json!({"directory": "/out", "fsync": false, "write_mode": write_mode}),
    );
    // Unacked messages of a killed host come back after ack_wait: keep it short.
    set(
        &mut config,
        "consumer_management.ack_wait_seconds",
        json!(2.0),
    );
    // Heartbeats must come well inside ack_wait (the config refuses less).
    set(&mut config, "delivery.in_progress.interval_ms", json!(500));
    set(&mut config, "delivery.max_in_flight_batches", json!(2));
    let config_path = write_config(dir.path(), &config);
    let log_path = dir.path().join("sinkhost.log");

    let mut kills = 0;
    let mut last_count = 0;
    while kills < KILLS {
        let mut host = Host::start(&config_path, &log_path).expect("start");
        // Let it make some progress, then kill it mid-flight.
        let progressed = wait_until(Duration::from_secs(60), || async {
            files_below(&out).len() >= last_count + 500
        })
        .await;
        let now = files_below(&out).len();
        if !progressed || now as u64 >= TOTAL {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20 + 37 * kills as u64)).await;
        host.kill9();
        kills += 1;
        last_count = files_below(&out).len();
    }

    // A final, uninterrupted run finishes the work.
    let mut host = Host::start(&config_path, &log_path).expect("start");
    let deadline = Instant::now() + Duration::from_secs(300);
    let drained = wait_until(Duration::from_secs(300), || async {
        matches!(js.consumer_backlog(STREAM, "sinkhost").await, Ok((0, 0)))
    })
    .await;
    assert!(
        drained && Instant::now() < deadline,
        "not drained:\n{}",
        host.log()
    );
    assert_eq!(host.terminate(Duration::from_secs(30)), Some(0));
    assert!(
        kills >= 3,
        "the host finished before it could be killed enough times ({kills})"
    );

    let files = files_below(&out);
    let sequences: BTreeSet<u64> = files.iter().filter_map(|f| sequence_of(f)).collect();
    assert_eq!(
        files.len() as u64,
        TOTAL,
        "exactly one record per message (killed {kills} times)"
    );
    assert_eq!(sequences.len() as u64, TOTAL, "no duplicate records");
    assert_eq!(sequences.first(), Some(&1));
    assert_eq!(sequences.last(), Some(&TOTAL));
    // Every record is complete JSON: a file torn by a kill was never
    // reported stored, so its redelivery repaired it.
    for file in &files {
        let bytes = std::fs::read(file).expect("read");
        serde_json::from_slice::<serde_json::Value>(&bytes).expect("complete record");
    }
}
