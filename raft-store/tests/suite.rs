//! openraft's own storage conformance suite, run against the sled store, plus durability
//! checks across a reopen.

use agora_raft_store::{open, LogStore, StateMachineStore, TypeConfig};
use openraft::storage::RaftLogStorage;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{RaftLogReader, StorageError, Vote};

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, sm) = open(dir.path()).expect("open store");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(SledBuilder) {
        panic!("openraft storage suite failed: {e}");
    }
}

#[tokio::test]
async fn vote_and_log_survive_reopen() {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        log.save_vote(&Vote::new(3, 2)).await.unwrap();
        let entries: Vec<Entry<TypeConfig>> = (1..=5)
            .map(|i| Entry {
                log_id: LogId::new(CommittedLeaderId::new(3, 2), i),
                payload: EntryPayload::Blank,
            })
            .collect();
        // Append through the flusher and wait for openraft's callback equivalent: the
        // public `blocking_append` helper waits for the flush.
        use openraft::storage::RaftLogStorageExt;
        log.blocking_append(entries).await.unwrap();
    }
    let (mut log, _sm) = open(dir.path()).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
    let got = log.try_get_log_entries(1..=5).await.unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(got[4].log_id.index, 5);
}
