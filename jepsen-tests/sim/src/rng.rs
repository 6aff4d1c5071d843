//! The run's one source of randomness: a generator seeded from the run's seed, shared by
//! every task of the run (they all run on one thread, in an order that is itself a function
//! of the seed, so the draws are too).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A shared handle on the run's generator.
#[derive(Clone)]
pub struct SimRng(Arc<Mutex<StdRng>>);

impl SimRng {
    pub fn new(seed: u64) -> SimRng {
        SimRng(Arc::new(Mutex::new(StdRng::seed_from_u64(seed))))
    }

    fn with<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A number in `[lo, hi]`.
    pub fn range(&self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        self.with(|r| r.gen_range(lo..=hi))
    }

    /// An index below `n` (n > 0).
    pub fn below(&self, n: usize) -> usize {
        self.with(|r| r.gen_range(0..n))
    }

    /// True with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.with(|r| r.gen_bool(p.min(1.0)))
    }

    /// Milliseconds in `[lo, hi]`.
    pub fn millis(&self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    /// A fresh seed (for a sub-generator).
    pub fn next_u64(&self) -> u64 {
        self.with(|r| r.gen())
    }

    /// One of `items`, uniformly.
    pub fn pick<'a, T>(&self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
