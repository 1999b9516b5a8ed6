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
//! (`ByteBuf`): encoded in one copy, not element by element. A call that fails on
//! the node that answers it says why as a [`PeerCallError`], each kind as itself.

use openraft::error::Fatal;
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

/// Why a node-to-node call failed on the node that answered it, each kind as itself so
/// that the caller can act on it (see [`network`](super::network)).
///
/// Part of the wire format: bincode numbers the variants in the order they are
/// declared, so a new one goes at the end and none is reordered or removed (the
/// tests pin each variant's number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PeerCallError {
    /// The node does not host the store the call names: for that store, it is as
    /// good as unreachable.
    #[error("node {node_id} does not host store {store:?}")]
    NotHosted {
        /// The node that answered.
        node_id: NodeId,
        /// The store the call named.
        store: String,
    },
    /// The node could not decode a message of the call: a bug, or nodes of different
    /// versions.
    #[error("store {store:?}: cannot decode the {what}: {reason}")]
    Undecodable {
        /// The store the call named.
        store: String,
        /// Which message.
        what: String,
        /// What the decoder said.
        reason: String,
    },
    /// The node could not encode its answer: a bug.
    #[error("store {store:?}: cannot encode the {what}: {reason}")]
    Unencodable {
        /// The store the call named.
        store: String,
        /// Which message.
        what: String,
        /// What the encoder said.
        reason: String,
    },
    /// The store's Raft group on the node has stopped: openraft's fatal error, as
    /// openraft gave it.
    #[error("store {store:?}: fatal raft error: {error}")]
    RaftStopped {
        /// The store.
        store: String,
        /// openraft's error (boxed: it is large, and rare).
        error: Box<Fatal<NodeId>>,
    },
    /// The node could not store a chunk of a snapshot it was sent, and dropped what
    /// it had received of it.
    #[error("store {store:?}: cannot store the chunk of snapshot {snapshot_id} at offset {offset}: {reason}")]
    SnapshotChunkNotStored {
        /// The store.
        store: String,
        /// The snapshot.
        snapshot_id: String,
        /// Where the chunk starts.
        offset: u64,
        /// What failed.
        reason: String,
    },
}

/// The node-to-node service.
#[tarpc::service]
pub trait RaftService {
    /// Who are you, and which stores have you initialized?
    async fn hello() -> Hello;
    /// openraft append-entries for `store` (bincode request and response).
    async fn append_entries(store: String, rpc: ByteBuf) -> Result<ByteBuf, PeerCallError>;
    /// Would this node vote for the candidate in `store` (see [`super::election`])?
    /// Changes nothing.
    async fn pre_vote(store: String, req: PreVote) -> bool;
    /// The leader of `store`, with `vote`, is alive (see [`super::election`]).
    async fn leader_ping(store: String, vote: Vote<NodeId>);
    /// openraft vote for `store` (bincode request and response).
    async fn vote(store: String, rpc: ByteBuf) -> Result<ByteBuf, PeerCallError>;
    /// A leader offers a snapshot of `store` (see [`super::snapshot_transfer`]).
    async fn snapshot_offer(store: String, offer: Offer) -> Result<Status, PeerCallError>;
    /// One chunk of the snapshot of `store` on offer.
    async fn snapshot_chunk(store: String, chunk: Chunk) -> Result<Status, PeerCallError>;
    /// Starts installing a snapshot of `store` received whole, or tells how it goes.
    async fn snapshot_install(store: String, snapshot_id: String) -> Result<Status, PeerCallError>;
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

#[cfg(test)]
mod tests {
    use bincode::Options;

    use super::*;

    /// Each variant, in declaration order, with the words its message must hold.
    fn every_variant() -> Vec<(PeerCallError, Vec<&'static str>)> {
        let store = "orders";
        vec![
            (
                PeerCallError::NotHosted {
                    node_id: 7,
                    store: store.into(),
                },
                vec!["node 7", "\"orders\""],
            ),
            (
                PeerCallError::Undecodable {
                    store: store.into(),
                    what: "vote request".into(),
                    reason: "unexpected end of file".into(),
                },
                vec![
                    "\"orders\"",
                    "decode",
                    "vote request",
                    "unexpected end of file",
                ],
            ),
            (
                PeerCallError::Unencodable {
                    store: store.into(),
                    what: "append-entries response".into(),
                    reason: "size limit".into(),
                },
                vec![
                    "\"orders\"",
                    "encode",
                    "append-entries response",
                    "size limit",
                ],
            ),
            (
                PeerCallError::RaftStopped {
                    store: store.into(),
                    error: Box::new(Fatal::Stopped),
                },
                vec!["\"orders\"", "fatal raft error", "raft stopped"],
            ),
            (
                PeerCallError::SnapshotChunkNotStored {
                    store: store.into(),
                    snapshot_id: "s-42".into(),
                    offset: 1048576,
                    reason: "no space left on device".into(),
                },
                vec!["\"orders\"", "s-42", "1048576", "no space left on device"],
            ),
        ]
    }

    #[test]
    fn peer_call_errors_keep_their_kind_and_wire_numbers() {
        // The transport's codec: bincode with its default options.
        let codec = bincode::DefaultOptions::new();
        for (number, (e, words)) in every_variant().into_iter().enumerate() {
            let bytes = codec.serialize(&e).unwrap();
            assert_eq!(
                usize::from(bytes[0]),
                number,
                "{e:?}: variants keep their order on the wire"
            );
            let back: PeerCallError = codec.deserialize(&bytes).unwrap();
            assert_eq!(back, e);
            let text = e.to_string();
            for w in words {
                assert!(text.contains(w), "{text:?} names {w:?}");
            }
        }
    }

    #[test]
    fn a_storage_failure_keeps_openrafts_kind() {
        let codec = bincode::DefaultOptions::new();
        let io = std::io::Error::other("disk gone");
        let storage = openraft::StorageError::from_io_error(
            openraft::ErrorSubject::Snapshot(None),
            openraft::ErrorVerb::Write,
            io,
        );
        let e = PeerCallError::RaftStopped {
            store: "s".into(),
            error: Box::new(Fatal::StorageError(storage.clone())),
        };
        let back: PeerCallError = codec.deserialize(&codec.serialize(&e).unwrap()).unwrap();
        let got = match &back {
            PeerCallError::RaftStopped { error, .. } => match &**error {
                Fatal::StorageError(got) => got,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        assert_eq!(got, &storage);
        assert!(e.to_string().contains("disk gone"), "{e}");
    }
}
