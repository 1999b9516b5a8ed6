//! A node's whole life as one library call: [`run`] takes a configuration, an
//! already-bound listener and a shutdown future, as mini-redis's `server::run` does;
//! the binary, the embedded cluster of the demo and tests all start nodes through it.
//!
//! ```text
//!  run ─▶ Node::start (lock the data dir, open every store)
//!      ─▶ embedded gater and KurrentDB front door (--dev) ─▶ cluster formation ─▶ registrar ─▶ ready lines
//!      ─▶ metrics endpoint, OpenTelemetry export ─▶ READY=1, watchdog
//!      ─▶ serve until `shutdown` resolves (or a store's Raft group stops on a
//!         storage failure: then the node exits with an error, to be restarted)
//!      ─▶ drain: deregister from the gaters (they stop routing here), stop taking
//!         connections and requests, give those taken the grace, then stop every
//!         Raft group and make applied state durable
//! ```

use std::future::Future;
use std::sync::Arc;

use reckon_gater::gateway::{Gateway, GatewayOptions};
use reckon_gater::kurrent::{self, KurrentOptions};
use reckon_gater::tls::{PeerCerts, Tls};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::NodeConfig;
use crate::node::Node;
use crate::notify;
use crate::registrar::{Identity, Registrar};

/// What a running node does beyond serving, set by whoever starts it.
#[derive(Default)]
pub struct RunOptions {
    /// Serve a gater inside the node on this address and register with it (`--dev`).
    /// It is bound once the data directory is locked: a second node on the same
    /// directory fails on the lock, not on the gater's port.
    pub embedded_gater: Option<String>,
    /// With an embedded gater: serve its KurrentDB gRPC front door too (`--dev`).
    pub embedded_kurrent: Option<EmbeddedKurrent>,
    /// Print the ready lines that scripts and tests wait for on stdout.
    pub announce: bool,
    /// Tell systemd when the node is ready and stopping, and feed its watchdog, when
    /// it is watching (`NOTIFY_SOCKET`, `WATCHDOG_USEC`).
    pub notify: bool,
    /// Gets the node once its stores are open: an embedding program's handle on it.
    pub started: Option<oneshot::Sender<Arc<Node>>>,
}

/// Where an embedded gater serves the KurrentDB front door.
#[derive(Debug, Clone)]
pub struct EmbeddedKurrent {
    /// The address to listen on.
    pub listen: String,
    /// Whether failing to listen there stops the start (an address the user gave);
    /// otherwise (the default port taken, say by KurrentDB itself) the front door
    /// stays off with a warning.
    pub required: bool,
}

/// Runs a node configured by `config` on `listener` until `shutdown` resolves, then
/// drains and stops it (see the module docs). Returns an error when it cannot start,
/// or when a store's Raft group stopped on a storage failure.
pub async fn run(
    config: NodeConfig,
    listener: TcpListener,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let node = Arc::new(Node::start(config).await?);
    if let Some(tx) = options.started {
        let _ = tx.send(node.clone());
    }
    let mut gaters = node.config().gaters.clone();
    let mut embedded = None;
    let mut kurrent_task = None;
    if let Some(addr) = options.embedded_gater {
        let gl = TcpListener::bind(&addr).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {addr} for the embedded gater (--dev-gater-listen): {e}"
            )
        })?;
        let gaddr = gl.local_addr()?;
        gaters = vec![gaddr.to_string()];
        if let Some(reason) = reckon_gater::settings::insecure_listen(
            gaddr,
            node.tls().is_some(),
            node.config().insecure,
        ) {
            anyhow::bail!("the embedded gater (--dev-gater-listen): {reason}");
        }
        // The embedded gater serves clients with the node's certificate; they may
        // present none.
        let tls = node
            .config()
            .tls
            .as_ref()
            .map(|files| Tls::load(files, "tls", PeerCerts::Optional))
            .transpose()?;
        let gateway = Gateway::new(GatewayOptions {
            tls: tls.clone(),
            ..GatewayOptions::default()
        });
        if let Some(k) = &options.embedded_kurrent {
            match TcpListener::bind(&k.listen).await {
                Ok(kl) => {
                    let kaddr = kl.local_addr()?;
                    if let Some(reason) = reckon_gater::settings::insecure_listen(
                        kaddr,
                        tls.is_some(),
                        node.config().insecure,
                    ) {
                        anyhow::bail!(
                            "the embedded KurrentDB front door (--dev-kurrent-listen): {reason}"
                        );
                    }
                    let kurrent = KurrentOptions {
                        tls: tls.clone(),
                        ..KurrentOptions::default()
                    };
                    let (gateway, shutdown) = (gateway.clone(), stopped());
                    kurrent_task = Some((
                        kaddr,
                        tokio::spawn(async move {
                            if let Err(e) = kurrent::serve(kl, gateway, kurrent, shutdown).await {
                                tracing::error!(error = %e, "the KurrentDB front door stopped");
                            }
                        }),
                    ));
                }
                Err(e) if !k.required => tracing::warn!(
                    listen = %k.listen,
                    error = %e,
                    "the KurrentDB front door is off: its default address is taken (give --dev-kurrent-listen)"
                ),
                Err(e) => anyhow::bail!(
                    "cannot listen on {} for the KurrentDB front door (--dev-kurrent-listen): {e}",
                    k.listen
                ),
            }
        }
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
        dialer: node.dialer(),
    };
    match node.tls() {
        Some(tls) => tracing::info!(identity = ?tls.own_role(), "serving with TLS"),
        None if node.config().insecure => tracing::warn!(
            listen = %local,
            "insecure = true: serving without TLS; anyone who can reach this address can speak Raft to this node and read and change its stores"
        ),
        None => {}
    }
    node.start_cluster(stop_tx.subscribe());
    let registrar = Registrar::start(node.stores().clone(), identity, &gaters);
    if options.announce {
        println!(
            "reckon-node ready: node {} listening on {local} with stores {}",
            node.config().node_id,
            node.config().stores.join(",")
        );
        if let Some((gaddr, _)) = &embedded {
            println!("reckon-gater ready: embedded gater listening on {gaddr}");
        }
        if let Some((kaddr, _)) = &kurrent_task {
            println!("reckon-gater ready: KurrentDB front door listening on {kaddr}");
        }
    }
    let metrics = match node.config().metrics_listen {
        Some(addr) => {
            let ml = TcpListener::bind(addr).await.map_err(|e| {
                anyhow::anyhow!("cannot listen on {addr} (key \"metrics_listen\"): {e}")
            })?;
            if options.announce {
                println!("reckon-node metrics on http://{}/metrics", ml.local_addr()?);
            }
            let stores = node.stores().clone();
            let shutdown = stopped();
            Some(tokio::spawn(async move {
                crate::prometheus::serve(ml, stores, shutdown).await
            }))
        }
        None => None,
    };
    let otel = start_otel(&node).await?;
    let watchdog = if options.notify {
        notify::notify("READY=1");
        notify::watchdog_interval().map(|i| tokio::spawn(notify::run_watchdog(i)))
    } else {
        None
    };
    let grace = node.config().shutdown_grace();
    // Boxed so that it can be dropped when the grace is over: dropping it cuts off
    // the connections still open.
    let mut serving = Box::pin(node.serve(listener, stopped()));
    let mut failed = None;
    // Serving ends only once told to, but a finished future must not be polled again.
    let served = tokio::select! {
        _ = &mut serving => true,
        _ = shutdown => false,
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
    if options.notify {
        notify::notify("STOPPING=1");
    }
    // First the gaters stop routing here, so that nothing new is sent only to be
    // refused.
    registrar.stop().await;
    // Then no new connection or request is taken (the embedded gater's neither), and
    // those already taken get the grace to finish.
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(grace, async {
        if !served {
            (&mut serving).await;
        }
        if let Some((_, task)) = &mut embedded {
            let _ = task.await;
        }
        if let Some((_, task)) = &mut kurrent_task {
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
    if let Some((_, task)) = &kurrent_task {
        task.abort();
    }
    // Always, even after the grace: a write cut off above is either applied whole by
    // Raft or not at all, and this makes what was applied durable.
    node.shutdown().await;
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
type Otel = Option<crate::otel::OtelExporter>;
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
        crate::otel::OtelExporter::start(stores, id, &endpoint, interval)
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
