//! Plugin signatures end to end with the real `sinkhost` binary: keygen,
//! sign, verify, and `validate` under a trust policy refusing an unsigned,
//! tampered, unknown-key or forged plugin, each with its own message.

use std::path::Path;

use serde_json::{json, Value};
use sinkhost_e2e::*;

fn validate(config: &Path) -> (i32, String) {
    let (code, stdout, stderr) = sinkhost(&["validate", config.to_str().expect("utf-8")]);
    (code, format!("{stdout}{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_plugins_signed_by_a_trusted_publisher_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin_path = dir.path().join("file.wasm");
    std::fs::copy(plugin("file"), &plugin_path).expect("copy plugin");
    let (key, public) = keygen(dir.path(), "acme.key", "acme-2026");
    let (_, stranger_public) = keygen(dir.path(), "stranger.key", "acme-2026-b");
    let (forger_key, _) = keygen(dir.path(), "forger.key", "acme-2026");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the private key is private");
    }
    let (code, _, stderr) = sinkhost(&["plugin", "keygen", "--out", key.to_str().expect("utf-8")]);
    assert_ne!(code, 0, "an existing key file is never overwritten");
    assert!(stderr.contains("must not exist"), "{stderr}");

    let server = NatsServer::start().expect("nats-server");
    let mut config: Value = base_config(
        &server,
        "S",
        "s.>",
        &plugin_path,
        &dir.path().join("out"),
        json!({"directory": "/out"}),
    );
    set(
        &mut config,
        "trust",
        json!({"publishers": [{"key_id": "acme-2026", "public_key_b64": public}]}),
    );
    let config_path = write_config(dir.path(), &config);

    let (code, output) = validate(&config_path);
    assert_ne!(code, 0);
    assert!(
        output.contains("is not signed") && output.contains("file.wasm.sig"),
        "unsigned: {output}"
    );

    let plugin_arg = plugin_path.to_str().expect("utf-8");
    let (code, stdout, stderr) = sinkhost(&[
        "plugin",
        "sign",
        "--key",
        key.to_str().expect("utf-8"),
        plugin_arg,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, output) = validate(&config_path);
    assert_eq!(code, 0, "signed by a trusted key: {output}");
    let (code, stdout, stderr) = sinkhost(&[
        "plugin",
        "verify",
        "--public-key-b64",
        &public,
        "--key-id",
        "acme-2026",
        plugin_arg,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("signed by trusted key acme-2026"),
        "{stdout}"
    );
    let (code, stdout, stderr) = sinkhost(&[
        "plugin",
        "verify",
        "--config",
        config_path.to_str().expect("utf-8"),
        plugin_arg,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");

    // One flipped byte.
    let original = std::fs::read(&plugin_path).expect("read");
    let mut tampered = original.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    std::fs::write(&plugin_path, &tampered).expect("tamper");
    let (code, output) = validate(&config_path);
    assert_ne!(code, 0);
    assert!(
        output.contains("does not match its signature"),
        "tampered: {output}"
    );
    std::fs::write(&plugin_path, &original).expect("restore");

    // Signed by a key the policy does not list.
    let mut stranger = config.clone();
    set(
        &mut stranger,
        "trust",
        json!({"publishers": [{"key_id": "acme-2026-b", "public_key_b64": stranger_public}]}),
    );
    let stranger_path = dir.path().join("stranger.json");
    std::fs::write(&stranger_path, serde_json::to_vec(&stranger).expect("json")).expect("write");
    let (code, output) = validate(&stranger_path);
    assert_ne!(code, 0);
    assert!(
        output.contains("not among trust.publishers"),
        "unknown key: {output}"
    );

    // A forger who reuses the trusted key id.
    let (code, _, _) = sinkhost(&[
        "plugin",
        "sign",
        "--key",
        forger_key.to_str().expect("utf-8"),
        plugin_arg,
    ]);
    assert_eq!(code, 0);
    let (code, output) = validate(&config_path);
    assert_ne!(code, 0);
    assert!(
        output.contains("signature by key `acme-2026` is invalid"),
        "forged: {output}"
    );

    // A stripped signature.
    std::fs::remove_file(dir.path().join("file.wasm.sig")).expect("strip");
    let (code, output) = validate(&config_path);
    assert_ne!(code, 0);
    assert!(output.contains("is not signed"), "stripped: {output}");

    // A policy that requires signatures but trusts nobody is a config error.
    set(&mut config, "trust", json!({"publishers": []}));
    let empty = write_config(dir.path(), &config);
    let (code, output) = validate(&empty);
    assert_ne!(code, 0);
    assert!(output.contains("trust.publishers"), "{output}");
}

/// A signature binds the plugin's name and version: moved to another plugin
/// or to another version of the same plugin it does not verify, so the host
/// does not run it; a version 1 (unbound) signature is refused with the
/// migration step; a plugin without a manifest cannot be signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_does_not_carry_over_to_another_plugin_or_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let arg = |path: &Path| path.to_str().expect("utf-8").to_string();
    let (key, public) = keygen(dir.path(), "acme.key", "acme-2026");
    let file_v1 = dir.path().join("file.wasm");
    std::fs::copy(plugin("file"), &file_v1).expect("copy plugin");
    let (code, stdout, stderr) = sinkhost(&["plugin", "sign", "--key", &arg(&key), &arg(&file_v1)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let document: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("file.wasm.sig")).expect("signature"),
    )
    .expect("json");
    assert_eq!(document["schema"], "sinkhost.plugin-signature.v2");
    assert_eq!(document["plugin"], "file");
    assert!(document["version"].as_str().is_some_and(|v| !v.is_empty()));

    let server = NatsServer::start().expect("nats-server");
    let config_for = |plugin_path: &Path, name: &str| {
        let mut config: Value = base_config(
            &server,
            "S",
            "s.>",
            plugin_path,
            &dir.path().join("out"),
            json!({"directory": "/out"}),
        );
        set(
            &mut config,
            "trust",
            json!({"publishers": [{"key_id": "acme-2026", "public_key_b64": public}]}),
        );
        let path = dir.path().join(name);
        std::fs::write(&path, serde_json::to_vec(&config).expect("json")).expect("write");
        path
    };
    let (code, output) = validate(&config_for(&file_v1, "v1.json"));
    assert_eq!(code, 0, "{output}");

    // The same plugin, version 9.9.9: the old signature beside it.
    let (code, stdout, stderr) =
        sinkhost(&["plugin", "manifest", "show", "--json", &arg(&file_v1)]);
    assert_eq!(code, 0, "{stderr}");
    let mut manifest: Value = serde_json::from_str(&stdout).expect("manifest");
    manifest["version"] = json!("9.9.9");
    let manifest_path = dir.path().join("manifest.json");
    std::fs::write(&manifest_path, manifest.to_string()).expect("write");
    let file_v9 = dir.path().join("file-v9.wasm");
    let (code, stdout, stderr) = sinkhost(&[
        "plugin",
        "manifest",
        "embed",
        "--manifest",
        &arg(&manifest_path),
        "--out",
        &arg(&file_v9),
        &arg(&file_v1),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // Another plugin (the HTTP sink) with file's signature beside it.
    let http = dir.path().join("http.wasm");
    std::fs::copy(plugin("http"), &http).expect("copy plugin");
    for moved in [&file_v9, &http] {
        std::fs::copy(
            dir.path().join("file.wasm.sig"),
            format!("{}.sig", moved.display()),
        )
        .expect("copy signature");
        let (code, output) = validate(&config_for(moved, "moved.json"));
        assert_ne!(code, 0, "{}: {output}", moved.display());
        assert!(
            output.contains("does not match its signature"),
            "{}: {output}",
            moved.display()
        );
    }
    // The signature edited to fit version 9.9.9 (its digest and version):
    // the publisher's signature no longer verifies.
    let digest_v9 = {
        let probe = dir.path().join("digest-probe.wasm");
        std::fs::copy(&file_v9, &probe).expect("copy");
        let (code, stdout, stderr) =
            sinkhost(&["plugin", "sign", "--key", &arg(&key), &arg(&probe)]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let probe_document: Value = serde_json::from_slice(
            &std::fs::read(format!("{}.sig", probe.display())).expect("signature"),
        )
        .expect("json");
        probe_document["digest"].clone()
    };
    let mut edited = document.clone();
    edited["digest"] = digest_v9;
    edited["version"] = json!("9.9.9");
    std::fs::write(format!("{}.sig", file_v9.display()), edited.to_string()).expect("write");
    let (code, output) = validate(&config_for(&file_v9, "edited.json"));
    assert_ne!(code, 0);
    assert!(output.contains("is invalid"), "{output}");
    std::fs::copy(
        dir.path().join("file.wasm.sig"),
        format!("{}.sig", file_v9.display()),
    )
    .expect("copy signature");

    // The host refuses to run it, not only `validate`: nothing is delivered.
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream("S", &["s.>"]).await.expect("stream");
    js.publish_json("s.x", 3).await.expect("publish");
    let (code, _, stderr) = sinkhost(&["run", &arg(&config_for(&file_v9, "run.json"))]);
    assert_ne!(code, 0);
    assert!(stderr.contains("does not match its signature"), "{stderr}");
    assert!(
        files_below(&dir.path().join("out")).is_empty(),
        "a plugin with a moved signature ran"
    );

    // A version 1 signature (digest only): refused, with the migration.
    let mut v1 = document.clone();
    if let Some(object) = v1.as_object_mut() {
        object.insert("schema".into(), json!("sinkhost.plugin-signature.v1"));
        object.remove("plugin");
        object.remove("version");
    }
    std::fs::write(dir.path().join("file.wasm.sig"), v1.to_string()).expect("write");
    let (code, output) = validate(&config_for(&file_v1, "v1.json"));
    assert_ne!(code, 0);
    assert!(
        output.contains("sinkhost.plugin-signature.v1") && output.contains("sign the plugin again"),
        "{output}"
    );

    // No manifest, no signature.
    let bare = dir.path().join("bare.wasm");
    std::fs::copy(test_plugin("http-probe"), &bare).expect("copy plugin");
    let (code, stdout, stderr) = sinkhost(&["plugin", "manifest", "show", &arg(&bare)]);
    if code != 0 {
        let (code, _, stderr) = sinkhost(&["plugin", "sign", "--key", &arg(&key), &arg(&bare)]);
        assert_ne!(code, 0);
        assert!(stderr.contains("no embedded manifest"), "{stderr}");
    } else {
        eprintln!("http-probe has a manifest; skipping the bare-plugin case: {stdout}{stderr}");
    }
}
