//! TLS material: a server's certificate, key and cluster CA loaded into rustls, reloadable
//! in place; the client side's CA and optional identity; and the identity a verified peer
//! certificate carries.
//!
//! Every Agora certificate names its principal in the subject's Common Name: `master-<id>`
//! for a master replica, the agent's principal for an agent, a framework's or operator's
//! principal for a client that presents one. The CA is the cluster's: a certificate from
//! any other CA is refused during the handshake.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::SecurityError;

/// Where a process's TLS material lives (`--tls-cert`, `--tls-key`, `--tls-ca`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl TlsFiles {
    /// The flags that name these files: `--tls-cert`, `--tls-key`, `--tls-ca`.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
            "--tls-ca".into(),
            self.ca.display().to_string(),
        ]
    }

    /// From the three flags: all or none.
    pub fn from_flags(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        ca: Option<PathBuf>,
    ) -> Result<Option<TlsFiles>, SecurityError> {
        match (cert, key, ca) {
            (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles { cert, key, ca })),
            (None, None, None) => Ok(None),
            _ => Err(SecurityError::Config(
                "--tls-cert, --tls-key and --tls-ca go together".into(),
            )),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path).map_err(|source| SecurityError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SecurityError::invalid(path, format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(SecurityError::invalid(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, SecurityError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| SecurityError::invalid(path, format!("not a PEM private key: {e}")))
}

/// The CA certificates in a PEM file, as a root store.
pub fn load_roots(path: &Path) -> Result<RootCertStore, SecurityError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| {
            SecurityError::invalid(path, format!("not a usable CA certificate: {e}"))
        })?;
    }
    Ok(roots)
}

/// A server configuration from `files`: the server's chain and key, and client
/// certificates verified against the CA when presented (they are optional: a client may
/// authenticate with credentials instead). ALPN offers HTTP/2 and HTTP/1.1.
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, SecurityError> {
    let roots = load_roots(&files.ca)?;
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| {
            SecurityError::Tls(format!("client verifier from {}: {e}", files.ca.display()))
        })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| SecurityError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            SecurityError::Tls(format!(
                "{} and {} do not make a certificate and its key: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A server's TLS configuration that can be reloaded from its files while it serves: new
/// connections use the latest, open ones keep theirs (so a reload drops no Raft peer).
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, SecurityError> {
        let config = server_config(&files)?;
        Ok(Arc::new(ServerTls {
            files,
            current: RwLock::new(Arc::new(config)),
        }))
    }

    /// Reads the files again. On error the previous configuration stays in force.
    pub fn reload(&self) -> Result<(), SecurityError> {
        let config = server_config(&self.files)?;
        *self.current.write().expect("tls lock") = Arc::new(config);
        Ok(())
    }

    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.read().expect("tls lock").clone()
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

/// The Common Name of a certificate's subject, if it has one.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// The client's side of TLS: the CA that signs servers, and optionally the client's own
/// certificate and key (agents and masters present one; frameworks may).
#[derive(Clone, Debug)]
pub struct ClientTls {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl ClientTls {
    /// Reads the CA file (and the identity, when given), checking each parses.
    pub fn load(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Self, SecurityError> {
        load_roots(ca)?;
        let ca_pem = read(ca)?;
        let identity = match identity {
            Some((cert, key)) => {
                load_certs(cert)?;
                load_key(key)?;
                Some((read(cert)?, read(key)?))
            }
            None => None,
        };
        Ok(ClientTls { ca_pem, identity })
    }

    /// From PEM text already in memory.
    pub fn from_pem(ca_pem: Vec<u8>, identity: Option<(Vec<u8>, Vec<u8>)>) -> Self {
        ClientTls { ca_pem, identity }
    }

    /// tonic's client TLS configuration.
    pub fn tonic_config(&self) -> tonic::transport::ClientTlsConfig {
        let mut c = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = &self.identity {
            c = c.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        c
    }

    /// A rustls client configuration (for clients that are not tonic channels).
    pub fn rustls_config(&self) -> Result<rustls::ClientConfig, SecurityError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.ca_pem) {
            let cert = cert.map_err(|e| SecurityError::Tls(format!("CA: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| SecurityError::Tls(format!("CA: {e}")))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| SecurityError::Tls(e.to_string()))?
            .with_root_certificates(roots);
        match &self.identity {
            Some((cert, key)) => {
                let certs = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| SecurityError::Tls(format!("client certificate: {e}")))?;
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| SecurityError::Tls(format!("client key: {e}")))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| SecurityError::Tls(e.to_string()))
            }
            None => Ok(builder.with_no_client_auth()),
        }
    }
}
