//! openraft's own storage test suite against the redb log store and state machine.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use reckon_node::raft::log_store::LogStore;
use reckon_node::raft::state_machine::StateMachine;
use reckon_node::raft::{NodeId, TypeConfig};
use reckon_node::storage::StateDb;
use tempfile::TempDir;

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(&dir.path().join("log.redb")).expect("open log");
        let state = Arc::new(StateDb::open(&dir.path().join("state.redb")).expect("open state"));
        let sm = StateMachine::open(state, &dir.path().join("snapshots")).expect("open sm");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(RedbBuilder).expect("openraft storage suite");
}
