//! openraft's log storage: entries keyed by big-endian index in one sled tree, vote,
//! committed index and last purged id in another.

// openraft's storage error types are large, and its traits dictate them.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::flusher::{Flusher, Pending};
use crate::{NodeId, StateMachine, TypeConfig};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// The Raft log of one replica, whose entries carry `M::Command`s. Cloning gives another
/// handle on the same log (used as the log reader).
pub struct LogStore<M> {
    logs: sled::Tree,
    meta: sled::Tree,
    flusher: Arc<Flusher>,
    /// What the next flush makes durable, for the marker.
    pending: Pending,
    /// Index of the committed log id last written to `meta`, plus one (0: none this run).
    saved_committed: Arc<AtomicU64>,
    machine: PhantomData<fn() -> M>,
}

/// The committed log id is written only when it has moved this many entries past the one
/// last written (see [`LogStore::save_committed`]).
const SAVE_COMMITTED_EVERY: u64 = 1024;

impl<M> Clone for LogStore<M> {
    fn clone(&self) -> Self {
        LogStore {
            logs: self.logs.clone(),
            meta: self.meta.clone(),
            flusher: self.flusher.clone(),
            pending: self.pending.clone(),
            saved_committed: self.saved_committed.clone(),
            machine: PhantomData,
        }
    }
}

type StoreResult<T> = Result<T, StorageError<NodeId>>;

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(value)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}

impl<M: StateMachine> LogStore<M> {
    /// The log's trees in `db`, flushed by `flusher` (which is started once the store has
    /// been checked against its marker: [`LogStore::attach`]).
    pub(crate) fn trees(db: &sled::Db) -> Result<(sled::Tree, sled::Tree), sled::Error> {
        Ok((db.open_tree("raft_log")?, db.open_tree("raft_meta")?))
    }

    pub(crate) fn attach(
        (logs, meta): (sled::Tree, sled::Tree),
        flusher: Arc<Flusher>,
        pending: Pending,
    ) -> Self {
        LogStore {
            logs,
            meta,
            flusher,
            pending,
            saved_committed: Arc::new(AtomicU64::new(0)),
            machine: PhantomData,
        }
    }

    fn set_pending(&self, f: impl FnOnce(&mut crate::durable::Durable)) {
        f(&mut self.pending.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub(crate) fn is_pristine(&self) -> bool {
        self.logs.is_empty() && self.meta.is_empty()
    }

    fn get_meta<T: DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageIOError<NodeId>> {
        get_meta(&self.meta, key)
    }

    fn put_meta<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageIOError<NodeId>> {
        let bytes = encode(value).map_err(|e| StorageIOError::write(&e))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId<NodeId>>, StorageIOError<NodeId>> {
        last_entry_log_id::<M>(&self.logs)
    }

    /// Number of log entries currently kept (after purges).
    pub fn len(&self) -> usize {
        self.logs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.logs.is_empty()
    }
}

pub(crate) fn get_meta<T: DeserializeOwned>(
    meta: &sled::Tree,
    key: &[u8],
) -> Result<Option<T>, StorageIOError<NodeId>> {
    match meta.get(key).map_err(|e| StorageIOError::read(&e))? {
        None => Ok(None),
        Some(bytes) => decode(&bytes)
            .map(Some)
            .map_err(|e| StorageIOError::read(&e)),
    }
}

pub(crate) fn last_entry_log_id<M: StateMachine>(
    logs: &sled::Tree,
) -> Result<Option<LogId<NodeId>>, StorageIOError<NodeId>> {
    match logs.last().map_err(|e| StorageIOError::read_logs(&e))? {
        None => Ok(None),
        Some((_, bytes)) => {
            let entry: Entry<TypeConfig<M>> =
                decode(&bytes).map_err(|e| StorageIOError::read_logs(&e))?;
            Ok(Some(entry.log_id))
        }
    }
}

/// The vote and the last log id (the last entry's, else the last purged one) as stored.
pub(crate) fn stored_durable<M: StateMachine>(
    logs: &sled::Tree,
    meta: &sled::Tree,
) -> Result<crate::durable::Durable, StorageIOError<NodeId>> {
    let last_purged: Option<LogId<NodeId>> = get_meta(meta, LAST_PURGED)?;
    Ok(crate::durable::Durable {
        vote: get_meta(meta, VOTE)?,
        last_log_id: last_entry_log_id::<M>(logs)?.or(last_purged),
    })
}

/// The last purged log id as stored.
pub(crate) fn stored_last_purged(
    meta: &sled::Tree,
) -> Result<Option<LogId<NodeId>>, StorageIOError<NodeId>> {
    get_meta(meta, LAST_PURGED)
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn to_key_bounds<RB: RangeBounds<u64>>(range: &RB) -> (Bound<[u8; 8]>, Bound<[u8; 8]>) {
    let map = |b: Bound<&u64>| match b {
        Bound::Included(i) => Bound::Included(index_key(*i)),
        Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
        Bound::Unbounded => Bound::Unbounded,
    };
    (map(range.start_bound()), map(range.end_bound()))
}

impl<M: StateMachine> RaftLogReader<TypeConfig<M>> for LogStore<M> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<TypeConfig<M>>>> {
        let mut out = Vec::new();
        for item in self.logs.range(to_key_bounds(&range)) {
            let (_, bytes) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            out.push(decode(&bytes).map_err(|e| StorageIOError::read_logs(&e))?);
        }
        Ok(out)
    }

    /// What replication reads to send: entries from `start`, at most
    /// [`MAX_REPLICATION_READ_BYTES`] of them as stored (at least one). openraft asks for
    /// `max_payload_entries` at once; with entries of up to 2 MiB each, a follower behind
    /// cost the leader 100+ MB read and decoded per round to send one megabyte.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> StoreResult<Vec<Entry<TypeConfig<M>>>> {
        let mut out = Vec::new();
        let mut bytes_read = 0;
        for item in self.logs.range(to_key_bounds(&(start..end))) {
            let (_, bytes) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            bytes_read += bytes.len();
            if bytes_read > MAX_REPLICATION_READ_BYTES && !out.is_empty() {
                break;
            }
            out.push(decode(&bytes).map_err(|e| StorageIOError::read_logs(&e))?);
        }
        Ok(out)
    }
}

/// Most bytes of stored entries replication reads for one AppendEntries (one entry is read
/// whatever its size).
pub const MAX_REPLICATION_READ_BYTES: usize = 1024 * 1024;

impl<M: StateMachine> RaftLogStorage<TypeConfig<M>> for LogStore<M> {
    type LogReader = LogStore<M>;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig<M>>> {
        let last_purged: Option<LogId<NodeId>> = self.get_meta(LAST_PURGED)?;
        let last = self.last_entry_log_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        self.put_meta(VOTE, vote)
            .map_err(|e| StorageIOError::write_vote(&std::io::Error::other(e.to_string())))?;
        self.set_pending(|d| d.vote = Some(*vote));
        self.flusher
            .flush()
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    /// The saved vote, handed back *not committed*. openraft 0.9 restores a replica whose
    /// saved vote is a committed vote for itself as leader at once, in the same term,
    /// without an election or an entry of its own (its "fast path"; openraft#1511). Such a
    /// leader's reads start from the committed index it reads back, which lags (it is
    /// persisted with the next flush, [`LogStore::save_committed`]), and its state machine
    /// may lack writes it acknowledged before the crash: the deterministic simulator's
    /// scenario `restarted-leader-reads` shows the stale read. Read back uncommitted, the
    /// vote still refuses the same candidates (leader ids are ordered by term and node id
    /// first), and the replica must win a new term, whose blank entry commits everything
    /// before it, before it leads again.
    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        let vote: Option<Vote<NodeId>> = self.get_meta(VOTE)?;
        Ok(vote.map(|mut v| {
            v.committed = false;
            v
        }))
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StoreResult<()> {
        // Not flushed on its own: it only lets a restarted replica re-apply sooner (up to
        // it, before it hears from a leader), and it reaches disk with the next log flush.
        // Written every SAVE_COMMITTED_EVERY entries, not on every commit: each write is
        // one more sled record, written and synced on its own in the next flush (a third
        // of a one-client write's storage work). An older committed id is as safe; a
        // restarted replica then learns the rest from the leader.
        let index = committed.map(|c| c.index + 1).unwrap_or(0);
        let saved = self.saved_committed.load(Ordering::Relaxed);
        if index < saved.saturating_add(SAVE_COMMITTED_EVERY) && saved != 0 {
            return Ok(());
        }
        self.put_meta(COMMITTED, &committed)?;
        self.saved_committed.store(index.max(1), Ordering::Relaxed);
        Ok(())
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<NodeId>>> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig<M>>,
    ) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig<M>>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // One insert per entry, not a `sled::Batch`: `apply_batch` takes sled's global write
        // lock, which waits for a running flush (the flusher holds its read side through
        // the whole write-out and sync), and this runs on Raft's one thread, so every append
        // stalled heartbeats and replication for a flush. Entries go in in index order and
        // sled recovers its writes in order, so a crash keeps a prefix of them; none is
        // reported persisted before the flush that covers it.
        let mut last = None;
        for entry in entries {
            let bytes =
                encode(&entry).map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            self.logs
                .insert(index_key(entry.log_id.index), bytes)
                .map_err(|e| StorageIOError::write_logs(&e))?;
            last = Some(entry.log_id);
        }
        if let Some(last) = last {
            self.set_pending(|d| d.last_log_id = Some(last));
        }
        // openraft learns the entries are persisted only after the flush covering them.
        self.flusher
            .after_flush(move |result| callback.log_io_completed(result));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        let mut batch = sled::Batch::default();
        for item in self.logs.range(index_key(log_id.index)..) {
            let (key, _) = item.map_err(|e| StorageIOError::write_logs(&e))?;
            batch.remove(key);
        }
        self.logs
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        // The log now ends before `log_id` (or at the purge point).
        let last = stored_durable::<M>(&self.logs, &self.meta)?.last_log_id;
        self.set_pending(|d| d.last_log_id = last);
        self.flusher
            .flush()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        // Record the purge point first, so a crash mid-purge never leaves a gap unexplained.
        self.put_meta(LAST_PURGED, &log_id)?;
        // Removed one by one, oldest first, not as a batch (see `append`: a batch waits for
        // a running flush on Raft's thread); a crash midway leaves a suffix of the purged
        // range, below the recorded purge point.
        for item in self.logs.range(..=index_key(log_id.index)) {
            let (key, _) = item.map_err(|e| StorageIOError::write_logs(&e))?;
            self.logs
                .remove(key)
                .map_err(|e| StorageIOError::write_logs(&e))?;
        }
        Ok(())
    }
}
