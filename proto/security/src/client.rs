//! The client side: channels that speak TLS when the client has the cluster CA, carry the
//! client's credential on every call, and the client configuration file that `agora dev`
//! writes and the CLI and driver read by default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::credentials::Credential;
use crate::tls::ClientTls;
use crate::SecurityError;

/// Path of the client configuration file (else the user's config dir).
pub const ENV_CONFIG: &str = "AGORA_CONFIG";
/// The CA that signs the masters' certificates (PEM file).
pub const ENV_CA: &str = "AGORA_CA";
pub const ENV_PRINCIPAL: &str = "AGORA_PRINCIPAL";
pub const ENV_SECRET: &str = "AGORA_SECRET";
/// A client certificate and key (PEM files), for clients that authenticate by certificate.
pub const ENV_CERT: &str = "AGORA_CERT";
pub const ENV_KEY: &str = "AGORA_KEY";

/// What a client presents to a server.
#[derive(Clone, Debug, Default)]
pub struct ClientSecurity {
    /// TLS to the server; `None` speaks plaintext.
    pub tls: Option<ClientTls>,
    /// Sent on every call as `authorization`.
    pub credential: Option<Credential>,
}

/// Adds the client's `authorization` to every gRPC call (nothing without a credential).
/// The value is marked sensitive (kept out of HPACK tables) and never shown by `Debug`.
#[derive(Clone, Default)]
pub struct Authorize(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for Authorize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Authorize(<redacted>)"
        } else {
            "Authorize(None)"
        })
    }
}

fn sensitive(value: String) -> Option<MetadataValue<Ascii>> {
    let mut v: MetadataValue<Ascii> = value.parse().ok()?;
    v.set_sensitive(true);
    Some(v)
}

impl Authorize {
    pub fn new(credential: Option<&Credential>) -> Self {
        Authorize(credential.and_then(|c| sensitive(c.authorization())))
    }

    /// A bearer token (an executor to its agent). `None` if the token is not printable
    /// ASCII.
    pub fn bearer(token: &str) -> Option<Self> {
        sensitive(format!("Bearer {token}")).map(|v| Authorize(Some(v)))
    }
}

impl tonic::service::Interceptor for Authorize {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A channel whose calls carry the client's credential.
pub type AuthorizedChannel = InterceptedService<Channel, Authorize>;

impl ClientSecurity {
    /// Plaintext, no credential.
    pub fn insecure() -> Self {
        Self::default()
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// An endpoint for `HOST:PORT`, with TLS when configured. The server's certificate
    /// must name `HOST` (an IP SAN for an address).
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, SecurityError> {
        let endpoint = Endpoint::from_shared(format!("{}://{addr}", self.scheme()))
            .map_err(|_| SecurityError::Config(format!("{addr:?} is not HOST:PORT")))?;
        match &self.tls {
            Some(tls) => endpoint
                .tls_config(tls.tonic_config())
                .map_err(|e| SecurityError::Tls(format!("{addr}: {e}"))),
            None => Ok(endpoint),
        }
    }

    /// The interceptor that adds this client's credential.
    pub fn authorize(&self) -> Authorize {
        Authorize::new(self.credential.as_ref())
    }

    /// `channel` with this client's credential on every call.
    pub fn authorized(&self, channel: Channel) -> AuthorizedChannel {
        InterceptedService::new(channel, self.authorize())
    }

    /// A lazily connecting channel to `addr` with the credential attached.
    pub fn connect_lazy(
        &self,
        addr: &str,
        connect_timeout: Duration,
    ) -> Result<AuthorizedChannel, SecurityError> {
        let channel = self
            .endpoint(addr)?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(self.authorized(channel))
    }
}

/// The client configuration file (JSON). Every field is optional; paths are absolute or
/// relative to the file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masters: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl ClientConfigFile {
    pub fn load(path: &Path) -> Result<Self, SecurityError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecurityError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut file: ClientConfigFile = serde_json::from_str(&text).map_err(|e| {
            SecurityError::invalid(path, format!("not an Agora client configuration: {e}"))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut file.ca, &mut file.cert, &mut file.key]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(file)
    }

    /// Writes the file readable by its owner only (it holds a secret).
    pub fn write(&self, path: &Path) -> Result<(), SecurityError> {
        let json = serde_json::to_string_pretty(self).expect("json of strings");
        write_private(path, json.as_bytes())
    }
}

/// Writes `contents` to `path` with mode 0600, creating parent directories.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), SecurityError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| SecurityError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(contents).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// The client configuration file's path: `AGORA_CONFIG`, else
/// `$XDG_CONFIG_HOME/agora/client.json`, else `$HOME/.config/agora/client.json`.
pub fn config_path() -> Option<(PathBuf, bool)> {
    if let Some(p) = std::env::var_os(ENV_CONFIG).filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), true));
    }
    let dir = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some((dir.join("agora").join("client.json"), false))
}

/// Settings given explicitly (flags); each wins over the environment and the file.
#[derive(Clone, Debug, Default)]
pub struct ClientOverrides {
    pub masters: Option<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub principal: Option<String>,
    pub secret: Option<String>,
}

/// A client's settings, resolved: flags, then `AGORA_*` variables, then the file.
#[derive(Clone, Debug, Default)]
pub struct ClientSettings {
    pub masters: Option<String>,
    pub security: ClientSecurity,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl ClientSettings {
    /// Resolves the settings. A file named by `AGORA_CONFIG` must exist; the default one
    /// may be absent (then the client speaks plaintext with no credential unless told).
    pub fn discover(overrides: &ClientOverrides) -> Result<Self, SecurityError> {
        let file = match config_path() {
            Some((path, true)) => ClientConfigFile::load(&path)?,
            Some((path, false)) if path.exists() => ClientConfigFile::load(&path)?,
            _ => ClientConfigFile::default(),
        };
        let masters = overrides
            .masters
            .clone()
            .or_else(|| env("AGORA_MASTERS"))
            .or(file.masters);
        let ca = overrides
            .ca
            .clone()
            .or_else(|| env(ENV_CA).map(PathBuf::from))
            .or(file.ca);
        let cert = overrides
            .cert
            .clone()
            .or_else(|| env(ENV_CERT).map(PathBuf::from))
            .or(file.cert);
        let key = overrides
            .key
            .clone()
            .or_else(|| env(ENV_KEY).map(PathBuf::from))
            .or(file.key);
        let principal = overrides
            .principal
            .clone()
            .or_else(|| env(ENV_PRINCIPAL))
            .or(file.principal);
        let secret = overrides
            .secret
            .clone()
            .or_else(|| env(ENV_SECRET))
            .or(file.secret);
        Self::from_parts(masters, ca, cert.zip(key).or(None), principal, secret)
    }

    /// Settings from explicit parts (no environment).
    pub fn from_parts(
        masters: Option<String>,
        ca: Option<PathBuf>,
        identity: Option<(PathBuf, PathBuf)>,
        principal: Option<String>,
        secret: Option<String>,
    ) -> Result<Self, SecurityError> {
        let credential = match (principal, secret) {
            (Some(p), Some(s)) => Some(Credential::new(p, s)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(SecurityError::Config(
                    "a principal needs its secret (--secret or AGORA_SECRET)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(SecurityError::Config(
                    "a secret needs its principal (--principal or AGORA_PRINCIPAL)".into(),
                ))
            }
        };
        let tls = match ca {
            Some(ca) => Some(ClientTls::load(
                &ca,
                identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
            )?),
            None => None,
        };
        Ok(ClientSettings {
            masters,
            security: ClientSecurity { tls, credential },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_paths_are_relative_to_the_file_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/client.json");
        let file = ClientConfigFile {
            masters: Some("127.0.0.1:5050".into()),
            ca: Some("tls/ca.pem".into()),
            principal: Some("admin".into()),
            secret: Some("pw".into()),
            ..Default::default()
        };
        file.write(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = ClientConfigFile::load(&path).unwrap();
        assert_eq!(back.ca, Some(dir.path().join("sub/tls/ca.pem")));
        assert_eq!(back.principal.as_deref(), Some("admin"));
    }

    #[test]
    fn a_principal_needs_a_secret_and_a_bad_file_is_named() {
        let e = ClientSettings::from_parts(None, None, None, Some("p".into()), None).unwrap_err();
        assert!(e.to_string().contains("--secret"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        std::fs::write(&p, r#"{"mastres": "x"}"#).unwrap();
        let e = ClientConfigFile::load(&p).unwrap_err().to_string();
        assert!(e.contains("c.json") && e.contains("mastres"), "{e}");
    }

    #[test]
    fn the_interceptor_adds_basic_authorization() {
        use tonic::service::Interceptor;
        let s = ClientSecurity {
            tls: None,
            credential: Some(Credential::new("a", "b")),
        };
        let req = s.authorize().call(tonic::Request::new(())).unwrap();
        assert_eq!(
            req.metadata()
                .get("authorization")
                .unwrap()
                .to_str()
                .unwrap(),
            "Basic YTpi"
        );
        let req = ClientSecurity::insecure()
            .authorize()
            .call(tonic::Request::new(()))
            .unwrap();
        assert!(req.metadata().get("authorization").is_none());
    }
}
