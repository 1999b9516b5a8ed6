//! The Raft log and vote in a redb file of their own.
//!
//! Every entry is bincode-encoded under its index. Appends commit with
//! `Durability::Immediate` and only then call openraft's flush callback: an entry
//! openraft counts towards a quorum is on disk. The vote is on disk before
//! [`save_vote`](RaftLogStorage::save_vote) returns. The committed log id is not
//! stored: after a restart, entries are applied again once a leader commits past them
//! (and the store's read barrier keeps reads from running ahead of that).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, Vote,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{blocking, NodeId, TypeConfig};
use crate::storage::StorageError as DbError;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const LOG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("log_meta");
const VOTE: &str = "vote";
const LAST_PURGED: &str = "last_purged";

/// The redb-backed Raft log of one store. Cloning shares the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    bincode::serialize(v).expect("bincode serialization of an in-memory value")
}

fn dec<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, DbError> {
    bincode::deserialize(b).map_err(|e| DbError::Corrupt {
        table: "log",
        reason: e.to_string(),
    })
}

impl LogStore {
    /// Opens (or creates) the log file at `path`.
    pub fn open(path: &Path) -> Result<LogStore, DbError> {
        let db = Database::builder()
            .set_cache_size(64 * 1024 * 1024)
            .create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(LOG)?;
            txn.open_table(LOG_META)?;
        }
        txn.commit()?;
        Ok(LogStore { db: Arc::new(db) })
    }

    fn meta_get<T: serde::de::DeserializeOwned>(
        db: &Database,
        key: &str,
    ) -> Result<Option<T>, DbError> {
        let txn = db.begin_read()?;
        let t = txn.open_table(LOG_META)?;
        let v = t.get(key)?;
        v.map(|v| dec(v.value())).transpose()
    }

    fn meta_put<T: serde::Serialize>(
        db: &Database,
        key: &str,
        value: &T,
        durability: Durability,
    ) -> Result<(), DbError> {
        let mut txn = db.begin_write()?;
        txn.set_durability(durability)?;
        {
            let mut t = txn.open_table(LOG_META)?;
            t.insert(key, enc(value).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }
}

fn owned_bounds<RB: RangeBounds<u64>>(r: &RB) -> (Bound<u64>, Bound<u64>) {
    (r.start_bound().cloned(), r.end_bound().cloned())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let db = self.db.clone();
        let bounds = owned_bounds(&range);
        blocking(ErrorSubject::Logs, ErrorVerb::Read, move || {
            let txn = db.begin_read()?;
            let t = txn.open_table(LOG)?;
            let mut out = Vec::new();
            for row in t.range::<u64>(bounds)? {
                let (_, v) = row?;
                out.push(dec::<Entry<TypeConfig>>(v.value())?);
            }
            Ok::<_, DbError>(out)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let db = self.db.clone();
        blocking(ErrorSubject::Logs, ErrorVerb::Read, move || {
            let last_purged: Option<LogId<NodeId>> = Self::meta_get(&db, LAST_PURGED)?;
            let txn = db.begin_read()?;
            let t = txn.open_table(LOG)?;
            let last = match t.last()? {
                Some((_, v)) => Some(dec::<Entry<TypeConfig>>(v.value())?.log_id),
                None => last_purged,
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
        let db = self.db.clone();
        let vote = *vote;
        // The vote must be on disk before we return: a node that forgets its vote may
        // vote twice in one term.
        blocking(ErrorSubject::Vote, ErrorVerb::Write, move || {
            Self::meta_put(&db, VOTE, &vote, Durability::Immediate)
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        let db = self.db.clone();
        blocking(ErrorSubject::Vote, ErrorVerb::Read, move || {
            Self::meta_get(&db, VOTE)
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
        let rows: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| (e.log_id.index, enc(&e)))
            .collect();
        let db = self.db.clone();
        let res = blocking(ErrorSubject::Logs, ErrorVerb::Write, move || {
            let txn = db.begin_write()?;
            {
                let mut t = txn.open_table(LOG)?;
                for (i, b) in &rows {
                    t.insert(*i, b.as_slice())?;
                }
            }
            // Durability::Immediate (the default): commit returns once fsynced.
            txn.commit()?;
            Ok::<_, DbError>(())
        })
        .await;
        match res {
            Ok(()) => {
                // Only now is the entry durable, so only now may openraft count it.
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let db = self.db.clone();
        blocking(ErrorSubject::Logs, ErrorVerb::Delete, move || {
            let txn = db.begin_write()?;
            {
                let mut t = txn.open_table(LOG)?;
                t.retain_in(log_id.index.., |_, _| false)?;
            }
            txn.commit()?;
            Ok::<_, DbError>(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let db = self.db.clone();
        blocking(ErrorSubject::Logs, ErrorVerb::Delete, move || {
            let txn = db.begin_write()?;
            {
                let mut meta = txn.open_table(LOG_META)?;
                meta.insert(LAST_PURGED, enc(&log_id).as_slice())?;
                let mut t = txn.open_table(LOG)?;
                t.retain_in(..=log_id.index, |_, _| false)?;
            }
            txn.commit()?;
            Ok::<_, DbError>(())
        })
        .await
    }
}
