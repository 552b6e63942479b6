//! Round trip with the reference implementation itself (nats-sinks 0.4.3
//! from PyPI, in a virtual environment made by tests/reference/setup-venv.sh):
//! the reference signs messages that sinkhost verifies, and decrypts the
//! envelopes sinkhost wrote. Both ways, on a real JetStream.

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use sinkhost_e2e::*;

const HMAC_ENV: &str = "SINKHOST_E2E_REF_HMAC";
const AES_ENV: &str = "SINKHOST_E2E_REF_AES";

fn reference_python() -> String {
    let script = repo_root().join("tests/reference/setup-venv.sh");
    let output = Command::new("bash")
        .arg(script)
        .output()
        .expect("run setup-venv.sh");
    assert!(
        output.status.success(),
        "cannot install nats-sinks[crypto] from PyPI: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn run_reference(python: &str, args: &[&str]) {
    let script = repo_root().join("tests/reference/nats_sinks_roundtrip.py");
    let output = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("run reference");
    assert!(
        output.status.success(),
        "reference {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reference_signs_and_decrypts_what_sinkhost_verifies_and_encrypts() {
    let python = reference_python();
    let hmac_key = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
    let aes_key = base64::engine::general_purpose::STANDARD.encode([6u8; 32]);
    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream("REF", &["ref.>"]).await.expect("stream");
    js.create_stream("DLQ", &["dlq.ref"]).await.expect("dlq");
    const COUNT: usize = 20;
    run_reference(
        &python,
        &[
            "publish",
            "--url",
            &server.url(),
            "--subject",
            "ref.events",
            "--count",
            &COUNT.to_string(),
            "--key-b64",
            &hmac_key,
            "--key-id",
            "ref-k1",
        ],
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let mut config = base_config(
        &server,
        "REF",
        "ref.>",
        &plugin("file"),
        &out,
        json!({"directory": "/out", "fsync": false}),
    );
    set(
        &mut config,
        "dead_letter",
        json!({"enabled": true, "subject": "dlq.ref"}),
    );
    set(
        &mut config,
        "message_authenticity",
        json!({
            "enabled": true,
            "rules": [{"subject": "ref.>", "algorithm": "hmac-sha256", "key_id": "ref-k1", "key_b64_env": HMAC_ENV}]
        }),
    );
    set(
        &mut config,
        "encryption",
        json!({"enabled": true, "key_id": "ref-enc", "key_b64_env": AES_ENV}),
    );
    let config_path = write_config(dir.path(), &config);
    let env = [(HMAC_ENV, hmac_key.as_str()), (AES_ENV, aes_key.as_str())];
    let mut host =
        Host::start_with_env(&config_path, &dir.path().join("sinkhost.log"), &env).expect("start");
    let drained = wait_until(Duration::from_secs(60), || async {
        matches!(js.consumer_backlog("REF", "sinkhost").await, Ok((0, 0)))
    })
    .await;
    assert!(drained, "{}", host.log());
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );
    assert_eq!(
        js.stream_messages("DLQ").await.expect("dlq"),
        0,
        "every reference signature must verify:\n{}",
        host.log()
    );
    assert_eq!(files_below(&out).len(), COUNT);

    run_reference(
        &python,
        &[
            "verify-records",
            "--dir",
            out.to_str().expect("utf8"),
            "--count",
            &COUNT.to_string(),
            "--key-b64",
            &aes_key,
            "--key-id",
            "ref-enc",
        ],
    );
}
