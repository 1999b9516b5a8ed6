//! Append latency while a scavenge runs, beside idle (`--scavenge`).
//!
//! Each run, on a fresh `--dev` node:
//!
//! ```text
//! load     EVENTS events in appends of 1000 over STREAMS streams in turn, then
//!          every other stream deleted: half the events, all along the log, are for
//!          a scavenge to remove
//! idle     one client appends single events through the embedded gater, one at a
//!          time, for the window
//! during   `scavenge start`, then the same appends for the window, or until the
//!          scavenge is done (the rows say how many appends each measured)
//! ```
//!
//! The table gives p50 and p99 of each and p99 during ÷ p99 idle, medians over the
//! runs: both halves run in the same minute on the same node, so the ratio is what a
//! scavenge costs the write path (its throttle: each step is followed by a pause as
//! long as it took, `[scavenge]` at its defaults).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use hdrhistogram::Histogram;
use reckon_gater::types::{ScavengeAction, ScavengePhase};
use reckon_gater::{ExpectedVersion, StoreHandle};
use serde_json::{json, Value};

use super::process::{gater_store, NodeSetup, RunningNode};
use super::{events, LATENCY_MAX_US};

/// Events loaded before each run.
pub const EVENTS: u64 = 400_000;
/// Streams they are spread over; every other one is deleted.
pub const STREAMS: u64 = 8;
/// Events per loading append.
const LOAD_BATCH: usize = 1000;
/// How often the appender looks whether the scavenge still runs.
const STATUS_EVERY: Duration = Duration::from_millis(100);

/// Latencies of one half of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Half {
    /// Appends measured.
    pub appends: u64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
}

/// One run's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScavengeRun {
    /// Appends on a quiet store.
    pub idle: Half,
    /// Appends while the scavenge ran.
    pub during: Half,
    /// Events the scavenge removed by the end of the run.
    pub removed_events: u64,
    /// Whether it was done by then.
    pub done: bool,
}

impl ScavengeRun {
    /// p99 during ÷ p99 idle.
    pub fn p99_ratio(&self) -> f64 {
        if self.idle.p99_us == 0 {
            0.0
        } else {
            self.during.p99_us as f64 / self.idle.p99_us as f64
        }
    }
}

/// Appends single events to `stream` until `until` or `keep_on` turns false;
/// returns their latencies.
async fn appends(
    store: &StoreHandle,
    stream: &str,
    until: Instant,
    keep_on: &AtomicBool,
) -> anyhow::Result<Half> {
    let mut h = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_US, 3)?;
    let one = events(1);
    while Instant::now() < until && keep_on.load(Ordering::Relaxed) {
        let started = Instant::now();
        store
            .append(stream, ExpectedVersion::Any, one.clone())
            .await
            .context("an append")?;
        h.saturating_record(started.elapsed().as_micros() as u64);
    }
    Ok(Half {
        appends: h.len(),
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
    })
}

/// One run on a fresh node named `name`, each half `window` long.
pub async fn run(setup: &NodeSetup, name: &str, window: Duration) -> anyhow::Result<ScavengeRun> {
    let node = RunningNode::start(setup, name).await?;
    let gater = node.ready_gater().await?;
    let store = gater_store(&gater).await?;
    let batch = events(LOAD_BATCH);
    let per_stream = EVENTS / STREAMS;
    // Round-robin, so that the events of deleted streams lie all along the log.
    for _ in 0..per_stream.div_ceil(LOAD_BATCH as u64) {
        for s in 0..STREAMS {
            store
                .append(&format!("load-{s}"), ExpectedVersion::Any, batch.clone())
                .await
                .context("loading")?;
        }
    }
    for s in (1..STREAMS).step_by(2) {
        store
            .delete(&format!("load-{s}"), ExpectedVersion::Any, false)
            .await
            .context("deleting")?;
    }
    let always = AtomicBool::new(true);
    let idle = appends(&store, "idle", Instant::now() + window, &always).await?;

    let started = store.scavenge(ScavengeAction::Start).await?;
    ensure!(
        started.phase == ScavengePhase::Running,
        "the scavenge did not start: {started:?}"
    );
    let running = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (store, running) = (store.clone(), running.clone());
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                tokio::time::sleep(STATUS_EVERY).await;
                if let Ok(s) = store.scavenge(ScavengeAction::Status).await {
                    if s.phase != ScavengePhase::Running {
                        running.store(false, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let during = appends(&store, "during", Instant::now() + window, &running).await?;
    running.store(false, Ordering::Relaxed);
    watcher.await.context("the status watcher")?;
    let end = store.scavenge(ScavengeAction::Status).await?;
    drop(node);
    Ok(ScavengeRun {
        idle,
        during,
        removed_events: end.removed_events,
        done: end.phase == ScavengePhase::Done,
    })
}

/// The runs of the scavenge table.
#[derive(Debug, Clone, PartialEq)]
pub struct ScavengeReport {
    /// Every run.
    pub runs: Vec<ScavengeRun>,
}

use super::median_of as median;

impl ScavengeReport {
    /// The markdown table, appended to `out`.
    pub fn markdown(&self, out: &mut String) {
        use std::fmt::Write as _;
        let med = |f: &dyn Fn(&ScavengeRun) -> f64| median(self.runs.iter().map(f).collect());
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Append latency while a scavenge runs, beside idle, on a node of {} events of \
             which half are in deleted streams; single appends through the gater, one at a \
             time, median of {} run(s):",
            super::report::thousands(EVENTS),
            self.runs.len()
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "| appends | measured | p50 µs | p99 µs | p99 ÷ idle |");
        let _ = writeln!(out, "|---|--:|--:|--:|--:|");
        let _ = writeln!(
            out,
            "| idle | {:.0} | {:.0} | {:.0} | 1.00x |",
            med(&|r| r.idle.appends as f64),
            med(&|r| r.idle.p50_us as f64),
            med(&|r| r.idle.p99_us as f64)
        );
        let _ = writeln!(
            out,
            "| during the scavenge | {:.0} | {:.0} | {:.0} | {:.2}x |",
            med(&|r| r.during.appends as f64),
            med(&|r| r.during.p50_us as f64),
            med(&|r| r.during.p99_us as f64),
            med(&|r| r.p99_ratio())
        );
        let done = self.runs.iter().filter(|r| r.done).count();
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "The scavenge removed {:.0} events by the end of the window (median); it was done \
             by then in {done} of {} run(s).",
            med(&|r| r.removed_events as f64),
            self.runs.len()
        );
    }

    /// The runs as JSON.
    pub fn json(&self) -> Value {
        json!({
            "events": EVENTS,
            "runs": self.runs.iter().map(|r| json!({
                "idle": { "appends": r.idle.appends, "p50_us": r.idle.p50_us, "p99_us": r.idle.p99_us },
                "during": { "appends": r.during.appends, "p50_us": r.during.p50_us, "p99_us": r.during.p99_us },
                "p99_ratio": r.p99_ratio(),
                "removed_events": r.removed_events,
                "done": r.done,
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn half(p99_us: u64) -> Half {
        Half {
            appends: 100,
            p50_us: p99_us / 2,
            p99_us,
        }
    }

    #[test]
    fn the_table_gives_the_p99_ratio_of_the_medians_runs() {
        let run = |idle, during, done| ScavengeRun {
            idle: half(idle),
            during: half(during),
            removed_events: 200_000,
            done,
        };
        let report = ScavengeReport {
            runs: vec![
                run(1000, 1500, false),
                run(1000, 3000, true),
                run(2000, 2000, false),
            ],
        };
        let mut md = String::new();
        report.markdown(&mut md);
        assert!(md.contains("| idle | 100 | 500 | 1000 | 1.00x |"), "{md}");
        assert!(
            md.contains("| during the scavenge | 100 | 1000 | 2000 | 1.50x |"),
            "{md}"
        );
        assert!(md.contains("done by then in 1 of 3 run(s)"), "{md}");
        assert_eq!(report.json()["runs"][1]["p99_ratio"], 3.0);
    }
}
