//! The registry's apply function, tested without any network or storage.

use agora_registry::*;
use proptest::prelude::*;

fn res(s: &str) -> Resources {
    Resources::parse(s).unwrap()
}
fn aid(s: &str) -> AgentId {
    AgentId::new(s).unwrap()
}
fn fid(s: &str) -> FrameworkId {
    FrameworkId::new(s).unwrap()
}
fn oid(s: &str) -> OfferId {
    OfferId::new(s).unwrap()
}
fn tid(s: &str) -> TaskId {
    TaskId::new(s).unwrap()
}

fn agent(id: &str, resources: &str) -> Command {
    Command::RegisterAgent {
        info: AgentInfo {
            principal: None,
            id: aid(id),
            hostname: format!("{id}.local"),
            address: format!("{id}:5051"),
            resources: res(resources),
            attributes: vec![("rack".into(), "r1".into())],
        },
        now_ms: 1,
    }
}

fn framework(id: &str, role: &str) -> Command {
    Command::RegisterFramework {
        info: FrameworkInfo {
            user: String::new(),
            id: fid(id),
            name: format!("{id}-name"),
            role: role.into(),
            principal: None,
            failover_timeout_ms: 60_000,
        },
        now_ms: 2,
    }
}

fn offer(id: &str, f: &str, a: &str, r: &str) -> Offer {
    Offer {
        id: oid(id),
        framework_id: fid(f),
        agent_id: aid(a),
        resources: res(r),
        created_at_ms: 3,
    }
}

fn launch(f: &str, offers: &[&str], tasks: &[(&str, &str)]) -> Command {
    Command::LaunchTasks {
        framework_id: fid(f),
        offer_ids: offers.iter().map(|o| oid(o)).collect(),
        tasks: tasks
            .iter()
            .map(|(id, r)| TaskSpec {
                user: String::new(),
                id: tid(id),
                name: id.to_string(),
                resources: res(r),
                launch: vec![],
            })
            .collect(),
        now_ms: 4,
    }
}

fn update(f: &str, t: &str, state: TaskState) -> Command {
    Command::UpdateTask {
        framework_id: fid(f),
        task_id: tid(t),
        state,
        message: None,
        exit_code: None,
        now_ms: 5,
    }
}

/// Applies `cmd` and asserts that a rejection left the registry unchanged.
fn apply(reg: &mut Registry, cmd: &Command) -> CommandResult {
    let before = reg.clone();
    let result = reg.apply(cmd);
    if result.is_err() {
        assert_eq!(&before, reg, "rejected {cmd:?} changed the registry");
    }
    reg.check_invariants().unwrap();
    result
}

fn cluster() -> Registry {
    let mut reg = Registry::new();
    apply(&mut reg, &agent("a1", "cpus:4;mem:1024;ports:[100-199]")).unwrap();
    apply(&mut reg, &agent("a2", "cpus:2;cpus(web):2;mem:512")).unwrap();
    apply(&mut reg, &framework("f1", "web")).unwrap();
    apply(&mut reg, &framework("f2", "batch")).unwrap();
    reg
}

#[test]
fn agent_registration_and_address_guard() {
    let mut reg = cluster();
    assert_eq!(reg.agents().count(), 2);
    // Re-registration from the same address keeps the first registration time.
    apply(&mut reg, &agent("a1", "cpus:4;mem:1024;ports:[100-199]")).unwrap();
    assert_eq!(reg.agent(&aid("a1")).unwrap().registered_at_ms, 1);
    // Another address claiming the id is refused.
    let mut imposter = agent("a1", "cpus:1");
    if let Command::RegisterAgent { info, .. } = &mut imposter {
        info.address = "evil:5051".into();
    }
    assert!(matches!(
        apply(&mut reg, &imposter),
        Err(Rejection::AgentAddressMismatch { .. })
    ));
}

fn with_principal(mut cmd: Command, principal: Option<&str>) -> Command {
    match &mut cmd {
        Command::RegisterAgent { info, .. } => info.principal = principal.map(str::to_string),
        Command::RegisterFramework { info, .. } => info.principal = principal.map(str::to_string),
        _ => unreachable!(),
    }
    cmd
}

#[test]
fn agents_and_frameworks_stay_bound_to_their_principal() {
    let mut reg = Registry::new();
    let a = || agent("a1", "cpus:4");
    apply(&mut reg, &with_principal(a(), Some("agent-a"))).unwrap();
    // Another principal cannot take the agent over; its own can register it again, and
    // a registration naming no principal keeps the binding.
    assert!(matches!(
        apply(&mut reg, &with_principal(a(), Some("evil"))),
        Err(Rejection::PrincipalMismatch { .. })
    ));
    apply(&mut reg, &with_principal(a(), Some("agent-a"))).unwrap();
    apply(&mut reg, &with_principal(a(), None)).unwrap();
    assert_eq!(
        reg.agent(&aid("a1")).unwrap().info.principal.as_deref(),
        Some("agent-a")
    );
    // An agent registered without a principal (no authentication) is bound by the first
    // principal that registers it.
    apply(&mut reg, &agent("a2", "cpus:1")).unwrap();
    apply(&mut reg, &with_principal(agent("a2", "cpus:1"), Some("p"))).unwrap();
    assert!(apply(&mut reg, &with_principal(agent("a2", "cpus:1"), Some("q"))).is_err());

    let f = || framework("f1", "web");
    apply(&mut reg, &with_principal(f(), Some("team-a"))).unwrap();
    let err = apply(&mut reg, &with_principal(f(), Some("team-b"))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "framework f1 is bound to principal \"team-a\", not \"team-b\""
    );
    apply(&mut reg, &with_principal(f(), None)).unwrap();
    assert_eq!(
        reg.framework(&fid("f1")).unwrap().info.principal.as_deref(),
        Some("team-a")
    );
}

#[test]
fn offers_respect_free_resources_and_reservations() {
    let mut reg = cluster();
    apply(
        &mut reg,
        &Command::AddOffers {
            offers: vec![
                offer("o1", "f1", "a1", "cpus:3"),
                offer("o2", "f2", "a1", "cpus:1"),
            ],
        },
    )
    .unwrap();
    assert_eq!(reg.agent_free(&aid("a1")), res("mem:1024;ports:[100-199]"));
    // Over-offering in one batch is refused as a whole.
    let err = apply(
        &mut reg,
        &Command::AddOffers {
            offers: vec![
                offer("o3", "f2", "a2", "cpus:1"),
                offer("o4", "f2", "a1", "cpus:0.1"),
            ],
        },
    );
    assert!(matches!(err, Err(Rejection::OfferExceedsAgent { .. })));
    assert!(reg.offer(&oid("o3")).is_none());
    // A reservation for `web` is offered only to a `web` framework.
    assert!(matches!(
        apply(
            &mut reg,
            &Command::AddOffers {
                offers: vec![offer("o5", "f2", "a2", "cpus(web):1")]
            }
        ),
        Err(Rejection::OfferWrongRole { .. })
    ));
    apply(
        &mut reg,
        &Command::AddOffers {
            offers: vec![offer("o5", "f1", "a2", "cpus(web):2;cpus:1")],
        },
    )
    .unwrap();
    // Duplicate ids, empty offers, unknown parties.
    for bad in [
        offer("o5", "f1", "a2", "cpus:1"),
        offer("o6", "f1", "a2", ""),
        offer("o7", "nope", "a2", "cpus:1"),
        offer("o8", "f1", "nope", "cpus:1"),
    ] {
        assert!(apply(&mut reg, &Command::AddOffers { offers: vec![bad] }).is_err());
    }
}

#[test]
fn launch_consumes_offers_and_returns_the_rest() {
    let mut reg = cluster();
    apply(
        &mut reg,
        &Command::AddOffers {
            offers: vec![offer("o1", "f2", "a1", "cpus:4;mem:1024")],
        },
    )
    .unwrap();
    apply(
        &mut reg,
        &launch("f2", &["o1"], &[("t1", "cpus:1;mem:100"), ("t2", "cpus:1")]),
    )
    .unwrap();
    assert!(reg.offer(&oid("o1")).is_none(), "offer consumed");
    assert_eq!(reg.agent_allocation(&aid("a1")).used, res("cpus:2;mem:100"));
    assert_eq!(
        reg.agent_free(&aid("a1")),
        res("cpus:2;mem:924;ports:[100-199]")
    );
    let t1 = reg.task(&fid("f2"), &tid("t1")).unwrap();
    assert_eq!(t1.state, TaskState::TaskStaging);
    assert_eq!(t1.agent_id, aid("a1"));
    // The same offer cannot be used twice.
    assert_eq!(
        apply(&mut reg, &launch("f2", &["o1"], &[("t3", "cpus:1")])),
        Err(Rejection::UnknownOffer(oid("o1")))
    );
}

#[test]
fn launch_rejections_change_nothing() {
    let mut reg = cluster();
    apply(
        &mut reg,
        &Command::AddOffers {
            offers: vec![
                offer("o1", "f2", "a1", "cpus:2"),
                offer("o2", "f1", "a1", "cpus:1"),
                offer("o3", "f2", "a2", "cpus:1"),
            ],
        },
    )
    .unwrap();
    assert!(matches!(
        apply(&mut reg, &launch("f2", &["o1"], &[("t1", "cpus:3")])),
        Err(Rejection::TasksExceedOffers { .. })
    ));
    assert!(matches!(
        apply(&mut reg, &launch("f2", &["o2"], &[("t1", "cpus:1")])),
        Err(Rejection::OfferNotOwned { .. })
    ));
    assert!(matches!(
        apply(&mut reg, &launch("f2", &["o1", "o3"], &[("t1", "cpus:1")])),
        Err(Rejection::OffersOnDifferentAgents(..))
    ));
    assert!(matches!(
        apply(
            &mut reg,
            &launch("f2", &["o1"], &[("t1", "cpus:1"), ("t1", "cpus:1")])
        ),
        Err(Rejection::DuplicateTask(_))
    ));
    assert!(matches!(
        apply(&mut reg, &launch("f2", &["o1"], &[("t1", "")])),
        Err(Rejection::TaskWithoutResources(_))
    ));
    assert_eq!(
        apply(&mut reg, &launch("f2", &[], &[("t1", "cpus:1")])),
        Err(Rejection::NoOffers)
    );
    // A finished task's id is never reused within its framework (at-most-once).
    apply(&mut reg, &launch("f2", &["o1"], &[("t1", "cpus:1")])).unwrap();
    apply(&mut reg, &update("f2", "t1", TaskState::TaskFinished)).unwrap();
    assert!(matches!(
        apply(&mut reg, &launch("f2", &["o3"], &[("t1", "cpus:1")])),
        Err(Rejection::DuplicateTask(_))
    ));
}

#[test]
fn task_updates_release_resources_once_and_terminal_is_final() {
    let mut reg = cluster();
    apply(
        &mut reg,
        &Command::AddOffers {
            offers: vec![offer("o1", "f2", "a1", "cpus:1")],
        },
    )
    .unwrap();
    apply(&mut reg, &launch("f2", &["o1"], &[("t1", "cpus:1")])).unwrap();
    apply(&mut reg, &update("f2", "t1", TaskState::TaskRunning)).unwrap();
    assert_eq!(reg.agent_allocation(&aid("a1")).used, res("cpus:1"));
    apply(&mut reg, &update("f2", "t1", TaskState::TaskFinished)).unwrap();
    assert!(reg.agent_allocation(&aid("a1")).used.is_empty());
    // A retried identical terminal update is accepted and changes nothing.
    apply(&mut reg, &update("f2", "t1", TaskState::TaskFinished)).unwrap();
    assert!(matches!(
        apply(&mut reg, &update("f2", "t1", TaskState::TaskRunning)),
        Err(Rejection::TaskAlreadyTerminal { .. })
    ));
    assert!(matches!(
        apply(&mut reg, &update("f2", "nope", TaskState::TaskRunning)),
        Err(Rejection::UnknownTask(_))
    ));
}

#[test]
fn unreachable_agent_leaves_the_pool_and_comes_back() {
    let mut reg = cluster();
    apply(
        &mut reg,
        &Command::AddOffers {
            offers: vec![
                offer("o1", "f2", "a1", "cpus:2"),
                offer("o2", "f1", "a1", "cpus:1"),
            ],
        },
    )
    .unwrap();
    apply(&mut reg, &launch("f2", &["o1"], &[("t1", "cpus:1")])).unwrap();
    apply(
        &mut reg,
        &Command::MarkAgentUnreachable {
            id: aid("a1"),
            now_ms: 9,
        },
    )
    .unwrap();
    assert_eq!(reg.offers().count(), 0);
    assert_eq!(
        reg.task(&fid("f2"), &tid("t1")).unwrap().state,
        TaskState::TaskUnreachable
    );
    assert!(matches!(
        apply(
            &mut reg,
            &Command::AddOffers {
                offers: vec![offer("o3", "f1", "a1", "cpus:1")]
            }
        ),
        Err(Rejection::AgentNotActive(_))
    ));
    // The task still holds its resources: it may be running out there.
    assert_eq!(reg.agent_allocation(&aid("a1")).used, res("cpus:1"));
    apply(&mut reg, &agent("a1", "cpus:4;mem:1024;ports:[100-199]")).unwrap();
    assert_eq!(reg.agent(&aid("a1")).unwrap().status, AgentStatus::Active);
    apply(&mut reg, &update("f2", "t1", TaskState::TaskRunning)).unwrap();
    apply(
        &mut reg,
        &Command::RemoveAgent {
            id: aid("a1"),
            now_ms: 10,
        },
    )
    .unwrap();
    assert_eq!(
        reg.task(&fid("f2"), &tid("t1")).unwrap().state,
        TaskState::TaskGone
    );
}

#[test]
fn frameworks_disconnect_and_are_removed() {
    let mut reg = cluster();
    apply(
        &mut reg,
        &Command::AddOffers {
            offers: vec![offer("o1", "f1", "a2", "cpus(web):2")],
        },
    )
    .unwrap();
    apply(&mut reg, &launch("f1", &["o1"], &[("t1", "cpus(web):1")])).unwrap();
    apply(
        &mut reg,
        &Command::AddOffers {
            offers: vec![offer("o2", "f1", "a2", "cpus:1")],
        },
    )
    .unwrap();
    apply(
        &mut reg,
        &Command::DisconnectFramework {
            id: fid("f1"),
            now_ms: 7,
        },
    )
    .unwrap();
    assert_eq!(
        reg.offers().count(),
        0,
        "a disconnected framework holds no offers"
    );
    assert!(matches!(
        reg.framework(&fid("f1")).unwrap().status,
        FrameworkStatus::Disconnected { since_ms: 7 }
    ));
    // Failover: the same id re-registers in time and keeps its task.
    apply(&mut reg, &framework("f1", "web")).unwrap();
    assert_eq!(
        reg.task(&fid("f1"), &tid("t1")).unwrap().state,
        TaskState::TaskStaging
    );
    assert!(matches!(
        apply(&mut reg, &framework("f1", "other")),
        Err(Rejection::FrameworkRoleMismatch { .. })
    ));
    apply(
        &mut reg,
        &Command::RemoveFramework {
            id: fid("f1"),
            now_ms: 8,
        },
    )
    .unwrap();
    assert!(reg.framework(&fid("f1")).is_none());
    assert_eq!(
        reg.task(&fid("f1"), &tid("t1")).unwrap().state,
        TaskState::TaskKilled
    );
    assert!(reg.agent_allocation(&aid("a2")).used.is_empty());
}

#[test]
fn weights_are_validated() {
    let mut reg = Registry::new();
    apply(
        &mut reg,
        &Command::SetWeight {
            role: "web".into(),
            weight: 2.0,
        },
    )
    .unwrap();
    assert_eq!(reg.weight("web"), 2.0);
    assert_eq!(reg.weight("other"), 1.0);
    for w in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            apply(
                &mut reg,
                &Command::SetWeight {
                    role: "web".into(),
                    weight: w
                }
            ),
            Err(Rejection::BadWeight(_))
        ));
    }
    assert!(matches!(
        apply(
            &mut reg,
            &Command::SetWeight {
                role: "-x".into(),
                weight: 1.0
            }
        ),
        Err(Rejection::BadRole(_))
    ));
}

#[test]
fn snapshot_round_trip_rebuilds_indexes() {
    let mut reg = cluster();
    apply(
        &mut reg,
        &Command::AddOffers {
            offers: vec![offer("o1", "f2", "a1", "cpus:2;mem:10")],
        },
    )
    .unwrap();
    apply(&mut reg, &launch("f2", &["o1"], &[("t1", "cpus:1")])).unwrap();
    apply(
        &mut reg,
        &Command::AddOffers {
            offers: vec![offer("o2", "f2", "a1", "cpus:1")],
        },
    )
    .unwrap();
    let bytes = serde_json::to_vec(&reg).unwrap();
    let back: Registry = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back, reg);
    assert_eq!(
        back.agent_allocation(&aid("a1")),
        reg.agent_allocation(&aid("a1"))
    );
}

// ----- property test: random command sequences -----

fn arb_command() -> impl Strategy<Value = Command> {
    let agent_ids = prop_oneof![Just("a1"), Just("a2"), Just("a3")];
    let fw_ids = prop_oneof![Just("f1"), Just("f2")];
    let offer_ids = (0u8..12).prop_map(|i| format!("o{i}"));
    let task_ids = (0u8..12).prop_map(|i| format!("t{i}"));
    let amounts = prop_oneof![
        Just("cpus:1"),
        Just("cpus:2;mem:64"),
        Just("mem:128"),
        Just("cpus(web):1")
    ];
    let states = proptest::sample::select(TaskState::ALL.to_vec());
    prop_oneof![
        (
            agent_ids.clone(),
            prop_oneof![Just("cpus:4;mem:256;cpus(web):1"), Just("cpus:1")]
        )
            .prop_map(|(a, r)| agent(a, r)),
        (fw_ids.clone(), prop_oneof![Just("web"), Just("batch")])
            .prop_map(|(f, r)| framework(f, r)),
        agent_ids
            .clone()
            .prop_map(|a| Command::MarkAgentUnreachable {
                id: aid(a),
                now_ms: 1
            }),
        agent_ids.clone().prop_map(|a| Command::RemoveAgent {
            id: aid(a),
            now_ms: 1
        }),
        fw_ids.clone().prop_map(|f| Command::DisconnectFramework {
            id: fid(f),
            now_ms: 1
        }),
        fw_ids.clone().prop_map(|f| Command::RemoveFramework {
            id: fid(f),
            now_ms: 1
        }),
        proptest::collection::vec(
            (
                offer_ids.clone(),
                fw_ids.clone(),
                agent_ids.clone(),
                amounts.clone()
            ),
            1..4
        )
        .prop_map(|v| Command::AddOffers {
            offers: v.iter().map(|(o, f, a, r)| offer(o, f, a, r)).collect()
        }),
        proptest::collection::vec(offer_ids.clone(), 1..3).prop_map(|v| Command::RemoveOffers {
            ids: v.iter().map(|o| oid(o)).collect()
        }),
        (
            fw_ids.clone(),
            proptest::collection::vec(offer_ids, 1..3),
            proptest::collection::vec((task_ids.clone(), amounts), 0..3)
        )
            .prop_map(|(f, os, ts)| {
                let os: Vec<&str> = os.iter().map(String::as_str).collect();
                let ts: Vec<(&str, &str)> = ts.iter().map(|(t, r)| (t.as_str(), *r)).collect();
                launch(f, &os, &ts)
            }),
        (fw_ids, task_ids, states).prop_map(|(f, t, s)| update(f, &t, s)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_histories_keep_invariants(cmds in proptest::collection::vec(arb_command(), 1..60)) {
        let mut reg = Registry::new();
        let mut replica = Registry::new();
        for cmd in &cmds {
            // `apply` (the helper) asserts rejection changes nothing and checks invariants.
            let a = apply(&mut reg, cmd);
            // Determinism: a second replica reaches the same result and state.
            let b = replica.apply(cmd);
            prop_assert_eq!(a, b);
            prop_assert_eq!(&reg, &replica);
            // A terminal task never becomes live again.
        }
        let bytes = serde_json::to_vec(&reg).unwrap();
        let back: Registry = serde_json::from_slice(&bytes).unwrap();
        prop_assert_eq!(back, reg);
    }
}
