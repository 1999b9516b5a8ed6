//! Leadership and membership of a store's group: handing the leadership over to
//! another voter, holding elections for another's transfer, answering pre-votes,
//! adding and removing members, and the telemetry of leader and membership changes.
//!
//! openraft 0.9 has no leadership transfer of its own; [`Store::transfer_leader`]
//! says how this one works. While it runs, writes and linearizable reads are
//! refused retryably ([`Store::check_not_moving`]).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{BasicNode, ChangeMembers};
use reckon_gater::emit;
use reckon_gater::metrics::StoreMetrics;
use reckon_gater::telemetry as t;
use reckon_gater::types::{Role, StoreError};

use super::errors::membership_err;
use super::Store;
use crate::raft::election::{self, ElectionGuard, PreVote};
use crate::raft::network::deadline_ctx;
use crate::raft::{NodeId, Raft};

/// Longest a leadership transfer takes before it gives up (and this node leads on).
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the transfer target to catch up with the leader's log.
pub const TRANSFER_CATCH_UP: Duration = Duration::from_secs(3);
/// Margin past the leader lease before the target campaigns.
const LEASE_MARGIN: Duration = Duration::from_millis(50);
/// Longest a node holds its elections for another's transfer.
pub const HOLD_MAX: Duration = Duration::from_secs(10);

impl Store {
    /// Refuses, retryably, while this node hands its leadership over.
    pub fn check_not_moving(&self) -> Result<(), StoreError> {
        if self.moving.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable {
                reason: format!("the leadership of store {} is moving", self.name),
            });
        }
        Ok(())
    }

    /// Hands the leadership of the group to `target`, a voter: stops taking writes
    /// and linearizable reads (they are refused retryably), lets those taken reach
    /// the target, silences its own heartbeats, asks the other voters to hold their
    /// elections, waits out the followers' leader lease and asks the target to
    /// campaign. Returns once this node sees the target lead, or an error after
    /// [`TRANSFER_TIMEOUT`]; either way it takes requests again (as a follower, or
    /// still as the leader when the transfer failed).
    ///
    /// openraft 0.9 has no transfer of its own: a follower refuses to vote while
    /// it has heard from the leader within its lease, so the leader must go quiet
    /// first, and the other followers must not win the election that follows.
    pub async fn transfer_leader(&self, target: NodeId) -> Result<(), StoreError> {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.node_id) {
            let leader_addr = m
                .current_leader
                .and_then(|l| m.membership_config.membership().get_node(&l).cloned())
                .map(|n| n.addr);
            return Err(StoreError::NotLeader {
                leader: m.current_leader,
                leader_addr,
            });
        }
        if target == self.node_id {
            return Ok(());
        }
        let members = m.membership_config.membership();
        let Some(target_node) = members.get_node(&target).cloned() else {
            return Err(StoreError::NotFound {
                what: format!("node {target} in the group of store {}", self.name),
            });
        };
        if !m.membership_config.voter_ids().any(|v| v == target) {
            return Err(StoreError::invalid(
                "node_id",
                format!(
                    "node {target} is a learner of store {}: only a voter can lead",
                    self.name
                ),
            ));
        }
        let others: Vec<(NodeId, String)> = m
            .membership_config
            .voter_ids()
            .filter(|v| *v != target && *v != self.node_id)
            .filter_map(|v| members.get_node(&v).map(|n| (v, n.addr.clone())))
            .collect();
        if self.moving.swap(true, Ordering::AcqRel) {
            return Err(StoreError::Unavailable {
                reason: format!("a leadership transfer of store {} is under way", self.name),
            });
        }
        let result = tokio::time::timeout(
            TRANSFER_TIMEOUT,
            self.hand_over(target, &target_node.addr, &others),
        )
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable {
                reason: format!(
                    "node {target} did not take the leadership of store {} within {TRANSFER_TIMEOUT:?}",
                    self.name
                ),
            })
        });
        self.raft.runtime_config().heartbeat(true);
        self.election.release();
        self.moving.store(false, Ordering::Release);
        match &result {
            Ok(()) => tracing::info!(store = %self.name, target, "leadership handed over"),
            Err(e) => {
                tracing::warn!(store = %self.name, target, error = %e, "leadership transfer failed")
            }
        }
        result
    }

    async fn hand_over(
        &self,
        target: NodeId,
        target_addr: &str,
        others: &[(NodeId, String)],
    ) -> Result<(), StoreError> {
        // A target that does not answer cannot take over: find out before pausing
        // anything.
        let target_client =
            self.peers
                .client(target_addr)
                .await
                .map_err(|e| StoreError::Unavailable {
                    reason: e.to_string(),
                })?;
        if let Err(e) = target_client.hello(deadline_ctx(self.lease)).await {
            self.peers.forget(target_addr).await;
            return Err(StoreError::Unavailable {
                reason: format!("node {target} does not answer: {e}"),
            });
        }
        // Writes already taken finish and reach the target, so that its log is at
        // least as long as anyone's and it can win.
        let caught_up = |m: &openraft::RaftMetrics<NodeId, BasicNode>| {
            let last = m.last_log_index;
            let applied = m.last_applied.map(|l| l.index);
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&target).copied().flatten())
                .map(|l| l.index);
            applied == last && matched >= last
        };
        self.raft
            .wait(Some(TRANSFER_CATCH_UP))
            .metrics(caught_up, "the transfer target catches up")
            .await
            .map_err(|e| StoreError::Unavailable {
                reason: format!("node {target} did not catch up: {e}"),
            })?;
        self.raft.runtime_config().heartbeat(false);
        self.election.hold_until(Instant::now() + TRANSFER_TIMEOUT);
        let hold = self.lease * 4;
        for (id, addr) in others {
            // A voter that cannot be told cannot campaign either, or is down.
            let told = async {
                let c = self.peers.client(addr).await.ok()?;
                c.hold_elections(
                    deadline_ctx(self.lease),
                    self.name.clone(),
                    hold.as_millis() as u64,
                )
                .await
                .ok()
            };
            if told.await.is_none() {
                tracing::debug!(store = %self.name, node_id = id, "could not hold a voter's elections");
            }
        }
        // Past the lease no follower refuses the target's vote request.
        tokio::time::sleep(self.lease + LEASE_MARGIN).await;
        target_client
            .campaign(deadline_ctx(self.lease), self.name.clone())
            .await
            .map_err(|e| StoreError::Unavailable {
                reason: format!("node {target}: {e}"),
            })??;
        self.raft
            .wait(None)
            .current_leader(target, "the transfer target leads")
            .await
            .map_err(|e| StoreError::Unavailable {
                reason: e.to_string(),
            })?;
        Ok(())
    }

    /// Holds this node's elections for `d` (another node is taking the leadership).
    pub fn hold_elections(&self, d: Duration) {
        self.election.hold_until(Instant::now() + d.min(HOLD_MAX));
    }

    /// The pre-vote state of this store on this node.
    pub fn election(&self) -> &ElectionGuard {
        &self.election
    }

    /// This node's last log id, and whether it leads: what it answers a pre-vote with.
    pub async fn pre_vote(&self, req: &PreVote) -> bool {
        let leading = self.role() == Role::Leader;
        let mine = election::last_log_id(&self.log).await;
        self.election.answer(req, leading, mine)
    }

    /// Starts an election on this node now (it is the target of a transfer).
    pub async fn campaign(&self) -> Result<(), StoreError> {
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| StoreError::Unavailable {
                reason: format!("raft stopped: {e}"),
            })
    }

    /// Adds a node to the group: as a learner until it has caught up with the log,
    /// then as a voter. A node that is a voter already is left as it is. Only the
    /// leader accepts; others answer `NotLeader`.
    pub async fn add_voter(&self, node_id: NodeId, address: String) -> Result<(), StoreError> {
        let m = self.raft.metrics().borrow().clone();
        if m.membership_config
            .membership()
            .get_node(&node_id)
            .is_some()
            && m.membership_config.voter_ids().any(|v| v == node_id)
        {
            return Ok(());
        }
        self.raft
            .add_learner(
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
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(ids), false)
            .await
            .map_err(membership_err)?;
        tracing::info!(target: "reckon_db", store = self.name.as_str(), node_id, address, "voter added to the store group");
        Ok(())
    }

    /// Removes a node from the group: first as a voter (a joint change the leader
    /// commits), then from the nodes it replicates to. Only the leader accepts.
    pub async fn remove_node(&self, node_id: NodeId) -> Result<(), StoreError> {
        let members = self.raft.metrics().borrow().membership_config.clone();
        if members.membership().get_node(&node_id).is_none() {
            return Err(StoreError::NotFound {
                what: format!("node {node_id} in the group of store {}", self.name),
            });
        }
        let ids: BTreeSet<NodeId> = [node_id].into_iter().collect();
        if members.voter_ids().any(|v| v == node_id) {
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(ids.clone()), false)
                .await
                .map_err(membership_err)?;
        }
        self.raft
            .change_membership(ChangeMembers::RemoveNodes(ids), false)
            .await
            .map_err(membership_err)?;
        tracing::info!(target: "reckon_db", store = %self.name, node_id, "node removed from the group");
        Ok(())
    }
}

/// Emits the cluster telemetry of one store's group as its Raft metrics change:
/// `reckon_db.cluster.leader.elected` (with the previous leader) and
/// `reckon_db.cluster.membership.changed`. Ends when the group shuts down.
pub(super) async fn watch(raft: Raft, store: String, node_id: NodeId, metrics: Arc<StoreMetrics>) {
    let mut rx = raft.metrics();
    let mut leader: Option<NodeId> = None;
    let mut last_known: Option<NodeId> = None;
    let mut membership = None;
    loop {
        let (now_leader, term, m) = {
            let m = rx.borrow_and_update();
            (
                m.current_leader,
                m.current_term,
                m.membership_config.clone(),
            )
        };
        if now_leader != leader {
            metrics.leader_changes.fetch_add(1, Ordering::Relaxed);
            // The last leader known, across a spell without one.
            let previous = last_known.unwrap_or(0);
            match now_leader {
                Some(l) => {
                    emit!(t::CLUSTER_LEADER_ELECTED, "store" => &store, "node_id" => node_id, "leader" => l, "previous_leader" => previous, "term" => term);
                }
                None => {
                    emit!(t::CLUSTER_LEADER_LOST, "store" => &store, "node_id" => node_id, "previous_leader" => previous, "term" => term);
                }
            }
            leader = now_leader;
            last_known = now_leader.or(last_known);
        }
        if membership.as_ref() != Some(m.log_id()) {
            let voters: Vec<NodeId> = m.voter_ids().collect();
            let learners: Vec<NodeId> = m.membership().learner_ids().collect();
            if !voters.is_empty() {
                emit!(t::CLUSTER_MEMBERSHIP_CHANGED, "store" => &store, "node_id" => node_id, "voters" => format!("{voters:?}"), "learners" => format!("{learners:?}"));
            }
            membership = Some(*m.log_id());
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
