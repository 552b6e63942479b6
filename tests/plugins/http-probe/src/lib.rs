//! `sinkhost-test-http-probe`: a test-only sink that tries to reach the
//! network, for the host's `http` grant tests. Never ship it.
//!
//! `init` config (the `sink` section): `{"directory": "/out"}`, a granted
//! read-write directory.
//!
//! Each message's payload is one probe:
//! `{"url": "http://...", "method": "GET", "headers": [["name", "value"]],
//! "body": "text", "follow_redirects": false}`. The plugin sends it through
//! `wasi:http/outgoing-handler` and writes what happened to
//! `<directory>/<stream>-<sequence>.json`:
//! `{"status": 200, "headers": [[...]], "body": "...", "redirected_to": ...}`
//! or `{"error": "<wasi:http error code>"}`. With `follow_redirects`, a 3xx
//! `Location` is requested in turn (once), as an HTTP library would.
//!
//! A payload `{"inspect": true}` instead records what the sandbox shows the
//! plugin: its environment variables, its arguments, and which of a list of
//! paths it can read.
//!
//! Every message is accepted: the test reads the records.

use std::io::Write as _;

use serde::Deserialize;
use serde_json::{json, Value};

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugin",
});

use exports::sinkhost::sink::sink::Guest;
use sinkhost::sink::types::{BatchReport, Envelope, ErrorKind, SinkError};
use wasi::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

#[derive(Debug, Deserialize)]
struct Config {
    directory: String,
}

#[derive(Debug, Deserialize)]
struct Probe {
    #[serde(default)]
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    follow_redirects: bool,
    #[serde(default)]
    inspect: bool,
}

static mut DIRECTORY: Option<String> = None;

struct Component;

impl Guest for Component {
    fn init(config: String) -> Result<(), String> {
        let config: Config = serde_json::from_str(&config).map_err(|err| format!("bad config: {err}"))?;
        // Single-threaded guest: set once in init, read in write-batch.
        unsafe { DIRECTORY = Some(config.directory) };
        Ok(())
    }

    fn write_batch(batch: Vec<Envelope>) -> Result<BatchReport, SinkError> {
        #[allow(static_mut_refs)]
        let directory = unsafe { DIRECTORY.clone() }.ok_or_else(|| permanent("init was not called".into()))?;
        for envelope in &batch {
            let outcome = match serde_json::from_slice::<Probe>(&envelope.payload) {
                Ok(probe) if probe.inspect => inspect(),
                Ok(probe) => run(&probe),
                Err(err) => json!({"error": format!("bad probe: {err}")}),
            };
            let path = format!("{directory}/{}-{}.json", envelope.stream, envelope.stream_sequence);
            let mut file = std::fs::File::create(&path).map_err(|err| transient(format!("{path}: {err}")))?;
            file.write_all(outcome.to_string().as_bytes())
                .map_err(|err| transient(format!("{path}: {err}")))?;
        }
        Ok(BatchReport { failures: Vec::new() })
    }
}

fn permanent(message: String) -> SinkError {
    SinkError { kind: ErrorKind::Permanent, message }
}

fn transient(message: String) -> SinkError {
    SinkError { kind: ErrorKind::Transient, message }
}

/// What the sandbox lets the plugin see of its surroundings.
fn inspect() -> Value {
    let readable: Vec<&str> = ["/etc/passwd", "/proc/self/environ", "/", "/out/../.."]
        .into_iter()
        .filter(|path| std::fs::read_dir(path).is_ok() || std::fs::read(path).is_ok())
        .collect();
    json!({
        "env": std::env::vars().collect::<Vec<_>>(),
        "args": std::env::args().collect::<Vec<_>>(),
        "readable": readable,
    })
}

fn run(probe: &Probe) -> Value {
    match send(probe, &probe.url) {
        Ok(first) => {
            let location = first.location.clone();
            let mut record = first.to_json();
            if probe.follow_redirects && (300..400).contains(&first.status) {
                if let Some(location) = location {
                    record["redirected_to"] = match send(probe, &location) {
                        Ok(second) => second.to_json(),
                        Err(error) => json!({"error": error}),
                    };
                }
            }
            record
        }
        Err(error) => json!({"error": error}),
    }
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    location: Option<String>,
}

impl Answer {
    fn to_json(&self) -> Value {
        json!({"status": self.status, "headers": self.headers, "body": self.body})
    }
}

/// Sends one request; the error is the wasi:http error code, as text.
fn send(probe: &Probe, url: &str) -> Result<Answer, String> {
    let (scheme, rest) = url.split_once("://").ok_or("url without scheme")?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let headers = Fields::new();
    for (name, value) in &probe.headers {
        headers
            .append(name, &value.as_bytes().to_vec())
            .map_err(|err| format!("header {name}: {err:?}"))?;
    }
    let request = OutgoingRequest::new(headers);
    let method = match probe.method.as_deref().unwrap_or("GET") {
        "GET" => Method::Get,
        "PUT" => Method::Put,
        "POST" => Method::Post,
        other => Method::Other(other.to_string()),
    };
    request.set_method(&method).map_err(|()| "method refused")?;
    let scheme = if scheme == "https" { Scheme::Https } else { Scheme::Http };
    request.set_scheme(Some(&scheme)).map_err(|()| "scheme refused")?;
    request.set_authority(Some(authority)).map_err(|()| "authority refused")?;
    request.set_path_with_query(Some(path)).map_err(|()| "path refused")?;
    let body = request.body().map_err(|()| "no body")?;
    if let Some(text) = &probe.body {
        let stream = body.write().map_err(|()| "no body stream")?;
        for chunk in text.as_bytes().chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(|err| format!("write: {err:?}"))?;
        }
        drop(stream);
    }
    let pending = wasi::http::outgoing_handler::handle(request, None).map_err(code)?;
    OutgoingBody::finish(body, None).map_err(code)?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken twice")?
        .map_err(code)?;
    let status = response.status();
    let headers: Vec<(String, String)> = response
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
        .collect();
    let location = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("location"))
        .map(|(_, value)| value.clone());
    let incoming = response.consume().map_err(|()| "no response body")?;
    let stream = incoming.stream().map_err(|()| "no response body stream")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(wasi::io::streams::StreamError::LastOperationFailed(err)) => {
                let detail = wasi::http::types::http_error_code(&err).map(|c| code(c)).unwrap_or_else(|| err.to_debug_string().lines().next().unwrap_or_default().to_string());
                return Err(format!("response body: {detail}"));
            }
        }
    }
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        location,
    })
}

/// The error code's name, e.g. `HttpRequestDenied`.
fn code(error: ErrorCode) -> String {
    let text = format!("{error:?}");
    let text = text.strip_prefix("ErrorCode::").unwrap_or(&text);
    text.split(['(', ' ', '{']).next().unwrap_or(text).to_string()
}

export!(Component);
