//! Elections only a majority would follow: a pre-vote before every election.
//!
//! openraft 0.9 starts an election when a follower has not heard from a leader for its
//! election timeout, and has no pre-vote. A node that was paused (SIGSTOP, a long GC-like
//! stall) or cut off from its peers then campaigns at once, with a term higher than the
//! leader's; when it is heard again that term deposes a leader that was doing well, and
//! under load the group goes through election after election.
//!
//! So openraft's own election timer is off (`enable_elect = false`) and each store runs
//! an [`ElectionGuard`] instead:
//!
//! - Every AppendEntries a node accepts from the leader notes the time
//!   ([`ElectionGuard::heard_leader`]); a leader counts as hearing itself.
//! - A voter that has heard no leader for a randomized election timeout first asks the
//!   other voters whether they would vote for it ([`PreVote`]), without changing anyone's
//!   term. A voter grants it only when it has itself heard no leader for the shortest
//!   election timeout and the candidate's log is at least as long as its own.
//! - Only with grants from a majority of every configuration of the membership does it
//!   start a real election (`trigger().elect()`).
//!
//! A node that resumes after a pause asks first, hears that the others still follow a
//! leader, and waits for that leader's next message: no term moves.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openraft::storage::RaftLogStorage;
use openraft::{LogId, ServerState, Vote};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::log_store::LogStore;
use super::{NodeId, Raft};

/// A candidate's question to a voter: would you vote for me?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVote {
    /// The candidate.
    pub candidate: NodeId,
    /// The candidate's last log id.
    pub last_log_id: Option<LogId<NodeId>>,
}

/// The per-store state of pre-votes on this node.
pub struct ElectionGuard {
    /// When this node last heard from a leader (or led).
    heard: Mutex<Instant>,
    /// Until when elections are held (a leadership transfer under way).
    held_until: Mutex<Option<Instant>>,
    /// The shortest election timeout: a voter that heard a leader more recently than
    /// this refuses a pre-vote.
    timeout_min: Duration,
    /// The longest election timeout.
    timeout_max: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ElectionGuard {
    /// A guard with election timeouts drawn from `[timeout_min, timeout_max)`.
    pub fn new(timeout_min: Duration, timeout_max: Duration) -> ElectionGuard {
        ElectionGuard {
            heard: Mutex::new(Instant::now()),
            held_until: Mutex::new(None),
            timeout_min,
            timeout_max: timeout_max.max(timeout_min + Duration::from_millis(1)),
        }
    }

    /// Notes that the leader was heard from now.
    pub fn heard_leader(&self) {
        *lock(&self.heard) = Instant::now();
    }

    /// Notes a message from a leader with `vote`, when this node's own vote is
    /// `mine`: only a leader of this node's term or a later one counts.
    pub fn heard_from(&self, vote: &Vote<NodeId>, mine: &Vote<NodeId>) {
        if vote.is_committed() && vote >= mine {
            self.heard_leader();
        }
    }

    /// How long since a leader was last heard from, at `now`.
    fn silence(&self, now: Instant) -> Duration {
        now.saturating_duration_since(*lock(&self.heard))
    }

    /// Holds this node's elections until `until` (a later hold extends an earlier).
    pub fn hold_until(&self, until: Instant) {
        let mut h = lock(&self.held_until);
        *h = Some(h.map_or(until, |u| u.max(until)));
    }

    /// Ends a hold at once.
    pub fn release(&self) {
        *lock(&self.held_until) = None;
    }

    fn held(&self, now: Instant) -> bool {
        lock(&self.held_until).is_some_and(|u| now < u)
    }

    /// Answers a candidate: granted when this node has heard no leader for the
    /// shortest election timeout and `mine` (this node's last log id) is not ahead of
    /// the candidate's.
    pub fn answer(&self, req: &PreVote, leading: bool, mine: Option<LogId<NodeId>>) -> bool {
        !leading && self.silence(Instant::now()) >= self.timeout_min && req.last_log_id >= mine
    }

    fn timeout(&self) -> Duration {
        rand::thread_rng().gen_range(self.timeout_min..self.timeout_max)
    }
}

/// Whether `granted` (the voters that granted, this node among them when it is a
/// voter) is a majority of every configuration in `joint`.
pub fn is_quorum(joint: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    !joint.is_empty()
        && joint
            .iter()
            .all(|c| c.intersection(granted).count() * 2 > c.len())
}

/// This node's last log id.
pub async fn last_log_id(log: &LogStore) -> Option<LogId<NodeId>> {
    let mut log = log.clone();
    log.get_log_state().await.ok().and_then(|s| s.last_log_id)
}

/// The calls the pre-vote makes to the other voters.
pub trait Voters {
    /// Asks `node` at `addr` for its pre-vote, within `deadline`: `None` when it could
    /// not be asked.
    fn ask(
        &self,
        node: NodeId,
        addr: &str,
        req: PreVote,
        deadline: Duration,
    ) -> impl std::future::Future<Output = Option<bool>> + Send;

    /// Tells `node` at `addr` that this node leads with `vote`, within `deadline`.
    fn ping(
        &self,
        node: NodeId,
        addr: &str,
        vote: Vote<NodeId>,
        deadline: Duration,
    ) -> impl std::future::Future<Output = ()> + Send;
}

/// Runs the pre-votes of one store until its group shuts down; see the module docs.
pub async fn run<V: Voters>(
    raft: Raft,
    guard: std::sync::Arc<ElectionGuard>,
    log: LogStore,
    voters: V,
    me: NodeId,
    tick: Duration,
) {
    let mut timeout = guard.timeout();
    // This node's own last attempt: attempts are a timeout apart, and they do not
    // count as hearing a leader (that would make it refuse the others' pre-votes).
    let mut attempted = Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let m = raft.metrics().borrow().clone();
        match m.state {
            ServerState::Shutdown => return,
            ServerState::Leader => {
                guard.heard_leader();
                // A ping of its own on the control lane, every tick: openraft sends
                // heartbeats only while it has no entries to send a follower, and
                // entries may take longer than an election timeout to arrive.
                let membership = m.membership_config.membership();
                let pings = membership
                    .voter_ids()
                    .filter(|v| *v != me)
                    .filter_map(|v| membership.get_node(&v).map(|n| (v, n.addr.clone())))
                    .map(|(v, addr)| {
                        let voters = &voters;
                        async move { voters.ping(v, &addr, m.vote, tick).await }
                    });
                let _ = tokio::time::timeout(tick, futures::future::join_all(pings)).await;
                continue;
            }
            _ => {}
        }
        let now = Instant::now();
        let membership = m.membership_config.membership().clone();
        if guard.held(now)
            || guard.silence(now) < timeout
            || now.saturating_duration_since(attempted) < timeout
            || !membership.voter_ids().any(|v| v == me)
        {
            continue;
        }
        // Whatever the outcome, the next attempt waits a new timeout.
        attempted = now;
        timeout = guard.timeout();
        let req = PreVote {
            candidate: me,
            last_log_id: last_log_id(&log).await,
        };
        let asks = membership
            .voter_ids()
            .filter(|v| *v != me)
            .filter_map(|v| membership.get_node(&v).map(|n| (v, n.addr.clone())))
            .map(|(v, addr)| {
                let (voters, deadline) = (&voters, guard.timeout_min);
                async move {
                    let granted = voters.ask(v, &addr, req, deadline).await;
                    (v, granted == Some(true))
                }
            });
        let mut granted: BTreeSet<NodeId> = futures::future::join_all(asks)
            .await
            .into_iter()
            .filter_map(|(v, ok)| ok.then_some(v))
            .collect();
        granted.insert(me);
        if is_quorum(membership.get_joint_config(), &granted) {
            tracing::info!(target: "reckon_db", node_id = me, term = m.current_term, granted = ?granted, "pre-vote won: starting an election");
            if raft.trigger().elect().await.is_err() {
                return;
            }
        } else {
            tracing::debug!(node_id = me, granted = ?granted, "pre-vote lost: no election");
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn ids(v: &[NodeId]) -> BTreeSet<NodeId> {
        v.iter().copied().collect()
    }

    #[test]
    fn a_quorum_is_a_majority_of_every_configuration() {
        let three = vec![ids(&[1, 2, 3])];
        assert!(is_quorum(&three, &ids(&[1, 2])));
        assert!(!is_quorum(&three, &ids(&[1])));
        assert!(is_quorum(&[ids(&[1])], &ids(&[1])));
        let joint = vec![ids(&[1, 2, 3]), ids(&[3, 4, 5])];
        assert!(!is_quorum(&joint, &ids(&[1, 2, 3])));
        assert!(is_quorum(&joint, &ids(&[1, 3, 4])));
        assert!(!is_quorum(&[], &ids(&[1])));
    }

    fn log_id(term: u64, index: u64) -> Option<LogId<NodeId>> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    #[test]
    fn a_pre_vote_is_granted_only_after_silence_and_to_a_log_as_long() {
        let g = ElectionGuard::new(Duration::from_millis(300), Duration::from_millis(600));
        let req = PreVote {
            candidate: 2,
            last_log_id: log_id(2, 10),
        };
        // Just heard a leader (a guard starts as if it had).
        assert!(!g.answer(&req, false, log_id(2, 10)));
        *lock(&g.heard) = Instant::now() - Duration::from_secs(1);
        assert!(g.answer(&req, false, log_id(2, 10)));
        assert!(g.answer(&req, false, log_id(1, 50)), "a higher term wins");
        assert!(!g.answer(&req, false, log_id(2, 11)), "a shorter log loses");
        assert!(!g.answer(&req, true, None), "a leader never grants");
    }

    #[test]
    fn only_a_leader_of_this_term_or_a_later_one_is_heard() {
        let g = ElectionGuard::new(Duration::from_millis(300), Duration::from_millis(600));
        let long_ago = Instant::now() - Duration::from_secs(5);
        let mine = Vote::new_committed(3, 1);
        let heard = |vote: Vote<NodeId>| {
            *lock(&g.heard) = long_ago;
            g.heard_from(&vote, &mine);
            *lock(&g.heard) > long_ago
        };
        assert!(heard(Vote::new_committed(3, 1)));
        assert!(heard(Vote::new_committed(4, 2)));
        assert!(!heard(Vote::new_committed(2, 2)), "a deposed leader");
        assert!(!heard(Vote::new(4, 2)), "a candidate is no leader");
    }

    #[test]
    fn a_hold_lasts_until_its_end_or_a_release() {
        let g = ElectionGuard::new(Duration::from_millis(300), Duration::from_millis(600));
        let now = Instant::now();
        g.hold_until(now + Duration::from_secs(5));
        g.hold_until(now + Duration::from_secs(1));
        assert!(
            g.held(now + Duration::from_secs(2)),
            "a shorter hold does not cut one short"
        );
        assert!(!g.held(now + Duration::from_secs(6)));
        g.release();
        assert!(!g.held(now));
    }
}
