//! The plugin manifest end to end with the real `sinkhost` binary and the
//! first-party plugins as `plugins/build.sh` builds them (manifest
//! embedded): `inspect` shows it, `validate` checks the `sink` section
//! against its config schema, a plugin whose imports need a grant its
//! manifest does not declare is refused, a grant the manifest does not ask
//! for is a warning, and an embedded signature verifies and breaks when a
//! byte outside its section changes.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use sinkhost::manifest::{section, MANIFEST_SECTION};
use sinkhost_e2e::*;

/// A config that `validate` can check without a NATS server.
fn offline_config(dir: &Path, plugin_path: &Path, sink: Value) -> Value {
    json!({
        "nats": {"url": "nats://127.0.0.1:1", "stream": "S", "consumer": "c", "subject": "s.>"},
        "plugin": {
            "path": plugin_path,
            "grants": {"files": [{"host_path": dir.join("out"), "guest_path": "/out", "access": "read-write"}]},
            "cache_dir": dir.join("cache"),
        },
        "sink": sink
    })
}

fn validate(config: &Path) -> (i32, String, String) {
    sinkhost(&["validate", config.to_str().expect("utf-8")])
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn inspect_and_show_print_the_embedded_manifest() {
    let file = plugin("file");
    let (code, stdout, stderr) = sinkhost(&["inspect", arg(&file)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for needle in [
        "manifest:  file 0.1.0 by sinkhost project",
        "license:       Apache-2.0",
        "wit world:     sinkhost:sink/plugin@0.1.0",
        "files (required): creates and writes the record files",
        "config schema: present",
    ] {
        assert!(stdout.contains(needle), "inspect should show {needle:?}:\n{stdout}");
    }

    let (code, stdout, stderr) = sinkhost(&["inspect", "--json", arg(&file)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let inspection: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(inspection["manifest"]["name"], "file");
    assert_eq!(inspection["manifest"]["grants"][0]["kind"], "files");
    assert_eq!(inspection["manifest"]["grants"][0]["required"], true);
    assert!(inspection["manifest"]["config_schema"].is_object(), "{stdout}");
    assert!(inspection["manifest_problem"].is_null(), "{stdout}");

    let (code, stdout, stderr) = sinkhost(&["plugin", "manifest", "show", "--json", arg(&file)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let shown: Value = serde_json::from_str(&stdout).expect("json");
    let source: Value =
        serde_json::from_slice(&std::fs::read(repo_root().join("plugins/file/manifest.json")).expect("manifest.json"))
            .expect("json");
    assert_eq!(shown, source, "the embedded manifest is plugins/file/manifest.json");

    let (code, stdout, _) = sinkhost(&["inspect", arg(&test_plugin("chaos"))]);
    assert_eq!(code, 0);
    assert!(stdout.contains("manifest:  none"), "{stdout}");
}

#[test]
fn validate_refuses_a_sink_section_its_schema_rejects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (json!({"directory": "/out", "fsync": "yes"}), "/sink/fsync"),
        (json!({"directory": "/out", "layout": "columns"}), "/sink/layout"),
        (json!({"fsync": false}), "directory"),
        (json!({"directory": "/out", "layuot": "segment"}), "layuot"),
    ];
    for (sink, field) in cases {
        let config = write_config(dir.path(), &offline_config(dir.path(), &plugin("file"), sink.clone()));
        let (code, stdout, stderr) = validate(&config);
        assert_ne!(code, 0, "{sink} must be refused: {stdout}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.contains("does not match the config schema in its manifest") && last.contains(field),
            "{sink}: the error names {field:?}: {stderr}"
        );
        assert!(!last.contains("rejected its `sink`"), "refused before init: {last}");
    }
    let config = write_config(dir.path(), &offline_config(dir.path(), &plugin("file"), json!({"directory": "/out", "fsync": "yes"})));
    let (code, _, stderr) = sinkhost(&["run", arg(&config)]);
    assert_ne!(code, 0, "run checks the schema at start too");
    assert!(stderr.contains("/sink/fsync"), "{stderr}");

    let secret = json!({"directory": "/out", "extension": {"password": "hunter2"}});
    let config = write_config(dir.path(), &offline_config(dir.path(), &plugin("file"), secret));
    let (code, _, stderr) = validate(&config);
    assert_ne!(code, 0);
    assert!(stderr.contains("/sink/extension") && !stderr.contains("hunter2"), "values are never quoted: {stderr}");

    let config = write_config(dir.path(), &offline_config(dir.path(), &plugin("file"), json!({"directory": "/out"})));
    let (code, stdout, stderr) = validate(&config);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stdout.contains("warning:"), "a matching plugin and config warn about nothing: {stdout}");
}

/// `bytes` with `manifest` as its manifest, bypassing the checks of
/// `sinkhost plugin manifest embed` (as a hostile publisher would).
fn with_manifest(bytes: &[u8], manifest: &Value) -> Vec<u8> {
    section::replace_custom(bytes, MANIFEST_SECTION, manifest.to_string().as_bytes()).expect("embed")
}

#[test]
fn a_plugin_whose_manifest_leaves_out_a_grant_its_imports_need_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(repo_root().join("plugins/http/manifest.json")).expect("manifest.json"))
            .expect("json");
    manifest["grants"] = json!([]);
    let manifest_path = dir.path().join("manifest.json");
    std::fs::write(&manifest_path, manifest.to_string()).expect("write manifest");
    let copy = dir.path().join("http.wasm");
    std::fs::copy(plugin("http"), &copy).expect("copy");

    let (code, stdout, stderr) =
        sinkhost(&["plugin", "manifest", "embed", "--manifest", arg(&manifest_path), arg(&copy)]);
    assert_ne!(code, 0, "embed checks the manifest against the imports: {stdout}");
    assert!(stderr.contains("imports `wasi:http/") && stderr.contains("declares no `http` grant"), "{stderr}");

    std::fs::write(&copy, with_manifest(&std::fs::read(plugin("http")).expect("read"), &manifest)).expect("write");
    let mut config = offline_config(dir.path(), &copy, json!({"url": "http://127.0.0.1:9/in"}));
    set(&mut config, "plugin.grants.http", json!([{"origin": "http://127.0.0.1:9"}]));
    let (code, _, stderr) = validate(&write_config(dir.path(), &config));
    assert_ne!(code, 0, "refused on load");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("http.wasm") && last.contains("imports `wasi:http/") && last.contains("its manifest declares no `http` grant"),
        "{stderr}"
    );

    manifest["grants"] = json!([{"kind": "http", "reason": "posts to the receiver"}]);
    manifest["wit_world"] = json!("sinkhost:sink/plugin@0.1.7");
    std::fs::write(&copy, with_manifest(&std::fs::read(plugin("http")).expect("read"), &manifest)).expect("write");
    let (code, _, stderr) = validate(&write_config(dir.path(), &config));
    assert_ne!(code, 0, "a wrong world is refused");
    assert!(stderr.contains("declares wit_world `sinkhost:sink/plugin@0.1.7`"), "{stderr}");

    manifest["wit_world"] = json!("sinkhost:sink/plugin@0.1.0");
    std::fs::write(&copy, with_manifest(&std::fs::read(plugin("http")).expect("read"), &manifest)).expect("write");
    set(&mut config, "plugin.grants.http", json!([]));
    let (code, _, stderr) = validate(&write_config(dir.path(), &config));
    assert_ne!(code, 0, "a required grant not given is refused");
    assert!(stderr.contains("plugin.grants.http"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_the_manifest_does_not_declare_is_a_warning_and_the_plugin_runs() {
    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream("MANIFEST", &["manifest.>"]).await.expect("stream");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let mut config = base_config(&server, "MANIFEST", "manifest.>", &plugin("file"), &out, json!({"directory": "/out", "fsync": false}));
    set(&mut config, "plugin.grants.http", json!([{"origin": "http://127.0.0.1:9"}]));
    let path = write_config(dir.path(), &config);

    let (code, stdout, stderr) = validate(&path);
    assert_eq!(code, 0, "a warning, not an error: {stdout}{stderr}");
    assert!(
        stdout.contains("warning: plugin.grants.http is given, but the manifest of plugin `file` declares no `http` grant"),
        "{stdout}"
    );

    js.publish_json("manifest.events", 3).await.expect("publish");
    let log_path = dir.path().join("sinkhost.log");
    let mut host = Host::start(&path, &log_path).expect("start");
    let drained = wait_until(Duration::from_secs(60), || async {
        matches!(js.consumer_backlog("MANIFEST", "sinkhost").await, Ok((0, 0)))
    })
    .await;
    assert!(drained, "not drained:\n{}", host.log());
    assert_eq!(files_below(&out).len(), 3, "{}", host.log());
    assert!(host.log().contains("declares no `http` grant"), "the warning is logged:\n{}", host.log());
    host.terminate(Duration::from_secs(20));
}

fn keygen(dir: &Path) -> (std::path::PathBuf, String) {
    let key = dir.join("acme.key");
    let (code, stdout, stderr) = sinkhost(&["plugin", "keygen", "--out", arg(&key), "--key-id", "acme"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let public = stdout
        .lines()
        .find_map(|line| line.strip_prefix("public_key_b64: "))
        .expect("public key printed")
        .to_string();
    (key, public)
}

#[test]
fn an_embedded_signature_verifies_and_breaks_when_a_byte_outside_it_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(dir.path());
    let embedded = dir.path().join("file.wasm");
    let detached = dir.path().join("detached.wasm");
    std::fs::copy(plugin("file"), &embedded).expect("copy");
    std::fs::copy(plugin("file"), &detached).expect("copy");
    let original = std::fs::read(&embedded).expect("read");

    let (code, stdout, stderr) = sinkhost(&["plugin", "sign", "--embed", "--key", arg(&key), arg(&embedded)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!dir.path().join("file.wasm.sig").exists(), "no detached file with --embed");
    let signed = std::fs::read(&embedded).expect("read");
    assert!(signed.len() > original.len() && signed.starts_with(&original), "the section is appended");

    let (code, stdout, stderr) = sinkhost(&["plugin", "sign", "--key", arg(&key), arg(&detached)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let detached_document: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("detached.wasm.sig")).expect("sig")).expect("json");
    let embedded_document: Value = serde_json::from_slice(
        section::read_custom(&signed, "sinkhost-signature").expect("sections").expect("embedded signature"),
    )
    .expect("json");
    assert_eq!(embedded_document["digest"], detached_document["digest"], "the digest leaves the signature section out");

    let (code, stdout, stderr) = sinkhost(&["plugin", "verify", "--public-key-b64", &public, "--key-id", "acme", arg(&embedded)]);
    assert_eq!(code, 0, "{stdout}{stderr}");

    let mut config = offline_config(dir.path(), &embedded, json!({"directory": "/out"}));
    set(&mut config, "trust", json!({"publishers": [{"key_id": "acme", "public_key_b64": public}]}));
    let config_path = write_config(dir.path(), &config);
    let (code, stdout, stderr) = validate(&config_path);
    assert_eq!(code, 0, "embedded signature accepted by the trust policy: {stdout}{stderr}");

    let mut tampered = signed.clone();
    let middle = original.len() / 2;
    tampered[middle] ^= 0x01;
    std::fs::write(&embedded, &tampered).expect("write");
    let (code, _, stderr) = validate(&config_path);
    assert_ne!(code, 0, "a flipped byte outside the section is refused");
    assert!(stderr.contains("does not match its signature"), "{stderr}");

    std::fs::write(&embedded, &original).expect("write");
    let (code, _, stderr) = validate(&config_path);
    assert_ne!(code, 0, "stripped signature");
    assert!(stderr.contains("is not signed"), "{stderr}");
}
