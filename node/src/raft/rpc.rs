//! The node-to-node service: Raft messages between the members of each store's group,
//! forwarded writes, joining, and the hello that discovery uses. Internal to the node;
//! multiplexed by store on the node's one port (see
//! [`Service::Raft`](reckon_gater::transport::Service::Raft)).
//!
//! openraft's votes and appends travel as bincode bytes, as a byte string
//! (`ByteBuf`): encoded in one copy, not element by element.

use std::collections::BTreeSet;

use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{BasicNode, ChangeMembers, Vote};
use reckon_gater::types::StoreError;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tarpc::context::Context;

use super::election::PreVote;
use super::snapshot_transfer::{Chunk, Offer, Status};
use super::{NodeId, TypeConfig};
use crate::command::{Command, Outcome};
use crate::service::Stores;

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

/// The node-to-node service handler.
#[derive(Clone)]
pub struct RaftServer {
    stores: Stores,
    node_id: NodeId,
    advertise: String,
}

impl RaftServer {
    /// Serves the given stores.
    pub fn new(stores: Stores, node_id: NodeId, advertise: String) -> Self {
        RaftServer {
            stores,
            node_id,
            advertise,
        }
    }

    fn store(&self, store: &str) -> Result<&std::sync::Arc<crate::store::Store>, StoreError> {
        self.stores
            .get(store)
            .ok_or_else(|| StoreError::UnknownStore {
                store: store.to_string(),
            })
    }

    fn inbox(&self, store: &str) -> Result<&super::snapshot_transfer::Inbox, String> {
        self.stores
            .get(store)
            .map(|s| s.snapshot_inbox())
            .ok_or_else(|| format!("node {} does not host store {store:?}", self.node_id))
    }

    fn raft(&self, store: &str) -> Result<&super::Raft, String> {
        self.stores
            .get(store)
            .map(|s| s.raft())
            .ok_or_else(|| format!("node {} does not host store {store:?}", self.node_id))
    }
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    bincode::deserialize(b).map_err(|e| format!("undecodable raft message: {e}"))
}

fn encode<T: Serialize>(v: &T) -> Result<ByteBuf, String> {
    bincode::serialize(v)
        .map(ByteBuf::from)
        .map_err(|e| format!("unencodable raft message: {e}"))
}

/// Maps a membership-change failure to the wire error.
pub fn membership_err(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> StoreError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => StoreError::NotLeader {
            leader: f.leader_id,
            leader_addr: f.leader_node.map(|n| n.addr),
        },
        other => StoreError::Unavailable {
            reason: other.to_string(),
        },
    }
}

impl RaftService for RaftServer {
    async fn hello(self, _: Context) -> Hello {
        let mut stores = Vec::with_capacity(self.stores.len());
        for (name, s) in self.stores.iter() {
            let initialized = s.raft().is_initialized().await.unwrap_or(false);
            stores.push((name.clone(), initialized));
        }
        stores.sort();
        Hello {
            node_id: self.node_id,
            advertise: self.advertise.clone(),
            stores,
        }
    }

    async fn append_entries(
        self,
        _: Context,
        store: String,
        rpc: ByteBuf,
    ) -> Result<ByteBuf, String> {
        let req: AppendEntriesRequest<TypeConfig> = decode(&rpc)?;
        let s = self
            .stores
            .get(&store)
            .ok_or_else(|| format!("node {} does not host store {store:?}", self.node_id))?;
        // A leader of this term (or a later one) is talking: no election is needed,
        // however long appending what it sent takes (the call may even be cut off by
        // its deadline before it answers).
        let mine = s.raft().metrics().borrow().vote;
        s.election().heard_from(&req.vote, &mine);
        let res = s.raft().append_entries(req).await;
        encode(&res)
    }

    async fn leader_ping(self, _: Context, store: String, vote: Vote<NodeId>) {
        if let Some(s) = self.stores.get(&store) {
            let mine = s.raft().metrics().borrow().vote;
            s.election().heard_from(&vote, &mine);
        }
    }

    async fn pre_vote(self, _: Context, store: String, req: PreVote) -> bool {
        match self.stores.get(&store) {
            Some(s) => s.pre_vote(&req).await,
            None => false,
        }
    }

    async fn vote(self, _: Context, store: String, rpc: ByteBuf) -> Result<ByteBuf, String> {
        let req: VoteRequest<NodeId> = decode(&rpc)?;
        let res = self.raft(&store)?.vote(req).await;
        encode(&res)
    }

    async fn snapshot_offer(
        self,
        _: Context,
        store: String,
        offer: Offer,
    ) -> Result<Status, String> {
        self.inbox(&store)?.offer(offer).await
    }

    async fn snapshot_chunk(
        self,
        _: Context,
        store: String,
        chunk: Chunk,
    ) -> Result<Status, String> {
        self.inbox(&store)?.chunk(chunk).await
    }

    async fn snapshot_install(
        self,
        _: Context,
        store: String,
        snapshot_id: String,
    ) -> Result<Status, String> {
        self.inbox(&store)?.install(snapshot_id).await
    }

    async fn forward(
        self,
        ctx: Context,
        store: String,
        command: Command,
        bytes: u64,
    ) -> Result<Outcome, StoreError> {
        // One hop only: a node that is not the leader either answers NotLeader.
        self.store(&store)?
            .submit_forwarded(command, bytes as usize, ctx.deadline)
            .await
    }

    async fn join(
        self,
        _: Context,
        store: String,
        node_id: NodeId,
        address: String,
    ) -> Result<(), StoreError> {
        let s = self
            .stores
            .get(&store)
            .ok_or_else(|| StoreError::UnknownStore {
                store: store.clone(),
            })?;
        let raft = s.raft();
        let m = raft.metrics().borrow().clone();
        if m.membership_config
            .membership()
            .get_node(&node_id)
            .is_some()
            && m.membership_config.voter_ids().any(|v| v == node_id)
        {
            return Ok(());
        }
        raft.add_learner(
            node_id,
            BasicNode {
                addr: address.clone(),
            },
            true,
        )
        .await
        .map_err(membership_err)?;
        let mut ids = BTreeSet::new();
        ids.insert(node_id);
        raft.change_membership(ChangeMembers::AddVoterIds(ids), false)
            .await
            .map_err(membership_err)?;
        tracing::info!(target: "reckon_db", store, node_id, address, "voter added to the store group");
        Ok(())
    }

    async fn hold_elections(self, _: Context, store: String, ms: u64) -> Result<(), StoreError> {
        self.store(&store)?
            .hold_elections(std::time::Duration::from_millis(ms));
        Ok(())
    }

    async fn campaign(self, _: Context, store: String) -> Result<(), StoreError> {
        self.store(&store)?.campaign().await
    }

    async fn remove(self, _: Context, store: String, node_id: NodeId) -> Result<(), StoreError> {
        self.stores
            .get(&store)
            .ok_or_else(|| StoreError::UnknownStore {
                store: store.clone(),
            })?
            .remove_node(node_id)
            .await
    }
}
