//! The agent's configuration: flags validated into domain values, resources detected from
//! the host for whatever `--resources` does not name.
//!
//! Collection of finished sandboxes ([`GcConfig`], see [`crate::gc`]), as Mesos' flags of
//! the same names:
//!
//! - `--gc-delay DURATION` (default `1weeks`): how long a finished sandbox (its executor
//!   exited, its task terminal, every status update of it acknowledged by the master) is
//!   kept before it is removed.
//! - `--gc-disk-headroom FRACTION` (default `0.1`, in [0, 1]): every
//!   `--disk-watch-interval`, the usage of the work dir's filesystem is measured and every
//!   finished sandbox older than `gc_delay * max(0, 1 - gc_disk_headroom - usage)` is
//!   removed at once, oldest first (so at usage `1 - gc_disk_headroom` and above, all of
//!   them).
//! - `--disk-watch-interval DURATION` (default `1mins`, more than zero): how often that
//!   usage is measured.

use std::path::PathBuf;
use std::time::Duration;

use agora_registry::{Resource, Resources, Value};

/// A validated agent configuration.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Masters to find the leader among (HOST:PORT each).
    pub masters: Vec<String>,
    /// HOST:PORT the master and executors use to reach this agent.
    pub advertise: String,
    /// The agent's host name, as registered.
    pub hostname: String,
    /// Checkpoints, sandboxes and the agent id live here.
    pub work_dir: PathBuf,
    /// What the agent offers to the cluster.
    pub resources: Resources,
    /// Free-form attributes, in order.
    pub attributes: Vec<(String, String)>,
    /// The built-in command executor binary (`agora-executor`, next to `agora-agent`).
    pub executor_binary: PathBuf,
    /// How long executors wait for this agent to come back before they shut down.
    pub executor_recovery_timeout: std::time::Duration,
    /// The loopback port of Mesos' executor API (`--executor-http-port`; 0: the port
    /// checkpointed by an earlier run, else an ephemeral one).
    pub executor_http_port: u16,
    /// TLS and the credential the agent presents.
    pub security: AgentSecurity,
    /// When finished sandboxes are removed.
    pub gc: GcConfig,
    /// Containers: images, registries, the OCI runtime.
    pub images: crate::image::ImageSettings,
    /// The most processes (threads included) a task may have at once (`--max-task-pids`;
    /// `None`: no limit): a task that reaches it is killed (TASK_FAILED).
    pub max_task_pids: Option<u64>,
    /// Check only the ports in this agent's own `ports` resource (Mesos'
    /// `--check_agent_port_range_only`): a task may listen on any port outside it.
    pub check_agent_port_range_only: bool,
    /// The key this agent's sandbox grants are signed with (new at every start; the leader
    /// gets it on the session).
    pub sandbox_key: agora_security::grant::GrantKey,
    /// When tasks' stdout and stderr rotate (`--output-max-size`, `--output-rotations`).
    pub output: crate::supervisor::OutputRotation,
    /// The tracing filter in force (`--log-level`, else `RUST_LOG`, else `info`), for
    /// `/flags`.
    pub log_level: String,
}

/// `--gc-delay`'s default, as Mesos'.
pub const DEFAULT_GC_DELAY: &str = "1weeks";
/// `--gc-disk-headroom`'s default, as Mesos'.
pub const DEFAULT_GC_DISK_HEADROOM: &str = "0.1";
/// `--disk-watch-interval`'s default, as Mesos'.
pub const DEFAULT_DISK_WATCH_INTERVAL: &str = "1mins";

/// When finished sandboxes are removed (`--gc-delay`, `--gc-disk-headroom`,
/// `--disk-watch-interval`; see the module doc and [`crate::gc`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GcConfig {
    /// How long a finished sandbox is kept (`--gc-delay`).
    pub delay: Duration,
    /// The fraction of the work dir's filesystem to keep free (`--gc-disk-headroom`, in
    /// [0, 1]): the fuller the disk, the younger the finished sandboxes that go.
    pub disk_headroom: f64,
    /// How often the work dir's filesystem usage is measured (`--disk-watch-interval`).
    pub disk_watch_interval: Duration,
}

impl Default for GcConfig {
    /// Mesos' defaults: a week, 0.1, a minute.
    fn default() -> Self {
        GcConfig {
            delay: Duration::from_secs(7 * 24 * 3600),
            disk_headroom: 0.1,
            disk_watch_interval: Duration::from_secs(60),
        }
    }
}

impl GcConfig {
    /// The decision half's view of it.
    pub fn policy(&self) -> crate::gc::policy::Policy {
        crate::gc::policy::Policy {
            delay: self.delay,
            disk_headroom: self.disk_headroom,
        }
    }
}

/// Parses `--gc-disk-headroom`: a fraction in [0, 1].
pub fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err("must be a fraction in [0, 1]".into()),
    }
}

/// Parses `--disk-watch-interval`: a duration (humantime: `500ms`, `1mins`) above zero.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be more than zero".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses a size: bytes, or a number with B, KB, MB, GB, TB (powers of 1000) or KiB,
/// MiB, GiB, TiB (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => {
            return Err(format!(
                "unknown unit {other:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 && n * (factor as f64) < 1.8e19 => {
            Ok((n * factor as f64) as u64)
        }
        _ => Err(format!(
            "{text:?} is not a size (e.g. 10GiB, 500MB, 1048576)"
        )),
    }
}

/// The agent's container settings from its flags: the default registry and each insecure
/// one checked as references name registries, credentials read from their file.
pub fn image_settings(
    work_dir: &std::path::Path,
    registry: &str,
    insecure: &str,
    credentials: Option<&std::path::Path>,
    runtime: &std::path::Path,
    gc_threshold_bytes: u64,
) -> Result<crate::image::ImageSettings, String> {
    let mut s = crate::image::ImageSettings::defaults(work_dir);
    s.default_registry = agora_image::reference::normalize_registry(registry)
        .map_err(|e| format!("--image-registry: {e}"))?;
    for r in insecure.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        s.insecure.push(
            agora_image::reference::normalize_registry(r)
                .map_err(|e| format!("--insecure-registries: {e}"))?,
        );
    }
    if let Some(path) = credentials {
        let text = std::fs::read(path)
            .map_err(|e| format!("--registry-credentials {}: {e}", path.display()))?;
        s.credentials = serde_json::from_slice(&text).map_err(|e| {
            format!(
                "--registry-credentials {}: not {{\"REGISTRY\": {{\"username\": ..., \"password\": ...}}}}: {e}",
                path.display()
            )
        })?;
    }
    s.runtime = runtime.to_path_buf();
    s.gc_threshold_bytes = gc_threshold_bytes;
    Ok(s)
}

/// How an agent proves itself and protects its port.
#[derive(Clone, Debug, Default)]
pub struct AgentSecurity {
    /// Its certificate (Common Name: its principal), key, and the cluster CA: the server
    /// side of the executor API and its client identity towards the masters.
    pub tls: Option<agora_security::tls::TlsFiles>,
    /// A principal and secret to present to the masters (`--credential FILE`), instead of
    /// or besides the certificate.
    pub credential: Option<agora_security::credentials::Credential>,
    /// Run without TLS (`--insecure`).
    pub insecure: bool,
}

impl AgentSecurity {
    /// How the agent talks to the masters.
    pub fn master_client(
        &self,
    ) -> Result<agora_security::client::ClientSecurity, agora_security::SecurityError> {
        let tls = match &self.tls {
            Some(files) => Some(agora_security::tls::ClientTls::load(
                &files.ca,
                Some((&files.cert, &files.key)),
            )?),
            None => None,
        };
        Ok(agora_security::client::ClientSecurity {
            tls,
            credential: self.credential.clone(),
        })
    }
}

/// An agent's `--credential` file: `{"principal": "...", "secret": "..."}` (Mesos' shape).
pub fn load_credential(
    path: &std::path::Path,
) -> Result<agora_security::credentials::Credential, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        principal: String,
        secret: String,
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--credential {}: {e}", path.display()))?;
    let f: File = serde_json::from_str(&text).map_err(|e| {
        format!(
            "--credential {}: not {{\"principal\": ..., \"secret\": ...}}: {e}",
            path.display()
        )
    })?;
    if f.principal.is_empty() || f.secret.is_empty() {
        return Err(format!(
            "--credential {}: principal and secret must not be empty",
            path.display()
        ));
    }
    Ok(agora_security::credentials::Credential::new(
        f.principal,
        f.secret,
    ))
}

/// Why a flag was refused; each message is one line naming the flag and the bad token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--resources: {0}")]
    Resources(String),
    #[error("--attributes: bad attribute {0:?} (expected KEY:VALUE)")]
    Attribute(String),
    #[error("--masters: {0:?} is not HOST:PORT")]
    Master(String),
    #[error("--masters: no master given")]
    NoMasters,
    #[error("--advertise: {0:?} is not HOST:PORT")]
    Advertise(String),
    #[error("--gc-disk-headroom: {0} is not a fraction in [0, 1]")]
    GcDiskHeadroom(String),
    #[error("--disk-watch-interval: must be more than zero")]
    DiskWatchInterval,
    #[error("refusing to start without TLS: give --tls-cert, --tls-key and --tls-ca (see docs/security.md), or --insecure")]
    Insecure,
}

fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// Parses `HOST:PORT,HOST:PORT,...`.
pub fn parse_masters(text: &str) -> Result<Vec<String>, ConfigError> {
    let masters: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if masters.is_empty() {
        return Err(ConfigError::NoMasters);
    }
    if let Some(bad) = masters.iter().find(|m| !is_host_port(m)) {
        return Err(ConfigError::Master(bad.clone()));
    }
    Ok(masters)
}

/// Parses `rack:r1;zone:a`.
pub fn parse_attributes(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    text.split(';')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| match t.split_once(':') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(ConfigError::Attribute(t.to_string())),
        })
        .collect()
}

/// What this host has, as detected.
#[derive(Clone, Debug, PartialEq)]
pub struct HostResources {
    pub cpus: f64,
    pub mem_mb: f64,
    pub disk_mb: f64,
}

/// The agent's resources: those given in Mesos syntax, completed with detected cpus, mem,
/// disk and the default port range for any of them the text does not name (as Mesos does).
pub fn resources(given: Option<&str>, host: &HostResources) -> Result<Resources, ConfigError> {
    let mut res = match given {
        Some(text) => Resources::parse(text).map_err(|e| ConfigError::Resources(e.to_string()))?,
        None => Resources::new(),
    };
    let named = |name: &str| res.iter().any(|r| r.name == name);
    let mut add = Vec::new();
    for (name, amount) in [
        ("cpus", host.cpus),
        ("mem", host.mem_mb),
        ("disk", host.disk_mb),
    ] {
        if !named(name) && amount > 0.0 {
            add.push(
                Resources::scalar(name, amount)
                    .map_err(|e| ConfigError::Resources(e.to_string()))?,
            );
        }
    }
    if !named("ports") {
        add.push(Resources::from(vec![Resource {
            name: "ports".into(),
            role: None,
            value: Value::Ranges(
                agora_registry::resources::Ranges::new([(31000, 32000)]).expect("ordered range"),
            ),
        }]));
    }
    for a in add {
        res.add(&a);
    }
    Ok(res)
}

impl AgentConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.masters.is_empty() {
            return Err(ConfigError::NoMasters);
        }
        if !is_host_port(&self.advertise) {
            return Err(ConfigError::Advertise(self.advertise.clone()));
        }
        if !(0.0..=1.0).contains(&self.gc.disk_headroom) {
            return Err(ConfigError::GcDiskHeadroom(
                self.gc.disk_headroom.to_string(),
            ));
        }
        if self.gc.disk_watch_interval.is_zero() {
            return Err(ConfigError::DiskWatchInterval);
        }
        if self.security.tls.is_none() && !self.security.insecure {
            return Err(ConfigError::Insecure);
        }
        Ok(())
    }

    /// What this agent says of itself when it registers.
    pub fn registration(&self) -> Registration {
        Registration {
            hostname: self.hostname.clone(),
            address: self.advertise.clone(),
            resources: self.resources.clone(),
            attributes: self.attributes.clone(),
            sandbox_key: self.sandbox_key.as_bytes().to_vec(),
        }
    }
}

/// What an agent (real or simulated) says of itself when it registers, its id aside.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    pub hostname: String,
    /// HOST:PORT the master and executors use to reach it.
    pub address: String,
    pub resources: Resources,
    /// Free-form attributes, in order.
    pub attributes: Vec<(String, String)>,
    /// The key the leader signs this agent's sandbox grants with (empty: none).
    pub sandbox_key: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: HostResources = HostResources {
        cpus: 2.0,
        mem_mb: 1000.0,
        disk_mb: 5000.0,
    };

    #[test]
    fn given_resources_are_completed_by_detection() {
        let r = resources(Some("cpus:4;gpus:1"), &HOST).unwrap();
        assert_eq!(
            r.to_string(),
            "cpus:4;disk:5000;gpus:1;mem:1000;ports:[31000-32000]"
        );
        let r = resources(Some("cpus(web):1;ports:[5-6]"), &HOST).unwrap();
        assert_eq!(r.to_string(), "cpus(web):1;disk:5000;mem:1000;ports:[5-6]");
        let r = resources(None, &HOST).unwrap();
        assert_eq!(
            r.to_string(),
            "cpus:2;disk:5000;mem:1000;ports:[31000-32000]"
        );
    }

    #[test]
    fn bad_input_names_the_token() {
        let e = resources(Some("cpus:4;mem:lots"), &HOST)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mem:lots"), "{e}");
        let e = resources(Some("cpus:-1"), &HOST).unwrap_err().to_string();
        assert!(e.contains("negative"), "{e}");
        assert_eq!(
            parse_attributes("rack:r1;zone"),
            Err(ConfigError::Attribute("zone".into()))
        );
        assert_eq!(
            parse_attributes(" rack : r1 ;zone:a").unwrap(),
            vec![("rack".into(), "r1".into()), ("zone".into(), "a".into())]
        );
        assert_eq!(parse_masters("a:1,b"), Err(ConfigError::Master("b".into())));
        assert_eq!(parse_masters(" , "), Err(ConfigError::NoMasters));
    }

    #[test]
    fn gc_flags_parse_as_mesos_spells_them() {
        let defaults = GcConfig {
            delay: humantime::parse_duration(DEFAULT_GC_DELAY).unwrap(),
            disk_headroom: parse_fraction(DEFAULT_GC_DISK_HEADROOM).unwrap(),
            disk_watch_interval: parse_interval(DEFAULT_DISK_WATCH_INTERVAL).unwrap(),
        };
        assert_eq!(defaults, GcConfig::default());
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("soon").is_err());
        assert_eq!(parse_fraction("0"), Ok(0.0));
        assert_eq!(parse_fraction("1"), Ok(1.0));
        for bad in ["1.5", "-0.1", "NaN", "inf", "lots", ""] {
            assert!(parse_fraction(bad).is_err(), "{bad}");
        }
    }
}
