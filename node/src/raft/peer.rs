//! The node-to-node contract: the [`RaftService`] trait and the types it carries.
//! Raft messages between the members of each store's group, forwarded writes,
//! joining, and the hello that discovery uses. Internal to the node; multiplexed by
//! store on the node's one port (see
//! [`Service::Raft`](reckon_gater::transport::Service::Raft)).
//!
//! The contract belongs to the raft layer and knows nothing above it: the
//! [`network`](super::network) calls it as a client, and its server, which needs the
//! node's stores, lives above in [`peer_service`](crate::peer_service).
//!
//! openraft's votes and appends travel as bincode bytes, as a byte string
//! (`ByteBuf`): encoded in one copy, not element by element.

use openraft::Vote;
use reckon_gater::types::StoreError;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::election::PreVote;
use super::snapshot_transfer::{Chunk, Offer, Status};
use super::NodeId;
use crate::command::{Command, Outcome};

/// What a node says about itself to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The node's id.
    pub node_id: NodeId,
    /// The address peers dial.
    pub advertise: String,
    /// Each store it hosts and whether that store's group is initialized on it.
    pub stores: Vec<(String, bool)>,
}

/// The node-to-node service.
#[tarpc::service]
pub trait RaftService {
    /// Who are you, and which stores have you initialized?
    async fn hello() -> Hello;
    /// openraft append-entries for `store` (bincode request and result).
    async fn append_entries(store: String, rpc: ByteBuf) -> Result<ByteBuf, String>;
    /// Would this node vote for the candidate in `store` (see [`super::election`])?
    /// Changes nothing.
    async fn pre_vote(store: String, req: PreVote) -> bool;
    /// The leader of `store`, with `vote`, is alive (see [`super::election`]).
    async fn leader_ping(store: String, vote: Vote<NodeId>);
    /// openraft vote for `store`.
    async fn vote(store: String, rpc: ByteBuf) -> Result<ByteBuf, String>;
    /// A leader offers a snapshot of `store` (see [`super::snapshot_transfer`]).
    async fn snapshot_offer(store: String, offer: Offer) -> Result<Status, String>;
    /// One chunk of the snapshot of `store` on offer.
    async fn snapshot_chunk(store: String, chunk: Chunk) -> Result<Status, String>;
    /// Starts installing a snapshot of `store` received whole, or tells how it goes.
    async fn snapshot_install(store: String, snapshot_id: String) -> Result<Status, String>;
    /// A write a follower received, for the leader's batcher, within the caller's
    /// deadline (the context's); `bytes` is its payload size for batching.
    async fn forward(store: String, command: Command, bytes: u64) -> Result<Outcome, StoreError>;
    /// Adds a node to `store`'s group: as a learner until it has caught up, then as a
    /// voter. Only the leader accepts; others answer `NotLeader`.
    async fn join(store: String, node_id: NodeId, address: String) -> Result<(), StoreError>;
    /// Removes a node from `store`'s group. Only the leader accepts.
    async fn remove(store: String, node_id: NodeId) -> Result<(), StoreError>;
    /// Holds this node's elections for `store` for `ms` milliseconds: another node
    /// is taking the leadership over.
    async fn hold_elections(store: String, ms: u64) -> Result<(), StoreError>;
    /// Starts an election for `store` on this node now: it is a transfer's target.
    async fn campaign(store: String) -> Result<(), StoreError>;
}
