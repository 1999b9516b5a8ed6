//! The Raft state machine over [`StateDb`], and snapshots as redb files.
//!
//! The applied log id and membership are stored by [`StateDb::apply`] in the same
//! transaction as the effects of the entries, so the two never disagree.
//!
//! A snapshot is a consistent copy of the state file taken from one read transaction
//! (so writes go on while it is built), written to `snapshots/<id>.redb`. Installing
//! one replaces the whole state in one transaction. The current snapshot is named by
//! `snapshots/current`, replaced atomically by rename. What is stored beside the data
//! and in `current` is laid out by [`super::format`].

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend,
    RaftSnapshotBuilder, StorageError, StoredMembership,
};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

use super::format::{StoredCurrentSnapshot, StoredRaftRecord};
use super::{blocking, storage_err, NodeId, TypeConfig};
use crate::command::{BatchResult, Command, ProposedEvent};
use crate::storage::format::Record;
use crate::storage::state::ApplyItem;
use crate::storage::{StateDb, StorageError as DbError};

/// What the Raft layer keeps in the state file beside the data (stored as a
/// [`StoredRaftRecord`]).
#[derive(Debug, Clone, Default)]
pub struct RaftRecord {
    /// The last log id applied.
    pub last_applied: Option<LogId<NodeId>>,
    /// The last membership applied.
    pub membership: StoredMembership<NodeId, BasicNode>,
}

impl RaftRecord {
    /// The record's bytes in the state file.
    pub fn encode(&self) -> Vec<u8> {
        StoredRaftRecord {
            last_applied: self.last_applied.map(Into::into),
            membership: (&self.membership).into(),
        }
        .encode()
    }

    /// Decodes the record stored in the state file.
    pub fn decode(b: &[u8]) -> Result<RaftRecord, DbError> {
        let stored = StoredRaftRecord::decode(b)?;
        Ok(RaftRecord {
            last_applied: stored.last_applied.map(Into::into),
            membership: stored.membership.into(),
        })
    }
}

/// A snapshot file being written or read, with its path.
#[derive(Debug)]
pub struct SnapshotFile {
    file: tokio::fs::File,
    path: PathBuf,
}

impl SnapshotFile {
    /// Opens the snapshot file at `path` for reading.
    pub async fn open(path: &Path) -> io::Result<SnapshotFile> {
        Ok(SnapshotFile {
            file: tokio::fs::File::open(path).await?,
            path: path.to_path_buf(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.file).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.file).poll_complete(cx)
    }
}

/// What `snapshots/current` says (stored as a [`StoredCurrentSnapshot`]).
#[derive(Debug, Clone)]
struct CurrentSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    file: String,
}

/// The state machine of one store.
#[derive(Clone)]
pub struct StateMachine {
    state: Arc<StateDb>,
    dir: PathBuf,
    record: Arc<Mutex<RaftRecord>>,
    /// Extra time every installation takes before it starts (a fault injected by
    /// tests: a large store on a slow disk).
    install_delay: std::time::Duration,
    /// Extra time every call to apply committed entries takes (a fault injected by
    /// tests: a replica whose state lags its log).
    apply_delay: std::time::Duration,
}

fn snap_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    storage_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e)
}

impl StateMachine {
    /// Wraps the state database; snapshots live in `snapshot_dir`. Files of snapshots
    /// that were being built or received when the node stopped are removed.
    pub fn open(state: Arc<StateDb>, snapshot_dir: &Path) -> Result<StateMachine, DbError> {
        let io = |e| DbError::Io {
            path: snapshot_dir.display().to_string(),
            source: e,
        };
        std::fs::create_dir_all(snapshot_dir).map_err(io)?;
        for entry in std::fs::read_dir(snapshot_dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                std::fs::remove_file(entry.path()).map_err(io)?;
            }
        }
        let record = match state.raft_record()? {
            Some(b) => RaftRecord::decode(&b)?,
            None => RaftRecord::default(),
        };
        Ok(StateMachine {
            state,
            dir: snapshot_dir.to_path_buf(),
            record: Arc::new(Mutex::new(record)),
            install_delay: std::time::Duration::ZERO,
            apply_delay: std::time::Duration::ZERO,
        })
    }

    /// The same state machine, each of whose installations first waits `delay`: a
    /// fault injected by tests.
    pub fn with_install_delay(mut self, delay: std::time::Duration) -> StateMachine {
        self.install_delay = delay;
        self
    }

    /// The same state machine, each of whose applications of committed entries first
    /// waits `delay`: a fault injected by tests.
    pub fn with_apply_delay(mut self, delay: std::time::Duration) -> StateMachine {
        self.apply_delay = delay;
        self
    }

    /// The state database.
    pub fn state(&self) -> &Arc<StateDb> {
        &self.state
    }

    fn record(&self) -> RaftRecord {
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_record(&self, r: RaftRecord) {
        *self.record.lock().unwrap_or_else(|p| p.into_inner()) = r;
    }

    fn read_current(dir: &Path) -> Result<Option<CurrentSnapshot>, io::Error> {
        match std::fs::read(dir.join("current")) {
            Ok(b) => {
                let stored = StoredCurrentSnapshot::decode(&b)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                Ok(Some(CurrentSnapshot {
                    meta: stored.meta.into(),
                    file: stored.file,
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes `file` (inside the snapshot dir) the current snapshot, atomically, and
    /// removes the files of older ones.
    fn write_current(dir: &Path, cur: &CurrentSnapshot) -> Result<(), io::Error> {
        let tmp = dir.join("current.tmp");
        let bytes = StoredCurrentSnapshot {
            meta: (&cur.meta).into(),
            file: cur.file.clone(),
        }
        .encode();
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, dir.join("current"))?;
        std::fs::File::open(dir)?.sync_all()?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".redb") && name != cur.file {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// Events an apply may hold and still run on the state machine's task.
pub const INLINE_APPLY_EVENTS_MAX: usize = 64;
/// Payload bytes (data and metadata) an apply may hold and still run on the task.
pub const INLINE_APPLY_BYTES_MAX: usize = 64 * 1024;

/// Whether applying `items` is short work: appends only (a delete or a snapshot may
/// touch a whole stream), within [`INLINE_APPLY_EVENTS_MAX`] and
/// [`INLINE_APPLY_BYTES_MAX`].
fn is_short(items: &[ApplyItem]) -> bool {
    let (mut events, mut bytes) = (0usize, 0usize);
    for item in items {
        let ApplyItem::Batch(batch) = item else {
            continue;
        };
        for command in &batch.commands {
            let Command::Append { events: evs, .. } = command else {
                return false;
            };
            events += evs.len();
            bytes += evs.iter().map(ProposedEvent::payload_len).sum::<usize>();
            if events > INLINE_APPLY_EVENTS_MAX || bytes > INLINE_APPLY_BYTES_MAX {
                return false;
            }
        }
    }
    true
}

fn file_name_for(id: &str) -> String {
    format!(
        "snap-{}.redb",
        id.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let state = self.state.clone();
        let dir = self.dir.clone();
        let tmp = dir.join(format!("building-{}.tmp", uuid::Uuid::new_v4()));
        let tmp2 = tmp.clone();
        let record_bytes = blocking(ErrorSubject::Snapshot(None), ErrorVerb::Write, move || {
            let _ = std::fs::remove_file(&tmp2);
            state.export(&tmp2)
        })
        .await?;
        let record = match record_bytes {
            Some(b) => RaftRecord::decode(&b).map_err(snap_err)?,
            None => RaftRecord::default(),
        };
        let snapshot_id = match record.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, uuid::Uuid::new_v4()),
            None => format!("empty-{}", uuid::Uuid::new_v4()),
        };
        let meta = SnapshotMeta {
            last_log_id: record.last_applied,
            last_membership: record.membership.clone(),
            snapshot_id: snapshot_id.clone(),
        };
        let file = file_name_for(&snapshot_id);
        let path = dir.join(&file);
        let cur = CurrentSnapshot {
            meta: meta.clone(),
            file: file.clone(),
        };
        let p2 = path.clone();
        blocking(ErrorSubject::Snapshot(None), ErrorVerb::Write, move || {
            std::fs::rename(&tmp, &p2)?;
            StateMachine::write_current(&dir, &cur)
        })
        .await?;
        let f = tokio::fs::File::open(&path).await.map_err(snap_err)?;
        tracing::info!(target: "reckon_db", snapshot_id = %meta.snapshot_id, "reckon_db.raft.snapshot.built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile { file: f, path }),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let r = self.record();
        Ok((r.last_applied, r.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResult>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        if !self.apply_delay.is_zero() {
            tokio::time::sleep(self.apply_delay).await;
        }
        let mut record = self.record();
        let mut items = Vec::new();
        for e in entries {
            record.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => items.push(ApplyItem::Empty),
                EntryPayload::Normal(batch) => items.push(ApplyItem::Batch(batch)),
                EntryPayload::Membership(m) => {
                    record.membership = StoredMembership::new(Some(e.log_id), m);
                    items.push(ApplyItem::Empty);
                }
            }
        }
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let bytes = record.encode();
        let subject = ErrorSubject::Apply(record.last_applied.unwrap_or_default());
        // A failure here is a storage fault, not a request error: openraft stops the
        // node rather than acknowledge writes that are not applied.
        let results = if is_short(&items) && !self.state.flush_due() {
            // A few small appends commit (not durably) in tens of microseconds: less
            // than the two thread hand-offs of the blocking pool would add to every
            // write's latency.
            self.state
                .apply(items, &bytes)
                .map_err(|e| storage_err(subject, ErrorVerb::Write, e))?
        } else {
            let state = self.state.clone();
            blocking(subject, ErrorVerb::Write, move || {
                let results = state.apply(items, &bytes)?;
                state.maybe_flush()?;
                Ok::<_, DbError>(results)
            })
            .await?
        };
        self.set_record(record);
        Ok(results.into_iter().map(Option::unwrap_or_default).collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<SnapshotFile>, StorageError<NodeId>> {
        let path = self
            .dir
            .join(format!("incoming-{}.tmp", uuid::Uuid::new_v4()));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(snap_err)?;
        Ok(Box::new(SnapshotFile { file, path }))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError<NodeId>> {
        let SnapshotFile { file, path } = *snapshot;
        file.sync_all().await.map_err(snap_err)?;
        drop(file);
        let state = self.state.clone();
        let dir = self.dir.clone();
        let file_name = file_name_for(&meta.snapshot_id);
        let cur = CurrentSnapshot {
            meta: meta.clone(),
            file: file_name.clone(),
        };
        let record = RaftRecord {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        let record_bytes = record.encode();
        if !self.install_delay.is_zero() {
            tokio::time::sleep(self.install_delay).await;
        }
        blocking(ErrorSubject::Snapshot(None), ErrorVerb::Write, move || {
            state.import(&path)?;
            // The snapshot's own record is authoritative for what it holds; store the
            // meta openraft gave, which describes the same log id.
            state.apply(Vec::new(), &record_bytes)?;
            state.flush()?;
            std::fs::rename(&path, dir.join(&file_name)).map_err(|e| DbError::Io {
                path: path.display().to_string(),
                source: e,
            })?;
            StateMachine::write_current(&dir, &cur).map_err(|e| DbError::Io {
                path: dir.display().to_string(),
                source: e,
            })
        })
        .await?;
        self.set_record(record);
        tracing::info!(target: "reckon_db", snapshot_id = %meta.snapshot_id, "reckon_db.raft.snapshot.installed");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let Some(cur) = Self::read_current(&self.dir).map_err(snap_err)? else {
            return Ok(None);
        };
        let path = self.dir.join(&cur.file);
        let file = tokio::fs::File::open(&path).await.map_err(snap_err)?;
        Ok(Some(Snapshot {
            meta: cur.meta,
            snapshot: Box::new(SnapshotFile { file, path }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{ContentType, ExpectedVersion, WriteBatch};

    fn append(events: usize, bytes_each: usize) -> Command {
        let event = ProposedEvent {
            event_id: uuid::Uuid::nil(),
            event_type: "t".into(),
            data: vec![b'x'; bytes_each],
            metadata: Vec::new(),
            content_type: ContentType::Json,
            tags: Vec::new(),
        };
        Command::Append {
            stream_id: "s".into(),
            expected: ExpectedVersion::Any,
            events: vec![event; events],
        }
    }

    fn batch(commands: Vec<Command>) -> ApplyItem {
        ApplyItem::Batch(WriteBatch {
            timestamp_us: 0,
            commands,
        })
    }

    #[test]
    fn only_a_few_small_appends_apply_on_the_task() {
        assert!(is_short(&[ApplyItem::Empty]));
        let singles =
            |n: usize| -> Vec<ApplyItem> { (0..n).map(|_| batch(vec![append(1, 200)])).collect() };
        assert!(is_short(&singles(64)));
        // Counted across entries, not per entry.
        assert!(!is_short(&singles(65)));
        assert!(!is_short(&[batch(vec![append(65, 1)])]));
        assert!(!is_short(&[batch(vec![append(
            1,
            INLINE_APPLY_BYTES_MAX + 1
        )])]));
        let delete = Command::Delete {
            stream_id: "s".into(),
            hard: true,
        };
        assert!(!is_short(&[batch(vec![append(1, 1), delete])]));
    }
}
