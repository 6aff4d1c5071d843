//! The register workload: clients in the harness's own namespace (which no partition
//! cuts) write and read registers through the masters' public API while the nemesis
//! breaks the cluster, and record every operation for the `linearizable` checker
//! ([`crate::checker::linearizable`], [`crate::linearizable`]).
//!
//! The registers are role weights: register `reg-K` is the weight of role `reg-K`. A
//! write is `Operator.SetWeight` (through the Raft log: answered once committed and
//! applied); a read is `Operator.GetWeights` (answered only by a leader holding its
//! lease, from its applied registry: a read that claims to be linearizable), and the
//! register's value is that role's weight, or 0 while it has none. Every written value is
//! unique: client `c` of `n` writes `1 + c + n * k` for its `k`-th write, as the weight
//! `value / 1000` (weights are in [0.001, 1000], so a value stays at most 1,000,000).
//!
//! Each client loops until stopped: it picks a register, a random master, and a write or
//! a read, records the invocation, makes the call with a short timeout
//! ([`CALL_TIMEOUT`]: a partition makes an indeterminate op, not a hang), and records the
//! completion: `ok`; `fail` when the write was refused before anything was written
//! (invalid, not allowed, rejected by the registry); `info` when it may have been written
//! (a timeout, a broken connection, or "not the leader": a leader that steps down with the
//! write in flight answers that too, and its successor may still commit it). A refusal
//! naming the leader is followed, at most [`MAX_REDIRECTS`] times, as a new operation (a
//! write with a new value, so that no value is ever sent twice).
//!
//! What it must not do: judge anything (the checker does), or talk to the cluster other
//! than through the public gRPC API.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agora_driver::{MasterChannel, MasterClient, RetryPolicy};
use agora_proto::v1 as pb;
use agora_proto::v1::operator_client::OperatorClient;
use agora_proto::LEADER_METADATA_KEY;
use tonic::Code;

use crate::history::{op, EventType, Recorder, RegisterOp};
use crate::nemesis::Rng;

/// How many registers (`reg-0` ...) the clients share.
pub const KEYS: u64 = 3;

/// The timeout of one call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// How many times one operation follows a refusal naming the leader.
pub const MAX_REDIRECTS: u32 = 2;

/// The largest value a client writes (as the weight 1000).
const MAX_VALUE: u64 = 1_000_000;

/// The register's name for key `k`.
pub fn key(k: u64) -> String {
    format!("reg-{k}")
}

/// The weight that encodes `value`.
pub fn weight_of(value: u64) -> f64 {
    value as f64 / 1000.0
}

/// The value a weight encodes (the nearest one).
pub fn value_of(weight: f64) -> u64 {
    (weight * 1000.0).round().max(0.0) as u64
}

/// The `k`-th value (from 0) client `client` of `clients` writes: unique across clients.
pub fn nth_value(client: u64, clients: u64, k: u64) -> u64 {
    1 + client + clients.max(1) * k
}

/// What the workload runs with.
#[derive(Clone)]
pub struct Config {
    /// How many clients (0: none).
    pub clients: usize,
    pub seed: u64,
    /// Each client writes `reg-<i>.jsonl` here.
    pub history_dir: PathBuf,
    /// The run's start (wall clock, ms since the epoch): the history's time origin.
    pub start_unix_ms: u64,
    /// The masters' current addresses (the list changes with membership).
    pub masters: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
}

/// The running clients; [`Workload::stop`] ends them (dropping it aborts them).
pub struct Workload {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts the clients on the current tokio runtime.
pub fn start(config: Config) -> Result<Workload, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    if config.clients == 0 {
        return Ok(Workload { stop, tasks });
    }
    let masters = (config.masters)();
    let policy = RetryPolicy {
        call_timeout: CALL_TIMEOUT,
        ..RetryPolicy::default()
    };
    let dialer = Arc::new(
        MasterClient::with_policy(masters, policy).map_err(|e| format!("register clients: {e}"))?,
    );
    for c in 0..config.clients {
        let name = format!("reg-{c}");
        let recorder = Recorder::create(
            config.history_dir.join(format!("{name}.jsonl")),
            name,
            config.start_unix_ms,
        )
        .map_err(|e| e.to_string())?;
        let client = Client {
            id: c as u64,
            clients: config.clients as u64,
            written: 0,
            rng: Rng::new(config.seed ^ (0x5EED_0000 + c as u64)),
            recorder,
            dialer: dialer.clone(),
            channels: HashMap::new(),
            masters: config.masters.clone(),
        };
        tasks.push(tokio::spawn(client.run(stop.clone())));
    }
    Ok(Workload { stop, tasks })
}

impl Workload {
    /// Stops the clients: each finishes the call it is in (bounded by its timeout).
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks.drain(..) {
            let abort = task.abort_handle();
            if tokio::time::timeout(CALL_TIMEOUT * 3, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Write,
    Read,
}

/// How an operation ended, as the history records it.
struct Completion {
    kind: EventType,
    /// What a read returned (`None`: no value yet).
    read: Option<u64>,
    error: Option<String>,
    /// The leader a refusal named.
    redirect: Option<String>,
}

impl Completion {
    fn ok(read: Option<u64>) -> Completion {
        Completion {
            kind: EventType::Ok,
            read,
            error: None,
            redirect: None,
        }
    }
}

struct Client {
    id: u64,
    clients: u64,
    /// Values written so far.
    written: u64,
    rng: Rng,
    recorder: Recorder,
    dialer: Arc<MasterClient>,
    channels: HashMap<String, MasterChannel>,
    masters: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
}

impl Client {
    async fn run(mut self, stop: Arc<AtomicBool>) {
        // The operation a refusal sent to the leader it named: kind, key, master, hops.
        let mut redirect: Option<(Kind, u64, String, u32)> = None;
        while !stop.load(Ordering::Relaxed) {
            let (kind, k, master, hops) = match redirect.take() {
                Some(r) => r,
                None => {
                    let masters = (self.masters)();
                    if masters.is_empty() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    let master =
                        masters[self.rng.range(0, masters.len() as u64 - 1) as usize].clone();
                    let write = self.rng.next_u64().is_multiple_of(2) && self.can_write();
                    let kind = if write { Kind::Write } else { Kind::Read };
                    (kind, self.rng.range(0, KEYS - 1), master, 0)
                }
            };
            let to = self.operate(kind, k, &master).await;
            if let Some(leader) = to {
                if hops < MAX_REDIRECTS && leader != master {
                    redirect = Some((kind, k, leader, hops + 1));
                    continue;
                }
            }
            let pause = self.rng.range(10, 40);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    /// Whether this client has values left to write.
    fn can_write(&self) -> bool {
        nth_value(self.id, self.clients, self.written) <= MAX_VALUE
    }

    fn channel(&mut self, master: &str) -> Option<MasterChannel> {
        if let Some(ch) = self.channels.get(master) {
            return Some(ch.clone());
        }
        let ch = self.dialer.channel_to(master).ok()?;
        self.channels.insert(master.to_string(), ch.clone());
        Some(ch)
    }

    /// One operation on `reg-k` at `master`, recorded; the leader a refusal named.
    async fn operate(&mut self, kind: Kind, k: u64, master: &str) -> Option<String> {
        let key = key(k);
        let value = match kind {
            Kind::Write => {
                let v = nth_value(self.id, self.clients, self.written);
                self.written += 1;
                Some(v)
            }
            Kind::Read => None,
        };
        let f = match kind {
            Kind::Write => op::REG_WRITE,
            Kind::Read => op::REG_READ,
        };
        let invoked = RegisterOp {
            key: key.clone(),
            value,
            master: Some(master.to_string()),
        };
        let Some(channel) = self.channel(master) else {
            let e = self.recorder.event(EventType::Invoke, f).register(&invoked);
            let _ = self.recorder.record(&e);
            let e = self
                .recorder
                .event(EventType::Fail, f)
                .register(&invoked)
                .error("bad master address");
            let _ = self.recorder.record(&e);
            return None;
        };
        let e = self.recorder.event(EventType::Invoke, f).register(&invoked);
        let _ = self.recorder.record(&e);
        let done = match value {
            Some(v) => write(channel, &key, v).await,
            None => read(channel, &key).await,
        };
        let completed = RegisterOp {
            key,
            value: match kind {
                Kind::Write => value,
                Kind::Read => done.read,
            },
            master: Some(master.to_string()),
        };
        let mut e = self.recorder.event(done.kind, f).register(&completed);
        if let Some(err) = &done.error {
            e = e.error(err.clone());
        }
        let _ = self.recorder.record(&e);
        done.redirect
    }
}

/// `SetWeight` of role `key` to the weight of `value`.
async fn write(channel: MasterChannel, key: &str, value: u64) -> Completion {
    let mut client = OperatorClient::new(channel);
    let call = client.set_weight(pb::SetWeightRequest {
        role: key.to_string(),
        weight: weight_of(value),
    });
    match tokio::time::timeout(CALL_TIMEOUT + Duration::from_millis(250), call).await {
        Ok(Ok(_)) => Completion::ok(None),
        Ok(Err(status)) => {
            // Refused before anything was written, or rejected by the registry (which
            // then changed nothing): definitely not written. Anything else may have been.
            let definite = matches!(
                status.code(),
                Code::InvalidArgument
                    | Code::PermissionDenied
                    | Code::Unauthenticated
                    | Code::FailedPrecondition
            );
            refused(
                if definite {
                    EventType::Fail
                } else {
                    EventType::Info
                },
                &status,
            )
        }
        Err(_) => timed_out(),
    }
}

/// `GetWeights`, and the weight of role `key` in it.
async fn read(channel: MasterChannel, key: &str) -> Completion {
    let mut client = OperatorClient::new(channel);
    let call = client.get_weights(pb::GetWeightsRequest {});
    match tokio::time::timeout(CALL_TIMEOUT + Duration::from_millis(250), call).await {
        Ok(Ok(reply)) => Completion::ok(
            reply
                .into_inner()
                .weights
                .iter()
                .find(|w| w.role == key)
                .map(|w| value_of(w.weight)),
        ),
        // A read changes nothing: whatever went wrong, it is simply not an observation.
        Ok(Err(status)) => refused(EventType::Fail, &status),
        Err(_) => timed_out(),
    }
}

fn refused(kind: EventType, status: &tonic::Status) -> Completion {
    Completion {
        kind,
        read: None,
        error: Some(format!("{:?}: {}", status.code(), status.message())),
        redirect: status
            .metadata()
            .get(LEADER_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    }
}

fn timed_out() -> Completion {
    Completion {
        kind: EventType::Info,
        read: None,
        error: Some("timed out".into()),
        redirect: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_unique_and_round_trip_through_weights() {
        let mut seen = std::collections::BTreeSet::new();
        for client in 0..4 {
            for k in 0..1000 {
                let v = nth_value(client, 4, k);
                assert!(v >= 1, "0 is the register's initial value");
                assert!(seen.insert(v), "{v} written twice");
            }
        }
        for v in [1, 2, 17, 999, 1000, 123_457, 999_999, MAX_VALUE] {
            let w = weight_of(v);
            assert!(
                (0.001..=1000.0).contains(&w),
                "{w} outside the weight limits"
            );
            assert_eq!(value_of(w), v);
        }
        assert_eq!(key(2), "reg-2");
    }
}
