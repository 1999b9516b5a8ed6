//! Reads: linearizable reads first confirm leadership through openraft's read index
//! (`ensure_linearizable`), then read a consistent redb view; stale reads skip the
//! confirmation and read this node's state as it is. Blocking redb work runs on the
//! blocking pool.

use std::sync::atomic::Ordering;

use reckon_gater::page::EventPage;
use reckon_gater::types::{
    Direction, ReadConsistency, SnapshotRecord, StoreError, StreamInfo, StreamPage, TagMatch,
};

use super::errors::{read_err, write_err};
use super::{now_us, Store};
use crate::command::WriteBatch;
use crate::domain;
use crate::storage::state::Reader;
use crate::storage::StorageError;

/// Stream ids one `find_streams` call examines at most; a call that stops there
/// says where to resume.
pub const FIND_STREAMS_SCAN_MAX: usize = 10_000;

impl Store {
    /// Runs `f` on a consistent view of the state, after confirming leadership when
    /// the read must be linearizable.
    pub async fn read<T, F>(&self, consistency: ReadConsistency, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Reader) -> Result<Result<T, StoreError>, StorageError> + Send + 'static,
    {
        if consistency == ReadConsistency::Linearizable {
            self.check_not_moving()?;
            if !self.read_barrier.load(Ordering::Acquire) {
                // Commit an entry of our own first: everything before it is then
                // committed and applied (see `read_barrier`).
                self.raft
                    .client_write(WriteBatch {
                        timestamp_us: now_us(),
                        commands: Vec::new(),
                    })
                    .await
                    .map_err(write_err)?;
                self.read_barrier.store(true, Ordering::Release);
            }
            self.raft.ensure_linearizable().await.map_err(read_err)?;
        }
        let state = self.state.clone();
        match tokio::task::spawn_blocking(move || {
            let r = state.read()?;
            f(&r)
        })
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(StoreError::Internal {
                message: format!("read task failed: {e}"),
            }),
        }
    }

    /// Reads one stream.
    pub async fn read_stream(
        &self,
        stream_id: String,
        from: u64,
        count: u32,
        direction: Direction,
        consistency: ReadConsistency,
    ) -> Result<EventPage, StoreError> {
        domain::validate_stream_id(&self.limits, &stream_id)?;
        let count = domain::validate_count(&self.limits, count)?;
        self.read(consistency, move |r| {
            r.read_stream(&stream_id, from, count, direction)
        })
        .await
    }

    /// Reads the global log.
    pub async fn read_all(
        &self,
        from: u64,
        count: u32,
        direction: Direction,
        consistency: ReadConsistency,
    ) -> Result<EventPage, StoreError> {
        let count = domain::validate_count(&self.limits, count)?;
        self.read(consistency, move |r| {
            r.read_all(from, count, direction).map(Ok)
        })
        .await
    }

    /// Reads by event type.
    pub async fn read_by_event_types(
        &self,
        types: Vec<String>,
        from: u64,
        count: u32,
        consistency: ReadConsistency,
    ) -> Result<EventPage, StoreError> {
        let count = domain::validate_count(&self.limits, count)?;
        self.read(consistency, move |r| {
            r.read_by_types(&types, from, count).map(Ok)
        })
        .await
    }

    /// Reads by tags.
    pub async fn read_by_tags(
        &self,
        tags: Vec<String>,
        matching: TagMatch,
        from: u64,
        count: u32,
        consistency: ReadConsistency,
    ) -> Result<EventPage, StoreError> {
        let count = domain::validate_count(&self.limits, count)?;
        self.read(consistency, move |r| {
            r.read_by_tags(&tags, matching, from, count).map(Ok)
        })
        .await
    }

    /// The stream's version, `None` when it does not exist.
    pub async fn get_version(
        &self,
        stream_id: String,
        consistency: ReadConsistency,
    ) -> Result<Option<u64>, StoreError> {
        domain::validate_stream_id(&self.limits, &stream_id)?;
        self.read(consistency, move |r| r.version(&stream_id).map(Ok))
            .await
    }

    /// The global log's length at time `at_us`; see [`Reader::position_at`].
    ///
    /// [`Reader::position_at`]: crate::storage::state::Reader::position_at
    pub async fn position_at(
        &self,
        at_us: u64,
        consistency: ReadConsistency,
    ) -> Result<u64, StoreError> {
        self.read(consistency, move |r| r.position_at(at_us).map(Ok))
            .await
    }

    /// The version a stream had at time `at_us`; see [`Reader::version_at`].
    ///
    /// [`Reader::version_at`]: crate::storage::state::Reader::version_at
    pub async fn version_at(
        &self,
        stream_id: String,
        at_us: u64,
        consistency: ReadConsistency,
    ) -> Result<Option<u64>, StoreError> {
        domain::validate_stream_id(&self.limits, &stream_id)?;
        self.read(consistency, move |r| {
            r.version_at(&stream_id, at_us).map(Ok)
        })
        .await
    }

    /// How long a stream keeps its events.
    pub async fn retention(
        &self,
        stream_id: String,
        consistency: ReadConsistency,
    ) -> Result<reckon_gater::types::StreamRetention, StoreError> {
        domain::validate_stream_id(&self.limits, &stream_id)?;
        self.read(consistency, move |r| {
            Ok(Ok(r.retention(&stream_id)?.map_or_else(
                Default::default,
                |s| reckon_gater::types::StreamRetention {
                    max_age_us: s.max_age_us,
                    max_count: s.max_count,
                    truncate_before: s.truncate_before,
                },
            )))
        })
        .await
    }

    /// Live streams, paged by id.
    pub async fn list_streams(
        &self,
        after: Option<String>,
        limit: u32,
        consistency: ReadConsistency,
    ) -> Result<Vec<StreamInfo>, StoreError> {
        let limit = domain::validate_count(&self.limits, limit)?;
        self.read(consistency, move |r| {
            r.list_streams(after.as_deref(), limit).map(Ok)
        })
        .await
    }

    /// Streams whose id contains `contains`, after `after`; see
    /// [`FIND_STREAMS_SCAN_MAX`].
    pub async fn find_streams(
        &self,
        contains: String,
        after: Option<String>,
        limit: u32,
        consistency: ReadConsistency,
    ) -> Result<StreamPage, StoreError> {
        let limit = domain::validate_count(&self.limits, limit)?;
        if contains.len() > self.limits.stream_id_bytes_max {
            return Err(StoreError::invalid(
                "contains",
                format!(
                    "{} bytes is longer than a stream id may be ({})",
                    contains.len(),
                    self.limits.stream_id_bytes_max
                ),
            ));
        }
        self.read(consistency, move |r| {
            r.find_streams(after.as_deref(), &contains, limit, FIND_STREAMS_SCAN_MAX)
                .map(Ok)
        })
        .await
    }

    /// One snapshot (the highest when `version` is `None`).
    pub async fn load_snapshot(
        &self,
        stream_id: String,
        version: Option<u64>,
        consistency: ReadConsistency,
    ) -> Result<SnapshotRecord, StoreError> {
        domain::validate_stream_id(&self.limits, &stream_id)?;
        self.read(consistency, move |r| {
            let found = match version {
                Some(v) => r.snapshots(&stream_id, v, v)?.pop(),
                None => r.latest_snapshot(&stream_id)?,
            };
            Ok(found.ok_or_else(|| StoreError::NotFound {
                what: match version {
                    Some(v) => format!("snapshot of stream {stream_id:?} at version {v}"),
                    None => format!("snapshot of stream {stream_id:?}"),
                },
            }))
        })
        .await
    }

    /// Every snapshot of a stream by ascending version.
    pub async fn list_snapshots(
        &self,
        stream_id: String,
        consistency: ReadConsistency,
    ) -> Result<Vec<SnapshotRecord>, StoreError> {
        domain::validate_stream_id(&self.limits, &stream_id)?;
        self.read(consistency, move |r| {
            r.snapshots(&stream_id, 0, u64::MAX).map(Ok)
        })
        .await
    }
}
