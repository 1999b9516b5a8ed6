//! End to end against a real cluster: three `reckon-node` processes in cluster mode
//! (static discovery) behind a standalone `reckon-gater`, `reckon-tui` inside tmux on
//! a private socket. The cluster view shows the leader; the leader is killed with
//! SIGKILL; the view then shows another node as leader and the old one as down (or
//! no longer listed); `q` gives the shell back with the alternate screen off.
//!
//! Skips with a message when tmux, `reckon-node` or `reckon-gater` is missing
//! (`cargo test --workspace` builds the binaries).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;

use common::{
    kill_tmux, quit_and_check_restored, require_bin, require_tmux, run_in_terminal, spawn_gater,
};

/// Bound of every wait (cluster bootstrap and re-election included).
const WAIT: Duration = Duration::from_secs(60);

fn wait_for<T>(socket: &str, what: &str, f: impl Fn(&str) -> Option<T>) -> (T, String) {
    common::wait_for(socket, what, WAIT, f)
}
const NODES: usize = 3;

/// Free loopback ports, found by binding port 0 and letting go.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

/// Everything started by the test; stopped on drop, panics included. The temp
/// directory is removed after the processes are gone.
struct Cleanup {
    socket: String,
    gater: Option<Child>,
    nodes: Vec<Option<Child>>,
    _root: Option<tempfile::TempDir>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        kill_tmux(&self.socket);
        for child in self.nodes.iter_mut().flatten().chain(self.gater.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
        // `_root` (the data directories) drops after this body.
    }
}

/// The leader named in the store heading (`store default · leader 2 · term 3 ...`),
/// when it is also the starred row shown with role `leader`.
fn shown_leader(screen: &str) -> Option<u64> {
    let heading = screen
        .lines()
        .find(|l| l.contains("store default · leader "))?;
    let id: u64 = heading
        .split("· leader ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let starred = node_row(screen, id)?;
    (starred.contains('★') && starred.contains(" leader ")).then_some(id)
}

/// The table row of node `id` (`│ ★ 2   127.0.0.1:7602  leader ...`).
fn node_row(screen: &str, id: u64) -> Option<&str> {
    screen.lines().find(|l| {
        let cells: Vec<&str> = l
            .split(|c: char| c == '│' || c == '★' || c == '▶' || c.is_whitespace())
            .filter(|c| !c.is_empty())
            .collect();
        cells.len() >= 3 && cells[0] == id.to_string() && cells[1].starts_with("127.0.0.1:")
    })
}

#[test]
fn console_follows_leader_failover_in_a_real_cluster() {
    require_tmux();
    let (node_bin, gater_bin) = (require_bin("reckon-node"), require_bin("reckon-gater"));
    let tui_bin = env!("CARGO_BIN_EXE_reckon-tui");
    let root = tempfile::tempdir().unwrap();
    let socket = format!("reckon-cluster-test-{}", std::process::id());
    let mut cleanup = Cleanup {
        socket: socket.clone(),
        gater: None,
        nodes: (0..NODES).map(|_| None).collect(),
        _root: None,
    };

    // The gater, and its address from its ready line.
    let (gater, gater_addr) = spawn_gater(&gater_bin, "127.0.0.1:0", "1500", WAIT);
    cleanup.gater = Some(gater);

    // Three nodes, all voters, finding each other through static seeds.
    let addrs: Vec<String> = free_ports(NODES)
        .into_iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let seeds = format!(
        "[{}]",
        addrs
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    for (i, addr) in addrs.iter().enumerate() {
        let mut cmd = Command::new(&node_bin);
        for (k, _) in std::env::vars() {
            if k.starts_with("RECKON_NODE_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("--node-id")
            .arg((i + 1).to_string())
            .arg("--listen")
            .arg(addr)
            .arg("--data-dir")
            .arg(root.path().join(format!("node{}", i + 1)))
            .arg("--gater")
            .arg(&gater_addr)
            .env("RECKON_NODE_MODE", "cluster")
            .env("RECKON_NODE_BOOTSTRAP_EXPECT", NODES.to_string())
            .env("RECKON_NODE_DISCOVERY__SEEDS", &seeds)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cleanup.nodes[i] = Some(cmd.spawn().expect("spawn reckon-node"));
    }
    cleanup._root = Some(root);

    run_in_terminal(
        &socket,
        120,
        36,
        &format!("{tui_bin} --gater {gater_addr} --refresh-ms 300"),
    );
    let (old, _) = wait_for(&socket, "the cluster view with a leader", |s| {
        if !s.contains("[1:Cluster]") {
            return None;
        }
        shown_leader(s)
    });
    assert!((1..=NODES as u64).contains(&old), "unknown leader {old}");

    // SIGKILL the leader's process.
    let idx = (old - 1) as usize;
    let mut leader = cleanup.nodes[idx].take().expect("leader process");
    leader.kill().expect("kill -9 the leader");
    let _ = leader.wait();

    let (new, screen) = wait_for(&socket, "a new leader and the old one down or gone", |s| {
        let new = shown_leader(s)?;
        if new == old {
            return None;
        }
        match node_row(s, old) {
            None => Some(new),
            Some(row) if row.contains(" down ") => Some(new),
            Some(_) => None,
        }
    });
    assert_ne!(new, old, "screen:\n{screen}");

    quit_and_check_restored(&socket, "[1:Cluster]", WAIT);
}
