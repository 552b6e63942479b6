//! The host log: `tracing` to standard error, text or JSON lines. Plugin
//! output and plugin log calls arrive here too (target `plugin`). Payloads
//! and secrets are never logged.

use std::sync::OnceLock;
use std::time::Instant;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LoggingConfig};

static PROCESS_START: OnceLock<Instant> = OnceLock::new();

/// Records the process start (call first thing in `main`).
pub fn mark_process_start() {
    PROCESS_START.get_or_init(Instant::now);
}

/// Milliseconds since [`mark_process_start`], for start-up timings.
pub fn millis_since_start() -> u128 {
    PROCESS_START
        .get_or_init(Instant::now)
        .elapsed()
        .as_millis()
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the
/// configured level. Calling it twice is harmless (the second call is ignored).
pub fn init(config: &LoggingConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directive| EnvFilter::try_new(directive).ok())
        .or_else(|| EnvFilter::try_new(config.filter_directive()).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
