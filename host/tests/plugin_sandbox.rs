//! The plugin runtime against real components: the test sink
//! `target/test-plugins/chaos.wasm` (misbehaves on request, see
//! `tests/plugins/chaos`), the WASI command `other-world.wasm`, and a few
//! hand-made binaries.
//!
//! The components are built by `bash plugins/build.sh`. When they are
//! missing the tests FAIL saying so: a sandbox test that silently skips is
//! worse than none.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sinkhost::config::{FileAccess, FileGrant, Grants, PluginConfig, PluginLimits};
use sinkhost::envelope::{Envelope, MessageMetadata};
use sinkhost::plugin::{
    inspect_with_cache, CacheOutcome, ErrorKind, PluginFault, PluginHost, PluginLoadError,
    SinkPool, WriteOutcome,
};
use tempfile::TempDir;

// ---------------------------------------------------------------- fixtures

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// A built test component, or a failure telling how to build it.
fn test_plugin(name: &str) -> PathBuf {
    let path = repo_root().join("target/test-plugins").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `bash plugins/build.sh` (it builds the test components) and re-run the tests",
        path.display()
    );
    path
}

fn chaos() -> PathBuf {
    test_plugin("chaos.wasm")
}

/// A temporary directory holding the precompiled cache and the data the
/// plugin is granted.
struct Fixture {
    temp: TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self {
            temp: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn cache(&self) -> PathBuf {
        self.temp.path().join("cache")
    }

    /// A host directory (not created).
    fn dir(&self, name: &str) -> PathBuf {
        self.temp.path().join(name)
    }

    fn config(&self, path: PathBuf) -> PluginConfig {
        PluginConfig {
            path,
            grants: Grants::default(),
            limits: PluginLimits {
                memory_mb: 64,
                call_timeout_ms: 2_000,
                failure_backoff_ms: 20,
                failure_backoff_max_ms: 100,
            },
            cache_dir: Some(self.cache()),
        }
    }

    /// chaos.wasm with `host_dir` granted read-write as `/data`.
    fn chaos_with_data(&self, host_dir: &Path) -> PluginConfig {
        let mut config = self.config(chaos());
        config
            .grants
            .files
            .push(grant(host_dir, "/data", FileAccess::ReadWrite));
        config
    }
}

fn grant(host_path: &Path, guest_path: &str, access: FileAccess) -> FileGrant {
    FileGrant {
        host_path: host_path.to_path_buf(),
        guest_path: guest_path.to_string(),
        access,
        quota_bytes: None,
    }
}

fn load(config: &PluginConfig, sink: serde_json::Value) -> PluginHost {
    match PluginHost::load(config, &sink) {
        Ok(host) => host,
        Err(err) => panic!("loading {} failed: {err}", config.path.display()),
    }
}

fn envelope(subject: &str, sequence: u64) -> Envelope {
    Envelope {
        subject: subject.to_string(),
        headers: vec![("Nats-Msg-Id".into(), format!("id-{sequence}"))],
        payload: bytes::Bytes::from(format!("payload {sequence}")),
        stream: "EVENTS".into(),
        consumer: "sink".into(),
        stream_sequence: sequence,
        consumer_sequence: sequence,
        delivery_count: 1,
        pending: 0,
        timestamp_ns: 1_700_000_000_000_000_000,
        received_at_ns: 1_700_000_000_000_000_001,
        message_id: Some(format!("id-{sequence}")),
        metadata: MessageMetadata::default(),
        custody: None,
    }
}

fn batch(first: u64, count: u64) -> Vec<Envelope> {
    (first..first + count)
        .map(|seq| envelope("events.a", seq))
        .collect()
}

fn expect_stored(
    outcome: Result<WriteOutcome, PluginFault>,
) -> Vec<sinkhost::plugin::MessageFailure> {
    match outcome {
        Ok(WriteOutcome::Stored { failures }) => failures,
        other => panic!("expected Stored, got {other:?}"),
    }
}

fn expect_failed(outcome: Result<WriteOutcome, PluginFault>) -> sinkhost::plugin::SinkError {
    match outcome {
        Ok(WriteOutcome::Failed(error)) => error,
        other => panic!("expected Failed, got {other:?}"),
    }
}

// ------------------------------------------------------- normal operation

#[tokio::test]
async fn discard_stores_everything() {
    let fx = Fixture::new();
    let host = load(
        &fx.config(chaos()),
        serde_json::json!({"behaviour": "discard"}),
    );
    host.check_init().await.expect("init");
    let pool = host.pool(1);
    assert!(expect_stored(pool.write_batch(&batch(1, 3)).await).is_empty());
    assert!(expect_stored(pool.write_batch(&[]).await).is_empty());
    assert_eq!(pool.faults_total(), 0);
    let description = host.describe();
    assert_eq!(description.wit_version, "0.1.0");
    assert_eq!(description.digest.len(), 64);
    assert_eq!(description.path, chaos());
}

#[tokio::test]
async fn record_writes_into_the_granted_directory() {
    let fx = Fixture::new();
    let data = fx.dir("data");
    let host = load(
        &fx.chaos_with_data(&data),
        serde_json::json!({"behaviour": "record", "directory": "/data"}),
    );
    assert!(data.is_dir(), "a read-write grant is created when missing");
    let pool = host.pool(1);
    assert!(expect_stored(pool.write_batch(&batch(7, 2)).await).is_empty());
    assert_eq!(
        std::fs::read(data.join("EVENTS-7")).expect("stored"),
        b"payload 7"
    );
    assert_eq!(
        std::fs::read(data.join("EVENTS-8")).expect("stored"),
        b"payload 8"
    );
}

#[tokio::test]
async fn per_message_failures_keep_their_batch_index() {
    let fx = Fixture::new();
    let host = load(
        &fx.config(chaos()),
        serde_json::json!({"behaviour": "fail_permanent_subjects", "subjects": ["events.bad"]}),
    );
    let messages = vec![
        envelope("events.a", 1),
        envelope("events.bad", 2),
        envelope("events.a", 3),
    ];
    let failures = expect_stored(host.pool(1).write_batch(&messages).await);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].index, 1);
    assert_eq!(failures[0].error.kind, ErrorKind::Permanent);
    assert!(
        failures[0].error.message.contains("events.bad"),
        "{:?}",
        failures[0]
    );
}

#[tokio::test]
async fn a_reported_error_is_not_a_fault() {
    let fx = Fixture::new();
    let host = load(
        &fx.config(chaos()),
        serde_json::json!({"behaviour": "fail_transient"}),
    );
    let pool = host.pool(1);
    let error = expect_failed(pool.write_batch(&batch(1, 2)).await);
    assert_eq!(error.kind, ErrorKind::Transient);
    assert_eq!(pool.faults_total(), 0);
}

#[tokio::test]
async fn a_refused_config_is_an_init_fault_with_the_plugins_message() {
    let fx = Fixture::new();
    let host = load(
        &fx.config(chaos()),
        serde_json::json!({"behaviour": "no-such-behaviour"}),
    );
    match host.check_init().await {
        Err(PluginFault::Init { message }) => {
            assert!(message.contains("sink (chaos)"), "{message}");
            assert!(message.contains("no-such-behaviour"), "{message}");
        }
        other => panic!("expected Init, got {other:?}"),
    }
    // The pool reports the same, and counts it.
    let pool = host.pool(1);
    assert!(matches!(
        pool.write_batch(&batch(1, 1)).await,
        Err(PluginFault::Init { .. })
    ));
    assert_eq!(pool.faults_total(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_serves_concurrent_batches_from_several_tasks() {
    let fx = Fixture::new();
    let data = fx.dir("data");
    let host = load(
        &fx.chaos_with_data(&data),
        serde_json::json!({"behaviour": "record", "directory": "/data"}),
    );
    let pool: Arc<SinkPool> = Arc::new(host.pool(3));
    let tasks: Vec<_> = (0..6u64)
        .map(|task| {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.write_batch(&batch(task * 10, 5)).await })
        })
        .collect();
    for task in tasks {
        assert!(expect_stored(task.await.expect("task")).is_empty());
    }
    assert_eq!(std::fs::read_dir(&data).expect("list").count(), 30);
    assert_eq!(pool.faults_total(), 0);
}

// ------------------------------------------------------------------ faults

#[tokio::test]
async fn an_endless_loop_times_out_near_the_deadline() {
    let fx = Fixture::new();
    let mut config = fx.config(chaos());
    config.limits.call_timeout_ms = 300;
    let host = load(&config, serde_json::json!({"behaviour": "loop"}));
    host.check_init().await.expect("init");
    let pool = host.pool(1);
    let started = Instant::now();
    let fault = pool
        .write_batch(&batch(1, 1))
        .await
        .expect_err("must time out");
    let elapsed = started.elapsed();
    assert!(
        matches!(fault, PluginFault::Timeout { after_ms: 300 }),
        "{fault:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(290),
        "timed out too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(5_000),
        "timed out far too late: {elapsed:?}"
    );
    assert_eq!(pool.faults_total(), 1);
}

#[tokio::test]
async fn a_plugin_sleeping_in_a_host_call_times_out_too() {
    // Epoch interrupts only fire in wasm code; the wall-clock backstop
    // catches a call parked in `wasi:clocks` / `wasi:io/poll`.
    let fx = Fixture::new();
    let mut config = fx.config(chaos());
    config.limits.call_timeout_ms = 300;
    let host = load(
        &config,
        serde_json::json!({"behaviour": "slow", "sleep_ms": 10_000}),
    );
    let pool = host.pool(1);
    let started = Instant::now();
    let fault = pool
        .write_batch(&batch(1, 1))
        .await
        .expect_err("must time out");
    assert!(
        matches!(fault, PluginFault::Timeout { after_ms: 300 }),
        "{fault:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(5_000),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_plugin_does_not_block_other_tasks() {
    // The deadline callback yields at every epoch tick: a plugin in a busy
    // loop shares the executor instead of holding a worker for its deadline.
    let fx = Fixture::new();
    let mut config = fx.config(chaos());
    config.limits.call_timeout_ms = 3_000;
    let host = load(&config, serde_json::json!({"behaviour": "loop"}));
    let pool = Arc::new(host.pool(4));
    // More looping calls than worker threads.
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.write_batch(&batch(1, 1)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let late = started.elapsed();
    assert!(
        late < Duration::from_millis(1_500),
        "the executor was blocked for {late:?}"
    );
    for task in loops {
        assert!(matches!(
            task.await.expect("task"),
            Err(PluginFault::Timeout { .. })
        ));
    }
}

#[tokio::test]
async fn a_panic_is_a_trap() {
    let fx = Fixture::new();
    let host = load(
        &fx.config(chaos()),
        serde_json::json!({"behaviour": "panic"}),
    );
    let pool = host.pool(1);
    match pool.write_batch(&batch(1, 1)).await {
        Err(PluginFault::Trap { message }) => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected Trap, got {other:?}"),
    }
    assert_eq!(pool.faults_total(), 1);
}

#[tokio::test]
async fn after_a_trap_the_same_pool_serves_the_next_batch_after_the_backoff() {
    let fx = Fixture::new();
    let data = fx.dir("data");
    let mut config = fx.chaos_with_data(&data);
    config.limits.failure_backoff_ms = 1_000;
    config.limits.failure_backoff_max_ms = 5_000;
    let host = load(
        &config,
        serde_json::json!({"behaviour": "trap_once_marker", "directory": "/data"}),
    );
    let pool = host.pool(1);
    assert!(matches!(
        pool.write_batch(&batch(1, 1)).await,
        Err(PluginFault::Trap { .. })
    ));
    assert!(
        data.join("trapped").is_file(),
        "the first instance created its marker"
    );
    let started = Instant::now();
    assert!(expect_stored(pool.write_batch(&batch(2, 1)).await).is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(990),
        "no backoff: {:?}",
        started.elapsed()
    );
    assert!(
        data.join("EVENTS-2").is_file(),
        "a fresh instance stored the batch"
    );
    assert_eq!(pool.faults_total(), 1);
    // A success resets the backoff.
    let started = Instant::now();
    assert!(expect_stored(pool.write_batch(&batch(3, 1)).await).is_empty());
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "backoff not reset: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn consecutive_faults_double_the_backoff_up_to_its_maximum() {
    let fx = Fixture::new();
    let mut config = fx.config(chaos());
    config.limits.failure_backoff_ms = 400;
    config.limits.failure_backoff_max_ms = 900;
    let host = load(&config, serde_json::json!({"behaviour": "panic"}));
    let pool = host.pool(1);
    let mut waits = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        assert!(matches!(
            pool.write_batch(&batch(1, 1)).await,
            Err(PluginFault::Trap { .. })
        ));
        waits.push(started.elapsed());
    }
    assert!(
        waits[0] < Duration::from_millis(350),
        "first call waits for nothing: {waits:?}"
    );
    assert!(waits[1] >= Duration::from_millis(395), "{waits:?}");
    assert!(waits[2] >= Duration::from_millis(795), "{waits:?}");
    assert!(waits[3] >= Duration::from_millis(895), "{waits:?}");
    assert!(
        waits[3] < Duration::from_millis(1_500),
        "capped at the maximum (uncapped would be 1.6 s): {waits:?}"
    );
    assert_eq!(pool.faults_total(), 4);
}

#[tokio::test]
async fn allocating_past_the_memory_limit_is_a_memory_fault() {
    let fx = Fixture::new();
    let host = load(
        &fx.config(chaos()),
        serde_json::json!({"behaviour": "alloc", "mib": 1024}),
    );
    let pool = host.pool(1);
    let fault = pool
        .write_batch(&batch(1, 1))
        .await
        .expect_err("must hit the limit");
    assert!(
        matches!(fault, PluginFault::MemoryLimit { limit_mb: 64 }),
        "{fault:?}"
    );
    assert_eq!(pool.faults_total(), 1);
}

#[tokio::test]
async fn allocating_within_the_memory_limit_works() {
    let fx = Fixture::new();
    let host = load(
        &fx.config(chaos()),
        serde_json::json!({"behaviour": "alloc", "mib": 16}),
    );
    // chaos answers with a transient error saying it could allocate.
    let error = expect_failed(host.pool(1).write_batch(&batch(1, 1)).await);
    assert!(
        error.message.contains("allocated and touched 16 MiB"),
        "{error:?}"
    );
}

// ---------------------------------------------------------------- sandbox

#[tokio::test]
async fn every_escape_from_the_granted_directory_fails() {
    let fx = Fixture::new();
    let data = fx.dir("granted");
    let host = load(
        &fx.chaos_with_data(&data),
        serde_json::json!({"behaviour": "escape", "directory": "/data"}),
    );
    let error = expect_failed(host.pool(1).write_batch(&batch(1, 1)).await);
    assert_eq!(error.kind, ErrorKind::Transient);
    assert!(
        error.message.contains("every escape attempt failed"),
        "{error:?}"
    );
    for attempt in ["/etc/passwd", "../x", "symlink"] {
        assert!(
            error.message.contains(attempt),
            "attempt `{attempt}` not reported: {}",
            error.message
        );
    }
    assert!(
        !fx.dir("x").exists(),
        "the plugin created a file next to its granted directory"
    );
}

#[tokio::test]
async fn a_directory_that_is_not_granted_is_not_there() {
    let fx = Fixture::new();
    let host = load(
        &fx.config(chaos()),
        serde_json::json!({"behaviour": "record", "directory": "/data"}),
    );
    match host.check_init().await {
        Err(PluginFault::Init { message }) => {
            assert!(message.contains("sink.directory /data"), "{message}")
        }
        other => panic!("expected Init, got {other:?}"),
    }
}

#[tokio::test]
async fn a_read_only_grant_cannot_be_written() {
    // chaos's `init` creates its directory (`create_dir_all`), which a
    // read-only preopen refuses, even for the preopen itself.
    let fx = Fixture::new();
    let data = fx.dir("ro");
    std::fs::create_dir_all(&data).expect("dir");
    let mut config = fx.config(chaos());
    config
        .grants
        .files
        .push(grant(&data, "/data", FileAccess::ReadOnly));
    let host = load(
        &config,
        serde_json::json!({"behaviour": "record", "directory": "/data"}),
    );
    match host.check_init().await {
        Err(PluginFault::Init { message }) => {
            assert!(message.contains("not permitted"), "{message}")
        }
        other => panic!("expected Init, got {other:?}"),
    }
    // A subdirectory the plugin wants is not created either.
    let host = load(
        &config,
        serde_json::json!({"behaviour": "record", "directory": "/data/sub"}),
    );
    assert!(matches!(
        host.check_init().await,
        Err(PluginFault::Init { .. })
    ));
    assert_eq!(std::fs::read_dir(&data).expect("list").count(), 0);
}

#[test]
fn a_missing_read_only_directory_is_a_load_error_naming_the_grant() {
    let fx = Fixture::new();
    let mut config = fx.config(chaos());
    config
        .grants
        .files
        .push(grant(&fx.dir("missing"), "/data", FileAccess::ReadOnly));
    let err = PluginHost::load(&config, &serde_json::json!({})).expect_err("missing dir");
    assert!(matches!(err, PluginLoadError::Grant(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("plugin.grants.files[0].host_path"),
        "{err}"
    );
}

// --------------------------------------------------------- load errors

fn load_error(fx: &Fixture, path: PathBuf) -> PluginLoadError {
    match PluginHost::load(&fx.config(path), &serde_json::json!({})) {
        Ok(_) => panic!("loading must fail"),
        Err(err) => err,
    }
}

#[test]
fn a_missing_file_is_a_load_error_naming_it() {
    let fx = Fixture::new();
    let err = load_error(&fx, fx.dir("nope.wasm"));
    assert!(matches!(err, PluginLoadError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.wasm"), "{err}");
}

#[test]
fn random_bytes_and_core_modules_are_not_components() {
    let fx = Fixture::new();
    let random = fx.dir("random.wasm");
    std::fs::write(&random, b"certainly not webassembly").expect("write");
    let err = load_error(&fx, random);
    assert!(
        matches!(err, PluginLoadError::NotAComponent { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("random.wasm is not a WebAssembly component"),
        "{err}"
    );

    let core = fx.dir("core.wasm");
    std::fs::write(&core, b"\0asm\x01\x00\x00\x00").expect("write");
    let err = load_error(&fx, core);
    assert!(err.to_string().contains("core WebAssembly module"), "{err}");

    let broken = fx.dir("broken.wasm");
    std::fs::write(&broken, b"\0asm\x0d\x00\x01\x00\xff\xff").expect("write");
    let err = load_error(&fx, broken);
    assert!(matches!(err, PluginLoadError::Compile { .. }), "{err:?}");
    assert!(err.to_string().contains("broken.wasm"), "{err}");
}

#[test]
fn a_component_of_another_world_is_not_a_sink() {
    let fx = Fixture::new();
    let err = load_error(&fx, test_plugin("other-world.wasm"));
    assert!(matches!(err, PluginLoadError::NotASink { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("is not a sinkhost sink"), "{message}");
    assert!(message.contains("wasi:cli/run@0.2"), "{message}");
    assert!(
        message.contains("expected sinkhost:sink/sink@0.1.x"),
        "{message}"
    );
}

/// A minimal component that imports `import` (an empty instance) and
/// re-exports it as `export`: enough to exercise the load-time checks
/// without a guest toolchain.
fn component_reexporting(import: &str, export: &str) -> Vec<u8> {
    fn name(out: &mut Vec<u8>, name: &str) {
        out.push(0x00); // plain name
        out.push(u8::try_from(name.len()).expect("short name"));
        out.extend_from_slice(name.as_bytes());
    }
    fn section(out: &mut Vec<u8>, id: u8, body: &[u8]) {
        out.push(id);
        out.push(u8::try_from(body.len()).expect("short section"));
        out.extend_from_slice(body);
    }
    let mut bytes = b"\0asm\x0d\x00\x01\x00".to_vec();
    // Type section: one instance type without declarations.
    section(&mut bytes, 0x07, &[0x01, 0x42, 0x00]);
    // Import section: `import` as instance of type 0.
    let mut imports = vec![0x01];
    name(&mut imports, import);
    imports.extend_from_slice(&[0x05, 0x00]);
    section(&mut bytes, 0x0a, &imports);
    // Export section: instance 0 as `export`, no type ascription.
    let mut exports = vec![0x01];
    name(&mut exports, export);
    exports.extend_from_slice(&[0x05, 0x00, 0x00]);
    section(&mut bytes, 0x0b, &exports);
    bytes
}

#[test]
fn an_import_needing_a_grant_the_config_lacks_is_refused_naming_the_grant() {
    let fx = Fixture::new();
    let path = fx.dir("http.wasm");
    std::fs::write(
        &path,
        component_reexporting(
            "wasi:http/outgoing-handler@0.2.0",
            "sinkhost:sink/sink@0.1.0",
        ),
    )
    .expect("write");
    let err = load_error(&fx, path);
    assert!(
        matches!(err, PluginLoadError::MissingGrant { grant: "http", .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("`wasi:http/outgoing-handler@0.2.0`"),
        "{message}"
    );
    assert!(message.contains("plugin.grants.http"), "{message}");
}

#[test]
fn an_import_the_host_does_not_provide_is_refused_naming_it() {
    let fx = Fixture::new();
    let path = fx.dir("server.wasm");
    std::fs::write(
        &path,
        component_reexporting(
            "wasi:http/incoming-handler@0.2.0",
            "sinkhost:sink/sink@0.1.0",
        ),
    )
    .expect("write");
    let err = load_error(&fx, path);
    assert!(
        matches!(err, PluginLoadError::UnsupportedImport { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("`wasi:http/incoming-handler@0.2.0`"),
        "{message}"
    );
    assert!(message.contains("not serve them"), "{message}");
}

#[test]
fn an_unsupported_wit_version_names_the_supported_ones() {
    let fx = Fixture::new();
    let path = fx.dir("future.wasm");
    std::fs::write(
        &path,
        component_reexporting("acme:x/y@1.0.0", "sinkhost:sink/sink@0.9.0"),
    )
    .expect("write");
    let err = load_error(&fx, path);
    assert!(
        matches!(err, PluginLoadError::UnsupportedVersion { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("supported: 0.1.x"), "{err}");
}

#[test]
fn a_sink_export_that_does_not_match_the_wit_fails_to_link() {
    let fx = Fixture::new();
    let path = fx.dir("hollow.wasm");
    std::fs::write(
        &path,
        component_reexporting("wasi:clocks/wall-clock@0.2.0", "sinkhost:sink/sink@0.1.0"),
    )
    .expect("write");
    let err = load_error(&fx, path);
    assert!(matches!(err, PluginLoadError::Link { .. }), "{err:?}");
}

// ------------------------------------------------------------------ cache

fn only_entry(cache: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(cache)
        .expect("cache dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

fn sidecar_of(entry: &Path) -> PathBuf {
    entry.with_extension("cwasm.sha256")
}

#[tokio::test]
async fn the_cache_is_hit_and_survives_corrupt_and_incompatible_entries() {
    let fx = Fixture::new();
    let config = fx.config(chaos());
    let sink = serde_json::json!({"behaviour": "discard"});
    assert_eq!(
        load(&config, sink.clone()).describe().cache,
        CacheOutcome::Miss
    );
    let entry = only_entry(&fx.cache());
    assert!(sidecar_of(&entry).is_file());
    assert_eq!(
        load(&config, sink.clone()).describe().cache,
        CacheOutcome::Hit
    );

    // A torn entry: its checksum no longer matches. Recompiled and replaced.
    let good = std::fs::read(&entry).expect("entry");
    std::fs::write(&entry, &good[..good.len() / 2]).expect("truncate");
    let host = load(&config, sink.clone());
    assert_eq!(host.describe().cache, CacheOutcome::Miss);
    host.check_init().await.expect("recompiled plugin works");
    assert_eq!(
        std::fs::read(&entry).expect("entry"),
        good,
        "the entry was replaced"
    );

    // An entry compiled by an engine with other settings, with a valid
    // checksum: wasmtime refuses it, the host recompiles.
    let other_engine = wasmtime::Engine::default();
    let foreign = other_engine
        .precompile_component(&std::fs::read(chaos()).expect("chaos"))
        .expect("precompile");
    std::fs::write(&entry, &foreign).expect("write");
    std::fs::write(sidecar_of(&entry), sha256_hex(&foreign)).expect("sidecar");
    let host = load(&config, sink.clone());
    assert_eq!(host.describe().cache, CacheOutcome::Miss);
    host.check_init().await.expect("recompiled plugin works");
    assert_eq!(load(&config, sink).describe().cache, CacheOutcome::Hit);
}

#[test]
fn an_unwritable_cache_still_loads() {
    let fx = Fixture::new();
    let mut config = fx.config(chaos());
    let file = fx.dir("a-file");
    std::fs::write(&file, b"x").expect("write");
    config.cache_dir = Some(file.join("cache"));
    let host = load(&config, serde_json::json!({"behaviour": "discard"}));
    assert_eq!(host.describe().cache, CacheOutcome::Unavailable);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

// ---------------------------------------------------------------- inspect

#[test]
fn inspect_reports_world_imports_and_grants() {
    let fx = Fixture::new();
    let inspection = inspect_with_cache(&chaos(), Some(&fx.cache())).expect("inspect");
    assert!(inspection.runnable, "{inspection}");
    assert_eq!(inspection.wit_version.as_deref(), Some("0.1.0"));
    assert_eq!(
        inspection.world.as_deref(),
        Some("sinkhost:sink/plugin@0.1.0")
    );
    assert_eq!(
        inspection.exports,
        vec!["sinkhost:sink/sink@0.1.0".to_string()]
    );
    assert_eq!(inspection.grants_needed, vec!["files".to_string()]);
    let text = inspection.to_string();
    assert!(text.contains("needs grant `files`"), "{text}");
    assert!(text.contains("sinkhost:sink/log@0.1.0"), "{text}");
    let json = serde_json::to_value(&inspection).expect("json");
    assert_eq!(json["runnable"], true);
    assert_eq!(json["imports"][0]["need"]["kind"], "provided");
}

#[test]
fn inspect_describes_what_it_cannot_run() {
    let fx = Fixture::new();
    let inspection =
        inspect_with_cache(&test_plugin("other-world.wasm"), Some(&fx.cache())).expect("inspect");
    assert!(!inspection.runnable);
    assert!(inspection
        .problem
        .as_deref()
        .is_some_and(|p| p.contains("not a sinkhost sink")));
    assert!(inspection.to_string().contains("runnable:  no"));

    let sockets = fx.dir("sockets.wasm");
    std::fs::write(
        &sockets,
        component_reexporting("wasi:sockets/tcp@0.2.0", "sinkhost:sink/sink@0.1.0"),
    )
    .expect("write");
    let inspection = inspect_with_cache(&sockets, None).expect("inspect");
    let text = inspection.to_string();
    assert!(text.contains("denied"), "{text}");

    let random = fx.dir("random.wasm");
    std::fs::write(&random, b"nope").expect("write");
    assert!(matches!(
        inspect_with_cache(&random, None),
        Err(PluginLoadError::NotAComponent { .. })
    ));
}

// ------------------------------------------------------------------ types

#[test]
fn the_pool_and_its_futures_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<SinkPool>();
    send_sync::<PluginHost>();
    let fx = Fixture::new();
    let pool = load(
        &fx.config(chaos()),
        serde_json::json!({"behaviour": "discard"}),
    )
    .pool(1);
    let messages = batch(1, 1);
    send(&pool.write_batch(&messages));
}
