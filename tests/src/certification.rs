//! Reading `sinkhost certify` reports (`--report-json`), for the certify
//! and authoring tests.

use serde_json::Value;

/// The checks `sinkhost certify` runs, in report order: the tests' own copy
/// of the suite, so a check that disappears from the host is noticed.
pub const CERTIFY_CHECKS: [&str; 11] = [
    "load",
    "init-accepts-config",
    "init-refuses-bad-configs",
    "redelivery-no-duplicates",
    "error-classification",
    "durable-evidence",
    "payload-variants",
    "metadata-preserved",
    "stays-inside-grants",
    "limits",
    "throughput-floor",
];

/// The status (`pass`, `fail`, `skip`) of `check` in a report, or `missing`.
pub fn check_status<'a>(report: &'a Value, check: &str) -> &'a str {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == check))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("missing")
}

/// The names of the checks that failed.
pub fn failed_checks(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .filter(|c| c["status"] == "fail")
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
