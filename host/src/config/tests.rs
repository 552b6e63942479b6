use super::*;

const MINIMAL: &str = r#"{
  "nats": {"url": "nats://127.0.0.1:4222", "stream": "EVENTS", "consumer": "sinkhost", "subject": "events.>"},
  "plugin": {"path": "target/plugins/file.wasm",
             "grants": {"files": [{"host_path": ".local/out", "guest_path": "/out", "access": "read-write"}]},
             "limits": {"memory_mb": 64, "call_timeout_ms": 10000}},
  "sink": {"directory": "/out", "fsync": true}
}"#;

fn parse(text: &str) -> Result<Config, ParseOrInvalid> {
    Config::from_json_str(text)
}

fn location_of(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("expected an error"),
        Err(ParseOrInvalid::Parse { location, .. }) => location,
        Err(ParseOrInvalid::Invalid(invalid)) => invalid.location,
    }
}

#[test]
fn minimal_config_gets_reference_defaults() {
    let config = parse(MINIMAL).expect("valid");
    assert_eq!(config.delivery.batch_size, 100);
    assert_eq!(config.delivery.batch_timeout_ms, 1000);
    assert_eq!(config.delivery.max_retries, 5);
    assert_eq!(config.delivery.retry_backoff_ms, 1000);
    assert_eq!(config.delivery.retry_backoff_max_ms, 60_000);
    assert_eq!(config.delivery.retry_jitter, JitterMode::Full);
    assert_eq!(config.delivery.max_in_flight_batches, 1);
    assert!(!config.dead_letter.enabled);
    assert_eq!(config.plugin.grants.files[0].access, FileAccess::ReadWrite);
    assert_eq!(config.sink["directory"], "/out");
}

#[test]
fn unknown_key_is_rejected_with_its_path() {
    let text = MINIMAL.replace(r#""batch_size""#, r#""batch_sise""#);
    let text = text.replace(r#""sink":"#, r#""delivery": {"batch_sise": 5}, "sink":"#);
    let err = parse(&text).expect_err("unknown key");
    let message = err.to_string();
    assert!(message.contains("batch_sise"), "{message}");
    assert!(message.contains("delivery"), "{message}");
}

#[test]
fn unknown_nested_key_names_the_nested_path() {
    let text = MINIMAL.replace(r#""memory_mb": 64"#, r#""memory_mb": 64, "cpu": 1"#);
    assert_eq!(location_of(&text), "plugin.limits.cpu");
    let err = parse(&text).expect_err("unknown key").to_string();
    assert!(err.contains("cpu"), "{err}");
}

#[test]
fn inline_secret_is_rejected() {
    let text = MINIMAL.replace(
        r#""subject": "events.>""#,
        r#""subject": "events.>", "password": "hunter2""#,
    );
    let err = parse(&text).expect_err("inline password").to_string();
    assert!(err.contains("password"), "{err}");
    assert!(
        !err.contains("hunter2"),
        "the secret must not be echoed: {err}"
    );
}

#[test]
fn semantic_errors_name_the_field() {
    let text = MINIMAL.replace(r#""sink":"#, r#""delivery": {"batch_size": 0}, "sink":"#);
    assert_eq!(location_of(&text), "delivery.batch_size");
    let text = MINIMAL.replace(r#""sink":"#, r#""dead_letter": {"enabled": true}, "sink":"#);
    assert_eq!(location_of(&text), "dead_letter.subject");
    let text = MINIMAL.replace(r#""guest_path": "/out""#, r#""guest_path": "out""#);
    assert_eq!(location_of(&text), "plugin.grants.files[0].guest_path");
    let text = MINIMAL.replace(r#""stream": "EVENTS""#, r#""stream": "EV.ENTS""#);
    assert_eq!(location_of(&text), "nats.stream");
}

#[test]
fn http_grant_errors_name_the_field() {
    let grant = |json: &str| {
        MINIMAL.replace(
            r#""grants": {"#,
            &format!(r#""grants": {{"http": [{json}], "#),
        )
    };
    assert_eq!(
        location_of(&grant(r#"{"origin": "https://a.example/path"}"#)),
        "plugin.grants.http[0].origin"
    );
    assert_eq!(
        location_of(&grant(r#"{"origin": "ftp://a.example"}"#)),
        "plugin.grants.http[0].origin"
    );
    assert_eq!(
        location_of(&grant(
            r#"{"origin": "https://a.example", "timeout_ms": 0}"#
        )),
        "plugin.grants.http[0].timeout_ms"
    );
    assert_eq!(
        location_of(&grant(
            r#"{"origin": "https://a.example", "max_concurrent_requests": 0}"#
        )),
        "plugin.grants.http[0].max_concurrent_requests"
    );
    assert_eq!(
        location_of(&grant(
            r#"{"origin": "https://a.example", "max_response_body_bytes": 0}"#
        )),
        "plugin.grants.http[0].max_response_body_bytes"
    );
    assert_eq!(
        location_of(&grant(
            r#"{"origin": "https://a.example", "auth": {"header": {"name": "bad name", "value_env": "V"}}}"#
        )),
        "plugin.grants.http[0].auth.header.name"
    );
    // A valid grant with every kind of credential parses.
    let ok = grant(
        r#"{"origin": "https://*.example.com", "auth": {"aws_sigv4": {"region": "us-east-1", "service": "s3",
            "access_key_id_env": "A", "secret_access_key_env": "B"}}, "allowed_addresses": ["127.0.0.1"]}"#,
    );
    parse(&ok).expect("valid http grant");
}

#[test]
fn malformed_json_is_a_parse_error() {
    let err = parse("{ \"nats\": ").expect_err("truncated");
    assert!(matches!(err, ParseOrInvalid::Parse { .. }));
    let err = parse(&format!("{MINIMAL} trailing")).expect_err("trailing");
    assert!(matches!(err, ParseOrInvalid::Parse { .. }));
}

#[test]
fn wrong_type_names_the_field() {
    let text = MINIMAL.replace(r#""memory_mb": 64"#, r#""memory_mb": "lots""#);
    assert_eq!(location_of(&text), "plugin.limits.memory_mb");
}

#[test]
fn effective_config_reports_env_presence_not_values() {
    let text = MINIMAL.replace(
        r#""subject": "events.>""#,
        r#""subject": "events.>", "user": "svc", "password_env": "SINKHOST_TEST_SURELY_UNSET_VAR""#,
    );
    let config = parse(&text).expect("valid");
    let effective = config.effective();
    assert_eq!(
        effective["nats"]["password_env"],
        "SINKHOST_TEST_SURELY_UNSET_VAR (not set)"
    );
    assert_eq!(effective["delivery"]["batch_size"], 100);
}

#[test]
fn missing_secret_env_is_a_clear_error() {
    let err =
        read_secret_env("nats.password_env", "SINKHOST_TEST_SURELY_UNSET_VAR").expect_err("unset");
    assert_eq!(
        err.to_string(),
        "`nats.password_env` names environment variable SINKHOST_TEST_SURELY_UNSET_VAR, which is not set"
    );
}

/// MINIMAL with `extra` merged into its sections (`{"section": {...}}`).
fn minimal_with(extra: serde_json::Value) -> String {
    let mut config: serde_json::Value = serde_json::from_str(MINIMAL).expect("minimal");
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        for (section, fields) in extra {
            let entry = config
                .entry(section.clone())
                .or_insert_with(|| serde_json::json!({}));
            if let (Some(entry), Some(fields)) = (entry.as_object_mut(), fields.as_object()) {
                entry.extend(fields.clone());
            }
        }
    }
    config.to_string()
}

#[test]
fn settings_that_together_lose_or_loop_messages_are_refused() {
    let dlq = serde_json::json!({"enabled": true, "subject": "events.dlq"});
    assert_eq!(
        location_of(&minimal_with(serde_json::json!({"dead_letter": dlq}))),
        "dead_letter.subject",
        "a DLQ the host consumes itself"
    );
    let dlq = serde_json::json!({"enabled": true, "subject": "dlq.events"});
    parse(&minimal_with(
        serde_json::json!({"dead_letter": dlq.clone()}),
    ))
    .expect("outside");
    assert_eq!(
        location_of(&minimal_with(serde_json::json!({
            "dead_letter": dlq.clone(),
            "consumer_management": {"filter_subjects": ["events.a", "dlq.>"]},
        }))),
        "dead_letter.subject",
        "inside a filter subject"
    );
    for max_deliver in [1, 6] {
        assert_eq!(
            location_of(&minimal_with(serde_json::json!({
                "dead_letter": dlq.clone(),
                "consumer_management": {"max_deliver": max_deliver},
            }))),
            "consumer_management.max_deliver"
        );
    }
    parse(&minimal_with(serde_json::json!({
        "dead_letter": dlq, "consumer_management": {"max_deliver": 7},
    })))
    .expect("room for the dead-lettering attempt");
    parse(&minimal_with(
        serde_json::json!({"consumer_management": {"max_deliver": 2}}),
    ))
    .expect("without a DLQ the budget is the operator's choice");
    for management in [
        serde_json::json!({"ack_wait_seconds": 5}),
        serde_json::json!({"ack_wait_seconds": 60, "backoff_seconds": [30, 2]}),
    ] {
        assert_eq!(
            location_of(&minimal_with(
                serde_json::json!({"consumer_management": management})
            )),
            "delivery.in_progress.interval_ms"
        );
    }
    assert_eq!(
        location_of(&minimal_with(
            serde_json::json!({"nats": {"ping_interval_seconds": 0}})
        )),
        "nats.ping_interval_seconds"
    );
}
