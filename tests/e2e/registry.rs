//! Plugins through a real OCI registry (Debian's `docker-registry`, the
//! reference distribution server, on 127.0.0.1): push and pull with the
//! real `sinkhost` binary, the trust policy applied before anything is
//! written, a blob tampered with in the registry's storage refused, and
//! `sinkhost run --plugin oci://...` delivering through the digest cache.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use sinkhost_e2e::registry::Registry;
use sinkhost_e2e::*;

const STREAM: &str = "EVENTS";

fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `sinkhost plugin keygen`: (key file, public key).

/// A copy of the file plugin in `dir`, signed with `key` (target/plugins is
/// never modified).
fn signed_file_plugin(dir: &Path, key: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("plugin dir");
    let plugin_path = dir.join("file.wasm");
    std::fs::copy(plugin("file"), &plugin_path).expect("copy plugin");
    sign_for(key, &plugin_path, "sinks/file");
    plugin_path
}

/// `sinkhost plugin sign --repository REPOSITORY`.
fn sign_for(key: &Path, plugin_path: &Path, repository: &str) {
    let (code, stdout, stderr) = sinkhost(&[
        "plugin",
        "sign",
        "--key",
        utf8(key),
        "--repository",
        repository,
        utf8(plugin_path),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

/// A copy of the file plugin in `dir` whose embedded manifest says
/// `version`, signed with `key` for `sinks/file`.
fn file_plugin_version(dir: &Path, key: &Path, version: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("plugin dir");
    let source = plugin("file");
    let (code, stdout, stderr) = sinkhost(&["plugin", "manifest", "show", "--json", utf8(&source)]);
    assert_eq!(code, 0, "{stderr}");
    let mut manifest: Value = serde_json::from_str(&stdout).expect("manifest JSON");
    manifest["version"] = json!(version);
    let manifest_path = dir.join("manifest.json");
    std::fs::write(&manifest_path, manifest.to_string()).expect("write manifest");
    let plugin_path = dir.join("file.wasm");
    let (code, stdout, stderr) = sinkhost(&[
        "plugin",
        "manifest",
        "embed",
        "--manifest",
        utf8(&manifest_path),
        "--out",
        utf8(&plugin_path),
        utf8(&source),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    sign_for(key, &plugin_path, "sinks/file");
    plugin_path
}

/// The `pin it with oci://...@sha256:...` line `push` prints.
fn pinned_reference(push_output: &str) -> String {
    push_output
        .lines()
        .find_map(|line| line.strip_prefix("pin it with "))
        .expect("pinned reference printed")
        .to_string()
}

/// The component digest a signature document names.
fn signed_digest(plugin_path: &Path) -> String {
    let text =
        std::fs::read_to_string(format!("{}.sig", plugin_path.display())).expect("signature");
    let document: Value = serde_json::from_str(&text).expect("json");
    document["digest"].as_str().expect("digest").to_string()
}

/// A config that only carries a trust policy for `pull --config`.
fn trust_config(dir: &Path, key_id: &str, public: &str) -> PathBuf {
    let config = json!({
        "nats": {"url": "nats://127.0.0.1:4222", "stream": STREAM, "consumer": "sinkhost", "subject": "events.>"},
        "plugin": {"path": "unused.wasm"},
        "sink": {},
        "trust": {"publishers": [{"key_id": key_id, "public_key_b64": public}]},
    });
    let path = dir.join("trust.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("json")).expect("write config");
    path
}

fn push(plugin_path: &Path, reference: &str) -> (i32, String) {
    let (code, stdout, stderr) = sinkhost(&["plugin", "push", utf8(plugin_path), reference]);
    (code, format!("{stdout}{stderr}"))
}

fn pull(reference: &str, out: &Path, config: Option<&Path>) -> (i32, String, String) {
    let mut args = vec!["plugin", "pull", reference, "--out", utf8(out)];
    if let Some(config) = config {
        args.extend(["--config", utf8(config)]);
    }
    sinkhost(&args)
}

#[test]
fn push_and_pull_round_trip_verified_by_the_trust_policy() {
    let registry = Registry::start().expect("docker-registry");
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(dir.path(), "acme.key", "acme-2026");
    let reference = registry.reference("sinks/file:1.0");

    // Unsigned: refused before anything is uploaded.
    let unsigned = dir.path().join("unsigned");
    std::fs::create_dir_all(&unsigned).expect("dir");
    std::fs::copy(plugin("file"), unsigned.join("file.wasm")).expect("copy");
    let (code, output) = push(&unsigned.join("file.wasm"), &reference);
    assert_ne!(code, 0);
    assert!(
        output.contains("refusing to push") && output.contains("is not signed"),
        "unsigned: {output}"
    );

    // Changed after signing: refused.
    let plugin_path = signed_file_plugin(&dir.path().join("publisher"), &key);
    let original = std::fs::read(&plugin_path).expect("read");
    let mut changed = original.clone();
    let middle = changed.len() / 2;
    changed[middle] ^= 0x01;
    std::fs::write(&plugin_path, &changed).expect("change");
    let (code, output) = push(&plugin_path, &reference);
    assert_ne!(code, 0);
    assert!(
        output.contains("changed after signing"),
        "changed: {output}"
    );
    std::fs::write(&plugin_path, &original).expect("restore");

    let (code, output) = push(&plugin_path, &reference);
    assert_eq!(code, 0, "push: {output}\n{}", registry.log());
    assert!(output.contains("signed by acme-2026"), "{output}");
    let pinned = output
        .lines()
        .find_map(|line| line.strip_prefix("pin it with "))
        .expect("pinned reference printed")
        .to_string();
    assert!(pinned.contains("@sha256:"), "{pinned}");

    // Pulled under a trust policy: the same bytes and signature document.
    let config = trust_config(dir.path(), "acme-2026", &public);
    let out = dir.path().join("installed");
    let (code, stdout, stderr) = pull(&reference, &out, Some(&config));
    assert_eq!(code, 0, "pull: {stdout}{stderr}");
    assert!(
        stdout.contains("signed by trusted publisher acme-2026"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(out.join("file.wasm")).expect("pulled plugin"),
        original
    );
    assert_eq!(
        std::fs::read(out.join("file.wasm.sig")).expect("pulled signature"),
        std::fs::read(dir.path().join("publisher/file.wasm.sig")).expect("signature")
    );
    let (code, stdout, stderr) = sinkhost(&[
        "plugin",
        "verify",
        "--config",
        utf8(&config),
        utf8(&out.join("file.wasm")),
    ]);
    assert_eq!(
        code, 0,
        "the pulled plugin verifies where it was written: {stdout}{stderr}"
    );

    // By the pinned manifest digest, and without a policy (said loudly).
    let pinned_out = dir.path().join("pinned");
    let (code, stdout, stderr) = pull(&pinned, &pinned_out, None);
    assert_eq!(code, 0, "pull by digest: {stdout}{stderr}");
    assert!(
        stderr.contains("publisher (key `acme-2026`) was NOT verified"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(pinned_out.join("file.wasm")).expect("pulled plugin"),
        original
    );

    // A reference that is not one, and one that names nothing.
    let (code, _, stderr) = pull(
        &format!("oci://{}/sinks/file", registry.address),
        &out,
        None,
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("no tag or digest"), "{stderr}");
    let (code, _, stderr) = pull(
        &registry.reference("sinks/absent:1"),
        &dir.path().join("absent"),
        None,
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("manifest unknown"), "{stderr}");
    assert!(!dir.path().join("absent").exists());
}

#[test]
fn pull_refuses_a_plugin_signed_by_an_unknown_key_and_writes_nothing() {
    let registry = Registry::start().expect("docker-registry");
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, public) = keygen(dir.path(), "acme.key", "acme-2026");
    let (stranger, _) = keygen(dir.path(), "stranger.key", "stranger");
    let plugin_path = signed_file_plugin(&dir.path().join("publisher"), &stranger);
    let reference = registry.reference("sinks/file:1.0");
    let (code, output) = push(&plugin_path, &reference);
    assert_eq!(code, 0, "push: {output}");

    let out = dir.path().join("installed");
    let (code, stdout, stderr) = pull(
        &reference,
        &out,
        Some(&trust_config(dir.path(), "acme-2026", &public)),
    );
    assert_ne!(code, 0, "{stdout}");
    assert!(
        stderr.contains("signed by key `stranger`, which is not among trust.publishers"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written: {:?}", files_below(&out));
}

#[test]
fn a_tampered_blob_in_the_registry_is_refused_on_pull() {
    let registry = Registry::start().expect("docker-registry");
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(dir.path(), "acme.key", "acme-2026");
    let plugin_path = signed_file_plugin(&dir.path().join("publisher"), &key);
    let reference = registry.reference("sinks/file:1.0");
    let (code, output) = push(&plugin_path, &reference);
    assert_eq!(code, 0, "push: {output}");

    let digest = signed_digest(&plugin_path);
    let blob = registry.blob_path(&digest);
    let mut bytes = std::fs::read(&blob).unwrap_or_else(|err| panic!("{}: {err}", blob.display()));
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&blob, &bytes).expect("tamper with the stored blob");

    let out = dir.path().join("installed");
    let config = trust_config(dir.path(), "acme-2026", &public);
    for config in [Some(config.as_path()), None] {
        let (code, stdout, stderr) = pull(&reference, &out, config);
        assert_ne!(code, 0, "{stdout}");
        assert!(
            stderr.contains("the component blob does not match its digest")
                && stderr.contains(&digest)
                && stderr.contains("tampered"),
            "{stderr}"
        );
        assert!(!out.exists(), "nothing written: {:?}", files_below(&out));
    }

    // `validate --plugin oci://...` refuses it too, and caches nothing.
    let mut full: Value =
        serde_json::from_slice(&std::fs::read(&config).expect("config")).expect("json");
    set(
        &mut full,
        "plugin.cache_dir",
        json!(dir.path().join("cache")),
    );
    set(&mut full, "sink", json!({"directory": "/out"}));
    let config_path = write_config(dir.path(), &full);
    let (code, stdout, stderr) =
        sinkhost(&["validate", "--plugin", &reference, utf8(&config_path)]);
    assert_ne!(code, 0, "{stdout}");
    assert!(stderr.contains("does not match its digest"), "{stderr}");
    assert!(files_below(&dir.path().join("cache")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_from_the_registry_delivers_and_a_second_run_uses_the_verified_cache() {
    let registry = Registry::start().expect("docker-registry");
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(dir.path(), "acme.key", "acme-2026");
    let plugin_path = signed_file_plugin(&dir.path().join("publisher"), &key);
    let reference = registry.reference("sinks/file:1.0");
    let (code, output) = push(&plugin_path, &reference);
    assert_eq!(code, 0, "push: {output}");
    let digest = signed_digest(&plugin_path);

    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["events.>"])
        .await
        .expect("stream");
    let out = dir.path().join("out");
    let mut config = base_config(
        &server,
        STREAM,
        "events.>",
        Path::new(&reference),
        &out,
        json!({"directory": "/out"}),
    );
    set(
        &mut config,
        "trust",
        json!({"publishers": [{"key_id": "acme-2026", "public_key_b64": public}]}),
    );
    let config_path = write_config(dir.path(), &config);
    let cached = dir
        .path()
        .join("cache/oci/sha256")
        .join(format!("{}.wasm", digest.trim_start_matches("sha256:")));

    let drained = || async { matches!(js.consumer_backlog(STREAM, "sinkhost").await, Ok((0, 0))) };
    for (round, count, expected_line) in [
        (1, 20, "plugin downloaded into the OCI cache"),
        (2, 10, "plugin taken from the OCI cache"),
    ] {
        js.publish_json(&format!("events.round{round}"), count)
            .await
            .expect("publish");
        let mut host = Host::start(&config_path, &dir.path().join(format!("run{round}.log")))
            .expect("start sinkhost");
        assert!(
            wait_until(Duration::from_secs(60), drained).await,
            "round {round} not drained:\n{}",
            host.log()
        );
        assert_eq!(
            host.terminate(Duration::from_secs(20)),
            Some(0),
            "{}",
            host.log()
        );
        let log = host.log();
        assert!(log.contains(expected_line), "round {round}: {log}");
        assert!(
            log.contains("plugin accepted by the trust policy"),
            "round {round}: {log}"
        );
    }
    assert_eq!(files_below(&out).len(), 30, "one record per message");
    assert_eq!(
        std::fs::read(&cached).expect("cached plugin"),
        std::fs::read(&plugin_path).expect("plugin")
    );
    assert!(
        cached.with_extension("wasm.sig").exists(),
        "its signature is cached beside it"
    );

    // The cache is trusted no more than the registry: a changed cached copy
    // is noticed (sha256 recomputed) and replaced by the registry's.
    let mut bytes = std::fs::read(&cached).expect("cached");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&cached, &bytes).expect("tamper with the cache");
    let (code, stdout, stderr) = sinkhost(&["validate", utf8(&config_path)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains("the cached copy does not match the manifest"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&cached).expect("cached plugin"),
        std::fs::read(&plugin_path).expect("plugin")
    );
}

/// A signature binds the repository: a plugin signed for `sinks/file` is
/// not pushed to, nor served from, another repository; one signed without a
/// repository is not pushed at all.
#[test]
fn a_signature_for_one_repository_is_refused_for_another() {
    let registry = Registry::start().expect("docker-registry");
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(dir.path(), "acme.key", "acme-2026");
    let plugin_path = signed_file_plugin(&dir.path().join("publisher"), &key);
    let (code, output) = push(&plugin_path, &registry.reference("sinks/http:1.0"));
    assert_ne!(code, 0);
    assert!(
        output.contains("refusing to push")
            && output.contains("repository `sinks/file`")
            && output.contains("`sinks/http`"),
        "{output}"
    );

    let unbound = dir.path().join("unbound");
    std::fs::create_dir_all(&unbound).expect("dir");
    std::fs::copy(plugin("file"), unbound.join("file.wasm")).expect("copy");
    let (code, stdout, stderr) = sinkhost(&[
        "plugin",
        "sign",
        "--key",
        utf8(&key),
        utf8(&unbound.join("file.wasm")),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, output) = push(
        &unbound.join("file.wasm"),
        &registry.reference("sinks/file:1.0"),
    );
    assert_ne!(code, 0);
    assert!(output.contains("--repository sinks/file"), "{output}");

    // A malicious registry serving the sinks/file artifact under sinks/http:
    // the same manifest and blobs, copied by the registry itself.
    let (code, output) = push(&plugin_path, &registry.reference("sinks/file:1.0"));
    assert_eq!(code, 0, "{output}");
    let storage = registry.storage().join("docker/registry/v2/repositories");
    copy_dir(&storage.join("sinks/file"), &storage.join("sinks/http"));
    let out = dir.path().join("installed");
    let config = trust_config(dir.path(), "acme-2026", &public);
    let (code, stdout, stderr) = pull(&registry.reference("sinks/http:1.0"), &out, Some(&config));
    assert_ne!(code, 0, "{stdout}");
    assert!(
        stderr.contains("served from repository `sinks/http`"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written: {:?}", files_below(&out));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Rollback protection against the real registry: after version 2.0.0 ran
/// from `sinks/file`, version 1.0.0 pushed under a tag is refused (it never
/// runs: its messages stay unconsumed, it is not even cached); pinned by
/// digest it runs, and the record still says 2.0.0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_version_from_the_same_repository_runs_only_pinned_by_digest() {
    let registry = Registry::start().expect("docker-registry");
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(dir.path(), "acme.key", "acme-2026");
    let v2 = file_plugin_version(&dir.path().join("v2"), &key, "2.0.0");
    let v1 = file_plugin_version(&dir.path().join("v1"), &key, "1.0.0");
    let (code, output) = push(&v2, &registry.reference("sinks/file:2"));
    assert_eq!(code, 0, "push v2: {output}");

    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["events.>"])
        .await
        .expect("stream");
    let out = dir.path().join("out");
    let config_for = |reference: &str| {
        let mut config = base_config(
            &server,
            STREAM,
            "events.>",
            Path::new(reference),
            &out,
            json!({"directory": "/out"}),
        );
        set(
            &mut config,
            "trust",
            json!({"publishers": [{"key_id": "acme-2026", "public_key_b64": public}]}),
        );
        write_config(dir.path(), &config)
    };
    let drained = || async { matches!(js.consumer_backlog(STREAM, "sinkhost").await, Ok((0, 0))) };

    // v2 by tag: runs.
    js.publish_json("events.v2", 5).await.expect("publish");
    let mut host = Host::start(
        &config_for(&registry.reference("sinks/file:2")),
        &dir.path().join("v2.log"),
    )
    .expect("start");
    assert!(
        wait_until(Duration::from_secs(60), drained).await,
        "v2 not drained:\n{}",
        host.log()
    );
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );
    assert_eq!(files_below(&out).len(), 5);
    let record = dir.path().join("cache/oci/versions.json");
    let recorded = std::fs::read_to_string(&record).expect("version record written");
    assert!(recorded.contains("2.0.0"), "{recorded}");

    // v1 pushed under a tag, run by tag: refused before it runs.
    let (code, output) = push(&v1, &registry.reference("sinks/file:1"));
    assert_eq!(code, 0, "push v1: {output}");
    let pinned = pinned_reference(&output);
    js.publish_json("events.v1", 5).await.expect("publish");
    let (code, stdout, stderr) = sinkhost(&[
        "run",
        utf8(&config_for(&registry.reference("sinks/file:1"))),
    ]);
    assert_ne!(code, 0, "{stdout}");
    assert!(
        stderr.contains("it is version 1.0.0, older than version 2.0.0")
            && stderr.contains("pin it by digest")
            && stderr.contains(&pinned),
        "{stderr}"
    );
    // The effect: the rolled-back version never ran (its messages wait,
    // nothing new was written) and it was not even cached.
    assert_eq!(files_below(&out).len(), 5, "v1 wrote records");
    assert!(matches!(
        js.consumer_backlog(STREAM, "sinkhost").await,
        Ok((5, 0))
    ));
    let v1_digest = signed_digest(&v1);
    let v1_cached = dir
        .path()
        .join("cache/oci/sha256")
        .join(format!("{}.wasm", v1_digest.trim_start_matches("sha256:")));
    assert!(!v1_cached.exists(), "the refused version was cached");

    // Pinned by digest: the operator's explicit choice runs.
    let mut host = Host::start(&config_for(&pinned), &dir.path().join("v1.log")).expect("start");
    assert!(
        wait_until(Duration::from_secs(60), drained).await,
        "pinned v1 not drained:\n{}",
        host.log()
    );
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );
    assert_eq!(files_below(&out).len(), 10);
    assert!(
        host.log()
            .contains("allowed because the reference pins its digest"),
        "{}",
        host.log()
    );
    assert!(v1_cached.exists(), "the pinned version ran from the cache");
    let recorded = std::fs::read_to_string(&record).expect("version record");
    assert!(
        recorded.contains("2.0.0") && !recorded.contains("1.0.0"),
        "the pinned downgrade does not lower the record: {recorded}"
    );
}
