//! Ranges arithmetic at 1k, 10k and 100k ranges: the linear sweeps of `Ranges` against the
//! algorithms they replaced (kept below, in `old`, as the baseline). Prints a markdown table.
//!
//! ```text
//! cargo bench -p agora-registry --bench ranges
//! RANGES_BENCH_OLD_100K=1 cargo bench -p agora-registry --bench ranges  # old checked_sub at 100k too (seconds)
//! ```
//!
//! Values past `MAX_RANGES_PER_RESOURCE` can only come from arithmetic, so the big ones are
//! built as unions of values within the limit.

use agora_registry::resources::{Ranges, MAX_RANGES_PER_RESOURCE};
use agora_registry::{Resource, Resources, Value};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The implementation before issue 12, verbatim but over plain pair lists.
mod old {
    pub type Pairs = Vec<(u64, u64)>;

    pub fn new(mut pairs: Pairs) -> Pairs {
        pairs.sort_unstable();
        let mut out: Pairs = Vec::with_capacity(pairs.len());
        for (b, e) in pairs {
            match out.last_mut() {
                Some(last) if b <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => out.push((b, e)),
            }
        }
        out
    }

    pub fn union(a: &Pairs, b: &Pairs) -> Pairs {
        new(a.iter().chain(b.iter()).copied().collect())
    }

    pub fn contains(a: &Pairs, other: &Pairs) -> bool {
        other.iter().all(|&(b, e)| {
            let idx = a.partition_point(|&(_, end)| end < b);
            a.get(idx).is_some_and(|&(sb, se)| sb <= b && e <= se)
        })
    }

    /// The quadratic one: every range of `a` scans every range of `other`.
    pub fn checked_sub(a: &Pairs, other: &Pairs) -> Option<Pairs> {
        if !contains(a, other) {
            return None;
        }
        let mut out = Vec::with_capacity(a.len() + other.len());
        for &(b, e) in a {
            let mut start = Some(b);
            for &(hb, he) in other.iter().filter(|&&(hb, he)| he >= b && hb <= e) {
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
        Some(out)
    }
}

/// One-port ranges at `from`, `from + step`, ... (`step` >= 2: nothing merges).
fn ports(n: usize, from: u64, step: u64) -> Vec<(u64, u64)> {
    (0..n as u64)
        .map(|i| from + step * i)
        .map(|p| (p, p))
        .collect()
}

/// Any number of pairs as a `Ranges`, through unions of values within the input limit.
fn build(pairs: &[(u64, u64)]) -> Ranges {
    pairs
        .chunks(MAX_RANGES_PER_RESOURCE)
        .map(|c| Ranges::new(c.iter().copied()).expect("within the limit"))
        .fold(Ranges::default(), |acc, r| acc.union(&r))
}

fn bag(ranges: &Ranges) -> Resources {
    Resources::from(vec![
        Resource {
            name: "cpus".into(),
            role: None,
            value: Value::Scalar(agora_registry::Scalar::from_millis(4000)),
        },
        Resource {
            name: "ports".into(),
            role: None,
            value: Value::Ranges(ranges.clone()),
        },
    ])
}

/// Median time of one call, over repeated calls for about `budget` (at least 3 calls).
fn time<T>(budget: Duration, mut f: impl FnMut() -> T) -> Duration {
    black_box(f());
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 3 || (start.elapsed() < budget && samples.len() < 100_000) {
        let t = Instant::now();
        black_box(f());
        samples.push(t.elapsed());
    }
    samples.sort();
    samples[samples.len() / 2]
}

fn show(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn main() {
    let budget = Duration::from_millis(300);
    let old_100k = std::env::var_os("RANGES_BENCH_OLD_100K").is_some();
    println!("| operation | ranges (n) | new | old | old / new |");
    println!("|---|---:|---:|---:|---:|");
    let row = |op: &str, n: usize, new: Duration, old: Option<Duration>| {
        let (old_s, ratio) = match old {
            Some(o) => (
                show(o),
                format!("{:.0}x", o.as_secs_f64() / new.as_secs_f64()),
            ),
            None => ("not run".into(), "".into()),
        };
        println!("| {op} | {n} | {} | {old_s} | {ratio} |", show(new));
    };
    for n in [1_000, 10_000, 100_000] {
        // An agent's n one-port ranges; a request for every other one of them; n more
        // ports between them.
        let all_pairs = ports(n, 10_000, 4);
        let half_pairs: Vec<_> = all_pairs.iter().step_by(2).copied().collect();
        let other_pairs = ports(n, 10_002, 4);
        let (all, half, other) = (build(&all_pairs), build(&half_pairs), build(&other_pairs));
        assert_eq!(all.pairs(), &all_pairs[..]);

        // Same answers as the baseline.
        let expected = old::checked_sub(&all_pairs, &half_pairs);
        if n <= 10_000 {
            assert_eq!(all.checked_sub(&half).map(|r| r.pairs().to_vec()), expected);
        }
        assert_eq!(
            all.union(&other).pairs(),
            &old::union(&all_pairs, &other_pairs)[..]
        );

        let run_old = n <= 10_000 || old_100k;
        let new = time(budget, || all.checked_sub(&half));
        let old = run_old.then(|| time(budget, || old::checked_sub(&all_pairs, &half_pairs)));
        row("`Ranges::checked_sub` (n - n/2)", n, new, old);

        let new = time(budget, || all.union(&other));
        let old = time(budget, || old::union(&all_pairs, &other_pairs));
        row("`Ranges::union` (n + n, disjoint)", n, new, Some(old));

        let new = time(budget, || all.contains(&half));
        let old = time(budget, || old::contains(&all_pairs, &half_pairs));
        row("`Ranges::contains` (n ⊇ n/2)", n, new, Some(old));

        // One task's port: the usual request.
        let one_pairs = vec![all_pairs[n / 2]];
        let one = build(&one_pairs);
        let new = time(budget, || all.checked_sub(&one));
        let old = time(budget, || old::checked_sub(&all_pairs, &one_pairs));
        row("`Ranges::checked_sub` (n - 1)", n, new, Some(old));
        let spare_pairs = vec![(all_pairs[n / 2].0 + 2, all_pairs[n / 2].0 + 2)];
        let spare = build(&spare_pairs);
        let new = time(budget, || all.union(&spare));
        let old = time(budget, || old::union(&all_pairs, &spare_pairs));
        row("`Ranges::union` (n + 1)", n, new, Some(old));
        let new = time(budget, || all.contains(&one));
        let old = time(budget, || old::contains(&all_pairs, &one_pairs));
        row("`Ranges::contains` (n ⊇ 1)", n, new, Some(old));

        let new = time(budget, || all.intersection(&half));
        row("`Ranges::intersection` (n ∩ n/2)", n, new, None);

        let (have, want) = (bag(&all), bag(&half));
        let new = time(budget, || have.checked_sub(&want));
        row("`Resources::checked_sub` (cpus + ports)", n, new, None);
        let new = time(budget, || have.saturating_sub(&want));
        row("`Resources::saturating_sub` (cpus + ports)", n, new, None);
    }
}
