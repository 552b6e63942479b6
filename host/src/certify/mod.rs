//! `sinkhost certify PLUGIN --config CONFIG`: runs any sink, in any
//! language, through the same checks against a real JetStream, and says
//! check by check whether it keeps the sink contract.
//!
//! The run never touches the operator's streams: it starts a private
//! `nats-server` (or uses `--nats-url`) and works on a stream of its own.
//! The destination is the one the configuration grants; the operator's
//! `certification.verifier` command counts what is durably stored there.
//!
//! Checks, in order (names are stable; see `docs/certification.md`):
//! `load`, `init-accepts-config`, `init-refuses-bad-configs`,
//! `redelivery-no-duplicates`, `error-classification`, `durable-evidence`,
//! `payload-variants`, `metadata-preserved`, `stays-inside-grants`,
//! `limits`, `throughput-floor`.

pub mod commands;
pub mod jetstream;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::AckKind;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::config::{CertificationConfig, Config};
use crate::envelope::Envelope;
use crate::manifest::ManifestProblem;
use crate::plugin::{ErrorKind, PluginFault, PluginHost, PluginLoadError, SinkPool, WriteOutcome};
use crate::security::pipeline::SecurityPipeline;

use jetstream::{Bus, Fetched, Names, PrivateServer};
use report::{CheckResult, Measurements, Report, Status, REPORT_SCHEMA};

/// The suite's name and version; a certification names the suite it passed.
pub const SUITE: &str = "sinkhost-certify/1";
/// Environment variable set in the host (never granted to the plugin)
/// whose value must never surface in the destination.
pub const CANARY_ENV: &str = "SINKHOST_CERTIFY_CANARY";
/// Environment variable holding the run's own encryption key.
const ENCRYPTION_KEY_ENV: &str = "SINKHOST_CERTIFY_ENCRYPTION_KEY_B64";
/// Messages in the redelivery check's batch (at most `batch_size`).
const REDELIVERY_BATCH: usize = 10;
/// Size of the large payload variant.
const ONE_MIB: usize = 1024 * 1024;
/// How often the delivery phase looks at the consumer.
const DRAIN_POLL: Duration = Duration::from_millis(100);
/// Bad `sink` sections every plugin must refuse.
const ALWAYS_BAD_CONFIGS: [&str; 2] = ["42", "\"not a sink configuration\""];

/// The suite and the sinkhost that ran it.
pub fn suite_name() -> String {
    format!("{SUITE} (sinkhost {})", env!("CARGO_PKG_VERSION"))
}

/// What to certify and where.
#[derive(Debug, Clone)]
pub struct CertifyOptions {
    /// The component.
    pub plugin: PathBuf,
    /// The configuration: grants, limits, `sink` and `certification`.
    pub config: PathBuf,
    /// A JetStream server to use instead of starting a private one.
    pub nats_url: Option<String>,
}

/// Runs the suite. An `Err` means the run itself could not be set up (no
/// nats-server, unreadable config); a plugin that fails checks is an `Ok`
/// report with `passed: false`.
pub async fn certify(options: &CertifyOptions) -> anyhow::Result<Report> {
    let started_at = now();
    let bytes = std::fs::read(&options.plugin)
        .with_context(|| format!("cannot read plugin {}", options.plugin.display()))?;
    let digest = crate::signing::plugin_digest(&bytes);
    let work = tempfile::Builder::new()
        .prefix("sinkhost-certify-")
        .tempdir()
        .context("creating a work directory")?;
    let names = Names::new();
    let server = match &options.nats_url {
        Some(_) => None,
        None => Some(PrivateServer::start(work.path()).await?),
    };
    let url = options
        .nats_url
        .clone()
        .or_else(|| server.as_ref().map(|s| s.url.clone()))
        .unwrap_or_default();
    let (config, certification) = run_config(options, &url, &names, server.is_some())?;
    let canary = prepare_secrets(work.path())?;
    let bus = Bus::connect(&url, names).await?;

    let mut run = Run {
        config,
        certification,
        bus,
        canary,
        checks: Vec::new(),
        measurements: Measurements::default(),
        faults: Vec::new(),
        lookups: Vec::new(),
        hosts: Vec::new(),
    };
    run.all_checks().await;
    if options.nats_url.is_some() {
        run.delete_streams().await;
    }
    let passed = run.checks.iter().all(|check| check.status != Status::Fail);
    Ok(Report {
        schema: REPORT_SCHEMA,
        suite: suite_name(),
        plugin: options.plugin.display().to_string(),
        digest,
        started_at,
        finished_at: now(),
        passed,
        checks: run.checks,
        measurements: run.measurements,
    })
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The operator's configuration, pointed at the run's own stream, DLQ and
/// encryption key; without the policies that would screen test messages
/// out before the sink sees them (authenticity, labels) or refuse the
/// plugin (trust: certification is about behaviour, not provenance).
fn run_config(
    options: &CertifyOptions,
    url: &str,
    names: &Names,
    private_server: bool,
) -> anyhow::Result<(Config, CertificationConfig)> {
    let text = std::fs::read_to_string(&options.config)
        .with_context(|| format!("cannot read config {}", options.config.display()))?;
    // Parse once as the operator wrote it, for errors that name their place.
    let original = Config::from_json_str(&text)
        .map_err(|err| anyhow::anyhow!("{}: {}", options.config.display(), describe(err)))?;
    let certification = original.certification.clone().with_context(|| {
        format!(
            "{} has no `certification` section: certify needs at least `certification.verifier`, a command printing how many records the destination holds (see docs/certification.md)",
            options.config.display()
        )
    })?;
    let mut value: Value = serde_json::from_str(&text).context("config")?;
    let Some(root) = value.as_object_mut() else {
        anyhow::bail!("the config is not a JSON object")
    };
    for key in [
        "trust",
        "certification",
        "message_authenticity",
        "security_labels",
        "consumer_management",
    ] {
        root.remove(key);
    }
    let nats = root.entry("nats").or_insert_with(|| json!({}));
    if let Some(nats) = nats.as_object_mut() {
        if private_server {
            for key in [
                "urls",
                "user",
                "password_env",
                "token_env",
                "creds_file",
                "nkey_seed_file",
                "tls_ca_file",
                "tls_cert_file",
                "tls_key_file",
            ] {
                nats.remove(key);
            }
        }
        nats.insert("url".into(), json!(url));
        nats.insert("stream".into(), json!(names.stream));
        nats.insert("subject".into(), json!(names.subject("run.>")));
        nats.insert("consumer".into(), json!(names.consumer));
    }
    root.insert(
        "dead_letter".into(),
        json!({"enabled": true, "subject": names.dlq_subject}),
    );
    let encryption = root.entry("encryption").or_insert_with(|| json!({}));
    if let Some(encryption) = encryption.as_object_mut() {
        let rule = json!({"subject": names.subject("run.encrypted"), "enabled": true, "key_id": names.key_id, "key_b64_env": ENCRYPTION_KEY_ENV});
        match encryption.get_mut("rules").and_then(Value::as_array_mut) {
            Some(rules) => rules.insert(0, rule),
            None => {
                encryption.insert("rules".into(), json!([rule]));
            }
        }
    }
    if let Some(plugin) = root.get_mut("plugin").and_then(Value::as_object_mut) {
        plugin.insert("path".into(), json!(options.plugin));
    }
    let config = Config::from_json_str(&value.to_string())
        .map_err(|err| anyhow::anyhow!("{}: {}", options.config.display(), describe(err)))?;
    Ok((config, certification))
}

fn describe(err: crate::config::ParseOrInvalid) -> String {
    match err {
        crate::config::ParseOrInvalid::Parse { location, message } => {
            format!("invalid at `{location}`: {message}")
        }
        crate::config::ParseOrInvalid::Invalid(invalid) => {
            format!("invalid at `{}`: {}", invalid.location, invalid.message)
        }
    }
}

/// Sets the run's encryption key and canary in this process's environment
/// (the plugin's environment stays empty) and plants the canary file
/// outside every grant. Returns the canary text.
fn prepare_secrets(work: &Path) -> anyhow::Result<String> {
    let canary = format!("canary-{:032x}", rand::random::<u128>());
    let key: [u8; 32] = rand::random();
    // Set before any task of this run reads the environment.
    std::env::set_var(
        ENCRYPTION_KEY_ENV,
        base64::engine::general_purpose::STANDARD.encode(key),
    );
    std::env::set_var(CANARY_ENV, &canary);
    std::fs::write(work.join("canary.txt"), &canary).context("planting the canary file")?;
    Ok(canary)
}

/// One certification run's state.
struct Run {
    config: Config,
    certification: CertificationConfig,
    bus: Bus,
    canary: String,
    checks: Vec<CheckResult>,
    measurements: Measurements,
    /// Faults seen in the direct `write-batch` calls.
    faults: Vec<String>,
    /// Output of every record lookup (searched for the canary).
    lookups: Vec<String>,
    /// Every plugin host loaded (for their refusals).
    hosts: Vec<PluginHost>,
}

/// What a direct `write-batch` should have done.
enum Expect {
    /// Store everything.
    AllStored,
}

impl Run {
    fn record(&mut self, name: &'static str, status: Status, detail: impl Into<String>) {
        let detail = detail.into();
        match status {
            Status::Fail => tracing::warn!(check = name, %detail, "certification check failed"),
            _ => tracing::info!(check = name, ?status, %detail, "certification check"),
        }
        self.checks.push(CheckResult {
            name,
            status,
            detail,
        });
    }

    fn skip_rest(&mut self, names: &[&'static str], why: &str) {
        for name in names {
            self.record(name, Status::Skip, format!("not run: {why}"));
        }
    }

    async fn all_checks(&mut self) {
        const AFTER_LOAD: [&str; 10] = [
            "init-accepts-config",
            "init-refuses-bad-configs",
            "redelivery-no-duplicates",
            "error-classification",
            "durable-evidence",
            "payload-variants",
            "metadata-preserved",
            "stays-inside-grants",
            "limits",
            "throughput-floor",
        ];
        let plugin = match PluginHost::load(&self.config.plugin, &self.config.sink) {
            Ok(plugin) => plugin,
            Err(err) => {
                self.record("load", Status::Fail, err.to_string());
                return self.skip_rest(&AFTER_LOAD, "the plugin did not load");
            }
        };
        self.record(
            "load",
            Status::Pass,
            format!("loaded {}", plugin.describe()),
        );
        self.hosts.push(plugin.clone());
        if let Err(fault) = plugin.check_init().await {
            self.record("init-accepts-config", Status::Fail, fault.to_string());
            return self.skip_rest(
                &AFTER_LOAD[1..],
                "init refused the configured `sink` section",
            );
        }
        self.record(
            "init-accepts-config",
            Status::Pass,
            "init accepted the configured `sink` section",
        );
        self.bad_configs().await;
        let security = match SecurityPipeline::from_config(&self.config) {
            Ok(security) => security,
            Err(err) => {
                return self.skip_rest(
                    &AFTER_LOAD[2..],
                    &format!("the host's security pipeline: {err:#}"),
                )
            }
        };
        let pool = plugin.pool(1);
        self.redelivery(&pool, &security).await;
        self.classification(&pool, &security).await;
        let delivered = self.delivery_phase(&plugin).await;
        self.metadata(delivered.as_ref()).await;
        self.grants();
        self.limits(&pool, delivered.as_ref());
        self.throughput(delivered.as_ref());
    }

    async fn verifier_count(&self) -> Result<u64, String> {
        commands::count(&self.certification.verifier, &self.command_env())
            .await
            .map_err(|err| format!("certification.verifier: {err}"))
    }

    fn command_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SINKHOST_CERTIFY_STREAM", self.bus.names.stream.clone()),
            (
                "SINKHOST_CERTIFY_SUBJECT_PREFIX",
                self.bus.names.prefix.clone(),
            ),
        ]
    }

    async fn write(
        &mut self,
        pool: &SinkPool,
        batch: &[Envelope],
    ) -> Result<WriteOutcome, PluginFault> {
        let started = Instant::now();
        let outcome = pool.write_batch(batch).await;
        let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.measurements.slowest_batch_ms = self.measurements.slowest_batch_ms.max(elapsed);
        if let Err(fault) = &outcome {
            self.faults.push(fault.to_string());
        }
        outcome
    }

    /// `init-refuses-bad-configs`: a refusal, not a trap and not an accept.
    async fn bad_configs(&mut self) {
        let mut bad: Vec<Value> = ALWAYS_BAD_CONFIGS
            .iter()
            .filter_map(|text| serde_json::from_str(text).ok())
            .collect();
        bad.extend(self.certification.bad_sink_configs.iter().cloned());
        let mut problems = Vec::new();
        for sink in &bad {
            let shown: String = sink.to_string().chars().take(80).collect();
            let outcome = match PluginHost::load(&self.config.plugin, sink) {
                Ok(host) => host.check_init().await,
                // Refused by the config schema of its manifest: refused
                // before `init`, as `run` would.
                Err(PluginLoadError::Manifest {
                    problem: ManifestProblem::SinkConfig { .. },
                    ..
                }) => continue,
                Err(err) => {
                    problems.push(format!("{shown}: could not load ({err})"));
                    continue;
                }
            };
            match outcome {
                Err(PluginFault::Init { message })
                    if message.starts_with("the plugin rejected") => {}
                Ok(()) => problems.push(format!("accepted {shown}")),
                Err(fault) => problems.push(format!(
                    "{shown}: {fault} (a bad config must be refused with an error, not crash)"
                )),
            }
        }
        if problems.is_empty() {
            self.record(
                "init-refuses-bad-configs",
                Status::Pass,
                format!(
                    "refused all {} bad `sink` sections with an error",
                    bad.len()
                ),
            );
        } else {
            self.record(
                "init-refuses-bad-configs",
                Status::Fail,
                problems.join("; "),
            );
        }
    }

    /// `redelivery-no-duplicates`: the same batch written twice (as after a
    /// crash between the write and the ACK) is stored once.
    async fn redelivery(&mut self, pool: &SinkPool, security: &SecurityPipeline) {
        const NAME: &str = "redelivery-no-duplicates";
        match self.redelivery_steps(pool, security).await {
            Ok(detail) => self.record(NAME, Status::Pass, detail),
            Err(problem) => self.record(NAME, Status::Fail, problem),
        }
    }

    async fn redelivery_steps(
        &mut self,
        pool: &SinkPool,
        security: &SecurityPipeline,
    ) -> Result<String, String> {
        let count = REDELIVERY_BATCH.min(self.config.delivery.batch_size).max(1);
        let subject = self.bus.names.subject("redelivery");
        for index in 0..count {
            let headers = vec![(
                "Nats-Msg-Id".to_string(),
                self.bus.names.message_id(&format!("redelivery-{index}")),
            )];
            let payload = json!({"event": "redelivery", "n": index})
                .to_string()
                .into_bytes();
            self.bus
                .publish(&subject, &headers, payload)
                .await
                .map_err(|err| format!("{err:#}"))?;
        }
        let mut messages = self
            .bus
            .consumer(&subject)
            .await
            .map_err(|err| format!("{err:#}"))?;
        let before = self.verifier_count().await?;
        let first = jetstream::fetch(&mut messages, count, security)
            .await
            .map_err(|err| format!("{err:#}"))?;
        self.expect_stored(pool, &first, Expect::AllStored, "first delivery")
            .await?;
        let after_first = self.verifier_count().await?;
        if after_first != before + count as u64 {
            return Err(format!(
                "the plugin reported {count} messages stored, but the verifier counts {} new records",
                after_first.saturating_sub(before)
            ));
        }
        first
            .settle(AckKind::Nak(None))
            .await
            .map_err(|err| format!("{err:#}"))?;
        let second = jetstream::fetch(&mut messages, count, security)
            .await
            .map_err(|err| format!("{err:#}"))?;
        if second
            .envelopes
            .iter()
            .any(|envelope| envelope.delivery_count < 2)
        {
            return Err(
                "JetStream did not redeliver the batch (internal error of the suite)".into(),
            );
        }
        self.expect_stored(pool, &second, Expect::AllStored, "redelivery")
            .await?;
        let after_second = self.verifier_count().await?;
        second
            .settle(AckKind::Ack)
            .await
            .map_err(|err| format!("{err:#}"))?;
        if after_second != after_first {
            return Err(format!(
                "redelivering the same {count} messages added {} records: the sink duplicates on redelivery (key records by stream and stream sequence, or by message id)",
                after_second.saturating_sub(after_first)
            ));
        }
        Ok(format!(
            "{count} messages stored once; their redelivery (delivery_count 2) added no record"
        ))
    }

    async fn expect_stored(
        &mut self,
        pool: &SinkPool,
        fetched: &Fetched,
        expect: Expect,
        what: &str,
    ) -> Result<(), String> {
        match (self.write(pool, &fetched.envelopes).await, expect) {
            (Ok(WriteOutcome::Stored { failures }), Expect::AllStored) if failures.is_empty() => {
                Ok(())
            }
            (Ok(WriteOutcome::Stored { failures }), Expect::AllStored) => Err(format!(
                "{what}: {} of {} plain JSON messages failed, first: {}",
                failures.len(),
                fetched.envelopes.len(),
                failures
                    .first()
                    .map(|f| f.error.message.clone())
                    .unwrap_or_default()
            )),
            (Ok(WriteOutcome::Failed(error)), _) => Err(format!(
                "{what}: the batch failed ({:?}): {}",
                error.kind, error.message
            )),
            (Err(fault), _) => Err(format!("{what}: {fault}")),
        }
    }

    /// `error-classification`: an unavailable destination is transient, a
    /// message the sink cannot take is permanent and alone.
    async fn classification(&mut self, pool: &SinkPool, security: &SecurityPipeline) {
        const NAME: &str = "error-classification";
        let mut passed = Vec::new();
        let mut problems = Vec::new();
        if self.certification.rejected_message.is_some() {
            match self.rejected_message(pool, security).await {
                Ok(detail) => passed.push(detail),
                Err(problem) => problems.push(problem),
            }
        }
        if self.certification.unavailable.is_some() {
            match self.unavailable(security).await {
                Ok(detail) => passed.push(detail),
                Err(problem) => problems.push(problem),
            }
        }
        if !problems.is_empty() {
            self.record(NAME, Status::Fail, problems.join("; "));
        } else if passed.is_empty() {
            self.record(
                NAME,
                Status::Skip,
                "nothing to classify: configure certification.unavailable and/or certification.rejected_message",
            );
        } else {
            self.record(NAME, Status::Pass, passed.join("; "));
        }
    }

    async fn rejected_message(
        &mut self,
        pool: &SinkPool,
        security: &SecurityPipeline,
    ) -> Result<String, String> {
        let Some(sample) = self.certification.rejected_message.clone() else {
            return Err("no sample".into());
        };
        let payload = match (&sample.payload_text, &sample.payload_b64) {
            (Some(text), _) => text.clone().into_bytes(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|err| format!("certification.rejected_message.payload_b64: {err}"))?,
            (None, None) => Vec::new(),
        };
        let subject = self.bus.names.subject("reject");
        let good = json!({"event": "good-neighbour"}).to_string().into_bytes();
        let good_headers = vec![(
            "Nats-Msg-Id".to_string(),
            self.bus.names.message_id("good-neighbour"),
        )];
        self.bus
            .publish(&subject, &good_headers, good)
            .await
            .map_err(|err| format!("{err:#}"))?;
        self.bus
            .publish(&subject, &sample.headers, payload)
            .await
            .map_err(|err| format!("{err:#}"))?;
        let mut messages = self
            .bus
            .consumer(&subject)
            .await
            .map_err(|err| format!("{err:#}"))?;
        let fetched = jetstream::fetch(&mut messages, 2, security)
            .await
            .map_err(|err| format!("{err:#}"))?;
        let outcome = self.write(pool, &fetched.envelopes).await;
        let _ = fetched.settle(AckKind::Ack).await;
        match outcome {
            Ok(WriteOutcome::Stored { failures }) => match failures.as_slice() {
                [] => Err("the message the sink should refuse (certification.rejected_message) was reported stored".into()),
                [failure] if failure.index == 1 && failure.error.kind == ErrorKind::Permanent => {
                    Ok(format!("a bad message was refused as permanent alone (\"{}\")", one_line(&failure.error.message)))
                }
                [failure] if failure.index == 1 => Err(format!(
                    "a message that can never be stored was reported transient (it would be retried forever instead of dead-lettered): {}",
                    one_line(&failure.error.message)
                )),
                _ => Err(format!(
                    "the good message next to the bad one failed too ({} failures): one bad message must not fail its batch",
                    failures.len()
                )),
            },
            Ok(WriteOutcome::Failed(error)) => Err(format!(
                "the whole batch failed ({:?}) for one bad message: report it as a per-message permanent failure ({})",
                error.kind,
                one_line(&error.message)
            )),
            Err(fault) => Err(format!("a bad message made the plugin fault: {fault}")),
        }
    }

    async fn unavailable(&mut self, security: &SecurityPipeline) -> Result<String, String> {
        let Some(scenario) = self.certification.unavailable.clone() else {
            return Err("no scenario".into());
        };
        let mut plugin_config = self.config.plugin.clone();
        if let Some(grants) = &scenario.grants {
            plugin_config.grants = grants.clone();
        }
        let sink = scenario
            .sink
            .clone()
            .unwrap_or_else(|| self.config.sink.clone());
        let host = PluginHost::load(&plugin_config, &sink)
            .map_err(|err| format!("unavailable destination: the plugin did not load: {err}"))?;
        self.hosts.push(host.clone());
        let pool = host.pool(1);
        if let Err(fault) = pool.warm_up().await {
            return Err(format!("unavailable destination: init failed ({fault}); the scenario must let init succeed and fail the writes"));
        }
        let subject = self.bus.names.subject("unavailable");
        for index in 0..3 {
            let payload = json!({"event": "unavailable", "n": index})
                .to_string()
                .into_bytes();
            self.bus
                .publish(&subject, &[], payload)
                .await
                .map_err(|err| format!("{err:#}"))?;
        }
        let mut messages = self
            .bus
            .consumer(&subject)
            .await
            .map_err(|err| format!("{err:#}"))?;
        let fetched = jetstream::fetch(&mut messages, 3, security)
            .await
            .map_err(|err| format!("{err:#}"))?;
        if let Some(argv) = &scenario.break_command {
            commands::run(argv, &self.command_env())
                .await
                .map_err(|err| format!("certification.unavailable.break_command: {err}"))?;
        }
        let outcome = self.write(&pool, &fetched.envelopes).await;
        if let Some(argv) = &scenario.repair_command {
            if let Err(err) = commands::run(argv, &self.command_env()).await {
                return Err(format!("certification.unavailable.repair_command: {err}"));
            }
        }
        let _ = fetched.settle(AckKind::Ack).await;
        match outcome {
            Ok(WriteOutcome::Failed(error)) if error.kind == ErrorKind::Transient => {
                Ok(format!("an unavailable destination was reported transient (\"{}\")", one_line(&error.message)))
            }
            Ok(WriteOutcome::Stored { failures })
                if failures.len() == fetched.envelopes.len() && failures.iter().all(|f| f.error.kind == ErrorKind::Transient) =>
            {
                Ok("an unavailable destination failed every message as transient".into())
            }
            Ok(WriteOutcome::Stored { failures }) if failures.is_empty() => {
                Err("the plugin reported success while its destination was unavailable: those messages would be ACKed and lost".into())
            }
            Ok(WriteOutcome::Failed(error)) => Err(format!(
                "an unavailable destination was reported permanent: the messages would be dead-lettered instead of retried ({})",
                one_line(&error.message)
            )),
            Ok(WriteOutcome::Stored { failures }) => Err(format!(
                "with the destination unavailable, {} messages failed ({} as permanent) and {} were reported stored",
                failures.len(),
                failures.iter().filter(|f| f.error.kind == ErrorKind::Permanent).count(),
                fetched.envelopes.len() - failures.len()
            )),
            Err(fault) => Err(format!("an unavailable destination made the plugin fault: {fault}")),
        }
    }

    /// The delivery phase: variants and the throughput load through the
    /// real delivery runtime, until the consumer is drained.
    async fn delivery_phase(&mut self, plugin: &PluginHost) -> Option<Delivered> {
        match self.delivery_steps(plugin).await {
            Ok(delivered) => Some(delivered),
            Err(problem) => {
                self.record("durable-evidence", Status::Fail, problem);
                self.record(
                    "payload-variants",
                    Status::Skip,
                    "not run: the delivery phase failed",
                );
                None
            }
        }
    }

    async fn delivery_steps(&mut self, plugin: &PluginHost) -> Result<Delivered, String> {
        let load = self.certification.messages;
        let load_subject = self.bus.names.subject("run.load");
        self.bus
            .publish_many(&load_subject, load, |index| {
                json!({"event": "load", "n": index, "text": "the quick brown fox jumps over the lazy dog"}).to_string().into_bytes()
            })
            .await
            .map_err(|err| format!("publishing the load: {err:#}"))?;
        let mut variants = Vec::new();
        for (name, payload) in variant_payloads(&self.bus.names.id) {
            let subject = self.bus.names.subject(&format!("run.{name}"));
            let message_id = self.bus.names.message_id(name);
            let headers = vec![
                ("Nats-Msg-Id".to_string(), message_id.clone()),
                (
                    self.bus.names.marker_header.clone(),
                    self.bus.names.id.clone(),
                ),
            ];
            let sequence = self
                .bus
                .publish(&subject, &headers, payload)
                .await
                .map_err(|err| format!("publishing the {name} variant: {err:#}"))?;
            variants.push(Variant {
                name,
                subject,
                message_id,
                sequence,
            });
        }
        let last_sequence = variants.last().map(|v| v.sequence).unwrap_or(0);
        let total = (load + variants.len()) as u64;
        let before = self.verifier_count().await?;
        let security =
            SecurityPipeline::from_config(&self.config).map_err(|err| format!("{err:#}"))?;
        let token = CancellationToken::new();
        let started = Instant::now();
        let runner = tokio::spawn(crate::delivery::run(
            self.config.clone(),
            plugin.clone(),
            security,
            token.clone(),
        ));
        let deadline = started + Duration::from_secs(self.certification.timeout_seconds);
        let mut backlog = (u64::MAX, u64::MAX, 0);
        while Instant::now() < deadline {
            tokio::time::sleep(DRAIN_POLL).await;
            if let Ok(now) = self.bus.backlog(&self.bus.names.consumer).await {
                backlog = now;
                if now.0 == 0 && now.1 == 0 && now.2 >= last_sequence {
                    break;
                }
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        token.cancel();
        let stats = match runner.await {
            Ok(Ok(stats)) => stats,
            Ok(Err(err)) => return Err(format!("the delivery runtime stopped: {err:#}")),
            Err(err) => return Err(format!("the delivery runtime ended abnormally: {err}")),
        };
        let _ = self.bus.flush().await;
        if !(backlog.0 == 0 && backlog.1 == 0 && backlog.2 >= last_sequence) {
            return Err(format!(
                "not drained after {} s: {} messages never delivered and {} awaiting an ACK ({} stored, {} retried, {} plugin faults)",
                self.certification.timeout_seconds, backlog.0, backlog.1, stats.stored, stats.retried, stats.plugin_faults
            ));
        }
        let after = self.verifier_count().await?;
        let dead = self
            .bus
            .dead_letters()
            .await
            .map_err(|err| format!("reading the dead-letter stream: {err:#}"))?;
        let run_prefix = self.bus.names.subject("run.");
        let dead: Vec<(String, String)> = dead
            .into_iter()
            .filter(|(subject, _)| subject.starts_with(&run_prefix))
            .collect();
        let delivered = Delivered {
            total,
            load: load as u64,
            stored: stats.stored,
            dead_lettered: dead,
            new_records: after.saturating_sub(before),
            seconds,
            plugin_faults: stats.plugin_faults,
            variants,
        };
        self.evidence(&delivered);
        self.variant_outcomes(&delivered);
        Ok(delivered)
    }

    /// `durable-evidence`: what the plugin reported stored is what the
    /// verifier finds, and everything published was settled.
    fn evidence(&mut self, delivered: &Delivered) {
        const NAME: &str = "durable-evidence";
        let dead = delivered.dead_lettered.len() as u64;
        let load_dead = delivered
            .dead_lettered
            .iter()
            .filter(|(subject, _)| subject.ends_with(".run.load"))
            .count();
        let summary = format!(
            "{} published, {} reported stored, {dead} dead-lettered; the verifier counts {} new records",
            delivered.total, delivered.stored, delivered.new_records
        );
        if delivered.new_records != delivered.stored {
            self.record(
                NAME,
                Status::Fail,
                format!(
                    "{summary}: what the plugin reports stored is not what the destination holds"
                ),
            );
        } else if delivered.stored + dead != delivered.total {
            self.record(
                NAME,
                Status::Fail,
                format!("{summary}: some messages were neither stored nor dead-lettered"),
            );
        } else if load_dead > 0 {
            self.record(
                NAME,
                Status::Fail,
                format!(
                    "{summary}: {load_dead} of {} plain JSON messages were refused",
                    delivered.load
                ),
            );
        } else {
            self.record(NAME, Status::Pass, summary);
        }
    }

    /// `payload-variants`: every variant stored or refused cleanly
    /// (dead-lettered with a reason), none crashing the plugin.
    fn variant_outcomes(&mut self, delivered: &Delivered) {
        const NAME: &str = "payload-variants";
        let outcomes: Vec<String> = delivered
            .variants
            .iter()
            .map(|variant| {
                match delivered
                    .dead_lettered
                    .iter()
                    .find(|(subject, _)| *subject == variant.subject)
                {
                    Some((_, error)) => format!("{} refused ({})", variant.name, one_line(error)),
                    None => format!("{} stored", variant.name),
                }
            })
            .collect();
        if delivered.plugin_faults > 0 {
            self.record(
                NAME,
                Status::Fail,
                format!(
                    "{} plugin faults while delivering the variants and the load: {}",
                    delivered.plugin_faults,
                    outcomes.join(", ")
                ),
            );
        } else {
            self.record(NAME, Status::Pass, outcomes.join(", "));
        }
    }

    /// `metadata-preserved`: the stored record of the JSON variant carries
    /// its message id, subject and a header.
    async fn metadata(&mut self, delivered: Option<&Delivered>) {
        const NAME: &str = "metadata-preserved";
        let Some(lookup) = self.certification.record_lookup.clone() else {
            return self.record(
                NAME,
                Status::Skip,
                "no certification.record_lookup command to read a stored record with",
            );
        };
        let Some(delivered) = delivered else {
            return self.record(NAME, Status::Skip, "not run: the delivery phase failed");
        };
        let Some(variant) = delivered
            .variants
            .iter()
            .find(|variant| variant.name == "json")
        else {
            return self.record(NAME, Status::Skip, "no JSON variant");
        };
        if delivered
            .dead_lettered
            .iter()
            .any(|(subject, _)| *subject == variant.subject)
        {
            return self.record(
                NAME,
                Status::Fail,
                "the JSON variant was refused, so its metadata could not be checked",
            );
        }
        let mut env = self.command_env();
        env.push((
            "SINKHOST_CERTIFY_STREAM_SEQUENCE",
            variant.sequence.to_string(),
        ));
        env.push(("SINKHOST_CERTIFY_MESSAGE_ID", variant.message_id.clone()));
        env.push(("SINKHOST_CERTIFY_SUBJECT", variant.subject.clone()));
        let output = match commands::run(&lookup, &env).await {
            Ok(output) => output,
            Err(err) => {
                return self.record(
                    NAME,
                    Status::Fail,
                    format!("certification.record_lookup: {err}"),
                )
            }
        };
        let marker = self.bus.names.id.clone();
        let missing: Vec<&str> = [
            ("the message id", variant.message_id.as_str()),
            ("the subject", variant.subject.as_str()),
            ("the marker header", marker.as_str()),
        ]
        .into_iter()
        .filter(|(_, needle)| !output.contains(needle))
        .map(|(what, _)| what)
        .collect();
        self.lookups.push(output);
        if missing.is_empty() {
            self.record(
                NAME,
                Status::Pass,
                "the stored record carries the message id, the subject and the headers",
            );
        } else {
            self.record(
                NAME,
                Status::Fail,
                format!("the stored record lacks {}", missing.join(", ")),
            );
        }
    }

    /// `stays-inside-grants`: the host refused nothing, and neither the
    /// canary variable nor the canary file surfaced in a stored record.
    fn grants(&mut self) {
        const NAME: &str = "stays-inside-grants";
        let mut total = 0;
        let mut details = Vec::new();
        for host in &self.hosts {
            let (count, kept) = host.refusals();
            total += count;
            details.extend(
                kept.into_iter()
                    .map(|refusal| format!("{}: {}", refusal.capability, refusal.detail)),
            );
        }
        self.measurements.refusals = total;
        let leaked = self
            .lookups
            .iter()
            .any(|output| output.contains(&self.canary));
        if total > 0 {
            details.truncate(3);
            self.record(
                NAME,
                Status::Fail,
                format!(
                    "the host refused {total} requests outside the grants: {}",
                    details.join("; ")
                ),
            );
        } else if leaked {
            self.record(NAME, Status::Fail, "the canary kept outside the grants (host environment / file) appeared in a stored record");
        } else if self.lookups.is_empty() {
            self.record(
                NAME,
                Status::Pass,
                "no request outside the grants (no record_lookup: canary leaks not checked)",
            );
        } else {
            self.record(NAME, Status::Pass, "no request outside the grants; the canary variable and file never surfaced in a stored record");
        }
    }

    /// `limits`: no trap, timeout or memory fault anywhere in the run.
    fn limits(&mut self, pool: &SinkPool, delivered: Option<&Delivered>) {
        const NAME: &str = "limits";
        let phase_faults = delivered.map(|d| d.plugin_faults).unwrap_or(0);
        let faults = pool.faults_total() + phase_faults;
        self.measurements.plugin_faults = faults;
        let limits = &self.config.plugin.limits;
        if faults == 0 {
            self.record(
                NAME,
                Status::Pass,
                format!(
                    "no trap, timeout or memory fault; slowest direct batch {} ms (call limit {} ms, memory limit {} MiB)",
                    self.measurements.slowest_batch_ms, limits.call_timeout_ms, limits.memory_mb
                ),
            );
        } else {
            let first = self
                .faults
                .first()
                .cloned()
                .unwrap_or_else(|| "during the delivery phase (see the log)".into());
            self.record(
                NAME,
                Status::Fail,
                format!("{faults} plugin faults; first: {first}"),
            );
        }
    }

    /// `throughput-floor`: end-to-end rate of the delivery phase.
    fn throughput(&mut self, delivered: Option<&Delivered>) {
        const NAME: &str = "throughput-floor";
        let Some(delivered) = delivered else {
            return self.record(NAME, Status::Skip, "not run: the delivery phase failed");
        };
        let rate = delivered.total as f64 / delivered.seconds.max(f64::EPSILON);
        self.measurements.messages = delivered.total;
        self.measurements.seconds = delivered.seconds;
        self.measurements.throughput_msgs_per_s = rate;
        let floor = self.certification.throughput_floor_msgs_per_s;
        let detail = format!(
            "{} messages in {:.2} s: {rate:.0} msg/s (floor {floor:.0} msg/s)",
            delivered.total, delivered.seconds
        );
        self.record(
            NAME,
            if rate >= floor {
                Status::Pass
            } else {
                Status::Fail
            },
            detail,
        );
    }

    async fn delete_streams(&self) {
        for stream in [&self.bus.names.stream, &self.bus.names.dlq_stream] {
            if let Err(err) = self.bus.context.delete_stream(stream).await {
                tracing::warn!(%stream, error = %err, "could not delete the certification stream");
            }
        }
    }
}

/// What the delivery phase saw.
struct Delivered {
    total: u64,
    load: u64,
    stored: u64,
    dead_lettered: Vec<(String, String)>,
    new_records: u64,
    seconds: f64,
    plugin_faults: u64,
    variants: Vec<Variant>,
}

/// One published payload variant.
struct Variant {
    name: &'static str,
    subject: String,
    message_id: String,
    sequence: u64,
}

/// The payload variants every sink must store or refuse cleanly.
fn variant_payloads(id: &str) -> Vec<(&'static str, Vec<u8>)> {
    let mut large = format!("{{\"event\":\"large\",\"id\":\"{id}\",\"fill\":\"").into_bytes();
    let closing = b"\"}";
    large.resize(ONE_MIB - closing.len(), b'x');
    large.extend_from_slice(closing);
    vec![
        (
            "json",
            json!({"event": "json", "id": id, "nested": {"list": [1, 2.5, "three", null, true]}})
                .to_string()
                .into_bytes(),
        ),
        (
            "text",
            "plain text, not JSON: ünïcødé ✓".as_bytes().to_vec(),
        ),
        ("empty", Vec::new()),
        ("binary", (0..=255u8).cycle().take(1024).collect()),
        ("large-1mib", large),
        (
            "encrypted",
            json!({"event": "encrypted", "secret": "host-side AES-256-GCM"})
                .to_string()
                .into_bytes(),
        ),
    ]
}

fn one_line(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(160).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_large_variant_is_one_mib_of_json() {
        let variants = variant_payloads("abc");
        let (_, large) = variants
            .iter()
            .find(|(name, _)| *name == "large-1mib")
            .expect("large variant");
        assert_eq!(large.len(), ONE_MIB);
        let parsed: Value = serde_json::from_slice(large).expect("valid JSON");
        assert_eq!(parsed["id"], "abc");
        let names: Vec<&str> = variants.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            ["json", "text", "empty", "binary", "large-1mib", "encrypted"]
        );
    }
}
