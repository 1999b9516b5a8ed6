//! TLS on every link, over real processes whose certificates `reckon certs` made: a
//! secure 3-node cluster works as a plain one does (appends, reads, a subscription,
//! the CLI, failover after kill -9 of the leader); clear text, the wrong role and
//! another CA are refused; a node or gater on a non-loopback address without TLS
//! does not start.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reckon_gater::api::{GaterClient, RegistryError, WorkerInfo};
use reckon_gater::subscription::SubscribeOptions;
use reckon_gater::tls::Tls;
use reckon_gater::transport::{Dialer, Service};
use reckon_gater::types::SubscriptionType;
use reckon_gater::{Client, ClientError, ExpectedVersion, NewEvent};
use reckon_node::raft::peer::RaftServiceClient;
use reckon_tests::cluster::{append_until_acked, formed, leader_of, wait_new_leader, Cluster};
use reckon_tests::gater::{start_node, GaterProc};
use reckon_tests::tls::{TestCerts, CLIENT_NAME, GATER_NAME};
use reckon_tests::wait::{self, wait_until};
use reckon_tests::{bin, clear_env, ctx, reckon_run, NodeProc};
use serde_json::json;

/// `reckon --gater GATER EXTRA... ARGS...`: its exit code, stdout and stderr.
fn reckon(gater: &str, extra: &[String], args: &[&str]) -> (i32, String, String) {
    let all: Vec<&str> = extra
        .iter()
        .map(String::as_str)
        .chain(args.iter().copied())
        .collect();
    reckon_run(gater, &[], &all)
}

/// Calls `hello` on the Raft service of the node at `addr`, dialled with `tls`.
async fn raft_hello(addr: &str, tls: Tls) -> Result<reckon_node::raft::peer::Hello, String> {
    let t = Dialer::tls(tls)
        .dial(addr, Service::Raft)
        .await
        .map_err(|e| format!("dial: {e}"))?;
    let raft = RaftServiceClient::new(tarpc::client::Config::default(), t).spawn();
    raft.hello(ctx(30)).await.map_err(|e| format!("call: {e}"))
}

/// Calls `stats` on the worker service of the node at `addr`, dialled with `dialer`.
async fn worker_stats(addr: &str, dialer: &Dialer) -> Result<usize, String> {
    let w = reckon_gater::worker::connect_with(dialer, addr)
        .await
        .map_err(|e| format!("dial: {e}"))?;
    w.stats(ctx(30))
        .await
        .map(|s| s.len())
        .map_err(|e| format!("call: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_with_tls_on_every_link_serves_and_fails_over() {
    let certs = Arc::new(TestCerts::make(&[1, 2, 3]));
    let mut c = Cluster::start_tls(3, &["default"], certs.clone());
    // Three workers registered over TLS and a leader elected over TLS.
    let client = formed(&c).await;
    let s = client.store("default");

    s.append(
        "order-1",
        ExpectedVersion::NoStream,
        vec![NewEvent::json("placed", &json!({"total": 5}))],
    )
    .await
    .expect("append through the TLS gater");
    let events = s.read("order-1", 0, 10).await.expect("read");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "placed");

    let sub = s
        .subscribe(
            SubscriptionType::Stream,
            "order-1",
            "audit",
            SubscribeOptions::default(),
        )
        .await
        .expect("subscribe");
    let mut subscriber = s.subscriber(&sub.key, "c1");
    let first = tokio::time::timeout(wait::for_events(1), subscriber.next_batch())
        .await
        .expect("a delivery in time")
        .expect("delivery");
    assert_eq!(first.iter().map(|e| e.version).collect::<Vec<_>>(), [0]);
    subscriber.ack(first[0].position).await.expect("ack");

    // The CLI with the client certificate reads what was written; without --ca it
    // cannot talk to the gater at all.
    let (code, out, err) = reckon(
        &c.gater.addr,
        &certs.cli_flags(),
        &["--json", "read", "order-1"],
    );
    assert_eq!(code, 0, "reckon over TLS: {err}");
    assert!(out.contains("\"event_type\":\"placed\""), "{out}");
    let (code, _, err) = reckon(&c.gater.addr, &[], &["read", "order-1"]);
    assert_eq!(code, 5, "clear text to a TLS gater is unavailable: {err}");

    // A node whose certificate another CA signed (it trusts this cluster's CA, so
    // nothing on its side stops it) cannot join: the nodes refuse its certificate.
    let other = TestCerts::make(&[4]);
    let (cert, key) = other.pair("node-4");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let fourth = c.add_node_with_env(&[
        ("RECKON_NODE_TLS__CERT", cert),
        ("RECKON_NODE_TLS__KEY", key),
    ]);
    let refused =
        c.node(0)
            .wait_stderr("node 1 refusing the foreign certificate", wait::BASE, |l| {
                l.contains("TLS handshake failed") && l.contains("UnknownIssuer")
            });
    eprintln!("node 1: {refused}");
    // Its store was never initialized: no leader added it. Asked as a peer that it
    // trusts and that trusts it (its own CA), since only node 4's CA vouches for it.
    let hello = raft_hello(
        &c.node(fourth).addr,
        certs.presenting_to("node-2", &other.ca()),
    )
    .await
    .expect("node 4 answers a peer of the CA it trusts");
    assert_eq!(hello.stores, [("default".to_string(), false)]);
    let health = client.health().await.expect("health");
    let default = health
        .stores
        .iter()
        .find(|h| h.store == "default")
        .expect("store default");
    assert_eq!((default.workers, default.learners), (3, 0), "{health:?}");
    c.kill9(fourth);

    // Failover: the leader dies by kill -9, another is elected over TLS, and
    // appends and the subscription go on.
    let old = leader_of(&client, "default").await.expect("a leader");
    c.kill9_id(old);
    wait_new_leader(&client, old).await;
    let after = NewEvent::json("paid", &json!({"total": 5})).with_id(uuid::Uuid::now_v7());
    let r = append_until_acked(&s, "order-1", &after).await;
    assert_eq!(r.version, 1);
    let events = s.read("order-1", 0, 10).await.expect("read after failover");
    assert_eq!(
        events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        ["placed", "paid"]
    );
    // The subscription goes on too: the event appended after the failover comes.
    let deadline = Instant::now() + wait::for_events(2);
    let mut delivered: Vec<String> = Vec::new();
    while !delivered.iter().any(|t| t == "paid") {
        assert!(
            Instant::now() < deadline,
            "the event appended after the failover was not delivered: {delivered:?}"
        );
        if let Ok(Ok(batch)) =
            tokio::time::timeout(Duration::from_secs(5), subscriber.next_batch()).await
        {
            delivered.extend(batch.iter().map(|e| e.event_type.clone()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clear_text_wrong_roles_and_other_cas_are_refused() {
    let certs = TestCerts::make(&[1, 2]);
    let gater_env = certs.gater_env();
    let gater_env: Vec<(&str, &str)> = gater_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let gater = GaterProc::start("127.0.0.1:0", &gater_env);
    let dir = tempfile::tempdir().unwrap();
    let node_env = certs.node_env(1);
    let node_env: Vec<(&str, &str)> = node_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let node = start_node(dir.path(), 1, &["default"], &gater.addr, &node_env);

    // With TLS and only the CA (no client certificate), the gater serves, and the
    // node registered with it over TLS.
    let client = Client::builder(&[gater.addr.as_str()])
        .tls(certs.anonymous())
        .connect()
        .await
        .expect("a TLS client connects");
    wait_until("the node to register over TLS", wait::BASE, || async {
        client.health().await.is_ok_and(|h| {
            h.stores
                .iter()
                .any(|s| s.store == "default" && s.workers == 1 && s.leader.is_some())
        })
    })
    .await;
    let s = client.store("default");
    append_until_acked(&s, "s", &NewEvent::json("t", &json!({}))).await;

    // Clear text to the TLS gater: the RKN1 preamble alone is refused.
    let Err(e) = Client::connect(&[gater.addr.as_str()]).await else {
        panic!("a clear-text client connected to a TLS gater");
    };
    assert!(matches!(e, ClientError::Transport(_)), "{e}");

    // Clear text to the TLS node's worker service: refused. The gater's certificate
    // is let in (the control), a client's is not.
    let plain = worker_stats(&node.addr, &Dialer::plain()).await;
    assert!(plain.is_err(), "clear text to a TLS node: {plain:?}");
    let as_gater = Dialer::tls(certs.presenting(&format!("gater-{GATER_NAME}")));
    assert_eq!(worker_stats(&node.addr, &as_gater).await, Ok(1));
    let as_client = Dialer::tls(certs.presenting(&format!("client-{CLIENT_NAME}")));
    let refused = worker_stats(&node.addr, &as_client).await;
    assert!(
        refused.is_err(),
        "a client certificate on the worker service: {refused:?}"
    );

    // Raft: a node's certificate is answered (the control); a client's, a gater's,
    // none at all, and a node's of another CA are not.
    let hello = raft_hello(&node.addr, certs.presenting("node-2"))
        .await
        .expect("a peer node is answered");
    assert_eq!(hello.node_id, 1);
    for stem in [
        format!("client-{CLIENT_NAME}"),
        format!("gater-{GATER_NAME}"),
    ] {
        let r = raft_hello(&node.addr, certs.presenting(&stem)).await;
        assert!(r.is_err(), "{stem} speaking Raft: {r:?}");
    }
    let r = raft_hello(&node.addr, certs.anonymous()).await;
    assert!(r.is_err(), "Raft without a certificate: {r:?}");
    let other = TestCerts::make(&[2]);
    let r = raft_hello(&node.addr, other.presenting_to("node-2", &certs.ca())).await;
    assert!(
        r.is_err(),
        "a node certificate of another CA speaking Raft: {r:?}"
    );

    // Registrations with the TLS gater: only node 1's own certificate speaks for
    // node 1. A client's or node 2's cannot move its worker elsewhere.
    for stem in [format!("client-{CLIENT_NAME}"), "node-2".to_string()] {
        let t = Dialer::tls(certs.presenting(&stem))
            .dial(&gater.addr, Service::Gater)
            .await
            .expect("dial the gater service");
        let g = GaterClient::new(tarpc::client::Config::default(), t).spawn();
        let worker = WorkerInfo {
            node_id: 1,
            store: "default".into(),
            address: "127.0.0.1:1".into(),
            role: reckon_gater::types::Role::Leader,
            leader: Some(1),
            term: u64::MAX,
            last_log_index: 0,
            applied_index: 0,
            leader_changes: 0,
            appended_events: 0,
        };
        let r = g
            .register(ctx(30), reckon_gater::auth::sign(worker, None))
            .await
            .expect("the gater answers");
        assert!(
            matches!(r, Err(RegistryError::Unauthorized(_))),
            "{stem} registering node 1: {r:?}"
        );
    }

    // Nothing refused changed anything: node 1 is where it was, and the store holds
    // the one event.
    let status = client.cluster_status().await.expect("cluster status");
    let addresses: Vec<&str> = status
        .iter()
        .flat_map(|s| s.nodes.iter().map(|n| n.address.as_str()))
        .collect();
    assert_eq!(addresses, [node.addr.as_str()]);
    assert_eq!(s.read("s", 0, 10).await.expect("read").len(), 1);
}

/// Runs `program ARGS...` with `env` (its own prefix cleared first) and expects it to
/// exit on its own: its exit code and stderr.
fn expect_exit(program: &str, prefix: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(bin(program));
    clear_env(&mut cmd, prefix);
    let out = cmd
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn non_loopback_without_tls_refuses_to_start_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let node_args = ["--listen", "0.0.0.0:0", "--data-dir", data];
    let (code, err) = expect_exit("reckon-node", "RECKON_NODE_", &node_args, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("\"tls\"") && err.contains("insecure = true") && err.contains("0.0.0.0"),
        "the message names the keys: {err}"
    );
    let (code, err) = expect_exit(
        "reckon-gater",
        "RECKON_GATER_",
        &["--listen", "0.0.0.0:0"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("\"tls\"") && err.contains("insecure = true"),
        "{err}"
    );

    // insecure = true lets it start, with a warning.
    let mut cmd = Command::new(bin("reckon-node"));
    cmd.args(node_args).env("RECKON_NODE_INSECURE", "true");
    let node = NodeProc::spawn_watching_stderr(cmd, dir.path());
    let warning = node.wait_stderr("the insecure warning", wait::BASE, |l| {
        l.contains("WARN") && l.contains("insecure = true")
    });
    assert!(warning.contains("without TLS"), "{warning}");
}

#[test]
fn clients_name_the_tls_file_they_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-ca.crt");
    let missing = missing.to_str().unwrap();
    let (code, _, err) = reckon("127.0.0.1:1", &["--ca".into(), missing.into()], &["health"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--ca") && err.contains(missing), "{err}");
    let (code, err) = expect_exit("reckon-tui", "RECKON_TUI_", &["--ca", missing], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--ca") && err.contains(missing), "{err}");
    // A key file where the certificate belongs: named as what it is not.
    let certs = TestCerts::make(&[]);
    let (_, key) = certs.pair(&format!("client-{CLIENT_NAME}"));
    let key = key.to_str().unwrap().to_string();
    let ca = certs.ca().to_str().unwrap().to_string();
    let flags = [
        "--ca".into(),
        ca,
        "--cert".into(),
        key.clone(),
        "--key".into(),
        key,
    ];
    let (code, _, err) = reckon("127.0.0.1:1", &flags, &["health"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--cert") && err.contains("no certificate"),
        "{err}"
    );
    assert!(!err.contains("PRIVATE KEY"), "no key material: {err}");
}
