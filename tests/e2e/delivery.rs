//! Delivery guarantees end to end: real nats-server, real sinkhost binary,
//! real file sink component.

use std::time::Duration;

use serde_json::{json, Value};
use sinkhost_e2e::*;

const STREAM: &str = "EVENTS";

struct Setup {
    server: NatsServer,
    js: Js,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Self {
        let server = NatsServer::start().expect("nats-server");
        let js = Js::connect(&server).await.expect("connect");
        js.create_stream(STREAM, &["events.>"])
            .await
            .expect("stream");
        let dir = tempfile::tempdir().expect("tempdir");
        Self { server, js, dir }
    }

    fn out(&self) -> std::path::PathBuf {
        self.dir.path().join("out")
    }

    fn file_config(&self, sink: Value) -> Value {
        base_config(
            &self.server,
            STREAM,
            "events.>",
            &plugin("file"),
            &self.out(),
            sink,
        )
    }

    fn start(&self, config: &Value) -> Host {
        let path = write_config(self.dir.path(), config);
        Host::start(&path, &self.dir.path().join("sinkhost.log")).expect("start sinkhost")
    }

    async fn drained(&self) -> bool {
        matches!(
            self.js.consumer_backlog(STREAM, "sinkhost").await,
            Ok((0, 0))
        )
    }

    async fn wait_drained(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.drained()).await
    }
}

fn stat(log: &str, name: &str) -> u64 {
    // The final counters line: `StatsSnapshot { fetched: 1, stored: 1, ... }`.
    log.rsplit("StatsSnapshot")
        .next()
        .and_then(|tail| tail.split(&format!("{name}: ")).nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn happy_path_writes_one_record_per_message_and_acks_all() {
    let setup = Setup::new().await;
    setup
        .js
        .publish_json("events.orders", 1_000)
        .await
        .expect("publish");
    let mut host = setup.start(&setup.file_config(json!({"directory": "/out", "fsync": true})));

    assert!(
        setup.wait_drained(Duration::from_secs(60)).await,
        "consumer not drained:\n{}",
        host.log()
    );
    let files = files_below(&setup.out());
    assert_eq!(files.len(), 1_000, "{}", host.log());
    let first = setup
        .out()
        .join("events.orders/EVENTS-00000000000000000001.json");
    let record: Value =
        serde_json::from_slice(&std::fs::read(&first).expect("record")).expect("json");
    assert_eq!(record["schema"], "nats_sinks.file.message.v1");
    assert_eq!(record["stream_sequence"], 1);
    assert_eq!(record["payload"], json!({"n": 0, "kind": "test"}));
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );
    assert_eq!(stat(&host.log(), "stored"), 1_000, "{}", host.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_failures_are_retried_until_they_succeed() {
    let setup = Setup::new().await;
    setup
        .js
        .publish_json("events.retry", 50)
        .await
        .expect("publish");
    let config = base_config(
        &setup.server,
        STREAM,
        "events.>",
        &test_plugin("chaos"),
        &setup.out(),
        json!({"behaviour": "transient_then_ok", "count": 2, "directory": "/out"}),
    );
    let mut host = setup.start(&config);
    assert!(
        setup.wait_drained(Duration::from_secs(60)).await,
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
    assert!(stat(&log, "retried") >= 1, "expected retries:\n{log}");
    assert_eq!(stat(&log, "stored"), 50, "{log}");
    assert_eq!(stat(&log, "dead_lettered"), 0, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_failure_dead_letters_that_message_alone() {
    let setup = Setup::new().await;
    setup
        .js
        .create_stream("DLQ", &["dlq.events"])
        .await
        .expect("dlq stream");
    setup
        .js
        .publish_json("events.mixed", 10)
        .await
        .expect("publish");
    setup
        .js
        .publish_with_headers(
            "events.mixed",
            &[("Nats-Msg-Id", "bad-1"), ("Nats-Sinks-Priority", "urgent")],
            b"not json",
        )
        .await
        .expect("publish bad");
    setup
        .js
        .publish_json("events.mixed", 10)
        .await
        .expect("publish");

    let mut config = setup
        .file_config(json!({"directory": "/out", "payload_mode": "json_only", "fsync": false}));
    set(
        &mut config,
        "dead_letter",
        json!({"enabled": true, "subject": "dlq.events"}),
    );
    let mut host = setup.start(&config);
    assert!(
        setup.wait_drained(Duration::from_secs(60)).await,
        "not drained:\n{}",
        host.log()
    );

    assert_eq!(
        files_below(&setup.out()).len(),
        20,
        "neighbours must be written:\n{}",
        host.log()
    );
    let dead = setup.js.read_all("DLQ").await.expect("read dlq");
    assert_eq!(dead.len(), 1, "{}", host.log());
    let record = &dead[0];
    let headers = record.headers.clone();
    assert_eq!(
        headers.get("Nats-Sinks-Error-Type").map(|v| v.as_str()),
        Some("PermanentSinkError")
    );
    assert_eq!(
        headers
            .get("Nats-Sinks-Original-Subject")
            .map(|v| v.as_str()),
        Some("events.mixed")
    );
    let body: Value = serde_json::from_slice(&record.payload).expect("dlq body is JSON");
    assert_eq!(body["subject"], "events.mixed");
    assert_eq!(body["stream"], STREAM);
    assert_eq!(body["stream_sequence"], 11);
    assert_eq!(body["message_id"], "bad-1");
    assert_eq!(body["priority"], "urgent");
    assert_eq!(body["idempotency_key"], "stream-sequence:EVENTS:11");
    assert_eq!(body["payload_base64"], "bm90IGpzb24=");
    assert_eq!(body["error_type"], "PermanentSinkError");
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dlq_without_a_stream_acks_nothing_that_failed() {
    let setup = Setup::new().await;
    setup
        .js
        .publish_json("events.mixed", 5)
        .await
        .expect("publish");
    setup
        .js
        .publish_with_headers("events.mixed", &[], b"not json")
        .await
        .expect("publish bad");
    let mut config = setup
        .file_config(json!({"directory": "/out", "payload_mode": "json_only", "fsync": false}));
    set(
        &mut config,
        "dead_letter",
        json!({"enabled": true, "subject": "dlq.nowhere", "publish_timeout_ms": 500}),
    );
    let mut host = setup.start(&config);

    // The five good ones are stored; the bad one can't be dead-lettered, so it
    // must stay unACKed however long we wait.
    let five_written = wait_until(Duration::from_secs(30), || async {
        files_below(&setup.out()).len() == 5
    })
    .await;
    assert!(five_written, "{}", host.log());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let unacked = setup.js.unacked(STREAM, "sinkhost").await.expect("backlog");
    assert_eq!(
        unacked,
        1,
        "the failed message must not be ACKed:\n{}",
        host.log()
    );
    assert!(host.is_running(), "host must keep running:\n{}", host.log());

    // Once a stream captures the DLQ subject, it goes through and is ACKed.
    setup
        .js
        .create_stream("DLQ", &["dlq.nowhere"])
        .await
        .expect("dlq stream");
    assert!(
        setup.wait_drained(Duration::from_secs(60)).await,
        "not drained after DLQ appeared:\n{}",
        host.log()
    );
    assert_eq!(setup.js.stream_messages("DLQ").await.expect("dlq"), 1);
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );
    assert!(
        stat(&host.log(), "dead_letter_failures") >= 1,
        "{}",
        host.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_batches_and_exits_zero() {
    let setup = Setup::new().await;
    const TOTAL: usize = 20_000;
    setup
        .js
        .publish_json("events.stop", TOTAL)
        .await
        .expect("publish");
    let mut config = setup.file_config(json!({"directory": "/out", "fsync": false}));
    set(&mut config, "delivery.max_in_flight_batches", json!(2));
    let mut host = setup.start(&config);
    let started = wait_until(Duration::from_secs(30), || async {
        files_below(&setup.out()).len() >= 500
    })
    .await;
    assert!(started, "{}", host.log());

    assert_eq!(
        host.terminate(Duration::from_secs(30)),
        Some(0),
        "{}",
        host.log()
    );
    let (pending, ack_pending) = setup
        .js
        .consumer_backlog(STREAM, "sinkhost")
        .await
        .expect("backlog");
    assert_eq!(
        ack_pending,
        0,
        "nothing may stay in flight after a graceful stop:\n{}",
        host.log()
    );
    let written = files_below(&setup.out()).len() as u64;
    assert_eq!(
        written + pending,
        TOTAL as u64,
        "every written message is ACKed, every other one pending"
    );
    assert!(
        pending > 0,
        "the stop came too late to prove anything; raise TOTAL"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nats_restart_mid_run_loses_and_duplicates_nothing() {
    let mut setup = Setup::new().await;
    const TOTAL: usize = 5_000;
    setup
        .js
        .publish_json("events.restart", TOTAL)
        .await
        .expect("publish");
    let mut config = setup.file_config(json!({"directory": "/out", "fsync": false}));
    set(
        &mut config,
        "consumer_management.ack_wait_seconds",
        json!(2.0),
    );
    // Heartbeats must come well inside ack_wait (the config refuses less).
    set(&mut config, "delivery.in_progress.interval_ms", json!(500));
    set(&mut config, "delivery.max_in_flight_batches", json!(2));
    set(&mut config, "nats.max_reconnect_attempts", json!(-1));
    set(&mut config, "nats.reconnect_time_wait_seconds", json!(0));
    let mut host = setup.start(&config);
    let started = wait_until(Duration::from_secs(30), || async {
        files_below(&setup.out()).len() >= 300
    })
    .await;
    assert!(started, "{}", host.log());

    setup.server.restart().expect("restart nats-server");
    // The old client connection is gone; reconnect ours too.
    setup.js = Js::connect(&setup.server).await.expect("reconnect");
    assert!(
        setup.wait_drained(Duration::from_secs(120)).await,
        "not drained after restart:\n{}",
        host.log()
    );
    assert!(host.is_running(), "{}", host.log());
    let files = files_below(&setup.out());
    assert_eq!(
        files.len(),
        TOTAL,
        "exactly one record per message:\n{}",
        host.log()
    );
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );
    assert!(
        host.log().contains("disconnected from NATS"),
        "the host should have noticed:\n{}",
        host.log()
    );
}

/// A write slower than `ack_wait`: in-progress heartbeats keep JetStream from
/// redelivering it to the other worker; with heartbeats off it is redelivered
/// (the control). Deliveries are counted by the host's `fetched` counter.
#[tokio::test(flavor = "multi_thread")]
async fn in_progress_heartbeats_prevent_redelivery_of_a_slow_write() {
    async fn fetched(heartbeats: bool) -> u64 {
        let setup = Setup::new().await;
        setup
            .js
            .publish_json("events.slow", 3)
            .await
            .expect("publish");
        let sink = json!({"behaviour": "slow", "sleep_ms": 2_500, "directory": "/out"});
        let mut config = base_config(
            &setup.server,
            STREAM,
            "events.>",
            &test_plugin("chaos"),
            &setup.out(),
            sink,
        );
        set(
            &mut config,
            "consumer_management.ack_wait_seconds",
            json!(1.0),
        );
        set(&mut config, "delivery.max_in_flight_batches", json!(2));
        set(
            &mut config,
            "delivery.in_progress",
            json!({"enabled": heartbeats, "interval_ms": 300}),
        );
        let mut host = setup.start(&config);
        assert!(
            setup.wait_drained(Duration::from_secs(60)).await,
            "not drained:\n{}",
            host.log()
        );
        assert_eq!(
            host.terminate(Duration::from_secs(30)),
            Some(0),
            "{}",
            host.log()
        );
        stat(&host.log(), "fetched")
    }
    assert_eq!(fetched(true).await, 3, "heartbeats must prevent redelivery");
    assert!(
        fetched(false).await > 3,
        "control: without heartbeats the slow write is redelivered"
    );
}
