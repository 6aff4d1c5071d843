//! Linearizability of one register's history: the Wing-Gong search with Lowe's memo, as
//! Knossos and Porcupine do it, written for the register workload
//! ([`crate::register`]).
//!
//! A history is a set of [`Op`]s: writes of a value and reads that returned one, each with
//! the time it was invoked and the time it completed. It is linearizable when every op
//! can be given a point between its invocation and its completion such that, taken in
//! the order of those points, every read returns the value of the last write before it
//! (or the initial value). Linearizability is local (Herlihy and Wing), so a history of
//! many registers is checked one register at a time: the caller groups by key.
//!
//! Ops whose outcome is unknown (a timeout, a broken connection after the request may
//! have been sent) are *indeterminate*:
//! - an unknown read carries no information and is dropped;
//! - an unknown write may take effect at any time after its invocation, or never.
//!   Before the search, an unknown write whose value no read returned is dropped: never
//!   taking effect explains every history that taking effect somewhere explains (any read
//!   between it and the next write would have returned its value, and none did). An
//!   unknown write whose value some read returned must take effect before that read
//!   completes; when its value is unique among the writes and is not the initial value,
//!   that completion bounds it, which keeps the search as narrow as for acknowledged
//!   writes. Otherwise it stays open until the end of the history (taking effect last is
//!   the same as never).
//!
//! Times are milliseconds as recorded, so two ops are ordered only when one completed
//! strictly before the other was invoked; equal times count as concurrent (a recorded
//! time is the floor of the real one, so that is the conservative reading).
//!
//! The search ([`check`]) walks the invocation and completion events in time order as a
//! doubly linked list (Wing and Gong): at an invocation it tries to make that op take
//! effect now (a write always can; a read only if it returns the current value), lifts it
//! out of the list and starts again from the head; reaching a completion of an op not yet
//! placed means the choices so far cannot be completed, so it backtracks. Lowe's
//! optimisation remembers every (set of placed ops, register value) it has entered and
//! never enters one twice: a second path to the same configuration fails as the first
//! did. The search is bounded ([`DEFAULT_BUDGET`] steps and [`MEMO_LIMIT_BYTES`] of memo):
//! past either it is [`Outcome::Undecided`], which a checker must count as a failure.
//!
//! What it must not do: I/O, clock reads, or know where the ops came from; it is a pure
//! function of its arguments.

use std::collections::{BTreeSet, HashSet};

/// A register's value. The register workload encodes "no value yet" as 0.
pub type Value = u64;

/// Search steps allowed per register before the answer is [`Outcome::Undecided`].
pub const DEFAULT_BUDGET: u64 = 5_000_000;

/// Memory the memo may take per register (its sets of placed ops and values) before the
/// answer is [`Outcome::Undecided`].
pub const MEMO_LIMIT_BYTES: usize = 512 << 20;

/// Whether an op wrote or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    Write,
    Read,
}

/// One operation on the register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub kind: OpKind,
    /// The value written, or the value the read returned.
    pub value: Value,
    pub invoke_ms: u64,
    /// When it completed; `None`: its outcome is unknown.
    pub complete_ms: Option<u64>,
    /// Who did it (client, replica), for explanations only.
    pub client: String,
}

impl Op {
    pub fn write(value: Value, invoke_ms: u64, complete_ms: Option<u64>) -> Op {
        Op {
            kind: OpKind::Write,
            value,
            invoke_ms,
            complete_ms,
            client: String::new(),
        }
    }

    pub fn read(value: Value, invoke_ms: u64, complete_ms: Option<u64>) -> Op {
        Op {
            kind: OpKind::Read,
            value,
            invoke_ms,
            complete_ms,
            client: String::new(),
        }
    }

    /// Sets who did it.
    pub fn by(mut self, client: impl Into<String>) -> Op {
        self.client = client.into();
        self
    }

    /// E.g. `write 17 by reg-1 in [1.000s, 1.020s]`, `read 0 in [2.000s, ?]`.
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            OpKind::Write => "write",
            OpKind::Read => "read",
        };
        let by = if self.client.is_empty() {
            String::new()
        } else {
            format!(" by {}", self.client)
        };
        let end = self.complete_ms.map_or_else(|| "?".to_string(), secs);
        format!(
            "{kind} {}{by} in [{}, {end}]",
            self.value,
            secs(self.invoke_ms)
        )
    }
}

/// `t_ms` as seconds with millisecond precision, e.g. `12.345s` (as the checkers write).
fn secs(t_ms: u64) -> String {
    format!("{}.{:03}s", t_ms / 1000, t_ms % 1000)
}

/// What the search concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Linearizable,
    /// No order explains the history.
    NotLinearizable(Violation),
    /// The search ran out of budget: no answer (count it as a failure).
    Undecided {
        reason: String,
    },
}

/// Why a history is not linearizable: the op the search could not place at the furthest
/// point it reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The op whose completion came with no order that places it.
    pub op: Op,
    /// How many ops were placed (in some order consistent with the history) when it got
    /// stuck on `op`.
    pub placed: usize,
    /// The register values it could hold at that point.
    pub possible: Vec<Value>,
    /// A sentence for a human.
    pub explanation: String,
}

/// The answer and what it cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub outcome: Outcome,
    /// Ops searched (after the indeterminate ones that carry no information were dropped).
    pub ops: usize,
    /// Unknown reads dropped.
    pub dropped_reads: usize,
    /// Unknown writes dropped because no read returned their value.
    pub dropped_writes: usize,
    /// Search steps taken.
    pub steps: u64,
}

impl Check {
    pub fn is_linearizable(&self) -> bool {
        self.outcome == Outcome::Linearizable
    }
}

/// One op as the search sees it: its window, `u64::MAX` for "open until the end".
#[derive(Clone, Copy, Debug)]
struct Window {
    kind: OpKind,
    value: Value,
    invoke: u64,
    complete: u64,
    /// Index into the caller's ops.
    original: usize,
}

/// The ops the search needs, with the indeterminate ones dropped or bounded (module docs).
fn prepare(ops: &[Op], initial: Value) -> (Vec<Window>, usize, usize) {
    let mut dropped_reads = 0;
    let mut dropped_writes = 0;
    // Earliest completion of a read returning each value.
    let mut read_by: std::collections::HashMap<Value, u64> = std::collections::HashMap::new();
    let mut writes_of: std::collections::HashMap<Value, usize> = std::collections::HashMap::new();
    for op in ops {
        match (op.kind, op.complete_ms) {
            (OpKind::Read, Some(c)) => {
                let e = read_by.entry(op.value).or_insert(c);
                *e = (*e).min(c);
            }
            (OpKind::Write, _) => *writes_of.entry(op.value).or_insert(0) += 1,
            (OpKind::Read, None) => {}
        }
    }
    let mut windows = Vec::with_capacity(ops.len());
    for (original, op) in ops.iter().enumerate() {
        let complete = match (op.kind, op.complete_ms) {
            (_, Some(c)) => c,
            (OpKind::Read, None) => {
                dropped_reads += 1;
                continue;
            }
            (OpKind::Write, None) => match read_by.get(&op.value) {
                None => {
                    dropped_writes += 1;
                    continue;
                }
                Some(&first_read_done) if op.value != initial && writes_of[&op.value] == 1 => {
                    first_read_done
                }
                Some(_) => u64::MAX,
            },
        };
        windows.push(Window {
            kind: op.kind,
            value: op.value,
            invoke: op.invoke_ms,
            // A completion before the invocation (a read that saw an unknown write's value
            // before the write was invoked) cannot be: it orders the read first.
            complete: complete.max(op.invoke_ms),
            original,
        });
    }
    (windows, dropped_reads, dropped_writes)
}

/// A set of op indices.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// The furthest point the search got stuck at: on which op, with how many placed, and
/// the values the register held there.
struct Stuck {
    window: usize,
    placed: usize,
    values: BTreeSet<Value>,
}

/// Checks one register's history, starting from `initial`, with at most `budget` search
/// steps.
pub fn check(ops: &[Op], initial: Value, budget: u64) -> Check {
    let (windows, dropped_reads, dropped_writes) = prepare(ops, initial);
    let n = windows.len();
    let mut result = Check {
        outcome: Outcome::Linearizable,
        ops: n,
        dropped_reads,
        dropped_writes,
        steps: 0,
    };
    if n == 0 {
        return result;
    }
    // Events: 2i is op i's invocation, 2i+1 its completion. In time order; at equal
    // times invocations first (concurrent, the conservative reading).
    let mut order: Vec<usize> = (0..2 * n).collect();
    order.sort_by_key(|&e| {
        let w = &windows[e / 2];
        if e % 2 == 0 {
            (w.invoke, 0, e)
        } else {
            (w.complete, 1, e)
        }
    });
    // The doubly linked list over events; HEAD and TAIL are sentinels.
    let (head, tail) = (2 * n, 2 * n + 1);
    let mut next = vec![tail; 2 * n + 2];
    let mut prev = vec![head; 2 * n + 2];
    let mut last = head;
    for &e in &order {
        next[last] = e;
        prev[e] = last;
        last = e;
    }
    next[last] = tail;
    prev[tail] = last;
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, q) = (prev[e], next[e]);
        next[p] = q;
        prev[q] = p;
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, q) = (prev[e], next[e]);
        next[p] = e;
        prev[q] = e;
    };

    let words = n.div_ceil(64);
    let memo_entry_bytes = words * 8 + std::mem::size_of::<(Bits, Value)>() + 16;
    let mut memo: HashSet<(Bits, Value)> = HashSet::new();
    let mut placed = Bits::new(n);
    let mut state = initial;
    // Invocation events of the placed ops, with the value before each.
    let mut stack: Vec<(usize, Value)> = Vec::new();
    let mut stuck: Option<Stuck> = None;
    let mut entry = next[head];
    while next[head] != tail {
        result.steps += 1;
        if result.steps > budget {
            result.outcome = Outcome::Undecided {
                reason: format!(
                    "no answer within {budget} search steps ({n} ops, {} placed at most)",
                    stuck
                        .as_ref()
                        .map_or(stack.len(), |s| s.placed.max(stack.len()))
                ),
            };
            return result;
        }
        if entry % 2 == 0 {
            let i = entry / 2;
            let w = &windows[i];
            let after = match w.kind {
                OpKind::Write => Some(w.value),
                OpKind::Read => (w.value == state).then_some(state),
            };
            if let Some(after) = after {
                placed.set(i);
                if memo.insert((placed.clone(), after)) {
                    if memo.len().saturating_mul(memo_entry_bytes) > MEMO_LIMIT_BYTES {
                        result.outcome = Outcome::Undecided {
                            reason: format!(
                                "the search's memo passed {} MiB ({n} ops)",
                                MEMO_LIMIT_BYTES >> 20
                            ),
                        };
                        return result;
                    }
                    stack.push((entry, state));
                    state = after;
                    unlink(&mut next, &mut prev, entry);
                    unlink(&mut next, &mut prev, entry + 1);
                    entry = next[head];
                    continue;
                }
                placed.clear(i);
            }
            entry = next[entry];
        } else {
            // Op `entry / 2` completed and no choice so far places it: backtrack.
            let i = entry / 2;
            match &mut stuck {
                Some(s) if s.placed > stack.len() => {}
                Some(s) if s.placed == stack.len() && s.window == i => {
                    s.values.insert(state);
                }
                Some(s) if s.placed == stack.len() => {}
                _ => {
                    stuck = Some(Stuck {
                        window: i,
                        placed: stack.len(),
                        values: BTreeSet::from([state]),
                    })
                }
            }
            let Some((call, before)) = stack.pop() else {
                let s = stuck.expect("set just above");
                result.outcome = Outcome::NotLinearizable(violation(ops, &windows, s, initial));
                return result;
            };
            state = before;
            placed.clear(call / 2);
            relink(&mut next, &mut prev, call + 1);
            relink(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
    result
}

/// The simplest proof that `read` is stale, if there is one: every write of the value it
/// returned (or the start, for the initial value) completed before another write was
/// invoked, which completed before the read was invoked. Returns how the value was
/// written and the newest such overwriting write.
fn overwritten<'a>(ops: &'a [Op], read: &Op, initial: Value) -> Option<(String, &'a Op)> {
    let writers: Vec<&Op> = ops
        .iter()
        .filter(|o| o.kind == OpKind::Write && o.value == read.value)
        .collect();
    let from_start = writers.is_empty() && read.value == initial;
    if writers.is_empty() && !from_start {
        return None;
    }
    // Writes of the value whose outcome is unknown may take effect at any time.
    let done: Vec<u64> = writers
        .iter()
        .map(|w| w.complete_ms)
        .collect::<Option<Vec<u64>>>()?;
    let newer = ops
        .iter()
        .filter(|o| o.kind == OpKind::Write && o.value != read.value)
        .filter(|o| o.complete_ms.is_some_and(|c| c < read.invoke_ms))
        .filter(|o| done.iter().all(|&d| d < o.invoke_ms))
        .max_by_key(|o| o.complete_ms)?;
    let written = if from_start {
        "the initial value".to_string()
    } else {
        format!("written by {}", writers[0].describe())
    };
    Some((written, newer))
}

/// Describes the op the search got stuck on.
fn violation(ops: &[Op], windows: &[Window], stuck: Stuck, initial: Value) -> Violation {
    let op = ops[windows[stuck.window].original].clone();
    let possible: Vec<Value> = stuck.values.into_iter().collect();
    let source = |v: Value| -> String {
        let writes: Vec<&Op> = ops
            .iter()
            .filter(|o| o.kind == OpKind::Write && o.value == v)
            .collect();
        match writes.first() {
            Some(w) => {
                let outcome = if w.complete_ms.is_some() {
                    "acknowledged"
                } else {
                    "outcome unknown"
                };
                format!("{v} ({}, {outcome})", w.describe())
            }
            None if v == initial => format!("{v} (the initial value)"),
            None => format!("{v} (never written)"),
        }
    };
    let could = possible
        .iter()
        .map(|&v| source(v))
        .collect::<Vec<_>>()
        .join(" or ");
    let explanation = match op.kind {
        OpKind::Read => match overwritten(ops, &op, initial) {
            Some((written, newer)) => format!(
                "{} returned {}, {written}, but {} overwrote it and was acknowledged before the read began",
                op.describe(),
                op.value,
                newer.describe()
            ),
            None => {
                let never = if op.value != initial
                    && !ops
                        .iter()
                        .any(|o| o.kind == OpKind::Write && o.value == op.value)
                {
                    " (no write of that value is in the history)"
                } else {
                    ""
                };
                format!(
                    "{} returned {}{never}; no order explains it: at the furthest point the search reached ({} ops placed) the register held {could}",
                    op.describe(),
                    op.value,
                    stuck.placed
                )
            }
        },
        OpKind::Write => format!(
            "{}: no order of the ops before its completion explains the history (at the furthest point the search reached, {} ops placed, the register held {could})",
            op.describe(),
            stuck.placed
        ),
    };
    Violation {
        op,
        placed: stuck.placed,
        possible,
        explanation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(value: Value, inv: u64, done: u64) -> Op {
        Op::write(value, inv, Some(done))
    }
    fn r(value: Value, inv: u64, done: u64) -> Op {
        Op::read(value, inv, Some(done))
    }
    fn unknown_w(value: Value, inv: u64) -> Op {
        Op::write(value, inv, None)
    }

    fn ok(ops: &[Op]) -> bool {
        let c = check(ops, 0, DEFAULT_BUDGET);
        assert!(
            !matches!(c.outcome, Outcome::Undecided { .. }),
            "undecided: {c:?}"
        );
        c.is_linearizable()
    }

    fn violation_of(ops: &[Op]) -> Violation {
        match check(ops, 0, DEFAULT_BUDGET).outcome {
            Outcome::NotLinearizable(v) => v,
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[test]
    fn empty_history_is_linearizable() {
        let c = check(&[], 0, DEFAULT_BUDGET);
        assert!(c.is_linearizable());
        assert_eq!(c.ops, 0);
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = [
            r(0, 0, 1),
            w(1, 2, 3),
            r(1, 4, 5),
            w(2, 6, 7),
            r(2, 8, 9),
            r(2, 10, 11),
        ];
        assert!(ok(&h));
    }

    #[test]
    fn sequential_history_with_a_wrong_read_is_not() {
        let h = [w(1, 0, 1), w(2, 2, 3), r(3, 4, 5)];
        let v = violation_of(&h);
        assert_eq!(v.op, h[2]);
        assert_eq!(v.possible, [2]);
        assert!(
            v.explanation
                .contains("(no write of that value is in the history)"),
            "{}",
            v.explanation
        );
    }

    #[test]
    fn initial_value() {
        assert!(ok(&[r(0, 0, 1)]));
        // Concurrent with the first write: either.
        assert!(ok(&[w(1, 0, 10), r(0, 5, 6), r(1, 7, 8)]));
        // After an acknowledged write: stale.
        let v = violation_of(&[w(1, 0, 1), r(0, 2, 3)]);
        assert_eq!(v.possible, [1]);
        assert!(
            v.explanation
                .contains("returned 0, the initial value, but write 1"),
            "{}",
            v.explanation
        );
        // Another initial value.
        assert!(check(&[r(7, 0, 1)], 7, DEFAULT_BUDGET).is_linearizable());
        assert!(!check(&[r(0, 0, 1)], 7, DEFAULT_BUDGET).is_linearizable());
    }

    #[test]
    fn concurrent_writes_may_take_effect_in_either_order() {
        // Two overlapping writes; later reads agree on one order.
        assert!(ok(&[w(1, 0, 10), w(2, 1, 9), r(1, 11, 12), r(1, 13, 14)]));
        assert!(ok(&[w(1, 0, 10), w(2, 1, 9), r(2, 11, 12), r(2, 13, 14)]));
        // But once both completed, reads cannot flip between them.
        let v = violation_of(&[w(1, 0, 10), w(2, 1, 9), r(2, 11, 12), r(1, 13, 14)]);
        assert_eq!(v.op.value, 1);
        assert_eq!(v.possible, [2]);
        // Reads concurrent with the writes may see both orders' intermediate values.
        assert!(ok(&[
            w(1, 0, 10),
            w(2, 0, 10),
            r(1, 1, 2),
            r(2, 3, 4),
            r(2, 11, 12)
        ]));
    }

    #[test]
    fn a_read_during_a_write_may_see_old_or_new_but_not_go_back() {
        assert!(ok(&[w(1, 0, 1), w(2, 2, 20), r(1, 3, 4), r(2, 5, 6)]));
        assert!(ok(&[w(1, 0, 1), w(2, 2, 20), r(2, 3, 4), r(2, 5, 6)]));
        // New, then old again, both during the write: not linearizable.
        let v = violation_of(&[w(1, 0, 1), w(2, 2, 20), r(2, 3, 4), r(1, 5, 6)]);
        assert_eq!(v.op, r(1, 5, 6));
    }

    #[test]
    fn stale_read_after_an_acknowledged_write_fails_with_an_explanation() {
        let h = [
            w(1, 0, 10).by("reg-0"),
            w(2, 20, 30).by("reg-1"),
            r(1, 40, 50).by("reg-2 via m3"),
        ];
        let v = violation_of(&h);
        assert_eq!(v.op, h[2]);
        assert_eq!(v.possible, [2]);
        assert_eq!(v.placed, 2);
        assert_eq!(
            v.explanation,
            "read 1 by reg-2 via m3 in [0.040s, 0.050s] returned 1, written by write 1 by reg-0 \
             in [0.000s, 0.010s], but write 2 by reg-1 in [0.020s, 0.030s] overwrote it and was \
             acknowledged before the read began"
        );
        // Without such a proof (the writes overlap), the search's furthest state.
        let h = [
            w(1, 0, 30).by("reg-0"),
            w(2, 0, 30).by("reg-1"),
            r(2, 40, 50),
            r(1, 60, 70).by("reg-2"),
        ];
        let v = violation_of(&h);
        assert_eq!(v.op, h[3]);
        assert!(
            v.explanation.starts_with("read 1 by reg-2 in [0.060s, 0.070s] returned 1; no order explains it: at the furthest point the search reached (3 ops placed) the register held 2 (write 2 by reg-1 in [0.000s, 0.030s], acknowledged)"),
            "{}",
            v.explanation
        );
    }

    #[test]
    fn equal_times_count_as_concurrent() {
        // The write completed at 10 and the read was invoked at 10 (ms floors): the read
        // may have come first.
        assert!(ok(&[w(1, 0, 10), r(0, 10, 11)]));
        assert!(!ok(&[w(1, 0, 10), r(0, 11, 12)]));
    }

    #[test]
    fn unknown_write_that_never_took_effect() {
        let h = [w(1, 0, 1), unknown_w(2, 2), r(1, 10, 11), r(1, 20, 21)];
        let c = check(&h, 0, DEFAULT_BUDGET);
        assert!(c.is_linearizable(), "{c:?}");
        assert_eq!(c.dropped_writes, 1, "never read: dropped");
    }

    #[test]
    fn unknown_write_that_took_effect_late() {
        // Invoked at 2, seen first at 30, long after: it took effect between.
        let h = [
            w(1, 0, 1),
            unknown_w(2, 2),
            r(1, 10, 11),
            r(1, 20, 21),
            r(2, 30, 31),
            r(2, 40, 41),
        ];
        assert!(ok(&h));
        // Once seen, it cannot be undone by nothing.
        let mut bad = h.to_vec();
        bad.push(r(1, 50, 51));
        assert_eq!(violation_of(&bad).op, r(1, 50, 51));
        // A later acknowledged write overrides it.
        let mut fine = h.to_vec();
        fine.extend([w(3, 45, 46), r(3, 50, 51)]);
        assert!(ok(&fine));
    }

    #[test]
    fn unknown_write_seen_before_it_was_invoked_fails() {
        let h = [w(1, 0, 1), r(2, 10, 11), unknown_w(2, 20)];
        let v = violation_of(&h);
        assert_eq!(v.op, r(2, 10, 11));
    }

    #[test]
    fn unknown_write_concurrent_with_the_read_that_sees_it() {
        // Invoked after the read began, before it ended.
        assert!(ok(&[w(1, 0, 1), r(2, 10, 20), unknown_w(2, 15)]));
    }

    #[test]
    fn unknown_write_cannot_take_effect_before_its_invocation() {
        // The read of 2 completes at 11, the unknown write of 2 is invoked at 12: its
        // value cannot be seen there, so the 'bound by the first read' is clamped.
        assert!(!ok(&[r(2, 10, 11), unknown_w(2, 12), r(2, 13, 14)]));
    }

    #[test]
    fn unknown_writes_with_repeated_values_stay_open() {
        // Two writes of 5, one unknown: not bounded by the read, still explained.
        let h = [
            w(5, 0, 1),
            w(6, 2, 3),
            unknown_w(5, 4),
            r(6, 5, 6),
            r(5, 10, 11),
        ];
        assert!(ok(&h));
        let h = [w(5, 0, 1), w(6, 2, 3), r(5, 5, 6)];
        assert!(!ok(&h));
        // An unknown write of the initial value.
        assert!(ok(&[w(1, 0, 1), unknown_w(0, 2), r(0, 10, 11)]));
    }

    #[test]
    fn unknown_reads_are_dropped() {
        let h = [w(1, 0, 1), Op::read(7, 2, None), r(1, 3, 4)];
        let c = check(&h, 0, DEFAULT_BUDGET);
        assert!(c.is_linearizable());
        assert_eq!((c.ops, c.dropped_reads), (2, 1));
    }

    #[test]
    fn a_write_never_acknowledged_is_not_required() {
        // The second write is unknown; a read after both may see either.
        assert!(ok(&[
            w(1, 0, 1),
            unknown_w(2, 2),
            r(2, 10, 11),
            r(2, 12, 13)
        ]));
    }

    #[test]
    fn exhausted_budget_is_undecided() {
        let h = [w(1, 0, 10), w(2, 1, 9), r(2, 11, 12), r(1, 13, 14)];
        let c = check(&h, 0, 3);
        match c.outcome {
            Outcome::Undecided { reason } => assert!(reason.contains("3 search steps")),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.steps, 4);
    }

    #[test]
    fn long_concurrent_histories_are_decided_quickly() {
        // 6,000 ops of a real register, each window reaching up to 60 ms either side of
        // its point, points 10 ms apart: about a dozen ops overlap each one.
        let mut rng = crate::nemesis::Rng::new(7);
        let gens: Vec<Gen> = (0..6_000)
            .map(|_| {
                let fate = rng.range(0, 9);
                let write = rng.next_u64().is_multiple_of(2);
                Gen {
                    write,
                    took_effect: !write || fate != 0,
                    known: if write { fate >= 2 } else { fate != 0 },
                    before: rng.range(0, 60),
                    after: rng.range(0, 60),
                }
            })
            .collect();
        let mut ops = execute(&gens);
        let c = check(&ops, 0, DEFAULT_BUDGET);
        assert!(c.is_linearizable(), "{:?}", c.outcome);
        assert!(c.steps < 200_000, "{} steps for {} ops", c.steps, c.ops);
        let i = make_stale(&mut ops, 1234).expect("a read to make stale");
        let c = check(&ops, 0, DEFAULT_BUDGET);
        assert!(
            matches!(c.outcome, Outcome::NotLinearizable(_)),
            "{:?} (stale: {:?})",
            c.outcome,
            ops[i]
        );
        assert!(c.steps < 1_000_000, "{} steps", c.steps);
    }

    // -- generated histories ----------------------------------------------------------

    /// One op of a generated sequential execution: its kind, whether it took effect (an
    /// unknown write may not have), whether its outcome is known, and how far its window
    /// reaches either side of its point.
    #[derive(Clone, Debug)]
    struct Gen {
        write: bool,
        took_effect: bool,
        known: bool,
        before: u64,
        after: u64,
    }

    fn gen_op() -> impl Strategy<Value = Gen> {
        (any::<bool>(), 0u8..10, 0u64..40, 0u64..40).prop_map(|(write, fate, before, after)| Gen {
            write,
            // 1 write in 10 unknown and applied, 1 in 10 unknown and never applied; 1 read
            // in 10 unknown.
            took_effect: !write || fate != 0,
            known: if write { fate >= 2 } else { fate != 0 },
            before,
            after,
        })
    }

    /// A history from a real sequential register: op i takes effect at 100 + 10 i
    /// (unless it is an unknown write that never did), inside its window.
    fn execute(gens: &[Gen]) -> Vec<Op> {
        let mut value = 0;
        let mut ops = Vec::new();
        for (i, g) in gens.iter().enumerate() {
            let point = 100 + 10 * i as u64;
            let invoke = point - g.before;
            let complete = g.known.then_some(point + g.after);
            if g.write {
                let v = i as u64 + 1;
                if g.took_effect {
                    value = v;
                }
                ops.push(Op::write(v, invoke, complete).by(format!("op{i}")));
            } else {
                ops.push(Op::read(value, invoke, complete).by(format!("op{i}")));
            }
        }
        ops
    }

    /// Makes one read stale: it returns the value of an acknowledged write that was
    /// followed, strictly before the read began, by another acknowledged write (or the
    /// initial value, overwritten that way). None if the history has no such read.
    fn make_stale(ops: &mut [Op], pick: usize) -> Option<usize> {
        let acked: Vec<(Value, u64, u64)> = ops
            .iter()
            .filter(|o| o.kind == OpKind::Write)
            .filter_map(|o| Some((o.value, o.invoke_ms, o.complete_ms?)))
            .collect();
        let stale_for = |read: &Op| -> Option<Value> {
            // The newest invocation of an acknowledged write that completed before the
            // read began ...
            let newer = acked
                .iter()
                .filter(|(_, _, c)| *c < read.invoke_ms)
                .map(|(_, inv, _)| *inv)
                .max()?;
            // ... and a value overwritten by it: one acknowledged before it was invoked.
            acked
                .iter()
                .filter(|(_, _, c)| *c < newer)
                .map(|(v, _, _)| *v)
                .chain(std::iter::once(0))
                .filter(|v| *v != read.value)
                .max()
        };
        let reads: Vec<usize> = (0..ops.len())
            .filter(|&i| ops[i].kind == OpKind::Read && ops[i].complete_ms.is_some())
            .collect();
        for k in 0..reads.len() {
            let i = reads[(pick + k) % reads.len()];
            if let Some(stale) = stale_for(&ops[i]) {
                ops[i].value = stale;
                return Some(i);
            }
        }
        None
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn executions_of_a_real_register_are_linearizable(
            gens in prop::collection::vec(gen_op(), 0..60),
            seed in any::<u64>(),
        ) {
            let mut ops = execute(&gens);
            // The order of the input does not matter.
            let mut rng = crate::nemesis::Rng::new(seed);
            for i in (1..ops.len()).rev() {
                ops.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
            }
            let c = check(&ops, 0, DEFAULT_BUDGET);
            prop_assert!(c.is_linearizable(), "{:?}\n{:#?}", c.outcome, ops);
        }

        #[test]
        fn a_stale_read_is_always_caught(
            gens in prop::collection::vec(gen_op(), 2..60),
            pick in any::<usize>(),
        ) {
            let mut ops = execute(&gens);
            if let Some(i) = make_stale(&mut ops, pick) {
                let c = check(&ops, 0, DEFAULT_BUDGET);
                match &c.outcome {
                    Outcome::NotLinearizable(_) => {}
                    other => prop_assert!(false, "stale read of op {} not caught: {:?}\n{:#?}", i, other, ops),
                }
            }
        }
    }

    #[test]
    fn the_mutation_finds_stale_reads_often() {
        // The property above must not pass vacuously.
        let gens: Vec<Gen> = (0..20)
            .map(|i| Gen {
                write: i % 2 == 0,
                took_effect: true,
                known: true,
                before: 2,
                after: 2,
            })
            .collect();
        let mut ops = execute(&gens);
        assert!(ok(&ops));
        let i = make_stale(&mut ops, 3).expect("a read to make stale");
        assert!(!ok(&ops), "{:?}", ops[i]);
    }
}
