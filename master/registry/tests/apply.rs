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
            registration: None,
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

fn with_order(mut cmd: Command, incarnation: u64, attempt: u64) -> Command {
    if let Command::RegisterAgent { info, .. } = &mut cmd {
        info.registration = Some(RegistrationOrder {
            incarnation,
            attempt,
        });
    }
    cmd
}

#[test]
fn a_registration_older_than_the_last_applied_is_refused() {
    let mut reg = cluster();
    let a1 = || agent("a1", "cpus:4;mem:1024;ports:[100-199]");
    let order = |reg: &Registry| reg.agent(&aid("a1")).unwrap().info.registration;
    apply(&mut reg, &with_order(a1(), 2, 5)).unwrap();
    // The same one again (the leader writes it twice when it reconciles first): applied.
    apply(&mut reg, &with_order(a1(), 2, 5)).unwrap();
    // An earlier attempt of the same incarnation, delivered late: refused.
    let stale = apply(&mut reg, &with_order(a1(), 2, 4));
    assert!(
        matches!(&stale, Err(Rejection::StaleRegistration { last, got, .. })
            if last == "incarnation 2 attempt 5" && got == "incarnation 2 attempt 4"),
        "{stale:?}"
    );
    // Any attempt of an earlier incarnation (a request of the agent's previous run).
    assert!(apply(&mut reg, &with_order(a1(), 1, 900)).is_err());
    // A later attempt, and the first attempt of a later incarnation: applied.
    apply(&mut reg, &with_order(a1(), 2, 6)).unwrap();
    apply(&mut reg, &with_order(a1(), 3, 1)).unwrap();
    assert_eq!(
        order(&reg),
        Some(RegistrationOrder {
            incarnation: 3,
            attempt: 1
        })
    );
    // A registrant that does not order its registrations is applied and keeps the order.
    apply(&mut reg, &a1()).unwrap();
    assert_eq!(order(&reg).map(|o| o.incarnation), Some(3));
    assert!(apply(&mut reg, &with_order(a1(), 3, 0)).is_err());
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
fn a_retried_launch_is_told_from_a_new_one() {
    let mut reg = cluster();
    apply(
        &mut reg,
        &Command::AddOffers {
            offers: vec![
                offer("o1", "f2", "a1", "cpus:2;mem:256"),
                offer("o2", "f2", "a2", "cpus:2;mem:256"),
            ],
        },
    )
    .unwrap();
    let first = launch("f2", &["o1"], &[("t1", "cpus:1;mem:100")]);
    let Command::LaunchTasks {
        framework_id,
        offer_ids,
        tasks,
        ..
    } = first.clone()
    else {
        unreachable!()
    };
    assert!(!reg.launch_applied(&framework_id, &offer_ids, &tasks));
    apply(&mut reg, &first).unwrap();
    assert!(reg.launch_applied(&framework_id, &offer_ids, &tasks));
    // One of its offers is still outstanding: not the launch that was applied.
    assert!(!reg.launch_applied(&framework_id, &[oid("o1"), oid("o2")], &tasks));
    // The framework was marked disconnected before the driver's retry came: the registry
    // refuses the retry for that first, and it is still the launch that was applied.
    apply(
        &mut reg,
        &Command::DisconnectFramework {
            id: fid("f2"),
            now_ms: 5,
        },
    )
    .unwrap();
    assert_eq!(
        apply(&mut reg, &first),
        Err(Rejection::FrameworkNotActive(fid("f2")))
    );
    assert!(reg.launch_applied(&framework_id, &offer_ids, &tasks));
    // Not the same launch: another spec under the task's id, a task that does not exist, no task at all.
    let mut other = tasks.clone();
    other[0].resources = res("cpus:0.5;mem:100");
    assert!(!reg.launch_applied(&framework_id, &offer_ids, &other));
    let mut more = tasks.clone();
    more.push(TaskSpec {
        id: tid("t9"),
        ..tasks[0].clone()
    });
    assert!(!reg.launch_applied(&framework_id, &offer_ids, &more));
    assert!(!reg.launch_applied(&framework_id, &offer_ids, &[]));
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
    // A finished task's id is not reused within its framework (at-most-once) while the
    // registry retains the task.
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
    assert_eq!(reg.frameworks().count(), 1);
    assert_eq!(
        reg.completed_framework(&fid("f1")).unwrap().removed_at_ms,
        8
    );
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
fn several_weights_are_set_all_or_none() {
    let mut reg = Registry::new();
    let set = |weights: &[(&str, f64)]| Command::SetWeights {
        weights: weights.iter().map(|(r, w)| (r.to_string(), *w)).collect(),
    };
    apply(&mut reg, &set(&[("web", 2.0), ("batch", 0.5)])).unwrap();
    assert_eq!((reg.weight("web"), reg.weight("batch")), (2.0, 0.5));
    // One bad weight or role: refused, and the good ones before it are not set either.
    for bad in [
        set(&[("web", 3.0), ("batch", 0.0)]),
        set(&[("web", 3.0), ("-x", 1.0)]),
    ] {
        let before = reg.clone();
        assert!(apply(&mut reg, &bad).is_err());
        assert_eq!(reg, before, "nothing of a refused command applied");
    }
    assert_eq!(reg.weight("web"), 2.0);
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
    arb_command_over(prop_oneof![Just("f1"), Just("f2")])
}

/// Random commands naming the framework ids `fw_ids` draws.
fn arb_command_over(
    fw_ids: impl Strategy<Value = &'static str> + Clone + 'static,
) -> impl Strategy<Value = Command> {
    let agent_ids = prop_oneof![Just("a1"), Just("a2"), Just("a3")];
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

// ----- retention of completed tasks and frameworks -----

fn retention(tasks: usize, frameworks: usize) -> Command {
    Command::SetRetention {
        retention: Retention {
            max_completed_tasks_per_framework: tasks,
            max_completed_frameworks: frameworks,
        },
    }
}

fn update_at(f: &str, t: &str, state: TaskState, now_ms: TimestampMs) -> Command {
    Command::UpdateTask {
        framework_id: fid(f),
        task_id: tid(t),
        state,
        message: None,
        exit_code: None,
        now_ms,
    }
}

fn remove_framework(f: &str, now_ms: TimestampMs) -> Command {
    Command::RemoveFramework { id: fid(f), now_ms }
}

/// `cluster()` with `tasks` (each cpus:0.5) launched by `f` on a1 from one offer.
fn cluster_with_tasks(f: &str, tasks: &[&str]) -> Registry {
    let mut reg = cluster();
    launch_on(&mut reg, f, "a1", tasks);
    reg
}

fn launch_on(reg: &mut Registry, f: &str, a: &str, tasks: &[&str]) {
    let o = format!("o-{f}-{}", tasks.join("-"));
    apply(
        reg,
        &Command::AddOffers {
            offers: vec![offer(&o, f, a, "mem:100")],
        },
    )
    .unwrap();
    let specs: Vec<(&str, &str)> = tasks.iter().map(|t| (*t, "mem:1")).collect();
    apply(reg, &launch(f, &[&o], &specs)).unwrap();
}

/// The ids of `f`'s tasks on record, in id order.
fn task_ids(reg: &Registry, f: &str) -> Vec<String> {
    reg.tasks()
        .filter(|t| t.framework_id == fid(f))
        .map(|t| t.id.to_string())
        .collect()
}

#[test]
fn retention_defaults_to_mesos_and_is_validated() {
    let mut reg = Registry::new();
    assert_eq!(
        reg.retention(),
        Retention {
            max_completed_tasks_per_framework: 1000,
            max_completed_frameworks: 50,
        }
    );
    let err = apply(&mut reg, &retention(1_000_001, 50)).unwrap_err();
    assert_eq!(
        err,
        Rejection::RetentionTooLarge {
            field: "max_completed_tasks_per_framework".into(),
            value: 1_000_001,
            max: 1_000_000,
        }
    );
    assert_eq!(
        err.to_string(),
        "retention max_completed_tasks_per_framework = 1000001 is above the limit 1000000"
    );
    assert!(matches!(
        apply(&mut reg, &retention(0, 100_001)),
        Err(Rejection::RetentionTooLarge { field, .. }) if field == "max_completed_frameworks"
    ));
    // The limits themselves and zero (keep none) are accepted.
    apply(&mut reg, &retention(1_000_000, 100_000)).unwrap();
    apply(&mut reg, &retention(0, 0)).unwrap();
    assert_eq!(
        reg.retention(),
        Retention {
            max_completed_tasks_per_framework: 0,
            max_completed_frameworks: 0,
        }
    );
    // The command survives the log's encoding.
    let cmd = retention(3, 4);
    let back: Command = serde_json::from_slice(&serde_json::to_vec(&cmd).unwrap()).unwrap();
    assert_eq!(back, cmd);
    assert_eq!(cmd.kind(), "set_retention");
}

#[test]
fn completed_tasks_beyond_the_bound_are_evicted_oldest_first() {
    let mut reg = cluster_with_tasks("f2", &["t1", "t2", "t3", "t4", "t5"]);
    apply(&mut reg, &retention(2, 50)).unwrap();
    // Oldest by (updated_at_ms, task id): a tie on time goes to the smaller id.
    apply(
        &mut reg,
        &update_at("f2", "t1", TaskState::TaskFinished, 10),
    )
    .unwrap();
    apply(&mut reg, &update_at("f2", "t2", TaskState::TaskFailed, 5)).unwrap();
    assert_eq!(task_ids(&reg, "f2"), ["t1", "t2", "t3", "t4", "t5"]);
    apply(&mut reg, &update_at("f2", "t3", TaskState::TaskKilled, 5)).unwrap();
    assert_eq!(task_ids(&reg, "f2"), ["t1", "t3", "t4", "t5"]);
    apply(
        &mut reg,
        &update_at("f2", "t4", TaskState::TaskFinished, 20),
    )
    .unwrap();
    assert_eq!(task_ids(&reg, "f2"), ["t1", "t4", "t5"]);
    // Live tasks never count and are never evicted, whatever their age.
    apply(&mut reg, &update_at("f2", "t5", TaskState::TaskRunning, 1)).unwrap();
    assert_eq!(task_ids(&reg, "f2"), ["t1", "t4", "t5"]);
    // A task that completes with an older time than those kept is itself the oldest.
    apply(&mut reg, &update_at("f2", "t5", TaskState::TaskFinished, 2)).unwrap();
    assert_eq!(task_ids(&reg, "f2"), ["t1", "t4"]);
}

#[test]
fn an_evicted_task_is_unknown_and_its_id_free_again() {
    let mut reg = cluster_with_tasks("f2", &["t1", "t2"]);
    apply(&mut reg, &retention(1, 50)).unwrap();
    apply(
        &mut reg,
        &update_at("f2", "t1", TaskState::TaskFinished, 10),
    )
    .unwrap();
    apply(
        &mut reg,
        &update_at("f2", "t2", TaskState::TaskFinished, 11),
    )
    .unwrap();
    assert!(reg.task(&fid("f2"), &tid("t1")).is_none());
    // A late (retried) update for it is refused as for any unknown task.
    assert_eq!(
        apply(
            &mut reg,
            &update_at("f2", "t1", TaskState::TaskFinished, 12)
        ),
        Err(Rejection::UnknownTask(tid("t1")))
    );
    // Its id is no longer on record, so it may be launched again; the retained one not.
    apply(
        &mut reg,
        &Command::AddOffers {
            offers: vec![offer("o9", "f2", "a1", "cpus:2")],
        },
    )
    .unwrap();
    assert!(matches!(
        apply(&mut reg, &launch("f2", &["o9"], &[("t2", "cpus:1")])),
        Err(Rejection::DuplicateTask(_))
    ));
    apply(&mut reg, &launch("f2", &["o9"], &[("t1", "cpus:1")])).unwrap();
    assert_eq!(
        reg.task(&fid("f2"), &tid("t1")).unwrap().state,
        TaskState::TaskStaging
    );
}

#[test]
fn a_retried_terminal_update_keeps_the_task_in_its_place() {
    let mut reg = cluster_with_tasks("f2", &["t1", "t2", "t3"]);
    apply(&mut reg, &retention(2, 50)).unwrap();
    apply(&mut reg, &update_at("f2", "t1", TaskState::TaskFailed, 10)).unwrap();
    apply(&mut reg, &update_at("f2", "t2", TaskState::TaskFailed, 20)).unwrap();
    // The retry fills in the exit code but does not make t1 younger.
    let retry = Command::UpdateTask {
        framework_id: fid("f2"),
        task_id: tid("t1"),
        state: TaskState::TaskFailed,
        message: Some("oom".into()),
        exit_code: Some(137),
        now_ms: 30,
    };
    apply(&mut reg, &retry).unwrap();
    let t1 = reg.task(&fid("f2"), &tid("t1")).unwrap();
    assert_eq!((t1.exit_code, t1.updated_at_ms), (Some(137), 10));
    apply(&mut reg, &update_at("f2", "t3", TaskState::TaskFailed, 25)).unwrap();
    assert_eq!(task_ids(&reg, "f2"), ["t2", "t3"]);
}

#[test]
fn agent_loss_counts_toward_the_bound_only_when_terminal() {
    let mut reg = cluster_with_tasks("f2", &["t1", "t2"]);
    apply(&mut reg, &retention(0, 50)).unwrap();
    let unreachable = Command::MarkAgentUnreachable {
        id: aid("a1"),
        now_ms: 9,
    };
    apply(&mut reg, &unreachable).unwrap();
    // TASK_UNREACHABLE is not terminal: kept, and still holding its resources.
    assert_eq!(task_ids(&reg, "f2"), ["t1", "t2"]);
    assert_eq!(reg.agent_allocation(&aid("a1")).used, res("mem:2"));
    let removed = Command::RemoveAgent {
        id: aid("a1"),
        now_ms: 10,
    };
    apply(&mut reg, &removed).unwrap();
    // TASK_GONE is terminal, and a bound of 0 keeps no terminal task.
    assert!(task_ids(&reg, "f2").is_empty());
    assert!(reg.framework(&fid("f2")).is_some());
}

#[test]
fn lowering_the_bound_evicts_at_once_and_raising_it_restores_nothing() {
    let mut reg = cluster_with_tasks("f2", &["t1", "t2", "t3", "t4"]);
    for (t, at) in [("t1", 10), ("t2", 30), ("t3", 20)] {
        apply(&mut reg, &update_at("f2", t, TaskState::TaskFinished, at)).unwrap();
    }
    apply(&mut reg, &retention(1, 50)).unwrap();
    assert_eq!(task_ids(&reg, "f2"), ["t2", "t4"]);
    apply(&mut reg, &retention(5, 50)).unwrap();
    assert_eq!(task_ids(&reg, "f2"), ["t2", "t4"]);
    // Setting the same retention again is accepted and changes nothing.
    let before = reg.clone();
    apply(&mut reg, &retention(5, 50)).unwrap();
    assert_eq!(reg, before);
}

#[test]
fn a_removed_framework_is_completed_with_its_tasks_and_its_id_is_refused() {
    let mut reg = cluster_with_tasks("f2", &["t1", "t2"]);
    apply(&mut reg, &update_at("f2", "t1", TaskState::TaskFinished, 5)).unwrap();
    apply(&mut reg, &remove_framework("f2", 7)).unwrap();
    assert!(reg.framework(&fid("f2")).is_none());
    assert_eq!(
        reg.frameworks().count(),
        1,
        "frameworks() lists registered ones"
    );
    let completed: Vec<&CompletedFramework> = reg.completed_frameworks().collect();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].framework.info.id, fid("f2"));
    assert_eq!(completed[0].removed_at_ms, 7);
    assert_eq!(reg.completed_framework(&fid("f2")), Some(completed[0]));
    let t2 = reg.task(&fid("f2"), &tid("t2")).unwrap();
    assert_eq!((t2.state, t2.updated_at_ms), (TaskState::TaskKilled, 7));
    // Mesos refuses a completed framework's id.
    assert_eq!(
        apply(&mut reg, &framework("f2", "batch")),
        Err(Rejection::FrameworkCompleted(fid("f2")))
    );
    assert_eq!(
        apply(&mut reg, &framework("f2", "batch"))
            .unwrap_err()
            .to_string(),
        "framework f2 was removed; its id cannot be registered again"
    );
    // Everything else treats it as not registered.
    for cmd in [
        remove_framework("f2", 8),
        Command::DisconnectFramework {
            id: fid("f2"),
            now_ms: 8,
        },
        Command::AddOffers {
            offers: vec![offer("o9", "f2", "a1", "cpus:1")],
        },
    ] {
        assert_eq!(
            apply(&mut reg, &cmd),
            Err(Rejection::UnknownFramework(fid("f2")))
        );
    }
    // Its tasks still answer updates as terminal tasks do.
    apply(&mut reg, &update_at("f2", "t2", TaskState::TaskKilled, 9)).unwrap();
    assert!(matches!(
        apply(&mut reg, &update_at("f2", "t2", TaskState::TaskRunning, 9)),
        Err(Rejection::TaskAlreadyTerminal { .. })
    ));
    // And stay under the per-framework bound.
    apply(&mut reg, &retention(1, 50)).unwrap();
    assert_eq!(task_ids(&reg, "f2"), ["t2"]);
}

#[test]
fn completed_frameworks_beyond_the_bound_go_oldest_first_with_their_tasks() {
    let mut reg = cluster_with_tasks("f1", &["t1"]);
    launch_on(&mut reg, "f2", "a1", &["t1", "t2"]);
    apply(&mut reg, &framework("f3", "batch")).unwrap();
    apply(&mut reg, &retention(1000, 2)).unwrap();
    // Oldest by removal time, not by order of removal.
    apply(&mut reg, &remove_framework("f1", 30)).unwrap();
    apply(&mut reg, &remove_framework("f2", 10)).unwrap();
    apply(&mut reg, &remove_framework("f3", 20)).unwrap();
    let kept: Vec<String> = reg
        .completed_frameworks()
        .map(|c| c.framework.info.id.to_string())
        .collect();
    assert_eq!(kept, ["f1", "f3"]);
    assert!(task_ids(&reg, "f2").is_empty(), "its tasks went with it");
    assert_eq!(task_ids(&reg, "f1"), ["t1"]);
    // Off the record entirely, its id is unknown again.
    assert!(reg.completed_framework(&fid("f2")).is_none());
    assert_eq!(
        apply(&mut reg, &update_at("f2", "t1", TaskState::TaskKilled, 40)),
        Err(Rejection::UnknownTask(tid("t1")))
    );
    // A bound of 0 keeps no completed framework at all.
    apply(&mut reg, &retention(1000, 0)).unwrap();
    assert_eq!(reg.completed_frameworks().count(), 0);
    assert_eq!(reg.tasks().count(), 0);
}

#[test]
fn snapshots_keep_completed_history_and_old_ones_load_under_the_defaults() {
    let mut reg = cluster_with_tasks("f2", &["t1", "t2", "t3"]);
    launch_on(&mut reg, "f1", "a1", &["t9"]);
    apply(&mut reg, &retention(2, 5)).unwrap();
    for (t, at) in [("t1", 10), ("t2", 30), ("t3", 20)] {
        apply(&mut reg, &update_at("f2", t, TaskState::TaskFinished, at)).unwrap();
    }
    apply(&mut reg, &remove_framework("f1", 40)).unwrap();
    let back: Registry = serde_json::from_slice(&serde_json::to_vec(&reg).unwrap()).unwrap();
    assert_eq!(back, reg);
    assert_eq!(back.retention(), reg.retention());
    back.check_invariants().unwrap();

    // A snapshot from before retention: no `retention`, no `completed_frameworks`, the
    // tasks of a framework removed back then (f1) still there, and more terminal tasks
    // than the bound.
    let mut reg = cluster_with_tasks("f2", &["t1", "t2", "t3"]);
    launch_on(&mut reg, "f1", "a1", &["t9"]);
    for (t, at) in [("t1", 10), ("t2", 30), ("t3", 20)] {
        apply(&mut reg, &update_at("f2", t, TaskState::TaskFinished, at)).unwrap();
    }
    let mut old = serde_json::to_value(&reg).unwrap();
    let data = old.as_object_mut().unwrap();
    data.remove("retention");
    data.remove("completed_frameworks");
    data["frameworks"].as_object_mut().unwrap().remove("f1");
    let loaded: Registry = serde_json::from_value(old.clone()).unwrap();
    loaded.check_invariants().unwrap();
    assert_eq!(loaded.retention(), Retention::default());
    assert!(task_ids(&loaded, "f1").is_empty(), "orphaned tasks dropped");
    assert_eq!(task_ids(&loaded, "f2"), ["t1", "t2", "t3"]);
    assert!(loaded.agent_allocation(&aid("a1")).used.is_empty());
    // A retention with one field set takes the default for the other; a bound below what
    // the snapshot holds is enforced on load, oldest first.
    old["retention"] = serde_json::json!({ "max_completed_tasks_per_framework": 1 });
    let loaded: Registry = serde_json::from_value(old).unwrap();
    loaded.check_invariants().unwrap();
    assert_eq!(loaded.retention().max_completed_frameworks, 50);
    assert_eq!(task_ids(&loaded, "f2"), ["t2"]);
}

// ----- property test: retention under random histories -----

/// Sets the time every timed command carries.
fn at(mut cmd: Command, t: TimestampMs) -> Command {
    match &mut cmd {
        Command::RegisterAgent { now_ms, .. }
        | Command::MarkAgentUnreachable { now_ms, .. }
        | Command::RemoveAgent { now_ms, .. }
        | Command::RegisterFramework { now_ms, .. }
        | Command::DisconnectFramework { now_ms, .. }
        | Command::RemoveFramework { now_ms, .. }
        | Command::LaunchTasks { now_ms, .. }
        | Command::UpdateTask { now_ms, .. }
        | Command::DrainAgent { now_ms, .. }
        | Command::MarkAgentGone { now_ms, .. } => *now_ms = t,
        Command::AddOffers { .. }
        | Command::RemoveOffers { .. }
        | Command::SetWeight { .. }
        | Command::SetWeights { .. }
        | Command::SetRetention { .. }
        | Command::DeactivateAgent { .. }
        | Command::ReactivateAgent { .. } => {}
    }
    cmd
}

fn now_of(cmd: &Command) -> Option<TimestampMs> {
    match cmd {
        Command::MarkAgentUnreachable { now_ms, .. }
        | Command::RemoveAgent { now_ms, .. }
        | Command::RemoveFramework { now_ms, .. }
        | Command::UpdateTask { now_ms, .. } => Some(*now_ms),
        _ => None,
    }
}

fn arb_retention() -> impl Strategy<Value = Command> {
    (0usize..5, 0usize..4).prop_map(|(t, f)| retention(t, f))
}

/// One step of a generated history.
#[derive(Clone, Debug)]
enum Step {
    Commands(Vec<Command>),
    /// Ends the `n`-th live task (modulo their number, in the registry's order), if any:
    /// resolved against the state, so that updates name tasks that exist.
    EndLive {
        n: usize,
        state: TaskState,
        now_ms: TimestampMs,
    },
}

impl Step {
    fn commands(self, reg: &Registry) -> Vec<Command> {
        match self {
            Step::Commands(cmds) => cmds,
            Step::EndLive { n, state, now_ms } => {
                let live: Vec<&Task> = reg.tasks().filter(|t| !t.state.is_terminal()).collect();
                match live.get(n % live.len().max(1)) {
                    Some(t) => vec![Command::UpdateTask {
                        framework_id: t.framework_id.clone(),
                        task_id: t.id.clone(),
                        state,
                        message: None,
                        exit_code: None,
                        now_ms,
                    }],
                    None => vec![],
                }
            }
        }
    }
}

/// Steps of histories over four framework ids (so that removed ones do not exhaust them),
/// with times that go back and forth and tie, and retention changes. Besides any command,
/// a step may be an offer and a launch that uses it, or the end of a live task, so that
/// many tasks end and eviction has work to do.
fn arb_retention_step() -> impl Strategy<Value = Step> {
    let fw_ids = prop_oneof![Just("f1"), Just("f2"), Just("f3"), Just("f4")];
    let times = 0u64..6;
    let terminal: Vec<TaskState> = TaskState::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .collect();
    let offer_and_launch = (
        fw_ids.clone(),
        prop_oneof![Just("a1"), Just("a2"), Just("a3")],
        0u8..4,
        proptest::collection::vec((0u8..10).prop_map(|i| format!("t{i}")), 1..4),
        times.clone(),
    )
        .prop_map(|(f, a, o, ts, t)| {
            let o = format!("p{o}");
            let ts: Vec<(&str, &str)> = ts.iter().map(|id| (id.as_str(), "cpus:0.1")).collect();
            Step::Commands(vec![
                Command::AddOffers {
                    offers: vec![offer(&o, f, a, "cpus:1")],
                },
                at(launch(f, &[&o], &ts), t),
            ])
        });
    let end = (
        any::<usize>(),
        proptest::sample::select(terminal),
        times.clone(),
    )
        .prop_map(|(n, state, now_ms)| Step::EndLive { n, state, now_ms });
    prop_oneof![
        6 => (arb_command_over(fw_ids), times).prop_map(|(c, t)| Step::Commands(vec![at(c, t)])),
        4 => offer_and_launch,
        5 => end,
        1 => arb_retention().prop_map(|c| Step::Commands(vec![c])),
    ]
}

fn round_trip(reg: &Registry) -> Registry {
    serde_json::from_slice(&serde_json::to_vec(reg).unwrap()).unwrap()
}

/// The retention bounds, seen through the public API only.
fn check_bounds(reg: &Registry) -> Result<(), TestCaseError> {
    let r = reg.retention();
    prop_assert!(reg.completed_frameworks().count() <= r.max_completed_frameworks);
    let known =
        |f: &FrameworkId| reg.framework(f).is_some() || reg.completed_framework(f).is_some();
    for t in reg.tasks() {
        prop_assert!(known(&t.framework_id), "task {} of unknown framework", t.id);
    }
    let ids = reg
        .frameworks()
        .map(|f| &f.info.id)
        .chain(reg.completed_frameworks().map(|c| &c.framework.info.id));
    for f in ids {
        let terminal = reg
            .tasks()
            .filter(|t| &t.framework_id == f && t.state.is_terminal())
            .count();
        prop_assert!(terminal <= r.max_completed_tasks_per_framework);
    }
    Ok(())
}

/// What `cmd` evicted, going from `before` to `after`, was only ever the oldest, and only
/// as much as the bounds demanded: whatever a framework lost, it keeps exactly the bound,
/// all younger than what it lost.
fn check_eviction(before: &Registry, after: &Registry, cmd: &Command) -> Result<(), TestCaseError> {
    let r = after.retention();
    let known = |reg: &Registry, f: &FrameworkId| {
        reg.framework(f).is_some() || reg.completed_framework(f).is_some()
    };
    // Frameworks that left the record, with the time they were (or were just) removed.
    let gone: Vec<(TimestampMs, FrameworkId)> = before
        .frameworks()
        .map(|f| &f.info.id)
        .chain(before.completed_frameworks().map(|c| &c.framework.info.id))
        .filter(|f| !known(after, f))
        .map(|f| {
            let removed = before
                .completed_framework(f)
                .map(|c| c.removed_at_ms)
                .or_else(|| now_of(cmd))
                .unwrap();
            (removed, f.clone())
        })
        .collect();
    if !gone.is_empty() {
        prop_assert_eq!(
            after.completed_frameworks().count(),
            r.max_completed_frameworks
        );
        for c in after.completed_frameworks() {
            let kept = (c.removed_at_ms, c.framework.info.id.clone());
            prop_assert!(
                gone.iter().all(|g| g < &kept),
                "evicted {:?} but kept {:?}",
                gone,
                kept
            );
        }
    }
    // Tasks evicted from frameworks still on record.
    for t in before.tasks() {
        if !known(after, &t.framework_id) || after.task(&t.framework_id, &t.id).is_some() {
            continue;
        }
        let key = if t.state.is_terminal() {
            (t.updated_at_ms, t.id.clone())
        } else {
            (now_of(cmd).unwrap(), t.id.clone())
        };
        let kept: Vec<(TimestampMs, TaskId)> = after
            .tasks()
            .filter(|k| k.framework_id == t.framework_id && k.state.is_terminal())
            .map(|k| (k.updated_at_ms, k.id.clone()))
            .collect();
        prop_assert_eq!(kept.len(), r.max_completed_tasks_per_framework);
        prop_assert!(
            kept.iter().all(|k| &key < k),
            "evicted {:?} but kept {:?}",
            key,
            kept
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// After every command: invariants and bounds hold, a rejection changed nothing, only
    /// the oldest were evicted; a replica replaying from scratch, and one restored from a
    /// snapshot taken at `split`, give the same results and states, so they evict the same
    /// entries; and a snapshot of the state loads as an equal registry.
    #[test]
    fn retention_is_enforced_alike_on_replay_and_after_snapshots(
        initial in arb_retention(),
        steps in proptest::collection::vec(arb_retention_step(), 1..60),
        split in 0usize..80,
    ) {
        // Agents and frameworks to start with, so that launches and endings are common.
        let mut reg = Registry::new();
        for a in ["a1", "a2", "a3"] {
            apply(&mut reg, &agent(a, "cpus:4;mem:256;cpus(web):1")).unwrap();
        }
        for (f, role) in [("f1", "web"), ("f2", "batch"), ("f3", "web"), ("f4", "batch")] {
            apply(&mut reg, &framework(f, role)).unwrap();
        }
        apply(&mut reg, &initial).unwrap();
        let mut replayed = reg.clone();
        let mut restored: Option<Registry> = None;
        let mut i = 0;
        for step in steps {
            for cmd in &step.commands(&reg) {
                if i == split {
                    restored = Some(round_trip(&reg));
                }
                i += 1;
                let before = reg.clone();
                let result = apply(&mut reg, cmd);
                check_bounds(&reg)?;
                check_eviction(&before, &reg, cmd)?;
                prop_assert_eq!(&replayed.apply(cmd), &result);
                prop_assert_eq!(&replayed, &reg);
                if let Some(r) = restored.as_mut() {
                    prop_assert_eq!(&r.apply(cmd), &result);
                    r.check_invariants().unwrap();
                    prop_assert_eq!(&*r, &reg);
                }
                let back = round_trip(&reg);
                back.check_invariants().unwrap();
                prop_assert_eq!(&back, &reg);
            }
        }
    }
}

// ----- regressions found by the fuzzer (master/fuzz/corpus/apply/regression-*) -----

#[test]
fn an_agent_cannot_register_again_with_less_than_its_live_tasks_use() {
    let mut reg = cluster();
    apply(
        &mut reg,
        &Command::AddOffers {
            offers: vec![
                offer("o1", "f2", "a1", "cpus:2;ports:[100-109]"),
                offer("o2", "f2", "a1", "cpus:1"),
            ],
        },
    )
    .unwrap();
    apply(
        &mut reg,
        &launch("f2", &["o1"], &[("t1", "cpus:2;ports:[100-109]")]),
    )
    .unwrap();
    // Fewer cpus than the task uses, or without its ports: refused, nothing changes (the
    // outstanding offer stays).
    for smaller in ["cpus:1;mem:1024;ports:[100-199]", "cpus:4;mem:1024"] {
        let err = apply(&mut reg, &agent("a1", smaller)).unwrap_err();
        assert_eq!(
            err,
            Rejection::AgentResourcesBelowUsed {
                id: aid("a1"),
                used: res("cpus:2;ports:[100-109]").to_string(),
                offered: res(smaller).to_string(),
            }
        );
        assert!(err.to_string().contains("less than its live tasks use"));
        assert!(reg.offer(&oid("o2")).is_some());
    }
    // Enough for the task: accepted; offers of the old resources are withdrawn.
    apply(&mut reg, &agent("a1", "cpus:2;ports:[100-109]")).unwrap();
    assert!(reg.offer(&oid("o2")).is_none());
    assert_eq!(reg.agent_free(&aid("a1")), Resources::new());
    // Once the task is over, the agent may shrink.
    apply(&mut reg, &update("f2", "t1", TaskState::TaskFinished)).unwrap();
    apply(&mut reg, &agent("a1", "cpus:1")).unwrap();
}

#[test]
fn one_launch_cannot_give_the_same_port_to_two_tasks() {
    let mut reg = cluster();
    apply(
        &mut reg,
        &Command::AddOffers {
            offers: vec![offer("o1", "f2", "a1", "cpus:2;ports:[100-109]")],
        },
    )
    .unwrap();
    assert_eq!(
        apply(
            &mut reg,
            &launch(
                "f2",
                &["o1"],
                &[
                    ("t1", "cpus:1;ports:[100-104]"),
                    ("t2", "cpus:0.5"),
                    ("t3", "cpus:0.5;ports:[104-105]")
                ]
            ),
        ),
        Err(Rejection::TasksShareRanges {
            first: tid("t1"),
            second: tid("t3"),
            shared: res("ports:[104-104]").to_string(),
        })
    );
    // Disjoint ports are fine.
    apply(
        &mut reg,
        &launch(
            "f2",
            &["o1"],
            &[("t1", "cpus:1;ports:[100-104]"), ("t3", "ports:[105-106]")],
        ),
    )
    .unwrap();
    assert_eq!(
        reg.agent_allocation(&aid("a1")).used,
        res("cpus:1;ports:[100-106]")
    );
}

#[test]
fn a_framework_keeps_the_same_ports_offered_on_two_agents_apart() {
    let mut reg = cluster();
    apply(&mut reg, &agent("a3", "cpus:1;ports:[100-199]")).unwrap();
    apply(
        &mut reg,
        &Command::AddOffers {
            offers: vec![
                offer("o1", "f2", "a1", "ports:[100-199]"),
                offer("o2", "f2", "a3", "ports:[100-199]"),
            ],
        },
    )
    .unwrap();
    apply(
        &mut reg,
        &Command::RemoveOffers {
            ids: vec![oid("o1")],
        },
    )
    .unwrap();
    assert_eq!(
        reg.framework_allocation(&fid("f2")).offered,
        res("ports:[100-199]")
    );
    // The same with tasks: one ends, the other still holds its ports.
    apply(
        &mut reg,
        &Command::AddOffers {
            offers: vec![offer("o3", "f2", "a1", "cpus:1;ports:[150-150]")],
        },
    )
    .unwrap();
    apply(
        &mut reg,
        &launch("f2", &["o2"], &[("t1", "ports:[150-150]")]),
    )
    .unwrap();
    apply(
        &mut reg,
        &launch("f2", &["o3"], &[("t2", "cpus:1;ports:[150-150]")]),
    )
    .unwrap();
    apply(&mut reg, &update("f2", "t1", TaskState::TaskFinished)).unwrap();
    assert_eq!(
        reg.framework_allocation(&fid("f2")),
        Allocation {
            used: res("cpus:1;ports:[150-150]"),
            offered: Resources::new(),
        }
    );
}
