//! [`send_all`] on `wasi:http/outgoing-handler`.

use std::collections::VecDeque;

use wasi::http::outgoing_handler::{handle, FutureIncomingResponse};
use wasi::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

use crate::{split_url, Failure, Outcome, Request, Response};

/// Largest chunk `blocking-write-and-flush` accepts in one call (WASI 0.2).
const WRITE_CHUNK: usize = 4096;
/// Largest chunk read from a response body at once.
const READ_CHUNK: u64 = 64 * 1024;

/// Sends every request, at most `window` in flight at once, and returns one
/// outcome per request, in order. Each response body is read completely.
pub fn send_all<'a>(
    requests: impl IntoIterator<Item = &'a Request>,
    window: usize,
) -> Vec<Outcome> {
    let window = window.max(1);
    let mut outcomes: Vec<Option<Outcome>> = Vec::new();
    let mut in_flight: VecDeque<(usize, FutureIncomingResponse)> = VecDeque::new();
    for (index, request) in requests.into_iter().enumerate() {
        if in_flight.len() >= window {
            if let Some((done, pending)) = in_flight.pop_front() {
                outcomes[done] = Some(wait(pending));
            }
        }
        match start(request) {
            Ok(pending) => {
                outcomes.push(None);
                in_flight.push_back((index, pending));
            }
            Err(failure) => outcomes.push(Some(Err(failure))),
        }
    }
    for (done, pending) in in_flight {
        outcomes[done] = Some(wait(pending));
    }
    outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| Err(Failure::Invalid("request was not sent".into())))
        })
        .collect()
}

fn start(request: &Request) -> Result<FutureIncomingResponse, Failure> {
    let (https, authority, path) = split_url(&request.url)?;
    let headers = Fields::new();
    for (name, value) in &request.headers {
        headers
            .append(name, value)
            .map_err(|err| Failure::Invalid(format!("header `{name}`: {err:?}")))?;
    }
    let outgoing = OutgoingRequest::new(headers);
    let method = match request.method.as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_string()),
    };
    let invalid = |what: &str| Failure::Invalid(format!("{what} refused"));
    outgoing
        .set_method(&method)
        .map_err(|()| invalid("method"))?;
    let scheme = if https { Scheme::Https } else { Scheme::Http };
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    outgoing
        .set_authority(Some(authority))
        .map_err(|()| invalid("authority"))?;
    outgoing
        .set_path_with_query(Some(path))
        .map_err(|()| invalid("path"))?;
    let body = outgoing.body().map_err(|()| invalid("body"))?;
    // Hand the request over first: the host buffers only a little of a body
    // that nobody reads yet, so writing a large body before `handle` would
    // block for ever.
    let pending = handle(outgoing, None).map_err(failure)?;
    {
        let stream = body.write().map_err(|()| invalid("body stream"))?;
        for chunk in request.body.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|err| Failure::Transport(stream_error(err)))?;
        }
    }
    OutgoingBody::finish(body, None).map_err(failure)?;
    Ok(pending)
}

fn wait(pending: FutureIncomingResponse) -> Outcome {
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(failure(code)),
        Some(Err(())) | None => return Err(Failure::Transport("response lost".into())),
    };
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(&value).into_owned(),
            )
        })
        .collect();
    let incoming = response
        .consume()
        .map_err(|()| Failure::Transport("response body taken".into()))?;
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| Failure::Transport("response body stream taken".into()))?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(err) => return Err(Failure::Transport(stream_error(err))),
            }
        }
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn stream_error(err: StreamError) -> String {
    match err {
        StreamError::Closed => "stream closed".into(),
        StreamError::LastOperationFailed(detail) => {
            match wasi::http::types::http_error_code(&detail) {
                Some(code) => code_name(&code),
                None => detail
                    .to_debug_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            }
        }
    }
}

fn failure(code: ErrorCode) -> Failure {
    let name = code_name(&code);
    match code {
        ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => Failure::Refused(name),
        ErrorCode::HttpRequestMethodInvalid | ErrorCode::HttpRequestUriInvalid => {
            Failure::Invalid(name)
        }
        _ => Failure::Transport(name),
    }
}

/// The error code's name, e.g. `HttpRequestDenied`.
fn code_name(code: &ErrorCode) -> String {
    let text = format!("{code:?}");
    let text = text.strip_prefix("ErrorCode::").unwrap_or(&text);
    text.split(['(', ' ', '{'])
        .next()
        .unwrap_or(text)
        .to_string()
}
