//! The worker service: the tarpc face of this node's stores.
//!
//! A handler is a cheap clone around the node's shared state; each request finds its
//! store by name ([`StoreError::UnknownStore`] when this node does not host it), and
//! [`serve`] answers it in one `match`, calling into [`Store`], which validates and
//! executes.

use std::sync::Arc;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reckon_gater::emit;
use reckon_gater::metrics::StoreStats;
use reckon_gater::page::EventPage;
use reckon_gater::request::{StoreRequest, StoreResponse};
use reckon_gater::telemetry as t;
use reckon_gater::types::{AppendResult, ExpectedVersion, NewEvent, StoreError};
use reckon_gater::worker::Worker;
use tarpc::context::Context;

use crate::store::{Store, Stores};

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
    read: impl Future<Output = Result<EventPage, StoreError>>,
) -> Result<EventPage, StoreError> {
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
    async fn call(
        self,
        ctx: Context,
        store: String,
        request: StoreRequest,
    ) -> Result<StoreResponse, StoreError> {
        let store = self.store(&store)?;
        serve(store, request, ctx.deadline).await
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

/// Answers one request on `store`, counting it and reporting it as telemetry; a
/// write is not proposed after `deadline`, its caller's.
pub async fn serve(
    store: &Store,
    request: StoreRequest,
    deadline: Instant,
) -> Result<StoreResponse, StoreError> {
    use StoreRequest as R;
    use StoreResponse as A;
    let events = A::Events;
    match request {
        R::Append {
            stream_id,
            expected,
            events,
        } => append(store, stream_id, expected, events, deadline)
            .await
            .map(A::Appended),
        R::ReadStream {
            stream_id,
            from,
            count,
            direction,
            consistency,
        } => {
            let read = store.read_stream(stream_id.clone(), from, count, direction, consistency);
            observe_read(store, &stream_id, from, count, read)
                .await
                .map(events)
        }
        R::ReadAll {
            from_position,
            count,
            direction,
            consistency,
        } => {
            let read = store.read_all(from_position, count, direction, consistency);
            observe_read(store, "$all", from_position, count, read)
                .await
                .map(events)
        }
        R::ReadByEventTypes {
            types,
            from_position,
            count,
            consistency,
        } => {
            let read = store.read_by_event_types(types, from_position, count, consistency);
            observe_read(store, "$types", from_position, count, read)
                .await
                .map(events)
        }
        R::ReadByTags {
            tags,
            matching,
            from_position,
            count,
            consistency,
        } => {
            let read = store.read_by_tags(tags, matching, from_position, count, consistency);
            observe_read(store, "$tags", from_position, count, read)
                .await
                .map(events)
        }
        R::GetVersion {
            stream_id,
            consistency,
        } => tally(store, store.get_version(stream_id, consistency).await).map(A::Version),
        R::SetRetention {
            stream_id,
            retention,
        } => tally(
            store,
            store.set_retention(stream_id, retention, deadline).await,
        )
        .map(|()| A::Done),
        R::GetRetention {
            stream_id,
            consistency,
        } => tally(store, store.retention(stream_id, consistency).await).map(A::Retention),
        R::Scavenge { action } => {
            tally(store, store.scavenge(action, deadline).await).map(A::Scavenge)
        }
        R::PositionAt { at_us, consistency } => {
            tally(store, store.position_at(at_us, consistency).await).map(A::Position)
        }
        R::VersionAt {
            stream_id,
            at_us,
            consistency,
        } => tally(store, store.version_at(stream_id, at_us, consistency).await).map(A::Version),
        R::Exists {
            stream_id,
            consistency,
        } => tally(store, store.get_version(stream_id, consistency).await)
            .map(|v| A::Exists(v.is_some())),
        R::ListStreams {
            after,
            limit,
            consistency,
        } => tally(store, store.list_streams(after, limit, consistency).await).map(A::Streams),
        R::FindStreams {
            contains,
            after,
            limit,
            consistency,
        } => tally(
            store,
            store
                .find_streams(contains, after, limit, consistency)
                .await,
        )
        .map(A::StreamPage),
        R::DeleteStream {
            stream_id,
            hard,
            expected,
        } => tally(
            store,
            store.delete(stream_id, expected, hard, deadline).await,
        )
        .map(|()| A::Done),
        R::SnapshotSave {
            stream_id,
            version,
            data,
            metadata,
        } => {
            let size = data.len() + metadata.len();
            let started = Instant::now();
            let stream = t::enabled().then(|| stream_id.clone());
            let r = tally(
                store,
                store
                    .save_snapshot(stream_id, version, data, metadata, deadline)
                    .await,
            );
            if r.is_ok() {
                emit!(t::SNAPSHOT_CREATED, "store" => store.name(), "stream" => stream.as_deref().unwrap_or_default(), "version" => version, "size_bytes" => size, "duration_us" => started.elapsed());
            }
            r.map(|()| A::Done)
        }
        R::SnapshotLoad {
            stream_id,
            version,
            consistency,
        } => {
            let started = Instant::now();
            let r = tally(
                store,
                store.load_snapshot(stream_id, version, consistency).await,
            );
            if let Ok(snap) = &r {
                store.metrics().reads.fetch_add(1, Ordering::Relaxed);
                emit!(t::SNAPSHOT_READ, "store" => store.name(), "stream" => &snap.stream_id, "version" => snap.version, "size_bytes" => snap.data.len() + snap.metadata.len(), "duration_us" => started.elapsed());
            }
            r.map(A::Snapshot)
        }
        R::SnapshotList {
            stream_id,
            consistency,
        } => tally(store, store.list_snapshots(stream_id, consistency).await).map(A::Snapshots),
        R::SnapshotDelete { stream_id, version } => tally(
            store,
            store.delete_snapshot(stream_id, version, deadline).await,
        )
        .map(|()| A::Done),
        R::SnapshotExists {
            stream_id,
            version,
            consistency,
        } => match store.load_snapshot(stream_id, version, consistency).await {
            Ok(_) => Ok(A::Exists(true)),
            Err(StoreError::NotFound { .. }) => Ok(A::Exists(false)),
            Err(e) => tally(store, Err(e)),
        },
        R::Subscribe {
            kind,
            selector,
            name,
            options,
        } => tally(
            store,
            store
                .subscribe(kind, selector, name, options, deadline)
                .await,
        )
        .map(A::Subscription),
        R::Unsubscribe { key } => {
            tally(store, store.unsubscribe(key, deadline).await).map(|()| A::Done)
        }
        R::GetSubscription { key, consistency } => {
            tally(store, store.get_subscription(key, consistency).await).map(A::Subscription)
        }
        R::ListSubscriptions { consistency } => {
            tally(store, store.list_subscriptions(consistency).await).map(A::Subscriptions)
        }
        R::Ack {
            key,
            consumer,
            position,
        } => tally(store, store.ack(key, consumer, position, deadline).await).map(A::Subscription),
        R::Poll {
            key,
            consumer,
            from,
            max,
            wait_ms,
        } => {
            let wait = Duration::from_millis(u64::from(wait_ms));
            tally(store, store.poll(key, consumer, from, max, wait).await).map(A::Delivery)
        }
        R::RemoveNode { node_id } => {
            tally(store, store.remove_node(node_id).await).map(|()| A::Done)
        }
        R::TransferLeader { node_id } => {
            tally(store, store.transfer_leader(node_id).await).map(|()| A::Done)
        }
        R::BackupBegin => tally(store, store.backup_begin().await).map(A::Backup),
        R::BackupStatus { id } => tally(store, store.backups().status(&id)).map(A::Backup),
        R::BackupChunk {
            id,
            offset,
            max_bytes,
        } => tally(store, store.backups().chunk(&id, offset, max_bytes).await).map(A::BackupChunk),
        R::BackupEnd { id } => tally(store, store.backups().end(&id)).map(|()| A::Done),
    }
}

/// An append, timed, counted and reported as telemetry.
async fn append(
    store: &Store,
    stream_id: String,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    deadline: Instant,
) -> Result<AppendResult, StoreError> {
    let name = store.name();
    let count = events.len();
    emit!(t::STREAM_WRITE_START, "store" => name, "stream" => &stream_id, "event_count" => count);
    let bytes: u64 = events
        .iter()
        .map(|e| (e.data.len() + e.metadata.len()) as u64)
        .sum();
    let started = Instant::now();
    let stream = t::enabled().then(|| stream_id.clone());
    let r = store.append(stream_id, expected, events, deadline).await;
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
