//! Graceful stop on SIGINT and SIGTERM: stop fetching, finish and settle the
//! batches in flight, flush the ACKs, exit 0. A second signal stops at once
//! (nothing is lost: unACKed messages are redelivered).

use tokio_util::sync::CancellationToken;

/// Installs the signal handlers; the token is cancelled on the first signal.
pub fn install() -> std::io::Result<CancellationToken> {
    use tokio::signal::unix::{signal, SignalKind};
    let token = CancellationToken::new();
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let trigger = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(
            signal = name,
            "stopping: no new fetches; finishing the batches in flight"
        );
        trigger.cancel();
        let second = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::warn!(
            signal = second,
            "second signal: exiting now; unACKed messages will be redelivered"
        );
        std::process::exit(130);
    });
    Ok(token)
}
