//! One store: its Raft group, its group-commit batcher, its reads and its
//! subscriptions.
//!
//! A [`Store`] is opened once per configured store ([`Store::open`]) and shared by
//! the node's servers as [`Stores`]. Its methods are spread over files by job:
//!
//! ```text
//!      worker service, peer service (node-to-node), registrar, metrics
//!                                 ▼
//!   store/mod.rs            the Store: options, opening, accessors, stats
//!   ├── write.rs            validate a write, route it: the batcher on the leader,
//!   │                       else forwarded to the leader (one hop)
//!   ├── batcher.rs          pack queued writes into Raft entries (group commit)
//!   ├── log_policy.rs       snapshot and purge the log by bytes too
//!   ├── read.rs             linearizable or stale reads of a redb view
//!   ├── leadership.rs       transfer, election holds, pre-vote answers,
//!   │                       membership changes, leadership telemetry
//!   ├── backup.rs           online backups: a barrier, a pinned view, its export
//!   ├── subscriptions/
//!   │   ├── mod.rs          records through Raft, acknowledgements, attachments
//!   │   ├── delivery.rs     delivery by long-poll
//!   │   └── pool.rs         which pooled consumer gets which stream (pure)
//!   └── errors.rs           openraft's errors as the wire's StoreError, and why
//!                           a store could not start
//!                                 ▼
//!            raft (openraft: log, state machine, network), storage (redb)
//! ```
//!
//! The store adapts the domain to its Raft group; it imports the layers below it
//! (`raft`, `storage`, `domain`, `matcher`, `command`, and `config` for the faults
//! tests inject) and nothing above.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use reckon_gater::emit;
use reckon_gater::metrics::{StoreMetrics, StoreStats};
use reckon_gater::telemetry as t;
use reckon_gater::types::{ReadConsistency, Role};
use tokio::sync::mpsc;

use crate::config::FaultInjection;
use crate::domain::Limits;
use crate::raft::election::{self, ElectionGuard};
use crate::raft::log_store::LogStore;
use crate::raft::network::{Network, PeerPool, PeerVoters};
use crate::raft::snapshot_transfer::Inbox;
use crate::raft::state_machine::StateMachine;
use crate::raft::{NodeId, Raft};
use crate::storage::state::STATE_CACHE_BYTES;
use crate::storage::{StateDb, StorageError};

mod backup;
mod batcher;
mod errors;
mod leadership;
mod log_policy;
mod read;
pub mod scavenge;
pub mod subscriptions;
mod write;

pub use errors::StoreStartError;
pub use leadership::{HOLD_MAX, TRANSFER_CATCH_UP, TRANSFER_TIMEOUT};
pub use read::FIND_STREAMS_SCAN_MAX;
pub use write::FORWARD_TIMEOUT;

/// How long a single-node store may take to elect itself at start.
pub const SINGLE_LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Tuning of one store's Raft group and batcher.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// This node's id.
    pub node_id: NodeId,
    /// The address peers and gaters dial.
    pub advertise: String,
    /// Request limits.
    pub limits: Limits,
    /// Raft heartbeat interval, ms.
    pub heartbeat_ms: u64,
    /// Raft election timeout range, ms.
    pub election_timeout_min_ms: u64,
    /// Upper end of the election timeout range, ms.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many applied entries.
    pub snapshot_logs_since_last: u64,
    /// Entries kept in the log behind a snapshot (for slow followers).
    pub max_in_snapshot_log_to_keep: u64,
    /// Build a snapshot once the entries since the last one hold this many bytes.
    pub snapshot_log_bytes: u64,
    /// Bytes of entries kept in the log behind a snapshot (for slow followers).
    pub log_keep_bytes: u64,
    /// Most commands in one Raft entry.
    pub batch_commands_max: usize,
    /// Most payload bytes in one Raft entry (a single larger command goes alone).
    pub entry_bytes_max: usize,
    /// Most batches proposed and not yet applied.
    pub pipeline_max: usize,
    /// Most writes queued for the batcher.
    pub queue_max: usize,
    /// Bytes of memory caching the state file.
    pub state_cache_bytes: usize,
    /// Positions one scavenge step looks at.
    pub scavenge_step_positions: u64,
    /// Pause after each scavenge step on top of its own time.
    pub scavenge_pause: Duration,
    /// Faults injected on purpose by tests.
    pub faults: FaultInjection,
}

impl StoreOptions {
    /// Defaults for a single node with the given id and address.
    pub fn new(node_id: NodeId, advertise: impl Into<String>) -> Self {
        StoreOptions {
            node_id,
            advertise: advertise.into(),
            limits: Limits::default(),
            heartbeat_ms: 250,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_logs_since_last: 10_000,
            max_in_snapshot_log_to_keep: 1_000,
            snapshot_log_bytes: crate::config::SNAPSHOT_LOG_MIB * 1024 * 1024,
            log_keep_bytes: crate::config::LOG_KEEP_MIB * 1024 * 1024,
            batch_commands_max: 1024,
            entry_bytes_max: 4 * 1024 * 1024,
            pipeline_max: 2,
            queue_max: 65_536,
            state_cache_bytes: STATE_CACHE_BYTES,
            scavenge_step_positions: 1000,
            scavenge_pause: Duration::ZERO,
            faults: FaultInjection::default(),
        }
    }
}

/// The stores this node hosts, by name.
///
/// It lives with the store rather than in [`node`](crate::node), which builds it:
/// the servers ([`service`](crate::service), [`peer_service`](crate::peer_service))
/// and the reporters ([`registrar`](crate::registrar), [`prometheus`](crate::prometheus))
/// take it, and `node` imports them, so a `Stores` defined in `node` would make each
/// of them and `node` import each other.
pub type Stores = Arc<HashMap<String, Arc<Store>>>;

/// A running store on this node.
pub struct Store {
    name: String,
    raft: Raft,
    state: Arc<StateDb>,
    limits: Limits,
    queue: mpsc::Sender<batcher::Pending>,
    /// Whether an entry proposed since this process started has committed here. Until
    /// one has, a linearizable read first commits an empty batch: openraft 0.9 restores
    /// a restarted leader in its old term without a new no-op entry, and the commit
    /// index it restarts with may be behind what it acknowledged before the crash.
    read_barrier: Arc<AtomicBool>,
    node_id: NodeId,
    /// Counters and latency histograms since the node started.
    metrics: Arc<StoreMetrics>,
    /// Connections to the group's other members.
    peers: PeerPool,
    /// The leader lease openraft grants (its election timeout's upper bound): a
    /// follower refuses to vote while it heard from the leader this recently.
    lease: Duration,
    /// Set while this node hands its leadership over: writes and linearizable reads
    /// are refused (retryably), so that nothing renews the followers' lease.
    moving: AtomicBool,
    /// Pre-votes: when this node last heard a leader, and holds on its elections.
    election: Arc<ElectionGuard>,
    /// The Raft log (shared with openraft), for this node's last log id.
    log: LogStore,
    /// Attached consumers and matchers of subscriptions, on this node.
    subscriptions: subscriptions::Attachments,
    /// Snapshots being received from a leader.
    snapshot_inbox: Inbox,
    /// Positions one scavenge step looks at.
    scavenge_step: u64,
    /// Pause after each scavenge step on top of its own time.
    scavenge_pause: Duration,
    /// Backups being written or served by this node.
    backups: crate::backup::export::Exports,
}

/// The wall clock in microseconds since the Unix epoch, for batch timestamps.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Store {
    /// Opens the store's files under `dir` and starts its Raft group and batcher. In
    /// single mode (`initialize_alone`) a pristine group initializes itself as the only
    /// voter; a group that has state never initializes again.
    pub async fn open(
        name: &str,
        dir: &Path,
        opts: StoreOptions,
        initialize_alone: bool,
        peers: PeerPool,
    ) -> Result<Arc<Store>, StoreStartError> {
        let storage = |source| StoreStartError::Storage {
            store: name.to_string(),
            source,
        };
        let raft_err = |reason: String| StoreStartError::Raft {
            store: name.to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| {
            storage(StorageError::Io {
                path: dir.display().to_string(),
                source: e,
            })
        })?;
        let log = LogStore::open(&dir.join("log.redb")).map_err(storage)?;
        let log_handle = log.clone();
        let state = Arc::new(
            StateDb::open_with_cache(&dir.join("state.redb"), opts.state_cache_bytes)
                .map_err(storage)?,
        );
        let sm = StateMachine::open(state.clone(), &dir.join("snapshots"))
            .map_err(storage)?
            .with_install_delay(Duration::from_millis(opts.faults.snapshot_install_delay_ms))
            .with_apply_delay(Duration::from_millis(opts.faults.apply_delay_ms));
        let config = Config {
            cluster_name: format!("reckon-{name}"),
            heartbeat_interval: opts.heartbeat_ms,
            election_timeout_min: opts.election_timeout_min_ms,
            election_timeout_max: opts.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(opts.snapshot_logs_since_last),
            // Elections start only after a pre-vote (see raft::election).
            enable_elect: false,
            max_in_snapshot_log_to_keep: opts.max_in_snapshot_log_to_keep,
            ..Default::default()
        }
        .validate()
        .map_err(|e| raft_err(e.to_string()))?;
        let network = Network::new(name, peers.clone());
        let raft = Raft::new(opts.node_id, Arc::new(config), network, log, sm)
            .await
            .map_err(|e| raft_err(e.to_string()))?;
        if initialize_alone {
            let initialized = raft
                .is_initialized()
                .await
                .map_err(|e| raft_err(e.to_string()))?;
            if !initialized {
                let mut members = std::collections::BTreeMap::new();
                members.insert(
                    opts.node_id,
                    BasicNode {
                        addr: opts.advertise.clone(),
                    },
                );
                raft.initialize(members)
                    .await
                    .map_err(|e| raft_err(e.to_string()))?;
                tracing::info!(target: "reckon_db", store = name, node_id = opts.node_id, "store initialized as a single-node group");
            }
            // Initializing only starts the election: a node that says it is ready must
            // accept its first request, so wait until this node leads.
            raft.wait(Some(SINGLE_LEADER_TIMEOUT))
                .current_leader(opts.node_id, "single-node store elects itself")
                .await
                .map_err(|e| raft_err(format!("did not become leader: {e}")))?;
        }
        let (tx, rx) = mpsc::channel(opts.queue_max);
        let read_barrier = Arc::new(AtomicBool::new(false));
        tokio::spawn(batcher::run(
            raft.clone(),
            rx,
            opts.clone(),
            read_barrier.clone(),
        ));
        let election = Arc::new(ElectionGuard::new(
            Duration::from_millis(opts.election_timeout_min_ms),
            Duration::from_millis(opts.election_timeout_max_ms),
        ));
        tokio::spawn(election::run(
            raft.clone(),
            election.clone(),
            log_handle.clone(),
            PeerVoters::new(name, peers.clone()),
            opts.node_id,
            Duration::from_millis(opts.heartbeat_ms),
        ));
        let metrics = Arc::new(StoreMetrics::default());
        tokio::spawn(leadership::watch(
            raft.clone(),
            name.to_string(),
            opts.node_id,
            metrics.clone(),
        ));
        tokio::spawn(log_policy::run(
            raft.clone(),
            log_handle.clone(),
            opts.clone(),
        ));
        emit!(t::STORE_STARTED, "store" => name, "node_id" => opts.node_id);
        let backups =
            crate::backup::export::Exports::open(name, opts.node_id, &dir.join("backups"))
                .map_err(storage)?
                .with_chunk_delay(Duration::from_millis(opts.faults.backup_chunk_delay_ms));
        let snapshot_inbox = Inbox::new(
            raft.clone(),
            state.clone(),
            Duration::from_millis(opts.faults.snapshot_chunk_delay_ms),
        );
        let store = Arc::new(Store {
            name: name.to_string(),
            raft,
            state,
            limits: opts.limits,
            queue: tx,
            read_barrier,
            node_id: opts.node_id,
            metrics,
            peers,
            lease: Duration::from_millis(opts.election_timeout_max_ms),
            moving: AtomicBool::new(false),
            election,
            log: log_handle,
            subscriptions: Default::default(),
            snapshot_inbox,
            backups,
            scavenge_step: opts.scavenge_step_positions,
            scavenge_pause: opts.scavenge_pause,
        });
        scavenge::spawn(&store);
        Ok(store)
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The openraft handle.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The receiving side of snapshot transfers to this node.
    pub fn snapshot_inbox(&self) -> &Inbox {
        &self.snapshot_inbox
    }

    /// The request limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Stops the Raft group and makes applied state durable.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(store = %self.name, error = %e, "raft shutdown");
        }
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || state.flush()).await;
        emit!(t::STORE_STOPPED, "store" => &self.name, "node_id" => self.node_id);
    }

    /// Counters and latency histograms since the node started.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    /// This node's role in the store's group now.
    pub fn role(&self) -> Role {
        match self.raft.metrics().borrow().state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Learner => Role::Learner,
            ServerState::Candidate | ServerState::Shutdown => Role::Candidate,
        }
    }

    /// The counters and histograms with what the store holds and its subscriptions'
    /// lag, as `stats` reports them.
    pub async fn stats(&self) -> StoreStats {
        let m = &self.metrics;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let held = self
            .read(ReadConsistency::Stale, |r| r.stats().map(Ok))
            .await
            .unwrap_or_default();
        let subs = self
            .list_subscriptions(ReadConsistency::Stale)
            .await
            .unwrap_or_default();
        StoreStats {
            store: self.name.clone(),
            node_id: self.node_id,
            role: Some(self.role()),
            events: held.events,
            appends: load(&m.appends),
            appended_events: load(&m.appended_events),
            appended_bytes: load(&m.appended_bytes),
            reads: load(&m.reads),
            read_events: load(&m.read_events),
            errors: m.errors_by_kind(),
            leader_changes: load(&m.leader_changes),
            subscriptions: subs.len() as u64,
            deliveries: load(&m.deliveries),
            delivered_events: load(&m.delivered_events),
            max_subscription_lag: subs.iter().map(|s| s.lag()).max().unwrap_or(0),
            append_latency: m.append_latency.snapshot(),
            read_latency: m.read_latency.snapshot(),
            scavenge: self.scavenge_status(ReadConsistency::Stale).await.ok(),
        }
    }

    /// The state database.
    pub fn state(&self) -> &Arc<StateDb> {
        &self.state
    }

    /// Bytes of entries the Raft log holds now.
    pub fn log_bytes(&self) -> u64 {
        self.log.bytes_after(None)
    }
}
