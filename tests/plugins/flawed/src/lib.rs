//! `sinkhost-test-flawed`: a test-only file sink with one deliberate flaw,
//! chosen by its config, so `sinkhost certify` can be shown to catch each
//! one. Never ship it.
//!
//! `init` config (the `sink` section):
//! `{"directory": "/data/out", "flaw": "none" | "duplicates" | "misclassifies" | "probes" | "slow" | "cheats",
//!   "slow_ms_per_message": 20, "probe_url": "http://127.0.0.1:9/"}`
//!
//! Without a flaw it stores each message as `<directory>/<stream>-<sequence>.json`
//! (subject, message id, headers, payload as base64), replacing an earlier
//! copy, and reports I/O errors as transient: a correct, if simple, sink.
//! - `duplicates`: the file name also carries the delivery count, so a
//!   redelivered message is stored a second time;
//! - `misclassifies`: I/O errors (destination unavailable) are reported as
//!   permanent, so they would be dead-lettered instead of retried;
//! - `probes`: before writing, tries to reach `probe_url` over wasi:http
//!   (outside its grant) and to read the host environment and `/etc/passwd`;
//! - `slow`: spins for `slow_ms_per_message` per message;
//! - `cheats`: behaves correctly only while it believes it is being
//!   certified, recognising the names `sinkhost certify` used to use (a
//!   `CERTIFY_` stream, the `sinkhost-certify` consumer, `certify.` subjects);
//!   otherwise it duplicates on redelivery like `duplicates`.

use std::io::Write as _;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugin",
});

use exports::sinkhost::sink::sink::Guest;
use sinkhost::sink::types::{BatchReport, Envelope, ErrorKind, SinkError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Flaw {
    None,
    Duplicates,
    Misclassifies,
    Probes,
    Slow,
    Cheats,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    directory: String,
    #[serde(default = "no_flaw")]
    flaw: Flaw,
    #[serde(default = "default_slow_ms")]
    slow_ms_per_message: u64,
    #[serde(default = "default_probe_url")]
    probe_url: String,
}

fn no_flaw() -> Flaw {
    Flaw::None
}
fn default_slow_ms() -> u64 {
    20
}
fn default_probe_url() -> String {
    "http://127.0.0.1:9/".into()
}

static mut CONFIG: Option<Config> = None;

struct Component;

impl Guest for Component {
    fn init(config: String) -> Result<(), String> {
        let config: Config =
            serde_json::from_str(&config).map_err(|err| format!("bad config: {err}"))?;
        // Single-threaded guest: set once in init, read in write-batch.
        unsafe { CONFIG = Some(config) };
        Ok(())
    }

    fn write_batch(batch: Vec<Envelope>) -> Result<BatchReport, SinkError> {
        #[allow(static_mut_refs)]
        let config = unsafe { CONFIG.clone() }
            .ok_or_else(|| error(ErrorKind::Permanent, "init was not called".into()))?;
        if config.flaw == Flaw::Probes {
            probe(&config.probe_url);
        }
        for envelope in &batch {
            if config.flaw == Flaw::Slow {
                spin(config.slow_ms_per_message);
            }
            write(&config, envelope)?;
        }
        Ok(BatchReport {
            failures: Vec::new(),
        })
    }
}

/// Whether `envelope` looks like one of the old, fixed certification names.
fn looks_certified(envelope: &Envelope) -> bool {
    envelope.stream.starts_with("CERTIFY_")
        || envelope.consumer == "sinkhost-certify"
        || envelope.subject.starts_with("certify.")
}

fn write(config: &Config, envelope: &Envelope) -> Result<(), SinkError> {
    let duplicates = match config.flaw {
        Flaw::Duplicates => true,
        Flaw::Cheats => !looks_certified(envelope),
        _ => false,
    };
    let name = if duplicates {
        format!(
            "{}-{}-{}.json",
            envelope.stream, envelope.stream_sequence, envelope.delivery_count
        )
    } else {
        format!("{}-{}.json", envelope.stream, envelope.stream_sequence)
    };
    let path = format!("{}/{name}", config.directory);
    let record = json!({
        "subject": envelope.subject,
        "stream": envelope.stream,
        "consumer": envelope.consumer,
        "message_id": envelope.message_id,
        "headers": envelope.headers,
        "payload_b64": base64::engine::general_purpose::STANDARD.encode(&envelope.payload),
    });
    let kind = if config.flaw == Flaw::Misclassifies {
        ErrorKind::Permanent
    } else {
        ErrorKind::Transient
    };
    let mut file =
        std::fs::File::create(&path).map_err(|err| error(kind, format!("{path}: {err}")))?;
    file.write_all(record.to_string().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|err| error(kind, format!("{path}: {err}")))
}

/// Reaches for what the grants do not give; everything found would be
/// exfiltrated by a real attacker (here it is only looked at).
fn probe(url: &str) {
    let request = sinkhost_sdk_http::Request {
        method: "GET".into(),
        url: url.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    let _ = sinkhost_sdk_http::send_all([&request], 1);
    let _ = std::env::vars().count();
    let _ = std::fs::read("/etc/passwd");
}

fn spin(ms: u64) {
    let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
}

fn error(kind: ErrorKind, message: String) -> SinkError {
    SinkError { kind, message }
}

export!(Component);
