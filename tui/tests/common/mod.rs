//! What the terminal end-to-end tests share: driving tmux on a private socket, and
//! bounded waits on the screen. Binaries and processes come from `reckon_tests`.

#![allow(dead_code)] // Each test file uses its own subset.

use std::process::Command;
use std::time::{Duration, Instant};

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

/// The tmux server of a private socket, stopped on drop (panics included).
pub struct TmuxServer(pub String);

impl TmuxServer {
    /// The name of the socket, for `tmux -L`.
    pub fn socket(&self) -> &str {
        &self.0
    }
}

impl Drop for TmuxServer {
    fn drop(&mut self) {
        kill_tmux(&self.0);
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

/// Starts a tmux server on a private socket named `<prefix>-<pid>` and runs
/// `reckon-tui args` in a `width`x`height` terminal there (see [`run_in_terminal`]).
/// The returned guard holds the socket name and stops the server on drop, panics
/// included: declare it after what the console talks to, so the terminal goes first.
pub fn open_tui(prefix: &str, (width, height): (u16, u16), args: &str) -> TmuxServer {
    let server = TmuxServer(format!("{prefix}-{}", std::process::id()));
    let tui_bin = env!("CARGO_BIN_EXE_reckon-tui");
    run_in_terminal(server.socket(), width, height, &format!("{tui_bin} {args}"));
    server
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
