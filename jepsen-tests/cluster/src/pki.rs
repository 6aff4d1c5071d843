//! The test clusters' security: one throwaway CA per test process, certificates for every
//! master and agent it starts, a credentials file with a few principals, ACLs, and a
//! client configuration that every client of the process (drivers, the CLI the tests
//! spawn) reads through `AGORA_CONFIG`. So integration tests run with TLS and
//! authentication on, as a production cluster does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use agora_security::client::{ClientConfigFile, ClientSecurity, ENV_CONFIG};
use agora_security::credentials::{Credential, CredentialStore};
use agora_security::generate::{operator_acls, random_secret, Authority};
use agora_security::tls::{ClientTls, TlsFiles};

/// The operator: may do everything.
pub const ADMIN: &str = "admin";
/// Two framework principals, for tests of one acting for the other.
pub const TEAM_A: &str = "team-a";
pub const TEAM_B: &str = "team-b";
/// The principal the fixture's agents register as (by certificate).
pub const AGENT: &str = "agent";
/// Another agent principal the ACLs allow (for tests of one agent posing as another).
pub const AGENT_2: &str = "agent-2";

pub struct TestPki {
    dir: PathBuf,
    ca: Authority,
    secrets: BTreeMap<&'static str, String>,
    pub credentials: PathBuf,
    pub acls: PathBuf,
    pub client_config: PathBuf,
    issued: Mutex<BTreeMap<String, TlsFiles>>,
}

static PKI: OnceLock<TestPki> = OnceLock::new();

/// This process's PKI, made on first use (which also points `AGORA_CONFIG` at its client
/// configuration, so every client of the process authenticates as the admin).
pub fn pki() -> &'static TestPki {
    PKI.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("agora-test-pki-")
            .tempdir()
            .expect("pki dir")
            .keep();
        let ca = Authority::new("agora test CA").expect("test CA");
        ca.write_ca(&dir).expect("write CA");
        let secrets: BTreeMap<&'static str, String> = [ADMIN, TEAM_A, TEAM_B, AGENT]
            .into_iter()
            .map(|p| (p, random_secret()))
            .collect();
        let store = CredentialStore::from_credentials(
            secrets.iter().map(|(p, s)| Credential::new(*p, s.clone())),
        );
        let credentials = dir.join("credentials.json");
        std::fs::write(&credentials, store.to_json()).expect("credentials");
        let acls = dir.join("acls.json");
        // The admin registers agents too: tests and benchmarks do it through the API.
        let acls_json = operator_acls(&[ADMIN], &[AGENT, AGENT_2, ADMIN]);
        std::fs::write(&acls, acls_json).expect("acls");
        let client_config = dir.join("client.json");
        ClientConfigFile {
            masters: None,
            ca: Some(dir.join("ca.pem")),
            cert: None,
            key: None,
            principal: Some(ADMIN.into()),
            secret: Some(secrets[ADMIN].clone()),
        }
        .write(&client_config)
        .expect("client config");
        // Set once, before any client of this process reads it.
        std::env::set_var(ENV_CONFIG, &client_config);
        TestPki {
            dir,
            ca,
            secrets,
            credentials,
            acls,
            client_config,
            issued: Mutex::new(BTreeMap::new()),
        }
    })
}

impl TestPki {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `principal` naming `host` (an IP or a name), issued once.
    pub fn issue(&self, principal: &str, host: &str) -> TlsFiles {
        let key = format!("{principal}@{host}");
        let mut issued = self.issued.lock().unwrap();
        if let Some(files) = issued.get(&key) {
            return files.clone();
        }
        let mut hosts = vec![host.to_string()];
        if host != "localhost" {
            hosts.push("localhost".into());
        }
        let name = key.replace(['@', ':', '/'], "_");
        let files = self
            .ca
            .write_issued(&self.dir, &name, principal, &hosts)
            .expect("issue certificate");
        issued.insert(key, files.clone());
        files
    }

    /// Issues a new certificate for `principal` naming `hosts` and writes it over `files`
    /// (as an operator rotating certificates in place before a SIGHUP).
    pub fn reissue(&self, files: &TlsFiles, principal: &str, hosts: &[String]) {
        let issued = self.ca.issue(principal, hosts).expect("issue certificate");
        std::fs::write(&files.cert, issued.cert_pem).expect("write certificate");
        std::fs::write(&files.key, issued.key_pem).expect("write key");
    }

    /// A replica's certificate (`master-<id>`) for the host of `addr`.
    pub fn master(&self, id: u64, addr: &str) -> TlsFiles {
        self.issue(&format!("master-{id}"), host_of(addr))
    }

    /// The flags that give a master its TLS, credentials and ACLs. Plaintext is allowed
    /// beside TLS (as `agora dev` does on loopback) so the fixture can read `/state` with
    /// a plain HTTP request.
    pub fn master_flags(&self, id: u64, addr: &str) -> Vec<String> {
        let mut flags = self.master(id, addr).flags();
        flags.extend([
            "--tls-allow-plaintext".into(),
            "--credentials".into(),
            self.credentials.display().to_string(),
            "--acls".into(),
            self.acls.display().to_string(),
        ]);
        flags
    }

    /// The flags that give an agent its certificate (principal [`AGENT`]) for `addr`.
    pub fn agent_flags(&self, addr: &str) -> Vec<String> {
        self.issue(AGENT, host_of(addr)).flags()
    }

    /// A principal's credential.
    pub fn credential(&self, principal: &str) -> Credential {
        Credential::new(principal, self.secrets[principal].clone())
    }

    /// A client speaking TLS to the cluster as `principal` (None: no credential).
    pub fn client_security(&self, principal: Option<&str>) -> ClientSecurity {
        ClientSecurity {
            tls: Some(ClientTls::load(&self.ca_path(), None).expect("client TLS")),
            credential: principal.map(|p| self.credential(p)),
        }
    }
}

fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr)
}
