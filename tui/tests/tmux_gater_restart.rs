//! End to end: the console outlives its gater. A `reckon-node` registered with a
//! standalone `reckon-gater`, `reckon-tui` inside tmux on a private socket. The gater
//! is killed with SIGKILL: the status line says the console is disconnected and
//! retrying. A new gater on the same address comes up, the node registers with it
//! again, and the console says connected and shows the leader and the stream again
//! without being restarted. `q` gives the shell back with the alternate screen off.

use std::process::Command;
use std::time::Duration;

use reckon_tests::bin;
use reckon_tests::gater::{start_node, GaterProc};

mod common;

use common::{open_tui, quit_and_check_restored, require_tmux};

/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(60);
/// The gater's lease, each time it starts.
const LEASE_MS: (&str, &str) = ("RECKON_GATER_LEASE_MS", "3000");

fn wait_for(socket: &str, what: &str, f: impl Fn(&str) -> bool) -> String {
    common::wait_for(socket, what, WAIT, |s| f(s).then_some(())).1
}

fn connected_with_leader(s: &str) -> bool {
    s.contains("● connected") && s.contains("store default · leader 1")
}

#[test]
fn console_says_disconnected_then_recovers_when_the_gater_comes_back() {
    require_tmux();
    let data = tempfile::tempdir().unwrap();
    let mut gater = GaterProc::start("127.0.0.1:0", &[LEASE_MS]);
    let gater_addr = gater.addr.clone();
    let _node = start_node(data.path(), 1, &["default"], &gater_addr, &[]);
    // Stops the terminal on drop, panics included.
    let tmux = open_tui(
        "reckon-restart-test",
        (100, 30),
        &format!("--gater {gater_addr} --refresh-ms 200"),
    );
    let socket = tmux.socket();
    wait_for(socket, "the leader, connected", connected_with_leader);
    let appended = Command::new(bin("reckon"))
        .args([
            "--gater",
            &gater_addr,
            "append",
            "before-restart",
            "--type",
            "t",
        ])
        .output()
        .expect("run reckon");
    assert!(appended.status.success(), "{appended:?}");

    // The gater dies: the console keeps running and says so.
    gater.kill9();
    wait_for(socket, "the disconnected status line", |s| {
        s.contains("DISCONNECTED, retrying")
    });

    // A new gater on the same address: the node registers again and the console
    // finds it on its own.
    let again = GaterProc::start(&gater_addr, &[LEASE_MS]);
    assert_eq!(again.addr, gater_addr);
    wait_for(
        socket,
        "connected again, with the leader",
        connected_with_leader,
    );
    common::tmux(socket, &["send-keys", "-t", "tui", "2"]);
    wait_for(socket, "the stream written before the restart", |s| {
        s.contains("[2:Streams]") && s.contains("before-restart") && s.contains("● connected")
    });

    quit_and_check_restored(socket, "[2:Streams]", WAIT);
}
