//! A cluster of real `reckon-node` processes in cluster mode with static discovery,
//! and a gater in front of them.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use crate::gater::GaterProc;
use crate::tls::{TestCerts, CLIENT_NAME};
use crate::{bin, NodeProc};

pub use crate::ports::free_ports;

/// A cluster under test: its nodes (by index, node id = index + 1) and gater.
pub struct Cluster {
    /// The nodes; `None` while stopped.
    pub nodes: Vec<Option<NodeProc>>,
    /// Their addresses.
    pub addrs: Vec<String>,
    /// Their data directories.
    pub dirs: Vec<PathBuf>,
    /// The gater.
    pub gater: GaterProc,
    stores: Vec<String>,
    /// Certificates for every link, when the cluster runs with TLS.
    tls: Option<Arc<TestCerts>>,
    _root: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes (all voters at first start) serving `stores`, and a gater.
    pub fn start(n: usize, stores: &[&str]) -> Cluster {
        Self::start_with(n, stores, None, &[], |_, _| {})
    }

    /// [`start`](Self::start), with node 1's data directory seeded first by
    /// `seed(data_dir, address)` (a restore), before any node starts.
    pub fn start_seeded(
        n: usize,
        stores: &[&str],
        seed: impl FnOnce(&std::path::Path, &str),
    ) -> Cluster {
        Self::start_with(n, stores, None, &[], seed)
    }

    /// [`start`](Self::start) with extra environment for the gater (config keys such as
    /// `RECKON_GATER_KURRENT_LISTEN`).
    pub fn start_with_gater_env(n: usize, stores: &[&str], env: &[(&str, &str)]) -> Cluster {
        Self::start_with(n, stores, None, env, |_, _| {})
    }

    /// [`start`](Self::start) with TLS on every link, from `certs` (which must hold
    /// certificates for nodes 1 to `n`). The nodes' stderr is watched
    /// ([`NodeProc::wait_stderr`]).
    pub fn start_tls(n: usize, stores: &[&str], certs: Arc<TestCerts>) -> Cluster {
        Self::start_with(n, stores, Some(certs), &[], |_, _| {})
    }

    fn start_with(
        n: usize,
        stores: &[&str],
        tls: Option<Arc<TestCerts>>,
        extra_gater_env: &[(&str, &str)],
        seed: impl FnOnce(&std::path::Path, &str),
    ) -> Cluster {
        let root = tempfile::tempdir().expect("tempdir");
        let mut gater_env = vec![("RECKON_GATER_LEASE_MS".to_string(), "1500".to_string())];
        if let Some(certs) = &tls {
            gater_env.extend(certs.gater_env());
        }
        gater_env.extend(
            extra_gater_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let gater_env: Vec<(&str, &str)> = gater_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let gater = GaterProc::start("127.0.0.1:0", &gater_env);
        let addrs: Vec<String> = free_ports(n)
            .into_iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let dirs: Vec<PathBuf> = (0..n)
            .map(|i| root.path().join(format!("node{}", i + 1)))
            .collect();
        let mut c = Cluster {
            nodes: (0..n).map(|_| None).collect(),
            addrs,
            dirs,
            gater,
            stores: stores.iter().map(|s| s.to_string()).collect(),
            tls,
            _root: root,
        };
        seed(&c.dirs[0], &c.addrs[0]);
        for i in 0..n {
            c.start_node(i);
        }
        c
    }

    /// (Re)starts node `i` on its address and data directory.
    pub fn start_node(&mut self, i: usize) {
        self.start_node_with_env(i, &[]);
    }

    /// (Re)starts node `i` with extra environment (config keys, faults to inject).
    pub fn start_node_with_env(&mut self, i: usize, env: &[(&str, &str)]) {
        let seeds = format!(
            "[{}]",
            self.addrs
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut cmd = Command::new(bin("reckon-node"));
        cmd.arg("--node-id")
            .arg((i + 1).to_string())
            .arg("--listen")
            .arg(&self.addrs[i])
            .arg("--data-dir")
            .arg(&self.dirs[i])
            .arg("--gater")
            .arg(&self.gater.addr)
            .env("RECKON_NODE_MODE", "cluster")
            .env("RECKON_NODE_BOOTSTRAP_EXPECT", self.addrs.len().to_string())
            .env("RECKON_NODE_DISCOVERY__SEEDS", seeds)
            .env("RECKON_NODE_RAFT__SNAPSHOT_LOGS_SINCE_LAST", "500")
            .env("RECKON_NODE_RAFT__MAX_IN_SNAPSHOT_LOG_TO_KEEP", "100");
        for s in &self.stores {
            cmd.arg("--store").arg(s);
        }
        // Before `env`, which may override them.
        if let Some(certs) = &self.tls {
            cmd.envs(certs.node_env(i as u64 + 1));
        }
        cmd.envs(env.iter().copied());
        self.nodes[i] = Some(match self.tls {
            Some(_) => NodeProc::spawn_watching_stderr(cmd, &self.dirs[i]),
            None => NodeProc::spawn(cmd, &self.dirs[i]),
        });
    }

    /// A client of the gater: with TLS (trusting the cluster's CA, presenting the
    /// client certificate) when the cluster runs with it.
    pub async fn client(&self) -> Result<reckon_gater::Client, reckon_gater::ClientError> {
        let builder = reckon_gater::Client::builder(&[self.gater.addr.as_str()]);
        match &self.tls {
            Some(certs) => {
                builder
                    .tls(certs.presenting(&format!("client-{CLIENT_NAME}")))
                    .connect()
                    .await
            }
            None => builder.connect().await,
        }
    }

    /// Adds a node that was not there at first start (it joins as a learner and is
    /// promoted); returns its index.
    pub fn add_node(&mut self) -> usize {
        self.add_node_with_env(&[])
    }

    /// [`add_node`](Self::add_node) with extra environment for the new node.
    pub fn add_node_with_env(&mut self, env: &[(&str, &str)]) -> usize {
        let port = free_ports(1)[0];
        let i = self.addrs.len();
        self.addrs.push(format!("127.0.0.1:{port}"));
        self.dirs
            .push(self._root.path().join(format!("node{}", i + 1)));
        self.nodes.push(None);
        self.start_node_with_env(i, env);
        i
    }

    /// Kills node `i` with SIGKILL.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut n) = self.nodes[i].take() {
            n.kill9();
        }
    }

    /// Kills the node with id `id` (index `id - 1`) with SIGKILL.
    pub fn kill9_id(&mut self, id: u64) {
        self.kill9((id - 1) as usize);
    }

    /// Kills with SIGKILL a node of a three-node cluster that is not `leader`.
    pub fn kill9_follower_of(&mut self, leader: u64) {
        self.kill9_id(follower_of(leader));
    }

    /// A running node.
    pub fn node(&self, i: usize) -> &NodeProc {
        self.nodes[i].as_ref().expect("node is running")
    }
}

/// The leader the gater reports for `store`, when the store is healthy.
pub async fn leader_of(client: &reckon_gater::Client, store: &str) -> Option<u64> {
    let h = client.health().await.ok()?;
    h.stores
        .iter()
        .find(|s| s.store == store)
        .filter(|s| s.healthy)
        .and_then(|s| s.leader)
}

/// Appends `event` to `stream` (expecting any version), retrying the same event (same
/// id) every 50 ms until it is acknowledged: a retry of an append that did land is
/// answered with its first result. Panics with the last error after 60 s.
pub async fn append_until_acked(
    s: &reckon_gater::StoreHandle,
    stream: &str,
    event: &reckon_gater::NewEvent,
) -> reckon_gater::types::AppendResult {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match s
            .append(
                stream,
                reckon_gater::ExpectedVersion::Any,
                vec![event.clone()],
            )
            .await
        {
            Ok(r) => return r,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "append never succeeded: {e}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// The id of a node of a three-node cluster that is not `leader`.
pub fn follower_of(leader: u64) -> u64 {
    (1..=3u64).find(|n| *n != leader).expect("a follower")
}

/// Waits up to 30 s until the gater reports a leader of store `default` other than
/// `old`.
pub async fn wait_new_leader(client: &reckon_gater::Client, old: u64) {
    crate::wait::wait_until(
        "a new leader",
        std::time::Duration::from_secs(30),
        || async { leader_of(client, "default").await.is_some_and(|l| l != old) },
    )
    .await;
}

/// A client of the cluster's gater, once store `default` has a leader and three
/// workers.
pub async fn formed(c: &Cluster) -> reckon_gater::Client {
    let client = c.client().await.expect("connect to the gater");
    wait_three_workers_and_a_leader(
        &client,
        "a leader and three workers",
        std::time::Duration::from_secs(60),
    )
    .await;
    client
}

/// Connects to the gater at `gater` and waits until it sees store `default` with three
/// workers and a leader; panics naming `what` after `limit`. Gives the client.
pub async fn three_workers_and_a_leader(
    gater: &str,
    what: &str,
    limit: std::time::Duration,
) -> reckon_gater::Client {
    let client = reckon_gater::Client::connect(&[gater])
        .await
        .expect("connect to the gater");
    wait_three_workers_and_a_leader(&client, what, limit).await;
    client
}

/// Waits until `client`'s gater sees store `default` with three workers and a
/// leader; panics naming `what` after `limit`.
pub async fn wait_three_workers_and_a_leader(
    client: &reckon_gater::Client,
    what: &str,
    limit: std::time::Duration,
) {
    crate::wait::wait_until(what, limit, || async {
        client.health().await.is_ok_and(|h| {
            h.stores
                .iter()
                .any(|s| s.store == "default" && s.workers == 3 && s.leader.is_some())
        })
    })
    .await;
}
