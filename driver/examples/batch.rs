//! `batch`: an example framework that runs K short tasks and exits.
//!
//! ```text
//! cargo run -p agora-driver --example batch -- --masters 127.0.0.1:5050 \
//!     --name batch --role '*' --tasks 100 --cpus 0.5 --mem 32 --duration-ms 200
//! ```
//!
//! It packs pending tasks into each offer while they fit, declines what it cannot use,
//! suppresses offers once everything is launched, and exits 0 when all K tasks finished,
//! printing how many ran on each agent (1 if any failed). A task the cluster dropped
//! before it ran (TASK_DROPPED) is launched again under a new attempt id; every other end
//! is final.
//!
//! With `--framework-id` it resumes an earlier run (a crashed `batch` within its failover
//! timeout): it asks the master for the state of each of its task ids and launches only
//! those the cluster has never seen, so no task runs twice. With `--marker-dir DIR`, each
//! task appends its agent's id to `DIR/<task id>`, a trace of every execution.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::process::ExitCode;
use std::time::Instant;

use agora_driver::{scalar, Scheduler, SchedulerDriver, SchedulerHandle, TaskState, TaskStatus};
use agora_proto::v1 as pb;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Runs K tasks on an Agora cluster and exits when all finished")]
struct Args {
    /// Masters, HOST:PORT,... (any or all).
    #[arg(long, default_value = "127.0.0.1:5050")]
    masters: String,
    /// Framework name; task ids are NAME-0, NAME-1, ...
    #[arg(long, default_value = "batch")]
    name: String,
    #[arg(long, default_value = "*")]
    role: String,
    /// Number of tasks.
    #[arg(long, default_value_t = 10)]
    tasks: usize,
    /// CPUs per task.
    #[arg(long, default_value_t = 0.1)]
    cpus: f64,
    /// Memory per task, MiB.
    #[arg(long, default_value_t = 32.0)]
    mem: f64,
    /// How long each task sleeps, ms.
    #[arg(long, default_value_t = 0)]
    duration_ms: u64,
    /// Each task appends its agent id to DIR/<task id>.
    #[arg(long)]
    marker_dir: Option<String>,
    /// Resume the framework with this id (after a crash, within its failover timeout).
    #[arg(long)]
    framework_id: Option<String>,
    /// How long the cluster keeps the tasks running if this process dies, seconds.
    #[arg(long, default_value_t = 60.0)]
    failover_timeout: f64,
    /// Most tasks launched per offer (0: as many as fit).
    #[arg(long, default_value_t = 0)]
    max_per_offer: usize,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

struct Batch {
    args: Args,
    /// Logical task numbers waiting for resources.
    pending: VecDeque<usize>,
    /// Launch attempts per logical task (the attempt id is NAME-I, then NAME-I.A).
    attempts: Vec<u32>,
    /// Attempt id -> logical task.
    by_id: HashMap<String, usize>,
    /// Logical tasks done (finished or failed for good).
    done: HashSet<usize>,
    /// Resuming: attempt ids still waiting for their reconciliation answer.
    reconciling: Option<HashSet<String>>,
    finished_on: BTreeMap<String, usize>,
    failed: Vec<String>,
    hostnames: HashMap<String, String>,
    suppressed: bool,
    started: Instant,
    outcome: tokio::sync::watch::Sender<Option<bool>>,
}

impl Batch {
    fn attempt_id(&self, task: usize) -> String {
        match self.attempts[task] {
            0 => format!("{}-{task}", self.args.name),
            a => format!("{}-{task}.{a}", self.args.name),
        }
    }

    fn task_info(&self, id: &str, offer: &pb::Offer) -> pb::TaskInfo {
        let mut command = String::new();
        if let Some(dir) = &self.args.marker_dir {
            command.push_str(&format!(
                "echo \"$AGORA_AGENT_ID\" >> {}/\"$AGORA_TASK_ID\"; ",
                quote(dir)
            ));
        }
        if self.args.duration_ms > 0 {
            command.push_str(&format!(
                "sleep {:.3}",
                self.args.duration_ms as f64 / 1000.0
            ));
        } else {
            command.push_str("true");
        }
        let role = offer
            .resources
            .iter()
            .find(|r| r.name == "cpus")
            .map(|r| r.role.clone())
            .unwrap_or_default();
        let res = |name: &str, v: f64| pb::Resource {
            name: name.into(),
            role: role.clone(),
            value: Some(pb::resource::Value::Scalar(v)),
        };
        pb::TaskInfo {
            task_id: id.into(),
            name: id.into(),
            resources: vec![res("cpus", self.args.cpus), res("mem", self.args.mem)],
            command,
            env: Default::default(),
            executor: None,
            user: String::new(),
            ..Default::default()
        }
    }

    fn finish_if_done(&mut self, h: &SchedulerHandle) {
        if self.done.len() < self.args.tasks {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64();
        let finished: usize = self.finished_on.values().sum();
        println!(
            "{finished} of {} tasks finished in {secs:.2}s ({:.0} tasks/s)",
            self.args.tasks,
            finished as f64 / secs.max(1e-9)
        );
        for (agent, n) in &self.finished_on {
            let host = self.hostnames.get(agent).map(String::as_str).unwrap_or("?");
            println!("  {agent} ({host}): {n}");
        }
        for f in &self.failed {
            println!("  failed: {f}");
        }
        let _ = self.outcome.send(Some(self.failed.is_empty()));
        h.stop();
    }
}

impl Scheduler for Batch {
    fn registered(&mut self, h: &SchedulerHandle, framework_id: &str) {
        println!("framework {framework_id} subscribed");
        if self.args.framework_id.is_some() {
            // Resuming: learn which tasks the cluster already knows before launching any.
            let ids: Vec<String> = (0..self.args.tasks).map(|t| self.attempt_id(t)).collect();
            self.reconciling = Some(ids.iter().cloned().collect());
            h.reconcile(ids);
        }
    }

    fn resource_offers(&mut self, h: &SchedulerHandle, offers: Vec<pb::Offer>) {
        for offer in offers {
            self.hostnames
                .insert(offer.agent_id.clone(), offer.hostname.clone());
            if self.reconciling.is_some() || self.pending.is_empty() {
                h.decline(vec![offer.id.clone()], Some(1.0));
                continue;
            }
            let mut cpus = scalar(&offer.resources, "cpus");
            let mut mem = scalar(&offer.resources, "mem");
            let mut tasks = Vec::new();
            let cap = match self.args.max_per_offer {
                0 => usize::MAX,
                n => n,
            };
            while tasks.len() < cap && cpus + 1e-9 >= self.args.cpus && mem + 1e-9 >= self.args.mem
            {
                let Some(t) = self.pending.pop_front() else {
                    break;
                };
                let id = self.attempt_id(t);
                self.by_id.insert(id.clone(), t);
                tasks.push(self.task_info(&id, &offer));
                cpus -= self.args.cpus;
                mem -= self.args.mem;
            }
            if tasks.is_empty() {
                h.decline(vec![offer.id.clone()], None);
            } else {
                let ids: Vec<String> = tasks.iter().map(|t| t.task_id.clone()).collect();
                let accepted = h.accept(vec![offer.id.clone()], tasks, None);
                let h = h.clone();
                tokio::spawn(async move {
                    let outcome = accepted.await;
                    // A request the master refuses as malformed (a task below the minimum
                    // size, say) would be refused again on every offer: stop, saying why.
                    if let Ok(Err(e)) = &outcome {
                        if e.status()
                            .is_some_and(|s| s.code() == tonic::Code::InvalidArgument)
                        {
                            eprintln!("batch: the master refuses these tasks: {e}");
                            std::process::exit(2);
                        }
                    }
                    if !matches!(outcome, Ok(Ok(()))) {
                        // The leader may have gone down with the accept in flight, applied
                        // or not: ask. Tasks it never recorded come back "unknown task"
                        // and are launched again under the same id, which the master
                        // never accepts twice.
                        h.reconcile(ids);
                    }
                });
            }
        }
        if self.pending.is_empty() && !self.suppressed {
            self.suppressed = true;
            h.suppress();
        }
    }

    fn status_update(&mut self, h: &SchedulerHandle, status: TaskStatus) {
        let Some(&task) = self.by_id.get(&status.task_id) else {
            return;
        };
        if let Some(waiting) = &mut self.reconciling {
            if status.uuid.is_empty() && waiting.remove(&status.task_id) {
                if status.message == "unknown task" {
                    // Never launched by the earlier run.
                    self.pending.push_back(task);
                }
                if waiting.is_empty() {
                    self.reconciling = None;
                    println!(
                        "resumed: {} tasks left to launch, {} already done",
                        self.pending.len(),
                        self.done.len()
                    );
                    if !self.pending.is_empty() {
                        self.suppressed = false;
                        h.revive();
                    }
                }
                if status.message == "unknown task" {
                    return;
                }
            }
        }
        if self.done.contains(&task) || status.task_id != self.attempt_id(task) {
            return;
        }
        if status.uuid.is_empty() && status.message == "unknown task" {
            // The answer to reconciling a launch whose accept failed: it never happened.
            if !self.pending.contains(&task) {
                self.pending.push_back(task);
                if self.suppressed {
                    self.suppressed = false;
                    h.revive();
                }
            }
            return;
        }
        match status.state {
            TaskState::TaskFinished => {
                self.done.insert(task);
                *self.finished_on.entry(status.agent_id.clone()).or_default() += 1;
            }
            TaskState::TaskDropped => {
                // It never ran: try again under a new attempt id.
                self.attempts[task] += 1;
                self.by_id.insert(self.attempt_id(task), task);
                self.pending.push_back(task);
                if self.suppressed {
                    self.suppressed = false;
                    h.revive();
                }
            }
            s if s.is_terminal() => {
                self.done.insert(task);
                self.failed.push(format!(
                    "{} {} {}",
                    status.task_id, status.state, status.message
                ));
            }
            _ => {}
        }
        self.finish_if_done(h);
    }

    fn agent_lost(&mut self, _h: &SchedulerHandle, agent_id: &str) {
        eprintln!("agent {agent_id} lost");
    }

    fn error(&mut self, _h: &SchedulerHandle, message: &str) {
        eprintln!("batch: {message}");
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("batch: {}", e.to_string().lines().next().unwrap_or(""));
            return ExitCode::from(2);
        }
    };
    if !(args.cpus > 0.0 && args.mem > 0.0) {
        eprintln!("batch: --cpus and --mem must be positive");
        return ExitCode::from(2);
    }
    let framework = pb::FrameworkInfo {
        id: args.framework_id.clone().unwrap_or_default(),
        name: args.name.clone(),
        roles: vec![args.role.clone()],
        failover_timeout_seconds: args.failover_timeout,
        ..Default::default()
    };
    let driver = match SchedulerDriver::new(&args.masters, framework) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("batch: --masters: {e}");
            return ExitCode::from(2);
        }
    };
    let (outcome, mut result) = tokio::sync::watch::channel(None);
    let resuming = args.framework_id.is_some();
    let mut batch = Batch {
        pending: if resuming {
            VecDeque::new()
        } else {
            (0..args.tasks).collect()
        },
        attempts: vec![0; args.tasks],
        by_id: HashMap::new(),
        done: HashSet::new(),
        reconciling: None,
        finished_on: BTreeMap::new(),
        failed: Vec::new(),
        hostnames: HashMap::new(),
        suppressed: false,
        started: Instant::now(),
        outcome,
        args,
    };
    for t in 0..batch.args.tasks {
        let id = batch.attempt_id(t);
        batch.by_id.insert(id, t);
    }
    if batch.args.tasks == 0 {
        println!("nothing to run");
        return ExitCode::SUCCESS;
    }
    if let Err(e) = driver.run(batch).await {
        eprintln!("batch: {e}");
        return ExitCode::FAILURE;
    }
    let ok = *result.borrow_and_update();
    match ok {
        Some(true) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
