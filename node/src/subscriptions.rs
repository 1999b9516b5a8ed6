//! Subscriptions on one store: creating them, delivering by long-poll, acknowledging.
//!
//! The subscription records (selector, cursor) are replicated through Raft like any
//! write, so they survive leader changes and restarts. Delivery is served from the
//! local state: a poll scans the global log from where the consumer says (or from
//! the subscription's cursor), keeps what the [`Matcher`] accepts, and when it has
//! caught up waits for the head of the log to move, until its wait runs out. A
//! consumer that passes each [`Delivery::next`] back gets every matching event once,
//! in global order, across the catch-up/live seam.
//!
//! Pools: with `pool_size > 1`, the serving node dispatches centrally. It scans the
//! log once for the whole pool and gives each matching event to the consumer that
//! owns its stream (a stream is given to the attached consumer owning the fewest
//! streams the first time it is seen, and stays there), so each stream's order holds
//! and each event goes to one consumer. Events wait in per-consumer queues, bounded
//! by [`POOL_QUEUE_MAX`] (scanning pauses while a queue is full), and once delivered
//! stay in flight until acknowledged. A consumer that stops polling for
//! [`CONSUMER_LEASE`] drops out: its streams, and its queued and unacknowledged
//! events, go to the others in position order. The subscription's cursor advances to
//! the first position not yet acknowledged by the pool.
//!
//! Nothing here can block an append: polls only read, and each is bounded in events
//! delivered ([`DELIVERY_MAX`]), events scanned ([`SCAN_MAX`]) and time
//! ([`POLL_WAIT_MAX`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reckon_gater::emit;
use reckon_gater::subscription::{Delivery, SubscribeOptions, SubscriptionInfo};
use reckon_gater::telemetry as t;
use reckon_gater::types::{EventRecord, ReadConsistency, StoreError, SubscriptionType};
use sha2::{Digest, Sha256};

use crate::command::{Command, Outcome};
use crate::matcher::Matcher;
use crate::storage::state::{record_bytes, READ_BYTES_MAX};
use crate::store::Store;

/// Most events one poll delivers.
pub const DELIVERY_MAX: u32 = 1000;
/// Most events one poll looks at before answering (possibly with nothing).
pub const SCAN_MAX: usize = 65_536;
/// The longest a poll waits for new events.
pub const POLL_WAIT_MAX: Duration = Duration::from_secs(30);
/// A pooled consumer that has not polled for this long is dropped from the pool.
pub const CONSUMER_LEASE: Duration = Duration::from_secs(10);
/// Most consumers one subscription may have.
pub const POOL_SIZE_MAX: u32 = 64;
/// Longest subscription name, in bytes.
pub const NAME_BYTES_MAX: usize = 256;
/// How long a new pool waits for all its consumers before it starts dispatching.
pub const POOL_GATHER: Duration = Duration::from_secs(1);
/// Most events waiting in one pooled consumer's queue.
pub const POOL_QUEUE_MAX: usize = 10_000;
/// A consumer this far behind the head is reported as slow.
pub const SLOW_CONSUMER_LAG: u64 = 10_000;
/// How often a slow consumer is reported, at most.
pub const SLOW_REPORT_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Consumer {
    last_seen: Option<Instant>,
}

/// A pooled consumer's share of the deliveries.
#[derive(Debug, Default)]
struct Member {
    last_seen: Option<Instant>,
    queued: BTreeMap<u64, EventRecord>,
    in_flight: BTreeMap<u64, EventRecord>,
    /// Queued or in-flight events per stream.
    pending: HashMap<String, usize>,
    streams: usize,
}

impl Member {
    fn settle(&mut self, e: &EventRecord) {
        if let Some(n) = self.pending.get_mut(&e.stream_id) {
            *n -= 1;
            if *n == 0 {
                self.pending.remove(&e.stream_id);
            }
        }
    }
}

/// The central dispatcher of one pooled subscription on this node.
#[derive(Debug)]
struct Pool {
    /// When the first consumer attached: scanning waits up to [`POOL_GATHER`] for the
    /// pool to fill, so that a backlog is spread over every consumer.
    created: Instant,
    size: usize,
    scan_pos: u64,
    owner: HashMap<String, String>,
    members: BTreeMap<String, Member>,
}

impl Pool {
    fn new(cursor: u64, size: usize) -> Pool {
        Pool {
            created: Instant::now(),
            size,
            scan_pos: cursor,
            owner: HashMap::new(),
            members: BTreeMap::new(),
        }
    }

    /// Drops members not seen within the lease and hands their streams and events
    /// to the others.
    fn expire(&mut self, now: Instant) {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.last_seen
                    .is_none_or(|t| now.duration_since(t) >= CONSUMER_LEASE)
            })
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

#[derive(Default)]
struct Attached {
    matcher: Option<Arc<Matcher>>,
    consumers: BTreeMap<String, Consumer>,
    pool: Option<Arc<tokio::sync::Mutex<Pool>>>,
    /// The Raft term in which `pool` was built from the checkpoint: a pool kept
    /// from an earlier term of this node's leadership missed what other leaders
    /// acknowledged meanwhile, and is built afresh.
    pool_term: u64,
    delivered: u64,
    last_slow_report: Option<Instant>,
}

/// Per-subscription state held by this node: matchers and attached consumers.
#[derive(Default)]
pub struct Attachments {
    subs: Mutex<HashMap<String, Attached>>,
}

/// The key of the subscription with this kind, selector and name.
pub fn key_of(kind: SubscriptionType, selector: &str, name: &str) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_str().as_bytes());
    h.update([0]);
    h.update(selector.as_bytes());
    h.update([0]);
    h.update(name.as_bytes());
    let d = h.finalize();
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn not_found(key: &str) -> StoreError {
    StoreError::NotFound {
        what: format!("subscription {key:?}"),
    }
}

impl Attachments {
    fn with<T>(&self, key: &str, f: impl FnOnce(&mut Attached) -> T) -> T {
        let mut subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        f(subs.entry(key.to_string()).or_default())
    }

    fn forget(&self, key: &str) {
        self.subs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    fn consumers(&self, key: &str, now: Instant) -> u32 {
        self.with(key, |a| {
            if let Some(p) = a.pool.as_ref().and_then(|p| p.try_lock().ok()) {
                return p
                    .members
                    .values()
                    .filter(|m| {
                        m.last_seen
                            .is_some_and(|t| now.duration_since(t) < CONSUMER_LEASE)
                    })
                    .count() as u32;
            }
            a.consumers
                .values()
                .filter(|c| {
                    c.last_seen
                        .is_some_and(|t| now.duration_since(t) < CONSUMER_LEASE)
                })
                .count() as u32
        })
    }
}

impl Store {
    fn fill(&self, mut info: SubscriptionInfo) -> SubscriptionInfo {
        info.consumers = self.subscriptions.consumers(&info.key, Instant::now());
        info.delivered = self.subscriptions.with(&info.key, |a| a.delivered);
        info
    }

    /// Creates a subscription, or returns the one with the same kind, selector and
    /// name. A selector that cannot be parsed is `InvalidInput` naming what is wrong.
    pub async fn subscribe(
        &self,
        kind: SubscriptionType,
        selector: String,
        name: String,
        opts: SubscribeOptions,
        deadline: Instant,
    ) -> Result<SubscriptionInfo, StoreError> {
        if name.is_empty() || name.len() > NAME_BYTES_MAX || name.chars().any(char::is_control) {
            return Err(StoreError::invalid(
                "name",
                format!(
                    "a subscription name is 1..={NAME_BYTES_MAX} bytes without control characters"
                ),
            ));
        }
        if opts.pool_size == 0 || opts.pool_size > POOL_SIZE_MAX {
            return Err(StoreError::invalid(
                "pool_size",
                format!(
                    "pool size must be 1..={POOL_SIZE_MAX}, not {}",
                    opts.pool_size
                ),
            ));
        }
        // The selector's length and form are checked here, once.
        let m = Matcher::parse(kind, &selector)?;
        let key = key_of(kind, &selector, &name);
        // What the command counts for in its batch: its strings.
        let bytes = key.len() + selector.len() + name.len();
        let cmd = Command::Subscribe {
            key: key.clone(),
            kind: kind.into(),
            selector,
            name,
            start_from: opts.start_from.into(),
            pool_size: opts.pool_size,
        };
        match self.submit(cmd, bytes, deadline).await? {
            Outcome::Subscription(mut info) => {
                self.subscriptions
                    .with(&key, |a| a.matcher = Some(Arc::new(m)));
                info.head = self.state().watch_head().borrow().to_owned();
                emit!(t::SUBSCRIPTION_CREATED, "store" => self.name(), "key" => &key, "kind" => info.kind.to_string(), "selector" => &info.selector, "name" => &info.name);
                Ok(self.fill(info))
            }
            _ => Err(StoreError::Internal {
                message: "subscribe answered without a subscription".into(),
            }),
        }
    }

    /// Removes a subscription; `NotFound` for an unknown key.
    pub async fn unsubscribe(&self, key: String, deadline: Instant) -> Result<(), StoreError> {
        self.submit(Command::Unsubscribe { key: key.clone() }, 0, deadline)
            .await?;
        self.subscriptions.forget(&key);
        emit!(t::SUBSCRIPTION_DELETED, "store" => self.name(), "key" => &key);
        Ok(())
    }

    /// One subscription.
    pub async fn get_subscription(
        &self,
        key: String,
        consistency: ReadConsistency,
    ) -> Result<SubscriptionInfo, StoreError> {
        let k = key.clone();
        let info = self
            .read(consistency, move |r| {
                Ok(r.subscription(&k)?.ok_or_else(|| not_found(&k)))
            })
            .await?;
        Ok(self.fill(info))
    }

    /// Every subscription of the store.
    pub async fn list_subscriptions(
        &self,
        consistency: ReadConsistency,
    ) -> Result<Vec<SubscriptionInfo>, StoreError> {
        let all = self
            .read(consistency, |r| r.subscriptions().map(Ok))
            .await?;
        Ok(all.into_iter().map(|i| self.fill(i)).collect())
    }

    /// Acknowledges processing up to `position` for `consumer`; the subscription's
    /// checkpoint moves forward only (an older ack is ignored).
    pub async fn ack(
        &self,
        key: String,
        consumer: String,
        position: u64,
        deadline: Instant,
    ) -> Result<SubscriptionInfo, StoreError> {
        let info = self
            .get_subscription(key.clone(), ReadConsistency::Stale)
            .await?;
        let now = Instant::now();
        let commit_to = if info.pool_size <= 1 {
            self.subscriptions.with(&key, |a| {
                a.consumers.entry(consumer.clone()).or_default().last_seen = Some(now);
            });
            Some(position)
        } else {
            // A pool's checkpoint is the first position it has not had acknowledged.
            match self.subscriptions.with(&key, |a| a.pool.clone()) {
                None => None,
                Some(pool) => {
                    let mut p = pool.lock().await;
                    if let Some(m) = p.members.get_mut(&consumer) {
                        m.last_seen = Some(now);
                        let done: Vec<u64> =
                            m.in_flight.range(..=position).map(|(k, _)| *k).collect();
                        for k in done {
                            if let Some(e) = m.in_flight.remove(&k) {
                                m.settle(&e);
                            }
                        }
                    }
                    p.low_water().checked_sub(1)
                }
            }
        };
        let Some(position) = commit_to else {
            return Ok(info);
        };
        if position.saturating_add(1) <= info.cursor {
            return Ok(info);
        }
        match self
            .submit(
                Command::Ack {
                    key: key.clone(),
                    position,
                },
                0,
                deadline,
            )
            .await?
        {
            Outcome::Subscription(mut info) => {
                info.head = *self.state().watch_head().borrow();
                emit!(t::SUBSCRIPTION_CHECKPOINT, "store" => self.name(), "key" => &key, "consumer" => &consumer, "checkpoint" => position, "lag" => info.lag());
                Ok(self.fill(info))
            }
            _ => Err(StoreError::Internal {
                message: "ack answered without a subscription".into(),
            }),
        }
    }

    /// Long-polls for matching events from `from` (or the subscription's cursor).
    pub async fn poll(
        &self,
        key: String,
        consumer: String,
        from: Option<u64>,
        max: u32,
        wait: Duration,
    ) -> Result<Delivery, StoreError> {
        let mut info = self
            .get_subscription(key.clone(), ReadConsistency::Stale)
            .await?;
        // Delivery that starts from the checkpoint (a consumer attaching, or a pool
        // this node has not served yet) needs the checkpoint every acknowledgement
        // before it moved: a leader just elected may not have applied them all yet.
        let term = self.raft().metrics().borrow().current_term;
        let new_pool = info.pool_size > 1
            && self.subscriptions.with(&key, |a| {
                if a.pool_term != term {
                    a.pool = None;
                }
                a.pool.is_none()
            });
        let from_checkpoint = from.is_none() || new_pool;
        if from_checkpoint {
            info = self
                .get_subscription(key.clone(), ReadConsistency::Linearizable)
                .await?;
        }
        let now = Instant::now();
        let deadline = now + wait.min(POLL_WAIT_MAX);
        let max = max.clamp(1, DELIVERY_MAX) as usize;
        let matcher = match self.subscriptions.with(&key, |a| a.matcher.clone()) {
            Some(m) => m,
            None => {
                let m = Arc::new(Matcher::parse(info.kind, &info.selector)?);
                self.subscriptions
                    .with(&key, |a| a.matcher = Some(m.clone()));
                m
            }
        };
        if info.pool_size > 1 {
            let pool = self.subscriptions.with(&key, |a| {
                a.pool
                    .get_or_insert_with(|| {
                        a.pool_term = term;
                        Arc::new(tokio::sync::Mutex::new(Pool::new(
                            info.cursor,
                            info.pool_size as usize,
                        )))
                    })
                    .clone()
            });
            if from.is_none() {
                // A consumer attaching afresh (no position) lost what it had in
                // flight: deliver that again, in order, before anything new.
                let mut p = pool.lock().await;
                if let Some(m) = p.members.get_mut(&consumer) {
                    let again = std::mem::take(&mut m.in_flight);
                    m.queued.extend(again);
                }
            }
            return self
                .poll_pool(&key, pool, consumer, matcher, max, deadline)
                .await;
        }
        self.subscriptions.with(&key, |a| {
            a.consumers.entry(consumer.clone()).or_default().last_seen = Some(now);
        });
        let mut from = from.unwrap_or(info.cursor);
        let mut head_rx = self.state().watch_head();
        loop {
            let head = *head_rx.borrow_and_update();
            let m = matcher.clone();
            let (events, next) = self
                .read(ReadConsistency::Stale, move |r| {
                    r.scan(from, max, SCAN_MAX, |e| m.matches(e)).map(Ok)
                })
                .await?;
            let head = head.max(next);
            if !events.is_empty() || next < head || Instant::now() >= deadline {
                self.note_delivery(
                    &key,
                    &consumer,
                    events.len() as u64,
                    head.saturating_sub(next),
                );
                return Ok(Delivery { events, next, head });
            }
            from = next;
            if !self
                .wait_for_head(&key, &mut head_rx, next, deadline)
                .await?
            {
                self.note_delivery(&key, &consumer, 0, 0);
                return Ok(Delivery {
                    events: Vec::new(),
                    next,
                    head: *head_rx.borrow(),
                });
            }
        }
    }

    /// Waits until the head moves past `next` (`Ok(true)`) or the deadline passes
    /// (`Ok(false)`); `NotFound` when the subscription was removed meanwhile.
    async fn wait_for_head(
        &self,
        key: &str,
        head_rx: &mut tokio::sync::watch::Receiver<u64>,
        next: u64,
        deadline: Instant,
    ) -> Result<bool, StoreError> {
        let moved = tokio::time::timeout_at(deadline.into(), head_rx.wait_for(|h| *h > next))
            .await
            .is_ok();
        // An unsubscribe may have come while waiting: deliver nothing after it.
        let k = key.to_string();
        self.read(ReadConsistency::Stale, move |r| {
            Ok(r.subscription(&k)?.map(|_| ()).ok_or_else(|| not_found(&k)))
        })
        .await?;
        Ok(moved)
    }

    /// A pooled consumer's poll: queued events first, else scan on for the pool.
    async fn poll_pool(
        &self,
        key: &str,
        pool: Arc<tokio::sync::Mutex<Pool>>,
        consumer: String,
        matcher: Arc<Matcher>,
        max: usize,
        deadline: Instant,
    ) -> Result<Delivery, StoreError> {
        let mut head_rx = self.state().watch_head();
        loop {
            let now = Instant::now();
            let head = *head_rx.borrow_and_update();
            let mut p = pool.lock().await;
            p.members.entry(consumer.clone()).or_default().last_seen = Some(now);
            p.expire(now);
            let queued = p.members.get(&consumer).map_or(0, |m| m.queued.len());
            let gathered = p.members.len() >= p.size || p.created.elapsed() >= POOL_GATHER;
            if queued == 0 && gathered && !p.queues_full() && p.scan_pos < head {
                let (from, m) = (p.scan_pos, matcher.clone());
                let (events, next) = self
                    .read(ReadConsistency::Stale, move |r| {
                        r.scan(from, POOL_QUEUE_MAX, SCAN_MAX, |e| m.matches(e))
                            .map(Ok)
                    })
                    .await?;
                for e in events {
                    p.give(e);
                }
                p.scan_pos = next;
            }
            let scan_pos = p.scan_pos;
            let mine = p.members.get_mut(&consumer).map(|m| {
                let mut out = Vec::new();
                let mut bytes = 0usize;
                while out.len() < max && bytes < READ_BYTES_MAX {
                    let Some((k, e)) = m.queued.pop_first() else {
                        break;
                    };
                    bytes += record_bytes(&e);
                    m.in_flight.insert(k, e.clone());
                    out.push(e);
                }
                out
            });
            drop(p);
            let events = mine.unwrap_or_default();
            if !events.is_empty() || Instant::now() >= deadline {
                self.note_delivery(
                    key,
                    &consumer,
                    events.len() as u64,
                    head.saturating_sub(scan_pos),
                );
                return Ok(Delivery {
                    events,
                    next: scan_pos,
                    head: head.max(scan_pos),
                });
            }
            if scan_pos >= head {
                // Caught up: wait for new events (or another member's leaving).
                let wait_until = deadline.min(Instant::now() + CONSUMER_LEASE / 4);
                self.wait_for_head(key, &mut head_rx, scan_pos, wait_until)
                    .await?;
            } else {
                // Others' queues are full: give them time to drain.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    fn note_delivery(&self, key: &str, consumer: &str, count: u64, lag: u64) {
        let now = Instant::now();
        let slow = self.subscriptions.with(key, |a| {
            a.delivered += count;
            let due = a
                .last_slow_report
                .is_none_or(|t| now.duration_since(t) >= SLOW_REPORT_EVERY);
            if lag >= SLOW_CONSUMER_LAG && due {
                a.last_slow_report = Some(now);
                true
            } else {
                false
            }
        });
        if count > 0 {
            let m = self.metrics();
            m.deliveries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            m.delivered_events
                .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
            emit!(t::SUBSCRIPTION_DELIVERED, "store" => self.name(), "key" => key, "consumer" => consumer, "event_count" => count, "lag" => lag);
        }
        if slow {
            tracing::warn!(target: "reckon_db", store = self.name(), key, lag, "reckon_db.subscription.slow_consumer");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_kind_selector_and_name_only() {
        let a = key_of(SubscriptionType::Stream, "order-1", "audit");
        assert_eq!(a, key_of(SubscriptionType::Stream, "order-1", "audit"));
        assert_ne!(a, key_of(SubscriptionType::Stream, "order-1", "audit2"));
        assert_ne!(a, key_of(SubscriptionType::EventType, "order-1", "audit"));
        assert_ne!(
            key_of(SubscriptionType::Stream, "a", "bc"),
            key_of(SubscriptionType::Stream, "ab", "c")
        );
        assert_eq!(a.len(), 32);
    }
}
