//! openraft's state machine: the registry in memory, made durable by snapshots kept in sled.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use agora_registry::Registry;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use crate::flusher::Flusher;
use crate::{NodeId, TypeConfig};

const CURRENT_SNAPSHOT: &[u8] = b"current";

type StoreResult<T> = Result<T, StorageError<NodeId>>;

#[derive(Default)]
struct Applied {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    registry: Registry,
}

/// A snapshot as kept in sled: openraft's metadata and the serialized registry.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// Read access to the applied registry for the rest of the master (queries, `/state`, the
/// allocator). Writes happen only through the Raft log.
#[derive(Clone)]
pub struct RegistryHandle {
    state: Arc<RwLock<Applied>>,
}

impl RegistryHandle {
    /// Runs `f` on the registry as applied so far on this replica.
    pub fn read<T>(&self, f: impl FnOnce(&Registry) -> T) -> T {
        f(&self.state.read().expect("registry lock poisoned").registry)
    }

    /// Index of the last log entry applied on this replica.
    pub fn last_applied_index(&self) -> Option<u64> {
        self.state
            .read()
            .expect("registry lock poisoned")
            .last_applied
            .map(|l| l.index)
    }
}

/// The state machine openraft applies committed entries to.
pub struct StateMachineStore {
    state: Arc<RwLock<Applied>>,
    snapshots: sled::Tree,
    flusher: Arc<Flusher>,
    snapshot_seq: Arc<AtomicU64>,
}

impl StateMachineStore {
    pub(crate) fn new(db: &sled::Db, flusher: Arc<Flusher>) -> Result<Self, String> {
        let snapshots = db.open_tree("snapshots").map_err(|e| e.to_string())?;
        let mut applied = Applied::default();
        if let Some(bytes) = snapshots.get(CURRENT_SNAPSHOT).map_err(|e| e.to_string())? {
            let stored: StoredSnapshot =
                serde_json::from_slice(&bytes).map_err(|e| format!("snapshot: {e}"))?;
            applied = Applied {
                last_applied: stored.meta.last_log_id,
                membership: stored.meta.last_membership.clone(),
                registry: serde_json::from_slice(&stored.data)
                    .map_err(|e| format!("snapshot registry: {e}"))?,
            };
        }
        Ok(StateMachineStore {
            state: Arc::new(RwLock::new(applied)),
            snapshots,
            flusher,
            snapshot_seq: Arc::new(AtomicU64::new(0)),
        })
    }

    pub(crate) fn is_pristine(&self) -> bool {
        self.snapshots.is_empty()
    }

    /// A read handle on the applied registry.
    pub fn registry(&self) -> RegistryHandle {
        RegistryHandle {
            state: self.state.clone(),
        }
    }

    async fn save_snapshot(&self, stored: &StoredSnapshot) -> StoreResult<()> {
        let signature = Some(stored.meta.signature());
        let bytes = serde_json::to_vec(stored)
            .map_err(|e| StorageIOError::write_snapshot(signature.clone(), &e))?;
        self.snapshots
            .insert(CURRENT_SNAPSHOT, bytes)
            .map_err(|e| StorageIOError::write_snapshot(signature.clone(), &e))?;
        self.flusher
            .flush()
            .await
            .map_err(|e| StorageIOError::write_snapshot(signature, &e))?;
        Ok(())
    }
}

/// Builds a snapshot of the registry as applied when it was created.
pub struct SnapshotBuilder {
    store: StateMachineStore,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        // Copy under the lock, serialize outside it, so apply is blocked only for the copy.
        let (last_applied, membership, registry) = {
            let s = self.store.state.read().expect("registry lock poisoned");
            (s.last_applied, s.membership.clone(), s.registry.clone())
        };
        let data =
            serde_json::to_vec(&registry).map_err(|e| StorageIOError::read_state_machine(&e))?;
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
        let stored = StoredSnapshot { meta, data };
        self.store.save_snapshot(&stored).await?;
        tracing::info!(snapshot = %stored.meta.snapshot_id, bytes = stored.data.len(), "snapshot built");
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StoreResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let s = self.state.read().expect("registry lock poisoned");
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<Vec<agora_registry::CommandResult>>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut s = self.state.write().expect("registry lock poisoned");
        let mut results = Vec::new();
        for entry in entries {
            s.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(batch) => {
                    let results = s.registry.apply_batch(&batch);
                    for (command, r) in batch.commands.iter().zip(&results) {
                        if let Err(reason) = r {
                            tracing::debug!(index = entry.log_id.index, kind = command.kind(), %reason, "command rejected");
                        }
                    }
                    results
                }
                EntryPayload::Membership(m) => {
                    s.membership = StoredMembership::new(Some(entry.log_id), m);
                    Vec::new()
                }
            };
            results.push(result);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: StateMachineStore {
                state: self.state.clone(),
                snapshots: self.snapshots.clone(),
                flusher: self.flusher.clone(),
                snapshot_seq: self.snapshot_seq.clone(),
            },
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
        let registry: Registry = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.save_snapshot(&stored).await?;
        let mut s = self.state.write().expect("registry lock poisoned");
        *s = Applied {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            registry,
        };
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        let Some(bytes) = self
            .snapshots
            .get(CURRENT_SNAPSHOT)
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?
        else {
            return Ok(None);
        };
        let stored: StoredSnapshot =
            serde_json::from_slice(&bytes).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
