//! Subscriptions on one store: creating them, acknowledging, and what this node
//! holds of their consumers.
//!
//! The subscription records (selector, cursor) are replicated through Raft like any
//! write, so they survive leader changes and restarts. What consumers are attached,
//! each subscription's parsed [`Matcher`] and its pool are this node's own
//! ([`Attachments`]), rebuilt as consumers poll.
//!
//! - `delivery.rs`: delivering by long-poll ([`Store::poll`]), bounded in events
//!   delivered ([`DELIVERY_MAX`]), events scanned ([`SCAN_MAX`]) and time
//!   ([`POLL_WAIT_MAX`]).
//! - [`pool`]: with `pool_size > 1`, which of the pool's consumers gets which stream;
//!   a pure core the delivery calls.
//!
//! Acknowledging ([`Store::ack`]) moves the subscription's cursor, forward only: past
//! what a single consumer acknowledges, or for a pool to the first position the pool
//! has not had acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use reckon_gater::emit;
use reckon_gater::subscription::{SubscribeOptions, SubscriptionInfo};
use reckon_gater::telemetry as t;
use reckon_gater::types::{ReadConsistency, StoreError, SubscriptionType};
use sha2::{Digest, Sha256};

use super::Store;
use crate::command::{Command, Outcome};
use crate::matcher::Matcher;
use pool::Pool;

mod delivery;
pub mod pool;

pub use delivery::{DELIVERY_MAX, POLL_WAIT_MAX, SCAN_MAX, SLOW_CONSUMER_LAG, SLOW_REPORT_EVERY};
pub use pool::{CONSUMER_LEASE, POOL_GATHER, POOL_QUEUE_MAX};

/// Most consumers one subscription may have.
pub const POOL_SIZE_MAX: u32 = 64;
/// Longest subscription name, in bytes.
pub const NAME_BYTES_MAX: usize = 256;

#[derive(Debug, Default)]
struct Consumer {
    last_seen: Option<Instant>,
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
                return p.live(now) as u32;
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
                Some(pool) => pool.lock().await.ack(&consumer, position, now),
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
