//! An agent's `Tasks` and executor API on a runtime of its own (so a test can crash it),
//! and the leader's side of its session as a test plays it. Shared by the tests of the
//! task path and of checkpoint faults.

use std::sync::Arc;
use std::time::Duration;

use agora_agent::config::AgentConfig;
use agora_agent::tasks::{ExecutorApi, Tasks};
use agora_proto::v1 as pb;
use agora_proto::v1::executor_server::ExecutorServer;
use agora_registry::Resources;
use tokio::sync::mpsc;

/// One agent instance on its own runtime, so the test can kill it (and every connection
/// it holds) as an agent crash would.
pub struct AgentInstance {
    pub tasks: Tasks,
    runtime: Option<tokio::runtime::Runtime>,
}

impl AgentInstance {
    /// An agent on `work_dir` with cgroup root `root` whose executors wait
    /// `recovery_timeout` for it.
    pub fn start(
        work_dir: &std::path::Path,
        addr: Option<std::net::SocketAddr>,
        root: &str,
        recovery_timeout: Duration,
    ) -> (AgentInstance, std::net::SocketAddr) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let bind = addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
        // The port of a crashed agent may take a moment to be free again.
        let std_listener = (0..50)
            .find_map(|_| {
                std::net::TcpListener::bind(bind).ok().or_else(|| {
                    std::thread::sleep(Duration::from_millis(100));
                    None
                })
            })
            .unwrap_or_else(|| panic!("cannot bind {bind}"));
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let config = Arc::new(AgentConfig {
            masters: vec!["127.0.0.1:1".into()],
            advertise: addr.to_string(),
            hostname: "test".into(),
            work_dir: work_dir.to_path_buf(),
            resources: Resources::parse("cpus:2;mem:512").unwrap(),
            attributes: vec![],
            executor_binary: agora_test_cluster::binary("agora-executor"),
            executor_recovery_timeout: recovery_timeout,
            executor_http_port: 0,
            gc: Default::default(),
            images: agora_agent::image::ImageSettings::defaults(work_dir),
            max_task_pids: Some(256),
            check_agent_port_range_only: false,
            sandbox_key: agora_security::grant::GrantKey::generate(),
            output: Default::default(),
            log_level: "info".into(),
            // The test serves the executor API in plaintext.
            security: agora_agent::config::AgentSecurity {
                insecure: true,
                ..Default::default()
            },
        });
        let isolation = agora_agent::isolation::Isolation::detect(
            agora_agent::isolation::IsolationMode::Cgroups,
            root,
        )
        .unwrap();
        let tasks = Tasks::recover(config, Arc::new(isolation)).unwrap();
        tasks.set_agent_id("test-agent");
        let app = tonic::service::Routes::new(ExecutorServer::new(ExecutorApi {
            tasks: tasks.clone(),
        }))
        .into_axum_router();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let _ = axum::serve(listener, app).await;
        });
        (
            AgentInstance {
                tasks,
                runtime: Some(runtime),
            },
            addr,
        )
    }

    /// Like SIGKILL of the agent: its runtime and every connection go at once.
    pub fn crash(self) {}
}

impl Drop for AgentInstance {
    /// Also when a test panics (a runtime must not be dropped in async code).
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// How long the executors of most tests wait for a crashed agent.
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The leader's side of the session, as the test plays it.
pub struct Leader {
    pub rx: mpsc::Receiver<pb::AgentMessage>,
}

impl Leader {
    pub fn attach(tasks: &Tasks) -> Leader {
        let (tx, rx) = mpsc::channel(1024);
        tasks.session_opened(tx);
        Leader { rx }
    }

    pub async fn next_update(&mut self, timeout: Duration) -> Option<pb::StatusUpdate> {
        loop {
            match tokio::time::timeout(timeout, self.rx.recv()).await {
                Ok(Some(pb::AgentMessage {
                    kind: Some(pb::agent_message::Kind::Update(u)),
                })) => return Some(u),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }

    /// Reads and acknowledges updates until `task` reaches a terminal state; returns them.
    pub async fn follow(&mut self, tasks: &Tasks, task: &str) -> Vec<pb::StatusUpdate> {
        let mut seen = Vec::new();
        loop {
            let u = self
                .next_update(Duration::from_secs(20))
                .await
                .unwrap_or_else(|| panic!("no update for {task}; so far {seen:?}"));
            tasks.acknowledged(&pb::StatusAck {
                framework_id: u.framework_id.clone(),
                task_id: u.task_id.clone(),
                uuid: u.uuid.clone(),
            });
            if u.task_id != task {
                continue;
            }
            let done = agora_driver::convert::task_state_from_proto(u.state)
                .expect("a valid state")
                .is_terminal();
            // A re-sent duplicate of the previous update is not a new state.
            if seen
                .last()
                .is_none_or(|p: &pb::StatusUpdate| p.uuid != u.uuid)
            {
                seen.push(u);
            }
            if done {
                return seen;
            }
        }
    }
}

pub fn task(id: &str, command: &str, cpus: f64, mem: f64) -> pb::TaskInfo {
    pb::TaskInfo {
        task_id: id.into(),
        name: id.into(),
        resources: vec![
            pb::Resource {
                name: "cpus".into(),
                role: String::new(),
                value: Some(pb::resource::Value::Scalar(cpus)),
            },
            pb::Resource {
                name: "mem".into(),
                role: String::new(),
                value: Some(pb::resource::Value::Scalar(mem)),
            },
        ],
        command: command.into(),
        env: Default::default(),
        executor: None,
        user: String::new(),
        ..Default::default()
    }
}

pub fn launch(tasks: &Tasks, t: pb::TaskInfo) {
    tasks.launch(pb::LaunchTasks {
        framework_id: "fw-1".into(),
        tasks: vec![t],
    });
}

pub fn states(updates: &[pb::StatusUpdate]) -> Vec<&'static str> {
    updates.iter().map(|u| u.state().as_str_name()).collect()
}
