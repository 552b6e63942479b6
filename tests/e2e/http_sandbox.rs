//! The `http` grant end to end: a test plugin (`http-probe`) sends the
//! requests its messages describe through `wasi:http`, against real HTTP
//! servers on 127.0.0.1, with messages flowing through a real JetStream.
//!
//! Granted: one server, with a bearer token the host adds. Not granted: a
//! second server, another port of the first, a redirect target, the cloud
//! metadata address, and a name that resolves to loopback. The plugin must
//! reach exactly the granted origin, and the token must appear only at that
//! server: never in what the plugin sees, never in the host's log.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use sinkhost_e2e::http_receiver::HttpReceiver;
use sinkhost_e2e::*;

const STREAM: &str = "PROBE";
const TOKEN: &str = "tok-7f3a9c1e-very-secret";

/// What the probe recorded for the message with `sequence`.
fn record(out: &Path, sequence: u64) -> Value {
    let path = out.join(format!("{STREAM}-{sequence}.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    serde_json::from_str(&text).expect("probe record is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_reaches_only_granted_origins_and_never_sees_the_credentials() {
    let granted = HttpReceiver::start().await.expect("granted server");
    let other = HttpReceiver::start().await.expect("other server");
    let unnamed_port = free_port();
    let server = NatsServer::start().expect("nats-server");
    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["probe.>"])
        .await
        .expect("stream");

    let probes = [
        // 1: the granted origin; the plugin's own Authorization is replaced.
        json!({"url": format!("{}/ingest", granted.origin()), "method": "POST", "body": "hello",
               "headers": [["authorization", "Bearer forged-by-plugin"], ["x-probe", "1"]]}),
        // 2: a server that is not granted.
        json!({"url": format!("{}/steal", other.origin())}),
        // 3: the granted host on another port.
        json!({"url": format!("http://127.0.0.1:{}/", other.port())}),
        // 4: a redirect from the granted origin to one that is not.
        json!({"url": format!("{}/redirect?to={}/stolen", granted.origin(), other.origin()), "follow_redirects": true}),
        // 5: the cloud metadata address.
        json!({"url": "http://169.254.169.254/latest/meta-data/iam/security-credentials/"}),
        // 6: a granted name that resolves to loopback, not named by the grant.
        json!({"url": format!("http://localhost:{unnamed_port}/")}),
        // 7: a response larger than the grant allows.
        json!({"url": format!("{}/bytes/300000", granted.origin())}),
        // 8: what the sandbox shows the plugin (environment, files).
        json!({"inspect": true}),
    ];
    for probe in &probes {
        js.publish_with_headers("probe.x", &[], probe.to_string().as_bytes())
            .await
            .expect("publish");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let mut config = base_config(
        &server,
        STREAM,
        "probe.>",
        &test_plugin("http-probe"),
        &out,
        json!({"directory": "/out"}),
    );
    set(
        &mut config,
        "plugin.grants.http",
        json!([
            {"origin": granted.origin(), "auth": {"bearer_env": "PROBE_TOKEN"}, "max_response_body_bytes": 100000},
            {"origin": format!("http://localhost:{unnamed_port}")}
        ]),
    );
    let path = write_config(dir.path(), &config);
    let log_path = dir.path().join("sinkhost.log");
    let mut host =
        Host::start_with_env(&path, &log_path, &[("PROBE_TOKEN", TOKEN)]).expect("start");
    let drained = wait_until(Duration::from_secs(60), || async {
        matches!(js.consumer_backlog(STREAM, "sinkhost").await, Ok((0, 0)))
    })
    .await;
    assert!(drained, "not drained:\n{}", host.log());
    assert_eq!(
        host.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log()
    );

    // 1: delivered with the host's token, not the plugin's.
    let first = record(&out, 1);
    assert_eq!(first["status"], 200, "{first}");
    let at_granted = granted.requests();
    let ingest = at_granted
        .iter()
        .find(|r| r.path == "/ingest")
        .expect("the granted request arrived");
    assert_eq!(
        ingest.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(ingest.method, "POST");
    assert_eq!(ingest.body, b"hello");
    assert_eq!(ingest.header("x-probe"), Some("1"));

    // 2-6: refused inside the host, before any connection.
    assert_eq!(record(&out, 2)["error"], "HttpRequestDenied");
    assert_eq!(record(&out, 3)["error"], "HttpRequestDenied");
    let redirect = record(&out, 4);
    assert_eq!(redirect["status"], 302, "{redirect}");
    assert_eq!(
        redirect["redirected_to"]["error"], "HttpRequestDenied",
        "{redirect}"
    );
    assert_eq!(record(&out, 5)["error"], "HttpRequestDenied");
    assert_eq!(record(&out, 6)["error"], "DestinationIpProhibited");
    assert!(
        other.requests().is_empty(),
        "the server that is not granted was reached: {:?}",
        other.requests()
    );

    // 7: the response stops at the grant's limit.
    let big = record(&out, 7);
    let error = big["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("HttpResponseBodySize") || error.contains("body size exceeds limit"),
        "{big}"
    );

    // 8: no environment, no arguments, no file outside the grant.
    let inspect = record(&out, 8);
    assert_eq!(inspect["env"], json!([]), "{inspect}");
    assert_eq!(inspect["readable"], json!([]), "{inspect}");

    // The token is nowhere but at the granted server.
    for entry in files_below(&out) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(!text.contains(TOKEN), "{} holds the token", entry.display());
    }
    let log = host.log();
    assert!(!log.contains(TOKEN), "the host log holds the token:\n{log}");
    assert!(
        log.contains("origin not granted"),
        "refusals are logged:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_needs_http_without_a_grant_is_refused_at_load() {
    let server = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let config = base_config(
        &server,
        STREAM,
        "probe.>",
        &test_plugin("http-probe"),
        &out,
        json!({"directory": "/out"}),
    );
    let path = write_config(dir.path(), &config);
    let (code, stdout, stderr) = sinkhost(&["validate", path.to_str().expect("utf-8 path")]);
    assert_ne!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("wasi:http/"), "{stderr}");
    assert!(stderr.contains("plugin.grants.http"), "{stderr}");

    let plugin = test_plugin("http-probe");
    let (code, stdout, stderr) = sinkhost(&["inspect", plugin.to_str().expect("utf-8 path")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("wasi:http/outgoing-handler"), "{stdout}");
    assert!(stdout.contains("needs grant `http`"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_credential_variable_stops_the_start_naming_it() {
    let server = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let mut config = base_config(
        &server,
        STREAM,
        "probe.>",
        &test_plugin("http-probe"),
        &out,
        json!({"directory": "/out"}),
    );
    set(
        &mut config,
        "plugin.grants.http",
        json!([{"origin": "https://api.example.com", "auth": {"basic": {"user_env": "PROBE_USER_UNSET", "password_env": "PROBE_PASSWORD_UNSET"}}}]),
    );
    let path = write_config(dir.path(), &config);
    let (code, _stdout, stderr) = sinkhost(&["validate", path.to_str().expect("utf-8 path")]);
    assert_ne!(code, 0);
    assert!(stderr.contains("http[0].auth.basic.user_env"), "{stderr}");
    assert!(stderr.contains("PROBE_USER_UNSET"), "{stderr}");
}
