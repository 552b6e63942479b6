//! The S3 sink (`plugins/s3`) end to end: real JetStream, the real
//! `sinkhost` binary, a real SeaweedFS checking SigV4 signatures the host
//! computes from its grant. The plugin never holds the keys.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};
use sinkhost_e2e::seaweedfs::{SeaweedFs, ACCESS_KEY, SECRET_KEY};
use sinkhost_e2e::*;

const STREAM: &str = "OBJECTS";
const BUCKET: &str = "events";

fn config_for(server: &NatsServer, s3: &SeaweedFs, work: &std::path::Path, sink: Value) -> Value {
    let mut sink = sink;
    sink["endpoint"] = json!(s3.s3_endpoint());
    sink["bucket"] = json!(BUCKET);
    let mut config = base_config(
        server,
        STREAM,
        "objects.>",
        &plugin("s3"),
        &work.join("out"),
        sink,
    );
    set(&mut config, "plugin.grants.files", json!([]));
    set(
        &mut config,
        "plugin.grants.http",
        json!([{"origin": s3.s3_endpoint(), "auth": {"aws_sigv4": {
            "region": "us-east-1", "service": "s3",
            "access_key_id_env": "S3_ACCESS_KEY_ID", "secret_access_key_env": "S3_SECRET_ACCESS_KEY"}},
            "allow_plaintext_credentials": true}]),
    );
    config
}

fn credentials(secret: &str) -> [(&'static str, String); 2] {
    [
        ("S3_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
        ("S3_SECRET_ACCESS_KEY", secret.to_string()),
    ]
}

fn start_host(path: &std::path::Path, log: &std::path::Path, secret: &str) -> Host {
    let env = credentials(secret);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Host::start_with_env(path, log, &env).expect("start")
}

async fn drained(js: &Js, timeout: Duration) -> bool {
    wait_until(timeout, || async {
        matches!(js.consumer_backlog(STREAM, "sinkhost").await, Ok((0, 0)))
    })
    .await
}

/// The stream sequence in a default per-message key (`...-<seq:020>.json`).
fn sequence_of(key: &str) -> u64 {
    key.rsplit('-')
        .next()
        .and_then(|tail| tail.strip_suffix(".json"))
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("unexpected key {key}"))
}

async fn setup(messages: usize) -> (SeaweedFs, NatsServer, Js) {
    let s3 = SeaweedFs::start().expect("seaweedfs");
    s3.create_bucket(BUCKET).expect("bucket");
    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["objects.>"])
        .await
        .expect("stream");
    js.publish_json("objects.created", messages)
        .await
        .expect("publish");
    (s3, server, js)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_becomes_one_object_signed_by_the_host() {
    const N: usize = 300;
    let (s3, server, js) = setup(N).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), &config_for(&server, &s3, dir.path(), json!({})));
    let mut host = start_host(&path, &dir.path().join("host.log"), SECRET_KEY);
    assert!(
        drained(&js, Duration::from_secs(90)).await,
        "not drained:\n{}\n{}",
        host.log(),
        s3.log()
    );
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );

    let objects = s3.list(BUCKET).expect("list");
    assert_eq!(objects.len(), N, "one object per message");
    let sequences: BTreeSet<u64> = objects.iter().map(|o| sequence_of(&o.key)).collect();
    assert_eq!(sequences, (1..=N as u64).collect());
    let first = &objects[0];
    assert!(
        first.key.starts_with(&format!("{STREAM}/")),
        "{}",
        first.key
    );
    let record: Value =
        serde_json::from_str(&s3.read(BUCKET, &first.key).expect("read")).expect("record");
    assert_eq!(record["schema"], "sinkhost.message.v1");
    assert_eq!(record["subject"], "objects.created");
    assert_eq!(record["payload"]["kind"], "test");
    assert_eq!(
        record["stream_sequence"].as_u64(),
        Some(sequence_of(&first.key))
    );
    assert!(
        !host.log().contains(SECRET_KEY),
        "the secret leaked into the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_objects_hold_every_message_once() {
    const N: usize = 450;
    let (s3, server, js) = setup(N).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(
        dir.path(),
        &config_for(&server, &s3, dir.path(), json!({"mode": "per_batch"})),
    );
    let mut host = start_host(&path, &dir.path().join("host.log"), SECRET_KEY);
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

    let objects = s3.list(BUCKET).expect("list");
    assert!(objects.len() < N, "batched: {} objects", objects.len());
    let mut sequences = Vec::new();
    for object in &objects {
        assert!(object.key.ends_with(".jsonl"), "{}", object.key);
        for line in s3.read(BUCKET, &object.key).expect("read").lines() {
            let record: Value = serde_json::from_str(line).expect("record");
            sequences.push(record["stream_sequence"].as_u64().expect("sequence"));
        }
    }
    sequences.sort_unstable();
    assert_eq!(
        sequences,
        (1..=N as u64).collect::<Vec<_>>(),
        "every message exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_host_restarts_without_losing_or_overwriting_an_object() {
    const N: usize = 3000;
    let (s3, server, js) = setup(N).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config_for(&server, &s3, dir.path(), json!({}));
    set(&mut config, "delivery.max_in_flight_batches", json!(2));
    let path = write_config(dir.path(), &config);
    let log = dir.path().join("host.log");

    let mut host = start_host(&path, &log, SECRET_KEY);
    let progressed = wait_until(Duration::from_secs(60), || async {
        s3.list(BUCKET).map(|o| o.len() >= 400).unwrap_or(false)
    })
    .await;
    assert!(progressed, "no progress:\n{}", host.log());
    host.kill9();
    let before: BTreeMap<String, (String, String)> = s3
        .list(BUCKET)
        .expect("list")
        .into_iter()
        .map(|o| (o.key, (o.md5, o.mtime)))
        .collect();
    assert!(before.len() < N, "killed before the end");

    let mut host = start_host(&path, &log, SECRET_KEY);
    assert!(
        drained(&js, Duration::from_secs(120)).await,
        "not drained:\n{}",
        host.log()
    );
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );

    let after = s3.list(BUCKET).expect("list");
    assert_eq!(after.len(), N, "exactly one object per message");
    let sequences: BTreeSet<u64> = after.iter().map(|o| sequence_of(&o.key)).collect();
    assert_eq!(sequences.len(), N);
    for object in &after {
        if let Some((md5, mtime)) = before.get(&object.key) {
            assert_eq!(
                (&object.md5, &object.mtime),
                (md5, mtime),
                "{} was overwritten",
                object.key
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_ack_nothing_until_they_are_fixed() {
    const N: usize = 50;
    let (s3, server, js) = setup(N).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config_for(&server, &s3, dir.path(), json!({}));
    set(&mut config, "delivery.max_retries", json!(10_000));
    let path = write_config(dir.path(), &config);
    let log = dir.path().join("host.log");

    let mut host = start_host(&path, &log, "not-the-secret");
    let refused = wait_until(Duration::from_secs(30), || async {
        host.log().contains("HTTP 403")
    })
    .await;
    assert!(refused, "the 403 is reported:\n{}", host.log());
    let unacked = js.unacked(STREAM, "sinkhost").await.expect("backlog");
    assert_eq!(unacked, N as u64, "nothing ACKed with wrong credentials");
    assert!(s3.list(BUCKET).expect("list").is_empty());
    assert!(
        host.log().contains("check the grant's credentials"),
        "{}",
        host.log()
    );
    assert!(!host.log().contains("not-the-secret"));
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );

    let mut host = start_host(&path, &log, SECRET_KEY);
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
    assert_eq!(
        s3.list(BUCKET).expect("list").len(),
        N,
        "everything stored once fixed"
    );
}
