//! The dispatcher of a pooled subscription: which of the pool's consumers gets which
//! event, and how far the pool's checkpoint may move.
//!
//! A pure core: plain functions of the pool's state, what a consumer does and an
//! injected `now`; no I/O, no tokio. Its shell is the long-poll delivery of
//! [`subscriptions`](super) (`delivery.rs`): it keeps each pool behind a lock, scans
//! the log when [`Pool::scan_from`] says so and hands what matches to
//! [`Pool::dispatch`].
//!
//! The rules:
//!
//! - **Gathering.** A new pool scans nothing until `size` consumers have attended or
//!   [`POOL_GATHER`] has passed since it was created, so that a backlog is spread over
//!   every consumer instead of going to the first.
//! - **Streams.** The first time a stream is seen it goes to the member owning the
//!   fewest streams (on a tie, the least name) and stays there, so each stream's
//!   order holds and each event goes to one consumer. A stream with nothing pending
//!   may move to a member owning at least two fewer streams (one that joined later).
//! - **Queues.** Events wait in per-member queues in position order; scanning pauses
//!   while any queue holds [`POOL_QUEUE_MAX`]. A delivered event stays in flight until
//!   its consumer acknowledges it.
//! - **Leases.** A member that has neither polled nor acknowledged for
//!   [`CONSUMER_LEASE`] drops out the next time any member polls: its streams, and
//!   its queued and in-flight events, go to the others, each queue in position order.
//! - **Returning.** A member that attaches afresh (polls without a position) has
//!   what it had in flight queued again, delivered before anything new and in order.
//!   A consumer that comes back after its lease ran out is a new member: what it had
//!   went to the others, and acknowledging it changes nothing.
//! - **Checkpoint.** The pool's checkpoint is the position before the first one it
//!   has not had acknowledged ([`Pool::ack`]): it never passes an event still queued
//!   or in flight.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use reckon_gater::types::EventRecord;

use crate::storage::state::record_bytes;

/// A pooled consumer that has not polled for this long is dropped from the pool.
pub const CONSUMER_LEASE: Duration = Duration::from_secs(10);
/// How long a new pool waits for all its consumers before it starts dispatching.
pub const POOL_GATHER: Duration = Duration::from_secs(1);
/// Most events waiting in one pooled consumer's queue.
pub const POOL_QUEUE_MAX: usize = 10_000;

/// A pooled consumer's share of the deliveries.
#[derive(Debug)]
struct Member {
    /// When it last polled or acknowledged.
    last_seen: Instant,
    /// Events given to it and not yet delivered, by position.
    queued: BTreeMap<u64, EventRecord>,
    /// Events delivered and not yet acknowledged, by position.
    in_flight: BTreeMap<u64, EventRecord>,
    /// Queued or in-flight events per stream (no zero counts).
    pending: HashMap<String, usize>,
    /// How many streams it owns.
    streams: usize,
}

impl Member {
    fn new(now: Instant) -> Member {
        Member {
            last_seen: now,
            queued: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            pending: HashMap::new(),
            streams: 0,
        }
    }

    /// Whether its lease still runs at `now`.
    fn live(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_seen) < CONSUMER_LEASE
    }

    /// `e` left it (acknowledged): one event fewer pending on its stream.
    fn settle(&mut self, e: &EventRecord) {
        if let Some(n) = self.pending.get_mut(&e.stream_id) {
            *n -= 1;
            if *n == 0 {
                self.pending.remove(&e.stream_id);
            }
        }
    }
}

/// The central dispatcher of one pooled subscription on this node; see the module
/// docs for its rules.
#[derive(Debug)]
pub struct Pool {
    /// When the pool was created: scanning waits up to [`POOL_GATHER`] from then for
    /// the pool to fill.
    created: Instant,
    /// The consumers the subscription expects.
    size: usize,
    /// The first position not yet scanned.
    scan_pos: u64,
    /// The member owning each stream seen.
    owner: HashMap<String, String>,
    members: BTreeMap<String, Member>,
}

impl Pool {
    /// A pool expecting `size` consumers, created at `now`, that scans from `cursor`
    /// (the subscription's).
    pub fn new(cursor: u64, size: usize, now: Instant) -> Pool {
        Pool {
            created: now,
            size,
            scan_pos: cursor,
            owner: HashMap::new(),
            members: BTreeMap::new(),
        }
    }

    /// The first position not yet scanned: where a delivery says to go on from.
    pub fn scan_pos(&self) -> u64 {
        self.scan_pos
    }

    /// How many members' leases run at `now`.
    pub fn live(&self, now: Instant) -> usize {
        self.members.values().filter(|m| m.live(now)).count()
    }

    /// `consumer` polls at `now`: it becomes a member if it was not one, its lease
    /// starts again, and the members whose lease ran out drop out.
    pub fn attend(&mut self, consumer: &str, now: Instant) {
        match self.members.get_mut(consumer) {
            Some(m) => m.last_seen = now,
            None => {
                self.members.insert(consumer.to_string(), Member::new(now));
            }
        }
        self.expire(now);
    }

    /// `consumer` attaches afresh (it polls without a position): it lost what it had
    /// in flight, which is queued again, to be delivered before anything new. Does
    /// nothing for a consumer that is not a member.
    pub fn reattach(&mut self, consumer: &str) {
        if let Some(m) = self.members.get_mut(consumer) {
            let again = std::mem::take(&mut m.in_flight);
            m.queued.extend(again);
        }
    }

    /// Where to scan the log from for `consumer`'s poll at `now`, with the log's head
    /// at `head`; `None` when not to scan: `consumer` has events queued already, the
    /// pool is still gathering, a member's queue is full, or nothing is new.
    pub fn scan_from(&self, consumer: &str, head: u64, now: Instant) -> Option<u64> {
        let queued = self.members.get(consumer).map_or(0, |m| m.queued.len());
        let gathered = self.members.len() >= self.size
            || now.saturating_duration_since(self.created) >= POOL_GATHER;
        (queued == 0 && gathered && !self.queues_full() && self.scan_pos < head)
            .then_some(self.scan_pos)
    }

    /// Hands the matching `events` of a scan, in position order, to their streams'
    /// owners; the scan stopped before `next`.
    pub fn dispatch(&mut self, events: impl IntoIterator<Item = EventRecord>, next: u64) {
        for e in events {
            self.give(e);
        }
        self.scan_pos = next;
    }

    /// Delivers to `consumer` its first queued events: at most `max`, and no more once
    /// their [`record_bytes`] reach `bytes_max` (one is always delivered when any is
    /// queued). They stay in flight until acknowledged. Nothing for a consumer that
    /// is not a member.
    pub fn take(&mut self, consumer: &str, max: usize, bytes_max: usize) -> Vec<EventRecord> {
        let Some(m) = self.members.get_mut(consumer) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max && bytes < bytes_max {
            let Some((k, e)) = m.queued.pop_first() else {
                break;
            };
            bytes += record_bytes(&e);
            m.in_flight.insert(k, e.clone());
            out.push(e);
        }
        out
    }

    /// `consumer` acknowledges its events in flight up to `position` at `now`, which
    /// renews its lease. Answers the position the pool's checkpoint may move to: the
    /// one before the first the pool has not had acknowledged, `None` when that is
    /// position 0. A consumer that is not a member changes nothing.
    pub fn ack(&mut self, consumer: &str, position: u64, now: Instant) -> Option<u64> {
        if let Some(m) = self.members.get_mut(consumer) {
            m.last_seen = now;
            let done: Vec<u64> = m.in_flight.range(..=position).map(|(k, _)| *k).collect();
            for k in done {
                if let Some(e) = m.in_flight.remove(&k) {
                    m.settle(&e);
                }
            }
        }
        self.low_water().checked_sub(1)
    }

    /// Drops members not seen within the lease and hands their streams and events
    /// to the others.
    fn expire(&mut self, now: Instant) {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| !m.live(now))
            .map(|(k, _)| k.clone())
            .collect();
        let mut orphans = Vec::new();
        for g in gone {
            if let Some(m) = self.members.remove(&g) {
                orphans.extend(m.queued.into_values());
                orphans.extend(m.in_flight.into_values());
            }
            self.owner.retain(|_, o| *o != g);
        }
        for e in orphans {
            self.give(e);
        }
    }

    /// Queues `e` for the owner of its stream, choosing one if the stream has none.
    /// With no member attached the event is dropped here: the cursor has not moved
    /// past it, so it is delivered again after a re-attach.
    fn give(&mut self, e: EventRecord) {
        let least = self
            .members
            .iter()
            .min_by_key(|(k, m)| (m.streams, (*k).clone()))
            .map(|(k, m)| (k.clone(), m.streams));
        let Some((least, least_streams)) = least else {
            return;
        };
        let current = self
            .owner
            .get(&e.stream_id)
            .filter(|o| self.members.contains_key(*o))
            .cloned();
        let owner = match current {
            // A stream with nothing pending may move to a less loaded member (one that
            // joined later) without any risk to its order.
            Some(o) => {
                let m = &self.members[&o];
                if !m.pending.contains_key(&e.stream_id) && m.streams > least_streams + 1 {
                    if let Some(m) = self.members.get_mut(&o) {
                        m.streams -= 1;
                    }
                    self.assign(&e.stream_id, &least);
                    least
                } else {
                    o
                }
            }
            None => {
                self.assign(&e.stream_id, &least);
                least
            }
        };
        if let Some(m) = self.members.get_mut(&owner) {
            *m.pending.entry(e.stream_id.clone()).or_default() += 1;
            m.queued.insert(e.position, e);
        }
    }

    fn assign(&mut self, stream: &str, member: &str) {
        self.owner.insert(stream.to_string(), member.to_string());
        if let Some(m) = self.members.get_mut(member) {
            m.streams += 1;
        }
    }

    fn queues_full(&self) -> bool {
        self.members
            .values()
            .any(|m| m.queued.len() >= POOL_QUEUE_MAX)
    }

    /// The first position the pool has not had acknowledged.
    fn low_water(&self) -> u64 {
        self.members
            .values()
            .flat_map(|m| {
                m.queued
                    .keys()
                    .next()
                    .into_iter()
                    .chain(m.in_flight.keys().next())
            })
            .copied()
            .fold(self.scan_pos, u64::min)
    }
}

#[cfg(test)]
mod tests;
