//! Scavenging: taking out of a store what no read can return any more.
//!
//! A delete takes a stream's events out of its stream, type and tag reads, but they
//! stay in the events table (and the event id index) at their positions. A scavenge
//! removes them: a run of [`Command::ScavengeStep`]s, each over
//! [`StoreOptions::scavenge_step_positions`] positions of the global log, applied in
//! the log like any write, so every replica removes the same events in the same
//! order, and a step is applied whole or not at all (a kill -9 leaves the store
//! where the last applied step left it). Where it stands is replicated state (see
//! [`StoredScavenge`]): after a restart or a change of leader, the new leader goes on
//! from there.
//!
//! [`run`] drives it. On the leader, while a scavenge runs, it proposes the next
//! step, then waits as long as the step took plus
//! [`StoreOptions::scavenge_pause`] (the throttle: a scavenge takes at most half
//! of the write path). On every node, once a scavenge is done, it compacts the state
//! file to give the space back to the file system; a compaction needs a moment with
//! no read open, and is tried again until it gets one. Reads and appends go on
//! during a scavenge; only a compaction holds them, for as long as it takes.
//!
//! [`StoredScavenge`]: crate::storage::format::StoredScavenge
//! [`StoreOptions::scavenge_step_positions`]: super::StoreOptions::scavenge_step_positions
//! [`StoreOptions::scavenge_pause`]: super::StoreOptions::scavenge_pause

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use reckon_gater::emit;
use reckon_gater::telemetry as t;
use reckon_gater::types::{
    ReadConsistency, ScavengeAction, ScavengePhase, ScavengeStatus, StoreError,
};

use super::batcher::leadership;
use super::Store;
use crate::command::Command;
use crate::storage::format::{ScavengePhase as Stored, StoredScavenge};

/// How often the driver looks at where the scavenge stands when it is not stepping.
pub const SCAVENGE_TICK: Duration = Duration::from_millis(250);

/// The deadline of one step's proposal.
const STEP_DEADLINE: Duration = Duration::from_secs(30);

/// The file, beside the state file, naming the last scavenge this node compacted
/// after (its generation, in decimal).
const COMPACTED_FILE: &str = "scavenge-compacted";

fn status_of(
    stored: Option<StoredScavenge>,
    file_bytes: u64,
    reclaimed_bytes: u64,
) -> ScavengeStatus {
    match stored {
        None => ScavengeStatus {
            phase: ScavengePhase::Never,
            generation: 0,
            end: 0,
            next: 0,
            removed_events: 0,
            removed_bytes: 0,
            started_us: 0,
            finished_us: None,
            file_bytes,
            reclaimed_bytes,
        },
        Some(s) => ScavengeStatus {
            phase: match s.phase {
                Stored::Running => ScavengePhase::Running,
                Stored::Stopped => ScavengePhase::Stopped,
                Stored::Done => ScavengePhase::Done,
            },
            generation: s.generation,
            end: s.end,
            next: s.next,
            removed_events: s.removed_events,
            removed_bytes: s.removed_bytes,
            started_us: s.started_us,
            finished_us: s.finished_us,
            file_bytes,
            reclaimed_bytes,
        },
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

impl Store {
    /// Starts, stops or reports the scavenge; answers where it stands after.
    pub async fn scavenge(
        &self,
        action: ScavengeAction,
        deadline: Instant,
    ) -> Result<ScavengeStatus, StoreError> {
        let command = match action {
            ScavengeAction::Start => Some(Command::ScavengeStart),
            ScavengeAction::Stop => Some(Command::ScavengeStop),
            ScavengeAction::Status => None,
        };
        if let Some(command) = command {
            self.submit(command, 0, deadline).await?;
        }
        self.scavenge_status(ReadConsistency::Linearizable).await
    }

    /// Where the scavenge stands, as this node's state has it.
    pub async fn scavenge_status(
        &self,
        consistency: ReadConsistency,
    ) -> Result<ScavengeStatus, StoreError> {
        let stored = self.read(consistency, |r| r.scavenge().map(Ok)).await?;
        Ok(status_of(
            stored,
            file_len(self.state.path()),
            self.metrics
                .scavenge_reclaimed_bytes
                .load(Ordering::Relaxed),
        ))
    }
}

fn compacted_path(state: &Path) -> PathBuf {
    state.with_file_name(COMPACTED_FILE)
}

fn read_compacted(state: &Path) -> u64 {
    std::fs::read_to_string(compacted_path(state))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Drives the store's scavenge (see the [module docs](self)); returns when the store
/// is gone or its Raft group stopped.
pub async fn run(store: Weak<Store>) {
    let mut compacted = match store.upgrade() {
        Some(s) => read_compacted(s.state.path()),
        None => return,
    };
    let metrics = match store.upgrade() {
        Some(s) => s.raft.metrics(),
        None => return,
    };
    // After a step, the next one follows its pause; otherwise the driver looks again
    // after a tick.
    let mut wait = SCAVENGE_TICK;
    loop {
        tokio::time::sleep(wait).await;
        wait = SCAVENGE_TICK;
        if metrics.has_changed().is_err() {
            return;
        }
        let Some(s) = store.upgrade() else {
            return;
        };
        let Ok(Some(sc)) = s
            .read(ReadConsistency::Stale, |r| r.scavenge().map(Ok))
            .await
        else {
            continue;
        };
        match sc.phase {
            Stored::Running if leadership(&s.raft, s.node_id, s.lease).is_ok() => {
                let started = Instant::now();
                let step = Command::ScavengeStep {
                    from: sc.next,
                    to: sc.next.saturating_add(s.scavenge_step),
                };
                if let Err(e) = s.submit(step, 0, started + STEP_DEADLINE).await {
                    tracing::debug!(target: "reckon_db", store = %s.name, error = %e, "scavenge step");
                }
                wait = started.elapsed() + s.scavenge_pause;
            }
            Stored::Done if sc.generation > compacted => {
                let state = s.state.clone();
                let before = file_len(state.path());
                match tokio::task::spawn_blocking(move || state.compact()).await {
                    Ok(Ok(Some((before, after)))) => {
                        let reclaimed = before.saturating_sub(after);
                        s.metrics
                            .scavenge_reclaimed_bytes
                            .fetch_add(reclaimed, Ordering::Relaxed);
                        compacted = sc.generation;
                        if let Err(e) =
                            std::fs::write(compacted_path(s.state.path()), format!("{compacted}\n"))
                        {
                            tracing::warn!(target: "reckon_db", store = %s.name, error = %e, "scavenge: recording the compaction");
                        }
                        emit!(t::SCAVENGE_COMPACTED, "store" => &s.name, "node_id" => s.node_id,
                            "generation" => sc.generation, "file_bytes_before" => before,
                            "file_bytes_after" => after, "removed_events" => sc.removed_events);
                    }
                    // A read is open: try again at the next tick.
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(target: "reckon_db", store = %s.name, error = %e, file_bytes = before, "scavenge: compaction failed");
                        // Not again for this scavenge: the next one tries anew.
                        compacted = sc.generation;
                    }
                    Err(e) => {
                        tracing::warn!(target: "reckon_db", store = %s.name, error = %e, "scavenge: compaction task");
                    }
                }
            }
            _ => {}
        }
    }
}

/// Starts the driver of `store`'s scavenge.
pub fn spawn(store: &Arc<Store>) {
    tokio::spawn(run(Arc::downgrade(store)));
}
