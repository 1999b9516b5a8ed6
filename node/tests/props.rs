//! Properties of the state machine's database, [`StateDb`], driven directly (no Raft,
//! no network): random runs of appends, soft and hard deletes, reads and reopenings,
//! checked after every step against a plain in-memory model of the store.
//!
//! The model is the store's specification (streams, appends, deletes), written as simply as
//! possible: per stream the ids and positions of its live incarnation and a tombstone
//! flag, and one global log. Inputs are valid (the node validates requests before they
//! reach the state machine), so every difference is a bug in the state machine.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::Config;
use reckon_gater::types::{
    AppendResult, ContentType, Direction, EventRecord, ExpectedVersion, StoreError, StreamInfo,
    TagMatch,
};
use reckon_node::command::{BatchResult, Command, Outcome, ProposedEvent, WriteBatch};
use reckon_node::domain::stream_read_range;
use reckon_node::storage::format::ScavengePhase;
use reckon_node::storage::state::ApplyItem;
use reckon_node::storage::StateDb;
use uuid::Uuid;

/// The streams operations pick from: few, so that they collide.
const STREAMS: [&str; 4] = ["s0", "s1", "s2", "s3"];
const TAG: &str = "t";
/// Larger than anything a run writes.
const ALL: u32 = 100_000;

// ---------------------------------------------------------------------------------
// Operations, as generated (abstract) and as applied (concrete, resolved against the
// model so that retries and expectations hit what the store holds).

/// How an append's expected version is chosen.
#[derive(Debug, Clone, Copy)]
enum Exp {
    Any,
    NoStream,
    StreamExists,
    /// What the stream is at: `Exact(version)`, or `NoStream` when it does not exist.
    Current,
    /// `Exact(current + d)`, at least 0.
    Off(i8),
    /// `Exact(n)`.
    Raw(u8),
}

/// How an append's event ids are chosen.
#[derive(Debug, Clone)]
enum Ids {
    Fresh,
    /// The ids of the last append attempted on the stream: a client retrying.
    RepeatLast,
    /// The last `n` ids of the stream's live incarnation: a retry of its tail.
    HeadSuffix,
    /// One id already somewhere in the global log, the rest fresh.
    ReuseOld(usize),
    /// Fresh ids, then the id of the stream's head: not a retry, though it ends like
    /// one.
    EndsWithHead,
}

#[derive(Debug, Clone)]
enum WriteOp {
    Append {
        stream: usize,
        exp: Exp,
        n: usize,
        ids: Ids,
        type_a: bool,
        tagged: bool,
    },
    /// With `exp`, the command nodes propose today ([`Command::DeleteStream`], whose
    /// soft delete keeps the stream's numbering); without, the legacy
    /// [`Command::Delete`] old logs hold (a recreated stream starts at 0 again).
    Delete {
        stream: usize,
        hard: bool,
        exp: Option<Exp>,
    },
}

#[derive(Debug, Clone)]
enum Step {
    /// One Raft entry with these commands.
    Write(Vec<WriteOp>),
    /// Two entries and a blank one between them, applied in one call.
    WriteTwo(Vec<WriteOp>, Vec<WriteOp>),
    ReadStream {
        stream: usize,
        from: u64,
        count: u32,
        backward: bool,
    },
    ReadAll {
        from: u64,
        count: u32,
        backward: bool,
    },
    /// Flush, close and open the file again (what a clean restart does).
    Reopen,
    /// The leader's clock moves by this many microseconds (back, when negative: a
    /// new leader whose clock is behind the old one's).
    Clock(i64),
    /// Reads as of time `at`: the log's length then, and each stream's version.
    AsOf { at: u64 },
    /// A scavenge command: start, stop, or a step of this many positions from where
    /// the scavenge stands.
    Scavenge(ScavengeOp),
}

#[derive(Debug, Clone, Copy)]
enum ScavengeOp {
    Start,
    Step(u64),
    /// A step from a position the scavenge does not stand at (a stale proposal).
    StaleStep,
    Stop,
}

fn exp_strategy() -> impl Strategy<Value = Exp> {
    prop_oneof![
        2 => Just(Exp::Any),
        2 => Just(Exp::NoStream),
        1 => Just(Exp::StreamExists),
        4 => Just(Exp::Current),
        1 => (-2i8..=2).prop_map(Exp::Off),
        1 => (0u8..6).prop_map(Exp::Raw),
    ]
}

fn ids_strategy() -> impl Strategy<Value = Ids> {
    prop_oneof![
        6 => Just(Ids::Fresh),
        2 => Just(Ids::RepeatLast),
        1 => Just(Ids::HeadSuffix),
        1 => any::<usize>().prop_map(Ids::ReuseOld),
        1 => Just(Ids::EndsWithHead),
    ]
}

fn write_op_strategy() -> impl Strategy<Value = WriteOp> {
    prop_oneof![
        8 => (0..STREAMS.len(), exp_strategy(), 1usize..=4, ids_strategy(), any::<bool>(), any::<bool>())
            .prop_map(|(stream, exp, n, ids, type_a, tagged)| WriteOp::Append {
                stream,
                exp,
                n,
                ids,
                type_a,
                tagged,
            }),
        2 => (0..STREAMS.len(), prop::bool::weighted(0.25), prop::option::weighted(0.75, exp_strategy()))
            .prop_map(|(stream, hard, exp)| WriteOp::Delete { stream, hard, exp }),
    ]
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let writes = || prop::collection::vec(write_op_strategy(), 1..=3);
    prop_oneof![
        8 => writes().prop_map(Step::Write),
        1 => (writes(), writes()).prop_map(|(a, b)| Step::WriteTwo(a, b)),
        2 => (0..STREAMS.len(), 0u64..8, 1u32..6, any::<bool>()).prop_map(
            |(stream, from, count, backward)| Step::ReadStream {
                stream,
                from,
                count,
                backward
            }
        ),
        1 => (0u64..40, 1u32..8, any::<bool>()).prop_map(|(from, count, backward)| {
            Step::ReadAll {
                from,
                count,
                backward,
            }
        }),
        1 => Just(Step::Reopen),
        1 => (-5_000i64..=3_000).prop_map(Step::Clock),
        2 => (0u64..45_000).prop_map(|at| Step::AsOf { at }),
        1 => Just(Step::Scavenge(ScavengeOp::Start)),
        2 => (1u64..8).prop_map(|n| Step::Scavenge(ScavengeOp::Step(n))),
        1 => Just(Step::Scavenge(ScavengeOp::StaleStep)),
        1 => Just(Step::Scavenge(ScavengeOp::Stop)),
    ]
}

// ---------------------------------------------------------------------------------
// The model.

/// One event of the model's global log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogEntry {
    stream: String,
    version: u64,
    event_id: Uuid,
    event_type: String,
    tagged: bool,
    timestamp_us: u64,
    /// Its stream incarnation was deleted: it stays in the log, leaves the indexes.
    deleted: bool,
    /// Removed by a scavenge (it was deleted): gone from the log and every index.
    scavenged: bool,
}

/// The model's scavenge: phase, end, next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScavengeModel {
    Running { end: u64, next: u64 },
    Stopped { next: u64 },
    Done,
}

#[derive(Debug, Default)]
struct ModelStream {
    /// (event id, position) of the live incarnation, by version from `base`.
    live: Vec<(Uuid, u64)>,
    /// The version of `live[0]`; when `live` is empty, the version the next event
    /// takes.
    base: u64,
    tombstoned: bool,
    /// The ids of the last append attempted on the stream.
    last_attempt: Option<Vec<Uuid>>,
}

impl ModelStream {
    fn current(&self) -> Option<u64> {
        (self.live.len() as u64)
            .checked_sub(1)
            .map(|last| self.base + last)
    }

    /// The rule of expected versions, written out.
    fn check(&self, stream_id: &str, expected: ExpectedVersion) -> Result<(), StoreError> {
        if self.tombstoned {
            return Err(StoreError::StreamDeleted {
                stream_id: stream_id.to_string(),
            });
        }
        let current = self.current();
        let ok = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current.is_none(),
            ExpectedVersion::StreamExists => current.is_some(),
            ExpectedVersion::Exact(n) => current == Some(n),
        };
        if ok {
            Ok(())
        } else {
            Err(StoreError::WrongExpectedVersion { expected, current })
        }
    }
}

#[derive(Debug, Default)]
struct Model {
    streams: BTreeMap<String, ModelStream>,
    log: Vec<LogEntry>,
    scavenge: Option<ScavengeModel>,
}

impl Model {
    fn stream(&mut self, id: &str) -> &mut ModelStream {
        self.streams.entry(id.to_string()).or_default()
    }

    fn append(
        &mut self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: &[ProposedEvent],
        timestamp_us: u64,
    ) -> Result<AppendResult, StoreError> {
        let next_position = self.log.len() as u64;
        // Timestamps never go down along the log, whatever the leader's clock says.
        let last = self.log.iter().rev().find(|e| !e.scavenged);
        let timestamp_us = timestamp_us.max(last.map_or(0, |e| e.timestamp_us));
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        self.stream(stream_id).last_attempt = Some(ids.clone());
        // Event ids are unique in the store: the position of each id of the append,
        // when it is stored already.
        let positions: Vec<Option<u64>> = ids
            .iter()
            .map(|id| {
                self.log
                    .iter()
                    .position(|e| e.event_id == *id && !e.scavenged)
                    .map(|p| p as u64)
            })
            .collect();
        if let Some(first_stored) = positions.iter().position(Option::is_some) {
            // A retry: every id stands, as one run of this stream, in order (wherever
            // in the stream, deleted or not); it gives the first answer.
            let Some(p0) = positions[0] else {
                return Err(StoreError::DuplicateEventId {
                    event_id: ids[first_stored],
                });
            };
            let first = &self.log[p0 as usize];
            let broken = positions.iter().enumerate().position(|(i, p)| {
                let step = i as u64;
                !p.is_some_and(|p| {
                    let e = &self.log[p as usize];
                    e.stream == stream_id
                        && first.stream == stream_id
                        && e.version == first.version + step
                        && p == p0 + step
                })
            });
            return match broken {
                None => {
                    let last = ids.len() as u64 - 1;
                    Ok(AppendResult {
                        version: first.version + last,
                        first_position: p0,
                        last_position: p0 + last,
                    })
                }
                Some(i) => Err(StoreError::DuplicateEventId { event_id: ids[i] }),
            };
        }
        let s = self.streams.entry(stream_id.to_string()).or_default();
        s.check(stream_id, expected)?;
        let mut position = next_position;
        for e in events {
            let version = s.base + s.live.len() as u64;
            s.live.push((e.event_id, position));
            self.log.push(LogEntry {
                stream: stream_id.to_string(),
                version,
                event_id: e.event_id,
                event_type: e.event_type.clone(),
                tagged: e.tags.iter().any(|t| t == TAG),
                timestamp_us,
                deleted: false,
                scavenged: false,
            });
            position += 1;
        }
        Ok(AppendResult {
            version: s.base + s.live.len() as u64 - 1,
            first_position: next_position,
            last_position: position - 1,
        })
    }

    /// A delete; with `expected`, today's (checked, numbering kept), else the legacy
    /// one (no check, numbering from 0 again).
    fn delete(
        &mut self,
        stream_id: &str,
        hard: bool,
        expected: Option<ExpectedVersion>,
    ) -> Result<(), StoreError> {
        let s = self.streams.entry(stream_id.to_string()).or_default();
        if let Some(expected) = expected {
            s.check(stream_id, expected)?;
        }
        let gone: Vec<u64> = s.live.drain(..).map(|(_, p)| p).collect();
        s.base = if expected.is_some() {
            s.base + gone.len() as u64
        } else {
            0
        };
        s.tombstoned |= hard;
        for p in gone {
            self.log[p as usize].deleted = true;
        }
        Ok(())
    }

    /// The log's length at time `at`: events up to it were written at or before.
    fn position_at(&self, at: u64) -> u64 {
        // After the last event that stands and was written by then.
        self.log
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.scavenged && e.timestamp_us <= at)
            .map(|(p, _)| p as u64 + 1)
            .next_back()
            .unwrap_or(0)
    }

    /// A scavenge command, as the state machine applies it.
    fn scavenge(&mut self, op: ScavengeOp) -> Command {
        let end = self.log.len() as u64;
        match op {
            ScavengeOp::Start => {
                self.scavenge = match self.scavenge {
                    Some(ScavengeModel::Running { end, next }) => {
                        Some(ScavengeModel::Running { end, next })
                    }
                    Some(ScavengeModel::Stopped { next }) => {
                        Some(ScavengeModel::Running { end, next })
                    }
                    _ => Some(ScavengeModel::Running { end, next: 0 }),
                };
                Command::ScavengeStart
            }
            ScavengeOp::Stop => {
                if let Some(ScavengeModel::Running { next, .. }) = self.scavenge {
                    self.scavenge = Some(ScavengeModel::Stopped { next });
                }
                Command::ScavengeStop
            }
            ScavengeOp::StaleStep => {
                let at = match self.scavenge {
                    Some(ScavengeModel::Running { next, .. }) => next,
                    _ => 0,
                };
                // One past where it stands: applied, it would skip positions.
                Command::ScavengeStep {
                    from: at + 1,
                    to: at + 5,
                }
            }
            ScavengeOp::Step(n) => {
                let Some(ScavengeModel::Running { end, next }) = self.scavenge else {
                    return Command::ScavengeStep { from: 0, to: n };
                };
                let to = (next + n).min(end);
                for e in &mut self.log[next as usize..to as usize] {
                    e.scavenged |= e.deleted;
                }
                self.scavenge = Some(if to >= end {
                    ScavengeModel::Done
                } else {
                    ScavengeModel::Running { end, next: to }
                });
                Command::ScavengeStep {
                    from: next,
                    to: next + n,
                }
            }
        }
    }

    /// The version of the last event of `stream_id` written at or before `at` that
    /// reads still return.
    fn version_at(&self, stream_id: &str, at: u64) -> Option<u64> {
        let cut = self.position_at(at);
        self.stream_events(stream_id)?
            .into_iter()
            .filter(|e| e.2 < cut)
            .map(|e| e.1)
            .next_back()
    }

    fn version(&self, stream_id: &str) -> Option<u64> {
        self.streams.get(stream_id).and_then(ModelStream::current)
    }

    /// The live events of a stream, by version, as (stream, version, position, id).
    fn stream_events(&self, stream_id: &str) -> Option<Vec<(String, u64, u64, Uuid)>> {
        let s = self.streams.get(stream_id)?;
        if s.live.is_empty() {
            return None;
        }
        Some(
            s.live
                .iter()
                .enumerate()
                .map(|(v, (id, p))| (stream_id.to_string(), s.base + v as u64, *p, *id))
                .collect(),
        )
    }
}

// ---------------------------------------------------------------------------------
// Turning abstract operations into commands.

fn proposed(id: Uuid, n: usize, type_a: bool, tagged: bool) -> ProposedEvent {
    ProposedEvent {
        event_id: id,
        event_type: if type_a { "A" } else { "B" }.to_string(),
        data: format!("{{\"n\":{n}}}").into_bytes(),
        metadata: Vec::new(),
        content_type: ContentType::Json.into(),
        tags: if tagged {
            vec![TAG.to_string()]
        } else {
            vec![]
        },
    }
}

/// The expected version `exp` stands for, against a stream at `current`.
fn expected_of(exp: Exp, current: Option<u64>) -> ExpectedVersion {
    match exp {
        Exp::Any => ExpectedVersion::Any,
        Exp::NoStream => ExpectedVersion::NoStream,
        Exp::StreamExists => ExpectedVersion::StreamExists,
        Exp::Current => current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
        Exp::Off(d) => {
            ExpectedVersion::Exact((current.unwrap_or(0) as i64 + i64::from(d)).max(0) as u64)
        }
        Exp::Raw(v) => ExpectedVersion::Exact(u64::from(v)),
    }
}

/// Resolves `op` against the model as it will be when the command is applied.
fn resolve(model: &mut Model, op: &WriteOp) -> Command {
    match op {
        WriteOp::Delete {
            stream,
            hard,
            exp: None,
        } => Command::Delete {
            stream_id: STREAMS[*stream].to_string(),
            hard: *hard,
        },
        WriteOp::Delete {
            stream,
            hard,
            exp: Some(exp),
        } => {
            let stream_id = STREAMS[*stream];
            Command::DeleteStream {
                stream_id: stream_id.to_string(),
                hard: *hard,
                expected: expected_of(*exp, model.stream(stream_id).current()).into(),
            }
        }
        WriteOp::Append {
            stream,
            exp,
            n,
            ids,
            type_a,
            tagged,
        } => {
            let stream_id = STREAMS[*stream];
            let log_ids: Vec<Uuid> = model.log.iter().map(|e| e.event_id).collect();
            let s = model.stream(stream_id);
            let expected = expected_of(*exp, s.current());
            let fresh = |k: usize| (0..k).map(|_| Uuid::new_v4()).collect::<Vec<_>>();
            let mut chosen = match ids {
                Ids::Fresh => fresh(*n),
                Ids::RepeatLast => s.last_attempt.clone().unwrap_or_else(|| fresh(*n)),
                Ids::HeadSuffix if !s.live.is_empty() => {
                    let k = (*n).min(s.live.len());
                    s.live[s.live.len() - k..]
                        .iter()
                        .map(|(id, _)| *id)
                        .collect()
                }
                Ids::HeadSuffix => fresh(*n),
                Ids::ReuseOld(pick) if !log_ids.is_empty() => {
                    let mut v = vec![log_ids[pick % log_ids.len()]];
                    v.extend(fresh(n - 1));
                    v
                }
                Ids::ReuseOld(_) => fresh(*n),
                Ids::EndsWithHead => {
                    let mut v = fresh((*n).max(2) - 1);
                    v.extend(s.live.last().map(|(id, _)| *id));
                    v
                }
            };
            // The node refuses an id twice in one batch before it reaches the state
            // machine; keep to valid input.
            let mut seen = std::collections::HashSet::new();
            if !chosen.iter().all(|id| seen.insert(*id)) {
                chosen = fresh(*n);
            }
            Command::Append {
                stream_id: stream_id.to_string(),
                expected: expected.into(),
                events: chosen
                    .iter()
                    .enumerate()
                    .map(|(i, id)| proposed(*id, i, *type_a, *tagged))
                    .collect(),
            }
        }
    }
}

/// Applies `cmd` to the model; returns what the state machine must answer.
fn model_apply(model: &mut Model, cmd: &Command, timestamp_us: u64) -> Result<Outcome, StoreError> {
    match cmd {
        Command::Append {
            stream_id,
            expected,
            events,
        } => model
            .append(stream_id, (*expected).into(), events, timestamp_us)
            .map(Outcome::Appended),
        Command::Delete { stream_id, hard } => {
            model.delete(stream_id, *hard, None).map(|()| Outcome::Done)
        }
        Command::DeleteStream {
            stream_id,
            hard,
            expected,
        } => model
            .delete(stream_id, *hard, Some((*expected).into()))
            .map(|()| Outcome::Done),
        other => panic!("not generated: {other:?}"),
    }
}

/// Builds a batch from `ops`, applying each command to the model as it goes (a later
/// command of the batch sees the earlier ones), and returns it with the expected
/// results.
fn batch(
    model: &mut Model,
    ops: &[WriteOp],
    timestamp_us: u64,
) -> (WriteBatch, Vec<Result<Outcome, StoreError>>) {
    let mut commands = Vec::new();
    let mut expected = Vec::new();
    for op in ops {
        let cmd = resolve(model, op);
        let before = model.log.len() as u64;
        let r = model_apply(model, &cmd, timestamp_us);
        if let Ok(Outcome::Appended(a)) = &r {
            // A write starts at the end of the log; a retry points at what stands.
            if model.log.len() as u64 > before {
                assert_eq!(a.first_position, before);
            } else {
                assert!(a.last_position < before);
            }
        }
        expected.push(r);
        commands.push(cmd);
    }
    (
        WriteBatch {
            timestamp_us,
            commands,
        },
        expected,
    )
}

// ---------------------------------------------------------------------------------
// Checking the database against the model.

fn key(e: &EventRecord) -> (String, u64, u64, Uuid) {
    (e.stream_id.clone(), e.version, e.position, e.event_id)
}

fn check_read_stream(
    db: &StateDb,
    model: &Model,
    stream: &str,
    from: u64,
    count: u32,
    backward: bool,
) {
    let direction = if backward {
        Direction::Backward
    } else {
        Direction::Forward
    };
    let got = db
        .read()
        .expect("read")
        .read_stream(stream, from, count, direction)
        .expect("storage")
        .map(|p| p.decode().expect("page"));
    match model.stream_events(stream) {
        None => assert_eq!(
            got,
            Err(StoreError::StreamNotFound {
                stream_id: stream.to_string()
            }),
            "read of {stream} that does not exist"
        ),
        Some(events) => {
            // The read rule, written out: the first `count` live events from `from` on,
            // or from `from` down (versions of deleted events hold none).
            let want: Vec<_> = if backward {
                events
                    .iter()
                    .rev()
                    .filter(|e| e.1 <= from)
                    .take(count as usize)
                    .cloned()
                    .collect()
            } else {
                events
                    .iter()
                    .filter(|e| e.1 >= from)
                    .take(count as usize)
                    .cloned()
                    .collect()
            };
            // The domain's range holds every version wanted.
            let head = events.last().map_or(0, |e| e.1);
            let range = stream_read_range(head, from, backward);
            assert!(
                want.iter()
                    .all(|e| range.is_some_and(|(lo, hi)| (lo..=hi).contains(&e.1))),
                "{range:?} misses some of {want:?}"
            );
            let got: Vec<_> = got.expect("stream exists").iter().map(key).collect();
            assert_eq!(
                got, want,
                "read_stream({stream}, {from}, {count}, backward={backward})"
            );
        }
    }
}

fn check_read_all(db: &StateDb, model: &Model, from: u64, count: u32, backward: bool) {
    let direction = if backward {
        Direction::Backward
    } else {
        Direction::Forward
    };
    let got: Vec<u64> = db
        .read()
        .expect("read")
        .read_all(from, count, direction)
        .expect("storage")
        .decode()
        .expect("page")
        .iter()
        .map(|e| e.position)
        .collect();
    // The read rule: the first `count` events that stand from `from` on, or from
    // `from` down; removed positions are skipped, never reused.
    let standing = model
        .log
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.scavenged)
        .map(|(p, _)| p as u64);
    let want: Vec<u64> = if backward {
        standing
            .rev()
            .filter(|p| *p <= from)
            .take(count as usize)
            .collect()
    } else {
        standing
            .filter(|p| *p >= from)
            .take(count as usize)
            .collect()
    };
    assert_eq!(got, want, "read_all({from}, {count}, backward={backward})");
}

/// Everything the database holds, against the model.
fn check_all(db: &StateDb, model: &Model, raft_record: &[u8]) {
    let r = db.read().expect("read");
    // The global log: every position but those scavenged, every event as the model
    // has it.
    let all = r
        .read_all(0, ALL, Direction::Forward)
        .expect("storage")
        .decode()
        .expect("page");
    let positions: Vec<u64> = all.iter().map(|e| e.position).collect();
    let standing: Vec<&LogEntry> = model.log.iter().filter(|e| !e.scavenged).collect();
    assert_eq!(
        positions,
        (0..model.log.len() as u64)
            .filter(|p| !model.log[*p as usize].scavenged)
            .collect::<Vec<_>>(),
        "global log positions"
    );
    for (e, m) in all.iter().zip(standing) {
        assert_eq!(
            (
                &e.stream_id,
                e.version,
                e.event_id,
                &e.event_type,
                e.tags.contains(&TAG.to_string()),
                e.timestamp_us
            ),
            (
                &m.stream,
                m.version,
                m.event_id,
                &m.event_type,
                m.tagged,
                m.timestamp_us
            ),
            "event at position {}",
            e.position
        );
    }
    let stats = r.stats().expect("stats");
    let held = model.log.iter().filter(|e| !e.scavenged).count() as u64;
    assert_eq!(
        (stats.events, stats.next_position),
        (held, model.log.len() as u64)
    );

    // Every stream: its version and its events, consecutive from 0.
    for stream in STREAMS {
        assert_eq!(
            r.version(stream).expect("storage"),
            model.version(stream),
            "version of {stream}"
        );
        let got = r
            .read_stream(stream, 0, ALL, Direction::Forward)
            .expect("storage")
            .map(|p| p.decode().expect("page"));
        match model.stream_events(stream) {
            None => assert_eq!(
                got,
                Err(StoreError::StreamNotFound {
                    stream_id: stream.to_string()
                }),
                "{stream} should not exist"
            ),
            Some(want) => {
                let got = got.expect("stream exists");
                let versions: Vec<u64> = got.iter().map(|e| e.version).collect();
                assert_eq!(
                    versions,
                    want.iter().map(|e| e.1).collect::<Vec<_>>(),
                    "{stream}: versions"
                );
                assert_eq!(
                    got.iter().map(key).collect::<Vec<_>>(),
                    want,
                    "{stream}: events"
                );
                for e in &got {
                    let at = all.iter().find(|a| a.position == e.position);
                    assert_eq!(Some(e), at, "stream index and global log disagree");
                }
            }
        }
    }
    let listed = r.list_streams(None, ALL).expect("storage");
    let want: Vec<StreamInfo> = STREAMS
        .iter()
        .filter_map(|s| {
            model.version(s).map(|version| StreamInfo {
                stream_id: s.to_string(),
                version,
            })
        })
        .collect();
    assert_eq!(listed, want, "list_streams");

    // The indexes hold the events of live incarnations only.
    let live = |pick: &dyn Fn(&LogEntry) -> bool| -> Vec<u64> {
        model
            .log
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.deleted && pick(e))
            .map(|(p, _)| p as u64)
            .collect()
    };
    let positions_of = |v: Vec<EventRecord>| v.iter().map(|e| e.position).collect::<Vec<_>>();
    for t in ["A", "B"] {
        let got = r
            .read_by_types(&[t.to_string()], 0, ALL)
            .expect("storage")
            .decode()
            .expect("page");
        assert_eq!(positions_of(got), live(&|e| e.event_type == t), "type {t}");
    }
    let got = r
        .read_by_tags(&[TAG.to_string()], TagMatch::Any, 0, ALL)
        .expect("storage")
        .decode()
        .expect("page");
    assert_eq!(positions_of(got), live(&|e| e.tagged), "tag {TAG}");

    assert_eq!(
        db.raft_record().expect("storage").as_deref(),
        Some(raft_record)
    );
}

/// The scavenge's record against the model's. (That the ids of scavenged events left
/// the event id index shows in appends: the model takes such an id as new.)
fn check_scavenge(db: &StateDb, model: &Model) {
    let r = db.read().expect("read");
    let got = r.scavenge().expect("storage").map(|s| match s.phase {
        ScavengePhase::Running => ScavengeModel::Running {
            end: s.end,
            next: s.next,
        },
        ScavengePhase::Stopped => ScavengeModel::Stopped { next: s.next },
        ScavengePhase::Done => ScavengeModel::Done,
    });
    assert_eq!(got, model.scavenge, "scavenge");
    let removed = model.log.iter().filter(|e| e.scavenged).count() as u64;
    let recorded = r
        .scavenge()
        .expect("storage")
        .map_or(0, |s| s.removed_events);
    // The record counts this scavenge's removals; the model counts every one.
    assert!(recorded <= removed, "{recorded} removed, model {removed}");
}

/// Reads as of time `at` against the model.
fn check_as_of(db: &StateDb, model: &Model, at: u64) {
    let r = db.read().expect("read");
    assert_eq!(
        r.position_at(at).expect("storage"),
        model.position_at(at),
        "position_at({at})"
    );
    for s in STREAMS {
        assert_eq!(
            r.version_at(s, at).expect("storage"),
            model.version_at(s, at),
            "version_at({s}, {at})"
        );
    }
}

fn open(path: &Path) -> StateDb {
    StateDb::open(path).expect("open state db")
}

fn unwrap_results(out: Vec<Option<BatchResult>>) -> Vec<Option<Vec<Result<Outcome, StoreError>>>> {
    out.into_iter().map(|b| b.map(|b| b.results)).collect()
}

fn run(steps: Vec<Step>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.redb");
    let mut db = open(&path);
    let mut model = Model::default();
    let mut record = Vec::new();
    let mut clock: i64 = 0;
    for (i, step) in steps.iter().enumerate() {
        let timestamp_us = (1_000 * (i as i64 + 1) + clock).max(1) as u64;
        match step {
            Step::Write(ops) => {
                let (b, want) = batch(&mut model, ops, timestamp_us);
                record = format!("entry {i}").into_bytes();
                let got = db.apply(vec![ApplyItem::Batch(b)], &record).expect("apply");
                assert_eq!(unwrap_results(got), vec![Some(want)], "step {i}: {step:?}");
            }
            Step::WriteTwo(first, second) => {
                let (b1, want1) = batch(&mut model, first, timestamp_us);
                let (b2, want2) = batch(&mut model, second, timestamp_us + 1);
                record = format!("entries {i}").into_bytes();
                let got = db
                    .apply(
                        vec![ApplyItem::Batch(b1), ApplyItem::Empty, ApplyItem::Batch(b2)],
                        &record,
                    )
                    .expect("apply");
                assert_eq!(
                    unwrap_results(got),
                    vec![Some(want1), None, Some(want2)],
                    "step {i}: {step:?}"
                );
            }
            Step::ReadStream {
                stream,
                from,
                count,
                backward,
            } => check_read_stream(&db, &model, STREAMS[*stream], *from, *count, *backward),
            Step::ReadAll {
                from,
                count,
                backward,
            } => check_read_all(&db, &model, *from, *count, *backward),
            Step::Reopen => {
                db.flush().expect("flush");
                drop(db);
                db = open(&path);
            }
            Step::Clock(by) => clock += by,
            Step::Scavenge(op) => {
                let cmd = model.scavenge(*op);
                let b = WriteBatch {
                    timestamp_us,
                    commands: vec![cmd],
                };
                record = format!("entry {i}").into_bytes();
                let got = db.apply(vec![ApplyItem::Batch(b)], &record).expect("apply");
                assert_eq!(
                    unwrap_results(got),
                    vec![Some(vec![Ok(Outcome::Done)])],
                    "step {i}: {step:?}"
                );
                check_scavenge(&db, &model);
            }
            Step::AsOf { at } => check_as_of(&db, &model, *at),
        }
        if !record.is_empty() {
            check_all(&db, &model, &record);
        }
    }
    // At the end, reads as of each time an event was written, and just before it.
    let mut times: Vec<u64> = model
        .log
        .iter()
        .flat_map(|e| [e.timestamp_us - 1, e.timestamp_us])
        .collect();
    times.dedup();
    for at in times {
        check_as_of(&db, &model, at);
    }
}

proptest! {
    #![proptest_config(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn state_machine_matches_the_model(steps in prop::collection::vec(step_strategy(), 1..=40)) {
        run(steps);
    }
}

/// The same properties on one fixed history, with the values spelled out: retry,
/// delete, retry of the deleted events, recreate with NoStream at 0, a reused id,
/// reopen, hard delete.
#[test]
fn delete_then_no_stream_restarts_at_0_and_positions_are_not_reused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.redb");
    let mut db = open(&path);
    let apply = |db: &StateDb, commands: Vec<Command>| -> Vec<Result<Outcome, StoreError>> {
        let b = WriteBatch {
            timestamp_us: 7,
            commands,
        };
        let mut out = db.apply(vec![ApplyItem::Batch(b)], b"r").expect("apply");
        out.pop().flatten().expect("one batch result").results
    };
    let append = |stream: &str, expected: ExpectedVersion, ids: &[Uuid]| Command::Append {
        stream_id: stream.to_string(),
        expected: expected.into(),
        events: ids.iter().map(|id| proposed(*id, 0, true, true)).collect(),
    };
    let appended = |version, first_position, last_position| {
        Ok(Outcome::Appended(AppendResult {
            version,
            first_position,
            last_position,
        }))
    };
    let id = || Uuid::new_v4();
    let (a, b, c, d, e) = ([id(), id()], [id()], [id()], [id()], [id()]);

    assert_eq!(
        apply(&db, vec![append("s0", ExpectedVersion::NoStream, &a)]),
        vec![appended(1, 0, 1)]
    );
    assert_eq!(
        apply(&db, vec![append("s1", ExpectedVersion::NoStream, &b)]),
        vec![appended(0, 2, 2)]
    );
    // A retry gives the first answer and writes nothing.
    assert_eq!(
        apply(&db, vec![append("s0", ExpectedVersion::NoStream, &a)]),
        vec![appended(1, 0, 1)]
    );
    assert_eq!(
        apply(
            &db,
            vec![Command::Delete {
                stream_id: "s0".into(),
                hard: false
            }]
        ),
        vec![Ok(Outcome::Done)]
    );
    let r = db.read().expect("read");
    assert_eq!(
        r.read_stream("s0", 0, 10, Direction::Forward)
            .expect("storage")
            .map(|p| p.decode().expect("page")),
        Err(StoreError::StreamNotFound {
            stream_id: "s0".into()
        })
    );
    assert_eq!(r.version("s0").expect("storage"), None);
    assert!(r
        .read_by_types(&["A".into()], 0, ALL)
        .expect("storage")
        .decode()
        .expect("page")
        .iter()
        .all(|e| e.stream_id == "s1"));
    drop(r);
    // A retry of the deleted events still gives the first answer: the append they
    // came in did succeed, and ids are never written twice.
    assert_eq!(
        apply(&db, vec![append("s0", ExpectedVersion::NoStream, &a)]),
        vec![appended(1, 0, 1)]
    );
    // NoStream starts again at 0, at a new position.
    assert_eq!(
        apply(&db, vec![append("s0", ExpectedVersion::NoStream, &c)]),
        vec![appended(0, 3, 3)]
    );
    // An id of another stream is refused, and nothing is written.
    assert_eq!(
        apply(&db, vec![append("s0", ExpectedVersion::Any, &b)]),
        vec![Err(StoreError::DuplicateEventId { event_id: b[0] })]
    );

    db.flush().expect("flush");
    drop(db);
    db = open(&path);
    assert_eq!(
        apply(
            &db,
            vec![
                Command::Delete {
                    stream_id: "s1".into(),
                    hard: true
                },
                append("s1", ExpectedVersion::Any, &d),
                append("s0", ExpectedVersion::Exact(0), &e),
            ]
        ),
        vec![
            Ok(Outcome::Done),
            Err(StoreError::StreamDeleted {
                stream_id: "s1".into()
            }),
            appended(1, 4, 4),
        ]
    );
    let all = db
        .read()
        .expect("read")
        .read_all(0, ALL, Direction::Forward)
        .expect("storage")
        .decode()
        .expect("page");
    assert_eq!(
        all.iter()
            .map(|e| (e.stream_id.as_str(), e.version, e.position))
            .collect::<Vec<_>>(),
        vec![
            ("s0", 0, 0),
            ("s0", 1, 1),
            ("s1", 0, 2),
            ("s0", 0, 3),
            ("s0", 1, 4)
        ]
    );
}
