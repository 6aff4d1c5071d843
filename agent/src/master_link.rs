//! The agent's link to the leading master: register (committed before the reply), open the
//! session, answer health checks, and when the session ends (leader lost, agent marked
//! unreachable) find the leader again and register again with the same id, reporting its
//! tasks so the master can reconcile.
//!
//! [`follow_leader`] is that loop for any [`AgentSide`]: the real agent's ([`run`], its
//! tasks behind it) and each simulated agent's (`simulator`) plug in only what they do
//! with what the leader sends.

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
use tracing::Instrument;

use crate::config::{AgentConfig, Registration};
use crate::convert;
use crate::tasks::Tasks;

/// Why the link stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the master refused this agent: {0}")]
    Refused(String),
    /// An operator marked this agent gone: it may never register again.
    #[error("the master refused this agent for good: {0}")]
    Gone(String),
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

/// Writes the agent id durably (write, fsync, rename, fsync the directory), readable only
/// by the agent's user (0600).
fn save_agent_id(work_dir: &Path, id: &str) -> Result<(), LinkError> {
    let path = work_dir.join(ID_FILE);
    crate::workdir::write_private(&path, id.as_bytes()).map_err(|source| LinkError::IdFile {
        path: path.display().to_string(),
        source,
    })
}

/// How long to wait before looking for the leader again, after a failed registration or
/// an ended session.
#[derive(Clone, Copy, Debug)]
pub enum Backoff {
    /// From `initial`, doubling up to `max`, each wait jittered (x0.5 to x1.5); back to
    /// `initial` after each registration.
    Exponential { initial: Duration, max: Duration },
    /// Drawn uniformly from `min..max` (whole milliseconds) each time.
    Uniform { min: Duration, max: Duration },
}

impl Backoff {
    /// The real agent's: from 100 ms, capped at 2 s.
    pub const AGENT: Backoff = Backoff::Exponential {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };

    fn first(&self) -> Duration {
        match *self {
            Backoff::Exponential { initial, .. } => initial,
            Backoff::Uniform { min, .. } => min,
        }
    }

    /// The wait at `current`, and the current of the next one.
    fn wait(&self, current: Duration) -> (Duration, Duration) {
        let mut rng = rand::thread_rng();
        match *self {
            Backoff::Exponential { max, .. } => (
                current.mul_f64(rng.gen_range(0.5..1.5)),
                (current * 2).min(max),
            ),
            Backoff::Uniform { min, max } => {
                let (lo, hi) = (min.as_millis() as u64, max.as_millis() as u64);
                let ms = if lo < hi { rng.gen_range(lo..hi) } else { lo };
                (Duration::from_millis(ms), current)
            }
        }
    }
}

/// The agent's side of its link to the leader: what a real or simulated agent does at
/// each step. Pings are answered by the link itself.
pub trait AgentSide {
    /// Every task with its last state, reported at each registration.
    fn report(&self) -> Vec<pb::TaskReport>;
    /// Registered (again) as `agent_id`; `new_id` when it is not the id it asked for.
    fn registered(&mut self, agent_id: &str, new_id: bool) -> Result<(), LinkError>;
    /// No leader took the registration (the master's outright refusal ends the link).
    fn not_registered(&mut self, _error: &DriverError) {}
    /// A session with `leader` is starting.
    fn session_starting(&mut self, _leader: &str) {}
    /// The session is open; `tx` sends on it.
    fn session_opened(&mut self, tx: &mpsc::Sender<pb::AgentMessage>);
    /// A message from the leader; returns what to send in answer, in order.
    fn handle(&mut self, message: pb::master_message::Kind) -> Vec<pb::AgentMessage>;
    /// The session with `leader` ended: closed by the master (`Ok`) or lost.
    fn session_ended(&mut self, leader: &str, outcome: &Result<(), tonic::Status>);
}

/// Registers `registration` (as `agent_id`, once it has one) with the leader found through
/// `client`, holds a session with it, and whenever the session ends finds the leader again
/// and registers again, waiting `backoff` in between, until `shutdown` flips to true.
/// Returns an error when the master refuses the agent outright (e.g. its id is registered
/// from another address) or `side` fails.
pub async fn follow_leader<S: AgentSide>(
    client: &MasterClient,
    registration: &Registration,
    mut agent_id: Option<String>,
    side: &mut S,
    backoff: Backoff,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), LinkError> {
    let mut current = backoff.first();
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let registered = tokio::select! {
            r = register(client, registration, agent_id.as_deref(), side.report()) => r,
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        };
        match registered {
            Ok(id) => {
                let new_id = agent_id.as_deref() != Some(id.as_str());
                side.registered(&id, new_id)?;
                agent_id = Some(id.clone());
                current = backoff.first();
                if let Some(leader) = client.leader() {
                    side.session_starting(&leader);
                    let span = tracing::info_span!("session", agent = %id, leader = %leader);
                    let ended = tokio::select! {
                        r = session(client, registration, side, &id, &leader).instrument(span) => r,
                        _ = shutdown.wait_for(|s| *s) => return Ok(()),
                    };
                    side.session_ended(&leader, &ended);
                }
            }
            Err(DriverError::Rejected(status))
                if status.code() == tonic::Code::FailedPrecondition =>
            {
                let message = status.message().to_string();
                // The registry's Rejection::AgentGone.
                if message.contains("was marked gone") {
                    return Err(LinkError::Gone(message));
                }
                return Err(LinkError::Refused(message));
            }
            Err(e) => side.not_registered(&e),
        }
        let (wait, next) = backoff.wait(current);
        current = next;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {},
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        }
    }
}

/// Registers with the leader (committed before the reply); returns the agent id.
async fn register(
    client: &MasterClient,
    registration: &Registration,
    agent_id: Option<&str>,
    report: Vec<pb::TaskReport>,
) -> Result<String, DriverError> {
    let info = convert::agent_info(registration, agent_id);
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

/// One session with the leader: hello, then pongs to its pings and `side`'s answers to
/// everything else; returns when it ends.
async fn session<S: AgentSide>(
    client: &MasterClient,
    registration: &Registration,
    side: &mut S,
    agent_id: &str,
    leader: &str,
) -> Result<(), tonic::Status> {
    let channel = client
        .session_channel(leader)
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
    let (tx, rx) = mpsc::channel::<pb::AgentMessage>(1024);
    tx.send(convert::hello(agent_id, registration))
        .await
        .map_err(|_| tonic::Status::cancelled("session closed"))?;
    let mut inbound = AgentGatewayClient::new(channel)
        .connect(ReceiverStream::new(rx))
        .await?
        .into_inner();
    side.session_opened(&tx);
    while let Some(msg) = inbound.message().await? {
        let answers = match msg.kind {
            Some(pb::master_message::Kind::Ping(p)) => vec![convert::pong(p.seq)],
            Some(kind) => side.handle(kind),
            None => continue,
        };
        for m in answers {
            if tx.send(m).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The real agent: its tasks, its id file, its `/health`.
struct RealAgent<'a> {
    config: &'a AgentConfig,
    tasks: &'a Tasks,
    status: &'a watch::Sender<LinkStatus>,
}

impl AgentSide for RealAgent<'_> {
    fn report(&self) -> Vec<pb::TaskReport> {
        self.tasks.report()
    }

    fn registered(&mut self, agent_id: &str, new_id: bool) -> Result<(), LinkError> {
        self.tasks.observer().registered();
        if new_id {
            save_agent_id(&self.config.work_dir, agent_id)?;
            self.tasks.set_agent_id(agent_id);
            tracing::info!(agent = %agent_id, "registered; agent id saved");
            self.status
                .send_modify(|s| s.agent_id = Some(agent_id.to_string()));
        }
        Ok(())
    }

    fn not_registered(&mut self, error: &DriverError) {
        tracing::info!(%error, "no leader reachable yet");
    }

    fn session_starting(&mut self, leader: &str) {
        self.status
            .send_modify(|s| s.leader = Some(leader.to_string()));
    }

    fn session_opened(&mut self, tx: &mpsc::Sender<pb::AgentMessage>) {
        tracing::info!("session open");
        self.tasks.observer().session_opened();
        self.tasks.session_opened(tx.clone());
    }

    fn handle(&mut self, message: pb::master_message::Kind) -> Vec<pb::AgentMessage> {
        use pb::master_message::Kind;
        match message {
            Kind::Launch(l) => self.tasks.launch(l),
            Kind::Kill(k) => self.tasks.kill(&k),
            Kind::Ack(a) => self.tasks.acknowledged(&a),
            Kind::FrameworkMessage(m) => self.tasks.framework_message(m),
            Kind::ShutdownExecutor(s) => self.tasks.shutdown_executor(&s),
            Kind::Ping(_) => {}
        }
        Vec::new()
    }

    fn session_ended(&mut self, leader: &str, outcome: &Result<(), tonic::Status>) {
        self.tasks.session_closed();
        self.tasks.observer().session_ended();
        self.status.send_modify(|s| s.leader = None);
        match outcome {
            Ok(()) => tracing::info!(%leader, "session closed by the master; finding the leader"),
            Err(e) => tracing::info!(%leader, error = %e, "session lost; finding the leader"),
        }
    }
}

/// Runs the real agent's link until `shutdown` flips to true. Returns an error only when
/// the master refuses this agent outright (e.g. its id is registered from another
/// address).
pub async fn run(
    config: Arc<AgentConfig>,
    tasks: Tasks,
    status: watch::Sender<LinkStatus>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), LinkError> {
    let security = config
        .security
        .master_client()
        .map_err(|e| LinkError::Refused(format!("TLS: {e}")))?;
    let client = MasterClient::with_security(
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
        security,
    )?;
    let agent_id = load_agent_id(&config.work_dir)?;
    if let Some(id) = &agent_id {
        tasks.set_agent_id(id);
    }
    status.send_modify(|s| s.agent_id = agent_id.clone());
    let mut side = RealAgent {
        config: &config,
        tasks: &tasks,
        status: &status,
    };
    follow_leader(
        &client,
        &config.registration(),
        agent_id,
        &mut side,
        Backoff::AGENT,
        &mut shutdown,
    )
    .await
}
