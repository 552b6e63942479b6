//! Python sinks end to end: the example `examples/python-sink` (built by
//! `bash examples/python-sink/build.sh` into
//! `target/plugins-python/python-sink.wasm`) delivers through a real
//! JetStream with `sinkhost run` and passes `sinkhost certify`; a project
//! made by `sinkhost plugin new --lang python` builds with its `build.sh` and
//! passes its own `certify.sh`. The tests print what they measure (size,
//! cold and warm start, msg/s) and assert none of it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use sinkhost_e2e::authoring::*;
use sinkhost_e2e::*;

const STREAM: &str = "PYEVENTS";

/// The built example component.
fn python_example() -> PathBuf {
    let path = repo_root().join("target/plugins-python/python-sink.wasm");
    assert!(
        path.exists(),
        "{} is missing: run `bash examples/python-sink/build.sh` first",
        path.display()
    );
    path
}

/// The componentize-py of `target/python-venv` (installed on first use).
fn componentize_py() -> PathBuf {
    let output = Command::new("bash")
        .arg(repo_root().join("sdk/python/setup-venv.sh"))
        .stdin(Stdio::null())
        .output()
        .expect("run sdk/python/setup-venv.sh");
    assert!(
        output.status.success(),
        "setup-venv.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_example_delivers_every_message_through_jetstream() {
    let plugin_path = python_example();
    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["py.>"]).await.expect("stream");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let config = base_config(
        &server,
        STREAM,
        "py.>",
        &plugin_path,
        &out,
        json!({"directory": "/out", "include_headers": true}),
    );
    let config_path = write_config(dir.path(), &config);

    // Cold start compiles the component into plugin.cache_dir; warm loads it.
    let (code, cold, log) = validate_with_load(&config_path);
    assert_eq!(code, 0, "{log}");
    let (code, warm, log) = validate_with_load(&config_path);
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        warm.cache, "Hit",
        "second validate must load the precompiled cache:\n{log}"
    );
    println!(
        "python-sink: {} bytes; validate cold: cache {}, load_ms {:?}; warm: cache {}, load_ms {:?}",
        std::fs::metadata(&plugin_path).expect("size").len(),
        cold.cache,
        cold.load_ms,
        warm.cache,
        warm.load_ms
    );

    const MESSAGES: usize = 2_000;
    js.publish_json("py.orders", MESSAGES)
        .await
        .expect("publish");
    js.publish_with_headers(
        "py.special",
        &[("Nats-Msg-Id", "special-1"), ("X-Trace", "abc")],
        b"plain text, not JSON",
    )
    .await
    .expect("publish with headers");
    let host = Host::start(&config_path, &dir.path().join("sinkhost.log")).expect("start");
    let seconds = seconds_to_drain(&js, STREAM, &host, Duration::from_secs(120))
        .await
        .expect("drained");
    println!(
        "python-sink: {} messages drained in {seconds:.2} s = {:.0} msg/s end to end (file per message, fsync)",
        MESSAGES + 1,
        (MESSAGES + 1) as f64 / seconds
    );

    let files = files_below(&out);
    assert_eq!(files.len(), MESSAGES + 1, "{}", host.log());
    let first = read_json(&out.join(format!("{STREAM}-1.json")));
    assert_eq!(first["stream_sequence"], 1);
    assert_eq!(first["subject"], "py.orders");
    assert_eq!(first["payload_encoding"], "json");
    assert_eq!(first["payload"], json!({"n": 0, "kind": "test"}));
    let special = read_json(&out.join(format!("{STREAM}-{}.json", MESSAGES + 1)));
    assert_eq!(special["message_id"], "special-1");
    assert_eq!(special["payload_encoding"], "text");
    assert_eq!(special["payload"], "plain text, not JSON");
    assert!(
        special["headers"]
            .as_array()
            .expect("headers")
            .contains(&json!(["X-Trace", "abc"])),
        "{special}"
    );
}

#[test]
fn the_python_example_refuses_bad_options_naming_the_field() {
    let plugin_path = python_example();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = NatsServer::start().expect("nats-server");
    for (sink, field) in [
        (
            json!({"directory": "/out", "payload_encoding": "hex"}),
            "payload_encoding",
        ),
        (json!({"directory": "/out", "pretty": "yes"}), "pretty"),
        (json!({"directory": "/nowhere"}), "directory"),
        (json!({}), "directory"),
    ] {
        let config = base_config(
            &server,
            STREAM,
            "py.>",
            &plugin_path,
            &dir.path().join("out"),
            sink.clone(),
        );
        let path = write_config(dir.path(), &config);
        let (code, _, log) = validate_with_load(&path);
        assert_ne!(code, 0, "{sink} accepted:\n{log}");
        assert!(
            log.contains(field),
            "{sink}: the error does not name {field}:\n{log}"
        );
    }
}

/// The certification config of `tests/e2e/certify.rs`'s file sink, for the
/// Python example in `payload_encoding: text` mode, so a binary message is
/// the permanent refusal `error-classification` asks for.
fn certify_config(work: &Path, plugin: &Path) -> Value {
    let data = work.join("data");
    let out = data.join("out");
    std::fs::create_dir_all(&out).expect("out dir");
    let out = out.display();
    json!({
        "nats": {"url": "nats://127.0.0.1:4222", "stream": "UNUSED", "consumer": "unused", "subject": "unused.>"},
        "delivery": {"batch_size": 100, "batch_timeout_ms": 200, "max_in_flight_batches": 2},
        "plugin": {
            "path": plugin,
            "grants": {"files": [{"host_path": data, "guest_path": "/data", "access": "read-write"}]},
            "limits": {"memory_mb": 64, "call_timeout_ms": 10000},
            "cache_dir": work.join("cache")
        },
        "sink": {"directory": "/data/out", "payload_encoding": "text"},
        "certification": {
            "verifier": ["sh", "-c", format!("find {out} -type f -name '*.json' | wc -l")],
            "record_lookup": ["sh", "-c", format!("grep -rl -- \"$SINKHOST_CERTIFY_MESSAGE_ID\" {out} | head -n 1 | xargs cat")],
            "bad_sink_configs": [
                {"directory": "/data/out", "no_such_option": true},
                {"directory": "/data/out", "payload_encoding": "hex"},
                {"directory": "relative"}
            ],
            "rejected_message": {"payload_b64": "//79"},
            "unavailable": {
                "break_command": ["sh", "-c", format!("mv {out} {out}.away && touch {out}")],
                "repair_command": ["sh", "-c", format!("rm -f {out} && mv {out}.away {out}")]
            },
            "messages": 1000,
            "throughput_floor_msgs_per_s": 100
        }
    })
}

#[test]
fn the_python_example_passes_certification() {
    let work = tempfile::tempdir().expect("tempdir");
    let config = certify_config(work.path(), &python_example());
    let config_path = work.path().join("certify.json");
    std::fs::write(
        &config_path,
        serde_json::to_vec_pretty(&config).expect("json"),
    )
    .expect("write");
    let (code, stdout, stderr) = sinkhost(&[
        "certify",
        "--config",
        config_path.to_str().expect("utf-8"),
        python_example().to_str().expect("utf-8"),
    ]);
    println!("{stdout}");
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("result: PASSED (11 checks passed)"),
        "{stdout}{stderr}"
    );
    assert!(
        stdout.contains("refused as permanent alone"),
        "the binary message must be refused as permanent: {stdout}"
    );
}

#[test]
fn a_new_python_project_builds_and_passes_its_certify_script() {
    let work = tempfile::tempdir().expect("tempdir");
    let project = work.path().join("orders-sink");
    new_project(
        "python",
        &project,
        "orders-sink",
        &[],
        &[
            "src/app.py",
            "src/sinkhost_sdk.py",
            "wit/sink.wit",
            "build.sh",
            "certify.sh",
            "certify.json",
            "manifest.json",
            "README.md",
        ],
    );

    let tool = componentize_py();
    let env = [("COMPONENTIZE_PY", tool.as_path())];
    let (code, output) = run_project_script(&project, "build.sh", &env);
    assert_eq!(code, 0, "build.sh failed:\n{output}");
    let wasm = project.join("orders-sink.wasm");
    println!(
        "scaffolded python project: {} bytes",
        std::fs::metadata(&wasm).expect("built").len()
    );
    let (code, output) = run_project_script(&project, "certify.sh", &env);
    println!("{output}");
    assert_eq!(code, 0, "certify.sh failed:\n{output}");
    assert!(
        output.contains("result: PASSED (11 checks passed)"),
        "{output}"
    );
}
