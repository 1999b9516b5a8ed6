//! The gater's registry and routing core: plain state, input and an injected `now`.
//!
//! No I/O and no spawning happen here, so every rule is tested directly: which worker
//! a call goes to, when a worker is suspect or dropped, which errors are retried and
//! how long to back off. The [gateway](crate::gateway) is the thin shell that applies
//! these decisions to real connections.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::api::{HealthReport, NodeStatus, StoreHealth, StoreStatus, WorkerInfo};
use crate::request::Route;
use crate::types::Role;
use crate::types::StoreError;

/// A worker's health as routing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Serving.
    Healthy,
    /// A call to it failed; routing avoids it until `until`.
    Suspect {
        /// When it may be tried first again.
        until: Instant,
    },
}

/// A registered worker.
#[derive(Debug, Clone)]
pub struct WorkerEntry {
    /// What the node last said about it.
    pub info: WorkerInfo,
    /// It is dropped once `now` passes this without a heartbeat.
    pub lease_until: Instant,
    /// When its last heartbeat arrived.
    pub last_heartbeat: Instant,
    /// Routing's view of it.
    pub health: Health,
}

impl WorkerEntry {
    fn healthy(&self, now: Instant) -> bool {
        match self.health {
            Health::Healthy => true,
            Health::Suspect { until } => now >= until,
        }
    }
}

#[derive(Debug, Default)]
struct StoreWorkers {
    workers: BTreeMap<u64, WorkerEntry>,
    /// The leader most recently learnt (from a heartbeat or a `NotLeader` answer).
    leader: Option<u64>,
    /// Round-robin cursor for reads.
    next: usize,
}

/// Where to send a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The node.
    pub node_id: u64,
    /// Its worker address.
    pub address: String,
}

/// The registry of workers per store.
#[derive(Debug)]
pub struct Registry {
    stores: BTreeMap<String, StoreWorkers>,
    lease: Duration,
    suspect_for: Duration,
    expired_total: u64,
}

impl Registry {
    /// A registry granting leases of `lease` and avoiding a failed worker for
    /// `suspect_for`.
    pub fn new(lease: Duration, suspect_for: Duration) -> Self {
        Registry {
            stores: BTreeMap::new(),
            lease,
            suspect_for,
            expired_total: 0,
        }
    }

    /// The lease granted.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Workers dropped because their lease ran out.
    pub fn expired_total(&self) -> u64 {
        self.expired_total
    }

    /// Registers or refreshes a worker. Returns `true` when it was not known.
    pub fn register(&mut self, info: WorkerInfo, now: Instant) -> bool {
        let lease_until = now + self.lease;
        let store = self.stores.entry(info.store.clone()).or_default();
        // Two workers may both say they lead: one cut off from its group still does
        // after the others elected a new leader, in a higher term. The higher term
        // is the leader.
        let known_term = store
            .leader
            .filter(|l| *l != info.node_id)
            .and_then(|l| store.workers.get(&l))
            .filter(|w| w.info.role == Role::Leader)
            .map(|w| w.info.term);
        if info.role == Role::Leader {
            if known_term.is_none_or(|t| info.term >= t) {
                store.leader = Some(info.node_id);
            }
        } else if store.leader == Some(info.node_id) {
            store.leader = info.leader;
        }
        let node_id = info.node_id;
        match store.workers.get_mut(&node_id) {
            Some(w) => {
                w.info = info;
                w.lease_until = lease_until;
                w.last_heartbeat = now;
                false
            }
            None => {
                store.workers.insert(
                    node_id,
                    WorkerEntry {
                        info,
                        lease_until,
                        last_heartbeat: now,
                        health: Health::Healthy,
                    },
                );
                true
            }
        }
    }

    /// Renews a known worker's lease; `false` when it is not known (register again).
    pub fn heartbeat(&mut self, info: WorkerInfo, now: Instant) -> bool {
        let known = self
            .stores
            .get(&info.store)
            .is_some_and(|s| s.workers.contains_key(&info.node_id));
        if known {
            self.register(info, now);
        }
        known
    }

    /// Removes a worker at once. Returns whether it was registered.
    pub fn remove(&mut self, store: &str, node_id: u64) -> bool {
        let Some(s) = self.stores.get_mut(store) else {
            return false;
        };
        let removed = s.workers.remove(&node_id).is_some();
        if s.leader == Some(node_id) {
            s.leader = None;
        }
        // The store stays known with no workers: health reports it degraded, and
        // calls to it get NoWorkers at once.
        removed
    }

    /// Drops every worker whose lease ran out; returns them as (store, node id).
    pub fn expire(&mut self, now: Instant) -> Vec<(String, u64)> {
        let mut dropped = Vec::new();
        for (name, s) in &mut self.stores {
            s.workers.retain(|id, w| {
                let keep = w.lease_until > now;
                if !keep {
                    dropped.push((name.clone(), *id));
                }
                keep
            });
            if s.leader.is_some_and(|l| !s.workers.contains_key(&l)) {
                s.leader = None;
            }
        }
        self.expired_total += dropped.len() as u64;
        dropped
    }

    /// Chooses a worker of `store` for a call, avoiding the nodes in `tried`.
    ///
    /// No live worker at all gives [`StoreError::NoWorkers`] at once. Leader calls go to
    /// the known leader when it is healthy and not yet tried; other calls go
    /// round-robin over healthy workers. When every untried worker is suspect, a suspect one is still
    /// tried; when every worker has been tried, the answer is `Unavailable`.
    pub fn pick(
        &mut self,
        store: &str,
        kind: Route,
        now: Instant,
        tried: &[u64],
    ) -> Result<Target, StoreError> {
        let no_workers = || StoreError::NoWorkers {
            store: store.to_string(),
        };
        let s = self.stores.get_mut(store).ok_or_else(no_workers)?;
        let live: Vec<&WorkerEntry> = s.workers.values().filter(|w| w.lease_until > now).collect();
        if live.is_empty() {
            return Err(no_workers());
        }
        let untried: Vec<&WorkerEntry> = live
            .into_iter()
            .filter(|w| !tried.contains(&w.info.node_id))
            .collect();
        if untried.is_empty() {
            return Err(StoreError::Unavailable {
                reason: format!(
                    "every worker of store {store:?} failed this call ({} tried)",
                    tried.len()
                ),
            });
        }
        let healthy: Vec<&WorkerEntry> =
            untried.iter().copied().filter(|w| w.healthy(now)).collect();
        let pool = if healthy.is_empty() { untried } else { healthy };
        let target = |w: &WorkerEntry| Target {
            node_id: w.info.node_id,
            address: w.info.address.clone(),
        };
        if kind == Route::Leader {
            if let Some(l) = s.leader {
                if let Some(w) = pool.iter().find(|w| w.info.node_id == l) {
                    return Ok(target(w));
                }
            }
        }
        let i = s.next % pool.len();
        s.next = s.next.wrapping_add(1);
        Ok(target(pool[i]))
    }

    /// Marks a worker suspect after a transport error or timeout.
    pub fn mark_suspect(&mut self, store: &str, node_id: u64, now: Instant) {
        if let Some(w) = self
            .stores
            .get_mut(store)
            .and_then(|s| s.workers.get_mut(&node_id))
        {
            w.health = Health::Suspect {
                until: now + self.suspect_for,
            };
        }
        if let Some(s) = self.stores.get_mut(store) {
            if s.leader == Some(node_id) {
                s.leader = None;
            }
        }
    }

    /// Notes a successful call: the worker is healthy again.
    pub fn mark_healthy(&mut self, store: &str, node_id: u64) {
        if let Some(w) = self
            .stores
            .get_mut(store)
            .and_then(|s| s.workers.get_mut(&node_id))
        {
            w.health = Health::Healthy;
        }
    }

    /// Records the leader a worker named in a `NotLeader` answer.
    pub fn note_leader(&mut self, store: &str, leader: Option<u64>) {
        if let Some(s) = self.stores.get_mut(store) {
            s.leader = leader.filter(|l| s.workers.contains_key(l));
        }
    }

    /// The stores with live workers.
    pub fn stores(&self) -> Vec<String> {
        self.stores
            .iter()
            .filter(|(_, s)| !s.workers.is_empty())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Health per store.
    pub fn health(&self, now: Instant) -> HealthReport {
        let stores = self
            .stores
            .iter()
            .map(|(name, s)| {
                let count =
                    |r: Role| s.workers.values().filter(|w| w.info.role == r).count() as u32;
                let suspect = s.workers.values().filter(|w| !w.healthy(now)).count() as u32;
                let leader = s.leader.filter(|l| s.workers.contains_key(l));
                StoreHealth {
                    store: name.clone(),
                    healthy: leader.is_some() && suspect == 0 && !s.workers.is_empty(),
                    leader,
                    workers: s.workers.len() as u32,
                    leaders: count(Role::Leader),
                    followers: count(Role::Follower),
                    learners: count(Role::Learner),
                    suspect,
                }
            })
            .collect();
        HealthReport {
            stores,
            leases_expired: self.expired_total,
            audit: Default::default(),
        }
    }

    /// Nodes per store, for `reckon cluster` and the console.
    pub fn status(&self, now: Instant) -> Vec<StoreStatus> {
        self.stores
            .iter()
            .map(|(name, s)| StoreStatus {
                store: name.clone(),
                leader: s.leader,
                term: s.workers.values().map(|w| w.info.term).max().unwrap_or(0),
                nodes: s
                    .workers
                    .values()
                    .map(|w| NodeStatus {
                        node_id: w.info.node_id,
                        address: w.info.address.clone(),
                        role: w.info.role,
                        term: w.info.term,
                        last_log_index: w.info.last_log_index,
                        applied_index: w.info.applied_index,
                        last_heartbeat_ms: now
                            .saturating_duration_since(w.last_heartbeat)
                            .as_millis() as u64,
                        leader_changes: w.info.leader_changes,
                        appended_events: w.info.appended_events,
                        healthy: w.healthy(now),
                    })
                    .collect(),
            })
            .collect()
    }
}

/// What to do after a worker answered with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Return the error to the caller: retrying cannot change it.
    Return,
    /// The worker is not the leader; retry on the one it named.
    Redirect(Option<u64>),
    /// A passing condition; back off, then retry.
    Backoff,
}

/// Classifies a store error for routing.
pub fn classify(e: &StoreError) -> Decision {
    match e {
        StoreError::NotLeader { leader, .. } => Decision::Redirect(*leader),
        e if e.is_retryable() => Decision::Backoff,
        _ => Decision::Return,
    }
}

/// Bounded retries with exponential backoff and jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most retries after the first attempt.
    pub retries_max: u32,
    /// The first backoff.
    pub backoff_base: Duration,
    /// The largest backoff.
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries_max: 16,
            backoff_base: Duration::from_millis(20),
            backoff_max: Duration::from_millis(1000),
        }
    }
}

impl RetryPolicy {
    /// The pause before retry number `attempt` (0-based), given `jitter` in `[0, 1)`:
    /// `base * 2^attempt`, capped at `backoff_max`, scaled into its upper half by the
    /// jitter so that callers retrying together spread out.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .backoff_base
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
        let capped = exp.min(self.backoff_max);
        capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(store: &str, node: u64, role: Role) -> WorkerInfo {
        WorkerInfo {
            node_id: node,
            store: store.into(),
            address: format!("127.0.0.1:{}", 7600 + node),
            role,
            leader: None,
            term: 1,
            last_log_index: 0,
            applied_index: 0,
            leader_changes: 0,
            appended_events: 0,
        }
    }

    fn reg3(now: Instant) -> Registry {
        let mut r = Registry::new(Duration::from_secs(3), Duration::from_secs(1));
        r.register(info("s", 1, Role::Follower), now);
        r.register(info("s", 2, Role::Leader), now);
        r.register(info("s", 3, Role::Follower), now);
        r
    }

    #[test]
    fn no_workers_is_immediate() {
        let now = Instant::now();
        let mut r = reg3(now);
        assert_eq!(
            r.pick("other", Route::AnyReplica, now, &[]),
            Err(StoreError::NoWorkers {
                store: "other".into()
            })
        );
        // Workers whose lease ran out count as none.
        let later = now + Duration::from_secs(4);
        assert!(matches!(
            r.pick("s", Route::AnyReplica, later, &[]),
            Err(StoreError::NoWorkers { .. })
        ));
    }

    #[test]
    fn writes_go_to_the_leader_and_reads_round_robin() {
        let now = Instant::now();
        let mut r = reg3(now);
        for _ in 0..5 {
            assert_eq!(r.pick("s", Route::Leader, now, &[]).unwrap().node_id, 2);
        }
        let mut seen: Vec<u64> = (0..6)
            .map(|_| r.pick("s", Route::AnyReplica, now, &[]).unwrap().node_id)
            .collect();
        assert_eq!(&seen[..3], &seen[3..], "round robin repeats");
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, vec![1, 2, 3]);
    }

    #[test]
    fn of_two_workers_that_say_they_lead_the_higher_term_leads() {
        let now = Instant::now();
        let mut r = reg3(now);
        let in_term = |node, role, term| WorkerInfo {
            term,
            ..info("s", node, role)
        };
        // Node 3 won an election in term 2; node 2, cut off, still says it leads in 1.
        r.register(in_term(3, Role::Leader, 2), now);
        r.register(in_term(2, Role::Leader, 1), now);
        assert_eq!(r.pick("s", Route::Leader, now, &[]).unwrap().node_id, 3);
        // Once node 2 hears of term 2 it follows, and a later term moves the leader.
        r.register(in_term(2, Role::Follower, 2), now);
        r.register(in_term(1, Role::Leader, 3), now);
        assert_eq!(r.pick("s", Route::Leader, now, &[]).unwrap().node_id, 1);
    }

    #[test]
    fn a_suspect_worker_is_skipped_until_its_time_is_up() {
        let now = Instant::now();
        let mut r = reg3(now);
        r.mark_suspect("s", 2, now);
        // The leader is suspect: writes go elsewhere (to be redirected).
        let w = r.pick("s", Route::Leader, now, &[]).unwrap().node_id;
        assert_ne!(w, 2);
        for _ in 0..6 {
            assert_ne!(r.pick("s", Route::AnyReplica, now, &[]).unwrap().node_id, 2);
        }
        let later = now + Duration::from_millis(1500);
        let ids: Vec<u64> = (0..3)
            .map(|_| r.pick("s", Route::AnyReplica, later, &[]).unwrap().node_id)
            .collect();
        assert!(ids.contains(&2), "{ids:?}");
    }

    #[test]
    fn failover_skips_tried_workers_then_gives_up() {
        let now = Instant::now();
        let mut r = reg3(now);
        let a = r.pick("s", Route::AnyReplica, now, &[]).unwrap().node_id;
        let b = r.pick("s", Route::AnyReplica, now, &[a]).unwrap().node_id;
        assert_ne!(a, b);
        let c = r
            .pick("s", Route::AnyReplica, now, &[a, b])
            .unwrap()
            .node_id;
        assert!(c != a && c != b);
        assert!(matches!(
            r.pick("s", Route::AnyReplica, now, &[a, b, c]),
            Err(StoreError::Unavailable { .. })
        ));
    }

    #[test]
    fn all_suspect_still_tries_one() {
        let now = Instant::now();
        let mut r = reg3(now);
        for n in 1..=3 {
            r.mark_suspect("s", n, now);
        }
        assert!(r.pick("s", Route::AnyReplica, now, &[]).is_ok());
    }

    #[test]
    fn leases_expire_and_are_counted_and_heartbeats_renew() {
        let now = Instant::now();
        let mut r = reg3(now);
        let t1 = now + Duration::from_secs(2);
        assert!(r.heartbeat(info("s", 1, Role::Follower), t1));
        let t2 = now + Duration::from_millis(3500);
        let mut dropped = r.expire(t2);
        dropped.sort();
        assert_eq!(dropped, vec![("s".into(), 2), ("s".into(), 3)]);
        assert_eq!(r.expired_total(), 2);
        let h = r.health(t2);
        assert_eq!(h.stores[0].workers, 1);
        assert!(!h.stores[0].healthy, "leader gone: degraded");
        assert!(
            !r.heartbeat(info("s", 2, Role::Leader), t2),
            "unknown: register again"
        );
    }

    #[test]
    fn a_store_whose_workers_left_stays_known_as_degraded() {
        let now = Instant::now();
        let mut r = reg3(now);
        for n in 1..=3 {
            assert!(r.remove("s", n));
        }
        let h = r.health(now);
        assert_eq!((h.stores[0].workers, h.stores[0].healthy), (0, false));
        assert!(!h.healthy());
        assert!(r.stores().is_empty());
        assert!(matches!(
            r.pick("s", Route::Leader, now, &[]),
            Err(StoreError::NoWorkers { .. })
        ));
    }

    #[test]
    fn not_leader_redirects() {
        let now = Instant::now();
        let mut r = reg3(now);
        r.note_leader("s", Some(3));
        assert_eq!(r.pick("s", Route::Leader, now, &[]).unwrap().node_id, 3);
        assert_eq!(
            classify(&StoreError::NotLeader {
                leader: Some(3),
                leader_addr: None
            }),
            Decision::Redirect(Some(3))
        );
        assert_eq!(
            classify(&StoreError::WrongExpectedVersion {
                expected: crate::types::ExpectedVersion::Exact(1),
                current: None
            }),
            Decision::Return
        );
        assert_eq!(
            classify(&StoreError::Unavailable { reason: "x".into() }),
            Decision::Backoff
        );
        for e in [
            StoreError::StreamNotFound {
                stream_id: "x".into(),
            },
            StoreError::StreamDeleted {
                stream_id: "x".into(),
            },
            StoreError::InvalidInput {
                field: "f".into(),
                reason: "r".into(),
            },
            StoreError::NotFound { what: "x".into() },
        ] {
            assert_eq!(classify(&e), Decision::Return, "{e:?}");
        }
    }

    #[test]
    fn health_reports_roles_and_leader() {
        let now = Instant::now();
        let r = reg3(now);
        let h = r.health(now);
        assert!(h.healthy());
        let s = &h.stores[0];
        assert_eq!(
            (s.workers, s.leaders, s.followers, s.leader),
            (3, 1, 2, Some(2))
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy {
            retries_max: 5,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(100),
        };
        assert_eq!(p.backoff(0, 1.0), Duration::from_millis(10));
        assert_eq!(p.backoff(2, 1.0), Duration::from_millis(40));
        assert_eq!(p.backoff(10, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(10, 0.0), Duration::from_millis(50));
        assert!(p.backoff(40, 0.5) <= Duration::from_millis(100));
    }
}
