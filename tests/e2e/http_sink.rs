//! The HTTP sink (`plugins/http`) end to end: real JetStream, the real
//! `sinkhost` binary, a real HTTP server on 127.0.0.1 that records what it
//! receives and fails on request.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use sinkhost_e2e::http_receiver::{Answer, HttpReceiver};
use sinkhost_e2e::*;

const STREAM: &str = "HOOKS";
const TOKEN: &str = "hook-token-5c2e";

/// A config for the HTTP sink posting to `receiver`, with a bearer token
/// the host adds.
fn config_for(
    server: &NatsServer,
    receiver: &HttpReceiver,
    work: &std::path::Path,
    sink: Value,
) -> Value {
    let out = work.join("out");
    let mut config = base_config(server, STREAM, "hooks.>", &plugin("http"), &out, sink);
    set(&mut config, "plugin.grants.files", json!([]));
    set(
        &mut config,
        "plugin.grants.http",
        json!([{"origin": receiver.origin(), "auth": {"bearer_env": "HOOK_TOKEN"}, "allow_plaintext_credentials": true}]),
    );
    config
}

fn keys(receiver: &HttpReceiver) -> BTreeSet<String> {
    receiver
        .requests()
        .iter()
        .filter_map(|r| r.header("idempotency-key").map(str::to_string))
        .collect()
}

async fn drained(js: &Js) -> bool {
    wait_until(Duration::from_secs(90), || async {
        matches!(js.consumer_backlog(STREAM, "sinkhost").await, Ok((0, 0)))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_becomes_one_request_with_its_key_metadata_and_the_hosts_token() {
    const N: usize = 300;
    let receiver = HttpReceiver::start().await.expect("receiver");
    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["hooks.>"])
        .await
        .expect("stream");
    js.publish_json("hooks.order", N).await.expect("publish");

    let dir = tempfile::tempdir().expect("tempdir");
    let sink =
        json!({"url": format!("{}/ingest", receiver.origin()), "headers": {"X-Tenant": "t1"}});
    let path = write_config(
        dir.path(),
        &config_for(&server, &receiver, dir.path(), sink),
    );
    let mut host = Host::start_with_env(
        &path,
        &dir.path().join("host.log"),
        &[("HOOK_TOKEN", TOKEN)],
    )
    .expect("start");
    assert!(drained(&js).await, "not drained:\n{}", host.log());
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );

    let requests = receiver.requests();
    assert_eq!(requests.len(), N, "one request per message");
    let expected: BTreeSet<String> = (1..=N).map(|seq| format!("{STREAM}-{seq}")).collect();
    assert_eq!(keys(&receiver), expected);
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/ingest");
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(request.header("x-sinkhost-subject"), Some("hooks.order"));
        assert_eq!(request.header("x-sinkhost-stream"), Some(STREAM));
        assert_eq!(request.header("x-tenant"), Some("t1"));
        let body: Value =
            serde_json::from_slice(&request.body).expect("payload is the published JSON");
        assert_eq!(body["kind"], "test");
        let sequence = request
            .header("x-sinkhost-sequence")
            .expect("sequence header");
        assert_eq!(
            request.header("idempotency-key"),
            Some(format!("{STREAM}-{sequence}").as_str())
        );
    }
    assert!(!host.log().contains(TOKEN), "the token leaked into the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_mode_sends_json_lines_one_request_per_batch() {
    const N: usize = 250;
    let receiver = HttpReceiver::start().await.expect("receiver");
    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["hooks.>"])
        .await
        .expect("stream");
    js.publish_json("hooks.order", N).await.expect("publish");

    let dir = tempfile::tempdir().expect("tempdir");
    let sink =
        json!({"url": format!("{}/bulk", receiver.origin()), "mode": "json_lines", "gzip": true});
    let path = write_config(
        dir.path(),
        &config_for(&server, &receiver, dir.path(), sink),
    );
    let mut host = Host::start_with_env(
        &path,
        &dir.path().join("host.log"),
        &[("HOOK_TOKEN", TOKEN)],
    )
    .expect("start");
    assert!(drained(&js).await, "not drained:\n{}", host.log());
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );

    let mut sequences = BTreeSet::new();
    let requests = receiver.requests();
    assert!(requests.len() < N, "batched: {} requests", requests.len());
    for request in &requests {
        assert_eq!(request.header("content-encoding"), Some("gzip"));
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(request.body.as_slice()),
            &mut text,
        )
        .expect("gzip body");
        for line in text.lines() {
            let record: Value = serde_json::from_str(line).expect("record");
            assert_eq!(record["payload"]["kind"], "test");
            sequences.insert(record["stream_sequence"].as_u64().expect("sequence"));
        }
    }
    assert_eq!(sequences, (1..=N as u64).collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_acks_nothing_and_loses_nothing_and_a_400_dead_letters_only_its_message() {
    const N: usize = 40;
    let receiver = HttpReceiver::start().await.expect("receiver");
    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["hooks.>"])
        .await
        .expect("stream");
    js.create_stream("DLQ", &["dlq.hooks"]).await.expect("dlq");

    // Outage first: 503 for 10 seconds.
    receiver.fail_for(503, Duration::from_secs(10));
    js.publish_json("hooks.order", N).await.expect("publish");
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = json!({"url": format!("{}/ingest", receiver.origin())});
    let mut config = config_for(&server, &receiver, dir.path(), sink);
    set(&mut config, "delivery.max_retries", json!(10_000));
    set(
        &mut config,
        "dead_letter",
        json!({"enabled": true, "subject": "dlq.hooks"}),
    );
    let path = write_config(dir.path(), &config);
    let mut host = Host::start_with_env(
        &path,
        &dir.path().join("host.log"),
        &[("HOOK_TOKEN", TOKEN)],
    )
    .expect("start");

    tokio::time::sleep(Duration::from_secs(5)).await;
    let unacked = js.unacked(STREAM, "sinkhost").await.expect("backlog");
    assert_eq!(unacked, N as u64, "nothing may be ACKed during the outage");
    assert!(!receiver.requests().is_empty(), "the sink kept trying");
    assert!(
        drained(&js).await,
        "not drained after the outage:\n{}",
        host.log()
    );
    let expected: BTreeSet<String> = (1..=N).map(|seq| format!("{STREAM}-{seq}")).collect();
    assert_eq!(keys(&receiver), expected, "every message arrived");
    assert!(
        js.read_all("DLQ").await.expect("dlq").is_empty(),
        "nothing dead-lettered by an outage"
    );

    // Then one message the server rejects with 400: it alone goes to the DLQ.
    receiver.answer(Answer {
        status: 400,
        when_body_contains: Some("POISON".into()),
        ..Answer::default()
    });
    let before = receiver.requests().len();
    for i in 0..5 {
        let body = if i == 2 {
            json!({"kind": "POISON"})
        } else {
            json!({"kind": "test", "i": i})
        };
        js.publish_with_headers("hooks.order", &[], body.to_string().as_bytes())
            .await
            .expect("publish");
    }
    assert!(
        drained(&js).await,
        "not drained after the poison:\n{}",
        host.log()
    );
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );
    let dlq = js.read_all("DLQ").await.expect("dlq");
    assert_eq!(dlq.len(), 1, "only the rejected message is dead-lettered");
    let record: Value = serde_json::from_slice(&dlq[0].payload).expect("dlq json");
    assert_eq!(record["stream_sequence"], (N + 3) as u64, "{record}");
    assert!(record.to_string().contains("HTTP 400"), "{record}");
    assert!(receiver.requests().len() >= before + 5);
}
