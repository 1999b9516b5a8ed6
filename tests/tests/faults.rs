//! The fault suite: a 3-node cluster, each node in its own network
//! namespace, a gater outside, a workload of real clients, and a seeded random
//! schedule of faults (partitions, isolation, a majority/minority split, SIGSTOP,
//! kill -9 and restart, a full disk, a link down). Every operation is recorded, and
//! once everything is healed and the replicas have converged, the checker judges
//! the history against every node's log.
//!
//! Also two replays of what users saw: appends sent while the leader is cut off
//! from its peers (by nft, or by SIGSTOP), retried through the gater after a new
//! leader is elected; no event id may then be stored twice.
//!
//! `RECKON_FAULT_SEED` replays a schedule (printed at the start and in every
//! failure); `RECKON_FAULT_SECS` sets how long the schedule runs (default
//! [`DEFAULT_SECS`]); `RECKON_FAULT_KINDS` (`partition,isolate,split,pause,kill,
//! disk-full,link-down`, any of them) narrows the faults down; and
//! `RECKON_FAULT_KEEP_LOGS=1` keeps the nodes' logs of a run that passed (a failed
//! run always keeps them and prints where). The tests need root, `ip` and `nft`,
//! and fail saying so when they are missing. Timing is never a verdict: every wait
//! is a bounded poll.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reckon_gater::subscription::{StartFrom, SubscribeOptions};
use reckon_gater::types::Role;
use reckon_gater::types::{Direction, ExpectedVersion, NewEvent, StoreError, SubscriptionType};
use reckon_gater::{Client, ClientError, StoreHandle};
use reckon_tests::faults::checker::{self, Report};
use reckon_tests::faults::history::{
    outcome_of, store_error_is_definite, AckOutcome, Call, History, Outcome, Selection,
    SubscriptionLog,
};
use reckon_tests::faults::netns::{self, Fabric, FabricConfig, Fault};
use reckon_tests::faults::replicas;
use serde_json::json;
use tokio::task::block_in_place;
use uuid::Uuid;

/// The store every test writes to.
const STORE: &str = "default";

/// Nodes in the cluster.
const NODES: usize = 3;

/// How long the fault schedule runs when `RECKON_FAULT_SECS` is not set: short
/// enough for the whole test to take about two minutes on a 2-core machine.
const DEFAULT_SECS: u64 = 75;

/// Each kind of fault is injected at least this many times.
const MIN_PER_KIND: usize = 3;

/// How long a fault is held, in milliseconds (drawn from the seed).
const HOLD_MS: std::ops::Range<u64> = 1_000..3_000;

/// The pause after a fault is undone, in milliseconds (drawn from the seed).
const GAP_MS: std::ops::Range<u64> = 500..2_000;

/// The tmpfs each node's data lives on, so that its disk can be filled.
const DISK_MIB: u64 = 256;

/// Writers that each own a stream and retry with the same ids.
const OWN_WRITERS: usize = 3;

/// Writers contending with exact expected versions on shared streams.
const CONTENDERS: usize = 3;

/// The shared streams they contend on.
const SHARED_STREAMS: usize = 2;

/// Linearizable readers.
const READERS: usize = 2;

/// The per-call deadline of workload clients.
const CALL_TIMEOUT: Duration = Duration::from_secs(4);

/// The pause before retrying an operation with no definite answer.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How long the cluster may take to form, or to have a leader again after healing.
const LEADER_WAIT: Duration = Duration::from_secs(60);

/// How long writers may keep retrying for a definite answer once the schedule is
/// over; then they give up and the last outcome stays unknown.
const SETTLE_WAIT: Duration = Duration::from_secs(60);

/// How long the replicas may take to hold the same log once everything is healed.
const CONVERGE_WAIT: Duration = Duration::from_secs(90);

/// How long the subscription consumer may take to reach the end of the log.
const CATCH_UP_WAIT: Duration = Duration::from_secs(90);

/// How long a node may take to serve again, caught up, once its full disk is freed
/// (or, when it exited on the storage failure, once it was started again); then it
/// is restarted (and the failure to recover is reported).
const DISK_RECOVERY_WAIT: Duration = Duration::from_secs(15);

/// How many times a node that exits after its full disk was freed is restarted while
/// waiting for it to recover: a node that keeps exiting is a failure, not a loop.
const DISK_RECOVERY_RESTARTS_MAX: u32 = 2;

/// How many anomalies of each kind a failure message shows in full.
const SHOWN_PER_KIND: usize = 8;

/// One fabric at a time in this test binary: three clusters at once on two cores
/// would turn every fault into a timeout. The sweep test takes it too.
static ONE_FABRIC: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn one_fabric() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_FABRIC.lock().await
}

/// The seed from `RECKON_FAULT_SEED`, or a random one; printed so a run can be
/// replayed.
fn seed(test: &str) -> u64 {
    let seed = match std::env::var("RECKON_FAULT_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("RECKON_FAULT_SEED={s:?} is not a u64")),
        Err(_) => rand::random(),
    };
    println!("{test}: RECKON_FAULT_SEED={seed}");
    seed
}

fn fault_secs() -> u64 {
    match std::env::var("RECKON_FAULT_SECS") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("RECKON_FAULT_SECS={s:?} is not a number of seconds")),
        Err(_) => DEFAULT_SECS,
    }
}

/// The current leader's node index (id - 1) and term, as the gater reports them.
async fn leader(client: &Client) -> Option<(usize, u64)> {
    let status = client.cluster_status().await.ok()?;
    let s = status.into_iter().find(|s| s.store == STORE)?;
    Some(((s.leader? - 1) as usize, s.term))
}

/// Polls until the gater reports a leader that satisfies `ok` and `workers`
/// workers, for at most `limit`; the leader, or `None` on time-out.
async fn await_leader(
    client: &Client,
    workers: usize,
    limit: Duration,
    ok: impl Fn(usize) -> bool,
) -> Option<(usize, u64)> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(h) = client.health().await {
            let ready = h
                .stores
                .iter()
                .any(|s| s.store == STORE && s.workers as usize >= workers && s.leader.is_some());
            if ready {
                if let Some(l) = leader(client).await.filter(|(l, _)| ok(*l)) {
                    return Some(l);
                }
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(reckon_tests::wait::POLL_EVERY).await;
    }
}

/// Polls `f` until it is true, for at most `limit`; whether it became true.
async fn poll_until<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(reckon_tests::wait::POLL_EVERY).await;
    }
}

/// Starts a fabric of [`NODES`] nodes and waits for the cluster to form; a client
/// of its gater.
async fn start_cluster(config: FabricConfig) -> (Fabric, Client) {
    let fabric = block_in_place(|| Fabric::start(config));
    let client = Client::connect(&[fabric.gater_addr()])
        .await
        .expect("connect to the gater")
        .with_timeout(CALL_TIMEOUT);
    let formed = await_leader(&client, NODES, LEADER_WAIT, |_| true).await;
    assert!(
        formed.is_some(),
        "the cluster of fabric {} did not form within {LEADER_WAIT:?}",
        fabric.name()
    );
    (fabric, client)
}

fn node_list(fabric: &Fabric) -> Vec<(String, String)> {
    (0..fabric.len())
        .map(|i| ((i + 1).to_string(), fabric.addr(i)))
        .collect()
}

/// Whether node `i` takes part in the group again: a voter (leader or follower)
/// that has applied at least `index`.
async fn serves_from(client: &Client, i: usize, index: u64) -> bool {
    let Ok(status) = client.cluster_status().await else {
        return false;
    };
    status
        .iter()
        .filter(|s| s.store == STORE)
        .flat_map(|s| &s.nodes)
        .any(|n| {
            n.node_id == (i + 1) as u64
                && matches!(n.role, Role::Leader | Role::Follower)
                && n.applied_index >= index
        })
}

/// The highest applied index any node reports.
async fn applied_index(client: &Client) -> Option<u64> {
    let status = client.cluster_status().await.ok()?;
    status
        .iter()
        .filter(|s| s.store == STORE)
        .flat_map(|s| &s.nodes)
        .map(|n| n.applied_index)
        .max()
}

/// A one-line description of each node as the gater sees it.
async fn describe_nodes(client: &Client) -> String {
    match client.cluster_status().await {
        Err(e) => format!("no cluster status: {e}"),
        Ok(status) => status
            .iter()
            .filter(|s| s.store == STORE)
            .flat_map(|s| &s.nodes)
            .map(|n| {
                format!(
                    "node {} {} term {} applied {}",
                    n.node_id,
                    n.role.as_str(),
                    n.term,
                    n.applied_index
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// A linearizable read of a stream's last event, recorded.
async fn read_head(s: &StoreHandle, history: &History, process: &str, stream: &str) -> Outcome {
    let inv = history.invoke();
    let outcome = match s
        .read_stream(stream, u64::MAX, 1, Direction::Backward)
        .await
    {
        Ok(events) => Outcome::Head(events.first().map(|e| (e.version, e.event_id))),
        Err(ClientError::Store(StoreError::StreamNotFound { .. })) => Outcome::Head(None),
        Err(e) => outcome_of(&e),
    };
    history.record(
        inv,
        process,
        Call::ReadHead {
            stream: stream.to_string(),
        },
        outcome.clone(),
    );
    outcome
}

/// Appends `events` (ids set) to `stream`, recorded, retrying the same events with
/// the same expectation while the outcome is unknown, until it is definite or
/// `give_up` is set. The last outcome.
async fn append_until_definite(
    s: &StoreHandle,
    history: &History,
    process: &str,
    stream: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
    give_up: &AtomicBool,
) -> Outcome {
    let ids: Vec<Uuid> = events
        .iter()
        .map(|e| e.event_id.expect("events carry their ids"))
        .collect();
    loop {
        let inv = history.invoke();
        let outcome = match s.append(stream, expected, events.to_vec()).await {
            Ok(r) => Outcome::Appended(r),
            Err(e) => outcome_of(&e),
        };
        history.record(
            inv,
            process,
            Call::Append {
                stream: stream.to_string(),
                expected,
                ids: ids.clone(),
            },
            outcome.clone(),
        );
        if outcome.is_definite() || give_up.load(Ordering::Relaxed) {
            return outcome;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

fn event(kind: &str, data: serde_json::Value) -> NewEvent {
    NewEvent::json(kind, &data).with_id(Uuid::now_v7())
}

/// When the workload stops.
#[derive(Default)]
struct Flags {
    /// Start no new operation.
    stop: AtomicBool,
    /// Stop retrying operations with no definite answer.
    give_up: AtomicBool,
    /// The subscription consumer stops.
    consumer_stop: AtomicBool,
}

/// A writer that owns stream `own-{w}`: batches of 1 to 3 events with fresh ids,
/// each retried with the same ids until definite.
async fn own_writer(w: usize, s: StoreHandle, history: Arc<History>, flags: Arc<Flags>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ (0x1000 + w as u64));
    let process = format!("writer-{w}");
    let stream = format!("own-{w}");
    let mut n = 0u64;
    while !flags.stop.load(Ordering::Relaxed) {
        let k = rng.gen_range(1..=3u64);
        let events: Vec<NewEvent> = (0..k)
            .map(|j| event("own", json!({ "w": w, "n": n + j })))
            .collect();
        append_until_definite(
            &s,
            &history,
            &process,
            &stream,
            ExpectedVersion::Any,
            &events,
            &flags.give_up,
        )
        .await;
        n += k;
    }
}

/// A writer contending on the shared streams: reads a stream's head, then appends
/// one event expecting exactly that version (retrying the same event and
/// expectation while the outcome is unknown).
async fn contender(c: usize, s: StoreHandle, history: Arc<History>, flags: Arc<Flags>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ (0x2000 + c as u64));
    let process = format!("contender-{c}");
    while !flags.stop.load(Ordering::Relaxed) {
        let stream = format!("shared-{}", rng.gen_range(0..SHARED_STREAMS));
        let expected = match read_head(&s, &history, &process, &stream).await {
            Outcome::Head(None) => ExpectedVersion::NoStream,
            Outcome::Head(Some((v, _))) => ExpectedVersion::Exact(v),
            _ => {
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let events = [event("shared", json!({ "c": c }))];
        append_until_definite(
            &s,
            &history,
            &process,
            &stream,
            expected,
            &events,
            &flags.give_up,
        )
        .await;
    }
}

/// A reader of stream heads, linearizable.
async fn reader(r: usize, s: StoreHandle, history: Arc<History>, flags: Arc<Flags>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ (0x3000 + r as u64));
    let process = format!("reader-{r}");
    while !flags.stop.load(Ordering::Relaxed) {
        let stream = if rng.gen_bool(0.5) {
            format!("own-{}", rng.gen_range(0..OWN_WRITERS))
        } else {
            format!("shared-{}", rng.gen_range(0..SHARED_STREAMS))
        };
        if !read_head(&s, &history, &process, &stream)
            .await
            .is_definite()
        {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

/// The name of the fault suite's subscription.
const SUBSCRIPTION: &str = "faults-all";

/// The consumer: receives `$all` through the gater, acknowledging each batch, and
/// re-attaches (from the checkpoint) after an error and now and then on purpose.
/// Publishes the highest position received in `reached`.
async fn consumer(
    s: StoreHandle,
    key: String,
    flags: Arc<Flags>,
    reached: Arc<AtomicU64>,
    seed: u64,
) -> SubscriptionLog {
    /// How long one wait for a batch lasts before the stop flag is looked at.
    const BATCH_WAIT: Duration = Duration::from_secs(2);
    /// The chance of re-attaching on purpose after a batch.
    const REATTACH_P: f64 = 0.1;
    const CONSUMER: &str = "consumer-1";
    let mut rng = StdRng::seed_from_u64(seed ^ 0x4000);
    let mut log = SubscriptionLog::new(SUBSCRIPTION, Selection::All);
    let mut sub = s.subscriber(&key, CONSUMER);
    while !flags.consumer_stop.load(Ordering::Relaxed) {
        let batch = match tokio::time::timeout(BATCH_WAIT, sub.next_batch()).await {
            Err(_) => continue,
            Ok(Err(_)) => {
                tokio::time::sleep(RETRY_PAUSE).await;
                log.attach();
                sub = s.subscriber(&key, CONSUMER);
                continue;
            }
            Ok(Ok(batch)) => batch,
        };
        for e in &batch {
            log.delivered(e);
        }
        let last = batch.last().expect("a batch is never empty").position;
        reached.fetch_max(last + 1, Ordering::Relaxed);
        let outcome = match s.ack(&key, CONSUMER, last).await {
            Ok(_) => AckOutcome::Ok,
            Err(e) if e.store_error().is_some_and(store_error_is_definite) => AckOutcome::Failed,
            Err(_) => AckOutcome::Unknown,
        };
        log.ack(last, outcome);
        if rng.gen_bool(REATTACH_P) {
            log.attach();
            sub = s.subscriber(&key, CONSUMER);
        }
    }
    log
}

/// What a fault is aimed at, resolved when it is injected.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The leader the gater reports then (any node when there is none).
    Leader,
    /// A node chosen by the seed.
    Node(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Partition,
    Isolate,
    Split,
    Pause,
    Kill,
    DiskFull,
    LinkDown,
}

const KINDS: [Kind; 7] = [
    Kind::Partition,
    Kind::Isolate,
    Kind::Split,
    Kind::Pause,
    Kind::Kill,
    Kind::DiskFull,
    Kind::LinkDown,
];

impl Kind {
    /// The name [`Fault::kind`] gives it, as `RECKON_FAULT_KINDS` takes it.
    fn name(self) -> &'static str {
        match self {
            Kind::Partition => "partition",
            Kind::Isolate => "isolate",
            Kind::Split => "split",
            Kind::Pause => "pause",
            Kind::Kill => "kill",
            Kind::DiskFull => "disk-full",
            Kind::LinkDown => "link-down",
        }
    }
}

/// The kinds of fault to inject: those `RECKON_FAULT_KINDS` names (comma-separated,
/// to narrow a failure down), every kind otherwise.
fn fault_kinds() -> Vec<Kind> {
    let Ok(list) = std::env::var("RECKON_FAULT_KINDS") else {
        return KINDS.to_vec();
    };
    let kinds: Vec<Kind> = list
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| {
            KINDS
                .into_iter()
                .find(|kind| kind.name() == k)
                .unwrap_or_else(|| {
                    panic!(
                        "RECKON_FAULT_KINDS: {k:?} is not one of {:?}",
                        KINDS.map(Kind::name)
                    )
                })
        })
        .collect();
    assert!(!kinds.is_empty(), "RECKON_FAULT_KINDS names no kind");
    kinds
}

/// One step of the schedule.
#[derive(Debug, Clone)]
struct Planned {
    kind: Kind,
    target: Target,
    /// For a partition: which other node (by offset from the target) it loses.
    other: usize,
    hold: Duration,
    gap: Duration,
}

impl Planned {
    fn fault(&self, node: usize) -> Fault {
        match self.kind {
            // A partial partition: the node loses one peer, both still reach the
            // third (and the gater).
            Kind::Partition => Fault::Partition {
                node,
                peers: vec![(node + 1 + self.other % (NODES - 1)) % NODES],
            },
            Kind::Isolate => Fault::Isolate { node },
            Kind::Split => Fault::Split {
                minority: vec![node],
            },
            Kind::Pause => Fault::Pause { node },
            Kind::Kill => Fault::Kill { node },
            Kind::DiskFull => Fault::DiskFull { node },
            Kind::LinkDown => Fault::LinkDown { node },
        }
    }
}

/// The schedule for `secs` seconds: rounds in which each of `kinds` comes once, in
/// an order, on a target and for a time the seed chooses; at least
/// [`MIN_PER_KIND`] rounds.
fn plan(seed: u64, secs: u64, kinds: &[Kind]) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mean_ms = (HOLD_MS.start + HOLD_MS.end + GAP_MS.start + GAP_MS.end) / 2;
    let rounds = ((secs * 1000 / mean_ms) as usize / kinds.len()).max(MIN_PER_KIND);
    let mut out = Vec::new();
    for _ in 0..rounds {
        let mut kinds = kinds.to_vec();
        for i in (1..kinds.len()).rev() {
            kinds.swap(i, rng.gen_range(0..=i));
        }
        for kind in kinds {
            let target = if rng.gen_bool(0.5) {
                Target::Leader
            } else {
                Target::Node(rng.gen_range(0..NODES))
            };
            out.push(Planned {
                kind,
                target,
                other: rng.gen_range(0..NODES - 1),
                hold: Duration::from_millis(rng.gen_range(HOLD_MS)),
                gap: Duration::from_millis(rng.gen_range(GAP_MS)),
            });
        }
    }
    out
}

/// Fails the test with the report, the seed and the log directory.
fn verdict(test: &str, seed: u64, fabric: &Fabric, report: &Report, extra: &[String]) {
    let text = report.render(SHOWN_PER_KIND);
    println!("{test}: {text}");
    let mut problems: Vec<String> = extra.to_vec();
    if !report.is_clean() {
        problems.push(format!("{} anomalies", report.anomalies.len()));
    }
    assert!(
        problems.is_empty(),
        "{test} failed with RECKON_FAULT_SEED={seed}: {}\n{text}(node logs: {})",
        problems.join("; "),
        fabric.logs_dir().display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_under_faults_keeps_every_acknowledged_append_once() {
    const TEST: &str = "faults";
    let _one = one_fabric().await;
    let seed = seed(TEST);
    let secs = fault_secs();
    let started = Instant::now();
    let (mut fabric, client) = start_cluster(FabricConfig {
        nodes: NODES,
        disk_mib: Some(DISK_MIB),
        ..FabricConfig::default()
    })
    .await;
    println!(
        "{TEST}: fabric {} formed in {:?}; faults for {secs} s",
        fabric.name(),
        started.elapsed()
    );
    let s = client.store(STORE);
    let history = Arc::new(History::new());
    let flags = Arc::new(Flags::default());

    // The subscription exists before the first append; it starts at the beginning.
    let mut key = None;
    let deadline = Instant::now() + LEADER_WAIT;
    while key.is_none() {
        match s
            .subscribe(
                SubscriptionType::Stream,
                "$all",
                SUBSCRIPTION,
                SubscribeOptions {
                    start_from: StartFrom::Beginning,
                    pool_size: 1,
                },
            )
            .await
        {
            Ok(info) => key = Some(info.key),
            Err(e) => {
                assert!(Instant::now() < deadline, "subscribe (seed {seed}): {e}");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
    let key = key.expect("subscribed");

    let mut workers = Vec::new();
    for w in 0..OWN_WRITERS {
        workers.push(tokio::spawn(own_writer(
            w,
            s.clone(),
            history.clone(),
            flags.clone(),
            seed,
        )));
    }
    for c in 0..CONTENDERS {
        workers.push(tokio::spawn(contender(
            c,
            s.clone(),
            history.clone(),
            flags.clone(),
            seed,
        )));
    }
    for r in 0..READERS {
        workers.push(tokio::spawn(reader(
            r,
            s.clone(),
            history.clone(),
            flags.clone(),
            seed,
        )));
    }
    let reached = Arc::new(AtomicU64::new(0));
    let consumer_task = tokio::spawn(consumer(
        s.clone(),
        key,
        flags.clone(),
        reached.clone(),
        seed,
    ));

    // The schedule.
    let schedule = plan(seed, secs, &fault_kinds());
    let mut injected: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut crashes: Vec<String> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for (k, step) in schedule.iter().enumerate() {
        let node = match step.target {
            Target::Node(i) => i,
            Target::Leader => match leader(&client).await {
                Some((l, _)) => l,
                None => (step.other + k) % NODES,
            },
        };
        let fault = step.fault(node);
        println!(
            "{TEST}: [{:6.1}s] {:2}/{} {fault} for {:?}",
            history.elapsed().as_secs_f64(),
            k + 1,
            schedule.len(),
            step.hold
        );
        block_in_place(|| fabric.inject(&fault));
        *injected.entry(fault.kind()).or_insert(0) += 1;
        tokio::time::sleep(step.hold).await;
        let undone = block_in_place(|| fabric.undo(&fault));
        if undone.restarted_after_crash {
            let what = format!("a node exited on its own during `{fault}` and was restarted");
            println!("{TEST}: {what}");
            crashes.push(what);
        }
        if let Fault::DiskFull { node } = fault {
            // The node must come back by itself once its disk has room again: it
            // either survives the full disk or exits on the storage failure, and then
            // the fabric restarts it as systemd's `Restart=on-failure` would (the exit
            // can come after the disk was freed: a node drains its requests first).
            let target = applied_index(&client).await.unwrap_or(0);
            let mut deadline = Instant::now() + DISK_RECOVERY_WAIT;
            let mut restarts = 0;
            let back = loop {
                if serves_from(&client, node, target).await {
                    break true;
                }
                if restarts < DISK_RECOVERY_RESTARTS_MAX
                    && !block_in_place(|| fabric.is_running(node))
                {
                    restarts += 1;
                    let what = format!(
                        "node {} exited on its own after `{fault}` was undone and was restarted",
                        node + 1
                    );
                    println!("{TEST}: {what}");
                    crashes.push(what);
                    block_in_place(|| fabric.start_node(node));
                    // Its window to recover starts when it starts again.
                    deadline = Instant::now() + DISK_RECOVERY_WAIT;
                }
                if Instant::now() >= deadline {
                    break false;
                }
                tokio::time::sleep(reckon_tests::wait::POLL_EVERY).await;
            };
            if !back {
                let what = format!(
                    "node {} did not serve again within {DISK_RECOVERY_WAIT:?} after its full \
                     disk was freed ({}); restarted it",
                    node + 1,
                    describe_nodes(&client).await
                );
                println!("{TEST}: {what}");
                problems.push(what);
                block_in_place(|| {
                    fabric.kill9(node);
                    fabric.start_node(node);
                });
            }
        }
        tokio::time::sleep(step.gap).await;
    }

    // Heal everything, then the cluster must serve again and converge.
    let healed_at = history.tick();
    for i in block_in_place(|| fabric.heal_all()) {
        let what = format!("node {} had exited on its own when healing", i + 1);
        println!("{TEST}: {what}");
        crashes.push(what);
    }
    println!(
        "{TEST}: [{:6.1}s] healed; waiting for a leader",
        history.elapsed().as_secs_f64()
    );
    if await_leader(&client, NODES, LEADER_WAIT, |_| true)
        .await
        .is_none()
    {
        problems.push(format!(
            "no leader with {NODES} workers {LEADER_WAIT:?} after healing"
        ));
    }
    // Liveness: every owned stream takes an append after healing.
    let recovered = poll_until(SETTLE_WAIT, || async {
        let ops = history.ops();
        (0..OWN_WRITERS).all(|w| {
            let p = format!("writer-{w}");
            ops.iter().any(|op| {
                op.process == p
                    && op.invoke > healed_at
                    && matches!(op.outcome, Outcome::Appended(_))
            })
        })
    })
    .await;
    if !recovered {
        problems.push(format!(
            "some writer had no append acknowledged within {SETTLE_WAIT:?} after healing"
        ));
    }
    flags.stop.store(true, Ordering::Relaxed);
    let settle_deadline = Instant::now() + SETTLE_WAIT;
    for w in workers {
        let left = settle_deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            flags.give_up.store(true, Ordering::Relaxed);
        }
        let mut w = w;
        if tokio::time::timeout(left, &mut w).await.is_err() {
            flags.give_up.store(true, Ordering::Relaxed);
            w.await.expect("workload task");
        }
    }
    println!(
        "{TEST}: [{:6.1}s] workload stopped; waiting for the replicas to converge",
        history.elapsed().as_secs_f64()
    );
    let nodes = node_list(&fabric);
    let convergence = replicas::await_convergence(&nodes, STORE, CONVERGE_WAIT).await;
    if !convergence.converged {
        problems.push(format!(
            "the replicas did not converge within {CONVERGE_WAIT:?}: {}",
            replicas::describe(&convergence.replicas)
        ));
    }
    let final_log =
        match replicas::served_log(&client.clone().with_timeout(Duration::from_secs(20)), STORE)
            .await
        {
            Ok(l) => l,
            Err(e) => {
                problems.push(format!(
                    "the final log could not be read through the gater: {e}"
                ));
                convergence
                    .replicas
                    .iter()
                    .find_map(|r| r.log.as_ref().ok().cloned())
                    .unwrap_or_default()
            }
        };
    let end = final_log.last().map_or(0, |e| e.position + 1);
    let caught_up = poll_until(CATCH_UP_WAIT, || async {
        reached.load(Ordering::Relaxed) >= end
    })
    .await;
    flags.consumer_stop.store(true, Ordering::Relaxed);
    let sub_log = consumer_task.await.expect("consumer task");
    if !caught_up {
        println!("{TEST}: the consumer did not reach the end within {CATCH_UP_WAIT:?}");
    }

    let ops = history.ops();
    let report = checker::check(&ops, &[sub_log], &final_log, &convergence.replicas);
    println!(
        "{TEST}: seed {seed}, {:?} in all; replicas {} after {:?}",
        started.elapsed(),
        if convergence.converged {
            "converged"
        } else {
            "still differed"
        },
        convergence.waited
    );
    println!(
        "{TEST}: faults injected: {injected:?}; nodes restarted after exiting on their own: {}",
        crashes.len()
    );
    verdict(TEST, seed, &fabric, &report, &problems);
}

/// How the leader is cut off in a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// nft rules in its namespace drop its peers; the gater still reaches it.
    Partition,
    /// SIGSTOP, later SIGCONT.
    Pause,
}

/// Streams a replay writes to.
const REPLAY_STREAMS: usize = 4;

/// Waves of appends sent while the leader is cut off, and appends per wave: enough
/// that some wait in its batcher queue while others are in flight.
const REPLAY_WAVES: usize = 3;
const REPLAY_PER_WAVE: usize = 8;

/// The deadline of the appends sent while the leader is cut off, through the gater.
const CUT_CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// The deadline of those sent straight to the cut-off leader: they may still wait
/// in its queue when it comes back.
const DIRECT_CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// The deadline of a retry through the gater once a new leader is elected.
const RETRY_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Appends of fresh events to every replay stream, each until definite (giving up
/// after [`SETTLE_WAIT`]).
async fn append_to_every_stream(s: &StoreHandle, history: &History, process: &str, tag: &str) {
    let give_up = AtomicBool::new(false);
    let work = async {
        for k in 0..REPLAY_STREAMS {
            let events = [event("replay", json!({ "phase": tag, "k": k }))];
            append_until_definite(
                s,
                history,
                process,
                &format!("dup-{k}"),
                ExpectedVersion::Any,
                &events,
                &give_up,
            )
            .await;
        }
    };
    tokio::pin!(work);
    if tokio::time::timeout(SETTLE_WAIT, &mut work).await.is_err() {
        give_up.store(true, Ordering::Relaxed);
        work.await;
    }
}

/// Appends sent: each stream with its events.
type SentAppends = Vec<(String, Vec<NewEvent>)>;

/// Tasks still waiting for answers, each with the delay it was sent after.
type Pending = Vec<(Duration, tokio::task::JoinHandle<()>)>;

/// Sends [`REPLAY_WAVES`] waves of appends with fresh ids to the replay streams, half
/// through `via_gater` and half straight to the `direct` worker; returns what was
/// sent and the tasks still waiting for answers (each records its outcome).
fn send_waves(
    rng: &mut StdRng,
    round: usize,
    history: &Arc<History>,
    via_gater: &StoreHandle,
    direct: &StoreHandle,
) -> (SentAppends, Pending) {
    let mut sent = Vec::new();
    let mut tasks = Vec::new();
    let mut at = Duration::ZERO;
    for wave in 0..REPLAY_WAVES {
        for j in 0..REPLAY_PER_WAVE {
            let stream = format!("dup-{}", j % REPLAY_STREAMS);
            let events: Vec<NewEvent> = (0..rng.gen_range(1..=2))
                .map(|n| {
                    event(
                        "replay",
                        json!({ "round": round, "wave": wave, "j": j, "n": n }),
                    )
                })
                .collect();
            sent.push((stream.clone(), events.clone()));
            let history = history.clone();
            let ids: Vec<Uuid> = events.iter().filter_map(|e| e.event_id).collect();
            let call = Call::Append {
                stream: stream.clone(),
                expected: ExpectedVersion::Any,
                ids,
            };
            let task = if j % 2 == 0 {
                let s = via_gater.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(at).await;
                    let inv = history.invoke();
                    let outcome = match s.append(&stream, ExpectedVersion::Any, events).await {
                        Ok(r) => Outcome::Appended(r),
                        Err(e) => outcome_of(&e),
                    };
                    history.record(inv, "cut-off-via-gater", call, outcome);
                })
            } else {
                let w = direct.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(at).await;
                    let inv = history.invoke();
                    let outcome = match w.append(&stream, ExpectedVersion::Any, events).await {
                        Ok(r) => Outcome::Appended(r),
                        Err(ClientError::Store(e)) if store_error_is_definite(&e) => {
                            Outcome::Failed {
                                kind: e.kind().to_string(),
                                message: e.to_string(),
                            }
                        }
                        Err(e) => Outcome::Unknown {
                            message: e.to_string(),
                        },
                    };
                    history.record(inv, "cut-off-direct", call, outcome);
                })
            };
            tasks.push((at, task));
        }
        at += Duration::from_millis(rng.gen_range(100..400));
    }
    (sent, tasks)
}

/// Rounds of a replay, each on the leader of the moment: the race it replays does
/// not strike every time.
const REPLAY_ROUNDS: usize = 3;

/// The replay: appends with unique ids sent while the leader is cut off (through
/// the gater, and straight to the leader), retried with the same ids through the
/// gater once a new leader is elected, more appends on the same streams, then the
/// cut is healed; [`REPLAY_ROUNDS`] times. No event id may be stored twice, nothing
/// acknowledged lost.
async fn replay_leader_cut_off(test: &str, cut: Cut) {
    let _one = one_fabric().await;
    let seed = seed(test);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let (mut fabric, client) = start_cluster(FabricConfig::default()).await;
    let history = Arc::new(History::new());
    let s = client.store(STORE);
    let retry = client.clone().with_timeout(RETRY_CALL_TIMEOUT).store(STORE);
    let cut_off = client.clone().with_timeout(CUT_CALL_TIMEOUT).store(STORE);
    let nodes = node_list(&fabric);
    let mut problems = Vec::new();
    append_to_every_stream(&s, &history, "setup", "before").await;
    for round in 0..REPLAY_ROUNDS {
        let Some((old, term)) = await_leader(&client, NODES, LEADER_WAIT, |_| true).await else {
            panic!(
                "{test} (RECKON_FAULT_SEED={seed}): no leader with {NODES} workers before round {round}: {}",
                describe_nodes(&client).await
            );
        };
        println!(
            "{test}: [{:.1}s] round {round}: node {} leads in term {term}; cutting it off ({cut:?})",
            history.elapsed().as_secs_f64(),
            old + 1
        );
        let direct = StoreHandle::direct(
            reckon_gater::worker::connect(&fabric.addr(old))
                .await
                .expect("connect to the leader"),
            STORE,
            DIRECT_CALL_TIMEOUT,
        );
        let others: Vec<usize> = (0..NODES).filter(|i| *i != old).collect();
        block_in_place(|| match cut {
            Cut::Partition => fabric.partition(old, &others),
            Cut::Pause => fabric.pause(old),
        });
        let sent_at = history.elapsed();
        let (sent, tasks) = send_waves(&mut rng, round, &history, &cut_off, &direct);

        // A new leader among the others.
        let new = await_leader(&client, NODES - 1, LEADER_WAIT, |l| l != old).await;
        let Some((new, new_term)) = new else {
            panic!(
                "{test} (RECKON_FAULT_SEED={seed}): no new leader within {LEADER_WAIT:?} after \
                 cutting off node {}: {}",
                old + 1,
                describe_nodes(&client).await
            );
        };
        println!(
            "{test}: [{:.1}s] node {} leads in term {new_term}; retrying through the gater",
            history.elapsed().as_secs_f64(),
            new + 1
        );

        // The users retry what they sent, with the same ids, through the gater (each
        // once its first attempt has been sent).
        let last_send = sent_at + tasks.iter().map(|(at, _)| *at).max().unwrap_or_default();
        let give_up = AtomicBool::new(false);
        let retries = async {
            tokio::time::sleep(last_send.saturating_sub(history.elapsed())).await;
            for (stream, events) in &sent {
                append_until_definite(
                    &retry,
                    &history,
                    "retry",
                    stream,
                    ExpectedVersion::Any,
                    events,
                    &give_up,
                )
                .await;
            }
        };
        tokio::pin!(retries);
        if tokio::time::timeout(SETTLE_WAIT, &mut retries)
            .await
            .is_err()
        {
            give_up.store(true, Ordering::Relaxed);
            retries.await;
        }
        append_to_every_stream(&retry, &history, "after", "after-retry").await;

        // Heal; what the old leader still held must not land twice.
        println!(
            "{test}: [{:.1}s] healing node {}",
            history.elapsed().as_secs_f64(),
            old + 1
        );
        block_in_place(|| match cut {
            Cut::Partition => fabric.heal_node(old),
            Cut::Pause => fabric.resume(old),
        });
        for (_, t) in tasks {
            t.await.expect("cut-off append task");
        }
        let healed = replicas::await_convergence(&nodes, STORE, CONVERGE_WAIT).await;
        if !healed.converged {
            problems.push(format!(
                "round {round}: the replicas did not converge within {CONVERGE_WAIT:?} after healing: {}",
                replicas::describe(&healed.replicas)
            ));
        }
    }
    // One more append per stream, behind anything an old leader forwarded late.
    append_to_every_stream(&retry, &history, "final", "final").await;
    let convergence = replicas::await_convergence(&nodes, STORE, CONVERGE_WAIT).await;
    if !convergence.converged {
        problems.push(format!(
            "the replicas did not converge within {CONVERGE_WAIT:?}: {}",
            replicas::describe(&convergence.replicas)
        ));
    }
    let final_log =
        replicas::served_log(&client.clone().with_timeout(Duration::from_secs(20)), STORE)
            .await
            .unwrap_or_else(|e| panic!("{test} (RECKON_FAULT_SEED={seed}): the final log: {e}"));
    let report = checker::check(&history.ops(), &[], &final_log, &convergence.replicas);
    println!("{test}: seed {seed}, {:?} in all", started.elapsed());
    verdict(test, seed, &fabric, &report, &problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_retried_after_the_leader_is_partitioned_are_stored_once() {
    replay_leader_cut_off("replay-partition", Cut::Partition).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_retried_after_the_leader_is_paused_are_stored_once() {
    replay_leader_cut_off("replay-pause", Cut::Pause).await;
}

/// A run that died without cleaning up (its pid is gone) leaves a namespace with a
/// process in it, a bridge, a tmpfs mount and a directory: the sweep removes them
/// all, and nothing of a live run.
#[test]
fn leftovers_of_a_crashed_run_are_swept() {
    // Not beside a fabric: building one sweeps leftovers too, and this test plants
    // some on purpose and watches what becomes of them.
    let _one = ONE_FABRIC.blocking_lock();
    if let Err(e) = netns::preflight() {
        panic!("{e}");
    }
    let sh = |args: &[&str]| {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // No process ever has a pid above pid_max.
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .expect("pid_max")
        .trim()
        .parse()
        .expect("a number");
    let dead = netns::fabric_name(pid_max + 1, 0);
    let ns = format!("{dead}n1");
    let bridge = format!("{dead}br");
    let dir = std::env::temp_dir().join(&dead);
    let disk = dir.join("disk");
    std::fs::create_dir_all(&disk).expect("dir");
    sh(&["ip", "netns", "add", &ns]);
    sh(&["ip", "link", "add", &bridge, "type", "bridge"]);
    sh(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=1m",
        "tmpfs",
        disk.to_str().expect("utf-8"),
    ]);
    let mut orphan = std::process::Command::new("ip")
        .args(["netns", "exec", &ns, "sleep", "600"])
        .env(netns::MARK_ENV, &dead)
        .spawn()
        .expect("spawn the orphan");
    // A crashed run's process has long entered its namespace; this one must have
    // too before the sweep looks (while `ip netns exec` is still switching into
    // the namespace and exec'ing, /proc may show it without its environment).
    let orphan_pid = orphan.id().to_string();
    let settled = std::time::Instant::now() + Duration::from_secs(10);
    while !sh(&["ip", "netns", "pids", &ns])
        .split_whitespace()
        .any(|p| p == orphan_pid)
    {
        assert!(
            std::time::Instant::now() < settled,
            "the orphan never entered namespace {ns}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A live run's namespace stays.
    let alive = format!("{}n1", netns::fabric_name(std::process::id(), 9999));
    sh(&["ip", "netns", "add", &alive]);

    netns::sweep_leftovers();

    let namespaces = sh(&["ip", "netns", "list"]);
    let links = sh(&["ip", "-o", "link", "show"]);
    let mounts = std::fs::read_to_string("/proc/mounts").expect("mounts");
    let exited = reckon_tests::exit_within(&mut orphan, Duration::from_secs(10));
    let _ = orphan.kill();
    let _ = orphan.wait();
    let kept = namespaces.contains(&alive);
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &alive])
        .status();
    assert!(
        !namespaces.contains(&ns),
        "namespace {ns} left: {namespaces}"
    );
    assert!(!links.contains(&bridge), "bridge {bridge} left");
    assert!(
        !mounts.contains(&dir.display().to_string()),
        "mount under {} left",
        dir.display()
    );
    assert!(!dir.exists(), "{} left", dir.display());
    assert!(exited.is_some(), "the orphan process still runs");
    assert!(kept, "the sweep removed a live run's namespace {alive}");
}
