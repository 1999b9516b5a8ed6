//! The commands the state machine applies, as they travel inside Raft log entries.
//!
//! A [`WriteBatch`] is one Raft entry: the group-commit batcher packs the writes that
//! arrive together into one batch, and the state machine applies its commands in
//! order, each with its own result. Everything a command needs to be applied
//! deterministically on every replica (event ids, the timestamp) is decided by the
//! leader before it is proposed.
//!
//! # A persisted format
//!
//! [`WriteBatch`] and every type it holds are stored in the Raft log file, bincode
//! encoded (see [`crate::raft::format`], whose `LOG_FORMAT` versions them), and so are
//! [`ContentType`], [`SubscriptionType`] and [`StartFrom`] in the state file. bincode
//! encodes fields and variants by position, not by name, so these types belong to the
//! node, not to the client contract: a change to `reckon_gater` must never change
//! what is on disk. They mirror the contract's types of the same names and convert
//! with `From` where a client request becomes a command, and where a stored record
//! becomes an answer.
//!
//! Never reorder, remove or retype a field or a variant. A new variant goes at the
//! end; any other change is a new format version, with an upgrade of the files
//! written before it and a new sample under `node/tests/samples/`.
//!
//! [`Outcome`] and [`BatchResult`] are not persisted: they are what applying a batch
//! answers to the proposer.

use reckon_gater::subscription::SubscriptionInfo;
use reckon_gater::types::{AppendResult, StoreError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One Raft entry's worth of writes. Persisted: see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBatch {
    /// Microseconds since the Unix epoch, assigned by the leader; every event of the
    /// batch carries it.
    pub timestamp_us: u64,
    /// The writes, applied in order.
    pub commands: Vec<Command>,
}

/// One write. Persisted: see the [module docs](self).
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
    /// Soft-delete a stream, or tombstone it (`hard`), with no expected version; a
    /// stream soft-deleted so numbers its next event 0 again. What nodes before
    /// [`DeleteStream`](Self::DeleteStream) wrote: still applied as it was, so that
    /// their logs replay to the same state. No longer proposed.
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
    /// Soft-delete a stream, or tombstone it (`hard`), if it is at `expected`
    /// (checked as an append's). Versions are never reused: after a soft delete,
    /// reads find nothing and the next append continues after the last version.
    DeleteStream {
        /// The stream.
        stream_id: String,
        /// Tombstone the id for ever.
        hard: bool,
        /// What the writer expects the stream to be at.
        expected: ExpectedVersion,
    },
    /// Start a scavenge over the positions written so far, or resume a stopped one
    /// (up to the log's end now). No effect while one runs.
    ScavengeStart,
    /// Scavenge positions `from..to` (of those before the scavenge's end). No effect
    /// unless a scavenge runs and stands at `from`: a step proposed twice is applied
    /// once.
    ScavengeStep {
        /// The first position.
        from: u64,
        /// The position after the last.
        to: u64,
    },
    /// Stop the running scavenge where it stands.
    ScavengeStop,
    /// Set how long a stream keeps its events (every field `None`: for ever).
    SetRetention {
        /// The stream.
        stream_id: String,
        /// Most age, in microseconds.
        max_age_us: Option<u64>,
        /// Most events kept: the last ones.
        max_count: Option<u64>,
        /// Versions below this one are gone.
        truncate_before: Option<u64>,
    },
}

/// An event ready to be applied: its id is decided. Persisted: see the
/// [module docs](self).
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

/// The version a writer expects a stream to be at: the contract's
/// [`ExpectedVersion`](reckon_gater::types::ExpectedVersion) as the log stores it.
/// Persisted: see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check (the stream must not be tombstoned).
    Any,
    /// The stream must not exist.
    NoStream,
    /// The stream must exist.
    StreamExists,
    /// The stream's current version must be exactly this.
    Exact(u64),
}

impl From<reckon_gater::types::ExpectedVersion> for ExpectedVersion {
    fn from(v: reckon_gater::types::ExpectedVersion) -> Self {
        use reckon_gater::types::ExpectedVersion as Wire;
        match v {
            Wire::Any => ExpectedVersion::Any,
            Wire::NoStream => ExpectedVersion::NoStream,
            Wire::StreamExists => ExpectedVersion::StreamExists,
            Wire::Exact(n) => ExpectedVersion::Exact(n),
        }
    }
}

impl From<ExpectedVersion> for reckon_gater::types::ExpectedVersion {
    fn from(v: ExpectedVersion) -> Self {
        use reckon_gater::types::ExpectedVersion as Wire;
        match v {
            ExpectedVersion::Any => Wire::Any,
            ExpectedVersion::NoStream => Wire::NoStream,
            ExpectedVersion::StreamExists => Wire::StreamExists,
            ExpectedVersion::Exact(n) => Wire::Exact(n),
        }
    }
}

/// What an event's data holds: the contract's
/// [`ContentType`](reckon_gater::types::ContentType) as the log and the state file
/// store it. Persisted: see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ContentType {
    /// UTF-8 JSON.
    Json,
    /// Opaque bytes.
    Binary,
}

impl From<reckon_gater::types::ContentType> for ContentType {
    fn from(c: reckon_gater::types::ContentType) -> Self {
        use reckon_gater::types::ContentType as Wire;
        match c {
            Wire::Json => ContentType::Json,
            Wire::Binary => ContentType::Binary,
        }
    }
}

impl From<ContentType> for reckon_gater::types::ContentType {
    fn from(c: ContentType) -> Self {
        use reckon_gater::types::ContentType as Wire;
        match c {
            ContentType::Json => Wire::Json,
            ContentType::Binary => Wire::Binary,
        }
    }
}

/// What a subscription selects on: the contract's
/// [`SubscriptionType`](reckon_gater::types::SubscriptionType) as the log and the
/// state file store it. Persisted: see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SubscriptionType {
    /// One stream, or `$all`.
    Stream,
    /// Event types.
    EventType,
    /// A glob on the stream id.
    EventPattern,
    /// Conditions on the event data.
    EventPayload,
    /// Tags.
    Tags,
}

impl From<reckon_gater::types::SubscriptionType> for SubscriptionType {
    fn from(k: reckon_gater::types::SubscriptionType) -> Self {
        use reckon_gater::types::SubscriptionType as Wire;
        match k {
            Wire::Stream => SubscriptionType::Stream,
            Wire::EventType => SubscriptionType::EventType,
            Wire::EventPattern => SubscriptionType::EventPattern,
            Wire::EventPayload => SubscriptionType::EventPayload,
            Wire::Tags => SubscriptionType::Tags,
        }
    }
}

impl From<SubscriptionType> for reckon_gater::types::SubscriptionType {
    fn from(k: SubscriptionType) -> Self {
        use reckon_gater::types::SubscriptionType as Wire;
        match k {
            SubscriptionType::Stream => Wire::Stream,
            SubscriptionType::EventType => Wire::EventType,
            SubscriptionType::EventPattern => Wire::EventPattern,
            SubscriptionType::EventPayload => Wire::EventPayload,
            SubscriptionType::Tags => Wire::Tags,
        }
    }
}

/// Where a new subscription starts: the contract's
/// [`StartFrom`](reckon_gater::subscription::StartFrom) as the log and the state file
/// store it. Persisted: see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StartFrom {
    /// From the first event of the store.
    Beginning,
    /// From the next event appended after the subscription is created.
    End,
    /// From this global position.
    Position(u64),
}

impl From<reckon_gater::subscription::StartFrom> for StartFrom {
    fn from(s: reckon_gater::subscription::StartFrom) -> Self {
        use reckon_gater::subscription::StartFrom as Wire;
        match s {
            Wire::Beginning => StartFrom::Beginning,
            Wire::End => StartFrom::End,
            Wire::Position(p) => StartFrom::Position(p),
        }
    }
}

impl From<StartFrom> for reckon_gater::subscription::StartFrom {
    fn from(s: StartFrom) -> Self {
        use reckon_gater::subscription::StartFrom as Wire;
        match s {
            StartFrom::Beginning => Wire::Beginning,
            StartFrom::End => Wire::End,
            StartFrom::Position(p) => Wire::Position(p),
        }
    }
}

/// What one command did (not persisted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Events were appended (or an identical earlier append was found).
    Appended(AppendResult),
    /// A delete or snapshot command took effect.
    Done,
    /// A subscription as it stands after the command.
    Subscription(SubscriptionInfo),
}

/// The result of each command of a batch, in order (not persisted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BatchResult {
    /// One result per command.
    pub results: Vec<Result<Outcome, StoreError>>,
}

#[cfg(test)]
mod tests {
    use reckon_gater::subscription::StartFrom as WireStart;
    use reckon_gater::types::{
        ContentType as WireContent, ExpectedVersion as WireExpected, SubscriptionType as WireKind,
    };

    use super::*;

    /// Converts every value of a contract enum to the node's and back, and checks the
    /// node's encodes as the contract's did when the log stored those.
    fn same<W, N>(values: impl IntoIterator<Item = W>)
    where
        W: Copy + PartialEq + std::fmt::Debug + Serialize + From<N>,
        N: Copy + Serialize + From<W>,
    {
        for wire in values {
            let node = N::from(wire);
            assert_eq!(W::from(node), wire);
            assert_eq!(
                bincode::serialize(&node).unwrap(),
                bincode::serialize(&wire).unwrap(),
                "{wire:?}"
            );
        }
    }

    #[test]
    fn persisted_enums_encode_as_the_contract_types_did() {
        same::<WireExpected, ExpectedVersion>([
            WireExpected::Any,
            WireExpected::NoStream,
            WireExpected::StreamExists,
            WireExpected::Exact(7),
        ]);
        same::<WireContent, ContentType>([WireContent::Json, WireContent::Binary]);
        same::<WireKind, SubscriptionType>(WireKind::ALL);
        same::<WireStart, StartFrom>([
            WireStart::Beginning,
            WireStart::End,
            WireStart::Position(9),
        ]);
    }
}
