//! Throughput bench: one nats-server, one stream of 256-byte JSON messages,
//! several consumers of it, each drained by a different contender:
//!
//! - native: an in-process async-nats consumer that only fetches and ACKs
//!   (the ceiling), and one that also writes one file per message the way
//!   the file sink does (temp file + link, no fsync);
//! - sinkhost with the discarding test plugin, and with the file sink
//!   per-message (fsync off, fsync on) and in segment layout (fsync on).
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
    let head = format!(r#"{{"id":{i},"kind":"bench","ts":{},"pad":""#, 1_700_000_000_000u64 + i as u64);
    let pad = PAYLOAD_BYTES.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad)).into_bytes()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total: usize = std::env::var("BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let fsync_total: usize = std::env::var("BENCH_FSYNC_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let server = NatsServer::start()?;
    let js = Js::connect(&server).await?;
    js.create_stream(STREAM, &["bench.>"]).await?;
    js.create_stream("BENCHSMALL", &["small.>"]).await?;
    let started = Instant::now();
    js.publish_many(SUBJECT, total, payload).await?;
    js.publish_many("small.events", fsync_total, payload).await?;
    eprintln!("published {total} + {fsync_total} messages of {PAYLOAD_BYTES} bytes in {:.1}s", started.elapsed().as_secs_f64());
    let work = tempfile::tempdir()?;

    let mut rows = Vec::new();
    rows.push(native(&js, "native-ack", total, None).await?);
    rows.push(native(&js, "native-files", total, Some(work.path().join("native-out"))).await?);
    let discard = json!({"behaviour": "discard"});
    rows.push(host_run(&server, &js, work.path(), "sinkhost-discard", STREAM, total, &test_plugin("chaos"), discard).await?);
    let per_message = json!({"directory": "/out", "fsync": false});
    rows.push(host_run(&server, &js, work.path(), "sinkhost-file-nofsync", STREAM, total, &plugin("file"), per_message).await?);
    let segment = json!({"directory": "/out", "fsync": true, "layout": "segment"});
    rows.push(host_run(&server, &js, work.path(), "sinkhost-segment-fsync", STREAM, total, &plugin("file"), segment.clone()).await?);
    rows.push(host_run(&server, &js, work.path(), "sinkhost-segment-fsync-b1000x4", STREAM, total, &plugin("file"), segment).await?);
    let fsync = json!({"directory": "/out", "fsync": true});
    rows.push(host_run(&server, &js, work.path(), "sinkhost-file-fsync", "BENCHSMALL", fsync_total, &plugin("file"), fsync).await?);

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
            row.peak_rss_mb.map(|m| format!("{m:.0}")).unwrap_or_else(|| "-".into())
        );
    }

    let (cold, warm) = startup(&server, work.path()).await?;
    println!();
    println!("start-up to first fetch (file.wasm): cold cache {cold} ms, warm cache {warm} ms");
    Ok(())
}

/// An in-process consumer with the same fetch pattern as sinkhost
/// (IN_FLIGHT concurrent pull loops of BATCH), optionally writing files.
async fn native(js: &Js, name: &str, total: usize, files: Option<PathBuf>) -> anyhow::Result<Row> {
    let stream = js.context.get_stream(STREAM).await?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(name.to_string()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    if let Some(dir) = &files {
        std::fs::create_dir_all(dir.join("bench.events"))?;
    }
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..IN_FLIGHT {
        let consumer = consumer.clone();
        let done = Arc::clone(&done);
        let files = files.clone();
        tasks.push(tokio::spawn(async move {
            let mut counter = 0u64;
            while done.load(Ordering::Relaxed) < total as u64 {
                let Ok(mut batch) = consumer.batch().max_messages(BATCH).expires(Duration::from_millis(200)).messages().await else {
                    continue;
                };
                while let Some(Ok(message)) = batch.next().await {
                    if let Some(dir) = &files {
                        let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
                        counter += 1;
                        write_like_the_file_sink(dir, worker, counter, sequence, &message.payload);
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

/// Temp file + hard link into place, like the file sink without fsync.
fn write_like_the_file_sink(dir: &Path, worker: usize, counter: u64, sequence: u64, payload: &[u8]) {
    let subject_dir = dir.join("bench.events");
    let tmp = subject_dir.join(format!(".tmp-{worker}-{counter}"));
    let target = subject_dir.join(format!("{STREAM}-{sequence:020}.json"));
    // A record of similar size to the file sink's (payload + ~1.3 KB metadata).
    let mut record = Vec::with_capacity(payload.len() + 1_400);
    record.extend_from_slice(br#"{"schema":"nats_sinks.file.message.v1","metadata":""#);
    record.extend(std::iter::repeat_n(b'm', 1_300));
    record.extend_from_slice(br#"","payload":"#);
    record.extend_from_slice(payload);
    record.push(b'}');
    if std::fs::write(&tmp, &record).is_ok() {
        let _ = std::fs::hard_link(&tmp, &target);
        let _ = std::fs::remove_file(&tmp);
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
    let subject = if stream == STREAM { "bench.>" } else { "small.>" };
    let mut config = base_config(server, stream, subject, plugin_path, &dir.join("out"), sink);
    set(&mut config, "nats.consumer", json!(name));
    // Segment mode is the high-throughput layout: one variant runs it with
    // larger batches and more of them in flight (one fsync per batch).
    let (batch, in_flight) = if name.ends_with("-b1000x4") { (1_000, 4) } else { (BATCH, IN_FLIGHT) };
    set(&mut config, "delivery.batch_size", json!(batch));
    set(&mut config, "delivery.max_in_flight_batches", json!(in_flight));
    set(&mut config, "logging.level", json!("warn"));
    set(&mut config, "plugin.cache_dir", json!(work.join("cache")));
    let config_path = write_config(&dir, &config);
    let mut host = Host::start(&config_path, &dir.join("sinkhost.log"))?;
    let pid = host_pid(&host);

    // Clock starts when the consumer has delivered its first message.
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut peak_rss = None;
    loop {
        if Instant::now() > deadline {
            anyhow::bail!("{name}: not drained in time:\n{}", host.log());
        }
        if let Some(pid) = pid {
            peak_rss = read_peak_rss_mb(pid).or(peak_rss);
        }
        let stream_handle = js.context.get_stream(stream).await?;
        if let Ok(mut consumer) = stream_handle.get_consumer::<pull::Config>(name).await {
            let info = consumer.info().await?;
            if first.is_none() && info.delivered.stream_sequence > 0 {
                first = Some(Instant::now());
            }
            if info.num_pending == 0 && info.num_ack_pending == 0 && info.ack_floor.stream_sequence >= total as u64 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = first.map(|t| t.elapsed().as_secs_f64()).unwrap_or(f64::NAN);
    host.terminate(Duration::from_secs(30));
    Ok(Row {
        name: name.to_string(),
        messages: total as u64,
        seconds,
        peak_rss_mb: peak_rss,
    })
}

fn host_pid(host: &Host) -> Option<u32> {
    host.pid()
}

fn read_peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
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
        let mut config = base_config(server, STREAM, "bench.none", &plugin("file"), &dir.join("out"), json!({"directory": "/out"}));
        set(&mut config, "nats.consumer", json!(format!("startup-{run}")));
        set(&mut config, "plugin.cache_dir", json!(cache));
        let config_path = write_config(&dir, &config);
        let mut host = Host::start(&config_path, &dir.join("sinkhost.log"))?;
        let found = wait_until(Duration::from_secs(60), || async { host.log().contains("delivering") }).await;
        let log = host.log();
        host.terminate(Duration::from_secs(10));
        anyhow::ensure!(found, "host did not start:\n{log}");
        results.push(elapsed_ms(&log).unwrap_or(0));
    }
    Ok((results[0], results[1]))
}

fn elapsed_ms(log: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("delivering"))?;
    let rest = line.split("elapsed_ms=").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}
