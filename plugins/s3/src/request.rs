//! Objects to write: keys, URLs, bodies and headers.

use serde_json::{json, Value};
use sinkhost_sdk_http::record::{header_value, metadata_fields};
use sinkhost_sdk_http::{encode_segment, split_url, Request};

use crate::config::{Addressing, Body, Metadata, Mode, S3SinkConfig};
use crate::key::KeyInput;
use crate::Envelope;

/// One object PUT and the messages whose storage depends on it.
#[derive(Debug, Clone)]
pub struct ObjectWrite {
    /// Indexes in the batch of the messages this object stores.
    pub messages: Vec<usize>,
    /// The object key.
    pub key: String,
    /// The request.
    pub request: Request,
}

/// Every object of a batch: per message (plus its sidecar), or one per
/// batch.
pub fn objects(config: &S3SinkConfig, batch: &[Envelope]) -> Result<Vec<ObjectWrite>, String> {
    match config.mode {
        Mode::PerMessage => {
            let mut writes = Vec::with_capacity(batch.len());
            for (index, envelope) in batch.iter().enumerate() {
                writes.extend(message_objects(config, index, envelope)?);
            }
            Ok(writes)
        }
        Mode::PerBatch => Ok(vec![batch_object(config, batch)?]),
    }
}

fn message_objects(
    config: &S3SinkConfig,
    index: usize,
    envelope: &Envelope,
) -> Result<Vec<ObjectWrite>, String> {
    let key = config.key.render(&KeyInput {
        stream: &envelope.stream,
        subject: &envelope.subject,
        timestamp_ns: envelope.timestamp_ns,
        first_sequence: envelope.stream_sequence,
        last_sequence: envelope.stream_sequence,
    });
    let record = record(envelope);
    let body = match config.body {
        Body::Record => serde_json::to_vec(&record).map_err(|err| err.to_string())?,
        Body::Payload => envelope.payload.clone(),
    };
    let mut headers = Vec::new();
    if config.metadata == Metadata::Headers {
        headers = metadata_headers(envelope);
    }
    let mut writes = vec![put(
        config,
        vec![index],
        key.clone(),
        body,
        &config.content_type,
        headers,
    )?];
    if config.metadata == Metadata::Sidecar {
        let mut sidecar = record;
        if let Some(map) = sidecar.as_object_mut() {
            map.remove("payload");
            map.insert("object_key".into(), json!(key));
        }
        let body = serde_json::to_vec(&sidecar).map_err(|err| err.to_string())?;
        writes.push(put(
            config,
            vec![index],
            format!("{key}.meta.json"),
            body,
            "application/json",
            Vec::new(),
        )?);
    }
    Ok(writes)
}

fn batch_object(config: &S3SinkConfig, batch: &[Envelope]) -> Result<ObjectWrite, String> {
    let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
        return Err("empty batch".into());
    };
    let key = config.key.render(&KeyInput {
        stream: &first.stream,
        subject: &first.subject,
        timestamp_ns: first.timestamp_ns,
        first_sequence: first.stream_sequence,
        last_sequence: last.stream_sequence,
    });
    let mut body = Vec::new();
    for envelope in batch {
        serde_json::to_writer(&mut body, &record(envelope)).map_err(|err| err.to_string())?;
        body.push(b'\n');
    }
    let mut headers = Vec::new();
    if config.metadata == Metadata::Headers {
        headers = vec![
            ("x-amz-meta-stream".to_string(), header_value(&first.stream)),
            (
                "x-amz-meta-first-sequence".to_string(),
                first.stream_sequence.to_string().into_bytes(),
            ),
            (
                "x-amz-meta-last-sequence".to_string(),
                last.stream_sequence.to_string().into_bytes(),
            ),
            (
                "x-amz-meta-count".to_string(),
                batch.len().to_string().into_bytes(),
            ),
        ];
    }
    put(
        config,
        (0..batch.len()).collect(),
        key,
        body,
        &config.content_type,
        headers,
    )
}

/// A conditional PUT: `If-None-Match: *`, so an existing object is never
/// replaced (the store answers 412).
fn put(
    config: &S3SinkConfig,
    messages: Vec<usize>,
    key: String,
    body: Vec<u8>,
    content_type: &str,
    mut headers: Vec<(String, Vec<u8>)>,
) -> Result<ObjectWrite, String> {
    headers.push(("content-type".into(), content_type.as_bytes().to_vec()));
    headers.push(("if-none-match".into(), b"*".to_vec()));
    let body = if config.gzip {
        headers.push(("content-encoding".into(), b"gzip".to_vec()));
        sinkhost_sdk_http::gzip(&body)?
    } else {
        body
    };
    Ok(ObjectWrite {
        messages,
        request: Request {
            method: "PUT".into(),
            url: object_url(config, &key)?,
            headers,
            body,
        },
        key,
    })
}

/// The object's URL, path-style or virtual-host style.
pub fn object_url(config: &S3SinkConfig, key: &str) -> Result<String, String> {
    let encoded: Vec<String> = key.split('/').map(encode_segment).collect();
    let path = encoded.join("/");
    let (https, authority, _) = split_url(&config.endpoint).map_err(|err| err.to_string())?;
    let scheme = if https { "https" } else { "http" };
    Ok(match config.addressing {
        Addressing::Path => format!("{scheme}://{authority}/{}/{path}", config.bucket),
        Addressing::VirtualHost => format!("{scheme}://{}.{authority}/{path}", config.bucket),
    })
}

/// Metadata fields left out of `x-amz-meta-*`: the delivery count describes
/// one attempt, not the stored object, and the payload hash is left to the
/// record (`custody.payload_hash`) to keep user metadata small (S3 allows
/// 2 KB per object).
const FIELDS_NOT_STORED: [&str; 2] = ["Delivery-Count", "Payload-Hash"];

/// The message's identity and metadata as `x-amz-meta-*` headers.
pub fn metadata_headers(envelope: &Envelope) -> Vec<(String, Vec<u8>)> {
    metadata_fields(envelope)
        .into_iter()
        .filter(|(field, _)| !FIELDS_NOT_STORED.contains(field))
        .map(|(field, value)| (format!("x-amz-meta-{}", field.to_ascii_lowercase()), value))
        .collect()
}

/// The shared record of one message (`sinkhost.message.v1`).
pub fn record(envelope: &Envelope) -> Value {
    sinkhost_sdk_http::record::envelope_record(envelope)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn envelope(sequence: u64, payload: &[u8]) -> Envelope {
        sinkhost_sdk_http::record::example_envelope(sequence, payload)
    }

    fn config(json: &str) -> S3SinkConfig {
        S3SinkConfig::parse(json).unwrap()
    }

    #[test]
    fn per_message_objects_are_conditional_puts_at_deterministic_keys() {
        let c = config(r#"{"endpoint": "http://127.0.0.1:8333", "bucket": "events"}"#);
        let writes = objects(&c, &[envelope(5, b"{\"a\":1}"), envelope(6, b"x")]).unwrap();
        assert_eq!(writes.len(), 2);
        let first = &writes[0];
        assert_eq!(
            first.key,
            "ORDERS/2023/11/14/ORDERS-00000000000000000005.json"
        );
        assert_eq!(
            first.request.url,
            "http://127.0.0.1:8333/events/ORDERS/2023/11/14/ORDERS-00000000000000000005.json"
        );
        assert_eq!(first.request.method, "PUT");
        assert_eq!(first.request.header("if-none-match"), Some(&b"*"[..]));
        assert_eq!(
            first.request.header("x-amz-meta-classification"),
            Some(&b"internal"[..])
        );
        assert_eq!(first.request.header("x-amz-meta-labels"), Some(&b"a;b"[..]));
        assert_eq!(first.request.header("x-amz-meta-delivery-count"), None);
        let body: Value = serde_json::from_slice(&first.request.body).unwrap();
        assert_eq!(body["payload"], json!({"a": 1}));
        assert_eq!(first.messages, [0]);
        assert_eq!(writes[1].messages, [1]);
    }

    #[test]
    fn sidecars_and_virtual_hosts() {
        let c = config(
            r#"{"endpoint": "https://s3.example.com", "bucket": "events", "addressing": "virtual_host",
                "metadata": "sidecar", "body": "payload", "key_template": "{subject} {sequence}"}"#,
        );
        let writes = objects(&c, &[envelope(1, b"raw")]).unwrap();
        assert_eq!(writes.len(), 2);
        assert_eq!(
            writes[0].request.url,
            "https://events.s3.example.com/orders.created%201"
        );
        assert_eq!(writes[0].request.body, b"raw");
        assert_eq!(writes[1].key, "orders.created 1.meta.json");
        let sidecar: Value = serde_json::from_slice(&writes[1].request.body).unwrap();
        assert!(sidecar.get("payload").is_none());
        assert_eq!(sidecar["object_key"], "orders.created 1");
        assert_eq!(writes[1].messages, [0]);
    }

    #[test]
    fn per_batch_objects_hold_every_record() {
        let c = config(
            r#"{"endpoint": "http://h:1", "bucket": "events", "mode": "per_batch", "gzip": true}"#,
        );
        let writes = objects(&c, &[envelope(3, b"a"), envelope(4, b"b")]).unwrap();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].messages, [0, 1]);
        assert!(writes[0]
            .key
            .ends_with("ORDERS-00000000000000000003-00000000000000000004.jsonl"));
        assert_eq!(
            writes[0].request.header("content-encoding"),
            Some(&b"gzip"[..])
        );
        assert_eq!(
            writes[0].request.header("x-amz-meta-count"),
            Some(&b"2"[..])
        );
    }
}
