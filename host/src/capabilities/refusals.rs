//! A record of what the host refused a plugin: requests to origins outside
//! the `http` grant, statements or tables outside the `sql` grant. Shared by
//! every instance of one loaded plugin, so `sinkhost certify` (and the logs)
//! can tell a plugin that only did its job from one that probed outside its
//! grants.

use std::sync::{Arc, Mutex};

/// How many refusals are kept with their details (the count goes on).
const MAX_KEPT_REFUSALS: usize = 32;
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
}

/// The refusals of one loaded plugin; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Refusals {
    log: Arc<Mutex<RefusalLog>>,
}

impl Refusals {
    /// Records one refusal.
    pub fn record(&self, capability: &'static str, detail: impl Into<String>) {
        let mut detail = detail.into();
        if detail.len() > MAX_REFUSAL_DETAIL_BYTES {
            let mut end = MAX_REFUSAL_DETAIL_BYTES;
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
        }
        if let Ok(mut log) = self.log.lock() {
            log.total = log.total.saturating_add(1);
            if log.kept.len() < MAX_KEPT_REFUSALS {
                log.kept.push(Refusal { capability, detail });
            }
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
}
