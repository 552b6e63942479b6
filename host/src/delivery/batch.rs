//! One batch's life after the fetch: screen every message through the
//! security pipeline, write what passed through the plugin, and settle each
//! message by the sink's answer.

use std::sync::Arc;

use crate::security::pipeline::Screening;

use super::apply::{apply, dead_letter, retry_later};
use super::heartbeat::start_heartbeat;
use super::receive::Received;
use super::settle;
use super::stats::Stats;
use super::Shared;

/// Screens a batch, writes what passed through the plugin, and settles
/// every message.
pub(super) async fn process(shared: &Shared, batch: Vec<Received>) {
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
