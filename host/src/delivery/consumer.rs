//! The durable pull consumer: created when missing, bound when present,
//! reconciled on request.

use std::time::Duration;

use anyhow::{bail, Context as _};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy as NatsDeliverPolicy};
use async_nats::jetstream::context::ConsumerInfoErrorKind;

use super::dlq::StreamIncarnation;
use crate::config::{Config, ConsumerMode, DeliverPolicy};

/// JetStream's default `max_ack_pending` for a consumer created without one.
const SERVER_DEFAULT_MAX_ACK_PENDING: i64 = 1_000;

/// How many messages the host can hold unACKed at once: every in-flight
/// batch full. A consumer that allows fewer stalls the extra pull requests
/// until they expire (each costs `batch_timeout_ms` for nothing).
pub fn ack_pending_needed(config: &Config) -> i64 {
    let needed = config
        .delivery
        .batch_size
        .saturating_mul(config.delivery.max_in_flight_batches);
    i64::try_from(needed).unwrap_or(i64::MAX)
}

/// The consumer the delivery loop pulls from.
pub type PullConsumer = async_nats::jetstream::consumer::Consumer<pull::Config>;

/// The consumer configuration the operator asked for.
pub fn desired_config(config: &Config) -> pull::Config {
    let management = &config.consumer_management;
    let mut desired = pull::Config {
        durable_name: Some(config.nats.consumer.clone()),
        name: Some(config.nats.consumer.clone()),
        description: Some("sinkhost durable consumer".to_string()),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: match management.deliver_policy {
            DeliverPolicy::All => NatsDeliverPolicy::All,
            DeliverPolicy::Last => NatsDeliverPolicy::Last,
            DeliverPolicy::New => NatsDeliverPolicy::New,
            DeliverPolicy::LastPerSubject => NatsDeliverPolicy::LastPerSubject,
        },
        ..Default::default()
    };
    if management.filter_subjects.is_empty() {
        desired.filter_subject = config.nats.subject.clone();
    } else {
        desired.filter_subjects = management.filter_subjects.clone();
    }
    if let Some(seconds) = management.ack_wait_seconds {
        desired.ack_wait = Duration::from_secs_f64(seconds);
    }
    if let Some(max) = management.max_deliver {
        desired.max_deliver = max;
    }
    if let Some(backoff) = &management.backoff_seconds {
        desired.backoff = backoff
            .iter()
            .map(|s| Duration::from_secs_f64(*s))
            .collect();
    }
    match management.max_ack_pending {
        Some(max) => desired.max_ack_pending = max,
        // Unset: the server default, raised when it cannot hold every batch
        // in flight.
        None => {
            let needed = ack_pending_needed(config);
            if needed > SERVER_DEFAULT_MAX_ACK_PENDING {
                desired.max_ack_pending = needed;
            }
        }
    }
    if let Some(max) = management.max_waiting {
        desired.max_waiting = max;
    }
    desired
}

/// A durable consumer bound for delivery, with the incarnation of its stream
/// (for the DLQ records' de-duplication ids).
pub struct Bound {
    /// The consumer to pull from.
    pub consumer: PullConsumer,
    /// When the server created the stream.
    pub incarnation: StreamIncarnation,
}

/// Attempts at looking the consumer up before a failure that is not "not
/// found" stops the start: a slow or leaderless cluster is not a missing
/// consumer, and treating it as one could rewrite a live consumer.
const LOOKUP_ATTEMPTS: u32 = 5;
/// Pause between those attempts.
const LOOKUP_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Finds or creates the durable consumer according to
/// `consumer_management.mode`, and refuses one under which the delivery
/// guarantees cannot hold (see [`incompatibilities`]). A consumer created or
/// reconciled is checked the same way afterwards, so a setting the server
/// did not apply (nats-server before 2.10 ignores `filter_subjects`) is
/// refused instead of silently delivering the wrong subjects.
pub async fn ensure(
    jetstream: &async_nats::jetstream::Context,
    config: &Config,
) -> anyhow::Result<Bound> {
    let stream_name = &config.nats.stream;
    let consumer_name = &config.nats.consumer;
    let stream = jetstream.get_stream(stream_name).await.with_context(|| {
        format!("JetStream stream `{stream_name}` (nats.stream) is not available; sinkhost does not create streams")
    })?;
    let incarnation = StreamIncarnation {
        created_ns: stream.cached_info().created.unix_timestamp_nanos(),
    };
    let existing = look_up(&stream, consumer_name).await?;
    let desired = desired_config(config);
    let mode = config.consumer_management.mode;
    let created = existing.is_none();
    let mut consumer: PullConsumer = match (mode, existing) {
        (ConsumerMode::BindOnly, None) => bail!(
            "consumer `{consumer_name}` does not exist on stream `{stream_name}` (consumer_management.mode = bind_only: sinkhost does not create it)"
        ),
        (ConsumerMode::BindOnly | ConsumerMode::CreateIfMissing, Some(info)) => {
            refuse_incompatible(&as_pull(&info.config, consumer_name)?, config, "bound")?;
            if info.config.max_ack_pending > 0
                && info.config.max_ack_pending < ack_pending_needed(config)
            {
                tracing::warn!(
                    consumer = %info.name,
                    max_ack_pending = info.config.max_ack_pending,
                    needed = ack_pending_needed(config),
                    "existing consumer allows fewer unACKed messages than batch_size x max_in_flight_batches; \
                     batches in flight will wait for each other (raise consumer_management.max_ack_pending and \
                     set consumer_management.mode = reconcile)"
                );
            }
            stream.get_consumer(consumer_name).await.map_err(|err| {
                anyhow::anyhow!("cannot bind consumer `{consumer_name}` on stream `{stream_name}`: {err}")
            })?
        }
        (ConsumerMode::CreateIfMissing | ConsumerMode::Reconcile, None) => {
            tracing::info!(stream = %stream_name, consumer = %consumer_name, "creating durable consumer");
            stream.create_consumer(desired).await.with_context(|| {
                format!("cannot create consumer `{consumer_name}` on stream `{stream_name}`")
            })?
        }
        (ConsumerMode::Reconcile, Some(info)) => {
            tracing::info!(stream = %stream_name, consumer = %consumer_name, "reconciling durable consumer");
            let updated = reconciled(as_pull(&info.config, consumer_name)?, config);
            stream.update_consumer(updated).await.with_context(|| {
                format!("cannot reconcile consumer `{consumer_name}` on stream `{stream_name}`")
            })?
        }
    };
    let applied = consumer
        .info()
        .await
        .with_context(|| format!("reading back consumer `{consumer_name}`"))?
        .config
        .clone();
    if let Err(refusal) = refuse_incompatible(
        &as_pull(&applied, consumer_name)?,
        config,
        "as the server applied it",
    ) {
        if created {
            // Ours and never pulled from: remove it, so that the next start
            // with a corrected config creates it afresh.
            if let Err(err) = stream.delete_consumer(consumer_name).await {
                tracing::warn!(consumer = %consumer_name, error = %err, "could not delete the consumer the server created differently");
            }
        }
        return Err(refusal);
    }
    Ok(Bound {
        consumer,
        incarnation,
    })
}

/// A consumer's settings as a pull consumer's; a push consumer is refused.
fn as_pull(
    settings: &async_nats::jetstream::consumer::Config,
    consumer_name: &str,
) -> anyhow::Result<pull::Config> {
    use async_nats::jetstream::consumer::FromConsumer as _;
    pull::Config::try_from_consumer_config(settings.clone()).map_err(|err| {
        anyhow::anyhow!(
            "consumer `{consumer_name}` is not a pull consumer (deliver_subject is set): {err}"
        )
    })
}

/// The consumer's info, `None` only when the server says it does not exist.
async fn look_up(
    stream: &async_nats::jetstream::stream::Stream,
    consumer_name: &str,
) -> anyhow::Result<Option<async_nats::jetstream::consumer::Info>> {
    let mut attempt = 1;
    loop {
        match stream.consumer_info(consumer_name).await {
            Ok(info) => return Ok(Some(info)),
            Err(err) if matches!(err.kind(), ConsumerInfoErrorKind::NotFound) => return Ok(None),
            Err(err) if attempt >= LOOKUP_ATTEMPTS => {
                bail!("cannot tell whether consumer `{consumer_name}` exists ({LOOKUP_ATTEMPTS} attempts): {err}")
            }
            Err(err) => {
                tracing::warn!(consumer = %consumer_name, error = %err, attempt, "consumer lookup failed; trying again");
                attempt += 1;
                tokio::time::sleep(LOOKUP_RETRY_DELAY).await;
            }
        }
    }
}

fn refuse_incompatible(actual: &pull::Config, config: &Config, how: &str) -> anyhow::Result<()> {
    let problems = incompatibilities(actual, config);
    if problems.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
    bail!(
        "consumer `{}` {how} cannot be used safely: {} (change the consumer, or set consumer_management.mode = reconcile)",
        config.nats.consumer,
        list.join("; ")
    )
}

/// One reason an existing consumer cannot be used, naming its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// The consumer's field, as JetStream names it.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl std::fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.field, self.problem)
    }
}

/// Why the consumer `actual` cannot carry this config's guarantees: ACKs
/// that are not per message, payloads withheld, other subjects, a
/// redelivery budget that runs out before the DLQ takes over, redelivery
/// sooner than the heartbeats, or pull limits the host's pulls exceed.
pub fn incompatibilities(actual: &pull::Config, config: &Config) -> Vec<Incompatibility> {
    let mut problems = Vec::new();
    let mut add =
        |field: &'static str, problem: String| problems.push(Incompatibility { field, problem });
    if actual.ack_policy != AckPolicy::Explicit {
        add(
            "ack_policy",
            format!(
                "is {:?}: sinkhost ACKs each message after it is stored and needs explicit",
                actual.ack_policy
            )
            .to_lowercase(),
        );
    }
    if actual.headers_only {
        add(
            "headers_only",
            "is true: the sink would get no payloads".into(),
        );
    }
    let desired = desired_config(config);
    let actual_filters = filters(actual);
    let wanted_filters = filters(&desired);
    if actual_filters != wanted_filters {
        add(
            "filter_subjects",
            format!(
                "is [{}], the config asks for [{}]",
                actual_filters.join(", "),
                wanted_filters.join(", ")
            ),
        );
    }
    let budget = config.delivery.max_retries.saturating_add(1);
    if config.max_deliver_ends_before_the_dlq(actual.max_deliver) {
        add(
            "max_deliver",
            format!(
                "is {}: JetStream would stop redelivering before attempt {} dead-letters the message (needs more than delivery.max_retries + 1 = {budget}, or -1)",
                actual.max_deliver,
                budget
            ),
        );
    }
    if let Some(interval) = heartbeat_interval(config) {
        let shortest_backoff = actual.backoff.iter().min();
        if let Some(shortest) = shortest_backoff.filter(|shortest| **shortest <= interval) {
            add(
                "backoff",
                format!(
                    "has a delay of {} ms, not longer than delivery.in_progress.interval_ms ({} ms): messages would be redelivered while being written",
                    shortest.as_millis(),
                    interval.as_millis()
                ),
            );
        }
        if actual.ack_wait > Duration::ZERO && actual.ack_wait <= interval {
            add(
                "ack_wait",
                format!(
                    "is {} ms, not longer than delivery.in_progress.interval_ms ({} ms)",
                    actual.ack_wait.as_millis(),
                    interval.as_millis()
                ),
            );
        }
    }
    let workers = i64::try_from(config.delivery.max_in_flight_batches).unwrap_or(i64::MAX);
    if actual.max_waiting > 0 && actual.max_waiting < workers {
        add(
            "max_waiting",
            format!(
                "is {}, below delivery.max_in_flight_batches ({workers}) pull requests",
                actual.max_waiting
            ),
        );
    }
    let batch = i64::try_from(config.delivery.batch_size).unwrap_or(i64::MAX);
    if actual.max_batch > 0 && actual.max_batch < batch {
        add(
            "max_batch",
            format!(
                "is {}, below delivery.batch_size ({batch})",
                actual.max_batch
            ),
        );
    }
    let expires = Duration::from_millis(config.delivery.batch_timeout_ms);
    if actual.max_expires > Duration::ZERO && actual.max_expires < expires {
        add(
            "max_expires",
            format!(
                "is {} ms, below delivery.batch_timeout_ms ({} ms)",
                actual.max_expires.as_millis(),
                expires.as_millis()
            ),
        );
    }
    problems
}

/// The consumer's subject filters as one sorted list (`filter_subject` and
/// `filter_subjects` are two spellings of the same thing).
fn filters(consumer: &pull::Config) -> Vec<String> {
    let mut all: Vec<String> = consumer.filter_subjects.clone();
    if !consumer.filter_subject.is_empty() {
        all.push(consumer.filter_subject.clone());
    }
    all.sort();
    all.dedup();
    all
}

fn heartbeat_interval(config: &Config) -> Option<Duration> {
    let in_progress = &config.delivery.in_progress;
    in_progress
        .enabled
        .then(|| Duration::from_millis(in_progress.interval_ms))
}

/// `existing` with only what the config sets changed: a setting the
/// operator left out keeps the consumer's value.
pub fn reconciled(existing: pull::Config, config: &Config) -> pull::Config {
    let desired = desired_config(config);
    let management = &config.consumer_management;
    let mut updated = existing;
    updated.ack_policy = desired.ack_policy;
    updated.headers_only = false;
    updated.filter_subject = desired.filter_subject;
    updated.filter_subjects = desired.filter_subjects;
    if management.ack_wait_seconds.is_some() {
        updated.ack_wait = desired.ack_wait;
    }
    if management.max_deliver.is_some() {
        updated.max_deliver = desired.max_deliver;
    }
    if management.backoff_seconds.is_some() {
        updated.backoff = desired.backoff;
    }
    if management.max_ack_pending.is_some() || desired.max_ack_pending > updated.max_ack_pending {
        updated.max_ack_pending = desired.max_ack_pending;
    }
    if management.max_waiting.is_some() {
        updated.max_waiting = desired.max_waiting;
    }
    updated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(delivery: &str, management: &str) -> Config {
        let text = format!(
            r#"{{"nats": {{"url": "nats://127.0.0.1:4222", "stream": "S", "consumer": "c", "subject": "s.>"}},
                "delivery": {delivery}, "consumer_management": {management},
                "plugin": {{"path": "p.wasm"}}, "sink": {{}}}}"#
        );
        Config::from_json_str(&text).expect("valid test config")
    }

    #[test]
    fn max_ack_pending_covers_every_batch_in_flight() {
        let small = desired_config(&config_with(
            r#"{"batch_size": 100, "max_in_flight_batches": 2}"#,
            "{}",
        ));
        assert_eq!(
            small.max_ack_pending,
            pull::Config::default().max_ack_pending,
            "server default kept"
        );
        let large = desired_config(&config_with(
            r#"{"batch_size": 1000, "max_in_flight_batches": 4}"#,
            "{}",
        ));
        assert_eq!(large.max_ack_pending, 4_000);
        let explicit = desired_config(&config_with(
            r#"{"batch_size": 1000, "max_in_flight_batches": 4}"#,
            r#"{"max_ack_pending": 500}"#,
        ));
        assert_eq!(explicit.max_ack_pending, 500, "the operator's value wins");
    }

    fn fields(actual: &pull::Config, config: &Config) -> Vec<&'static str> {
        incompatibilities(actual, config)
            .into_iter()
            .map(|problem| problem.field)
            .collect()
    }

    fn with_dlq() -> Config {
        let text = r#"{"nats": {"url": "nats://127.0.0.1:4222", "stream": "S", "consumer": "c", "subject": "s.>"},
            "delivery": {"max_retries": 5, "batch_size": 100, "max_in_flight_batches": 2},
            "dead_letter": {"enabled": true, "subject": "dlq.s"},
            "plugin": {"path": "p.wasm"}, "sink": {}}"#;
        Config::from_json_str(text).expect("valid test config")
    }

    #[test]
    fn the_consumer_sinkhost_creates_is_compatible() {
        let config = with_dlq();
        assert!(incompatibilities(&desired_config(&config), &config).is_empty());
    }

    #[test]
    fn each_unsafe_existing_setting_is_named() {
        let config = with_dlq();
        let good = desired_config(&config);
        let cases: Vec<(&str, pull::Config)> = vec![
            (
                "ack_policy",
                pull::Config {
                    ack_policy: AckPolicy::All,
                    ..good.clone()
                },
            ),
            (
                "ack_policy",
                pull::Config {
                    ack_policy: AckPolicy::None,
                    ..good.clone()
                },
            ),
            (
                "headers_only",
                pull::Config {
                    headers_only: true,
                    ..good.clone()
                },
            ),
            (
                "filter_subjects",
                pull::Config {
                    filter_subject: "s.other".into(),
                    ..good.clone()
                },
            ),
            (
                "filter_subjects",
                pull::Config {
                    filter_subject: String::new(),
                    ..good.clone()
                },
            ),
            (
                "max_deliver",
                pull::Config {
                    max_deliver: 6,
                    ..good.clone()
                },
            ),
            (
                "max_deliver",
                pull::Config {
                    max_deliver: 1,
                    ..good.clone()
                },
            ),
            (
                "backoff",
                pull::Config {
                    backoff: vec![Duration::from_secs(60), Duration::from_secs(2)],
                    ..good.clone()
                },
            ),
            (
                "ack_wait",
                pull::Config {
                    ack_wait: Duration::from_secs(5),
                    ..good.clone()
                },
            ),
            (
                "max_waiting",
                pull::Config {
                    max_waiting: 1,
                    ..good.clone()
                },
            ),
            (
                "max_batch",
                pull::Config {
                    max_batch: 10,
                    ..good.clone()
                },
            ),
            (
                "max_expires",
                pull::Config {
                    max_expires: Duration::from_millis(100),
                    ..good.clone()
                },
            ),
        ];
        for (field, actual) in cases {
            assert_eq!(fields(&actual, &config), vec![field], "{actual:?}");
        }
        let enough = pull::Config {
            max_deliver: 7,
            backoff: vec![Duration::from_secs(6)],
            ..good.clone()
        };
        assert!(
            fields(&enough, &config).is_empty(),
            "max_deliver 7 leaves attempt 6 to dead-letter"
        );
    }

    #[test]
    fn the_redelivery_budget_matters_only_with_a_dlq() {
        let no_dlq = config_with(r#"{"max_retries": 5}"#, "{}");
        let actual = pull::Config {
            max_deliver: 3,
            ..desired_config(&no_dlq)
        };
        assert!(fields(&actual, &no_dlq).is_empty());
    }

    #[test]
    fn reconcile_changes_only_what_the_config_sets() {
        let config = config_with("{}", r#"{"mode": "reconcile", "ack_wait_seconds": 90}"#);
        let existing = pull::Config {
            durable_name: Some("c".into()),
            ack_policy: AckPolicy::All,
            filter_subject: "s.old".into(),
            max_deliver: 50,
            ack_wait: Duration::from_secs(10),
            max_waiting: 64,
            description: Some("the operator's".into()),
            ..Default::default()
        };
        let updated = reconciled(existing, &config);
        assert_eq!(updated.ack_policy, AckPolicy::Explicit);
        assert_eq!(updated.filter_subject, "s.>");
        assert_eq!(updated.ack_wait, Duration::from_secs(90));
        assert_eq!(updated.max_deliver, 50, "not set in the config: kept");
        assert_eq!(updated.max_waiting, 64, "not set in the config: kept");
        assert_eq!(updated.description.as_deref(), Some("the operator's"));
    }
}
