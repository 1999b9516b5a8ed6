//! The pool dispatcher's rules, case by case; [`props`] holds the property over
//! random runs of polls, acknowledgements, appends and passing time.

use std::collections::BTreeMap;

use reckon_gater::types::ContentType;
use uuid::Uuid;

use super::*;

mod props;

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
