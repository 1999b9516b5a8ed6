//! The on-disk formats against checked-in samples: files written by an earlier node
//! must open and read back the same with this one.
//!
//! `tests/samples/format-2/` holds a store's files as the node wrote them at state
//! format 2, before the Raft log file carried a format mark: `log.redb`, `state.redb`
//! and the snapshot directory (`snapshots/current` and its `snap-*.redb`).
//! `tests/samples/format-3/` holds them at state format 3 and log format 1, with
//! snapshots that are the state file itself. Their contents are [`entries`] (whose
//! deletes are each day's own command), applied in order, with a snapshot taken after
//! [`SNAPSHOT_AT`], the log purged up to [`PURGED_UPTO`] and [`vote`] saved: events in
//! two live streams with types and tags, a soft-deleted and a tombstoned stream,
//! stream snapshots, subscriptions of every kind with checkpoints, two membership
//! changes, and (from format 3) a scavenge started and stopped and a stream's retention. Every variant of every persisted enum occurs in them.
//!
//! [`sample_decodes`] opens a copy of each sample with today's code and checks every
//! record against the values it was written from. [`current_sample_is_todays_bytes`]
//! decodes every record of the sample of today's formats and encodes it again: the
//! same bytes, so today's code writes what the sample holds.
//!
//! # A new sample
//!
//! A change to a persisted format bumps its version and ships a new sample beside the
//! old ones, whose checks must keep passing (that is the upgrade path):
//!
//! ```text
//! RECKON_SAMPLE=format-3 cargo test -p reckon-node --test formats -- --ignored write_sample
//! ```
//!
//! writes `tests/samples/format-3/` from the same [`entries`] with the code of the
//! day (it refuses to overwrite a sample); then add it to [`SAMPLES`] and make it
//! [`CURRENT`].

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader,
    RaftSnapshotBuilder, StoredMembership, Vote,
};
use reckon_gater::subscription::{StartFrom, SubscriptionInfo};
use reckon_gater::types::{
    AppendResult, ContentType, Direction, EventRecord, ExpectedVersion, SnapshotRecord, StoreError,
    StreamInfo, SubscriptionType, TagMatch,
};
use reckon_node::command::{Command, Outcome, ProposedEvent, WriteBatch};
use reckon_node::raft::format::{
    decode_entry, encode_entry, StoredCurrentSnapshot, StoredLogId, StoredRaftRecord, StoredVote,
    LOG, LOG_FORMAT, LOG_META,
};
use reckon_node::raft::log_store::LogStore;
use reckon_node::raft::state_machine::{SnapshotFile, StateMachine};
use reckon_node::raft::TypeConfig;
use reckon_node::storage::format::{
    Counters, Record, ScavengePhase, StoredEvent, StoredRetention, StoredScavenge, StoredSnapshot,
    StoredSubscription, EVENTS, META, META_COUNTERS, META_RAFT, META_SCAVENGE, RETENTION,
    SNAPSHOTS, STATE_FORMAT, STREAMS, SUBSCRIPTIONS,
};
use reckon_node::storage::keys::StreamMeta;
use reckon_node::storage::state::ApplyItem;
use reckon_node::storage::StateDb;
use reckon_node::store::subscriptions::key_of;
use redb::{ReadableDatabase, ReadableTable};
use uuid::Uuid;

/// The samples every build must read.
const SAMPLES: &[&str] = &["format-2", "format-3"];
/// The sample written in the formats this node writes: state format 3, log format 1.
const CURRENT: &str = "format-3";

/// The entry after which the sample's snapshot was taken.
const SNAPSHOT_AT: u64 = 6;
/// The log was purged up to this index, inclusive.
const PURGED_UPTO: u64 = 1;

/// The timestamps the entries carry, one per batch.
const TS: [u64; 6] = [
    1_767_225_600_000_000,
    1_767_225_601_000_000,
    1_767_225_602_000_000,
    1_767_225_603_000_000,
    1_767_225_604_000_000,
    1_767_225_605_000_000,
];

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples")
}

/// The sample's event ids: fixed, time-ordered like the UUIDv7s the node assigns.
fn id(n: u8) -> Uuid {
    Uuid::from_u128(0x0194_1f29_7c00_7000_8000_0000_0000_0000 | u128::from(n))
}

fn log_id(term: u64, node: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

fn node(n: u64) -> BasicNode {
    BasicNode::new(format!("10.0.0.{n}:7100"))
}

/// Node 1 alone.
fn first_membership() -> Membership<u64, BasicNode> {
    Membership::new(vec![BTreeSet::from([1])], BTreeMap::from([(1, node(1))]))
}

/// Nodes 1 and 2 voting, node 3 a learner.
fn second_membership() -> Membership<u64, BasicNode> {
    Membership::new(
        vec![BTreeSet::from([1, 2])],
        BTreeMap::from([(1, node(1)), (2, node(2)), (3, node(3))]),
    )
}

fn vote() -> Vote<u64> {
    Vote::new_committed(2, 2)
}

fn event(
    n: u8,
    event_type: &str,
    data: &[u8],
    metadata: &[u8],
    content_type: ContentType,
    tags: &[&str],
) -> ProposedEvent {
    ProposedEvent {
        event_id: id(n),
        event_type: event_type.into(),
        data: data.to_vec(),
        metadata: metadata.to_vec(),
        content_type: content_type.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

/// The sample's events as written, by event number (1-based, as [`id`]).
fn proposed(n: u8) -> ProposedEvent {
    match n {
        1 => event(
            1,
            "OrderPlaced",
            br#"{"total":5}"#,
            br#"{"by":"ann"}"#,
            ContentType::Json,
            &["vip", "eu"],
        ),
        2 => event(
            2,
            "OrderPaid",
            &[0, 1, 2, 255],
            b"",
            ContentType::Binary,
            &[],
        ),
        3 => event(
            3,
            "InvoiceIssued",
            br#"{"n":9}"#,
            b"",
            ContentType::Json,
            &["eu"],
        ),
        4 => event(4, "OrderShipped", b"{}", b"", ContentType::Json, &[]),
        5 => event(5, "Scratched", b"{}", b"", ContentType::Json, &["tmp"]),
        6 => event(6, "Scratched", b"{}", b"", ContentType::Json, &["tmp"]),
        7 => event(7, "InvoicePaid", br#"{"n":9}"#, b"", ContentType::Json, &[]),
        8 => event(8, "OrderClosed", b"{}", b"", ContentType::Json, &["vip"]),
        _ => unreachable!("the sample has events 1..=8"),
    }
}

fn append(stream_id: &str, expected: ExpectedVersion, events: &[u8]) -> Command {
    Command::Append {
        stream_id: stream_id.into(),
        expected: expected.into(),
        events: events.iter().map(|n| proposed(*n)).collect(),
    }
}

/// The subscriptions the sample creates: kind, selector, name, start, pool size.
fn subscription_specs() -> [(SubscriptionType, &'static str, &'static str, StartFrom, u32); 5] {
    [
        (
            SubscriptionType::EventType,
            "OrderPlaced,OrderPaid",
            "billing",
            StartFrom::Beginning,
            2,
        ),
        (SubscriptionType::Stream, "$all", "audit", StartFrom::End, 1),
        (
            SubscriptionType::EventPattern,
            "order-*",
            "ship",
            StartFrom::Position(2),
            1,
        ),
        (
            SubscriptionType::EventPayload,
            r#"{"total":{"$gt":1}}"#,
            "big",
            StartFrom::Beginning,
            1,
        ),
        (
            SubscriptionType::Tags,
            "all:vip,eu",
            "vip",
            StartFrom::Beginning,
            1,
        ),
    ]
}

fn sub_key(i: usize) -> String {
    let (kind, selector, name, _, _) = subscription_specs()[i];
    key_of(kind, selector, name)
}

fn subscribe(i: usize) -> Command {
    let (kind, selector, name, start_from, pool_size) = subscription_specs()[i];
    Command::Subscribe {
        key: sub_key(i),
        kind: kind.into(),
        selector: selector.into(),
        name: name.into(),
        start_from: start_from.into(),
        pool_size,
    }
}

fn normal(term: u64, index: u64, timestamp_us: u64, commands: Vec<Command>) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, term, index),
        payload: EntryPayload::Normal(WriteBatch {
            timestamp_us,
            commands,
        }),
    }
}

/// A delete as the node of `sample`'s day proposed it: format 2's without an expected
/// version ([`Command::Delete`]), today's with one ([`Command::DeleteStream`]).
fn delete(sample: &str, stream_id: &str, hard: bool, expected: ExpectedVersion) -> Command {
    if sample == "format-2" {
        Command::Delete {
            stream_id: stream_id.into(),
            hard,
        }
    } else {
        Command::DeleteStream {
            stream_id: stream_id.into(),
            hard,
            expected: expected.into(),
        }
    }
}

/// Every entry the log of `sample` held, from index 1; the first [`PURGED_UPTO`] are
/// purged from it.
fn entries(sample: &str) -> Vec<Entry<TypeConfig>> {
    vec![
        Entry {
            log_id: log_id(1, 1, 1),
            payload: EntryPayload::Membership(first_membership()),
        },
        Entry {
            log_id: log_id(1, 1, 2),
            payload: EntryPayload::Blank,
        },
        normal(
            1,
            3,
            TS[0],
            vec![
                append("order-1", ExpectedVersion::NoStream, &[1, 2]),
                append("invoice-9", ExpectedVersion::Any, &[3]),
            ],
        ),
        normal(
            1,
            4,
            TS[1],
            vec![
                append("order-1", ExpectedVersion::Exact(1), &[4]),
                append("scratch", ExpectedVersion::NoStream, &[5]),
                append("scratch", ExpectedVersion::StreamExists, &[6]),
                Command::SaveSnapshot {
                    stream_id: "order-1".into(),
                    version: 1,
                    data: b"s1".to_vec(),
                    metadata: Vec::new(),
                },
                Command::SaveSnapshot {
                    stream_id: "order-1".into(),
                    version: 2,
                    data: br#"{"total":5}"#.to_vec(),
                    metadata: br#"{"v":2}"#.to_vec(),
                },
                Command::DeleteSnapshot {
                    stream_id: "order-1".into(),
                    version: Some(1),
                },
            ],
        ),
        normal(
            1,
            5,
            TS[2],
            vec![
                delete(sample, "scratch", false, ExpectedVersion::Exact(1)),
                delete(sample, "gone", true, ExpectedVersion::NoStream),
                subscribe(0),
                subscribe(1),
                subscribe(2),
                subscribe(3),
                subscribe(4),
                Command::DeleteSnapshot {
                    stream_id: "invoice-9".into(),
                    version: None,
                },
            ],
        ),
        normal(1, 6, TS[3], {
            let mut commands = vec![
                Command::Ack {
                    key: sub_key(0),
                    position: 1,
                },
                Command::Ack {
                    key: sub_key(2),
                    position: 3,
                },
                Command::Unsubscribe { key: sub_key(4) },
            ];
            if sample != "format-2" {
                // A scavenge started, a step from where it does not stand (no effect)
                // and a stop: its record, with nothing removed.
                commands.extend([
                    Command::ScavengeStart,
                    Command::ScavengeStep { from: 1, to: 2 },
                    Command::ScavengeStop,
                    // A retention that keeps both of the stream's events.
                    Command::SetRetention {
                        stream_id: "invoice-9".into(),
                        max_age_us: None,
                        max_count: Some(1000),
                        truncate_before: Some(0),
                    },
                ]);
            }
            commands
        }),
        // The snapshot is taken here.
        normal(
            1,
            7,
            TS[4],
            vec![
                append("invoice-9", ExpectedVersion::Exact(0), &[7]),
                Command::Ack {
                    key: sub_key(0),
                    position: 4,
                },
            ],
        ),
        Entry {
            log_id: log_id(1, 1, 8),
            payload: EntryPayload::Membership(second_membership()),
        },
        Entry {
            log_id: log_id(2, 2, 9),
            payload: EntryPayload::Blank,
        },
        normal(
            2,
            10,
            TS[5],
            vec![append("order-1", ExpectedVersion::Any, &[8])],
        ),
    ]
}

/// The event the sample stores for event `n`.
fn record(n: u8, stream_id: &str, version: u64, position: u64, timestamp_us: u64) -> EventRecord {
    let e = proposed(n);
    EventRecord {
        stream_id: stream_id.into(),
        version,
        position,
        event_id: e.event_id,
        event_type: e.event_type,
        data: e.data,
        metadata: e.metadata,
        content_type: e.content_type.into(),
        tags: e.tags,
        timestamp_us,
    }
}

/// The global log after every entry; a snapshot holds the first
/// [`EVENTS_IN_SNAPSHOT`].
fn events() -> Vec<EventRecord> {
    vec![
        record(1, "order-1", 0, 0, TS[0]),
        record(2, "order-1", 1, 1, TS[0]),
        record(3, "invoice-9", 0, 2, TS[0]),
        record(4, "order-1", 2, 3, TS[1]),
        record(5, "scratch", 0, 4, TS[1]),
        record(6, "scratch", 1, 5, TS[1]),
        record(7, "invoice-9", 1, 6, TS[4]),
        record(8, "order-1", 3, 7, TS[5]),
    ]
}

const EVENTS_IN_SNAPSHOT: usize = 6;

/// The subscriptions as stored: `after_snapshot` for the state file, else the
/// snapshot's; `head` is what a read fills in.
fn subscriptions(after_snapshot: bool, head: u64) -> Vec<SubscriptionInfo> {
    let cursors = [if after_snapshot { 5 } else { 2 }, 6, 4, 0];
    let mut out: Vec<SubscriptionInfo> = (0..4)
        .map(|i| {
            let (kind, selector, name, start_from, pool_size) = subscription_specs()[i];
            SubscriptionInfo {
                key: sub_key(i),
                kind,
                selector: selector.into(),
                name: name.into(),
                start_from,
                pool_size,
                cursor: cursors[i],
                created_us: TS[2],
                head,
                consumers: 0,
                delivered: 0,
            }
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// Copies a sample to a fresh directory: opening a file may write to it.
fn copy_sample(name: &str) -> tempfile::TempDir {
    let from = samples_dir().join(name);
    assert!(from.is_dir(), "no sample at {}", from.display());
    let to = tempfile::tempdir().unwrap();
    copy_dir(&from, to.path());
    to
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

struct Opened {
    log: LogStore,
    state: Arc<StateDb>,
    sm: StateMachine,
}

fn open(dir: &Path) -> Opened {
    let log = LogStore::open(&dir.join("log.redb")).unwrap();
    let state = Arc::new(StateDb::open(&dir.join("state.redb")).unwrap());
    let sm = StateMachine::open(state.clone(), &dir.join("snapshots")).unwrap();
    Opened { log, state, sm }
}

/// Writes a new sample from [`entries`] with today's code into
/// `tests/samples/$RECKON_SAMPLE`.
#[tokio::test]
#[ignore = "writes a new sample; run by hand when a format changes"]
async fn write_sample() {
    let name = std::env::var("RECKON_SAMPLE").expect("RECKON_SAMPLE names the new sample");
    let out = samples_dir().join(&name);
    assert!(
        !out.exists(),
        "{} exists: a sample is never rewritten",
        out.display()
    );
    std::fs::create_dir_all(&out).unwrap();
    {
        let Opened {
            mut log,
            state,
            mut sm,
        } = open(&out);
        let all = entries(&name);
        log.blocking_append(all.clone()).await.unwrap();
        log.save_vote(&vote()).await.unwrap();
        let (before, after): (Vec<_>, Vec<_>) =
            all.into_iter().partition(|e| e.log_id.index <= SNAPSHOT_AT);
        sm.apply(before).await.unwrap();
        let snapshot = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        drop(snapshot);
        log.purge(log_id(1, 1, PURGED_UPTO)).await.unwrap();
        sm.apply(after).await.unwrap();
        state.flush().unwrap();
    }
    // Leave out the free space of the files' growth: the sample stays small.
    let mut files = vec![out.join("log.redb"), out.join("state.redb")];
    for entry in std::fs::read_dir(out.join("snapshots")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "redb") {
            files.push(path);
        }
    }
    for path in files {
        let mut db = redb::Database::open(&path).unwrap();
        db.compact().unwrap();
    }
}

#[tokio::test]
async fn sample_decodes() {
    for name in SAMPLES {
        check_sample(name).await;
    }
}

async fn check_sample(name: &str) {
    let dir = copy_sample(name);
    let Opened {
        mut log,
        state,
        mut sm,
    } = open(dir.path());
    check_log(&mut log, name).await;
    check_state(&state, true);
    check_applied(
        &mut sm,
        log_id(2, 2, 10),
        log_id(1, 1, 8),
        second_membership(),
    )
    .await;
    check_snapshot(&mut sm, &dir.path().join("snapshots")).await;
    check_event_id_index(&state);
    check_recreated_numbering(&mut sm, &state, name).await;
    drop((log, state, sm));
    // Opening marked both files with today's formats.
    let format = |file: &str, table: redb::TableDefinition<&str, &[u8]>| {
        let db = redb::Database::open(dir.path().join(file)).unwrap();
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(table).unwrap();
        let v = t.get("format").unwrap().expect("a format mark");
        u32::from_le_bytes(v.value().try_into().unwrap())
    };
    assert_eq!(format("state.redb", META), STATE_FORMAT);
    assert_eq!(format("log.redb", LOG_META), LOG_FORMAT);
}

/// Decodes every row of a table with `T` and checks that encoding it again gives
/// the stored bytes; returns how many rows there were.
fn same_bytes<K: redb::Key + 'static>(
    txn: &redb::ReadTransaction,
    table: redb::TableDefinition<K, &[u8]>,
    again: impl Fn(&[u8]) -> Vec<u8>,
) -> usize {
    let t = txn.open_table(table).unwrap();
    let mut rows = 0;
    for row in t.iter().unwrap() {
        let (_, v) = row.unwrap();
        assert_eq!(again(v.value()), v.value(), "a row of {table}");
        rows += 1;
    }
    rows
}

fn again<T: Record>(b: &[u8]) -> Vec<u8> {
    T::decode(b).unwrap().encode()
}

/// Every record of a state file (or a snapshot, its copy) re-encodes to its bytes.
fn state_file_is_todays_bytes(path: &Path) {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    assert!(same_bytes(&txn, EVENTS, again::<StoredEvent>) > 0);
    assert!(same_bytes(&txn, SUBSCRIPTIONS, again::<StoredSubscription>) > 0);
    assert!(same_bytes(&txn, SNAPSHOTS, again::<StoredSnapshot>) > 0);
    assert!(same_bytes(&txn, RETENTION, again::<StoredRetention>) > 0);
    assert!(
        same_bytes(&txn, STREAMS, |b| StreamMeta::decode(b)
            .unwrap()
            .encode()
            .to_vec())
            > 0
    );
    let meta = txn.open_table(META).unwrap();
    for (key, again) in [
        (META_COUNTERS, again::<Counters> as fn(&[u8]) -> Vec<u8>),
        (META_RAFT, again::<StoredRaftRecord>),
        (META_SCAVENGE, again::<StoredScavenge>),
    ] {
        let v = meta.get(key).unwrap().expect("a meta record");
        assert_eq!(again(v.value()), v.value(), "meta {key:?}");
    }
    let scavenge = StoredScavenge::decode(meta.get(META_SCAVENGE).unwrap().unwrap().value());
    assert_eq!(
        scavenge.unwrap(),
        StoredScavenge {
            generation: 1,
            phase: ScavengePhase::Stopped,
            end: 6,
            next: 0,
            removed_events: 0,
            removed_bytes: 0,
            started_us: TS[3],
            finished_us: None,
        }
    );
}

#[test]
fn current_sample_is_todays_bytes() {
    let dir = copy_sample(CURRENT);
    state_file_is_todays_bytes(&dir.path().join("state.redb"));
    let snapshots = dir.path().join("snapshots");
    let current = std::fs::read(snapshots.join("current")).unwrap();
    assert_eq!(again::<StoredCurrentSnapshot>(&current), current);
    // Today's snapshot is the state file itself: the marker names no copy.
    let file = StoredCurrentSnapshot::decode(&current).unwrap().file;
    assert_eq!(file, "", "the current snapshot names a copy");
    // The sample holds a soft-deleted stream whose numbering goes on.
    let db = redb::Database::open(dir.path().join("state.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let streams = txn.open_table(STREAMS).unwrap();
    let scratch = StreamMeta::decode(streams.get("scratch").unwrap().unwrap().value()).unwrap();
    assert!(scratch.deleted && scratch.version == Some(1), "{scratch:?}");
    drop((streams, txn, db));
    let db = redb::Database::open(dir.path().join("log.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let entries = same_bytes(&txn, LOG, |b| encode_entry(&decode_entry(b).unwrap()));
    assert_eq!(entries as u64, 10 - PURGED_UPTO);
    let meta = txn.open_table(LOG_META).unwrap();
    let vote = meta.get("vote").unwrap().expect("a vote");
    assert_eq!(again::<StoredVote>(vote.value()), vote.value());
    let purged = meta.get("last_purged").unwrap().expect("a purge");
    assert_eq!(again::<StoredLogId>(purged.value()), purged.value());
}

async fn check_log(log: &mut LogStore, sample: &str) {
    let st = log.get_log_state().await.unwrap();
    assert_eq!(st.last_purged_log_id, Some(log_id(1, 1, PURGED_UPTO)));
    assert_eq!(st.last_log_id, Some(log_id(2, 2, 10)));
    assert_eq!(log.read_vote().await.unwrap(), Some(vote()));
    let held = log.try_get_log_entries(0..).await.unwrap();
    let want: Vec<_> = entries(sample)
        .into_iter()
        .filter(|e| e.log_id.index > PURGED_UPTO)
        .collect();
    assert_eq!(held.len(), want.len());
    // Entries have no `PartialEq`, and their payloads' `Debug` hides the batch.
    for (got, want) in held.into_iter().zip(want) {
        assert_eq!(got.log_id, want.log_id);
        let index = want.log_id.index;
        match (got.payload, want.payload) {
            (EntryPayload::Normal(got), EntryPayload::Normal(want)) => {
                assert_eq!(got, want, "entry {index}")
            }
            (got, want) => assert_eq!(got, want, "entry {index}"),
        }
    }
}

/// The state file's records: `whole` for the state after every entry, else the
/// snapshot's (after [`SNAPSHOT_AT`]).
fn check_state(state: &StateDb, whole: bool) {
    let r = state.read().unwrap();
    let mut want = events();
    if !whole {
        want.truncate(EVENTS_IN_SNAPSHOT);
    }
    let head = want.len() as u64;
    let stats = r.stats().unwrap();
    assert_eq!((stats.events, stats.next_position), (head, head));
    assert_eq!(
        r.read_all(0, 100, Direction::Forward)
            .unwrap()
            .decode()
            .expect("page"),
        want
    );
    let by_pos =
        |ps: &[u64]| -> Vec<EventRecord> { ps.iter().map(|p| want[*p as usize].clone()).collect() };
    // Stream metadata and the stream index.
    let (order_v, invoice_v) = if whole { (3, 1) } else { (2, 0) };
    assert_eq!(r.version("order-1").unwrap(), Some(order_v));
    assert_eq!(r.version("invoice-9").unwrap(), Some(invoice_v));
    assert_eq!(r.version("scratch").unwrap(), None);
    assert_eq!(r.version("gone").unwrap(), None);
    let order = if whole {
        by_pos(&[0, 1, 3, 7])
    } else {
        by_pos(&[0, 1, 3])
    };
    assert_eq!(
        r.read_stream("order-1", 0, 100, Direction::Forward)
            .unwrap()
            .map(|p| p.decode().expect("page")),
        Ok(order)
    );
    assert_eq!(
        r.read_stream("scratch", 0, 100, Direction::Forward)
            .unwrap()
            .map(|p| p.decode().expect("page")),
        Err(StoreError::StreamNotFound {
            stream_id: "scratch".into()
        })
    );
    assert_eq!(
        r.list_streams(None, 100).unwrap(),
        [
            StreamInfo {
                stream_id: "invoice-9".into(),
                version: invoice_v,
            },
            StreamInfo {
                stream_id: "order-1".into(),
                version: order_v,
            },
        ]
    );
    // The type and tag indexes: a deleted stream's events are out of them.
    let types = |t: &[&str]| {
        let t: Vec<String> = t.iter().map(|s| s.to_string()).collect();
        r.read_by_types(&t, 0, 100).unwrap().decode().expect("page")
    };
    assert_eq!(types(&["OrderPlaced", "OrderShipped"]), by_pos(&[0, 3]));
    assert_eq!(types(&["Scratched"]), []);
    let tags = |t: &[&str], m| {
        let t: Vec<String> = t.iter().map(|s| s.to_string()).collect();
        r.read_by_tags(&t, m, 0, 100)
            .unwrap()
            .decode()
            .expect("page")
    };
    let vip = if whole { by_pos(&[0, 7]) } else { by_pos(&[0]) };
    assert_eq!(tags(&["vip"], TagMatch::Any), vip);
    assert_eq!(tags(&["vip", "eu"], TagMatch::All), by_pos(&[0]));
    assert_eq!(tags(&["eu"], TagMatch::Any), by_pos(&[0, 2]));
    assert_eq!(tags(&["tmp"], TagMatch::Any), []);
    // Stream snapshots: version 1 was deleted.
    let snap = SnapshotRecord {
        stream_id: "order-1".into(),
        version: 2,
        data: br#"{"total":5}"#.to_vec(),
        metadata: br#"{"v":2}"#.to_vec(),
        timestamp_us: TS[1],
    };
    assert_eq!(r.latest_snapshot("order-1").unwrap(), Some(snap.clone()));
    assert_eq!(r.snapshots("order-1", 0, u64::MAX).unwrap(), [snap]);
    assert_eq!(r.latest_snapshot("invoice-9").unwrap(), None);
    // Subscriptions and their checkpoints.
    let subs = subscriptions(whole, head);
    assert_eq!(r.subscriptions().unwrap(), subs);
    assert_eq!(
        r.subscription(&sub_key(0)).unwrap().map(|s| s.checkpoint()),
        Some(Some(if whole { 4 } else { 1 }))
    );
    assert_eq!(r.subscription(&sub_key(4)).unwrap(), None);
}

/// A stream soft-deleted by a format-2 node is numbered from 0 again when written
/// anew (what that node did, kept so its logs replay the same); one deleted by
/// today's continues after its last version.
async fn check_recreated_numbering(sm: &mut StateMachine, state: &StateDb, sample: &str) {
    let fresh = event(9, "Scratched", b"{}", b"", ContentType::Json, &[]);
    let again = Command::Append {
        stream_id: "scratch".into(),
        expected: ExpectedVersion::NoStream.into(),
        events: vec![fresh],
    };
    sm.apply(vec![normal(2, 11, TS[5] + 1, vec![again])])
        .await
        .unwrap();
    let want = if sample == "format-2" { 0 } else { 2 };
    assert_eq!(
        state.read().unwrap().version("scratch").unwrap(),
        Some(want),
        "{sample}: scratch written again"
    );
}

/// What the Raft layer stored beside the data.
async fn check_applied(
    sm: &mut StateMachine,
    last: LogId<u64>,
    membership_at: LogId<u64>,
    membership: Membership<u64, BasicNode>,
) {
    let (applied, stored) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(last));
    assert_eq!(
        stored,
        StoredMembership::new(Some(membership_at), membership)
    );
}

/// The snapshot: the copy of the state a format-2 node kept beside it is removed
/// when the node opens, the point it marked stays the current snapshot's, and the
/// snapshot handed out for a transfer is the state as it stands, which installed on
/// a fresh state machine holds every entry.
async fn check_snapshot(sm: &mut StateMachine, snapshots: &Path) {
    let copies: Vec<_> = std::fs::read_dir(snapshots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".redb"))
        .collect();
    assert!(copies.is_empty(), "copies left: {copies:?}");
    let current =
        StoredCurrentSnapshot::decode(&std::fs::read(snapshots.join("current")).unwrap()).unwrap();
    assert_eq!(current.file, "");
    let marked: openraft::SnapshotMeta<u64, BasicNode> = current.meta.into();
    assert_eq!(marked.last_log_id, Some(log_id(1, 1, SNAPSHOT_AT)));
    assert!(
        marked
            .snapshot_id
            .starts_with(&format!("{}-{SNAPSHOT_AT}-", log_id(1, 1, 1).leader_id)),
        "{}",
        marked.snapshot_id
    );

    let mut snap = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("a snapshot");
    let meta = snap.meta.clone();
    assert_eq!(meta.last_log_id, Some(log_id(2, 2, 10)));
    assert_eq!(
        meta.last_membership,
        StoredMembership::new(Some(log_id(1, 1, 8)), second_membership())
    );
    snap.snapshot.ready().await.unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let Opened {
        state,
        sm: mut other,
        ..
    } = open(fresh.path());
    let incoming = fresh.path().join("incoming.redb");
    std::fs::copy(snap.snapshot.path(), &incoming).unwrap();
    let file = SnapshotFile::open(&incoming).await.unwrap();
    other.install_snapshot(&meta, Box::new(file)).await.unwrap();
    check_state(&state, true);
    check_applied(
        &mut other,
        log_id(2, 2, 10),
        log_id(1, 1, 8),
        second_membership(),
    )
    .await;
}

/// The event id index: a retried append is answered from it with the first result,
/// and an id stored elsewhere is refused.
fn check_event_id_index(state: &StateDb) {
    let apply = |stream: &str, events: &[u8]| {
        let batch = WriteBatch {
            timestamp_us: TS[5] + 1,
            commands: vec![append(stream, ExpectedVersion::Any, events)],
        };
        let mut out = state
            .apply(vec![ApplyItem::Batch(batch)], b"not read")
            .unwrap();
        out.pop().unwrap().unwrap().results.pop().unwrap()
    };
    assert_eq!(
        apply("order-1", &[1, 2]),
        Ok(Outcome::Appended(AppendResult {
            version: 1,
            first_position: 0,
            last_position: 1,
        }))
    );
    assert_eq!(
        apply("invoice-9", &[7]),
        Ok(Outcome::Appended(AppendResult {
            version: 1,
            first_position: 6,
            last_position: 6,
        }))
    );
    assert_eq!(
        apply("elsewhere", &[5]),
        Err(StoreError::DuplicateEventId { event_id: id(5) })
    );
}
