//! A record of what the host refused a plugin: requests to origins outside
//! the `http` grant, statements or tables outside the `sql` grant. Shared by
//! every instance of one loaded plugin, so `sinkhost certify` (and the logs)
//! can tell a plugin that only did its job from one that probed outside its
//! grants.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many refusals are kept with their details (the count goes on).
const MAX_KEPT_REFUSALS: usize = 32;
/// How many refusals are logged per [`LOG_WINDOW`]; later ones in the same
/// window are only counted, and one summary line gives their number when
/// the next refusal is logged. A plugin probing in a loop cannot turn each
/// refused request into a host log line.
const MAX_LOGGED_PER_WINDOW: u64 = 10;
/// The rate-limit window of refusal log lines.
const LOG_WINDOW: Duration = Duration::from_secs(60);
/// Longest detail kept per refusal, in bytes.
const MAX_REFUSAL_DETAIL_BYTES: usize = 300;

/// One refused request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    /// The capability: `http` or `sql`.
    pub capability: &'static str,
    /// What was asked and why it was refused (no payloads, no secrets).
    pub detail: String,
}

#[derive(Debug, Default)]
struct RefusalLog {
    total: u64,
    kept: Vec<Refusal>,
    /// Start of the current log window (`None` before the first refusal).
    window_start: Option<Instant>,
    /// Refusals logged in the current window.
    logged_in_window: u64,
    /// Refusals not logged since the last summary.
    suppressed: u64,
}

/// What to log for one refusal.
#[derive(Debug, PartialEq, Eq)]
enum LogDecision {
    /// Log it, after a summary of `suppressed` refusals left out before.
    Log { suppressed: u64 },
    /// Count it only.
    Suppress,
}

impl RefusalLog {
    fn decide(&mut self, now: Instant) -> LogDecision {
        let expired = self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= LOG_WINDOW);
        if expired {
            self.window_start = Some(now);
            self.logged_in_window = 0;
        }
        if self.logged_in_window >= MAX_LOGGED_PER_WINDOW {
            self.suppressed = self.suppressed.saturating_add(1);
            return LogDecision::Suppress;
        }
        self.logged_in_window += 1;
        LogDecision::Log {
            suppressed: std::mem::take(&mut self.suppressed),
        }
    }
}

/// The refusals of one loaded plugin; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Refusals {
    log: Arc<Mutex<RefusalLog>>,
}

impl Refusals {
    /// Records one refusal and logs it (at most [`MAX_LOGGED_PER_WINDOW`]
    /// lines per [`LOG_WINDOW`]; the detail is cut and escaped to one line).
    pub fn record(&self, capability: &'static str, detail: impl Into<String>) {
        let mut detail = detail.into();
        if detail.len() > MAX_REFUSAL_DETAIL_BYTES {
            let mut end = MAX_REFUSAL_DETAIL_BYTES;
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
        }
        let decision = match self.log.lock() {
            Ok(mut log) => {
                log.total = log.total.saturating_add(1);
                let decision = log.decide(Instant::now());
                if log.kept.len() < MAX_KEPT_REFUSALS {
                    log.kept.push(Refusal {
                        capability,
                        detail: detail.clone(),
                    });
                }
                decision
            }
            Err(_) => LogDecision::Suppress,
        };
        if let LogDecision::Log { suppressed } = decision {
            if suppressed > 0 {
                tracing::warn!(
                    capability,
                    suppressed,
                    "further plugin requests were refused and not logged (rate limit)"
                );
            }
            let detail = detail.escape_debug().to_string();
            tracing::warn!(capability, %detail, "plugin request refused by its grant");
        }
    }

    /// How many refusals so far, and the first ones with their details.
    pub fn snapshot(&self) -> (u64, Vec<Refusal>) {
        self.log
            .lock()
            .map(|log| (log.total, log.kept.clone()))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_and_the_first_ones_kept() {
        let refusals = Refusals::default();
        let shared = refusals.clone();
        for index in 0..(MAX_KEPT_REFUSALS + 5) {
            shared.record("http", format!("origin {index}"));
        }
        refusals.record("sql", "é".repeat(MAX_REFUSAL_DETAIL_BYTES));
        let (total, kept) = refusals.snapshot();
        assert_eq!(total, MAX_KEPT_REFUSALS as u64 + 6);
        assert_eq!(kept.len(), MAX_KEPT_REFUSALS);
        assert_eq!(kept[0].detail, "origin 0");
    }

    #[test]
    fn refusal_log_lines_are_rate_limited_with_a_summary() {
        let mut log = RefusalLog::default();
        let start = Instant::now();
        for _ in 0..MAX_LOGGED_PER_WINDOW {
            assert_eq!(log.decide(start), LogDecision::Log { suppressed: 0 });
        }
        for _ in 0..1_000 {
            assert_eq!(log.decide(start), LogDecision::Suppress);
        }
        // Next window: the first line carries the count of the left-out ones.
        let later = start + LOG_WINDOW;
        assert_eq!(log.decide(later), LogDecision::Log { suppressed: 1_000 });
        assert_eq!(log.decide(later), LogDecision::Log { suppressed: 0 });
    }
}
