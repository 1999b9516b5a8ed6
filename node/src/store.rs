//! One store: its Raft group, its group-commit batcher and its reads.
//!
//! Writes: every write becomes a [`Command`] with its caller's deadline. On the leader
//! it is queued to the batcher, which packs the commands that arrive together into one
//! [`WriteBatch`] and proposes it with `client_write`: many client appends share one
//! Raft entry and so one fsync. At most `pipeline_max` batches are in flight; while
//! they are, new commands gather into the next batch. The queue is bounded
//! (`queue_max`); when it is full a write waits, within its deadline. A write that
//! reaches a follower is forwarded at once to the leader's batcher (one hop).
//!
//! No write outlives its caller: the batcher drops a write whose deadline has passed
//! (or whose caller has gone) instead of proposing it, and only a leader proposes:
//! when this node stops leading, the writes waiting in its batcher are answered
//! `NotLeader` at once, never proposed or forwarded later. A retried append carries
//! the same event ids, which the state machine recognises wherever they stand.
//!
//! Reads: linearizable reads first confirm leadership through openraft's read index
//! (`ensure_linearizable`), then read a consistent redb view; stale reads skip the
//! confirmation. Blocking redb work runs on the blocking pool.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use reckon_gater::emit;
use reckon_gater::metrics::{StoreMetrics, StoreStats};
use reckon_gater::telemetry as t;
use reckon_gater::types::Role;
use reckon_gater::types::{
    AppendResult, Direction, EventRecord, ExpectedVersion, NewEvent, ReadConsistency,
    SnapshotRecord, StoreError, StreamInfo, StreamPage, TagMatch,
};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::command::{Command, Outcome, ProposedEvent, WriteBatch};
use crate::config::FaultInjection;
use crate::domain::{self, Limits};
use crate::raft::election::{self, ElectionGuard, PreVote};
use crate::raft::log_store::LogStore;
use crate::raft::network::{deadline_ctx, Lane, Network, PeerPool, PeerVoters};
use crate::raft::snapshot_transfer::Inbox;
use crate::raft::state_machine::StateMachine;
use crate::raft::{NodeId, Raft};
use crate::storage::state::Reader;
use crate::storage::{StateDb, StorageError};

/// How long a single-node store may take to elect itself at start.
pub const SINGLE_LEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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
    /// Most commands in one Raft entry.
    pub batch_commands_max: usize,
    /// Most payload bytes in one Raft entry (a single larger command goes alone).
    pub entry_bytes_max: usize,
    /// Most batches proposed and not yet applied.
    pub pipeline_max: usize,
    /// Most writes queued for the batcher.
    pub queue_max: usize,
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
            batch_commands_max: 1024,
            entry_bytes_max: 4 * 1024 * 1024,
            pipeline_max: 2,
            queue_max: 65_536,
            faults: FaultInjection::default(),
        }
    }
}

/// Why a store could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreStartError {
    /// Its files could not be opened.
    #[error("store {store}: {source}")]
    Storage {
        /// The store.
        store: String,
        /// The failure.
        source: StorageError,
    },
    /// openraft refused the configuration or failed to start.
    #[error("store {store}: raft: {reason}")]
    Raft {
        /// The store.
        store: String,
        /// What openraft said.
        reason: String,
    },
}

/// Longest a leadership transfer takes before it gives up (and this node leads on).
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the transfer target to catch up with the leader's log.
pub const TRANSFER_CATCH_UP: Duration = Duration::from_secs(3);
/// Margin past the leader lease before the target campaigns.
const LEASE_MARGIN: Duration = Duration::from_millis(50);
/// Longest a node holds its elections for another's transfer.
pub const HOLD_MAX: Duration = Duration::from_secs(10);

/// Stream ids one `find_streams` call examines at most; a call that stops there
/// says where to resume.
pub const FIND_STREAMS_SCAN_MAX: usize = 10_000;

struct Pending {
    command: Command,
    bytes: usize,
    /// When the caller stops waiting: past it the write is not proposed.
    deadline: Instant,
    reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

impl Pending {
    /// Whether the caller still waits for this write at `now`.
    fn wanted(&self, now: Instant) -> bool {
        now < self.deadline && !self.reply.is_closed()
    }

    fn answer(self, r: Result<Outcome, StoreError>) {
        let _ = self.reply.send(r);
    }

    fn expire(self) {
        self.answer(Err(StoreError::Timeout {
            what: "the write waited past its caller's deadline and was not proposed".into(),
        }));
    }
}

/// Where this node sees the leadership of a group: `Ok` when it leads, the
/// `NotLeader` answer to give otherwise.
///
/// A leader of several voters that has heard from no quorum for longer than `lease`
/// answers `NotLeader` naming no leader: cut off from its group, it cannot commit, and
/// the others may have elected a new leader it has not heard of. Its caller tries
/// another node at once instead of waiting out its deadline here.
fn leadership(raft: &Raft, me: NodeId, lease: Duration) -> Result<(), StoreError> {
    let m = raft.metrics();
    let m = m.borrow();
    if m.current_leader == Some(me) {
        let alone = m.membership_config.voter_ids().nth(1).is_none();
        let confirmed = m
            .millis_since_quorum_ack
            .is_some_and(|ms| Duration::from_millis(ms) <= lease);
        if alone || confirmed {
            return Ok(());
        }
        return Err(StoreError::NotLeader {
            leader: None,
            leader_addr: None,
        });
    }
    Err(StoreError::NotLeader {
        leader: m.current_leader,
        leader_addr: m
            .current_leader
            .and_then(|l| m.membership_config.membership().get_node(&l))
            .map(|n| n.addr.clone()),
    })
}

/// A running store on this node.
pub struct Store {
    name: String,
    raft: Raft,
    state: Arc<StateDb>,
    limits: Limits,
    queue: mpsc::Sender<Pending>,
    /// Whether an entry proposed since this process started has committed here. Until
    /// one has, a linearizable read first commits an empty batch: openraft 0.9 restores
    /// a restarted leader in its old term without a new no-op entry, and the commit
    /// index it restarts with may be behind what it acknowledged before the crash.
    read_barrier: Arc<std::sync::atomic::AtomicBool>,
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
    pub(crate) subscriptions: crate::subscriptions::Attachments,
    /// Snapshots being received from a leader.
    snapshot_inbox: Inbox,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Maps a failed `client_write` to the wire error.
pub fn write_err(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> StoreError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => StoreError::NotLeader {
            leader: f.leader_id,
            leader_addr: f.leader_node.map(|n| n.addr),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            StoreError::Unavailable {
                reason: e.to_string(),
            }
        }
        RaftError::Fatal(f) => StoreError::Unavailable {
            reason: format!("raft stopped: {f}"),
        },
    }
}

fn read_err(e: RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>) -> StoreError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => StoreError::NotLeader {
            leader: f.leader_id,
            leader_addr: f.leader_node.map(|n| n.addr),
        },
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => StoreError::Unavailable {
            reason: q.to_string(),
        },
        RaftError::Fatal(f) => StoreError::Unavailable {
            reason: format!("raft stopped: {f}"),
        },
    }
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
        let state = Arc::new(StateDb::open(&dir.join("state.redb")).map_err(storage)?);
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
        let read_barrier = Arc::new(std::sync::atomic::AtomicBool::new(false));
        tokio::spawn(run_batcher(
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
        tokio::spawn(watch_leadership(
            raft.clone(),
            name.to_string(),
            opts.node_id,
            metrics.clone(),
        ));
        emit!(t::STORE_STARTED, "store" => name, "node_id" => opts.node_id);
        let snapshot_inbox = Inbox::new(
            raft.clone(),
            state.clone(),
            Duration::from_millis(opts.faults.snapshot_chunk_delay_ms),
        );
        Ok(Arc::new(Store {
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
        }))
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
        }
    }

    /// The state database.
    pub fn state(&self) -> &Arc<StateDb> {
        &self.state
    }

    /// Refuses, retryably, while this node hands its leadership over.
    pub fn check_not_moving(&self) -> Result<(), StoreError> {
        if self.moving.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable {
                reason: format!("the leadership of store {} is moving", self.name),
            });
        }
        Ok(())
    }

    /// Hands the leadership of the group to `target`, a voter: stops taking writes
    /// and linearizable reads (they are refused retryably), lets those taken reach
    /// the target, silences its own heartbeats, asks the other voters to hold their
    /// elections, waits out the followers' leader lease and asks the target to
    /// campaign. Returns once this node sees the target lead, or an error after
    /// [`TRANSFER_TIMEOUT`]; either way it takes requests again (as a follower, or
    /// still as the leader when the transfer failed).
    ///
    /// openraft 0.9 has no transfer of its own: a follower refuses to vote while
    /// it has heard from the leader within its lease, so the leader must go quiet
    /// first, and the other followers must not win the election that follows.
    pub async fn transfer_leader(&self, target: NodeId) -> Result<(), StoreError> {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.node_id) {
            let leader_addr = m
                .current_leader
                .and_then(|l| m.membership_config.membership().get_node(&l).cloned())
                .map(|n| n.addr);
            return Err(StoreError::NotLeader {
                leader: m.current_leader,
                leader_addr,
            });
        }
        if target == self.node_id {
            return Ok(());
        }
        let members = m.membership_config.membership();
        let Some(target_node) = members.get_node(&target).cloned() else {
            return Err(StoreError::NotFound {
                what: format!("node {target} in the group of store {}", self.name),
            });
        };
        if !m.membership_config.voter_ids().any(|v| v == target) {
            return Err(StoreError::invalid(
                "node_id",
                format!(
                    "node {target} is a learner of store {}: only a voter can lead",
                    self.name
                ),
            ));
        }
        let others: Vec<(NodeId, String)> = m
            .membership_config
            .voter_ids()
            .filter(|v| *v != target && *v != self.node_id)
            .filter_map(|v| members.get_node(&v).map(|n| (v, n.addr.clone())))
            .collect();
        if self.moving.swap(true, Ordering::AcqRel) {
            return Err(StoreError::Unavailable {
                reason: format!("a leadership transfer of store {} is under way", self.name),
            });
        }
        let result = tokio::time::timeout(
            TRANSFER_TIMEOUT,
            self.hand_over(target, &target_node.addr, &others),
        )
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable {
                reason: format!(
                    "node {target} did not take the leadership of store {} within {TRANSFER_TIMEOUT:?}",
                    self.name
                ),
            })
        });
        self.raft.runtime_config().heartbeat(true);
        self.election.release();
        self.moving.store(false, Ordering::Release);
        match &result {
            Ok(()) => tracing::info!(store = %self.name, target, "leadership handed over"),
            Err(e) => {
                tracing::warn!(store = %self.name, target, error = %e, "leadership transfer failed")
            }
        }
        result
    }

    async fn hand_over(
        &self,
        target: NodeId,
        target_addr: &str,
        others: &[(NodeId, String)],
    ) -> Result<(), StoreError> {
        // A target that does not answer cannot take over: find out before pausing
        // anything.
        let target_client =
            self.peers
                .client(target_addr)
                .await
                .map_err(|e| StoreError::Unavailable {
                    reason: e.to_string(),
                })?;
        if let Err(e) = target_client.hello(deadline_ctx(self.lease)).await {
            self.peers.forget(target_addr).await;
            return Err(StoreError::Unavailable {
                reason: format!("node {target} does not answer: {e}"),
            });
        }
        // Writes already taken finish and reach the target, so that its log is at
        // least as long as anyone's and it can win.
        let caught_up = |m: &openraft::RaftMetrics<NodeId, BasicNode>| {
            let last = m.last_log_index;
            let applied = m.last_applied.map(|l| l.index);
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&target).copied().flatten())
                .map(|l| l.index);
            applied == last && matched >= last
        };
        self.raft
            .wait(Some(TRANSFER_CATCH_UP))
            .metrics(caught_up, "the transfer target catches up")
            .await
            .map_err(|e| StoreError::Unavailable {
                reason: format!("node {target} did not catch up: {e}"),
            })?;
        self.raft.runtime_config().heartbeat(false);
        self.election.hold_until(Instant::now() + TRANSFER_TIMEOUT);
        let hold = self.lease * 4;
        for (id, addr) in others {
            // A voter that cannot be told cannot campaign either, or is down.
            let told = async {
                let c = self.peers.client(addr).await.ok()?;
                c.hold_elections(
                    deadline_ctx(self.lease),
                    self.name.clone(),
                    hold.as_millis() as u64,
                )
                .await
                .ok()
            };
            if told.await.is_none() {
                tracing::debug!(store = %self.name, node_id = id, "could not hold a voter's elections");
            }
        }
        // Past the lease no follower refuses the target's vote request.
        tokio::time::sleep(self.lease + LEASE_MARGIN).await;
        target_client
            .campaign(deadline_ctx(self.lease), self.name.clone())
            .await
            .map_err(|e| StoreError::Unavailable {
                reason: format!("node {target}: {e}"),
            })??;
        self.raft
            .wait(None)
            .current_leader(target, "the transfer target leads")
            .await
            .map_err(|e| StoreError::Unavailable {
                reason: e.to_string(),
            })?;
        Ok(())
    }

    /// Holds this node's elections for `d` (another node is taking the leadership).
    pub fn hold_elections(&self, d: Duration) {
        self.election.hold_until(Instant::now() + d.min(HOLD_MAX));
    }

    /// The pre-vote state of this store on this node.
    pub fn election(&self) -> &ElectionGuard {
        &self.election
    }

    /// This node's last log id, and whether it leads: what it answers a pre-vote with.
    pub async fn pre_vote(&self, req: &PreVote) -> bool {
        let leading = self.role() == Role::Leader;
        let mine = election::last_log_id(&self.log).await;
        self.election.answer(req, leading, mine)
    }

    /// Starts an election on this node now (it is the target of a transfer).
    pub async fn campaign(&self) -> Result<(), StoreError> {
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| StoreError::Unavailable {
                reason: format!("raft stopped: {e}"),
            })
    }

    /// Executes one write on the leader and waits for its result: queued to this
    /// node's batcher when it leads, forwarded to the leader it knows otherwise.
    /// Nothing is proposed after `deadline`.
    pub(crate) async fn submit(
        &self,
        command: Command,
        bytes: usize,
        deadline: Instant,
    ) -> Result<Outcome, StoreError> {
        self.check_not_moving()?;
        match leadership(&self.raft, self.node_id, self.lease) {
            Ok(()) => self.enqueue(command, bytes, deadline).await,
            Err(StoreError::NotLeader {
                leader: Some(leader),
                leader_addr: Some(addr),
            }) => self.forward(leader, addr, command, bytes, deadline).await,
            Err(e) => Err(e),
        }
    }

    /// Executes a write forwarded by a follower: only the leader takes it (one hop).
    pub(crate) async fn submit_forwarded(
        &self,
        command: Command,
        bytes: usize,
        deadline: Instant,
    ) -> Result<Outcome, StoreError> {
        self.check_not_moving()?;
        leadership(&self.raft, self.node_id, self.lease)?;
        self.enqueue(command, bytes, deadline).await
    }

    async fn enqueue(
        &self,
        command: Command,
        bytes: usize,
        deadline: Instant,
    ) -> Result<Outcome, StoreError> {
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            command,
            bytes,
            deadline,
            reply,
        };
        let queued = tokio::time::timeout_at(deadline.into(), self.queue.send(pending)).await;
        match queued {
            Err(_) => {
                return Err(StoreError::Timeout {
                    what: format!(
                        "store {} queue stayed full until the caller's deadline",
                        self.name
                    ),
                })
            }
            Ok(Err(_)) => {
                return Err(StoreError::Unavailable {
                    reason: format!("store {} is shutting down", self.name),
                })
            }
            Ok(Ok(())) => {}
        }
        rx.await.map_err(|_| StoreError::Unavailable {
            reason: format!("store {} stopped before answering", self.name),
        })?
    }

    /// Sends a write to the leader's batcher, within the caller's deadline (and at
    /// most [`FORWARD_TIMEOUT`]).
    async fn forward(
        &self,
        leader: NodeId,
        addr: String,
        command: Command,
        bytes: usize,
        deadline: Instant,
    ) -> Result<Outcome, StoreError> {
        let client =
            self.peers
                .client_on(&addr, Lane::Bulk)
                .await
                .map_err(|e| StoreError::NotLeader {
                    leader: Some(leader),
                    leader_addr: Some(format!("{addr} ({e})")),
                })?;
        let mut ctx = deadline_ctx(FORWARD_TIMEOUT);
        ctx.deadline = ctx.deadline.min(deadline);
        match client
            .forward(ctx, self.name.clone(), command, bytes as u64)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.peers.forget_on(&addr, Lane::Bulk);
                Err(StoreError::Unavailable {
                    reason: format!("forwarding to leader {leader} at {addr} failed: {e}"),
                })
            }
        }
    }

    /// Appends events; see the worker service for the contract.
    pub async fn append(
        &self,
        stream_id: String,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        deadline: Instant,
    ) -> Result<AppendResult, StoreError> {
        domain::validate_append(&self.limits, &stream_id, &events)?;
        let bytes = events.iter().map(domain::event_size).sum();
        let events = events
            .into_iter()
            .map(|e| ProposedEvent {
                event_id: e.event_id.unwrap_or_else(uuid::Uuid::now_v7),
                event_type: e.event_type,
                data: e.data,
                metadata: e.metadata,
                content_type: e.content_type.into(),
                tags: e.tags,
            })
            .collect();
        let cmd = Command::Append {
            stream_id,
            expected: expected.into(),
            events,
        };
        match self.submit(cmd, bytes, deadline).await? {
            Outcome::Appended(r) => Ok(r),
            Outcome::Done | Outcome::Subscription(_) => Err(StoreError::Internal {
                message: "append answered without a result".into(),
            }),
        }
    }

    /// Deletes a stream (soft or hard).
    pub async fn delete(
        &self,
        stream_id: String,
        hard: bool,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        domain::validate_writable_stream_id(&self.limits, &stream_id)?;
        self.submit(Command::Delete { stream_id, hard }, 0, deadline)
            .await?;
        Ok(())
    }

    /// Saves a snapshot.
    pub async fn save_snapshot(
        &self,
        stream_id: String,
        version: u64,
        data: Vec<u8>,
        metadata: Vec<u8>,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        domain::validate_snapshot(&self.limits, &stream_id, &data, &metadata)?;
        let bytes = data.len() + metadata.len();
        let cmd = Command::SaveSnapshot {
            stream_id,
            version,
            data,
            metadata,
        };
        self.submit(cmd, bytes, deadline).await?;
        Ok(())
    }

    /// Deletes one snapshot or all of a stream's.
    pub async fn delete_snapshot(
        &self,
        stream_id: String,
        version: Option<u64>,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        domain::validate_stream_id(&self.limits, &stream_id)?;
        self.submit(Command::DeleteSnapshot { stream_id, version }, 0, deadline)
            .await?;
        Ok(())
    }

    /// Removes a node from the group: first as a voter (a joint change the leader
    /// commits), then from the nodes it replicates to. Only the leader accepts.
    pub async fn remove_node(&self, node_id: NodeId) -> Result<(), StoreError> {
        let members = self.raft.metrics().borrow().membership_config.clone();
        if members.membership().get_node(&node_id).is_none() {
            return Err(StoreError::NotFound {
                what: format!("node {node_id} in the group of store {}", self.name),
            });
        }
        let ids: std::collections::BTreeSet<NodeId> = [node_id].into_iter().collect();
        if members.voter_ids().any(|v| v == node_id) {
            self.raft
                .change_membership(openraft::ChangeMembers::RemoveVoters(ids.clone()), false)
                .await
                .map_err(crate::raft::rpc::membership_err)?;
        }
        self.raft
            .change_membership(openraft::ChangeMembers::RemoveNodes(ids), false)
            .await
            .map_err(crate::raft::rpc::membership_err)?;
        tracing::info!(target: "reckon_db", store = %self.name, node_id, "node removed from the group");
        Ok(())
    }

    /// Runs `f` on a consistent view of the state, after confirming leadership when
    /// the read must be linearizable.
    pub async fn read<T, F>(&self, consistency: ReadConsistency, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Reader) -> Result<Result<T, StoreError>, StorageError> + Send + 'static,
    {
        if consistency == ReadConsistency::Linearizable {
            self.check_not_moving()?;
            if !self.read_barrier.load(Ordering::Acquire) {
                // Commit an entry of our own first: everything before it is then
                // committed and applied (see `read_barrier`).
                self.raft
                    .client_write(WriteBatch {
                        timestamp_us: now_us(),
                        commands: Vec::new(),
                    })
                    .await
                    .map_err(write_err)?;
                self.read_barrier.store(true, Ordering::Release);
            }
            self.raft.ensure_linearizable().await.map_err(read_err)?;
        }
        let state = self.state.clone();
        match tokio::task::spawn_blocking(move || {
            let r = state.read()?;
            f(&r)
        })
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(StoreError::Internal {
                message: format!("read task failed: {e}"),
            }),
        }
    }

    /// Reads one stream.
    pub async fn read_stream(
        &self,
        stream_id: String,
        from: u64,
        count: u32,
        direction: Direction,
        consistency: ReadConsistency,
    ) -> Result<Vec<EventRecord>, StoreError> {
        domain::validate_stream_id(&self.limits, &stream_id)?;
        let count = domain::validate_count(&self.limits, count)?;
        self.read(consistency, move |r| {
            r.read_stream(&stream_id, from, count, direction)
        })
        .await
    }

    /// Reads the global log.
    pub async fn read_all(
        &self,
        from: u64,
        count: u32,
        direction: Direction,
        consistency: ReadConsistency,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let count = domain::validate_count(&self.limits, count)?;
        self.read(consistency, move |r| {
            r.read_all(from, count, direction).map(Ok)
        })
        .await
    }

    /// Reads by event type.
    pub async fn read_by_event_types(
        &self,
        types: Vec<String>,
        from: u64,
        count: u32,
        consistency: ReadConsistency,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let count = domain::validate_count(&self.limits, count)?;
        self.read(consistency, move |r| {
            r.read_by_types(&types, from, count).map(Ok)
        })
        .await
    }

    /// Reads by tags.
    pub async fn read_by_tags(
        &self,
        tags: Vec<String>,
        matching: TagMatch,
        from: u64,
        count: u32,
        consistency: ReadConsistency,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let count = domain::validate_count(&self.limits, count)?;
        self.read(consistency, move |r| {
            r.read_by_tags(&tags, matching, from, count).map(Ok)
        })
        .await
    }

    /// The stream's version, `None` when it does not exist.
    pub async fn get_version(
        &self,
        stream_id: String,
        consistency: ReadConsistency,
    ) -> Result<Option<u64>, StoreError> {
        domain::validate_stream_id(&self.limits, &stream_id)?;
        self.read(consistency, move |r| r.version(&stream_id).map(Ok))
            .await
    }

    /// Live streams, paged by id.
    pub async fn list_streams(
        &self,
        after: Option<String>,
        limit: u32,
        consistency: ReadConsistency,
    ) -> Result<Vec<StreamInfo>, StoreError> {
        let limit = domain::validate_count(&self.limits, limit)?;
        self.read(consistency, move |r| {
            r.list_streams(after.as_deref(), limit).map(Ok)
        })
        .await
    }

    /// Streams whose id contains `contains`, after `after`; see
    /// [`FIND_STREAMS_SCAN_MAX`].
    pub async fn find_streams(
        &self,
        contains: String,
        after: Option<String>,
        limit: u32,
        consistency: ReadConsistency,
    ) -> Result<StreamPage, StoreError> {
        let limit = domain::validate_count(&self.limits, limit)?;
        if contains.len() > self.limits.stream_id_bytes_max {
            return Err(StoreError::invalid(
                "contains",
                format!(
                    "{} bytes is longer than a stream id may be ({})",
                    contains.len(),
                    self.limits.stream_id_bytes_max
                ),
            ));
        }
        self.read(consistency, move |r| {
            r.find_streams(after.as_deref(), &contains, limit, FIND_STREAMS_SCAN_MAX)
                .map(Ok)
        })
        .await
    }

    /// One snapshot (the highest when `version` is `None`).
    pub async fn load_snapshot(
        &self,
        stream_id: String,
        version: Option<u64>,
        consistency: ReadConsistency,
    ) -> Result<SnapshotRecord, StoreError> {
        domain::validate_stream_id(&self.limits, &stream_id)?;
        self.read(consistency, move |r| {
            let found = match version {
                Some(v) => r.snapshots(&stream_id, v, v)?.pop(),
                None => r.latest_snapshot(&stream_id)?,
            };
            Ok(found.ok_or_else(|| StoreError::NotFound {
                what: match version {
                    Some(v) => format!("snapshot of stream {stream_id:?} at version {v}"),
                    None => format!("snapshot of stream {stream_id:?}"),
                },
            }))
        })
        .await
    }

    /// Every snapshot of a stream by ascending version.
    pub async fn list_snapshots(
        &self,
        stream_id: String,
        consistency: ReadConsistency,
    ) -> Result<Vec<SnapshotRecord>, StoreError> {
        domain::validate_stream_id(&self.limits, &stream_id)?;
        self.read(consistency, move |r| {
            r.snapshots(&stream_id, 0, u64::MAX).map(Ok)
        })
        .await
    }
}

/// Emits the cluster telemetry of one store's group as its Raft metrics change:
/// `reckon_db.cluster.leader.elected` (with the previous leader) and
/// `reckon_db.cluster.membership.changed`. Ends when the group shuts down.
async fn watch_leadership(raft: Raft, store: String, node_id: NodeId, metrics: Arc<StoreMetrics>) {
    let mut rx = raft.metrics();
    let mut leader: Option<NodeId> = None;
    let mut last_known: Option<NodeId> = None;
    let mut membership = None;
    loop {
        let (now_leader, term, m) = {
            let m = rx.borrow_and_update();
            (
                m.current_leader,
                m.current_term,
                m.membership_config.clone(),
            )
        };
        if now_leader != leader {
            metrics.leader_changes.fetch_add(1, Ordering::Relaxed);
            // The last leader known, across a spell without one.
            let previous = last_known.unwrap_or(0);
            match now_leader {
                Some(l) => {
                    emit!(t::CLUSTER_LEADER_ELECTED, "store" => &store, "node_id" => node_id, "leader" => l, "previous_leader" => previous, "term" => term);
                }
                None => {
                    emit!(t::CLUSTER_LEADER_LOST, "store" => &store, "node_id" => node_id, "previous_leader" => previous, "term" => term);
                }
            }
            leader = now_leader;
            last_known = now_leader.or(last_known);
        }
        if membership.as_ref() != Some(m.log_id()) {
            let voters: Vec<NodeId> = m.voter_ids().collect();
            let learners: Vec<NodeId> = m.membership().learner_ids().collect();
            if !voters.is_empty() {
                emit!(t::CLUSTER_MEMBERSHIP_CHANGED, "store" => &store, "node_id" => node_id, "voters" => format!("{voters:?}"), "learners" => format!("{learners:?}"));
            }
            membership = Some(*m.log_id());
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Packs queued writes into Raft entries; see the module docs.
async fn run_batcher(
    raft: Raft,
    mut rx: mpsc::Receiver<Pending>,
    opts: StoreOptions,
    read_barrier: Arc<std::sync::atomic::AtomicBool>,
) {
    let me = opts.node_id;
    let lease = Duration::from_millis(opts.election_timeout_max_ms);
    let in_flight = Arc::new(Semaphore::new(opts.pipeline_max.max(1)));
    let mut metrics = raft.metrics();
    let mut last_ts = 0u64;
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        // Wait for room in the pipeline, unless this node stops leading first (then
        // every write waiting here goes back to its caller) or the first write's
        // caller gives up.
        let first_deadline = first.deadline;
        let permit = tokio::select! {
            permit = in_flight.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = metrics.wait_for(|m| m.current_leader != Some(me)) => {
                let not_leader = leadership(&raft, me, lease).err();
                let refuse = |p: Pending| p.answer(Err(not_leader.clone().unwrap_or(StoreError::Unavailable {
                    reason: "leadership changed".into(),
                })));
                refuse(first);
                while let Ok(p) = rx.try_recv() {
                    refuse(p);
                }
                continue;
            }
            _ = tokio::time::sleep_until(first_deadline.into()) => {
                first.expire();
                continue;
            }
        };
        let mut bytes = first.bytes;
        let mut pending = vec![first];
        while pending.len() < opts.batch_commands_max && bytes < opts.entry_bytes_max {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.bytes;
                    pending.push(p);
                }
                Err(_) => break,
            }
        }
        let now = Instant::now();
        let (wanted, expired): (Vec<Pending>, Vec<Pending>) =
            pending.into_iter().partition(|p| p.wanted(now));
        expired.into_iter().for_each(Pending::expire);
        if wanted.is_empty() {
            continue;
        }
        // Only a leader proposes: a write queued before this node lost the lead goes
        // back to its caller, who retries with the leader.
        if let Err(e) = leadership(&raft, me, lease) {
            for p in wanted {
                p.answer(Err(e.clone()));
            }
            continue;
        }
        // Timestamps never go backwards on one leader, even if the clock does.
        last_ts = now_us().max(last_ts);
        let mut commands = Vec::with_capacity(wanted.len());
        let mut replies = Vec::with_capacity(wanted.len());
        for p in wanted {
            commands.push(p.command);
            replies.push(p.reply);
        }
        let batch = WriteBatch {
            timestamp_us: last_ts,
            commands,
        };
        let raft = raft.clone();
        let read_barrier = read_barrier.clone();
        tokio::spawn(async move {
            let res = raft.client_write(batch).await;
            drop(permit);
            match res {
                Ok(written) => {
                    if raft.metrics().borrow().current_leader == Some(me) {
                        read_barrier.store(true, Ordering::Release);
                    }
                    let mut results = written.data.results.into_iter();
                    for reply in replies {
                        let r = results.next().unwrap_or_else(|| {
                            Err(StoreError::Internal {
                                message: "batch answered fewer results than commands".into(),
                            })
                        });
                        let _ = reply.send(r);
                    }
                }
                Err(err) => {
                    let err = write_err(err);
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        });
    }
}

/// How long a write forwarded to the leader may take, at most.
pub const FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
