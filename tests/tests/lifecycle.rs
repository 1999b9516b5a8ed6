//! A node stopped with SIGTERM under load drains: it deregisters from its gater
//! first, then stops taking requests, answers those it had taken, and exits 0;
//! every append a client saw succeed is on disk when it comes back. A gater
//! stopped with SIGTERM with clients connected exits 0 promptly.
//!
//! `gater.rs` (`a_stopping_node_deregisters_at_once`) covers deregistration of an
//! idle node; this covers the same stop with requests in flight.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reckon_gater::{Client, ClientError, ExpectedVersion, NewEvent, StoreError};
use reckon_tests::dev::wait_for_store;
use reckon_tests::gater::{start_node, GaterProc};
use reckon_tests::one_event;
use reckon_tests::wait::{self, wait_until};
use serde_json::json;
use uuid::Uuid;

/// Concurrent writers, each to its own stream.
const WRITERS: usize = 6;
/// Appends the writers have had acknowledged, between them, before the node gets
/// SIGTERM: it stops under load, however fast this machine writes.
const ACKED_BEFORE_STOP: usize = 60;
/// The gater's lease: far longer than the test, so that only deregistration can
/// drop the worker in time. The node heartbeats every lease / 3, at most every
/// 10 s, so a lease that runs out does so at least 50 s after the node's last word.
const LEASE_MS: &str = "60000";
/// How soon after the node's exit the gater must have dropped it. Two outcomes to
/// tell apart: dropped on deregistration, which the node does before it exits (so
/// at once), or only when the lease runs out (at least 50 s later). 15 s is far
/// above the first on any machine and well below the second.
const DROPPED_WITHIN: Duration = Duration::from_secs(15);
/// Longest any one append may take to get an answer, Ok or not: twice the client's
/// own deadline (5 s by default), which answers every call by then whatever the
/// node does; an append itself takes milliseconds.
const APPEND_DEADLINE: Duration = Duration::from_secs(10);
/// The node's id and store.
const NODE_ID: u64 = 1;
const STORE: &str = "default";

/// What one writer saw.
#[derive(Default)]
struct Outcome {
    /// Acknowledged appends: the version each got, with its event id.
    acked: BTreeMap<u64, Uuid>,
    /// Errors, by their text, with how often each came.
    errors: BTreeMap<String, usize>,
    /// Appends that got no answer within [`APPEND_DEADLINE`].
    hung: usize,
}

/// Appends one event at a time to `stream` until `stop`, recording every outcome and
/// counting acknowledged appends in `acked_so_far`.
async fn write_until(
    client: Client,
    stream: String,
    stop: Arc<AtomicBool>,
    acked_so_far: Arc<AtomicUsize>,
) -> Outcome {
    let store = client.store(STORE);
    let mut out = Outcome::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let id = Uuid::now_v7();
        let mut event = NewEvent::json("written", &json!({ "n": n }));
        event.event_id = Some(id);
        n += 1;
        let answer = tokio::time::timeout(
            APPEND_DEADLINE,
            store.append(&stream, ExpectedVersion::Any, vec![event]),
        )
        .await;
        match answer {
            Ok(Ok(r)) => {
                let before = out.acked.insert(r.version, id);
                assert!(
                    before.is_none(),
                    "{stream}: version {} acked twice",
                    r.version
                );
                acked_so_far.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                *out.errors.entry(error_kind(&e)).or_default() += 1;
                // The node is going away: do not spin on instant refusals.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => out.hung += 1,
        }
    }
    out
}

/// An error's kind, its variant name (what tests compare), or its text otherwise.
fn error_kind(e: &ClientError) -> String {
    match e {
        ClientError::Store(StoreError::NoWorkers { .. }) => "NoWorkers".to_owned(),
        other => other.to_string(),
    }
}

/// Whether the gater still lists node [`NODE_ID`] for any store.
async fn gater_lists_the_node(client: &Client) -> bool {
    let stores = client.cluster_status().await.expect("cluster status");
    stores
        .iter()
        .any(|s| s.nodes.iter().any(|n| n.node_id == NODE_ID))
}

/// Every event of `stream`, paging forward.
async fn read_stream(client: &Client, stream: &str) -> Vec<reckon_gater::EventRecord> {
    let store = client.store(STORE);
    let mut events: Vec<reckon_gater::EventRecord> = Vec::new();
    loop {
        let from = events.last().map_or(0, |e| e.version + 1);
        let page = store.read(stream, from, 1000).await.expect("read back");
        if page.is_empty() {
            return events;
        }
        events.extend(page);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_drains_and_loses_no_acknowledged_append() {
    let dir = tempfile::tempdir().unwrap();
    let gater = GaterProc::start("127.0.0.1:0", &[("RECKON_GATER_LEASE_MS", LEASE_MS)]);
    let mut node = start_node(dir.path(), NODE_ID, &[STORE], &gater.addr, &[]);
    let client = wait_for_store(&gater.addr, STORE).await;

    let stop = Arc::new(AtomicBool::new(false));
    let acked_so_far = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            tokio::spawn(write_until(
                client.clone(),
                format!("writer-{i}"),
                stop.clone(),
                acked_so_far.clone(),
            ))
        })
        .collect();
    wait_until(
        "the writers' appends before the stop",
        wait::for_appends(ACKED_BEFORE_STOP as u64),
        || async { acked_so_far.load(Ordering::Relaxed) >= ACKED_BEFORE_STOP },
    )
    .await;

    // `terminate` blocks until the exit; the writers keep going meanwhile.
    let (node, status, exited) = tokio::task::spawn_blocking(move || {
        let status = node.terminate();
        (node, status, Instant::now())
    })
    .await
    .unwrap();
    drop(node);
    assert!(status.success(), "SIGTERM under load exits 0: {status:?}");
    let deadline = exited + DROPPED_WITHIN;
    while gater_lists_the_node(&client).await {
        assert!(
            Instant::now() < deadline,
            "the gater still lists node {NODE_ID} {DROPPED_WITHIN:?} after it exited \
             (lease {LEASE_MS} ms)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for w in writers {
        outcomes.push(w.await.unwrap());
    }
    let acked: usize = outcomes.iter().map(|o| o.acked.len()).sum();
    let hung: usize = outcomes.iter().map(|o| o.hung).sum();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for o in &outcomes {
        for (e, n) in &o.errors {
            *errors.entry(e.clone()).or_default() += n;
        }
    }
    eprintln!("{acked} appends acknowledged, errors {errors:?}, {hung} without an answer");
    assert_eq!(
        hung, 0,
        "every append is answered within {APPEND_DEADLINE:?}"
    );
    assert!(acked > 0, "the writers got appends through before the stop");
    // The node left the gater before it stopped taking requests, so a client sees
    // either success or "no workers", never a request cut off half-way.
    assert!(
        errors.keys().all(|e| e == "NoWorkers"),
        "only NoWorkers after the drain: {errors:?}"
    );

    let _node = start_node(dir.path(), NODE_ID, &[STORE], &gater.addr, &[]);
    wait_until(
        "the node to serve again",
        Duration::from_secs(30),
        || async { client.store(STORE).get_version("writer-0").await.is_ok() },
    )
    .await;
    for (i, outcome) in outcomes.iter().enumerate() {
        let stream = format!("writer-{i}");
        let on_disk: BTreeMap<u64, Uuid> = read_stream(&client, &stream)
            .await
            .into_iter()
            .map(|e| (e.version, e.event_id))
            .collect();
        for (version, id) in &outcome.acked {
            assert_eq!(
                on_disk.get(version),
                Some(id),
                "{stream}: acknowledged version {version} is not on disk as acknowledged"
            );
        }
    }
}

#[tokio::test]
async fn a_gater_with_clients_stops_on_sigterm_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    // A grace far longer than the stop should take: a drain that waited for the
    // idle connection would only end when the grace runs out.
    let mut gater = GaterProc::start(
        "127.0.0.1:0",
        &[
            ("RECKON_GATER_LEASE_MS", LEASE_MS),
            ("RECKON_GATER_SHUTDOWN_GRACE_MS", LONG_GRACE_MS),
        ],
    );
    let _node = start_node(dir.path(), NODE_ID, &[STORE], &gater.addr, &[]);
    let client = wait_for_store(&gater.addr, STORE).await;
    client
        .store(STORE)
        .append("s", ExpectedVersion::Any, one_event("t"))
        .await
        .unwrap();
    // The client's connection stays open and idle: the drain must not wait for it.
    // Two outcomes to tell apart: the gater exits at once (milliseconds), or its
    // drain waits for the connection and it exits when the grace (20 s) runs out.
    // Half the grace separates them on any machine.
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || gater.terminate())
        .await
        .unwrap();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    assert!(
        started.elapsed() < long_grace() / 2,
        "an idle connection does not hold the gater up: {:?}",
        started.elapsed()
    );
    let after = client.store(STORE).get_version("s").await;
    assert!(after.is_err(), "the gater is gone: {after:?}");
}

/// How long the drain may wait for the request in flight: far longer than the test
/// waits, so that only the second signal can end the process in time.
const LONG_GRACE_MS: &str = "20000";
/// [`LONG_GRACE_MS`] as a duration.
fn long_grace() -> Duration {
    Duration::from_millis(LONG_GRACE_MS.parse().expect("a number of milliseconds"))
}
/// How long the long-poll in flight waits for events that never come.
const POLL_WAIT: Duration = Duration::from_secs(25);
/// How long the first SIGTERM must leave the process draining. The process either
/// drains (it runs until the grace or the poll is over, 20 s) or exits at once; a
/// slower machine can only make it exit later, so this cannot fail for speed.
const STILL_DRAINING_AFTER: Duration = Duration::from_millis(1500);
/// How soon the second SIGTERM must end it. Two outcomes to tell apart: it exits at
/// once (a signal handler and an exit: milliseconds), or it drains on until the
/// grace runs out, 20 s after the first signal and so at least 18.5 s after the
/// second. 6 s is a third of the second and far above the first on any machine.
const ENDED_WITHIN: Duration = Duration::from_secs(6);

/// Subscribes to a stream nobody writes and long-polls it: a request in flight until
/// its wait is over. Gives the poll's task once the node has taken the poll (it
/// counts the consumer as attached).
async fn poll_in_flight(store: reckon_gater::StoreHandle) -> tokio::task::JoinHandle<()> {
    let info = store
        .subscribe(
            reckon_gater::types::SubscriptionType::Stream,
            "never-written",
            "drain",
            reckon_gater::subscription::SubscribeOptions::default(),
        )
        .await
        .expect("subscribe");
    let poll = {
        let (store, key) = (store.clone(), info.key.clone());
        tokio::spawn(async move {
            let _ = store.poll(&key, "c1", None, 10, POLL_WAIT).await;
        })
    };
    wait_until("the node to take the poll", wait::BASE, || async {
        store
            .subscription(&info.key)
            .await
            .is_ok_and(|s| s.consumers == 1)
    })
    .await;
    assert!(!poll.is_finished(), "the poll answered before the stop");
    poll
}

/// The first SIGTERM leaves the process draining the poll; the second ends it at
/// once with exit status 1.
fn second_signal_ends_it(
    pid: u32,
    mut exit_within: impl FnMut(Duration) -> Option<std::process::ExitStatus>,
) {
    reckon_tests::send_term(pid);
    assert!(
        exit_within(STILL_DRAINING_AFTER).is_none(),
        "it exited while a request was in flight and its grace ran"
    );
    reckon_tests::send_term(pid);
    let status = exit_within(ENDED_WITHIN).expect("a second SIGTERM ends it at once");
    assert_eq!(status.code(), Some(1), "{status:?}");
}

/// A node draining a request that will not finish soon still runs after the first
/// SIGTERM; a second SIGTERM ends it at once, with exit status 1 and a line saying
/// why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_ends_a_draining_node_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = reckon_tests::dev_command(dir.path());
    cmd.env("RECKON_NODE_SHUTDOWN_GRACE_MS", LONG_GRACE_MS);
    let mut node = reckon_tests::NodeProc::spawn_capturing_stderr(cmd, dir.path());
    let client = wait_for_store(&reckon_tests::dev::gater_addr(&node), STORE).await;
    let poll = poll_in_flight(client.store(STORE)).await;
    tokio::task::block_in_place(|| {
        let pid = node.pid();
        second_signal_ends_it(pid, |within| node.exit_within(within));
    });
    let stderr = node.stderr_after_exit();
    assert!(
        stderr.contains("second signal: exiting at once"),
        "stderr: {stderr}"
    );
    poll.abort();
}

/// The same for a gater draining a poll it forwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_ends_a_draining_gater_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut gater = GaterProc::start(
        "127.0.0.1:0",
        &[("RECKON_GATER_SHUTDOWN_GRACE_MS", LONG_GRACE_MS)],
    );
    let _node = start_node(dir.path(), NODE_ID, &[STORE], &gater.addr, &[]);
    let client = wait_for_store(&gater.addr, STORE).await;
    let poll = poll_in_flight(client.store(STORE)).await;
    tokio::task::block_in_place(|| {
        let pid = gater.pid();
        second_signal_ends_it(pid, |within| gater.exit_within(within));
    });
    poll.abort();
}
