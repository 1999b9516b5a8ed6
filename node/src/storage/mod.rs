//! Storage: the event store's state on redb.
//!
//! [`state::StateDb`] holds events, the stream index, the type and tag indexes,
//! snapshots and the state machine's own bookkeeping in one redb file, and applies
//! [`WriteBatch`](crate::command::WriteBatch)es to it, every effect of a batch in one
//! write transaction. It knows the domain (through [`crate::domain`]) and redb, but
//! nothing of openraft: the Raft layer hands it opaque bytes for its log id and
//! membership, stored in the same transaction as the data they describe.
//! [`format`](mod@format) is the file's layout, version and upgrade path.

pub mod format;
pub mod keys;
pub mod state;

pub use state::StateDb;

/// A failure of the storage engine itself (I/O, corruption), never of a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// redb failed.
    #[error("redb: {0}")]
    Redb(#[from] redb::Error),
    /// A stored record did not decode: the file is corrupt or from another version.
    #[error("corrupt record in table {table}: {reason}")]
    Corrupt {
        /// The table holding it.
        table: &'static str,
        /// What did not decode.
        reason: String,
    },
    /// The file was written by a newer node, in a format this one cannot read.
    #[error("{file} format {found} is newer than this node reads ({supported}): run a newer reckon-node")]
    Format {
        /// Which file: "state file", "Raft log file".
        file: &'static str,
        /// The file's format.
        found: u32,
        /// The newest this node reads.
        supported: u32,
    },
    /// Filesystem work around the database failed.
    #[error("I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A [`StorageError::Corrupt`] for a record of `table`.
pub(crate) fn corrupt(table: &'static str, reason: impl ToString) -> StorageError {
    StorageError::Corrupt {
        table,
        reason: reason.to_string(),
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                StorageError::Redb(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl From<StorageError> for reckon_gater::types::StoreError {
    fn from(e: StorageError) -> Self {
        tracing::error!(error = %e, "storage failure");
        reckon_gater::types::StoreError::Internal {
            message: e.to_string(),
        }
    }
}
