//! Bad input on the command line: one clear error each, non-zero exit, no panic.

use serde_json::json;
use sinkhost_e2e::*;

fn valid_config(dir: &std::path::Path, plugin_path: &std::path::Path) -> serde_json::Value {
    json!({
        "nats": {"url": "nats://127.0.0.1:1", "stream": "S", "consumer": "c", "subject": "s.>"},
        "plugin": {
            "path": plugin_path,
            "grants": {"files": [{"host_path": dir.join("out"), "guest_path": "/out", "access": "read-write"}]},
            "cache_dir": dir.join("cache"),
        },
        "sink": {"directory": "/out"}
    })
}

fn assert_clear_failure(args: &[&str], expected: &[&str]) -> String {
    let (code, stdout, stderr) = sinkhost(args);
    assert_ne!(
        code, 0,
        "must fail: {args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "must not panic: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "one error line: {stderr}");
    for needle in expected {
        assert!(
            last.contains(needle),
            "error should mention {needle:?}: {last}"
        );
    }
    last.to_string()
}

#[test]
fn malformed_config_names_file_and_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken.json");
    std::fs::write(&path, "{ \"nats\": { \"url\": ").expect("write");
    assert_clear_failure(
        &["validate", path.to_str().expect("utf8")],
        &["broken.json", "line"],
    );
}

#[test]
fn unknown_key_names_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = valid_config(dir.path(), &plugin("file"));
    config["delivery"] = json!({"batch_sise": 10});
    let path = write_config(dir.path(), &config);
    assert_clear_failure(
        &["validate", path.to_str().expect("utf8")],
        &["delivery", "batch_sise"],
    );
}

#[test]
fn missing_config_file() {
    assert_clear_failure(
        &["run", "/nonexistent/sinkhost.json"],
        &["/nonexistent/sinkhost.json"],
    );
}

#[test]
fn missing_plugin_names_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = valid_config(dir.path(), &dir.path().join("nope.wasm"));
    let path = write_config(dir.path(), &config);
    assert_clear_failure(&["validate", path.to_str().expect("utf8")], &["nope.wasm"]);
    assert_clear_failure(&["run", path.to_str().expect("utf8")], &["nope.wasm"]);
}

#[test]
fn a_file_that_is_not_a_component() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"this is not webassembly").expect("write");
    let config = valid_config(dir.path(), &bogus);
    let path = write_config(dir.path(), &config);
    assert_clear_failure(&["validate", path.to_str().expect("utf8")], &["bogus.wasm"]);
    assert_clear_failure(&["inspect", bogus.to_str().expect("utf8")], &["bogus.wasm"]);
}

#[test]
fn a_component_of_another_world() {
    let dir = tempfile::tempdir().expect("tempdir");
    let other = test_plugin("other-world");
    let config = valid_config(dir.path(), &other);
    let path = write_config(dir.path(), &config);
    assert_clear_failure(
        &["validate", path.to_str().expect("utf8")],
        &["other-world.wasm", "sinkhost:sink/sink"],
    );
}

#[test]
fn a_sink_config_the_plugin_rejects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = valid_config(dir.path(), &plugin("file"));
    config["sink"] = json!({"directory": "/out", "layuot": "segment"});
    let path = write_config(dir.path(), &config);
    assert_clear_failure(&["validate", path.to_str().expect("utf8")], &["layuot"]);
}

#[test]
fn validate_accepts_a_good_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = valid_config(dir.path(), &plugin("file"));
    let path = write_config(dir.path(), &config);
    let (code, stdout, stderr) = sinkhost(&["validate", path.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("ok: "), "{stdout}");
}

#[test]
fn show_effective_config_fills_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = valid_config(dir.path(), &plugin("file"));
    let path = write_config(dir.path(), &config);
    let (code, stdout, stderr) = sinkhost(&["show-effective-config", path.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{stderr}");
    let effective: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(effective["delivery"]["batch_size"], 100);
    assert_eq!(effective["plugin"]["limits"]["memory_mb"], 64);
}

#[test]
fn inspect_shows_world_and_grants() {
    let (code, stdout, stderr) = sinkhost(&["inspect", plugin("file").to_str().expect("utf8")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("sinkhost:sink"), "{stdout}");
    assert!(stdout.contains("wasi:filesystem"), "{stdout}");
}
