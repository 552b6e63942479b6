//! What each plugin instance's wasmtime `Store` holds: its WASI context (only
//! the granted capabilities), its resource limits, its call deadline, and the
//! routing of its output into the host log.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Longest log line kept from a plugin; the rest is cut (a plugin must not
/// be able to flood the host log with one huge line).
pub const MAX_LOG_LINE_BYTES: usize = 4 * 1024;
/// Output a plugin instance may write to stdout/stderr and the log before
/// further output is dropped (one warning says so).
pub const MAX_OUTPUT_BYTES_PER_INSTANCE: usize = 1024 * 1024;
/// Table elements per instance: far above what real guests use, small enough
/// that a runaway `table.grow` cannot eat the host's memory.
pub const MAX_TABLE_ELEMENTS: usize = 1_000_000;
/// Core instances per store: Python components use about 11.
pub const MAX_INSTANCES: usize = 64;

/// The data of one plugin instance's store.
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory accounting; tells a memory-limit trap from other traps.
    pub limiter: MemoryLimiter,
    /// The current call's deadline.
    pub deadline: Deadline,
    /// Where the plugin's log calls go.
    pub log: PluginLog,
}

impl StoreState {
    /// A store state with the given WASI context and limits.
    pub fn new(wasi: WasiCtx, memory_limit_bytes: usize, log: PluginLog) -> Self {
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit_bytes),
            deadline: Deadline::default(),
            log,
        }
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Limits the total linear memory of all memories of an instance, and
/// remembers a refusal so the resulting trap is reported as a memory-limit
/// fault. A refused grow traps at once (the guest cannot limp on).
#[derive(Debug)]
pub struct MemoryLimiter {
    limit_bytes: usize,
    used_bytes: usize,
    /// Set when a grow was refused.
    pub refused: bool,
}

impl MemoryLimiter {
    fn new(limit_bytes: usize) -> Self {
        Self {
            limit_bytes,
            used_bytes: 0,
            refused: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.used_bytes.saturating_add(growth);
        if total > self.limit_bytes {
            self.refused = true;
            return Err(wasmtime::Error::msg(format!(
                "memory limit exceeded: {} MiB requested, {} MiB allowed",
                total / (1024 * 1024),
                self.limit_bytes / (1024 * 1024)
            )));
        }
        self.used_bytes = total;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_INSTANCES * 4
    }

    fn memories(&self) -> usize {
        MAX_INSTANCES
    }
}

/// The running call's deadline, counted in epoch ticks. At every tick the
/// plugin yields to the host's executor (so heartbeats and other batches
/// keep running); when the ticks run out the call traps.
#[derive(Debug, Default)]
pub struct Deadline {
    ticks_left: u64,
    /// Set when the call ran out of time.
    pub expired: bool,
}

impl Deadline {
    /// Arms the deadline for a new call.
    pub fn arm(&mut self, ticks: u64) {
        self.ticks_left = ticks;
        self.expired = false;
    }

    /// Called at every epoch tick during a call.
    pub fn tick(&mut self) -> wasmtime::Result<wasmtime::UpdateDeadline> {
        if self.ticks_left <= 1 {
            self.expired = true;
            return Err(wasmtime::Error::msg("plugin call deadline exceeded"));
        }
        self.ticks_left -= 1;
        Ok(wasmtime::UpdateDeadline::Yield(1))
    }
}

/// The plugin's log channel: its `log` calls and its stdout/stderr lines end
/// up here, under the tracing target `plugin`, with a byte budget.
#[derive(Debug, Clone)]
pub struct PluginLog {
    name: Arc<str>,
    budget: Arc<std::sync::atomic::AtomicUsize>,
}

/// Severity of a plugin log line.
#[derive(Debug, Clone, Copy)]
pub enum LogLevel {
    /// Finest detail.
    Trace,
    /// Debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something odd.
    Warn,
    /// Something failed.
    Error,
}

impl PluginLog {
    /// A log channel for the plugin called `name`.
    pub fn new(name: Arc<str>) -> Self {
        Self {
            name,
            budget: Arc::new(std::sync::atomic::AtomicUsize::new(MAX_OUTPUT_BYTES_PER_INSTANCE)),
        }
    }

    /// Writes one line, cut to [`MAX_LOG_LINE_BYTES`], within the budget.
    pub fn line(&self, level: LogLevel, stream: &str, text: &str) {
        use std::sync::atomic::Ordering;
        let text = cut(text.trim_end(), MAX_LOG_LINE_BYTES);
        let cost = text.len().max(1);
        let before = self
            .budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| Some(left.saturating_sub(cost)))
            .unwrap_or(0);
        if before == 0 {
            return;
        }
        if before < cost {
            tracing::warn!(target: "plugin", plugin = %self.name, "plugin output budget used up; further output of this instance is dropped");
            return;
        }
        let name = &*self.name;
        match level {
            LogLevel::Trace => tracing::trace!(target: "plugin", plugin = name, stream, "{text}"),
            LogLevel::Debug => tracing::debug!(target: "plugin", plugin = name, stream, "{text}"),
            LogLevel::Info => tracing::info!(target: "plugin", plugin = name, stream, "{text}"),
            LogLevel::Warn => tracing::warn!(target: "plugin", plugin = name, stream, "{text}"),
            LogLevel::Error => tracing::error!(target: "plugin", plugin = name, stream, "{text}"),
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The plugin's stdout or stderr: split into lines, each logged.
#[derive(Debug, Clone)]
pub struct LogOutput {
    log: PluginLog,
    stream: &'static str,
    level: LogLevel,
}

impl LogOutput {
    /// Routes the named stream to the log at `level`.
    pub fn new(log: PluginLog, stream: &'static str, level: LogLevel) -> Self {
        Self { log, stream, level }
    }
}

impl IsTerminal for LogOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            output: self.clone(),
            pending: Vec::new(),
        })
    }
}

/// Buffers bytes until a newline, then logs the line.
struct LineWriter {
    output: LogOutput,
    pending: Vec<u8>,
}

impl LineWriter {
    fn flush_line(&mut self) {
        let line = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        self.output.log.line(self.output.level, self.output.stream, &line);
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        for byte in buf {
            if *byte == b'\n' {
                self.flush_line();
            } else if self.pending.len() < MAX_LOG_LINE_BYTES {
                self.pending.push(*byte);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.pending.is_empty() {
            self.flush_line();
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter as _;

    #[test]
    fn limiter_counts_all_memories_and_remembers_refusal() {
        let mut limiter = MemoryLimiter::new(64 << 20);
        assert!(limiter.memory_growing(0, 40 << 20, None).expect("fits"));
        assert!(!limiter.refused);
        assert!(limiter.memory_growing(0, 30 << 20, None).is_err());
        assert!(limiter.refused);
    }

    #[test]
    fn deadline_expires_after_its_ticks() {
        let mut deadline = Deadline::default();
        deadline.arm(3);
        assert!(deadline.tick().is_ok());
        assert!(deadline.tick().is_ok());
        assert!(deadline.tick().is_err());
        assert!(deadline.expired);
        deadline.arm(2);
        assert!(!deadline.expired);
    }

    #[test]
    fn cut_respects_char_boundaries() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("abc", 10), "abc");
    }
}
