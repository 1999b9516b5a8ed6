//! `reckon-tui --demo`: a 3-node cluster and a gater inside this process, on free
//! loopback ports with data in a temporary directory, a trickle of sample events
//! and one subscription, so that the console has something live to show.

use std::sync::Arc;
use std::time::Duration;

use reckon_gater::gateway::{Gateway, GatewayOptions};
use reckon_gater::subscription::SubscribeOptions;
use reckon_gater::types::SubscriptionType;
use reckon_gater::{Client, ExpectedVersion, NewEvent};
use reckon_node::config::{Mode, NodeConfig};
use reckon_node::node::Node;
use reckon_node::registrar::{Identity, Registrar};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Nodes in the demo cluster.
pub const DEMO_NODES: u64 = 3;
/// Pause between two sample appends.
pub const TRICKLE_INTERVAL: Duration = Duration::from_millis(400);

/// A running demo; dropping it stops the cluster and removes its data.
pub struct Demo {
    /// The gater address the console connects to.
    pub gater: String,
    stop: watch::Sender<bool>,
    _registrars: Vec<Registrar>,
    _nodes: Vec<Arc<Node>>,
    _dir: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn stopped(rx: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Starts the gater, the three nodes and the trickle on the current runtime.
pub async fn start() -> anyhow::Result<Demo> {
    let dir = tempfile::tempdir()?;
    let (stop, stop_rx) = watch::channel(false);
    let gl = TcpListener::bind("127.0.0.1:0").await?;
    let gater = gl.local_addr()?.to_string();
    let gateway = Gateway::new(GatewayOptions::default());
    let shutdown = stopped(&stop_rx);
    tokio::spawn(async move { gateway.serve(gl, shutdown).await });

    let mut listeners = Vec::new();
    for _ in 0..DEMO_NODES {
        listeners.push(TcpListener::bind("127.0.0.1:0").await?);
    }
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.to_string()))
        .collect::<Result<_, _>>()?;
    let mut nodes = Vec::new();
    let mut registrars = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let mut config = NodeConfig {
            node_id: i as u64 + 1,
            listen: listener.local_addr()?,
            advertise: Some(addrs[i].clone()),
            data_dir: dir.path().join(format!("node-{}", i + 1)),
            mode: Mode::Cluster,
            bootstrap_expect: DEMO_NODES as u32,
            gaters: vec![gater.clone()],
            ..NodeConfig::default()
        };
        config.discovery.seeds = addrs.clone();
        let node = Arc::new(Node::start(config).await?);
        let identity = Identity {
            node_id: node.config().node_id,
            advertise: node.config().advertise_addr(),
            secret: node.config().discovery.secret.clone(),
        };
        node.start_cluster(stop.subscribe());
        registrars.push(Registrar::start(
            node.stores().clone(),
            identity,
            std::slice::from_ref(&gater),
        ));
        let serving = node.clone();
        let shutdown = stopped(&stop_rx);
        tokio::spawn(async move { serving.serve(listener, shutdown).await });
        nodes.push(node);
    }
    tokio::spawn(trickle(gater.clone(), stop_rx));
    Ok(Demo {
        gater,
        stop,
        _registrars: registrars,
        _nodes: nodes,
        _dir: dir,
    })
}

/// Appends sample orders until stopped; creates one subscription once it can.
async fn trickle(gater: String, stop: watch::Receiver<bool>) {
    let mut subscribed = false;
    let mut n: u64 = 0;
    while !*stop.borrow() {
        tokio::time::sleep(TRICKLE_INTERVAL).await;
        let Ok(client) = Client::connect(std::slice::from_ref(&gater)).await else {
            continue;
        };
        let store = client.store("default");
        if !subscribed {
            subscribed = store
                .subscribe(
                    SubscriptionType::EventPattern,
                    "order-*",
                    "demo-billing",
                    SubscribeOptions::default(),
                )
                .await
                .is_ok();
        }
        while !*stop.borrow() {
            let stream = format!("order-{}", n % 5);
            let kind = if n.is_multiple_of(5) {
                "OrderPlaced"
            } else {
                "ItemAdded"
            };
            let data =
                serde_json::json!({ "order": n % 5, "sku": format!("sku-{n}"), "qty": n % 3 + 1 });
            if store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![NewEvent::json(kind, &data)],
                )
                .await
                .is_err()
            {
                break;
            }
            n += 1;
            tokio::time::sleep(TRICKLE_INTERVAL).await;
        }
    }
}
