//! The durable pull consumer: created when missing, bound when present,
//! reconciled on request.

use std::time::Duration;

use anyhow::{bail, Context as _};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy as NatsDeliverPolicy};

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

/// Finds or creates the durable consumer according to
/// `consumer_management.mode`.
pub async fn ensure(
    jetstream: &async_nats::jetstream::Context,
    config: &Config,
) -> anyhow::Result<PullConsumer> {
    let stream_name = &config.nats.stream;
    let consumer_name = &config.nats.consumer;
    let stream = jetstream.get_stream(stream_name).await.with_context(|| {
        format!("JetStream stream `{stream_name}` (nats.stream) is not available; sinkhost does not create streams")
    })?;
    let existing = stream.get_consumer::<pull::Config>(consumer_name).await;
    let desired = desired_config(config);
    match (config.consumer_management.mode, existing) {
        (ConsumerMode::BindOnly, Ok(consumer)) => Ok(consumer),
        (ConsumerMode::BindOnly, Err(err)) => bail!(
            "consumer `{consumer_name}` on stream `{stream_name}` cannot be bound (consumer_management.mode = bind_only): {err}"
        ),
        (ConsumerMode::CreateIfMissing, Ok(mut consumer)) => {
            warn_if_config_differs(&mut consumer, &desired, ack_pending_needed(config)).await;
            Ok(consumer)
        }
        (ConsumerMode::CreateIfMissing, Err(_)) | (ConsumerMode::Reconcile, Err(_)) => {
            tracing::info!(stream = %stream_name, consumer = %consumer_name, "creating durable consumer");
            stream.create_consumer(desired).await.with_context(|| {
                format!("cannot create consumer `{consumer_name}` on stream `{stream_name}`")
            })
        }
        (ConsumerMode::Reconcile, Ok(_)) => {
            tracing::info!(stream = %stream_name, consumer = %consumer_name, "reconciling durable consumer");
            stream.update_consumer(desired).await.with_context(|| {
                format!("cannot reconcile consumer `{consumer_name}` on stream `{stream_name}`")
            })
        }
    }
}

async fn warn_if_config_differs(
    consumer: &mut PullConsumer,
    desired: &pull::Config,
    needed_ack_pending: i64,
) {
    if let Ok(info) = consumer.info().await {
        let actual = &info.config;
        if actual.max_ack_pending > 0 && actual.max_ack_pending < needed_ack_pending {
            tracing::warn!(
                consumer = %info.name,
                max_ack_pending = actual.max_ack_pending,
                needed = needed_ack_pending,
                "existing consumer allows fewer unACKed messages than batch_size x max_in_flight_batches; \
                 batches in flight will wait for each other (raise consumer_management.max_ack_pending and \
                 set consumer_management.mode = reconcile)"
            );
        }
        if actual.filter_subject != desired.filter_subject
            || actual.filter_subjects != desired.filter_subjects
        {
            tracing::warn!(
                consumer = %info.name,
                actual_filter = %actual.filter_subject,
                configured_filter = %desired.filter_subject,
                "existing consumer has a different subject filter than the config; using it as it is (set consumer_management.mode = reconcile to update it)"
            );
        }
    }
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
}
