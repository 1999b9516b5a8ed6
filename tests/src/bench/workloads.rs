//! W1–W4 against a real `reckon-node` process over TCP on loopback, one tarpc
//! connection per client, every client on its own stream.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use reckon_gater::types::{Direction, ExpectedVersion, NewEvent, ReadConsistency};
use reckon_gater::worker::WorkerClient;
use reckon_tests::NodeProc;

use super::{events, RunSample, Tally, Timing, Window};

/// The store `--dev` serves.
pub const STORE: &str = "default";
/// Deadline of every request the bench makes, in seconds.
pub const REQUEST_DEADLINE_SECS: u64 = 30;
/// How long a fresh node may take to elect itself and answer a linearizable read.
pub const LEADER_WAIT: Duration = Duration::from_secs(20);
/// Pause between two probes while waiting for the leader.
const LEADER_PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// Events per `read_all` page in W4.
pub const PAGE_EVENTS: u32 = 1000;
/// Events per append when loading W4's log (not timed).
pub const LOAD_BATCH_EVENTS: u64 = 1000;
/// Concurrent loaders filling W4's log, each with its own connection and stream.
pub const LOADERS: usize = 4;
/// Log filter given to the node unless `RUST_LOG` is set: warnings and errors only,
/// so that its logs do not drown the bench's progress.
const NODE_LOG_FILTER: &str = "warn";

/// Where nodes come from and where their data goes.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    /// The `reckon-node` binary.
    pub bin: PathBuf,
    /// Flags after `--dev --listen 127.0.0.1:0 --data-dir DIR`.
    pub args: Vec<String>,
    /// The directory under which each node gets a fresh data directory.
    pub parent: PathBuf,
}

/// A `reckon-node --dev` process on a fresh data directory. Dropping it kills the
/// process and then removes the directory.
pub struct RunningNode {
    node: Option<NodeProc>,
    dir: PathBuf,
}

impl RunningNode {
    /// Starts a node on `<parent>/<name>` (which must not exist yet) and waits until
    /// its store has a leader.
    pub async fn start(setup: &NodeSetup, name: &str) -> anyhow::Result<RunningNode> {
        let dir = setup.parent.join(name);
        ensure!(
            !dir.exists(),
            "{} already exists; the bench only starts nodes on fresh directories",
            dir.display()
        );
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut cmd = Command::new(&setup.bin);
        cmd.arg("--dev")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&dir)
            .args(&setup.args);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", NODE_LOG_FILTER);
        }
        let spawn_dir = dir.clone();
        // NodeProc::spawn blocks until the ready line, and panics when there is none.
        let spawned = tokio::task::spawn_blocking(move || NodeProc::spawn(cmd, &spawn_dir)).await;
        let node = match spawned {
            Ok(node) => node,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                bail!(
                    "starting {} failed: {}",
                    setup.bin.display(),
                    panic_message(e)
                );
            }
        };
        let running = RunningNode {
            node: Some(node),
            dir,
        };
        let probe = running.client().await?;
        wait_for_leader(&probe).await?;
        Ok(running)
    }

    /// The node's worker address.
    pub fn addr(&self) -> &str {
        self.node.as_ref().map_or("", |n| n.addr.as_str())
    }

    /// A new connection to the node.
    pub async fn client(&self) -> anyhow::Result<WorkerClient> {
        reckon_gater::worker::connect(self.addr())
            .await
            .with_context(|| format!("connecting to reckon-node at {}", self.addr()))
    }

    /// The node's data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        // Kill first: the node must not hold the files we remove.
        drop(self.node.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "it panicked".to_string()),
        Err(e) => e.to_string(),
    }
}

fn ctx() -> tarpc::context::Context {
    reckon_tests::ctx(REQUEST_DEADLINE_SECS)
}

/// Waits until a linearizable read succeeds, which needs an elected leader.
async fn wait_for_leader(client: &WorkerClient) -> anyhow::Result<()> {
    let deadline = Instant::now() + LEADER_WAIT;
    loop {
        let last = match client
            .get_version(
                ctx(),
                STORE.into(),
                "bench-probe".into(),
                ReadConsistency::Linearizable,
            )
            .await
        {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) if e.is_retryable() => e.to_string(),
            Ok(Err(e)) => bail!("the node refused a read while starting: {e}"),
            Err(e) => format!("rpc: {e}"),
        };
        if Instant::now() >= deadline {
            bail!("the node had no leader after {LEADER_WAIT:?}; last answer: {last}");
        }
        tokio::time::sleep(LEADER_PROBE_INTERVAL).await;
    }
}

/// Appends `batch` to `stream` with `ExpectedVersion::Any`, one request at a time,
/// until the window closes.
async fn writer(
    client: WorkerClient,
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
        let r = client
            .append(
                ctx(),
                STORE.into(),
                stream.clone(),
                ExpectedVersion::Any,
                batch.clone(),
            )
            .await
            .map_err(|e| anyhow!("append to {stream}: rpc: {e}"))?
            .map_err(|e| anyhow!("append to {stream}: {e}"))?;
        let done = Instant::now();
        written += n;
        ensure!(
            r.version + 1 == written && r.last_position + 1 - r.first_position == n,
            "append to {stream} answered {r:?} after {written} events in batches of {n}"
        );
        tally.record(&window, started, done, n);
    }
}

/// One run of W1, W2 or W3 on a fresh node: `writers` clients, each appending
/// `batch` events per request to its own stream.
pub async fn write_run(
    setup: &NodeSetup,
    name: &str,
    writers: usize,
    batch: usize,
    timing: Timing,
) -> anyhow::Result<RunSample> {
    let node = RunningNode::start(setup, name).await?;
    let mut clients = Vec::with_capacity(writers);
    for _ in 0..writers {
        clients.push(node.client().await?);
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
    drop(node);
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
    for i in 0..LOADERS {
        let client = node.client().await?;
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
                    .append(
                        ctx(),
                        STORE.into(),
                        stream.clone(),
                        ExpectedVersion::Any,
                        full[..n].to_vec(),
                    )
                    .await
                    .map_err(|e| anyhow!("loading {stream}: rpc: {e}"))?
                    .map_err(|e| anyhow!("loading {stream}: {e}"))?;
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

/// W4's node, loaded once and read by every run.
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

    /// One W4 run: one client reads the global log forward from position 0 in pages
    /// of [`PAGE_EVENTS`] (linearizable, as a client gets by default), starting over at
    /// 0 when it reaches the end, for the warm-up and the window. Latency is per page.
    /// Fails if the log is not exactly the loaded events at positions 0, 1, 2, ...
    pub async fn read_run(&self, timing: Timing) -> anyhow::Result<RunSample> {
        let client = self.node.client().await?;
        let total = self.load.events;
        let mut tally = Tally::default();
        let window = Window::begin(timing);
        let mut from = 0u64;
        loop {
            let started = Instant::now();
            if window.over(started) {
                return Ok(tally.finish(&window));
            }
            let page = client
                .read_all(
                    ctx(),
                    STORE.into(),
                    from,
                    PAGE_EVENTS,
                    Direction::Forward,
                    ReadConsistency::Linearizable,
                )
                .await
                .map_err(|e| anyhow!("read_all from {from}: rpc: {e}"))?
                .map_err(|e| anyhow!("read_all from {from}: {e}"))?;
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
            from += n;
            if n < u64::from(PAGE_EVENTS) {
                ensure!(
                    from == total,
                    "the global log ended at {from} events, but {total} were loaded"
                );
                from = 0;
            }
        }
    }
}
