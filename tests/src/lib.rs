//! Test support: real `reckon-node` processes on loopback ports chosen by the OS.
//!
//! Every process a test starts is killed when its handle drops, so a failing test
//! leaves nothing behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

/// A running `reckon-node` process.
pub struct NodeProc {
    child: Child,
    /// The worker service address.
    pub addr: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    lines: mpsc::Receiver<String>,
}

impl NodeProc {
    /// Starts `reckon-node --dev` on a free loopback port with `data_dir`, plus `extra`
    /// flags, and waits until it says it is ready.
    pub fn start_dev(data_dir: &Path, extra: &[&str]) -> NodeProc {
        let mut cmd = Command::new(bin("reckon-node"));
        cmd.arg("--dev")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra);
        Self::spawn(cmd, data_dir)
    }

    /// Starts a node from a prepared command (stdout is captured to find the ready line).
    pub fn spawn(mut cmd: Command, data_dir: &Path) -> NodeProc {
        for (k, _) in std::env::vars() {
            if k.starts_with("RECKON_NODE_") {
                cmd.env_remove(k);
            }
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn reckon-node");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split(" listening on ").nth(1) {
                        break rest.split_whitespace().next().expect("addr").to_string();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    panic!(
                        "reckon-node did not become ready in {READY_TIMEOUT:?} (exit: {status:?})"
                    );
                }
            }
        };
        NodeProc {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            lines: rx,
        }
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
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("wait")
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

/// A tarpc context with a deadline `secs` from now.
pub fn ctx(secs: u64) -> tarpc::context::Context {
    let mut c = tarpc::context::current();
    c.deadline = Instant::now() + Duration::from_secs(secs);
    c
}
