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
