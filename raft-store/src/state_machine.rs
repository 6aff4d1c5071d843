//! openraft's state machine: an `M: StateMachine` in memory, made durable by snapshots kept
//! in a file beside sled's (`snapshot_file`); snapshots earlier versions kept in sled are
//! still read, and dropped from sled once a file replaces them.

// openraft's storage error type is large, and its traits dictate it.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use crate::snapshot_file::SnapshotFile;
use crate::{NodeId, StateMachine, TypeConfig};

/// Earlier versions kept the snapshot in sled, under these keys; still read when there is no
/// snapshot file. The snapshot as one JSON document (its data a JSON array of numbers):
const CURRENT_SNAPSHOT: &[u8] = b"current";
/// The snapshot's metadata (JSON) and its data (the machine's JSON, as raw bytes).
const CURRENT_META: &[u8] = b"current-meta";
const CURRENT_DATA: &[u8] = b"current-data";

type StoreResult<T> = Result<T, StorageError<NodeId>>;

#[derive(Default)]
struct Applied<M> {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    machine: M,
}

type Shared<M> = Arc<RwLock<Applied<M>>>;

fn read<M>(state: &Shared<M>) -> RwLockReadGuard<'_, Applied<M>> {
    state.read().expect("state machine lock poisoned")
}

fn write<M>(state: &Shared<M>) -> RwLockWriteGuard<'_, Applied<M>> {
    state.write().expect("state machine lock poisoned")
}

/// A snapshot as stored: openraft's metadata and the serialized machine.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// Read access to the applied state for the rest of the replica (queries, the allocator).
/// Writes happen only through the Raft log.
pub struct StateHandle<M> {
    state: Shared<M>,
}

impl<M> Clone for StateHandle<M> {
    fn clone(&self) -> Self {
        StateHandle {
            state: self.state.clone(),
        }
    }
}

impl<M: StateMachine> StateHandle<M> {
    /// A handle on `machine` alone, backed by no store and no log: it never changes. For
    /// tests of code that only reads the state.
    pub fn detached(machine: M) -> Self {
        StateHandle {
            state: Arc::new(RwLock::new(Applied {
                last_applied: None,
                membership: StoredMembership::default(),
                machine,
            })),
        }
    }

    /// Runs `f` on the state as applied so far on this replica.
    pub fn read<T>(&self, f: impl FnOnce(&M) -> T) -> T {
        f(&read(&self.state).machine)
    }

    /// Index of the last log entry applied on this replica.
    pub fn last_applied_index(&self) -> Option<u64> {
        read(&self.state).last_applied.map(|l| l.index)
    }

    /// Runs `f` on the state together with the index of the last entry applied to it, both
    /// read under one lock (so they agree).
    pub fn read_applied<T>(&self, f: impl FnOnce(&M, Option<u64>) -> T) -> T {
        let applied = read(&self.state);
        f(&applied.machine, applied.last_applied.map(|l| l.index))
    }
}

/// The state machine store openraft applies committed entries to.
pub struct StateMachineStore<M> {
    state: Shared<M>,
    /// Earlier versions' snapshots, read when there is no file, emptied once there is.
    snapshots: sled::Tree,
    file: SnapshotFile,
    snapshot_seq: Arc<AtomicU64>,
    stats: Arc<SnapshotStats>,
}

impl<M> StateMachineStore<M> {
    /// Another handle on the same store (for the snapshot builder).
    fn share(&self) -> Self {
        StateMachineStore {
            state: self.state.clone(),
            snapshots: self.snapshots.clone(),
            file: self.file.clone(),
            snapshot_seq: self.snapshot_seq.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<M: StateMachine> StateMachineStore<M> {
    pub(crate) fn new(db: &sled::Db, dir: &std::path::Path) -> Result<Self, String> {
        let snapshots = db.open_tree("snapshots").map_err(|e| e.to_string())?;
        let file = SnapshotFile::new(dir);
        let mut applied = Applied::default();
        if let Some(stored) = load_snapshot(&file, &snapshots)? {
            applied = Applied {
                last_applied: stored.meta.last_log_id,
                membership: stored.meta.last_membership.clone(),
                machine: serde_json::from_slice(&stored.data)
                    .map_err(|e| format!("snapshot state: {e}"))?,
            };
        }
        Ok(StateMachineStore {
            state: Arc::new(RwLock::new(applied)),
            snapshots,
            file,
            snapshot_seq: Arc::new(AtomicU64::new(0)),
            stats: Arc::default(),
        })
    }

    /// Index of the last entry in the state as loaded or applied.
    pub(crate) fn last_applied_index(&self) -> Option<u64> {
        read(&self.state).last_applied.map(|l| l.index)
    }

    pub(crate) fn is_pristine(&self) -> bool {
        self.snapshots.is_empty() && !self.file.exists()
    }

    /// A read handle on the applied state.
    pub fn handle(&self) -> StateHandle<M> {
        StateHandle {
            state: self.state.clone(),
        }
    }

    async fn save_snapshot(&self, stored: StoredSnapshot) -> StoreResult<StoredSnapshot> {
        let sig = Some(stored.meta.signature());
        let snapshots = self.snapshots.clone();
        let file = self.file.clone();
        off_runtime(move || {
            let meta = serde_json::to_vec(&stored.meta)
                .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
            file.write(&meta, &stored.data)
                .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
            // An earlier version's snapshot in sled is replaced by the file for good.
            if !snapshots.is_empty() {
                snapshots
                    .clear()
                    .map_err(|e| StorageIOError::write_snapshot(sig, &e))?;
            }
            Ok(stored)
        })
        .await
    }

    /// How long snapshots took to build, and how big the last one was.
    pub fn snapshot_stats(&self) -> Arc<SnapshotStats> {
        self.stats.clone()
    }
}

/// The current snapshot: the file, else what earlier versions kept in sled (the two-key
/// layout, else the one-document layout).
fn load_snapshot(
    file: &SnapshotFile,
    snapshots: &sled::Tree,
) -> Result<Option<StoredSnapshot>, String> {
    if let Some((meta, data)) = file.read().map_err(|e| e.to_string())? {
        let meta = serde_json::from_slice(&meta).map_err(|e| format!("snapshot meta: {e}"))?;
        return Ok(Some(StoredSnapshot { meta, data }));
    }
    let get = |key: &[u8]| snapshots.get(key).map_err(|e| format!("snapshot: {e}"));
    if let (Some(meta), Some(data)) = (get(CURRENT_META)?, get(CURRENT_DATA)?) {
        let meta = serde_json::from_slice(&meta).map_err(|e| format!("snapshot meta: {e}"))?;
        return Ok(Some(StoredSnapshot {
            meta,
            data: data.to_vec(),
        }));
    }
    match get(CURRENT_SNAPSHOT)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("snapshot: {e}")),
        None => Ok(None),
    }
}

/// Runs CPU- or disk-heavy work (serializing, parsing, writing the whole state) on the
/// blocking pool, so the runtime Raft runs on keeps serving heartbeats meanwhile.
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> StoreResult<T> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageIOError::read_state_machine(&e))?
}

/// Snapshot builds of one store, for metrics: counters only, read at any time.
#[derive(Debug, Default)]
pub struct SnapshotStats {
    builds: AtomicU64,
    build_micros: AtomicU64,
    last_bytes: AtomicU64,
    last_items: AtomicU64,
}

impl SnapshotStats {
    fn record_build(&self, took: std::time::Duration, bytes: u64, items: u64) {
        self.builds.fetch_add(1, Ordering::Relaxed);
        self.build_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.last_bytes.store(bytes, Ordering::Relaxed);
        self.last_items.store(items, Ordering::Relaxed);
    }

    /// Snapshots built since start.
    pub fn builds(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }

    /// Total time spent building them, in seconds.
    pub fn build_seconds(&self) -> f64 {
        self.build_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Size of the state in the last snapshot built, in bytes.
    pub fn last_bytes(&self) -> u64 {
        self.last_bytes.load(Ordering::Relaxed)
    }

    /// Items ([`crate::StateMachine::items`]) in the last snapshot built.
    pub fn last_items(&self) -> u64 {
        self.last_items.load(Ordering::Relaxed)
    }
}

/// Builds a snapshot of the state as applied when it was created.
pub struct SnapshotBuilder<M> {
    store: StateMachineStore<M>,
}

impl<M: StateMachine> RaftSnapshotBuilder<TypeConfig<M>> for SnapshotBuilder<M> {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig<M>>> {
        // Copy under the lock, serialize outside it, so apply is blocked only for the copy;
        // both on the blocking pool, as they grow with the state and Raft's runtime must
        // keep sending heartbeats meanwhile.
        let state = self.store.state.clone();
        let started = std::time::Instant::now();
        let (last_applied, membership, data, items) = tokio::task::spawn_blocking(move || {
            let (last_applied, membership, machine) = {
                let s = read(&state);
                (s.last_applied, s.membership.clone(), s.machine.clone())
            };
            let items = machine.items();
            serde_json::to_vec(&machine).map(|data| (last_applied, membership, data, items))
        })
        .await
        .map_err(|e| StorageIOError::read_state_machine(&e))?
        .map_err(|e| StorageIOError::read_state_machine(&e))?;
        self.store
            .stats
            .record_build(started.elapsed(), data.len() as u64, items);
        let seq = self.store.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(l) => format!(
                "{}-{}-{}-{seq}",
                l.leader_id.term, l.leader_id.node_id, l.index
            ),
            None => format!("empty-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let stored = self
            .store
            .save_snapshot(StoredSnapshot { meta, data })
            .await?;
        tracing::info!(snapshot = %stored.meta.snapshot_id, bytes = stored.data.len(), "snapshot built");
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl<M: StateMachine> RaftStateMachine<TypeConfig<M>> for StateMachineStore<M> {
    type SnapshotBuilder = SnapshotBuilder<M>;

    async fn applied_state(
        &mut self,
    ) -> StoreResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let s = read(&self.state);
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<M::Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig<M>>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // On the blocking pool: the write lock waits for readers (a `/state` render on a
        // busy host can hold the read lock a while), and waiting there must not stall the
        // thread Raft's core and heartbeats run on.
        let entries: Vec<Entry<TypeConfig<M>>> = entries.into_iter().collect();
        let state = self.state.clone();
        off_runtime(move || {
            let mut s = write(&state);
            let mut results = Vec::with_capacity(entries.len());
            for entry in entries {
                s.last_applied = Some(entry.log_id);
                let result = match entry.payload {
                    EntryPayload::Blank => M::Response::default(),
                    EntryPayload::Normal(command) => s.machine.apply(&command),
                    EntryPayload::Membership(m) => {
                        s.membership = StoredMembership::new(Some(entry.log_id), m);
                        M::Response::default()
                    }
                };
                results.push(result);
            }
            Ok(results)
        })
        .await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.share(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StoreResult<()> {
        let data = snapshot.into_inner();
        let signature = Some(meta.signature());
        let (machine, data) = off_runtime(move || {
            let machine: M = serde_json::from_slice(&data)
                .map_err(|e| StorageIOError::read_snapshot(signature, &e))?;
            Ok((machine, data))
        })
        .await?;
        self.save_snapshot(StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .await?;
        *write(&self.state) = Applied {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            machine,
        };
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig<M>>>> {
        let snapshots = self.snapshots.clone();
        let file = self.file.clone();
        let stored = off_runtime(move || {
            load_snapshot(&file, &snapshots)
                .map_err(|e| StorageIOError::read_snapshot(None, &std::io::Error::other(e)).into())
        })
        .await?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(index: u64) -> SnapshotMeta<NodeId, BasicNode> {
        SnapshotMeta {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), index)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("s-{index}"),
        }
    }

    #[test]
    fn the_file_wins_and_earlier_versions_snapshots_in_sled_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let tree = db.open_tree("snapshots").unwrap();
        let file = SnapshotFile::new(dir.path());
        assert!(load_snapshot(&file, &tree).unwrap().is_none());
        // The oldest layout: one JSON document.
        let old = StoredSnapshot {
            meta: meta(7),
            data: br#"{"x":1}"#.to_vec(),
        };
        tree.insert(CURRENT_SNAPSHOT, serde_json::to_vec(&old).unwrap())
            .unwrap();
        let loaded = load_snapshot(&file, &tree).unwrap().unwrap();
        assert_eq!((loaded.meta, loaded.data), (old.meta, old.data));
        // The two-key layout wins over it.
        let mut batch = sled::Batch::default();
        batch.insert(CURRENT_META, serde_json::to_vec(&meta(9)).unwrap());
        batch.insert(CURRENT_DATA, &br#"{"x":2}"#[..]);
        tree.apply_batch(batch).unwrap();
        let loaded = load_snapshot(&file, &tree).unwrap().unwrap();
        assert_eq!(
            (loaded.meta, loaded.data.as_slice()),
            (meta(9), &br#"{"x":2}"#[..])
        );
        // A file wins over both.
        file.write(&serde_json::to_vec(&meta(11)).unwrap(), br#"{"x":3}"#)
            .unwrap();
        let loaded = load_snapshot(&file, &tree).unwrap().unwrap();
        assert_eq!(
            (loaded.meta, loaded.data.as_slice()),
            (meta(11), &br#"{"x":3}"#[..])
        );
    }
}
