//! `agora dev`: a local quorum of real `agora-master` processes and two `agora-agent`s on
//! 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use agora_driver::MasterClient;
use agora_proto::v1 as pb;
use agora_proto::v1::master_client::MasterClient as MasterRpc;
use anyhow::Context;

#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// First port: masters on BASE, BASE+1, BASE+2 (agents will use BASE+10, BASE+11).
    #[arg(long, default_value_t = 5050)]
    base_port: u16,
    /// Keep state here between runs (default: a fresh temporary directory, removed on exit).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// A child process stopped with SIGTERM (then SIGKILL) when dropped.
struct Managed {
    name: String,
    child: Child,
}

impl Managed {
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.stop();
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

fn spawn(binary: &Path, name: &str, args: &[String], log: &Path) -> anyhow::Result<Managed> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    Ok(Managed {
        name: name.to_string(),
        child,
    })
}

pub async fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    let base = args.base_port;
    if base.checked_add(11).is_none() {
        eprintln!("agora: --base-port {base} leaves no room for BASE+11");
        return Ok(ExitCode::from(2));
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

    let addrs: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", base + i)).collect();
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
        children.push(spawn(
            &master_bin,
            &name,
            &args,
            &work_dir.join(format!("{name}.log")),
        )?);
    }

    let agent_addrs: Vec<String> = (0..2)
        .map(|i| format!("127.0.0.1:{}", base + 10 + i))
        .collect();
    for (i, addr) in agent_addrs.iter().enumerate() {
        let name = format!("agent-{}", i + 1);
        let args = vec![
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
        ];
        children.push(spawn(
            &agent_bin,
            &name,
            &args,
            &work_dir.join(format!("{name}.log")),
        )?);
    }

    let client = MasterClient::from_list(&addrs.join(","))?;
    let leader = client
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
        .await;
    println!("Agora dev cluster");
    for (i, a) in addrs.iter().enumerate() {
        println!(
            "  master {}  {a}  (log {})",
            i + 1,
            work_dir.join(format!("master-{}.log", i + 1)).display()
        );
    }
    for (i, a) in agent_addrs.iter().enumerate() {
        println!(
            "  agent  {}  {a}  (log {})",
            i + 1,
            work_dir.join(format!("agent-{}.log", i + 1)).display()
        );
    }
    match leader {
        Ok(s) => println!("  leader    {} (term {})", s.leader_address, s.term),
        Err(e) => println!("  leader    not elected yet ({e})"),
    }
    println!("  web UI    http://{}/", addrs[0]);
    println!("  masters   --masters {}", addrs.join(","));
    println!(
        "  work dir  {}{}",
        work_dir.display(),
        if temporary { " (removed on exit)" } else { "" }
    );
    println!("Press Ctrl-C to stop.");

    let exit = wait(&mut children).await;
    println!("stopping...");
    for c in children.iter_mut() {
        c.stop();
    }
    drop(children);
    if temporary {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    Ok(exit)
}

/// Waits for Ctrl-C or SIGTERM (exit 0), or for a child to die on its own (exit 1).
async fn wait(children: &mut [Managed]) -> ExitCode {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            _ = term.recv() => return ExitCode::SUCCESS,
            _ = tick.tick() => {
                for c in children.iter_mut() {
                    if let Ok(Some(status)) = c.child.try_wait() {
                        eprintln!("agora: {} exited unexpectedly ({status}); see its log", c.name);
                        return ExitCode::from(1);
                    }
                }
            }
        }
    }
}
