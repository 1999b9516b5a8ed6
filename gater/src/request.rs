//! One request, one response: every store operation as a value.
//!
//! A [`StoreRequest`] is what a client asks of one store, through a gater
//! ([`Gater::call`](crate::api::Gater::call)) or straight to a node
//! ([`Worker::call`](crate::worker::Worker::call)); the answer is a [`StoreResponse`] or
//! a [`StoreError`](crate::types::StoreError). The gateway routes every request by
//! [`StoreRequest::route`], the node answers in one `match`, and the client library's
//! typed methods build requests and take their answers apart. Adding an operation is
//! one variant here, one arm in the node, one client method.
//!
//! Both enums cross the wire as bincode, which encodes a variant by its position: add
//! variants at the end, never reorder or remove one.

use serde::{Deserialize, Serialize};

use crate::access::Permission;
use crate::backup::BackupState;
use crate::page::EventPage;
use crate::subscription::{Delivery, SubscribeOptions, SubscriptionInfo};
use crate::types::{
    AppendResult, Direction, ExpectedVersion, NewEvent, ReadConsistency, ScavengeAction,
    ScavengeStatus, SnapshotRecord, StreamInfo, StreamPage, StreamRetention, SubscriptionType,
    TagMatch,
};

/// Where a request can be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Writes, linearizable reads, subscription delivery and membership: the leader
    /// when known (a follower would only forward or redirect it).
    Leader,
    /// Stale reads: any healthy replica, round-robin.
    AnyReplica,
}

impl Route {
    /// Where a read of this consistency goes.
    pub fn of_read(consistency: ReadConsistency) -> Route {
        match consistency {
            ReadConsistency::Linearizable => Route::Leader,
            ReadConsistency::Stale => Route::AnyReplica,
        }
    }
}

/// One operation on a store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StoreRequest {
    /// Appends `events` to `stream_id` atomically if the stream is at `expected`. A
    /// retry with the same event ids gets the first result and writes nothing; an id
    /// stored by another append is refused with `DuplicateEventId`.
    /// [`StoreResponse::Appended`].
    Append {
        /// The stream.
        stream_id: String,
        /// What the writer expects the stream to be at.
        expected: ExpectedVersion,
        /// The events, at least one.
        events: Vec<NewEvent>,
    },
    /// Up to `count` events of one stream from version `from`. [`StoreResponse::Events`].
    ReadStream {
        /// The stream.
        stream_id: String,
        /// The first version read.
        from: u64,
        /// Most events.
        count: u32,
        /// Forward (ascending) or backward.
        direction: Direction,
        /// Linearizable or stale.
        consistency: ReadConsistency,
    },
    /// Up to `count` events of the global log from `from_position`.
    /// [`StoreResponse::Events`].
    ReadAll {
        /// The first position read.
        from_position: u64,
        /// Most events.
        count: u32,
        /// Forward or backward.
        direction: Direction,
        /// Linearizable or stale.
        consistency: ReadConsistency,
    },
    /// Events whose type is one of `types` (every event when empty), ascending from
    /// `from_position`. [`StoreResponse::Events`].
    ReadByEventTypes {
        /// The types.
        types: Vec<String>,
        /// The first position read.
        from_position: u64,
        /// Most events.
        count: u32,
        /// Linearizable or stale.
        consistency: ReadConsistency,
    },
    /// Events carrying any or all of `tags`, ascending from `from_position`.
    /// [`StoreResponse::Events`].
    ReadByTags {
        /// The tags.
        tags: Vec<String>,
        /// Any of them, or all.
        matching: TagMatch,
        /// The first position read.
        from_position: u64,
        /// Most events.
        count: u32,
        /// Linearizable or stale.
        consistency: ReadConsistency,
    },
    /// The stream's version. [`StoreResponse::Version`] (`None`: no such stream).
    GetVersion {
        /// The stream.
        stream_id: String,
        /// Linearizable or stale.
        consistency: ReadConsistency,
    },
    /// Whether the stream exists (written and not deleted). [`StoreResponse::Exists`].
    Exists {
        /// The stream.
        stream_id: String,
        /// Linearizable or stale.
        consistency: ReadConsistency,
    },
    /// Up to `limit` live streams in id order after `after`. [`StoreResponse::Streams`].
    ListStreams {
        /// Where the page starts (exclusive).
        after: Option<String>,
        /// Most streams.
        limit: u32,
        /// Linearizable or stale.
        consistency: ReadConsistency,
    },
    /// Up to `limit` streams after `after` whose id contains `contains`, examining a
    /// bounded number of ids per call: continue from `resume_after` while it is set.
    /// [`StoreResponse::StreamPage`].
    FindStreams {
        /// What the ids contain.
        contains: String,
        /// Where the search starts (exclusive).
        after: Option<String>,
        /// Most streams.
        limit: u32,
        /// Linearizable or stale.
        consistency: ReadConsistency,
    },
    /// Deletes a stream (soft), or tombstones it for ever (`hard`), if it is at
    /// `expected` (checked atomically, as an append's). Versions are never reused:
    /// after a soft delete, reads find nothing and the next append continues after the
    /// last version. [`StoreResponse::Done`].
    DeleteStream {
        /// The stream.
        stream_id: String,
        /// Tombstone it.
        hard: bool,
        /// What the writer expects the stream to be at.
        expected: ExpectedVersion,
    },
    /// Saves a snapshot of a stream at `version`, overwriting one at the same version.
    /// [`StoreResponse::Done`].
    SnapshotSave {
        /// The stream.
        stream_id: String,
        /// The version the state reflects.
        version: u64,
        /// The state.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// Metadata.
        #[serde(with = "serde_bytes")]
        metadata: Vec<u8>,
    },
    /// The snapshot at `version`, or the highest when `None`.
    /// [`StoreResponse::Snapshot`].
    SnapshotLoad {
        /// The stream.
        stream_id: String,
        /// Which one.
        version: Option<u64>,
        /// Linearizable or stale.
        consistency: ReadConsistency,
    },
    /// Every snapshot of the stream by ascending version. [`StoreResponse::Snapshots`].
    SnapshotList {
        /// The stream.
        stream_id: String,
        /// Linearizable or stale.
        consistency: ReadConsistency,
    },
    /// Deletes the snapshot at `version`, or every snapshot of the stream when `None`.
    /// [`StoreResponse::Done`].
    SnapshotDelete {
        /// The stream.
        stream_id: String,
        /// Which one.
        version: Option<u64>,
    },
    /// Whether a snapshot exists at `version`, or any when `None`.
    /// [`StoreResponse::Exists`].
    SnapshotExists {
        /// The stream.
        stream_id: String,
        /// Which one.
        version: Option<u64>,
        /// Linearizable or stale.
        consistency: ReadConsistency,
    },
    /// Creates a subscription, or returns the one with the same kind, selector and
    /// name. [`StoreResponse::Subscription`].
    Subscribe {
        /// The kind of selector.
        kind: SubscriptionType,
        /// The selector.
        selector: String,
        /// Its name.
        name: String,
        /// Where delivery starts and how many consumers share it.
        options: SubscribeOptions,
    },
    /// Removes a subscription (`NotFound` for an unknown key). [`StoreResponse::Done`].
    Unsubscribe {
        /// Its key.
        key: String,
    },
    /// One subscription. [`StoreResponse::Subscription`].
    GetSubscription {
        /// Its key.
        key: String,
        /// Linearizable or stale.
        consistency: ReadConsistency,
    },
    /// Every subscription of the store. [`StoreResponse::Subscriptions`].
    ListSubscriptions {
        /// Linearizable or stale.
        consistency: ReadConsistency,
    },
    /// Acknowledges processing up to `position` (the checkpoint only moves forward).
    /// [`StoreResponse::Subscription`].
    Ack {
        /// The subscription's key.
        key: String,
        /// The consumer acknowledging.
        consumer: String,
        /// The last position processed.
        position: u64,
    },
    /// Long-polls for matching events from `from` (or the checkpoint), waiting up to
    /// `wait_ms` when there are none yet; served by the leader, where a pool's
    /// consumers meet. [`StoreResponse::Delivery`].
    Poll {
        /// The subscription's key.
        key: String,
        /// The consumer polling.
        consumer: String,
        /// Where to read from (`None`: the consumer's position or the checkpoint).
        from: Option<u64>,
        /// Most events.
        max: u32,
        /// Longest wait for events, in milliseconds.
        wait_ms: u32,
    },
    /// Removes a node from the store's Raft group (voter and learner); only the leader
    /// accepts. [`StoreResponse::Done`].
    RemoveNode {
        /// The node.
        node_id: u64,
    },
    /// Hands the leadership of the store's group to a voter; only the leader accepts,
    /// and answers once the target leads (or with an error, still leading, when the
    /// target did not take over in time). [`StoreResponse::Done`].
    TransferLeader {
        /// The voter to lead.
        node_id: u64,
    },
    /// The global log's length at time `at_us` (microseconds since the Unix epoch):
    /// every event before the answer was written at or before `at_us`, every event
    /// from it on after. [`StoreResponse::Position`].
    PositionAt {
        /// The time.
        at_us: u64,
        /// Linearizable or stale.
        consistency: ReadConsistency,
    },
    /// The version a stream had at time `at_us`: that of its last event written at or
    /// before it, of those reads still return (`None`: none).
    /// [`StoreResponse::Version`].
    VersionAt {
        /// The stream.
        stream_id: String,
        /// The time, microseconds since the Unix epoch.
        at_us: u64,
        /// Linearizable or stale.
        consistency: ReadConsistency,
    },
    /// Starts, stops or reports the store's scavenge. [`StoreResponse::Scavenge`].
    Scavenge {
        /// What to do.
        action: ScavengeAction,
    },
    /// Sets how long a stream keeps its events (replacing what was set).
    /// [`StoreResponse::Done`].
    SetRetention {
        /// The stream.
        stream_id: String,
        /// Its retention; every field `None`: for ever.
        retention: StreamRetention,
    },
    /// How long a stream keeps its events. [`StoreResponse::Retention`].
    GetRetention {
        /// The stream.
        stream_id: String,
        /// Linearizable or stale.
        consistency: ReadConsistency,
    },
    /// Starts an online backup of the store: the serving node confirms it leads
    /// (everything acknowledged before this request is in it), pins its state as of
    /// one applied entry and copies it into a backup file of its own while writes go
    /// on. [`StoreResponse::Backup`], with the backup's id; see [`crate::backup`].
    BackupBegin,
    /// How the backup `id` goes: copying, checksumming, or ready to be read.
    /// [`StoreResponse::Backup`].
    BackupStatus {
        /// The backup, as `BackupBegin` named it.
        id: String,
    },
    /// Up to `max_bytes` (at most [`BACKUP_CHUNK_BYTES_MAX`](crate::backup::BACKUP_CHUNK_BYTES_MAX))
    /// of the ready backup `id`'s file from `offset`; empty at its end.
    /// [`StoreResponse::BackupChunk`].
    BackupChunk {
        /// The backup.
        id: String,
        /// Where the chunk starts in the file.
        offset: u64,
        /// Most bytes wanted.
        max_bytes: u32,
    },
    /// Ends the backup `id`: the node removes its copy (`NotFound` when it is gone
    /// already). [`StoreResponse::Done`].
    BackupEnd {
        /// The backup.
        id: String,
    },
}

impl StoreRequest {
    /// Where this request can be served.
    pub fn route(&self) -> Route {
        use StoreRequest as R;
        match self {
            R::ReadStream { consistency, .. }
            | R::ReadAll { consistency, .. }
            | R::ReadByEventTypes { consistency, .. }
            | R::ReadByTags { consistency, .. }
            | R::GetVersion { consistency, .. }
            | R::Exists { consistency, .. }
            | R::ListStreams { consistency, .. }
            | R::FindStreams { consistency, .. }
            | R::SnapshotLoad { consistency, .. }
            | R::SnapshotList { consistency, .. }
            | R::SnapshotExists { consistency, .. }
            | R::GetSubscription { consistency, .. }
            | R::PositionAt { consistency, .. }
            | R::VersionAt { consistency, .. }
            | R::GetRetention { consistency, .. }
            | R::ListSubscriptions { consistency } => Route::of_read(*consistency),
            R::Append { .. }
            | R::DeleteStream { .. }
            | R::SnapshotSave { .. }
            | R::SnapshotDelete { .. }
            | R::Subscribe { .. }
            | R::Unsubscribe { .. }
            | R::Ack { .. }
            | R::Poll { .. }
            | R::RemoveNode { .. }
            | R::Scavenge { .. }
            | R::SetRetention { .. }
            | R::TransferLeader { .. } => Route::Leader,
            // The node that began a backup holds its copy: every call of it goes where
            // the first went, the leader (elsewhere it is not found, and the client
            // starts again).
            R::BackupBegin
            | R::BackupStatus { .. }
            | R::BackupChunk { .. }
            | R::BackupEnd { .. } => Route::Leader,
        }
    }

    /// The role the caller needs on the store: decided here for every operation, in
    /// one match without a wildcard, so that a new operation cannot be added without
    /// deciding who may call it (the table is in the README, "Security").
    pub fn permission(&self) -> Permission {
        use StoreRequest as R;
        match self {
            R::ReadStream { .. }
            | R::ReadAll { .. }
            | R::ReadByEventTypes { .. }
            | R::ReadByTags { .. }
            | R::GetVersion { .. }
            | R::Exists { .. }
            | R::ListStreams { .. }
            | R::FindStreams { .. }
            | R::SnapshotLoad { .. }
            | R::SnapshotList { .. }
            | R::SnapshotExists { .. }
            | R::GetSubscription { .. }
            | R::ListSubscriptions { .. }
            | R::PositionAt { .. }
            | R::VersionAt { .. }
            | R::GetRetention { .. }
            | R::Scavenge {
                action: ScavengeAction::Status,
            }
            // Consuming a subscription moves only the consumer's own checkpoint.
            | R::Ack { .. }
            | R::Poll { .. } => Permission::Read,
            R::Append { .. } | R::SnapshotSave { .. } | R::SnapshotDelete { .. } => {
                Permission::Write
            }
            R::DeleteStream { .. }
            | R::Subscribe { .. }
            | R::Unsubscribe { .. }
            | R::RemoveNode { .. }
            | R::Scavenge { .. }
            | R::SetRetention { .. }
            | R::TransferLeader { .. } => Permission::Admin,
            // A backup is every event, snapshot and subscription of the store at once.
            R::BackupBegin
            | R::BackupStatus { .. }
            | R::BackupChunk { .. }
            | R::BackupEnd { .. } => Permission::Admin,
        }
    }

    /// The operation's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        use StoreRequest as R;
        match self {
            R::Append { .. } => "append",
            R::ReadStream { .. } => "read_stream",
            R::ReadAll { .. } => "read_all",
            R::ReadByEventTypes { .. } => "read_by_event_types",
            R::ReadByTags { .. } => "read_by_tags",
            R::GetVersion { .. } => "get_version",
            R::Exists { .. } => "exists",
            R::ListStreams { .. } => "list_streams",
            R::FindStreams { .. } => "find_streams",
            R::DeleteStream { .. } => "delete_stream",
            R::SnapshotSave { .. } => "snapshot_save",
            R::SnapshotLoad { .. } => "snapshot_load",
            R::SnapshotList { .. } => "snapshot_list",
            R::SnapshotDelete { .. } => "snapshot_delete",
            R::SnapshotExists { .. } => "snapshot_exists",
            R::Subscribe { .. } => "subscribe",
            R::Unsubscribe { .. } => "unsubscribe",
            R::GetSubscription { .. } => "get_subscription",
            R::ListSubscriptions { .. } => "list_subscriptions",
            R::Ack { .. } => "ack",
            R::Poll { .. } => "poll",
            R::RemoveNode { .. } => "remove_node",
            R::TransferLeader { .. } => "transfer_leader",
            R::PositionAt { .. } => "position_at",
            R::VersionAt { .. } => "version_at",
            R::Scavenge { .. } => "scavenge",
            R::SetRetention { .. } => "set_retention",
            R::GetRetention { .. } => "get_retention",
            R::BackupBegin => "backup_begin",
            R::BackupStatus { .. } => "backup_status",
            R::BackupChunk { .. } => "backup_chunk",
            R::BackupEnd { .. } => "backup_end",
        }
    }
}

/// What a store answers a [`StoreRequest`] with; each request's doc names its variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StoreResponse {
    /// The request took effect; nothing to return.
    Done,
    /// Where an append's events stand.
    Appended(AppendResult),
    /// Events, in the order asked for, as they travel (a gater forwards them whole).
    Events(EventPage),
    /// A stream's version (`None`: no such stream).
    Version(Option<u64>),
    /// Whether the thing asked about exists.
    Exists(bool),
    /// Streams with their versions.
    Streams(Vec<StreamInfo>),
    /// A page of a stream search.
    StreamPage(StreamPage),
    /// One snapshot.
    Snapshot(SnapshotRecord),
    /// Snapshots by ascending version.
    Snapshots(Vec<SnapshotRecord>),
    /// One subscription as it stands.
    Subscription(SubscriptionInfo),
    /// Subscriptions by key.
    Subscriptions(Vec<SubscriptionInfo>),
    /// Events delivered to a consumer.
    Delivery(Delivery),
    /// A position in the global log.
    Position(u64),
    /// Where the store's scavenge stands.
    Scavenge(ScavengeStatus),
    /// How long a stream keeps its events.
    Retention(StreamRetention),
    /// Where a backup stands.
    Backup(BackupState),
    /// Bytes of a backup's file.
    BackupChunk(#[serde(with = "serde_bytes")] Vec<u8>),
}

impl StoreResponse {
    /// The variant's name, for the error a caller gives when it expected another.
    pub fn name(&self) -> &'static str {
        match self {
            StoreResponse::Done => "Done",
            StoreResponse::Appended(_) => "Appended",
            StoreResponse::Events(_) => "Events",
            StoreResponse::Version(_) => "Version",
            StoreResponse::Exists(_) => "Exists",
            StoreResponse::Streams(_) => "Streams",
            StoreResponse::StreamPage(_) => "StreamPage",
            StoreResponse::Snapshot(_) => "Snapshot",
            StoreResponse::Snapshots(_) => "Snapshots",
            StoreResponse::Subscription(_) => "Subscription",
            StoreResponse::Subscriptions(_) => "Subscriptions",
            StoreResponse::Delivery(_) => "Delivery",
            StoreResponse::Position(_) => "Position",
            StoreResponse::Scavenge(_) => "Scavenge",
            StoreResponse::Retention(_) => "Retention",
            StoreResponse::Backup(_) => "Backup",
            StoreResponse::BackupChunk(_) => "BackupChunk",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_go_to_the_leader_and_reads_where_their_consistency_says() {
        let append = StoreRequest::Append {
            stream_id: "s".into(),
            expected: ExpectedVersion::Any,
            events: Vec::new(),
        };
        assert_eq!(append.route(), Route::Leader);
        let read = |consistency| StoreRequest::ReadAll {
            from_position: 0,
            count: 1,
            direction: Direction::Forward,
            consistency,
        };
        assert_eq!(read(ReadConsistency::Linearizable).route(), Route::Leader);
        assert_eq!(read(ReadConsistency::Stale).route(), Route::AnyReplica);
        let poll = StoreRequest::Poll {
            key: "k".into(),
            consumer: "c".into(),
            from: None,
            max: 1,
            wait_ms: 0,
        };
        assert_eq!(
            poll.route(),
            Route::Leader,
            "a pool's consumers meet on the leader"
        );
    }

    #[test]
    fn each_request_needs_its_role() {
        let stream_id = || "s".to_string();
        let cases = [
            (
                StoreRequest::Append {
                    stream_id: stream_id(),
                    expected: ExpectedVersion::Any,
                    events: Vec::new(),
                },
                Permission::Write,
            ),
            (
                StoreRequest::ReadStream {
                    stream_id: stream_id(),
                    from: 0,
                    count: 1,
                    direction: Direction::Forward,
                    consistency: ReadConsistency::Stale,
                },
                Permission::Read,
            ),
            (
                StoreRequest::DeleteStream {
                    stream_id: stream_id(),
                    hard: false,
                    expected: ExpectedVersion::Any,
                },
                Permission::Admin,
            ),
            (
                StoreRequest::DeleteStream {
                    stream_id: stream_id(),
                    hard: true,
                    expected: ExpectedVersion::Exact(3),
                },
                Permission::Admin,
            ),
            (
                StoreRequest::SnapshotSave {
                    stream_id: stream_id(),
                    version: 0,
                    data: Vec::new(),
                    metadata: Vec::new(),
                },
                Permission::Write,
            ),
            (
                StoreRequest::SnapshotDelete {
                    stream_id: stream_id(),
                    version: None,
                },
                Permission::Write,
            ),
            (
                StoreRequest::Subscribe {
                    kind: SubscriptionType::Stream,
                    selector: "s".into(),
                    name: "n".into(),
                    options: SubscribeOptions::default(),
                },
                Permission::Admin,
            ),
            (
                StoreRequest::Unsubscribe { key: "k".into() },
                Permission::Admin,
            ),
            (
                StoreRequest::Poll {
                    key: "k".into(),
                    consumer: "c".into(),
                    from: None,
                    max: 1,
                    wait_ms: 0,
                },
                Permission::Read,
            ),
            (
                StoreRequest::Ack {
                    key: "k".into(),
                    consumer: "c".into(),
                    position: 0,
                },
                Permission::Read,
            ),
            (
                StoreRequest::ListSubscriptions {
                    consistency: ReadConsistency::Stale,
                },
                Permission::Read,
            ),
            (StoreRequest::RemoveNode { node_id: 2 }, Permission::Admin),
            (
                StoreRequest::TransferLeader { node_id: 2 },
                Permission::Admin,
            ),
            (
                StoreRequest::PositionAt {
                    at_us: 1,
                    consistency: ReadConsistency::Stale,
                },
                Permission::Read,
            ),
            (
                StoreRequest::VersionAt {
                    stream_id: stream_id(),
                    at_us: 1,
                    consistency: ReadConsistency::Stale,
                },
                Permission::Read,
            ),
            (
                StoreRequest::Scavenge {
                    action: ScavengeAction::Status,
                },
                Permission::Read,
            ),
            (
                StoreRequest::Scavenge {
                    action: ScavengeAction::Start,
                },
                Permission::Admin,
            ),
            (
                StoreRequest::Scavenge {
                    action: ScavengeAction::Stop,
                },
                Permission::Admin,
            ),
            (
                StoreRequest::SetRetention {
                    stream_id: stream_id(),
                    retention: StreamRetention::default(),
                },
                Permission::Admin,
            ),
            (
                StoreRequest::GetRetention {
                    stream_id: stream_id(),
                    consistency: ReadConsistency::Stale,
                },
                Permission::Read,
            ),
            (StoreRequest::BackupBegin, Permission::Admin),
            (
                StoreRequest::BackupChunk {
                    id: "b".into(),
                    offset: 0,
                    max_bytes: 1,
                },
                Permission::Admin,
            ),
        ];
        for (request, needs) in cases {
            assert_eq!(request.permission(), needs, "{}", request.name());
        }
    }
}
