//! Start-up and serving: open every configured store and serve the worker service.
//!
//! [`Node::start`] takes the data directory's lock (so two nodes never share one),
//! opens each store's Raft group, and [`Node::serve`] serves the worker service on an
//! already-bound listener until a shutdown future resolves, so tests can run many
//! nodes side by side on port 0.

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reckon_gater::emit;
use reckon_gater::telemetry as t;
use reckon_gater::tls::{PeerCerts, Tls, TlsError};
use reckon_gater::transport::{self, Dialer, Service};
use reckon_gater::worker::Worker;
use tarpc::server::{BaseChannel, Channel};
use tokio::net::TcpListener;

use crate::cluster::{self, Me};
use crate::config::{Mode, NodeConfig};
use crate::discovery::Discovery;
use crate::peer_service::RaftServer;
use crate::raft::network::PeerPool;
use crate::raft::peer::RaftService;
use crate::service::WorkerService;
use crate::store::{Store, StoreOptions, StoreStartError, Stores};

/// Requests one connection may have in flight; more are refused with an error.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 1024;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The data directory is unusable.
    #[error("data directory {path} (key \"data_dir\"): {reason}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Another process holds the data directory's lock.
    #[error(
        "data directory {path} is locked by another reckon-node (lock file {lock}); \
         stop that node or give this one its own --data-dir"
    )]
    Locked {
        /// The directory.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// A store failed to open.
    #[error(transparent)]
    Store(#[from] StoreStartError),
    /// The `[tls]` files cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A running node.
pub struct Node {
    config: NodeConfig,
    stores: Stores,
    peers: PeerPool,
    tls: Option<Tls>,
    _lock: File,
}

fn lock_data_dir(dir: &Path) -> Result<File, NodeError> {
    std::fs::create_dir_all(dir).map_err(|e| NodeError::DataDir {
        path: dir.to_path_buf(),
        reason: format!("cannot create it: {e}"),
    })?;
    let lock = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|e| NodeError::DataDir {
            path: dir.to_path_buf(),
            reason: format!("cannot open lock file {}: {e}", lock.display()),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(NodeError::Locked {
            path: dir.to_path_buf(),
            lock,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(NodeError::DataDir {
            path: dir.to_path_buf(),
            reason: format!("cannot lock {}: {e}", lock.display()),
        }),
    }
}

impl Node {
    /// Locks the data directory and opens every configured store.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        // Before the lock and the stores: a wrong path is the likelier mistake.
        let tls = config
            .tls
            .as_ref()
            .map(|files| Tls::load(files, "tls", PeerCerts::Required))
            .transpose()?;
        let lock = lock_data_dir(&config.data_dir)?;
        let peers = PeerPool::with_dialer(config.node_id, Dialer::new(tls.clone()));
        let mut stores = HashMap::new();
        for name in &config.stores {
            let opts = store_options(&config);
            let store = Store::open(
                name,
                &config.data_dir.join(name),
                opts,
                config.mode == Mode::Single,
                peers.clone(),
            )
            .await?;
            stores.insert(name.clone(), store);
        }
        Ok(Node {
            config,
            stores: Arc::new(stores),
            peers,
            tls,
            _lock: lock,
        })
    }

    /// The node's TLS set-up, when `[tls]` is set.
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// How the node dials gaters and peers: with its TLS, or in clear text.
    pub fn dialer(&self) -> Dialer {
        Dialer::new(self.tls.clone())
    }

    /// The node's effective configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The stores this node hosts.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// Serves the worker and Raft services on `listener` until `shutdown` resolves,
    /// then drains ([`transport::accept_loop`]): no new connection or request is
    /// taken, and this returns once every request already read is answered. Drop
    /// the future to cut off what still runs; it never stops the Raft groups, which
    /// is [`Node::shutdown`]'s job.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let address = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        emit!(t::CLUSTER_NODE_UP, "node_id" => self.config.node_id, "address" => &address);
        let worker = WorkerService::new(self.stores.clone());
        let raft = RaftServer::new(
            self.stores.clone(),
            self.config.node_id,
            self.config.advertise_addr(),
        );
        transport::accept_loop_with(
            listener,
            self.tls.clone(),
            shutdown,
            move |service, stream, peer| {
                let (worker, raft) = (worker.clone(), raft.clone());
                async move {
                    match service {
                        Service::Worker => {
                            let channel = BaseChannel::with_defaults(transport::wrap(stream))
                                .max_concurrent_requests(MAX_REQUESTS_PER_CONNECTION);
                            transport::spawn_requests(channel.execute(worker.serve())).await;
                        }
                        Service::Raft => {
                            let channel = BaseChannel::with_defaults(transport::wrap(stream))
                                .max_concurrent_requests(MAX_REQUESTS_PER_CONNECTION);
                            transport::spawn_requests(channel.execute(raft.serve())).await;
                        }
                        Service::Gater => {
                            tracing::debug!(%peer, "a node does not serve the gater service");
                        }
                    }
                }
            },
        )
        .await;
    }

    /// In cluster mode, starts forming or joining each store's group in the
    /// background (see [`crate::cluster`]); does nothing in single mode.
    pub fn start_cluster(&self, stop: tokio::sync::watch::Receiver<bool>) {
        if self.config.mode != Mode::Cluster {
            return;
        }
        let me = Me {
            node_id: self.config.node_id,
            advertise: self.config.advertise_addr(),
            bootstrap_expect: self.config.bootstrap_expect as usize,
        };
        let discovery = Discovery::start(&self.config, stop.clone());
        for store in self.stores.values() {
            tokio::spawn(cluster::form_or_join(
                store.clone(),
                me.clone(),
                discovery.clone(),
                self.peers.clone(),
                stop.clone(),
            ));
        }
    }

    /// Resolves when a store's Raft group has stopped on its own (a storage failure:
    /// a full disk, an I/O error), with the store's name and why. After a failed
    /// write the files must be opened again before they are trusted: the node should
    /// exit and be restarted, when its group catches up from the others.
    pub async fn fatal(&self) -> (String, String) {
        if self.stores.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.stores.iter().map(|(name, store)| {
            let mut rx = store.raft().metrics();
            let name = name.clone();
            Box::pin(async move {
                let why = match rx.wait_for(|m| m.running_state.is_err()).await {
                    Ok(m) => match &m.running_state {
                        Err(f) => f.to_string(),
                        Ok(()) => String::new(),
                    },
                    Err(_) => "its Raft group is gone".to_string(),
                };
                (name, why)
            })
        });
        futures::future::select_all(waits).await.0
    }

    /// Stops every store's Raft group and makes applied state durable.
    pub async fn shutdown(&self) {
        for store in self.stores.values() {
            store.shutdown().await;
        }
        emit!(t::CLUSTER_NODE_DOWN, "node_id" => self.config.node_id, "reason" => "shutdown");
    }
}

fn store_options(config: &NodeConfig) -> StoreOptions {
    let mut o = StoreOptions::new(config.node_id, config.advertise_addr());
    o.limits = config.limits.clone();
    o.heartbeat_ms = config.raft.heartbeat_ms;
    o.election_timeout_min_ms = config.raft.election_timeout_min_ms;
    o.election_timeout_max_ms = config.raft.election_timeout_max_ms;
    o.snapshot_logs_since_last = config.raft.snapshot_logs_since_last;
    o.max_in_snapshot_log_to_keep = config.raft.max_in_snapshot_log_to_keep;
    o.snapshot_log_bytes = config.raft.snapshot_log_mib.saturating_mul(1024 * 1024);
    o.log_keep_bytes = config.raft.log_keep_mib.saturating_mul(1024 * 1024);
    o.batch_commands_max = config.write.batch_commands_max;
    o.entry_bytes_max = config.write.batch_bytes_max;
    o.pipeline_max = config.write.pipeline_max;
    o.queue_max = config.write.queue_max;
    o.state_cache_bytes = (config.storage.state_cache_mib as usize).saturating_mul(1024 * 1024);
    o.scavenge_step_positions = config.scavenge.step_positions;
    o.scavenge_pause = Duration::from_millis(config.scavenge.pause_ms);
    o.faults = config.faults;
    o
}
