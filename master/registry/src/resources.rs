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
}

/// A set of integers kept as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    /// Builds a normalized set from inclusive `(begin, end)` pairs in any order.
    pub fn new(pairs: impl IntoIterator<Item = (u64, u64)>) -> Result<Self, AmountError> {
        let mut pairs: Vec<(u64, u64)> = pairs.into_iter().collect();
        if let Some(&(b, e)) = pairs.iter().find(|(b, e)| b > e) {
            return Err(AmountError::InvertedRange(b, e));
        }
        pairs.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(pairs.len());
        for (b, e) in pairs {
            match out.last_mut() {
                Some(last) if b <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => out.push((b, e)),
            }
        }
        Ok(Ranges(out))
    }

    pub fn pairs(&self) -> &[(u64, u64)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many integers the set holds.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|(b, e)| e - b + 1).sum()
    }

    pub fn union(&self, other: &Ranges) -> Ranges {
        Ranges::new(self.0.iter().chain(other.0.iter()).copied())
            .expect("normalized ranges are never inverted")
    }

    /// Whether every integer of `other` is in `self`.
    pub fn contains(&self, other: &Ranges) -> bool {
        other.0.iter().all(|&(b, e)| {
            // Normalized: a contained range lies inside exactly one of our ranges.
            let idx = self.0.partition_point(|&(_, end)| end < b);
            self.0.get(idx).is_some_and(|&(sb, se)| sb <= b && e <= se)
        })
    }

    /// `self` minus `other`, or `None` when `other` is not contained in `self`.
    pub fn checked_sub(&self, other: &Ranges) -> Option<Ranges> {
        if !self.contains(other) {
            return None;
        }
        let mut out = Vec::with_capacity(self.0.len() + other.0.len());
        for &(b, e) in &self.0 {
            // `start` is the first integer of [b, e] not yet cut away; None once a hole
            // reaches u64::MAX.
            let mut start = Some(b);
            for &(hb, he) in other.0.iter().filter(|&&(hb, he)| he >= b && hb <= e) {
                if let Some(s) = start {
                    if hb > s {
                        out.push((s, hb - 1));
                    }
                }
                start = he.checked_add(1);
            }
            if let Some(s) = start.filter(|&s| s <= e) {
                out.push((s, e));
            }
        }
        Some(Ranges(out))
    }
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
    fn from(items: Vec<Resource>) -> Self {
        let mut out = Resources::default();
        for r in items {
            out.add_one(r);
        }
        out
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
    pub fn parse(text: &str) -> Result<Resources, ResourceError> {
        let mut out = Resources::default();
        for token in text.split(';').map(str::trim).filter(|t| !t.is_empty()) {
            out.add_one(parse_token(token)?);
        }
        Ok(out)
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

    /// Builds from items, checking every name, role and range; the domain boundary for
    /// resources that arrive from the wire.
    pub fn from_checked(items: Vec<Resource>) -> Result<Resources, ResourceError> {
        for r in &items {
            validate_name(&r.name)?;
            if let Some(role) = &r.role {
                validate_role(role)?;
            }
            if let Value::Ranges(ranges) = &r.value {
                if let Some(&(b, e)) = ranges.0.iter().find(|(b, e)| b > e) {
                    return Err(ResourceError::Amount {
                        name: r.name.clone(),
                        source: AmountError::InvertedRange(b, e),
                    });
                }
            }
        }
        Ok(Resources::from(items))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Resource> {
        self.0.iter()
    }

    fn add_one(&mut self, r: Resource) {
        if r.value.is_empty() {
            return;
        }
        match self.0.binary_search_by(|x| x.key().cmp(&r.key())) {
            Ok(i) => {
                let slot = &mut self.0[i].value;
                *slot = match (&*slot, r.value) {
                    (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(a.saturating_add(b)),
                    (Value::Ranges(a), Value::Ranges(b)) => Value::Ranges(a.union(&b)),
                    _ => unreachable!("the key includes the kind"),
                };
            }
            Err(i) => self.0.insert(i, r),
        }
    }

    /// `self + other`.
    pub fn plus(&self, other: &Resources) -> Resources {
        let mut out = self.clone();
        out.add(other);
        out
    }

    /// Adds `other` in place.
    pub fn add(&mut self, other: &Resources) {
        for r in &other.0 {
            self.add_one(r.clone());
        }
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

    /// `self - other`, or `None` when `other` is not contained in `self`.
    pub fn checked_sub(&self, other: &Resources) -> Option<Resources> {
        let mut out = self.clone();
        for need in &other.0 {
            let i = out.0.binary_search_by(|x| x.key().cmp(&need.key())).ok()?;
            let left = match (&out.0[i].value, &need.value) {
                (Value::Scalar(have), Value::Scalar(want)) => {
                    Value::Scalar(have.checked_sub(*want)?)
                }
                (Value::Ranges(have), Value::Ranges(want)) => {
                    Value::Ranges(have.checked_sub(want)?)
                }
                _ => return None,
            };
            if left.is_empty() {
                out.0.remove(i);
            } else {
                out.0[i].value = left;
            }
        }
        Some(out)
    }

    /// `self - other`, keeping what cannot be subtracted (never negative).
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        let mut out = self.clone();
        for need in &other.0 {
            if let Ok(i) = out.0.binary_search_by(|x| x.key().cmp(&need.key())) {
                let left = match (&out.0[i].value, &need.value) {
                    (Value::Scalar(have), Value::Scalar(want)) => {
                        Value::Scalar(have.checked_sub(*want).unwrap_or(Scalar::ZERO))
                    }
                    (Value::Ranges(have), Value::Ranges(want)) => {
                        let common = Ranges::new(want.pairs().iter().flat_map(|&(b, e)| {
                            have.pairs().iter().filter_map(move |&(hb, he)| {
                                let (lo, hi) = (b.max(hb), e.min(he));
                                (lo <= hi).then_some((lo, hi))
                            })
                        }))
                        .expect("intersections are ordered");
                        Value::Ranges(have.checked_sub(&common).expect("subset by construction"))
                    }
                    _ => unreachable!("the key includes the kind"),
                };
                if left.is_empty() {
                    out.0.remove(i);
                } else {
                    out.0[i].value = left;
                }
            }
        }
        out
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
}
