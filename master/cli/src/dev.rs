//! `agora dev`: a local quorum of real `agora-master` processes and two `agora-agent`s on
//! 127.0.0.1.
//!
//! Nothing it starts outlives it, however it ends:
//! - Every child starts in its own process group (a terminal's Ctrl-C or hangup reaches
//!   `agora dev` alone, which then stops the children itself) and with a parent-death
//!   signal (SIGKILL), set in the child before it execs and followed by a check that the
//!   parent is still there, so even a SIGKILLed `agora dev` takes its children along.
//!   Linux sends that signal when the *thread* that forked the child exits, so every child
//!   is forked from the main thread, which lives as long as `agora dev` (never from a
//!   runtime's worker or blocking thread).
//! - SIGINT, SIGTERM and SIGHUP stop it cleanly: SIGTERM to every master and SIGUSR1 to
//!   every agent (which then shuts its executors down and kills their tasks) at once, then up to
//!   [`GRACE`] for them to exit, then SIGKILL to the stragglers' process groups. A second
//!   signal skips the rest of the grace.
//! - Without `--work-dir` nothing can recover the agents' executors later, so the agents
//!   give them a short recovery timeout. Each agent has its own cgroup root
//!   (`agora-dev-<agent port>`), removed after a clean stop when it is empty.
//!
//! At start it checks that its five ports are free on 127.0.0.1; a busy one ends it with
//! exit 2 and one line naming the port and the process that holds it (found through
//! `/proc/net/tcp{,6}` and the socket inodes in `/proc/*/fd`).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use agora_driver::MasterClient;
use agora_proto::v1 as pb;
use agora_proto::v1::master_client::MasterClient as MasterRpc;
use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// How long children get to exit after their stop signal before they are SIGKILLed (an
/// agent stopping for good gives its tasks their kill grace, 3 s, first).
const GRACE: Duration = Duration::from_secs(10);

/// Executors' recovery timeout when the work dir is temporary (no agent can come back).
const TEMPORARY_RECOVERY_TIMEOUT: &str = "5s";

#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// First port: masters on BASE, BASE+1, BASE+2 (agents will use BASE+10, BASE+11).
    #[arg(long, default_value_t = 5050)]
    base_port: u16,
    /// Keep state here between runs (default: a fresh temporary directory, removed on exit).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// Prints a line; a closed terminal (SIGHUP) or pipe must not stop the shutdown.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// A child process in its own process group; SIGKILLed (group and all) when dropped.
struct Managed {
    name: String,
    /// What asks it to stop: SIGTERM for a master, SIGUSR1 for an agent (stop for good:
    /// its executors and tasks go with it).
    stop_signal: i32,
    child: Child,
    exited: bool,
}

impl Managed {
    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Whether it has exited (reaping it if so).
    fn poll_exit(&mut self) -> Option<std::process::ExitStatus> {
        if self.exited {
            return None;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exited = true;
                Some(status)
            }
            Ok(None) => None,
            Err(_) => {
                self.exited = true;
                None
            }
        }
    }

    fn signal(&self, sig: libc::c_int) {
        if !self.exited {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(self.pid(), sig);
            }
        }
    }

    fn kill_group(&mut self) {
        if !self.exited {
            // SAFETY: kill(2) on our own child's process group (it leads it).
            unsafe {
                libc::kill(-self.pid(), libc::SIGKILL);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.exited = true;
        }
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.kill_group();
    }
}

fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the agora binary")?;
    let path = exe.with_file_name(name);
    anyhow::ensure!(
        path.exists(),
        "{} not found next to {} (build everything with `cargo build --release`)",
        name,
        exe.display()
    );
    Ok(path)
}

/// Starts a child on the calling thread (the main thread: see the module docs).
fn spawn(
    binary: &Path,
    name: &str,
    args: &[String],
    log: &Path,
    stop_signal: i32,
) -> anyhow::Result<Managed> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let parent = std::process::id() as libc::pid_t;
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0);
    // SAFETY: prctl and getppid are async-signal-safe and allocate nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the signal was armed: then it never comes.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    Ok(Managed {
        name: name.to_string(),
        stop_signal,
        child,
        exited: false,
    })
}

/// Runs `agora dev` on the calling thread, which must be the main thread: children are
/// forked here and die when the thread that forked them ends.
pub fn main(args: DevArgs) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agora: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    let base = args.base_port;
    if base.checked_add(11).is_none() {
        eprintln!("agora: --base-port {base} leaves no room for BASE+11");
        return Ok(ExitCode::from(2));
    }
    let master_ports: Vec<u16> = (0..3).map(|i| base + i).collect();
    let agent_ports: Vec<u16> = (0..2).map(|i| base + 10 + i).collect();
    for &port in master_ports.iter().chain(&agent_ports) {
        if let Err(problem) = check_port(port) {
            eprintln!("agora dev: {problem}");
            return Ok(ExitCode::from(2));
        }
    }
    let master_bin = sibling_binary("agora-master")?;
    let agent_bin = sibling_binary("agora-agent")?;
    let (work_dir, temporary) = match args.work_dir {
        Some(d) => (d, false),
        None => (
            std::env::temp_dir().join(format!("agora-dev-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let mut security =
        crate::dev_pki::DevSecurity::generate(&work_dir, master_ports.len(), agent_ports.len())?;

    // Signals are caught from here on (before any child exists).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut signals = {
        let _entered = runtime.enter();
        Signals::install()?
    };

    let addrs: Vec<String> = master_ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let peers = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut children = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let id = i + 1;
        let name = format!("master-{id}");
        let args = vec![
            "--id".into(),
            id.to_string(),
            "--listen".into(),
            addr.clone(),
            "--peers".into(),
            peers.clone(),
            "--work-dir".into(),
            work_dir.join(&name).display().to_string(),
        ];
        let mut args = args;
        args.extend(security.master_flags(i));
        children.push(spawn(
            &master_bin,
            &name,
            &args,
            &work_dir.join(format!("{name}.log")),
            libc::SIGTERM,
        )?);
    }

    let cgroup_roots: Vec<String> = agent_ports
        .iter()
        .map(|p| format!("agora-dev-{p}"))
        .collect();
    let agent_addrs: Vec<String> = agent_ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    for (i, addr) in agent_addrs.iter().enumerate() {
        let name = format!("agent-{}", i + 1);
        let mut args = vec![
            "--masters".into(),
            addrs.join(","),
            "--listen".into(),
            addr.clone(),
            "--work-dir".into(),
            work_dir.join(&name).display().to_string(),
            // Small, equal agents so a laptop can run the dev cluster.
            "--resources".into(),
            "cpus:2;mem:2048;disk:4096;ports:[31000-31999]".into(),
            "--attributes".into(),
            format!("dev:{name}"),
            // Agents sharing a host need a cgroup root each.
            "--cgroups-root".into(),
            cgroup_roots[i].clone(),
        ];
        if temporary {
            args.push("--executor-recovery-timeout".into());
            args.push(TEMPORARY_RECOVERY_TIMEOUT.into());
        }
        args.extend(security.agent_flags(i));
        children.push(spawn(
            &agent_bin,
            &name,
            &args,
            &work_dir.join(format!("{name}.log")),
            libc::SIGUSR1,
        )?);
    }

    let exit = runtime.block_on(async {
        let client = MasterClient::with_security(
            addrs.clone(),
            agora_driver::RetryPolicy::default(),
            security.client_security()?,
        )?;
        let leader = tokio::select! {
            leader = wait_leader(&client) => leader,
            sig = signals.recv() => {
                say!("{sig}: stopping...");
                stop(&mut children, &mut signals).await;
                return anyhow::Ok(ExitCode::SUCCESS);
            }
        };
        say!("Agora dev cluster");
        for (i, a) in addrs.iter().enumerate() {
            say!(
                "  master {}  {a}  (log {})",
                i + 1,
                work_dir.join(format!("master-{}.log", i + 1)).display()
            );
        }
        for (i, a) in agent_addrs.iter().enumerate() {
            say!(
                "  agent  {}  {a}  (log {})",
                i + 1,
                work_dir.join(format!("agent-{}.log", i + 1)).display()
            );
        }
        match leader {
            Ok(s) => say!("  leader    {} (term {})", s.leader_address, s.term),
            Err(e) => say!("  leader    not elected yet ({e})"),
        }
        let user_config = security.write_client_config(&addrs.join(","))?;
        say!("  web UI    https://{}/ (or http:// on loopback)", addrs[0]);
        say!("  masters   --masters {}", addrs.join(","));
        say!(
            "  security  TLS (CA {}), principal {} (secret in {}), ACLs {}",
            security.ca.display(),
            crate::dev_pki::ADMIN,
            security.credentials.display(),
            security.acls.display()
        );
        match user_config {
            Some(p) => say!(
                "  clients   `agora` and the driver read {} (AGORA_CONFIG={} for others)",
                p.display(),
                security.client_config.display()
            ),
            None => say!(
                "  clients   export AGORA_CONFIG={}",
                security.client_config.display()
            ),
        }
        say!(
            "  curl      curl --cacert {} -u {}:$(jq -r .secret {}) https://{}/state",
            security.ca.display(),
            crate::dev_pki::ADMIN,
            security.client_config.display(),
            addrs[0]
        );
        say!(
            "  work dir  {}{}",
            work_dir.display(),
            if temporary { " (removed on exit)" } else { "" }
        );
        say!("Press Ctrl-C to stop.");
        let exit = wait(&mut children, &mut signals).await;
        say!("stopping...");
        stop(&mut children, &mut signals).await;
        anyhow::Ok(exit)
    });
    security.remove_client_config();
    let exit = exit?;
    drop(children);
    remove_empty_cgroup_roots(&cgroup_roots);
    if temporary {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    Ok(exit)
}

/// Removes the agents' cgroup roots in every hierarchy, where they are empty (a root that
/// still holds a task's cgroup stays, for its executor or a later agent to clean up).
fn remove_empty_cgroup_roots(roots: &[String]) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        if !matches!(post.split_whitespace().next(), Some("cgroup" | "cgroup2")) {
            continue;
        }
        if let Some(mount) = pre.split_whitespace().nth(4) {
            for root in roots {
                let _ = std::fs::remove_dir(Path::new(mount).join(root));
            }
        }
    }
}

async fn wait_leader(client: &MasterClient) -> Result<pb::StatusReply, agora_driver::DriverError> {
    client
        .call(|ch| async move {
            let s = MasterRpc::new(ch)
                .get_status(pb::GetStatusRequest {})
                .await?;
            if s.get_ref().role == "leader" {
                Ok(s)
            } else {
                Err(tonic::Status::unavailable("no leader yet"))
            }
        })
        .await
}

/// SIGINT, SIGTERM and SIGHUP, all meaning "stop".
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    /// Needs a runtime context.
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("catching SIGINT")?,
            term: signal(SignalKind::terminate()).context("catching SIGTERM")?,
            hup: signal(SignalKind::hangup()).context("catching SIGHUP")?,
        })
    }

    /// The next stop signal's name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

/// Waits for a stop signal (exit 0), or for a child to die on its own (exit 1).
async fn wait(children: &mut [Managed], signals: &mut Signals) -> ExitCode {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = signals.recv() => return ExitCode::SUCCESS,
            _ = tick.tick() => {
                for c in children.iter_mut() {
                    if let Some(status) = c.poll_exit() {
                        eprintln!("agora: {} exited unexpectedly ({status}); see its log", c.name);
                        return ExitCode::from(1);
                    }
                }
            }
        }
    }
}

/// Stops every child at once: SIGTERM to all, up to [`GRACE`] (cut short by another
/// signal) for them to exit, then SIGKILL to the process group of each one left.
async fn stop(children: &mut [Managed], signals: &mut Signals) {
    for c in children.iter_mut() {
        c.poll_exit();
        c.signal(c.stop_signal);
    }
    let deadline = Instant::now() + GRACE;
    loop {
        for c in children.iter_mut() {
            c.poll_exit();
        }
        if children.iter().all(|c| c.exited) || Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            sig = signals.recv() => {
                say!("{sig} again: killing what is left");
                break;
            }
        }
    }
    for c in children.iter_mut() {
        if !c.exited {
            eprintln!("agora: {} did not stop within {GRACE:?}; killed", c.name);
            c.kill_group();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Busy ports

/// Ok when `port` can be bound on 127.0.0.1; otherwise what holds it, as one line.
fn check_port(port: u16) -> Result<(), String> {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(match port_holder(port) {
            Some((pid, name)) => format!("port {port} is in use by {name} (pid {pid})"),
            None => format!("port {port} is in use (the process holding it could not be found)"),
        }),
        Err(e) => Err(format!("port {port} cannot be bound on 127.0.0.1: {e}")),
    }
}

/// Local addresses (as `/proc/net/tcp{,6}` spell them) that stop a bind on 127.0.0.1:
/// 127.0.0.1 and 0.0.0.0, and in IPv6 ::, ::1 and ::ffff:127.0.0.1.
const CLASHING: [&str; 5] = [
    "0100007F",
    "00000000",
    "00000000000000000000000000000000",
    "00000000000000000000000001000000",
    "0000000000000000FFFF00000100007F",
];

/// Inodes of the sockets listening on `port` (else bound to it) at an address that
/// clashes with 127.0.0.1.
fn socket_inodes(port: u16) -> Vec<u64> {
    let mut listening = Vec::new();
    let mut bound = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let Some((addr, p)) = local.split_once(':') else {
                continue;
            };
            let inode: u64 = inode.parse().unwrap_or(0);
            if u16::from_str_radix(p, 16) != Ok(port)
                || inode == 0
                || !CLASHING.contains(&addr.to_ascii_uppercase().as_str())
            {
                continue;
            }
            if *state == "0A" {
                listening.push(inode);
            } else {
                bound.push(inode);
            }
        }
    }
    listening.extend(bound);
    listening
}

/// The first process (pid, name) holding one of the sockets on `port`.
fn port_holder(port: u16) -> Option<(u32, String)> {
    let inodes = socket_inodes(port);
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let me = std::process::id();
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&pid| pid != me)
        .collect();
    pids.sort_unstable();
    for want in &wanted {
        for &pid in &pids {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                continue;
            };
            let holds = fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| target.as_os_str() == want.as_str())
            });
            if holds {
                return Some((pid, process_name(pid)));
            }
        }
    }
    None
}

/// A process's program name: its argv[0]'s file name, else its `comm`.
fn process_name(pid: u32) -> String {
    let from_cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|c| {
            let argv0 = c.split(|b| *b == 0).next()?.to_vec();
            let argv0 = String::from_utf8_lossy(&argv0).into_owned();
            Path::new(&argv0)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .filter(|n| !n.is_empty());
    from_cmdline.unwrap_or_else(|| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "an unknown process".into())
    })
}
