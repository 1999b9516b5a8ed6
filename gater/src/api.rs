//! The gater's service: what clients call, and where nodes register their workers.
//!
//! Clients send every store operation as a [`StoreRequest`], with the same contract as
//! the [worker service](crate::worker), plus health and cluster status; the gater
//! routes each request to a worker of the named store. Nodes call [`Gater::register`] once per store and then
//! [`Gater::heartbeat`] within their lease; a worker whose lease runs out is dropped.
//! Registration is signed with the cluster secret ([`crate::auth`]); everything else
//! a client calls is subject to [`crate::access`] once the gater has tokens.

use serde::{Deserialize, Serialize};

use crate::access::Principal;
use crate::metrics::StoreStats;
use crate::request::{StoreRequest, StoreResponse};
use crate::types::{Role, StoreError};

/// What a node tells a gater about one of its workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// The node's id.
    pub node_id: u64,
    /// The store the worker serves.
    pub store: String,
    /// The node's worker service address.
    pub address: String,
    /// Its role now.
    pub role: Role,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// The Raft term it is in.
    pub term: u64,
    /// Its last log index.
    pub last_log_index: u64,
    /// Its last applied index.
    pub applied_index: u64,
    /// Leader changes this worker has seen since its node started.
    pub leader_changes: u64,
    /// Events this worker has acknowledged since its node started.
    pub appended_events: u64,
}

/// A registration or heartbeat, authenticated when the cluster has a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The worker.
    pub worker: WorkerInfo,
    /// Microseconds since the Unix epoch when sent (replay protection).
    pub sent_us: u64,
    /// HMAC-SHA256 over the registration with the cluster secret, hex; empty when the
    /// cluster has none.
    pub auth: String,
}

/// What the gater answers a registration or heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Heartbeat again within this many milliseconds or be dropped.
    pub lease_ms: u64,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The authentication did not verify against the gater's secret.
    #[error("registration refused: {0}")]
    Unauthorized(String),
    /// A heartbeat for a worker the gater does not know (it restarted, or the lease ran
    /// out): register again.
    #[error("unknown worker: register again")]
    UnknownWorker,
    /// The registration itself is malformed.
    #[error("invalid registration: {0}")]
    Invalid(String),
}

/// One store's health as the gater sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreHealth {
    /// The store.
    pub store: String,
    /// `healthy` when a leader is known and every registered worker is healthy.
    pub healthy: bool,
    /// The leader's node id, when known.
    pub leader: Option<u64>,
    /// Live workers.
    pub workers: u32,
    /// Workers by role.
    pub leaders: u32,
    /// Followers.
    pub followers: u32,
    /// Learners.
    pub learners: u32,
    /// Workers marked suspect after a fault.
    pub suspect: u32,
}

/// The gater's view of every store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// Every store with at least one registered worker.
    pub stores: Vec<StoreHealth>,
    /// Workers dropped because their lease ran out, since the gater started.
    pub leases_expired: u64,
    /// Refusals and admin actions since the gater started.
    pub audit: AuditCounts,
}

/// What the gater's audit counted since it started (see [`crate::access`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCounts {
    /// Tokens not accepted, and calls made before authenticating.
    pub auth_failures: u64,
    /// Calls refused for lack of a role.
    pub permission_denied: u64,
    /// Admin operations let through (each is also logged with its principal).
    pub admin_actions: u64,
}

impl HealthReport {
    /// `healthy` when every store is.
    pub fn healthy(&self) -> bool {
        !self.stores.is_empty() && self.stores.iter().all(|s| s.healthy)
    }
}

/// One node as the cluster status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's id.
    pub node_id: u64,
    /// Its worker address.
    pub address: String,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: u64,
    /// Its last log index.
    pub last_log_index: u64,
    /// Its last applied index.
    pub applied_index: u64,
    /// Milliseconds since its last heartbeat reached the gater.
    pub last_heartbeat_ms: u64,
    /// Leader changes it has seen since it started.
    pub leader_changes: u64,
    /// Events it has acknowledged since it started.
    pub appended_events: u64,
    /// Whether the gater considers it healthy.
    pub healthy: bool,
}

/// One store's cluster status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    /// The store.
    pub store: String,
    /// The leader, when known.
    pub leader: Option<u64>,
    /// The highest term seen.
    pub term: u64,
    /// Its nodes.
    pub nodes: Vec<NodeStatus>,
}

/// The gater's client and registry service.
#[tarpc::service]
pub trait Gater {
    /// Registers (or re-registers) a worker and grants a lease.
    async fn register(registration: Registration) -> Result<Lease, RegistryError>;
    /// Renews a worker's lease and refreshes its role and indexes.
    async fn heartbeat(registration: Registration) -> Result<Lease, RegistryError>;
    /// Removes a worker at once (a node shutting down).
    async fn deregister(registration: Registration) -> Result<(), RegistryError>;

    /// Health per store; open to every connection, authenticated or not.
    async fn health() -> HealthReport;
    /// The stores with registered workers that the connection's principal holds a
    /// role on.
    async fn list_stores() -> Result<Vec<String>, StoreError>;
    /// Nodes, roles, leader, term and indexes per store, of the stores the
    /// connection's principal holds a role on.
    async fn cluster_status() -> Result<Vec<StoreStatus>, StoreError>;
    /// Counters and latency histograms per store and node, asked of every registered
    /// worker at once; a worker that does not answer within the deadline is left out.
    /// Only the stores the principal is `admin` of; `PermissionDenied` when none.
    async fn stats() -> Result<Vec<StoreStats>, StoreError>;

    /// One operation on `store`, routed by [`StoreRequest::route`] to a worker of it;
    /// see [`Worker::call`](crate::worker::Worker::call).
    async fn call(store: String, request: StoreRequest) -> Result<StoreResponse, StoreError>;

    /// Authenticates this connection with a bearer token (`None`: none) and answers
    /// who it now acts as; every later call on the connection is checked against that
    /// principal's grants. A token not accepted leaves the connection
    /// unauthenticated (`Unauthenticated`). On an open gater (no tokens configured)
    /// any answer is the open principal. Clients call it right after connecting,
    /// before anything else, on every new connection.
    async fn authenticate(token: Option<String>) -> Result<Principal, StoreError>;
}
