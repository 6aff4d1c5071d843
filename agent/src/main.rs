//! `agora-agent`: runs on every machine of the cluster. Flags per the interface spec; every
//! flag may also come from `AGORA_<FLAG>`, and a flag given twice takes its last value. Bad
//! flags exit 2 with one line. SIGTERM and SIGINT stop it gracefully, and within
//! [`STOP_GRACE`] whatever it was doing (a registration waiting for a leader included); its
//! executors run on, as after a crash. SIGUSR1 stops it for good: every executor is shut
//! down and its task killed (within the kill grace), then it stops.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agora_agent::config::{self, AgentConfig};
use agora_agent::isolation::{Isolation, IsolationMode};

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "agora-agent",
    version,
    about = "Agora agent",
    args_override_self = true
)]
struct Args {
    /// Any or all masters: HOST:PORT,HOST:PORT,... (the agent finds the leader).
    #[arg(long, env = "AGORA_MASTERS")]
    masters: String,
    /// Address to bind (executor API and HTTP).
    #[arg(long, env = "AGORA_LISTEN", default_value = "0.0.0.0:5051")]
    listen: String,
    /// Address masters and executors use to reach this agent (default: --listen).
    #[arg(long, env = "AGORA_ADVERTISE")]
    advertise: Option<String>,
    /// Checkpoints, sandboxes and the agent id.
    #[arg(long, env = "AGORA_WORK_DIR")]
    work_dir: PathBuf,
    /// Mesos syntax, e.g. "cpus:4;mem:8192;disk:20000;ports:[31000-32000]"; what it does
    /// not name is detected from the host.
    #[arg(long, env = "AGORA_RESOURCES")]
    resources: Option<String>,
    /// Free-form attributes, e.g. "rack:r1;zone:a".
    #[arg(long, env = "AGORA_ATTRIBUTES", default_value = "")]
    attributes: String,
    /// cgroups (default where the host allows it) or none.
    #[arg(long, env = "AGORA_ISOLATION", value_parser = ["cgroups", "none"])]
    isolation: Option<String>,
    /// Parent cgroup of this agent's task cgroups (as Mesos' --cgroups_root). Agents
    /// sharing a host need one each: at start, an agent removes every cgroup under its root
    /// that belongs to none of its recovered tasks.
    #[arg(long, env = "AGORA_CGROUPS_ROOT", default_value = "agora")]
    cgroups_root: String,
    /// With cgroups, make moving a process into a cgroup cheap on this host (Linux 6.0's
    /// `favordynmods`: the agent mounts a hierarchy of no controller with it at
    /// /run/agora/cgroup-favordynmods unless a cgroup mount has it already). Without it
    /// every task start waits for an RCU grace period (11-20 ms measured); with it forks
    /// and exits pay an atomic operation. false: leave the host as it is.
    #[arg(long, env = "AGORA_CGROUPS_FAVOR_DYNMODS", default_value_t = true, action = clap::ArgAction::Set)]
    cgroups_favor_dynmods: bool,
    /// How long executors wait for a restarted agent before they shut down and their
    /// tasks are killed (Mesos' --recovery_timeout): whatever an executor waits for (to
    /// subscribe, to deliver its updates), it exits once it has not reached the agent for
    /// this long.
    #[arg(long, env = "AGORA_EXECUTOR_RECOVERY_TIMEOUT", default_value = "15m", value_parser = humantime::parse_duration)]
    executor_recovery_timeout: std::time::Duration,
    /// The port of Mesos' executor API (POST /api/v1/executor), plaintext, on 127.0.0.1
    /// only, for executors written on Mesos libraries (MESOS_AGENT_ENDPOINT). 0: the port
    /// an earlier run of this agent used (checkpointed in the work dir, so recovered
    /// executors reconnect), else an ephemeral one.
    #[arg(long, env = "AGORA_EXECUTOR_HTTP_PORT", default_value_t = 0)]
    executor_http_port: u16,
    /// How long a finished sandbox is kept before it is removed (Mesos' --gc_delay): a
    /// sandbox is finished once its executor has exited and its task's status updates are
    /// all acknowledged by the master. E.g. "1weeks", "12h", "1secs".
    #[arg(long, env = "AGORA_GC_DELAY", value_name = "DURATION", default_value = config::DEFAULT_GC_DELAY, value_parser = humantime::parse_duration)]
    gc_delay: std::time::Duration,
    /// The fraction of the work dir's disk to keep free, in [0, 1] (Mesos'
    /// --gc_disk_headroom): every --disk-watch-interval, finished sandboxes older than
    /// gc_delay * max(0, 1 - headroom - disk usage) are removed at once, oldest first.
    #[arg(long, env = "AGORA_GC_DISK_HEADROOM", value_name = "FRACTION", default_value = config::DEFAULT_GC_DISK_HEADROOM, value_parser = config::parse_fraction)]
    gc_disk_headroom: f64,
    /// How often the work dir's disk usage is measured for --gc-disk-headroom (Mesos'
    /// --disk_watch_interval), e.g. "1mins", "500ms".
    #[arg(long, env = "AGORA_DISK_WATCH_INTERVAL", value_name = "DURATION", default_value = config::DEFAULT_DISK_WATCH_INTERVAL, value_parser = config::parse_interval)]
    disk_watch_interval: std::time::Duration,
    /// Host name to register (default: the system's).
    #[arg(long, env = "AGORA_HOSTNAME")]
    hostname: Option<String>,
    /// Run N simulated agents in this process instead of a real agent (load tests of the
    /// master: they register, hold sessions and answer health checks, and run no tasks).
    #[arg(long, env = "AGORA_SIMULATE")]
    simulate: Option<usize>,
    /// This agent's certificate (PEM; Common Name: the agent's principal). It serves the
    /// executor API with it and presents it to the masters.
    #[arg(long, env = "AGORA_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, env = "AGORA_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// The cluster CA (PEM) the masters' certificates chain to.
    #[arg(long, env = "AGORA_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// A principal and secret to present to the masters: {"principal": "...", "secret": "..."}.
    #[arg(long, env = "AGORA_CREDENTIAL")]
    credential: Option<PathBuf>,
    /// Run without TLS: anyone who reaches the masters could claim to be this agent.
    #[arg(long, env = "AGORA_INSECURE")]
    insecure: bool,
    /// tracing filter (RUST_LOG also works).
    #[arg(long, env = "AGORA_LOG_LEVEL")]
    log_level: Option<String>,
    /// The registry of image references that name none (HOST[:PORT]).
    #[arg(long, env = "AGORA_IMAGE_REGISTRY", default_value = agora_image::reference::DOCKER_HUB)]
    image_registry: String,
    /// Registries spoken to over plain HTTP (HOST or HOST:PORT, comma-separated); those on
    /// loopback always may be, as Docker allows; every other one needs TLS.
    #[arg(long, env = "AGORA_INSECURE_REGISTRIES", default_value = "")]
    insecure_registries: String,
    /// Credentials for registries: a JSON file {"REGISTRY": {"username": "...",
    /// "password": "..."}, ...} (basic auth, or a token obtained with it).
    #[arg(long, env = "AGORA_REGISTRY_CREDENTIALS")]
    registry_credentials: Option<PathBuf>,
    /// The OCI runtime that starts containers (crun or runc; a name is looked up in PATH).
    #[arg(long, env = "AGORA_CONTAINER_RUNTIME", default_value = "crun")]
    container_runtime: PathBuf,
    /// Unused image layers are removed, least recently used first, while the image store
    /// holds more than this (e.g. "10GiB", "500MB", bytes).
    #[arg(long, env = "AGORA_IMAGE_GC_THRESHOLD", default_value = "10GiB", value_parser = config::parse_size)]
    image_gc_threshold: u64,
    /// The most processes (threads included) a task may have at once; a task that
    /// reaches it (a fork bomb) is killed, TASK_FAILED. 0: no limit.
    #[arg(long, env = "AGORA_MAX_TASK_PIDS", default_value_t = 4096)]
    max_task_pids: u64,
    /// A task listening on a TCP port outside its `ports` resource is killed; with this,
    /// only ports in this agent's own `ports` range count (Mesos'
    /// --check_agent_port_range_only).
    #[arg(long, env = "AGORA_CHECK_AGENT_PORT_RANGE_ONLY")]
    check_agent_port_range_only: bool,
    /// A task's stdout and stderr rotate when they reach this size (e.g. "10MiB"; 0: never,
    /// the task then writes the files itself), as Mesos' logrotate container logger.
    #[arg(long, env = "AGORA_OUTPUT_MAX_SIZE", default_value = "10MiB", value_parser = config::parse_size)]
    output_max_size: u64,
    /// How many rotated files of each (stdout.1, stdout.2, ...) are kept.
    #[arg(long, env = "AGORA_OUTPUT_ROTATIONS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    output_rotations: u32,
    /// Host directories (comma-separated) that containers may mount as volumes, with
    /// what is under them (Mesos' host_path volumes); none by default.
    #[arg(long, env = "AGORA_ALLOWED_HOST_VOLUMES", default_value = "")]
    allowed_host_volumes: String,
    /// How containers' root filesystems are made: overlay (overlayfs over the shared
    /// layers) or copy (the layers copied for each container); default overlay where the
    /// kernel has it, else copy (Mesos' --image_provisioner_backend).
    #[arg(long, env = "AGORA_IMAGE_PROVISIONER_BACKEND", value_parser = ["overlay", "copy"])]
    image_provisioner_backend: Option<String>,
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("agora-agent: {msg}");
    ExitCode::from(code)
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            return fail(2, first.trim_start_matches("error: "));
        }
    };
    let log_level = init_tracing(args.log_level.as_deref());
    if let Err(e) = std::fs::create_dir_all(&args.work_dir) {
        return fail(2, format!("--work-dir {}: {e}", args.work_dir.display()));
    }
    let masters = match config::parse_masters(&args.masters) {
        Ok(m) => m,
        Err(e) => return fail(2, e),
    };
    let attributes = match config::parse_attributes(&args.attributes) {
        Ok(a) => a,
        Err(e) => return fail(2, e),
    };
    let host = agora_agent::detect::host_resources(&args.work_dir);
    let resources = match config::resources(args.resources.as_deref(), &host) {
        Ok(r) => r,
        Err(e) => return fail(2, e),
    };
    let tls = match agora_security::tls::TlsFiles::from_flags(
        args.tls_cert.clone(),
        args.tls_key.clone(),
        args.tls_ca.clone(),
    ) {
        Ok(t) => t,
        Err(e) => return fail(2, e),
    };
    let credential = match &args.credential {
        Some(path) => match config::load_credential(path) {
            Ok(c) => Some(c),
            Err(e) => return fail(2, e),
        },
        None => None,
    };
    let security = config::AgentSecurity {
        tls,
        credential,
        insecure: args.insecure,
    };
    let master_security = match security.master_client() {
        Ok(s) => s,
        Err(e) => return fail(2, e),
    };
    if let Some(n) = args.simulate {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => return fail(1, format!("cannot start the runtime: {e}")),
        };
        return runtime.block_on(async move {
            let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = shutdown_tx.send(true);
            });
            tracing::info!(agents = n, "simulating agents");
            let stats =
                agora_agent::simulator::run(masters, master_security, n, resources, shutdown_rx)
                    .await;
            tracing::info!(
                registered = stats.registered.load(std::sync::atomic::Ordering::Relaxed),
                "simulation stopped"
            );
            ExitCode::SUCCESS
        });
    }
    let isolation = match args.isolation.as_deref() {
        Some("none") => Isolation::detect(IsolationMode::None, &args.cgroups_root),
        Some(_) => Isolation::detect(IsolationMode::Cgroups, &args.cgroups_root),
        None => Isolation::detect(IsolationMode::Cgroups, &args.cgroups_root)
            .or_else(|_| Isolation::detect(IsolationMode::None, &args.cgroups_root)),
    };
    let isolation = match isolation {
        Ok(i) => i,
        Err(e) => return fail(2, format!("--isolation: {e}")),
    };
    if isolation.kind() == "none" {
        tracing::warn!("isolation: none (tasks run without cgroup limits)");
    } else {
        tracing::info!(isolation = isolation.kind(), "isolation");
        if args.cgroups_favor_dynmods {
            use agora_agent::isolation::FavorDynmods;
            match isolation.favor_dynamic_moves() {
                Ok(Some(FavorDynmods::TurnedOn(at))) => {
                    tracing::info!(mount = %at.display(), "cgroups: favordynmods turned on (moving a process into a cgroup no longer waits for an RCU grace period)")
                }
                Ok(Some(FavorDynmods::AlreadyOn(at))) => {
                    tracing::info!(mount = %at.display(), "cgroups: favordynmods already on")
                }
                Ok(None) => {}
                // An older kernel (before 6.0) refuses the option: tasks start slower.
                Err(e) => {
                    tracing::warn!(error = %e, "cgroups: cannot turn favordynmods on; each task start waits for an RCU grace period")
                }
            }
        }
    }
    let config = AgentConfig {
        security,
        masters,
        advertise: args
            .advertise
            .clone()
            .unwrap_or_else(|| args.listen.clone()),
        hostname: args.hostname.clone().unwrap_or_else(system_hostname),
        work_dir: args.work_dir.clone(),
        resources,
        attributes,
        executor_binary: std::env::current_exe()
            .map(|p| p.with_file_name("agora-executor"))
            .unwrap_or_else(|_| PathBuf::from("agora-executor")),
        executor_recovery_timeout: args.executor_recovery_timeout,
        executor_http_port: args.executor_http_port,
        gc: config::GcConfig {
            delay: args.gc_delay,
            disk_headroom: args.gc_disk_headroom,
            disk_watch_interval: args.disk_watch_interval,
        },
        max_task_pids: (args.max_task_pids > 0).then_some(args.max_task_pids),
        check_agent_port_range_only: args.check_agent_port_range_only,
        sandbox_key: agora_security::grant::GrantKey::generate(),
        output: agora_agent::supervisor::OutputRotation {
            max_bytes: args.output_max_size,
            keep: args.output_rotations,
        },
        log_level,
        images: match config::image_settings(
            &args.work_dir,
            &args.image_registry,
            &args.insecure_registries,
            args.registry_credentials.as_deref(),
            &args.container_runtime,
            args.image_gc_threshold,
        ) {
            Ok(mut s) => {
                s.allowed_host_volumes = args
                    .allowed_host_volumes
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
                    .collect();
                match args.image_provisioner_backend.as_deref() {
                    Some("copy") => s.rootfs_backend = agora_agent::image::RootfsBackend::Copy,
                    Some(_) => s.rootfs_backend = agora_agent::image::RootfsBackend::Overlay,
                    None => {}
                }
                if let Some(p) = s.allowed_host_volumes.iter().find(|p| !p.is_absolute()) {
                    return fail(
                        2,
                        format!(
                            "--allowed-host-volumes: {} is not an absolute path",
                            p.display()
                        ),
                    );
                }
                s
            }
            Err(e) => return fail(2, e),
        },
    };
    if let Err(e) = config.validate() {
        return fail(2, e);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(1, format!("cannot start the runtime: {e}")),
    };
    let code = runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&args.listen).await {
            Ok(l) => l,
            Err(e) => return fail(2, format!("cannot listen on {}: {e}", args.listen)),
        };
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let (how_tx, how_rx) = tokio::sync::watch::channel(agora_agent::Stop::Restart);
        let mut stopping = shutdown_rx.clone();
        let how = how_rx.clone();
        tokio::spawn(async move {
            if stop_signal().await == agora_agent::Stop::ForGood {
                tracing::info!("SIGUSR1: stopping for good (its tasks are killed)");
                let _ = how_tx.send(agora_agent::Stop::ForGood);
            }
            let _ = shutdown_tx.send(true);
        });
        let agent = agora_agent::run_until(
            Arc::new(config),
            Arc::new(isolation),
            listener,
            shutdown_rx,
            how_rx,
        );
        tokio::select! {
            result = agent => match result {
                Ok(()) => ExitCode::SUCCESS,
                // Permanent, like a bad flag: a supervisor must not start it again as is.
                Err(e @ agora_agent::master_link::LinkError::Gone(_)) => fail(2, e),
                Err(e) => fail(1, e),
            },
            // Whatever is in flight (e.g. a registration waiting for a leader) must not
            // hold the agent: everything it must keep is on disk already, and its
            // executors run on without it.
            _ = async {
                let _ = stopping.wait_for(|s| *s).await;
                // Stopping for good waits for the executors' kill grace too.
                let grace = match *how.borrow() {
                    agora_agent::Stop::ForGood => {
                        STOP_GRACE + agora_agent::tasks::DEFAULT_KILL_GRACE + std::time::Duration::from_secs(3)
                    }
                    agora_agent::Stop::Restart => STOP_GRACE,
                };
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(grace = ?STOP_GRACE, "still stopping after the grace; exiting");
                ExitCode::SUCCESS
            }
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

/// How long the agent may take to stop after SIGTERM or SIGINT.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Installs the log subscriber; returns the filter in force.
fn init_tracing(level: Option<&str>) -> String {
    use tracing_subscriber::EnvFilter;
    let (filter, text) = match level {
        Some(l) => match EnvFilter::try_new(l) {
            Ok(f) => (f, l.to_string()),
            Err(_) => (EnvFilter::new("info"), "info".to_string()),
        },
        None => match EnvFilter::try_from_default_env() {
            Ok(f) => (f, std::env::var(EnvFilter::DEFAULT_ENV).unwrap_or_default()),
            Err(_) => (EnvFilter::new("info"), "info".to_string()),
        },
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    text
}

/// SIGTERM or SIGINT: stop, to be restarted (tasks run on); SIGUSR1: stop for good.
async fn stop_signal() -> agora_agent::Stop {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .expect("installing the SIGUSR1 handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => agora_agent::Stop::Restart,
        _ = term.recv() => agora_agent::Stop::Restart,
        _ = usr1.recv() => agora_agent::Stop::ForGood,
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
