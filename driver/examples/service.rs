//! `service`: an example framework that keeps K instances of a command running.
//!
//! ```text
//! cargo run -p agora-driver --example service -- --masters 127.0.0.1:5050 \
//!     --name web --instances 3 --cpus 0.5 --mem 64 -- sh -c 'while sleep 5; do date; done'
//! ```
//!
//! Each instance `I` runs as task `NAME-I.G`, G counting its generations. Whenever an
//! instance ends (exited, failed, killed, lost, agent gone), it is launched again under
//! the next generation, after a backoff that doubles on quick failures (up to 30 s) and
//! resets once an instance has run for a minute. It prints one line per state change and
//! runs until SIGINT/SIGTERM; with `--framework-id` it resumes an earlier run and adopts
//! the instances still running (found by reconciliation).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use agora_driver::{scalar, Scheduler, SchedulerDriver, SchedulerHandle, TaskState, TaskStatus};
use agora_proto::v1 as pb;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Keeps K instances of a command running on an Agora cluster")]
struct Args {
    /// Masters, HOST:PORT,... (any or all).
    #[arg(long, default_value = "127.0.0.1:5050")]
    masters: String,
    /// Framework name; task ids are NAME-I.G.
    #[arg(long, default_value = "service")]
    name: String,
    #[arg(long, default_value = "*")]
    role: String,
    /// How many instances to keep running.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    #[arg(long, default_value_t = 0.1)]
    cpus: f64,
    #[arg(long, default_value_t = 32.0)]
    mem: f64,
    /// Resume the framework with this id (after a crash, within its failover timeout).
    #[arg(long)]
    framework_id: Option<String>,
    /// How long the cluster keeps the instances running if this process dies, seconds.
    #[arg(long, default_value_t = 3600.0)]
    failover_timeout: f64,
    /// The command (run with /bin/sh -c; the words are joined with spaces).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
const ADOPT_WINDOW: Duration = Duration::from_secs(2);

#[derive(Debug)]
enum Slot {
    /// Waiting for resources, not before `not_before`.
    Pending { not_before: Instant },
    /// Launched (or adopted) as this task id, since when.
    Live { task_id: String, since: Instant },
}

struct Service {
    args: Args,
    command: String,
    slots: Vec<Slot>,
    generation: Vec<u64>,
    backoff: Vec<Duration>,
    /// Task id -> instance.
    by_task: HashMap<String, usize>,
    /// Resuming: launch nothing before this, while reconciliation answers name the
    /// instances still running.
    adopt_until: Option<Instant>,
    suppressed: bool,
}

impl Service {
    fn task_id(&self, i: usize) -> String {
        format!("{}-{i}.{}", self.args.name, self.generation[i])
    }

    fn wanted(&self, now: Instant) -> Vec<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Slot::Pending { not_before } if *not_before <= now))
            .map(|(i, _)| i)
            .collect()
    }

    fn ended(&mut self, h: &SchedulerHandle, i: usize, state: TaskState, message: &str) {
        let ran_for = match &self.slots[i] {
            Slot::Live { since, .. } => since.elapsed(),
            Slot::Pending { .. } => Duration::ZERO,
        };
        self.backoff[i] = if ran_for >= HEALTHY_AFTER {
            MIN_BACKOFF
        } else {
            (self.backoff[i] * 2).clamp(MIN_BACKOFF, MAX_BACKOFF)
        };
        self.generation[i] += 1;
        println!(
            "instance {i} ended ({state} {message}); relaunching in {:?}",
            self.backoff[i]
        );
        self.slots[i] = Slot::Pending {
            not_before: Instant::now() + self.backoff[i],
        };
        if self.suppressed {
            self.suppressed = false;
            h.revive();
        }
    }
}

impl Scheduler for Service {
    fn registered(&mut self, h: &SchedulerHandle, framework_id: &str) {
        println!("framework {framework_id} subscribed");
        if self.args.framework_id.is_some() {
            self.adopt_until = Some(Instant::now() + ADOPT_WINDOW);
            h.reconcile(Vec::new());
            // Whatever has not answered by then is not running.
            let h = h.clone();
            tokio::spawn(async move {
                tokio::time::sleep(ADOPT_WINDOW).await;
                h.revive();
            });
        }
    }

    fn reregistered(&mut self, h: &SchedulerHandle) {
        // After a master failover: ask for the state of everything we run.
        h.reconcile(Vec::new());
    }

    fn resource_offers(&mut self, h: &SchedulerHandle, offers: Vec<pb::Offer>) {
        let now = Instant::now();
        if let Some(until) = self.adopt_until {
            if now < until {
                for offer in offers {
                    h.decline(vec![offer.id], Some(0.5));
                }
                return;
            }
            self.adopt_until = None;
            let adopted = self
                .slots
                .iter()
                .filter(|s| matches!(s, Slot::Live { .. }))
                .count();
            println!("resumed: adopted {adopted} running instances");
        }
        let mut wanted = self.wanted(now).into_iter();
        for offer in offers {
            let mut cpus = scalar(&offer.resources, "cpus");
            let mut mem = scalar(&offer.resources, "mem");
            let mut tasks = Vec::new();
            while cpus + 1e-9 >= self.args.cpus && mem + 1e-9 >= self.args.mem {
                let Some(i) = wanted.next() else { break };
                let task_id = self.task_id(i);
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
                tasks.push(pb::TaskInfo {
                    task_id: task_id.clone(),
                    name: format!("{} instance {i}", self.args.name),
                    resources: vec![res("cpus", self.args.cpus), res("mem", self.args.mem)],
                    command: self.command.clone(),
                    env: [("SERVICE_INSTANCE".to_string(), i.to_string())]
                        .into_iter()
                        .collect(),
                    executor: None,
                    user: String::new(),
                    ..Default::default()
                });
                self.by_task.insert(task_id.clone(), i);
                self.slots[i] = Slot::Live {
                    task_id,
                    since: now,
                };
                cpus -= self.args.cpus;
                mem -= self.args.mem;
            }
            if tasks.is_empty() {
                h.decline(vec![offer.id], None);
            } else {
                h.accept(vec![offer.id], tasks, None);
            }
        }
        let waiting = self.slots.iter().any(|s| matches!(s, Slot::Pending { .. }));
        if !waiting && !self.suppressed {
            self.suppressed = true;
            h.suppress();
        } else if waiting {
            // An instance in backoff: ask again when it is due.
            let due = self
                .slots
                .iter()
                .filter_map(|s| match s {
                    Slot::Pending { not_before } => Some(*not_before),
                    Slot::Live { .. } => None,
                })
                .min();
            if let Some(due) = due.filter(|d| *d > now) {
                let h = h.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(due.into()).await;
                    h.revive();
                });
            }
        }
    }

    fn status_update(&mut self, h: &SchedulerHandle, status: TaskStatus) {
        // Adopt instances of an earlier run (reconciliation answers name them).
        if !self.by_task.contains_key(&status.task_id) {
            let Some((i, g)) = status
                .task_id
                .strip_prefix(&format!("{}-", self.args.name))
                .and_then(|rest| rest.split_once('.'))
                .and_then(|(i, g)| Some((i.parse::<usize>().ok()?, g.parse::<u64>().ok()?)))
            else {
                return;
            };
            let live = matches!(
                status.state,
                TaskState::TaskStaging
                    | TaskState::TaskStarting
                    | TaskState::TaskRunning
                    | TaskState::TaskKilling
            );
            if i >= self.slots.len() || !live {
                if live {
                    // An instance beyond --instances: stop it.
                    h.kill(&status.task_id, None);
                }
                return;
            }
            if let Slot::Live { task_id, .. } = &self.slots[i] {
                if task_id != &status.task_id {
                    h.kill(&status.task_id, None); // a duplicate of an adopted instance
                    return;
                }
            }
            self.generation[i] = self.generation[i].max(g);
            self.by_task.insert(status.task_id.clone(), i);
            self.slots[i] = Slot::Live {
                task_id: status.task_id.clone(),
                since: Instant::now(),
            };
        }
        let i = self.by_task[&status.task_id];
        let current =
            matches!(&self.slots[i], Slot::Live { task_id, .. } if *task_id == status.task_id);
        println!("{} {} {}", status.task_id, status.state, status.message);
        if status.state.is_terminal() && current {
            self.ended(h, i, status.state, &status.message);
        }
    }

    fn agent_lost(&mut self, _h: &SchedulerHandle, agent_id: &str) {
        // Its instances get TASK_UNREACHABLE, then (if it never returns) a terminal state.
        println!("agent {agent_id} lost");
    }

    fn error(&mut self, _h: &SchedulerHandle, message: &str) {
        eprintln!("service: {message}");
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("service: {}", e.to_string().lines().next().unwrap_or(""));
            return std::process::ExitCode::from(2);
        }
    };
    if !(args.cpus > 0.0 && args.mem > 0.0) {
        eprintln!("service: --cpus and --mem must be positive");
        return std::process::ExitCode::from(2);
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
            eprintln!("service: --masters: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let handle = driver.handle();
    let n = args.instances;
    let service = Service {
        command: args.command.join(" "),
        slots: (0..n)
            .map(|_| Slot::Pending {
                not_before: Instant::now(),
            })
            .collect(),
        generation: vec![0; n],
        backoff: vec![Duration::ZERO; n],
        by_task: HashMap::new(),
        adopt_until: None,
        suppressed: false,
        args,
    };
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
        }
        // The instances keep running for the failover timeout; a new run adopts them.
        handle.stop();
    });
    match driver.run(service).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("service: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
