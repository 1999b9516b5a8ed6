//! The processes and connections every workload uses: a fresh `reckon-node --dev`
//! ([`RunningNode`]), the address it is reached at ([`Endpoint`]) and one client
//! connection, straight or through a gater ([`Conn`]). The workloads
//! ([`super::workloads`]) and the cluster ([`super::cluster`]) both stand on it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use reckon_gater::types::{AppendResult, EventRecord, ExpectedVersion, NewEvent};
use reckon_gater::{Client, ClientError, StoreHandle};
use reckon_tests::NodeProc;

use super::Via;

/// The store `--dev` serves.
pub const STORE: &str = "default";
/// Deadline of every request the bench makes, in seconds.
pub const REQUEST_DEADLINE_SECS: u64 = 30;
/// How long a fresh node may take to elect itself and answer a linearizable read.
pub const LEADER_WAIT: Duration = Duration::from_secs(20);
/// Pause between two probes while waiting for the leader.
const LEADER_PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// Log filter given to the node unless `RUST_LOG` is set: warnings and errors only,
/// so that its logs do not drown the bench's progress.
pub const NODE_LOG_FILTER: &str = "warn";
/// What the `--dev` node prints before its embedded gater's address.
const DEV_GATER_LINE: &str = "embedded gater listening on ";
/// What the `--dev` node prints before its KurrentDB front door's address.
const DEV_KURRENT_LINE: &str = "KurrentDB front door listening on ";
/// How long after its ready line a `--dev` node may take to print its gater's address.
const DEV_GATER_LINE_WAIT: Duration = Duration::from_secs(10);

/// Where nodes come from and where their data goes.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    /// The `reckon-node` binary.
    pub bin: PathBuf,
    /// Flags after `--dev --listen 127.0.0.1:0 --data-dir DIR`.
    pub args: Vec<String>,
    /// Whether those flags give the node an embedded gater on a port of its own.
    pub embedded_gater: bool,
    /// Whether they give its KurrentDB front door a port of its own too.
    pub embedded_kurrent: bool,
    /// The `reckon-gater` binary, for clusters.
    pub gater_bin: PathBuf,
    /// The directory under which each node gets a fresh data directory.
    pub parent: PathBuf,
}

impl NodeSetup {
    /// Creates `<parent>/<name>`, which must not exist yet: every node the bench
    /// starts gets a fresh data directory.
    pub fn fresh_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.parent.join(name);
        ensure!(
            !dir.exists(),
            "{} already exists; the bench only starts nodes on fresh directories",
            dir.display()
        );
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }
}

/// Spawns a process that prints a line with ` listening on ADDR` when ready (a node or
/// a gater), on the blocking pool; an error instead of a panic when it never does.
pub async fn spawn_ready(cmd: Command, dir: &Path, what: &str) -> anyhow::Result<NodeProc> {
    let dir = dir.to_path_buf();
    // NodeProc::spawn blocks until the ready line, and panics when there is none.
    tokio::task::spawn_blocking(move || NodeProc::spawn(cmd, &dir))
        .await
        .map_err(|e| anyhow!("starting {what} failed: {}", panic_message(e)))
}

/// A `reckon-node --dev` process on a fresh data directory. Dropping it kills the
/// process and then removes the directory.
pub struct RunningNode {
    node: Option<NodeProc>,
    dir: PathBuf,
    gater: Option<String>,
    kurrent: Option<String>,
}

impl RunningNode {
    /// Starts a node on `<parent>/<name>` (which must not exist yet) and waits until
    /// its store has a leader.
    pub async fn start(setup: &NodeSetup, name: &str) -> anyhow::Result<RunningNode> {
        let dir = setup.fresh_dir(name)?;
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
        let node = match spawn_ready(cmd, &dir, &setup.bin.display().to_string()).await {
            Ok(node) => node,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let mut running = RunningNode {
            node: Some(node),
            dir,
            gater: None,
            kurrent: None,
        };
        if setup.embedded_gater {
            let node = running.node.as_ref().context("node gone")?;
            let (gater, kurrent) = dev_gater_addr(node, setup.embedded_kurrent).await?;
            running.gater = Some(gater);
            running.kurrent = kurrent;
        }
        let probe = Conn::connect(&Endpoint::Worker(running.addr().to_string())).await?;
        wait_ready(&probe, "the node").await?;
        Ok(running)
    }

    /// The node's worker address.
    pub fn addr(&self) -> &str {
        self.node.as_ref().map_or("", |n| n.addr.as_str())
    }

    /// Where clients reach the node `via` the worker service or its embedded gater;
    /// waits until the gater serves the store.
    pub async fn endpoint(&self, via: Via) -> anyhow::Result<Endpoint> {
        match via {
            Via::Node => Ok(Endpoint::Worker(self.addr().to_string())),
            Via::Gater => Ok(Endpoint::Gater(self.ready_gater().await?)),
            Via::Kurrent => {
                let gater = self.ready_gater().await?;
                let grpc = self.kurrent.clone().context(
                    "this reckon-node has no KurrentDB front door on a port of its own \
                     (no --dev-kurrent-listen flag)",
                )?;
                Ok(Endpoint::Kurrent { grpc, gater })
            }
            Via::Cluster => bail!("a single node is not a cluster"),
            Via::Standalone | Via::Secure => {
                bail!("a --dev node has no standalone gater in front of it")
            }
        }
    }

    /// The address of the node's embedded gater, once it serves the store.
    pub async fn ready_gater(&self) -> anyhow::Result<String> {
        let ep = Endpoint::Gater(self.gater_addr()?.to_string());
        wait_ready(&Conn::connect(&ep).await?, "the embedded gater").await?;
        Ok(self.gater_addr()?.to_string())
    }

    /// The address of the node's embedded gater.
    pub fn gater_addr(&self) -> anyhow::Result<&str> {
        self.gater.as_deref().context(
            "this reckon-node has no embedded gater on a port of its own \
             (no --dev-gater-listen flag)",
        )
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

/// The ready lines of a `--dev` node after its first: its embedded gater's address,
/// and its KurrentDB front door's when `kurrent` (it has one on a port of its own).
async fn dev_gater_addr(
    node: &NodeProc,
    kurrent: bool,
) -> anyhow::Result<(String, Option<String>)> {
    let deadline = Instant::now() + DEV_GATER_LINE_WAIT;
    let (mut gater, mut grpc) = (None, None);
    loop {
        for line in node.more_lines() {
            if let Some(rest) = line.split(DEV_GATER_LINE).nth(1) {
                gater = Some(rest.trim().to_string());
            }
            if let Some(rest) = line.split(DEV_KURRENT_LINE).nth(1) {
                grpc = Some(rest.trim().to_string());
            }
        }
        if let Some(g) = &gater {
            if grpc.is_some() || !kurrent {
                return Ok((g.clone(), grpc));
            }
        }
        if Instant::now() >= deadline {
            bail!("the --dev node never printed its embedded gater's (and KurrentDB front door's) address");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Where a client connects.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// A node's worker service.
    Worker(String),
    /// A gater, with the client library.
    Gater(String),
    /// A gater with TLS and tokens, with the client library presenting `credentials`.
    SecureGater {
        /// The gater's address.
        addr: String,
        /// The CA to trust and the token to present.
        credentials: super::secure::Credentials,
    },
    /// A gater's KurrentDB front door, for appends with the bench's KurrentDB client;
    /// the gater itself, with the client library, for everything else (probes).
    Kurrent {
        /// The front door's address.
        grpc: String,
        /// The gater's.
        gater: String,
    },
}

/// One client connection: straight to a node's worker service, or a client-library
/// [`Client`] holding one connection to a gater; either way a [`StoreHandle`], so
/// both ask for the same things and get the same answers (event ids made by the
/// client library, the bench's deadline). The gater path adds the gater's hop and
/// its failover.
#[derive(Clone)]
pub struct Conn {
    store: StoreHandle,
    /// Appends go through this KurrentDB connection instead, when set.
    kurrent: Option<reckon_tests::kurrent::KurrentConn>,
    /// `" through the gater"` or nothing, for error messages.
    via: &'static str,
}

/// A store error or not, and whether a retry may change it.
fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Store(s) => s.is_retryable(),
        ClientError::Transport(_) | ClientError::Timeout(_) => true,
        _ => false,
    }
}

impl Conn {
    /// Opens a new connection to `endpoint`.
    pub async fn connect(endpoint: &Endpoint) -> anyhow::Result<Conn> {
        match endpoint {
            Endpoint::Worker(addr) => {
                let worker = reckon_gater::worker::connect(addr)
                    .await
                    .with_context(|| format!("connecting to reckon-node at {addr}"))?;
                let deadline = Duration::from_secs(REQUEST_DEADLINE_SECS);
                Ok(Conn {
                    store: StoreHandle::direct(worker, STORE, deadline),
                    kurrent: None,
                    via: "",
                })
            }
            Endpoint::Gater(addr) => Ok(Conn {
                store: gater_store(addr).await?,
                kurrent: None,
                via: " through the gater",
            }),
            Endpoint::Kurrent { grpc, gater } => Ok(Conn {
                store: gater_store(gater).await?,
                kurrent: Some(reckon_tests::kurrent::KurrentConn::connect(grpc).await?),
                via: " through the KurrentDB front door",
            }),
            Endpoint::SecureGater { addr, credentials } => {
                let client = Client::builder(&[addr.as_str()])
                    .tls(credentials.tls.clone())
                    .token(credentials.token.secret())
                    .timeout(Duration::from_secs(REQUEST_DEADLINE_SECS))
                    .connect()
                    .await
                    .with_context(|| {
                        format!("connecting to reckon-gater at {addr} with TLS and a token")
                    })?;
                Ok(Conn {
                    store: client.store(STORE),
                    kurrent: None,
                    via: " through the secure gater",
                })
            }
        }
    }

    /// Appends `events` to `stream` with `ExpectedVersion::Any`.
    pub async fn append(
        &self,
        stream: &str,
        events: Vec<NewEvent>,
    ) -> anyhow::Result<AppendResult> {
        if let Some(k) = &self.kurrent {
            return k.append(stream, &events).await;
        }
        self.store
            .append(stream, ExpectedVersion::Any, events)
            .await
            .map_err(|e| anyhow!("append to {stream}{}: {e}", self.via))
    }

    /// Linearizable pages of `count` events of the global log forward from `from` to
    /// its end, each asked for while the one before is handed over
    /// ([`StoreHandle::read_all_pages`]).
    pub fn read_all_pages(
        &self,
        from: u64,
        count: u32,
    ) -> impl futures::Stream<Item = anyhow::Result<Vec<EventRecord>>> + Send + 'static {
        use futures::StreamExt;
        let via = self.via;
        self.store
            .read_all_pages(from, count)
            .map(move |page| page.map_err(|e| anyhow!("read_all_pages{via}: {e}")))
    }

    /// A linearizable read that needs an elected leader: `Ok(Err(why))` when a retry
    /// may succeed.
    async fn probe(&self) -> anyhow::Result<Result<(), String>> {
        match self.store.get_version("bench-probe").await {
            Ok(_) => Ok(Ok(())),
            Err(e) if retryable(&e) => Ok(Err(e.to_string())),
            Err(e) => bail!("refused a read while starting: {e}"),
        }
    }
}

/// A client-library handle on the bench store through the gater at `addr`, over a
/// connection of its own, with the bench's deadline.
pub async fn gater_store(addr: &str) -> anyhow::Result<StoreHandle> {
    let client = Client::connect(&[addr])
        .await
        .with_context(|| format!("connecting to reckon-gater at {addr}"))?
        .with_timeout(Duration::from_secs(REQUEST_DEADLINE_SECS));
    Ok(client.store(STORE))
}

/// Waits until a linearizable read through `conn` succeeds, which needs an elected
/// leader (and, through a gater, a registered worker).
pub async fn wait_ready(conn: &Conn, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + LEADER_WAIT;
    loop {
        let last = match conn.probe().await.with_context(|| what.to_string())? {
            Ok(()) => return Ok(()),
            Err(last) => last,
        };
        if Instant::now() >= deadline {
            bail!("{what} had no leader after {LEADER_WAIT:?}; last answer: {last}");
        }
        tokio::time::sleep(LEADER_PROBE_INTERVAL).await;
    }
}
