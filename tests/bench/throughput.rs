//! Throughput bench: one nats-server, one stream of 256-byte JSON messages,
//! several consumers of it, each drained by a different contender:
//!
//! - native: an in-process async-nats consumer that only fetches and ACKs
//!   (the ceiling), and two that also write one file per message the way
//!   the file sink does, in each `write_mode` (atomic: temporary file + link;
//!   direct: create the final name exclusively; no fsync);
//! - sinkhost with the discarding test plugin, and with the file sink
//!   per-message (fsync off in both write modes, fsync on) and in segment
//!   layout (fsync on);
//! - sinkhost on a stream of HMAC-signed messages with authenticity,
//!   encryption and custody off, then on (discarding plugin and file sink).
//!
//! Prints msg/s, the ratio to the native ceiling, peak RSS, and the host's
//! start-up time to the first fetch with a cold and a warm compile cache.
//! Run: `cargo bench -p sinkhost-e2e --bench throughput` (after building the
//! host and the plugins). `BENCH_MESSAGES` overrides the message count.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, AckKind};
use base64::Engine as _;
use futures::StreamExt as _;
use serde_json::{json, Value};
use sinkhost_e2e::*;

const STREAM: &str = "BENCH";
const SUBJECT: &str = "bench.events";
const PAYLOAD_BYTES: usize = 256;
const IN_FLIGHT: usize = 2;
const BATCH: usize = 100;

struct Row {
    name: String,
    messages: u64,
    seconds: f64,
    peak_rss_mb: Option<f64>,
}

impl Row {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }
}

fn payload(i: usize) -> Vec<u8> {
    bench_payload(i, PAYLOAD_BYTES)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total: usize = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let fsync_total: usize = std::env::var("BENCH_FSYNC_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let server = NatsServer::start()?;
    let js = Js::connect(&server).await?;
    js.create_stream(STREAM, &["bench.>"]).await?;
    js.create_stream("BENCHSMALL", &["small.>"]).await?;
    js.create_stream("BENCHSIG", &["sig.>"]).await?;
    let started = Instant::now();
    js.publish_many(SUBJECT, total, payload).await?;
    publish_signed(&js, total).await?;
    js.publish_many("small.events", fsync_total, payload)
        .await?;
    eprintln!(
        "published {total} + {fsync_total} messages of {PAYLOAD_BYTES} bytes in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let work = tempfile::tempdir()?;

    let mut rows = Vec::new();
    rows.push(native(&js, "native-ack", total, None).await?);
    rows.push(
        native(
            &js,
            "native-files",
            total,
            Some((work.path().join("native-out"), WriteMode::Atomic)),
        )
        .await?,
    );
    rows.push(
        native(
            &js,
            "native-files-direct",
            total,
            Some((work.path().join("native-out-direct"), WriteMode::Direct)),
        )
        .await?,
    );
    let discard = json!({"behaviour": "discard"});
    rows.push(
        host_run(
            &server,
            &js,
            work.path(),
            "sinkhost-discard",
            STREAM,
            total,
            &test_plugin("chaos"),
            discard,
        )
        .await?,
    );
    let per_message = json!({"directory": "/out", "fsync": false});
    rows.push(
        host_run(
            &server,
            &js,
            work.path(),
            "sinkhost-file-nofsync",
            STREAM,
            total,
            &plugin("file"),
            per_message,
        )
        .await?,
    );
    let direct = json!({"directory": "/out", "fsync": false, "write_mode": "direct"});
    rows.push(
        host_run(
            &server,
            &js,
            work.path(),
            "sinkhost-file-nofsync-direct",
            STREAM,
            total,
            &plugin("file"),
            direct,
        )
        .await?,
    );
    let segment = json!({"directory": "/out", "fsync": true, "layout": "segment"});
    rows.push(
        host_run(
            &server,
            &js,
            work.path(),
            "sinkhost-segment-fsync",
            STREAM,
            total,
            &plugin("file"),
            segment.clone(),
        )
        .await?,
    );
    rows.push(
        host_run(
            &server,
            &js,
            work.path(),
            "sinkhost-segment-fsync-b1000x4",
            STREAM,
            total,
            &plugin("file"),
            segment,
        )
        .await?,
    );
    let fsync = json!({"directory": "/out", "fsync": true});
    rows.push(
        host_run(
            &server,
            &js,
            work.path(),
            "sinkhost-file-fsync",
            "BENCHSMALL",
            fsync_total,
            &plugin("file"),
            fsync,
        )
        .await?,
    );

    // Security cost: the same signed stream with HMAC verification +
    // AES-256-GCM encryption + sha256 custody off, then on.
    let discard = json!({"behaviour": "discard"});
    let per_message = json!({"directory": "/out", "fsync": false});
    rows.push(
        host_run(
            &server,
            &js,
            work.path(),
            "signed-discard-security-off",
            "BENCHSIG",
            total,
            &test_plugin("chaos"),
            discard.clone(),
        )
        .await?,
    );
    rows.push(
        host_run(
            &server,
            &js,
            work.path(),
            "signed-discard-security-on",
            "BENCHSIG",
            total,
            &test_plugin("chaos"),
            discard,
        )
        .await?,
    );
    rows.push(
        host_run(
            &server,
            &js,
            work.path(),
            "signed-file-nofsync-security-off",
            "BENCHSIG",
            total,
            &plugin("file"),
            per_message.clone(),
        )
        .await?,
    );
    rows.push(
        host_run(
            &server,
            &js,
            work.path(),
            "signed-file-nofsync-security-on",
            "BENCHSIG",
            total,
            &plugin("file"),
            per_message,
        )
        .await?,
    );

    let ceiling = rows[0].rate();
    let native_files = rows[1].rate();
    println!();
    println!("| contender | messages | seconds | msg/s | vs native-ack | vs native-files | peak RSS MB |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in &rows {
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.2} | {:.2} | {} |",
            row.name,
            row.messages,
            row.seconds,
            row.rate(),
            row.rate() / ceiling,
            row.rate() / native_files,
            row.peak_rss_mb
                .map(|m| format!("{m:.0}"))
                .unwrap_or_else(|| "-".into())
        );
    }

    let (cold, warm) = startup(&server, work.path()).await?;
    println!();
    println!("start-up to first fetch (file.wasm): cold cache {cold} ms, warm cache {warm} ms");
    let by_name = |name: &str| {
        rows.iter()
            .find(|r| r.name == name)
            .map(Row::rate)
            .unwrap_or(f64::NAN)
    };
    println!();
    println!(
        "per-message files vs native, same write mode: atomic {:.2}, direct {:.2}",
        by_name("sinkhost-file-nofsync") / by_name("native-files"),
        by_name("sinkhost-file-nofsync-direct") / by_name("native-files-direct")
    );
    println!(
        "security on/off: discard {:.2}, per-message file {:.2}",
        by_name("signed-discard-security-on") / by_name("signed-discard-security-off"),
        by_name("signed-file-nofsync-security-on") / by_name("signed-file-nofsync-security-off")
    );
    Ok(())
}

/// An in-process consumer with the same fetch pattern as sinkhost
/// (IN_FLIGHT concurrent pull loops of BATCH), optionally writing files.
async fn native(
    js: &Js,
    name: &str,
    total: usize,
    files: Option<(PathBuf, WriteMode)>,
) -> anyhow::Result<Row> {
    let stream = js.context.get_stream(STREAM).await?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(name.to_string()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    if let Some((dir, _)) = &files {
        std::fs::create_dir_all(dir.join("bench.events"))?;
    }
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let consumer = consumer.clone();
        let done = Arc::clone(&done);
        let files = files.clone();
        tasks.push(tokio::spawn(async move {
            while done.load(Ordering::Relaxed) < total as u64 {
                let Ok(mut batch) = consumer
                    .batch()
                    .max_messages(BATCH)
                    .expires(Duration::from_millis(200))
                    .messages()
                    .await
                else {
                    continue;
                };
                while let Some(Ok(message)) = batch.next().await {
                    if let Some((dir, mode)) = &files {
                        let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
                        write_like_the_file_sink(dir, *mode, sequence, &message.payload);
                    }
                    let _ = message.ack_with(AckKind::Ack).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    js.client.flush().await?;
    Ok(Row {
        name: name.to_string(),
        messages: total as u64,
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_mb: None,
    })
}

/// Size of the file sink's record for these messages (per-message layout,
/// 256-byte JSON payload, no headers): the payload plus ~1.9 KB of metadata.
const SINK_RECORD_BYTES: usize = 2_126;

/// How the native comparator places a file, like the file sink's
/// `write_mode`.
#[derive(Clone, Copy)]
enum WriteMode {
    /// Temporary file (`create_new`), hard link to the final name, unlink
    /// the temporary name.
    Atomic,
    /// `create_new` on the final name, one write, close.
    Direct,
}

/// Exactly the per-message work of the file sink (per-message layout, fsync
/// off, a redelivery-free run), in either write mode. The subject directory
/// exists beforehand, as it does for the sink after its first message. No
/// existence check: the sink does none.
fn write_like_the_file_sink(dir: &Path, mode: WriteMode, sequence: u64, payload: &[u8]) {
    use std::io::Write as _;
    let subject_dir = dir.join("bench.events");
    let target = subject_dir.join(format!("{STREAM}-{sequence:020}.json"));
    let head = br#"{"schema":"nats_sinks.file.message.v1","metadata":""#;
    let tail = br#"","payload":"#;
    let filler = SINK_RECORD_BYTES.saturating_sub(head.len() + tail.len() + payload.len() + 2);
    let mut record = Vec::with_capacity(SINK_RECORD_BYTES);
    record.extend_from_slice(head);
    record.extend(std::iter::repeat_n(b'm', filler));
    record.extend_from_slice(tail);
    record.extend_from_slice(payload);
    record.extend_from_slice(b"}\n");
    let create = |path: &Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
    };
    match mode {
        WriteMode::Direct => {
            if let Ok(mut file) = create(&target) {
                let _ = file.write_all(&record);
            }
        }
        WriteMode::Atomic => {
            let temp = subject_dir.join(format!(".tmp-{STREAM}-{sequence}"));
            if let Ok(mut file) = create(&temp) {
                let _ = file.write_all(&record);
                drop(file);
                let _ = std::fs::hard_link(&temp, &target);
                let _ = std::fs::remove_file(&temp);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn host_run(
    server: &NatsServer,
    js: &Js,
    work: &Path,
    name: &str,
    stream: &str,
    total: usize,
    plugin_path: &Path,
    sink: Value,
) -> anyhow::Result<Row> {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir)?;
    let subject = match stream {
        STREAM => "bench.>",
        "BENCHSIG" => "sig.>",
        _ => "small.>",
    };
    let mut config = base_config(server, stream, subject, plugin_path, &dir.join("out"), sink);
    set(&mut config, "nats.consumer", json!(name));
    // Segment mode is the high-throughput layout: one variant runs it with
    // larger batches and more of them in flight (one fsync per batch).
    let (batch, in_flight) = if name.ends_with("-b1000x4") {
        (1_000, 4)
    } else {
        (BATCH, IN_FLIGHT)
    };
    set(&mut config, "delivery.batch_size", json!(batch));
    set(
        &mut config,
        "delivery.max_in_flight_batches",
        json!(in_flight),
    );
    set(&mut config, "logging.level", json!("warn"));
    set(&mut config, "plugin.cache_dir", json!(work.join("cache")));
    if name.ends_with("-security-on") {
        set(
            &mut config,
            "message_authenticity",
            json!({"enabled": true, "rules": [
                {"subject": "sig.>", "algorithm": "hmac-sha256", "key_id": "bench-k1", "key_b64_env": "BENCH_HMAC_KEY"}
            ]}),
        );
        set(
            &mut config,
            "encryption",
            json!({"enabled": true, "key_id": "bench-enc", "key_b64_env": "BENCH_AES_KEY"}),
        );
        set(
            &mut config,
            "custody",
            json!({"enabled": true, "algorithm": "sha256"}),
        );
    }
    let config_path = write_config(&dir, &config);
    let hmac_key = base64::engine::general_purpose::STANDARD.encode(BENCH_HMAC_KEY);
    let aes_key = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
    let env = [
        ("BENCH_HMAC_KEY", hmac_key.as_str()),
        ("BENCH_AES_KEY", aes_key.as_str()),
    ];
    let mut host = Host::start_with_env(&config_path, &dir.join("sinkhost.log"), &env)?;

    // Clock starts when the consumer has delivered its first message.
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        if Instant::now() > deadline {
            anyhow::bail!("{name}: not drained in time:\n{}", host.log());
        }
        let stream_handle = js.context.get_stream(stream).await?;
        if let Ok(mut consumer) = stream_handle.get_consumer::<pull::Config>(name).await {
            let info = consumer.info().await?;
            if first.is_none() && info.delivered.stream_sequence > 0 {
                first = Some(Instant::now());
            }
            if info.num_pending == 0
                && info.num_ack_pending == 0
                && info.ack_floor.stream_sequence >= total as u64
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = first.map(|t| t.elapsed().as_secs_f64()).unwrap_or(f64::NAN);
    // VmHWM is the process's high-water mark: one read at the end is the peak.
    let peak_rss = host.peak_rss_mb();
    host.terminate(Duration::from_secs(30));
    Ok(Row {
        name: name.to_string(),
        messages: total as u64,
        seconds,
        peak_rss_mb: peak_rss,
    })
}

const BENCH_HMAC_KEY: [u8; 32] = [42; 32];

/// Publishes `total` HMAC-signed messages (as a nats-sinks producer would)
/// on `sig.events`.
async fn publish_signed(js: &Js, total: usize) -> anyhow::Result<()> {
    use sinkhost::config::{AuthenticityAlgorithm, SignedField};
    use sinkhost::security::authenticity::{authenticity_headers, sign_hmac, MessageToVerify};
    const WINDOW: usize = 512;
    let mut pending = Vec::with_capacity(WINDOW);
    for i in 0..total {
        let body = payload(i);
        let pairs = vec![("Nats-Msg-Id".to_string(), format!("bench-{i}"))];
        let message = MessageToVerify::new("sig.events", &pairs, &body);
        let signature = sign_hmac(
            &BENCH_HMAC_KEY,
            "bench-k1",
            &[SignedField::Subject, SignedField::MessageId],
            &message,
        )?;
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in pairs.iter().cloned().chain(authenticity_headers(
            AuthenticityAlgorithm::HmacSha256,
            "bench-k1",
            &signature,
        )) {
            headers.insert(name.as_str(), value.as_str());
        }
        pending.push(
            js.context
                .publish_with_headers("sig.events", headers, body.into())
                .await?,
        );
        if pending.len() == WINDOW {
            for ack in pending.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in pending {
        ack.await?;
    }
    Ok(())
}

/// Start-up time to the first fetch, from the host's own log, with an empty
/// compile cache and then with the cache filled.
async fn startup(server: &NatsServer, work: &Path) -> anyhow::Result<(u64, u64)> {
    let cache = work.join("startup-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let mut results = Vec::new();
    for run in ["cold", "warm"] {
        let dir = work.join(format!("startup-{run}"));
        std::fs::create_dir_all(&dir)?;
        let mut config = base_config(
            server,
            STREAM,
            "bench.none",
            &plugin("file"),
            &dir.join("out"),
            json!({"directory": "/out"}),
        );
        set(
            &mut config,
            "nats.consumer",
            json!(format!("startup-{run}")),
        );
        set(&mut config, "plugin.cache_dir", json!(cache));
        let config_path = write_config(&dir, &config);
        let log = dir.join("sinkhost.log");
        results.push(startup_to_first_fetch_ms(&config_path, &log, Duration::from_secs(60)).await?);
    }
    Ok((results[0], results[1]))
}
