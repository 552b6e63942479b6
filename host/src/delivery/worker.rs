//! One delivery worker: pull a batch from the consumer, hand it to
//! [`super::batch::process`], repeat until shutdown.

use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;

use super::receive::{self, Received};
use super::stats::Stats;
use super::{Shared, FETCH_RETRY_DELAY};

/// One worker: fetch a batch, write it, settle it; until shutdown.
pub(super) async fn worker(shared: std::sync::Arc<Shared>, worker_id: usize) {
    while !shared.shutdown.is_cancelled() {
        match fetch(&shared).await {
            Ok(batch) if batch.is_empty() => {}
            Ok(batch) => super::batch::process(&shared, batch).await,
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
