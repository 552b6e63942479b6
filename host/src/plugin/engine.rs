//! The wasmtime engine every plugin runs in, and the clock that enforces
//! call deadlines.

use std::time::Duration;

use wasmtime::{Config, Engine};

/// How often the engine's epoch advances. A running call checks its
/// deadline (and yields to the host's executor) at every tick, so deadlines
/// are enforced to within about one tick, and a busy plugin holds a host
/// thread for at most one tick at a time. 10 ms keeps the ticker's own cost
/// negligible (100 wake-ups a second per engine).
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Extra time after a call's deadline before the host gives up on it
/// without waiting for the epoch interrupt. The interrupt only fires while
/// wasm code runs; a call parked in an async host call (a sleep, a poll) is
/// cancelled by this backstop instead.
pub const DEADLINE_GRACE: Duration = Duration::from_millis(100);

/// Builds the engine: component model, async calls, epoch interruption for
/// deadlines. Every setting here is part of the precompiled cache key
/// (through `Engine::precompile_compatibility_hash`).
pub fn build() -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Async calls need no setting in wasmtime 48 (`Config::async_support`
    // is deprecated and ignored); the host only uses the `*_async` APIs.
    config.epoch_interruption(true);
    let engine = Engine::new(&config)?;
    start_epoch_ticker(&engine);
    Ok(engine)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a background thread
/// that ends when the engine is dropped. One thread per engine; the host
/// builds one engine per loaded plugin.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("sinkhost-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        });
    if let Err(err) = spawned {
        // Calls still end at the wall-clock backstop, but a busy plugin can
        // no longer be interrupted: say so loudly.
        tracing::error!(error = %err, "cannot start the epoch thread: plugin calls in busy loops cannot be interrupted");
    }
}

/// The call deadline expressed in epoch ticks (rounded up, at least one),
/// for logs and docs: `call_timeout_ms / 10`.
pub fn ticks_for(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    u64::try_from(timeout.as_nanos().div_ceil(tick).max(1)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_in_ticks_are_never_zero() {
        assert_eq!(ticks_for(Duration::from_millis(10_000)), 1_000);
        assert_eq!(ticks_for(Duration::from_millis(15)), 2);
        assert_eq!(ticks_for(Duration::ZERO), 1);
    }
}
