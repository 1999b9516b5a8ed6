//! The acceptance scenarios of subscriptions, row by row, and the catch-up, pool and
//! redelivery behaviours, against a real `reckon-node --dev` process and its embedded
//! gater, through the client library (`reckon_gater::Client`).
//!
//! Every test starts its own node on its own data directory, so positions start at 0
//! in each. Checkers work over what the subscriber received: positions strictly
//! increasing, exactly the set that was written, payloads intact. No assertion is
//! about timing; "nothing else within 1 s" is one long-poll that waits 1 s.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reckon_gater::subscription::StartFrom;
use reckon_gater::subscription::{SubscribeOptions, SubscriptionInfo};
use reckon_gater::types::SubscriptionType;
use reckon_gater::{
    Client, ClientError, ContentType, Direction, EventRecord, ExpectedVersion, NewEvent,
    StoreError, StoreHandle, Subscriber,
};
use reckon_node::store::subscriptions::CONSUMER_LEASE;
use reckon_tests::{dev, wait, NodeProc};
use serde_json::{json, Value};
use tempfile::TempDir;
use uuid::Uuid;

use SubscriptionType::{EventPattern, EventPayload, EventType, Stream, Tags};

/// The longest any one test waits for deliveries it expects.
const DELIVERY_LIMIT: Duration = Duration::from_secs(60);

/// A `--dev` node with its embedded gater, and a client of its `default` store.
/// Fields drop in order: the client, then the process, then the directory.
struct Dev {
    client: Client,
    s: StoreHandle,
    node: NodeProc,
    dir: TempDir,
}

impl Dev {
    async fn start() -> Dev {
        let dir = tempfile::tempdir().expect("temp dir");
        let (node, addr) = dev::start_dev_with_gater(dir.path(), &[]);
        let client = dev::wait_for_store(&addr, "default").await;
        let s = client.store("default");
        wait_serving(&s).await;
        Dev {
            client,
            s,
            node,
            dir,
        }
    }

    /// Stops the node with SIGTERM and starts it again on the same data directory.
    async fn restart(self) -> Dev {
        let Dev {
            client,
            s,
            mut node,
            dir,
        } = self;
        drop(s);
        drop(client);
        node.terminate();
        drop(node);
        let (node, addr) = dev::start_dev_with_gater(dir.path(), &[]);
        let client = dev::wait_for_store(&addr, "default").await;
        let s = client.store("default");
        wait_serving(&s).await;
        Dev {
            client,
            s,
            node,
            dir,
        }
    }
}

/// Waits until the store answers a linearizable read through the gater.
async fn wait_serving(s: &StoreHandle) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match s.get_version("$probe").await {
            Ok(_) => return,
            Err(e) => {
                assert!(Instant::now() < deadline, "store never served: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

fn opts(start_from: StartFrom, pool_size: u32) -> SubscribeOptions {
    SubscribeOptions {
        start_from,
        pool_size,
    }
}

fn beginning() -> SubscribeOptions {
    opts(StartFrom::Beginning, 1)
}

/// Appends one JSON event and gives its global position.
async fn put(s: &StoreHandle, stream: &str, event_type: &str, data: Value) -> u64 {
    s.append(
        stream,
        ExpectedVersion::Any,
        vec![NewEvent::json(event_type, &data)],
    )
    .await
    .unwrap_or_else(|e| panic!("append to {stream}: {e}"))
    .first_position
}

/// Appends `count` events to `stream` in batches of `batch`, each carrying its index.
async fn fill(s: &StoreHandle, stream: &str, count: u64, batch: u64) {
    let mut n = 0;
    while n < count {
        let k = batch.min(count - n);
        let events = (n..n + k)
            .map(|i| NewEvent::json("filled", &json!({ "i": i })))
            .collect();
        s.append(stream, ExpectedVersion::Any, events)
            .await
            .unwrap_or_else(|e| panic!("fill {stream}: {e}"));
        n += k;
    }
}

/// Every event of the store's global log, by position.
async fn whole_log(s: &StoreHandle) -> Vec<EventRecord> {
    let mut out: Vec<EventRecord> = Vec::new();
    loop {
        let page = s
            .read_all(out.len() as u64, 1000, Direction::Forward)
            .await
            .expect("read_all");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Polls as `consumer` from `from` until caught up (a poll that delivers nothing and
/// has looked at everything up to the head); gives what was delivered and where the
/// next poll would start.
async fn drain(
    s: &StoreHandle,
    key: &str,
    consumer: &str,
    from: Option<u64>,
) -> (Vec<EventRecord>, u64) {
    let deadline = Instant::now() + DELIVERY_LIMIT;
    let mut out = Vec::new();
    let mut from = from;
    loop {
        let d = s
            .poll(key, consumer, from, 1000, Duration::from_millis(100))
            .await
            .unwrap_or_else(|e| panic!("poll {key}: {e}"));
        let caught_up = d.events.is_empty() && d.next >= d.head;
        out.extend(d.events);
        from = Some(d.next);
        if caught_up {
            return (out, d.next);
        }
        assert!(Instant::now() < deadline, "drain never caught up");
    }
}

/// Receives through `sub` until at least `n` events have come.
async fn receive(sub: &mut Subscriber, n: usize) -> Vec<EventRecord> {
    receive_within(sub, n, DELIVERY_LIMIT).await
}

/// [`receive`], waiting up to `limit`.
async fn receive_within(sub: &mut Subscriber, n: usize, limit: Duration) -> Vec<EventRecord> {
    let mut out = Vec::new();
    let deadline = Instant::now() + limit;
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = tokio::time::timeout(left, sub.next_batch())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} events arrived within {limit:?}", out.len()))
            .unwrap_or_else(|e| panic!("next_batch: {e}"));
        out.extend(batch);
    }
    out
}

/// One long-poll of 1 s from `from`, which must deliver nothing.
async fn nothing_within_a_second(s: &StoreHandle, key: &str, consumer: &str, from: u64) {
    let d = s
        .poll(key, consumer, Some(from), 1000, Duration::from_secs(1))
        .await
        .expect("poll");
    assert!(
        d.events.is_empty(),
        "expected nothing more, got {:?}",
        summary(&d.events)
    );
}

fn positions(events: &[EventRecord]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

fn summary(events: &[EventRecord]) -> Vec<(u64, String, String)> {
    events
        .iter()
        .map(|e| (e.position, e.stream_id.clone(), e.event_type.clone()))
        .collect()
}

fn data(e: &EventRecord) -> Value {
    serde_json::from_slice(&e.data).expect("JSON data")
}

/// The checker of the seam tests: `received` is exactly `written` (position → event
/// id), once each, in strictly increasing position order.
fn check_exactly_once_in_order(received: &[EventRecord], written: &BTreeMap<u64, Uuid>) {
    let mut out_of_order = Vec::new();
    for w in received.windows(2) {
        if w[1].position <= w[0].position {
            out_of_order.push((w[0].position, w[1].position));
        }
    }
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for e in received {
        *seen.entry(e.position).or_default() += 1;
    }
    let repeated: Vec<u64> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(p, _)| *p)
        .collect();
    let missing: Vec<u64> = written
        .keys()
        .filter(|p| !seen.contains_key(p))
        .copied()
        .collect();
    let unexpected: Vec<u64> = seen
        .keys()
        .filter(|p| !written.contains_key(p))
        .copied()
        .collect();
    let wrong_id: Vec<u64> = received
        .iter()
        .filter(|e| written.get(&e.position).is_some_and(|id| *id != e.event_id))
        .map(|e| e.position)
        .collect();
    let head = |v: &[u64]| v.iter().take(20).copied().collect::<Vec<_>>();
    assert!(
        out_of_order.is_empty()
            && repeated.is_empty()
            && missing.is_empty()
            && unexpected.is_empty()
            && wrong_id.is_empty(),
        "received {} of {} written: {} out of order (first {:?}), {} repeated (first {:?}), \
         {} missing (first {:?}), {} never written (first {:?}), {} with another event id \
         (first {:?})",
        received.len(),
        written.len(),
        out_of_order.len(),
        out_of_order.iter().take(20).collect::<Vec<_>>(),
        repeated.len(),
        head(&repeated),
        missing.len(),
        head(&missing),
        unexpected.len(),
        head(&unexpected),
        wrong_id.len(),
        head(&wrong_id),
    );
}

fn store_error(e: &ClientError) -> &StoreError {
    e.store_error()
        .unwrap_or_else(|| panic!("expected a store error, got {e}"))
}

fn assert_not_found(r: Result<impl std::fmt::Debug, ClientError>, what: &str) {
    match r {
        Err(ClientError::Store(StoreError::NotFound { .. })) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

fn assert_invalid(r: Result<SubscriptionInfo, ClientError>, field: &str, what: &str) {
    match r {
        Err(ClientError::Store(StoreError::InvalidInput { field: f, reason })) => {
            assert_eq!(f, field, "{what}: wrong field (reason: {reason})");
            assert!(!reason.is_empty(), "{what}: empty reason");
        }
        other => panic!("{what}: expected InvalidInput on {field}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// Selectors
// ---------------------------------------------------------------------------------

/// subscribe stream S, append 3 to S: the 3 events, in order, data and metadata
/// intact; events of other streams are not delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stream_subscription_delivers_its_three_events_intact_and_in_order() {
    let d = Dev::start().await;
    let s = &d.s;
    put(s, "other", "noise", json!({"n": 0})).await;
    let info = s
        .subscribe(Stream, "S", "stream-s", beginning())
        .await
        .unwrap();
    assert_eq!(info.kind, Stream);
    assert_eq!(info.selector, "S");
    assert_eq!(info.name, "stream-s");
    assert_eq!(info.checkpoint(), None);
    let mut sent = Vec::new();
    for n in 0..3u64 {
        put(s, "other", "noise", json!({"n": n + 1})).await;
        let id = Uuid::now_v7();
        let e = NewEvent::json(
            "thing-happened",
            &json!({"n": n, "nested": {"k": [n, "x"]}}),
        )
        .with_id(id)
        .with_metadata(&json!({"correlation": format!("c-{n}"), "user": "ann"}))
        .with_tags([format!("t{n}")]);
        s.append("S", ExpectedVersion::Any, vec![e.clone()])
            .await
            .unwrap();
        sent.push(e);
    }
    put(s, "other", "noise", json!({"n": 9})).await;

    let mut sub = s.subscriber(&info.key, "c1");
    let got = receive(&mut sub, 3).await;
    assert_eq!(got.len(), 3, "{:?}", summary(&got));
    for (i, (g, e)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(g.stream_id, "S");
        assert_eq!(g.version, i as u64);
        assert_eq!(Some(g.event_id), e.event_id);
        assert_eq!(g.event_type, "thing-happened");
        assert_eq!(g.data, e.data, "data of event {i}");
        assert_eq!(g.metadata, e.metadata, "metadata of event {i}");
        assert_eq!(g.content_type, ContentType::Json);
        assert_eq!(g.tags, e.tags);
    }
    // Global positions: other(0), other(1), S(2), other(3), S(4), other(5), S(6), other(7).
    assert_eq!(positions(&got), vec![2, 4, 6]);
    // And exactly what a read of the stream gives.
    assert_eq!(got, s.read("S", 0, 10).await.unwrap());
    // Nothing else: more appends to other streams are not delivered.
    put(s, "other", "noise", json!({"n": 10})).await;
    put(s, "S2", "noise", json!({"n": 11})).await;
    nothing_within_a_second(s, &info.key, "c1", sub.position().unwrap()).await;
}

/// event_type T: only events of type T, nothing else within 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_type_subscription_delivers_only_that_type() {
    let d = Dev::start().await;
    let s = &d.s;
    let mut expected = Vec::new();
    for i in 0..30u64 {
        let t = ["T", "U", "T-extended", "t"][i as usize % 4];
        let p = put(s, &format!("st-{}", i % 3), t, json!({"i": i})).await;
        if t == "T" {
            expected.push(p);
        }
    }
    let info = s
        .subscribe(EventType, "T", "only-t", beginning())
        .await
        .unwrap();
    let (got, next) = drain(s, &info.key, "c", None).await;
    assert!(
        got.iter().all(|e| e.event_type == "T"),
        "{:?}",
        summary(&got)
    );
    assert_eq!(positions(&got), expected);
    // Other types appended now: nothing within 1 s.
    for i in 0..5 {
        put(s, "st-0", "U", json!({"i": i})).await;
        put(s, "st-1", "TT", json!({"i": i})).await;
    }
    nothing_within_a_second(s, &info.key, "c", next).await;
    // And a T appended now is delivered.
    let p = put(s, "st-9", "T", json!({"last": true})).await;
    let (got, _) = drain(s, &info.key, "c", Some(next)).await;
    assert_eq!(positions(&got), vec![p]);
}

/// event_pattern `order-*`: events of order-1 and order-2, not of user-1.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_pattern_delivers_matching_streams_only() {
    let d = Dev::start().await;
    let s = &d.s;
    let streams = [
        "order-1", "user-1", "order-2", "orders", "xorder-1", "order-",
    ];
    let mut expected = Vec::new();
    for i in 0..4u64 {
        for st in streams {
            let p = put(s, st, "e", json!({"i": i})).await;
            if st.starts_with("order-") {
                expected.push(p);
            }
        }
    }
    let info = s
        .subscribe(EventPattern, "order-*", "orders", beginning())
        .await
        .unwrap();
    let (got, next) = drain(s, &info.key, "c", None).await;
    assert_eq!(positions(&got), expected, "{:?}", summary(&got));
    let ids: BTreeSet<&str> = got.iter().map(|e| e.stream_id.as_str()).collect();
    assert_eq!(ids, BTreeSet::from(["order-1", "order-2", "order-"]));
    put(s, "user-1", "e", json!({})).await;
    nothing_within_a_second(s, &info.key, "c", next).await;

    // `?` is exactly one character.
    let info = s
        .subscribe(EventPattern, "order-?", "one-char", beginning())
        .await
        .unwrap();
    let (got, _) = drain(s, &info.key, "c", None).await;
    let ids: BTreeSet<&str> = got.iter().map(|e| e.stream_id.as_str()).collect();
    assert_eq!(ids, BTreeSet::from(["order-1", "order-2"]));
}

/// event_payload {"amount": {"$gt": 100}}: only events whose data.amount > 100.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_payload_delivers_only_amounts_over_100() {
    let d = Dev::start().await;
    let s = &d.s;
    let payloads = [
        json!({"amount": 50}),
        json!({"amount": 100}),
        json!({"amount": 101}),
        json!({"amount": 250, "currency": "EUR"}),
        json!({"amount": 100.5}),
        json!({"amount": 100.0}),
        json!({"amount": "300"}),
        json!({"amount": null}),
        json!({"amount": {"value": 500}}),
        json!({"other": 1000}),
        json!({"nested": {"amount": 1000}}),
        json!([{"amount": 1000}]),
        json!({"amount": -1000}),
        json!({"amount": 1e9}),
    ];
    let mut expected = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let pos = put(s, &format!("pay-{}", i % 2), "paid", p.clone()).await;
        if p.get("amount")
            .and_then(Value::as_f64)
            .is_some_and(|a| a > 100.0)
        {
            expected.push(pos);
        }
    }
    // A binary event whose bytes happen to be such JSON never matches.
    let mut bin = NewEvent::json("paid", &json!({"amount": 999}));
    bin.content_type = ContentType::Binary;
    s.append("pay-0", ExpectedVersion::Any, vec![bin])
        .await
        .unwrap();
    assert_eq!(expected.len(), 4, "the fixture itself");
    let info = s
        .subscribe(
            EventPayload,
            r#"{"amount": {"$gt": 100}}"#,
            "big",
            beginning(),
        )
        .await
        .unwrap();
    let (got, next) = drain(s, &info.key, "c", None).await;
    assert_eq!(
        positions(&got),
        expected,
        "{:?}",
        got.iter().map(data).collect::<Vec<_>>()
    );
    assert!(got
        .iter()
        .all(|e| data(e)["amount"].as_f64().is_some_and(|a| a > 100.0)));
    put(s, "pay-0", "paid", json!({"amount": 99})).await;
    nothing_within_a_second(s, &info.key, "c", next).await;
    let p = put(s, "pay-0", "paid", json!({"amount": 101})).await;
    let (got, _) = drain(s, &info.key, "c", Some(next)).await;
    assert_eq!(positions(&got), vec![p]);
}

/// `$all`: every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_delivers_every_event() {
    let d = Dev::start().await;
    let s = &d.s;
    for i in 0..50u64 {
        let mut e = NewEvent::json(format!("type-{}", i % 5), &json!({"i": i}));
        if i % 7 == 0 {
            e.content_type = ContentType::Binary;
            e.data = vec![0, 159, 146, 150, i as u8];
        }
        s.append(&format!("all-{}", i % 6), ExpectedVersion::Any, vec![e])
            .await
            .unwrap();
    }
    s.delete("all-5", ExpectedVersion::Any, false)
        .await
        .unwrap();
    let info = s
        .subscribe(Stream, "$all", "everything", beginning())
        .await
        .unwrap();
    let (got, next) = drain(s, &info.key, "c", None).await;
    let log = whole_log(s).await;
    assert!(!log.is_empty());
    assert_eq!(got, log);
    let p = put(s, "late", "t", json!({})).await;
    let (got, _) = drain(s, &info.key, "c", Some(next)).await;
    assert_eq!(positions(&got), vec![p]);
}

/// tags (any | all): events carrying any, or every, of the tags.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tags_any_and_all() {
    let d = Dev::start().await;
    let s = &d.s;
    let tag_sets: [&[&str]; 5] = [&["vip"], &["priority"], &["vip", "priority"], &[], &["x"]];
    let mut any = Vec::new();
    let mut all = Vec::new();
    for i in 0..10 {
        let tags = tag_sets[i % 5];
        let e = NewEvent::json("t", &json!({"i": i})).with_tags(tags.iter().copied());
        let p = s
            .append("tagged", ExpectedVersion::Any, vec![e])
            .await
            .unwrap()
            .first_position;
        if tags.contains(&"vip") || tags.contains(&"priority") {
            any.push(p);
        }
        if tags.contains(&"vip") && tags.contains(&"priority") {
            all.push(p);
        }
    }
    let k_any = s
        .subscribe(Tags, "vip,priority", "any", beginning())
        .await
        .unwrap()
        .key;
    let k_all = s
        .subscribe(Tags, "all:vip,priority", "all", beginning())
        .await
        .unwrap()
        .key;
    assert_eq!(positions(&drain(s, &k_any, "c", None).await.0), any);
    assert_eq!(positions(&drain(s, &k_all, "c", None).await.0), all);
}

/// Bad selectors and pool sizes are InvalidInput at subscribe time, naming the field;
/// nothing is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_selectors_and_pool_sizes_are_invalid_input() {
    let d = Dev::start().await;
    let s = &d.s;
    let cases: [(SubscriptionType, &str, &str); 8] = [
        (EventPayload, "amount > 100", "payload that is not JSON"),
        (EventPayload, r#"{"amount": {"$gt": 100"#, "truncated JSON"),
        (
            EventPayload,
            r#"{"amount": {"$between": [1, 2]}}"#,
            "unknown $op",
        ),
        (EventPayload, r#"[1, 2]"#, "payload that is not an object"),
        (EventPayload, r#"{"a": {"$in": 3}}"#, "$in without an array"),
        (
            EventPayload,
            r#"{"a": {"$exists": 1}}"#,
            "$exists without a boolean",
        ),
        (Stream, "", "empty stream id"),
        (EventType, "", "empty event type"),
    ];
    for (kind, selector, what) in cases {
        assert_invalid(
            s.subscribe(kind, selector, "bad", beginning()).await,
            "selector",
            what,
        );
    }
    assert_invalid(
        s.subscribe(Stream, "$all", "pool0", opts(StartFrom::Beginning, 0))
            .await,
        "pool_size",
        "pool_size 0",
    );
    assert!(
        s.subscriptions().await.unwrap().is_empty(),
        "a rejected subscribe created a subscription"
    );
}

// ---------------------------------------------------------------------------------
// The catch-up/live seam
// ---------------------------------------------------------------------------------

/// Appends `per_writer` events in batches of `batch` from each of `writers`
/// concurrent writers (one stream each); gives position → event id of what was
/// acknowledged.
async fn concurrent_writers(
    s: &StoreHandle,
    writers: usize,
    per_writer: u64,
    batch: u64,
) -> BTreeMap<u64, Uuid> {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut written = Vec::new();
            let stream = format!("writer-{w}");
            let mut n = 0;
            while n < per_writer {
                let k = batch.min(per_writer - n);
                let ids: Vec<Uuid> = (0..k).map(|_| Uuid::now_v7()).collect();
                let events = ids
                    .iter()
                    .enumerate()
                    .map(|(j, id)| {
                        NewEvent::json("live", &json!({"w": w, "n": n + j as u64})).with_id(*id)
                    })
                    .collect();
                let r = s
                    .append(&stream, ExpectedVersion::Any, events)
                    .await
                    .unwrap_or_else(|e| panic!("writer {w}: {e}"));
                assert_eq!(r.last_position - r.first_position + 1, k);
                written.extend((r.first_position..=r.last_position).zip(ids));
                n += k;
            }
            written
        }));
    }
    let mut out = BTreeMap::new();
    for t in tasks {
        out.extend(t.await.unwrap());
    }
    out
}

/// Stores `stored` events, subscribes `$all` from the beginning, and receives while
/// `writers` writers append `live` more; checks what was received.
async fn seam(stored: u64, writers: usize, live: u64, batch: u64) {
    let d = Dev::start().await;
    let s = &d.s;
    fill(s, "stored", stored, 100).await;
    let mut written: BTreeMap<u64, Uuid> = whole_log(s)
        .await
        .into_iter()
        .map(|e| (e.position, e.event_id))
        .collect();
    assert_eq!(written.len() as u64, stored);
    let info = s
        .subscribe(Stream, "$all", "seam", beginning())
        .await
        .unwrap();
    let total = (stored + live) as usize;
    // The reader waits while the writers append: its bound grows with their appends
    // and with the events it receives.
    let limit = wait::for_work(live.div_ceil(batch), total as u64);
    let mut sub = s.subscriber(&info.key, "seam-reader");
    let reader = tokio::spawn(async move {
        let got = receive_within(&mut sub, total, limit).await;
        // Anything beyond the total would be a repeat: look once more.
        let d = sub.position();
        (got, d, sub)
    });
    let started = Instant::now();
    written.extend(concurrent_writers(s, writers, live / writers as u64, batch).await);
    eprintln!(
        "seam: {live} live events by {writers} writers in {:?}",
        started.elapsed()
    );
    assert_eq!(written.len(), total);
    let (got, next, _sub) = reader.await.unwrap();
    check_exactly_once_in_order(&got, &written);
    nothing_within_a_second(s, &info.key, "seam-reader", next.unwrap()).await;
}

/// start_from beginning, 1000 events stored, 1000 more appended meanwhile by a
/// concurrent writer: all 2000, in position order, no gap at the seam.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catch_up_then_live_has_no_gap_at_the_seam() {
    seam(1000, 1, 1000, 1).await;
}

/// 10,000 stored, a subscriber starts from the beginning while 10 writers
/// append another 10,000; it receives all 20,000 exactly once in position order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_seam_at_scale_ten_thousand_plus_ten_writers() {
    seam(10_000, 10, 10_000, 5).await;
}

// ---------------------------------------------------------------------------------
// Acknowledgements, names, unsubscribe
// ---------------------------------------------------------------------------------

/// ack 10, then restart the subscriber: delivery resumes at the event after 10;
/// ack 10 then ack 5: the checkpoint stays 10; both survive a node restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ack_moves_the_checkpoint_forward_only_and_restart_resumes_after_it() {
    let d = Dev::start().await;
    fill(&d.s, "acked", 20, 20).await;
    let key =
        d.s.subscribe(Stream, "acked", "acker", beginning())
            .await
            .unwrap()
            .key;
    {
        let mut sub = d.s.subscriber(&key, "c");
        let got = receive(&mut sub, 20).await;
        assert_eq!(positions(&got), (0..20).collect::<Vec<_>>());
        let info = sub.ack(10).await.unwrap();
        assert_eq!(info.checkpoint(), Some(10));
        assert_eq!(info.cursor, 11);
    }
    assert_eq!(d.s.subscription(&key).await.unwrap().checkpoint(), Some(10));
    // A new subscriber (no position of its own) resumes after the checkpoint.
    let mut sub = d.s.subscriber(&key, "c");
    let got = receive(&mut sub, 9).await;
    assert_eq!(positions(&got), (11..20).collect::<Vec<_>>());
    assert_eq!(got[0].version, 11);

    // ack 5 after ack 10: ignored.
    let info = d.s.ack(&key, "c", 5).await.unwrap();
    assert_eq!(
        info.checkpoint(),
        Some(10),
        "ack 5 after ack 10 moved it back"
    );
    assert_eq!(d.s.subscription(&key).await.unwrap().checkpoint(), Some(10));
    // Also from another consumer name.
    let info = d.s.ack(&key, "other", 3).await.unwrap();
    assert_eq!(info.checkpoint(), Some(10));
    let mut sub = d.s.subscriber(&key, "c");
    assert_eq!(receive(&mut sub, 1).await[0].position, 11);

    // Checkpoints are persistent: after a node restart, still 10, resume at 11.
    let d = d.restart().await;
    let info = d.s.subscription(&key).await.unwrap();
    assert_eq!(info.checkpoint(), Some(10));
    let mut sub = d.s.subscriber(&key, "c");
    let got = receive(&mut sub, 9).await;
    assert_eq!(positions(&got), (11..20).collect::<Vec<_>>());
    let info = d.s.ack(&key, "c", 19).await.unwrap();
    assert_eq!(info.checkpoint(), Some(19));
    assert_eq!(info.lag(), 0);
    let _ = &d.client;
}

/// subscribe twice with the same name: same key, one subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribing_twice_with_the_same_name_gives_the_same_key() {
    let d = Dev::start().await;
    let s = &d.s;
    fill(s, "twice", 5, 5).await;
    let a = s
        .subscribe(EventPattern, "tw*", "twin", beginning())
        .await
        .unwrap();
    s.ack(&a.key, "c", 2).await.unwrap();
    let b = s
        .subscribe(EventPattern, "tw*", "twin", beginning())
        .await
        .unwrap();
    assert_eq!(a.key, b.key);
    // Re-attaching does not reset the checkpoint.
    assert_eq!(b.checkpoint(), Some(2));
    assert_eq!(b.created_us, a.created_us);
    let list = s.subscriptions().await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].key, a.key);
    assert_eq!(list[0].name, "twin");
    // Another name is another subscription; another selector too.
    let c = s
        .subscribe(EventPattern, "tw*", "twin-2", beginning())
        .await
        .unwrap();
    let e = s
        .subscribe(EventPattern, "t*", "twin", beginning())
        .await
        .unwrap();
    assert_ne!(c.key, a.key);
    assert_ne!(e.key, a.key);
    let keys: BTreeSet<String> = s
        .subscriptions()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(keys, BTreeSet::from([a.key, c.key, e.key]));
}

/// unsubscribe: no more deliveries; a bogus key gives NotFound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unsubscribe_stops_deliveries_and_a_bogus_key_is_not_found() {
    let d = Dev::start().await;
    let s = &d.s;
    put(s, "u", "t", json!({})).await;
    let key = s
        .subscribe(Stream, "u", "gone", beginning())
        .await
        .unwrap()
        .key;
    let (got, next) = drain(s, &key, "c", None).await;
    assert_eq!(got.len(), 1);
    s.unsubscribe(&key).await.unwrap();
    put(s, "u", "t", json!({"after": true})).await;
    assert_not_found(
        s.poll(&key, "c", Some(next), 10, Duration::from_millis(100))
            .await,
        "poll after unsubscribe",
    );
    assert_not_found(
        s.poll(&key, "c", None, 10, Duration::from_millis(100))
            .await,
        "poll from the checkpoint after unsubscribe",
    );
    assert_not_found(s.subscription(&key).await, "get after unsubscribe");
    assert_not_found(s.ack(&key, "c", 0).await, "ack after unsubscribe");
    assert!(s.subscriptions().await.unwrap().is_empty());
    let mut sub = s.subscriber(&key, "c");
    match tokio::time::timeout(Duration::from_secs(30), sub.next_batch()).await {
        Ok(Err(e)) => assert!(
            matches!(store_error(&e), StoreError::NotFound { .. }),
            "{e}"
        ),
        Ok(Ok(b)) => panic!("a subscriber of an unsubscribed key got {:?}", summary(&b)),
        Err(_) => panic!("a subscriber of an unsubscribed key waits forever"),
    }
    // Unsubscribing again, and bogus keys.
    assert_not_found(s.unsubscribe(&key).await, "unsubscribe twice");
    let bogus = "0123456789abcdef0123456789abcdef";
    assert_not_found(s.unsubscribe(bogus).await, "unsubscribe bogus");
    assert_not_found(s.unsubscribe("no such key").await, "unsubscribe junk");
    assert_not_found(s.subscription(bogus).await, "get bogus");
    assert_not_found(s.ack(bogus, "c", 0).await, "ack bogus");
    assert_not_found(
        s.poll(bogus, "c", None, 10, Duration::from_millis(100))
            .await,
        "poll bogus",
    );
    // Subscribing again with the same name starts afresh (from the beginning).
    let again = s.subscribe(Stream, "u", "gone", beginning()).await.unwrap();
    assert_eq!(again.key, key);
    assert_eq!(again.checkpoint(), None);
    assert_eq!(drain(s, &key, "c", None).await.0.len(), 2);
}

/// A long-poll waiting when the subscription is removed does not deliver events
/// appended after the removal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unsubscribe_ends_a_waiting_poll_without_delivering() {
    let d = Dev::start().await;
    let s = &d.s;
    put(s, "w", "t", json!({})).await;
    let key = s
        .subscribe(Stream, "w", "waiting", beginning())
        .await
        .unwrap()
        .key;
    let (_, next) = drain(s, &key, "c", None).await;
    let waiting = {
        let (s, key) = (s.clone(), key.clone());
        tokio::spawn(async move {
            s.poll(&key, "waiter", Some(next), 10, Duration::from_secs(5))
                .await
        })
    };
    // The poll is waiting once the node counts its consumer, beside "c".
    wait_consumers(s, &key, 2).await;
    s.unsubscribe(&key).await.unwrap();
    put(s, "w", "t", json!({"after": true})).await;
    match waiting.await.unwrap() {
        Ok(d) => assert!(
            d.events.is_empty(),
            "a poll delivered {:?} appended after unsubscribe",
            summary(&d.events)
        ),
        Err(e) => assert!(
            matches!(store_error(&e), StoreError::NotFound { .. }),
            "{e}"
        ),
    }
}

/// start_from end: only events appended after subscribing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_from_end_delivers_only_later_events() {
    let d = Dev::start().await;
    let s = &d.s;
    fill(s, "e", 5, 5).await;
    let info = s
        .subscribe(Stream, "$all", "from-end", opts(StartFrom::End, 1))
        .await
        .unwrap();
    assert_eq!(info.cursor, 5);
    assert_eq!(info.lag(), 0);
    nothing_within_a_second(s, &info.key, "c", info.cursor).await;
    let mut sub = s.subscriber(&info.key, "c");
    let (s2, key) = (s.clone(), info.key.clone());
    let later = tokio::spawn(async move {
        let a = put(&s2, "e", "t", json!({"later": 1})).await;
        let b = put(&s2, "f", "t", json!({"later": 2})).await;
        let c = put(&s2, "e", "t", json!({"later": 3})).await;
        let _ = key;
        vec![a, b, c]
    });
    let got = receive(&mut sub, 3).await;
    assert_eq!(positions(&got), later.await.unwrap());
    assert_eq!(positions(&got), vec![5, 6, 7]);
    nothing_within_a_second(s, &info.key, "c", sub.position().unwrap()).await;

    // And a position: exactly from there.
    let info = s
        .subscribe(Stream, "$all", "from-6", opts(StartFrom::Position(6), 1))
        .await
        .unwrap();
    assert_eq!(info.cursor, 6);
    assert_eq!(
        positions(&drain(s, &info.key, "c", None).await.0),
        vec![6, 7]
    );
}

// ---------------------------------------------------------------------------------
// Pools
// ---------------------------------------------------------------------------------

/// What one pooled consumer received, and the last position it acknowledged.
#[derive(Debug)]
struct Catch {
    me: String,
    got: Vec<EventRecord>,
    acked: Option<u64>,
}

/// Consumers of one pooled subscription, each polling from its own position and
/// acknowledging the last event of each batch, until told to stop.
struct Pool {
    received: Arc<AtomicUsize>,
    /// Polls each consumer has finished.
    polls: Vec<Arc<AtomicUsize>>,
    stops: Vec<Arc<AtomicBool>>,
    tasks: Vec<Option<tokio::task::JoinHandle<Catch>>>,
}

impl Pool {
    fn start(s: &StoreHandle, key: &str, n: usize) -> Pool {
        let received = Arc::new(AtomicUsize::new(0));
        let mut polls = Vec::new();
        let mut stops = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..n {
            let stop = Arc::new(AtomicBool::new(false));
            stops.push(stop.clone());
            let polled = Arc::new(AtomicUsize::new(0));
            polls.push(polled.clone());
            let (s, key, received) = (s.clone(), key.to_string(), received.clone());
            tasks.push(Some(tokio::spawn(async move {
                let me = format!("consumer-{i}");
                let mut got = Vec::new();
                let mut from = None;
                let mut acked = None;
                while !stop.load(Ordering::Relaxed) {
                    let d = s
                        .poll(&key, &me, from, 100, Duration::from_millis(200))
                        .await
                        .unwrap_or_else(|e| panic!("{me}: {e}"));
                    from = Some(d.next);
                    if let Some(last) = d.events.last() {
                        s.ack(&key, &me, last.position)
                            .await
                            .unwrap_or_else(|e| panic!("{me} ack: {e}"));
                        acked = Some(last.position);
                    }
                    received.fetch_add(d.events.len(), Ordering::Relaxed);
                    got.extend(d.events);
                    polled.fetch_add(1, Ordering::Relaxed);
                }
                Catch { me, got, acked }
            })));
        }
        Pool {
            received,
            polls,
            stops,
            tasks,
        }
    }

    /// Waits until every running consumer has finished `n` more polls than it had:
    /// the polls in flight now are over, and `n - 1` whole ones after them.
    async fn wait_polls(&self, n: usize) {
        let want: Vec<(usize, usize)> = (0..self.tasks.len())
            .filter(|i| self.tasks[*i].is_some())
            .map(|i| (i, self.polls[i].load(Ordering::Relaxed) + n))
            .collect();
        let deadline = Instant::now() + DELIVERY_LIMIT;
        while !want
            .iter()
            .all(|(i, w)| self.polls[*i].load(Ordering::Relaxed) >= *w)
        {
            assert!(
                Instant::now() < deadline,
                "the consumers did not poll {n} more times within {DELIVERY_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the consumers have received `total` events between them.
    async fn wait_received(&self, total: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.received.load(Ordering::Relaxed) < total {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    /// Stops consumer `i` and gives what it received.
    async fn stop(&mut self, i: usize) -> Catch {
        self.stops[i].store(true, Ordering::Relaxed);
        self.tasks[i].take().expect("running").await.unwrap()
    }

    /// Lets the consumers poll a little longer (three more polls each, so that
    /// repeats would show), then stops them all.
    async fn finish(mut self) -> Vec<Catch> {
        self.wait_polls(3).await;
        let mut out = Vec::new();
        for i in 0..self.tasks.len() {
            if self.tasks[i].is_some() {
                out.push(self.stop(i).await);
            }
        }
        out
    }
}

/// Appends `rounds` events to each of `streams` streams `acct-0..`, interleaved over
/// 5 writers, plus non-matching noise; gives the matching events as stored.
async fn write_accounts(s: &StoreHandle, streams: usize, rounds: usize) -> Vec<EventRecord> {
    let before = whole_log(s).await.len() as u64;
    let mut tasks = Vec::new();
    for w in 0..5 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..rounds {
                for k in (w..streams).step_by(5) {
                    put(&s, &format!("acct-{k}"), "t", json!({"r": round})).await;
                }
                put(&s, &format!("noise-{w}"), "t", json!({})).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let log = whole_log(s).await;
    let out: Vec<EventRecord> = log
        .into_iter()
        .filter(|e| e.position >= before && e.stream_id.starts_with("acct-"))
        .collect();
    assert_eq!(out.len(), streams * rounds);
    out
}

/// Per consumer, each stream's events in increasing version order.
fn check_stream_order(catches: &[Catch]) {
    for c in catches {
        let mut last_version: HashMap<&str, u64> = HashMap::new();
        for e in &c.got {
            if let Some(v) = last_version.insert(&e.stream_id, e.version) {
                assert!(
                    e.version > v,
                    "{}: {} version {} after version {v}",
                    c.me,
                    e.stream_id,
                    e.version
                );
            }
        }
    }
}

/// The pool checker: every event of `written` delivered once, to one consumer; each
/// stream's events all to one consumer, in version order; all 3 consumers used.
fn check_pool(catches: &[Catch], written: &[EventRecord]) {
    check_stream_order(catches);
    let mut by_position: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    let mut stream_owner: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in catches {
        eprintln!("{}: {} events", c.me, c.got.len());
        for e in &c.got {
            by_position.entry(e.position).or_default().push(&c.me);
            stream_owner.entry(&e.stream_id).or_default().insert(&c.me);
        }
    }
    let repeats: Vec<(&u64, &Vec<&str>)> = by_position
        .iter()
        .filter(|(_, who)| who.len() > 1)
        .collect();
    let missing: Vec<(u64, &str, Option<&BTreeSet<&str>>)> = written
        .iter()
        .filter(|e| !by_position.contains_key(&e.position))
        .map(|e| {
            (
                e.position,
                e.stream_id.as_str(),
                stream_owner.get(e.stream_id.as_str()),
            )
        })
        .collect();
    let shared: Vec<(&&str, &BTreeSet<&str>)> = stream_owner
        .iter()
        .filter(|(_, who)| who.len() > 1)
        .collect();
    assert!(
        repeats.is_empty() && missing.is_empty() && shared.is_empty(),
        "{} of {} events delivered more than once (first {:?}); {} never delivered \
         (position, stream, its consumers; first {:?}); {} of {} streams went to more than \
         one consumer (first {:?})",
        repeats.len(),
        written.len(),
        repeats.iter().take(10).collect::<Vec<_>>(),
        missing.len(),
        missing.iter().take(10).collect::<Vec<_>>(),
        shared.len(),
        stream_owner.len(),
        shared.iter().take(10).collect::<Vec<_>>(),
    );
    assert_eq!(by_position.len(), written.len());
    let used = catches.iter().filter(|c| !c.got.is_empty()).count();
    assert_eq!(
        used,
        3,
        "the {} streams were not spread over the 3 consumers: {:?}",
        stream_owner.len(),
        catches
            .iter()
            .map(|c| (c.me.as_str(), c.got.len()))
            .collect::<Vec<_>>()
    );
}

/// Waits until `n` consumers are attached to `key`.
async fn wait_consumers(s: &StoreHandle, key: &str, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = s.subscription(key).await.unwrap().consumers;
        if c == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} consumers never attached ({c})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// pool_size 3, the three consumers attached before events arrive: every event
/// delivered once to exactly one of them; each stream's events to one consumer, in
/// order; the checkpoint is the lowest of their acks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_of_three_attached_first_delivers_each_event_once() {
    let d = Dev::start().await;
    let s = &d.s;
    let info = s
        .subscribe(
            EventPattern,
            "acct-*",
            "pool",
            opts(StartFrom::Beginning, 3),
        )
        .await
        .unwrap();
    assert_eq!(info.pool_size, 3);
    let pool = Pool::start(s, &info.key, 3);
    wait_consumers(s, &info.key, 3).await;
    // Let the first polls (which began before all three were attached; they wait
    // 200 ms) run out, so that this test checks the steady state; the backlog test
    // below checks consumers that arrive together with the events.
    pool.wait_polls(1).await;
    let written = write_accounts(s, 30, 20).await;
    let all = pool.wait_received(written.len(), DELIVERY_LIMIT).await;
    let catches = pool.finish().await;
    check_pool(&catches, &written);
    assert!(all, "the pool received fewer than {}", written.len());
    // Every delivered event was acknowledged: the pool's checkpoint has passed the
    // highest acknowledged position (it may pass trailing events that match nothing).
    let highest_ack = catches.iter().filter_map(|c| c.acked).max();
    let checkpoint = s.subscription(&info.key).await.unwrap().checkpoint();
    assert!(
        checkpoint >= highest_ack,
        "{checkpoint:?} < {highest_ack:?}"
    );
}

/// pool_size 3 over a stored backlog, the three consumers starting together: every
/// event delivered once to exactly one of them; each stream's order kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_of_three_started_together_over_a_backlog_delivers_each_event_once() {
    let d = Dev::start().await;
    let s = &d.s;
    let written = write_accounts(s, 30, 20).await;
    let info = s
        .subscribe(
            EventPattern,
            "acct-*",
            "pool",
            opts(StartFrom::Beginning, 3),
        )
        .await
        .unwrap();
    let pool = Pool::start(s, &info.key, 3);
    let all = pool.wait_received(written.len(), DELIVERY_LIMIT).await;
    let catches = pool.finish().await;
    check_pool(&catches, &written);
    assert!(all, "the pool received fewer than {}", written.len());
}

/// pool_size 3, a consumer leaves: its streams go to the other two, and nothing
/// appended after it left is lost: a consumer leaving hands its streams to the
/// others. Waits out the node's 10 s consumer lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_consumer_leaving_hands_its_streams_over_without_loss() {
    let d = Dev::start().await;
    let s = &d.s;
    let info = s
        .subscribe(
            EventPattern,
            "acct-*",
            "pool",
            opts(StartFrom::Beginning, 3),
        )
        .await
        .unwrap();
    let mut pool = Pool::start(s, &info.key, 3);
    wait_consumers(s, &info.key, 3).await;
    let first = write_accounts(s, 30, 5).await;
    assert!(pool.wait_received(first.len(), DELIVERY_LIMIT).await);
    pool.wait_polls(1).await;
    let gone = pool.stop(2).await;
    assert!(!gone.got.is_empty(), "consumer-2 had no streams");
    let gone_streams: BTreeSet<String> = gone.got.iter().map(|e| e.stream_id.clone()).collect();
    let second = write_accounts(s, 30, 5).await;
    // Its lease (10 s) runs out; the other two take its streams.
    let all = pool
        .wait_received(first.len() + second.len(), CONSUMER_LEASE + DELIVERY_LIMIT)
        .await;
    let mut catches = pool.finish().await;
    catches.push(gone);
    check_stream_order(&catches);
    let got: BTreeSet<u64> = catches
        .iter()
        .flat_map(|c| c.got.iter().map(|e| e.position))
        .collect();
    let missing: Vec<(u64, &str, bool)> = first
        .iter()
        .chain(&second)
        .filter(|e| !got.contains(&e.position))
        .map(|e| {
            (
                e.position,
                e.stream_id.as_str(),
                gone_streams.contains(&e.stream_id),
            )
        })
        .collect();
    assert!(
        all && missing.is_empty(),
        "{} events never delivered after consumer-2 left (position, stream, was \
         consumer-2's): first {:?}",
        missing.len(),
        missing.iter().take(20).collect::<Vec<_>>()
    );
}

/// pool_size 2: a pooled consumer that restarts (a new `Subscriber` under the same
/// consumer name, without a position) before acknowledging gets its unacknowledged
/// events again, as a non-pooled subscriber would (at-least-once across
/// re-attachments: redelivery starts after the last ack).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pooled_consumer_restarting_before_its_ack_gets_its_events_again() {
    let d = Dev::start().await;
    let s = &d.s;
    let key = s
        .subscribe(
            EventPattern,
            "acct-*",
            "pool",
            opts(StartFrom::Beginning, 2),
        )
        .await
        .unwrap()
        .key;
    // Both attach before any event exists.
    for me in ["a", "b"] {
        s.poll(&key, me, None, 1, Duration::from_millis(50))
            .await
            .unwrap();
    }
    wait_consumers(s, &key, 2).await;
    let written = write_accounts(s, 10, 4).await;
    // b reads and acknowledges all of its share.
    let mut b = s.subscriber(&key, "b");
    let got_b = tokio::time::timeout(Duration::from_secs(10), b.next_batch())
        .await
        .expect("b got nothing")
        .unwrap();
    b.ack(got_b.last().unwrap().position).await.unwrap();
    // a reads its share, does not acknowledge, and restarts.
    let mut a = s.subscriber(&key, "a");
    let got_a = tokio::time::timeout(Duration::from_secs(10), a.next_batch())
        .await
        .expect("a got nothing")
        .unwrap();
    assert_eq!(got_a.len() + got_b.len(), written.len());
    drop(a);
    let checkpoint = s.subscription(&key).await.unwrap().checkpoint();
    assert!(
        checkpoint < Some(got_a[0].position),
        "the checkpoint {checkpoint:?} passed a's unacknowledged event at {}",
        got_a[0].position
    );
    let mut a = s.subscriber(&key, "a");
    let again = match tokio::time::timeout(Duration::from_secs(6), a.next_batch()).await {
        Ok(r) => r.unwrap(),
        Err(_) => panic!(
            "a restarted without acknowledging {} events (positions {:?}...) and got none of \
             them again within 6 s; the pool's checkpoint stays at {checkpoint:?}",
            got_a.len(),
            &positions(&got_a)[..got_a.len().min(5)]
        ),
    };
    assert_eq!(positions(&again), positions(&got_a));
    a.ack(again.last().unwrap().position).await.unwrap();
    let checkpoint = s.subscription(&key).await.unwrap().checkpoint();
    assert!(checkpoint >= Some(written.last().unwrap().position));
}

// ---------------------------------------------------------------------------------
// A subscriber that stops reading
// ---------------------------------------------------------------------------------

/// Appends `n` single events one after another; gives appends per second.
async fn append_rate(s: &StoreHandle, stream: &str, n: u64) -> f64 {
    let started = Instant::now();
    for i in 0..n {
        put(s, stream, "t", json!({"i": i})).await;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// A subscriber that stops reading never blocks appends, and its lag grows and is
/// reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_that_stops_reading_blocks_nothing_and_its_lag_grows() {
    let d = Dev::start().await;
    let s = &d.s;
    // Figures, not assertions: single appends in sequence, without a subscription and
    // then with a stalled subscriber (medians of 3 rounds; the machine may be busy).
    let mut before = Vec::new();
    for round in 0..3 {
        before.push(append_rate(s, &format!("warm-up-{round}"), 100).await);
    }
    let info = s
        .subscribe(Stream, "$all", "sleepy", beginning())
        .await
        .unwrap();
    assert_eq!(info.lag(), 300);
    let mut sub = s.subscriber(&info.key, "c");
    let got = receive(&mut sub, 300).await;
    let last = got.last().unwrap().position;
    let info = sub.ack(last).await.unwrap();
    assert_eq!(info.checkpoint(), Some(299));
    assert_eq!(s.subscription(&info.key).await.unwrap().lag(), 0);
    // A long-poll left hanging, then nothing: the subscriber stops reading.
    let hanging = {
        let (s, key, from) = (s.clone(), info.key.clone(), sub.position());
        tokio::spawn(async move { s.poll(&key, "c", from, 1, Duration::from_secs(30)).await })
    };
    drop(sub);
    let mut lags = Vec::new();
    let mut rates = Vec::new();
    for round in 1..=3u64 {
        rates.push(append_rate(s, &format!("busy-{round}"), 300).await);
        let lag = s.subscription(&info.key).await.unwrap().lag();
        assert_eq!(lag, 300 * round, "lag after {} appends", 300 * round);
        lags.push(lag);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    eprintln!(
        "appends/s without a subscription: {:.0}; with a stalled subscriber: {:.0} \
         (medians of 3, not asserted); lag {lags:?}",
        median(&mut before),
        median(&mut rates)
    );
    let listed = s.subscriptions().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].lag(), 900);
    assert_eq!(listed[0].checkpoint(), Some(299));
    hanging.abort();
}

// ---------------------------------------------------------------------------------
// The client library's subscriber, attachment and bounds
// ---------------------------------------------------------------------------------

/// `Subscriber::into_stream` gives the events one by one, in order; `poll` honours
/// its `max`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriber_as_a_stream_and_poll_max() {
    use futures::StreamExt;
    let d = Dev::start().await;
    let s = &d.s;
    fill(s, "st", 25, 25).await;
    let key = s
        .subscribe(Stream, "st", "as-stream", beginning())
        .await
        .unwrap()
        .key;
    let d5 = s
        .poll(&key, "c", None, 5, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(positions(&d5.events), vec![0, 1, 2, 3, 4]);
    assert_eq!(d5.next, 5);
    assert_eq!(d5.head, 25);
    let stream = s.subscriber(&key, "c").into_stream();
    let got: Vec<EventRecord> = tokio::time::timeout(
        DELIVERY_LIMIT,
        stream.take(25).map(|r| r.expect("stream item")).collect(),
    )
    .await
    .expect("the stream stalled");
    assert_eq!(positions(&got), (0..25).collect::<Vec<_>>());
    assert_eq!(got, s.read("st", 0, 100).await.unwrap());
}

/// A subscriber that is polling counts as an attached consumer
/// (`SubscriptionInfo::consumers`, shown in the console).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_polling_subscriber_is_counted_as_attached() {
    let d = Dev::start().await;
    let s = &d.s;
    put(s, "c", "t", json!({})).await;
    let key = s
        .subscribe(Stream, "$all", "counted", beginning())
        .await
        .unwrap()
        .key;
    assert_eq!(s.subscription(&key).await.unwrap().consumers, 0);
    let (got, _) = drain(s, &key, "reader", None).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        s.subscription(&key).await.unwrap().consumers,
        1,
        "a consumer that polls (without acknowledging) is not counted as attached"
    );
}

/// Events near the 1 MiB limit: a poll answer must stay deliverable (under the
/// transport's frame limit), or the subscriber stalls at that position for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_events_are_delivered_without_stalling() {
    let d = Dev::start().await;
    let s = &d.s;
    let blob = "x".repeat(900_000);
    for b in 0..6 {
        let events = (0..4)
            .map(|i| NewEvent::json("big", &json!({"b": b, "i": i, "blob": blob})))
            .collect();
        s.append("big", ExpectedVersion::Any, events)
            .await
            .unwrap_or_else(|e| panic!("append batch {b}: {e}"));
    }
    let key = s
        .subscribe(Stream, "big", "big", beginning())
        .await
        .unwrap()
        .key;
    let r = s
        .poll(&key, "c", None, 1000, Duration::from_millis(100))
        .await;
    match &r {
        Ok(d) => assert!(!d.events.is_empty()),
        Err(e) => panic!(
            "one poll over 24 events of ~900 KB (~21 MB in all) fails instead of answering \
             with fewer: {e}"
        ),
    }
    let mut sub = s.subscriber(&key, "c");
    let got = receive(&mut sub, 24).await;
    assert_eq!(positions(&got), (0..24).collect::<Vec<_>>());
}
