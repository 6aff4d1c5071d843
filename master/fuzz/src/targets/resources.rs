//! Target `resources`: the Mesos resource text parser and resource arithmetic.
//!
//! The input is read three ways: as text (lossy UTF-8) for `Resources::parse`; its first
//! two lines as two resource strings whose arithmetic is checked; and as bytes from which
//! [`Bytes`] builds raw range pairs and resource items over a small domain (ports near 0
//! and near `u64::MAX`, amounts up to overflow). Every result is checked against a naive
//! model: scalars as `u128` sums, ranges as sets of the elementary intervals cut by every
//! endpoint (on small ranges, the set of integers itself). A broken law panics.

use std::collections::{BTreeMap, BTreeSet};

use agora_registry::resources::{
    AmountError, Ranges, SummaryValue, MAX_RANGES_PER_RESOURCE, MAX_RESOURCES, MAX_SCALAR_UNITS,
};
use agora_registry::{Resource, ResourceError, Resources, Scalar, Value};

use crate::engine::Features;
use crate::input::Bytes;

pub const DICTIONARY: &[&[u8]] = &[
    b"cpus",
    b"mem",
    b"disk",
    b"ports",
    b"gpus",
    b":",
    b";",
    b"(",
    b")",
    b"(*)",
    b"(web)",
    b"(a/b)",
    b"[",
    b"]",
    b"-",
    b",",
    b".",
    b"\n",
    b" ",
    b"0",
    b"1",
    b"0.001",
    b"0.0005",
    b"1e12",
    b"1e-3",
    b"999999999999.9995",
    b"1000000000000",
    b"1000000000000.001",
    b"NaN",
    b"inf",
    b"-0",
    b"-1",
    b"18446744073709551615",
    b"18446744073709551614",
    b"18446744073709551616",
    b"0-18446744073709551615",
    b"[0-0]",
    b"[1-2,3-4]",
    b"{a,b}",
];

/// The largest scalar the parser accepts, in thousandths.
const MAX_MILLIS: u64 = (MAX_SCALAR_UNITS * 1000.0) as u64;

pub fn run(data: &[u8], f: &mut Features) {
    let text = String::from_utf8_lossy(data);
    parse(&text, f);
    let mut lines = text.split('\n');
    if let (Some(a), Some(b)) = (lines.next(), lines.next()) {
        if let (Some(ra), Some(rb)) = (parse(a, f), parse(b, f)) {
            f.tag("laws:parsed");
            laws(&ra, &rb, f);
        }
    }
    structured(data, f);
}

/// `Resources::parse`, and the laws of a value it returns.
fn parse(text: &str, f: &mut Features) -> Option<Resources> {
    match Resources::parse(text) {
        Err(e) => {
            f.tag_text("parse-error", &error_kind(&e));
            None
        }
        Ok(r) => {
            f.tag_n("parsed-entries", r.iter().count() as u64);
            check_value(&r, f);
            // Built from input: within the limits.
            assert!(
                r.iter().count() <= MAX_RESOURCES,
                "too many entries from input\n{r}"
            );
            for e in r.iter() {
                if let Value::Ranges(rs) = &e.value {
                    assert!(
                        rs.pairs().len() <= MAX_RANGES_PER_RESOURCE,
                        "too many ranges from input\n{r}"
                    );
                }
            }
            // What parse accepted, its text form gives back (agents checkpoint a task's
            // resources as this text and parse it again when they restart).
            let shown = r.to_string();
            match Resources::parse(&shown) {
                Ok(back) => assert_eq!(back, r, "parse(display(r)) != r\ninput {text:?}"),
                Err(e) => panic!(
                    "parse refuses the text form of a value it returned: {}\ninput {text:?}\nshown {shown:?}\nerror {e}",
                    error_kind(&e)
                ),
            }
            // The checked constructor agrees.
            let items: Vec<Resource> = r.iter().cloned().collect();
            assert_eq!(Resources::from_checked(items), Ok(r.clone()));
            Some(r)
        }
    }
}

fn error_kind(e: &ResourceError) -> String {
    match e {
        ResourceError::Parse { reason, .. } => format!("parse {reason}"),
        ResourceError::Amount { source, .. } => format!("amount {}", amount_kind(source)),
        ResourceError::Role { reason, .. } => format!("role {reason}"),
        ResourceError::Name { reason, .. } => format!("name {reason}"),
        ResourceError::TooManyResources { .. } => "too many".into(),
    }
}

fn amount_kind(e: &AmountError) -> &'static str {
    match e {
        AmountError::Negative => "negative",
        AmountError::NotANumber => "nan",
        AmountError::Infinite => "infinite",
        AmountError::TooLarge => "too large",
        AmountError::InvertedRange(..) => "inverted",
        AmountError::TooManyRanges { .. } => "too many ranges",
    }
}

// ----- the model -----

type Key = (String, Option<String>);

/// A resources value as plain maps (it must be normalized: see [`check_normalized`]).
#[derive(Debug, Default, PartialEq)]
struct Bag {
    scalars: BTreeMap<Key, u128>,
    ranges: BTreeMap<Key, Vec<(u64, u64)>>,
}

fn bag(r: &Resources) -> Bag {
    let mut out = Bag::default();
    for e in r.iter() {
        let key = (e.name.clone(), e.role.clone());
        match &e.value {
            Value::Scalar(s) => {
                *out.scalars.entry(key).or_default() += s.millis() as u128;
            }
            Value::Ranges(rs) => out
                .ranges
                .entry(key)
                .or_default()
                .extend_from_slice(rs.pairs()),
        }
    }
    out
}

/// Sorted, unique keys `(name, role, kind)`, no empty amount, ranges sorted, disjoint and
/// not adjacent.
fn check_normalized(r: &Resources) {
    let keys: Vec<(&str, Option<&str>, u8)> = r
        .iter()
        .map(|e| {
            let kind = match e.value {
                Value::Scalar(_) => 0,
                Value::Ranges(_) => 1,
            };
            (e.name.as_str(), e.role.as_deref(), kind)
        })
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "entries not sorted or not unique\n{r:?}"
    );
    for e in r.iter() {
        match &e.value {
            Value::Scalar(s) => assert!(!s.is_zero(), "empty scalar\n{r:?}"),
            Value::Ranges(rs) => {
                assert!(!rs.is_empty(), "empty ranges\n{r:?}");
                check_ranges_normalized(rs);
            }
        }
    }
}

fn check_ranges_normalized(rs: &Ranges) {
    let p = rs.pairs();
    assert!(p.iter().all(|(b, e)| b <= e), "inverted pair\n{p:?}");
    assert!(
        p.windows(2)
            .all(|w| w[0].1.checked_add(1).is_some_and(|next| next < w[1].0)),
        "pairs not sorted, disjoint and apart\n{p:?}"
    );
}

/// The integers split into elementary intervals `[p[k], p[k+1])` by every range endpoint
/// of some lists (as `begin` and `end + 1`, in `u128`): each interval lies wholly inside
/// or outside every list's set, so a set is a `Vec<bool>` over them. With endpoints below
/// a few hundred this is the set of integers itself.
struct Grid(Vec<u128>);

impl Grid {
    fn new(lists: &[&[(u64, u64)]]) -> Grid {
        let mut p: Vec<u128> = lists
            .iter()
            .flat_map(|l| l.iter())
            .flat_map(|&(b, e)| [b as u128, e as u128 + 1])
            .collect();
        p.sort_unstable();
        p.dedup();
        Grid(p)
    }

    fn index(&self, x: u128) -> usize {
        self.0
            .binary_search(&x)
            .expect("every endpoint is on the grid")
    }

    /// The set of `pairs` (inverted pairs are empty).
    fn set(&self, pairs: &[(u64, u64)]) -> Vec<bool> {
        let n = self.0.len();
        let mut delta = vec![0i64; n + 1];
        for &(b, e) in pairs.iter().filter(|(b, e)| b <= e) {
            delta[self.index(b as u128)] += 1;
            delta[self.index(e as u128 + 1)] -= 1;
        }
        let mut depth = 0;
        (0..n.saturating_sub(1))
            .map(|k| {
                depth += delta[k];
                depth > 0
            })
            .collect()
    }

    /// How many integers the set holds.
    fn width(&self, set: &[bool]) -> u128 {
        set.iter()
            .enumerate()
            .filter(|(_, &x)| x)
            .map(|(k, _)| self.0[k + 1] - self.0[k])
            .sum()
    }
}

fn or(x: &[bool], y: &[bool]) -> Vec<bool> {
    x.iter().zip(y).map(|(a, b)| *a || *b).collect()
}
fn and(x: &[bool], y: &[bool]) -> Vec<bool> {
    x.iter().zip(y).map(|(a, b)| *a && *b).collect()
}
fn minus(x: &[bool], y: &[bool]) -> Vec<bool> {
    x.iter().zip(y).map(|(a, b)| *a && !*b).collect()
}
fn subset(x: &[bool], y: &[bool]) -> bool {
    x.iter().zip(y).all(|(a, b)| !*a || *b)
}

// ----- laws -----

/// Laws of one value.
fn check_value(r: &Resources, f: &mut Features) {
    check_normalized(r);
    let m = bag(r);
    // JSON (the log and snapshots) gives the value back.
    let json = serde_json::to_string(r).expect("resources serialize");
    let back: Resources = serde_json::from_str(&json).expect("resources deserialize");
    assert_eq!(&back, r, "JSON round trip");
    // Totals and summaries.
    let names: BTreeSet<&str> = r.iter().map(|e| e.name.as_str()).collect();
    let summary = r.summary();
    for name in &names {
        let total: u128 = m
            .scalars
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, v)| *v)
            .sum();
        assert_eq!(
            r.scalar_total(name).millis() as u128,
            total.min(u64::MAX as u128),
            "scalar_total != model\n{name} of {r}"
        );
        match summary.get(*name) {
            Some(SummaryValue::Number(n)) => {
                if total <= MAX_MILLIS as u128 {
                    assert_eq!(
                        *n,
                        Scalar::from_millis(total as u64).as_f64(),
                        "summary != model\n{name} of {r}"
                    );
                } else {
                    f.tag("summary-over-max");
                }
            }
            Some(SummaryValue::Ranges(got)) => {
                let all: Vec<(u64, u64)> = m
                    .ranges
                    .iter()
                    .filter(|((n, _), _)| n == name)
                    .flat_map(|(_, v)| v.iter().copied())
                    .collect();
                let g = Grid::new(&[&all, got.pairs()]);
                assert_eq!(
                    g.set(got.pairs()),
                    g.set(&all),
                    "summary != model\n{name} of {r}"
                );
            }
            None => panic!("summary lacks a name\n{name} of {r}"),
        }
    }
    // What a role may be offered: exactly the unreserved entries and its own.
    for role in ["web", "db", "*"] {
        let mine = r.allocatable_to(role);
        check_normalized(&mine);
        assert!(r.contains(&mine));
        let expected: Vec<&Resource> = r
            .iter()
            .filter(|e| e.role.as_deref().is_none_or(|x| x == role))
            .collect();
        assert!(
            mine.iter().eq(expected.into_iter()),
            "allocatable_to({role})"
        );
    }
    // Identities.
    let empty = Resources::new();
    assert!(r.contains(r));
    assert!(r.contains(&empty));
    assert_eq!(empty.contains(r), r.is_empty());
    assert_eq!(r.checked_sub(r), Some(empty.clone()));
    assert_eq!(r.saturating_sub(r), empty);
    assert_eq!(r.plus(&empty), *r);
    assert_eq!(empty.plus(r), *r);
    assert_eq!(r.checked_sub(&empty).as_ref(), Some(r));
}

/// Laws of two values: their sum, differences and containment against the model.
fn laws(a: &Resources, b: &Resources, f: &mut Features) {
    check_normalized(a);
    check_normalized(b);
    let (ma, mb) = (bag(a), bag(b));

    let sum = a.plus(b);
    check_normalized(&sum);
    assert_eq!(sum, b.plus(a), "a + b != b + a");
    let mut added = a.clone();
    added.add(b);
    assert_eq!(added, sum, "add != plus");
    let sat = a.saturating_sub(b);
    check_normalized(&sat);
    let checked = a.checked_sub(b);
    let contains = a.contains(b);
    let (ms, msat) = (bag(&sum), bag(&sat));

    // Scalars: u128 sums, saturating at u64::MAX as the implementation documents.
    let mut saturated = false;
    let mut model_contains = true;
    let scalar_keys: BTreeSet<&Key> = ma.scalars.keys().chain(mb.scalars.keys()).collect();
    for k in scalar_keys {
        let x = ma.scalars.get(k).copied().unwrap_or(0);
        let y = mb.scalars.get(k).copied().unwrap_or(0);
        saturated |= x + y > u64::MAX as u128;
        let want_sum = (x + y).min(u64::MAX as u128);
        assert_eq!(
            ms.scalars.get(k).copied().unwrap_or(0),
            want_sum,
            "a + b != model\n{k:?}"
        );
        let want_sat = x.saturating_sub(y);
        assert_eq!(
            msat.scalars.get(k).copied().unwrap_or(0),
            want_sat,
            "a - b != model\n{k:?}"
        );
        model_contains &= x >= y;
    }
    // Ranges: sets on a grid of every endpoint.
    let mut overlap = false;
    let empty: Vec<(u64, u64)> = Vec::new();
    let range_keys: BTreeSet<&Key> = ma.ranges.keys().chain(mb.ranges.keys()).collect();
    for k in range_keys {
        let x = ma.ranges.get(k).unwrap_or(&empty);
        let y = mb.ranges.get(k).unwrap_or(&empty);
        let s = ms.ranges.get(k).unwrap_or(&empty);
        let d = msat.ranges.get(k).unwrap_or(&empty);
        let g = Grid::new(&[x, y, s, d]);
        let (gx, gy) = (g.set(x), g.set(y));
        assert_eq!(g.set(s), or(&gx, &gy), "a + b != model\n{k:?}");
        assert_eq!(g.set(d), minus(&gx, &gy), "a - b != model\n{k:?}");
        model_contains &= subset(&gy, &gx);
        overlap |= and(&gx, &gy).iter().any(|&v| v);
    }
    assert_eq!(contains, model_contains, "contains != model\n{a}\n{b}");
    match &checked {
        Some(c) => assert_eq!(c, &sat, "checked_sub != saturating_sub"),
        None => assert!(!contains, "checked_sub refused what contains accepts"),
    }
    f.tag_n("contains", contains as u64);
    f.tag_n("saturated", saturated as u64);
    f.tag_n("overlap", overlap as u64);
    f.tag_n("sum-entries", sum.iter().count().min(16) as u64);

    // a + b - b: always defined; a itself when nothing saturated or overlapped.
    let back = sum.checked_sub(b).expect("a + b contains b");
    assert_eq!(back, sum.saturating_sub(b));
    if !saturated && !overlap {
        assert_eq!(&back, a, "a + b - b != a");
    } else {
        // (a ∪ b) \ b = a \ b for ranges; min(a + b, MAX) - b for scalars.
        let mback = bag(&back);
        for (k, v) in &mback.ranges {
            let x = ma.ranges.get(k).unwrap_or(&empty);
            let y = mb.ranges.get(k).unwrap_or(&empty);
            let g = Grid::new(&[x, y, v]);
            assert_eq!(
                g.set(v),
                minus(&g.set(x), &g.set(y)),
                "a + b - b != model\n{k:?}"
            );
        }
    }
    assert!(sum.contains(a) && sum.contains(b));
    assert!(a.contains(&sat));
    // What b leaves of a, with what it took, is a again (no saturation in a's scalars).
    if !saturated {
        let taken = a.saturating_sub(&sat);
        assert_eq!(sat.plus(&taken), *a, "(a - b) + (a - (a - b)) != a");
    }
}

// ----- structured input -----

fn structured(data: &[u8], f: &mut Features) {
    let mut r = Bytes::new(data);
    let raw_a = raw_pairs(&mut r);
    let raw_b = raw_pairs(&mut r);
    let x = ranges_new(&raw_a, f);
    let y = ranges_new(&raw_b, f);
    if let (Some(x), Some(y)) = (x, y) {
        range_laws(&x, &y, f);
    }
    let items_a = items(&mut r);
    let items_b = items(&mut r);
    let a = from_items(items_a, f);
    let b = from_items(items_b, f);
    laws(&a, &b, f);
}

/// Endpoints near 0, near `u64::MAX`, spanning both, the edges, inverted or anything.
fn edge_pair(r: &mut Bytes) -> (u64, u64) {
    const SPAN: u64 = 150;
    match r.below(16) {
        0..=7 => {
            let b = r.below(SPAN as usize) as u64;
            (b, (b + r.below(25) as u64).min(SPAN - 1))
        }
        8..=10 => {
            let b = u64::MAX - r.below(SPAN as usize) as u64;
            (b, b.saturating_add(r.below(25) as u64))
        }
        11 => (
            r.below(SPAN as usize) as u64,
            u64::MAX - r.below(SPAN as usize) as u64,
        ),
        12 => *r.pick(&[
            (0, 0),
            (u64::MAX, u64::MAX),
            (0, u64::MAX),
            (u64::MAX - 1, u64::MAX),
            (0, 1),
        ]),
        13 => {
            let b = r.below(SPAN as usize) as u64;
            (b + 1 + r.below(5) as u64, b)
        }
        _ => (r.u64(), r.u64()),
    }
}

fn raw_pairs(r: &mut Bytes) -> Vec<(u64, u64)> {
    let n = match r.u8() {
        // Now and then past the limit on ranges from input.
        0xff => MAX_RANGES_PER_RESOURCE - 2 + r.below(8),
        n => n as usize % 12,
    };
    if n > 12 {
        // Many one-integer ranges two apart, from a start the input chooses.
        let start = r.u16() as u64;
        return (0..n as u64)
            .map(|i| (start + 2 * i, start + 2 * i))
            .collect();
    }
    (0..n).map(|_| edge_pair(r)).collect()
}

/// `Ranges::new` against the model: the first inverted pair or the count is refused,
/// otherwise the same set, normalized, whichever way it is built.
fn ranges_new(raw: &[(u64, u64)], f: &mut Features) -> Option<Ranges> {
    let result = Ranges::new(raw.iter().copied());
    if raw.len() > MAX_RANGES_PER_RESOURCE {
        assert_eq!(
            result,
            Err(AmountError::TooManyRanges { count: raw.len() }),
            "too many pairs not refused\n{} pairs",
            raw.len()
        );
        f.tag("ranges:too-many");
        return None;
    }
    if let Some(&(b, e)) = raw.iter().find(|(b, e)| b > e) {
        assert_eq!(result, Err(AmountError::InvertedRange(b, e)));
        assert!(Ranges::try_from(raw.to_vec()).is_err());
        f.tag("ranges:inverted");
        return None;
    }
    let rs = result.expect("valid pairs are accepted");
    check_ranges_normalized(&rs);
    let g = Grid::new(&[raw, rs.pairs()]);
    assert_eq!(
        g.set(rs.pairs()),
        g.set(raw),
        "Ranges::new != model\n{raw:?}"
    );
    assert_eq!(
        rs.count() as u128,
        g.width(&g.set(raw)).min(u64::MAX as u128),
        "count != model\n{rs}"
    );
    assert_eq!(Ranges::try_from(raw.to_vec()).as_ref(), Ok(&rs));
    let json = serde_json::to_string(raw).expect("pairs serialize");
    let back: Ranges = serde_json::from_str(&json).expect("pairs deserialize");
    assert_eq!(back, rs, "deserializing != Ranges::new\n{json}");
    f.tag_n("ranges:pairs", rs.pairs().len().min(8) as u64);
    Some(rs)
}

/// Set operations of two ranges values against the model.
fn range_laws(x: &Ranges, y: &Ranges, f: &mut Features) {
    let union = x.union(y);
    let inter = x.intersection(y);
    let diff = x.difference(y);
    for r in [&union, &inter, &diff] {
        check_ranges_normalized(r);
    }
    let g = Grid::new(&[
        x.pairs(),
        y.pairs(),
        union.pairs(),
        inter.pairs(),
        diff.pairs(),
    ]);
    let (gx, gy) = (g.set(x.pairs()), g.set(y.pairs()));
    assert_eq!(
        g.set(union.pairs()),
        or(&gx, &gy),
        "union != model\n{x} ∪ {y}"
    );
    assert_eq!(
        g.set(inter.pairs()),
        and(&gx, &gy),
        "intersection != model\n{x} ∩ {y}"
    );
    assert_eq!(
        g.set(diff.pairs()),
        minus(&gx, &gy),
        "difference != model\n{x} \\ {y}"
    );
    let contains = x.contains(y);
    assert_eq!(
        contains,
        subset(&gy, &gx),
        "contains != model\n{x} contains {y}"
    );
    match x.checked_sub(y) {
        Some(d) => {
            assert!(contains);
            assert_eq!(d, diff);
        }
        None => assert!(!contains),
    }
    assert_eq!(union, y.union(x));
    assert_eq!(inter, y.intersection(x));
    assert_eq!(diff.union(&inter), *x);
    assert!(diff.intersection(y).is_empty());
    assert!(union.contains(x) && union.contains(y) && x.contains(&inter));
    assert_eq!(
        union.count() as u128,
        g.width(&or(&gx, &gy)).min(u64::MAX as u128)
    );
    f.tag_n("ranges:contains", contains as u64);
    f.tag_n("ranges:inter", inter.pairs().len().min(8) as u64);
    f.tag_n("ranges:diff", diff.pairs().len().min(8) as u64);
}

fn items(r: &mut Bytes) -> Vec<Resource> {
    let n = r.below(8);
    (0..n)
        .map(|_| {
            let name = r
                .pick_str(&["cpus", "mem", "ports", "disk", "zz"])
                .to_string();
            let role = r
                .pick(&[None, Some("web"), Some("db"), Some("a/b")])
                .map(str::to_string);
            let value = match r.below(4) {
                0 | 1 => Value::Scalar(Scalar::from_millis(match r.below(5) {
                    0 => r.u16() as u64,
                    1 => r.u8() as u64 * 1000,
                    2 => *r.pick(&[
                        0,
                        1,
                        999,
                        1000,
                        MAX_MILLIS,
                        MAX_MILLIS + 1,
                        u64::MAX / 2 + 1,
                        u64::MAX,
                    ]),
                    3 => r.u64(),
                    _ => 0,
                })),
                _ => {
                    let raw = raw_pairs(r);
                    Value::Ranges(Ranges::new(raw).unwrap_or_default())
                }
            };
            Resource { name, role, value }
        })
        .collect()
}

/// `Resources::from` against adding the items one at a time, `from_checked` and the
/// model; then the laws of the value.
fn from_items(items: Vec<Resource>, f: &mut Features) -> Resources {
    let r = Resources::from(items.clone());
    check_normalized(&r);
    let mut one_by_one = Resources::new();
    for item in &items {
        one_by_one.add(&Resources::from(vec![item.clone()]));
    }
    assert_eq!(one_by_one, r, "From != adding one at a time");
    let mut scalars: BTreeMap<Key, u128> = BTreeMap::new();
    let mut ranges: BTreeMap<Key, Vec<(u64, u64)>> = BTreeMap::new();
    for item in &items {
        let key = (item.name.clone(), item.role.clone());
        match &item.value {
            Value::Scalar(s) => *scalars.entry(key).or_default() += s.millis() as u128,
            Value::Ranges(rs) => ranges.entry(key).or_default().extend(rs.pairs()),
        }
    }
    let m = bag(&r);
    for (k, v) in &scalars {
        let want = (*v).min(u64::MAX as u128);
        assert_eq!(
            m.scalars.get(k).copied().unwrap_or(0),
            want,
            "From != model\n{k:?}"
        );
    }
    assert!(m.scalars.keys().all(|k| scalars.contains_key(k)));
    for (k, v) in &ranges {
        let got = m.ranges.get(k).map(Vec::as_slice).unwrap_or(&[]);
        let g = Grid::new(&[v, got]);
        assert_eq!(g.set(got), g.set(v), "From != model\n{k:?}");
    }
    assert!(m.ranges.keys().all(|k| ranges.contains_key(k)));
    let many_ranges = r.iter().any(|e| match &e.value {
        Value::Ranges(rs) => rs.pairs().len() > MAX_RANGES_PER_RESOURCE,
        Value::Scalar(_) => false,
    });
    // Merged (so also any one item) above the largest amount: refused as input.
    let over_max = r.iter().any(|e| match e.value {
        Value::Scalar(s) => s.millis() > MAX_MILLIS,
        Value::Ranges(_) => false,
    });
    match Resources::from_checked(items) {
        Ok(c) => {
            assert_eq!(c, r);
            assert!(!many_ranges && !over_max);
        }
        Err(e) => {
            assert!(
                many_ranges || over_max,
                "from_checked refused valid items\n{e}"
            );
            f.tag(if many_ranges {
                "from-checked:many-ranges"
            } else {
                "from-checked:over-max"
            });
        }
    }
    check_value(&r, f);
    // Within the parser's limits, the text form parses back to the same value.
    let parseable = !many_ranges
        && r.iter().count() <= MAX_RESOURCES
        && r.iter().all(|e| match e.value {
            Value::Scalar(s) => s.millis() <= MAX_MILLIS,
            Value::Ranges(_) => true,
        });
    if parseable {
        assert_eq!(
            Resources::parse(&r.to_string()).as_ref(),
            Ok(&r),
            "parse(display(r)) != r\n{r}"
        );
    }
    f.tag_n("items", r.iter().count() as u64);
    r
}

/// Inputs that broke a law when they were found (see README.md); the committed corpus
/// keeps them as `regression-<name>`.
pub fn regressions() -> Vec<(String, Vec<u8>)> {
    vec![(
        // Two tokens of one resource merge past the largest amount: parse accepts them, and
        // then refuses its own text form of the result.
        "merged-scalar-over-max".into(),
        b"cpus:1000000000000;cpus:1".to_vec(),
    )]
}

/// Real resource strings (agents' `--resources`, tasks' needs) and some edge cases, and
/// pairs of them on two lines.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let one = [
        ("agent", "cpus:4;mem:8192;disk:20000;ports:[31000-32000]"),
        ("reserved", "cpus(web):2;cpus:1.5;cpus(*):0.5;mem(web):1024"),
        ("hierarchical-role", "cpus(eng/web):1;mem(eng/web):64"),
        ("task", "cpus:0.1;mem:32"),
        (
            "ports-many",
            "ports:[1-2,4-8,10-10,31000-31999,65535-65535]",
        ),
        ("ports-unsorted", "ports:[30-40,1-2,3-5,35-36]"),
        (
            "ports-edges",
            "ports:[0-0,18446744073709551615-18446744073709551615]",
        ),
        ("ports-full", "ports:[0-18446744073709551615]"),
        ("spaces", " cpus : 1 ; mem:2 ;; "),
        ("fractions", "cpus:0.0005;mem:0.001;disk:1.2345"),
        ("exponent", "cpus:1e3;mem:1e-3;gpus:2E0"),
        ("max-scalar", "cpus:1000000000000"),
        ("over-max", "cpus:1000000000000.5"),
        ("negative", "cpus:-1"),
        ("nan", "cpus:NaN;mem:inf"),
        ("inverted", "ports:[9-3]"),
        ("bad-role", "cpus(-x):1;cpus(a//b):1"),
        ("bad-name", "c pus:1"),
        ("set", "s:{a,b}"),
        ("unclosed", "ports:[1-2;cpus(web:2"),
        ("empty-ranges", "ports:[];cpus:0"),
        ("gpus-disk", "gpus:2;disk(db):500;cpus(db):8"),
    ];
    let two = [
        (
            "pair-agent-task",
            "cpus:4;mem:1024;ports:[31000-31009]\ncpus:1;mem:128;ports:[31000-31000]",
        ),
        ("pair-overlap", "ports:[1-10]\nports:[5-20]"),
        (
            "pair-reserved",
            "cpus:2;cpus(web):2;mem:100\ncpus(web):2;mem:100",
        ),
        ("pair-more", "cpus:1\ncpus:1.001"),
        (
            "pair-edges",
            "ports:[0-5,18446744073709551610-18446744073709551615]\nports:[3-18446744073709551612]",
        ),
        (
            "pair-big",
            "cpus:1000000000000;mem:5\ncpus:1000000000000;disk:1",
        ),
        ("pair-mixed", "cpus:1;ports:[1-3]\nports:[2-2];mem:7"),
        ("pair-empty", "\ncpus:1"),
    ];
    let mut out: Vec<(String, Vec<u8>)> = one
        .iter()
        .chain(two.iter())
        .map(|(n, s)| (n.to_string(), s.as_bytes().to_vec()))
        .collect();
    // Binary inputs for the structured reader: many ranges past the limit, and amounts
    // that saturate.
    out.push((
        "bytes-many-ranges".into(),
        vec![0xff, 4, 0x10, 0x00, 3, 0, 5, 1, 7, 2, 2, 0, 0, 1, 0],
    ));
    out.push((
        "bytes-saturating".into(),
        vec![0, 0, 2, 0, 0, 0, 2, 7, 2, 0, 0, 0, 2, 7, 1, 0, 0, 1, 2],
    ));
    out
}
