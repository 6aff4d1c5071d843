//! `agora dev` starts a real local quorum, answers `agora status`, and stops everything on
//! SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

fn free_base_port() -> u16 {
    // Find 12 consecutive free ports.
    'outer: for base in (20_000..60_000).step_by(97) {
        for p in base..base + 12 {
            if std::net::TcpListener::bind(("127.0.0.1", p)).is_err() {
                continue 'outer;
            }
        }
        return base;
    }
    panic!("no free port range");
}

fn process_alive(pid: u32) -> bool {
    // Not a zombie of ours: dev's children are reaped by dev itself.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn dev_cluster_starts_answers_and_stops() {
    ensure_binaries();
    let base = free_base_port();
    let work = tempfile::tempdir().unwrap();
    let mut dev = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["dev", "--base-port", &base.to_string(), "--work-dir"])
        .arg(work.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(dev.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let start = Instant::now();
    while !seen.contains("Press Ctrl-C") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "dev did not come up: {seen}"
        );
        match lines.next() {
            Some(Ok(l)) => {
                seen.push_str(&l);
                seen.push('\n');
            }
            _ => panic!("dev exited early: {seen}"),
        }
    }
    assert!(seen.contains(&format!("127.0.0.1:{base}")), "{seen}");
    assert!(
        seen.contains("leader    127.0.0.1:"),
        "no leader reported: {seen}"
    );
    assert!(
        seen.contains(&format!("http://127.0.0.1:{base}/")),
        "{seen}"
    );

    let status = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["--masters", &format!("127.0.0.1:{}", base + 2), "status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert_eq!(text.matches("voter").count(), 3, "{text}");
    assert_eq!(text.matches(" leader ").count(), 1, "{text}");

    // The masters' pids, to check they are gone after SIGTERM.
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .map(|c| c.contains("agora-master") && c.contains(work.path().to_str().unwrap()))
                .unwrap_or(false)
        })
        .collect();
    assert_eq!(pids.len(), 3, "expected 3 master processes");

    // Two agents register and /state shows them with resources, used and offered.
    let start = Instant::now();
    let agents = loop {
        let out = Command::new(env!("CARGO_BIN_EXE_agora"))
            .args([
                "--masters",
                &format!("127.0.0.1:{base}"),
                "agents",
                "--json",
            ])
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
    let agent_pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .map(|c| c.contains("agora-agent") && c.contains(work.path().to_str().unwrap()))
                .unwrap_or(false)
        })
        .collect();
    assert_eq!(agent_pids.len(), 2, "expected 2 agent processes");
    let pids: Vec<u32> = pids.into_iter().chain(agent_pids).collect();

    unsafe {
        libc::kill(dev.id() as libc::pid_t, libc::SIGTERM);
    }
    let code = dev.wait().unwrap();
    assert!(code.success(), "dev exited with {code}");
    for pid in pids {
        assert!(
            !process_alive(pid),
            "master {pid} still running after dev stopped"
        );
    }
    // --work-dir keeps state between runs.
    assert!(work.path().join("master-1").exists());
}
