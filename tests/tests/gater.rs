//! The gater as a real process in front of real single-mode nodes: routing by store,
//! leases, deregistration, re-registration after a gater restart, authentication.

use std::time::{Duration, Instant};

use reckon_gater::{Client, ClientError, ExpectedVersion, NewEvent, StoreError};
use reckon_tests::discovery::LoggedNode;
use reckon_tests::gater::{assert_no_workers_at_once, start_node, GaterProc};
use reckon_tests::one_event;
use reckon_tests::wait::{self, wait_until};
use serde_json::json;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

async fn stores_of(c: &Client) -> Vec<String> {
    let mut s = c.list_stores().await.unwrap_or_default();
    s.sort();
    s
}

#[tokio::test]
async fn requests_are_routed_by_store() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let gater = GaterProc::start("127.0.0.1:0", &[]);
    let _n1 = start_node(dirs[0].path(), 1, &["a"], &gater.addr, &[]);
    let _n2 = start_node(dirs[1].path(), 2, &["b"], &gater.addr, &[]);
    let _n3 = start_node(dirs[2].path(), 3, &["c"], &gater.addr, &[]);
    let n4 = start_node(dirs[3].path(), 4, &["d", "e"], &gater.addr, &[]);
    let client = Client::connect(&[gater.addr.as_str()]).await.unwrap();
    wait_until("five stores", Duration::from_secs(30), || async {
        stores_of(&client).await == ["a", "b", "c", "d", "e"]
    })
    .await;
    for (i, store) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let s = client.store(store);
        for n in 0..=i {
            s.append(
                "s",
                ExpectedVersion::Any,
                vec![NewEvent::json("t", &json!({"store": store, "n": n}))],
            )
            .await
            .unwrap();
        }
    }
    for (i, store) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let evs = client.store(store).read("s", 0, 100).await.unwrap();
        assert_eq!(evs.len(), i + 1, "store {store}");
        for e in evs {
            let v: serde_json::Value = serde_json::from_slice(&e.data).unwrap();
            assert_eq!(v["store"], json!(store));
        }
    }
    // Node 4 holds d and e and nothing else.
    let w = reckon_gater::StoreHandle::direct(n4.worker().await, "a", Duration::from_secs(5));
    let r = w.get_version("s").await;
    assert_eq!(
        r,
        Err(ClientError::Store(StoreError::UnknownStore {
            store: "a".into()
        }))
    );
    let h = client.health().await.unwrap();
    assert_eq!(h.stores.len(), 5);
    assert!(h.healthy(), "{h:?}");
    for s in &h.stores {
        assert_eq!((s.workers, s.leaders), (1, 1), "{s:?}");
    }
}

#[tokio::test]
async fn a_killed_node_is_dropped_when_its_lease_runs_out() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let gater = GaterProc::start("127.0.0.1:0", &[("RECKON_GATER_LEASE_MS", "1000")]);
    let _n1 = start_node(dirs[0].path(), 1, &["a"], &gater.addr, &[]);
    let mut n2 = start_node(dirs[1].path(), 2, &["b"], &gater.addr, &[]);
    let client = Client::connect(&[gater.addr.as_str()]).await.unwrap();
    wait_until("both stores healthy", Duration::from_secs(30), || async {
        client
            .health()
            .await
            .is_ok_and(|h| h.healthy() && h.stores.len() == 2)
    })
    .await;
    n2.kill9();
    let killed = Instant::now();
    wait_until(
        "the lease of node 2 to run out",
        Duration::from_secs(20),
        || async {
            client
                .health()
                .await
                .is_ok_and(|h| h.stores.iter().any(|s| s.store == "b" && s.workers == 0))
        },
    )
    .await;
    eprintln!(
        "node 2 dropped {:?} after SIGKILL (lease 1000 ms)",
        killed.elapsed()
    );
    let h = client.health().await.unwrap();
    assert_eq!(h.leases_expired, 1);
    assert!(
        !h.healthy(),
        "a store without workers makes the cluster degraded"
    );
    assert_no_workers_at_once(&client, "b").await;
    // Store a is untouched.
    client
        .store("a")
        .append("s", ExpectedVersion::NoStream, one_event("t"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_stopping_node_deregisters_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // A lease far longer than the test: only deregistration can drop the worker.
    let gater = GaterProc::start("127.0.0.1:0", &[("RECKON_GATER_LEASE_MS", "600000")]);
    let mut node = start_node(dir.path(), 1, &["a"], &gater.addr, &[]);
    let client = Client::connect(&[gater.addr.as_str()]).await.unwrap();
    wait_until("store a", Duration::from_secs(30), || async {
        stores_of(&client).await == ["a"]
    })
    .await;
    let status = node.terminate();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    let h = client.health().await.unwrap();
    assert_eq!(h.stores[0].workers, 0, "{h:?}");
    assert_eq!(h.leases_expired, 0);
}

#[tokio::test]
async fn nodes_register_again_after_a_gater_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut gater = GaterProc::start("127.0.0.1:0", &[("RECKON_GATER_LEASE_MS", "1000")]);
    let addr = gater.addr.clone();
    let _node = start_node(dir.path(), 1, &["a"], &addr, &[]);
    let client = Client::connect(&[addr.as_str()]).await.unwrap();
    wait_until("store a", Duration::from_secs(30), || async {
        stores_of(&client).await == ["a"]
    })
    .await;
    client
        .store("a")
        .append("s", ExpectedVersion::NoStream, one_event("t"))
        .await
        .unwrap();
    gater.kill9();
    let _gater2 = GaterProc::start(&addr, &[("RECKON_GATER_LEASE_MS", "1000")]);
    let client = Client::connect(&[addr.as_str()]).await.unwrap();
    wait_until("store a again", Duration::from_secs(30), || async {
        stores_of(&client).await == ["a"]
    })
    .await;
    assert_eq!(client.store("a").get_version("s").await.unwrap(), Some(0));
}

#[tokio::test]
async fn registration_needs_the_cluster_secret_when_one_is_set() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let gater = GaterProc::start("127.0.0.1:0", &[("RECKON_GATER_SECRET", SECRET)]);
    let _good = start_node(
        dirs[0].path(),
        1,
        &["good"],
        &gater.addr,
        &[("RECKON_NODE_DISCOVERY__SECRET", SECRET)],
    );
    // Without the secret; its log is kept, to count its attempts.
    let bad = LoggedNode::start(
        dirs[1].path(),
        &[
            ("RECKON_NODE_GATERS", &format!("[\"{}\"]", gater.addr)),
            ("RECKON_NODE_STORES", "[\"bad\"]"),
        ],
    );
    let client = Client::connect(&[gater.addr.as_str()]).await.unwrap();
    wait_until("store good", Duration::from_secs(30), || async {
        stores_of(&client).await.contains(&"good".to_string())
    })
    .await;
    // The unsigned node keeps retrying; give it several of its attempts, counted in
    // its log rather than guessed from a sleep.
    wait_until("three refused registrations", wait::BASE, || {
        let refused = bad
            .log()
            .iter()
            .filter(|l| l.contains("gater refused registration"))
            .count();
        async move { refused >= 3 }
    })
    .await;
    assert_eq!(stores_of(&client).await, ["good"]);
}
