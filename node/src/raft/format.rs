//! The Raft layer's persisted formats: the log file, and the records the layer keeps
//! beside the state.
//!
//! ```text
//!  log.redb
//!   log            index (u64)       StoredEntry
//!   log_meta       "vote"            StoredVote
//!                  "last_purged"     StoredLogId
//!                  "format"          LOG_FORMAT, little-endian u32 (absent: format 1)
//!  state.redb
//!   meta           "raft"            StoredRaftRecord
//!  snapshots/current                 StoredCurrentSnapshot
//! ```
//!
//! openraft's log ids, votes, memberships and entries are mirrored here by node types
//! of the same shape, so what is on disk does not follow openraft's serde: a new
//! openraft changes the conversions in this file, never the files. An entry's payload
//! is a [`WriteBatch`], whose format [`crate::command`] lays out. Every record is
//! bincode.
//!
//! [`LOG_FORMAT`] versions the log file, and is checked when it is opened
//! ([`upgrade`]). The record in the state file and the `current` file of the snapshot
//! directory (the point of the last snapshot) are versioned with the state file:
//! a change to them is a new [`STATE_FORMAT`](crate::storage::format::STATE_FORMAT),
//! whose upgrade of these records belongs to this layer (the storage layer holds
//! them as opaque bytes) and runs where the state machine opens.
//!
//! # Changing the format
//!
//! bincode encodes fields and variants by position: never reorder, remove or retype
//! one. A new enum variant goes at the end; any other change bumps the version of the
//! file it lives in, adds the step that brings the files of the previous version up,
//! and ships a new sample under `node/tests/samples/` beside the old ones, whose test
//! keeps passing.
//!
//! History of [`LOG_FORMAT`]: 1, the first (files written before the mark was stored
//! are format 1).

use std::collections::{BTreeMap, BTreeSet};

use openraft::storage::SnapshotMeta;
use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LeaderId, LogId, Vote};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{NodeId, TypeConfig};
use crate::command::WriteBatch;
use crate::storage::format::Record;
use crate::storage::{corrupt, StorageError};

/// The format of the log file this node writes. A newer one is refused when opened.
pub const LOG_FORMAT: u32 = 1;

/// index -> [`StoredEntry`].
pub const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// The vote, the last purged log id and the format, under the `META_*` keys.
pub const LOG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("log_meta");

/// [`LOG_META`] key of the [`StoredVote`].
pub const META_VOTE: &str = "vote";
/// [`LOG_META`] key of the last purged [`StoredLogId`].
pub const META_LAST_PURGED: &str = "last_purged";
/// [`LOG_META`] key of the file's format, a little-endian u32 (absent: format 1).
pub const META_FORMAT: &str = "format";

/// A log id: the term and node of the leader that proposed the entry, and its index.
///
/// A persisted format: see [changing the format](self#changing-the-format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLogId {
    /// The leader's term.
    pub term: u64,
    /// The leader's node id.
    pub node_id: NodeId,
    /// The entry's index.
    pub index: u64,
}

impl Record for StoredLogId {
    const TABLE: &'static str = "log_meta";
}

impl From<LogId<NodeId>> for StoredLogId {
    fn from(id: LogId<NodeId>) -> Self {
        StoredLogId {
            term: id.leader_id.term,
            node_id: id.leader_id.node_id,
            index: id.index,
        }
    }
}

impl From<StoredLogId> for LogId<NodeId> {
    fn from(id: StoredLogId) -> Self {
        LogId::new(CommittedLeaderId::new(id.term, id.node_id), id.index)
    }
}

/// A vote: the term, the node voted for, and whether a quorum granted it.
///
/// A persisted format: see [changing the format](self#changing-the-format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVote {
    /// The term.
    pub term: u64,
    /// The node voted for.
    pub node_id: NodeId,
    /// Granted by a quorum.
    pub committed: bool,
}

impl Record for StoredVote {
    const TABLE: &'static str = "log_meta";
}

impl From<&Vote<NodeId>> for StoredVote {
    fn from(v: &Vote<NodeId>) -> Self {
        StoredVote {
            term: v.leader_id.term,
            node_id: v.leader_id.node_id,
            committed: v.committed,
        }
    }
}

impl From<StoredVote> for Vote<NodeId> {
    fn from(v: StoredVote) -> Self {
        Vote {
            leader_id: LeaderId::new(v.term, v.node_id),
            committed: v.committed,
        }
    }
}

/// A member's address.
///
/// A persisted format: see [changing the format](self#changing-the-format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredNode {
    /// Where its Raft service listens.
    pub addr: String,
}

/// A group's membership: its voter sets (two during a joint change) and every
/// member's address (a member in no voter set is a learner).
///
/// A persisted format: see [changing the format](self#changing-the-format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMembership {
    /// The voter sets.
    pub configs: Vec<BTreeSet<NodeId>>,
    /// Every member.
    pub nodes: BTreeMap<NodeId, StoredNode>,
}

impl From<&openraft::Membership<NodeId, BasicNode>> for StoredMembership {
    fn from(m: &openraft::Membership<NodeId, BasicNode>) -> Self {
        StoredMembership {
            configs: m.get_joint_config().clone(),
            nodes: m
                .nodes()
                .map(|(id, n)| {
                    let addr = n.addr.clone();
                    (*id, StoredNode { addr })
                })
                .collect(),
        }
    }
}

impl From<StoredMembership> for openraft::Membership<NodeId, BasicNode> {
    /// openraft fills in a default address for a voter without one; a membership
    /// openraft wrote always has them all, so this gives back what was stored.
    fn from(m: StoredMembership) -> Self {
        let nodes: BTreeMap<NodeId, BasicNode> = m
            .nodes
            .into_iter()
            .map(|(id, n)| (id, BasicNode { addr: n.addr }))
            .collect();
        openraft::Membership::new(m.configs, nodes)
    }
}

/// A membership with the log id of the entry that set it (`None` before any).
///
/// A persisted format: see [changing the format](self#changing-the-format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMembershipAt {
    /// The entry that set it.
    pub log_id: Option<StoredLogId>,
    /// The membership.
    pub membership: StoredMembership,
}

impl From<&openraft::StoredMembership<NodeId, BasicNode>> for StoredMembershipAt {
    fn from(m: &openraft::StoredMembership<NodeId, BasicNode>) -> Self {
        StoredMembershipAt {
            log_id: m.log_id().map(StoredLogId::from),
            membership: m.membership().into(),
        }
    }
}

impl From<StoredMembershipAt> for openraft::StoredMembership<NodeId, BasicNode> {
    fn from(m: StoredMembershipAt) -> Self {
        openraft::StoredMembership::new(m.log_id.map(LogId::from), m.membership.into())
    }
}

/// A log entry as the [`LOG`] table stores it.
///
/// A persisted format: see [changing the format](self#changing-the-format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEntry {
    /// Its log id.
    pub log_id: StoredLogId,
    /// What it carries.
    pub payload: StoredPayload,
}

/// What an entry carries.
///
/// A persisted format: see [changing the format](self#changing-the-format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredPayload {
    /// Nothing: a new leader's first entry.
    Blank,
    /// Writes.
    Normal(WriteBatch),
    /// A membership change.
    Membership(StoredMembership),
}

impl Record for StoredEntry {
    const TABLE: &'static str = "log";
}

impl From<StoredEntry> for Entry<TypeConfig> {
    fn from(e: StoredEntry) -> Self {
        Entry {
            log_id: e.log_id.into(),
            payload: match e.payload {
                StoredPayload::Blank => EntryPayload::Blank,
                StoredPayload::Normal(batch) => EntryPayload::Normal(batch),
                StoredPayload::Membership(m) => EntryPayload::Membership(m.into()),
            },
        }
    }
}

/// [`StoredEntry`] borrowing its batch, to encode an entry without copying it.
#[derive(Serialize)]
struct StoredEntryRef<'a> {
    log_id: StoredLogId,
    payload: StoredPayloadRef<'a>,
}

/// [`StoredPayload`] borrowing its batch: the same variants in the same order.
#[derive(Serialize)]
enum StoredPayloadRef<'a> {
    Blank,
    Normal(&'a WriteBatch),
    Membership(StoredMembership),
}

/// An entry's bytes in the [`LOG`] table.
pub fn encode_entry(e: &Entry<TypeConfig>) -> Vec<u8> {
    let stored = StoredEntryRef {
        log_id: e.log_id.into(),
        payload: match &e.payload {
            EntryPayload::Blank => StoredPayloadRef::Blank,
            EntryPayload::Normal(batch) => StoredPayloadRef::Normal(batch),
            EntryPayload::Membership(m) => StoredPayloadRef::Membership(m.into()),
        },
    };
    // Serializing plain in-memory structs into a Vec cannot fail.
    bincode::serialize(&stored).expect("bincode serialization of an in-memory value")
}

/// Decodes an entry of the [`LOG`] table.
pub fn decode_entry(b: &[u8]) -> Result<Entry<TypeConfig>, StorageError> {
    StoredEntry::decode(b).map(Entry::from)
}

/// What the Raft layer keeps in the state file beside the data, in the same
/// transaction: the last log id applied and the membership applied.
///
/// A persisted format: see [changing the format](self#changing-the-format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRaftRecord {
    /// The last log id applied.
    pub last_applied: Option<StoredLogId>,
    /// The last membership applied.
    pub membership: StoredMembershipAt,
}

impl Record for StoredRaftRecord {
    const TABLE: &'static str = "meta";
}

/// What a snapshot holds: up to which entry, and the membership at that point.
///
/// A persisted format: see [changing the format](self#changing-the-format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSnapshotMeta {
    /// The last entry the snapshot reflects.
    pub last_log_id: Option<StoredLogId>,
    /// The membership applied at that point.
    pub last_membership: StoredMembershipAt,
    /// The snapshot's id.
    pub snapshot_id: String,
}

impl From<&SnapshotMeta<NodeId, BasicNode>> for StoredSnapshotMeta {
    fn from(m: &SnapshotMeta<NodeId, BasicNode>) -> Self {
        StoredSnapshotMeta {
            last_log_id: m.last_log_id.map(StoredLogId::from),
            last_membership: (&m.last_membership).into(),
            snapshot_id: m.snapshot_id.clone(),
        }
    }
}

impl From<StoredSnapshotMeta> for SnapshotMeta<NodeId, BasicNode> {
    fn from(m: StoredSnapshotMeta) -> Self {
        SnapshotMeta {
            last_log_id: m.last_log_id.map(LogId::from),
            last_membership: m.last_membership.into(),
            snapshot_id: m.snapshot_id,
        }
    }
}

/// The `snapshots/current` file: the current snapshot's meta, and the name of its
/// file in the same directory.
///
/// A persisted format: see [changing the format](self#changing-the-format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCurrentSnapshot {
    /// The snapshot's meta.
    pub meta: StoredSnapshotMeta,
    /// Empty: the state file itself holds the snapshot (and is durable up to its
    /// meta). Nodes before that kept a copy of the state beside it and named it here;
    /// such a copy is removed when the node opens.
    pub file: String,
}

impl Record for StoredCurrentSnapshot {
    const TABLE: &'static str = "snapshots/current";
}

/// Checks the format of the log file `txn` writes, marking a file that has no mark
/// yet (a new one, or one written before the mark) with [`LOG_FORMAT`]. Refuses a
/// newer format with [`StorageError::Format`].
pub fn upgrade(txn: &WriteTransaction) -> Result<(), StorageError> {
    let mut meta = txn.open_table(LOG_META)?;
    let found = match meta.get(META_FORMAT)? {
        Some(v) => {
            let b: [u8; 4] = v
                .value()
                .try_into()
                .map_err(|_| corrupt("log_meta", "the format is not 4 bytes"))?;
            Some(u32::from_le_bytes(b))
        }
        None => None,
    };
    match found {
        Some(LOG_FORMAT) => Ok(()),
        Some(format) if format > LOG_FORMAT => Err(StorageError::Format {
            file: "Raft log file",
            found: format,
            supported: LOG_FORMAT,
        }),
        // Format 1 is the first: there is nothing older to upgrade from.
        Some(format) => Err(corrupt("log_meta", format!("unknown log format {format}"))),
        None => {
            meta.insert(META_FORMAT, LOG_FORMAT.to_le_bytes().as_slice())?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::SnapshotMeta;

    use super::*;
    use crate::command::{Command, ContentType, ExpectedVersion, ProposedEvent};

    fn log_id(term: u64, node: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    fn membership() -> openraft::Membership<NodeId, BasicNode> {
        openraft::Membership::new(
            vec![BTreeSet::from([1, 2]), BTreeSet::from([2, 3])],
            BTreeMap::from([
                (1, BasicNode::new("a:1")),
                (2, BasicNode::new("b:2")),
                (3, BasicNode::new("c:3")),
                (4, BasicNode::new("learner:4")),
            ]),
        )
    }

    fn entries() -> Vec<Entry<TypeConfig>> {
        let batch = WriteBatch {
            timestamp_us: 5,
            commands: vec![Command::Append {
                stream_id: "s".into(),
                expected: ExpectedVersion::Exact(3),
                events: vec![ProposedEvent {
                    event_id: uuid::Uuid::from_u128(77),
                    event_type: "t".into(),
                    data: vec![1, 2],
                    metadata: Vec::new(),
                    content_type: ContentType::Binary,
                    tags: vec!["x".into()],
                }],
            }],
        };
        vec![
            Entry {
                log_id: log_id(1, 2, 3),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(4, 5, 6),
                payload: EntryPayload::Normal(batch),
            },
            Entry {
                log_id: log_id(7, 8, 9),
                payload: EntryPayload::Membership(membership()),
            },
        ]
    }

    /// What openraft's serde made of `v`: what the log held before these types.
    fn openraft_bytes<T: Serialize>(v: &T) -> Vec<u8> {
        bincode::serialize(v).unwrap()
    }

    /// The node's types encode as openraft 0.9's serde did when it wrote the log
    /// (the samples under `node/tests/samples/` check the same on real files).
    #[test]
    fn records_encode_as_openraft_did() {
        for e in entries() {
            let bytes = encode_entry(&e);
            assert_eq!(bytes, openraft_bytes(&e), "{e:?}");
            let back = decode_entry(&bytes).unwrap();
            assert_eq!((back.log_id, back.payload), (e.log_id, e.payload));
        }
        for vote in [Vote::new(3, 4), Vote::new_committed(5, 6)] {
            let stored = StoredVote::from(&vote);
            assert_eq!(stored.encode(), openraft_bytes(&vote));
            assert_eq!(Vote::from(stored), vote);
        }
        let id = log_id(1, 2, 3);
        assert_eq!(StoredLogId::from(id).encode(), openraft_bytes(&id));
        let at = openraft::StoredMembership::new(Some(id), membership());
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(4, 5, 6)),
            last_membership: at.clone(),
            snapshot_id: "T4-N5-6-x".into(),
        };
        let stored = StoredSnapshotMeta::from(&meta);
        assert_eq!(bincode::serialize(&stored).unwrap(), openraft_bytes(&meta));
        assert_eq!(SnapshotMeta::from(stored), meta);
        let record = StoredRaftRecord {
            last_applied: Some(id.into()),
            membership: (&at).into(),
        };
        // The record was a struct of these two openraft values.
        assert_eq!(record.encode(), openraft_bytes(&(Some(id), at.clone())));
        let empty = openraft::StoredMembership::<NodeId, BasicNode>::default();
        let stored = StoredMembershipAt::from(&empty);
        assert_eq!(bincode::serialize(&stored).unwrap(), openraft_bytes(&empty));
        assert_eq!(openraft::StoredMembership::from(stored), empty);
    }

    #[test]
    fn a_log_file_of_a_newer_format_is_refused_and_an_unmarked_one_is_marked() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("log.redb")).unwrap();
        let format = |db: &redb::Database| {
            use redb::ReadableDatabase;
            let txn = db.begin_read().unwrap();
            let t = txn.open_table(LOG_META).unwrap();
            let v = t.get(META_FORMAT).unwrap();
            v.map(|v| v.value().to_vec())
        };
        let txn = db.begin_write().unwrap();
        upgrade(&txn).unwrap();
        txn.commit().unwrap();
        assert_eq!(format(&db), Some(LOG_FORMAT.to_le_bytes().to_vec()));
        let txn = db.begin_write().unwrap();
        txn.open_table(LOG_META)
            .unwrap()
            .insert(META_FORMAT, (LOG_FORMAT + 1).to_le_bytes().as_slice())
            .unwrap();
        let err = upgrade(&txn).unwrap_err();
        assert!(
            matches!(err, StorageError::Format { found, .. } if found == LOG_FORMAT + 1),
            "{err}"
        );
        assert!(err.to_string().contains("run a newer reckon-node"), "{err}");
    }
}
