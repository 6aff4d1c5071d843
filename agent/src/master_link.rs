//! The agent's link to the leading master: register (committed before the reply), open the
//! session, answer health checks, and when the session ends (leader lost, agent marked
//! unreachable) find the leader again and register again with the same id, reporting its
//! tasks so the master can reconcile.
//!
//! [`follow_leader`] is that loop for any [`AgentSide`]: the real agent's ([`run`], its
//! tasks behind it) and each simulated agent's (`simulator`) plug in only what they do
//! with what the leader sends.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
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
    #[error("work dir file {path}: {source}")]
    StateFile {
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
/// This start's incarnation, under `meta/`: one more than the last start's.
const INCARNATION_FILE: &str = "meta/incarnation";

/// Counts this start of the agent: reads the last incarnation from the work dir and writes
/// the next one durably before returning it. Registrations are ordered by (incarnation,
/// attempt), so those of this start come after every one of an earlier start.
pub fn next_incarnation(work_dir: &Path) -> Result<u64, LinkError> {
    let path = work_dir.join(INCARNATION_FILE);
    let io_error = |source| LinkError::StateFile {
        path: path.display().to_string(),
        source,
    };
    let last = match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse::<u64>().map_err(|e| {
            io_error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a number: {e}"),
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io_error(e)),
    };
    let next = last + 1;
    crate::workdir::write_private(&path, next.to_string().as_bytes()).map_err(io_error)?;
    Ok(next)
}

/// The agent id kept in the work dir, if this agent has registered before.
pub fn load_agent_id(work_dir: &Path) -> Result<Option<String>, LinkError> {
    let path = work_dir.join(ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LinkError::StateFile {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Writes the agent id durably (write, fsync, rename, fsync the directory), readable only
/// by the agent's user (0600).
fn save_agent_id(work_dir: &Path, id: &str) -> Result<(), LinkError> {
    let path = work_dir.join(ID_FILE);
    crate::workdir::write_private(&path, id.as_bytes()).map_err(|source| LinkError::StateFile {
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
    /// Whether to watch the other masters for a new leader while a session is open (two
    /// streams, to the other masters; the simulator's thousands of agents do without).
    fn watches_leader(&self) -> bool {
        true
    }
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
/// Each registration request is numbered within `incarnation` (see [`next_incarnation`]).
/// Returns an error when the master refuses the agent outright (e.g. its id is registered
/// from another address) or `side` fails.
pub async fn follow_leader<S: AgentSide>(
    client: &MasterClient,
    registration: &Registration,
    mut agent_id: Option<String>,
    incarnation: u64,
    side: &mut S,
    backoff: Backoff,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), LinkError> {
    let mut current = backoff.first();
    let attempts = AtomicU64::new(0);
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let order = Order {
            incarnation,
            attempts: &attempts,
        };
        let registered = tokio::select! {
            r = register(client, registration, agent_id.as_deref(), order, side.report()) => r,
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        };
        match registered {
            Ok((id, term)) => {
                let new_id = agent_id.as_deref() != Some(id.as_str());
                side.registered(&id, new_id)?;
                agent_id = Some(id.clone());
                current = backoff.first();
                if let Some(leader) = client.leader() {
                    side.session_starting(&leader);
                    let watch = side.watches_leader() && term > 0;
                    let span = tracing::info_span!("session", agent = %id, leader = %leader, term);
                    let moved = async {
                        if watch {
                            client.leader_moved(leader.clone(), term).await
                        } else {
                            std::future::pending().await
                        }
                    };
                    let ended = tokio::select! {
                        r = session(client, registration, side, &id, &leader).instrument(span.clone()) => Ok(r),
                        new = moved => Err(new),
                        _ = shutdown.wait_for(|s| *s) => return Ok(()),
                    };
                    match ended {
                        Ok(outcome) => side.session_ended(&leader, &outcome),
                        Err(new) => {
                            // Its leader was deposed: register with the new one at once
                            // (the old session would end only when its keepalive fails).
                            span.in_scope(|| tracing::info!(new_leader = %new, "a new leader was elected; moving to it"));
                            side.session_ended(
                                &leader,
                                &Err(tonic::Status::unavailable(format!(
                                    "a leader of a later term is {new}"
                                ))),
                            );
                            continue;
                        }
                    }
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

/// Numbers the registration requests of one incarnation.
#[derive(Clone, Copy)]
struct Order<'a> {
    incarnation: u64,
    attempts: &'a AtomicU64,
}

/// Registers with the leader (committed before the reply); returns the agent id and the
/// leader's term (0 from a master that does not say). Every
/// request sent (the client's retries too) has an attempt number of its own, so one
/// delayed in the network and delivered after a later one is refused by the registry.
async fn register(
    client: &MasterClient,
    registration: &Registration,
    agent_id: Option<&str>,
    order: Order<'_>,
    report: Vec<pb::TaskReport>,
) -> Result<(String, u64), DriverError> {
    let info = convert::agent_info(registration, agent_id);
    let reply = client
        .call(|ch| {
            let agent = Some(info.clone());
            let tasks = report.clone();
            let attempt = order.attempts.fetch_add(1, Ordering::Relaxed) + 1;
            let incarnation = order.incarnation;
            async move {
                MasterRpc::new(ch)
                    .register_agent(pb::RegisterAgentRequest {
                        agent,
                        tasks,
                        incarnation,
                        attempt,
                    })
                    .await
            }
        })
        .await?;
    Ok((reply.agent_id, reply.term))
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
    let incarnation = next_incarnation(&config.work_dir)?;
    tracing::info!(incarnation, "agent incarnation counted");
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
        incarnation,
        &mut side,
        Backoff::AGENT,
        &mut shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_start_counts_one_more_incarnation_durably() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("meta")).unwrap();
        assert_eq!(next_incarnation(dir.path()).unwrap(), 1);
        assert_eq!(next_incarnation(dir.path()).unwrap(), 2);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(INCARNATION_FILE)).unwrap(),
            "2"
        );
        // A damaged file is an error naming it, never a restart from 1 (which the registry
        // would refuse as older than the registrations it applied).
        std::fs::write(dir.path().join(INCARNATION_FILE), "x").unwrap();
        let err = next_incarnation(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("meta/incarnation") && err.contains("not a number"),
            "{err}"
        );
    }
}
