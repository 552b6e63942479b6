//! Message security end to end: a stream with well-signed, unsigned,
//! tampered and wrong-key messages. Exactly the good ones reach the file sink,
//! encrypted where a rule says so and with custody hashes; the rest are in the
//! DLQ with their reasons; everything is ACKed, nothing lost.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use sinkhost::config::{AuthenticityAlgorithm, SignedField};
use sinkhost::security::authenticity::{authenticity_headers, sign_hmac, MessageToVerify};
use sinkhost_e2e::*;

const STREAM: &str = "SECURE";
const HMAC_ENV: &str = "SINKHOST_E2E_HMAC_KEY";
const AES_ENV: &str = "SINKHOST_E2E_AES_KEY";
const HMAC_KEY: [u8; 32] = [7; 32];
const OTHER_KEY: [u8; 32] = [9; 32];
const AES_KEY: [u8; 32] = [3; 32];

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Headers of a message signed with `key` under key id `k1`.
fn signed(subject: &str, id: &str, payload: &[u8], key: &[u8]) -> Vec<(String, String)> {
    let mut headers = vec![("Nats-Msg-Id".to_string(), id.to_string())];
    let message = MessageToVerify::new(subject, &headers, payload);
    let fields = [SignedField::Subject, SignedField::MessageId];
    let signature = sign_hmac(key, "k1", &fields, &message).expect("sign");
    headers.extend(authenticity_headers(
        AuthenticityAlgorithm::HmacSha256,
        "k1",
        &signature,
    ));
    headers
}

#[tokio::test(flavor = "multi_thread")]
async fn only_genuine_messages_reach_the_sink_encrypted_with_custody() {
    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["secure.>"])
        .await
        .expect("stream");
    js.create_stream("DLQ", &["dlq.secure"]).await.expect("dlq");

    let subject = "secure.orders";
    let mut expected_good = Vec::new();
    for i in 0..10 {
        let payload = format!(r#"{{"order":{i}}}"#).into_bytes();
        let headers = signed(subject, &format!("good-{i}"), &payload, &HMAC_KEY);
        publish(&js, subject, &headers, &payload).await;
        expected_good.push(payload);
    }
    for i in 0..3 {
        // Unsigned.
        publish(
            &js,
            subject,
            &[("Nats-Msg-Id".into(), format!("unsigned-{i}"))],
            b"{}",
        )
        .await;
        // Tampered: signed, then the payload changed.
        let headers = signed(
            subject,
            &format!("tampered-{i}"),
            b"{\"amount\":1}",
            &HMAC_KEY,
        );
        publish(&js, subject, &headers, b"{\"amount\":1000}").await;
        // Signed with a key the verifier does not hold.
        let headers = signed(subject, &format!("wrongkey-{i}"), b"{}", &OTHER_KEY);
        publish(&js, subject, &headers, b"{}").await;
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let mut config = base_config(
        &server,
        STREAM,
        "secure.>",
        &plugin("file"),
        &out,
        json!({"directory": "/out", "fsync": false}),
    );
    set(
        &mut config,
        "dead_letter",
        json!({"enabled": true, "subject": "dlq.secure"}),
    );
    set(
        &mut config,
        "message_authenticity",
        json!({
            "enabled": true,
            "rules": [{"subject": "secure.>", "algorithm": "hmac-sha256", "key_id": "k1", "key_b64_env": HMAC_ENV}]
        }),
    );
    set(
        &mut config,
        "encryption",
        json!({
            "enabled": false,
            "rules": [{"subject": "secure.>", "key_id": "enc-1", "key_b64_env": AES_ENV}]
        }),
    );
    set(
        &mut config,
        "custody",
        json!({"enabled": true, "algorithm": "sha256"}),
    );
    let config_path = write_config(dir.path(), &config);
    let env = [(HMAC_ENV, b64(&HMAC_KEY)), (AES_ENV, b64(&AES_KEY))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut host =
        Host::start_with_env(&config_path, &dir.path().join("sinkhost.log"), &env).expect("start");

    let drained = wait_until(Duration::from_secs(60), || async {
        matches!(js.consumer_backlog(STREAM, "sinkhost").await, Ok((0, 0)))
    })
    .await;
    assert!(drained, "not drained:\n{}", host.log());
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );

    // Exactly the ten genuine messages were stored, encrypted, with custody.
    let files = files_below(&out);
    assert_eq!(files.len(), 10, "{}", host.log());
    let mut decrypted = Vec::new();
    for file in &files {
        let record: Value =
            serde_json::from_slice(&std::fs::read(file).expect("read")).expect("json");
        let envelope = &record["payload"]["_nats_sinks_encryption"];
        assert_eq!(envelope["algorithm"], "aes-256-gcm", "{record}");
        assert_eq!(envelope["key_id"], "enc-1");
        assert!(
            record["custody"]["record_hash"]
                .as_str()
                .is_some_and(|h| h.len() == 64),
            "{record}"
        );
        let (code, plaintext, stderr) = sinkhost_with_env(
            &[
                "decrypt",
                "--key-id",
                "enc-1",
                "--key-b64-env",
                AES_ENV,
                file.to_str().expect("utf8"),
            ],
            &env,
        );
        assert_eq!(code, 0, "{stderr}");
        decrypted.push(plaintext.into_bytes());
    }
    decrypted.sort();
    expected_good.sort();
    assert_eq!(decrypted, expected_good);

    // The nine others are in the DLQ with their reasons.
    let dead = js.read_all("DLQ").await.expect("dlq");
    assert_eq!(dead.len(), 9);
    let mut reasons = std::collections::BTreeMap::new();
    for record in &dead {
        let body: Value = serde_json::from_slice(&record.payload).expect("dlq json");
        assert_eq!(body["error_type"], "PolicyViolationError", "{body}");
        let id = body["message_id"].as_str().unwrap_or_default().to_string();
        let kind = id.split('-').next().unwrap_or_default().to_string();
        let error = body["error"].as_str().unwrap_or_default().to_string();
        reasons.entry(kind).or_insert_with(Vec::new).push(error);
    }
    for error in &reasons["unsigned"] {
        assert!(error.contains("header_missing"), "{error}");
    }
    for error in reasons["tampered"].iter().chain(&reasons["wrongkey"]) {
        assert!(error.contains("signature_invalid"), "{error}");
    }
    // The host log never contains key material.
    let log = host.log();
    for secret in [b64(&HMAC_KEY), b64(&AES_KEY)] {
        assert!(!log.contains(&secret), "a key leaked into the log");
    }
}

async fn publish(js: &Js, subject: &str, headers: &[(String, String)], payload: &[u8]) {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    js.publish_with_headers(subject, &pairs, payload)
        .await
        .expect("publish");
}

#[test]
fn a_missing_key_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = json!({
        "nats": {"url": "nats://127.0.0.1:1", "stream": "S", "consumer": "c", "subject": "s.>"},
        "message_authenticity": {"enabled": true, "rules": [
            {"subject": "s.>", "algorithm": "hmac-sha256", "key_id": "k1", "key_b64_env": "SINKHOST_E2E_SURELY_UNSET"}
        ]},
        "plugin": {"path": plugin("file"), "grants": {"files": [{"host_path": dir.path().join("out"), "guest_path": "/out", "access": "read-write"}]}},
        "sink": {"directory": "/out"}
    });
    let path = write_config(dir.path(), &config);
    let (code, _, stderr) = sinkhost(&["validate", path.to_str().expect("utf8")]);
    assert_ne!(code, 0);
    assert!(stderr.contains("SINKHOST_E2E_SURELY_UNSET"), "{stderr}");
}

#[test]
fn keys_generate_prints_usable_material() {
    for algorithm in ["hmac-sha256", "aes-256-gcm", "ed25519"] {
        let (code, stdout, stderr) = sinkhost(&["keys", "generate", "--algorithm", algorithm]);
        assert_eq!(code, 0, "{stderr}");
        let value = stdout
            .lines()
            .next()
            .and_then(|l| l.split_once('='))
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value)
            .expect("base64");
        assert_eq!(bytes.len(), 32, "{algorithm}: {stdout}");
    }
}
