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

mod apply;
mod batch;
pub mod connect;
pub mod consumer;
pub mod dlq;
mod heartbeat;
pub mod receive;
pub mod retry;
pub mod settle;
pub mod shutdown;
pub mod stats;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::plugin::{PluginHost, SinkPool};
use crate::security::pipeline::SecurityPipeline;

use retry::RetryPolicy;
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
        tasks.spawn(async move { worker::worker(shared, worker_id).await });
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
