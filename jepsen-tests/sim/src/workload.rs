//! The register workload, as the harness's (`jepsen_tests::register`), on the replicas'
//! `Raft` handles: register `reg-K` is the weight of role `reg-K` in the real registry.
//!
//! Each client loops until the end of the run: it thinks 10-40 ms, picks a register, a
//! write or a read, and the replica it believes leads (the last that answered, or the one a
//! refusal named; else a random one), and records the invocation and the completion:
//!
//! - a write is `raft.client_write` of one `SetWeight` command with a value no one else
//!   writes (`jepsen_tests::register::nth_value`), acknowledged once committed and applied;
//!   a write with any other outcome (a timeout, "forward to leader", the replica stopped) is
//!   indeterminate: a leader that steps down with the entry in flight answers "forward to
//!   leader" too, and its successor may still commit it;
//! - a read is confirmed one of two ways, drawn per read, then answered with the value in
//!   that replica's applied registry (0 while the role has no weight); a read that fails
//!   is dropped:
//!   - the read index: `raft.ensure_linearizable()` (a quorum round);
//!   - the master's own way (`agora_master::quorum::view_of`, as `/state`, `GetState` and
//!     reconciliation serve): the replica leads, holds its lease (a majority accepted an
//!     append of its term within the lease, on the virtual clock), and has applied an
//!     entry of its own term.
//!
//! A paused replica keeps a client's call waiting until it resumes; a crashed one is not
//! called (the client picks another). Each call times out after 1 s.
//!
//! The deliberate bugs: [`Workload::stale_reads`], a replica that believes it leads answers
//! a read from its registry at once, without `ensure_linearizable` or its lease;
//! [`Workload::early_reads`], the master's way as it was before the fix of "a new leader
//! served reads before applying the previous term's entries" (leading by openraft's
//! metrics: no lease, no entry of its own term applied).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use agora_master::config::RaftTiming;
use agora_master::quorum::{view_of, ServingChecks};
use agora_master::store::RegistryMachine;
use agora_raft_store::NodeId;
use agora_registry::{Command, CommandBatch};
use jepsen_tests::linearizable::{Op, OpKind};
use jepsen_tests::register::{key, nth_value, value_of, weight_of, CALL_TIMEOUT, KEYS};
use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::events::EventLog;
use crate::rng::SimRng;

/// An acknowledged write: its register, value and log entry.
#[derive(Clone, Debug)]
pub struct Acked {
    pub key: u64,
    pub value: u64,
    pub log_id: openraft::LogId<NodeId>,
}

/// What the clients did.
#[derive(Default)]
pub struct History {
    /// Per register, every op.
    pub ops: BTreeMap<u64, Vec<Op>>,
    pub acked: Vec<Acked>,
}

/// The clients of a run.
#[derive(Clone)]
pub struct Workload {
    pub clients: u64,
    /// The deliberate bugs (module docs).
    pub stale_reads: bool,
    pub early_reads: bool,
    pub cluster: Cluster<RegistryMachine>,
    pub rng: SimRng,
    pub log: EventLog,
    pub history: Arc<Mutex<History>>,
}

/// How an op ended.
enum Outcome {
    /// Acknowledged (a write: at this entry) or read this value.
    Ok(u64, Option<openraft::LogId<NodeId>>),
    /// May or may not have taken effect.
    Unknown(String),
    /// The replica was down: nothing was sent.
    NotSent,
}

impl Workload {
    /// Runs client `c` until `end`.
    pub async fn client(self, c: u64, end: Instant) {
        let who = format!("c{c}");
        let mut guess: Option<NodeId> = None;
        let mut k = 0;
        while Instant::now() < end {
            tokio::time::sleep(self.rng.millis(10, 40)).await;
            if Instant::now() >= end {
                break;
            }
            let ids = self.cluster.ids();
            let node = guess.unwrap_or_else(|| *self.rng.pick(ids));
            let register = self.rng.range(0, KEYS - 1);
            let write = self.rng.chance(0.5);
            let value = nth_value(c, self.clients, k);
            let invoke_ms = self.log.now_ms();
            let kind = if write { "write" } else { "read" };
            if write {
                k += 1;
                self.log.line(
                    &who,
                    format_args!("{kind} {} {value} via n{node}", key(register)),
                );
            } else {
                self.log
                    .line(&who, format_args!("{kind} {} via n{node}", key(register)));
            }
            let outcome = if write {
                self.write(node, register, value, &mut guess).await
            } else {
                self.read(node, register, &mut guess).await
            };
            let complete_ms = self.log.now_ms();
            let op = |kind, value, complete| Op {
                kind,
                value,
                invoke_ms,
                complete_ms: complete,
                client: format!("{who} via n{node}"),
            };
            let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
            match outcome {
                Outcome::Ok(v, log_id) => {
                    let at = log_id.map(|l| format!(" at {l}")).unwrap_or_default();
                    self.log
                        .line(&who, format_args!("{kind} {} {v} ok{at}", key(register)));
                    let kind = if write { OpKind::Write } else { OpKind::Read };
                    history
                        .ops
                        .entry(register)
                        .or_default()
                        .push(op(kind, v, Some(complete_ms)));
                    if let Some(log_id) = log_id {
                        history.acked.push(Acked {
                            key: register,
                            value: v,
                            log_id,
                        });
                    }
                }
                Outcome::Unknown(why) => {
                    self.log.line(
                        &who,
                        format_args!("{kind} {} unknown: {why}", key(register)),
                    );
                    if write {
                        history.ops.entry(register).or_default().push(op(
                            OpKind::Write,
                            value,
                            None,
                        ));
                    }
                }
                Outcome::NotSent => {
                    self.log.line(
                        &who,
                        format_args!("{kind} {} not sent: n{node} is down", key(register)),
                    );
                }
            }
        }
    }

    async fn write(
        &self,
        node: NodeId,
        register: u64,
        value: u64,
        guess: &mut Option<NodeId>,
    ) -> Outcome {
        let Some((_, raft, _)) = self.cluster.node(node) else {
            *guess = None;
            return Outcome::NotSent;
        };
        let command = Command::SetWeight {
            role: key(register),
            weight: weight_of(value),
        };
        let net = self.cluster.net().clone();
        let call = async {
            net.wait_resumed(node).await;
            raft.client_write(CommandBatch::one(command)).await
        };
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(resp)) => match resp.data.first() {
                Some(Ok(())) => {
                    *guess = Some(node);
                    Outcome::Ok(value, Some(resp.log_id))
                }
                // The registry refused it: nothing changed (it never does for these).
                Some(Err(e)) => Outcome::Unknown(format!("refused: {e}")),
                None => Outcome::Unknown("no result".into()),
            },
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                *guess = f.leader_id;
                Outcome::Unknown(match f.leader_id {
                    Some(l) => format!("forward to n{l}"),
                    None => "no leader known".into(),
                })
            }
            Ok(Err(e)) => {
                *guess = None;
                Outcome::Unknown(e.to_string())
            }
            Err(_) => {
                *guess = None;
                Outcome::Unknown("timed out".into())
            }
        }
    }

    async fn read(&self, node: NodeId, register: u64, guess: &mut Option<NodeId>) -> Outcome {
        let (Some((generation, raft, machine)), Some(contacts)) =
            (self.cluster.node(node), self.cluster.contacts(node))
        else {
            *guess = None;
            return Outcome::NotSent;
        };
        let net = self.cluster.net().clone();
        let stale = self.stale_reads;
        let by_lease = self.rng.chance(0.5);
        let checks = if self.early_reads {
            ServingChecks::NONE
        } else {
            ServingChecks::ALL
        };
        let call = async {
            net.wait_resumed(node).await;
            if by_lease && !stale {
                let view = view_of(
                    &raft.metrics().borrow(),
                    node,
                    &contacts,
                    RaftTiming::default().lease(),
                    checks,
                );
                return if view.is_leader {
                    Ok(None)
                } else {
                    Err(RaftError::APIError(
                        openraft::error::CheckIsLeaderError::ForwardToLeader(
                            openraft::error::ForwardToLeader {
                                leader_id: view.leader_id,
                                leader_node: None,
                            },
                        ),
                    ))
                };
            }
            if stale {
                let leads = raft.metrics().borrow().state == ServerState::Leader;
                return if leads {
                    Ok(None)
                } else {
                    Err(RaftError::APIError(
                        openraft::error::CheckIsLeaderError::ForwardToLeader(
                            openraft::error::ForwardToLeader::empty(),
                        ),
                    ))
                };
            }
            // What `ensure_linearizable` does, with the wait on this replica's machine
            // rather than on openraft's metrics (a watch channel: see `disk::Applied`).
            let (read_log_id, _) = raft.get_read_log_id().await?;
            let index = read_log_id.map_or(0, |l| l.index);
            match machine.applied(index).await {
                Ok(()) => Ok(read_log_id),
                Err(_) => Err(RaftError::Fatal(openraft::error::Fatal::Stopped)),
            }
        };
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(_)) => {
                // Read from the incarnation that confirmed it leads (if it still runs).
                match self.cluster.node(node) {
                    Some((g, _, _)) if g == generation => {}
                    _ => return Outcome::Unknown("the replica stopped".into()),
                }
                *guess = Some(node);
                let value = machine.read(|m, _| {
                    m.0.weights()
                        .get(&key(register))
                        .map_or(0, |w| value_of(*w))
                });
                Outcome::Ok(value, None)
            }
            Ok(Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(
                f,
            )))) => {
                *guess = f.leader_id;
                Outcome::Unknown("not the leader".into())
            }
            Ok(Err(e)) => {
                *guess = None;
                Outcome::Unknown(e.to_string())
            }
            Err(_) => {
                *guess = None;
                Outcome::Unknown("timed out".into())
            }
        }
    }
}
