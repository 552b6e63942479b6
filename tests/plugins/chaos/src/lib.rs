//! `sinkhost-test-chaos`: a test-only sink component that misbehaves on
//! request, for the host's end-to-end tests. Never ship it.
//!
//! `init` config (the `sink` section):
//!
//! | key | meaning |
//! | --- | --- |
//! | `behaviour` | required, see below |
//! | `directory` | guest directory for `record`, `escape`, `trap_once_marker`, the shared counter of `transient_then_ok`, and for storing accepted messages |
//! | `only_subjects` | optional list: the behaviour applies only to batches holding one of these subjects; other batches are *accepted* |
//! | `subjects` | `fail_permanent_subjects`: subjects that fail permanently |
//! | `count` | `transient_then_ok`: how many calls fail first (default 1) |
//! | `sleep_ms` | `slow`: how long (default 1000) |
//! | `busy` | `slow`: busy-wait instead of sleeping (default false) |
//! | `mib` | `alloc`: how much to allocate (default 1024) |
//!
//! *Accepting* a batch means: when `directory` is set, write every message's
//! payload to `<directory>/<stream>-<seq>` (the `record` behaviour, no fsync,
//! so tests can count stored messages); otherwise store nothing.
//!
//! Behaviours (of `write-batch`):
//! - `discard`: accept everything, store nothing (benchmarks);
//! - `record`: store every message as above (needs `directory`);
//! - `loop`: loop forever;
//! - `alloc`: allocate `mib` MiB and touch every byte (aborts = traps when
//!   memory is refused);
//! - `panic`: panic (a trap, with `panic = "abort"`);
//! - `escape`: try to read `/etc/passwd`, to create `<directory>/../x`, to
//!   create a symlink `<directory>/chaos-escape -> /etc` and read
//!   `passwd` through it, and to read `<directory>/../../../../etc/passwd`.
//!   If ANY works: `ok` (so a test notices the leak). If all fail: a
//!   transient error listing each attempt and its error;
//! - `fail_transient`: always a transient error;
//! - `fail_permanent_subjects`: messages whose subject is in `subjects` are
//!   permanent per-message failures, the others are accepted;
//! - `transient_then_ok`: the first `count` calls fail transiently, then
//!   accept. With `directory`, the calls are counted in
//!   `<directory>/.chaos-transient-count`, shared by every instance (the host
//!   replaces instances after a trap); without it, per instance;
//! - `slow`: wait `sleep_ms`, then accept;
//! - `trap_once_marker`: if `<directory>/trapped` does not exist, create it
//!   and panic; else accept.
//! - `open_files`: open (and keep open) up to `count` files in `directory`,
//!   close them, write `<directory>/.chaos-report` (`opened N: error`),
//!   then accept;
//! - `fill_quota`: one write of `mib` MiB, a `set_len` to `mib` MiB, a
//!   truncate and 64 KiB writes, appends and `create_dir`s, each until it
//!   fails; the bytes each step got are the message of a permanent error;
//! - `symlink_escape`: create relative symlinks `up -> ..` and
//!   `sec -> ../secret.txt`, read through them into `<directory>/leak`,
//!   write through them; report what worked, then accept;
//! - `log_flood`: log `mib` MiB in lines holding newlines, ANSI escapes and
//!   forged `level=ERROR` host lines (log calls and stdout), also one log
//!   call per byte for `count` calls, then accept;
//! - `huge_log`: one log call with a `mib` MiB message;
//! - `huge_error`: a transient error whose message is `mib` MiB;
//! - `long_error`: a permanent error of 100 KB with newlines and a forged
//!   log line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Deserialize;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugin",
});

use exports::sinkhost::sink::sink::Guest;
use sinkhost::sink::log::{log, Level};
use sinkhost::sink::types::{BatchReport, Envelope, ErrorKind, MessageFailure, SinkError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Behaviour {
    Discard,
    Record,
    Loop,
    Alloc,
    Panic,
    Escape,
    FailTransient,
    FailPermanentSubjects,
    TransientThenOk,
    Slow,
    TrapOnceMarker,
    OpenFiles,
    FillQuota,
    SymlinkEscape,
    LogFlood,
    HugeLog,
    HugeError,
    LongError,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    behaviour: Behaviour,
    #[serde(default)]
    directory: Option<String>,
    #[serde(default)]
    only_subjects: Option<Vec<String>>,
    #[serde(default)]
    subjects: Vec<String>,
    #[serde(default = "one")]
    count: u64,
    #[serde(default = "second")]
    sleep_ms: u64,
    #[serde(default)]
    busy: bool,
    #[serde(default = "gib")]
    mib: u64,
}

fn one() -> u64 {
    1
}
fn second() -> u64 {
    1000
}
fn gib() -> u64 {
    1024
}

static CONFIG: Mutex<Option<Config>> = Mutex::new(None);
static CALLS: AtomicU64 = AtomicU64::new(0);

fn transient(message: impl Into<String>) -> SinkError {
    SinkError {
        kind: ErrorKind::Transient,
        message: message.into(),
    }
}

fn ok() -> Result<BatchReport, SinkError> {
    Ok(BatchReport {
        failures: Vec::new(),
    })
}

fn safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Stores the batch when a directory is configured (see module docs).
fn accept(cfg: &Config, batch: &[Envelope]) -> Result<BatchReport, SinkError> {
    let Some(dir) = &cfg.directory else {
        return ok();
    };
    let mut failures = Vec::new();
    for (index, env) in batch.iter().enumerate() {
        let path = format!("{dir}/{}-{}", safe(&env.stream), env.stream_sequence);
        if let Err(e) = std::fs::write(&path, &env.payload) {
            failures.push(MessageFailure {
                index: index as u32,
                error: transient(format!("cannot write {path}: {e}")),
            });
        }
    }
    Ok(BatchReport { failures })
}

fn need_directory(cfg: &Config) -> Result<&str, SinkError> {
    cfg.directory
        .as_deref()
        .ok_or_else(|| transient("chaos: this behaviour needs `directory`"))
}

/// `symlink(2)` from wasi-libc (std's `symlink_path` is unstable).
fn symlink(target: &str, link: &str) -> std::io::Result<()> {
    extern "C" {
        fn symlink(
            target: *const std::ffi::c_char,
            link: *const std::ffi::c_char,
        ) -> std::ffi::c_int;
    }
    let target = std::ffi::CString::new(target).map_err(std::io::Error::other)?;
    let link = std::ffi::CString::new(link).map_err(std::io::Error::other)?;
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    if unsafe { symlink(target.as_ptr(), link.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn escape(cfg: &Config) -> Result<BatchReport, SinkError> {
    let dir = need_directory(cfg)?;
    // (attempt, outcome): any Ok is an escape.
    let mut attempts: Vec<(String, std::io::Result<()>)> = Vec::new();
    attempts.push((
        "read /etc/passwd".into(),
        std::fs::read("/etc/passwd").map(drop),
    ));
    let outside = format!("{dir}/../x");
    attempts.push((
        format!("create {outside}"),
        std::fs::write(&outside, b"escaped"),
    ));
    let deep = format!("{dir}/../../../../etc/passwd");
    attempts.push((format!("read {deep}"), std::fs::read(&deep).map(drop)));
    // Symlinks pointing out: creating one inside the directory is allowed
    // (it is only a name); following it must fail. Only the read counts.
    let mut setup_failures: Vec<String> = Vec::new();
    for (name, target) in [
        ("chaos-escape", "/etc"),
        ("chaos-escape-rel", "../../../../etc"),
    ] {
        let link = format!("{dir}/{name}");
        let _ = std::fs::remove_file(&link);
        match symlink(target, &link) {
            Ok(()) => {
                attempts.push((
                    format!("read {link}/passwd (symlink to {target})"),
                    std::fs::read(format!("{link}/passwd")).map(drop),
                ));
                let _ = std::fs::remove_file(&link);
            }
            Err(e) => setup_failures.push(format!("symlink {link} -> {target}: {e}")),
        }
    }

    let escaped: Vec<&str> = attempts
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(what, _)| what.as_str())
        .collect();
    if escaped.is_empty() {
        let mut failed: Vec<String> = attempts
            .iter()
            .filter_map(|(what, r)| r.as_ref().err().map(|e| format!("{what}: {e}")))
            .collect();
        failed.extend(setup_failures);
        Err(transient(format!(
            "every escape attempt failed: {}",
            failed.join("; ")
        )))
    } else {
        log(
            Level::Error,
            &format!("chaos: ESCAPED the sandbox: {}", escaped.join("; ")),
        );
        ok()
    }
}

fn transient_then_ok(cfg: &Config, batch: &[Envelope]) -> Result<BatchReport, SinkError> {
    let call = match &cfg.directory {
        Some(dir) => {
            let path = format!("{dir}/.chaos-transient-count");
            let previous: u64 = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            std::fs::write(&path, (previous + 1).to_string())
                .map_err(|e| transient(format!("cannot write {path}: {e}")))?;
            previous + 1
        }
        None => CALLS.fetch_add(1, Ordering::SeqCst) + 1,
    };
    if call <= cfg.count {
        Err(transient(format!(
            "chaos: transient failure {call} of {}",
            cfg.count
        )))
    } else {
        accept(cfg, batch)
    }
}

fn slow(cfg: &Config, batch: &[Envelope]) -> Result<BatchReport, SinkError> {
    let duration = std::time::Duration::from_millis(cfg.sleep_ms);
    if cfg.busy {
        let start = std::time::Instant::now();
        while start.elapsed() < duration {
            std::hint::spin_loop();
        }
    } else {
        std::thread::sleep(duration);
    }
    accept(cfg, batch)
}

fn alloc(cfg: &Config) -> Result<BatchReport, SinkError> {
    let bytes = usize::try_from(cfg.mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    // Infallible allocation: a refused grow aborts (traps).
    let mut block = vec![0u8; bytes];
    for i in (0..block.len()).step_by(4096) {
        block[i] = 1;
    }
    let touched = std::hint::black_box(&block)
        .iter()
        .step_by(4096)
        .filter(|&&b| b == 1)
        .count();
    Err(transient(format!(
        "chaos: allocated and touched {} MiB ({touched} pages): no memory limit?",
        cfg.mib
    )))
}

fn report(dir: &str, text: &str) -> Result<(), SinkError> {
    let path = format!("{dir}/.chaos-report");
    std::fs::write(&path, text).map_err(|e| transient(format!("cannot write {path}: {e}")))
}

fn open_files(cfg: &Config, batch: &[Envelope]) -> Result<BatchReport, SinkError> {
    let dir = need_directory(cfg)?;
    let mut files = Vec::new();
    let mut error = String::from("none");
    for i in 0..cfg.count {
        match std::fs::File::create(format!("{dir}/open-{}", i % 4)) {
            Ok(file) => files.push(file),
            Err(e) => {
                error = e.to_string();
                break;
            }
        }
    }
    let opened = files.len();
    drop(files);
    report(dir, &format!("opened {opened}: {error}"))?;
    accept(cfg, batch)
}

/// Writes with `step` until it fails; the bytes it got and the error.
fn until_error(mut step: impl FnMut() -> std::io::Result<usize>) -> (usize, String) {
    let mut total = 0usize;
    for _ in 0..100_000 {
        match step() {
            Ok(n) => total += n,
            Err(e) => return (total, e.to_string()),
        }
    }
    (total, "no error".into())
}

fn fill_quota(cfg: &Config) -> Result<BatchReport, SinkError> {
    use std::io::Write as _;
    let dir = need_directory(cfg)?;
    let bytes = usize::try_from(cfg.mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let mut lines = Vec::new();
    let big = std::fs::write(format!("{dir}/fill-big"), vec![7u8; bytes]);
    lines.push(format!("big write: {big:?}"));
    let big = format!("{dir}/fill-big");
    let grow = std::fs::OpenOptions::new()
        .write(true)
        .open(&big)
        .and_then(|file| file.set_len(bytes as u64));
    lines.push(format!("set_len: {grow:?}"));
    let chunk = vec![1u8; 64 * 1024];
    // Truncating does not give the bytes back: writing again still fails.
    let (n, e) = match std::fs::File::create(&big) {
        Ok(mut file) => until_error(|| file.write_all(&chunk).map(|()| chunk.len())),
        Err(e) => (0, e.to_string()),
    };
    lines.push(format!("truncate then chunks: {n} bytes then {e}"));
    let (n, e) = match std::fs::OpenOptions::new().append(true).open(&big) {
        Ok(mut file) => until_error(|| file.write_all(&chunk).map(|()| chunk.len())),
        Err(e) => (0, e.to_string()),
    };
    lines.push(format!("append: {n} bytes then {e}"));
    let (n, e) = until_error(|| {
        static DEPTH: AtomicU64 = AtomicU64::new(0);
        let d = DEPTH.fetch_add(1, Ordering::SeqCst);
        std::fs::create_dir(format!("{dir}/deep-{d}")).map(|()| 1)
    });
    lines.push(format!("dirs: {n} then {e}"));
    // No file for the report: the quota is used up. The error carries it.
    Err(SinkError {
        kind: ErrorKind::Permanent,
        message: lines.join("; "),
    })
}

fn symlink_escape(cfg: &Config, batch: &[Envelope]) -> Result<BatchReport, SinkError> {
    let dir = need_directory(cfg)?;
    let mut lines = Vec::new();
    for (name, target) in [("up", ".."), ("sec", "../secret.txt"), ("self", ".")] {
        let link = format!("{dir}/{name}");
        lines.push(format!(
            "symlink {name} -> {target}: {:?}",
            symlink(target, &link)
        ));
    }
    // `pre-*` links are left by the host side (the test) before the run.
    for path in [
        format!("{dir}/up/secret.txt"),
        format!("{dir}/sec"),
        format!("{dir}/pre-up/secret.txt"),
        format!("{dir}/pre-sec"),
    ] {
        match std::fs::read(&path) {
            Ok(secret) => {
                lines.push(format!("READ {path}"));
                let _ = std::fs::write(format!("{dir}/leak"), &secret);
            }
            Err(e) => lines.push(format!("read {path}: {e}")),
        }
        let written = std::fs::write(&path, b"overwritten by the plugin");
        lines.push(format!("write {path}: {written:?}"));
    }
    let _ = report(dir, &lines.join("\n"));
    accept(cfg, batch)
}

const FORGED: &str = "\n2026-01-01T00:00:00.000000Z ERROR sinkhost: level=ERROR msg=\"FORGED host line\"\r\n\u{1b}[2K\u{1b}[1Gforged";

fn log_flood(cfg: &Config, batch: &[Envelope]) -> Result<BatchReport, SinkError> {
    let bytes = usize::try_from(cfg.mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let line = format!("flood {FORGED} {}", "y".repeat(8 * 1024));
    let mut sent = 0usize;
    while sent < bytes {
        log(Level::Error, &line);
        println!("{line}");
        sent += 2 * line.len();
    }
    for _ in 0..cfg.count {
        log(Level::Info, "z");
    }
    accept(cfg, batch)
}

struct Chaos;

impl Guest for Chaos {
    fn init(config: String) -> Result<(), String> {
        let cfg: Config =
            serde_json::from_str(&config).map_err(|e| format!("sink (chaos): {e}"))?;
        if matches!(
            cfg.behaviour,
            Behaviour::Record | Behaviour::Escape | Behaviour::TrapOnceMarker
        ) && cfg.directory.is_none()
        {
            return Err(format!(
                "sink.directory is required for behaviour {:?}",
                cfg.behaviour
            ));
        }
        if let Some(dir) = &cfg.directory {
            std::fs::create_dir_all(dir).map_err(|e| format!("sink.directory {dir}: {e}"))?;
        }
        log(
            Level::Info,
            &format!("chaos plugin ready: behaviour {:?}", cfg.behaviour),
        );
        *CONFIG.lock().unwrap_or_else(|p| p.into_inner()) = Some(cfg);
        Ok(())
    }

    fn write_batch(batch: Vec<Envelope>) -> Result<BatchReport, SinkError> {
        let cfg = CONFIG.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(cfg) = cfg else {
            return Err(transient("chaos: write-batch before init"));
        };
        if let Some(only) = &cfg.only_subjects {
            if !batch.iter().any(|e| only.contains(&e.subject)) {
                return accept(&cfg, &batch);
            }
        }
        match cfg.behaviour {
            Behaviour::Discard => ok(),
            Behaviour::Record => accept(&cfg, &batch),
            Behaviour::Loop => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Behaviour::Alloc => alloc(&cfg),
            Behaviour::Panic => panic!("chaos: panic requested"),
            Behaviour::Escape => escape(&cfg),
            Behaviour::FailTransient => Err(transient("chaos: transient failure requested")),
            Behaviour::FailPermanentSubjects => {
                let (bad, good): (Vec<usize>, Vec<usize>) =
                    (0..batch.len()).partition(|&i| cfg.subjects.contains(&batch[i].subject));
                let kept: Vec<Envelope> = good.iter().map(|&i| batch[i].clone()).collect();
                let mut report = accept(&cfg, &kept)?;
                for f in &mut report.failures {
                    f.index = good[f.index as usize] as u32;
                }
                report
                    .failures
                    .extend(bad.into_iter().map(|i| MessageFailure {
                        index: i as u32,
                        error: SinkError {
                            kind: ErrorKind::Permanent,
                            message: format!(
                                "chaos: subject {} fails permanently",
                                batch[i].subject
                            ),
                        },
                    }));
                report.failures.sort_by_key(|f| f.index);
                Ok(report)
            }
            Behaviour::OpenFiles => open_files(&cfg, &batch),
            Behaviour::FillQuota => fill_quota(&cfg),
            Behaviour::SymlinkEscape => symlink_escape(&cfg, &batch),
            Behaviour::LogFlood => log_flood(&cfg, &batch),
            Behaviour::HugeLog => {
                let bytes = usize::try_from(cfg.mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
                log(Level::Error, &"h".repeat(bytes));
                Err(transient("chaos: a huge log call went through"))
            }
            Behaviour::HugeError => {
                let bytes = usize::try_from(cfg.mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
                Err(transient("e".repeat(bytes)))
            }
            Behaviour::LongError => Err(SinkError {
                kind: ErrorKind::Permanent,
                message: format!("long error{FORGED}{}", "q\n".repeat(50_000)),
            }),
            Behaviour::TransientThenOk => transient_then_ok(&cfg, &batch),
            Behaviour::Slow => slow(&cfg, &batch),
            Behaviour::TrapOnceMarker => {
                let marker = format!("{}/trapped", need_directory(&cfg)?);
                if std::fs::metadata(&marker).is_err() {
                    std::fs::write(&marker, b"1")
                        .map_err(|e| transient(format!("cannot write {marker}: {e}")))?;
                    panic!("chaos: trapping once (marker {marker} created)");
                }
                accept(&cfg, &batch)
            }
        }
    }
}

export!(Chaos);
