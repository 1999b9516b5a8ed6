//! The Raft log and vote in a redb file of their own.
//!
//! ```text
//!  openraft ──append──▶ tail (memory, readable at once) ──job──▶ writer thread
//!                                                              one redb commit,
//!                                                              fsynced, per group
//!  callback ◀─────────────────── entries marked durable ◀──────┘
//! ```
//!
//! Every entry is stored under its index, in the format [`super::format`] lays out
//! (versioned by its `LOG_FORMAT`, checked when the file is opened).
//! [`append`](RaftLogStorage::append) puts the entries in an in-memory tail, where
//! readers see them at once, queues them for the writer thread and returns: openraft
//! goes on (replicating to followers, applying what is committed) while the disk
//! works. The writer commits everything queued since its last commit in one
//! transaction with `Durability::Immediate` and only then calls openraft's flush
//! callbacks: an entry openraft counts towards a quorum is on disk. Appends that
//! arrive during an fsync share the next one.
//!
//! The vote, truncation and purge go through the same queue, so they reach the disk in
//! the order openraft asked for them, and each returns once its transaction committed
//! (the vote durably: a node that forgets its vote may vote twice in one term).
//!
//! The tail also serves reads: the entries just appended are the ones openraft reads
//! back to apply and to replicate, so those reads neither touch redb nor decode. It
//! keeps every entry not yet durable, and at most [`TAIL_ENTRIES_MAX`] /
//! [`TAIL_BYTES_MAX`] durable ones; older entries are read from redb.
//!
//! The committed log id is not stored: after a restart, entries are applied again once a
//! leader commits past them (and the store's read barrier keeps reads from running
//! ahead of that).

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, Vote,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use tokio::sync::{mpsc, oneshot};

use super::format::{
    self, decode_entry, encode_entry, StoredLogId, StoredVote, LOG, LOG_META, META_LAST_PURGED,
    META_VOTE,
};
use super::{blocking, storage_err, NodeId, TypeConfig};
use crate::storage::format::Record;
use crate::storage::StorageError as DbError;

/// Jobs queued for the writer thread before `append` and the others wait for room.
pub const WRITER_QUEUE_MAX: usize = 1024;
/// Jobs the writer takes from its queue at a time; queued appends among them share
/// one commit.
pub const WRITER_GROUP_MAX: usize = 256;
/// Durable entries the tail keeps for readers beyond those not yet durable.
pub const TAIL_ENTRIES_MAX: usize = 4096;
/// Encoded bytes of durable entries the tail keeps.
pub const TAIL_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Encoded bytes of entries one AppendEntries message carries at most: the entries
/// that follow go in the next message. An entry larger than this (one write of up to
/// `write.batch_bytes_max`) travels alone. Far below the transport's 16 MiB frame,
/// and small enough that a message is moved and fsynced by a follower well within
/// the heartbeat interval, which openraft gives each message as its deadline.
pub const REPLICATION_BYTES_MAX: usize = 2 * 1024 * 1024;

/// One entry of the tail.
struct Cached {
    entry: Entry<TypeConfig>,
    /// Its encoded size.
    bytes: usize,
    /// Committed to disk by the writer.
    durable: bool,
}

/// The newest entries of the log, contiguous by index.
#[derive(Default)]
struct Tail {
    entries: VecDeque<Cached>,
    /// Encoded bytes of the durable entries held.
    durable_bytes: usize,
    /// Durable entries held.
    durable_count: usize,
}

impl Tail {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|c| c.entry.log_id.index)
    }

    fn last_log_id(&self) -> Option<LogId<NodeId>> {
        self.entries.back().map(|c| c.entry.log_id)
    }

    fn position(&self, index: u64) -> Option<usize> {
        let first = self.first_index()?;
        let pos = usize::try_from(index.checked_sub(first)?).ok()?;
        (pos < self.entries.len()).then_some(pos)
    }

    /// Copies of the held entries with indexes in `[start, end)`, in order, until
    /// their encoded bytes reach `budget` (at least one entry when any is held);
    /// with the bytes taken.
    fn range_within(&self, start: u64, end: u64, budget: usize) -> (Vec<Entry<TypeConfig>>, usize) {
        let (mut out, mut bytes) = (Vec::new(), 0usize);
        let Some(first) = self.position(start.max(self.first_index().unwrap_or(start))) else {
            return (out, bytes);
        };
        for c in self.entries.range(first..) {
            if c.entry.log_id.index >= end || (!out.is_empty() && bytes + c.bytes > budget) {
                break;
            }
            bytes += c.bytes;
            out.push(c.entry.clone());
        }
        (out, bytes)
    }

    /// Copies of the held entries with indexes in `[start, end)` (`end` `None`: to
    /// the last). The entries are contiguous, so the slice is found by arithmetic
    /// rather than by walking the whole tail on every read.
    fn range(&self, start: u64, end: Option<u64>) -> Vec<Entry<TypeConfig>> {
        let Some(first) = self.first_index() else {
            return Vec::new();
        };
        let len = self.entries.len();
        let offset =
            |index: u64| usize::try_from(index.saturating_sub(first)).map_or(len, |o| o.min(len));
        let (from, to) = (offset(start), end.map_or(len, offset));
        if from >= to {
            return Vec::new();
        }
        self.entries
            .range(from..to)
            .map(|c| c.entry.clone())
            .collect()
    }

    /// Drops the entries from `index` on.
    fn truncate_from(&mut self, index: u64) {
        let keep = match self.first_index() {
            None => return,
            Some(first) if index <= first => 0,
            Some(first) => usize::try_from(index - first).unwrap_or(usize::MAX),
        };
        while self.entries.len() > keep {
            if let Some(c) = self.entries.pop_back() {
                self.forget(&c);
            }
        }
    }

    /// Drops the entries up to `index`, inclusive.
    fn purge_upto(&mut self, index: u64) {
        while self
            .entries
            .front()
            .is_some_and(|c| c.entry.log_id.index <= index)
        {
            if let Some(c) = self.entries.pop_front() {
                self.forget(&c);
            }
        }
    }

    fn forget(&mut self, c: &Cached) {
        if c.durable {
            self.durable_bytes -= c.bytes;
            self.durable_count -= 1;
        }
    }

    /// Adds entries that follow the held ones. An append at or below the last held
    /// index replaces the entries from there; one that leaves a gap after held entries
    /// would make a hole, which openraft never asks for.
    fn push(&mut self, entries: Vec<(Entry<TypeConfig>, usize)>) -> Result<(), String> {
        let Some(first_new) = entries.first().map(|(e, _)| e.log_id.index) else {
            return Ok(());
        };
        if let Some(last) = self.last_log_id() {
            if first_new <= last.index {
                self.truncate_from(first_new);
            } else if first_new != last.index + 1 && !self.entries.is_empty() {
                return Err(format!(
                    "append at index {first_new} after index {}: a hole in the log",
                    last.index
                ));
            }
        }
        for (entry, bytes) in entries {
            self.entries.push_back(Cached {
                entry,
                bytes,
                durable: false,
            });
        }
        Ok(())
    }

    /// Marks the entries the writer committed durable (those still held with the same
    /// log id: a truncated and rewritten index is another entry), then lets the oldest
    /// durable ones go beyond the limits.
    fn mark_durable(&mut self, written: &[LogId<NodeId>]) {
        for id in written {
            if let Some(pos) = self.position(id.index) {
                let c = &mut self.entries[pos];
                if c.entry.log_id == *id && !c.durable {
                    c.durable = true;
                    self.durable_bytes += c.bytes;
                    self.durable_count += 1;
                }
            }
        }
        while (self.durable_count > TAIL_ENTRIES_MAX || self.durable_bytes > TAIL_BYTES_MAX)
            && self.entries.front().is_some_and(|c| c.durable)
        {
            if let Some(c) = self.entries.pop_front() {
                self.forget(&c);
            }
        }
    }
}

/// The encoded bytes of every entry in the log, by index: what the log holds, so
/// that it can be purged by bytes as well as by entries.
#[derive(Default)]
struct Sizes {
    entries: VecDeque<(u64, u64)>,
}

impl Sizes {
    fn push(&mut self, index: u64, bytes: u64) {
        self.truncate_from(index);
        self.entries.push_back((index, bytes));
    }

    fn truncate_from(&mut self, index: u64) {
        while self.entries.back().is_some_and(|(i, _)| *i >= index) {
            self.entries.pop_back();
        }
    }

    fn purge_upto(&mut self, index: u64) {
        while self.entries.front().is_some_and(|(i, _)| *i <= index) {
            self.entries.pop_front();
        }
    }

    fn bytes_after(&self, index: Option<u64>) -> u64 {
        self.entries
            .iter()
            .rev()
            .take_while(|(i, _)| index.is_none_or(|x| *i > x))
            .map(|(_, b)| b)
            .sum()
    }

    fn purge_point(&self, upto: u64, keep_bytes: u64) -> Option<u64> {
        let mut kept = 0u64;
        for (i, b) in self.entries.iter().rev().skip_while(|(i, _)| *i > upto) {
            if kept + b > keep_bytes {
                return Some(*i);
            }
            kept += b;
        }
        None
    }
}

/// Encoded entries under their log ids.
type Rows = Vec<(LogId<NodeId>, Vec<u8>)>;

/// Work for the writer thread, done in queue order.
enum Job {
    Append {
        rows: Rows,
        callback: LogFlushed<TypeConfig>,
    },
    Vote {
        bytes: Vec<u8>,
        done: oneshot::Sender<Result<(), DbError>>,
    },
    Truncate {
        from: u64,
        done: oneshot::Sender<Result<(), DbError>>,
    },
    Purge {
        upto: LogId<NodeId>,
        done: oneshot::Sender<Result<(), DbError>>,
    },
}

struct Shared {
    db: Arc<Database>,
    tail: Arc<Mutex<Tail>>,
    sizes: Mutex<Sizes>,
    /// `None` only while dropping, to stop the writer.
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has done what was queued; joining
        // it releases the database file before anyone may open it again.
        self.jobs = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The redb-backed Raft log of one store. Cloning shares the database, the tail and
/// the writer.
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
}

fn lock(tail: &Mutex<Tail>) -> MutexGuard<'_, Tail> {
    tail.lock().unwrap_or_else(|p| p.into_inner())
}

impl LogStore {
    /// Opens (or creates) the log file at `path` and starts its writer thread.
    /// [`DbError::Format`] when the file was written by a newer node.
    pub fn open(path: &Path) -> Result<LogStore, DbError> {
        let db = Database::builder()
            .set_cache_size(64 * 1024 * 1024)
            .create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(LOG)?;
            txn.open_table(LOG_META)?;
        }
        format::upgrade(&txn)?;
        txn.commit()?;
        let mut sizes = Sizes::default();
        {
            let txn = db.begin_read()?;
            let t = txn.open_table(LOG)?;
            for row in t.iter()? {
                let (k, v) = row?;
                sizes.push(k.value(), v.value().len() as u64);
            }
        }
        let db = Arc::new(db);
        let tail = Arc::new(Mutex::new(Tail::default()));
        let (tx, rx) = mpsc::channel(WRITER_QUEUE_MAX);
        let writer = {
            let (db, tail) = (db.clone(), tail.clone());
            std::thread::Builder::new()
                .name("raft-log-writer".into())
                .spawn(move || run_writer(&db, &tail, rx))
                .map_err(|e| DbError::Io {
                    path: path.display().to_string(),
                    source: e,
                })?
        };
        Ok(LogStore {
            shared: Arc::new(Shared {
                db,
                tail,
                sizes: Mutex::new(sizes),
                jobs: Some(tx),
                writer: Some(writer),
            }),
        })
    }

    fn sizes(&self) -> MutexGuard<'_, Sizes> {
        self.shared.sizes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Encoded bytes of the entries after `index` (all of them for `None`).
    pub fn bytes_after(&self, index: Option<u64>) -> u64 {
        self.sizes().bytes_after(index)
    }

    /// Where to purge the log up to so that the entries up to `upto` it keeps hold at
    /// most `keep_bytes`: the newest index that does not fit, if any.
    pub fn purge_point(&self, upto: u64, keep_bytes: u64) -> Option<u64> {
        self.sizes().purge_point(upto, keep_bytes)
    }

    fn meta_get<T: Record>(db: &Database, key: &str) -> Result<Option<T>, DbError> {
        let txn = db.begin_read()?;
        let t = txn.open_table(LOG_META)?;
        let v = t.get(key)?;
        v.map(|v| T::decode(v.value())).transpose()
    }

    /// Queues a job for the writer.
    async fn queue(&self, job: Job) -> Result<(), &'static str> {
        let jobs = self.shared.jobs.as_ref().ok_or("the log writer stopped")?;
        jobs.send(job).await.map_err(|_| "the log writer stopped")
    }

    /// Queues a job that answers on `done`, and waits for its answer.
    async fn queue_and_wait(
        &self,
        subject: ErrorSubject<NodeId>,
        verb: ErrorVerb,
        job: impl FnOnce(oneshot::Sender<Result<(), DbError>>) -> Job,
    ) -> Result<(), StorageError<NodeId>> {
        let (tx, rx) = oneshot::channel();
        self.queue(job(tx))
            .await
            .map_err(|e| storage_err(subject.clone(), verb, e))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(storage_err(subject, verb, e)),
            Err(_) => Err(storage_err(subject, verb, "the log writer stopped")),
        }
    }
}

/// The writer thread: takes up to [`WRITER_GROUP_MAX`] queued jobs at a time and does
/// them in order, each run of appends in one durable commit.
fn run_writer(db: &Database, tail: &Mutex<Tail>, mut rx: mpsc::Receiver<Job>) {
    let mut group = Vec::with_capacity(WRITER_GROUP_MAX);
    while let Some(job) = rx.blocking_recv() {
        group.push(job);
        while group.len() < WRITER_GROUP_MAX {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut appends = Vec::new();
        for job in group.drain(..) {
            match job {
                Job::Append { rows, callback } => appends.push((rows, callback)),
                other => {
                    commit_appends(db, tail, &mut appends);
                    let (result, done) = match other {
                        Job::Vote { bytes, done } => (write_vote(db, &bytes), done),
                        Job::Truncate { from, done } => (truncate(db, from), done),
                        Job::Purge { upto, done } => (purge(db, upto), done),
                        Job::Append { .. } => unreachable!("appends are collected above"),
                    };
                    let _ = done.send(result);
                }
            }
        }
        commit_appends(db, tail, &mut appends);
    }
}

/// Commits the queued appends in one durable transaction, then marks them durable in
/// the tail and calls their callbacks; on failure every callback hears the error.
fn commit_appends(
    db: &Database,
    tail: &Mutex<Tail>,
    appends: &mut Vec<(Rows, LogFlushed<TypeConfig>)>,
) {
    if appends.is_empty() {
        return;
    }
    let write = || -> Result<(), DbError> {
        let txn = db.begin_write()?;
        {
            let mut t = txn.open_table(LOG)?;
            for (rows, _) in appends.iter() {
                for (id, b) in rows {
                    t.insert(id.index, b.as_slice())?;
                }
            }
        }
        // Durability::Immediate (the default): commit returns once fsynced.
        txn.commit()?;
        Ok(())
    };
    match write() {
        Ok(()) => {
            let written: Vec<LogId<NodeId>> = appends
                .iter()
                .flat_map(|(rows, _)| rows.iter().map(|(id, _)| *id))
                .collect();
            lock(tail).mark_durable(&written);
            // Only now are the entries durable, so only now may openraft count them.
            for (_, callback) in appends.drain(..) {
                callback.log_io_completed(Ok(()));
            }
        }
        Err(e) => {
            let message = e.to_string();
            for (_, callback) in appends.drain(..) {
                callback.log_io_completed(Err(std::io::Error::other(message.clone())));
            }
        }
    }
}

fn write_vote(db: &Database, bytes: &[u8]) -> Result<(), DbError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    {
        let mut t = txn.open_table(LOG_META)?;
        t.insert(META_VOTE, bytes)?;
    }
    txn.commit()?;
    Ok(())
}

fn truncate(db: &Database, from: u64) -> Result<(), DbError> {
    let txn = db.begin_write()?;
    {
        let mut t = txn.open_table(LOG)?;
        t.retain_in(from.., |_, _| false)?;
    }
    txn.commit()?;
    Ok(())
}

fn purge(db: &Database, upto: LogId<NodeId>) -> Result<(), DbError> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(LOG_META)?;
        let upto_bytes = StoredLogId::from(upto).encode();
        meta.insert(META_LAST_PURGED, upto_bytes.as_slice())?;
        let mut t = txn.open_table(LOG)?;
        t.retain_in(..=upto.index, |_, _| false)?;
    }
    txn.commit()?;
    Ok(())
}

/// `[start, end)` of a range of indexes; `end` is `None` when unbounded.
fn half_open<RB: RangeBounds<u64>>(r: &RB) -> (u64, Option<u64>) {
    let start = match r.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match r.end_bound() {
        Bound::Included(e) => Some(e.saturating_add(1)),
        Bound::Excluded(e) => Some(*e),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    /// What openraft replicates in one AppendEntries message: bounded in bytes (see
    /// [`REPLICATION_BYTES_MAX`]).
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        self.entries_within_budget(start, end).await
    }

    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let (start, end) = half_open(&range);
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        // The tail's part first: every entry below the tail's first index is durable,
        // so redb has it.
        let (from_tail, below) = {
            let tail = lock(&self.shared.tail);
            match tail.first_index() {
                Some(first) => (tail.range(start, end), (start < first).then_some(first)),
                None => (Vec::new(), Some(end.unwrap_or(u64::MAX))),
            }
        };
        let Some(db_end) = below else {
            return Ok(from_tail);
        };
        let db_end = end.map_or(db_end, |e| e.min(db_end));
        let db = self.shared.db.clone();
        let mut out = blocking(ErrorSubject::Logs, ErrorVerb::Read, move || {
            let txn = db.begin_read()?;
            let t = txn.open_table(LOG)?;
            let mut out = Vec::new();
            for row in t.range::<u64>(start..db_end)? {
                let (_, v) = row?;
                out.push(decode_entry(v.value())?);
            }
            Ok::<_, DbError>(out)
        })
        .await?;
        out.extend(from_tail);
        Ok(out)
    }
}

impl LogStore {
    /// Entries `[start, end)` from the log, in order, until their encoded bytes reach
    /// [`REPLICATION_BYTES_MAX`] (always at least one): what one AppendEntries
    /// message carries.
    pub async fn entries_within_budget(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        if end <= start {
            return Ok(Vec::new());
        }
        let budget = REPLICATION_BYTES_MAX;
        // The tail's part is copied first: every entry below the tail's first index
        // is durable, so redb has it, whatever the writer does meanwhile.
        let (from_tail, tail_bytes, db_end) = {
            let tail = lock(&self.shared.tail);
            let (entries, bytes) = tail.range_within(start, end, budget);
            let db_end = tail.first_index().map_or(end, |f| f.min(end));
            (entries, bytes, db_end)
        };
        if start >= db_end {
            return Ok(from_tail);
        }
        let db = self.shared.db.clone();
        let (mut out, db_bytes) = blocking(ErrorSubject::Logs, ErrorVerb::Read, move || {
            let txn = db.begin_read()?;
            let t = txn.open_table(LOG)?;
            let (mut out, mut bytes) = (Vec::new(), 0usize);
            for row in t.range::<u64>(start..db_end)? {
                let (_, v) = row?;
                let len = v.value().len();
                if !out.is_empty() && bytes + len > budget {
                    break;
                }
                bytes += len;
                out.push(decode_entry(v.value())?);
            }
            Ok::<_, DbError>((out, bytes))
        })
        .await?;
        // The tail's entries follow only when the redb part ended where the tail
        // begins, and within what is left of the budget.
        let contiguous = out.last().is_some_and(|e| e.log_id.index + 1 == db_end);
        if contiguous && db_bytes + tail_bytes <= budget {
            out.extend(from_tail);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let in_tail = lock(&self.shared.tail).last_log_id();
        let db = self.shared.db.clone();
        blocking(ErrorSubject::Logs, ErrorVerb::Read, move || {
            let last_purged: Option<LogId<NodeId>> =
                Self::meta_get::<StoredLogId>(&db, META_LAST_PURGED)?.map(LogId::from);
            let last = match in_tail {
                Some(id) => Some(id),
                None => {
                    let txn = db.begin_read()?;
                    let t = txn.open_table(LOG)?;
                    let last = t.last()?;
                    last.map(|(_, v)| decode_entry(v.value()).map(|e| e.log_id))
                        .transpose()?
                        .or(last_purged)
                }
            };
            Ok::<_, DbError>(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let bytes = StoredVote::from(vote).encode();
        self.queue_and_wait(ErrorSubject::Vote, ErrorVerb::Write, |done| Job::Vote {
            bytes,
            done,
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        let db = self.shared.db.clone();
        blocking(ErrorSubject::Vote, ErrorVerb::Read, move || {
            Ok::<_, DbError>(Self::meta_get::<StoredVote>(&db, META_VOTE)?.map(Vote::from))
        })
        .await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        let mut cached = Vec::new();
        {
            let mut sizes = self.sizes();
            for e in entries {
                let bytes = encode_entry(&e);
                sizes.push(e.log_id.index, bytes.len() as u64);
                cached.push((e.clone(), bytes.len()));
                rows.push((e.log_id, bytes));
            }
        }
        // Readable from here on, as openraft requires when `append` returns.
        lock(&self.shared.tail)
            .push(cached)
            .map_err(|e| storage_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        self.queue(Job::Append { rows, callback })
            .await
            .map_err(|e| storage_err(ErrorSubject::Logs, ErrorVerb::Write, e))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        lock(&self.shared.tail).truncate_from(log_id.index);
        self.sizes().truncate_from(log_id.index);
        self.queue_and_wait(ErrorSubject::Logs, ErrorVerb::Delete, |done| {
            Job::Truncate {
                from: log_id.index,
                done,
            }
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        lock(&self.shared.tail).purge_upto(log_id.index);
        self.sizes().purge_upto(log_id.index);
        self.queue_and_wait(ErrorSubject::Logs, ErrorVerb::Delete, |done| Job::Purge {
            upto: log_id,
            done,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn entry(term: u64, index: u64) -> (Entry<TypeConfig>, usize) {
        let e = Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        };
        (e, 100)
    }

    fn indexes(t: &Tail) -> Vec<(u64, u64, bool)> {
        t.entries
            .iter()
            .map(|c| {
                (
                    c.entry.log_id.leader_id.term,
                    c.entry.log_id.index,
                    c.durable,
                )
            })
            .collect()
    }

    #[test]
    fn a_rewritten_index_is_not_marked_durable_by_the_old_write() {
        let mut t = Tail::default();
        t.push(vec![entry(1, 5), entry(1, 6)]).unwrap();
        let old: Vec<LogId<NodeId>> = t.entries.iter().map(|c| c.entry.log_id).collect();
        // A new leader's entry replaces index 6 before the old write lands.
        t.truncate_from(6);
        t.push(vec![entry(2, 6)]).unwrap();
        t.mark_durable(&old);
        assert_eq!(indexes(&t), [(1, 5, true), (2, 6, false)]);
        assert_eq!((t.durable_count, t.durable_bytes), (1, 100));
    }

    #[test]
    fn a_range_of_the_tail_is_its_entries_in_those_bounds() {
        let mut t = Tail::default();
        assert!(t.range(0, None).is_empty());
        t.push((5..=9).map(|i| entry(1, i)).collect()).unwrap();
        let got = |start, end| -> Vec<u64> {
            t.range(start, end).iter().map(|e| e.log_id.index).collect()
        };
        assert_eq!(got(0, None), [5, 6, 7, 8, 9]);
        assert_eq!(got(6, Some(8)), [6, 7]);
        assert_eq!(got(8, Some(100)), [8, 9]);
        assert_eq!(got(0, Some(6)), [5]);
        assert!(got(10, None).is_empty());
        assert!(got(0, Some(5)).is_empty());
        assert!(got(7, Some(7)).is_empty());
    }

    #[test]
    fn a_budgeted_range_stops_at_its_bytes_but_takes_at_least_one_entry() {
        let mut t = Tail::default();
        // Entries of 100 bytes each, indexes 5..=9.
        t.push((5..=9).map(|i| entry(1, i)).collect()).unwrap();
        let got = |start, end, budget| -> (Vec<u64>, usize) {
            let (es, bytes) = t.range_within(start, end, budget);
            (es.iter().map(|e| e.log_id.index).collect(), bytes)
        };
        assert_eq!(got(5, 100, 250), (vec![5, 6], 200));
        assert_eq!(got(7, 100, 1000), (vec![7, 8, 9], 300));
        assert_eq!(got(6, 8, 1000), (vec![6, 7], 200));
        // One entry goes even when it alone is over the budget.
        assert_eq!(got(5, 100, 10), (vec![5], 100));
        // From below the tail, the tail's part starts at its first entry.
        assert_eq!(got(0, 100, 150), (vec![5], 100));
        assert_eq!(got(10, 100, 1000), (vec![], 0));
    }

    #[test]
    fn an_overlapping_append_replaces_and_a_gap_is_refused() {
        let mut t = Tail::default();
        t.push(vec![entry(1, 1), entry(1, 2), entry(1, 3)]).unwrap();
        t.push(vec![entry(2, 2)]).unwrap();
        assert_eq!(indexes(&t), [(1, 1, false), (2, 2, false)]);
        let e = t.push(vec![entry(2, 4)]).unwrap_err();
        assert!(e.contains("a hole"), "{e}");
        // Nothing changed by the refused append.
        assert_eq!(indexes(&t), [(1, 1, false), (2, 2, false)]);
    }

    #[test]
    fn only_durable_entries_leave_the_tail_and_only_beyond_the_limit() {
        let mut t = Tail::default();
        let n = TAIL_ENTRIES_MAX as u64 + 10;
        t.push((1..=n).map(|i| entry(1, i)).collect()).unwrap();
        // Nothing durable yet: everything stays, however many.
        t.mark_durable(&[]);
        assert_eq!(t.entries.len() as u64, n);
        let first_half: Vec<LogId<NodeId>> = t
            .entries
            .iter()
            .take(TAIL_ENTRIES_MAX + 5)
            .map(|c| c.entry.log_id)
            .collect();
        t.mark_durable(&first_half);
        assert_eq!(t.durable_count, TAIL_ENTRIES_MAX);
        assert_eq!(t.first_index(), Some(6));
        assert_eq!(t.entries.len() as u64, n - 5);
        t.purge_upto(100);
        assert_eq!(t.first_index(), Some(101));
        assert_eq!(t.durable_count, TAIL_ENTRIES_MAX + 5 - 100);
        t.truncate_from(0);
        assert!(t.entries.is_empty());
        assert_eq!((t.durable_count, t.durable_bytes), (0, 0));
    }

    #[test]
    fn sizes_say_what_the_log_holds_after_an_index_and_where_to_purge_by_bytes() {
        let mut s = Sizes::default();
        for i in 1..=10 {
            s.push(i, 100);
        }
        assert_eq!(s.bytes_after(None), 1000);
        assert_eq!(s.bytes_after(Some(7)), 300);
        // Keeping 250 bytes of the entries up to 8: 8 and 7 stay, 6 and before go.
        assert_eq!(s.purge_point(8, 250), Some(6));
        assert_eq!(s.purge_point(8, 800), None);
        // An entry rewritten after a truncation replaces what followed it.
        s.push(9, 40);
        assert_eq!(s.bytes_after(Some(7)), 140);
        s.purge_upto(6);
        assert_eq!(s.bytes_after(None), 240);
        s.truncate_from(8);
        assert_eq!(s.bytes_after(None), 100);
    }
}
