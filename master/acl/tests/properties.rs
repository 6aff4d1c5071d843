//! Properties of the decision rules, checked on generated ACL documents.
//!
//! Documents are generated as test-side data, rendered to JSON and parsed, so the parser is
//! exercised too. A small name pool makes matches (and non-matches) frequent.

use agora_acl::{Acls, Action};
use proptest::prelude::*;
use serde_json::{json, Value};

const KEYS: [(&str, &str); 10] = [
    ("register_frameworks", "roles"),
    ("run_tasks", "users"),
    ("teardown_frameworks", "framework_principals"),
    ("update_weights", "roles"),
    ("view_frameworks", "users"),
    ("view_tasks", "users"),
    ("view_agents", "agents"),
    ("register_agents", "agents"),
    ("update_membership", "members"),
    ("drain_agents", "agents"),
];
const TEARDOWN: usize = 2;
const POOL: [&str; 4] = ["a", "b", "c", "d"];

#[derive(Debug, Clone, PartialEq)]
enum E {
    Any,
    None,
    Values(Vec<&'static str>),
}

type Entry = (E, E);

#[derive(Debug, Clone)]
struct Request {
    kind: usize,
    principal: Option<&'static str>,
    object: Option<&'static str>,
}

impl Request {
    fn action(&self) -> Action<'static> {
        let o = self.object;
        let s = || o.expect("only teardown has an optional object");
        match self.kind {
            0 => Action::RegisterFramework { role: s() },
            1 => Action::RunTask { user: s() },
            TEARDOWN => Action::TeardownFramework {
                framework_principal: o,
            },
            3 => Action::UpdateWeight { role: s() },
            4 => Action::ViewFramework { user: s() },
            5 => Action::ViewTask { user: s() },
            6 => Action::ViewAgent { agent: s() },
            7 => Action::RegisterAgent { agent: s() },
            8 => Action::UpdateMembership { member: s() },
            9 => Action::DrainAgent { agent: s() },
            _ => unreachable!(),
        }
    }
}

fn entity_json(e: &E) -> Value {
    match e {
        E::Any => json!({"type": "ANY"}),
        E::None => json!({"type": "NONE"}),
        E::Values(vs) => json!({ "values": vs }),
    }
}

fn render(permissive: Option<bool>, lists: &[Vec<Entry>]) -> String {
    let mut doc = serde_json::Map::new();
    if let Some(p) = permissive {
        doc.insert("permissive".into(), json!(p));
    }
    for (k, list) in lists.iter().enumerate() {
        let (key, field) = KEYS[k];
        let entries: Vec<Value> = list
            .iter()
            .map(|(s, o)| json!({"principals": entity_json(s), field: entity_json(o)}))
            .collect();
        doc.insert(key.into(), Value::Array(entries));
    }
    Value::Object(doc).to_string()
}

fn parse(permissive: Option<bool>, lists: &[Vec<Entry>]) -> Acls {
    let text = render(permissive, lists);
    Acls::parse(&text).unwrap_or_else(|e| panic!("generated document must parse: {e}\n{text}"))
}

// Reference model, written independently of the crate.
fn model_matches(e: &E, v: Option<&str>) -> bool {
    match e {
        E::Any | E::None => true,
        E::Values(vs) => matches!(v, Some(v) if vs.contains(&v)),
    }
}

fn model_applies((s, o): &Entry, r: &Request) -> bool {
    model_matches(s, r.principal) && model_matches(o, r.object)
}

/// (allowed, index of deciding entry)
fn model_decide(permissive: bool, list: &[Entry], r: &Request) -> (bool, Option<usize>) {
    for (i, entry) in list.iter().enumerate() {
        if model_applies(entry, r) {
            return (entry.0 != E::None && entry.1 != E::None, Some(i));
        }
    }
    (permissive, None)
}

fn values_from(pool: Vec<&'static str>) -> impl Strategy<Value = E> {
    let max = pool.len().min(3);
    proptest::sample::subsequence(pool, 1..=max).prop_map(E::Values)
}

fn entity() -> impl Strategy<Value = E> {
    prop_oneof![
        1 => Just(E::Any),
        1 => Just(E::None),
        3 => values_from(POOL.to_vec()),
    ]
}

/// Values that do not include `v` (any values when `v` is absent): never matches `v`.
fn missing(v: Option<&'static str>) -> impl Strategy<Value = E> {
    values_from(POOL.iter().copied().filter(|p| Some(*p) != v).collect())
}

fn entry() -> impl Strategy<Value = Entry> {
    (entity(), entity())
}

fn lists() -> impl Strategy<Value = Vec<Vec<Entry>>> {
    proptest::collection::vec(proptest::collection::vec(entry(), 0..6), KEYS.len())
}

fn name() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(POOL.to_vec())
}

fn request() -> impl Strategy<Value = Request> {
    (0..KEYS.len()).prop_flat_map(|kind| {
        let object = if kind == TEARDOWN {
            proptest::option::of(name()).boxed()
        } else {
            name().prop_map(Some).boxed()
        };
        (proptest::option::of(name()), object).prop_map(move |(principal, object)| Request {
            kind,
            principal,
            object,
        })
    })
}

/// An entry that, by construction, does not apply to `r`: one side misses, the other side
/// is anything (NONE included).
fn non_applying(r: &Request) -> impl Strategy<Value = Entry> {
    prop_oneof![
        (missing(r.principal), entity()),
        (entity(), missing(r.object)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (1) A list whose first entry is {ANY, ANY} allows everything, whatever follows and
    /// whatever `permissive` says.
    #[test]
    fn any_any_first_allows_everything(
        mut lists in lists(),
        r in request(),
        permissive in any::<bool>(),
    ) {
        lists[r.kind].insert(0, (E::Any, E::Any));
        let acls = parse(Some(permissive), &lists);
        let d = acls.decide(r.principal, &r.action());
        prop_assert!(d.allowed);
        prop_assert_eq!(d.entry, Some(0));
    }

    /// (2) Prepending an entry that does not apply to a request never changes the decision
    /// (only shifts the deciding index by one).
    #[test]
    fn prepending_a_non_applying_entry_changes_nothing(
        (lists, r, extra) in (lists(), request())
            .prop_flat_map(|(l, r)| {
                let extra = non_applying(&r);
                (Just(l), Just(r), extra)
            }),
        permissive in any::<bool>(),
    ) {
        prop_assert!(!model_applies(&extra, &r), "generator bug: {:?} applies", extra);
        let before = parse(Some(permissive), &lists).decide(r.principal, &r.action());
        let mut longer = lists.clone();
        longer[r.kind].insert(0, extra);
        let after = parse(Some(permissive), &longer).decide(r.principal, &r.action());
        prop_assert_eq!(after.allowed, before.allowed);
        prop_assert_eq!(after.entry, before.entry.map(|i| i + 1));
    }

    /// (3) `permissive` only matters when no entry applies; then it is the answer.
    #[test]
    fn permissive_matters_only_when_no_entry_applies(lists in lists(), r in request()) {
        let yes = parse(Some(true), &lists).decide(r.principal, &r.action());
        let no = parse(Some(false), &lists).decide(r.principal, &r.action());
        let default = parse(None, &lists).decide(r.principal, &r.action());
        prop_assert_eq!(default, yes, "absent permissive means true");
        let some_entry_applies = lists[r.kind].iter().any(|e| model_applies(e, &r));
        if some_entry_applies {
            prop_assert_eq!(yes, no);
            prop_assert!(yes.entry.is_some());
        } else {
            prop_assert!(yes.allowed);
            prop_assert!(!no.allowed);
            prop_assert_eq!((yes.entry, no.entry), (None, None));
        }
    }

    /// The crate agrees with the reference model on every request, and only the request's
    /// own list matters.
    #[test]
    fn agrees_with_reference_model(lists in lists(), r in request(), permissive in any::<bool>()) {
        let acls = parse(Some(permissive), &lists);
        let d = acls.decide(r.principal, &r.action());
        let (allowed, entry) = model_decide(permissive, &lists[r.kind], &r);
        prop_assert_eq!((d.allowed, d.entry), (allowed, entry));
        prop_assert_eq!(d.acl_key, KEYS[r.kind].0);
        prop_assert_eq!(acls.allows(r.principal, &r.action()), allowed);
        prop_assert_eq!(acls.entry_count(), lists.iter().map(Vec::len).sum::<usize>());
    }

    /// Parsing never panics, and every error is one line.
    #[test]
    fn parse_is_total_and_errors_are_one_line(text in "\\PC{0,64}") {
        if let Err(e) = Acls::parse(&text) {
            prop_assert!(!e.to_string().contains('\n'));
        }
    }

    /// Damaging one entity of a valid document is reported at that entity's path.
    #[test]
    fn damaged_entity_is_reported_at_its_path(
        lists in lists(),
        which in any::<proptest::sample::Index>(),
        side in any::<bool>(),
        damage in prop_oneof![
            Just(json!("ANY")),
            Just(json!({"type": "ANY", "values": ["a"]})),
            Just(json!({"values": []})),
            Just(json!({"type": "ALL"})),
            Just(json!({"value": ["a"]})),
            Just(json!(null)),
            Just(json!({})),
        ],
    ) {
        let positions: Vec<(usize, usize)> = lists
            .iter()
            .enumerate()
            .flat_map(|(k, l)| (0..l.len()).map(move |i| (k, i)))
            .collect();
        prop_assume!(!positions.is_empty());
        let (k, i) = positions[which.index(positions.len())];
        let (key, object_field) = KEYS[k];
        let field = if side { "principals" } else { object_field };
        let mut doc: Value = serde_json::from_str(&render(Some(true), &lists)).unwrap();
        doc[key][i][field] = damage;
        let e = Acls::parse(&doc.to_string()).unwrap_err();
        let expected_prefix = format!("{key}[{i}].{field}");
        let path = e.path().expect("JSON is valid, so the error has a path");
        prop_assert!(path.starts_with(&expected_prefix), "{} does not start with {}", path, expected_prefix);
    }
}
