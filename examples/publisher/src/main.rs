//! Example producer for the demo: makes sure a stream exists, then publishes
//! sample JSON events carrying the metadata headers sinkhost understands
//! (`Nats-Msg-Id`, `Nats-Sinks-Priority`, `-Classification`, `-Labels`).

use anyhow::Context as _;
use async_nats::jetstream;
use clap::Parser;

/// Publishes sample events to a JetStream stream.
#[derive(Debug, Parser)]
struct Args {
    /// NATS server URL.
    #[arg(long, default_value = "nats://127.0.0.1:14222")]
    url: String,
    /// Stream to create if missing.
    #[arg(long, default_value = "DEMO")]
    stream: String,
    /// Subjects the stream captures (comma-separated); the first non-wildcard
    /// prefix is used to publish.
    #[arg(long, default_value = "demo.>")]
    stream_subjects: String,
    /// Extra streams to create, as NAME=SUBJECT (e.g. a DLQ stream).
    #[arg(long = "extra-stream", value_name = "NAME=SUBJECT")]
    extra_streams: Vec<String>,
    /// Subject prefix to publish on (`<prefix>.orders`, `<prefix>.sensors`).
    #[arg(long, default_value = "demo")]
    prefix: String,
    /// How many events.
    #[arg(long, default_value_t = 10)]
    count: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = async_nats::connect(&args.url)
        .await
        .with_context(|| format!("cannot connect to {}", args.url))?;
    let js = jetstream::new(client);
    ensure_stream(
        &js,
        &args.stream,
        args.stream_subjects
            .split(',')
            .map(str::to_string)
            .collect(),
    )
    .await?;
    for extra in &args.extra_streams {
        let (name, subject) = extra
            .split_once('=')
            .with_context(|| format!("--extra-stream `{extra}` must be NAME=SUBJECT"))?;
        ensure_stream(&js, name, vec![subject.to_string()]).await?;
    }
    for i in 0..args.count {
        let (kind, priority, classification) = if i % 2 == 0 {
            ("orders", "routine", "unclassified")
        } else {
            ("sensors", "urgent", "restricted")
        };
        let subject = format!("{}.{kind}", args.prefix);
        let payload = serde_json::json!({"event": i, "kind": kind, "value": i * 7});
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("sample-{i}").as_str());
        headers.insert("Nats-Sinks-Priority", priority);
        headers.insert("Nats-Sinks-Classification", classification);
        headers.insert("Nats-Sinks-Labels", "demo;sample");
        js.publish_with_headers(subject, headers, payload.to_string().into())
            .await?
            .await
            .context("publish not confirmed")?;
    }
    println!(
        "published {} sample events to stream {}",
        args.count, args.stream
    );
    Ok(())
}

async fn ensure_stream(
    js: &jetstream::Context,
    name: &str,
    subjects: Vec<String>,
) -> anyhow::Result<()> {
    js.get_or_create_stream(jetstream::stream::Config {
        name: name.to_string(),
        subjects,
        ..Default::default()
    })
    .await
    .with_context(|| format!("cannot create stream {name}"))?;
    Ok(())
}
