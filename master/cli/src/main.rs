//! `agora`: the operator and user CLI.
//!
//! Owns command-line parsing and presentation only; it talks to the cluster through
//! `agora-driver` (leader following) and the public proto API. Bad arguments exit 2 with
//! one line; a cluster that cannot be reached exits 1.

mod agents;
mod clock;
mod dev;
mod dev_pki;
mod log_level;
mod logs;
mod run;
mod table;

use std::process::ExitCode;

use agora_driver::MasterClient;
use agora_proto::v1 as pb;
use agora_proto::v1::master_client::MasterClient as MasterRpc;
use agora_proto::v1::operator_client::OperatorClient;
use clap::{Parser, Subcommand};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(name = "agora", version, about = "Agora cluster CLI")]
struct Cli {
    /// Any or all masters, HOST:PORT,HOST:PORT,... (default: the client configuration's,
    /// else 127.0.0.1:5050).
    #[arg(long, env = "AGORA_MASTERS", global = true)]
    masters: Option<String>,
    /// The CA that signs the masters' certificates (PEM): the CLI then speaks TLS.
    #[arg(long, env = "AGORA_CA", global = true)]
    ca: Option<std::path::PathBuf>,
    /// The principal to act as (with --secret).
    #[arg(long, env = "AGORA_PRINCIPAL", global = true)]
    principal: Option<String>,
    /// The principal's secret. Prefer AGORA_SECRET or the client configuration: a flag
    /// shows in the process list.
    #[arg(long, env = "AGORA_SECRET", global = true, hide_env_values = true)]
    secret: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// Where the CLI reaches the cluster and how it proves who it is: flags, then `AGORA_*`,
/// then the client configuration file (`AGORA_CONFIG`, else the one `agora dev` writes in
/// the user's config dir).
pub struct Target {
    pub masters: String,
    pub security: agora_driver::security::client::ClientSecurity,
}

fn target(cli: &Cli) -> Result<Target, String> {
    let settings = agora_driver::security::client::ClientSettings::discover(
        &agora_driver::security::client::ClientOverrides {
            masters: cli.masters.clone(),
            ca: cli.ca.clone(),
            principal: cli.principal.clone(),
            secret: cli.secret.clone(),
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(Target {
        masters: settings
            .masters
            .unwrap_or_else(|| "127.0.0.1:5050".to_string()),
        security: settings.security,
    })
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a local 3-master quorum and 2 agents on 127.0.0.1 and stay in the foreground
    /// until Ctrl-C, SIGTERM or SIGHUP (then stop them all).
    Dev(dev::DevArgs),
    /// Run one command as a task; prints its stdout and stderr as it writes them and each
    /// state on stderr; exits with the task's exit status.
    Run(run::RunArgs),
    /// A task's stdout (or --stderr) from its sandbox; -f follows it until the task ends.
    Logs(logs::LogsArgs),
    /// Leader, term, members and their roles, counts of agents, frameworks, tasks.
    Status,
    /// Registered agents and their state (draining, deactivated, ...); with a subcommand,
    /// an operator's maintenance of one: drain, deactivate, reactivate, gone.
    Agents {
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<agents::AgentsAction>,
    },
    /// Registered frameworks.
    Frameworks {
        #[arg(long)]
        json: bool,
    },
    /// Tasks.
    Tasks {
        #[arg(long)]
        json: bool,
    },
    /// Role weights for DRF: list them, or `agora weights set ROLE WEIGHT`.
    Weights {
        #[command(subcommand)]
        action: Option<WeightsAction>,
    },
    /// Quorum membership: list, add a learner, set the voters.
    Members {
        #[command(subcommand)]
        action: Option<MembersAction>,
    },
    /// Each master's log level, or `agora log-level LEVEL [--duration D]` to change it
    /// (on every master in --masters, or those named by --master).
    LogLevel(log_level::LogLevelArgs),
}

#[derive(Subcommand, Debug)]
enum WeightsAction {
    /// Set a role's weight (positive).
    Set { role: String, weight: f64 },
}

#[derive(Subcommand, Debug)]
enum MembersAction {
    /// Add a replica as a non-voting learner (it catches up from the leader).
    Add { id: u64, address: String },
    /// Set the complete set of voters, e.g. `agora members voters 1,2,4`.
    Voters {
        #[arg(value_delimiter = ',')]
        ids: Vec<u64>,
        /// Keep removed voters as learners.
        #[arg(long)]
        retain: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp
                    | clap::error::ErrorKind::DisplayVersion
                    | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!("agora: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    // `agora dev` forks its cluster from this (the main) thread and owns its runtime.
    let cli = match cli {
        Cli {
            command: Command::Dev(args),
            ..
        } => return dev::main(args),
        cli => cli,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agora: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Exit 2 with one line for input the CLI refuses before reaching the cluster.
fn usage(msg: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("agora: {msg}");
    Ok(ExitCode::from(2))
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let target = match target(&cli) {
        Ok(t) => t,
        Err(e) => return usage(e),
    };
    let masters: Vec<String> = target
        .masters
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let client = match MasterClient::with_security(
        masters.clone(),
        agora_driver::RetryPolicy::default(),
        target.security.clone(),
    ) {
        Ok(c) => c,
        Err(e) => return usage(format!("--masters: {e}")),
    };
    let command = match cli.command {
        Command::Run(args) => return run::run(client, args).await,
        Command::Logs(args) => return logs::logs(client, args).await,
        Command::LogLevel(args) => return log_level::run(&client, &masters, args).await,
        c => c,
    };
    match command {
        Command::Dev(_) | Command::Run(_) | Command::Logs(_) | Command::LogLevel(_) => {
            unreachable!("handled above")
        }
        Command::Status => status(&client).await,
        Command::Agents {
            action: Some(action),
            ..
        } => agents::maintain(&client, action).await,
        Command::Agents { json, action: None } => {
            let state = get_state(&client).await?;
            let now = clock::since_epoch().as_millis() as u64;
            if json {
                println!("{}", serde_json::to_string_pretty(&agents_json(&state))?);
            } else {
                table::print(
                    &[
                        "ID",
                        "HOSTNAME",
                        "ADDRESS",
                        "STATE",
                        "RESOURCES",
                        "USED",
                        "OFFERED",
                    ],
                    state.agents.iter().map(|a| {
                        let info = a.info.clone().unwrap_or_default();
                        vec![
                            info.id,
                            info.hostname,
                            info.address,
                            agents::state_text(a, now),
                            table::resources(&info.resources),
                            table::resources(&a.used),
                            table::resources(&a.offered),
                        ]
                    }),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Frameworks { json } => {
            let state = get_state(&client).await?;
            if json {
                let v: Vec<_> = state
                    .frameworks
                    .iter()
                    .map(|f| {
                        json!({"id": f.id, "name": f.name, "role": f.role, "active": f.active,
                        "used": table::resources(&f.used), "offered": table::resources(&f.offered)})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                table::print(
                    &["ID", "NAME", "ROLE", "ACTIVE", "USED", "OFFERED"],
                    state.frameworks.iter().map(|f| {
                        vec![
                            f.id.clone(),
                            f.name.clone(),
                            f.role.clone(),
                            f.active.to_string(),
                            table::resources(&f.used),
                            table::resources(&f.offered),
                        ]
                    }),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tasks { json } => {
            let state = get_state(&client).await?;
            if json {
                let v: Vec<_> = state
                    .tasks
                    .iter()
                    .map(|t| json!({"id": t.id, "framework_id": t.framework_id, "agent_id": t.agent_id,
                        "name": t.name, "state": table::task_state(t.state), "resources": table::resources(&t.resources),
                        "message": t.message}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                table::print(
                    &["ID", "FRAMEWORK", "AGENT", "STATE", "RESOURCES"],
                    state.tasks.iter().map(|t| {
                        vec![
                            t.id.clone(),
                            t.framework_id.clone(),
                            t.agent_id.clone(),
                            table::task_state(t.state),
                            table::resources(&t.resources),
                        ]
                    }),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Members { action } => members(&client, action).await,
        Command::Weights { action } => {
            let reply = match action {
                None => {
                    client
                        .call(|ch| async move {
                            OperatorClient::new(ch)
                                .get_weights(pb::GetWeightsRequest {})
                                .await
                        })
                        .await?
                }
                Some(WeightsAction::Set { role, weight }) => {
                    if !(weight.is_finite() && weight > 0.0) {
                        return usage(format!(
                            "weights set: weight must be positive, not {weight}"
                        ));
                    }
                    match client
                        .call(|ch| {
                            let role = role.clone();
                            async move {
                                OperatorClient::new(ch)
                                    .set_weight(pb::SetWeightRequest { role, weight })
                                    .await
                            }
                        })
                        .await
                    {
                        Ok(r) => r,
                        Err(e)
                            if e.status()
                                .is_some_and(|s| s.code() == tonic::Code::InvalidArgument) =>
                        {
                            return usage(format!("weights set: {e}"));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            table::print(
                &["ROLE", "WEIGHT"],
                reply
                    .weights
                    .iter()
                    .map(|w| vec![w.role.clone(), w.weight.to_string()]),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn get_state(client: &MasterClient) -> anyhow::Result<pb::ClusterState> {
    Ok(client
        .call(|ch| async move { MasterRpc::new(ch).get_state(pb::GetStateRequest {}).await })
        .await?)
}

fn agents_json(state: &pb::ClusterState) -> serde_json::Value {
    json!(state
        .agents
        .iter()
        .map(|a| {
            let info = a.info.clone().unwrap_or_default();
            json!({"id": info.id, "hostname": info.hostname, "address": info.address, "active": a.active,
                "deactivated": a.deactivated, "live_tasks": a.live_tasks,
                "drain": a.drain.as_ref().map(|d| json!({"state": d.state, "started_ms": d.started_ms,
                    "deadline_ms": d.deadline_ms, "mark_gone": d.mark_gone})),
                "resources": table::resources(&info.resources), "used": table::resources(&a.used),
                "offered": table::resources(&a.offered)})
        })
        .collect::<Vec<_>>())
}

async fn status(client: &MasterClient) -> anyhow::Result<ExitCode> {
    // Ask the leader for the membership and counts, then each member for its own role.
    let leader_status = client
        .call(|ch| async move {
            // GetStatus is answered by any replica; insist on the leader's view.
            let s = MasterRpc::new(ch)
                .get_status(pb::GetStatusRequest {})
                .await?;
            if s.get_ref().role == "leader" {
                Ok(s)
            } else {
                let leader = s.get_ref().leader_address.clone();
                let mut st = tonic::Status::unavailable("not the leader");
                if let Ok(v) = leader.parse() {
                    st.metadata_mut()
                        .insert(agora_proto::LEADER_METADATA_KEY, v);
                }
                Err(st)
            }
        })
        .await?;
    println!(
        "leader:     {} (id {})",
        leader_status.leader_address, leader_status.leader_id
    );
    println!("term:       {}", leader_status.term);
    println!("agents:     {}", leader_status.agents);
    println!("frameworks: {}", leader_status.frameworks);
    println!("tasks:      {} live", leader_status.tasks);
    println!();
    let mut rows = Vec::new();
    for m in &leader_status.members {
        let view = match client.channel_to(&m.address) {
            Ok(ch) => {
                let mut req = tonic::Request::new(pb::GetStatusRequest {});
                req.set_timeout(std::time::Duration::from_secs(2));
                MasterRpc::new(ch)
                    .get_status(req)
                    .await
                    .ok()
                    .map(|r| r.into_inner())
            }
            Err(_) => None,
        };
        rows.push(vec![
            m.id.to_string(),
            m.address.clone(),
            if m.voter { "voter" } else { "learner" }.to_string(),
            view.as_ref()
                .map(|v| v.role.clone())
                .unwrap_or_else(|| "unreachable".into()),
            view.as_ref()
                .map(|v| v.term.to_string())
                .unwrap_or_default(),
            view.as_ref()
                .map(|v| v.last_applied.to_string())
                .unwrap_or_default(),
        ]);
    }
    table::print(
        &["ID", "ADDRESS", "MEMBERSHIP", "ROLE", "TERM", "APPLIED"],
        rows.into_iter(),
    );
    Ok(ExitCode::SUCCESS)
}

async fn members(client: &MasterClient, action: Option<MembersAction>) -> anyhow::Result<ExitCode> {
    let reply = match action {
        None => {
            let s =
                client
                    .call(|ch| async move {
                        MasterRpc::new(ch).get_status(pb::GetStatusRequest {}).await
                    })
                    .await?;
            pb::MembershipReply {
                members: s.members,
                log_index: s.last_log_index,
            }
        }
        Some(MembersAction::Add { id, address }) => {
            if id == 0 {
                return usage("members add: id must be greater than 0");
            }
            client
                .call(|ch| {
                    let address = address.clone();
                    async move {
                        OperatorClient::new(ch)
                            .add_learner(pb::AddLearnerRequest { id, address })
                            .await
                    }
                })
                .await?
        }
        Some(MembersAction::Voters { ids, retain }) => {
            if ids.is_empty() || ids.contains(&0) {
                return usage("members voters: give node ids greater than 0, e.g. 1,2,3");
            }
            client
                .call(|ch| {
                    let voter_ids = ids.clone();
                    async move {
                        OperatorClient::new(ch)
                            .change_membership(pb::ChangeMembershipRequest { voter_ids, retain })
                            .await
                    }
                })
                .await?
        }
    };
    table::print(
        &["ID", "ADDRESS", "MEMBERSHIP"],
        reply.members.iter().map(|m| {
            vec![
                m.id.to_string(),
                m.address.clone(),
                if m.voter { "voter" } else { "learner" }.to_string(),
            ]
        }),
    );
    Ok(ExitCode::SUCCESS)
}
