//! `sinkhost certify` end to end: the real binary runs the suite against its
//! own private nats-server. First-party sinks pass (file on a real
//! directory, PostgreSQL and MariaDB on real servers); a test plugin with one
//! deliberate flaw fails the check named after it; a passed run signs a
//! certification into `PLUGIN.sig` that a trust policy then demands.

use std::path::Path;

use serde_json::{json, Value};
use sinkhost_e2e::certification::*;
use sinkhost_e2e::databases::{MariaDb, Postgres};
use sinkhost_e2e::*;

/// A file-sink certification config: the plugin gets `data` as `/data` and
/// writes below `/data/out`; the verifier counts files; the destination is
/// made unavailable by replacing `out` with a regular file.
fn file_certify_config(work: &Path, plugin: &Path, sink: Value, verifier_pattern: &str) -> Value {
    let data = work.join("data");
    std::fs::create_dir_all(data.join("out")).expect("out dir");
    let out = data.join("out");
    let out = out.display();
    json!({
        "nats": {"url": "nats://127.0.0.1:4222", "stream": "UNUSED", "consumer": "unused", "subject": "unused.>"},
        "delivery": {"batch_size": 100, "batch_timeout_ms": 200, "max_in_flight_batches": 2},
        "plugin": {
            "path": plugin,
            "grants": {"files": [{"host_path": data, "guest_path": "/data", "access": "read-write"}]},
            "limits": {"memory_mb": 64, "call_timeout_ms": 10000}
        },
        "sink": sink,
        "certification": {
            "verifier": ["sh", "-c", format!("find {out} -type f -name '{verifier_pattern}' | wc -l")],
            "record_lookup": ["sh", "-c", format!("grep -rl -- \"$SINKHOST_CERTIFY_MESSAGE_ID\" {out} | head -n 1 | xargs cat")],
            "bad_sink_configs": [{"directory": "/data/out", "no_such_option": true}],
            "unavailable": {
                "break_command": ["sh", "-c", format!("mv {out} {out}.away && touch {out}")],
                "repair_command": ["sh", "-c", format!("rm -f {out} && mv {out}.away {out}")]
            },
            "messages": 1000,
            "throughput_floor_msgs_per_s": 100
        }
    })
}

/// Runs `sinkhost certify`; (exit code, output, JSON report).
fn certify(
    work: &Path,
    config: &Value,
    plugin: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, Value) {
    let config_path = work.join("certify.json");
    std::fs::write(
        &config_path,
        serde_json::to_vec_pretty(config).expect("json"),
    )
    .expect("write config");
    let report_path = work.join("report.json");
    let _ = std::fs::remove_file(&report_path);
    let mut args = vec![
        "certify",
        "--config",
        config_path.to_str().expect("utf-8"),
        "--report-json",
        report_path.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    args.push(plugin.to_str().expect("utf-8"));
    let (code, stdout, stderr) = sinkhost_with_env(&args, env);
    let report = std::fs::read(&report_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null);
    (code, format!("{stdout}{stderr}"), report)
}

#[test]
fn the_file_sink_is_certified_and_a_trust_policy_then_demands_the_certification() {
    let work = tempfile::tempdir().expect("tempdir");
    let plugin_path = work.path().join("file.wasm");
    std::fs::copy(plugin("file"), &plugin_path).expect("copy plugin");
    let (publisher_key, publisher_public) = keygen(work.path(), "acme.key", "acme");
    let (certifier_key, certifier_public) = keygen(work.path(), "lab.key", "lab");
    let (_, stranger_public) = keygen(work.path(), "other-lab.key", "other-lab");
    let plugin_arg = plugin_path.to_str().expect("utf-8");
    let (code, stdout, stderr) = sinkhost(&[
        "plugin",
        "sign",
        "--key",
        publisher_key.to_str().expect("utf-8"),
        plugin_arg,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");

    let config = file_certify_config(
        work.path(),
        &plugin_path,
        json!({"directory": "/data/out", "fsync": true}),
        "*.json",
    );
    let (code, output, report) = certify(
        work.path(),
        &config,
        &plugin_path,
        &["--certifier-key", certifier_key.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(code, 0, "the file sink passes:\n{output}");
    assert!(output.contains("result: PASSED"), "{output}");
    assert_eq!(report["passed"], true);
    for check in CERTIFY_CHECKS {
        assert_eq!(check_status(&report, check), "pass", "{check}:\n{output}");
    }
    assert!(
        report["measurements"]["throughput_msgs_per_s"]
            .as_f64()
            .unwrap_or(0.0)
            > 100.0,
        "{report}"
    );
    let signature: Value =
        serde_json::from_slice(&std::fs::read(work.path().join("file.wasm.sig")).expect("sig"))
            .expect("json");
    assert_eq!(signature["certification"]["key_id"], "lab");
    assert_eq!(signature["certification"]["digest"], report["digest"]);
    assert_eq!(
        signature["certification"]["checks"]
            .as_array()
            .map(Vec::len),
        Some(11)
    );

    // A trust policy that requires a certification by `lab` runs it...
    let server = NatsServer::start().expect("nats-server");
    let mut run_config = base_config(
        &server,
        "S",
        "s.>",
        &plugin_path,
        &work.path().join("run-out"),
        json!({"directory": "/out"}),
    );
    let publishers = json!([{"key_id": "acme", "public_key_b64": publisher_public}]);
    set(
        &mut run_config,
        "trust",
        json!({"publishers": publishers, "require_certification": true, "certifiers": [{"key_id": "lab", "public_key_b64": certifier_public}]}),
    );
    let run_path = write_config(work.path(), &run_config);
    let (code, stdout, stderr) = sinkhost(&["validate", run_path.to_str().expect("utf-8")]);
    assert_eq!(
        code, 0,
        "certified by a trusted certifier:\n{stdout}{stderr}"
    );

    // ...refuses it when only another certifier is trusted...
    set(
        &mut run_config,
        "trust.certifiers",
        json!([{"key_id": "other-lab", "public_key_b64": stranger_public}]),
    );
    let run_path = write_config(work.path(), &run_config);
    let (code, stdout, stderr) = sinkhost(&["validate", run_path.to_str().expect("utf-8")]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("certified by `lab`, which is not among trust.certifiers"),
        "{stdout}{stderr}"
    );

    // ...and refuses a re-signed copy that carries no certification.
    set(
        &mut run_config,
        "trust.certifiers",
        json!([{"key_id": "lab", "public_key_b64": certifier_public}]),
    );
    let run_path = write_config(work.path(), &run_config);
    let (code, stdout, stderr) = sinkhost(&[
        "plugin",
        "sign",
        "--key",
        publisher_key.to_str().expect("utf-8"),
        plugin_arg,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = sinkhost(&["validate", run_path.to_str().expect("utf-8")]);
    assert_ne!(code, 0);
    assert!(stderr.contains("is not certified"), "{stdout}{stderr}");
}

#[test]
fn each_deliberate_flaw_fails_the_check_named_after_it() {
    let cases = [
        ("none", None),
        ("duplicates", Some("redelivery-no-duplicates")),
        ("misclassifies", Some("error-classification")),
        ("probes", Some("stays-inside-grants")),
        ("slow", Some("throughput-floor")),
        // Behaves only when it recognises the names certification used to
        // use: with random names it is caught like `duplicates`.
        ("cheats", Some("redelivery-no-duplicates")),
    ];
    let mut names_per_run: Vec<std::collections::BTreeSet<String>> = Vec::new();
    for (flaw, expected) in cases {
        let work = tempfile::tempdir().expect("tempdir");
        let plugin_path = work.path().join("flawed.wasm");
        embed_test_manifest(work.path(), &plugin_path);
        let (key, _) = keygen(work.path(), "acme.key", "acme");
        let (certifier, _) = keygen(work.path(), "lab.key", "lab");
        let plugin_arg = plugin_path.to_str().expect("utf-8");
        let (code, stdout, stderr) = sinkhost(&[
            "plugin",
            "sign",
            "--key",
            key.to_str().expect("utf-8"),
            plugin_arg,
        ]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let mut config = file_certify_config(
            work.path(),
            &plugin_path,
            json!({"directory": "/data/out", "flaw": flaw}),
            "*.json",
        );
        // The plugin links wasi:http (for its probes): grant it a harmless origin.
        set(
            &mut config,
            "plugin.grants.http",
            json!([{"origin": "http://127.0.0.1:1"}]),
        );
        set(&mut config, "certification.messages", json!(300));
        set(
            &mut config,
            "certification.bad_sink_configs",
            json!([{"directory": "/data/out", "flaw": "nonsense"}]),
        );
        let (code, output, report) = certify(
            work.path(),
            &config,
            &plugin_path,
            &["--certifier-key", certifier.to_str().expect("utf-8")],
            &[],
        );
        names_per_run.push(names_seen(&work.path().join("data/out")));
        let signature = std::fs::read_to_string(work.path().join("flawed.wasm.sig")).expect("sig");
        match expected {
            None => {
                assert_eq!(code, 0, "without a flaw the test sink passes:\n{output}");
                assert!(signature.contains("\"certification\""), "{signature}");
            }
            Some(check) => {
                assert_ne!(code, 0, "{flaw}: must fail\n{output}");
                assert_eq!(
                    failed_checks(&report),
                    vec![check.to_string()],
                    "{flaw}: exactly its check fails\n{output}"
                );
                assert!(output.contains(&format!("FAIL  {check}")), "{output}");
                assert!(
                    output.contains(&format!("failed certification: {check}")),
                    "{output}"
                );
                assert!(
                    !signature.contains("\"certification\""),
                    "a failed run certifies nothing: {signature}"
                );
            }
        }
    }

    // What the plugin saw: stream, consumer and subject names that say
    // nothing about certification and are new on every run.
    for (index, names) in names_per_run.iter().enumerate() {
        assert!(!names.is_empty(), "run {index} recorded no names");
        for name in names {
            assert!(
                !name.to_ascii_lowercase().contains("certif"),
                "run {index}: `{name}` gives certification away"
            );
        }
        for (other_index, other) in names_per_run.iter().enumerate().skip(index + 1) {
            let shared: Vec<&String> = names.intersection(other).collect();
            assert!(
                shared.is_empty(),
                "runs {index} and {other_index} share names: {shared:?}"
            );
        }
    }
}

/// The flawed test plugin with a manifest embedded (a signature binds the
/// manifest's name and version, so only a plugin with one can be signed),
/// written to `plugin_path`.
fn embed_test_manifest(work: &Path, plugin_path: &Path) {
    let manifest = json!({
        "schema": "sinkhost.plugin-manifest.v1",
        "name": "flawed",
        "version": "0.1.0",
        "publisher": "sinkhost tests",
        "description": "A test file sink with one deliberate flaw.",
        "license": "Apache-2.0 OR MIT",
        "wit_world": "sinkhost:sink/plugin@0.1.0",
        "grants": [
            {"kind": "files", "reason": "writes records under the granted directory"},
            {"kind": "http", "reason": "its probes flaw reaches outside its grant"}
        ]
    });
    let manifest_path = work.join("flawed-manifest.json");
    std::fs::write(&manifest_path, manifest.to_string()).expect("write manifest");
    let source = test_plugin("flawed");
    let (code, stdout, stderr) = sinkhost(&[
        "plugin",
        "manifest",
        "embed",
        "--manifest",
        manifest_path.to_str().expect("utf-8"),
        "--out",
        plugin_path.to_str().expect("utf-8"),
        source.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

/// The stream, consumer, subject (first token) and message-id names the
/// flawed sink recorded below `out`.
fn names_seen(out: &Path) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for file in files_below(out) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let Ok(record) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        for field in ["stream", "consumer", "message_id"] {
            if let Some(name) = record[field].as_str() {
                names.insert(format!("{field}:{name}"));
            }
        }
        if let Some(subject) = record["subject"].as_str() {
            let first = subject.split('.').next().unwrap_or(subject);
            names.insert(format!("subject:{first}"));
        }
    }
    names
}

#[test]
fn a_certification_run_with_a_broken_verifier_says_so() {
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = file_certify_config(
        work.path(),
        &plugin("file"),
        json!({"directory": "/data/out"}),
        "*.json",
    );
    set(
        &mut config,
        "certification.verifier",
        json!(["sh", "-c", "echo not-a-number"]),
    );
    let (code, output, report) = certify(work.path(), &config, &plugin("file"), &[], &[]);
    assert_ne!(code, 0);
    assert_eq!(
        check_status(&report, "redelivery-no-duplicates"),
        "fail",
        "{output}"
    );
    assert!(
        output.contains("a verifier must print a record count"),
        "{output}"
    );

    let mut no_section = config.clone();
    no_section
        .as_object_mut()
        .expect("object")
        .remove("certification");
    let (code, output, _) = certify(work.path(), &no_section, &plugin("file"), &[], &[]);
    assert_ne!(code, 0);
    assert!(
        output.contains("has no `certification` section"),
        "{output}"
    );
}

/// The database sinks' certification config: one table, the verifier and
/// the lookup through the database's own client, and "unavailable" as a
/// grant whose URL points at a closed port.
fn sql_certify_config(
    plugin_path: &Path,
    driver: &str,
    query: &dyn Fn(&str) -> Vec<String>,
    lookup_flag: &str,
) -> Value {
    let grant = |variable: &str| {
        json!([{"name": "events", "driver": driver, "url_env": variable, "tables": ["nats_events"],
                "statements": ["insert"], "statement_timeout_ms": 5000, "connect_timeout_ms": 2000}])
    };
    let mut lookup = vec![
        "sh".to_string(),
        "-c".to_string(),
        format!(
            "exec \"$@\" \"{lookup_flag}SELECT subject, message_id, headers_json FROM nats_events WHERE message_id = '$SINKHOST_CERTIFY_MESSAGE_ID'\""
        ),
        "lookup".to_string(),
    ];
    // The client's argv without its statement (psql: `--command=`;
    // mariadb: `-e` stays, the statement follows).
    let mut base = query("");
    base.pop();
    lookup.extend(base);
    json!({
        "nats": {"url": "nats://127.0.0.1:4222", "stream": "UNUSED", "consumer": "unused", "subject": "unused.>"},
        "delivery": {"batch_size": 100, "batch_timeout_ms": 200, "max_in_flight_batches": 2},
        "plugin": {"path": plugin_path, "grants": {"sql": grant("EVENTS_DB_URL")}, "limits": {"memory_mb": 64, "call_timeout_ms": 15000}},
        "sink": {"connection": "events"},
        "certification": {
            "verifier": query("SELECT count(*) FROM nats_events"),
            "record_lookup": lookup,
            "bad_sink_configs": [{"connection": "events", "on_conflict": "explode"}, {"connection": "not-granted", "table": 7}],
            "unavailable": {"grants": {"sql": grant("DOWN_DB_URL")}},
            "messages": 1000,
            "throughput_floor_msgs_per_s": 100
        }
    })
}

fn create_table_sql(dialect: &str) -> String {
    let path = repo_root().join(format!("sdk/sql/sql/{dialect}.sql.in"));
    std::fs::read_to_string(path)
        .expect("table script")
        .replace("{table}", "nats_events")
}

fn closed_port_url(url: &str, port: u16) -> String {
    url.replace(&format!(":{port}/"), &format!(":{}/", free_port()))
}

/// Certifies a database sink whose table exists: "unavailable" is the same
/// URL on a closed port. All 11 checks must pass.
fn certify_database_sink(name: &str, config: &Value, url: &str, port: u16) {
    let work = tempfile::tempdir().expect("tempdir");
    let down = closed_port_url(url, port);
    assert_ne!(down, url);
    let (code, output, report) = certify(
        work.path(),
        config,
        &plugin(name),
        &[],
        &[("EVENTS_DB_URL", url), ("DOWN_DB_URL", &down)],
    );
    assert_eq!(code, 0, "the {name} sink passes:\n{output}");
    for check in CERTIFY_CHECKS {
        assert_eq!(check_status(&report, check), "pass", "{check}:\n{output}");
    }
    assert!(
        !output.contains(sinkhost_e2e::databases::DB_PASSWORD),
        "the password never reaches the output"
    );
}

#[test]
fn the_postgres_sink_is_certified_against_a_real_server() {
    let db = Postgres::start().expect("postgres");
    db.execute(&create_table_sql("postgres")).expect("table");
    let query = |sql: &str| db.query_command(sql);
    let config = sql_certify_config(&plugin("postgres"), "postgres", &query, "--command=");
    certify_database_sink("postgres", &config, &db.url(), db.port());
}

#[test]
fn the_mysql_sink_is_certified_against_a_real_mariadb() {
    let db = MariaDb::start().expect("mariadb");
    db.execute(&create_table_sql("mysql")).expect("table");
    let query = |sql: &str| db.query_command(sql).expect("mariadb client");
    let config = sql_certify_config(&plugin("mysql"), "mysql", &query, "");
    certify_database_sink("mysql", &config, &db.url(), db.port());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_sink_is_certified_against_a_receiver_that_drops_duplicates() {
    let receiver = sinkhost_e2e::http_receiver::HttpReceiver::start()
        .await
        .expect("receiver");
    let work = tempfile::tempdir().expect("tempdir");
    let received = work.path().join("received");
    std::fs::create_dir_all(&received).expect("dir");
    receiver.store_by_idempotency_key(&received);
    // A message the receiver refuses for its content: a permanent failure.
    receiver.answer(sinkhost_e2e::http_receiver::Answer {
        status: 422,
        when_body_contains: Some("reject-me".into()),
        ..Default::default()
    });
    let closed = format!("http://127.0.0.1:{}", free_port());
    let sink = |origin: &str| json!({"url": format!("{origin}/events"), "mode": "per_message", "body": "record"});
    let shown = received.display();
    let config = json!({
        "nats": {"url": "nats://127.0.0.1:4222", "stream": "UNUSED", "consumer": "unused", "subject": "unused.>"},
        "delivery": {"batch_size": 100, "batch_timeout_ms": 200, "max_in_flight_batches": 2},
        "plugin": {
            "path": plugin("http"),
            "grants": {"http": [{"origin": receiver.origin(), "allowed_addresses": ["127.0.0.1"]}]},
            "limits": {"memory_mb": 64, "call_timeout_ms": 15000}
        },
        "sink": sink(&receiver.origin()),
        "certification": {
            "verifier": ["sh", "-c", format!("ls {shown} | wc -l")],
            "record_lookup": ["sh", "-c", format!("grep -rl -- \"$SINKHOST_CERTIFY_MESSAGE_ID\" {shown} | head -n 1 | xargs cat")],
            "bad_sink_configs": [{"url": "ftp://example.com/x"}, {"url": format!("{}/x", receiver.origin()), "mode": "carrier-pigeon"}],
            "unavailable": {
                "grants": {"http": [{"origin": closed, "allowed_addresses": ["127.0.0.1"], "timeout_ms": 2000}]},
                "sink": sink(&closed)
            },
            "rejected_message": {"payload_text": "reject-me"},
            "messages": 1000,
            "throughput_floor_msgs_per_s": 100
        }
    });
    let http = plugin("http");
    let work_path = work.path().to_path_buf();
    let (code, output, report) =
        tokio::task::spawn_blocking(move || certify(&work_path, &config, &http, &[], &[]))
            .await
            .expect("certify");
    assert_eq!(code, 0, "the http sink passes:\n{output}");
    for check in CERTIFY_CHECKS {
        assert_eq!(check_status(&report, check), "pass", "{check}:\n{output}");
    }
    let classification = report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "error-classification"))
        .cloned();
    let detail = classification
        .map(|c| c["detail"].to_string())
        .unwrap_or_default();
    assert!(
        detail.contains("refused as permanent alone") && detail.contains("transient"),
        "{detail}"
    );
}

#[test]
fn the_s3_sink_is_certified_against_seaweedfs() {
    use sinkhost_e2e::seaweedfs::{SeaweedFs, ACCESS_KEY, SECRET_KEY};
    let s3 = SeaweedFs::start().expect("seaweedfs");
    s3.create_bucket("certify").expect("bucket");
    let work = tempfile::tempdir().expect("tempdir");
    let script = repo_root().join("tests/certify/seaweedfs_objects.py");
    let script = script.to_str().expect("utf-8");
    let filer = s3.filer_address();
    let grant = |origin: &str| {
        json!([{"origin": origin, "auth": {"aws_sigv4": {"region": "us-east-1", "service": "s3",
            "access_key_id_env": "S3_ACCESS_KEY_ID", "secret_access_key_env": "S3_SECRET_ACCESS_KEY"}},
            "allow_plaintext_credentials": true}])
    };
    let closed = format!("http://127.0.0.1:{}", free_port());
    let config = json!({
        "nats": {"url": "nats://127.0.0.1:4222", "stream": "UNUSED", "consumer": "unused", "subject": "unused.>"},
        "delivery": {"batch_size": 100, "batch_timeout_ms": 200, "max_in_flight_batches": 2},
        "plugin": {"path": plugin("s3"), "grants": {"http": grant(&s3.s3_endpoint())}, "limits": {"memory_mb": 64, "call_timeout_ms": 15000}},
        "sink": {"endpoint": s3.s3_endpoint(), "bucket": "certify", "mode": "per_message"},
        "certification": {
            "verifier": ["python3", script, filer, "certify", "count"],
            "record_lookup": ["sh", "-c", "exec python3 \"$0\" \"$1\" certify find \"$SINKHOST_CERTIFY_MESSAGE_ID\"", script, filer],
            "bad_sink_configs": [{"endpoint": s3.s3_endpoint(), "bucket": "Not_A_Bucket!"}, {"bucket": "certify"}],
            "unavailable": {
                "grants": {"http": grant(&closed)},
                "sink": {"endpoint": closed, "bucket": "certify", "mode": "per_message"}
            },
            "messages": 500,
            "throughput_floor_msgs_per_s": 50
        }
    });
    let env = [
        ("S3_ACCESS_KEY_ID", ACCESS_KEY),
        ("S3_SECRET_ACCESS_KEY", SECRET_KEY),
    ];
    let (code, output, report) = certify(work.path(), &config, &plugin("s3"), &[], &env);
    assert_eq!(code, 0, "the s3 sink passes:\n{output}");
    for check in CERTIFY_CHECKS {
        assert_eq!(check_status(&report, check), "pass", "{check}:\n{output}");
    }
    assert!(
        !output.contains(SECRET_KEY),
        "the secret never reaches the output"
    );
}
