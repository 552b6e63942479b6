//! Load and call timings of real components, for the docs and reviews:
//! `cargo test --release -p sinkhost --test plugin_timings -- --ignored --nocapture`.
//! Ignored by default: it measures, it does not check.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sinkhost::config::{FileAccess, FileGrant, Grants, PluginConfig, PluginLimits};
use sinkhost::envelope::{Envelope, MessageMetadata};
use sinkhost::plugin::{PluginHost, WriteOutcome};

/// Envelopes per batch and payload size, as in the toolchain notes.
const BATCH: u64 = 100;
const PAYLOAD_BYTES: usize = 1024;
/// Calls averaged per figure.
const CALLS: u32 = 200;

fn component(relative: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run `bash plugins/build.sh`",
        path.display()
    );
    path
}

fn batch(first: u64) -> Vec<Envelope> {
    (first..first + BATCH)
        .map(|seq| Envelope {
            subject: "events.a".into(),
            headers: vec![("Nats-Msg-Id".into(), format!("id-{seq}"))],
            payload: bytes::Bytes::from(vec![b'x'; PAYLOAD_BYTES]),
            stream: "EVENTS".into(),
            consumer: "sink".into(),
            stream_sequence: seq,
            consumer_sequence: seq,
            delivery_count: 1,
            pending: 0,
            timestamp_ns: 0,
            received_at_ns: 0,
            message_id: Some(format!("id-{seq}")),
            metadata: MessageMetadata::default(),
            custody: None,
        })
        .collect()
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

async fn measure(name: &str, path: PathBuf, grants: Grants, sink: serde_json::Value) {
    let cache = tempfile::tempdir().expect("tempdir");
    let config = PluginConfig {
        path,
        grants,
        limits: PluginLimits::default(),
        cache_dir: Some(cache.path().to_path_buf()),
    };
    let started = Instant::now();
    let host = PluginHost::load(&config, &sink).expect("load");
    let compile = started.elapsed();
    let started = Instant::now();
    let host_cached = PluginHost::load(&config, &sink).expect("load");
    let cached = started.elapsed();
    assert_eq!(
        host_cached.describe().cache,
        sinkhost::plugin::CacheOutcome::Hit
    );
    drop(host_cached);

    let mut init = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        host.check_init().await.expect("init");
        init += started.elapsed();
    }
    let pool = host.pool(1);
    let mut seq = 1;
    let outcome = pool.write_batch(&batch(seq)).await.expect("warm-up");
    assert!(
        matches!(outcome, WriteOutcome::Stored { ref failures } if failures.is_empty()),
        "{outcome:?}"
    );
    let mut total = Duration::ZERO;
    for _ in 0..CALLS {
        seq += BATCH;
        let messages = batch(seq);
        let started = Instant::now();
        pool.write_batch(&messages).await.expect("write");
        total += started.elapsed();
    }
    let per_call = total / CALLS;
    println!(
        "{name:<28} load+compile {:>10}  cached load {:>9}  instantiate+init {:>9}  write-batch({BATCH}x{PAYLOAD_BYTES}B) {:>9}  ({:.0} msg/s)",
        ms(compile),
        ms(cached),
        ms(init / 20),
        ms(per_call),
        BATCH as f64 / per_call.as_secs_f64()
    );
}

#[tokio::test]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn load_and_call_timings() {
    measure(
        "chaos.wasm (discard)",
        component("target/test-plugins/chaos.wasm"),
        Grants::default(),
        serde_json::json!({"behaviour": "discard"}),
    )
    .await;
    let out = tempfile::tempdir().expect("tempdir");
    let grants = Grants {
        files: vec![FileGrant {
            host_path: out.path().to_path_buf(),
            guest_path: "/out".into(),
            access: FileAccess::ReadWrite,
            quota_bytes: None,
        }],
        ..Grants::default()
    };
    measure(
        "file.wasm (segment, no fsync)",
        component("target/plugins/file.wasm"),
        grants.clone(),
        serde_json::json!({"directory": "/out", "layout": "segment", "fsync": false}),
    )
    .await;
    measure(
        "file.wasm (per msg, no fsync)",
        component("target/plugins/file.wasm"),
        grants,
        serde_json::json!({"directory": "/out/pm", "fsync": false}),
    )
    .await;
}
