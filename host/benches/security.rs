//! Per-message cost of each stage of the security pipeline, in-process
//! (no NATS, no plugin): metadata normalisation, HMAC verification, AES-GCM
//! encryption and custody, alone and together. Prints µs per message.
//!
//! `cargo bench -p sinkhost --bench security`

use std::time::Instant;

use base64::Engine as _;
use sinkhost::config::{AuthenticityAlgorithm, Config, SignedField};
use sinkhost::envelope::{Envelope, MessageMetadata};
use sinkhost::security::authenticity::{authenticity_headers, sign_hmac, MessageToVerify};
use sinkhost::security::pipeline::{Screening, SecurityPipeline};

const MESSAGES: usize = 20_000;
const HMAC_KEY: [u8; 32] = [42; 32];

fn config(authenticity: bool, encryption: bool, custody: bool) -> Config {
    let mut doc = serde_json::json!({
        "nats": {"url": "nats://127.0.0.1:4222", "stream": "S", "consumer": "c", "subject": "sig.>"},
        "plugin": {"path": "p.wasm"}, "sink": {}
    });
    if authenticity {
        doc["message_authenticity"] = serde_json::json!({"enabled": true, "rules": [
            {"subject": "sig.>", "algorithm": "hmac-sha256", "key_id": "k1", "key_b64_env": "BENCH_HMAC_KEY"}]});
    }
    if encryption {
        doc["encryption"] =
            serde_json::json!({"enabled": true, "key_id": "e1", "key_b64_env": "BENCH_AES_KEY"});
    }
    if custody {
        doc["custody"] = serde_json::json!({"enabled": true, "algorithm": "sha256"});
    }
    Config::from_json_str(&doc.to_string()).expect("bench config")
}

fn envelope(i: usize) -> Envelope {
    let body = format!(r#"{{"id":{i},"kind":"bench","pad":"{}"}}"#, "x".repeat(220)).into_bytes();
    let pairs = vec![("Nats-Msg-Id".to_string(), format!("bench-{i}"))];
    let message = MessageToVerify::new("sig.events", &pairs, &body);
    let signature = sign_hmac(
        &HMAC_KEY,
        "k1",
        &[SignedField::Subject, SignedField::MessageId],
        &message,
    )
    .expect("sign");
    let headers: Vec<(String, String)> = pairs
        .iter()
        .cloned()
        .chain(authenticity_headers(
            AuthenticityAlgorithm::HmacSha256,
            "k1",
            &signature,
        ))
        .collect();
    Envelope {
        subject: "sig.events".into(),
        headers,
        payload: body.into(),
        stream: "S".into(),
        consumer: "c".into(),
        stream_sequence: i as u64 + 1,
        consumer_sequence: i as u64 + 1,
        delivery_count: 1,
        pending: 0,
        timestamp_ns: 1_700_000_000_000_000_000,
        received_at_ns: 1_700_000_000_100_000_000,
        message_id: Some(format!("bench-{i}")),
        metadata: MessageMetadata::default(),
        custody: None,
    }
}

fn main() {
    std::env::set_var(
        "BENCH_HMAC_KEY",
        base64::engine::general_purpose::STANDARD.encode(HMAC_KEY),
    );
    std::env::set_var(
        "BENCH_AES_KEY",
        base64::engine::general_purpose::STANDARD.encode([1u8; 32]),
    );
    let envelopes: Vec<Envelope> = (0..MESSAGES).map(envelope).collect();
    println!("| stages | µs per message | msg/s on one core |");
    println!("| --- | ---: | ---: |");
    for (name, a, e, c) in [
        ("none (metadata only)", false, false, false),
        ("hmac verify", true, false, false),
        ("aes-gcm encrypt", false, true, false),
        ("custody sha256", false, false, true),
        ("all three", true, true, true),
    ] {
        let pipeline = SecurityPipeline::from_config(&config(a, e, c)).expect("pipeline");
        let started = Instant::now();
        let mut passed = 0usize;
        for envelope in envelopes.iter().cloned() {
            if matches!(pipeline.screen(envelope), Screening::Pass(_)) {
                passed += 1;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(passed, MESSAGES, "{name}: every bench message is genuine");
        println!(
            "| {name} | {:.2} | {:.0} |",
            seconds * 1e6 / MESSAGES as f64,
            MESSAGES as f64 / seconds
        );
    }
    custody_breakdown(&envelopes);
    hostile_headers();
}

/// Where custody's time goes: the three hash inputs, built separately.
fn custody_breakdown(envelopes: &[Envelope]) {
    use sinkhost::security::{canonical, custody, metadata};
    println!();
    println!("| custody part | µs per message |");
    println!("| --- | ---: |");
    let time = |name: &str, work: &dyn Fn(&Envelope) -> usize| {
        let started = Instant::now();
        let mut bytes = 0usize;
        for envelope in envelopes {
            bytes += work(envelope);
        }
        let seconds = started.elapsed().as_secs_f64();
        assert!(bytes > 0, "{name} produced nothing");
        println!("| {name} | {:.2} |", seconds * 1e6 / envelopes.len() as f64);
    };
    time("payload hash input (parse + canonical)", &|e| {
        custody::payload_hash_input(&e.payload)
            .map(|v| v.len())
            .unwrap_or(0)
    });
    time("metadata document (JSON tree)", &|e| {
        metadata::metadata_document(e, &e.payload, None)
            .as_object()
            .map_or(0, |m| m.len())
    });
    time("metadata document + canonical bytes", &|e| {
        canonical::to_canonical_bytes(&metadata::metadata_document(e, &e.payload, None)).len()
    });
}

/// Per-message cost of screening a hostile message: many labels in
/// `Nats-Sinks-Labels`, or many tiny headers. Before the caps these were
/// quadratic; now a message past a cap is refused (DLQ) after one linear
/// pass. Reports the outcome too (`pass` or `reject`).
fn hostile_headers() {
    // Custody on: its metadata document walks the headers again.
    let pipeline = SecurityPipeline::from_config(&config(false, false, true)).expect("pipeline");
    println!();
    println!("| hostile message | µs per message | outcome |");
    println!("| --- | ---: | --- |");
    let run = |name: String, headers: Vec<(String, String)>| {
        let mut base = envelope(0);
        base.headers = headers;
        let rounds = 50usize;
        let started = Instant::now();
        let mut outcome = "";
        for _ in 0..rounds {
            outcome = match pipeline.screen(base.clone()) {
                Screening::Pass(_) => "pass",
                Screening::Reject { .. } => "reject",
                Screening::Retry { .. } => "retry",
            };
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "| {name} | {:.1} | {outcome} |",
            seconds * 1e6 / rounds as f64
        );
    };
    for labels in [10usize, 1_000, 4_000, 10_000] {
        let value: Vec<String> = (0..labels).map(|i| format!("label-{i}")).collect();
        run(
            format!("{labels} labels"),
            vec![("Nats-Sinks-Labels".to_string(), value.join(";"))],
        );
    }
    for count in [100usize, 4_000] {
        let headers = (0..count)
            .map(|i| (format!("X-H{i}"), "v".to_string()))
            .collect();
        run(format!("{count} headers"), headers);
    }
    for count in [100usize, 4_000] {
        let headers = (0..count)
            .map(|i| (format!("Nats-H{i}"), "v".to_string()))
            .collect();
        run(format!("{count} Nats- headers"), headers);
    }
}
