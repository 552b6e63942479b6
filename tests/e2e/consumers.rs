//! The durable consumer and the DLQ under real operator settings (issue 15,
//! points 1, 2 and 4): an existing consumer under which a guarantee cannot
//! hold is refused with its field named and nothing delivered; a setting the
//! server did not apply is refused; dead letters of two consumers of one
//! stream, or of a re-created stream, are never swallowed as duplicates.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy};
use serde_json::{json, Value};
use sinkhost_e2e::*;

const STREAM: &str = "EVENTS";
const CONSUMER: &str = "sinkhost";

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
        js.create_stream("DLQ", &["dlq.events"])
            .await
            .expect("dlq stream");
        let dir = tempfile::tempdir().expect("tempdir");
        Self { server, js, dir }
    }

    /// A file sink config with a DLQ; `json_only` makes a non-JSON payload a
    /// permanent failure.
    fn config(&self, consumer: &str, out: &str) -> Value {
        let out_dir = self.dir.path().join(out);
        let mut config = base_config(
            &self.server,
            STREAM,
            "events.>",
            &plugin("file"),
            &out_dir,
            json!({"directory": "/out", "payload_mode": "json_only", "fsync": false}),
        );
        set(&mut config, "nats.consumer", json!(consumer));
        set(
            &mut config,
            "dead_letter",
            json!({"enabled": true, "subject": "dlq.events"}),
        );
        config
    }

    fn start(&self, config: &Value, name: &str) -> Host {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("host dir");
        let path = write_config(&dir, config);
        Host::start(&path, &dir.join("sinkhost.log")).expect("start sinkhost")
    }

    async fn create_consumer(&self, config: pull::Config) {
        let stream = self.js.context.get_stream(STREAM).await.expect("stream");
        stream.create_consumer(config).await.expect("consumer");
    }

    async fn dlq_records(&self) -> Vec<Value> {
        self.js
            .read_all("DLQ")
            .await
            .expect("dlq")
            .iter()
            .map(|message| serde_json::from_slice(&message.payload).expect("dlq json"))
            .collect()
    }

    /// Waits for `count` DLQ records, then waits a little longer so that an
    /// extra one would show.
    async fn wait_dlq(&self, count: u64) -> u64 {
        wait_until(Duration::from_secs(30), || async {
            self.js.stream_messages("DLQ").await.unwrap_or(0) >= count
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.js.stream_messages("DLQ").await.expect("dlq count")
    }
}

/// The consumer sinkhost would create, for the test to spoil one field.
fn good_consumer() -> pull::Config {
    pull::Config {
        durable_name: Some(CONSUMER.into()),
        ack_policy: AckPolicy::Explicit,
        filter_subject: "events.>".into(),
        ..Default::default()
    }
}

/// Starts the host against a consumer made with `consumer`: it must exit
/// non-zero naming `field`, and the consumer must have delivered nothing.
async fn refused_naming(consumer: pull::Config, field: &str, mode: &str) {
    let setup = Setup::new().await;
    // On events.b, so that every consumer here (filter events.> or
    // events.b) has all 20 pending.
    setup.js.publish_json("events.b", 20).await.expect("publish");
    setup.create_consumer(consumer).await;
    let mut config = setup.config(CONSUMER, "out");
    set(&mut config, "consumer_management.mode", json!(mode));
    let mut host = setup.start(&config, "host");
    let code = host.wait_exit(Duration::from_secs(30));
    let log = host.log();
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}:\n{log}");
    assert!(log.contains(field), "the refusal names `{field}`:\n{log}");
    let (pending, ack_pending) = setup
        .js
        .consumer_backlog(STREAM, CONSUMER)
        .await
        .expect("backlog");
    assert_eq!((pending, ack_pending), (20, 0), "nothing was pulled:\n{log}");
    assert!(
        files_below(&setup.dir.path().join("out")).is_empty(),
        "nothing was stored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_consumer_that_acks_all_at_once_is_refused() {
    let consumer = pull::Config {
        ack_policy: AckPolicy::All,
        ..good_consumer()
    };
    refused_naming(consumer, "ack_policy", "create_if_missing").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_consumer_that_never_acks_is_refused_even_when_only_bound() {
    let consumer = pull::Config {
        ack_policy: AckPolicy::None,
        ..good_consumer()
    };
    refused_naming(consumer, "ack_policy", "bind_only").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_headers_only_consumer_is_refused() {
    let consumer = pull::Config {
        headers_only: true,
        ..good_consumer()
    };
    refused_naming(consumer, "headers_only", "bind_only").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_consumer_with_another_filter_is_refused() {
    let consumer = pull::Config {
        filter_subject: "events.b".into(),
        ..good_consumer()
    };
    refused_naming(consumer, "filter_subjects", "create_if_missing").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redelivery_budget_that_ends_before_the_dlq_is_refused() {
    // max_retries 5 (the default): the sixth attempt dead-letters, so
    // JetStream must allow more than six deliveries.
    let consumer = pull::Config {
        max_deliver: 6,
        ..good_consumer()
    };
    refused_naming(consumer, "max_deliver", "bind_only").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_limits_below_the_hosts_pulls_are_refused() {
    let consumer = pull::Config {
        max_batch: 10,
        ..good_consumer()
    };
    refused_naming(consumer, "max_batch", "bind_only").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_only_without_a_consumer_exits_non_zero_and_creates_none() {
    let setup = Setup::new().await;
    let mut config = setup.config(CONSUMER, "out");
    set(&mut config, "consumer_management.mode", json!("bind_only"));
    let mut host = setup.start(&config, "host");
    let code = host.wait_exit(Duration::from_secs(30));
    assert!(matches!(code, Some(c) if c != 0), "{}", host.log());
    let stream = setup.js.context.get_stream(STREAM).await.expect("stream");
    assert!(
        stream.consumer_info(CONSUMER).await.is_err(),
        "bind_only created nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_keeps_what_the_config_does_not_set() {
    let setup = Setup::new().await;
    setup.js.publish_json("events.a", 10).await.expect("publish");
    setup
        .create_consumer(pull::Config {
            ack_wait: Duration::from_secs(10),
            max_deliver: 40,
            description: Some("the operator's".into()),
            ..good_consumer()
        })
        .await;
    let mut config = setup.config(CONSUMER, "out");
    set(&mut config, "consumer_management.mode", json!("reconcile"));
    set(&mut config, "consumer_management.ack_wait_seconds", json!(90));
    let mut host = setup.start(&config, "host");
    assert!(
        wait_until(Duration::from_secs(30), || async {
            files_below(&setup.dir.path().join("out")).len() == 10
        })
        .await,
        "{}",
        host.log()
    );
    assert_eq!(host.terminate(Duration::from_secs(20)), Some(0), "{}", host.log());
    let stream = setup.js.context.get_stream(STREAM).await.expect("stream");
    let info = stream.consumer_info(CONSUMER).await.expect("info");
    assert_eq!(info.config.ack_wait, Duration::from_secs(90), "set in the config");
    assert_eq!(info.config.max_deliver, 40, "not in the config: kept");
    assert_eq!(info.config.description.as_deref(), Some("the operator's"));
}

/// nats-server 2.9 accepts `filter_subjects` and ignores it: the consumer
/// would deliver the whole stream. The host reads the consumer back and
/// refuses it (and removes the consumer it just created).
#[tokio::test(flavor = "multi_thread")]
async fn filter_subjects_the_server_ignored_are_refused() {
    let setup = Setup::new().await;
    setup.js.publish_json("events.a", 5).await.expect("publish");
    setup.js.publish_json("events.other", 5).await.expect("publish");
    let mut config = setup.config(CONSUMER, "out");
    set(
        &mut config,
        "consumer_management.filter_subjects",
        json!(["events.a", "events.b"]),
    );
    let mut host = setup.start(&config, "host");
    let code = host.wait_exit(Duration::from_secs(30));
    let log = host.log();
    let version = std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).to_string())
        .unwrap_or_default();
    if !version.contains("v2.9.") {
        // A server that applies the filters: the host runs and stores only
        // events.a.
        assert!(
            wait_until(Duration::from_secs(30), || async {
                files_below(&setup.dir.path().join("out")).len() == 5
            })
            .await,
            "{log}"
        );
        return;
    }
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}:\n{log}");
    assert!(log.contains("filter_subjects"), "{log}");
    assert!(
        files_below(&setup.dir.path().join("out")).is_empty(),
        "events.other was never stored:\n{log}"
    );
    let stream = setup.js.context.get_stream(STREAM).await.expect("stream");
    assert!(
        stream.consumer_info(CONSUMER).await.is_err(),
        "the consumer the server got wrong was removed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_consumers_dead_lettering_one_message_get_a_record_each() {
    let setup = Setup::new().await;
    setup
        .js
        .publish_with_headers("events.bad", &[("Nats-Msg-Id", "one-id")], b"not json")
        .await
        .expect("publish");
    let mut a = setup.start(&setup.config("a", "out-a"), "host-a");
    assert_eq!(setup.wait_dlq(1).await, 1, "{}", a.log());
    let mut b = setup.start(&setup.config("b", "out-b"), "host-b");
    let count = setup.wait_dlq(2).await;
    assert_eq!(count, 2, "b's dead letter was swallowed:\n{}", b.log());
    for host in [&mut a, &mut b] {
        assert_eq!(host.terminate(Duration::from_secs(20)), Some(0), "{}", host.log());
    }
    let consumers: Vec<Value> = setup
        .dlq_records()
        .await
        .iter()
        .map(|record| record["consumer"].clone())
        .collect();
    assert_eq!(consumers, vec![json!("a"), json!("b")]);
    for consumer in ["a", "b"] {
        assert_eq!(
            setup.js.unacked(STREAM, consumer).await.expect("unacked"),
            0,
            "{consumer} ACKed after its own confirmed DLQ publish"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recreated_stream_gets_its_own_dead_letters() {
    let setup = Setup::new().await;
    let config = setup.config(CONSUMER, "out");
    setup
        .js
        .publish_with_headers("events.bad", &[], b"not json 1")
        .await
        .expect("publish");
    let mut host = setup.start(&config, "host-1");
    assert_eq!(setup.wait_dlq(1).await, 1, "{}", host.log());
    assert_eq!(host.terminate(Duration::from_secs(20)), Some(0), "{}", host.log());

    // Same name, sequences start at 1 again, well inside the DLQ stream's
    // duplicate window (120 s).
    setup.js.context.delete_stream(STREAM).await.expect("delete");
    setup
        .js
        .create_stream(STREAM, &["events.>"])
        .await
        .expect("stream again");
    setup
        .js
        .publish_with_headers("events.bad", &[], b"not json 2")
        .await
        .expect("publish");
    let mut host = setup.start(&config, "host-2");
    let count = setup.wait_dlq(2).await;
    assert_eq!(count, 2, "the new stream's dead letter was swallowed:\n{}", host.log());
    assert_eq!(host.terminate(Duration::from_secs(20)), Some(0), "{}", host.log());
    assert_eq!(setup.js.unacked(STREAM, CONSUMER).await.expect("unacked"), 0);
}
