//! `reckon-node`: parse flags, load config, start tracing, run the node, print the error.

use std::process::ExitCode;

use clap::Parser;
use reckon_node::config::{self, NodeArgs};
use reckon_node::node::Node;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = NodeArgs::parse();
    let config = match config::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        return match config.masked_toml() {
            Ok(s) => {
                print!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // openraft narrates every election at info; keep it to warnings unless asked.
    let default_filter = if config.log.level.contains("openraft") {
        config.log.level.clone()
    } else {
        format!("{},openraft=warn", config.log.level)
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .compact()
        .init();
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
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: config::NodeConfig) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (key \"listen\"): {e}", config.listen))?;
    let local = listener.local_addr()?;
    let node = Node::start(config).await?;
    // One line on stdout that scripts and tests wait for.
    println!(
        "reckon-node ready: node {} listening on {local} with stores {}",
        node.config().node_id,
        node.config().stores.join(",")
    );
    tracing::info!(target: "reckon_db", node_id = node.config().node_id, %local, "reckon_db.cluster.node.up");
    node.serve(listener, shutdown_signal()).await;
    tracing::info!("shutting down: no new requests accepted");
    tokio::select! {
        _ = node.shutdown() => {}
        _ = shutdown_signal() => {
            eprintln!("second signal: exiting at once");
            std::process::exit(1);
        }
    }
    tracing::info!(target: "reckon_db", "reckon_db.cluster.node.down");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
