//! The KurrentDB front door, driven by a client nobody here wrote: the official
//! Python client `kurrentdbclient` (pinned in `tests/kurrent/requirements.txt`),
//! running the scenarios of `tests/kurrent/*.py` against real processes.
//!
//! The client's Python is `$RECKON_KURRENT_PY`, else `target/kurrent-py/bin/python`,
//! the virtual environment `.ci/run` makes. Without it these tests fail, never skip:
//!
//! ```text
//! python3 -m venv target/kurrent-py
//! target/kurrent-py/bin/pip install -r tests/kurrent/requirements.txt
//! ```

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reckon_tests::cluster::{self, Cluster};
use reckon_tests::gater::{start_node, GaterProc};
use reckon_tests::tls::TestCerts;
use reckon_tests::wait::wait_until;
use reckon_tests::{bin, dev, NodeProc};

/// The longest a scenario script may run before the test gives up on it.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python that has the pinned client; panics saying how to make it when there
/// is none.
fn python() -> PathBuf {
    let path = std::env::var_os("RECKON_KURRENT_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/kurrent-py/bin/python"));
    let ok = Command::new(&path)
        .args(["-c", "import kurrentdbclient"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "no Python with kurrentdbclient at {} (set RECKON_KURRENT_PY, or run: python3 -m venv \
         target/kurrent-py && target/kurrent-py/bin/pip install -r tests/kurrent/requirements.txt)",
        path.display()
    );
    path
}

fn uri(addr: &str) -> String {
    format!("kurrentdb://{addr}?tls=false")
}

fn script(name: &str) -> PathBuf {
    repo().join("tests/kurrent").join(name)
}

/// Runs `script` with `args`, printing its output, and panics unless it succeeds.
fn run_script(name: &str, args: &[&str]) {
    let out = Command::new(python())
        .arg(script(name))
        .args(args)
        .output()
        .expect("run the scenario script");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "{name} failed:\n{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_client_against_a_dev_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start_dev(dir.path(), &[]);
    let (gater, kurrent) = dev::gater_and_kurrent_addrs(&node);
    dev::wait_for_store(&gater, "default").await;
    let uri = uri(&kurrent);
    tokio::task::spawn_blocking(move || run_script("scenarios.py", &[&uri]))
        .await
        .unwrap();
}

/// The same catch-up subscriptions on a 3-node cluster behind a standalone gater,
/// with the store's leader killed while they are live.
#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_survives_the_leader_killed_on_a_cluster() {
    let mut c = Cluster::start_with_gater_env(
        3,
        &["default"],
        &[("RECKON_GATER_KURRENT_LISTEN", "127.0.0.1:0")],
    );
    let client = cluster::formed(&c).await;
    let kurrent = c.gater.kurrent.clone().expect("the gater serves KurrentDB");
    let mut child = Command::new(python())
        .arg(script("failover.py"))
        .arg(uri(&kurrent))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run failover.py");
    let stderr = child.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut output = Vec::new();
    loop {
        let line = lines.recv_timeout(SCRIPT_TIMEOUT).unwrap_or_else(|_| {
            panic!("failover.py never caught up; said:\n{}", output.join("\n"))
        });
        let caught_up = line == "CAUGHT_UP";
        output.push(line);
        if caught_up {
            break;
        }
    }
    let leader = cluster::leader_of(&client, "default")
        .await
        .expect("a leader");
    c.kill9_id(leader);
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "go").unwrap();
    drop(stdin);
    output.extend(lines.iter());
    let status = child.wait().unwrap();
    let stderr = stderr.join().unwrap_or_default();
    let text = output.join("\n");
    println!("{text}\n{stderr}");
    assert!(
        status.success(),
        "failover.py failed after leader {leader} was killed:\n{text}\n{stderr}"
    );
}

/// A token as `reckon token create` printed it: the token and its config entry.
fn token_create(name: &str, grant: &str) -> (String, String) {
    let out = Command::new(bin("reckon"))
        .env_remove("RECKON_TOKEN")
        .args(["token", "create", "--name", name, "--grant", grant])
        .stdin(Stdio::null())
        .output()
        .expect("run reckon token create");
    assert!(out.status.success(), "token create failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    (
        v["token"].as_str().expect("token").to_string(),
        v["config"].as_str().expect("config").to_string(),
    )
}

/// With `[tls]` and `[[tokens]]` on the gater, the front door serves TLS with the
/// gater's certificate and takes basic auth's password as a token, with its grants.
#[tokio::test(flavor = "multi_thread")]
async fn tls_and_tokens_on_the_front_door() {
    let certs = TestCerts::make(&[1]);
    let (writer, writer_entry) = token_create("app", "default:read+write");
    let (reader, reader_entry) = token_create("reader", "default:read");
    let mut env = certs.gater_env();
    env.push((
        "RECKON_GATER_KURRENT_LISTEN".into(),
        "127.0.0.1:0".to_string(),
    ));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let gater = GaterProc::start_with_config(
        "127.0.0.1:0",
        &[writer_entry, reader_entry].join("\n"),
        &env,
    );
    let dir = tempfile::tempdir().unwrap();
    let node_env = certs.node_env(1);
    let node_env: Vec<(&str, &str)> = node_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let _node = start_node(dir.path(), 1, &["default"], &gater.addr, &node_env);
    let client = reckon_gater::Client::builder(&[gater.addr.as_str()])
        .tls(certs.anonymous())
        .token(&writer)
        .connect()
        .await
        .expect("connect with TLS and a token");
    wait_until("store default led", Duration::from_secs(30), || async {
        client
            .health()
            .await
            .is_ok_and(|h| h.stores.iter().any(|s| s.leader.is_some()))
    })
    .await;
    let kurrent = gater.kurrent.clone().expect("the gater serves KurrentDB");
    let ca = certs.ca();
    let ca = ca.to_str().expect("utf-8 path").to_string();
    tokio::task::spawn_blocking(move || {
        run_script("secured.py", &[&kurrent, &ca, &writer, &reader])
    })
    .await
    .unwrap();
}
