//! What the `reckon-node` and `reckon-gater` binaries share between parsing their
//! flags and running their server: logging, the default telemetry handler, the async
//! runtime, the stop signals and the exit status.

use std::future::Future;
use std::process::ExitCode;

use crate::logging::{self, LogConfig};

/// Exit status when the configuration or logging cannot be set up: a usage error.
pub const EXIT_USAGE: u8 = 2;

/// Sets up logging from `log` (daily files `<prefix>.<date>.log` when it names a
/// directory), attaches the default telemetry handler, runs `body` on a fresh
/// multi-threaded runtime and gives the exit status: success, 1 when `body` failed
/// (logged and printed as `error: ...`), or [`EXIT_USAGE`] when logging could not
/// start.
///
/// Tasks still running when `body` returns (requests past a drain's grace) are cut
/// off before the log is flushed, so that every line reaches it.
pub fn run_binary<F, Fut>(name: &str, log: &LogConfig, prefix: &str, body: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    // Dropped last, after the runtime, so that every line reaches the file.
    let _log = match logging::init(log, prefix) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    crate::telemetry::attach_default_handler();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(body());
    drop(runtime);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "{name} stopped on an error");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT; a second one ends the process at once
/// with status 1 (an operator who does not want to wait for the drain). Call it
/// inside the runtime.
pub fn stop_signal() -> impl Future<Output = ()> {
    let (first, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        signal().await;
        let _ = first.send(());
        signal().await;
        eprintln!("second signal: exiting at once");
        std::process::exit(1);
    });
    async move {
        let _ = rx.await;
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
