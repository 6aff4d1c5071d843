//! What a human reads after a fault-injection run: leader failover timings
//! ([`failovers`]), workload counts ([`stats`]), a markdown summary of the checkers'
//! verdicts ([`summary_markdown`]) and a timeline plot ([`plot_svg`]).
//!
//! What it owns: deriving measurements from a run's record and laying them out as text.
//!
//! What it must not do: judge the run (the verdicts come from `checker`), do I/O, or read
//! the clock. Every function is a pure function of its arguments; callers write the
//! returned strings to files.

use std::collections::{BTreeMap, BTreeSet};

use agora_driver::TaskState;
use serde::{Deserialize, Serialize};

use crate::checker::Verdict;
use crate::history::{op, Event, EventType, HealthSample};

/// The faults whose failovers are measured: the leader killed, and the leader cut off
/// from everyone (it must give up leading within its lease, and the rest elect another).
const FAILOVER_FAULTS: [&str; 2] = ["kill-leader", "partition-leader"];

// ---------------------------------------------------------------------------------------
// Failovers

/// One `kill-leader` or `partition-leader` fault and how long the cluster took to get
/// over it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failover {
    /// Which fault (`kill-leader` for runs recorded before partitions were measured).
    #[serde(default = "kill_leader")]
    pub fault: String,
    /// When it started (the kill, or the partition).
    pub killed_at_ms: u64,
    /// The killed leader's term.
    pub old_term: u64,
    /// From the kill to the first health sample of a leader in a later term.
    pub elected_after_ms: Option<u64>,
    /// From the kill to the first offer made in a later term.
    pub first_offer_after_ms: Option<u64>,
}

fn kill_leader() -> String {
    FAILOVER_FAULTS[0].to_string()
}

/// One [`Failover`] per `kill-leader` or `partition-leader` fault-start, in history order. The old term is the
/// event's `term`; if it has none, the highest term any health sample reported at or
/// before the kill (0 if none did).
pub fn failovers(history: &[Event], health: &[HealthSample]) -> Vec<Failover> {
    history
        .iter()
        .filter(|e| {
            e.f == op::FAULT_START
                && e.fault
                    .as_deref()
                    .is_some_and(|f| FAILOVER_FAULTS.contains(&f))
        })
        .map(|kill| {
            let killed_at_ms = kill.t_ms;
            let old_term = kill
                .term
                .unwrap_or_else(|| highest_term_until(health, killed_at_ms));
            Failover {
                fault: kill.fault.clone().unwrap_or_else(kill_leader),
                killed_at_ms,
                old_term,
                elected_after_ms: first_leader_after(health, killed_at_ms, old_term),
                first_offer_after_ms: first_offer_after(history, killed_at_ms, old_term),
            }
        })
        .collect()
}

/// The highest term reported by a health sample at or before `t_ms`.
fn highest_term_until(health: &[HealthSample], t_ms: u64) -> u64 {
    health
        .iter()
        .filter(|s| s.t_ms <= t_ms)
        .filter_map(|s| s.term)
        .max()
        .unwrap_or(0)
}

/// Time from `since_ms` to the first health sample of a leader in a term above `term`.
fn first_leader_after(health: &[HealthSample], since_ms: u64, term: u64) -> Option<u64> {
    health
        .iter()
        .filter(|s| s.t_ms >= since_ms && s.role.as_deref() == Some("leader"))
        .filter(|s| s.term.is_some_and(|t| t > term))
        .map(|s| s.t_ms - since_ms)
        .min()
}

/// Time from `since_ms` to the first offer event made in a term above `term`.
fn first_offer_after(history: &[Event], since_ms: u64, term: u64) -> Option<u64> {
    history
        .iter()
        .filter(|e| e.f == op::OFFER && e.t_ms >= since_ms)
        .filter(|e| e.term.is_some_and(|t| t > term))
        .map(|e| e.t_ms - since_ms)
        .min()
}

/// The nearest-rank `p`th percentile (`p` in percent, 0..=100) of `values`: the smallest
/// value with at least `p`% of the values at or below it. `None` for no values or a NaN `p`.
pub fn percentile(values: &[u64], p: f64) -> Option<u64> {
    if values.is_empty() || p.is_nan() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    let rank = (p.clamp(0.0, 100.0) / 100.0 * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

// ---------------------------------------------------------------------------------------
// Stats

/// Counts of what happened in a run, from its history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub launches_invoked: usize,
    pub launches_ok: usize,
    pub launches_failed: usize,
    /// Launches whose outcome is unknown (info).
    pub launches_unknown: usize,
    pub subscribes_ok: usize,
    /// Status updates received, reconcile answers included.
    pub updates: usize,
    pub reconcile_updates: usize,
    /// Distinct tasks with a `TASK_FINISHED` update (reconcile or not).
    pub tasks_finished: usize,
    /// Distinct tasks with a `TASK_FAILED` update.
    pub tasks_failed: usize,
    /// Distinct tasks with a `TASK_LOST` update whose launch was acknowledged.
    pub tasks_lost: usize,
    /// Distinct tasks with a `TASK_LOST` update whose launch was never acknowledged: a
    /// reconciliation's answer for a task the master does not know ("unknown task", as in
    /// Mesos), after a launch that failed or whose outcome is unknown.
    pub tasks_lost_never_launched: usize,
    /// Distinct tasks with another terminal update (killed, error, dropped, gone).
    pub tasks_other_terminal: usize,
    pub offers: usize,
    /// Register workload: writes acknowledged, with unknown outcome (info), failed.
    pub register_writes_ok: usize,
    pub register_writes_unknown: usize,
    pub register_writes_failed: usize,
    /// Register workload: reads that returned a value, and reads that did not.
    pub register_reads_ok: usize,
    pub register_reads_failed: usize,
    /// Fault kind -> how many times it was started.
    pub faults: BTreeMap<String, usize>,
}

/// Counts the history's launches, updates, offers and faults.
pub fn stats(history: &[Event]) -> Stats {
    let mut s = Stats::default();
    let mut terminal: BTreeMap<TaskState, BTreeSet<&str>> = BTreeMap::new();
    let mut acknowledged: BTreeSet<&str> = BTreeSet::new();
    for e in history {
        match (e.f.as_str(), e.kind) {
            (op::LAUNCH, EventType::Invoke) => s.launches_invoked += 1,
            (op::LAUNCH, EventType::Ok) => {
                s.launches_ok += 1;
                acknowledged.extend(e.task.as_deref());
            }
            (op::LAUNCH, EventType::Fail) => s.launches_failed += 1,
            (op::LAUNCH, EventType::Info) => s.launches_unknown += 1,
            (op::SUBSCRIBE, EventType::Ok) => s.subscribes_ok += 1,
            (op::OFFER, _) => s.offers += 1,
            (op::REG_WRITE, EventType::Ok) => s.register_writes_ok += 1,
            (op::REG_WRITE, EventType::Info) => s.register_writes_unknown += 1,
            (op::REG_WRITE, EventType::Fail) => s.register_writes_failed += 1,
            (op::REG_READ, EventType::Ok) => s.register_reads_ok += 1,
            (op::REG_READ, EventType::Fail | EventType::Info) => s.register_reads_failed += 1,
            (op::FAULT_START, _) => {
                let kind = e.fault.clone().unwrap_or_else(|| "?".to_string());
                *s.faults.entry(kind).or_insert(0) += 1;
            }
            (op::UPDATE, _) => {
                s.updates += 1;
                s.reconcile_updates += usize::from(e.reconcile);
                if let (Some(task), Some(state)) = (e.task.as_deref(), e.state) {
                    terminal.entry(state).or_default().insert(task);
                }
            }
            _ => {}
        }
    }
    let tasks_in = |state: TaskState| terminal.get(&state).map_or(0, BTreeSet::len);
    s.tasks_finished = tasks_in(TaskState::TaskFinished);
    s.tasks_failed = tasks_in(TaskState::TaskFailed);
    let lost = terminal.get(&TaskState::TaskLost);
    s.tasks_lost = lost.map_or(0, |l| l.intersection(&acknowledged).count());
    s.tasks_lost_never_launched = lost.map_or(0, BTreeSet::len) - s.tasks_lost;
    s.tasks_other_terminal = terminal
        .iter()
        .filter(|(state, _)| state.is_terminal())
        .filter(|(state, _)| {
            !matches!(
                state,
                TaskState::TaskFinished | TaskState::TaskFailed | TaskState::TaskLost
            )
        })
        .map(|(_, tasks)| tasks.len())
        .sum();
    s
}

// ---------------------------------------------------------------------------------------
// Markdown summary

/// The run's summary: checker verdicts, workload counts, failover timings, then each
/// failing checker's offending lines.
pub fn summary_markdown(
    title: &str,
    verdicts: &[Verdict],
    stats: &Stats,
    failovers: &[Failover],
) -> String {
    let mut md = format!("# {}\n\n", one_line(title));
    md.push_str(&verdicts_table(verdicts));
    md.push_str(&stats_table(stats));
    md.push_str(&failover_table(failovers));
    md.push_str(&failure_details(verdicts));
    md
}

/// Text safe inside a markdown table cell: no line breaks, pipes escaped.
fn cell(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

/// `text` with line breaks turned into spaces.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

fn verdicts_table(verdicts: &[Verdict]) -> String {
    let mut md = String::from("## Checkers\n\n| checker | result | summary |\n|---|---|---|\n");
    for v in verdicts {
        let result = if v.passed { "PASS" } else { "**FAIL**" };
        md.push_str(&format!(
            "| {} | {result} | {} |\n",
            cell(&v.name),
            cell(&v.summary)
        ));
    }
    md.push('\n');
    md
}

fn stats_table(s: &Stats) -> String {
    let mut rows = vec![
        ("launches invoked".to_string(), s.launches_invoked),
        ("launches ok".to_string(), s.launches_ok),
        ("launches failed".to_string(), s.launches_failed),
        (
            "launches with unknown outcome".to_string(),
            s.launches_unknown,
        ),
        ("subscriptions ok".to_string(), s.subscribes_ok),
        ("status updates".to_string(), s.updates),
        (
            "of which reconcile answers".to_string(),
            s.reconcile_updates,
        ),
        ("tasks finished".to_string(), s.tasks_finished),
        ("tasks failed".to_string(), s.tasks_failed),
        ("tasks lost".to_string(), s.tasks_lost),
        (
            "TASK_LOST for a launch never acknowledged (reconciled as unknown)".to_string(),
            s.tasks_lost_never_launched,
        ),
        (
            "tasks otherwise terminal".to_string(),
            s.tasks_other_terminal,
        ),
        ("offers".to_string(), s.offers),
        ("register writes ok".to_string(), s.register_writes_ok),
        (
            "register writes with unknown outcome".to_string(),
            s.register_writes_unknown,
        ),
        (
            "register writes failed".to_string(),
            s.register_writes_failed,
        ),
        ("register reads ok".to_string(), s.register_reads_ok),
        ("register reads failed".to_string(), s.register_reads_failed),
    ];
    rows.extend(s.faults.iter().map(|(k, n)| (format!("faults: {k}"), *n)));
    let mut md = String::from("## Workload\n\n| metric | count |\n|---|---:|\n");
    for (metric, n) in rows {
        md.push_str(&format!("| {} | {n} |\n", cell(&metric)));
    }
    md.push('\n');
    md
}

fn failover_table(failovers: &[Failover]) -> String {
    let mut md = String::from("## Leader failovers (kill-leader, partition-leader)\n\n");
    if failovers.is_empty() {
        md.push_str("No kill-leader or partition-leader faults.\n\n");
        return md;
    }
    md.push_str("| measure | n | p50 ms | p99 ms | max ms | never |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|\n");
    for fault in FAILOVER_FAULTS {
        let of: Vec<&Failover> = failovers.iter().filter(|f| f.fault == fault).collect();
        if of.is_empty() {
            continue;
        }
        let elected: Vec<Option<u64>> = of.iter().map(|f| f.elected_after_ms).collect();
        let offered: Vec<Option<u64>> = of.iter().map(|f| f.first_offer_after_ms).collect();
        md.push_str(&latency_row(
            &format!("{fault}: new leader elected"),
            &elected,
        ));
        md.push_str(&latency_row(
            &format!("{fault}: first offer in a later term (task flow resumes)"),
            &offered,
        ));
    }
    md.push('\n');
    md
}

/// One failover table row: count, p50, p99 and max of the measured values, and how many
/// failovers never got there.
fn latency_row(measure: &str, values: &[Option<u64>]) -> String {
    let measured: Vec<u64> = values.iter().flatten().copied().collect();
    let show = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    format!(
        "| {measure} | {} | {} | {} | {} | {} |\n",
        measured.len(),
        show(percentile(&measured, 50.0)),
        show(percentile(&measured, 99.0)),
        show(measured.iter().max().copied()),
        values.len() - measured.len()
    )
}

fn failure_details(verdicts: &[Verdict]) -> String {
    let failing: Vec<&Verdict> = verdicts.iter().filter(|v| !v.passed).collect();
    if failing.is_empty() {
        return "## Failures\n\nAll checkers passed.\n".to_string();
    }
    let mut md = String::from("## Failures\n");
    for v in failing {
        md.push_str(&format!(
            "\n### {}\n\n{}\n\n",
            one_line(&v.name),
            one_line(&v.summary)
        ));
        for line in &v.offending {
            md.push_str(&format!("- {}\n", one_line(line)));
        }
    }
    md
}

// ---------------------------------------------------------------------------------------
// Fault windows

/// The span of one fault, from its fault-start to its end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultWindow {
    pub fault: String,
    pub targets: Vec<String>,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// Pairs each fault-start with the first later fault-stop of the same fault and targets
/// (targets compared as sets). A start without a stop ends at the first final-heal after
/// it, or else at `end_ms`. Stops without a start are ignored. Sorted by start.
pub fn fault_windows(history: &[Event], end_ms: u64) -> Vec<FaultWindow> {
    let mut open: Vec<FaultWindow> = Vec::new();
    let mut closed = Vec::new();
    for e in history {
        match e.f.as_str() {
            op::FAULT_START => open.push(FaultWindow {
                fault: e.fault.clone().unwrap_or_else(|| "?".to_string()),
                targets: e.targets.clone(),
                start_ms: e.t_ms,
                end_ms: e.t_ms,
            }),
            op::FAULT_STOP => {
                let fault = e.fault.as_deref().unwrap_or("?");
                if let Some(i) = open.iter().position(|w| same_fault(w, fault, &e.targets)) {
                    closed.push(close(open.remove(i), e.t_ms));
                }
            }
            op::FINAL_HEAL => closed.extend(open.drain(..).map(|w| close(w, e.t_ms))),
            _ => {}
        }
    }
    closed.extend(open.into_iter().map(|w| close(w, end_ms)));
    closed.sort_by_key(|w| w.start_ms);
    closed
}

fn same_fault(window: &FaultWindow, fault: &str, targets: &[String]) -> bool {
    let set = |t: &[String]| t.iter().cloned().collect::<BTreeSet<String>>();
    window.fault == fault && set(&window.targets) == set(targets)
}

/// `window` ending at `t_ms` (never before its start).
fn close(mut window: FaultWindow, t_ms: u64) -> FaultWindow {
    window.end_ms = t_ms.max(window.start_ms);
    window
}

// ---------------------------------------------------------------------------------------
// SVG timeline

const SVG_WIDTH: f64 = 1000.0;
const SVG_HEIGHT: f64 = 500.0;
const PLOT_LEFT: f64 = 70.0;
const PLOT_RIGHT: f64 = 800.0;
const TOP_PANEL: (f64, f64) = (40.0, 215.0);
const BOTTOM_PANEL: (f64, f64) = (265.0, 445.0);
const LEGEND_X: f64 = 820.0;

/// Fill colours for the known fault kinds; other kinds get a colour from their name.
const FAULT_COLOURS: [(&str, &str); 13] = [
    ("kill-leader", "#d62728"),
    ("kill-master", "#ff7f0e"),
    ("kill-minority", "#8c564b"),
    ("pause", "#9467bd"),
    ("partition-leader", "#1f77b4"),
    ("partition-halves", "#17becf"),
    ("partition-ring", "#2ca02c"),
    ("partition-bridge", "#bcbd22"),
    ("agent-kill", "#e377c2"),
    ("agent-partition", "#7f7f7f"),
    ("framework-kill", "#393b79"),
    ("membership", "#843c39"),
    ("clock-jump", "#ff9896"),
];

/// The time axis shared by both panels.
struct TimeAxis {
    span_ms: u64,
}

impl TimeAxis {
    /// Covers `end_ms` and every event (at least one second).
    fn new(history: &[Event], end_ms: u64) -> Self {
        let last = history.iter().map(|e| e.t_ms).max().unwrap_or(0);
        TimeAxis {
            span_ms: end_ms.max(last).max(1000),
        }
    }

    /// The x coordinate of `t_ms`.
    fn x(&self, t_ms: u64) -> f64 {
        PLOT_LEFT + (PLOT_RIGHT - PLOT_LEFT) * (t_ms as f64 / self.span_ms as f64)
    }
}

/// A self-contained SVG timeline of the run: tasks finished per second on top, launch to
/// `TASK_RUNNING` latency below, fault windows shaded across both, with a legend.
pub fn plot_svg(history: &[Event], end_ms: u64) -> String {
    let axis = TimeAxis::new(history, end_ms);
    let windows = fault_windows(history, axis.span_ms);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{SVG_WIDTH}\" height=\"{SVG_HEIGHT}\" \
         viewBox=\"0 0 {SVG_WIDTH} {SVG_HEIGHT}\" font-family=\"sans-serif\" font-size=\"11\">\n"
    );
    svg.push_str(&format!(
        "<rect class=\"background\" x=\"0\" y=\"0\" width=\"{SVG_WIDTH}\" height=\"{SVG_HEIGHT}\" fill=\"white\"/>\n"
    ));
    svg.push_str(&svg_fault_windows(&windows, &axis));
    svg.push_str(&svg_throughput(history, &axis));
    svg.push_str(&svg_latency(history, &axis));
    svg.push_str(&svg_time_axis(&axis));
    svg.push_str(&svg_legend(&windows));
    svg.push_str("</svg>\n");
    svg
}

/// `text` with the XML special characters escaped.
fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The fill colour of a fault kind.
fn fault_colour(fault: &str) -> &'static str {
    if let Some((_, colour)) = FAULT_COLOURS.iter().find(|(kind, _)| *kind == fault) {
        return colour;
    }
    let hash = fault
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    FAULT_COLOURS[hash % FAULT_COLOURS.len()].1
}

/// One translucent rectangle per fault window, across both panels, with a tooltip.
fn svg_fault_windows(windows: &[FaultWindow], axis: &TimeAxis) -> String {
    let mut svg = String::new();
    for w in windows {
        let (x0, x1) = (axis.x(w.start_ms), axis.x(w.end_ms));
        let tooltip = format!(
            "{} {} ({:.1}-{:.1} s)",
            w.fault,
            w.targets.join(","),
            w.start_ms as f64 / 1000.0,
            w.end_ms as f64 / 1000.0
        );
        svg.push_str(&format!(
            "<rect class=\"fault\" x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
             fill=\"{}\" fill-opacity=\"0.2\"><title>{}</title></rect>\n",
            TOP_PANEL.0,
            (x1 - x0).max(1.0),
            BOTTOM_PANEL.1 - TOP_PANEL.0,
            fault_colour(&w.fault),
            escape_xml(&tooltip)
        ));
    }
    svg
}

/// A round step (1, 2 or 5 times a power of ten) giving about `ticks` ticks up to `max`.
fn nice_step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude);
    step.max(1.0)
}

/// Per 1 s bucket, how many tasks got their first non-reconcile `TASK_FINISHED` update.
fn finished_per_second(history: &[Event], span_ms: u64) -> Vec<u64> {
    let buckets = span_ms.div_ceil(1000).max(1) as usize;
    let mut counts = vec![0u64; buckets];
    let mut counted = BTreeSet::new();
    for e in history.iter().filter(|e| e.f == op::UPDATE && !e.reconcile) {
        if e.state != Some(TaskState::TaskFinished) {
            continue;
        }
        if e.task.as_deref().is_some_and(|t| counted.insert(t)) {
            counts[((e.t_ms / 1000) as usize).min(buckets - 1)] += 1;
        }
    }
    counts
}

/// The top panel: a step line of tasks finished per second, with its y axis.
fn svg_throughput(history: &[Event], axis: &TimeAxis) -> String {
    let counts = finished_per_second(history, axis.span_ms);
    let peak = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = nice_step(peak, 4.0);
    let top = (peak / step).ceil() * step;
    let (y_top, y_bottom) = TOP_PANEL;
    let y = |v: f64| y_bottom - (y_bottom - y_top) * v / top;
    let mut svg = panel_frame(TOP_PANEL, "tasks finished per second");
    let mut tick = 0.0;
    while tick <= top + 1e-9 {
        svg.push_str(&y_tick(y(tick), &format!("{tick}")));
        tick += step;
    }
    let points: Vec<String> = counts
        .iter()
        .enumerate()
        .flat_map(|(i, &c)| {
            let (t0, t1) = (i as u64 * 1000, ((i as u64 + 1) * 1000).min(axis.span_ms));
            [(axis.x(t0), y(c as f64)), (axis.x(t1), y(c as f64))]
        })
        .map(|(px, py)| format!("{px:.1},{py:.1}"))
        .collect();
    svg.push_str(&format!(
        "<polyline class=\"throughput\" fill=\"none\" stroke=\"#1f4e79\" stroke-width=\"1.5\" points=\"{}\"/>\n",
        points.join(" ")
    ));
    svg
}

/// Per task: (launch invoke time, ms until its first `TASK_RUNNING` update after it).
fn launch_latencies(history: &[Event]) -> Vec<(u64, u64)> {
    let mut invoked: BTreeMap<&str, u64> = BTreeMap::new();
    let mut running: BTreeMap<&str, u64> = BTreeMap::new();
    for e in history {
        let Some(task) = e.task.as_deref() else {
            continue;
        };
        if e.is(EventType::Invoke, op::LAUNCH) {
            invoked.entry(task).or_insert(e.t_ms);
        } else if e.f == op::UPDATE && e.state == Some(TaskState::TaskRunning) {
            if let Some(&t0) = invoked.get(task).filter(|&&t0| e.t_ms >= t0) {
                running.entry(task).or_insert(e.t_ms - t0);
            }
        }
    }
    running
        .iter()
        .map(|(task, &lat)| (invoked[task], lat))
        .collect()
}

/// The bottom panel: one dot per task at its launch time, its latency on a log scale.
fn svg_latency(history: &[Event], axis: &TimeAxis) -> String {
    let latencies = launch_latencies(history);
    let decade = |ms: u64| (ms.max(1) as f64).log10();
    let low = latencies
        .iter()
        .map(|&(_, l)| decade(l).floor())
        .fold(f64::INFINITY, f64::min);
    let low = if low.is_finite() { low.min(1.0) } else { 1.0 };
    let high = latencies
        .iter()
        .map(|&(_, l)| decade(l).ceil())
        .fold(3.0, f64::max)
        .max(low + 1.0);
    let (y_top, y_bottom) = BOTTOM_PANEL;
    let y = |log: f64| y_bottom - (y_bottom - y_top) * (log - low) / (high - low);
    let mut svg = panel_frame(
        BOTTOM_PANEL,
        "launch to TASK_RUNNING latency (ms, log scale)",
    );
    for power in (low as i32)..=(high as i32) {
        svg.push_str(&y_tick(
            y(f64::from(power)),
            &format!("{}", 10u64.pow(power as u32)),
        ));
    }
    svg.push_str("<g class=\"latency\" fill=\"#2ca02c\" fill-opacity=\"0.6\">\n");
    for &(t, lat) in &latencies {
        svg.push_str(&format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\"/>\n",
            axis.x(t),
            y(decade(lat))
        ));
    }
    svg.push_str("</g>\n");
    svg
}

/// A panel's border and its title above it.
fn panel_frame((y_top, y_bottom): (f64, f64), title: &str) -> String {
    format!(
        "<rect class=\"panel\" x=\"{PLOT_LEFT}\" y=\"{y_top}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n\
         <text x=\"{PLOT_LEFT}\" y=\"{:.1}\" font-weight=\"bold\">{}</text>\n",
        PLOT_RIGHT - PLOT_LEFT,
        y_bottom - y_top,
        y_top - 8.0,
        escape_xml(title)
    )
}

/// A y-axis tick with its label and a faint grid line.
fn y_tick(y: f64, label: &str) -> String {
    format!(
        "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{PLOT_RIGHT}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
        PLOT_LEFT - 4.0,
        PLOT_LEFT - 6.0,
        y + 4.0,
        escape_xml(label)
    )
}

/// Time ticks on both panels, labelled in seconds under the bottom one.
fn svg_time_axis(axis: &TimeAxis) -> String {
    let span_s = axis.span_ms as f64 / 1000.0;
    let step_s = nice_step(span_s, 10.0);
    let mut svg = String::new();
    let mut tick_s = 0.0;
    while tick_s <= span_s + 1e-9 {
        let x = axis.x((tick_s * 1000.0).round() as u64);
        for (_, y_bottom) in [TOP_PANEL, BOTTOM_PANEL] {
            svg.push_str(&format!(
                "<line x1=\"{x:.1}\" y1=\"{y_bottom}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#444\"/>\n",
                y_bottom + 4.0
            ));
        }
        svg.push_str(&format!(
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{tick_s}</text>\n",
            BOTTOM_PANEL.1 + 16.0
        ));
        tick_s += step_s;
    }
    svg.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">time (s)</text>\n",
        (PLOT_LEFT + PLOT_RIGHT) / 2.0,
        BOTTOM_PANEL.1 + 34.0
    ));
    svg
}

/// One swatch and name per fault kind present, in order of first appearance.
fn svg_legend(windows: &[FaultWindow]) -> String {
    let mut kinds: Vec<&str> = Vec::new();
    for w in windows {
        if !kinds.contains(&w.fault.as_str()) {
            kinds.push(&w.fault);
        }
    }
    let mut svg = format!(
        "<text x=\"{LEGEND_X}\" y=\"{}\" font-weight=\"bold\">faults</text>\n",
        TOP_PANEL.0
    );
    if kinds.is_empty() {
        svg.push_str(&format!(
            "<text x=\"{LEGEND_X}\" y=\"{}\">none</text>\n",
            TOP_PANEL.0 + 18.0
        ));
    }
    for (i, kind) in kinds.iter().enumerate() {
        let y = TOP_PANEL.0 + 10.0 + 18.0 * i as f64;
        svg.push_str(&format!(
            "<rect class=\"legend-swatch\" x=\"{LEGEND_X}\" y=\"{y}\" width=\"12\" height=\"12\" \
             fill=\"{}\" fill-opacity=\"0.5\"/>\n<text x=\"{}\" y=\"{}\">{}</text>\n",
            fault_colour(kind),
            LEGEND_X + 18.0,
            y + 10.0,
            escape_xml(kind)
        ));
    }
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: u64, process: &str, kind: EventType, f: &str) -> Event {
        Event::new(t, process, kind, f)
    }

    fn fault_start(t: u64, fault: &str, targets: &[&str]) -> Event {
        ev(t, "nemesis", EventType::Info, op::FAULT_START)
            .fault(fault)
            .targets(targets.iter().copied())
    }

    fn fault_stop(t: u64, fault: &str, targets: &[&str]) -> Event {
        ev(t, "nemesis", EventType::Info, op::FAULT_STOP)
            .fault(fault)
            .targets(targets.iter().copied())
    }

    fn leader(t_ms: u64, node: u64, term: u64) -> HealthSample {
        HealthSample {
            t_ms,
            node,
            role: Some("leader".into()),
            term: Some(term),
            leader: Some(format!("m{node}:5050")),
        }
    }

    fn offer(t: u64, term: u64) -> Event {
        ev(t, "fw-a", EventType::Info, op::OFFER)
            .offer(format!("o{t}"))
            .agent("a1")
            .term(term)
    }

    fn update(t: u64, task: &str, state: &str) -> Event {
        ev(t, "fw-a", EventType::Info, op::UPDATE)
            .task(task)
            .state(state.parse().expect("a task state name"))
    }

    fn launch(t: u64, task: &str) -> Event {
        ev(t, "fw-a", EventType::Invoke, op::LAUNCH).task(task)
    }

    // -- failovers and percentiles ------------------------------------------------------

    #[test]
    fn failover_measures_election_and_first_offer() {
        let history = vec![
            offer(500, 2),
            fault_start(1000, "kill-leader", &["m1"]).term(2),
            offer(1200, 2), // old term: does not count
            offer(2600, 3),
            fault_start(5000, "pause", &["m2"]),
        ];
        let health = vec![leader(0, 1, 2), leader(1100, 1, 2), leader(2400, 2, 3)];
        let f = failovers(&history, &health);
        assert_eq!(
            f,
            vec![Failover {
                fault: "kill-leader".into(),
                killed_at_ms: 1000,
                old_term: 2,
                elected_after_ms: Some(1400),
                first_offer_after_ms: Some(1600),
            }]
        );
    }

    #[test]
    fn a_partitioned_leader_is_a_failover_too() {
        let history = vec![
            fault_start(1000, "partition-leader", &["m1"]),
            offer(1100, 2), // the old leader before its lease ran out
            offer(2300, 3),
        ];
        let health = vec![leader(900, 1, 2), leader(2000, 2, 3)];
        let f = failovers(&history, &health);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].fault, "partition-leader");
        assert_eq!(f[0].old_term, 2);
        assert_eq!(f[0].elected_after_ms, Some(1000));
        assert_eq!(f[0].first_offer_after_ms, Some(1300));
        let md = failover_table(&f);
        assert!(
            md.contains(
                "| partition-leader: first offer in a later term (task flow resumes) | 1 | 1300 |"
            ),
            "{md}"
        );
        assert!(!md.contains("kill-leader: new"), "{md}");
    }

    #[test]
    fn failover_without_term_uses_the_last_seen_term_and_may_never_recover() {
        let history = vec![fault_start(1000, "kill-leader", &["m1"])];
        let health = vec![leader(900, 1, 4), leader(3000, 1, 4)];
        let f = failovers(&history, &health);
        assert_eq!(f[0].old_term, 4);
        assert_eq!(f[0].elected_after_ms, None);
        assert_eq!(f[0].first_offer_after_ms, None);
        assert!(failovers(&[], &health).is_empty());
    }

    #[test]
    fn percentile_nearest_rank() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[7], 0.0), Some(7));
        let hundred: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&hundred, 50.0), Some(50));
        assert_eq!(percentile(&hundred, 99.0), Some(99));
        assert_eq!(percentile(&hundred, 100.0), Some(100));
        assert_eq!(percentile(&hundred, 0.0), Some(1));
        assert_eq!(percentile(&hundred, 250.0), Some(100));
        assert_eq!(percentile(&hundred, f64::NAN), None);
        assert_eq!(percentile(&[10, 20, 30], 50.0), Some(20));
    }

    // -- stats --------------------------------------------------------------------------

    #[test]
    fn stats_count_the_history() {
        let history = vec![
            ev(0, "fw-a", EventType::Ok, op::SUBSCRIBE).framework("f1"),
            launch(1, "t1"),
            launch(2, "t2"),
            launch(3, "t3"),
            launch(4, "t4"),
            ev(5, "fw-a", EventType::Ok, op::LAUNCH).task("t1"),
            ev(5, "fw-a", EventType::Fail, op::LAUNCH).task("t2"),
            ev(5, "fw-a", EventType::Info, op::LAUNCH).task("t3"),
            offer(6, 1),
            update(7, "t1", "TASK_FINISHED"),
            update(8, "t1", "TASK_FINISHED").reconcile(true),
            update(9, "t3", "TASK_LOST"),
            update(9, "t1", "TASK_LOST").reconcile(true),
            update(9, "t4", "TASK_KILLED"),
            fault_start(10, "pause", &["m1"]),
            fault_start(11, "pause", &["m2"]),
            fault_start(12, "kill-leader", &["m3"]),
            ev(13, "reg-0", EventType::Invoke, op::REG_WRITE),
            ev(14, "reg-0", EventType::Ok, op::REG_WRITE),
            ev(15, "reg-0", EventType::Info, op::REG_WRITE),
            ev(16, "reg-0", EventType::Ok, op::REG_READ),
            ev(17, "reg-0", EventType::Ok, op::REG_READ),
            ev(18, "reg-0", EventType::Fail, op::REG_READ),
        ];
        let s = stats(&history);
        assert_eq!(
            (
                s.register_writes_ok,
                s.register_writes_unknown,
                s.register_writes_failed,
                s.register_reads_ok,
                s.register_reads_failed
            ),
            (1, 1, 0, 2, 1)
        );
        assert_eq!(
            (
                s.launches_invoked,
                s.launches_ok,
                s.launches_failed,
                s.launches_unknown
            ),
            (4, 1, 1, 1)
        );
        assert_eq!((s.updates, s.reconcile_updates), (5, 2));
        // t1's launch was acknowledged, t3's outcome unknown.
        assert_eq!(
            (
                s.tasks_finished,
                s.tasks_failed,
                s.tasks_lost,
                s.tasks_lost_never_launched,
                s.tasks_other_terminal
            ),
            (1, 0, 1, 1, 1)
        );
        assert_eq!((s.offers, s.subscribes_ok), (1, 1));
        assert_eq!(s.faults.get("pause"), Some(&2));
        assert_eq!(s.faults.get("kill-leader"), Some(&1));
        assert_eq!(stats(&[]), Stats::default());
    }

    // -- markdown -----------------------------------------------------------------------

    fn verdict(name: &str, passed: bool, offending: &[&str]) -> Verdict {
        Verdict {
            name: name.into(),
            passed,
            summary: format!("{name} summary | with pipe"),
            offending: offending.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn markdown_lists_verdicts_stats_failovers_and_failures() {
        let verdicts = vec![
            verdict("no_overcommit", true, &[]),
            verdict(
                "at_most_once",
                false,
                &["t=1.000s task t1 executed 2 times"],
            ),
        ];
        let mut stats = Stats {
            launches_invoked: 12,
            ..Stats::default()
        };
        stats.faults.insert("pause".into(), 3);
        let failovers: Vec<Failover> = (1..=4)
            .map(|i| Failover {
                fault: "kill-leader".into(),
                killed_at_ms: i * 1000,
                old_term: i,
                elected_after_ms: (i < 4).then_some(i * 100),
                first_offer_after_ms: Some(i * 1000),
            })
            .collect();
        let md = summary_markdown("Run\n42", &verdicts, &stats, &failovers);
        assert!(md.starts_with("# Run 42\n"), "{md}");
        assert!(md.contains("| no_overcommit | PASS | no_overcommit summary \\| with pipe |"));
        assert!(md.contains("| at_most_once | **FAIL** |"));
        assert!(md.contains("| launches invoked | 12 |"));
        assert!(md.contains("| faults: pause | 3 |"));
        assert!(
            md.contains("| kill-leader: new leader elected | 3 | 200 | 300 | 300 | 1 |"),
            "{md}"
        );
        assert!(md.contains(
            "| kill-leader: first offer in a later term (task flow resumes) | 4 | 2000 | 4000 | 4000 | 0 |"
        ));
        assert!(md.contains("### at_most_once\n"));
        assert!(md.contains("- t=1.000s task t1 executed 2 times\n"));
        assert!(!md.contains("### no_overcommit"));
    }

    #[test]
    fn markdown_for_a_clean_run_without_failovers() {
        let md = summary_markdown(
            "ok",
            &[verdict("recovery", true, &[])],
            &Stats::default(),
            &[],
        );
        assert!(md.contains("No kill-leader or partition-leader faults."));
        assert!(md.contains("All checkers passed."));
    }

    // -- fault windows ------------------------------------------------------------------

    #[test]
    fn fault_windows_pair_starts_and_stops() {
        let history = vec![
            fault_start(1000, "pause", &["m1"]),
            fault_start(2000, "partition-halves", &["m1", "m2"]),
            fault_stop(2500, "pause", &["m2"]), // different targets: no match
            fault_stop(3000, "partition-halves", &["m2", "m1"]),
            fault_stop(3500, "pause", &["m1"]),
            fault_stop(4000, "agent-kill", &["a1"]), // no start: ignored
            fault_start(5000, "kill-leader", &["m3"]), // unmatched: runs to the end
        ];
        let w = fault_windows(&history, 9000);
        let spans: Vec<_> = w
            .iter()
            .map(|w| (w.fault.as_str(), w.start_ms, w.end_ms))
            .collect();
        assert_eq!(
            spans,
            [
                ("pause", 1000, 3500),
                ("partition-halves", 2000, 3000),
                ("kill-leader", 5000, 9000)
            ]
        );
    }

    #[test]
    fn final_heal_ends_open_windows() {
        let history = vec![
            fault_start(1000, "pause", &["m1"]),
            ev(4000, "nemesis", EventType::Info, op::FINAL_HEAL),
        ];
        let w = fault_windows(&history, 9000);
        assert_eq!((w[0].start_ms, w[0].end_ms), (1000, 4000));
    }

    // -- SVG ----------------------------------------------------------------------------

    /// Checks that every tag is closed in order and every `&` starts an entity; returns
    /// the number of elements.
    fn assert_balanced(svg: &str) -> usize {
        let mut stack: Vec<String> = Vec::new();
        let mut elements = 0;
        let mut rest = svg;
        while let Some(open) = rest.find('<') {
            let text = &rest[..open];
            assert_entities(text);
            let close = rest[open..].find('>').expect("unclosed tag") + open;
            let tag = &rest[open + 1..close];
            assert!(!tag.contains('<'), "'<' inside a tag: {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(
                    stack.pop().as_deref(),
                    Some(name.trim()),
                    "mismatched </{name}>"
                );
            } else {
                elements += 1;
                assert_entities(tag);
                let name: String = tag
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '/')
                    .collect();
                if !tag.ends_with('/') {
                    stack.push(name);
                }
            }
            rest = &rest[close + 1..];
        }
        assert!(
            rest.trim().is_empty() && stack.is_empty(),
            "unclosed: {stack:?}"
        );
        elements
    }

    fn assert_entities(text: &str) {
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| entity.starts_with(e)),
                "bare & in {text}"
            );
        }
    }

    #[test]
    fn svg_has_one_rect_per_fault_window_and_is_balanced() {
        let history = vec![
            launch(100, "t1"),
            update(150, "t1", "TASK_RUNNING"),
            update(900, "t1", "TASK_FINISHED"),
            update(950, "t1", "TASK_FINISHED"), // redelivery: counted once
            launch(2000, "t2"),
            update(4500, "t2", "TASK_RUNNING"),
            fault_start(1000, "partition-halves", &["m1", "m2"]),
            fault_stop(3000, "partition-halves", &["m1", "m2"]),
            fault_start(2000, "pause", &["m3"]),
            fault_start(4000, "weird<&\"'>", &["x"]), // unmatched, odd name
        ];
        let svg = plot_svg(&history, 6000);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(assert_balanced(&svg) > 10);
        assert_eq!(svg.matches("class=\"fault\"").count(), 3);
        assert_eq!(svg.matches("class=\"legend-swatch\"").count(), 3);
        assert!(svg.contains("weird&lt;&amp;&quot;&apos;&gt;"));
        assert_eq!(
            svg.matches("<circle").count(),
            2,
            "one latency dot per running task"
        );
        assert!(svg.contains("time (s)"));
    }

    #[test]
    fn svg_of_an_empty_history_is_still_a_plot() {
        let svg = plot_svg(&[], 0);
        assert!(svg.starts_with("<svg"));
        assert_balanced(&svg);
        assert_eq!(svg.matches("class=\"fault\"").count(), 0);
        assert!(svg.contains(">none</text>"));
    }

    #[test]
    fn finished_per_second_buckets_first_in_order_finish() {
        let history = vec![
            update(100, "a", "TASK_FINISHED"),
            update(900, "b", "TASK_FINISHED"),
            update(1100, "a", "TASK_FINISHED"),
            update(1200, "c", "TASK_FINISHED").reconcile(true),
            update(2999, "d", "TASK_FINISHED"),
            update(2999, "e", "TASK_RUNNING"),
        ];
        assert_eq!(finished_per_second(&history, 3000), [2, 0, 1]);
        assert_eq!(finished_per_second(&[], 0), [0]);
    }

    #[test]
    fn launch_latency_is_to_the_first_running_update() {
        let history = vec![
            update(50, "t1", "TASK_RUNNING"), // before its launch: ignored
            launch(100, "t1"),
            update(400, "t1", "TASK_RUNNING"),
            update(900, "t1", "TASK_RUNNING"),
            launch(200, "t2"),
        ];
        assert_eq!(launch_latencies(&history), [(100, 300)]);
    }

    #[test]
    fn nice_steps_are_round() {
        assert_eq!(nice_step(100.0, 10.0), 10.0);
        assert_eq!(nice_step(7.0, 4.0), 2.0);
        assert_eq!(nice_step(1.0, 4.0), 1.0);
        assert_eq!(nice_step(600.0, 10.0), 100.0);
        assert_eq!(nice_step(0.0, 10.0), 1.0);
    }
}
