//! Delivery counters, logged periodically and at exit.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of what happened to messages.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages fetched from JetStream.
    pub fetched: AtomicU64,
    /// Messages ACKed after the sink stored them.
    pub stored: AtomicU64,
    /// Messages NAKed (or left unACKed) for a later retry.
    pub retried: AtomicU64,
    /// Messages published to the DLQ and then ACKed.
    pub dead_lettered: AtomicU64,
    /// Messages refused by the security pipeline (authenticity, labels policy).
    pub rejected: AtomicU64,
    /// DLQ publishes that failed (the message stayed unACKed).
    pub dead_letter_failures: AtomicU64,
    /// Batches that ended in a plugin fault (trap, timeout, memory).
    pub plugin_faults: AtomicU64,
    /// `write-batch` calls.
    pub batches: AtomicU64,
    /// ACK/NAK publishes that failed (the message is redelivered).
    pub ack_failures: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    /// See [`Stats::fetched`].
    pub fetched: u64,
    /// See [`Stats::stored`].
    pub stored: u64,
    /// See [`Stats::retried`].
    pub retried: u64,
    /// See [`Stats::dead_lettered`].
    pub dead_lettered: u64,
    /// See [`Stats::rejected`].
    pub rejected: u64,
    /// See [`Stats::dead_letter_failures`].
    pub dead_letter_failures: u64,
    /// See [`Stats::plugin_faults`].
    pub plugin_faults: u64,
    /// See [`Stats::batches`].
    pub batches: u64,
    /// See [`Stats::ack_failures`].
    pub ack_failures: u64,
}

impl Stats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            fetched: read(&self.fetched),
            stored: read(&self.stored),
            retried: read(&self.retried),
            dead_lettered: read(&self.dead_lettered),
            rejected: read(&self.rejected),
            dead_letter_failures: read(&self.dead_letter_failures),
            plugin_faults: read(&self.plugin_faults),
            batches: read(&self.batches),
            ack_failures: read(&self.ack_failures),
        }
    }
}
