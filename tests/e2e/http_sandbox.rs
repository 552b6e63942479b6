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
            {"origin": granted.origin(), "auth": {"bearer_env": "PROBE_TOKEN"}, "max_response_body_bytes": 100000,
             "allow_plaintext_credentials": true},
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

/// Starts the host on `config`, publishes `probes`, waits until every one is
/// handled and stops the host; returns its log.
async fn run_probes(
    server: &NatsServer,
    dir: &Path,
    config: &Value,
    probes: &[Value],
    env: &[(&str, &str)],
) -> String {
    let js = Js::connect(server).await.expect("connect");
    js.create_stream(STREAM, &["probe.>"])
        .await
        .expect("stream");
    for probe in probes {
        js.publish_with_headers("probe.x", &[], probe.to_string().as_bytes())
            .await
            .expect("publish");
    }
    let path = write_config(dir, config);
    let log_path = dir.join("sinkhost.log");
    let mut host = Host::start_with_env(&path, &log_path, env).expect("start");
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
    host.log()
}

/// Hostile destinations: cloud metadata addresses written as IPv4, as NAT64
/// and as IPv4-mapped IPv6, CGNAT, a redirect to a metadata address, and a
/// granted name that resolves to loopback where a trap server listens. Each
/// is refused inside the host before any connection: the traps record
/// nothing, and the credential reaches only the server it is granted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_purpose_destinations_are_refused_before_connecting_and_the_secret_stays_home() {
    let granted = HttpReceiver::start().await.expect("granted server");
    let open = HttpReceiver::start()
        .await
        .expect("granted server without credentials");
    let trap = HttpReceiver::start().await.expect("trap behind localhost");
    let server = NatsServer::start().expect("nats-server");
    let port = granted.port();
    let probes = [
        // 1: control: the granted origin gets the host's token.
        json!({"url": format!("{}/ok", granted.origin())}),
        // 2-6: special-purpose literals, never granted.
        json!({"url": "http://100.100.100.200/latest/meta-data/"}),
        json!({"url": "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/"}),
        json!({"url": format!("http://[::ffff:127.0.0.1]:{port}/mapped")}),
        json!({"url": "http://[fd00:ec2::254]/latest/meta-data/"}),
        json!({"url": format!("http://[64:ff9b::7f00:1]:{port}/nat64")}),
        // 7: a redirect from the granted origin to Alibaba's metadata address.
        json!({"url": format!("{}/redirect?to=http://100.100.100.200/latest/meta-data/", granted.origin()), "follow_redirects": true}),
        // 8: a granted name (with a credential) resolving to loopback, which
        // the grant does not name: a trap server listens there.
        json!({"url": format!("http://localhost:{}/trap", trap.port()),
               "headers": [["x-probe", "8"]]}),
        // 9: a grant without credentials: no other grant's token, ever.
        json!({"url": format!("{}/open", open.origin())}),
    ];
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
            {"origin": granted.origin(), "auth": {"bearer_env": "PROBE_TOKEN"},
             "allow_plaintext_credentials": true},
            {"origin": format!("http://localhost:{}", trap.port()), "auth": {"bearer_env": "PROBE_TOKEN"},
             "allow_plaintext_credentials": true},
            {"origin": open.origin()},
        ]),
    );
    let log = run_probes(
        &server,
        dir.path(),
        &config,
        &probes,
        &[("PROBE_TOKEN", TOKEN)],
    )
    .await;

    let first = record(&out, 1);
    assert_eq!(first["status"], 200, "{first}");
    for sequence in 2..=6 {
        let refused = record(&out, sequence);
        assert_eq!(
            refused["error"], "HttpRequestDenied",
            "{sequence}: {refused}"
        );
    }
    let redirect = record(&out, 7);
    assert_eq!(redirect["status"], 302, "{redirect}");
    assert_eq!(
        redirect["redirected_to"]["error"], "HttpRequestDenied",
        "{redirect}"
    );
    let trapped = record(&out, 8);
    assert_eq!(trapped["error"], "DestinationIpProhibited", "{trapped}");
    assert_eq!(record(&out, 9)["status"], 200);

    // The effects: nothing reached the trap, the IPv4-mapped and NAT64
    // spellings of the granted server's address did not reach it either,
    // and the token arrived only where it is granted.
    assert!(
        trap.requests().is_empty(),
        "a name resolving to loopback reached the trap: {:?}",
        trap.requests()
    );
    let at_granted = granted.requests();
    let paths: Vec<&str> = at_granted.iter().map(|r| r.path.as_str()).collect();
    assert!(
        !paths.contains(&"/mapped") && !paths.contains(&"/nat64"),
        "another spelling of the granted address got through: {paths:?}"
    );
    assert!(at_granted
        .iter()
        .all(|r| r.header("authorization") == Some(format!("Bearer {TOKEN}").as_str())));
    let at_open = open.requests();
    assert_eq!(at_open.len(), 1, "{at_open:?}");
    assert!(
        at_open.iter().all(|r| r.header("authorization").is_none()),
        "a grant without credentials got another grant's: {at_open:?}"
    );
    assert!(!log.contains(TOKEN), "the host log holds the token:\n{log}");
    assert!(
        log.contains("special-purpose address"),
        "the address refusal is logged:\n{log}"
    );
}

/// Credentials over plain `http://` need an explicit opt-in: without it the
/// config is refused, naming the field, and the host never starts (the
/// server the credential was meant for sees nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_over_plain_http_are_refused_without_the_opt_in() {
    let receiver = HttpReceiver::start().await.expect("server");
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
        json!([{"origin": receiver.origin(), "auth": {"bearer_env": "PROBE_TOKEN"}}]),
    );
    let path = write_config(dir.path(), &config);
    let (code, stdout, stderr) = sinkhost_with_env(
        &["validate", path.to_str().expect("utf-8 path")],
        &[("PROBE_TOKEN", TOKEN)],
    );
    assert_ne!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains("plugin.grants.http[0].auth")
            && stderr.contains("allow_plaintext_credentials"),
        "{stderr}"
    );
    assert!(stderr.contains("clear text"), "{stderr}");

    let js = Js::connect(&server).await.expect("connect");
    js.create_stream(STREAM, &["probe.>"])
        .await
        .expect("stream");
    js.publish_with_headers(
        "probe.x",
        &[],
        json!({"url": format!("{}/x", receiver.origin())})
            .to_string()
            .as_bytes(),
    )
    .await
    .expect("publish");
    let log_path = dir.path().join("sinkhost.log");
    let mut host =
        Host::start_with_env(&path, &log_path, &[("PROBE_TOKEN", TOKEN)]).expect("start");
    let exited = wait_until(Duration::from_secs(30), || {
        let running = host.is_running();
        async move { !running }
    })
    .await;
    assert!(exited, "the host must refuse to start:\n{}", host.log());
    assert!(
        host.log().contains("allow_plaintext_credentials"),
        "{}",
        host.log()
    );
    assert!(
        receiver.requests().is_empty(),
        "the credential went out in clear text: {:?}",
        receiver.requests()
    );
    assert!(!host.log().contains(TOKEN));

    // With https the same credential needs no opt-in.
    set(
        &mut config,
        "plugin.grants.http",
        json!([{"origin": "https://api.example.com", "auth": {"bearer_env": "PROBE_TOKEN"}}]),
    );
    let path = write_config(dir.path(), &config);
    let (code, stdout, stderr) = sinkhost_with_env(
        &["validate", path.to_str().expect("utf-8 path")],
        &[("PROBE_TOKEN", TOKEN)],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
}
