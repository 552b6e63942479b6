//! Harness for sinkhost's end-to-end tests: a real `nats-server -js` on
//! 127.0.0.1, the real `sinkhost` binary, real plugin components.
//!
//! Prerequisites (installed by `.ci/run`): `nats-server` on PATH, the host
//! built with `cargo build --release -p sinkhost`, plugins built with
//! `bash plugins/build.sh`.

pub mod authoring;
pub mod certification;
pub mod databases;
pub mod http_receiver;
pub mod registry;
pub mod seaweedfs;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream;
use serde_json::{json, Value};

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The `sinkhost` binary under test: `$SINKHOST_BIN`, else the release build.
pub fn sinkhost_bin() -> PathBuf {
    let path = std::env::var_os("SINKHOST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/release/sinkhost"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release -p sinkhost` first",
        path.display()
    );
    path
}

/// A first-party plugin, `target/plugins/<name>.wasm`.
pub fn plugin(name: &str) -> PathBuf {
    built(&format!("target/plugins/{name}.wasm"))
}

/// A test plugin, `target/test-plugins/<name>.wasm`.
pub fn test_plugin(name: &str) -> PathBuf {
    built(&format!("target/test-plugins/{name}.wasm"))
}

fn built(relative: &str) -> PathBuf {
    let path = repo_root().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `bash plugins/build.sh` first",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free local port")
}

/// A `nats-server -js` on loopback, killed on drop.
pub struct NatsServer {
    child: Child,
    /// Client port.
    pub port: u16,
    /// Monitoring port.
    pub monitor_port: u16,
    /// JetStream store directory (kept across restarts).
    pub store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a fresh server and waits until JetStream is ready.
    pub fn start() -> anyhow::Result<Self> {
        let store = tempfile::tempdir()?;
        let port = free_port();
        let monitor_port = free_port();
        let child = spawn_nats(port, monitor_port, store.path())?;
        let server = Self {
            child,
            port,
            monitor_port,
            store,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Kills the server and starts it again on the same ports and store,
    /// as an operator restart or a crash would.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(300));
        self.child = spawn_nats(self.port, self.monitor_port, self.store.path())?;
        self.wait_ready()
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = format!("127.0.0.1:{}", self.monitor_port);
        while Instant::now() < deadline {
            if http_get_ok(&url, "/healthz?js-enabled-only=true") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("nats-server on port {} did not become ready", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_nats(port: u16, monitor_port: u16, store: &Path) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(store.join("nats-server.log"))?;
    Command::new("nats-server")
        .args([
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            &monitor_port.to_string(),
            "-sd",
        ])
        .arg(store)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting nats-server (install it with `apt-get install nats-server`)")
}

/// Minimal HTTP GET on loopback, true on a 200 answer.
pub(crate) fn http_get_ok(addr: &str, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
}

/// A JetStream client for arranging and checking a test.
pub struct Js {
    /// The core client.
    pub client: async_nats::Client,
    /// The JetStream context.
    pub context: jetstream::Context,
}

impl Js {
    /// Connects to the server.
    pub async fn connect(server: &NatsServer) -> anyhow::Result<Self> {
        let client = async_nats::connect(server.url()).await?;
        let context = jetstream::new(client.clone());
        Ok(Self { client, context })
    }

    /// Creates a file-backed stream capturing `subjects`.
    pub async fn create_stream(&self, name: &str, subjects: &[&str]) -> anyhow::Result<()> {
        self.context
            .create_stream(jetstream::stream::Config {
                name: name.to_string(),
                subjects: subjects.iter().map(|s| s.to_string()).collect(),
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating stream {name}"))?;
        Ok(())
    }

    /// Publishes `count` small JSON messages `{"n": i}` on `subject`, each
    /// confirmed by the stream. Publishes are pipelined in windows.
    pub async fn publish_json(&self, subject: &str, count: usize) -> anyhow::Result<()> {
        self.publish_many(subject, count, |i| {
            json!({"n": i, "kind": "test"}).to_string().into_bytes()
        })
        .await
    }

    /// Publishes `count` messages built by `make`, confirmed by the stream.
    pub async fn publish_many(
        &self,
        subject: &str,
        count: usize,
        make: impl Fn(usize) -> Vec<u8>,
    ) -> anyhow::Result<()> {
        const WINDOW: usize = 512;
        let mut pending = Vec::with_capacity(WINDOW);
        for i in 0..count {
            let ack = self
                .context
                .publish(subject.to_string(), make(i).into())
                .await?;
            pending.push(ack);
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

    /// Publishes one message with headers, confirmed.
    pub async fn publish_with_headers(
        &self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> anyhow::Result<()> {
        let mut map = async_nats::HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, *value);
        }
        self.context
            .publish_with_headers(subject.to_string(), map, payload.to_vec().into())
            .await?
            .await?;
        Ok(())
    }

    /// Messages of `stream` that `consumer` has not ACKed yet: those never
    /// delivered plus those delivered and awaiting an ACK, capped at what
    /// lies above the ACK floor (see [`unacked_count`]).
    ///
    /// For a consumer that sees every subject of its stream. It does not
    /// add `num_pending`, because while a NAKed message waits for redelivery
    /// the server may count it there and in `num_ack_pending` at once.
    pub async fn unacked(&self, stream: &str, consumer: &str) -> anyhow::Result<u64> {
        let mut stream = self.context.get_stream(stream).await?;
        let last_sequence = stream
            .info()
            .await
            .map_err(|err| anyhow::anyhow!("stream info: {err}"))?
            .state
            .last_sequence;
        let mut consumer: jetstream::consumer::PullConsumer =
            stream
                .get_consumer(consumer)
                .await
                .map_err(|err| anyhow::anyhow!("get consumer: {err}"))?;
        let info = consumer
            .info()
            .await
            .map_err(|err| anyhow::anyhow!("consumer info: {err}"))?;
        Ok(unacked_count(
            last_sequence,
            info.delivered.stream_sequence,
            info.ack_floor.stream_sequence,
            info.num_ack_pending as u64,
        ))
    }

    /// `(num_pending, num_ack_pending)` of a consumer.
    pub async fn consumer_backlog(
        &self,
        stream: &str,
        consumer: &str,
    ) -> anyhow::Result<(u64, u64)> {
        let stream = self.context.get_stream(stream).await?;
        let mut consumer: jetstream::consumer::PullConsumer =
            stream
                .get_consumer(consumer)
                .await
                .map_err(|err| anyhow::anyhow!("get consumer: {err}"))?;
        let info = consumer
            .info()
            .await
            .map_err(|err| anyhow::anyhow!("consumer info: {err}"))?;
        Ok((info.num_pending, info.num_ack_pending as u64))
    }

    /// Messages the consumer had to redeliver so far.
    pub async fn redelivered(&self, stream: &str, consumer: &str) -> anyhow::Result<u64> {
        let stream = self.context.get_stream(stream).await?;
        let mut consumer: jetstream::consumer::PullConsumer =
            stream
                .get_consumer(consumer)
                .await
                .map_err(|err| anyhow::anyhow!("get consumer: {err}"))?;
        let info = consumer
            .info()
            .await
            .map_err(|err| anyhow::anyhow!("consumer info: {err}"))?;
        Ok(info.num_redelivered as u64)
    }

    /// Messages stored in a stream.
    pub async fn stream_messages(&self, stream: &str) -> anyhow::Result<u64> {
        let mut stream = self.context.get_stream(stream).await?;
        Ok(stream.info().await?.state.messages)
    }

    /// Reads every message of a stream (for checking DLQ records).
    pub async fn read_all(
        &self,
        stream: &str,
    ) -> anyhow::Result<Vec<async_nats::jetstream::message::StreamMessage>> {
        let stream_handle = self.context.get_stream(stream).await?;
        let total = self.stream_messages(stream).await?;
        let mut out = Vec::new();
        let mut sequence = 1;
        while (out.len() as u64) < total && sequence < total + 1_000 {
            if let Ok(message) = stream_handle.get_raw_message(sequence).await {
                out.push(message);
            }
            sequence += 1;
        }
        Ok(out)
    }
}

/// Seconds a running `host` takes to drain `stream` (consumer `sinkhost`):
/// from the first moment the consumer holds work to nothing pending and
/// nothing unACKed. For benches; fails after `timeout` with the host log.
pub async fn seconds_to_drain(
    js: &Js,
    stream: &str,
    host: &Host,
    timeout: Duration,
) -> anyhow::Result<f64> {
    seconds_to_drain_consumer(js, stream, "sinkhost", host, timeout).await
}

/// [`seconds_to_drain`] for the durable consumer named `consumer`, so that
/// several contenders can drain the same messages of one stream.
pub async fn seconds_to_drain_consumer(
    js: &Js,
    stream: &str,
    consumer: &str,
    host: &Host,
    timeout: Duration,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + timeout;
    let mut first = None;
    loop {
        if Instant::now() > deadline {
            bail!("{stream}/{consumer}: not drained in time:\n{}", host.log());
        }
        if let Ok((pending, ack_pending)) = js.consumer_backlog(stream, consumer).await {
            if first.is_none() && (pending > 0 || ack_pending > 0) {
                // Delivery started once the consumer exists and holds work.
                first = Some(Instant::now());
            }
            if first.is_some() && pending + ack_pending == 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(first
        .map(|started| started.elapsed().as_secs_f64())
        .unwrap_or(f64::NAN))
}

/// Milliseconds from process start to the first fetch, as the host reports
/// it (`delivering ... elapsed_ms=N` in its log): starts `sinkhost run
/// CONFIG`, waits up to `timeout` for that line, stops the host. For
/// start-up benches (cold or warm compile cache, as `CONFIG` says).
pub async fn startup_to_first_fetch_ms(
    config: &Path,
    log_path: &Path,
    timeout: Duration,
) -> anyhow::Result<u64> {
    let mut host = Host::start(config, log_path)?;
    let started = wait_until(timeout, || async { host.log().contains("delivering") }).await;
    let log = host.log();
    host.terminate(Duration::from_secs(10));
    anyhow::ensure!(started, "host did not start:\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains("delivering"))
        .unwrap_or_default();
    line.split("elapsed_ms=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .with_context(|| format!("no elapsed_ms in the host's start line: {line}"))
}

/// Message `i` of a bench load: a JSON object of exactly `bytes` bytes
/// (when `bytes` is at least ~60), `{"id":i,"kind":"bench","ts":...,"pad":"xx..."}`.
pub fn bench_payload(i: usize, bytes: usize) -> Vec<u8> {
    let head = format!(
        r#"{{"id":{i},"kind":"bench","ts":{},"pad":""#,
        1_700_000_000_000u64 + i as u64
    );
    let pad = bytes.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad)).into_bytes()
}

/// Writes a sinkhost config into `dir/config.json` and returns its path.
pub fn write_config(dir: &Path, config: &Value) -> PathBuf {
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(config).expect("json")).expect("write config");
    path
}

/// A config for `plugin` consuming `stream`/`subject` on `server`, granting
/// `out_dir` read-write as `/out`. Adjust fields with [`set`].
pub fn base_config(
    server: &NatsServer,
    stream: &str,
    subject: &str,
    plugin: &Path,
    out_dir: &Path,
    sink: Value,
) -> Value {
    json!({
        "nats": {"url": server.url(), "stream": stream, "consumer": "sinkhost", "subject": subject},
        "delivery": {"batch_size": 100, "batch_timeout_ms": 200, "retry_backoff_ms": 100, "retry_backoff_max_ms": 500},
        "logging": {"level": "info"},
        "plugin": {
            "path": plugin,
            "grants": {"files": [{"host_path": out_dir, "guest_path": "/out", "access": "read-write"}]},
            "limits": {"memory_mb": 64, "call_timeout_ms": 10000},
            "cache_dir": out_dir.parent().unwrap_or(out_dir).join("cache"),
        },
        "sink": sink,
    })
}

/// Sets `value` at a dotted path such as `delivery.max_retries`.
pub fn set(config: &mut Value, dotted: &str, value: Value) {
    let mut node = config;
    let parts: Vec<&str> = dotted.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        if node.get(*part).is_none() {
            node[*part] = json!({});
        }
        node = &mut node[*part];
    }
    node[parts[parts.len() - 1]] = value;
}

/// A running `sinkhost run`, killed on drop. Its log goes to `log_path`.
pub struct Host {
    child: Option<Child>,
    /// Where stdout and stderr go.
    pub log_path: PathBuf,
}

impl Host {
    /// Starts `sinkhost run CONFIG`.
    pub fn start(config: &Path, log_path: &Path) -> anyhow::Result<Self> {
        Self::start_with_env(config, log_path, &[])
    }

    /// Starts `sinkhost run CONFIG` with extra environment variables (keys).
    pub fn start_with_env(
        config: &Path,
        log_path: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)?;
        let child = Command::new(sinkhost_bin())
            .arg("run")
            .arg(config)
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting sinkhost")?;
        Ok(Self {
            child: Some(child),
            log_path: log_path.to_path_buf(),
        })
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Peak resident memory of the process so far (`VmHWM`), in MB; None
    /// once it has exited or off Linux.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit code (None if it had to be killed).
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Waits for the process to exit by itself; its exit code, or None if
    /// it was still running after `timeout` (it is left running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The log written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Every regular file below `dir` (recursively), excluding temp files.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if !entry.file_name().to_string_lossy().starts_with(".tmp") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Runs `sinkhost ARGS...` to completion: (exit code, stdout, stderr).
pub fn sinkhost(args: &[&str]) -> (i32, String, String) {
    sinkhost_with_env(args, &[])
}

/// Runs `sinkhost ARGS...` with extra environment variables.
pub fn sinkhost_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(sinkhost_bin())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdin(Stdio::null())
        .output()
        .expect("run sinkhost");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Creates a publisher/certifier key with `sinkhost plugin keygen` as
/// `dir/name` under `key_id`; returns its path and public key (base64).
pub fn keygen(dir: &Path, name: &str, key_id: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let (code, stdout, stderr) = sinkhost(&[
        "plugin",
        "keygen",
        "--out",
        key.to_str().expect("utf-8 path"),
        "--key-id",
        key_id,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let public = stdout
        .lines()
        .find_map(|line| line.strip_prefix("public_key_b64: "))
        .expect("public key printed")
        .to_string();
    (key, public)
}

/// The unACKed count from a consumer's state: messages above the delivered
/// sequence plus those awaiting an ACK, never more than the messages above
/// the ACK floor.
///
/// The cap is needed because nats-server before 2.10.16 moves its delivered
/// sequence back when a redelivery finds no waiting pull request, so the
/// message being redelivered is counted both as never delivered and as
/// awaiting an ACK (41 unACKed of 40 published). Nothing at or below the ACK
/// floor is unACKed, and nothing above the last sequence exists, so
/// `last - ack_floor` bounds the true count from above; the count is exact
/// whenever the unACKed messages are the newest ones (a stalled destination,
/// a message stuck at the end).
pub fn unacked_count(last_sequence: u64, delivered: u64, ack_floor: u64, ack_pending: u64) -> u64 {
    let never_delivered = last_sequence.saturating_sub(delivered);
    (never_delivered + ack_pending).min(last_sequence.saturating_sub(ack_floor))
}

#[cfg(test)]
mod tests {
    use super::unacked_count;

    #[test]
    fn a_redelivery_counted_twice_is_capped_at_the_ack_floor() {
        // 40 published, none ACKed; the server moved `delivered` back to 39
        // while message 40 also awaits its ACK: 1 + 40 would say 41.
        assert_eq!(unacked_count(40, 39, 0, 40), 40);
        // Five ACKed, the sixth stuck: the same double count says 2.
        assert_eq!(unacked_count(6, 5, 5, 1), 1);
    }

    #[test]
    fn the_ordinary_counts_are_unchanged() {
        assert_eq!(unacked_count(100, 100, 100, 0), 0, "drained");
        assert_eq!(unacked_count(100, 60, 50, 10), 50, "in flight and never delivered");
        assert_eq!(unacked_count(100, 0, 0, 0), 100, "nothing delivered yet");
    }
}
