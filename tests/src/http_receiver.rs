//! A real HTTP/1.1 server on 127.0.0.1 for the tests: it records every
//! request it receives and answers as a test tells it to.
//!
//! Routes:
//! - `/redirect?to=URL`: `302 Found` with `Location: URL`;
//! - `/bytes/N`: `200` with a body of `N` bytes;
//! - anything else: the configured [`Answer`] (default `200 ok`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the server answers requests outside the fixed routes.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status to answer until `until` (then 200).
    pub status: u16,
    /// When the status stops applying; `None`: for ever.
    pub until: Option<Instant>,
    /// Answer `status` only to requests whose body contains this text; the
    /// others get 200.
    pub when_body_contains: Option<String>,
    /// A `Retry-After` header value to send with a non-2xx status.
    pub retry_after: Option<String>,
}

impl Default for Answer {
    fn default() -> Self {
        Self {
            status: 200,
            until: None,
            when_body_contains: None,
            retry_after: None,
        }
    }
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Recorded>>,
    answer: Mutex<Answer>,
    store_dir: Mutex<Option<std::path::PathBuf>>,
}

/// The running server; stops when dropped.
pub struct HttpReceiver {
    address: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpReceiver {
    /// Starts a server on a free port of 127.0.0.1.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        handle(Arc::clone(&state), request)
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Ok(Self {
            address,
            state,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Changes how the server answers.
    pub fn answer(&self, answer: Answer) {
        if let Ok(mut current) = self.state.answer.lock() {
            *current = answer;
        }
    }

    /// From now on, also keeps every successfully answered request body as
    /// `dir/<Idempotency-Key>` (a later copy replaces an earlier one), as a
    /// receiver that drops duplicates would: a durable destination that
    /// `sinkhost certify` can count.
    pub fn store_by_idempotency_key(&self, dir: &std::path::Path) {
        if let Ok(mut store) = self.state.store_dir.lock() {
            *store = Some(dir.to_path_buf());
        }
    }

    /// Answers `status` for `duration`, then 200.
    pub fn fail_for(&self, status: u16, duration: Duration) {
        self.answer(Answer {
            status,
            until: Some(Instant::now() + duration),
            ..Answer::default()
        });
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    state: Arc<State>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: path.clone(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    let answer = state.answer.lock().map(|a| a.clone()).unwrap_or_default();
    let response = respond(&recorded, &answer);
    let store = state.store_dir.lock().ok().and_then(|dir| dir.clone());
    if let (Some(dir), true) = (store, response.status().is_success()) {
        if let Some(key) = recorded.header("idempotency-key") {
            let name: String = key
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let _ = std::fs::write(dir.join(name), &recorded.body);
        }
    }
    if let Ok(mut requests) = state.requests.lock() {
        requests.push(recorded);
    }
    Ok(response)
}

fn respond(request: &Recorded, answer: &Answer) -> Response<Full<Bytes>> {
    let build = |status: u16, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    if let Some(to) = request.path.strip_prefix("/redirect?to=") {
        let mut response = build(302, Vec::new());
        if let Ok(location) = to.parse() {
            response
                .headers_mut()
                .insert(hyper::header::LOCATION, location);
        }
        return response;
    }
    if let Some(size) = request.path.strip_prefix("/bytes/") {
        return build(200, vec![b'x'; size.parse().unwrap_or(0)]);
    }
    let active = answer.until.is_none_or(|until| Instant::now() < until)
        && answer
            .when_body_contains
            .as_ref()
            .is_none_or(|marker| String::from_utf8_lossy(&request.body).contains(marker.as_str()));
    if !active || answer.status == 200 {
        return build(200, b"ok".to_vec());
    }
    let mut response = build(
        answer.status,
        format!("status {}", answer.status).into_bytes(),
    );
    if let Some(retry_after) = answer.retry_after.as_ref().and_then(|v| v.parse().ok()) {
        response
            .headers_mut()
            .insert(hyper::header::RETRY_AFTER, retry_after);
    }
    response
}
