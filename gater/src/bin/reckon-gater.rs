//! `reckon-gater`: the entry point clients talk to and the registry of workers.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use reckon_gater::config::{GaterConfig, GaterFlags};
use reckon_gater::gateway::Gateway;
use reckon_gater::logging;

/// reckon-gater: the reckon-db gateway.
///
/// Clients and the `reckon` CLI talk to it; nodes register one worker per store with
/// it. It routes writes to each store's leader and spreads reads over healthy
/// workers, failing over within the caller's deadline.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Config layers, lowest first: built-in defaults, the --config file, RECKON_GATER_<KEY> environment variables, then these flags."
)]
struct Args {
    /// TOML config file (see config/gater.toml); it must exist when given.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to serve on (key `listen`, default 127.0.0.1:7700).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Print the effective config (secret masked) and exit.
    #[arg(long)]
    print_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let flags = GaterFlags {
        listen: args.listen,
    };
    let config = match GaterConfig::load(args.config.as_deref(), &flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        print!("{}", config.masked_toml());
        return ExitCode::SUCCESS;
    }
    // Dropped last, after the runtime, so that every line reaches the file.
    let _log = match logging::init(&config.log, LOG_FILE_PREFIX) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    reckon_gater::telemetry::attach_default_handler();
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
    let result = runtime.block_on(run(config));
    drop(runtime);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "reckon-gater stopped on an error");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Log files are `reckon-gater.<date>.log`.
const LOG_FILE_PREFIX: &str = "reckon-gater";

async fn run(config: GaterConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (key \"listen\"): {e}", config.listen))?;
    let local = listener.local_addr()?;
    let gateway = Gateway::new(config.gateway_options());
    println!("reckon-gater ready: listening on {local}");
    let grace = config.shutdown_grace();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let stopped = async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    };
    let mut serving = std::pin::pin!(gateway.serve(listener, stopped));
    tokio::select! {
        _ = &mut serving => return Ok(()),
        _ = shutdown_signal() => {}
    }
    // No new connection or request from here; those already taken get the grace.
    tracing::info!(?grace, "shutting down: draining requests");
    let _ = stop_tx.send(true);
    tokio::select! {
        drained = tokio::time::timeout(grace, &mut serving) => {
            if drained.is_err() {
                tracing::warn!(?grace, "shutdown grace over: cutting off requests still running");
            }
        }
        _ = shutdown_signal() => {
            eprintln!("second signal: exiting at once");
            std::process::exit(1);
        }
    }
    tracing::info!("reckon-gater stopped");
    Ok(())
}

async fn shutdown_signal() {
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
