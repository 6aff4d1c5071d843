//! The registry as the state machine `agora-raft-store` keeps: one [`CommandBatch`] per log
//! entry, applied by the pure [`Registry::apply_batch`], one result per command back.
//!
//! The rest of the master names its storage through the aliases here ([`Raft`],
//! [`TypeConfig`], [`LogStore`], [`StateMachineStore`]) and reads the applied registry through
//! [`RegistryHandle`]. The bytes on disk are those the registry's serde writes (the newtype
//! is transparent), as before the store became generic.

use std::path::Path;
use std::sync::Arc;

use agora_raft_store::{StateHandle, StateMachine};
use agora_registry::{CommandBatch, CommandResult, Registry};
use serde::{Deserialize, Serialize};

pub use agora_raft_store::{NodeId, OpenError};

/// The registry, as the state machine of the Raft log. A newtype only because the trait
/// and the type live in different crates.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RegistryMachine(pub Registry);

impl StateMachine for RegistryMachine {
    type Command = CommandBatch;
    type Response = Vec<CommandResult>;

    fn apply(&mut self, batch: &CommandBatch) -> Vec<CommandResult> {
        let results = self.0.apply_batch(batch);
        for (command, r) in batch.commands.iter().zip(&results) {
            if let Err(reason) = r {
                tracing::debug!(kind = command.kind(), %reason, "command rejected");
            }
        }
        results
    }

    /// Tasks, finished ones kept for history included.
    fn items(&self) -> u64 {
        self.0.tasks().count() as u64
    }
}

/// openraft's type configuration for the master.
pub type TypeConfig = agora_raft_store::TypeConfig<RegistryMachine>;
/// The master's openraft handle.
pub type Raft = agora_raft_store::Raft<RegistryMachine>;
/// The master's Raft log.
pub type LogStore = agora_raft_store::LogStore<RegistryMachine>;
/// The master's state machine store (the registry in memory, snapshots on disk).
pub type StateMachineStore = agora_raft_store::StateMachineStore<RegistryMachine>;

/// Opens (or creates) the replica's store in `dir`.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), OpenError> {
    agora_raft_store::open(dir)
}

/// Whether the store has never taken part in a cluster.
pub fn is_pristine(log: &LogStore, sm: &StateMachineStore) -> bool {
    agora_raft_store::is_pristine(log, sm)
}

/// Read access to the applied registry for the rest of the master (queries, `/state`, the
/// allocator). Writes happen only through the Raft log.
#[derive(Clone)]
pub struct RegistryHandle(Source);

#[derive(Clone)]
enum Source {
    Store(StateHandle<RegistryMachine>),
    Other(Arc<dyn AppliedRegistry>),
}

/// A registry applied by a state machine other than raft-store's (the deterministic
/// simulator's in-memory disk runs the same `RegistryMachine`): `f` runs on the registry
/// and the index of the last entry applied to it, read together.
pub trait AppliedRegistry: Send + Sync + 'static {
    fn with(&self, f: &mut dyn FnMut(&Registry, Option<u64>));
}

impl RegistryHandle {
    /// A handle on the registry `sm` applies to.
    pub fn new(sm: &StateMachineStore) -> Self {
        RegistryHandle(Source::Store(sm.handle()))
    }

    /// A handle on the registry another state machine applies to.
    pub fn of(source: Arc<dyn AppliedRegistry>) -> Self {
        RegistryHandle(Source::Other(source))
    }

    /// A handle on `registry` alone, backed by no store and no log: it never changes. For
    /// tests of code that only reads the registry.
    pub fn detached(registry: Registry) -> Self {
        RegistryHandle(Source::Store(StateHandle::detached(RegistryMachine(
            registry,
        ))))
    }

    /// Runs `f` on the registry as applied so far on this replica.
    pub fn read<T>(&self, f: impl FnOnce(&Registry) -> T) -> T {
        self.read_applied(|reg, _| f(reg))
    }

    /// Index of the last log entry applied on this replica.
    pub fn last_applied_index(&self) -> Option<u64> {
        match &self.0 {
            Source::Store(h) => h.last_applied_index(),
            Source::Other(o) => {
                let mut index = None;
                o.with(&mut |_, i| index = i);
                index
            }
        }
    }

    /// Runs `f` on the registry and the index of the last entry applied to it (read
    /// together: the registry is as of that entry).
    pub fn read_applied<T>(&self, f: impl FnOnce(&Registry, u64) -> T) -> T {
        match &self.0 {
            Source::Store(h) => h.read_applied(|m, index| f(&m.0, index.unwrap_or(0))),
            Source::Other(o) => {
                let (mut f, mut out) = (Some(f), None);
                o.with(&mut |reg, index| {
                    if let Some(f) = f.take() {
                        out = Some(f(reg, index.unwrap_or(0)));
                    }
                });
                out.expect("an applied registry runs its reader once")
            }
        }
    }
}
