//! The optional check of a request against the cluster (issue 15): whether any registered
//! agent could ever hold it (all its resources, unreserved or reserved for the framework's
//! role), and if none could, what is short. [`shortfall`] is pure; the call that fetches
//! the agents is [`MasterClient::shortfall`](crate::MasterClient::shortfall), and
//! [`SchedulerHandle::check_feasible`](crate::SchedulerHandle::check_feasible) turns it into
//! an error a framework can act on before it waits for offers that will never come.

use agora_proto::v1 as pb;

/// What a task asks of one agent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Wanted {
    pub cpus: f64,
    /// MB.
    pub mem: f64,
    /// MB.
    pub disk: f64,
    /// How many ports.
    pub ports: u64,
}

/// Why none of `agents` could ever hold `wanted` for a framework of `role` (counting all
/// of each agent's resources, unreserved or reserved for the role), naming what is short;
/// `None` if one could, or if no agent is registered yet (one may be on its way).
pub fn shortfall(wanted: &Wanted, role: &str, agents: &[pb::AgentState]) -> Option<String> {
    if agents.is_empty() {
        return None;
    }
    let usable = |r: &&pb::Resource| r.role.is_empty() || r.role == "*" || r.role == role;
    let has = |a: &pb::AgentState, name: &str| -> f64 {
        let resources = a
            .info
            .as_ref()
            .map(|i| i.resources.as_slice())
            .unwrap_or(&[]);
        resources
            .iter()
            .filter(usable)
            .filter(|r| r.name == name)
            .map(|r| match &r.value {
                Some(pb::resource::Value::Scalar(x)) => *x,
                Some(pb::resource::Value::Ranges(rs)) => rs
                    .range
                    .iter()
                    .map(|x| (x.end.saturating_sub(x.begin) + 1) as f64)
                    .sum(),
                None => 0.0,
            })
            .sum()
    };
    let needs = [
        ("cpus", wanted.cpus, ""),
        ("mem", wanted.mem, " MB"),
        ("disk", wanted.disk, " MB"),
        ("ports", wanted.ports as f64, ""),
    ];
    let fits = |a: &pb::AgentState| needs.iter().all(|(n, w, _)| *w <= has(a, n) + 1e-9);
    if agents.iter().any(fits) {
        return None;
    }
    let short: Vec<String> = needs
        .iter()
        .filter(|(_, w, _)| *w > 0.0)
        .filter_map(|(n, w, unit)| {
            let most = agents.iter().map(|a| has(a, n)).fold(0.0, f64::max);
            (*w > most + 1e-9)
                .then(|| format!("{n} {w}{unit} (the most any agent has: {most}{unit})"))
        })
        .collect();
    Some(if short.is_empty() {
        format!(
            "no one of the {} agents has it all together (cpus {}, mem {} MB, disk {} MB, ports {})",
            agents.len(),
            wanted.cpus,
            wanted.mem,
            wanted.disk,
            wanted.ports
        )
    } else {
        format!("it asks for {}", short.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(resources: &[(&str, &str, f64)]) -> pb::AgentState {
        pb::AgentState {
            info: Some(pb::AgentInfo {
                resources: resources
                    .iter()
                    .map(|(name, role, x)| pb::Resource {
                        name: name.to_string(),
                        role: role.to_string(),
                        value: Some(pb::resource::Value::Scalar(*x)),
                    })
                    .collect(),
                ..Default::default()
            }),
            active: true,
            ..Default::default()
        }
    }

    fn wanted(cpus: f64, mem: f64) -> Wanted {
        Wanted {
            cpus,
            mem,
            disk: 0.0,
            ports: 0,
        }
    }

    #[test]
    fn a_request_no_agent_could_ever_hold_names_what_is_short() {
        let agents = [
            agent(&[("cpus", "", 4.0), ("mem", "", 1024.0)]),
            agent(&[("cpus", "", 1.0), ("mem", "", 8192.0)]),
        ];
        assert_eq!(shortfall(&wanted(2.0, 512.0), "*", &agents), None);
        let why = shortfall(&wanted(100.0, 512.0), "*", &agents).unwrap();
        assert!(
            why.contains("cpus 100 (the most any agent has: 4)"),
            "{why}"
        );
        assert!(!why.contains("mem"), "{why}");
        // Each fits somewhere, never together.
        let why = shortfall(&wanted(2.0, 4096.0), "*", &agents).unwrap();
        assert!(why.contains("no one of the 2 agents"), "{why}");
        // Resources reserved for another role do not count; for its own they do.
        let reserved = [agent(&[("cpus", "gpu-team", 8.0), ("mem", "", 1024.0)])];
        assert!(shortfall(&wanted(2.0, 512.0), "*", &reserved).is_some());
        assert_eq!(shortfall(&wanted(2.0, 512.0), "gpu-team", &reserved), None);
        // No agent yet: one may come.
        assert_eq!(shortfall(&wanted(100.0, 1.0), "*", &[]), None);
    }
}
