//! A pool of plugin instances for concurrent batches, which replaces an
//! instance after any fault and slows down while faults keep coming.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::{Instance, PluginFault, PluginHost, WriteOutcome};
use crate::envelope::Envelope;

/// Up to `size` instances, each used by one batch at a time. `Send + Sync`:
/// share it (e.g. in an `Arc`) between the tasks that deliver batches.
///
/// Instances are created lazily (and `init`-ed) when a batch finds no idle
/// one, and reused while healthy. After a fault the instance is dropped with
/// its Store; the next instance is handed out only after the failure
/// backoff: `failure_backoff_ms`, doubling with each consecutive fault up to
/// `failure_backoff_max_ms`, back to nothing after a success.
pub struct SinkPool {
    host: PluginHost,
    slots: Semaphore,
    idle: Mutex<Vec<Instance>>,
    faults_total: AtomicU64,
    consecutive_faults: AtomicU32,
    resume_at: Mutex<Option<Instant>>,
}

impl SinkPool {
    pub(super) fn new(host: PluginHost, size: usize) -> Self {
        Self {
            host,
            slots: Semaphore::new(size.max(1)),
            idle: Mutex::new(Vec::new()),
            faults_total: AtomicU64::new(0),
            consecutive_faults: AtomicU32::new(0),
            resume_at: Mutex::new(None),
        }
    }

    /// Waits for a free instance (creating and `init`-ing one lazily), calls
    /// `write-batch` under the call deadline and returns what the sink
    /// reported. On a fault (trap, timeout, memory limit, failed init,
    /// broken report) the instance is dropped, the fault counted, and the
    /// next instance is handed out only after the failure backoff.
    ///
    /// Cancel-safe: dropping the future drops the instance it was using.
    pub async fn write_batch(&self, batch: &[Envelope]) -> Result<WriteOutcome, PluginFault> {
        let _slot = self.slots.acquire().await.map_err(|_| PluginFault::Init {
            message: "the instance pool is closed".into(),
        })?;
        self.wait_for_backoff().await;
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut instance = match idle {
            Some(instance) => instance,
            None => match self.host.new_instance().await {
                Ok(instance) => instance,
                Err(fault) => return Err(self.record_fault(fault)),
            },
        };
        match self.host.write_batch(&mut instance, batch).await {
            Ok(outcome) => {
                self.consecutive_faults.store(0, Ordering::Relaxed);
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(instance);
                }
                Ok(outcome)
            }
            // The Store may be poisoned: drop the instance with it.
            Err(fault) => Err(self.record_fault(fault)),
        }
    }

    /// Creates and `init`s one instance now rather than at the first batch
    /// (`sinkhost certify` needs `init` done before it breaks the
    /// destination).
    pub async fn warm_up(&self) -> Result<(), PluginFault> {
        let instance = self
            .host
            .new_instance()
            .await
            .map_err(|fault| self.record_fault(fault))?;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(instance);
        }
        Ok(())
    }

    /// Plugin faults (discarded instances and failed instance creations)
    /// since the pool was created.
    pub fn faults_total(&self) -> u64 {
        self.faults_total.load(Ordering::Relaxed)
    }

    fn record_fault(&self, fault: PluginFault) -> PluginFault {
        self.faults_total.fetch_add(1, Ordering::Relaxed);
        let consecutive = self.consecutive_faults.fetch_add(1, Ordering::Relaxed) + 1;
        let delay = self.backoff(consecutive);
        if let Ok(mut resume_at) = self.resume_at.lock() {
            *resume_at = Some(Instant::now() + delay);
        }
        tracing::warn!(
            plugin = %self.host.name(),
            error = %fault,
            consecutive,
            next_instance_in_ms = delay.as_millis() as u64,
            "plugin instance discarded"
        );
        fault
    }

    /// `failure_backoff_ms × 2^(n-1)`, capped at `failure_backoff_max_ms`.
    fn backoff(&self, consecutive: u32) -> Duration {
        let limits = &self.host.inner.limits;
        let exponent = consecutive.saturating_sub(1).min(20);
        let ms = limits
            .failure_backoff_ms
            .saturating_mul(1u64 << exponent)
            .min(limits.failure_backoff_max_ms);
        Duration::from_millis(ms)
    }

    async fn wait_for_backoff(&self) {
        let resume_at = self.resume_at.lock().ok().and_then(|guard| *guard);
        if let Some(at) = resume_at {
            tokio::time::sleep_until(at.into()).await;
        }
    }
}
