//! What the terminal end-to-end tests share: finding binaries, driving tmux on a
//! private socket, and bounded waits on the screen.

#![allow(dead_code)] // Each test file uses its own subset.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A binary of another package: test executables live in target/<profile>/deps.
pub fn sibling_bin(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?.to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    path.exists().then_some(path)
}

/// A sibling binary the test needs; fails the test (never skips it) when it is not
/// built.
pub fn require_bin(name: &str) -> PathBuf {
    sibling_bin(name).unwrap_or_else(|| {
        panic!("{name} is not built: run `cargo build --workspace --bins` (or `cargo test --workspace`)")
    })
}

/// Fails the test when tmux cannot run (`.ci/run` installs it).
pub fn require_tmux() {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "tmux is needed for the terminal tests: install it (apt-get install tmux)"
    );
}

/// Runs `tmux -L socket args...` and gives its stdout.
pub fn tmux(socket: &str, args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(["-L", socket])
        .args(args)
        .output()
        .expect("run tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stops the tmux server of `socket` and removes its socket file (kill-server
/// leaves it behind).
pub fn kill_tmux(socket: &str) {
    let socket_path = tmux(socket, &["display-message", "-p", "#{socket_path}"]);
    let _ = Command::new("tmux")
        .args(["-L", socket, "kill-server"])
        .status();
    if !socket_path.trim().is_empty() {
        let _ = std::fs::remove_file(socket_path.trim());
    }
}

/// Polls the `tui` window's screen until `f` finds something in it; panics with the
/// screen after `limit`.
pub fn wait_for<T>(
    socket: &str,
    what: &str,
    limit: Duration,
    f: impl Fn(&str) -> Option<T>,
) -> (T, String) {
    let deadline = Instant::now() + limit;
    loop {
        let screen = tmux(socket, &["capture-pane", "-p", "-t", "tui"]);
        if let Some(v) = f(&screen) {
            return (v, screen);
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; screen:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Opens a detached `width`x`height` terminal named `tui` on `socket` and runs
/// `command` in its shell, which prints `TUI-EXIT-<status>` when it ends.
pub fn run_in_terminal(socket: &str, width: u16, height: u16, command: &str) {
    let (w, h) = (width.to_string(), height.to_string());
    tmux(
        socket,
        &["new-session", "-d", "-s", "tui", "-x", &w, "-y", &h, "sh"],
    );
    let run = format!("{command}; echo TUI-EXIT-$?");
    tmux(socket, &["send-keys", "-t", "tui", &run, "Enter"]);
}

/// Presses `q` and checks that the console exited 0, left nothing with `marker` on
/// the screen and switched the alternate screen off.
pub fn quit_and_check_restored(socket: &str, marker: &str, limit: Duration) {
    tmux(socket, &["send-keys", "-t", "tui", "q"]);
    let (_, screen) = wait_for(socket, "the shell back", limit, |s| {
        s.contains("TUI-EXIT-0").then_some(())
    });
    assert!(
        !screen.contains(marker),
        "console left on screen:\n{screen}"
    );
    let alt = tmux(
        socket,
        &["display-message", "-p", "-t", "tui", "#{alternate_on}"],
    );
    assert_eq!(alt.trim(), "0", "alternate screen still on");
}

/// Starts `reckon-gater` on `listen` (`127.0.0.1:0` for a free port) with a lease of
/// `lease_ms`, none of the caller's `RECKON_*` settings, and waits up to `limit` for
/// its ready line; gives the process and its address.
pub fn spawn_gater(bin: &Path, listen: &str, lease_ms: &str, limit: Duration) -> (Child, String) {
    let mut cmd = Command::new(bin);
    cmd.args(["--listen", listen]);
    for (k, _) in std::env::vars() {
        if k.starts_with("RECKON_GATER_") || k.starts_with("RECKON_NODE_") {
            cmd.env_remove(k);
        }
    }
    let mut gater = cmd
        .env("RECKON_GATER_LEASE_MS", lease_ms)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn reckon-gater");
    let stdout = gater.stdout.take().expect("gater stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + limit;
    let addr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(_) => {
                let _ = gater.kill();
                let _ = gater.wait();
                panic!("reckon-gater on {listen} printed no ready line");
            }
        };
        if let Some(rest) = line.split("reckon-gater ready: listening on ").nth(1) {
            break rest.trim().to_string();
        }
    };
    (gater, addr)
}
