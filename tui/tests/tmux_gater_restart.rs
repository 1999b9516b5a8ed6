//! End to end: the console outlives its gater. A `reckon-node` registered with a
//! standalone `reckon-gater`, `reckon-tui` inside tmux on a private socket. The gater
//! is killed with SIGKILL: the status line says the console is disconnected and
//! retrying. A new gater on the same address comes up, the node registers with it
//! again, and the console says connected and shows the leader and the stream again
//! without being restarted. `q` gives the shell back with the alternate screen off.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;

use common::{
    kill_tmux, quit_and_check_restored, require_bin, require_tmux, run_in_terminal, spawn_gater,
};

/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(60);

fn wait_for(socket: &str, what: &str, f: impl Fn(&str) -> bool) -> String {
    common::wait_for(socket, what, WAIT, |s| f(s).then_some(())).1
}

/// Everything started by the test; stopped on drop, panics included.
struct Cleanup {
    socket: String,
    children: Vec<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        kill_tmux(&self.socket);
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn connected_with_leader(s: &str) -> bool {
    s.contains("● connected") && s.contains("store default · leader 1")
}

#[test]
fn console_says_disconnected_then_recovers_when_the_gater_comes_back() {
    require_tmux();
    let (node_bin, gater_bin, cli_bin) = (
        require_bin("reckon-node"),
        require_bin("reckon-gater"),
        require_bin("reckon"),
    );
    let tui_bin = env!("CARGO_BIN_EXE_reckon-tui");
    let data = tempfile::tempdir().unwrap();
    let socket = format!("reckon-restart-test-{}", std::process::id());
    let mut cleanup = Cleanup {
        socket: socket.clone(),
        children: Vec::new(),
    };

    let (gater, gater_addr) = spawn_gater(&gater_bin, "127.0.0.1:0", "3000", WAIT);
    cleanup.children.push(gater);
    let mut node = Command::new(&node_bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("RECKON_NODE_") {
            node.env_remove(k);
        }
    }
    node.args([
        "--node-id",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--store",
        "default",
    ])
    .arg("--data-dir")
    .arg(data.path())
    .arg("--gater")
    .arg(&gater_addr)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    cleanup
        .children
        .push(node.spawn().expect("spawn reckon-node"));

    run_in_terminal(
        &socket,
        100,
        30,
        &format!("{tui_bin} --gater {gater_addr} --refresh-ms 200"),
    );
    wait_for(&socket, "the leader, connected", connected_with_leader);
    let appended = Command::new(&cli_bin)
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
    let mut gater = cleanup.children.remove(0);
    gater.kill().expect("kill -9 the gater");
    let _ = gater.wait();
    wait_for(&socket, "the disconnected status line", |s| {
        s.contains("DISCONNECTED, retrying")
    });

    // A new gater on the same address: the node registers again and the console
    // finds it on its own.
    let (gater, again) = spawn_gater(&gater_bin, &gater_addr, "3000", WAIT);
    assert_eq!(again, gater_addr);
    cleanup.children.push(gater);
    wait_for(
        &socket,
        "connected again, with the leader",
        connected_with_leader,
    );
    common::tmux(&socket, &["send-keys", "-t", "tui", "2"]);
    wait_for(&socket, "the stream written before the restart", |s| {
        s.contains("[2:Streams]") && s.contains("before-restart") && s.contains("● connected")
    });

    quit_and_check_restored(&socket, "[2:Streams]", WAIT);
}
