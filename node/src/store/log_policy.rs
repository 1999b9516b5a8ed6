//! Keeping the Raft log small by bytes as well as by entries.
//!
//! openraft builds a snapshot every `snapshot_logs_since_last` entries and keeps
//! `max_in_snapshot_log_to_keep` entries behind it. Entries hold whole batches of
//! writes (up to `write.batch_bytes_max` each), so counts alone can mean gigabytes of
//! log. Here a snapshot is also built once the entries since the last one hold
//! [`StoreOptions::snapshot_log_bytes`], and the log behind a snapshot is purged down
//! to [`StoreOptions::log_keep_bytes`] of entries. A snapshot costs one fsync (the
//! state file is the snapshot, see `raft::state_machine`), so building often is
//! cheap; a follower that falls behind what is kept gets a snapshot.

use std::time::Duration;

use super::StoreOptions;
use crate::raft::log_store::LogStore;
use crate::raft::Raft;

/// How often the log is measured against the limits.
pub const LOG_POLICY_EVERY: Duration = Duration::from_millis(500);

/// Measures the log every [`LOG_POLICY_EVERY`] and asks openraft for a snapshot or a
/// purge when it holds more than `opts` allow; returns when the Raft group stops.
pub async fn run(raft: Raft, log: LogStore, opts: StoreOptions) {
    let mut metrics = raft.metrics();
    let mut tick = tokio::time::interval(LOG_POLICY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        if metrics.has_changed().is_err() {
            return;
        }
        let (snapshot, purged) = {
            let m = metrics.borrow_and_update();
            (m.snapshot, m.purged)
        };
        let since = log.bytes_after(snapshot.map(|s| s.index));
        if since >= opts.snapshot_log_bytes && raft.trigger().snapshot().await.is_err() {
            return;
        }
        let Some(snapshot) = snapshot else {
            continue;
        };
        let Some(upto) = log.purge_point(snapshot.index, opts.log_keep_bytes) else {
            continue;
        };
        if purged.is_none_or(|p| upto > p.index) && raft.trigger().purge_log(upto).await.is_err() {
            return;
        }
    }
}
