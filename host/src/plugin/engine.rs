//! The wasmtime engine every plugin runs in, and the clock that enforces
//! call deadlines.

use std::time::Duration;

use wasmtime::{Config, Engine};

/// How often the epoch advances. A call deadline is counted in these ticks,
/// so a deadline is enforced to within about one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Builds the engine: component model, async calls (so a running plugin
/// yields to the host's other work at every tick), epoch interruption for
/// deadlines, and a start-of-call stack limit.
pub fn build() -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    let engine = Engine::new(&config)?;
    start_epoch_ticker(&engine);
    Ok(engine)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a background thread
/// that ends when the engine is dropped.
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
        // Without the ticker no deadline fires: say so loudly.
        tracing::error!(error = %err, "cannot start the epoch thread: plugin call deadlines are not enforced");
    }
}

/// Ticks in a deadline of `millis` (at least one).
pub fn ticks_for(millis: u64) -> u64 {
    (millis / EPOCH_TICK.as_millis() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_down_to_ticks_but_never_zero() {
        assert_eq!(ticks_for(10_000), 1_000);
        assert_eq!(ticks_for(15), 1);
        assert_eq!(ticks_for(0), 1);
    }
}
