//! Resource arithmetic: what an agent has, what a task needs, what an offer holds.
//!
//! Scalars are fixed-point with three decimal digits (as in Mesos), stored as whole
//! thousandths, so adding and subtracting never drifts and never goes negative. Ranges (ports)
//! are kept sorted, disjoint and merged. A [`Resources`] is a normalized bag keyed by
//! (name, reservation role, kind): it never holds an empty amount, never holds two entries
//! with the same key, and every operation keeps that so.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A non-negative amount in thousandths of a unit.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Scalar(u64);

/// Largest scalar accepted, in whole units (far above any real machine).
pub const MAX_SCALAR_UNITS: f64 = 1.0e12;

impl Scalar {
    pub const ZERO: Scalar = Scalar(0);

    /// From whole thousandths.
    pub const fn from_millis(millis: u64) -> Self {
        Scalar(millis)
    }

    /// From a decimal amount, rounded to three decimals. Negative, NaN, infinite and
    /// absurdly large amounts are refused.
    pub fn from_f64(value: f64) -> Result<Self, AmountError> {
        if value.is_nan() {
            return Err(AmountError::NotANumber);
        }
        if value.is_infinite() {
            return Err(AmountError::Infinite);
        }
        if value < 0.0 {
            return Err(AmountError::Negative);
        }
        if value > MAX_SCALAR_UNITS {
            return Err(AmountError::TooLarge);
        }
        Ok(Scalar((value * 1000.0).round() as u64))
    }

    pub fn millis(self) -> u64 {
        self.0
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_sub(self, other: Scalar) -> Option<Scalar> {
        self.0.checked_sub(other.0).map(Scalar)
    }

    pub fn saturating_add(self, other: Scalar) -> Scalar {
        Scalar(self.0.saturating_add(other.0))
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.0 / 1000, self.0 % 1000);
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let s = format!("{frac:03}");
            write!(f, "{whole}.{}", s.trim_end_matches('0'))
        }
    }
}

/// Why an amount was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is negative")]
    Negative,
    #[error("amount is not a number")]
    NotANumber,
    #[error("amount is infinite")]
    Infinite,
    #[error("amount is larger than {MAX_SCALAR_UNITS}")]
    TooLarge,
    #[error("range {0}-{1} has its start after its end")]
    InvertedRange(u64, u64),
    /// More than [`MAX_RANGES_PER_RESOURCE`] intervals in one ranges value from input.
    #[error("{count} ranges, at most {MAX_RANGES_PER_RESOURCE}")]
    TooManyRanges { count: usize },
}

/// Most intervals one ranges value may hold when it is built from input: by [`Ranges::new`]
/// (counted as given, before merging, so the sort is bounded too) and in every entry of a
/// [`Resources`] built by [`Resources::parse`] or [`Resources::from_checked`] (counted after
/// merging). Results of arithmetic (a [`Ranges::union`], [`Resources::add`]) are never
/// limited, nor are values read back with serde (the log and snapshots hold such results).
pub const MAX_RANGES_PER_RESOURCE: usize = 1_000;

/// Most entries one [`Resources`] may have when it is built from input: tokens given to
/// [`Resources::parse`], items given to [`Resources::from_checked`] (counted as given, before
/// entries with the same name, role and kind are merged). Results of arithmetic are never
/// limited.
pub const MAX_RESOURCES: usize = 128;

/// A set of integers kept as sorted, disjoint, non-adjacent inclusive ranges.
///
/// Every set operation is a single sweep over both sorted lists: `union`, `intersection`,
/// `difference` and `checked_sub` take O(n + m), `contains` O(m log(n/m) + m) (never more
/// than O(n + m)); [`Ranges::new`] sorts once, O(n log n). Deserializing normalizes (and
/// refuses inverted pairs) but does not apply [`MAX_RANGES_PER_RESOURCE`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "Vec<(u64, u64)>")]
pub struct Ranges(Vec<(u64, u64)>);

impl Serialize for Ranges {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The same form as `#[serde(transparent)]`: a sequence of `[begin, end]` pairs.
        self.0.serialize(serializer)
    }
}

impl TryFrom<Vec<(u64, u64)>> for Ranges {
    type Error = AmountError;

    /// Normalizes any pairs, refusing inverted ones; no limit on their number (this is how
    /// values come back from the log; input goes through [`Ranges::new`]).
    fn try_from(pairs: Vec<(u64, u64)>) -> Result<Self, AmountError> {
        Ranges::normalize(pairs)
    }
}

impl Ranges {
    /// Builds a normalized set from inclusive `(begin, end)` pairs in any order; the domain
    /// boundary for ranges from input. Refuses more than [`MAX_RANGES_PER_RESOURCE`] pairs
    /// (without storing the surplus) and inverted pairs. O(n log n).
    pub fn new(pairs: impl IntoIterator<Item = (u64, u64)>) -> Result<Self, AmountError> {
        let mut pairs = pairs.into_iter();
        let mut kept = Vec::with_capacity(pairs.size_hint().0.min(MAX_RANGES_PER_RESOURCE));
        for pair in pairs.by_ref() {
            if kept.len() == MAX_RANGES_PER_RESOURCE {
                return Err(AmountError::TooManyRanges {
                    count: MAX_RANGES_PER_RESOURCE + 1 + pairs.count(),
                });
            }
            kept.push(pair);
        }
        Ranges::normalize(kept)
    }

    /// Sorts and merges any number of pairs, refusing inverted ones. O(n) when they are
    /// already normalized, O(n log n) otherwise.
    fn normalize(mut pairs: Vec<(u64, u64)>) -> Result<Self, AmountError> {
        if let Some(&(b, e)) = pairs.iter().find(|(b, e)| b > e) {
            return Err(AmountError::InvertedRange(b, e));
        }
        if !is_normalized(&pairs) {
            pairs.sort_unstable();
            let mut kept = 0;
            for i in 0..pairs.len() {
                let (b, e) = pairs[i];
                if kept > 0 && b <= pairs[kept - 1].1.saturating_add(1) {
                    pairs[kept - 1].1 = pairs[kept - 1].1.max(e);
                } else {
                    pairs[kept] = (b, e);
                    kept += 1;
                }
            }
            pairs.truncate(kept);
        }
        Ok(Ranges(pairs))
    }

    pub fn pairs(&self) -> &[(u64, u64)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many integers the set holds (saturating at `u64::MAX`: the full range
    /// `0-18446744073709551615` holds one more).
    pub fn count(&self) -> u64 {
        self.0
            .iter()
            .map(|(b, e)| (e - b).saturating_add(1))
            .fold(0, u64::saturating_add)
    }

    /// `self ∪ other`. O(n + m), copying runs of one side that fall between two ranges of
    /// the other in bulk; never limited.
    pub fn union(&self, other: &Ranges) -> Ranges {
        if other.0.is_empty() {
            return self.clone();
        }
        if self.0.is_empty() {
            return other.clone();
        }
        let (mut a, mut b) = (&self.0[..], &other.0[..]);
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(a.len() + b.len());
        loop {
            // `a` is the side whose next range starts first.
            if b.first()
                .is_some_and(|y| a.first().is_none_or(|x| y.0 < x.0))
            {
                std::mem::swap(&mut a, &mut b);
            }
            let Some((&(s, e), rest)) = a.split_first() else {
                break;
            };
            a = rest;
            match out.last_mut() {
                Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => {
                    out.push((s, e));
                    // The next ranges of this side that start before the other side's next
                    // one touch neither this one nor each other (normalized): copy them.
                    let run = match b.first() {
                        Some(&(next, _)) => gallop(a, |&(x, _)| x < next),
                        None => a.len(),
                    };
                    out.extend_from_slice(&a[..run]);
                    a = &a[run..];
                }
            }
        }
        Ranges(out)
    }

    /// `self ∩ other`. O(n + m), skipping ahead on the longer side.
    pub fn intersection(&self, other: &Ranges) -> Ranges {
        let (a, b) = (&self.0, &other.0);
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            let ((ab, ae), (bb, be)) = (a[i], b[j]);
            if ae < bb {
                i += gallop(&a[i..], |&(_, e)| e < bb);
            } else if be < ab {
                j += gallop(&b[j..], |&(_, e)| e < ab);
            } else {
                // Pieces are normalized: two adjacent integers in both sets lie in one
                // range of each, so in one piece.
                out.push((ab.max(bb), ae.min(be)));
                if ae < be {
                    i += 1;
                } else {
                    j += 1;
                }
            }
        }
        Ranges(out)
    }

    /// `self` without the integers of `other` (whether or not `other` is contained).
    /// O(n + m), copying our ranges that no hole touches in bulk.
    pub fn difference(&self, other: &Ranges) -> Ranges {
        let (a, holes) = (&self.0, &other.0);
        if a.is_empty() || holes.is_empty() {
            return self.clone();
        }
        // Each hole splits at most one of our ranges in two.
        let mut out = Vec::with_capacity(a.len() + holes.len().min(a.len()));
        let (mut i, mut j) = (0, 0);
        while i < a.len() {
            let Some(&(next_hole, _)) = holes.get(j) else {
                out.extend_from_slice(&a[i..]);
                break;
            };
            // Our ranges that end before the next hole are kept whole.
            let untouched = gallop(&a[i..], |&(_, e)| e < next_hole);
            out.extend_from_slice(&a[i..i + untouched]);
            i += untouched;
            let Some(&(b, e)) = a.get(i) else { break };
            // Holes that end before this range (in the gap before it) cut nothing.
            j += gallop(&holes[j..], |&(_, he)| he < b);
            // The first integer of [b, e] not yet cut away; None once a hole reaches
            // u64::MAX.
            let mut start = Some(b);
            while let (Some(s), Some(&(hb, he))) = (start, holes.get(j)) {
                if hb > e {
                    break;
                }
                if hb > s {
                    out.push((s, hb - 1));
                }
                start = he.checked_add(1);
                if he >= e {
                    // This hole may reach into our next range: keep it.
                    break;
                }
                j += 1;
            }
            if let Some(s) = start.filter(|&s| s <= e) {
                out.push((s, e));
            }
            i += 1;
        }
        Ranges(out)
    }

    /// Whether every integer of `other` is in `self`. O(m log(n/m) + m).
    pub fn contains(&self, other: &Ranges) -> bool {
        let a = &self.0;
        let mut i = 0;
        other.0.iter().all(|&(b, e)| {
            // Normalized: a contained range lies inside exactly one of our ranges, the
            // first one ending at or after its start.
            i += gallop(&a[i..], |&(_, end)| end < b);
            a.get(i).is_some_and(|&(sb, se)| sb <= b && e <= se)
        })
    }

    /// `self` minus `other`, or `None` when `other` is not contained in `self`. O(n + m).
    pub fn checked_sub(&self, other: &Ranges) -> Option<Ranges> {
        self.contains(other).then(|| self.difference(other))
    }
}

/// Sorted, disjoint and non-adjacent (pairs already known not inverted).
fn is_normalized(pairs: &[(u64, u64)]) -> bool {
    pairs
        .windows(2)
        .all(|w| w[0].1.checked_add(1).is_some_and(|next| next < w[1].0))
}

/// The first index of `s` where `pred` is false, for a `pred` that holds on a prefix of `s`:
/// an exponential then binary search, O(log k) for an answer k, so a sweep that skips ahead
/// with it costs O(m log(n/m)) instead of O(n) when one side is much shorter.
#[inline]
fn gallop<T>(s: &[T], pred: impl Fn(&T) -> bool) -> usize {
    // Interleaved inputs mostly skip nothing: answer that without a search.
    match s.first() {
        Some(x) if pred(x) => {}
        _ => return 0,
    }
    let mut hi = 1;
    while hi < s.len() && pred(&s[hi]) {
        hi *= 2;
    }
    let lo = hi / 2;
    let hi = hi.min(s.len());
    lo + s[lo..hi].partition_point(pred)
}

impl fmt::Display for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, (b, e)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{b}-{e}")?;
        }
        f.write_str("]")
    }
}

/// The amount of one resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    Scalar(Scalar),
    Ranges(Ranges),
}

impl Value {
    fn is_empty(&self) -> bool {
        match self {
            Value::Scalar(s) => s.is_zero(),
            Value::Ranges(r) => r.is_empty(),
        }
    }

    fn kind(&self) -> u8 {
        match self {
            Value::Scalar(_) => 0,
            Value::Ranges(_) => 1,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Scalar(s) => s.fmt(f),
            Value::Ranges(r) => r.fmt(f),
        }
    }
}

/// One named resource, optionally reserved for a role.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resource {
    pub name: String,
    /// `None`: unreserved (Mesos' `*`); `Some(role)`: statically reserved for that role.
    pub role: Option<String>,
    pub value: Value,
}

impl Resource {
    fn key(&self) -> (&str, Option<&str>, u8) {
        (&self.name, self.role.as_deref(), self.value.kind())
    }
}

/// A normalized bag of resources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "Vec<Resource>", into = "Vec<Resource>")]
pub struct Resources(Vec<Resource>);

impl From<Vec<Resource>> for Resources {
    /// Normalizes: drops empty amounts and merges entries with the same key (scalars summed,
    /// ranges united). O(k log k) in entries, plus one sort of all the pairs of a key that
    /// appears more than once; never limited (see [`Resources::from_checked`] for input).
    fn from(mut items: Vec<Resource>) -> Self {
        items.retain(|r| !r.value.is_empty());
        // Stable: entries of one key keep their order (irrelevant to the result, but cheap).
        items.sort_by(|x, y| x.key().cmp(&y.key()));
        let mut out: Vec<Resource> = Vec::with_capacity(items.len());
        let mut items = items.into_iter().peekable();
        while let Some(mut first) = items.next() {
            let mut more_pairs: Vec<(u64, u64)> = Vec::new();
            while let Some(next) = items.next_if(|n| n.key() == first.key()) {
                match (&mut first.value, next.value) {
                    (Value::Scalar(a), Value::Scalar(b)) => *a = a.saturating_add(b),
                    (Value::Ranges(_), Value::Ranges(b)) => more_pairs.extend(b.0),
                    _ => unreachable!("the key includes the kind"),
                }
            }
            if let (Value::Ranges(r), false) = (&mut first.value, more_pairs.is_empty()) {
                more_pairs.extend_from_slice(&r.0);
                *r = Ranges::normalize(more_pairs).expect("normalized ranges are never inverted");
            }
            out.push(first);
        }
        Resources(out)
    }
}

impl From<Resources> for Vec<Resource> {
    fn from(r: Resources) -> Self {
        r.0
    }
}

/// Why a resource string or value was refused. `token` is the offending piece of input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("bad resource {token:?}: {reason}")]
    Parse { token: String, reason: String },
    #[error("bad amount for resource {name:?}: {source}")]
    Amount {
        name: String,
        #[source]
        source: AmountError,
    },
    #[error("bad role {role:?}: {reason}")]
    Role { role: String, reason: &'static str },
    #[error("bad resource name {name:?}: {reason}")]
    Name { name: String, reason: &'static str },
    /// More than [`MAX_RESOURCES`] entries in one resources value from input.
    #[error("{count} resources, at most {MAX_RESOURCES}")]
    TooManyResources { count: usize },
}

/// Roles are 1 to 255 characters of letters, digits, `-`, `_`, `.` and `/` (hierarchical
/// roles as in Mesos), not starting with `-` or `.`, with no empty or dot-only path part.
/// `*` is not a role: it is written to mean "unreserved".
pub fn validate_role(role: &str) -> Result<(), ResourceError> {
    let bad = |reason| {
        Err(ResourceError::Role {
            role: role.to_string(),
            reason,
        })
    };
    if role.is_empty() {
        return bad("role is empty");
    }
    if role.len() > 255 {
        return bad("role is longer than 255 characters");
    }
    if role.starts_with('-') {
        return bad("role starts with '-'");
    }
    if !role
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    {
        return bad("allowed characters are letters, digits and - _ . /");
    }
    if role
        .split('/')
        .any(|part| part.is_empty() || part.chars().all(|c| c == '.'))
    {
        return bad("empty, '.' or '..' path component");
    }
    Ok(())
}

/// A framework's role: a valid role, or `*` (no role: offered unreserved resources only,
/// Mesos' default).
pub fn validate_framework_role(role: &str) -> Result<(), ResourceError> {
    if role == "*" {
        Ok(())
    } else {
        validate_role(role)
    }
}

fn validate_name(name: &str) -> Result<(), ResourceError> {
    let bad = |reason| {
        Err(ResourceError::Name {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("name is empty");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return bad("allowed characters are letters, digits and - _ .");
    }
    Ok(())
}

impl Resources {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses Mesos' text form: `cpus:4;mem:8192;disk:20000;ports:[31000-32000]`, with
    /// `name(ROLE):amount` for a static reservation (`(*)` means unreserved).
    ///
    /// Input: at most [`MAX_RESOURCES`] tokens, and at most [`MAX_RANGES_PER_RESOURCE`]
    /// ranges and at most [`MAX_SCALAR_UNITS`] in one token and in one entry after merging
    /// tokens of the same name and role.
    pub fn parse(text: &str) -> Result<Resources, ResourceError> {
        let tokens = || text.split(';').map(str::trim).filter(|t| !t.is_empty());
        let count = tokens().count();
        if count > MAX_RESOURCES {
            return Err(ResourceError::TooManyResources { count });
        }
        let items = tokens().map(parse_token).collect::<Result<Vec<_>, _>>()?;
        Resources::from(items).within_limits()
    }

    /// An unreserved scalar resource, refusing bad amounts.
    pub fn scalar(name: &str, amount: f64) -> Result<Resources, ResourceError> {
        Self::scalar_for(name, None, amount)
    }

    /// A scalar resource reserved for `role` (or unreserved for `None`).
    pub fn scalar_for(
        name: &str,
        role: Option<&str>,
        amount: f64,
    ) -> Result<Resources, ResourceError> {
        validate_name(name)?;
        if let Some(r) = role {
            validate_role(r)?;
        }
        let value = Scalar::from_f64(amount).map_err(|source| ResourceError::Amount {
            name: name.to_string(),
            source,
        })?;
        Ok(Resources::from(vec![Resource {
            name: name.to_string(),
            role: role.map(str::to_string),
            value: Value::Scalar(value),
        }]))
    }

    /// Builds from items, checking every name, role, scalar and range; the domain boundary
    /// for resources that arrive from the wire. Refuses more than [`MAX_RESOURCES`] items,
    /// more than [`MAX_RANGES_PER_RESOURCE`] ranges and scalars above [`MAX_SCALAR_UNITS`],
    /// in one item or in one entry after merging items of the same name and role. (A [`Ranges`] can never hold an inverted
    /// pair: [`Ranges::new`] and deserialization refuse them.)
    pub fn from_checked(items: Vec<Resource>) -> Result<Resources, ResourceError> {
        if items.len() > MAX_RESOURCES {
            return Err(ResourceError::TooManyResources { count: items.len() });
        }
        for r in &items {
            validate_name(&r.name)?;
            if let Some(role) = &r.role {
                validate_role(role)?;
            }
            check_entry_limits(r)?;
        }
        Resources::from(items).within_limits()
    }

    /// `self`, or the first entry with more than [`MAX_RANGES_PER_RESOURCE`] ranges or a
    /// scalar above [`MAX_SCALAR_UNITS`] (after merging, so `cpus:1000000000000;cpus:1` is
    /// refused like `cpus:1000000000001`: input never builds a value whose own text form
    /// or wire form would be refused).
    fn within_limits(self) -> Result<Resources, ResourceError> {
        self.0.iter().try_for_each(check_entry_limits)?;
        Ok(self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Resource> {
        self.0.iter()
    }

    /// `self + other`. Never limited.
    pub fn plus(&self, other: &Resources) -> Resources {
        let mut out = self.clone();
        out.add(other);
        out
    }

    /// Adds `other` in place: one merge of the two sorted entry lists, O(k + l) entries
    /// plus a linear [`Ranges::union`] per shared ranges entry. Never limited.
    pub fn add(&mut self, other: &Resources) {
        if other.0.is_empty() {
            return;
        }
        if self.0.is_empty() {
            self.0.clone_from(&other.0);
            return;
        }
        let mine = std::mem::take(&mut self.0);
        let mut out = Vec::with_capacity(mine.len() + other.0.len());
        let mut theirs = other.0.iter().peekable();
        for mut have in mine {
            while let Some(t) = theirs.next_if(|t| t.key() < have.key()) {
                out.push(t.clone());
            }
            if let Some(t) = theirs.next_if(|t| t.key() == have.key()) {
                have.value = match (&have.value, &t.value) {
                    (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(a.saturating_add(*b)),
                    (Value::Ranges(a), Value::Ranges(b)) => Value::Ranges(a.union(b)),
                    _ => unreachable!("the key includes the kind"),
                };
            }
            out.push(have);
        }
        out.extend(theirs.cloned());
        self.0 = out;
    }

    /// Whether `self` holds at least `other`, entry by entry (a reservation for one role
    /// never counts for another, nor for unreserved).
    pub fn contains(&self, other: &Resources) -> bool {
        other.0.iter().all(
            |need| match self.0.binary_search_by(|x| x.key().cmp(&need.key())) {
                Err(_) => false,
                Ok(i) => match (&self.0[i].value, &need.value) {
                    (Value::Scalar(have), Value::Scalar(want)) => have >= want,
                    (Value::Ranges(have), Value::Ranges(want)) => have.contains(want),
                    _ => false,
                },
            },
        )
    }

    /// `self - other`, or `None` when `other` is not contained in `self`. One merge of the
    /// two sorted entry lists, O(k + l) entries plus a linear [`Ranges::checked_sub`] per
    /// shared ranges entry.
    pub fn checked_sub(&self, other: &Resources) -> Option<Resources> {
        let mut out = Vec::with_capacity(self.0.len());
        let mut needs = other.0.iter().peekable();
        for have in &self.0 {
            let Some(need) = needs.next_if(|n| n.key() <= have.key()) else {
                out.push(have.clone());
                continue;
            };
            if need.key() != have.key() {
                return None; // `need` is not in `self` at all
            }
            let left = match (&have.value, &need.value) {
                (Value::Scalar(h), Value::Scalar(w)) => Value::Scalar(h.checked_sub(*w)?),
                (Value::Ranges(h), Value::Ranges(w)) => Value::Ranges(h.checked_sub(w)?),
                _ => unreachable!("the key includes the kind"),
            };
            push_left(&mut out, have, left);
        }
        // Whatever is left of `other` is not in `self`.
        needs.next().is_none().then_some(Resources(out))
    }

    /// `self - other`, keeping what cannot be subtracted (never negative). One merge of the
    /// two sorted entry lists, O(k + l) entries plus a linear [`Ranges::difference`] per
    /// shared ranges entry.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        let mut out = Vec::with_capacity(self.0.len());
        let mut needs = other.0.iter().peekable();
        for have in &self.0 {
            while needs.next_if(|n| n.key() < have.key()).is_some() {}
            let Some(need) = needs.next_if(|n| n.key() == have.key()) else {
                out.push(have.clone());
                continue;
            };
            let left = match (&have.value, &need.value) {
                (Value::Scalar(h), Value::Scalar(w)) => {
                    Value::Scalar(h.checked_sub(*w).unwrap_or(Scalar::ZERO))
                }
                (Value::Ranges(h), Value::Ranges(w)) => Value::Ranges(h.difference(w)),
                _ => unreachable!("the key includes the kind"),
            };
            push_left(&mut out, have, left);
        }
        Resources(out)
    }

    /// The range integers (ports) both `self` and `other` hold, entry by entry (same name,
    /// role); scalars are not shared but summed, so they never appear. One merge of the two
    /// sorted entry lists plus a linear [`Ranges::intersection`] per shared ranges entry.
    pub fn shared_ranges(&self, other: &Resources) -> Resources {
        let mut out = Vec::new();
        let mut theirs = other.0.iter().peekable();
        for have in &self.0 {
            while theirs.next_if(|t| t.key() < have.key()).is_some() {}
            let Some(t) = theirs.next_if(|t| t.key() == have.key()) else {
                continue;
            };
            if let (Value::Ranges(a), Value::Ranges(b)) = (&have.value, &t.value) {
                push_left(&mut out, have, Value::Ranges(a.intersection(b)));
            }
        }
        Resources(out)
    }

    /// Total scalar amount of `name` across all roles.
    pub fn scalar_total(&self, name: &str) -> Scalar {
        self.0
            .iter()
            .filter(|r| r.name == name)
            .filter_map(|r| match r.value {
                Value::Scalar(s) => Some(s),
                Value::Ranges(_) => None,
            })
            .fold(Scalar::ZERO, Scalar::saturating_add)
    }

    /// Only the entries a framework in `role` may be offered: unreserved ones and those
    /// reserved for `role`.
    pub fn allocatable_to(&self, role: &str) -> Resources {
        Resources(
            self.0
                .iter()
                .filter(|r| r.role.as_deref().is_none_or(|rr| rr == role))
                .cloned()
                .collect(),
        )
    }

    /// A summary for humans and JSON: scalars summed across roles as numbers, ranges as
    /// their Mesos text (e.g. `"ports": "[31000-32000]"`).
    pub fn summary(&self) -> BTreeMap<String, SummaryValue> {
        let mut out: BTreeMap<String, SummaryValue> = BTreeMap::new();
        for r in &self.0 {
            match &r.value {
                Value::Scalar(s) => {
                    let e = out
                        .entry(r.name.clone())
                        .or_insert(SummaryValue::Number(0.0));
                    if let SummaryValue::Number(n) = e {
                        *n = (Scalar::from_f64(*n).unwrap_or_default().saturating_add(*s)).as_f64();
                    }
                }
                Value::Ranges(ranges) => {
                    let merged = match out.get(&r.name) {
                        Some(SummaryValue::Ranges(prev)) => prev.union(ranges),
                        _ => ranges.clone(),
                    };
                    out.insert(r.name.clone(), SummaryValue::Ranges(merged));
                }
            }
        }
        out
    }
}

/// Keeps `have` with the amount `left`, unless nothing is left.
fn push_left(out: &mut Vec<Resource>, have: &Resource, left: Value) {
    if !left.is_empty() {
        out.push(Resource {
            name: have.name.clone(),
            role: have.role.clone(),
            value: left,
        });
    }
}

/// The largest scalar accepted from input, in thousandths ([`MAX_SCALAR_UNITS`]).
const MAX_SCALAR_MILLIS: u64 = MAX_SCALAR_UNITS as u64 * 1000;

/// Refuses an entry with more than [`MAX_RANGES_PER_RESOURCE`] ranges or a scalar above
/// [`MAX_SCALAR_UNITS`], naming it.
fn check_entry_limits(r: &Resource) -> Result<(), ResourceError> {
    match &r.value {
        Value::Scalar(s) if s.millis() > MAX_SCALAR_MILLIS => Err(ResourceError::Amount {
            name: r.name.clone(),
            source: AmountError::TooLarge,
        }),
        Value::Ranges(ranges) if ranges.0.len() > MAX_RANGES_PER_RESOURCE => {
            Err(ResourceError::Amount {
                name: r.name.clone(),
                source: AmountError::TooManyRanges {
                    count: ranges.0.len(),
                },
            })
        }
        _ => Ok(()),
    }
}

/// A value in [`Resources::summary`].
#[derive(Clone, Debug, PartialEq)]
pub enum SummaryValue {
    Number(f64),
    Ranges(Ranges),
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            match &r.role {
                Some(role) => write!(f, "{}({}):{}", r.name, role, r.value)?,
                None => write!(f, "{}:{}", r.name, r.value)?,
            }
        }
        Ok(())
    }
}

fn parse_token(token: &str) -> Result<Resource, ResourceError> {
    let fail = |reason: &str| ResourceError::Parse {
        token: token.to_string(),
        reason: reason.to_string(),
    };
    let (key, amount) = token
        .split_once(':')
        .ok_or_else(|| fail("expected NAME:AMOUNT or NAME(ROLE):AMOUNT"))?;
    let (key, amount) = (key.trim(), amount.trim());
    let (name, role) = match key.split_once('(') {
        None => (key, None),
        Some((name, rest)) => {
            let role = rest
                .strip_suffix(')')
                .ok_or_else(|| fail("role is missing its closing ')'"))?;
            (name.trim(), (role != "*").then(|| role.to_string()))
        }
    };
    validate_name(name)?;
    if let Some(role) = &role {
        validate_role(role)?;
    }
    let value = if let Some(inner) = amount.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| fail("range list is missing its closing ']'"))?;
        let mut pairs = Vec::new();
        for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (b, e) = part
                .split_once('-')
                .ok_or_else(|| fail("expected ranges like [31000-32000]"))?;
            let b: u64 = b
                .trim()
                .parse()
                .map_err(|_| fail("range bound is not a whole number"))?;
            let e: u64 = e
                .trim()
                .parse()
                .map_err(|_| fail("range bound is not a whole number"))?;
            pairs.push((b, e));
        }
        Value::Ranges(Ranges::new(pairs).map_err(|source| ResourceError::Amount {
            name: name.to_string(),
            source,
        })?)
    } else if amount.starts_with('{') {
        return Err(fail("set values are not supported; use a scalar or ranges"));
    } else {
        let n: f64 = amount.parse().map_err(|_| fail("amount is not a number"))?;
        Value::Scalar(Scalar::from_f64(n).map_err(|source| ResourceError::Amount {
            name: name.to_string(),
            source,
        })?)
    };
    Ok(Resource {
        name: name.to_string(),
        role,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn r(s: &str) -> Resources {
        Resources::parse(s).unwrap()
    }

    #[test]
    fn parses_mesos_syntax() {
        let res = r("cpus:4;mem:8192;disk:20000;ports:[31000-32000]");
        assert_eq!(res.scalar_total("cpus"), Scalar::from_millis(4000));
        assert_eq!(res.scalar_total("mem"), Scalar::from_millis(8_192_000));
        assert_eq!(
            res.to_string(),
            "cpus:4;disk:20000;mem:8192;ports:[31000-32000]"
        );
        let reserved = r("cpus(web):2;cpus:1.5;cpus(*):0.5");
        assert_eq!(reserved.scalar_total("cpus"), Scalar::from_millis(4000));
        assert_eq!(reserved.to_string(), "cpus:2;cpus(web):2");
        assert_eq!(r(" cpus : 1 ; ").to_string(), "cpus:1");
        assert!(r("").is_empty());
    }

    #[test]
    fn parse_errors_name_the_token() {
        for (input, token) in [
            ("cpus:4;mem", "mem"),
            ("cpus:abc", "cpus:abc"),
            ("ports:[1-2", "ports:[1-2"),
            ("cpus(web:2", "cpus(web:2"),
            ("s:{a,b}", "s:{a,b}"),
            ("ports:[5-x]", "ports:[5-x]"),
        ] {
            match Resources::parse(input) {
                Err(ResourceError::Parse { token: t, .. }) => assert_eq!(t, token, "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
        assert!(matches!(
            Resources::parse("cpus:-1"),
            Err(ResourceError::Amount {
                source: AmountError::Negative,
                ..
            })
        ));
        assert!(matches!(
            Resources::parse("cpus:NaN"),
            Err(ResourceError::Amount {
                source: AmountError::NotANumber,
                ..
            })
        ));
        assert!(matches!(
            Resources::parse("cpus:inf"),
            Err(ResourceError::Amount {
                source: AmountError::Infinite,
                ..
            })
        ));
        assert!(matches!(
            Resources::parse("ports:[9-3]"),
            Err(ResourceError::Amount {
                source: AmountError::InvertedRange(9, 3),
                ..
            })
        ));
        assert!(matches!(
            Resources::parse("cpus(-x):1"),
            Err(ResourceError::Role { .. })
        ));
        assert!(matches!(
            Resources::parse("cpus(a//b):1"),
            Err(ResourceError::Role { .. })
        ));
        assert!(matches!(
            Resources::parse("c pus:1"),
            Err(ResourceError::Name { .. })
        ));
    }

    #[test]
    fn scalars_are_fixed_point() {
        let mut acc = Resources::new();
        for _ in 0..10 {
            acc.add(&r("cpus:0.1"));
        }
        assert_eq!(acc, r("cpus:1"));
        assert_eq!(Scalar::from_millis(1500).to_string(), "1.5");
        assert_eq!(Scalar::from_millis(1050).to_string(), "1.05");
    }

    #[test]
    fn arithmetic_respects_reservations() {
        let agent = r("cpus:2;cpus(web):2;mem:100");
        assert!(agent.contains(&r("cpus(web):2;mem:100")));
        assert!(!agent.contains(&r("cpus(db):1")));
        assert!(!agent.contains(&r("cpus:3")));
        assert_eq!(agent.allocatable_to("db"), r("cpus:2;mem:100"));
        assert_eq!(agent.allocatable_to("web"), agent);
        assert_eq!(
            agent.checked_sub(&r("cpus(web):2")),
            Some(r("cpus:2;mem:100"))
        );
        assert_eq!(agent.checked_sub(&r("cpus:2.001")), None);
        assert_eq!(
            agent.saturating_sub(&r("cpus:5;disk:3")),
            r("cpus(web):2;mem:100")
        );
    }

    #[test]
    fn ranges_subtract_and_merge() {
        let ports = r("ports:[10-20,30-40]");
        assert_eq!(
            ports.checked_sub(&r("ports:[12-13]")),
            Some(r("ports:[10-11,14-20,30-40]"))
        );
        assert_eq!(
            ports.checked_sub(&r("ports:[10-20]")),
            Some(r("ports:[30-40]"))
        );
        assert_eq!(ports.checked_sub(&r("ports:[19-31]")), None);
        assert_eq!(r("ports:[1-2,3-4]"), r("ports:[1-4]"));
        assert_eq!(
            ports.saturating_sub(&r("ports:[15-35]")),
            r("ports:[10-14,36-40]")
        );
        let edge = Ranges::new([(0, u64::MAX)]).unwrap();
        assert_eq!(
            edge.checked_sub(&Ranges::new([(0, 0)]).unwrap()),
            Ranges::new([(1, u64::MAX)]).ok()
        );
        assert_eq!(
            edge.checked_sub(&Ranges::new([(u64::MAX, u64::MAX)]).unwrap()),
            Ranges::new([(0, u64::MAX - 1)]).ok()
        );
    }

    #[test]
    fn serde_round_trip() {
        let res = r("cpus:4;cpus(web):1;ports:[1-5]");
        let json = serde_json::to_string(&res).unwrap();
        assert_eq!(serde_json::from_str::<Resources>(&json).unwrap(), res);
    }

    fn arb_ranges() -> impl Strategy<Value = Ranges> {
        proptest::collection::vec((0u64..200, 0u64..20), 0..5)
            .prop_map(|v| Ranges::new(v.into_iter().map(|(b, l)| (b, b + l))).unwrap())
    }

    fn arb_resources() -> impl Strategy<Value = Resources> {
        let role = prop_oneof![
            Just(None),
            Just(Some("a".to_string())),
            Just(Some("b".to_string()))
        ];
        let value = prop_oneof![
            (0u64..10_000).prop_map(|m| Value::Scalar(Scalar::from_millis(m))),
            arb_ranges().prop_map(Value::Ranges),
        ];
        let name = prop_oneof![Just("cpus"), Just("mem"), Just("ports")];
        proptest::collection::vec((name, role, value), 0..6).prop_map(|items| {
            Resources::from(
                items
                    .into_iter()
                    .map(|(name, role, value)| Resource {
                        name: name.to_string(),
                        role,
                        value,
                    })
                    .collect::<Vec<_>>(),
            )
        })
    }

    fn brute(r: &Ranges) -> std::collections::BTreeSet<u64> {
        r.pairs().iter().flat_map(|&(b, e)| b..=e).collect()
    }

    proptest! {
        #[test]
        fn add_then_sub_is_identity(a in arb_resources(), b in arb_resources()) {
            let sum = a.plus(&b);
            prop_assert!(sum.contains(&a));
            prop_assert!(sum.contains(&b));
            // Ranges are sets, so (a + b) - b is a without b's ports; adding b back is exact.
            let rest = sum.checked_sub(&b);
            prop_assert!(rest.is_some());
            prop_assert_eq!(rest.unwrap().plus(&b), sum.clone());
        }

        #[test]
        fn sub_succeeds_exactly_when_contained(a in arb_resources(), b in arb_resources()) {
            match a.checked_sub(&b) {
                Some(rest) => {
                    prop_assert!(a.contains(&b));
                    prop_assert_eq!(rest.plus(&b), a.clone());
                }
                None => prop_assert!(!a.contains(&b)),
            }
            let sat = a.saturating_sub(&b);
            prop_assert!(a.contains(&sat));
        }

        #[test]
        fn ranges_match_a_set_model(a in arb_ranges(), b in arb_ranges()) {
            let (sa, sb) = (brute(&a), brute(&b));
            prop_assert_eq!(brute(&a.union(&b)), sa.union(&sb).copied().collect());
            prop_assert_eq!(a.contains(&b), sb.is_subset(&sa));
            if let Some(d) = a.checked_sub(&b) {
                prop_assert_eq!(brute(&d), sa.difference(&sb).copied().collect());
            }
            prop_assert_eq!(a.count() as usize, sa.len());
            // normalized: sorted, disjoint, non-adjacent
            for w in a.pairs().windows(2) {
                prop_assert!(w[0].1 + 1 < w[1].0);
            }
        }

        #[test]
        fn display_parses_back(a in arb_resources()) {
            prop_assert_eq!(Resources::parse(&a.to_string()).unwrap(), a);
        }
    }

    // ----- limits -----

    /// `n` one-port ranges, two apart so that nothing merges.
    fn spaced(n: usize, from: u64) -> Vec<(u64, u64)> {
        (0..n as u64)
            .map(|i| (from + 2 * i, from + 2 * i))
            .collect()
    }

    /// A value with more than `MAX_RANGES_PER_RESOURCE` ranges, built the only way such
    /// values arise: by arithmetic.
    fn big(n: usize, from: u64) -> Ranges {
        spaced(n, from)
            .chunks(MAX_RANGES_PER_RESOURCE)
            .map(|c| Ranges::new(c.iter().copied()).unwrap())
            .fold(Ranges::default(), |acc, r| acc.union(&r))
    }

    fn ports_text(pairs: &[(u64, u64)]) -> String {
        let list: Vec<String> = pairs.iter().map(|(b, e)| format!("{b}-{e}")).collect();
        format!("ports:[{}]", list.join(","))
    }

    #[test]
    fn ranges_from_input_are_bounded() {
        let max = MAX_RANGES_PER_RESOURCE;
        assert_eq!(Ranges::new(spaced(max, 0)).unwrap().pairs().len(), max);
        assert_eq!(
            Ranges::new(spaced(max + 1, 0)),
            Err(AmountError::TooManyRanges { count: max + 1 })
        );
        // The incident: one registration with 200,000 one-port ranges.
        let err = Ranges::new(spaced(200_000, 0)).unwrap_err();
        assert_eq!(err, AmountError::TooManyRanges { count: 200_000 });
        assert_eq!(err.to_string(), "200000 ranges, at most 1000");
        // Counted as given, before merging: the sort is what the limit bounds.
        let adjacent = (0..=max as u64).map(|p| (p, p));
        assert_eq!(
            Ranges::new(adjacent),
            Err(AmountError::TooManyRanges { count: max + 1 })
        );
    }

    #[test]
    fn parse_is_bounded() {
        let tokens = |n: usize| {
            (0..n)
                .map(|i| format!("r{i}:1"))
                .collect::<Vec<_>>()
                .join(";")
        };
        assert_eq!(
            Resources::parse(&tokens(MAX_RESOURCES))
                .unwrap()
                .iter()
                .count(),
            128
        );
        let err = Resources::parse(&tokens(MAX_RESOURCES + 1)).unwrap_err();
        assert_eq!(err, ResourceError::TooManyResources { count: 129 });
        assert_eq!(err.to_string(), "129 resources, at most 128");

        let text = ports_text(&spaced(200_000, 0));
        let err = Resources::parse(&text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad amount for resource \"ports\": 200000 ranges, at most 1000"
        );
        assert!(Resources::parse(&ports_text(&spaced(1000, 0))).is_ok());
        // Two tokens of one entry, each within the limit, merging past it.
        let (a, b) = (ports_text(&spaced(600, 0)), ports_text(&spaced(600, 5000)));
        assert_eq!(
            Resources::parse(&format!("{a};{b}")),
            Err(ResourceError::Amount {
                name: "ports".into(),
                source: AmountError::TooManyRanges { count: 1200 }
            })
        );
        // Different roles are different entries.
        let b_web = b.replace("ports:", "ports(web):");
        assert!(Resources::parse(&format!("{a};{b_web}")).is_ok());
    }

    #[test]
    fn from_checked_is_bounded() {
        let item = |name: &str, value: Value| Resource {
            name: name.into(),
            role: None,
            value,
        };
        let scalars: Vec<Resource> = (0..=MAX_RESOURCES)
            .map(|i| item(&format!("r{i}"), Value::Scalar(Scalar::from_millis(1))))
            .collect();
        assert!(Resources::from_checked(scalars[..MAX_RESOURCES].to_vec()).is_ok());
        assert_eq!(
            Resources::from_checked(scalars),
            Err(ResourceError::TooManyResources { count: 129 })
        );
        // A ranges value past the limit can only come from arithmetic; it is still refused
        // as input.
        let err =
            Resources::from_checked(vec![item("ports", Value::Ranges(big(1001, 0)))]).unwrap_err();
        assert_eq!(
            err,
            ResourceError::Amount {
                name: "ports".into(),
                source: AmountError::TooManyRanges { count: 1001 }
            }
        );
        let halves = vec![
            item("ports", Value::Ranges(Ranges::new(spaced(700, 0)).unwrap())),
            item(
                "ports",
                Value::Ranges(Ranges::new(spaced(700, 9000)).unwrap()),
            ),
        ];
        assert_eq!(
            Resources::from_checked(halves).unwrap_err().to_string(),
            "bad amount for resource \"ports\": 1400 ranges, at most 1000"
        );
    }

    #[test]
    fn arithmetic_is_never_bounded() {
        let (a, b) = (
            Ranges::new(spaced(1000, 0)).unwrap(),
            Ranges::new(spaced(1000, 1)).unwrap(),
        );
        // Interleaved one-port ranges merge into one; apart they do not.
        assert_eq!(a.union(&b).pairs(), &[(0, 1999)]);
        let c = Ranges::new(spaced(1000, 10_000)).unwrap();
        assert_eq!(a.union(&c).pairs().len(), 2000);
        let ports = |r: &Ranges| {
            Resources::from(vec![Resource {
                name: "ports".into(),
                role: None,
                value: Value::Ranges(r.clone()),
            }])
        };
        let mut sum = ports(&a);
        sum.add(&ports(&c));
        assert_eq!(sum, ports(&a).plus(&ports(&c)));
        assert_eq!(sum.checked_sub(&ports(&c)), Some(ports(&a)));
        // Values with more ranges come back from the log and snapshots.
        let json = serde_json::to_string(&sum).unwrap();
        assert_eq!(serde_json::from_str::<Resources>(&json).unwrap(), sum);
    }

    #[test]
    fn deserializing_normalizes_and_refuses_inverted() {
        let r: Ranges = serde_json::from_str("[[30,40],[1,2],[3,5],[35,36]]").unwrap();
        assert_eq!(r.pairs(), &[(1, 5), (30, 40)]);
        assert_eq!(serde_json::to_string(&r).unwrap(), "[[1,5],[30,40]]");
        assert!(serde_json::from_str::<Ranges>("[[5,4]]").is_err());
    }

    #[test]
    fn count_saturates_at_the_full_range() {
        assert_eq!(Ranges::new([(0, u64::MAX)]).unwrap().count(), u64::MAX);
        assert_eq!(Ranges::new([(1, u64::MAX)]).unwrap().count(), u64::MAX);
        assert_eq!(Ranges::new([(7, 7), (9, 10)]).unwrap().count(), 3);
    }

    /// A guard against a quadratic algorithm coming back: at 100,000 ranges a quadratic sweep
    /// takes seconds in release and minutes in debug; these take milliseconds.
    #[test]
    fn large_values_are_linear() {
        let n = 100_000;
        let all = big(n, 0);
        let half = Ranges(all.pairs().iter().step_by(2).copied().collect());
        assert!(all.contains(&half));
        let rest = all.checked_sub(&half).unwrap();
        assert_eq!(rest.pairs().len(), n - n / 2);
        assert_eq!(rest.union(&half), all);
        assert_eq!(all.intersection(&half), half);
        assert_eq!(all.difference(&half), rest);
        let holder = |r: &Ranges| {
            Resources::from(vec![Resource {
                name: "ports".into(),
                role: None,
                value: Value::Ranges(r.clone()),
            }])
        };
        assert_eq!(
            holder(&all).checked_sub(&holder(&half)),
            Some(holder(&rest))
        );
        assert_eq!(holder(&all).saturating_sub(&holder(&half)), holder(&rest));
    }

    // ----- every operation against a naive model -----

    /// Endpoints lie in `[0, SPAN)` or `(u64::MAX - SPAN, u64::MAX]`. A range containing any
    /// integer of the gap between contains all of it and `SPAN` too, so the set of integers in
    /// `[0, SPAN]` and the top window decides every operation exactly (`SPAN` stands for the
    /// gap).
    const SPAN: u64 = 150;

    fn model(r: &Ranges) -> BTreeSet<u64> {
        let top = u64::MAX - SPAN + 1;
        r.pairs()
            .iter()
            .flat_map(|&(b, e)| (b..=e.min(SPAN)).chain(b.max(top)..=e))
            .collect()
    }

    fn assert_normalized(r: &Ranges) -> Result<(), TestCaseError> {
        for &(b, e) in r.pairs() {
            prop_assert!(b <= e, "inverted {:?}", r);
        }
        prop_assert!(is_normalized(r.pairs()), "not normalized {:?}", r);
        Ok(())
    }

    fn arb_edge_pair() -> impl Strategy<Value = (u64, u64)> {
        let low = (0..SPAN, 0u64..25).prop_map(|(b, l)| (b, (b + l).min(SPAN - 1)));
        let high = (0..SPAN, 0u64..25).prop_map(|(o, l)| {
            let b = u64::MAX - o;
            (b, b.saturating_add(l))
        });
        let spanning = (0..SPAN, 0..SPAN).prop_map(|(b, o)| (b, u64::MAX - o));
        let edges = prop_oneof![
            Just((0, 0)),
            Just((u64::MAX, u64::MAX)),
            Just((0, u64::MAX)),
            Just((u64::MAX - 1, u64::MAX)),
            Just((0, 1)),
        ];
        prop_oneof![6 => low, 4 => high, 1 => spanning, 1 => edges]
    }

    fn arb_edge_ranges() -> impl Strategy<Value = Ranges> {
        proptest::collection::vec(arb_edge_pair(), 0..14).prop_map(|v| Ranges::new(v).unwrap())
    }

    /// Any pairs, inverted ones included, in any order.
    fn arb_raw_pairs() -> impl Strategy<Value = Vec<(u64, u64)>> {
        let pair = prop_oneof![
            8 => arb_edge_pair(),
            1 => arb_edge_pair().prop_map(|(b, e)| (e, b)),
        ];
        proptest::collection::vec(pair, 0..14)
    }

    type Key = (String, Option<String>);

    /// Scalars and ranges of a `Resources` by (name, role); checks the bag is normalized.
    #[derive(Debug, Default, PartialEq)]
    struct Bag {
        scalars: BTreeMap<Key, u64>,
        ranges: BTreeMap<Key, BTreeSet<u64>>,
    }

    fn bag(r: &Resources) -> Result<Bag, TestCaseError> {
        for w in r.0.windows(2) {
            prop_assert!(
                w[0].key() < w[1].key(),
                "unsorted or duplicate keys: {:?}",
                r
            );
        }
        let mut out = Bag::default();
        for e in r.iter() {
            prop_assert!(!e.value.is_empty(), "empty entry in {:?}", r);
            let key = (e.name.clone(), e.role.clone());
            match &e.value {
                Value::Scalar(s) => {
                    out.scalars.insert(key, s.millis());
                }
                Value::Ranges(rs) => {
                    assert_normalized(rs)?;
                    out.ranges.insert(key, model(rs));
                }
            }
        }
        Ok(out)
    }

    fn bag_plus(a: &Bag, b: &Bag) -> Bag {
        let mut out = Bag {
            scalars: a.scalars.clone(),
            ranges: a.ranges.clone(),
        };
        for (k, v) in &b.scalars {
            *out.scalars.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &b.ranges {
            out.ranges.entry(k.clone()).or_default().extend(v);
        }
        out
    }

    fn bag_contains(a: &Bag, b: &Bag) -> bool {
        b.scalars
            .iter()
            .all(|(k, v)| a.scalars.get(k).copied().unwrap_or(0) >= *v)
            && b.ranges
                .iter()
                .all(|(k, v)| a.ranges.get(k).is_some_and(|have| v.is_subset(have)))
    }

    fn bag_saturating_sub(a: &Bag, b: &Bag) -> Bag {
        let mut out = Bag::default();
        for (k, v) in &a.scalars {
            let left = v.saturating_sub(b.scalars.get(k).copied().unwrap_or(0));
            if left > 0 {
                out.scalars.insert(k.clone(), left);
            }
        }
        for (k, v) in &a.ranges {
            let left: BTreeSet<u64> = match b.ranges.get(k) {
                Some(w) => v.difference(w).copied().collect(),
                None => v.clone(),
            };
            if !left.is_empty() {
                out.ranges.insert(k.clone(), left);
            }
        }
        out
    }

    fn arb_edge_resources() -> impl Strategy<Value = Vec<Resource>> {
        let role = prop_oneof![
            Just(None),
            Just(Some("a".to_string())),
            Just(Some("b".to_string()))
        ];
        let value = prop_oneof![
            (0u64..10_000).prop_map(|m| Value::Scalar(Scalar::from_millis(m))),
            arb_edge_ranges().prop_map(Value::Ranges),
        ];
        let name = prop_oneof![Just("cpus"), Just("mem"), Just("ports"), Just("zz")];
        proptest::collection::vec((name, role, value), 0..10).prop_map(|items| {
            items
                .into_iter()
                .map(|(name, role, value)| Resource {
                    name: name.to_string(),
                    role,
                    value,
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn new_matches_the_model(raw in arb_raw_pairs()) {
            match raw.iter().find(|(b, e)| b > e) {
                Some(&(b, e)) => {
                    prop_assert_eq!(Ranges::new(raw.clone()), Err(AmountError::InvertedRange(b, e)));
                    let json = serde_json::to_string(&raw).unwrap();
                    prop_assert!(serde_json::from_str::<Ranges>(&json).is_err());
                }
                None => {
                    let r = Ranges::new(raw.clone()).unwrap();
                    assert_normalized(&r)?;
                    let top = u64::MAX - SPAN + 1;
                    let expected: BTreeSet<u64> = raw
                        .iter()
                        .flat_map(|&(b, e)| (b..=e.min(SPAN)).chain(b.max(top)..=e))
                        .collect();
                    prop_assert_eq!(model(&r), expected);
                    // Deserializing normalizes the same way.
                    let json = serde_json::to_string(&raw).unwrap();
                    prop_assert_eq!(serde_json::from_str::<Ranges>(&json).unwrap(), r.clone());
                    prop_assert_eq!(serde_json::from_str::<Ranges>(&serde_json::to_string(&r).unwrap()).unwrap(), r.clone());
                    // Order and duplication of the input do not matter.
                    let mut reversed = raw.clone();
                    reversed.reverse();
                    reversed.extend(raw.iter().copied());
                    prop_assert_eq!(Ranges::new(reversed).unwrap(), r);
                }
            }
        }

        #[test]
        fn set_operations_match_the_model(a in arb_edge_ranges(), b in arb_edge_ranges()) {
            for (x, y) in [(&a, &b), (&b, &a), (&a, &a)] {
                let (sx, sy) = (model(x), model(y));
                let union = x.union(y);
                let inter = x.intersection(y);
                let diff = x.difference(y);
                for r in [&union, &inter, &diff] {
                    assert_normalized(r)?;
                }
                prop_assert_eq!(model(&union), sx.union(&sy).copied().collect::<BTreeSet<_>>());
                prop_assert_eq!(model(&inter), sx.intersection(&sy).copied().collect::<BTreeSet<_>>());
                prop_assert_eq!(model(&diff), sx.difference(&sy).copied().collect::<BTreeSet<_>>());
                prop_assert_eq!(x.contains(y), sy.is_subset(&sx));
                match x.checked_sub(y) {
                    Some(d) => {
                        prop_assert!(sy.is_subset(&sx));
                        prop_assert_eq!(d, diff.clone());
                    }
                    None => prop_assert!(!sy.is_subset(&sx)),
                }
                if !sx.contains(&SPAN) {
                    prop_assert_eq!(x.count(), sx.len() as u64);
                }
                // Exact identities (beyond the model).
                prop_assert_eq!(union.clone(), y.union(x));
                prop_assert_eq!(inter.clone(), y.intersection(x));
                prop_assert_eq!(diff.union(&inter), x.clone());
                prop_assert!(union.contains(x) && x.contains(&inter));
            }
        }

        #[test]
        fn subtracting_a_subset_matches_the_model(a in arb_edge_ranges(), c in arb_edge_ranges()) {
            let b = a.intersection(&c);
            prop_assert!(a.contains(&b));
            let d = a.checked_sub(&b).unwrap();
            assert_normalized(&d)?;
            prop_assert_eq!(model(&d), model(&a).difference(&model(&b)).copied().collect::<BTreeSet<_>>());
            prop_assert_eq!(d.union(&b), a.clone());
            prop_assert!(d.intersection(&b).is_empty());
            prop_assert_eq!(a.checked_sub(&a), Some(Ranges::default()));
            prop_assert_eq!(a.checked_sub(&Ranges::default()), Some(a.clone()));
        }

        #[test]
        fn resources_match_the_model(a in arb_edge_resources(), b in arb_edge_resources()) {
            // `From` normalizes exactly like adding the items one at a time.
            let mut one_by_one = Resources::new();
            let mut expected_a = Bag::default();
            for item in &a {
                let single = Resources::from(vec![item.clone()]);
                expected_a = bag_plus(&expected_a, &bag(&single)?);
                one_by_one.add(&single);
            }
            let (ra, rb) = (Resources::from(a), Resources::from(b));
            prop_assert_eq!(&one_by_one, &ra);
            let (ma, mb) = (bag(&ra)?, bag(&rb)?);
            prop_assert_eq!(&ma, &expected_a);

            let sum = ra.plus(&rb);
            prop_assert_eq!(bag(&sum)?, bag_plus(&ma, &mb));
            let mut added = ra.clone();
            added.add(&rb);
            prop_assert_eq!(&added, &sum);
            prop_assert_eq!(ra.contains(&rb), bag_contains(&ma, &mb));
            let sat = ra.saturating_sub(&rb);
            prop_assert_eq!(bag(&sat)?, bag_saturating_sub(&ma, &mb));
            match ra.checked_sub(&rb) {
                Some(d) => {
                    prop_assert!(bag_contains(&ma, &mb));
                    prop_assert_eq!(d, sat);
                }
                None => prop_assert!(!bag_contains(&ma, &mb)),
            }
            prop_assert_eq!(sum.checked_sub(&rb).map(|d| d.plus(&rb)), Some(sum.clone()));
            prop_assert_eq!(Resources::parse(&sum.to_string()).unwrap(), sum.clone());
            prop_assert_eq!(Resources::from_checked(sum.0.clone()).unwrap(), sum.clone());
            prop_assert_eq!(serde_json::from_str::<Resources>(&serde_json::to_string(&sum).unwrap()).unwrap(), sum);
        }
    }
}
