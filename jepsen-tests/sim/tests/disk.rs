//! The simulated disk: openraft's own storage conformance suite, and what a crash keeps.

use std::sync::Arc;
use std::time::Duration;

use agora_master::store::RegistryMachine;
use agora_raft_store::{NodeId, TypeConfig};
use agora_sim::disk::{Disk, DiskObserver, DiskSettings, MemLog, MemMachine};
use agora_sim::rng::SimRng;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, StorageError, Vote};

type M = RegistryMachine;
type C = TypeConfig<M>;

struct Quiet;

impl DiskObserver<M> for Quiet {
    fn appended(&self, _: NodeId, _: &Entry<C>) {}
    fn applied(&self, _: NodeId, _: LogId<NodeId>, _: &M) {}
    fn loaded(&self, _: NodeId, _: Option<LogId<NodeId>>, _: &M, _: &str) {}
}

fn disk(settings: DiskSettings) -> Disk<M> {
    Disk::new(1, SimRng::new(7), settings, Arc::new(Quiet))
}

struct MemBuilder;

impl StoreBuilder<C, MemLog<M>, MemMachine<M>, ()> for MemBuilder {
    async fn build(&self) -> Result<((), MemLog<M>, MemMachine<M>), StorageError<NodeId>> {
        let (_, log, sm, _) = disk(DiskSettings::default()).open();
        Ok(((), log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(MemBuilder) {
        panic!("openraft storage suite failed: {e}");
    }
}

fn entry(index: u64) -> Entry<C> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Blank,
    }
}

fn paused() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

async fn indexes(log: &mut MemLog<M>) -> Vec<u64> {
    log.try_get_log_entries(0..)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

#[test]
fn a_crash_keeps_what_was_flushed_and_at_most_a_prefix_of_the_rest() {
    paused().block_on(async {
        let disk = disk(DiskSettings {
            fsync_ms: (10, 10),
            ..DiskSettings::default()
        });
        let (_, mut log, _, _) = disk.open();
        log.blocking_append([entry(1), entry(2), entry(3)])
            .await
            .unwrap();
        let vote = Vote::new(2, 1);
        log.save_vote(&vote).await.unwrap();
        // Written, not yet flushed: the flush takes 10 ms.
        let mut writer = log.clone();
        let pending =
            tokio::spawn(async move { writer.blocking_append([entry(4), entry(5)]).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            indexes(&mut log).await,
            [1, 2, 3, 4, 5],
            "the replica sees them"
        );
        disk.crash();
        assert!(
            pending.await.unwrap().is_err(),
            "the append is never acknowledged"
        );
        assert!(
            log.read_vote().await.is_err(),
            "the crashed incarnation's store answers nothing"
        );
        let (_, mut log, _, _) = disk.open();
        let kept = indexes(&mut log).await;
        assert!(
            [&[1, 2, 3][..], &[1, 2, 3, 4], &[1, 2, 3, 4, 5]].contains(&kept.as_slice()),
            "{kept:?}"
        );
        assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    });
}

#[test]
fn a_lying_disk_acknowledges_what_a_crash_then_loses() {
    paused().block_on(async {
        let disk = disk(DiskSettings {
            fsync_ms: (10, 10),
            lying: true,
            ..DiskSettings::default()
        });
        let (_, mut log, _, _) = disk.open();
        log.blocking_append([entry(1), entry(2)]).await.unwrap();
        log.save_vote(&Vote::new(2, 1)).await.unwrap();
        disk.crash();
        let (_, mut log, _, _) = disk.open();
        assert_eq!(indexes(&mut log).await, Vec::<u64>::new());
        assert_eq!(log.read_vote().await.unwrap(), None);
        // Once a second it really writes.
        log.blocking_append([entry(1)]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        disk.crash();
        let (_, mut log, _, _) = disk.open();
        assert_eq!(indexes(&mut log).await, [1]);
    });
}
