#![allow(clippy::too_many_arguments)]
//! The worker service: what a node serves, per store it hosts, to gaters and tools.
//!
//! Every method names the store it addresses; a node answers
//! [`StoreError::UnknownStore`] for a store it does not host. Writes go through the
//! store's Raft group; reads are linearizable unless the caller asks for
//! [`ReadConsistency::Stale`].

use crate::metrics::StoreStats;
use crate::subscription::{Delivery, SubscribeOptions, SubscriptionInfo};
use crate::types::{
    AppendResult, Direction, EventRecord, ExpectedVersion, NewEvent, ReadConsistency,
    SnapshotRecord, StoreError, StreamInfo, StreamPage, SubscriptionType, TagMatch,
};

/// The store operations a node serves.
#[tarpc::service]
pub trait Worker {
    /// Appends `events` to `stream_id` atomically if the stream is at `expected`.
    /// Retrying with the same event ids returns the first result and writes nothing.
    async fn append(
        store: String,
        stream_id: String,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError>;

    /// Reads up to `count` events of one stream from version `from`.
    async fn read_stream(
        store: String,
        stream_id: String,
        from: u64,
        count: u32,
        direction: Direction,
        consistency: ReadConsistency,
    ) -> Result<Vec<EventRecord>, StoreError>;

    /// Reads up to `count` events of the global log from `from_position`.
    async fn read_all(
        store: String,
        from_position: u64,
        count: u32,
        direction: Direction,
        consistency: ReadConsistency,
    ) -> Result<Vec<EventRecord>, StoreError>;

    /// Reads events whose type is one of `types` (all events when empty), ascending
    /// from `from_position`.
    async fn read_by_event_types(
        store: String,
        types: Vec<String>,
        from_position: u64,
        count: u32,
        consistency: ReadConsistency,
    ) -> Result<Vec<EventRecord>, StoreError>;

    /// Reads events carrying any or all of `tags`, ascending from `from_position`.
    async fn read_by_tags(
        store: String,
        tags: Vec<String>,
        matching: TagMatch,
        from_position: u64,
        count: u32,
        consistency: ReadConsistency,
    ) -> Result<Vec<EventRecord>, StoreError>;

    /// The stream's current version; `None` when it does not exist.
    async fn get_version(
        store: String,
        stream_id: String,
        consistency: ReadConsistency,
    ) -> Result<Option<u64>, StoreError>;

    /// Whether the stream exists (written and not deleted).
    async fn exists(
        store: String,
        stream_id: String,
        consistency: ReadConsistency,
    ) -> Result<bool, StoreError>;

    /// Up to `limit` streams in id order, starting after `after`.
    async fn list_streams(
        store: String,
        after: Option<String>,
        limit: u32,
        consistency: ReadConsistency,
    ) -> Result<Vec<StreamInfo>, StoreError>;

    /// Deletes a stream (soft), or tombstones it for ever (`hard`).
    async fn delete_stream(store: String, stream_id: String, hard: bool) -> Result<(), StoreError>;

    /// Saves a snapshot of a stream at `version`, overwriting one at the same version.
    async fn snapshot_save(
        store: String,
        stream_id: String,
        version: u64,
        data: Vec<u8>,
        metadata: Vec<u8>,
    ) -> Result<(), StoreError>;

    /// The snapshot at `version`, or the highest one when `None`.
    async fn snapshot_load(
        store: String,
        stream_id: String,
        version: Option<u64>,
        consistency: ReadConsistency,
    ) -> Result<SnapshotRecord, StoreError>;

    /// Every snapshot of the stream, by ascending version.
    async fn snapshot_list(
        store: String,
        stream_id: String,
        consistency: ReadConsistency,
    ) -> Result<Vec<SnapshotRecord>, StoreError>;

    /// Deletes the snapshot at `version`, or every snapshot of the stream when `None`.
    async fn snapshot_delete(
        store: String,
        stream_id: String,
        version: Option<u64>,
    ) -> Result<(), StoreError>;

    /// Creates a subscription, or returns the one with the same kind, selector and name.
    async fn subscribe(
        store: String,
        kind: SubscriptionType,
        selector: String,
        name: String,
        options: SubscribeOptions,
    ) -> Result<SubscriptionInfo, StoreError>;

    /// Removes a subscription (`NotFound` for an unknown key).
    async fn unsubscribe(store: String, key: String) -> Result<(), StoreError>;

    /// One subscription.
    async fn get_subscription(
        store: String,
        key: String,
        consistency: ReadConsistency,
    ) -> Result<SubscriptionInfo, StoreError>;

    /// Every subscription of the store.
    async fn list_subscriptions(
        store: String,
        consistency: ReadConsistency,
    ) -> Result<Vec<SubscriptionInfo>, StoreError>;

    /// Acknowledges processing up to `position` (the checkpoint only moves forward).
    async fn ack(
        store: String,
        key: String,
        consumer: String,
        position: u64,
    ) -> Result<SubscriptionInfo, StoreError>;

    /// Long-polls for matching events from `from` (or the checkpoint), waiting up to
    /// `wait_ms` when there are none yet.
    async fn poll(
        store: String,
        key: String,
        consumer: String,
        from: Option<u64>,
        max: u32,
        wait_ms: u32,
    ) -> Result<Delivery, StoreError>;

    /// Removes a node from the store's Raft group (voter and learner). Only the leader
    /// accepts; others answer `NotLeader`.
    async fn remove_node(store: String, node_id: u64) -> Result<(), StoreError>;

    /// Hands the leadership of the store's group to `node_id`, a voter. Only the
    /// leader accepts; it answers once the target leads (or with an error, still
    /// leading, when the target did not take over in time).
    async fn transfer_leader(store: String, node_id: u64) -> Result<(), StoreError>;

    /// Whether a snapshot exists at `version`, or any when `None`.
    async fn snapshot_exists(
        store: String,
        stream_id: String,
        version: Option<u64>,
        consistency: ReadConsistency,
    ) -> Result<bool, StoreError>;

    /// Up to `limit` streams after `after` whose id contains `contains`, examining a
    /// bounded number of ids per call: continue from `resume_after` while it is set.
    async fn find_streams(
        store: String,
        contains: String,
        after: Option<String>,
        limit: u32,
        consistency: ReadConsistency,
    ) -> Result<StreamPage, StoreError>;

    /// Counters and latency histograms of every store this node hosts.
    async fn stats() -> Vec<StoreStats>;
}

/// Dials a node's worker service at `addr` (within
/// [`CONNECT_TIMEOUT`](crate::transport::CONNECT_TIMEOUT)).
pub async fn connect(addr: &str) -> std::io::Result<WorkerClient> {
    let transport = crate::transport::dial(addr, crate::transport::Service::Worker).await?;
    Ok(WorkerClient::new(tarpc::client::Config::default(), transport).spawn())
}
