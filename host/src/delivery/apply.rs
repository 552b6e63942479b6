//! Carrying out a message's disposition: ACK, NAK with a delay, or
//! dead-letter (publish to the DLQ, ACK only once the publish is confirmed).

use std::time::Duration;

use async_nats::jetstream::AckKind;

use crate::config::TemporaryFailureAction;
use crate::envelope::Envelope;

use super::dlq;
use super::settle::Disposition;
use super::stats::Stats;
use super::Shared;

/// Carries out one message's disposition.
pub(super) async fn apply(
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

pub(super) async fn retry_later(
    shared: &Shared,
    acker: &async_nats::jetstream::message::Acker,
    delay: Duration,
) {
    Stats::add(&shared.stats.retried, 1);
    if shared.config.delivery.temporary_failure_action == TemporaryFailureAction::Nak {
        ack(shared, acker, AckKind::Nak(Some(delay))).await;
    }
}

pub(super) async fn dead_letter(
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
