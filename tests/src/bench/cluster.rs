//! A 3-node cluster on this machine for the cluster rows: real `reckon-node`
//! processes in cluster mode with static seeds on loopback ports, registered with a
//! standalone `reckon-gater` that the clients talk to. It is started the way
//! `reckon_tests::cluster::Cluster` starts one, but with the bench's binaries, its
//! data under the bench's directory, the default Raft settings (no test tuning), no
//! panics, and warnings-only logs.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use reckon_gater::Client;
use reckon_tests::NodeProc;

use super::process::{spawn_ready, wait_ready, Conn, Endpoint, NodeSetup, NODE_LOG_FILTER, STORE};

/// Nodes in the bench's cluster.
pub const CLUSTER_NODES: usize = 3;
/// How long the cluster may take to elect a leader and register every worker.
const FORM_WAIT: Duration = Duration::from_secs(60);
/// Pause between two health probes while it forms.
const FORM_PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// A running cluster: a gater and [`CLUSTER_NODES`] nodes, each node on its own data
/// directory under one fresh directory. Dropping it kills every process and then
/// removes the directory.
pub struct BenchCluster {
    nodes: Vec<NodeProc>,
    gater: Option<NodeProc>,
    gater_addr: String,
    dir: PathBuf,
}

/// Log filter for the cluster's processes unless `RUST_LOG` is set: the nodes' own
/// filter, and errors only from openraft, whose warnings about stale votes while the
/// nodes first elect a leader are expected.
const CLUSTER_LOG_FILTER: &str = "openraft=error";

fn quiet(cmd: &mut Command) {
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env(
            "RUST_LOG",
            format!("{NODE_LOG_FILTER},{CLUSTER_LOG_FILTER}"),
        );
    }
}

impl BenchCluster {
    /// Starts a gater and [`CLUSTER_NODES`] nodes on `<parent>/<name>` (which must not
    /// exist yet), and waits until the store has a leader, every node is registered
    /// with the gater, and a linearizable read through the gater succeeds.
    pub async fn start(setup: &NodeSetup, name: &str) -> anyhow::Result<BenchCluster> {
        let dir = setup.parent.join(name);
        ensure!(
            !dir.exists(),
            "{} already exists; the bench only starts clusters on fresh directories",
            dir.display()
        );
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut cluster = BenchCluster {
            nodes: Vec::new(),
            gater: None,
            gater_addr: String::new(),
            dir,
        };
        // On error, dropping `cluster` kills what started and removes the directory.
        cluster.spawn(setup).await?;
        cluster.formed().await?;
        Ok(cluster)
    }

    async fn spawn(&mut self, setup: &NodeSetup) -> anyhow::Result<()> {
        let mut cmd = Command::new(&setup.gater_bin);
        cmd.arg("--listen").arg("127.0.0.1:0");
        for (k, _) in std::env::vars() {
            if k.starts_with("RECKON_GATER_") {
                cmd.env_remove(k);
            }
        }
        quiet(&mut cmd);
        let gater = spawn_ready(cmd, &self.dir, &setup.gater_bin.display().to_string()).await?;
        self.gater_addr = gater.addr.clone();
        self.gater = Some(gater);

        let addrs: Vec<String> = reckon_tests::ports::free_ports(CLUSTER_NODES)
            .into_iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let seeds = format!(
            "[{}]",
            addrs
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        for (i, addr) in addrs.iter().enumerate() {
            let data = self.dir.join(format!("node{}", i + 1));
            let mut cmd = Command::new(&setup.bin);
            cmd.arg("--node-id")
                .arg((i + 1).to_string())
                .arg("--listen")
                .arg(addr)
                .arg("--data-dir")
                .arg(&data)
                .arg("--gater")
                .arg(&self.gater_addr)
                .arg("--store")
                .arg(STORE)
                .env("RECKON_NODE_MODE", "cluster")
                .env("RECKON_NODE_BOOTSTRAP_EXPECT", CLUSTER_NODES.to_string())
                .env("RECKON_NODE_DISCOVERY__SEEDS", &seeds);
            quiet(&mut cmd);
            let node = spawn_ready(cmd, &data, &setup.bin.display().to_string()).await?;
            self.nodes.push(node);
        }
        Ok(())
    }

    /// Waits for a leader with every worker registered, then for a linearizable read.
    async fn formed(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + FORM_WAIT;
        loop {
            let health = match Client::connect(&[self.gater_addr.as_str()]).await {
                Ok(client) => client.health().await,
                Err(e) => Err(e),
            };
            let last = match health {
                Ok(h) => {
                    let formed = h.stores.iter().any(|s| {
                        s.store == STORE
                            && s.workers as usize == CLUSTER_NODES
                            && s.leader.is_some()
                    });
                    if formed {
                        break;
                    }
                    format!("{h:?}")
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                bail!(
                    "the {CLUSTER_NODES}-node cluster did not form in {FORM_WAIT:?}; \
                     the gater last said: {last}"
                );
            }
            tokio::time::sleep(FORM_PROBE_INTERVAL).await;
        }
        let conn = Conn::connect(&Endpoint::Gater(self.gater_addr.clone())).await?;
        wait_ready(&conn, "the cluster").await
    }

    /// The gater's address.
    pub fn gater_addr(&self) -> &str {
        &self.gater_addr
    }
}

impl Drop for BenchCluster {
    fn drop(&mut self) {
        // Kill first: no process may hold the files we remove.
        self.nodes.clear();
        drop(self.gater.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
