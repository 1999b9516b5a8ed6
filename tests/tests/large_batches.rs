//! Large batches on a healthy 3-node cluster of real processes on loopback (issue
//! 11): four writers each append batches of 1,000 events of about 4 KB (about 4 MB
//! per append, within the default limits), once with every node up and once with a
//! follower stopped (SIGSTOP) during the load and resumed after it.
//!
//! Every append must be acknowledged, or refused with a definite error, within its
//! caller's deadline; afterwards every replica must hold the same log within a
//! bounded wait; and leadership must stay put (at most one leader change).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reckon_gater::api::StoreStatus;
use reckon_gater::types::{ExpectedVersion, NewEvent};
use reckon_gater::Client;
use reckon_tests::cluster::{formed, Cluster};
use reckon_tests::faults::history::{outcome_of, Outcome};
use reckon_tests::faults::replicas;
use serde_json::json;

const STORE: &str = "default";

/// Concurrent writers, one stream each.
const WRITERS: usize = 4;

/// Appends per writer, one after the other.
const APPENDS_PER_WRITER: usize = 8;

/// Events per append.
const EVENTS_PER_APPEND: usize = 1_000;

/// Bytes of each event's data.
const EVENT_DATA_BYTES: usize = 4_000;

/// The node's default limit on one append's bytes (`limits.batch_bytes_max`).
const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// A writer stops after this many appends in a row without a definite answer: the
/// verdict is in, and each one costs a whole deadline.
const UNDECIDED_IN_A_ROW_MAX: usize = 2;

/// The deadline of each append.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the replicas may take to apply everything once the load is over: a
/// base, plus time for each append to reach a follower that was stopped.
fn converge_wait() -> Duration {
    Duration::from_secs(60) + Duration::from_secs(2) * (WRITERS * APPENDS_PER_WRITER) as u32
}

/// One cluster at a time: two would share two cores and one disk.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn one_cluster() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER.lock().await
}

/// The `n`th batch of writer `w`: [`EVENTS_PER_APPEND`] events of
/// [`EVENT_DATA_BYTES`] bytes of JSON each.
fn batch(w: usize, n: usize) -> Vec<NewEvent> {
    (0..EVENTS_PER_APPEND)
        .map(|k| {
            let head = json!({ "w": w, "n": n, "k": k, "pad": "" }).to_string();
            let pad = "x".repeat(EVENT_DATA_BYTES - head.len());
            NewEvent::json("big", &json!({ "w": w, "n": n, "k": k, "pad": pad }))
        })
        .collect()
}

/// What one append came to.
#[derive(Debug)]
struct Sent {
    writer: usize,
    n: usize,
    took: Duration,
    outcome: Outcome,
}

/// Appends [`APPENDS_PER_WRITER`] large batches to `big-{w}`, one after the other,
/// counting each answer in `answered`.
async fn writer(w: usize, client: Client, answered: Arc<AtomicUsize>) -> Vec<Sent> {
    let s = client.store(STORE);
    let mut out: Vec<Sent> = Vec::new();
    for n in 0..APPENDS_PER_WRITER {
        let undecided = out
            .iter()
            .rev()
            .take_while(|s| !s.outcome.is_definite())
            .count();
        if undecided >= UNDECIDED_IN_A_ROW_MAX {
            break;
        }
        let events = batch(w, n);
        let started = Instant::now();
        let outcome = match s
            .append(&format!("big-{w}"), ExpectedVersion::Any, events)
            .await
        {
            Ok(r) => Outcome::Appended(r),
            Err(e) => outcome_of(&e),
        };
        out.push(Sent {
            writer: w,
            n,
            took: started.elapsed(),
            outcome,
        });
        answered.fetch_add(1, Ordering::Relaxed);
    }
    out
}

fn status_of(status: &[StoreStatus]) -> &StoreStatus {
    status
        .iter()
        .find(|s| s.store == STORE)
        .expect("the store's status")
}

/// Leader changes each node has counted, by node id.
fn leader_changes(st: &StoreStatus) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = st
        .nodes
        .iter()
        .map(|n| (n.node_id, n.leader_changes))
        .collect();
    v.sort();
    v
}

/// Polls until every node reports the same applied index as the highest, for at
/// most `limit`; whether they did.
async fn applied_everywhere(client: &Client, nodes: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(status) = client.cluster_status().await {
            let st = status_of(&status);
            let top = st.nodes.iter().map(|n| n.applied_index).max();
            if st.nodes.len() == nodes && st.nodes.iter().all(|n| Some(n.applied_index) == top) {
                return true;
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(reckon_tests::wait::POLL_EVERY * 4).await;
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid} failed");
}

/// Runs the load on a fresh cluster; with `pause_follower`, a follower is stopped
/// once the load is under way and resumed after it. Panics listing every failure.
async fn large_batches(test: &str, pause_follower: bool) {
    let _one = one_cluster().await;
    let bytes: usize = batch(0, 0)
        .iter()
        .map(|e| e.data.len() + e.event_type.len())
        .sum();
    assert!(
        bytes < BATCH_BYTES_MAX,
        "a batch of {bytes} bytes would be refused; the test must stay within the limits"
    );
    let started = Instant::now();
    let c = Cluster::start(3, &[STORE]);
    let client = formed(&c).await.with_timeout(CALL_TIMEOUT);
    let before = status_of(&client.cluster_status().await.expect("status")).clone();
    let leader = before.leader.expect("a leader");
    println!(
        "{test}: node {leader} leads in term {}; {WRITERS} writers x {APPENDS_PER_WRITER} appends \
         of {EVENTS_PER_APPEND} events ({bytes} bytes each append)",
        before.term
    );

    let load_started = Instant::now();
    let answered = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(w, client.clone(), answered.clone())))
        .collect();
    let mut paused = None;
    if pause_follower {
        // Once the load is under way: the first append has its answer (or could
        // have had it).
        let deadline = Instant::now() + CALL_TIMEOUT;
        while answered.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
            tokio::time::sleep(reckon_tests::wait::POLL_EVERY).await;
        }
        let follower = (1..=3u64).find(|n| *n != leader).expect("a follower");
        let pid = c.node((follower - 1) as usize).pid();
        signal(pid, "-STOP");
        println!(
            "{test}: [{:.1}s] node {follower} stopped (SIGSTOP)",
            started.elapsed().as_secs_f64()
        );
        paused = Some((follower, pid));
    }
    let mut sent = Vec::new();
    for w in writers {
        sent.extend(w.await.expect("writer task"));
    }
    let load_took = load_started.elapsed();
    if let Some((follower, pid)) = paused {
        signal(pid, "-CONT");
        println!(
            "{test}: [{:.1}s] node {follower} resumed (SIGCONT)",
            started.elapsed().as_secs_f64()
        );
    }

    let mut failures = Vec::new();
    for s in &sent {
        if !s.outcome.is_definite() {
            failures.push(format!(
                "writer {} append {} had no definite answer within its {CALL_TIMEOUT:?} deadline \
                 (after {:?}): {:?}",
                s.writer, s.n, s.took, s.outcome
            ));
        }
    }
    let unsent = WRITERS * APPENDS_PER_WRITER - sent.len();
    if unsent > 0 {
        failures.push(format!(
            "{unsent} appends were not sent: their writers stopped after \
             {UNDECIDED_IN_A_ROW_MAX} appends in a row without a definite answer"
        ));
    }
    let ok = sent
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Appended(_)))
        .count();
    let slowest = sent.iter().map(|s| s.took).max().unwrap_or_default();
    println!(
        "{test}: [{:.1}s] load over in {load_took:?}: {ok} of {} appends acknowledged, the slowest \
         answered in {slowest:?}",
        started.elapsed().as_secs_f64(),
        sent.len()
    );

    // Every replica applies everything, then holds the same log.
    let limit = converge_wait();
    let status_client = client.clone().with_timeout(Duration::from_secs(5));
    if !applied_everywhere(&status_client, 3, limit).await {
        let st = status_client.cluster_status().await;
        failures.push(format!(
            "the nodes did not reach the same applied index within {limit:?}: {st:?}"
        ));
    }
    let nodes: Vec<(String, String)> = (0..3)
        .map(|i| ((i + 1).to_string(), c.addrs[i].clone()))
        .collect();
    let reps = replicas::read_replicas(&nodes, STORE).await;
    if !replicas::agree(&reps) {
        failures.push(format!(
            "the replicas differ: {}",
            replicas::describe(&reps)
        ));
    }
    println!(
        "{test}: [{:.1}s] replicas: {}",
        started.elapsed().as_secs_f64(),
        replicas::describe(&reps)
    );

    // Leadership stayed put.
    match status_client.cluster_status().await {
        Err(e) => failures.push(format!("no cluster status after the load: {e}")),
        Ok(after) => {
            let after = status_of(&after);
            // A change of leader shows as a new term, and as a count on each node
            // that saw a leader elected; elections that elect nobody only raise the
            // term.
            let counted: u64 = leader_changes(after)
                .iter()
                .zip(leader_changes(&before))
                .map(|((_, a), (_, b))| a.saturating_sub(b))
                .max()
                .unwrap_or(0);
            let changes = counted.max(after.term.saturating_sub(before.term));
            println!(
                "{test}: leader before {:?} (term {}), after {:?} (term {}); {counted} leader \
                 change(s) counted by a node",
                before.leader, before.term, after.leader, after.term
            );
            if changes > 1 || after.leader.is_none() {
                failures.push(format!(
                    "leadership did not stay put: leader {:?} in term {} before the load, {:?} in \
                     term {} after ({counted} leader change(s) counted by a node)",
                    before.leader, before.term, after.leader, after.term
                ));
            }
        }
    }
    println!("{test}: {:?} in all", started.elapsed());
    assert!(
        failures.is_empty(),
        "{test}: {} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_batches_with_every_node_up_are_answered_and_replicated() {
    large_batches("large-batches", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_batches_with_a_follower_stopped_are_answered_and_replicated() {
    large_batches("large-batches-paused-follower", true).await;
}
