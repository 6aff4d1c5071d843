//! Who may do what. Two rules, both decided here over registry data:
//! - **Binding.** A framework or agent belongs to the principal that registered it: only
//!   that principal may act for it (subscribe again, accept its offers, kill or reconcile
//!   its tasks, register the agent again, open its session). Without authentication in
//!   force (no `--credentials`, no client certificate) nothing is bound.
//! - **ACLs** (`--acls`, Mesos' shape, decided by `agora-acl`): which roles a principal
//!   may register, which users its tasks may run as, who may change weights and
//!   membership, tear down another's framework, register agents, and see what.
//!
//! The transport authenticates (it knows certificates and secrets); this module never
//! sees either, only the principal they proved.

use std::sync::{Arc, RwLock};

use agora_acl::{Acls, Action};
use agora_registry::{AgentId, FrameworkId};

use super::{Leader, LeaderError};

/// The ACLs in force, replaceable on reload.
pub struct Authz {
    acls: RwLock<Arc<Acls>>,
    /// Whether callers are authenticated (credentials configured): then an anonymous
    /// caller is bound to nothing.
    authenticated: bool,
}

impl Authz {
    pub fn new(acls: Acls, authenticated: bool) -> Self {
        Authz {
            acls: RwLock::new(Arc::new(acls)),
            authenticated,
        }
    }

    /// Everything allowed, nothing authenticated (tests, `--insecure` without files).
    pub fn open() -> Self {
        Self::new(Acls::permissive(), false)
    }

    pub fn replace(&self, acls: Acls) {
        *self.acls.write().expect("acls lock") = Arc::new(acls);
    }

    pub fn acls(&self) -> Arc<Acls> {
        self.acls.read().expect("acls lock").clone()
    }

    /// Whether `caller` may act for something registered by `owner`.
    pub fn may_act_for(&self, owner: Option<&str>, caller: Option<&str>) -> bool {
        may_act_for(owner, caller, self.authenticated)
    }
}

/// The binding rule: with authentication in force, only the owner (and nobody for an
/// anonymous caller); without it, a caller that proved no principal is not checked, and
/// one that did (a client certificate) must still be the owner.
pub fn may_act_for(owner: Option<&str>, caller: Option<&str>, authenticated: bool) -> bool {
    match (owner, caller) {
        (_, None) => !authenticated,
        (None, Some(_)) => true,
        (Some(o), Some(c)) => o == c,
    }
}

fn denied(what: impl std::fmt::Display) -> LeaderError {
    LeaderError::PermissionDenied(what.to_string())
}

fn who(principal: Option<&str>) -> String {
    match principal {
        Some(p) => format!("principal {p:?}"),
        None => "an unauthenticated caller".to_string(),
    }
}

impl Leader {
    fn authz(&self) -> &Authz {
        &self.shared.authz
    }

    /// Replaces the ACLs (SIGHUP).
    pub fn replace_acls(&self, acls: Acls) {
        self.authz().replace(acls);
    }

    /// Whether the ACLs allow `principal` to do `action`.
    pub fn authorize(
        &self,
        principal: Option<&str>,
        action: &Action<'_>,
    ) -> Result<(), LeaderError> {
        let decision = self.authz().acls().decide(principal, action);
        if decision.allowed {
            Ok(())
        } else {
            tracing::info!(principal = ?principal, acl = decision.acl_key, "refused by the ACLs");
            Err(denied(format!(
                "{} may not {}: {decision}",
                who(principal),
                describe(action)
            )))
        }
    }

    /// Whether the ACLs allow `principal` to view `action`'s object (no error, no log).
    pub fn may_view(&self, principal: Option<&str>, action: &Action<'_>) -> bool {
        self.authz().acls().allows(principal, action)
    }

    /// The framework is `principal`'s to act for.
    pub fn require_framework_owner(
        &self,
        principal: Option<&str>,
        framework: &FrameworkId,
    ) -> Result<(), LeaderError> {
        let owner = self.read(|reg| reg.framework(framework).map(|f| f.info.principal.clone()));
        match owner {
            None => Ok(()), // unknown frameworks are refused by the call itself
            Some(owner) if self.authz().may_act_for(owner.as_deref(), principal) => Ok(()),
            Some(_) => Err(denied(format!(
                "framework_id: framework {framework} belongs to another principal; {} may not act for it",
                who(principal)
            ))),
        }
    }

    /// A teardown: the framework's own principal, or one an ACL entry explicitly allows
    /// to tear down frameworks of the framework's principal (the permissive default does
    /// not let anyone tear down another's framework).
    pub fn authorize_teardown(
        &self,
        principal: Option<&str>,
        framework: &FrameworkId,
    ) -> Result<(), LeaderError> {
        if self.require_framework_owner(principal, framework).is_ok() {
            return Ok(());
        }
        let owner = self.read(|reg| {
            reg.framework(framework)
                .and_then(|f| f.info.principal.clone())
        });
        let action = Action::TeardownFramework {
            framework_principal: owner.as_deref(),
        };
        let decision = self.authz().acls().decide(principal, &action);
        if decision.allowed && decision.entry.is_some() {
            Ok(())
        } else {
            Err(denied(format!(
                "framework_id: framework {framework} belongs to another principal, and no teardown_frameworks ACL lets {} tear it down",
                who(principal)
            )))
        }
    }

    /// Reading a task's sandbox: the principal of the task's framework, or one an
    /// `access_sandboxes` entry explicitly allows for the task's user (the permissive
    /// default does not open another's sandboxes: they hold its output, often secrets).
    /// `owner` is the principal that registered the framework (registered or completed).
    pub fn authorize_sandbox(
        &self,
        principal: Option<&str>,
        framework: &FrameworkId,
        owner: Option<&str>,
        user: &str,
    ) -> Result<(), LeaderError> {
        if self.authz().may_act_for(owner, principal) {
            return Ok(());
        }
        let decision = self
            .authz()
            .acls()
            .decide(principal, &Action::AccessSandbox { user });
        if decision.allowed && decision.entry.is_some() {
            Ok(())
        } else {
            Err(denied(format!(
                "task_id: the task belongs to framework {framework} of another principal, and no access_sandboxes ACL lets {} read sandboxes of tasks running as {user:?}",
                who(principal)
            )))
        }
    }

    /// The agent is `principal`'s to register again or to connect as.
    pub fn require_agent_owner(
        &self,
        principal: Option<&str>,
        agent: &AgentId,
    ) -> Result<(), LeaderError> {
        let owner = self.read(|reg| reg.agent(agent).map(|a| a.info.principal.clone()));
        match owner {
            None => Ok(()),
            Some(owner) if self.authz().may_act_for(owner.as_deref(), principal) => Ok(()),
            Some(_) => Err(denied(format!(
                "agent_id: agent {agent} was registered by another principal; {} may not act for it",
                who(principal)
            ))),
        }
    }
}

fn describe(action: &Action<'_>) -> String {
    match action {
        Action::RegisterFramework { role } => format!("register a framework in role {role:?}"),
        Action::RunTask { user } => format!("run tasks as user {user:?}"),
        Action::TeardownFramework { .. } => "tear down this framework".into(),
        Action::UpdateWeight { role } => format!("update the weight of role {role:?}"),
        Action::ViewFramework { .. } => "view this framework".into(),
        Action::ViewTask { .. } => "view this task".into(),
        Action::ViewAgent { .. } => "view this agent".into(),
        Action::RegisterAgent { agent } => format!("register agent {agent}"),
        Action::UpdateMembership { member } => format!("change the membership of replica {member}"),
        Action::DrainAgent { agent } => format!("drain agent {agent}"),
        Action::AccessSandbox { user } => format!("read sandboxes of tasks running as {user:?}"),
        Action::DeactivateAgent { agent } => format!("deactivate agent {agent}"),
        Action::ReactivateAgent { agent } => format!("reactivate agent {agent}"),
        Action::MarkAgentGone { agent } => format!("mark agent {agent} gone"),
        Action::SetLogLevel { level } => format!("set the log level to {level:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::may_act_for;

    #[test]
    fn binding_rule() {
        // Authentication in force.
        assert!(may_act_for(Some("a"), Some("a"), true));
        assert!(!may_act_for(Some("a"), Some("b"), true));
        assert!(!may_act_for(Some("a"), None, true));
        assert!(!may_act_for(None, None, true));
        assert!(may_act_for(None, Some("b"), true));
        // None in force: only a certificate-proved principal is checked.
        assert!(may_act_for(Some("a"), None, false));
        assert!(may_act_for(None, None, false));
        assert!(!may_act_for(Some("a"), Some("b"), false));
    }
}
