//! `mesos_batch`: the `batch` example (`driver/examples/batch.rs`) as a Mesos framework:
//! it runs K short tasks through Mesos' v1 scheduler HTTP API and exits when all ended.
//!
//! ```text
//! cargo run -p agora-mesos-driver --example mesos_batch -- --masters 127.0.0.1:5050 \
//!     --tasks 100 --cpus 0.5 --mem 32 --encoding json
//! ```
//!
//! It packs pending tasks into each offer while they fit, declines what it cannot use,
//! suppresses offers once everything is launched, and exits 0 when all K tasks finished
//! (1 if any failed). A task dropped before it ran is launched again under a new attempt
//! id; a launch whose call failed is reconciled and, if unknown, launched again; after a
//! re-subscription (a new leader) every launched task not yet ended is reconciled, so a
//! launch the old leader accepted but never committed is found and launched again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::process::ExitCode;
use std::time::Instant;

use agora_mesos_driver::{mesos, Driver, DriverError, Encoding, Handle, Scheduler, Settings};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Runs K tasks through Mesos' scheduler HTTP API and exits when all ended")]
struct Args {
    /// Masters, HOST:PORT,... (any or all; default: the client configuration's).
    #[arg(long)]
    masters: Option<String>,
    /// Framework name; task ids are NAME-0, NAME-1, ...
    #[arg(long, default_value = "mesos-batch")]
    name: String,
    #[arg(long, default_value_t = 10)]
    tasks: usize,
    #[arg(long, default_value_t = 0.1)]
    cpus: f64,
    #[arg(long, default_value_t = 32.0)]
    mem: f64,
    /// `json` or `protobuf`.
    #[arg(long, default_value = "json")]
    encoding: String,
    /// Speak HTTP/1.1 only (by default HTTP/2 is offered over TLS and the master chooses).
    #[arg(long)]
    http1: bool,
}

struct Batch {
    args: Args,
    pending: VecDeque<usize>,
    attempts: Vec<u32>,
    by_id: HashMap<String, usize>,
    done: HashSet<usize>,
    /// Launched and not yet ended.
    launched: HashSet<usize>,
    finished: usize,
    failed: Vec<String>,
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

    fn relaunch(&mut self, h: &Handle, task: usize, new_attempt: bool) {
        if new_attempt {
            self.attempts[task] += 1;
            self.by_id.insert(self.attempt_id(task), task);
        }
        self.launched.remove(&task);
        if !self.pending.contains(&task) {
            self.pending.push_back(task);
        }
        if self.suppressed {
            self.suppressed = false;
            drop(h.revive());
        }
    }
}

fn scalar(name: &str, value: f64) -> mesos::Resource {
    mesos::Resource {
        name: name.into(),
        r#type: mesos::value::Type::Scalar as i32,
        scalar: Some(mesos::value::Scalar { value }),
        ..Default::default()
    }
}

impl Scheduler for Batch {
    fn subscribed(&mut self, h: &Handle, framework_id: &str, again: bool) {
        if !again {
            println!("framework {framework_id} subscribed");
            return;
        }
        // What became of the launches made under the old leader?
        let ids: Vec<String> = self.launched.iter().map(|&t| self.attempt_id(t)).collect();
        if !ids.is_empty() {
            drop(h.reconcile(ids));
        }
    }

    fn offers(&mut self, h: &Handle, offers: Vec<mesos::Offer>) {
        for offer in offers {
            let total = |name: &str| -> f64 {
                offer
                    .resources
                    .iter()
                    .filter(|r| r.name == name)
                    .filter_map(|r| r.scalar.as_ref().map(|s| s.value))
                    .sum()
            };
            let (mut cpus, mut mem) = (total("cpus"), total("mem"));
            let mut tasks = Vec::new();
            while cpus + 1e-9 >= self.args.cpus && mem + 1e-9 >= self.args.mem {
                let Some(t) = self.pending.pop_front() else {
                    break;
                };
                let id = self.attempt_id(t);
                self.launched.insert(t);
                tasks.push(mesos::TaskInfo {
                    name: id.clone(),
                    task_id: mesos::TaskId { value: id },
                    agent_id: offer.agent_id.clone(),
                    resources: vec![scalar("cpus", self.args.cpus), scalar("mem", self.args.mem)],
                    command: Some(mesos::CommandInfo {
                        shell: Some(true),
                        value: Some("true".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                cpus -= self.args.cpus;
                mem -= self.args.mem;
            }
            if tasks.is_empty() {
                drop(h.decline(vec![offer.id.value], None));
                continue;
            }
            let ids: Vec<String> = tasks.iter().map(|t| t.task_id.value.clone()).collect();
            let accepted = h.accept(vec![offer.id.value], tasks, None);
            let h = h.clone();
            tokio::spawn(async move {
                match accepted.await {
                    Ok(Ok(())) => {}
                    // Malformed tasks would be refused again on every offer: stop.
                    Ok(Err(e @ DriverError::Refused { code: 400, .. })) => {
                        eprintln!("mesos_batch: the master refuses these tasks: {e}");
                        std::process::exit(2);
                    }
                    // Applied or not (or refused while the subscription is being made
                    // again): ask; unknown ones come back TASK_LOST "unknown task", and a
                    // re-subscription reconciles every launched task anyway.
                    _ => drop(h.reconcile(ids)),
                }
            });
        }
        if self.pending.is_empty() && !self.suppressed {
            self.suppressed = true;
            drop(h.suppress());
        }
    }

    fn update(&mut self, h: &Handle, status: &mesos::TaskStatus) {
        let Some(&task) = self.by_id.get(&status.task_id.value) else {
            return;
        };
        if self.done.contains(&task) || status.task_id.value != self.attempt_id(task) {
            return;
        }
        use mesos::TaskState as S;
        let message = status.message.clone().unwrap_or_default();
        match status.state() {
            S::TaskFinished => {
                self.launched.remove(&task);
                self.done.insert(task);
                self.finished += 1;
            }
            // Never ran (dropped, or unknown to the master after a failed call).
            S::TaskDropped => self.relaunch(h, task, true),
            S::TaskLost if status.uuid.is_none() && message == "unknown task" => {
                self.relaunch(h, task, false)
            }
            S::TaskLost if message.starts_with("launch refused") => self.relaunch(h, task, true),
            S::TaskFailed | S::TaskKilled | S::TaskLost | S::TaskError | S::TaskGone => {
                self.launched.remove(&task);
                self.done.insert(task);
                self.failed.push(format!(
                    "{} {:?} {message}",
                    status.task_id.value,
                    status.state()
                ));
            }
            _ => {}
        }
        if self.done.len() == self.args.tasks {
            let secs = self.started.elapsed().as_secs_f64();
            println!(
                "{} of {} tasks finished in {secs:.2}s ({:.0} tasks/s)",
                self.finished,
                self.args.tasks,
                self.finished as f64 / secs.max(1e-9)
            );
            for f in &self.failed {
                println!("  failed: {f}");
            }
            let _ = self.outcome.send(Some(self.failed.is_empty()));
            drop(h.teardown());
        }
    }

    fn error(&mut self, _h: &Handle, message: &str) {
        eprintln!("mesos_batch: {message}");
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
            eprintln!(
                "mesos_batch: {}",
                e.to_string().lines().next().unwrap_or("")
            );
            return ExitCode::from(2);
        }
    };
    let encoding = match args.encoding.as_str() {
        "json" => Encoding::Json,
        "protobuf" => Encoding::Protobuf,
        other => {
            eprintln!("mesos_batch: --encoding: {other:?} is neither json nor protobuf");
            return ExitCode::from(2);
        }
    };
    let mut settings = match Settings::discover(args.masters.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mesos_batch: {e}");
            return ExitCode::from(2);
        }
    };
    settings.encoding = encoding;
    settings.http2 = !args.http1;
    let framework = mesos::FrameworkInfo {
        name: args.name.clone(),
        user: String::new(),
        failover_timeout: Some(60.0),
        ..Default::default()
    };
    let driver = match Driver::new(settings, framework) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("mesos_batch: {e}");
            return ExitCode::from(2);
        }
    };
    let (outcome, result) = tokio::sync::watch::channel(None);
    let mut batch = Batch {
        pending: (0..args.tasks).collect(),
        attempts: vec![0; args.tasks],
        by_id: HashMap::new(),
        done: HashSet::new(),
        launched: HashSet::new(),
        finished: 0,
        failed: Vec::new(),
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
        eprintln!("mesos_batch: {e}");
        return ExitCode::FAILURE;
    }
    let ok = *result.borrow();
    match ok {
        Some(true) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
