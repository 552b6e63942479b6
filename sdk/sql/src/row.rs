//! One message as the values of one row, in the order of
//! [`SinkConfig::columns_in_order`](crate::config::SinkConfig::columns_in_order).

use serde_json::{json, Map, Value as Json};
use sinkhost_sdk_http::record::{payload_value, view, MessageView};
use sinkhost_sdk_http::wit::sinkhost::sink::types::Envelope;

use crate::config::{Column, Key, PayloadMode, SinkConfig, Source};
use crate::Value;

/// The values of one message's row, or why it can never be stored (a
/// permanent failure of that message alone).
pub fn row(
    config: &SinkConfig,
    columns: &[Column],
    envelope: &Envelope,
    stored_at_ns: i64,
) -> Result<Vec<Value>, String> {
    if config.key == Key::MessageId && envelope.message_id.as_deref().is_none_or(str::is_empty) {
        return Err(
            "the message has no message id (Nats-Msg-Id), and the sink's key is message_id".into(),
        );
    }
    let message = view(envelope);
    // Parsed only when a column reads a payload field.
    let reads_payload_fields = columns
        .iter()
        .any(|column| matches!(column.source, Source::PayloadField(_)));
    let parsed_payload = if reads_payload_fields {
        serde_json::from_slice::<Json>(&envelope.payload).ok()
    } else {
        None
    };
    columns
        .iter()
        .map(|column| match &column.source {
            Source::Standard(name) => standard_value(config, name, &message, stored_at_ns),
            Source::PayloadField(path) => Ok(payload_field(parsed_payload.as_ref(), path)),
        })
        .collect()
}

fn optional_text(text: Option<&str>) -> Value {
    text.map_or(Value::Null, |text| Value::Text(text.to_string()))
}

fn standard_value(
    config: &SinkConfig,
    name: &str,
    message: &MessageView<'_>,
    stored_at_ns: i64,
) -> Result<Value, String> {
    Ok(match name {
        "stream_name" => Value::Text(message.stream.to_string()),
        "stream_sequence" => Value::Integer(
            i64::try_from(message.stream_sequence)
                .map_err(|_| "the stream sequence does not fit a signed 64-bit column")?,
        ),
        "subject" => Value::Text(message.subject.to_string()),
        "message_id" => optional_text(message.message_id),
        "priority" => optional_text(message.priority),
        "classification" => optional_text(message.classification),
        "labels" if message.labels.is_empty() => Value::Null,
        "labels" => Value::Text(message.labels.join(";")),
        "payload" => payload(config.payload_mode, message.payload)?,
        "headers_json" => Value::Json(headers_json(message.headers).to_string()),
        "metadata_json" => Value::Json(metadata_json(message).to_string()),
        "custody_json" => message
            .custody
            .as_ref()
            .map_or(Value::Null, |custody| Value::Json(custody.to_string())),
        "jetstream_timestamp" => Value::Timestamp(message.timestamp_ns),
        "received_at" => Value::Timestamp(message.received_at_ns),
        "stored_at" => Value::Timestamp(stored_at_ns),
        other => return Err(format!("unknown standard column `{other}`")),
    })
}

fn payload(mode: PayloadMode, bytes: &[u8]) -> Result<Value, String> {
    match mode {
        PayloadMode::Bytes => Ok(Value::Bytes(bytes.to_vec())),
        PayloadMode::Text => std::str::from_utf8(bytes)
            .map(|text| Value::Text(text.to_string()))
            .map_err(|_| {
                String::from("the payload is not UTF-8 text, and the sink's payload_mode is text")
            }),
        PayloadMode::Json => match std::str::from_utf8(bytes) {
            // Valid JSON is stored byte for byte (no re-serialisation).
            Ok(text) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => {
                Ok(Value::Json(text.to_string()))
            }
            _ => {
                let (data, encoding) = payload_value(bytes);
                Ok(Value::Json(
                    json!({"encoding": encoding, "data": data}).to_string(),
                ))
            }
        },
    }
}

/// Headers as `{"name": ["value", ...]}` (a name may repeat).
fn headers_json(headers: &[(String, String)]) -> Json {
    let mut object = Map::new();
    for (name, value) in headers {
        let entry = object
            .entry(name.clone())
            .or_insert_with(|| Json::Array(Vec::new()));
        if let Json::Array(values) = entry {
            values.push(Json::String(value.clone()));
        }
    }
    Json::Object(object)
}

fn metadata_json(message: &MessageView<'_>) -> Json {
    let parse = |text: Option<&str>| text.and_then(|text| serde_json::from_str::<Json>(text).ok());
    json!({
        "consumer_sequence": message.consumer_sequence,
        "delivery_count": message.delivery_count,
        "priority": message.priority,
        "classification": message.classification,
        "labels": message.labels,
        "security_labels": parse(message.security_labels),
        "mission_metadata": parse(message.mission_metadata),
    })
}

/// A dotted path into the JSON payload, as the closest SQL value.
fn payload_field(payload: Option<&Json>, path: &[String]) -> Value {
    let mut current = payload;
    for part in path {
        current = current.and_then(|value| value.get(part.as_str()));
    }
    match current {
        None | Some(Json::Null) => Value::Null,
        Some(Json::Bool(flag)) => Value::Boolean(*flag),
        Some(Json::Number(number)) => match number.as_i64() {
            Some(integer) => Value::Integer(integer),
            None => number.as_f64().map_or(Value::Null, Value::Float),
        },
        Some(Json::String(text)) => Value::Text(text.clone()),
        Some(other) => Value::Json(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sinkhost_sdk_http::record::example_envelope;

    fn columns_and_row(
        config_json: &str,
        payload: &[u8],
    ) -> (Vec<String>, Result<Vec<Value>, String>) {
        let config = SinkConfig::parse(config_json).expect("config");
        let columns = config.columns_in_order();
        let names = columns.iter().map(|column| column.name.clone()).collect();
        (
            names,
            row(&config, &columns, &example_envelope(7, payload), 99),
        )
    }

    fn value<'a>(names: &[String], row: &'a [Value], column: &str) -> &'a Value {
        let index = names
            .iter()
            .position(|name| name == column)
            .expect("column");
        &row[index]
    }

    #[test]
    fn a_json_message_maps_to_every_column() {
        let (names, row) = columns_and_row(
            r#"{"connection": "e", "payload_columns": {"order_id": "order.id"}}"#,
            br#"{"order": {"id": 42}}"#,
        );
        let row = row.expect("row");
        assert_eq!(
            value(&names, &row, "stream_name"),
            &Value::Text("ORDERS".into())
        );
        assert_eq!(value(&names, &row, "stream_sequence"), &Value::Integer(7));
        assert_eq!(
            value(&names, &row, "payload"),
            &Value::Json(r#"{"order": {"id": 42}}"#.into())
        );
        assert_eq!(value(&names, &row, "labels"), &Value::Text("a;b".into()));
        assert_eq!(value(&names, &row, "stored_at"), &Value::Timestamp(99));
        assert_eq!(value(&names, &row, "order_id"), &Value::Integer(42));
        let Value::Json(metadata) = value(&names, &row, "metadata_json") else {
            panic!("json")
        };
        assert!(metadata.contains("\"priority\":\"high\""), "{metadata}");
    }

    #[test]
    fn payload_modes() {
        let (names, row) = columns_and_row(r#"{"connection": "e"}"#, b"plain \xff bytes");
        let row = row.expect("row");
        let Value::Json(wrapped) = value(&names, &row, "payload") else {
            panic!("json")
        };
        assert!(wrapped.contains("\"encoding\":\"base64\""), "{wrapped}");
        let (_, text) = columns_and_row(r#"{"connection": "e", "payload_mode": "text"}"#, b"\xff");
        assert!(text
            .expect_err("not utf-8")
            .contains("payload_mode is text"));
        let (names, bytes) =
            columns_and_row(r#"{"connection": "e", "payload_mode": "bytes"}"#, b"\xff");
        assert_eq!(
            value(&names, &bytes.expect("row"), "payload"),
            &Value::Bytes(vec![0xff])
        );
    }

    #[test]
    fn a_message_id_key_needs_an_id() {
        let config =
            SinkConfig::parse(r#"{"connection": "e", "key": "message_id"}"#).expect("config");
        let mut envelope = example_envelope(1, b"{}");
        envelope.message_id = None;
        let error = row(&config, &config.columns_in_order(), &envelope, 0).expect_err("no id");
        assert!(error.contains("no message id"));
    }
}
