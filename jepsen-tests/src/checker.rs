//! The invariants a fault-injection run must keep, checked after the run on its record
//! ([`RunData`]): no overcommitted agent, no task executed twice, no accepted task lost
//! and updates delivered in order, acknowledged registrations durable, one leader per
//! term, progress soon after the final heal, and linearizable registers (the register
//! workload's history, searched by [`crate::linearizable`]). [`check_all`] runs them all.
//!
//! What it owns: the meaning of "passed" for each invariant, and the shape of a
//! [`Verdict`] (at most [`MAX_OFFENDING`] human-readable offending lines, each with the
//! time in seconds and the ids involved).
//!
//! What it must not do: I/O, clock reads or talking to a cluster. Everything it judges is
//! passed in; the same data always gives the same verdicts.

use std::collections::{BTreeMap, BTreeSet};

use agora_driver::TaskState;
use serde::{Deserialize, Serialize};

use crate::history::{op, AgentSample, Event, EventType, HealthSample, StateSample};
use crate::linearizable::{self, Op, Outcome};

/// How many offending lines a [`Verdict`] keeps; its summary gives the total count.
pub const MAX_OFFENDING: usize = 20;

/// A task still `TASK_STAGING` at the end is fine only if launched this recently.
const STAGING_GRACE_MS: u64 = 10_000;

/// How soon after the final heal a newly launched task must make progress.
const RECOVERY_DEADLINE_MS: u64 = 5_000;

/// Everything a run left behind, as the checkers read it.
#[derive(Clone, Debug, Default)]
pub struct RunData {
    /// Every process's events, merged and sorted by `t_ms`.
    pub history: Vec<Event>,
    pub health: Vec<HealthSample>,
    pub states: Vec<StateSample>,
    /// Task id -> how many times it executed (marker lines collected from the agents).
    pub markers: BTreeMap<String, usize>,
    /// The leader's full `/state` after the final heal and a settle period.
    pub final_state: serde_json::Value,
    /// When every fault was healed for good; `None`: no faults were injected.
    pub final_heal_ms: Option<u64>,
    pub end_ms: u64,
}

/// One checker's judgement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub name: String,
    pub passed: bool,
    /// One line: what was checked, how many violations, or the measurement.
    pub summary: String,
    /// The first [`MAX_OFFENDING`] violations, by time.
    pub offending: Vec<String>,
}

/// One violation found by a checker, before formatting.
struct Violation {
    t_ms: u64,
    text: String,
}

impl Violation {
    fn new(t_ms: u64, text: String) -> Self {
        Violation { t_ms, text }
    }
}

impl Verdict {
    /// A verdict that passes iff there are no violations; keeps the earliest ones.
    fn from_violations(name: &str, mut violations: Vec<Violation>, summary: String) -> Verdict {
        violations.sort_by_key(|v| v.t_ms);
        Verdict {
            name: name.to_string(),
            passed: violations.is_empty(),
            summary,
            offending: violations
                .iter()
                .take(MAX_OFFENDING)
                .map(|v| format!("t={} {}", secs(v.t_ms), v.text))
                .collect(),
        }
    }
}

/// `t_ms` as seconds with millisecond precision, e.g. `12.345s`.
pub fn secs(t_ms: u64) -> String {
    format!("{}.{:03}s", t_ms / 1000, t_ms % 1000)
}

/// Runs every checker, in a fixed order.
pub fn check_all(data: &RunData) -> Vec<Verdict> {
    vec![
        no_overcommit(data),
        at_most_once(data),
        no_lost_tasks(data),
        durability(data),
        one_leader_per_term(data),
        recovery(data),
        linearizable(data),
    ]
}

// ---------------------------------------------------------------------------------------
// 1. no_overcommit

/// In every state sample, on every agent, for every resource: what its non-terminal
/// tasks hold plus what is offered out of it is at most its total (the one over-commit
/// check, [`agora_test_cluster::overcommit`]).
pub fn no_overcommit(data: &RunData) -> Verdict {
    let mut violations = Vec::new();
    let mut agent_samples = 0;
    for sample in &data.states {
        for agent in &sample.agents {
            agent_samples += 1;
            violations.extend(overcommitted_resources(sample.t_ms, agent));
        }
    }
    let summary = format!(
        "{} violations in {} agent samples ({} state samples)",
        violations.len(),
        agent_samples,
        data.states.len()
    );
    Verdict::from_violations("no_overcommit", violations, summary)
}

/// The resources of one agent sample where tasks + offered exceed the total.
fn overcommitted_resources(t_ms: u64, agent: &AgentSample) -> Vec<Violation> {
    agent
        .overcommits()
        .into_iter()
        .map(|o| Violation::new(t_ms, o.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// 2. at_most_once

/// Every task executed at most once, and only tasks some framework tried to launch ran.
pub fn at_most_once(data: &RunData) -> Verdict {
    let launches = first_launch_invokes(&data.history);
    let mut violations = Vec::new();
    for (task, &count) in &data.markers {
        let launched_ms = launches.get(task.as_str()).map(|e| e.t_ms);
        if count > 1 {
            let t = launched_ms.unwrap_or(data.end_ms);
            violations.push(Violation::new(
                t,
                format!("task {task} executed {count} times"),
            ));
        }
        if count > 0 && launched_ms.is_none() {
            let text = format!("task {task} ran but never launched");
            violations.push(Violation::new(data.end_ms, text));
        }
    }
    // A launch the master refused must not have run; a task it reports finished must
    // have left its marker (or the markers prove nothing).
    let final_view = FinalView::parse(&data.final_state);
    for task in dropped_tasks(&data.history) {
        let count = data.markers.get(task).copied().unwrap_or(0);
        if count > 0 && !final_view.tasks.contains_key(task) {
            let t = launches.get(task).map_or(data.end_ms, |e| e.t_ms);
            violations.push(Violation::new(
                t,
                format!("task {task} was dropped (TASK_DROPPED) but ran {count} times"),
            ));
        }
    }
    for (task, state) in &final_view.tasks {
        if *state == Some(TaskState::TaskFinished)
            && data.markers.get(task).copied().unwrap_or(0) == 0
        {
            let t = launches.get(task.as_str()).map_or(data.end_ms, |e| e.t_ms);
            violations.push(Violation::new(
                t,
                format!("task {task} finished but left no marker (did it run?)"),
            ));
        }
    }
    let ran = data.markers.values().filter(|&&c| c > 0).count();
    let summary = format!(
        "{} violations among {} tasks that ran ({} launches invoked)",
        violations.len(),
        ran,
        launches.len()
    );
    Verdict::from_violations("at_most_once", violations, summary)
}

/// Tasks the framework was told TASK_DROPPED about: the master refused their launch.
fn dropped_tasks(history: &[Event]) -> BTreeSet<&str> {
    history
        .iter()
        .filter(|e| e.f == op::UPDATE && e.state == Some(TaskState::TaskDropped))
        .filter_map(|e| e.task.as_deref())
        .collect()
}

/// Task id -> its first `launch` invoke.
fn first_launch_invokes(history: &[Event]) -> BTreeMap<&str, &Event> {
    let mut first = BTreeMap::new();
    for e in history
        .iter()
        .filter(|e| e.is(EventType::Invoke, op::LAUNCH))
    {
        if let Some(task) = e.task.as_deref() {
            first.entry(task).or_insert(e);
        }
    }
    first
}

// ---------------------------------------------------------------------------------------
// 3. no_lost_tasks

/// The parts of the final `/state` the checkers read.
#[derive(Default)]
struct FinalView {
    /// Whether `final_state` was a JSON object at all.
    available: bool,
    agents: BTreeSet<String>,
    frameworks: BTreeSet<String>,
    /// Task id -> its state (`None` when the entry had none, or not a task state's name).
    tasks: BTreeMap<String, Option<TaskState>>,
}

impl FinalView {
    fn parse(state: &serde_json::Value) -> FinalView {
        if !state.is_object() {
            return FinalView::default();
        }
        let entries = |key: &str| -> Vec<serde_json::Value> {
            state
                .get(key)
                .and_then(|v| v.as_array())
                .cloned()
                .unwrap_or_default()
        };
        let id_of = |v: &serde_json::Value| v.get("id").and_then(|i| i.as_str()).map(String::from);
        let tasks = entries("tasks")
            .iter()
            .filter_map(|t| {
                // `/state` names task states; this is where the checkers read them.
                let state = t
                    .get("state")
                    .and_then(|s| s.as_str())
                    .and_then(TaskState::from_name);
                id_of(t).map(|id| (id, state))
            })
            .collect();
        FinalView {
            available: true,
            agents: entries("agents").iter().filter_map(id_of).collect(),
            frameworks: entries("frameworks").iter().filter_map(id_of).collect(),
            tasks,
        }
    }
}

/// A launch the master accepted (or probably accepted), as the checkers need it.
struct AcceptedLaunch<'a> {
    /// The launch invoke's time (the outcome's time if the invoke is missing).
    t_ms: u64,
    framework: Option<&'a str>,
    agent: Option<&'a str>,
}

impl AcceptedLaunch<'_> {
    /// `task t1 (framework f1, agent a1)`.
    fn describe(&self, task: &str) -> String {
        format!(
            "task {task} (framework {}, agent {})",
            self.framework.unwrap_or("?"),
            self.agent.unwrap_or("?")
        )
    }
}

/// Every task accepted by the master: its launch ended ok, or its outcome is unknown
/// (info, or no outcome recorded) and the task later shows up in an update or in the
/// final state. A launch that failed is not accepted, nor one the master refused after
/// the call (the framework was told TASK_DROPPED and the registry never held the task).
fn accepted_launches<'a>(
    history: &'a [Event],
    final_view: &FinalView,
) -> BTreeMap<&'a str, AcceptedLaunch<'a>> {
    let invokes = first_launch_invokes(history);
    // A reconciliation answered "unknown task" says the launch never happened: it is no
    // sign that the task exists.
    let updated: BTreeSet<&str> = history
        .iter()
        .filter(|e| e.f == op::UPDATE)
        .filter(|e| !(e.reconcile && e.error.as_deref() == Some("unknown task")))
        .filter_map(|e| e.task.as_deref())
        .collect();
    let seen = |task: &str| updated.contains(task) || final_view.tasks.contains_key(task);
    let dropped = dropped_tasks(history);
    let mut accepted = BTreeMap::new();
    for (task, outcome) in launch_outcomes(history, &invokes) {
        if dropped.contains(task) && !final_view.tasks.contains_key(task) {
            continue;
        }
        let ok = outcome.is_some_and(|e| e.kind == EventType::Ok);
        let unknown = outcome.is_none_or(|e| e.kind == EventType::Info);
        if ok || (unknown && seen(task)) {
            let first = invokes.get(task).copied().or(outcome);
            accepted.insert(task, accepted_launch(first, outcome));
        }
    }
    accepted
}

/// Task id -> the outcome event of its launch (ok, fail or info), `None` if only invoked.
/// A definite outcome (ok or fail) wins over an earlier info.
fn launch_outcomes<'a>(
    history: &'a [Event],
    invokes: &BTreeMap<&'a str, &'a Event>,
) -> BTreeMap<&'a str, Option<&'a Event>> {
    let mut outcomes: BTreeMap<&str, Option<&Event>> =
        invokes.keys().map(|&task| (task, None)).collect();
    for e in history
        .iter()
        .filter(|e| e.f == op::LAUNCH && e.kind != EventType::Invoke)
    {
        let Some(task) = e.task.as_deref() else {
            continue;
        };
        let slot = outcomes.entry(task).or_insert(None);
        if slot.is_none_or(|prev| prev.kind == EventType::Info) {
            *slot = Some(e);
        }
    }
    outcomes
}

fn accepted_launch<'a>(first: Option<&'a Event>, outcome: Option<&'a Event>) -> AcceptedLaunch<'a> {
    let pick =
        |f: fn(&'a Event) -> Option<&'a str>| first.and_then(f).or_else(|| outcome.and_then(f));
    AcceptedLaunch {
        t_ms: first.map_or(0, |e| e.t_ms),
        framework: pick(|e| e.framework.as_deref()),
        agent: pick(|e| e.agent.as_deref()),
    }
}

/// Every accepted task ends terminal or live in the final state; no terminal state in
/// the final state went unreported to its framework or disagrees with what it was told;
/// and each task's in-order (non-reconcile) updates never go backwards.
pub fn no_lost_tasks(data: &RunData) -> Verdict {
    let final_view = FinalView::parse(&data.final_state);
    if !final_view.available {
        return final_state_unavailable("no_lost_tasks", data.end_ms);
    }
    let launches = accepted_launches(&data.history, &final_view);
    let told = terminal_updates(&data.history);
    let lost = lost_tasks(&launches, &final_view, &told, data.end_ms);
    let undelivered =
        terminal_delivery_violations(&data.history, &launches, &final_view, data.end_ms);
    let disordered = out_of_order_updates(&data.history);
    let summary = format!(
        "{} accepted launches: {} lost, {} terminal-state delivery violations, {} tasks with out-of-order updates",
        launches.len(),
        lost.len(),
        undelivered.len(),
        disordered.len()
    );
    let violations = lost
        .into_iter()
        .chain(undelivered)
        .chain(disordered)
        .collect();
    Verdict::from_violations("no_lost_tasks", violations, summary)
}

/// A failing verdict for a checker that needs the final state when there is none.
fn final_state_unavailable(name: &str, end_ms: u64) -> Verdict {
    let text = "final state unavailable (not a JSON object)".to_string();
    let summary = format!("cannot check: {text}");
    Verdict::from_violations(name, vec![Violation::new(end_ms, text)], summary)
}

/// Whether a task in `state` is alive at the end, given when it was launched.
fn is_live_at_end(state: TaskState, launched_ms: u64, end_ms: u64) -> bool {
    match state {
        TaskState::TaskRunning | TaskState::TaskStarting | TaskState::TaskKilling => true,
        TaskState::TaskStaging => end_ms.saturating_sub(launched_ms) < STAGING_GRACE_MS,
        _ => false,
    }
}

/// Accepted tasks that are neither terminal nor live in the final state. A task missing
/// from it whose framework was told a terminal state is not lost: the masters keep only
/// so many finished tasks per framework (`--max-completed-tasks-per-framework`), and a
/// long run finishes more.
fn lost_tasks(
    launches: &BTreeMap<&str, AcceptedLaunch>,
    final_view: &FinalView,
    told: &BTreeMap<&str, Vec<(u64, TaskState)>>,
    end_ms: u64,
) -> Vec<Violation> {
    let mut lost = Vec::new();
    for (&task, launch) in launches {
        let why = match final_view.tasks.get(task) {
            None if told.contains_key(task) => continue,
            None => "missing from the final state".to_string(),
            Some(Some(state))
                if state.is_terminal() || is_live_at_end(*state, launch.t_ms, end_ms) =>
            {
                continue
            }
            Some(None) => "in the final state without a state".to_string(),
            Some(Some(state)) => format!("stuck in {state} in the final state"),
        };
        lost.push(Violation::new(
            launch.t_ms,
            format!("{} lost: {why}", launch.describe(task)),
        ));
    }
    lost
}

/// Terminal states in the final state that no update carried to the framework, or that
/// differ from the terminal state(s) the framework was told.
fn terminal_delivery_violations(
    history: &[Event],
    launches: &BTreeMap<&str, AcceptedLaunch>,
    final_view: &FinalView,
    end_ms: u64,
) -> Vec<Violation> {
    let told = terminal_updates(history);
    let mut violations = Vec::new();
    let terminal = final_view
        .tasks
        .iter()
        .filter_map(|(task, state)| Some((task, (*state)?)))
        .filter(|(_, state)| state.is_terminal());
    for (task, final_state) in terminal {
        let launched_ms = launches.get(task.as_str()).map_or(end_ms, |l| l.t_ms);
        let Some(updates) = told.get(task.as_str()) else {
            let text =
                format!("task {task}: terminal state {final_state} never reached the framework");
            violations.push(Violation::new(launched_ms, text));
            continue;
        };
        for &(t_ms, state) in updates.iter().filter(|&&(_, s)| s != final_state) {
            let text = format!(
                "task {task}: framework was told {state} but the final state says {final_state}"
            );
            violations.push(Violation::new(t_ms, text));
        }
    }
    violations
}

/// Task id -> each distinct terminal state its updates (reconcile or not) carried, with
/// the time of the first such update.
fn terminal_updates(history: &[Event]) -> BTreeMap<&str, Vec<(u64, TaskState)>> {
    let mut told: BTreeMap<&str, Vec<(u64, TaskState)>> = BTreeMap::new();
    for e in history.iter().filter(|e| e.f == op::UPDATE) {
        let (Some(task), Some(state)) = (e.task.as_deref(), e.state) else {
            continue;
        };
        if !state.is_terminal() {
            continue;
        }
        let states = told.entry(task).or_default();
        if !states.iter().any(|&(_, s)| s == state) {
            states.push((e.t_ms, state));
        }
    }
    told
}

/// Where a state sits in a task's life, for ordering; `None`: ignored for ordering
/// (`TASK_UNREACHABLE`, `TASK_UNKNOWN`).
fn state_rank(state: TaskState) -> Option<u8> {
    match state {
        TaskState::TaskStaging => Some(0),
        TaskState::TaskStarting => Some(1),
        TaskState::TaskRunning | TaskState::TaskKilling => Some(2),
        s if s.is_terminal() => Some(3),
        _ => None,
    }
}

/// Per task, the first place its non-reconcile updates go backwards or switch between
/// two different terminal states (one violation per task).
fn out_of_order_updates(history: &[Event]) -> Vec<Violation> {
    let mut highest: BTreeMap<&str, (u8, TaskState)> = BTreeMap::new();
    let mut flagged: BTreeSet<&str> = BTreeSet::new();
    let mut violations = Vec::new();
    for e in history.iter().filter(|e| e.f == op::UPDATE && !e.reconcile) {
        let (Some(task), Some(state)) = (e.task.as_deref(), e.state) else {
            continue;
        };
        let Some(rank) = state_rank(state) else {
            continue;
        };
        if flagged.contains(task) {
            continue;
        }
        let problem = match highest.get(task) {
            Some(&(top, prev)) if rank < top => Some(format!("{state} after {prev}")),
            Some(&(3, prev)) if rank == 3 && prev != state => Some(format!(
                "two different terminal states, {prev} then {state}"
            )),
            _ => None,
        };
        if let Some(problem) = problem {
            flagged.insert(task);
            violations.push(Violation::new(
                e.t_ms,
                format!("task {task} updates out of order: {problem}"),
            ));
        } else if highest.get(task).is_none_or(|&(top, _)| rank > top) {
            highest.insert(task, (rank, state));
        }
    }
    violations
}

// ---------------------------------------------------------------------------------------
// 4. durability

/// Every agent whose registration was acknowledged, and every framework whose
/// subscription succeeded, is still known in the final state.
pub fn durability(data: &RunData) -> Verdict {
    let final_view = FinalView::parse(&data.final_state);
    if !final_view.available {
        return final_state_unavailable("durability", data.end_ms);
    }
    let agents = first_acknowledged(&data.history, op::REGISTER_AGENT, |e| e.agent.as_deref());
    let frameworks = first_acknowledged(&data.history, op::SUBSCRIBE, |e| e.framework.as_deref());
    let mut violations = missing(&agents, &final_view.agents, "agent", "registered");
    violations.extend(missing(
        &frameworks,
        &final_view.frameworks,
        "framework",
        "subscribed",
    ));
    let summary = format!(
        "{} of {} acknowledged agents and {} acknowledged frameworks missing from the final state",
        violations.len(),
        agents.len(),
        frameworks.len()
    );
    Verdict::from_violations("durability", violations, summary)
}

/// Id -> time of the first ok event of operation `f`, the id taken by `id_of`.
fn first_acknowledged<'a>(
    history: &'a [Event],
    f: &str,
    id_of: impl Fn(&'a Event) -> Option<&'a str>,
) -> BTreeMap<&'a str, u64> {
    let mut first = BTreeMap::new();
    for e in history.iter().filter(|e| e.is(EventType::Ok, f)) {
        if let Some(id) = id_of(e) {
            first.entry(id).or_insert(e.t_ms);
        }
    }
    first
}

/// The acknowledged ids not in `known`.
fn missing(
    acknowledged: &BTreeMap<&str, u64>,
    known: &BTreeSet<String>,
    what: &str,
    how: &str,
) -> Vec<Violation> {
    acknowledged
        .iter()
        .filter(|(id, _)| !known.contains(**id))
        .map(|(id, &t)| {
            Violation::new(
                t,
                format!("{what} {id} {how} but missing from the final state"),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// 5. one_leader_per_term

/// What the health samples of one term say.
#[derive(Default)]
struct TermView<'a> {
    /// Node -> first time it reported itself leader in this term.
    leaders: BTreeMap<u64, u64>,
    /// Leader address -> first time a node reported it in this term.
    addresses: BTreeMap<&'a str, u64>,
}

/// At most one node reports itself leader per term, and all nodes that name a leader
/// within one term name the same address.
pub fn one_leader_per_term(data: &RunData) -> Verdict {
    let terms = term_views(&data.health);
    let mut violations = Vec::new();
    for (term, view) in &terms {
        if let Some((t_ms, nodes)) = conflict(&view.leaders) {
            let text = format!("term {term}: nodes {nodes} reported themselves leader");
            violations.push(Violation::new(t_ms, text));
        }
        if let Some((t_ms, addresses)) = conflict(&view.addresses) {
            let text = format!("term {term}: nodes named different leaders: {addresses}");
            violations.push(Violation::new(t_ms, text));
        }
    }
    let summary = format!(
        "{} violations across {} terms ({} health samples)",
        violations.len(),
        terms.len(),
        data.health.len()
    );
    Verdict::from_violations("one_leader_per_term", violations, summary)
}

/// Groups the answered health samples that carry a term by term.
fn term_views(health: &[HealthSample]) -> BTreeMap<u64, TermView<'_>> {
    let mut terms: BTreeMap<u64, TermView> = BTreeMap::new();
    for s in health {
        let Some(term) = s.term else { continue };
        let view = terms.entry(term).or_default();
        if s.role.as_deref() == Some("leader") {
            let first = view.leaders.entry(s.node).or_insert(s.t_ms);
            *first = (*first).min(s.t_ms);
        }
        if let Some(addr) = s.leader.as_deref() {
            let first = view.addresses.entry(addr).or_insert(s.t_ms);
            *first = (*first).min(s.t_ms);
        }
    }
    terms
}

/// If more than one distinct value was seen: when the second one first appeared, and all
/// of them joined by commas.
fn conflict<K: std::fmt::Display>(seen: &BTreeMap<K, u64>) -> Option<(u64, String)> {
    if seen.len() < 2 {
        return None;
    }
    let mut times: Vec<u64> = seen.values().copied().collect();
    times.sort_unstable();
    let ids: Vec<String> = seen.keys().map(|k| k.to_string()).collect();
    Some((times[1], ids.join(", ")))
}

// ---------------------------------------------------------------------------------------
// 6. recovery

/// After the final heal, a task launched at or after it reaches `TASK_RUNNING` or
/// `TASK_FINISHED` within [`RECOVERY_DEADLINE_MS`].
pub fn recovery(data: &RunData) -> Verdict {
    let name = "recovery";
    let Some(heal) = data.final_heal_ms else {
        let summary =
            "passed trivially: no faults were injected, nothing to recover from".to_string();
        return Verdict::from_violations(name, Vec::new(), summary);
    };
    let Some((t_ms, task)) = first_progress_after(&data.history, heal) else {
        let text = format!(
            "final heal at {}: no task launched after it reached TASK_RUNNING or TASK_FINISHED by the end ({})",
            secs(heal),
            secs(data.end_ms)
        );
        let summary = "no progress after the final heal".to_string();
        return Verdict::from_violations(name, vec![Violation::new(heal, text)], summary);
    };
    let delay = t_ms.saturating_sub(heal);
    let summary = format!(
        "first progress {delay} ms after the final heal (task {task}; limit {RECOVERY_DEADLINE_MS} ms)"
    );
    let mut violations = Vec::new();
    if delay > RECOVERY_DEADLINE_MS {
        let text = format!(
            "task {task} reached progress {delay} ms after the final heal at {}",
            secs(heal)
        );
        violations.push(Violation::new(t_ms, text));
    }
    Verdict::from_violations(name, violations, summary)
}

/// The first `TASK_RUNNING` or `TASK_FINISHED` update (time, task) of a task whose launch
/// was invoked at or after `heal_ms`.
fn first_progress_after(history: &[Event], heal_ms: u64) -> Option<(u64, &str)> {
    let launched_after: BTreeSet<&str> = history
        .iter()
        .filter(|e| e.is(EventType::Invoke, op::LAUNCH) && e.t_ms >= heal_ms)
        .filter_map(|e| e.task.as_deref())
        .collect();
    history
        .iter()
        .filter(|e| e.f == op::UPDATE)
        .filter(|e| {
            matches!(
                e.state,
                Some(TaskState::TaskRunning | TaskState::TaskFinished)
            )
        })
        .filter_map(|e| Some((e.t_ms, e.task.as_deref()?)))
        .filter(|(_, task)| launched_after.contains(task))
        .min_by_key(|&(t, _)| t)
}

// ---------------------------------------------------------------------------------------
// 7. linearizable

/// The register workload's operations, per register, as the search takes them, and what
/// the history held.
#[derive(Debug, Default)]
struct RegisterHistory {
    by_key: BTreeMap<String, Vec<Op>>,
    writes_ok: usize,
    writes_unknown: usize,
    writes_failed: usize,
    reads_ok: usize,
    reads_failed: usize,
}

/// Pairs each register client's invocations with their completions (a client is
/// sequential: its next event after an invocation completes it). An invocation without a
/// completion (the run ended during the call) is indeterminate. A failed write is left
/// out (it did not happen); so is a read that did not return a value (it observed
/// nothing): the search drops unknown reads itself and counts them.
fn register_history(history: &[Event]) -> RegisterHistory {
    let mut out = RegisterHistory::default();
    let mut pending: BTreeMap<&str, &Event> = BTreeMap::new();
    let add = |out: &mut RegisterHistory, invoke: &Event, done: Option<&Event>| {
        let Some(reg) = invoke.register_op() else {
            return;
        };
        let client = format!(
            "{} via {}",
            invoke.process,
            reg.master.as_deref().unwrap_or("?")
        );
        let done = done.filter(|d| d.f == invoke.f);
        let completed = done.filter(|d| d.kind == EventType::Ok).map(|d| d.t_ms);
        let op = if invoke.f == op::REG_WRITE {
            let Some(value) = reg.value else { return };
            match done.map(|d| d.kind) {
                Some(EventType::Ok) => out.writes_ok += 1,
                Some(EventType::Fail) => {
                    out.writes_failed += 1;
                    return;
                }
                _ => out.writes_unknown += 1,
            }
            Op::write(value, invoke.t_ms, completed)
        } else {
            let read = done
                .filter(|d| d.kind == EventType::Ok)
                .and_then(Event::register_op);
            let Some(read) = read else {
                out.reads_failed += 1;
                return;
            };
            out.reads_ok += 1;
            Op::read(read.value.unwrap_or(0), invoke.t_ms, completed)
        };
        out.by_key.entry(reg.key).or_default().push(op.by(client));
    };
    for e in history
        .iter()
        .filter(|e| e.f == op::REG_WRITE || e.f == op::REG_READ)
    {
        if e.kind == EventType::Invoke {
            if let Some(earlier) = pending.insert(&e.process, e) {
                add(&mut out, earlier, None);
            }
        } else if let Some(invoke) = pending.remove(e.process.as_str()) {
            add(&mut out, invoke, Some(e));
        }
    }
    for invoke in pending.into_values() {
        add(&mut out, invoke, None);
    }
    out
}

/// Every register's history is linearizable: some order of its operations, each placed
/// between its invocation and its completion, explains every read (the value of the
/// last write before it; 0 before any). Writes whose outcome is unknown may have taken
/// effect at any time after their invocation, or never. A search that runs out of budget
/// is undecided, and fails the check.
pub fn linearizable(data: &RunData) -> Verdict {
    let name = "linearizable";
    let h = register_history(&data.history);
    if h.by_key.is_empty() {
        let summary = "passed trivially: no register operations (the register workload was off)";
        return Verdict::from_violations(name, Vec::new(), summary.to_string());
    }
    let mut violations = Vec::new();
    let mut steps = 0;
    let mut searched = 0;
    let mut dropped_writes = 0;
    let mut undecided = 0;
    for (key, ops) in &h.by_key {
        let c = linearizable::check(ops, 0, linearizable::DEFAULT_BUDGET);
        steps += c.steps;
        searched += c.ops;
        dropped_writes += c.dropped_writes;
        match c.outcome {
            Outcome::Linearizable => {}
            Outcome::NotLinearizable(v) => {
                violations.push(Violation::new(
                    v.op.invoke_ms,
                    format!("{key}: {}", v.explanation),
                ));
            }
            Outcome::Undecided { reason } => {
                undecided += 1;
                let first = ops.iter().map(|o| o.invoke_ms).min().unwrap_or(0);
                violations.push(Violation::new(
                    first,
                    format!("{key}: undecided, counted as a failure: {reason}"),
                ));
            }
        }
    }
    let keys = h.by_key.len();
    let verdict = match (violations.len(), undecided) {
        (0, _) => "linearizable".to_string(),
        (n, 0) => format!("{n} of {keys} registers NOT linearizable"),
        (n, u) => format!("{n} of {keys} registers failed ({u} undecided)"),
    };
    let summary = format!(
        "{verdict}: {} register ops on {keys} registers ({} writes acknowledged, {} unknown ({dropped_writes} of them never read, so left out), {} failed; {} reads; {} failed calls), {searched} searched in {steps} steps",
        h.writes_ok + h.writes_unknown + h.reads_ok,
        h.writes_ok,
        h.writes_unknown,
        h.writes_failed,
        h.reads_ok,
        h.reads_failed,
    );
    Verdict::from_violations(name, violations, summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(t: u64, process: &str, kind: EventType, f: &str) -> Event {
        Event::new(t, process, kind, f)
    }

    fn launch(t: u64, kind: EventType, task: &str) -> Event {
        ev(t, "fw-a", kind, op::LAUNCH)
            .task(task)
            .framework("f1")
            .agent("a1")
    }

    fn update(t: u64, task: &str, state: &str) -> Event {
        ev(t, "fw-a", EventType::Info, op::UPDATE)
            .task(task)
            .framework("f1")
            .agent("a1")
            .state(state.parse().expect("a task state name"))
    }

    fn reconciled(t: u64, task: &str, state: &str) -> Event {
        update(t, task, state).reconcile(true)
    }

    fn final_with_tasks(tasks: &[(&str, &str)]) -> serde_json::Value {
        let tasks: Vec<_> = tasks
            .iter()
            .map(|(id, state)| json!({"id": id, "framework_id": "f1", "agent_id": "a1", "state": state}))
            .collect();
        json!({"leader": "m1:5050", "term": 3, "agents": [{"id": "a1"}], "frameworks": [{"id": "f1"}], "tasks": tasks})
    }

    fn data(history: Vec<Event>, final_state: serde_json::Value) -> RunData {
        RunData {
            history,
            final_state,
            end_ms: 100_000,
            ..RunData::default()
        }
    }

    fn with_states(states: Vec<StateSample>) -> RunData {
        RunData {
            states,
            ..RunData::default()
        }
    }

    fn with_health(health: Vec<HealthSample>) -> RunData {
        RunData {
            health,
            ..RunData::default()
        }
    }

    fn mentions(v: &Verdict, needle: &str) -> bool {
        v.offending.iter().any(|l| l.contains(needle))
    }

    // -- verdict shape ------------------------------------------------------------------

    #[test]
    fn secs_formats_milliseconds() {
        assert_eq!(secs(0), "0.000s");
        assert_eq!(secs(12_345), "12.345s");
        assert_eq!(secs(7), "0.007s");
    }

    #[test]
    fn offending_is_capped_and_sorted_by_time() {
        let violations = (0..30u64)
            .rev()
            .map(|i| Violation::new(i * 1000, format!("v{i}")))
            .collect();
        let v = Verdict::from_violations("x", violations, "30 violations".into());
        assert!(!v.passed);
        assert_eq!(v.offending.len(), MAX_OFFENDING);
        assert_eq!(v.offending[0], "t=0.000s v0");
        assert_eq!(v.summary, "30 violations");
    }

    #[test]
    fn empty_run_passes_what_it_can() {
        let run = data(
            Vec::new(),
            json!({"agents": [], "frameworks": [], "tasks": []}),
        );
        let verdicts = check_all(&run);
        let names: Vec<_> = verdicts.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "no_overcommit",
                "at_most_once",
                "no_lost_tasks",
                "durability",
                "one_leader_per_term",
                "recovery",
                "linearizable"
            ]
        );
        assert!(verdicts.iter().all(|v| v.passed), "{verdicts:#?}");
        assert!(verdicts[5].summary.contains("trivially"));
    }

    #[test]
    fn unavailable_final_state_fails_the_checks_that_need_it() {
        let run = data(
            vec![launch(0, EventType::Ok, "t1")],
            serde_json::Value::Null,
        );
        assert!(!no_lost_tasks(&run).passed);
        let d = durability(&run);
        assert!(!d.passed && d.summary.contains("unavailable"));
    }

    // -- 1. no_overcommit ---------------------------------------------------------------

    fn agent(id: &str, total: f64, tasks: f64, offered: f64) -> AgentSample {
        let one = |x: f64| BTreeMap::from([("cpus".to_string(), x)]);
        AgentSample {
            id: id.into(),
            total: one(total),
            tasks: one(tasks),
            offered: one(offered),
        }
    }

    fn state_sample(t_ms: u64, agents: Vec<AgentSample>) -> StateSample {
        StateSample {
            t_ms,
            leader: None,
            term: None,
            agents,
        }
    }

    #[test]
    fn no_overcommit_passes_at_exact_capacity() {
        let run = with_states(vec![state_sample(
            1000,
            vec![agent("a1", 4.0, 2.5, 1.5), agent("a2", 1.0, 0.1 + 0.2, 0.7)],
        )]);
        let v = no_overcommit(&run);
        assert!(v.passed, "{v:?}");
        assert!(v.summary.contains("2 agent samples"));
    }

    #[test]
    fn no_overcommit_names_the_agent_and_resource() {
        let mut a2 = agent("a2", 1.0, 0.0, 0.0);
        a2.offered.insert("mem".into(), 64.0); // no mem at all on the agent
        let run = with_states(vec![state_sample(
            2500,
            vec![agent("a1", 4.0, 3.0, 1.5), a2],
        )]);
        let v = no_overcommit(&run);
        assert!(!v.passed);
        assert_eq!(v.offending.len(), 2);
        assert!(
            v.offending[0].starts_with("t=2.500s agent a1: cpus"),
            "{:?}",
            v.offending
        );
        assert!(mentions(&v, "agent a2: mem"));
    }

    // -- 2. at_most_once ----------------------------------------------------------------

    #[test]
    fn at_most_once_passes_for_single_executions() {
        let mut run = data(
            vec![
                launch(0, EventType::Invoke, "t1"),
                launch(5, EventType::Invoke, "t2"),
            ],
            json!({}),
        );
        run.markers = BTreeMap::from([("t1".into(), 1), ("t2".into(), 0)]);
        assert!(at_most_once(&run).passed);
    }

    #[test]
    fn at_most_once_flags_double_execution() {
        let mut run = data(vec![launch(3000, EventType::Invoke, "t1")], json!({}));
        run.markers = BTreeMap::from([("t1".into(), 2)]);
        let v = at_most_once(&run);
        assert!(!v.passed);
        assert_eq!(v.offending, ["t=3.000s task t1 executed 2 times"]);
    }

    #[test]
    fn at_most_once_flags_tasks_that_were_never_launched() {
        let mut run = data(vec![launch(0, EventType::Ok, "t1")], json!({}));
        run.markers = BTreeMap::from([("t1".into(), 1)]);
        let v = at_most_once(&run);
        assert!(!v.passed, "an ok without an invoke is not a launch invoke");
        assert!(mentions(&v, "task t1 ran but never launched"));
    }

    #[test]
    fn at_most_once_flags_a_dropped_task_that_ran_and_a_finished_one_without_marker() {
        let history = vec![
            launch(0, EventType::Invoke, "dropped"),
            launch(5, EventType::Ok, "dropped"),
            reconciled(6, "dropped", "TASK_DROPPED"),
            launch(10, EventType::Invoke, "finished"),
            launch(15, EventType::Ok, "finished"),
        ];
        let mut run = data(history, final_with_tasks(&[("finished", "TASK_FINISHED")]));
        run.markers = BTreeMap::from([("dropped".into(), 1)]);
        let v = at_most_once(&run);
        assert!(!v.passed);
        assert!(mentions(
            &v,
            "task dropped was dropped (TASK_DROPPED) but ran 1 times"
        ));
        assert!(mentions(&v, "task finished finished but left no marker"));
        // With the markers right, it passes.
        run.markers = BTreeMap::from([("finished".into(), 1)]);
        assert!(at_most_once(&run).passed, "{:?}", at_most_once(&run));
    }

    // -- 3. no_lost_tasks ---------------------------------------------------------------

    #[test]
    fn no_lost_tasks_passes_for_finished_and_running_tasks() {
        let history = vec![
            launch(0, EventType::Invoke, "t1"),
            launch(10, EventType::Ok, "t1"),
            launch(20, EventType::Invoke, "t2"),
            launch(30, EventType::Ok, "t2"),
            update(40, "t1", "TASK_STAGING"),
            update(50, "t1", "TASK_RUNNING"),
            update(60, "t1", "TASK_RUNNING"), // at-least-once repeat
            update(70, "t1", "TASK_FINISHED"),
            update(80, "t2", "TASK_RUNNING"),
            launch(90, EventType::Invoke, "t3"),
            launch(95, EventType::Fail, "t3"),
        ];
        let run = data(
            history,
            final_with_tasks(&[("t1", "TASK_FINISHED"), ("t2", "TASK_RUNNING")]),
        );
        let v = no_lost_tasks(&run);
        assert!(v.passed, "{v:?}");
        assert!(
            v.summary.starts_with("2 accepted launches"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn no_lost_tasks_flags_a_task_missing_from_the_final_state() {
        let history = vec![
            launch(1000, EventType::Invoke, "t1"),
            launch(1100, EventType::Ok, "t1"),
        ];
        let v = no_lost_tasks(&data(history.clone(), final_with_tasks(&[])));
        assert!(!v.passed);
        assert_eq!(
            v.offending,
            ["t=1.000s task t1 (framework f1, agent a1) lost: missing from the final state"]
        );
        // One its framework was told finished is not lost: retention dropped it.
        let mut told = history;
        told.push(update(2000, "t1", "TASK_FINISHED"));
        assert!(no_lost_tasks(&data(told, final_with_tasks(&[]))).passed);
    }

    #[test]
    fn no_lost_tasks_treats_unknown_outcomes_by_what_was_seen() {
        let history = vec![
            launch(0, EventType::Invoke, "seen"),
            launch(5, EventType::Info, "seen"),
            update(10, "seen", "TASK_RUNNING"),
            launch(20, EventType::Invoke, "unseen"),
            launch(25, EventType::Info, "unseen"),
            launch(30, EventType::Invoke, "no-outcome"),
        ];
        // "seen" showed up in an update, so it was accepted; it is missing: lost.
        let v = no_lost_tasks(&data(history.clone(), final_with_tasks(&[])));
        assert!(!v.passed);
        assert_eq!(v.offending.len(), 1, "{:?}", v.offending);
        assert!(mentions(&v, "task seen "));
        // Showing up only in the final state also counts as accepted; there it is fine.
        let fin = final_with_tasks(&[("seen", "TASK_RUNNING"), ("no-outcome", "TASK_UNREACHABLE")]);
        let v = no_lost_tasks(&data(history, fin));
        assert!(!v.passed);
        assert!(mentions(
            &v,
            "task no-outcome (framework f1, agent a1) lost: stuck in TASK_UNREACHABLE"
        ));
    }

    #[test]
    fn no_lost_tasks_does_not_count_a_launch_the_master_refused_after_the_call() {
        // The accept call returned ok, but the master refused the launch (its offer was
        // rescinded) and said TASK_DROPPED: the registry never held the task.
        let history = vec![
            launch(0, EventType::Invoke, "t1"),
            reconciled(5, "t1", "TASK_DROPPED"),
            launch(6, EventType::Ok, "t1"),
        ];
        let v = no_lost_tasks(&data(history.clone(), final_with_tasks(&[])));
        assert!(v.passed, "{v:?}");
        // But a task the registry holds as running must not have been called dropped.
        let v = no_lost_tasks(&data(history, final_with_tasks(&[("t1", "TASK_FINISHED")])));
        assert!(!v.passed, "{v:?}");
    }

    #[test]
    fn no_lost_tasks_allows_recent_staging_only() {
        let history = vec![
            launch(85_000, EventType::Ok, "old"),
            launch(95_000, EventType::Ok, "recent"),
        ];
        let fin = final_with_tasks(&[("old", "TASK_STAGING"), ("recent", "TASK_STAGING")]);
        let v = no_lost_tasks(&data(history, fin));
        assert_eq!(v.offending.len(), 1, "{:?}", v.offending);
        assert!(mentions(
            &v,
            "task old (framework f1, agent a1) lost: stuck in TASK_STAGING"
        ));
    }

    #[test]
    fn no_lost_tasks_flags_terminal_state_never_delivered() {
        let history = vec![
            launch(0, EventType::Ok, "t1"),
            update(10, "t1", "TASK_RUNNING"),
        ];
        let v = no_lost_tasks(&data(history, final_with_tasks(&[("t1", "TASK_KILLED")])));
        assert!(!v.passed);
        assert!(mentions(
            &v,
            "task t1: terminal state TASK_KILLED never reached the framework"
        ));
    }

    #[test]
    fn no_lost_tasks_accepts_a_terminal_state_delivered_by_reconciliation() {
        let history = vec![
            launch(0, EventType::Ok, "t1"),
            reconciled(10, "t1", "TASK_LOST"),
        ];
        let v = no_lost_tasks(&data(history, final_with_tasks(&[("t1", "TASK_LOST")])));
        assert!(v.passed, "{v:?}");
    }

    #[test]
    fn no_lost_tasks_flags_terminal_state_mismatch() {
        let history = vec![
            launch(0, EventType::Ok, "t1"),
            update(2000, "t1", "TASK_FAILED"),
        ];
        let v = no_lost_tasks(&data(history, final_with_tasks(&[("t1", "TASK_FINISHED")])));
        assert!(!v.passed);
        assert_eq!(
            v.offending,
            ["t=2.000s task t1: framework was told TASK_FAILED but the final state says TASK_FINISHED"]
        );
    }

    #[test]
    fn out_of_order_update_is_detected() {
        let history = vec![
            launch(0, EventType::Ok, "t1"),
            update(10, "t1", "TASK_RUNNING"),
            update(20, "t1", "TASK_STARTING"),
            update(30, "t1", "TASK_STAGING"), // same task: reported once
            update(40, "t1", "TASK_FINISHED"),
        ];
        let v = no_lost_tasks(&data(history, final_with_tasks(&[("t1", "TASK_FINISHED")])));
        assert!(!v.passed);
        assert_eq!(
            v.offending,
            ["t=0.020s task t1 updates out of order: TASK_STARTING after TASK_RUNNING"]
        );
    }

    #[test]
    fn update_after_terminal_is_out_of_order() {
        let history = vec![
            update(10, "t1", "TASK_FINISHED"),
            update(20, "t1", "TASK_RUNNING"),
        ];
        let v = no_lost_tasks(&data(history, final_with_tasks(&[("t1", "TASK_FINISHED")])));
        assert!(mentions(&v, "TASK_RUNNING after TASK_FINISHED"), "{v:?}");
    }

    #[test]
    fn reconcile_updates_and_unreachable_are_excluded_from_ordering() {
        let history = vec![
            launch(0, EventType::Ok, "t1"),
            update(10, "t1", "TASK_RUNNING"),
            reconciled(20, "t1", "TASK_STAGING"),
            update(30, "t1", "TASK_UNREACHABLE"),
            update(40, "t1", "TASK_KILLING"),
            update(50, "t1", "TASK_RUNNING"), // same rank as KILLING
            update(60, "t1", "TASK_FINISHED"),
            update(70, "t1", "TASK_FINISHED"),
        ];
        let v = no_lost_tasks(&data(history, final_with_tasks(&[("t1", "TASK_FINISHED")])));
        assert!(v.passed, "{v:?}");
    }

    #[test]
    fn two_different_terminal_states_are_flagged() {
        let history = vec![
            launch(0, EventType::Ok, "t1"),
            update(10, "t1", "TASK_FINISHED"),
            update(20, "t1", "TASK_LOST"),
        ];
        let v = no_lost_tasks(&data(history, final_with_tasks(&[("t1", "TASK_FINISHED")])));
        assert!(!v.passed);
        assert!(mentions(&v, "task t1 updates out of order: two different terminal states, TASK_FINISHED then TASK_LOST"));
        assert!(mentions(
            &v,
            "framework was told TASK_LOST but the final state says TASK_FINISHED"
        ));
    }

    // -- 4. durability ------------------------------------------------------------------

    fn registered(t: u64, agent: &str) -> Event {
        ev(t, "harness", EventType::Ok, op::REGISTER_AGENT).agent(agent)
    }

    fn subscribed(t: u64, framework: &str) -> Event {
        ev(t, "fw-a", EventType::Ok, op::SUBSCRIBE).framework(framework)
    }

    #[test]
    fn durability_passes_when_everything_acknowledged_is_known() {
        let history = vec![
            registered(0, "a1"),
            subscribed(5, "f1"),
            ev(6, "fw-b", EventType::Fail, op::SUBSCRIBE).error("no leader"),
        ];
        let v = durability(&data(history, final_with_tasks(&[])));
        assert!(v.passed, "{v:?}");
    }

    #[test]
    fn durability_names_missing_agents_and_frameworks() {
        let history = vec![
            registered(1000, "a1"),
            registered(2000, "a9"),
            subscribed(3000, "f7"),
        ];
        let v = durability(&data(history, final_with_tasks(&[])));
        assert!(!v.passed);
        assert_eq!(
            v.offending,
            [
                "t=2.000s agent a9 registered but missing from the final state",
                "t=3.000s framework f7 subscribed but missing from the final state"
            ]
        );
    }

    // -- 5. one_leader_per_term ---------------------------------------------------------

    fn health(t_ms: u64, node: u64, role: &str, term: u64, leader: &str) -> HealthSample {
        HealthSample {
            t_ms,
            node,
            role: Some(role.into()),
            term: Some(term),
            leader: Some(leader.into()),
        }
    }

    #[test]
    fn one_leader_per_term_passes_across_failover() {
        let run = with_health(vec![
            health(0, 1, "leader", 1, "m1:5050"),
            health(0, 2, "follower", 1, "m1:5050"),
            HealthSample {
                t_ms: 1000,
                node: 1,
                role: None,
                term: None,
                leader: None,
            },
            HealthSample {
                t_ms: 1000,
                node: 3,
                role: Some("candidate".into()),
                term: Some(2),
                leader: None,
            },
            health(2000, 2, "leader", 2, "m2:5050"),
            health(2000, 3, "follower", 2, "m2:5050"),
        ]);
        let v = one_leader_per_term(&run);
        assert!(v.passed, "{v:?}");
        assert!(v.summary.contains("2 terms"));
    }

    #[test]
    fn two_leaders_in_one_term_are_flagged() {
        let run = with_health(vec![
            health(1000, 1, "leader", 5, "m1:5050"),
            health(1500, 2, "leader", 5, "m1:5050"),
            health(1500, 1, "leader", 5, "m1:5050"),
        ]);
        let v = one_leader_per_term(&run);
        assert!(!v.passed);
        assert_eq!(
            v.offending,
            ["t=1.500s term 5: nodes 1, 2 reported themselves leader"]
        );
    }

    #[test]
    fn disagreeing_leader_addresses_in_one_term_are_flagged() {
        let run = with_health(vec![
            health(1000, 1, "leader", 7, "m1:5050"),
            health(3000, 2, "follower", 7, "m3:5050"),
        ]);
        let v = one_leader_per_term(&run);
        assert!(!v.passed);
        assert_eq!(
            v.offending,
            ["t=3.000s term 7: nodes named different leaders: m1:5050, m3:5050"]
        );
    }

    // -- 6. recovery --------------------------------------------------------------------

    fn recovery_run(heal: Option<u64>, history: Vec<Event>) -> RunData {
        RunData {
            history,
            final_heal_ms: heal,
            end_ms: 60_000,
            ..RunData::default()
        }
    }

    #[test]
    fn recovery_passes_trivially_without_faults() {
        let v = recovery(&recovery_run(None, Vec::new()));
        assert!(v.passed);
        assert!(v.summary.contains("no faults"));
    }

    #[test]
    fn recovery_measures_the_first_progress_of_a_new_launch() {
        let history = vec![
            launch(9_000, EventType::Invoke, "before"),
            update(10_500, "before", "TASK_RUNNING"), // launched before the heal: ignored
            launch(10_000, EventType::Invoke, "after"),
            update(13_200, "after", "TASK_RUNNING"),
        ];
        let v = recovery(&recovery_run(Some(10_000), history));
        assert!(v.passed, "{v:?}");
        assert!(v.summary.contains("3200 ms"), "{}", v.summary);
        assert!(v.summary.contains("task after"));
    }

    #[test]
    fn recovery_fails_when_too_slow() {
        let history = vec![
            launch(10_000, EventType::Invoke, "t9"),
            update(16_000, "t9", "TASK_FINISHED"),
        ];
        let v = recovery(&recovery_run(Some(10_000), history));
        assert!(!v.passed);
        assert!(v.summary.contains("6000 ms"));
        assert_eq!(
            v.offending,
            ["t=16.000s task t9 reached progress 6000 ms after the final heal at 10.000s"]
        );
    }

    #[test]
    fn recovery_fails_without_progress() {
        let history = vec![
            launch(10_000, EventType::Invoke, "t9"),
            update(11_000, "t9", "TASK_STAGING"),
        ];
        let v = recovery(&recovery_run(Some(10_000), history));
        assert!(!v.passed);
        assert!(mentions(
            &v,
            "final heal at 10.000s: no task launched after it"
        ));
    }

    // -- linearizable -------------------------------------------------------------------

    fn reg(
        t: u64,
        process: &str,
        kind: EventType,
        f: &str,
        key: &str,
        value: Option<u64>,
    ) -> Event {
        ev(t, process, kind, f).register(&crate::history::RegisterOp {
            key: key.into(),
            value,
            master: Some("10.0.0.3:5050".into()),
        })
    }

    fn write_ok(t: u64, done: u64, process: &str, key: &str, value: u64) -> [Event; 2] {
        [
            reg(
                t,
                process,
                EventType::Invoke,
                op::REG_WRITE,
                key,
                Some(value),
            ),
            reg(
                done,
                process,
                EventType::Ok,
                op::REG_WRITE,
                key,
                Some(value),
            ),
        ]
    }

    fn read_ok(t: u64, done: u64, process: &str, key: &str, value: Option<u64>) -> [Event; 2] {
        [
            reg(t, process, EventType::Invoke, op::REG_READ, key, None),
            reg(done, process, EventType::Ok, op::REG_READ, key, value),
        ]
    }

    fn register_run(events: Vec<[Event; 2]>) -> RunData {
        let mut history: Vec<Event> = events.into_iter().flatten().collect();
        history.sort_by_key(|e| e.t_ms);
        data(history, json!(null))
    }

    #[test]
    fn linearizable_passes_trivially_without_the_register_workload() {
        let v = linearizable(&RunData::default());
        assert!(v.passed);
        assert!(v.summary.contains("trivially"), "{}", v.summary);
    }

    #[test]
    fn linearizable_passes_a_register_history_and_counts_it() {
        let mut events = vec![
            write_ok(100, 110, "reg-0", "reg-1", 1),
            read_ok(120, 130, "reg-1", "reg-1", Some(1)),
            read_ok(100, 105, "reg-2", "reg-2", None),
            write_ok(140, 150, "reg-0", "reg-2", 5),
        ];
        // Unknown: timed out; never read, so left out of the search.
        events.push([
            reg(
                160,
                "reg-3",
                EventType::Invoke,
                op::REG_WRITE,
                "reg-1",
                Some(9),
            ),
            reg(
                1200,
                "reg-3",
                EventType::Info,
                op::REG_WRITE,
                "reg-1",
                Some(9),
            ),
        ]);
        // Refused by a follower: a failed read.
        events.push([
            reg(200, "reg-2", EventType::Invoke, op::REG_READ, "reg-1", None),
            reg(201, "reg-2", EventType::Fail, op::REG_READ, "reg-1", None),
        ]);
        let v = linearizable(&register_run(events));
        assert!(v.passed, "{v:?}");
        assert!(
            v.summary.starts_with("linearizable: 5 register ops on 2 registers (2 writes acknowledged, 1 unknown (1 of them never read, so left out), 0 failed; 2 reads; 1 failed calls)"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn linearizable_fails_a_stale_read_naming_the_register_and_the_read() {
        let events = vec![
            write_ok(1_000, 1_010, "reg-0", "reg-1", 1),
            write_ok(2_000, 2_010, "reg-1", "reg-1", 2),
            read_ok(3_000, 3_005, "reg-2", "reg-1", Some(1)),
            // Another register is fine.
            read_ok(3_000, 3_005, "reg-3", "reg-0", None),
        ];
        let v = linearizable(&register_run(events));
        assert!(!v.passed);
        assert!(
            v.summary.starts_with("1 of 2 registers NOT linearizable"),
            "{}",
            v.summary
        );
        assert_eq!(v.offending.len(), 1);
        let line = &v.offending[0];
        assert!(
            line.starts_with(
                "t=3.000s reg-1: read 1 by reg-2 via 10.0.0.3:5050 in [3.000s, 3.005s] returned 1"
            ),
            "{line}"
        );
        assert!(
            line.contains(
                "but write 2 by reg-1 via 10.0.0.3:5050 in [2.000s, 2.010s] overwrote it"
            ),
            "{line}"
        );
    }

    #[test]
    fn linearizable_treats_a_call_cut_off_by_the_end_as_unknown() {
        // The write's invocation has no completion: it may have happened, so a later read
        // of its value is fine.
        let mut history: Vec<Event> = vec![reg(
            100,
            "reg-0",
            EventType::Invoke,
            op::REG_WRITE,
            "reg-0",
            Some(4),
        )];
        history.extend(read_ok(200, 210, "reg-1", "reg-0", Some(4)));
        let v = linearizable(&data(history, json!(null)));
        assert!(v.passed, "{v:?}");
        assert!(
            v.summary.contains("1 unknown (0 of them never read"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn linearizable_fails_a_read_of_a_value_nobody_wrote() {
        let v = linearizable(&register_run(vec![read_ok(
            0,
            5,
            "reg-0",
            "reg-0",
            Some(77),
        )]));
        assert!(!v.passed);
        assert!(
            mentions(&v, "(no write of that value is in the history)"),
            "{v:?}"
        );
    }
}
