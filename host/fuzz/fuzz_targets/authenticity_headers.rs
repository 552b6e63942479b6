//! Signature header parsing and verification: arbitrary header values (and
//! payloads) must verify or fail with a reason, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sinkhost::config::MessageAuthenticityConfig;
use sinkhost::security::authenticity::{MessageToVerify, Verifier};

fuzz_target!(|data: &[u8]| {
    static VERIFIER: std::sync::OnceLock<Verifier> = std::sync::OnceLock::new();
    let verifier = VERIFIER.get_or_init(|| {
        // One HMAC rule and one Ed25519 rule (public key inline).
        std::env::set_var("SINKHOST_FUZZ_HMAC", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
        let config: MessageAuthenticityConfig = serde_json::from_value(serde_json::json!({
            "enabled": true,
            "rules": [
                {"subject": "hmac.>", "algorithm": "hmac-sha256", "key_id": "k1", "key_b64_env": "SINKHOST_FUZZ_HMAC"},
                {"subject": "ed.>", "algorithm": "ed25519", "key_id": "k2",
                 "public_key_b64": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}
            ]
        }))
        .expect("fuzz config");
        Verifier::from_config(&config).expect("fuzz verifier")
    });
    // Split the input into algorithm, key id, signature and payload.
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\u{1}');
    let algorithm = parts.next().unwrap_or_default().to_string();
    let key_id = parts.next().unwrap_or_default().to_string();
    let signature = parts.next().unwrap_or_default().to_string();
    let payload = parts.next().unwrap_or_default().as_bytes().to_vec();
    let headers = vec![
        ("Nats-Sinks-Authenticity-Algorithm".to_string(), algorithm),
        ("Nats-Sinks-Authenticity-Key-Id".to_string(), key_id),
        ("Nats-Sinks-Authenticity-Signature".to_string(), signature),
        ("Nats-Msg-Id".to_string(), "m-1".to_string()),
    ];
    for subject in ["hmac.a", "ed.b", "other"] {
        let message = MessageToVerify::new(subject, &headers, &payload);
        let _ = verifier.verify(&message);
    }
});
