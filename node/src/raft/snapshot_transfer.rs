//! Moving a Raft snapshot to a follower that is too far behind for the log, with
//! deadlines that fit the work.
//!
//! openraft's own transfer gives every chunk, the last one included, one fixed
//! deadline (`install_snapshot_timeout`), and the last chunk's handler installs the
//! whole snapshot before it answers. On a slow disk or with a large store that
//! deadline passes every time and the leader starts over for ever. Here the
//! transfer is a small conversation of its own, which survives a failed call:
//!
//! ```text
//!   leader (send)                              follower (Inbox)
//!   offer(vote, meta, size)  ───────────────>  Resume{offset} | Installing | Installed
//!   chunk(offset, bytes)     ───────────────>  Stored{received}      (repeated)
//!   install(id)              ───────────────>  starts installing in the background
//!   install(id)  ... every INSTALL_POLL ────>  Installing{done,total} ... Installed
//! ```
//!
//! - Each chunk's deadline grows with its size ([`chunk_deadline`]).
//! - The follower keeps what it received, keyed by snapshot id: a retried transfer
//!   resumes at the follower's offset instead of at zero.
//! - Installing runs on the follower detached from any call: the leader asks how it
//!   goes until it is done, however long a large store takes, and both sides log its
//!   progress. The leader gives up only when the follower stops answering
//!   ([`SNAPSHOT_RPC_FAILURES_MAX`] calls in a row) or the replication is cancelled;
//!   openraft then starts a new transfer, which resumes where the follower stands.

use std::future::Future;
use std::io::SeekFrom;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    Fatal, NetworkError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::raft::SnapshotResponse;
use openraft::storage::{Snapshot, SnapshotMeta};
use openraft::{BasicNode, ErrorSubject, ErrorVerb, StorageError, Vote};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::state_machine::SnapshotFile;
use super::{NodeId, Raft, TypeConfig};
use crate::storage::StateDb;

/// Bytes of a snapshot sent in one message: far below the transport's frame limit.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// Fixed part of every snapshot call's deadline: a round trip, and a handler that may
/// wait for the state machine to finish what it is applying.
pub const SNAPSHOT_RPC_BASE: Duration = Duration::from_secs(2);

/// The slowest rate, network and receiving disk together, a chunk is given time for.
pub const TRANSFER_FLOOR_BYTES_PER_SEC: u64 = 1024 * 1024;

/// Calls to the follower that may fail in a row before a transfer gives up.
pub const SNAPSHOT_RPC_FAILURES_MAX: u32 = 5;

/// How often the leader asks a follower how its installation goes.
pub const INSTALL_POLL: Duration = Duration::from_millis(200);

/// How often both sides log the progress of a long installation.
pub const PROGRESS_LOG_EVERY: Duration = Duration::from_secs(5);

/// Longest pause between failed calls.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The deadline of a snapshot call that carries `bytes` of snapshot data.
pub fn chunk_deadline(bytes: usize) -> Duration {
    SNAPSHOT_RPC_BASE + Duration::from_secs_f64(bytes as f64 / TRANSFER_FLOOR_BYTES_PER_SEC as f64)
}

/// The leader's opening of a transfer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Offer {
    /// The leader's vote.
    pub vote: Vote<NodeId>,
    /// What the snapshot holds.
    pub meta: SnapshotMeta<NodeId, BasicNode>,
    /// Its size in bytes.
    pub size: u64,
}

/// One piece of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Chunk {
    /// The snapshot it belongs to.
    pub snapshot_id: String,
    /// Where it starts.
    pub offset: u64,
    /// The bytes.
    pub data: serde_bytes::ByteBuf,
}

/// Where a follower stands with a snapshot, as it answers every call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// It holds the first `received` bytes; send from there.
    Receiving {
        /// Bytes held.
        received: u64,
    },
    /// It is installing it: `done` of `total` rows copied into its state.
    Installing {
        /// Rows copied so far.
        done: u64,
        /// Rows to copy (0 until counted).
        total: u64,
    },
    /// It has installed it (or already held everything it covers).
    Installed {
        /// The follower's vote after installing.
        vote: Vote<NodeId>,
    },
    /// It knows a newer leader: the transfer is moot.
    HigherVote {
        /// The follower's vote.
        vote: Vote<NodeId>,
    },
    /// It is installing another snapshot; ask again later.
    Busy,
    /// It has no transfer of this snapshot (it restarted, or never heard of it): offer
    /// it again.
    Unknown,
    /// Installing it failed there.
    Failed {
        /// What went wrong.
        error: InstallFailure,
    },
}

/// Why a follower failed to install a snapshot it received whole. Part of the wire
/// format, in [`Status`]: a new variant goes at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum InstallFailure {
    /// The received file could not be finished (flushed and closed); the next offer
    /// starts afresh.
    #[error("cannot finish the received file: {reason}")]
    FileNotFinished {
        /// What the file system said.
        reason: String,
    },
    /// openraft failed to install it: the follower's Raft group has stopped.
    #[error("fatal raft error: {0}")]
    RaftStopped(Fatal<NodeId>),
}

/// Why the receiving side could not take a call of a transfer.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// The store's Raft group has stopped: openraft's fatal error.
    #[error("fatal raft error: {0}")]
    RaftStopped(Fatal<NodeId>),
    /// A chunk could not be written; what was received of the snapshot is dropped.
    #[error("cannot store the chunk of snapshot {snapshot_id} at offset {offset}: {error}")]
    ChunkNotStored {
        /// The snapshot.
        snapshot_id: String,
        /// Where the chunk starts.
        offset: u64,
        /// The write's failure.
        error: std::io::Error,
    },
}

/// How an installation ended, once it has: the follower's vote, or what failed.
type Outcome = Arc<Mutex<Option<Result<Vote<NodeId>, InstallFailure>>>>;

struct Incoming {
    meta: SnapshotMeta<NodeId, BasicNode>,
    vote: Vote<NodeId>,
    size: u64,
    received: u64,
    /// The file being received; taken when the installation starts.
    file: Option<Box<SnapshotFile>>,
    /// Set by the task that installs it.
    outcome: Outcome,
}

/// The receiving side of snapshot transfers for one store: at most one snapshot at a
/// time, kept across calls. Every call holds the lock for its whole turn, and a call
/// cut off half way (its caller's deadline passed) leaves the state as it was before
/// it: a chunk counts only once written.
pub struct Inbox {
    raft: Raft,
    state: Arc<StateDb>,
    incoming: tokio::sync::Mutex<Option<Incoming>>,
    /// Extra time each chunk takes to store (a fault injected by tests).
    chunk_delay: Duration,
}

fn outcome_of(o: &Outcome) -> Option<Result<Vote<NodeId>, InstallFailure>> {
    o.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

impl Inbox {
    /// The inbox of the group `raft`, whose state is `state`.
    pub fn new(raft: Raft, state: Arc<StateDb>, chunk_delay: Duration) -> Inbox {
        Inbox {
            raft,
            state,
            incoming: Default::default(),
            chunk_delay,
        }
    }

    fn status_of(&self, cur: &Incoming) -> Status {
        if cur.file.is_some() {
            return Status::Receiving {
                received: cur.received,
            };
        }
        match outcome_of(&cur.outcome) {
            None => {
                let (done, total) = self.state.import_progress();
                Status::Installing { done, total }
            }
            Some(Ok(vote)) => Status::Installed { vote },
            Some(Err(error)) => Status::Failed { error },
        }
    }

    /// A leader offers a snapshot: answers where to resume, or how the installation
    /// of that snapshot goes.
    pub async fn offer(&self, offer: Offer) -> Result<Status, InboxError> {
        let mine = self.raft.metrics().borrow().vote;
        if offer.vote < mine {
            return Ok(Status::HigherVote { vote: mine });
        }
        let mut incoming = self.incoming.lock().await;
        if let Some(cur) = incoming.as_mut() {
            let status = self.status_of(cur);
            let same = cur.meta.snapshot_id == offer.meta.snapshot_id && cur.size == offer.size;
            match status {
                Status::Failed { .. } => {}
                _ if same => {
                    cur.vote = offer.vote;
                    return Ok(status);
                }
                // An installation cannot be stopped half way; the other must wait.
                Status::Installing { .. } => return Ok(Status::Busy),
                _ => {}
            }
        }
        let file = self
            .raft
            .begin_receiving_snapshot()
            .await
            .map_err(|e| match e {
                RaftError::Fatal(f) => InboxError::RaftStopped(f),
                RaftError::APIError(never) => match never {},
            })?;
        tracing::info!(target: "reckon_db", snapshot_id = %offer.meta.snapshot_id, bytes = offer.size, "receiving a snapshot");
        *incoming = Some(Incoming {
            meta: offer.meta,
            vote: offer.vote,
            size: offer.size,
            received: 0,
            file: Some(file),
            outcome: Default::default(),
        });
        Ok(Status::Receiving { received: 0 })
    }

    /// Stores one chunk; answers how many bytes are held. A chunk that does not start
    /// where the held bytes end is not stored: the answer says where to go on.
    pub async fn chunk(&self, chunk: Chunk) -> Result<Status, InboxError> {
        let mut incoming = self.incoming.lock().await;
        let Some(cur) = incoming
            .as_mut()
            .filter(|c| c.meta.snapshot_id == chunk.snapshot_id)
        else {
            return Ok(Status::Unknown);
        };
        let fits =
            chunk.offset == cur.received && cur.received + chunk.data.len() as u64 <= cur.size;
        let Some(file) = cur.file.as_mut().filter(|_| fits) else {
            return Ok(self.status_of(cur));
        };
        if !self.chunk_delay.is_zero() {
            tokio::time::sleep(self.chunk_delay).await;
        }
        let written = async {
            file.seek(SeekFrom::Start(chunk.offset)).await?;
            file.write_all(&chunk.data).await
        }
        .await;
        if let Err(e) = written {
            // Dropped: the next offer starts a fresh file.
            *incoming = None;
            return Err(InboxError::ChunkNotStored {
                snapshot_id: chunk.snapshot_id,
                offset: chunk.offset,
                error: e,
            });
        }
        cur.received += chunk.data.len() as u64;
        Ok(Status::Receiving {
            received: cur.received,
        })
    }

    /// Starts installing a snapshot received whole, or answers how its installation
    /// goes.
    pub async fn install(&self, snapshot_id: String) -> Result<Status, InboxError> {
        let mut incoming = self.incoming.lock().await;
        let Some(cur) = incoming
            .as_mut()
            .filter(|c| c.meta.snapshot_id == snapshot_id)
        else {
            return Ok(Status::Unknown);
        };
        let whole = cur.received == cur.size;
        let Some(file) = cur.file.take_if(|_| whole) else {
            let status = self.status_of(cur);
            if matches!(status, Status::Failed { .. }) {
                // Told once; the next offer starts afresh.
                *incoming = None;
            }
            return Ok(status);
        };
        let snapshot = Snapshot {
            meta: cur.meta.clone(),
            snapshot: file,
        };
        tokio::spawn(install(
            self.raft.clone(),
            self.state.clone(),
            cur.vote,
            snapshot,
            cur.outcome.clone(),
        ));
        Ok(Status::Installing { done: 0, total: 0 })
    }
}

/// Installs a received snapshot, logging progress while it runs, and records how it
/// ended.
async fn install(
    raft: Raft,
    state: Arc<StateDb>,
    vote: Vote<NodeId>,
    mut snapshot: Snapshot<TypeConfig>,
    outcome: Outcome,
) {
    let id = snapshot.meta.snapshot_id.clone();
    let started = Instant::now();
    let end = |r: Result<Vote<NodeId>, InstallFailure>| {
        *outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    };
    if let Err(e) = snapshot.snapshot.shutdown().await {
        end(Err(InstallFailure::FileNotFinished {
            reason: e.to_string(),
        }));
        return;
    }
    let installing = raft.install_full_snapshot(vote, snapshot);
    tokio::pin!(installing);
    let mut every = tokio::time::interval(PROGRESS_LOG_EVERY);
    every.tick().await;
    let res = loop {
        tokio::select! {
            res = &mut installing => break res,
            _ = every.tick() => {
                let (done, total) = state.import_progress();
                tracing::info!(target: "reckon_db", snapshot_id = %id, rows_done = done, rows_total = total, elapsed_ms = started.elapsed().as_millis() as u64, "reckon_db.raft.snapshot.installing");
            }
        }
    };
    end(match res {
        Ok(resp) => {
            tracing::info!(target: "reckon_db", snapshot_id = %id, duration_ms = started.elapsed().as_millis() as u64, "snapshot received and installed");
            Ok(resp.vote)
        }
        Err(f) => Err(InstallFailure::RaftStopped(f)),
    });
}

/// The calls a sender makes, so that the conversation can be driven over any
/// transport (and tested without one).
pub trait Peer {
    /// Sends an offer.
    fn offer(
        &self,
        offer: Offer,
        deadline: Duration,
    ) -> impl Future<Output = Result<Status, CallError>> + Send;
    /// Sends a chunk.
    fn chunk(
        &self,
        chunk: Chunk,
        deadline: Duration,
    ) -> impl Future<Output = Result<Status, CallError>> + Send;
    /// Starts the installation, or asks how it goes.
    fn install(
        &self,
        snapshot_id: String,
        deadline: Duration,
    ) -> impl Future<Output = Result<Status, CallError>> + Send;
}

/// Why a call to the follower failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// It could not be reached.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The call failed on the way or timed out.
    #[error("{0}")]
    Network(String),
}

type SendError = StreamingError<TypeConfig, Fatal<NodeId>>;

fn read_err(meta: &SnapshotMeta<NodeId, BasicNode>, e: std::io::Error) -> SendError {
    StorageError::from_io_error(
        ErrorSubject::Snapshot(Some(meta.signature())),
        ErrorVerb::Read,
        e,
    )
    .into()
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

/// Counts failed calls in a row and pauses between them.
struct Failures {
    row: u32,
    target: NodeId,
}

impl Failures {
    /// Notes a failed call: an error once there were too many in a row, after a pause
    /// otherwise.
    async fn note(&mut self, e: CallError) -> Result<(), SendError> {
        self.row += 1;
        tracing::debug!(target = self.target, failures = self.row, error = %e, "snapshot call failed");
        if self.row >= SNAPSHOT_RPC_FAILURES_MAX {
            return Err(match e {
                CallError::Unreachable(m) => Unreachable::new(&Msg(m)).into(),
                CallError::Network(m) => NetworkError::new(&Msg(m)).into(),
            });
        }
        let pause = (Duration::from_millis(100) * 2u32.pow(self.row)).min(BACKOFF_MAX);
        tokio::time::sleep(pause).await;
        Ok(())
    }
}

/// Sends `snapshot` to `peer` (node `target`) and waits until it is installed there;
/// see the module docs. Returns the follower's vote, which the caller compares with
/// its own.
pub async fn send<P: Peer>(
    peer: &P,
    target: NodeId,
    vote: Vote<NodeId>,
    mut snapshot: Snapshot<TypeConfig>,
    cancel: impl Future<Output = ReplicationClosed>,
) -> Result<SnapshotResponse<NodeId>, SendError> {
    let meta = snapshot.meta.clone();
    let id = meta.snapshot_id.clone();
    let file = &mut snapshot.snapshot;
    // A snapshot of a live store is copied from its state first: local work, waited
    // for before the follower is offered anything.
    file.ready().await.map_err(|e| read_err(&meta, e))?;
    let size = file
        .seek(SeekFrom::End(0))
        .await
        .map_err(|e| read_err(&meta, e))?;
    let mut cancel: Pin<&mut _> = std::pin::pin!(cancel);
    let mut failures = Failures { row: 0, target };
    let started = Instant::now();
    let mut last_log = Instant::now();
    let mut buf = vec![0u8; SNAPSHOT_CHUNK_BYTES];
    // The next call to make: an offer, then chunks, then install calls until done.
    let mut next = Next::Offer;
    loop {
        let call: Pin<Box<dyn Future<Output = Result<Status, CallError>> + Send + '_>> = match &next
        {
            Next::Offer => Box::pin(peer.offer(
                Offer {
                    vote,
                    meta: meta.clone(),
                    size,
                },
                SNAPSHOT_RPC_BASE,
            )),
            Next::Chunk(offset) => {
                let offset = *offset;
                let len = ((size - offset) as usize).min(SNAPSHOT_CHUNK_BYTES);
                file.seek(SeekFrom::Start(offset))
                    .await
                    .map_err(|e| read_err(&meta, e))?;
                file.read_exact(&mut buf[..len])
                    .await
                    .map_err(|e| read_err(&meta, e))?;
                let chunk = Chunk {
                    snapshot_id: id.clone(),
                    offset,
                    data: serde_bytes::ByteBuf::from(buf[..len].to_vec()),
                };
                Box::pin(peer.chunk(chunk, chunk_deadline(len)))
            }
            Next::Install => Box::pin(peer.install(id.clone(), SNAPSHOT_RPC_BASE)),
        };
        let answer = tokio::select! {
            closed = &mut cancel => return Err(closed.into()),
            answer = call => answer,
        };
        let status = match answer {
            Ok(s) => {
                failures.row = 0;
                s
            }
            Err(e) => {
                tokio::select! {
                    closed = &mut cancel => return Err(closed.into()),
                    r = failures.note(e) => r?,
                }
                continue;
            }
        };
        next = match status {
            Status::Installed { vote } => {
                tracing::info!(target: "reckon_db", snapshot_id = %id, target, bytes = size, duration_ms = started.elapsed().as_millis() as u64, "snapshot sent and installed");
                return Ok(SnapshotResponse::new(vote));
            }
            Status::HigherVote { vote } => return Ok(SnapshotResponse::new(vote)),
            Status::Failed { error } => {
                return Err(NetworkError::new(&Msg(format!(
                    "node {target} failed to install snapshot {id}: {error}"
                )))
                .into())
            }
            Status::Unknown => Next::Offer,
            Status::Receiving { received } if received >= size => Next::Install,
            Status::Receiving { received } => Next::Chunk(received),
            Status::Installing { done, total } => {
                if last_log.elapsed() >= PROGRESS_LOG_EVERY {
                    last_log = Instant::now();
                    tracing::info!(target: "reckon_db", snapshot_id = %id, target, rows_done = done, rows_total = total, elapsed_ms = started.elapsed().as_millis() as u64, "waiting for a follower to install a snapshot");
                }
                tokio::select! {
                    closed = &mut cancel => return Err(closed.into()),
                    _ = tokio::time::sleep(INSTALL_POLL) => {}
                }
                Next::Install
            }
            Status::Busy => {
                tokio::select! {
                    closed = &mut cancel => return Err(closed.into()),
                    _ = tokio::time::sleep(INSTALL_POLL) => {}
                }
                Next::Offer
            }
        };
    }
}

enum Next {
    Offer,
    Chunk(u64),
    Install,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use openraft::{CommittedLeaderId, LogId, StoredMembership};

    use super::*;

    /// A follower in memory: it keeps the bytes it is sent, fails the calls it is told
    /// to, and reports `installing_polls` rounds of installation before it is done.
    #[derive(Default)]
    struct FakePeer {
        received: Mutex<Vec<u8>>,
        /// Calls that fail, by their number (0-based, over all calls).
        failing: Vec<u32>,
        calls: AtomicU32,
        chunks_stored: AtomicU32,
        installing_polls: AtomicU32,
    }

    impl FakePeer {
        fn call(&self) -> Result<(), CallError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.failing.contains(&n) {
                return Err(CallError::Network(format!("call {n} lost")));
            }
            Ok(())
        }

        fn held(&self) -> u64 {
            self.received.lock().unwrap().len() as u64
        }
    }

    fn vote() -> Vote<NodeId> {
        Vote::new_committed(3, 1)
    }

    impl Peer for FakePeer {
        async fn offer(&self, _: Offer, _: Duration) -> Result<Status, CallError> {
            self.call()?;
            Ok(Status::Receiving {
                received: self.held(),
            })
        }

        async fn chunk(&self, chunk: Chunk, deadline: Duration) -> Result<Status, CallError> {
            self.call()?;
            assert_eq!(deadline, chunk_deadline(chunk.data.len()));
            let mut held = self.received.lock().unwrap();
            assert_eq!(
                chunk.offset,
                held.len() as u64,
                "a chunk resumes where the follower stands"
            );
            held.extend_from_slice(&chunk.data);
            self.chunks_stored.fetch_add(1, Ordering::SeqCst);
            Ok(Status::Receiving {
                received: held.len() as u64,
            })
        }

        async fn install(&self, _: String, _: Duration) -> Result<Status, CallError> {
            self.call()?;
            if self.installing_polls.load(Ordering::SeqCst) > 0 {
                self.installing_polls.fetch_sub(1, Ordering::SeqCst);
                return Ok(Status::Installing { done: 1, total: 2 });
            }
            Ok(Status::Installed { vote: vote() })
        }
    }

    async fn snapshot_of(bytes: &[u8]) -> (tempfile::TempDir, Snapshot<TypeConfig>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap.redb");
        std::fs::write(&path, bytes).unwrap();
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 42)),
            last_membership: StoredMembership::default(),
            snapshot_id: "s-42".into(),
        };
        let file = SnapshotFile::open(&path).await.unwrap();
        (
            dir,
            Snapshot {
                meta,
                snapshot: Box::new(file),
            },
        )
    }

    fn never_cancelled() -> impl Future<Output = ReplicationClosed> {
        std::future::pending()
    }

    #[tokio::test(start_paused = true)]
    async fn a_transfer_resumes_after_failed_calls_and_waits_out_a_long_install() {
        let data: Vec<u8> = (0..(SNAPSHOT_CHUNK_BYTES * 2 + 10))
            .map(|i| (i % 251) as u8)
            .collect();
        let (_dir, snapshot) = snapshot_of(&data).await;
        // Calls: 0 offer, 1 chunk, 2 chunk (lost), 3 chunk (lost), 4.. go through.
        let peer = FakePeer {
            failing: vec![2, 3],
            installing_polls: AtomicU32::new(50),
            ..Default::default()
        };
        let resp = send(&peer, 2, vote(), snapshot, never_cancelled())
            .await
            .unwrap();
        assert_eq!(resp.vote, vote());
        assert_eq!(
            *peer.received.lock().unwrap(),
            data,
            "every byte once, in order"
        );
        assert_eq!(peer.chunks_stored.load(Ordering::SeqCst), 3);
        assert_eq!(
            peer.installing_polls.load(Ordering::SeqCst),
            0,
            "waited until installed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_that_stops_answering_ends_the_transfer_with_an_error() {
        let (_dir, snapshot) = snapshot_of(b"tiny").await;
        let peer = FakePeer {
            failing: (1..100).collect(),
            ..Default::default()
        };
        let err = send(&peer, 2, vote(), snapshot, never_cancelled())
            .await
            .unwrap_err();
        assert!(matches!(err, StreamingError::Network(_)), "{err}");
        assert_eq!(
            peer.calls.load(Ordering::SeqCst),
            1 + SNAPSHOT_RPC_FAILURES_MAX,
            "bounded retries"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_transfer_stops_at_once() {
        let (_dir, snapshot) = snapshot_of(b"tiny").await;
        let peer = FakePeer {
            installing_polls: AtomicU32::new(u32::MAX),
            ..Default::default()
        };
        let cancel = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            ReplicationClosed::new("replication dropped")
        };
        let err = send(&peer, 2, vote(), snapshot, cancel).await.unwrap_err();
        assert!(matches!(err, StreamingError::Closed(_)), "{err}");
    }

    #[test]
    fn an_install_failure_keeps_its_kind_on_the_wire() {
        use bincode::Options;
        // The transport's codec: bincode with its default options.
        let codec = bincode::DefaultOptions::new();
        let failures = [
            InstallFailure::FileNotFinished {
                reason: "no space left on device".into(),
            },
            InstallFailure::RaftStopped(Fatal::Stopped),
        ];
        for (number, error) in failures.into_iter().enumerate() {
            let bytes = codec.serialize(&error).unwrap();
            assert_eq!(usize::from(bytes[0]), number, "{error:?} keeps its number");
            let status = Status::Failed { error };
            let back: Status = codec
                .deserialize(&codec.serialize(&status).unwrap())
                .unwrap();
            assert_eq!(back, status);
        }
    }

    #[test]
    fn a_chunk_deadline_grows_with_its_size() {
        assert_eq!(chunk_deadline(0), SNAPSHOT_RPC_BASE);
        let one_mib = chunk_deadline(1024 * 1024);
        assert_eq!(one_mib, SNAPSHOT_RPC_BASE + Duration::from_secs(1));
        assert!(chunk_deadline(2 * 1024 * 1024) > one_mib);
    }
}
