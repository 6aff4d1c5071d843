//! Principals and their secrets, in Mesos' `--credentials` JSON shape:
//! `{"credentials": [{"principal": "...", "secret": "..."}]}`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use base64::Engine;
use serde::Deserialize;

use crate::SecurityError;

/// A secret. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for putting on the wire. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One principal and its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub principal: String,
    pub secret: Secret,
}

impl Credential {
    pub fn new(principal: impl Into<String>, secret: impl Into<String>) -> Self {
        Credential {
            principal: principal.into(),
            secret: Secret::new(secret),
        }
    }

    /// The `authorization` value carrying this credential: `Basic base64(principal:secret)`,
    /// the same on HTTP and gRPC.
    pub fn authorization(&self) -> String {
        let raw = format!("{}:{}", self.principal, self.secret.expose());
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// Parses a `Basic` authorization value. `None` for anything else.
    pub fn from_authorization(value: &str) -> Option<Credential> {
        let (scheme, encoded) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (principal, secret) = raw.split_once(':')?;
        if principal.is_empty() {
            return None;
        }
        Some(Credential::new(principal, secret))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    credentials: Vec<CredentialEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialEntry {
    principal: String,
    secret: String,
}

/// The principals a server accepts, each with its secret.
#[derive(Clone, Default)]
pub struct CredentialStore {
    secrets: BTreeMap<String, Secret>,
}

impl fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialStore")
            .field("principals", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CredentialStore {
    /// Parses Mesos' JSON shape. `path` only names the source in errors.
    pub fn parse(json: &str, path: &Path) -> Result<Self, SecurityError> {
        let file: CredentialsFile = serde_json::from_str(json).map_err(|e| {
            // serde_json's message quotes no values, only positions and field names.
            SecurityError::invalid(
                path,
                format!("not {{\"credentials\": [{{\"principal\", \"secret\"}}]}}: {e}"),
            )
        })?;
        let mut secrets = BTreeMap::new();
        for (i, c) in file.credentials.into_iter().enumerate() {
            if c.principal.is_empty() || c.principal.contains(':') {
                return Err(SecurityError::invalid(
                    path,
                    format!("credentials[{i}].principal must be non-empty and without ':'"),
                ));
            }
            if c.secret.is_empty() {
                return Err(SecurityError::invalid(
                    path,
                    format!("credentials[{i}].secret is empty"),
                ));
            }
            if secrets
                .insert(c.principal.clone(), Secret(c.secret))
                .is_some()
            {
                return Err(SecurityError::invalid(
                    path,
                    format!(
                        "credentials[{i}].principal {:?} is listed twice",
                        c.principal
                    ),
                ));
            }
        }
        Ok(CredentialStore { secrets })
    }

    /// Reads and parses a credentials file.
    pub fn load(path: &Path) -> Result<Self, SecurityError> {
        let json = std::fs::read_to_string(path).map_err(|source| SecurityError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&json, path)
    }

    /// A store of the given credentials.
    pub fn from_credentials(creds: impl IntoIterator<Item = Credential>) -> Self {
        CredentialStore {
            secrets: creds.into_iter().map(|c| (c.principal, c.secret)).collect(),
        }
    }

    /// The file's JSON for these credentials (what `agora dev` writes).
    pub fn to_json(&self) -> String {
        let list: Vec<_> = self
            .secrets
            .iter()
            .map(|(p, s)| serde_json::json!({"principal": p, "secret": s.expose()}))
            .collect();
        serde_json::to_string_pretty(&serde_json::json!({ "credentials": list }))
            .expect("json of strings")
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Whether `credential` names a known principal with its secret. The secret is compared
    /// in constant time, and an unknown principal costs the same comparison, so timing
    /// tells neither which principals exist nor how much of a secret was right.
    pub fn verify(&self, credential: &Credential) -> bool {
        match self.secrets.get(&credential.principal) {
            Some(secret) => constant_time_eq(secret.0.as_bytes(), credential.secret.0.as_bytes()),
            None => {
                let _ = constant_time_eq(
                    credential.secret.0.as_bytes(),
                    credential.secret.0.as_bytes(),
                );
                false
            }
        }
    }
}

/// A random secret (or token): 256 bits from the OS's randomness, as 64 hex digits.
pub fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equality whose time depends only on the lengths, not on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn store() -> CredentialStore {
        CredentialStore::parse(
            r#"{"credentials": [{"principal": "ops", "secret": "s3cret"}, {"principal": "web", "secret": "w"}]}"#,
            Path::new("creds.json"),
        )
        .unwrap()
    }

    #[test]
    fn verifies_only_the_right_secret_of_a_known_principal() {
        let s = store();
        assert_eq!(s.len(), 2);
        assert!(s.verify(&Credential::new("ops", "s3cret")));
        assert!(!s.verify(&Credential::new("ops", "s3cre")));
        assert!(!s.verify(&Credential::new("ops", "s3cret!")));
        assert!(!s.verify(&Credential::new("ops", "w")));
        assert!(!s.verify(&Credential::new("nobody", "s3cret")));
        assert!(!s.verify(&Credential::new("", "")));
    }

    #[test]
    fn parse_errors_name_the_field_and_never_the_secret() {
        let p = Path::new("c.json");
        let e = CredentialStore::parse(
            r#"{"credentials": [{"principal": "", "secret": "topsecret"}]}"#,
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("credentials[0].principal"), "{e}");
        assert!(!e.contains("topsecret"), "{e}");
        let e = CredentialStore::parse(r#"{"credentials": [{"principal": "a", "secret": ""}]}"#, p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("credentials[0].secret"), "{e}");
        let e = CredentialStore::parse(
            r#"{"credentials": [{"principal": "a", "secret": "x"}, {"principal": "a", "secret": "y"}]}"#,
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("credentials[1].principal") && e.contains("twice"),
            "{e}"
        );
        let e = CredentialStore::parse(r#"{"creds": []}"#, p)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.json: "), "{e}");
        let e = CredentialStore::parse(
            r#"{"credentials": [{"principal": "a:b", "secret": "x"}]}"#,
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("without ':'"), "{e}");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let s = store();
        let shown = format!("{s:?} {:?}", Credential::new("ops", "s3cret"));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("ops"), "{shown}");
    }

    #[test]
    fn basic_authorization_round_trips_and_rejects_other_schemes() {
        let c = Credential::new("ops", "a:b c");
        let v = c.authorization();
        assert!(v.starts_with("Basic "));
        assert_eq!(Credential::from_authorization(&v), Some(c));
        assert_eq!(Credential::from_authorization("Bearer abc"), None);
        assert_eq!(Credential::from_authorization("Basic !!!"), None);
        // "Og==" is ":" (no principal).
        assert_eq!(Credential::from_authorization("Basic Og=="), None);
        assert_eq!(
            Credential::from_authorization("basic b3BzOng="),
            Some(Credential::new("ops", "x"))
        );
    }

    #[test]
    fn to_json_parses_back() {
        let s = store();
        let again = CredentialStore::parse(&s.to_json(), Path::new("x")).unwrap();
        assert!(again.verify(&Credential::new("ops", "s3cret")));
        assert!(again.verify(&Credential::new("web", "w")));
    }

    proptest! {
        #[test]
        fn constant_time_eq_is_equality(a in proptest::collection::vec(any::<u8>(), 0..40),
                                        b in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(constant_time_eq(&a, &b), a == b);
            prop_assert!(constant_time_eq(&a, &a));
        }
    }
}
