//! # agora-raft-store
//!
//! Owns the durable half of a master replica: openraft's log, vote, committed index and
//! snapshots, kept in one sled database per replica, plus the state machine (the in-memory
//! [`Registry`]) that openraft applies committed commands to.
//!
//! Durability: a log append or vote is on disk (sled flushed) before openraft hears it is
//! persisted. Every flush goes through one [`flusher`] thread, which batches whatever has been
//! written since the last flush into one fsync (group commit) and never runs two flushes at
//! once (sled 0.34 can deadlock on concurrent `flush_async`).
//!
//! The state machine lives in memory. It is made durable by snapshots (written to sled and
//! flushed) together with the log and the persisted committed index: on restart the replica
//! loads the last snapshot and openraft re-applies the committed log after it.
//!
//! What it must not do: no networking, no knowledge of gRPC; sled never leaks out of this
//! crate's API (callers see [`open`], [`LogStore`], [`StateMachineStore`] and
//! [`RegistryHandle`]), so the storage engine can be swapped.

mod flusher;
mod log_store;
mod state_machine;

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

pub use log_store::LogStore;
pub use state_machine::{RegistryHandle, StateMachineStore};

use agora_registry::{CommandBatch, CommandResult};

openraft::declare_raft_types!(
    /// Agora's openraft type configuration: a batch of registry commands per log entry in,
    /// one result per command out.
    pub TypeConfig:
        D = CommandBatch,
        R = Vec<CommandResult>,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft node id.
pub type NodeId = u64;
/// The openraft handle for Agora's type configuration.
pub type Raft = openraft::Raft<TypeConfig>;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the sled database in {path}: {source}")]
    Sled {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("stored data in {path} is unreadable: {reason}")]
    Corrupt { path: String, reason: String },
}

/// Opens (or creates) the store in `dir`: the log store for openraft, and the state machine
/// with its last snapshot loaded.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), OpenError> {
    let db = sled::Config::new()
        .path(dir)
        // Flushes are ours (group commit), never sled's timer.
        .flush_every_ms(None)
        .open()
        .map_err(|source| OpenError::Sled {
            path: dir.display().to_string(),
            source,
        })?;
    let flusher = Arc::new(flusher::Flusher::start(db.clone()));
    let corrupt = |reason: String| OpenError::Corrupt {
        path: dir.display().to_string(),
        reason,
    };
    let log = LogStore::new(&db, flusher.clone()).map_err(|e| corrupt(e.to_string()))?;
    let sm = StateMachineStore::new(&db, flusher).map_err(|e| corrupt(e.to_string()))?;
    Ok((log, sm))
}

/// Whether the store in `dir` has never taken part in a cluster: no vote, no log, no
/// snapshot. Used to decide whether a replica may bootstrap a new cluster.
pub fn is_pristine(log: &LogStore, sm: &StateMachineStore) -> bool {
    log.is_pristine() && sm.is_pristine()
}
