//! A master replica's configuration, validated: everything `run` needs, nothing parsed later.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use agora_raft_store::NodeId;

/// Log entries between two snapshots (then all but the last 1,000 are purged). An entry
/// is a batch of commands (at most 2 MiB): 2,000 of them were ~26 MB of log in a run of
/// 0.5-cpu tasks, and the log, in sled's memory and on disk, is what a replica's size grows
/// with once retention bounds the registry (at 10,000 the leader reached 230 MB).
pub const SNAPSHOT_EVERY_ENTRIES: u64 = 2_000;

/// A validated master configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// This replica's Raft node id.
    pub id: NodeId,
    /// HOST:PORT peers and clients use to reach this replica.
    pub advertise: String,
    /// Every voting replica (this one included), id to advertised HOST:PORT.
    pub peers: BTreeMap<NodeId, String>,
    /// Where sled keeps the Raft log, vote and registry.
    pub work_dir: PathBuf,
    /// Batch allocation period.
    pub allocation_interval: Duration,
    /// Offers held longer are rescinded (None: never).
    pub offer_timeout: Option<Duration>,
    /// Agent health.
    pub agent_ping_timeout: Duration,
    pub max_agent_ping_timeouts: u32,
    /// Completed tasks and frameworks kept (`--max-completed-tasks-per-framework`,
    /// `--max-completed-frameworks`); the leader replicates it to the registry.
    pub retention: agora_registry::Retention,
    /// Raft timing.
    pub raft: RaftTiming,
    /// This replica joins an existing quorum through a membership change (added as a
    /// learner by an operator): it never initializes a cluster, whatever `peers` says.
    pub join: bool,
    /// Deliberate bugs for the harness's self-test; always none in `agora-master`.
    pub faults: crate::faults::Faults,
    /// TLS, credentials and ACLs.
    pub security: Security,
}

/// How a replica protects its port: TLS (`--tls-*`), who may call (`--credentials`,
/// `--acls`), and whether it may run without them (`--insecure`).
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// The replica's certificate (CN `master-<id>`), key, and the cluster CA.
    pub tls: Option<agora_security::tls::TlsFiles>,
    /// Also accept plaintext on the TLS port (`--tls-allow-plaintext`).
    pub allow_plaintext: bool,
    /// Principals and secrets (Mesos' JSON shape).
    pub credentials: Option<PathBuf>,
    /// ACLs (Mesos' JSON shape); none: every authenticated principal may do everything
    /// except act for another's framework or agent.
    pub acls: Option<PathBuf>,
    /// Also require credentials on read-only HTTP (`/state`, `/metrics`, the UI).
    pub authenticate_http_readonly: bool,
    /// Run without TLS or credentials (said on `/health` and in the log).
    pub insecure: bool,
}

impl Security {
    /// Whether something that should protect this replica is missing.
    pub fn is_insecure(&self) -> bool {
        self.tls.is_none() || self.credentials.is_none()
    }
}

/// Raft timing.
///
/// `election_timeout` is T of `--raft-election-timeout`: a follower that hears nothing
/// from its leader for T to 1.1 T campaigns, as an etcd member with the same
/// `--election-timeout` does (etcd draws from [T, 2T)). openraft 0.9 lets a follower that has
/// accepted a leader campaign only after the leader lease (openraft's maximum election
/// timeout) *plus* its own election timeout (drawn in [min, max)) have passed without a
/// heartbeat, so T is split: max = 0.55 T, min = 0.45 T, and the wait is
/// 0.55 T + [0.45 T, 0.55 T) = [T, 1.1 T), then one vote round (`2 * max` later still if a
/// peer has a longer log). With the defaults (50 ms heartbeats, T = 250 ms): 250-275 ms.
/// Before issue 17 T was openraft's minimum and the wait 1.5 T + [T, 1.5 T) = 625-750 ms.
#[derive(Clone, Debug)]
pub struct RaftTiming {
    pub heartbeat_interval: Duration,
    /// T: how long a follower waits without hearing from its leader before it campaigns
    /// (at least; at most 1.1 T).
    pub election_timeout: Duration,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat_interval: Duration::from_millis(50),
            election_timeout: Duration::from_millis(250),
        }
    }
}

/// Why a configuration is refused. Each message is one line for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{flag} {value} is above the limit {max}")]
    RetentionTooLarge {
        flag: String,
        value: usize,
        max: usize,
    },
    #[error("--id must be greater than 0")]
    ZeroId,
    #[error("--peers entry {0:?} is not ID=HOST:PORT")]
    BadPeer(String),
    #[error("--peers names id {0} twice")]
    DuplicatePeer(NodeId),
    #[error("--peers must list 1, 3 or 5 replicas, not {0}")]
    PeerCount(usize),
    #[error("--id {id} is not in --peers ({peers})")]
    IdNotInPeers { id: NodeId, peers: String },
    #[error("--peers gives {id}={peer} but --advertise is {advertise}")]
    AdvertiseMismatch {
        id: NodeId,
        peer: String,
        advertise: String,
    },
    #[error("{flag} must be greater than zero")]
    ZeroDuration { flag: &'static str },
    #[error("refusing to start without {missing}: give --tls-cert, --tls-key, --tls-ca and --credentials (see docs/security.md), or --insecure")]
    Insecure { missing: &'static str },
    #[error("--tls-allow-plaintext needs TLS (--tls-cert, --tls-key, --tls-ca)")]
    PlaintextWithoutTls,
    #[error("--authenticate-http-readonly needs --credentials")]
    ReadonlyWithoutCredentials,
    #[error("--raft-election-timeout ({election:?}) must be at least 3x --raft-heartbeat-interval ({heartbeat:?})")]
    ElectionTooShort {
        election: Duration,
        heartbeat: Duration,
    },
}

/// Parses `1=HOST:PORT,2=HOST:PORT,...`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let mut peers = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || ConfigError::BadPeer(part.to_string());
        let (id, addr) = part.split_once('=').ok_or_else(bad)?;
        let id: NodeId = id.trim().parse().map_err(|_| bad())?;
        let addr = addr.trim();
        if id == 0 || !is_host_port(addr) {
            return Err(bad());
        }
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(ConfigError::DuplicatePeer(id));
        }
    }
    Ok(peers)
}

/// Whether `s` looks like HOST:PORT with a numeric port.
pub fn is_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

impl Config {
    /// Checks the cross-field rules: the id is in the peers, sizes are 1, 3 or 5, the
    /// advertise address agrees with this replica's peer entry.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ZeroId);
        }
        if !self.join && ![1, 3, 5].contains(&self.peers.len()) {
            return Err(ConfigError::PeerCount(self.peers.len()));
        }
        let Some(mine) = self.peers.get(&self.id) else {
            return Err(ConfigError::IdNotInPeers {
                id: self.id,
                peers: self
                    .peers
                    .keys()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            });
        };
        if mine != &self.advertise {
            return Err(ConfigError::AdvertiseMismatch {
                id: self.id,
                peer: mine.clone(),
                advertise: self.advertise.clone(),
            });
        }
        for (flag, d) in [
            ("--allocation-interval", self.allocation_interval),
            ("--agent-ping-timeout", self.agent_ping_timeout),
            ("--raft-heartbeat-interval", self.raft.heartbeat_interval),
            ("--raft-election-timeout", self.raft.election_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroDuration { flag });
            }
        }
        let sec = &self.security;
        if !sec.insecure {
            match (&sec.tls, &sec.credentials) {
                (None, None) => {
                    return Err(ConfigError::Insecure {
                        missing: "TLS and credentials",
                    })
                }
                (None, Some(_)) => return Err(ConfigError::Insecure { missing: "TLS" }),
                (Some(_), None) => {
                    return Err(ConfigError::Insecure {
                        missing: "credentials",
                    })
                }
                (Some(_), Some(_)) => {}
            }
        }
        if sec.allow_plaintext && sec.tls.is_none() {
            return Err(ConfigError::PlaintextWithoutTls);
        }
        if sec.authenticate_http_readonly && sec.credentials.is_none() {
            return Err(ConfigError::ReadonlyWithoutCredentials);
        }
        if let Err(agora_registry::Rejection::RetentionTooLarge { field, value, max }) =
            self.retention.validate()
        {
            return Err(ConfigError::RetentionTooLarge {
                flag: format!("--{}", field.replace('_', "-")),
                value,
                max,
            });
        }
        if self.raft.election_timeout < self.raft.heartbeat_interval * 3 {
            return Err(ConfigError::ElectionTooShort {
                election: self.raft.election_timeout,
                heartbeat: self.raft.heartbeat_interval,
            });
        }
        Ok(())
    }

    /// openraft's configuration for this replica.
    pub fn raft_config(&self) -> openraft::Config {
        self.raft.openraft_config()
    }
}

impl RaftTiming {
    /// How long an accepted append keeps a leader's lease
    /// ([`crate::quorum::holds_lease`]): [`crate::quorum::LEASE_FRACTION`] of the election
    /// timeout's maximum, which openraft uses as its followers' leader lease.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.openraft_max_ms()).mul_f64(crate::quorum::LEASE_FRACTION)
    }

    /// openraft's maximum election timeout, which is also its followers' leader lease.
    fn openraft_max_ms(&self) -> u64 {
        ((self.election_timeout.as_millis() as u64 * 55).div_ceil(100))
            .max(self.openraft_min_ms() + 1)
    }

    /// openraft's minimum election timeout (above the heartbeat interval, as openraft
    /// requires, also where rounding a tiny T would reach it).
    fn openraft_min_ms(&self) -> u64 {
        (self.election_timeout.as_millis() as u64 * 45 / 100)
            .max(self.heartbeat_interval.as_millis() as u64 + 1)
    }

    /// The longest a follower goes without hearing from its leader before it campaigns.
    pub fn longest_silence(&self) -> Duration {
        Duration::from_millis(self.openraft_max_ms() * 2)
    }

    /// openraft's configuration for a replica with these timings (the simulator runs its
    /// replicas with it too).
    pub fn openraft_config(&self) -> openraft::Config {
        openraft::Config {
            cluster_name: "agora".into(),
            heartbeat_interval: self.heartbeat_interval.as_millis() as u64,
            election_timeout_min: self.openraft_min_ms(),
            election_timeout_max: self.openraft_max_ms(),
            // Snapshot transfer of a large registry takes far longer than 200 ms.
            install_snapshot_timeout: 10_000,
            snapshot_max_chunk_size: 4 * 1024 * 1024,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY_ENTRIES),
            max_in_snapshot_log_to_keep: 1_000,
            purge_batch_size: 512,
            // Entries are batches of up to 1,024 commands: a replication round reads and
            // decodes this many on Raft's thread, and ships at most 1 MiB of them.
            max_payload_entries: 64,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(id: NodeId, peers: &str, advertise: &str) -> Config {
        Config {
            faults: Default::default(),
            id,
            advertise: advertise.into(),
            peers: parse_peers(peers).unwrap(),
            work_dir: "/tmp/x".into(),
            allocation_interval: Duration::from_secs(1),
            offer_timeout: None,
            agent_ping_timeout: Duration::from_secs(15),
            max_agent_ping_timeouts: 5,
            retention: Default::default(),
            raft: RaftTiming::default(),
            join: false,
            security: Security {
                insecure: true,
                ..Default::default()
            },
        }
    }

    #[test]
    fn refuses_to_start_unprotected_unless_insecure() {
        let mut c = config(1, "1=a:1", "a:1");
        c.security.insecure = false;
        assert_eq!(
            c.validate(),
            Err(ConfigError::Insecure {
                missing: "TLS and credentials"
            })
        );
        c.security.credentials = Some("/c.json".into());
        assert_eq!(c.validate(), Err(ConfigError::Insecure { missing: "TLS" }));
        c.security.tls = Some(agora_security::tls::TlsFiles {
            cert: "/c".into(),
            key: "/k".into(),
            ca: "/ca".into(),
        });
        assert_eq!(c.validate(), Ok(()));
        c.security.credentials = None;
        assert_eq!(
            c.validate(),
            Err(ConfigError::Insecure {
                missing: "credentials"
            })
        );
        c.security.insecure = true;
        c.security.tls = None;
        c.security.allow_plaintext = true;
        assert_eq!(c.validate(), Err(ConfigError::PlaintextWithoutTls));
        c.security.allow_plaintext = false;
        c.security.authenticate_http_readonly = true;
        assert_eq!(c.validate(), Err(ConfigError::ReadonlyWithoutCredentials));
    }

    #[test]
    fn peers_parse_and_refuse() {
        let p = parse_peers("1=a:1, 2=b:2,3=c:3").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[&2], "b:2");
        assert_eq!(
            parse_peers("1=a:1,1=b:2"),
            Err(ConfigError::DuplicatePeer(1))
        );
        for bad in [
            "x=a:1",
            "1a:1",
            "0=a:1",
            "1=a",
            "1=a:0",
            "1=:5",
            "1=a:99999",
        ] {
            assert!(
                matches!(parse_peers(bad), Err(ConfigError::BadPeer(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn validation() {
        assert!(config(1, "1=a:1,2=b:2,3=c:3", "a:1").validate().is_ok());
        assert!(config(1, "1=a:1", "a:1").validate().is_ok());
        assert_eq!(
            config(4, "1=a:1,2=b:2,3=c:3", "a:1").validate(),
            Err(ConfigError::IdNotInPeers {
                id: 4,
                peers: "1,2,3".into()
            })
        );
        assert_eq!(
            config(1, "1=a:1,2=b:2", "a:1").validate(),
            Err(ConfigError::PeerCount(2))
        );
        assert!(matches!(
            config(1, "1=a:1,2=b:2,3=c:3", "z:1").validate(),
            Err(ConfigError::AdvertiseMismatch { .. })
        ));
        let mut c = config(1, "1=a:1", "a:1");
        c.raft.election_timeout = Duration::from_millis(100);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ElectionTooShort { .. })
        ));
    }

    /// A follower campaigns after T to 1.1 T of silence: openraft's lease (its maximum)
    /// plus its own timeout (drawn in [min, max)), and the leader's lease is shorter than
    /// the followers' lease.
    #[test]
    fn the_election_timeout_is_the_silence_before_a_campaign() {
        for (hb, t) in [(50, 250), (10, 30), (100, 1000), (20, 60)] {
            let timing = RaftTiming {
                heartbeat_interval: Duration::from_millis(hb),
                election_timeout: Duration::from_millis(t),
            };
            let c = timing
                .openraft_config()
                .validate()
                .expect("openraft accepts it");
            let (min, max) = (c.election_timeout_min, c.election_timeout_max);
            assert!(min > hb && max > min, "{hb}/{t}: {min} {max}");
            assert!(
                max + min >= t - 1 && max + max <= t * 11 / 10 + 2,
                "{t}: {min} {max}"
            );
            assert!(timing.lease() < Duration::from_millis(max));
            assert_eq!(timing.longest_silence(), Duration::from_millis(2 * max));
        }
    }
}
