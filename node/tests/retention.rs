//! Retention and scavenge of what it drops, against an in-memory model: random
//! appends on a clock that moves on, retention set and changed (by age, by count,
//! truncate-before), scavenges at some time, and reads of a stream at some later time
//! both ways. A read returns exactly the events the model says the stream keeps
//! then (and a scavenge removed nothing it keeps); nothing is renumbered. Reads as of
//! a time find versions the same way.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use proptest::test_runner::Config;
use reckon_gater::types::Direction;
use reckon_node::command::{Command, ContentType, ExpectedVersion, ProposedEvent, WriteBatch};
use reckon_node::storage::state::ApplyItem;
use reckon_node::storage::StateDb;
use uuid::Uuid;

const STREAMS: [&str; 2] = ["a", "b"];

#[derive(Debug, Clone)]
enum Op {
    /// `n` events on a stream, the clock moved on by `tick` first.
    Append { stream: usize, n: usize, tick: u64 },
    /// A stream's retention.
    Retain {
        stream: usize,
        max_age: Option<u64>,
        max_count: Option<u64>,
        truncate_before: Option<u64>,
    },
    /// A scavenge from start to end at the clock moved on by `tick`.
    Scavenge { tick: u64 },
    /// A read of a stream `later` after the clock.
    Read {
        stream: usize,
        from: u64,
        count: u32,
        backward: bool,
        later: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let opt = |max: u64| prop::option::weighted(0.5, 1..max);
    prop_oneof![
        5 => (0..STREAMS.len(), 1usize..4, 0u64..400)
            .prop_map(|(stream, n, tick)| Op::Append { stream, n, tick }),
        2 => (0..STREAMS.len(), opt(3_000), opt(8), prop::option::weighted(0.3, 0u64..12))
            .prop_map(|(stream, max_age, max_count, truncate_before)| Op::Retain {
                stream,
                max_age,
                max_count,
                truncate_before,
            }),
        1 => (0u64..2_000).prop_map(|tick| Op::Scavenge { tick }),
        3 => (0..STREAMS.len(), 0u64..14, 1u32..8, any::<bool>(), 0u64..4_000).prop_map(
            |(stream, from, count, backward, later)| Op::Read {
                stream,
                from,
                count,
                backward,
                later,
            }
        ),
    ]
}

#[derive(Debug, Clone)]
struct Event {
    stream: usize,
    version: u64,
    timestamp_us: u64,
    removed: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Retention {
    max_age: Option<u64>,
    max_count: Option<u64>,
    truncate_before: Option<u64>,
}

#[derive(Default)]
struct Model {
    log: Vec<Event>,
    retention: [Retention; 2],
    clock: u64,
}

impl Model {
    fn head(&self, stream: usize) -> Option<u64> {
        self.log
            .iter()
            .filter(|e| e.stream == stream)
            .map(|e| e.version)
            .max()
    }

    /// Whether the stream's retention keeps `e` at `now`.
    fn keeps(&self, e: &Event, now: u64) -> bool {
        let r = self.retention[e.stream];
        let head = self.head(e.stream).unwrap_or(0);
        r.truncate_before.is_none_or(|t| e.version >= t)
            && r.max_count.is_none_or(|c| e.version + c > head)
            && r.max_age
                .is_none_or(|a| e.timestamp_us >= now.saturating_sub(a))
    }

    /// What a read returns, as (version, position).
    fn read(
        &self,
        stream: usize,
        from: u64,
        count: u32,
        backward: bool,
        now: u64,
    ) -> Vec<(u64, u64)> {
        let kept = self
            .log
            .iter()
            .enumerate()
            .filter(|(_, e)| e.stream == stream && !e.removed && self.keeps(e, now))
            .map(|(p, e)| (e.version, p as u64));
        if backward {
            kept.rev()
                .filter(|(v, _)| *v <= from)
                .take(count as usize)
                .collect()
        } else {
            kept.filter(|(v, _)| *v >= from)
                .take(count as usize)
                .collect()
        }
    }
}

fn apply(db: &StateDb, ts: u64, commands: Vec<Command>, n: usize) {
    let b = WriteBatch {
        timestamp_us: ts,
        commands,
    };
    let out = db
        .apply(vec![ApplyItem::Batch(b)], format!("entry {n}").as_bytes())
        .unwrap();
    for r in out.into_iter().flatten().flat_map(|b| b.results) {
        r.expect("a command of the test refused");
    }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.redb")).unwrap();
    let mut m = Model {
        clock: 1_000_000,
        ..Model::default()
    };
    for (i, op) in ops.into_iter().enumerate() {
        match op {
            Op::Append { stream, n, tick } => {
                m.clock += tick;
                let first = m.head(stream).map_or(0, |h| h + 1);
                let events = (0..n)
                    .map(|_| ProposedEvent {
                        event_id: Uuid::new_v4(),
                        event_type: "e".into(),
                        data: b"{}".to_vec(),
                        metadata: Vec::new(),
                        content_type: ContentType::Json,
                        tags: Vec::new(),
                    })
                    .collect();
                let cmd = Command::Append {
                    stream_id: STREAMS[stream].into(),
                    expected: ExpectedVersion::Any,
                    events,
                };
                apply(&db, m.clock, vec![cmd], i);
                for k in 0..n as u64 {
                    m.log.push(Event {
                        stream,
                        version: first + k,
                        timestamp_us: m.clock,
                        removed: false,
                    });
                }
            }
            Op::Retain {
                stream,
                max_age,
                max_count,
                truncate_before,
            } => {
                let cmd = Command::SetRetention {
                    stream_id: STREAMS[stream].into(),
                    max_age_us: max_age,
                    max_count,
                    truncate_before,
                };
                apply(&db, m.clock, vec![cmd], i);
                m.retention[stream] = Retention {
                    max_age,
                    max_count,
                    truncate_before,
                };
            }
            Op::Scavenge { tick } => {
                m.clock += tick;
                let now = m.clock;
                let cmds = vec![
                    Command::ScavengeStart,
                    Command::ScavengeStep {
                        from: 0,
                        to: u64::MAX,
                    },
                ];
                apply(&db, now, cmds, i);
                let gone: Vec<bool> = m.log.iter().map(|e| !m.keeps(e, now)).collect();
                for (e, gone) in m.log.iter_mut().zip(gone) {
                    e.removed |= gone;
                }
            }
            Op::Read {
                stream,
                from,
                count,
                backward,
                later,
            } => {
                let now = m.clock + later;
                let direction = if backward {
                    Direction::Backward
                } else {
                    Direction::Forward
                };
                let r = db.read().unwrap();
                let got = r
                    .read_stream_at(STREAMS[stream], from, count, direction, now)
                    .unwrap();
                match m.head(stream) {
                    None => assert!(got.is_err(), "a read of a stream never written"),
                    Some(head) => {
                        let got: Vec<(u64, u64)> = got
                            .unwrap()
                            .decode()
                            .unwrap()
                            .iter()
                            .map(|e| (e.version, e.position))
                            .collect();
                        let want = m.read(stream, from, count, backward, now);
                        assert_eq!(
                            got, want,
                            "op {i}: read {stream} {from} {count} {backward} at {now}"
                        );
                        // Nothing renumbered.
                        assert_eq!(r.version(STREAMS[stream]).unwrap(), Some(head));
                    }
                }
            }
        }
    }
    // At the end, the global log holds every event a scavenge did not remove, at its
    // position.
    let r = db.read().unwrap();
    let all: Vec<u64> = r
        .read_all(0, 10_000, Direction::Forward)
        .unwrap()
        .decode()
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    let want: Vec<u64> = (0..m.log.len() as u64)
        .filter(|p| !m.log[*p as usize].removed)
        .collect();
    assert_eq!(all, want, "$all");
}

proptest! {
    #![proptest_config(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn reads_keep_what_retention_keeps_and_a_scavenge_removes_only_the_rest(
        ops in prop::collection::vec(op(), 1..=40)
    ) {
        run(ops);
    }
}
