//! The group-commit batcher: packs the writes that arrive together into one Raft
//! entry.
//!
//! On the leader every write is queued here with its caller's deadline. The batcher
//! packs the commands that arrive together into one [`WriteBatch`] and proposes it
//! with `client_write`: many client appends share one Raft entry and so one fsync.
//! At most `pipeline_max` batches are in flight; while they are, new commands gather
//! into the next batch. The queue is bounded (`queue_max`); when it is full a write
//! waits, within its deadline.
//!
//! No write outlives its caller: the batcher drops a write whose deadline has passed
//! (or whose caller has gone) instead of proposing it, and only a leader proposes:
//! when this node stops leading, the writes waiting in its batcher are answered
//! `NotLeader` at once, never proposed or forwarded later. A retried append carries
//! the same event ids, which the state machine recognises wherever they stand.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reckon_gater::types::StoreError;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::errors::write_err;
use super::{now_us, StoreOptions};
use crate::command::{Command, Outcome, WriteBatch};
use crate::raft::{NodeId, Raft};

/// A write waiting in the batcher's queue, with whom to answer.
pub(super) struct Pending {
    pub(super) command: Command,
    /// Its payload size, counted against `entry_bytes_max`.
    pub(super) bytes: usize,
    /// When the caller stops waiting: past it the write is not proposed.
    pub(super) deadline: Instant,
    pub(super) reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

impl Pending {
    /// Whether the caller still waits for this write at `now`.
    fn wanted(&self, now: Instant) -> bool {
        now < self.deadline && !self.reply.is_closed()
    }

    fn answer(self, r: Result<Outcome, StoreError>) {
        let _ = self.reply.send(r);
    }

    fn expire(self) {
        self.answer(Err(StoreError::Timeout {
            what: "the write waited past its caller's deadline and was not proposed".into(),
        }));
    }
}

/// Where this node sees the leadership of a group: `Ok` when it leads, the
/// `NotLeader` answer to give otherwise.
///
/// A leader of several voters that has heard from no quorum for longer than `lease`
/// answers `NotLeader` naming no leader: cut off from its group, it cannot commit, and
/// the others may have elected a new leader it has not heard of. Its caller tries
/// another node at once instead of waiting out its deadline here.
pub(super) fn leadership(raft: &Raft, me: NodeId, lease: Duration) -> Result<(), StoreError> {
    let m = raft.metrics();
    let m = m.borrow();
    if m.current_leader == Some(me) {
        let alone = m.membership_config.voter_ids().nth(1).is_none();
        let confirmed = m
            .millis_since_quorum_ack
            .is_some_and(|ms| Duration::from_millis(ms) <= lease);
        if alone || confirmed {
            return Ok(());
        }
        return Err(StoreError::NotLeader {
            leader: None,
            leader_addr: None,
        });
    }
    Err(StoreError::NotLeader {
        leader: m.current_leader,
        leader_addr: m
            .current_leader
            .and_then(|l| m.membership_config.membership().get_node(&l))
            .map(|n| n.addr.clone()),
    })
}

/// Packs queued writes into Raft entries until the queue closes; see the module
/// docs.
pub(super) async fn run(
    raft: Raft,
    mut rx: mpsc::Receiver<Pending>,
    opts: StoreOptions,
    read_barrier: Arc<AtomicBool>,
) {
    let me = opts.node_id;
    let lease = Duration::from_millis(opts.election_timeout_max_ms);
    let in_flight = Arc::new(Semaphore::new(opts.pipeline_max.max(1)));
    let mut metrics = raft.metrics();
    let mut last_ts = 0u64;
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        // Wait for room in the pipeline, unless this node stops leading first (then
        // every write waiting here goes back to its caller) or the first write's
        // caller gives up.
        let first_deadline = first.deadline;
        let permit = tokio::select! {
            permit = in_flight.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = metrics.wait_for(|m| m.current_leader != Some(me)) => {
                let not_leader = leadership(&raft, me, lease).err();
                let refuse = |p: Pending| p.answer(Err(not_leader.clone().unwrap_or(StoreError::Unavailable {
                    reason: "leadership changed".into(),
                })));
                refuse(first);
                while let Ok(p) = rx.try_recv() {
                    refuse(p);
                }
                continue;
            }
            _ = tokio::time::sleep_until(first_deadline.into()) => {
                first.expire();
                continue;
            }
        };
        let mut bytes = first.bytes;
        let mut pending = vec![first];
        while pending.len() < opts.batch_commands_max && bytes < opts.entry_bytes_max {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.bytes;
                    pending.push(p);
                }
                Err(_) => break,
            }
        }
        let now = Instant::now();
        let (wanted, expired): (Vec<Pending>, Vec<Pending>) =
            pending.into_iter().partition(|p| p.wanted(now));
        expired.into_iter().for_each(Pending::expire);
        if wanted.is_empty() {
            continue;
        }
        // Only a leader proposes: a write queued before this node lost the lead goes
        // back to its caller, who retries with the leader.
        if let Err(e) = leadership(&raft, me, lease) {
            for p in wanted {
                p.answer(Err(e.clone()));
            }
            continue;
        }
        // Timestamps never go backwards on one leader, even if the clock does.
        last_ts = now_us().max(last_ts);
        let mut commands = Vec::with_capacity(wanted.len());
        let mut replies = Vec::with_capacity(wanted.len());
        for p in wanted {
            commands.push(p.command);
            replies.push(p.reply);
        }
        let batch = WriteBatch {
            timestamp_us: last_ts,
            commands,
        };
        let raft = raft.clone();
        let read_barrier = read_barrier.clone();
        tokio::spawn(async move {
            let res = raft.client_write(batch).await;
            drop(permit);
            match res {
                Ok(written) => {
                    if raft.metrics().borrow().current_leader == Some(me) {
                        read_barrier.store(true, Ordering::Release);
                    }
                    let mut results = written.data.results.into_iter();
                    for reply in replies {
                        let r = results.next().unwrap_or_else(|| {
                            Err(StoreError::Internal {
                                message: "batch answered fewer results than commands".into(),
                            })
                        });
                        let _ = reply.send(r);
                    }
                }
                Err(err) => {
                    let err = write_err(err);
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        });
    }
}
