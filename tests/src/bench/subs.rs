//! The subscription workloads, through the gater a `--dev` node embeds with the
//! client library's [`Subscriber`] (subscriptions have no other client):
//!
//! ```text
//! S1  catch-up: subscribe to `$all` from the beginning of a loaded log of N events
//!     and receive all N with `next_batch`; events/s from subscribe to the N-th event
//! S2  live: a paced writer appends single events at a fixed rate while 1 (or 10)
//!     subscriptions to `$all` receive them; latency from the start of each append to
//!     its delivery, for every subscription
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use hdrhistogram::Histogram;
use reckon_gater::subscription::SubscribeOptions;
use reckon_gater::types::{ExpectedVersion, SubscriptionType};
use reckon_gater::{StoreHandle, Subscriber};

use super::process::{gater_store, NodeSetup, RunningNode};
use super::workloads::LoadedNode;
use super::{event_with, histogram, stamp_of, stamped_payload, RunSample, Timing, Window};

/// What every bench subscription selects: the whole store.
const SELECTOR: &str = "$all";
/// The consumer name of every bench subscriber.
const CONSUMER: &str = "bench";
/// Longest S1 may take per event before it gives up: 100 µs (10,000 events/s) ...
const S1_SLOWEST_PER_EVENT: Duration = Duration::from_micros(100);
/// ... plus this.
const S1_SLACK: Duration = Duration::from_secs(10);
/// Single-event appends per second S2's writer issues.
pub const S2_RATE: u32 = 5_000;
/// Subscriptions in S2's two rows.
pub const S2_SUBSCRIPTIONS: [usize; 2] = [1, 10];
/// Streams S2's writer spreads its appends over, round robin.
pub const S2_STREAMS: u64 = 16;
/// Appends S2's writer lets be in flight at once; a tick finding this many is skipped
/// (and the achieved rate shows it).
const S2_IN_FLIGHT_MAX: u64 = 2_000;
/// How long S2 waits, after its writer stopped, for the last appends to be answered
/// and for every subscription to receive every event.
const S2_DRAIN: Duration = Duration::from_secs(30);

fn us_between(earlier: Instant, later: Instant) -> u64 {
    u64::try_from(later.saturating_duration_since(earlier).as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// One S1 run on `log`'s embedded gater: a new subscription `name` to `$all` from the
/// beginning, received with `next_batch` until every loaded event came, in order;
/// then the subscription is removed. The window is the time from `subscribe` to the
/// last event; latency is per `next_batch`.
pub async fn catch_up_run(log: &LoadedNode, name: &str) -> anyhow::Result<RunSample> {
    let total = log.load.events;
    let store = gater_store(&log.node().ready_gater().await?).await?;
    let limit = S1_SLACK + S1_SLOWEST_PER_EVENT * u32::try_from(total).unwrap_or(u32::MAX);
    let started = Instant::now();
    let info = store
        .subscribe(
            SubscriptionType::Stream,
            SELECTOR,
            name,
            SubscribeOptions::default(),
        )
        .await
        .with_context(|| format!("subscribing {name} to {SELECTOR}"))?;
    let mut sub = store.subscriber(&info.key, CONSUMER);
    let mut latency_us = histogram();
    let mut received = 0u64;
    let deadline = started + limit;
    while received < total {
        let asked = Instant::now();
        let batch = tokio::time::timeout_at(deadline.into(), sub.next_batch())
            .await
            .map_err(|_| {
                anyhow!(
                    "S1 received {received} of {total} events in {limit:?} (slower than \
                     {} events/s); gave up",
                    1_000_000 / S1_SLOWEST_PER_EVENT.as_micros().max(1)
                )
            })?
            .with_context(|| format!("next_batch of {name} after {received} events"))?;
        let done = Instant::now();
        if let (Some(first), Some(last)) = (batch.first(), batch.last()) {
            let n = batch.len() as u64;
            ensure!(
                first.position == received && last.position + 1 == received + n,
                "S1 expected positions from {received}, got {n} events at {}..={}",
                first.position,
                last.position
            );
        }
        received += batch.len() as u64;
        latency_us.saturating_record(us_between(asked, done));
    }
    let took = started.elapsed();
    store
        .unsubscribe(&info.key)
        .await
        .with_context(|| format!("removing subscription {name}"))?;
    ensure!(
        received == total,
        "S1 received {received} events from a log of {total}"
    );
    Ok(RunSample {
        events: received,
        window: took,
        latency_us,
    })
}

/// Sets its flag when dropped: stops the paced writer if the run ends early.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Aborts its tasks when dropped.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<anyhow::Result<Histogram<u64>>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// What S2's writer shares with the appends it spawns.
#[derive(Default)]
struct Appends {
    /// Appends issued and not yet answered.
    in_flight: AtomicU64,
    /// Appends answered with success.
    acked: AtomicU64,
    /// Of those, appends started inside the window.
    acked_in_window: AtomicU64,
    /// Ticks skipped because too many appends were in flight.
    skipped: AtomicU64,
    /// The first failure.
    failed: Mutex<Option<String>>,
    /// Set to stop the writer early.
    stop: Arc<AtomicBool>,
}

/// S2's writer, on a blocking thread: issues one single-event append every
/// `1 / rate` s (on schedule: a late tick is issued at once), each as a task on
/// `runtime`, until the window closes. Each event's data carries the instant its
/// append started, in µs since `epoch`.
fn pace(
    runtime: tokio::runtime::Handle,
    store: StoreHandle,
    appends: Arc<Appends>,
    rate: u32,
    epoch: Instant,
    window: Window,
) {
    let period_ns = 1_000_000_000 / u64::from(rate.max(1));
    let begun = Instant::now();
    for i in 0u64.. {
        let due = begun + Duration::from_nanos(i * period_ns);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if window.over(Instant::now()) || appends.stop.load(Ordering::Relaxed) {
            return;
        }
        if appends.in_flight.load(Ordering::Relaxed) >= S2_IN_FLIGHT_MAX {
            appends.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        appends.in_flight.fetch_add(1, Ordering::Relaxed);
        let (store, appends) = (store.clone(), appends.clone());
        let stream = format!("s2-{}", i % S2_STREAMS);
        runtime.spawn(async move {
            let sent = Instant::now();
            let event = event_with(stamped_payload(us_between(epoch, sent)));
            match store
                .append(&stream, ExpectedVersion::Any, vec![event])
                .await
            {
                Ok(_) => {
                    appends.acked.fetch_add(1, Ordering::Relaxed);
                    if window.counts(sent) {
                        appends.acked_in_window.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    let mut failed = appends.failed.lock().unwrap_or_else(|p| p.into_inner());
                    failed.get_or_insert_with(|| format!("append to {stream}: {e}"));
                }
            }
            appends.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// One S2 subscription's receiver: every event of the log in order, each event's
/// delivery latency recorded when its append started inside the window; ends when it
/// has received `target` events (unknown, `u64::MAX`, until the writer is done).
async fn receive(
    mut sub: Subscriber,
    epoch: Instant,
    window: Window,
    mut target: tokio::sync::watch::Receiver<u64>,
) -> anyhow::Result<Histogram<u64>> {
    let mut latency_us = histogram();
    let mut received = 0u64;
    loop {
        if received >= *target.borrow_and_update() {
            return Ok(latency_us);
        }
        // Dropping an unfinished poll loses nothing: the subscriber's position only
        // moves when a batch is returned.
        let batch = tokio::select! {
            batch = sub.next_batch() => batch.with_context(|| {
                format!("next_batch of {} after {received} events", sub.key())
            })?,
            changed = target.changed() => {
                changed.map_err(|_| anyhow!("the S2 run ended early"))?;
                continue;
            }
        };
        let now_us = us_between(epoch, Instant::now());
        for e in &batch {
            ensure!(
                e.position == received,
                "S2 subscription {} expected position {received}, got {}",
                sub.key(),
                e.position
            );
            received += 1;
            let sent_us = stamp_of(&e.data)
                .with_context(|| format!("event at {} carries no send stamp", e.position))?;
            if window.counts(epoch + Duration::from_micros(sent_us)) {
                latency_us.saturating_record(now_us.saturating_sub(sent_us).max(1));
            }
        }
    }
}

/// One S2 run on a fresh node, through its embedded gater: `subscriptions`
/// subscriptions to `$all` (each with a client and connection of its own) receive
/// while a paced writer (one more client) appends single events at `rate` per second
/// over [`S2_STREAMS`] streams for the warm-up and the window. Events/s are the
/// appends started in the window and acknowledged; latency is from the start of an
/// append (in the window) to its delivery, for every subscription.
pub async fn live_run(
    setup: &NodeSetup,
    name: &str,
    subscriptions: usize,
    rate: u32,
    timing: Timing,
) -> anyhow::Result<RunSample> {
    let node = RunningNode::start(setup, name).await?;
    let addr = node.ready_gater().await?;
    let writer = gater_store(&addr).await?;
    let (target_tx, target_rx) = tokio::sync::watch::channel(u64::MAX);
    let mut subscribers = Vec::with_capacity(subscriptions);
    for i in 0..subscriptions {
        let store = gater_store(&addr).await?;
        let info = store
            .subscribe(
                SubscriptionType::Stream,
                SELECTOR,
                &format!("s2-{i}"),
                SubscribeOptions::default(),
            )
            .await
            .with_context(|| format!("subscribing s2-{i} to {SELECTOR}"))?;
        subscribers.push(store.subscriber(&info.key, CONSUMER));
    }
    let epoch = Instant::now();
    let window = Window::begin(timing);
    let receivers = AbortOnDrop(
        subscribers
            .into_iter()
            .map(|sub| tokio::spawn(receive(sub, epoch, window, target_rx.clone())))
            .collect(),
    );
    let appends = Arc::new(Appends::default());
    let _stop = StopOnDrop(appends.stop.clone());
    let runtime = tokio::runtime::Handle::current();
    let shared = appends.clone();
    tokio::task::spawn_blocking(move || pace(runtime, writer, shared, rate, epoch, window))
        .await
        .context("S2 writer failed")?;

    let drained = Instant::now() + S2_DRAIN;
    while appends.in_flight.load(Ordering::Relaxed) > 0 {
        if Instant::now() >= drained {
            bail!(
                "{} S2 appends still unanswered {S2_DRAIN:?} after the window",
                appends.in_flight.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    if let Some(e) = appends
        .failed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        bail!("S2 writer: {e}");
    }
    let total = appends.acked.load(Ordering::Relaxed);
    let skipped = appends.skipped.load(Ordering::Relaxed);
    if skipped > 0 {
        eprintln!(
            "[{name}] the writer skipped {skipped} ticks: {S2_IN_FLIGHT_MAX} appends were \
             in flight (the node did not keep up with {rate} appends/s)"
        );
    }
    let _ = target_tx.send(total);
    let mut latency_us = histogram();
    let mut receivers = receivers;
    for task in &mut receivers.0 {
        let h = tokio::time::timeout_at(drained.into(), task)
            .await
            .map_err(|_| {
                anyhow!(
                    "S2 subscriptions did not receive all {total} events within \
                     {S2_DRAIN:?} after the window"
                )
            })?
            .context("S2 subscriber task failed")??;
        latency_us
            .add(&h)
            .map_err(|e| anyhow!("merging latency histograms: {e:?}"))?;
    }
    drop(node);
    Ok(RunSample {
        events: appends.acked_in_window.load(Ordering::Relaxed),
        window: window.len,
        latency_us,
    })
}
