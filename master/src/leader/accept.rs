//! A framework's answer to its offers, on the leader: ACCEPT (the validated [`AcceptCall`]
//! launches tasks on offered resources, each refused launch dropping its tasks with a
//! reason) and DECLINE (the offers go back, what they held refused for a while, capped as
//! in Mesos). Split from [`super::frameworks`], which owns subscriptions and the other calls.

use std::sync::atomic::Ordering;
use std::time::Duration;

use agora_registry::{
    Command, FrameworkId, Offer, OfferId, Rejection, Resources, TaskSpec, TaskState,
};
use tracing::Instrument;

use super::messages::{AgentCommand, FrameworkEvent, StatusReason, TaskStatus};
use super::{Leader, LeaderError, WriteError, MAX_REFUSE};

/// An accept, validated: launch `tasks` on the resources of `offer_ids`, and refuse what
/// is left of them for `refuse`.
#[derive(Clone, Debug)]
pub struct AcceptCall {
    pub offer_ids: Vec<OfferId>,
    pub tasks: Vec<TaskSpec>,
    pub refuse: Duration,
}

impl Leader {
    /// Launches tasks on offered resources. A launch the registry refuses drops each task
    /// (the framework hears TASK_DROPPED with the reason) and is not an error of the call.
    ///
    /// Runs to the end even if the caller goes away: once the launch is committed it must
    /// reach the agent (a framework killed mid-call left its task TASK_STAGING for good).
    pub async fn accept(
        &self,
        framework: &FrameworkId,
        call: AcceptCall,
    ) -> Result<(), LeaderError> {
        let (leader, framework) = (self.clone(), framework.clone());
        tokio::spawn(
            async move { leader.accept_to_the_end(&framework, call).await }.in_current_span(),
        )
        .await
        .map_err(|e| LeaderError::Unavailable(format!("accept: {e}")))?
    }

    async fn accept_to_the_end(
        &self,
        framework: &FrameworkId,
        call: AcceptCall,
    ) -> Result<(), LeaderError> {
        self.require_subscribed(framework)?;
        // The framework's principal (the caller was checked to be it) must be allowed to
        // run each task as its user.
        let principal = self.read(|reg| {
            reg.framework(framework)
                .and_then(|f| f.info.principal.clone())
        });
        for t in &call.tasks {
            self.authorize(
                principal.as_deref(),
                &agora_acl::Action::RunTask { user: &t.user },
            )?;
        }
        let span = tracing::info_span!("accept", framework = %framework, tasks = call.tasks.len());
        // What the offers hold, to return the unused part to the allocator's pool.
        let offers: Vec<Offer> = self.read(|reg| {
            call.offer_ids
                .iter()
                .filter_map(|id| reg.offer(id).cloned())
                .collect()
        });
        let now = self.now_ms();
        let result = self
            .write(Command::LaunchTasks {
                framework_id: framework.clone(),
                offer_ids: call.offer_ids.clone(),
                tasks: call.tasks.clone(),
                now_ms: now,
            })
            .instrument(span.clone())
            .await;
        match result {
            Ok(_) => {
                let _e = span.enter();
                let agent = offers[0].agent_id.clone();
                {
                    let mut soft = self.soft();
                    // The unused part of the offers is declined (with the default 5 s
                    // unless the framework says otherwise), as in Mesos: it comes back to
                    // this framework only with more resources freed beside it.
                    let mut unused = Resources::new();
                    for o in &offers {
                        unused.add(&o.resources);
                    }
                    for t in &call.tasks {
                        unused = unused.saturating_sub(&t.resources);
                    }
                    soft.decline(
                        framework,
                        &agent,
                        unused,
                        refuse_until(now, call.refuse),
                        now,
                    );
                    soft.launched(framework, call.tasks.iter().map(|t| &t.id), now);
                }
                let count = call.tasks.len() as u64;
                let launch = AgentCommand::Launch {
                    framework_id: framework.clone(),
                    tasks: call.tasks,
                };
                let faults = &self.config().faults;
                if faults.launch_twice {
                    let other = self.read(|reg| {
                        reg.agents()
                            .map(|a| a.info.id.clone())
                            .find(|a| *a != agent)
                    });
                    if let Some(other) = other {
                        tracing::warn!(agent = %other, "FAULT launch-twice: sending the launch to a second agent");
                        self.to_agent(&other, launch.clone());
                    }
                }
                let accepts = self.shared.accepts.fetch_add(1, Ordering::Relaxed);
                if faults.drop_launches && accepts % 4 == 3 {
                    tracing::warn!(agent = %agent, "FAULT drop-launches: the launch is never sent");
                } else {
                    self.to_agent(&agent, launch);
                }
                self.metrics().tasks_launched.inc_by(count);
                tracing::info!(agent = %agent, "tasks launched");
                self.wake();
                Ok(())
            }
            Err(WriteError::Rejected(reason)) => {
                // Never run: the whole accept is refused (no task of it launches) and the
                // call says so. Except when this very accept was applied already (the
                // driver retried it after the leader died or was cut off mid-call, and the
                // registry refused the retry for its used offers or for the framework
                // marked disconnected meanwhile): those tasks exist and the call succeeded.
                let applied: Option<Vec<TaskStatus>> = self.read(|reg| {
                    reg.launch_applied(framework, &call.offer_ids, &call.tasks)
                        .then(|| {
                            call.tasks
                                .iter()
                                .filter_map(|s| reg.task(framework, &s.id).map(TaskStatus::of))
                                .collect()
                        })
                });
                if let Some(statuses) = applied {
                    span.in_scope(|| {
                        tracing::info!(%reason, "accept applied already (a retry); answering with its tasks' states")
                    });
                    for status in statuses {
                        self.to_framework(framework, FrameworkEvent::Update(status));
                    }
                    return Ok(());
                }
                span.in_scope(|| tracing::info!(%reason, "accept refused; no task launched"));
                // The offers' resources go back to the pool at once (they used to stay
                // offered until the framework went away).
                let still_offered: Vec<_> = self.read(|reg| {
                    call.offer_ids
                        .iter()
                        .filter(|id| reg.offer(id).is_some_and(|o| &o.framework_id == framework))
                        .cloned()
                        .collect()
                });
                if !still_offered.is_empty() {
                    if let Err(e) = self
                        .write(Command::RemoveOffers { ids: still_offered })
                        .instrument(span.clone())
                        .await
                    {
                        span.in_scope(|| {
                            tracing::warn!(error = %e, "could not withdraw the refused accept's offers")
                        });
                    }
                    self.wake();
                }
                // Frameworks that read updates rather than replies hear it too.
                // A task of it that exists (a stale offer named beside a task id in use)
                // is answered with its own state, not a TASK_DROPPED for a task that runs.
                let existing: Vec<Option<TaskStatus>> = self.read(|reg| {
                    call.tasks
                        .iter()
                        .map(|s| match reason {
                            Rejection::UnknownOffer(_) => {
                                reg.task(framework, &s.id).map(TaskStatus::of)
                            }
                            _ => None,
                        })
                        .collect()
                });
                for (s, existing) in call.tasks.iter().zip(existing) {
                    let status = existing.unwrap_or_else(|| TaskStatus {
                        task_id: s.id.clone(),
                        state: TaskState::TaskDropped,
                        message: format!("launch refused: {reason}"),
                        agent_id: offers.first().map(|o| o.agent_id.clone()),
                        uuid: None,
                        exit_code: None,
                        timestamp_ms: now,
                        reason: Some(refusal_reason(&reason)),
                    });
                    self.to_framework(framework, FrameworkEvent::Update(status));
                }
                let message = format!(
                    "launch refused, no task launched: {reason}; the offers' resources are back in the pool"
                );
                // Too big for the log is the request's fault, not the cluster's state.
                if let Rejection::EntryTooLarge { .. } = reason {
                    return Err(LeaderError::invalid("tasks", message));
                }
                Err(LeaderError::Precondition(message))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Returns offers unused; what they hold is refused for `refuse`.
    pub async fn decline(
        &self,
        framework: &FrameworkId,
        offer_ids: &[OfferId],
        refuse: Duration,
    ) -> Result<(), LeaderError> {
        self.require_subscribed(framework)?;
        // This framework's offers among those named, in one read.
        let mine: Vec<Offer> = self.read(|reg| {
            offer_ids
                .iter()
                .filter_map(|id| reg.offer(id))
                .filter(|o| &o.framework_id == framework)
                .cloned()
                .collect()
        });
        self.write(Command::RemoveOffers {
            ids: mine.iter().map(|o| o.id.clone()).collect(),
        })
        .await?;
        let now = self.now_ms();
        let until = refuse_until(now, refuse);
        let mut soft = self.soft();
        for o in mine {
            soft.decline(framework, &o.agent_id, o.resources, until, now);
        }
        drop(soft);
        self.wake();
        Ok(())
    }
}

/// When a refusal of `refuse` made at `now` ends; capped at a year, as in Mesos (a filter
/// that long is a "never" in practice).
fn refuse_until(now: u64, refuse: Duration) -> u64 {
    now.saturating_add(refuse.min(MAX_REFUSE).as_millis() as u64)
}

/// The reason a refused launch's tasks are dropped with: the offers' fault, or the tasks'.
fn refusal_reason(reason: &Rejection) -> StatusReason {
    match reason {
        Rejection::UnknownOffer(_)
        | Rejection::DuplicateOffer(_)
        | Rejection::OfferNotOwned { .. }
        | Rejection::OffersOnDifferentAgents(..)
        | Rejection::OfferExceedsAgent { .. }
        | Rejection::EmptyOffer(_)
        | Rejection::OfferWrongRole { .. } => StatusReason::InvalidOffers,
        _ => StatusReason::TaskInvalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_capped_at_a_year() {
        assert_eq!(refuse_until(1_000, Duration::from_secs(5)), 6_000);
        assert_eq!(
            refuse_until(0, Duration::from_secs(10 * 365 * 24 * 3600)),
            MAX_REFUSE.as_millis() as u64
        );
    }
}
