//! `agora agents`: the table of agents with their state (active, unreachable, deactivated,
//! draining with what is left, drained), and operators' maintenance of one:
//! `drain ID [--grace D] [--mark-gone]`, `deactivate ID`, `reactivate ID`, `gone ID`.

use std::process::ExitCode;

use agora_driver::MasterClient;
use agora_proto::v1 as pb;
use agora_proto::v1::operator_client::OperatorClient;
use clap::Subcommand;

/// An operator's maintenance of one agent.
#[derive(Subcommand, Debug)]
pub enum AgentsAction {
    /// Drain an agent: no more offers; its tasks are killed once the grace period has
    /// passed (their frameworks get TASK_KILLED); then it is drained.
    Drain {
        id: String,
        /// How long its tasks may run on before they are killed, e.g. "10m" (default: 0,
        /// killed at once).
        #[arg(long, value_parser = humantime::parse_duration)]
        grace: Option<std::time::Duration>,
        /// Mark it gone once drained.
        #[arg(long)]
        mark_gone: bool,
    },
    /// Take an agent out of the pool: no more offers; its tasks run on.
    Deactivate { id: String },
    /// Put an agent back in the pool (ends a drain).
    Reactivate { id: String },
    /// Mark an agent gone for good: its tasks become TASK_GONE_BY_OPERATOR and it can
    /// never register again.
    Gone { id: String },
}

/// Carries out `action`; prints one line saying what was committed.
pub async fn maintain(client: &MasterClient, action: AgentsAction) -> anyhow::Result<ExitCode> {
    let (id, done) = match &action {
        AgentsAction::Drain {
            id,
            grace,
            mark_gone,
        } => (
            id.clone(),
            format!(
                "agent {id} draining: its tasks are killed {}{}",
                match grace {
                    Some(g) if !g.is_zero() => format!("in {}", humantime::format_duration(*g)),
                    _ => "now".to_string(),
                },
                if *mark_gone {
                    "; it is marked gone once drained"
                } else {
                    ""
                }
            ),
        ),
        AgentsAction::Deactivate { id } => (
            id.clone(),
            format!("agent {id} deactivated: no more offers"),
        ),
        AgentsAction::Reactivate { id } => (id.clone(), format!("agent {id} reactivated")),
        AgentsAction::Gone { id } => (
            id.clone(),
            format!("agent {id} marked gone: it can never register again"),
        ),
    };
    let result = client
        .call(|ch| {
            let id = id.clone();
            let action = match &action {
                AgentsAction::Drain {
                    grace, mark_gone, ..
                } => Call::Drain(pb::DrainAgentRequest {
                    agent_id: id.clone(),
                    grace_period_ms: grace.map_or(0, |g| g.as_millis() as u64),
                    mark_gone: *mark_gone,
                }),
                AgentsAction::Deactivate { .. } => Call::Deactivate(id.clone()),
                AgentsAction::Reactivate { .. } => Call::Reactivate(id.clone()),
                AgentsAction::Gone { .. } => Call::Gone(id.clone()),
            };
            async move {
                let mut rpc = OperatorClient::new(ch);
                let req = |agent_id: String| pb::AgentMaintenanceRequest { agent_id };
                match action {
                    Call::Drain(r) => rpc.drain_agent(r).await,
                    Call::Deactivate(id) => rpc.deactivate_agent(req(id)).await,
                    Call::Reactivate(id) => rpc.reactivate_agent(req(id)).await,
                    Call::Gone(id) => rpc.mark_agent_gone(req(id)).await,
                }
            }
        })
        .await;
    match result {
        Ok(_) => {
            println!("{done}");
            Ok(ExitCode::SUCCESS)
        }
        // Refused by the cluster (unknown agent, not allowed): one line, exit 2.
        Err(e) if e.status().is_some() => {
            eprintln!("agora: {e}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    }
}

enum Call {
    Drain(pb::DrainAgentRequest),
    Deactivate(String),
    Reactivate(String),
    Gone(String),
}

/// What an agent is, for people: `active`, `unreachable`, `deactivated`, `draining (N
/// tasks, killed in 30s)`, `draining (N tasks, killing)`, `drained`, `drained, to be gone`.
pub fn state_text(a: &pb::AgentState, now_ms: u64) -> String {
    match &a.drain {
        Some(d) if d.state == "DRAINED" => {
            if d.mark_gone {
                "drained, to be gone".into()
            } else {
                "drained".into()
            }
        }
        Some(d) => {
            let when = if now_ms >= d.deadline_ms {
                "killing".to_string()
            } else {
                let left = std::time::Duration::from_secs((d.deadline_ms - now_ms).div_ceil(1000));
                format!("killed in {}", humantime::format_duration(left))
            };
            format!("draining ({} tasks, {when})", a.live_tasks)
        }
        None if !a.active => "unreachable".into(),
        None if a.deactivated => "deactivated".into(),
        None => "active".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_as_what_an_operator_needs() {
        let mut a = pb::AgentState {
            active: true,
            ..Default::default()
        };
        assert_eq!(state_text(&a, 0), "active");
        a.deactivated = true;
        assert_eq!(state_text(&a, 0), "deactivated");
        a.drain = Some(pb::AgentDrain {
            state: "DRAINING".into(),
            started_ms: 0,
            deadline_ms: 30_000,
            mark_gone: true,
        });
        a.live_tasks = 3;
        assert_eq!(state_text(&a, 500), "draining (3 tasks, killed in 30s)");
        assert_eq!(state_text(&a, 30_000), "draining (3 tasks, killing)");
        a.drain.as_mut().unwrap().state = "DRAINED".into();
        assert_eq!(state_text(&a, 40_000), "drained, to be gone");
        a.drain = None;
        a.active = false;
        assert_eq!(state_text(&a, 0), "unreachable");
    }
}
