//! The agent's one conversion layer between domain values and generated proto types.

use agora_proto::v1 as pb;
use agora_registry::resources::Ranges;
use agora_registry::{Resource, Resources, Scalar, Value};

use crate::config::AgentConfig;

pub fn resources_to_proto(res: &Resources) -> Vec<pb::Resource> {
    res.iter()
        .map(|r| pb::Resource {
            name: r.name.clone(),
            role: r.role.clone().unwrap_or_default(),
            value: Some(match &r.value {
                Value::Scalar(s) => pb::resource::Value::Scalar(s.as_f64()),
                Value::Ranges(rs) => pb::resource::Value::Ranges(pb::Ranges {
                    range: rs
                        .pairs()
                        .iter()
                        .map(|&(begin, end)| pb::Range { begin, end })
                        .collect(),
                }),
            }),
        })
        .collect()
}

/// The registration this agent sends.
pub fn agent_info(config: &AgentConfig, agent_id: Option<&str>) -> pb::AgentInfo {
    pb::AgentInfo {
        id: agent_id.unwrap_or_default().to_string(),
        hostname: config.hostname.clone(),
        address: config.advertise.clone(),
        resources: resources_to_proto(&config.resources),
        attributes: config
            .attributes
            .iter()
            .map(|(k, v)| pb::Attribute {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
    }
}

/// Resources of a task to launch; refuses negative, NaN and infinite amounts and bad
/// names or roles, naming the problem.
pub fn resources_from_proto(items: &[pb::Resource]) -> Result<Resources, String> {
    let mut out = Vec::with_capacity(items.len());
    for r in items {
        let value = match &r.value {
            Some(pb::resource::Value::Scalar(x)) => Value::Scalar(
                Scalar::from_f64(*x).map_err(|e| format!("resource {}: {e}", r.name))?,
            ),
            Some(pb::resource::Value::Ranges(rs)) => Value::Ranges(
                Ranges::new(rs.range.iter().map(|r| (r.begin, r.end)))
                    .map_err(|e| format!("resource {}: {e}", r.name))?,
            ),
            None => return Err(format!("resource {}: no amount", r.name)),
        };
        out.push(Resource {
            name: r.name.clone(),
            role: (!r.role.is_empty() && r.role != "*").then(|| r.role.clone()),
            value,
        });
    }
    Resources::from_checked(out).map_err(|e| e.to_string())
}
