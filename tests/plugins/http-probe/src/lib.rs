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
//! or `{"error": "<wasi:http error code>"}`. Requests go through
//! `sinkhost-sdk-http`, the client the first-party sinks use. With `follow_redirects`, a 3xx
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
use sinkhost_sdk_http::{send_all, Failure, Request, Response};

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
        let config: Config =
            serde_json::from_str(&config).map_err(|err| format!("bad config: {err}"))?;
        // Single-threaded guest: set once in init, read in write-batch.
        unsafe { DIRECTORY = Some(config.directory) };
        Ok(())
    }

    fn write_batch(batch: Vec<Envelope>) -> Result<BatchReport, SinkError> {
        #[allow(static_mut_refs)]
        let directory =
            unsafe { DIRECTORY.clone() }.ok_or_else(|| permanent("init was not called".into()))?;
        for envelope in &batch {
            let outcome = match serde_json::from_slice::<Probe>(&envelope.payload) {
                Ok(probe) if probe.inspect => inspect(),
                Ok(probe) => run(&probe),
                Err(err) => json!({"error": format!("bad probe: {err}")}),
            };
            let path = format!(
                "{directory}/{}-{}.json",
                envelope.stream, envelope.stream_sequence
            );
            let mut file =
                std::fs::File::create(&path).map_err(|err| transient(format!("{path}: {err}")))?;
            file.write_all(outcome.to_string().as_bytes())
                .map_err(|err| transient(format!("{path}: {err}")))?;
        }
        Ok(BatchReport {
            failures: Vec::new(),
        })
    }
}

fn permanent(message: String) -> SinkError {
    SinkError {
        kind: ErrorKind::Permanent,
        message,
    }
}

fn transient(message: String) -> SinkError {
    SinkError {
        kind: ErrorKind::Transient,
        message,
    }
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
            let mut record = answer(&first);
            let location = first.header("location").map(str::to_string);
            if probe.follow_redirects && (300..400).contains(&first.status) {
                if let Some(location) = location {
                    record["redirected_to"] = match send(probe, &location) {
                        Ok(second) => answer(&second),
                        Err(error) => json!({"error": error}),
                    };
                }
            }
            record
        }
        Err(error) => json!({"error": error}),
    }
}

fn answer(response: &Response) -> Value {
    json!({
        "status": response.status,
        "headers": response.headers,
        "body": String::from_utf8_lossy(&response.body),
    })
}

/// Sends one request through the SDK's wasi:http client; the error is the
/// wasi:http error code's name (`HttpRequestDenied`...).
fn send(probe: &Probe, url: &str) -> Result<Response, String> {
    let request = Request {
        method: probe.method.clone().unwrap_or_else(|| "GET".into()),
        url: url.to_string(),
        headers: probe
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), v.clone().into_bytes()))
            .collect(),
        body: probe.body.clone().unwrap_or_default().into_bytes(),
    };
    match send_all([&request], 1).pop() {
        Some(Ok(response)) => Ok(response),
        Some(Err(Failure::Refused(code) | Failure::Transport(code) | Failure::Invalid(code))) => {
            Err(code)
        }
        None => Err("no outcome".into()),
    }
}

export!(Component);
