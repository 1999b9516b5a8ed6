//! The domain types as they travel on the wire.
//!
//! These are plain serde types with no behaviour beyond conversions and display:
//! validation lives in the node's domain module, which is the one place that
//! decides what is acceptable. Versions are 0-based within a stream; positions are
//! 0-based, gapless and unique within a store's global log.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The version a writer expects a stream to be at before its append.
///
/// The seed's integer spelling maps as: -1 = [`NoStream`](Self::NoStream),
/// -2 = [`Any`](Self::Any), -4 = [`StreamExists`](Self::StreamExists), and
/// n >= 0 = [`Exact`](Self::Exact)(n).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum ExpectedVersion {
    /// No check: append whatever the stream's state (it must not be tombstoned).
    #[default]
    Any,
    /// The stream must not exist (never written, or soft-deleted).
    NoStream,
    /// The stream must exist.
    StreamExists,
    /// The stream's current version must be exactly this.
    Exact(u64),
}

impl ExpectedVersion {
    /// The seed's integer for this expectation.
    pub fn as_i64(self) -> i64 {
        match self {
            ExpectedVersion::Any => -2,
            ExpectedVersion::NoStream => -1,
            ExpectedVersion::StreamExists => -4,
            ExpectedVersion::Exact(n) => i64::try_from(n).unwrap_or(i64::MAX),
        }
    }

    /// Maps the seed's integers; `None` for a negative number with no meaning (-3, -5, ...).
    pub fn from_i64(n: i64) -> Option<Self> {
        match n {
            -1 => Some(ExpectedVersion::NoStream),
            -2 => Some(ExpectedVersion::Any),
            -4 => Some(ExpectedVersion::StreamExists),
            n if n >= 0 => Some(ExpectedVersion::Exact(n as u64)),
            _ => None,
        }
    }
}

impl std::str::FromStr for ExpectedVersion {
    type Err = String;

    /// Accepts `any`, `no-stream`, `stream-exists`, a version `N`, or the seed's -1, -2, -4.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "any" => Ok(ExpectedVersion::Any),
            "no-stream" | "no_stream" | "nostream" => Ok(ExpectedVersion::NoStream),
            "stream-exists" | "stream_exists" | "streamexists" => Ok(ExpectedVersion::StreamExists),
            other => other
                .parse::<i64>()
                .ok()
                .and_then(ExpectedVersion::from_i64)
                .ok_or_else(|| {
                    format!(
                        "expected version {s:?} is not one of any, no-stream, stream-exists, \
                         a version N >= 0, or -1, -2, -4"
                    )
                }),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_i64())
    }
}

/// What the bytes of an event's data or metadata are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum ContentType {
    /// UTF-8 JSON (the default).
    #[default]
    Json,
    /// Opaque bytes.
    Binary,
}

/// An event as a client proposes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The event's id; the node assigns a UUIDv7 when absent. Retrying an append with
    /// the same ids is idempotent.
    pub event_id: Option<Uuid>,
    /// 1..=256 bytes of UTF-8.
    pub event_type: String,
    /// The payload.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// Metadata bytes (may be empty).
    #[serde(with = "serde_bytes")]
    pub metadata: Vec<u8>,
    /// What `data` holds.
    pub content_type: ContentType,
    /// Tags for tag queries and subscriptions.
    pub tags: Vec<String>,
}

impl NewEvent {
    /// A JSON event with no metadata and no tags.
    pub fn json(event_type: impl Into<String>, data: &serde_json::Value) -> Self {
        NewEvent {
            event_id: None,
            event_type: event_type.into(),
            data: serde_json::to_vec(data).unwrap_or_default(),
            metadata: Vec::new(),
            content_type: ContentType::Json,
            tags: Vec::new(),
        }
    }

    /// Sets the event id (for idempotent retries).
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.event_id = Some(id);
        self
    }

    /// Adds tags.
    pub fn with_tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Sets JSON metadata.
    pub fn with_metadata(mut self, metadata: &serde_json::Value) -> Self {
        self.metadata = serde_json::to_vec(metadata).unwrap_or_default();
        self
    }
}

/// An event as stored and read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The stream the event belongs to.
    pub stream_id: String,
    /// 0-based version within the stream.
    pub version: u64,
    /// 0-based, gapless position in the store's global log.
    pub position: u64,
    /// The event's id.
    pub event_id: Uuid,
    /// The event's type.
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
    /// Microseconds since the Unix epoch, assigned once per append batch by the leader.
    pub timestamp_us: u64,
}

/// What a successful append reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    /// The stream's version after the append (the last event's version).
    pub version: u64,
    /// Global position of the first event of the batch.
    pub first_position: u64,
    /// Global position of the last event of the batch.
    pub last_position: u64,
}

/// Read direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Direction {
    /// Ascending versions or positions.
    #[default]
    Forward,
    /// Descending versions or positions.
    Backward,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum ReadConsistency {
    /// Linearizable: the read sees every append acknowledged before it started
    /// (confirmed through the leader's read index).
    #[default]
    Linearizable,
    /// Whatever the serving node has applied; may lag the leader.
    Stale,
}

/// How a tag query combines several tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum TagMatch {
    /// Events carrying at least one of the tags.
    #[default]
    Any,
    /// Events carrying every tag.
    All,
}

impl std::str::FromStr for TagMatch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "any" => Ok(TagMatch::Any),
            "all" => Ok(TagMatch::All),
            other => Err(format!("tag match {other:?} is not any or all")),
        }
    }
}

/// A stream and its current version, as `list_streams` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// The stream's id.
    pub stream_id: String,
    /// Its current version.
    pub version: u64,
}

/// How long a stream keeps its events. Reads of the stream no longer return an event
/// older than `max_age_us` (by its timestamp), not among its last `max_count`, or
/// below version `truncate_before`; a scavenge then removes it from the store.
/// Nothing is renumbered: the stream's version and the events' positions stay.
/// Every field `None` (the default): every event, for ever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRetention {
    /// Most age, in microseconds.
    pub max_age_us: Option<u64>,
    /// Most events kept: the last ones.
    pub max_count: Option<u64>,
    /// Versions below this one are gone.
    pub truncate_before: Option<u64>,
}

/// What a scavenge request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScavengeAction {
    /// Start one over the log as it stands, or resume a stopped one; no effect while
    /// one runs.
    Start,
    /// Stop the running one where it stands.
    Stop,
    /// Only say where it stands.
    Status,
}

/// Where a store's scavenge stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScavengePhase {
    /// None was ever started.
    Never,
    /// It goes on, a step of positions at a time.
    Running,
    /// Stopped where it stood; a start resumes it.
    Stopped,
    /// Every position it was to look at was looked at.
    Done,
}

/// A store's scavenge: the job that removes the events no read can return any more
/// (those of deleted and tombstoned streams) from the events and every index, the
/// same on every replica, then gives the space back to the file system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScavengeStatus {
    /// Where it stands.
    pub phase: ScavengePhase,
    /// How many scavenges were started on the store (this one's number).
    pub generation: u64,
    /// It looks at the positions before this one.
    pub end: u64,
    /// The next position it looks at.
    pub next: u64,
    /// Events it removed.
    pub removed_events: u64,
    /// Bytes of the event records it removed.
    pub removed_bytes: u64,
    /// When it started, microseconds since the Unix epoch (0: never).
    pub started_us: u64,
    /// When it was done.
    pub finished_us: Option<u64>,
    /// The state file's length on the node that answered, in bytes.
    pub file_bytes: u64,
    /// Bytes of file the node that answered gave back to the file system since it
    /// started (by compacting after a scavenge).
    pub reclaimed_bytes: u64,
}

impl ScavengeStatus {
    /// How far it went, from 0 to 1.
    pub fn progress(&self) -> f64 {
        match self.phase {
            ScavengePhase::Never => 0.0,
            ScavengePhase::Done => 1.0,
            _ if self.end == 0 => 1.0,
            _ => self.next.min(self.end) as f64 / self.end as f64,
        }
    }
}

/// A page of streams found by a filter, and where to look further.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPage {
    /// The streams found, in id order.
    pub streams: Vec<StreamInfo>,
    /// Where the search stopped (a page was full, or its scan bound was reached):
    /// ask again with this as `after` for more. `None` when it reached the end.
    pub resume_after: Option<String>,
}

/// A stored snapshot of a stream's state at a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// The stream the snapshot belongs to.
    pub stream_id: String,
    /// The stream version the state reflects.
    pub version: u64,
    /// The state.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// Metadata bytes.
    #[serde(with = "serde_bytes")]
    pub metadata: Vec<u8>,
    /// Microseconds since the Unix epoch when it was saved.
    pub timestamp_us: u64,
}

/// A worker's role in its store's Raft group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Accepts writes.
    Leader,
    /// Replicates; forwards or refuses writes.
    Follower,
    /// Replicates without a vote.
    Learner,
    /// Campaigning, or not yet part of a group.
    Candidate,
}

impl Role {
    /// Lower-case name, as the CLI prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Learner => "learner",
            Role::Candidate => "candidate",
        }
    }
}

/// The errors a store operation can give, as they travel on the wire.
///
/// [`is_retryable`](Self::is_retryable) says whether trying again elsewhere or later can
/// change the answer; the gater returns every other error at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream was not at the expected version; nothing was written.
    #[error("WrongExpectedVersion: expected {expected}, current {}", current.map_or(-1, |c| c as i64))]
    WrongExpectedVersion {
        /// What the writer expected.
        expected: ExpectedVersion,
        /// The stream's version when the append was checked (`None`: no stream).
        current: Option<u64>,
    },
    /// The stream was never written or has been deleted.
    #[error("StreamNotFound: stream {stream_id:?} does not exist")]
    StreamNotFound {
        /// The stream asked for.
        stream_id: String,
    },
    /// The stream was hard-deleted; its id can never be written again.
    #[error("StreamDeleted: stream {stream_id:?} was hard-deleted and cannot be written")]
    StreamDeleted {
        /// The tombstoned stream.
        stream_id: String,
    },
    /// A snapshot, subscription or other named thing does not exist.
    #[error("NotFound: {what}")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// The request was malformed; nothing was written.
    #[error("InvalidInput: {field}: {reason}")]
    InvalidInput {
        /// The field at fault (`event_type`, `stream_id`, `events[2].data`, ...).
        field: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// This node is not the store's leader; retry on `leader` when known.
    #[error("NotLeader: leader is {}", leader.map_or_else(|| "unknown".to_string(), |l| format!("node {l} at {}", leader_addr.as_deref().unwrap_or("?"))))]
    NotLeader {
        /// The leader's node id, when known.
        leader: Option<u64>,
        /// The leader's RPC address, when known.
        leader_addr: Option<String>,
    },
    /// The store cannot serve now (no quorum, shutting down); try again later.
    #[error("Unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// No worker is registered for the store.
    #[error("NoWorkers: no worker serves store {store:?}")]
    NoWorkers {
        /// The store asked for.
        store: String,
    },
    /// This node does not host the store.
    #[error("UnknownStore: this node does not host store {store:?}")]
    UnknownStore {
        /// The store asked for.
        store: String,
    },
    /// The caller's deadline passed before an answer.
    #[error("Timeout: {what}")]
    Timeout {
        /// What timed out.
        what: String,
    },
    /// A fault inside the node (I/O, corruption); the node logs the detail.
    #[error("Internal: {message}")]
    Internal {
        /// What failed.
        message: String,
    },
    /// An event id of the append is stored already, and the append is not a retry of
    /// the one that stored it (a retry carries the same ids, in the same order, to
    /// the same stream). Event ids are unique within a store; nothing was written.
    #[error("DuplicateEventId: event id {event_id} is already stored in this store")]
    DuplicateEventId {
        /// The id found.
        event_id: Uuid,
    },
    /// The gater requires a token (or client certificate) and the connection has not
    /// presented one it accepts; nothing was done. Give `--token` (`RECKON_TOKEN`) or
    /// ask the gater's operator for a token.
    #[error("Unauthenticated: {reason}")]
    Unauthenticated {
        /// What was missing or not accepted (never the token itself).
        reason: String,
    },
    /// The principal lacks the role the operation needs on the store; nothing was done.
    #[error("PermissionDenied: {principal:?} may not {action} on store {store:?} (needs {needs})")]
    PermissionDenied {
        /// Who asked: the token's or certificate's name.
        principal: String,
        /// The store.
        store: String,
        /// The operation.
        action: String,
        /// The role it needs there (`read`, `write` or `admin`).
        needs: String,
    },
}

impl StoreError {
    /// Whether retrying (elsewhere or later) can change the answer.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::NotLeader { .. }
                | StoreError::Unavailable { .. }
                | StoreError::Timeout { .. }
                | StoreError::NoWorkers { .. }
        )
    }

    /// The short name of the error kind, as the CLI prints it and metrics count it.
    pub fn kind(&self) -> &'static str {
        Self::KINDS[self.kind_index()]
    }

    /// Every [`kind`](Self::kind), in a fixed order (metrics count errors by it).
    pub const KINDS: [&'static str; 14] = [
        "WrongExpectedVersion",
        "StreamNotFound",
        "StreamDeleted",
        "NotFound",
        "InvalidInput",
        "NotLeader",
        "Unavailable",
        "NoWorkers",
        "UnknownStore",
        "Timeout",
        "Internal",
        "DuplicateEventId",
        "Unauthenticated",
        "PermissionDenied",
    ];

    /// The position of this error's kind in [`KINDS`](Self::KINDS).
    pub fn kind_index(&self) -> usize {
        match self {
            StoreError::WrongExpectedVersion { .. } => 0,
            StoreError::StreamNotFound { .. } => 1,
            StoreError::StreamDeleted { .. } => 2,
            StoreError::NotFound { .. } => 3,
            StoreError::InvalidInput { .. } => 4,
            StoreError::NotLeader { .. } => 5,
            StoreError::Unavailable { .. } => 6,
            StoreError::NoWorkers { .. } => 7,
            StoreError::UnknownStore { .. } => 8,
            StoreError::Timeout { .. } => 9,
            StoreError::Internal { .. } => 10,
            StoreError::DuplicateEventId { .. } => 11,
            StoreError::Unauthenticated { .. } => 12,
            StoreError::PermissionDenied { .. } => 13,
        }
    }

    /// Shorthand for [`StoreError::InvalidInput`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        StoreError::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// What a subscription selects on; its selector string is read according to this.
///
/// The node's subscription matcher parses the selector and says which events match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SubscriptionType {
    /// The selector is one stream id, or `$all` for every event in the store.
    Stream,
    /// The selector is one event type, or several separated by commas (`a,b`).
    EventType,
    /// The selector is a glob on the stream id: `*` is any run of characters,
    /// `?` exactly one (`order-*`, `*-42`).
    EventPattern,
    /// The selector is a JSON object of conditions on paths into the event data
    /// (`{"amount": {"$gt": 100}}`).
    EventPayload,
    /// The selector is a comma-separated tag list, optionally prefixed `any:` or
    /// `all:` (`any:` when absent).
    Tags,
}

impl SubscriptionType {
    /// Every type, in declaration order.
    pub const ALL: [SubscriptionType; 5] = [
        SubscriptionType::Stream,
        SubscriptionType::EventType,
        SubscriptionType::EventPattern,
        SubscriptionType::EventPayload,
        SubscriptionType::Tags,
    ];

    /// The type's canonical name: `stream`, `event_type`, `event_pattern`,
    /// `event_payload` or `tags`.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionType::Stream => "stream",
            SubscriptionType::EventType => "event_type",
            SubscriptionType::EventPattern => "event_pattern",
            SubscriptionType::EventPayload => "event_payload",
            SubscriptionType::Tags => "tags",
        }
    }
}

impl std::str::FromStr for SubscriptionType {
    type Err = String;

    /// Accepts the canonical names, also with `-` for `_` (`event-type`), ignoring
    /// ASCII case and surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        SubscriptionType::ALL
            .into_iter()
            .find(|t| t.as_str() == wanted)
            .ok_or_else(|| {
                format!(
                    "subscription type {s:?} is not one of stream, event_type, event_pattern, \
                     event_payload, tags"
                )
            })
    }
}

impl fmt::Display for SubscriptionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_version_spellings() {
        for (s, v) in [
            ("any", ExpectedVersion::Any),
            ("-2", ExpectedVersion::Any),
            ("no-stream", ExpectedVersion::NoStream),
            ("-1", ExpectedVersion::NoStream),
            ("stream-exists", ExpectedVersion::StreamExists),
            ("-4", ExpectedVersion::StreamExists),
            ("0", ExpectedVersion::Exact(0)),
            ("17", ExpectedVersion::Exact(17)),
        ] {
            assert_eq!(s.parse::<ExpectedVersion>(), Ok(v), "{s}");
        }
        for bad in ["-3", "-5", "x", "", "1.5"] {
            assert!(
                bad.parse::<ExpectedVersion>().is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn wrong_expected_version_message_uses_seed_integers() {
        let e = StoreError::WrongExpectedVersion {
            expected: ExpectedVersion::Exact(5),
            current: Some(0),
        };
        assert_eq!(e.to_string(), "WrongExpectedVersion: expected 5, current 0");
        let e = StoreError::WrongExpectedVersion {
            expected: ExpectedVersion::StreamExists,
            current: None,
        };
        assert_eq!(
            e.to_string(),
            "WrongExpectedVersion: expected -4, current -1"
        );
    }
}
