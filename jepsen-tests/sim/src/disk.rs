//! The simulated disk of one replica: openraft's storage v2 traits for the production type
//! configuration (`agora_raft_store::TypeConfig<M>`), in memory, keeping the contracts
//! `agora-raft-store` keeps on sled:
//!
//! - an append is on "disk" before openraft's callback hears it is persisted: writes queue
//!   up, and a flusher task makes them durable together after a simulated fsync (group
//!   commit), then calls the callbacks;
//! - a vote and a truncation are durable before `save_vote`/`truncate` return (they wait
//!   for a flush of everything written before them);
//! - the committed index reaches the disk with the next flush, as in raft-store
//!   ([`DiskSettings::lazy_committed`]; off, it is durable before `save_committed`
//!   returns);
//! - the vote reads back uncommitted, as in raft-store, so that openraft 0.9 never
//!   resumes a restarted leader without an election ([`DiskSettings::restore_leader`]
//!   turns that off: raft-store before the fix);
//! - purges reach the disk with the next flush;
//! - a snapshot is durable once built or installed (raft-store writes it to a file whole,
//!   fsyncs and renames it).
//!
//! The durable part (vote, log, committed index, last purged id, last snapshot) survives a
//! [`Disk::crash`]; writes not yet flushed are lost, except a random prefix of them (what
//! the OS had already written back). The state machine lives in memory and does not
//! survive: a restarted replica loads the last snapshot and openraft re-applies the log.
//!
//! Each [`Disk::open`] is one incarnation of the replica; a crash ends it, and from then on
//! every call of the old incarnation's stores fails, so nothing it does afterwards reaches
//! the disk.
//!
//! The deliberate bug [`DiskSettings::lying`] acknowledges appends and votes at once and
//! writes them to the durable part only every second: the self-check shows the checks
//! catch what that loses.

// openraft's storage error types are large, and its traits dictate them.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agora_raft_store::{NodeId, StateMachine, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use tokio::sync::{oneshot, Notify};

use crate::rng::SimRng;

type StoreResult<T> = Result<T, StorageError<NodeId>>;

/// What the checks learn from the disks: votes saved, entries applied, states loaded.
/// Called synchronously, on the run's one thread.
pub trait DiskObserver<M: StateMachine>: Send + Sync + 'static {
    /// `entry` reached `node`'s disk (is durable there).
    fn appended(&self, node: NodeId, entry: &Entry<TypeConfig<M>>);
    /// `node` applied the entry `log_id`; `machine` is its state after it.
    fn applied(&self, node: NodeId, log_id: LogId<NodeId>, machine: &M);
    /// `node`'s state was replaced by a snapshot (`how`: "restart" or "install") as of
    /// `last`.
    fn loaded(&self, node: NodeId, last: Option<LogId<NodeId>>, machine: &M, how: &str);
}

/// How the disk behaves.
#[derive(Clone, Debug)]
pub struct DiskSettings {
    /// Milliseconds a flush takes, drawn in this range for each.
    pub fsync_ms: (u64, u64),
    /// The deliberate bug: acknowledge appends and votes before they are durable.
    pub lying: bool,
    /// Leave the committed index to the next flush, as `agora-raft-store` does, instead
    /// of making it durable before `save_committed` returns.
    pub lazy_committed: bool,
    /// The deliberate bug: hand the vote back as saved, committed flag included (raft-store
    /// before its `read_vote` fix). openraft 0.9 then resumes a leader restarted before its
    /// followers elect another at once, in the same term, reading from the committed index
    /// it read back, which may lag what it acknowledged: a stale read
    /// (`scenario::restarted_leader_reads`).
    pub restore_leader: bool,
}

impl Default for DiskSettings {
    fn default() -> Self {
        DiskSettings {
            fsync_ms: (0, 2),
            lying: false,
            lazy_committed: true,
            restore_leader: false,
        }
    }
}

/// How often a lying disk really writes.
const LYING_FLUSH_EVERY: Duration = Duration::from_secs(1);

/// A snapshot as stored: openraft's metadata and the machine's serde (JSON).
#[derive(Clone, Debug)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// What is on the disk (or, for `live`, what the running incarnation sees).
struct Stored<M: StateMachine> {
    vote: Option<Vote<NodeId>>,
    log: BTreeMap<u64, Entry<TypeConfig<M>>>,
    committed: Option<LogId<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
    snapshot: Option<StoredSnapshot>,
}

impl<M: StateMachine> Clone for Stored<M> {
    fn clone(&self) -> Self {
        Stored {
            vote: self.vote,
            log: self.log.clone(),
            committed: self.committed,
            last_purged: self.last_purged,
            snapshot: self.snapshot.clone(),
        }
    }
}

impl<M: StateMachine> Default for Stored<M> {
    fn default() -> Self {
        Stored {
            vote: None,
            log: BTreeMap::new(),
            committed: None,
            last_purged: None,
            snapshot: None,
        }
    }
}

/// One write not yet flushed.
enum Write<M: StateMachine> {
    Append(Vec<Entry<TypeConfig<M>>>),
    Truncate(u64),
    Purge(LogId<NodeId>),
    Vote(Vote<NodeId>),
    Committed(Option<LogId<NodeId>>),
}

impl<M: StateMachine> Stored<M> {
    fn write(&mut self, w: &Write<M>) {
        match w {
            Write::Append(entries) => {
                for e in entries {
                    self.log.insert(e.log_id.index, e.clone());
                }
            }
            Write::Truncate(from) => {
                self.log.split_off(from);
            }
            Write::Purge(upto) => {
                self.last_purged = Some(*upto);
                self.log = self.log.split_off(&(upto.index + 1));
            }
            Write::Vote(v) => self.vote = Some(*v),
            Write::Committed(c) => self.committed = *c,
        }
    }
}

/// Who waits for a flush.
enum Waiter<M: StateMachine> {
    /// openraft's append callback.
    Log(LogFlushed<TypeConfig<M>>),
    /// `save_vote` or `truncate`.
    Sync(oneshot::Sender<()>),
}

impl<M: StateMachine> Waiter<M> {
    fn done(self) {
        match self {
            Waiter::Log(cb) => cb.log_io_completed(Ok(())),
            Waiter::Sync(tx) => {
                let _ = tx.send(());
            }
        }
    }
}

struct DiskInner<M: StateMachine> {
    /// The running incarnation's id; a crash moves it on, so that no incarnation matches
    /// until the next [`Disk::open`].
    generation: u64,
    /// Survives a crash.
    durable: Stored<M>,
    /// What the running incarnation sees: `durable` plus `pending`.
    live: Stored<M>,
    /// Written, not yet durable, oldest first.
    pending: Vec<Write<M>>,
    /// Waiting for a flush of everything written before they registered.
    waiting: Vec<Waiter<M>>,
    snapshot_seq: u64,
    /// Incarnations started.
    opens: u64,
    /// Wakes the running incarnation's flusher.
    flush: Arc<Notify>,
}

/// One replica's disk. Cloning gives another handle on the same disk.
pub struct Disk<M: StateMachine> {
    node: NodeId,
    inner: Arc<Mutex<DiskInner<M>>>,
    rng: SimRng,
    settings: DiskSettings,
    observer: Arc<dyn DiskObserver<M>>,
}

impl<M: StateMachine> Clone for Disk<M> {
    fn clone(&self) -> Self {
        Disk {
            node: self.node,
            inner: self.inner.clone(),
            rng: self.rng.clone(),
            settings: self.settings.clone(),
            observer: self.observer.clone(),
        }
    }
}

fn crashed() -> StorageError<NodeId> {
    StorageIOError::<NodeId>::write(&std::io::Error::other("the replica crashed")).into()
}

/// The applied state machine of one incarnation, in memory.
struct Applied<M> {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    machine: M,
    /// Waiting until an index is applied, in the order they came (woken in that order:
    /// tokio's watch channel wakes its waiters in an order drawn from its own generator,
    /// which a run cannot seed, so this is not openraft's metrics).
    waiters: Vec<(u64, oneshot::Sender<()>)>,
}

impl<M> Applied<M> {
    fn new(
        last_applied: Option<LogId<NodeId>>,
        membership: StoredMembership<NodeId, BasicNode>,
        machine: M,
    ) -> Self {
        Applied {
            last_applied,
            membership,
            machine,
            waiters: Vec::new(),
        }
    }

    /// Wakes those waiting for an index applied by now.
    fn wake(&mut self) {
        let applied = self.last_applied.map_or(0, |l| l.index);
        let (ready, waiting) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.waiters = waiting;
        for (_, tx) in ready {
            let _ = tx.send(());
        }
    }
}

/// Read access to an incarnation's applied state (what a client's read looks at).
pub struct MachineHandle<M>(Arc<Mutex<Applied<M>>>);

impl<M> Clone for MachineHandle<M> {
    fn clone(&self) -> Self {
        MachineHandle(self.0.clone())
    }
}

impl<M> MachineHandle<M> {
    fn lock(&self) -> MutexGuard<'_, Applied<M>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the machine and the index of the last entry applied to it.
    pub fn read<T>(&self, f: impl FnOnce(&M, Option<u64>) -> T) -> T {
        let a = self.lock();
        f(&a.machine, a.last_applied.map(|l| l.index))
    }

    /// Waits until the entry at `index` is applied; an error if the incarnation ends
    /// first.
    pub async fn applied(&self, index: u64) -> Result<(), oneshot::error::RecvError> {
        let rx = {
            let mut a = self.lock();
            if a.last_applied.is_some_and(|l| l.index >= index) || index == 0 {
                return Ok(());
            }
            let (tx, rx) = oneshot::channel();
            a.waiters.push((index, tx));
            rx
        };
        rx.await
    }
}

impl<M: StateMachine> Disk<M> {
    /// An empty disk for replica `node`.
    pub fn new(
        node: NodeId,
        rng: SimRng,
        settings: DiskSettings,
        observer: Arc<dyn DiskObserver<M>>,
    ) -> Disk<M> {
        Disk {
            node,
            inner: Arc::new(Mutex::new(DiskInner {
                generation: 0,
                durable: Stored::default(),
                live: Stored::default(),
                pending: Vec::new(),
                waiting: Vec::new(),
                snapshot_seq: 0,
                opens: 0,
                flush: Arc::new(Notify::new()),
            })),
            rng,
            settings,
            observer,
        }
    }

    fn lock(&self) -> MutexGuard<'_, DiskInner<M>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many incarnations have started on this disk.
    pub fn incarnations(&self) -> u64 {
        self.lock().opens
    }

    /// Starts a new incarnation from what is durable: its id (greater than every earlier
    /// one's), its log store, its state machine (the last snapshot loaded) and a read
    /// handle on that. Spawns its flusher on the current runtime.
    pub fn open(&self) -> (u64, MemLog<M>, MemMachine<M>, MachineHandle<M>) {
        let (generation, flush, applied) = {
            let mut inner = self.lock();
            inner.generation += 1;
            inner.opens += 1;
            inner.flush = Arc::new(Notify::new());
            let generation = inner.generation;
            inner.live = inner.durable.clone();
            inner.pending.clear();
            inner.waiting.clear();
            let applied = match &inner.live.snapshot {
                None => Applied::new(None, StoredMembership::default(), M::default()),
                Some(s) => Applied::new(
                    s.meta.last_log_id,
                    s.meta.last_membership.clone(),
                    serde_json::from_slice(&s.data).expect("a snapshot this disk wrote reads back"),
                ),
            };
            (generation, inner.flush.clone(), applied)
        };
        if applied.last_applied.is_some() {
            self.observer
                .loaded(self.node, applied.last_applied, &applied.machine, "restart");
        }
        let state = Arc::new(Mutex::new(applied));
        tokio::spawn(self.clone().flusher(generation, flush));
        (
            generation,
            MemLog {
                disk: self.clone(),
                generation,
            },
            MemMachine {
                disk: self.clone(),
                generation,
                state: state.clone(),
            },
            MachineHandle(state),
        )
    }

    /// Ends the running incarnation as a power loss would: writes not yet flushed are lost,
    /// but a random prefix of them (none if the disk lies) reached the disk first.
    pub fn crash(&self) {
        let kept = {
            let inner = self.lock();
            if self.settings.lying {
                0
            } else {
                self.rng.range(0, inner.pending.len() as u64) as usize
            }
        };
        let mut inner = self.lock();
        let inner = &mut *inner;
        for w in inner.pending.drain(..).take(kept) {
            inner.durable.write(&w);
        }
        inner.waiting.clear();
        inner.live = Stored::default();
        inner.generation += 1;
        inner.flush.notify_one();
    }

    /// Whether incarnation `generation` still runs; an error for its callers if not.
    fn check(&self, generation: u64) -> StoreResult<MutexGuard<'_, DiskInner<M>>> {
        let inner = self.lock();
        if inner.generation == generation {
            Ok(inner)
        } else {
            Err(crashed())
        }
    }

    /// Whether incarnation `generation` still runs (an error if not).
    fn alive(&self, generation: u64) -> StoreResult<()> {
        self.check(generation).map(drop)
    }

    /// Queues `w` (already applied to `live` by the caller).
    fn queue(&self, inner: &mut DiskInner<M>, w: Write<M>) {
        inner.pending.push(w);
        inner.flush.notify_one();
    }

    /// Waits until everything written so far is durable.
    async fn sync(&self, generation: u64) -> StoreResult<()> {
        let rx = {
            let mut inner = self.check(generation)?;
            if self.settings.lying {
                return Ok(());
            }
            let (tx, rx) = oneshot::channel();
            inner.waiting.push(Waiter::Sync(tx));
            inner.flush.notify_one();
            rx
        };
        rx.await.map_err(|_| crashed())
    }

    /// Makes the writes durable, a batch at a time, after a simulated fsync each; ends
    /// with the incarnation.
    async fn flusher(self, generation: u64, flush: Arc<Notify>) {
        loop {
            if self.settings.lying {
                tokio::time::sleep(LYING_FLUSH_EVERY).await;
            } else {
                flush.notified().await;
            }
            loop {
                let (n, waiting) = {
                    let Ok(mut inner) = self.check(generation) else {
                        return;
                    };
                    if inner.pending.is_empty() && inner.waiting.is_empty() {
                        break;
                    }
                    (inner.pending.len(), std::mem::take(&mut inner.waiting))
                };
                if !self.settings.lying {
                    let (lo, hi) = self.settings.fsync_ms;
                    tokio::time::sleep(self.rng.millis(lo, hi)).await;
                }
                // The checker sees an entry once it is durable: one that a crash took back
                // before it reached any disk was never anywhere, and its log id may be
                // proposed again with another entry.
                let mut durable = Vec::new();
                {
                    let Ok(mut inner) = self.check(generation) else {
                        return;
                    };
                    let inner = &mut *inner;
                    for w in inner.pending.drain(..n) {
                        inner.durable.write(&w);
                        if let Write::Append(entries) = w {
                            durable.extend(entries);
                        }
                    }
                }
                for e in &durable {
                    self.observer.appended(self.node, e);
                }
                for w in waiting {
                    w.done();
                }
                if self.settings.lying {
                    break;
                }
            }
        }
    }
}

/// openraft's log store for one incarnation.
pub struct MemLog<M: StateMachine> {
    disk: Disk<M>,
    generation: u64,
}

impl<M: StateMachine> Clone for MemLog<M> {
    fn clone(&self) -> Self {
        MemLog {
            disk: self.disk.clone(),
            generation: self.generation,
        }
    }
}

impl<M: StateMachine> RaftLogReader<TypeConfig<M>> for MemLog<M> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<TypeConfig<M>>>> {
        let inner = self.disk.check(self.generation)?;
        let range = (
            range.start_bound().cloned(),
            match range.end_bound() {
                Bound::Included(i) => Bound::Included(*i),
                Bound::Excluded(i) => Bound::Excluded(*i),
                Bound::Unbounded => Bound::Unbounded,
            },
        );
        Ok(inner
            .live
            .log
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl<M: StateMachine> RaftLogStorage<TypeConfig<M>> for MemLog<M> {
    type LogReader = MemLog<M>;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig<M>>> {
        let inner = self.disk.check(self.generation)?;
        let last_purged = inner.live.last_purged;
        let last = inner
            .live
            .log
            .last_key_value()
            .map(|(_, e)| e.log_id)
            .or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        {
            let mut inner = self.disk.check(self.generation)?;
            inner.live.vote = Some(*vote);
            self.disk.queue(&mut inner, Write::Vote(*vote));
        }
        self.disk.sync(self.generation).await
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        let vote = self.disk.check(self.generation)?.live.vote;
        if self.disk.settings.restore_leader {
            return Ok(vote);
        }
        Ok(vote.map(|mut v| {
            v.committed = false;
            v
        }))
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StoreResult<()> {
        {
            let mut inner = self.disk.check(self.generation)?;
            inner.live.committed = committed;
            self.disk.queue(&mut inner, Write::Committed(committed));
        }
        if self.disk.settings.lazy_committed {
            Ok(())
        } else {
            self.disk.sync(self.generation).await
        }
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<NodeId>>> {
        Ok(self.disk.check(self.generation)?.live.committed)
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
        let entries: Vec<_> = entries.into_iter().collect();
        let mut inner = self.disk.check(self.generation)?;
        let w = Write::Append(entries);
        inner.live.write(&w);
        self.disk.queue(&mut inner, w);
        if self.disk.settings.lying {
            drop(inner);
            callback.log_io_completed(Ok(()));
        } else {
            inner.waiting.push(Waiter::Log(callback));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        {
            let mut inner = self.disk.check(self.generation)?;
            let w = Write::Truncate(log_id.index);
            inner.live.write(&w);
            self.disk.queue(&mut inner, w);
        }
        self.disk.sync(self.generation).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        let mut inner = self.disk.check(self.generation)?;
        let w = Write::Purge(log_id);
        inner.live.write(&w);
        self.disk.queue(&mut inner, w);
        Ok(())
    }
}

/// openraft's state machine for one incarnation: `M` in memory.
pub struct MemMachine<M: StateMachine> {
    disk: Disk<M>,
    generation: u64,
    state: Arc<Mutex<Applied<M>>>,
}

impl<M: StateMachine> MemMachine<M> {
    fn state(&self) -> MutexGuard<'_, Applied<M>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `snapshot` as the disk's last (durable at once: a file written whole).
    fn keep_snapshot(&self, snapshot: StoredSnapshot) -> StoreResult<()> {
        let mut inner = self.disk.check(self.generation)?;
        inner.live.snapshot = Some(snapshot.clone());
        inner.durable.snapshot = Some(snapshot);
        Ok(())
    }
}

impl<M: StateMachine> RaftStateMachine<TypeConfig<M>> for MemMachine<M> {
    type SnapshotBuilder = SnapshotBuilder<M>;

    async fn applied_state(
        &mut self,
    ) -> StoreResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        self.disk.alive(self.generation)?;
        let s = self.state();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<M::Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig<M>>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.disk.alive(self.generation)?;
        let mut results = Vec::new();
        let mut s = self.state();
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
            self.disk
                .observer
                .applied(self.disk.node, entry.log_id, &s.machine);
            results.push(result);
        }
        s.wake();
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            machine: MemMachine {
                disk: self.disk.clone(),
                generation: self.generation,
                state: self.state.clone(),
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
        let machine: M = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.keep_snapshot(StoredSnapshot {
            meta: meta.clone(),
            data,
        })?;
        self.disk
            .observer
            .loaded(self.disk.node, meta.last_log_id, &machine, "install");
        let mut s = self.state();
        s.last_applied = meta.last_log_id;
        s.membership = meta.last_membership.clone();
        s.machine = machine;
        s.wake();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig<M>>>> {
        let inner = self.disk.check(self.generation)?;
        Ok(inner.live.snapshot.clone().map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

/// Builds a snapshot of the state as applied when it runs.
pub struct SnapshotBuilder<M: StateMachine> {
    machine: MemMachine<M>,
}

impl<M: StateMachine> RaftSnapshotBuilder<TypeConfig<M>> for SnapshotBuilder<M> {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig<M>>> {
        let (last_applied, membership, data) = {
            let s = self.machine.state();
            let data = serde_json::to_vec(&s.machine)
                .map_err(|e| StorageIOError::read_state_machine(&e))?;
            (s.last_applied, s.membership.clone(), data)
        };
        let seq = {
            let mut inner = self.machine.disk.check(self.machine.generation)?;
            inner.snapshot_seq += 1;
            inner.snapshot_seq
        };
        let snapshot_id = match last_applied {
            Some(l) => format!(
                "{}-{}-{}-{seq}",
                l.leader_id.term, l.leader_id.node_id, l.index
            ),
            None => format!("empty-{seq}"),
        };
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: last_applied,
                last_membership: membership,
                snapshot_id,
            },
            data,
        };
        self.machine.keep_snapshot(stored.clone())?;
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}
