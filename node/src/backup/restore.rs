//! Seeding a data directory from backup files: `reckon-node restore`.
//!
//! A restored store is a group of one: this node, as its only voter, holding the
//! backup's state as its current Raft snapshot, with an empty log behind it.
//!
//! ```text
//!  DIR/<store>/state.redb        the backup's body; its Raft record rewritten:
//!                                applied = the backup's last entry X,
//!                                membership = { this node } set at X
//!  DIR/<store>/snapshots/current the state file is the snapshot at X
//!  DIR/<store>/log.redb          no entries; purged up to X; a vote this node
//!                                won for the term after X's
//! ```
//!
//! openraft then starts with its state machine at X and, this node being the only
//! voter with a committed vote of its own, leads at once (a single node), or leads a
//! new cluster whose other members join it as learners and catch up from its
//! snapshot (cluster mode: a node that finds the store formed joins it). The term
//! after X's keeps every log id it writes after those of the backup.
//!
//! Nothing is written before every file has been read whole and checked: each head
//! ([`read_head`]) first, then the data directory (it must be new or empty), then
//! each body is copied into a directory beside the data directory while its
//! checksum is taken, and only when all of it checks and is on disk is that
//! directory renamed to the data directory. A failure on the way removes it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::format::{read_head, BackupFileError, BackupHeader, BodyDigest, Head};
use crate::raft::format::{
    StoredCurrentSnapshot, StoredLogId, StoredMembership, StoredMembershipAt, StoredNode,
    StoredSnapshotMeta, StoredVote, LOG, LOG_META, META_LAST_PURGED, META_VOTE,
};
use crate::raft::state_machine::RaftRecord;
use crate::storage::format::Record;
use crate::storage::{StateDb, StorageError};

/// Memory caching the state file while it is prepared.
const RESTORE_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Bytes copied at a time.
const COPY_BUFFER_BYTES: usize = 1024 * 1024;

/// Files one restore takes at most (one per store).
pub const RESTORE_FILES_MAX: usize = 1024;

/// Who the restored node is: the same `node_id` and address it will run with.
#[derive(Debug, Clone)]
pub struct RestoreTarget {
    /// The data directory to create (or fill, when empty).
    pub data_dir: PathBuf,
    /// The node's id.
    pub node_id: u64,
    /// The address peers and gaters dial (`advertise`, or `listen`).
    pub advertise: String,
}

/// A store restored.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The file it came from.
    pub from: PathBuf,
    /// What the backup holds.
    pub header: BackupHeader,
}

/// Why nothing was restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// A backup file is damaged, truncated, of another format or unreadable.
    #[error(transparent)]
    File(#[from] BackupFileError),
    /// The data directory holds something.
    #[error(
        "data directory {} is not empty (it holds {}): restore only into a new or empty \
         directory, so that nothing there is overwritten",
        path.display(),
        holds.join(", ")
    )]
    DataDirNotEmpty {
        /// The directory.
        path: PathBuf,
        /// Some of what it holds.
        holds: Vec<String>,
    },
    /// Two files hold the same store.
    #[error("{} and {} both hold store {store:?}: give one file per store", first.display(), second.display())]
    SameStore {
        /// The store.
        store: String,
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// No file was given, or too many.
    #[error("give between 1 and {RESTORE_FILES_MAX} backup files (--from), {given} given")]
    Files {
        /// How many were given.
        given: usize,
    },
    /// The address to restore for is not one peers could dial.
    #[error(
        "the node's address {addr:?} has no fixed port: the restored store records the \
         address its members dial, so give the one the node will run with (--listen \
         HOST:PORT, or the `advertise` key)"
    )]
    Address {
        /// The address.
        addr: String,
    },
    /// The body does not open as a state file, or says something else than its header.
    #[error("{}: the backup's state file {reason}", path.display())]
    State {
        /// The backup file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Writing the new data directory failed; nothing was left.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `from`, with each directory replaced by the `*.rbk` files in it (by name).
pub fn backup_files(from: &[PathBuf]) -> Result<Vec<PathBuf>, RestoreError> {
    let mut out = Vec::new();
    for p in from {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|source| BackupFileError::Io {
                    path: p.clone(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "rbk"))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// An opened, checked head of one file.
struct Opened {
    path: PathBuf,
    file: std::fs::File,
    head: Head,
}

fn open(path: &Path) -> Result<Opened, BackupFileError> {
    let io = |source| BackupFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let head = read_head(&mut file, path, len)?;
    Ok(Opened {
        path: path.to_path_buf(),
        file,
        head,
    })
}

/// Whether `dir` is missing or empty; what it holds when not.
fn check_empty(dir: &Path) -> Result<(), RestoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_at(dir)(e)),
    };
    let holds: Vec<String> = entries
        .take(5)
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    if holds.is_empty() {
        Ok(())
    } else {
        Err(RestoreError::DataDirNotEmpty {
            path: dir.to_path_buf(),
            holds,
        })
    }
}

/// Restores the stores in the backup files `from` into `target.data_dir` for the
/// node `target` names. Every file is checked before anything is written, and either
/// every store is restored or nothing is (see the module docs).
pub fn restore(from: &[PathBuf], target: &RestoreTarget) -> Result<Vec<Restored>, RestoreError> {
    if from.is_empty() || from.len() > RESTORE_FILES_MAX {
        return Err(RestoreError::Files { given: from.len() });
    }
    if target.advertise.ends_with(":0") || !target.advertise.contains(':') {
        return Err(RestoreError::Address {
            addr: target.advertise.clone(),
        });
    }
    let mut opened: Vec<Opened> = Vec::with_capacity(from.len());
    for path in from {
        let o = open(path)?;
        if let Some(first) = opened
            .iter()
            .find(|p| p.head.header.store == o.head.header.store)
        {
            return Err(RestoreError::SameStore {
                store: o.head.header.store.clone(),
                first: first.path.clone(),
                second: o.path.clone(),
            });
        }
        opened.push(o);
    }
    check_empty(&target.data_dir)?;
    let parent = match target.data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io_at(&parent))?;
    let name = target
        .data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let tmp = parent.join(format!(".{name}.restore-{}", uuid::Uuid::new_v4().simple()));
    let built = (|| {
        std::fs::create_dir(&tmp).map_err(io_at(&tmp))?;
        let mut out = Vec::with_capacity(opened.len());
        for o in opened {
            out.push(seed(o, &tmp, target)?);
        }
        sync_dir(&tmp)?;
        // An empty directory is replaced by the rename; a missing one is made by it.
        if target.data_dir.exists() {
            std::fs::remove_dir(&target.data_dir).map_err(io_at(&target.data_dir))?;
        }
        std::fs::rename(&tmp, &target.data_dir).map_err(io_at(&target.data_dir))?;
        sync_dir(&parent)?;
        Ok(out)
    })();
    if built.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    built
}

fn sync_dir(dir: &Path) -> Result<(), RestoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), RestoreError> {
    let mut f = std::fs::File::create(path).map_err(io_at(path))?;
    f.write_all(bytes).map_err(io_at(path))?;
    f.sync_all().map_err(io_at(path))
}

/// Writes one store's files under `root` from the checked head `o`, checking its body
/// as it is copied.
fn seed(mut o: Opened, root: &Path, target: &RestoreTarget) -> Result<Restored, RestoreError> {
    let header = o.head.header.clone();
    let dir = root.join(&header.store);
    let snapshots = dir.join("snapshots");
    std::fs::create_dir_all(&snapshots).map_err(io_at(&snapshots))?;

    // The body, checked as it is copied.
    let state_path = dir.join("state.redb");
    {
        let mut out = std::fs::File::create(&state_path).map_err(io_at(&state_path))?;
        let mut digest = BodyDigest::default();
        let mut buf = vec![0u8; COPY_BUFFER_BYTES];
        let mut left = header.body_bytes;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            o.file
                .read_exact(&mut buf[..want])
                .map_err(|source| BackupFileError::Io {
                    path: o.path.clone(),
                    source,
                })?;
            digest.update(&buf[..want]);
            out.write_all(&buf[..want]).map_err(io_at(&state_path))?;
            left -= want as u64;
        }
        digest.check(&header, &o.path)?;
        out.sync_all().map_err(io_at(&state_path))?;
    }

    // This node alone, from the backup's last entry on.
    let at = header.last_applied;
    let membership = StoredMembershipAt {
        log_id: Some(at),
        membership: StoredMembership {
            configs: vec![BTreeSet::from([target.node_id])],
            nodes: BTreeMap::from([(
                target.node_id,
                StoredNode {
                    addr: target.advertise.clone(),
                },
            )]),
        },
    };
    let state_err = |reason: String| RestoreError::State {
        path: o.path.clone(),
        reason,
    };
    {
        // Opening upgrades a body of an older state format, and refuses a newer one.
        let state = StateDb::open_with_cache(&state_path, RESTORE_CACHE_BYTES).map_err(|e| {
            state_err(match e {
                StorageError::Format { .. } => e.to_string(),
                e => format!("does not open ({e}): the file is damaged or not a state file"),
            })
        })?;
        let record = state
            .raft_record()
            .map_err(|e| state_err(e.to_string()))?
            .map(|b| RaftRecord::decode(&b))
            .transpose()
            .map_err(|e| state_err(e.to_string()))?
            .unwrap_or_default();
        let found = record.last_applied.map(StoredLogId::from);
        if found != Some(at) {
            return Err(state_err(format!(
                "reflects Raft entry {found:?}, its header says {at:?}: the file is damaged"
            )));
        }
        let next = state
            .read()
            .and_then(|r| r.stats())
            .map_err(|e| state_err(e.to_string()))?
            .next_position;
        if next != header.next_position {
            return Err(state_err(format!(
                "holds positions below {next}, its header says {}: the file is damaged",
                header.next_position
            )));
        }
        let record = RaftRecord {
            last_applied: Some(at.into()),
            membership: membership.clone().into(),
        };
        // Durable: `flush` commits with an fsync everything before it.
        state
            .apply(Vec::new(), &record.encode())
            .and_then(|_| state.flush())
            .map_err(|e| state_err(e.to_string()))?;
    }

    // The state file is the current snapshot.
    let current = StoredCurrentSnapshot {
        meta: StoredSnapshotMeta {
            last_log_id: Some(at),
            last_membership: membership,
            snapshot_id: format!(
                "T{}-N{}-{}-restored-{}",
                at.term,
                at.node_id,
                at.index,
                uuid::Uuid::new_v4().simple()
            ),
        },
        file: String::new(),
    };
    write_synced(&snapshots.join("current"), &current.encode())?;
    sync_dir(&snapshots)?;

    // An empty log, purged up to the snapshot, and the vote of a group of one.
    let log_path = dir.join("log.redb");
    let log_err = |e: StorageError| RestoreError::State {
        path: log_path.clone(),
        reason: format!("cannot be written: {e}"),
    };
    {
        let db =
            redb::Database::create(&log_path).map_err(|e| log_err(redb::Error::from(e).into()))?;
        let txn = db
            .begin_write()
            .map_err(|e| log_err(redb::Error::from(e).into()))?;
        (|| {
            txn.open_table(LOG)?;
            {
                let mut meta = txn.open_table(LOG_META)?;
                let vote = StoredVote {
                    term: at.term + 1,
                    node_id: target.node_id,
                    committed: true,
                };
                meta.insert(META_VOTE, vote.encode().as_slice())?;
                meta.insert(META_LAST_PURGED, at.encode().as_slice())?;
            }
            crate::raft::format::upgrade(&txn)?;
            Ok::<_, StorageError>(())
        })()
        .map_err(log_err)?;
        // redb commits durably by default.
        txn.commit()
            .map_err(|e| log_err(redb::Error::from(e).into()))?;
    }
    sync_dir(&dir)?;
    Ok(Restored {
        from: o.path,
        header,
    })
}
