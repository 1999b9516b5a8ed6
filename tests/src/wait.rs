//! Polling for a condition with a bound, instead of sleeping and hoping; and bounds
//! that fit the work they wait for.
//!
//! A bound only tells a stuck test from a slow one, so it must hold on a machine and
//! a disk several times slower than this one. Work that does not grow with the data
//! (a start, an election, a registration, a heartbeat) is bounded by a fixed
//! [`BASE`](crate::wait::BASE); work that does (appends committed one after
//! another, events replicated, delivered or carried in a snapshot) by
//! [`for_work`](crate::wait::for_work): the base plus an allowance per item far
//! above what one item takes here.

use std::time::{Duration, Instant};

/// How often [`wait_until`] polls.
pub const POLL_EVERY: Duration = Duration::from_millis(50);

/// Polls `f` until it is true; panics naming `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The fixed part of every bound from [`for_work`]: connections, a leader election
/// (under a second of Raft timeouts), a heartbeat to the gater (lease / 3). A few
/// seconds at most here, in a debug build on a shared machine.
pub const BASE: Duration = Duration::from_secs(30);

/// Allowance for each append that is its own commit (a Raft entry made durable on a
/// quorum, then applied), counted as if appends ran one after another. Measured here
/// in a debug build on the shared 2-core machine: 7.5 ms through the gater to one
/// `--dev` node, 16 ms through the gater to a 3-node cluster.
pub const PER_APPEND: Duration = Duration::from_millis(100);

/// Allowance for each event moved without a commit of its own: replicated to a node
/// catching up, copied in a snapshot and installed, delivered to a subscriber, read.
/// Measured here: a late node takes a 1,820-event store from a snapshot and its log
/// tail in 0.36 s (0.2 ms an event, start and join included); a subscriber receives
/// 20,000 events as fast as 10 writers append them.
pub const PER_EVENT: Duration = Duration::from_millis(2);

/// Bound on a wait for `appends` appends, each its own commit, and `events` events
/// moved ([`PER_APPEND`], [`PER_EVENT`]), on top of [`BASE`].
pub fn for_work(appends: u64, events: u64) -> Duration {
    let per_item =
        |each: Duration, n: u64| each.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
    BASE.saturating_add(per_item(PER_APPEND, appends))
        .saturating_add(per_item(PER_EVENT, events))
}

/// Bound on a wait for `n` appends, each its own commit: [`for_work`]`(n, 0)`.
pub fn for_appends(n: u64) -> Duration {
    for_work(n, 0)
}

/// Bound on a wait for `n` events to be moved: [`for_work`]`(0, n)`.
pub fn for_events(n: u64) -> Duration {
    for_work(0, n)
}
