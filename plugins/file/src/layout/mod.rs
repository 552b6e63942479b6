//! How records are placed on disk: one file per message, or one segment file
//! per batch. Both share the path-component sanitiser.

pub mod per_message;
pub mod segment;

use sinkhost_sdk::BatchReport;

use crate::payload::sha256_hex;

/// Longest path component produced by [`safe_path_component`].
pub const MAX_COMPONENT_LENGTH: usize = 120;

/// A file-name component for an untrusted value (subject, stream), exactly as
/// the reference builds it: every run of characters outside `[A-Za-z0-9._-]`
/// becomes one `_`, leading and trailing `.`, `_` and `-` are stripped; an
/// empty result becomes `<fallback>-<first 16 hex of sha256(value)>`; a result
/// longer than 120 characters becomes its first 80 characters, `-`, and the
/// first 32 hex of the digest. The result can never be `.`, `..`, empty, or
/// contain a separator, so it cannot leave the output directory.
pub fn safe_path_component(value: &str, fallback: &str) -> String {
    let mut cleaned = String::with_capacity(value.len());
    let mut in_run = false;
    for c in value.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            cleaned.push(c);
            in_run = false;
        } else if !in_run {
            cleaned.push('_');
            in_run = true;
        }
    }
    let trimmed = cleaned.trim_matches(|c| matches!(c, '.' | '_' | '-'));
    if trimmed.is_empty() {
        return format!("{fallback}-{}", &sha256_hex(value.as_bytes())[..16]);
    }
    if trimmed.len() > MAX_COMPONENT_LENGTH {
        // ASCII only at this point, so byte slicing is safe.
        return format!("{}-{}", &trimmed[..80], &sha256_hex(value.as_bytes())[..32]);
    }
    trimmed.to_owned()
}

/// `report` with its failures in index order. A batch can fail a message in
/// two passes (write, then directory fsync); sorting keeps the report and the
/// tests' expectations independent of that order.
pub fn sorted(mut report: BatchReport) -> BatchReport {
    report.failures.sort_by_key(|failure| failure.index);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitises_like_the_reference() {
        assert_eq!(
            safe_path_component("mission.sensor.track", "subject"),
            "mission.sensor.track"
        );
        assert_eq!(safe_path_component("orders.*.>", "subject"), "orders");
        assert_eq!(safe_path_component("a b//c\\d", "subject"), "a_b_c_d");
        assert_eq!(safe_path_component("héllo wörld", "subject"), "h_llo_w_rld");
        assert_eq!(safe_path_component("_-.x.-_", "subject"), "x");
        assert_eq!(safe_path_component("BENCH", "stream"), "BENCH");
        assert_eq!(safe_path_component("a\u{0}b", "stream"), "a_b");
    }

    #[test]
    fn dot_dot_and_empty_cannot_escape() {
        for hostile in [".", "..", "", "/", "../..", "***", "._-"] {
            let c = safe_path_component(hostile, "subject");
            assert!(c.starts_with("subject-"), "{hostile:?} -> {c}");
            assert_eq!(c.len(), "subject-".len() + 16);
            assert!(!c.contains('/') && c != "." && c != "..");
        }
        assert_ne!(
            safe_path_component(".", "subject"),
            safe_path_component("..", "subject")
        );
        assert_eq!(
            safe_path_component("..", "subject"),
            format!("subject-{}", &sha256_hex(b"..")[..16])
        );
    }

    #[test]
    fn long_values_are_bounded() {
        let long = "x".repeat(500);
        let c = safe_path_component(&long, "subject");
        assert_eq!(c.len(), 80 + 1 + 32);
        assert!(c.starts_with(&"x".repeat(80)));
        let exact = "y".repeat(MAX_COMPONENT_LENGTH);
        assert_eq!(safe_path_component(&exact, "subject"), exact);
    }
}
