//! The systemd units verify, and the node speaks the notification protocol.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reckon_tests::{bin, dev_command, NodeProc};

/// `systemd-analyze verify` on every unit, with `ExecStart` pointed at the binaries
/// this build made (verify checks that the command exists).
#[test]
fn every_unit_verifies() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd");
    let dir = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&units).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".service") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for hardening in [
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "CapabilityBoundingSet=",
            "Restart=on-failure",
            "LimitNOFILE=",
        ] {
            assert!(text.contains(hardening), "{name} lacks {hardening}");
        }
        let text = text
            .replace(
                "/usr/local/bin/reckon-node",
                bin("reckon-node").to_str().unwrap(),
            )
            .replace(
                "/usr/local/bin/reckon-gater",
                bin("reckon-gater").to_str().unwrap(),
            );
        std::fs::write(dir.path().join(&name), text).unwrap();
        names.push(name);
    }
    names.sort();
    assert_eq!(
        names,
        [
            "reckon-gater.service",
            "reckon-node.service",
            "reckon-node@.service"
        ]
    );
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(names.iter().map(|n| dir.path().join(n)))
        .current_dir(dir.path())
        .output()
        .expect("systemd-analyze is installed (.ci/run installs systemd)");
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Under `Type=notify` the node says READY=1 once it serves, and pings a watchdog the
/// unit asks for.
#[test]
fn the_node_notifies_ready_and_pings_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut cmd = dev_command(&dir.path().join("data"));
    cmd.env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "200000");
    let mut node = NodeProc::spawn(cmd, &dir.path().join("data"));
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !(got.iter().any(|m: &String| m == "READY=1") && got.iter().any(|m| m == "WATCHDOG=1")) {
        let n = sock.recv(&mut buf).expect("a notification within 30 s");
        got.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert_eq!(got[0], "READY=1", "{got:?}");
    let status = node.terminate();
    assert!(status.success(), "{status:?}");
    let n = sock.recv(&mut buf).unwrap();
    let mut last = String::from_utf8_lossy(&buf[..n]).to_string();
    while last == "WATCHDOG=1" {
        let n = sock.recv(&mut buf).unwrap();
        last = String::from_utf8_lossy(&buf[..n]).to_string();
    }
    assert_eq!(last, "STOPPING=1");
}
