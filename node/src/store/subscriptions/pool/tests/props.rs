//! A property over random runs of polls, acknowledgements, appends and passing
//! time: one owner per pending stream, a stream's order kept, nothing lost, the
//! checkpoint never past an unacknowledged event.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

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
