//! Crash safety of a real `reckon-node` process: SIGKILL in the middle of concurrent
//! appends, restart on the same data directory, and check that nothing acknowledged
//! was lost and that the global log, the stream index and the type and tag indexes
//! still agree. Also: one data directory never serves two nodes, and a node that says
//! it is ready serves its first request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use reckon_gater::types::{AppendResult, EventRecord, ExpectedVersion, NewEvent, TagMatch};
use reckon_gater::{ClientError, StoreHandle};
use reckon_tests::{one_event, wait, NodeProc, StoreClient, DEV_GATER_ANY_PORT};
use serde_json::json;
use uuid::Uuid;

/// Concurrent writers, each with its own connection and its own stream.
const WRITERS: usize = 8;
/// Kill, restart and check this many times on one data directory.
const ROUNDS: usize = 3;
/// Appends acknowledged in a round before the kill is armed; a random delay follows,
/// so each round dies at a different point.
const ACKS_BEFORE_KILL: [usize; ROUNDS] = [10, 60, 150];
/// Most extra time before the kill, in milliseconds.
const KILL_DELAY_MAX_MS: u64 = 250;
/// Most appends one writer makes in one round (a bound, never reached in practice).
const APPENDS_PER_ROUND_MAX: usize = 100_000;

const TYPES: [&str; 3] = ["Deposited", "Withdrawn", "Noted"];

/// An append the node acknowledged.
#[derive(Debug, Clone)]
struct Ack {
    stream: String,
    result: AppendResult,
    ids: Vec<Uuid>,
}

/// The `n`th event of a stream: its type and tags cycle so that every index has
/// something to hold.
fn event(n: u64, id: Uuid) -> NewEvent {
    let tags: &[&str] = match n % 4 {
        0 => &[],
        1 => &["x"],
        2 => &["y"],
        _ => &["x", "y"],
    };
    NewEvent::json(TYPES[(n % 3) as usize], &json!({ "n": n }))
        .with_id(id)
        .with_tags(tags.iter().copied())
}

/// Appends batches of 1 to 3 events to `stream`, each expecting the version the last
/// one left, until the connection dies. Every acknowledged append is recorded in
/// `acks`. A store error is a failure: nobody else writes to `stream`.
async fn writer(
    addr: String,
    stream: String,
    acks: Arc<Mutex<Vec<Ack>>>,
    acked: Arc<AtomicUsize>,
) -> Result<(), String> {
    let Ok(worker) = reckon_gater::worker::connect(&addr).await else {
        return Ok(());
    };
    let client = StoreHandle::direct(worker, "default", Duration::from_secs(10));
    let version = match client.get_version(&stream).await {
        Ok(v) => v,
        Err(ClientError::Store(e)) => return Err(format!("{stream}: get_version: {e:?}")),
        Err(_) => return Ok(()),
    };
    let mut expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
    let mut next = version.map_or(0, |v| v + 1);
    for i in 0..APPENDS_PER_ROUND_MAX {
        let ids: Vec<Uuid> = (0..1 + i % 3).map(|_| Uuid::new_v4()).collect();
        let events = ids
            .iter()
            .enumerate()
            .map(|(k, id)| event(next + k as u64, *id))
            .collect();
        match client.append(&stream, expected, events).await {
            Ok(result) => {
                let n = ids.len() as u64;
                if result.version != next + n - 1
                    || result.last_position - result.first_position != n - 1
                {
                    return Err(format!("{stream}: {n} events acknowledged as {result:?}"));
                }
                acks.lock().expect("acks").push(Ack {
                    stream: stream.clone(),
                    result,
                    ids,
                });
                acked.fetch_add(1, Ordering::SeqCst);
                expected = ExpectedVersion::Exact(result.version);
                next = result.version + 1;
            }
            Err(ClientError::Store(e)) => return Err(format!("{stream}: append refused: {e:?}")),
            // The node is gone: this append may or may not have been applied.
            Err(_) => return Ok(()),
        }
    }
    Err(format!(
        "{stream}: still running after {APPENDS_PER_ROUND_MAX} appends"
    ))
}

/// A tag query and which events it must return.
type TagQuery = (&'static [&'static str], TagMatch, fn(&EventRecord) -> bool);

fn is_tagged(e: &EventRecord, tag: &str) -> bool {
    e.tags.iter().any(|t| t == tag)
}

/// Checks everything the store holds against itself and against `acks`; returns the
/// number of events in the global log.
async fn verify(db: &StoreClient, acks: &[Ack]) -> usize {
    // The global log is gapless from 0.
    let all = db.read_all_everything().await;
    for (i, e) in all.iter().enumerate() {
        assert_eq!(
            e.position, i as u64,
            "global log has a gap or is out of order"
        );
    }

    // Every stream is gapless from 0 and holds exactly the log's records for it.
    let listed = db.list_streams(None, 10_000).await.expect("list_streams");
    let mut by_stream: BTreeMap<String, Vec<EventRecord>> = BTreeMap::new();
    for info in &listed {
        let events = db
            .read_stream_everything(&info.stream_id)
            .await
            .expect("read_stream");
        let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
        assert_eq!(
            versions,
            (0..=info.version).collect::<Vec<_>>(),
            "stream {} is not gapless up to its version",
            info.stream_id
        );
        for e in &events {
            assert_eq!(
                &all[e.position as usize], e,
                "stream index and global log disagree"
            );
        }
        by_stream.insert(info.stream_id.clone(), events);
    }
    for e in &all {
        let in_stream = by_stream
            .get(&e.stream_id)
            .and_then(|s| s.get(e.version as usize));
        assert_eq!(
            in_stream,
            Some(e),
            "event at position {} is not in its stream's index",
            e.position
        );
    }

    // Every acknowledged append is there, as it was acknowledged.
    for ack in acks {
        let r = ack.result;
        assert!(
            (r.last_position as usize) < all.len(),
            "acknowledged append {ack:?} is beyond the end of the log ({} events)",
            all.len()
        );
        let events = &all[r.first_position as usize..=r.last_position as usize];
        let first_version = r.version + 1 - ack.ids.len() as u64;
        assert_eq!(events.len(), ack.ids.len(), "{ack:?}");
        for (k, (e, id)) in events.iter().zip(&ack.ids).enumerate() {
            assert_eq!(
                (e.stream_id.as_str(), e.version, e.event_id),
                (ack.stream.as_str(), first_version + k as u64, *id),
                "acknowledged append {ack:?} is not where it was acknowledged"
            );
        }
    }

    // The type and tag indexes hold exactly the matching events.
    for t in TYPES {
        let expected: Vec<EventRecord> =
            all.iter().filter(|e| e.event_type == t).cloned().collect();
        assert_eq!(
            db.read_by_types_everything(&[t]).await,
            expected,
            "type {t}"
        );
    }
    assert_eq!(db.read_by_types_everything(&[]).await, all, "no types");
    let tag_queries: [TagQuery; 4] = [
        (&["x"], TagMatch::Any, |e| is_tagged(e, "x")),
        (&["y"], TagMatch::Any, |e| is_tagged(e, "y")),
        (&["x", "y"], TagMatch::Any, |e| {
            is_tagged(e, "x") || is_tagged(e, "y")
        }),
        (&["x", "y"], TagMatch::All, |e| {
            is_tagged(e, "x") && is_tagged(e, "y")
        }),
    ];
    for (tags, matching, pick) in tag_queries {
        let expected: Vec<EventRecord> = all.iter().filter(|e| pick(e)).cloned().collect();
        assert_eq!(
            db.read_by_tags_everything(tags, matching).await,
            expected,
            "tags {tags:?} {matching:?}"
        );
    }
    all.len()
}

/// Runs [`ROUNDS`] rounds of concurrent appends, each ended by a SIGKILL, on one data
/// directory, checking the store after every restart; `extra` are node flags.
async fn crash_rounds(extra: &[&str]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let mut stored = 0;
    for (round, acks_before_kill) in ACKS_BEFORE_KILL.into_iter().enumerate() {
        let mut node = NodeProc::start_dev_alone(dir.path(), extra);
        let db = StoreClient::connect_serving(&node, "default").await;
        let snapshot = acks.lock().expect("acks").clone();
        let now_stored = verify(&db, &snapshot).await;
        assert!(now_stored >= stored, "the log shrank across a restart");
        stored = now_stored;

        let acked = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                tokio::spawn(writer(
                    node.addr.clone(),
                    format!("crash-{w}"),
                    acks.clone(),
                    acked.clone(),
                ))
            })
            .collect();
        // How long a round may take to reach its kill point: it grows with the
        // appends it waits for.
        let round_limit = wait::for_appends(acks_before_kill as u64);
        let deadline = Instant::now() + round_limit;
        while acked.load(Ordering::SeqCst) < acks_before_kill {
            assert!(
                Instant::now() < deadline,
                "round {round}: only {} appends acknowledged in {round_limit:?}",
                acked.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let delay = rand::thread_rng().gen_range(0..=KILL_DELAY_MAX_MS);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        node.kill9();
        for t in tasks {
            t.await.expect("writer task").expect("writer");
        }
        let round_acks = acked.load(Ordering::SeqCst);
        assert!(round_acks >= acks_before_kill, "round {round}");
        println!("round {round}: killed after {delay} ms more, {round_acks} appends acknowledged");
        drop(db);
    }
    let node = NodeProc::start_dev_alone(dir.path(), extra);
    let db = StoreClient::connect_serving(&node, "default").await;
    let acks = acks.lock().expect("acks").clone();
    let acked_events: usize = acks.iter().map(|a| a.ids.len()).sum();
    let stored = verify(&db, &acks).await;
    println!(
        "{stored} events stored, {acked_events} acknowledged in {} appends",
        acks.len()
    );
    // Appends in flight at a kill may have landed too, but never fewer than acked.
    assert!(
        stored >= acked_events,
        "{stored} stored < {acked_events} acknowledged"
    );

    // The store still takes writes where each stream left off.
    for w in 0..WRITERS {
        let stream = format!("crash-{w}");
        let version = db.version(&stream).await.expect("version");
        let r = db
            .append(
                &stream,
                version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
                vec![event(9, Uuid::new_v4())],
            )
            .await
            .expect("append after the crashes");
        assert_eq!(r.version, version.map_or(0, |v| v + 1));
        assert_eq!(r.first_position, stored as u64 + w as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_appends_loses_nothing_acknowledged() {
    crash_rounds(&[]).await;
}

/// The same with a Raft snapshot every few entries and no log kept behind it, so a
/// restart recovers from the state file and a snapshot plus a short log suffix.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_with_frequent_raft_snapshots_loses_nothing_acknowledged() {
    let config_dir = tempfile::tempdir().expect("temp dir");
    let config = config_dir.path().join("node.toml");
    std::fs::write(
        &config,
        "[raft]\nsnapshot_logs_since_last = 16\nmax_in_snapshot_log_to_keep = 0\n",
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8 path");
    crash_rounds(&["--config", config]).await;
}

#[tokio::test]
async fn a_second_node_on_the_same_data_dir_refuses_to_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut first = NodeProc::start_dev_alone(dir.path(), &[]);
    let db = StoreClient::connect_serving(&first, "default").await;
    db.append("s", ExpectedVersion::NoStream, one_event("e"))
        .await
        .expect("append");

    let failed = NodeProc::start_dev_expect_failure(dir.path(), &DEV_GATER_ANY_PORT);
    assert!(
        !failed.status.success() && failed.status.code().is_some(),
        "the second node should exit with an error code: {:?}",
        failed.status
    );
    let lock = dir.path().join("LOCK");
    assert!(
        failed.stderr.contains("is locked by another reckon-node")
            && failed.stderr.contains(&lock.display().to_string()),
        "stderr should name the lock {}: {}",
        lock.display(),
        failed.stderr
    );

    // The first node is unharmed.
    let r = db
        .append("s", ExpectedVersion::Exact(0), one_event("e"))
        .await
        .expect("append after the refused start");
    assert_eq!(r.version, 1);
    assert_eq!(db.read_all_everything().await.len(), 2);

    // Once the first has stopped, the directory can be opened again.
    assert!(first.terminate().success());
    let second = NodeProc::start_dev_alone(dir.path(), &[]);
    let db = StoreClient::connect_serving(&second, "default").await;
    assert_eq!(db.version("s").await.expect("version"), Some(1));
}

/// Starts a node on a new data directory and sends one append at once after the ready
/// line; then restarts it and sends one read at once. Returns the errors seen.
async fn first_requests_after_ready() -> Vec<String> {
    let mut errors = Vec::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut node = NodeProc::start_dev_alone(dir.path(), &[]);
    let db = StoreClient::connect(&node, "default").await;
    let first = db
        .append("s", ExpectedVersion::NoStream, one_event("e"))
        .await;
    let written = match first {
        Ok(_) => Some(0),
        Err(e) => {
            errors.push(format!("fresh node, first append: {e:?}"));
            None
        }
    };
    assert!(node.terminate().success());
    let node = NodeProc::start_dev_alone(dir.path(), &[]);
    let db = StoreClient::connect(&node, "default").await;
    match db.version("s").await {
        Ok(v) if v == written => {}
        Ok(v) => errors.push(format!(
            "restarted node: version {v:?}, expected {written:?}"
        )),
        Err(e) => errors.push(format!("restarted node, first read: {e:?}")),
    }
    errors
}

/// The ready line is what scripts and tests wait for, so a node that printed it must
/// serve: a store in single mode must have elected itself before then. Each trial has
/// a small chance to hit the window, so the test runs many, four at a time.
#[test]
fn a_node_that_says_ready_serves_its_first_request() {
    const THREADS: usize = 4;
    const TRIALS: usize = 25;
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                (0..TRIALS)
                    .flat_map(|_| rt.block_on(first_requests_after_ready()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let errors: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("trial thread"))
        .collect();
    assert!(
        errors.is_empty(),
        "{} of {} first requests failed: {errors:#?}",
        errors.len(),
        THREADS * TRIALS * 2
    );
}

#[test]
fn a_data_dir_that_cannot_be_a_directory_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write a file");
    let data = file.join("data");
    let failed = NodeProc::start_dev_expect_failure(&data, &DEV_GATER_ANY_PORT);
    assert_eq!(failed.status.code(), Some(1), "{:?}", failed.status);
    assert!(
        failed.stderr.contains(&data.display().to_string())
            && failed.stderr.contains("key \"data_dir\"")
            && failed.stderr.contains("cannot create it"),
        "stderr should name the directory and the key: {}",
        failed.stderr
    );
    assert_eq!(std::fs::read(&file).expect("the file is still there"), b"x");
}
