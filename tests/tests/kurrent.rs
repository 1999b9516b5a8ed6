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
use reckon_tests::kurrent::proto::event_store::client as pb;
use reckon_tests::kurrent::proto::event_store::client::streams::{
    batch_append_req, batch_append_resp, BatchAppendReq,
};
use reckon_tests::kurrent::KurrentConn;
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
/// with the store's leader killed while they are live; then every scenario of the
/// dev node's test on that cluster, two of its three nodes up.
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
    // Every client scenario again, on the cluster whose old leader is still down.
    let uri = uri(&kurrent);
    tokio::task::spawn_blocking(move || run_script("scenarios.py", &[&uri]))
        .await
        .unwrap();
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

fn pb_uuid(id: uuid::Uuid) -> pb::Uuid {
    pb::Uuid {
        value: Some(pb::uuid::Value::String(id.to_string())),
    }
}

fn proposed(event_type: &str) -> batch_append_req::ProposedMessage {
    batch_append_req::ProposedMessage {
        id: Some(pb_uuid(uuid::Uuid::new_v4())),
        metadata: [
            ("type".to_string(), event_type.to_string()),
            ("content-type".to_string(), "application/json".to_string()),
        ]
        .into(),
        custom_metadata: Vec::new(),
        data: b"{}".to_vec(),
    }
}

fn batch(
    correlation: uuid::Uuid,
    stream: Option<(&str, batch_append_req::options::ExpectedStreamPosition)>,
    events: &[&str],
    is_final: bool,
) -> BatchAppendReq {
    BatchAppendReq {
        correlation_id: Some(pb_uuid(correlation)),
        options: stream.map(|(name, expected)| batch_append_req::Options {
            stream_identifier: Some(pb::StreamIdentifier {
                stream_name: name.as_bytes().to_vec(),
            }),
            expected_stream_position: Some(expected),
            deadline_option: None,
        }),
        proposed_messages: events.iter().map(|t| proposed(t)).collect(),
        is_final,
    }
}

/// Several batches on one `BatchAppend` call, as .NET's client sends every append
/// of an application: a batch in two messages with two others between them, and
/// one whose expectation fails. Each is answered once, by its correlation id, and
/// only the one whose expectation fails writes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn batches_share_one_batch_append_call() {
    use batch_append_req::options::ExpectedStreamPosition as Expected;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start_dev(dir.path(), &[]);
    let (gater, kurrent) = dev::gater_and_kurrent_addrs(&node);
    let client = dev::wait_for_store(&gater, "default").await;
    let conn = KurrentConn::connect(&kurrent).await.unwrap();
    let (a, b, c) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    let requests = vec![
        batch(
            a,
            Some(("batch-a", Expected::NoStream(()))),
            &["a0", "a1"],
            false,
        ),
        batch(b, Some(("batch-b", Expected::Any(()))), &["b0"], true),
        batch(
            c,
            Some(("batch-c", Expected::StreamExists(()))),
            &["c0"],
            true,
        ),
        batch(a, None, &["a2"], true),
    ];
    let mut answers = conn
        .client()
        .batch_append(futures::stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut by_id = std::collections::HashMap::new();
    while let Some(answer) = answers.message().await.unwrap() {
        let id = match answer.correlation_id.as_ref().and_then(|u| u.value.clone()) {
            Some(pb::uuid::Value::String(s)) => uuid::Uuid::parse_str(&s).unwrap(),
            other => panic!("an answer without its correlation id: {other:?}"),
        };
        assert!(
            by_id.insert(id, answer).is_none(),
            "two answers for batch {id}"
        );
    }
    assert_eq!(by_id.len(), 3, "{by_id:?}");
    let revision = |id: &uuid::Uuid| match &by_id[id].result {
        Some(batch_append_resp::Result::Success(s)) => s.current_revision_option,
        other => panic!("batch {id}: {other:?}"),
    };
    use batch_append_resp::success::CurrentRevisionOption::CurrentRevision;
    assert_eq!(revision(&a), Some(CurrentRevision(2)));
    assert_eq!(revision(&b), Some(CurrentRevision(0)));
    match &by_id[&c].result {
        Some(batch_append_resp::Result::Error(status)) => {
            let detail = status.details.as_ref().expect("a detail");
            assert!(
                detail
                    .type_url
                    .ends_with("event_store.client.WrongExpectedVersion"),
                "{status:?}"
            );
        }
        other => panic!("batch c should have been refused: {other:?}"),
    }
    let s = client.store("default");
    let types: Vec<String> = s
        .read("batch-a", 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(types, ["a0", "a1", "a2"]);
    assert_eq!(s.get_version("batch-c").await.unwrap(), None);
}
