//! A gater and a cluster of nodes inside one process, on free loopback ports: for
//! `reckon-tui --demo` and for tests of what an embedding program sees (telemetry).
//!
//! Everything is real: each node is [`run`] as the binary runs it, with its own redb
//! files under the given directory, its own openraft groups and its own listener,
//! and they talk over loopback TCP exactly as separate processes do. A node can be
//! stopped on its own, as SIGTERM stops the binary (it deregisters, drains within its
//! grace, shuts its groups down), which the others see as a node leaving.

use std::path::Path;
use std::sync::Arc;

use reckon_gater::gateway::{Gateway, GatewayOptions};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{Mode, NodeConfig};
use crate::node::Node;
use crate::run::{run, RunOptions};

/// One node of an [`EmbeddedCluster`]: [`run`] on a task of its own.
struct Member {
    node: Arc<Node>,
    stop: watch::Sender<bool>,
    running: JoinHandle<anyhow::Result<()>>,
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
            let (stop, rx) = watch::channel(false);
            let (started, node) = oneshot::channel();
            let options = RunOptions {
                started: Some(started),
                ..RunOptions::default()
            };
            let running = tokio::spawn(run(config, listener, options, stopped(rx)));
            // The node once its stores are open; the error of a node that ends before.
            let node = match node.await {
                Ok(node) => node,
                Err(_) => {
                    let ended = running.await?;
                    return Err(ended.err().unwrap_or_else(|| {
                        anyhow::anyhow!("node {} stopped before its stores opened", i + 1)
                    }));
                }
            };
            members.push(Some(Member {
                node,
                stop,
                running,
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

    /// Stops one node as the binary stops on SIGTERM: it deregisters from the gater,
    /// stops accepting, gives requests already taken its grace, and shuts its groups
    /// down. `false` when there is no such running node.
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
        if let Ok(Err(e)) = m.running.await {
            tracing::warn!(node_id, error = %e, "embedded node stopped on an error");
        }
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
