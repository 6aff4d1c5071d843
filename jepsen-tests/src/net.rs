//! # Network namespaces and kernel-level partitions for one harness run
//!
//! Owns, for one run: a Linux bridge in the root namespace, one network namespace per
//! cluster process ("host"), a veth pair from each namespace into the bridge, and the
//! iptables rules that cut hosts apart. Every host gets its own address in a private /24
//! (`10.213.<subnet>.0/24`, host `i` is `.i+1`); the bridge gets `.254` so the harness in
//! the root namespace reaches every host directly, partitioned or not.
//!
//! Cuts are `DROP` rules (packets vanish, as in a real partition; nothing is rejected) in a
//! dedicated chain, [`CUT_CHAIN`], jumped to from `INPUT` and `OUTPUT` in every host's
//! namespace. They only ever name other hosts' addresses, so loopback, a host's own
//! address and the bridge address always keep working. Each change rewrites the chain
//! with one `iptables-restore --noflush` per namespace whose rules change, all run in
//! parallel.
//!
//! What it must not do: start or signal any process other than `ip` and `iptables`
//! themselves (the orchestration runs the cluster's processes, with [`Host::command`]), or
//! touch anything in the root namespace other than its own bridge and veths. It never
//! changes a global setting: when the machine's configuration blocks the bridge (e.g.
//! `br_netfilter` with a dropping `FORWARD` chain), [`Network::create`] fails with a
//! diagnosis that says what to change.
//!
//! Names derive from a prefix of at most 6 lowercase letters or digits: the bridge is
//! `<prefix>-br`, root-side veths are `<prefix>v<i>`, namespaces are `<prefix>-<host>`
//! (inside, the interface is `eth0`). A run killed with SIGKILL leaves them behind;
//! [`cleanup_stale`] (also called by [`Network::create`]) removes them.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// The iptables chain (filter table, in every host's namespace) that holds the cuts.
pub const CUT_CHAIN: &str = "AGORA-CUT";

/// Where `ip netns` keeps its namespace handles.
const NETNS_DIR: &str = "/run/netns";

/// How long [`Network::create`] waits for one connectivity probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(
        "network namespaces and iptables need root: run as root \
         (CI does; elsewhere set AGORA_SKIP_NETNS=1 to skip the tests that need it)"
    )]
    NotRoot,
    #[error("`{tool}` not found (looked in PATH, /usr/sbin, /sbin): {hint}")]
    MissingTool {
        tool: &'static str,
        hint: &'static str,
    },
    #[error("the kernel has no network namespace support (/proc/self/ns/net is missing)")]
    NoNetns,
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("could not run `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("unknown host `{0}`")]
    UnknownHost(String),
    #[error(
        "subnet {subnet} is already in use in the root namespace ({detail}): pick another subnet"
    )]
    SubnetInUse { subnet: String, detail: String },
    #[error("no connectivity from {from} to {to} ({detail}). {diagnosis}")]
    NoConnectivity {
        from: String,
        to: String,
        detail: String,
        diagnosis: String,
    },
    #[error("{}", join_errors(.0))]
    Several(Vec<NetError>),
}

fn join_errors(errors: &[NetError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// One error, or all of several.
fn combine(mut errors: Vec<NetError>) -> Result<(), NetError> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(NetError::Several(errors)),
    }
}

// ---------------------------------------------------------------------------------------
// Tools

/// The tools this module runs, with the package that provides them.
const TOOLS: [(&str, &str); 3] = [
    ("ip", "install iproute2: apt-get install -y iproute2"),
    ("iptables", "install iptables: apt-get install -y iptables"),
    (
        "iptables-restore",
        "install iptables: apt-get install -y iptables",
    ),
];

/// A tool's path: from PATH, else from the sbin directories a non-login root shell may
/// lack in PATH.
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The resolved path of a tool, looked up once per process; the bare name if absent (the
/// spawn then fails with a clear error; [`preflight`] reports it first).
fn tool(name: &'static str) -> &'static Path {
    static CACHE: OnceLock<Vec<(&'static str, PathBuf)>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        TOOLS
            .iter()
            .map(|(t, _)| (*t, find_tool(t).unwrap_or_else(|| PathBuf::from(t))))
            .collect()
    });
    cache
        .iter()
        .find(|(t, _)| *t == name)
        .map(|(_, p)| p.as_path())
        .unwrap_or(Path::new(name))
}

fn ip() -> Command {
    Command::new(tool("ip"))
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion; its stdout on success.
fn run(cmd: &mut Command) -> Result<String, NetError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetError::Spawn {
            cmd: describe(cmd),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetError::Command {
            cmd: describe(cmd),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Starts a command with `input` on its stdin; [`finish`] waits for it. Lets several
/// `iptables-restore` run at once.
fn start_with_input(mut cmd: Command, input: &str) -> Result<(String, Child), NetError> {
    let desc = describe(&cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetError::Spawn {
            cmd: desc.clone(),
            source,
        })?;
    // A few hundred bytes: fits in the pipe, so this cannot block on the child.
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(input.as_bytes()));
    if let Some(Err(source)) = written {
        let _ = child.wait();
        return Err(NetError::Spawn { cmd: desc, source });
    }
    Ok((desc, child))
}

fn finish(desc: String, child: Child) -> Result<(), NetError> {
    let out = child.wait_with_output().map_err(|source| NetError::Spawn {
        cmd: desc.clone(),
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Command {
            cmd: desc,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// `iptables-restore` of `rules` inside namespace `netns`, started but not waited for.
fn start_restore(netns: &str, rules: &str, noflush: bool) -> Result<(String, Child), NetError> {
    let mut cmd = ip();
    cmd.args(["netns", "exec", netns])
        .arg(tool("iptables-restore"));
    if noflush {
        cmd.arg("--noflush");
    }
    start_with_input(cmd, rules)
}

/// Checks what [`Network`] needs: root, network namespaces, `ip`, `iptables` and
/// `iptables-restore`. Names every missing piece.
pub fn preflight() -> Result<(), NetError> {
    let mut problems = Vec::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        problems.push(NetError::NotRoot);
    }
    if !Path::new("/proc/self/ns/net").exists() {
        problems.push(NetError::NoNetns);
    }
    for (name, hint) in TOOLS {
        if find_tool(name).is_none() {
            problems.push(NetError::MissingTool { tool: name, hint });
        }
    }
    if problems.is_empty() {
        // Present but broken (e.g. the nf_tables or ip_tables kernel module missing)
        // shows here rather than half-way through a run.
        run(Command::new(tool("iptables")).arg("--version"))?;
    }
    combine(problems)
}

// ---------------------------------------------------------------------------------------
// Names

fn validate_prefix(prefix: &str) -> Result<(), NetError> {
    let ok = (1..=6).contains(&prefix.len())
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(NetError::Invalid(format!(
            "prefix {prefix:?} must be 1 to 6 lowercase letters or digits, starting with a \
             letter (interface names are limited to 15 characters)"
        )))
    }
}

fn validate_host_name(name: &str) -> Result<(), NetError> {
    let ok = (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(NetError::Invalid(format!(
            "host name {name:?} must be 1 to 32 letters, digits, '-' or '_'"
        )))
    }
}

fn bridge_name(prefix: &str) -> String {
    format!("{prefix}-br")
}

fn veth_name(prefix: &str, i: usize) -> String {
    format!("{prefix}v{i}")
}

fn netns_name(prefix: &str, host: &str) -> String {
    format!("{prefix}-{host}")
}

/// Whether a root-namespace interface name is one [`Network`] makes with `prefix`.
fn is_our_link(prefix: &str, name: &str) -> bool {
    match name.strip_prefix(prefix) {
        Some("-br") => true,
        Some(rest) => rest
            .strip_prefix('v')
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())),
        None => false,
    }
}

fn netns_exists(netns: &str) -> bool {
    Path::new(NETNS_DIR).join(netns).exists()
}

fn link_exists(name: &str) -> bool {
    ip().args(["link", "show", "dev", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn delete_link(name: &str) -> Result<(), NetError> {
    match run(ip().args(["link", "del", "dev", name])) {
        Err(e) if link_exists(name) => Err(e),
        _ => Ok(()),
    }
}

fn delete_netns(netns: &str) -> Result<(), NetError> {
    match run(ip().args(["netns", "del", netns])) {
        Err(e) if netns_exists(netns) => Err(e),
        _ => Ok(()),
    }
}

/// Removes the namespaces (`<prefix>-*`), veths (`<prefix>v<n>`) and bridge
/// (`<prefix>-br`) a run with this prefix left behind, e.g. when it was killed with
/// SIGKILL and could not run `Drop`. Processes still inside a removed namespace keep
/// running, with only loopback left.
pub fn cleanup_stale(prefix: &str) -> Result<(), NetError> {
    validate_prefix(prefix)?;
    let mut errors = Vec::new();

    // Links first: deleting one end of a veth deletes both, even when a process still
    // holds the namespace of the other end.
    let links = run(ip().args(["-o", "-d", "link", "show"]))?;
    let mut veths = Vec::new();
    let mut bridges = Vec::new();
    for line in links.lines() {
        // "7: agtv0@if2: <BROADCAST,...> ... \    veth ..."
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if !is_our_link(prefix, name) {
            continue;
        }
        let kind = line.split_whitespace();
        if name.ends_with("-br") {
            if kind.clone().any(|w| w == "bridge") {
                bridges.push(name.to_string());
            }
        } else if kind.clone().any(|w| w == "veth") {
            veths.push(name.to_string());
        }
    }
    for v in &veths {
        if let Err(e) = delete_link(v) {
            errors.push(e);
        }
    }

    let ns_prefix = format!("{prefix}-");
    match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(&ns_prefix) {
                    if let Err(e) = delete_netns(&name) {
                        errors.push(e);
                    }
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => errors.push(NetError::Io {
            context: format!("listing {NETNS_DIR}"),
            source,
        }),
    }

    for b in &bridges {
        if let Err(e) = delete_link(b) {
            errors.push(e);
        }
    }
    combine(errors)
}

// ---------------------------------------------------------------------------------------
// Hosts

/// One cluster process's place on the network: its own namespace and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub netns: String,
    pub ip: Ipv4Addr,
}

impl Host {
    /// A `Command` that runs `program` inside this host's network namespace: the child
    /// joins it (setns) just before exec, so its pid is the program's own (signals reach
    /// it) and it keeps the harness's mounts, `/sys/fs/cgroup` included (`ip netns exec`
    /// would remount `/sys`, hiding the cgroup hierarchy from an agent). Add arguments,
    /// environment and stdio as with any `Command`. The program binds and connects with
    /// this host's address; `0.0.0.0` listens on it (and loopback).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        use std::os::unix::process::CommandExt;
        let path = Path::new(NETNS_DIR).join(&self.netns);
        // Opened (and any error taken) before the fork: the child must not allocate.
        let netns = std::fs::File::open(&path).map_err(|e| e.kind());
        let mut cmd = Command::new(program);
        // SAFETY: the closure only calls setns(2), which is async-signal-safe, on a
        // descriptor opened before the fork.
        unsafe {
            cmd.pre_exec(move || match &netns {
                Ok(f) => {
                    if libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                }
                Err(kind) => Err(std::io::Error::from(*kind)),
            });
        }
        cmd
    }

    /// `ip:port` of this host.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.ip, port))
    }
}

/// Runs `f` on a thread that has joined namespace `netns` (sockets it creates live there).
/// Used to probe host-to-host connectivity without starting a process.
fn in_netns<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetError> {
    let path = Path::new(NETNS_DIR).join(netns);
    let handle = std::fs::File::open(&path).map_err(|source| NetError::Io {
        context: format!("opening {}", path.display()),
        source,
    })?;
    let joined = std::thread::spawn(move || {
        // SAFETY: a valid namespace fd; setns only changes this (short-lived) thread.
        if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(f())
    })
    .join();
    match joined {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(NetError::Io {
            context: format!("entering namespace {netns}"),
            source,
        }),
        Err(_) => Err(NetError::Invalid(format!(
            "probe thread in namespace {netns} panicked"
        ))),
    }
}

/// Reachability of `addr` from the calling thread's namespace: a TCP connect to a port
/// nothing listens on is refused at once when packets flow, and times out when they
/// vanish.
fn probe(addr: SocketAddr) -> Result<(), String> {
    match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(format!("TCP connect to {addr}: {e}")),
    }
}

// ---------------------------------------------------------------------------------------
// Network

#[derive(Default)]
struct CutState {
    /// Requested cuts, `(a, b)` with `a < b`.
    cuts: BTreeSet<(String, String)>,
    /// The peer addresses each namespace's chain drops, as last applied.
    applied: BTreeMap<String, BTreeSet<Ipv4Addr>>,
}

/// The namespaces, bridge, veths and cuts of one run. Its methods block for the few
/// milliseconds `ip`/`iptables-restore` take (from async code, use `spawn_blocking`).
/// Dropping it tears everything down.
pub struct Network {
    prefix: String,
    subnet: u8,
    hosts: Vec<Host>,
    /// What exists and so must be deleted, in creation order.
    bridge: Option<String>,
    veths: Vec<String>,
    namespaces: Vec<String>,
    torn_down: bool,
    state: Mutex<CutState>,
}

impl Network {
    /// Creates a bridge `<prefix>-br` with address `10.213.<subnet>.254/24`, and one
    /// namespace per host name, each with loopback up and a veth (`eth0` inside,
    /// `<prefix>v<i>` on the bridge) with address `10.213.<subnet>.<i+1>/24`. Removes what
    /// an earlier run with the same prefix left first ([`cleanup_stale`]), refuses a subnet
    /// already in use, and checks that the harness reaches every host and the hosts reach
    /// each other. On any failure part-way, tears down what it made.
    pub fn create(prefix: &str, subnet: u8, host_names: &[&str]) -> Result<Network, NetError> {
        validate_prefix(prefix)?;
        if host_names.is_empty() || host_names.len() > 253 {
            return Err(NetError::Invalid(format!(
                "{} hosts: a network has 1 to 253",
                host_names.len()
            )));
        }
        let mut seen = BTreeSet::new();
        for name in host_names {
            validate_host_name(name)?;
            if !seen.insert(*name) {
                return Err(NetError::Invalid(format!("host name {name:?} given twice")));
            }
        }

        cleanup_stale(prefix)?;
        check_subnet_free(subnet)?;

        let mut net = Network {
            prefix: prefix.to_string(),
            subnet,
            hosts: Vec::new(),
            bridge: None,
            veths: Vec::new(),
            namespaces: Vec::new(),
            torn_down: false,
            state: Mutex::new(CutState::default()),
        };
        // From here on, an early return drops `net`, which deletes what exists so far.
        let bridge = bridge_name(prefix);
        run(ip().args(["link", "add", "name", &bridge, "type", "bridge"]))?;
        net.bridge = Some(bridge.clone());
        let gw = format!("{}/24", net.gateway());
        run(ip().args(["addr", "add", &gw, "dev", &bridge]))?;
        run(ip().args(["link", "set", "dev", &bridge, "up"]))?;

        let setup_rules = format!(
            "*filter\n:{CUT_CHAIN} - [0:0]\n-A INPUT -j {CUT_CHAIN}\n-A OUTPUT -j {CUT_CHAIN}\nCOMMIT\n"
        );
        for (i, name) in host_names.iter().enumerate() {
            let netns = netns_name(prefix, name);
            let veth = veth_name(prefix, i);
            let host_ip = Ipv4Addr::new(10, 213, subnet, i as u8 + 1);
            run(ip().args(["netns", "add", &netns]))?;
            net.namespaces.push(netns.clone());
            run(ip().args([
                "link", "add", "name", &veth, "type", "veth", "peer", "name", "eth0", "netns",
                &netns,
            ]))?;
            net.veths.push(veth.clone());
            run(ip().args(["link", "set", "dev", &veth, "master", &bridge, "up"]))?;
            let cidr = format!("{host_ip}/24");
            run(ip().args(["-n", &netns, "addr", "add", &cidr, "dev", "eth0"]))?;
            run(ip().args(["-n", &netns, "link", "set", "dev", "eth0", "up"]))?;
            run(ip().args(["-n", &netns, "link", "set", "dev", "lo", "up"]))?;
            let (desc, child) = start_restore(&netns, &setup_rules, false)?;
            finish(desc, child)?;
            net.hosts.push(Host {
                name: name.to_string(),
                netns,
                ip: host_ip,
            });
        }
        net.check_connectivity()?;
        Ok(net)
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The bridge's interface name in the root namespace.
    pub fn bridge(&self) -> String {
        bridge_name(&self.prefix)
    }

    /// The bridge's address, `10.213.<subnet>.254`: the harness's address as the hosts
    /// see it. Never cut.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, 254)
    }

    /// Drops all traffic between hosts `a` and `b`, both directions, in both namespaces.
    /// Idempotent; `cut(a, b)` and `cut(b, a)` are the same cut.
    pub fn cut(&self, a: &str, b: &str) -> Result<(), NetError> {
        self.add_cuts(vec![self.pair(a, b)?])
    }

    /// Cuts every pair of hosts in different groups, in addition to the cuts in force
    /// (call [`heal`](Self::heal) first to replace them). Hosts in no group are untouched;
    /// a host in two groups is an error.
    pub fn partition(&self, groups: &[Vec<String>]) -> Result<(), NetError> {
        let mut group_of = BTreeMap::new();
        for (g, group) in groups.iter().enumerate() {
            for name in group {
                self.known(name)?;
                if group_of
                    .insert(name.as_str(), g)
                    .is_some_and(|other| other != g)
                {
                    return Err(NetError::Invalid(format!(
                        "host {name} is in two partition groups"
                    )));
                }
            }
        }
        let mut pairs = Vec::new();
        for (i, gi) in groups.iter().enumerate() {
            for gj in &groups[i + 1..] {
                for a in gi {
                    for b in gj {
                        pairs.push(self.pair(a, b)?);
                    }
                }
            }
        }
        self.add_cuts(pairs)
    }

    /// Cuts `name` from every other host. The harness (via the bridge address) still
    /// reaches it.
    pub fn isolate(&self, name: &str) -> Result<(), NetError> {
        self.known(name)?;
        let pairs = self
            .hosts
            .iter()
            .filter(|h| h.name != name)
            .map(|h| self.pair(name, &h.name))
            .collect::<Result<Vec<_>, _>>()?;
        self.add_cuts(pairs)
    }

    /// Removes every cut (rewrites every namespace's chain, whatever was applied).
    pub fn heal(&self) -> Result<(), NetError> {
        let mut state = self.lock();
        state.cuts.clear();
        self.apply(&mut state, true)
    }

    /// The cuts requested, as `(a, b)` pairs with `a < b`, sorted. After an error from
    /// `cut`/`partition`/`isolate`, some may not be in force: `heal` resets everything.
    pub fn cuts(&self) -> Vec<(String, String)> {
        self.lock().cuts.iter().cloned().collect()
    }

    /// Deletes the veths, namespaces and bridge. Processes the orchestration left running
    /// in a namespace keep running, with only loopback. Idempotent; also done by `Drop`.
    pub fn teardown(&mut self) -> Result<(), NetError> {
        self.torn_down = true;
        let mut errors = Vec::new();
        for veth in std::mem::take(&mut self.veths) {
            if let Err(e) = delete_link(&veth) {
                errors.push(e);
            }
        }
        for netns in std::mem::take(&mut self.namespaces) {
            if let Err(e) = delete_netns(&netns) {
                errors.push(e);
            }
        }
        if let Some(bridge) = self.bridge.take() {
            if let Err(e) = delete_link(&bridge) {
                errors.push(e);
            }
        }
        let mut state = self.lock();
        state.cuts.clear();
        state.applied.clear();
        drop(state);
        combine(errors)
    }

    fn lock(&self) -> MutexGuard<'_, CutState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn known(&self, name: &str) -> Result<&Host, NetError> {
        self.host(name)
            .ok_or_else(|| NetError::UnknownHost(name.to_string()))
    }

    fn pair(&self, a: &str, b: &str) -> Result<(String, String), NetError> {
        self.known(a)?;
        self.known(b)?;
        if a == b {
            return Err(NetError::Invalid(format!(
                "cannot cut host {a} from itself"
            )));
        }
        Ok(if a < b {
            (a.to_string(), b.to_string())
        } else {
            (b.to_string(), a.to_string())
        })
    }

    fn add_cuts(&self, pairs: Vec<(String, String)>) -> Result<(), NetError> {
        let mut state = self.lock();
        state.cuts.extend(pairs);
        self.apply(&mut state, false)
    }

    /// Makes every namespace's chain drop exactly its peers in `state.cuts`: one
    /// `iptables-restore --noflush` per namespace that changes (all, if `force`), run in
    /// parallel. Declaring the chain in the input flushes it before the new rules go in,
    /// atomically.
    fn apply(&self, state: &mut CutState, force: bool) -> Result<(), NetError> {
        if self.torn_down {
            return Err(NetError::Invalid("the network was torn down".into()));
        }
        let mut started = Vec::new();
        let mut errors = Vec::new();
        for host in &self.hosts {
            let peers: BTreeSet<Ipv4Addr> = state
                .cuts
                .iter()
                .filter_map(|(a, b)| {
                    if *a == host.name {
                        Some(b)
                    } else if *b == host.name {
                        Some(a)
                    } else {
                        None
                    }
                })
                .filter_map(|peer| self.host(peer).map(|h| h.ip))
                .collect();
            if !force && state.applied.get(&host.netns) == Some(&peers) {
                continue;
            }
            let mut rules = format!("*filter\n:{CUT_CHAIN} - [0:0]\n");
            for peer in &peers {
                // INPUT sees the peer as source, OUTPUT as destination; the other rule
                // never matches in that hook.
                let _ = writeln!(rules, "-A {CUT_CHAIN} -s {peer}/32 -j DROP");
                let _ = writeln!(rules, "-A {CUT_CHAIN} -d {peer}/32 -j DROP");
            }
            rules.push_str("COMMIT\n");
            match start_restore(&host.netns, &rules, true) {
                Ok((desc, child)) => started.push((host.netns.clone(), peers, desc, child)),
                Err(e) => errors.push(e),
            }
        }
        for (netns, peers, desc, child) in started {
            match finish(desc, child) {
                Ok(()) => {
                    state.applied.insert(netns, peers);
                }
                Err(e) => {
                    state.applied.remove(&netns);
                    errors.push(e);
                }
            }
        }
        combine(errors)
    }

    /// The harness reaches every host, and the first host reaches every other (through
    /// the bridge, which is where machine settings such as `br_netfilter` interfere).
    fn check_connectivity(&self) -> Result<(), NetError> {
        for host in &self.hosts {
            if let Err(detail) = probe(host.addr(9)) {
                return Err(NetError::NoConnectivity {
                    from: format!("the root namespace ({})", self.gateway()),
                    to: format!("host {} ({})", host.name, host.ip),
                    detail,
                    diagnosis: diagnose(&self.bridge(), false),
                });
            }
        }
        let Some((first, others)) = self.hosts.split_first() else {
            return Ok(());
        };
        let targets: Vec<(String, SocketAddr)> = others
            .iter()
            .map(|h| (format!("host {} ({})", h.name, h.ip), h.addr(9)))
            .collect();
        let failed = in_netns(&first.netns, move || {
            targets
                .into_iter()
                .find_map(|(to, addr)| probe(addr).err().map(|detail| (to, detail)))
        })?;
        match failed {
            None => Ok(()),
            Some((to, detail)) => Err(NetError::NoConnectivity {
                from: format!("host {} ({})", first.name, first.ip),
                to,
                detail,
                diagnosis: diagnose(&self.bridge(), true),
            }),
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        if let Err(e) = self.teardown() {
            eprintln!(
                "jepsen-tests net: tearing down network {}: {e}",
                self.prefix
            );
        }
    }
}

/// Refuses a subnet that any root-namespace address or route already covers.
fn check_subnet_free(subnet: u8) -> Result<(), NetError> {
    let cidr = format!("10.213.{subnet}.0/24");
    let net_prefix = format!("10.213.{subnet}.");
    let addrs = run(ip().args(["-4", "-o", "addr", "show"]))?;
    if let Some(line) = addrs.lines().find(|l| {
        l.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .is_some_and(|a| a.starts_with(&net_prefix))
    }) {
        return Err(NetError::SubnetInUse {
            subnet: cidr,
            detail: format!("address: {}", line.trim()),
        });
    }
    let routes = run(ip().args(["-4", "route", "show", "root", &cidr]))?;
    if let Some(line) = routes.lines().find(|l| !l.trim().is_empty()) {
        return Err(NetError::SubnetInUse {
            subnet: cidr,
            detail: format!("route: {}", line.trim()),
        });
    }
    Ok(())
}

/// What in the machine's configuration can block traffic on the bridge, and how to fix it
/// (nothing here changes it).
fn diagnose(bridge: &str, bridged: bool) -> String {
    let mut out = String::new();
    let br_nf = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .map(|s| s.trim() == "1")
        .unwrap_or(false);
    let chains = if bridged { "FORWARD" } else { "INPUT/OUTPUT" };
    let rules = |chain: &str| {
        run(Command::new(tool("iptables")).args(["-S", chain]))
            .map(|s| s.lines().collect::<Vec<_>>().join("; "))
            .unwrap_or_else(|e| format!("(could not list: {e})"))
    };
    if bridged && br_nf {
        let _ = write!(
            out,
            "br_netfilter is active (net.bridge.bridge-nf-call-iptables=1), so traffic \
             between hosts on bridge {bridge} passes the root namespace's FORWARD chain, \
             which is: [{}]. Allow it with `iptables -I FORWARD -i {bridge} -o {bridge} -j \
             ACCEPT`, or stop bridge filtering with `sysctl -w \
             net.bridge.bridge-nf-call-iptables=0` (a global setting this harness does not \
             change). ",
            rules("FORWARD")
        );
    } else if bridged {
        out.push_str(
            "br_netfilter is not active, so bridged traffic skips iptables in the root \
             namespace. ",
        );
    } else {
        let _ = write!(
            out,
            "The root namespace's INPUT chain is [{}] and OUTPUT is [{}]; a rule dropping \
             the bridge's subnet would cause this. ",
            rules("INPUT"),
            rules("OUTPUT")
        );
    }
    let _ = write!(
        out,
        "Also check the root namespace's {chains} rules in `nft list ruleset` (tables not \
         made by iptables), and that the bridge and veths are up (`ip -d link show {bridge}`)."
    );
    out
}
