//! The delivery runtime: pulls batches from the durable JetStream consumer,
//! hands them to the sink, and settles every message only after the sink
//! answered. Commit first, ACK last:
//!
//! - ACK only what the sink reported as stored durably;
//! - NAK with backoff what failed transiently (and what a plugin fault hit);
//! - dead-letter what failed permanently (or ran out of retries), and ACK it
//!   only once the DLQ stream confirmed the publish;
//! - anything else stays unACKed and is redelivered by JetStream.
//!
//! `max_in_flight_batches` workers each pull, write and settle their own
//! batches concurrently, each on its own plugin instance.

pub mod connect;
pub mod consumer;
pub mod dlq;
pub mod receive;
pub mod retry;
pub mod settle;
pub mod shutdown;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::AckKind;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TemporaryFailureAction};
use crate::envelope::Envelope;
use crate::plugin::{PluginHost, SinkPool};
use crate::security::pipeline::{Screening, SecurityPipeline};

use receive::Received;
use retry::RetryPolicy;
use settle::Disposition;
use stats::{Stats, StatsSnapshot};

/// Pause after a failed fetch (server gone, consumer missing) before trying again.
const FETCH_RETRY_DELAY: Duration = Duration::from_millis(500);
/// How often the counters are logged while running.
const STATS_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// Everything a worker needs, shared by all workers.
struct Shared {
    config: Config,
    jetstream: async_nats::jetstream::Context,
    consumer: consumer::PullConsumer,
    /// The source stream's incarnation, for the DLQ records' ids.
    incarnation: dlq::StreamIncarnation,
    pool: SinkPool,
    security: SecurityPipeline,
    retry: RetryPolicy,
    stats: Stats,
    shutdown: CancellationToken,
}

/// Connects, ensures the consumer, and runs until `shutdown` is cancelled.
/// Returns the final counters after the in-flight batches were settled.
pub async fn run(
    config: Config,
    plugin: PluginHost,
    security: SecurityPipeline,
    shutdown: CancellationToken,
) -> anyhow::Result<StatsSnapshot> {
    let client = connect::connect(&config.nats).await?;
    let jetstream = async_nats::jetstream::new(client.clone());
    let bound = consumer::ensure(&jetstream, &config).await?;
    let workers = config.delivery.max_in_flight_batches;
    let shared = Arc::new(Shared {
        retry: RetryPolicy::from_config(&config.delivery),
        pool: plugin.pool(workers),
        security,
        config,
        jetstream,
        consumer: bound.consumer,
        incarnation: bound.incarnation,
        stats: Stats::default(),
        shutdown,
    });
    tracing::info!(
        stream = %shared.config.nats.stream,
        consumer = %shared.config.nats.consumer,
        subject = %shared.config.nats.subject,
        batch_size = shared.config.delivery.batch_size,
        max_in_flight_batches = workers,
        elapsed_ms = crate::logging::millis_since_start() as u64,
        "delivering"
    );

    let mut tasks = tokio::task::JoinSet::new();
    for worker_id in 0..workers {
        let shared = Arc::clone(&shared);
        tasks.spawn(async move { worker(shared, worker_id).await });
    }
    let stats_logger = tokio::spawn(log_stats_periodically(Arc::clone(&shared)));

    shared.shutdown.cancelled().await;
    let drain = Duration::from_secs(shared.config.nats.drain_timeout_seconds);
    let drained = tokio::time::timeout(drain, async {
        while let Some(joined) = tasks.join_next().await {
            if let Err(err) = joined {
                tracing::error!(error = %err, "delivery worker ended abnormally");
            }
        }
    })
    .await;
    stats_logger.abort();
    // ACKs are buffered publishes: make sure they reached the server.
    client
        .flush()
        .await
        .context("flushing ACKs to NATS at shutdown")?;
    let snapshot = shared.stats.snapshot();
    tracing::info!(?snapshot, "stopped");
    if drained.is_err() {
        anyhow::bail!(
            "batches still in flight after nats.drain_timeout_seconds = {}s; they were not ACKed and will be redelivered",
            drain.as_secs()
        );
    }
    Ok(snapshot)
}

async fn log_stats_periodically(shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(STATS_LOG_INTERVAL);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let snapshot = shared.stats.snapshot();
        tracing::info!(
            ?snapshot,
            faults = shared.pool.faults_total(),
            "delivery counters"
        );
    }
}

/// One worker: fetch a batch, write it, settle it; until shutdown.
async fn worker(shared: Arc<Shared>, worker_id: usize) {
    while !shared.shutdown.is_cancelled() {
        match fetch(&shared).await {
            Ok(batch) if batch.is_empty() => {}
            Ok(batch) => process(&shared, batch).await,
            Err(err) => {
                tracing::warn!(worker = worker_id, error = %err, "fetch failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(FETCH_RETRY_DELAY) => {}
                    _ = shared.shutdown.cancelled() => {}
                }
            }
        }
    }
    tracing::debug!(worker = worker_id, "worker stopped");
}

/// Pulls up to `batch_size` messages, waiting at most `batch_timeout_ms`.
async fn fetch(shared: &Shared) -> anyhow::Result<Vec<Received>> {
    let delivery = &shared.config.delivery;
    let mut messages = shared
        .consumer
        .batch()
        .max_messages(delivery.batch_size)
        .expires(Duration::from_millis(delivery.batch_timeout_ms))
        .messages()
        .await
        .context("pull request")?;
    let mut batch = Vec::with_capacity(delivery.batch_size);
    while let Some(message) = messages.next().await {
        let message = match message {
            Ok(message) => message,
            Err(err) if batch.is_empty() => return Err(anyhow::anyhow!("pull: {err}")),
            Err(err) => {
                // Keep what we have: those messages are ours until settled.
                tracing::warn!(error = %err, "pull ended early");
                break;
            }
        };
        match receive::receive(message, receive::now_ns()) {
            Ok(received) => batch.push(received),
            Err(err) => {
                tracing::error!(error = %err, "skipping unreadable message; it stays unACKed")
            }
        }
    }
    Stats::add(&shared.stats.fetched, batch.len() as u64);
    Ok(batch)
}

/// Screens a batch, writes what passed through the plugin, and settles
/// every message.
async fn process(shared: &Shared, batch: Vec<Received>) {
    let mut envelopes = Vec::with_capacity(batch.len());
    let mut ackers = Vec::with_capacity(batch.len());
    for received in batch {
        match shared.security.screen(received.envelope) {
            Screening::Pass(envelope) => {
                envelopes.push(envelope);
                ackers.push(received.acker);
            }
            Screening::Reject {
                envelope,
                error_type,
                error,
            } => {
                Stats::add(&shared.stats.rejected, 1);
                dead_letter(shared, &envelope, &received.acker, error_type, &error).await;
            }
            Screening::Retry { envelope, reason } => {
                tracing::error!(stream_sequence = envelope.stream_sequence, %reason, "cannot prepare message; will retry");
                retry_later(
                    shared,
                    &received.acker,
                    shared.retry.delay(envelope.delivery_count),
                )
                .await;
            }
        }
    }
    if envelopes.is_empty() {
        return;
    }
    let ackers = Arc::new(ackers);
    let attempts: Vec<u64> = envelopes.iter().map(|e| e.delivery_count).collect();

    let heartbeat = start_heartbeat(shared, Arc::clone(&ackers));
    Stats::add(&shared.stats.batches, 1);
    let outcome = shared.pool.write_batch(&envelopes).await;
    if let Some(heartbeat) = heartbeat {
        heartbeat.abort();
    }
    if let Err(fault) = &outcome {
        Stats::add(&shared.stats.plugin_faults, 1);
        tracing::warn!(error = %fault, batch = envelopes.len(), "plugin fault: batch not ACKed, instance replaced");
    }
    let dispositions = settle::settle(&outcome, &attempts, &shared.retry);
    for ((envelope, acker), disposition) in envelopes.iter().zip(ackers.iter()).zip(dispositions) {
        apply(shared, envelope, acker, disposition).await;
    }
}

/// Sends in-progress heartbeats for the batch until aborted.
fn start_heartbeat(
    shared: &Shared,
    ackers: Arc<Vec<async_nats::jetstream::message::Acker>>,
) -> Option<tokio::task::JoinHandle<()>> {
    let settings = &shared.config.delivery.in_progress;
    if !settings.enabled {
        return None;
    }
    let interval = Duration::from_millis(settings.interval_ms);
    let max_heartbeats = settings.max_heartbeats;
    Some(tokio::spawn(async move {
        for _ in 0..max_heartbeats {
            tokio::time::sleep(interval).await;
            for acker in ackers.iter() {
                if let Err(err) = acker.ack_with(AckKind::Progress).await {
                    tracing::warn!(error = %err, "in-progress heartbeat failed");
                    return;
                }
            }
            tracing::debug!(messages = ackers.len(), "in-progress heartbeat sent");
        }
    }))
}

/// Carries out one message's disposition.
async fn apply(
    shared: &Shared,
    envelope: &Envelope,
    acker: &async_nats::jetstream::message::Acker,
    disposition: Disposition,
) {
    match disposition {
        Disposition::Ack => {
            if ack(shared, acker, AckKind::Ack).await {
                Stats::add(&shared.stats.stored, 1);
            }
        }
        Disposition::Retry { delay, reason } => {
            tracing::debug!(
                stream_sequence = envelope.stream_sequence,
                attempt = envelope.delivery_count,
                delay_ms = delay.as_millis() as u64,
                %reason,
                "will retry"
            );
            retry_later(shared, acker, delay).await;
        }
        Disposition::DeadLetter { error_type, error } => {
            dead_letter(shared, envelope, acker, error_type, &error).await
        }
    }
}

async fn retry_later(
    shared: &Shared,
    acker: &async_nats::jetstream::message::Acker,
    delay: Duration,
) {
    Stats::add(&shared.stats.retried, 1);
    if shared.config.delivery.temporary_failure_action == TemporaryFailureAction::Nak {
        ack(shared, acker, AckKind::Nak(Some(delay))).await;
    }
}

async fn dead_letter(
    shared: &Shared,
    envelope: &Envelope,
    acker: &async_nats::jetstream::message::Acker,
    error_type: &'static str,
    error: &str,
) {
    let dead_letter = &shared.config.dead_letter;
    let Some(subject) = dead_letter.active_subject() else {
        tracing::error!(
            stream_sequence = envelope.stream_sequence,
            subject = %envelope.subject,
            error_type,
            %error,
            "permanent failure and no dead_letter configured: message left unACKed (redelivered after the longest backoff)"
        );
        let delay = shared.retry.ceiling(u64::MAX);
        retry_later(shared, acker, delay).await;
        return;
    };
    match dlq::publish(
        &shared.jetstream,
        subject,
        &shared.incarnation,
        envelope,
        error_type,
        error,
        dead_letter,
    )
    .await
    {
        Ok(()) => {
            let kind = if dead_letter.ack_term_after_publish {
                AckKind::Term
            } else {
                AckKind::Ack
            };
            if ack(shared, acker, kind).await {
                Stats::add(&shared.stats.dead_lettered, 1);
            }
            tracing::warn!(
                stream_sequence = envelope.stream_sequence,
                subject = %envelope.subject,
                error_type,
                %error,
                "dead-lettered"
            );
        }
        Err(err) => {
            Stats::add(&shared.stats.dead_letter_failures, 1);
            tracing::error!(
                stream_sequence = envelope.stream_sequence,
                error = %err,
                "dead-letter publish not confirmed: message NOT ACKed; it will be redelivered"
            );
            let delay = shared.retry.delay(envelope.delivery_count);
            retry_later(shared, acker, delay).await;
        }
    }
}

/// Sends an ACK, NAK or TERM. A failure only means redelivery later.
async fn ack(
    shared: &Shared,
    acker: &async_nats::jetstream::message::Acker,
    kind: AckKind,
) -> bool {
    match acker.ack_with(kind).await {
        Ok(()) => true,
        Err(err) => {
            Stats::add(&shared.stats.ack_failures, 1);
            tracing::warn!(error = %err, ?kind, "could not settle message; it will be redelivered");
            false
        }
    }
}
