//! The ten-minute path for a Rust author, end to end: `sinkhost plugin new
//! --lang rust` generates a project on `sdk/rust`, its `build.sh` builds the
//! component (wasm32-wasip2) and embeds the manifest, its `certify.sh`
//! passes `sinkhost certify`, and `sinkhost run` delivers JetStream messages
//! through it into files.

use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use serde_json::json;
use sinkhost_e2e::authoring::*;
use sinkhost_e2e::*;

const NAME: &str = "demo-sink";
const STREAM: &str = "AUTHORING";

/// Runs a generated project's script with the shared scaffold target
/// directory (so repeated runs reuse the compiled SDK); (success, output).
fn run_script(project: &Path, script: &str) -> (bool, String) {
    let target = repo_root().join("target/scaffold-rust");
    let (code, output) = run_project_script(project, script, &[("CARGO_TARGET_DIR", &target)]);
    (code == 0, output)
}

/// Generates the project into `dir/NAME` and builds it; the component's path.
fn generate_and_build(dir: &Path) -> PathBuf {
    let project = dir.join(NAME);
    let sdk = repo_root().join("sdk/rust");
    new_project(
        "rust",
        &project,
        NAME,
        &["--sdk-path", sdk.to_str().expect("utf-8 path")],
        &["wit/sink.wit", "build.sh", "certify.sh", "manifest.json"],
    );

    let started = Instant::now();
    let (built, output) = run_script(&project, "build.sh");
    assert!(built, "build.sh failed:\n{output}");
    let component = project.join(format!("{NAME}.wasm"));
    let size = std::fs::metadata(&component).expect("component").len();
    println!(
        "measured: scaffold build {:.1} s, component {size} bytes",
        started.elapsed().as_secs_f64()
    );
    let (code, manifest, stderr) = sinkhost(&[
        "plugin",
        "manifest",
        "show",
        "--json",
        component.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 0, "manifest show: {stderr}");
    assert!(manifest.contains(NAME), "{manifest}");
    component
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_scaffold_builds_certifies_and_delivers_through_jetstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let component = generate_and_build(dir.path());
    let project = dir.path().join(NAME);

    let (certified, output) = run_script(&project, "certify.sh");
    println!("{output}");
    assert!(certified, "certify.sh failed:\n{output}");
    assert!(output.contains("result: PASSED"), "{output}");

    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["authoring.>"])
        .await
        .expect("stream");
    js.publish_json("authoring.orders", 1_000)
        .await
        .expect("publish");
    let out = dir.path().join("out");
    let config = base_config(
        &server,
        STREAM,
        "authoring.>",
        &component,
        &out,
        json!({"directory": "/out"}),
    );
    let config_path = write_config(dir.path(), &config);
    let started = Instant::now();
    let mut host =
        Host::start(&config_path, &dir.path().join("sinkhost.log")).expect("start sinkhost");
    let drained = wait_until(Duration::from_secs(120), || async {
        matches!(js.consumer_backlog(STREAM, "sinkhost").await, Ok((0, 0)))
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(drained, "not drained:\n{}", host.log());
    println!("measured: 1000 messages delivered in {elapsed:.2} s (start-up included)");
    host.terminate(Duration::from_secs(10));

    let files = files_below(&out);
    assert_eq!(files.len(), 1_000, "{:?}", files.first());
    let first = out.join(format!("{STREAM}-1.json"));
    let record = read_json(&first);
    assert_eq!(record["schema"], format!("{NAME}.message.v1"));
    assert_eq!(record["metadata"]["subject"], "authoring.orders");
    assert_eq!(record["payload"]["n"], 0);
}
