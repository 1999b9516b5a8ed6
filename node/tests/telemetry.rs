//! An embedding program attaches a telemetry handler and sees each event with its
//! fields: for an append, a read, a snapshot, a subscription, and on a 3-node cluster
//! a leader election after the leader is stopped. Real nodes (redb files, openraft,
//! loopback TCP) and a real gater, all in this process so the handler sees them.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reckon_gater::subscription::SubscribeOptions;
use reckon_gater::telemetry::{self as t, Event, OwnedEvent, Value};
use reckon_gater::types::SubscriptionType;
use reckon_gater::{Client, ExpectedVersion, NewEvent};
use reckon_node::embedded::EmbeddedCluster;

type Seen = Arc<Mutex<Vec<OwnedEvent>>>;

/// How long the cluster gets to elect and to answer.
const PATIENCE: Duration = Duration::from_secs(30);

fn s(v: &str) -> Value<'static> {
    Value::from(v.to_string())
}

/// The first event named `name` whose fields include every one of `want`, waiting
/// for it up to [`PATIENCE`]; panics with what was seen otherwise.
async fn expect(seen: &Seen, name: &str, want: &[(&str, Value<'static>)]) -> OwnedEvent {
    let deadline = Instant::now() + PATIENCE;
    loop {
        {
            let events = seen.lock().unwrap();
            if let Some(e) = events
                .iter()
                .find(|e| e.name == name && want.iter().all(|(k, v)| e.get(k) == Some(v)))
            {
                return e.clone();
            }
            if Instant::now() >= deadline {
                let named: Vec<_> = events
                    .iter()
                    .filter(|e| e.name.starts_with(&name[..name.rfind('.').unwrap_or(0)]))
                    .collect();
                panic!("no {name} with {want:?}; seen with that name: {named:?}");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn has_duration(e: &OwnedEvent) {
    assert!(
        matches!(e.get("duration_us"), Some(Value::U64(_))),
        "no duration_us in {e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_sees_each_event_with_its_fields() {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    t::attach("telemetry-test", &["reckon_db"], move |e: &Event<'_>| {
        sink.lock().unwrap().push(e.to_owned_event());
    })
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut cluster = EmbeddedCluster::start(3, dir.path(), |c| {
        c.raft.heartbeat_ms = 100;
        c.raft.election_timeout_min_ms = 400;
        c.raft.election_timeout_max_ms = 800;
    })
    .await
    .unwrap();
    for id in 1..=3u64 {
        expect(
            &seen,
            t::STORE_STARTED,
            &[("store", s("default")), ("node_id", Value::U64(id))],
        )
        .await;
        expect(&seen, t::CLUSTER_NODE_UP, &[("node_id", Value::U64(id))]).await;
        expect(
            &seen,
            t::GATER_WORKER_REGISTERED,
            &[("store", s("default")), ("node_id", Value::U64(id))],
        )
        .await;
    }
    // Calls may wait out an election: a deadline that fits it, so that no append
    // is given up by the client and then applied (the counters below count each
    // acknowledged append once).
    let client = Client::connect(&[cluster.gater()])
        .await
        .unwrap()
        .with_timeout(PATIENCE);
    let store = client.store("default");
    // The group forms in the background: wait until it takes writes.
    let deadline = Instant::now() + PATIENCE;
    while store
        .append(
            "warm-up",
            ExpectedVersion::Any,
            vec![NewEvent::json("w", &serde_json::json!(1))],
        )
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the cluster never took a write");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = expect(&seen, t::CLUSTER_LEADER_ELECTED, &[("store", s("default"))]).await;
    assert!(
        first.get("term").and_then(Value::as_u64).is_some(),
        "{first:?}"
    );

    // An append: start, then stop with the new version and a duration.
    let events = vec![
        NewEvent::json("placed", &serde_json::json!(1)),
        NewEvent::json("paid", &serde_json::json!(2)),
    ];
    let r = store
        .append("order-1", ExpectedVersion::NoStream, events)
        .await
        .unwrap();
    assert_eq!(r.version, 1);
    let order = || [("store", s("default")), ("stream", s("order-1"))];
    expect(
        &seen,
        t::STREAM_WRITE_START,
        &[
            order()[0].clone(),
            order()[1].clone(),
            ("event_count", Value::U64(2)),
        ],
    )
    .await;
    let stop = expect(
        &seen,
        t::STREAM_WRITE_STOP,
        &[
            order()[0].clone(),
            order()[1].clone(),
            ("event_count", Value::U64(2)),
            ("new_version", Value::U64(1)),
        ],
    )
    .await;
    has_duration(&stop);
    // A refused append: an error event naming the kind.
    store
        .append(
            "order-1",
            ExpectedVersion::Exact(0),
            vec![NewEvent::json("late", &serde_json::json!(3))],
        )
        .await
        .unwrap_err();
    let err = expect(
        &seen,
        t::STREAM_WRITE_ERROR,
        &[order()[1].clone(), ("error", s("WrongExpectedVersion"))],
    )
    .await;
    has_duration(&err);

    // A read.
    let got = store.read("order-1", 0, 10).await.unwrap();
    assert_eq!(got.len(), 2);
    expect(
        &seen,
        t::STREAM_READ_START,
        &[
            order()[1].clone(),
            ("from", Value::U64(0)),
            ("count", Value::U64(10)),
        ],
    )
    .await;
    let read = expect(
        &seen,
        t::STREAM_READ_STOP,
        &[order()[1].clone(), ("event_count", Value::U64(2))],
    )
    .await;
    has_duration(&read);

    // A snapshot, saved and read back.
    store
        .save_snapshot("order-1", 1, b"{\"total\":3}".to_vec(), Vec::new())
        .await
        .unwrap();
    let created = expect(
        &seen,
        t::SNAPSHOT_CREATED,
        &[
            order()[1].clone(),
            ("version", Value::U64(1)),
            ("size_bytes", Value::U64(11)),
        ],
    )
    .await;
    has_duration(&created);
    store.load_snapshot("order-1", None).await.unwrap();
    expect(
        &seen,
        t::SNAPSHOT_READ,
        &[
            order()[1].clone(),
            ("version", Value::U64(1)),
            ("size_bytes", Value::U64(11)),
        ],
    )
    .await;

    // A subscription: created, delivered, checkpointed, deleted.
    let info = store
        .subscribe(
            SubscriptionType::Stream,
            "order-1",
            "audit",
            SubscribeOptions::default(),
        )
        .await
        .unwrap();
    let key = s(&info.key);
    expect(
        &seen,
        t::SUBSCRIPTION_CREATED,
        &[
            ("key", key.clone()),
            ("kind", s("stream")),
            ("selector", s("order-1")),
            ("name", s("audit")),
        ],
    )
    .await;
    let mut sub = store.subscriber(&info.key, "consumer-1");
    let batch = sub.next_batch().await.unwrap();
    assert_eq!(batch.len(), 2);
    expect(
        &seen,
        t::SUBSCRIPTION_DELIVERED,
        &[
            ("key", key.clone()),
            ("consumer", s("consumer-1")),
            ("event_count", Value::U64(2)),
        ],
    )
    .await;
    sub.ack(batch[1].position).await.unwrap();
    expect(
        &seen,
        t::SUBSCRIPTION_CHECKPOINT,
        &[
            ("key", key.clone()),
            ("consumer", s("consumer-1")),
            ("checkpoint", Value::U64(batch[1].position)),
        ],
    )
    .await;
    store.unsubscribe(&info.key).await.unwrap();
    expect(
        &seen,
        t::SUBSCRIPTION_DELETED,
        &[("store", s("default")), ("key", key)],
    )
    .await;

    // The gater gathers every node's counters: the warm-up and the order-1 append
    // were acknowledged (each counted once, by the node that took it), all three
    // nodes hold the three events once replication has reached them.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stats = client.stats().await.unwrap();
        assert_eq!(stats.len(), 3, "{stats:?}");
        assert!(stats.iter().all(|s| s.store == "default"), "{stats:?}");
        assert_eq!(stats.iter().map(|s| s.appends).sum::<u64>(), 2, "{stats:?}");
        assert_eq!(stats.iter().map(|s| s.appended_events).sum::<u64>(), 3);
        let leaders = stats
            .iter()
            .filter(|s| s.role == Some(reckon_gater::types::Role::Leader))
            .count();
        if leaders == 1 && stats.iter().all(|s| s.events == 3) {
            break;
        }
        assert!(Instant::now() < deadline, "stats never settled: {stats:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Stop the leader: the others elect another and say who led before.
    let status = client.cluster_status().await.unwrap();
    let old = status
        .iter()
        .find(|s| s.store == "default")
        .and_then(|s| s.leader)
        .expect("a leader");
    assert!(cluster.stop_node(old).await);
    expect(
        &seen,
        t::STORE_STOPPED,
        &[("store", s("default")), ("node_id", Value::U64(old))],
    )
    .await;
    expect(
        &seen,
        t::CLUSTER_NODE_DOWN,
        &[("node_id", Value::U64(old)), ("reason", s("shutdown"))],
    )
    .await;
    expect(
        &seen,
        t::GATER_WORKER_UNREGISTERED,
        &[("node_id", Value::U64(old)), ("reason", s("deregistered"))],
    )
    .await;
    let deadline = Instant::now() + PATIENCE;
    let elected = loop {
        let found = seen
            .lock()
            .unwrap()
            .iter()
            .find(|e| {
                e.name == t::CLUSTER_LEADER_ELECTED
                    && e.get("previous_leader") == Some(&Value::U64(old))
                    && e.get("leader")
                        .and_then(Value::as_u64)
                        .is_some_and(|l| l != old)
            })
            .cloned();
        if let Some(e) = found {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "no new leader after {old} stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let observer = elected.get("node_id").and_then(Value::as_u64).unwrap();
    assert_ne!(observer, old, "{elected:?}");
    // A surviving node also saw the stopped one go away.
    expect(&seen, t::CLUSTER_NODE_DOWN, &[("peer", Value::U64(old))]).await;

    assert!(t::detach("telemetry-test"));
    cluster.stop().await;
}
