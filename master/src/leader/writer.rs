//! The one write path: a command goes through the Raft log and is answered only once
//! committed and applied. Concurrent commands are coalesced into one log entry (a
//! [`CommandBatch`]), because openraft 0.9 pays its per-entry cost once per client write.
//! Commands reach the log in the order they were handed over ([`Writer::submit`]): batches
//! are handed to Raft by the one batching task, in order; only the waits for their outcomes
//! run concurrently.
//!
//! Entries are bounded: a batch holds at most [`MAX_ENTRY_BYTES`] of serialized commands,
//! and a single command larger than that is refused before the log
//! ([`Rejection::EntryTooLarge`]). openraft gives an AppendEntries one heartbeat interval
//! (50 ms) to complete, so an entry too big to ship in that time would keep its followers
//! behind for good.

use std::sync::Arc;

use agora_registry::{Command, CommandBatch, Rejection};
use openraft::error::ClientWriteError;
use openraft::raft::ClientWriteResult;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::metrics::Metrics;
use crate::store::Raft;

/// Most commands in one log entry.
const MAX_BATCH: usize = 1024;
/// Most bytes of serialized commands in one log entry.
pub const MAX_ENTRY_BYTES: usize = 2 * 1024 * 1024;
/// Most entries proposed and not yet committed at once; while they are in flight, new
/// commands queue up and form the next, larger batch.
const MAX_IN_FLIGHT: usize = 4;
/// The longest a proposal waits for Raft's answer (see `propose`).
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

struct Pending {
    command: Command,
    reply: oneshot::Sender<Result<u64, WriteError>>,
}

/// The single path from handlers to the Raft log: coalesces concurrent commands into
/// batches and proposes each batch as one entry.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Pending>,
}

impl Writer {
    /// Starts the batching task for `raft`.
    pub fn start(raft: Raft, metrics: Metrics) -> Writer {
        let (tx, rx) = mpsc::channel(64 * 1024);
        tokio::spawn(batch_loop(raft, metrics, rx));
        Writer { tx }
    }

    /// Proposes `command` and waits until it is committed and applied; its log index.
    pub async fn write(&self, command: Command) -> Result<u64, WriteError> {
        self.submit(command).await?.outcome().await
    }

    /// Hands `command` to the log and returns once it has its place in line: commands
    /// reach the log in the order their `submit` returned, so a caller may submit the next
    /// command of a sequence before the previous one is committed.
    pub async fn submit(&self, command: Command) -> Result<Submitted, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { command, reply })
            .await
            .map_err(|_| WriteError::Unavailable("replica is shutting down".into()))?;
        Ok(Submitted(rx))
    }
}

/// A command in line for the log ([`Writer::submit`]).
pub struct Submitted(oneshot::Receiver<Result<u64, WriteError>>);

impl Submitted {
    /// Its log index once committed and applied, or why not.
    pub async fn outcome(self) -> Result<u64, WriteError> {
        self.0
            .await
            .unwrap_or_else(|_| Err(WriteError::Unavailable("replica is shutting down".into())))
    }
}

async fn batch_loop(raft: Raft, metrics: Metrics, mut rx: mpsc::Receiver<Pending>) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // A command taken from the queue that did not fit the last batch.
    let mut carried: Option<(Pending, usize)> = None;
    loop {
        let first = match carried.take() {
            Some(c) => c,
            None => match rx.recv().await {
                Some(p) => match admit(p, &metrics) {
                    Some(c) => c,
                    None => continue,
                },
                None => return,
            },
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.1;
        let mut batch = vec![first.0];
        while batch.len() < MAX_BATCH {
            let Ok(p) = rx.try_recv() else { break };
            let Some((p, size)) = admit(p, &metrics) else {
                continue;
            };
            if bytes + size > MAX_ENTRY_BYTES {
                carried = Some((p, size));
                break;
            }
            bytes += size;
            batch.push(p);
        }
        // Handed to Raft here, in the order taken from the queue (a spawned task each
        // could reach Raft out of order); only the wait for the outcome is spawned.
        let proposal = propose(&raft, &metrics, batch).await;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            proposal.answer(&metrics).await;
        });
    }
}

/// A command with its size in the log, or None (and its caller answered) if it alone
/// exceeds [`MAX_ENTRY_BYTES`].
fn admit(p: Pending, metrics: &Metrics) -> Option<(Pending, usize)> {
    let size = serialized_size(&p.command);
    if size <= MAX_ENTRY_BYTES {
        return Some((p, size));
    }
    metrics
        .commands
        .with_label_values(&[p.command.kind(), "too_large"])
        .inc();
    let _ = p
        .reply
        .send(Err(WriteError::Rejected(Rejection::EntryTooLarge {
            bytes: size,
            max: MAX_ENTRY_BYTES,
        })));
    None
}

/// The bytes `command` takes in a log entry (its JSON), counted without keeping them.
fn serialized_size(command: &Command) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, command) {
        Ok(()) => count.0,
        // Unserializable: the log store will say so; nothing to bound here.
        Err(_) => 0,
    }
}

/// One batch handed to Raft, whose callers are answered by [`Proposal::answer`].
struct Proposal {
    replies: Vec<oneshot::Sender<Result<u64, WriteError>>>,
    kinds: Vec<&'static str>,
    timer: prometheus::HistogramTimer,
    submitted: Result<oneshot::Receiver<ClientWriteResult<crate::store::TypeConfig>>, WriteError>,
}

/// Hands one batch to Raft (returning once Raft's core has it in line).
async fn propose(raft: &Raft, metrics: &Metrics, batch: Vec<Pending>) -> Proposal {
    let (commands, replies): (Vec<Command>, Vec<_>) =
        batch.into_iter().map(|p| (p.command, p.reply)).unzip();
    let kinds: Vec<&'static str> = commands.iter().map(Command::kind).collect();
    metrics.batch_size.observe(commands.len() as f64);
    crate::interleave::point().await;
    let timer = metrics.write_seconds.start_timer();
    let submitted = raft
        .client_write_ff(CommandBatch { commands })
        .await
        .map_err(|e| WriteError::Unavailable(e.to_string()));
    Proposal {
        replies,
        kinds,
        timer,
        submitted,
    }
}

impl Proposal {
    /// Waits for the batch's outcome and answers each of its callers.
    async fn answer(self, metrics: &Metrics) {
        let Proposal {
            replies,
            kinds,
            timer,
            submitted,
        } = self;
        let outcomes: Vec<Result<u64, WriteError>> = match submitted {
            Err(e) => replies.iter().map(|_| Err(e.clone())).collect(),
            Ok(rx) => {
                // openraft 0.9 answers a proposal when its index is applied or its entry
                // truncated; a replica that was cut off while leading and caught up through a
                // snapshot never applies those indexes one by one, and the proposal waits for
                // good (found by the simulation: four such waits held every permit, and the
                // replica, leader again, could write nothing). So a proposal gets
                // WRITE_TIMEOUT; after that its outcome is unknown.
                let result = tokio::time::timeout(WRITE_TIMEOUT, rx).await;
                timer.observe_duration();
                match result {
                    Err(_) => {
                        tracing::warn!(
                            commands = replies.len(),
                            "no answer from Raft within {} s; the write's outcome is unknown",
                            WRITE_TIMEOUT.as_secs()
                        );
                        let e = WriteError::Unavailable(format!(
                            "no answer from Raft within {} s; the write may or may not have committed",
                            WRITE_TIMEOUT.as_secs()
                        ));
                        replies.iter().map(|_| Err(e.clone())).collect()
                    }
                    Ok(Err(_)) => {
                        let e = WriteError::Unavailable(
                            "Raft stopped before answering; the write may or may not have committed"
                                .into(),
                        );
                        replies.iter().map(|_| Err(e.clone())).collect()
                    }
                    Ok(Ok(Ok(resp))) => {
                        let index = resp.log_id.index;
                        resp.data
                            .into_iter()
                            .map(|r| r.map(|()| index).map_err(WriteError::Rejected))
                            .collect()
                    }
                    Ok(Ok(Err(e))) => {
                        let err = match e {
                            ClientWriteError::ForwardToLeader(f) => {
                                WriteError::NotLeader(f.leader_node.map(|n| n.addr))
                            }
                            ClientWriteError::ChangeMembershipError(e) => {
                                WriteError::Unavailable(e.to_string())
                            }
                        };
                        replies.iter().map(|_| Err(err.clone())).collect()
                    }
                }
            }
        };
        for ((reply, outcome), kind) in replies.into_iter().zip(outcomes).zip(kinds) {
            let label = match &outcome {
                Ok(_) => "committed",
                Err(WriteError::Rejected(_)) => "rejected",
                Err(WriteError::NotLeader(_)) => "not_leader",
                Err(WriteError::Unavailable(_)) => "unavailable",
            };
            metrics.commands.with_label_values(&[kind, label]).inc();
            let _ = reply.send(outcome);
        }
    }
}

/// Why a write did not commit.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WriteError {
    #[error("rejected: {0}")]
    Rejected(Rejection),
    #[error("not the leader")]
    NotLeader(Option<String>),
    #[error("unavailable: {0}")]
    Unavailable(String),
}
