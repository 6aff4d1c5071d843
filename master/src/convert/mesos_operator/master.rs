//! This master's own settings and figures in Mesos' operator API: role weights
//! (GET_WEIGHTS, and UPDATE_WEIGHTS as the gRPC Operator's requests), flags by Mesos'
//! names, Mesos' master metrics and GET_MASTER.

use agora_mesos_proto::v1 as mesos;
use agora_mesos_proto::v1::master as op;
use agora_proto::v1 as pb;
use agora_registry::TaskState;
use tonic::Status;

use super::{secs, MasterFacts};
use crate::config::Config;
use crate::convert::mesos::master_info;
use crate::convert::{invalid, limits};
use crate::leader::views::ClusterCounts;

pub fn get_weights(weights: Vec<(String, f64)>) -> op::response::GetWeights {
    op::response::GetWeights {
        weight_infos: weights
            .into_iter()
            .map(|(role, weight)| mesos::WeightInfo {
                weight,
                role: Some(role),
            })
            .collect(),
    }
}

/// UPDATE_WEIGHTS as the gRPC Operator's requests; a missing member or role is refused
/// naming its Mesos field.
pub fn update_weights_from_mesos(call: &op::Call) -> Result<Vec<pb::SetWeightRequest>, Status> {
    let u = call
        .update_weights
        .as_ref()
        .ok_or_else(|| invalid("update_weights", "missing"))?;
    limits::count(
        "update_weights.weight_infos",
        u.weight_infos.len(),
        MAX_WEIGHTS_PER_CALL,
    )?;
    if u.weight_infos.is_empty() {
        return Err(invalid("update_weights.weight_infos", "empty"));
    }
    u.weight_infos
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let role = w.role.clone().ok_or_else(|| {
                invalid(&format!("update_weights.weight_infos[{i}].role"), "missing")
            })?;
            Ok(pb::SetWeightRequest {
                role,
                weight: w.weight,
            })
        })
        .collect()
}

/// DRAIN_AGENT, DEACTIVATE_AGENT, REACTIVATE_AGENT and MARK_AGENT_GONE: the agent id, the
/// Mesos field naming it, and what to do. A missing member is refused naming its field; a
/// negative grace period too.
pub fn maintenance_from_mesos(
    call: &op::Call,
) -> Result<(String, &'static str, crate::leader::Maintenance), Status> {
    use crate::leader::Maintenance;
    use op::call::Type;
    let missing = |field: &str| invalid(field, "missing");
    match call.r#type() {
        Type::DrainAgent => {
            let d = call
                .drain_agent
                .as_ref()
                .ok_or_else(|| missing("drain_agent"))?;
            let grace = match &d.max_grace_period {
                None => std::time::Duration::ZERO,
                Some(g) => {
                    let (secs, nanos) = (g.seconds.unwrap_or(0), g.nanos.unwrap_or(0));
                    if secs < 0 || !(0..1_000_000_000).contains(&nanos) {
                        return Err(invalid(
                            "drain_agent.max_grace_period",
                            "must be a non-negative duration",
                        ));
                    }
                    std::time::Duration::new(secs as u64, nanos as u32)
                }
            };
            let mark_gone = d.mark_gone.as_ref().and_then(|b| b.value).unwrap_or(false);
            Ok((
                d.agent_id.value.clone(),
                "drain_agent.agent_id.value",
                Maintenance::Drain { grace, mark_gone },
            ))
        }
        Type::DeactivateAgent => {
            let d = call
                .deactivate_agent
                .as_ref()
                .ok_or_else(|| missing("deactivate_agent"))?;
            Ok((
                d.agent_id.value.clone(),
                "deactivate_agent.agent_id.value",
                Maintenance::Deactivate,
            ))
        }
        Type::ReactivateAgent => {
            let d = call
                .reactivate_agent
                .as_ref()
                .ok_or_else(|| missing("reactivate_agent"))?;
            Ok((
                d.agent_id.value.clone(),
                "reactivate_agent.agent_id.value",
                Maintenance::Reactivate,
            ))
        }
        Type::MarkAgentGone => {
            let d = call
                .mark_agent_gone
                .as_ref()
                .ok_or_else(|| missing("mark_agent_gone"))?;
            Ok((
                d.agent_id.value.clone(),
                "mark_agent_gone.agent_id.value",
                Maintenance::MarkGone,
            ))
        }
        other => Err(invalid(
            "type",
            format!("{} is not an agent maintenance call", other.as_str_name()),
        )),
    }
}

/// Most roles one UPDATE_WEIGHTS may set.
pub const MAX_WEIGHTS_PER_CALL: usize = 1_000;

/// A refusal of UPDATE_WEIGHTS' requests, naming the Mesos field (`weights[2].weight` is
/// `update_weights.weight_infos[2].weight`; a lone `role` is the first's).
pub fn update_weights_fields(status: Status) -> Status {
    let message = status.message();
    let renamed = if let Some(rest) = message.strip_prefix("weights[") {
        format!("update_weights.weight_infos[{rest}")
    } else if message.starts_with("role:") || message.starts_with("weight:") {
        format!("update_weights.weight_infos[0].{message}")
    } else {
        return status;
    };
    Status::new(status.code(), renamed)
}

/// Mesos' names for this master's flags.
pub fn flags(config: &Config) -> Vec<(String, String)> {
    let secs = |d: std::time::Duration| format!("{}secs", d.as_secs_f64());
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let mut out = vec![
        ("id".to_string(), config.id.to_string()),
        ("advertise".into(), config.advertise.clone()),
        (
            "peers".into(),
            config
                .peers
                .iter()
                .map(|(id, a)| format!("{id}={a}"))
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("work_dir".into(), config.work_dir.display().to_string()),
        (
            "allocation_interval".into(),
            secs(config.allocation_interval),
        ),
        (
            "offer_timeout".into(),
            config.offer_timeout.map(secs).unwrap_or_default(),
        ),
        ("agent_ping_timeout".into(), secs(config.agent_ping_timeout)),
        (
            "max_agent_ping_timeouts".into(),
            config.max_agent_ping_timeouts.to_string(),
        ),
        (
            "max_completed_tasks_per_framework".into(),
            config
                .retention
                .max_completed_tasks_per_framework
                .to_string(),
        ),
        (
            "max_completed_frameworks".into(),
            config.retention.max_completed_frameworks.to_string(),
        ),
        ("join".into(), config.join.to_string()),
        (
            "authenticate_http_readonly".into(),
            config.security.authenticate_http_readonly.to_string(),
        ),
        ("insecure".into(), config.security.insecure.to_string()),
        ("tls".into(), config.security.tls.is_some().to_string()),
    ];
    for (name, value) in [
        ("credentials", path(&config.security.credentials)),
        ("acls", path(&config.security.acls)),
    ] {
        if let Some(v) = value {
            out.push((name.into(), v));
        }
    }
    out
}

pub fn get_flags(config: &Config) -> op::response::GetFlags {
    op::response::GetFlags {
        flags: flags(config)
            .into_iter()
            .map(|(name, value)| mesos::Flag {
                name,
                value: Some(value),
            })
            .collect(),
    }
}

/// Mesos' master metrics, by Mesos' names. Counts of tasks by state are of the tasks the
/// registry keeps (retention bounds the finished ones), not counters since start. The
/// cluster's figures are the leader's: a follower reports only `master/elected` (0) and its
/// uptime.
pub fn metrics(
    facts: &MasterFacts,
    now_ms: u64,
    counts: Option<&ClusterCounts>,
) -> Vec<(String, f64)> {
    let mut out = vec![
        (
            "master/elected".to_string(),
            if facts.elected { 1.0 } else { 0.0 },
        ),
        (
            "master/uptime_secs".to_string(),
            secs(now_ms.saturating_sub(facts.started_ms)),
        ),
    ];
    let Some(c) = counts else {
        return out;
    };
    let mut put = |name: &str, value: f64| out.push((format!("master/{name}"), value));
    put("slaves_active", c.agents_active as f64);
    put("slaves_inactive", 0.0);
    put("slaves_connected", c.agents_connected as f64);
    put(
        "slaves_disconnected",
        c.agents_active.saturating_sub(c.agents_connected) as f64,
    );
    put("slaves_unreachable", c.agents_unreachable as f64);
    put("frameworks_active", c.frameworks_active as f64);
    put("frameworks_inactive", c.frameworks_disconnected as f64);
    put("frameworks_connected", c.frameworks_active as f64);
    put("frameworks_disconnected", c.frameworks_disconnected as f64);
    put("outstanding_offers", c.outstanding_offers as f64);
    for state in TaskState::ALL {
        if state == TaskState::TaskUnknown {
            continue;
        }
        let name = state.name().to_ascii_lowercase();
        put(
            &name.replacen("task_", "tasks_", 1),
            c.tasks_in(state) as f64,
        );
    }
    for resource in ["cpus", "mem", "disk", "gpus"] {
        let total = c.total.scalar_total(resource).as_f64();
        let used = c.used.scalar_total(resource).as_f64();
        put(&format!("{resource}_total"), total);
        put(&format!("{resource}_used"), used);
        put(
            &format!("{resource}_percent"),
            if total > 0.0 { used / total } else { 0.0 },
        );
    }
    out
}

pub fn get_metrics(metrics: Vec<(String, f64)>) -> op::response::GetMetrics {
    op::response::GetMetrics {
        metrics: metrics
            .into_iter()
            .map(|(name, value)| mesos::Metric {
                name,
                value: Some(value),
            })
            .collect(),
    }
}

pub fn get_master(facts: &MasterFacts) -> op::response::GetMaster {
    op::response::GetMaster {
        master_info: Some(master_info(facts.id, &facts.address)),
        start_time: Some(secs(facts.started_ms)),
        elected_time: (facts.elected_ms > 0).then(|| secs(facts.elected_ms)),
    }
}
