//! End to end in a real terminal: a `reckon-node --dev` with its embedded gater,
//! `reckon-tui` inside tmux on a private socket, events appended with the `reckon`
//! CLI, the stream seen in the streams view through `capture-pane`, an append
//! latency from the node's histograms in the telemetry view; then `q` and the
//! shell's screen is back (alternate screen off).
//!
//! Fails with a message when tmux, `reckon-node` or `reckon` is missing
//! (`cargo test --workspace` builds the binaries).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reckon_tests::bin;
use reckon_tests::dev::start_dev_with_gater;

mod common;

use common::{open_tui, quit_and_check_restored, require_tmux, tmux};

const WAIT: Duration = Duration::from_secs(30);
/// Appends the telemetry check makes at most (about 50 ms apart).
const APPENDS_MAX: u32 = 300;

/// Waits until `pred` holds for the screen; gives the screen.
fn wait_for(socket: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    common::wait_for(socket, what, WAIT, |s| pred(s).then_some(())).1
}

/// Appends one event with the `reckon` CLI.
fn append(cli: &Path, gater: &str, stream: &str) {
    let out = Command::new(cli)
        .args([
            "--gater",
            gater,
            "append",
            "--type",
            "OrderPlaced",
            "--data",
            r#"{"total":5}"#,
            stream,
        ])
        .output()
        .expect("run reckon append");
    assert!(out.status.success(), "reckon append: {out:?}");
}

/// The telemetry view's append p99 for the first store: the text under the
/// `APP p99` header, `-` for an interval without appends.
fn append_p99(screen: &str) -> Option<String> {
    let lines: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
    let header: Vec<char> = "APP p99".chars().collect();
    let (row, col) = lines.iter().enumerate().find_map(|(i, l)| {
        l.windows(header.len())
            .position(|w| w == header.as_slice())
            .map(|c| (i, c))
    })?;
    let cell: String = lines.get(row + 1)?.iter().skip(col).take(8).collect();
    Some(cell.trim().to_string())
}

#[test]
fn console_shows_appended_stream_and_restores_terminal() {
    require_tmux();
    let cli_bin = bin("reckon");
    let data = tempfile::tempdir().unwrap();
    let (_node, gater) = start_dev_with_gater(data.path(), &[]);
    // Stops the terminal on drop, panics included, before the node goes.
    let tmux_server = open_tui(
        "reckon-test",
        (100, 30),
        &format!("--gater {gater} --refresh-ms 200"),
    );
    let socket = tmux_server.socket();
    wait_for(socket, "the cluster view with a leader", |s| {
        s.contains("[1:Cluster]") && s.contains("leader")
    });

    append(&cli_bin, &gater, "e2e-order-1");

    tmux(socket, &["send-keys", "-t", "tui", "2"]);
    wait_for(socket, "the stream in the streams view", |s| {
        s.contains("[2:Streams]") && s.contains("e2e-order-1")
    });
    // Open it: `$all` is row 0, the stream row 1.
    tmux(socket, &["send-keys", "-t", "tui", "j", "Enter"]);
    wait_for(socket, "the event", |s| {
        s.contains("OrderPlaced") && s.contains("\"total\": 5")
    });

    // The telemetry view's latency is that of the last refresh interval: keep
    // appending until an interval with appends shows its p99.
    tmux(socket, &["send-keys", "-t", "tui", "4"]);
    wait_for(socket, "the telemetry view", |s| {
        s.contains("[4:Telemetry]") && append_p99(s).is_some()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (stop, cli, gater) = (stop.clone(), cli_bin.clone(), gater.clone());
        std::thread::spawn(move || {
            for _ in 0..APPENDS_MAX {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                append(&cli, &gater, "e2e-order-2");
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let screen = wait_for(socket, "an append p99 in the telemetry view", |s| {
        append_p99(s).is_some_and(|p| p != "-" && p.ends_with('s'))
    });
    stop.store(true, Ordering::Relaxed);
    appender.join().expect("appender thread");
    assert!(screen.contains("default append now"), "{screen}");

    quit_and_check_restored(socket, "[2:Streams]", WAIT);
}
