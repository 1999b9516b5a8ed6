//! openraft's errors as the wire's [`StoreError`]: one mapping per kind of call (a
//! write, a leadership check, a membership change), all answering openraft's
//! `ForwardToLeader` through [`not_leader`], so that a client is told where the
//! leader is the same way whatever it asked.

use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::BasicNode;
use reckon_gater::types::StoreError;

use crate::raft::NodeId;

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
