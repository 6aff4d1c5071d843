//! Who is calling: a request's `authorization` value checked against the credentials, or
//! else the certificate its connection presented.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::credentials::{Credential, CredentialStore};
use crate::serve::ConnectionInfo;
use crate::throttle::FailureThrottle;
use crate::SecurityError;

/// How a caller proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// Nothing: authentication is off, or the caller presented nothing.
    Anonymous,
    /// A client certificate from the cluster CA.
    Certificate,
    /// A principal and its secret.
    Secret,
}

/// The authenticated caller of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub principal: Option<String>,
    pub proof: Proof,
}

impl Caller {
    pub fn anonymous() -> Self {
        Caller {
            principal: None,
            proof: Proof::Anonymous,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.proof == Proof::Anonymous
    }
}

/// A credential was presented and is wrong (deliberately without detail).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed")]
pub struct Unauthenticated;

/// Checks callers against `--credentials`, slowing down addresses that keep failing.
#[derive(Debug)]
pub struct Authenticator {
    path: Option<PathBuf>,
    credentials: RwLock<Option<Arc<CredentialStore>>>,
    throttle: Mutex<FailureThrottle>,
}

impl Authenticator {
    /// Credentials from a file (reloadable).
    pub fn from_file(path: PathBuf) -> Result<Self, SecurityError> {
        let store = CredentialStore::load(&path)?;
        Ok(Authenticator {
            path: Some(path),
            credentials: RwLock::new(Some(Arc::new(store))),
            throttle: Mutex::default(),
        })
    }

    /// Credentials given in memory (tests, simulations).
    pub fn with_store(store: CredentialStore) -> Self {
        Authenticator {
            path: None,
            credentials: RwLock::new(Some(Arc::new(store))),
            throttle: Mutex::default(),
        }
    }

    /// No credentials: secrets are not checked, and callers are anonymous unless their
    /// certificate names them.
    pub fn without_credentials() -> Self {
        Authenticator {
            path: None,
            credentials: RwLock::new(None),
            throttle: Mutex::default(),
        }
    }

    /// Whether secrets are checked.
    pub fn has_credentials(&self) -> bool {
        self.credentials.read().expect("credentials lock").is_some()
    }

    /// Reads the credentials file again; on error the old credentials stay.
    pub fn reload(&self) -> Result<(), SecurityError> {
        if let Some(path) = &self.path {
            let store = CredentialStore::load(path)?;
            *self.credentials.write().expect("credentials lock") = Some(Arc::new(store));
        }
        Ok(())
    }

    /// Who sent a request that came on `conn` with `authorization`.
    ///
    /// A presented credential must be right (whatever the certificate says): a wrong or
    /// malformed one is [`Unauthenticated`], answered only after the address's throttle
    /// delay. Without one, a verified certificate names the caller; else it is anonymous,
    /// and the caller's policy decides whether anonymous may go on.
    pub async fn authenticate(
        &self,
        conn: Option<&ConnectionInfo>,
        authorization: Option<&str>,
    ) -> Result<Caller, Unauthenticated> {
        let store = self.credentials.read().expect("credentials lock").clone();
        if let (Some(value), Some(store)) = (authorization, store) {
            let ip = conn.map(|c| c.remote.ip());
            if let Some(ip) = ip {
                let delay = self
                    .throttle
                    .lock()
                    .expect("throttle")
                    .delay(ip, Instant::now());
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
            let ok = Credential::from_authorization(value).filter(|c| store.verify(c));
            let mut throttle = self.throttle.lock().expect("throttle");
            return match ok {
                Some(c) => {
                    if let Some(ip) = ip {
                        throttle.succeeded(ip);
                    }
                    Ok(Caller {
                        principal: Some(c.principal),
                        proof: Proof::Secret,
                    })
                }
                None => {
                    if let Some(ip) = ip {
                        throttle.failed(ip, Instant::now());
                    }
                    Err(Unauthenticated)
                }
            };
        }
        match conn.and_then(|c| c.peer_principal.clone()) {
            Some(principal) => Ok(Caller {
                principal: Some(principal),
                proof: Proof::Certificate,
            }),
            None => Ok(Caller::anonymous()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(cert: Option<&str>) -> ConnectionInfo {
        ConnectionInfo {
            remote: "10.1.2.3:4000".parse().unwrap(),
            tls: true,
            peer_principal: cert.map(str::to_string),
        }
    }

    fn auth() -> Authenticator {
        Authenticator::with_store(CredentialStore::from_credentials([Credential::new(
            "ops", "pw",
        )]))
    }

    #[tokio::test]
    async fn a_right_secret_names_the_principal() {
        let a = auth();
        let c = a
            .authenticate(
                Some(&conn(None)),
                Some(&Credential::new("ops", "pw").authorization()),
            )
            .await
            .unwrap();
        assert_eq!(c.principal.as_deref(), Some("ops"));
        assert_eq!(c.proof, Proof::Secret);
    }

    #[tokio::test]
    async fn a_wrong_or_malformed_secret_fails_even_with_a_certificate() {
        let a = auth();
        for bad in [
            Credential::new("ops", "nope").authorization(),
            Credential::new("who", "pw").authorization(),
            "Basic ???".to_string(),
            "Bearer x".to_string(),
        ] {
            assert_eq!(
                a.authenticate(Some(&conn(Some("agent-1"))), Some(&bad))
                    .await,
                Err(Unauthenticated),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn without_a_credential_the_certificate_or_nobody() {
        let a = auth();
        let c = a
            .authenticate(Some(&conn(Some("agent-1"))), None)
            .await
            .unwrap();
        assert_eq!(c.principal.as_deref(), Some("agent-1"));
        assert_eq!(c.proof, Proof::Certificate);
        let c = a.authenticate(Some(&conn(None)), None).await.unwrap();
        assert!(c.is_anonymous());
    }

    #[tokio::test]
    async fn without_credentials_secrets_are_not_taken_on_trust() {
        let a = Authenticator::without_credentials();
        let c = a
            .authenticate(
                Some(&conn(None)),
                Some(&Credential::new("ops", "x").authorization()),
            )
            .await
            .unwrap();
        assert!(c.is_anonymous());
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_failures_are_slowed_down() {
        let a = auth();
        let bad = Credential::new("ops", "nope").authorization();
        for _ in 0..crate::throttle::FREE_FAILURES {
            let t = tokio::time::Instant::now();
            let _ = a.authenticate(Some(&conn(None)), Some(&bad)).await;
            assert_eq!(t.elapsed(), std::time::Duration::ZERO);
        }
        let t = tokio::time::Instant::now();
        let _ = a.authenticate(Some(&conn(None)), Some(&bad)).await;
        assert!(
            t.elapsed() >= crate::throttle::FIRST_DELAY,
            "{:?}",
            t.elapsed()
        );
    }
}
