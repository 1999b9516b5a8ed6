//! `reckon-node`: parse flags, load config, start tracing, run the node, print the error.

use std::process::ExitCode;

use clap::Parser;
use reckon_gater::gateway::{Gateway, GatewayOptions};
use reckon_gater::{logging, telemetry};
use reckon_node::config::{self, NodeArgs};
use reckon_node::node::Node;
use reckon_node::notify;
use reckon_node::registrar::{Identity, Registrar};
use tokio::net::TcpListener;

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
    // Dropped last, after the runtime, so that every line reaches the file.
    let _log = match logging::init(&config.log, LOG_FILE_PREFIX) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::attach_default_handler();
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
    let result = runtime.block_on(run(config, args));
    // Tasks still running (requests past the grace) are cut off here, before
    // the log guard flushes.
    drop(runtime);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "reckon-node stopped on an error");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Log files are `reckon-node.<date>.log`.
const LOG_FILE_PREFIX: &str = "reckon-node";

/// Where `--dev` runs its embedded gater unless told otherwise.
const DEV_GATER_LISTEN: &str = "127.0.0.1:7700";

async fn run(mut config: config::NodeConfig, args: NodeArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (key \"listen\"): {e}", config.listen))?;
    let local = listener.local_addr()?;
    if config.advertise.is_none() {
        // With port 0 the OS chose the port: peers and gaters must dial that one.
        config.advertise = Some(local.to_string());
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    // The data directory's lock comes first: a second node on the same directory
    // must fail on that, not on a port.
    let node = Node::start(config).await?;
    let mut gaters = node.config().gaters.clone();
    let mut embedded = None;
    if args.dev {
        let addr = args
            .dev_gater_listen
            .map_or_else(|| DEV_GATER_LISTEN.to_string(), |a| a.to_string());
        let gl = TcpListener::bind(&addr).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {addr} for the embedded gater (--dev-gater-listen): {e}"
            )
        })?;
        let gaddr = gl.local_addr()?;
        gaters = vec![gaddr.to_string()];
        let gateway = Gateway::new(GatewayOptions::default());
        let shutdown = stopped();
        embedded = Some((
            gaddr,
            tokio::spawn(async move { gateway.serve(gl, shutdown).await }),
        ));
    }
    let identity = Identity {
        node_id: node.config().node_id,
        advertise: node.config().advertise_addr(),
        secret: node.config().discovery.secret.clone(),
    };
    node.start_cluster(stop_tx.subscribe());
    let registrar = Registrar::start(node.stores().clone(), identity, &gaters);
    // Lines on stdout that scripts and tests wait for.
    println!(
        "reckon-node ready: node {} listening on {local} with stores {}",
        node.config().node_id,
        node.config().stores.join(",")
    );
    if let Some((gaddr, _)) = &embedded {
        println!("reckon-gater ready: embedded gater listening on {gaddr}");
    }
    let metrics = match node.config().metrics_listen {
        Some(addr) => {
            let ml = TcpListener::bind(addr).await.map_err(|e| {
                anyhow::anyhow!("cannot listen on {addr} (key \"metrics_listen\"): {e}")
            })?;
            println!("reckon-node metrics on http://{}/metrics", ml.local_addr()?);
            let stores = node.stores().clone();
            let shutdown = stopped();
            Some(tokio::spawn(async move {
                reckon_node::prometheus::serve(ml, stores, shutdown).await
            }))
        }
        None => None,
    };
    let otel = start_otel(&node).await?;
    notify::notify("READY=1");
    let watchdog = notify::watchdog_interval().map(|i| tokio::spawn(notify::run_watchdog(i)));
    let grace = node.config().shutdown_grace();
    // Boxed so that it can be dropped when the grace is over: dropping it cuts off
    // the connections still open.
    let mut serving = Box::pin(node.serve(listener, stopped()));
    // Serving ends only once told to, but a finished future must not be polled again.
    let mut failed = None;
    let served = tokio::select! {
        _ = &mut serving => true,
        _ = shutdown_signal() => false,
        (store, why) = node.fatal() => {
            tracing::error!(store, reason = %why, "a store's Raft group stopped on a storage failure: exiting so that the node is restarted and catches up");
            failed = Some(anyhow::anyhow!("store {store} stopped: {why}"));
            false
        }
    };
    tracing::info!(
        ?grace,
        "shutting down: deregistering, then draining requests"
    );
    notify::notify("STOPPING=1");
    let stopping = async {
        // First the gaters stop routing here, so that nothing new is sent only to
        // be refused.
        registrar.stop().await;
        // Then no new connection or request is taken (the embedded gater's
        // neither), and those already taken get the grace to finish.
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(grace, async {
            if !served {
                (&mut serving).await;
            }
            if let Some((_, task)) = &mut embedded {
                let _ = task.await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                ?grace,
                "shutdown grace over: cutting off requests still running"
            );
        }
        drop(serving);
        if let Some((_, task)) = &embedded {
            task.abort();
        }
        // Always, even after the grace: a write cut off above is either applied
        // whole by Raft or not at all, and this makes what was applied durable.
        node.shutdown().await;
    };
    tokio::select! {
        _ = stopping => {}
        _ = shutdown_signal() => {
            eprintln!("second signal: exiting at once");
            std::process::exit(1);
        }
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    if let Some(m) = metrics {
        m.abort();
    }
    stop_otel(otel).await;
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(feature = "otel")]
type Otel = Option<reckon_node::otel::OtelExporter>;
/// Nothing to run in a build without the `otel` feature.
#[cfg(not(feature = "otel"))]
type Otel = Option<std::convert::Infallible>;

/// Starts the OpenTelemetry exporter when `[otel] endpoint` is set (config
/// validation refused an endpoint if this build cannot export).
#[cfg(feature = "otel")]
async fn start_otel(node: &Node) -> anyhow::Result<Otel> {
    let Some(endpoint) = node.config().otel.endpoint.clone() else {
        return Ok(None);
    };
    let stores = node.stores().clone();
    let id = node.config().node_id;
    let interval = std::time::Duration::from_millis(node.config().otel.interval_ms);
    // The exporter's HTTP client is a blocking one: build it off the runtime.
    let exporter = tokio::task::spawn_blocking(move || {
        reckon_node::otel::OtelExporter::start(stores, id, &endpoint, interval)
    })
    .await??;
    Ok(Some(exporter))
}

#[cfg(not(feature = "otel"))]
async fn start_otel(_: &Node) -> anyhow::Result<Otel> {
    Ok(None)
}

/// Exports what is left and stops the exporter.
#[cfg(feature = "otel")]
async fn stop_otel(otel: Otel) {
    if let Some(e) = otel {
        let _ = tokio::task::spawn_blocking(move || e.shutdown()).await;
    }
}

#[cfg(not(feature = "otel"))]
async fn stop_otel(_: Otel) {}

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
