//! The commands the state machine applies, as they travel inside Raft log entries.
//!
//! A [`WriteBatch`] is one Raft entry: the group-commit batcher packs the writes that
//! arrive together into one batch, and the state machine applies its commands in
//! order, each with its own result. Everything a command needs to be applied
//! deterministically on every replica (event ids, the timestamp) is decided by the
//! leader before it is proposed.

use reckon_gater::subscription::{StartFrom, SubscriptionInfo};
use reckon_gater::types::{
    AppendResult, ContentType, ExpectedVersion, StoreError, SubscriptionType,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One Raft entry's worth of writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBatch {
    /// Microseconds since the Unix epoch, assigned by the leader; every event of the
    /// batch carries it.
    pub timestamp_us: u64,
    /// The writes, applied in order.
    pub commands: Vec<Command>,
}

/// One write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Append events to a stream if it is at the expected version.
    Append {
        /// The stream.
        stream_id: String,
        /// What the writer expects.
        expected: ExpectedVersion,
        /// The events, with their ids decided.
        events: Vec<ProposedEvent>,
    },
    /// Soft-delete a stream, or tombstone it (`hard`).
    Delete {
        /// The stream.
        stream_id: String,
        /// Tombstone the id for ever.
        hard: bool,
    },
    /// Save a snapshot, overwriting one at the same version.
    SaveSnapshot {
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
    /// Delete one snapshot, or all of a stream's when `version` is `None`.
    DeleteSnapshot {
        /// The stream.
        stream_id: String,
        /// Which one.
        version: Option<u64>,
    },
    /// Create a subscription, or return the existing one with the same key.
    Subscribe {
        /// Derived from kind, selector and name.
        key: String,
        /// The kind of selector.
        kind: SubscriptionType,
        /// The selector (already validated).
        selector: String,
        /// Its name.
        name: String,
        /// Where delivery starts.
        start_from: StartFrom,
        /// Consumers that may share it.
        pool_size: u32,
    },
    /// Remove a subscription.
    Unsubscribe {
        /// Its key.
        key: String,
    },
    /// Move a subscription's checkpoint forward (never back) past `position`.
    Ack {
        /// Its key.
        key: String,
        /// The last position processed.
        position: u64,
    },
}

/// An event ready to be applied: its id is decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposedEvent {
    /// The event's id.
    pub event_id: Uuid,
    /// Its type.
    pub event_type: String,
    /// Payload.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// Metadata.
    #[serde(with = "serde_bytes")]
    pub metadata: Vec<u8>,
    /// What `data` holds.
    pub content_type: ContentType,
    /// Tags.
    pub tags: Vec<String>,
}

impl ProposedEvent {
    /// Bytes of data and metadata.
    pub fn payload_len(&self) -> usize {
        self.data.len() + self.metadata.len()
    }
}

/// What one command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Events were appended (or an identical earlier append was found).
    Appended(AppendResult),
    /// A delete or snapshot command took effect.
    Done,
    /// A subscription as it stands after the command.
    Subscription(SubscriptionInfo),
}

/// The result of each command of a batch, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BatchResult {
    /// One result per command.
    pub results: Vec<Result<Outcome, StoreError>>,
}
