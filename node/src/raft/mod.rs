//! The openraft adapters: one Raft group per store.
//!
//! - [`format`](mod@format): how the log file and the Raft layer's records are laid out on disk,
//!   with the log file's format version.
//! - [`log_store`]: the Raft log and vote in redb, fsynced before openraft is told an
//!   entry is durable.
//! - [`state_machine`]: applies committed entries to [`StateDb`](crate::storage::StateDb)
//!   and builds or installs snapshots as redb files.
//! - [`peer`]: the node-to-node contract (the tarpc trait and what it carries); its
//!   server lives above, with the stores it serves.
//! - [`network`]: the transport between the members of a group, a client of [`peer`].
//! - [`election`]: a pre-vote before every election, so that a node that was paused
//!   or cut off does not depose a leader the others still follow.
//! - [`snapshot_transfer`]: moving a snapshot to a follower far behind, with
//!   deadlines that fit its size and an installation that may take as long as it
//!   needs.
//!
//! The entry payload is a [`WriteBatch`](crate::command::WriteBatch), stored as
//! [`format`](mod@format) says; its response is the [`BatchResult`](crate::command::BatchResult) of each
//! command.

use std::fmt::Display;

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};

pub mod election;
pub mod format;
pub mod log_store;
pub mod network;
pub mod peer;
pub mod snapshot_transfer;
pub mod state_machine;

/// Node ids are plain integers, unique in a cluster and never reused.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The type configuration of every store's Raft group.
    pub TypeConfig:
        D = crate::command::WriteBatch,
        R = crate::command::BatchResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = state_machine::SnapshotFile,
);

/// The openraft handle of one store's group.
pub type Raft = openraft::Raft<TypeConfig>;

/// Wraps an error from the storage engine into openraft's storage error.
pub(crate) fn storage_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl Display,
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, AnyError::error(e)).into()
}

/// Runs blocking storage work off the async workers and wraps a panic or a storage
/// failure into openraft's error.
pub(crate) async fn blocking<T, E>(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, StorageError<NodeId>>
where
    T: Send + 'static,
    E: Display + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(storage_err(subject, verb, e)),
        Err(join) => Err(storage_err(subject, verb, join)),
    }
}
