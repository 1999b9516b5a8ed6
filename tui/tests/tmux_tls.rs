//! The console on a secure setup, in a real terminal: a `reckon-gater` with TLS and a
//! `[[tokens]]` entry, a single-mode `reckon-node` with TLS registered with it (mutual
//! TLS between them), certificates made by the real `reckon certs`
//! ([`TestCerts`]) and the token as `reckon token create` makes it.
//!
//! - `reckon-tui --ca CA --token T` shows the store, its leader and an event the
//!   `reckon` CLI appended over TLS with the same token; `q` restores the terminal.
//! - `reckon-tui --ca CA --cert C --key K` (a client certificate the gater grants
//!   roles to in `[[clients]]`) shows the same, without a token.
//! - `reckon-tui` without `--ca` against the TLS gater says it is disconnected, with
//!   the reason, within a bounded time instead of hanging, and still quits on `q`.
//!
//! Fails with a message when tmux or a binary is missing (`cargo build --workspace
//! --bins` builds them).

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use reckon_gater::access::{new_token, token_digest, TokenEntry};
use reckon_tests::gater::{start_node, GaterProc};
use reckon_tests::tls::{TestCerts, CLIENT_NAME};
use reckon_tests::{bin, NodeProc};

mod common;

use common::{open_tui, quit_and_check_restored, require_tmux, tmux};

const WAIT: Duration = Duration::from_secs(30);
/// The store the node serves.
const STORE: &str = "orders";
/// The stream the CLI appends to.
const STREAM: &str = "tls-order-1";

/// Waits until `pred` holds for the screen; gives the screen.
fn wait_for(socket: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    common::wait_for(socket, what, WAIT, |s| pred(s).then_some(())).1
}

/// A TLS gater with a token and a client certificate granted every role on
/// [`STORE`], and a TLS node registered with it.
struct Secure {
    // Fields drop in order: the node before its gater, both before their files.
    _node: NodeProc,
    gater: GaterProc,
    _data: tempfile::TempDir,
    certs: TestCerts,
    token: String,
}

impl Secure {
    fn start() -> Secure {
        let certs = TestCerts::make(&[1]);
        let token = new_token();
        let grant = format!("{STORE}:read+write+admin");
        let entry = TokenEntry {
            name: "console".to_string(),
            hash: token_digest(&token),
            grants: vec![grant.clone()],
        };
        let config = format!(
            "{}\n[[clients]]\nname = \"{CLIENT_NAME}\"\ngrants = [\"{grant}\"]\n",
            entry.to_toml()
        );
        let gater_env = certs.gater_env();
        let gater = GaterProc::start_with_config(
            "127.0.0.1:0",
            &config,
            &gater_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        );
        let data = tempfile::tempdir().expect("temp dir");
        let node_env = certs.node_env(1);
        let node = start_node(
            data.path(),
            1,
            &[STORE],
            &gater.addr,
            &node_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        );
        Secure {
            _node: node,
            gater,
            _data: data,
            certs,
            token,
        }
    }

    fn ca(&self) -> String {
        self.certs.ca().display().to_string()
    }

    /// Appends one event to [`STREAM`] with the `reckon` CLI over TLS with the token,
    /// trying again while the node may still be registering with the gater.
    fn append(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let out = self.try_append();
            if out.status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "reckon append over TLS: {out:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn try_append(&self) -> Output {
        Command::new(bin("reckon"))
            .env_remove("RECKON_GATER")
            .env_remove("RECKON_CA")
            .env_remove("RECKON_TOKEN")
            .args(["--gater", &self.gater.addr, "--ca", &self.ca()])
            .args(["--token", &self.token, "--store", STORE])
            .args([
                "append",
                "--type",
                "OrderPlaced",
                "--data",
                r#"{"total":5}"#,
            ])
            .arg(STREAM)
            .output()
            .expect("run reckon append")
    }
}

/// Checks the cluster view shows the store with its leader, then the appended
/// event in the streams view, then quits.
fn shows_store_leader_and_data(socket: &str) {
    wait_for(socket, "the cluster view with the store's leader", |s| {
        s.contains("[1:Cluster]") && s.contains(STORE) && s.contains("leader")
    });
    let screen = tmux(socket, &["capture-pane", "-p", "-t", "tui"]);
    assert!(
        screen.contains("connected") && !screen.contains("DISCONNECTED"),
        "{screen}"
    );
    tmux(socket, &["send-keys", "-t", "tui", "2"]);
    wait_for(socket, "the stream in the streams view", |s| {
        s.contains("[2:Streams]") && s.contains(STREAM)
    });
    // Open it: `$all` is row 0, the stream row 1.
    tmux(socket, &["send-keys", "-t", "tui", "j", "Enter"]);
    wait_for(socket, "the event", |s| {
        s.contains("OrderPlaced") && s.contains("\"total\": 5")
    });
    quit_and_check_restored(socket, "[2:Streams]", WAIT);
}

#[test]
fn console_works_over_tls_with_a_token_or_a_client_certificate() {
    require_tmux();
    let secure = Secure::start();
    secure.append();

    let with_token = open_tui(
        "reckon-test-tls-token",
        (110, 30),
        &format!(
            "--gater {} --ca {} --token {} --refresh-ms 200",
            secure.gater.addr,
            secure.ca(),
            secure.token
        ),
    );
    shows_store_leader_and_data(with_token.socket());
    drop(with_token);

    let (cert, key) = secure.certs.pair(&format!("client-{CLIENT_NAME}"));
    let with_cert = open_tui(
        "reckon-test-tls-cert",
        (110, 30),
        &format!(
            "--gater {} --ca {} --cert {} --key {} --refresh-ms 200",
            secure.gater.addr,
            secure.ca(),
            cert.display(),
            key.display()
        ),
    );
    shows_store_leader_and_data(with_cert.socket());
}

#[test]
fn console_without_the_ca_says_it_cannot_connect_to_a_tls_gater() {
    require_tmux();
    let secure = Secure::start();
    let tui = open_tui(
        "reckon-test-tls-noca",
        (110, 30),
        &format!(
            "--gater {} --token {} --refresh-ms 200",
            secure.gater.addr, secure.token
        ),
    );
    let socket = tui.socket();
    let screen = wait_for(socket, "a disconnected status with its reason", |s| {
        s.contains("DISCONNECTED")
    });
    // The reason names the gater it could not talk to. It does not say TLS: a
    // clear-text client sees the connection closed, not why.
    assert!(screen.contains(&secure.gater.addr), "{screen}");
    assert!(!screen.contains("leader"), "{screen}");
    quit_and_check_restored(socket, "DISCONNECTED", WAIT);
}
