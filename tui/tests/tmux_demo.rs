//! The README's first command, `reckon-tui --demo`, in a real terminal: the
//! in-process cluster elects a leader, the trickle's streams and the demo's
//! subscriptions appear, and `q` gives the shell back with the terminal restored.

mod common;

use std::time::Duration;

use common::{open_tui, quit_and_check_restored, require_tmux, tmux};

/// How long the demo gets to form its cluster and show each view.
const WAIT: Duration = Duration::from_secs(60);

fn wait_for(socket: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    common::wait_for(socket, what, WAIT, |s| pred(s).then_some(())).1
}

#[test]
fn the_demo_shows_a_live_cluster_and_quits_cleanly() {
    require_tmux();
    let tmux_server = open_tui("reckon-demo", (100, 30), "--demo --refresh-ms 300");
    let socket = tmux_server.socket();
    let screen = wait_for(socket, "three nodes and a leader", |s| {
        s.contains("[1:Cluster]") && s.matches("follower").count() >= 2 && s.contains("leader")
    });
    assert!(screen.contains("connected"), "{screen}");
    tmux(socket, &["send-keys", "-t", "tui", "2"]);
    wait_for(socket, "the trickle's streams", |s| {
        s.contains("[2:Streams]") && s.contains("order-")
    });
    tmux(socket, &["send-keys", "-t", "tui", "3"]);
    wait_for(socket, "both demo subscriptions", |s| {
        s.contains("[3:Subscriptions]") && s.contains("demo-billing") && s.contains("demo-audit")
    });
    quit_and_check_restored(socket, "[3:Subscriptions]", WAIT);
}
