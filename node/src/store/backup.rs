//! Online backups of the store: a linearizable barrier, then one pinned read view
//! of the whole state handed to the store's [`Exports`], which copies it while
//! writes go on.

use reckon_gater::backup::BackupState;
use reckon_gater::types::{ReadConsistency, StoreError};

use super::Store;
use crate::backup::export::Exports;
use crate::raft::format::StoredLogId;
use crate::raft::state_machine::RaftRecord;

impl Store {
    /// Starts a backup of the store as it stands once everything acknowledged before
    /// this call is applied here: the barrier a linearizable read takes (so only the
    /// leader begins one; elsewhere `NotLeader`), then one read view of the state.
    pub async fn backup_begin(&self) -> Result<BackupState, StoreError> {
        self.read(ReadConsistency::Linearizable, |_| Ok(Ok(())))
            .await?;
        let state = self.state.clone();
        let view = tokio::task::spawn_blocking(move || state.view())
            .await
            .map_err(|e| StoreError::Internal {
                message: format!("pinning the state for a backup failed: {e}"),
            })??;
        let record = match view.raft_record() {
            Some(b) => RaftRecord::decode(b)?,
            None => RaftRecord::default(),
        };
        let Some(applied) = record.last_applied else {
            return Err(StoreError::Unavailable {
                reason: format!("store {:?} has applied nothing yet", self.name),
            });
        };
        self.backups.begin(view, StoredLogId::from(applied))
    }

    /// The backups this node writes or serves for the store.
    pub fn backups(&self) -> &Exports {
        &self.backups
    }
}
