//! Online backups as they travel, and the client's download of one.
//!
//! A backup is one file that holds a store's whole state (every event, stream,
//! index, snapshot and subscription checkpoint) as of one applied Raft entry. The
//! node that serves the store's leader writes it while writes go on, and the client
//! reads it in bounded chunks:
//!
//! ```text
//!   client                                      node (the store's leader)
//!   BackupBegin              ─────────────────▶ read barrier, pin one read view,
//!                                               copy it in the background
//!                            ◀───────────────── Backup { id, Copying }
//!   BackupStatus { id }      ─ every BACKUP_POLL ▶ Copying | Checksumming | Ready(info)
//!   BackupChunk { id, off }  ─────────────────▶ ≤ BACKUP_CHUNK_BYTES_MAX bytes (repeated)
//!   BackupEnd { id }         ─────────────────▶ the node removes its copy
//! ```
//!
//! The file's layout (a header naming the store, the applied position, the time and
//! the sizes, with a checksum of the header and a SHA-256 of the body) belongs to the
//! node, which writes it and restores from it (`reckon-node restore`); the client
//! stores the bytes as they come, checks the body against the SHA-256 the node
//! announced, and keeps nothing that does not check: it writes `FILE.partial`, and
//! renames it to `FILE` only once the whole file is there, checked and on disk.
//!
//! Limits: a chunk is at most [`BACKUP_CHUNK_BYTES_MAX`], and at most
//! [`BACKUP_CHUNKS_AHEAD`] are asked for at once; a chunk's deadline grows
//! with its size ([`chunk_extra`]); [`BACKUP_RPC_FAILURES_MAX`] calls in a row may
//! fail before the download gives up, and a backup whose copy is gone from the node
//! (the leader changed, the node restarted) starts again at most
//! [`BACKUP_ATTEMPTS_MAX`] times. The node removes a copy no call has touched for its
//! idle limit, so an abandoned backup does not keep its disk space.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::client::{ClientError, StoreHandle};
use crate::request::{StoreRequest, StoreResponse};
use crate::types::StoreError;

/// Most bytes of a backup one `BackupChunk` carries: far below the transport's frame
/// limit, and moved well within a call's deadline.
pub const BACKUP_CHUNK_BYTES_MAX: u32 = 1024 * 1024;

/// Chunk requests a download keeps in flight: the next ones travel while one is
/// written, and at most this many chunks' bytes are held at once.
pub const BACKUP_CHUNKS_AHEAD: usize = 4;

/// How often the client asks how the node's copy goes.
pub const BACKUP_POLL: Duration = Duration::from_millis(200);

/// Calls of one backup that may fail in a row (no answer, a timeout, no leader)
/// before the download gives up.
pub const BACKUP_RPC_FAILURES_MAX: u32 = 5;

/// Times a download starts over when the node's copy is gone (the leader changed or
/// restarted while the client read it).
pub const BACKUP_ATTEMPTS_MAX: u32 = 3;

/// The slowest rate, network and both disks together, a chunk is given time for.
pub const BACKUP_FLOOR_BYTES_PER_SEC: u64 = 1024 * 1024;

/// Pause between failed calls.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// The time a chunk of `bytes` gets beyond the client's per-call deadline.
pub fn chunk_extra(bytes: u64) -> Duration {
    Duration::from_secs_f64(bytes as f64 / BACKUP_FLOOR_BYTES_PER_SEC as f64)
}

/// What a finished backup holds, as the node that wrote it describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The backup's id on the node.
    pub id: String,
    /// The store.
    pub store: String,
    /// The node that wrote it.
    pub node_id: u64,
    /// The term of the last Raft entry the copy reflects.
    pub last_log_term: u64,
    /// The index of the last Raft entry the copy reflects.
    pub last_log_index: u64,
    /// The store's next global position in the copy: it holds every event below it.
    pub next_position: u64,
    /// Events in the copy's global log (soft-deleted ones included).
    pub events: u64,
    /// When the copy was taken, in microseconds since the Unix epoch.
    pub created_us: u64,
    /// The whole file's length in bytes.
    pub bytes: u64,
    /// Where the body (the state file) starts in the file: the header's length.
    pub header_bytes: u64,
    /// SHA-256 of the body, in hex.
    pub body_sha256: String,
}

/// How a backup's copy goes on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupPhase {
    /// The pinned state is being copied into the backup's file.
    Copying,
    /// The copy is being checksummed.
    Checksumming {
        /// Bytes read so far.
        done_bytes: u64,
        /// Bytes to read.
        total_bytes: u64,
    },
    /// The file is complete and can be read.
    Ready(BackupInfo),
}

/// A backup's id and how its copy goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupState {
    /// The backup's id, for the calls that follow.
    pub id: String,
    /// How its copy goes.
    pub phase: BackupPhase,
}

/// What a download reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupProgress {
    /// The node is still copying or checksumming.
    Preparing(BackupPhase),
    /// `done` of `total` bytes of the file are stored.
    Downloading {
        /// Bytes stored.
        done: u64,
        /// The file's length.
        total: u64,
    },
}

/// Why a backup was not made; in every case no file is left at the destination.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// A call failed in a way retrying would not change, or too often in a row.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The destination exists already.
    #[error("{} exists already: choose another --out, remove it, or give --force", path.display())]
    Exists {
        /// The destination.
        path: PathBuf,
    },
    /// Writing the file failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The bytes received do not match the checksum the node announced.
    #[error(
        "backup {id} of store {store:?}: the body received has SHA-256 {found}, the node \
         announced {expected}; nothing was kept, run the backup again"
    )]
    Checksum {
        /// The backup.
        id: String,
        /// The store.
        store: String,
        /// What the node announced.
        expected: String,
        /// What was received.
        found: String,
    },
    /// The node's file ended before the length it announced.
    #[error("backup {id}: the node's file ended at byte {at} of {expected}; nothing was kept")]
    Short {
        /// The backup.
        id: String,
        /// Where it ended.
        at: u64,
        /// The announced length.
        expected: u64,
    },
    /// The node lost its copy every time it was read.
    #[error(
        "backup of store {store:?} was lost by the node {attempts} times (the leader \
         changed or restarted while it was read): {last}; nothing was kept"
    )]
    Gone {
        /// The store.
        store: String,
        /// Attempts made.
        attempts: u32,
        /// The last answer.
        last: StoreError,
    },
}

impl BackupError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
        move |source| BackupError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `FILE.partial`: where a download writes until the file is complete and checked.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

/// Why one attempt stopped.
enum Stop {
    /// The node's copy is gone: start again.
    Gone(StoreError),
    /// Give up.
    Fail(BackupError),
}

impl From<BackupError> for Stop {
    fn from(e: BackupError) -> Self {
        Stop::Fail(e)
    }
}

/// Runs one call of a backup, retrying what may pass (no answer, a timeout, no
/// leader for now) up to [`BACKUP_RPC_FAILURES_MAX`] times in a row. `NotFound` means
/// the node no longer holds the backup.
async fn call(
    store: &StoreHandle,
    request: StoreRequest,
    extra: Duration,
) -> Result<StoreResponse, Stop> {
    let mut failures = 0;
    loop {
        let e = match store.request_within(request.clone(), extra).await {
            Ok(r) => return Ok(r),
            Err(ClientError::Store(e @ StoreError::NotFound { .. })) => return Err(Stop::Gone(e)),
            Err(e) => e,
        };
        let passing = match &e {
            ClientError::Store(s) => s.is_retryable(),
            ClientError::Transport(_) | ClientError::Timeout(_) => true,
            _ => false,
        };
        failures += 1;
        if !passing || failures >= BACKUP_RPC_FAILURES_MAX {
            return Err(Stop::Fail(e.into()));
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

fn unexpected(expected: &'static str, got: &StoreResponse) -> Stop {
    Stop::Fail(BackupError::Client(ClientError::Protocol {
        expected,
        got: got.name(),
    }))
}

async fn state_of(store: &StoreHandle, request: StoreRequest) -> Result<BackupState, Stop> {
    match call(store, request, Duration::ZERO).await? {
        StoreResponse::Backup(s) => Ok(s),
        other => Err(unexpected("Backup", &other)),
    }
}

/// Backs the store up into `out`: asks the store's leader for a backup, waits for its
/// copy, reads it into `FILE.partial` checking its checksum, makes it durable and
/// renames it to `out`. Reports how it goes to `progress`. `out` must not exist
/// unless `replace`. On any error `FILE.partial` is removed and `out` is left as it
/// was (missing, or the file `replace` would have replaced).
///
/// The wait for the node's copy has no deadline of its own, since the copy takes as
/// long as the store is large: the node answers every poll while it copies, and the
/// download gives up when [`BACKUP_RPC_FAILURES_MAX`] polls in a row get no answer,
/// or the node reports the copy failed.
pub async fn download(
    store: &StoreHandle,
    out: &Path,
    replace: bool,
    progress: &mut (dyn FnMut(&BackupProgress) + Send),
) -> Result<BackupInfo, BackupError> {
    if !replace && out.exists() {
        return Err(BackupError::Exists {
            path: out.to_path_buf(),
        });
    }
    let partial = partial_path(out);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut begun = None;
        let r = attempt(store, out, &partial, progress, &mut begun).await;
        if let Some(id) = begun {
            // The node drops the copy once read, or after its idle limit if this
            // call does not reach it.
            let _ = store.request(StoreRequest::BackupEnd { id }).await;
        }
        match r {
            Ok(info) => return Ok(info),
            Err(stop) => {
                let _ = std::fs::remove_file(&partial);
                match stop {
                    Stop::Gone(e) if attempts < BACKUP_ATTEMPTS_MAX => {
                        tracing::info!(store = store.name(), error = %e, "backup lost by the node; starting again");
                    }
                    Stop::Gone(last) => {
                        return Err(BackupError::Gone {
                            store: store.name().to_string(),
                            attempts,
                            last,
                        })
                    }
                    Stop::Fail(e) => return Err(e),
                }
            }
        }
    }
}

async fn attempt(
    store: &StoreHandle,
    out: &Path,
    partial: &Path,
    progress: &mut (dyn FnMut(&BackupProgress) + Send),
    begun: &mut Option<String>,
) -> Result<BackupInfo, Stop> {
    let mut state = state_of(store, StoreRequest::BackupBegin).await?;
    *begun = Some(state.id.clone());
    let info = loop {
        match state.phase {
            BackupPhase::Ready(info) => break info,
            phase => progress(&BackupProgress::Preparing(phase)),
        }
        tokio::time::sleep(BACKUP_POLL).await;
        let id = state.id.clone();
        state = state_of(store, StoreRequest::BackupStatus { id }).await?;
    };
    let mut file = tokio::fs::File::create(partial)
        .await
        .map_err(BackupError::io(partial))?;
    let mut hasher = Sha256::new();
    let mut offset = 0u64;
    progress(&BackupProgress::Downloading {
        done: 0,
        total: info.bytes,
    });
    // Chunks are asked for BACKUP_CHUNKS_AHEAD at a time and stored in order.
    let chunk = u64::from(BACKUP_CHUNK_BYTES_MAX);
    let (id, total) = (info.id.clone(), info.bytes);
    let requests = (0..total)
        .step_by(BACKUP_CHUNK_BYTES_MAX as usize)
        .map(|at| {
            let want = (total - at).min(chunk);
            let request = StoreRequest::BackupChunk {
                id: id.clone(),
                offset: at,
                // At most BACKUP_CHUNK_BYTES_MAX, which fits.
                max_bytes: want as u32,
            };
            async move { (want, call(store, request, chunk_extra(want)).await) }
        });
    let mut chunks = futures::stream::iter(requests).buffered(BACKUP_CHUNKS_AHEAD);
    while let Some((want, answer)) = chunks.next().await {
        let bytes = match answer? {
            StoreResponse::BackupChunk(b) => b,
            other => return Err(unexpected("BackupChunk", &other)),
        };
        if bytes.len() as u64 != want {
            return Err(Stop::Fail(BackupError::Short {
                id: info.id.clone(),
                at: offset + bytes.len() as u64,
                expected: info.bytes,
            }));
        }
        // Everything from the header's end on is the body.
        let end = offset + want;
        if end > info.header_bytes {
            let from = info.header_bytes.saturating_sub(offset) as usize;
            hasher.update(&bytes[from..]);
        }
        file.write_all(&bytes)
            .await
            .map_err(BackupError::io(partial))?;
        offset = end;
        progress(&BackupProgress::Downloading {
            done: offset,
            total: info.bytes,
        });
    }
    drop(chunks);
    let found = hex::encode(hasher.finalize());
    if found != info.body_sha256 {
        return Err(Stop::Fail(BackupError::Checksum {
            id: info.id.clone(),
            store: info.store.clone(),
            expected: info.body_sha256.clone(),
            found,
        }));
    }
    // Durable before it takes the final name: a crash leaves a partial file or a
    // whole one, never a short file under the name.
    file.sync_all().await.map_err(BackupError::io(partial))?;
    drop(file);
    tokio::fs::rename(partial, out)
        .await
        .map_err(BackupError::io(out))?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // The rename is durable once the directory is.
    let synced = tokio::fs::File::open(dir).await;
    synced
        .map_err(BackupError::io(dir))?
        .sync_all()
        .await
        .map_err(BackupError::io(dir))?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partial_file_sits_beside_the_destination() {
        assert_eq!(
            partial_path(Path::new("/b/default.rbk")),
            PathBuf::from("/b/default.rbk.partial")
        );
        assert_eq!(partial_path(Path::new("x")), PathBuf::from("x.partial"));
    }

    #[test]
    fn a_chunk_gets_time_for_its_size() {
        assert_eq!(chunk_extra(0), Duration::ZERO);
        assert_eq!(
            chunk_extra(BACKUP_FLOOR_BYTES_PER_SEC * 3),
            Duration::from_secs(3)
        );
    }
}
