//! openraft's own storage conformance suite, run against the sled store with a toy state
//! machine, plus durability checks across a reopen.

use std::collections::BTreeMap;

use agora_raft_store::{open, LogStore, StateMachine, StateMachineStore, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder,
    StorageError, Vote,
};
use serde::{Deserialize, Serialize};

/// A toy state machine: named counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Counters(BTreeMap<String, i64>);

#[derive(Clone, Debug, Serialize, Deserialize)]
enum Op {
    /// Adds to a counter; answers its new value.
    Add(String, i64),
    /// Removes a counter; refused (answers None) when there is none.
    Remove(String),
}

impl StateMachine for Counters {
    type Command = Op;
    type Response = Option<i64>;

    fn apply(&mut self, command: &Op) -> Option<i64> {
        match command {
            Op::Add(name, n) => {
                let v = self.0.entry(name.clone()).or_default();
                *v += n;
                Some(*v)
            }
            Op::Remove(name) => self.0.remove(name),
        }
    }
}

type C = TypeConfig<Counters>;

struct SledBuilder;

impl StoreBuilder<C, LogStore<Counters>, StateMachineStore<Counters>, tempfile::TempDir>
    for SledBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            tempfile::TempDir,
            LogStore<Counters>,
            StateMachineStore<Counters>,
        ),
        StorageError<u64>,
    > {
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

fn entry(index: u64, payload: EntryPayload<C>) -> Entry<C> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(3, 2), index),
        payload,
    }
}

/// A leader's committed vote for itself comes back uncommitted: openraft 0.9 would
/// otherwise resume it as leader at once, reading from a committed index that lags
/// (`read_vote`'s docs).
#[tokio::test]
async fn a_committed_vote_is_read_back_uncommitted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = open::<Counters>(dir.path()).unwrap();
        log.save_vote(&Vote::new_committed(7, 2)).await.unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(7, 2)));
    }
    let (mut log, _sm) = open::<Counters>(dir.path()).unwrap();
    let vote = log.read_vote().await.unwrap().expect("a vote");
    assert_eq!(vote, Vote::new(7, 2));
    assert!(!vote.is_committed());
}

#[tokio::test]
async fn vote_and_log_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = open::<Counters>(dir.path()).unwrap();
        log.save_vote(&Vote::new(3, 2)).await.unwrap();
        let mut entries: Vec<Entry<C>> = (1..=4).map(|i| entry(i, EntryPayload::Blank)).collect();
        entries.push(entry(5, EntryPayload::Normal(Op::Add("a".into(), 7))));
        // Append through the flusher and wait for openraft's callback equivalent: the
        // public `blocking_append` helper waits for the flush.
        log.blocking_append(entries).await.unwrap();
    }
    let (mut log, _sm) = open::<Counters>(dir.path()).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
    let got = log.try_get_log_entries(1..=5).await.unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(got[4].log_id.index, 5);
    assert!(matches!(&got[4].payload, EntryPayload::Normal(Op::Add(name, 7)) if name == "a"));
}

#[tokio::test]
async fn apply_answers_per_entry_and_a_snapshot_restores_the_machine() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_log, mut sm) = open::<Counters>(dir.path()).unwrap();
        let answers = sm
            .apply(vec![
                entry(1, EntryPayload::Blank),
                entry(2, EntryPayload::Normal(Op::Add("a".into(), 2))),
                entry(3, EntryPayload::Normal(Op::Add("a".into(), 3))),
                entry(4, EntryPayload::Normal(Op::Remove("b".into()))),
            ])
            .await
            .unwrap();
        assert_eq!(answers, vec![None, Some(2), Some(5), None]);
        let handle = sm.handle();
        assert_eq!(handle.last_applied_index(), Some(4));
        assert_eq!(handle.read(|c| c.0.get("a").copied()), Some(5));

        let snapshot = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        // The snapshot is the machine's own serde, byte for byte.
        assert_eq!(
            snapshot.snapshot.into_inner(),
            serde_json::to_vec(&handle.read(Counters::clone)).unwrap()
        );
    }
    let (log, sm) = open::<Counters>(dir.path()).unwrap();
    assert!(!agora_raft_store::is_pristine(&log, &sm));
    let handle = sm.handle();
    assert_eq!(handle.last_applied_index(), Some(4));
    assert_eq!(handle.read(|c| c.0.get("a").copied()), Some(5));
}

#[tokio::test]
async fn a_new_store_is_pristine() {
    let dir = tempfile::tempdir().unwrap();
    let (log, sm) = open::<Counters>(dir.path()).unwrap();
    assert!(agora_raft_store::is_pristine(&log, &sm));
    assert_eq!(sm.handle().read(|c| c.clone()), Counters::default());
}

#[tokio::test]
async fn replication_reads_about_a_megabyte_of_entries_and_always_one() {
    use agora_raft_store::MAX_REPLICATION_READ_BYTES;
    use openraft::storage::RaftLogReader;
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _sm) = open::<Counters>(dir.path()).unwrap();
    // 40 entries of ~100 KB, then one of ~3 MB.
    let big = |n: usize| EntryPayload::Normal(Op::Add("x".repeat(n), 1));
    let mut entries: Vec<Entry<C>> = (1..=40).map(|i| entry(i, big(100_000))).collect();
    entries.push(entry(41, big(3_000_000)));
    log.blocking_append(entries).await.unwrap();

    let first = log.limited_get_log_entries(1, 42).await.unwrap();
    let n = first.len();
    assert!(
        n * 100_000 <= MAX_REPLICATION_READ_BYTES,
        "{n} entries read"
    );
    assert!(
        (n + 1) * 100_000 > MAX_REPLICATION_READ_BYTES - 100_000,
        "{n} entries read"
    );
    assert_eq!(first[0].log_id.index, 1);
    // One entry larger than the bound is still read, alone.
    let last = log.limited_get_log_entries(41, 42).await.unwrap();
    assert_eq!(last.len(), 1);
    let tail = log.limited_get_log_entries(40, 42).await.unwrap();
    assert_eq!(tail.len(), 1, "the 3 MB entry waits for the next read");
    // The unbounded read still gives the whole range.
    assert_eq!(log.try_get_log_entries(1..42).await.unwrap().len(), 41);
}

/// Copies the files of a closed store (sled's and ours) from `from` to `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// sled recovers the records before the first bad one and drops the rest without a word;
/// the marker, fsynced apart, says what had been reported persisted. A store whose sled
/// files went back in time (here: sled's files of an earlier moment, the marker of a later
/// one) is refused, naming what was lost.
#[tokio::test]
async fn a_store_behind_its_marker_is_refused_as_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let early = dir.path().join("early");
    {
        let (mut log, _sm) = open::<Counters>(&live).unwrap();
        log.save_vote(&Vote::new(3, 2)).await.unwrap();
        log.blocking_append((1..=4).map(|i| entry(i, EntryPayload::Blank)))
            .await
            .unwrap();
    }
    copy_dir(&live, &early);
    {
        let (mut log, _sm) = open::<Counters>(&live).unwrap();
        log.blocking_append((5..=9).map(|i| entry(i, EntryPayload::Blank)))
            .await
            .unwrap();
        log.save_vote(&Vote::new(4, 3)).await.unwrap();
    }
    let marker = std::fs::read(live.join("raft-durable")).unwrap();

    // Older log and vote than the marker: refused, the vote named first.
    let lost_both = dir.path().join("lost-both");
    copy_dir(&early, &lost_both);
    std::fs::write(lost_both.join("raft-durable"), &marker).unwrap();
    let err = open::<Counters>(&lost_both).err().expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("is damaged") && text.contains("vote") && text.contains("lost-both"),
        "{text}"
    );

    // The vote kept, the log's tail lost: refused, naming both ends of the log.
    {
        let (mut log, _sm) = open::<Counters>(&early).unwrap();
        log.save_vote(&Vote::new(4, 3)).await.unwrap();
    }
    std::fs::write(early.join("raft-durable"), &marker).unwrap();
    let text = open::<Counters>(&early).err().expect("refused").to_string();
    assert!(
        text.contains("log ends at entry 4") && text.contains("up to entry 9"),
        "{text}"
    );

    // The marker removed: trusted as a store of an earlier version, and written again.
    std::fs::remove_file(live.join("raft-durable")).unwrap();
    let (mut log, sm) = open::<Counters>(&live).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(4, 3)));
    drop((log, sm));
    assert!(live.join("raft-durable").exists());

    // The marker cut to nothing: damage, not absence.
    std::fs::write(live.join("raft-durable"), b"").unwrap();
    let text = open::<Counters>(&live).err().expect("refused").to_string();
    assert!(text.contains("raft-durable"), "{text}");
}

/// A truncation of conflicting entries lowers the marker before the flush that removes
/// them, so the store reopens (it is never behind the marker it wrote).
#[tokio::test]
async fn a_truncated_log_reopens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = open::<Counters>(dir.path()).unwrap();
        log.blocking_append((1..=6).map(|i| entry(i, EntryPayload::Blank)))
            .await
            .unwrap();
        log.truncate(LogId::new(CommittedLeaderId::new(3, 2), 3))
            .await
            .unwrap();
    }
    let (mut log, _sm) = open::<Counters>(dir.path()).unwrap();
    assert_eq!(
        log.get_log_state()
            .await
            .unwrap()
            .last_log_id
            .map(|l| l.index),
        Some(2)
    );
}

/// A log purged behind a snapshot that is gone: the entries between are lost.
#[tokio::test]
async fn a_purged_log_without_its_snapshot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, mut sm) = open::<Counters>(dir.path()).unwrap();
        let entries: Vec<Entry<C>> = (1..=4)
            .map(|i| entry(i, EntryPayload::Normal(Op::Add("a".into(), 1))))
            .collect();
        log.blocking_append(entries.clone()).await.unwrap();
        sm.apply(entries).await.unwrap();
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        log.purge(LogId::new(CommittedLeaderId::new(3, 2), 3))
            .await
            .unwrap();
        log.save_vote(&Vote::new(3, 2)).await.unwrap();
    }
    std::fs::remove_file(dir.path().join("raft-snapshot")).unwrap();
    let text = open::<Counters>(dir.path())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        text.contains("purged up to entry 3") && text.contains("snapshot is missing"),
        "{text}"
    );
}
