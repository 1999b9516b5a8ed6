//! `reckon-gater`: the entry point clients talk to and the registry of workers.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use reckon_gater::config::{GaterConfig, GaterFlags};
use reckon_gater::gateway::Gateway;
use reckon_gater::kurrent::{self, KurrentOptions};
use reckon_gater::startup;

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
            return ExitCode::from(startup::EXIT_USAGE);
        }
    };
    if args.print_config {
        print!("{}", config.masked_toml());
        return ExitCode::SUCCESS;
    }
    let log = config.log.clone();
    startup::run_binary("reckon-gater", &log, LOG_FILE_PREFIX, || run(config))
}

/// Log files are `reckon-gater.<date>.log`.
const LOG_FILE_PREFIX: &str = "reckon-gater";

async fn run(config: GaterConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (key \"listen\"): {e}", config.listen))?;
    let local = listener.local_addr()?;
    let tls = config.load_tls()?;
    match &tls {
        Some(tls) => tracing::info!(identity = ?tls.own_role(), "serving with TLS"),
        None if config.insecure => tracing::warn!(
            listen = %local,
            "insecure = true: serving without TLS; anyone who can reach this address can read and change every store"
        ),
        None => {}
    }
    // Bound before anything is served, so that a taken port stops the start.
    let kurrent_listener = match config.kurrent_addr()? {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on {addr} (key \"kurrent_listen\"): {e}")
        })?),
        None => None,
    };
    let gateway = Gateway::new(config.gateway_options_with(tls.clone())?);
    if !config.tokens.is_empty() || !config.clients.is_empty() {
        tracing::info!(
            tokens = config.tokens.len(),
            clients = config.clients.len(),
            "clients must authenticate"
        );
    }
    println!("reckon-gater ready: listening on {local}");
    let grace = config.shutdown_grace();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let kurrent = match kurrent_listener {
        Some(listener) => {
            let addr = listener.local_addr()?;
            let options = KurrentOptions {
                store: config.kurrent_store.clone(),
                tls,
                advertise: None,
            };
            let (gateway, shutdown) = (gateway.clone(), stopped(stop_rx.clone()));
            println!("reckon-gater ready: KurrentDB front door listening on {addr}");
            Some(tokio::spawn(async move {
                if let Err(e) = kurrent::serve(listener, gateway, options, shutdown).await {
                    tracing::error!(error = %e, "the KurrentDB front door stopped");
                }
            }))
        }
        None => None,
    };
    let stopped = stopped(stop_rx);
    let mut serving = std::pin::pin!(gateway.serve(listener, stopped));
    tokio::select! {
        _ = &mut serving => return Ok(()),
        _ = startup::stop_signal() => {}
    }
    // No new connection or request from here; those already taken get the grace (a
    // second signal ends the process at once).
    tracing::info!(?grace, "shutting down: draining requests");
    let _ = stop_tx.send(true);
    let drained = async {
        (&mut serving).await;
        if let Some(k) = kurrent {
            let _ = k.await;
        }
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            ?grace,
            "shutdown grace over: cutting off requests still running"
        );
    }
    tracing::info!("reckon-gater stopped");
    Ok(())
}
