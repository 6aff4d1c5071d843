//! The fault-injection run's record: the [`Event`] history (one JSON object per line of
//! `history.jsonl`), the [`HealthSample`] and [`StateSample`] series the harness polls
//! from the masters, and the JSONL helpers that write and read them.
//!
//! What it owns: the data model every other part of the harness agrees on (field names,
//! operation names in [`op`]; task states are the domain [`TaskState`], named in the JSON
//! by its serde, e.g. `"TASK_RUNNING"`) and the file format (one JSON value per line,
//! `\n`-terminated, flushed line by line).
//!
//! What it must not do: judge a run (that is `checker`), present it (that is `report`), or
//! talk to a cluster. Its only I/O is the JSONL file helpers below, and its only clock read
//! is [`Recorder::now_ms`] (through [`crate::clock`]); everything else takes times as
//! arguments.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use agora_driver::TaskState;
use agora_test_cluster::overcommit::StateUsage;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One agent's scalar resources in a [`StateSample`], by resource name: the over-commit
/// check's own reduction of `/state`.
pub use agora_test_cluster::overcommit::AgentUsage as AgentSample;

/// Why a history file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file could not be opened, read, written or flushed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A complete line (not the truncated last one) is not valid JSON for the expected type.
    #[error("{path}:{line}: malformed JSON line: {source}")]
    MalformedLine {
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be turned into JSON.
    #[error("{path}: cannot serialize a line: {source}")]
    Serialize {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl HistoryError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        HistoryError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The operation names (`Event::f`) the harness records.
pub mod op {
    /// A framework client subscribes: invoke, then ok (`framework` = its id) or fail.
    pub const SUBSCRIBE: &str = "subscribe";
    /// A framework client launches a task on an offer: invoke, then ok, fail or info.
    pub const LAUNCH: &str = "launch";
    /// A status update reached a framework client (type info).
    pub const UPDATE: &str = "update";
    /// An offer reached a framework client (type info).
    pub const OFFER: &str = "offer";
    /// The harness saw an agent's registration acknowledged (type ok).
    pub const REGISTER_AGENT: &str = "register-agent";
    /// The nemesis started a fault (type info).
    pub const FAULT_START: &str = "fault-start";
    /// The nemesis stopped a fault (type info).
    pub const FAULT_STOP: &str = "fault-stop";
    /// The nemesis healed every fault for good (type info).
    pub const FINAL_HEAL: &str = "final-heal";
    /// A register client writes a value (`value`: a [`super::RegisterOp`]): invoke, then
    /// ok, fail (definitely not written) or info (may be written, now or later).
    pub const REG_WRITE: &str = "reg-write";
    /// A register client reads a value: invoke, then ok (`value` holds what it read),
    /// fail or info.
    pub const REG_READ: &str = "reg-read";
}

/// The `value` of a [`op::REG_WRITE`] or [`op::REG_READ`] event: which register, the
/// value written or read (`None` on a read's invocation, and when the register had no
/// value yet), and the master the request went to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterOp {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
}

/// What an [`Event`] says about its operation, as in Jepsen histories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The operation was started.
    Invoke,
    /// The operation definitely took effect.
    Ok,
    /// The operation definitely did not take effect.
    Fail,
    /// Either an observation (update, offer, fault) or an operation whose outcome is unknown.
    Info,
}

/// One line of `history.jsonl`. `t_ms` is milliseconds since the run started. Optional
/// fields are omitted from the JSON when `None`, `false` or empty, and default when absent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub t_ms: u64,
    /// Who recorded it: `fw-a`, `fw-b`, ... (framework clients), `nemesis`, `harness`.
    pub process: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The operation, one of [`op`].
    pub f: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The task's state (in the JSON its name, e.g. `"TASK_RUNNING"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TaskState>,
    /// The update answered a reconciliation (it is not an in-order status update).
    #[serde(default, skip_serializing_if = "is_false")]
    pub reconcile: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    /// The leader term an offer was made in, or the killed leader's term for `kill-leader`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    /// The fault kind, e.g. `kill-leader`, `partition-halves`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// The node names a fault hit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Event {
    /// An event with only the mandatory fields; add the others with the setters.
    pub fn new(
        t_ms: u64,
        process: impl Into<String>,
        kind: EventType,
        f: impl Into<String>,
    ) -> Self {
        Event {
            t_ms,
            process: process.into(),
            kind,
            f: f.into(),
            task: None,
            framework: None,
            agent: None,
            state: None,
            reconcile: false,
            offer: None,
            term: None,
            fault: None,
            targets: Vec::new(),
            error: None,
            value: None,
        }
    }

    /// Whether this is operation `f` with type `kind`.
    pub fn is(&self, kind: EventType, f: &str) -> bool {
        self.kind == kind && self.f == f
    }

    /// Sets the task id.
    pub fn task(mut self, task: impl Into<String>) -> Self {
        self.task = Some(task.into());
        self
    }

    /// Sets the framework id.
    pub fn framework(mut self, framework: impl Into<String>) -> Self {
        self.framework = Some(framework.into());
        self
    }

    /// Sets the agent id.
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// Sets the task state.
    pub fn state(mut self, state: TaskState) -> Self {
        self.state = Some(state);
        self
    }

    /// Marks the update as an answer to a reconciliation, or not.
    pub fn reconcile(mut self, reconcile: bool) -> Self {
        self.reconcile = reconcile;
        self
    }

    /// Sets the offer id.
    pub fn offer(mut self, offer: impl Into<String>) -> Self {
        self.offer = Some(offer.into());
        self
    }

    /// Sets the leader term.
    pub fn term(mut self, term: u64) -> Self {
        self.term = Some(term);
        self
    }

    /// Sets the fault kind.
    pub fn fault(mut self, fault: impl Into<String>) -> Self {
        self.fault = Some(fault.into());
        self
    }

    /// Sets the fault's target node names.
    pub fn targets<I, S>(mut self, targets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.targets = targets.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the error message.
    pub fn error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    /// Sets a free-form value.
    pub fn value(mut self, value: serde_json::Value) -> Self {
        self.value = Some(value);
        self
    }

    /// Sets the value to a register operation.
    pub fn register(self, reg: &RegisterOp) -> Self {
        self.value(serde_json::to_value(reg).unwrap_or(serde_json::Value::Null))
    }

    /// The register operation in `value`, if it holds one.
    pub fn register_op(&self) -> Option<RegisterOp> {
        serde_json::from_value(self.value.clone()?).ok()
    }
}

/// One replica's `/health` answer, as polled by the harness.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthSample {
    pub t_ms: u64,
    /// The master's node id.
    pub node: u64,
    /// `leader`, `follower`, `candidate`, `learner`; `None`: the node did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    /// The leader address the node believes in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

/// The leader's `/state`, reduced to what the overcommit check needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateSample {
    pub t_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    #[serde(default)]
    pub agents: Vec<AgentSample>,
}

impl StateSample {
    /// Reduces a master's `/state` JSON taken at `t_ms` (with the over-commit check's own
    /// reduction, [`StateUsage::from_state`]). `None` when `state` has no `agents` array
    /// (e.g. an error body). Agents without an id are skipped; a task without a state
    /// counts as non-terminal.
    pub fn from_state(t_ms: u64, state: &serde_json::Value) -> Option<StateSample> {
        let usage = StateUsage::from_state(state)?;
        Some(StateSample {
            t_ms,
            leader: state
                .get("leader")
                .and_then(|l| l.as_str())
                .map(String::from),
            term: state.get("term").and_then(|t| t.as_u64()),
            agents: usage.agents,
        })
    }
}

/// An append-only, thread-safe writer of [`Event`]s to one JSONL file, flushed after each
/// line so a killed process loses at most the line it was writing.
pub struct Recorder {
    path: PathBuf,
    process: String,
    start_unix_ms: u64,
    out: Mutex<BufWriter<File>>,
}

impl Recorder {
    /// Opens `path` for appending (creating it), for events of `process`, with times
    /// counted from `start_unix_ms` (wall clock, ms since the Unix epoch). If the file ends
    /// in a partial line left by a killed predecessor, that line is cut off first, so the
    /// new lines start on a line of their own.
    pub fn create(
        path: impl AsRef<Path>,
        process: impl Into<String>,
        start_unix_ms: u64,
    ) -> Result<Recorder, HistoryError> {
        let path = path.as_ref().to_path_buf();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| HistoryError::io(&path, e))?;
        cut_partial_last_line(&mut file).map_err(|e| HistoryError::io(&path, e))?;
        Ok(Recorder {
            path,
            process: process.into(),
            start_unix_ms,
            out: Mutex::new(BufWriter::new(file)),
        })
    }

    /// The process name this recorder writes for.
    pub fn process(&self) -> &str {
        &self.process
    }

    /// Milliseconds since the run started, by the wall clock. This is the one clock read
    /// of the history, checker and report modules: the wall clock (not a monotonic one)
    /// because every process of the run must count from the same `start_unix_ms`.
    /// Saturates at 0 if the clock is before the start.
    pub fn now_ms(&self) -> u64 {
        crate::clock::unix_ms().saturating_sub(self.start_unix_ms)
    }

    /// A new event of this recorder's process, stamped [`Recorder::now_ms`].
    pub fn event(&self, kind: EventType, f: &str) -> Event {
        self.event_at(self.now_ms(), kind, f)
    }

    /// A new event of this recorder's process at the given time.
    pub fn event_at(&self, t_ms: u64, kind: EventType, f: &str) -> Event {
        Event::new(t_ms, self.process.clone(), kind, f)
    }

    /// Appends `event` as one line and flushes it.
    pub fn record(&self, event: &Event) -> Result<(), HistoryError> {
        let mut line = serde_json::to_vec(event).map_err(|source| HistoryError::Serialize {
            path: self.path.clone(),
            source,
        })?;
        line.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.write_all(&line)
            .and_then(|()| out.flush())
            .map_err(|e| HistoryError::io(&self.path, e))
    }
}

/// Truncates `file` after its last `\n` (to empty if it has none).
fn cut_partial_last_line(file: &mut File) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    if bytes.last().is_none_or(|&b| b == b'\n') {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    file.set_len(keep as u64)
}

/// Writes `items` to `path` (replacing it), one JSON value per `\n`-terminated line.
pub fn write_jsonl<T: Serialize>(path: impl AsRef<Path>, items: &[T]) -> Result<(), HistoryError> {
    let path = path.as_ref();
    let file = File::create(path).map_err(|e| HistoryError::io(path, e))?;
    let mut out = BufWriter::new(file);
    for item in items {
        serde_json::to_writer(&mut out, item).map_err(|source| HistoryError::Serialize {
            path: path.to_path_buf(),
            source,
        })?;
        out.write_all(b"\n")
            .map_err(|e| HistoryError::io(path, e))?;
    }
    out.flush().map_err(|e| HistoryError::io(path, e))
}

/// Reads a JSONL file written by [`write_jsonl`] or a [`Recorder`]. Blank lines are
/// skipped. A last line without its `\n` that does not parse is the line a killed writer
/// was cut off in: it is skipped. Any other malformed line is an error naming the line.
pub fn read_jsonl<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<Vec<T>, HistoryError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| HistoryError::io(path, e))?;
    parse_jsonl(&text).map_err(|(line, source)| HistoryError::MalformedLine {
        path: path.to_path_buf(),
        line,
        source,
    })
}

/// [`read_jsonl`] on text; the error is the 1-based line number and the parse error.
fn parse_jsonl<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, (usize, serde_json::Error)> {
    let unterminated_last = if text.ends_with('\n') {
        None
    } else {
        Some(text.lines().count())
    };
    let mut items = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(item) => items.push(item),
            Err(_) if unterminated_last == Some(index + 1) => {}
            Err(e) => return Err((index + 1, e)),
        }
    }
    Ok(items)
}

/// Merges per-process histories into one, sorted by `t_ms`; events with equal times keep
/// their order (histories in the given order, each in its own order).
pub fn merge(histories: Vec<Vec<Event>>) -> Vec<Event> {
    let mut all: Vec<Event> = histories.into_iter().flatten().collect();
    all.sort_by_key(|e| e.t_ms);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn launch(t_ms: u64, task: &str) -> Event {
        Event::new(t_ms, "fw-a", EventType::Invoke, op::LAUNCH)
            .task(task)
            .framework("f1")
            .agent("a1")
            .offer("o1")
    }

    #[test]
    fn event_json_omits_empty_optionals_and_renames_type() {
        let e = Event::new(5, "fw-a", EventType::Invoke, op::SUBSCRIBE);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            json!({"t_ms": 5, "process": "fw-a", "type": "invoke", "f": "subscribe"})
        );
    }

    #[test]
    fn event_json_round_trips_every_field() {
        let e = Event::new(7, "nemesis", EventType::Info, op::FAULT_START)
            .task("t1")
            .framework("f1")
            .agent("a1")
            .state(TaskState::TaskRunning)
            .reconcile(true)
            .offer("o1")
            .term(3)
            .fault("kill-leader")
            .targets(["m1", "m2"])
            .error("boom")
            .value(json!({"x": 1}));
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.contains("\"reconcile\":true"));
        assert!(line.contains("\"type\":\"info\""));
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn register_ops_round_trip_through_the_value() {
        let reg = RegisterOp {
            key: "reg-1".into(),
            value: Some(17),
            master: Some("10.0.0.1:5050".into()),
        };
        let e = Event::new(3, "reg-0", EventType::Ok, op::REG_WRITE).register(&reg);
        let line = serde_json::to_string(&e).unwrap();
        assert!(
            line.contains(r#""value":{"key":"reg-1","master":"10.0.0.1:5050","value":17}"#),
            "{line}"
        );
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back.register_op(), Some(reg));
        let read = RegisterOp {
            key: "reg-2".into(),
            value: None,
            master: None,
        };
        let e = Event::new(3, "reg-0", EventType::Ok, op::REG_READ).register(&read);
        assert_eq!(e.value, Some(json!({"key": "reg-2"})));
        assert_eq!(e.register_op(), Some(read));
        assert_eq!(
            Event::new(1, "x", EventType::Ok, op::LAUNCH).register_op(),
            None
        );
    }

    #[test]
    fn event_parses_minimal_line_with_defaults() {
        let e: Event = serde_json::from_str(
            r#"{"t_ms":1,"process":"harness","type":"ok","f":"register-agent"}"#,
        )
        .unwrap();
        assert!(e.is(EventType::Ok, op::REGISTER_AGENT));
        assert!(!e.reconcile);
        assert!(e.targets.is_empty());
    }

    #[test]
    fn unknown_event_type_is_rejected() {
        let r: Result<Event, _> =
            serde_json::from_str(r#"{"t_ms":1,"process":"x","type":"maybe","f":"launch"}"#);
        assert!(r.is_err());
    }

    #[test]
    fn event_state_is_the_state_name_in_json() {
        let e = launch(1, "t1").state(TaskState::TaskGoneByOperator);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["state"], "TASK_GONE_BY_OPERATOR");
        let r: Result<Event, _> = serde_json::from_str(
            r#"{"t_ms":1,"process":"x","type":"info","f":"update","state":"TASK_NAPPING"}"#,
        );
        assert!(r.is_err(), "not a task state");
    }

    fn sample_state() -> serde_json::Value {
        json!({
            "leader": "10.0.0.1:5050",
            "term": 4,
            "agents": [
                {"id": "a1", "active": true,
                 "resources": {"cpus": 4.0, "mem": 8192.0, "ports": "[31000-32000]"},
                 "used": {"cpus": 1.0}, "offered": {"cpus": 1.5, "mem": 100.0}},
                {"id": "a2", "active": false, "resources": {"cpus": 2.0}, "offered": {}},
                {"active": true, "resources": {"cpus": 9.0}}
            ],
            "frameworks": [],
            "tasks": [
                {"id": "t1", "agent_id": "a1", "state": "TASK_RUNNING", "resources": {"cpus": 0.5, "mem": 32.0}},
                {"id": "t2", "agent_id": "a1", "state": "TASK_STAGING", "resources": {"cpus": 0.25}},
                {"id": "t3", "agent_id": "a1", "state": "TASK_FINISHED", "resources": {"cpus": 3.0}},
                {"id": "t4", "agent_id": "a1", "state": "TASK_UNREACHABLE", "resources": {"mem": 1.0}},
                {"id": "t5", "agent_id": "a2", "state": "TASK_KILLED", "resources": {"cpus": 2.0}}
            ]
        })
    }

    #[test]
    fn from_state_sums_non_terminal_tasks_per_agent() {
        let s = StateSample::from_state(42, &sample_state()).unwrap();
        assert_eq!(s.t_ms, 42);
        assert_eq!(s.leader.as_deref(), Some("10.0.0.1:5050"));
        assert_eq!(s.term, Some(4));
        assert_eq!(s.agents.len(), 2, "the agent without an id is skipped");
        let a1 = &s.agents[0];
        assert_eq!(a1.id, "a1");
        assert_eq!(a1.total.get("cpus"), Some(&4.0));
        assert!(
            !a1.total.contains_key("ports"),
            "port ranges are not scalars"
        );
        assert_eq!(a1.tasks.get("cpus"), Some(&0.75));
        assert_eq!(a1.tasks.get("mem"), Some(&33.0));
        assert_eq!(a1.offered.get("cpus"), Some(&1.5));
        let a2 = &s.agents[1];
        assert!(a2.tasks.is_empty(), "terminal tasks do not count");
        assert!(a2.offered.is_empty());
    }

    #[test]
    fn from_state_rejects_bodies_without_agents() {
        assert_eq!(
            StateSample::from_state(0, &json!({"error": "no leader"})),
            None
        );
        assert_eq!(StateSample::from_state(0, &json!(null)), None);
        let empty = StateSample::from_state(0, &json!({"agents": []})).unwrap();
        assert!(empty.agents.is_empty() && empty.leader.is_none() && empty.term.is_none());
    }

    #[test]
    fn jsonl_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let events = vec![launch(1, "t1"), launch(2, "t2")];
        write_jsonl(&path, &events).unwrap();
        let back: Vec<Event> = read_jsonl(&path).unwrap();
        assert_eq!(back, events);
        let empty: Vec<Event> = Vec::new();
        write_jsonl(&path, &empty).unwrap();
        assert!(read_jsonl::<Event>(&path).unwrap().is_empty());
    }

    #[test]
    fn truncated_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let good = serde_json::to_string(&launch(1, "t1")).unwrap();
        std::fs::write(&path, format!("{good}\n\n{}", &good[..good.len() / 2])).unwrap();
        let back: Vec<Event> = read_jsonl(&path).unwrap();
        assert_eq!(back, vec![launch(1, "t1")]);
    }

    #[test]
    fn complete_unterminated_last_line_is_kept() {
        let text = format!("{}\n{}", json!({"a": 1}), json!({"a": 2}));
        let back: Vec<serde_json::Value> = parse_jsonl(&text).unwrap();
        assert_eq!(back.len(), 2);
    }

    #[test]
    fn malformed_middle_line_names_path_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let good = serde_json::to_string(&launch(1, "t1")).unwrap();
        std::fs::write(&path, format!("{good}\n{{not json\n{good}\n")).unwrap();
        let err = read_jsonl::<Event>(&path).unwrap_err();
        assert!(
            matches!(err, HistoryError::MalformedLine { line: 2, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("h.jsonl:2"), "{msg}");
    }

    #[test]
    fn malformed_terminated_last_line_is_an_error() {
        let r = parse_jsonl::<serde_json::Value>("{\"a\":1}\n{\"a\":\n");
        assert_eq!(r.map_err(|(line, _)| line).unwrap_err(), 2);
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_jsonl::<Event>(dir.path().join("nope.jsonl")).unwrap_err();
        assert!(matches!(err, HistoryError::Io { .. }));
        assert!(err.to_string().contains("nope.jsonl"));
    }

    #[test]
    fn recorder_appends_flushed_lines_from_threads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fw-a.jsonl");
        let rec = std::sync::Arc::new(Recorder::create(&path, "fw-a", 0).unwrap());
        let threads: Vec<_> = (0..4u64)
            .map(|i| {
                let rec = rec.clone();
                std::thread::spawn(move || {
                    for j in 0..10u64 {
                        let e = rec.event_at(i * 100 + j, EventType::Info, op::UPDATE);
                        rec.record(&e).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Flushed per line: readable while the recorder is still open.
        let back: Vec<Event> = read_jsonl(&path).unwrap();
        assert_eq!(back.len(), 40);
        assert!(back.iter().all(|e| e.process == "fw-a"));
    }

    #[test]
    fn recorder_reopen_appends_and_cuts_a_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fw-a.jsonl");
        let good = serde_json::to_string(&launch(1, "t1")).unwrap();
        std::fs::write(&path, format!("{good}\n{{\"t_ms\":2,\"pro")).unwrap();
        let rec = Recorder::create(&path, "fw-a", 0).unwrap();
        rec.record(&launch(3, "t3")).unwrap();
        let back: Vec<Event> = read_jsonl(&path).unwrap();
        assert_eq!(back, vec![launch(1, "t1"), launch(3, "t3")]);
    }

    #[test]
    fn recorder_now_counts_from_start() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::create(dir.path().join("x.jsonl"), "harness", 0).unwrap();
        assert!(rec.now_ms() > 1_600_000_000_000, "ms since the epoch");
        let future = Recorder::create(dir.path().join("y.jsonl"), "harness", u64::MAX).unwrap();
        assert_eq!(future.now_ms(), 0, "saturates");
        let e = rec.event(EventType::Invoke, op::LAUNCH);
        assert_eq!(e.process, "harness");
        assert_eq!(rec.process(), "harness");
    }

    #[test]
    fn merge_is_stable_by_time() {
        let a = vec![launch(1, "a1"), launch(5, "a5"), launch(5, "a5b")];
        let b = vec![launch(0, "b0"), launch(5, "b5")];
        let merged = merge(vec![a, b]);
        let tasks: Vec<_> = merged.iter().map(|e| e.task.clone().unwrap()).collect();
        assert_eq!(tasks, ["b0", "a1", "a5", "a5b", "b5"]);
        assert!(merge(Vec::new()).is_empty());
    }

    #[test]
    fn samples_round_trip() {
        let h = HealthSample {
            t_ms: 1,
            node: 2,
            role: None,
            term: None,
            leader: None,
        };
        let line = serde_json::to_string(&h).unwrap();
        assert_eq!(line, r#"{"t_ms":1,"node":2}"#);
        assert_eq!(serde_json::from_str::<HealthSample>(&line).unwrap(), h);
        let s = StateSample::from_state(9, &sample_state()).unwrap();
        let back: StateSample = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
