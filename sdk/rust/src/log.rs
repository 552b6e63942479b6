//! Lines in the host's log, through the WIT import `sinkhost:sink/log`. The
//! host adds the plugin's name and applies the operator's level and format.
//! Never log payloads or secrets.
//!
//! Off `wasm32` (native unit tests) lines go to stderr when the environment
//! variable `SINKHOST_PLUGIN_LOG` is set, else nowhere.
//!
//! ```
//! sinkhost_sdk::log::info("sink ready");
//! sinkhost_sdk::log::log(sinkhost_sdk::log::Level::Debug, "batch of 3");
//! ```

pub use crate::wit::sinkhost::sink::log::Level;

/// Writes one line at `level`.
///
/// ```
/// sinkhost_sdk::log::log(sinkhost_sdk::log::Level::Info, "hello");
/// ```
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::wit::sinkhost::sink::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    if std::env::var_os("SINKHOST_PLUGIN_LOG").is_some() {
        eprintln!("[{level:?}] {message}");
    }
}

/// Writes one line at level `trace`.
///
/// ```
/// sinkhost_sdk::log::trace("details");
/// ```
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Writes one line at level `debug`.
///
/// ```
/// sinkhost_sdk::log::debug("details");
/// ```
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Writes one line at level `info`.
///
/// ```
/// sinkhost_sdk::log::info("ready");
/// ```
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Writes one line at level `warn`.
///
/// ```
/// sinkhost_sdk::log::warn("slow destination");
/// ```
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Writes one line at level `error`.
///
/// ```
/// sinkhost_sdk::log::error("cannot write");
/// ```
pub fn error(message: &str) {
    log(Level::Error, message);
}
