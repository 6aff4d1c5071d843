//! The Mesos driver against real masters and a real agent (over TLS, with the test PKI's
//! credential): it follows a follower's 307 to the leader, launches, survives the leader's
//! SIGKILL by subscribing again with its framework id (its tasks kept), reconciles, kills,
//! and reports a refused call as a refusal.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use agora_mesos_driver::{mesos, Driver, Encoding, Handle, Scheduler, Settings};
use agora_test_cluster::*;

const SECOND: Duration = Duration::from_secs(1);

/// What the scheduler saw, for the test to wait on.
#[derive(Debug)]
enum Seen {
    Subscribed {
        id: String,
        again: bool,
    },
    /// Tasks launched, and the master's answer (the test fails on a refusal).
    #[allow(dead_code)] // Read through Debug.
    Launched(Vec<String>, Result<(), String>),
    Update {
        task: String,
        state: mesos::TaskState,
        reconcile: bool,
        reason: Option<i32>,
    },
    Disconnected,
}

/// Launches `want` tasks running `command` (0.1 cpu, 32 MB each), declines the rest.
struct Launcher {
    want: usize,
    launched: usize,
    command: String,
    prefix: String,
    tx: mpsc::Sender<Seen>,
}

impl Scheduler for Launcher {
    fn subscribed(&mut self, _h: &Handle, id: &str, again: bool) {
        let _ = self.tx.send(Seen::Subscribed {
            id: id.to_string(),
            again,
        });
    }

    fn offers(&mut self, h: &Handle, offers: Vec<mesos::Offer>) {
        for offer in offers {
            let cpus: f64 = offer
                .resources
                .iter()
                .filter(|r| r.name == "cpus")
                .filter_map(|r| r.scalar.as_ref().map(|s| s.value))
                .sum();
            let mut tasks = Vec::new();
            let mut left = cpus;
            while self.launched < self.want && left >= 0.1 - 1e-9 {
                self.launched += 1;
                left -= 0.1;
                let id = format!("{}-{}", self.prefix, self.launched);
                let scalar = |name: &str, value: f64| mesos::Resource {
                    name: name.into(),
                    r#type: mesos::value::Type::Scalar as i32,
                    scalar: Some(mesos::value::Scalar { value }),
                    ..Default::default()
                };
                tasks.push(mesos::TaskInfo {
                    name: id.clone(),
                    task_id: mesos::TaskId { value: id },
                    agent_id: offer.agent_id.clone(),
                    resources: vec![scalar("cpus", 0.1), scalar("mem", 32.0)],
                    command: Some(mesos::CommandInfo {
                        shell: Some(true),
                        value: Some(self.command.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            if tasks.is_empty() {
                drop(h.decline(vec![offer.id.value], Some(5.0)));
            } else {
                let ids = tasks.iter().map(|t| t.task_id.value.clone()).collect();
                let accepted = h.accept(vec![offer.id.value], tasks, Some(5.0));
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let answer = accepted.await.unwrap().map_err(|e| e.to_string());
                    let _ = tx.send(Seen::Launched(ids, answer));
                });
            }
        }
    }

    fn update(&mut self, _h: &Handle, s: &mesos::TaskStatus) {
        let _ = self.tx.send(Seen::Update {
            task: s.task_id.value.clone(),
            state: s.state(),
            reconcile: s.uuid.is_none(),
            reason: s.reason,
        });
    }

    fn disconnected(&mut self, _h: &Handle) {
        let _ = self.tx.send(Seen::Disconnected);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Waits for the first event `f` accepts; panics naming `what` after `timeout`.
fn wait<T>(
    rx: &mpsc::Receiver<Seen>,
    what: &str,
    timeout: Duration,
    mut f: impl FnMut(&Seen) -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) => {
                if let Seen::Launched(ids, Err(refused)) = &e {
                    panic!("the launch of {ids:?} was refused: {refused}");
                }
                if let Some(t) = f(&e) {
                    return t;
                }
                seen.push(e);
            }
            Err(_) => panic!("timed out waiting for {what}; saw {seen:?}"),
        }
    }
}

fn framework(name: &str) -> mesos::FrameworkInfo {
    mesos::FrameworkInfo {
        name: name.into(),
        user: String::new(),
        failover_timeout: Some(120.0),
        ..Default::default()
    }
}

fn agent(cluster: &Cluster) -> AgentNode {
    let mut agent = AgentNode::new(
        cluster,
        "agent-1",
        &[
            "--resources",
            "cpus:4;mem:2048;disk:1000",
            "--isolation",
            "none",
        ],
    );
    agent.start();
    let deadline = Instant::now() + 20 * SECOND;
    while agent.agent_id().is_none() {
        assert!(Instant::now() < deadline, "the agent did not register");
        std::thread::sleep(Duration::from_millis(100));
    }
    agent
}

#[test]
fn follows_the_leader_through_a_sigkill_and_keeps_its_tasks() {
    let rt = runtime();
    let mut cluster = Cluster::start_with(3, &["--allocation-interval", "100ms"]);
    let (leader, _, _) = rt.block_on(cluster.wait_leader(1, 15 * SECOND));
    let _agent = agent(&cluster);
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.id != leader)
        .unwrap()
        .addr
        .clone();
    // Every master, the follower first: the driver starts there and is sent on.
    let mut masters = vec![follower.clone()];
    masters.extend(cluster.addrs().into_iter().filter(|a| *a != follower));
    let settings = Settings::discover(Some(&masters.join(","))).unwrap();
    assert_eq!(settings.masters[0], follower);
    let driver = Driver::new(settings, framework("mesos-driver-failover")).unwrap();
    let h = driver.handle();
    let (tx, rx) = mpsc::channel();
    const TASKS: usize = 30;
    let run = rt.spawn(driver.run(Launcher {
        want: TASKS,
        launched: 0,
        command: "sleep 600".into(),
        prefix: "long".into(),
        tx,
    }));
    let id = wait(&rx, "SUBSCRIBED", 20 * SECOND, |e| match e {
        Seen::Subscribed { id, again: false } => Some(id.clone()),
        _ => None,
    });
    let mut running = std::collections::BTreeSet::new();
    wait(&rx, "every task running", 60 * SECOND, |e| {
        if let Seen::Update {
            task,
            state: mesos::TaskState::TaskRunning,
            ..
        } = e
        {
            running.insert(task.clone());
        }
        (running.len() == TASKS).then_some(())
    });

    // SIGKILL the leader it follows (the one it was sent to, or a later one if the
    // leadership moved meanwhile): the stream ends, the driver subscribes again with its id.
    let following = h.master().expect("subscribed to a master");
    let victim_id = cluster
        .nodes
        .iter()
        .find(|n| n.addr == following)
        .expect("a master of the cluster")
        .id;
    let killed = Instant::now();
    cluster.node(victim_id).kill();
    wait(&rx, "a subscription again", 60 * SECOND, |e| match e {
        Seen::Disconnected => {
            eprintln!("disconnected {:?} after the kill", killed.elapsed());
            None
        }
        Seen::Subscribed {
            id: again_id,
            again: true,
        } => {
            assert_eq!(again_id, &id, "subscribed again as the same framework");
            Some(())
        }
        _ => None,
    });
    // Its tasks are kept: each reconciles as running, the master's answer saying so.
    let reconciled = loop {
        // (The new leader may still be settling; ask until it answers.)
        let asked = rt
            .block_on(h.reconcile(running.iter().cloned().collect()))
            .unwrap();
        if asked.is_ok() {
            break true;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(reconciled);
    let mut answered = std::collections::BTreeSet::new();
    wait(&rx, "every task reconciled", 30 * SECOND, |e| {
        if let Seen::Update {
            task,
            state,
            reconcile: true,
            reason,
        } = e
        {
            assert_eq!(
                *state,
                mesos::TaskState::TaskRunning,
                "{task} after the failover"
            );
            assert_eq!(
                *reason,
                Some(mesos::task_status::Reason::Reconciliation as i32)
            );
            answered.insert(task.clone());
        }
        (answered == running).then_some(())
    });

    // A kill through the new leader.
    let victim = running.iter().next().unwrap().clone();
    rt.block_on(h.kill(&victim, None)).unwrap().unwrap();
    wait(&rx, "TASK_KILLED", 30 * SECOND, |e| match e {
        Seen::Update {
            task,
            state: mesos::TaskState::TaskKilled,
            ..
        } if *task == victim => Some(()),
        _ => None,
    });
    rt.block_on(h.teardown()).unwrap().unwrap();
    h.stop();
    rt.block_on(run).unwrap().unwrap();
}

#[test]
fn protobuf_bodies_and_refusals() {
    let rt = runtime();
    let cluster = Cluster::start_with(1, &["--allocation-interval", "100ms"]);
    rt.block_on(cluster.wait_leader(1, 15 * SECOND));
    let _agent = agent(&cluster);
    let mut settings = Settings::discover(Some(&cluster.addrs().join(","))).unwrap();
    settings.encoding = Encoding::Protobuf;
    // Over HTTP/1.1, as Mesos' own masters speak it (the failover test runs over HTTP/2,
    // which Agora's masters choose when offered).
    settings.http2 = false;
    let driver = Driver::new(settings, framework("mesos-driver-protobuf")).unwrap();
    let h = driver.handle();
    let (tx, rx) = mpsc::channel();
    let run = rt.spawn(driver.run(Launcher {
        want: 2,
        launched: 0,
        command: "true".into(),
        prefix: "short".into(),
        tx,
    }));
    let mut finished = 0;
    wait(&rx, "two tasks finished", 60 * SECOND, |e| {
        if let Seen::Update {
            state: mesos::TaskState::TaskFinished,
            reconcile: false,
            ..
        } = e
        {
            finished += 1;
        }
        (finished == 2).then_some(())
    });
    // A kill naming no task is refused (400) by the master, naming the field.
    let refused = rt.block_on(h.kill("", None)).unwrap().unwrap_err();
    assert!(refused.is_refusal(), "{refused}");
    assert!(refused.to_string().contains("task_id"), "{refused}");
    h.stop();
    rt.block_on(run).unwrap().unwrap();
}
