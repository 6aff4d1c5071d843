//! The `agora-master` command line: flags per the interface spec (every flag may also come
//! from `AGORA_<FLAG>`; bad flags exit 2 with one line), tracing, the runtime, and
//! shutdown on SIGINT/SIGTERM. In the library so that the fault-injection harness's
//! `agora-master-faulty` can run the very same master with deliberate bugs on
//! ([`crate::faults`]); the `agora-master` binary always passes none.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{parse_peers, Security};
use crate::faults::Faults;
use crate::{Config, MasterError, RaftTiming};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "agora-master", version, about = "Agora master replica")]
struct Args {
    /// This replica's Raft node id (> 0).
    #[arg(long, env = "AGORA_ID")]
    id: u64,
    /// Address to bind.
    #[arg(long, env = "AGORA_LISTEN", default_value = "0.0.0.0:5050")]
    listen: String,
    /// Address peers and clients use to reach this replica (default: --listen).
    #[arg(long, env = "AGORA_ADVERTISE")]
    advertise: Option<String>,
    /// Every voting replica, this one included: 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT.
    /// Default: this replica alone.
    #[arg(long, env = "AGORA_PEERS")]
    peers: Option<String>,
    /// Where sled keeps the Raft log, vote and registry.
    #[arg(long, env = "AGORA_WORK_DIR")]
    work_dir: PathBuf,
    /// Batch allocation period.
    #[arg(long, env = "AGORA_ALLOCATION_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    allocation_interval: Duration,
    /// Rescind offers held longer than this (default: never).
    #[arg(long, env = "AGORA_OFFER_TIMEOUT", value_parser = humantime::parse_duration)]
    offer_timeout: Option<Duration>,
    /// Agent ping timeout.
    #[arg(long, env = "AGORA_AGENT_PING_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    agent_ping_timeout: Duration,
    /// Missed pings before an agent is unreachable.
    #[arg(long, env = "AGORA_MAX_AGENT_PING_TIMEOUTS", default_value_t = 5)]
    max_agent_ping_timeouts: u32,
    /// Completed tasks kept per framework (finished, failed, killed...; Mesos'
    /// --max_completed_tasks_per_framework); older ones leave the registry.
    #[arg(
        long,
        env = "AGORA_MAX_COMPLETED_TASKS_PER_FRAMEWORK",
        default_value_t = 1000
    )]
    max_completed_tasks_per_framework: usize,
    /// Removed frameworks kept, with their tasks (Mesos' --max_completed_frameworks).
    #[arg(long, env = "AGORA_MAX_COMPLETED_FRAMEWORKS", default_value_t = 50)]
    max_completed_frameworks: usize,
    /// Raft heartbeat period.
    #[arg(long, env = "AGORA_RAFT_HEARTBEAT_INTERVAL", default_value = "50ms", value_parser = humantime::parse_duration)]
    raft_heartbeat_interval: Duration,
    /// Raft election timeout T: a follower that hears nothing from its leader for T to 1.1T
    /// campaigns.
    #[arg(long, env = "AGORA_RAFT_ELECTION_TIMEOUT", default_value = "250ms", value_parser = humantime::parse_duration)]
    raft_election_timeout: Duration,
    /// Join an existing quorum (to be added by `agora members add`): never initialize.
    #[arg(long, env = "AGORA_JOIN")]
    join: bool,
    /// This replica's certificate (PEM; Common Name `master-<id>`, a SAN for its
    /// advertised host).
    #[arg(long, env = "AGORA_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, env = "AGORA_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// The cluster CA (PEM): peers, agents and client certificates must chain to it.
    #[arg(long, env = "AGORA_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Also accept plaintext HTTP/gRPC on the TLS port, for clients that cannot do TLS.
    #[arg(long, env = "AGORA_TLS_ALLOW_PLAINTEXT")]
    tls_allow_plaintext: bool,
    /// Principals and secrets: {"credentials": [{"principal": "...", "secret": "..."}]}.
    #[arg(long, env = "AGORA_CREDENTIALS")]
    credentials: Option<PathBuf>,
    /// ACLs in Mesos' JSON shape (see docs/security.md).
    #[arg(long, env = "AGORA_ACLS")]
    acls: Option<PathBuf>,
    /// Require credentials on read-only HTTP too (/state, /metrics, the web UI).
    #[arg(long, env = "AGORA_AUTHENTICATE_HTTP_READONLY")]
    authenticate_http_readonly: bool,
    /// Run without TLS or credentials: anyone who reaches the port can run commands on
    /// every agent. For a laptop, never for a network.
    #[arg(long, env = "AGORA_INSECURE")]
    insecure: bool,
    /// tracing filter, e.g. info or agora_master=debug,info (RUST_LOG also works); changed
    /// at run time by `agora log-level`.
    #[arg(long, env = "AGORA_LOG_LEVEL")]
    log_level: Option<String>,
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("agora-master: {msg}");
    ExitCode::from(code)
}

/// Runs a master replica with `faults` (none, except in the harness's self-test) and
/// returns the process's exit status.
pub fn main(faults: Faults) -> ExitCode {
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
    init_tracing(args.log_level.as_deref());
    let advertise = args
        .advertise
        .clone()
        .unwrap_or_else(|| args.listen.clone());
    let peers = match &args.peers {
        Some(p) => match parse_peers(p) {
            Ok(p) => p,
            Err(e) => return fail(2, e),
        },
        None => [(args.id, advertise.clone())].into_iter().collect(),
    };
    let tls = match agora_security::tls::TlsFiles::from_flags(
        args.tls_cert.clone(),
        args.tls_key.clone(),
        args.tls_ca.clone(),
    ) {
        Ok(t) => t,
        Err(e) => return fail(2, e),
    };
    let security = Security {
        tls,
        allow_plaintext: args.tls_allow_plaintext,
        credentials: args.credentials.clone(),
        acls: args.acls.clone(),
        authenticate_http_readonly: args.authenticate_http_readonly,
        insecure: args.insecure,
    };
    let config = Config {
        id: args.id,
        advertise,
        peers,
        work_dir: args.work_dir,
        allocation_interval: args.allocation_interval,
        offer_timeout: args.offer_timeout,
        agent_ping_timeout: args.agent_ping_timeout,
        max_agent_ping_timeouts: args.max_agent_ping_timeouts,
        retention: agora_registry::Retention {
            max_completed_tasks_per_framework: args.max_completed_tasks_per_framework,
            max_completed_frameworks: args.max_completed_frameworks,
        },
        raft: RaftTiming {
            heartbeat_interval: args.raft_heartbeat_interval,
            election_timeout: args.raft_election_timeout,
        },
        join: args.join,
        faults,
        security,
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
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&args.listen).await {
            Ok(l) => l,
            Err(e) => return fail(2, format!("cannot listen on {}: {e}", args.listen)),
        };
        match crate::run(config, listener, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(
                e @ (MasterError::WorkDirLocked { .. }
                | MasterError::Config(_)
                | MasterError::Security(_)
                | MasterError::Acls { .. }),
            ) => fail(2, e),
            // A damaged store needs a person (restarting cannot mend it): exit 2, which the
            // systemd unit does not restart.
            Err(
                e @ MasterError::Store(
                    agora_raft_store::OpenError::Damaged { .. }
                    | agora_raft_store::OpenError::Corrupt { .. },
                ),
            ) => fail(
                2,
                format!("{e}; move the work dir aside and start again to rejoin the cluster from the leader (an empty replica catches up)"),
            ),
            Err(e) => fail(1, e),
        }
    })
}

/// Installs the log subscriber, its filter reloadable at run time
/// ([`crate::logging`]).
fn init_tracing(level: Option<&str>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::EnvFilter;
    // The filter in force, and its text as given (for `/flags` and `agora log-level`).
    let (filter, initial) = match level {
        Some(l) => match EnvFilter::try_new(l) {
            Ok(f) => (f, l.to_string()),
            Err(_) => (EnvFilter::new("info"), "info".to_string()),
        },
        None => match EnvFilter::try_from_default_env() {
            Ok(f) => (f, std::env::var(EnvFilter::DEFAULT_ENV).unwrap_or_default()),
            Err(_) => (
                EnvFilter::new("info,openraft=warn"),
                "info,openraft=warn".to_string(),
            ),
        },
    };
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
    crate::logging::install(crate::logging::LogLevels::new(&initial, move |f| {
        handle.reload(f).map_err(|e| e.to_string())
    }));
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
