//! The Raft state machine over [`StateDb`], and snapshots of it.
//!
//! The applied log id and membership are stored by [`StateDb::apply`] in the same
//! transaction as the effects of the entries, so the two never disagree.
//!
//! The state file is its own snapshot. Building one ([`StateDb::checkpoint`]) makes
//! the applied state durable and records its point in `snapshots/current` (replaced
//! atomically by rename), behind which openraft may purge the log: no copy is made,
//! so a snapshot costs one fsync however large the store, and the disk holds the
//! state once. A copy is made only when a follower needs one: the current snapshot
//! handed out for sending is the state as one read transaction saw it then (writes
//! go on), copied into `snapshots/export-<id>.redb` when the transfer first reads it
//! ([`SnapshotFile::ready`]), served to other followers while a transfer still
//! reads it (and while no newer snapshot is built), and removed when the last
//! transfer reading it is done. Installing one replaces the whole state in one transaction,
//! after which the received file is removed. What is stored in `current` is laid out
//! by [`super::format`].

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
use crate::storage::state::StateView;
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

/// A snapshot's data: a file being written or read, or the state as a read
/// transaction saw it, copied into its file when first needed.
pub struct SnapshotFile {
    path: PathBuf,
    data: Data,
    /// Held by every transfer reading a copy of the state: the copy is removed when
    /// the last one is done.
    export: Option<Arc<ExportFile>>,
}

/// A copy of the state made for transfers; removed when dropped.
#[derive(Debug)]
struct ExportFile(PathBuf);

impl Drop for ExportFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

enum Data {
    Open(tokio::fs::File),
    /// To be copied into `path` by [`SnapshotFile::ready`].
    Pending(Box<Pending>),
    /// None: a snapshot whose meta is all its holder needs, or a failed copy.
    Absent(&'static str),
}

struct Pending {
    view: StateView,
    meta: SnapshotMeta<NodeId, BasicNode>,
    exported: Arc<Mutex<Option<Exported>>>,
}

impl std::fmt::Debug for SnapshotFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let data = match &self.data {
            Data::Open(_) => "open",
            Data::Pending(_) => "pending",
            Data::Absent(why) => why,
        };
        f.debug_struct("SnapshotFile")
            .field("path", &self.path)
            .field("data", &data)
            .finish()
    }
}

/// A finished copy of the state that serves further transfers while one still
/// reads it.
#[derive(Debug, Clone)]
struct Exported {
    meta: SnapshotMeta<NodeId, BasicNode>,
    file: std::sync::Weak<ExportFile>,
}

impl SnapshotFile {
    /// Opens the snapshot file at `path` for reading.
    pub async fn open(path: &Path) -> io::Result<SnapshotFile> {
        Ok(SnapshotFile {
            data: Data::Open(tokio::fs::File::open(path).await?),
            path: path.to_path_buf(),
            export: None,
        })
    }

    fn absent(why: &'static str) -> SnapshotFile {
        SnapshotFile {
            path: PathBuf::new(),
            data: Data::Absent(why),
            export: None,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the data readable: the state a pending snapshot viewed is copied into its
    /// file first, which takes as long as writing the whole store takes (the caller
    /// waits for local work, with no deadline). Nothing to do for an open file.
    pub async fn ready(&mut self) -> io::Result<()> {
        let pending = match std::mem::replace(&mut self.data, Data::Absent("copy failed")) {
            Data::Pending(p) => p,
            other => {
                self.data = other;
                return match &self.data {
                    Data::Open(_) => Ok(()),
                    Data::Absent(why) => Err(no_data(why)),
                    Data::Pending(_) => unreachable!("just matched"),
                };
            }
        };
        let Pending {
            view,
            meta,
            exported,
        } = *pending;
        let path = self.path.clone();
        let started = std::time::Instant::now();
        let written = tokio::task::spawn_blocking(move || {
            let tmp = path.with_extension("tmp");
            let _ = std::fs::remove_file(&tmp);
            view.write_to(&tmp).map_err(io::Error::other)?;
            std::fs::rename(&tmp, &path)?;
            Ok::<_, io::Error>(path)
        })
        .await
        .map_err(io::Error::other)??;
        tracing::info!(target: "reckon_db", snapshot_id = %meta.snapshot_id, duration_ms = started.elapsed().as_millis() as u64, "reckon_db.raft.snapshot.exported");
        let file = Arc::new(ExportFile(written.clone()));
        *exported.lock().unwrap_or_else(|p| p.into_inner()) = Some(Exported {
            meta,
            file: Arc::downgrade(&file),
        });
        self.export = Some(file);
        self.data = Data::Open(tokio::fs::File::open(&written).await?);
        Ok(())
    }

    fn file(&mut self) -> io::Result<&mut tokio::fs::File> {
        match &mut self.data {
            Data::Open(f) => Ok(f),
            Data::Pending(_) => Err(no_data("not copied yet: call SnapshotFile::ready first")),
            Data::Absent(why) => Err(no_data(why)),
        }
    }
}

fn no_data(why: &str) -> io::Error {
    io::Error::other(format!("snapshot data unavailable: {why}"))
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.file() {
            Ok(f) => Pin::new(f).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.file() {
            Ok(f) => Pin::new(f).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.file() {
            Ok(f) => Pin::new(f).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.file() {
            Ok(f) => Pin::new(f).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(self.file()?).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match self.file() {
            Ok(f) => Pin::new(f).poll_complete(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
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
    /// The last copy of the state made for a transfer, served to other transfers while
    /// one still reads it and no newer snapshot is built.
    exported: Arc<Mutex<Option<Exported>>>,
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
        // The state file is the snapshot: `current` names no copy (nodes before this
        // one kept a copy of the state there, made durable beside it). Exports are
        // made again when needed.
        let old_style = Self::read_current(snapshot_dir)
            .map_err(io)?
            .filter(|c| !c.file.is_empty());
        Self::write_current(snapshot_dir, old_style.as_ref()).map_err(io)?;
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
            exported: Arc::new(Mutex::new(None)),
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

    /// Makes `cur` the current snapshot, atomically (none: leaves `current` as it
    /// is), and removes every copy of the state in the directory: exports made for
    /// older snapshots, and the copies older nodes kept.
    fn write_current(dir: &Path, cur: Option<&CurrentSnapshot>) -> Result<(), io::Error> {
        if let Some(cur) = cur {
            let tmp = dir.join("current.tmp");
            let bytes = StoredCurrentSnapshot {
                meta: (&cur.meta).into(),
                file: String::new(),
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
        }
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().ends_with(".redb") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Forgets the served copy of the state (its file is removed by
    /// [`write_current`](Self::write_current)).
    fn forget_export(&self) {
        *self.exported.lock().unwrap_or_else(|p| p.into_inner()) = None;
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

fn export_name_for(id: &str) -> String {
    format!(
        "export-{}.redb",
        id.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

/// The meta of a snapshot of the state whose Raft record is `record`.
fn meta_of(record: RaftRecord) -> SnapshotMeta<NodeId, BasicNode> {
    let snapshot_id = match record.last_applied {
        Some(l) => format!("{}-{}-{}", l.leader_id, l.index, uuid::Uuid::new_v4()),
        None => format!("empty-{}", uuid::Uuid::new_v4()),
    };
    SnapshotMeta {
        last_log_id: record.last_applied,
        last_membership: record.membership,
        snapshot_id,
    }
}

fn record_of(bytes: Option<&[u8]>) -> Result<RaftRecord, DbError> {
    match bytes {
        Some(b) => RaftRecord::decode(b),
        None => Ok(RaftRecord::default()),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    /// Makes the applied state durable and records its point as the current snapshot:
    /// one fsync, no copy (see the module docs). openraft takes only the meta.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let state = self.state.clone();
        let record_bytes = blocking(ErrorSubject::Snapshot(None), ErrorVerb::Write, move || {
            state.checkpoint()
        })
        .await?;
        let meta = meta_of(record_of(record_bytes.as_deref()).map_err(snap_err)?);
        let cur = CurrentSnapshot {
            meta: meta.clone(),
            file: String::new(),
        };
        let dir = self.dir.clone();
        self.forget_export();
        blocking(ErrorSubject::Snapshot(None), ErrorVerb::Write, move || {
            StateMachine::write_current(&dir, Some(&cur))
        })
        .await?;
        tracing::info!(target: "reckon_db", snapshot_id = %meta.snapshot_id, "reckon_db.raft.snapshot.built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile::absent(
                "a built snapshot carries its meta only",
            )),
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
        Ok(Box::new(SnapshotFile {
            data: Data::Open(file),
            path,
            export: None,
        }))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        mut snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError<NodeId>> {
        snapshot.ready().await.map_err(snap_err)?;
        let path = snapshot.path.clone();
        if let Data::Open(file) = &snapshot.data {
            file.sync_all().await.map_err(snap_err)?;
        }
        // A copy made here (rather than received) lives until it is imported.
        let copy = snapshot.export.take();
        drop(snapshot);
        let state = self.state.clone();
        let dir = self.dir.clone();
        let cur = CurrentSnapshot {
            meta: meta.clone(),
            file: String::new(),
        };
        let record = RaftRecord {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        let record_bytes = record.encode();
        if !self.install_delay.is_zero() {
            tokio::time::sleep(self.install_delay).await;
        }
        self.forget_export();
        blocking(ErrorSubject::Snapshot(None), ErrorVerb::Write, move || {
            state.import(&path)?;
            drop(copy);
            // The snapshot's own record is authoritative for what it holds; store the
            // meta openraft gave, which describes the same log id.
            state.apply(Vec::new(), &record_bytes)?;
            state.flush()?;
            // The state now holds the snapshot: what was received is not kept.
            if path.parent() == Some(dir.as_path()) {
                let _ = std::fs::remove_file(&path);
            }
            StateMachine::write_current(&dir, Some(&cur)).map_err(|e| DbError::Io {
                path: dir.display().to_string(),
                source: e,
            })
        })
        .await?;
        self.set_record(record);
        tracing::info!(target: "reckon_db", snapshot_id = %meta.snapshot_id, "reckon_db.raft.snapshot.installed");
        Ok(())
    }

    /// The state as it stands now, as the current snapshot's data: its meta at once,
    /// its copy made when a transfer first reads it ([`SnapshotFile::ready`]). A copy
    /// already made for a snapshot at least as new serves again.
    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let Some(cur) = Self::read_current(&self.dir).map_err(snap_err)? else {
            return Ok(None);
        };
        let served = self
            .exported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(e) = served.filter(|e| e.meta.last_log_id >= cur.meta.last_log_id) {
            if let Some(export) = e.file.upgrade() {
                if let Ok(mut file) = SnapshotFile::open(&export.0).await {
                    file.export = Some(export);
                    return Ok(Some(Snapshot {
                        meta: e.meta,
                        snapshot: Box::new(file),
                    }));
                }
            }
        }
        let view = self.state.view().map_err(snap_err)?;
        let record = record_of(view.raft_record()).map_err(snap_err)?;
        // Nothing applied since the snapshot was built: it is that snapshot.
        let meta = if record.last_applied == cur.meta.last_log_id {
            cur.meta
        } else {
            meta_of(record)
        };
        let path = self.dir.join(export_name_for(&meta.snapshot_id));
        Ok(Some(Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(SnapshotFile {
                path,
                export: None,
                data: Data::Pending(Box::new(Pending {
                    view,
                    meta,
                    exported: self.exported.clone(),
                })),
            }),
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

    fn entry(index: u64, events: usize) -> Entry<TypeConfig> {
        let evs = (0..events)
            .map(|_| ProposedEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: "t".into(),
                data: b"{}".to_vec(),
                metadata: Vec::new(),
                content_type: ContentType::Json,
                tags: Vec::new(),
            })
            .collect();
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(WriteBatch {
                timestamp_us: 1,
                commands: vec![Command::Append {
                    stream_id: "s".into(),
                    expected: ExpectedVersion::Any,
                    events: evs,
                }],
            }),
        }
    }

    fn copies_in(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".redb")
            })
            .count()
    }

    fn open_sm(dir: &Path) -> StateMachine {
        let state = Arc::new(StateDb::open(&dir.join("state.redb")).unwrap());
        StateMachine::open(state, &dir.join("snapshots")).unwrap()
    }

    async fn build(sm: &mut StateMachine) -> SnapshotMeta<NodeId, BasicNode> {
        let mut b = sm.get_snapshot_builder().await;
        b.build_snapshot().await.unwrap().meta
    }

    fn next_position(sm: &StateMachine) -> u64 {
        sm.state().read().unwrap().stats().unwrap().next_position
    }

    #[tokio::test]
    async fn a_snapshot_is_the_state_itself_and_a_copy_is_made_only_for_a_transfer() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = dir.path().join("snapshots");
        let mut sm = open_sm(dir.path());
        sm.apply(vec![entry(1, 10)]).await.unwrap();
        let built = build(&mut sm).await;
        assert_eq!(built.last_log_id.unwrap().index, 1);
        assert_eq!(copies_in(&snaps), 0, "building copies nothing");

        // Handed out for a transfer: the state as it stands, copied when read.
        sm.apply(vec![entry(2, 10)]).await.unwrap();
        let mut cur = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(cur.meta.last_log_id.unwrap().index, 2);
        assert_ne!(cur.meta.snapshot_id, built.snapshot_id);
        assert_eq!(copies_in(&snaps), 0, "nothing copied before it is read");
        cur.snapshot.ready().await.unwrap();
        assert_eq!(copies_in(&snaps), 1);
        let again = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(
            again.meta, cur.meta,
            "the copy serves a concurrent transfer"
        );
        drop(again);
        assert_eq!(copies_in(&snaps), 1, "still read by the first transfer");

        // Received and installed by another node, which keeps no copy.
        let dir2 = tempfile::tempdir().unwrap();
        let mut sm2 = open_sm(dir2.path());
        let mut incoming = sm2.begin_receiving_snapshot().await.unwrap();
        tokio::io::copy(&mut cur.snapshot, &mut *incoming)
            .await
            .unwrap();
        sm2.install_snapshot(&cur.meta, incoming).await.unwrap();
        assert_eq!(next_position(&sm2), 20);
        assert_eq!(copies_in(&dir2.path().join("snapshots")), 0);
        let installed = sm2.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(installed.meta, cur.meta);
        drop(cur);
        assert_eq!(copies_in(&snaps), 0, "removed once no transfer reads it");

        // The next snapshot built supersedes the copy, which goes.
        sm.apply(vec![entry(3, 1)]).await.unwrap();
        build(&mut sm).await;
        assert_eq!(copies_in(&snaps), 0);
    }

    #[tokio::test]
    async fn a_copy_kept_by_an_older_node_is_removed_and_its_point_kept() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = dir.path().join("snapshots");
        let meta = {
            let mut sm = open_sm(dir.path());
            sm.apply(vec![entry(1, 3)]).await.unwrap();
            build(&mut sm).await
        };
        // What an older node left: `current` naming a copy of the state beside it.
        std::fs::write(snaps.join("snap-old.redb"), b"a copy").unwrap();
        let old = StoredCurrentSnapshot {
            meta: (&meta).into(),
            file: "snap-old.redb".into(),
        };
        std::fs::write(snaps.join("current"), old.encode()).unwrap();
        let mut sm = open_sm(dir.path());
        assert_eq!(copies_in(&snaps), 0);
        let cur = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(cur.meta, meta);
        let stored =
            StoredCurrentSnapshot::decode(&std::fs::read(snaps.join("current")).unwrap()).unwrap();
        assert_eq!(stored.file, "");
    }
}
