//! openraft's errors as the wire's [`StoreError`]: one mapping per kind of call (a
//! write, a leadership check, a membership change), all answering openraft's
//! `ForwardToLeader` through [`not_leader`], so that a client is told where the
//! leader is the same way whatever it asked. Also [`StoreStartError`]: why a store
//! could not be opened.

use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::BasicNode;
use reckon_gater::types::StoreError;

use crate::raft::NodeId;
use crate::storage::StorageError;

/// openraft's "not the leader, ask this one" as `NotLeader`, naming the leader and
/// its address when this node knows them.
pub(super) fn not_leader(f: ForwardToLeader<NodeId, BasicNode>) -> StoreError {
    StoreError::NotLeader {
        leader: f.leader_id,
        leader_addr: f.leader_node.map(|n| n.addr),
    }
}

/// Maps a failed `client_write` to the wire error.
pub(super) fn write_err(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> StoreError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f),
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

/// Maps a failed membership change to the wire error.
pub(super) fn membership_err(
    e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
) -> StoreError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f),
        other => StoreError::Unavailable {
            reason: other.to_string(),
        },
    }
}

/// Maps a failed leadership check (a linearizable read's read index) to the wire
/// error.
pub(super) fn read_err(e: RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>) -> StoreError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => not_leader(f),
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => StoreError::Unavailable {
            reason: q.to_string(),
        },
        RaftError::Fatal(f) => StoreError::Unavailable {
            reason: format!("raft stopped: {f}"),
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapping_names_the_leader_the_same_way() {
        let cases = [
            (
                "leader and address known",
                ForwardToLeader::new(2, BasicNode::new("10.0.0.2:7000")),
                StoreError::NotLeader {
                    leader: Some(2),
                    leader_addr: Some("10.0.0.2:7000".into()),
                },
            ),
            (
                "no leader known",
                ForwardToLeader::empty(),
                StoreError::NotLeader {
                    leader: None,
                    leader_addr: None,
                },
            ),
        ];
        for (name, f, want) in cases {
            let write = write_err(RaftError::APIError(ClientWriteError::ForwardToLeader(
                f.clone(),
            )));
            let membership = membership_err(RaftError::APIError(
                ClientWriteError::ForwardToLeader(f.clone()),
            ));
            let read = read_err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)));
            assert_eq!(write, want, "{name}: write");
            assert_eq!(membership, want, "{name}: membership");
            assert_eq!(read, want, "{name}: read");
        }
    }
}
