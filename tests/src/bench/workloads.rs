//! W1–W4 against real processes over TCP on loopback, one connection per client,
//! every client on its own stream: straight to a `reckon-node` over its worker
//! service, through the gater a `--dev` node embeds, through the gater of a
//! 3-node cluster ([`super::cluster`]), or through a standalone gater in front of one
//! node, plain or with TLS and a token ([`super::secure`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use reckon_gater::types::NewEvent;

use super::cluster::BenchCluster;
use super::process::{Conn, Endpoint, NodeSetup, RunningNode};
use super::secure::FrontedNode;
use super::{events, RunSample, Tally, Timing, Via, Window};

/// Events per `read_all` page in W4.
pub const PAGE_EVENTS: u32 = 1000;
/// Events per append when loading W4's log (not timed).
pub const LOAD_BATCH_EVENTS: u64 = 1000;
/// Concurrent loaders filling W4's log, each with its own connection and stream.
pub const LOADERS: usize = 4;

/// Appends `batch` to `stream` with `ExpectedVersion::Any`, one request at a time,
/// until the window closes.
async fn writer(
    client: Conn,
    stream: String,
    batch: Vec<NewEvent>,
    window: Window,
) -> anyhow::Result<Tally> {
    let n = batch.len() as u64;
    let mut tally = Tally::default();
    let mut written = 0u64;
    loop {
        let started = Instant::now();
        if window.over(started) {
            return Ok(tally);
        }
        let r = client.append(&stream, batch.clone()).await?;
        let done = Instant::now();
        written += n;
        ensure!(
            r.version + 1 == written && r.last_position + 1 - r.first_position == n,
            "append to {stream} answered {r:?} after {written} events in batches of {n}"
        );
        tally.record(&window, started, done, n);
    }
}

/// What a write run runs against; dropping it kills its processes and removes its
/// data.
enum Deployment {
    Single { _node: RunningNode },
    Cluster { _cluster: BenchCluster },
    Fronted { _fronted: FrontedNode },
}

/// One run of W1, W2 or W3 on a fresh node (or fresh cluster), reached `via` the
/// worker service or a gater: `writers` clients, each appending `batch` events per
/// request to its own stream over a connection of its own.
pub async fn write_run(
    setup: &NodeSetup,
    name: &str,
    via: Via,
    writers: usize,
    batch: usize,
    timing: Timing,
) -> anyhow::Result<RunSample> {
    let (deployment, endpoint) = match via {
        Via::Node | Via::Gater | Via::Kurrent => {
            let node = RunningNode::start(setup, name).await?;
            let ep = node.endpoint(via).await?;
            (Deployment::Single { _node: node }, ep)
        }
        Via::Cluster => {
            let cluster = BenchCluster::start(setup, name).await?;
            let ep = Endpoint::Gater(cluster.gater_addr().to_string());
            (Deployment::Cluster { _cluster: cluster }, ep)
        }
        Via::Standalone | Via::Secure => {
            let fronted = FrontedNode::start(setup, name, via).await?;
            let ep = fronted.endpoint().clone();
            (Deployment::Fronted { _fronted: fronted }, ep)
        }
    };
    let mut clients = Vec::with_capacity(writers);
    for _ in 0..writers {
        clients.push(Conn::connect(&endpoint).await?);
    }
    let events = events(batch);
    let window = Window::begin(timing);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| tokio::spawn(writer(c, format!("bench-{i}"), events.clone(), window)))
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.context("writer task failed")??;
        total.merge(&tally)?;
    }
    drop(deployment);
    Ok(total.finish(&window))
}

/// What loading W4's log took.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Events appended.
    pub events: u64,
    /// Wall time.
    pub took: Duration,
}

/// Fills the node's log with `total` events in appends of [`LOAD_BATCH_EVENTS`], from
/// [`LOADERS`] clients on their own streams.
async fn load(node: &RunningNode, total: u64) -> anyhow::Result<Load> {
    let started = Instant::now();
    let next_batch = Arc::new(AtomicU64::new(0));
    let batches = total.div_ceil(LOAD_BATCH_EVENTS);
    let full = events(LOAD_BATCH_EVENTS as usize);
    let mut tasks = Vec::with_capacity(LOADERS);
    let endpoint = node.endpoint(Via::Node).await?;
    for i in 0..LOADERS {
        let client = Conn::connect(&endpoint).await?;
        let next_batch = next_batch.clone();
        let full = full.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("load-{i}");
            loop {
                let k = next_batch.fetch_add(1, Ordering::Relaxed);
                if k >= batches {
                    return anyhow::Ok(());
                }
                let n = (total - k * LOAD_BATCH_EVENTS).min(LOAD_BATCH_EVENTS) as usize;
                client
                    .append(&stream, full[..n].to_vec())
                    .await
                    .context("loading the log")?;
            }
        }));
    }
    for task in tasks {
        task.await.context("loader task failed")??;
    }
    Ok(Load {
        events: total,
        took: started.elapsed(),
    })
}

/// A node with a loaded log (W4's, S1's), loaded once and read by every run.
pub struct LoadedNode {
    node: RunningNode,
    /// How the log was filled.
    pub load: Load,
}

impl LoadedNode {
    /// Starts a fresh node and fills its log with `events` events (not timed).
    pub async fn start(setup: &NodeSetup, name: &str, events: u64) -> anyhow::Result<LoadedNode> {
        let node = RunningNode::start(setup, name).await?;
        let load = load(&node, events).await?;
        Ok(LoadedNode { node, load })
    }

    /// The node.
    pub fn node(&self) -> &RunningNode {
        &self.node
    }

    /// Bytes of the files under the node's data directory, each with its path
    /// relative to it, largest first.
    pub fn disk_usage(&self) -> Vec<(String, u64)> {
        let mut files = Vec::new();
        let mut dirs = vec![self.node.dir().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                match entry.metadata() {
                    Ok(m) if m.is_dir() => dirs.push(path),
                    Ok(m) => {
                        let rel = path.strip_prefix(self.node.dir()).unwrap_or(&path);
                        files.push((rel.display().to_string(), m.len()));
                    }
                    Err(_) => {}
                }
            }
        }
        files.sort_by_key(|f| std::cmp::Reverse(f.1));
        files
    }

    /// One W4 run: one client reads the global log `via` the worker service or the
    /// embedded gater, forward from position 0 in pages of [`PAGE_EVENTS`]
    /// (linearizable, as a client gets by default) with the next page asked for
    /// while one is handed over, starting over at 0 when it reaches the end, for the
    /// warm-up and the window. Latency is per page, from the one before (or from the
    /// start of the read) to its arrival. Fails if the log is not exactly the loaded
    /// events at positions 0, 1, 2, ...
    pub async fn read_run(&self, via: Via, timing: Timing) -> anyhow::Result<RunSample> {
        use futures::StreamExt;
        let client = Conn::connect(&self.node.endpoint(via).await?).await?;
        let total = self.load.events;
        let mut tally = Tally::default();
        let window = Window::begin(timing);
        let mut from = 0u64;
        let mut pages = Box::pin(client.read_all_pages(from, PAGE_EVENTS));
        let mut started = Instant::now();
        loop {
            if window.over(started) {
                return Ok(tally.finish(&window));
            }
            // The stream ends after the last page; an empty page is the end too.
            let page = pages.next().await.transpose()?.unwrap_or_default();
            let done = Instant::now();
            let n = page.len() as u64;
            if let (Some(first), Some(last)) = (page.first(), page.last()) {
                ensure!(
                    first.position == from && last.position + 1 == from + n,
                    "read_all from {from} gave {n} events at positions {}..={}",
                    first.position,
                    last.position
                );
            }
            tally.record(&window, started, done, n);
            started = done;
            from += n;
            if n == 0 {
                ensure!(
                    from == total,
                    "the global log ended at {from} events, but {total} were loaded"
                );
                from = 0;
                pages = Box::pin(client.read_all_pages(from, PAGE_EVENTS));
                started = Instant::now();
            }
        }
    }
}
