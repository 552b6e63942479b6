//! Hostile plugins: a message that makes the plugin loop forever, allocate
//! 1 GiB, escape its directory or panic. In every case the host keeps running,
//! the poisoned batch is not ACKed but redelivered (and dead-lettered after
//! `max_retries`), and healthy batches keep succeeding.

use std::time::Duration;

use serde_json::{json, Value};
use sinkhost_e2e::*;

const STREAM: &str = "HOSTILE";
const HEALTHY: usize = 30;

struct Outcome {
    dlq: Vec<Value>,
    log: String,
    recorded: usize,
}

/// Publishes one poison message then healthy ones, runs the chaos plugin
/// with `behaviour` applied to the poison subject only, waits until the
/// consumer is drained.
async fn run_poisoned(behaviour: &str, limits: Value) -> Outcome {
    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["hostile.>"])
        .await
        .expect("stream");
    js.create_stream("DLQ", &["dlq.hostile"])
        .await
        .expect("dlq");
    js.publish_json("hostile.poison", 1).await.expect("poison");
    js.publish_json("hostile.ok", HEALTHY)
        .await
        .expect("healthy");

    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let sink =
        json!({"behaviour": behaviour, "only_subjects": ["hostile.poison"], "directory": "/out"});
    let mut config = base_config(
        &server,
        STREAM,
        "hostile.>",
        &test_plugin("chaos"),
        &out,
        sink,
    );
    set(&mut config, "delivery.batch_size", json!(1));
    set(&mut config, "delivery.max_retries", json!(2));
    set(&mut config, "delivery.retry_backoff_ms", json!(50));
    set(&mut config, "delivery.retry_backoff_max_ms", json!(200));
    set(
        &mut config,
        "dead_letter",
        json!({"enabled": true, "subject": "dlq.hostile"}),
    );
    set(&mut config, "plugin.limits", limits);
    set(&mut config, "plugin.limits.failure_backoff_ms", json!(20));
    let path = write_config(dir.path(), &config);
    let mut host = Host::start(&path, &dir.path().join("sinkhost.log")).expect("start");

    let drained = wait_until(Duration::from_secs(90), || async {
        matches!(js.consumer_backlog(STREAM, "sinkhost").await, Ok((0, 0)))
    })
    .await;
    assert!(drained, "not drained:\n{}", host.log());
    assert!(
        host.is_running(),
        "the host must survive a hostile plugin:\n{}",
        host.log()
    );
    let recorded = files_below(&out).len();
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );
    let dlq = js
        .read_all("DLQ")
        .await
        .expect("dlq")
        .iter()
        .map(|m| serde_json::from_slice(&m.payload).expect("dlq json"))
        .collect();
    Outcome {
        dlq,
        log: host.log(),
        recorded,
    }
}

fn assert_poison_dead_lettered(outcome: &Outcome, error_type: &str) {
    assert_eq!(
        outcome.recorded, HEALTHY,
        "every healthy message is stored:\n{}",
        outcome.log
    );
    assert_eq!(
        outcome.dlq.len(),
        1,
        "only the poison is dead-lettered:\n{}",
        outcome.log
    );
    let record = &outcome.dlq[0];
    assert_eq!(record["subject"], "hostile.poison");
    assert_eq!(record["error_type"], error_type, "{record}");
    assert_eq!(
        record["redelivered"], true,
        "the poison must have been redelivered first"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_infinite_loop_is_stopped_at_the_deadline() {
    let outcome = run_poisoned("loop", json!({"memory_mb": 64, "call_timeout_ms": 500})).await;
    assert_poison_dead_lettered(&outcome, "PluginFaultError");
    let error = outcome.dlq[0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        error.contains("deadline") || error.contains("timed out") || error.contains("timeout"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_1_gib_allocation_is_refused_by_the_memory_limit() {
    let outcome = run_poisoned("alloc", json!({"memory_mb": 64, "call_timeout_ms": 10000})).await;
    assert_poison_dead_lettered(&outcome, "PluginFaultError");
    let error = outcome.dlq[0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(error.contains("memory"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_is_contained() {
    let outcome = run_poisoned("panic", json!({"memory_mb": 64, "call_timeout_ms": 10000})).await;
    assert_poison_dead_lettered(&outcome, "PluginFaultError");
}

#[tokio::test(flavor = "multi_thread")]
async fn escaping_the_granted_directory_fails() {
    // The chaos plugin reports success if ANY escape worked, so a stored
    // poison message would mean the sandbox leaked.
    let outcome = run_poisoned("escape", json!({"memory_mb": 64, "call_timeout_ms": 10000})).await;
    assert_poison_dead_lettered(&outcome, "RetriesExhaustedError");
    let error = outcome.dlq[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("/etc/passwd"),
        "the plugin lists what it tried: {error}"
    );
}
