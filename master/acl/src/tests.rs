use super::*;

fn acls(json: &str) -> Acls {
    Acls::parse(json).unwrap_or_else(|e| panic!("{json} should parse: {e}"))
}

fn err(json: &str) -> AclError {
    match Acls::parse(json) {
        Ok(a) => panic!("{json} should not parse, got {a:?}"),
        Err(e) => e,
    }
}

fn err_text(json: &str) -> String {
    err(json).to_string()
}

type MakeAction = for<'a> fn(&'a str) -> Action<'a>;

/// Every action kind: its document key, its object field, and how to build it.
const KINDS: [(&str, &str, MakeAction); 15] = [
    ("register_frameworks", "roles", |o| {
        Action::RegisterFramework { role: o }
    }),
    ("run_tasks", "users", |o| Action::RunTask { user: o }),
    ("teardown_frameworks", "framework_principals", |o| {
        Action::TeardownFramework {
            framework_principal: Some(o),
        }
    }),
    ("update_weights", "roles", |o| Action::UpdateWeight {
        role: o,
    }),
    ("view_frameworks", "users", |o| Action::ViewFramework {
        user: o,
    }),
    ("view_tasks", "users", |o| Action::ViewTask { user: o }),
    ("view_agents", "agents", |o| Action::ViewAgent { agent: o }),
    ("register_agents", "agents", |o| Action::RegisterAgent {
        agent: o,
    }),
    ("update_membership", "members", |o| {
        Action::UpdateMembership { member: o }
    }),
    ("drain_agents", "agents", |o| Action::DrainAgent {
        agent: o,
    }),
    ("access_sandboxes", "users", |o| Action::AccessSandbox {
        user: o,
    }),
    ("deactivate_agents", "agents", |o| Action::DeactivateAgent {
        agent: o,
    }),
    ("reactivate_agents", "agents", |o| Action::ReactivateAgent {
        agent: o,
    }),
    ("mark_agents_gone", "agents", |o| Action::MarkAgentGone {
        agent: o,
    }),
    ("set_log_level", "levels", |o| Action::SetLogLevel {
        level: o,
    }),
];

fn doc(permissive: bool, key: &str, entries: &[(&str, &str, &str)]) -> String {
    // entries: (subject entity json, object field, object entity json)
    let list: Vec<String> = entries
        .iter()
        .map(|(s, field, o)| format!(r#"{{"principals": {s}, "{field}": {o}}}"#))
        .collect();
    format!(
        r#"{{"permissive": {permissive}, "{key}": [{}]}}"#,
        list.join(", ")
    )
}

const ANY: &str = r#"{"type": "ANY"}"#;
const NONE: &str = r#"{"type": "NONE"}"#;

fn values(vs: &[&str]) -> String {
    let quoted: Vec<String> = vs.iter().map(|v| format!("{v:?}")).collect();
    format!(r#"{{"values": [{}]}}"#, quoted.join(", "))
}

// ---------------------------------------------------------------------------------------
// Mapping from actions to lists.

#[test]
fn every_action_names_its_list_and_object_field() {
    for (key, field, make) in KINDS {
        let action = make("x");
        assert_eq!(action.acl_key(), key);
        assert_eq!(action.object_field(), field);
    }
    let anonymous = Action::TeardownFramework {
        framework_principal: None,
    };
    assert_eq!(anonymous.acl_key(), "teardown_frameworks");
}

#[test]
fn each_action_kind_is_governed_by_its_own_list_only() {
    let alice = values(&["alice"]);
    let obj = values(&["obj"]);
    for (key, field, make) in KINDS {
        let a = acls(&doc(false, key, &[(&alice, field, &obj)]));
        assert_eq!(a.entry_count(), 1);
        assert!(a.allows(Some("alice"), &make("obj")), "{key}: listed pair");
        assert!(
            !a.allows(Some("alice"), &make("other")),
            "{key}: object not listed"
        );
        assert!(
            !a.allows(Some("bob"), &make("obj")),
            "{key}: principal not listed"
        );
        assert!(!a.allows(None, &make("obj")), "{key}: no principal");
        assert_eq!(
            a.decide(Some("alice"), &make("obj")),
            Decision {
                allowed: true,
                acl_key: key,
                entry: Some(0)
            }
        );
        // The other nine kinds see no entry, so `permissive` (false) decides for them.
        for (other_key, _, other_make) in KINDS {
            if other_key != key {
                let d = a.decide(Some("alice"), &other_make("obj"));
                assert_eq!(
                    d,
                    Decision {
                        allowed: false,
                        acl_key: other_key,
                        entry: None
                    },
                    "{key} list leaked into {other_key}"
                );
            }
        }
    }
}

#[test]
fn each_action_kind_can_be_denied_while_others_stay_permissive() {
    for (key, field, make) in KINDS {
        let a = acls(&doc(true, key, &[(NONE, field, ANY)]));
        assert!(!a.allows(Some("alice"), &make("obj")), "{key}");
        assert!(!a.allows(None, &make("obj")), "{key}");
        for (other_key, _, other_make) in KINDS {
            if other_key != key {
                assert!(a.allows(Some("alice"), &other_make("obj")), "{other_key}");
            }
        }
    }
}

#[test]
fn teardown_of_framework_without_principal_is_matched_only_by_any_or_none() {
    let anonymous = Action::TeardownFramework {
        framework_principal: None,
    };
    let field = "framework_principals";
    // `values` never matches an absent framework principal: permissive decides.
    let listed = values(&["", "null", "none"]);
    for permissive in [true, false] {
        let a = acls(&doc(
            permissive,
            "teardown_frameworks",
            &[(ANY, field, &listed)],
        ));
        assert_eq!(a.decide(Some("ops"), &anonymous).entry, None);
        assert_eq!(a.allows(Some("ops"), &anonymous), permissive);
    }
    // ANY matches it.
    let a = acls(&doc(false, "teardown_frameworks", &[(ANY, field, ANY)]));
    assert!(a.allows(Some("ops"), &anonymous));
    // NONE matches it, and denies.
    let a = acls(&doc(true, "teardown_frameworks", &[(ANY, field, NONE)]));
    assert_eq!(a.decide(Some("ops"), &anonymous).entry, Some(0));
    assert!(!a.allows(Some("ops"), &anonymous));
    // With a principal, `values` works as usual.
    let a = acls(&doc(
        false,
        "teardown_frameworks",
        &[(ANY, field, &values(&["fw"]))],
    ));
    let named = Action::TeardownFramework {
        framework_principal: Some("fw"),
    };
    assert!(a.allows(Some("ops"), &named));
    assert!(!a.allows(Some("ops"), &anonymous));
}

// ---------------------------------------------------------------------------------------
// Decision rules.

#[test]
fn first_applying_entry_decides() {
    let alice = values(&["alice"]);
    // Allow alice, then deny everyone: alice is allowed, bob is denied.
    let a = acls(&doc(
        true,
        "run_tasks",
        &[(&alice, "users", ANY), (NONE, "users", ANY)],
    ));
    assert!(a.allows(Some("alice"), &Action::RunTask { user: "root" }));
    assert!(!a.allows(Some("bob"), &Action::RunTask { user: "root" }));
    assert_eq!(
        a.decide(Some("bob"), &Action::RunTask { user: "root" })
            .entry,
        Some(1)
    );
    // Reversed: the deny comes first and applies to everyone, alice included.
    let a = acls(&doc(
        true,
        "run_tasks",
        &[(NONE, "users", ANY), (&alice, "users", ANY)],
    ));
    assert!(!a.allows(Some("alice"), &Action::RunTask { user: "root" }));
    assert_eq!(
        a.decide(Some("alice"), &Action::RunTask { user: "root" })
            .entry,
        Some(0)
    );
}

#[test]
fn entries_that_do_not_apply_are_skipped() {
    let a = acls(&doc(
        false,
        "run_tasks",
        &[
            (&values(&["bob"]), "users", NONE), // wrong principal
            (&values(&["alice"]), "users", &values(&["root"])), // wrong object
            (&values(&["alice"]), "users", &values(&["www", "app"])),
        ],
    ));
    let d = a.decide(Some("alice"), &Action::RunTask { user: "app" });
    assert_eq!((d.allowed, d.entry), (true, Some(2)));
}

#[test]
fn none_in_subject_denies_everyone_for_the_listed_objects() {
    let a = acls(&doc(
        true,
        "update_weights",
        &[(NONE, "roles", &values(&["prod"]))],
    ));
    let prod = Action::UpdateWeight { role: "prod" };
    let dev = Action::UpdateWeight { role: "dev" };
    assert!(!a.allows(Some("admin"), &prod));
    assert!(
        !a.allows(None, &prod),
        "NONE matches an absent principal too"
    );
    assert!(a.allows(Some("admin"), &dev), "dev: no entry applies");
    assert_eq!(a.decide(Some("admin"), &dev).entry, None);
}

#[test]
fn none_in_object_denies_the_listed_principals_everything() {
    let a = acls(&doc(
        true,
        "drain_agents",
        &[(&values(&["intern"]), "agents", NONE)],
    ));
    for agent in ["a1", "a2", ""] {
        assert!(!a.allows(Some("intern"), &Action::DrainAgent { agent }));
        assert!(a.allows(Some("sre"), &Action::DrainAgent { agent }));
    }
}

#[test]
fn none_on_both_sides_denies_everything() {
    let a = acls(&doc(true, "view_tasks", &[(NONE, "users", NONE)]));
    assert!(!a.allows(Some("x"), &Action::ViewTask { user: "y" }));
    assert!(!a.allows(None, &Action::ViewTask { user: "y" }));
}

#[test]
fn an_allowing_entry_before_a_none_entry_wins() {
    let a = acls(&doc(
        false,
        "update_membership",
        &[
            (&values(&["ops"]), "members", &values(&["3"])),
            (NONE, "members", ANY),
            (ANY, "members", ANY),
        ],
    ));
    assert!(a.allows(Some("ops"), &Action::UpdateMembership { member: "3" }));
    assert!(!a.allows(Some("ops"), &Action::UpdateMembership { member: "4" }));
    assert!(!a.allows(Some("dev"), &Action::UpdateMembership { member: "3" }));
}

#[test]
fn permissive_false_with_no_applying_entry_denies() {
    let a = acls(&doc(
        false,
        "register_agents",
        &[(&values(&["agent-1"]), "agents", ANY)],
    ));
    assert!(!a.is_permissive_default());
    assert!(a.allows(Some("agent-1"), &Action::RegisterAgent { agent: "a" }));
    let d = a.decide(Some("agent-2"), &Action::RegisterAgent { agent: "a" });
    assert_eq!((d.allowed, d.entry), (false, None));
    // And with no list at all.
    let a = acls(r#"{"permissive": false}"#);
    for (_, _, make) in KINDS {
        assert!(!a.allows(Some("anyone"), &make("anything")));
        assert!(!a.allows(None, &make("anything")));
    }
}

#[test]
fn permissive_true_with_no_applying_entry_allows() {
    let a = acls(&doc(
        true,
        "view_agents",
        &[(&values(&["x"]), "agents", NONE)],
    ));
    assert!(a.is_permissive_default());
    assert!(a.allows(Some("y"), &Action::ViewAgent { agent: "a" }));
    assert!(!a.allows(Some("x"), &Action::ViewAgent { agent: "a" }));
}

#[test]
fn absent_principal_never_matches_values_but_matches_any() {
    let view = Action::ViewFramework { user: "u" };
    // `values` subject: skipped for None even when the list holds odd strings.
    let a = acls(&doc(
        false,
        "view_frameworks",
        &[(&values(&["", "None", "null"]), "users", ANY)],
    ));
    assert!(!a.allows(None, &view));
    assert_eq!(a.decide(None, &view).entry, None);
    assert!(
        a.allows(Some(""), &view),
        "the empty string is a listed value"
    );
    // `ANY` subject: applies to None.
    let a = acls(&doc(false, "view_frameworks", &[(ANY, "users", ANY)]));
    assert!(a.allows(None, &view));
    assert_eq!(a.decide(None, &view).entry, Some(0));
}

#[test]
fn matching_is_exact_and_case_sensitive() {
    let a = acls(&doc(
        false,
        "register_frameworks",
        &[(&values(&["foo"]), "roles", &values(&["analytics"]))],
    ));
    let r = |role| Action::RegisterFramework { role };
    assert!(a.allows(Some("foo"), &r("analytics")));
    assert!(!a.allows(Some("Foo"), &r("analytics")));
    assert!(!a.allows(Some("foo"), &r("Analytics")));
    assert!(!a.allows(Some("fo"), &r("analytics")));
    assert!(!a.allows(Some("foo"), &r("analytics/sub")));
}

#[test]
fn mesos_documented_example() {
    let a = acls(
        r#"{
            "permissive": true,
            "register_frameworks": [
                {"principals": {"values": ["foo"]}, "roles": {"values": ["analytics"]}},
                {"principals": {"type": "NONE"}, "roles": {"values": ["analytics"]}}
            ]
        }"#,
    );
    let analytics = Action::RegisterFramework { role: "analytics" };
    let web = Action::RegisterFramework { role: "web" };
    assert!(a.allows(Some("foo"), &analytics));
    assert!(!a.allows(Some("bar"), &analytics));
    assert!(a.allows(Some("bar"), &web));
    assert!(a.allows(Some("foo"), &web));
    assert!(!a.allows(None, &analytics));
    assert_eq!(
        a.decide(Some("bar"), &analytics).to_string(),
        "denied by register_frameworks[1]"
    );
    assert_eq!(
        a.decide(Some("foo"), &analytics).to_string(),
        "allowed by register_frameworks[0]"
    );
    assert_eq!(
        a.decide(Some("bar"), &web).to_string(),
        "allowed: no register_frameworks entry applies and permissive is true"
    );
}

#[test]
fn decision_display_for_permissive_false() {
    let a = acls(r#"{"permissive": false}"#);
    assert_eq!(
        a.decide(Some("p"), &Action::DrainAgent { agent: "a" })
            .to_string(),
        "denied: no drain_agents entry applies and permissive is false"
    );
}

#[test]
fn permissive_constructor_default_and_empty_document_allow_everything() {
    for a in [
        Acls::permissive(),
        Acls::default(),
        acls("{}"),
        acls(" { } \n"),
    ] {
        assert!(a.is_permissive_default());
        assert_eq!(a.entry_count(), 0);
        for (_, _, make) in KINDS {
            assert!(a.allows(Some("p"), &make("o")));
            assert!(a.allows(None, &make("o")));
        }
    }
    assert_eq!(Acls::permissive(), acls("{}"));
    assert_eq!(
        Acls::default(),
        acls(r#"{"permissive": true, "run_tasks": []}"#)
    );
}

#[test]
fn from_str_delegates_to_parse() {
    let a: Acls = r#"{"permissive": false}"#.parse().unwrap();
    assert!(!a.is_permissive_default());
    let e = "[]".parse::<Acls>().unwrap_err();
    assert_eq!(e, Acls::parse("[]").unwrap_err());
}

// ---------------------------------------------------------------------------------------
// Parsing: accepted shapes.

#[test]
fn full_document_with_every_list_parses() {
    let mut lists = Vec::new();
    for (key, field, _) in KINDS {
        lists.push(format!(
            r#""{key}": [{{"principals": {{"values": ["p"]}}, "{field}": {{"type": "ANY"}}}}]"#
        ));
    }
    let text = format!(r#"{{"permissive": false, {}}}"#, lists.join(", "));
    let a = acls(&text);
    assert_eq!(a.entry_count(), KINDS.len());
    for (_, _, make) in KINDS {
        assert!(a.allows(Some("p"), &make("o")));
        assert!(!a.allows(Some("q"), &make("o")));
    }
}

#[test]
fn entity_shapes_accepted() {
    let parse_entity = |e: &str| {
        let a = acls(&doc(true, "run_tasks", &[(e, "users", ANY)]));
        a.lists[Kind::RunTasks.index()][0].subject.clone()
    };
    assert_eq!(parse_entity(ANY), Entity::Any);
    assert_eq!(parse_entity(NONE), Entity::None);
    assert_eq!(
        parse_entity(&values(&["a", "b"])),
        Entity::Values(vec!["a".into(), "b".into()])
    );
    // Mesos' long form.
    assert_eq!(
        parse_entity(r#"{"type": "SOME", "values": ["a"]}"#),
        Entity::Values(vec!["a".into()])
    );
    assert_eq!(
        parse_entity(r#"{"values": ["a"], "type": "SOME"}"#),
        Entity::Values(vec!["a".into()])
    );
}

#[test]
fn entry_keys_may_come_in_either_order() {
    let a =
        acls(r#"{"run_tasks": [{"users": {"type": "NONE"}, "principals": {"values": ["x"]}}]}"#);
    assert_eq!(
        a.lists[Kind::RunTasks.index()],
        vec![Entry {
            subject: Entity::Values(vec!["x".into()]),
            object: Entity::None
        }]
    );
}

// ---------------------------------------------------------------------------------------
// Parsing: errors name the path.

#[test]
fn wrong_entity_shape_names_the_path() {
    assert_eq!(
        err_text(
            r#"{"register_frameworks": [{"principals": {"type": "ANY"}, "roles": "analytics"}]}"#
        ),
        r#"register_frameworks[0].roles: expected {"values": [...]} or {"type": "ANY"|"NONE"}, found the string "analytics""#
    );
    let e = err(r#"{"run_tasks": [
            {"principals": {"type": "ANY"}, "users": {"values": ["a"]}},
            {"principals": {"type": "ANY"}, "users": ["root"]}
        ]}"#);
    assert_eq!(e.path(), Some("run_tasks[1].users"));
    assert_eq!(
        e.to_string(),
        r#"run_tasks[1].users: expected {"values": [...]} or {"type": "ANY"|"NONE"}, found a list"#
    );
    assert_eq!(
        err_text(r#"{"view_agents": [{"principals": null, "agents": {"type": "ANY"}}]}"#),
        r#"view_agents[0].principals: expected {"values": [...]} or {"type": "ANY"|"NONE"}, found null"#
    );
    assert_eq!(
        err_text(r#"{"view_agents": [{"principals": {}, "agents": {"type": "ANY"}}]}"#),
        r#"view_agents[0].principals: expected {"values": [...]} or {"type": "ANY"|"NONE"}, found an empty object"#
    );
}

#[test]
fn unknown_top_level_key_is_named_with_a_suggestion() {
    let e = err(r#"{"permissive": true, "run_task": []}"#);
    assert_eq!(e.path(), Some("run_task"));
    let text = e.to_string();
    assert!(
        text.starts_with(r#"run_task: unknown key (did you mean "run_tasks"?); known keys are "permissive", "register_frameworks", "#),
        "{text}"
    );
    assert!(text.ends_with(r#""set_log_level""#), "{text}");
    assert!(!text.contains('\n'));
    // No suggestion when nothing is close.
    let text = err_text(r#"{"frobnicate": []}"#);
    assert!(
        text.starts_with("frobnicate: unknown key; known keys are"),
        "{text}"
    );
    // Keys that are not identifiers are quoted.
    assert_eq!(err(r#"{"run tasks": []}"#).path(), Some(r#"["run tasks"]"#));
}

#[test]
fn unknown_entry_key_is_named() {
    assert_eq!(
        err_text(
            r#"{"register_frameworks": [{"principals": {"type": "ANY"}, "role": {"type": "ANY"}}]}"#
        ),
        r#"register_frameworks[0].role: unknown key (did you mean "roles"?); each register_frameworks entry has exactly "principals" and "roles""#
    );
    assert_eq!(
        err_text(
            r#"{"run_tasks": [{"principals": {"type": "ANY"}, "users": {"type": "ANY"}, "roles": {"type": "ANY"}}]}"#
        ),
        r#"run_tasks[0].roles: unknown key; each run_tasks entry has exactly "principals" and "users""#
    );
}

#[test]
fn unknown_entity_key_is_named() {
    assert_eq!(
        err_text(r#"{"run_tasks": [{"principals": {"value": ["a"]}, "users": {"type": "ANY"}}]}"#),
        r#"run_tasks[0].principals.value: unknown key (did you mean "values"?); expected {"values": [...]} or {"type": "ANY"|"NONE"}"#
    );
}

#[test]
fn missing_entry_fields_are_named() {
    assert_eq!(
        err_text(r#"{"update_weights": [{"principals": {"type": "ANY"}}]}"#),
        r#"update_weights[0].roles: missing; each update_weights entry needs both "principals" and "roles""#
    );
    assert_eq!(
        err(r#"{"update_membership": [{"members": {"type": "ANY"}}]}"#).path(),
        Some("update_membership[0].principals")
    );
    assert_eq!(
        err(r#"{"drain_agents": [{}]}"#).path(),
        Some("drain_agents[0].principals")
    );
}

#[test]
fn empty_values_is_an_error_that_says_so() {
    let e = err(
        r#"{"register_frameworks": [{"principals": {"values": []}, "roles": {"type": "ANY"}}]}"#,
    );
    assert_eq!(e.path(), Some("register_frameworks[0].principals.values"));
    assert_eq!(
        e.to_string(),
        r#"register_frameworks[0].principals.values: empty list; it would match nothing (use {"type": "NONE"} to deny everyone, or list at least one value)"#
    );
    assert_eq!(
        err(r#"{"run_tasks": [{"principals": {"type": "ANY"}, "users": {"type": "SOME", "values": []}}]}"#)
            .path(),
        Some("run_tasks[0].users.values")
    );
}

#[test]
fn wrong_types_are_named() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"permissive": "false"}"#,
            r#"permissive: expected true or false, found the string "false""#,
        ),
        (
            r#"{"permissive": 0}"#,
            "permissive: expected true or false, found a number",
        ),
        (
            r#"{"run_tasks": {"principals": {"type": "ANY"}, "users": {"type": "ANY"}}}"#,
            r#"run_tasks: expected a list of entries like [{"principals": ..., "users": ...}], found an object"#,
        ),
        (
            r#"{"view_tasks": null}"#,
            r#"view_tasks: expected a list of entries like [{"principals": ..., "users": ...}], found null"#,
        ),
        (
            r#"{"teardown_frameworks": ["x"]}"#,
            r#"teardown_frameworks[0]: expected an object with "principals" and "framework_principals", found the string "x""#,
        ),
        (
            r#"{"run_tasks": [{"principals": {"values": "alice"}, "users": {"type": "ANY"}}]}"#,
            r#"run_tasks[0].principals.values: expected a list of strings, found the string "alice""#,
        ),
        (
            r#"{"update_membership": [{"principals": {"type": "ANY"}, "members": {"values": ["1", 2]}}]}"#,
            "update_membership[0].members.values[1]: expected a string, found a number",
        ),
        (
            r#"{"run_tasks": [{"principals": {"type": "any"}, "users": {"type": "ANY"}}]}"#,
            r#"run_tasks[0].principals.type: expected "ANY" or "NONE", found the string "any" (type names are upper case)"#,
        ),
        (
            r#"{"run_tasks": [{"principals": {"type": "ALL"}, "users": {"type": "ANY"}}]}"#,
            r#"run_tasks[0].principals.type: expected "ANY" or "NONE", found the string "ALL""#,
        ),
        (
            r#"{"run_tasks": [{"principals": {"type": 1}, "users": {"type": "ANY"}}]}"#,
            r#"run_tasks[0].principals.type: expected "ANY" or "NONE", found a number"#,
        ),
        (
            r#"{"run_tasks": [{"principals": {"type": "ANY", "values": ["a"]}, "users": {"type": "ANY"}}]}"#,
            r#"run_tasks[0].principals: "type": "ANY" cannot be combined with "values"; use one or the other"#,
        ),
        (
            r#"{"run_tasks": [{"principals": {"type": "NONE", "values": ["a"]}, "users": {"type": "ANY"}}]}"#,
            r#"run_tasks[0].principals: "type": "NONE" cannot be combined with "values"; use one or the other"#,
        ),
        (
            r#"{"run_tasks": [{"principals": {"type": "SOME"}, "users": {"type": "ANY"}}]}"#,
            r#"run_tasks[0].principals: "type": "SOME" needs a non-empty "values" list"#,
        ),
        (
            "[]",
            r#"top level: expected a JSON object like {"permissive": false, "run_tasks": [...]}, found an empty list"#,
        ),
        (
            "true",
            r#"top level: expected a JSON object like {"permissive": false, "run_tasks": [...]}, found true"#,
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(&err_text(text), expected, "for {text}");
    }
}

#[test]
fn duplicate_keys_are_errors_not_silently_merged() {
    // A second list would otherwise erase the first one, deny entries included.
    let e = err(
        r#"{"run_tasks": [{"principals": {"type": "NONE"}, "users": {"type": "ANY"}}],
            "run_tasks": []}"#,
    );
    assert_eq!(e.path(), Some("run_tasks"));
    assert_eq!(
        e.to_string(),
        "run_tasks: key appears more than once in the same object; merge the two into one"
    );
    assert_eq!(
        err(r#"{"permissive": false, "permissive": true}"#).path(),
        Some("permissive")
    );
    assert_eq!(
        err(r#"{"run_tasks": [{"principals": {"type": "ANY"}, "principals": {"type": "NONE"}, "users": {"type": "ANY"}}]}"#)
            .path(),
        Some("run_tasks[0].principals")
    );
    assert_eq!(
        err(r#"{"run_tasks": [{"principals": {"values": ["a"], "values": ["b"]}, "users": {"type": "ANY"}}]}"#)
            .path(),
        Some("run_tasks[0].principals.values")
    );
}

#[test]
fn the_first_error_in_document_order_is_reported() {
    let e = err(
        r#"{"run_tasks": [{"principals": {"type": "ANY"}, "users": 1}],
            "bogus": 1}"#,
    );
    assert_eq!(e.path(), Some("run_tasks[0].users"));
}

#[test]
fn invalid_json_reports_line_and_column() {
    let e = err("{\n  \"permissive\": true,\n  \"run_tasks\": [\n}");
    match &e {
        AclError::Syntax { line, column, .. } => assert_eq!((*line, *column), (4, 1)),
        other => panic!("expected a syntax error, got {other:?}"),
    }
    assert_eq!(e.path(), None);
    let text = e.to_string();
    assert!(
        text.starts_with("ACL document is not valid JSON: "),
        "{text}"
    );
    assert!(text.ends_with("at line 4 column 1"), "{text}");
    assert!(!text.contains('\n'));

    for bad in [
        "",
        "   ",
        "{} {}",
        "{\"permissive\": true,}",
        "{'run_tasks': []}",
    ] {
        assert!(
            matches!(Acls::parse(bad), Err(AclError::Syntax { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn errors_are_one_line() {
    let texts = [
        r#"{"run_tasks": [{"principals": {"values": ["a\nb", 1]}, "users": {"type": "ANY"}}]}"#,
        "{\"run\\ntasks\": []}",
        r#"{"run_tasks": [{"principals": {"type": "line\nbreak"}, "users": {"type": "ANY"}}]}"#,
    ];
    for text in texts {
        let e = err_text(text);
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn long_strings_are_truncated_in_messages() {
    let long = "x".repeat(500);
    let text = format!(r#"{{"permissive": "{long}"}}"#);
    let e = err_text(&text);
    assert!(e.len() < 120, "{e}");
    assert!(e.ends_with(r#"..."#), "{e}");
}

#[test]
fn edit_distance_behind_suggestions() {
    use crate::parse::edit_distance;
    assert_eq!(edit_distance("run_task", "run_tasks"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("same", "same"), 0);
}
