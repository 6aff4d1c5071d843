//! The agent's link to the leading master: register (committed before the reply), open the
//! session, answer health checks, and when the session ends (leader lost, agent marked
//! unreachable) find the leader again and register again with the same id, reporting its
//! tasks so the master can reconcile.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agora_driver::{DriverError, MasterClient, RetryPolicy};
use agora_proto::v1 as pb;
use agora_proto::v1::agent_gateway_client::AgentGatewayClient;
use agora_proto::v1::master_client::MasterClient as MasterRpc;
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::config::AgentConfig;
use crate::convert;
use crate::tasks::Tasks;

/// Why the link stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the master refused this agent: {0}")]
    Refused(String),
    #[error("agent id file {path}: {source}")]
    IdFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Driver(#[from] DriverError),
}

/// What the link shares with the rest of the agent (e.g. its `/health`).
#[derive(Clone, Debug, Default)]
pub struct LinkStatus {
    pub agent_id: Option<String>,
    /// The leader of the current session, if one is open.
    pub leader: Option<String>,
}

const ID_FILE: &str = "agent_id";

/// The agent id kept in the work dir, if this agent has registered before.
pub fn load_agent_id(work_dir: &Path) -> Result<Option<String>, LinkError> {
    let path = work_dir.join(ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LinkError::IdFile {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Writes the agent id durably (write, fsync, rename, fsync the directory).
fn save_agent_id(work_dir: &Path, id: &str) -> Result<(), LinkError> {
    let path = work_dir.join(ID_FILE);
    let io = |source| LinkError::IdFile {
        path: path.display().to_string(),
        source,
    };
    let tmp = work_dir.join(format!("{ID_FILE}.tmp"));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(id.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(work_dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}

/// Runs the link until `shutdown` flips to true. Returns an error only when the master
/// refuses this agent outright (e.g. its id is registered from another address).
pub async fn run(
    config: Arc<AgentConfig>,
    tasks: Tasks,
    status: watch::Sender<LinkStatus>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), LinkError> {
    let client = MasterClient::with_policy(
        config.masters.clone(),
        RetryPolicy {
            deadline: Duration::from_secs(6),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            // Short against the deadline: a master cut off by a partition swallows the
            // call, and the next master must still get its turn (it took the agent 9 s to
            // follow an isolated leader's successor with 5 s here).
            call_timeout: Duration::from_secs(2),
        },
    )?;
    let mut agent_id = load_agent_id(&config.work_dir)?;
    if let Some(id) = &agent_id {
        tasks.set_agent_id(id);
    }
    status.send_modify(|s| s.agent_id = agent_id.clone());
    let mut backoff = Duration::from_millis(100);
    const MAX_BACKOFF: Duration = Duration::from_secs(2);
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        match register(&client, &config, agent_id.as_deref(), tasks.report()).await {
            Ok(id) => {
                if agent_id.as_deref() != Some(id.as_str()) {
                    save_agent_id(&config.work_dir, &id)?;
                    tasks.set_agent_id(&id);
                    tracing::info!(agent = %id, "registered; agent id saved");
                    agent_id = Some(id.clone());
                    status.send_modify(|s| s.agent_id = Some(id.clone()));
                }
                backoff = Duration::from_millis(100);
                let leader = client.leader().unwrap_or_default();
                status.send_modify(|s| s.leader = Some(leader.clone()));
                let span = tracing::info_span!("session", agent = %id, leader = %leader);
                let ended = tokio::select! {
                    r = tracing::Instrument::instrument(session(&client, &config, &tasks, &id, &leader), span) => r,
                    _ = shutdown.changed() => return Ok(()),
                };
                tasks.session_closed();
                status.send_modify(|s| s.leader = None);
                match ended {
                    Ok(()) => {
                        tracing::info!(%leader, "session closed by the master; finding the leader")
                    }
                    Err(e) => {
                        tracing::info!(%leader, error = %e, "session lost; finding the leader")
                    }
                }
            }
            Err(DriverError::Rejected(status))
                if status.code() == tonic::Code::FailedPrecondition =>
            {
                return Err(LinkError::Refused(status.message().to_string()));
            }
            Err(e) => tracing::info!(error = %e, "no leader reachable yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(jittered(backoff)) => {},
            _ = shutdown.changed() => return Ok(()),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn register(
    client: &MasterClient,
    config: &AgentConfig,
    agent_id: Option<&str>,
    report: Vec<pb::TaskReport>,
) -> Result<String, DriverError> {
    let info = convert::agent_info(config, agent_id);
    let reply = client
        .call(|ch| {
            let agent = Some(info.clone());
            let tasks = report.clone();
            async move {
                MasterRpc::new(ch)
                    .register_agent(pb::RegisterAgentRequest { agent, tasks })
                    .await
            }
        })
        .await?;
    Ok(reply.agent_id)
}

/// One session with the leader; returns when it ends.
async fn session(
    client: &MasterClient,
    config: &AgentConfig,
    tasks: &Tasks,
    agent_id: &str,
    leader: &str,
) -> Result<(), tonic::Status> {
    let channel = client
        .session_channel(leader)
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
    let (tx, rx) = mpsc::channel::<pb::AgentMessage>(1024);
    tx.send(pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Hello(pb::AgentHello {
            agent_id: agent_id.to_string(),
            address: config.advertise.clone(),
        })),
    })
    .await
    .map_err(|_| tonic::Status::cancelled("session closed"))?;
    let mut inbound = AgentGatewayClient::new(channel)
        .connect(ReceiverStream::new(rx))
        .await?
        .into_inner();
    tracing::info!("session open");
    tasks.session_opened(tx.clone());
    while let Some(msg) = inbound.message().await? {
        match msg.kind {
            Some(pb::master_message::Kind::Ping(p)) => {
                let pong = pb::AgentMessage {
                    kind: Some(pb::agent_message::Kind::Pong(pb::Pong { seq: p.seq })),
                };
                if tx.send(pong).await.is_err() {
                    break;
                }
            }
            Some(pb::master_message::Kind::Launch(l)) => tasks.launch(l),
            Some(pb::master_message::Kind::Kill(k)) => tasks.kill(&k),
            Some(pb::master_message::Kind::Ack(a)) => tasks.acknowledged(&a),
            Some(pb::master_message::Kind::FrameworkMessage(m)) => tasks.framework_message(m),
            Some(pb::master_message::Kind::ShutdownExecutor(s)) => tasks.shutdown_executor(&s),
            None => {}
        }
    }
    Ok(())
}
