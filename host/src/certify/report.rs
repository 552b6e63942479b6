//! The certification report: one line per check for people, the same as
//! JSON for machines (its sha256 goes into the signed certification).

use serde::Serialize;

/// Schema name of the JSON report.
pub const REPORT_SCHEMA: &str = "sinkhost.certification-report.v1";

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The plugin did what the check asks.
    Pass,
    /// It did not: the detail says what happened.
    Fail,
    /// Not run: the configuration gives the check nothing to work with, or
    /// an earlier failure made it meaningless.
    Skip,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// Stable name (see `docs/certification.md`).
    pub name: &'static str,
    /// Pass, fail or skip.
    pub status: Status,
    /// What was seen, in one or a few sentences.
    pub detail: String,
}

/// Figures measured during the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Measurements {
    /// Messages delivered in the throughput phase.
    pub messages: u64,
    /// Seconds from start to a drained consumer in that phase.
    pub seconds: f64,
    /// Messages per second, end to end through JetStream.
    pub throughput_msgs_per_s: f64,
    /// Slowest `write-batch` call seen in the direct checks, ms.
    pub slowest_batch_ms: u64,
    /// Plugin faults (traps, timeouts, memory) over the whole run.
    pub plugin_faults: u64,
    /// Requests the host refused the plugin (outside its grants).
    pub refusals: u64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`REPORT_SCHEMA`].
    pub schema: &'static str,
    /// The suite version, e.g. `sinkhost-certify/1 (sinkhost 0.1.0)`.
    pub suite: String,
    /// The plugin file.
    pub plugin: String,
    /// `sha256:<hex>` of the plugin bytes.
    pub digest: String,
    /// When the run started and finished (RFC 3339, UTC).
    pub started_at: String,
    /// See `started_at`.
    pub finished_at: String,
    /// True when no check failed.
    pub passed: bool,
    /// Every check, in the order run.
    pub checks: Vec<CheckResult>,
    /// Figures.
    pub measurements: Measurements,
}

impl Report {
    /// Names of the checks that passed.
    pub fn passed_checks(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|check| check.status == Status::Pass)
            .map(|check| check.name.to_string())
            .collect()
    }

    /// The failed checks, for a summary line.
    pub fn failed_checks(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|check| check.status == Status::Fail)
            .map(|check| check.name)
            .collect()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "certification of {} ({})", self.plugin, self.digest)?;
        writeln!(f, "suite: {}", self.suite)?;
        for check in &self.checks {
            let status = match check.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Skip => "SKIP",
            };
            writeln!(f, "  {status}  {:<26} {}", check.name, check.detail)?;
        }
        let m = &self.measurements;
        writeln!(
            f,
            "measured: {} messages in {:.2} s = {:.0} msg/s end to end; slowest batch {} ms; {} plugin faults; {} refused requests",
            m.messages, m.seconds, m.throughput_msgs_per_s, m.slowest_batch_ms, m.plugin_faults, m.refusals
        )?;
        if self.passed {
            write!(
                f,
                "result: PASSED ({} checks passed)",
                self.passed_checks().len()
            )
        } else {
            write!(f, "result: FAILED ({})", self.failed_checks().join(", "))
        }
    }
}
