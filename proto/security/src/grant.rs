//! Sandbox grants: the leader's word, carried by a client to an agent, that a principal may
//! read one task's sandbox until a deadline.
//!
//! Each agent makes a random [`GrantKey`] when it starts and hands it to the leader on its
//! session (over the session's TLS). The leader, which holds the credentials, the ACLs and
//! who registered each framework, decides who may read a sandbox and signs a
//! [`SandboxGrant`] with that agent's key (HMAC-SHA256); the agent checks the signature,
//! the deadline and that the grant names itself, and serves that sandbox and nothing else.
//! A restarted agent has a new key, so grants issued before it are refused (the client
//! asks the leader again).
//!
//! The token is `base64url(payload JSON) "." base64url(tag)`; it is a bearer token, so it
//! travels only in `Authorization: Bearer` and is never logged.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// Length of a key, bytes.
pub const KEY_LEN: usize = 32;

/// What a grant allows: reading the sandbox of `task_id` of `framework_id` on `agent_id`,
/// until `expires_ms` (milliseconds since the Unix epoch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxGrant {
    #[serde(rename = "a")]
    pub agent_id: String,
    #[serde(rename = "f")]
    pub framework_id: String,
    #[serde(rename = "t")]
    pub task_id: String,
    /// Who it was granted to (for the agent's log); `None` on an unauthenticated cluster.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(rename = "e")]
    pub expires_ms: u64,
}

/// Why a token was refused. Never contains the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    #[error("the sandbox grant is malformed")]
    Malformed,
    #[error("the sandbox grant was not issued for this agent's current key (the agent restarted, or it is forged): ask the leader again")]
    BadSignature,
    #[error("the sandbox grant expired: ask the leader again")]
    Expired,
    #[error("the sandbox grant is for agent {0}, not this one")]
    OtherAgent(String),
}

/// An agent's signing key. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct GrantKey([u8; KEY_LEN]);

impl std::fmt::Debug for GrantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrantKey(<redacted>)")
    }
}

impl GrantKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = [0u8; KEY_LEN];
        rand::Rng::fill(&mut rand::thread_rng(), &mut k[..]);
        GrantKey(k)
    }

    /// The key an agent sent (`None` unless exactly [`KEY_LEN`] bytes).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(GrantKey)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn hmac(&self) -> ring::hmac::Key {
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0)
    }

    /// The token for `grant`.
    pub fn sign(&self, grant: &SandboxGrant) -> String {
        let payload = serde_json::to_vec(grant).expect("a grant serializes");
        let tag = ring::hmac::sign(&self.hmac(), &payload);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// The grant a token carries, if this key signed it, it names `agent_id` and it has not
    /// expired at `now_ms`.
    pub fn verify(
        &self,
        token: &str,
        agent_id: &str,
        now_ms: u64,
    ) -> Result<SandboxGrant, GrantError> {
        let (payload, tag) = token.split_once('.').ok_or(GrantError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| GrantError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| GrantError::Malformed)?;
        // Constant time.
        ring::hmac::verify(&self.hmac(), &payload, &tag).map_err(|_| GrantError::BadSignature)?;
        let grant: SandboxGrant =
            serde_json::from_slice(&payload).map_err(|_| GrantError::Malformed)?;
        if grant.agent_id != agent_id {
            return Err(GrantError::OtherAgent(grant.agent_id));
        }
        if now_ms >= grant.expires_ms {
            return Err(GrantError::Expired);
        }
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> SandboxGrant {
        SandboxGrant {
            agent_id: "a1".into(),
            framework_id: "f1".into(),
            task_id: "t1".into(),
            principal: Some("alice".into()),
            expires_ms: 1_000,
        }
    }

    #[test]
    fn a_signed_grant_verifies_with_its_key_only_until_it_expires() {
        let key = GrantKey::generate();
        let token = key.sign(&grant());
        assert_eq!(key.verify(&token, "a1", 999), Ok(grant()));
        assert_eq!(key.verify(&token, "a1", 1_000), Err(GrantError::Expired));
        assert_eq!(
            key.verify(&token, "a2", 10),
            Err(GrantError::OtherAgent("a1".into()))
        );
        let other = GrantKey::generate();
        assert_eq!(
            other.verify(&token, "a1", 10),
            Err(GrantError::BadSignature)
        );
    }

    #[test]
    fn a_changed_payload_or_garbage_is_refused() {
        let key = GrantKey::generate();
        let token = key.sign(&grant());
        let (_, tag) = token.split_once('.').unwrap();
        let mut forged = grant();
        forged.task_id = "t2".into();
        let forged = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap())
        );
        assert_eq!(key.verify(&forged, "a1", 10), Err(GrantError::BadSignature));
        for junk in ["", ".", "abc", "a.b", "!!.!!"] {
            assert!(key.verify(junk, "a1", 10).is_err(), "{junk}");
        }
        assert_eq!(GrantKey::from_bytes(&[0; 31]), None);
        assert!(GrantKey::from_bytes(key.as_bytes()).is_some());
        assert!(!format!("{key:?}").contains(&format!("{:?}", key.as_bytes())));
    }
}
