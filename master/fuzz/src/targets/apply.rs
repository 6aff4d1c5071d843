//! Target `apply`: sequences of registry commands applied to a `Registry`.
//!
//! [`Bytes`] builds each command from a few bytes over small id spaces (3 agents,
//! 3 frameworks, 8 offer ids, 6 task ids), and often from the registry's current state (an
//! offer of what an agent has free for the framework's role, a launch on an outstanding
//! offer split between tasks, an update of a task that exists), so sequences get deep. After
//! each command: `check_invariants()` holds, a rejected command left the registry equal to
//! a clone taken before, an applied one did what its documentation says (offers consumed,
//! terminal states final, reservations only for their role, ...), and a second replica
//! reached the same result. At the end the whole sequence as one batch and a JSON snapshot
//! round trip give the same registry.
//!
//! Layout of one command (bytes, in order): `op`, then per op: see [`Gen::command`].

use std::sync::OnceLock;

use agora_registry::resources::Ranges;
use agora_registry::{
    AgentId, AgentInfo, AgentStatus, Command, CommandBatch, CommandResult, FrameworkId,
    FrameworkInfo, FrameworkStatus, Offer, OfferId, Registry, Resource, Resources, Retention,
    Scalar, TaskId, TaskSpec, TaskState, Value,
};

use crate::engine::{mix, Features};
use crate::input::Bytes;

const AGENTS: [&str; 3] = ["a0", "a1", "a2"];
const FRAMEWORKS: [&str; 3] = ["f0", "f1", "f2"];
const OFFERS: [&str; 8] = ["o0", "o1", "o2", "o3", "o4", "o5", "o6", "o7"];
const TASKS: [&str; 6] = ["t0", "t1", "t2", "t3", "t4", "t5"];
/// Framework roles: mostly valid, some refused.
const ROLES: [&str; 8] = ["*", "web", "db", "eng/web", "web", "*", "", "-bad"];
const PRINCIPALS: [Option<&str>; 4] = [None, Some("p0"), Some("p1"), None];
const AGENT_RESOURCES: [&str; 6] = [
    "cpus:4;mem:1024;ports:[31000-31009]",
    "cpus:2;cpus(web):2;mem:512",
    "cpus:1;mem:64",
    "cpus:8;mem:4096;disk:100;ports:[1-5,7-9]",
    "cpus(db):1;mem(db):32;cpus:1",
    "cpus:0.5;ports:[0-0,18446744073709551615-18446744073709551615]",
];
const TASK_RESOURCES: [&str; 8] = [
    "cpus:1",
    "cpus:0.5;mem:32",
    "mem:128",
    "cpus(web):1",
    "ports:[31000-31000]",
    "cpus:0.001",
    "disk:1",
    "cpus(db):1;mem(db):32",
];
const WEIGHTS: [f64; 10] = [
    1.0,
    0.5,
    2.5,
    0.0,
    -1.0,
    f64::NAN,
    f64::INFINITY,
    f64::MIN_POSITIVE,
    1e308,
    0.001,
];

/// Bounds of finished history to try: tiny ones evict at once, the defaults, and above
/// the limits.
const RETENTION_BOUNDS: [usize; 8] = [0, 1, 2, 3, 50, 1000, 100_001, 1_000_001];

/// `Command::SetRetention` with bounds that may be above the limits.
fn set_retention(tasks: usize, frameworks: usize) -> Command {
    Command::SetRetention {
        retention: Retention {
            max_completed_tasks_per_framework: tasks,
            max_completed_frameworks: frameworks,
        },
    }
}

/// Op codes, the first byte of a command (modulo 13).
pub mod op {
    pub const REGISTER_AGENT: u8 = 0;
    pub const MARK_UNREACHABLE: u8 = 1;
    pub const REMOVE_AGENT: u8 = 2;
    pub const REGISTER_FRAMEWORK: u8 = 3;
    pub const DISCONNECT_FRAMEWORK: u8 = 4;
    pub const REMOVE_FRAMEWORK: u8 = 5;
    pub const ADD_OFFERS: u8 = 6;
    pub const REMOVE_OFFERS: u8 = 7;
    pub const LAUNCH_TASKS: u8 = 8;
    pub const UPDATE_TASK: u8 = 9;
    pub const SET_WEIGHT: u8 = 10;
    pub const TIME: u8 = 11;
    pub const SET_RETENTION: u8 = 12;
    pub const DEACTIVATE_AGENT: u8 = 13;
    pub const REACTIVATE_AGENT: u8 = 14;
    pub const DRAIN_AGENT: u8 = 15;
    pub const MARK_AGENT_GONE: u8 = 16;
}

/// At most this many commands per input.
const MAX_COMMANDS: usize = 64;

fn parsed(
    table: &'static [&'static str],
    cell: &'static OnceLock<Vec<Resources>>,
) -> &'static [Resources] {
    cell.get_or_init(|| {
        table
            .iter()
            .map(|s| Resources::parse(s).expect("table resources parse"))
            .collect()
    })
}

fn agent_resources() -> &'static [Resources] {
    static CELL: OnceLock<Vec<Resources>> = OnceLock::new();
    parsed(&AGENT_RESOURCES, &CELL)
}

fn task_resources() -> &'static [Resources] {
    static CELL: OnceLock<Vec<Resources>> = OnceLock::new();
    parsed(&TASK_RESOURCES, &CELL)
}

fn aid(s: &str) -> AgentId {
    AgentId::new(s).expect("valid id")
}
fn fid(s: &str) -> FrameworkId {
    FrameworkId::new(s).expect("valid id")
}
fn oid(s: &str) -> OfferId {
    OfferId::new(s).expect("valid id")
}
fn tid(s: &str) -> TaskId {
    TaskId::new(s).expect("valid id")
}

/// Builds commands from bytes, looking at the registry for plausible ones.
struct Gen<'a> {
    r: Bytes<'a>,
    now: u64,
}

impl Gen<'_> {
    fn agent(&mut self) -> AgentId {
        aid(self.r.pick_str(&AGENTS))
    }
    fn framework(&mut self) -> FrameworkId {
        fid(self.r.pick_str(&FRAMEWORKS))
    }
    fn offer_id(&mut self) -> OfferId {
        oid(self.r.pick_str(&OFFERS))
    }
    fn task_id(&mut self) -> TaskId {
        tid(self.r.pick_str(&TASKS))
    }

    /// A small resources value straight from bytes: `[n]` then per item
    /// `[name][role][kind][amount]`.
    fn raw_resources(&mut self) -> Resources {
        let n = self.r.below(4);
        let items: Vec<Resource> = (0..n)
            .map(|_| {
                let name = self
                    .r
                    .pick_str(&["cpus", "mem", "ports", "disk"])
                    .to_string();
                let role = self
                    .r
                    .pick(&[None, None, Some("web"), Some("db")])
                    .map(str::to_string);
                let value = if self.r.bool() {
                    let b = 31000 + self.r.below(12) as u64;
                    let e = b + self.r.below(4) as u64;
                    Value::Ranges(Ranges::new([(b, e)]).expect("b <= e"))
                } else {
                    Value::Scalar(Scalar::from_millis(match self.r.below(4) {
                        0 => self.r.u8() as u64 * 250,
                        1 => self.r.u16() as u64,
                        2 => 1,
                        _ => self.r.u8() as u64 * 64_000,
                    }))
                };
                Resource { name, role, value }
            })
            .collect();
        Resources::from(items)
    }

    fn now(&mut self) -> u64 {
        self.now += 1;
        self.now
    }

    /// One command. Layouts (after the op byte):
    /// - register agent: `[agent][address][resources][principal][attributes]`
    /// - mark unreachable, remove agent: `[agent]`
    /// - register framework: `[framework][role][principal][failover][user]`
    /// - disconnect, remove framework: `[framework]`
    /// - add offers: `[count]`, then per offer `[offer][framework][agent][mode]`
    /// - remove offers: `[count]`, then per offer `[selector]`
    /// - launch: `[selector][offer][all]` (selector % 4 != 0: on an outstanding offer) or
    ///   `[selector][count][offer]...`, then `[count]` and per task `[task][mode]`
    /// - update task: `[selector][task]` (an existing task) or `[selector][framework][task]`,
    ///   then `[state][message][exit code]`
    /// - set weight: `[role][weight]`
    /// - time: `[lo][hi]` moves the clock forward (or back when odd)
    /// - set retention: `[tasks][frameworks]`, each an index into the bounds to try
    /// - deactivate, reactivate, mark gone: `[agent]`; drain: `[agent][grace][mark gone]`
    fn command(&mut self, reg: &Registry) -> Command {
        match self.r.u8() % 17 {
            op::DEACTIVATE_AGENT => Command::DeactivateAgent { id: self.agent() },
            op::REACTIVATE_AGENT => Command::ReactivateAgent { id: self.agent() },
            op::DRAIN_AGENT => {
                let id = self.agent();
                let now_ms = self.now();
                Command::DrainAgent {
                    id,
                    deadline_ms: now_ms + self.r.u8() as u64 * 100,
                    mark_gone: self.r.bool(),
                    now_ms,
                }
            }
            op::MARK_AGENT_GONE => Command::MarkAgentGone {
                id: self.agent(),
                now_ms: self.now(),
            },
            op::REGISTER_AGENT => {
                let id = self.agent();
                let address = match self.r.below(8) {
                    0 => "elsewhere:5051".to_string(),
                    _ => format!("{id}:5051"),
                };
                let sel = self.r.u8() as usize;
                let resources = match sel % 8 {
                    i @ 0..=5 => agent_resources()[i].clone(),
                    _ => self.raw_resources(),
                };
                let principal = self.r.pick(&PRINCIPALS).map(str::to_string);
                let attributes = match self.r.below(2) {
                    0 => vec![("rack".to_string(), "r1".to_string())],
                    _ => vec![],
                };
                Command::RegisterAgent {
                    info: AgentInfo {
                        hostname: format!("{id}.local"),
                        id,
                        address,
                        resources,
                        attributes,
                        principal,
                        registration: None,
                    },
                    now_ms: self.now(),
                }
            }
            op::MARK_UNREACHABLE => Command::MarkAgentUnreachable {
                id: self.agent(),
                now_ms: self.now(),
            },
            op::REMOVE_AGENT => Command::RemoveAgent {
                id: self.agent(),
                now_ms: self.now(),
            },
            op::REGISTER_FRAMEWORK => {
                let id = self.framework();
                let role = self.r.pick_str(&ROLES).to_string();
                let principal = self.r.pick(&PRINCIPALS).map(str::to_string);
                let failover_timeout_ms = self.r.u8() as u64 * 1000;
                let user = self.r.pick_str(&["", "root", "alice"]).to_string();
                Command::RegisterFramework {
                    info: FrameworkInfo {
                        name: format!("{id}-name"),
                        id,
                        role,
                        principal,
                        failover_timeout_ms,
                        user,
                    },
                    now_ms: self.now(),
                }
            }
            op::DISCONNECT_FRAMEWORK => Command::DisconnectFramework {
                id: self.framework(),
                now_ms: self.now(),
            },
            op::REMOVE_FRAMEWORK => Command::RemoveFramework {
                id: self.framework(),
                now_ms: self.now(),
            },
            op::ADD_OFFERS => {
                let n = 1 + self.r.below(3);
                let now = self.now();
                let offers = (0..n)
                    .map(|_| {
                        let id = self.offer_id();
                        let framework_id = self.framework();
                        let agent_id = self.agent();
                        let resources = self.offer_resources(reg, &framework_id, &agent_id);
                        Offer {
                            id,
                            framework_id,
                            agent_id,
                            resources,
                            created_at_ms: now,
                        }
                    })
                    .collect();
                Command::AddOffers { offers }
            }
            op::REMOVE_OFFERS => {
                let n = 1 + self.r.below(3);
                let outstanding: Vec<OfferId> = reg.offers().map(|o| o.id.clone()).collect();
                let ids = (0..n)
                    .map(|_| {
                        let sel = self.r.u8() as usize;
                        match (sel % 2, outstanding.is_empty()) {
                            (0, false) => outstanding[(sel / 2) % outstanding.len()].clone(),
                            _ => oid(OFFERS[(sel / 2) % OFFERS.len()]),
                        }
                    })
                    .collect();
                Command::RemoveOffers { ids }
            }
            op::LAUNCH_TASKS => self.launch(reg),
            op::UPDATE_TASK => {
                let sel = self.r.u8();
                let tasks: Vec<(FrameworkId, TaskId)> = reg
                    .tasks()
                    .map(|t| (t.framework_id.clone(), t.id.clone()))
                    .collect();
                let (framework_id, task_id) = if !sel.is_multiple_of(4) && !tasks.is_empty() {
                    tasks[self.r.below(tasks.len())].clone()
                } else {
                    (self.framework(), self.task_id())
                };
                let state = *self.r.pick(&TaskState::ALL);
                let message = match self.r.below(3) {
                    0 => None,
                    1 => Some("exited".to_string()),
                    _ => Some(String::new()),
                };
                let exit_code = match self.r.below(3) {
                    0 => None,
                    1 => Some(0),
                    _ => Some(i32::MIN),
                };
                Command::UpdateTask {
                    framework_id,
                    task_id,
                    state,
                    message,
                    exit_code,
                    now_ms: self.now(),
                }
            }
            op::SET_WEIGHT => Command::SetWeight {
                role: self.r.pick_str(&ROLES).to_string(),
                weight: *self.r.pick(&WEIGHTS),
            },
            op::SET_RETENTION => {
                let tasks = *self.r.pick(&RETENTION_BOUNDS);
                let frameworks = *self.r.pick(&RETENTION_BOUNDS);
                set_retention(tasks, frameworks)
            }
            _ => {
                let d = self.r.u16() as u64;
                if d % 2 == 1 {
                    self.now = self.now.saturating_sub(d);
                } else {
                    self.now = self.now.saturating_add(d * 1000);
                }
                // Time is not a command: apply something harmless.
                Command::RemoveOffers { ids: vec![] }
            }
        }
    }

    /// What an offer holds: `[mode]` 0: all the agent has free for the framework's role,
    /// 1: half of it, 2: a task-sized table value `[index]`, 3: from bytes, 4: all it has
    /// free whatever the role.
    fn offer_resources(&mut self, reg: &Registry, f: &FrameworkId, a: &AgentId) -> Resources {
        let role = reg
            .framework(f)
            .map(|fw| fw.info.role.clone())
            .unwrap_or_else(|| "*".into());
        match self.r.below(5) {
            0 => reg.agent_free(a).allocatable_to(&role),
            1 => share(&reg.agent_free(a).allocatable_to(&role), 0, 2),
            2 => self.r.pick(task_resources()).clone(),
            3 => self.raw_resources(),
            _ => reg.agent_free(a),
        }
    }

    fn launch(&mut self, reg: &Registry) -> Command {
        let sel = self.r.u8();
        let outstanding: Vec<&Offer> = reg.offers().collect();
        let (framework_id, offer_ids) = if !sel.is_multiple_of(4) && !outstanding.is_empty() {
            let first = outstanding[self.r.below(outstanding.len())];
            let ids = if self.r.bool() {
                outstanding
                    .iter()
                    .filter(|o| {
                        o.framework_id == first.framework_id && o.agent_id == first.agent_id
                    })
                    .map(|o| o.id.clone())
                    .collect()
            } else {
                vec![first.id.clone()]
            };
            (first.framework_id.clone(), ids)
        } else {
            let framework_id = fid(FRAMEWORKS[(sel / 4) as usize % FRAMEWORKS.len()]);
            let n = self.r.below(3);
            (framework_id, (0..n).map(|_| self.offer_id()).collect())
        };
        let mut offered = Resources::new();
        for id in &offer_ids {
            if let Some(o) = reg.offer(id) {
                offered.add(&o.resources);
            }
        }
        let n = self.r.below(4);
        let tasks = (0..n)
            .map(|i| {
                let id = self.task_id();
                let resources = match self.r.below(6) {
                    0..=2 => share(&offered, i, n),
                    3 => self.r.pick(task_resources()).clone(),
                    4 => self.raw_resources(),
                    _ => offered.clone(),
                };
                TaskSpec {
                    name: format!("{id}-name"),
                    id,
                    resources,
                    launch: b"launch".to_vec(),
                    user: "root".into(),
                }
            })
            .collect();
        Command::LaunchTasks {
            framework_id,
            offer_ids,
            tasks,
            now_ms: self.now(),
        }
    }
}

/// Part `i` of `n` of `r`: scalars divided by `n`, ranges dealt out by pair.
fn share(r: &Resources, i: usize, n: usize) -> Resources {
    let n = n.max(1);
    let items: Vec<Resource> = r
        .iter()
        .map(|e| {
            let value = match &e.value {
                Value::Scalar(s) => Value::Scalar(Scalar::from_millis(s.millis() / n as u64)),
                Value::Ranges(rs) => {
                    let p = rs.pairs();
                    let part = &p[i * p.len() / n..(i + 1) * p.len() / n];
                    Value::Ranges(Ranges::new(part.iter().copied()).unwrap_or_default())
                }
            };
            Resource {
                name: e.name.clone(),
                role: e.role.clone(),
                value,
            }
        })
        .collect();
    Resources::from(items)
}

/// The name of a command's outcome: "ok" or the rejection's variant.
fn outcome(result: &CommandResult) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(e) => {
            let text = format!("{e:?}");
            text.split(['(', ' ', '{'])
                .next()
                .unwrap_or_default()
                .to_string()
        }
    }
}

pub fn run(data: &[u8], f: &mut Features) {
    let mut gen = Gen {
        r: Bytes::new(data),
        now: 1_000,
    };
    let mut reg = Registry::new();
    let mut replica = Registry::new();
    let mut commands = Vec::new();
    let mut results = Vec::new();
    // `replica` is one command behind `reg` until it applies the command too: the state
    // before the command (a rejected command must leave `reg` equal to it), then a second
    // replica that must reach the same result and state.
    while !gen.r.is_empty() && commands.len() < MAX_COMMANDS {
        let command = gen.command(&reg);
        let result = reg.apply(&command);
        f.tag_text(command.kind(), &outcome(&result));
        match &result {
            Err(e) => assert!(
                reg == replica,
                "a rejected command changed the registry\n{command:?}\n{e}"
            ),
            Ok(()) => applied(&replica, &reg, &command),
        }
        if let Err(broken) = reg.check_invariants() {
            let gist: Vec<&str> = broken.split_whitespace().take(3).collect();
            panic!(
                "invariant broken: {} ...\n{broken}\nafter {command:?}",
                gist.join(" ")
            );
        }
        retention_holds(&reg);
        let again = replica.apply(&command);
        assert_eq!(again, result, "a replica got another result\n{command:?}");
        assert!(replica == reg, "a replica diverged\n{command:?}");
        state_features(&reg, f);
        commands.push(command);
        results.push(result);
    }
    f.tag_n("commands", commands.len() as u64);

    // The same commands as one log entry.
    let mut batched = Registry::new();
    let batch_results = batched.apply_batch(&CommandBatch { commands });
    assert_eq!(batch_results, results, "a batch got other results");
    assert!(batched == reg, "a batch reached another registry");

    // A snapshot gives the same registry, indexes included.
    let json = serde_json::to_vec(&reg).expect("registry serializes");
    let back: Registry = serde_json::from_slice(&json).expect("registry deserializes");
    assert!(back == reg, "snapshot round trip changed the registry");
    if let Err(broken) = back.check_invariants() {
        panic!("invariant broken after a snapshot round trip\n{broken}");
    }
    for a in reg.agents() {
        assert_eq!(
            back.agent_allocation(&a.info.id),
            reg.agent_allocation(&a.info.id),
            "allocation differs after a snapshot\n{}",
            a.info.id
        );
        assert_eq!(back.agent_free(&a.info.id), reg.agent_free(&a.info.id));
    }
    for fw in reg.frameworks() {
        assert_eq!(
            back.framework_holdings(&fw.info.id),
            reg.framework_holdings(&fw.info.id)
        );
    }
}

/// The commands `data` makes and what each got, one per line (`replay --describe`).
pub fn describe(data: &[u8]) -> String {
    let mut gen = Gen {
        r: Bytes::new(data),
        now: 1_000,
    };
    let mut reg = Registry::new();
    let mut out = String::new();
    let mut n = 0;
    while !gen.r.is_empty() && n < MAX_COMMANDS {
        n += 1;
        let command = gen.command(&reg);
        let result = reg.apply(&command);
        let check = match reg.check_invariants() {
            Ok(()) => String::new(),
            Err(broken) => format!("  INVARIANT BROKEN: {broken}"),
        };
        out.push_str(&format!("{command:?}\n  -> {result:?}{check}\n"));
    }
    out
}

/// Coarse registry shape, so inputs reaching new states are kept.
fn state_features(reg: &Registry, f: &mut Features) {
    let agents = reg.agents().count() as u64;
    let unreachable = reg
        .agents()
        .filter(|a| a.status != AgentStatus::Active)
        .count() as u64;
    let frameworks = reg.frameworks().count() as u64;
    let offers = reg.offers().count().min(4) as u64;
    let live = reg
        .tasks()
        .filter(|t| !t.state.is_terminal())
        .count()
        .min(4) as u64;
    let done = reg.tasks().filter(|t| t.state.is_terminal()).count().min(4) as u64;
    let shape = agents | unreachable << 3 | frameworks << 6 | offers << 9 | live << 12 | done << 15;
    f.note(mix(shape ^ 0x5eed));
}

/// Finished history within the retention bounds, after every command: each framework,
/// registered or completed, keeps at most so many terminal tasks, and at most so many
/// completed frameworks are kept.
fn retention_holds(reg: &Registry) {
    let bounds = reg.retention();
    let mut done: std::collections::BTreeMap<&FrameworkId, usize> = Default::default();
    for t in reg.tasks().filter(|t| t.state.is_terminal()) {
        *done.entry(&t.framework_id).or_default() += 1;
    }
    for (f, n) in done {
        assert!(
            n <= bounds.max_completed_tasks_per_framework,
            "more finished tasks kept than the retention allows\n{f} keeps {n}"
        );
    }
    assert!(
        reg.completed_frameworks().count() <= bounds.max_completed_frameworks,
        "more completed frameworks kept than the retention allows"
    );
}

/// What an applied command must have done, as `Command`'s documentation states it.
fn applied(before: &Registry, after: &Registry, command: &Command) {
    match command {
        Command::RegisterAgent { info, .. } => {
            let a = after.agent(&info.id).expect("registered agent exists");
            assert_eq!(a.status, AgentStatus::Active);
            assert_eq!(a.info.resources, info.resources);
            assert_eq!(a.info.address, info.address);
        }
        Command::MarkAgentUnreachable { id, .. } => {
            let a = after.agent(id).expect("agent stays");
            assert!(matches!(a.status, AgentStatus::Unreachable { .. }));
            assert!(
                after.offers().all(|o| &o.agent_id != id),
                "offers withdrawn"
            );
            for t in after.tasks().filter(|t| &t.agent_id == id) {
                assert!(
                    t.state.is_terminal() || t.state == TaskState::TaskUnreachable,
                    "a live task on an unreachable agent\n{} is {}",
                    t.id,
                    t.state
                );
            }
        }
        Command::RemoveAgent { id, .. } => {
            assert!(after.agent(id).is_none());
            assert!(
                after.offers().all(|o| &o.agent_id != id),
                "offers withdrawn"
            );
            for t in after.tasks().filter(|t| &t.agent_id == id) {
                assert!(
                    t.state.is_terminal(),
                    "a live task of a removed agent\n{} is {}",
                    t.id,
                    t.state
                );
            }
        }
        Command::RegisterFramework { info, .. } => {
            let fw = after
                .framework(&info.id)
                .expect("registered framework exists");
            assert_eq!(fw.status, FrameworkStatus::Active);
            assert_eq!(fw.info.role, info.role);
        }
        Command::DisconnectFramework { id, .. } => {
            let fw = after.framework(id).expect("framework stays");
            assert!(matches!(fw.status, FrameworkStatus::Disconnected { .. }));
            assert!(
                after.offers().all(|o| &o.framework_id != id),
                "offers withdrawn"
            );
        }
        Command::RemoveFramework { id, .. } => {
            assert!(after.framework(id).is_none());
            assert!(
                after.offers().all(|o| &o.framework_id != id),
                "offers withdrawn"
            );
            for t in after.tasks().filter(|t| &t.framework_id == id) {
                assert!(
                    t.state.is_terminal(),
                    "a live task of a removed framework\n{} is {}",
                    t.id,
                    t.state
                );
            }
        }
        Command::AddOffers { offers } => {
            for o in offers {
                assert_eq!(after.offer(&o.id), Some(o));
                let fw = before
                    .framework(&o.framework_id)
                    .expect("offered to a framework");
                assert_eq!(fw.status, FrameworkStatus::Active);
                let agent = before.agent(&o.agent_id).expect("offered on an agent");
                assert_eq!(agent.status, AgentStatus::Active);
                // Static reservations go only to frameworks of their role.
                for e in o.resources.iter() {
                    if let Some(role) = &e.role {
                        assert_eq!(
                            role, &fw.info.role,
                            "reserved resources of another role offered"
                        );
                    }
                }
            }
        }
        Command::RemoveOffers { ids } => {
            for id in ids {
                assert!(after.offer(id).is_none());
            }
        }
        Command::LaunchTasks {
            framework_id,
            offer_ids,
            tasks,
            ..
        } => {
            // An offer is consumed at most once; a task id is never reused.
            for id in offer_ids {
                assert!(
                    before.offer(id).is_some(),
                    "launched on a missing offer\n{id}"
                );
                assert!(after.offer(id).is_none(), "offer not consumed\n{id}");
            }
            let agent = &before.offer(&offer_ids[0]).expect("checked").agent_id;
            for t in tasks {
                assert!(
                    before.task(framework_id, &t.id).is_none(),
                    "task id reused\n{}",
                    t.id
                );
                let task = after
                    .task(framework_id, &t.id)
                    .expect("launched task exists");
                assert_eq!(task.state, TaskState::TaskStaging);
                assert_eq!(&task.agent_id, agent);
                assert_eq!(task.resources, t.resources);
            }
        }
        Command::UpdateTask {
            framework_id,
            task_id,
            state,
            ..
        } => {
            let old = before
                .task(framework_id, task_id)
                .expect("updated task existed");
            // Terminal is final.
            if old.state.is_terminal() {
                assert_eq!(
                    old.state, *state,
                    "a terminal task changed state\n{task_id}"
                );
            }
            if let Some(new) = after.task(framework_id, task_id) {
                assert_eq!(new.state, *state);
            }
        }
        Command::SetWeight { role, weight } => {
            assert!(
                weight.is_finite() && *weight > 0.0,
                "a bad weight accepted\n{weight}"
            );
            assert_eq!(after.weight(role), *weight);
        }
        Command::SetWeights { weights } => {
            for (role, weight) in weights {
                assert!(
                    weight.is_finite() && *weight > 0.0,
                    "a bad weight accepted\n{weight}"
                );
                // (A role named twice keeps its last weight.)
                let last = weights.iter().rev().find(|(r, _)| r == role).unwrap().1;
                assert_eq!(after.weight(role), last);
            }
        }
        Command::SetRetention { retention } => {
            assert_eq!(after.retention(), *retention);
        }
        Command::DeactivateAgent { id } => {
            assert!(after.agent(id).expect("agent stays").deactivated);
            assert!(
                after.offers().all(|o| &o.agent_id != id),
                "offers withdrawn"
            );
        }
        Command::ReactivateAgent { id } => {
            let a = after.agent(id).expect("agent stays");
            assert!(!a.deactivated && a.drain.is_none());
        }
        Command::DrainAgent {
            id, deadline_ms, ..
        } => {
            let a = after.agent(id).expect("agent stays");
            assert!(a.deactivated);
            assert_eq!(a.drain.map(|d| d.deadline_ms), Some(*deadline_ms));
            assert!(
                after.offers().all(|o| &o.agent_id != id),
                "offers withdrawn"
            );
        }
        Command::MarkAgentGone { id, .. } => {
            assert!(after.agent(id).is_none() && after.is_gone(id));
            for t in after.tasks().filter(|t| &t.agent_id == id) {
                assert!(
                    t.state.is_terminal(),
                    "a live task of a gone agent\n{} is {}",
                    t.id,
                    t.state
                );
            }
        }
    }
}

// ----- seeds -----

/// Builds seed inputs in the layout [`Gen::command`] reads.
struct Script(Vec<u8>);

impl Script {
    fn new() -> Self {
        Script(Vec::new())
    }
    fn agent(mut self, agent: u8, resources: u8, principal: u8) -> Self {
        self.0
            .extend([op::REGISTER_AGENT, agent, 1, resources, principal, 0]);
        self
    }
    fn framework(mut self, framework: u8, role: u8) -> Self {
        self.0
            .extend([op::REGISTER_FRAMEWORK, framework, role, 0, 60, 1]);
        self
    }
    /// One offer of everything agent `a` has free for framework `f`'s role.
    fn offer(mut self, offer: u8, f: u8, a: u8, mode: u8) -> Self {
        self.0.extend([op::ADD_OFFERS, 0, offer, f, a, mode]);
        self
    }
    /// Launch `n` tasks splitting outstanding offer `index` (and its siblings when `all`).
    fn launch(mut self, index: u8, all: bool, tasks: &[u8]) -> Self {
        self.0
            .extend([op::LAUNCH_TASKS, 1, index, all as u8, tasks.len() as u8]);
        for &t in tasks {
            self.0.extend([t, 0]);
        }
        self
    }
    /// Update existing task `index` to `state` (index into `TaskState::ALL`).
    fn update(mut self, index: u8, state: u8) -> Self {
        self.0.extend([op::UPDATE_TASK, 1, index, state, 1, 1]);
        self
    }
    fn op(mut self, code: u8, arg: u8) -> Self {
        self.0.extend([code, arg]);
        self
    }
    fn bytes(self) -> Vec<u8> {
        self.0
    }
}

/// Inputs that broke the registry's invariants when they were found (see README.md); the
/// committed corpus keeps them as `regression-<name>`.
pub fn regressions() -> Vec<(String, Vec<u8>)> {
    let finished = 4;
    let base = || Script::new().agent(0, 0, 0).agent(1, 0, 0).framework(0, 1);
    vec![
        (
            // An agent re-registers with less than its live tasks hold.
            "reregister-smaller".into(),
            base()
                .offer(0, 0, 0, 0)
                .launch(0, true, &[0, 1])
                .agent(0, 2, 0)
                .bytes(),
        ),
        (
            // Two tasks of one launch take the same port; when one ends, the port counts
            // as free while the other holds it.
            "same-port-twice".into(),
            {
                let mut b = base().offer(0, 0, 0, 0).0;
                b.extend([op::LAUNCH_TASKS, 1, 0, 0, 2, 0, 3, 4, 1, 3, 4]);
                b.extend(Script::new().update(0, finished).bytes());
                b
            },
        ),
        (
            // One framework is offered the same ports on two agents; withdrawing one
            // offer drops the ports from the framework's index.
            "framework-ports-two-agents".into(),
            {
                let mut b = base().offer(0, 0, 0, 0).offer(1, 0, 1, 0).0;
                b.extend([op::REMOVE_OFFERS, 0, 0]);
                b
            },
        ),
    ]
}

pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let running = 2; // TaskState::ALL[2] is TASK_RUNNING
    let finished = 4;
    let base = || {
        Script::new()
            .agent(0, 0, 0)
            .agent(1, 1, 0)
            .framework(0, 1)
            .framework(1, 0)
    };
    let launched = || base().offer(0, 0, 0, 0).launch(0, true, &[0, 1]);
    vec![
        ("register".into(), base().bytes()),
        (
            "offer".into(),
            base().offer(0, 0, 0, 0).offer(1, 1, 1, 0).bytes(),
        ),
        (
            "offer-half".into(),
            base().offer(0, 0, 1, 1).offer(1, 0, 1, 1).bytes(),
        ),
        (
            "offer-reserved-wrong-role".into(),
            base().offer(0, 1, 1, 4).bytes(),
        ),
        ("launch".into(), launched().bytes()),
        (
            "launch-run-finish".into(),
            launched()
                .update(0, running)
                .update(0, finished)
                .update(0, finished)
                .bytes(),
        ),
        (
            "launch-unreachable-reregister".into(),
            launched()
                .op(op::MARK_UNREACHABLE, 0)
                .agent(0, 0, 0)
                .update(1, running)
                .bytes(),
        ),
        (
            "launch-reregister-same".into(),
            launched().agent(0, 0, 0).bytes(),
        ),
        (
            "retention".into(),
            launched()
                .update(0, finished)
                .update(1, finished)
                .op(op::SET_RETENTION, 1)
                .0
                .into_iter()
                .chain([0])
                .chain(
                    Script::new()
                        .op(op::REMOVE_FRAMEWORK, 0)
                        .framework(0, 1)
                        .bytes(),
                )
                .collect(),
        ),
        (
            "launch-remove-agent".into(),
            launched()
                .op(op::REMOVE_AGENT, 0)
                .update(0, running)
                .bytes(),
        ),
        (
            "launch-remove-framework".into(),
            launched()
                .op(op::REMOVE_FRAMEWORK, 0)
                .framework(0, 1)
                .offer(2, 0, 0, 0)
                .bytes(),
        ),
        (
            "disconnect".into(),
            base()
                .offer(0, 0, 0, 0)
                .op(op::DISCONNECT_FRAMEWORK, 0)
                .bytes(),
        ),
        (
            "principals".into(),
            Script::new()
                .agent(0, 0, 1)
                .agent(0, 0, 2)
                .agent(0, 0, 0)
                .bytes(),
        ),
        (
            "weights".into(),
            Script::new()
                .op(op::SET_WEIGHT, 1)
                .0
                .into_iter()
                .chain([2, op::SET_WEIGHT, 7, 5, op::SET_WEIGHT, 0, 3])
                .collect(),
        ),
        (
            "two-offers-one-launch".into(),
            base()
                .offer(0, 0, 0, 1)
                .offer(1, 0, 0, 1)
                .launch(0, true, &[0, 1, 2])
                .bytes(),
        ),
        (
            "reuse-task-id".into(),
            launched()
                .update(0, finished)
                .offer(3, 0, 0, 0)
                .launch(0, true, &[0])
                .bytes(),
        ),
        (
            "rescind-then-launch".into(),
            base()
                .offer(0, 0, 0, 0)
                .op(op::REMOVE_OFFERS, 0)
                .0
                .into_iter()
                .chain([0, op::LAUNCH_TASKS, 0, 1, 0, 1, 0, 0])
                .collect(),
        ),
        (
            "time".into(),
            launched()
                .op(op::TIME, 0xff)
                .0
                .into_iter()
                .chain([0xff])
                .chain(Script::new().update(0, finished).bytes())
                .collect(),
        ),
    ]
}
