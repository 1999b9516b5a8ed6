//! A gater and a cluster of nodes inside one process, on free loopback ports: for
//! `reckon-tui --demo` and for tests of what an embedding program sees (telemetry).
//!
//! Everything is real: each node has its own redb files under the given directory,
//! its own openraft groups and its own listener, and they talk over loopback TCP
//! exactly as separate processes do. A node can be stopped on its own (its listener
//! closes, it deregisters, its groups shut down), which the others see as a crash.

use std::path::Path;
use std::sync::Arc;

use reckon_gater::gateway::{Gateway, GatewayOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Mode, NodeConfig};
use crate::node::Node;
use crate::registrar::{Identity, Registrar};

/// How long a stopping node's requests already taken may run before they are cut.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// One node of an [`EmbeddedCluster`].
struct Member {
    node: Arc<Node>,
    stop: watch::Sender<bool>,
    registrar: Registrar,
    serving: JoinHandle<()>,
}

/// A gater and `n` nodes in this process; dropping it stops them all.
pub struct EmbeddedCluster {
    gater: String,
    stop_gater: watch::Sender<bool>,
    members: Vec<Option<Member>>,
}

fn stopped(rx: watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx;
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

impl EmbeddedCluster {
    /// Starts a gater and `n` nodes (ids 1..=n) in cluster mode with store `default`,
    /// their data under `dir`. `tune` may change each node's config before it starts.
    /// Returns once every node serves; the store's group forms in the background.
    pub async fn start(
        n: u64,
        dir: &Path,
        tune: impl Fn(&mut NodeConfig),
    ) -> anyhow::Result<EmbeddedCluster> {
        let (stop_gater, gater_rx) = watch::channel(false);
        let gl = TcpListener::bind("127.0.0.1:0").await?;
        let gater = gl.local_addr()?.to_string();
        let gateway = Gateway::new(GatewayOptions::default());
        tokio::spawn(async move { gateway.serve(gl, stopped(gater_rx)).await });

        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(TcpListener::bind("127.0.0.1:0").await?);
        }
        let addrs: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.to_string()))
            .collect::<Result<_, _>>()?;
        let mut members = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let mut config = NodeConfig {
                node_id: i as u64 + 1,
                listen: listener.local_addr()?,
                advertise: Some(addrs[i].clone()),
                data_dir: dir.join(format!("node-{}", i + 1)),
                mode: Mode::Cluster,
                bootstrap_expect: n as u32,
                gaters: vec![gater.clone()],
                ..NodeConfig::default()
            };
            config.discovery.seeds = addrs.clone();
            tune(&mut config);
            let node = Arc::new(Node::start(config).await?);
            let identity = Identity {
                node_id: node.config().node_id,
                advertise: node.config().advertise_addr(),
                secret: node.config().discovery.secret.clone(),
            };
            let (stop, rx) = watch::channel(false);
            node.start_cluster(rx.clone());
            let registrar = Registrar::start(
                node.stores().clone(),
                identity,
                std::slice::from_ref(&gater),
            );
            let serving = {
                let node = node.clone();
                tokio::spawn(async move { node.serve(listener, stopped(rx)).await })
            };
            members.push(Some(Member {
                node,
                stop,
                registrar,
                serving,
            }));
        }
        Ok(EmbeddedCluster {
            gater,
            stop_gater,
            members,
        })
    }

    /// The gater's address.
    pub fn gater(&self) -> &str {
        &self.gater
    }

    /// The node with this id, unless it was stopped.
    pub fn node(&self, node_id: u64) -> Option<&Arc<Node>> {
        let i = usize::try_from(node_id.checked_sub(1)?).ok()?;
        self.members.get(i)?.as_ref().map(|m| &m.node)
    }

    /// Stops one node: it stops accepting, deregisters from the gater and shuts its
    /// groups down. `false` when there is no such running node.
    pub async fn stop_node(&mut self, node_id: u64) -> bool {
        let Some(slot) = node_id
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.members.get_mut(i))
        else {
            return false;
        };
        let Some(m) = slot.take() else {
            return false;
        };
        let _ = m.stop.send(true);
        m.registrar.stop().await;
        // Requests already taken get a grace, as in the binary; then they are cut.
        let mut serving = m.serving;
        if tokio::time::timeout(STOP_GRACE, &mut serving)
            .await
            .is_err()
        {
            serving.abort();
        }
        m.node.shutdown().await;
        true
    }

    /// Stops every node, then the gater.
    pub async fn stop(mut self) {
        for id in 1..=self.members.len() as u64 {
            self.stop_node(id).await;
        }
        let _ = self.stop_gater.send(true);
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        for m in self.members.iter().flatten() {
            let _ = m.stop.send(true);
        }
        let _ = self.stop_gater.send(true);
    }
}
