//! `agora dev` with real processes: it starts a local quorum that answers `agora status`,
//! stops everything on SIGTERM and on SIGHUP, takes its masters and agents along when it is
//! SIGKILLed (a new `agora dev` then starts on the same ports), and refuses a busy port
//! with exit 2 and one line naming the port and its holder.
//!
//! Each test uses its own port range (below the kernel's ephemeral ports) and they run one
//! at a time ([`agora_test_cluster::serial`]).

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use agora_test_cluster::reap;

/// `agora dev` runs `agora-master` and `agora-agent` from its own directory; the harness
/// builds them (a no-op when fresh) so they are never stale.
fn ensure_binaries() {
    let agora = PathBuf::from(env!("CARGO_BIN_EXE_agora"));
    for name in ["agora-master", "agora-agent"] {
        let built = agora_test_cluster::binary(name);
        assert_eq!(
            built.parent(),
            agora.parent(),
            "{name} is not next to agora"
        );
    }
}

/// The first base from `start` (stepping by 100) whose five ports are free.
fn free_base_port(start: u16) -> u16 {
    'outer: for base in (start..start + 3000).step_by(100) {
        for p in [base, base + 1, base + 2, base + 10, base + 11] {
            if std::net::TcpListener::bind(("127.0.0.1", p)).is_err() {
                continue 'outer;
            }
        }
        return base;
    }
    panic!("no free port range from {start}");
}

/// Live children of `pid` (pid, program name).
fn children_of(pid: u32) -> Vec<(i32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            let name = head.split_once('(')?.1.to_string();
            (ppid == pid && reap::alive(p)).then_some((p, name))
        })
        .collect()
}

/// Live processes whose argv is exactly `argv`.
fn pids_running(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == want) && reap::alive(*p)
        })
        .collect()
}

/// The `agora-executor` a task process runs under (its parent, or a shell's parent).
fn executor_of(task: i32) -> Option<i32> {
    let mut pid = task;
    for _ in 0..3 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, rest) = stat.rsplit_once(')')?;
        let parent: i32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{parent}/comm")).ok()?;
        if comm.trim() == "agora-executor" {
            return Some(parent);
        }
        let _ = head;
        pid = parent;
    }
    None
}

/// A running `agora dev`; SIGKILLed on drop (a failing test leaves nothing: its children
/// die with it).
struct Dev {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    banner: String,
}

impl Dev {
    /// Starts `agora dev` and waits for "Press Ctrl-C".
    fn start(base: u16, work: &Path) -> Dev {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
        cmd.args(["dev", "--base-port", &base.to_string(), "--work-dir"])
            .arg(work)
            // The "user's" client configuration, where `agora dev` writes it.
            .env("AGORA_CONFIG", user_config(work))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = reap::spawn(cmd).unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = String::new();
        let start = Instant::now();
        while !banner.contains("Press Ctrl-C") {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "dev did not come up: {banner}"
            );
            match lines.next() {
                Some(Ok(l)) => {
                    banner.push_str(&l);
                    banner.push('\n');
                }
                _ => panic!("dev exited early: {banner}"),
            }
        }
        Dev {
            child,
            lines,
            banner,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its 3 masters and 2 agents.
    fn cluster_pids(&self) -> Vec<i32> {
        let kids = children_of(self.pid());
        let masters = kids.iter().filter(|(_, n)| n == "agora-master").count();
        let agents = kids.iter().filter(|(_, n)| n == "agora-agent").count();
        assert_eq!((masters, agents), (3, 2), "dev's children: {kids:?}");
        kids.into_iter().map(|(p, _)| p).collect()
    }

    fn signal(&self, sig: i32) {
        agora_test_cluster::signal(self.pid(), sig);
    }

    /// Waits for it to exit; its exit code and how long that took.
    fn wait(&mut self) -> (Option<i32>, Duration) {
        let start = Instant::now();
        // Drain what it prints while stopping.
        for _ in self.lines.by_ref() {}
        let status = self.child.wait().unwrap();
        (status.code(), start.elapsed())
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to `within` for every pid to be gone; how long it took.
fn gone_within(pids: &[i32], within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let alive: Vec<i32> = pids.iter().copied().filter(|&p| reap::alive(p)).collect();
        if alive.is_empty() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "still alive {within:?} later: {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Where a test's `agora dev` writes the user's client configuration (AGORA_CONFIG), so
/// tests never touch the real one in ~/.config.
fn user_config(work: &Path) -> std::path::PathBuf {
    work.join("user-config").join("client.json")
}

/// The CLI as a user in a new shell: no flags, no AGORA_* variables but the client
/// configuration's place.
fn cli(work: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
    for v in [
        "AGORA_MASTERS",
        "AGORA_CA",
        "AGORA_PRINCIPAL",
        "AGORA_SECRET",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("AGORA_CONFIG", user_config(work));
    cmd
}

#[test]
fn dev_cluster_starts_answers_and_stops() {
    let _serial = agora_test_cluster::serial();
    ensure_binaries();
    let base = free_base_port(21_050);
    let work = tempfile::tempdir().unwrap();
    let mut dev = Dev::start(base, work.path());
    let seen = dev.banner.clone();
    assert!(seen.contains(&format!("127.0.0.1:{base}")), "{seen}");
    assert!(
        seen.contains("leader    127.0.0.1:"),
        "no leader reported: {seen}"
    );
    assert!(
        seen.contains(&format!("https://127.0.0.1:{base}/")),
        "{seen}"
    );
    assert!(seen.contains("principal admin"), "{seen}");

    let status = cli(work.path())
        .args(["--masters", &format!("127.0.0.1:{}", base + 2), "status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert_eq!(text.matches("voter").count(), 3, "{text}");
    assert_eq!(text.matches(" leader ").count(), 1, "{text}");

    // Two agents register and /state shows them with resources, used and offered.
    let start = Instant::now();
    let agents = loop {
        let out = cli(work.path())
            .args(["agents", "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v.as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|x| x["active"] == true))
        {
            break v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "agents did not register: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let addrs: Vec<&str> = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["address"].as_str().unwrap())
        .collect();
    assert!(
        addrs.contains(&format!("127.0.0.1:{}", base + 10).as_str()),
        "{agents}"
    );
    assert!(
        addrs.contains(&format!("127.0.0.1:{}", base + 11).as_str()),
        "{agents}"
    );
    assert!(
        agents[0]["resources"].as_str().unwrap().contains("cpus:2"),
        "{agents}"
    );
    // `agora run -- true` in a new shell works with no flags: TLS and the admin's
    // credential come from the client configuration `agora dev` wrote.
    let run = cli(work.path())
        .args(["run", "--", "true"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    // Without it (another user, no configuration) the cluster refuses the CLI.
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .env_remove("AGORA_CONFIG")
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .args(["--masters", &format!("127.0.0.1:{base}"), "status"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("authentication failed"),
        "{out:?}"
    );
    // A task still running when dev stops: it and its executor (which outlives an agent
    // that merely restarts) must go with dev, --work-dir or not.
    let mut long = cli(work.path())
        .args(["run", "--", "sleep", "313"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let task = loop {
        if let Some(p) = pids_running(&["sleep", "313"]).first() {
            break *p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the task did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let executor = executor_of(task).expect("the task's executor");
    let pids = dev.cluster_pids();

    dev.signal(libc::SIGTERM);
    let (code, took) = dev.wait();
    assert_eq!(code, Some(0), "dev exited with {code:?}");
    gone_within(&pids, Duration::from_secs(2));
    gone_within(&[task, executor], Duration::from_secs(2));
    let _ = long.kill();
    let _ = long.wait();
    eprintln!("SIGTERM: dev, its 5 children, a running task and its executor stopped in {took:?}");
    // --work-dir keeps state between runs; the user's client configuration is removed.
    assert!(work.path().join("master-1").exists());
    assert!(!user_config(work.path()).exists());
}

/// SIGKILL leaves `agora dev` no chance to stop anything: its children must still die
/// (parent-death signal), within 2 s, and free the ports for the next `agora dev`.
#[test]
fn dev_killed_with_sigkill_leaves_no_master_or_agent() {
    let _serial = agora_test_cluster::serial();
    ensure_binaries();
    let base = free_base_port(24_050);
    let work = tempfile::tempdir().unwrap();
    let mut dev = Dev::start(base, work.path());
    let pids = dev.cluster_pids();
    dev.signal(libc::SIGKILL);
    let (code, _) = dev.wait();
    assert_eq!(code, None, "killed by a signal");
    let took = gone_within(&pids, Duration::from_secs(2));
    eprintln!("SIGKILL: no master or agent alive {took:?} after dev died");

    let mut again = Dev::start(base, work.path());
    let pids = again.cluster_pids();
    again.signal(libc::SIGTERM);
    assert_eq!(again.wait().0, Some(0));
    gone_within(&pids, Duration::from_secs(2));
}

/// A closed terminal (SIGHUP) stops `agora dev` like SIGTERM: everything stops, dev exits
/// 0, and the ports are free again.
#[test]
fn dev_stops_everything_on_sighup() {
    let _serial = agora_test_cluster::serial();
    ensure_binaries();
    let base = free_base_port(27_050);
    let work = tempfile::tempdir().unwrap();
    let mut dev = Dev::start(base, work.path());
    let pids = dev.cluster_pids();
    dev.signal(libc::SIGHUP);
    let (code, took) = dev.wait();
    assert_eq!(code, Some(0), "dev exited with {code:?}");
    let after = gone_within(&pids, Duration::from_secs(2));
    eprintln!("SIGHUP: dev stopped in {took:?}; its children gone {after:?} after it");

    let mut again = Dev::start(base, work.path());
    let pids = again.cluster_pids();
    again.signal(libc::SIGINT);
    assert_eq!(again.wait().0, Some(0));
    gone_within(&pids, Duration::from_secs(2));
}

/// A busy port: exit 2, one line naming the port and the process holding it, and nothing
/// started.
#[test]
fn dev_on_a_busy_port_exits_2_naming_the_port_and_its_holder() {
    let _serial = agora_test_cluster::serial();
    ensure_binaries();
    let base = free_base_port(29_050);
    let busy = base + 10;
    let _held = std::net::TcpListener::bind(("127.0.0.1", busy)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["dev", "--base-port", &base.to_string(), "--work-dir"])
        .arg(work.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let me = std::env::current_exe().unwrap();
    let name = me.file_name().unwrap().to_string_lossy();
    assert_eq!(
        stderr.trim(),
        format!(
            "agora dev: port {busy} is in use by {name} (pid {})",
            std::process::id()
        )
    );
    assert!(
        !work.path().join("master-1.log").exists(),
        "dev started something"
    );
}
