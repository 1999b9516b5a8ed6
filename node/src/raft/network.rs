//! The transport between the members of a store's Raft group: the node-to-node
//! [`RaftService`](super::peer::RaftService) over tarpc.
//!
//! Connections are pooled per peer address and shared by every store of the node; a
//! connection that fails is dropped and rebuilt on the next call. Every call carries
//! a deadline: openraft's TTL for votes and appends, one that fits the size of the
//! data for snapshots ([`snapshot_transfer`]).
//!
//! A call the peer answers with a [`PeerCallError`] is handled by its kind: a peer
//! that does not host the store is unreachable for it (openraft backs off); one whose
//! group of the store has stopped is down for it and its fatal error goes back to
//! openraft as the peer's; a message one side cannot encode or decode is a bug or a
//! mixed-version cluster, and is logged as such.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::SnapshotResponse;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::Snapshot;
use openraft::{BasicNode, OptionalSend, Vote};
use reckon_gater::emit;
use reckon_gater::pool::Pool;
use reckon_gater::telemetry as t;
use reckon_gater::transport::{Dialer, Service};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::election::{PreVote, Voters};
use super::peer::{PeerCallError, RaftServiceClient};
use super::snapshot_transfer::{self, CallError, Chunk, Offer, Status};
use super::{NodeId, TypeConfig};

/// Which of the connections to a peer a call travels on. Each lane is a TCP
/// connection of its own, so that megabytes of entries or snapshot on one never
/// delay the small messages that keep a group together (heartbeats, votes) on
/// another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Votes, pre-votes, heartbeats (AppendEntries without entries), membership and
    /// the rest of the small calls.
    Control = 0,
    /// AppendEntries with entries, and writes forwarded to the leader.
    Bulk = 1,
    /// Snapshot transfers.
    Snapshot = 2,
}

/// Connections to peers, by [`Lane`] and address, shared by every store of a node.
#[derive(Clone, Default)]
pub struct PeerPool {
    lanes: [Pool<RaftServiceClient>; 3],
    /// How peers are dialled: with the node's TLS, or in clear text.
    dialer: Dialer,
    /// This node's id, for telemetry.
    local: NodeId,
    /// Whether each peer's group of a store (by store, then address) answered its last
    /// call: the first outcome and every change are reported as `cluster.node.up` /
    /// `cluster.node.down`.
    reachable: Arc<std::sync::Mutex<HashMap<String, HashMap<String, bool>>>>,
}

/// Why a peer call failed before reaching openraft on the other side.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Dialling failed.
    #[error("peer {addr} unreachable: {source}")]
    Unreachable {
        /// The peer.
        addr: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The call failed in transport or timed out.
    #[error("peer {addr}: {reason}")]
    Call {
        /// The peer.
        addr: String,
        /// What failed.
        reason: String,
    },
}

impl PeerPool {
    /// An empty pool for the node `local`.
    pub fn new(local: NodeId) -> Self {
        PeerPool {
            local,
            ..Default::default()
        }
    }

    /// An empty pool for the node `local` that dials peers with `dialer`.
    pub fn with_dialer(local: NodeId, dialer: Dialer) -> Self {
        PeerPool {
            local,
            dialer,
            ..Default::default()
        }
    }

    /// Notes the outcome of a call to `peer`'s group of `store` at `addr`, reporting
    /// a change.
    fn note(
        &self,
        store: &str,
        peer: NodeId,
        addr: &str,
        ok: bool,
        reason: impl FnOnce() -> String,
    ) {
        let changed = {
            let mut r = self.reachable.lock().unwrap_or_else(|p| p.into_inner());
            // Looked up by reference: this runs on every Raft call, and allocates
            // only when the peer's state changes.
            if r.get(store).and_then(|peers| peers.get(addr)) == Some(&ok) {
                false
            } else {
                r.entry(store.to_string())
                    .or_default()
                    .insert(addr.to_string(), ok);
                true
            }
        };
        if !changed {
            return;
        }
        if ok {
            emit!(t::CLUSTER_NODE_UP, "node_id" => self.local, "store" => store, "peer" => peer, "address" => addr);
        } else {
            emit!(t::CLUSTER_NODE_DOWN, "node_id" => self.local, "store" => store, "peer" => peer, "address" => addr, "reason" => reason());
        }
    }

    /// A client for `addr` on the control lane, dialled if needed.
    pub async fn client(&self, addr: &str) -> Result<RaftServiceClient, PeerError> {
        self.client_on(addr, Lane::Control).await
    }

    /// A client for `addr` on `lane`, dialled if needed, outside the pool's lock: a
    /// peer that does not answer (its packets dropped, its process paused) holds up
    /// only the calls to it.
    pub async fn client_on(&self, addr: &str, lane: Lane) -> Result<RaftServiceClient, PeerError> {
        let dial = || async {
            let t = self.dialer.dial(addr, Service::Raft).await?;
            Ok::<_, std::io::Error>(
                RaftServiceClient::new(tarpc::client::Config::default(), t).spawn(),
            )
        };
        self.lanes[lane as usize]
            .get_or_dial(addr, dial)
            .await
            .map(|(c, _)| c)
            .map_err(|source| PeerError::Unreachable {
                addr: addr.to_string(),
                source,
            })
    }

    /// Forgets a broken control-lane connection so the next call dials again.
    pub async fn forget(&self, addr: &str) {
        self.forget_on(addr, Lane::Control);
    }

    /// Forgets a broken connection on `lane` so the next call on it dials again.
    pub fn forget_on(&self, addr: &str, lane: Lane) {
        self.lanes[lane as usize].forget(addr);
    }
}

/// Asks the voters of one store's group for pre-votes, over the node's shared pool.
pub struct PeerVoters {
    store: String,
    pool: PeerPool,
}

impl PeerVoters {
    /// The voters of `store`, reached through `pool`.
    pub fn new(store: &str, pool: PeerPool) -> Self {
        PeerVoters {
            store: store.to_string(),
            pool,
        }
    }
}

impl Voters for PeerVoters {
    async fn ping(&self, _node: NodeId, addr: &str, vote: Vote<NodeId>, deadline: Duration) {
        let Ok(client) = self.pool.client(addr).await else {
            return;
        };
        if client
            .leader_ping(deadline_ctx(deadline), self.store.clone(), vote)
            .await
            .is_err()
        {
            self.pool.forget(addr).await;
        }
    }

    async fn ask(
        &self,
        _node: NodeId,
        addr: &str,
        req: PreVote,
        deadline: Duration,
    ) -> Option<bool> {
        let client = self.pool.client(addr).await.ok()?;
        match client
            .pre_vote(deadline_ctx(deadline), self.store.clone(), req)
            .await
        {
            Ok(granted) => Some(granted),
            Err(_) => {
                self.pool.forget(addr).await;
                None
            }
        }
    }
}

/// A tarpc context whose deadline is `ttl` from now.
pub fn deadline_ctx(ttl: Duration) -> tarpc::context::Context {
    let mut c = tarpc::context::current();
    c.deadline = Instant::now() + ttl;
    c
}

/// The network factory of one store's group.
#[derive(Clone)]
pub struct Network {
    store: String,
    pool: PeerPool,
}

impl Network {
    /// The network of `store`, over the node's shared pool.
    pub fn new(store: &str, pool: PeerPool) -> Self {
        Network {
            store: store.to_string(),
            pool,
        }
    }
}

/// A connection to one peer for one store.
pub struct PeerConn {
    store: String,
    target: NodeId,
    addr: String,
    pool: PeerPool,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConn;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerConn {
            store: self.store.clone(),
            target,
            addr: node.addr.clone(),
            pool: self.pool.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

enum Kind {
    Append,
    Vote,
}

impl Kind {
    /// The request's name, for errors.
    fn request(&self) -> &'static str {
        match self {
            Kind::Append => "append-entries request",
            Kind::Vote => "vote request",
        }
    }

    /// The response's name, for errors.
    fn response(&self) -> &'static str {
        match self {
            Kind::Append => "append-entries response",
            Kind::Vote => "vote response",
        }
    }
}

type CallErr = RPCError<NodeId, BasicNode, RaftError<NodeId>>;

impl PeerConn {
    async fn call<Req, Resp>(
        &self,
        kind: Kind,
        lane: Lane,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, CallErr>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let bytes = match bincode::serialize(req) {
            Ok(b) => serde_bytes::ByteBuf::from(b),
            Err(e) => {
                return Err(self.codec_bug(PeerCallError::Unencodable {
                    store: self.store.clone(),
                    what: kind.request().into(),
                    reason: e.to_string(),
                }))
            }
        };
        let client = match self.pool.client_on(&self.addr, lane).await {
            Ok(c) => c,
            Err(e) => {
                self.pool
                    .note(&self.store, self.target, &self.addr, false, || {
                        e.to_string()
                    });
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
        };
        let ctx = deadline_ctx(ttl);
        let store = self.store.clone();
        let res = match kind {
            Kind::Append => client.append_entries(ctx, store, bytes).await,
            Kind::Vote => client.vote(ctx, store, bytes).await,
        };
        let payload = match res {
            Ok(Ok(p)) => p,
            Ok(Err(refused)) => return Err(self.refused(refused)),
            Err(e) => {
                self.pool.forget_on(&self.addr, lane);
                self.pool
                    .note(&self.store, self.target, &self.addr, false, || {
                        e.to_string()
                    });
                return Err(RPCError::Unreachable(Unreachable::new(&PeerError::Call {
                    addr: self.addr.clone(),
                    reason: e.to_string(),
                })));
            }
        };
        let resp = bincode::deserialize(&payload).map_err(|e| {
            self.codec_bug(PeerCallError::Undecodable {
                store: self.store.clone(),
                what: kind.response().into(),
                reason: e.to_string(),
            })
        })?;
        self.pool
            .note(&self.store, self.target, &self.addr, true, String::new);
        Ok(resp)
    }

    /// A vote or an append the peer answered with an error, as openraft's error.
    fn refused(&self, e: PeerCallError) -> CallErr {
        match e {
            // Not there for this store: as if unreachable, so that openraft backs off.
            PeerCallError::NotHosted { .. } => {
                self.pool
                    .note(&self.store, self.target, &self.addr, false, || {
                        e.to_string()
                    });
                RPCError::Unreachable(Unreachable::new(&e))
            }
            // A peer whose group of this store has stopped is down for it, though its
            // process still answers.
            PeerCallError::RaftStopped { error, .. } => {
                self.pool
                    .note(&self.store, self.target, &self.addr, false, || {
                        error.to_string()
                    });
                RPCError::RemoteError(RemoteError::new(self.target, RaftError::Fatal(*error)))
            }
            PeerCallError::Undecodable { .. } | PeerCallError::Unencodable { .. } => {
                self.codec_bug(e)
            }
            // Not an answer to a vote or an append.
            PeerCallError::SnapshotChunkNotStored { .. } => {
                RPCError::Network(NetworkError::new(&e))
            }
        }
    }

    /// Logs a message that one side could not encode or decode as the bug (or the
    /// mixed-version cluster) it is.
    fn log_codec_bug(&self, e: &PeerCallError) {
        tracing::error!(target: "reckon_db", store = %self.store, peer = self.target, address = %self.addr, error = %e, "a raft message could not be encoded or decoded: a bug, or nodes of different versions");
    }

    /// A message that one side could not encode or decode, logged, as a network
    /// error to openraft.
    fn codec_bug(&self, e: PeerCallError) -> CallErr {
        self.log_codec_bug(&e);
        RPCError::Network(NetworkError::new(&e))
    }

    /// One call of a snapshot transfer, with the reachability bookkeeping of every
    /// other call.
    async fn snapshot_call<F, Fut>(&self, deadline: Duration, f: F) -> Result<Status, CallError>
    where
        F: FnOnce(RaftServiceClient, tarpc::context::Context, String) -> Fut,
        Fut: Future<Output = Result<Result<Status, PeerCallError>, tarpc::client::RpcError>>,
    {
        let client = match self.pool.client_on(&self.addr, Lane::Snapshot).await {
            Ok(c) => c,
            Err(e) => {
                let reason = e.to_string();
                self.pool
                    .note(&self.store, self.target, &self.addr, false, || {
                        reason.clone()
                    });
                return Err(CallError::Unreachable(reason));
            }
        };
        match f(client, deadline_ctx(deadline), self.store.clone()).await {
            Ok(Ok(status)) => {
                self.pool
                    .note(&self.store, self.target, &self.addr, true, String::new);
                Ok(status)
            }
            Ok(Err(refused)) => Err(self.snapshot_refused(refused)),
            Err(e) => {
                self.pool.forget_on(&self.addr, Lane::Snapshot);
                let reason = e.to_string();
                self.pool
                    .note(&self.store, self.target, &self.addr, false, || {
                        reason.clone()
                    });
                Err(CallError::Network(format!("peer {}: {reason}", self.addr)))
            }
        }
    }

    /// A snapshot call the peer answered with an error, as the sender's error: a
    /// failed call, which it retries a few times.
    fn snapshot_refused(&self, e: PeerCallError) -> CallError {
        let reason = e.to_string();
        match e {
            PeerCallError::NotHosted { .. } => {
                self.pool
                    .note(&self.store, self.target, &self.addr, false, || {
                        reason.clone()
                    });
                CallError::Unreachable(reason)
            }
            PeerCallError::RaftStopped { .. } => {
                self.pool
                    .note(&self.store, self.target, &self.addr, false, || {
                        reason.clone()
                    });
                CallError::Network(reason)
            }
            PeerCallError::Undecodable { .. } | PeerCallError::Unencodable { .. } => {
                self.log_codec_bug(&e);
                CallError::Network(reason)
            }
            // The follower dropped what it had received; the next call finds out
            // where to go on.
            PeerCallError::SnapshotChunkNotStored { .. } => CallError::Network(reason),
        }
    }
}

impl snapshot_transfer::Peer for PeerConn {
    async fn offer(&self, offer: Offer, deadline: Duration) -> Result<Status, CallError> {
        self.snapshot_call(deadline, |c, ctx, store| async move {
            c.snapshot_offer(ctx, store, offer).await
        })
        .await
    }

    async fn chunk(&self, chunk: Chunk, deadline: Duration) -> Result<Status, CallError> {
        self.snapshot_call(deadline, |c, ctx, store| async move {
            c.snapshot_chunk(ctx, store, chunk).await
        })
        .await
    }

    async fn install(&self, snapshot_id: String, deadline: Duration) -> Result<Status, CallError> {
        self.snapshot_call(deadline, |c, ctx, store| async move {
            c.snapshot_install(ctx, store, snapshot_id).await
        })
        .await
    }
}

impl RaftNetwork<TypeConfig> for PeerConn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        // Heartbeats go on the control lane, never behind megabytes of entries.
        let lane = if rpc.entries.is_empty() {
            Lane::Control
        } else {
            Lane::Bulk
        };
        self.call(Kind::Append, lane, &rpc, option.hard_ttl()).await
    }

    /// Never called: snapshots go whole through [`full_snapshot`](Self::full_snapshot).
    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(RPCError::Network(NetworkError::new(&Msg(
            "snapshots are sent whole, by full_snapshot".into(),
        ))))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        snapshot_transfer::send(&*self, self.target, vote, snapshot, cancel).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Kind::Vote, Lane::Control, &rpc, option.hard_ttl())
            .await
    }
}
