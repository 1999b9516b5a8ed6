//! A network fabric of Linux network namespaces, and the faults (nemeses) a test
//! injects into it.
//!
//! ```text
//!   root namespace                          one namespace per node
//!   ┌──────────────────────────────┐        ┌────────────────────────────┐
//!   │ test + clients               │        │ ns <fabric>n1              │
//!   │ reckon-gater on 10.a.b.1:0   │  veth  │ eth0 10.a.b.11             │
//!   │ bridge <fabric>br 10.a.b.1 ──┼────────┼─ reckon-node :7600         │
//!   │   (<fabric>h1, h2, h3)       │        │ nft table inet reckon_fault│
//!   └──────────────────────────────┘        └────────────────────────────┘
//! ```
//!
//! Every node listens on the same port in its own namespace and reaches its peers
//! and the gater over the bridge; the gater and the test's clients stay in the root
//! namespace. A partition is a set of nft drop rules inside one node's namespace, so
//! the node's other links (to the gater, say) are untouched. A node's data directory
//! may sit on a small tmpfs of its own, so that the disk can be filled.
//!
//! Names derive from the test process's pid and a counter (`rkf<pid>-<n>...`, base 36,
//! at most 15 characters for interface names), and each fabric takes a free private
//! /24 under a file lock, so tests in parallel threads and processes never collide.
//! Everything a fabric creates (processes, namespaces, veths, the bridge, nft rules,
//! mounts, directories) goes when it drops, also when the test panics; the first
//! fabric of a process sweeps leftovers of earlier runs whose process is gone.
//!
//! The fabric needs root and the `ip` (iproute2) and `nft` (nftables) commands;
//! without them [`Fabric::start`] panics saying what is missing, so the fault tests
//! fail rather than pass without testing anything.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::gater::GaterProc;
use crate::{bin, NodeProc};

/// The port every node listens on, each in its own namespace.
pub const NODE_PORT: u16 = 7600;

/// The name prefix of everything a fabric creates; the sweep looks for it.
const PREFIX: &str = "rkf";

/// The environment variable that marks every process a fabric starts with the
/// fabric's name, so that a sweep can find the processes of a crashed run.
pub const MARK_ENV: &str = "RKF_FABRIC";

/// Set (to anything) to keep the nodes' and the gater's log files of a fabric that
/// ends without a panic too; a panicking test always keeps them.
pub const KEEP_LOGS_ENV: &str = "RECKON_FAULT_KEEP_LOGS";

/// The nft table inside each node's namespace that holds its partition rules.
const NFT_TABLE: &str = "reckon_fault";

/// The lease the fabric's gater grants its workers, in milliseconds: short, so that
/// the gater stops routing to a dead or paused node soon.
pub const GATER_LEASE_MS: &str = "1500";

/// How big a filler write is when a disk is being filled.
const FILL_CHUNK_BYTES: usize = 1 << 20;

/// Most bytes a filler file may take (a bound on the fill loop; far above any tmpfs
/// a test mounts).
const FILL_MAX_BYTES: u64 = 64 << 30;

static FABRICS: AtomicU32 = AtomicU32::new(0);
static SWEEP: std::sync::Once = std::sync::Once::new();

/// What a fabric is built with.
#[derive(Debug, Clone)]
pub struct FabricConfig {
    /// How many nodes (node ids 1..=nodes, all voters at first start).
    pub nodes: usize,
    /// The stores every node serves.
    pub stores: Vec<String>,
    /// When set, each node's data directory is on a tmpfs of this many MiB of its
    /// own, so that [`Fabric::fill_disk`] can fill it.
    pub disk_mib: Option<u64>,
    /// Extra environment for every node (`RECKON_NODE_...`).
    pub node_env: Vec<(String, String)>,
}

impl Default for FabricConfig {
    fn default() -> Self {
        FabricConfig {
            nodes: 3,
            stores: vec!["default".to_string()],
            disk_mib: None,
            node_env: Vec::new(),
        }
    }
}

/// One node of a fabric.
struct Member {
    ns: String,
    host_veth: String,
    ip: Ipv4Addr,
    data_dir: PathBuf,
    /// The tmpfs mount point holding `data_dir`, when it has one.
    disk: Option<PathBuf>,
    proc: Option<NodeProc>,
    paused: bool,
    link_down: bool,
    /// Peers (by index) whose traffic this node's rules drop.
    cut_peers: BTreeSet<usize>,
    /// Whether this node's rules also drop the gater (and the test's clients).
    cut_gater: bool,
    filler: Option<PathBuf>,
}

/// A running fabric: a bridge, a namespace per node, the nodes, and a gater.
pub struct Fabric {
    name: String,
    subnet: [u8; 3],
    bridge: Option<String>,
    members: Vec<Member>,
    gater: Option<GaterProc>,
    stores: Vec<String>,
    node_env: Vec<(String, String)>,
    work: PathBuf,
    logs: PathBuf,
}

/// A fault a test injects and later undoes. Node indexes are 0-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Node `node` drops all traffic to and from `peers` (both directions); the gater
    /// still reaches it.
    Partition {
        /// The node cut off.
        node: usize,
        /// The peers it cannot talk to.
        peers: Vec<usize>,
    },
    /// Node `node` drops all traffic to and from its peers and the gater.
    Isolate {
        /// The node cut off.
        node: usize,
    },
    /// The nodes of `minority` cannot talk to the others (each side still talks
    /// within itself and to the gater).
    Split {
        /// One side of the split (the smaller one, to leave a quorum).
        minority: Vec<usize>,
    },
    /// The node is stopped (SIGSTOP) until resumed (SIGCONT).
    Pause {
        /// The node.
        node: usize,
    },
    /// The node is killed with SIGKILL and later restarted on the same data dir.
    Kill {
        /// The node.
        node: usize,
    },
    /// The node's data directory fills up until writes fail, and is later freed.
    DiskFull {
        /// The node.
        node: usize,
    },
    /// The node's veth goes down (a pulled cable) and later up.
    LinkDown {
        /// The node.
        node: usize,
    },
}

impl Fault {
    /// The short name of the fault's kind, for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Partition { .. } => "partition",
            Fault::Isolate { .. } => "isolate",
            Fault::Split { .. } => "split",
            Fault::Pause { .. } => "pause",
            Fault::Kill { .. } => "kill",
            Fault::DiskFull { .. } => "disk-full",
            Fault::LinkDown { .. } => "link-down",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Node ids, as the cluster names them, are index + 1.
        let ids = |v: &[usize]| {
            v.iter()
                .map(|i| (i + 1).to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Fault::Partition { node, peers } => {
                write!(f, "partition node {} from [{}]", node + 1, ids(peers))
            }
            Fault::Isolate { node } => write!(f, "isolate node {}", node + 1),
            Fault::Split { minority } => write!(f, "split [{}] from the rest", ids(minority)),
            Fault::Pause { node } => write!(f, "pause node {}", node + 1),
            Fault::Kill { node } => write!(f, "kill -9 node {}", node + 1),
            Fault::DiskFull { node } => write!(f, "fill the disk of node {}", node + 1),
            Fault::LinkDown { node } => write!(f, "link down on node {}", node + 1),
        }
    }
}

/// What undoing a fault found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Undone {
    /// The node had exited on its own (crashed) and was restarted.
    pub restarted_after_crash: bool,
}

/// Checks that this process can build a fabric: root, `ip` and `nft`. The error says
/// what is missing and how to get it.
pub fn preflight() -> Result<(), String> {
    let mut missing = Vec::new();
    if effective_uid() != Some(0) {
        missing.push("root (the effective user id is not 0)".to_string());
    }
    for (cmd, arg, package) in [("ip", "-V", "iproute2"), ("nft", "-v", "nftables")] {
        let ok = Command::new(cmd)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            missing.push(format!("the `{cmd}` command (package {package})"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the fault tests need network namespaces, nftables and tmpfs mounts, but this \
             process lacks: {}. Run them as root with iproute2 and nftables installed \
             (`apt-get install iproute2 nftables`; .ci/run does this).",
            missing.join("; ")
        ))
    }
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Runs a command; its stdout, or an error naming it with its stderr.
fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs a command that must succeed.
fn must(args: &[&str]) -> String {
    run(args).unwrap_or_else(|e| panic!("fabric setup: {e}"))
}

/// Runs `nft -f -` inside namespace `ns` with `script` on stdin.
fn nft_script(ns: &str, script: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft in {ns}: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes())
        .map_err(|e| format!("nft in {ns}: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("nft in {ns}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft in {ns} failed: {}\n{script}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// The name of fabric number `n` of process `pid`: the prefix of its namespaces
/// (`<name>n1`, ...), links (`<name>br`, `<name>h1`, ...) and directory.
pub fn fabric_name(pid: u32, n: u32) -> String {
    format!(
        "{PREFIX}{}-{}",
        base36(u64::from(pid)),
        base36(u64::from(n))
    )
}

/// The pid of the process that created `name`, if `name` is one of ours.
fn owner_pid(name: &str) -> Option<u32> {
    let (pid, _) = name.strip_prefix(PREFIX)?.split_once('-')?;
    u32::from_str_radix(pid, 36).ok()
}

/// Whether `name` belongs to a run whose process is gone.
fn is_stale(name: &str) -> bool {
    owner_pid(name).is_some_and(|pid| {
        pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
    })
}

/// Most passes of [`sweep_leftovers`] over the processes.
const SWEEP_PASSES_MAX: usize = 5;

/// Every process carrying the fabric mark, with the fabric it names.
fn marked_processes() -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let env = std::fs::read(entry.path().join("environ")).ok()?;
            let fabric = env.split(|b| *b == 0).find_map(|kv| {
                std::str::from_utf8(kv)
                    .ok()?
                    .strip_prefix(MARK_ENV)?
                    .strip_prefix('=')
                    .map(str::to_string)
            })?;
            Some((pid, fabric))
        })
        .collect()
}

/// Removes what crashed runs of this suite left behind: processes, mounts,
/// namespaces, links and directories whose creating process no longer exists.
pub fn sweep_leftovers() {
    // Processes first (they may hold mounts and namespaces), found by their mark.
    // A pass repeats until it finds none: a process may be starting or exiting while
    // /proc is listed.
    for _ in 0..SWEEP_PASSES_MAX {
        let stale: Vec<u32> = marked_processes()
            .into_iter()
            .filter(|(_, fabric)| is_stale(fabric))
            .map(|(pid, _)| pid)
            .collect();
        if stale.is_empty() {
            break;
        }
        for pid in stale {
            let _ = run(&["kill", "-KILL", &pid.to_string()]);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if let Ok(mounts) = std::fs::read_to_string("/proc/mounts") {
        for line in mounts.lines() {
            let Some(target) = line.split_whitespace().nth(1) else {
                continue;
            };
            let stale = Path::new(target)
                .components()
                .any(|c| c.as_os_str().to_str().is_some_and(is_stale));
            if stale {
                let _ = run(&["umount", "-l", target]);
            }
        }
    }
    if let Ok(list) = run(&["ip", "netns", "list"]) {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if is_stale(ns) {
                if let Ok(pids) = run(&["ip", "netns", "pids", ns]) {
                    for pid in pids.split_whitespace() {
                        let _ = run(&["kill", "-KILL", pid]);
                    }
                }
                let _ = run(&["ip", "netns", "del", ns]);
            }
        }
    }
    if let Ok(links) = run(&["ip", "-o", "link", "show"]) {
        for line in links.lines() {
            // "7: rkf...h1@if6: <...>"
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            if is_stale(name) {
                let _ = run(&["ip", "link", "del", name]);
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in dir.flatten() {
            if entry.file_name().to_str().is_some_and(is_stale) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Picks a /24 under 10.0.0.0/8 that no interface or route of the root namespace
/// uses, and puts `bridge`'s address in it, under a lock shared by every process of
/// the suite (so two fabrics never take the same one).
fn claim_subnet(bridge: &str, seed: u64) -> [u8; 3] {
    let lock_path = std::env::temp_dir().join(format!("{PREFIX}-subnets.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("fabric setup: open {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("fabric setup: lock {}: {e}", lock_path.display()));
    let in_use = format!(
        "{}\n{}",
        must(&["ip", "-o", "-4", "addr", "show"]),
        must(&["ip", "-4", "route", "show", "table", "all"])
    );
    // 10.200.0.0 to 10.254.255.0: 55 * 256 candidates, starting at a point the pid
    // and counter choose.
    const CANDIDATES: u64 = 55 * 256;
    for k in 0..CANDIDATES {
        let c = (seed + k) % CANDIDATES;
        let (a, b) = (200 + (c / 256) as u8, (c % 256) as u8);
        let prefix = format!("10.{a}.{b}.");
        if in_use.contains(&prefix) {
            continue;
        }
        must(&[
            "ip",
            "addr",
            "add",
            &format!("10.{a}.{b}.1/24"),
            "dev",
            bridge,
        ]);
        // The lock is released when `lock` drops, after the address stands.
        return [10, a, b];
    }
    panic!("fabric setup: no free /24 in 10.200.0.0/16 to 10.254.255.0/24")
}

impl Fabric {
    /// Builds a fabric of `config.nodes` namespaces on a bridge, starts a gater on
    /// the bridge's address and the nodes in their namespaces (cluster mode, static
    /// discovery), and returns once every node has said it is ready (the group may
    /// still be electing). Panics, naming what is missing, when the machine cannot
    /// host a fabric ([`preflight`]).
    pub fn start(config: FabricConfig) -> Fabric {
        if let Err(e) = preflight() {
            panic!("{e}");
        }
        SWEEP.call_once(sweep_leftovers);
        let pid = std::process::id();
        let n = FABRICS.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{PREFIX}{}-{}",
            base36(u64::from(pid)),
            base36(u64::from(n))
        );
        let work = std::env::temp_dir().join(&name);
        let logs = std::env::temp_dir().join("reckon-faults-logs").join(&name);
        let mut fabric = Fabric {
            name: name.clone(),
            subnet: [0; 3],
            bridge: None,
            members: Vec::new(),
            gater: None,
            stores: config.stores.clone(),
            node_env: config.node_env.clone(),
            work: work.clone(),
            logs: logs.clone(),
        };
        std::fs::create_dir_all(&work)
            .unwrap_or_else(|e| panic!("fabric setup: {}: {e}", work.display()));
        std::fs::create_dir_all(&logs)
            .unwrap_or_else(|e| panic!("fabric setup: {}: {e}", logs.display()));

        let bridge = format!("{name}br");
        must(&["ip", "link", "add", &bridge, "type", "bridge"]);
        fabric.bridge = Some(bridge.clone());
        fabric.subnet = claim_subnet(&bridge, u64::from(pid) * 7 + u64::from(n));
        must(&["ip", "link", "set", &bridge, "up"]);

        for i in 0..config.nodes {
            let ns = format!("{name}n{}", i + 1);
            let host_veth = format!("{name}h{}", i + 1);
            let peer_veth = format!("{name}p{}", i + 1);
            let [a, b, c] = fabric.subnet;
            let ip = Ipv4Addr::new(a, b, c, 11 + i as u8);
            let node_dir = work.join(format!("node{}", i + 1));
            std::fs::create_dir_all(&node_dir)
                .unwrap_or_else(|e| panic!("fabric setup: {}: {e}", node_dir.display()));
            must(&["ip", "netns", "add", &ns]);
            fabric.members.push(Member {
                ns: ns.clone(),
                host_veth: host_veth.clone(),
                ip,
                data_dir: node_dir.join("data"),
                disk: None,
                proc: None,
                paused: false,
                link_down: false,
                cut_peers: BTreeSet::new(),
                cut_gater: false,
                filler: None,
            });
            must(&[
                "ip", "link", "add", &host_veth, "type", "veth", "peer", "name", &peer_veth,
            ]);
            must(&["ip", "link", "set", &peer_veth, "netns", &ns]);
            must(&["ip", "-n", &ns, "link", "set", &peer_veth, "name", "eth0"]);
            must(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ]);
            must(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            must(&["ip", "link", "set", &host_veth, "master", &bridge]);
            must(&["ip", "link", "set", &host_veth, "up"]);
            nft_script(
                &ns,
                &format!(
                    "table inet {NFT_TABLE} {{\n\
                     \x20 set peers {{ type ipv4_addr; }}\n\
                     \x20 chain input {{ type filter hook input priority -10; policy accept; ip saddr @peers drop; }}\n\
                     \x20 chain output {{ type filter hook output priority -10; policy accept; ip daddr @peers drop; }}\n\
                     }}\n"
                ),
            )
            .unwrap_or_else(|e| panic!("fabric setup: {e}"));
            if let Some(mib) = config.disk_mib {
                let disk = node_dir.join("disk");
                std::fs::create_dir_all(&disk)
                    .unwrap_or_else(|e| panic!("fabric setup: {}: {e}", disk.display()));
                must(&[
                    "mount",
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={mib}m,mode=0700"),
                    "tmpfs",
                    path_str(&disk),
                ]);
                let m = fabric.members.last_mut().expect("just pushed");
                m.data_dir = disk.join("data");
                m.disk = Some(disk);
            }
        }

        let gater_log = logs.join("gater");
        let gater_listen = format!("{}:0", fabric.bridge_ip());
        fabric.gater = Some(GaterProc::start(
            &gater_listen,
            &[
                ("RECKON_GATER_LEASE_MS", GATER_LEASE_MS),
                ("RECKON_GATER_LOG__DIR", path_str(&gater_log)),
                // On the bridge, not loopback: clear text must be asked for.
                ("RECKON_GATER_INSECURE", "true"),
                (MARK_ENV, &name),
            ],
        ));
        for i in 0..config.nodes {
            fabric.start_node(i);
        }
        fabric
    }

    /// The fabric's name (the prefix of its namespaces and links).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many nodes it has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether it has no node.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The root namespace's address on the bridge (where the gater listens).
    pub fn bridge_ip(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// The gater's address.
    pub fn gater_addr(&self) -> String {
        self.gater.as_ref().expect("the gater runs").addr.clone()
    }

    /// Node `i`'s worker address (its advertise address).
    pub fn addr(&self, i: usize) -> String {
        format!("{}:{NODE_PORT}", self.members[i].ip)
    }

    /// Every node's worker address.
    pub fn addrs(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.addr(i)).collect()
    }

    /// Where the nodes' and the gater's log files are (kept when a test fails).
    pub fn logs_dir(&self) -> &Path {
        &self.logs
    }

    /// Node `i`'s process id, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].proc.as_ref().map(NodeProc::pid)
    }

    /// Starts node `i` in its namespace on its data directory (after a kill, a crash
    /// or at first start) and waits for its ready line. Panics when it is running.
    pub fn start_node(&mut self, i: usize) {
        assert!(
            self.members[i].proc.is_none(),
            "node {} is already running",
            i + 1
        );
        let seeds = format!(
            "[{}]",
            self.addrs()
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        let gater = self.gater_addr();
        let addr = self.addr(i);
        let m = &self.members[i];
        let log_dir = self.logs.join(format!("node{}", i + 1));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &m.ns])
            .arg(bin("reckon-node"))
            .arg("--node-id")
            .arg((i + 1).to_string())
            .arg("--listen")
            .arg(&addr)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .arg("--gater")
            .arg(&gater)
            .env("RECKON_NODE_MODE", "cluster")
            .env(
                "RECKON_NODE_BOOTSTRAP_EXPECT",
                self.members.len().to_string(),
            )
            .env("RECKON_NODE_DISCOVERY__SEEDS", seeds)
            .env("RECKON_NODE_LOG__DIR", &log_dir)
            // A namespace's address, not loopback: clear text must be asked for.
            .env("RECKON_NODE_INSECURE", "true")
            .env(MARK_ENV, &self.name);
        for (k, v) in &self.node_env {
            cmd.env(k, v);
        }
        for s in &self.stores {
            cmd.arg("--store").arg(s);
        }
        let data_dir = m.data_dir.clone();
        let proc = NodeProc::spawn(cmd, &data_dir);
        let m = &mut self.members[i];
        m.proc = Some(proc);
        m.paused = false;
    }

    /// Whether node `i`'s process runs (it may be paused); a node that exited on its
    /// own is reaped here and counts as not running.
    pub fn is_running(&mut self, i: usize) -> bool {
        let m = &mut self.members[i];
        match m.proc.as_mut() {
            None => false,
            Some(p) => {
                if p.exit_within(Duration::ZERO).is_some() {
                    m.proc = None;
                    m.paused = false;
                    false
                } else {
                    true
                }
            }
        }
    }

    /// Rewrites node `i`'s drop set from its recorded cuts.
    fn apply_cuts(&self, i: usize) {
        let m = &self.members[i];
        let mut addrs: Vec<String> = m
            .cut_peers
            .iter()
            .map(|p| self.members[*p].ip.to_string())
            .collect();
        if m.cut_gater {
            addrs.push(self.bridge_ip().to_string());
        }
        let mut script = format!("flush set inet {NFT_TABLE} peers\n");
        if !addrs.is_empty() {
            script.push_str(&format!(
                "add element inet {NFT_TABLE} peers {{ {} }}\n",
                addrs.join(", ")
            ));
        }
        nft_script(&m.ns, &script).unwrap_or_else(|e| panic!("fault: {e}"));
    }

    /// Node `i` drops all traffic to and from `peers`, both directions; the gater
    /// and the test's clients still reach it.
    pub fn partition(&mut self, i: usize, peers: &[usize]) {
        self.members[i].cut_peers.extend(peers.iter().copied());
        self.apply_cuts(i);
    }

    /// Node `i` drops all traffic to and from its peers, the gater and the test's
    /// clients.
    pub fn isolate(&mut self, i: usize) {
        let peers: Vec<usize> = (0..self.members.len()).filter(|p| *p != i).collect();
        self.members[i].cut_peers.extend(peers);
        self.members[i].cut_gater = true;
        self.apply_cuts(i);
    }

    /// Cuts every node of `minority` off from every other node (the gater still
    /// reaches all of them).
    pub fn split(&mut self, minority: &[usize]) {
        let majority: Vec<usize> = (0..self.members.len())
            .filter(|p| !minority.contains(p))
            .collect();
        for &m in minority {
            self.partition(m, &majority);
        }
    }

    /// Removes every partition rule of node `i`.
    pub fn heal_node(&mut self, i: usize) {
        self.members[i].cut_peers.clear();
        self.members[i].cut_gater = false;
        self.apply_cuts(i);
    }

    /// Stops node `i` with SIGSTOP. Panics when it is not running.
    pub fn pause(&mut self, i: usize) {
        let pid = self
            .pid(i)
            .unwrap_or_else(|| panic!("node {} is not running", i + 1));
        must(&["kill", "-STOP", &pid.to_string()]);
        self.members[i].paused = true;
    }

    /// Resumes node `i` with SIGCONT (a no-op when it is not paused).
    pub fn resume(&mut self, i: usize) {
        if let Some(pid) = self.pid(i) {
            if self.members[i].paused {
                must(&["kill", "-CONT", &pid.to_string()]);
            }
        }
        self.members[i].paused = false;
    }

    /// Kills node `i` with SIGKILL and reaps it (a no-op when it is not running).
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].proc.take() {
            p.kill9();
        }
        self.members[i].paused = false;
    }

    /// Takes node `i`'s link down (its veth on the bridge side), as if its cable
    /// were pulled.
    pub fn link_down(&mut self, i: usize) {
        must(&["ip", "link", "set", &self.members[i].host_veth, "down"]);
        self.members[i].link_down = true;
    }

    /// Brings node `i`'s link back up.
    pub fn link_up(&mut self, i: usize) {
        must(&["ip", "link", "set", &self.members[i].host_veth, "up"]);
        self.members[i].link_down = false;
    }

    /// Fills node `i`'s disk with a filler file until a write fails for lack of
    /// space; returns the bytes the filler took. Panics when the node has no disk
    /// of its own ([`FabricConfig::disk_mib`]).
    pub fn fill_disk(&mut self, i: usize) -> u64 {
        use std::io::Write;
        let disk = self.members[i]
            .disk
            .clone()
            .unwrap_or_else(|| panic!("node {} has no disk of its own to fill", i + 1));
        let path = disk.join("filler");
        self.members[i].filler = Some(path.clone());
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("fault: {}: {e}", path.display()));
        let chunk = vec![0xA5u8; FILL_CHUNK_BYTES];
        let mut written = 0u64;
        while written < FILL_MAX_BYTES {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("fault: filling {}: {e}", path.display()),
            }
        }
        // Small writes fill what a chunk could not.
        let byte = [0u8; 1];
        while written < FILL_MAX_BYTES && file.write(&byte).is_ok_and(|n| n == 1) {
            written += 1;
        }
        let _ = file.sync_all();
        written
    }

    /// Removes node `i`'s filler file.
    pub fn free_disk(&mut self, i: usize) {
        if let Some(path) = self.members[i].filler.take() {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Injects `fault`.
    pub fn inject(&mut self, fault: &Fault) {
        match fault {
            Fault::Partition { node, peers } => self.partition(*node, peers),
            Fault::Isolate { node } => self.isolate(*node),
            Fault::Split { minority } => self.split(minority),
            Fault::Pause { node } => self.pause(*node),
            Fault::Kill { node } => self.kill9(*node),
            Fault::DiskFull { node } => {
                self.fill_disk(*node);
            }
            Fault::LinkDown { node } => self.link_down(*node),
        }
    }

    /// Undoes `fault`: heals, resumes, restarts, frees or brings the link up. A node
    /// the fault touched that has exited on its own meanwhile is restarted, and the
    /// answer says so.
    pub fn undo(&mut self, fault: &Fault) -> Undone {
        let touched: Vec<usize> = match fault {
            Fault::Partition { node, .. } => {
                self.heal_node(*node);
                vec![*node]
            }
            Fault::Isolate { node } => {
                self.heal_node(*node);
                vec![*node]
            }
            Fault::Split { minority } => {
                for &m in minority {
                    self.heal_node(m);
                }
                minority.clone()
            }
            Fault::Pause { node } => {
                self.resume(*node);
                vec![*node]
            }
            Fault::Kill { node } => {
                self.start_node(*node);
                return Undone::default();
            }
            Fault::DiskFull { node } => {
                self.free_disk(*node);
                vec![*node]
            }
            Fault::LinkDown { node } => {
                self.link_up(*node);
                vec![*node]
            }
        };
        let mut undone = Undone::default();
        for i in touched {
            if !self.is_running(i) {
                self.start_node(i);
                undone.restarted_after_crash = true;
            }
        }
        undone
    }

    /// Heals everything: no partition rule, every link up, every disk freed, every
    /// node resumed, and every node that is not running started. Returns the nodes
    /// that had exited on their own (crashed).
    pub fn heal_all(&mut self) -> Vec<usize> {
        let mut crashed = Vec::new();
        for i in 0..self.members.len() {
            self.heal_node(i);
            if self.members[i].link_down {
                self.link_up(i);
            }
            self.free_disk(i);
            self.resume(i);
            let had_proc = self.members[i].proc.is_some();
            if !self.is_running(i) {
                if had_proc {
                    crashed.push(i);
                }
                self.start_node(i);
            }
        }
        crashed
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("fabric paths are UTF-8")
}

impl Drop for Fabric {
    fn drop(&mut self) {
        // Never panic here: this may run while a test unwinds.
        for m in &mut self.members {
            if let Some(mut p) = m.proc.take() {
                p.kill9();
            }
        }
        if let Some(mut g) = self.gater.take() {
            g.kill9();
        }
        for m in &self.members {
            if let Some(disk) = &m.disk {
                if run(&["umount", path_str(disk)]).is_err() {
                    let _ = run(&["umount", "-l", path_str(disk)]);
                }
            }
            let _ = run(&["ip", "netns", "del", &m.ns]);
            // The veth pair goes with its namespace end; this is for a setup that
            // failed before moving it.
            let _ = run(&["ip", "link", "del", &m.host_veth]);
        }
        if let Some(b) = &self.bridge {
            let _ = run(&["ip", "link", "del", b]);
        }
        let _ = std::fs::remove_dir_all(&self.work);
        if std::thread::panicking() || std::env::var_os(KEEP_LOGS_ENV).is_some() {
            eprintln!(
                "fabric {}: node and gater logs kept in {}",
                self.name,
                self.logs.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.logs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_pid_and_fit_interface_names() {
        let pid = 4_194_304u32; // the largest pid_max
        let name = fabric_name(pid, 1295);
        for suffix in ["br", "n9", "h9", "p9"] {
            assert!(format!("{name}{suffix}").len() <= 15, "{name}{suffix}");
        }
        assert_eq!(owner_pid(&format!("{name}h1")), Some(pid));
        assert_eq!(owner_pid("eth0"), None);
        assert_eq!(owner_pid("rkfzz-1br"), Some(1295));
        assert_eq!(owner_pid("rkfoo"), None, "no dash: not one of ours");
        assert_eq!(owner_pid("rkf-subnets.lock"), None);
    }

    #[test]
    fn our_own_names_are_never_stale() {
        let me = format!("{}n1", fabric_name(std::process::id(), 0));
        assert!(!is_stale(&me));
        assert!(!is_stale("eth0"));
    }
}
