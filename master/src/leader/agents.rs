//! Agents, on the leader: registration, their sessions, status updates (acknowledged only
//! once committed), and reconciliation when an agent registers again.

use std::collections::BTreeMap;

use agora_registry::{
    AgentId, AgentInfo, AgentStatus, Command, FrameworkId, RegistrationOrder, Registry, Rejection,
    TaskId, TaskSpec, TaskState,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::{Stream, StreamExt};
use tracing::Instrument;

use super::messages::{AgentCommand, AgentReport, AgentUpdate, SessionEnd, StatusReason};
use super::sessions::{Outbound, Serial};
use super::{Leader, LeaderError, WriteError};

/// Status updates of one agent session being recorded at once (more wait in the stream).
const MAX_UPDATES_IN_FLIGHT: usize = 256;

/// A task as an agent reports it when it registers.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportedTask {
    pub framework_id: FrameworkId,
    pub task_id: TaskId,
    pub state: TaskState,
}

/// An agent's open session: the commands to send it, and the loop that reads what it says.
pub struct AgentSession {
    pub outbound: mpsc::Receiver<Outbound<AgentCommand, SessionEnd>>,
    pub reader: SessionReader,
}

/// Reads one agent session's reports until the agent or the leader ends it.
pub struct SessionReader {
    leader: Leader,
    agent: AgentId,
    serial: Serial,
    tx: mpsc::Sender<Outbound<AgentCommand, SessionEnd>>,
    span: tracing::Span,
}

/// What reconciling an agent's report with the registry decides.
#[derive(Debug, Default, PartialEq)]
pub struct Reconciliation {
    /// Registry tasks still TASK_STAGING that the agent does not report: the launch never
    /// reached it, so it is sent again.
    pub relaunch: Vec<(FrameworkId, TaskSpec)>,
    /// Other live registry tasks on it that it does not report: TASK_LOST.
    pub lost: Vec<(FrameworkId, TaskId)>,
    /// Tasks whose state the agent reports differently (e.g. after TASK_UNREACHABLE).
    pub update: Vec<(FrameworkId, TaskId, TaskState)>,
    /// Tasks it runs that the registry does not hold as live: killed.
    pub kill: Vec<(FrameworkId, TaskId)>,
}

/// Compares what an agent reports with what the registry holds for it.
pub fn reconcile_plan(
    reg: &Registry,
    agent: &AgentId,
    reported: &[ReportedTask],
) -> Reconciliation {
    let mut report: BTreeMap<(&FrameworkId, &TaskId), TaskState> = reported
        .iter()
        .map(|t| ((&t.framework_id, &t.task_id), t.state))
        .collect();
    let mut plan = Reconciliation::default();
    for t in reg
        .tasks()
        .filter(|t| &t.agent_id == agent && !t.state.is_terminal())
    {
        match report.remove(&(&t.framework_id, &t.id)) {
            // Committed but never delivered (the session or the leader went down in
            // between, or the agent was cut off and marked unreachable before it got it):
            // the agent reports every task it ever received, so it never ran, and the
            // launch recorded in the registry is sent again (once: from now on the agent
            // reports it).
            None if t.state == TaskState::TaskStaging
                || (t.state == TaskState::TaskUnreachable
                    && t.unreachable_from == Some(TaskState::TaskStaging)) =>
            {
                plan.relaunch.push((
                    t.framework_id.clone(),
                    TaskSpec {
                        id: t.id.clone(),
                        name: t.name.clone(),
                        resources: t.resources.clone(),
                        launch: t.launch.clone(),
                        user: t.user.clone(),
                    },
                ))
            }
            None => plan.lost.push((t.framework_id.clone(), t.id.clone())),
            Some(s) if s != t.state => plan.update.push((t.framework_id.clone(), t.id.clone(), s)),
            Some(_) => {}
        }
    }
    // What is left in the report is not live in the registry.
    plan.kill = report
        .into_iter()
        .filter(|(_, s)| !s.is_terminal())
        .map(|((f, t), _)| (f.clone(), t.clone()))
        .collect();
    plan.kill.sort();
    plan
}

/// A committed registration.
#[derive(Clone, Debug)]
pub struct Registered {
    pub agent_id: AgentId,
    /// The log index of the registration.
    pub log_index: u64,
    /// The term of the leader that registered it.
    pub term: u64,
}

impl Leader {
    /// Registers an agent (or registers it again) and reconciles the tasks it reports.
    ///
    /// Runs to the end even if the caller goes away, so a committed registration is
    /// always reconciled.
    pub async fn register_agent(
        &self,
        info: AgentInfo,
        reported: Vec<ReportedTask>,
    ) -> Result<Registered, LeaderError> {
        let leader = self.clone();
        tokio::spawn(
            async move { leader.register_to_the_end(info, reported).await }.in_current_span(),
        )
        .await
        .map_err(|e| LeaderError::Unavailable(format!("register: {e}")))?
    }

    async fn register_to_the_end(
        &self,
        mut info: AgentInfo,
        reported: Vec<ReportedTask>,
    ) -> Result<Registered, LeaderError> {
        if self.config().faults.inflate_resources {
            tracing::warn!(agent = %info.id, "FAULT inflate-resources: registering twice its resources");
            info.resources = info.resources.plus(&info.resources);
        }
        let span =
            tracing::info_span!("register_agent", agent = %info.id, term = tracing::field::Empty);
        async {
            let view = self.require_leader()?;
            tracing::Span::current().record("term", view.term);
            let id = info.id.clone();
            let order = info.registration;
            let register = |info: AgentInfo| Command::RegisterAgent {
                info,
                now_ms: self.now_ms(),
            };
            let log_index = match self.write(register(info.clone())).await {
                // It came back smaller than the tasks the registry still counts on it: the
                // tasks it no longer runs are settled first (TASK_LOST), then it registers.
                Err(WriteError::Rejected(Rejection::AgentResourcesBelowUsed { .. })) => {
                    tracing::info!(
                        "agent came back smaller than its recorded tasks; reconciling first"
                    );
                    self.reconcile_agent(&id, order, &reported).await;
                    self.write(register(info)).await?
                }
                Err(WriteError::Rejected(r @ Rejection::StaleRegistration { .. })) => {
                    tracing::info!(reason = %r, "registration overtaken by a later one; refused");
                    return Err(LeaderError::Rejected(r));
                }
                other => other?,
            };
            tracing::info!(log_index, "agent registered");
            self.reconcile_agent(&id, order, &reported).await;
            self.wake();
            Ok(Registered {
                agent_id: id,
                log_index,
                term: view.term,
            })
        }
        .instrument(span)
        .await
    }

    /// Carries out [`reconcile_plan`] for an agent that registered (again) with `order`;
    /// nothing when a later registration of it was applied meanwhile (its report is newer
    /// than this one, and that registration reconciles).
    async fn reconcile_agent(
        &self,
        agent: &AgentId,
        order: Option<RegistrationOrder>,
        reported: &[ReportedTask],
    ) {
        let overtaken = self.read(|reg| {
            let last = reg.agent(agent).and_then(|a| a.info.registration);
            matches!((order, last), (Some(mine), Some(last)) if last > mine)
        });
        if overtaken {
            tracing::info!("a later registration was applied meanwhile; its report reconciles");
            return;
        }
        let plan = self.read(|reg| reconcile_plan(reg, agent, reported));
        for (framework_id, spec) in plan.relaunch {
            tracing::info!(framework = %framework_id, task = %spec.id, "launch never reached the agent: sending it again");
            self.to_agent(
                agent,
                AgentCommand::Launch {
                    framework_id,
                    tasks: vec![spec],
                },
            );
        }
        let now = self.now_ms();
        let lost = plan.lost.into_iter().map(|(f, t)| {
            tracing::info!(task = %t, "task unknown to the agent after it registered again: TASK_LOST");
            (f, t, TaskState::TaskLost, format!("agent {agent} registered again without this task"))
        });
        let changed = plan.update.into_iter().map(|(f, t, s)| {
            (
                f,
                t,
                s,
                "reported by the agent when it registered again".to_string(),
            )
        });
        for (framework_id, task_id, state, message) in lost.chain(changed) {
            let written = self
                .write(Command::UpdateTask {
                    framework_id: framework_id.clone(),
                    task_id: task_id.clone(),
                    state,
                    message: Some(message),
                    exit_code: None,
                    now_ms: now,
                })
                .await;
            if written.is_ok() {
                self.announce(&framework_id, &task_id, StatusReason::Reconciliation);
            }
        }
        for (framework_id, task_id) in plan.kill {
            tracing::info!(task = %task_id, "task unknown to the registry: killing it");
            self.to_agent(
                agent,
                AgentCommand::Kill {
                    framework_id,
                    task_id,
                    grace_period_ms: 0,
                },
            );
        }
    }

    /// Opens a registered agent's session (replacing an older one of the same agent).
    pub fn open_agent_session(
        &self,
        agent: &AgentId,
        address: &str,
    ) -> Result<AgentSession, LeaderError> {
        let view = self.require_leader()?;
        let registered =
            self.read(|reg| reg.agent(agent).map(|a| (a.info.address.clone(), a.status)));
        match registered {
            None => {
                return Err(LeaderError::Precondition(format!(
                    "agent {agent} is not registered; register first"
                )))
            }
            Some((registered, _)) if registered != address => {
                return Err(LeaderError::Precondition(format!(
                    "agent {agent} is registered from {registered}, not {address}"
                )))
            }
            Some((_, AgentStatus::Unreachable { .. })) => {
                return Err(LeaderError::Precondition(format!(
                    "agent {agent} is marked unreachable; register again"
                )))
            }
            Some(_) => {}
        }
        let (tx, rx) = mpsc::channel(1024);
        let serial = self
            .shared
            .agents
            .open(agent, tx.clone(), [], SessionEnd::AgentReplaced);
        self.health().seen(agent, self.now_ms());
        self.metrics().agent_sessions.inc();
        let span = tracing::info_span!("agent_session", agent = %agent, term = view.term);
        span.in_scope(|| tracing::info!("agent connected"));
        Ok(AgentSession {
            outbound: rx,
            reader: SessionReader {
                leader: self.clone(),
                agent: agent.clone(),
                serial,
                tx,
                span,
            },
        })
    }
}

impl SessionReader {
    /// Reads the agent's reports until it disconnects or the session fails.
    ///
    /// Updates of different tasks are recorded concurrently: each waits for its own
    /// commit, and the leader batches concurrent writes into shared log entries. A task's
    /// own updates (a resent copy included) are pipelined in arrival order: each is handed
    /// to the log only after the one before it ([`Turn`]), so without waiting for its
    /// commit, and is passed on and acknowledged only after the one before it was, so the
    /// framework gets them in order.
    pub async fn run(self, mut inbound: impl Stream<Item = AgentReport> + Unpin + Send) {
        let span = self.span.clone();
        async move {
            let SessionReader {
                leader,
                agent,
                serial,
                tx,
                ..
            } = self;
            let mut updates = tokio::task::JoinSet::new();
            // Per task, the turn of its newest update still being handled (numbered, so
            // that its end forgets it only if no later update took it over).
            let mut last_turn: BTreeMap<(FrameworkId, TaskId), (u64, TurnAfter)> = BTreeMap::new();
            let mut numbered = 0u64;
            let spawn = |updates: &mut tokio::task::JoinSet<_>,
                         u: AgentUpdate,
                         after: Option<TurnAfter>,
                         number: u64| {
                let (leader, agent, tx) = (leader.clone(), agent.clone(), tx.clone());
                let (turn, next) = Turn::after(after);
                updates.spawn(
                    async move {
                        let key = (u.framework_id.clone(), u.task_id.clone());
                        (
                            key,
                            number,
                            leader.record_update(&agent, serial, u, &tx, turn).await,
                        )
                    }
                    .in_current_span(),
                );
                next
            };
            loop {
                tokio::select! {
                    // In the order written: a deterministic simulation replays the same choice.
                    biased;
                    report = inbound.next(), if updates.len() < MAX_UPDATES_IN_FLIGHT => {
                        let Some(report) = report else { break };
                        leader.health().seen(&agent, leader.now_ms());
                        match report {
                            AgentReport::Pong => {}
                            AgentReport::Update(u) if leader.config().faults.unordered_updates => {
                                numbered += 1;
                                spawn(&mut updates, u, None, numbered);
                            }
                            AgentReport::Update(u) => {
                                let key = (u.framework_id.clone(), u.task_id.clone());
                                let after = last_turn.remove(&key).map(|(_, t)| t);
                                numbered += 1;
                                let next = spawn(&mut updates, u, after, numbered);
                                last_turn.insert(key, (numbered, next));
                            }
                            AgentReport::ExecutorMessage(mut m) => {
                                m.agent_id = agent.clone();
                                leader.executor_message(m);
                            }
                            AgentReport::Invalid { field, reason } => {
                                let _ = tx.send(Err(SessionEnd::Invalid { field, reason })).await;
                                break;
                            }
                        }
                    }
                    Some(done) = updates.join_next(), if !updates.is_empty() => {
                        match done {
                            Ok((key, number, Ok(()))) => {
                                if last_turn.get(&key).is_some_and(|(n, _)| *n == number) {
                                    last_turn.remove(&key);
                                }
                            }
                            Ok((_, _, Err(end))) => {
                                let _ = tx.send(Err(end)).await;
                                break;
                            }
                            // A handler that panicked: end the session; the agent
                            // connects again and resends what is unacknowledged.
                            Err(_) => break,
                        }
                    }
                }
            }
            leader.shared.agents.close(&agent, serial);
            leader.metrics().agent_sessions.dec();
            tracing::info!("agent session ended");
        }
        .instrument(span)
        .await
    }
}

/// What the next update of a task waits for from the one before it: that update handed to
/// the log (or found not to need it), then passed on and acknowledged. A sender dropped
/// without a word (a failed or abandoned update) fails the waiter: its session is ending.
pub(super) struct TurnAfter {
    submitted: oneshot::Receiver<()>,
    done: oneshot::Receiver<()>,
}

/// An update's place among its task's updates ([`SessionReader::run`]).
pub(super) struct Turn {
    after: Option<TurnAfter>,
    submitted: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Sender<()>>,
}

impl Turn {
    /// The turn after `after` (first in line with `None`), and what its successor waits on.
    fn after(after: Option<TurnAfter>) -> (Turn, TurnAfter) {
        let (submitted_tx, submitted) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        (
            Turn {
                after,
                submitted: Some(submitted_tx),
                done: Some(done_tx),
            },
            TurnAfter { submitted, done },
        )
    }

    /// Waits until the update before has been handed to the log.
    async fn wait_submitted(&mut self) -> Result<(), SessionEnd> {
        match self.after.as_mut() {
            Some(a) => (&mut a.submitted).await.map_err(|_| earlier_failed()),
            None => Ok(()),
        }
    }

    /// This update has been handed to the log (or needs no entry).
    fn submitted(&mut self) {
        if let Some(tx) = self.submitted.take() {
            let _ = tx.send(());
        }
    }

    /// Waits until the update before has been passed on and acknowledged.
    async fn wait_done(&mut self) -> Result<(), SessionEnd> {
        match self.after.take() {
            Some(a) => a.done.await.map_err(|_| earlier_failed()),
            None => Ok(()),
        }
    }

    /// This update has been passed on and acknowledged.
    fn done(&mut self) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(());
        }
    }
}

fn earlier_failed() -> SessionEnd {
    SessionEnd::Unavailable("an earlier update of the task was not recorded".into())
}

/// A rejection the master acknowledges anyway: the update can never apply.
fn ack_anyway(r: &Rejection) -> bool {
    matches!(
        r,
        Rejection::UnknownTask(_) | Rejection::TaskAlreadyTerminal { .. }
    )
}

impl Leader {
    /// Records a status update in the registry, then acknowledges it. An update that can
    /// never apply (unknown task, or a different terminal state already recorded) is
    /// acknowledged too, so the agent stops resending it; the registry keeps its first
    /// terminal state.
    ///
    /// Only the agent's current session (`serial`) passes updates on: a copy still in
    /// hand when its session was replaced is dropped, so an update written slowly (a
    /// commit held up by a partition) cannot reach the framework after the later ones
    /// the agent sent again on its new session. The agent sends it again there if no
    /// acknowledgement came.
    async fn record_update(
        &self,
        agent: &AgentId,
        serial: Serial,
        u: AgentUpdate,
        tx: &mpsc::Sender<Outbound<AgentCommand, SessionEnd>>,
        mut turn: Turn,
    ) -> Result<(), SessionEnd> {
        let result = self
            .record_update_in_turn(agent, serial, u, tx, &mut turn)
            .await;
        if result.is_ok() {
            turn.done();
        }
        result
    }

    async fn record_update_in_turn(
        &self,
        agent: &AgentId,
        serial: Serial,
        u: AgentUpdate,
        tx: &mpsc::Sender<Outbound<AgentCommand, SessionEnd>>,
        turn: &mut Turn,
    ) -> Result<(), SessionEnd> {
        let current = |leader: &Leader| {
            leader.config().faults.stale_session_updates
                || leader.shared.agents.is_current(agent, serial)
        };
        if !current(self) {
            return Err(SessionEnd::AgentReplaced);
        }
        let (framework_id, task_id, state) = (&u.framework_id, &u.task_id, u.state);
        let span = tracing::debug_span!("status_update", framework = %framework_id, task = %task_id, state = %state);
        // The registry records the task's end as soon as the agent reports it (so its
        // resources are free), while the framework still gets every update in order.
        let (recorded, message, exit_code) = match u.latest_state {
            Some(latest) if latest != state && latest.is_terminal() => (latest, None, None),
            _ => (
                state,
                (!u.message.is_empty()).then(|| u.message.clone()),
                u.exit_code,
            ),
        };
        crate::interleave::point().await;
        turn.wait_submitted().await?;
        // Already recorded (a terminal state learnt early from `latest_state`, or an update
        // sent again): nothing to commit, only to pass on.
        let recorded_already = self.read(|reg| {
            reg.task(framework_id, task_id).is_some_and(|t| {
                t.state.is_terminal()
                    && t.state == recorded
                    && (message.is_none() || t.message.is_some())
                    && (exit_code.is_none() || t.exit_code.is_some())
            })
        });
        let outcome = if recorded_already {
            "known"
        } else {
            "recorded"
        };
        self.metrics()
            .status_updates
            .with_label_values(&[outcome])
            .inc();
        let result = if recorded_already {
            turn.submitted();
            Ok(0)
        } else {
            let command = Command::UpdateTask {
                framework_id: framework_id.clone(),
                task_id: task_id.clone(),
                state: recorded,
                message,
                exit_code,
                now_ms: self.now_ms(),
            };
            async {
                let outcome = self.submit(command).await?;
                turn.submitted();
                outcome.await
            }
            .instrument(span)
            .await
        };
        turn.wait_done().await?;
        if !current(self) {
            tracing::info!(agent = %agent, task = %task_id, uuid = %u.uuid, "session replaced while its update was written; not passed on");
            return Err(SessionEnd::AgentReplaced);
        }
        match result {
            Ok(_) => {
                if recorded.is_terminal() {
                    self.wake();
                }
                if state == TaskState::TaskRunning || state.is_terminal() {
                    let waited = self.soft().running(framework_id, task_id, self.now_ms());
                    if let (Some(ms), TaskState::TaskRunning) = (waited, state) {
                        self.metrics().launch_to_running.observe(ms as f64 / 1000.0);
                    }
                }
                // The framework acknowledges it (its ACKNOWLEDGE goes to the agent); only
                // when no framework will does the master acknowledge it itself.
                if !self.forward_update(&u, agent) {
                    return Ok(());
                }
            }
            // A task the registry no longer keeps (finished, beyond the retention): its
            // update still goes to its framework, in order, and the framework acknowledges
            // it (naming the agent); only with no framework does the master acknowledge.
            Err(WriteError::Rejected(Rejection::UnknownTask(_)))
                if !self.forward_update(&u, agent) =>
            {
                return Ok(());
            }
            Err(WriteError::Rejected(r)) if ack_anyway(&r) => {
                tracing::warn!(agent = %agent, task = %task_id, reason = %r, "status update cannot apply; acknowledged");
            }
            Err(WriteError::Rejected(r)) => return Err(SessionEnd::Rejected(r)),
            Err(WriteError::NotLeader(addr)) => return Err(SessionEnd::NotLeader(addr)),
            Err(WriteError::Unavailable(msg)) => return Err(SessionEnd::Unavailable(msg)),
        }
        let ack = AgentCommand::Ack {
            framework_id: u.framework_id,
            task_id: u.task_id,
            uuid: u.uuid,
        };
        tx.send(Ok(ack))
            .await
            .map_err(|_| SessionEnd::Unavailable("session closed".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciliation_relaunches_staging_loses_missing_updates_changed_and_kills_unknown() {
        let (reg, f) = super::super::fixtures::registry_with_two_tasks();
        let agent = AgentId::new("a").unwrap();
        let t = |s: &str| TaskId::new(s).unwrap();
        // "live" is TASK_STAGING in the registry and not reported: relaunched.
        let plan = reconcile_plan(&reg, &agent, &[]);
        assert_eq!(plan.relaunch.len(), 1);
        assert_eq!(plan.relaunch[0].1.id, t("live"));
        assert!(plan.lost.is_empty() && plan.update.is_empty() && plan.kill.is_empty());
        // Reported running: its state is updated; a task it runs that the registry does
        // not hold as live is killed; one it reports ended is left alone.
        let reported = [
            ReportedTask {
                framework_id: f.clone(),
                task_id: t("live"),
                state: TaskState::TaskRunning,
            },
            ReportedTask {
                framework_id: f.clone(),
                task_id: t("stray"),
                state: TaskState::TaskRunning,
            },
            ReportedTask {
                framework_id: f.clone(),
                task_id: t("old"),
                state: TaskState::TaskFinished,
            },
        ];
        let plan = reconcile_plan(&reg, &agent, &reported);
        assert!(plan.relaunch.is_empty() && plan.lost.is_empty());
        assert_eq!(
            plan.update,
            vec![(f.clone(), t("live"), TaskState::TaskRunning)]
        );
        assert_eq!(plan.kill, vec![(f.clone(), t("stray"))]);
    }

    #[test]
    fn a_launch_cut_off_by_a_partition_is_sent_again_not_lost() {
        let (mut reg, f) = super::super::fixtures::registry_with_two_tasks();
        let agent = AgentId::new("a").unwrap();
        let t = |s: &str| TaskId::new(s).unwrap();
        // "live" is still TASK_STAGING when its agent is marked unreachable.
        reg.apply(&Command::MarkAgentUnreachable {
            id: agent.clone(),
            now_ms: 5,
        })
        .unwrap();
        let task = reg.task(&f, &t("live")).unwrap();
        assert_eq!(task.state, TaskState::TaskUnreachable);
        assert_eq!(task.unreachable_from, Some(TaskState::TaskStaging));
        // Back without it: its launch is sent again, it is not lost.
        let plan = reconcile_plan(&reg, &agent, &[]);
        assert_eq!(plan.relaunch.len(), 1);
        assert_eq!(plan.relaunch[0].1.id, t("live"));
        assert!(plan.lost.is_empty());
        // A task that had started before the partition and is gone is lost.
        reg.apply(&Command::RegisterAgent {
            info: reg.agent(&agent).unwrap().info.clone(),
            now_ms: 6,
        })
        .unwrap();
        reg.apply(&Command::UpdateTask {
            framework_id: f.clone(),
            task_id: t("live"),
            state: TaskState::TaskRunning,
            message: None,
            exit_code: None,
            now_ms: 7,
        })
        .unwrap();
        assert_eq!(reg.task(&f, &t("live")).unwrap().unreachable_from, None);
        reg.apply(&Command::MarkAgentUnreachable {
            id: agent.clone(),
            now_ms: 8,
        })
        .unwrap();
        let plan = reconcile_plan(&reg, &agent, &[]);
        assert!(plan.relaunch.is_empty());
        assert_eq!(plan.lost, vec![(f, t("live"))]);
    }
}
