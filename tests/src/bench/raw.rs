//! The disk's own ceiling: raw redb commits and scans in this process, on the same
//! directory as the node's data, with the same 200-byte values under `u64` keys.
//!
//! These functions block; call them from a blocking thread.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use redb::{Database, Durability, ReadableDatabase, TableDefinition};

use super::{payload, RunSample, Tally, Timing, Window};

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// An index shaped like the node's event id index: a 128-bit id to 24 bytes (the
/// event's position, stream number and version).
const ID_TABLE: TableDefinition<u128, [u8; 24]> = TableDefinition::new("event_ids");

/// Which ids a commit also indexes, as the node's event id index does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    /// No index: the plain baseline.
    None,
    /// Time-ordered (UUID v7) ids, what the client library and the CLI generate.
    TimeOrdered,
    /// Random (UUID v4) ids, what a client bringing its own ids may send.
    Random,
}

impl Ids {
    fn next(self) -> Option<u128> {
        match self {
            Ids::None => None,
            Ids::TimeOrdered => Some(uuid::Uuid::now_v7().as_u128()),
            Ids::Random => Some(uuid::Uuid::new_v4().as_u128()),
        }
    }
}

/// Events per commit when loading the scan table (not timed).
pub const LOAD_EVENTS_PER_COMMIT: u64 = 1000;
/// Rows per timed chunk of a scan: the scan's "request", the size of a W4 page.
pub const SCAN_CHUNK_ROWS: u64 = 1000;

/// Commits `per_commit` events per `Durability::Immediate` transaction, one after the
/// other, into a fresh database at `path` for the warm-up and the window; the file is
/// removed afterwards. Latency is per commit.
pub fn commits(path: &Path, timing: Timing, per_commit: u64) -> anyhow::Result<RunSample> {
    commits_indexed(path, timing, per_commit, Ids::None)
}

/// [`commits`], each event also indexed by an id from `ids` in the same transaction:
/// what the event id index costs at the disk.
pub fn commits_indexed(
    path: &Path,
    timing: Timing,
    per_commit: u64,
    ids: Ids,
) -> anyhow::Result<RunSample> {
    let db = Database::create(path).with_context(|| format!("creating {}", path.display()))?;
    let value = payload();
    let mut key = 0u64;
    let mut tally = Tally::default();
    let window = Window::begin(timing);
    loop {
        let started = Instant::now();
        if window.over(started) {
            break;
        }
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut table = txn.open_table(TABLE)?;
            let mut index = txn.open_table(ID_TABLE)?;
            for _ in 0..per_commit {
                table.insert(key, value.as_slice())?;
                if let Some(id) = ids.next() {
                    let mut place = [0u8; 24];
                    place[..8].copy_from_slice(&key.to_be_bytes());
                    index.insert(id, place)?;
                }
                key += 1;
            }
        }
        // Durable here: an Immediate commit returns after the fsync.
        txn.commit()?;
        tally.record(&window, started, Instant::now(), per_commit);
    }
    drop(db);
    std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    Ok(tally.finish(&window))
}

/// A table of `rows` events to scan, loaded with 1000-event Immediate commits.
/// The file is removed on drop.
pub struct ScanTable {
    db: Option<Database>,
    path: PathBuf,
}

impl ScanTable {
    /// Creates and loads the table at `path`, then scans it once so that the timed
    /// scans find it warm.
    pub fn load(path: &Path, rows: u64) -> anyhow::Result<ScanTable> {
        let db = Database::create(path).with_context(|| format!("creating {}", path.display()))?;
        let table = ScanTable {
            db: Some(db),
            path: path.to_path_buf(),
        };
        let db = table.db()?;
        let value = payload();
        let mut key = 0u64;
        while key < rows {
            let txn = db.begin_write()?;
            {
                let mut t = txn.open_table(TABLE)?;
                let end = rows.min(key + LOAD_EVENTS_PER_COMMIT);
                while key < end {
                    t.insert(key, value.as_slice())?;
                    key += 1;
                }
            }
            txn.commit()?;
        }
        let seen = table.pass(&mut |_, _| true)?;
        anyhow::ensure!(seen == rows, "scan table holds {seen} rows, loaded {rows}");
        Ok(table)
    }

    fn db(&self) -> anyhow::Result<&Database> {
        self.db.as_ref().context("scan table already closed")
    }

    /// One full pass in key order. `chunk` is called after every [`SCAN_CHUNK_ROWS`]
    /// rows (and after the last, shorter chunk) with the instant the chunk started and
    /// its rows; the pass stops early when it returns `false`. Returns the rows seen.
    fn pass(&self, chunk: &mut dyn FnMut(Instant, u64) -> bool) -> anyhow::Result<u64> {
        let txn = self.db()?.begin_read()?;
        let table = txn.open_table(TABLE)?;
        let mut seen = 0u64;
        let mut in_chunk = 0u64;
        let mut sum = 0u64;
        let mut chunk_start = Instant::now();
        for row in table.range::<u64>(..)? {
            let (k, v) = row?;
            // Touch key and value so the scan reads what a reader would.
            let v = v.value();
            sum = sum.wrapping_add(k.value() ^ u64::from(v[0]) ^ u64::from(v[v.len() - 1]));
            seen += 1;
            in_chunk += 1;
            if in_chunk == SCAN_CHUNK_ROWS {
                let go_on = chunk(chunk_start, in_chunk);
                in_chunk = 0;
                chunk_start = Instant::now();
                if !go_on {
                    break;
                }
            }
        }
        if in_chunk > 0 {
            chunk(chunk_start, in_chunk);
        }
        black_box(sum);
        Ok(seen)
    }

    /// Scans the table from the first key to the last, over and over, for the warm-up
    /// and the window. Latency is per [`SCAN_CHUNK_ROWS`] rows.
    pub fn scan(&self, timing: Timing) -> anyhow::Result<RunSample> {
        let mut tally = Tally::default();
        let window = Window::begin(timing);
        while !window.over(Instant::now()) {
            self.pass(&mut |started, rows| {
                let now = Instant::now();
                tally.record(&window, started, now, rows);
                !window.over(now)
            })?;
        }
        Ok(tally.finish(&window))
    }
}

impl Drop for ScanTable {
    fn drop(&mut self) {
        drop(self.db.take());
        let _ = std::fs::remove_file(&self.path);
    }
}
