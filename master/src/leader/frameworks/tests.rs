//! Tests of the leader's framework logic: the kills a removal takes (the refusal caps
//! are tested in `leader/accept.rs`, with the refusals).

use super::*;

#[test]
fn removing_a_framework_kills_its_live_tasks_only() {
    let (reg, f) = super::super::fixtures::registry_with_two_tasks();
    let kills = kills_on_removal(&reg, &f);
    assert_eq!(
        kills,
        vec![(
            AgentId::new("a").unwrap(),
            AgentCommand::Kill {
                framework_id: f.clone(),
                task_id: TaskId::new("live").unwrap(),
                grace_period_ms: 0
            }
        )]
    );
    assert!(kills_on_removal(&reg, &FrameworkId::new("other").unwrap()).is_empty());
}
