//! Hostile plugins and publishers against the host's resource bounds (issue
//! 14, part 3): a publisher's headers and labels, a plugin's descriptors,
//! disk bytes, symlinks, log output and guest-to-host copies. Each test
//! asserts the effect did not happen (the outside file is unchanged, the
//! directory stayed under its quota, the host log stayed small and has no
//! forged line) and that healthy messages kept being stored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use sinkhost_e2e::*;

const STREAM: &str = "HOSTILE_RES";
const HEALTHY: usize = 20;

struct Run {
    /// Extra `sink` keys for the chaos plugin.
    sink: Value,
    /// Replaces the `files` grant's extra fields (e.g. `quota_bytes`).
    grant_extra: Value,
    limits: Value,
    /// Headers of the poison message (published on `hostile.poison`).
    poison_headers: Vec<(String, String)>,
    /// Leave relative symlinks pointing out in `out/` before the run.
    pre_links: bool,
}

impl Run {
    fn behaviour(behaviour: &str) -> Self {
        Self {
            sink: json!({"behaviour": behaviour}),
            grant_extra: json!({}),
            limits: json!({"memory_mb": 64, "call_timeout_ms": 10000}),
            poison_headers: Vec::new(),
            pre_links: false,
        }
    }
}

struct Outcome {
    dlq: Vec<Value>,
    log: String,
    /// Messages the chaos plugin stored (`HOSTILE_RES-<seq>` files).
    recorded: usize,
    /// The temp dir holding `out/` and `secret.txt`.
    root: tempfile::TempDir,
}

impl Outcome {
    fn out(&self) -> PathBuf {
        self.root.path().join("out")
    }

    fn report(&self) -> String {
        std::fs::read_to_string(self.out().join(".chaos-report")).unwrap_or_default()
    }
}

/// Regular files directly in `dir` (symlinks not followed).
fn plain_files(dir: &Path) -> Vec<(String, u64)> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let meta = std::fs::symlink_metadata(e.path()).ok()?;
                    meta.is_file()
                        .then(|| (e.file_name().to_string_lossy().into_owned(), meta.len()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn stored(out: &Path) -> usize {
    plain_files(out)
        .iter()
        .filter(|(name, _)| name.starts_with(&format!("{STREAM}-")))
        .count()
}

/// Bytes below `dir`, symlinks not followed.
fn bytes_below(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

async fn run(spec: Run) -> Outcome {
    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["hostile.>"])
        .await
        .expect("stream");
    js.create_stream("DLQ_RES", &["dlq.res"])
        .await
        .expect("dlq");
    let headers: Vec<(&str, &str)> = spec
        .poison_headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    js.publish_with_headers("hostile.poison", &headers, b"{\"poison\":true}")
        .await
        .expect("poison");
    js.publish_json("hostile.ok", HEALTHY)
        .await
        .expect("healthy");

    let root = tempfile::tempdir().expect("tempdir");
    let out = root.path().join("out");
    std::fs::create_dir_all(&out).expect("out");
    std::fs::write(root.path().join("secret.txt"), b"TOP-SECRET-OUTSIDE").expect("secret");
    if spec.pre_links {
        // Relative links pointing out, as someone else could have left them.
        std::os::unix::fs::symlink("..", out.join("pre-up")).expect("symlink");
        std::os::unix::fs::symlink("../secret.txt", out.join("pre-sec")).expect("symlink");
    }
    let mut sink = json!({"only_subjects": ["hostile.poison"], "directory": "/out"});
    for (k, v) in spec.sink.as_object().expect("sink object") {
        sink[k] = v.clone();
    }
    let mut config = base_config(
        &server,
        STREAM,
        "hostile.>",
        &test_plugin("chaos"),
        &out,
        sink,
    );
    for (k, v) in spec.grant_extra.as_object().expect("grant object") {
        config["plugin"]["grants"]["files"][0][k] = v.clone();
    }
    set(&mut config, "delivery.batch_size", json!(1));
    set(&mut config, "delivery.max_retries", json!(2));
    set(&mut config, "delivery.retry_backoff_ms", json!(50));
    set(&mut config, "delivery.retry_backoff_max_ms", json!(200));
    set(
        &mut config,
        "dead_letter",
        json!({"enabled": true, "subject": "dlq.res"}),
    );
    set(&mut config, "plugin.limits", spec.limits);
    set(&mut config, "plugin.limits.failure_backoff_ms", json!(20));
    let path = write_config(root.path(), &config);
    let mut host = Host::start(&path, &root.path().join("sinkhost.log")).expect("start");

    let drained = wait_until(Duration::from_secs(120), || async {
        matches!(js.consumer_backlog(STREAM, "sinkhost").await, Ok((0, 0)))
    })
    .await;
    assert!(drained, "not drained:\n{}", tail(&host.log()));
    assert!(
        host.is_running(),
        "the host must survive:\n{}",
        tail(&host.log())
    );
    let recorded = stored(&out);
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        tail(&host.log())
    );
    let dlq = js
        .read_all("DLQ_RES")
        .await
        .expect("dlq")
        .iter()
        .map(|m| serde_json::from_slice(&m.payload).expect("dlq json"))
        .collect();
    Outcome {
        dlq,
        log: host.log(),
        recorded,
        root,
    }
}

/// The end of a (possibly large) log, for failure messages.
fn tail(log: &str) -> &str {
    let mut start = log.len().saturating_sub(8_000);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    &log[start..]
}

fn assert_healthy_stored(outcome: &Outcome, poison_stored: bool) {
    let expected = HEALTHY + usize::from(poison_stored);
    assert_eq!(
        outcome.recorded,
        expected,
        "healthy messages keep being stored:\n{}",
        tail(&outcome.log)
    );
}

fn assert_poison_dead_lettered(outcome: &Outcome, error_type: &str) -> String {
    assert_healthy_stored(outcome, false);
    assert_eq!(
        outcome.dlq.len(),
        1,
        "only the poison:\n{}",
        tail(&outcome.log)
    );
    let record = &outcome.dlq[0];
    assert_eq!(record["subject"], "hostile.poison");
    assert_eq!(record["error_type"], error_type, "{record}");
    record["error"].as_str().unwrap_or_default().to_string()
}

/// No line of the host log starts with the text a plugin tried to forge.
fn assert_no_forged_line(log: &str) {
    for line in log.lines() {
        let trimmed = line.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{1b}');
        assert!(
            !trimmed.starts_with("2026-01-01T00:00:00")
                && !trimmed.starts_with("level=ERROR")
                && !trimmed.starts_with("forged")
                && !trimmed.starts_with("[2K"),
            "a plugin forged a host log line: {line:.200}"
        );
    }
    assert!(!log.contains('\u{1b}'), "a raw escape reached the host log");
}

// ---------------------------------------------------------------------------
// Publisher: headers and labels.

#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_labels_are_refused_before_the_sink() {
    let labels: Vec<String> = (0..5_000).map(|i| format!("l{i}")).collect();
    let mut spec = Run::behaviour("record");
    spec.poison_headers = vec![("Nats-Sinks-Labels".into(), labels.join(";"))];
    let outcome = run(spec).await;
    let error = assert_poison_dead_lettered(&outcome, "ValidationError");
    assert!(error.contains("labels"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_tiny_headers_are_refused_before_the_sink() {
    let mut spec = Run::behaviour("record");
    spec.poison_headers = (0..3_000).map(|i| (format!("X-{i}"), "v".into())).collect();
    let outcome = run(spec).await;
    let error = assert_poison_dead_lettered(&outcome, "ValidationError");
    assert!(error.contains("headers"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_60_kb_header_value_is_accepted() {
    let mut spec = Run::behaviour("record");
    spec.poison_headers = vec![("X-Big".into(), "v".repeat(60 * 1024))];
    let outcome = run(spec).await;
    assert!(outcome.dlq.is_empty(), "{:?}", outcome.dlq);
    assert_healthy_stored(&outcome, true);
}

// ---------------------------------------------------------------------------
// Files grant.

#[tokio::test(flavor = "multi_thread")]
async fn opening_files_in_a_loop_is_bounded_per_instance() {
    let mut spec = Run::behaviour("open_files");
    spec.sink["count"] = json!(100_000);
    let outcome = run(spec).await;
    assert_healthy_stored(&outcome, true);
    let report = outcome.report();
    let opened: usize = report
        .strip_prefix("opened ")
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("report: {report}"));
    assert!(
        opened < 256,
        "descriptors bounded (preopens count too): {report}"
    );
    assert!(!report.ends_with("none"), "the cap was hit: {report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_past_the_quota_fail_and_the_disk_stays_under_it() {
    const QUOTA: u64 = 1024 * 1024;
    let mut spec = Run::behaviour("fill_quota");
    spec.sink["mib"] = json!(8);
    spec.grant_extra = json!({"quota_bytes": QUOTA});
    let outcome = run(spec).await;
    // The plugin's report is its error (its directory is full).
    let report = outcome
        .dlq
        .iter()
        .find(|r| r["subject"] == "hostile.poison")
        .and_then(|r| r["error"].as_str())
        .unwrap_or_default()
        .to_string();
    // What the plugin put on disk (sparse files count their length).
    let on_disk = bytes_below(&outcome.out());
    assert!(
        on_disk <= QUOTA + 64 * 1024,
        "{on_disk} bytes on disk, quota {QUOTA}: {report}"
    );
    assert!(report.contains("big write: Err"), "{report}");
    assert!(report.contains("set_len: Err"), "{report}");
    assert!(report.contains("truncate then chunks: 0 bytes"), "{report}");
    assert!(report.contains("append: 0 bytes"), "{report}");
    assert!(report.contains("dirs: 0 then"), "{report}");
    assert!(
        report.to_lowercase().contains("no space"),
        "the guest sees no-space: {report}"
    );
    // Out of space, the plugin cannot store the healthy messages either:
    // they are retried, never lost nor ACKed unstored.
    for record in &outcome.dlq {
        assert!(record["error_type"].is_string(), "{record}");
    }
    assert_eq!(
        outcome.recorded + outcome.dlq.len(),
        HEALTHY + 1,
        "every message is stored or dead-lettered:\n{}",
        tail(&outcome.log)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn relative_symlinks_cannot_be_created_or_followed_out() {
    let mut spec = Run::behaviour("symlink_escape");
    spec.pre_links = true;
    let outcome = run(spec).await;
    assert_healthy_stored(&outcome, true);
    let report = outcome.report();
    assert_eq!(
        std::fs::read(outcome.root.path().join("secret.txt")).expect("secret"),
        b"TOP-SECRET-OUTSIDE",
        "the outside file was never written: {report}"
    );
    assert!(!report.contains("READ "), "{report}");
    let leaked = std::fs::read(outcome.out().join("leak")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&leaked).contains("TOP-SECRET"),
        "the outside content reached the plugin: {report}"
    );
    for entry in std::fs::read_dir(outcome.out()).expect("out").flatten() {
        let kind = entry.file_type().expect("type");
        let pre = entry.file_name().to_string_lossy().starts_with("pre-");
        assert!(
            pre || !kind.is_symlink(),
            "a symlink was created: {:?}",
            entry.path()
        );
    }
    assert!(report.contains("symlink up -> ..: Err"), "{report}");
}

// ---------------------------------------------------------------------------
// Log output and guest-to-host copies.

#[tokio::test(flavor = "multi_thread")]
async fn a_100_mb_log_flood_is_bounded_and_forges_no_line() {
    let mut spec = Run::behaviour("log_flood");
    spec.sink["mib"] = json!(100);
    spec.sink["count"] = json!(200_000);
    spec.limits = json!({"memory_mb": 64, "call_timeout_ms": 60000});
    let outcome = run(spec).await;
    assert_healthy_stored(&outcome, true);
    assert!(
        outcome.log.len() < 4 * 1024 * 1024,
        "host log {} bytes after a 100 MB flood",
        outcome.log.len()
    );
    assert!(
        outcome.log.contains("output budget"),
        "{}",
        tail(&outcome.log)
    );
    assert_no_forged_line(&outcome.log);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_call_past_the_copy_budget_is_contained() {
    let mut spec = Run::behaviour("huge_log");
    spec.sink["mib"] = json!(20);
    let outcome = run(spec).await;
    let error = assert_poison_dead_lettered(&outcome, "PluginFaultError");
    assert!(error.len() < 8 * 1024, "{}", error.len());
    assert!(outcome.log.len() < 2 * 1024 * 1024, "{}", outcome.log.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_past_the_copy_budget_is_contained() {
    let mut spec = Run::behaviour("huge_error");
    spec.sink["mib"] = json!(20);
    let outcome = run(spec).await;
    let error = assert_poison_dead_lettered(&outcome, "PluginFaultError");
    assert!(error.len() < 8 * 1024, "{}", error.len());
    assert!(outcome.log.len() < 2 * 1024 * 1024, "{}", outcome.log.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_sink_error_is_cut_and_escaped_in_the_log_and_the_dlq() {
    let outcome = run(Run::behaviour("long_error")).await;
    let error = assert_poison_dead_lettered(&outcome, "PermanentSinkError");
    assert!(error.len() <= 4 * 1024 + 4, "{}", error.len());
    assert!(
        !error.contains('\n') && !error.contains('\u{1b}'),
        "{error:.300}"
    );
    assert_no_forged_line(&outcome.log);
}
