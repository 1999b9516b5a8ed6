//! The backups one store's node is writing or serving.
//!
//! [`Exports::begin`] takes a pinned view of the state (one redb read transaction, so
//! writes go on) and copies it, on the blocking pool, into `backups/<id>.body` beside
//! the store's files; then it checksums the copy and builds the file's head
//! ([`super::format`]). Clients read the file in chunks ([`Exports::chunk`]): the head
//! from memory, the body from the copy. A backup lives until [`Exports::end`], or
//! until no call has touched it for [`BACKUP_IDLE_MAX`] (a client that went away),
//! and at most [`BACKUPS_MAX`] live per store at once, each holding one copy of the
//! store on disk. Copies left by a node that stopped are removed when it opens.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reckon_gater::backup::{BackupInfo, BackupPhase, BackupState, BACKUP_CHUNK_BYTES_MAX};
use reckon_gater::emit;
use reckon_gater::telemetry as t;
use reckon_gater::types::StoreError;
use redb::{ReadableDatabase, ReadableTableMetadata};
use sha2::{Digest, Sha256};

use super::format::{hex, BackupHeader};
use crate::raft::format::StoredLogId;
use crate::storage::format::{Counters, Record, EVENTS, META, META_COUNTERS, STATE_FORMAT};
use crate::storage::state::StateView;
use crate::storage::StorageError;

/// Backups of one store a node holds at once (each is a copy of the store on disk).
pub const BACKUPS_MAX: usize = 2;

/// How long a backup no call has touched is kept: a client that went away does not
/// keep the copy's disk space for longer. Each call of a download touches it, so a
/// download of any size keeps it for as long as it reads.
pub const BACKUP_IDLE_MAX: Duration = Duration::from_secs(10 * 60);

/// How often idle backups are looked for.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Bytes read at a time while checksumming a copy.
const HASH_BUFFER_BYTES: usize = 1024 * 1024;

/// Where a backup's copy stands.
enum Stage {
    Copying,
    Checksumming,
    Ready {
        head: Arc<Vec<u8>>,
        info: BackupInfo,
    },
    Failed(String),
}

struct Export {
    id: String,
    body: PathBuf,
    stage: Mutex<Stage>,
    touched: Mutex<Instant>,
    /// Bytes checksummed, and to checksum.
    hashed: AtomicU64,
    to_hash: AtomicU64,
    /// Ended (or expired) while its copy was still being made: the copying task
    /// removes what it wrote.
    ended: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Export {
    fn touch(&self, now: Instant) {
        *lock(&self.touched) = now;
    }

    fn state(&self) -> Result<BackupState, StoreError> {
        let phase = match &*lock(&self.stage) {
            Stage::Copying => BackupPhase::Copying,
            Stage::Checksumming => BackupPhase::Checksumming {
                done_bytes: self.hashed.load(Ordering::Relaxed),
                total_bytes: self.to_hash.load(Ordering::Relaxed),
            },
            Stage::Ready { info, .. } => BackupPhase::Ready(info.clone()),
            Stage::Failed(reason) => {
                return Err(StoreError::Internal {
                    message: format!("backup {} failed: {reason}", self.id),
                })
            }
        };
        Ok(BackupState {
            id: self.id.clone(),
            phase,
        })
    }

    /// Removes the copy, now if it is made, else when its task finishes.
    fn discard(&self) {
        self.ended.store(true, Ordering::Release);
        if matches!(&*lock(&self.stage), Stage::Ready { .. } | Stage::Failed(_)) {
            let _ = std::fs::remove_file(&self.body);
        }
    }
}

/// The backups of one store on this node. Cheap to clone.
#[derive(Clone)]
pub struct Exports {
    inner: Arc<Inner>,
}

struct Inner {
    store: String,
    node_id: u64,
    dir: PathBuf,
    live: Mutex<HashMap<String, Arc<Export>>>,
    /// Extra time every chunk takes (a fault injected by tests).
    chunk_delay: Mutex<Duration>,
}

fn not_found(store: &str, node_id: u64, id: &str) -> StoreError {
    StoreError::NotFound {
        what: format!(
            "backup {id} of store {store:?} on node {node_id}: it was ended, sat idle \
             longer than {}s, or the node restarted or stopped leading; start the backup again",
            BACKUP_IDLE_MAX.as_secs()
        ),
    }
}

impl Exports {
    /// The backups of `store`, kept under `dir` (created when first needed); removes
    /// what a node that stopped left there, and looks for idle backups every
    /// [`SWEEP_EVERY`] while this value lives. Needs a tokio runtime.
    pub fn open(store: &str, node_id: u64, dir: &Path) -> Result<Exports, StorageError> {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StorageError::Io {
                    path: dir.display().to_string(),
                    source,
                })
            }
        }
        let exports = Exports {
            inner: Arc::new(Inner {
                store: store.to_string(),
                node_id,
                dir: dir.to_path_buf(),
                live: Mutex::new(HashMap::new()),
                chunk_delay: Mutex::new(Duration::ZERO),
            }),
        };
        let weak = Arc::downgrade(&exports.inner);
        tokio::spawn(sweeper(weak));
        Ok(exports)
    }

    /// The same backups, each of whose chunks first waits `delay`: a fault injected by
    /// tests (a large store over a slow link).
    pub fn with_chunk_delay(self, delay: Duration) -> Exports {
        *lock(&self.inner.chunk_delay) = delay;
        self
    }

    fn find(&self, id: &str, now: Instant) -> Result<Arc<Export>, StoreError> {
        let e = lock(&self.inner.live)
            .get(id)
            .cloned()
            .ok_or_else(|| not_found(&self.inner.store, self.inner.node_id, id))?;
        e.touch(now);
        Ok(e)
    }

    /// Ends every backup no call has touched for [`BACKUP_IDLE_MAX`] by `now`;
    /// returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        self.inner.sweep(now)
    }

    /// Starts a backup of the state `view` pinned, whose last applied entry is
    /// `last_applied`: copies it in the background and answers at once with its id.
    /// `Unavailable` when [`BACKUPS_MAX`] are live.
    pub fn begin(
        &self,
        view: StateView,
        last_applied: StoredLogId,
    ) -> Result<BackupState, StoreError> {
        let now = Instant::now();
        self.inner.sweep(now);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let export = Arc::new(Export {
            body: self.inner.dir.join(format!("{id}.body")),
            id: id.clone(),
            stage: Mutex::new(Stage::Copying),
            touched: Mutex::new(now),
            hashed: AtomicU64::new(0),
            to_hash: AtomicU64::new(0),
            ended: AtomicBool::new(false),
        });
        {
            let mut live = lock(&self.inner.live);
            if live.len() >= BACKUPS_MAX {
                return Err(StoreError::Unavailable {
                    reason: format!(
                        "{} backups of store {:?} are under way on node {} (at most {BACKUPS_MAX}); \
                         try again when one is done",
                        live.len(),
                        self.inner.store,
                        self.inner.node_id
                    ),
                });
            }
            live.insert(id.clone(), export.clone());
        }
        let inner = self.inner.clone();
        emit!(t::BACKUP_STARTED, "store" => inner.store.as_str(), "node_id" => inner.node_id, "backup" => id.as_str(), "last_log_index" => last_applied.index);
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let made = make(&inner, &export, view, last_applied);
            let mut stage = lock(&export.stage);
            match made {
                Ok((head, info)) => {
                    emit!(t::BACKUP_READY, "store" => inner.store.as_str(), "node_id" => inner.node_id, "backup" => export.id.as_str(), "size_bytes" => info.bytes, "duration_us" => started.elapsed());
                    *stage = Stage::Ready {
                        head: Arc::new(head),
                        info,
                    };
                }
                Err(e) => {
                    tracing::error!(target: "reckon_db", store = %inner.store, backup = %export.id, error = %e, "backup failed");
                    emit!(t::BACKUP_ENDED, "store" => inner.store.as_str(), "node_id" => inner.node_id, "backup" => export.id.as_str(), "reason" => "failed", "error" => e.to_string());
                    *stage = Stage::Failed(e.to_string());
                    let _ = std::fs::remove_file(&export.body);
                }
            }
            if export.ended.load(Ordering::Acquire) {
                let _ = std::fs::remove_file(&export.body);
            }
        });
        Ok(BackupState {
            id,
            phase: BackupPhase::Copying,
        })
    }

    /// How the backup `id` goes. A failed one answers its failure once and is gone.
    pub fn status(&self, id: &str) -> Result<BackupState, StoreError> {
        let e = self.find(id, Instant::now())?;
        let state = e.state();
        if state.is_err() {
            lock(&self.inner.live).remove(id);
        }
        state
    }

    /// Up to `max_bytes` (at most [`BACKUP_CHUNK_BYTES_MAX`]) of the ready backup
    /// `id`'s file from `offset`; empty at its end.
    pub async fn chunk(
        &self,
        id: &str,
        offset: u64,
        max_bytes: u32,
    ) -> Result<Vec<u8>, StoreError> {
        let e = self.find(id, Instant::now())?;
        let (head, info) = match &*lock(&e.stage) {
            Stage::Ready { head, info } => (head.clone(), info.clone()),
            _ => {
                return Err(StoreError::invalid(
                    "id",
                    format!("backup {id} is not ready yet: ask BackupStatus until it is"),
                ))
            }
        };
        let delay = *lock(&self.inner.chunk_delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let want = u64::from(max_bytes.min(BACKUP_CHUNK_BYTES_MAX));
        let end = offset.saturating_add(want).min(info.bytes);
        if offset >= end {
            return Ok(Vec::new());
        }
        let body = e.body.clone();
        let read = tokio::task::spawn_blocking(move || read_range(&head, &body, offset, end)).await;
        match read {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(err)) => Err(StoreError::Internal {
                message: format!("cannot read backup {id}: {err}"),
            }),
            Err(join) => Err(StoreError::Internal {
                message: format!("reading backup {id} failed: {join}"),
            }),
        }
    }

    /// Ends the backup `id` and removes its copy.
    pub fn end(&self, id: &str) -> Result<(), StoreError> {
        let e = lock(&self.inner.live)
            .remove(id)
            .ok_or_else(|| not_found(&self.inner.store, self.inner.node_id, id))?;
        e.discard();
        emit!(t::BACKUP_ENDED, "store" => self.inner.store.as_str(), "node_id" => self.inner.node_id, "backup" => id, "reason" => "ended");
        Ok(())
    }

    /// Backups live now.
    pub fn live(&self) -> usize {
        lock(&self.inner.live).len()
    }
}

impl Inner {
    fn sweep(&self, now: Instant) -> usize {
        let mut live = lock(&self.live);
        let idle: Vec<String> = live
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(*lock(&e.touched)) >= BACKUP_IDLE_MAX)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &idle {
            if let Some(e) = live.remove(id) {
                emit!(t::BACKUP_ENDED, "store" => self.store.as_str(), "node_id" => self.node_id, "backup" => id.as_str(), "reason" => "expired");
                e.discard();
            }
        }
        idle.len()
    }
}

async fn sweeper(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(inner) = inner.upgrade() else { return };
        inner.sweep(Instant::now());
    }
}

/// Copies the view into the export's body file, checksums it and builds the head.
fn make(
    inner: &Inner,
    export: &Export,
    view: StateView,
    last_applied: StoredLogId,
) -> Result<(Vec<u8>, BackupInfo), StorageError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| StorageError::Io { path, source }
    };
    std::fs::create_dir_all(&inner.dir).map_err(io(&inner.dir))?;
    let created_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    view.write_to(&export.body)?;
    // The read transaction is let go as soon as its copy is made.
    drop(view);
    let (next_position, events) = {
        let db = redb::ReadOnlyDatabase::open(&export.body)?;
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        let counters = match meta.get(META_COUNTERS)? {
            Some(v) => Counters::decode(v.value())?,
            None => Counters::default(),
        };
        let events = txn.open_table(EVENTS)?.len()?;
        (counters.next_position, events)
    };
    *lock(&export.stage) = Stage::Checksumming;
    let mut file = std::fs::File::open(&export.body).map_err(io(&export.body))?;
    let body_bytes = file.metadata().map_err(io(&export.body))?.len();
    export.to_hash.store(body_bytes, Ordering::Relaxed);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_BUFFER_BYTES];
    let mut hashed = 0u64;
    loop {
        if export.ended.load(Ordering::Acquire) {
            // Nobody will read it: stop here.
            return Err(StorageError::Io {
                path: export.body.display().to_string(),
                source: std::io::Error::other("the backup was ended before its copy was made"),
            });
        }
        let n = file.read(&mut buf).map_err(io(&export.body))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        hashed += n as u64;
        export.hashed.store(hashed, Ordering::Relaxed);
    }
    let body_sha256: [u8; 32] = hasher.finalize().into();
    let header = BackupHeader {
        store: inner.store.clone(),
        node_id: inner.node_id,
        last_applied,
        next_position,
        events,
        created_us,
        state_format: STATE_FORMAT,
        body_bytes: hashed,
        body_sha256,
    };
    let head = header.encode();
    let info = BackupInfo {
        id: export.id.clone(),
        store: inner.store.clone(),
        node_id: inner.node_id,
        last_log_term: last_applied.term,
        last_log_index: last_applied.index,
        next_position,
        events,
        created_us,
        bytes: head.len() as u64 + hashed,
        header_bytes: head.len() as u64,
        body_sha256: hex(&body_sha256),
    };
    Ok((head, info))
}

/// Bytes `[from, to)` of the file made of `head` then the body file.
fn read_range(head: &[u8], body: &Path, from: u64, to: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut out = Vec::with_capacity((to - from) as usize);
    let head_len = head.len() as u64;
    if from < head_len {
        out.extend_from_slice(&head[from as usize..to.min(head_len) as usize]);
    }
    if to > head_len {
        let start = from.max(head_len);
        let mut buf = vec![0u8; (to - start) as usize];
        std::fs::File::open(body)?.read_exact_at(&mut buf, start - head_len)?;
        out.extend_from_slice(&buf);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_spans_the_head_and_the_body() {
        let dir = tempfile::tempdir().unwrap();
        let body = dir.path().join("b");
        std::fs::write(&body, b"0123456789").unwrap();
        let head = b"HEAD";
        assert_eq!(read_range(head, &body, 0, 4).unwrap(), b"HEAD");
        assert_eq!(read_range(head, &body, 2, 7).unwrap(), b"AD012");
        assert_eq!(read_range(head, &body, 10, 14).unwrap(), b"6789");
        assert!(read_range(head, &body, 10, 15).is_err(), "past the end");
    }

    #[tokio::test]
    async fn a_backup_is_served_until_ended_and_an_idle_one_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::storage::StateDb::open(&dir.path().join("state.redb")).unwrap();
        let exports = Exports::open("default", 1, &dir.path().join("backups")).unwrap();
        let last = StoredLogId {
            term: 1,
            node_id: 1,
            index: 3,
        };
        let begin = || exports.begin(state.view().unwrap(), last);
        let id = begin().unwrap().id;
        let info = loop {
            match exports.status(&id).unwrap().phase {
                BackupPhase::Ready(info) => break info,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        assert_eq!(info.last_log_index, 3);
        let mut file = Vec::new();
        while (file.len() as u64) < info.bytes {
            let c = exports
                .chunk(&id, file.len() as u64, BACKUP_CHUNK_BYTES_MAX)
                .await
                .unwrap();
            assert!(!c.is_empty());
            file.extend_from_slice(&c);
        }
        assert!(exports.chunk(&id, info.bytes, 10).await.unwrap().is_empty());
        let head =
            super::super::format::read_head(&mut &file[..], Path::new("x"), info.bytes).unwrap();
        assert_eq!(head.header.last_applied, last);
        assert_eq!(hex(&head.header.body_sha256), info.body_sha256);

        // At most BACKUPS_MAX at once.
        let second = begin().unwrap().id;
        let refused = begin().unwrap_err();
        assert!(
            matches!(refused, StoreError::Unavailable { .. }),
            "{refused}"
        );
        exports.end(&id).unwrap();
        assert!(matches!(exports.end(&id), Err(StoreError::NotFound { .. })));
        assert!(matches!(
            exports.status(&id),
            Err(StoreError::NotFound { .. })
        ));

        // Nobody touches the second one: it goes after the idle limit, not before.
        assert_eq!(exports.sweep(Instant::now()), 0);
        assert_eq!(exports.sweep(Instant::now() + BACKUP_IDLE_MAX), 1);
        assert_eq!(exports.live(), 0);
        assert!(matches!(
            exports.status(&second),
            Err(StoreError::NotFound { .. })
        ));
        // Its copy goes with it, once made.
        let left = || {
            std::fs::read_dir(dir.path().join("backups"))
                .map(|d| d.count())
                .unwrap_or(0)
        };
        for _ in 0..1000 {
            if left() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(left(), 0, "copies left behind");
    }
}
