//! Retry delays: exponential (or fixed, linear) backoff with jitter, as the
//! reference computes them.

use std::time::Duration;

use rand::Rng;

use crate::config::{BackoffMode, DeliveryConfig, JitterMode};

/// Computes the delay before the next delivery of a message.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    base_ms: u64,
    max_ms: u64,
    mode: BackoffMode,
    multiplier: f64,
    jitter: JitterMode,
    max_retries: u64,
}

impl RetryPolicy {
    /// The policy of a `delivery` section.
    pub fn from_config(delivery: &DeliveryConfig) -> Self {
        Self {
            base_ms: delivery.retry_backoff_ms,
            max_ms: delivery.retry_backoff_max_ms,
            mode: delivery.retry_backoff_mode,
            multiplier: delivery.retry_backoff_multiplier,
            jitter: delivery.retry_jitter,
            max_retries: delivery.max_retries,
        }
    }

    /// Whether a message that failed transiently on delivery `attempt`
    /// (1-based) may be retried, or has used up its retries.
    pub fn may_retry(&self, attempt: u64) -> bool {
        attempt <= self.max_retries
    }

    /// The delay before redelivery after a failure on `attempt` (1-based),
    /// before jitter, capped at `retry_backoff_max_ms`.
    pub fn ceiling(&self, attempt: u64) -> Duration {
        let attempt = attempt.max(1);
        let raw_ms = match self.mode {
            BackoffMode::Fixed => self.base_ms as f64,
            BackoffMode::Linear => self.base_ms as f64 * attempt as f64,
            BackoffMode::Exponential => {
                // Exponent capped so the float never overflows to infinity.
                let exponent = (attempt - 1).min(64) as i32;
                self.base_ms as f64 * self.multiplier.powi(exponent)
            }
        };
        let capped = raw_ms.min(self.max_ms as f64).max(0.0);
        Duration::from_millis(capped as u64)
    }

    /// The delay before redelivery, with jitter applied.
    pub fn delay(&self, attempt: u64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let ceiling_ms = ceiling.as_millis() as u64;
        if ceiling_ms == 0 {
            return Duration::ZERO;
        }
        let mut rng = rand::rng();
        let ms = match self.jitter {
            JitterMode::None => ceiling_ms,
            JitterMode::Full => rng.random_range(0..=ceiling_ms),
            JitterMode::Equal => ceiling_ms / 2 + rng.random_range(0..=ceiling_ms - ceiling_ms / 2),
        };
        Duration::from_millis(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: BackoffMode, jitter: JitterMode) -> RetryPolicy {
        let mut delivery = DeliveryConfig::default();
        delivery.retry_backoff_mode = mode;
        delivery.retry_jitter = jitter;
        RetryPolicy::from_config(&delivery)
    }

    #[test]
    fn exponential_doubles_and_caps() {
        let p = policy(BackoffMode::Exponential, JitterMode::None);
        assert_eq!(p.delay(1), Duration::from_millis(1_000));
        assert_eq!(p.delay(2), Duration::from_millis(2_000));
        assert_eq!(p.delay(4), Duration::from_millis(8_000));
        assert_eq!(p.delay(7), Duration::from_millis(60_000));
        assert_eq!(p.delay(1_000_000), Duration::from_millis(60_000));
    }

    #[test]
    fn linear_and_fixed() {
        assert_eq!(
            policy(BackoffMode::Linear, JitterMode::None).delay(3),
            Duration::from_millis(3_000)
        );
        assert_eq!(
            policy(BackoffMode::Fixed, JitterMode::None).delay(9),
            Duration::from_millis(1_000)
        );
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let full = policy(BackoffMode::Exponential, JitterMode::Full);
        let equal = policy(BackoffMode::Exponential, JitterMode::Equal);
        for _ in 0..1_000 {
            assert!(full.delay(3) <= Duration::from_millis(4_000));
            let d = equal.delay(3);
            assert!(d >= Duration::from_millis(2_000) && d <= Duration::from_millis(4_000));
        }
    }

    #[test]
    fn retries_are_counted_in_deliveries() {
        let p = policy(BackoffMode::Exponential, JitterMode::None);
        // max_retries = 5: deliveries 1..=5 may be retried, the 6th failure is final.
        assert!(p.may_retry(5));
        assert!(!p.may_retry(6));
    }
}
