//! Logging into the host's log (WIT interface `log`). Natively (unit tests)
//! lines go to stderr when `SINKHOST_PLUGIN_LOG` is set, else nowhere.
//!
//! Never pass payload bytes or secrets here.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[cfg(target_arch = "wasm32")]
pub fn log(level: Level, message: &str) {
    use crate::sinkhost::sink::log::{log, Level as L};
    let level = match level {
        Level::Trace => L::Trace,
        Level::Debug => L::Debug,
        Level::Info => L::Info,
        Level::Warn => L::Warn,
        Level::Error => L::Error,
    };
    log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
pub fn log(level: Level, message: &str) {
    if std::env::var_os("SINKHOST_PLUGIN_LOG").is_some() {
        eprintln!("[{level:?}] {message}");
    }
}

pub fn info(message: &str) {
    log(Level::Info, message);
}

pub fn warn(message: &str) {
    log(Level::Warn, message);
}

pub fn error(message: &str) {
    log(Level::Error, message);
}

pub fn debug(message: &str) {
    log(Level::Debug, message);
}
