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
//! Pools: with `pool_size > 1`, each stream is assigned to one of the consumers that
//! polled within [`CONSUMER_LEASE`] (by a stable hash of the stream id over the sorted
//! consumer ids), so a stream's order holds; a consumer that stops polling drops out
//! and its streams go to the others. The subscription's cursor then advances only to
//! the lowest position every attached consumer has acknowledged.
//!
//! Nothing here can block an append: polls only read, and each is bounded in events
//! delivered ([`DELIVERY_MAX`]), events scanned ([`SCAN_MAX`]) and time
//! ([`POLL_WAIT_MAX`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reckon_gater::subscription::{Delivery, SubscribeOptions, SubscriptionInfo};
use reckon_gater::types::{ReadConsistency, StoreError, SubscriptionType};
use sha2::{Digest, Sha256};

use crate::command::{Command, Outcome};
use crate::matcher::Matcher;
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
/// Longest selector, in bytes.
pub const SELECTOR_BYTES_MAX: usize = 4096;
/// A consumer this far behind the head is reported as slow.
pub const SLOW_CONSUMER_LAG: u64 = 10_000;
/// How often a slow consumer is reported, at most.
pub const SLOW_REPORT_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Consumer {
    last_seen: Option<Instant>,
    acked: Option<u64>,
}

#[derive(Default)]
struct Attached {
    matcher: Option<Arc<Matcher>>,
    consumers: BTreeMap<String, Consumer>,
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

/// A stable hash of a stream id (FNV-1a), for assigning streams to pool consumers.
fn stream_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
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
    ) -> Result<SubscriptionInfo, StoreError> {
        if name.is_empty() || name.len() > NAME_BYTES_MAX || name.chars().any(char::is_control) {
            return Err(StoreError::invalid(
                "name",
                format!(
                    "a subscription name is 1..={NAME_BYTES_MAX} bytes without control characters"
                ),
            ));
        }
        if selector.len() > SELECTOR_BYTES_MAX {
            return Err(StoreError::invalid(
                "selector",
                format!(
                    "the selector is {} bytes; the limit is {SELECTOR_BYTES_MAX}",
                    selector.len()
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
        let m = Matcher::parse(kind, &selector)?;
        let key = key_of(kind, &selector, &name);
        let cmd = Command::Subscribe {
            key: key.clone(),
            kind,
            selector,
            name,
            start_from: opts.start_from,
            pool_size: opts.pool_size,
        };
        let bytes = 64;
        match self.submit(cmd, bytes).await? {
            Outcome::Subscription(mut info) => {
                self.subscriptions
                    .with(&key, |a| a.matcher = Some(Arc::new(m)));
                info.head = self.state().watch_head().borrow().to_owned();
                tracing::info!(target: "reckon_db", store = self.name(), key, kind = %info.kind, name = %info.name, "reckon_db.subscription.created");
                Ok(self.fill(info))
            }
            _ => Err(StoreError::Internal {
                message: "subscribe answered without a subscription".into(),
            }),
        }
    }

    /// Removes a subscription; `NotFound` for an unknown key.
    pub async fn unsubscribe(&self, key: String) -> Result<(), StoreError> {
        self.submit(Command::Unsubscribe { key: key.clone() }, 0)
            .await?;
        self.subscriptions.forget(&key);
        tracing::info!(target: "reckon_db", store = self.name(), key, "reckon_db.subscription.deleted");
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
    ) -> Result<SubscriptionInfo, StoreError> {
        let info = self
            .get_subscription(key.clone(), ReadConsistency::Stale)
            .await?;
        let now = Instant::now();
        let commit_to = self.subscriptions.with(&key, |a| {
            let c = a.consumers.entry(consumer).or_default();
            c.acked = Some(c.acked.map_or(position, |p| p.max(position)));
            c.last_seen = Some(now);
            if info.pool_size <= 1 {
                return Some(position);
            }
            // A pool's checkpoint is the lowest ack of its attached consumers.
            let live: Vec<Option<u64>> = a
                .consumers
                .values()
                .filter(|c| {
                    c.last_seen
                        .is_some_and(|t| now.duration_since(t) < CONSUMER_LEASE)
                })
                .map(|c| c.acked)
                .collect();
            live.into_iter()
                .collect::<Option<Vec<u64>>>()?
                .into_iter()
                .min()
        });
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
            )
            .await?
        {
            Outcome::Subscription(mut info) => {
                info.head = *self.state().watch_head().borrow();
                tracing::debug!(target: "reckon_db", store = self.name(), key, checkpoint = position, lag = info.lag(), "reckon_db.subscription.checkpoint");
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
        let info = self
            .get_subscription(key.clone(), ReadConsistency::Stale)
            .await?;
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
        let pool: Option<(Vec<String>, String)> = (info.pool_size > 1).then(|| {
            self.subscriptions.with(&key, |a| {
                a.consumers.entry(consumer.clone()).or_default().last_seen = Some(now);
                a.consumers.retain(|_, c| {
                    c.last_seen
                        .is_some_and(|t| now.duration_since(t) < CONSUMER_LEASE)
                });
                (a.consumers.keys().cloned().collect(), consumer.clone())
            })
        });
        let mut from = from.unwrap_or(info.cursor);
        let mut head_rx = self.state().watch_head();
        loop {
            let head = *head_rx.borrow_and_update();
            let (m, p) = (matcher.clone(), pool.clone());
            let (events, next) = self
                .read(ReadConsistency::Stale, move |r| {
                    r.scan(from, max, SCAN_MAX, |e| {
                        m.matches(e)
                            && p.as_ref().is_none_or(|(active, me)| {
                                let i = (stream_hash(&e.stream_id) % active.len() as u64) as usize;
                                active[i] == *me
                            })
                    })
                    .map(Ok)
                })
                .await?;
            let head = head.max(next);
            if !events.is_empty() || next < head || Instant::now() >= deadline {
                self.note_delivery(&key, events.len() as u64, head.saturating_sub(next));
                return Ok(Delivery { events, next, head });
            }
            from = next;
            // Caught up: wait for the head to move past where we are, or the deadline.
            let moved = tokio::time::timeout_at(deadline.into(), head_rx.wait_for(|h| *h > next))
                .await
                .is_ok();
            if !moved {
                self.note_delivery(&key, 0, 0);
                return Ok(Delivery {
                    events: Vec::new(),
                    next,
                    head: *head_rx.borrow(),
                });
            }
        }
    }

    fn note_delivery(&self, key: &str, count: u64, lag: u64) {
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
            tracing::debug!(target: "reckon_db", store = self.name(), key, count, lag, "reckon_db.subscription.delivered");
        }
        if slow {
            tracing::warn!(target: "reckon_db", store = self.name(), key, lag, "reckon_db.subscription.slow_consumer");
        }
    }

    /// Events delivered per subscription by this node since start.
    pub fn delivered_counts(&self) -> Vec<(String, u64)> {
        let subs = self
            .subscriptions
            .subs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        subs.iter().map(|(k, a)| (k.clone(), a.delivered)).collect()
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

    #[test]
    fn stream_hash_is_stable() {
        assert_eq!(stream_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stream_hash("order-1"), stream_hash("order-1"));
        assert_ne!(stream_hash("order-1"), stream_hash("order-2"));
    }
}
