//! The state machine's database: events, indexes, snapshots and bookkeeping in one
//! redb file, changed only by [`StateDb::apply`].
//!
//! Durability: `apply` commits without an fsync ([`Durability::None`]) because the
//! Raft log, fsynced before any write is acknowledged, is the durable record; a crash
//! loses at most the tail of applied state, which Raft re-applies from the log on
//! start. [`StateDb::flush`] makes everything applied so far durable; it runs
//! periodically and before a snapshot is taken, so the log is never purged past what
//! the state file holds durably.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use reckon_gater::page::EventPage;
use reckon_gater::types::StreamPage;
use reckon_gater::types::{
    AppendResult, Direction, EventRecord, SnapshotRecord, StoreError, StreamInfo, TagMatch,
};
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use uuid::Uuid;

use super::format::{
    each_table, id_place, id_place_value, upgrade, Counters, Record, ScavengePhase, StoredEvent,
    StoredRetention, StoredScavenge, StoredSnapshot, StoredSubscription, EVENTS, EVENT_IDS, META,
    META_COUNTERS, META_RAFT, META_SCAVENGE, RETENTION, SNAPSHOTS, STREAMS, STREAM_INDEX,
    SUBSCRIPTIONS, TAG_INDEX, TAG_NAMES, TYPE_INDEX, TYPE_NAMES,
};
use super::keys::{index_value, low, pack, split_index_value, StreamMeta};
use super::{corrupt, StorageError};
use crate::command::{
    BatchResult, Command, ExpectedVersion, Outcome, ProposedEvent, StartFrom, WriteBatch,
};
use crate::domain::{check_expected, judge_event_ids, stream_read_range, IdVerdict, StreamState};
use reckon_gater::subscription::SubscriptionInfo;

pub use super::format::STATE_FORMAT;

/// The wall clock in microseconds since the Unix epoch: "now" for retention by age.
fn wall_clock_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Most bytes of events one read or delivery returns (at least one event is always
/// returned): pages stay far below the transport's frame limit whatever the event
/// sizes. A read counts events as stored (their bytes on the wire), a delivery by
/// [`record_bytes`]. A reader continues from the last event it got.
pub const READ_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Memory caching a state file by default (`[storage] state_cache_mib`): 1 GiB.
pub const STATE_CACHE_BYTES: usize = 1024 * 1024 * 1024;

/// The bytes an event counts for against [`READ_BYTES_MAX`].
pub fn record_bytes(e: &EventRecord) -> usize {
    e.data.len() + e.metadata.len() + e.stream_id.len() + e.event_type.len() + 64
}

/// How often applied state is made durable even without a snapshot, bounding how much
/// of the log is re-applied after a crash.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Bytes applied (payloads and a per-event allowance) after which state is made
/// durable before [`FLUSH_INTERVAL`] is over. Every apply waits while a flush writes
/// out what it has to: under 1000-event appends a second's worth took 60-170 ms (the
/// p99.9 of those appends); at this size a flush takes a few milliseconds, and
/// throughput stayed the same (8 and 32 MiB gave longer stalls).
pub const FLUSH_BYTES_MAX: usize = 2 * 1024 * 1024;

/// What an event counts for against [`FLUSH_BYTES_MAX`] beyond its payload: its
/// record's other fields and its index entries.
const FLUSH_EVENT_ALLOWANCE: usize = 256;

/// What has been applied since state was last made durable.
#[derive(Debug, Clone, Copy)]
struct Unflushed {
    since: Instant,
    bytes: usize,
}

impl Unflushed {
    fn due(&self, now: Instant) -> bool {
        self.bytes >= FLUSH_BYTES_MAX || now.duration_since(self.since) >= FLUSH_INTERVAL
    }
}

/// The bytes `items` count for against [`FLUSH_BYTES_MAX`].
fn unflushed_bytes(items: &[ApplyItem]) -> usize {
    let mut bytes = 0;
    for item in items {
        let ApplyItem::Batch(batch) = item else {
            continue;
        };
        for command in &batch.commands {
            bytes += match command {
                Command::Append { events, .. } => events
                    .iter()
                    .map(|e| e.payload_len() + FLUSH_EVENT_ALLOWANCE)
                    .sum(),
                Command::SaveSnapshot { data, metadata, .. } => {
                    data.len() + metadata.len() + FLUSH_EVENT_ALLOWANCE
                }
                _ => FLUSH_EVENT_ALLOWANCE,
            };
        }
    }
    bytes
}

/// One item of a run of applied Raft entries, as the state machine sees it.
#[derive(Debug)]
pub enum ApplyItem {
    /// An entry with no payload (a new leader's blank, or a membership change): it only
    /// moves the applied log id.
    Empty,
    /// Writes to apply.
    Batch(WriteBatch),
}

/// Counts of what the store holds, for status and telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateStats {
    /// Events in the global log (deleted ones too, until a scavenge removes them).
    pub events: u64,
    /// The next global position.
    pub next_position: u64,
}

/// The state machine's redb database.
pub struct StateDb {
    /// The next global position, published after every commit that moves it (for
    /// live subscription delivery).
    head: tokio::sync::watch::Sender<u64>,
    /// Every transaction begins under a shared hold; a compaction takes it alone.
    db: RwLock<Database>,
    path: PathBuf,
    unflushed: Mutex<Unflushed>,
    /// Rows copied and rows to copy by the import under way (or the last one).
    import_done: AtomicU64,
    import_total: AtomicU64,
}

impl StateDb {
    /// Opens (or creates) the state file at `path`, with a cache of
    /// [`STATE_CACHE_BYTES`].
    pub fn open(path: &Path) -> Result<StateDb, StorageError> {
        StateDb::open_with_cache(path, STATE_CACHE_BYTES)
    }

    /// Opens (or creates) the state file at `path`, caching up to `cache_bytes` of
    /// it in memory.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<StateDb, StorageError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)?;
        let txn = db.begin_write()?;
        {
            macro_rules! create {
                ($t:expr) => {
                    txn.open_table($t)?
                };
            }
            each_table!(create);
        }
        upgrade(&txn)?;
        txn.commit()?;
        let head = {
            let r = db.begin_read()?;
            let meta = r.open_table(META)?;
            let c = match meta.get(META_COUNTERS)? {
                Some(v) => Counters::decode(v.value())?,
                None => Counters::default(),
            };
            c.next_position
        };
        Ok(StateDb {
            head: tokio::sync::watch::Sender::new(head),
            db: RwLock::new(db),
            path: path.to_path_buf(),
            unflushed: Mutex::new(Unflushed {
                since: Instant::now(),
                bytes: 0,
            }),
            import_done: AtomicU64::new(0),
            import_total: AtomicU64::new(0),
        })
    }

    fn db(&self) -> std::sync::RwLockReadGuard<'_, Database> {
        self.db.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives the file's free space back to the file system (after a scavenge): makes
    /// everything applied durable, then compacts the file while no transaction runs
    /// (new ones wait). Returns the file's length before and after, or `None` when a
    /// read was open (a snapshot being sent, a long read): try again later.
    pub fn compact(&self) -> Result<Option<(u64, u64)>, StorageError> {
        self.flush()?;
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let before = len(&self.path);
        let mut db = self.db.write().unwrap_or_else(|p| p.into_inner());
        match db.compact() {
            Ok(_) => {}
            Err(redb::CompactionError::TransactionInProgress) => return Ok(None),
            Err(e) => return Err(redb::Error::from(e).into()),
        }
        drop(db);
        Ok(Some((before, len(&self.path))))
    }

    /// The file this database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The Raft layer's record (applied log id and membership) as it last stored it.
    pub fn raft_record(&self) -> Result<Option<Vec<u8>>, StorageError> {
        let txn = self.db().begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(META_RAFT)?.map(|v| v.value().to_vec()))
    }

    /// Applies a run of entries in one write transaction, storing `raft_record` (the
    /// last applied log id and membership, opaque here) with them. Returns one result
    /// per item: `None` for [`ApplyItem::Empty`].
    ///
    /// Request errors (a wrong expected version, ...) are results; an `Err` means the
    /// storage engine failed and nothing of the run is applied.
    pub fn apply(
        &self,
        items: Vec<ApplyItem>,
        raft_record: &[u8],
    ) -> Result<Vec<Option<BatchResult>>, StorageError> {
        let applied = unflushed_bytes(&items);
        let mut txn = self.db().begin_write()?;
        txn.set_durability(Durability::None)?;
        let mut out = Vec::with_capacity(items.len());
        let head;
        {
            let mut w = Writer::new(&txn)?;
            for item in items {
                match item {
                    ApplyItem::Empty => out.push(None),
                    ApplyItem::Batch(batch) => out.push(Some(w.apply_batch(batch)?)),
                }
            }
            head = w.counters.next_position;
            w.finish()?;
            let mut meta = txn.open_table(META)?;
            meta.insert(META_RAFT, raft_record)?;
        }
        txn.commit()?;
        self.unflushed().bytes += applied;
        self.head.send_if_modified(|h| {
            let moved = *h != head;
            *h = head;
            moved
        });
        Ok(out)
    }

    fn unflushed(&self) -> std::sync::MutexGuard<'_, Unflushed> {
        self.unflushed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether applied state should be made durable now: [`FLUSH_INTERVAL`] has
    /// passed since it last was, or [`FLUSH_BYTES_MAX`] have been applied.
    pub fn flush_due(&self) -> bool {
        self.unflushed().due(Instant::now())
    }

    /// [`flush`](Self::flush) when it is [due](Self::flush_due).
    pub fn maybe_flush(&self) -> Result<(), StorageError> {
        if self.flush_due() {
            self.flush()?;
        }
        Ok(())
    }

    /// Makes everything applied so far durable (an empty fsynced commit persists the
    /// non-durable ones before it).
    pub fn flush(&self) -> Result<(), StorageError> {
        let txn = self.db().begin_write()?;
        txn.commit()?;
        *self.unflushed() = Unflushed {
            since: Instant::now(),
            bytes: 0,
        };
        Ok(())
    }

    /// Watches the next global position (it moves when events are applied).
    pub fn watch_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Starts a consistent read of the whole state.
    pub fn read(&self) -> Result<Reader, StorageError> {
        Ok(Reader {
            txn: self.db().begin_read()?,
        })
    }

    /// Makes everything applied so far durable and returns the Raft record it
    /// reflects: the point of a snapshot, behind which the log may be purged.
    pub fn checkpoint(&self) -> Result<Option<Vec<u8>>, StorageError> {
        let src = self.db().begin_read()?;
        // The flush commits after the read began, so it makes durable at least what
        // the read sees.
        self.flush()?;
        let meta = src.open_table(META)?;
        Ok(meta.get(META_RAFT)?.map(|v| v.value().to_vec()))
    }

    /// Pins the whole state as it stands now (one read transaction, so writes go on),
    /// to be copied into a snapshot file by [`StateView::write_to`].
    pub fn view(&self) -> Result<StateView, StorageError> {
        let txn = self.db().begin_read()?;
        let raft = {
            let meta = txn.open_table(META)?;
            meta.get(META_RAFT)?.map(|v| v.value().to_vec())
        };
        Ok(StateView { txn, raft })
    }

    /// Replaces the whole state with the copy in the redb file at `src_path`, in one
    /// fsynced transaction. Returns the Raft record of the copy.
    pub fn import(&self, src_path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
        let snap = Database::open(src_path)?;
        let src = snap.begin_read()?;
        self.import_done.store(0, Ordering::Relaxed);
        self.import_total.store(row_count(&src)?, Ordering::Relaxed);
        let dst = self.db().begin_write()?;
        {
            macro_rules! empty {
                ($t:expr) => {
                    clear(&dst, $t)?
                };
            }
            each_table!(empty);
        }
        copy_all(&src, &dst, Some(&self.import_done))?;
        upgrade(&dst)?;
        dst.commit()?;
        let head = self.read()?.stats()?.next_position;
        self.head.send_replace(head);
        let meta = src.open_table(META)?;
        Ok(meta.get(META_RAFT)?.map(|v| v.value().to_vec()))
    }
}

/// The whole state as one read transaction saw it ([`StateDb::view`]).
pub struct StateView {
    txn: ReadTransaction,
    raft: Option<Vec<u8>>,
}

impl StateView {
    /// The Raft layer's record (applied log id and membership) in the viewed state.
    pub fn raft_record(&self) -> Option<&[u8]> {
        self.raft.as_deref()
    }

    /// Writes the viewed state into a new redb file at `dest`, fsynced: a snapshot's
    /// data, installed elsewhere by [`StateDb::import`].
    pub fn write_to(&self, dest: &Path) -> Result<(), StorageError> {
        let out = Database::create(dest)?;
        let dst = out.begin_write()?;
        copy_all(&self.txn, &dst, None)?;
        dst.commit()?;
        Ok(())
    }
}

impl StateDb {
    /// Rows copied and rows to copy by the import under way, or by the last one: the
    /// progress of installing a snapshot.
    pub fn import_progress(&self) -> (u64, u64) {
        (
            self.import_done.load(Ordering::Relaxed),
            self.import_total.load(Ordering::Relaxed),
        )
    }
}

fn clear<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<(), StorageError> {
    let mut t = txn.open_table(def)?;
    t.retain(|_, _| false)?;
    Ok(())
}

/// Copies every row of one table, counting them into `copied` when given.
fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    src: &ReadTransaction,
    dst: &WriteTransaction,
    def: TableDefinition<K, V>,
    copied: Option<&AtomicU64>,
) -> Result<(), StorageError> {
    let from = match src.open_table(def) {
        Ok(t) => t,
        // A file of an older format lacks the tables added since: `upgrade` fills them.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut to = dst.open_table(def)?;
    for row in from.iter()? {
        let (k, v) = row?;
        to.insert(k.value(), v.value())?;
        if let Some(c) = copied {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

fn copy_all(
    src: &ReadTransaction,
    dst: &WriteTransaction,
    copied: Option<&AtomicU64>,
) -> Result<(), StorageError> {
    macro_rules! copy {
        ($t:expr) => {
            copy_table(src, dst, $t, copied)?
        };
    }
    each_table!(copy);
    Ok(())
}

/// Rows in every table of the state `src` reads.
fn row_count(src: &ReadTransaction) -> Result<u64, StorageError> {
    let mut rows = 0;
    macro_rules! count {
        ($t:expr) => {
            rows += table_rows(src, $t)?
        };
    }
    each_table!(count);
    Ok(rows)
}

fn table_rows<K: redb::Key + 'static, V: redb::Value + 'static>(
    src: &ReadTransaction,
    def: TableDefinition<K, V>,
) -> Result<u64, StorageError> {
    use redb::ReadableTableMetadata;
    match src.open_table(def) {
        Ok(t) => Ok(t.len()?),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// The open tables of one write transaction, and the counters it advances.
struct Writer<'t> {
    events: redb::Table<'t, u64, &'static [u8]>,
    streams: redb::Table<'t, &'static str, &'static [u8]>,
    stream_index: redb::Table<'t, u128, [u8; 24]>,
    event_ids: redb::Table<'t, u128, [u8; 24]>,
    type_names: redb::Table<'t, &'static str, u64>,
    type_index: redb::Table<'t, u128, ()>,
    tag_names: redb::Table<'t, &'static str, u64>,
    tag_index: redb::Table<'t, u128, ()>,
    snapshots: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    subscriptions: redb::Table<'t, &'static str, &'static [u8]>,
    meta: redb::Table<'t, &'static str, &'static [u8]>,
    retention: redb::Table<'t, &'static str, &'static [u8]>,
    counters: Counters,
    /// Names resolved in this transaction (types and tags share the number space).
    type_cache: HashMap<String, u64>,
    tag_cache: HashMap<String, u64>,
}

impl<'t> Writer<'t> {
    fn new(txn: &'t WriteTransaction) -> Result<Self, StorageError> {
        let meta = txn.open_table(META)?;
        let counters = match meta.get(META_COUNTERS)? {
            Some(v) => Counters::decode(v.value())?,
            None => Counters::default(),
        };
        Ok(Writer {
            events: txn.open_table(EVENTS)?,
            streams: txn.open_table(STREAMS)?,
            stream_index: txn.open_table(STREAM_INDEX)?,
            event_ids: txn.open_table(EVENT_IDS)?,
            type_names: txn.open_table(TYPE_NAMES)?,
            type_index: txn.open_table(TYPE_INDEX)?,
            tag_names: txn.open_table(TAG_NAMES)?,
            tag_index: txn.open_table(TAG_INDEX)?,
            snapshots: txn.open_table(SNAPSHOTS)?,
            subscriptions: txn.open_table(SUBSCRIPTIONS)?,
            meta,
            retention: txn.open_table(RETENTION)?,
            counters,
            type_cache: HashMap::new(),
            tag_cache: HashMap::new(),
        })
    }

    fn finish(mut self) -> Result<(), StorageError> {
        let c = self.counters.encode();
        self.meta.insert(META_COUNTERS, c.as_slice())?;
        Ok(())
    }

    fn apply_batch(&mut self, batch: WriteBatch) -> Result<BatchResult, StorageError> {
        let mut results = Vec::with_capacity(batch.commands.len());
        // The events' timestamp, decided at the batch's first append.
        let mut event_ts = None;
        for cmd in batch.commands {
            let r = match cmd {
                Command::Append {
                    stream_id,
                    expected,
                    events,
                } => {
                    let ts = match event_ts {
                        Some(ts) => ts,
                        None => *event_ts.insert(self.event_timestamp(batch.timestamp_us)?),
                    };
                    self.append(&stream_id, expected, events, ts)?
                        .map(Outcome::Appended)
                }
                Command::Delete { stream_id, hard } => {
                    self.delete(&stream_id, hard, None)?.map(|()| Outcome::Done)
                }
                Command::DeleteStream {
                    stream_id,
                    hard,
                    expected,
                } => self
                    .delete(&stream_id, hard, Some(expected))?
                    .map(|()| Outcome::Done),
                Command::SaveSnapshot {
                    stream_id,
                    version,
                    data,
                    metadata,
                } => {
                    let s = StoredSnapshot {
                        data,
                        metadata,
                        timestamp_us: batch.timestamp_us,
                    }
                    .encode();
                    self.snapshots
                        .insert((stream_id.as_str(), version), s.as_slice())?;
                    Ok(Outcome::Done)
                }
                Command::Subscribe {
                    key,
                    kind,
                    selector,
                    name,
                    start_from,
                    pool_size,
                } => {
                    let existing = match self.subscriptions.get(key.as_str())? {
                        Some(v) => Some(StoredSubscription::decode(v.value())?),
                        None => None,
                    };
                    let stored = match existing {
                        Some(stored) => stored,
                        None => {
                            let cursor = match start_from {
                                StartFrom::Beginning => 0,
                                StartFrom::End => self.counters.next_position,
                                StartFrom::Position(p) => p,
                            };
                            let stored = StoredSubscription {
                                key: key.clone(),
                                kind,
                                selector,
                                name,
                                start_from,
                                pool_size,
                                cursor,
                                created_us: batch.timestamp_us,
                                unused_head: 0,
                                unused_consumers: 0,
                                unused_delivered: 0,
                            };
                            self.subscriptions
                                .insert(key.as_str(), stored.encode().as_slice())?;
                            stored
                        }
                    };
                    // The head is filled in by whoever answers the client.
                    Ok(Outcome::Subscription(stored.info(0)))
                }
                Command::Unsubscribe { key } => {
                    if self.subscriptions.remove(key.as_str())?.is_some() {
                        Ok(Outcome::Done)
                    } else {
                        Err(StoreError::NotFound {
                            what: format!("subscription {key:?}"),
                        })
                    }
                }
                Command::Ack { key, position } => {
                    let found = match self.subscriptions.get(key.as_str())? {
                        Some(v) => Some(StoredSubscription::decode(v.value())?),
                        None => None,
                    };
                    match found {
                        None => Err(StoreError::NotFound {
                            what: format!("subscription {key:?}"),
                        }),
                        Some(mut stored) => {
                            // Checkpoints only move forward: an older ack is ignored.
                            let cursor = position.saturating_add(1);
                            if cursor > stored.cursor {
                                stored.cursor = cursor;
                                self.subscriptions
                                    .insert(key.as_str(), stored.encode().as_slice())?;
                            }
                            Ok(Outcome::Subscription(stored.info(0)))
                        }
                    }
                }
                Command::ScavengeStart => {
                    self.scavenge_start(batch.timestamp_us)?;
                    Ok(Outcome::Done)
                }
                Command::ScavengeStep { from, to } => {
                    self.scavenge_step(from, to, batch.timestamp_us)?;
                    Ok(Outcome::Done)
                }
                Command::SetRetention {
                    stream_id,
                    max_age_us,
                    max_count,
                    truncate_before,
                } => {
                    let r = StoredRetention {
                        max_age_us,
                        max_count,
                        truncate_before,
                    };
                    match self.stream_meta(&stream_id)? {
                        Some(m) if m.tombstoned => Err(StoreError::StreamDeleted { stream_id }),
                        _ => {
                            if r == StoredRetention::default() {
                                self.retention.remove(stream_id.as_str())?;
                            } else {
                                self.retention
                                    .insert(stream_id.as_str(), r.encode().as_slice())?;
                            }
                            Ok(Outcome::Done)
                        }
                    }
                }
                Command::ScavengeStop => {
                    if let Some(mut sc) = self.scavenge()? {
                        if sc.phase == ScavengePhase::Running {
                            sc.phase = ScavengePhase::Stopped;
                            self.meta.insert(META_SCAVENGE, sc.encode().as_slice())?;
                        }
                    }
                    Ok(Outcome::Done)
                }
                Command::DeleteSnapshot { stream_id, version } => {
                    match version {
                        Some(v) => {
                            self.snapshots.remove((stream_id.as_str(), v))?;
                        }
                        None => {
                            let sid = stream_id.as_str();
                            self.snapshots
                                .retain_in((sid, 0)..=(sid, u64::MAX), |_, _| false)?;
                        }
                    }
                    Ok(Outcome::Done)
                }
            };
            results.push(r);
        }
        Ok(BatchResult { results })
    }

    fn scavenge(&self) -> Result<Option<StoredScavenge>, StorageError> {
        match self.meta.get(META_SCAVENGE)? {
            Some(v) => Ok(Some(StoredScavenge::decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// Starts a scavenge over the log as it stands, or resumes a stopped one up to
    /// the log's end now; a running one goes on as it is.
    fn scavenge_start(&mut self, now_us: u64) -> Result<(), StorageError> {
        let end = self.counters.next_position;
        let sc = match self.scavenge()? {
            Some(sc) if sc.phase == ScavengePhase::Running => return Ok(()),
            Some(sc) if sc.phase == ScavengePhase::Stopped => StoredScavenge {
                phase: ScavengePhase::Running,
                end,
                ..sc
            },
            last => StoredScavenge {
                generation: last.map_or(0, |s| s.generation) + 1,
                phase: ScavengePhase::Running,
                end,
                next: 0,
                removed_events: 0,
                removed_bytes: 0,
                started_us: now_us,
                finished_us: None,
            },
        };
        self.meta.insert(META_SCAVENGE, sc.encode().as_slice())?;
        Ok(())
    }

    /// One step of the running scavenge: positions `from..to` (of those before its
    /// end), if it stands at `from`.
    fn scavenge_step(&mut self, from: u64, to: u64, now_us: u64) -> Result<(), StorageError> {
        let Some(mut sc) = self.scavenge()? else {
            return Ok(());
        };
        if sc.phase != ScavengePhase::Running || sc.next != from || to <= from {
            return Ok(());
        }
        let to = to.min(sc.end);
        let mut positions = Vec::new();
        for row in self.events.range(from..to)? {
            positions.push(row?.0.value());
        }
        let mut kept_from = HashMap::new();
        for p in positions {
            if let Some(bytes) = self.remove_if_unreadable(p, now_us, &mut kept_from)? {
                sc.removed_events += 1;
                sc.removed_bytes += bytes as u64;
            }
        }
        sc.next = to;
        if sc.next >= sc.end {
            sc.phase = ScavengePhase::Done;
            sc.finished_us = Some(now_us);
        }
        self.meta.insert(META_SCAVENGE, sc.encode().as_slice())?;
        Ok(())
    }

    /// Removes the event at `position` from the events and every index when no read
    /// can return it any more: its stream's index no longer holds it (the stream was
    /// deleted or tombstoned since), or its stream's retention no longer keeps it at
    /// `now_us`. `kept_from` caches, per stream, the first version its retention
    /// keeps. Gives the bytes of the record removed.
    fn remove_if_unreadable(
        &mut self,
        position: u64,
        now_us: u64,
        kept_from: &mut HashMap<String, u64>,
    ) -> Result<Option<usize>, StorageError> {
        let (e, bytes) = match self.events.get(position)? {
            Some(v) => (StoredEvent::decode(v.value())?, v.value().len()),
            None => return Ok(None),
        };
        if let Some(m) = self.stream_meta(&e.stream_id)? {
            let key = pack(m.number, e.version);
            let indexed = self
                .stream_index
                .get(key)?
                .map(|v| split_index_value(v.value()).0);
            if indexed == Some(position) {
                let first = match kept_from.get(&e.stream_id) {
                    Some(f) => *f,
                    None => {
                        let r = match self.retention.get(e.stream_id.as_str())? {
                            Some(v) => StoredRetention::decode(v.value())?,
                            None => StoredRetention::default(),
                        };
                        let head = m.live_version().unwrap_or(0);
                        let f = first_kept(
                            &self.stream_index,
                            &self.events,
                            m.number,
                            head,
                            &r,
                            now_us,
                        )?;
                        kept_from.insert(e.stream_id.clone(), f);
                        f
                    }
                };
                if e.version >= first {
                    return Ok(None);
                }
                self.stream_index.remove(key)?;
            }
        }
        self.events.remove(position)?;
        let id = e.event_id.as_u128();
        let here = self
            .event_ids
            .get(id)?
            .is_some_and(|v| id_place(v.value()).position == position);
        if here {
            self.event_ids.remove(id)?;
        }
        // A delete took the event out of the type and tag indexes already; make sure.
        if let Some(n) = self
            .type_names
            .get(e.event_type.as_str())?
            .map(|n| n.value())
        {
            self.type_index.remove(pack(n, position))?;
        }
        for t in &e.tags {
            if let Some(n) = self.tag_names.get(t.as_str())?.map(|n| n.value()) {
                self.tag_index.remove(pack(n, position))?;
            }
        }
        Ok(Some(bytes))
    }

    /// The timestamp a batch stamped `proposed` gives its events: never earlier than
    /// the last event's, so that timestamps never go down along the global log (each
    /// leader keeps its own from going back, but a new leader's clock may be behind
    /// the old one's). Reads as of a time search the log by it.
    fn event_timestamp(&self, proposed: u64) -> Result<u64, StorageError> {
        let last = match self.events.last()? {
            Some((_, v)) => StoredEvent::decode(v.value())?.timestamp_us,
            None => 0,
        };
        Ok(proposed.max(last))
    }

    fn stream_meta(&self, stream_id: &str) -> Result<Option<StreamMeta>, StorageError> {
        match self.streams.get(stream_id)? {
            Some(v) => Ok(Some(
                StreamMeta::decode(v.value()).ok_or_else(|| corrupt("streams", stream_id))?,
            )),
            None => Ok(None),
        }
    }

    fn name_no(&mut self, is_tag: bool, name: &str) -> Result<u64, StorageError> {
        let cache = if is_tag {
            &mut self.tag_cache
        } else {
            &mut self.type_cache
        };
        if let Some(n) = cache.get(name) {
            return Ok(*n);
        }
        let table = if is_tag {
            &mut self.tag_names
        } else {
            &mut self.type_names
        };
        let existing = table.get(name)?.map(|v| v.value());
        let n = match existing {
            Some(n) => n,
            None => {
                let n = self.counters.next_name_no;
                self.counters.next_name_no += 1;
                table.insert(name, n)?;
                n
            }
        };
        cache.insert(name.to_string(), n);
        Ok(n)
    }

    fn append(
        &mut self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<ProposedEvent>,
        timestamp_us: u64,
    ) -> Result<Result<AppendResult, StoreError>, StorageError> {
        let meta = self.stream_meta(stream_id)?;
        let mut places = Vec::with_capacity(events.len());
        for e in &events {
            places.push(
                self.event_ids
                    .get(e.event_id.as_u128())?
                    .map(|v| id_place(v.value())),
            );
        }
        match judge_event_ids(meta.map(|m| m.number), &places) {
            IdVerdict::New => {}
            IdVerdict::Retry(original) => return Ok(Ok(original)),
            IdVerdict::Duplicate(i) => {
                return Ok(Err(StoreError::DuplicateEventId {
                    event_id: events[i].event_id,
                }))
            }
        }
        if let Err(e) = check_expected(stream_id, expected.into(), stream_state(meta)) {
            return Ok(Err(e));
        }
        let number = match meta {
            Some(m) => m.number,
            None => {
                let n = self.counters.next_stream_no;
                self.counters.next_stream_no += 1;
                n
            }
        };
        let first_version = meta.map_or(0, |m| m.next_version());
        let first_position = self.counters.next_position;
        let mut version = first_version;
        let mut position = first_position;
        let mut last_id = Uuid::nil();
        for e in events {
            let type_no = self.name_no(false, &e.event_type)?;
            let mut tag_nos = Vec::with_capacity(e.tags.len());
            for t in &e.tags {
                tag_nos.push(self.name_no(true, t)?);
            }
            let record = StoredEvent {
                stream_id: stream_id.to_string(),
                version,
                position,
                event_id: e.event_id,
                event_type: e.event_type,
                data: e.data,
                metadata: e.metadata,
                content_type: e.content_type,
                tags: e.tags,
                timestamp_us,
            };
            let bytes = record.encode();
            self.events.insert(position, bytes.as_slice())?;
            self.stream_index
                .insert(pack(number, version), index_value(position, e.event_id))?;
            let id = e.event_id.as_u128();
            if self
                .event_ids
                .insert(id, id_place_value(position, number, version))?
                .is_some()
            {
                // Validation refuses an id twice in one append; a second one here
                // means the state diverges from the log: stop rather than go on.
                return Err(corrupt(
                    "event_ids",
                    format!("event id {} stored twice by one append", e.event_id),
                ));
            }
            self.type_index.insert(pack(type_no, position), ())?;
            for t in tag_nos {
                self.tag_index.insert(pack(t, position), ())?;
            }
            last_id = e.event_id;
            version += 1;
            position += 1;
        }
        self.counters.next_position = position;
        let new_meta = StreamMeta {
            number,
            version: Some(version - 1),
            tombstoned: false,
            deleted: false,
            last_event_id: last_id,
        };
        self.streams
            .insert(stream_id, new_meta.encode().as_slice())?;
        Ok(Ok(AppendResult {
            version: version - 1,
            first_position,
            last_position: position - 1,
        }))
    }

    /// Deletes a stream: soft, or for ever (`hard`). With `expected` (what
    /// [`Command::DeleteStream`] carries), the stream must be at it, and a soft delete
    /// keeps the stream's numbering; without (the legacy [`Command::Delete`]), no check,
    /// and a recreated stream is numbered from 0 again.
    fn delete(
        &mut self,
        stream_id: &str,
        hard: bool,
        expected: Option<ExpectedVersion>,
    ) -> Result<Result<(), StoreError>, StorageError> {
        let meta = self.stream_meta(stream_id)?;
        if let Some(expected) = expected {
            if let Err(e) = check_expected(stream_id, expected.into(), stream_state(meta)) {
                return Ok(Err(e));
            }
        }
        let mut m = match meta {
            Some(m) => m,
            None if hard => {
                let n = self.counters.next_stream_no;
                self.counters.next_stream_no += 1;
                StreamMeta {
                    number: n,
                    version: None,
                    tombstoned: false,
                    deleted: false,
                    last_event_id: Uuid::nil(),
                }
            }
            None => return Ok(Ok(())),
        };
        if let Some(head) = m.live_version() {
            // Take the stream's events out of the stream, type and tag indexes; the
            // events stay in the global log at their positions.
            let lo = pack(m.number, 0);
            let hi = pack(m.number, head);
            let mut positions = Vec::new();
            for row in self.stream_index.range(lo..=hi)? {
                let (_, v) = row?;
                positions.push(split_index_value(v.value()).0);
            }
            self.stream_index.retain_in(lo..=hi, |_, _| false)?;
            for pos in positions {
                let record = match self.events.get(pos)? {
                    Some(v) => StoredEvent::decode(v.value())?,
                    None => return Err(corrupt("events", format!("position {pos} missing"))),
                };
                if let Some(n) = self.type_names.get(record.event_type.as_str())? {
                    self.type_index.remove(pack(n.value(), pos))?;
                }
                for t in &record.tags {
                    if let Some(n) = self.tag_names.get(t.as_str())? {
                        self.tag_index.remove(pack(n.value(), pos))?;
                    }
                }
            }
        }
        if expected.is_some() {
            m.deleted = true;
        } else {
            m.version = None;
        }
        m.last_event_id = Uuid::nil();
        m.tombstoned |= hard;
        self.streams.insert(stream_id, m.encode().as_slice())?;
        Ok(Ok(()))
    }
}

/// The first version of a stream (number `number`, last version `head`) that
/// `retention` keeps at time `now_us`: versions below it are no longer read. A binary
/// search for the age: timestamps never go down along a stream.
fn first_kept<I, E>(
    index: &I,
    events: &E,
    number: u64,
    head: u64,
    retention: &StoredRetention,
    now_us: u64,
) -> Result<u64, StorageError>
where
    I: ReadableTable<u128, [u8; 24]>,
    E: ReadableTable<u64, &'static [u8]>,
{
    let mut first = retention.truncate_before.unwrap_or(0);
    if let Some(count) = retention.max_count {
        first = first.max((head + 1).saturating_sub(count));
    }
    if let Some(age) = retention.max_age_us {
        let cutoff = now_us.saturating_sub(age);
        // The first version, from `first` on, of an event written at or after the
        // cutoff (or past the head when none was).
        let (mut lo, mut hi) = (first, head + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let next = index
                .range(pack(number, mid)..=pack(number, head))?
                .next()
                .transpose()?;
            let Some((k, v)) = next else {
                hi = mid;
                continue;
            };
            let version = low(k.value());
            let written = match events.get(split_index_value(v.value()).0)? {
                Some(e) => StoredEvent::decode(e.value())?.timestamp_us,
                None => 0,
            };
            if written < cutoff {
                lo = version + 1;
            } else {
                hi = mid;
            }
        }
        first = lo;
    }
    Ok(first)
}

/// A stream's state as expected versions are checked against it.
fn stream_state(meta: Option<StreamMeta>) -> StreamState {
    match meta {
        Some(m) if m.tombstoned => StreamState::Tombstoned,
        Some(m) => m
            .live_version()
            .map_or(StreamState::Absent, StreamState::At),
        None => StreamState::Absent,
    }
}

/// A consistent read view of the state.
pub struct Reader {
    txn: ReadTransaction,
}

fn stream_not_found(stream_id: &str) -> StoreError {
    StoreError::StreamNotFound {
        stream_id: stream_id.to_string(),
    }
}

impl Reader {
    fn meta(&self, stream_id: &str) -> Result<Option<StreamMeta>, StorageError> {
        let t = self.txn.open_table(STREAMS)?;
        let m = t.get(stream_id)?;
        match m {
            Some(v) => Ok(Some(
                StreamMeta::decode(v.value()).ok_or_else(|| corrupt("streams", stream_id))?,
            )),
            None => Ok(None),
        }
    }

    /// How long the stream keeps its events; `None`: for ever.
    pub fn retention(&self, stream_id: &str) -> Result<Option<StoredRetention>, StorageError> {
        let t = self.txn.open_table(RETENTION)?;
        let v = t.get(stream_id)?;
        match v {
            Some(v) => Ok(Some(StoredRetention::decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// The store's scavenge, the last or the one running; `None` when never started.
    pub fn scavenge(&self) -> Result<Option<StoredScavenge>, StorageError> {
        let meta = self.txn.open_table(META)?;
        let v = meta.get(META_SCAVENGE)?;
        match v {
            Some(v) => Ok(Some(StoredScavenge::decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// The stream's current version; `None` when it does not exist.
    pub fn version(&self, stream_id: &str) -> Result<Option<u64>, StorageError> {
        Ok(self.meta(stream_id)?.and_then(|m| m.live_version()))
    }

    /// Appends the event at `position` to `page` as it is stored (its bytes are those
    /// of the wire's record: see [`StoredEvent`]); returns how many bytes it took.
    fn push_event(
        &self,
        events: &redb::ReadOnlyTable<u64, &[u8]>,
        position: u64,
        page: &mut EventPage,
    ) -> Result<usize, StorageError> {
        match events.get(position)? {
            Some(v) => {
                let stored = v.value();
                page.push_encoded(stored);
                Ok(stored.len())
            }
            None => Err(corrupt("events", format!("position {position} missing"))),
        }
    }

    /// Events of one stream, as its retention keeps them now; `StreamNotFound` when
    /// it does not exist.
    pub fn read_stream(
        &self,
        stream_id: &str,
        from: u64,
        count: u32,
        direction: Direction,
    ) -> Result<Result<EventPage, StoreError>, StorageError> {
        self.read_stream_at(stream_id, from, count, direction, wall_clock_us())
    }

    /// [`read_stream`](Self::read_stream) with the stream's retention applied as at
    /// `now_us` (microseconds since the Unix epoch).
    pub fn read_stream_at(
        &self,
        stream_id: &str,
        from: u64,
        count: u32,
        direction: Direction,
        now_us: u64,
    ) -> Result<Result<EventPage, StoreError>, StorageError> {
        let Some(m) = self.meta(stream_id)? else {
            return Ok(Err(stream_not_found(stream_id)));
        };
        let Some(head) = m.live_version() else {
            return Ok(Err(stream_not_found(stream_id)));
        };
        let backward = direction == Direction::Backward;
        let Some((lo, hi)) = stream_read_range(head, from, backward) else {
            return Ok(Ok(EventPage::new()));
        };
        if count == 0 {
            return Ok(Ok(EventPage::new()));
        }
        let index = self.txn.open_table(STREAM_INDEX)?;
        let events = self.txn.open_table(EVENTS)?;
        let lo = match self.retention(stream_id)? {
            Some(r) => lo.max(first_kept(&index, &events, m.number, head, &r, now_us)?),
            None => lo,
        };
        if lo > hi {
            return Ok(Ok(EventPage::new()));
        }
        let range = index.range(pack(m.number, lo)..=pack(m.number, hi))?;
        let mut out = EventPage::new();
        let mut bytes = 0usize;
        let mut taken = 0u32;
        // Returns whether to go on: pages stop at `count` events or READ_BYTES_MAX.
        let mut push = |row: Result<
            (redb::AccessGuard<u128>, redb::AccessGuard<[u8; 24]>),
            redb::StorageError,
        >|
         -> Result<bool, StorageError> {
            let (_, v) = row?;
            let (pos, _) = split_index_value(v.value());
            bytes += self.push_event(&events, pos, &mut out)?;
            taken += 1;
            Ok(taken < count && bytes < READ_BYTES_MAX)
        };
        if backward {
            for row in range.rev() {
                if !push(row)? {
                    break;
                }
            }
        } else {
            for row in range {
                if !push(row)? {
                    break;
                }
            }
        }
        Ok(Ok(out))
    }

    /// The timestamp of the first event at or after `position`, with its position;
    /// `None` past the end.
    fn first_from(
        events: &redb::ReadOnlyTable<u64, &[u8]>,
        position: u64,
    ) -> Result<Option<(u64, u64)>, StorageError> {
        match events.range(position..)?.next() {
            Some(row) => {
                let (k, v) = row?;
                Ok(Some((
                    k.value(),
                    StoredEvent::decode(v.value())?.timestamp_us,
                )))
            }
            None => Ok(None),
        }
    }

    /// The global log's length at time `at_us` (microseconds since the Unix epoch): a
    /// position such that every event before it was written at or before `at_us`,
    /// and every event from it on after (the first event written after `at_us`, or
    /// the next position when none was). A binary search: timestamps never go down
    /// along the log.
    pub fn position_at(&self, at_us: u64) -> Result<u64, StorageError> {
        let events = self.txn.open_table(EVENTS)?;
        let end = match events.last()? {
            Some((k, _)) => k.value() + 1,
            None => return Ok(0),
        };
        // The answer lies in lo..=hi; positions past `hi` are written after `at_us`.
        let (mut lo, mut hi) = (0u64, end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match Self::first_from(&events, mid)? {
                Some((p, ts)) if ts <= at_us => lo = p + 1,
                _ => hi = mid,
            }
        }
        Ok(lo)
    }

    /// The version stream `stream_id` had at time `at_us`: its last event written at
    /// or before it, of those reads can still return (a deleted incarnation's are
    /// not). `None` when it had none.
    pub fn version_at(&self, stream_id: &str, at_us: u64) -> Result<Option<u64>, StorageError> {
        let Some(m) = self.meta(stream_id)? else {
            return Ok(None);
        };
        let Some(head) = m.live_version() else {
            return Ok(None);
        };
        let cut = self.position_at(at_us)?;
        let index = self.txn.open_table(STREAM_INDEX)?;
        // The last live version whose position is before `cut`: positions rise with
        // versions, so a binary search over the versions that stand.
        let (mut lo, mut hi) = (0u64, head + 1);
        let mut found = None;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let next = index
                .range(pack(m.number, mid)..=pack(m.number, head))?
                .next()
                .transpose()?;
            match next {
                Some((k, v)) if split_index_value(v.value()).0 < cut => {
                    let version = low(k.value());
                    found = Some(version);
                    lo = version + 1;
                }
                _ => hi = mid,
            }
        }
        Ok(found)
    }

    /// Events of the global log by position.
    pub fn read_all(
        &self,
        from: u64,
        count: u32,
        direction: Direction,
    ) -> Result<EventPage, StorageError> {
        let events = self.txn.open_table(EVENTS)?;
        let n = count as usize;
        let mut out = EventPage::new();
        let mut bytes = 0usize;
        // Stored events go out as they lie: their bytes are the wire's record.
        let mut push = |stored: &[u8]| {
            bytes += stored.len();
            out.push_encoded(stored);
            bytes < READ_BYTES_MAX
        };
        match direction {
            Direction::Forward => {
                for row in events.range(from..)?.take(n) {
                    let (_, v) = row?;
                    if !push(v.value()) {
                        break;
                    }
                }
            }
            Direction::Backward => {
                for row in events.range(..=from)?.rev().take(n) {
                    let (_, v) = row?;
                    if !push(v.value()) {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    fn positions_of(
        &self,
        index: &redb::ReadOnlyTable<u128, ()>,
        no: u64,
        from: u64,
        count: usize,
    ) -> Result<Vec<u64>, StorageError> {
        let mut out = Vec::new();
        for row in index
            .range(pack(no, from)..=pack(no, u64::MAX))?
            .take(count)
        {
            let (k, _) = row?;
            out.push(low(k.value()));
        }
        Ok(out)
    }

    fn name_nos(
        &self,
        def: TableDefinition<&str, u64>,
        names: &[String],
    ) -> Result<Vec<u64>, StorageError> {
        let t = self.txn.open_table(def)?;
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            out.push(t.get(n.as_str())?.map(|v| v.value()));
        }
        Ok(out.into_iter().flatten().collect())
    }

    fn events_at(&self, positions: &[u64]) -> Result<EventPage, StorageError> {
        let events = self.txn.open_table(EVENTS)?;
        let mut out = EventPage::new();
        let mut bytes = 0usize;
        for p in positions {
            bytes += self.push_event(&events, *p, &mut out)?;
            if bytes >= READ_BYTES_MAX {
                break;
            }
        }
        Ok(out)
    }

    /// Events whose type is one of `types` (every event when empty), ascending.
    pub fn read_by_types(
        &self,
        types: &[String],
        from: u64,
        count: u32,
    ) -> Result<EventPage, StorageError> {
        if types.is_empty() {
            return self.read_all(from, count, Direction::Forward);
        }
        let index = self.txn.open_table(TYPE_INDEX)?;
        let mut positions = Vec::new();
        for no in self.name_nos(TYPE_NAMES, types)? {
            positions.extend(self.positions_of(&index, no, from, count as usize)?);
        }
        positions.sort_unstable();
        positions.dedup();
        positions.truncate(count as usize);
        self.events_at(&positions)
    }

    /// Events carrying any or all of `tags`, ascending. No tags match nothing.
    pub fn read_by_tags(
        &self,
        tags: &[String],
        matching: TagMatch,
        from: u64,
        count: u32,
    ) -> Result<EventPage, StorageError> {
        if tags.is_empty() {
            return Ok(EventPage::new());
        }
        let index = self.txn.open_table(TAG_INDEX)?;
        let nos = self.name_nos(TAG_NAMES, tags)?;
        let positions = match matching {
            TagMatch::Any => {
                let mut p = Vec::new();
                for no in nos {
                    p.extend(self.positions_of(&index, no, from, count as usize)?);
                }
                p.sort_unstable();
                p.dedup();
                p.truncate(count as usize);
                p
            }
            TagMatch::All => {
                let mut unique = nos.clone();
                unique.sort_unstable();
                unique.dedup();
                let mut wanted = tags.to_vec();
                wanted.sort_unstable();
                wanted.dedup();
                if unique.len() < wanted.len() {
                    // A tag never seen cannot be carried by any event.
                    return Ok(EventPage::new());
                }
                let (first, rest) = unique.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
                let mut p = Vec::new();
                for row in index.range(pack(first, from)..=pack(first, u64::MAX))? {
                    let (k, _) = row?;
                    let pos = low(k.value());
                    let mut all = true;
                    for no in rest {
                        if index.get(pack(*no, pos))?.is_none() {
                            all = false;
                            break;
                        }
                    }
                    if all {
                        p.push(pos);
                        if p.len() >= count as usize {
                            break;
                        }
                    }
                }
                p
            }
        };
        self.events_at(&positions)
    }

    /// Up to `limit` live streams in id order after `after`.
    pub fn list_streams(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StreamInfo>, StorageError> {
        // Every id contains the empty string; with no scan bound the page ends only
        // when full or at the end.
        Ok(self.find_streams(after, "", limit, usize::MAX)?.streams)
    }

    /// Up to `limit` live streams after `after` whose id contains `contains`,
    /// examining at most `scan_max` ids; with where to resume when it stopped before
    /// the end (`None` when every id after `after` was examined).
    pub fn find_streams(
        &self,
        after: Option<&str>,
        contains: &str,
        limit: u32,
        scan_max: usize,
    ) -> Result<StreamPage, StorageError> {
        let t = self.txn.open_table(STREAMS)?;
        let mut page = StreamPage::default();
        let range = match after {
            Some(a) => {
                t.range::<&str>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))?
            }
            None => t.range::<&str>(..)?,
        };
        let mut scanned = 0usize;
        for row in range {
            let (k, v) = row?;
            let id = k.value();
            scanned += 1;
            if id.contains(contains) {
                let m = StreamMeta::decode(v.value()).ok_or_else(|| corrupt("streams", id))?;
                if let Some(version) = m.live_version() {
                    page.streams.push(StreamInfo {
                        stream_id: id.to_string(),
                        version,
                    });
                }
            }
            if page.streams.len() >= limit as usize || scanned >= scan_max {
                page.resume_after = Some(id.to_string());
                break;
            }
        }
        Ok(page)
    }

    /// Snapshots of a stream by ascending version, within `lo..=hi`.
    pub fn snapshots(
        &self,
        stream_id: &str,
        lo: u64,
        hi: u64,
    ) -> Result<Vec<SnapshotRecord>, StorageError> {
        let t = self.txn.open_table(SNAPSHOTS)?;
        let mut out = Vec::new();
        for row in t.range((stream_id, lo)..=(stream_id, hi))? {
            let (k, v) = row?;
            let s = StoredSnapshot::decode(v.value())?;
            out.push(SnapshotRecord {
                stream_id: stream_id.to_string(),
                version: k.value().1,
                data: s.data,
                metadata: s.metadata,
                timestamp_us: s.timestamp_us,
            });
        }
        Ok(out)
    }

    /// The highest-versioned snapshot of a stream.
    pub fn latest_snapshot(&self, stream_id: &str) -> Result<Option<SnapshotRecord>, StorageError> {
        let t = self.txn.open_table(SNAPSHOTS)?;
        let last = t.range((stream_id, 0)..=(stream_id, u64::MAX))?.next_back();
        match last {
            Some(row) => {
                let (k, v) = row?;
                let s = StoredSnapshot::decode(v.value())?;
                Ok(Some(SnapshotRecord {
                    stream_id: stream_id.to_string(),
                    version: k.value().1,
                    data: s.data,
                    metadata: s.metadata,
                    timestamp_us: s.timestamp_us,
                }))
            }
            None => Ok(None),
        }
    }

    /// One subscription (its `head` filled in).
    pub fn subscription(&self, key: &str) -> Result<Option<SubscriptionInfo>, StorageError> {
        let t = self.txn.open_table(SUBSCRIPTIONS)?;
        let found = t.get(key)?;
        match found {
            Some(v) => {
                let stored = StoredSubscription::decode(v.value())?;
                Ok(Some(stored.info(self.stats()?.next_position)))
            }
            None => Ok(None),
        }
    }

    /// Every subscription, by key.
    pub fn subscriptions(&self) -> Result<Vec<SubscriptionInfo>, StorageError> {
        let head = self.stats()?.next_position;
        let t = self.txn.open_table(SUBSCRIPTIONS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            out.push(StoredSubscription::decode(v.value())?.info(head));
        }
        Ok(out)
    }

    /// Scans the global log from `from`, keeping the events `keep` accepts, until `max`
    /// are kept or `scan_max` are looked at. Returns them and the position after the
    /// last event looked at.
    pub fn scan(
        &self,
        from: u64,
        max: usize,
        scan_max: usize,
        mut keep: impl FnMut(&EventRecord) -> bool,
    ) -> Result<(Vec<EventRecord>, u64), StorageError> {
        let events = self.txn.open_table(EVENTS)?;
        let mut out = Vec::new();
        let mut next = from;
        let mut bytes = 0usize;
        for row in events.range(from..)?.take(scan_max) {
            let (k, v) = row?;
            let e: EventRecord = StoredEvent::decode(v.value())?.into();
            next = k.value() + 1;
            if keep(&e) {
                bytes += record_bytes(&e);
                out.push(e);
                if out.len() >= max || bytes >= READ_BYTES_MAX {
                    break;
                }
            }
        }
        Ok((out, next))
    }

    /// Counts for status.
    pub fn stats(&self) -> Result<StateStats, StorageError> {
        let events = self.txn.open_table(EVENTS)?;
        let meta = self.txn.open_table(META)?;
        let counters = match meta.get(META_COUNTERS)? {
            Some(v) => Counters::decode(v.value())?,
            None => Counters::default(),
        };
        use redb::ReadableTableMetadata;
        Ok(StateStats {
            events: events.len()?,
            next_position: counters.next_position,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::format::META_FORMAT;
    use super::*;
    use crate::command::ContentType;

    fn append(stream: &str, events: usize, bytes_each: usize) -> ApplyItem {
        let event = ProposedEvent {
            event_id: Uuid::nil(),
            event_type: "t".into(),
            data: vec![b'x'; bytes_each],
            metadata: Vec::new(),
            content_type: ContentType::Binary,
            tags: Vec::new(),
        };
        ApplyItem::Batch(WriteBatch {
            timestamp_us: 1,
            commands: vec![Command::Append {
                stream_id: stream.into(),
                expected: ExpectedVersion::Any,
                events: (0..events)
                    .map(|_| ProposedEvent {
                        event_id: Uuid::now_v7(),
                        ..event.clone()
                    })
                    .collect(),
            }],
        })
    }

    /// Appends events with the given ids to `stream`, one command, and gives its result.
    fn append_ids(db: &StateDb, stream: &str, ids: &[Uuid]) -> Result<AppendResult, StoreError> {
        let events = ids
            .iter()
            .map(|id| ProposedEvent {
                event_id: *id,
                event_type: "t".into(),
                data: b"{}".to_vec(),
                metadata: Vec::new(),
                content_type: ContentType::Json,
                tags: Vec::new(),
            })
            .collect();
        let item = ApplyItem::Batch(WriteBatch {
            timestamp_us: 1,
            commands: vec![Command::Append {
                stream_id: stream.into(),
                expected: ExpectedVersion::Any,
                events,
            }],
        });
        let mut out = db.apply(vec![item], b"r").unwrap();
        let result = out.pop().unwrap().unwrap().results.pop().unwrap();
        result.map(|o| match o {
            Outcome::Appended(r) => r,
            other => panic!("not an append result: {other:?}"),
        })
    }

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::now_v7()).collect()
    }

    fn events_held(db: &StateDb) -> u64 {
        db.read().unwrap().stats().unwrap().events
    }

    #[test]
    fn a_retry_is_answered_with_the_first_result_wherever_its_ids_stand() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("state.redb")).unwrap();
        let first = ids(3);
        let original = append_ids(&db, "s", &first).unwrap();
        // Later appends move the head far past the first one.
        for _ in 0..5 {
            append_ids(&db, "s", &ids(2)).unwrap();
        }
        append_ids(&db, "other", &ids(1)).unwrap();
        let held = events_held(&db);
        assert_eq!(append_ids(&db, "s", &first), Ok(original));
        assert_eq!(events_held(&db), held, "a retry writes nothing");
    }

    #[test]
    fn an_id_stored_elsewhere_refuses_the_whole_append() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("state.redb")).unwrap();
        let stored = ids(2);
        append_ids(&db, "s", &stored).unwrap();
        let held = events_held(&db);
        let fresh = Uuid::now_v7();
        let refused = |e| Err(StoreError::DuplicateEventId { event_id: e });
        // In another stream.
        assert_eq!(append_ids(&db, "t", &[stored[0]]), refused(stored[0]));
        // Only some of the ids.
        assert_eq!(
            append_ids(&db, "s", &[fresh, stored[1]]),
            refused(stored[1])
        );
        // Out of order: named where the run breaks.
        assert_eq!(
            append_ids(&db, "s", &[stored[1], stored[0]]),
            refused(stored[0])
        );
        assert_eq!(events_held(&db), held, "a refused append writes nothing");
        // The fresh id was not taken by the refused append.
        assert_eq!(append_ids(&db, "s", &[fresh]).unwrap().version, 2);
    }

    #[test]
    fn a_file_of_format_1_gets_its_event_id_index_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let first = ids(3);
        let original = {
            let db = StateDb::open(&path).unwrap();
            let r = append_ids(&db, "s", &first).unwrap();
            append_ids(&db, "s", &ids(2)).unwrap();
            // Take the file back to format 1: no index, no format mark.
            let txn = db.db().begin_write().unwrap();
            txn.delete_table(EVENT_IDS).unwrap();
            txn.open_table(META).unwrap().remove(META_FORMAT).unwrap();
            txn.commit().unwrap();
            r
        };
        let db = StateDb::open(&path).unwrap();
        assert_eq!(append_ids(&db, "s", &first), Ok(original));
        assert_eq!(
            append_ids(&db, "t", &[first[1]]),
            Err(StoreError::DuplicateEventId { event_id: first[1] })
        );
    }

    #[test]
    fn a_file_of_a_newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let db = StateDb::open(&path).unwrap();
            let txn = db.db().begin_write().unwrap();
            let newer = (STATE_FORMAT + 1).to_le_bytes();
            txn.open_table(META)
                .unwrap()
                .insert(META_FORMAT, newer.as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let err = StateDb::open(&path).err().expect("refused");
        assert!(matches!(err, StorageError::Format { .. }), "{err}");
    }

    #[test]
    fn a_flush_is_due_after_its_interval_or_its_bytes() {
        let t0 = Instant::now();
        let mut u = Unflushed {
            since: t0,
            bytes: 0,
        };
        assert!(!u.due(t0));
        assert!(u.due(t0 + FLUSH_INTERVAL));
        u.bytes = FLUSH_BYTES_MAX;
        assert!(u.due(t0));
    }

    #[test]
    fn applied_bytes_count_towards_the_next_flush_and_a_flush_resets_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("state.redb")).unwrap();
        db.apply(vec![append("a", 2, 1000)], b"r").unwrap();
        assert_eq!(db.unflushed().bytes, 2 * (1000 + FLUSH_EVENT_ALLOWANCE));
        // Past the limit in bytes, the flush is due whatever the clock says.
        let each = 64 * 1024;
        let n = FLUSH_BYTES_MAX / each + 1;
        db.apply(vec![append("b", n, each)], b"r").unwrap();
        assert!(db.flush_due());
        db.flush().unwrap();
        assert_eq!(db.unflushed().bytes, 0);
    }
}
