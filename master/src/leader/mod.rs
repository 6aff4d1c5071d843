//! The leader layer: coordination on the replica that leads. Agent and framework sessions,
//! the status-update path, reconciliation, the allocation loop, offer and failover expiry,
//! agent health. It takes domain values in and gives domain outcomes and [`LeaderError`]s
//! out, and reads time only from its injected [`Clock`](crate::clock::Clock).
//!
//! What it must not do: import tonic or the generated proto types (the transport converts),
//! decide registry semantics (the registry's pure apply does), or write the registry other
//! than through the [`Writer`] (the Raft log).

mod accept;
mod agents;
mod allocation;
pub mod authz;
pub mod events;
mod expiry;
#[cfg(test)]
mod fixtures;
mod frameworks;
mod health;
mod maintenance;
pub mod messages;
pub use maintenance::Maintenance;
mod sandbox;
pub use sandbox::{sandbox_path, SandboxAccess};
pub mod sessions;
pub mod soft_state;
pub mod views;
mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_registry::{AgentId, Command, FrameworkId, Registry, Rejection};
use tokio::sync::Notify;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::quorum::{LeaderView, Quorum};
use crate::store::RegistryHandle;
use messages::{AgentCommand, FrameworkEvent, SessionEnd};
use sessions::{Delivery, SessionTable};
use soft_state::SoftState;

pub use accept::AcceptCall;
pub use agents::{
    reconcile_plan, AgentSession, Reconciliation, Registered, ReportedTask, SessionReader,
};
pub use allocation::rebuild;
pub use expiry::{frameworks_past_failover, offers_past_timeout};
pub use frameworks::{kills_on_removal, SubscribeCall, Subscription};
pub use health::AgentHealth;
pub use writer::{WriteError, Writer};

/// Seconds between heartbeats on a subscription.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// The longest decline filter (longer `refuse_seconds` are capped to it).
pub const MAX_REFUSE: Duration = Duration::from_secs(365 * 24 * 3600);
/// Default `refuse_seconds` of a decline.
pub const DEFAULT_REFUSE: Duration = Duration::from_secs(5);
/// How long a new leader waits for a registered framework to subscribe again before it
/// counts it as disconnected (and its failover timeout starts).
pub const RESUBSCRIBE_GRACE: Duration = Duration::from_secs(10);
/// Status updates kept for a framework that is not subscribed, until it is (oldest
/// dropped beyond this).
const MAX_UNDELIVERED: usize = 10_000;
/// How long the slow-failover fault keeps a new leader from serving frameworks.
const SLOW_FAILOVER_MS: u64 = 8_000;
/// Commands kept for an agent that is not connected (kills and launches decided at its
/// re-registration).
const MAX_AGENT_PENDING: usize = 100_000;

/// Why the leader did not do what it was asked.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("not the leader")]
    NotLeader(Option<String>),
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The registry refused the command; nothing changed.
    #[error("{0}")]
    Rejected(Rejection),
    /// A bad request, naming the field.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A request that cannot be served in the cluster's present state.
    #[error("{0}")]
    Precondition(String),
    /// The caller may not do this (binding or ACLs); the message says why.
    #[error("{0}")]
    PermissionDenied(String),
}

impl LeaderError {
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> LeaderError {
        LeaderError::Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<WriteError> for LeaderError {
    fn from(e: WriteError) -> LeaderError {
        match e {
            WriteError::Rejected(r) => LeaderError::Rejected(r),
            WriteError::NotLeader(addr) => LeaderError::NotLeader(addr),
            WriteError::Unavailable(msg) => LeaderError::Unavailable(msg),
        }
    }
}

type AgentTable = SessionTable<AgentId, AgentCommand, SessionEnd>;
type FrameworkTable = SessionTable<FrameworkId, FrameworkEvent, SessionEnd>;

struct Shared {
    config: Arc<Config>,
    quorum: Quorum,
    registry: RegistryHandle,
    writer: Writer,
    clock: SharedClock,
    metrics: Metrics,
    agents: AgentTable,
    frameworks: FrameworkTable,
    soft: Mutex<SoftState>,
    health: Mutex<AgentHealth>,
    /// Wakes the allocation loop early (new agent, freed resources, revive).
    wake: Notify,
    /// Accepts served (for the self-test's drop-launches fault).
    accepts: AtomicU64,
    /// When this replica became leader (ms; 0 while not leading), for the self-test's
    /// slow-failover fault.
    leading_since: AtomicU64,
    /// ACLs and the binding rule.
    authz: authz::Authz,
    /// What each committed command changed, for whoever follows the cluster.
    events: events::Broadcast,
    /// When this process started (ms).
    started_ms: u64,
    /// Each connected agent's key for sandbox grants (from its session's hello).
    sandbox_keys: Mutex<std::collections::BTreeMap<AgentId, agora_security::grant::GrantKey>>,
}

/// The leader's coordination, shared by every handler of this replica. It acts only while
/// this replica leads; on a follower its calls answer [`LeaderError::NotLeader`].
#[derive(Clone)]
pub struct Leader {
    shared: Arc<Shared>,
}

impl Leader {
    pub fn new(
        config: Arc<Config>,
        quorum: Quorum,
        registry: RegistryHandle,
        writer: Writer,
        clock: SharedClock,
        metrics: Metrics,
        authz: authz::Authz,
    ) -> Leader {
        let started_ms = clock.now_ms();
        Leader {
            shared: Arc::new(Shared {
                config,
                quorum,
                registry,
                writer,
                clock,
                metrics,
                agents: SessionTable::new(MAX_AGENT_PENDING),
                frameworks: SessionTable::new(MAX_UNDELIVERED),
                soft: Mutex::new(SoftState::default()),
                health: Mutex::new(AgentHealth::default()),
                wake: Notify::new(),
                accepts: AtomicU64::new(0),
                leading_since: AtomicU64::new(0),
                authz,
                events: events::Broadcast::default(),
                started_ms,
                sandbox_keys: Mutex::new(Default::default()),
            }),
        }
    }

    /// Starts the leader's loops (allocation, health); they act only while leading and
    /// end with the returned handles' abort.
    pub fn spawn_loops(&self) -> Vec<tokio::task::JoinHandle<()>> {
        use tracing::Instrument;
        vec![
            tokio::spawn(allocation::run(self.clone()).in_current_span()),
            tokio::spawn(health::run(self.clone()).in_current_span()),
            tokio::spawn(maintenance::run(self.clone()).in_current_span()),
        ]
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    pub fn quorum(&self) -> &Quorum {
        &self.shared.quorum
    }

    /// This replica's view of who leads.
    pub fn view(&self) -> LeaderView {
        self.shared.quorum.view()
    }

    /// `Ok` on the leader; otherwise where the leader is.
    pub fn require_leader(&self) -> Result<LeaderView, LeaderError> {
        // The self-test's stale-reads fault: a leader without its lease still passes.
        let view = self
            .shared
            .quorum
            .view_with(!self.config().faults.stale_reads);
        if view.is_leader {
            Ok(view)
        } else {
            Err(LeaderError::NotLeader(view.leader_address))
        }
    }

    /// This replica leads from now on, or no longer does.
    fn set_leading(&self, leading: bool) {
        let since = if leading { self.now_ms().max(1) } else { 0 };
        self.shared.leading_since.store(since, Ordering::Relaxed);
    }

    /// The self-test's slow-failover fault: a new leader serves no framework for its first
    /// 8 s (a real master never has it on).
    fn slow_failover_gate(&self) -> Result<(), LeaderError> {
        if !self.config().faults.slow_failover {
            return Ok(());
        }
        let now = self.now_ms();
        let since = match self.shared.leading_since.load(Ordering::Relaxed) {
            0 => {
                self.set_leading(true);
                now
            }
            t => t,
        };
        if now.saturating_sub(since) < SLOW_FAILOVER_MS {
            tracing::warn!("FAULT slow-failover: not serving frameworks yet");
            return Err(LeaderError::Unavailable(
                "FAULT slow-failover: the new leader is not serving yet".into(),
            ));
        }
        Ok(())
    }

    /// Runs `f` on the registry as applied on this replica.
    pub fn read<T>(&self, f: impl FnOnce(&Registry) -> T) -> T {
        self.shared.registry.read(f)
    }

    /// Runs `f` on this replica's registry and the index of the last entry applied to it,
    /// read together (the registry is as of that entry).
    pub fn read_applied<T>(&self, f: impl FnOnce(&Registry, u64) -> T) -> T {
        self.shared.registry.read_applied(f)
    }

    fn now_ms(&self) -> u64 {
        self.shared.clock.now_ms()
    }

    /// Proposes `command` and waits until it is committed and applied; its log index.
    /// What it changed is then broadcast ([`events`]) before the caller carries on, so an
    /// event never trails what the caller does next (a launch's TASK_ADDED comes before
    /// the agent can report the task running).
    async fn write(&self, command: Command) -> Result<u64, WriteError> {
        self.submit(command).await?.await
    }

    /// [`Leader::write`] in two steps: returns once `command` has its place in the log's
    /// line (commands reach the log in the order their `submit` returned), with the
    /// future of its outcome.
    async fn submit(
        &self,
        command: Command,
    ) -> Result<impl std::future::Future<Output = Result<u64, WriteError>> + '_, WriteError> {
        let touched = self.touched(&command);
        let submitted = self.shared.writer.submit(command).await?;
        Ok(async move {
            let index = submitted.outcome().await?;
            self.publish(index, &touched);
            Ok(index)
        })
    }

    /// Wakes the allocation loop: something changed that may free resources or let
    /// someone take them.
    fn wake(&self) {
        self.shared.wake.notify_one();
    }

    fn soft(&self) -> std::sync::MutexGuard<'_, SoftState> {
        self.shared.soft.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn health(&self) -> std::sync::MutexGuard<'_, AgentHealth> {
        self.shared.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a command to a connected agent, or keeps it for its next session.
    fn to_agent(&self, agent: &AgentId, command: AgentCommand) {
        self.shared.agents.send(agent, command, |_| true);
    }

    /// Sends an event to a subscribed framework. A status update the master generated
    /// itself is kept for the framework's next subscription if it has none.
    fn to_framework(&self, framework: &FrameworkId, event: FrameworkEvent) -> Delivery {
        self.shared
            .frameworks
            .send(framework, event, FrameworkEvent::keep_while_away)
    }

    /// Number of agents with a live session.
    pub fn connected_agents(&self) -> usize {
        self.shared.agents.len()
    }

    /// Role weights, by role.
    pub fn weights(&self) -> Vec<(String, f64)> {
        self.read(|reg| {
            reg.weights()
                .iter()
                .map(|(role, w)| (role.clone(), *w))
                .collect()
        })
    }

    /// Sets a role's DRF weight.
    pub async fn set_weight(&self, role: String, weight: f64) -> Result<(), LeaderError> {
        self.require_leader()?;
        self.write(Command::SetWeight { role, weight }).await?;
        self.wake();
        Ok(())
    }

    /// Sets several roles' weights in one command: all of them, or none.
    pub async fn set_weights(&self, weights: Vec<(String, f64)>) -> Result<(), LeaderError> {
        self.require_leader()?;
        self.write(Command::SetWeights { weights }).await?;
        self.wake();
        Ok(())
    }

    /// This replica is stopping: end every session now (so clients go elsewhere and the
    /// server's graceful stop does not wait on streams that never end).
    pub fn close_sessions(&self) {
        let why = || SessionEnd::Unavailable("master shutting down".into());
        self.shared.frameworks.end_all(why);
        self.shared.agents.end_all(why);
    }
}
