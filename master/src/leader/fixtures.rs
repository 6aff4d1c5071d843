//! Registries for the leader's unit tests, built through the registry's own apply.

use agora_registry::{
    AgentId, AgentInfo, Command, FrameworkId, FrameworkInfo, Offer, OfferId, Registry, Resources,
    TaskId, TaskSpec, TaskState,
};

/// Agent `a`, framework `f` (failover 1 s), and two tasks on `a`: `live` (TASK_STAGING)
/// and `done` (TASK_FINISHED).
pub fn registry_with_two_tasks() -> (Registry, FrameworkId) {
    let mut reg = Registry::default();
    let f = FrameworkId::new("f").unwrap();
    let a = AgentId::new("a").unwrap();
    let apply = |reg: &mut Registry, c: Command| reg.apply(&c).unwrap();
    apply(
        &mut reg,
        Command::RegisterAgent {
            info: AgentInfo {
                principal: None,
                registration: None,
                id: a.clone(),
                hostname: "h".into(),
                address: "h:1".into(),
                resources: Resources::parse("cpus:4;mem:1024").unwrap(),
                attributes: vec![],
            },
            now_ms: 0,
        },
    );
    apply(
        &mut reg,
        Command::RegisterFramework {
            info: FrameworkInfo {
                user: String::new(),
                id: f.clone(),
                name: "n".into(),
                role: "*".into(),
                principal: None,
                failover_timeout_ms: 1_000,
            },
            now_ms: 0,
        },
    );
    let offer = OfferId::new("o1").unwrap();
    apply(
        &mut reg,
        Command::AddOffers {
            offers: vec![Offer {
                id: offer.clone(),
                framework_id: f.clone(),
                agent_id: a.clone(),
                resources: Resources::parse("cpus:4;mem:1024").unwrap(),
                created_at_ms: 0,
            }],
        },
    );
    let spec = |id: &str| TaskSpec {
        user: String::new(),
        id: TaskId::new(id).unwrap(),
        name: id.into(),
        resources: Resources::parse("cpus:1;mem:64").unwrap(),
        launch: vec![],
    };
    apply(
        &mut reg,
        Command::LaunchTasks {
            framework_id: f.clone(),
            offer_ids: vec![offer],
            tasks: vec![spec("live"), spec("done")],
            now_ms: 0,
        },
    );
    apply(
        &mut reg,
        Command::UpdateTask {
            framework_id: f.clone(),
            task_id: TaskId::new("done").unwrap(),
            state: TaskState::TaskFinished,
            message: None,
            exit_code: Some(0),
            now_ms: 1,
        },
    );
    (reg, f)
}
