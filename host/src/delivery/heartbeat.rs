//! In-progress heartbeats: keep JetStream from redelivering a batch while
//! the sink is still writing it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;

use super::Shared;

/// Sends in-progress heartbeats for the batch until aborted.
pub(super) fn start_heartbeat(
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
