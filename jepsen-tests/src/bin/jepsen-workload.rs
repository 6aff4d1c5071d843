//! `jepsen-workload`: one framework of the fault-injection harness's workload. It keeps up
//! to `--max-live` tasks running, short ones (`--short-ms`) and every `--long-every`th a
//! long one (`--long-ms`), through the scheduler driver, and records every operation it
//! invokes and every answer it gets as JSON lines (see `jepsen_tests::history`).
//!
//! Each task appends its agent's id to `MARKER_DIR/TASK_ID` when it starts, so the
//! harness can count how often each task id really ran. Task ids carry the process's
//! incarnation, so a restarted workload (`--framework-id`, after the harness killed it)
//! never reuses one. SIGTERM stops launching; the process then waits up to
//! `--drain-timeout` for its live tasks to end and exits 0.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agora_driver::{
    scalar, DriverError, Scheduler, SchedulerDriver, SchedulerHandle, TaskState, TaskStatus,
};
use agora_proto::v1 as pb;
use clap::Parser;
use jepsen_tests::history::{op, Event, EventType, Recorder};

/// Records an event; a history that cannot be written is said on stderr (the run's
/// checkers will then miss it, which they report).
fn record(recorder: &Recorder, event: Event) {
    if let Err(e) = recorder.record(&event) {
        eprintln!("jepsen-workload: history: {e}");
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "jepsen-workload",
    about = "A framework of the fault-injection workload"
)]
struct Args {
    #[arg(long)]
    masters: String,
    /// Framework name; also the `process` of its history events and its task id prefix.
    #[arg(long)]
    name: String,
    #[arg(long, default_value = "*")]
    role: String,
    /// History file (appended to).
    #[arg(long)]
    history: PathBuf,
    /// The run's start (ms since the Unix epoch): history times count from it.
    #[arg(long)]
    start_unix_ms: u64,
    /// Directory where each task appends its agent id to a file named after the task.
    #[arg(long)]
    marker_dir: PathBuf,
    /// Resume this framework (after a crash) instead of registering a new one.
    #[arg(long)]
    framework_id: Option<String>,
    #[arg(long, default_value_t = 3600.0)]
    failover_timeout: f64,
    #[arg(long, default_value_t = 8)]
    max_live: usize,
    #[arg(long, default_value_t = 200)]
    short_ms: u64,
    #[arg(long, default_value_t = 5000)]
    long_ms: u64,
    /// Every Nth task is a long one (0: none).
    #[arg(long, default_value_t = 5)]
    long_every: u64,
    #[arg(long, default_value_t = 0.1)]
    cpus: f64,
    #[arg(long, default_value_t = 32.0)]
    mem: f64,
    /// After SIGTERM, how long to wait for live tasks to end.
    #[arg(long, default_value_t = 15.0)]
    drain_timeout: f64,
}

/// The leader term an offer was made in: offer ids are `PREFIX-TERM-O<seq>`.
fn offer_term(offer_id: &str) -> Option<u64> {
    offer_id.split('-').nth(1)?.parse().ok()
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

struct Workload {
    args: Args,
    recorder: Arc<Recorder>,
    incarnation: u64,
    next_seq: u64,
    /// Tasks launched (or maybe launched) and not yet seen terminal.
    live: BTreeSet<String>,
    /// Live tasks whose agent is unreachable: they may come back, but they do not hold
    /// this framework's capacity (or one partitioned agent would stall it).
    unreachable: BTreeSet<String>,
    /// Tasks whose accept call has not returned: the master may not know them yet, so
    /// asking about them would get "unknown task" for a launch still under way.
    accepting: Arc<std::sync::Mutex<BTreeSet<String>>>,
    /// Set by SIGTERM: launch nothing more.
    draining: Arc<AtomicBool>,
    /// `live.len()`, for main to see.
    live_count: Arc<AtomicUsize>,
}

impl Workload {
    fn event(&self, kind: EventType, f: &str) -> Event {
        self.recorder.event(kind, f)
    }

    fn record(&self, event: Event) {
        record(&self.recorder, event);
    }

    fn task_info(&self, id: &str, role: &str, duration_ms: u64) -> pb::TaskInfo {
        let command = format!(
            "echo \"$AGORA_AGENT_ID\" >> {}/\"$AGORA_TASK_ID\"; sleep {:.3}",
            quote(&self.args.marker_dir.to_string_lossy()),
            duration_ms as f64 / 1000.0
        );
        let res = |name: &str, v: f64| pb::Resource {
            name: name.into(),
            role: role.to_string(),
            value: Some(pb::resource::Value::Scalar(v)),
        };
        pb::TaskInfo {
            user: String::new(),
            task_id: id.into(),
            name: id.into(),
            resources: vec![res("cpus", self.args.cpus), res("mem", self.args.mem)],
            command,
            env: Default::default(),
            executor: None,
            ..Default::default()
        }
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

impl Scheduler for Workload {
    fn registered(&mut self, h: &SchedulerHandle, framework_id: &str) {
        self.record(
            self.event(EventType::Ok, op::SUBSCRIBE)
                .framework(framework_id),
        );
        println!("framework {framework_id} subscribed");
        if self.args.framework_id.is_some() {
            // Resumed after a crash: learn the state of every task the cluster holds.
            h.reconcile(Vec::new());
        }
    }

    fn reregistered(&mut self, h: &SchedulerHandle) {
        let id = h.framework_id().unwrap_or_default();
        self.record(self.event(EventType::Ok, op::SUBSCRIBE).framework(&id));
        // The live tasks' states, in case an update was lost with the old leader (not
        // those still being accepted: their call reports, or reconciles them if it fails).
        let accepting = self.accepting.lock().unwrap_or_else(|p| p.into_inner());
        let settled: Vec<String> = self.live.difference(&accepting).cloned().collect();
        drop(accepting);
        if !settled.is_empty() {
            h.reconcile(settled);
        }
    }

    fn resource_offers(&mut self, h: &SchedulerHandle, offers: Vec<pb::Offer>) {
        let framework = h.framework_id().unwrap_or_default();
        for offer in offers {
            let mut e = self
                .event(EventType::Info, op::OFFER)
                .offer(&offer.id)
                .agent(&offer.agent_id)
                .framework(&framework);
            if let Some(term) = offer_term(&offer.id) {
                e = e.term(term);
            }
            self.record(e);
            let mut cpus = scalar(&offer.resources, "cpus");
            let mut mem = scalar(&offer.resources, "mem");
            let role = offer
                .resources
                .iter()
                .find(|r| r.name == "cpus")
                .map(|r| r.role.clone())
                .unwrap_or_default();
            let mut tasks = Vec::new();
            while !self.draining()
                && self.live.len() - self.unreachable.len() < self.args.max_live
                && cpus + 1e-9 >= self.args.cpus
                && mem + 1e-9 >= self.args.mem
            {
                self.next_seq += 1;
                let seq = self.next_seq;
                let id = format!("{}-{}-{seq}", self.args.name, self.incarnation);
                let long = self.args.long_every > 0 && seq.is_multiple_of(self.args.long_every);
                let duration = if long {
                    self.args.long_ms
                } else {
                    self.args.short_ms
                };
                self.record(
                    self.event(EventType::Invoke, op::LAUNCH)
                        .task(&id)
                        .agent(&offer.agent_id)
                        .offer(&offer.id)
                        .framework(&framework),
                );
                tasks.push(self.task_info(&id, &role, duration));
                self.live.insert(id);
                self.live_count.store(self.live.len(), Ordering::Relaxed);
                cpus -= self.args.cpus;
                mem -= self.args.mem;
            }
            if tasks.is_empty() {
                h.decline(vec![offer.id.clone()], Some(1.0));
                continue;
            }
            let ids: Vec<String> = tasks.iter().map(|t| t.task_id.clone()).collect();
            self.accepting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(ids.iter().cloned());
            let accepted = h.accept(vec![offer.id.clone()], tasks, Some(1.0));
            let accepting = self.accepting.clone();
            let recorder = self.recorder.clone();
            let (agent, offer_id) = (offer.agent_id.clone(), offer.id.clone());
            let h = h.clone();
            tokio::spawn(async move {
                let outcome = accepted.await;
                {
                    let mut a = accepting.lock().unwrap_or_else(|p| p.into_inner());
                    for id in &ids {
                        a.remove(id);
                    }
                }
                let (kind, error) = match &outcome {
                    Ok(Ok(())) => (EventType::Ok, None),
                    // The master refused the call itself: nothing was launched.
                    Ok(Err(DriverError::Rejected(s))) if s.code() != tonic::Code::Unknown => {
                        (EventType::Fail, Some(s.message().to_string()))
                    }
                    Ok(Err(e)) => (EventType::Info, Some(e.to_string())),
                    Err(e) => (EventType::Info, Some(e.to_string())),
                };
                for id in &ids {
                    let mut e = recorder
                        .event(kind, op::LAUNCH)
                        .task(id)
                        .agent(&agent)
                        .offer(&offer_id);
                    e.error = error.clone();
                    record(&recorder, e);
                }
                if kind != EventType::Ok {
                    // Whatever became of them, the cluster will say.
                    h.reconcile(ids);
                }
            });
        }
    }

    fn status_update(&mut self, h: &SchedulerHandle, status: TaskStatus) {
        let reconcile = status.uuid.is_empty();
        let mut e = self
            .event(EventType::Info, op::UPDATE)
            .task(&status.task_id)
            .agent(&status.agent_id)
            .state(status.state);
        e.reconcile = reconcile;
        if !status.message.is_empty() {
            e.error = Some(status.message.clone());
        }
        self.record(e);
        let terminal = status.state.is_terminal();
        // "unknown task" answers a reconciliation of a launch that never happened.
        if status.state == TaskState::TaskUnreachable && self.live.contains(&status.task_id) {
            self.unreachable.insert(status.task_id.clone());
            if !self.draining() {
                h.revive();
            }
        } else {
            self.unreachable.remove(&status.task_id);
        }
        if terminal || (reconcile && status.message == "unknown task") {
            self.live.remove(&status.task_id);
            self.live_count.store(self.live.len(), Ordering::Relaxed);
            if !self.draining() {
                h.revive();
            }
        }
    }

    fn disconnected(&mut self, _h: &SchedulerHandle) {
        self.record(self.event(EventType::Info, "disconnected"));
    }

    fn error(&mut self, _h: &SchedulerHandle, message: &str) {
        let mut e = self.event(EventType::Info, "error");
        e.error = Some(message.to_string());
        self.record(e);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!(
                "jepsen-workload: {}",
                e.to_string().lines().next().unwrap_or("")
            );
            return ExitCode::from(2);
        }
    };
    let recorder = match Recorder::create(&args.history, &args.name, args.start_unix_ms) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("jepsen-workload: --history: {e}");
            return ExitCode::from(2);
        }
    };
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
            eprintln!("jepsen-workload: --masters: {e}");
            return ExitCode::from(2);
        }
    };
    record(&recorder, recorder.event(EventType::Invoke, op::SUBSCRIBE));
    let handle = driver.handle();
    let drain = Duration::from_secs_f64(args.drain_timeout.max(0.0));
    let draining = Arc::new(AtomicBool::new(false));
    let live_count = Arc::new(AtomicUsize::new(0));
    let workload = Workload {
        incarnation: recorder.now_ms(),
        args,
        recorder: recorder.clone(),
        next_seq: 0,
        live: BTreeSet::new(),
        unreachable: BTreeSet::new(),
        accepting: Default::default(),
        draining: draining.clone(),
        live_count: live_count.clone(),
    };
    // SIGTERM: launch nothing more, wait for the live tasks to end, then stop.
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("jepsen-workload: cannot catch SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run = tokio::spawn(driver.run(workload));
    tokio::select! {
        r = run => {
            return match r {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(e)) => { eprintln!("jepsen-workload: {e}"); ExitCode::FAILURE }
                Err(e) => { eprintln!("jepsen-workload: {e}"); ExitCode::FAILURE }
            };
        }
        _ = term.recv() => {}
    }
    draining.store(true, Ordering::Relaxed);
    let _ = handle.suppress().await;
    let deadline = tokio::time::Instant::now() + drain;
    while live_count.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    handle.stop();
    ExitCode::SUCCESS
}
