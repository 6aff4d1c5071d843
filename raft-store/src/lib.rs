//! # agora-raft-store
//!
//! Owns the durable half of a master replica: openraft's log, vote, committed index and
//! snapshots, kept in one sled database per replica (the snapshot in a file beside it), plus
//! the in-memory state machine that openraft applies committed commands to.
//!
//! It is generic over what it stores: anything that implements [`StateMachine`] (a command
//! type, a response type, a deterministic [`StateMachine::apply`], serde for snapshots). The
//! master plugs in its registry; this crate's tests plug in a toy. So this ground floor
//! imports nothing above it.
//!
//! Durability: a log append or vote is on disk (sled flushed) before openraft hears it is
//! persisted. Every flush goes through one [`flusher`] thread, which batches whatever has been
//! written since the last flush into one fsync (group commit) and never runs two flushes at
//! once (sled 0.34 can deadlock on concurrent `flush_async`).
//! The vote reads back uncommitted after a restart ([`LogStore`]'s `read_vote`), so a
//! restarted leader wins a new term before it leads again (openraft 0.9 would otherwise
//! resume it at once, with the lazily persisted committed index as the floor of its reads).
//!
//! The state machine lives in memory. It is made durable by snapshots (a file written whole,
//! fsynced and renamed into place: rewritten every few thousand entries, half a megabyte and
//! more, such values made sled's memory grow) together with the log and the persisted committed index: on restart the replica
//! loads the last snapshot and openraft re-applies the committed log after it. Log entries
//! and snapshots are JSON, so the bytes on disk are exactly those of the machine's serde.
//!
//! What it must not do: no networking, no knowledge of gRPC or of what the state machine
//! means; sled never leaks out of this crate's API (callers see [`open`], [`LogStore`],
//! [`StateMachineStore`] and [`StateHandle`]), so the storage engine can be swapped.

mod durable;
mod flusher;
mod log_store;
pub mod runtime;
mod snapshot_file;
mod state_machine;

/// The nice value of the threads Raft's liveness depends on (the flusher here, the
/// master's Raft runtime): below the default 0, so on a busy host the scheduler runs them
/// before client work and heartbeats keep their schedule.
pub const RAFT_THREAD_NICE: i32 = -10;

/// Gives the calling thread [`RAFT_THREAD_NICE`]. Needs CAP_SYS_NICE (root); without it
/// the thread keeps its priority and the error says why.
pub fn raise_thread_priority() -> std::io::Result<()> {
    set_thread_nice(RAFT_THREAD_NICE)
}

/// Gives the calling thread (only it: Linux's nice value is per thread) the nice value
/// `nice`. Lowering priority (a higher value) needs no privilege.
pub fn set_thread_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: gettid and setpriority on the calling thread; no memory is passed.
    let rc = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

use std::cmp::Ordering;
use std::fmt::{self, Debug};
use std::hash::{Hash, Hasher};
use std::io::Cursor;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use log_store::{LogStore, MAX_REPLICATION_READ_BYTES};
pub use state_machine::{SnapshotBuilder, SnapshotStats, StateHandle, StateMachineStore};

/// What the store keeps in memory and applies committed log entries to.
///
/// `apply` must be deterministic (the same commands in the same order give the same state and
/// responses on every replica) and must not fail: a command the machine refuses is a
/// response, not an error. Snapshots are the machine's serde (JSON); [`Default`] is the state
/// before the first entry.
pub trait StateMachine:
    Clone + Default + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// What one log entry carries.
    type Command: Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What applying one command answers. Entries without a command (blank, membership)
    /// answer `Default`.
    type Response: Default + Debug + Serialize + DeserializeOwned + Send + Sync + 'static;

    /// Applies one committed command.
    fn apply(&mut self, command: &Self::Command) -> Self::Response;

    /// How many items (the machine's own unit: the registry counts tasks) a snapshot of
    /// this state holds; reported with the snapshot's size, so its size can be read per
    /// item. 0 when the machine does not say.
    fn items(&self) -> u64 {
        0
    }
}

/// openraft's type configuration for a state machine `M`: one `M::Command` per log entry in,
/// one `M::Response` out, u64 node ids, JSON snapshots in memory, tokio ([`runtime::AgoraRuntime`]:
/// openraft's own tokio runtime with election timeouts a simulation can seed).
///
/// (`openraft::declare_raft_types!` cannot declare a generic type, hence this by hand; it is
/// a marker, so every trait openraft asks of it holds whatever `M` is.)
pub struct TypeConfig<M>(PhantomData<fn() -> M>);

impl<M> Debug for TypeConfig<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TypeConfig")
    }
}
impl<M> Clone for TypeConfig<M> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<M> Copy for TypeConfig<M> {}
impl<M> Default for TypeConfig<M> {
    fn default() -> Self {
        TypeConfig(PhantomData)
    }
}
impl<M> PartialEq for TypeConfig<M> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<M> Eq for TypeConfig<M> {}
impl<M> PartialOrd for TypeConfig<M> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<M> Ord for TypeConfig<M> {
    fn cmp(&self, _: &Self) -> Ordering {
        Ordering::Equal
    }
}
impl<M> Hash for TypeConfig<M> {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

impl<M: StateMachine> openraft::RaftTypeConfig for TypeConfig<M> {
    type D = M::Command;
    type R = M::Response;
    type NodeId = NodeId;
    type Node = openraft::BasicNode;
    type Entry = openraft::Entry<Self>;
    type SnapshotData = Cursor<Vec<u8>>;
    type AsyncRuntime = runtime::AgoraRuntime;
    type Responder = openraft::impls::OneshotResponder<Self>;
}

/// A Raft node id.
pub type NodeId = u64;
/// The openraft handle for state machine `M`.
pub type Raft<M> = openraft::Raft<TypeConfig<M>>;

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
    /// The store is behind what this replica reported persisted (its durability marker),
    /// or parts of it are missing: it lost data it had acknowledged. It must not take part
    /// in the cluster with it (it could vote twice in a term, or help elect a leader
    /// without an entry a quorum committed).
    #[error("the store in {path} is damaged: {reason}")]
    Damaged { path: String, reason: String },
}

/// sled's page cache per replica. Replication reads the log's tail, just written; older
/// entries are read only for a follower far behind, and then once. With 64 MiB the
/// leader's heap kept filling for minutes (61 -> 88 MB in use between 40 s and 140 s of a
/// million-task run) before it leveled off; with 16 MiB it still grew until 500k tasks.
const CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// Opens (or creates) the store in `dir`: the log store for openraft, and the state machine
/// with its last snapshot loaded.
pub fn open<M: StateMachine>(dir: &Path) -> Result<(LogStore<M>, StateMachineStore<M>), OpenError> {
    let path = || dir.display().to_string();
    let corrupt = |reason: String| OpenError::Corrupt {
        path: path(),
        reason,
    };
    let damaged = |reason: String| OpenError::Damaged {
        path: path(),
        reason,
    };
    // sled asserts on some damage while it recovers rather than answering an error: that is
    // damage too, reported as such (the panic's message is in the error).
    let opened = std::panic::catch_unwind(|| {
        sled::Config::new()
            .path(dir)
            // Flushes are ours (group commit), never sled's timer.
            .flush_every_ms(None)
            // sled caches pages up to 1 GiB by default: a replica's memory grew with every
            // entry ever written (115 -> 307 MB over a million tasks) although the log is
            // purged behind each snapshot. The log's tail and the snapshot fit in far less.
            .cache_capacity(CACHE_BYTES)
            .open()
    });
    let db = match opened {
        Ok(Ok(db)) => db,
        Ok(Err(sled::Error::Corruption { at, bt: _ })) => {
            return Err(damaged(format!("sled found a corrupt record (at {at:?})")))
        }
        Ok(Err(source)) => {
            return Err(OpenError::Sled {
                path: path(),
                source,
            })
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            return Err(damaged(format!("sled failed while recovering it: {what}")));
        }
    };
    let trees = LogStore::<M>::trees(&db).map_err(|e| corrupt(e.to_string()))?;
    let stored =
        log_store::stored_durable::<M>(&trees.0, &trees.1).map_err(|e| corrupt(e.to_string()))?;
    let sm = StateMachineStore::new(&db, dir).map_err(corrupt)?;
    check_against_marker(dir, &stored, trees.0.is_empty() && trees.1.is_empty())
        .map_err(damaged)?;
    // A log purged past what the snapshot holds: the snapshot was lost or replaced by an
    // older one, and the entries between are gone.
    let last_purged =
        log_store::stored_last_purged(&trees.1).map_err(|e| corrupt(e.to_string()))?;
    if let Some(purged) = last_purged {
        let applied = sm.last_applied_index();
        if applied.is_none_or(|a| a < purged.index) {
            return Err(damaged(format!(
                "the log was purged up to entry {} but the snapshot {}; the entries between are lost",
                purged.index,
                match applied {
                    None => "is missing".to_string(),
                    Some(a) => format!("ends at entry {a}"),
                }
            )));
        }
    }
    let marker = durable::Marker::create(dir, &stored).map_err(|e| OpenError::Sled {
        path: path(),
        source: sled::Error::Io(e),
    })?;
    let pending = Arc::new(std::sync::Mutex::new(stored));
    let flusher = Arc::new(flusher::Flusher::start(
        db.clone(),
        dir.to_path_buf(),
        pending.clone(),
        marker,
    ));
    let log = LogStore::attach(trees, flusher, pending);
    Ok((log, sm))
}

/// Refuses a store that is behind its durability marker ([`durable`]): a vote older than
/// the last one reported saved, or a log shorter than the last one reported flushed. No
/// marker is accepted (a store of a version before it, or a new one), with a warning when
/// the store is not empty.
fn check_against_marker(
    dir: &Path,
    stored: &durable::Durable,
    store_empty: bool,
) -> Result<(), String> {
    let marker = match durable::Marker::read(dir)? {
        Some(m) => m,
        None => {
            if !store_empty {
                tracing::warn!(
                    dir = %dir.display(),
                    "no durability marker beside the store (written by an earlier version, or removed): trusting the store as it is"
                );
            }
            return Ok(());
        }
    };
    if !matches!(
        stored.vote.partial_cmp(&marker.vote),
        Some(Ordering::Greater | Ordering::Equal)
    ) {
        return Err(format!(
            "its vote is {} but {} was saved before (the vote was lost: this replica could vote twice in one term)",
            show(&stored.vote),
            show(&marker.vote)
        ));
    }
    let index = |d: &durable::Durable| d.last_log_id.map(|l| l.index);
    if index(stored) < index(&marker) {
        return Err(format!(
            "its log ends at {} but entries up to {} were flushed and acknowledged (the log lost its tail)",
            show_log_id(&stored.last_log_id),
            show_log_id(&marker.last_log_id)
        ));
    }
    Ok(())
}

fn show_log_id(id: &Option<openraft::LogId<NodeId>>) -> String {
    match id {
        Some(id) => format!("entry {} (term {})", id.index, id.leader_id.term),
        None => "no entry".to_string(),
    }
}

fn show<T: fmt::Display>(v: &Option<T>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "none".to_string(),
    }
}

/// Whether the store has never taken part in a cluster: no vote, no log, no snapshot. Used
/// to decide whether a replica may bootstrap a new cluster.
pub fn is_pristine<M: StateMachine>(log: &LogStore<M>, sm: &StateMachineStore<M>) -> bool {
    log.is_pristine() && sm.is_pristine()
}
