//! Building requests from envelopes: the JSON record, the headers, gzip.

use serde_json::Value;
use sinkhost_sdk_http::record::{header_value, metadata_fields};
use sinkhost_sdk_http::Request;

use crate::config::{Body, HttpSinkConfig, Mode};
use crate::Envelope;

pub use sinkhost_sdk_http::record::RECORD_SCHEMA;

/// The requests for a batch: one per message, or one for the whole batch.
pub fn requests(config: &HttpSinkConfig, batch: &[Envelope]) -> Result<Vec<Request>, String> {
    match config.mode {
        Mode::PerMessage => batch
            .iter()
            .map(|envelope| per_message(config, envelope))
            .collect(),
        Mode::JsonLines | Mode::JsonArray => Ok(vec![per_batch(config, batch)?]),
    }
}

fn per_message(config: &HttpSinkConfig, envelope: &Envelope) -> Result<Request, String> {
    let body = match config.body {
        Body::Payload => envelope.payload.clone(),
        Body::Record => serde_json::to_vec(&record(envelope)).map_err(|err| err.to_string())?,
    };
    let mut headers = common_headers(config);
    headers.push((
        "Idempotency-Key".into(),
        idempotency_key(envelope).into_bytes(),
    ));
    if config.metadata_headers {
        headers.extend(metadata_headers(envelope));
    }
    finish(config, headers, body)
}

fn per_batch(config: &HttpSinkConfig, batch: &[Envelope]) -> Result<Request, String> {
    let records: Vec<Value> = batch.iter().map(record).collect();
    let body = match config.mode {
        Mode::JsonArray => serde_json::to_vec(&records).map_err(|err| err.to_string())?,
        _ => {
            let mut lines = Vec::new();
            for record in &records {
                serde_json::to_writer(&mut lines, record).map_err(|err| err.to_string())?;
                lines.push(b'\n');
            }
            lines
        }
    };
    let mut headers = common_headers(config);
    if let (Some(first), Some(last)) = (batch.first(), batch.last()) {
        headers.push((
            "Idempotency-Key".into(),
            format!(
                "{}-{}-{}",
                first.stream, first.stream_sequence, last.stream_sequence
            )
            .into_bytes(),
        ));
        if config.metadata_headers {
            headers.push(("X-Sinkhost-Stream".into(), header_value(&first.stream)));
            headers.push((
                "X-Sinkhost-First-Sequence".into(),
                first.stream_sequence.to_string().into_bytes(),
            ));
            headers.push((
                "X-Sinkhost-Last-Sequence".into(),
                last.stream_sequence.to_string().into_bytes(),
            ));
            headers.push((
                "X-Sinkhost-Count".into(),
                batch.len().to_string().into_bytes(),
            ));
        }
    }
    finish(config, headers, body)
}

/// `<stream>-<stream sequence>`: the same on every redelivery.
pub fn idempotency_key(envelope: &Envelope) -> String {
    format!("{}-{}", envelope.stream, envelope.stream_sequence)
}

fn common_headers(config: &HttpSinkConfig) -> Vec<(String, Vec<u8>)> {
    let mut headers: Vec<(String, Vec<u8>)> = config
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), value.clone().into_bytes()))
        .collect();
    headers.push((
        "Content-Type".into(),
        config.content_type().as_bytes().to_vec(),
    ));
    if config.gzip {
        headers.push(("Content-Encoding".into(), b"gzip".to_vec()));
    }
    headers
}

fn finish(
    config: &HttpSinkConfig,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
) -> Result<Request, String> {
    let body = if config.gzip {
        sinkhost_sdk_http::gzip(&body)?
    } else {
        body
    };
    Ok(Request {
        method: config.method.clone(),
        url: config.url.clone(),
        headers,
        body,
    })
}

/// The message's identity and metadata as `X-Sinkhost-*` headers.
pub fn metadata_headers(envelope: &Envelope) -> Vec<(String, Vec<u8>)> {
    metadata_fields(envelope)
        .into_iter()
        .map(|(field, value)| (format!("X-Sinkhost-{field}"), value))
        .collect()
}

/// The shared record of one message (`sinkhost.message.v1`).
pub fn record(envelope: &Envelope) -> Value {
    sinkhost_sdk_http::record::envelope_record(envelope)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn envelope(sequence: u64, payload: &[u8]) -> Envelope {
        sinkhost_sdk_http::record::example_envelope(sequence, payload)
    }

    fn config(json: &str) -> HttpSinkConfig {
        HttpSinkConfig::parse(json).unwrap()
    }

    #[test]
    fn per_message_requests_carry_the_payload_key_and_metadata() {
        let c = config(r#"{"url": "http://127.0.0.1:9/in", "headers": {"X-Tenant": "t1"}}"#);
        let batch = [envelope(7, b"{\"a\":1}"), envelope(8, b"raw")];
        let requests = requests(&c, &batch).unwrap();
        assert_eq!(requests.len(), 2);
        let first = &requests[0];
        assert_eq!(first.method, "POST");
        assert_eq!(first.body, b"{\"a\":1}");
        assert_eq!(first.header("idempotency-key"), Some(&b"ORDERS-7"[..]));
        assert_eq!(
            first.header("x-sinkhost-subject"),
            Some(&b"orders.created"[..])
        );
        assert_eq!(first.header("x-sinkhost-labels"), Some(&b"a;b"[..]));
        assert_eq!(first.header("x-sinkhost-priority"), Some(&b"high"[..]));
        assert_eq!(first.header("x-tenant"), Some(&b"t1"[..]));
        assert_eq!(
            requests[1].header("idempotency-key"),
            Some(&b"ORDERS-8"[..])
        );
    }

    #[test]
    fn batch_modes_send_one_request_of_records() {
        let c = config(r#"{"url": "http://h/in", "mode": "json_lines"}"#);
        let batch = [
            envelope(1, b"{\"a\":1}"),
            envelope(2, b"text"),
            envelope(3, &[0xff, 0x00]),
        ];
        let requests = requests(&c, &batch).unwrap();
        assert_eq!(requests.len(), 1);
        let lines: Vec<Value> = requests[0]
            .body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["payload"], json!({"a": 1}));
        assert_eq!(lines[1]["payload_encoding"], "text");
        assert_eq!(lines[2]["payload"], "/wA=");
        assert_eq!(
            requests[0].header("idempotency-key"),
            Some(&b"ORDERS-1-3"[..])
        );
        assert_eq!(
            requests[0].header("content-type"),
            Some(&b"application/x-ndjson"[..])
        );
        let c = config(r#"{"url": "http://h/in", "mode": "json_array"}"#);
        let array: Vec<Value> = serde_json::from_slice(&requests_of(&c, &batch)[0].body).unwrap();
        assert_eq!(array.len(), 3);
        assert_eq!(array[0]["schema"], RECORD_SCHEMA);
    }

    fn requests_of(c: &HttpSinkConfig, batch: &[Envelope]) -> Vec<Request> {
        requests(c, batch).unwrap()
    }

    #[test]
    fn gzip_bodies_decompress_to_the_original() {
        use std::io::Read as _;
        let c = config(r#"{"url": "http://h/in", "gzip": true}"#);
        let request = &requests_of(&c, &[envelope(1, b"hello hello hello")])[0];
        assert_eq!(request.header("content-encoding"), Some(&b"gzip"[..]));
        let mut plain = String::new();
        flate2::read::GzDecoder::new(request.body.as_slice())
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, "hello hello hello");
    }
}
