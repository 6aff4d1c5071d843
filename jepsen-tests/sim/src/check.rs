//! The invariants, as the fault-injection harness checks them, adapted to a run whose
//! every replica is in reach:
//!
//! - **one leader per term**, as openraft 0.9 defines a term: without its
//!   `single-term-leader` feature (Agora does not enable it) a leader id is (term, node
//!   id), ordered by both, and two replicas may be elected one after the other in the same
//!   term (a voter that granted (16, n1) grants (16, n3), which is greater, unless its
//!   leader lease holds); a leader restarted with its vote resumes under the same id. Log
//!   ids carry the whole leader id, so what must hold is that one leader id never has two
//!   leaders proposing different entries: no log id is ever made durable, on any replica,
//!   with two different entries (a replica that forgot its vote in a crash and was elected
//!   again under the same id would do that). An entry counts once a disk holds it: a
//!   leader that crashed before its entry reached any disk, and resumed under the same
//!   leader id, may propose another entry at that index, which is no conflict. Terms with
//!   two leaders are counted and logged, not failed;
//! - **agreement**: whenever a replica applies the entry at an index (or loads a snapshot
//!   as of it), the entry's log id and the state machine after it (a hash of its serde) are
//!   those every other replica had at that index;
//! - **durability**: every acknowledged write's entry is, at the end, in every replica's
//!   applied state (each has applied past it, and agreement says it is the same entry);
//! - **linearizable registers**: each register's history of writes and reads passes
//!   `jepsen_tests::linearizable` (the harness's Wing-Gong search);
//! - **recovery**: after the final heal, a write commits within the bound, and every
//!   replica catches up with the leader and holds the same state.
//!
//! [`Checker`] records the first three as the run goes (it is the disks' observer); the
//! run adds what the end shows.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use agora_raft_store::{NodeId, StateMachine, TypeConfig};
use openraft::{Entry, LogId};
use serde::Serialize;

use crate::disk::DiskObserver;
use crate::events::EventLog;

/// A stable 64-bit hash (FNV-1a) of a value's JSON: the same state hashes the same on
/// every run and every replica.
pub fn digest<T: Serialize>(value: &T) -> u64 {
    let bytes = serde_json::to_vec(value).expect("the state machine serializes");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The applied state is compared at every this many indexes (and at every snapshot).
const DIGEST_EVERY: u64 = 16;

#[derive(Default)]
struct State {
    /// Term -> the replicas elected in it (by their metrics).
    leaders: BTreeMap<u64, Vec<NodeId>>,
    /// Log id -> (hash of the entry, the first replica seen appending it).
    entries: BTreeMap<LogId<NodeId>, (u64, NodeId)>,
    /// Index -> (log id, state digest, first replica seen with it).
    applied: BTreeMap<u64, (LogId<NodeId>, Option<u64>, NodeId)>,
    violations: Vec<String>,
}

/// Records what the replicas do and what contradicts the invariants. Shared.
#[derive(Clone)]
pub struct Checker {
    state: Arc<Mutex<State>>,
    log: EventLog,
}

impl Checker {
    pub fn new(log: EventLog) -> Checker {
        Checker {
            state: Arc::default(),
            log,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a violation (and logs it).
    pub fn violation(&self, what: String) {
        self.log.line("check", format_args!("VIOLATION {what}"));
        self.lock().violations.push(what);
    }

    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// `node` became leader in `term` (its metrics say).
    pub fn leader(&self, node: NodeId, term: u64) {
        let before = {
            let mut s = self.lock();
            let elected = s.leaders.entry(term).or_default();
            let before: Vec<String> = elected
                .iter()
                .filter(|&&n| n != node)
                .map(|n| format!("n{n}"))
                .collect();
            if !elected.contains(&node) {
                elected.push(node);
            }
            before
        };
        if !before.is_empty() {
            self.log.line(
                "check",
                format_args!(
                    "term {term}: n{node} elected after {} (openraft orders leaders by (term, node id))",
                    before.join(", ")
                ),
            );
        }
    }

    /// Terms in which more than one replica was elected.
    pub fn shared_terms(&self) -> u64 {
        let s = self.lock();
        s.leaders.values().filter(|l| l.len() > 1).count() as u64
    }

    /// The entry applied at `log_id.index` everywhere so far, if any.
    pub fn applied_at(&self, index: u64) -> Option<LogId<NodeId>> {
        self.lock().applied.get(&index).map(|(l, _, _)| *l)
    }

    /// `digest`: of the state after `log_id`, where taken.
    fn agree(&self, node: NodeId, log_id: LogId<NodeId>, digest: Option<u64>, how: &str) {
        let clash = {
            let mut s = self.lock();
            match s.applied.get_mut(&log_id.index) {
                None => {
                    s.applied.insert(log_id.index, (log_id, digest, node));
                    None
                }
                Some(&mut (l, d, first))
                    if l != log_id || matches!((d, digest), (Some(a), Some(b)) if a != b) =>
                {
                    Some((l, d.unwrap_or(0), first))
                }
                Some(seen) => {
                    if seen.1.is_none() && digest.is_some() {
                        *seen = (log_id, digest, node);
                    }
                    None
                }
            }
        };
        if let Some((l, d, first)) = clash {
            let what = if l != log_id {
                format!("entry {l} there, n{node} {how} {log_id}")
            } else {
                format!("the same entry {l}, but states {d:016x} on n{first} and {:016x} on n{node} ({how})", digest.unwrap_or(0))
            };
            self.violation(format!(
                "agreement: index {}: n{first} applied {what}",
                log_id.index
            ));
        }
    }
}

impl<M: StateMachine> DiskObserver<M> for Checker {
    fn appended(&self, node: NodeId, entry: &Entry<TypeConfig<M>>) {
        let d = digest(&entry.payload);
        let clash = {
            let mut s = self.lock();
            match s.entries.get(&entry.log_id) {
                None => {
                    s.entries.insert(entry.log_id, (d, node));
                    None
                }
                Some(&(other, first)) if other != d => Some(first),
                Some(_) => None,
            }
        };
        if let Some(first) = clash {
            self.violation(format!(
                "one_leader_per_term: log id {} holds different entries on n{first} and n{node}: two leaders proposed under leader id {}",
                entry.log_id, entry.log_id.leader_id
            ));
        }
    }

    fn applied(&self, node: NodeId, log_id: LogId<NodeId>, machine: &M) {
        // Every entry's id is compared; the state (a digest of all of it) at every
        // DIGEST_EVERY-th index: a state that differs stays different.
        let d = log_id
            .index
            .is_multiple_of(DIGEST_EVERY)
            .then(|| digest(machine));
        self.agree(node, log_id, d, "applied");
    }

    fn loaded(&self, node: NodeId, last: Option<LogId<NodeId>>, machine: &M, how: &str) {
        if let Some(last) = last {
            self.log.line(
                &format!("n{node}"),
                format_args!("snapshot {how} as of {last}"),
            );
            self.agree(node, last, Some(digest(machine)), how);
        }
    }
}
