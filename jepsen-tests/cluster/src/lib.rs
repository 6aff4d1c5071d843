//! # agora-test-cluster
//!
//! A cluster of real `agora-master` and `agora-agent` processes on loopback, for
//! integration tests and benchmarks (the master's, the agent's, the CLI's) and for the
//! fault harness: start, SIGKILL, SIGSTOP/SIGCONT, restart, wipe, and ask each replica for
//! its view. [`overcommit`] is the one over-commit check on a master's `/state`, used here
//! ([`overcommitted`]) and by the harness's checker.
//!
//! Nothing it starts outlives the test ([`reap`]): every process starts in its own process
//! group with a parent-death signal, so a test process that dies (SIGKILL included) takes
//! its masters and agents along; dropping a [`Node`] or an [`AgentNode`] (also while a
//! failing test unwinds) kills its process group, and an agent's drop also kills its
//! executors and their tasks (marked with [`reap::OWNER_ENV`]) and removes its cgroup root,
//! which is its own (`agora-test-<pid>-<n>`) unless the test names one with
//! `--cgroups-root`.
//!
//! What it must not do: depend on any Agora component but the public API (`agora-proto`,
//! `agora-driver`). It runs the workspace's binaries, built on demand by [`binary`] and
//! [`example`] with `cargo build`, never linked in: the master's own tests depend on this
//! crate, so it can never depend on the master.

pub mod disk;
pub mod overcommit;
pub mod pki;
pub mod reap;
pub mod registry;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agora_driver::{MasterClient, RetryPolicy};
use agora_proto::v1 as pb;
use agora_proto::v1::master_client::MasterClient as MasterRpc;

pub use overcommit::overcommitted;

/// Cluster tests in one test binary run one at a time: timing assertions (failover within
/// 2 s) must not depend on how many other clusters share the machine's two cores.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Path of a workspace binary (`agora-master`, `agora-agent`) next to the running test's
/// `deps/` directory. The first call per binary and test process runs `cargo build` for it
/// (a no-op when fresh), because `cargo test -p X` rebuilds only X's own binaries and a
/// stale binary would test old code.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .to_path_buf();
    let path = profile_dir.join(name);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        // With the examples: they take the dev-dependencies' features, as the test build
        // does, so neither build undoes the other's (TLS crates rebuilt, ~20 s, each time).
        cmd.args(["build", "--workspace", "--examples", "--bin", name]);
        clean_cargo_env(&mut cmd);
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build");
        assert!(status.success(), "building {name} failed");
        built.push(name.to_string());
    }
    path
}

/// Drops the variables `cargo test` sets for a test process (`CARGO_MANIFEST_DIR`,
/// `CARGO_PKG_*`, ...) from a nested `cargo build`: a build script that watches one (ring's
/// watches `CARGO_MANIFEST_DIR`) would otherwise rerun, and rebuild the TLS stack, each
/// time a test of another package builds a binary.
fn clean_cargo_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_",
        ]
        .iter()
        .any(|p| key.starts_with(p))
            || key == "CARGO_TARGET_TMPDIR"
        {
            cmd.env_remove(key);
        }
    }
}

/// Path of an example binary of a workspace package, built first (once per test process).
/// It is built with the whole workspace's features, as [`binary`] builds: building one
/// package alone resolves other features and rebuilds shared dependencies (TLS, ~20 s)
/// back and forth between the two.
pub fn example(package: &str, name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let _ = package;
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .to_path_buf();
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--workspace", "--example", name]);
        clean_cargo_env(&mut cmd);
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build");
        assert!(status.success(), "building example {name} failed");
        built.push(name.to_string());
    }
    profile_dir.join("examples").join(name)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Node {
    /// With TLS, credentials and ACLs from [`pki`] (else `--insecure`).
    pub secure: bool,
    pub id: u64,
    pub addr: String,
    pub work_dir: PathBuf,
    pub log: PathBuf,
    pub peers: String,
    pub join: bool,
    /// Extra flags for every start.
    pub extra_args: Vec<String>,
    child: Option<Child>,
    restarts: u32,
}

impl Node {
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(binary("agora-master"));
        cmd.args([
            "--id",
            &self.id.to_string(),
            "--listen",
            &self.addr,
            "--peers",
            &self.peers,
            "--work-dir",
            self.work_dir.to_str().unwrap(),
            "--log-level",
            "info,openraft=error",
        ]);
        if self.join {
            cmd.arg("--join");
        }
        if self.secure {
            cmd.args(pki::pki().master_flags(self.id, &self.addr));
        } else {
            cmd.arg("--insecure");
        }
        cmd.args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = reap::spawn(cmd).expect("spawn agora-master");
        self.child = Some(child);
        self.restarts += 1;
    }

    /// SIGKILL (to its process group): no shutdown path runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            reap::kill_group(c.id());
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGTERM, then waits up to `within` for it to exit: how long it took, or Err (and
    /// it is SIGKILLed) if it was still running.
    pub fn terminate(&mut self, within: Duration) -> Result<Duration, String> {
        let Some(mut c) = self.child.take() else {
            return Err("not running".into());
        };
        let start = std::time::Instant::now();
        signal(c.id(), libc::SIGTERM);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                let _ = status;
                return Ok(start.elapsed());
            }
            if start.elapsed() > within {
                reap::kill_group(c.id());
                let _ = c.kill();
                let _ = c.wait();
                return Err(format!("still running {within:?} after SIGTERM"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The exit status's code once the process has exited by itself (it is then no
    /// longer running); None while it runs or when it was never started.
    pub fn exit_code(&mut self) -> Option<i32> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status.code().unwrap_or(-1))
    }

    /// What the replica has written to its log file so far (every start).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wipe(&mut self) {
        assert!(self.child.is_none());
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }

    pub async fn status(&self) -> Option<pb::StatusReply> {
        self.child.as_ref()?;
        let security = if self.secure {
            pki::pki().client_security(Some(pki::ADMIN))
        } else {
            agora_security::client::ClientSecurity::insecure()
        };
        let ch = security
            .endpoint(&self.addr)
            .ok()?
            .connect_timeout(Duration::from_millis(200))
            .timeout(Duration::from_millis(500))
            .connect_lazy();
        MasterRpc::new(security.authorized(ch))
            .get_status(pb::GetStatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Cluster {
    /// With TLS, credentials and ACLs (the default), or `--insecure` (for comparisons).
    pub secure: bool,
    pub nodes: Vec<Node>,
    pub dir: tempfile::TempDir,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Drop for Cluster {
    /// A failing test with `AGORA_KEEP_LOGS=DIR` set leaves every node's log in DIR.
    fn drop(&mut self) {
        let Some(keep) = std::env::var_os("AGORA_KEEP_LOGS") else {
            return;
        };
        if !std::thread::panicking() {
            return;
        }
        let dest = PathBuf::from(keep).join(format!("{}-{}", std::process::id(), unix_ms()));
        let _ = std::fs::create_dir_all(&dest);
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "log") {
                    let _ = std::fs::copy(e.path(), dest.join(e.file_name()));
                }
            }
        }
        eprintln!("logs kept in {}", dest.display());
    }
}

impl Cluster {
    /// Starts `n` replicas with ids 1..=n forming one quorum.
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, &[])
    }

    /// Starts `n` replicas, each with `extra_args` added to its flags, with TLS,
    /// credentials and ACLs on.
    pub fn start_with(n: usize, extra_args: &[&str]) -> Cluster {
        Self::start_with_security(n, extra_args, true)
    }

    /// Starts `n` replicas with `--insecure` (no TLS, no credentials): only to measure
    /// what security costs.
    pub fn start_insecure(n: usize, extra_args: &[&str]) -> Cluster {
        Self::start_with_security(n, extra_args, false)
    }

    /// Starts `n` replicas (TLS, credentials and ACLs on), each changed by `customize`
    /// before it starts (a work dir of its own on a small filesystem, flags of its own).
    pub fn start_customized(n: usize, customize: impl FnMut(&mut Node)) -> Cluster {
        Self::start_customized_with_security(n, &[], true, customize)
    }

    fn start_with_security(n: usize, extra_args: &[&str], secure: bool) -> Cluster {
        Self::start_customized_with_security(n, extra_args, secure, |_| {})
    }

    fn start_customized_with_security(
        n: usize,
        extra_args: &[&str],
        secure: bool,
        mut customize: impl FnMut(&mut Node),
    ) -> Cluster {
        let serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let addrs: Vec<String> = (0..n)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let peers = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes: Vec<Node> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| Node {
                secure,
                id: i as u64 + 1,
                addr: a.clone(),
                work_dir: dir.path().join(format!("m{}", i + 1)),
                log: dir.path().join(format!("m{}.log", i + 1)),
                peers: peers.clone(),
                join: false,
                extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
                child: None,
                restarts: 0,
            })
            .collect();
        for n in nodes.iter_mut() {
            customize(n);
            n.start();
        }
        Cluster {
            secure,
            nodes,
            dir,
            _serial: serial,
        }
    }

    /// Adds (does not start) a replica that will join through a membership change.
    pub fn add_joiner(&mut self, id: u64) -> &mut Node {
        let addr = format!("127.0.0.1:{}", free_port());
        self.nodes.push(Node {
            secure: self.secure,
            id,
            addr: addr.clone(),
            work_dir: self.dir.path().join(format!("m{id}")),
            log: self.dir.path().join(format!("m{id}.log")),
            peers: format!("{id}={addr}"),
            join: true,
            extra_args: Vec::new(),
            child: None,
            restarts: 0,
        });
        self.nodes.last_mut().unwrap()
    }

    pub fn node(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).unwrap()
    }

    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// How a client reaches this cluster as the admin (TLS and its credential), or
    /// plaintext for an insecure cluster.
    pub fn client_security(&self) -> agora_security::client::ClientSecurity {
        if self.secure {
            pki::pki().client_security(Some(pki::ADMIN))
        } else {
            agora_security::client::ClientSecurity::insecure()
        }
    }

    pub fn client(&self) -> MasterClient {
        MasterClient::with_security(
            self.addrs(),
            RetryPolicy {
                deadline: Duration::from_secs(10),
                ..Default::default()
            },
            self.client_security(),
        )
        .unwrap()
    }

    /// A client that gives up quickly (to show that a minority accepts nothing).
    pub fn impatient_client(&self) -> MasterClient {
        MasterClient::with_security(
            self.addrs(),
            RetryPolicy {
                deadline: Duration::from_secs(3),
                call_timeout: Duration::from_secs(1),
                ..Default::default()
            },
            self.client_security(),
        )
        .unwrap()
    }

    /// Statuses of every running replica that answers.
    pub async fn statuses(&self) -> Vec<pb::StatusReply> {
        let mut out = Vec::new();
        for n in &self.nodes {
            if let Some(s) = n.status().await {
                out.push(s);
            }
        }
        out
    }

    /// Waits until one running replica is leader with term >= `min_term`, and returns
    /// (leader id, term, time waited). Panics after `timeout`.
    pub async fn wait_leader(&self, min_term: u64, timeout: Duration) -> (u64, u64, Duration) {
        let start = Instant::now();
        loop {
            let leaders: Vec<_> = self
                .statuses()
                .await
                .into_iter()
                .filter(|s| s.role == "leader" && s.term >= min_term)
                .collect();
            if let Some(l) = leaders.iter().max_by_key(|s| s.term) {
                return (l.id, l.term, start.elapsed());
            }
            if start.elapsed() > timeout {
                self.dump_logs();
                panic!("no leader with term >= {min_term} within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until replica `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64, timeout: Duration) -> pb::StatusReply {
        let start = Instant::now();
        loop {
            let node = self.nodes.iter().find(|n| n.id == id).unwrap();
            if let Some(s) = node.status().await {
                if s.last_applied >= index {
                    return s;
                }
            }
            if start.elapsed() > timeout {
                self.dump_logs();
                panic!("replica {id} did not apply index {index} within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn dump_logs(&self) {
        for n in &self.nodes {
            if let Ok(text) = std::fs::read_to_string(&n.log) {
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("----- replica {} log (last 40 lines) -----", n.id);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

pub fn agent_info(i: usize) -> pb::AgentInfo {
    pb::AgentInfo {
        id: format!("agent-{i}"),
        hostname: format!("host-{i}"),
        address: format!("10.0.{}.{}:5051", i / 250, i % 250 + 1),
        resources: vec![pb::Resource {
            name: "cpus".into(),
            role: String::new(),
            value: Some(pb::resource::Value::Scalar(4.0)),
        }],
        attributes: vec![],
    }
}

/// Registers agent `i` through the leader; returns the commit's log index.
pub async fn register(client: &MasterClient, i: usize) -> Result<u64, agora_driver::DriverError> {
    client
        .call(|ch| async move {
            MasterRpc::new(ch)
                .register_agent(pb::RegisterAgentRequest {
                    incarnation: 0,
                    attempt: 0,
                    tasks: vec![],
                    agent: Some(agent_info(i)),
                })
                .await
        })
        .await
        .map(|r| r.log_index)
}

pub async fn state(client: &MasterClient) -> pb::ClusterState {
    client
        .call(|ch| async move { MasterRpc::new(ch).get_state(pb::GetStateRequest {}).await })
        .await
        .unwrap()
}

/// Sends `signal` to a process (SIGSTOP/SIGCONT for pauses).
pub fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a pid we started.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// A real `agora-agent` process.
pub struct AgentNode {
    pub addr: String,
    pub work_dir: PathBuf,
    pub log: PathBuf,
    pub masters: String,
    pub args: Vec<String>,
    /// Its `--cgroups-root`: `agora-test-<pid>-<n>` (removed with everything in it when
    /// the node is dropped) unless `args` names one.
    pub cgroups_root: String,
    /// The [`reap::OWNER_ENV`] value of the agent, its executors and their tasks.
    owner: String,
    /// Whether `cgroups_root` is the fixture's own, to remove on drop.
    own_root: bool,
    /// With a certificate from [`pki`] (else `--insecure`).
    secure: bool,
    child: Option<Child>,
}

/// A name unique to this agent node among every test process on the machine.
fn unique_owner() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("agora-test-{}-{n}", std::process::id())
}

/// The value of `--cgroups-root` in `args` (either `--cgroups-root X` or `--cgroups-root=X`).
fn named_root(args: &[String]) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == "--cgroups-root" {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix("--cgroups-root=").map(str::to_string)
        }
    })
}

impl AgentNode {
    /// An agent of `cluster` (not started), with `args` added to its flags.
    pub fn new(cluster: &Cluster, name: &str, args: &[&str]) -> AgentNode {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let owner = unique_owner();
        let named = named_root(&args);
        AgentNode {
            addr: format!("127.0.0.1:{}", free_port()),
            work_dir: cluster.dir.path().join(name),
            log: cluster.dir.path().join(format!("{name}.log")),
            masters: cluster.addrs().join(","),
            own_root: named.is_none(),
            cgroups_root: named.unwrap_or_else(|| owner.clone()),
            owner,
            args,
            secure: cluster.secure,
            child: None,
        }
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "agent already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        // The agent starts its executors from the binary beside it: as fresh as itself.
        binary("agora-executor");
        let mut cmd = Command::new(binary("agora-agent"));
        cmd.args([
            "--masters",
            &self.masters,
            "--listen",
            &self.addr,
            "--work-dir",
        ])
        .arg(&self.work_dir)
        // Executors of an agent a test ends with outlive it only briefly.
        .args(["--executor-recovery-timeout", "30s"]);
        if self.own_root {
            cmd.args(["--cgroups-root", &self.cgroups_root]);
        }
        if self.secure {
            cmd.args(pki::pki().agent_flags(&self.addr));
        } else {
            cmd.arg("--insecure");
        }
        cmd.args(&self.args)
            .env(reap::OWNER_ENV, &self.owner)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(reap::spawn(cmd).expect("spawn agora-agent"));
    }

    /// SIGKILL (to its process group). Its executors and their tasks keep running, as
    /// after an agent crash; dropping the node ends them.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            reap::kill_group(c.id());
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the agent, then every executor and task it started (they carry its
    /// [`reap::OWNER_ENV`] value), then removes its cgroup root if it is the fixture's own.
    pub fn kill_all(&mut self) {
        self.kill();
        let owner = self.owner.clone();
        reap::kill_owned(|o| o == owner);
        if self.own_root {
            if let Err(e) = reap::remove_cgroup_root(&self.cgroups_root) {
                eprintln!("agora-test-cluster: agent {}: {e}", self.addr);
            }
        }
    }

    /// Executors and tasks of this agent still alive (the agent itself included).
    pub fn owned_pids(&self) -> Vec<i32> {
        reap::owned_pids(|o| o == self.owner)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The agent process's exit code, once it has exited by itself (`None` while it runs
    /// or when it was never started).
    pub fn exit_code(&mut self) -> Option<i32> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status.code().unwrap_or(-1))
    }

    /// The agent's id, once it has registered.
    pub fn agent_id(&self) -> Option<String> {
        std::fs::read_to_string(self.work_dir.join("agent_id"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// The agent's `/health` JSON.
    pub fn health(&self) -> Option<serde_json::Value> {
        let (code, body) = if self.secure {
            https_get(&self.addr, "/health")?
        } else {
            http_get(&self.addr, "/health")?
        };
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    pub fn dump_log(&self) {
        if let Ok(text) = std::fs::read_to_string(&self.log) {
            eprintln!("----- agent {} log -----\n{text}", self.addr);
        }
    }
}

impl Drop for AgentNode {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A plain HTTP/1.1 GET: (status code, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    get_over(connect(addr)?, addr, path)
}

/// `GET path` over TLS, trusting the fixture's CA (an agent's port is TLS-only).
pub fn https_get(addr: &str, path: &str) -> Option<(u16, String)> {
    https_get_as(addr, addr.rsplit_once(':')?.0, path)
}

/// `GET path` over TLS to `addr`, verifying the server's certificate for `server_name`.
pub fn https_get_as(addr: &str, server_name: &str, path: &str) -> Option<(u16, String)> {
    let tls = agora_security::tls::ClientTls::load(&pki::pki().ca_path(), None).ok()?;
    let config = std::sync::Arc::new(tls.rustls_config().ok()?);
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).ok()?;
    let conn = rustls::ClientConnection::new(config, name).ok()?;
    get_over(rustls::StreamOwned::new(conn, connect(addr)?), addr, path)
}

/// A client for repeated `GET`s over TLS, as a dashboard or a load test reads: its TLS
/// configuration is built once (so later connections resume the TLS session), and bodies
/// are read into the caller's buffer, not copied into strings.
pub struct HttpsReader {
    config: std::sync::Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
}

impl HttpsReader {
    /// A reader of `addr` that trusts the fixture's CA.
    pub fn new(addr: &str) -> Option<HttpsReader> {
        let tls = agora_security::tls::ClientTls::load(&pki::pki().ca_path(), None).ok()?;
        let host = addr.rsplit_once(':')?.0.to_string();
        Some(HttpsReader {
            config: std::sync::Arc::new(tls.rustls_config().ok()?),
            name: rustls::pki_types::ServerName::try_from(host).ok()?,
        })
    }

    /// `GET path` on a new connection to `addr`; `buf` holds the whole answer after it.
    /// The status code and where the body starts in `buf`.
    pub fn get(&self, addr: &str, path: &str, buf: &mut Vec<u8>) -> Option<(u16, usize)> {
        use std::io::{Read, Write};
        let conn = rustls::ClientConnection::new(self.config.clone(), self.name.clone()).ok()?;
        let mut s = rustls::StreamOwned::new(conn, connect(addr)?);
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        buf.clear();
        // A TLS peer may close without close_notify: keep what arrived.
        let _ = s.read_to_end(buf);
        let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&buf[..head_end]).ok()?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, head_end + 4))
    }
}

fn connect(addr: &str) -> Option<std::net::TcpStream> {
    // Short timeouts: a paused (SIGSTOPped) process accepts connections but never answers.
    let target = addr.parse::<std::net::SocketAddr>().ok()?;
    let s = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(1))).ok()?;
    Some(s)
}

fn get_over(
    mut s: impl std::io::Read + std::io::Write,
    addr: &str,
    path: &str,
) -> Option<(u16, String)> {
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    // A TLS peer may close without close_notify: keep what arrived.
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

impl Cluster {
    /// The leader's `/state`, following a redirect from a follower.
    pub fn http_state(&self) -> Option<serde_json::Value> {
        for n in self.nodes.iter().filter(|n| n.is_running()) {
            if let Some((200, body)) = http_get(&n.addr, "/state") {
                return serde_json::from_str(&body).ok();
            }
        }
        None
    }
}

impl Cluster {
    /// Waits until the leader's `/state` lists exactly `n` active agents.
    pub async fn wait_active_agents(&self, n: usize, timeout: Duration) {
        let start = Instant::now();
        loop {
            if let Some(s) = self.http_state() {
                let active = s["agents"]
                    .as_array()
                    .map(|a| a.iter().filter(|x| x["active"] == true).count());
                if active == Some(n) {
                    return;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "{n} agents did not become active within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Milliseconds since the Unix epoch: this crate's one clock read.
fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}
