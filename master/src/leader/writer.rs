//! The one write path: a command goes through the Raft log and is answered only once
//! committed and applied. Concurrent commands are coalesced into one log entry (a
//! [`CommandBatch`]), because openraft 0.9 pays its per-entry cost once per client write.

use std::sync::Arc;

use agora_registry::{Command, CommandBatch, Rejection};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::metrics::Metrics;
use crate::store::Raft;

/// Most commands in one log entry.
const MAX_BATCH: usize = 1024;
/// Most entries proposed and not yet committed at once; while they are in flight, new
/// commands queue up and form the next, larger batch.
const MAX_IN_FLIGHT: usize = 4;

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

    pub async fn write(&self, command: Command) -> Result<u64, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { command, reply })
            .await
            .map_err(|_| WriteError::Unavailable("replica is shutting down".into()))?;
        rx.await
            .unwrap_or_else(|_| Err(WriteError::Unavailable("replica is shutting down".into())))
    }
}

async fn batch_loop(raft: Raft, metrics: Metrics, mut rx: mpsc::Receiver<Pending>) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            propose(&raft, &metrics, batch).await;
        });
    }
}

/// Proposes one batch and answers each of its callers.
async fn propose(raft: &Raft, metrics: &Metrics, batch: Vec<Pending>) {
    let (commands, replies): (Vec<Command>, Vec<_>) =
        batch.into_iter().map(|p| (p.command, p.reply)).unzip();
    let kinds: Vec<&'static str> = commands.iter().map(Command::kind).collect();
    metrics.batch_size.observe(commands.len() as f64);
    let timer = metrics.write_seconds.start_timer();
    let result = raft.client_write(CommandBatch { commands }).await;
    timer.observe_duration();
    let outcomes: Vec<Result<u64, WriteError>> = match result {
        Ok(resp) => {
            let index = resp.log_id.index;
            resp.data
                .into_iter()
                .map(|r| r.map(|()| index).map_err(WriteError::Rejected))
                .collect()
        }
        Err(e) => {
            let err = match e {
                RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                    WriteError::NotLeader(f.leader_node.map(|n| n.addr))
                }
                RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                    WriteError::Unavailable(e.to_string())
                }
                RaftError::Fatal(e) => WriteError::Unavailable(e.to_string()),
            };
            replies.iter().map(|_| Err(err.clone())).collect()
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
