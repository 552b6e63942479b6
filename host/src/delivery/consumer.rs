//! The durable pull consumer: created when missing, bound when present,
//! reconciled on request.

use std::time::Duration;

use anyhow::{bail, Context as _};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy as NatsDeliverPolicy};

use crate::config::{Config, ConsumerMode, DeliverPolicy};

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
        desired.backoff = backoff.iter().map(|s| Duration::from_secs_f64(*s)).collect();
    }
    if let Some(max) = management.max_ack_pending {
        desired.max_ack_pending = max;
    }
    if let Some(max) = management.max_waiting {
        desired.max_waiting = max;
    }
    desired
}

/// Finds or creates the durable consumer according to
/// `consumer_management.mode`.
pub async fn ensure(jetstream: &async_nats::jetstream::Context, config: &Config) -> anyhow::Result<PullConsumer> {
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
            warn_if_filter_differs(&mut consumer, &desired).await;
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

async fn warn_if_filter_differs(consumer: &mut PullConsumer, desired: &pull::Config) {
    if let Ok(info) = consumer.info().await {
        let actual = &info.config;
        if actual.filter_subject != desired.filter_subject || actual.filter_subjects != desired.filter_subjects {
            tracing::warn!(
                consumer = %info.name,
                actual_filter = %actual.filter_subject,
                configured_filter = %desired.filter_subject,
                "existing consumer has a different subject filter than the config; using it as it is (set consumer_management.mode = reconcile to update it)"
            );
        }
    }
}
