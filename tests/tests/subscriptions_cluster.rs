//! Subscriptions on a 3-node cluster of real processes behind a gater: the leader is
//! killed (SIGKILL) while a subscriber is being delivered to. The subscriber, through
//! the gater, must end with every event, in order, none skipped; anything delivered
//! again must come after its last acknowledgement; and a checkpoint acknowledged
//! before the kill must hold on the new leader.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reckon_gater::subscription::{StartFrom, SubscribeOptions, SubscriptionInfo};
use reckon_gater::types::SubscriptionType;
use reckon_gater::{ClientError, Direction, EventRecord, ExpectedVersion, NewEvent};
use reckon_tests::cluster::{
    append_until_acked, follower_of, formed, leader_of, wait_new_leader, Cluster,
};
use reckon_tests::wait::{self, wait_until};
use serde_json::json;
use uuid::Uuid;

/// Retries `f` on errors for up to 30 s (a cluster settling, a leader moving).
async fn retrying<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(Instant::now() < deadline, "{what}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn beginning() -> SubscribeOptions {
    SubscribeOptions {
        start_from: StartFrom::Beginning,
        pool_size: 1,
    }
}

/// What the subscriber saw: events in the order received, and after how many of
/// them each successful ack (of which position) was made.
#[derive(Default)]
struct Seen {
    events: Vec<EventRecord>,
    acks: Vec<(usize, u64)>,
    ack_failures: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_killed_during_delivery_skips_nothing_and_keeps_order() {
    const TOTAL: u64 = 1500;
    let mut c = Cluster::start(3, &["default"]);
    let client = formed(&c).await;
    let s = client.store("default");
    let info: SubscriptionInfo = retrying("subscribe", || {
        s.subscribe(SubscriptionType::Stream, "$all", "failover", beginning())
    })
    .await;
    let other: SubscriptionInfo = retrying("subscribe", || {
        s.subscribe(
            SubscriptionType::Stream,
            "$all",
            "acked-before",
            beginning(),
        )
    })
    .await;

    // The writer: TOTAL single-event appends over 5 streams, each retried with the
    // same event id until acknowledged.
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (s, written) = (s.clone(), written.clone());
        tokio::spawn(async move {
            let mut acked: BTreeMap<u64, Uuid> = BTreeMap::new();
            for n in 0..TOTAL {
                let id = Uuid::now_v7();
                let ev = NewEvent::json("t", &json!({ "n": n })).with_id(id);
                let stream = format!("fo-{}", n % 5);
                let r = append_until_acked(&s, &stream, &ev).await;
                acked.insert(r.first_position, id);
                written.fetch_add(1, Ordering::Relaxed);
            }
            acked
        })
    };

    // The subscriber: receives, acknowledging the last event of each batch.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let received = Arc::new(AtomicUsize::new(0));
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (seen, received, target, stop) =
            (seen.clone(), received.clone(), target.clone(), stop.clone());
        let mut sub = s.subscriber(&info.key, "reader");
        tokio::spawn(async move {
            let mut top: Option<u64> = None;
            while !stop.load(Ordering::Relaxed)
                && top.is_none_or(|t| t.saturating_add(1) < target.load(Ordering::Relaxed))
            {
                let batch =
                    match tokio::time::timeout(Duration::from_secs(2), sub.next_batch()).await {
                        Err(_) => continue,
                        Ok(Err(e)) => return Err(format!("the subscriber gave up: {e}")),
                        Ok(Ok(b)) => b,
                    };
                let last = batch.last().expect("a batch is never empty").position;
                top = top.max(Some(last));
                let n = {
                    let mut g = seen.lock().unwrap();
                    g.events.extend(batch.iter().cloned());
                    g.events.len()
                };
                received.store(n, Ordering::Relaxed);
                match sub.ack(last).await {
                    Ok(_) => seen.lock().unwrap().acks.push((n, last)),
                    Err(_) => seen.lock().unwrap().ack_failures += 1,
                }
            }
            Ok(())
        })
    };

    // A second subscriber reads 200 events, acknowledges position 199 and stops.
    let mut early = s.subscriber(&other.key, "early");
    let mut first = Vec::new();
    while first.len() < 200 {
        first.extend(
            tokio::time::timeout(Duration::from_secs(30), early.next_batch())
                .await
                .expect("the second subscriber got nothing")
                .unwrap(),
        );
    }
    let acked = retrying("ack 199", || early.ack(199)).await;
    assert_eq!(acked.checkpoint(), Some(199));
    drop(early);

    // Kill the leader while delivery is going on. The writer appends one event at a
    // time: the wait grows with the appends it takes to deliver 300.
    wait_until("300 events delivered", wait::for_appends(300), || async {
        received.load(Ordering::Relaxed) >= 300
    })
    .await;
    let old_leader = leader_of(&client, "default").await.expect("a leader");
    let at_kill = received.load(Ordering::Relaxed);
    let written_at_kill = written.load(Ordering::Relaxed);
    c.kill9_id(old_leader);
    let killed = Instant::now();
    wait_new_leader(&client, old_leader).await;
    eprintln!(
        "killed leader {old_leader} after {at_kill} events delivered, {written_at_kill} \
         written; new leader after {:?}",
        killed.elapsed()
    );

    // The checkpoint acknowledged before the kill holds on the new leader, and a new
    // subscriber resumes right after it.
    let after = retrying("get", || s.subscription(&other.key)).await;
    assert_eq!(
        after.checkpoint(),
        Some(199),
        "the checkpoint after failover"
    );
    let mut resumed = s.subscriber(&other.key, "early-again");
    let next = tokio::time::timeout(Duration::from_secs(30), resumed.next_batch())
        .await
        .expect("nothing delivered after failover")
        .unwrap();
    assert_eq!(
        next[0].position, 200,
        "delivery after failover resumed at {} instead of 200",
        next[0].position
    );
    drop(resumed);

    // Let the writer finish; then the subscriber must reach the end of the log.
    let acked_writes = writer.await.unwrap();
    let log: Vec<EventRecord> = {
        let mut out: Vec<EventRecord> = Vec::new();
        loop {
            let page = retrying("read_all", || {
                s.read_all(out.len() as u64, 1000, Direction::Forward)
            })
            .await;
            if page.is_empty() {
                break out;
            }
            out.extend(page);
        }
    };
    assert_eq!(
        log.iter().map(|e| e.position).collect::<Vec<_>>(),
        (0..log.len() as u64).collect::<Vec<_>>()
    );
    for (p, id) in &acked_writes {
        assert_eq!(log[*p as usize].event_id, *id, "acknowledged append at {p}");
    }
    target.store(log.len() as u64, Ordering::Relaxed);
    // What is left to deliver grows with the log; a failover the subscriber rides
    // out is in the base.
    let to_the_end = Instant::now();
    let finished = tokio::time::timeout(wait::for_events(log.len() as u64), reader).await;
    eprintln!(
        "the subscriber reached the end of the log {:?} after the writer finished",
        to_the_end.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    let outcome = finished.expect("the subscriber never reached the end of the log");
    outcome.unwrap().unwrap_or_else(|e| panic!("{e}"));

    // The checker over what the subscriber received.
    let seen = seen.lock().unwrap();
    let mut max_seen: Option<u64> = None;
    let mut last_ack: Option<u64> = None;
    let mut acks = seen.acks.iter().peekable();
    let mut repeats = Vec::new();
    let mut out_of_order = Vec::new();
    let mut repeats_before_ack = Vec::new();
    let mut wrong = Vec::new();
    for (i, e) in seen.events.iter().enumerate() {
        while let Some((n, p)) = acks.peek() {
            if *n <= i {
                last_ack = Some(*p);
                acks.next();
            } else {
                break;
            }
        }
        if log
            .get(e.position as usize)
            .is_none_or(|l| l.event_id != e.event_id)
        {
            wrong.push(e.position);
        }
        match max_seen {
            Some(m) if e.position <= m => {
                repeats.push(e.position);
                if last_ack.is_some_and(|a| e.position <= a) {
                    repeats_before_ack.push(e.position);
                }
            }
            Some(m) if e.position != m + 1 => out_of_order.push((m, e.position)),
            None if e.position != 0 => out_of_order.push((0, e.position)),
            _ => {}
        }
        max_seen = max_seen.max(Some(e.position));
    }
    eprintln!(
        "received {} events for a log of {}; {} repeats; {} acks ({} failed)",
        seen.events.len(),
        log.len(),
        repeats.len(),
        seen.acks.len(),
        seen.ack_failures
    );
    assert!(
        wrong.is_empty(),
        "events that are not the log's: {:?}",
        &wrong[..wrong.len().min(20)]
    );
    assert!(
        out_of_order.is_empty(),
        "skipped or out of order (after, got): {:?}",
        &out_of_order[..out_of_order.len().min(20)]
    );
    assert!(
        repeats_before_ack.is_empty(),
        "delivered again at or before the last ack: {:?}",
        &repeats_before_ack[..repeats_before_ack.len().min(20)]
    );
    assert_eq!(max_seen, Some(log.len() as u64 - 1));
}

/// Appends `n` single events to `stream` in one append; the positions they took.
async fn append_n(s: &reckon_gater::StoreHandle, stream: &str, n: usize) -> Vec<u64> {
    let events: Vec<NewEvent> = (0..n)
        .map(|i| NewEvent::json("t", &json!({ "i": i })))
        .collect();
    let r = retrying("append", || {
        s.append(stream, ExpectedVersion::Any, events.clone())
    })
    .await;
    (r.first_position..r.first_position + n as u64).collect()
}

/// Polls as `consumer` until at least one event comes; what came.
async fn poll_some(
    s: &reckon_gater::StoreHandle,
    key: &str,
    consumer: &str,
    from: Option<u64>,
) -> Vec<u64> {
    let d = retrying("poll", || {
        s.poll(key, consumer, from, 1000, Duration::from_secs(5))
    })
    .await;
    assert!(
        !d.events.is_empty(),
        "{consumer}: a poll from {from:?} delivered nothing"
    );
    d.events.iter().map(|e| e.position).collect()
}

/// Moves the leadership of `default` to `target` and waits until the gater sees it.
async fn lead(client: &reckon_gater::Client, target: u64) {
    let s = client.store("default");
    retrying("transfer", || s.transfer_leader(target)).await;
    wait_until("the target leads", Duration::from_secs(30), || async {
        leader_of(client, "default").await == Some(target)
    })
    .await;
}

/// A consumer re-attaching (polling without a position) on a leader that has the
/// last acknowledgement in its log but has not applied it yet: delivery starts after
/// that acknowledgement, never before it. The new leader's state machine is made to
/// lag its log on purpose (every application of committed entries waits).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_resumes_after_an_acknowledgement_it_has_not_applied_yet() {
    const APPLY_DELAY: Duration = Duration::from_secs(8);
    let mut c = Cluster::start(3, &["default"]);
    // A request may wait for a few delayed applications on the lagging node.
    let client = formed(&c).await.with_timeout(wait::BASE + APPLY_DELAY * 6);
    let s = client.store("default");
    let info = retrying("subscribe", || {
        s.subscribe(SubscriptionType::Stream, "$all", "lagging", beginning())
    })
    .await;
    let first = append_n(&s, "before", 10).await;
    assert_eq!(poll_some(&s, &info.key, "c", None).await, first);
    retrying("ack", || s.ack(&info.key, "c", *first.last().unwrap())).await;

    // A follower restarts with a state machine that lags its log.
    let leader = leader_of(&client, "default").await.expect("a leader");
    let target = follower_of(leader);
    c.kill9(target as usize - 1);
    c.start_node_with_env(
        target as usize - 1,
        &[(
            "RECKON_NODE_FAULTS__APPLY_DELAY_MS",
            &APPLY_DELAY.as_millis().to_string(),
        )],
    );
    // Events and an acknowledgement it receives in its log but applies late.
    let second = append_n(&s, "between", 10).await;
    assert_eq!(poll_some(&s, &info.key, "c", None).await, second);
    let acked = *second.last().unwrap();
    retrying("ack", || s.ack(&info.key, "c", acked)).await;
    lead(&client, target).await;

    // Re-attach before anything else reaches the new leader (an append would wait
    // for its state to catch up), and wait long enough for its state to catch up
    // meanwhile: nothing acknowledged may come back.
    let again = retrying("poll", || {
        s.poll(&info.key, "c", None, 1000, APPLY_DELAY * 2)
    })
    .await;
    let early: Vec<u64> = again
        .events
        .iter()
        .map(|e| e.position)
        .filter(|p| *p <= acked)
        .collect();
    assert!(
        early.is_empty(),
        "re-attached on the new leader, positions {early:?} came again although {acked} was acknowledged"
    );
    let third = append_n(&s, "after", 5).await;
    assert_eq!(poll_some(&s, &info.key, "c", None).await, third);
}

/// A pooled subscription served by a node that led before, lost the leadership while
/// another leader moved the checkpoint, and leads again: its pool starts from the
/// checkpoint, not from where this node's old pool had got to.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pool_resumes_from_the_checkpoint_when_leadership_comes_back() {
    let c = Cluster::start(3, &["default"]);
    let client = formed(&c).await.with_timeout(Duration::from_secs(30));
    let s = client.store("default");
    let options = SubscribeOptions {
        start_from: StartFrom::Beginning,
        pool_size: 2,
    };
    let info = retrying("subscribe", || {
        s.subscribe(SubscriptionType::Stream, "$all", "pooled", options)
    })
    .await;
    let a = leader_of(&client, "default").await.expect("a leader");
    let b = (1..=3u64).find(|n| *n != a).expect("a follower");

    let first = append_n(&s, "on-a", 10).await;
    assert_eq!(poll_some(&s, &info.key, "p", None).await, first);
    retrying("ack", || s.ack(&info.key, "p", *first.last().unwrap())).await;

    lead(&client, b).await;
    let second = append_n(&s, "on-b", 10).await;
    assert_eq!(poll_some(&s, &info.key, "p", None).await, second);
    let acked = *second.last().unwrap();
    retrying("ack", || s.ack(&info.key, "p", acked)).await;

    lead(&client, a).await;
    let third = append_n(&s, "on-a-again", 3).await;
    let resumed = poll_some(&s, &info.key, "p", None).await;
    assert!(
        resumed[0] > acked,
        "back on node {a}, the pool delivered position {} although {acked} was acknowledged",
        resumed[0]
    );
    assert_eq!(resumed, third);
}
