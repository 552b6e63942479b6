//! Outgoing HTTP for sinkhost sink plugins written in Rust.
//!
//! A plugin sends requests through the standard `wasi:http` interface; the
//! host lets them reach only the origins the operator granted
//! (`plugin.grants.http`) and adds the credentials itself. This crate wraps
//! the raw interface in [`send_all`]: a list of [`Request`]s in, one
//! [`Outcome`] per request out, with up to `window` requests in flight at
//! once, and [`Outcome::class`] saying what the sink should report:
//!
//! | outcome | [`Class`] |
//! | --- | --- |
//! | 2xx | `Stored` |
//! | 408, 425, 429, 5xx | `Transient` (with the `Retry-After` seconds, when sent) |
//! | other 3xx and 4xx | `Permanent` |
//! | connection, DNS or timeout errors | `Transient` |
//! | refused by the host (origin not granted, guarded address) | `Transient`: nothing is stored and an operator must fix the grant; the message stays in the stream |
//! | a request the plugin built wrongly (bad header, bad URL) | `Permanent` |
//!
//! Off `wasm32` (native unit tests of a plugin's logic) [`send_all`] is not
//! available; everything else is.

use std::fmt;

pub mod record;

/// The WIT bindings of `sinkhost-sdk` (`sinkhost_sdk::wit`, generated once
/// there), so an envelope is the same type for plugins on either SDK and
/// [`record::view`] takes them. Plugins that generate their own bindings
/// (the database sinks) map them onto these types
/// (`with: { "sinkhost:sink/types@0.1.0": sinkhost_sdk_http::wit::sinkhost::sink::types }`).
pub use sinkhost_sdk::wit;

/// One request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `PUT`, `POST`...
    pub method: String,
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// Header names and values.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body (may be empty).
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// Compresses a body with gzip (fast level), for `Content-Encoding: gzip`.
pub fn gzip(body: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(body)
        .map_err(|err| format!("gzip: {err}"))?;
    encoder.finish().map_err(|err| format!("gzip: {err}"))
}

/// A response, read completely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why no response arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The host refused the request (`HttpRequestDenied`,
    /// `DestinationIpProhibited`...): the grant does not allow it.
    Refused(String),
    /// The network failed (connection refused, DNS, timeout, TLS...).
    Transport(String),
    /// The plugin built an invalid request.
    Invalid(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused(code) => write!(
                f,
                "refused by the host ({code}): is the origin granted in plugin.grants.http?"
            ),
            Failure::Transport(code) => write!(f, "transport error: {code}"),
            Failure::Invalid(why) => write!(f, "invalid request: {why}"),
        }
    }
}

/// What happened to one request.
pub type Outcome = Result<Response, Failure>;

/// What a sink should make of an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// The destination accepted it.
    Stored,
    /// Retrying may help; `retry_after_seconds` when the server said when.
    Transient {
        /// Why, for the error message.
        reason: String,
        /// The server's `Retry-After`, in seconds, when it sent one.
        retry_after_seconds: Option<u64>,
    },
    /// Retrying the same request will not help.
    Permanent {
        /// Why, for the error message.
        reason: String,
    },
}

/// Classifies an outcome (see the crate documentation).
pub fn classify(outcome: &Outcome) -> Class {
    match outcome {
        Ok(response) => classify_status(
            response.status,
            response.header("retry-after"),
            &response.body,
        ),
        Err(failure @ (Failure::Refused(_) | Failure::Transport(_))) => Class::Transient {
            reason: failure.to_string(),
            retry_after_seconds: None,
        },
        Err(failure @ Failure::Invalid(_)) => Class::Permanent {
            reason: failure.to_string(),
        },
    }
}

/// Classifies a status code; `retry_after` is the header's value.
pub fn classify_status(status: u16, retry_after: Option<&str>, body: &[u8]) -> Class {
    match status {
        200..=299 => Class::Stored,
        408 | 425 | 429 | 500..=599 => Class::Transient {
            reason: format!("HTTP {status}{}", excerpt(body)),
            retry_after_seconds: retry_after.and_then(|v| v.trim().parse().ok()),
        },
        _ => Class::Permanent {
            reason: format!("HTTP {status}{}", excerpt(body)),
        },
    }
}

/// The start of a response body, for error messages: one line, short, only
/// printable text.
pub fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text: String = String::from_utf8_lossy(&body[..body.len().min(MAX)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// Splits an absolute URL into scheme (`https` or not), authority and path
/// with query.
pub fn split_url(url: &str) -> Result<(bool, &str, &str), Failure> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Failure::Invalid(format!("`{url}` is not an absolute URL")))?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "https" => true,
        "http" => false,
        other => {
            return Err(Failure::Invalid(format!(
                "scheme `{other}` is not http or https"
            )))
        }
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) if rest.as_bytes()[at] == b'/' => (&rest[..at], &rest[at..]),
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(Failure::Invalid(format!("`{url}` has no host")));
    }
    Ok((https, authority, path))
}

/// Percent-encodes a path segment (RFC 3986 unreserved characters stay).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(target_arch = "wasm32")]
mod wasi_client;
#[cfg(target_arch = "wasm32")]
pub use wasi_client::send_all;

/// Off `wasm32` (a plugin's native unit tests) there is no network: every
/// request fails with a transport error.
#[cfg(not(target_arch = "wasm32"))]
pub fn send_all<'a>(
    requests: impl IntoIterator<Item = &'a Request>,
    _window: usize,
) -> Vec<Outcome> {
    requests
        .into_iter()
        .map(|_| Err(Failure::Transport("no network off wasm32".into())))
        .collect()
}

/// A plugin's checked configuration, set by `init` and shared (not copied)
/// by every `write-batch`.
#[derive(Debug)]
pub struct ConfigSlot<T>(std::sync::Mutex<Option<std::sync::Arc<T>>>);

impl<T> ConfigSlot<T> {
    /// An empty slot, for a `static`.
    pub const fn new() -> Self {
        Self(std::sync::Mutex::new(None))
    }

    /// Keeps `config` (replacing an earlier one).
    pub fn set(&self, config: T) -> Result<(), String> {
        let mut slot = self
            .0
            .lock()
            .map_err(|_| "config lock poisoned".to_string())?;
        *slot = Some(std::sync::Arc::new(config));
        Ok(())
    }

    /// The configuration, once `init` has set it.
    pub fn get(&self) -> Option<std::sync::Arc<T>> {
        self.0.lock().ok().and_then(|slot| slot.clone())
    }
}

impl<T> Default for ConfigSlot<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify_status(201, None, b""), Class::Stored);
        assert!(matches!(
            classify_status(503, Some(" 7 "), b""),
            Class::Transient {
                retry_after_seconds: Some(7),
                ..
            }
        ));
        assert!(matches!(
            classify_status(429, None, b""),
            Class::Transient { .. }
        ));
        assert!(matches!(
            classify_status(408, None, b""),
            Class::Transient { .. }
        ));
        assert!(
            matches!(classify_status(400, None, b"bad\nfield"), Class::Permanent { reason } if reason == "HTTP 400: bad field")
        );
        assert!(matches!(
            classify_status(404, None, b""),
            Class::Permanent { .. }
        ));
        assert!(matches!(
            classify_status(302, None, b""),
            Class::Permanent { .. }
        ));
    }

    #[test]
    fn failures_are_classified() {
        assert!(matches!(
            classify(&Err(Failure::Refused("HttpRequestDenied".into()))),
            Class::Transient { .. }
        ));
        assert!(matches!(
            classify(&Err(Failure::Transport("ConnectionRefused".into()))),
            Class::Transient { .. }
        ));
        assert!(matches!(
            classify(&Err(Failure::Invalid("header".into()))),
            Class::Permanent { .. }
        ));
    }

    #[test]
    fn urls_split() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/a/b?c=d").unwrap(),
            (false, "127.0.0.1:8080", "/a/b?c=d")
        );
        assert_eq!(
            split_url("https://h.example").unwrap(),
            (true, "h.example", "/")
        );
        assert_eq!(
            split_url("https://h.example?x=1").unwrap(),
            (true, "h.example", "?x=1")
        );
        assert!(split_url("ftp://x/").is_err());
        assert!(split_url("nope").is_err());
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("a b/c~d.json"), "a%20b%2Fc~d.json");
    }
}
