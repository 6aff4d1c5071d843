//! Share arithmetic: interned scalar names, per-name amounts in thousandths, dominant shares
//! and a total order on them.

use agora_registry::{Resources, Value};
use std::cmp::Ordering;

/// A DRF share as a totally ordered key (`f64::total_cmp`), so it can sit in a `BTreeSet`.
/// Shares are finite and non-negative by construction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Share(pub(crate) f64);

impl PartialEq for Share {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Share {}

impl PartialOrd for Share {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Share {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Scalar resource names seen so far, each given a small dense index. Names are few (cpus,
/// mem, disk, gpus, ...), so a linear scan beats hashing and keeps iteration deterministic.
#[derive(Clone, Debug, Default)]
pub(crate) struct Names(Vec<String>);

impl Names {
    /// The index of `name`, adding it if new.
    pub(crate) fn intern(&mut self, name: &str) -> usize {
        match self.0.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.0.push(name.to_string());
                self.0.len() - 1
            }
        }
    }

    /// The index of `name`, if seen.
    #[cfg(test)]
    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|n| n == name)
    }
}

/// Whole thousandths per interned scalar name (index from [`Names`]); ranges never count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ScalarVec(Vec<u64>);

impl ScalarVec {
    fn slot(&mut self, i: usize) -> &mut u64 {
        if self.0.len() <= i {
            self.0.resize(i + 1, 0);
        }
        &mut self.0[i]
    }

    /// Adds (`add`) or subtracts the scalar entries of `r`. Subtraction saturates at zero,
    /// which only matters if a caller breaks the bookkeeping (it never does internally).
    pub(crate) fn apply(&mut self, names: &mut Names, r: &Resources, add: bool) {
        for res in r.iter() {
            if let Value::Scalar(s) = &res.value {
                let slot = self.slot(names.intern(&res.name));
                *slot = if add {
                    slot.saturating_add(s.millis())
                } else {
                    slot.saturating_sub(s.millis())
                };
            }
        }
    }

    /// Adds (`add`) or subtracts another vector, entry by entry.
    pub(crate) fn apply_vec(&mut self, other: &ScalarVec, add: bool) {
        for (i, &m) in other.0.iter().enumerate() {
            let slot = self.slot(i);
            *slot = if add {
                slot.saturating_add(m)
            } else {
                slot.saturating_sub(m)
            };
        }
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.0.iter().all(|&m| m == 0)
    }

    /// DRF's dominant share: the largest `self[i] / totals[i]` over names whose total is
    /// positive (0 when there is none).
    pub(crate) fn dominant(&self, totals: &ScalarVec) -> f64 {
        self.0
            .iter()
            .zip(totals.0.iter())
            .filter(|&(_, &t)| t > 0)
            .map(|(&a, &t)| a as f64 / t as f64)
            .fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_orders_totally() {
        let mut v = [Share(0.5), Share(0.0), Share(1.0), Share(0.25)];
        v.sort();
        assert_eq!(v.map(|s| s.0), [0.0, 0.25, 0.5, 1.0]);
        assert_eq!(Share(0.3), Share(0.3));
    }

    #[test]
    fn dominant_share_ignores_ranges_and_empty_totals() {
        let mut names = Names::default();
        let mut totals = ScalarVec::default();
        totals.apply(
            &mut names,
            &Resources::parse("cpus:10;mem:1000;ports:[1-100]").unwrap(),
            true,
        );
        let mut held = ScalarVec::default();
        held.apply(
            &mut names,
            &Resources::parse("cpus:1;mem:500;ports:[1-99];gpus:1").unwrap(),
            true,
        );
        // gpus has no total (no active agent has any): it is ignored, not infinite.
        assert_eq!(held.dominant(&totals), 0.5);
        assert_eq!(names.find("ports"), None);
        held.apply(&mut names, &Resources::parse("mem:500").unwrap(), false);
        assert_eq!(held.dominant(&totals), 0.1);
    }
}
