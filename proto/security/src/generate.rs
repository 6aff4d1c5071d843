//! A throwaway certificate authority and the certificates it issues: what `agora dev`, the
//! test fixture and `agora certs` use. Production clusters bring their own PKI; these
//! certificates are ECDSA P-256, with the principal as Common Name and the given hosts as
//! subject alternative names (an IP address becomes an IP SAN).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use crate::client::write_private;
use crate::tls::TlsFiles;
use crate::SecurityError;

fn gen_err(e: rcgen::Error) -> SecurityError {
    SecurityError::Tls(format!("certificate generation: {e}"))
}

/// A CA with its key, in memory.
pub struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Authority {
    pub fn new(name: &str) -> Result<Self, SecurityError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(gen_err)?;
        let cert = params.self_signed(&key).map_err(gen_err)?;
        Ok(Authority { cert, key })
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for `principal` (its Common Name), valid as server and client, naming
    /// `hosts` (DNS names or IP addresses).
    pub fn issue(&self, principal: &str, hosts: &[String]) -> Result<Issued, SecurityError> {
        let mut params = CertificateParams::new(hosts.to_vec()).map_err(gen_err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, principal);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(gen_err)?;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(gen_err)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes the CA certificate to `dir/ca.pem` (its key is never written: a throwaway
    /// CA issues everything it will ever issue while it is in memory).
    pub fn write_ca(&self, dir: &Path) -> Result<PathBuf, SecurityError> {
        let path = dir.join("ca.pem");
        write_private(&path, self.cert_pem().as_bytes())?;
        Ok(path)
    }

    /// Issues a certificate for `principal` and writes `dir/<name>.pem` and
    /// `dir/<name>-key.pem` (mode 0600) beside `dir/ca.pem`; returns the three paths.
    pub fn write_issued(
        &self,
        dir: &Path,
        name: &str,
        principal: &str,
        hosts: &[String],
    ) -> Result<TlsFiles, SecurityError> {
        let issued = self.issue(principal, hosts)?;
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}-key.pem"));
        write_private(&cert, issued.cert_pem.as_bytes())?;
        write_private(&key, issued.key_pem.as_bytes())?;
        let ca = dir.join("ca.pem");
        if !ca.exists() {
            self.write_ca(dir)?;
        }
        Ok(TlsFiles { cert, key, ca })
    }
}

pub use crate::credentials::random_secret;

/// The ACLs of a generated cluster (`agora dev`, test clusters): `admins` alone may change
/// weights and membership, drain agents and tear down others' frameworks;
/// `agent_registrars` alone may register agents; everything else is permitted.
pub fn operator_acls(admins: &[&str], agent_registrars: &[&str]) -> String {
    use serde_json::json;
    let only = |who: &[&str], object: &str| {
        json!([
            {"principals": {"values": who}, object: {"type": "ANY"}},
            {"principals": {"type": "ANY"}, object: {"type": "NONE"}},
        ])
    };
    let acls = json!({
        "permissive": true,
        "register_agents": only(agent_registrars, "agents"),
        "update_weights": only(admins, "roles"),
        "update_membership": only(admins, "members"),
        "drain_agents": only(admins, "agents"),
        "deactivate_agents": only(admins, "agents"),
        "reactivate_agents": only(admins, "agents"),
        "mark_agents_gone": only(admins, "agents"),
        "set_log_level": only(admins, "levels"),
        // Frameworks read their own sandboxes; operators everyone's.
        "access_sandboxes": [
            {"principals": {"values": admins}, "users": {"type": "ANY"}}
        ],
        "teardown_frameworks": [
            {"principals": {"values": admins}, "framework_principals": {"type": "ANY"}}
        ],
    });
    serde_json::to_string_pretty(&acls).expect("json of strings")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_name_their_principal_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::new("test CA").unwrap();
        let files = ca
            .write_issued(
                dir.path(),
                "master-1",
                "master-1",
                &["127.0.0.1".into(), "localhost".into()],
            )
            .unwrap();
        crate::tls::server_config(&files).unwrap();
        let der = crate::tls::load_certs(&files.cert).unwrap();
        assert_eq!(
            crate::tls::common_name(&der[0]).as_deref(),
            Some("master-1")
        );
        assert_eq!(random_secret().len(), 64);
        assert_ne!(random_secret(), random_secret());
    }
}
