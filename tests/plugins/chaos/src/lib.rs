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
