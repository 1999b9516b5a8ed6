//! The state file's format: its tables, the records they hold, its version, and the
//! upgrade of files written by older nodes.
//!
//! ```text
//!  table          key                              value
//!  events         position (u64)                   StoredEvent
//!  streams        stream id                        StreamMeta (33 bytes)
//!  stream_index   stream_no << 64 | version        position, event id (24 bytes)
//!  event_ids      event id (big-endian u128)       position, stream_no, version (24 bytes)
//!  type_names     event type                       its number (u64)
//!  type_index     type_no << 64 | position         ()
//!  tag_names      tag                              its number (u64)
//!  tag_index      tag_no << 64 | position          ()
//!  snapshots      (stream id, version)             StoredSnapshot
//!  subscriptions  subscription key                 StoredSubscription
//!  meta           "counters"                       Counters
//!                 "raft"                           the Raft layer's record, opaque here
//!                 "format"                         STATE_FORMAT, little-endian u32
//! ```
//!
//! The fixed-width keys and values are laid out in [`super::keys`] and here
//! ([`id_place_value`]); the records are bincode. A Raft snapshot is a copy of this
//! file, so it has the same format and is upgraded the same way when installed. The
//! Raft layer's record under `"raft"` is laid out by `crate::raft::format`, and is
//! part of this format too: a change to it is a new [`STATE_FORMAT`].
//!
//! # Changing the format
//!
//! Every type here is a persisted format, and so are the ones it holds
//! ([`ContentType`], [`SubscriptionType`], [`StartFrom`] from [`crate::command`]).
//! bincode encodes fields and variants by position: never reorder, remove or retype
//! one. A new enum variant goes at the end; any other change (a new field, table or
//! key layout) bumps [`STATE_FORMAT`], adds the step to `upgrade` that brings the
//! files of the previous format up, and ships a new sample of the files under
//! `node/tests/samples/` beside the old ones, whose test keeps passing.
//!
//! History: 1, the first; 2 adds the `event_ids` table (built from `events` when a
//! file of format 1 is opened) and the `"format"` mark (absent: format 1); 3 adds the
//! `deleted` flag to [`StreamMeta`] (a soft delete that keeps the stream's numbering),
//! the `retention` table and the `"scavenge"` record (a file of format 2 holds none
//! of them, so its upgrade is the mark alone; the table is made when the file opens).

use std::collections::HashMap;

use reckon_gater::subscription::SubscriptionInfo;
use reckon_gater::types::EventRecord;
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::keys::StreamMeta;
use super::{corrupt, StorageError};
use crate::command::{ContentType, StartFrom, SubscriptionType};
use crate::domain::IdPlace;

/// The format this node writes. An older file is upgraded when opened (or installed
/// from a snapshot), a newer one refused.
pub const STATE_FORMAT: u32 = 3;

/// position -> [`StoredEvent`].
pub const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// stream id -> [`StreamMeta`].
pub const STREAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("streams");
/// pack(stream_no, version) -> [`index_value`](super::keys::index_value)(position,
/// event id).
pub const STREAM_INDEX: TableDefinition<u128, [u8; 24]> = TableDefinition::new("stream_index");
/// event id (as a big-endian u128, so that time-ordered ids append at the end) ->
/// [`id_place_value`]: where every event id of the store stands.
pub const EVENT_IDS: TableDefinition<u128, [u8; 24]> = TableDefinition::new("event_ids");
/// event type -> its number.
pub const TYPE_NAMES: TableDefinition<&str, u64> = TableDefinition::new("type_names");
/// pack(type_no, position).
pub const TYPE_INDEX: TableDefinition<u128, ()> = TableDefinition::new("type_index");
/// tag -> its number (types and tags share the number space).
pub const TAG_NAMES: TableDefinition<&str, u64> = TableDefinition::new("tag_names");
/// pack(tag_no, position).
pub const TAG_INDEX: TableDefinition<u128, ()> = TableDefinition::new("tag_index");
/// (stream id, version) -> [`StoredSnapshot`].
pub const SNAPSHOTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("snapshots");
/// subscription key -> [`StoredSubscription`].
pub const SUBSCRIPTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("subscriptions");
/// Bookkeeping under the `META_*` keys.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// stream id -> [`StoredRetention`] (absent: the stream keeps every event).
pub const RETENTION: TableDefinition<&str, &[u8]> = TableDefinition::new("retention");

/// [`META`] key of the [`Counters`].
pub const META_COUNTERS: &str = "counters";
/// [`META`] key of the Raft layer's record (bytes the Raft layer lays out).
pub const META_RAFT: &str = "raft";
/// [`META`] key of the file's format, a little-endian u32 (absent: format 1).
pub const META_FORMAT: &str = "format";
/// [`META`] key of the [`StoredScavenge`] (absent: never scavenged).
pub const META_SCAVENGE: &str = "scavenge";

/// Calls `$f!(table)` for every table of the state, in one fixed order.
macro_rules! each_table {
    ($f:ident) => {{
        use $crate::storage::format as f;
        $f!(f::EVENTS);
        $f!(f::STREAMS);
        $f!(f::STREAM_INDEX);
        $f!(f::EVENT_IDS);
        $f!(f::TYPE_NAMES);
        $f!(f::TYPE_INDEX);
        $f!(f::TAG_NAMES);
        $f!(f::TAG_INDEX);
        $f!(f::SNAPSHOTS);
        $f!(f::SUBSCRIPTIONS);
        $f!(f::META);
        $f!(f::RETENTION);
    }};
}
pub(super) use each_table;

/// A record stored bincode-encoded: the one place where state records become bytes.
pub trait Record: Serialize + DeserializeOwned {
    /// Where it is stored, for the error when it does not decode.
    const TABLE: &'static str;

    /// The record's bytes.
    fn encode(&self) -> Vec<u8> {
        // Serializing plain in-memory structs into a Vec cannot fail.
        bincode::serialize(self).expect("bincode serialization of an in-memory value")
    }

    /// Decodes a stored record; [`StorageError::Corrupt`] when the bytes are not one.
    fn decode(b: &[u8]) -> Result<Self, StorageError> {
        bincode::deserialize(b).map_err(|e| corrupt(Self::TABLE, e))
    }
}

/// An event as the [`EVENTS`] table stores it; read back as the contract's
/// [`EventRecord`], field for field.
///
/// Its bytes are also the wire's: a read puts them in an
/// [`EventPage`](reckon_gater::EventPage) as they lie, and the client decodes them
/// as an [`EventRecord`] (a test here checks that both encode alike). A format that
/// changes this record must turn old and new records into the wire's bytes on read.
///
/// A persisted format: see [changing the format](self#changing-the-format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The stream the event belongs to.
    pub stream_id: String,
    /// Its version within the stream.
    pub version: u64,
    /// Its position in the store's global log.
    pub position: u64,
    /// The event's id.
    pub event_id: Uuid,
    /// Its type.
    pub event_type: String,
    /// The payload.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// Metadata bytes.
    #[serde(with = "serde_bytes")]
    pub metadata: Vec<u8>,
    /// What `data` holds.
    pub content_type: ContentType,
    /// Tags.
    pub tags: Vec<String>,
    /// Microseconds since the Unix epoch, assigned by the leader per batch.
    pub timestamp_us: u64,
}

impl Record for StoredEvent {
    const TABLE: &'static str = "events";
}

impl From<StoredEvent> for EventRecord {
    fn from(e: StoredEvent) -> Self {
        EventRecord {
            stream_id: e.stream_id,
            version: e.version,
            position: e.position,
            event_id: e.event_id,
            event_type: e.event_type,
            data: e.data,
            metadata: e.metadata,
            content_type: e.content_type.into(),
            tags: e.tags,
            timestamp_us: e.timestamp_us,
        }
    }
}

/// A subscription as the [`SUBSCRIPTIONS`] table stores it.
///
/// A persisted format: see [changing the format](self#changing-the-format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSubscription {
    /// Its key.
    pub key: String,
    /// The kind of selector.
    pub kind: SubscriptionType,
    /// The selector.
    pub selector: String,
    /// Its name.
    pub name: String,
    /// Where it started.
    pub start_from: StartFrom,
    /// Consumers that may share it.
    pub pool_size: u32,
    /// The first position not yet acknowledged.
    pub cursor: u64,
    /// Microseconds since the Unix epoch when it was created.
    pub created_us: u64,
    /// Always 0. Format 2 stored the contract's whole record, whose last three fields
    /// are filled in when it is read, not stored: they stay, as zeros, so that the
    /// bytes stay those of format 2.
    pub unused_head: u64,
    /// Always 0: see `unused_head`.
    pub unused_consumers: u32,
    /// Always 0: see `unused_head`.
    pub unused_delivered: u64,
}

impl Record for StoredSubscription {
    const TABLE: &'static str = "subscriptions";
}

impl StoredSubscription {
    /// The contract's record of it, with `head` (the store's next position) filled in
    /// and no consumers or deliveries counted.
    pub fn info(self, head: u64) -> SubscriptionInfo {
        SubscriptionInfo {
            key: self.key,
            kind: self.kind.into(),
            selector: self.selector,
            name: self.name,
            start_from: self.start_from.into(),
            pool_size: self.pool_size,
            cursor: self.cursor,
            created_us: self.created_us,
            head,
            consumers: 0,
            delivered: 0,
        }
    }
}

/// A stream snapshot as the [`SNAPSHOTS`] table stores it (the stream and version
/// are its key).
///
/// A persisted format: see [changing the format](self#changing-the-format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSnapshot {
    /// The state.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// Metadata.
    #[serde(with = "serde_bytes")]
    pub metadata: Vec<u8>,
    /// Microseconds since the Unix epoch when it was saved.
    pub timestamp_us: u64,
}

impl Record for StoredSnapshot {
    const TABLE: &'static str = "snapshots";
}

/// The store's monotonic counters, under [`META_COUNTERS`], kept in the same
/// transaction as the data.
///
/// A persisted format: see [changing the format](self#changing-the-format).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// The next global position to assign.
    pub next_position: u64,
    /// The next stream number.
    pub next_stream_no: u64,
    /// The next type or tag number.
    pub next_name_no: u64,
}

impl Record for Counters {
    const TABLE: &'static str = "meta";
}

/// How long a stream keeps its events: reads of the stream no longer return one
/// that is older than `max_age_us` (by its timestamp), not among the last
/// `max_count`, or below version `truncate_before`; a scavenge removes them. Nothing
/// is renumbered. A persisted format: see [changing the format](self#changing-the-format).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRetention {
    /// Most age, in microseconds.
    pub max_age_us: Option<u64>,
    /// Most events kept: the last ones.
    pub max_count: Option<u64>,
    /// Versions below this one are gone.
    pub truncate_before: Option<u64>,
}

impl Record for StoredRetention {
    const TABLE: &'static str = "retention";
}

/// Where a scavenge stands. A persisted format: see
/// [changing the format](self#changing-the-format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScavengePhase {
    /// Steps go on from `next`.
    Running,
    /// Stopped by an operator at `next`; a start resumes it.
    Stopped,
    /// Every position before `end` was looked at.
    Done,
}

/// The store's scavenge, under [`META_SCAVENGE`]: the job that removes the events no
/// read can return any more (those of deleted and tombstoned streams) from the
/// events and every index, a step of positions at a time, the same on every
/// replica. A persisted format: see [changing the format](self#changing-the-format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredScavenge {
    /// How many scavenges were started on the store (this one's number).
    pub generation: u64,
    /// Where it stands.
    pub phase: ScavengePhase,
    /// It looks at the positions before this one (the log's end when it started or
    /// resumed).
    pub end: u64,
    /// The next position to look at.
    pub next: u64,
    /// Events it removed.
    pub removed_events: u64,
    /// Bytes of the event records it removed.
    pub removed_bytes: u64,
    /// When it started, microseconds since the Unix epoch.
    pub started_us: u64,
    /// When it was done.
    pub finished_us: Option<u64>,
}

impl Record for StoredScavenge {
    const TABLE: &'static str = "meta";
}

/// An [`EVENT_IDS`] value: the event's position, stream number and version, each a
/// big-endian u64.
pub fn id_place_value(position: u64, stream_no: u64, version: u64) -> [u8; 24] {
    let mut v = [0u8; 24];
    v[..8].copy_from_slice(&position.to_be_bytes());
    v[8..16].copy_from_slice(&stream_no.to_be_bytes());
    v[16..].copy_from_slice(&version.to_be_bytes());
    v
}

/// Splits an [`EVENT_IDS`] value.
pub fn id_place(v: [u8; 24]) -> IdPlace {
    let u = |r: std::ops::Range<usize>| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&v[r]);
        u64::from_be_bytes(a)
    };
    IdPlace {
        position: u(0..8),
        stream_no: u(8..16),
        version: u(16..24),
    }
}

/// Brings the state `txn` writes to [`STATE_FORMAT`]: from format 1, builds the event
/// id index from the events; from format 2, only the mark changes. Refuses a format
/// newer than this node knows.
pub(super) fn upgrade(txn: &WriteTransaction) -> Result<(), StorageError> {
    let mut meta = txn.open_table(META)?;
    let format = match meta.get(META_FORMAT)? {
        Some(v) => {
            let b: [u8; 4] = v
                .value()
                .try_into()
                .map_err(|_| corrupt("meta", "the format is not 4 bytes"))?;
            u32::from_le_bytes(b)
        }
        None => 1,
    };
    if format == STATE_FORMAT {
        return Ok(());
    }
    if format > STATE_FORMAT {
        return Err(StorageError::Format {
            file: "state file",
            found: format,
            supported: STATE_FORMAT,
        });
    }
    let indexed = if format < 2 { build_event_ids(txn)? } else { 0 };
    meta.insert(META_FORMAT, STATE_FORMAT.to_le_bytes().as_slice())?;
    // A new file has no mark either: it is no upgrade worth a line.
    if indexed > 0 || format >= 2 {
        tracing::info!(target: "reckon_db", from = format, to = STATE_FORMAT, events_indexed = indexed, "state file upgraded");
    }
    Ok(())
}

/// The upgrade from format 1: the event id index, from the events; gives how many.
fn build_event_ids(txn: &WriteTransaction) -> Result<u64, StorageError> {
    let events = txn.open_table(EVENTS)?;
    let streams = txn.open_table(STREAMS)?;
    let mut ids = txn.open_table(EVENT_IDS)?;
    let mut numbers: HashMap<String, u64> = HashMap::new();
    let mut indexed = 0u64;
    for row in events.iter()? {
        let (k, v) = row?;
        let e = StoredEvent::decode(v.value())?;
        let number = match numbers.get(&e.stream_id) {
            Some(n) => *n,
            None => {
                let m = streams
                    .get(e.stream_id.as_str())?
                    .and_then(|m| StreamMeta::decode(m.value()))
                    .ok_or_else(|| corrupt("streams", &e.stream_id))?;
                numbers.insert(e.stream_id.clone(), m.number);
                m.number
            }
        };
        ids.insert(
            e.event_id.as_u128(),
            id_place_value(k.value(), number, e.version),
        )?;
        indexed += 1;
    }
    Ok(indexed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_place_values_round_trip() {
        let p = id_place(id_place_value(7, 3, u64::MAX));
        assert_eq!((p.position, p.stream_no, p.version), (7, 3, u64::MAX));
    }

    /// The records' bytes are those the contract's types had in format 2 (the samples
    /// under `node/tests/samples/` check the same on real files).
    #[test]
    fn records_encode_as_the_contract_types_did() {
        use reckon_gater::subscription::StartFrom as WireStart;
        use reckon_gater::types::{ContentType as WireContent, SubscriptionType as WireKind};
        for content_type in [WireContent::Json, WireContent::Binary] {
            let wire = EventRecord {
                stream_id: "s".into(),
                version: 3,
                position: 9,
                event_id: Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
                event_type: "t".into(),
                data: vec![1, 2, 3],
                metadata: b"{}".to_vec(),
                content_type,
                tags: vec!["a".into(), "b".into()],
                timestamp_us: 42,
            };
            let stored = StoredEvent {
                stream_id: wire.stream_id.clone(),
                version: wire.version,
                position: wire.position,
                event_id: wire.event_id,
                event_type: wire.event_type.clone(),
                data: wire.data.clone(),
                metadata: wire.metadata.clone(),
                content_type: content_type.into(),
                tags: wire.tags.clone(),
                timestamp_us: wire.timestamp_us,
            };
            assert_eq!(stored.encode(), bincode::serialize(&wire).unwrap());
            // Reads hand stored bytes to clients as they are.
            let mut page = reckon_gater::EventPage::new();
            page.push_encoded(&stored.encode());
            assert_eq!(page.decode().unwrap(), vec![wire.clone()]);
            assert_eq!(EventRecord::from(stored), wire);
        }
        let starts = [WireStart::Beginning, WireStart::End, WireStart::Position(5)];
        for (kind, start_from) in WireKind::ALL.into_iter().zip(starts.into_iter().cycle()) {
            let stored = StoredSubscription {
                key: "k".into(),
                kind: kind.into(),
                selector: "sel".into(),
                name: "n".into(),
                start_from: start_from.into(),
                pool_size: 2,
                cursor: 7,
                created_us: 11,
                unused_head: 0,
                unused_consumers: 0,
                unused_delivered: 0,
            };
            let wire = stored.clone().info(0);
            assert_eq!((wire.kind, wire.start_from), (kind, start_from));
            assert_eq!(stored.encode(), bincode::serialize(&wire).unwrap());
        }
    }
}
