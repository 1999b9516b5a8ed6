//! End to end against a real cluster: three `reckon-node` processes in cluster mode
//! (static discovery) behind a standalone `reckon-gater`, `reckon-tui` inside tmux on
//! a private socket. The cluster view shows the leader; the leader is killed with
//! SIGKILL; the view then shows another node as leader and the old one as down (or
//! no longer listed); `q` gives the shell back with the alternate screen off.
//!
//! The same again on a cluster with TLS on every link (certificates from the real
//! `reckon certs`, as the README's secure set-up makes them), the console dialling
//! the gater with `--ca --cert --key`.
//!
//! Fails with a message when tmux, `reckon-node` or `reckon-gater` is missing
//! (`cargo test --workspace` builds the binaries).

use std::sync::Arc;
use std::time::Duration;

use reckon_tests::cluster::Cluster;
use reckon_tests::tls::TestCerts;

mod common;

use common::{open_tui, quit_and_check_restored, require_tmux};

/// Bound of every wait (cluster bootstrap and re-election included).
const WAIT: Duration = Duration::from_secs(60);

fn wait_for<T>(socket: &str, what: &str, f: impl Fn(&str) -> Option<T>) -> (T, String) {
    common::wait_for(socket, what, WAIT, f)
}
const NODES: usize = 3;

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
    // Three voters finding each other through static seeds, behind a gater.
    let mut cluster = Cluster::start(NODES, &["default"]);
    let args = format!("--gater {} --refresh-ms 300", cluster.gater.addr);
    follows_failover(&mut cluster, "reckon-cluster-test", &args);
}

#[test]
fn console_follows_leader_failover_in_a_tls_cluster() {
    require_tmux();
    let certs = Arc::new(TestCerts::make(&[1, 2, 3]));
    let mut cluster = Cluster::start_tls(NODES, &["default"], certs.clone());
    let args = format!(
        "--gater {} {} --refresh-ms 300",
        cluster.gater.addr,
        certs.cli_flags().join(" ")
    );
    follows_failover(&mut cluster, "reckon-cluster-tls-test", &args);
}

/// Opens the console with `args` on `session`, waits for the leader, kills it with
/// SIGKILL and waits for the view to show another leader and the old one down.
fn follows_failover(cluster: &mut Cluster, session: &str, args: &str) {
    // Declared after the cluster, so dropped (the terminal stopped) before it.
    let tmux = open_tui(session, (120, 36), args);
    let socket = tmux.socket();
    let (old, _) = wait_for(socket, "the cluster view with a leader", |s| {
        if !s.contains("[1:Cluster]") {
            return None;
        }
        shown_leader(s)
    });
    assert!((1..=NODES as u64).contains(&old), "unknown leader {old}");

    // SIGKILL the leader's process.
    cluster.kill9_id(old);

    let (new, screen) = wait_for(socket, "a new leader and the old one down or gone", |s| {
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

    quit_and_check_restored(socket, "[1:Cluster]", WAIT);
}
