//! The worker service: the tarpc face of this node's stores.
//!
//! A handler is a cheap clone around the node's shared state; each request finds its
//! store by name ([`StoreError::UnknownStore`] when this node does not host it) and
//! calls into [`Store`], which validates and executes.

use std::collections::HashMap;
use std::sync::Arc;

use reckon_gater::subscription::{Delivery, SubscribeOptions, SubscriptionInfo};
use reckon_gater::types::{
    AppendResult, Direction, EventRecord, ExpectedVersion, NewEvent, ReadConsistency,
    SnapshotRecord, StoreError, StreamInfo, SubscriptionType, TagMatch,
};
use reckon_gater::worker::Worker;
use tarpc::context::Context;

use crate::store::Store;

/// The stores this node hosts, by name.
pub type Stores = Arc<HashMap<String, Arc<Store>>>;

/// The worker service handler.
#[derive(Clone)]
pub struct WorkerService {
    stores: Stores,
}

impl WorkerService {
    /// Serves the given stores.
    pub fn new(stores: Stores) -> Self {
        WorkerService { stores }
    }

    fn store(&self, name: &str) -> Result<&Arc<Store>, StoreError> {
        self.stores
            .get(name)
            .ok_or_else(|| StoreError::UnknownStore {
                store: name.to_string(),
            })
    }
}

impl Worker for WorkerService {
    async fn append(
        self,
        _: Context,
        store: String,
        stream_id: String,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.store(&store)?
            .append(stream_id, expected, events)
            .await
    }

    async fn read_stream(
        self,
        _: Context,
        store: String,
        stream_id: String,
        from: u64,
        count: u32,
        direction: Direction,
        consistency: ReadConsistency,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.store(&store)?
            .read_stream(stream_id, from, count, direction, consistency)
            .await
    }

    async fn read_all(
        self,
        _: Context,
        store: String,
        from_position: u64,
        count: u32,
        direction: Direction,
        consistency: ReadConsistency,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.store(&store)?
            .read_all(from_position, count, direction, consistency)
            .await
    }

    async fn read_by_event_types(
        self,
        _: Context,
        store: String,
        types: Vec<String>,
        from_position: u64,
        count: u32,
        consistency: ReadConsistency,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.store(&store)?
            .read_by_event_types(types, from_position, count, consistency)
            .await
    }

    async fn read_by_tags(
        self,
        _: Context,
        store: String,
        tags: Vec<String>,
        matching: TagMatch,
        from_position: u64,
        count: u32,
        consistency: ReadConsistency,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.store(&store)?
            .read_by_tags(tags, matching, from_position, count, consistency)
            .await
    }

    async fn get_version(
        self,
        _: Context,
        store: String,
        stream_id: String,
        consistency: ReadConsistency,
    ) -> Result<Option<u64>, StoreError> {
        self.store(&store)?
            .get_version(stream_id, consistency)
            .await
    }

    async fn exists(
        self,
        _: Context,
        store: String,
        stream_id: String,
        consistency: ReadConsistency,
    ) -> Result<bool, StoreError> {
        Ok(self
            .store(&store)?
            .get_version(stream_id, consistency)
            .await?
            .is_some())
    }

    async fn list_streams(
        self,
        _: Context,
        store: String,
        after: Option<String>,
        limit: u32,
        consistency: ReadConsistency,
    ) -> Result<Vec<StreamInfo>, StoreError> {
        self.store(&store)?
            .list_streams(after, limit, consistency)
            .await
    }

    async fn delete_stream(
        self,
        _: Context,
        store: String,
        stream_id: String,
        hard: bool,
    ) -> Result<(), StoreError> {
        self.store(&store)?.delete(stream_id, hard).await
    }

    async fn snapshot_save(
        self,
        _: Context,
        store: String,
        stream_id: String,
        version: u64,
        data: Vec<u8>,
        metadata: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.store(&store)?
            .save_snapshot(stream_id, version, data, metadata)
            .await
    }

    async fn snapshot_load(
        self,
        _: Context,
        store: String,
        stream_id: String,
        version: Option<u64>,
        consistency: ReadConsistency,
    ) -> Result<SnapshotRecord, StoreError> {
        self.store(&store)?
            .load_snapshot(stream_id, version, consistency)
            .await
    }

    async fn snapshot_list(
        self,
        _: Context,
        store: String,
        stream_id: String,
        consistency: ReadConsistency,
    ) -> Result<Vec<SnapshotRecord>, StoreError> {
        self.store(&store)?
            .list_snapshots(stream_id, consistency)
            .await
    }

    async fn snapshot_delete(
        self,
        _: Context,
        store: String,
        stream_id: String,
        version: Option<u64>,
    ) -> Result<(), StoreError> {
        self.store(&store)?
            .delete_snapshot(stream_id, version)
            .await
    }

    async fn subscribe(
        self,
        _: Context,
        store: String,
        kind: SubscriptionType,
        selector: String,
        name: String,
        options: SubscribeOptions,
    ) -> Result<SubscriptionInfo, StoreError> {
        self.store(&store)?
            .subscribe(kind, selector, name, options)
            .await
    }

    async fn unsubscribe(self, _: Context, store: String, key: String) -> Result<(), StoreError> {
        self.store(&store)?.unsubscribe(key).await
    }

    async fn get_subscription(
        self,
        _: Context,
        store: String,
        key: String,
        consistency: ReadConsistency,
    ) -> Result<SubscriptionInfo, StoreError> {
        self.store(&store)?.get_subscription(key, consistency).await
    }

    async fn list_subscriptions(
        self,
        _: Context,
        store: String,
        consistency: ReadConsistency,
    ) -> Result<Vec<SubscriptionInfo>, StoreError> {
        self.store(&store)?.list_subscriptions(consistency).await
    }

    async fn ack(
        self,
        _: Context,
        store: String,
        key: String,
        consumer: String,
        position: u64,
    ) -> Result<SubscriptionInfo, StoreError> {
        self.store(&store)?.ack(key, consumer, position).await
    }

    async fn poll(
        self,
        _: Context,
        store: String,
        key: String,
        consumer: String,
        from: Option<u64>,
        max: u32,
        wait_ms: u32,
    ) -> Result<Delivery, StoreError> {
        self.store(&store)?
            .poll(
                key,
                consumer,
                from,
                max,
                std::time::Duration::from_millis(u64::from(wait_ms)),
            )
            .await
    }

    async fn remove_node(self, _: Context, store: String, node_id: u64) -> Result<(), StoreError> {
        self.store(&store)?.remove_node(node_id).await
    }

    async fn snapshot_exists(
        self,
        _: Context,
        store: String,
        stream_id: String,
        version: Option<u64>,
        consistency: ReadConsistency,
    ) -> Result<bool, StoreError> {
        match self
            .store(&store)?
            .load_snapshot(stream_id, version, consistency)
            .await
        {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
