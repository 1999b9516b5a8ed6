//! The pool dispatcher's rules, case by case, and a property over random runs of
//! polls, acknowledgements, appends and passing time.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use reckon_gater::types::ContentType;
use uuid::Uuid;

use super::*;

fn event(position: u64, stream: &str) -> EventRecord {
    EventRecord {
        stream_id: stream.to_string(),
        version: 0,
        position,
        event_id: Uuid::nil(),
        event_type: "t".into(),
        data: Vec::new(),
        metadata: Vec::new(),
        content_type: ContentType::Json,
        tags: Vec::new(),
        timestamp_us: 0,
    }
}

/// Events at positions 0.. of the given streams.
fn log(streams: &[&str]) -> Vec<EventRecord> {
    streams
        .iter()
        .enumerate()
        .map(|(i, s)| event(i as u64, s))
        .collect()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Stream -> owning member, for every stream the pool has seen.
fn owners(p: &Pool) -> BTreeMap<String, String> {
    p.owner
        .iter()
        .map(|(s, m)| (s.clone(), m.clone()))
        .collect()
}

fn positions(events: &[EventRecord]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

#[test]
fn a_pool_scans_once_gathered_with_room_and_something_new() {
    let t0 = Instant::now();
    struct Case {
        name: &'static str,
        size: usize,
        attended: &'static [&'static str],
        /// Events of one stream dispatched before asking (all to the first member).
        queued: u64,
        asker: &'static str,
        at: Duration,
        head: u64,
        want: Option<u64>,
    }
    let max = POOL_QUEUE_MAX as u64;
    let cases = [
        Case {
            name: "one of two, just created: still gathering",
            size: 2,
            attended: &["a"],
            queued: 0,
            asker: "a",
            at: ms(0),
            head: 10,
            want: None,
        },
        Case {
            name: "one of two, gather time nearly over",
            size: 2,
            attended: &["a"],
            queued: 0,
            asker: "a",
            at: POOL_GATHER - ms(1),
            head: 10,
            want: None,
        },
        Case {
            name: "one of two, gather time over",
            size: 2,
            attended: &["a"],
            queued: 0,
            asker: "a",
            at: POOL_GATHER,
            head: 10,
            want: Some(0),
        },
        Case {
            name: "two of two",
            size: 2,
            attended: &["a", "b"],
            queued: 0,
            asker: "a",
            at: ms(0),
            head: 10,
            want: Some(0),
        },
        Case {
            name: "nothing new",
            size: 2,
            attended: &["a", "b"],
            queued: 0,
            asker: "a",
            at: ms(0),
            head: 0,
            want: None,
        },
        Case {
            name: "the asker has events queued",
            size: 1,
            attended: &["a"],
            queued: 1,
            asker: "a",
            at: ms(0),
            head: 10,
            want: None,
        },
        Case {
            name: "another member has events queued",
            size: 2,
            attended: &["a", "b"],
            queued: 1,
            asker: "b",
            at: ms(0),
            head: 10,
            want: Some(1),
        },
        Case {
            name: "another member's queue is full",
            size: 2,
            attended: &["a", "b"],
            queued: max,
            asker: "b",
            at: ms(0),
            head: max + 10,
            want: None,
        },
    ];
    for c in cases {
        let mut p = Pool::new(0, c.size, t0);
        for who in c.attended {
            p.attend(who, t0);
        }
        p.dispatch((0..c.queued).map(|i| event(i, "s")), c.queued);
        assert_eq!(
            p.scan_from(c.asker, c.head, t0 + c.at),
            c.want,
            "{}",
            c.name
        );
    }
}

#[test]
fn streams_go_to_the_least_loaded_member_and_stay_while_pending() {
    let t0 = Instant::now();
    struct Case {
        name: &'static str,
        events: &'static [&'static str],
        /// Member -> positions queued for it.
        want: &'static [(&'static str, &'static [u64])],
    }
    let cases = [
        Case {
            name: "new streams spread, ties to the least name",
            events: &["s1", "s2", "s3", "s4"],
            want: &[("a", &[0, 2]), ("b", &[1, 3])],
        },
        Case {
            name: "a stream stays with its owner",
            events: &["s1", "s1", "s2", "s1"],
            want: &[("a", &[0, 1, 3]), ("b", &[2])],
        },
        Case {
            name: "one busy stream goes to one member",
            events: &["s1", "s1", "s1"],
            want: &[("a", &[0, 1, 2]), ("b", &[])],
        },
    ];
    for c in cases {
        let mut p = Pool::new(0, 2, t0);
        p.attend("a", t0);
        p.attend("b", t0);
        p.dispatch(log(c.events), c.events.len() as u64);
        for (who, want) in c.want {
            let got: Vec<u64> = p.members[*who].queued.keys().copied().collect();
            assert_eq!(&got, want, "{}: member {who}", c.name);
        }
    }
}

#[test]
fn an_idle_stream_moves_to_a_member_that_joined_later() {
    let t0 = Instant::now();
    for (name, ack, want) in [
        ("acknowledged: nothing pending, it moves", true, "b"),
        ("in flight: it stays", false, "a"),
    ] {
        let mut p = Pool::new(0, 1, t0);
        p.attend("a", t0);
        p.dispatch(log(&["s1", "s2", "s3"]), 3);
        assert_eq!(positions(&p.take("a", 10, usize::MAX)), vec![0, 1, 2]);
        if ack {
            p.ack("a", 2, t0);
        }
        p.attend("b", t0);
        p.dispatch([event(3, "s1")], 4);
        assert_eq!(owners(&p)["s1"], want, "{name}");
        assert_eq!(
            p.members[want].queued.keys().copied().collect::<Vec<_>>(),
            vec![3],
            "{name}"
        );
    }
}

#[test]
fn take_stops_at_max_or_bytes_and_always_gives_one() {
    let t0 = Instant::now();
    let size = record_bytes(&event(0, "s"));
    for (name, max, bytes_max, want) in [
        ("by count", 2, usize::MAX, vec![0, 1]),
        ("all", 10, usize::MAX, vec![0, 1, 2]),
        (
            "by bytes: the one that reaches the limit is in",
            10,
            size + 1,
            vec![0, 1],
        ),
        ("at least one", 10, 1, vec![0]),
    ] {
        let mut p = Pool::new(0, 1, t0);
        p.attend("a", t0);
        p.dispatch(log(&["s", "s", "s"]), 3);
        let got = p.take("a", max, bytes_max);
        assert_eq!(positions(&got), want, "{name}");
        let in_flight: Vec<u64> = p.members["a"].in_flight.keys().copied().collect();
        assert_eq!(in_flight, want, "{name}: what was taken is in flight");
    }
    let mut p = Pool::new(0, 1, t0);
    assert!(p.take("nobody", 10, usize::MAX).is_empty());
}

#[test]
fn a_consumer_whose_lease_ran_out_loses_its_streams_and_events() {
    let t0 = Instant::now();
    for (name, silent_for, a_stays) in [
        ("just under the lease", CONSUMER_LEASE - ms(1), true),
        ("the lease", CONSUMER_LEASE, false),
        ("long past the lease", CONSUMER_LEASE * 3, false),
    ] {
        let mut p = Pool::new(0, 2, t0);
        p.attend("a", t0);
        p.attend("b", t0);
        p.dispatch(log(&["s1", "s2", "s1", "s3"]), 4);
        // "a" owns s1 and s3: one event in flight, two queued.
        assert_eq!(positions(&p.take("a", 1, usize::MAX)), vec![0]);
        p.attend("b", t0 + silent_for);
        assert_eq!(p.members.contains_key("a"), a_stays, "{name}");
        assert_eq!(
            p.live(t0 + silent_for),
            if a_stays { 2 } else { 1 },
            "{name}"
        );
        if a_stays {
            continue;
        }
        assert!(owners(&p).values().all(|m| m == "b"), "{name}");
        // "b" gets them all, in position order, behind nothing.
        let got = p.take("b", 10, usize::MAX);
        assert_eq!(positions(&got), vec![0, 1, 2, 3], "{name}");
    }
}

#[test]
fn acknowledging_renews_the_lease() {
    let t0 = Instant::now();
    let mut p = Pool::new(0, 2, t0);
    p.attend("a", t0);
    p.attend("b", t0);
    p.ack("a", 0, t0 + CONSUMER_LEASE - ms(1));
    p.attend("b", t0 + CONSUMER_LEASE + ms(1));
    assert!(p.members.contains_key("a"));
}

#[test]
fn attaching_afresh_delivers_what_was_in_flight_first_and_in_order() {
    let t0 = Instant::now();
    let mut p = Pool::new(0, 1, t0);
    p.attend("a", t0);
    p.dispatch(log(&["s1", "s2", "s1"]), 3);
    assert_eq!(positions(&p.take("a", 2, usize::MAX)), vec![0, 1]);
    p.dispatch([event(3, "s2")], 4);
    p.reattach("a");
    p.attend("a", t0);
    assert_eq!(positions(&p.take("a", 10, usize::MAX)), vec![0, 1, 2, 3]);
    // Reattaching a consumer that is no member does nothing.
    p.reattach("nobody");
    assert!(!p.members.contains_key("nobody"));
}

#[test]
fn a_consumer_back_after_its_lease_is_a_new_member() {
    let t0 = Instant::now();
    let mut p = Pool::new(0, 2, t0);
    p.attend("a", t0);
    p.attend("b", t0);
    p.dispatch(log(&["s1", "s2"]), 2);
    assert_eq!(positions(&p.take("a", 10, usize::MAX)), vec![0]);
    let later = t0 + CONSUMER_LEASE;
    p.attend("b", later);
    p.attend("a", later);
    // What "a" had is with "b" now; acknowledging it from "a" changes nothing.
    assert_eq!(p.members["a"].streams, 0);
    assert_eq!(p.ack("a", 0, later), None);
    assert_eq!(
        positions(&p.take("b", 10, usize::MAX)),
        vec![0, 1],
        "b delivers it again"
    );
    assert_eq!(p.ack("b", 1, later), Some(1));
    // New streams may go to "a" again.
    p.dispatch([event(2, "s3")], 3);
    assert_eq!(owners(&p)["s3"], "a");
}

#[test]
fn the_checkpoint_is_before_the_first_position_not_acknowledged() {
    let t0 = Instant::now();
    // Positions 0..6; "a" owns s1 (0, 2, 4), "b" owns s2 (1, 3, 5).
    let streams = ["s1", "s2", "s1", "s2", "s1", "s2"];
    type Case = (&'static str, &'static [(&'static str, u64)], Option<u64>);
    let cases: [Case; 6] = [
        ("nothing acknowledged", &[("nobody", 0)], None),
        ("a's first", &[("a", 0)], Some(0)),
        ("a's first two, b's none", &[("a", 2)], Some(0)),
        ("a's first, b's first", &[("a", 0), ("b", 1)], Some(1)),
        ("b all, a first", &[("b", 5), ("a", 0)], Some(1)),
        ("all", &[("a", 4), ("b", 5)], Some(5)),
    ];
    for (name, acks, want) in cases {
        let mut p = Pool::new(0, 2, t0);
        p.attend("a", t0);
        p.attend("b", t0);
        p.dispatch(log(&streams), 6);
        p.take("a", 10, usize::MAX);
        p.take("b", 10, usize::MAX);
        let mut got = None;
        for (who, at) in acks {
            got = p.ack(who, *at, t0);
        }
        assert_eq!(got, want, "{name}");
    }
    // A pool that starts at its subscription's cursor keeps it until it has more.
    let mut p = Pool::new(7, 1, t0);
    assert_eq!(p.ack("a", 100, t0), Some(6));
}

/// What a test run does.
#[derive(Debug, Clone)]
enum Op {
    /// Events of these streams are appended to the log.
    Append(Vec<u8>),
    /// A consumer polls, afresh (without a position) or not, for at most `max`.
    Poll { consumer: u8, fresh: bool, max: u8 },
    /// A consumer acknowledges up to its `nth` event in flight (or past them all).
    Ack { consumer: u8, nth: u8 },
    /// Time passes.
    Sleep(Duration),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => proptest::collection::vec(0..4u8, 1..6).prop_map(Op::Append),
        5 => (0..4u8, proptest::bool::weighted(0.2), 1..5u8)
            .prop_map(|(consumer, fresh, max)| Op::Poll { consumer, fresh, max }),
        3 => (0..4u8, 0..4u8).prop_map(|(consumer, nth)| Op::Ack { consumer, nth }),
        2 => (0..12_000u64).prop_map(|n| Op::Sleep(ms(n))),
    ]
}

/// Every event the pool holds, by position, with the member holding it.
fn held(p: &Pool) -> BTreeMap<u64, (String, EventRecord)> {
    let mut out = BTreeMap::new();
    for (name, m) in &p.members {
        for (k, e) in m.queued.iter().chain(m.in_flight.iter()) {
            let before = out.insert(*k, (name.clone(), e.clone()));
            assert!(before.is_none(), "position {k} held twice");
        }
    }
    out
}

/// The invariants that hold between any two calls.
fn check(p: &Pool) {
    let held = held(p);
    for (name, m) in &p.members {
        assert!(
            m.queued.keys().all(|k| !m.in_flight.contains_key(k)),
            "{name}: an event both queued and in flight"
        );
        let mut pending: BTreeMap<&str, usize> = BTreeMap::new();
        for e in m.queued.values().chain(m.in_flight.values()) {
            *pending.entry(&e.stream_id).or_default() += 1;
        }
        let counted: BTreeMap<&str, usize> =
            m.pending.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        assert_eq!(counted, pending, "{name}: pending counts");
        let owned = p.owner.values().filter(|o| *o == name).count();
        assert_eq!(m.streams, owned, "{name}: stream count");
    }
    assert!(
        p.owner.values().all(|o| p.members.contains_key(o)),
        "a stream owned by no member: {:?}",
        p.owner
    );
    // Each stream with events pending is owned by exactly one member, which holds
    // every one of them.
    for (pos, (holder, e)) in &held {
        assert_eq!(
            p.owner.get(&e.stream_id),
            Some(holder),
            "event {pos} of {} is not with its stream's owner",
            e.stream_id
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn streams_keep_one_owner_and_their_order_and_no_event_is_lost(
        size in 1..4usize,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut p = Pool::new(0, size, t0);
        let mut log: Vec<EventRecord> = Vec::new();
        // Scanned and not yet acknowledged: what the pool must hold.
        let mut outstanding: BTreeSet<u64> = BTreeSet::new();
        let mut delivered: BTreeSet<u64> = BTreeSet::new();
        // Positions dispatched, per stream.
        let mut dispatched: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Append(streams) => {
                    for s in streams {
                        let at = log.len() as u64;
                        log.push(event(at, &format!("s{s}")));
                    }
                }
                Op::Sleep(d) => now += d,
                Op::Poll { consumer, fresh, max } => {
                    let c = format!("c{consumer}");
                    if fresh {
                        p.reattach(&c);
                    }
                    p.attend(&c, now);
                    // The lease: every member left was seen within it.
                    prop_assert!(p.members.values().all(|m| m.live(now)));
                    prop_assert_eq!(p.live(now), p.members.len());
                    let head = log.len() as u64;
                    if let Some(from) = p.scan_from(&c, head, now) {
                        prop_assert_eq!(from, p.scan_pos());
                        // A scan may stop early (its own limits): take up to 3.
                        let next = (from + 3).min(head);
                        let found: Vec<EventRecord> = log[from as usize..next as usize].to_vec();
                        for e in &found {
                            outstanding.insert(e.position);
                            dispatched.entry(e.stream_id.clone()).or_default().insert(e.position);
                        }
                        p.dispatch(found, next);
                    }
                    let before = p.members.get(&c).map(|m| m.queued.clone()).unwrap_or_default();
                    let got = p.take(&c, max as usize, usize::MAX);
                    prop_assert!(got.len() <= max as usize);
                    prop_assert_eq!(
                        positions(&got),
                        before.keys().take(got.len()).copied().collect::<Vec<_>>(),
                        "a delivery is the front of the consumer's queue"
                    );
                    for e in &got {
                        // Order: every earlier event of the stream went out before.
                        let earlier = dispatched[&e.stream_id].range(..e.position);
                        for q in earlier {
                            prop_assert!(
                                delivered.contains(q),
                                "{} at {} delivered before {} of the same stream",
                                e.stream_id, e.position, q
                            );
                        }
                        delivered.insert(e.position);
                    }
                }
                Op::Ack { consumer, nth } => {
                    let c = format!("c{consumer}");
                    let in_flight: Vec<u64> = p
                        .members
                        .get(&c)
                        .map(|m| m.in_flight.keys().copied().collect())
                        .unwrap_or_default();
                    let upto = in_flight
                        .get(nth as usize)
                        .copied()
                        .unwrap_or(log.len() as u64);
                    for k in in_flight.iter().filter(|k| **k <= upto) {
                        outstanding.remove(k);
                    }
                    let checkpoint = p.ack(&c, upto, now);
                    // The checkpoint never passes an event not acknowledged.
                    let low = outstanding.first().copied().unwrap_or(p.scan_pos()).min(p.scan_pos());
                    prop_assert_eq!(checkpoint, low.checked_sub(1));
                }
            }
            check(&p);
            // Nothing lost, nothing invented: the pool holds exactly what was scanned
            // and not acknowledged.
            let held: BTreeSet<u64> = held(&p).into_keys().collect();
            prop_assert_eq!(&held, &outstanding);
        }
    }
}
