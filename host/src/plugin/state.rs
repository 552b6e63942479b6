//! What each plugin instance's wasmtime `Store` holds: its WASI context (only
//! the granted capabilities), its resource limits, its call deadline, and the
//! routing of its output into the host log.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capabilities::files::{FsGuard, FsGuardView};
use crate::capabilities::{HttpHooks, Sql};

/// Longest log line kept from a plugin; the rest is cut, so one huge line
/// cannot flood the host log.
pub const MAX_LOG_LINE_BYTES: usize = 4 * 1024;
/// Output (log calls, stdout, stderr) one call of a plugin may produce
/// before the rest of that call's output is dropped with one warning. Per
/// call, not per instance: a long-lived instance that logs a line per batch
/// must not fall silent after a few days.
pub const MAX_OUTPUT_BYTES_PER_CALL: usize = 256 * 1024;
/// Longest sink error message kept (a `write-batch` failure or an `init`
/// error): it goes into the host log and into the DLQ record of every
/// failed message, so a plugin cannot grow either with one huge string.
pub const MAX_SINK_ERROR_BYTES: usize = 1024;
/// Share of the instance's `memory_mb` that one guest-to-host call may copy
/// into host memory (strings, lists: wasmtime's "hostcall fuel"; its
/// default is a fixed 128 MiB whatever the instance's limit). A quarter
/// leaves the guest room for its own copy and keeps the host's per-call
/// allocation proportional to what the operator granted.
pub const HOSTCALL_FUEL_SHARE: usize = 4;
/// The least hostcall fuel of any instance, so a tiny `memory_mb` still
/// allows ordinary log lines and SQL parameters.
pub const MIN_HOSTCALL_FUEL_BYTES: usize = MIB;
/// Table elements per table: far above what real guests use, small enough
/// that a runaway `table.grow` cannot eat the host's memory.
pub const MAX_TABLE_ELEMENTS: usize = 1_000_000;
/// Core instances per store: Python components use about 11, so this
/// leaves room for bigger runtimes without allowing thousands.
pub const MAX_INSTANCES: usize = 64;
/// Tables per store (a few per core instance).
pub const MAX_TABLES: usize = MAX_INSTANCES * 4;
/// Linear memories per store (at most one or two per core instance).
pub const MAX_MEMORIES: usize = MAX_INSTANCES;

const MIB: usize = 1024 * 1024;
/// What one log line costs from the output budget at least (about the size
/// of the host's own fields on the line): empty or one-byte lines are not
/// free.
const MIN_LOG_CALL_COST: usize = 64;

/// The data of one plugin instance's store.
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    /// Where the plugin's `wasi:http` requests go: only to granted origins.
    http_hooks: HttpHooks,
    /// The databases granted to the plugin (`sql` interface); its open
    /// transactions live in `table`.
    pub sql: Sql,
    /// The transactions the running call began, ended when it returns.
    pub sql_transactions: crate::capabilities::sql::CallTransactions,
    /// Memory accounting; tells a memory-limit trap from other traps.
    pub limiter: MemoryLimiter,
    /// The current call's deadline.
    pub deadline: Deadline,
    /// Where the plugin's log calls and stdio go.
    pub log: PluginLog,
    /// Descriptor count and quotas of the `files` grant.
    files: FsGuard,
}

impl StoreState {
    /// A store state whose `wasi:http` requests go through `http_hooks`.
    pub fn with_http(
        wasi: WasiCtx,
        http_hooks: HttpHooks,
        memory_limit_bytes: usize,
        log: PluginLog,
    ) -> Self {
        Self {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            http_hooks,
            sql: Sql::default(),
            sql_transactions: Default::default(),
            limiter: MemoryLimiter::new(memory_limit_bytes),
            deadline: Deadline::default(),
            log,
            files: FsGuard::default(),
        }
    }

    /// The same state with the `files` grant's limits.
    pub fn with_files(mut self, files: FsGuard) -> Self {
        self.files = files;
        self
    }

    /// The guarded `wasi:filesystem` view (see `capabilities::files`).
    pub fn guarded_fs(&mut self) -> FsGuardView<'_> {
        FsGuardView {
            fs: wasmtime_wasi::filesystem::WasiFilesystemCtxView {
                ctx: self.wasi.filesystem(),
                table: &mut self.table,
            },
            guard: &mut self.files,
        }
    }

    /// The same state with `sql` granted.
    pub fn with_sql(mut self, sql: Sql) -> Self {
        self.sql = sql;
        self
    }

    /// The table of the instance's resources (WASI handles, transactions).
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// Ends every transaction the call that just returned began (rolled back
    /// unless committed; the plugin's handles become dead).
    pub async fn end_sql_transactions(&mut self) {
        if self.sql_transactions.is_empty() {
            return;
        }
        let open = self.sql_transactions.end_all(&mut self.table).await;
        if open > 0 {
            tracing::debug!(
                transactions = open,
                "rolled back the transactions the plugin call left open"
            );
        }
    }

    /// Prepares the state for a new call: deadline armed, output budget
    /// refilled.
    pub fn start_call(&mut self, timeout: Duration) {
        self.deadline.arm(timeout);
        self.log.refill();
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

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

/// wasmtime's [`StoreLimits`] (per-memory size, instance, table and memory
/// counts, trap on a refused grow) plus two things it lacks: a cap on the
/// *total* linear memory of all memories of the instance (a component can
/// have several), and a record that a grow was refused, so the resulting
/// trap is reported as a memory-limit fault rather than a generic trap.
#[derive(Debug)]
pub struct MemoryLimiter {
    limits: StoreLimits,
    limit_bytes: usize,
    used_bytes: usize,
    /// Set when a grow was refused because of the memory limit.
    pub refused: bool,
}

impl MemoryLimiter {
    /// A limiter allowing `limit_bytes` of linear memory in all.
    pub fn new(limit_bytes: usize) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(limit_bytes)
            .table_elements(MAX_TABLE_ELEMENTS)
            .instances(MAX_INSTANCES)
            .tables(MAX_TABLES)
            .memories(MAX_MEMORIES)
            // A refused grow traps at once: guests rarely handle a failed
            // grow well, and a trap is easy to attribute to the limit.
            .trap_on_grow_failure(true)
            .build();
        Self {
            limits,
            limit_bytes,
            used_bytes: 0,
            refused: false,
        }
    }

    fn refuse(&mut self, requested: usize) -> wasmtime::Error {
        self.refused = true;
        wasmtime::Error::msg(format!(
            "memory limit exceeded: {} MiB requested in all, {} MiB allowed",
            requested.div_ceil(MIB),
            self.limit_bytes / MIB
        ))
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|maximum| desired > maximum) {
            // Past the memory's own declared maximum: plain wasm semantics
            // (`memory.grow` returns -1), not the operator's limit.
            return Ok(false);
        }
        let total = self
            .used_bytes
            .saturating_add(desired.saturating_sub(current));
        if total > self.limit_bytes {
            return Err(self.refuse(total));
        }
        match self.limits.memory_growing(current, desired, maximum) {
            Ok(true) => {
                self.used_bytes = total;
                Ok(true)
            }
            Ok(false) | Err(_) => Err(self.refuse(total)),
        }
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// The running call's deadline. The engine's epoch advances every
/// [`super::engine::EPOCH_TICK`]; at every tick during a call wasmtime asks
/// [`Deadline::on_tick`], which yields to the host's executor (so a busy
/// plugin does not hold a tokio worker thread for its whole deadline) or,
/// once the wall-clock deadline has passed, interrupts the call with
/// `Trap::Interrupt`. Wall-clock rather than counted ticks: time the plugin
/// spends inside host calls counts too.
#[derive(Debug)]
pub struct Deadline {
    expires_at: Instant,
    /// Set when the call ran out of time.
    pub expired: bool,
}

impl Default for Deadline {
    fn default() -> Self {
        Self {
            expires_at: Instant::now(),
            expired: false,
        }
    }
}

impl Deadline {
    /// Arms the deadline for a new call lasting at most `timeout`.
    pub fn arm(&mut self, timeout: Duration) {
        self.expires_at = Instant::now() + timeout;
        self.expired = false;
    }

    /// Called by wasmtime at every epoch tick while the plugin runs.
    pub fn on_tick(&mut self) -> UpdateDeadline {
        if Instant::now() >= self.expires_at {
            self.expired = true;
            return UpdateDeadline::Interrupt;
        }
        // tokio's `yield_now` (as wasmtime recommends) rather than
        // `UpdateDeadline::Yield`: a plain self-wake lands in tokio's LIFO
        // slot and the same task runs again at once, starving timers and
        // other tasks; `yield_now` defers it behind them.
        UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
    }
}

/// Severity of a plugin log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The plugin's log channel: its `log` calls and its stdout/stderr lines end
/// up here, under the tracing target `plugin` with the plugin's name, within
/// a per-call byte budget.
#[derive(Debug, Clone)]
pub struct PluginLog {
    name: Arc<str>,
    budget: Arc<AtomicUsize>,
    warned: Arc<AtomicBool>,
}

impl PluginLog {
    /// A log channel for the plugin called `name`.
    pub fn new(name: Arc<str>) -> Self {
        Self {
            name,
            budget: Arc::new(AtomicUsize::new(MAX_OUTPUT_BYTES_PER_CALL)),
            warned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Refills the budget at the start of a call.
    pub fn refill(&self) {
        self.budget
            .store(MAX_OUTPUT_BYTES_PER_CALL, Ordering::Relaxed);
        self.warned.store(false, Ordering::Relaxed);
    }

    /// Logs one line (cut to [`MAX_LOG_LINE_BYTES`], control characters
    /// escaped so a plugin cannot forge host log lines), within the budget.
    pub fn line(&self, level: LogLevel, stream: &str, text: &str) {
        let clean = sanitize(cut(text.trim_end(), MAX_LOG_LINE_BYTES));
        // Escaping can grow a line (a control character becomes up to 10
        // bytes): cut again, so a logged line never exceeds the cap.
        let text = cut(&clean, MAX_LOG_LINE_BYTES);
        // A log call costs at least a small fixed amount, so a plugin
        // making one call per byte runs out of budget as fast as one
        // writing long lines.
        if !self.spend(text.len().max(MIN_LOG_CALL_COST)) {
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

    /// Takes `cost` bytes from the budget; false (and one warning per call)
    /// once it is used up.
    fn spend(&self, cost: usize) -> bool {
        let taken = self
            .budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(cost)
            });
        if taken.is_ok() {
            return true;
        }
        self.budget.store(0, Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "plugin",
                plugin = %self.name,
                budget_bytes = MAX_OUTPUT_BYTES_PER_CALL,
                "plugin output budget of this call used up; the rest of its output is dropped"
            );
        }
        false
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

/// Bytes of guest-to-host copies allowed per host call for an instance
/// limited to `memory_bytes` (see [`HOSTCALL_FUEL_SHARE`]).
pub fn hostcall_fuel(memory_bytes: usize) -> usize {
    (memory_bytes / HOSTCALL_FUEL_SHARE).max(MIN_HOSTCALL_FUEL_BYTES)
}

/// A message from the plugin (a sink error, an `init` error) made safe for
/// the host log and the DLQ: cut to [`MAX_SINK_ERROR_BYTES`] (before and
/// after escaping) and escaped to one line.
pub fn clean_message(text: &str) -> String {
    let cut_to = |t: &str| cut(t, MAX_SINK_ERROR_BYTES).to_string();
    let clean = sanitize(cut(text.trim_end(), MAX_SINK_ERROR_BYTES));
    if clean.len() > MAX_SINK_ERROR_BYTES {
        return format!("{}…", cut_to(&clean));
    }
    if text.trim_end().len() > MAX_SINK_ERROR_BYTES {
        return format!("{clean}…");
    }
    clean.into_owned()
}

/// Characters that could make one plugin line look like several host lines
/// or rewrite the terminal: control characters (C0, DEL, C1: newlines,
/// carriage returns, ANSI escapes), Unicode line and paragraph separators,
/// and the bidirectional overrides that reorder what a reader sees.
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// Escapes [`must_escape`] characters so one plugin line stays one host log
/// line.
fn sanitize(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(must_escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut clean = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if must_escape(c) {
            clean.extend(c.escape_default());
        } else {
            clean.push(c);
        }
    }
    std::borrow::Cow::Owned(clean)
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

/// Buffers bytes until a newline, then logs the line. Bytes past
/// [`MAX_LOG_LINE_BYTES`] of one line are dropped as they arrive, so a
/// plugin writing without newlines cannot grow the buffer.
struct LineWriter {
    output: LogOutput,
    pending: Vec<u8>,
}

impl LineWriter {
    fn flush_line(&mut self) {
        let line = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        self.output
            .log
            .line(self.output.level, self.output.stream, &line);
    }

    fn push(&mut self, buf: &[u8]) {
        for chunk in buf.split_inclusive(|byte| *byte == b'\n') {
            let (text, ends_line) = match chunk.split_last() {
                Some((b'\n', text)) => (text, true),
                _ => (chunk, false),
            };
            let room = MAX_LOG_LINE_BYTES.saturating_sub(self.pending.len());
            self.pending
                .extend_from_slice(&text[..text.len().min(room)]);
            if ends_line {
                self.flush_line();
            }
        }
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
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

impl Drop for LineWriter {
    /// A last line without a newline is still logged.
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.flush_line();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_counts_all_memories_and_remembers_refusal() {
        let mut limiter = MemoryLimiter::new(64 * MIB);
        assert!(limiter.memory_growing(0, 40 * MIB, None).expect("fits"));
        assert!(!limiter.refused);
        // A second memory: fits alone, not in total.
        assert!(limiter.memory_growing(0, 30 * MIB, None).is_err());
        assert!(limiter.refused);
    }

    #[test]
    fn limiter_refuses_one_memory_past_the_limit() {
        let mut limiter = MemoryLimiter::new(64 * MIB);
        assert!(limiter.memory_growing(0, 65 * MIB, None).is_err());
        assert!(limiter.refused);
    }

    #[test]
    fn growing_past_the_declared_maximum_is_not_the_operators_limit() {
        let mut limiter = MemoryLimiter::new(64 * MIB);
        assert!(!limiter
            .memory_growing(MIB, 2 * MIB, Some(MIB))
            .expect("wasm semantics"));
        assert!(!limiter.refused);
    }

    #[test]
    fn limiter_allows_python_sized_instance_counts() {
        let limiter = MemoryLimiter::new(64 * MIB);
        assert!(limiter.instances() >= 20);
        assert!(limiter.memories() >= 20);
    }

    #[test]
    fn deadline_yields_then_interrupts() {
        let mut deadline = Deadline::default();
        deadline.arm(Duration::from_secs(60));
        assert!(matches!(
            deadline.on_tick(),
            UpdateDeadline::YieldCustom(1, _)
        ));
        assert!(!deadline.expired);
        deadline.arm(Duration::ZERO);
        assert!(matches!(deadline.on_tick(), UpdateDeadline::Interrupt));
        assert!(deadline.expired);
        deadline.arm(Duration::from_secs(60));
        assert!(!deadline.expired);
    }

    #[test]
    fn cut_respects_char_boundaries() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("abc", 10), "abc");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(sanitize("plain"), "plain");
        assert_eq!(sanitize("a\nFAKE host line"), "a\\nFAKE host line");
        assert_eq!(sanitize("\u{1b}[31mred"), "\\u{1b}[31mred");
    }

    #[test]
    fn line_separators_and_bidi_overrides_are_escaped() {
        assert_eq!(sanitize("a\u{2028}b"), "a\\u{2028}b");
        assert_eq!(sanitize("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(
            sanitize("\r\nlevel=ERROR forged"),
            "\\r\\nlevel=ERROR forged"
        );
    }

    #[test]
    fn sink_messages_are_cut_and_escaped() {
        assert_eq!(clean_message("disk full\n"), "disk full");
        assert_eq!(clean_message("a\nb"), "a\\nb");
        let long = clean_message(&"x".repeat(10 * MAX_SINK_ERROR_BYTES));
        assert!(long.len() <= MAX_SINK_ERROR_BYTES + 3, "{}", long.len());
        assert!(long.ends_with('…'));
        let escaped = clean_message(&"\u{1b}".repeat(MAX_SINK_ERROR_BYTES));
        assert!(
            escaped.len() <= MAX_SINK_ERROR_BYTES + 3,
            "{}",
            escaped.len()
        );
        assert!(!escaped.contains('\u{1b}'));
    }

    #[test]
    fn hostcall_fuel_follows_memory() {
        assert_eq!(hostcall_fuel(64 * MIB), 16 * MIB);
        assert_eq!(hostcall_fuel(1024 * MIB), 256 * MIB);
        assert_eq!(hostcall_fuel(0), MIB);
    }

    #[test]
    fn tiny_log_calls_still_cost_budget() {
        let log = PluginLog::new("t".into());
        let calls = (0..MAX_OUTPUT_BYTES_PER_CALL)
            .take_while(|_| log.spend(MIN_LOG_CALL_COST))
            .count();
        assert_eq!(calls, MAX_OUTPUT_BYTES_PER_CALL / MIN_LOG_CALL_COST);
    }

    #[test]
    fn budget_is_per_call() {
        let log = PluginLog::new("t".into());
        assert!(log.spend(MAX_OUTPUT_BYTES_PER_CALL));
        assert!(!log.spend(1));
        log.refill();
        assert!(log.spend(1));
    }

    #[test]
    fn line_writer_splits_lines_and_caps_their_length() {
        let log = PluginLog::new("t".into());
        let mut writer = LineWriter {
            output: LogOutput::new(log.clone(), "stdout", LogLevel::Info),
            pending: Vec::new(),
        };
        writer.push(b"one\ntw");
        assert_eq!(writer.pending, b"tw");
        writer.push(b"o\n");
        assert!(writer.pending.is_empty());
        writer.push(&vec![b'x'; MAX_LOG_LINE_BYTES * 3]);
        assert_eq!(writer.pending.len(), MAX_LOG_LINE_BYTES);
    }
}
