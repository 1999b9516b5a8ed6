//! The node-to-node service's server: answers [`RaftService`] calls from the other
//! members of each store's group by handing them to the store they name.
//!
//! The contract (the trait and its types) lives in the raft layer,
//! [`raft::peer`](crate::raft::peer); this server sits above it, beside the worker
//! [`service`](crate::service), because it needs the node's [`Stores`].
//!
//! openraft's votes and appends arrive as bincode bytes and are decoded here. A call
//! that fails says why as a [`PeerCallError`].

use std::sync::Arc;

use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::Vote;
use reckon_gater::types::StoreError;
use serde::Serialize;
use serde_bytes::ByteBuf;
use tarpc::context::Context;

use crate::command::{Command, Outcome};
use crate::raft::election::PreVote;
use crate::raft::peer::{Hello, PeerCallError, RaftService};
use crate::raft::snapshot_transfer::{Chunk, InboxError, Offer, Status};
use crate::raft::{NodeId, TypeConfig};
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

    /// The store a Raft call names, or why this node cannot answer for it.
    fn hosted(&self, store: &str) -> Result<&Arc<Store>, PeerCallError> {
        self.stores
            .get(store)
            .ok_or_else(|| PeerCallError::NotHosted {
                node_id: self.node_id,
                store: store.to_string(),
            })
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    store: &str,
    what: &str,
    b: &[u8],
) -> Result<T, PeerCallError> {
    // Bounded by the payload: a claimed length cannot reserve beyond it.
    reckon_gater::frame::decode_legacy(b).map_err(|e| PeerCallError::Undecodable {
        store: store.to_string(),
        what: what.to_string(),
        reason: e.to_string(),
    })
}

fn encode<T: Serialize>(store: &str, what: &str, v: &T) -> Result<ByteBuf, PeerCallError> {
    bincode::serialize(v)
        .map(ByteBuf::from)
        .map_err(|e| PeerCallError::Unencodable {
            store: store.to_string(),
            what: what.to_string(),
            reason: e.to_string(),
        })
}

/// openraft's failure of a vote or an append: only ever fatal.
fn raft_stopped(store: &str, e: RaftError<NodeId>) -> PeerCallError {
    let error = match e {
        RaftError::Fatal(f) => f,
        RaftError::APIError(never) => match never {},
    };
    PeerCallError::RaftStopped {
        store: store.to_string(),
        error: Box::new(error),
    }
}

/// The snapshot inbox's failure, naming the store.
fn inbox_err(store: &str, e: InboxError) -> PeerCallError {
    let store = store.to_string();
    match e {
        InboxError::RaftStopped(error) => PeerCallError::RaftStopped {
            store,
            error: Box::new(error),
        },
        InboxError::ChunkNotStored {
            snapshot_id,
            offset,
            error,
        } => PeerCallError::SnapshotChunkNotStored {
            store,
            snapshot_id,
            offset,
            reason: error.to_string(),
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
    ) -> Result<ByteBuf, PeerCallError> {
        let s = self.hosted(&store)?;
        let req: AppendEntriesRequest<TypeConfig> = decode(&store, "append-entries request", &rpc)?;
        // A leader of this term (or a later one) is talking: no election is needed,
        // however long appending what it sent takes (the call may even be cut off by
        // its deadline before it answers).
        let mine = s.raft().metrics().borrow().vote;
        s.election().heard_from(&req.vote, &mine);
        let res = s
            .raft()
            .append_entries(req)
            .await
            .map_err(|e| raft_stopped(&store, e))?;
        encode(&store, "append-entries response", &res)
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

    async fn vote(self, _: Context, store: String, rpc: ByteBuf) -> Result<ByteBuf, PeerCallError> {
        let raft = self.hosted(&store)?.raft();
        let req: VoteRequest<NodeId> = decode(&store, "vote request", &rpc)?;
        let res = raft.vote(req).await.map_err(|e| raft_stopped(&store, e))?;
        encode(&store, "vote response", &res)
    }

    async fn snapshot_offer(
        self,
        _: Context,
        store: String,
        offer: Offer,
    ) -> Result<Status, PeerCallError> {
        let inbox = self.hosted(&store)?.snapshot_inbox();
        inbox.offer(offer).await.map_err(|e| inbox_err(&store, e))
    }

    async fn snapshot_chunk(
        self,
        _: Context,
        store: String,
        chunk: Chunk,
    ) -> Result<Status, PeerCallError> {
        let inbox = self.hosted(&store)?.snapshot_inbox();
        inbox.chunk(chunk).await.map_err(|e| inbox_err(&store, e))
    }

    async fn snapshot_install(
        self,
        _: Context,
        store: String,
        snapshot_id: String,
    ) -> Result<Status, PeerCallError> {
        let inbox = self.hosted(&store)?.snapshot_inbox();
        inbox
            .install(snapshot_id)
            .await
            .map_err(|e| inbox_err(&store, e))
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
