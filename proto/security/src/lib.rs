//! Transport security for every Agora process: what a connection proves and how.
//!
//! This crate owns
//! - [`tls`]: loading certificates, keys and the cluster CA into rustls configurations,
//!   reloading them (SIGHUP) without touching open connections, and reading the identity
//!   (the subject's Common Name) a verified peer certificate carries;
//! - [`credentials`]: principals and their secrets (Mesos' `--credentials` JSON shape),
//!   checked in constant time, and the `Basic` authorization value that carries them on
//!   HTTP and gRPC alike;
//! - [`throttle`]: slowing down a peer that keeps failing to authenticate;
//! - [`serve`]: the accept loop every server uses: TLS (optionally beside plaintext on the
//!   same port), HTTP/1 and HTTP/2, and a [`serve::ConnectionInfo`] on every request, so a
//!   handler knows the caller's address and certificate;
//! - [`authenticate`]: turning a request's certificate and `authorization` value into a
//!   [`authenticate::Caller`];
//! - [`client`]: the client side: TLS channels, credentials on every call, and the client
//!   configuration file (`AGORA_CONFIG`) `agora dev` writes;
//! - [`grant`]: sandbox grants, signed by the leader with an agent's key and checked by
//!   that agent;
//! - [`http_client`]: one HTTP/1.1 request to an Agora server (an agent's sandbox API),
//!   over TLS when the client has the cluster CA;
//! - [`generate`] (feature `generate`): a throwaway CA and certificates.
//!
//! It must not decide what a principal may do (that is the master's ACLs), and it never
//! logs or formats a secret: [`credentials::Secret`]'s `Debug` is redacted.

pub mod authenticate;
pub mod client;
pub mod credentials;
#[cfg(feature = "generate")]
pub mod generate;
pub mod grant;
pub mod http_client;
pub mod serve;
pub mod throttle;
pub mod tls;

/// Why security material could not be loaded or used. Each message is one line for the
/// operator and names the file or field; none contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("{0}")]
    Config(String),
}

impl SecurityError {
    pub(crate) fn invalid(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        SecurityError::Invalid {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// The CN a master replica's certificate carries: `master-<id>`. A Raft peer call is
/// accepted only over a connection whose verified certificate names a replica this way.
pub fn master_principal(id: u64) -> String {
    format!("master-{id}")
}

/// The replica id named by a `master-<id>` principal.
pub fn master_id(principal: &str) -> Option<u64> {
    principal.strip_prefix("master-")?.parse().ok()
}
