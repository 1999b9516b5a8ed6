//! Delivering a subscription's events by long-poll.
//!
//! Delivery is served from the local state: a poll scans the global log from where
//! the consumer says (or from the subscription's cursor), keeps what the
//! [`Matcher`] accepts, and when it has caught up waits for the head of the log to
//! move, until its wait runs out. A consumer that passes each [`Delivery::next`]
//! back gets every matching event once, in global order, across the catch-up/live
//! seam.
//!
//! Pools: with `pool_size > 1`, the serving node dispatches centrally. It scans the
//! log once for the whole pool and gives each matching event to the consumer that
//! owns its stream, as the [`pool`](super::pool) decides; this file is its shell,
//! which holds the pool's lock, scans, waits and reports.
//!
//! Nothing here can block an append: polls only read, and each is bounded in events
//! delivered ([`DELIVERY_MAX`]), events scanned ([`SCAN_MAX`]) and time
//! ([`POLL_WAIT_MAX`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reckon_gater::emit;
use reckon_gater::subscription::Delivery;
use reckon_gater::telemetry as t;
use reckon_gater::types::{ReadConsistency, StoreError};

use super::pool::{Pool, CONSUMER_LEASE, POOL_QUEUE_MAX};
use super::{not_found, Store};
use crate::matcher::Matcher;
use crate::storage::state::READ_BYTES_MAX;

/// Most events one poll delivers.
pub const DELIVERY_MAX: u32 = 1000;
/// Most events one poll looks at before answering (possibly with nothing).
pub const SCAN_MAX: usize = 65_536;
/// The longest a poll waits for new events.
pub const POLL_WAIT_MAX: Duration = Duration::from_secs(30);
/// A consumer this far behind the head is reported as slow.
pub const SLOW_CONSUMER_LAG: u64 = 10_000;
/// How often a slow consumer is reported, at most.
pub const SLOW_REPORT_EVERY: Duration = Duration::from_secs(10);

impl Store {
    /// Long-polls for matching events from `from` (or the subscription's cursor).
    pub async fn poll(
        &self,
        key: String,
        consumer: String,
        from: Option<u64>,
        max: u32,
        wait: Duration,
    ) -> Result<Delivery, StoreError> {
        // Delivery that starts from the checkpoint (a consumer attaching, or a pool
        // this node has not served yet) needs the checkpoint every acknowledgement
        // before it moved: a leader just elected may not have applied them all yet.
        let term = self.raft().metrics().borrow().current_term;
        let attaching = if from.is_none() {
            ReadConsistency::Linearizable
        } else {
            ReadConsistency::Stale
        };
        let mut info = self.get_subscription(key.clone(), attaching).await?;
        let new_pool = info.pool_size > 1
            && self.subscriptions.with(&key, |a| {
                if a.pool_term != term {
                    a.pool = None;
                }
                a.pool.is_none()
            });
        if new_pool && attaching == ReadConsistency::Stale {
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
                            now,
                        )))
                    })
                    .clone()
            });
            if from.is_none() {
                // A consumer attaching afresh (no position) lost what it had in
                // flight: deliver that again, in order, before anything new.
                pool.lock().await.reattach(&consumer);
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
            p.attend(&consumer, now);
            if let Some(from) = p.scan_from(&consumer, head, now) {
                let m = matcher.clone();
                let (events, next) = self
                    .read(ReadConsistency::Stale, move |r| {
                        r.scan(from, POOL_QUEUE_MAX, SCAN_MAX, |e| m.matches(e))
                            .map(Ok)
                    })
                    .await?;
                p.dispatch(events, next);
            }
            let scan_pos = p.scan_pos();
            let events = p.take(&consumer, max, READ_BYTES_MAX);
            drop(p);
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
            m.deliveries.fetch_add(1, Ordering::Relaxed);
            m.delivered_events.fetch_add(count, Ordering::Relaxed);
            emit!(t::SUBSCRIPTION_DELIVERED, "store" => self.name(), "key" => key, "consumer" => consumer, "event_count" => count, "lag" => lag);
        }
        if slow {
            tracing::warn!(target: "reckon_db", store = self.name(), key, lag, "reckon_db.subscription.slow_consumer");
        }
    }
}
