//! `agora dev`'s security: a throwaway CA and a certificate for every process it starts,
//! an `admin` principal with a random secret, ACLs that keep operator calls to the admin,
//! and a client configuration, so the dev cluster is as closed as a production one and
//! `agora run -- true` in another shell still needs no flags.
//!
//! Written to the work dir: `tls/ca.pem`, `tls/<process>.pem` and `-key.pem`,
//! `credentials.json`, `acls.json`, `client.json`; and `client.json` is copied to the
//! user's client configuration (`AGORA_CONFIG`, else `~/.config/agora/client.json`),
//! removed again when `agora dev` stops if it is still the one it wrote.

use std::path::{Path, PathBuf};

use agora_security::client::{config_path, ClientConfigFile, ClientSecurity};
use agora_security::credentials::{Credential, CredentialStore};
use agora_security::generate::{operator_acls, random_secret, Authority};
use agora_security::tls::{ClientTls, TlsFiles};
use anyhow::Context;

/// The principal `agora dev` gives the operator.
pub const ADMIN: &str = "admin";

pub struct DevSecurity {
    pub ca: PathBuf,
    pub credentials: PathBuf,
    pub acls: PathBuf,
    pub client_config: PathBuf,
    pub admin: Credential,
    masters: Vec<TlsFiles>,
    agents: Vec<TlsFiles>,
    /// The user's client configuration, while it holds what `agora dev` wrote.
    installed: Option<(PathBuf, String)>,
}

impl DevSecurity {
    /// Generates everything for `masters` replicas and `agents` agents on 127.0.0.1.
    pub fn generate(work_dir: &Path, masters: usize, agents: usize) -> anyhow::Result<Self> {
        let tls_dir = work_dir.join("tls");
        let ca = Authority::new("agora dev CA").context("generating the dev CA")?;
        let hosts = ["127.0.0.1".to_string(), "localhost".to_string()];
        let ca_path = ca.write_ca(&tls_dir)?;
        let masters = (1..=masters)
            .map(|id| {
                let name = format!("master-{id}");
                ca.write_issued(&tls_dir, &name, &name, &hosts)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let agents = (1..=agents)
            .map(|i| {
                let name = format!("agent-{i}");
                ca.write_issued(&tls_dir, &name, &name, &hosts)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let admin = Credential::new(ADMIN, random_secret());
        let credentials = work_dir.join("credentials.json");
        agora_security::client::write_private(
            &credentials,
            CredentialStore::from_credentials([admin.clone()])
                .to_json()
                .as_bytes(),
        )?;
        let acls = work_dir.join("acls.json");
        // Operator calls for the admin only, agent registration for the agents.
        let agent_names: Vec<String> = (1..=agents.len()).map(|i| format!("agent-{i}")).collect();
        let agent_names: Vec<&str> = agent_names.iter().map(String::as_str).collect();
        let acls_json = operator_acls(&[ADMIN], &agent_names);
        std::fs::write(&acls, acls_json).with_context(|| format!("writing {}", acls.display()))?;
        Ok(DevSecurity {
            ca: ca_path,
            credentials,
            acls,
            client_config: work_dir.join("client.json"),
            admin,
            masters,
            agents,
            installed: None,
        })
    }

    /// Flags of replica `i` (0-based): TLS with plaintext beside it (loopback only, for
    /// clients without TLS), credentials, ACLs.
    pub fn master_flags(&self, i: usize) -> Vec<String> {
        let mut flags = self.masters[i].flags();
        flags.extend([
            "--tls-allow-plaintext".into(),
            "--credentials".into(),
            self.credentials.display().to_string(),
            "--acls".into(),
            self.acls.display().to_string(),
        ]);
        flags
    }

    /// Flags of agent `i` (0-based): its certificate (principal `agent-<i+1>`).
    pub fn agent_flags(&self, i: usize) -> Vec<String> {
        self.agents[i].flags()
    }

    /// How `agora dev` itself talks to its masters.
    pub fn client_security(&self) -> anyhow::Result<ClientSecurity> {
        Ok(ClientSecurity {
            tls: Some(ClientTls::load(&self.ca, None)?),
            credential: Some(self.admin.clone()),
        })
    }

    /// Writes the client configuration into the work dir and as the user's client
    /// configuration. Returns where the user's went.
    pub fn write_client_config(&mut self, masters: &str) -> anyhow::Result<Option<PathBuf>> {
        let file = ClientConfigFile {
            masters: Some(masters.to_string()),
            ca: Some(self.ca.clone()),
            cert: None,
            key: None,
            principal: Some(self.admin.principal.clone()),
            secret: Some(self.admin.secret.expose().to_string()),
        };
        file.write(&self.client_config)?;
        let Some((path, _)) = config_path() else {
            return Ok(None);
        };
        file.write(&path)?;
        let written = std::fs::read_to_string(&path).unwrap_or_default();
        self.installed = Some((path.clone(), written));
        Ok(Some(path))
    }

    /// Removes the user's client configuration if it is still the one written here (a
    /// later `agora dev` may have replaced it).
    pub fn remove_client_config(&mut self) {
        if let Some((path, written)) = self.installed.take() {
            if std::fs::read_to_string(&path).is_ok_and(|now| now == written) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}
