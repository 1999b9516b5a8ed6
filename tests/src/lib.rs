//! Test support: real `reckon-node` processes on loopback ports chosen by the OS.
//!
//! Every process a test starts is killed when its handle drops, so a failing test
//! leaves nothing behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reckon_gater::request::{StoreRequest, StoreResponse};
use reckon_gater::worker::WorkerClient;

/// How long a process may take to say it is ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The path of a workspace binary, built by `cargo build --workspace --bins` or by
/// `cargo test --workspace`.
pub fn bin(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` (or `cargo test --workspace`) first",
        path.display()
    );
    path
}

/// The environment variables the `reckon` CLI reads, none of which may leak from
/// whoever runs the tests into the command under test.
const RECKON_CLI_ENV: [&str; 5] = [
    "RECKON_GATER",
    "RECKON_TOKEN",
    "RECKON_CA",
    "RECKON_CERT",
    "RECKON_KEY",
];

/// Runs `reckon --gater GATER args...` with only `env` of the CLI's own variables
/// set: its exit code, stdout and stderr.
pub fn reckon_run(gater: &str, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(bin("reckon"));
    for v in RECKON_CLI_ENV {
        cmd.env_remove(v);
    }
    let out = cmd
        .envs(env.iter().copied())
        .arg("--gater")
        .arg(gater)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run reckon");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `reckon --gater GATER args...`, asserts it exited 0, and gives its stdout
/// without the trailing newline.
pub fn reckon_ok(gater: &str, args: &[&str]) -> String {
    let (code, out, err) = reckon_run(gater, &[], args);
    assert_eq!(code, 0, "reckon {args:?} failed: {err}");
    out.trim_end().to_string()
}

/// Removes from `cmd`'s environment every variable whose name starts with `prefix`
/// (`RECKON_NODE_`, `RECKON_GATER_`), so that the settings of whoever runs the tests
/// do not reach the process under test.
pub fn clear_env(cmd: &mut Command, prefix: &str) {
    for (k, _) in std::env::vars() {
        if k.starts_with(prefix) {
            cmd.env_remove(k);
        }
    }
}

/// Sends each line of `out` (a child's stdout) to the returned channel from a thread
/// of its own, until `out` ends or the receiver is dropped.
pub fn forward_lines(out: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits up to [`READY_TIMEOUT`] for a line of `lines` with `marker` in it (a ready
/// line, `... listening on ADDR`); gives what follows the marker, or `None` when no
/// such line came in time or the lines ended.
pub fn after_marker(lines: &mpsc::Receiver<String>, marker: &str) -> Option<String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()?;
        if let Some(rest) = line.split(marker).nth(1) {
            return Some(rest.to_string());
        }
    }
}

/// A running `reckon-node` process.
pub struct NodeProc {
    child: Child,
    /// The worker service address.
    pub addr: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    lines: mpsc::Receiver<String>,
    /// Reads stderr to its end when it is captured ([`NodeProc::spawn_capturing_stderr`]).
    stderr: Option<std::thread::JoinHandle<String>>,
    /// Stderr's lines as they come, when watched ([`NodeProc::spawn_watching_stderr`]).
    stderr_lines: Option<mpsc::Receiver<String>>,
}

/// What a spawned node's stderr goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stderr {
    /// The test's own stderr.
    Inherit,
    /// Read to its end, for after the exit.
    Capture,
    /// Echoed to the test's stderr and sent line by line to a channel.
    Watch,
}

/// Sends SIGTERM to process `pid` and returns at once.
pub fn send_term(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// Waits up to `within` for `child` to exit; its status, or `None` while it still
/// runs.
pub fn exit_within(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `reckon-node --dev` on a free loopback port with `data_dir`, its embedded gater
/// not yet placed.
fn dev_base(data_dir: &Path) -> Command {
    let mut cmd = Command::new(bin("reckon-node"));
    // The KurrentDB front door's default port is fixed too: a free one each.
    cmd.args([
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--dev-kurrent-listen",
        "127.0.0.1:0",
        "--data-dir",
    ])
    .arg(data_dir);
    cmd
}

/// `reckon-node --dev` on free loopback ports (its embedded gater's too) with
/// `data_dir`, to add environment or flags to before [`NodeProc::spawn`].
pub fn dev_command(data_dir: &Path) -> Command {
    let mut cmd = dev_base(data_dir);
    cmd.args(DEV_GATER_ANY_PORT);
    cmd
}

impl NodeProc {
    /// Starts `reckon-node --dev` on a free loopback port with `data_dir`, plus `extra`
    /// flags, and waits until it says it is ready.
    pub fn start_dev(data_dir: &Path, extra: &[&str]) -> NodeProc {
        let mut cmd = dev_base(data_dir);
        cmd.args(extra);
        // The embedded gater's default port is fixed: tests running side by side
        // must each take a free one.
        if !extra.contains(&"--dev-gater-listen") {
            cmd.args(DEV_GATER_ANY_PORT);
        }
        Self::spawn(cmd, data_dir)
    }

    /// Starts a node from a prepared command (stdout is captured to find the ready line).
    pub fn spawn(cmd: Command, data_dir: &Path) -> NodeProc {
        Self::spawn_inner(cmd, data_dir, Stderr::Inherit)
    }

    /// [`spawn`](Self::spawn), with stderr captured instead of shown: read it with
    /// [`stderr_after_exit`](Self::stderr_after_exit).
    pub fn spawn_capturing_stderr(cmd: Command, data_dir: &Path) -> NodeProc {
        Self::spawn_inner(cmd, data_dir, Stderr::Capture)
    }

    /// [`spawn`](Self::spawn), with stderr still shown and also watched line by line:
    /// wait for a line with [`wait_stderr`](Self::wait_stderr).
    pub fn spawn_watching_stderr(cmd: Command, data_dir: &Path) -> NodeProc {
        Self::spawn_inner(cmd, data_dir, Stderr::Watch)
    }

    /// Waits up to `limit` for a line on stderr (since the last one this consumed)
    /// that `matches`, and gives it; panics naming `what` when none came. Only for a
    /// node started with [`spawn_watching_stderr`](Self::spawn_watching_stderr).
    pub fn wait_stderr(
        &self,
        what: &str,
        limit: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        let lines = self
            .stderr_lines
            .as_ref()
            .expect("stderr is watched only by NodeProc::spawn_watching_stderr");
        let deadline = Instant::now() + limit;
        loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if matches(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no line on stderr of the node at {} for {what} within {limit:?}",
                    self.addr
                ),
            }
        }
    }

    fn spawn_inner(mut cmd: Command, data_dir: &Path, mode: Stderr) -> NodeProc {
        clear_env(&mut cmd, "RECKON_NODE_");
        let stderr = match mode {
            Stderr::Inherit => Stdio::inherit(),
            Stderr::Capture | Stderr::Watch => Stdio::piped(),
        };
        cmd.stdout(Stdio::piped()).stderr(stderr);
        let mut child = cmd.spawn().expect("spawn reckon-node");
        let mut stderr_lines = None;
        let stderr = match child.stderr.take() {
            Some(pipe) if mode == Stderr::Watch => {
                let (tx, rx) = mpsc::channel();
                stderr_lines = Some(rx);
                std::thread::spawn(move || {
                    for line in BufReader::new(pipe).lines() {
                        let Ok(line) = line else { break };
                        eprintln!("{line}");
                        // The receiver may be gone; the echo goes on.
                        let _ = tx.send(line);
                    }
                });
                None
            }
            Some(mut pipe) => Some(std::thread::spawn(move || {
                let mut s = String::new();
                let _ = std::io::Read::read_to_string(&mut pipe, &mut s);
                s
            })),
            None => None,
        };
        let rx = forward_lines(child.stdout.take().expect("stdout"));
        let Some(rest) = after_marker(&rx, " listening on ") else {
            let _ = child.kill();
            let status = child.wait().ok();
            panic!("reckon-node did not become ready in {READY_TIMEOUT:?} (exit: {status:?})");
        };
        let addr = rest.split_whitespace().next().expect("addr").to_string();
        NodeProc {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            lines: rx,
            stderr,
            stderr_lines,
        }
    }

    /// Everything the process wrote on stderr, once it has exited (after
    /// [`terminate`](Self::terminate) or [`kill9`](Self::kill9)). Panics when stderr
    /// was not captured.
    pub fn stderr_after_exit(&mut self) -> String {
        let reader = self
            .stderr
            .take()
            .expect("stderr is captured only by NodeProc::spawn_capturing_stderr");
        reader.join().expect("stderr reader")
    }

    /// Connects a worker client.
    pub async fn worker(&self) -> WorkerClient {
        reckon_gater::worker::connect(&self.addr)
            .await
            .expect("connect to node")
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        send_term(self.child.id());
        self.child.wait().expect("wait")
    }

    /// Waits up to `within` for the process to exit; its status, or `None` while it
    /// still runs.
    pub fn exit_within(&mut self, within: Duration) -> Option<ExitStatus> {
        exit_within(&mut self.child, within)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines the node printed on stdout after the ready line, so far.
    pub fn more_lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A batch of one event of `event_type` whose data is `{}`: for tests that need an
/// append to happen, not what it carries.
pub fn one_event(event_type: &str) -> Vec<NewEvent> {
    vec![NewEvent::json(event_type, &serde_json::json!({}))]
}

/// A tarpc context with a deadline `secs` from now.
pub fn ctx(secs: u64) -> tarpc::context::Context {
    let mut c = tarpc::context::current();
    c.deadline = Instant::now() + Duration::from_secs(secs);
    c
}

/// What a start that must fail left behind.
#[derive(Debug)]
pub struct FailedStart {
    /// How the process exited.
    pub status: ExitStatus,
    /// Everything it wrote on stderr.
    pub stderr: String,
}

impl NodeProc {
    /// Starts `reckon-node --dev` as [`start_dev`](Self::start_dev) would, but expects
    /// it to exit on its own within [`READY_TIMEOUT`] without becoming ready: returns
    /// its exit status and stderr. Panics if it prints the ready line or keeps running.
    pub fn start_dev_expect_failure(data_dir: &Path, extra: &[&str]) -> FailedStart {
        let mut cmd = dev_base(data_dir);
        cmd.args(extra);
        clear_env(&mut cmd, "RECKON_NODE_");
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn reckon-node");
        let mut stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
            s
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for reckon-node") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("reckon-node was expected to fail but still runs after {READY_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = out.join().expect("stdout reader");
        let stderr = err.join().expect("stderr reader");
        assert!(
            !stdout.contains(" listening on "),
            "reckon-node was expected to fail but became ready: {stdout}"
        );
        FailedStart { status, stderr }
    }
}

/// Flags that put a `--dev` node's embedded gater on a port the OS chooses instead of
/// its fixed default, so that tests can run many `--dev` nodes side by side.
pub const DEV_GATER_ANY_PORT: [&str; 2] = ["--dev-gater-listen", "127.0.0.1:0"];

impl NodeProc {
    /// [`start_dev`](Self::start_dev) with the embedded gater on a free port
    /// ([`DEV_GATER_ANY_PORT`]): a node that shares no port with any other.
    pub fn start_dev_alone(data_dir: &Path, extra: &[&str]) -> NodeProc {
        let mut flags = DEV_GATER_ANY_PORT.to_vec();
        flags.extend_from_slice(extra);
        NodeProc::start_dev(data_dir, &flags)
    }
}

/// Reads page after page from the position (or version) `next` gives after the last
/// event, until a page comes back empty: a short page is not the end, since one read
/// also stops at the node's byte limit.
async fn page_through<N, F, Fut>(next: N, mut read: F) -> Result<Vec<EventRecord>, StoreError>
where
    N: Fn(&EventRecord) -> u64,
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<EventRecord>, StoreError>>,
{
    let mut out: Vec<EventRecord> = Vec::new();
    loop {
        let from = out.last().map_or(0, &next);
        let page = read(from).await?;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

/// Deadline of each call a [`StoreClient`] makes, in seconds.
pub const CALL_TIMEOUT_SECS: u64 = 20;

/// Page size the `*_everything` helpers read with.
pub const PAGE: u32 = 1000;

/// A store on one node, reached straight through its worker service (a
/// [`StoreHandle::direct`]), with the transport layer unwrapped: every method returns
/// the store's answer and panics on an RPC (transport) failure, which no behaviour
/// test expects. Reads are linearizable. Each clone shares the one connection.
#[derive(Clone)]
pub struct StoreClient {
    /// The handle every call goes through.
    pub handle: StoreHandle,
}

/// The store's answer of a call, panicking when there was none.
fn answered<T>(what: &str, r: Result<T, ClientError>) -> Result<T, StoreError> {
    match r {
        Ok(v) => Ok(v),
        Err(ClientError::Store(e)) => Err(e),
        Err(e) => panic!("{what}: transport failure: {e}"),
    }
}

use reckon_gater::types::{
    AppendResult, Direction, EventRecord, ExpectedVersion, NewEvent, SnapshotRecord, StoreError,
    StreamInfo, TagMatch,
};
use reckon_gater::{ClientError, StoreHandle};

impl StoreClient {
    /// Binds `client` to `store`.
    pub fn new(client: WorkerClient, store: impl Into<String>) -> Self {
        let store = store.into();
        StoreClient {
            handle: StoreHandle::direct(client, &store, Duration::from_secs(CALL_TIMEOUT_SECS)),
        }
    }

    /// Connects to `node` and binds the connection to `store`.
    pub async fn connect(node: &NodeProc, store: &str) -> Self {
        StoreClient::new(node.worker().await, store)
    }

    /// [`connect`](Self::connect), then [`wait_until_serving`](Self::wait_until_serving):
    /// a node may print its ready line before its store has elected itself leader.
    pub async fn connect_serving(node: &NodeProc, store: &str) -> Self {
        let db = StoreClient::connect(node, store).await;
        db.wait_until_serving().await;
        db
    }

    /// Waits until the store answers a linearizable read (it has a leader), polling
    /// within [`READY_TIMEOUT`]; panics when it never does.
    pub async fn wait_until_serving(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.version("$probe").await {
                Ok(_) => return,
                Err(e) if e.is_retryable() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("store {} does not serve: {e:?}", self.handle.name()),
            }
        }
    }

    /// `append`. Events keep the ids they have (none: the node assigns one).
    pub async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let request = StoreRequest::Append {
            stream_id: stream.into(),
            expected,
            events,
        };
        match answered("append", self.handle.request(request).await)? {
            StoreResponse::Appended(r) => Ok(r),
            other => panic!("append answered {}", other.name()),
        }
    }

    /// `read_stream`.
    pub async fn read(
        &self,
        stream: &str,
        from: u64,
        count: u32,
        direction: Direction,
    ) -> Result<Vec<EventRecord>, StoreError> {
        answered(
            "read_stream",
            self.handle
                .read_stream(stream, from, count, direction)
                .await,
        )
    }

    /// Every event of a stream, paging forward.
    pub async fn read_stream_everything(
        &self,
        stream: &str,
    ) -> Result<Vec<EventRecord>, StoreError> {
        page_through(
            |e| e.version + 1,
            |from| self.read(stream, from, PAGE, Direction::Forward),
        )
        .await
    }

    /// `read_all`.
    pub async fn read_all(
        &self,
        from: u64,
        count: u32,
        direction: Direction,
    ) -> Result<Vec<EventRecord>, StoreError> {
        answered(
            "read_all",
            self.handle.read_all(from, count, direction).await,
        )
    }

    /// The whole global log, paging forward; panics on a store error.
    pub async fn read_all_everything(&self) -> Vec<EventRecord> {
        page_through(
            |e| e.position + 1,
            |from| self.read_all(from, PAGE, Direction::Forward),
        )
        .await
        .expect("read_all")
    }

    /// `read_by_event_types`.
    pub async fn read_by_types(
        &self,
        types: &[&str],
        from: u64,
        count: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        answered(
            "read_by_event_types",
            self.handle.read_by_event_types(types, from, count).await,
        )
    }

    /// Every event of the given types, paging; panics on a store error.
    pub async fn read_by_types_everything(&self, types: &[&str]) -> Vec<EventRecord> {
        page_through(
            |e| e.position + 1,
            |from| self.read_by_types(types, from, PAGE),
        )
        .await
        .expect("read_by_event_types")
    }

    /// `read_by_tags`.
    pub async fn read_by_tags(
        &self,
        tags: &[&str],
        matching: TagMatch,
        from: u64,
        count: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        answered(
            "read_by_tags",
            self.handle.read_by_tags(tags, matching, from, count).await,
        )
    }

    /// Every event matching the tags, paging; panics on a store error.
    pub async fn read_by_tags_everything(
        &self,
        tags: &[&str],
        matching: TagMatch,
    ) -> Vec<EventRecord> {
        page_through(
            |e| e.position + 1,
            |from| self.read_by_tags(tags, matching, from, PAGE),
        )
        .await
        .expect("read_by_tags")
    }

    /// `get_version`.
    pub async fn version(&self, stream: &str) -> Result<Option<u64>, StoreError> {
        answered("get_version", self.handle.get_version(stream).await)
    }

    /// `exists`.
    pub async fn exists(&self, stream: &str) -> Result<bool, StoreError> {
        answered("exists", self.handle.exists(stream).await)
    }

    /// `list_streams`.
    pub async fn list_streams(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StreamInfo>, StoreError> {
        answered("list_streams", self.handle.list_streams(after, limit).await)
    }

    /// `delete_stream`.
    pub async fn delete(&self, stream: &str, hard: bool) -> Result<(), StoreError> {
        self.delete_expected(stream, ExpectedVersion::Any, hard)
            .await
    }

    /// `delete_stream` if the stream is at `expected`.
    pub async fn delete_expected(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        hard: bool,
    ) -> Result<(), StoreError> {
        answered(
            "delete_stream",
            self.handle.delete(stream, expected, hard).await,
        )
    }

    /// `snapshot_save`.
    pub async fn snapshot_save(
        &self,
        stream: &str,
        version: u64,
        data: &[u8],
        metadata: &[u8],
    ) -> Result<(), StoreError> {
        answered(
            "snapshot_save",
            self.handle
                .save_snapshot(stream, version, data.to_vec(), metadata.to_vec())
                .await,
        )
    }

    /// `snapshot_load` (the highest when `version` is `None`).
    pub async fn snapshot_load(
        &self,
        stream: &str,
        version: Option<u64>,
    ) -> Result<SnapshotRecord, StoreError> {
        answered(
            "snapshot_load",
            self.handle.load_snapshot(stream, version).await,
        )
    }

    /// `snapshot_list`.
    pub async fn snapshot_list(&self, stream: &str) -> Result<Vec<SnapshotRecord>, StoreError> {
        answered("snapshot_list", self.handle.list_snapshots(stream).await)
    }

    /// `snapshot_delete` (every snapshot of the stream when `version` is `None`).
    pub async fn snapshot_delete(
        &self,
        stream: &str,
        version: Option<u64>,
    ) -> Result<(), StoreError> {
        answered(
            "snapshot_delete",
            self.handle.delete_snapshot(stream, version).await,
        )
    }

    /// `snapshot_exists` (any when `version` is `None`).
    pub async fn snapshot_exists(
        &self,
        stream: &str,
        version: Option<u64>,
    ) -> Result<bool, StoreError> {
        answered(
            "snapshot_exists",
            self.handle.snapshot_exists(stream, version).await,
        )
    }
}

/// A `--dev` node alone ([`NodeProc::start_dev_alone`]) on its own temporary data
/// directory, and a client of its `default` store, which serves. Fields drop in order:
/// the connection, then the process, then the directory.
pub struct DevStore {
    /// The client of the `default` store.
    pub db: StoreClient,
    /// The node.
    pub node: NodeProc,
    /// Its data directory.
    pub dir: tempfile::TempDir,
}

impl DevStore {
    /// Starts the node and waits until its store serves, so that a test checks its own
    /// behaviour and not the election (see the crash tests).
    pub async fn start() -> DevStore {
        let dir = tempfile::tempdir().expect("temp dir");
        let node = NodeProc::start_dev_alone(dir.path(), &[]);
        let db = StoreClient::connect_serving(&node, "default").await;
        DevStore { db, node, dir }
    }
}

/// Backups: restores as processes, the file's head, digests of stream contents.
pub mod backup;

/// The gater embedded by `reckon-node --dev`.
pub mod dev;

/// A KurrentDB gRPC client of our own, for the bench and the front door's tests.
pub mod kurrent;

/// A standalone gater process and nodes registered with it.
pub mod gater;

/// Clusters of real nodes in cluster mode.
pub mod cluster;

/// Discovery test support: loopback multicast sockets, a DNS responder, clusters.
pub mod discovery;

/// Bounded polling for conditions.
pub mod wait;

/// Certificates made by `reckon certs` for processes under test, and the environment
/// that gives them to nodes and gaters.
pub mod tls;

/// Loopback ports for the servers a test starts.
pub mod ports;

/// The fault suite's support: namespaces and nemeses, history, checker.
pub mod faults;
