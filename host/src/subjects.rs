//! NATS subject patterns: validation and matching.
//!
//! A subject is a dot-separated list of tokens, e.g. `orders.eu.created`.
//! A pattern may use two wildcards, each only as a whole token:
//!
//! - `*` matches exactly one token (`orders.*` matches `orders.created`,
//!   not `orders` and not `orders.eu.created`);
//! - `>` matches one or more trailing tokens and is only valid as the last
//!   token (`orders.>` matches `orders.created` and `orders.eu.created`, not
//!   `orders`).
//!
//! Matching follows the reference `nats-sinks` exactly (token by token, no
//! normalisation). Validation accepts the reference's grammar and additionally
//! rejects control characters, which no real subject contains.
//!
//! These functions run for every message, so matching never allocates.

/// Wildcard that matches exactly one token.
pub const SINGLE_TOKEN_WILDCARD: &str = "*";
/// Wildcard that matches one or more trailing tokens.
pub const TAIL_WILDCARD: &str = ">";

/// Why a subject pattern is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectPatternError {
    /// The pattern is the empty string.
    #[error("subject pattern must not be empty")]
    Empty,
    /// The pattern starts or ends with whitespace.
    #[error("subject pattern must not have surrounding whitespace")]
    SurroundingWhitespace,
    /// Two dots in a row, or a leading or trailing dot.
    #[error("subject pattern has an empty token (leading, trailing or double `.`)")]
    EmptyToken,
    /// `>` somewhere other than the last token.
    #[error("the `>` wildcard is only valid as the last token")]
    TailWildcardNotLast,
    /// `*` or `>` inside a literal token, e.g. `foo*` or `a>b`.
    #[error("wildcards `*` and `>` must be whole tokens (token {token_index} is not)")]
    EmbeddedWildcard {
        /// Zero-based index of the offending token.
        token_index: usize,
    },
    /// Whitespace or a control character inside a token.
    #[error("subject pattern must not contain whitespace or control characters")]
    InvalidCharacter,
}

/// Whitespace as Python's `str.isspace` sees it (the reference's test): the
/// Unicode White_Space set plus the ASCII separators U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Checks that `pattern` is a well-formed NATS subject pattern.
///
/// Rejected: the empty string, surrounding whitespace, empty tokens (`a..b`,
/// `.a`, `a.`), `>` anywhere but last, wildcards embedded in a token (`a*`,
/// `>b`), and whitespace or control characters anywhere.
pub fn validate_subject_pattern(pattern: &str) -> Result<(), SubjectPatternError> {
    if pattern.is_empty() {
        return Err(SubjectPatternError::Empty);
    }
    if pattern.starts_with(is_python_space) || pattern.ends_with(is_python_space) {
        return Err(SubjectPatternError::SurroundingWhitespace);
    }
    let token_count = pattern.split('.').count();
    for (index, token) in pattern.split('.').enumerate() {
        if token.is_empty() {
            return Err(SubjectPatternError::EmptyToken);
        }
        if token == TAIL_WILDCARD {
            if index + 1 != token_count {
                return Err(SubjectPatternError::TailWildcardNotLast);
            }
            continue;
        }
        if token == SINGLE_TOKEN_WILDCARD {
            continue;
        }
        if token.contains(['*', '>']) {
            return Err(SubjectPatternError::EmbeddedWildcard { token_index: index });
        }
        if token.chars().any(|c| is_python_space(c) || c.is_control()) {
            return Err(SubjectPatternError::InvalidCharacter);
        }
    }
    Ok(())
}

/// Whether the concrete `subject` matches `pattern`.
///
/// `*` matches exactly one token; `>` as the last pattern token matches one
/// or more remaining tokens. A pattern without wildcards matches only the
/// identical subject. An invalid pattern (e.g. `>` not last) matches nothing
/// it would not match token by token; validate patterns at configuration
/// time with [`validate_subject_pattern`].
pub fn matches_subject(pattern: &str, subject: &str) -> bool {
    let mut pattern_tokens = pattern.split('.').peekable();
    let mut subject_tokens = subject.split('.');
    loop {
        match (pattern_tokens.next(), subject_tokens.next()) {
            // `>` needs at least one token to consume and must be last.
            (Some(TAIL_WILDCARD), Some(_)) => return pattern_tokens.peek().is_none(),
            (Some(TAIL_WILDCARD), None) => return false,
            (Some(pattern_token), Some(subject_token)) => {
                if pattern_token != SINGLE_TOKEN_WILDCARD && pattern_token != subject_token {
                    return false;
                }
            }
            (None, None) => return true,
            // One side has more tokens than the other.
            _ => return false,
        }
    }
}

/// Whether every subject matched by `candidate` is also matched by
/// `allowed` (a conservative containment test; `false` when either pattern
/// is invalid). Useful where widening a filter would be dangerous.
pub fn subject_pattern_is_subset(candidate: &str, allowed: &str) -> bool {
    if validate_subject_pattern(candidate).is_err() || validate_subject_pattern(allowed).is_err() {
        return false;
    }
    let mut candidate_tokens = candidate.split('.');
    let mut allowed_tokens = allowed.split('.');
    loop {
        match (candidate_tokens.next(), allowed_tokens.next()) {
            (Some(_), Some(TAIL_WILDCARD)) => return true,
            (Some(TAIL_WILDCARD), Some(_)) => return false,
            (Some(_), Some(SINGLE_TOKEN_WILDCARD)) => {}
            (Some(SINGLE_TOKEN_WILDCARD), Some(_)) => return false,
            (Some(c), Some(a)) => {
                if c != a {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_patterns() {
        for pattern in [
            "foo",
            "foo.bar",
            "foo.*",
            "*",
            ">",
            "foo.>",
            "*.bar.>",
            "foo.*.baz",
            "mission.sensor.track",
            "ünïcode.ok",
        ] {
            assert_eq!(validate_subject_pattern(pattern), Ok(()), "{pattern}");
        }
    }

    #[test]
    fn invalid_patterns() {
        use SubjectPatternError as E;
        let cases = [
            ("", E::Empty),
            (" foo", E::SurroundingWhitespace),
            ("foo ", E::SurroundingWhitespace),
            ("foo\n", E::SurroundingWhitespace),
            ("foo..bar", E::EmptyToken),
            (".foo", E::EmptyToken),
            ("foo.", E::EmptyToken),
            (".", E::EmptyToken),
            (">.foo", E::TailWildcardNotLast),
            ("foo.>.bar", E::TailWildcardNotLast),
            ("foo*", E::EmbeddedWildcard { token_index: 0 }),
            ("foo.b>", E::EmbeddedWildcard { token_index: 1 }),
            ("foo.**", E::EmbeddedWildcard { token_index: 1 }),
            ("foo.>>", E::EmbeddedWildcard { token_index: 1 }),
            ("foo bar", E::InvalidCharacter),
            ("foo.b\tar", E::InvalidCharacter),
            ("foo.b\u{0}r", E::InvalidCharacter),
            ("foo.b\u{1f}r", E::InvalidCharacter),
        ];
        for (pattern, expected) in cases {
            assert_eq!(
                validate_subject_pattern(pattern),
                Err(expected),
                "{pattern:?}"
            );
        }
    }

    #[test]
    fn literal_matching() {
        assert!(matches_subject("foo", "foo"));
        assert!(matches_subject("foo.bar", "foo.bar"));
        assert!(!matches_subject("foo", "foo.bar"));
        assert!(!matches_subject("foo.bar", "foo"));
        assert!(!matches_subject("foo.bar", "foo.baz"));
        assert!(!matches_subject("Foo", "foo"), "case-sensitive");
    }

    #[test]
    fn single_token_wildcard() {
        assert!(matches_subject("foo.*", "foo.bar"));
        assert!(!matches_subject("foo.*", "foo"), "`*` needs a token");
        assert!(!matches_subject("foo.*", "foo.bar.baz"), "`*` is one token");
        assert!(matches_subject("*.bar", "foo.bar"));
        assert!(matches_subject("foo.*.baz", "foo.x.baz"));
        assert!(!matches_subject("foo.*.baz", "foo.x.y.baz"));
        assert!(matches_subject("*", "foo"));
        assert!(!matches_subject("*", "foo.bar"));
    }

    #[test]
    fn tail_wildcard() {
        assert!(matches_subject("foo.>", "foo.bar"));
        assert!(matches_subject("foo.>", "foo.bar.baz.qux"));
        assert!(
            !matches_subject("foo.>", "foo"),
            "`>` needs at least one token"
        );
        assert!(!matches_subject("foo.>", "bar.baz"));
        assert!(matches_subject(">", "foo"));
        assert!(matches_subject(">", "foo.bar"));
        assert!(matches_subject("*.>", "a.b"));
        assert!(!matches_subject("*.>", "a"));
        // Invalid pattern: `>` not last never matches.
        assert!(!matches_subject("foo.>.bar", "foo.x.bar"));
    }

    #[test]
    fn subset() {
        assert!(subject_pattern_is_subset("foo.bar", "foo.*"));
        assert!(subject_pattern_is_subset("foo.*", "foo.*"));
        assert!(subject_pattern_is_subset("foo.*", "foo.>"));
        assert!(subject_pattern_is_subset("foo.a.>", "foo.>"));
        assert!(subject_pattern_is_subset("foo.>", "foo.>"));
        assert!(subject_pattern_is_subset("anything.at.all", ">"));
        assert!(!subject_pattern_is_subset("foo.>", "foo.*"));
        assert!(!subject_pattern_is_subset("foo.*", "foo.bar"));
        assert!(!subject_pattern_is_subset("foo", "foo.>"));
        assert!(!subject_pattern_is_subset("foo.bar.baz", "foo.*"));
        assert!(
            !subject_pattern_is_subset("foo..bar", ">"),
            "invalid candidate"
        );
    }
}
