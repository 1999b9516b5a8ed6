//! The node-to-node service's server: answers [`RaftService`] calls from the other
//! members of each store's group by handing them to the store they name.
//!
//! The contract (the trait and its types) lives in the raft layer,
//! [`raft::peer`](crate::raft::peer); this server sits above it, beside the worker
//! [`service`](crate::service), because it needs the node's [`Stores`].
//!
//! openraft's votes and appends arrive as bincode bytes and are decoded here.

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::Vote;
use reckon_gater::types::StoreError;
use serde::Serialize;
use serde_bytes::ByteBuf;
use tarpc::context::Context;

use crate::command::{Command, Outcome};
use crate::raft::election::PreVote;
use crate::raft::peer::{Hello, RaftService};
use crate::raft::snapshot_transfer::{Chunk, Inbox, Offer, Status};
use crate::raft::{NodeId, Raft, TypeConfig};
use crate::store::{Store, Stores};

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

    fn store(&self, store: &str) -> Result<&Arc<Store>, StoreError> {
        self.stores
            .get(store)
            .ok_or_else(|| StoreError::UnknownStore {
                store: store.to_string(),
            })
    }

    fn inbox(&self, store: &str) -> Result<&Inbox, String> {
        self.stores
            .get(store)
            .map(|s| s.snapshot_inbox())
            .ok_or_else(|| format!("node {} does not host store {store:?}", self.node_id))
    }

    fn raft(&self, store: &str) -> Result<&Raft, String> {
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
        self.store(&store)?.add_voter(node_id, address).await
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
        self.store(&store)?.remove_node(node_id).await
    }
}
