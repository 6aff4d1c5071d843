//! Finding and following the leader.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use agora_proto::LEADER_METADATA_KEY;
use agora_security::client::{AuthorizedChannel, ClientOverrides, ClientSecurity, ClientSettings};
use rand::Rng;
use tokio::time::Instant;
use tonic::{Code, Status};

/// A channel to one master: TLS when the client has the cluster CA, and the client's
/// credential on every call.
pub type MasterChannel = AuthorizedChannel;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("no masters given")]
    NoMasters,
    #[error("bad master address {0:?} (expected HOST:PORT)")]
    BadAddress(String),
    #[error("no leading master answered within {waited:?} (last error: {last})")]
    NoLeader { waited: Duration, last: String },
    /// The leader answered with an error that retrying will not fix.
    #[error("{}", .0.message())]
    Rejected(Status),
    /// The client's TLS or credential settings are unusable (a file named by
    /// `AGORA_CONFIG`, `AGORA_CA`, ... cannot be read or parsed).
    #[error("{0}")]
    Security(String),
    /// No registered agent could ever hold the request (the optional check of
    /// [`crate::SchedulerHandle::check_feasible`]); the message names what is short.
    #[error("no agent can ever hold this request: {0}")]
    Infeasible(String),
}

impl DriverError {
    /// The gRPC status of a rejection, if this is one.
    pub fn status(&self) -> Option<&Status> {
        match self {
            DriverError::Rejected(s) => Some(s),
            _ => None,
        }
    }
}

/// How long and how often to look for a leader.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Give up after this long without a leader's answer.
    pub deadline: Duration,
    /// First backoff between rounds over the masters; doubles, with jitter, up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Timeout of one call.
    pub call_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            deadline: Duration::from_secs(15),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            call_timeout: Duration::from_secs(5),
        }
    }
}

/// A client of the master quorum that always talks to the leader: a follower's refusal
/// names the leader (`agora-leader` metadata), and the client re-dials it; a master that
/// does not answer is skipped for the next one.
pub struct MasterClient {
    masters: Vec<String>,
    policy: RetryPolicy,
    security: ClientSecurity,
    /// The master believed to lead, and a channel to it.
    current: Mutex<Option<(String, MasterChannel)>>,
}

/// Whether `s` is HOST:PORT with a non-zero numeric port.
fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
}

fn endpoint(
    addr: &str,
    policy: &RetryPolicy,
    security: &ClientSecurity,
) -> Result<MasterChannel, DriverError> {
    if !is_host_port(addr) {
        return Err(DriverError::BadAddress(addr.to_string()));
    }
    let channel = security
        .endpoint(addr)
        .map_err(|_| DriverError::BadAddress(addr.to_string()))?
        .connect_timeout(Duration::from_millis(500))
        .timeout(policy.call_timeout)
        .tcp_nodelay(true)
        .connect_lazy();
    Ok(security.authorized(channel))
}

/// Whether a status means "ask another master" rather than a real answer.
fn is_retryable(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => true,
        // The connection broke mid-call (e.g. the leader was killed): tonic reports the
        // transport failure as Unknown, with the error as its source. A status the
        // server sent has no source.
        Code::Unknown => std::error::Error::source(status).is_some(),
        _ => false,
    }
}

impl MasterClient {
    /// A client over `masters` (HOST:PORT each), any or all of the quorum, with the TLS
    /// and credential settings of the environment: `AGORA_CA`, `AGORA_PRINCIPAL`,
    /// `AGORA_SECRET`, ..., else the client configuration file (`AGORA_CONFIG`, else the
    /// user's `agora/client.json`, which `agora dev` writes).
    pub fn new(masters: Vec<String>) -> Result<Self, DriverError> {
        Self::with_policy(masters, RetryPolicy::default())
    }

    /// How this client retries.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Like [`MasterClient::new`], with a retry policy.
    pub fn with_policy(masters: Vec<String>, policy: RetryPolicy) -> Result<Self, DriverError> {
        let settings = ClientSettings::discover(&ClientOverrides::default())
            .map_err(|e| DriverError::Security(e.to_string()))?;
        Self::with_security(masters, policy, settings.security)
    }

    /// A client with explicit TLS and credential settings (nothing read from the
    /// environment): what an agent uses.
    pub fn with_security(
        masters: Vec<String>,
        policy: RetryPolicy,
        security: ClientSecurity,
    ) -> Result<Self, DriverError> {
        if masters.is_empty() {
            return Err(DriverError::NoMasters);
        }
        for m in &masters {
            endpoint(m, &policy, &security)?;
        }
        Ok(MasterClient {
            masters,
            policy,
            security,
            current: Mutex::new(None),
        })
    }

    /// The TLS and credential settings of this client.
    pub fn security(&self) -> &ClientSecurity {
        &self.security
    }

    /// Parses a comma-separated `HOST:PORT,HOST:PORT` list.
    pub fn from_list(list: &str) -> Result<Self, DriverError> {
        Self::new(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    /// Why no registered agent could ever hold `wanted` for a framework of `role` (see
    /// [`crate::feasibility`]); `None` when one could, or while no agent is registered.
    pub async fn shortfall(
        &self,
        wanted: &crate::feasibility::Wanted,
        role: &str,
    ) -> Result<Option<String>, DriverError> {
        let state = self
            .call(|ch| async move {
                agora_proto::v1::master_client::MasterClient::new(ch)
                    .get_state(agora_proto::v1::GetStateRequest {})
                    .await
            })
            .await?;
        Ok(crate::feasibility::shortfall(wanted, role, &state.agents))
    }

    /// The masters this client knows.
    pub fn masters(&self) -> &[String] {
        &self.masters
    }

    /// The master currently believed to lead, if any.
    pub fn leader(&self) -> Option<String> {
        self.current
            .lock()
            .expect("lock")
            .as_ref()
            .map(|(a, _)| a.clone())
    }

    /// A channel to one specific master (not necessarily the leader).
    pub fn channel_to(&self, addr: &str) -> Result<MasterChannel, DriverError> {
        endpoint(addr, &self.policy, &self.security)
    }

    /// A channel for a long-lived stream to `addr`: no per-call timeout, and HTTP/2
    /// keepalive so a master that dies, pauses or is cut off ends the stream within
    /// about three seconds.
    pub fn session_channel(&self, addr: &str) -> Result<MasterChannel, DriverError> {
        if !is_host_port(addr) {
            return Err(DriverError::BadAddress(addr.to_string()));
        }
        let channel = self
            .security
            .endpoint(addr)
            .map_err(|_| DriverError::BadAddress(addr.to_string()))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true)
            .connect_lazy();
        Ok(self.security.authorized(channel))
    }

    /// Waits until a master says a leader of a term after `term` leads (the leader of a
    /// session opened in `term`, `leader`, was deposed: cut off by a partition, paused);
    /// makes the new leader this client's believed one and returns its address. Every
    /// master but `leader` is watched at once through `Master.WatchLeader` (one that
    /// cannot be reached is tried again each second). Pending for ever while no such
    /// notice comes: select it against the session with `leader`, whose end is the other
    /// way to learn of a new leader.
    pub async fn leader_moved(&self, leader: String, term: u64) -> String {
        let mut watches = tokio::task::JoinSet::new();
        for addr in self.masters.iter().filter(|a| **a != leader) {
            let Ok(channel) = self.session_channel(addr) else {
                continue;
            };
            watches.spawn(notice_of_a_later_term(addr.clone(), channel, term));
        }
        // Each watch ends only with a notice (the JoinSet aborts the others when dropped).
        let Some(Ok(new)) = watches.join_next().await else {
            return std::future::pending().await;
        };
        tracing::debug!(from = %leader, to = %new, term, "a master names a leader of a later term");
        if let Ok(ch) = endpoint(&new, &self.policy, &self.security) {
            *self.current.lock().expect("lock") = Some((new.clone(), ch));
        }
        new
    }

    /// Calls `f` on the leader's channel, following redirects and skipping dead masters
    /// until the leader answers or the policy's deadline passes.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, DriverError>
    where
        F: FnMut(MasterChannel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_on(f, false).await
    }

    /// Like [`MasterClient::call`] for a call whose response is a long-lived stream: its
    /// channel has no per-call timeout, and HTTP/2 keepalive notices a dead leader.
    pub async fn stream<T, F, Fut>(&self, f: F) -> Result<T, DriverError>
    where
        F: FnMut(MasterChannel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_on(f, true).await
    }

    async fn call_on<T, F, Fut>(&self, mut f: F, streaming: bool) -> Result<T, DriverError>
    where
        F: FnMut(MasterChannel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let open = |addr: &str| {
            if streaming {
                self.session_channel(addr)
            } else {
                endpoint(addr, &self.policy, &self.security)
            }
        };
        let start = Instant::now();
        let mut backoff = self.policy.initial_backoff;
        let mut next = 0usize;
        let mut last: String;
        loop {
            // Prefer the believed leader, else walk the list.
            let target = self.current.lock().expect("lock").clone();
            let (addr, channel) = match target {
                Some((addr, ch)) if !streaming => (addr, ch),
                Some((addr, _)) => {
                    let ch = open(&addr)?;
                    (addr, ch)
                }
                None => {
                    let addr = self.masters[next % self.masters.len()].clone();
                    next += 1;
                    let ch = open(&addr)?;
                    (addr, ch)
                }
            };
            match f(channel.clone()).await {
                Ok(resp) => {
                    if !streaming {
                        *self.current.lock().expect("lock") = Some((addr, channel));
                    } else {
                        let ch = endpoint(&addr, &self.policy, &self.security)?;
                        *self.current.lock().expect("lock") = Some((addr, ch));
                    }
                    return Ok(resp.into_inner());
                }
                Err(status) if is_retryable(&status) => {
                    last = format!("{addr}: {}", status.message());
                    let leader = status
                        .metadata()
                        .get(LEADER_METADATA_KEY)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    match leader {
                        Some(l) if l != addr => {
                            tracing::debug!(from = %addr, to = %l, "following the leader");
                            let ch = open(&l)?;
                            *self.current.lock().expect("lock") = Some((l, ch));
                            continue;
                        }
                        _ => {
                            *self.current.lock().expect("lock") = None;
                        }
                    }
                }
                Err(status) => return Err(DriverError::Rejected(status)),
            }
            if start.elapsed() >= self.policy.deadline {
                return Err(DriverError::NoLeader {
                    waited: start.elapsed(),
                    last,
                });
            }
            // After a full round over the masters without a leader, back off with jitter.
            if next.is_multiple_of(self.masters.len()) {
                let jitter = rand::thread_rng().gen_range(0.5..1.5);
                tokio::time::sleep(backoff.mul_f64(jitter)).await;
                backoff = (backoff * 2).min(self.policy.max_backoff);
            }
        }
    }
}

/// Watches one master's word of who leads until it names a leader of a term after `term`;
/// returns that leader's address. Pending for ever on a master that does not serve the
/// watch (an older version).
async fn notice_of_a_later_term(addr: String, channel: MasterChannel, term: u64) -> String {
    use agora_proto::v1 as pb;
    use agora_proto::v1::master_client::MasterClient as MasterRpc;
    loop {
        match MasterRpc::new(channel.clone())
            .watch_leader(pb::WatchLeaderRequest {})
            .await
        {
            Ok(stream) => {
                let mut notices = stream.into_inner();
                while let Ok(Some(n)) = notices.message().await {
                    if n.term > term && !n.leader_address.is_empty() {
                        return n.leader_address;
                    }
                }
            }
            Err(status) if status.code() == Code::Unimplemented => {
                tracing::debug!(master = %addr, "no WatchLeader on this master");
                return std::future::pending().await;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Broken;
    impl std::fmt::Display for Broken {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection reset mid-call")
        }
    }
    impl std::error::Error for Broken {}

    #[test]
    fn a_call_cut_by_a_broken_connection_is_retried_but_a_server_error_is_not() {
        let local = Status::from_error(Box::new(Broken));
        assert_eq!(local.code(), Code::Unknown);
        assert!(is_retryable(&local), "{local:?}");
        assert!(!is_retryable(&Status::unknown("the server said so")));
        assert!(!is_retryable(&Status::invalid_argument("tasks[0]")));
        assert!(is_retryable(&Status::unavailable("not the leader")));
    }
}
