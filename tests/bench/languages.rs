//! Per-language bench (issue 7): the same sink written with the Rust, Python
//! and JavaScript SDKs (`tests/plugins/bench-{rust,python,js}`, identical
//! behaviour), each drained through `sinkhost run` from one JetStream stream
//! of 256-byte JSON messages (every contender has its own durable consumer
//! of the same messages), with
//!
//! - the discarding behaviour (the cost of the language runtime and the
//!   component boundary per message), and
//! - the file-writing behaviour (one JSON record file per message, temporary
//!   name + rename, no fsync: the language's own work per message);
//!
//! plus each component's start-up to the first fetch with an empty compile
//! cache (cold: compiled) and with it filled (warm: precompiled code loaded).
//!
//! Contenders run in turns, `BENCH_ROUNDS` times (default 3), so that drift
//! on a noisy machine hits every language; the best round is the figure.
//! Run after `bash tests/bench/build-language-sinks.sh`:
//! `cargo bench -p sinkhost-e2e --bench languages`. `BENCH_MESSAGES`
//! overrides the message count (default 100,000: at ~200,000 msg/s a
//! discarding drain must last long enough for the 20 ms polling of the
//! consumer's state).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sinkhost_e2e::*;

const STREAM: &str = "LANG";
const PAYLOAD_BYTES: usize = 256;
const BATCH: usize = 100;
const IN_FLIGHT: usize = 2;
/// Python and JavaScript engines need more than the default 64 MB.
const MEMORY_MB: u64 = 256;

/// One language's bench sink.
struct Language {
    name: &'static str,
    plugin: PathBuf,
}

/// One drain of the stream by one contender.
struct Run {
    language: &'static str,
    behaviour: &'static str,
    seconds: f64,
    peak_rss_mb: Option<f64>,
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total = env_number("BENCH_MESSAGES", 100_000);
    let rounds = env_number("BENCH_ROUNDS", 3).max(1);
    let languages = ["rust", "python", "js"].map(|name| Language {
        name,
        plugin: test_plugin(&format!("bench-{name}")),
    });
    for language in &languages {
        anyhow::ensure!(
            language.plugin.is_file(),
            "{} is missing: run `bash tests/bench/build-language-sinks.sh` first",
            language.plugin.display()
        );
    }
    let server = NatsServer::start()?;
    let js = Js::connect(&server).await?;
    js.create_stream(STREAM, &["lang.>"]).await?;
    let started = Instant::now();
    js.publish_many("lang.events", total, |i| bench_payload(i, PAYLOAD_BYTES))
        .await?;
    eprintln!(
        "published {total} messages of {PAYLOAD_BYTES} bytes in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let work = tempfile::tempdir()?;

    // Start-up first: it also fills each language's compile cache, so the
    // drains below start warm.
    let mut startups = Vec::new();
    for language in &languages {
        startups.push(startup(&server, work.path(), language).await?);
    }

    let behaviours = [
        ("discard", json!({"behaviour": "discard"})),
        (
            "files",
            json!({"behaviour": "files", "directory": "/out", "fsync": false}),
        ),
    ];
    let mut runs = Vec::new();
    for round in 1..=rounds {
        for (behaviour, sink) in &behaviours {
            for language in &languages {
                let run =
                    drain(&server, &js, work.path(), language, behaviour, sink, round).await?;
                eprintln!(
                    "round {round}: {} {behaviour}: {:.0} msg/s",
                    language.name,
                    total as f64 / run.seconds
                );
                runs.push(run);
            }
        }
    }

    print_throughput(&languages, &behaviours.map(|(b, _)| b), &runs, total);
    print_startup(&languages, &startups);
    Ok(())
}

/// Drains the whole stream once with `language`'s sink behaving as `sink`
/// says, through a new durable consumer.
async fn drain(
    server: &NatsServer,
    js: &Js,
    work: &Path,
    language: &Language,
    behaviour: &'static str,
    sink: &Value,
    round: usize,
) -> anyhow::Result<Run> {
    let consumer = format!("{}-{behaviour}-{round}", language.name);
    let dir = work.join(&consumer);
    let out = dir.join("out");
    std::fs::create_dir_all(&out)?;
    let mut config = config(server, work, language, &out, sink.clone());
    set(&mut config, "nats.consumer", json!(consumer));
    set(&mut config, "logging.level", json!("warn"));
    let config_path = write_config(&dir, &config);
    let host = Host::start(&config_path, &dir.join("sinkhost.log"))?;
    let seconds =
        seconds_to_drain_consumer(js, STREAM, &consumer, &host, Duration::from_secs(1_800)).await?;
    let peak_rss_mb = host.peak_rss_mb();
    drop(host);
    if behaviour == "files" {
        let written = std::fs::read_dir(&out)?.count();
        let total = js.stream_messages(STREAM).await?;
        anyhow::ensure!(
            written as u64 == total,
            "{consumer}: {written} record files for {total} messages"
        );
        // Later runs should not pay for this run's dirty pages and inodes.
        std::fs::remove_dir_all(&out)?;
    }
    Ok(Run {
        language: language.name,
        behaviour,
        seconds,
        peak_rss_mb,
    })
}

/// Start-up to the first fetch with an empty compile cache, then with the
/// cache the first start filled: `(cold ms, warm ms)`.
async fn startup(
    server: &NatsServer,
    work: &Path,
    language: &Language,
) -> anyhow::Result<(u64, u64)> {
    let _ = std::fs::remove_dir_all(cache_dir(work, language));
    let mut times = Vec::new();
    for run in ["cold", "warm"] {
        let dir = work.join(format!("startup-{}-{run}", language.name));
        let out = dir.join("out");
        std::fs::create_dir_all(&out)?;
        let mut config = config(
            server,
            work,
            language,
            &out,
            json!({"behaviour": "discard"}),
        );
        set(&mut config, "nats.subject", json!("lang.none"));
        set(
            &mut config,
            "nats.consumer",
            json!(format!("startup-{}-{run}", language.name)),
        );
        let config_path = write_config(&dir, &config);
        let log = dir.join("sinkhost.log");
        times.push(startup_to_first_fetch_ms(&config_path, &log, Duration::from_secs(300)).await?);
    }
    Ok((times[0], times[1]))
}

fn cache_dir(work: &Path, language: &Language) -> PathBuf {
    work.join(format!("cache-{}", language.name))
}

/// The config every contender shares: same batches, same limits, the
/// language's own compile cache.
fn config(server: &NatsServer, work: &Path, language: &Language, out: &Path, sink: Value) -> Value {
    let mut config = base_config(server, STREAM, "lang.>", &language.plugin, out, sink);
    set(&mut config, "delivery.batch_size", json!(BATCH));
    set(
        &mut config,
        "delivery.max_in_flight_batches",
        json!(IN_FLIGHT),
    );
    set(&mut config, "plugin.limits.memory_mb", json!(MEMORY_MB));
    set(&mut config, "plugin.limits.call_timeout_ms", json!(60_000));
    set(
        &mut config,
        "plugin.cache_dir",
        json!(cache_dir(work, language)),
    );
    config
}

fn print_throughput(languages: &[Language], behaviours: &[&str], runs: &[Run], total: usize) {
    let rate = |run: &Run| total as f64 / run.seconds;
    let best = |language: &str, behaviour: &str| -> Option<&Run> {
        runs.iter()
            .filter(|r| r.language == language && r.behaviour == behaviour)
            .max_by(|a, b| rate(a).total_cmp(&rate(b)))
    };
    println!();
    println!("| behaviour | language | msg/s (best) | every round | vs Rust | peak RSS MB |");
    println!("| --- | --- | ---: | --- | ---: | ---: |");
    for behaviour in behaviours {
        let rust = best("rust", behaviour).map(rate).unwrap_or(f64::NAN);
        for language in languages {
            let Some(run) = best(language.name, behaviour) else {
                continue;
            };
            let every: Vec<String> = runs
                .iter()
                .filter(|r| r.language == language.name && r.behaviour == *behaviour)
                .map(|r| format!("{:.0}", rate(r)))
                .collect();
            println!(
                "| {behaviour} | {} | {:.0} | {} | {:.2} | {} |",
                language.name,
                rate(run),
                every.join(", "),
                rate(run) / rust,
                run.peak_rss_mb
                    .map(|m| format!("{m:.0}"))
                    .unwrap_or_else(|| "-".into())
            );
        }
    }
}

fn print_startup(languages: &[Language], startups: &[(u64, u64)]) {
    println!();
    println!("| language | component | start-up, cold cache (compile) | start-up, warm cache | cold / warm |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (language, (cold, warm)) in languages.iter().zip(startups) {
        let size = std::fs::metadata(&language.plugin)
            .map(|m| format!("{:.1} MB", m.len() as f64 / 1e6))
            .unwrap_or_else(|_| "-".into());
        println!(
            "| {} | {size} | {cold} ms | {warm} ms | {:.0}x |",
            language.name,
            *cold as f64 / (*warm).max(1) as f64
        );
    }
}
