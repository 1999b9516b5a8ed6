//! The worker service: the tarpc face of this node's stores.
//!
//! A handler is a cheap clone around the node's shared state; each request finds its
//! store by name ([`StoreError::UnknownStore`] when this node does not host it) and
//! calls into [`Store`], which validates and executes.

use std::collections::HashMap;
use std::sync::Arc;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Instant;

use reckon_gater::emit;
use reckon_gater::metrics::StoreStats;
use reckon_gater::subscription::{Delivery, SubscribeOptions, SubscriptionInfo};
use reckon_gater::telemetry as t;
use reckon_gater::types::{
    AppendResult, Direction, EventRecord, ExpectedVersion, NewEvent, ReadConsistency,
    SnapshotRecord, StoreError, StreamInfo, StreamPage, SubscriptionType, TagMatch,
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

/// Counts a failed request against its store.
fn tally<T>(store: &Store, r: Result<T, StoreError>) -> Result<T, StoreError> {
    if let Err(e) = &r {
        store.metrics().error(e);
    }
    r
}

/// Runs one read, timing it, counting it and reporting it as telemetry; `stream` names
/// what is read (`$all`, `$types`, `$tags` for the global reads).
async fn observe_read(
    store: &Store,
    stream: &str,
    from: u64,
    count: u32,
    read: impl Future<Output = Result<Vec<EventRecord>, StoreError>>,
) -> Result<Vec<EventRecord>, StoreError> {
    let name = store.name();
    emit!(t::STREAM_READ_START, "store" => name, "stream" => stream, "from" => from, "count" => count);
    let started = Instant::now();
    let r = read.await;
    let took = started.elapsed();
    let m = store.metrics();
    match &r {
        Ok(events) => {
            m.reads.fetch_add(1, Ordering::Relaxed);
            m.read_events
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            m.read_latency.record(took);
            emit!(t::STREAM_READ_STOP, "store" => name, "stream" => stream, "event_count" => events.len(), "duration_us" => took);
        }
        Err(e) => {
            m.error(e);
            emit!(t::STREAM_READ_ERROR, "store" => name, "stream" => stream, "error" => e.kind(), "reason" => e.to_string(), "duration_us" => took);
        }
    }
    r
}

impl Worker for WorkerService {
    async fn append(
        self,
        ctx: Context,
        store: String,
        stream_id: String,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let store = self.store(&store)?;
        let name = store.name();
        let count = events.len();
        emit!(t::STREAM_WRITE_START, "store" => name, "stream" => &stream_id, "event_count" => count);
        let bytes: u64 = events
            .iter()
            .map(|e| (e.data.len() + e.metadata.len()) as u64)
            .sum();
        let started = Instant::now();
        let stream = if t::enabled() {
            Some(stream_id.clone())
        } else {
            None
        };
        let r = store
            .append(stream_id, expected, events, ctx.deadline)
            .await;
        let took = started.elapsed();
        let m = store.metrics();
        let stream = stream.as_deref().unwrap_or_default();
        match &r {
            Ok(done) => {
                m.appends.fetch_add(1, Ordering::Relaxed);
                m.appended_events.fetch_add(count as u64, Ordering::Relaxed);
                m.appended_bytes.fetch_add(bytes, Ordering::Relaxed);
                m.append_latency.record(took);
                emit!(t::STREAM_WRITE_STOP, "store" => name, "stream" => stream, "event_count" => count, "new_version" => done.version, "duration_us" => took);
            }
            Err(e) => {
                m.error(e);
                emit!(t::STREAM_WRITE_ERROR, "store" => name, "stream" => stream, "event_count" => count, "error" => e.kind(), "reason" => e.to_string(), "duration_us" => took);
            }
        }
        r
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
        let store = self.store(&store)?;
        let read = store.read_stream(stream_id.clone(), from, count, direction, consistency);
        observe_read(store, &stream_id, from, count, read).await
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
        let store = self.store(&store)?;
        let read = store.read_all(from_position, count, direction, consistency);
        observe_read(store, "$all", from_position, count, read).await
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
        let store = self.store(&store)?;
        let read = store.read_by_event_types(types, from_position, count, consistency);
        observe_read(store, "$types", from_position, count, read).await
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
        let store = self.store(&store)?;
        let read = store.read_by_tags(tags, matching, from_position, count, consistency);
        observe_read(store, "$tags", from_position, count, read).await
    }

    async fn get_version(
        self,
        _: Context,
        store: String,
        stream_id: String,
        consistency: ReadConsistency,
    ) -> Result<Option<u64>, StoreError> {
        let store = self.store(&store)?;
        tally(store, store.get_version(stream_id, consistency).await)
    }

    async fn exists(
        self,
        _: Context,
        store: String,
        stream_id: String,
        consistency: ReadConsistency,
    ) -> Result<bool, StoreError> {
        let store = self.store(&store)?;
        Ok(tally(store, store.get_version(stream_id, consistency).await)?.is_some())
    }

    async fn list_streams(
        self,
        _: Context,
        store: String,
        after: Option<String>,
        limit: u32,
        consistency: ReadConsistency,
    ) -> Result<Vec<StreamInfo>, StoreError> {
        let store = self.store(&store)?;
        tally(store, store.list_streams(after, limit, consistency).await)
    }

    async fn delete_stream(
        self,
        ctx: Context,
        store: String,
        stream_id: String,
        hard: bool,
    ) -> Result<(), StoreError> {
        let store = self.store(&store)?;
        tally(store, store.delete(stream_id, hard, ctx.deadline).await)
    }

    async fn snapshot_save(
        self,
        ctx: Context,
        store: String,
        stream_id: String,
        version: u64,
        data: Vec<u8>,
        metadata: Vec<u8>,
    ) -> Result<(), StoreError> {
        let store = self.store(&store)?;
        let size = data.len() + metadata.len();
        let started = Instant::now();
        let stream = if t::enabled() {
            Some(stream_id.clone())
        } else {
            None
        };
        let r = tally(
            store,
            store
                .save_snapshot(stream_id, version, data, metadata, ctx.deadline)
                .await,
        );
        if r.is_ok() {
            emit!(t::SNAPSHOT_CREATED, "store" => store.name(), "stream" => stream.as_deref().unwrap_or_default(), "version" => version, "size_bytes" => size, "duration_us" => started.elapsed());
        }
        r
    }

    async fn snapshot_load(
        self,
        _: Context,
        store: String,
        stream_id: String,
        version: Option<u64>,
        consistency: ReadConsistency,
    ) -> Result<SnapshotRecord, StoreError> {
        let store = self.store(&store)?;
        let started = Instant::now();
        let r = tally(
            store,
            store.load_snapshot(stream_id, version, consistency).await,
        );
        if let Ok(snap) = &r {
            store.metrics().reads.fetch_add(1, Ordering::Relaxed);
            emit!(t::SNAPSHOT_READ, "store" => store.name(), "stream" => &snap.stream_id, "version" => snap.version, "size_bytes" => snap.data.len() + snap.metadata.len(), "duration_us" => started.elapsed());
        }
        r
    }

    async fn snapshot_list(
        self,
        _: Context,
        store: String,
        stream_id: String,
        consistency: ReadConsistency,
    ) -> Result<Vec<SnapshotRecord>, StoreError> {
        let store = self.store(&store)?;
        tally(store, store.list_snapshots(stream_id, consistency).await)
    }

    async fn snapshot_delete(
        self,
        ctx: Context,
        store: String,
        stream_id: String,
        version: Option<u64>,
    ) -> Result<(), StoreError> {
        let store = self.store(&store)?;
        tally(
            store,
            store
                .delete_snapshot(stream_id, version, ctx.deadline)
                .await,
        )
    }

    async fn subscribe(
        self,
        ctx: Context,
        store: String,
        kind: SubscriptionType,
        selector: String,
        name: String,
        options: SubscribeOptions,
    ) -> Result<SubscriptionInfo, StoreError> {
        let store = self.store(&store)?;
        tally(
            store,
            store
                .subscribe(kind, selector, name, options, ctx.deadline)
                .await,
        )
    }

    async fn unsubscribe(self, ctx: Context, store: String, key: String) -> Result<(), StoreError> {
        let store = self.store(&store)?;
        tally(store, store.unsubscribe(key, ctx.deadline).await)
    }

    async fn get_subscription(
        self,
        _: Context,
        store: String,
        key: String,
        consistency: ReadConsistency,
    ) -> Result<SubscriptionInfo, StoreError> {
        let store = self.store(&store)?;
        tally(store, store.get_subscription(key, consistency).await)
    }

    async fn list_subscriptions(
        self,
        _: Context,
        store: String,
        consistency: ReadConsistency,
    ) -> Result<Vec<SubscriptionInfo>, StoreError> {
        let store = self.store(&store)?;
        tally(store, store.list_subscriptions(consistency).await)
    }

    async fn ack(
        self,
        ctx: Context,
        store: String,
        key: String,
        consumer: String,
        position: u64,
    ) -> Result<SubscriptionInfo, StoreError> {
        let store = self.store(&store)?;
        tally(
            store,
            store.ack(key, consumer, position, ctx.deadline).await,
        )
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
        let store = self.store(&store)?;
        let wait = std::time::Duration::from_millis(u64::from(wait_ms));
        tally(store, store.poll(key, consumer, from, max, wait).await)
    }

    async fn remove_node(self, _: Context, store: String, node_id: u64) -> Result<(), StoreError> {
        let store = self.store(&store)?;
        tally(store, store.remove_node(node_id).await)
    }

    async fn snapshot_exists(
        self,
        _: Context,
        store: String,
        stream_id: String,
        version: Option<u64>,
        consistency: ReadConsistency,
    ) -> Result<bool, StoreError> {
        let store = self.store(&store)?;
        match store.load_snapshot(stream_id, version, consistency).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => tally(store, Err(e)),
        }
    }

    async fn transfer_leader(
        self,
        _: Context,
        store: String,
        node_id: u64,
    ) -> Result<(), StoreError> {
        let store = self.store(&store)?;
        tally(store, store.transfer_leader(node_id).await)
    }

    async fn find_streams(
        self,
        _: Context,
        store: String,
        contains: String,
        after: Option<String>,
        limit: u32,
        consistency: ReadConsistency,
    ) -> Result<StreamPage, StoreError> {
        let store = self.store(&store)?;
        tally(
            store,
            store
                .find_streams(contains, after, limit, consistency)
                .await,
        )
    }

    async fn stats(self, _: Context) -> Vec<StoreStats> {
        let mut out = Vec::with_capacity(self.stores.len());
        for store in self.stores.values() {
            out.push(store.stats().await);
        }
        out.sort_by(|a, b| a.store.cmp(&b.store));
        out
    }
}
