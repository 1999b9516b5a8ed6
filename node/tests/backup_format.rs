//! The backup file's format against a checked-in sample: a backup written by an
//! earlier node must be read, checked and restored by this one.
//!
//! `tests/samples/backup-1/default.rbk` is a backup of format 1 of a store of five
//! events in two streams (state format 3), taken by node 1 at Raft entry 3 of its
//! first term. [`backup_sample_restores`] checks its header, restores it for node 7
//! and checks what the data directory then holds: the events, the state's Raft record
//! (node 7 alone, applied at the backup's entry), the current snapshot and the log
//! (purged up to it, a vote of node 7 for the next term); then the store opens and
//! its node leads it at once. [`stores_restore_all_or_none`]: of two files, one
//! damaged in its body after the other was copied, neither store is kept.
//!
//! A new backup format ships a new sample beside this one:
//!
//! ```text
//! RECKON_SAMPLE=backup-2 cargo test -p reckon-node --test backup_format -- --ignored write_backup_sample
//! ```

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use openraft::{BasicNode, CommittedLeaderId, LogId, Membership, StoredMembership};
use reckon_gater::backup::{BackupPhase, BACKUP_CHUNK_BYTES_MAX};
use reckon_gater::types::{ContentType, Direction, EventRecord, ExpectedVersion};
use reckon_node::backup::export::Exports;
use reckon_node::backup::format::{read_head, BackupHeader, BodyDigest, BACKUP_FORMAT};
use reckon_node::backup::restore::{restore, RestoreTarget};
use reckon_node::command::{Command, ProposedEvent, WriteBatch};
use reckon_node::raft::format::{
    StoredCurrentSnapshot, StoredLogId, StoredVote, LOG, LOG_META, META_LAST_PURGED, META_VOTE,
};
use reckon_node::raft::state_machine::RaftRecord;
use reckon_node::storage::format::Record;
use reckon_node::storage::state::ApplyItem;
use reckon_node::storage::StateDb;
use redb::{ReadableDatabase, ReadableTableMetadata};
use uuid::Uuid;

/// The sample of today's backup format.
const CURRENT: &str = "backup-1";

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples")
}

fn log_id(term: u64, node: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

fn proposed(n: u8, event_type: &str) -> ProposedEvent {
    ProposedEvent {
        event_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + u128::from(n)),
        event_type: event_type.into(),
        data: format!("{{\"n\":{n}}}").into_bytes(),
        metadata: b"{}".to_vec(),
        content_type: ContentType::Json.into(),
        tags: vec![format!("t{}", n % 2)],
    }
}

/// The sample's events: order-1 gets 1, 2, 3 and audit-1 gets 4, 5, in two entries.
fn batches() -> Vec<WriteBatch> {
    let append = |stream: &str, events: Vec<ProposedEvent>| Command::Append {
        stream_id: stream.into(),
        expected: ExpectedVersion::Any.into(),
        events,
    };
    vec![
        WriteBatch {
            timestamp_us: 1_700_000_000_000_000,
            commands: vec![append(
                "order-1",
                vec![
                    proposed(1, "placed"),
                    proposed(2, "paid"),
                    proposed(3, "shipped"),
                ],
            )],
        },
        WriteBatch {
            timestamp_us: 1_700_000_000_000_500,
            commands: vec![append(
                "audit-1",
                vec![proposed(4, "seen"), proposed(5, "seen")],
            )],
        },
    ]
}

fn source_membership() -> StoredMembership<u64, BasicNode> {
    StoredMembership::new(
        Some(log_id(1, 1, 1)),
        Membership::new(
            vec![BTreeSet::from([1])],
            BTreeMap::from([(1, BasicNode::new("127.0.0.1:7601"))]),
        ),
    )
}

#[tokio::test]
#[ignore = "writes a new sample; run by hand when the backup format changes"]
async fn write_backup_sample() {
    let name = std::env::var("RECKON_SAMPLE").expect("RECKON_SAMPLE=backup-N");
    let dir = samples_dir().join(&name);
    assert!(
        !dir.exists(),
        "{} exists: samples are never overwritten",
        dir.display()
    );
    let work = tempfile::tempdir().unwrap();
    let file = fresh_backup("default", work.path()).await;
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("default.rbk"), file).unwrap();
}

/// The sample's header, but for the time it was taken.
fn expected_header(h: &BackupHeader) -> BackupHeader {
    BackupHeader {
        store: "default".into(),
        node_id: 1,
        last_applied: StoredLogId {
            term: 1,
            node_id: 1,
            index: 3,
        },
        next_position: 5,
        events: 5,
        created_us: h.created_us,
        state_format: 3,
        body_bytes: h.body_bytes,
        body_sha256: h.body_sha256,
    }
}

fn expected_events() -> Vec<(String, u64, u64, Uuid, String)> {
    let mut out = Vec::new();
    for (position, (stream, version, n, ty)) in [
        ("order-1", 0, 1, "placed"),
        ("order-1", 1, 2, "paid"),
        ("order-1", 2, 3, "shipped"),
        ("audit-1", 0, 4, "seen"),
        ("audit-1", 1, 5, "seen"),
    ]
    .into_iter()
    .enumerate()
    {
        out.push((
            stream.to_string(),
            version,
            position as u64,
            proposed(n, ty).event_id,
            ty.to_string(),
        ));
    }
    out
}

#[tokio::test]
async fn backup_sample_restores() {
    let sample = samples_dir().join(CURRENT).join("default.rbk");
    let bytes = std::fs::read(&sample).unwrap();

    // The head checks, and the body matches its checksum.
    let head = read_head(&mut &bytes[..], &sample, bytes.len() as u64).unwrap();
    assert_eq!(head.header, expected_header(&head.header));
    assert_eq!(
        BACKUP_FORMAT, 1,
        "a new format needs a new sample (see the docs)"
    );
    let mut digest = BodyDigest::default();
    digest.update(&bytes[head.body_offset as usize..]);
    digest.check(&head.header, &sample).unwrap();

    // Restored for node 7.
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let target = RestoreTarget {
        data_dir: data.clone(),
        node_id: 7,
        advertise: "127.0.0.1:7607".into(),
    };
    let restored = restore(std::slice::from_ref(&sample), &target).unwrap();
    assert_eq!(restored.len(), 1);
    let store = data.join("default");
    let at = log_id(1, 1, 3);
    let alone = Membership::new(
        vec![BTreeSet::from([7])],
        BTreeMap::from([(7, BasicNode::new("127.0.0.1:7607"))]),
    );
    {
        let state = StateDb::open(&store.join("state.redb")).unwrap();
        let record = RaftRecord::decode(&state.raft_record().unwrap().unwrap()).unwrap();
        assert_eq!(record.last_applied, Some(at));
        assert_eq!(
            record.membership,
            StoredMembership::new(Some(at), alone.clone())
        );
        let r = state.read().unwrap();
        let page = r.read_all(0, 100, Direction::Forward).unwrap();
        let got: Vec<(String, u64, u64, Uuid, String)> = page
            .decode()
            .unwrap()
            .into_iter()
            .map(|e: EventRecord| (e.stream_id, e.version, e.position, e.event_id, e.event_type))
            .collect();
        assert_eq!(got, expected_events());
        assert_eq!(r.version("order-1").unwrap(), Some(2));
    }
    let current =
        StoredCurrentSnapshot::decode(&std::fs::read(store.join("snapshots/current")).unwrap())
            .unwrap();
    assert_eq!(current.meta.last_log_id, Some(at.into()));
    assert_eq!(current.file, "");
    {
        let log = redb::Database::open(store.join("log.redb")).unwrap();
        let txn = log.begin_read().unwrap();
        assert_eq!(
            txn.open_table(LOG).unwrap().len().unwrap(),
            0,
            "the log is empty"
        );
        let meta = txn.open_table(LOG_META).unwrap();
        let vote = StoredVote::decode(meta.get(META_VOTE).unwrap().unwrap().value()).unwrap();
        assert_eq!(
            vote,
            StoredVote {
                term: 2,
                node_id: 7,
                committed: true
            }
        );
        let purged =
            StoredLogId::decode(meta.get(META_LAST_PURGED).unwrap().unwrap().value()).unwrap();
        assert_eq!(purged, at.into());
    }

    // The store opens on it, node 7 leads, and the events read back.
    let mut opts = reckon_node::store::StoreOptions::new(7, "127.0.0.1:7607");
    opts.election_timeout_min_ms = 150;
    opts.election_timeout_max_ms = 300;
    opts.heartbeat_ms = 50;
    let pool = reckon_node::raft::network::PeerPool::new(7);
    let s = reckon_node::store::Store::open("default", &store, opts, true, pool)
        .await
        .unwrap();
    let page = s
        .read_all(
            0,
            100,
            Direction::Forward,
            reckon_gater::types::ReadConsistency::Linearizable,
        )
        .await
        .unwrap();
    assert_eq!(page.decode().unwrap().len(), 5);
    s.shutdown().await;
}

/// A backup of store `store` made now by [`Exports`], from the sample's batches.
async fn fresh_backup(store: &str, work: &Path) -> Vec<u8> {
    std::fs::create_dir_all(work).unwrap();
    let state = StateDb::open(&work.join(format!("{store}.redb"))).unwrap();
    for (i, batch) in batches().into_iter().enumerate() {
        let record = RaftRecord {
            last_applied: Some(log_id(1, 1, 2 + i as u64)),
            membership: source_membership(),
        };
        state
            .apply(vec![ApplyItem::Batch(batch)], &record.encode())
            .unwrap();
    }
    let exports = Exports::open(store, 1, &work.join(format!("{store}-backups"))).unwrap();
    let id = exports
        .begin(state.view().unwrap(), log_id(1, 1, 3).into())
        .unwrap()
        .id;
    let info = loop {
        if let BackupPhase::Ready(info) = exports.status(&id).unwrap().phase {
            break info;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut file = Vec::new();
    while (file.len() as u64) < info.bytes {
        let c = exports
            .chunk(&id, file.len() as u64, BACKUP_CHUNK_BYTES_MAX)
            .await
            .unwrap();
        file.extend_from_slice(&c);
    }
    exports.end(&id).unwrap();
    file
}

#[tokio::test]
async fn stores_restore_all_or_none() {
    let root = tempfile::tempdir().unwrap();
    let good = root.path().join("default.rbk");
    std::fs::copy(samples_dir().join(CURRENT).join("default.rbk"), &good).unwrap();
    let mut other = fresh_backup("other", root.path()).await;
    let last = other.len() - 10;
    other[last] ^= 0xff;
    let damaged = root.path().join("other.rbk");
    std::fs::write(&damaged, &other).unwrap();
    let parent = root.path().join("nodes");
    std::fs::create_dir(&parent).unwrap();
    let target = RestoreTarget {
        data_dir: parent.join("data"),
        node_id: 1,
        advertise: "127.0.0.1:7601".into(),
    };
    // The second file's body is damaged once the first is copied: neither is kept.
    let err = restore(&[good.clone(), damaged], &target).unwrap_err();
    assert!(err.to_string().contains("the file is damaged"), "{err}");
    assert_eq!(
        std::fs::read_dir(&parent).unwrap().count(),
        0,
        "something was left"
    );
    // Undamaged, both are restored, each its own store.
    let undamaged = root.path().join("other-ok.rbk");
    std::fs::write(
        &undamaged,
        fresh_backup("other", &root.path().join("again")).await,
    )
    .unwrap();
    let done = restore(&[good, undamaged], &target).unwrap();
    let stores: Vec<&str> = done.iter().map(|r| r.header.store.as_str()).collect();
    assert_eq!(stores, ["default", "other"]);
    assert!(target.data_dir.join("other/state.redb").exists());
}
