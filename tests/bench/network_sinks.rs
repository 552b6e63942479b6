//! Network sinks bench: the HTTP sink against a real HTTP server and the S3
//! sink against a real SeaweedFS, both on 127.0.0.1, draining one stream of
//! 256-byte JSON messages per contender through a real JetStream.
//!
//! Contenders (batches of 100, 2 in flight):
//! - `sinkhost-discard`: the discarding test plugin (the host's own cost);
//! - `http-per-message`: one POST per message (8 in flight per batch);
//! - `http-json-lines`: one POST of 100 JSON lines per batch;
//! - `s3-per-message`: one conditional PUT per message, signed by the host;
//! - `s3-per-batch`: one conditional PUT of a JSON-lines object per batch.
//!
//! Prints msg/s and the ratio to the discarding plugin.
//! Run: `cargo bench -p sinkhost-e2e --bench network_sinks` (after building
//! the host and the plugins). `BENCH_NET_MESSAGES` overrides the count
//! (default 20,000).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use sinkhost_e2e::http_receiver::HttpReceiver;
use sinkhost_e2e::seaweedfs::{SeaweedFs, ACCESS_KEY, SECRET_KEY};
use sinkhost_e2e::*;

const PAYLOAD_BYTES: usize = 256;

fn payload(i: usize) -> Vec<u8> {
    let head = format!(r#"{{"id":{i},"kind":"bench","pad":""#);
    let pad = PAYLOAD_BYTES.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad)).into_bytes()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total: usize = std::env::var("BENCH_NET_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let server = NatsServer::start()?;
    let js = Js::connect(&server).await?;
    let receiver = HttpReceiver::start().await?;
    let s3 = SeaweedFs::start()?;
    let work = tempfile::tempdir()?;
    let http_grant = json!([{"origin": receiver.origin(), "max_concurrent_requests": 16}]);
    let s3_grant = json!([{"origin": s3.s3_endpoint(), "auth": {"aws_sigv4": {
        "region": "us-east-1", "service": "s3",
        "access_key_id_env": "S3_ACCESS_KEY_ID", "secret_access_key_env": "S3_SECRET_ACCESS_KEY"}},
        "allow_plaintext_credentials": true}]);
    let url = format!("{}/ingest", receiver.origin());
    let contenders: Vec<(&str, std::path::PathBuf, Value, Value)> = vec![
        (
            "sinkhost-discard",
            test_plugin("chaos"),
            json!({"behaviour": "discard"}),
            json!([]),
        ),
        (
            "http-per-message",
            plugin("http"),
            json!({"url": url, "max_in_flight": 8}),
            http_grant.clone(),
        ),
        (
            "http-json-lines",
            plugin("http"),
            json!({"url": url, "mode": "json_lines"}),
            http_grant,
        ),
        (
            "s3-per-message",
            plugin("s3"),
            json!({"endpoint": s3.s3_endpoint(), "bucket": "benchmsg"}),
            s3_grant.clone(),
        ),
        (
            "s3-per-batch",
            plugin("s3"),
            json!({"endpoint": s3.s3_endpoint(), "bucket": "benchbatch", "mode": "per_batch"}),
            s3_grant,
        ),
    ];
    s3.create_bucket("benchmsg")?;
    s3.create_bucket("benchbatch")?;

    let mut rows = Vec::new();
    for (index, (name, plugin_path, sink, grant)) in contenders.into_iter().enumerate() {
        let stream = format!("NET{index}");
        let subject = format!("net{index}.>");
        js.create_stream(&stream, &[subject.as_str()]).await?;
        js.publish_many(&format!("net{index}.events"), total, payload)
            .await?;
        let seconds = run(
            &server,
            &js,
            work.path(),
            name,
            &stream,
            &subject,
            &plugin_path,
            sink,
            grant,
        )
        .await?;
        rows.push((name, seconds));
    }

    let rate = |seconds: f64| total as f64 / seconds;
    let baseline = rate(rows[0].1);
    println!();
    println!("| contender | messages | seconds | msg/s | vs discard |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, seconds) in &rows {
        println!(
            "| {name} | {total} | {seconds:.2} | {:.0} | {:.3} |",
            rate(*seconds),
            rate(*seconds) / baseline
        );
    }
    Ok(())
}

/// Drains `stream` with one `sinkhost run`; seconds from the first delivery
/// to nothing pending and nothing unACKed.
#[allow(clippy::too_many_arguments)]
async fn run(
    server: &NatsServer,
    js: &Js,
    work: &Path,
    name: &str,
    stream: &str,
    subject: &str,
    plugin_path: &Path,
    sink: Value,
    grant: Value,
) -> anyhow::Result<f64> {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir)?;
    let mut config = base_config(server, stream, subject, plugin_path, &dir.join("out"), sink);
    set(&mut config, "plugin.grants.files", json!([]));
    set(&mut config, "plugin.grants.http", grant);
    set(&mut config, "delivery.max_in_flight_batches", json!(2));
    set(&mut config, "logging.level", json!("warn"));
    set(&mut config, "plugin.limits.call_timeout_ms", json!(30_000));
    let path = write_config(&dir, &config);
    let env = [
        ("S3_ACCESS_KEY_ID", ACCESS_KEY),
        ("S3_SECRET_ACCESS_KEY", SECRET_KEY),
    ];
    let mut host = Host::start_with_env(&path, &dir.join("sinkhost.log"), &env)?;
    let seconds = seconds_to_drain(js, stream, &host, Duration::from_secs(900)).await?;
    host.terminate(Duration::from_secs(30));
    Ok(seconds)
}
